//! Graceful drain of HTTP/2 connections (DESIGN §3, §5): on QUIT and on HUP
//! a client with a stream in flight gets a GOAWAY, the stream still
//! completes with its whole body, and after HUP new connections are served
//! by the new generation.

mod support;

use std::time::Duration;
use support::*;

const BODY: usize = 1 << 20;

/// `/slow/` waits 2 s, then streams 1 MiB; `/gen` is answered by forklb
/// with the configuration's generation mark.
fn start() -> (H2Lb, Backend) {
    let be = Backend::start_with(
        "slow",
        BackendOpts {
            stream_body: Some(BODY),
            path_delays: vec![("/slow/".to_owned(), Duration::from_secs(2))],
            ..Default::default()
        },
    );
    let routes = [Route::path("/gen").ret(200, "gen-1"), Route::to("web")];
    let h = H2Lb::start(&routes, |c| c.upstream("web", [Srv::of(&be)]));
    (h, be)
}

/// Starts the Python client's `drain` case (one GET /slow/drain) and waits
/// until the request has reached the backend.
fn in_flight(h: &H2Lb, be: &Backend, mode: H2Mode) -> Tool {
    let tool = spawn_python("client.py", mode, h.port(mode), &["drain"]);
    assert!(
        wait_until(Duration::from_secs(5), || be
            .heads()
            .iter()
            .any(|l| l.contains("/slow/drain"))),
        "the request did not reach the backend: {:?}\n{}\n{}",
        be.heads(),
        tool.stdout_so_far(),
        h.lb.diagnostics()
    );
    tool
}

/// The in-flight stream ended with its whole body, after a GOAWAY.
fn assert_completed_after_goaway(h: &H2Lb, what: &str, tool: Tool) {
    let out = tool.wait(Duration::from_secs(25));
    assert!(out.ok(), "{what}: {}", out.combined());
    let v = out.values();
    assert_eq!(
        v.at("status"),
        "200",
        "{what}: {}\n{}",
        v.text,
        h.lb.diagnostics()
    );
    assert_eq!(v.at("rst"), "none", "{what}: {}", v.text);
    assert_eq!(v.at("ended"), "yes", "{what}: {}", v.text);
    assert_eq!(
        v.at("body_len"),
        BODY.to_string(),
        "{what}: the body was cut: {}",
        v.text
    );
    assert_eq!(
        v.at("goaway"),
        "NO_ERROR",
        "{what}: no graceful GOAWAY: {}",
        v.text
    );
    // The GOAWAY let stream 1 finish.
    let last: i64 = v.at("goaway_last_stream").parse().unwrap();
    assert!(last >= 1, "{what}: GOAWAY's last stream {last}: {}", v.text);
}

#[test]
fn quit_sends_goaway_and_lets_the_in_flight_stream_finish() {
    let (mut h, be) = start();
    let tool = in_flight(&h, &be, H2Mode::Tls);
    h.lb.signal(SIGQUIT);
    assert_completed_after_goaway(&h, "QUIT", tool);
    h.lb.expect_exit_0(Duration::from_secs(10), "after QUIT and the drain");
}

#[test]
fn hup_sends_goaway_and_new_connections_get_the_new_generation() {
    let (h, be) = start();
    let old = h.lb.wait_workers(1, Duration::from_secs(5));
    let (out, _) = h.curl_h2c("/gen");
    assert_eq!(out.stdout, "gen-1", "{}", out.combined());

    let tool = in_flight(&h, &be, H2Mode::H2c);
    h.lb.write_config(&h.yaml.replace("gen-1", "gen-2"));
    h.lb.signal(SIGHUP);
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            now = h.lb.worker_pids();
            now.iter().any(|p| !old.contains(p))
        }),
        "no new worker after HUP: {now:?}\n{}",
        h.lb.diagnostics()
    );
    // New connections, both kinds, reach the new generation while the old
    // worker still drains the slow stream.
    for (what, (out, version)) in [("h2c", h.curl_h2c("/gen")), ("TLS", h.curl_h2_tls("/gen"))] {
        assert!(out.ok(), "{what}: {}", out.combined());
        assert_eq!(version, "2", "{what}");
        assert_eq!(out.stdout, "gen-2", "{what}: served by the old generation");
    }
    assert_completed_after_goaway(&h, "HUP", tool);
    // The old worker exits once its stream is done.
    assert!(
        wait_until(Duration::from_secs(10), || h
            .lb
            .worker_pids()
            .iter()
            .all(|p| !old.contains(p))),
        "the old worker {old:?} did not exit\n{}",
        h.lb.diagnostics()
    );
}

/// RFC 9113 §6.8: the first GOAWAY (last stream 2^31-1) comes with a PING;
/// a stream the client opens before answering it is still served, and the
/// final GOAWAY names it.
#[test]
fn shutdown_serves_streams_opened_before_the_final_goaway() {
    let (mut h, be) = start();
    let tool = spawn_python("client.py", H2Mode::Tls, h.tls_port(), &["drain_between"]);
    assert!(
        wait_until(Duration::from_secs(5), || be
            .heads()
            .iter()
            .any(|l| l.contains("/slow/drain"))),
        "the request did not reach the backend: {:?}\n{}",
        be.heads(),
        tool.stdout_so_far()
    );
    h.lb.signal(SIGQUIT);
    let out = tool.wait(Duration::from_secs(25));
    assert!(out.ok(), "{}", out.combined());
    let v = out.values();
    assert_eq!(
        v.at("goaways"),
        "2147483647,3",
        "{}\n{}",
        v.text,
        h.lb.diagnostics()
    );
    assert_eq!(v.at("b_status"), "200", "{}", v.text);
    assert_eq!(v.at("b_rst"), "none", "{}", v.text);
    assert_eq!(v.at("a_status"), "200", "{}", v.text);
    assert!(
        be.heads().iter().any(|l| l.contains("/fast/between")),
        "{:?}",
        be.heads()
    );
    h.lb.expect_exit_0(Duration::from_secs(10), "after QUIT and the drain");
}
