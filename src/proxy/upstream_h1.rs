//! An exchange's upstream side over a pooled HTTP/1.1 connection: connect
//! (TLS too), write the request head and body, read the response head and
//! hand the body to the sink. Two ways:
//!
//! - re-framing (an HTTP/2 client): the body goes to the sink de-framed
//!   (length, chunked or until close), only as fast as the sink takes it;
//! - pass-through (an HTTP/1.1 client, `step_pass` in `pass`): the request body
//!   and the response body move socket to socket with their framing
//!   (chunked is scanned only to find its end; an HTTP/1.0 client gets it
//!   de-chunked), the response head is rewritten once into the client's
//!   output, interim responses are relayed, a final response that comes
//!   before the request body is out ends the upload (`early_response`),
//!   and a `101` hands the connection to the client's tunnel.

mod pass;

use super::attempt::UpstreamSocket;
use super::body::{Relay, BULK_BODY};
use super::env::Env;
use super::io::{self, Io};
use super::side::{RequestOut, ResponseSink, UpStep, Why};
use crate::buffer::Buf;
use crate::event::Stream;
use crate::http::chunked::ChunkedScanner;
use crate::http::{self, response, rewrite, Framing};
use std::net::SocketAddr;

enum Body {
    Length(u64),
    /// `tail`: the framing read since the last chunk data, which at the end
    /// of the body holds the last chunk and the trailer section.
    Chunked {
        scanner: ChunkedScanner,
        tail: Vec<u8>,
    },
    UntilClose,
}

enum Phase {
    Connect {
        connected: bool,
    },
    Send,
    AwaitHead,
    Body(Body),
    /// Pass-through: the response body as framed, relayed to the client.
    Relay(Relay),
}

pub struct UpstreamH1 {
    sock: Stream,
    up_slot: usize,
    addr: SocketAddr,
    reused: bool,
    readable: bool,
    writable: bool,
    hup: bool,
    phase: Phase,
    head_pos: usize,
    input: Option<Buf>,
    /// `input` holds bytes not parsed yet (pass-through).
    input_fresh: bool,
    got_any: bool,
    /// The server lets us reuse the connection after this response.
    keep_alive: bool,
    /// A `101` came before the request body was out: it stays unread
    /// until the body is sent (the new protocol starts after it).
    holding_switch: bool,
    /// The response head's size, for the byte counters.
    head_len: u64,
    /// `send_proxy`: the PROXY header still to go out once connected.
    preface: Option<Box<crate::proxy_proto::Preface>>,
    /// The connection named its client in a PROXY header: it serves that
    /// client only and is never pooled (HAProxy's private connections).
    private: bool,
    /// Response body bytes relayed (pass-through) and reported to the
    /// exchange in `BodySent`/`Complete`.
    reported: u64,
    /// The route's header rules (`response_headers` apply to the head).
    pub rules: Option<std::sync::Arc<crate::http::header_rules::Applied>>,
}

impl UpstreamH1 {
    pub fn new(
        s: UpstreamSocket,
        addr: SocketAddr,
        preface: Option<Box<crate::proxy_proto::Preface>>,
    ) -> UpstreamH1 {
        UpstreamH1 {
            private: preface.is_some(),
            preface,
            sock: s.sock,
            up_slot: s.up_slot,
            addr,
            reused: s.reused,
            readable: false,
            // A pooled connection is connected and writable.
            writable: s.reused,
            hup: false,
            phase: if s.reused {
                Phase::Send
            } else {
                Phase::Connect { connected: false }
            },
            head_pos: 0,
            input: None,
            input_fresh: false,
            got_any: false,
            keep_alive: false,
            holding_switch: false,
            head_len: 0,
            reported: 0,
            rules: None,
        }
    }

    /// Response body bytes relayed but not reported yet (a step that
    /// failed after moving some): for the byte counters and the log.
    pub fn unreported(&self) -> u64 {
        match &self.phase {
            Phase::Relay(r) => r.sent.saturating_sub(self.reported),
            _ => 0,
        }
    }

    /// The size of the response head (0 until it came).
    pub fn head_len(&self) -> u64 {
        self.head_len
    }

    /// Pass-through: response bytes read from the server wait for the
    /// client to take them.
    pub fn relay_waits_on_client(&self) -> bool {
        matches!(&self.phase, Phase::Relay(r) if r.holds_output())
    }

    /// The socket, for the harness's checks.
    #[cfg(test)]
    pub fn sock(&self) -> &mio::net::TcpStream {
        self.sock.sock()
    }

    /// After a `101`: the connection and what the server sent after the
    /// head, for the client's tunnel (which owns its slot from now on).
    pub fn into_tunnel(self) -> (Stream, usize, SocketAddr, Option<Buf>, bool) {
        (self.sock, self.up_slot, self.addr, self.input, self.hup)
    }

    pub fn up_slot(&self) -> usize {
        self.up_slot
    }

    #[inline]
    pub fn ready(&mut self, r: bool, w: bool, hup: bool) {
        self.readable |= r;
        self.writable |= w;
        self.hup |= hup;
    }

    /// Still connecting (or in the TLS handshake): a timeout now is a
    /// connection error, later a response error (`show stat` econ/eresp).
    pub fn connecting(&self) -> bool {
        matches!(self.phase, Phase::Connect { .. })
    }

    /// What the exchange waits for, for log lines.
    pub fn doing(&self) -> &'static str {
        match self.phase {
            Phase::Connect { connected: true } => "in the TLS handshake",
            Phase::Connect { connected: false } => "connecting",
            Phase::Send => "sending the request",
            Phase::AwaitHead => "waiting for the response head",
            Phase::Body(_) | Phase::Relay(_) => "sending the response body",
        }
    }

    pub fn step(
        &mut self,
        env: &mut Env,
        req: &mut RequestOut,
        sink: &mut dyn ResponseSink,
        is_head: bool,
    ) -> UpStep {
        let step = match self.phase {
            Phase::Connect { .. } => self.connect_step(),
            Phase::Send => self.send_step(env, req, sink, is_head),
            Phase::AwaitHead => self.head_step(env, sink, is_head),
            Phase::Body(_) | Phase::Relay(_) => self.body_step(env, sink),
        };
        // TLS records queued by this step go out while the socket takes them.
        let _ = self.sock.flush_queued(&mut self.writable);
        match step {
            // The sink took nothing after all: wait for its window.
            UpStep::BodySent(0) => UpStep::Blocked,
            s => s,
        }
    }

    /// Waits for the TCP connection, then for the TLS handshake if any.
    #[inline]
    fn connect_step(&mut self) -> UpStep {
        let Phase::Connect { connected } = &mut self.phase else {
            return UpStep::Blocked;
        };
        match self.sock.establish_with(
            connected,
            &mut self.readable,
            &mut self.writable,
            self.preface.as_deref_mut(),
        ) {
            Ok(true) => {
                self.phase = Phase::Send;
                UpStep::Connected
            }
            Ok(false) => UpStep::Blocked,
            Err(e) => UpStep::ConnectFailed(e),
        }
    }

    fn send_step(
        &mut self,
        env: &mut Env,
        req: &mut RequestOut,
        sink: &mut dyn ResponseSink,
        is_head: bool,
    ) -> UpStep {
        // An answer that comes before the body is out (413, 401...) ends
        // the upload: it is read first.
        if self.head_pos >= req.head.len() && (self.readable || self.hup) {
            self.phase = Phase::AwaitHead;
            let step = self.head_step(env, sink, is_head);
            if matches!(self.phase, Phase::AwaitHead) && !req_done(req) {
                self.phase = Phase::Send;
            }
            if !matches!(step, UpStep::Blocked) {
                return step;
            }
        }
        if self.head_pos < req.head.len() {
            if !self.writable {
                return UpStep::Blocked;
            }
            return match io::write(
                &mut self.sock,
                &req.head[self.head_pos..],
                &mut self.writable,
            ) {
                Io::Done(n) => {
                    self.head_pos += n;
                    if self.head_pos >= req.head.len() && req.body.is_empty() && !req.ended {
                        // All handed over is out and the body is the
                        // client's to send: its `client_body` timeout runs,
                        // even before a first byte.
                        UpStep::BodyWritten
                    } else {
                        UpStep::Moved
                    }
                }
                Io::Blocked => UpStep::Blocked,
                Io::Eof | Io::Failed(_) if self.reused && !self.got_any => UpStep::Stale,
                end @ (Io::Eof | Io::Failed(_)) if !self.got_any => UpStep::Closed {
                    doing: "sending the request head",
                    why: Why::of(end),
                },
                end @ (Io::Eof | Io::Failed(_)) => UpStep::Failed {
                    doing: "sending the request head",
                    bad_response: false,
                    why: Why::of(end),
                },
            };
        }
        if !req.body.is_empty() {
            if !self.writable {
                return UpStep::Blocked;
            }
            return match io::write(&mut self.sock, req.body, &mut self.writable) {
                Io::Done(n) => {
                    req.body.drain(..n);
                    if req.body.is_empty() {
                        UpStep::BodyWritten
                    } else {
                        UpStep::Moved
                    }
                }
                Io::Blocked => UpStep::Blocked,
                Io::Eof | Io::Failed(_) => {
                    // It stopped taking the body: its answer may be waiting.
                    self.readable = true;
                    self.phase = Phase::AwaitHead;
                    UpStep::Moved
                }
            };
        }
        if req.ended {
            self.phase = Phase::AwaitHead;
            return UpStep::Moved;
        }
        UpStep::Blocked
    }

    /// Reads and parses the response head; interim responses go to the
    /// sink's `interim` (HEADERS without END_STREAM for an HTTP/2 client).
    fn head_step(&mut self, env: &mut Env, sink: &mut dyn ResponseSink, is_head: bool) -> UpStep {
        if let Some(mut input) = self.input.take() {
            let parsed = self.parse_head(env, &mut input, sink, is_head);
            self.input = Some(input);
            if let Some(step) = parsed {
                return step;
            }
        }
        if !self.readable {
            return UpStep::Blocked;
        }
        let buf = self.input.get_or_insert_with(|| env.bufs.get());
        if buf.is_full() {
            return UpStep::Failed {
                doing: "reading the response head",
                bad_response: true,
                why: Why::said("it sent a too big response head"),
            };
        }
        match io::read(&mut self.sock, buf.spare(), &mut self.readable, self.hup) {
            Io::Done(n) => {
                buf.filled(n);
                self.got_any = true;
                UpStep::Moved
            }
            Io::Blocked => UpStep::Blocked,
            Io::Eof | Io::Failed(_) if self.reused && !self.got_any => UpStep::Stale,
            end @ (Io::Eof | Io::Failed(_)) if !self.got_any => UpStep::Closed {
                doing: "reading the response head",
                why: Why::of(end),
            },
            end @ (Io::Eof | Io::Failed(_)) => UpStep::Failed {
                doing: "reading the response head",
                bad_response: false,
                why: Why::of(end),
            },
        }
    }

    /// A complete head in `input`: its step, or None if more is needed.
    fn parse_head(
        &mut self,
        env: &mut Env,
        input: &mut Buf,
        sink: &mut dyn ResponseSink,
        is_head: bool,
    ) -> Option<UpStep> {
        let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        response::read_higher_minor_as_1_1(input.data_mut());
        let (resp, info) = match response::parse(input.data(), &mut headers, is_head) {
            Ok(response::Parsed::Partial) => return None,
            Ok(response::Parsed::Complete(r, i)) => (r, i),
            Err(e) => {
                return Some(UpStep::Failed {
                    doing: "reading the response head",
                    bad_response: true,
                    why: Why::said(format!("it sent an invalid response: {}", e.reason)),
                });
            }
        };
        if info.status == 101 {
            return Some(UpStep::Failed {
                doing: "reading the response head",
                bad_response: true,
                why: Why::said("it switched protocols for a request that asked for no switch"),
            });
        }
        // Field names go lower-case (RFC 9113 §8.2.2), all into one buffer
        // (on the stack unless they are many); the connection's own fields
        // stay behind.
        let total = resp.headers.iter().map(|h| h.name.len()).sum();
        let mut stack = [0u8; 1024];
        let mut heap = Vec::new();
        let mut rest = crate::buffer::stack_or_heap(&mut stack, &mut heap, total, 0);
        let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(resp.headers.len() + 1);
        let mut saw_date = false;
        let no_length = rewrite::length_forbidden(info.status);
        // Content-Length once, as one number (`2, 2` came as a list).
        let length_text = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| rewrite::repeated_length(h.value))
            .map(|n| n.to_string());
        let mut saw_length = false;
        for h in rewrite::end_to_end(resp.headers) {
            if h.name.eq_ignore_ascii_case("content-length")
                && (no_length || std::mem::replace(&mut saw_length, true))
            {
                continue;
            }
            let Some((name, tail)) = std::mem::take(&mut rest).split_at_mut_checked(h.name.len())
            else {
                break;
            };
            name.copy_from_slice(h.name.as_bytes());
            name.make_ascii_lowercase();
            saw_date |= name == b"date";
            let value = match (&length_text, name == b"content-length") {
                (Some(n), true) => n.as_bytes(),
                _ => h.value,
            };
            fields.push((name, value));
            rest = tail;
        }
        if info.status < 200 {
            // 103 Early Hints and the like go out as they came, before the
            // final response (stored and shown by nobody: no Date).
            sink.interim(info.status, &fields);
            input.consume(info.head_len);
            return Some(UpStep::Moved);
        }
        if !saw_date {
            fields.push((b"date", env.date.text()));
        }
        if let Some(r) = &self.rules {
            r.response().edit_borrowed(&mut fields);
        }
        let body = match info.framing {
            Framing::None | Framing::Length(0) => None,
            Framing::Length(n) => Some(Body::Length(n)),
            Framing::Chunked => Some(Body::Chunked {
                scanner: ChunkedScanner::new(),
                tail: Vec::new(),
            }),
            Framing::UntilClose => Some(Body::UntilClose),
        };
        sink.head(info.status, &fields, body.is_none());
        self.keep_alive = info.keep_alive && info.framing != Framing::UntilClose;
        input.consume(info.head_len);
        match body {
            None => Some(UpStep::Head {
                status: info.status,
                framed_end: true,
            }),
            Some(b) => {
                self.phase = Phase::Body(b);
                Some(UpStep::Head {
                    status: info.status,
                    framed_end: false,
                })
            }
        }
    }

    fn body_step(&mut self, env: &mut Env, sink: &mut dyn ResponseSink) -> UpStep {
        let Phase::Body(body) = &mut self.phase else {
            return UpStep::Blocked;
        };
        let input = self.input.get_or_insert_with(|| env.bufs.get());
        if !input.is_empty() {
            let cap = sink.capacity();
            let data = input.data();
            match body {
                Body::Length(rem) => {
                    let avail = data
                        .len()
                        .min(usize::try_from(*rem).unwrap_or(usize::MAX))
                        .min(cap);
                    if avail == 0 {
                        return UpStep::Blocked;
                    }
                    let last = avail as u64 == *rem;
                    let n = sink.data(&data[..avail], last);
                    input.consume(n);
                    *rem -= n as u64;
                    return if *rem == 0 {
                        UpStep::Complete(n)
                    } else {
                        UpStep::BodySent(n)
                    };
                }
                Body::UntilClose => {
                    let avail = data.len().min(cap);
                    if avail == 0 {
                        return UpStep::Blocked;
                    }
                    let n = sink.data(&data[..avail], false);
                    input.consume(n);
                    return UpStep::BodySent(n);
                }
                Body::Chunked { scanner, tail } => match scanner.dechunk_at_most(data, cap) {
                    Err(e) => {
                        return UpStep::Failed {
                            doing: "reading the response body",
                            bad_response: true,
                            why: Why::said(format!("it sent a bad chunked body: {}", e.reason())),
                        };
                    }
                    Ok((framing, n)) if n > 0 => {
                        tail.clear();
                        let taken = sink.data(&data[framing..framing + n], false);
                        input.consume(framing + taken);
                        return UpStep::BodySent(taken);
                    }
                    Ok((framing, _)) => {
                        // Bounded: the scanner limits each framing line and
                        // the trailer section.
                        tail.extend_from_slice(&data[..framing]);
                        input.consume(framing);
                        if scanner.is_done() {
                            end_with_trailers(tail, sink);
                            return UpStep::Complete(0);
                        }
                        if framing > 0 {
                            return UpStep::Moved;
                        }
                        if cap == 0 && !input.is_empty() {
                            return UpStep::Blocked;
                        }
                    }
                },
            }
        }
        if !self.readable {
            return UpStep::Blocked;
        }
        // A long body is read through a large buffer, as a relayed one is
        // (`BufPool::upgrade`): a 1 MiB body in 16 KiB reads is 64 of them.
        if matches!(body, Body::Length(rem) if *rem >= BULK_BODY) {
            env.bufs.upgrade(&mut self.input);
        }
        let Some(input) = self.input.as_mut() else {
            return UpStep::Blocked;
        };
        input.compact();
        if input.is_full() {
            return UpStep::Blocked;
        }
        match io::read(&mut self.sock, input.spare(), &mut self.readable, self.hup) {
            Io::Done(n) => {
                input.filled(n);
                UpStep::Moved
            }
            Io::Blocked => UpStep::Blocked,
            Io::Eof if matches!(body, Body::UntilClose) => {
                sink.data(&[], true);
                UpStep::Complete(0)
            }
            end @ (Io::Eof | Io::Failed(_)) => UpStep::Failed {
                doing: "reading the response body",
                bad_response: false,
                why: Why::of(end),
            },
        }
    }

    /// After a complete response: the socket, if it can serve another
    /// request (framed body, keep-alive, nothing left over); else closed.
    // Boxes taken whole: the struct is not copied out of its box first.
    #[allow(clippy::boxed_local)]
    pub fn into_reusable(
        mut self: Box<Self>,
        env: &mut Env,
        request_done: bool,
    ) -> Option<(Stream, usize)> {
        let clean = self.input.as_ref().is_none_or(Buf::is_empty);
        // `hup`: the server's FIN came with its response (or right after,
        // in the same event). The pool would never hear of it — that edge
        // is spent — and hand the closed connection to the next request,
        // which a POST cannot survive.
        let reusable = request_done
            && !self.private
            && self.keep_alive
            && !self.hup
            && clean
            && matches!(
                self.phase,
                Phase::Body(_) | Phase::Relay(_) | Phase::AwaitHead
            )
            && !self.sock.has_buffered_input();
        if !reusable {
            self.close(env);
            return None;
        }
        if let Some(b) = self.input.take() {
            env.bufs.put(b);
        }
        let UpstreamH1 { sock, up_slot, .. } = *self;
        Some((sock, up_slot))
    }

    /// Closes the socket (which takes it out of epoll).
    #[allow(clippy::boxed_local)]
    pub fn close(mut self: Box<Self>, env: &mut Env) {
        env.up_owners.remove(self.up_slot);
        if let Some(b) = self.input.take() {
            env.bufs.put(b);
        }
    }
}

fn req_done(req: &RequestOut) -> bool {
    req.ended && req.body.is_empty()
}

/// Ends a chunked body: its trailer fields (from `tail`, the last chunk's
/// framing) go to the sink, or an empty end when there are none.
fn end_with_trailers(tail: &[u8], sink: &mut dyn ResponseSink) {
    let fields = rewrite::trailer_fields(tail);
    if fields.is_empty() {
        sink.data(&[], true);
    } else {
        let kept: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        sink.trailers(&kept);
    }
}
