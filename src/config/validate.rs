//! Loading and validation of the configuration (DESIGN §4).
//!
//! [`from_yaml_str`] runs these steps, and stops at the first error:
//!
//! 0. A bound on nesting depth ([`super::nesting`]), checked by one linear pass before the
//!    YAML parser, whose time grows with the square of the depth.
//! 1. YAML parsing into [`super::raw`] (syntax, types, unknown keys, the grammar of
//!    single values, one action per route). Such errors carry the `line:column` and,
//!    where serde_norway knows it, the field path.
//! 2. Checks across keys ([`check`]), each error naming the exact field path
//!    (`listeners[0].routes[2].upstream`, `upstreams.web.servers[1].weight`, `workers`).
//!    Relative paths are made absolute and server names default to `addr` here;
//!    listener addresses and routes come out parsed and compiled.
//! 3. [`super::build`]: TLS material (listener certificates and keys, checked to belong
//!    together, and upstream CA files), read now so `-t` and reloads catch every bad
//!    file; then name resolution of the upstream servers, last because it may be slow.
//!    The result is the validated [`Config`].

use super::access::{Access, Cidr};
use super::build::{Checked, CheckedListener};
use super::error::{invalid, ConfigError, Invalid};
use super::limits;
use super::raw::{self, Balance, HealthKind, RouteAction, UpstreamProtocol, Workers};
use super::routing::{Action, HostMatch, Route};
use super::validated::Config;
use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The most worker processes `workers` may ask for.
pub const MAX_WORKERS: usize = 1024;
/// The most client connections a worker may be given: each takes two file
/// descriptors (client and upstream), and Linux allows a process at most
/// `fs.nr_open` (1,048,576 by default).
pub const MAX_WORKER_CONNECTIONS: usize = 500_000;

/// The shortest `resolve` interval: each change of address starts a new
/// generation of workers, so a flapping name must not fork them endlessly.
pub const MIN_RESOLVE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The highest server weight (HAProxy's limit): the one shared memory
/// enforces at run time, so the file and `set weight` agree.
pub const MAX_WEIGHT: u32 = crate::shm::MAX_WEIGHT;

/// The highest server `maxconn` in the file: HAProxy's configuration
/// reads it as a signed int. (`set maxconn server` may store any 32-bit
/// value, as HAProxy's does.)
pub const MAX_MAXCONN: u32 = i32::MAX as u32;
/// The most retries an upstream may ask for.
pub const MAX_RETRIES: u32 = 16;
/// Bounds of `limits.max_header_bytes`.
pub const MIN_HEADER_BYTES: u64 = 1 << 10;
pub const MAX_HEADER_BYTES: u64 = 1 << 20;
/// The largest value of an HTTP/2 window or stream count (RFC 9113 §6.5.2,
/// §6.9.1: 2^31-1).
pub const MAX_H2_VALUE: u64 = (1 << 31) - 1;
/// Bounds of `http2.max_header_list_size`: below 1 KiB ordinary browser
/// requests no longer fit; above 16 MiB one stream could pin that much.
pub const MIN_H2_HEADER_LIST: u64 = 1 << 10;
pub const MAX_H2_HEADER_LIST: u64 = 16 << 20;

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = absolute(path)?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| ConfigError::new(&file, "", format!("cannot read the file: {e}")))?;
    from_yaml_str(&text, &file)
}

/// Parses and validates `text` as if it had been read from `source`.
pub fn from_yaml_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let source = absolute(source)?;
    // A UTF-8 byte order mark (editors on Windows write one) is allowed
    // before a YAML stream; the parser took it for a second document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Before the YAML parser: its time grows with the square of the depth.
    if let Err(at) = super::nesting::check(text, super::nesting::MAX_NESTING) {
        return Err(ConfigError {
            file: source,
            path: String::new(),
            line_col: Some((at.line, at.column)),
            message: format!(
                "the YAML nests deeper than {} levels (a configuration needs fewer than 10)",
                super::nesting::MAX_NESTING
            ),
        });
    }
    let mut cfg: raw::Config =
        serde_norway::from_str(text).map_err(|e| ConfigError::from_yaml(&source, &e))?;
    if cfg.listeners.is_empty() && is_empty_document(text) {
        return Err(ConfigError::new(
            &source,
            "",
            "the file is empty: no listeners (at least one listener is required)",
        ));
    }
    let dir = source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let to_error = |e: Invalid| ConfigError::new(&source, e.path, e.message);
    let checked = check(&mut cfg, &dir).map_err(to_error)?;
    super::build::build(cfg, checked, source.clone()).map_err(to_error)
}

fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|e| {
        ConfigError::new(
            path,
            "",
            format!("cannot make the configuration path absolute: {e}"),
        )
    })
}

/// True for a file with nothing but blanks and comments (or an explicit `null`).
fn is_empty_document(text: &str) -> bool {
    matches!(
        serde_norway::from_str::<serde_norway::Value>(text),
        Ok(serde_norway::Value::Null)
    )
}

type Check = Result<(), Invalid>;

// ---------------------------------------------------------------------------------------
// Checks across keys. They also normalize the raw configuration where the
// file leaves a value to a rule (relative paths, server names defaulting to
// `addr`), and compile what they parse (addresses, routes) so nothing is
// parsed twice; the rest is built in `super::build`.
// ---------------------------------------------------------------------------------------

fn check(cfg: &mut raw::Config, dir: &Path) -> Result<Checked, Invalid> {
    check_global(cfg)?;
    resolve_paths(cfg, dir)?;
    let listeners = check_listeners(cfg)?;
    let server_addrs = check_upstreams(cfg)?;
    Ok(Checked {
        listeners,
        server_addrs,
    })
}

fn check_global(cfg: &raw::Config) -> Check {
    if cfg.version != 1 {
        return invalid(
            "version",
            format!("unsupported version {} (only 1 is supported)", cfg.version),
        );
    }
    check_workers(cfg)?;
    if cfg.upgrade_timeout.get().is_zero() {
        return invalid("upgrade_timeout", "must not be 0");
    }
    check_user_group(cfg)?;
    if let Some(admin) = &cfg.admin {
        check_admin_mode(&admin.mode)?;
    }
    check_timeouts(&cfg.timeouts)?;
    let header = cfg.limits.max_header_bytes.get();
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&header) {
        return invalid(
            "limits.max_header_bytes",
            format!("{header} bytes is out of range 1k-1m"),
        );
    }
    check_http2(&cfg.http2)
}

/// `http2`: each value must fit its SETTINGS parameter.
fn check_http2(h: &raw::Http2) -> Check {
    let streams = h.max_concurrent_streams;
    if !(1..=MAX_H2_VALUE).contains(&streams) {
        return invalid(
            "http2.max_concurrent_streams",
            format!("{streams} is out of range 1-{MAX_H2_VALUE} (2^31-1)"),
        );
    }
    let window = h.initial_window_size.get();
    if !(1..=MAX_H2_VALUE).contains(&window) {
        return invalid(
            "http2.initial_window_size",
            format!("{window} bytes is out of range 1-{MAX_H2_VALUE} (2^31-1)"),
        );
    }
    let list = h.max_header_list_size.get();
    if !(MIN_H2_HEADER_LIST..=MAX_H2_HEADER_LIST).contains(&list) {
        return invalid(
            "http2.max_header_list_size",
            format!("{list} bytes is out of range 1k-16m"),
        );
    }
    Ok(())
}

/// `workers` and `worker_connections`.
fn check_workers(cfg: &raw::Config) -> Check {
    match cfg.workers {
        Workers::Count(0) => return invalid("workers", "must be at least 1 (or \"auto\")"),
        Workers::Count(n) if n > MAX_WORKERS => {
            return invalid(
                "workers",
                format!("{n} workers is more than the maximum of {MAX_WORKERS}"),
            )
        }
        _ => {}
    }
    if cfg.worker_connections == 0 {
        return invalid("worker_connections", "must be at least 1");
    }
    if cfg.worker_connections > MAX_WORKER_CONNECTIONS {
        return invalid(
            "worker_connections",
            format!(
                "{} is more than the maximum of {MAX_WORKER_CONNECTIONS} \
                 (each connection needs two open files)",
                cfg.worker_connections
            ),
        );
    }
    Ok(())
}

/// `user` and `group`: not blank, and known to the system.
fn check_user_group(cfg: &raw::Config) -> Check {
    for (field, name) in [("user", &cfg.user), ("group", &cfg.group)] {
        if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return invalid(field, "must not be empty (leave it out or use null)");
        }
    }
    if let Some(user) = cfg.user.as_deref() {
        match nix::unistd::User::from_name(user) {
            Ok(Some(_)) => {}
            Ok(None) => return invalid("user", format!("unknown user {user:?}")),
            Err(e) => return invalid("user", format!("cannot look up user {user:?}: {e}")),
        }
    }
    if let Some(group) = cfg.group.as_deref() {
        match nix::unistd::Group::from_name(group) {
            Ok(Some(_)) => {}
            Ok(None) => return invalid("group", format!("unknown group {group:?}")),
            Err(e) => return invalid("group", format!("cannot look up group {group:?}: {e}")),
        }
    }
    Ok(())
}

/// `admin.mode`: octal permissions, at most 0777.
fn check_admin_mode(mode_text: &str) -> Check {
    let mode = mode_text.trim_start_matches("0o");
    if mode.is_empty() || u32::from_str_radix(mode, 8).map_or(true, |m| m > 0o777) {
        return invalid(
            "admin.mode",
            format!("invalid mode {mode_text:?}: expected octal permissions such as \"0600\""),
        );
    }
    Ok(())
}

/// No timeout may be 0.
fn check_timeouts(t: &raw::Timeouts) -> Check {
    for (field, value) in [
        ("client_header", t.client_header),
        ("client_body", t.client_body),
        ("client_send", t.client_send),
        ("keepalive", t.keepalive),
        ("connect", t.connect),
        ("upstream_read", t.upstream_read),
        ("upstream_write", t.upstream_write),
        ("queue", t.queue),
    ] {
        if value.get().is_zero() {
            return invalid(format!("timeouts.{field}"), "a timeout must not be 0");
        }
    }
    Ok(())
}

/// Makes every relative path absolute against `dir`, the config file's folder.
fn resolve_paths(cfg: &mut raw::Config, dir: &Path) -> Check {
    resolve_path("pid_file", &mut cfg.pid_file, dir)?;
    if let Some(sock) = &mut cfg.upgrade_sock {
        resolve_path("upgrade_sock", sock, dir)?;
    }
    if cfg.error_log.is_empty() {
        return invalid("error_log", "must be \"stderr\" or a file path");
    }
    if cfg.error_log != "stderr" {
        let mut p = PathBuf::from(&cfg.error_log);
        resolve_path("error_log", &mut p, dir)?;
        cfg.error_log = match p.into_os_string().into_string() {
            Ok(s) => s,
            Err(_) => return invalid("error_log", "the resolved path is not valid UTF-8"),
        };
    }
    if let Some(admin) = &mut cfg.admin {
        resolve_path("admin.socket", &mut admin.socket, dir)?;
    }
    if let Some(state) = &mut cfg.state_file {
        resolve_path("state_file", state, dir)?;
    }
    if let Some(log) = &mut cfg.access_log {
        resolve_path("access_log.path", &mut log.path, dir)?;
    }
    for (i, l) in cfg.listeners.iter_mut().enumerate() {
        if let Some(tls) = &mut l.tls {
            for (j, ck) in tls.certificates.iter_mut().enumerate() {
                let at = format!("listeners[{i}].tls.certificates[{j}]");
                resolve_path(&format!("{at}.cert"), &mut ck.cert, dir)?;
                resolve_path(&format!("{at}.key"), &mut ck.key, dir)?;
                if let Some(ocsp) = &mut ck.ocsp {
                    resolve_path(&format!("{at}.ocsp"), ocsp, dir)?;
                }
            }
            if let Some(auth) = &mut tls.client_auth {
                resolve_path(
                    &format!("listeners[{i}].tls.client_auth.ca"),
                    &mut auth.ca,
                    dir,
                )?;
            }
        }
    }
    for (name, up) in cfg.upstreams.0.iter_mut() {
        if let Some(tls) = up.tls.as_mut() {
            let files = [
                ("ca", tls.ca.as_mut()),
                ("cert", tls.cert.as_mut()),
                ("key", tls.key.as_mut()),
            ];
            for (key, path) in files {
                if let Some(p) = path {
                    resolve_path(&format!("upstreams.{name}.tls.{key}"), p, dir)?;
                }
            }
        }
    }
    Ok(())
}

fn resolve_path(field: &str, p: &mut PathBuf, dir: &Path) -> Check {
    if p.as_os_str().is_empty() {
        return invalid(field, "a path must not be empty");
    }
    if p.is_relative() {
        *p = dir.join(&*p);
    }
    Ok(())
}

/// Names show up in the runtime API (`backend/server`, `;`-separated commands, CSV rows),
/// so they may not contain the characters that API uses as separators.
fn check_name(field: &str, what: &str, name: &str) -> Check {
    if name.is_empty() {
        return invalid(field, format!("{what} name must not be empty"));
    }
    if name.contains(|c: char| c.is_whitespace() || c.is_control() || "/,;#".contains(c)) {
        return invalid(
            field,
            format!("{what} name {name:?} may not contain spaces, '/', ',', ';' or '#'"),
        );
    }
    Ok(())
}

/// No control characters (CR/LF would let a value inject header lines).
fn check_header_value(field: &str, what: &str, v: &str) -> Check {
    if v.contains(|c: char| c.is_control()) {
        return invalid(
            field,
            format!("{what} {v:?} may not contain control characters"),
        );
    }
    Ok(())
}

fn check_listeners(cfg: &raw::Config) -> Result<Vec<CheckedListener>, Invalid> {
    if cfg.listeners.is_empty() {
        return invalid("listeners", "at least one listener is required");
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut bound: HashMap<SocketAddr, String> = HashMap::new();
    // Looked up once per route: a map, not a scan of the upstreams.
    let upstreams: HashMap<&str, usize> = cfg
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut checked = Vec::with_capacity(cfg.listeners.len());
    let mut tables: Vec<String> = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = format!("listeners[{i}]");
        check_name(&format!("{at}.name"), "a listener", &l.name)?;
        if names.insert(&l.name, i).is_some() {
            return invalid(
                format!("{at}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        if l.bind.is_empty() {
            return invalid(
                format!("{at}.bind"),
                "a listener needs at least one address",
            );
        }
        let mut addrs = Vec::with_capacity(l.bind.len());
        for (j, b) in l.bind.iter().enumerate() {
            let field = format!("{at}.bind[{j}]");
            let addr = parse_bind(b).or_else(|m| invalid(&field, m))?;
            if let Some(first) = bound.get(&addr) {
                return invalid(
                    &field,
                    format!("address {addr} is bound twice (also {first})"),
                );
            }
            // A wildcard takes its port on every address of its family:
            // a specific address on the same port could not be bound.
            if let Some((other, first)) = bound.iter().find(|(b, _)| overlaps(**b, addr)) {
                return invalid(
                    &field,
                    format!(
                        "address {addr} overlaps {other} ({first}): a wildcard address takes its \
                         port on every address, so bind only one of them"
                    ),
                );
            }
            bound.insert(addr, field);
            addrs.push(addr);
        }
        if let Some(tls) = &l.tls {
            if tls.certificates.is_empty() {
                return invalid(
                    format!("{at}.tls.certificates"),
                    "at least one certificate is required",
                );
            }
            if l.h2c {
                return invalid(
                    format!("{at}.h2c"),
                    "h2c (HTTP/2 in clear text) is for plain listeners only; a TLS \
                     listener offers HTTP/2 by ALPN with `http2: true` (the default)",
                );
            }
        }
        let mut routes: Vec<Route> = l
            .routes
            .iter()
            .enumerate()
            .map(|(j, r)| check_route(&format!("{at}.routes[{j}]"), r, &upstreams))
            .collect::<Result<_, _>>()?;
        for r in &mut routes {
            number_limit_tables(&l.name, r, &mut tables);
        }
        checked.push(CheckedListener { addrs, routes });
    }
    Ok(checked)
}

/// Two different addresses of one family on the same port, one of them the
/// wildcard (`0.0.0.0`, `[::]`): the second bind fails (EADDRINUSE).
/// `[::]` is IPv6-only, so it does not overlap IPv4 addresses.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a != b
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn parse_bind(b: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = b.trim().parse().map_err(|_| {
        format!("invalid address {b:?}: expected IP:port, e.g. 0.0.0.0:8080 or [::]:8080")
    })?;
    if addr.port() == 0 {
        return Err(format!("invalid address {b:?}: port 0 is not allowed"));
    }
    Ok(addr)
}

/// Checks a route and compiles it; `upstreams` maps names to positions.
fn check_route(
    at: &str,
    r: &raw::Route,
    upstreams: &HashMap<&str, usize>,
) -> Result<Route, Invalid> {
    let host = match &r.host {
        Some(host) => Some(check_route_host(&format!("{at}.host"), host)?),
        None => None,
    };
    // Absent: every path.
    let path = match &r.path {
        Some(path) => check_route_path(&format!("{at}.path"), path)?,
        None => "/".to_owned(),
    };
    let action = check_route_action(at, &r.action, upstreams)?;
    if let Some(l) = &r.limit_req {
        limits::check_status(l.status).or_else(|m| invalid(format!("{at}.limit_req.status"), m))?;
        limits::check_size(l.size).or_else(|m| invalid(format!("{at}.limit_req.size"), m))?;
        if l.burst > crate::shm::MAX_BURST {
            return invalid(
                format!("{at}.limit_req.burst"),
                format!("burst may be at most {}", crate::shm::MAX_BURST),
            );
        }
    }
    if let Some(l) = &r.limit_conn {
        limits::check_status(l.status)
            .or_else(|m| invalid(format!("{at}.limit_conn.status"), m))?;
        limits::check_size(l.size).or_else(|m| invalid(format!("{at}.limit_conn.size"), m))?;
        if l.max == 0 {
            return invalid(format!("{at}.limit_conn.max"), "max must be at least 1");
        }
    }
    let access = check_access(at, r)?;
    let headers = check_header_rules(at, r, &action)?;
    Ok(Route {
        host: HostMatch::new(host.as_deref()),
        path,
        access,
        action,
        headers,
        // Numbered by `number_limit_tables` once the listener is known.
        limit_req: r.limit_req.clone().map(|spec| limits::Limit {
            spec,
            table: 0,
            table_name: String::new(),
        }),
        limit_conn: r.limit_conn.clone().map(|spec| limits::Limit {
            spec,
            table: 0,
            table_name: String::new(),
        }),
    })
}

/// Gives a route's limits their tables: the next index, and a name from
/// the listener, host and path (a second route of the same host and path,
/// unreachable but valid, gets `#2` appended).
fn number_limit_tables(listener: &str, r: &mut Route, tables: &mut Vec<String>) {
    let host = r.host.to_text();
    let mut name_for = |kind: &str| {
        let base = limits::table_name(listener, host.as_deref(), &r.path, kind);
        let mut name = base.clone();
        let mut n = 2;
        while tables.contains(&name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        tables.push(name.clone());
        (tables.len() - 1, name)
    };
    if let Some(l) = &mut r.limit_req {
        (l.table, l.table_name) = name_for("req");
    }
    if let Some(l) = &mut r.limit_conn {
        (l.table, l.table_name) = name_for("conn");
    }
}

/// `allow` / `deny`: each entry a CIDR block or an address; the error
/// names the entry (`listeners[0].routes[1].allow[2]`).
fn check_access(at: &str, r: &raw::Route) -> Result<Option<Box<Access>>, Invalid> {
    if r.allow.is_empty() && r.deny.is_empty() {
        return Ok(None);
    }
    let parse = |key: &str, list: &[String]| -> Result<Vec<Cidr>, Invalid> {
        list.iter()
            .enumerate()
            .map(|(j, s)| Cidr::parse(s.trim()).or_else(|m| invalid(format!("{at}.{key}[{j}]"), m)))
            .collect()
    };
    Ok(Some(Box::new(Access {
        allow: parse("allow", &r.allow)?,
        deny: parse("deny", &r.deny)?,
    })))
}

/// A route's `request_headers` / `response_headers`, checked (field names,
/// variables) and compiled; only routes to an upstream take them.
fn check_header_rules(
    at: &str,
    r: &raw::Route,
    action: &Action,
) -> Result<Option<std::sync::Arc<crate::http::header_rules::RouteHeaders>>, Invalid> {
    use crate::http::header_rules::{Edits, RouteHeaders};
    if r.request_headers.is_none() && r.response_headers.is_none() {
        return Ok(None);
    }
    if !matches!(action, Action::Upstream(_)) {
        return invalid(
            at.to_owned(),
            "request_headers and response_headers apply to routes with an upstream",
        );
    }
    let edits = |key: &str, rules: &Option<raw::HeaderRules>| -> Result<Edits, Invalid> {
        let Some(rules) = rules else {
            return Ok(Edits::default());
        };
        let pairs = |m: &raw::NamedMap<String>| {
            m.iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        Edits::new(pairs(&rules.set), pairs(&rules.add), rules.remove.clone())
            .or_else(|m| invalid(format!("{at}.{key}"), m))
    };
    Ok(Some(std::sync::Arc::new(RouteHeaders {
        request: edits("request_headers", &r.request_headers)?,
        response: edits("response_headers", &r.response_headers)?,
    })))
}

/// Checks what a route does and compiles it.
fn check_route_action(
    at: &str,
    action: &RouteAction,
    upstreams: &HashMap<&str, usize>,
) -> Result<Action, Invalid> {
    match action {
        RouteAction::Upstream(name) => match upstreams.get(name.as_str()) {
            Some(&u) => Ok(Action::Upstream(u)),
            None => invalid(
                format!("{at}.upstream"),
                format!("unknown upstream {name:?}"),
            ),
        },
        RouteAction::Return(ret) => check_return(at, ret),
        RouteAction::Redirect(red) => check_redirect(at, red),
        RouteAction::Metrics(format) => Ok(Action::Metrics(*format)),
        RouteAction::Stats(stats) => check_stats(at, stats),
    }
}

/// `stats`: its `allow` list, CIDR blocks as the route's `allow` takes.
fn check_stats(at: &str, stats: &raw::StatsAction) -> Result<Action, Invalid> {
    let allow = stats
        .allow
        .iter()
        .enumerate()
        .map(|(j, s)| {
            Cidr::parse(s.trim()).or_else(|m| invalid(format!("{at}.stats.allow[{j}]"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Action::Stats(crate::config::routing::Stats {
        allow,
        admin: stats.admin,
    }))
}

/// `return`: a final status (a 1xx is interim: a response would have to
/// follow it), no body where the status has none, and a content type fit
/// for a header.
fn check_return(at: &str, ret: &raw::ReturnAction) -> Result<Action, Invalid> {
    if !(200..=599).contains(&ret.status) {
        return invalid(
            format!("{at}.return.status"),
            format!(
                "status {} is out of range 200-599 (a return is the final response)",
                ret.status
            ),
        );
    }
    if matches!(ret.status, 204 | 304) && !ret.body.is_empty() {
        return invalid(
            format!("{at}.return.body"),
            format!(
                "a {} response has no body (RFC 9110 §15.3.5, §15.4.5): leave `body` out",
                ret.status
            ),
        );
    }
    if ret.content_type.is_empty() {
        return invalid(format!("{at}.return.content_type"), "must not be empty");
    }
    check_header_value(
        &format!("{at}.return.content_type"),
        "content type",
        &ret.content_type,
    )?;
    Ok(Action::Return {
        status: ret.status,
        content_type: ret.content_type.clone(),
        body: ret.body.clone().into_bytes(),
    })
}

/// `redirect`: a redirect status (`to` was parsed with the file, `RedirectTarget`).
fn check_redirect(at: &str, red: &raw::RedirectAction) -> Result<Action, Invalid> {
    if ![301, 302, 303, 307, 308].contains(&red.status) {
        return invalid(
            format!("{at}.redirect.status"),
            format!(
                "status {} is not a redirect status (301, 302, 303, 307 or 308)",
                red.status
            ),
        );
    }
    Ok(Action::Redirect {
        status: red.status,
        to: red.to.0.clone(),
    })
}

/// Validates a route path and returns it normalized: requests are matched on
/// their normalized path, so the route's own path is normalized the same way
/// (`/caf%C3%A9/` is `/café/`).
fn check_route_path(field: &str, path: &str) -> Result<String, Invalid> {
    if !path.starts_with('/') {
        return invalid(field, format!("path {path:?} must start with '/'"));
    }
    if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return invalid(
            field,
            format!("path {path:?} may not contain spaces or control characters"),
        );
    }
    if path.contains(['?', '#']) {
        return invalid(
            field,
            format!(
                "path {path:?} may not contain '?' or '#': routes match the path without the query"
            ),
        );
    }
    let normal = crate::http::path::normalize(path.as_bytes())
        .or_else(|e| invalid(field, format!("path {path:?}: {}", e.reason())))?;
    String::from_utf8(normal.into_owned()).or_else(|_| {
        invalid(
            field,
            format!("path {path:?} decodes to bytes that are not UTF-8"),
        )
    })
}

/// Validates a route host (`api.example.com` or `*.example.com`) and returns it lowercased.
fn check_route_host(field: &str, host: &str) -> Result<String, Invalid> {
    if host.is_empty() {
        return invalid(
            field,
            "host must not be empty (leave it out to match any host)",
        );
    }
    if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/') {
        return invalid(
            field,
            format!("host {host:?} may not contain spaces, control characters or '/'"),
        );
    }
    let mut lower = host.to_ascii_lowercase();
    // `example.com.` is the same name as `example.com`: requests are
    // routed without their trailing dot, and so is the route.
    if lower.len() > 1 && lower.ends_with('.') {
        lower.pop();
    }
    let rest = lower.strip_prefix("*.").unwrap_or(&lower);
    if rest.is_empty() || rest.contains('*') || rest.contains("..") || rest.ends_with('.') {
        return invalid(
            field,
            format!("invalid host {host:?}: expected an exact host or \"*.\" then a domain, e.g. *.example.com"),
        );
    }
    // A request is routed by its host without the port: a route with one
    // could never match.
    if !rest.starts_with('[') && rest.contains(':') {
        return invalid(
            field,
            format!("host {host:?} has a port: routes match the host alone (the port a request came to is its listener's)"),
        );
    }
    Ok(lower)
}

/// Checks the upstreams; returns their servers' addresses split.
fn check_upstreams(cfg: &mut raw::Config) -> Result<Vec<Vec<(String, u16)>>, Invalid> {
    let mut server_addrs = Vec::with_capacity(cfg.upstreams.len());
    for (name, up) in cfg.upstreams.0.iter_mut() {
        let at = format!("upstreams.{name}");
        check_name("upstreams", "an upstream", name)?;
        if up.retries > MAX_RETRIES {
            return invalid(
                format!("{at}.retries"),
                format!("retries {} is out of range 0-{MAX_RETRIES}", up.retries),
            );
        }
        // Its grammar was checked with the file (`HashKey`).
        if up.hash_key.is_some() && up.balance != Balance::Hash {
            return invalid(
                format!("{at}.hash_key"),
                "hash_key is only allowed with balance: hash",
            );
        }
        if let Some(h) = &up.host_header {
            if h.is_empty() {
                return invalid(
                    format!("{at}.host_header"),
                    "must not be empty (use null to keep the client's Host)",
                );
            }
            if h.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return invalid(
                    format!("{at}.host_header"),
                    format!("host {h:?} may not contain spaces or control characters"),
                );
            }
        }
        check_protocol(&at, up)?;
        if let Some(tls) = &up.tls {
            // A certificate without its key (or the reverse) cannot be
            // presented: say which half is missing.
            match (&tls.cert, &tls.key) {
                (Some(_), None) => {
                    return invalid(
                        format!("{at}.tls.key"),
                        "tls.cert needs tls.key (its private key)",
                    )
                }
                (None, Some(_)) => {
                    return invalid(
                        format!("{at}.tls.cert"),
                        "tls.key needs tls.cert (the certificate it belongs to)",
                    )
                }
                _ => {}
            }
        }
        if let Some(sni) = up.tls.as_ref().and_then(|t| t.sni.as_ref()) {
            if rustls::pki_types::ServerName::try_from(sni.as_str()).is_err() {
                return invalid(
                    format!("{at}.tls.sni"),
                    format!("invalid server name {sni:?}"),
                );
            }
        }
        if let Some(h) = &up.health {
            check_health(&format!("{at}.health"), h)?;
        }
        if up.resolve.is_some_and(|d| d.get() < MIN_RESOLVE_INTERVAL) {
            return invalid(
                format!("{at}.resolve"),
                format!("must be at least {}ms", MIN_RESOLVE_INTERVAL.as_millis()),
            );
        }
        server_addrs.push(check_servers(&at, up)?);
    }
    Ok(server_addrs)
}

/// `protocol` decides the transport together with `tls`: `h2` is only ever
/// negotiated by ALPN (so needs TLS), `h2c` is HTTP/2 in the clear.
fn check_protocol(at: &str, up: &raw::Upstream) -> Check {
    match (up.protocol, up.tls.is_some()) {
        (UpstreamProtocol::H2, false) => invalid(
            format!("{at}.protocol"),
            "h2 needs tls: (use h2c for HTTP/2 over plain TCP)",
        ),
        (UpstreamProtocol::H2c, true) => invalid(
            format!("{at}.protocol"),
            "h2c is HTTP/2 over plain TCP and cannot be combined with tls: (use h2 for HTTP/2 over TLS)",
        ),
        _ => Ok(()),
    }
}

fn check_health(at: &str, h: &raw::Health) -> Check {
    if h.interval.get().is_zero() {
        return invalid(format!("{at}.interval"), "must not be 0");
    }
    if h.timeout.get().is_zero() {
        return invalid(format!("{at}.timeout"), "must not be 0");
    }
    if h.rise == 0 {
        return invalid(format!("{at}.rise"), "must be at least 1");
    }
    if h.fall == 0 {
        return invalid(format!("{at}.fall"), "must be at least 1");
    }
    let bad_path = !h.path.starts_with('/')
        || h.path
            .contains(|c: char| c.is_whitespace() || c.is_control());
    if h.kind == HealthKind::Http && bad_path {
        return invalid(
            format!("{at}.path"),
            format!("path {:?} must start with '/' and have no spaces", h.path),
        );
    }
    Ok(())
}

/// Checks the servers (their names default to `addr`); returns their
/// addresses split into host and port.
fn check_servers(at: &str, up: &mut raw::Upstream) -> Result<Vec<(String, u16)>, Invalid> {
    if up.servers.is_empty() {
        return invalid(
            format!("{at}.servers"),
            "an upstream needs at least one server",
        );
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut addrs = Vec::with_capacity(up.servers.len());
    for (i, s) in up.servers.iter_mut().enumerate() {
        let sat = format!("{at}.servers[{i}]");
        let (host, port) =
            split_host_port(&s.addr).or_else(|m| invalid(format!("{sat}.addr"), m))?;
        addrs.push((host.to_owned(), port));
        if s.name.is_empty() {
            s.name = s.addr.clone();
        }
        check_name(&format!("{sat}.name"), "a server", &s.name)?;
        if names.insert(s.name.clone(), i).is_some() {
            return invalid(
                format!("{sat}.name"),
                format!("duplicate server name {:?}", s.name),
            );
        }
        if s.weight > MAX_WEIGHT {
            return invalid(
                format!("{sat}.weight"),
                format!("weight {} is out of range 0-{MAX_WEIGHT}", s.weight),
            );
        }
        if s.maxconn > MAX_MAXCONN {
            return invalid(
                format!("{sat}.maxconn"),
                format!(
                    "maxconn {} is out of range 0-{MAX_MAXCONN} (0 = no limit)",
                    s.maxconn
                ),
            );
        }
    }
    Ok(addrs)
}

/// Splits `host:port` or `[v6]:port`; the host is returned without brackets.
pub fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    if addr.is_empty() {
        return Err("a server needs an address (host:port)".to_owned());
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return Err(format!(
                "invalid address {addr:?}: expected [IPv6]:port, e.g. [::1]:8080"
            ));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "invalid address {addr:?}: {host:?} is not an IPv6 address"
            ));
        }
        (host, port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!(
                "invalid address {addr:?}: a port is required (host:port)"
            ));
        };
        if host.contains(':') {
            return Err(format!(
                "invalid address {addr:?}: an IPv6 address must be in brackets, e.g. [::1]:8080"
            ));
        }
        if host.is_empty()
            || host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(format!("invalid address {addr:?}: expected host:port"));
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok((host, p)),
        _ => Err(format!(
            "invalid address {addr:?}: the port must be a number 1-65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::looks_like_field_path;
    use crate::config::{HashKey, HostMatch, StatusRange};
    use std::time::Duration;

    const SOURCE: &str = "/etc/forklb/forklb.yaml";

    const MINIMAL: &str = r#"
listeners:
  - name: web
    bind: ["127.0.0.1:8080"]
    routes:
      - path: /healthz
        return: {status: 200, body: "ok\n"}
      - upstream: web
upstreams:
  web:
    servers:
      - {name: web1, addr: "127.0.0.1:9001", weight: 1}
      - {addr: "localhost:9002", weight: 3}
"#;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        from_yaml_str(yaml, Path::new(SOURCE))
    }

    fn ok(yaml: &str) -> Config {
        match parse(yaml) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got: {e}"),
        }
    }

    fn err(yaml: &str) -> ConfigError {
        match parse(yaml) {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(e) => e,
        }
    }

    /// Asserts the error's path and that its message contains `msg`.
    #[track_caller]
    fn assert_err(yaml: &str, path: &str, msg: &str) {
        let e = err(yaml);
        assert_eq!(e.path, path, "wrong path in: {e}");
        assert!(e.message.contains(msg), "{e:?} does not mention {msg:?}");
        assert_eq!(e.file, Path::new(SOURCE));
    }

    /// MINIMAL with `extra` top-level keys appended.
    fn with_top(extra: &str) -> String {
        format!("{MINIMAL}{extra}")
    }

    /// A one-listener config whose routes are `routes` (YAML list items indented 6).
    fn with_routes(routes: &str) -> String {
        format!(
            "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8080\"]\n    routes:\n{routes}\
             upstreams:\n  web:\n    servers: [{{addr: \"127.0.0.1:9001\"}}]\n"
        )
    }

    /// A config whose upstream `web` has the body `upstream` (keys indented 4).
    fn with_upstream(upstream: &str) -> String {
        format!(
            "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8080\"]\n    routes: [{{upstream: web}}]\n\
             upstreams:\n  web:\n{upstream}"
        )
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = ok(MINIMAL);
        assert_eq!(c.source, Path::new(SOURCE));
        assert_eq!(c.version, 1);
        assert_eq!(c.workers, Workers::Auto);
        assert!(!c.daemon);
        assert_eq!(c.pid_file, Path::new("/run/forklb/forklb.pid"));
        assert_eq!(c.upgrade_sock, None);
        assert_eq!(c.upgrade_sock_path(), Path::new("/run/forklb/upgrade.sock"));
        assert_eq!(c.upgrade_grace(), Duration::ZERO);
        assert_eq!(c.upgrade_timeout, Duration::from_secs(30));
        assert_eq!(c.error_log, "stderr");
        assert_eq!(c.worker_connections, 10_000);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.timeouts.client_header, Duration::from_secs(10));
        assert_eq!(c.timeouts.client_body, Duration::from_secs(60));
        assert_eq!(c.timeouts.keepalive, Duration::from_secs(75));
        assert_eq!(c.timeouts.connect, Duration::from_secs(5));
        assert_eq!(c.timeouts.upstream_read, Duration::from_secs(60));
        assert_eq!(c.timeouts.upstream_write, Duration::from_secs(60));
        assert_eq!(c.max_header_bytes as u64, 16 * 1024);
        assert_eq!(c.max_body_bytes, 0);
        assert!(c.admin.is_none() && c.access_log.is_none());

        let l = &c.listeners[0];
        assert_eq!(
            l.addrs,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        let Action::Return {
            status,
            content_type,
            body,
        } = &l.routes[0].action
        else {
            panic!("{:?}", l.routes[0].action)
        };
        assert_eq!((*status, body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(content_type, "text/plain");
        // Routes name upstreams by position.
        assert!(matches!(l.routes[1].action, Action::Upstream(0)));

        let up = c.upstreams.by_name("web").unwrap();
        assert_eq!(up.balance, Balance::Roundrobin);
        assert_eq!(up.keepalive, 32);
        assert_eq!(up.retries, 1);
        assert!(up.host_header.is_none() && up.tls.is_none() && up.health.is_none());
        assert_eq!(up.servers[0].name, "web1");
        assert_eq!(up.servers[0].weight, 1);
        assert_eq!(up.servers[0].addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(up.servers[1].name, "localhost:9002");
        assert_eq!(up.servers[1].weight, 3);
        assert!(!up.servers[1].backup);
        let resolved = up.servers[1].addr;
        assert!(resolved.ip().is_loopback() && resolved.port() == 9002);
    }

    #[test]
    fn server_maxconn_and_queue_timeout() {
        let c = ok(MINIMAL);
        assert_eq!(c.timeouts.queue, Duration::from_secs(5));
        assert_eq!(c.upstreams[0].servers[0].maxconn, 0, "no limit by default");
        let c = ok(&with_upstream(
            "    servers:\n      - {addr: \"127.0.0.1:1\", maxconn: 100}\n      - {addr: \"127.0.0.1:2\", maxconn: 0}\n",
        ));
        let maxconns: Vec<u32> = c.upstreams[0].servers.iter().map(|s| s.maxconn).collect();
        assert_eq!(maxconns, [100, 0]);
        let c = ok(&with_top("timeouts: {queue: 250ms}\n"));
        assert_eq!(c.timeouts.queue, Duration::from_millis(250));
        assert_err(
            &with_top("timeouts: {queue: 0}\n"),
            "timeouts.queue",
            "a timeout must not be 0",
        );
        assert_err(
            &with_upstream("    servers: [{addr: \"127.0.0.1:1\", maxconn: 2147483648}]\n"),
            "upstreams.web.servers[0].maxconn",
            "maxconn 2147483648 is out of range 0-2147483647 (0 = no limit)",
        );
        for bad in ["-1", "ten", "1.5"] {
            let e = err(&with_upstream(&format!(
                "    servers: [{{addr: \"127.0.0.1:1\", maxconn: {bad}}}]\n"
            )));
            assert_eq!(e.path, "upstreams.web.servers[0].maxconn", "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_for_omitted_weight_and_redirect_status() {
        let c = ok(&with_routes(
            "      - {path: /old/, redirect: {to: \"https://example.com/\"}}\n      - {upstream: web}\n",
        ));
        let up = c.upstreams.by_name("web").unwrap();
        assert_eq!(up.servers[0].weight, 1);
        assert_eq!(up.servers[0].name, "127.0.0.1:9001");
        assert!(matches!(
            &c.listeners[0].routes[0].action,
            Action::Redirect { status: 302, .. }
        ));
    }

    #[test]
    fn workers_and_threads_alias() {
        assert_eq!(ok(&with_top("workers: 4\n")).workers, Workers::Count(4));
        assert_eq!(ok(&with_top("threads: 3\n")).workers, Workers::Count(3));
        assert_eq!(ok(&with_top("workers: \"2\"\n")).workers, Workers::Count(2));
        assert_eq!(ok(&with_top("workers: auto\n")).workers, Workers::Auto);
        let e = err(&with_top("workers: 2\nthreads: 2\n"));
        assert!(e.message.contains("duplicate field"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_line_and_column() {
        let e = err(&with_top("bogus: 1\n"));
        assert_eq!(e.line_col, Some((14, 1)));
        assert_eq!(e.path, "");
        assert!(e.message.starts_with("unknown field `bogus`"), "{e}");
        assert!(!e.message.contains(" at line "), "{e}");
        assert!(e
            .to_string()
            .starts_with("/etc/forklb/forklb.yaml:14:1: unknown field `bogus`"));

        let e = err(&with_routes("      - path: /\n        upstrem: web\n"));
        assert_eq!(e.path, "listeners[0].routes[0]");
        assert_eq!(e.line_col, Some((6, 9)));
        assert!(e.message.starts_with("unknown field `upstrem`"), "{e}");
        assert!(e.to_string().starts_with(
            "/etc/forklb/forklb.yaml:6:9: listeners[0].routes[0]: unknown field `upstrem`"
        ));

        let e = err(&with_upstream(
            "    servers: [{addr: \"127.0.0.1:1\", wieght: 2}]\n",
        ));
        assert_eq!(e.path, "upstreams.web.servers[0]");
        assert!(e.message.contains("unknown field `wieght`"), "{e}");
        assert!(e.line_col.is_some());
    }

    #[test]
    fn syntax_and_type_errors() {
        let e = err("listeners:\n  - name: web\n   bind: x\n");
        assert!(e.line_col.is_some(), "{e}");
        assert!(!e.message.is_empty());

        let e = err(&with_upstream(
            "    servers: [{addr: \"127.0.0.1:1\", weight: -1}]\n",
        ));
        assert_eq!(e.path, "upstreams.web.servers[0].weight");
        assert!(e.message.contains("invalid type"), "{e}");

        let e = err(&with_top("timeouts: {keepalive: 10x}\n"));
        assert!(e.message.contains("invalid duration \"10x\""), "{e}");
        assert!(e.line_col.is_some());

        let e = err(&with_top("log_level: loud\n"));
        assert_eq!(e.path, "log_level");
        assert!(e.message.contains("unknown variant `loud`"), "{e}");

        let e = err("upstreams:\n  web: {servers: []}\n  web: {servers: []}\n");
        assert!(e.message.contains("duplicate name \"web\""), "{e}");
    }

    #[test]
    fn empty_file_is_an_error() {
        for text in ["", "\n", "# nothing here\n"] {
            let e = err(text);
            assert!(e.message.contains("no listeners"), "{e}");
        }
        assert_err(
            "version: 1\nlisteners: []\n",
            "listeners",
            "at least one listener is required",
        );
    }

    #[test]
    fn durations_and_sizes_as_strings_and_integers() {
        let c = ok(&with_top(
            "shutdown_timeout: 0\ntimeouts:\n  client_header: 500ms\n  keepalive: 90\n  connect: \"2m\"\n  upstream_read: 1h\nlimits:\n  max_header_bytes: 8192\n  max_body_bytes: 1m\n",
        ));
        assert_eq!(c.shutdown_timeout, Duration::ZERO);
        assert_eq!(c.timeouts.client_header, Duration::from_millis(500));
        assert_eq!(c.timeouts.keepalive, Duration::from_secs(90));
        assert_eq!(c.timeouts.connect, Duration::from_secs(120));
        assert_eq!(c.timeouts.upstream_read, Duration::from_secs(3600));
        assert_eq!(c.timeouts.client_body, Duration::from_secs(60));
        assert_eq!(c.max_header_bytes as u64, 8192);
        assert_eq!(c.max_body_bytes, 1 << 20);
        let c = ok(&with_top("limits: {max_header_bytes: \"32k\"}\n"));
        assert_eq!(c.max_header_bytes as u64, 32 * 1024);
    }

    #[test]
    fn global_semantic_errors() {
        assert_err(
            &with_top("version: 2\n"),
            "version",
            "unsupported version 2",
        );
        assert_err(&with_top("workers: 0\n"), "workers", "at least 1");
        assert_err(&with_top("threads: 0\n"), "workers", "at least 1");
        assert_err(&with_top("workers: 1025\n"), "workers", "maximum of 1024");
        ok(&with_top("workers: 1024\n"));
        assert_err(
            &with_top("worker_connections: 0\n"),
            "worker_connections",
            "at least 1",
        );
        for huge in ["500001", "18446744073709551615"] {
            assert_err(
                &with_top(&format!("worker_connections: {huge}\n")),
                "worker_connections",
                "more than the maximum of 500000",
            );
        }
        assert_eq!(
            ok(&with_top("worker_connections: 500000\n")).worker_connections,
            500_000
        );
        assert_err(
            &with_top("timeouts: {keepalive: 0s}\n"),
            "timeouts.keepalive",
            "must not be 0",
        );
        assert_err(
            &with_top("timeouts: {connect: 0}\n"),
            "timeouts.connect",
            "must not be 0",
        );
        assert_err(
            &with_top("limits: {max_header_bytes: 512}\n"),
            "limits.max_header_bytes",
            "out of range 1k-1m",
        );
        assert_err(
            &with_top("limits: {max_header_bytes: 2m}\n"),
            "limits.max_header_bytes",
            "out of range 1k-1m",
        );
        ok(&with_top("limits: {max_header_bytes: 1k}\n"));
        ok(&with_top("limits: {max_header_bytes: 1m}\n"));
        assert_err(
            &with_top("pid_file: \"\"\n"),
            "pid_file",
            "must not be empty",
        );
        assert_err(&with_top("error_log: \"\"\n"), "error_log", "stderr");
    }

    #[test]
    fn listener_errors() {
        let two = |a: &str, b: &str| {
            format!(
                "listeners:\n  - {{name: web, bind: [\"127.0.0.1:8080\"], routes: [{{upstream: web}}]}}\n  - {a}\n{b}\
                 upstreams:\n  web: {{servers: [{{addr: \"127.0.0.1:9001\"}}]}}\n"
            )
        };
        assert_err(
            &two("{name: web, bind: [\"127.0.0.1:8081\"]}", ""),
            "listeners[1].name",
            "duplicate listener name \"web\"",
        );
        assert_err(
            &two("{name: \"\", bind: [\"127.0.0.1:8081\"]}", ""),
            "listeners[1].name",
            "must not be empty",
        );
        assert_err(
            &two("{name: api, bind: []}", ""),
            "listeners[1].bind",
            "a listener needs at least one address",
        );
        assert_err(
            &two("{name: api}", ""),
            "listeners[1].bind",
            "a listener needs at least one address",
        );
        assert_err(
            &two(
                "{name: api, bind: [\"[::1]:8081\", \"localhost:8082\"]}",
                "",
            ),
            "listeners[1].bind[1]",
            "invalid address \"localhost:8082\"",
        );
        assert_err(
            &two("{name: api, bind: [\"127.0.0.1\"]}", ""),
            "listeners[1].bind[0]",
            "invalid address",
        );
        assert_err(
            &two("{name: api, bind: [\"127.0.0.1:0\"]}", ""),
            "listeners[1].bind[0]",
            "port 0",
        );
        assert_err(
            &two(
                "{name: api, bind: [\"127.0.0.1:8081\", \"127.0.0.1:8080\"]}",
                "",
            ),
            "listeners[1].bind[1]",
            "address 127.0.0.1:8080 is bound twice (also listeners[0].bind[0])",
        );
        // The first listener binds 127.0.0.1:8080: 0.0.0.0:8080 could not.
        assert_err(
            &two("{name: api, bind: [\"0.0.0.0:8080\"]}", ""),
            "listeners[1].bind[0]",
            "address 0.0.0.0:8080 overlaps 127.0.0.1:8080 (listeners[0].bind[0])",
        );
        assert!(overlaps(
            "[::]:80".parse().unwrap(),
            "[::1]:80".parse().unwrap()
        ));
        assert!(!overlaps(
            "[::]:80".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap()
        ));
        assert!(!overlaps(
            "0.0.0.0:80".parse().unwrap(),
            "127.0.0.1:81".parse().unwrap()
        ));
        let c = ok(&two(
            "{name: api, bind: [\"[::1]:8081\", \"0.0.0.0:8081\"]}",
            "",
        ));
        assert_eq!(
            c.listeners[1].addrs,
            vec![
                "[::1]:8081".parse::<SocketAddr>().unwrap(),
                "0.0.0.0:8081".parse().unwrap()
            ]
        );
        assert_eq!(c.listeners[1].name, "api");
        assert!(c.listeners[1].routes.is_empty());
    }

    #[test]
    fn route_errors() {
        assert_err(
            &with_routes("      - {upstream: web}\n      - {path: /x}\n"),
            "listeners[0].routes[1]",
            "a route needs an action",
        );
        assert_err(
            &with_routes("      - {upstream: web, return: {status: 200}}\n"),
            "listeners[0].routes[0]",
            "exactly one action, found upstream and return",
        );
        assert_err(
            &with_routes("      - {path: /a/, upstream: web}\n      - {path: /b/, upstream: web}\n      - {upstream: foo}\n"),
            "listeners[0].routes[2].upstream",
            "unknown upstream \"foo\"",
        );
        assert_err(
            &with_routes("      - {path: api/, upstream: web}\n"),
            "listeners[0].routes[0].path",
            "must start with '/'",
        );
        assert_err(
            &with_routes("      - {host: \"\", upstream: web}\n"),
            "listeners[0].routes[0].host",
            "must not be empty",
        );
        assert_err(
            &with_routes("      - {host: \"api.*.com\", upstream: web}\n"),
            "listeners[0].routes[0].host",
            "invalid host",
        );
        assert_err(
            &with_routes("      - {host: \"*.\", upstream: web}\n"),
            "listeners[0].routes[0].host",
            "invalid host",
        );
        assert_err(
            &with_routes("      - {host: \"example.com:80\", upstream: web}\n"),
            "listeners[0].routes[0].host",
            "has a port",
        );
        assert_err(
            &with_routes("      - {host: \"a..example.com\", upstream: web}\n"),
            "listeners[0].routes[0].host",
            "invalid host",
        );
        assert_err(
            &with_routes("      - {return: {status: 600}}\n"),
            "listeners[0].routes[0].return.status",
            "status 600 is out of range 200-599",
        );
        assert_err(
            &with_routes("      - {return: {status: 99}}\n"),
            "listeners[0].routes[0].return.status",
            "out of range",
        );
        assert_err(
            &with_routes("      - {return: {status: 101}}\n"),
            "listeners[0].routes[0].return.status",
            "out of range 200-599",
        );
        assert_err(
            &with_routes("      - {return: {status: 100}}\n"),
            "listeners[0].routes[0].return.status",
            "final response",
        );
        assert_err(
            &with_routes("      - {return: {status: 204, body: x}}\n"),
            "listeners[0].routes[0].return.body",
            "has no body",
        );
        assert_err(
            &with_routes("      - {redirect: {to: /x, status: 200}}\n"),
            "listeners[0].routes[0].redirect.status",
            "not a redirect status",
        );
        assert_err(
            &with_routes("      - {redirect: {to: \"\"}}\n"),
            "listeners[0].routes[0].redirect.to",
            "must not be empty",
        );
        assert_err(
            &with_routes("      - {redirect: {status: 301}}\n"),
            "listeners[0].routes[0].redirect",
            "missing field `to`",
        );

        let c = ok(&with_routes(
            "      - {host: API.Example.COM, path: /api/, upstream: web}\n      - {host: \"*.Example.com\", return: {status: 404}}\n      - {redirect: {to: \"https://x/\", status: 308}}\n",
        ));
        let r = &c.listeners[0].routes;
        assert_eq!(r[0].host, HostMatch::Exact("api.example.com".to_owned()));
        assert_eq!(r[1].host, HostMatch::Suffix(".example.com".to_owned()));
        assert!(matches!(&r[2].action, Action::Redirect { status: 308, .. }));
    }

    #[test]
    fn upstream_errors() {
        assert_err(
            &with_upstream("    servers: []\n"),
            "upstreams.web.servers",
            "an upstream needs at least one server",
        );
        assert_err(
            &with_upstream("    keepalive: 4\n"),
            "upstreams.web.servers",
            "an upstream needs at least one server",
        );
        assert_err(
            &with_upstream(
                "    servers:\n      - {addr: \"127.0.0.1:1\"}\n      - {addr: \"127.0.0.1:2\", weight: 300}\n",
            ),
            "upstreams.web.servers[1].weight",
            "weight 300 is out of range 0-256",
        );
        ok(&with_upstream(
            "    servers:\n      - {addr: \"127.0.0.1:1\", weight: 0}\n      - {addr: \"127.0.0.1:2\", weight: 256}\n",
        ));
        assert_err(
            &with_upstream(
                "    servers:\n      - {name: a, addr: \"127.0.0.1:1\"}\n      - {name: a, addr: \"127.0.0.1:2\"}\n",
            ),
            "upstreams.web.servers[1].name",
            "duplicate server name \"a\"",
        );
        assert_err(
            &with_upstream(
                "    servers:\n      - {addr: \"127.0.0.1:1\"}\n      - {addr: \"127.0.0.1:1\"}\n",
            ),
            "upstreams.web.servers[1].name",
            "duplicate server name \"127.0.0.1:1\"",
        );
        assert_err(
            &with_upstream("    servers: [{name: \"a/b\", addr: \"127.0.0.1:1\"}]\n"),
            "upstreams.web.servers[0].name",
            "may not contain",
        );
        for (addr, msg) in [
            ("127.0.0.1", "a port is required"),
            ("127.0.0.1:", "port must be"),
            ("127.0.0.1:0", "port must be"),
            ("127.0.0.1:70000", "port must be"),
            ("::1:80", "brackets"),
            ("[::1]", "[IPv6]:port"),
            ("[nope]:80", "not an IPv6 address"),
            ("", "needs an address"),
        ] {
            assert_err(
                &with_upstream(&format!("    servers: [{{addr: \"{addr}\"}}]\n")),
                "upstreams.web.servers[0].addr",
                msg,
            );
        }
        let c = ok(&with_upstream("    servers: [{addr: \"[::1]:9000\"}]\n"));
        let s = &c.upstreams.by_name("web").unwrap().servers[0];
        assert_eq!(s.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(s.name, "[::1]:9000");

        assert_err(
            &with_upstream("    retries: 17\n    servers: [{addr: \"127.0.0.1:1\"}]\n"),
            "upstreams.web.retries",
            "retries 17 is out of range 0-16",
        );
        assert_err(
            &with_upstream("    hash_key: source\n    servers: [{addr: \"127.0.0.1:1\"}]\n"),
            "upstreams.web.hash_key",
            "only allowed with balance: hash",
        );
        assert_err(
            &with_upstream(
                "    balance: hash\n    hash_key: body\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
            ),
            "upstreams.web.hash_key",
            "invalid hash_key \"body\"",
        );
        assert_err(
            &with_upstream(
                "    balance: hash\n    hash_key: \"header:\"\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
            ),
            "upstreams.web.hash_key",
            "invalid hash_key",
        );
        assert_err(
            &with_upstream(
                "    host_header: \"a\\r\\nb\"\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
            ),
            "upstreams.web.host_header",
            "control characters",
        );
        assert_err(
            "listeners:\n  - {name: web, bind: [\"127.0.0.1:8080\"], routes: [{return: {status: 204}}]}\nupstreams:\n  \"\": {servers: [{addr: \"127.0.0.1:1\"}]}\n",
            "upstreams",
            "must not be empty",
        );
    }

    #[test]
    fn hash_keys_accepted_by_the_format_check() {
        for key in ["source", "uri", "header:X-User", "cookie:session"] {
            assert!(HashKey::parse(key).is_ok(), "{key}");
        }
        for key in ["", "src", "header:", "cookie:a b", "header"] {
            assert!(HashKey::parse(key).is_err(), "{key}");
        }
    }

    #[test]
    fn unresolvable_server_names_the_server_and_host() {
        let e = err(&with_upstream(
            "    servers:\n      - {addr: \"127.0.0.1:1\"}\n      - {addr: \"no-such-host.invalid:80\"}\n",
        ));
        assert_eq!(e.path, "upstreams.web.servers[1].addr");
        assert!(
            e.message
                .contains("cannot resolve host \"no-such-host.invalid\""),
            "{e}"
        );
    }

    #[test]
    fn optional_features_are_checked_at_their_field() {
        ok(&with_top("daemon: true\n"));
        ok(&with_top("daemon: false\n"));
        ok(&with_top("user: nobody\n"));
        assert_err(
            &with_top("user: no-such-user-forklb\n"),
            "user",
            "unknown user",
        );
        assert_err(
            &with_top("group: no-such-group-forklb\n"),
            "group",
            "unknown group",
        );
        ok(&with_top("admin: {socket: admin.sock}\n"));
        ok(&with_top(
            "admin: {socket: admin.sock, level: operator}\nstate_file: s.state\n",
        ));
        ok(&with_top("access_log: {path: access.log, format: json}\n"));
        ok(&with_routes(
            "      - {path: /metrics, metrics: prometheus}\n      - {upstream: web}\n",
        ));
        assert_err(
            "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8443\"]\n    tls:\n      certificates: [{cert: a.crt, key: a.key}]\n    routes: [{return: {status: 200}}]\n",
            "listeners[0].tls.certificates[0]",
            "cannot read certificate file",
        );
        for balance in [
            "roundrobin",
            "static-rr",
            "first",
            "leastconn",
            "random",
            "hash",
        ] {
            ok(&with_upstream(&format!(
                "    balance: {balance}\n    servers: [{{addr: \"127.0.0.1:1\"}}]\n"
            )));
        }
        ok(&with_upstream(
            "    tls: {sni: example.com}\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
        ));
        ok(&with_upstream(
            "    tls: {verify: false}\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
        ));
        assert_err(
            &with_upstream(
                "    tls: {ca: missing-ca.pem}\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
            ),
            "upstreams.web.tls.ca",
            "cannot read certificate file",
        );
        assert_err(
            &with_upstream("    tls: {cert: c.crt}\n    servers: [{addr: \"127.0.0.1:1\"}]\n"),
            "upstreams.web.tls.key",
            "tls.cert needs tls.key",
        );
        assert_err(
            &with_upstream("    tls: {key: c.key}\n    servers: [{addr: \"127.0.0.1:1\"}]\n"),
            "upstreams.web.tls.cert",
            "tls.key needs tls.cert",
        );
        assert_err(
            &with_upstream(
                "    tls: {cert: missing.crt, key: missing.key}\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
            ),
            "upstreams.web.tls.cert",
            "missing.crt",
        );
        let dir = std::env::temp_dir().join(format!("forklb-upstream-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["c.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("c.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        let (crt, okey) = (dir.join("c.crt"), dir.join("other.key"));
        assert_err(
            &with_upstream(&format!(
                "    tls: {{cert: {}, key: {}}}\n    servers: [{{addr: \"127.0.0.1:1\"}}]\n",
                crt.display(),
                dir.join("missing.key").display()
            )),
            "upstreams.web.tls.key",
            "missing.key",
        );
        assert_err(
            &with_upstream(&format!(
                "    tls: {{cert: {}, key: {}}}\n    servers: [{{addr: \"127.0.0.1:1\"}}]\n",
                crt.display(),
                okey.display()
            )),
            "upstreams.web.tls.key",
            "does not match the certificate",
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_err(
            &with_upstream(
                "    tls: {sni: \"bad name\"}\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
            ),
            "upstreams.web.tls.sni",
            "invalid server name",
        );
        ok(&with_upstream(
            "    tls: null\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
        ));
        ok(&with_upstream(
            "    health: {type: http}\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
        ));
    }

    #[test]
    fn optional_features_validate_their_values() {
        assert_err(
            &with_top("admin: {socket: a.sock, mode: \"0999\"}\n"),
            "admin.mode",
            "invalid mode",
        );
        assert_err(
            "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8443\"]\n    tls: {certificates: []}\n    routes: [{return: {status: 200}}]\n",
            "listeners[0].tls.certificates",
            "at least one certificate",
        );
        assert_err(
            &with_upstream(
                "    health: {type: http, expect_status: \"399-200\"}\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
            ),
            "upstreams.web.health.expect_status",
            "invalid status range",
        );
        assert_err(
            &with_upstream("    health: {interval: 0}\n    servers: [{addr: \"127.0.0.1:1\"}]\n"),
            "upstreams.web.health.interval",
            "must not be 0",
        );
        let range = |s| StatusRange::parse(s).ok().map(|r| (r.low, r.high));
        assert_eq!(range("200-399"), Some((200, 399)));
        assert_eq!(range("204"), Some((204, 204)));
        assert_eq!(range("99"), None);
        assert_eq!(range("x"), None);
    }

    #[test]
    fn http2_defaults_and_values() {
        let c = ok(MINIMAL);
        assert_eq!(
            c.http2,
            crate::config::Http2Settings {
                max_concurrent_streams: 128,
                initial_window_size: 65_536,
                max_header_list_size: 65_536,
            }
        );
        assert_eq!(c.http2, Default::default());
        // A plain listener: no h2c unless asked; `http2` defaults to true.
        let l = &c.listeners[0];
        assert!(l.http2 && !l.h2c && !l.speaks_h2());

        let c = ok(&with_top(
            "http2: {max_concurrent_streams: 1, initial_window_size: 2147483647, max_header_list_size: 1k}
",
        ));
        assert_eq!(c.http2.max_concurrent_streams, 1);
        assert_eq!(c.http2.initial_window_size, (1 << 31) - 1);
        assert_eq!(c.http2.max_header_list_size, 1024);
        let c = ok(&with_top(
            "http2: {max_concurrent_streams: 2147483647, initial_window_size: \"1m\", max_header_list_size: 16m}\n",
        ));
        assert_eq!(c.http2.max_concurrent_streams, (1 << 31) - 1);
        assert_eq!(c.http2.initial_window_size, 1 << 20);
        assert_eq!(c.http2.max_header_list_size, 16 << 20);
        // Only the keys set change.
        let c = ok(&with_top("http2: {initial_window_size: 16k}\n"));
        assert_eq!(c.http2.initial_window_size, 16 * 1024);
        assert_eq!(c.http2.max_concurrent_streams, 128);

        let two = |extra: &str| {
            format!(
                "listeners:\n  - {{name: web, bind: [\"127.0.0.1:8080\"], routes: [{{upstream: web}}]}}\n  - {{name: api, bind: [\"127.0.0.1:8081\"], {extra}routes: [{{upstream: web}}]}}\n\
                 upstreams:\n  web: {{servers: [{{addr: \"127.0.0.1:9001\"}}]}}\n"
            )
        };
        let c = ok(&two("h2c: true, "));
        assert!(c.listeners[1].h2c && c.listeners[1].speaks_h2());
        assert!(!c.listeners[0].h2c);
        let c = ok(&two("http2: false, "));
        assert!(!c.listeners[1].http2 && !c.listeners[1].speaks_h2());
    }

    #[test]
    fn http2_errors_name_their_field() {
        for (yaml, field, msg) in [
            (
                "max_concurrent_streams: 0",
                "max_concurrent_streams",
                "0 is out of range 1-2147483647",
            ),
            (
                "max_concurrent_streams: 2147483648",
                "max_concurrent_streams",
                "2147483648 is out of range 1-2147483647",
            ),
            (
                "initial_window_size: 0",
                "initial_window_size",
                "0 bytes is out of range 1-2147483647",
            ),
            (
                "initial_window_size: 2g",
                "initial_window_size",
                "out of range 1-2147483647 (2^31-1)",
            ),
            (
                "max_header_list_size: 512",
                "max_header_list_size",
                "512 bytes is out of range 1k-16m",
            ),
            (
                "max_header_list_size: 17m",
                "max_header_list_size",
                "out of range 1k-16m",
            ),
        ] {
            assert_err(
                &with_top(&format!("http2: {{{yaml}}}\n")),
                &format!("http2.{field}"),
                msg,
            );
        }
        let e = err(&with_top("http2: {max_concurrent_streams: -1}\n"));
        assert!(e.message.contains("invalid"), "{e}");
        let e = err(&with_top("http2: {initial_window_size: 10x}\n"));
        assert!(e.message.contains("10x"), "{e}");
        let e = err(&with_top("http2: {max_streams: 10}\n"));
        assert!(e.message.contains("unknown field `max_streams`"), "{e}");
        let e = err(&with_routes("      - {upstream: web}\n")
            .replace("    routes:", "    h2c: maybe\n    routes:"));
        assert!(e.message.contains("invalid"), "{e}");
    }

    #[test]
    fn upstream_protocol_defaults_to_http1_and_is_checked_against_tls() {
        let servers = "    servers: [{addr: \"127.0.0.1:1\"}]\n";
        let protocol = |body: &str| ok(&with_upstream(body)).upstreams[0].protocol;
        assert_eq!(protocol(servers), UpstreamProtocol::Http1);
        assert!(!UpstreamProtocol::Http1.is_h2());
        assert_eq!(
            protocol(&format!("    protocol: http1\n{servers}")),
            UpstreamProtocol::Http1
        );
        let h2c = protocol(&format!("    protocol: h2c\n{servers}"));
        assert_eq!(h2c, UpstreamProtocol::H2c);
        assert!(h2c.is_h2());
        let h2 = protocol(&format!(
            "    protocol: h2\n    tls: {{verify: false}}\n{servers}"
        ));
        assert_eq!(h2, UpstreamProtocol::H2);
        assert!(h2.is_h2());
        assert_err(
            &with_upstream(&format!("    protocol: h2\n{servers}")),
            "upstreams.web.protocol",
            "h2 needs tls: (use h2c for HTTP/2 over plain TCP)",
        );
        assert_err(
            &with_upstream(&format!("    protocol: h2\n    tls: null\n{servers}")),
            "upstreams.web.protocol",
            "h2 needs tls:",
        );
        assert_err(
            &with_upstream(&format!(
                "    protocol: h2c\n    tls: {{verify: false}}\n{servers}"
            )),
            "upstreams.web.protocol",
            "cannot be combined with tls:",
        );
        let e = err(&with_upstream(&format!("    protocol: http2\n{servers}")));
        assert!(e.path.contains("protocol"), "{e}");
    }

    #[test]
    fn upstream_tls_offers_h2_alone_for_protocol_h2() {
        let servers = "    tls: {verify: false}\n    servers: [{addr: \"127.0.0.1:1\"}]\n";
        let alpn = |body: &str| {
            let c = ok(&with_upstream(body));
            c.upstreams[0].tls.as_ref().unwrap().alpn_protocols.clone()
        };
        assert_eq!(alpn(servers), vec![b"http/1.1".to_vec()]);
        assert_eq!(
            alpn(&format!("    protocol: http1\n{servers}")),
            vec![b"http/1.1".to_vec()]
        );
        assert_eq!(
            alpn(&format!("    protocol: h2\n{servers}")),
            vec![b"h2".to_vec()]
        );
    }

    #[test]
    fn upstream_protocol_prints_and_reads_back() {
        let c = ok(&with_upstream(
            "    protocol: h2c\n    servers: [{addr: \"127.0.0.1:1\"}]\n",
        ));
        let yaml = c.to_yaml();
        assert!(yaml.contains("protocol: h2c"), "{yaml}");
        assert_eq!(ok(&yaml).upstreams[0].protocol, UpstreamProtocol::H2c);
        let yaml = ok(&with_upstream("    servers: [{addr: \"127.0.0.1:1\"}]\n")).to_yaml();
        assert!(yaml.contains("protocol: http1"), "{yaml}");
    }

    #[test]
    fn h2c_on_a_tls_listener_is_an_error() {
        // Checked before the certificate files are read.
        assert_err(
            "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8443\"]\n    h2c: true\n    tls:\n      certificates: [{cert: a.crt, key: a.key}]\n    routes: [{return: {status: 200}}]\n",
            "listeners[0].h2c",
            "h2c (HTTP/2 in clear text) is for plain listeners only",
        );
        // `h2c: false` is what it means anyway: accepted.
        assert_err(
            "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8443\"]\n    h2c: false\n    tls:\n      certificates: [{cert: a.crt, key: a.key}]\n    routes: [{return: {status: 200}}]\n",
            "listeners[0].tls.certificates[0]",
            "a.crt",
        );
    }

    #[test]
    fn tls_listeners_offer_h2_by_alpn_unless_http2_false() {
        let dir = std::env::temp_dir().join(format!("forklb-alpn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("a.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("a.key"), key.serialize_pem()).unwrap();
        let yaml = |extra: &str| {
            format!(
                "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8443\"]\n{extra}    tls:\n      certificates: [{{cert: a.crt, key: a.key}}]\n    routes: [{{return: {{status: 200}}}}]\n"
            )
        };
        let source = dir.join("forklb.yaml");
        let alpn = |extra: &str| {
            let c = from_yaml_str(&yaml(extra), &source).unwrap();
            let l = &c.listeners[0];
            (
                l.http2,
                l.speaks_h2(),
                l.tls.as_ref().unwrap().alpn_protocols.clone(),
            )
        };
        let h2 = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        assert_eq!(alpn(""), (true, true, h2.clone()));
        assert_eq!(alpn("    http2: true\n"), (true, true, h2));
        assert_eq!(
            alpn("    http2: false\n"),
            (
                false,
                false,
                vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()]
            )
        );
        // -T prints both keys, and reads back the same.
        let c = from_yaml_str(&yaml("    http2: false\n"), &source).unwrap();
        let text = c.to_yaml();
        assert!(
            text.contains("http2: false") && text.contains("h2c: false"),
            "{text}"
        );
        let back = from_yaml_str(&text, &source).unwrap();
        assert!(!back.listeners[0].http2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = ok(&with_top(
            "pid_file: run/forklb.pid\nupgrade_sock: ./upgrade.sock\nerror_log: logs/error.log\n",
        ));
        assert_eq!(c.pid_file, Path::new("/etc/forklb/run/forklb.pid"));
        assert_eq!(c.upgrade_sock_path(), Path::new("/etc/forklb/upgrade.sock"));
        assert_eq!(c.upgrade_grace(), Duration::from_secs(5));
        assert_eq!(c.error_log, "/etc/forklb/logs/error.log");

        let c = ok(&with_top("pid_file: /var/run/x.pid\nerror_log: stderr\n"));
        assert_eq!(c.pid_file, Path::new("/var/run/x.pid"));
        assert_eq!(c.error_log, "stderr");

        // Paths of optional features: check the resolution itself.
        let mut c: raw::Config = serde_norway::from_str(MINIMAL).unwrap();
        c.admin = Some(crate::config::Admin {
            socket: "admin.sock".into(),
            mode: "0600".into(),
            level: Default::default(),
        });
        c.access_log = Some(crate::config::AccessLog {
            path: "/var/log/a.log".into(),
            format: Default::default(),
        });
        c.listeners[0].tls = Some(raw::ListenerTls {
            certificates: vec![crate::config::CertKey {
                cert: "certs/a.crt".into(),
                key: "../keys/a.key".into(),
                ocsp: Some("a.ocsp".into()),
            }],
            protocols: None,
            groups: None,
            client_auth: Some(raw::ClientAuth {
                ca: "clients.pem".into(),
                required: true,
            }),
        });
        c.upstreams.0[0].1.tls = Some(crate::config::UpstreamTls {
            sni: None,
            verify: true,
            ca: Some("ca.pem".into()),
            cert: Some("client.crt".into()),
            key: Some("/k/client.key".into()),
        });
        resolve_paths(&mut c, Path::new("/srv/conf")).unwrap();
        assert_eq!(c.admin.unwrap().socket, Path::new("/srv/conf/admin.sock"));
        assert_eq!(c.access_log.unwrap().path, Path::new("/var/log/a.log"));
        let ck = &c.listeners[0].tls.as_ref().unwrap().certificates[0];
        assert_eq!(ck.cert, Path::new("/srv/conf/certs/a.crt"));
        assert_eq!(ck.key, Path::new("/srv/conf/../keys/a.key"));
        assert_eq!(ck.ocsp.as_deref(), Some(Path::new("/srv/conf/a.ocsp")));
        let auth = c.listeners[0].tls.as_ref().unwrap().client_auth.clone();
        assert_eq!(auth.unwrap().ca, Path::new("/srv/conf/clients.pem"));
        let up = c.upstreams.0[0].1.tls.clone().unwrap();
        assert_eq!(up.ca.unwrap(), Path::new("/srv/conf/ca.pem"));
        assert_eq!(up.cert.unwrap(), Path::new("/srv/conf/client.crt"));
        assert_eq!(up.key.unwrap(), Path::new("/k/client.key"));
    }

    #[test]
    fn relative_source_is_made_absolute() {
        let c = from_yaml_str(MINIMAL, Path::new("conf/forklb.yaml")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(c.source, cwd.join("conf/forklb.yaml"));
        let c = from_yaml_str(
            &with_top("pid_file: forklb.pid\n"),
            Path::new("conf/forklb.yaml"),
        )
        .unwrap();
        assert_eq!(c.pid_file, cwd.join("conf/forklb.pid"));
    }

    #[test]
    fn round_trip_through_to_yaml() {
        let full = with_top(
            "workers: 3\npid_file: forklb.pid\nerror_log: error.log\nlog_level: debug\nshutdown_timeout: 1500ms\ntimeouts: {keepalive: 5s, connect: 2m}\nlimits: {max_header_bytes: 8k, max_body_bytes: 1000}\n",
        );
        let a = ok(&full);
        let text = a.to_yaml();
        let b = ok(&text);
        assert_eq!(text, b.to_yaml(), "to_yaml is not stable:\n{text}");
        assert_eq!(b.workers, Workers::Count(3));
        assert_eq!(b.pid_file, Path::new("/etc/forklb/forklb.pid"));
        assert_eq!(b.error_log, "/etc/forklb/error.log");
        assert_eq!(b.shutdown_timeout, Duration::from_millis(1500));
        assert_eq!(b.timeouts.connect, Duration::from_secs(120));
        assert_eq!(b.max_header_bytes as u64, 8192);
        assert_eq!(b.max_body_bytes, 1000);
        assert_eq!(b.listeners[0].addrs, a.listeners[0].addrs);
        let (ua, ub) = (
            a.upstreams.by_name("web").unwrap(),
            b.upstreams.by_name("web").unwrap(),
        );
        assert_eq!(ub.servers.len(), 2);
        for (sa, sb) in ua.servers.iter().zip(&ub.servers) {
            assert_eq!(
                (&sa.name, &sa.addr, sa.weight),
                (&sb.name, &sb.addr, sb.weight)
            );
            assert_eq!(sa.addr_text, sb.addr_text);
        }
        // The defaults are spelled out.
        assert!(text.contains("keepalive: 32"), "{text}");
        assert!(text.contains("max_header_bytes: 8k"), "{text}");
        assert!(text.contains("name: localhost:9002"), "{text}");
        assert!(text.contains("max_concurrent_streams: 128"), "{text}");
        assert!(text.contains("initial_window_size: 64k"), "{text}");
        assert!(text.contains("max_header_list_size: 64k"), "{text}");
        assert_eq!(a.http2, b.http2);
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = std::env::temp_dir().join(format!("forklb-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("forklb.yaml");
        std::fs::write(&file, with_top("pid_file: forklb.pid\n")).unwrap();
        let c = load(&file).unwrap();
        assert_eq!(c.source, file);
        assert_eq!(c.pid_file, dir.join("forklb.pid"));

        std::fs::write(&file, with_top("workers: 0\n")).unwrap();
        let e = load(&file).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: workers: must be at least 1 (or \"auto\")",
                file.display()
            )
        );

        let missing = dir.join("missing.yaml");
        let e = load(&missing).unwrap_err();
        assert_eq!(e.file, missing);
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot read", missing.display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn field_path_detection() {
        assert!(looks_like_field_path("listeners[0].routes[1]"));
        assert!(looks_like_field_path("upstreams.web.servers[0].weight"));
        assert!(!looks_like_field_path("invalid duration \"10x\""));
        assert!(!looks_like_field_path("invalid type"));
        assert!(!looks_like_field_path(""));
    }
}
