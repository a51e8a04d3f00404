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

fn frontend_status(sock: &std::path::Path, name: &str) -> String {
    let csv = admin_cmd(sock, "show stat -1 1 -1");
    csv.lines()
        .find(|l| l.starts_with(&format!("{name},FRONTEND,")))
        .and_then(|l| l.split(',').nth(17))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no {name} row:\n{csv}"))
}

#[test]
fn disable_frontend_queues_connections_until_enabled() {
    let s = start();
    let port = s.lb.port();
    assert_eq!(http_get(port, "/").status, 200);
    assert_eq!(admin_cmd(&s.sock, "disable frontend web"), "\n");
    assert_eq!(frontend_status(&s.sock, "web"), "PAUSED");
    assert_eq!(frontend_status(&s.sock, "api"), "OPEN");
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
    assert_eq!(frontend_status(&s.sock, "web"), "OPEN");
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
    assert_eq!(frontend_status(&s.sock, "api"), "PAUSED");
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
