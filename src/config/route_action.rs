//! A route as the file writes it: a match (`host`, `path`) and exactly one
//! action among the keys `upstream`, `return`, `redirect`, `metrics` and
//! `stats`.
//! "Exactly one" is the type [`RouteAction`]: a route with none or two is an
//! error while the file is read, at the route's field path.

use super::raw::NamedMap;
use super::scalars::RedirectTarget;
use serde::{de, Deserialize, Deserializer, Serialize};
use std::fmt;

#[derive(Debug, Clone, Serialize)]
#[serde(into = "RouteKeys")]
pub struct Route {
    /// An exact host or `*.domain` (checked and lowercased by validation).
    pub host: Option<String>,
    /// A path prefix (checked and normalized by validation); absent = `/`.
    pub path: Option<String>,
    /// Client addresses (CIDR blocks) let in; others get 403 (see `access`).
    pub allow: Vec<String>,
    /// Client addresses kept out with 403.
    pub deny: Vec<String>,
    pub action: RouteAction,
    pub limit_req: Option<super::limits::LimitReq>,
    pub limit_conn: Option<super::limits::LimitConn>,
    /// Header rules for the request going upstream and the response
    /// going back (`http::header_rules`).
    pub request_headers: Option<HeaderRules>,
    pub response_headers: Option<HeaderRules>,
}

/// `request_headers` / `response_headers` as written: fields to set
/// (replace), to add, to remove.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRules {
    #[serde(default, skip_serializing_if = "NamedMap::is_empty")]
    pub set: NamedMap<String>,
    #[serde(default, skip_serializing_if = "NamedMap::is_empty")]
    pub add: NamedMap<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// What a matching request gets.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Proxied to the named upstream.
    Upstream(String),
    /// Answered by forklb itself.
    Return(ReturnAction),
    Redirect(RedirectAction),
    /// The counters of all workers.
    Metrics(MetricsFormat),
    /// The live dashboard (`dashboard`).
    Stats(StatsAction),
}

/// The keys of a route mapping, each action optional: the shape serde reads
/// and writes. [`Route`] is what is left once exactly one action is set.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RouteKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    #[serde(default, rename = "return", skip_serializing_if = "Option::is_none")]
    return_: Option<ReturnAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redirect: Option<RedirectAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<MetricsFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stats: Option<StatsAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_headers: Option<HeaderRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_headers: Option<HeaderRules>,
    limit_req: Option<super::limits::LimitReq>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit_conn: Option<super::limits::LimitConn>,
}

impl TryFrom<RouteKeys> for Route {
    type Error = String;

    fn try_from(k: RouteKeys) -> Result<Route, String> {
        let mut actions = Vec::with_capacity(1);
        if let Some(name) = k.upstream {
            actions.push(("upstream", RouteAction::Upstream(name)));
        }
        if let Some(ret) = k.return_ {
            actions.push(("return", RouteAction::Return(ret)));
        }
        if let Some(red) = k.redirect {
            actions.push(("redirect", RouteAction::Redirect(red)));
        }
        if let Some(format) = k.metrics {
            actions.push(("metrics", RouteAction::Metrics(format)));
        }
        if let Some(stats) = k.stats {
            actions.push(("stats", RouteAction::Stats(stats)));
        }
        if actions.len() > 1 {
            let names: Vec<&str> = actions.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "a route takes exactly one action, found {}",
                names.join(" and ")
            ));
        }
        let Some((_, action)) = actions.pop() else {
            return Err(
                "a route needs an action: upstream, return, redirect, metrics or stats".to_owned(),
            );
        };
        Ok(Route {
            host: k.host,
            path: k.path,
            allow: k.allow,
            deny: k.deny,
            action,
            request_headers: k.request_headers,
            response_headers: k.response_headers,
            limit_req: k.limit_req,
            limit_conn: k.limit_conn,
        })
    }
}

impl From<Route> for RouteKeys {
    fn from(r: Route) -> RouteKeys {
        let mut k = RouteKeys {
            host: r.host,
            path: r.path,
            allow: r.allow,
            deny: r.deny,
            upstream: None,
            return_: None,
            redirect: None,
            metrics: None,
            stats: None,
            request_headers: r.request_headers,
            response_headers: r.response_headers,
            limit_req: r.limit_req,
            limit_conn: r.limit_conn,
        };
        match r.action {
            RouteAction::Upstream(name) => k.upstream = Some(name),
            RouteAction::Return(ret) => k.return_ = Some(ret),
            RouteAction::Redirect(red) => k.redirect = Some(red),
            RouteAction::Metrics(format) => k.metrics = Some(format),
            RouteAction::Stats(stats) => k.stats = Some(stats),
        }
        k
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The action check runs inside the visit of the route's mapping, so
        // serde_norway places its error at the route (`listeners[0].routes[2]`);
        // after `deserialize` returned it would be placed at the list.
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = Route;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a route (a mapping with host, path and one action)")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Route, A::Error> {
                let keys = RouteKeys::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Route::try_from(keys).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(Visit)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnAction {
    #[serde(default = "default_return_status")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

fn default_return_status() -> u16 {
    200
}

fn default_content_type() -> String {
    "text/plain".to_owned()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectAction {
    pub to: RedirectTarget,
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    302
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    /// forklb's own families (`forklb_*`).
    Prometheus,
    /// HAProxy's exporter's families (`haproxy_*`), for its dashboards.
    Haproxy,
}

/// `stats: {allow, admin}`: the live dashboard. `allow` narrows who sees it
/// (beside the route's own `allow`/`deny`); `admin` adds the controls.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatsAction {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}
