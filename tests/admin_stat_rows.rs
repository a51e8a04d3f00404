//! `show stat` rows carry what HAProxy's do where forklb has the data
//! (issue 17 item 2): per-row rates and their maxima (`rate`, `req_rate`,
//! `conn_rate`), `lastsess`, the time averages and maxima (`qtime`,
//! `ctime`, `rtime`, `ttime`, `*_max`), and `hrsp_*` on FRONTEND rows —
//! counted by 2 workers, read over the admin socket and from `metrics:
//! haproxy`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::*;

/// The slow backend answers after this long.
const DELAY: Duration = Duration::from_millis(120);

struct Setup {
    lb: Forklb,
    _dir: TempDir,
    sock: PathBuf,
    _slow: Backend,
    _fast: Backend,
    _idle: Backend,
    api_port: u16,
}

fn start() -> Setup {
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            delay: DELAY,
            ..BackendOpts::default()
        },
    );
    let (fast, idle) = (Backend::start("fast"), Backend::start("idle"));
    let dir = TempDir::new("statrows");
    let sock = dir.join("admin.sock");
    let api_port = free_port();
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .admin_socket(&sock)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::path("/slow").upstream("slowpool"))
            .route(Route::to("main"))
            .listener("api", &[&format!("127.0.0.1:{api_port}")])
            .route(Route::path("/metrics").metrics_haproxy())
            .route(Route::to("main"))
            .upstream(
                "main",
                [Srv::new("fast", fast.addr()), Srv::new("idle", idle.addr())],
            )
            .upstream_opt("balance: first")
            .upstream("slowpool", [Srv::new("slow", slow.addr())])
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
        _slow: slow,
        _fast: fast,
        _idle: idle,
        api_port,
    }
}

fn num(sock: &std::path::Path, px: &str, sv: &str, field: &str) -> i64 {
    let v = stat_field(sock, px, sv, field);
    v.parse()
        .unwrap_or_else(|_| panic!("{px}/{sv} {field} is {v:?}, not a number"))
}

/// Requests on new connections for `for_how_long` (several per second).
fn load(port: u16, path: &str, for_how_long: Duration) -> usize {
    let end = Instant::now() + for_how_long;
    let mut n = 0;
    while Instant::now() < end {
        assert_eq!(http_get(port, path).status, 200);
        n += 1;
    }
    n
}

#[test]
fn rates_follow_the_load_per_row_and_keep_their_maxima() {
    let s = start();
    let port = s.lb.port();
    // Before any traffic: rates and maxima are 0, never empty.
    assert_eq!(num(&s.sock, "main", "fast", "rate"), 0);
    assert_eq!(num(&s.sock, "web", "FRONTEND", "rate_lim"), 0);
    // Two seconds of traffic span at least one full sample of the master.
    let n = load(port, "/", Duration::from_millis(2500));
    assert!(n >= 20, "only {n} requests");
    let rate = num(&s.sock, "main", "fast", "rate_max");
    assert!(
        rate >= 5,
        "fast rate_max {rate} after {n} requests in 2.5 s"
    );
    assert!(num(&s.sock, "main", "BACKEND", "rate_max") >= rate);
    for f in ["rate_max", "req_rate_max", "conn_rate_max"] {
        let v = num(&s.sock, "web", "FRONTEND", f);
        assert!(v >= 5, "web FRONTEND {f} is {v}");
    }
    // Nothing came through the other listener or to the idle server.
    assert_eq!(num(&s.sock, "api", "FRONTEND", "req_rate_max"), 0);
    assert_eq!(num(&s.sock, "main", "idle", "rate_max"), 0);
    // Idle again: the current rates fall to 0, the maxima stay.
    assert!(
        wait_until(Duration::from_secs(4), || num(
            &s.sock, "main", "fast", "rate"
        ) == 0
            && num(&s.sock, "web", "FRONTEND", "req_rate") == 0),
        "rates did not fall back to 0"
    );
    assert_eq!(num(&s.sock, "main", "fast", "rate_max"), rate);
    // `clear counters` starts the maxima over.
    assert_eq!(admin_cmd(&s.sock, "clear counters"), "\n");
    assert_eq!(num(&s.sock, "main", "fast", "rate_max"), 0);
    assert_eq!(num(&s.sock, "web", "FRONTEND", "req_rate_max"), 0);
    // Cleared right after traffic, then idle: the second before the clear
    // does not come back as a maximum at the master's next sample.
    let n = load(port, "/", Duration::from_millis(1200));
    assert!(n >= 10, "only {n} requests");
    assert_eq!(admin_cmd(&s.sock, "clear counters"), "\n");
    std::thread::sleep(Duration::from_millis(1500));
    for (px, sv, f) in [
        ("main", "fast", "rate_max"),
        ("main", "BACKEND", "rate_max"),
        ("web", "FRONTEND", "req_rate_max"),
        ("web", "FRONTEND", "conn_rate_max"),
        ("web", "FRONTEND", "rate_max"),
    ] {
        assert_eq!(num(&s.sock, px, sv, f), 0, "{px}/{sv} {f}");
    }
    let info = admin_cmd(&s.sock, "show info");
    for f in ["MaxConnRate: 0", "MaxSessRate: 0"] {
        assert!(info.lines().any(|l| l == f), "{f}\n{info}");
    }
}

#[test]
fn lastsess_and_times_describe_the_servers_requests() {
    let s = start();
    let port = s.lb.port();
    // Never used: -1, as HAProxy says.
    assert_eq!(num(&s.sock, "main", "idle", "lastsess"), -1);
    assert_eq!(num(&s.sock, "slowpool", "BACKEND", "lastsess"), -1);
    for _ in 0..6 {
        assert_eq!(http_get(port, "/slow").status, 200);
    }
    let age = num(&s.sock, "slowpool", "slow", "lastsess");
    assert!((0..=2).contains(&age), "lastsess {age}");
    // Read a moment later: a second may have passed in between.
    let backend_age = num(&s.sock, "slowpool", "BACKEND", "lastsess");
    assert!(
        backend_age == age || backend_age == age + 1,
        "BACKEND lastsess {backend_age}, server's {age}"
    );
    let ms = DELAY.as_millis() as i64;
    for px_sv in [("slowpool", "slow"), ("slowpool", "BACKEND")] {
        let (px, sv) = px_sv;
        let get = |f: &str| num(&s.sock, px, sv, f);
        assert_eq!(get("qtime"), 0, "{px}/{sv}");
        assert_eq!(get("qtime_max"), 0, "{px}/{sv}");
        let (c, r, t) = (get("ctime"), get("rtime"), get("ttime"));
        assert!(c < ms, "{px}/{sv} ctime {c}");
        assert!(r >= ms - 5 && r < ms + 400, "{px}/{sv} rtime {r}");
        assert!(t >= r, "{px}/{sv} ttime {t} < rtime {r}");
        assert!(get("rtime_max") >= r, "{px}/{sv} rtime_max");
        assert!(get("ttime_max") >= t, "{px}/{sv} ttime_max");
    }
    // The fast server's times are far below the slow one's.
    assert_eq!(http_get(port, "/fast").status, 200);
    assert!(num(&s.sock, "main", "fast", "rtime") < ms / 2);
    // `metrics: haproxy` reports them in seconds.
    let m = http_get(s.api_port, "/metrics");
    let body = String::from_utf8_lossy(&m.body).into_owned();
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("haproxy_server_response_time_average_seconds{")
                && l.contains("proxy=\"slowpool\"")
        })
        .unwrap_or_else(|| panic!("no response time of slowpool:\n{body}"));
    let secs: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(secs >= DELAY.as_secs_f64() - 0.005 && secs < 1.0, "{line}");
}

#[test]
fn frontend_rows_count_their_own_responses_by_class() {
    let s = start();
    let port = s.lb.port();
    for _ in 0..5 {
        assert_eq!(http_get(port, "/").status, 200);
    }
    // A request forklb refuses itself (a bad request line): a 400.
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    // Through the other listener: counted there only.
    assert_eq!(http_get(s.api_port, "/").status, 200);

    assert!(
        wait_until(Duration::from_secs(2), || num(
            &s.sock, "web", "FRONTEND", "hrsp_2xx"
        ) == 5),
        "web hrsp_2xx {}",
        num(&s.sock, "web", "FRONTEND", "hrsp_2xx")
    );
    assert_eq!(num(&s.sock, "web", "FRONTEND", "hrsp_4xx"), 1);
    assert_eq!(num(&s.sock, "web", "FRONTEND", "hrsp_5xx"), 0);
    assert_eq!(num(&s.sock, "api", "FRONTEND", "hrsp_2xx"), 1);
    // The backend saw only what it answered.
    assert_eq!(num(&s.sock, "main", "BACKEND", "hrsp_2xx"), 6);
    assert_eq!(num(&s.sock, "main", "BACKEND", "hrsp_4xx"), 0);
    // `metrics: haproxy` has them with the code label.
    let m = http_get(s.api_port, "/metrics");
    let body = String::from_utf8_lossy(&m.body).into_owned();
    assert!(
        body.lines()
            .any(|l| l == "haproxy_frontend_http_responses_total{proxy=\"web\",code=\"4xx\"} 1"),
        "{body}"
    );
}

#[test]
fn qtime_counts_the_wait_for_a_full_server() {
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            delay: DELAY,
            ..BackendOpts::default()
        },
    );
    let dir = TempDir::new("statq");
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .admin_socket(&sock)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::to("one"))
            .upstream("one", [Srv::new("slow", slow.addr()).maxconn(1)])
            .build(),
    );
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "{}",
        lb.diagnostics()
    );
    // Three at once on a server that takes one: the others wait their turn.
    let port = lb.port();
    let clients: Vec<_> = (0..3)
        .map(|i| std::thread::spawn(move || http_get(port, &format!("/q{i}")).status))
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client"), 200);
    }
    let ms = DELAY.as_millis() as i64;
    let qmax = num(&sock, "one", "slow", "qtime_max");
    assert!(qmax >= ms - 10, "qtime_max {qmax}");
    assert!(num(&sock, "one", "BACKEND", "qtime_max") >= qmax);
    let q = num(&sock, "one", "slow", "qtime");
    assert!(q > 0 && q <= qmax, "qtime {q}, max {qmax}");
}

/// A request no server can take (its only server in maintenance) is
/// answered 503 and, as in HAProxy 2.6, counted in the BACKEND row though
/// no server row has it: stot, req_tot, econ and hrsp_5xx (HAProxy with
/// `server s1 ... disabled` and 3 requests: BACKEND stot=3 econ=3
/// hrsp_5xx=3 req_tot=3, s1 all 0). `clear counters all` clears it.
#[test]
fn requests_no_server_could_take_count_in_the_backend_row() {
    let s = start();
    let port = s.lb.port();
    assert_eq!(
        admin_cmd(&s.sock, "set server slowpool/slow state maint").trim(),
        ""
    );
    for _ in 0..3 {
        assert_eq!(http_get(port, "/slow").status, 503);
    }
    for (field, want) in [("stot", 3), ("req_tot", 3), ("econ", 3), ("hrsp_5xx", 3)] {
        assert_eq!(num(&s.sock, "slowpool", "BACKEND", field), want, "{field}");
        assert_eq!(num(&s.sock, "slowpool", "slow", field), 0, "slow {field}");
    }
    assert_eq!(num(&s.sock, "slowpool", "BACKEND", "hrsp_2xx"), 0);
    assert_eq!(admin_cmd(&s.sock, "clear counters all").trim(), "");
    for field in ["stot", "req_tot", "econ", "hrsp_5xx"] {
        assert_eq!(num(&s.sock, "slowpool", "BACKEND", field), 0, "{field}");
    }
}

/// forklb's own 502s and 504s for requests a server was chosen for count
/// as HAProxy 2.6 counts them (checked against a live HAProxy with a server
/// that answers garbage, one that never answers, one that refuses): the
/// server row has the error (eresp for a bad or late response, econ for a
/// refused connection) and no response; the BACKEND row has the error, the
/// request and the 5xx. `clear counters all` clears them.
#[test]
fn forklb_s_own_502_and_504_count_in_the_backend_row() {
    let bad = scripted(
        "bad",
        vec![Script::new("/bad", b"garbage here\r\n\r\n", Then::Close)],
    );
    let late = Backend::start_with(
        "late",
        BackendOpts {
            delay: Duration::from_secs(5),
            ..BackendOpts::default()
        },
    );
    let refused: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let dir = TempDir::new("statrows-5xx");
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .admin_socket(&sock)
            .set("timeouts", "{upstream_read: 300ms}")
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::path("/bad").upstream("bad"))
            .route(Route::path("/late").upstream("late"))
            .route(Route::to("refused"))
            .upstream("bad", [Srv::new("s1", bad.addr())])
            .upstream("late", [Srv::new("s1", late.addr())])
            .upstream("refused", [Srv::new("s1", refused)])
            .build(),
    );
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "{}",
        lb.diagnostics()
    );
    for (path, status) in [("/bad", 502), ("/late", 504), ("/refused", 502)] {
        for _ in 0..2 {
            assert_eq!(http_get(lb.port(), path).status, status, "{path}");
        }
    }
    for (px, error) in [("bad", "eresp"), ("late", "eresp"), ("refused", "econ")] {
        for (sv, field, want) in [
            ("s1", error, 2),
            ("s1", "hrsp_5xx", 0),
            ("s1", "req_tot", 0),
            ("BACKEND", error, 2),
            ("BACKEND", "hrsp_5xx", 2),
            ("BACKEND", "req_tot", 2),
            ("BACKEND", "stot", 2),
        ] {
            assert_eq!(num(&sock, px, sv, field), want, "{px}/{sv} {field}");
        }
    }
    assert_eq!(admin_cmd(&sock, "clear counters all").trim(), "");
    for px in ["bad", "late", "refused"] {
        assert_eq!(num(&sock, px, "BACKEND", "hrsp_5xx"), 0, "{px}");
    }
}

/// Counters of features forklb does not have (compression, cache, rewrite
/// failures, ...) are 0 where HAProxy has them for the kind of row, as
/// HAProxy shows them unused; counters forklb does not keep stay empty.
#[test]
fn counters_of_absent_features_are_zero_not_empty() {
    let s = start();
    for (px, sv, f) in [
        ("web", "FRONTEND", "comp_in"),
        ("web", "FRONTEND", "wrew"),
        ("web", "FRONTEND", "dresp"),
        ("main", "BACKEND", "eint"),
        ("main", "BACKEND", "wredis"),
        ("main", "BACKEND", "cache_hits"),
        ("main", "fast", "wrew"),
        ("main", "fast", "eint"),
    ] {
        assert_eq!(stat_field(&s.sock, px, sv, f), "0", "{px}/{sv} {f}");
    }
    // HAProxy has no comp_in on a server row, nor cache_hits.
    assert_eq!(stat_field(&s.sock, "main", "fast", "comp_in"), "");
    assert_eq!(stat_field(&s.sock, "main", "fast", "cache_hits"), "");
}
