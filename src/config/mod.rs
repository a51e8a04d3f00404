//! Configuration: schema (DESIGN §4), human units, loading and validation.

mod index;
mod nesting;
mod schema;
mod units;
mod validate;

pub use index::ServerIndex;
pub use schema::*;
pub use units::{ByteSize, HumanDuration};
pub use validate::{parse_status_range, ConfigError};

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

    /// The effective configuration (defaults filled in) as YAML, for `forklb -T`.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}
