//! Header rewriting: hop-by-hop headers removed both ways, X-Forwarded-For
//! and X-Forwarded-Proto, Host kept or replaced by `host_header`.

mod support;

use support::*;

/// forklb may announce its own connection handling upstream or to the
/// client (`close`, `keep-alive`), but never pass on the other side's.
fn assert_own_connection_header_only(headers: &[(String, String)], what: &str) {
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("connection") {
            for t in v.split(',') {
                let t = t.trim();
                assert!(
                    t.eq_ignore_ascii_case("close") || t.eq_ignore_ascii_case("keep-alive"),
                    "{what}: foreign Connection token {t:?} passed on: {headers:?}"
                );
            }
        }
    }
}

const HOP_BY_HOP: [&str; 5] = ["keep-alive", "proxy-connection", "te", "trailer", "upgrade"];

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"GET /hop HTTP/1.1\r\nHost: x\r\n\
          Connection: keep-alive, X-Custom-Hop, x-other-hop\r\n\
          X-Custom-Hop: secret\r\nX-Other-Hop: secret2\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
          TE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n\
          X-End-To-End: kept\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1);
    let seen = &reqs[0];
    for name in HOP_BY_HOP.iter().chain(&["x-custom-hop", "x-other-hop"]) {
        assert!(
            !seen.has_header(name),
            "backend received hop-by-hop header {name}: {:?}",
            seen.headers
        );
    }
    assert_own_connection_header_only(&seen.headers, "request");
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    assert_eq!(seen.header("host"), Some("x"));
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            scripts: vec![Script::new(
                "/hop",
                b"HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: secret\r\n\
                  Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n\
                  TE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n\
                  X-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
                Then::KeepAlive,
            )],
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c.get("/hop").expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    for name in HOP_BY_HOP.iter().chain(&["x-resp-hop"]) {
        assert!(
            r.header(name).is_none(),
            "client received hop-by-hop header {name}: {:?}",
            r.headers
        );
    }
    assert_own_connection_header_only(&r.headers, "response");
    assert_eq!(r.header("x-kept"), Some("yes"));
    // Still a working keep-alive connection.
    let r = c.get("/next").expect("next");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"));
}

#[test]
fn x_forwarded_for_is_the_client_address() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    assert_eq!(http_get(lb.port(), "/xff").status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(seen.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.header_all("x-forwarded-proto"), vec!["http"]);
}

#[test]
fn x_forwarded_for_values_are_merged_and_client_appended() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"GET /xff HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\
          X-Other: 1\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2\r\n\r\n",
    )
    .expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["203.0.113.7, 10.0.0.1, 10.0.0.2, 127.0.0.1"],
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-other"), Some("1"));
}

#[test]
fn x_forwarded_proto_from_the_client_is_replaced_by_http() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c
        .request("GET", "/xfp", &[("X-Forwarded-Proto", "https")], b"")
        .expect("response");
    assert_eq!(r.status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(
        seen.header_all("x-forwarded-proto"),
        vec!["http"],
        "{:?}",
        seen.headers
    );
}

#[test]
fn host_header_is_kept_by_default() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /host HTTP/1.1\r\nHost: Example.TEST:8080\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(seen.header_all("host"), vec!["Example.TEST:8080"]);
}

#[test]
fn host_header_option_replaces_host() {
    let b1 = Backend::start("b1");
    let cfg = proxy_config(
        1,
        &[("b1", b1.addr(), 1)],
        &["host_header: one.one.one.one"],
    );
    let lb = Forklb::start(&cfg);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /host HTTP/1.1\r\nHost: client.example\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    // Also for an HTTP/1.0 client without Host.
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /host10 HTTP/1.0\r\n\r\n").expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 2);
    for seen in &reqs {
        assert_eq!(
            seen.header_all("host"),
            vec!["one.one.one.one"],
            "{} {:?}",
            seen.path,
            seen.headers
        );
    }
}
