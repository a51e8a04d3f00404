//! Active health checks (the `forklb-health` process: TCP and HTTP checks,
//! HAProxy's rise/fall semantics, transitions in the error log, results in
//! shared memory) and failover under continuous load.

mod support;

use std::time::{Duration, Instant};
use support::*;

/// `n` requests from 4 threads at once, new connection each; the bodies.
fn burst(port: u16, n: usize, tag: &'static str) -> Vec<String> {
    burst_bodies(port, &format!("/{tag}"), 4, n / 4)
}

/// Round robin over 2 servers in each of 2 workers: `name` has about half
/// of the 40 `bodies` (each worker's sequence alternates; ±1 per worker).
fn assert_shared(bodies: &[String], name: &str) {
    let n = count_of(bodies, &name.to_owned());
    assert!(
        (18..=22).contains(&n),
        "{name} should get half of {}: {n}: {bodies:?}",
        bodies.len()
    );
}

const HTTP_CHECK: &str =
    "health: {type: http, path: /health, interval: 300ms, timeout: 300ms, rise: 2, fall: 2}";
/// interval × fall + timeout (and the same for rise) of HTTP_CHECK.
const HTTP_CHECK_BOUND: Duration = Duration::from_millis(900);
/// Scheduling slack on a loaded CI machine.
const SLACK: Duration = Duration::from_secs(2);

#[test]
fn http_check_takes_a_failing_server_out_and_back_in() {
    let (b1, sw1) = checked_backend("b1", 200);
    let (b2, _sw2) = checked_backend("b2", 200);
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&b1), Srv::of(&b2)],
        &[HTTP_CHECK],
    ));
    lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();
    assert!(
        wait_until(Duration::from_secs(3), || b1.health_checks() >= 2
            && b2.health_checks() >= 2),
        "no health checks arrived: b1 {}, b2 {}",
        b1.health_checks(),
        b2.health_checks()
    );
    // Checks are not requests: the backend keeps them apart.
    assert_eq!(b1.request_count() + b2.request_count(), 0);
    let up = burst(port, 40, "up");
    assert_shared(&up, "b1");

    // /health now fails: DOWN after `fall` (2) failed checks.
    let checks_at_switch = b1.health_checks();
    let t0 = Instant::now();
    sw1.set(500);
    assert!(
        lb.wait_log("server web/b1 is DOWN", HTTP_CHECK_BOUND + SLACK + SLACK),
        "b1 not marked DOWN\n{}",
        lb.diagnostics()
    );
    let took = t0.elapsed();
    let failed_checks = b1.health_checks() - checks_at_switch;
    let lines = lb.log_lines("server web/b1 is DOWN");
    eprintln!("DOWN after {took:?} and {failed_checks} failed checks: {lines:?}");
    assert!(
        took <= HTTP_CHECK_BOUND + SLACK,
        "DOWN took {took:?}, more than interval × fall + timeout ({HTTP_CHECK_BOUND:?}) + {SLACK:?}"
    );
    assert!(
        failed_checks >= 2,
        "DOWN after {failed_checks} failed check(s); fall is 2"
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("[warn]")
            && lines[0]
                .contains("server web/b1 is DOWN, reason: HTTP status 500, check duration: "),
        "unexpected DOWN line: {}",
        lines[0]
    );
    // No request reaches b1 while it is DOWN.
    let before = b1.request_count();
    let down = burst(port, 40, "down");
    assert_eq!(count_of(&down, &"b2".to_owned()), 40, "{down:?}");
    assert_eq!(b1.request_count(), before, "b1 got requests while DOWN");

    // /health passes again: UP after `rise` (2) good checks.
    let checks_at_switch = b1.health_checks();
    let t1 = Instant::now();
    sw1.set(200);
    assert!(
        lb.wait_log("server web/b1 is UP", HTTP_CHECK_BOUND + SLACK + SLACK),
        "b1 not marked UP again\n{}",
        lb.diagnostics()
    );
    let took = t1.elapsed();
    let good_checks = b1.health_checks() - checks_at_switch;
    let lines = lb.log_lines("server web/b1 is UP");
    eprintln!("UP after {took:?} and {good_checks} good checks: {lines:?}");
    assert!(took <= HTTP_CHECK_BOUND + SLACK, "UP took {took:?}");
    assert!(
        good_checks >= 2,
        "UP after {good_checks} good check(s); rise is 2"
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("[warn]")
            && lines[0].contains("server web/b1 is UP, reason: HTTP status 200, check duration: "),
        "unexpected UP line: {}",
        lines[0]
    );
    let back = burst(port, 40, "back");
    assert_shared(&back, "b1");
    // b2 never changed state.
    assert!(lb.log_lines("server web/b2 is").is_empty());
}

#[test]
fn http_check_expect_status_and_timeout() {
    // 302 is outside expect_status "200-299"; a check that gets no answer
    // within `timeout` fails too.
    let (b1, _sw1) = checked_backend("b1", 302);
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            path_delays: vec![("/health".to_owned(), Duration::from_secs(3))],
            ..Default::default()
        },
    );
    let (b3, _sw3) = checked_backend("b3", 204);
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&b1), Srv::of(&slow), Srv::of(&b3)],
        &["health: {type: http, path: /health, interval: 200ms, timeout: 300ms, rise: 2, fall: 2, expect_status: \"200-299\"}"],
    ));
    assert!(
        lb.wait_log(
            "server web/b1 is DOWN, reason: HTTP status 302",
            Duration::from_secs(5)
        ),
        "b1 (302) not marked DOWN\n{}",
        lb.diagnostics()
    );
    assert!(
        lb.wait_log(
            "server web/slow is DOWN, reason: timeout after 300ms",
            Duration::from_secs(5)
        ),
        "slow not marked DOWN\n{}",
        lb.diagnostics()
    );
    let bodies = burst(lb.port(), 20, "x");
    assert_eq!(
        count_of(&bodies, &"b3".to_owned()),
        20,
        "only b3 (204) is UP: {bodies:?}"
    );
    assert!(lb.log_lines("server web/b3 is").is_empty());
}

#[test]
fn tcp_check_takes_a_stopped_server_out_and_back_in() {
    let mut b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&b1), Srv::of(&b2)],
        &["health: {type: tcp, interval: 200ms, timeout: 500ms, rise: 2, fall: 2}"],
    ));
    let port = lb.port();
    let up = burst(port, 40, "up");
    assert_shared(&up, "b1");

    let t0 = Instant::now();
    b1.stop();
    assert!(
        lb.wait_log(
            "server web/b1 is DOWN, reason: connection refused",
            Duration::from_secs(6)
        ),
        "b1 not marked DOWN\n{}",
        lb.diagnostics()
    );
    let took = t0.elapsed();
    eprintln!("TCP DOWN after {took:?}: {:?}", lb.log_lines("is DOWN"));
    assert!(
        took <= Duration::from_millis(900) + SLACK,
        "DOWN took {took:?}"
    );
    // Once DOWN, b1 is not even tried: no more connect() errors.
    let errors = lb.log_lines("connect() to").len();
    let down = burst(port, 40, "down");
    assert_eq!(count_of(&down, &"b2".to_owned()), 40, "{down:?}");
    assert_eq!(
        lb.log_lines("connect() to").len(),
        errors,
        "a DOWN server was tried: {:?}",
        lb.log_lines("connect() to")
    );

    b1.restart();
    assert!(
        lb.wait_log(
            "server web/b1 is UP, reason: connection established",
            Duration::from_secs(6)
        ),
        "b1 not marked UP again\n{}",
        lb.diagnostics()
    );
    let back = burst(port, 40, "back");
    assert_shared(&back, "b1");
}

#[test]
fn first_check_runs_at_start_up_and_servers_start_up() {
    // Default timings: interval 1s, timeout 1s, rise 2, fall 2. Servers
    // start UP at the bottom of the UP range, as HAProxy starts them: a
    // dead server falls at its first failed check, the one at start-up,
    // not after `fall` of them (a second check would come 1 s later).
    let b1 = Backend::start("b1");
    let dead = refused_addr();
    let t0 = Instant::now();
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&b1), Srv::new("dead", dead)],
        &["health: {type: tcp}"],
    ));
    let started = t0.elapsed();
    let checker = lb.health_pids();
    assert!(
        lb.wait_log("server web/dead is DOWN", Duration::from_secs(8)),
        "dead not marked DOWN\n{}",
        lb.diagnostics()
    );
    let took = t0.elapsed();
    eprintln!("dead server DOWN {took:?} after start (forklb was serving after {started:?})");
    assert!(
        took < started + Duration::from_millis(900),
        "DOWN {took:?} after start, forklb serving after {started:?}, checker {checker:?}: \
         not at the first check (servers start at rise, one failure takes them down)\n{}",
        lb.diagnostics()
    );
    assert!(lb.log_lines("server web/b1 is").is_empty());
    let bodies = burst(lb.port(), 20, "x");
    assert_eq!(count_of(&bodies, &"b1".to_owned()), 20);
}

#[test]
fn health_checker_process_exists_and_is_respawned() {
    let (b1, sw1) = checked_backend("b1", 200);
    let b2 = Backend::start("b2");
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&b1), Srv::of(&b2)],
        &["health: {type: http, path: /health, interval: 200ms, timeout: 500ms}"],
    ));
    lb.wait_workers(2, Duration::from_secs(5));
    let mut pids = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            pids = lb.health_pids();
            pids.len() == 1
        }),
        "expected one forklb-health child of the master: {:?}",
        lb.child_pids()
            .iter()
            .map(|&p| (p, comm(p)))
            .collect::<Vec<_>>()
    );
    let old = pids[0];
    assert_eq!(proc_stat(old).map(|s| s.ppid), Some(lb.master_pid()));

    // Let it live past the master's "died young" window, then kill it.
    std::thread::sleep(Duration::from_millis(2200));
    assert!(kill(old, SIGKILL));
    let mut new = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            new = lb.health_pids();
            new.len() == 1 && new[0] != old
        }),
        "the health checker was not respawned: {new:?}\n{}",
        lb.diagnostics()
    );
    eprintln!("health checker {old} killed, {} took over", new[0]);
    assert_eq!(lb.worker_pids().len(), 2, "workers are not affected");

    // The new checker checks: a failing /health is noticed.
    let checks = b1.health_checks();
    assert!(
        wait_until(Duration::from_secs(3), || b1.health_checks() >= checks + 2),
        "the new checker does not check"
    );
    sw1.set(503);
    assert!(
        lb.wait_log(
            "server web/b1 is DOWN, reason: HTTP status 503",
            Duration::from_secs(5)
        ),
        "b1 not marked DOWN by the new checker\n{}",
        lb.diagnostics()
    );
    let bodies = burst(lb.port(), 20, "x");
    assert_eq!(count_of(&bodies, &"b2".to_owned()), 20, "{bodies:?}");
}

#[test]
fn no_health_checker_without_health_checks() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&upstream_config(2, "roundrobin", &[Srv::of(&b1)], &[]));
    lb.wait_workers(2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    assert!(lb.health_pids().is_empty(), "{:?}", lb.health_pids());
}

#[test]
fn backend_killed_under_load_gives_no_client_errors_and_is_used_again() {
    let b1 = Backend::start("b1");
    // b2 takes 20 ms per request, so requests are in flight when it dies
    // (the idempotent GETs on pooled connections are replayed elsewhere).
    let mut b2 = Backend::start_with(
        "b2",
        BackendOpts {
            delay: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let b3 = Backend::start("b3");
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&b1), Srv::of(&b2), Srv::of(&b3)],
        &[
            "fail_timeout: 2s",
            "health: {type: tcp, interval: 200ms, timeout: 500ms, rise: 2, fall: 2}",
        ],
    ));
    lb.wait_workers(2, Duration::from_secs(5));
    let names = ["b1", "b2", "b3"];
    let load = Load::start_with(
        lb.port(),
        LoadOpts {
            check: std::sync::Arc::new(move |_p: &str, r: &Response| {
                if r.status == 200 && names.contains(&r.body_str().as_str()) {
                    Ok(())
                } else {
                    Err(format!("status {} body {:?}", r.status, r.body_str()))
                }
            }),
            max_duration: Duration::from_secs(40),
            ..Default::default()
        },
    );
    load.expect_progress(300, "before the kill");
    assert!(b2.request_count() > 50, "b2 serves before the kill");

    load.mark("b2 stopped");
    b2.stop();
    let stopped_at = b2.request_count();
    assert!(
        lb.wait_log("server web/b2 is DOWN", Duration::from_secs(6)),
        "b2 not marked DOWN\n{}",
        lb.diagnostics()
    );
    load.mark("b2 DOWN");
    load.expect_progress(500, "while b2 is down");

    load.mark("b2 restarted");
    b2.restart();
    assert!(
        lb.wait_log("server web/b2 is UP", Duration::from_secs(6)),
        "b2 not marked UP again\n{}",
        lb.diagnostics()
    );
    load.mark("b2 UP");
    assert!(
        wait_until(Duration::from_secs(5), || b2.request_count()
            >= stopped_at + 100),
        "b2 is not used again after it came back: {} requests",
        b2.request_count() - stopped_at
    );
    load.expect_progress(300, "after b2 is back");
    let report = load.stop();
    eprintln!(
        "b1 {}, b2 {} ({} after the restart), b3 {}; connect errors logged: {}",
        b1.request_count(),
        b2.request_count(),
        b2.request_count() - stopped_at,
        b3.request_count(),
        lb.log_lines("connect() to").len()
    );
    report.assert_no_failures("b2 killed and restarted", &lb.diagnostics());
}

#[test]
fn a_server_checked_up_again_loses_its_passive_mark() {
    let mut b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    // One refused connect marks a server for a minute; the check needs
    // three failures 300 ms apart, so live traffic finds b1 gone first.
    let lb = Forklb::start(&upstream_config(
        1,
        "roundrobin",
        &[Srv::of(&b1), Srv::of(&b2)],
        &[
            "max_fails: 1",
            "fail_timeout: 60s",
            "health: {type: tcp, interval: 300ms, timeout: 300ms, rise: 1, fall: 3}",
        ],
    ));
    let port = lb.port();
    b1.stop();
    assert!(
        wait_until(Duration::from_secs(5), || {
            // Retried on b2 (retries: 1), so every answer is 200.
            assert_eq!(http_get(port, "/").status, 200);
            !lb.log_lines("server web/b1 marked down for 60000ms")
                .is_empty()
        }),
        "b1 not passively marked\n{}",
        lb.diagnostics()
    );
    assert!(
        lb.wait_log("server web/b1 is DOWN", Duration::from_secs(6)),
        "b1 not checked DOWN\n{}",
        lb.diagnostics()
    );
    b1.restart();
    assert!(
        lb.wait_log("server web/b1 is UP", Duration::from_secs(6)),
        "b1 not checked UP again\n{}",
        lb.diagnostics()
    );
    // The check's word counts: b1 takes its share at once, not after the
    // 60 s of fail_timeout.
    let back = burst(port, 40, "back");
    let n = count_of(&back, &"b1".to_owned());
    assert!(
        (18..=22).contains(&n),
        "b1 should get half of the traffic once UP, got {n}: {back:?}\n{}",
        lb.diagnostics()
    );
}

#[test]
fn a_down_server_stays_down_across_a_reload() {
    let (b1, sw1) = checked_backend("b1", 200);
    let (b2, _sw2) = checked_backend("b2", 200);
    let cfg = upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&b1), Srv::of(&b2)],
        &[HTTP_CHECK],
    );
    let lb = Forklb::start(&cfg);
    let old = lb.wait_workers(2, Duration::from_secs(5));
    sw1.set(500);
    assert!(
        lb.wait_log("server web/b1 is DOWN", HTTP_CHECK_BOUND + SLACK + SLACK),
        "b1 not marked DOWN"
    );
    let old_checker = lb.health_pids();

    // Same configuration, new generation: health state carries over by name.
    lb.write_config(&cfg);
    lb.signal(SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let now = lb.worker_pids();
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        }),
        "the new generation did not replace the old workers\n{}",
        lb.diagnostics()
    );
    // The master starts the new generation's checker beside its workers
    // and stops the old one: wait for the swap rather than race it.
    let mut new_checker = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            new_checker = lb.health_pids();
            new_checker.len() == 1 && new_checker != old_checker
        }),
        "a new health checker should serve the new generation: {old_checker:?} -> {new_checker:?}"
    );
    let before = b1.request_count();
    let bodies = burst(lb.port(), 40, "after-reload");
    assert_eq!(count_of(&bodies, &"b2".to_owned()), 40, "{bodies:?}");
    assert_eq!(
        b1.request_count(),
        before,
        "b1 got requests right after the reload"
    );
    assert_eq!(lb.log_lines("server web/b1 is UP").len(), 0);
    // And it still comes back by checks.
    sw1.set(200);
    assert!(
        lb.wait_log("server web/b1 is UP", HTTP_CHECK_BOUND + SLACK + SLACK),
        "b1 not marked UP after the reload\n{}",
        lb.diagnostics()
    );
}

/// HTTP/1.1 checks of an HTTPS upstream go over TLS (HAProxy's check-ssl):
/// the server sees `GET /health`, and its status is judged.
#[test]
fn http_check_over_tls_reads_the_status() {
    let dir = TempDir::new("health-tls");
    let (ca, ca_path) = support::tls::TestCa::in_dir(dir.path());
    let b = support::tls::TlsBackend::start("s1", &ca.issue(&["localhost"]));
    // The backend answers 200; expecting 204 makes every check fail.
    let yaml = tls_upstream_config("localhost", &ca_path, b.addr())
        .upstream_opt(
            "health: {type: http, path: /health, interval: 200ms, timeout: 500ms, rise: 1, fall: 1, expect_status: \"204\"}",
        )
        .build();
    let lb = Forklb::start(&yaml);
    assert!(
        lb.wait_log("server web/s1 is DOWN", Duration::from_secs(5)),
        "s1 not marked DOWN\n{}",
        lb.diagnostics()
    );
    let lines = lb.log_lines("server web/s1 is DOWN");
    assert!(
        lines[0].contains("reason: HTTP status 200"),
        "unexpected DOWN line: {lines:?}"
    );
    let checks: Vec<_> = b
        .requests()
        .into_iter()
        .filter(|r| r.path == "/health")
        .collect();
    assert!(!checks.is_empty());
    assert_eq!(checks[0].method, "GET");
    assert_eq!(checks[0].sni.as_deref(), Some("localhost"));
    assert_eq!(checks[0].header("user-agent"), Some("forklb-health"));
}

/// A listener that takes connections and never answers (they are kept
/// open until the test ends); `close_at_once`: it closes each at once.
fn mute_listener(close_at_once: bool) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for s in l.incoming().flatten() {
            if !close_at_once {
                kept.push(s);
            }
        }
    });
    addr
}

/// A listener whose accept queue is full: connection attempts are never
/// answered (the SYN is dropped), as behind a firewall that drops. The
/// listener and the connection filling its queue live as long as the test.
fn blackhole() -> (
    std::net::SocketAddr,
    std::net::TcpListener,
    std::net::TcpStream,
) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket this function owns.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().expect("addr");
    let filler = std::net::TcpStream::connect(addr).expect("the first connection fits");
    (addr, l, filler)
}

/// `check_status` says where a check failed, in HAProxy's words: the port
/// refused (`L4CON`), nothing answered the connection (`L4TOUT`), connected
/// but no response in time (`L7TOUT`), closed or garbage instead of a
/// response (`L7RSP`), a status outside `expect_status` (`L7STS`); and
/// `show servers state` gives the same as HAProxy's numbers.
#[test]
fn check_status_says_where_a_check_failed() {
    let dir = TempDir::new("chkstatus");
    let sock = dir.path().join("admin.sock");
    let (err, _sw) = checked_backend("err", 500);
    let (hole, _l, _filler) = blackhole();
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let garbage_addr = garbage.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in garbage.incoming().flatten() {
            use std::io::{Read, Write};
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"hello there\r\n\r\n");
        }
    });
    let servers = [
        Srv::new("refused", refused_addr()),
        Srv::new("hole", hole),
        Srv::new("silent", mute_listener(false)),
        Srv::new("closer", mute_listener(true)),
        Srv::new("garbage", garbage_addr),
        Srv::of(&err),
    ];
    let lb = Forklb::start(
        &standard_config(1)
            .admin_socket(&sock)
            .upstream("web", servers)
            .upstream_opt(
                "health: {type: http, path: /health, interval: 300ms, timeout: 400ms, rise: 1, fall: 1}",
            )
            .build(),
    );
    let expected = [
        ("refused", "L4CON", "8"),
        ("hole", "L4TOUT", "7"),
        ("silent", "L7TOUT", "12"),
        ("closer", "L7RSP", "13"),
        ("garbage", "L7RSP", "13"),
        ("err", "L7STS", "17"),
    ];
    let all_checked = || {
        expected
            .iter()
            .all(|(s, _, _)| stat_field(&sock, "web", s, "status") == "DOWN")
    };
    assert!(
        wait_until(Duration::from_secs(8), all_checked),
        "not all DOWN:\n{}\n{}",
        admin_cmd(&sock, "show stat"),
        lb.diagnostics()
    );
    let state = admin_cmd(&sock, "show servers state web");
    for (server, word, number) in expected {
        assert_eq!(
            stat_field(&sock, "web", server, "check_status"),
            word,
            "{server}\n{}",
            lb.diagnostics()
        );
        // srv_check_status is the 11th column of `show servers state`.
        let row: Vec<&str> = state
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.get(3) == Some(&server))
            .unwrap_or_else(|| panic!("no {server} in\n{state}"));
        assert_eq!(row[10], number, "{server}: {state}");
    }
    assert_eq!(stat_field(&sock, "web", "err", "check_code"), "500");
    assert_eq!(
        stat_field(&sock, "web", "silent", "check_desc"),
        "Layer7 timeout"
    );
    assert_eq!(
        stat_field(&sock, "web", "closer", "check_desc"),
        "Layer7 invalid response"
    );
}
