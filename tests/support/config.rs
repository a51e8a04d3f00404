//! Configuration generators: the standard shapes [`proxy_config`] and
//! [`upstream_config`].

use std::net::SocketAddr;

use super::*;

/// The standard proxy configuration of the tests (without the `pid_file` and
/// `error_log` keys, which [`Forklb`] adds): one listener on
/// `$PORT` with a `/healthz` return route and everything else to upstream `web`.
/// `servers` are (name, address, weight); `upstream_extra` are more keys of
/// upstream `web`, e.g. `["retries: 0"]`.
pub fn proxy_config(
    workers: usize,
    servers: &[(&str, SocketAddr, u32)],
    upstream_extra: &[&str],
) -> String {
    let mut y = format!(
        "workers: {workers}\n\
         log_level: info\n\
         shutdown_timeout: 10s\n\
         listeners:\n\
         \x20 - name: web\n\
         \x20   bind: [\"127.0.0.1:$PORT\"]\n\
         \x20   routes:\n\
         \x20     - path: /healthz\n\
         \x20       return: {{status: 200, body: \"ok\\n\"}}\n\
         \x20     - upstream: web\n\
         upstreams:\n\
         \x20 web:\n"
    );
    for extra in upstream_extra {
        y.push_str(&format!("    {extra}\n"));
    }
    y.push_str("    servers:\n");
    for (name, addr, weight) in servers {
        y.push_str(&format!(
            "      - {{name: {name}, addr: \"{addr}\", weight: {weight}}}\n"
        ));
    }
    y
}

/// Shorthand: `proxy_config` for backends of weight 1.
pub fn proxy_config_for(workers: usize, backends: &[&Backend]) -> String {
    let servers: Vec<(&str, SocketAddr, u32)> =
        backends.iter().map(|b| (b.name(), b.addr(), 1)).collect();
    proxy_config(workers, &servers, &[])
}

/// One `servers:` entry of [`upstream_config`].
#[derive(Debug, Clone)]
pub struct Srv {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub backup: bool,
}

impl Srv {
    /// A primary server of weight 1.
    pub fn new(name: &str, addr: SocketAddr) -> Srv {
        Srv {
            name: name.to_owned(),
            addr,
            weight: 1,
            backup: false,
        }
    }

    /// A primary server of weight 1 for backend `b` (named like it).
    pub fn of(b: &Backend) -> Srv {
        Srv::new(b.name(), b.addr())
    }

    pub fn weight(mut self, w: u32) -> Srv {
        self.weight = w;
        self
    }

    pub fn backup(mut self) -> Srv {
        self.backup = true;
        self
    }
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
    let mut y = format!(
        "workers: {workers}\n\
         log_level: info\n\
         shutdown_timeout: 10s\n\
         listeners:\n\
         \x20 - name: web\n\
         \x20   bind: [\"127.0.0.1:$PORT\"]\n\
         \x20   routes:\n\
         \x20     - path: /healthz\n\
         \x20       return: {{status: 200, body: \"ok\\n\"}}\n\
         \x20     - upstream: web\n\
         upstreams:\n\
         \x20 web:\n\
         \x20   balance: {balance}\n"
    );
    for extra in upstream_extra {
        y.push_str(&format!("    {extra}\n"));
    }
    y.push_str("    servers:\n");
    for s in servers {
        y.push_str(&format!(
            "      - {{name: {}, addr: \"{}\", weight: {}{}}}\n",
            s.name,
            s.addr,
            s.weight,
            if s.backup { ", backup: true" } else { "" }
        ));
    }
    y
}
