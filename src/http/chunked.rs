//! A strict, incremental scanner for `Transfer-Encoding: chunked` bodies.
//!
//! forklb relays chunked bodies verbatim (or, for a recipient that cannot
//! take chunked, their payload alone: `dechunk`); the scanner validates
//! every byte of framing (sizes, extensions, CRLFs, trailers) and says
//! exactly where the body ends, so the bytes after it are never mistaken for body, and a body
//! that a lenient parser might frame differently is refused instead of
//! relayed (request smuggling). It never allocates and never looks back.

/// Longest chunk-size line (size + extensions) we accept.
const MAX_LINE: usize = 4096;
/// Longest trailer section we accept.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk size is missing, not hex, or too large.
    BadSize,
    /// A chunk extension contains a forbidden byte.
    BadExtension,
    /// CR not followed by LF, LF without CR, or data not followed by CRLF.
    BadLineEnding,
    /// A size line or the trailer section is too long.
    TooLong,
    /// A trailer line is not a valid header field.
    BadTrailer,
    /// A trailer field that frames or routes a message (Content-Length,
    /// Transfer-Encoding, Host, a hop-by-hop field...): never allowed as a
    /// trailer (RFC 9110 §6.5.1), and relayed verbatim it would reach a
    /// recipient that might merge it into the head.
    ForbiddenTrailer,
}

impl ChunkError {
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::BadExtension => "invalid chunk extension",
            ChunkError::BadLineEnding => "invalid line ending in chunked body",
            ChunkError::TooLong => "chunk line or trailers too long",
            ChunkError::BadTrailer => "invalid trailer field",
            ChunkError::ForbiddenTrailer => "trailer field that frames or routes the message",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size (`digits` so far).
    Size {
        digits: u8,
    },
    /// Whitespace after the size digits: only more of it or `;` may
    /// follow (`chunk-ext` begins with BWS; a size line ending in
    /// whitespace is not valid).
    SizeBws,
    /// After `;`: extension bytes up to CR.
    Extension,
    /// Saw CR ending the size line; LF must follow.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Data ended; CR must follow.
    DataCr,
    /// Data CR seen; LF must follow.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field name (`seen` bytes so far).
    TrailerName {
        seen: bool,
    },
    /// Inside a trailer field value.
    TrailerValue,
    /// CR seen ending a trailer line; LF must follow.
    TrailerLf,
    /// CR of the final empty line seen; LF must follow.
    FinalLf,
    Done,
}

#[derive(Debug, Clone, Copy)]
pub struct ChunkedScanner {
    state: State,
    /// Bytes left in the current chunk's data, or the size being parsed.
    size: u64,
    line_len: usize,
    trailer_len: usize,
    /// Total data bytes seen (for body size limits).
    data_total: u64,
    /// The current trailer field's name, lower-cased, while it is short
    /// enough to be one of the forbidden ones (`name_len` past the array:
    /// longer, so none of them).
    name: [u8; NAME_KEPT],
    name_len: usize,
    /// The body is relayed as it came (`scan`), trailers and all: a
    /// trailer field that frames or routes the message is then refused.
    /// A recipient of the payload alone (`dechunk`) gets the trailers, if
    /// at all, through `rewrite::trailer_fields`, which drops those.
    verbatim: bool,
}

/// Longer than every name `rewrite::is_framing_or_hop` knows.
const NAME_KEPT: usize = 20;

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner::new()
    }
}

use super::is_token_byte as is_tchar;

impl ChunkedScanner {
    pub fn new() -> ChunkedScanner {
        ChunkedScanner {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_len: 0,
            data_total: 0,
            name: [0; NAME_KEPT],
            name_len: 0,
            verbatim: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes (not framing) seen so far.
    pub fn data_total(&self) -> u64 {
        self.data_total
    }

    /// Scans `buf`; returns how many of its bytes belong to the body. Fewer
    /// than `buf.len()` only when the body ended (`is_done`) — the rest is
    /// the next message.
    pub fn scan(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        self.verbatim = true;
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Data => {
                    // Fast path: skip over chunk data without looking at it.
                    let take =
                        (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    i += take;
                    self.size -= take as u64;
                    self.data_total += take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                _ => {}
            }
            let b = buf[i];
            i += 1;
            self.step(b)?;
        }
        Ok(i)
    }

    /// Like `scan`, for a recipient that gets the payload alone (an
    /// HTTP/1.0 client): takes the framing at the front of `buf` (size lines,
    /// CRLFs, trailers) up to the next chunk data or the body's end, then as
    /// much of that chunk's data as `buf` holds. Returns `(framing, data)`:
    /// the first `framing` bytes are to be dropped, the `data` bytes after
    /// them are payload. `data` is 0 only when `buf` is used up or the body
    /// ended (the rest of `buf` is then the next message).
    pub fn dechunk(&mut self, buf: &[u8]) -> Result<(usize, usize), ChunkError> {
        self.dechunk_at_most(buf, usize::MAX)
    }

    /// `dechunk` for a recipient that takes at most `max` payload bytes now
    /// (an HTTP/2 stream's send window): the rest stays for the next call.
    pub fn dechunk_at_most(
        &mut self,
        buf: &[u8],
        max: usize,
    ) -> Result<(usize, usize), ChunkError> {
        self.verbatim = false;
        let mut i = 0;
        while i < buf.len() && !matches!(self.state, State::Data | State::Done) {
            self.step(buf[i])?;
            i += 1;
        }
        if self.state != State::Data {
            return Ok((i, 0));
        }
        let take = (buf.len() - i)
            .min(usize::try_from(self.size).unwrap_or(usize::MAX))
            .min(max);
        self.size -= take as u64;
        self.data_total += take as u64;
        if self.size == 0 {
            self.state = State::DataCr;
        }
        Ok((i, take))
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        match self.state {
            State::Size { digits } => {
                self.line_len += 1;
                if self.line_len > MAX_LINE {
                    return Err(ChunkError::TooLong);
                }
                if let Some(d) = (b as char).to_digit(16) {
                    // 15 significant hex digits keep us far from overflow
                    // and allow chunks up to 1 PiB. Leading zeros are valid
                    // (`chunk-size = 1*HEXDIG`, RFC 9112 §7.1) and cost
                    // nothing: the line's length bounds them.
                    if self.size >= 1 << 56 {
                        return Err(ChunkError::BadSize);
                    }
                    self.size = self.size * 16 + u64::from(d);
                    self.state = State::Size {
                        digits: digits.saturating_add(1),
                    };
                } else if digits == 0 {
                    return Err(ChunkError::BadSize);
                } else if b == b';' {
                    self.state = State::Extension;
                } else if b == b'\r' {
                    self.state = State::SizeLf;
                } else if b == b' ' || b == b'\t' {
                    self.state = State::SizeBws;
                } else {
                    return Err(ChunkError::BadSize);
                }
            }
            State::SizeBws => {
                self.line_len += 1;
                if self.line_len > MAX_LINE {
                    return Err(ChunkError::TooLong);
                }
                match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = State::Extension,
                    // Whitespace before CRLF (`2 \r\n`) is a known
                    // smuggling ambiguity, not RFC 9112's grammar: refused.
                    _ => return Err(ChunkError::BadSize),
                }
            }
            State::Extension => {
                self.line_len += 1;
                if self.line_len > MAX_LINE {
                    return Err(ChunkError::TooLong);
                }
                match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' | 0 => return Err(ChunkError::BadExtension),
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                    _ => return Err(ChunkError::BadExtension),
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadLineEnding);
                }
                self.line_len = 0;
                if self.size == 0 {
                    self.state = State::TrailerStart;
                } else {
                    self.state = State::Data;
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(ChunkError::BadLineEnding);
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadLineEnding);
                }
                self.size = 0;
                self.state = State::Size { digits: 0 };
            }
            State::TrailerStart => {
                self.count_trailer()?;
                if b == b'\r' {
                    self.state = State::FinalLf;
                } else if is_tchar(b) {
                    self.name_len = 0;
                    self.keep_name_byte(b);
                    self.state = State::TrailerName { seen: true };
                } else {
                    return Err(ChunkError::BadTrailer);
                }
            }
            State::TrailerName { .. } => {
                self.count_trailer()?;
                if b == b':' {
                    let name = self.name.get(..self.name_len).unwrap_or(&[]);
                    if self.verbatim && super::rewrite::is_framing_or_hop(name) {
                        return Err(ChunkError::ForbiddenTrailer);
                    }
                    self.state = State::TrailerValue;
                } else if is_tchar(b) {
                    self.keep_name_byte(b);
                } else {
                    return Err(ChunkError::BadTrailer);
                }
            }
            State::TrailerValue => {
                self.count_trailer()?;
                match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                    _ => return Err(ChunkError::BadTrailer),
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                if b != b'\n' {
                    return Err(ChunkError::BadLineEnding);
                }
                self.state = State::TrailerStart;
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadLineEnding);
                }
                self.state = State::Done;
            }
            // Data is consumed in bulk by `scan`, and nothing follows Done.
            State::Data | State::Done => {}
        }
        Ok(())
    }

    /// Notes one byte of a trailer field's name (see `name`).
    fn keep_name_byte(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILERS {
            return Err(ChunkError::TooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(body: &[u8]) -> Result<(usize, bool, u64), ChunkError> {
        let mut s = ChunkedScanner::new();
        let n = s.scan(body)?;
        Ok((n, s.is_done(), s.data_total()))
    }

    #[test]
    fn valid_bodies() {
        assert_eq!(scan_all(b"0\r\n\r\n").unwrap(), (5, true, 0));
        assert_eq!(
            scan_all(b"5\r\nhello\r\n0\r\n\r\nGET").unwrap(),
            (15, true, 5)
        );
        let ext = b"A;ext=1\r\n0123456789\r\n0\r\nX-T: y\r\n\r\n";
        assert!(scan_all(ext).unwrap().1);
        assert_eq!(scan_all(b"5\r\nhel").unwrap(), (6, false, 3));
        // Leading zeros, any number of them (1*HEXDIG), before 15
        // significant digits.
        let zeros = b"0000000000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n";
        assert_eq!(scan_all(zeros).unwrap(), (zeros.len(), true, 5));
        let big = b"00000fffffffffffffff\r\n";
        assert_eq!(scan_all(big).unwrap(), (big.len(), false, 0));
        assert!(scan_all(b"1000000000000000\r\n").is_err(), "16 digits");
        // BWS before `;` (RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS ...)),
        // as nginx and HAProxy take it.
        let bws = b"2 ;a=b\r\nok\r\n3\t \t;x\r\nabc\r\n0 ;last\r\n\r\n";
        assert_eq!(scan_all(bws).unwrap(), (bws.len(), true, 5));
        // Trailer names that only start like forbidden ones, or are long.
        let t = b"0\r\nContent-Lengthy: 1\r\nHostname: h\r\nX-A-Very-Long-Trailer-Field-Name: 1\r\n\r\n";
        assert_eq!(scan_all(t).unwrap(), (t.len(), true, 0));
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nNEXT";
        let mut s = ChunkedScanner::new();
        let mut consumed = 0;
        for b in body.iter() {
            consumed += s.scan(std::slice::from_ref(b)).unwrap();
            if s.is_done() {
                break;
            }
        }
        assert_eq!(consumed, body.len() - 4);
        assert_eq!(s.data_total(), 19);
    }

    /// De-chunks `body` fed in pieces of `piece` bytes, as a relay would:
    /// framing dropped, data kept, leftover bytes not taken.
    fn dechunk_in_pieces(body: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut s = ChunkedScanner::new();
        let mut payload = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut taken = 0;
        loop {
            let (framing, data) = s.dechunk(&pending)?;
            payload.extend_from_slice(&pending[framing..framing + data]);
            pending.drain(..framing + data);
            taken += framing + data;
            if s.is_done() || (pending.is_empty() && fed == body.len()) {
                return Ok((payload, taken));
            }
            if data == 0 {
                let end = (fed + piece).min(body.len());
                pending.extend_from_slice(&body[fed..end]);
                fed = end;
            }
        }
    }

    #[test]
    fn dechunk_gives_the_payload_alone() {
        let body =
            b"3\r\nabc\r\n10;ext=\"x\"\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\nNEXT";
        for piece in 1..=body.len() {
            let (payload, taken) = dechunk_in_pieces(body, piece).unwrap();
            assert_eq!(payload, b"abc0123456789abcdef", "pieces of {piece}");
            assert_eq!(taken, body.len() - 4, "pieces of {piece}");
        }
        let mut s = ChunkedScanner::new();
        assert_eq!(s.dechunk(b"0\r\n\r\n").unwrap(), (5, 0));
        assert!(s.is_done());
        assert_eq!(s.dechunk(b"GET").unwrap(), (0, 0));
        // An unfinished body takes all it is given, and no more.
        let mut s = ChunkedScanner::new();
        assert_eq!(s.dechunk(b"5\r\nhel").unwrap(), (3, 3));
        assert_eq!(s.dechunk(b"lo\r\n").unwrap(), (0, 2));
        assert_eq!(s.dechunk(b"\r\n").unwrap(), (2, 0));
        assert!(!s.is_done());
        assert_eq!(s.data_total(), 5);
    }

    #[test]
    fn dechunk_is_as_strict_as_scan() {
        for body in [
            &b"5\r\nhelloX\r\n"[..],
            b"5 \r\nhello\r\n",
            b"5 \t \r\nhello\r\n",
            b"5 x;a\r\nhello\r\n",
            b"5 5\r\nhello\r\n",
            b"0\r\nBad Trailer: x\r\n\r\n",
        ] {
            assert!(
                dechunk_in_pieces(body, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        // A framing trailer is refused only where trailers are relayed as
        // they came; the payload's recipient gets them filtered.
        let framing = b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(dechunk_in_pieces(framing, 3).unwrap().0, b"hello");
        assert_eq!(scan_all(framing), Err(ChunkError::ForbiddenTrailer));
    }

    #[test]
    fn invalid_bodies() {
        let bad: &[&[u8]] = &[
            b"x\r\n",
            b"\r\n",
            b"5 \r\nhello\r\n",
            b" 5\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\nBad Trailer: x\r\n\r\n",
            b"0\r\n\n",
            b"1;a\nb\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nContent-Length: 99\r\n\r\n",
            b"0\r\nX-T: 1\r\ntransfer-ENCODING: chunked\r\n\r\n",
            b"0\r\nHost: evil\r\n\r\n",
            b"0\r\nConnection: close\r\n\r\n",
        ];
        for body in bad {
            assert!(
                scan_all(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
