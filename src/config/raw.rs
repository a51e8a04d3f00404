//! The configuration file's shape (DESIGN §4), as serde types and nothing
//! else: every struct rejects unknown keys, every optional key has the
//! documented default, every key with a grammar of its own is parsed into its
//! type while the file is read (`scalars`, `units`, the route
//! action in `route_action`). Validation turns this into the
//! validated `Config` the runtime uses; `forklb -T` prints this shape back.

pub use super::route_action::{
    HeaderRules, MetricsFormat, RedirectAction, ReturnAction, Route, RouteAction, StatsAction,
};
use super::scalars::{HashKey, StatusRange};
use super::units::{ByteSize, HumanDuration};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub version: u32,
    /// Worker processes; `auto` = CPU count. Pingora's `threads` is an alias.
    #[serde(alias = "threads")]
    pub workers: Workers,
    pub daemon: bool,
    pub pid_file: PathBuf,
    /// `stderr` or a file path.
    pub error_log: String,
    pub log_level: LogLevel,
    /// Where `-u` waits for a running instance's listening sockets and where
    /// QUIT offers them. `None` when the file does not set it: the default
    /// path applies (`Config::upgrade_sock_path`) and QUIT offers only once.
    pub upgrade_sock: Option<PathBuf>,
    /// How long a QUIT keeps serving while it offers the listening sockets on
    /// `upgrade_sock` (Pingora's upgrade order: QUIT first, then `-u`).
    /// `None`: 5s when `upgrade_sock` is set in the file, else 0 (nginx's
    /// QUIT, which stops accepting at once). See `Config::upgrade_grace`.
    pub upgrade_grace: Option<HumanDuration>,
    /// How long `forklb -u` waits for the sockets, and `forklb -s upgrade`
    /// for each step, before giving up.
    pub upgrade_timeout: HumanDuration,
    pub user: Option<String>,
    pub group: Option<String>,
    pub worker_connections: usize,
    pub shutdown_timeout: HumanDuration,
    pub admin: Option<Admin>,
    /// Where runtime changes (weights, admin states) are kept across
    /// restarts and upgrades, in `show servers state` format.
    pub state_file: Option<PathBuf>,
    pub access_log: Option<AccessLog>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Tuning of every HTTP/2 connection (DESIGN §4.1).
    pub http2: Http2,
    pub listeners: Vec<Listener>,
    /// Upstreams in the order the file lists them (the order `show stat` uses).
    pub upstreams: NamedMap<Upstream>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: 1,
            workers: Workers::Auto,
            daemon: false,
            pid_file: PathBuf::from("/run/forklb/forklb.pid"),
            error_log: "stderr".to_owned(),
            log_level: LogLevel::Info,
            upgrade_sock: None,
            upgrade_grace: None,
            upgrade_timeout: HumanDuration::from_secs(30),
            user: None,
            group: None,
            worker_connections: 10_000,
            shutdown_timeout: HumanDuration::from_secs(30),
            admin: None,
            state_file: None,
            access_log: None,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            http2: Http2::default(),
            listeners: Vec::new(),
            upstreams: NamedMap::default(),
        }
    }
}

/// `workers: auto` or `workers: N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Auto,
    Count(usize),
}

impl Workers {
    /// The number of worker processes to run.
    pub fn resolve(self) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\" or a positive integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Workers, E> {
                if v == "auto" {
                    Ok(Workers::Auto)
                } else {
                    v.parse::<usize>().map(Workers::Count).map_err(|_| {
                        E::custom(format!(
                            "expected \"auto\" or a positive integer, got {v:?}"
                        ))
                    })
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Workers, E> {
                Ok(Workers::Count(v as usize))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Workers, E> {
                if v < 0 {
                    return Err(E::custom("workers must not be negative"));
                }
                Ok(Workers::Count(v as usize))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Workers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Auto => s.serialize_str("auto"),
            Workers::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub socket: PathBuf,
    #[serde(default = "default_admin_mode")]
    pub mode: String,
    /// What the socket may do: `user` (show), `operator`, `admin` (change).
    #[serde(default)]
    pub level: AdminLevel,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminLevel {
    User,
    Operator,
    #[default]
    Admin,
}

fn default_admin_mode() -> String {
    "0600".to_owned()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    pub path: PathBuf,
    #[serde(default)]
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Combined,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub client_header: HumanDuration,
    pub client_body: HumanDuration,
    /// Longest wait for a client to take more of its response (nginx's
    /// `send_timeout`).
    pub client_send: HumanDuration,
    pub keepalive: HumanDuration,
    pub connect: HumanDuration,
    pub upstream_read: HumanDuration,
    pub upstream_write: HumanDuration,
    /// How long a request may wait for a server slot (servers with
    /// `maxconn`) before it is answered 503.
    pub queue: HumanDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            client_header: HumanDuration::from_secs(10),
            client_body: HumanDuration::from_secs(60),
            client_send: HumanDuration::from_secs(60),
            keepalive: HumanDuration::from_secs(75),
            connect: HumanDuration::from_secs(5),
            upstream_read: HumanDuration::from_secs(60),
            upstream_write: HumanDuration::from_secs(60),
            queue: HumanDuration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_header_bytes: ByteSize,
    /// 0 = unlimited.
    pub max_body_bytes: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: ByteSize(16 * 1024),
            max_body_bytes: ByteSize(0),
        }
    }
}

/// `http2:` — the settings forklb announces on every HTTP/2 connection.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2 {
    pub max_concurrent_streams: u64,
    /// Per stream (SETTINGS_INITIAL_WINDOW_SIZE).
    pub initial_window_size: ByteSize,
    /// Largest decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list_size: ByteSize,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            max_concurrent_streams: 128,
            initial_window_size: ByteSize(64 * 1024),
            max_header_list_size: ByteSize(64 * 1024),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    #[serde(default)]
    pub bind: Vec<String>,
    /// TLS listeners: offer ALPN `h2` besides `http/1.1`.
    #[serde(default = "default_true")]
    pub http2: bool,
    /// Plain listeners: accept the HTTP/2 prior-knowledge preface.
    #[serde(default)]
    pub h2c: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2),
    /// whose source address is the client from then on.
    #[serde(default, skip_serializing_if = "is_false")]
    pub proxy_protocol: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub certificates: Vec<CertKey>,
    /// The TLS versions offered (`TLSv1.2`, `TLSv1.3`); absent = both.
    /// Kept as written and checked at load, so an unsupported version
    /// (`TLSv1.1`) gets a message saying what is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    /// The key exchange groups accepted (`X25519`, `P-256`, ...), in the
    /// server's order; absent = the provider's. Kept as written, checked at
    /// load, like `protocols`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Client certificates (mTLS), verified against `ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A DER OCSPResponse for `cert`, stapled in the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<PathBuf>,
}

/// `listeners[].tls.client_auth`: the CA client certificates must chain
/// to; `required: false` lets clients without one in (anonymous), while a
/// certificate that is offered must still verify.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    pub ca: PathBuf,
    #[serde(default = "default_true")]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The protocol spoken to the servers (DESIGN §4.1).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    #[serde(default)]
    pub balance: Balance,
    /// Only with `balance: hash`; absent = `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<HashKey>,
    #[serde(default = "default_keepalive")]
    pub keepalive: usize,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Passive detection: this many consecutive connect failures or
    /// timeouts on live traffic mark a server down for `fail_timeout`
    /// (nginx's max_fails / fail_timeout); 0 disables it.
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: HumanDuration,
    #[serde(default)]
    pub host_header: Option<String>,
    /// A PROXY protocol header at the start of every connection to the
    /// servers (HAProxy's `send-proxy` / `send-proxy-v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_proxy: Option<SendProxy>,
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Re-resolve host names in the servers' `addr` this often (absent:
    /// only at load, as nginx without `resolve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<HumanDuration>,
    #[serde(default)]
    pub servers: Vec<Server>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `send_proxy: v1 | v2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendProxy {
    V1,
    V2,
}

impl SendProxy {
    pub fn version(self) -> crate::proxy_proto::Version {
        match self {
            SendProxy::V1 => crate::proxy_proto::Version::V1,
            SendProxy::V2 => crate::proxy_proto::Version::V2,
        }
    }
}

fn default_keepalive() -> usize {
    32
}

fn default_retries() -> u32 {
    1
}

fn default_max_fails() -> u32 {
    3
}

fn default_fail_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Smooth weighted round robin.
    #[default]
    Roundrobin,
    Leastconn,
    Random,
    Hash,
    First,
    #[serde(rename = "static-rr")]
    StaticRr,
}

/// `upstreams.NAME.protocol`: how requests reach the servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS when `tls:` is set).
    #[default]
    Http1,
    /// HTTP/2 over TLS, negotiated by ALPN `h2` (needs `tls:`).
    H2,
    /// HTTP/2 over plain TCP with prior knowledge (no `tls:`).
    H2c,
}

impl UpstreamProtocol {
    /// True for both HTTP/2 variants: the servers are reached through
    /// multiplexed HTTP/2 connections, not the HTTP/1.1 pool.
    pub fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2 | UpstreamProtocol::H2c)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default = "default_true")]
    pub verify: bool,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM chain) presented to the servers; needs
    /// `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(rename = "type", default)]
    pub kind: HealthKind,
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_one_second")]
    pub interval: HumanDuration,
    #[serde(default = "default_one_second")]
    pub timeout: HumanDuration,
    #[serde(default = "default_two")]
    pub rise: u32,
    #[serde(default = "default_two")]
    pub fall: u32,
    #[serde(default = "default_expect_status")]
    pub expect_status: StatusRange,
}

fn default_health_path() -> String {
    "/".to_owned()
}
fn default_one_second() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_two() -> u32 {
    2
}
fn default_expect_status() -> StatusRange {
    StatusRange {
        low: 200,
        high: 399,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    #[default]
    Tcp,
    Http,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Defaults to `addr` (filled in by validation).
    #[serde(default)]
    pub name: String,
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub backup: bool,
    /// Requests in flight on this server over all workers; 0 = no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub maxconn: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_weight() -> u32 {
    1
}

/// A YAML mapping kept in file order, with duplicate keys rejected.
#[derive(Debug, Clone)]
pub struct NamedMap<T>(pub Vec<(String, T)>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        NamedMap(Vec::new())
    }
}

impl<T> NamedMap<T> {
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    pub fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|(n, _)| n == name)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.0.iter().map(|(n, v)| (n, v))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
            type Value = NamedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to definitions")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<NamedMap<T>, A::Error> {
                let mut out: Vec<(String, T)> = Vec::new();
                // A set beside the list: a scan per key would make a file
                // with many upstreams quadratic to load.
                let mut seen: HashSet<String> = HashSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("duplicate name {k:?}")));
                    }
                    let v = m.next_value::<T>()?;
                    out.push((k, v));
                }
                Ok(NamedMap(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

impl<T: Serialize> Serialize for NamedMap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}
