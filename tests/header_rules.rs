//! Header rules on routes (issue 18 item 4): `request_headers` and
//! `response_headers` with `set` (replace), `add` (append), `remove`, and
//! the variables of DESIGN §4.1; `$request_id` is unique per request, goes
//! upstream when a rule asks and is in both access-log formats. Checked for
//! HTTP/1.1 and HTTP/2 clients against a real backend; framing fields and
//! unknown variables are refused at load.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;
use support::*;

const BACKEND_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: backend/1.0\r\nX-Backend: yes\r\nContent-Length: 2\r\n\r\nok";

fn rules_route() -> Route {
    Route::to("app")
        .field(
            "request_headers",
            "{set: {X-Env: prod}, add: {X-Id: \"$request_id\", X-Client: \"$remote_addr:$remote_port\", \
             X-Url: \"$scheme://$host/\", X-Dollar: \"$$5 ${server_name}\"}, remove: [X-Debug, X-Forwarded-Proto]}",
        )
        .field(
            "response_headers",
            "{set: {Strict-Transport-Security: \"max-age=63072000\"}, add: {X-Served-By: \"$server_name\"}, \
             remove: [Server, X-Backend]}",
        )
}

struct Setup {
    lb: Forklb,
    be: Backend,
    dir: TempDir,
    h2c_port: u16,
}

fn start(format: &str) -> Setup {
    let be = Backend::start_with(
        "app",
        BackendOpts {
            scripts: vec![Script::new("/", BACKEND_HEAD, Then::KeepAlive)],
            ..BackendOpts::default()
        },
    );
    let dir = TempDir::new("hdrrules");
    let h2c_port = free_port();
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .access_log(&dir.join("access.log"), format)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::path("/plain").upstream("app"))
            .route(rules_route())
            .listener("h2", &[&format!("127.0.0.1:{h2c_port}")])
            .listener_opt("h2c: true")
            .route(rules_route())
            .upstream("app", [Srv::of(&be)])
            .build(),
    );
    Setup {
        lb,
        be,
        dir,
        h2c_port,
    }
}

fn is_request_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The access log's lines, once the workers flushed them.
fn log_lines(dir: &Path, n: usize) -> Vec<String> {
    let path = dir.join("access.log");
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(5), || {
        lines = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.len() >= n
    });
    lines
}

#[test]
fn http1_requests_and_responses_follow_the_rules() {
    let s = start("combined");
    let port = s.lb.port();
    let mut c = Conn::open(port).expect("connect");
    c.send(
        b"GET /x HTTP/1.1\r\nHost: Example.COM:8080\r\nX-Env: dev\r\nX-Env: test\r\n\
          X-Debug: 1\r\nX-Id: client-chosen\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    // Response rules: set, add, remove (the backend's Server and X-Backend).
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(r.header("x-served-by"), Some("web"));
    assert_eq!(r.header("server"), None, "{:?}", r.headers);
    assert_eq!(r.header("x-backend"), None, "{:?}", r.headers);

    let reqs = s.be.requests();
    let got = reqs.last().expect("a request upstream");
    // set replaces every X-Env; remove drops X-Debug and forklb's own
    // X-Forwarded-Proto; add keeps the client's X-Id and appends one.
    assert_eq!(got.header_all("x-env"), ["prod"]);
    assert!(!got.has_header("x-debug"));
    assert!(!got.has_header("x-forwarded-proto"));
    let ids = got.header_all("x-id");
    assert_eq!(ids.len(), 2, "{:?}", got.headers);
    assert_eq!(ids[0], "client-chosen");
    assert!(is_request_id(ids[1]), "{ids:?}");
    let local = c.stream().local_addr().expect("local addr");
    assert_eq!(
        got.header("x-client"),
        Some(format!("127.0.0.1:{}", local.port()).as_str())
    );
    assert_eq!(got.header("x-url"), Some("http://example.com/"));
    assert_eq!(got.header("x-dollar"), Some("$5 web"));
    assert!(got.has_header("x-forwarded-for"));

    // Each request its own id; the log carries the one that went upstream.
    let r2 = c.request("GET", "/y", &[], b"").expect("second");
    assert_eq!(r2.status, 200);
    let reqs = s.be.requests();
    let id2 = reqs
        .last()
        .and_then(|q| q.header("x-id"))
        .unwrap_or("")
        .to_owned();
    assert!(is_request_id(&id2) && id2 != ids[1]);
    // A route without rules: headers pass as they came.
    let plain = c
        .request("GET", "/plain", &[("X-Debug", "1")], b"")
        .expect("plain");
    assert_eq!(plain.header("server"), Some("backend/1.0"));
    assert!(s
        .be
        .requests()
        .last()
        .is_some_and(|q| q.has_header("x-debug")));
    let lines = log_lines(s.dir.path(), 3);
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!(" request_id={}", ids[1]))),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!(" request_id={id2}"))),
        "{lines:#?}"
    );
}

#[test]
fn http2_clients_get_the_same_rules_and_json_logs_the_id() {
    let s = start("json");
    let out = curl(&[
        "--http2-prior-knowledge",
        "-sS",
        "-D",
        "-",
        "-H",
        "X-Debug: 1",
        "-H",
        "X-Env: dev",
        &format!("http://127.0.0.1:{}/h2", s.h2c_port),
    ]);
    assert!(out.ok(), "{}", out.combined());
    let head = out.stdout.to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(
        head.contains("strict-transport-security: max-age=63072000"),
        "{head}"
    );
    assert!(head.contains("x-served-by: h2"), "{head}");
    assert!(!head.contains("server:"), "{head}");
    assert!(!head.contains("x-backend:"), "{head}");
    let reqs = s.be.requests();
    let got = reqs.last().expect("a request upstream");
    assert_eq!(got.header_all("x-env"), ["prod"]);
    assert!(!got.has_header("x-debug"));
    let id = got.header("x-id").unwrap_or("").to_owned();
    assert!(is_request_id(&id), "{:?}", got.headers);
    let lines = log_lines(s.dir.path(), 1);
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!(",\"request_id\":\"{id}\"}}"))),
        "{lines:#?}"
    );
}

#[test]
fn rules_are_checked_at_load() {
    let dir = TempDir::new("hdrrulesbad");
    let check = |route: &str| {
        let cfg = dir.join("f.yaml");
        fs::write(
            &cfg,
            format!(
                "listeners:\n  - name: web\n    bind: [\"127.0.0.1:1\"]\n    routes:\n      - {route}\n\
                 upstreams:\n  app:\n    servers: [{{addr: \"127.0.0.1:2\"}}]\n"
            ),
        )
        .expect("write config");
        run_forklb(
            &["-t", "-c", cfg.to_str().unwrap_or_default()],
            Duration::from_secs(10),
        )
    };
    for (route, want) in [
        (
            "{upstream: app, request_headers: {set: {Content-Length: \"5\"}}}",
            "Content-Length frames or routes the message",
        ),
        (
            "{upstream: app, response_headers: {remove: [Transfer-Encoding]}}",
            "Transfer-Encoding frames or routes the message",
        ),
        (
            "{upstream: app, request_headers: {add: {X-A: \"$nope\"}}}",
            "unknown variable $nope",
        ),
        (
            "{upstream: app, request_headers: {add: {\"Bad Name\": x}}}",
            "is not a header field name",
        ),
        (
            "{return: {status: 200}, response_headers: {set: {X-A: b}}}",
            "apply to routes with an upstream",
        ),
        (
            "{upstream: app, request_headers: {sett: {X-A: b}}}",
            "unknown field `sett`",
        ),
    ] {
        let out = check(route);
        assert_ne!(out.code(), Some(0), "{route}: {}", out.combined());
        assert!(out.combined().contains(want), "{route}: {}", out.combined());
    }
    // A good one passes, and -T prints the rules back.
    let cfg = dir.join("ok.yaml");
    fs::write(
        &cfg,
        "listeners:\n  - name: web\n    bind: [\"127.0.0.1:1\"]\n    routes:\n      - {upstream: app, \
         request_headers: {set: {X-Env: prod}, add: {X-Id: \"$request_id\"}, remove: [X-Debug]}, \
         response_headers: {remove: [Server]}}\n\
         upstreams:\n  app:\n    servers: [{addr: \"127.0.0.1:2\"}]\n",
    )
    .expect("write config");
    let out = run_forklb(
        &["-T", "-c", cfg.to_str().unwrap_or_default()],
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(0), "{}", out.combined());
    let text = out.combined();
    for want in ["X-Env: prod", "X-Id: $request_id", "- X-Debug", "- Server"] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
}

#[test]
fn rules_apply_to_an_http2_upstream_too() {
    let origin = H2Origin::start("o1");
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(rules_route())
            .upstream("app", [Srv::new(origin.name(), origin.addr())])
            .upstream_opt("protocol: h2c")
            .build(),
    );
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /status/200 HTTP/1.1\r\nHost: h.example\r\nX-Env: dev\r\nX-Debug: 1\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(r.header("x-served-by"), Some("web"));
    assert_eq!(r.header("x-backend"), None, "{:?}", r.headers);
    let reqs = origin.requests_for("/status/200");
    let got = reqs.last().expect("a request upstream");
    let env: Vec<&str> = got
        .headers
        .iter()
        .filter(|(n, _)| n == "x-env")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(env, ["prod"], "{:?}", got.headers);
    assert_eq!(got.header("x-debug"), None);
    assert_eq!(got.header("x-forwarded-proto"), None);
    assert!(
        got.header("x-id").is_some_and(is_request_id),
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("x-url"), Some("http://h.example/"));
}
