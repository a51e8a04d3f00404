//! Walking skeleton, hostile or unsupported input: garbage, chunked request
//! bodies, Content-Length with Transfer-Encoding.

mod support;

use std::io;
use std::time::Duration;
use support::*;

/// What the server did with a request the test expects to be refused.
#[derive(Debug)]
enum Outcome {
    Response(Box<Response>),
    Closed,
}

/// Sends `bytes` on a fresh connection; returns the response or how the
/// connection ended. A read timeout (no answer, no close) fails the test.
fn send_raw(port: u16, bytes: &[u8]) -> Outcome {
    let mut c = Conn::open(port).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    if c.send(bytes).is_err() {
        return Outcome::Closed;
    }
    match c.read_response() {
        Ok(r) => Outcome::Response(Box::new(r)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!(
                "no answer and no close within 3 s for {} garbage bytes",
                bytes.len()
            )
        }
        Err(_) => Outcome::Closed,
    }
}

/// Expects a 4xx (or 505 for an unsupported version) or a closed connection.
fn assert_rejected(port: u16, bytes: &[u8], what: &str) {
    match send_raw(port, bytes) {
        Outcome::Response(r) => assert!(
            (400..500).contains(&r.status) || r.status == 505,
            "{what}: expected 4xx, 505 or close, got {} {:?}",
            r.status,
            r.body_str()
        ),
        Outcome::Closed => {}
    }
}

#[test]
fn garbage_is_rejected_and_workers_survive() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b1]));
    let workers = lb.wait_workers(2, Duration::from_secs(5));

    for seed in 1..=4u64 {
        assert_rejected(lb.port(), &pseudo_random_bytes(4096, seed), "random bytes");
    }
    assert_rejected(
        lb.port(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\x00\x01\r\n\r\n",
        "control bytes as a header line",
    );
    assert_rejected(
        lb.port(),
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        "space in header name",
    );
    assert_rejected(lb.port(), b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/9.9");
    assert_rejected(
        lb.port(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "non-numeric Content-Length",
    );
    assert_rejected(
        lb.port(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "conflicting Content-Length headers",
    );
    assert_eq!(
        b1.request_count(),
        0,
        "garbage reached the backend: {:?}",
        b1.requests()
    );

    for i in 0..4 {
        let r = http_get(lb.port(), "/");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "b1"),
            "request {i}"
        );
    }
    assert_eq!(
        lb.worker_pids(),
        workers,
        "a worker died on garbage input\n{}",
        lb.diagnostics()
    );
}

#[test]
fn chunked_request_body_is_refused_or_forwarded_exactly() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response to a chunked request");
    match r.status {
        501 => assert_eq!(b1.request_count(), 0, "501 but the backend was asked"),
        200 => {
            let reqs = b1.requests();
            assert_eq!(reqs.len(), 1, "{reqs:?}");
            assert_eq!(
                String::from_utf8_lossy(&reqs[0].body),
                "hello world",
                "backend got a mis-framed body: {:?}",
                reqs[0]
            );
        }
        s => panic!(
            "chunked request: expected 501 or 200, got {s} {:?}",
            r.body_str()
        ),
    }
    // The chunk bytes must never be taken for a next request: the connection
    // is either closed or serves the next request correctly.
    let before = b1.request_count();
    if r.closes() {
        c.set_read_timeout(Duration::from_secs(3));
        c.expect_eof().expect("close after Connection: close");
    } else if c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n").is_ok() {
        if let Ok(next) = c.read_response() {
            assert_eq!(
                (next.status, next.body_str().as_str()),
                (200, "b1"),
                "request after the chunked one was mis-framed: {next:?}"
            );
            assert_eq!(b1.request_count(), before + 1);
            assert_eq!(b1.requests().last().unwrap().path, "/after");
        }
    }
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        b1.request_count(),
        0,
        "smuggling attempt reached the backend"
    );
    // Still serving.
    assert_eq!(http_get(lb.port(), "/").status, 200);
}
