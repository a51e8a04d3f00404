//! Request-smuggling vectors, one test each. Every malformed or ambiguous
//! request must get the exact status, the connection must be closed after
//! it, and the backend must receive nothing (for chunked-body vectors, where
//! the head may already be on its way: no complete request, and never the
//! request smuggled inside the body). forklb must keep serving afterwards.

mod support;

use std::time::Duration;
use support::*;

/// A backend (lenient chunked parser, records every head) behind one worker.
fn setup() -> (Backend, Forklb) {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    (b1, lb)
}

/// Sends `raw` on a fresh connection; returns the response, and checks that
/// the connection is closed right after it.
fn send_and_read(lb: &Forklb, raw: &[u8]) -> Response {
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    c.send(raw).expect("send request");
    let r = c.read_response().unwrap_or_else(|e| {
        panic!(
            "no response to {:?}: {e}\n{}",
            String::from_utf8_lossy(raw),
            lb.diagnostics()
        )
    });
    if let Err(e) = c.expect_closed() {
        panic!(
            "connection not closed after {} to {:?}: {e}",
            r.status,
            String::from_utf8_lossy(raw)
        );
    }
    r
}

/// forklb still serves normal requests, and they reach the backend.
fn assert_still_serving(lb: &Forklb, b1: &Backend) {
    let before = b1.request_count();
    let r = http_get(lb.port(), "/after");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    assert_eq!(b1.request_count(), before + 1);
    assert_eq!(b1.requests().last().unwrap().path, "/after");
}

/// The head must be refused with one of `statuses`, the connection closed,
/// and the backend must not receive a single byte.
fn assert_refused(raw: &[u8], statuses: &[u16]) {
    let (b1, lb) = setup();
    let r = send_and_read(&lb, raw);
    assert!(
        statuses.contains(&r.status),
        "{:?}: expected {statuses:?}, got {} {:?} {:?}\n{}",
        String::from_utf8_lossy(raw),
        r.status,
        r.reason,
        r.body_str(),
        lb.error_log_contents()
    );
    // Give a mistakenly forwarded request a moment to arrive.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        b1.bytes_received(),
        0,
        "backend received bytes: heads {:?}",
        b1.heads()
    );
    assert_still_serving(&lb, &b1);
    assert!(
        !b1.heads().iter().any(|h| h.contains("/smuggled")),
        "smuggled request reached the backend: {:?}",
        b1.heads()
    );
}

/// A chunked body with bad framing: 400, the connection closed, no complete
/// request at the backend and never the request hidden behind the bad chunk.
fn assert_bad_chunked(body: &[u8]) {
    let (b1, lb) = setup();
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(body);
    let r = send_and_read(&lb, &raw);
    assert_eq!(
        r.status,
        400,
        "{:?}: got {} {:?}\n{}",
        String::from_utf8_lossy(&raw),
        r.status,
        r.body_str(),
        lb.error_log_contents()
    );
    std::thread::sleep(Duration::from_millis(200));
    let heads = b1.heads();
    assert!(
        !heads.iter().any(|h| h.contains("/smuggled")),
        "smuggled request reached the backend: {heads:?}"
    );
    assert_eq!(
        b1.request_count(),
        0,
        "backend received a complete request: {:?}",
        b1.requests()
    );
    assert!(
        heads.iter().all(|h| h == "POST /upload HTTP/1.1"),
        "unexpected heads at the backend: {heads:?}"
    );
    assert_still_serving(&lb, &b1);
    let heads = b1.heads();
    assert!(
        !heads.iter().any(|h| h.contains("/smuggled")),
        "smuggled request reached the backend: {heads:?}"
    );
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

fn with_smuggled(head_and_body: &str) -> Vec<u8> {
    format!("{head_and_body}{SMUGGLED}").into_bytes()
}

// ---- Content-Length / Transfer-Encoding -------------------------------------

#[test]
fn content_length_and_transfer_encoding_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\n",
        ),
        &[400],
    );
}

#[test]
fn transfer_encoding_and_content_length_reversed_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
             0\r\n\r\n",
        ),
        &[400],
    );
}

#[test]
fn transfer_encoding_chunked_then_gzip_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        &[400],
    );
}

#[test]
fn transfer_encoding_gzip_then_chunked_is_501() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        &[501],
    );
}

#[test]
fn transfer_encoding_gzip_alone_is_501_or_400() {
    assert_refused(
        &with_smuggled("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"),
        &[501, 400],
    );
}

#[test]
fn two_equal_content_lengths_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        ),
        &[400],
    );
}

#[test]
fn two_different_content_lengths_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello",
        ),
        &[400],
    );
}

#[test]
fn content_length_with_plus_sign_is_400() {
    assert_refused(
        &with_smuggled("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"),
        &[400],
    );
}

#[test]
fn content_length_in_hex_is_400() {
    assert_refused(
        &with_smuggled("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello"),
        &[400],
    );
}

#[test]
fn content_length_list_is_400() {
    assert_refused(
        &with_smuggled("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello"),
        &[400],
    );
}

#[test]
fn content_length_overflow_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        ),
        &[400],
    );
}

#[test]
fn whitespace_before_colon_is_400() {
    assert_refused(
        &with_smuggled("POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello"),
        &[400],
    );
}

// ---- Header syntax ------------------------------------------------------------

#[test]
fn obs_fold_is_400() {
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        &[400],
    );
}

#[test]
fn obs_fold_hiding_transfer_encoding_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Foo: bar\r\n Transfer-Encoding: chunked\r\n\r\nhello",
        ),
        &[400],
    );
}

#[test]
fn nul_in_header_value_is_400() {
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        &[400],
    );
}

#[test]
fn bare_cr_in_header_value_is_400() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n", &[400]);
}

#[test]
fn bare_lf_line_endings_are_400() {
    assert_refused(b"GET / HTTP/1.1\nHost: x\nX-A: b\n\n", &[400]);
}

#[test]
fn one_bare_lf_among_crlf_is_400() {
    assert_refused(
        &with_smuggled("POST / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello"),
        &[400],
    );
}

#[test]
fn invalid_method_token_is_400() {
    assert_refused(b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", &[400]);
}

#[test]
fn invalid_header_name_character_is_400() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nX{Bad}: y\r\n\r\n", &[400]);
}

// ---- Host ----------------------------------------------------------------------

#[test]
fn http11_without_host_is_400() {
    assert_refused(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", &[400]);
}

#[test]
fn two_host_headers_is_400() {
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        &[400],
    );
}

// ---- Request line ----------------------------------------------------------------

#[test]
fn request_line_without_version_is_400() {
    assert_refused(b"GET /\r\nHost: x\r\n\r\n", &[400]);
}

#[test]
fn request_line_with_double_space_is_400() {
    assert_refused(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", &[400]);
}

#[test]
fn http2_request_line_is_505() {
    assert_refused(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", &[505]);
}

#[test]
fn http3_request_line_is_505() {
    assert_refused(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", &[505]);
}

#[test]
fn http10_with_transfer_encoding_is_400() {
    assert_refused(
        &with_smuggled(
            "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        &[400],
    );
}

// ---- Chunked body framing ------------------------------------------------------------

#[test]
fn chunk_size_not_hex_is_400() {
    assert_bad_chunked(format!("zz\r\nhello\r\n0\r\n\r\n{SMUGGLED}").as_bytes());
}

#[test]
fn chunk_size_followed_by_space_is_400() {
    // A lenient parser (like the test backend) reads "5 " as 5, ends the
    // body at "0", and then sees the smuggled request.
    assert_bad_chunked(format!("5 \r\nhello\r\n0\r\n\r\n{SMUGGLED}").as_bytes());
}

#[test]
fn chunk_data_without_crlf_is_400() {
    // Data not followed by CRLF: a parser that skips two bytes blindly
    // would take "0\r" as the delimiter and go astray.
    assert_bad_chunked(format!("5\r\nhelloXX0\r\n\r\n{SMUGGLED}").as_bytes());
}

#[test]
fn chunk_size_overflow_is_400() {
    // 19 hex digits: overflows 64 bits; a wrapping parser might read a
    // small size and find the smuggled request in the "data".
    assert_bad_chunked(format!("fffffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}").as_bytes());
}

// ---- Fields named by Connection -------------------------------------------------------

/// `Connection` may name Content-Length (or Host), and forklb drops what
/// Connection names; but the body was framed by that Content-Length, so
/// the request sent upstream must carry it. Dropped, the body — here a
/// whole request — would reach the backend as the next request, past
/// forklb's routing (nginx keeps the field).
#[test]
fn connection_naming_content_length_keeps_the_body_framed_upstream() {
    for (version, connection) in [
        ("1.1", "Content-Length"),
        ("1.1", "keep-alive, content-length"),
        ("1.0", "keep-alive, Content-Length, Host"),
    ] {
        let (b1, lb) = setup();
        let raw = format!(
            "POST /x HTTP/{version}\r\nHost: a.test\r\nConnection: {connection}\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
            SMUGGLED.len()
        );
        let mut c = Conn::open(lb.port()).expect("connect");
        c.set_read_timeout(Duration::from_secs(3));
        c.send(raw.as_bytes()).expect("send");
        let r = c.read_response().expect("response");
        assert_eq!(r.status, 200, "{connection}: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
        let seen = b1.requests();
        assert_eq!(seen.len(), 1, "{connection}: {:?}", b1.heads());
        assert_eq!(seen[0].path, "/x");
        assert_eq!(
            seen[0].header("content-length"),
            Some(SMUGGLED.len().to_string().as_str()),
            "{connection}: {:?}",
            seen[0].headers
        );
        assert_eq!(seen[0].body, SMUGGLED.as_bytes());
        assert_eq!(
            seen[0].header("host"),
            Some("a.test"),
            "{:?}",
            seen[0].headers
        );
        assert!(
            !b1.heads().iter().any(|h| h.contains("/smuggled")),
            "{connection}: smuggled request reached the backend: {:?}",
            b1.heads()
        );
    }
}

/// The same in a response: a Content-Length the upstream's Connection
/// names still frames the body forklb relays, so a kept-alive client
/// connection stays in step (the second response is read as such).
#[test]
fn connection_naming_content_length_keeps_the_response_framed() {
    let b1 = scripted(
        "b1",
        vec![Script::new(
            "/named",
            b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
            Then::KeepAlive,
        )],
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(3));
    for i in 0..2 {
        let r = c.request("GET", "/named", &[], b"").expect("response");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "hello"),
            "{i}: {r:?}"
        );
        assert_eq!(r.header("content-length"), Some("5"), "{i}: {r:?}");
    }
}

#[test]
fn trailer_that_frames_the_message_is_400() {
    for trailer in [
        "Content-Length: 99",
        "Transfer-Encoding: chunked",
        "Host: evil.test",
    ] {
        assert_bad_chunked(format!("5\r\nhello\r\n0\r\n{trailer}\r\n\r\n{SMUGGLED}").as_bytes());
    }
}

// ---- CONNECT ---------------------------------------------------------------------------

/// forklb offers no tunnels: a CONNECT is never forwarded (a 2xx from the
/// upstream would leave the client on a connection it takes for a
/// tunnel). nginx's answers: 405 for an origin- or absolute-form target,
/// 400 for the authority form.
#[test]
fn connect_is_never_forwarded() {
    assert_refused(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", &[405]);
    assert_refused(b"CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", &[405]);
    assert_refused(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", &[400]);
}
