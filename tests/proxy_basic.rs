//! Walking skeleton, data path: balancing, keep-alive, `return` routes, bodies,
//! 404 for unmatched requests and 502 for an unreachable upstream.

mod support;

use std::time::Duration;
use support::*;

fn count(bodies: &[String], name: &str) -> usize {
    bodies.iter().filter(|b| b.as_str() == name).count()
}

#[test]
fn round_robin_alternates_between_two_backends() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1, &b2]));

    let mut bodies = Vec::new();
    for i in 0..10 {
        let r = http_get(lb.port(), &format!("/rr/{i}"));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        bodies.push(r.body_str());
    }
    assert_eq!(count(&bodies, "b1"), 5, "bodies: {bodies:?}");
    assert_eq!(count(&bodies, "b2"), 5, "bodies: {bodies:?}");
    for w in bodies.windows(2) {
        assert_ne!(w[0], w[1], "round robin must alternate: {bodies:?}");
    }
    assert_eq!(b1.request_count(), 5);
    assert_eq!(b2.request_count(), 5);
}

#[test]
fn smooth_weighted_round_robin_respects_weights() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let cfg = proxy_config(1, &[("b1", b1.addr(), 1), ("b2", b2.addr(), 3)], &[]);
    let lb = Forklb::start(&cfg);

    let mut bodies = Vec::new();
    for i in 0..8 {
        let r = http_get(lb.port(), "/");
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        bodies.push(r.body_str());
    }
    assert_eq!(count(&bodies, "b1"), 2, "bodies: {bodies:?}");
    assert_eq!(count(&bodies, "b2"), 6, "bodies: {bodies:?}");
    // Smooth: b1 never gets two in a row, and each cycle of 4 has exactly one b1.
    for (i, chunk) in bodies.chunks(4).enumerate() {
        assert_eq!(count(chunk, "b1"), 1, "cycle {i} of {bodies:?}");
    }
}

#[test]
fn client_keepalive_serves_100_requests_on_one_connection() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1, &b2]));

    let mut conn = Conn::open(lb.port()).expect("connect");
    let mut bodies = Vec::new();
    for i in 0..100 {
        let r = conn
            .get(&format!("/ka/{i}"))
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert!(!r.closes(), "request {i} answered with Connection: close");
        bodies.push(r.body_str());
    }
    assert_eq!(count(&bodies, "b1"), 50, "bodies: {bodies:?}");
    assert_eq!(count(&bodies, "b2"), 50, "bodies: {bodies:?}");
    // The requests arrived in order with their paths intact.
    let mut paths: Vec<String> = b1
        .requests()
        .into_iter()
        .chain(b2.requests())
        .map(|r| r.path)
        .collect();
    paths.sort_by_key(|p| p.trim_start_matches("/ka/").parse::<u32>().unwrap_or(9999));
    let expected: Vec<String> = (0..100).map(|i| format!("/ka/{i}")).collect();
    assert_eq!(paths, expected);
}

#[test]
fn connection_close_request_is_answered_then_closed() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut conn = Conn::open(lb.port()).expect("connect");
    let r = conn.get("/first").expect("first request");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"));
    let r = conn
        .request("GET", "/last", &[("Connection", "close")], b"")
        .expect("request with Connection: close");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    conn.set_read_timeout(Duration::from_secs(3));
    conn.expect_eof()
        .expect("server must close the connection after a Connection: close request");
}

#[test]
fn return_route_answers_without_touching_backends() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let r = http_get(lb.port(), "/healthz");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"ok\n");
    // Also on a kept-alive connection, twice.
    let mut conn = Conn::open(lb.port()).expect("connect");
    for _ in 0..2 {
        let r = conn.get("/healthz").expect("GET /healthz");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    }
    assert_eq!(b1.request_count(), 0, "backend saw {:?}", b1.requests());
    assert_eq!(b1.connections(), 0, "backend was connected to");
}

#[test]
fn request_body_reaches_backend_intact() {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            echo: true,
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let body = pseudo_random_bytes(100 * 1024, 7);
    let mut conn = Conn::open(lb.port()).expect("connect");
    let r = conn
        .request(
            "POST",
            "/upload",
            &[("Content-Type", "application/octet-stream")],
            &body,
        )
        .expect("POST 100 KiB");
    assert_eq!(r.status, 200, "status {} body {:?}", r.status, r.body_str());
    assert!(
        r.body == body,
        "echoed body differs ({} bytes)",
        r.body.len()
    );
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/upload");
    assert!(
        reqs[0].body == body,
        "backend got {} bytes",
        reqs[0].body.len()
    );
    // The connection is still usable afterwards.
    let r = conn
        .request("POST", "/again", &[], b"small")
        .expect("second POST");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"small"[..]));
}

#[test]
fn large_response_body_reaches_client_intact() {
    let big = pseudo_random_bytes(1024 * 1024, 42);
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            body: Some(big.clone()),
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut conn = Conn::open(lb.port()).expect("connect");
    for i in 0..2 {
        let r = conn.get("/big").expect("GET /big");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len(), "response {i} length");
        assert!(r.body == big, "response {i} bytes differ");
    }
}

#[test]
fn unmatched_host_or_path_gets_404() {
    let b1 = Backend::start("b1");
    let yaml = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::host("a.example").upstream("web"))
        .route(Route::path("/api/").upstream("web"))
        .upstream("web", [Srv::new("b1", b1.addr())])
        .build();
    let lb = Forklb::start(&yaml);

    let get = |host: &str, path: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let mut c = Conn::open(lb.port()).expect("connect");
        c.send(raw.as_bytes()).expect("send");
        c.read_response()
            .unwrap_or_else(|e| panic!("GET {path} Host {host}: {e}"))
    };
    let r = get("b.example", "/nothing");
    assert_eq!(r.status, 404, "{r:?}");
    let r = get("b.example", "/");
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(b1.request_count(), 0);

    let r = get("b.example", "/api/x");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let r = get("a.example", "/anything");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let r = get("a.example:8080", "/port-in-host");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
}

#[test]
fn refused_upstream_gets_502() {
    let dead = refused_addr();
    let cfg = proxy_config(1, &[("dead", dead, 1)], &["retries: 0"]);
    let lb = Forklb::start(&cfg);

    let r = http_get(lb.port(), "/");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        r.body.len() < 1024,
        "502 body should be short, got {} bytes",
        r.body.len()
    );
    // The proxy keeps working: the return route still answers.
    let r = http_get(lb.port(), "/healthz");
    assert_eq!(r.status, 200);
}
