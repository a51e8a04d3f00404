//! The access log: combined and JSON lines with upstream fields, flushed
//! within a second, re-opened on USR1 (logrotate), and a line for every
//! exchange the worker's `shutdown_timeout` cuts.

mod support;

use std::time::Duration;
use support::*;

fn config(backend: &Backend, log: &std::path::Path, format: &str) -> String {
    let mut y = proxy_config_for(1, &[backend]);
    y.push_str(&format!(
        "access_log: {{path: \"{}\", format: {format}}}\n",
        log.display()
    ));
    y
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn combined_lines_name_request_status_and_upstream() {
    let b = Backend::start("b1");
    let dir = TempDir::new("alog");
    let log = dir.join("access.log");
    let lb = Forklb::start(&config(&b, &log, "combined"));
    let mut c = Conn::open(lb.port()).unwrap();
    let r = c
        .request(
            "GET",
            "/p?q=1",
            &[("User-Agent", "tester/1"), ("Referer", "http://r/")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(c.get("/healthz").unwrap().status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || read(&log).lines().count() >= 2),
        "access log not flushed within 3 s: {:?}\n{}",
        read(&log),
        lb.diagnostics()
    );
    let text = read(&log);
    let lines: Vec<&str> = text.lines().collect();
    let proxied = lines[0];
    assert!(proxied.starts_with("127.0.0.1 - - ["), "{proxied}");
    assert!(
        proxied.contains("] \"GET /p?q=1 HTTP/1.1\" 200 2 \"http://r/\" \"tester/1\""),
        "{proxied}"
    );
    assert!(
        proxied.contains(&format!(
            "upstream={} upstream_status=200 request_time=",
            b.addr()
        )),
        "{proxied}"
    );
    let local = lines[1];
    assert!(
        local.contains("\"GET /healthz HTTP/1.1\" 200 3 \"-\" \"-\" upstream=- upstream_status=-"),
        "{local}"
    );
}

#[test]
fn json_lines_are_valid_objects() {
    let b = Backend::start("b1");
    let dir = TempDir::new("alog");
    let log = dir.join("access.json");
    let lb = Forklb::start(&config(&b, &log, "json"));
    let mut c = Conn::open(lb.port()).unwrap();
    let r = c
        .request("GET", "/q\"x", &[("User-Agent", "a\\b")], b"")
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || !read(&log).is_empty()),
        "access log not flushed\n{}",
        lb.diagnostics()
    );
    let line = read(&log);
    let line = line.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("{\"time\":\"") && line.ends_with('}'),
        "{line}"
    );
    assert!(line.contains("\"remote_addr\":\"127.0.0.1\""), "{line}");
    assert!(
        line.contains("\"method\":\"GET\",\"uri\":\"/q\\\"x\""),
        "{line}"
    );
    assert!(line.contains("\"user_agent\":\"a\\\\b\""), "{line}");
    assert!(
        line.contains("\"status\":200,\"body_bytes_sent\":2"),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "\"upstream_addr\":\"{}\",\"upstream_status\":200",
            b.addr()
        )),
        "{line}"
    );
}

#[test]
fn rejected_and_failed_requests_are_logged() {
    let dir = TempDir::new("alog");
    let log = dir.join("access.log");
    let mut y = proxy_config(1, &[("dead", refused_addr(), 1)], &["retries: 0"]);
    y.push_str(&format!("access_log: {{path: \"{}\"}}\n", log.display()));
    let lb = Forklb::start(&y);
    let mut c = Conn::open(lb.port()).unwrap();
    assert_eq!(c.get("/x").unwrap().status, 502);
    let mut bad = Conn::open(lb.port()).unwrap();
    bad.send(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(bad.read_response().unwrap().status, 400);
    assert!(
        wait_until(Duration::from_secs(3), || read(&log).lines().count() >= 2),
        "{:?}",
        read(&log)
    );
    let text = read(&log);
    assert!(text.contains("\"GET /x HTTP/1.1\" 502 "), "{text}");
    assert!(text.contains("upstream_status=-"), "{text}");
    assert!(text.contains("\"GET / HTTP/1.1\" 400 "), "{text}");
}

/// Heads that never become requests are logged as nginx logs them: a
/// malformed one by its raw request line (not `- - HTTP/1.1`), one that
/// timed out with 408, one whose client left mid-head with 400 and no
/// bytes; a connection that sent nothing gets no line.
#[test]
fn unfinished_and_malformed_heads_are_logged_by_their_request_line() {
    let b = Backend::start("b1");
    let dir = TempDir::new("alog");
    let log = dir.join("access.log");
    let mut y = config(&b, &log, "combined");
    y.push_str("timeouts: {client_header: 1s}\n");
    let lb = Forklb::start(&y);
    let send = |raw: &[u8]| {
        let mut c = Conn::open(lb.port()).unwrap();
        c.send(raw).unwrap();
        c
    };
    let mut bad = send(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(bad.read_response().unwrap().status, 400);
    let mut nine = send(b"GET /nine\r\n\r\n");
    assert_eq!(nine.read_response().unwrap().status, 400);
    let mut slow = send(b"GET /partial HTTP/1.1\r\nHost: h\r\n");
    assert_eq!(slow.read_response().unwrap().status, 408);
    drop(send(b"GET /left HTTP/1.1\r\nHost: h\r\n"));
    drop(send(b"G"));
    drop(Conn::open(lb.port()).unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || read(&log).lines().count() >= 5),
        "{:?}\n{}",
        read(&log),
        lb.diagnostics()
    );
    std::thread::sleep(Duration::from_millis(1200));
    let text = read(&log);
    for line in [
        "\"GET /a b HTTP/1.1\" 400 ",
        "\"GET /nine\" 400 ",
        "\"GET /partial HTTP/1.1\" 408 ",
        "\"GET /left HTTP/1.1\" 400 0 ",
        "\"G\" 400 0 ",
    ] {
        assert!(text.contains(line), "no {line} in {text}");
    }
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn usr1_reopens_the_access_log() {
    let b = Backend::start("b1");
    let dir = TempDir::new("alog");
    let log = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let lb = Forklb::start(&config(&b, &log, "combined"));
    assert_eq!(http_get(lb.port(), "/before").status, 200);
    assert!(wait_until(Duration::from_secs(3), || read(&log).contains("/before")));
    std::fs::rename(&log, &rotated).unwrap();
    lb.signal(libc::SIGUSR1);
    // The reopen is asynchronous: wait until the new file exists.
    assert!(
        wait_until(Duration::from_secs(3), || log.exists()),
        "access log not re-created after USR1\n{}",
        lb.diagnostics()
    );
    assert_eq!(http_get(lb.port(), "/after").status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || read(&log).contains("/after")),
        "new requests not in the re-opened log: {:?}",
        read(&log)
    );
    assert!(!read(&rotated).contains("/after"));
}

/// logrotate's `create 0640 root adm` then USR1, with workers as `nobody`:
/// the master gives the new file to the worker user and leaves its group,
/// as nginx does, so the `adm` readers keep reading it.
#[test]
fn a_reopen_gives_the_file_to_the_worker_user_and_keeps_its_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !running_as_root() {
        eprintln!("skipped: a worker user needs the tests to run as root");
        return;
    }
    let nobody = passwd_uid("nobody").expect("user nobody");
    const ADM: u32 = 4;
    let b = Backend::start("b1");
    let dir = TempDir::new("alog");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.join("access.log");
    let lb = Forklb::start(&format!("user: nobody\n{}", config(&b, &log, "combined")));
    assert_eq!(http_get(lb.port(), "/before").status, 200);
    assert!(wait_until(Duration::from_secs(3), || read(&log).contains("/before")));
    std::fs::rename(&log, dir.join("access.log.1")).unwrap();
    std::fs::write(&log, b"").unwrap();
    std::os::unix::fs::chown(&log, Some(0), Some(ADM)).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).unwrap();
    lb.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(3), || std::fs::metadata(&log)
            .is_ok_and(|m| m.uid() == nobody)),
        "the reopened log was not given to the worker user\n{}",
        lb.diagnostics()
    );
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.gid(), ADM, "the reopen changed the log's group");
    assert_eq!(http_get(lb.port(), "/after").status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || read(&log).contains("/after")),
        "the workers do not write the reopened log: {:?}\n{}",
        read(&log),
        lb.diagnostics()
    );
}

/// A client that resets its connection while its request waits for a slow
/// server: the request is given up at once and logged 499 (nginx), not
/// logged 200 when the server answers seconds later into a dead socket.
#[test]
fn a_client_reset_while_the_server_works_is_logged_499_at_once() {
    let b = Backend::start_with(
        "b1",
        BackendOpts {
            path_delays: vec![("/slow".to_owned(), Duration::from_secs(4))],
            ..Default::default()
        },
    );
    let dir = TempDir::new("alog");
    let log = dir.join("access.log");
    let lb = Forklb::start(&config(&b, &log, "combined"));
    let mut c = Conn::open(lb.port()).unwrap();
    c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert!(wait_until(Duration::from_secs(3), || b.request_count() == 1));
    c.reset();
    assert!(
        wait_until(Duration::from_secs(2), || read(&log)
            .contains("\"GET /slow HTTP/1.1\" 499 0 ")),
        "no 499 line within 2 s of the reset (the server answers after 4 s): {:?}\n{}",
        read(&log),
        lb.diagnostics()
    );
    assert!(lb.wait_log("reset the connection", Duration::from_secs(1)));
}

#[test]
fn exchanges_cut_at_shutdown_timeout_are_logged() {
    let switch: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let ws = Backend::start_with(
        "ws",
        BackendOpts {
            scripts: vec![Script::new("/ws/", switch, Then::Echo)],
            ..Default::default()
        },
    );
    // 64 KiB, then a pause of 10 s: a download under way at the cut.
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            stream_body: Some(1 << 20),
            stream_pace: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    // Answers nothing before the cut.
    let hang = Backend::start_with(
        "hang",
        BackendOpts {
            delay: Duration::from_secs(30),
            ..Default::default()
        },
    );
    let dir = TempDir::new("alog");
    let log = dir.join("access.log");
    let mut lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(1)
            .shutdown_timeout("1s")
            .access_log(&log, "combined")
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::path("/ws/").upstream("ws"))
            .route(Route::path("/slow/").upstream("slow"))
            .route(Route::to("hang"))
            .upstream("ws", [Srv::of(&ws)])
            .upstream("slow", [Srv::of(&slow)])
            .upstream("hang", [Srv::of(&hang)])
            .build(),
    );

    let mut tunnel = Conn::open(lb.port()).unwrap();
    tunnel.set_read_timeout(Duration::from_secs(3));
    tunnel
        .send(b"GET /ws/t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    assert_eq!(tunnel.read_next_head().unwrap().status, 101);
    tunnel.send(b"hello").unwrap();
    assert_eq!(tunnel.read_exact_bytes(5).unwrap(), b"hello");

    let mut download = Conn::open(lb.port()).unwrap();
    download.set_read_timeout(Duration::from_secs(3));
    download
        .send(b"GET /slow/d HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(download.read_next_head().unwrap().status, 200);
    download.read_exact_bytes(1000).unwrap();

    let mut waiting = Conn::open(lb.port()).unwrap();
    waiting
        .send(b"GET /hang/h HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || hang.request_count() == 1),
        "the request never reached its backend"
    );

    lb.signal(SIGQUIT);
    lb.expect_exit_0(
        Duration::from_secs(8),
        "master still running 8 s after QUIT with shutdown_timeout 1s",
    );
    let text = read(&log);
    // As nginx logs them at its worker_shutdown_timeout: the tunnel with
    // what it sent the client, the download with its status and the body
    // bytes sent so far, the request nobody answered with 000.
    assert!(
        text.contains("\"GET /ws/t HTTP/1.1\" 101 5 "),
        "tunnel: {text}\n{}",
        lb.diagnostics()
    );
    let line = text
        .lines()
        .find(|l| l.contains("\"GET /slow/d HTTP/1.1\" 200 "))
        .unwrap_or_else(|| panic!("download: {text}\n{}", lb.diagnostics()));
    let bytes: u64 = line
        .split("\" 200 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1000..1 << 20).contains(&bytes), "{line}");
    assert!(
        text.contains("\"GET /hang/h HTTP/1.1\" 000 0 "),
        "waiting: {text}\n{}",
        lb.diagnostics()
    );
}
