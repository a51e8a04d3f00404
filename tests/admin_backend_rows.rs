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
/// `wredis`; `wretr` stays 0), and its BACKEND row counts each request
/// once — `stot` and `req_tot` 10 for 10 requests, though the servers'
/// `stot` add up to 20 attempts; `lbtot` counts every server selection,
/// the redispatch's too, on the BACKEND row as on the servers'.
#[test]
fn a_retry_is_a_redispatch_of_the_server_left_and_one_backend_request() {
    let ok = Backend::start("ok");
    let dir = TempDir::new("backendrows-redispatch");
    let (lb, sock) = start(
        &dir,
        ConfigBuilder::new()
            .workers(2)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::path("/metrics").metrics_haproxy())
            .route(Route::to("rt"))
            // `first`: every request tries d1 first, then ok.
            .upstream(
                "rt",
                [Srv::new("d1", refused_addr()), Srv::new("ok", ok.addr())],
            )
            .upstream_opt("balance: first")
            .upstream_opt("max_fails: 0"),
    );
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
        ("d1", "stot", 10),
        ("d1", "wredis", 10),
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
    // `clear counters all` starts the BACKEND row's requests over too.
    assert_eq!(admin_cmd(&sock, "clear counters all").trim(), "");
    assert_eq!(http_get(port, "/").status, 200);
    assert_eq!(num(&sock, "rt", "BACKEND", "stot"), 1);
    assert_eq!(num(&sock, "rt", "BACKEND", "wredis"), 1);
}
