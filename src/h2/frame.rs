//! HTTP/2 frames (RFC 9113 §4 and §6): the 9-byte header, typed frames that
//! borrow their payload from the input, the per-type checks the RFC makes on
//! lengths, stream ids and padding, and the writers for what we send.
//!
//! Parsing never panics: every read goes through `get`/`split_at_checked`
//! style helpers, since all of it is a peer's bytes.

use super::code;

pub const HEADER_LEN: usize = 9;
/// The smallest SETTINGS_MAX_FRAME_SIZE (and the default).
pub const MIN_MAX_FRAME: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE: 2^24-1.
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;
/// Window sizes and increments are 31-bit.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// SETTINGS identifiers (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Why a frame was refused: the RFC error code, and whether only one stream
/// is affected (`stream: Some(id)`, answered with RST_STREAM) or the whole
/// connection (GOAWAY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    pub code: u32,
    pub stream: Option<u32>,
    pub what: &'static str,
}

impl FrameError {
    pub fn conn(code: u32, what: &'static str) -> FrameError {
        FrameError {
            code,
            stream: None,
            what,
        }
    }
    pub fn stream(stream: u32, code: u32, what: &'static str) -> FrameError {
        FrameError {
            code,
            stream: Some(stream),
            what,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stream {
            Some(id) => write!(f, "{} (stream {id}, code {})", self.what, self.code),
            None => write!(f, "{} (code {})", self.what, self.code),
        }
    }
}

/// The 9-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8]) -> Option<Head> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Head {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW,
        })
    }
}

/// A stream dependency (HEADERS with PRIORITY flag, or PRIORITY frames).
/// forklb does not schedule by priority; only the self-dependency check
/// needs the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub depends_on: u32,
    pub exclusive: bool,
    pub weight: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `flow_len` is the whole payload length (padding included): that is
    /// what flow control counts.
    Data {
        stream: u32,
        data: &'a [u8],
        end_stream: bool,
        flow_len: u32,
    },
    Headers {
        stream: u32,
        block: &'a [u8],
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: u32,
    },
    /// `params` is the validated payload; read it with [`settings_params`].
    Settings {
        ack: bool,
        params: &'a [u8],
    },
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        block: &'a [u8],
        end_headers: bool,
    },
    /// Unknown types are ignored (RFC 9113 §4.1), but still counted against
    /// the flood budget and still break a header block.
    Unknown {
        kind: u8,
        stream: u32,
    },
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// The SETTINGS parameters of a payload [`decode`] has validated.
pub fn settings_params(params: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    params.chunks_exact(6).map(|p| {
        let id = u16::from_be_bytes([p[0], p[1]]);
        (id, u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
    })
}

/// Strips padding (PADDED flag): the pad length byte, then the content,
/// then that many zero bytes. Padding as long as the payload is a
/// connection PROTOCOL_ERROR (§6.1, §6.2).
fn unpad(payload: &[u8], flags: u8) -> Result<&[u8], FrameError> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or(FrameError::conn(
        code::FRAME_SIZE_ERROR,
        "padded frame without pad length",
    ))?;
    let end = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(FrameError::conn(
            code::PROTOCOL_ERROR,
            "padding exceeds the payload",
        ))?;
    Ok(rest.get(..end).unwrap_or_default())
}

fn parse_priority(stream: u32, b: &[u8]) -> Result<Priority, FrameError> {
    let word = be32(b).ok_or(FrameError::stream(
        stream,
        code::FRAME_SIZE_ERROR,
        "short priority fields",
    ))?;
    let p = Priority {
        depends_on: word & MAX_WINDOW,
        exclusive: word & !MAX_WINDOW != 0,
        weight: b.get(4).copied().unwrap_or(0),
    };
    Ok(p)
}

/// Decodes the first frame in `buf`. `Ok(None)`: incomplete (read more).
/// `max_frame` is our SETTINGS_MAX_FRAME_SIZE: a longer frame is refused as
/// soon as its header is seen, so it is never buffered.
pub fn decode(buf: &[u8], max_frame: u32) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(head) = Head::parse(buf) else {
        return Ok(None);
    };
    if head.len > max_frame {
        return Err(FrameError::conn(
            code::FRAME_SIZE_ERROR,
            "frame larger than SETTINGS_MAX_FRAME_SIZE",
        ));
    }
    let total = HEADER_LEN + head.len as usize;
    let Some(payload) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((parse(head, payload)?, total)))
}

/// Checks and types one frame whose payload is complete.
pub fn parse(head: Head, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    check_scope(head)?;
    let Head {
        kind,
        flags,
        stream,
        len,
    } = head;
    Ok(match kind {
        DATA => Frame::Data {
            stream,
            data: unpad(payload, flags)?,
            end_stream: flags & END_STREAM != 0,
            flow_len: len,
        },
        HEADERS => parse_headers(stream, flags, payload)?,
        PRIORITY => parse_priority_frame(stream, payload)?,
        RST_STREAM => Frame::RstStream {
            stream,
            code: u32::from_be_bytes(fixed(payload, "RST_STREAM length is not 4")?),
        },
        SETTINGS => parse_settings(flags, payload)?,
        PUSH_PROMISE => Frame::PushPromise { stream },
        PING => Frame::Ping {
            ack: flags & ACK != 0,
            data: fixed(payload, "PING length is not 8")?,
        },
        GOAWAY => parse_goaway(payload)?,
        WINDOW_UPDATE => parse_window_update(stream, payload)?,
        CONTINUATION => Frame::Continuation {
            stream,
            block: payload,
            end_headers: flags & END_HEADERS != 0,
        },
        kind => Frame::Unknown { kind, stream },
    })
}

/// Stream frames need a stream id, connection frames must have none
/// (§6: a connection PROTOCOL_ERROR either way). WINDOW_UPDATE and unknown
/// types may be either.
fn check_scope(head: Head) -> Result<(), FrameError> {
    let needs_stream = matches!(
        head.kind,
        DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION
    );
    let needs_conn = matches!(head.kind, SETTINGS | PING | GOAWAY);
    if needs_stream && head.stream == 0 {
        return Err(FrameError::conn(
            code::PROTOCOL_ERROR,
            "stream frame on stream 0",
        ));
    }
    if needs_conn && head.stream != 0 {
        return Err(FrameError::conn(
            code::PROTOCOL_ERROR,
            "connection frame on a stream",
        ));
    }
    Ok(())
}

/// A payload of exactly `N` bytes, else a connection FRAME_SIZE_ERROR.
fn fixed<const N: usize>(payload: &[u8], what: &'static str) -> Result<[u8; N], FrameError> {
    payload
        .try_into()
        .map_err(|_| FrameError::conn(code::FRAME_SIZE_ERROR, what))
}

fn parse_headers(stream: u32, flags: u8, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut block = unpad(payload, flags)?;
    let mut priority = None;
    if flags & PRIORITY_FLAG != 0 {
        let short = FrameError::conn(code::FRAME_SIZE_ERROR, "HEADERS too short for priority");
        let (fields, rest) = block.split_at_checked(5).ok_or(short)?;
        priority = Some(parse_priority(stream, fields)?);
        block = rest;
    }
    Ok(Frame::Headers {
        stream,
        block,
        end_stream: flags & END_STREAM != 0,
        end_headers: flags & END_HEADERS != 0,
        priority,
    })
}

/// PRIORITY errors only concern the stream (§6.3).
fn parse_priority_frame(stream: u32, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    if payload.len() != 5 {
        let what = "PRIORITY length is not 5";
        return Err(FrameError::stream(stream, code::FRAME_SIZE_ERROR, what));
    }
    let priority = parse_priority(stream, payload)?;
    if priority.depends_on == stream {
        let what = "stream depends on itself";
        return Err(FrameError::stream(stream, code::PROTOCOL_ERROR, what));
    }
    Ok(Frame::Priority { stream, priority })
}

fn parse_settings(flags: u8, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let ack = flags & ACK != 0;
    if ack && !payload.is_empty() {
        return Err(FrameError::conn(
            code::FRAME_SIZE_ERROR,
            "SETTINGS ack with a payload",
        ));
    }
    if !payload.len().is_multiple_of(6) {
        let what = "SETTINGS length not a multiple of 6";
        return Err(FrameError::conn(code::FRAME_SIZE_ERROR, what));
    }
    for (id, value) in settings_params(payload) {
        check_setting(id, value)?;
    }
    Ok(Frame::Settings {
        ack,
        params: payload,
    })
}

fn parse_goaway(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let short = FrameError::conn(code::FRAME_SIZE_ERROR, "GOAWAY shorter than 8");
    let last = be32(payload).ok_or(short)?;
    let code = be32(payload.get(4..).unwrap_or_default()).ok_or(short)?;
    Ok(Frame::GoAway {
        last_stream: last & MAX_WINDOW,
        code,
    })
}

fn parse_window_update(stream: u32, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let raw = fixed(payload, "WINDOW_UPDATE length is not 4")?;
    let increment = u32::from_be_bytes(raw) & MAX_WINDOW;
    if increment == 0 {
        let what = "WINDOW_UPDATE with a zero increment";
        return Err(match stream {
            0 => FrameError::conn(code::PROTOCOL_ERROR, what),
            id => FrameError::stream(id, code::PROTOCOL_ERROR, what),
        });
    }
    Ok(Frame::WindowUpdate { stream, increment })
}

/// Value checks of §6.5.2 (unknown identifiers are ignored).
fn check_setting(id: u16, value: u32) -> Result<(), FrameError> {
    match id {
        setting::ENABLE_PUSH if value > 1 => Err(FrameError::conn(
            code::PROTOCOL_ERROR,
            "SETTINGS_ENABLE_PUSH not 0 or 1",
        )),
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => Err(FrameError::conn(
            code::FLOW_CONTROL_ERROR,
            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
        )),
        setting::MAX_FRAME_SIZE if !(MIN_MAX_FRAME..=MAX_MAX_FRAME).contains(&value) => Err(
            FrameError::conn(code::PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range"),
        ),
        _ => Ok(()),
    }
}

// ---- writers: what we send is always well-formed, so these cannot fail ----

pub fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&head_bytes(len, kind, flags, stream));
}

/// A frame header's nine octets.
pub fn head_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    let [_, l0, l1, l2] = (len as u32).to_be_bytes();
    let [s0, s1, s2, s3] = (stream & MAX_WINDOW).to_be_bytes();
    [l0, l1, l2, kind, flags, s0, s1, s2, s3]
}

pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    write_head(out, params.len() * 6, SETTINGS, 0, 0);
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_head(out, 0, SETTINGS, ACK, 0);
}

pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    write_head(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: u32, debug: &[u8]) {
    write_head(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_rst(out: &mut Vec<u8>, stream: u32, code: u32) {
    write_head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_be_bytes());
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    write_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// One DATA frame; the caller splits by the peer's max frame size.
pub fn write_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    write_head(
        out,
        data.len(),
        DATA,
        if end_stream { END_STREAM } else { 0 },
        stream,
    );
    out.extend_from_slice(data);
}

/// A HEADERS frame and as many CONTINUATION frames as `block` needs at the
/// peer's `max_frame`.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: u32,
) {
    let max = (max_frame as usize).max(1);
    let mut chunks = block.chunks(max).peekable();
    let first = chunks.next().unwrap_or_default();
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    write_head(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        write_head(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_head(&mut v, payload.len(), kind, flags, stream);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn h2_frame_incomplete_and_oversized() {
        let f = frame(PING, 0, 0, &[1; 8]);
        assert_eq!(decode(&f[..5], MIN_MAX_FRAME), Ok(None));
        assert_eq!(decode(&f[..12], MIN_MAX_FRAME), Ok(None));
        assert!(matches!(
            decode(&f, MIN_MAX_FRAME),
            Ok(Some((Frame::Ping { ack: false, .. }, 17)))
        ));
        // Refused from the header alone: a huge frame is never buffered.
        let mut big = Vec::new();
        write_head(&mut big, 20_000, DATA, 0, 1);
        assert_eq!(
            decode(&big, MIN_MAX_FRAME).unwrap_err().code,
            code::FRAME_SIZE_ERROR
        );
    }

    #[test]
    fn h2_frame_padding() {
        let f = frame(DATA, PADDED | END_STREAM, 1, &[2, b'h', b'i', 0, 0]);
        let (fr, _) = decode(&f, MIN_MAX_FRAME).unwrap().unwrap();
        assert_eq!(
            fr,
            Frame::Data {
                stream: 1,
                data: b"hi",
                end_stream: true,
                flow_len: 5
            }
        );
        let bad = frame(DATA, PADDED, 1, &[4, 0, 0]);
        assert_eq!(
            decode(&bad, MIN_MAX_FRAME).unwrap_err().code,
            code::PROTOCOL_ERROR
        );
        let hp = frame(
            HEADERS,
            PADDED | PRIORITY_FLAG | END_HEADERS,
            3,
            &[1, 0, 0, 0, 1, 16, 0x82, 0],
        );
        match decode(&hp, MIN_MAX_FRAME).unwrap().unwrap().0 {
            Frame::Headers {
                block, priority, ..
            } => {
                assert_eq!(block, &[0x82]);
                assert_eq!(priority.map(|p| p.depends_on), Some(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn h2_frame_type_checks() {
        let cases: &[(Vec<u8>, u32, Option<u32>)] = &[
            (frame(DATA, 0, 0, b"x"), code::PROTOCOL_ERROR, None),
            (
                frame(PRIORITY, 0, 1, &[0; 4]),
                code::FRAME_SIZE_ERROR,
                Some(1),
            ),
            (
                frame(PRIORITY, 0, 1, &[0, 0, 0, 1, 0]),
                code::PROTOCOL_ERROR,
                Some(1),
            ),
            (
                frame(RST_STREAM, 0, 1, &[0; 3]),
                code::FRAME_SIZE_ERROR,
                None,
            ),
            (frame(SETTINGS, 0, 0, &[0; 5]), code::FRAME_SIZE_ERROR, None),
            (
                frame(SETTINGS, ACK, 0, &[0; 6]),
                code::FRAME_SIZE_ERROR,
                None,
            ),
            (frame(SETTINGS, 0, 1, &[]), code::PROTOCOL_ERROR, None),
            (
                frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
                code::PROTOCOL_ERROR,
                None,
            ),
            (
                frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
                code::FLOW_CONTROL_ERROR,
                None,
            ),
            (
                frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]),
                code::PROTOCOL_ERROR,
                None,
            ),
            (frame(PING, 0, 0, &[0; 7]), code::FRAME_SIZE_ERROR, None),
            (frame(PING, 0, 3, &[0; 8]), code::PROTOCOL_ERROR, None),
            (frame(GOAWAY, 0, 0, &[0; 7]), code::FRAME_SIZE_ERROR, None),
            (
                frame(WINDOW_UPDATE, 0, 0, &[0; 4]),
                code::PROTOCOL_ERROR,
                None,
            ),
            (
                frame(WINDOW_UPDATE, 0, 5, &[0; 4]),
                code::PROTOCOL_ERROR,
                Some(5),
            ),
            (
                frame(WINDOW_UPDATE, 0, 5, &[0; 3]),
                code::FRAME_SIZE_ERROR,
                None,
            ),
            (frame(CONTINUATION, 0, 0, &[]), code::PROTOCOL_ERROR, None),
        ];
        for (bytes, want, stream) in cases {
            let err = decode(bytes, MIN_MAX_FRAME).unwrap_err();
            assert_eq!((err.code, err.stream), (*want, *stream), "{err}");
        }
        let unknown = frame(0xfa, 0xff, 7, b"whatever");
        assert!(matches!(
            decode(&unknown, MIN_MAX_FRAME),
            Ok(Some((
                Frame::Unknown {
                    kind: 0xfa,
                    stream: 7
                },
                _
            )))
        ));
    }

    #[test]
    fn h2_frame_headers_split_into_continuations() {
        let block = vec![7u8; 40_000];
        let mut out = Vec::new();
        write_headers(&mut out, 1, &block, true, MIN_MAX_FRAME);
        let mut rest = &out[..];
        let mut got = Vec::new();
        let mut kinds = Vec::new();
        while let Some((f, n)) = decode(rest, MIN_MAX_FRAME).unwrap() {
            match f {
                Frame::Headers {
                    block, end_headers, ..
                }
                | Frame::Continuation {
                    block, end_headers, ..
                } => {
                    got.extend_from_slice(block);
                    kinds.push(end_headers);
                }
                other => panic!("{other:?}"),
            }
            rest = &rest[n..];
        }
        assert_eq!(got, block);
        assert_eq!(kinds, [false, false, true]);
    }
}
