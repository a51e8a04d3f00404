//! The last step of loading: a checked [`raw::Config`] becomes the validated
//! [`Config`]. What needs the outside world happens here, in the order errors
//! are reported: the listeners' certificates, the upstreams' CA files, then
//! the servers' host names (slowest, last).

use super::error::{invalid, Invalid};
use super::raw::{self, NamedMap};
use super::routing::Route;
use super::scalars::HashKey;
use super::validated::{
    Config, Health, Http2Settings, Listener, Server, Timeouts, Upstream, Upstreams,
};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

/// What checking (`validate`) parsed, so nothing is parsed twice.
pub(super) struct Checked {
    pub listeners: Vec<CheckedListener>,
    /// Per upstream, per server: `addr` split into host (no brackets) and port.
    pub server_addrs: Vec<Vec<(String, u16)>>,
}

/// Per listener, what checking it parsed: its addresses and compiled routes.
pub(super) struct CheckedListener {
    pub addrs: Vec<SocketAddr>,
    pub routes: Vec<Route>,
}

pub(super) fn build(
    cfg: raw::Config,
    checked: Checked,
    source: PathBuf,
) -> Result<Config, Invalid> {
    let mut warnings = Vec::new();
    let listeners = cfg
        .listeners
        .into_iter()
        .zip(checked.listeners)
        .enumerate()
        .map(|(i, (l, c))| build_listener(i, l, c, &mut warnings))
        .collect::<Result<Vec<_>, _>>()?;
    let NamedMap(upstreams) = cfg.upstreams;
    let clients = upstreams
        .iter()
        .map(|(name, up)| load_upstream_tls(name, up))
        .collect::<Result<Vec<_>, _>>()?;
    let upstreams = upstreams
        .into_iter()
        .zip(clients)
        .zip(checked.server_addrs)
        .map(|(((name, up), client), addrs)| build_upstream(name, up, client, addrs))
        .collect::<Result<Vec<_>, _>>()?;
    let t = cfg.timeouts;
    Ok(Config {
        version: cfg.version,
        workers: cfg.workers,
        daemon: cfg.daemon,
        pid_file: cfg.pid_file,
        error_log: cfg.error_log,
        log_level: cfg.log_level,
        upgrade_sock: cfg.upgrade_sock,
        upgrade_grace: cfg.upgrade_grace.map(|g| g.get()),
        upgrade_timeout: cfg.upgrade_timeout.get(),
        user: cfg.user,
        group: cfg.group,
        worker_connections: cfg.worker_connections,
        shutdown_timeout: cfg.shutdown_timeout.get(),
        admin: cfg.admin,
        state_file: cfg.state_file,
        access_log: cfg.access_log,
        timeouts: Timeouts {
            client_header: t.client_header.get(),
            client_body: t.client_body.get(),
            client_send: t.client_send.get(),
            keepalive: t.keepalive.get(),
            connect: t.connect.get(),
            upstream_read: t.upstream_read.get(),
            upstream_write: t.upstream_write.get(),
            queue: t.queue.get(),
        },
        // Checked to be within 1k-1m.
        max_header_bytes: cfg.limits.max_header_bytes.get() as usize,
        max_body_bytes: cfg.limits.max_body_bytes.get(),
        // Checked to fit their SETTINGS parameters (u32, most 2^31-1).
        http2: Http2Settings {
            max_concurrent_streams: cfg.http2.max_concurrent_streams as u32,
            initial_window_size: cfg.http2.initial_window_size.get() as u32,
            max_header_list_size: cfg.http2.max_header_list_size.get() as u32,
        },
        listeners,
        send_proxy_any: upstreams.iter().any(|u| u.send_proxy.is_some()),
        upstreams: Upstreams(upstreams),
        source,
        warnings,
    })
}

/// Loads the certificates and keys (checked to belong together). Done at
/// load, in the master, so `-t` and reloads catch every bad file.
fn build_listener(
    i: usize,
    l: raw::Listener,
    checked: CheckedListener,
    warnings: &mut Vec<String>,
) -> Result<Listener, Invalid> {
    let (certificates, protocols, groups, client_auth) = match l.tls {
        Some(t) => (t.certificates, t.protocols, t.groups, t.client_auth),
        None => (Vec::new(), None, None, None),
    };
    let tls = if certificates.is_empty() {
        None
    } else {
        use crate::tls::server::{LoadError, Policy};
        let policy = Policy {
            protocols: protocols.as_deref(),
            groups: groups.as_deref(),
            client_auth: client_auth.as_ref(),
        };
        let at = format!("listeners[{i}].tls");
        match crate::tls::server::config(&certificates, &policy, l.http2) {
            Ok(loaded) => {
                warnings.extend(loaded.warnings);
                Some(loaded.config)
            }
            Err(LoadError::Certificate(j, m)) => {
                return invalid(format!("{at}.certificates[{j}]"), m)
            }
            Err(LoadError::Ocsp(j, m)) => {
                return invalid(format!("{at}.certificates[{j}].ocsp"), m)
            }
            Err(LoadError::Protocols(m)) => return invalid(format!("{at}.protocols"), m),
            Err(LoadError::Groups(m)) => return invalid(format!("{at}.groups"), m),
            Err(LoadError::ClientCa(m)) => return invalid(format!("{at}.client_auth.ca"), m),
        }
    };
    Ok(Listener {
        name: l.name,
        addrs: checked.addrs,
        proto: if tls.is_some() { "https" } else { "http" },
        tls,
        certificates,
        protocols,
        groups,
        client_auth,
        http2: l.http2,
        h2c: l.h2c,
        proxy_protocol: l.proxy_protocol,
        routes: checked.routes,
    })
}

/// The upstream's TLS client configuration (trust roots loaded).
fn load_upstream_tls(
    name: &str,
    up: &raw::Upstream,
) -> Result<Option<Arc<rustls::ClientConfig>>, Invalid> {
    let Some(tls) = &up.tls else {
        return Ok(None);
    };
    let field = if tls.ca.is_some() { "tls.ca" } else { "tls" };
    // Read first: its errors name the files, which the CA's do not.
    let identity = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            use crate::tls::client::IdentityError;
            match crate::tls::client::identity(cert, key) {
                Ok(id) => Some(id),
                Err(IdentityError::Cert(m)) => {
                    return invalid(format!("upstreams.{name}.tls.cert"), m)
                }
                Err(IdentityError::Key(m)) => {
                    return invalid(format!("upstreams.{name}.tls.key"), m)
                }
            }
        }
        _ => None,
    };
    // HTTP/2 upstreams offer `h2` alone, so a server that cannot speak it
    // fails the handshake or selects no protocol, instead of agreeing to
    // HTTP/1.1 and then receiving HTTP/2 frames.
    let alpn: &[&[u8]] = if up.protocol.is_h2() {
        &[b"h2"]
    } else {
        &[b"http/1.1"]
    };
    match crate::tls::client::config(tls.verify, tls.ca.as_deref(), identity, alpn) {
        Ok(client) => Ok(Some(client)),
        Err(message) => invalid(format!("upstreams.{name}.{field}"), message),
    }
}

fn build_upstream(
    name: String,
    up: raw::Upstream,
    client: Option<Arc<rustls::ClientConfig>>,
    addrs: Vec<(String, u16)>,
) -> Result<Upstream, Invalid> {
    let sni = up.tls.as_ref().and_then(|t| t.sni.as_deref());
    let servers = up
        .servers
        .iter()
        .zip(addrs)
        .enumerate()
        .map(|(i, (s, (host, port)))| {
            let field = format!("upstreams.{name}.servers[{i}].addr");
            Ok(Server {
                name: s.name.clone(),
                addr: resolve(&host, port).or_else(|m| invalid(field, m))?,
                addr_text: s.addr.clone(),
                tls_name: client
                    .as_ref()
                    .and_then(|_| crate::tls::client::server_name(sni, &s.addr)),
                weight: s.weight,
                backup: s.backup,
                maxconn: s.maxconn,
                id: i + 1,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Upstream {
        protocol: up.protocol,
        health: up.health.map(|h| Health {
            kind: h.kind,
            path: h.path,
            interval: h.interval.get(),
            timeout: h.timeout.get(),
            rise: h.rise,
            fall: h.fall,
            expect: h.expect_status,
        }),
        balance: up.balance,
        hash_key: up.hash_key.unwrap_or(HashKey::Source),
        max_fails: up.max_fails,
        fail_timeout_ms: up.fail_timeout.get().as_millis() as u64,
        retries: up.retries,
        keepalive: up.keepalive,
        host_header: up.host_header,
        send_proxy: up.send_proxy.map(raw::SendProxy::version),
        tls: client,
        tls_settings: up.tls,
        resolve: up.resolve.map(|d| d.get()),
        servers,
        name,
    })
}

/// A server's address (split when checked), host names resolved (first
/// IPv4 address, else the first address).
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve host {host:?}: no address found"))
}
