//! Configuration: schema (DESIGN §4), human units, loading and validation.

mod index;
mod nesting;
mod route_action;
mod scalars;
mod schema;
mod units;
mod validate;

pub use index::ServerIndex;
pub use scalars::{HashKey, RedirectTarget, StatusRange};
pub use schema::*;
pub use units::{ByteSize, HumanDuration};
pub use validate::ConfigError;

use std::path::Path;
use std::time::Duration;

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

    /// The effective configuration (defaults filled in) as YAML, for `forklb -T`.
    pub fn to_yaml(&self) -> String {
        // Defaults that depend on other keys are printed as their effective
        // values, so the output means the same when read back.
        let mut effective = self.clone();
        effective.upgrade_sock = Some(self.upgrade_sock_path().to_owned());
        effective.upgrade_grace = Some(HumanDuration(self.upgrade_grace()));
        serde_norway::to_string(&effective)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
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
            (Some(g), _) => g.get(),
            (None, Some(_)) => DEFAULT_UPGRADE_GRACE,
            (None, None) => Duration::ZERO,
        }
    }
}

pub const DEFAULT_UPGRADE_SOCK: &str = "/run/forklb/upgrade.sock";
/// Pingora's old instance tries for about 5 s to hand its sockets over.
pub const DEFAULT_UPGRADE_GRACE: Duration = Duration::from_secs(5);
