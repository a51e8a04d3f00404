//! Protocol upgrades: `Connection: Upgrade` + `Upgrade: websocket` are
//! forwarded, a `101` turns the connection into a two-way tunnel that closes
//! with the client, and an unrequested `101` (or one to a protocol the
//! client did not offer) is a 502. A tunnel's bytes count in the access log
//! and the counters; a side that stops reading is bounded by its send
//! timeout.

mod support;

use std::net::Shutdown;
use std::time::Duration;
use support::*;

const SWITCH: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
const UPGRADE_REQUEST: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

/// A `101` to a protocol no client here offers.
const SWITCH_TO_FOO: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n";

fn echo_backend() -> Backend {
    Backend::start_with(
        "b1",
        BackendOpts {
            scripts: vec![
                Script::new("/ws", SWITCH, Then::Echo),
                Script::new("/sneaky", SWITCH, Then::Echo),
                Script::new("/foo", SWITCH_TO_FOO, Then::Echo),
            ],
            ..Default::default()
        },
    )
}

/// Sends the upgrade request and reads the 101.
fn upgrade(lb: &Forklb) -> Conn {
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(UPGRADE_REQUEST).expect("send upgrade request");
    let r = c.read_next_head().expect("101 head");
    assert_eq!(r.status, 101, "{r:?}\n{}", lb.error_log_contents());
    assert_eq!(r.header("upgrade"), Some("websocket"), "{:?}", r.headers);
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection")
                && v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))),
        "101 without Connection: upgrade: {:?}",
        r.headers
    );
    c
}

#[test]
fn upgrade_headers_are_forwarded_and_bytes_tunnel_both_ways() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = upgrade(&lb);
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("upgrade"),
        Some("websocket"),
        "{:?}",
        reqs[0]
    );
    assert!(
        reqs[0]
            .header_all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
        "backend did not get Connection: upgrade: {:?}",
        reqs[0].headers
    );

    c.send(b"ping-1").expect("send");
    assert_eq!(c.read_exact_bytes(6).expect("echo"), b"ping-1");
    // Bytes that look like HTTP are just bytes now.
    c.send(b"GET /not-a-request HTTP/1.1\r\n\r\n")
        .expect("send");
    assert_eq!(
        c.read_exact_bytes(31).expect("echo"),
        b"GET /not-a-request HTTP/1.1\r\n\r\n"
    );
    let big = pseudo_random_bytes(256 * 1024, 5);
    let writer = {
        let mut s = c.stream().try_clone().expect("clone");
        let big = big.clone();
        std::thread::spawn(move || std::io::Write::write_all(&mut s, &big))
    };
    let back = c.read_exact_bytes(big.len()).expect("echo of 256 KiB");
    writer.join().unwrap().expect("write 256 KiB");
    assert!(back == big, "tunnelled bytes differ");
    assert_eq!(b1.request_count(), 1, "tunnel bytes parsed as requests");
}

#[test]
fn tunnel_closes_when_the_client_closes() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = upgrade(&lb);
    c.send(b"hello").expect("send");
    assert_eq!(c.read_exact_bytes(5).expect("echo"), b"hello");
    c.stream().shutdown(Shutdown::Write).expect("shutdown");
    assert!(
        wait_until(Duration::from_secs(3), || b1.tunnels_closed() == 1),
        "backend did not see the tunnel close"
    );
    c.expect_closed()
        .expect("client side of the tunnel closed after the backend's close");
    // The worker is fine and serves new requests.
    assert_eq!(http_get(lb.port(), "/after").status, 200);
}

#[test]
fn tunnel_closes_when_the_client_disconnects() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = upgrade(&lb);
    c.send(b"hello").expect("send");
    assert_eq!(c.read_exact_bytes(5).expect("echo"), b"hello");
    drop(c);
    assert!(
        wait_until(Duration::from_secs(3), || b1.tunnels_closed() == 1),
        "backend connection stayed open after the client disconnected"
    );
}

#[test]
fn unrequested_101_is_502() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"GET /sneaky HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(b1.request_count(), 1);
}

#[test]
fn upgrade_header_without_connection_upgrade_is_not_an_upgrade() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c
        .request("GET", "/plain", &[("Upgrade", "websocket")], b"")
        .expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"));
    let seen = &b1.requests()[0];
    assert!(!seen.has_header("upgrade"), "{:?}", seen.headers);
}

#[test]
fn switch_to_a_protocol_the_client_did_not_offer_is_502() {
    let b1 = echo_backend();
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    // The client offers websocket; the server switches to foo.
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"GET /foo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        lb.wait_log("did not offer", Duration::from_secs(3)),
        "{}",
        lb.error_log_contents()
    );
    // The upstream connection is not kept for anything: the backend sees
    // it closed.
    assert!(
        wait_until(Duration::from_secs(3), || b1.tunnels_closed() >= 1),
        "the upstream connection of the refused switch stayed open"
    );

    // Offered among others, in another case: the switch goes through.
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(
        b"GET /foo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket, FOO\r\n\r\n",
    )
    .expect("send");
    let r = c.read_next_head().expect("101 head");
    assert_eq!(r.status, 101, "{r:?}");
    c.send(b"ping").expect("send");
    assert_eq!(c.read_exact_bytes(4).expect("echo"), b"ping");
}

#[test]
fn tunnel_bytes_and_its_101_are_counted_and_logged() {
    let b1 = echo_backend();
    let dir = TempDir::new("tunnelcount");
    let (sock, log) = (dir.join("admin.sock"), dir.join("access.log"));
    let lb = Forklb::start(
        &standard_config(1)
            .admin_socket(&sock)
            .access_log(&log, "combined")
            .upstream("web", [Srv::of(&b1)])
            .build(),
    );

    let mut c = upgrade(&lb);
    let up = pseudo_random_bytes(100_000, 7);
    let writer = {
        let mut s = c.stream().try_clone().expect("clone");
        let up = up.clone();
        std::thread::spawn(move || std::io::Write::write_all(&mut s, &up))
    };
    let back = c.read_exact_bytes(up.len()).expect("echo of 100 kB");
    writer.join().unwrap().expect("write 100 kB");
    assert!(back == up, "tunnelled bytes differ");
    c.stream().shutdown(Shutdown::Write).expect("shutdown");
    c.expect_closed().expect("tunnel closed");

    // nginx's $body_bytes_sent of a 101: what the tunnel sent the client.
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(3), || read()
            .contains("\"GET /ws HTTP/1.1\" 101 100000 ")),
        "no tunnel line with its bytes: {:?}\n{}",
        read(),
        lb.diagnostics()
    );
    // HAProxy's counters: the 101 is a 1xx response, and the tunnelled
    // bytes are the server's (and its backend's) bin and bout.
    for row in ["b1", "BACKEND"] {
        let f = stat_fields(&sock, "web", row, &["hrsp_1xx", "bin", "bout"]);
        let n = |i: usize| f[i].parse::<usize>().unwrap_or(0);
        assert_eq!(f[0], "1", "{row} hrsp_1xx: {f:?}");
        // Plus the request head as forklb rewrote it: a few hundred bytes.
        assert!(
            (up.len() + 1..up.len() + 1000).contains(&n(1)),
            "{row} bin: {f:?}"
        );
        assert_eq!(n(2), up.len() + SWITCH.len(), "{row} bout: {f:?}");
    }
}

/// Sends from `c` until a write fails (forklb closed the tunnel) or
/// `limit` bytes are out; never reads. Returns the write's error, if any.
fn send_without_reading(c: &Conn, limit: usize) -> std::thread::JoinHandle<Option<std::io::Error>> {
    let mut s = c.stream().try_clone().expect("clone");
    s.set_write_timeout(Some(Duration::from_secs(40)))
        .expect("write timeout");
    std::thread::spawn(move || {
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0;
        while sent < limit {
            match std::io::Write::write(&mut s, &chunk) {
                Ok(n) => sent += n,
                Err(e) => return Some(e),
            }
        }
        None
    })
}

/// A client pushes 1 GiB into a tunnel (through `b1`, forklb with
/// `timeouts`) and reads nothing back: one side stops taking bytes, and
/// the tunnel must be cut within 15 s, its log line naming the `timeout`
/// that did it.
fn assert_a_stalled_tunnel_is_cut(b1: &Backend, timeouts: &str, timeout: &str) {
    let lb = Forklb::start(
        &standard_config(1)
            .set("timeouts", timeouts)
            .upstream("web", [Srv::of(b1)])
            .build(),
    );
    let c = upgrade(&lb);
    let writer = send_without_reading(&c, 1 << 30);
    assert!(
        wait_until(Duration::from_secs(15), || writer.is_finished()),
        "the stalled tunnel was not cut within 15 s ({timeout})\n{}",
        lb.diagnostics()
    );
    assert!(writer.join().unwrap().is_some(), "1 GiB went through");
    assert!(
        lb.wait_log(timeout, Duration::from_secs(3)),
        "{}",
        lb.error_log_contents()
    );
}

#[test]
fn tunnel_whose_client_stops_reading_is_cut_after_client_send() {
    // Everything sent is echoed back, and the client reads none of it: the
    // tunnel's bytes for the client pile up until nothing moves.
    assert_a_stalled_tunnel_is_cut(
        &echo_backend(),
        "{client_send: 1s, upstream_read: 30s, upstream_write: 30s}",
        "client_send",
    );
}

#[test]
fn tunnel_whose_upstream_stops_reading_is_cut_after_upstream_write() {
    // A server that switches and then reads nothing more.
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            early: vec![EarlyScript::new("/ws", SWITCH, EarlyThen::Hold)],
            ..Default::default()
        },
    );
    assert_a_stalled_tunnel_is_cut(
        &b1,
        "{client_send: 30s, upstream_read: 30s, upstream_write: 1s}",
        "upstream_write",
    );
}
