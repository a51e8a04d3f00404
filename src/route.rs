//! The configuration compiled for the data path: per listener its ordered
//! routes (host match + path prefix → action), per upstream its servers.
//! Built once per generation; workers only read it.

use crate::config::{Balance, Config, HealthKind, RouteAction};
use std::net::SocketAddr;
use std::time::Duration;

pub struct Runtime {
    /// The configuration generation (reloads), for metrics.
    pub generation: u64,
    pub listeners: Vec<ListenerRt>,
    pub upstreams: Vec<UpstreamRt>,
    pub timeouts: TimeoutsRt,
    pub max_header_bytes: usize,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    pub worker_connections: usize,
    pub shutdown_timeout: Duration,
}

#[derive(Clone, Copy)]
pub struct TimeoutsRt {
    pub client_header: Duration,
    pub client_body: Duration,
    pub keepalive: Duration,
    pub connect: Duration,
    pub upstream_read: Duration,
    pub upstream_write: Duration,
}

pub struct ListenerRt {
    pub name: String,
    /// Scheme clients use on this listener (X-Forwarded-Proto).
    pub proto: &'static str,
    /// TLS termination (certificates loaded with the configuration).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub routes: Vec<RouteRt>,
}

pub struct RouteRt {
    pub host: HostMatch,
    pub path: String,
    pub action: Action,
}

pub enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any subdomain, any depth.
    Suffix(String),
}

pub enum Action {
    Upstream(usize),
    Return {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    Redirect {
        status: u16,
        to: crate::http::redirect::Template,
    },
    Metrics,
}

pub use crate::config::HashKey;

/// Active health checks of an upstream's servers.
#[derive(Debug, Clone)]
pub struct HealthRt {
    pub kind: HealthKind,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Accepted HTTP statuses, inclusive.
    pub expect: (u16, u16),
}

pub struct UpstreamRt {
    pub name: String,
    pub health: Option<HealthRt>,
    pub balance: Balance,
    pub hash_key: HashKey,
    /// Passive detection (0 = off) and how long a mark lasts.
    pub max_fails: u32,
    pub fail_timeout_ms: u64,
    pub retries: u32,
    pub keepalive: usize,
    pub host_header: Option<String>,
    /// HTTPS to the servers.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub servers: Vec<ServerRt>,
}

pub struct ServerRt {
    pub name: String,
    pub addr: SocketAddr,
    /// The address as configured (`host:port`), the Host for clients without one.
    pub addr_text: String,
    /// With upstream TLS: the name the certificate must match, also sent
    /// as SNI (none for IP addresses).
    pub tls_name: Option<rustls::pki_types::ServerName<'static>>,
    pub weight: u32,
    pub backup: bool,
}

impl HostMatch {
    fn parse(host: Option<&str>) -> HostMatch {
        match host {
            None => HostMatch::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
                    None => HostMatch::Exact(h),
                }
            }
        }
    }

    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(e), Some(h)) => e == h,
            (HostMatch::Suffix(s), Some(h)) => h.len() > s.len() && h.ends_with(s.as_str()),
            _ => false,
        }
    }
}

impl Runtime {
    /// Compiles a validated configuration.
    pub fn new(cfg: &Config) -> Runtime {
        let upstreams: Vec<UpstreamRt> = cfg
            .upstreams
            .iter()
            .map(|(name, u)| UpstreamRt {
                name: name.clone(),
                health: u.health.as_ref().map(|h| HealthRt {
                    kind: h.kind,
                    path: h.path.clone(),
                    interval: h.interval.get(),
                    timeout: h.timeout.get(),
                    rise: h.rise.max(1),
                    fall: h.fall.max(1),
                    expect: (h.expect_status.low, h.expect_status.high),
                }),
                balance: u.balance,
                hash_key: u.hash_key.clone().unwrap_or(HashKey::Source),
                max_fails: u.max_fails,
                fail_timeout_ms: u.fail_timeout.get().as_millis() as u64,
                retries: u.retries,
                keepalive: u.keepalive,
                host_header: u.host_header.clone(),
                tls: u.tls.as_ref().and_then(|t| t.client.clone()),
                servers: u
                    .servers
                    .iter()
                    .filter_map(|s| {
                        Some(ServerRt {
                            name: s.name.clone(),
                            addr: s.socket_addr?,
                            addr_text: s.addr.clone(),
                            tls_name: u.tls.as_ref().and_then(|t| {
                                crate::tls::client::server_name(t.sni.as_deref(), &s.addr)
                            }),
                            weight: s.weight,
                            backup: s.backup,
                        })
                    })
                    .collect(),
            })
            .collect();
        // Routes name their upstream; a map, not a scan per route.
        let upstream_pos: std::collections::HashMap<&str, usize> = cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.as_str(), i))
            .collect();
        let listeners = cfg
            .listeners
            .iter()
            .map(|l| ListenerRt {
                name: l.name.clone(),
                proto: if l.tls.is_some() { "https" } else { "http" },
                tls: l.tls.as_ref().and_then(|t| t.server.clone()),
                routes: l
                    .routes
                    .iter()
                    .filter_map(|r| {
                        let action = match &r.action {
                            // Validated: every route names a defined upstream.
                            RouteAction::Upstream(u) => {
                                Action::Upstream(*upstream_pos.get(u.as_str())?)
                            }
                            RouteAction::Return(ret) => Action::Return {
                                status: ret.status,
                                content_type: ret.content_type.clone(),
                                body: ret.body.clone().into_bytes(),
                            },
                            RouteAction::Redirect(red) => Action::Redirect {
                                status: red.status,
                                to: red.to.template.clone(),
                            },
                            RouteAction::Metrics(_) => Action::Metrics,
                        };
                        Some(RouteRt {
                            host: HostMatch::parse(r.host.as_deref()),
                            path: r.path.clone().unwrap_or_else(|| "/".to_owned()),
                            action,
                        })
                    })
                    .collect(),
            })
            .collect();
        let t = &cfg.timeouts;
        Runtime {
            generation: 1,
            listeners,
            upstreams,
            timeouts: TimeoutsRt {
                client_header: t.client_header.get(),
                client_body: t.client_body.get(),
                keepalive: t.keepalive.get(),
                connect: t.connect.get(),
                upstream_read: t.upstream_read.get(),
                upstream_write: t.upstream_write.get(),
            },
            max_header_bytes: cfg.limits.max_header_bytes.get() as usize,
            max_body_bytes: cfg.limits.max_body_bytes.get(),
            worker_connections: cfg.worker_connections,
            shutdown_timeout: cfg.shutdown_timeout.get(),
        }
    }

    /// The first route of `listener` matching `host` (lowercase, no port)
    /// and `path` (normalized, `http::path`; route paths are normalized
    /// the same way when the configuration is validated).
    pub fn route(&self, listener: usize, host: Option<&str>, path: &[u8]) -> Option<&Action> {
        self.listeners
            .get(listener)?
            .routes
            .iter()
            .find(|r| r.host.matches(host) && path.starts_with(r.path.as_bytes()))
            .map(|r| &r.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching() {
        let w = HostMatch::parse(Some("*.Example.com"));
        assert!(w.matches(Some("a.example.com")));
        assert!(w.matches(Some("b.a.example.com")));
        assert!(!w.matches(Some("example.com")));
        assert!(!w.matches(None));
        let e = HostMatch::parse(Some("api.example.com"));
        assert!(e.matches(Some("api.example.com")));
        assert!(!e.matches(Some("x.api.example.com")));
        assert!(HostMatch::Any.matches(None));
    }
}
