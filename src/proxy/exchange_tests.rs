//! Protocol edge cases of one exchange, driven in-process with scripted
//! client and upstream ends (`harness`): each runs in milliseconds, without
//! a forklb or backend process. The end-to-end behaviour of the same
//! features is covered by the integration tests in `tests/`.

use super::harness::Harness;

const OK_HI: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

#[test]
fn a_request_head_split_byte_by_byte_is_forwarded_whole() {
    let mut h = Harness::standard();
    h.client_send_bytewise(b"GET /split HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n");
    let req = h.upstream_request();
    assert_eq!(req.start_line(), "GET /split HTTP/1.1");
    assert_eq!(req.header("x-a"), Some("1"));
    h.upstream_send(OK_HI);
    let resp = h.client_response();
    assert_eq!((resp.status, resp.body_str().as_str()), (200, "hi"));
    assert!(h.client_open(), "a keep-alive client connection stays open");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = Harness::standard();
    h.client_send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n");
    let first = h.upstream_request();
    assert_eq!(first.start_line(), "GET /one HTTP/1.1");
    // One request at a time: the second waits for the first response.
    assert!(
        h.upstream_received().is_empty(),
        "the second request went upstream before the first was answered"
    );
    h.upstream_send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    let second = h.upstream_request();
    assert_eq!(second.start_line(), "GET /two HTTP/1.1");
    h.upstream_send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
    assert_eq!(h.client_response().body_str(), "one");
    assert_eq!(h.client_response().body_str(), "two");
    assert_eq!(
        h.upstream_connections(),
        1,
        "the upstream connection is reused"
    );
}

#[test]
fn an_upstream_response_head_split_across_reads_is_relayed() {
    let mut h = Harness::standard();
    h.client_send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.upstream_request();
    h.upstream_send_pieces(&[
        b"HTTP/1.1 200 OK\r\nCont",
        b"ent-Length: 5\r\nX-B: ",
        b"2\r\n\r",
        b"\nhel",
        b"lo",
    ]);
    let resp = h.client_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-b"), Some("2"));
    assert_eq!(resp.body_str(), "hello");
    assert_eq!(
        h.pooled(),
        1,
        "a complete response leaves the connection pooled"
    );
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
const CHUNKS: &[u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

#[test]
fn a_chunked_response_is_relayed_verbatim_to_an_http11_client() {
    let mut h = Harness::standard();
    h.client_send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.upstream_request();
    h.upstream_send_pieces(&[CHUNKED, &CHUNKS[..9], &CHUNKS[9..]]);
    let resp = h.client_response();
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.body, CHUNKS);
    assert!(h.client_open());
}

#[test]
fn a_chunked_response_is_dechunked_for_an_http10_client() {
    let mut h = Harness::standard();
    h.client_send(b"GET / HTTP/1.0\r\n\r\n");
    h.upstream_request();
    h.upstream_send_pieces(&[CHUNKED, &CHUNKS[..9], &CHUNKS[9..]]);
    // No length is known in advance: the body ends with the connection.
    let rest = h.client_closed();
    let text = String::from_utf8_lossy(&rest).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "hello world");
    // The upstream body was read to its end: its connection is reusable.
    assert_eq!(h.pooled(), 1);
}

#[test]
fn an_invalid_upstream_response_is_502_and_the_connection_not_pooled() {
    let mut h = Harness::standard();
    h.client_send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.upstream_request();
    h.upstream_send(b"HTTP/1.1 2x0 Nope\r\nContent-Length: 0\r\n\r\n");
    let resp = h.client_response();
    assert_eq!(resp.status, 502, "{resp:?}");
    // Whatever else that server sends cannot be trusted: the connection
    // is closed, not pooled; so is the client's, after the error.
    h.upstream_closed();
    assert_eq!(h.pooled(), 0);
    h.client_closed();
}

#[test]
fn an_upstream_reset_before_the_response_is_502() {
    let mut h = Harness::standard();
    h.client_send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!(h.upstream_request().body_str(), "ab");
    h.upstream_reset();
    let resp = h.client_response();
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_eq!(h.pooled(), 0);
}

#[test]
fn an_early_upstream_answer_ends_the_upload() {
    let mut h = Harness::standard();
    h.client_send(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    h.client_send(&[b'a'; 1000]);
    let head = h.upstream_head();
    assert!(head.starts_with("PUT /up HTTP/1.1"), "{head}");
    h.upstream_send(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n",
    );
    let resp = h.client_response();
    assert_eq!((resp.status, resp.body_str().as_str()), (413, "big\n"));
    assert_eq!(resp.header("connection"), Some("close"));
    // The request was cut short: that upstream connection is not reused.
    h.upstream_closed();
    assert_eq!(h.pooled(), 0);
    // The client may keep sending a while (lingering close): its bytes are
    // read and dropped, and when it stops, the connection ends with a FIN,
    // not a reset that could destroy the unread response.
    h.client_send(&[b'b'; 1000]);
    h.client_shutdown_write();
    h.client_closed();
    assert!(!h.client_was_reset(), "the client connection was reset");
}

#[test]
fn an_h2c_upgrade_is_forwarded_without_upgrade() {
    let mut h = Harness::standard();
    h.client_send(
        b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    let req = h.upstream_request();
    assert_eq!(req.header("upgrade"), None, "{req:?}");
    assert_eq!(req.header("http2-settings"), None, "{req:?}");
    let conn_tokens = req.header("connection").unwrap_or("").to_ascii_lowercase();
    assert!(!conn_tokens.contains("upgrade"), "{req:?}");
    h.upstream_send(OK_HI);
    assert_eq!(h.client_response().status, 200);
}

/// `STANDARD` with a 4 KiB head limit.
fn small_heads() -> Harness {
    Harness::new(&format!(
        "limits: {{max_header_bytes: 4k}}\n{}",
        super::harness::STANDARD
    ))
}

#[test]
fn a_too_long_request_line_is_414_and_nothing_goes_upstream() {
    let mut h = small_heads();
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(5000));
    h.client_send(long.as_bytes());
    let resp = h.client_response();
    assert_eq!(resp.status, 414, "{resp:?}");
    h.client_closed();
    assert_eq!(h.upstream_connections(), 0);
}

#[test]
fn a_request_line_that_never_ends_within_the_limit_is_414() {
    let mut h = small_heads();
    h.client_send(b"GET /");
    for _ in 0..5 {
        h.client_send(&[b'a'; 1000]);
    }
    let resp = h.client_response();
    assert_eq!(resp.status, 414, "{resp:?}");
    assert_eq!(h.upstream_connections(), 0);
}

#[test]
fn long_header_fields_are_431() {
    let mut h = small_heads();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    h.client_send(big.as_bytes());
    assert_eq!(h.client_response().status, 431);
    assert_eq!(h.upstream_connections(), 0);
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_nothing_goes_upstream() {
    let mut h = Harness::standard();
    h.client_send(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let resp = h.client_response();
    assert_eq!(resp.status, 400, "{resp:?}");
    // One answer, and never one to the request smuggled in the body.
    assert!(h.client_closed().is_empty(), "{:?}", h.client_received());
    assert_eq!(h.upstream_bytes(), 0);
}

#[test]
fn a_chunked_upload_split_across_reads_is_forwarded_whole() {
    let mut h = Harness::standard();
    h.client_send_pieces(&[
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"3\r\nab",
        b"c\r\n",
        b"0\r\n",
        b"\r\n",
    ]);
    let req = h.upstream_request();
    assert_eq!(req.start_line(), "POST /up HTTP/1.1");
    assert_eq!(req.body, b"3\r\nabc\r\n0\r\n\r\n");
    h.upstream_send(OK_HI);
    assert_eq!(h.client_response().status, 200);
}

#[test]
fn a_response_to_head_has_no_body_and_the_connection_goes_on() {
    let mut h = Harness::standard();
    h.client_send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
    h.upstream_request();
    // The length of the body a GET would get, and no body.
    h.upstream_send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    let resp = h.client_response_to_head();
    assert_eq!(resp.header("content-length"), Some("100"));
    // Nothing more was waited for: the next request goes out at once, on
    // the same upstream connection.
    h.client_send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.upstream_request().start_line(), "GET /next HTTP/1.1");
    h.upstream_send(OK_HI);
    assert_eq!(h.client_response().body_str(), "hi");
    assert_eq!(h.upstream_connections(), 1);
}

#[test]
fn an_upstream_closing_inside_the_body_closes_the_client_connection() {
    let mut h = Harness::standard();
    h.client_send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.upstream_request();
    h.upstream_send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    h.upstream_close();
    // The head and what came of the body were relayed; the rest cannot
    // be, so the client must see the connection end short of the length.
    let got = h.client_closed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\nhalf"), "{text}");
    assert_eq!(h.pooled(), 0);
}

/// `STANDARD` with short client-header and upstream-read timeouts: the
/// harness runs the connection's timeout when its deadline passes, so
/// these tests wait that long and no longer.
fn short_timeouts() -> Harness {
    Harness::new(&format!(
        "timeouts: {{client_header: 100ms, upstream_read: 100ms}}\n{}",
        super::harness::STANDARD
    ))
}

#[test]
fn a_request_head_that_stalls_is_408() {
    let mut h = short_timeouts();
    h.client_send(b"GET / HTTP/1.1\r\nHost:");
    let resp = h.client_response();
    assert_eq!(resp.status, 408, "{resp:?}");
    h.client_closed();
    assert_eq!(h.upstream_connections(), 0);
}

#[test]
fn an_upstream_that_does_not_answer_in_time_is_504() {
    let mut h = short_timeouts();
    h.client_send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.upstream_request();
    let resp = h.client_response();
    assert_eq!(resp.status, 504, "{resp:?}");
    h.upstream_closed();
    assert_eq!(h.pooled(), 0);
}
