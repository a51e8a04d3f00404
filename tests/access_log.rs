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
    assert!(text.contains("\"- - HTTP/1.1\" 400 "), "{text}");
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
