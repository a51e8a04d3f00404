//! A route's `limit_req` and `limit_conn` as the file writes them, checked
//! while read: the key (`source`, `header:NAME`, `cookie:NAME`), the rate
//! (`N/s`, `N/m`), the status. Their state lives in shared memory
//! (`shm::LimitTable`), one table per limit, named after the route (see
//! [`table_name`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a request is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address (`127.0.0.2`, `::1`).
    Source,
    /// A request header's value (lowercase name); a request without it is
    /// not limited.
    Header(String),
    /// A cookie's value; a request without it is not limited.
    Cookie(String),
}

impl LimitKey {
    fn parse(s: &str) -> Result<LimitKey, String> {
        if s == "source" {
            return Ok(LimitKey::Source);
        }
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("invalid key {s:?}: expected source, header:NAME or cookie:NAME")
        })?;
        let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("invalid key {s:?}: {name:?} is not a {kind} name"));
        }
        match kind {
            "header" => Ok(LimitKey::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(LimitKey::Cookie(name.to_owned())),
            _ => Err(format!(
                "invalid key {s:?}: expected source, header:NAME or cookie:NAME"
            )),
        }
    }

    fn text(&self) -> String {
        match self {
            LimitKey::Source => "source".to_owned(),
            LimitKey::Header(n) => format!("header:{n}"),
            LimitKey::Cookie(n) => format!("cookie:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for LimitKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LimitKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for LimitKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// A rate, `N/s` or `N/m`, kept as nginx keeps it: thousandths of a
/// request per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per_minute: bool,
}

impl Rate {
    /// Thousandths of a request per second.
    pub fn millis_per_sec(&self) -> u64 {
        if self.per_minute {
            (self.count * 1000 / 60).max(1)
        } else {
            self.count * 1000
        }
    }

    fn parse(s: &str) -> Result<Rate, String> {
        let bad = || format!("invalid rate {s:?}: expected N/s or N/m, N at least 1");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        // Bounded so that rate × elapsed milliseconds cannot overflow.
        if count == 0 || count > 1_000_000_000 {
            return Err(bad());
        }
        let per_minute = match unit.trim() {
            "s" => false,
            "m" => true,
            _ => return Err(bad()),
        };
        Ok(Rate { count, per_minute })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rate::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let unit = if self.per_minute { "m" } else { "s" };
        s.serialize_str(&format!("{}/{unit}", self.count))
    }
}

fn default_status() -> u16 {
    429
}

fn default_size() -> usize {
    crate::shm::DEFAULT_ENTRIES
}

/// `limit_req: {key, rate, burst, status}`: nginx's `limit_req ... burst=B
/// nodelay`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReq {
    pub key: LimitKey,
    pub rate: Rate,
    #[serde(default)]
    pub burst: u32,
    #[serde(default = "default_status")]
    pub status: u16,
    /// Entries of the table (64 bytes each).
    #[serde(default = "default_size")]
    pub size: usize,
}

/// `limit_conn: {key, max, status}`: requests in flight per key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConn {
    pub key: LimitKey,
    pub max: u32,
    #[serde(default = "default_status")]
    pub status: u16,
    /// Entries of the table (64 bytes each).
    #[serde(default = "default_size")]
    pub size: usize,
}

/// A compiled limit: its settings and its table's position in
/// `Config::limit_tables` (and in the shared memory's tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit<T> {
    pub spec: T,
    pub table: usize,
    pub table_name: String,
}

/// The table of a route's limit: `LISTENER:HOSTPATH:req` (or `:conn`),
/// e.g. `web:/api/:req`, `web:api.example.com/:conn`. A reload keeps a
/// table's state when the name stays, so a route keeps its state as long
/// as its listener, host and path stay.
pub fn table_name(listener: &str, host: Option<&str>, path: &str, kind: &str) -> String {
    format!("{listener}:{}{path}:{kind}", host.unwrap_or(""))
}

/// Checks a table's size (entries).
pub fn check_size(size: usize) -> Result<(), String> {
    use crate::shm::{MAX_ENTRIES, MIN_ENTRIES};
    if (MIN_ENTRIES..=MAX_ENTRIES).contains(&size) {
        Ok(())
    } else {
        Err(format!(
            "size {size} is out of range: {MIN_ENTRIES} to {MAX_ENTRIES} entries"
        ))
    }
}

/// Checks a limit's status (an error status of the kind clients expect).
pub fn check_status(status: u16) -> Result<(), String> {
    if (400..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status} is not an error status (400-599)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_rates() {
        assert_eq!(LimitKey::parse("source"), Ok(LimitKey::Source));
        assert_eq!(
            LimitKey::parse("header:X-Key"),
            Ok(LimitKey::Header("x-key".into()))
        );
        assert_eq!(
            LimitKey::parse("cookie:sid"),
            Ok(LimitKey::Cookie("sid".into()))
        );
        assert!(LimitKey::parse("header:").is_err());
        assert!(LimitKey::parse("query:a").is_err());
        assert_eq!(Rate::parse("20/s").map(|r| r.millis_per_sec()), Ok(20_000));
        assert_eq!(Rate::parse("60/m").map(|r| r.millis_per_sec()), Ok(1000));
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("5/h").is_err());
        assert!(Rate::parse("5").is_err());
    }
}
