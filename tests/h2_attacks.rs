//! HTTP/2 defences (DESIGN §5: "part of the protocol, not options"): each
//! attack of `tests/h2_attack/attack.py` (raw frames, run with Debian's
//! `/usr/bin/python3`) must end the connection — GOAWAY or close within a
//! few seconds — with an error-log line naming the client address, must
//! reach the backend a bounded number of times (malformed requests: never),
//! and must leave the worker serving: afterwards the same worker answers a
//! normal HTTP/1.1 and a normal HTTP/2 request on new connections.
//!
//! Attacks: rapid reset (CVE-2023-44487), CONTINUATION flood
//! (CVE-2024-27316, with header fields and with empty frames), SETTINGS,
//! PING, PRIORITY, empty DATA and WINDOW_UPDATE floods, an HPACK bomb, an
//! oversized dynamic table size update, a zero-window stall, and request
//! smuggling vectors (RFC 9113 §8.1.1, §8.2, §8.3).

mod support;

use std::time::Duration;
use support::*;

/// Longest a Python attack client may run (it bounds itself well below).
const CLIENT_LIMIT: Duration = Duration::from_secs(40);
/// An attack must be over (GOAWAY or close) this long after it connected:
/// the floods send for up to 10 s when nobody stops them.
const ENDED_WITHIN_S: f64 = 8.0;

fn backend() -> Backend {
    Backend::start("b1")
}

fn start(be: &Backend, top: &str) -> H2Lb {
    H2Lb::start(&[Route::to("web")], |c| {
        c.raw(top).upstream("web", [Srv::of(be)])
    })
}

/// The worker that served before still serves, HTTP/1.1 and HTTP/2, on new
/// connections.
fn assert_worker_survived(h: &H2Lb, workers: &[i32]) {
    assert_eq!(
        h.lb.worker_pids(),
        workers,
        "a worker died or was replaced\n{}",
        h.lb.diagnostics()
    );
    let r = http_get(h.plain_port, "/after");
    assert_eq!(r.status, 200, "HTTP/1.1 after the attack: {r:?}");
    let (out, version) = h.curl_h2_tls("/after-h2");
    assert!(
        out.ok() && version == "2" && out.stdout == "b1",
        "HTTP/2 after the attack ({version}): {}",
        out.combined()
    );
}

/// The server ended the connection within [`ENDED_WITHIN_S`] and logged a
/// line naming the client (`127.0.0.1:PORT`).
fn assert_ended_and_logged(h: &H2Lb, what: &str, v: &KeyValues) {
    assert!(
        v.ended(),
        "{what}: forklb neither sent GOAWAY nor closed:\n{}\n{}",
        v.text,
        h.lb.diagnostics()
    );
    let after = v.ended_after().unwrap_or(f64::MAX);
    assert!(
        after <= ENDED_WITHIN_S,
        "{what}: the connection ended only after {after} s:\n{}",
        v.text
    );
    let client = v.at("local");
    assert!(
        h.lb.wait_log(client, Duration::from_secs(3)),
        "{what}: no error-log line names the client {client}\n{}\n{}",
        v.text,
        h.lb.diagnostics()
    );
}

/// Runs `attack` (with `arg`) over `mode`; checks the connection ended, the
/// log, that the backend saw at most `max_heads` request heads, and that the
/// worker survived.
fn flood(mode: H2Mode, attack: &str, arg: &[&str], max_heads: usize) -> KeyValues {
    let be = backend();
    let h = start(&be, "");
    let workers = h.lb.worker_pids();
    let mut args = vec![attack];
    args.extend_from_slice(arg);
    let v = python("attack.py", mode, h.port(mode), &args, CLIENT_LIMIT);
    assert_ended_and_logged(&h, attack, &v);
    let heads = be.heads();
    assert!(
        heads.len() <= max_heads,
        "{attack}: the backend saw {} requests (at most {max_heads}): {:?}",
        heads.len(),
        &heads[..heads.len().min(5)]
    );
    assert_worker_survived(&h, &workers);
    v
}

// ---------------------------------------------------------------------------
// Stream and frame floods

/// CVE-2023-44487: 10,000 streams opened and cancelled at once. Cancelled
/// streams must not turn into 10,000 upstream requests.
#[test]
fn rapid_reset_is_stopped() {
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        flood(mode, "rapid_reset", &["10000"], 300);
    }
}

/// CVE-2024-27316: HEADERS without END_HEADERS, then CONTINUATION frames
/// without end (1 KB header fields each: the header list passes
/// `max_header_list_size` quickly).
#[test]
fn continuation_flood_is_stopped() {
    flood(H2Mode::Tls, "continuation", &[], 0);
}

/// The same with empty CONTINUATION frames: the header list never grows,
/// the number of frames must be bounded too.
#[test]
fn empty_continuation_flood_is_stopped() {
    flood(H2Mode::Tls, "continuation_empty", &[], 0);
}

#[test]
fn settings_flood_is_stopped() {
    flood(H2Mode::Tls, "settings", &[], 0);
}

#[test]
fn ping_flood_is_stopped() {
    flood(H2Mode::H2c, "ping", &[], 0);
}

#[test]
fn priority_flood_is_stopped() {
    flood(H2Mode::Tls, "priority", &[], 0);
}

/// A request body of endless empty DATA frames (no END_STREAM).
#[test]
fn empty_data_flood_is_stopped() {
    flood(H2Mode::Tls, "empty_data", &[], 1);
}

#[test]
fn window_update_flood_is_stopped() {
    flood(H2Mode::H2c, "window_update", &[], 0);
}

// ---------------------------------------------------------------------------
// HPACK

/// A 4,000-byte header entered in the dynamic table, then referenced 16,000
/// times per request (16 KB on the wire, 64 MB decoded), on up to 50
/// streams. Each header list is far above `max_header_list_size`: no stream
/// reaches the backend, each is reset (or answered 431), and the
/// connection may be ended; decoding must stop at the limit, not at 64 MB.
#[test]
fn hpack_bomb_is_bounded() {
    let be = backend();
    let h = start(&be, "");
    let workers = h.lb.worker_pids();
    let v = python(
        "attack.py",
        H2Mode::Tls,
        h.tls_port(),
        &["hpack_bomb", "50"],
        CLIENT_LIMIT,
    );
    let sent: usize = v.at("sent").parse().unwrap();
    let refused: usize = v.at("rst_count").parse::<usize>().unwrap()
        + v.at("answered_4xx").parse::<usize>().unwrap();
    assert!(
        v.ended() || (sent > 0 && refused >= sent),
        "every bomb must be reset (or the connection ended):\n{}",
        v.text
    );
    if v.ended() {
        assert_ended_and_logged(&h, "hpack_bomb", &v);
    }
    assert_eq!(v.at("answered_2xx"), "0", "{}", v.text);
    assert!(be.heads().is_empty(), "{:?}", be.heads());
    assert_worker_survived(&h, &workers);
}

/// A dynamic table size update to 2^30, above SETTINGS_HEADER_TABLE_SIZE:
/// a COMPRESSION_ERROR connection error (RFC 7541 §4.2, §6.3).
#[test]
fn oversized_table_size_update_is_a_compression_error() {
    let v = flood(H2Mode::Tls, "table_size", &[], 0);
    assert!(
        v.at("goaway") == "COMPRESSION_ERROR" || v.at("goaway") == "none",
        "{}",
        v.text
    );
}

/// HEADERS without END_HEADERS and never the CONTINUATION, on a connection
/// that served a request (so it idles under the 30 s keep-alive timeout):
/// bounded by `client_header` (1 s), as an HTTP/1.1 request head is.
#[test]
fn header_block_without_continuation_is_bounded_by_client_header() {
    let be = backend();
    let h = start(&be, "timeouts: {client_header: 1s, keepalive: 30s}\n");
    let workers = h.lb.worker_pids();
    let v = python(
        "attack.py",
        H2Mode::Tls,
        h.tls_port(),
        &["slow_headers", "15"],
        CLIENT_LIMIT,
    );
    assert_eq!(v.at("first_status"), "200", "{}", v.text);
    assert!(v.ended(), "the connection did not end:\n{}", v.text);
    let stalled: f64 = v.at("stalled_for").parse().unwrap();
    assert!(
        (0.9..=5.0).contains(&stalled),
        "ended after {stalled} s, not about client_header (1 s):\n{}",
        v.text
    );
    assert_eq!(v.at("goaway"), "PROTOCOL_ERROR", "{}", v.text);
    assert!(
        h.lb.wait_log(v.at("local"), Duration::from_secs(3)),
        "no error-log line names the client {}\n{}",
        v.at("local"),
        h.lb.diagnostics()
    );
    assert!(
        !be.heads().iter().any(|l| l.contains("/never-ends")),
        "{:?}",
        be.heads()
    );
    assert_worker_survived(&h, &workers);
}

// ---------------------------------------------------------------------------
// Flow control

/// A client that sets its stream window to 0 and never opens it, on a
/// 10 MiB download: forklb must not hold the stream (and its upstream
/// connection) for ever. With the timeouts at 2 s, the stream is reset or
/// the connection ended within 10 s.
#[test]
fn zero_window_stall_is_timed_out() {
    let be = Backend::start_with(
        "big",
        BackendOpts {
            stream_body: Some(10 << 20),
            ..Default::default()
        },
    );
    let h = start(
        &be,
        "timeouts: {upstream_read: 2s, upstream_write: 2s, client_body: 2s, client_send: 2s}\n",
    );
    let workers = h.lb.worker_pids();
    let v = python(
        "attack.py",
        H2Mode::Tls,
        h.tls_port(),
        &["zero_window", "15"],
        CLIENT_LIMIT,
    );
    let reset = v.at("stream_reset") != "none";
    assert!(
        reset || v.ended(),
        "the stalled stream was neither reset nor its connection ended:\n{}\n{}",
        v.text,
        h.lb.diagnostics()
    );
    let after: f64 = v.at("after").parse().unwrap();
    assert!(after <= 10.0, "ended only after {after} s: {}", v.text);
    // No DATA could be sent in a zero window.
    assert_eq!(v.at("data_bytes"), "0", "{}", v.text);
    assert!(
        h.lb.wait_log(v.at("local"), Duration::from_secs(3)),
        "no error-log line names the client {}\n{}",
        v.at("local"),
        h.lb.diagnostics()
    );
    // The upstream connection was given up too (no 10 MiB held for it).
    assert!(
        wait_until(Duration::from_secs(5), || {
            // The body (10 MiB of bytes, not text) is not kept.
            let url = h.tls_url("/again");
            let (out, version) = curl_with_version(&[
                "--http2",
                "-sSk",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                &url,
            ]);
            out.ok() && version == "2"
        }),
        "{}",
        h.lb.diagnostics()
    );
    assert_eq!(h.lb.worker_pids(), workers);
}

// ---------------------------------------------------------------------------
// Smuggling

/// Malformed requests (uppercase names, CR/LF/NUL in values,
/// connection-specific headers, `te` other than `trailers`, Content-Length
/// not matching the DATA, bad pseudo-headers) are stream errors: reset (or
/// the connection ended), never answered, never passed on.
#[test]
fn smuggling_vectors_are_reset_and_never_reach_the_backend() {
    let be = backend();
    let h = start(&be, "");
    let workers = h.lb.worker_pids();
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("attack.py", mode, h.port(mode), &["smuggle"], CLIENT_LIMIT);
        let vectors: Vec<(&String, &String)> =
            v.map.iter().filter(|(k, _)| k.starts_with("v_")).collect();
        assert_eq!(vectors.len(), 20, "{}", v.text);
        let wrong: Vec<_> = vectors
            .iter()
            .filter(|(_, out)| {
                !(out.starts_with("rst:") || out.starts_with("goaway:") || *out == "closed")
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{mode:?}: not reset: {wrong:?}\n{}\n{}",
            v.text,
            h.lb.diagnostics()
        );
    }
    // No complete request reached the backend; of the heads, at most those
    // whose body was still to be checked (Content-Length), and never
    // finished.
    assert_eq!(be.request_count(), 0, "{:?}", be.requests());
    let heads: Vec<String> = be
        .heads()
        .into_iter()
        .filter(|l| !l.contains("/smuggle/cl-"))
        .collect();
    assert!(heads.is_empty(), "{heads:?}");
    assert_worker_survived(&h, &workers);
}
