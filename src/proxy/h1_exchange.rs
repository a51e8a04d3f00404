//! An HTTP/1.1 client's request carried by a wire-format-agnostic
//! `Exchange` — today for routes to HTTP/2 upstreams, whose responses
//! must be re-framed (HEADERS/DATA/trailers become a head and a length-
//! delimited, chunked or close-delimited body). The request body is
//! de-framed from the client's bytes and handed over as the exchange's
//! upstream takes it, so nothing is buffered beyond `OUT_MAX` either way;
//! the trailer fields of a chunked request body follow it (HEADERS with
//! END_STREAM upstream).

use super::exchange::{Exchange, Progress, ResponseSink};
use crate::http::chunked::{ChunkError, ChunkedScanner};
use crate::http::{self, errors, rewrite, Framing};
use std::io::Write;

/// Response bytes queued for the client at most (the sink's capacity).
const OUT_MAX: usize = 64 * 1024;

/// How the request body arrives from the client.
enum Upload {
    Length(u64),
    /// `tail`: the framing read since the last chunk data, which at the
    /// end of the body holds the last chunk and the trailer section.
    Chunked {
        scanner: ChunkedScanner,
        tail: Vec<u8>,
    },
    Done,
}

/// How the response body goes to the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Download {
    /// No head yet.
    Waiting,
    /// As it comes: Content-Length given, no body, or until close.
    Plain,
    Chunked,
    /// Complete (or cut short: `aborted`).
    Done,
}

pub struct H1Exchange {
    pub ex: Exchange,
    upload: Upload,
    download: Download,
    /// Response bytes not yet written to the client.
    pub out: Vec<u8>,
    pub out_pos: usize,
    minor: u8,
    head_only: bool,
    /// The client connection may go on after this response.
    pub keep: bool,
    /// The response was cut short: the connection must close.
    pub aborted: bool,
    /// The response's end is the connection's (an HTTP/1.0 client of a
    /// response without a length): cut short, the connection is reset.
    pub close_delimited: bool,
}

/// The exchange's view of the HTTP/1.1 client.
struct Sink<'a> {
    out: &'a mut Vec<u8>,
    download: &'a mut Download,
    minor: u8,
    head_only: bool,
    keep: &'a mut bool,
    aborted: &'a mut bool,
    close_delimited: &'a mut bool,
}

impl ResponseSink for Sink<'_> {
    fn head(&mut self, status: u16, headers: &[(&[u8], &[u8])], end: bool) {
        let _ = write!(self.out, "HTTP/1.1 {status} {}\r\n", errors::reason(status));
        let has_length = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(b"content-length"));
        http::write_fields(self.out, headers.iter().copied());
        // An HTTP/2 response that ended with its head (a gRPC error in
        // trailers only, an empty 200) must still say where it ends on
        // HTTP/1.1, or the client waits for a close that never comes and
        // reads the next response as this one's body: Content-Length: 0,
        // as nginx writes. 1xx, 204 and 304 have no body to delimit.
        if end && !has_length && !self.head_only && !http::status_has_no_body(status) {
            self.out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        *self.download = if end || self.head_only {
            Download::Done
        } else if has_length {
            Download::Plain
        } else if self.minor >= 1 {
            self.out
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            Download::Chunked
        } else {
            // An HTTP/1.0 client takes the end of the connection as the end
            // of a body of unknown length.
            *self.keep = false;
            *self.close_delimited = true;
            Download::Plain
        };
        if !*self.keep {
            self.out.extend_from_slice(b"Connection: close\r\n");
        } else if self.minor == 0 {
            self.out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
    }

    fn interim(&mut self, status: u16, headers: &[(&[u8], &[u8])]) {
        // HTTP/1.0 clients do not understand them (RFC 9110 §15.2).
        if self.minor >= 1 && *self.download == Download::Waiting {
            super::h1_client::write_head(self.out, status, headers);
        }
    }

    fn capacity(&self) -> usize {
        OUT_MAX.saturating_sub(self.out.len())
    }

    fn data(&mut self, bytes: &[u8], end: bool) -> usize {
        let n = bytes.len().min(self.capacity());
        let chunk = &bytes[..n];
        match *self.download {
            Download::Chunked => {
                if !chunk.is_empty() {
                    let _ = write!(self.out, "{:x}\r\n", chunk.len());
                    self.out.extend_from_slice(chunk);
                    self.out.extend_from_slice(b"\r\n");
                }
                if end && n == bytes.len() {
                    self.out.extend_from_slice(b"0\r\n\r\n");
                    *self.download = Download::Done;
                }
            }
            Download::Plain => {
                self.out.extend_from_slice(chunk);
                if end && n == bytes.len() {
                    *self.download = Download::Done;
                }
            }
            Download::Waiting | Download::Done => {}
        }
        n
    }

    fn trailers(&mut self, fields: &[(&[u8], &[u8])]) {
        if *self.download == Download::Chunked {
            self.out.extend_from_slice(b"0\r\n");
            http::write_fields(self.out, fields.iter().copied());
            self.out.extend_from_slice(b"\r\n");
        }
        // A length-delimited body cannot carry trailers: they are dropped.
        *self.download = Download::Done;
    }

    fn body_forwarded(&mut self, _n: usize) {}

    fn abort(&mut self) {
        *self.aborted = true;
        *self.keep = false;
        *self.download = Download::Done;
    }
}

impl H1Exchange {
    pub fn new(
        ex: Exchange,
        framing: Framing,
        minor: u8,
        head_only: bool,
        keep: bool,
    ) -> H1Exchange {
        H1Exchange {
            ex,
            upload: match framing {
                Framing::Length(n) if n > 0 => Upload::Length(n),
                Framing::Chunked => Upload::Chunked {
                    scanner: ChunkedScanner::new(),
                    tail: Vec::new(),
                },
                _ => Upload::Done,
            },
            download: Download::Waiting,
            out: Vec::new(),
            out_pos: 0,
            minor,
            head_only,
            keep,
            aborted: false,
            close_delimited: false,
        }
    }

    /// The whole request body was read.
    pub fn upload_done(&self) -> bool {
        matches!(self.upload, Upload::Done)
    }

    /// The exchange takes more request body now.
    pub fn wants_body(&self) -> bool {
        !self.upload_done() && self.ex.body_room() > 0
    }

    /// Hands client bytes from `input` to the exchange, de-framed; returns
    /// how many were used (the rest is the next request).
    pub fn take_body(
        &mut self,
        env: &mut super::env::Env,
        input: &[u8],
    ) -> Result<usize, ChunkError> {
        let room = self.ex.body_room();
        match &mut self.upload {
            Upload::Done => Ok(0),
            Upload::Length(rem) => {
                let n = input
                    .len()
                    .min(room)
                    .min(usize::try_from(*rem).unwrap_or(usize::MAX));
                *rem -= n as u64;
                let end = *rem == 0;
                self.ex.push_body(env, &input[..n], end);
                if end {
                    self.upload = Upload::Done;
                }
                Ok(n)
            }
            Upload::Chunked { scanner, tail } => {
                let (framing, n) = scanner.dechunk_at_most(input, room)?;
                let end = scanner.is_done();
                if n > 0 {
                    tail.clear();
                    self.ex.push_body(env, &input[framing..framing + n], false);
                } else {
                    // Bounded: the scanner limits each framing line and the
                    // trailer section.
                    tail.extend_from_slice(&input[..framing]);
                }
                if end {
                    let fields: crate::h2::HeaderList =
                        rewrite::trailer_fields(tail).into_iter().collect();
                    if fields.is_empty() {
                        self.ex.push_body(env, &[], true);
                    } else {
                        self.ex.push_trailers(env, &fields);
                    }
                    self.upload = Upload::Done;
                }
                Ok(framing + n)
            }
        }
    }

    /// The exchange, and the sink its response goes to.
    fn split(&mut self) -> (&mut Exchange, Sink<'_>) {
        let sink = Sink {
            out: &mut self.out,
            download: &mut self.download,
            minor: self.minor,
            head_only: self.head_only,
            keep: &mut self.keep,
            aborted: &mut self.aborted,
            close_delimited: &mut self.close_delimited,
        };
        (&mut self.ex, sink)
    }

    /// Runs the exchange (`Finished`: the response is complete, or cut).
    pub fn drive(&mut self, env: &mut super::env::Env) -> Progress {
        if self.out_pos > 0 && self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let (ex, mut sink) = self.split();
        ex.drive(env, &mut sink)
    }

    pub fn on_timeout(&mut self, env: &mut super::env::Env) {
        let (ex, mut sink) = self.split();
        ex.on_timeout(env, &mut sink);
    }
}
