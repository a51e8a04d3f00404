//! Upstream connections: the keep-alive pool, stale pooled connections,
//! retries on refused servers, no retry of a non-idempotent request after it
//! was sent, and invalid upstream responses (502, connection never reused).

mod support;

use std::time::Duration;
use support::*;

// ---- Pool ---------------------------------------------------------------------------

#[test]
fn twenty_requests_on_one_client_connection_use_one_upstream_connection() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..20 {
        let r = c.get(&format!("/ka/{i}")).expect("GET");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "b1"),
            "request {i}"
        );
    }
    assert_eq!(b1.request_count(), 20);
    assert_eq!(
        b1.connections(),
        1,
        "20 sequential requests should share one pooled upstream connection"
    );
}

#[test]
fn twenty_requests_on_separate_client_connections_use_one_upstream_connection() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    for i in 0..20 {
        let r = http_get(lb.port(), &format!("/fresh/{i}"));
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "b1"),
            "request {i}"
        );
    }
    assert_eq!(b1.request_count(), 20);
    assert_eq!(
        b1.connections(),
        1,
        "the pooled upstream connection should outlive client connections"
    );
}

#[test]
fn keepalive_zero_uses_a_new_upstream_connection_per_request() {
    let b1 = Backend::start("b1");
    let cfg = proxy_config(1, &[("b1", b1.addr(), 1)], &["keepalive: 0"]);
    let lb = Forklb::start(&cfg);

    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..5 {
        let r = c.get(&format!("/np/{i}")).expect("GET");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "b1"),
            "request {i}"
        );
    }
    assert_eq!(b1.request_count(), 5);
    assert_eq!(
        b1.connections(),
        5,
        "keepalive: 0 must not reuse connections"
    );
}

#[test]
fn pooled_connection_closed_by_backend_is_detected() {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            idle_close: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..3 {
        let r = c.get(&format!("/stale/{i}")).expect("GET");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "b1"),
            "request {i} after the backend closed the pooled connection: {r:?}\n{}",
            lb.error_log_contents()
        );
        // Wait until the backend has closed this (now pooled) connection.
        assert!(
            wait_until(Duration::from_secs(3), || b1.idle_closed() == i + 1),
            "backend did not close its idle connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b1.request_count(), 3, "{:?}", b1.heads());
    assert_eq!(b1.connections(), 3);
}

// ---- Retries -------------------------------------------------------------------------

#[test]
fn retries_skip_a_refused_server() {
    let good = Backend::start("good");
    let dead = refused_addr();
    let cfg = proxy_config(
        1,
        &[("dead", dead, 1), ("good", good.addr(), 1)],
        &["retries: 1"],
    );
    let lb = Forklb::start(&cfg);

    for i in 0..10 {
        let r = http_get(lb.port(), &format!("/r/{i}"));
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "good"),
            "request {i}: {r:?}\n{}",
            lb.error_log_contents()
        );
    }
    assert_eq!(good.request_count(), 10);
}

/// Two servers that read a POST /die completely and close without answering.
fn dying_pair() -> (Backend, Backend, Forklb) {
    let die = || vec![Script::new("/die", b"", Then::Close)];
    let b1 = scripted("b1", die());
    let b2 = scripted("b2", die());
    let cfg = proxy_config(
        1,
        &[("b1", b1.addr(), 1), ("b2", b2.addr(), 1)],
        &["retries: 1"],
    );
    let lb = Forklb::start(&cfg);
    (b1, b2, lb)
}

fn die_count(b1: &Backend, b2: &Backend) -> usize {
    b1.requests()
        .into_iter()
        .chain(b2.requests())
        .filter(|r| r.path == "/die")
        .count()
}

#[test]
fn post_is_not_retried_after_upstream_dies_on_fresh_connection() {
    let (b1, b2, lb) = dying_pair();

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c.request("POST", "/die", &[], b"hello").expect("POST");
    assert_eq!(r.status, 502, "{r:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        die_count(&b1, &b2),
        1,
        "the POST was sent more than once: b1 {:?} b2 {:?}",
        b1.heads(),
        b2.heads()
    );
    assert_eq!(http_get(lb.port(), "/ok").status, 200);
}

#[test]
fn post_is_not_retried_after_upstream_dies_on_pooled_connection() {
    let (b1, b2, lb) = dying_pair();

    // Warm the pool: one idle connection to each server.
    for _ in 0..2 {
        assert_eq!(http_get(lb.port(), "/warm").status, 200);
    }
    assert_eq!((b1.connections(), b2.connections()), (1, 1));

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c.request("POST", "/die", &[], b"hello").expect("POST");
    assert_eq!(r.status, 502, "{r:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        die_count(&b1, &b2),
        1,
        "the POST was sent more than once: b1 {:?} b2 {:?}",
        b1.heads(),
        b2.heads()
    );
    assert_eq!(http_get(lb.port(), "/ok").status, 200);
}

/// A GET whose server closes the connection without answering (it died
/// or restarted after reading the request) goes to another server while
/// retries remain, as nginx's `proxy_next_upstream error` does for an
/// idempotent request: the client never sees that server fail. With
/// both servers dying the retry fails too: 502, each tried once.
#[test]
fn get_is_retried_on_another_server_after_upstream_dies_before_answering() {
    let dies = scripted("dies", vec![Script::new("/g", b"", Then::Close)]);
    let good = Backend::start("good");
    let cfg = proxy_config(
        1,
        &[("dies", dies.addr(), 1), ("good", good.addr(), 1)],
        &["retries: 1"],
    );
    let lb = Forklb::start(&cfg);
    for i in 0..6 {
        let r = http_get(lb.port(), &format!("/g/{i}"));
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "good"),
            "request {i}: {r:?}\n{}",
            lb.error_log_contents()
        );
    }
    // Round robin sent half of them to the dying server first.
    assert!(dies.request_count() >= 2, "{:?}", dies.heads());
    assert_eq!(good.request_count(), 6);

    let (b1, b2, lb) = dying_pair();
    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c.request("GET", "/die", &[], b"").expect("GET");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(
        die_count(&b1, &b2),
        2,
        "b1 {:?} b2 {:?}",
        b1.heads(),
        b2.heads()
    );
    // The client connection goes on.
    assert_eq!(c.request("GET", "/ok", &[], b"").expect("GET").status, 200);
}

/// A server that closes the connection right after a keep-alive response
/// (its FIN arrives with the response, as when it hits its own
/// keepalive_requests): forklb must not reuse that connection, or the next
/// request — a POST, which is never sent twice — gets a 502. The client
/// waits a little between requests: a server still closing when the next
/// request goes out is the race every keep-alive client has (which is why
/// servers say `Connection: close`), not what this tests.
#[test]
fn a_connection_the_server_closed_with_its_response_is_not_reused() {
    let closes = scripted(
        "b1",
        vec![Script::new(
            "/p",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Then::Close,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&closes]));
    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(50));
        let r = c.request("POST", "/p", &[], b"x=1").expect("POST");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "ok"),
            "POST {i}: {r:?}\n{}",
            lb.error_log_contents()
        );
    }
    assert_eq!(closes.request_count(), 20);
}

/// A listener whose accept queue is full: the kernel drops further SYNs,
/// so a connect to it hangs until the connector gives up. The streams that
/// filled the queue come with it (they must stay open).
fn syn_dropping_listener() -> (
    std::net::TcpListener,
    std::net::SocketAddr,
    Vec<std::net::TcpStream>,
) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket this test owns; a second listen only
    // changes the backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => return (l, addr, fillers),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

/// A connect that times out sent nothing: the request goes to another
/// server while retries remain (as nginx and HAProxy do), whatever its
/// method; the client never waits for the dead one more than once.
#[test]
fn a_connect_timeout_is_retried_on_another_server() {
    let (_hole, hole_addr, _fillers) = syn_dropping_listener();
    let good = Backend::start("good");
    let cfg = standard_config(1)
        .raw("timeouts: {connect: 300ms}\n")
        .upstream(
            "web",
            [Srv::new("hole", hole_addr), Srv::new("good", good.addr())],
        )
        .upstream_opt("retries: 1")
        .build();
    let lb = Forklb::start(&cfg);
    for i in 0..4 {
        for method in ["GET", "POST"] {
            let mut c = Conn::open(lb.port()).expect("connect");
            let r = c.request(method, "/ct", &[], b"a=1").expect("response");
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, "good"),
                "{method} {i}: {r:?}\n{}",
                lb.error_log_contents()
            );
        }
    }
    assert_eq!(good.request_count(), 8);
    assert!(
        lb.error_log_contents().contains("timed out connecting"),
        "{}",
        lb.error_log_contents()
    );
}

// ---- Invalid responses ------------------------------------------------------------------

/// `/bad` gets `bad` (and the backend keeps the connection open, ready to
/// serve more on it); anything else gets a normal 200. The client must get
/// 502 and the next request must open a new upstream connection.
fn assert_bad_response_not_reused(bad: &[u8]) {
    let b1 = scripted("b1", vec![Script::new("/bad", bad, Then::KeepAlive)]);
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let r = http_get(lb.port(), "/bad");
    assert_eq!(
        r.status,
        502,
        "response {:?}: got {r:?}",
        String::from_utf8_lossy(bad)
    );
    assert_eq!(b1.connections(), 1);
    let r = http_get(lb.port(), "/ok");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    assert_eq!(
        b1.connections(),
        2,
        "the connection that carried an invalid response was reused"
    );
    let paths: Vec<String> = b1.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/bad", "/ok"]);
}

#[test]
fn response_with_content_length_and_transfer_encoding_is_502() {
    assert_bad_response_not_reused(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
}

#[test]
fn response_with_two_content_lengths_is_502() {
    assert_bad_response_not_reused(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
}

#[test]
fn response_with_a_status_under_100_is_502() {
    assert_bad_response_not_reused(b"HTTP/1.1 099 X\r\nContent-Length: 2\r\n\r\nhi");
    assert_bad_response_not_reused(b"HTTP/1.1 000 X\r\nContent-Length: 2\r\n\r\nhi");
}

#[test]
fn response_with_garbage_status_line_is_502() {
    assert_bad_response_not_reused(b"HTPT/1.1 2OO Okay\r\nContent-Length: 2\r\n\r\nok");
}
