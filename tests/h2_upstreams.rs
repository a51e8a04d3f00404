//! HTTP/2 to upstreams (DESIGN §4.1 `upstreams.NAME.protocol: h2 | h2c`):
//! clients of either version reach an origin that speaks only HTTP/2
//! (`tests/h2_attack/h2_backend.py`, [`H2Origin`]), bodies keep their
//! integrity both ways, gRPC trailers and streaming responses pass, many
//! requests share few multiplexed upstream connections, retries skip a dead
//! server, and active health checks speak HTTP/2.

mod support;

use std::time::{Duration, Instant};
use support::tls::TestCa;
use support::*;

/// Health checks quick enough for a test: DOWN or UP within
/// interval × (fall|rise) + timeout.
const H2_CHECK: &str =
    "health: {type: http, path: /health, interval: 300ms, timeout: 300ms, rise: 2, fall: 2}";
/// Scheduling slack on a loaded machine, on top of the check bound.
const CHECK_WAIT: Duration = Duration::from_secs(5);

/// forklb (TLS, h2c and plain listeners, see [`H2Lb`]) sending everything
/// to upstream `up`: `servers` speaking `protocol`, plus `extra` upstream
/// keys; `workers` workers.
fn lb_to(workers: usize, protocol: &str, servers: Vec<Srv>, extra: &[&str]) -> H2Lb {
    let lb = H2Lb::start(&[Route::to("up")], |b| {
        let mut b = b
            .workers(workers)
            .upstream("up", servers)
            .upstream_opt(&format!("protocol: {protocol}"));
        for e in extra {
            b = b.upstream_opt(e);
        }
        b
    });
    lb.lb.wait_workers(workers, Duration::from_secs(10));
    lb
}

/// forklb to one h2c origin `o1`.
fn lb_to_h2c(workers: usize, origin: &H2Origin) -> H2Lb {
    lb_to(
        workers,
        "h2c",
        vec![Srv::new(origin.name(), origin.addr())],
        &[],
    )
}

/// A request with a chunked body (`chunks` as its chunks) on a fresh
/// HTTP/1.1 connection.
fn post_chunked(port: u16, path: &str, chunks: &[&[u8]]) -> Response {
    let mut c = Conn::open(port).expect("connect");
    c.set_read_timeout(Duration::from_secs(20));
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    for ch in chunks {
        req.extend_from_slice(format!("{:x}\r\n", ch.len()).as_bytes());
        req.extend_from_slice(ch);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req).expect("send");
    c.read_response().expect("response")
}

#[test]
fn http1_clients_reach_an_h2c_upstream() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let port = h.plain_port;

    let r = http_get(port, "/hello");
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), h.lb.diagnostics());
    assert_eq!(r.body_str(), "hello from o1");
    let seen = o1.requests_for("/hello");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    // The Host of an HTTP/1.1 client becomes :authority, not a `host` field.
    assert_eq!(seen[0].authority.as_deref(), Some("localhost"), "{seen:?}");
    // A `host` field may accompany it, but must not disagree (RFC 9113 §8.3.1).
    assert!(
        seen[0].header("host").is_none_or(|h| h == "localhost"),
        "{seen:?}"
    );
    for hop in ["connection", "keep-alive", "transfer-encoding", "upgrade"] {
        assert!(
            seen[0].header(hop).is_none(),
            "{hop} went upstream: {seen:?}"
        );
    }

    // 5 MiB up and back, Content-Length framed.
    let body = pseudo_random_bytes(5 << 20, 7);
    let mut c = Conn::open(port).expect("connect");
    c.set_read_timeout(Duration::from_secs(30));
    let r = c.request("POST", "/echo", &[], &body).expect("POST /echo");
    assert_eq!(r.status, 200, "{}", h.lb.diagnostics());
    assert_eq!(r.body.len(), body.len());
    assert_eq!(
        sha256_hex(&r.body),
        sha256_hex(&body),
        "echoed body differs"
    );
    let echo = o1.requests_for("/echo");
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0].method, "POST");
    assert_eq!(echo[0].body_len, body.len() as u64);
    assert_eq!(echo[0].body_sha256, sha256_hex(&body));
    // The connection stays usable after a large exchange.
    let r = c.get("/hello").expect("GET after POST");
    assert_eq!(r.body_str(), "hello from o1");

    // A chunked request body arrives whole (as DATA, without chunk framing).
    let parts: [&[u8]; 3] = [b"first-", &[b'x'; 70_000], b"-last"];
    let whole: Vec<u8> = parts.concat();
    let r = post_chunked(port, "/echo", &parts);
    assert_eq!(r.status, 200, "{}", h.lb.diagnostics());
    assert_eq!(r.body, whole);
    let echo = o1.requests_for("/echo");
    assert_eq!(echo.len(), 2, "{echo:?}");
    assert_eq!(echo[1].body_len, whole.len() as u64);
    assert_eq!(echo[1].body_sha256, sha256_hex(&whole));
}

/// The trailer section of an HTTP/1.1 client's chunked body reaches the
/// HTTP/2 upstream as trailing HEADERS (names lower-case, fields that frame
/// a message dropped), as an HTTP/2 client's trailers do.
#[test]
fn chunked_request_trailers_of_an_http1_client_reach_an_h2c_upstream() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(20));
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n0\r\nX-Checksum: abc\r\nContent-Length: 5\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{}", h.lb.diagnostics());
    assert_eq!(r.body_str(), "hello");
    let echo = o1.requests_for("/echo");
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0].body_len, 5, "{echo:?}");
    assert_eq!(
        echo[0].header("x-trailer-x-checksum"),
        Some("abc"),
        "{echo:?}"
    );
    assert!(
        echo[0].header("x-trailer-content-length").is_none(),
        "a framing field went upstream as a trailer: {echo:?}"
    );
    // The connection goes on after the body and its trailers.
    let r = c.get("/hello").expect("GET after the trailers");
    assert_eq!(r.body_str(), "hello from o1");
}

#[test]
fn large_responses_from_an_h2c_upstream_honour_flow_control() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    // Far above any initial window: the origin must wait for forklb's
    // WINDOW_UPDATEs, which follow what the client reads.
    let n = 6 << 20;
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(30));
    let r = c
        .request("GET", &format!("/big?n={n}"), &[], b"")
        .expect("GET /big");
    assert_eq!(r.status, 200, "{}", h.lb.diagnostics());
    assert_eq!(r.body.len(), n);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&pattern(n)));
    // The same over HTTP/2 from the client (binary: to a file, not stdout).
    let dir = TempDir::new("h2up-big");
    let file = dir.join("big.bin");
    let out = curl(&[
        "--http2-prior-knowledge",
        "-sS",
        "--max-time",
        "30",
        "-o",
        file.to_str().unwrap(),
        &h.h2c_url(&format!("/big?n={n}")),
    ]);
    assert!(out.ok(), "{}", out.combined());
    let got = std::fs::read(&file).unwrap_or_default();
    assert_eq!(got.len(), n, "{}", h.lb.diagnostics());
    assert_eq!(sha256_hex(&got), sha256_hex(&pattern(n)));
}

#[test]
fn h2_clients_reach_an_h2c_upstream() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let (out, version) = h.curl_h2_tls("/hello");
    assert!(out.ok(), "{}\n{}", out.combined(), h.lb.diagnostics());
    assert_eq!(version, "2");
    assert_eq!(out.stdout, "hello from o1");
    let (out, version) = h.curl_h2c("/hello");
    assert!(out.ok(), "{}", out.combined());
    assert_eq!(version, "2");
    assert_eq!(out.stdout, "hello from o1");
    assert_eq!(o1.requests_for("/hello").len(), 2);

    // An upload from an HTTP/2 client.
    let body = pseudo_random_bytes(3 << 20, 11);
    let (out, echoed) = curl_h2_post(
        &h.tls_url("/echo"),
        &body,
        30,
        &["-H", "content-type: application/octet-stream"],
    );
    assert!(out.ok(), "{}", out.combined());
    assert_eq!(echoed.len(), body.len(), "{}", h.lb.diagnostics());
    assert_eq!(sha256_hex(&echoed), sha256_hex(&body));
    let echo = o1.requests_for("/echo");
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0].body_sha256, sha256_hex(&body));
}

#[test]
fn h2_upstream_over_tls_negotiates_alpn_h2() {
    let certs = TempDir::new("h2up-ca");
    let (ca, ca_path) = TestCa::in_dir(certs.path());
    let t1 = H2Origin::start_tls("t1", &ca.issue(&["localhost"]));
    let ca = yaml_str(&ca_path.display().to_string());
    let h = lb_to(
        1,
        "h2",
        vec![Srv::new("t1", t1.addr())],
        &[&format!("tls: {{sni: localhost, ca: {ca}}}")],
    );
    // The origin closes any connection whose ALPN is not h2: an answer at
    // all means forklb offered h2 and spoke HTTP/2 over TLS.
    let r = http_get(h.plain_port, "/hello");
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), h.lb.diagnostics());
    assert_eq!(r.body_str(), "hello from t1");
    let (out, version) = h.curl_h2_tls("/hello");
    assert!(out.ok(), "{}", out.combined());
    assert_eq!(
        (version.as_str(), out.stdout.as_str()),
        ("2", "hello from t1")
    );
    let n = 2 << 20;
    let r = http_get(h.plain_port, &format!("/big?n={n}"));
    assert_eq!(r.body.len(), n);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&pattern(n)));
    let seen = t1.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn grpc_trailers_reach_an_h2_client_and_te_goes_upstream() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python(
            "client.py",
            mode,
            h.port(mode),
            &["grpc"],
            Duration::from_secs(20),
        );
        assert_eq!(v.at("status"), "200", "{mode:?}: {}", v.text);
        assert_eq!(v.at("rst"), "none", "{mode:?}: {}", v.text);
        assert_eq!(
            v.at("header_content-type"),
            "application/grpc",
            "{}",
            v.text
        );
        // Head, then trailers: the DATA in between is the one message.
        assert_eq!(v.at("blocks"), "2", "{mode:?}: {}", v.text);
        assert_eq!(v.at("body_hex"), "00000000026f6b", "{}", v.text);
        assert_eq!(v.at("trailer_grpc-status"), "0", "{mode:?}: {}", v.text);
        assert_eq!(v.at("trailer_grpc-message"), "ok", "{mode:?}: {}", v.text);
    }
    let seen = o1.requests_for("/grpc");
    assert_eq!(seen.len(), 2, "{seen:?}");
    for r in &seen {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("te"), Some("trailers"), "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/grpc"), "{r:?}");
        // 5-byte prefix + "ping".
        assert_eq!(r.body_len, 9, "{r:?}");
    }
}

#[test]
fn a_streaming_response_arrives_incrementally() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    // 10 chunks 100 ms apart: the first must arrive long before the last.
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(10));
    let t0 = Instant::now();
    c.send(b"GET /stream?n=10&ms=100 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let first = c.read_raw_until(b"chunk 0\n").map(|_| t0.elapsed());
    let last = c.read_raw_until(b"chunk 9\n").map(|_| t0.elapsed());
    let (first, last) = match (first, last) {
        (Ok(a), Ok(b)) => (a, b),
        other => panic!("{other:?}\n{}", h.lb.diagnostics()),
    };
    eprintln!("first chunk after {first:?}, last after {last:?}");
    assert!(
        first < Duration::from_millis(600),
        "first chunk took {first:?}"
    );
    assert!(
        last - first >= Duration::from_millis(700),
        "chunks were not streamed: first {first:?}, last {last:?}"
    );

    // An HTTP/2 client sees the same pacing (curl prints as it receives).
    let tool = Tool::spawn(
        "curl",
        &[
            "--http2-prior-knowledge",
            "-sSN",
            "--max-time",
            "10",
            &h.h2c_url("/stream?n=10&ms=100"),
        ],
    );
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || tool
            .stdout_so_far()
            .contains("chunk 0")),
        "no first chunk"
    );
    let first = t0.elapsed();
    let out = tool.wait(Duration::from_secs(10));
    assert!(out.ok(), "{}", out.combined());
    assert!(out.stdout.ends_with("chunk 9\n"), "{}", out.stdout);
    assert!(
        out.elapsed > first + Duration::from_millis(600),
        "h2 client: first chunk at {first:?}, end at {:?}",
        out.elapsed
    );
}

#[test]
fn many_concurrent_requests_share_few_upstream_connections() {
    let workers = 2;
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(workers, &o1);
    // Warm up: one request per worker is not needed, the bound holds anyway.
    let out = run_tool(
        "h2load",
        &["-c", "4", "-m", "50", "-n", "200", &h.tls_url("/hello")],
        Duration::from_secs(60),
    );
    assert!(out.ok(), "{}", out.combined());
    let (total, ok, failed, errored) = h2load_counts(&out);
    assert_eq!(
        (total, ok, failed, errored),
        (200, 200, 0, 0),
        "{}\n{}",
        out.combined(),
        h.lb.diagnostics()
    );
    assert!(out.stdout.contains("200 2xx"), "{}", out.stdout);
    let seen = o1.requests_for("/hello");
    assert_eq!(seen.len(), 200);
    let conns = o1.connections_serving("/hello");
    eprintln!("200 requests over {} upstream connection(s)", conns.len());
    assert!(
        conns.len() <= workers * 4,
        "200 requests used {} upstream connections (at most {} expected): {conns:?}",
        conns.len(),
        workers * 4
    );
    // Multiplexed: some connection carried many streams.
    let busiest = conns
        .iter()
        .map(|c| seen.iter().filter(|r| r.conn == *c).count())
        .max()
        .unwrap_or(0);
    assert!(
        busiest >= 200 / (workers * 4),
        "busiest connection: {busiest}"
    );
}

#[test]
fn retries_skip_a_dead_h2c_server() {
    let o1 = H2Origin::start("o1");
    let dead = refused_addr();
    let h = lb_to(
        1,
        "h2c",
        vec![Srv::new("dead", dead), Srv::new("o1", o1.addr())],
        &["retries: 1", "balance: roundrobin"],
    );
    for i in 0..20 {
        let r = http_get(h.plain_port, "/hello");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "hello from o1"),
            "request {i}\n{}",
            h.lb.diagnostics()
        );
    }
    for i in 0..10 {
        let (out, _) = h.curl_h2c("/hello");
        assert!(
            out.ok() && out.stdout == "hello from o1",
            "h2 request {i}: {}",
            out.combined()
        );
    }
    assert_eq!(o1.requests_for("/hello").len(), 30);
}

/// Runs only the health checker's side: the checks are HTTP/2 requests
/// (the origin speaks nothing else and logs them), a 503 takes the server
/// DOWN and a 200 brings it back.
#[test]
fn h2c_health_check_marks_a_503_server_down_and_back_up() {
    let o1 = H2Origin::start("o1");
    let o2 = H2Origin::start("o2");
    let h = lb_to(
        1,
        "h2c",
        vec![Srv::new("o1", o1.addr()), Srv::new("o2", o2.addr())],
        &[H2_CHECK],
    );
    assert!(
        wait_until(CHECK_WAIT, || o1.health_checks() >= 2
            && o2.health_checks() >= 2),
        "no HTTP/2 health checks arrived: o1 {}, o2 {}\n{}",
        o1.health_checks(),
        o2.health_checks(),
        h.lb.diagnostics()
    );
    let check = &o1.requests_for("/health")[0];
    assert_eq!(check.method, "GET");
    assert_eq!(check.authority.as_deref(), Some(&*o1.addr().to_string()));
    assert_eq!(check.header("user-agent"), Some("forklb-health"));
    assert!(h.lb.log_lines("server up/o1 is DOWN").is_empty());

    o1.set_health(503);
    assert!(
        h.lb.wait_log("server up/o1 is DOWN", CHECK_WAIT),
        "o1 not marked DOWN\n{}",
        h.lb.diagnostics()
    );
    let lines = h.lb.log_lines("server up/o1 is DOWN");
    assert!(
        lines[0].contains("reason: HTTP status 503"),
        "unexpected DOWN line: {lines:?}"
    );
    assert!(h.lb.log_lines("server up/o2 is DOWN").is_empty());

    o1.set_health(200);
    assert!(
        h.lb.wait_log("server up/o1 is UP", CHECK_WAIT),
        "o1 not marked UP again\n{}",
        h.lb.diagnostics()
    );
}

/// One-worker forklb checking `name` over TLS (`protocol: h2`, the test
/// CA's localhost certificate, made by `start`, which returns the server
/// and its address) until a check takes it DOWN: the server, and that
/// DOWN line of the log.
fn tls_h2_checked_down<S>(
    name: &str,
    start: impl FnOnce(&support::tls::TestCert) -> (S, std::net::SocketAddr),
) -> (S, String) {
    let certs = TempDir::new("h2up-ca");
    let (ca, ca_path) = TestCa::in_dir(certs.path());
    let (server, addr) = start(&ca.issue(&["localhost"]));
    let ca = yaml_str(&ca_path.display().to_string());
    let h = lb_to(
        1,
        "h2",
        vec![Srv::new(name, addr)],
        &[&format!("tls: {{sni: localhost, ca: {ca}}}"), H2_CHECK],
    );
    let down = format!("server up/{name} is DOWN");
    assert!(
        h.lb.wait_log(&down, CHECK_WAIT),
        "{name} not marked DOWN\n{}",
        h.lb.diagnostics()
    );
    let line = h.lb.log_lines(&down).swap_remove(0);
    (server, line)
}

/// The same over TLS: the check offers ALPN h2 (the origin closes any
/// other connection) and speaks HTTP/2 inside.
#[test]
fn tls_h2_health_check_marks_a_503_server_down() {
    let (t1, line) = tls_h2_checked_down("t1", |cert| {
        let t1 = H2Origin::start_tls("t1", cert);
        t1.set_health(503);
        let addr = t1.addr();
        (t1, addr)
    });
    assert!(
        line.contains("reason: HTTP status 503"),
        "the check did not get an HTTP/2 answer: {line}"
    );
    // Servers start UP at `rise`: the first failed check takes it DOWN.
    assert!(t1.health_checks() >= 1);
}

/// A `protocol: h2` check really is HTTP/2: an HTTPS server that speaks
/// only HTTP/1.1 fails it (while an HTTP/1.1 check would pass).
#[test]
fn tls_h2_health_check_fails_against_an_http1_only_server() {
    let (_s1, line) = tls_h2_checked_down("s1", |cert| {
        let b = support::tls::TlsBackend::start("s1", cert);
        let addr = b.addr();
        (b, addr)
    });
    assert!(
        !line.contains("HTTP status"),
        "an HTTP/1.1 answer was taken for HTTP/2: {line}"
    );
}

/// An HTTPS server that speaks HTTP/2 but agrees to nothing by ALPN is one
/// the traffic refuses (RFC 9113 §3.2: "h2" is what says HTTP/2 over TLS):
/// its check fails too, naming ALPN, instead of keeping it UP while every
/// request gets 502 (the request's own log line: the next test).
#[test]
fn an_h2_server_that_agrees_to_no_alpn_fails_checks_and_requests_alike() {
    let (t1, line) = tls_h2_checked_down("t1", |cert| {
        let t1 = H2Origin::start_tls_without_alpn("t1", cert);
        let addr = t1.addr();
        (t1, addr)
    });
    assert!(line.contains("did not agree to HTTP/2 (ALPN h2)"), "{line}");
    assert_eq!(t1.health_checks(), 0, "the check spoke HTTP/2 without ALPN");
}

/// A request to an HTTP/2 server over TLS that fails in the handshake is
/// logged with the handshake's reason, as for HTTP/1.1 upstreams ("TLS
/// handshake with ADDR (server U/S) failed: <why>"), not as a closed
/// connection: an untrusted certificate, and an ALPN that did not pick h2.
#[test]
fn h2_upstream_handshake_failures_are_logged_with_their_reason() {
    let certs = TempDir::new("h2up-ca");
    let (ca, ca_path) = TestCa::in_dir(certs.path());
    let other = TempDir::new("h2up-other-ca");
    let (other_ca, _) = TestCa::in_dir(other.path());
    let untrusted = H2Origin::start_tls("u1", &other_ca.issue(&["localhost"]));
    let no_alpn = H2Origin::start_tls_without_alpn("n1", &ca.issue(&["localhost"]));
    let ca = yaml_str(&ca_path.display().to_string());
    let h = H2Lb::start(&[Route::path("/u/").upstream("u"), Route::to("n")], |b| {
        b.workers(1)
            .upstream("u", vec![Srv::new("u1", untrusted.addr())])
            .upstream_opt("protocol: h2")
            .upstream_opt(&format!("tls: {{sni: localhost, ca: {ca}}}"))
            .upstream("n", vec![Srv::new("n1", no_alpn.addr())])
            .upstream_opt("protocol: h2")
            .upstream_opt(&format!("tls: {{sni: localhost, ca: {ca}}}"))
    });
    h.lb.wait_workers(1, Duration::from_secs(10));
    for (path, server, why) in [
        ("/u/x", "server u/u1", "invalid peer certificate"),
        ("/n/x", "server n/n1", "did not agree to HTTP/2 (ALPN h2)"),
    ] {
        let r = http_get(h.plain_port, path);
        assert_eq!(r.status, 502, "{path}: {}", h.lb.diagnostics());
        assert!(
            h.lb.wait_log(server, Duration::from_secs(5)),
            "{}",
            h.lb.diagnostics()
        );
        let lines = h.lb.log_lines(server);
        assert!(
            lines[0].contains("TLS handshake with") && lines[0].contains(why),
            "{path}: {lines:?}"
        );
    }
}

/// Traffic follows the HTTP/2 health checks: a server DOWN gets nothing.
#[test]
fn requests_avoid_an_h2c_server_marked_down() {
    let o1 = H2Origin::start("o1");
    let o2 = H2Origin::start("o2");
    o1.set_health(503);
    let h = lb_to(
        1,
        "h2c",
        vec![Srv::new("o1", o1.addr()), Srv::new("o2", o2.addr())],
        &[H2_CHECK],
    );
    assert!(
        h.lb.wait_log("server up/o1 is DOWN", CHECK_WAIT),
        "o1 not marked DOWN\n{}",
        h.lb.diagnostics()
    );
    for i in 0..10 {
        let r = http_get(h.plain_port, "/hello");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "hello from o2"),
            "request {i}\n{}",
            h.lb.diagnostics()
        );
    }
    assert!(o1.requests_for("/hello").is_empty());
}

/// An HTTP/2 upstream that sends content with a response that has none
/// (204, 304, the answer to HEAD; RFC 9113 §8.1.1): the response ends at
/// its head and the content reaches no client. An HTTP/1.1 client's next
/// response is its next request's, never those bytes; an HTTP/2 client
/// gets a clean 204 (curl failed the stream with PROTOCOL_ERROR).
#[test]
fn content_of_responses_that_have_none_never_reaches_the_client() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    let r = c.get("/nobody/204").expect("204");
    assert_eq!(r.status, 204, "{r:?}\n{}", h.lb.diagnostics());
    assert!(r.body.is_empty(), "{r:?}");
    // A 204 must not carry Content-Length (RFC 9110 §8.6).
    assert_eq!(r.header("content-length"), None, "{r:?}");
    assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    let r = c.get("/nobody/304").expect("304");
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    c.send(b"HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send HEAD");
    let r = c.read_head_response().expect("HEAD response");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    let r = c.get("/hello").expect("GET after them");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "hello from o1"),
        "{r:?}"
    );
    assert!(c.buffered().is_empty(), "{:?}", c.buffered());

    for path in ["/nobody/204", "/nobody/304"] {
        let (out, version) = h.curl_h2_tls(path);
        assert!(
            out.ok(),
            "{path}: {}\n{}",
            out.combined(),
            h.lb.diagnostics()
        );
        assert_eq!(version, "2");
        assert_eq!(out.stdout, "", "{path}");
    }
}

/// An HTTP/2 response that ends with its head and says no length (a gRPC
/// error in trailers only, an empty 200) reaches an HTTP/1.1 client with
/// `Content-Length: 0`, as nginx writes: without it the client waits for a
/// close that never comes and takes the next response for this one's body.
#[test]
fn a_response_that_ends_with_its_head_says_its_length_to_http1_clients() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /empty/200 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("the empty response");
    assert_eq!(r.status, 200, "{r:?}\n{}", h.lb.diagnostics());
    assert_eq!(r.header("content-length"), Some("0"), "{r:?}");
    assert_eq!(r.header("grpc-status"), Some("3"), "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    let r = c.read_response().expect("the pipelined one");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "hello from o1"),
        "{r:?}"
    );
    let r = c.get("/empty/204").expect("an empty 204");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "{r:?}");
    assert_eq!(c.get("/hello").expect("after it").status, 200);
}

/// 1xx heads of an HTTP/2 upstream (103 Early Hints) reach the client
/// before the final response, as from an HTTP/1.1 upstream (RFC 9110
/// §15.2: a proxy MUST forward them); they lose the Content-Length they
/// must not carry.
#[test]
fn interim_responses_of_an_h2_upstream_reach_the_client() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /hints HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let interim = c.read_next_head().expect("103");
    assert_eq!(interim.status, 103, "{interim:?}\n{}", h.lb.diagnostics());
    assert_eq!(interim.header("link"), Some("</a.css>"), "{interim:?}");
    assert_eq!(interim.header("content-length"), None, "{interim:?}");
    let r = c.read_response().expect("final");
    assert_eq!((r.status, r.body_str().as_str()), (200, "hinted"), "{r:?}");

    let v = python(
        "client.py",
        H2Mode::Tls,
        h.tls_port(),
        &["hints"],
        Duration::from_secs(20),
    );
    v.assert_early_hints("</a.css>", "hinted", "an HTTP/2 upstream's 103");
}

/// A stream an HTTP/2 server refused unprocessed (RST_STREAM
/// REFUSED_STREAM, or above the last stream of its GOAWAY: it restarts or
/// drains) goes again, whatever the method (RFC 9113 §8.7), as HAProxy
/// sends it again: once more to the same server on a connection that takes
/// streams, then to another server while retries remain. Every client got
/// a 502 before.
#[test]
fn streams_refused_unprocessed_are_sent_again() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let r = http_get(h.plain_port, "/refuse-once");
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), h.lb.diagnostics());
    assert_eq!(r.body_str(), "hello from o1");
    assert_eq!(o1.refusals("/refuse-once"), 1);
    // A POST without a body after a GOAWAY that processed nothing.
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    let r = c.request("POST", "/goaway-once", &[], b"").expect("POST");
    assert_eq!(r.status, 200, "{}\n{}", r.body_str(), h.lb.diagnostics());
    assert_eq!(o1.refusals("/goaway-once"), 1);
    assert_eq!(o1.requests_for("/goaway-once").len(), 1);
    // Refused again on the second try: no third one to the same server.
    let r = http_get(h.plain_port, "/refuse-always");
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert_eq!(o1.refusals("/refuse-always"), 2);

    // With two servers, the second refusal moves to the other one.
    let o2 = H2Origin::start("o2");
    let o3 = H2Origin::start("o3");
    let h = lb_to(
        1,
        "h2c",
        vec![Srv::new("o2", o2.addr()), Srv::new("o3", o3.addr())],
        &["balance: static-rr"],
    );
    let r = http_get(h.plain_port, "/refuse-always");
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert_eq!(
        o2.refusals("/refuse-always") + o3.refusals("/refuse-always"),
        3,
        "twice to the first server, once to the other"
    );
}

/// An HTTP/1.0 client reads a response without a length to the close: one
/// an HTTP/2 upstream cut short (RST_STREAM mid-body) resets the client
/// connection, so the client sees an error and not a short response.
#[test]
fn a_body_cut_short_resets_an_http10_client() {
    let o1 = H2Origin::start("o1");
    let h = lb_to_h2c(1, &o1);
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /cut HTTP/1.0\r\n\r\n").expect("send");
    match c.read_to_end() {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(got) => panic!(
            "a clean close after {:?}: the client takes it as complete\n{}",
            String::from_utf8_lossy(&got),
            h.lb.diagnostics()
        ),
    }
    // A whole one ends with a clean close.
    let mut c = Conn::open(h.plain_port).expect("connect");
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"GET /stream?n=2&ms=10 HTTP/1.0\r\n\r\n")
        .expect("send");
    let got = c.read_to_end().expect("a clean close");
    let text = String::from_utf8_lossy(&got);
    assert!(text.ends_with("chunk 0\nchunk 1\n"), "{text:?}");
}
