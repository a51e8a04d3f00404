//! Loading and semantic validation. (Stub: being written.)
use super::Config;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub path: String,
    pub line_col: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((l, c)) = self.line_col {
            write!(f, ":{l}:{c}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        path: String::new(),
        line_col: None,
        message: format!("cannot read: {e}"),
    })?;
    from_yaml_str(&text, path)
}

pub fn from_yaml_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let mut cfg: Config = serde_yaml::from_str(text).map_err(|e| ConfigError {
        file: source.to_path_buf(),
        path: String::new(),
        line_col: e.location().map(|l| (l.line(), l.column())),
        message: e.to_string(),
    })?;
    cfg.source = source.to_path_buf();
    Ok(cfg)
}
