//! Timeouts (client_header, keepalive, client_body, upstream_read) and
//! limits (max_header_bytes, max_body_bytes, worker_connections), with short
//! values so that every test takes about a second.

mod support;

use std::thread;
use std::time::{Duration, Instant};
use support::*;

const TIMEOUTS: &str =
    "timeouts: {client_header: 1s, keepalive: 1s, client_body: 1s, upstream_read: 1s}\n";
const LIMITS: &str = "limits: {max_header_bytes: 2k, max_body_bytes: 1k}\n";

/// A one-worker forklb in front of `b` with the short timeouts and limits.
fn start(b: &Backend) -> Forklb {
    Forklb::start(&format!("{}{TIMEOUTS}{LIMITS}", proxy_config_for(1, &[b])))
}

/// `elapsed` is about one second (the configured timeouts).
fn assert_about_1s(elapsed: Duration, what: &str) {
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed <= Duration::from_millis(2500),
        "{what} after {elapsed:?}, expected about 1 s"
    );
}

// ---- Timeouts ---------------------------------------------------------------------

#[test]
fn half_a_head_gets_408_after_client_header_timeout() {
    let b1 = Backend::start("b1");
    let lb = start(&b1);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(4));
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .expect("send half a head");
    let t = Instant::now();
    let r = c.read_response().expect("408 response");
    assert_eq!(r.status, 408, "{r:?}");
    assert_about_1s(t.elapsed(), "408");
    c.expect_closed().expect("closed after 408");
    assert_eq!(b1.bytes_received(), 0);
}

#[test]
fn slowloris_trickle_gets_408_at_client_header_timeout() {
    let b1 = Backend::start("b1");
    let lb = start(&b1);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_millis(200));
    let head = format!(
        "GET /trickle HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(200)
    );
    let start = Instant::now();
    let mut sent = 0;
    let mut send_failed = false;
    let r = loop {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "no 408 after {:?} of trickling ({sent} bytes): client_header must bound the whole head",
            start.elapsed()
        );
        if sent < head.len() && !send_failed {
            // 1 byte every 200 ms (the read timeout paces the loop).
            if c.send(&head.as_bytes()[sent..sent + 1]).is_err() {
                send_failed = true;
            } else {
                sent += 1;
            }
        }
        match c.read_response() {
            Ok(r) => break r,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => panic!("connection ended without a 408 after {sent} bytes: {e}"),
        }
    };
    assert_eq!(r.status, 408, "{r:?}");
    assert_about_1s(start.elapsed(), "408 for a trickled head");
    c.set_read_timeout(Duration::from_secs(3));
    c.expect_closed().expect("closed after 408");
    assert_eq!(b1.bytes_received(), 0);
}

#[test]
fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let b1 = Backend::start("b1");
    let lb = start(&b1);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(4));
    let r = c.get("/one").expect("GET");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"));
    assert!(!r.closes());
    let t = Instant::now();
    c.expect_closed()
        .expect("idle keep-alive connection closed silently");
    assert_about_1s(t.elapsed(), "idle close");
}

#[test]
fn stalled_request_body_is_closed_after_client_body_timeout() {
    let b1 = Backend::start("b1");
    let lb = start(&b1);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(4));
    c.send(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .expect("send head and part of the body");
    let t = Instant::now();
    match c.read_response() {
        Ok(r) => {
            assert_eq!(r.status, 408, "{r:?}");
            assert_about_1s(t.elapsed(), "408 for a stalled body");
            c.expect_closed().expect("closed after 408");
        }
        Err(e) => {
            assert!(
                !is_timeout(&e),
                "neither 408 nor close after {:?}",
                t.elapsed()
            );
            assert_about_1s(t.elapsed(), "close for a stalled body");
        }
    }
    assert_eq!(b1.request_count(), 0, "backend got a complete request");
}

#[test]
fn silent_backend_gives_504_after_upstream_read_timeout() {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            delay: Duration::from_secs(4),
            ..Default::default()
        },
    );
    let lb = start(&b1);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(4));
    let t = Instant::now();
    let r = c.get("/slow").expect("response");
    assert_eq!(r.status, 504, "{r:?}\n{}", lb.error_log_contents());
    assert_about_1s(t.elapsed(), "504");
    assert_eq!(b1.request_count(), 1);
}

// ---- Limits ----------------------------------------------------------------------------

#[test]
fn head_over_max_header_bytes_gets_431() {
    let b1 = Backend::start("b1");
    let lb = start(&b1);

    // Under the limit: served.
    let r = Conn::open(lb.port())
        .expect("connect")
        .request("GET", "/small", &[("X-Pad", &"a".repeat(1200))], b"")
        .expect("GET with a 1.2k head");
    assert_eq!(r.status, 200, "{r:?}");

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    let raw = format!(
        "GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(3000)
    );
    c.send(raw.as_bytes()).expect("send");
    let r = c.read_response().expect("431");
    assert_eq!(
        r.status,
        431,
        "a {}-byte head with max_header_bytes: 2k got {r:?}; backend saw {:?}",
        raw.len(),
        b1.heads()
    );
    c.expect_closed().expect("closed after 431");
    assert_eq!(b1.request_count(), 1, "{:?}", b1.heads());
    assert!(!b1.heads().iter().any(|h| h.contains("/big")));
}

#[test]
fn content_length_body_over_max_body_bytes_gets_413() {
    let b1 = Backend::start("b1");
    let lb = start(&b1);

    // At the limit: served.
    let r = Conn::open(lb.port())
        .expect("connect")
        .request("POST", "/ok", &[], &[b'x'; 1000])
        .expect("POST 1000 bytes");
    assert_eq!(r.status, 200, "{r:?}");
    let bytes_before = b1.bytes_received();

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    let mut raw = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n".to_vec();
    raw.extend_from_slice(&[b'y'; 2000]);
    c.send(&raw).expect("send");
    let r = c.read_response().expect("413");
    assert_eq!(r.status, 413, "{r:?}");
    c.expect_closed().expect("closed after 413");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        b1.bytes_received(),
        bytes_before,
        "an over-limit Content-Length request reached the backend: {:?}",
        b1.heads()
    );
}

#[test]
fn chunked_body_over_max_body_bytes_gets_413() {
    let b1 = Backend::start("b1");
    let lb = start(&b1);

    let chunked = |data_len: usize| {
        let mut raw =
            b"POST /chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut left = data_len;
        while left > 0 {
            let n = left.min(400);
            raw.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            raw.extend(std::iter::repeat_n(b'z', n));
            raw.extend_from_slice(b"\r\n");
            left -= n;
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        raw
    };
    // Under the limit: served.
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(&chunked(800)).expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{r:?}\n{}", lb.error_log_contents());
    assert_eq!(b1.request_count(), 1);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(&chunked(2000)).expect("send");
    let r = c.read_response().expect("413");
    assert_eq!(r.status, 413, "{r:?}\n{}", lb.error_log_contents());
    c.expect_closed().expect("closed after 413");
    thread::sleep(Duration::from_millis(100));
    let reqs = b1.requests();
    assert_eq!(
        reqs.len(),
        1,
        "an over-limit chunked body reached the backend completely: {:?}",
        reqs.iter()
            .map(|r| format!("{} {} ({} body bytes)", r.method, r.path, r.body.len()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn worker_connections_limits_concurrent_clients() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&format!(
        "{}worker_connections: 2\n",
        proxy_config_for(1, &[&b1])
    ));

    let mut c1 = Conn::open(lb.port()).expect("connect 1");
    let mut c2 = Conn::open(lb.port()).expect("connect 2");
    assert_eq!(c1.get("/c1").expect("c1").status, 200);
    assert_eq!(c2.get("/c2").expect("c2").status, 200);

    // A third connection is not served while the two stay open.
    let mut c3 = Conn::open(lb.port()).expect("connect 3 (backlog)");
    c3.set_read_timeout(Duration::from_secs(1));
    let _ = c3.send(b"GET /c3 HTTP/1.1\r\nHost: x\r\n\r\n");
    let c3_pending = match c3.read_response() {
        Ok(r) => {
            panic!("third connection served while two are open (worker_connections: 2): {r:?}")
        }
        Err(e) if is_timeout(&e) => true,
        Err(_) => false, // refused by closing: also not served
    };
    assert!(
        !b1.heads().iter().any(|h| h.contains("/c3")),
        "{:?}",
        b1.heads()
    );
    // The two open ones keep working.
    assert_eq!(c1.get("/c1b").expect("c1 again").status, 200);

    // One closes: now the third is served.
    drop(c2);
    if c3_pending {
        c3.set_read_timeout(Duration::from_secs(3));
        let r = c3
            .read_response()
            .expect("third connection served after one closed");
        assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    } else {
        let mut c4 = Conn::open(lb.port()).expect("connect 4");
        c4.set_read_timeout(Duration::from_secs(3));
        let r = c4.get("/c4").expect("served after one closed");
        assert_eq!(r.status, 200);
    }
    assert_eq!(c1.get("/c1c").expect("c1 still open").status, 200);
}

/// `client_body` runs from the end of the head, not from the first body
/// byte: a client that announces a body and sends none of it gets its 408
/// at `client_body` (it waited for `upstream_write`, 60 s by default, while
/// an upstream connection was held for it), as nginx and HAProxy time it.
#[test]
fn a_body_never_begun_is_timed_out_by_client_body() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&format!(
        "{}timeouts: {{client_body: 1s, upstream_write: 30s, upstream_read: 30s}}\n",
        proxy_config_for(1, &[&b1])
    ));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(10));
    c.send(b"POST /owed HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .expect("send the head");
    let t = Instant::now();
    match c.read_response() {
        Ok(r) => assert_eq!(r.status, 408, "{r:?}"),
        Err(e) => assert!(!is_timeout(&e), "no 408 after {:?}", t.elapsed()),
    }
    assert_about_1s(t.elapsed(), "408 for a body never begun");
    assert_eq!(b1.request_count(), 0);
}

/// The same over HTTP/2: a stream whose HEADERS leave the body to come and
/// no DATA follows gets its 408 at `client_body` (it waited for
/// `upstream_read`).
#[test]
fn an_h2_body_never_begun_is_timed_out_by_client_body() {
    let b1 = Backend::start("b1");
    let h = H2Lb::start(&[Route::to("web")], |c| {
        c.upstream("web", [Srv::of(&b1)]).set(
            "timeouts",
            "{client_body: 1s, upstream_write: 30s, upstream_read: 30s}",
        )
    });
    let v = python(
        "client.py",
        H2Mode::Tls,
        h.tls_port(),
        &["owed_body"],
        Duration::from_secs(30),
    );
    assert_eq!(v.at("status"), "408", "{}\n{}", v.text, h.lb.diagnostics());
    let after: f64 = v.at("after").parse().expect("after");
    assert!(
        (0.7..=3.0).contains(&after),
        "408 after {after} s: {}",
        v.text
    );
}

/// A client that stops reading its response is given up after
/// `client_send` (nginx's `send_timeout`), whatever `upstream_read` is: an
/// operator who raises that for a slow backend does not let every
/// non-reading client hold a connection (and an upstream one) as long.
/// HTTP/1.1 here; HTTP/2 (a window never opened) in
/// `h2_attacks::zero_window_stall_is_timed_out`.
#[test]
fn a_client_that_stops_reading_is_given_up_after_client_send() {
    let big = Backend::start_with(
        "big",
        BackendOpts {
            stream_body: Some(64 << 20),
            ..Default::default()
        },
    );
    let lb = Forklb::start(&format!(
        "{}timeouts: {{client_send: 1s, upstream_read: 30s, upstream_write: 30s}}\n",
        proxy_config_for(1, &[&big])
    ));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("head");
    assert_eq!(head.status, 200, "{head:?}");
    // Not reading: the socket buffers fill, the relay waits on us.
    thread::sleep(Duration::from_secs(4));
    let got = c.read_to_end().map(|b| b.len()).unwrap_or(0);
    assert!(
        got < (64 << 20),
        "the whole body still came after 4 s of not reading: the connection was kept\n{}",
        lb.diagnostics()
    );
    assert!(
        lb.wait_log("timed out", Duration::from_secs(5)),
        "{}",
        lb.diagnostics()
    );
}

/// A server that stops sending in the middle of a response body is the
/// server's failure once `upstream_read` passes: an error-log line naming
/// it (nginx: "upstream timed out ... while reading upstream") and a
/// response error in `show stat` (`eresp`) — not an info line blaming the
/// client, which was reading.
#[test]
fn a_server_stalled_mid_body_is_logged_and_counted_as_its_failure() {
    let b = Backend::start_with(
        "b1",
        BackendOpts {
            stream_body: Some(1 << 20),
            stream_pace: Some(Duration::from_secs(5)),
            ..Default::default()
        },
    );
    let dir = TempDir::new("stall");
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(&format!(
        "{TIMEOUTS}admin: {{socket: \"{}\"}}\n{}",
        sock.display(),
        proxy_config_for(1, &[&b])
    ));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(10));
    c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = c.read_next_head().expect("the response starts");
    assert_eq!(head.status, 200);
    assert!(
        lb.wait_log("(server ", Duration::from_secs(5)),
        "no error line naming the server\n{}",
        lb.diagnostics()
    );
    let lines = lb.log_lines("timed out");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[error]") && l.contains(&b.addr().to_string())),
        "{lines:?}"
    );
    assert!(
        wait_until(Duration::from_secs(3), || {
            stat_fields(&sock, "web", "b1", &["eresp"]) == ["1"]
        }),
        "eresp: {:?}",
        stat_fields(&sock, "web", "b1", &["eresp"])
    );
}
