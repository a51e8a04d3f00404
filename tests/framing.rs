//! Message framing through the proxy: request bodies by Content-Length and
//! chunked, responses by Content-Length, chunked and close-delimited,
//! bodiless responses (HEAD, 1xx, 204, 304), `Expect: 100-continue`,
//! HTTP/1.0 clients, pipelining, and streaming without buffering.

mod support;

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

fn echo_backend() -> Backend {
    Backend::start_with(
        "b1",
        BackendOpts {
            echo: true,
            ..Default::default()
        },
    )
}

// ---- Request bodies ----------------------------------------------------------------

/// A client connection to `lb` whose reads give up after 2 s.
fn open(lb: &Forklb) -> Conn {
    let c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(2));
    c
}

#[test]
fn content_length_request_body_is_forwarded_exactly() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello world"));
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/cl");
    assert_eq!(reqs[0].header("content-length"), Some("11"));
    assert!(!reqs[0].has_header("transfer-encoding"), "{reqs:?}");
    assert_eq!(reqs[0].body, b"hello world");
    // The next request on the same connection is framed correctly.
    let r = c.request("POST", "/again", &[], b"xyz").expect("second");
    assert_eq!((r.status, r.body_str().as_str()), (200, "xyz"));
    assert_eq!(b1.requests()[1].path, "/again");
}

#[test]
fn chunked_request_body_is_relayed_verbatim() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    // Leading zeros are valid in a chunk size (1*HEXDIG), however many.
    let body = b"5\r\nhello\r\n0000000000000006;ext=1\r\n world\r\n0\r\n\r\n";
    let mut raw =
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(body);
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(&raw).expect("send");
    let r = c.read_response().expect("response to a chunked request");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "hello world"),
        "{r:?}\n{}",
        lb.error_log_contents()
    );
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/chunked");
    assert_eq!(reqs[0].header_all("transfer-encoding"), vec!["chunked"]);
    assert!(!reqs[0].has_header("content-length"), "{:?}", reqs[0]);
    assert_eq!(
        String::from_utf8_lossy(&reqs[0].raw_body),
        String::from_utf8_lossy(body),
        "chunked body not relayed verbatim"
    );
    assert_eq!(reqs[0].body, b"hello world");
    // The connection continues after the chunked body.
    let r = c.get("/next").expect("request after the chunked one");
    assert_eq!(r.status, 200);
    assert_eq!(b1.request_count(), 2);
    assert_eq!(b1.requests()[1].path, "/next");
}

#[test]
fn chunked_request_body_in_tiny_pieces_with_trailer_is_relayed_verbatim() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let body: &[u8] = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Checksum: 42\r\n\r\n";
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"POST /trickle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("send head");
    for piece in body.chunks(3) {
        thread::sleep(Duration::from_millis(5));
        c.send(piece).expect("send piece");
    }
    let r = c.read_response().expect("response");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "abc0123456789"),
        "{r:?}\n{}",
        lb.error_log_contents()
    );
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        String::from_utf8_lossy(&reqs[0].raw_body),
        String::from_utf8_lossy(body)
    );
}

// ---- Responses -------------------------------------------------------------------

#[test]
fn content_length_response_keeps_connection_alive() {
    let body = pseudo_random_bytes(300 * 1024, 3);
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            body: Some(body.clone()),
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..3 {
        let r = c.get(&format!("/cl/{i}")).expect("GET");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert!(r.body == body, "response {i}: body differs");
        assert!(!r.closes(), "{:?}", r.headers);
    }
    assert_eq!(b1.request_count(), 3);
}

#[test]
fn chunked_response_is_relayed_as_is_and_connection_stays_open() {
    let chunked =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4\r\nWiki\r\n6;x=y\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
    let b1 = scripted(
        "b1",
        vec![Script::new("/chunked", chunked, Then::KeepAlive)],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("response head");
    assert_eq!(head.status, 200, "{head:?}");
    let te: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(te, vec!["chunked"], "{:?}", head.headers);
    assert!(
        head.header("content-length").is_none(),
        "{:?}",
        head.headers
    );
    assert!(!head.closes(), "{:?}", head.headers);
    let raw = c.read_raw_until(b"0\r\n\r\n").expect("chunked body");
    assert_eq!(
        String::from_utf8_lossy(&raw),
        "4\r\nWiki\r\n6;x=y\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n",
        "chunked body not relayed as is"
    );
    // Keep-alive: the next request on the same connection works.
    let r = c.get("/next").expect("request after a chunked response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    assert_eq!(b1.request_count(), 2);
}

/// `Trailer` is not hop-by-hop (RFC 9110 §7.6.1 does not list it): it
/// goes with a chunked body whose trailers are relayed. A trailer field
/// that frames the message (Content-Length here) is never relayed: it is
/// invalid chunked framing, which here came with the head, so the answer
/// is a 502 (later in the body, the body is cut there).
#[test]
fn trailer_header_is_relayed_and_framing_trailers_are_not() {
    let ok = b"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n\
                4\r\nWiki\r\n0\r\nX-Sum: 4\r\n\r\n";
    let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                4\r\nWiki\r\n0\r\nContent-Length: 99\r\n\r\n";
    let b1 = scripted(
        "b1",
        vec![
            Script::new("/ok", ok, Then::KeepAlive),
            Script::new("/bad", bad, Then::KeepAlive),
        ],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("response head");
    assert_eq!(head.header("trailer"), Some("X-Sum"), "{:?}", head.headers);
    let raw = c.read_raw_until(b"\r\n\r\n").expect("chunked body");
    assert_eq!(
        String::from_utf8_lossy(&raw),
        "4\r\nWiki\r\n0\r\nX-Sum: 4\r\n\r\n"
    );

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("response head");
    assert_eq!(head.status, 502, "{head:?}");
    let mut rest = Vec::new();
    let _ = c.stream().read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("Wiki") && !rest.contains("99"),
        "the body or its framing trailer was relayed: {rest:?}"
    );
}

#[test]
fn close_delimited_response_is_relayed_then_client_closed() {
    let body = pseudo_random_bytes(200 * 1024, 11);
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    resp.extend_from_slice(&body);
    let b1 = scripted("b1", vec![Script::new("/eof", &resp, Then::Close)]);
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"GET /eof HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("response head");
    assert_eq!(head.status, 200, "{head:?}");
    assert!(
        head.header("content-length").is_none() && head.header("transfer-encoding").is_none(),
        "close-delimited body re-framed: {:?}",
        head.headers
    );
    let got = c
        .read_to_end()
        .expect("body until forklb closes the client connection");
    assert_eq!(got.len(), body.len(), "body length");
    assert!(got == body, "body differs");
}

#[test]
fn head_response_has_no_body_and_connection_continues() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c.request("HEAD", "/h", &[], b"").expect("HEAD");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("2"), "{:?}", r.headers);
    // No body bytes may follow the head: the next response must start at once.
    let r = c.get("/g").expect("GET after HEAD");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let r = c.request("HEAD", "/h2", &[], b"").expect("second HEAD");
    assert_eq!(r.status, 200);
    let r = c.get("/g2").expect("GET after second HEAD");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let methods: Vec<String> = b1.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD", "GET", "HEAD", "GET"]);
}

#[test]
fn interim_1xx_response_is_relayed_before_the_final_one() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/early",
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /early HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let interim = c.read_next_head().expect("103");
    assert_eq!(interim.status, 103, "{interim:?}");
    assert_eq!(
        interim.header("link"),
        Some("</style.css>; rel=preload"),
        "{interim:?}"
    );
    let r = c.read_response().expect("final response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "final"), "{r:?}");
    let r = c.get("/next").expect("next request");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
}

#[test]
fn no_content_204_has_no_body_and_connection_continues() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/nc",
            b"HTTP/1.1 204 No Content\r\nX-Info: none\r\n\r\n",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = open(&lb);
    let r = c.get("/nc").expect("204");
    assert_eq!(r.status, 204, "{r:?}");
    assert!(!r.closes(), "{:?}", r.headers);
    assert!(r.header("transfer-encoding").is_none(), "{:?}", r.headers);
    let t = Instant::now();
    let r = c.get("/after").expect("request after 204");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn not_modified_304_with_content_length_has_no_body() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/cached",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = open(&lb);
    let r = c
        .request("GET", "/cached", &[("If-None-Match", "\"v1\"")], b"")
        .expect("304");
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(r.header("etag"), Some("\"v1\""));
    let r = c.get("/after").expect("request after 304");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
}

// ---- Expect, HTTP/1.0, pipelining -------------------------------------------------------

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .expect("send head");
    let interim = c
        .read_next_head()
        .expect("100 Continue before the body was sent");
    assert_eq!(
        (interim.version.as_str(), interim.status),
        ("HTTP/1.1", 100),
        "{interim:?}"
    );
    assert_eq!(b1.request_count(), 0, "backend answered without the body");
    c.send(b"hello").expect("send body");
    let r = c.read_response().expect("final response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"), "{r:?}");
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, b"hello");
}

#[test]
fn http10_client_connection_is_closed_after_the_response() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"GET /ten HTTP/1.0\r\n\r\n").expect("send");
    let r = c.read_response().expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    assert!(
        !r.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection")
                && v.eq_ignore_ascii_case("keep-alive")),
        "{:?}",
        r.headers
    );
    c.expect_closed().expect("HTTP/1.0 connection closed");
    assert_eq!(b1.requests()[0].path, "/ten");
}

#[test]
fn http10_client_with_keep_alive_stays_open() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    for i in 0..3 {
        c.send(format!("GET /ten/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .expect("send");
        let r = c.read_response().expect("response");
        assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
        assert!(
            r.headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("connection")
                    && v.eq_ignore_ascii_case("keep-alive")),
            "response {i} lacks Connection: keep-alive: {:?}",
            r.headers
        );
    }
    assert_eq!(b1.request_count(), 3);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            path_body: true,
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("send three requests in one write");
    for want in ["/p1", "/p2", "/p3"] {
        let r = c.read_response().expect("pipelined response");
        assert_eq!((r.status, r.body_str().as_str()), (200, want), "{r:?}");
    }
    let reqs = b1.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/p1", "/p2", "/p3"]);
    assert_eq!(reqs[1].body, b"hello");
    // Still usable afterwards.
    let r = c.get("/p4").expect("fourth");
    assert_eq!(r.body_str(), "/p4");
}

// ---- Streaming --------------------------------------------------------------------

#[test]
fn large_response_to_slow_client_is_streamed_not_buffered() {
    const SIZE: usize = 64 << 20;
    const LIMIT_KIB: u64 = 40 * 1024;
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            stream_body: Some(SIZE),
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let worker = lb.wait_workers(1, Duration::from_secs(5))[0];

    let c = Conn::open(lb.port()).expect("connect");
    let mut s = c.stream().try_clone().expect("clone");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut s, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");

    // Read the head.
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    let head_end = loop {
        let n = s.read(&mut buf).expect("read head");
        assert!(n > 0, "EOF before the response head");
        pending.extend_from_slice(&buf[..n]);
        if let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {SIZE}")),
        "{head}"
    );
    let mut got = 0usize;
    let check = |data: &[u8], got: &mut usize| {
        for (k, &b) in data.iter().enumerate() {
            if b != pattern_byte(*got + k) {
                panic!(
                    "body byte {} is {b}, expected {}",
                    *got + k,
                    pattern_byte(*got + k)
                );
            }
        }
        *got += data.len();
    };
    check(&pending[head_end..], &mut got);

    // Stall: the backend must be held back, not buffered in the worker.
    thread::sleep(Duration::from_millis(500));
    let mut max_rss = proc_status_kib(worker, "VmRSS").expect("VmRSS");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reads = 0u64;
    while got < SIZE {
        assert!(
            Instant::now() < deadline,
            "slow read took too long ({got} bytes)"
        );
        let n = s.read(&mut buf).expect("read body");
        assert!(n > 0, "EOF after {got} of {SIZE} bytes");
        check(&buf[..n], &mut got);
        reads += 1;
        if reads.is_multiple_of(64) {
            thread::sleep(Duration::from_millis(15));
            max_rss = max_rss.max(proc_status_kib(worker, "VmRSS").unwrap_or(0));
        }
    }
    let hwm = proc_status_kib(worker, "VmHWM").unwrap_or(0);
    assert_eq!(got, SIZE);
    assert!(
        max_rss < LIMIT_KIB && hwm < LIMIT_KIB,
        "worker memory while streaming 64 MiB: max VmRSS {max_rss} KiB, VmHWM {hwm} KiB (limit {LIMIT_KIB} KiB)"
    );
    eprintln!("streamed 64 MiB: worker max VmRSS {max_rss} KiB, VmHWM {hwm} KiB");
}

#[test]
fn large_response_cut_short_by_the_upstream_closes_the_client_connection() {
    // Large enough to be spliced: the premature end must still be seen.
    let sent = pseudo_random_bytes(300 * 1024, 12);
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    resp.extend_from_slice(&sent);
    let b1 = scripted("b1", vec![Script::new("/short", &resp, Then::Close)]);
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("response head");
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-length"), Some("1048576"));
    let got = c
        .read_to_end()
        .expect("forklb closes the client connection when the upstream does");
    assert_eq!(got.len(), sent.len(), "bytes relayed before the close");
    assert!(got == sent, "relayed bytes differ");
    // Other requests are unaffected.
    let r = Conn::open(lb.port())
        .expect("connect")
        .get("/next")
        .expect("next request");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
}

/// A response body the server cuts short is one error-log line, naming the
/// server as the connect and handshake lines do (nginx logs one: "upstream
/// prematurely closed connection while reading upstream").
#[test]
fn a_response_body_cut_short_is_logged_once_with_the_server() {
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec();
    let b1 = scripted("b1", vec![Script::new("/short", &resp, Then::Close)]);
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = open(&lb);
    c.send(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("response head");
    assert_eq!(head.status, 200, "{head:?}");
    let got = c.read_to_end().expect("the client connection closes");
    assert_eq!(got, b"only ten b");
    // Both lines of the old code were written together, this one last.
    assert!(
        lb.wait_log(
            "failed while sending the response body",
            Duration::from_secs(3)
        ),
        "{}",
        lb.diagnostics()
    );
    let lines = lb.log_lines(&b1.addr().to_string());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(&format!("upstream {} (server web/b1) failed while sending the response body: it closed the connection prematurely, client: 127.0.0.1:", b1.addr())),
        "{}",
        lines[0]
    );
}

/// The server's last bytes and its FIN usually arrive together, in one
/// event: a short read must not be taken for "drained" then, or the end of
/// a close-delimited body would only be noticed at the read timeout.
#[test]
fn small_close_delimited_response_ends_when_the_server_closes() {
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nshort body".to_vec();
    let b1 = scripted("b1", vec![Script::new("/eof", &resp, Then::Close)]);
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    for i in 0..20 {
        let mut c = open(&lb);
        c.send(b"GET /eof HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let head = c.read_next_head().expect("response head");
        assert_eq!(head.status, 200, "{head:?}");
        let got = c
            .read_to_end()
            .unwrap_or_else(|e| panic!("request {i}: body not ended by the server's close: {e}"));
        assert_eq!(got, b"short body", "request {i}");
    }
}

/// A client that sends its request and at once closes its sending half
/// (`shutdown(SHUT_WR)`, as `nc -N` does) still gets the whole response.
#[test]
fn request_followed_by_the_clients_fin_is_answered() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/x",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Then::Close,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    for i in 0..20 {
        let mut c = open(&lb);
        c.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        c.stream()
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let head = c
            .read_next_head()
            .unwrap_or_else(|e| panic!("request {i}: no response after the client's FIN: {e}"));
        assert_eq!(head.status, 200, "request {i}: {head:?}");
    }
}

// ---- What an upstream's response may not carry on -----------------------------------------

/// A 204 and a 1xx lose the Content-Length they must not carry (RFC 9110
/// §8.6; HTTP/2 clients refuse a 204 with `content-length: 5`), a 426
/// keeps the Upgrade that says what it wants (RFC 9110 §15.5.22), as
/// nginx and HAProxy relay them.
#[test]
fn a_204_and_a_1xx_lose_their_content_length_and_a_426_keeps_its_upgrade() {
    let b1 = scripted(
        "b1",
        vec![
            Script::new(
                "/nc",
                b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\nX-Info: none\r\n\r\n",
                Then::KeepAlive,
            ),
            Script::new(
                "/hint",
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nContent-Length: 5\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Then::KeepAlive,
            ),
            Script::new(
                "/tls-please",
                b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: TLS/1.2, HTTP/1.1\r\n\
                  Connection: Upgrade\r\nContent-Length: 3\r\n\r\nno!",
                Then::KeepAlive,
            ),
        ],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = open(&lb);
    let r = c.get("/nc").expect("204");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    assert_eq!(r.header("x-info"), Some("none"));
    c.send(b"GET /hint HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let interim = c.read_next_head().expect("103");
    assert_eq!(interim.status, 103, "{interim:?}");
    assert_eq!(interim.header("content-length"), None, "{interim:?}");
    assert_eq!(interim.header("link"), Some("</a.css>"));
    let r = c.read_response().expect("final response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let r = c.get("/tls-please").expect("426");
    assert_eq!((r.status, r.body_str().as_str()), (426, "no!"), "{r:?}");
    assert_eq!(
        r.header("upgrade"),
        Some("TLS/1.2, HTTP/1.1"),
        "{:?}",
        r.headers
    );
    let r = c.get("/after").expect("request after them");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
}

/// Whitespace before a chunk extension's `;` is valid (RFC 9112 §7.1.1,
/// `chunk-ext = *( BWS ";" ...)`): a response or request body using it is
/// relayed whole, as nginx and HAProxy relay it. Whitespace before the
/// line's CRLF stays refused.
#[test]
fn chunk_extensions_after_whitespace_are_valid_both_ways() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/ext",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n3 ;x=y\r\nabc\r\n2\t;a\r\nde\r\n0 ;end\r\n\r\n",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = open(&lb);
    let r = c.get("/ext").expect("response");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "helloabcde"),
        "{r:?}"
    );
    // An HTTP/1.0 client gets the payload alone, whole.
    let mut c10 = open(&lb);
    c10.send(b"GET /ext HTTP/1.0\r\n\r\n").expect("send");
    let raw = c10.read_to_end().expect("HTTP/1.0 response");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.ends_with("\r\n\r\nhelloabcde"), "{text:?}");

    let echo = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&echo]));
    let mut c = open(&lb);
    c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2 ;a=b\r\nok\r\n0\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let mut c = open(&lb);
    c.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 400, "{r:?}");
}

/// A body coded with anything but chunked alone cannot reach the client
/// as it came (HTTP/1.1 clients never asked for the coding, HTTP/1.0 ones
/// cannot take it): a 502, as HAProxy answers, never the coded bytes.
#[test]
fn transfer_codings_other_than_chunked_alone_are_a_502() {
    let body = b"2\r\nok\r\n0\r\n\r\n";
    let heads: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    let scripts = heads
        .iter()
        .enumerate()
        .map(|(i, h)| Script::new(&format!("/te{i}"), &[*h, &body[..]].concat(), Then::Close))
        .collect();
    let b1 = scripted("b1", scripts);
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    for i in 0..heads.len() {
        let mut c = open(&lb);
        let r = c.get(&format!("/te{i}")).expect("response");
        assert_eq!(r.status, 502, "/te{i}: {r:?}");
    }
}

/// An HTTP/1.0 response with Transfer-Encoding has faulty framing (RFC
/// 9112 §6.1): relayed, but its connection is closed after it, never
/// handed to the next request, whatever its Connection says.
#[test]
fn an_http_1_0_response_with_transfer_encoding_is_not_reused() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/te10",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
              2\r\nok\r\n0\r\n\r\n",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = open(&lb);
    let r = c.get("/te10").expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let r = c.get("/next").expect("next");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_ne!(
        reqs[0].peer, reqs[1].peer,
        "the connection of the HTTP/1.0 chunked response was reused"
    );
}

/// A client whose response ends at the connection's close (HTTP/1.0, no
/// length) would take a FIN after a cut-short body as a complete response:
/// when the upstream's body turns out malformed or ends early, forklb
/// resets the connection instead, so the client sees an error. (nginx and
/// HAProxy answer an already-arrived malformed body with an error too.)
#[test]
fn a_cut_short_response_resets_a_client_whose_response_ends_at_the_close() {
    let b1 = scripted(
        "b1",
        vec![
            Script::new(
                "/bad",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
                Then::Close,
            ),
            Script::new(
                "/cut",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n100\r\nabc",
                Then::Close,
            ),
            Script::new(
                "/whole",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                Then::KeepAlive,
            ),
        ],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    for path in ["/bad", "/cut"] {
        let mut c = Conn::open(lb.port()).expect("connect");
        c.set_read_timeout(Duration::from_secs(5));
        c.send(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .expect("send");
        match c.read_to_end() {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{path}: {e}"),
            Ok(got) => panic!(
                "{path}: a clean close after {:?}: the client takes it as complete",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    // A whole response that ends at the close is closed, not reset.
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /whole HTTP/1.0\r\n\r\n").expect("send");
    let got = c.read_to_end().expect("a clean close");
    let text = String::from_utf8_lossy(&got);
    assert!(text.ends_with("\r\n\r\nhello"), "{text:?}");
}

/// An upstream status line of a higher HTTP/1.x minor is read as HTTP/1.1
/// (RFC 9110 §2.5), as nginx and HAProxy read it, as forklb serves such
/// requests; it was a 502.
#[test]
fn a_higher_minor_status_line_is_read_as_http11() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/v12",
            b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = open(&lb);
    let r = c.get("/v12").expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let r = c.get("/next").expect("next");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
}

/// A chunked body whose framing is already broken in the bytes that came
/// with the head is a 502 for an HTTP/1.1 client, as HAProxy answers (nginx
/// sends nothing): not a 200 whose body is then cut. The upstream
/// connection is not reused.
#[test]
fn broken_chunked_framing_that_came_with_the_head_is_a_502() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/bad",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = open(&lb);
    let r = c.get("/bad").expect("response");
    assert_eq!(r.status, 502, "{r:?}");
    let r = open(&lb).get("/next").expect("next request");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_ne!(reqs[0].peer, reqs[1].peer, "the connection was reused");
}

/// A response whose Content-Length repeats one value (two fields saying 2,
/// or `2, 2`) is that one length (RFC 9110 §8.6 lets a recipient take it so;
/// HAProxy does, nginx relays it): the client gets one `Content-Length: 2`
/// and the body, and the connections go on. Two different values are a 502.
#[test]
fn a_response_content_length_repeating_one_value_is_sent_once() {
    let b1 = scripted(
        "b1",
        vec![
            Script::new(
                "/two",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
                Then::KeepAlive,
            ),
            Script::new(
                "/list",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
                Then::KeepAlive,
            ),
            Script::new(
                "/differ",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
                Then::KeepAlive,
            ),
        ],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = open(&lb);
    for path in ["/two", "/list", "/two"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("send");
        let r = c.read_response().expect("response");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "ok"),
            "{path}: {r:?}"
        );
        let lengths: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(lengths, ["2"], "{path}: {r:?}");
    }
    c.send(b"GET /differ HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().expect("response").status, 502);
}
