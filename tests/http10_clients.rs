//! HTTP/1.0 clients through forklb, which speaks its own version on each hop
//! (RFC 9110 §2.5): the request goes upstream as HTTP/1.1 (so its upstream
//! connection is pooled like any other), and the response keeps to what an
//! HTTP/1.0 client understands — no chunked body (the payload alone, ended
//! by closing the connection), no interim 1xx responses, keep-alive only
//! when it asked for it and the response's length is known.

mod support;

use std::time::Duration;
use support::*;

/// The bytes of a whole connection's answer to `request`, read until
/// forklb closes (bounded by the read timeout), split into head and body.
fn exchange_until_close(port: u16, request: &[u8]) -> (String, Vec<u8>) {
    let mut c = Conn::open(port).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(request).expect("send");
    let raw = c.read_to_end().expect("response, then close");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(&raw)));
    (
        String::from_utf8_lossy(&raw[..split + 2]).into_owned(),
        raw[split + 4..].to_vec(),
    )
}

/// The value of header `name` in a raw head, if present (first one).
fn raw_header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn has_token(r: &Response, name: &str, token: &str) -> bool {
    r.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case(name) && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

#[test]
fn request_goes_upstream_as_http11_with_a_host() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /ten HTTP/1.0\r\nAccept: */*\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    c.expect_closed().expect("HTTP/1.0 connection closed");
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].version, "HTTP/1.1", "{:?}", reqs[0]);
    // HTTP/1.1 requires Host: the server's address stands in for the
    // client's missing one.
    assert_eq!(
        reqs[0].header_all("host"),
        vec![b1.addr().to_string()],
        "{:?}",
        reqs[0]
    );
    // The pool is on: HTTP/1.1 keeps the connection without asking.
    assert!(!reqs[0].has_header("connection"), "{:?}", reqs[0]);
    assert_eq!(reqs[0].header("accept"), Some("*/*"));
}

#[test]
fn without_a_pool_the_upstream_request_asks_to_close() {
    let b1 = Backend::start("b1");
    let cfg = proxy_config(1, &[("b1", b1.addr(), 1)], &["keepalive: 0"]);
    let lb = Forklb::start(&cfg);

    let r = {
        let mut c = Conn::open(lb.port()).expect("connect");
        c.set_read_timeout(Duration::from_secs(5));
        c.send(b"GET /np HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            .expect("send");
        c.read_response().expect("response")
    };
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let reqs = b1.requests();
    assert_eq!(reqs[0].version, "HTTP/1.1", "{:?}", reqs[0]);
    assert_eq!(
        reqs[0].header_all("connection"),
        vec!["close"],
        "{:?}",
        reqs[0]
    );
}

#[test]
fn chunked_response_reaches_the_client_as_its_payload_then_close() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/chunked",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
              Trailer: X-Sum\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n1\r\n!\r\n0\r\nX-Sum: 42\r\n\r\n",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    // It asks for keep-alive, but without a length the only end of the
    // body it understands is the end of the connection.
    let (head, body) = exchange_until_close(
        lb.port(),
        b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"hello, world!", "{head}");
    assert_eq!(raw_header(&head, "transfer-encoding"), None, "{head}");
    assert_eq!(raw_header(&head, "content-length"), None, "{head}");
    assert_eq!(raw_header(&head, "trailer"), None, "{head}");
    assert_eq!(
        raw_header(&head, "x-sum"),
        None,
        "trailers are dropped: {head}"
    );
    assert_eq!(raw_header(&head, "connection"), Some("close"), "{head}");
    assert_eq!(raw_header(&head, "content-type"), Some("text/plain"));

    // The chunked body was read to its end: the upstream connection went
    // back to the pool and serves the next HTTP/1.0 request.
    let (head, body) = exchange_until_close(lb.port(), b"GET /next HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"b1");
    assert_eq!(b1.request_count(), 2);
    assert_eq!(b1.connections(), 1, "{}", lb.error_log_contents());
}

#[test]
fn large_chunked_response_is_dechunked_exactly() {
    // Many chunks of varied sizes, so that chunk boundaries fall anywhere
    // in forklb's reads.
    let mut payload = Vec::new();
    let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut i = 0usize;
    while payload.len() < 300_000 {
        let size = 1 + (i * 7919) % 9000;
        let chunk: Vec<u8> = (0..size).map(|j| pattern_byte(payload.len() + j)).collect();
        wire.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        wire.extend_from_slice(&chunk);
        wire.extend_from_slice(b"\r\n");
        payload.extend_from_slice(&chunk);
        i += 1;
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let b1 = scripted("b1", vec![Script::new("/big", &wire, Then::KeepAlive)]);
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let (head, body) = exchange_until_close(lb.port(), b"GET /big HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(raw_header(&head, "transfer-encoding"), None, "{head}");
    assert_eq!(body.len(), payload.len(), "{head}");
    assert!(body == payload, "the de-chunked payload differs");
}

#[test]
fn keep_alive_client_with_known_lengths_keeps_its_connection_and_the_pool() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    for i in 0..3 {
        c.send(format!("GET /ka/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .expect("send");
        let r = c.read_response().expect("response");
        assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
        assert_eq!(r.header("content-length"), Some("2"), "{r:?}");
        assert!(has_token(&r, "connection", "keep-alive"), "{r:?}");
    }
    // More HTTP/1.0 clients, each on its own connection without keep-alive.
    for i in 0..3 {
        let (head, body) = exchange_until_close(
            lb.port(),
            format!("GET /one/{i} HTTP/1.0\r\n\r\n").as_bytes(),
        );
        assert_eq!(body, b"b1", "{head}");
        assert_eq!(raw_header(&head, "connection"), Some("close"), "{head}");
    }
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 6);
    assert!(reqs.iter().all(|r| r.version == "HTTP/1.1"), "{reqs:?}");
    assert_eq!(
        b1.connections(),
        1,
        "HTTP/1.0 clients' requests should share one pooled upstream connection"
    );
}

#[test]
fn head_request_from_http10() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/chunked-head",
            // A HEAD answer announces chunked, but no body follows it.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Head: yes\r\n\r\n",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"HEAD /h HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let r = c.read_head_response().expect("HEAD response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("2"), "{r:?}");
    assert!(has_token(&r, "connection", "keep-alive"), "{r:?}");
    // No body bytes follow the head: the next response starts at once.
    c.send(b"HEAD /chunked-head HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let r = c.read_head_response().expect("second HEAD response");
    assert_eq!((r.status, r.header("x-head")), (200, Some("yes")), "{r:?}");
    assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    assert!(has_token(&r, "connection", "keep-alive"), "{r:?}");
    c.send(b"GET /g HTTP/1.0\r\n\r\n").expect("send");
    let r = c.read_response().expect("GET after HEAD");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    c.expect_closed()
        .expect("closed after a request without keep-alive");
    let reqs = b1.requests();
    let methods: Vec<&str> = reqs.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["HEAD", "HEAD", "GET"]);
    assert_eq!(b1.connections(), 1);
}

#[test]
fn no_content_and_not_modified_keep_the_connection() {
    let b1 = scripted(
        "b1",
        vec![
            Script::new(
                "/nc",
                b"HTTP/1.1 204 No Content\r\nX-Info: none\r\n\r\n",
                Then::KeepAlive,
            ),
            Script::new(
                "/cached",
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n",
                Then::KeepAlive,
            ),
        ],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /nc HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("204");
    assert_eq!((r.status, r.body.len()), (204, 0), "{r:?}");
    assert!(has_token(&r, "connection", "keep-alive"), "{r:?}");
    c.send(b"GET /cached HTTP/1.0\r\nConnection: keep-alive\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .expect("send");
    // A 304 has no body whatever its Content-Length says.
    let r = c.read_head_response().expect("304");
    assert_eq!((r.status, r.header("etag")), (304, Some("\"v1\"")), "{r:?}");
    assert!(has_token(&r, "connection", "keep-alive"), "{r:?}");
    c.send(b"GET /after HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("request after 204 and 304");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    assert_eq!(b1.connections(), 1);
}

#[test]
fn interim_responses_never_reach_an_http10_client() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/early",
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /early HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let first = c.read_next_head().expect("a head");
    assert_eq!(first.status, 200, "interim response relayed: {first:?}");
    assert_eq!(c.read_exact_bytes(5).expect("body"), b"final");
    // forklb's own `100 Continue` is not sent to it either: head and body
    // are sent together, so a 100 would come before the final response.
    c.send(
        b"POST /upload HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .expect("send");
    let first = c.read_next_head().expect("a head");
    assert_eq!(first.status, 200, "interim response sent: {first:?}");
    assert_eq!(c.read_exact_bytes(2).expect("body"), b"b1");
    let reqs = b1.requests();
    assert_eq!(reqs[1].body, b"hello");
    assert!(!reqs[1].has_header("expect"), "{:?}", reqs[1]);
}
