//! Routes as the data path uses them: per listener an ordered list of a host
//! match, a normalized path prefix and an action; the first match wins.

use super::limits::{Limit, LimitConn, LimitReq};
use crate::http::redirect::Template;

#[derive(Debug, Clone)]
pub struct Route {
    pub host: HostMatch,
    /// Normalized the way request paths are (`http::path`); `/` when absent.
    pub path: String,
    /// `allow` / `deny`, if the route has either (boxed: most have none).
    pub access: Option<Box<super::access::Access>>,
    pub action: Action,
    /// Header rules (`request_headers`, `response_headers`), if any.
    pub headers: Option<std::sync::Arc<crate::http::header_rules::RouteHeaders>>,
    pub limit_req: Option<Limit<LimitReq>>,
    pub limit_conn: Option<Limit<LimitConn>>,
}

impl Route {
    /// Whether a client at `ip` may use this route (`allow` / `deny`).
    #[inline]
    pub fn permits(&self, ip: std::net::IpAddr) -> bool {
        self.access.as_ref().is_none_or(|a| a.permits(ip))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lowercase.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any subdomain, any depth.
    Suffix(String),
}

#[derive(Debug, Clone)]
pub enum Action {
    /// The upstream's position in `Config::upstreams`.
    Upstream(usize),
    Return {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    Redirect {
        status: u16,
        to: Template,
    },
    Metrics(super::raw::MetricsFormat),
    /// The live dashboard (`crate::dashboard`).
    Stats(Stats),
}

/// A `stats` route, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Clients let in; empty: everyone the route lets in.
    pub allow: Vec<super::access::Cidr>,
    /// The controls (state, weight) are offered and POSTs accepted.
    pub admin: bool,
}

impl Stats {
    /// Whether a client at `ip` may see the dashboard.
    pub fn permits(&self, ip: std::net::IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

impl Route {
    /// Whether requests on this route pass through `limit_req` or
    /// `limit_conn`.
    #[inline]
    pub fn has_limits(&self) -> bool {
        self.limit_req.is_some() || self.limit_conn.is_some()
    }
}

impl HostMatch {
    /// From a checked, lowercased route host (`api.example.com`, `*.example.com`).
    pub fn new(host: Option<&str>) -> HostMatch {
        match host {
            None => HostMatch::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
                None => HostMatch::Exact(h.to_owned()),
            },
        }
    }

    /// The host as the file writes it (`None` = any host), for `forklb -T`.
    pub fn to_text(&self) -> Option<String> {
        match self {
            HostMatch::Any => None,
            HostMatch::Exact(h) => Some(h.clone()),
            HostMatch::Suffix(s) => Some(format!("*{s}")),
        }
    }

    /// Whether a request's `host` (lowercase, no port) matches.
    pub fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(e), Some(h)) => e == h,
            (HostMatch::Suffix(s), Some(h)) => h.len() > s.len() && h.ends_with(s.as_str()),
            _ => false,
        }
    }
}

/// The first route in `routes` matching `host` (lowercase, no port) and
/// `path` (normalized, `http::path`).
pub fn find<'a>(routes: &'a [Route], host: Option<&str>, path: &[u8]) -> Option<&'a Route> {
    routes
        .iter()
        .find(|r| r.host.matches(host) && path.starts_with(r.path.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching() {
        let w = HostMatch::new(Some("*.example.com"));
        assert!(w.matches(Some("a.example.com")));
        assert!(w.matches(Some("b.a.example.com")));
        assert!(!w.matches(Some("example.com")));
        assert!(!w.matches(None));
        assert_eq!(w.to_text().as_deref(), Some("*.example.com"));
        let e = HostMatch::new(Some("api.example.com"));
        assert!(e.matches(Some("api.example.com")));
        assert!(!e.matches(Some("x.api.example.com")));
        assert!(HostMatch::Any.matches(None));
    }
}
