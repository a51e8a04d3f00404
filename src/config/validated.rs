//! The validated configuration: what the master, the workers and the health
//! checker use. Every value is in the form its users need — socket addresses
//! resolved, TLS configurations loaded, routes compiled, durations as
//! [`Duration`] — so nothing downstream parses or falls back. Built from the
//! file's shape ([`super::raw::Config`]) by validation; `forklb -T` prints it
//! back in that shape.

use super::raw::{
    AccessLog, Admin, Balance, CertKey, ClientAuth, HealthKind, LogLevel, UpstreamProtocol,
    UpstreamTls, Workers,
};
use super::routing::{self, Route};
use super::scalars::{HashKey, StatusRange};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub version: u32,
    pub workers: Workers,
    pub daemon: bool,
    pub pid_file: PathBuf,
    /// `stderr` or an absolute file path.
    pub error_log: String,
    pub log_level: LogLevel,
    /// As set in the file; see [`Config::upgrade_sock_path`].
    pub upgrade_sock: Option<PathBuf>,
    /// As set in the file; see [`Config::upgrade_grace`].
    pub upgrade_grace: Option<Duration>,
    pub upgrade_timeout: Duration,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Client connections per worker.
    pub worker_connections: usize,
    pub shutdown_timeout: Duration,
    pub admin: Option<Admin>,
    pub state_file: Option<PathBuf>,
    pub access_log: Option<AccessLog>,
    pub timeouts: Timeouts,
    pub max_header_bytes: usize,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    /// `http2:`, the settings of every HTTP/2 connection.
    pub http2: Http2Settings,
    pub listeners: Vec<Listener>,
    /// In the order the file lists them (the order `show stat` uses).
    pub upstreams: Upstreams,
    /// Some upstream has `send_proxy`: client connections then note the
    /// address they reached, for the PROXY headers.
    pub send_proxy_any: bool,

    /// The file this configuration was read from (absolute).
    pub source: PathBuf,
    /// What loading found worth a warning (a certificate about to expire).
    /// Kept here, not logged, because `-t` and the start read the file
    /// before the error log exists: `-t` prints them, the master logs them
    /// at start and at reload.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub client_header: Duration,
    pub client_body: Duration,
    pub client_send: Duration,
    pub keepalive: Duration,
    pub connect: Duration,
    pub upstream_read: Duration,
    pub upstream_write: Duration,
    /// How long a request waits in a queue for a server slot before a 503.
    pub queue: Duration,
}

/// The HTTP/2 settings forklb announces (and enforces) on every HTTP/2
/// connection, each checked to fit its SETTINGS parameter (RFC 9113 §6.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS, 1..=2^31-1.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE (per stream), 1..=2^31-1.
    pub initial_window_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: the largest decoded header list, at
    /// least 1 KiB (RFC 7541 counts 32 bytes per field on top of the names
    /// and values).
    pub max_header_list_size: u32,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            max_concurrent_streams: 128,
            initial_window_size: 64 * 1024,
            max_header_list_size: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    /// `bind`, parsed.
    pub addrs: Vec<SocketAddr>,
    /// Scheme clients use on this listener (X-Forwarded-Proto).
    pub proto: &'static str,
    /// TLS termination (certificates loaded with the configuration).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The files `tls` was loaded from (paths absolute); empty without TLS.
    pub certificates: Vec<CertKey>,
    /// `tls.protocols`, `tls.groups` and `tls.client_auth` as written
    /// (`tls` is built with them), for printing the configuration.
    pub protocols: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub client_auth: Option<ClientAuth>,
    /// TLS listeners: ALPN offers `h2` before `http/1.1` (`tls` is built
    /// with it). Kept as set on plain listeners, where it means nothing.
    pub http2: bool,
    /// Plain listeners only (checked): the HTTP/2 prior-knowledge preface
    /// is accepted. `Upgrade: h2c` is never honoured.
    pub h2c: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2);
    /// the address it names is the client's from then on.
    pub proxy_protocol: bool,
    pub routes: Vec<Route>,
}

impl Listener {
    /// True when clients may speak HTTP/2 on this listener at all (by ALPN
    /// on TLS, by prior knowledge on plain TCP).
    pub fn speaks_h2(&self) -> bool {
        if self.tls.is_some() {
            self.http2
        } else {
            self.h2c
        }
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// HTTP/1.1, HTTP/2 over TLS (`tls` then offers ALPN `h2` only) or
    /// HTTP/2 with prior knowledge; checked against `tls` at load.
    pub protocol: UpstreamProtocol,
    pub health: Option<Health>,
    pub balance: Balance,
    /// What `balance: hash` hashes (`source` unless set).
    pub hash_key: HashKey,
    /// Passive detection (0 = off) and how long a mark lasts.
    pub max_fails: u32,
    pub fail_timeout_ms: u64,
    pub retries: u32,
    pub keepalive: usize,
    pub host_header: Option<String>,
    /// A PROXY protocol header opens every connection to the servers; such
    /// a connection then belongs to one client (never pooled, never shared).
    pub send_proxy: Option<crate::proxy_proto::Version>,
    /// HTTPS to the servers.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The `tls` keys `tls` was built from (`ca` absolute).
    pub tls_settings: Option<UpstreamTls>,
    /// Host names in `addr_text` are looked up again this often; a new
    /// address applies without a reload (`master::resolver`).
    pub resolve: Option<Duration>,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    /// The address as configured (`host:port`), the Host for clients without one.
    pub addr_text: String,
    /// With upstream TLS: the name the certificate must match, also sent
    /// as SNI (none for IP addresses).
    pub tls_name: Option<rustls::pki_types::ServerName<'static>>,
    pub weight: u32,
    pub backup: bool,
    /// At most this many requests in flight over all workers; 0 = no
    /// limit. The configured value: the live one is in shared memory
    /// (`set maxconn server` changes it there).
    pub maxconn: u32,
    /// HAProxy's server id (`sid`, `srv_id`), from 1 in its upstream:
    /// the position in the file, and for a server added at runtime the
    /// lowest one free, as HAProxy numbers them — so deleting a server
    /// leaves the others' ids as they were.
    pub id: usize,
}

/// Active health checks of an upstream's servers.
#[derive(Debug, Clone)]
pub struct Health {
    pub kind: HealthKind,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Accepted HTTP statuses.
    pub expect: StatusRange,
}

/// The upstreams, by position (the data path, shared memory) or by name.
#[derive(Debug, Clone, Default)]
pub struct Upstreams(pub Vec<Upstream>);

impl std::ops::Deref for Upstreams {
    type Target = [Upstream];
    fn deref(&self) -> &[Upstream] {
        &self.0
    }
}

impl Upstreams {
    /// The position of upstream `name` (a scan: for one lookup; many
    /// lookups use `ServerIndex`).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|u| u.name == name)
    }

    pub fn by_name(&self, name: &str) -> Option<&Upstream> {
        self.0.iter().find(|u| u.name == name)
    }
}

impl Config {
    /// The first route of `listener` matching `host` (lowercase, no port)
    /// and `path` (normalized, `http::path`; route paths are normalized
    /// the same way when the configuration is validated).
    pub fn route(&self, listener: usize, host: Option<&str>, path: &[u8]) -> Option<&Route> {
        routing::find(&self.listeners.get(listener)?.routes, host, path)
    }

    /// Every limit table: its name, kind and size (entries), in table-index
    /// order (the index a route's limit holds).
    pub fn limit_tables(&self) -> Vec<(String, crate::shm::TableKind, usize)> {
        use crate::shm::TableKind;
        let mut tables = Vec::new();
        for r in self.listeners.iter().flat_map(|l| &l.routes) {
            if let Some(l) = &r.limit_req {
                tables.push((l.table, l.table_name.clone(), TableKind::Req, l.spec.size));
            }
            if let Some(l) = &r.limit_conn {
                tables.push((l.table, l.table_name.clone(), TableKind::Conn, l.spec.size));
            }
        }
        tables.sort_by_key(|t| t.0);
        tables.into_iter().map(|(_, n, k, s)| (n, k, s)).collect()
    }

    /// The Unix socket of Pingora-style upgrades (`-u`), set or default.
    pub fn upgrade_sock_path(&self) -> &Path {
        self.upgrade_sock
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_UPGRADE_SOCK))
    }

    /// How long QUIT keeps serving while offering the listening sockets on
    /// `upgrade_sock`. Setting `upgrade_sock` is how Pingora users say they
    /// upgrade in Pingora's order (QUIT the old instance, then start `-u`),
    /// so it brings Pingora's grace; without it QUIT is nginx's.
    pub fn upgrade_grace(&self) -> Duration {
        match (self.upgrade_grace, &self.upgrade_sock) {
            (Some(g), _) => g,
            (None, Some(_)) => DEFAULT_UPGRADE_GRACE,
            (None, None) => Duration::ZERO,
        }
    }
}

pub const DEFAULT_UPGRADE_SOCK: &str = "/run/forklb/upgrade.sock";
/// Pingora's old instance tries for about 5 s to hand its sockets over.
pub const DEFAULT_UPGRADE_GRACE: Duration = Duration::from_secs(5);
