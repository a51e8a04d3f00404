//! Runtime changes over the admin socket beyond weights and states
//! (issue 17): `disable frontend` / `enable frontend` pause and resume
//! accepting on a listener in every worker, with HAProxy 2.6's answers.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;
use support::*;

struct Setup {
    lb: Forklb,
    _dir: TempDir,
    sock: PathBuf,
    _be: Backend,
    /// The second listener (`api`), which stays open.
    api_port: u16,
}

fn start() -> Setup {
    let be = Backend::start("b1");
    let dir = TempDir::new("adminrt");
    let sock = dir.join("admin.sock");
    let api_port = free_port();
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .admin_socket(&sock)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::to("main"))
            .listener("api", &[&format!("127.0.0.1:{api_port}")])
            .route(Route::to("main"))
            .upstream("main", [Srv::of(&be)])
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
        _be: be,
        api_port,
    }
}

/// Sends a GET on a new connection and waits up to `wait` for the start
/// of an answer: `Some(status line)`, or `None` if nothing came.
fn try_answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).ok()?;
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .map(str::to_owned),
        _ => None,
    }
}

#[test]
fn disable_frontend_queues_connections_until_enabled() {
    let s = start();
    let port = s.lb.port();
    assert_eq!(http_get(port, "/").status, 200);
    assert_eq!(admin_cmd(&s.sock, "disable frontend web"), "\n");
    assert_eq!(stat_field(&s.sock, "web", "FRONTEND", "status"), "PAUSED");
    assert_eq!(stat_field(&s.sock, "api", "FRONTEND", "status"), "OPEN");
    // The connection is made (the kernel queues it) but nobody serves it.
    let mut waiting = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    waiting
        .write_all(b"GET /queued HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(
        try_answer(&mut waiting, Duration::from_millis(800)),
        None,
        "a disabled frontend must not answer\n{}",
        s.lb.diagnostics()
    );
    // The other listener serves on.
    assert_eq!(http_get(s.api_port, "/").status, 200);
    assert_eq!(
        admin_cmd(&s.sock, "disable frontend web"),
        "All sockets are already disabled.\n\n"
    );
    // Enabled again: the queued request is served.
    assert_eq!(admin_cmd(&s.sock, "enable frontend web"), "\n");
    let line = try_answer(&mut waiting, Duration::from_secs(5));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.starts_with("HTTP/1.1 200 ")),
        "{line:?}"
    );
    assert_eq!(stat_field(&s.sock, "web", "FRONTEND", "status"), "OPEN");
    assert_eq!(
        admin_cmd(&s.sock, "enable frontend web"),
        "All sockets are already enabled.\n\n"
    );
    assert_eq!(http_get(port, "/").status, 200);
}

#[test]
fn frontend_errors_are_haproxys_and_the_pause_survives_a_reload() {
    let s = start();
    assert_eq!(
        admin_cmd(&s.sock, "disable frontend nope"),
        "No such frontend.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "enable frontend main"),
        "No such frontend.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "disable frontend"),
        "A frontend name is expected.\n\n"
    );
    assert_eq!(admin_cmd(&s.sock, "disable frontend api"), "\n");
    assert_eq!(admin_cmd(&s.sock, "reload"), "Success=1\n\n");
    assert_eq!(stat_field(&s.sock, "api", "FRONTEND", "status"), "PAUSED");
    let mut waiting = TcpStream::connect(("127.0.0.1", s.api_port)).expect("connect");
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(
        try_answer(&mut waiting, Duration::from_millis(800)),
        None,
        "the new generation's workers must keep the listener paused\n{}",
        s.lb.diagnostics()
    );
    assert_eq!(http_get(s.lb.port(), "/").status, 200);
    assert_eq!(admin_cmd(&s.sock, "enable frontend api"), "\n");
    let line = try_answer(&mut waiting, Duration::from_secs(5));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.starts_with("HTTP/1.1 200 ")),
        "{line:?}"
    );
}

// ---------------------------------------------------------------------------
// set server B/S health, enable|disable health B/S

/// Which backends answered `n` requests.
fn spread(port: u16, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        match http_get(port, "/").body_str().as_str() {
            "a" => a += 1,
            "b" => b += 1,
            other => panic!("unexpected body {other:?}"),
        }
    }
    (a, b)
}

fn start_two(health: Option<&str>) -> (Forklb, TempDir, PathBuf, Backend, Backend) {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = TempDir::new("adminhealth");
    let sock = dir.join("admin.sock");
    let mut cfg = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .upstream("main", [Srv::new("a", a.addr()), Srv::new("b", b.addr())]);
    if let Some(h) = health {
        cfg = cfg.upstream_opt(h);
    }
    let lb = Forklb::start(&cfg.build());
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    (lb, dir, sock, a, b)
}

#[test]
fn set_server_health_forces_the_state_of_an_unchecked_server() {
    let (lb, _dir, sock, _a, _b) = start_two(None);
    let port = lb.port();
    assert_eq!(stat_field(&sock, "main", "b", "status"), "no check");
    assert_eq!(admin_cmd(&sock, "set server main/b health down"), "\n");
    assert_eq!(stat_field(&sock, "main", "b", "status"), "DOWN");
    assert_eq!(spread(port, 8), (8, 0), "a DOWN server takes no requests");
    assert_eq!(admin_cmd(&sock, "set server main/b health stopping"), "\n");
    assert_eq!(stat_field(&sock, "main", "b", "status"), "NOLB");
    assert_eq!(
        spread(port, 8),
        (8, 0),
        "a stopping server takes no new requests"
    );
    assert_eq!(admin_cmd(&sock, "set server main/b health up"), "\n");
    assert_eq!(stat_field(&sock, "main", "b", "status"), "no check");
    let (a, b) = spread(port, 8);
    assert!(a > 0 && b > 0, "both serve again: {a}/{b}");
    for (cmd, answer) in [
        (
            "set server main/b health sideways",
            "'set server <srv> health' expects 'up', 'stopping', or 'down'.\n\n",
        ),
        (
            "set server main/b health",
            "'set server <srv> health' expects 'up', 'stopping', or 'down'.\n\n",
        ),
        ("set server main/zz health up", "No such server.\n\n"),
        ("set server nope/b health up", "No such backend.\n\n"),
        (
            "enable health main/b",
            "Health check was not configured on this server, cannot enable.\n\n",
        ),
        ("disable health main", "Require 'backend/server'.\n\n"),
        ("disable health main/zz", "No such server.\n\n"),
    ] {
        assert_eq!(admin_cmd(&sock, cmd), answer, "{cmd}");
    }
}

/// Leaving maint starts a server UP again, as HAProxy does: an unchecked
/// one whatever health was forced on it, a checked one at `rise` (UP, and
/// DOWN again at its first failed check).
#[test]
fn leaving_maint_brings_a_server_forced_down_back_up() {
    let (lb, _dir, sock, _a, _b) = start_two(None);
    for cmd in [
        "set server main/b state maint",
        "set server main/b health down",
        "set server main/b state ready",
    ] {
        assert_eq!(admin_cmd(&sock, cmd), "\n", "{cmd}");
    }
    assert_eq!(stat_field(&sock, "main", "b", "status"), "no check");
    let (a, b) = spread(lb.port(), 8);
    assert!(a > 0 && b > 0, "both serve again: {a}/{b}");
    // Drain is not maint: a forced DOWN stays.
    for cmd in [
        "set server main/b health down",
        "set server main/b state drain",
    ] {
        assert_eq!(admin_cmd(&sock, cmd), "\n", "{cmd}");
    }
    assert_eq!(stat_field(&sock, "main", "b", "status"), "DOWN");
    drop(lb);

    // Checked, with checks too far apart to run during the test.
    let (lb, _dir, sock, _a, _b) = start_two(Some(
        "health: {type: tcp, interval: 60s, timeout: 1s, rise: 2, fall: 2}",
    ));
    assert_eq!(stat_field(&sock, "main", "b", "status"), "UP");
    for cmd in [
        "disable server main/b",
        "set server main/b health down",
        "enable server main/b",
    ] {
        assert_eq!(admin_cmd(&sock, cmd), "\n", "{cmd}");
    }
    assert_eq!(stat_field(&sock, "main", "b", "status"), "UP 1/2");
    let (a, b) = spread(lb.port(), 8);
    assert!(a > 0 && b > 0, "both serve again: {a}/{b}");
}

#[test]
fn disable_health_stops_checks_and_enable_resumes_them() {
    let (lb, _dir, sock, _a, mut b) = start_two(Some(
        "health: {type: tcp, interval: 100ms, timeout: 300ms, rise: 1, fall: 1}",
    ));
    assert!(
        wait_until(Duration::from_secs(5), || stat_field(
            &sock, "main", "b", "status"
        ) == "UP"),
        "{}",
        lb.diagnostics()
    );
    assert_eq!(admin_cmd(&sock, "disable health main/b"), "\n");
    assert_eq!(stat_field(&sock, "main", "b", "status"), "no check");
    // The server dies, but nobody checks: it stays "no check" (up).
    b.stop();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(stat_field(&sock, "main", "b", "status"), "no check");
    // Forced down while unchecked: DOWN, and it stays so.
    assert_eq!(admin_cmd(&sock, "set server main/b health down"), "\n");
    assert_eq!(stat_field(&sock, "main", "b", "status"), "DOWN");
    assert_eq!(spread(lb.port(), 6), (6, 0));
    // Checks again: the dead server stays DOWN; restarted, it comes UP.
    assert_eq!(admin_cmd(&sock, "enable health main/b"), "\n");
    std::thread::sleep(Duration::from_millis(400));
    assert!(stat_field(&sock, "main", "b", "status").starts_with("DOWN"));
    b.restart();
    assert!(
        wait_until(Duration::from_secs(5), || stat_field(
            &sock, "main", "b", "status"
        ) == "UP"),
        "checks must resume after enable health: {}",
        stat_field(&sock, "main", "b", "status")
    );
    // A forced state on a checked server lasts until the next check.
    assert_eq!(admin_cmd(&sock, "set server main/b health down"), "\n");
    assert!(
        wait_until(Duration::from_secs(5), || stat_field(
            &sock, "main", "b", "status"
        ) == "UP"),
        "the next passing check brings it back"
    );
}

// ---------------------------------------------------------------------------
// show servers state: ids and check columns

/// Server `srv`'s line of `show servers state`, split on spaces.
fn state_line(sock: &std::path::Path, srv: &str) -> Vec<String> {
    let text = admin_cmd(sock, "show servers state");
    let line = text
        .lines()
        .find(|l| l.split(' ').nth(3) == Some(srv))
        .unwrap_or_else(|| panic!("no line for {srv}:\n{text}"));
    line.split(' ').map(str::to_owned).collect()
}

/// (op_state, check status, check result, check health, check state):
/// columns 6 and 11-14, as HAProxy 2.6 fills them.
fn columns(f: &[String]) -> (String, String, String, String, String) {
    (
        f[5].clone(),
        f[10].clone(),
        f[11].clone(),
        f[12].clone(),
        f[13].clone(),
    )
}

fn cols(
    op: &str,
    status: &str,
    result: &str,
    health: &str,
    state: &str,
) -> (String, String, String, String, String) {
    (
        op.into(),
        status.into(),
        result.into(),
        health.into(),
        state.into(),
    )
}

#[test]
fn servers_state_ids_and_check_columns_are_haproxy_s() {
    let (_lb, _dir, sock, _a, _b) = start_two(None);
    // Proxy ids as HAProxy numbers them (1 is its CLI's): the frontend 2,
    // the backend 3, in show stat and show servers state alike.
    assert_eq!(stat_field(&sock, "web", "FRONTEND", "iid"), "2");
    assert_eq!(stat_field(&sock, "main", "BACKEND", "iid"), "3");
    assert_eq!(stat_field(&sock, "main", "b", "iid"), "3");
    let f = state_line(&sock, "b");
    assert_eq!((f[0].as_str(), f[1].as_str()), ("3", "main"), "{f:?}");
    assert_eq!(admin_cmd(&sock, "show stat 3 -1 -1").lines().count(), 5);
    // Unchecked: INI, unknown, HAProxy's default rise, no check state.
    assert_eq!(columns(&f), cols("2", "1", "0", "2", "0"));
    assert_eq!(admin_cmd(&sock, "set server main/b health down"), "\n");
    assert_eq!(
        columns(&state_line(&sock, "b")),
        cols("0", "1", "0", "0", "0")
    );
    assert_eq!(admin_cmd(&sock, "set server main/b health stopping"), "\n");
    assert_eq!(
        columns(&state_line(&sock, "b")),
        cols("3", "1", "0", "4", "0")
    );

    let (lb, _dir, sock, _a, mut b) = start_two(Some(
        "health: {type: tcp, interval: 100ms, timeout: 300ms, rise: 2, fall: 2}",
    ));
    let passed = || columns(&state_line(&sock, "b")) == cols("2", "6", "3", "3", "6");
    assert!(
        wait_until(Duration::from_secs(5), passed),
        "L4OK, passed, full health, configured and enabled: {:?}\n{}",
        state_line(&sock, "b"),
        lb.diagnostics()
    );
    // Maintenance: stopped, the counter at 0 and the checks paused.
    assert_eq!(admin_cmd(&sock, "disable server main/b"), "\n");
    let f = state_line(&sock, "b");
    assert_eq!(
        (f[5].as_str(), f[12].as_str(), f[13].as_str()),
        ("0", "0", "14"),
        "{f:?}"
    );
    assert_eq!(admin_cmd(&sock, "enable server main/b"), "\n");
    // A dead server: L4CON, failed, DOWN.
    b.stop();
    let failed = || {
        let c = columns(&state_line(&sock, "b"));
        (c.0.as_str(), c.1.as_str(), c.2.as_str(), c.3.as_str()) == ("0", "8", "2", "0")
    };
    assert!(
        wait_until(Duration::from_secs(5), failed),
        "{:?}",
        state_line(&sock, "b")
    );
    // Checks disabled: configured, not enabled.
    assert_eq!(admin_cmd(&sock, "disable health main/b"), "\n");
    assert_eq!(state_line(&sock, "b")[13], "2");
}

/// chkdown counts every transition to DOWN (a forced one too), downtime
/// includes the DOWN period still running, and a server without running
/// checks shows neither (empty), as HAProxy 2.6.
#[test]
fn chkdown_and_downtime_count_as_haproxy_s() {
    let (_lb, _dir, sock, _a, _b) = start_two(None);
    for f in ["chkfail", "chkdown", "downtime"] {
        assert_eq!(stat_field(&sock, "main", "b", f), "", "{f}");
    }
    let (_lb, _dir, sock, _a, _b) = start_two(Some(
        "health: {type: tcp, interval: 60s, timeout: 1s, rise: 2, fall: 2}",
    ));
    assert_eq!(stat_field(&sock, "main", "b", "chkdown"), "0");
    for cmd in [
        "set server main/b health down",
        "set server main/b health up",
        "set server main/b health down",
    ] {
        assert_eq!(admin_cmd(&sock, cmd), "\n", "{cmd}");
    }
    assert_eq!(stat_field(&sock, "main", "b", "chkdown"), "2");
    std::thread::sleep(Duration::from_millis(2100));
    let downtime: u64 = stat_field(&sock, "main", "b", "downtime")
        .parse()
        .expect("downtime");
    assert!(downtime >= 2, "downtime {downtime} while DOWN for 2 s");
    assert_eq!(admin_cmd(&sock, "disable health main/b"), "\n");
    assert_eq!(stat_field(&sock, "main", "b", "chkdown"), "");
}

/// `#ID` names a backend (its iid) or a server (its sid), as in HAProxy.
#[test]
fn backends_and_servers_can_be_named_by_id() {
    let (_lb, _dir, sock, _a, _b) = start_two(None);
    assert_eq!(admin_cmd(&sock, "set weight #3/#2 7"), "\n");
    assert_eq!(admin_cmd(&sock, "get weight main/b"), "7 (initial 1)\n\n");
    assert_eq!(admin_cmd(&sock, "get weight #3/b"), "7 (initial 1)\n\n");
    assert_eq!(admin_cmd(&sock, "get weight main/#1"), "1 (initial 1)\n\n");
    assert_eq!(admin_cmd(&sock, "disable server #3/#2"), "\n");
    assert_eq!(stat_field(&sock, "main", "b", "status"), "MAINT");
    // 2 is the listener's id: no backend.
    assert_eq!(admin_cmd(&sock, "get weight #2/#1"), "No such backend.\n\n");
    assert_eq!(admin_cmd(&sock, "get weight #9/#1"), "No such backend.\n\n");
    assert_eq!(admin_cmd(&sock, "get weight #3/#9"), "No such server.\n\n");
    assert_eq!(admin_cmd(&sock, "get weight #x/#1"), "No such backend.\n\n");
}

/// `show stat up` hides stopped servers, but not a DOWN one whose checks
/// have begun to pass (`DOWN 1/3`), as HAProxy's.
#[test]
fn show_stat_up_keeps_a_server_coming_back() {
    let (lb, _dir, sock, _a, mut b) = start_two(Some(
        "health: {type: tcp, interval: 300ms, timeout: 300ms, rise: 3, fall: 1}",
    ));
    let status_in_up = || -> Option<String> {
        let text = admin_cmd(&sock, "show stat -1 4 -1 up");
        let header: Vec<String> = text
            .lines()
            .next()?
            .trim_start_matches("# ")
            .split(',')
            .map(str::to_owned)
            .collect();
        let col = header.iter().position(|h| h == "status")?;
        text.lines()
            .find(|l| l.starts_with("main,b,"))
            .and_then(|l| l.split(',').nth(col).map(str::to_owned))
    };
    assert!(
        wait_until(Duration::from_secs(5), || status_in_up().as_deref()
            == Some("UP")),
        "{}",
        lb.diagnostics()
    );
    b.stop();
    assert!(
        wait_until(Duration::from_secs(5), || stat_field(
            &sock, "main", "b", "status"
        ) == "DOWN"),
        "{}",
        stat_field(&sock, "main", "b", "status")
    );
    assert_eq!(status_in_up(), None, "a DOWN server is hidden");
    b.restart();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < deadline {
        match status_in_up() {
            Some(s) if s == "UP" => break,
            Some(s) => seen.push(s),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    assert!(
        seen.iter()
            .any(|s| s.starts_with("DOWN 1/3") || s.starts_with("DOWN 2/3")),
        "a server coming back was hidden by `up`: {seen:?}"
    );
}

/// A HUP reload whose file moves the runtime API socket moves it (HAProxy
/// re-creates its stats socket at a reload): the new path answers, the
/// old one is gone; a file without `admin` closes it.
#[test]
fn a_reload_moves_the_admin_socket() {
    let be = Backend::start("b1");
    let dir = TempDir::new("adminmove");
    let (first, second) = (dir.join("a.sock"), dir.join("b.sock"));
    let config = |sock: Option<&std::path::Path>| {
        let mut b = ConfigBuilder::new().workers(1);
        if let Some(sock) = sock {
            b = b.admin_socket(sock);
        }
        b.listener("web", &["127.0.0.1:$PORT"])
            .route(Route::to("main"))
            .upstream("main", [Srv::of(&be)])
            .build()
    };
    let lb = Forklb::start(&config(Some(&first)));
    assert!(wait_until(Duration::from_secs(5), || first.exists()));
    lb.write_config(&config(Some(&second)));
    lb.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || second.exists()),
        "the admin socket did not move\n{}",
        lb.diagnostics()
    );
    assert!(admin_cmd(&second, "show info").contains("Name: forklb"));
    assert!(!first.exists(), "the old socket is still there");
    lb.write_config(&config(None));
    lb.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || !second.exists()),
        "the admin socket was not closed\n{}",
        lb.diagnostics()
    );
}
