//! What a BACKEND row (and its servers' rows) says about requests and
//! server states, as HAProxy 2.6 says it — each case checked side by side
//! with a live HAProxy on the same backends: retries are redispatches
//! counted on the server left, and the BACKEND row counts requests, not
//! attempts. Read over the admin socket and from `metrics: haproxy`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

fn num(sock: &Path, px: &str, sv: &str, field: &str) -> i64 {
    let v = stat_field(sock, px, sv, field);
    v.parse()
        .unwrap_or_else(|_| panic!("{px}/{sv} {field} is {v:?}, not a number"))
}

/// forklb with an admin socket, started on `config` (its listener `web`
/// answers `metrics: haproxy` on `/metrics`); waits for the socket.
fn start(dir: &TempDir, config: ConfigBuilder) -> (Forklb, PathBuf) {
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(&config.admin_socket(&sock).build());
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "{}",
        lb.diagnostics()
    );
    (lb, sock)
}

/// Two workers, both metrics pages, and upstream `rt` balanced `first`
/// over `d1` (a closed port) then `ok`: every request tries d1 first.
fn refused_then_ok(ok: &Backend) -> ConfigBuilder {
    ConfigBuilder::new()
        .workers(2)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/metrics").metrics_haproxy())
        .route(Route::path("/forklb-metrics").metrics())
        .route(Route::to("rt"))
        .upstream(
            "rt",
            [Srv::new("d1", refused_addr()), Srv::new("ok", ok.addr())],
        )
        .upstream_opt("balance: first")
}

/// The sample of `family` whose labels contain `labels`, from `metrics:
/// haproxy` on `/metrics`.
fn metric(port: u16, family: &str, labels: &str) -> String {
    let body = http_get(port, "/metrics").body_str();
    body.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no {family}{{{labels}}} in:\n{body}"))
        .to_owned()
}

/// A request whose first server refuses the connection goes on to the
/// next one. HAProxy 2.6 (`retries 1`, `option redispatch 1`, the same
/// backends) counts that as a redispatch of the server left (its
/// `wredis`; `wretr` stays 0, and so does `econ`, which counts only the
/// failures that end a request), and its BACKEND row counts each request
/// once — `stot` and `req_tot` 10 for 10 requests, though the servers'
/// `stot` add up to 20 attempts; `lbtot` counts every server selection,
/// the redispatch's too, on the BACKEND row as on the servers'.
#[test]
fn a_retry_is_a_redispatch_of_the_server_left_and_one_backend_request() {
    let ok = Backend::start("ok");
    let dir = TempDir::new("backendrows-redispatch");
    let (lb, sock) = start(&dir, refused_then_ok(&ok).upstream_opt("max_fails: 0"));
    let port = lb.port();
    for _ in 0..10 {
        assert_eq!(http_get(port, "/").status, 200, "{}", lb.diagnostics());
    }
    for (sv, field, want) in [
        ("FRONTEND", "req_tot", 10),
        ("BACKEND", "stot", 10),
        ("BACKEND", "req_tot", 10),
        ("BACKEND", "wredis", 10),
        ("BACKEND", "wretr", 0),
        ("BACKEND", "lbtot", 20),
        ("BACKEND", "hrsp_2xx", 10),
        ("BACKEND", "econ", 0),
        ("d1", "stot", 10),
        ("d1", "wredis", 10),
        ("d1", "econ", 0),
        ("d1", "wretr", 0),
        ("d1", "lbtot", 10),
        ("ok", "stot", 10),
        ("ok", "wredis", 0),
        ("ok", "wretr", 0),
        ("ok", "lbtot", 10),
    ] {
        let px = if sv == "FRONTEND" { "web" } else { "rt" };
        assert_eq!(num(&sock, px, sv, field), want, "{px}/{sv} {field}");
    }
    for (family, labels, want) in [
        ("haproxy_backend_http_requests_total", "proxy=\"rt\"", "10"),
        ("haproxy_backend_sessions_total", "proxy=\"rt\"", "10"),
        (
            "haproxy_backend_redispatch_warnings_total",
            "proxy=\"rt\"",
            "10",
        ),
        ("haproxy_backend_retry_warnings_total", "proxy=\"rt\"", "0"),
        (
            "haproxy_server_redispatch_warnings_total",
            "server=\"d1\"",
            "10",
        ),
        ("haproxy_server_retry_warnings_total", "server=\"ok\"", "0"),
    ] {
        assert_eq!(metric(port, family, labels), want, "{family}{{{labels}}}");
    }
    // forklb's own counter has every failed connection attempt.
    let own = http_get(port, "/forklb-metrics").body_str();
    assert!(
        own.lines()
            .any(|l| l == "forklb_server_connect_errors_total{upstream=\"rt\",server=\"d1\"} 10"),
        "{own}"
    );
    // `clear counters all` starts the BACKEND row's requests over too.
    assert_eq!(admin_cmd(&sock, "clear counters all").trim(), "");
    assert_eq!(http_get(port, "/").status, 200);
    assert_eq!(num(&sock, "rt", "BACKEND", "stot"), 1);
    assert_eq!(num(&sock, "rt", "BACKEND", "wredis"), 1);
    // No server to go on to: the failure ends the request, which is d1's
    // econ (HAProxy: d1, then d2 refusing, is econ on d2 alone).
    assert_eq!(admin_cmd(&sock, "set server rt/ok state maint").trim(), "");
    assert_eq!(http_get(port, "/").status, 502);
    for (sv, field, want) in [
        ("d1", "econ", 1),
        ("d1", "wredis", 1),
        ("BACKEND", "econ", 1),
        ("BACKEND", "stot", 2),
    ] {
        assert_eq!(num(&sock, "rt", sv, field), want, "rt/{sv} {field}");
    }
}

/// A request waiting in the queue for a server slot is the backend's:
/// with 6 requests at once on one server of `maxconn: 2`, HAProxy 2.6
/// says BACKEND `qcur=4 scur=6`, then `smax=6`, and its FRONTEND `smax`
/// is 6 (the most connections open at once, over every worker).
#[test]
fn queued_requests_count_in_the_backend_sessions_and_maxima() {
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_millis(1500),
            ..BackendOpts::default()
        },
    );
    let api = free_port();
    let dir = TempDir::new("backendrows-queue");
    let (lb, sock) = start(
        &dir,
        ConfigBuilder::new()
            .workers(2)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::to("one"))
            // Scrapes on a listener of their own: `web` sees the 6 alone.
            .listener("api", &[&format!("127.0.0.1:{api}")])
            .route(Route::path("/metrics").metrics_haproxy())
            .upstream("one", [Srv::new("s", slow.addr()).maxconn(2)]),
    );
    // (The harness's readiness probe may have left web's FRONTEND smax at 1.)
    assert_eq!(num(&sock, "one", "BACKEND", "smax"), 0);
    let port = lb.port();
    let clients: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || try_http_get(port, "/").map(|r| r.status)))
        .collect();
    let mut seen = Vec::new();
    let full = wait_until(Duration::from_secs(3), || {
        seen = stat_fields(&sock, "one", "BACKEND", &["qcur", "scur"]);
        seen == ["4", "6"]
    });
    assert!(full, "BACKEND qcur, scur: {seen:?}\n{}", lb.diagnostics());
    assert_eq!(
        metric(api, "haproxy_backend_current_sessions", "proxy=\"one\""),
        "6"
    );
    assert_eq!(num(&sock, "one", "s", "scur"), 2);
    for c in clients {
        // Served in turn, or (the last, after 3 s in the queue) 503.
        let status = c.join().expect("client thread").expect("an answer");
        assert!(status == 200 || status == 503, "{status}");
    }
    assert!(
        wait_until(Duration::from_secs(2), || num(
            &sock, "one", "BACKEND", "scur"
        ) == 0),
        "BACKEND scur did not fall back to 0"
    );
    for (px, sv, want) in [
        ("one", "BACKEND", 6),
        ("web", "FRONTEND", 6),
        ("one", "s", 2),
    ] {
        assert_eq!(num(&sock, px, sv, "smax"), want, "{px}/{sv} smax");
    }
    assert_eq!(
        metric(api, "haproxy_backend_max_sessions", "proxy=\"one\""),
        "6"
    );
    assert_eq!(
        metric(api, "haproxy_frontend_max_sessions", "proxy=\"web\""),
        "6"
    );
    // `clear counters` starts the maxima over from what is open now.
    assert_eq!(admin_cmd(&sock, "clear counters"), "\n");
    assert_eq!(num(&sock, "one", "BACKEND", "smax"), 0);
    assert_eq!(num(&sock, "web", "FRONTEND", "smax"), 0);
}

/// A server passive detection took out (`max_fails`) is DOWN while the
/// mark holds — `show stat`'s status, `show servers state`'s op state,
/// `forklb_server_up` 0, `haproxy_server_status{state="DOWN"}` 1 — as
/// HAProxy shows a server its `observe layer4 on-error mark-down` took
/// out, and is `no check` again once `fail_timeout` is over. Balancing
/// does not change: requests go to the other server meanwhile.
#[test]
fn a_passively_marked_server_reports_down_while_the_mark_holds() {
    let ok = Backend::start("ok");
    let dir = TempDir::new("backendrows-passive");
    let (lb, sock) = start(
        &dir,
        refused_then_ok(&ok)
            .upstream_opt("max_fails: 1")
            .upstream_opt("fail_timeout: 3s"),
    );
    let port = lb.port();
    assert_eq!(stat_field(&sock, "rt", "d1", "status"), "no check");
    // d1 refuses: marked down, the request goes on to ok.
    assert_eq!(http_get(port, "/").status, 200, "{}", lb.diagnostics());
    assert_eq!(stat_field(&sock, "rt", "d1", "status"), "DOWN");
    assert_eq!(num(&sock, "rt", "BACKEND", "act"), 1);
    let state = admin_cmd(&sock, "show servers state rt");
    let d1: Vec<&str> = state
        .lines()
        .find(|l| l.split(' ').nth(3) == Some("d1"))
        .unwrap_or_else(|| panic!("no d1 in:\n{state}"))
        .split(' ')
        .collect();
    assert_eq!(d1[5], "0", "srv_op_state of d1:\n{state}");
    let forklb = http_get(port, "/forklb-metrics").body_str();
    assert!(
        forklb
            .lines()
            .any(|l| l == "forklb_server_up{upstream=\"rt\",server=\"d1\"} 0"),
        "{forklb}"
    );
    for (state, want) in [("DOWN", "1"), ("UP", "0")] {
        let labels = format!("server=\"d1\",state=\"{state}\"");
        assert_eq!(
            metric(port, "haproxy_server_status", &labels),
            want,
            "{state}"
        );
    }
    // The next request skips d1, as before: its mark holds.
    assert_eq!(http_get(port, "/").body_str(), "ok");
    assert_eq!(num(&sock, "rt", "d1", "stot"), 1);
    assert!(
        wait_until(Duration::from_secs(6), || stat_field(
            &sock, "rt", "d1", "status"
        ) == "no check"),
        "d1 still {} after its fail_timeout",
        stat_field(&sock, "rt", "d1", "status")
    );
    assert_eq!(
        metric(port, "haproxy_server_status", "server=\"d1\",state=\"UP\""),
        "1"
    );
}

/// A backend is DOWN while none of its servers may take requests, and its
/// row keeps HAProxy's history of that: `chkdown` (UP→DOWN transitions),
/// `lastchg` (seconds since its last one) and `downtime` (seconds DOWN in
/// all, the current period included), also as `metrics: haproxy`'s
/// `haproxy_backend_check_up_down_total`,
/// `haproxy_backend_check_last_change_seconds` and
/// `haproxy_backend_downtime_seconds_total`. (HAProxy 2.6, servers
/// checked, both failing for 5 s, then one back: BACKEND chkdown=1 ...
/// downtime=5 while DOWN, then UP with downtime 5 kept and lastchg from
/// the transition.) Transitions by the checks and by an operator count.
#[test]
fn a_backend_keeps_its_transitions_last_change_and_downtime() {
    let (b1, sw1) = checked_backend("s1", 200);
    let (b2, sw2) = checked_backend("s2", 200);
    let dir = TempDir::new("backendrows-history");
    let (lb, sock) = start(
        &dir,
        ConfigBuilder::new()
            .workers(2)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::path("/metrics").metrics_haproxy())
            .route(Route::to("b"))
            .upstream("b", [Srv::new("s1", b1.addr()), Srv::new("s2", b2.addr())])
            .upstream_opt(
                "health: {type: http, path: /health, interval: 200ms, timeout: 500ms, rise: 1, fall: 1}",
            ),
    );
    let port = lb.port();
    let history = || {
        stat_fields(
            &sock,
            "b",
            "BACKEND",
            &["status", "chkdown", "lastchg", "downtime"],
        )
    };
    let h = history();
    assert_eq!(
        (h[0].as_str(), h[1].as_str(), h[3].as_str()),
        ("UP", "0", "0"),
        "{h:?}"
    );
    let since_start: i64 = h[2].parse().expect("lastchg");
    assert!((0..=5).contains(&since_start), "{h:?}");
    // One server DOWN: the backend is still UP.
    sw1.set(500);
    assert!(
        wait_until(Duration::from_secs(3), || stat_field(
            &sock, "b", "s1", "status"
        ) == "DOWN"),
        "s1 did not go DOWN\n{}",
        lb.diagnostics()
    );
    assert_eq!(history()[..2], ["UP", "0"]);
    // Both: DOWN, one transition.
    sw2.set(500);
    assert!(
        wait_until(Duration::from_secs(3), || history()[0] == "DOWN"),
        "the backend did not go DOWN: {:?}",
        history()
    );
    assert_eq!(history()[1], "1");
    std::thread::sleep(Duration::from_millis(2200));
    let h = history();
    let (lastchg, downtime): (i64, i64) = (h[2].parse().unwrap(), h[3].parse().unwrap());
    assert!(
        lastchg >= 2 && downtime >= 2 && downtime <= lastchg + 1,
        "{h:?}"
    );
    assert_eq!(
        metric(port, "haproxy_backend_check_up_down_total", "proxy=\"b\""),
        "1"
    );
    // One back: UP again, the downtime kept, lastchg from the transition.
    sw1.set(200);
    assert!(
        wait_until(Duration::from_secs(3), || history()[0] == "UP"),
        "the backend did not come back: {:?}",
        history()
    );
    let h = history();
    let (lastchg, kept): (i64, i64) = (h[2].parse().unwrap(), h[3].parse().unwrap());
    assert_eq!(h[1], "1");
    assert!(lastchg <= 1 && kept >= 2, "{h:?}");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(history()[3], kept.to_string(), "UP adds no downtime");
    let m = |f: &str| metric(port, f, "proxy=\"b\"");
    assert_eq!(
        m("haproxy_backend_downtime_seconds_total"),
        kept.to_string()
    );
    let age: i64 = m("haproxy_backend_check_last_change_seconds")
        .parse()
        .unwrap();
    assert!((1..=3).contains(&age), "last change {age}s ago");
    // An operator's change counts the same way.
    assert_eq!(admin_cmd(&sock, "set server b/s1 state maint").trim(), "");
    assert_eq!(history()[..2], ["DOWN", "2"]);
    assert_eq!(admin_cmd(&sock, "set server b/s1 state ready").trim(), "");
    assert_eq!(history()[..2], ["UP", "2"]);
    // `clear counters all` keeps them, as HAProxy keeps a backend's.
    assert_eq!(admin_cmd(&sock, "clear counters all").trim(), "");
    assert_eq!(history()[1], "2");
}
