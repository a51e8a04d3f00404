//! The live dashboard (route action `stats`): a page compiled into the
//! binary, the JSON document it polls, and, on `admin: true` routes, the
//! changes its controls POST. Protocol-neutral: HTTP/1.1 (`proxy::conn`)
//! and HTTP/2 (`proxy::exchange`) turn the [`Answer`] into a response.
//!
//! Nothing here runs unless a request reaches a `stats` route: the page
//! costs nothing while nobody looks at it.

pub mod action;
pub mod json;
pub mod query;
pub mod token;
pub mod writer;

use crate::config::{Config, Stats};
use crate::shm::Shm;
use query::Query;
use std::borrow::Cow;
use std::net::IpAddr;

/// The page and its assets, compiled in (no external resources).
const INDEX_HTML: &[u8] = include_bytes!("assets/index.html");
const APP_JS: &[u8] = include_bytes!("assets/app.js");
const APP_CSS: &[u8] = include_bytes!("assets/app.css");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

/// Header fields of every dashboard answer: the page may load only its
/// own script, style and JSON; it may not be framed; nothing is cached.
/// Names in lowercase, as HTTP/2 requires (HTTP/1.1 takes any case).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// The methods a dashboard answers (the `Allow` of a 405).
pub const ALLOW: &str = "GET, HEAD, POST";

/// A request on a `stats` route, as either protocol has it.
pub struct Request<'a> {
    pub method: &'a str,
    /// Origin form, with the query.
    pub target: &'a str,
    /// Header fields (`Host` from `:authority` for HTTP/2).
    pub headers: &'a [httparse::Header<'a>],
    pub peer: IpAddr,
    /// The listener's scheme (`http`, `https`): the page's origin is
    /// `scheme://Host`.
    pub scheme: &'a str,
}

/// The answer, for the protocol to write (with [`SECURITY_HEADERS`], and
/// `Allow: ALLOW` when `allow` is set).
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Cow<'static, [u8]>,
    pub allow: bool,
    /// A change was made: the worker tells the master, which rewrites the
    /// state file as it does after the same command on the admin socket.
    pub state_changed: bool,
}

impl Answer {
    fn of(status: u16, content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Answer {
        Answer {
            status,
            content_type,
            body: body.into(),
            allow: false,
            state_changed: false,
        }
    }

    fn text(status: u16, body: &'static str) -> Answer {
        Answer::of(status, TEXT, body.as_bytes())
    }

    fn json_error(status: u16, error: &str) -> Answer {
        let mut w = writer::JsonWriter::with_capacity(48 + error.len());
        w.begin_object();
        w.key("ok");
        w.boolean(false);
        w.field_str("error", error);
        w.end_object();
        Answer::of(status, JSON, w.finish().into_bytes())
    }
}

/// What the dashboard reads besides the request.
pub struct Instance<'a> {
    pub config: &'a Config,
    pub shm: &'a Shm,
    pub generation: u64,
    /// This worker is draining (a reload replaced its generation): its
    /// shared state is no longer the one the instance uses.
    pub draining: bool,
}

/// Answers a request that matched a `stats` route (whose own `allow` /
/// `deny` let the client in already).
pub fn answer(stats: &Stats, req: &Request, inst: &Instance) -> Answer {
    if !stats.permits(req.peer) {
        log::info!("client {} refused by the stats route's allow", req.peer);
        return Answer::text(403, "Forbidden\n");
    }
    match req.method {
        "GET" | "HEAD" => read(stats, &Query::of_target(req.target), inst),
        "POST" => change(stats, req, inst),
        _ => Answer {
            allow: true,
            ..Answer::text(405, "Method Not Allowed\n")
        },
    }
}

/// GET and HEAD: an asset, the JSON document, or else the page (whose
/// own parameters, such as `?refresh=N`, its script reads).
fn read(stats: &Stats, q: &Query, inst: &Instance) -> Answer {
    if let Some(asset) = q.get("asset") {
        return match asset {
            "app.js" => Answer::of(200, JS, APP_JS),
            "app.css" => Answer::of(200, CSS, APP_CSS),
            _ => Answer::text(404, "Not Found\n"),
        };
    }
    if q.get("json").is_some() {
        let now_ms = json::now_ms();
        let token = if stats.admin {
            token::issue(now_ms / 1000)
        } else {
            None
        };
        let facts = json::Facts {
            generation: inst.generation,
            token: token.as_deref(),
            admin: stats.admin,
            now_ms,
        };
        let body = json::render(inst.config, inst.shm, &facts);
        return Answer::of(200, JSON, body.into_bytes());
    }
    Answer::of(200, HTML, INDEX_HTML)
}

/// The first value of header `name` (lowercase), if any.
fn header<'a>(req: &'a Request, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .find(|h| crate::http::name_is(h.name, name))
        .map(|h| h.value)
}

/// Why a POST may not change anything (before its parameters are read).
fn forbidden(stats: &Stats, req: &Request) -> Option<&'static str> {
    if !stats.admin {
        return Some("read-only dashboard");
    }
    let Some(t) = header(req, "x-forklb-token") else {
        return Some("missing token");
    };
    let t = std::str::from_utf8(t).unwrap_or("");
    if let Err(e) = token::check(t.trim(), json::now_ms() / 1000) {
        return Some(e.reason());
    }
    // A page of another origin may send a simple POST; a browser names
    // that origin. A client without these headers is not a browser (a
    // browser's cross-origin request carries Origin), so it needs only
    // the token, which another origin's page cannot read.
    if let Some(origin) = header(req, "origin") {
        let host = header(req, "host").unwrap_or(b"");
        let own = [req.scheme.as_bytes(), b"://", host].concat();
        if !origin.eq_ignore_ascii_case(&own) {
            return Some("cross-origin request");
        }
    }
    if let Some(site) = header(req, "sec-fetch-site") {
        if site != b"same-origin" {
            return Some("cross-site request");
        }
    }
    None
}

/// POST: a change of a server's state or weight.
fn change(stats: &Stats, req: &Request, inst: &Instance) -> Answer {
    if let Some(why) = forbidden(stats, req) {
        log::info!("dashboard change by {} refused: {why}", req.peer);
        return Answer::json_error(403, why);
    }
    if inst.draining {
        // A change here would go to the replaced generation's shared
        // state and be lost: the page's next try reaches a current worker.
        return Answer::json_error(503, "reloading, try again");
    }
    let q = Query::of_target(req.target);
    let change = match action::Change::parse(q.get("action"), q.get("server"), q.get("value")) {
        Ok(c) => c,
        Err(r) => return Answer::json_error(r.status, &r.error),
    };
    match action::apply(&change, inst.config, inst.shm, inst.generation, req.peer) {
        Ok(state_changed) => Answer {
            state_changed,
            ..Answer::of(200, JSON, &b"{\"ok\":true}"[..])
        },
        Err(r) => Answer::json_error(r.status, &r.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::from_yaml_str(yaml, std::path::Path::new("/tmp/t.yaml")).expect("config")
    }

    const YAML: &str = "listeners:\n  - name: web\n    bind: [\"127.0.0.1:1\"]\n    routes:\n      - {path: /s, stats: {admin: true}}\n      - {upstream: \"a\\\"p\\\\i\"}\nupstreams:\n  \"a\\\"p\\\\i\":\n    servers:\n      - {name: \"w\\\"1\", addr: \"127.0.0.1:9\"}\n";

    fn post<'a>(target: &'a str, headers: &'a [httparse::Header<'a>]) -> Request<'a> {
        Request {
            method: "POST",
            target,
            headers,
            peer: "127.0.0.1".parse().unwrap(),
            scheme: "http",
        }
    }

    #[test]
    fn names_are_escaped_in_the_document() {
        let cfg = config(YAML);
        let shm = Shm::create(&[1], 1).unwrap();
        let facts = json::Facts {
            generation: 1,
            admin: false,
            token: None,
            now_ms: 0,
        };
        let doc = json::render(&cfg, &shm, &facts);
        assert!(doc.contains(r#""name":"a\"p\\i""#), "{doc}");
        assert!(doc.contains(r#""name":"w\"1""#), "{doc}");
    }

    #[test]
    fn a_draining_worker_makes_no_change() {
        let cfg = config(YAML);
        let shm = Shm::create(&[1], 1).unwrap();
        let stats = Stats {
            allow: Vec::new(),
            admin: true,
        };
        shm.server(0, 0).init(1, None, 0);
        let t = token::issue(json::now_ms() / 1000).unwrap();
        let headers = [httparse::Header {
            name: "X-Forklb-Token",
            value: t.as_bytes(),
        }];
        let target = "/s?action=weight&server=a%22p%5Ci/w%221&value=0";
        let mut inst = Instance {
            config: &cfg,
            shm: &shm,
            generation: 1,
            draining: true,
        };
        let a = answer(&stats, &post(target, &headers), &inst);
        assert_eq!(a.status, 503);
        assert!(!a.state_changed);
        assert_eq!(shm.server(0, 0).weight(), 1);
        // A current worker makes it (names with quotes and backslashes
        // reach the runtime API decoded).
        inst.draining = false;
        let a = answer(&stats, &post(target, &headers), &inst);
        assert_eq!((a.status, &a.body[..]), (200, &br#"{"ok":true}"#[..]));
        assert!(a.state_changed);
        assert_eq!(shm.server(0, 0).weight(), 0);
        // A control character is refused before a command line is built.
        let bad = "/s?action=weight&server=a%22p%5Ci/w%221&value=1%01";
        let a = answer(&stats, &post(bad, &headers), &inst);
        assert_eq!(a.status, 400);
        assert_eq!(&a.body[..], br#"{"ok":false,"error":"invalid value"}"#);
    }
}
