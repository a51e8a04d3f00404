//! Keys whose YAML value is one string with a grammar of its own: `hash_key`,
//! `health.expect_status`, `redirect.to`. Each is parsed once, while the file
//! is read, into the type the runtime uses; each prints back as text for
//! `forklb -T`.
//!
//! The parse runs inside the deserializer's visit: serde_norway gives an error
//! the field path and `line:column` of the value being visited, and an error
//! raised after `deserialize` returned would be placed at the enclosing mapping.

use crate::http::redirect::Template;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What `balance: hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address.
    Source,
    /// The normalized request path (nginx's `$uri`).
    Uri,
    /// A request header, its name as written (matched case-insensitively).
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

impl HashKey {
    /// Parses `source`, `uri`, `header:NAME` or `cookie:NAME` (NAME an HTTP token).
    pub fn parse(key: &str) -> Result<HashKey, String> {
        let is_token = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        match key {
            "source" => Ok(HashKey::Source),
            "uri" => Ok(HashKey::Uri),
            _ => match (key.strip_prefix("header:"), key.strip_prefix("cookie:")) {
                (Some(n), _) if is_token(n) => Ok(HashKey::Header(n.to_owned())),
                (_, Some(n)) if is_token(n) => Ok(HashKey::Cookie(n.to_owned())),
                _ => Err(format!(
                    "invalid hash_key {key:?}: expected source, uri, header:NAME or cookie:NAME"
                )),
            },
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::Source => f.write_str("source"),
            HashKey::Uri => f.write_str("uri"),
            HashKey::Header(n) => write!(f, "header:{n}"),
            HashKey::Cookie(n) => write!(f, "cookie:{n}"),
        }
    }
}

/// Accepted HTTP statuses, inclusive: `"200"` or `"200-399"` (within 100-599, low ≤ high).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub fn parse(s: &str) -> Result<StatusRange, String> {
        let bounds = match s.split_once('-') {
            Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
            None => s.trim().parse().ok().map(|v: u16| (v, v)),
        };
        match bounds {
            Some((low, high))
                if (100..=599).contains(&low) && (100..=599).contains(&high) && low <= high =>
            {
                Ok(StatusRange { low, high })
            }
            _ => Err(format!(
                "invalid status range {s:?}: expected e.g. \"200\" or \"200-399\""
            )),
        }
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

/// A `redirect.to`: a location with variables (`https://$host$request_uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTarget(pub Template);

impl RedirectTarget {
    pub fn parse(to: &str) -> Result<RedirectTarget, String> {
        if to.is_empty() {
            return Err("the redirect target must not be empty".to_owned());
        }
        if to.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "redirect target {to:?} may not contain spaces or control characters"
            ));
        }
        Template::parse(to).map(RedirectTarget)
    }
}

impl fmt::Display for RedirectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Deserializes a string scalar with `parse`, in the visit (see the module doc).
fn parse_str<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct Visit<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }
    impl<T> de::Visitor<'_> for Visit<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Visit { expecting, parse })
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "source, uri, header:NAME or cookie:NAME", HashKey::parse)
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a status or a status range", StatusRange::parse)
    }
}

impl<'de> Deserialize<'de> for RedirectTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a URL or a path", RedirectTarget::parse)
    }
}

macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_text!(HashKey, StatusRange, RedirectTarget);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys() {
        for key in ["source", "uri", "header:X-User", "cookie:session"] {
            assert_eq!(HashKey::parse(key).unwrap().to_string(), key);
        }
        for key in ["", "src", "header:", "cookie:a b", "header"] {
            assert!(HashKey::parse(key).is_err(), "{key}");
        }
    }

    #[test]
    fn status_ranges() {
        let r = StatusRange::parse("200-399").unwrap();
        assert_eq!((r.low, r.high), (200, 399));
        assert_eq!(StatusRange::parse("204").unwrap().to_string(), "204");
        for bad in ["99", "x", "399-200", "200-600"] {
            assert!(StatusRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_targets() {
        assert_eq!(
            RedirectTarget::parse("https://$host$request_uri")
                .unwrap()
                .to_string(),
            "https://$host$request_uri"
        );
        assert!(RedirectTarget::parse("").is_err());
        assert!(RedirectTarget::parse("/a b").is_err());
        assert!(RedirectTarget::parse("/$nope").is_err());
    }
}
