//! [`ConfigError`]: what is wrong in a configuration file, and where.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error: the file, the field path (`listeners[0].bind[1]`; empty when
/// unknown), the `line:column` for YAML errors, and a message.
///
/// Displays as `FILE[:LINE:COL]: [PATH: ]MESSAGE`, e.g.
/// `/etc/forklb/forklb.yaml:6:9: listeners[0].routes[1]: unknown field `upstrem`, ...` or
/// `/etc/forklb/forklb.yaml: upstreams.web.servers[1].weight: weight 300 is out of range 0-256`.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub path: String,
    pub line_col: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    /// An error at a field path, without a line:column.
    pub fn new(file: &Path, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            path: path.into(),
            line_col: None,
            message: message.into(),
        }
    }

    /// Turns a serde_norway error into a `ConfigError`: the location goes to `line_col`,
    /// the field path prefix serde_norway puts in front of the message goes to `path`, and
    /// the ` at line X column Y` it appends is dropped (Display prints `:LINE:COL`).
    pub(super) fn from_yaml(file: &Path, e: &serde_norway::Error) -> Self {
        let line_col = e.location().map(|l| (l.line(), l.column()));
        let mut message = plain_type_names(&e.to_string());
        if let Some((l, c)) = line_col {
            message = message.replacen(&format!(" at line {l} column {c}"), "", 1);
        }
        let mut path = String::new();
        if let Some((p, rest)) = message.split_once(": ") {
            if looks_like_field_path(p) {
                path = p.to_owned();
                message = rest.to_owned();
            }
        }
        ConfigError {
            file: file.to_path_buf(),
            path,
            line_col,
            message,
        }
    }
}

/// serde names the Rust type it expected (`expected u32`); an operator reads
/// what the field takes (`expected a whole number from 0 to 4294967295`).
fn plain_type_names(message: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number from 0 to 18446744073709551615"),
        ("usize", "a whole number from 0 to 18446744073709551615"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    for (rust, plain) in NAMES {
        let named = format!("expected {rust}");
        // Only the whole word: `expected u32` but not `expected u32x`.
        if let Some(at) = message.find(&named) {
            let end = at + named.len();
            if !message[end..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                return format!("{}expected {plain}{}", &message[..at], &message[end..]);
            }
        }
    }
    message.to_owned()
}

/// Whether `s` is a serde_norway field path such as `listeners[0].routes[1]` rather than the
/// start of a message (messages have spaces or quotes before their first `": "`).
pub(super) fn looks_like_field_path(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(|c: char| c.is_whitespace() || c == '`' || c == '"' || c == '\'')
        && s.chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
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

/// A semantic error: field path and message; the file is added by the caller.
#[derive(Debug)]
pub(super) struct Invalid {
    pub path: String,
    pub message: String,
}

pub(super) fn invalid<T>(
    path: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, Invalid> {
    Err(Invalid {
        path: path.into(),
        message: message.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::plain_type_names;

    #[test]
    fn rust_type_names_become_what_the_field_takes() {
        assert_eq!(
            plain_type_names("invalid type: integer `-1`, expected u32"),
            "invalid type: integer `-1`, expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_type_names("invalid value: integer `70000`, expected u16"),
            "invalid value: integer `70000`, expected a whole number from 0 to 65535"
        );
        assert_eq!(
            plain_type_names("invalid type: string \"x\", expected f64"),
            "invalid type: string \"x\", expected a number"
        );
        // Anything else is left as it is.
        assert_eq!(
            plain_type_names("invalid type: string \"x\", expected a boolean"),
            "invalid type: string \"x\", expected a boolean"
        );
        assert_eq!(plain_type_names("expected u32x"), "expected u32x");
    }
}
