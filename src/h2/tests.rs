//! Connection-level tests of `ServerConn`: crafted client bytes in, our
//! frames and events out. Each defence is driven past its bound and must
//! end in GOAWAY with the right code after bounded work.

use std::time::{Duration, Instant};

use super::frame::{self, Head};
use super::hpack;
use super::{code, Event, ServerConn, Settings, PREFACE};

/// The client side of the tests: builds frames.
struct Peer {
    enc: hpack::Encoder,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            enc: hpack::Encoder::default(),
        }
    }

    fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let mut block = Vec::new();
        self.enc.encode(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut block,
        );
        let mut out = Vec::new();
        frame::write_headers(&mut out, stream, &block, end_stream, frame::MIN_MAX_FRAME);
        out
    }

    fn request(&mut self, stream: u32, extra: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let mut fields = vec![
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "a.test"),
        ];
        fields.extend_from_slice(extra);
        self.headers(stream, &fields, end_stream)
    }
}

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_head(&mut v, payload.len(), kind, flags, stream);
    v.extend_from_slice(payload);
    v
}

fn data(stream: u32, payload: &[u8], end_stream: bool) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_data(&mut v, stream, payload, end_stream);
    v
}

/// A connection past the preface, with our SETTINGS acknowledged and the
/// output drained.
fn open(settings: Settings) -> ServerConn {
    let mut c = ServerConn::new(settings);
    let mut hello = PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    frame::write_settings_ack(&mut hello);
    assert_eq!(c.recv(&hello, Instant::now()), hello.len());
    take(&mut c);
    c
}

/// Drains and parses our output.
fn take(c: &mut ServerConn) -> Vec<(Head, Vec<u8>)> {
    let mut frames = Vec::new();
    let out = c.output().to_vec();
    c.advance_output(out.len());
    let mut rest = &out[..];
    while let Some(head) = Head::parse(rest) {
        let end = frame::HEADER_LEN + head.len as usize;
        frames.push((head, rest[frame::HEADER_LEN..end].to_vec()));
        rest = &rest[end..];
    }
    frames
}

fn events(c: &mut ServerConn) -> Vec<Event> {
    std::iter::from_fn(|| c.next_event()).collect()
}

fn goaway(frames: &[(Head, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|(h, _)| h.kind == frame::GOAWAY)
        .map(|(_, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

fn rsts(frames: &[(Head, Vec<u8>)]) -> Vec<(u32, u32)> {
    frames
        .iter()
        .filter(|(h, _)| h.kind == frame::RST_STREAM)
        .map(|(h, p)| (h.stream, u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
        .collect()
}

fn window_updates(frames: &[(Head, Vec<u8>)]) -> Vec<(u32, u32)> {
    frames
        .iter()
        .filter(|(h, _)| h.kind == frame::WINDOW_UPDATE)
        .map(|(h, p)| (h.stream, u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
        .collect()
}

/// Feeds `bytes` until the connection closes; returns the GOAWAY code and
/// how many bytes it took.
fn flood(c: &mut ServerConn, unit: &[u8], max_units: usize, now: Instant) -> (Option<u32>, usize) {
    for i in 0..max_units {
        c.recv(unit, now);
        if c.is_closing() {
            return (goaway(&take(c)), i + 1);
        }
        c.advance_output(c.output().len());
    }
    (None, max_units)
}

#[test]
fn h2_server_request_response() {
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    let mut bytes = p.request(
        1,
        &[
            ("content-length", "5"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ],
        false,
    );
    bytes.extend(data(1, b"hello", true));
    // Byte by byte: the same events as all at once.
    let mut pending = Vec::new();
    for b in &bytes {
        pending.push(*b);
        let n = c.recv(&pending, Instant::now());
        pending.drain(..n);
    }
    assert!(pending.is_empty());
    let ev = events(&mut c);
    match &ev[..] {
        [Event::Request {
            stream: 1,
            head,
            end_stream: false,
        }, Event::Data {
            stream: 1,
            data,
            end_stream: true,
        }] => {
            assert_eq!(head.content_length, Some(5));
            assert!(head
                .headers()
                .iter()
                .any(|f| f == (&b"cookie"[..], &b"a=1; b=2"[..])));
            assert_eq!(data, b"hello");
        }
        other => panic!("{other:?}"),
    }
    c.consumed(1, 5);
    c.send_headers(1, 200, &[(b"content-type", b"text/plain")], false);
    assert_eq!(c.send_data(1, b"world", true), 5);
    let out = take(&mut c);
    let kinds: Vec<u8> = out.iter().map(|(h, _)| h.kind).collect();
    assert_eq!(kinds, [frame::HEADERS, frame::DATA]);
    assert_eq!(out[1].0.flags & frame::END_STREAM, frame::END_STREAM);
    assert_eq!(c.open_streams(), 0);
    // A gone stream is ignored.
    c.send_headers(1, 200, &[], true);
    assert_eq!(c.send_data(1, b"x", true), 0);
    assert!(c.output().is_empty());
}

#[test]
fn h2_server_content_length_mismatch_resets() {
    for (cl, body) in [("5", &b"abc"[..]), ("2", &b"abc"[..])] {
        let mut c = open(Settings::default());
        let mut p = Peer::new();
        let mut bytes = p.request(1, &[("content-length", cl)], false);
        bytes.extend(data(1, body, true));
        c.recv(&bytes, Instant::now());
        let ev = events(&mut c);
        assert!(matches!(ev.first(), Some(Event::Request { .. })), "{ev:?}");
        assert_eq!(ev.last(), Some(&Event::Reset { stream: 1 }), "{ev:?}");
        assert!(!ev.iter().any(|e| matches!(
            e,
            Event::Data {
                end_stream: true,
                ..
            }
        )));
        assert_eq!(rsts(&take(&mut c)), [(1, code::PROTOCOL_ERROR)]);
    }
    // content-length with END_STREAM on HEADERS: malformed, never a Request.
    let mut c = open(Settings::default());
    c.recv(
        &Peer::new().request(1, &[("content-length", "3")], true),
        Instant::now(),
    );
    assert!(events(&mut c).is_empty());
    assert_eq!(rsts(&take(&mut c)), [(1, code::PROTOCOL_ERROR)]);
}

#[test]
fn h2_server_malformed_heads_reset_without_request() {
    let vectors: &[&[(&str, &str)]] = &[
        &[("X-Upper", "a")],
        &[("x-a", "a\r\nb")],
        &[("x-a", "a\0")],
        // Control characters the HTTP/1.1 parser refuses too.
        &[("x-a", "a\x01b")],
        &[("x-a", "a\x7fb")],
        &[("x-a", "a\x1bb")],
        &[("transfer-encoding", "chunked")],
        &[("connection", "close")],
        &[("te", "gzip")],
        &[(":protocol", "websocket")],
    ];
    for (i, extra) in vectors.iter().enumerate() {
        let mut c = open(Settings::default());
        let mut p = Peer::new();
        c.recv(&p.request(1, extra, true), Instant::now());
        assert!(events(&mut c).is_empty(), "{i}");
        assert_eq!(
            rsts(&take(&mut c)),
            [(1, code::PROTOCOL_ERROR)],
            "{extra:?}"
        );
        // The connection lives on, the HPACK state in step.
        c.recv(&p.request(3, &[], true), Instant::now());
        assert!(matches!(
            events(&mut c)[..],
            [Event::Request { stream: 3, .. }]
        ));
    }
}

#[test]
fn h2_server_refuses_streams_over_the_limit() {
    let mut c = open(Settings {
        max_concurrent_streams: 2,
        ..Settings::default()
    });
    let mut p = Peer::new();
    for id in [1, 3, 5] {
        c.recv(&p.request(id, &[], false), Instant::now());
    }
    assert_eq!(events(&mut c).len(), 2);
    assert_eq!(rsts(&take(&mut c)), [(5, code::REFUSED_STREAM)]);
    assert_eq!(c.open_streams(), 2);
}

#[test]
fn h2_server_stream_id_rules() {
    let mut c = open(Settings::default());
    c.recv(&Peer::new().request(2, &[], true), Instant::now());
    assert_eq!(goaway(&take(&mut c)), Some(code::PROTOCOL_ERROR));
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    c.recv(&p.request(5, &[], true), Instant::now());
    c.recv(&p.request(3, &[], true), Instant::now());
    assert_eq!(goaway(&take(&mut c)), Some(code::PROTOCOL_ERROR));
    assert!(c.error().is_some());
}

#[test]
fn h2_server_rapid_reset() {
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    let now = Instant::now();
    let mut n = 0;
    for id in (1..100_000u32).step_by(2) {
        let mut b = p.request(id, &[], false);
        b.extend(raw(frame::RST_STREAM, 0, id, &code::CANCEL.to_be_bytes()));
        c.recv(&b, now);
        n += 1;
        if c.is_closing() {
            break;
        }
    }
    assert_eq!(goaway(&take(&mut c)), Some(code::ENHANCE_YOUR_CALM));
    assert!(n <= 101, "{n}");
    assert!(c.error().unwrap().contains("rapid reset"));
}

#[test]
fn h2_server_continuation_flood() {
    // Endless CONTINUATION with content: bounded by the list size limit.
    let mut c = open(Settings::default());
    let mut start = Vec::new();
    frame::write_head(&mut start, 1, frame::HEADERS, 0, 1);
    start.push(0x82);
    c.recv(&start, Instant::now());
    let chunk = raw(frame::CONTINUATION, 0, 1, &[0x82; 16_000]);
    let (code, frames) = flood(&mut c, &chunk, 1000, Instant::now());
    assert_eq!(code, Some(code::ENHANCE_YOUR_CALM));
    assert!(frames <= 6, "{frames}");
    // Endless empty CONTINUATION frames.
    let mut c = open(Settings::default());
    c.recv(&start, Instant::now());
    let (code, frames) = flood(
        &mut c,
        &raw(frame::CONTINUATION, 0, 1, &[]),
        100_000,
        Instant::now(),
    );
    assert_eq!(code, Some(code::ENHANCE_YOUR_CALM));
    assert!(frames <= 101);
}

#[test]
fn h2_server_control_frame_floods() {
    let mut p = Peer::new();
    let mut open_stream = p.request(1, &[], false);
    let floods: Vec<(&str, Vec<u8>)> = vec![
        ("PING", raw(frame::PING, 0, 0, &[0; 8])),
        ("SETTINGS", raw(frame::SETTINGS, 0, 0, &[])),
        ("PRIORITY", raw(frame::PRIORITY, 0, 1, &[0, 0, 0, 0, 16])),
        ("empty DATA", data(1, b"", false)),
        (
            "WINDOW_UPDATE",
            raw(frame::WINDOW_UPDATE, 0, 1, &1u32.to_be_bytes()),
        ),
        ("unknown", raw(0xee, 0, 0, b"x")),
    ];
    for (name, unit) in floods {
        let mut c = open(Settings::default());
        c.recv(&std::mem::take(&mut open_stream), Instant::now());
        open_stream = Peer::new().request(1, &[], false);
        let (code, frames) = flood(&mut c, &unit, 100_000, Instant::now());
        assert_eq!(code, Some(code::ENHANCE_YOUR_CALM), "{name}");
        assert!(frames <= 10_001, "{name}: {frames}");
        assert!(c.error().is_some_and(|e| e.contains("flood")), "{name}");
    }
    // The same frames spread over time are fine.
    let mut c = open(Settings::default());
    let t0 = Instant::now();
    for i in 0..500u64 {
        c.recv(
            &raw(frame::PING, 0, 0, &[0; 8]),
            t0 + Duration::from_millis(i * 50),
        );
    }
    assert!(!c.is_closing());
}

#[test]
fn h2_server_output_bound_against_a_peer_that_does_not_read() {
    let mut c = open(Settings::default());
    let t0 = Instant::now();
    let ping = raw(frame::PING, 0, 0, &[7; 8]);
    let mut saw_backpressure = false;
    for i in 0..200_000u64 {
        // Within the PING budget: 50 per second of the test clock.
        c.recv(&ping, t0 + Duration::from_millis(i * 20));
        saw_backpressure |= !c.wants_read();
        if c.is_closing() {
            break;
        }
    }
    assert!(saw_backpressure);
    assert!(c.is_closing());
    assert!(c.output().len() < 1024 * 1024 + 1024);
    assert!(c.error().unwrap().contains("not reading"));
}

#[test]
fn h2_server_hpack_bomb_resets_the_stream_only() {
    let mut c = open(Settings::default());
    // A 4000-byte entry, then 16000 references to it (64 MB decoded).
    let mut block = vec![0x82, 0x87, 0x84, 0x40, 0x01, b'x'];
    loona_hpack::encoder::encode_integer_into(4000, 7, 0, &mut block).unwrap();
    block.extend(std::iter::repeat_n(b'a', 4000));
    block.extend(std::iter::repeat_n(0x80 | 62, 16_000));
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 1, &block, true, frame::MIN_MAX_FRAME);
    c.recv(&bytes, Instant::now());
    assert!(events(&mut c).is_empty());
    assert_eq!(rsts(&take(&mut c)), [(1, code::PROTOCOL_ERROR)]);
    assert!(!c.is_closing());
    // An oversized dynamic table update is a connection error.
    let mut c = open(Settings::default());
    let mut bytes = Vec::new();
    frame::write_headers(
        &mut bytes,
        1,
        &[0x3f, 0xe2, 0x1f, 0x82],
        true,
        frame::MIN_MAX_FRAME,
    );
    c.recv(&bytes, Instant::now());
    assert_eq!(goaway(&take(&mut c)), Some(code::COMPRESSION_ERROR));
}

#[test]
fn h2_server_receive_window_follows_consumed() {
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    c.recv(&p.request(1, &[], false), Instant::now());
    // A second stream: the connection window grows past the stream's, so
    // the overflow below is the stream's.
    c.recv(&p.request(3, &[], false), Instant::now());
    assert_eq!(window_updates(&take(&mut c)), [(0, 65_535)]);
    let chunk = vec![0u8; 16_383];
    for _ in 0..4 {
        c.recv(&data(1, &chunk, false), Instant::now());
    }
    c.recv(&data(1, &[0; 3], false), Instant::now()); // 65535 in all
                                                      // Nothing forwarded yet: nothing re-granted.
    assert!(window_updates(&take(&mut c)).is_empty());
    c.consumed(1, 40_000);
    assert_eq!(window_updates(&take(&mut c)), [(1, 40_000), (0, 40_000)]);
    // Past the stream window: FLOW_CONTROL_ERROR on the stream.
    c.recv(&data(1, &vec![0; 16_384], false), Instant::now());
    c.recv(&data(1, &vec![0; 16_384], false), Instant::now());
    c.recv(&data(1, &vec![0; 16_384], false), Instant::now());
    assert!(rsts(&take(&mut c)).contains(&(1, code::FLOW_CONTROL_ERROR)));
    assert!(events(&mut c).contains(&Event::Reset { stream: 1 }));
}

#[test]
fn h2_server_send_windows() {
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    c.recv(
        &raw(frame::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]),
        Instant::now(),
    );
    c.recv(&p.request(1, &[], true), Instant::now());
    take(&mut c);
    c.send_headers(1, 200, &[], false);
    assert_eq!(c.send_window(1), 10);
    assert_eq!(c.send_data(1, &[1; 100], true), 10);
    assert_eq!(c.send_data(1, &[1; 90], true), 0);
    c.recv(
        &raw(frame::WINDOW_UPDATE, 0, 1, &50u32.to_be_bytes()),
        Instant::now(),
    );
    assert_eq!(c.send_window(1), 50);
    // Overflowing the stream window: stream error.
    c.recv(
        &raw(frame::WINDOW_UPDATE, 0, 1, &frame::MAX_WINDOW.to_be_bytes()),
        Instant::now(),
    );
    assert!(rsts(&take(&mut c)).contains(&(1, code::FLOW_CONTROL_ERROR)));
    assert_eq!(c.send_window(1), 0);
    // Overflowing the connection window: connection error.
    c.recv(
        &raw(frame::WINDOW_UPDATE, 0, 0, &frame::MAX_WINDOW.to_be_bytes()),
        Instant::now(),
    );
    assert_eq!(goaway(&take(&mut c)), Some(code::FLOW_CONTROL_ERROR));
}

#[test]
fn h2_server_trailers_and_frame_splitting() {
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    let mut bytes = p.request(1, &[], false);
    bytes.extend(data(1, b"abc", false));
    bytes.extend(p.headers(1, &[("grpc-timeout", "1S")], true));
    bytes.extend(p.request(3, &[], true));
    c.recv(&bytes, Instant::now());
    let ev = events(&mut c);
    assert!(
        matches!(&ev[2], Event::Trailers { stream: 1, trailers } if trailers.get(0).is_some_and(|f| f.0 == b"grpc-timeout"))
    );
    // Trailers without END_STREAM, or with a pseudo-header: malformed.
    c.recv(&p.request(5, &[], false), Instant::now());
    c.recv(&p.headers(5, &[("x", "y")], false), Instant::now());
    assert_eq!(rsts(&take(&mut c)), [(5, code::PROTOCOL_ERROR)]);
    // Data split by the peer's max frame size; an empty END_STREAM frame.
    c.send_headers(1, 200, &[], false);
    assert_eq!(c.send_data(1, &[0; 40_000], false), 40_000);
    assert_eq!(c.send_data(1, b"", true), 0);
    let sizes: Vec<(u32, u8)> = take(&mut c)
        .iter()
        .filter(|(h, _)| h.kind == frame::DATA)
        .map(|(h, _)| (h.len, h.flags))
        .collect();
    assert_eq!(
        sizes,
        [(16_384, 0), (16_384, 0), (7_232, 0), (0, frame::END_STREAM)]
    );
    assert_eq!(c.open_streams(), 1);
}

#[test]
fn h2_server_go_away_drains() {
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    c.recv(&p.request(1, &[], true), Instant::now());
    c.go_away();
    c.recv(&p.request(3, &[], true), Instant::now());
    let out = take(&mut c);
    assert_eq!(goaway(&out), Some(code::NO_ERROR));
    assert_eq!(rsts(&out), [(3, code::REFUSED_STREAM)]);
    assert!(!c.is_done());
    c.send_headers(1, 204, &[], true);
    take(&mut c);
    assert!(c.is_done());
    assert!(c.error().is_none());
}

fn goaway_last(frames: &[(Head, Vec<u8>)]) -> Vec<u32> {
    frames
        .iter()
        .filter(|(h, _)| h.kind == frame::GOAWAY)
        .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        .collect()
}

/// RFC 9113 §6.8: GOAWAY(2^31-1) and a PING first; a stream the client
/// opened meanwhile is served; the final GOAWAY (real last stream) follows
/// the PING's ACK, after which new streams are refused.
#[test]
fn h2_server_shutdown_in_two_goaways_after_ping_ack() {
    let now = Instant::now();
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    c.recv(&p.request(1, &[], true), now);
    c.shutdown(now);
    let out = take(&mut c);
    assert_eq!(goaway_last(&out), [frame::MAX_WINDOW]);
    assert_eq!(goaway(&out), Some(code::NO_ERROR));
    let ping = out
        .iter()
        .find(|(h, _)| h.kind == frame::PING && h.flags & frame::ACK == 0)
        .map(|(_, p)| p.clone())
        .expect("a PING after the first GOAWAY");
    assert_eq!(c.drain_deadline(), Some(now + super::conn::DRAIN_WAIT));
    // In flight when the GOAWAY was sent: still a request.
    c.recv(&p.request(3, &[], true), now);
    assert!(rsts(&take(&mut c)).is_empty());
    let ids: Vec<u32> = events(&mut c)
        .iter()
        .filter_map(|e| match e {
            Event::Request { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [1, 3]);
    assert!(!c.drained());
    // The ACK: the final GOAWAY names stream 3.
    let mut ack = ping.try_into().map(|d: [u8; 8]| {
        let mut v = Vec::new();
        frame::write_ping(&mut v, true, d);
        v
    });
    c.recv(ack.as_mut().unwrap(), now);
    assert!(c.drained());
    assert_eq!(goaway_last(&take(&mut c)), [3]);
    c.recv(&p.request(5, &[], true), now);
    assert_eq!(rsts(&take(&mut c)), [(5, code::REFUSED_STREAM)]);
    c.send_headers(1, 204, &[], true);
    c.send_headers(3, 204, &[], true);
    take(&mut c);
    assert!(c.is_done());
}

/// Without the PING's ACK, the final GOAWAY goes out after DRAIN_WAIT.
#[test]
fn h2_server_shutdown_final_goaway_without_ack() {
    let now = Instant::now();
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    c.recv(&p.request(1, &[], true), now);
    c.shutdown(now);
    take(&mut c);
    c.drain_tick(now + Duration::from_millis(10));
    assert!(!c.drained());
    c.drain_tick(now + super::conn::DRAIN_WAIT);
    assert!(c.drained());
    assert_eq!(goaway_last(&take(&mut c)), [1]);
    // A second shutdown sends nothing more.
    c.shutdown(now);
    assert!(take(&mut c).is_empty());
}

/// A header block waiting for its CONTINUATION is reported with its start,
/// and its timeout ends the connection.
#[test]
fn h2_server_header_block_timeout() {
    let t0 = Instant::now();
    let mut c = open(Settings::default());
    let mut p = Peer::new();
    let mut f = p.request(1, &[], true);
    f[4] &= !frame::END_HEADERS;
    c.recv(&f, t0);
    assert_eq!(c.header_block_since(), Some(t0));
    assert!(events(&mut c).is_empty());
    c.header_block_timeout();
    assert!(c.is_closing());
    assert_eq!(goaway(&take(&mut c)), Some(code::PROTOCOL_ERROR));
    // A complete block leaves nothing pending.
    let mut c = open(Settings::default());
    c.recv(&Peer::new().request(1, &[], true), t0);
    assert_eq!(c.header_block_since(), None);
    c.header_block_timeout();
    assert!(!c.is_closing());
}

#[test]
fn h2_server_bad_preface() {
    let mut c = ServerConn::new(Settings::default());
    assert_eq!(c.recv(b"PRI * HTTP/2", Instant::now()), 0);
    assert!(!c.is_closing());
    c.recv(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Instant::now());
    assert!(c.is_closing());
    assert_eq!(goaway(&take(&mut c)), Some(code::PROTOCOL_ERROR));
}

// ---- ClientConn paired with ServerConn in memory ----

use super::{ClientConn, ClientEvent, RequestHead};

/// Moves bytes both ways until neither side has output.
fn pump(client: &mut ClientConn, server: &mut ServerConn) {
    for _ in 0..1000 {
        let (a, b) = (client.output().to_vec(), server.output().to_vec());
        if a.is_empty() && b.is_empty() {
            return;
        }
        client.advance_output(a.len());
        server.advance_output(b.len());
        assert_eq!(server.recv(&a, Instant::now()), a.len());
        assert_eq!(client.recv(&b, Instant::now()), b.len());
    }
    panic!("pump never settled");
}

fn head(method: &str) -> RequestHead {
    RequestHead::new(
        method.as_bytes(),
        b"https",
        Some(b"up.test"),
        b"/x",
        [(&b"x-id"[..], &b"7"[..]), (b"connection", b"close")],
        None,
    )
}

fn client_events(c: &mut ClientConn) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.next_event()).collect()
}

#[test]
fn h2_client_server_roundtrip() {
    let mut client = ClientConn::new(Settings::default());
    let mut server = ServerConn::new(Settings::default());
    let id = client.send_request(&head("POST"), false).unwrap();
    assert_eq!(client.send_data(id, b"ping", true), 4);
    pump(&mut client, &mut server);
    let ev = events(&mut server);
    match &ev[..] {
        [Event::Request { stream, head, .. }, Event::Data {
            data,
            end_stream: true,
            ..
        }] => {
            assert_eq!(*stream, id);
            assert_eq!(head.path(), b"/x");
            // Hop-by-hop fields never travel.
            assert_eq!(format!("{:?}", head.headers()), r#"[("x-id", "7")]"#);
            assert_eq!(data, b"ping");
        }
        other => panic!("{other:?}"),
    }
    server.consumed(id, 4);
    server.send_headers(id, 200, &[(b"content-length", b"4")], false);
    assert_eq!(server.send_data(id, b"pong", false), 4);
    server.send_trailers(id, &[(b"grpc-status", b"0")]);
    pump(&mut client, &mut server);
    let ev = client_events(&mut client);
    assert!(matches!(
        &ev[0],
        ClientEvent::Response {
            status: 200,
            end_stream: false,
            ..
        }
    ));
    assert!(matches!(&ev[1], ClientEvent::Data { data, .. } if data == b"pong"));
    assert!(
        matches!(&ev[2], ClientEvent::Trailers { trailers, .. } if trailers.get(0).is_some_and(|f| f.0 == b"grpc-status"))
    );
    assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
    assert!(client.error().is_none() && server.error().is_none());
}

#[test]
fn h2_client_respects_max_concurrent_streams() {
    let mut client = ClientConn::new(Settings::default());
    let mut server = ServerConn::new(Settings {
        max_concurrent_streams: 2,
        ..Settings::default()
    });
    pump(&mut client, &mut server);
    let a = client.send_request(&head("GET"), true).unwrap();
    client.send_request(&head("GET"), true).unwrap();
    assert!(!client.can_open_stream());
    assert_eq!(client.send_request(&head("GET"), true), None);
    pump(&mut client, &mut server);
    assert_eq!(events(&mut server).len(), 2);
    server.send_headers(a, 204, &[], true);
    pump(&mut client, &mut server);
    assert!(matches!(
        client_events(&mut client)[..],
        [ClientEvent::Response {
            end_stream: true,
            ..
        }]
    ));
    assert!(client.can_open_stream());
    // HEAD: a length without a body is fine; on a GET it is malformed.
    let h = client.send_request(&head("HEAD"), true).unwrap();
    pump(&mut client, &mut server);
    events(&mut server);
    server.send_headers(h, 200, &[(b"content-length", b"10")], true);
    pump(&mut client, &mut server);
    assert!(matches!(
        client_events(&mut client)[..],
        [ClientEvent::Response { status: 200, .. }]
    ));
}

#[test]
fn h2_client_large_body_under_flow_control() {
    let mut client = ClientConn::new(Settings::default());
    let mut server = ServerConn::new(Settings::default());
    let id = client.send_request(&head("POST"), false).unwrap();
    let body = vec![9u8; 300_000];
    let (mut sent, mut got) = (0, 0);
    for _ in 0..10_000 {
        if sent < body.len() {
            sent += client.send_data(id, &body[sent..], true);
        }
        pump(&mut client, &mut server);
        for e in events(&mut server) {
            if let Event::Data { stream, data, .. } = e {
                got += data.len();
                // The upstream takes what it is given.
                server.consumed(stream, data.len());
            }
        }
        if got == body.len() {
            break;
        }
    }
    assert_eq!(got, body.len());
    assert!(server.error().is_none());
}

#[test]
fn h2_client_upload_stopped_after_a_complete_response() {
    let mut client = ClientConn::new(Settings::default());
    let mut server = ServerConn::new(Settings::default());
    let id = client.send_request(&head("POST"), false).unwrap();
    client.send_data(id, b"part", false);
    pump(&mut client, &mut server);
    events(&mut server);
    // An early complete answer: the server stops the upload with NO_ERROR.
    server.send_headers(id, 413, &[], true);
    pump(&mut client, &mut server);
    let ev = client_events(&mut client);
    assert!(
        matches!(
            ev[..],
            [ClientEvent::Response {
                status: 413,
                end_stream: true,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(client.send_window(id), 0);
    assert_eq!(client.open_streams(), 0);
}

#[test]
fn h2_client_sees_server_reset_and_goaway() {
    let mut client = ClientConn::new(Settings::default());
    let mut server = ServerConn::new(Settings::default());
    let a = client.send_request(&head("GET"), true).unwrap();
    pump(&mut client, &mut server);
    server.reset(a, code::INTERNAL_ERROR);
    server.go_away();
    pump(&mut client, &mut server);
    assert_eq!(
        client_events(&mut client),
        [ClientEvent::Reset { stream: a }]
    );
    assert!(!client.can_open_stream());
    assert!(client.is_done() && server.is_done());
}

/// The client role reports which streams' send windows grew (a shared
/// upstream connection wakes only their owners).
#[test]
fn h2_client_reports_opened_windows() {
    let mut client = ClientConn::new(Settings::default());
    let mut server = ServerConn::new(Settings::default());
    let a = client.send_request(&head("POST"), false).unwrap();
    let b = client.send_request(&head("POST"), false).unwrap();
    pump(&mut client, &mut server);
    client.windows_opened();
    // Stream-level updates only: the streams named.
    let mut wu = Vec::new();
    frame::write_window_update(&mut wu, b, 100);
    client.recv(&wu, Instant::now());
    assert_eq!(client.windows_opened(), (false, vec![b]));
    assert_eq!(client.windows_opened(), (false, vec![]));
    // The connection window: every stream.
    wu.clear();
    frame::write_window_update(&mut wu, 0, 100);
    frame::write_window_update(&mut wu, a, 100);
    client.recv(&wu, Instant::now());
    assert!(client.windows_opened().0);
}
