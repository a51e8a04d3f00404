//! `shutdown sessions server B/S` (issue 17): every connection to that
//! server is cut now, in every worker — requests in flight from HTTP/1.1
//! clients, tunnels after a `101`, HTTP/2 client streams (the connection
//! and its other streams go on), idle pooled upstream connections — and
//! nothing to any other server (here a server of the same name in another
//! backend) is touched. Answers as HAProxy 2.6's.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::*;

const SWITCH_WS: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

/// Requests under this path wait at both backends before the answer.
const SLOW: &str = "/slow";
const SLOW_FOR: Duration = Duration::from_secs(8);

struct Setup {
    lb: Forklb,
    _dir: TempDir,
    sock: PathBuf,
    /// `web/s1`, the server whose sessions are shut down.
    web: Backend,
    /// `api/s1`: same server name, other backend; never touched.
    api: Backend,
    h2c_port: u16,
}

fn backend(name: &str) -> Backend {
    Backend::start_with(
        name,
        BackendOpts {
            path_delays: vec![(SLOW.to_owned(), SLOW_FOR)],
            scripts: vec![Script::new("/ws", SWITCH_WS, Then::Echo)],
            ..BackendOpts::default()
        },
    )
}

fn start() -> Setup {
    let (web, api) = (backend("web1"), backend("api1"));
    let dir = TempDir::new("adminshut");
    let sock = dir.join("admin.sock");
    let h2c_port = free_port();
    let routes = |b: ConfigBuilder| {
        b.route(Route::path("/api").upstream("api"))
            .route(Route::to("web"))
    };
    let b = ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .admin_socket(&sock)
        .listener("plain", &["127.0.0.1:$PORT"]);
    let b = routes(b)
        .listener("h2c", &[&format!("127.0.0.1:{h2c_port}")])
        .listener_opt("h2c: true");
    let lb = Forklb::start(
        &routes(b)
            .upstream("web", [Srv::new("s1", web.addr())])
            .upstream_opt("retries: 0")
            .upstream("api", [Srv::new("s1", api.addr())])
            .upstream_opt("retries: 0")
            .build(),
    );
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "{}",
        lb.diagnostics()
    );
    Setup {
        lb,
        _dir: dir,
        sock,
        web,
        api,
        h2c_port,
    }
}

/// A request sent on a fresh connection (not yet answered).
fn send(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    s
}

/// Everything the peer sends until it closes, and whether it closed
/// within `within`.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

/// Waits until `b` has received `n` requests.
fn wait_requests(b: &Backend, n: usize) {
    assert!(
        wait_until(Duration::from_secs(5), || b.request_count() >= n),
        "{} got {} request(s), want {n}",
        b.name(),
        b.request_count()
    );
}

#[test]
fn in_flight_requests_in_both_workers_are_cut_and_other_servers_go_on() {
    let s = start();
    let port = s.lb.port();
    // Several connections, so both workers have some.
    let mut cut: Vec<TcpStream> = (0..6).map(|i| send(port, &format!("{SLOW}/{i}"))).collect();
    let mut kept = send(port, "/api/slow/kept");
    wait_requests(&s.web, 6);
    wait_requests(&s.api, 1);
    assert_eq!(stat_field(&s.sock, "web", "s1", "scur"), "6");

    let asked = Instant::now();
    assert_eq!(admin_cmd(&s.sock, "shutdown sessions server web/s1"), "\n");
    for c in &mut cut {
        let (got, closed) = read_until_closed(c, Duration::from_secs(3));
        assert!(closed, "a connection to web/s1 was not cut");
        assert!(got.is_empty(), "a cut request got an answer: {got:?}");
    }
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "cutting took {:?}",
        asked.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(3), || stat_field(
            &s.sock, "web", "s1", "scur"
        ) == "0"),
        "web/s1 still has sessions"
    );
    // api/s1 (same server name, other backend) was not touched.
    let (got, closed) = read_until_closed(&mut kept, SLOW_FOR + Duration::from_secs(5));
    assert!(got.starts_with("HTTP/1.1 200 "), "{got:?}");
    assert!(!closed || got.contains("api1"), "{got:?}");
    // The server still takes new requests (HAProxy kills sessions only).
    let r = http_get(port, "/after");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"web1");
}

#[test]
fn a_tunnel_to_the_server_is_cut() {
    let s = start();
    let mut ws = TcpStream::connect(("127.0.0.1", s.lb.port())).expect("connect");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .expect("send");
    ws.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    let n = ws.read(&mut buf).expect("101");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    ws.write_all(b"ping").expect("tunnel bytes");
    let n = ws.read(&mut buf).expect("echo");
    assert_eq!(&buf[..n], b"ping");

    assert_eq!(admin_cmd(&s.sock, "shutdown sessions server web/s1"), "\n");
    let (got, closed) = read_until_closed(&mut ws, Duration::from_secs(3));
    assert!(closed, "the tunnel was not cut");
    assert!(got.is_empty(), "{got:?}");
    assert!(
        wait_until(Duration::from_secs(3), || s.web.tunnels_closed() >= 1),
        "the backend's end of the tunnel stayed open"
    );
}

#[test]
fn idle_pooled_connections_to_the_server_are_closed() {
    let s = start();
    let port = s.lb.port();
    // Connections from both workers end up pooled (idle, kept alive).
    for i in 0..8 {
        assert_eq!(http_get(port, &format!("/p{i}")).status, 200);
        assert_eq!(http_get(port, &format!("/api/p{i}")).status, 200);
    }
    let web_conns = s.web.connections();
    assert!(web_conns >= 1 && s.api.connections() >= 1);
    let (web_closed, api_closed) = (s.web.closed_by_peer(), s.api.closed_by_peer());
    assert_eq!(admin_cmd(&s.sock, "shutdown sessions server web/s1"), "\n");
    assert!(
        wait_until(Duration::from_secs(3), || s.web.closed_by_peer()
            >= web_closed + web_conns.min(1)),
        "no pooled connection to web/s1 was closed"
    );
    // The api backend's pooled connections stay open (which worker a new
    // request lands on decides whether one of them is reused).
    assert_eq!(http_get(port, "/api/again").status, 200);
    assert_eq!(s.api.closed_by_peer(), api_closed);
    // web/s1 gets a fresh connection.
    assert_eq!(http_get(port, "/again").status, 200);
    assert!(s.web.connections() > web_conns);
}

#[test]
fn http2_streams_on_the_server_are_reset_and_the_connection_goes_on() {
    let s = start();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", s.h2c_port);
    let out_file = s._dir.join("curl.out");
    // One HTTP/2 connection, two streams: one on web/s1, one on api/s1.
    let curl = Tool::spawn(
        "curl",
        &[
            "--http2-prior-knowledge",
            "--parallel",
            "--parallel-immediate",
            "-s",
            "--max-time",
            "20",
            "-o",
            out_file.to_str().unwrap_or_default(),
            "-w",
            "%{url_effective} %{http_code} %{num_connects}\\n",
            &url("/slow/h2-cut"),
            "-o",
            "/dev/null",
            &url("/api/slow/h2-kept"),
        ],
    );
    wait_requests(&s.web, 1);
    wait_requests(&s.api, 1);
    assert_eq!(admin_cmd(&s.sock, "shutdown sessions server web/s1"), "\n");
    let out = curl.wait(SLOW_FOR + Duration::from_secs(10));
    let text = out.stdout.clone();
    let line = |p: &str| {
        text.lines()
            .find(|l| l.contains(p))
            .unwrap_or_else(|| panic!("no {p} in {}", out.combined()))
            .to_owned()
    };
    // The cut stream got no answer; the other one on the same connection
    // was answered in full.
    assert!(line("/slow/h2-cut").contains(" 000 "), "{}", out.combined());
    assert!(
        line("/api/slow/h2-kept").contains(" 200 "),
        "{}",
        out.combined()
    );
    assert!(
        s.lb.wait_log("HTTP/2 stream(s) cut", Duration::from_secs(2)),
        "{}",
        s.lb.diagnostics()
    );
}

#[test]
fn answers_are_haproxys_words() {
    let s = start();
    for (cmd, want) in [
        ("shutdown sessions server web/nope", "No such server.\n\n"),
        ("shutdown sessions server nope/s1", "No such backend.\n\n"),
        (
            "shutdown sessions server web",
            "Require 'backend/server'.\n\n",
        ),
        ("shutdown sessions server", "Require 'backend/server'.\n\n"),
        // HAProxy ignores what follows the server.
        ("shutdown sessions server api/s1 now", "\n"),
    ] {
        assert_eq!(admin_cmd(&s.sock, cmd), want, "{cmd}");
    }
    let unknown = admin_cmd(&s.sock, "shutdown sessions");
    assert!(
        unknown.starts_with("Unknown command, but maybe one of the following ones is a better match:\n  shutdown sessions server <bk>/<srv>     : kill sessions on a server\n"),
        "{unknown}"
    );
    assert!(admin_cmd(&s.sock, "help shutdown")
        .contains("  shutdown sessions server <bk>/<srv>     : kill sessions on a server\n"));
}

#[test]
fn an_operator_may_not_shut_down_sessions() {
    let be = Backend::start("b1");
    let dir = TempDir::new("adminshutop");
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .set(
                "admin",
                format!("{{socket: {}, level: operator}}", sock.display()),
            )
            .listener("plain", &["127.0.0.1:$PORT"])
            .route(Route::to("web"))
            .upstream("web", [Srv::new("s1", be.addr())])
            .build(),
    );
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "{}",
        lb.diagnostics()
    );
    assert_eq!(
        admin_cmd(&sock, "shutdown sessions server web/s1"),
        "Permission denied\n\n"
    );
}

#[test]
fn sessions_on_workers_of_a_replaced_generation_are_cut_too() {
    let s = start();
    let port = s.lb.port();
    let mut cut = send(port, "/slow/old-generation");
    wait_requests(&s.web, 1);
    // A runtime server change starts a new generation of workers; the
    // request above stays on its old worker, which drains.
    let spare = Backend::start("spare");
    assert_eq!(
        admin_cmd(&s.sock, &format!("add server api/spare {}", spare.addr())),
        "New server registered.\n\n"
    );
    assert!(
        s.lb.wait_log("draining", Duration::from_secs(5)),
        "{}",
        s.lb.diagnostics()
    );
    assert_eq!(admin_cmd(&s.sock, "shutdown sessions server web/s1"), "\n");
    let (got, closed) = read_until_closed(&mut cut, Duration::from_secs(3));
    assert!(closed, "the old generation's connection was not cut");
    assert!(got.is_empty(), "{got:?}");
}
