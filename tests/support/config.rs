//! Configuration generators: the typed [`ConfigBuilder`] (YAML out), and the
//! standard shapes most tests start from, [`proxy_config`] and
//! [`upstream_config`].

use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;

/// `s` as a YAML double-quoted scalar.
pub fn yaml_str(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\x{:02x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A forklb configuration, built up and rendered as YAML by [`build`]:
///
/// ```ignore
/// let yaml = ConfigBuilder::new()
///     .workers(2)
///     .log_level("info")
///     .listener("web", &["127.0.0.1:$PORT"])
///     .route(Route::healthz())
///     .route(Route::to("web"))
///     .upstream("web", [Srv::of(&b1), Srv::addr(refused_addr())])
///     .upstream_opt("retries: 0")
///     .build();
/// ```
///
/// Top-level keys come out first (`workers` on the first line, then in the
/// order set), then `listeners:`, then `upstreams:` (if any). `$PORT` in a
/// bind address is left for [`Forklb::start`] to replace.
///
/// [`build`]: ConfigBuilder::build
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    /// (key, YAML value) in order; setting a key again replaces its value.
    top: Vec<(String, String)>,
    /// Verbatim top-level YAML, after the keys.
    raw: String,
    listeners: Vec<ListenerSpec>,
    upstreams: Vec<UpstreamSpec>,
}

#[derive(Debug, Clone)]
struct ListenerSpec {
    name: String,
    binds: Vec<String>,
    /// `key: value` lines (`http2: false`, `h2c: true`), in order.
    opts: Vec<String>,
    /// `tls: {certificates: ...}`, if set (even to none).
    certificates: Option<Vec<(PathBuf, PathBuf)>>,
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct UpstreamSpec {
    name: String,
    /// `key: value` lines, in order.
    opts: Vec<String>,
    servers: Vec<Srv>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder::new()
    }
}

impl ConfigBuilder {
    /// `workers: 1` and nothing else yet.
    pub fn new() -> ConfigBuilder {
        ConfigBuilder {
            top: vec![("workers".into(), "1".into())],
            raw: String::new(),
            listeners: Vec::new(),
            upstreams: Vec::new(),
        }
    }

    /// Sets top-level `key` to the YAML `value` (written as given).
    pub fn set(mut self, key: &str, value: impl Display) -> Self {
        let value = value.to_string();
        match self.top.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.top.push((key.to_owned(), value)),
        }
        self
    }

    /// Verbatim top-level YAML lines (each ending in a newline), e.g. the
    /// `extra` a test helper takes from its callers.
    pub fn raw(mut self, yaml: &str) -> Self {
        self.raw.push_str(yaml);
        self
    }

    pub fn workers(self, n: usize) -> Self {
        self.set("workers", n)
    }

    pub fn log_level(self, level: &str) -> Self {
        self.set("log_level", level)
    }

    pub fn shutdown_timeout(self, t: &str) -> Self {
        self.set("shutdown_timeout", t)
    }

    pub fn user(self, user: &str) -> Self {
        self.set("user", user)
    }

    /// `pid_file:` (only for configurations run without [`Forklb`], which
    /// adds its own).
    pub fn pid_file(self, path: &Path) -> Self {
        self.set("pid_file", yaml_str(&path.display().to_string()))
    }

    /// `error_log:` (only for configurations run without [`Forklb`]).
    pub fn error_log(self, path: &Path) -> Self {
        self.set("error_log", yaml_str(&path.display().to_string()))
    }

    /// `admin: {socket: PATH}`.
    pub fn admin_socket(self, path: &Path) -> Self {
        self.set(
            "admin",
            format!("{{socket: {}}}", yaml_str(&path.display().to_string())),
        )
    }

    /// `access_log: {path: PATH, format: FORMAT}`.
    pub fn access_log(self, path: &Path, format: &str) -> Self {
        self.set(
            "access_log",
            format!(
                "{{path: {}, format: {format}}}",
                yaml_str(&path.display().to_string())
            ),
        )
    }

    /// A new listener `name` on `binds` (`$PORT` allowed); the
    /// [`certificates`](Self::certificates) and [`route`](Self::route)s that
    /// follow are its.
    pub fn listener(mut self, name: &str, binds: &[&str]) -> Self {
        self.listeners.push(ListenerSpec {
            name: name.to_owned(),
            binds: binds.iter().map(|b| b.to_string()).collect(),
            opts: Vec::new(),
            certificates: None,
            routes: Vec::new(),
        });
        self
    }

    fn last_listener(&mut self) -> &mut ListenerSpec {
        self.listeners
            .last_mut()
            .expect("ConfigBuilder: call listener() before route() or certificates()")
    }

    /// TLS certificates (cert, key) of the last listener, in that order.
    pub fn certificates(mut self, pairs: &[(PathBuf, PathBuf)]) -> Self {
        self.last_listener()
            .certificates
            .get_or_insert_with(Vec::new)
            .extend_from_slice(pairs);
        self
    }

    /// A `key: value` line of the last listener, e.g. `"http2: false"` or
    /// `"h2c: true"`.
    pub fn listener_opt(mut self, line: &str) -> Self {
        self.last_listener().opts.push(line.to_owned());
        self
    }

    /// A route of the last listener.
    pub fn route(mut self, route: Route) -> Self {
        self.last_listener().routes.push(route);
        self
    }

    /// A new upstream `name` with `servers`; the
    /// [`upstream_opt`](Self::upstream_opt)s that follow are its.
    pub fn upstream(mut self, name: &str, servers: impl IntoIterator<Item = Srv>) -> Self {
        self.upstreams.push(UpstreamSpec {
            name: name.to_owned(),
            opts: Vec::new(),
            servers: servers.into_iter().collect(),
        });
        self
    }

    /// A `key: value` line of the last upstream, e.g. `"retries: 0"` or
    /// `"health: {type: tcp, interval: 200ms}"`.
    pub fn upstream_opt(mut self, line: &str) -> Self {
        self.upstreams
            .last_mut()
            .expect("ConfigBuilder: call upstream() before upstream_opt()")
            .opts
            .push(line.to_owned());
        self
    }

    /// `balance: ALGO` of the last upstream.
    pub fn balance(self, algo: &str) -> Self {
        self.upstream_opt(&format!("balance: {algo}"))
    }

    /// `tls: {sni: SNI, ca: CA}` of the last upstream.
    pub fn upstream_tls(self, sni: &str, ca: &Path) -> Self {
        let ca = yaml_str(&ca.display().to_string());
        self.upstream_opt(&format!("tls: {{sni: {sni}, ca: {ca}}}"))
    }

    /// Writes the configuration, for a run without [`Forklb`] (e.g.
    /// `forklb -t`), to `forklb.yaml` in `dir` with `pid_file` and
    /// `error_log` in `dir` and `$PORT` a free port; returns its path.
    pub fn write_for_check(self, dir: &TempDir) -> PathBuf {
        let yaml = self
            .pid_file(&dir.join("forklb.pid"))
            .error_log(&dir.join("error.log"))
            .build()
            .replace("$PORT", &free_port().to_string());
        let path = dir.join("forklb.yaml");
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    /// The YAML text.
    pub fn build(&self) -> String {
        let mut y = String::new();
        for (k, v) in &self.top {
            let _ = writeln!(y, "{k}: {v}");
        }
        y.push_str(&self.raw);
        y.push_str("listeners:\n");
        for l in &self.listeners {
            let binds: Vec<String> = l.binds.iter().map(|b| yaml_str(b)).collect();
            let _ = writeln!(y, "  - name: {}", l.name);
            let _ = writeln!(y, "    bind: [{}]", binds.join(", "));
            for o in &l.opts {
                let _ = writeln!(y, "    {o}");
            }
            if let Some(certificates) = &l.certificates {
                y.push_str("    tls:\n      certificates:\n");
                for (c, k) in certificates {
                    let _ = writeln!(
                        y,
                        "        - {{cert: {}, key: {}}}",
                        yaml_str(&c.display().to_string()),
                        yaml_str(&k.display().to_string())
                    );
                }
            }
            y.push_str("    routes:\n");
            for r in &l.routes {
                let _ = writeln!(y, "      - {}", r.yaml());
            }
        }
        if !self.upstreams.is_empty() {
            y.push_str("upstreams:\n");
        }
        for u in &self.upstreams {
            let _ = writeln!(y, "  {}:", u.name);
            for o in &u.opts {
                let _ = writeln!(y, "    {o}");
            }
            y.push_str("    servers:\n");
            for s in &u.servers {
                let _ = writeln!(y, "      - {}", s.yaml());
            }
        }
        y
    }
}

/// One route of a listener: what it matches (`path`, `host`; nothing matches
/// everything) and what it does (`upstream`, `return`, `redirect`,
/// `metrics`).
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// `key: value` pairs of a YAML flow mapping, in order.
    fields: Vec<(String, String)>,
}

impl Route {
    /// Matches every request.
    pub fn any() -> Route {
        Route::default()
    }

    /// Matches paths starting with `prefix`.
    pub fn path(prefix: &str) -> Route {
        Route::any().field("path", yaml_str(prefix))
    }

    /// Matches requests for `host`.
    pub fn host(host: &str) -> Route {
        Route::any().field("host", yaml_str(host))
    }

    /// Everything to upstream `name`.
    pub fn to(name: &str) -> Route {
        Route::any().upstream(name)
    }

    /// `/healthz` answered by forklb with 200 "ok\n".
    pub fn healthz() -> Route {
        Route::path("/healthz").ret(200, "ok\n")
    }

    /// Any more `key: value` (value as YAML).
    pub fn field(mut self, key: &str, value: impl Display) -> Route {
        self.fields.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn upstream(self, name: &str) -> Route {
        self.field("upstream", name)
    }

    /// `return: {status: STATUS, body: BODY}`.
    pub fn ret(self, status: u16, body: &str) -> Route {
        self.field(
            "return",
            format!("{{status: {status}, body: {}}}", yaml_str(body)),
        )
    }

    /// `return: {status: STATUS}` (no body).
    pub fn ret_status(self, status: u16) -> Route {
        self.field("return", format!("{{status: {status}}}"))
    }

    /// `redirect: {to: TO, status: STATUS}`.
    pub fn redirect(self, to: &str, status: u16) -> Route {
        self.field(
            "redirect",
            format!("{{to: {}, status: {status}}}", yaml_str(to)),
        )
    }

    /// `metrics: prometheus`.
    pub fn metrics(self) -> Route {
        self.field("metrics", "prometheus")
    }

    /// `metrics: haproxy` (HAProxy's exporter's names).
    pub fn metrics_haproxy(self) -> Route {
        self.field("metrics", "haproxy")
    }

    fn yaml(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("{{{}}}", fields.join(", "))
    }
}

/// One `servers:` entry of an upstream.
#[derive(Debug, Clone)]
pub struct Srv {
    /// None: forklb names it after its address.
    pub name: Option<String>,
    pub addr: String,
    /// None: the default weight (1).
    pub weight: Option<u32>,
    pub backup: bool,
    /// None: no `maxconn` key (no limit).
    pub maxconn: Option<u32>,
}

impl Srv {
    /// A primary server of the default weight (1).
    pub fn new(name: &str, addr: impl Display) -> Srv {
        Srv {
            name: Some(name.to_owned()),
            ..Srv::addr(addr)
        }
    }

    /// A primary server without a name (forklb names it after `addr`).
    pub fn addr(addr: impl Display) -> Srv {
        Srv {
            name: None,
            addr: addr.to_string(),
            weight: None,
            backup: false,
            maxconn: None,
        }
    }

    /// A primary server of weight 1 for backend `b` (named like it).
    pub fn of(b: &Backend) -> Srv {
        Srv::new(b.name(), b.addr())
    }

    pub fn weight(mut self, w: u32) -> Srv {
        self.weight = Some(w);
        self
    }

    pub fn backup(mut self) -> Srv {
        self.backup = true;
        self
    }

    pub fn maxconn(mut self, n: u32) -> Srv {
        self.maxconn = Some(n);
        self
    }

    fn yaml(&self) -> String {
        let mut f = Vec::new();
        if let Some(n) = &self.name {
            f.push(format!("name: {n}"));
        }
        f.push(format!("addr: {}", yaml_str(&self.addr)));
        if let Some(w) = self.weight {
            f.push(format!("weight: {w}"));
        }
        if self.backup {
            f.push("backup: true".to_owned());
        }
        if let Some(n) = self.maxconn {
            f.push(format!("maxconn: {n}"));
        }
        format!("{{{}}}", f.join(", "))
    }
}

/// The start of the standard test configuration: `workers`, `log_level:
/// info`, `shutdown_timeout: 10s`, listener `web` on `127.0.0.1:$PORT` with
/// a `/healthz` route answered by forklb and everything else to upstream
/// `web` (not declared yet).
pub fn standard_config(workers: usize) -> ConfigBuilder {
    ConfigBuilder::new()
        .workers(workers)
        .log_level("info")
        .shutdown_timeout("10s")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::healthz())
        .route(Route::to("web"))
}

/// The standard proxy configuration of the tests (without the `pid_file` and
/// `error_log` keys, which [`Forklb`] adds): [`standard_config`] with
/// `servers` (name, address, weight) in upstream `web`; `upstream_extra`
/// are more keys of upstream `web`, e.g. `["retries: 0"]`.
pub fn proxy_config(
    workers: usize,
    servers: &[(&str, SocketAddr, u32)],
    upstream_extra: &[&str],
) -> String {
    let servers = servers
        .iter()
        .map(|&(name, addr, weight)| Srv::new(name, addr).weight(weight));
    let mut c = standard_config(workers).upstream("web", servers);
    for extra in upstream_extra {
        c = c.upstream_opt(extra);
    }
    c.build()
}

/// Shorthand: `proxy_config` for backends of weight 1.
pub fn proxy_config_for(workers: usize, backends: &[&Backend]) -> String {
    let servers: Vec<(&str, SocketAddr, u32)> =
        backends.iter().map(|b| (b.name(), b.addr(), 1)).collect();
    proxy_config(workers, &servers, &[])
}

/// Like [`proxy_config`], with `balance: ALGO`, any server options
/// (backup) and more upstream keys (`upstream_extra`, e.g.
/// `"hash_key: uri"` or `"health: {type: tcp, interval: 200ms}"`).
pub fn upstream_config(
    workers: usize,
    balance: &str,
    servers: &[Srv],
    upstream_extra: &[&str],
) -> String {
    let servers = servers.iter().map(|s| Srv {
        weight: Some(s.weight.unwrap_or(1)),
        ..s.clone()
    });
    let mut c = standard_config(workers)
        .upstream("web", servers)
        .balance(balance);
    for extra in upstream_extra {
        c = c.upstream_opt(extra);
    }
    c.build()
}

/// `workers`, `log_level: info`, `shutdown_timeout: 10s`, listener `web` on
/// `127.0.0.1:$PORT`: paths under `/SIDE/` to upstream `SIDE` (server
/// `side`), everything else to upstream `web` (server `web`); both servers
/// unnamed.
pub fn side_route_config(
    workers: usize,
    web: &Backend,
    side_name: &str,
    side: &Backend,
) -> ConfigBuilder {
    ConfigBuilder::new()
        .workers(workers)
        .log_level("info")
        .shutdown_timeout("10s")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path(&format!("/{side_name}/")).upstream(side_name))
        .route(Route::to("web"))
        .upstream("web", [Srv::addr(web.addr())])
        .upstream(side_name, [Srv::addr(side.addr())])
}

/// One worker, `log_level: info`, listener `web` on `127.0.0.1:$PORT`
/// sending everything to upstream `web`: server `s1` at `addr`, reached
/// over TLS with `sni`, verified against the CA file `ca`.
pub fn tls_upstream_config(sni: &str, ca: &Path, addr: impl Display) -> ConfigBuilder {
    ConfigBuilder::new()
        .log_level("info")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("web"))
        .upstream("web", [Srv::new("s1", addr)])
        .upstream_tls(sni, ca)
}
