//! Configuration (DESIGN §4): read once per load, parsed into types, then
//! validated into what the runtime uses.
//!
//! - [`raw`]: the file's shape, serde types only (unknown keys and variants
//!   are errors with their field path). Keys with a grammar of their own are
//!   typed while the file is read: `units` (`10s`, `16k`), `scalars`
//!   (`hash_key`, `expect_status`, `redirect.to`) and `route_action` (a
//!   route's one action).
//! - `validate`: loading and the checks across keys, turning a
//!   [`raw::Config`] into a [`Config`]: paths absolute, names unique,
//!   addresses parsed and resolved, TLS files loaded, routes compiled.
//!   Errors are [`ConfigError`]s (file, `line:column`, field path).
//! - `validated`: [`Config`], what the master, workers and health checker
//!   use; `routing`: its compiled routes; `index`: upstreams and servers
//!   by name.
//! - `print`: `forklb -T`, a [`Config`] back in the file's shape.
//! - `nesting`: the depth guard run before the YAML parser.

pub mod access;
mod build;
mod error;
mod index;
pub mod limits;
mod nesting;
pub mod overlay;
mod print;
pub mod raw;
mod route_action;
mod routing;
mod scalars;
mod units;
mod validate;
mod validated;

pub use build::resolve as resolve_host;
pub use error::ConfigError;
pub use index::ServerIndex;
pub use raw::{
    AccessLog, AccessLogFormat, Admin, AdminLevel, Balance, CertKey, ClientAuth, HealthKind,
    LogLevel, MetricsFormat, SendProxy, UpstreamProtocol, UpstreamTls, Workers,
};
pub use routing::{Action, HostMatch, Route, Stats};
pub use scalars::{HashKey, RedirectTarget, StatusRange};
pub use units::{ByteSize, HumanDuration};
pub use validate::{split_host_port, MAX_RETRIES};
pub use validated::{
    Config, Health, Http2Settings, Listener, Server, Timeouts, Upstream, Upstreams,
    DEFAULT_UPGRADE_GRACE, DEFAULT_UPGRADE_SOCK,
};

use std::path::Path;

impl Config {
    /// Reads, parses and validates the file at `path`. Relative paths inside are
    /// made absolute against the file's folder; server host names are resolved.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        validate::load(path)
    }

    /// Parses and validates `text` as if it had been read from `source`.
    pub fn from_yaml_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        validate::from_yaml_str(text, source)
    }
}
