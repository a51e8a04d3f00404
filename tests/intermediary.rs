//! RFC 9110/9112 intermediary rules, with the real bytes: routes match the
//! normalized path (no spelling of `/admin/` gets past a route for it), Host
//! and absolute-form authorities must be `uri-host [":" port]`, an upgrade to
//! HTTP/2 is never relayed, TRACE/OPTIONS honour Max-Forwards, a too long
//! target is a 414, and `HTTP/1.x` with a higher minor is served as 1.1.

mod support;

use std::time::Duration;
use support::*;

const SWITCH_WS: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
const SWITCH_H2C: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
const SWITCH_TO_NOTHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";

/// A backend that answers with the request target it received (and
/// switches protocols on `/ws` and `/h2c-anyway`), behind one worker whose
/// only local route is `/admin/` → 403.
fn setup() -> (Backend, Forklb) {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            path_body: true,
            scripts: vec![
                Script::new("/ws", SWITCH_WS, Then::Echo),
                Script::new("/h2c-anyway", SWITCH_H2C, Then::Echo),
                Script::new("/upgrade-lies", SWITCH_H2C, Then::Echo),
                Script::new("/switch-to-nothing", SWITCH_TO_NOTHING, Then::Echo),
            ],
            ..Default::default()
        },
    );
    let yaml = ConfigBuilder::new()
        .log_level("info")
        .set("limits", "{max_header_bytes: 4k}")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/admin/").ret(403, "forbidden\n"))
        .route(Route::path("/caf%C3%A9/").ret(200, "cafe\n"))
        .route(Route::to("web"))
        .upstream("web", [Srv::new("b1", b1.addr())])
        .build();
    let lb = Forklb::start(&yaml);
    (b1, lb)
}

fn exchange(lb: &Forklb, raw: &[u8]) -> (Response, Conn) {
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(raw).expect("send");
    let r = c.read_response().unwrap_or_else(|e| {
        panic!(
            "no response to {:?}: {e}\n{}",
            String::from_utf8_lossy(raw),
            lb.diagnostics()
        )
    });
    (r, c)
}

fn get(lb: &Forklb, target: &str) -> Response {
    exchange(
        lb,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .0
}

/// The request is answered with `status` by forklb, and the connection
/// closed when `closes`; the backend sees nothing.
fn assert_answered_locally(lb: &Forklb, b1: &Backend, raw: &[u8], status: u16, closes: bool) {
    let before = b1.bytes_received();
    let (r, mut c) = exchange(lb, raw);
    assert_eq!(
        r.status,
        status,
        "{:?}: {r:?}\n{}",
        String::from_utf8_lossy(raw),
        lb.error_log_contents()
    );
    if closes {
        c.expect_closed()
            .unwrap_or_else(|e| panic!("{:?}: not closed: {e}", String::from_utf8_lossy(raw)));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        b1.bytes_received(),
        before,
        "{:?} reached the backend: {:?}",
        String::from_utf8_lossy(raw),
        b1.heads().last()
    );
}

// ---- 1. Routing on the normalized path ---------------------------------------------------------

#[test]
fn every_spelling_of_a_protected_path_matches_its_route() {
    let (b1, lb) = setup();
    for target in [
        "/admin/secret",
        "/x/../admin/secret",
        "/./admin/secret",
        "/%61dmin/secret",
        "/%61%64%6D%69%6E/secret",
        "/x/%2e%2e/admin/secret",
        "/x/%2E%2E/admin/secret",
        "/x/.%2e/admin/secret",
        "//admin/secret",
        "/admin//secret",
        "/admin%2Fsecret",
        "/admin%2fsecret",
        "/x%2F..%2Fadmin/secret",
        "/a/b/../../admin/secret",
        "/admin/x/..",
        "/admin/.",
        "/admin/secret?x=1",
        "http://x/%61dmin/secret",
        "http://x/y/../admin/",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (r, _) = exchange(&lb, raw.as_bytes());
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (403, "forbidden\n"),
            "{target} was not matched by the /admin/ route: {r:?}"
        );
    }
    assert_eq!(b1.request_count(), 0, "{:?}", b1.heads());
}

#[test]
fn paths_climbing_above_the_root_or_badly_encoded_are_400() {
    let (b1, lb) = setup();
    for target in [
        "/../admin/secret",
        "/..",
        "/a/../../admin/",
        "/%2e%2e/admin/",
        "/a%2F..%2F..%2Fadmin/",
        "/a%zz",
        "/a%2",
        "/a%",
        "/a%00b",
        "http://x/../admin/",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_answered_locally(&lb, &b1, raw.as_bytes(), 400, true);
    }
    // Still serving.
    assert_eq!(get(&lb, "/fine").status, 200);
}

#[test]
fn the_original_target_bytes_are_forwarded() {
    let (_b1, lb) = setup();
    // Routed on `/x/y/z`, but the backend sees what the client sent:
    // `%2F` inside an identifier and the query stay as they are.
    for target in [
        "/x/%2e%2e/y%2Fz?q=/../admin/",
        "/api/group%2Fproject/files",
        "/a//b/./c",
        "/%7Euser/",
        "/x?redirect=/admin/",
    ] {
        let r = get(&lb, target);
        assert_eq!(r.status, 200, "{target}: {r:?}");
        assert_eq!(r.body_str(), target, "forwarded target differs");
    }
    // Absolute form goes upstream in origin form, with its path unchanged.
    let r = get(&lb, "http://x/a/%2e/b");
    assert_eq!(r.body_str(), "/a/%2e/b");
}

#[test]
fn route_paths_are_normalized_like_requests() {
    let (_b1, lb) = setup();
    // The route is written `/caf%C3%A9/`; any spelling of that path matches.
    for target in ["/caf%C3%A9/menu", "/caf%c3%a9/menu", "/x/../caf%C3%A9/"] {
        let r = get(&lb, target);
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "cafe\n"),
            "{target}"
        );
    }
}

#[test]
fn route_paths_that_cannot_be_normalized_are_config_errors() {
    for (path, says) in [
        ("/../x", "climbs above the root"),
        ("/a%zz", "invalid percent-encoding"),
        ("/a?b", "'?'"),
        ("/%FF/", "not UTF-8"),
    ] {
        let dir = TempDir::new("route-path");
        let file = dir.join("forklb.yaml");
        std::fs::write(
            &file,
            format!(
                "listeners:\n  - name: web\n    bind: [\"127.0.0.1:8080\"]\n    routes:\n      - path: \"{path}\"\n        return: {{status: 200}}\n"
            ),
        )
        .expect("write config");
        let out = run_forklb(
            &["-t", "-c", file.to_str().expect("utf-8 path")],
            Duration::from_secs(10),
        );
        assert_ne!(out.code(), Some(0), "{path} accepted: {}", out.combined());
        let text = out.combined();
        assert!(
            text.contains("listeners[0].routes[0].path") && text.contains(says),
            "{path}: {text}"
        );
    }
}

// ---- 2. Host validation ------------------------------------------------------------------------

#[test]
fn invalid_host_values_are_400_and_never_forwarded() {
    let (b1, lb) = setup();
    for host in [
        "a b",
        "x/y",
        "t@alt.test",
        "alt.test, t",
        "alt.test,t",
        "a:b:c",
        "a:99999",
        "a:80x",
        "[::1",
        "[::1]x",
        "[nothex]",
        "a\\b",
        "a%zz",
        "a?b",
        "\"a\"",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_answered_locally(&lb, &b1, raw.as_bytes(), 400, true);
    }
    for authority in ["t@alt.test", "a:b:c", "a,b", "[::1", "a%zz"] {
        let raw = format!("GET http://{authority}/ HTTP/1.1\r\nHost: ok\r\n\r\n");
        assert_answered_locally(&lb, &b1, raw.as_bytes(), 400, true);
    }
}

#[test]
fn valid_host_values_are_served() {
    let (b1, lb) = setup();
    for host in [
        "example.com",
        "Example.COM:8080",
        "example.com:",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:8080",
        "xn--bcher-kva.example",
        "",
    ] {
        let raw = format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (r, _) = exchange(&lb, raw.as_bytes());
        assert_eq!(r.status, 200, "Host {host:?}: {r:?}");
        let got = b1.requests().last().cloned().expect("forwarded");
        assert_eq!(got.header("host"), Some(host), "Host {host:?} changed");
    }
}

// ---- 3. h2c is never an upgrade through forklb ---------------------------------------------------

const H2C_UPGRADE: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";

#[test]
fn an_h2c_upgrade_is_forwarded_as_a_plain_request() {
    let (b1, lb) = setup();
    let raw = format!("GET /plain HTTP/1.1\r\nHost: x\r\n{H2C_UPGRADE}\r\n");
    let (r, mut c) = exchange(&lb, raw.as_bytes());
    assert_eq!((r.status, r.body_str().as_str()), (200, "/plain"), "{r:?}");
    let got = b1.requests().last().cloned().expect("forwarded");
    assert!(!got.has_header("upgrade"), "Upgrade forwarded: {got:?}");
    assert!(
        !got.has_header("http2-settings"),
        "HTTP2-Settings forwarded: {got:?}"
    );
    assert!(
        !got.header_all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
        "Connection: upgrade forwarded: {got:?}"
    );
    // The connection is still HTTP/1.1 with routing: the next request on
    // it meets the /admin/ route instead of a tunnel.
    c.send(b"GET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("second response");
    assert_eq!(r.status, 403, "{r:?}");
}

#[test]
fn an_upstream_switching_to_h2c_is_a_502_not_a_tunnel() {
    let (b1, lb) = setup();
    for variant in ["Upgrade: h2c", "Upgrade: H2C", "Upgrade: HTTP/2.0"] {
        let raw = format!(
            "GET /h2c-anyway HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n{variant}\r\n\r\n"
        );
        let (r, mut c) = exchange(&lb, raw.as_bytes());
        assert_eq!(r.status, 502, "{variant}: {r:?}");
        c.expect_closed().expect("closed after 502");
    }
    // A websocket request whose 101 says h2c is refused too.
    let raw = b"GET /upgrade-lies HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (r, _) = exchange(&lb, raw);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(b1.request_count() >= 1);
    // A 101 that names no protocol (RFC 9110 §15.2.2: it must) opens no
    // tunnel either, as HAProxy refuses it.
    let raw = b"GET /switch-to-nothing HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (r, _) = exchange(&lb, raw);
    assert_eq!(r.status, 502, "{r:?}");
}

#[test]
fn websocket_still_upgrades_and_h2c_is_filtered_from_a_list() {
    let (b1, lb) = setup();
    let raw =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n";
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(raw).expect("send");
    let r = c.read_next_head().expect("101");
    assert_eq!(r.status, 101, "{r:?}\n{}", lb.error_log_contents());
    let got = b1.requests().last().cloned().expect("forwarded");
    assert_eq!(got.header("upgrade"), Some("websocket"), "{got:?}");
    c.send(b"ping").expect("send");
    assert_eq!(c.read_exact_bytes(4).expect("echo"), b"ping");
}

// ---- 4. Max-Forwards -----------------------------------------------------------------------------

#[test]
fn max_forwards_zero_is_answered_by_forklb() {
    let (b1, lb) = setup();
    let raw = b"OPTIONS /x HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n";
    let (r, mut c) = exchange(&lb, raw);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET")),
        "{r:?}"
    );
    assert_eq!(r.header("content-length"), Some("0"));
    // The connection continues.
    c.send(b"TRACE /x HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("TRACE answer");
    assert_eq!(r.status, 405, "TRACE must be refused, not echoed: {r:?}");
    assert!(r.header("allow").is_some(), "{r:?}");
    assert_eq!(b1.bytes_received(), 0, "{:?}", b1.heads());
    // OPTIONS * too.
    let (r, _) = exchange(
        &lb,
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(b1.bytes_received(), 0);
    // Without Max-Forwards, OPTIONS * goes upstream as it is.
    let (r, _) = exchange(&lb, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (200, "*"), "{r:?}");
}

#[test]
fn max_forwards_is_decremented_for_trace_and_options_only() {
    let (b1, lb) = setup();
    for (method, sent, forwarded) in [
        ("TRACE", "5", "4"),
        ("OPTIONS", "1", "0"),
        ("OPTIONS", " 10 ", "9"),
        ("GET", "0", "0"),
        ("GET", "junk", "junk"),
    ] {
        let raw = format!(
            "{method} /mf HTTP/1.1\r\nHost: x\r\nMax-Forwards: {sent}\r\nConnection: close\r\n\r\n"
        );
        let (r, _) = exchange(&lb, raw.as_bytes());
        assert_eq!(r.status, 200, "{method} {sent}: {r:?}");
        let got = b1.requests().last().cloned().expect("forwarded");
        assert_eq!(
            got.header_all("max-forwards"),
            vec![forwarded],
            "{method} {sent}"
        );
    }
    for bad in ["x", "-1", "1.5"] {
        let raw = format!("TRACE /mf HTTP/1.1\r\nHost: x\r\nMax-Forwards: {bad}\r\n\r\n");
        assert_answered_locally(&lb, &b1, raw.as_bytes(), 400, true);
    }
    let raw = b"OPTIONS /mf HTTP/1.1\r\nHost: x\r\nMax-Forwards: 1\r\nMax-Forwards: 2\r\n\r\n";
    assert_answered_locally(&lb, &b1, raw, 400, true);
}

// ---- 5. 414 for a too long target ----------------------------------------------------------------

#[test]
fn a_too_long_target_is_414_and_long_headers_431() {
    let (b1, lb) = setup();
    let long = format!("/{}", "a".repeat(5000));
    // Complete head.
    let raw = format!("GET {long} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_answered_locally(&lb, &b1, raw.as_bytes(), 414, true);
    // A request line that never ends within the limit.
    let raw = format!("GET {long}");
    assert_answered_locally(&lb, &b1, raw.as_bytes(), 414, true);
    // A short line with too much in the header fields is still 431.
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    assert_answered_locally(&lb, &b1, raw.as_bytes(), 431, true);
}

// ---- 6. HTTP/1.x with a higher minor is served as 1.1 --------------------------------------------

#[test]
fn higher_minor_versions_are_served_as_http11() {
    let (b1, lb) = setup();
    for v in ["1.2", "1.9"] {
        let mut c = Conn::open(lb.port()).expect("connect");
        c.set_read_timeout(Duration::from_secs(3));
        c.send(format!("GET /v HTTP/{v}\r\nHost: x\r\n\r\n").as_bytes())
            .expect("send");
        let r = c.read_response().expect("response");
        assert_eq!(
            (r.status, r.version.as_str()),
            (200, "HTTP/1.1"),
            "{v}: {r:?}"
        );
        assert!(!r.closes(), "HTTP/{v} is persistent like 1.1: {r:?}");
        let got = b1.requests().last().cloned().expect("forwarded");
        assert_eq!(got.version, "HTTP/1.1");
        // Still a 1.1 connection: a second request on it.
        c.send(format!("GET /v2 HTTP/{v}\r\nHost: x\r\n\r\n").as_bytes())
            .expect("send");
        assert_eq!(c.read_response().expect("second").body_str(), "/v2");
    }
    // Without Host, like 1.1, it is a 400.
    assert_answered_locally(&lb, &b1, b"GET / HTTP/1.2\r\n\r\n", 400, true);
    // Other versions stay refused.
    assert_answered_locally(&lb, &b1, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, true);
    assert_answered_locally(&lb, &b1, b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400, true);
}

// ---- Hosts routes are chosen by ------------------------------------------------------------

/// `admin.example.com.` is the same DNS name as `admin.example.com`: it is
/// routed as it, so the host route's `allow`/`deny` apply (they were
/// skipped, and the catch-all route forwarded the request), as nginx
/// routes it. A host with an empty label, or longer than a DNS name, names
/// no host a route could be chosen by: 400, not the catch-all.
#[test]
fn a_trailing_dot_cannot_route_around_a_host_route() {
    let b1 = Backend::start("b1");
    let yaml = ConfigBuilder::new()
        .log_level("info")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(
            Route::host("admin.example.com")
                .ret(200, "admin\n")
                .field("deny", "[\"127.0.0.0/8\"]"),
        )
        .route(
            Route::host("*.internal.example.com")
                .ret(200, "internal\n")
                .field("deny", "[\"127.0.0.0/8\"]"),
        )
        .route(Route::to("web"))
        .upstream("web", [Srv::new("b1", b1.addr())])
        .build();
    let lb = Forklb::start(&yaml);
    let long = format!("{}.internal.example.com", "a".repeat(250));
    for (host, status) in [
        ("admin.example.com", 403),
        ("admin.example.com.", 403),
        ("ADMIN.example.com.:80", 403),
        ("x.internal.example.com.", 403),
        ("admin.example.com..", 400),
        ("a..internal.example.com", 400),
        (long.as_str(), 400),
        ("www.example.com.", 200),
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (r, _) = exchange(&lb, raw.as_bytes());
        assert_eq!(r.status, status, "Host: {host}: {r:?}");
    }
    // The absolute form is routed by its authority the same way.
    let (r, _) = exchange(
        &lb,
        b"GET http://admin.example.com./ HTTP/1.1\r\nHost: admin.example.com.\r\n\r\n",
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(b1.request_count(), 1, "only www.example.com. went upstream");
}
