//! An exchange's upstream side over a pooled HTTP/1.1 connection: connect
//! (TLS too), write the request head and body, read the response head and
//! hand the body to the sink. Two ways:
//!
//! - re-framing (an HTTP/2 client): the body goes to the sink de-framed
//!   (length, chunked or until close), only as fast as the sink takes it;
//! - pass-through (an HTTP/1.1 client, `step_pass`): the request body
//!   and the response body move socket to socket with their framing
//!   (chunked is scanned only to find its end; an HTTP/1.0 client gets it
//!   de-chunked), the response head is rewritten once into the client's
//!   output, interim responses are relayed, a final response that comes
//!   before the request body is out ends the upload (`early_response`),
//!   and a `101` hands the connection to the client's tunnel.

use super::attempt::UpstreamSocket;
use super::body::{self, Ends, Relay, RelayStep};
use super::env::Env;
use super::h1_client::{Flush, H1Client};
use super::io::{self, Io};
use super::side::{RequestOut, ResponseSink, UpStep};
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
    /// Response body bytes relayed (pass-through) and reported to the
    /// exchange in `BodySent`/`Complete`.
    reported: u64,
}

impl UpstreamH1 {
    pub fn new(s: UpstreamSocket, addr: SocketAddr) -> UpstreamH1 {
        UpstreamH1 {
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

    /// The socket, for the harness's checks.
    #[cfg(test)]
    pub fn sock(&self) -> &mio::net::TcpStream {
        self.sock.sock()
    }

    /// Pass-through: the whole request head is out and the request body
    /// waits for the client (its `client_body` timeout runs).
    pub fn waiting_for_client(&self, head: &[u8], c: &H1Client) -> bool {
        matches!(self.phase, Phase::Send)
            && self.head_pos >= head.len()
            && !c.req.body.is_complete()
            && c.input.as_ref().is_none_or(Buf::is_empty)
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
        let step = match &mut self.phase {
            Phase::Connect { connected } => {
                match self
                    .sock
                    .establish(connected, &mut self.readable, &mut self.writable)
                {
                    Ok(true) => {
                        self.phase = Phase::Send;
                        UpStep::Connected
                    }
                    Ok(false) => UpStep::Blocked,
                    Err(e) => UpStep::ConnectFailed(e.into_io()),
                }
            }
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

    /// One step of a pass-through exchange (an HTTP/1.1 client's `c`);
    /// `head`: the request head as it goes upstream.
    pub fn step_pass(&mut self, env: &mut Env, head: &[u8], c: &mut H1Client) -> UpStep {
        let step = match &mut self.phase {
            Phase::Connect { connected } => {
                match self
                    .sock
                    .establish(connected, &mut self.readable, &mut self.writable)
                {
                    Ok(true) => {
                        self.phase = Phase::Send;
                        UpStep::Connected
                    }
                    Ok(false) => UpStep::Blocked,
                    Err(e) => UpStep::ConnectFailed(e.into_io()),
                }
            }
            Phase::Send => self.pass_send(env, head, c),
            Phase::AwaitHead => self.pass_await_head(env, c),
            Phase::Body(_) | Phase::Relay(_) => self.pass_body(env, c),
        };
        // TLS records queued by this step go out while the socket takes them.
        let _ = self.sock.flush_queued(&mut self.writable);
        step
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
                    UpStep::Moved
                }
                Io::Blocked => UpStep::Blocked,
                Io::Eof | Io::Failed(_) if self.reused && !self.got_any => UpStep::Stale,
                Io::Eof | Io::Failed(_) => UpStep::Failed {
                    doing: "sending the request head",
                    bad_response: false,
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
            log::error!("upstream {} sent a too big response head", self.addr);
            return UpStep::Failed {
                doing: "reading the response head",
                bad_response: true,
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
            Io::Eof | Io::Failed(_) => UpStep::Failed {
                doing: "reading the response head",
                bad_response: false,
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
        let (resp, info) = match response::parse(input.data(), &mut headers, is_head) {
            Ok(response::Parsed::Partial) => return None,
            Ok(response::Parsed::Complete(r, i)) => (r, i),
            Err(e) => {
                log::error!(
                    "upstream {} sent an invalid response: {}",
                    self.addr,
                    e.reason
                );
                return Some(UpStep::Failed {
                    doing: "reading the response head",
                    bad_response: true,
                });
            }
        };
        if info.status == 101 {
            log::error!(
                "upstream {} switched protocols for a request that asked for no switch",
                self.addr
            );
            return Some(UpStep::Failed {
                doing: "reading the response head",
                bad_response: true,
            });
        }
        // Field names go lower-case (RFC 9113 §8.2.2); the connection's
        // own fields stay behind.
        let mut names: Vec<Vec<u8>> = Vec::with_capacity(resp.headers.len());
        let mut saw_date = false;
        let kept: Vec<&httparse::Header> = rewrite::end_to_end(resp.headers).collect();
        for h in &kept {
            saw_date |= http::name_is(h.name, "date");
            names.push(h.name.to_ascii_lowercase().into_bytes());
        }
        let mut fields: Vec<(&[u8], &[u8])> = names
            .iter()
            .zip(&kept)
            .map(|(n, h)| (n.as_slice(), h.value))
            .collect();
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
                        log::error!(
                            "upstream {} sent a bad chunked body: {}",
                            self.addr,
                            e.reason()
                        );
                        return UpStep::Failed {
                            doing: "reading the response body",
                            bad_response: true,
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
            Io::Eof | Io::Failed(_) => UpStep::Failed {
                doing: "reading the response body",
                bad_response: false,
            },
        }
    }

    // ----- Pass-through (an HTTP/1.1 client) -------------------------------

    /// Writes the request head, then relays the request body from the
    /// client, while watching for an early answer from the upstream.
    fn pass_send(&mut self, env: &mut Env, head: &[u8], c: &mut H1Client) -> UpStep {
        // What the upstream sent is read before anything more is written:
        // if it answered and closed, writing on would only be reset, and
        // the answer must be taken while it is there. Only flags are looked
        // at: no syscall unless the upstream really spoke.
        if !self.holding_switch && !c.req.body.is_complete() && (self.input_fresh || self.readable)
        {
            match self.pass_head(env, c) {
                UpStep::Blocked => {}
                step => return step,
            }
        }
        if self.head_pos < head.len() {
            if !self.writable {
                return UpStep::Blocked;
            }
            return match io::write(&mut self.sock, &head[self.head_pos..], &mut self.writable) {
                Io::Done(n) => {
                    self.head_pos += n;
                    if self.head_pos >= head.len() && c.req.body.is_complete() {
                        // The whole request is out (no body): its answer
                        // is awaited from now on. An edge already seen
                        // (the flag) is taken in the next step.
                        self.phase = Phase::AwaitHead;
                        if self.readable || self.input_fresh || c.out.is_some() {
                            return UpStep::Moved;
                        }
                        return UpStep::Awaiting;
                    }
                    UpStep::Sent { client_owes: false }
                }
                Io::Blocked => UpStep::Blocked,
                Io::Eof | Io::Failed(_) if self.reused && !self.got_any => UpStep::Stale,
                Io::Eof | Io::Failed(_) => UpStep::Failed {
                    doing: "sending the request head",
                    bad_response: false,
                },
            };
        }
        if !c.req.body.is_complete() {
            // A pending `100 Continue` goes out before we wait for the body.
            match c.flush_out() {
                Flush::Done => {}
                Flush::Pending { wrote: true } => return UpStep::Sent { client_owes: false },
                Flush::Pending { wrote: false } => return UpStep::Blocked,
                Flush::Failed => return UpStep::ClientGone,
            }
            // The relay runs while it moves bytes: one exchange step for
            // many reads and writes. The upstream's readiness changes only
            // with events, so an early answer is not missed meanwhile.
            let mut moved = false;
            let step = loop {
                match c.req.body.step(
                    &mut Ends {
                        src: c.stream,
                        src_ready: c.readable,
                        src_hup: c.hup,
                        buf: c.input,
                        dst: &mut self.sock,
                        dst_ready: &mut self.writable,
                    },
                    env.bufs,
                ) {
                    RelayStep::Progress => moved = true,
                    step => break step,
                }
            };
            if moved && matches!(step, RelayStep::Blocked) {
                return UpStep::Sent {
                    client_owes: self.waiting_for_client(head, c),
                };
            }
            return self.after_upload_step(step, head, c);
        }
        // Bytes read past the body stay in the client's input: the next
        // pipelined request. A `101` held back is parsed now.
        self.phase = Phase::AwaitHead;
        self.input_fresh |= self.input.as_ref().is_some_and(|b| !b.is_empty());
        UpStep::Moved
    }

    /// What a step of the request body relay means for the exchange.
    fn after_upload_step(&mut self, step: RelayStep, head: &[u8], c: &H1Client) -> UpStep {
        match step {
            RelayStep::TooLarge => {
                // Nothing past the limit was written upstream; the upstream
                // connection is dropped mid-body, so the server never sees
                // a complete request.
                log::info!("client {} sent a too large chunked body", c.peer);
                UpStep::ClientError(413)
            }
            RelayStep::Progress => UpStep::Sent {
                client_owes: self.waiting_for_client(head, c),
            },
            RelayStep::Blocked => UpStep::Blocked,
            RelayStep::Complete => UpStep::Sent { client_owes: false },
            RelayStep::SourceClosed => {
                log::info!(
                    "client {} closed the connection while sending the request body",
                    c.peer
                );
                UpStep::ClientGone
            }
            RelayStep::SourceFailed(e) => {
                log::info!(
                    "client {} failed while sending the request body: {e}",
                    c.peer
                );
                UpStep::ClientGone
            }
            RelayStep::DestFailed(e) => {
                // Typically the server answered early and closed without
                // reading the rest. Its answer may be in our receive buffer
                // still (Linux keeps received bytes readable after a reset),
                // so it is read before anything is decided; no event may
                // come for bytes that arrived before the reset.
                log::debug!(
                    "upstream {} stopped taking the request body ({e}), reading its response, client: {}",
                    self.addr,
                    c.peer
                );
                self.readable = true;
                self.phase = Phase::AwaitHead;
                UpStep::Moved
            }
            RelayStep::Framing(e) => {
                log::info!("client {} sent a bad chunked body: {}", c.peer, e.reason());
                UpStep::ClientError(400)
            }
        }
    }

    /// Waits for the response head once the request is out; interim
    /// responses already relayed go out first.
    fn pass_await_head(&mut self, env: &mut Env, c: &mut H1Client) -> UpStep {
        match c.flush_out() {
            Flush::Done => self.pass_head(env, c),
            Flush::Pending { wrote: true } => UpStep::Moved,
            Flush::Pending { wrote: false } => UpStep::Blocked,
            Flush::Failed => UpStep::ClientGone,
        }
    }

    /// One step towards the response head, awaited or early (the body still
    /// going out): parse what arrived, else read more.
    fn pass_head(&mut self, env: &mut Env, c: &mut H1Client) -> UpStep {
        if self.input_fresh {
            self.input_fresh = false;
            if let Some(mut input) = self.input.take() {
                let step = self.pass_parse(env, &mut input, c);
                self.input = Some(input);
                return step;
            }
        }
        if !self.readable {
            return UpStep::Blocked;
        }
        let buf = self.input.get_or_insert_with(|| env.bufs.get());
        if buf.is_full() {
            log::error!(
                "upstream {} sent a too big response head, client: {}",
                self.addr,
                c.peer
            );
            return UpStep::Failed {
                doing: "reading the response head",
                bad_response: false,
            };
        }
        match io::read(&mut self.sock, buf.spare(), &mut self.readable, self.hup) {
            Io::Done(n) => {
                buf.filled(n);
                self.got_any = true;
                // Parsed at once (a whole head usually comes in one read).
                let mut input = self.input.take();
                let step = match input.as_mut() {
                    Some(input) => self.pass_parse(env, input, c),
                    None => UpStep::Moved,
                };
                self.input = input;
                step
            }
            Io::Blocked => UpStep::Blocked,
            Io::Eof | Io::Failed(_) if self.reused && !self.got_any => UpStep::Stale,
            Io::Eof | Io::Failed(_) if c.req.body.is_complete() => UpStep::Failed {
                doing: "reading the response head",
                bad_response: false,
            },
            // Closed or reset with no response while the body was on its
            // way: nothing to relay (not retried: the request was partly sent).
            Io::Eof | Io::Failed(_) => UpStep::Failed {
                doing: "sending the request body (no response came)",
                bad_response: false,
            },
        }
    }

    /// Parses the response head in `input`: an interim one is relayed, a
    /// `101` starts the tunnel, a final one is rewritten for the client
    /// and its body relayed as it is framed.
    fn pass_parse(&mut self, env: &mut Env, input: &mut Buf, c: &mut H1Client) -> UpStep {
        let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        let (resp, info) = match response::parse(input.data(), &mut headers, c.req.is_head) {
            Ok(response::Parsed::Partial) => return UpStep::Moved,
            Ok(response::Parsed::Complete(r, i)) => (r, i),
            Err(e) => {
                log::error!(
                    "upstream {} sent an invalid response: {}, client: {}",
                    self.addr,
                    e.reason,
                    c.peer
                );
                return UpStep::Failed {
                    doing: "reading the response head",
                    bad_response: true,
                };
            }
        };
        if info.status == 101 {
            let step = self.pass_switch(env, &resp, c);
            if matches!(step, UpStep::Upgrade) {
                input.consume(info.head_len);
            }
            return step;
        }
        let date = env.date.text();
        if (100..200).contains(&info.status) {
            // 100 Continue, 103 Early Hints: relayed to HTTP/1.1 clients;
            // HTTP/1.0 clients do not understand them (RFC 9110 §15.2).
            if c.req.minor >= 1 {
                let mode = rewrite::ResponseMode::Interim;
                rewrite::write_client_response(c.out_buf(env), &resp, mode, 1, date);
            }
            input.consume(info.head_len);
            self.input_fresh = true;
            return UpStep::Moved;
        }
        let body_done = c.req.body.is_complete();
        if !body_done {
            // No failure of the server: no 502, no retry, no passive mark.
            log::debug!(
                "upstream {} answered {} before the request body was sent ({} bytes sent); the upload stops, client: {}",
                self.addr,
                info.status,
                c.req.body.sent,
                c.peer
            );
            c.early_response();
        }
        // An HTTP/1.0 client cannot take chunked: it gets the payload alone,
        // and the connection's end ends the body (no length is known ahead).
        let dechunk = info.framing == Framing::Chunked && c.req.minor == 0;
        // A close-delimited body can only end by closing the client
        // connection too; an early response ends it as well (the rest of
        // the upload is in the way), and its upstream connection is not
        // reused.
        let keep = info.framing != Framing::UntilClose
            && !dechunk
            && c.req.keep_alive
            && body_done
            && !env.draining;
        let (mode, body) = if dechunk {
            (
                rewrite::ResponseMode::Plain { keep_alive: keep },
                body::Body::Dechunked(ChunkedScanner::new()),
            )
        } else if info.framing == Framing::Chunked {
            (
                rewrite::ResponseMode::Chunked { keep_alive: keep },
                body::Body::from_framing(info.framing),
            )
        } else {
            (
                rewrite::ResponseMode::Plain { keep_alive: keep },
                body::Body::from_framing(info.framing),
            )
        };
        let minor = c.req.minor;
        rewrite::write_client_response(c.out_buf(env), &resp, mode, minor, date);
        input.consume(info.head_len);
        self.head_len = info.head_len as u64;
        self.keep_alive = info.keep_alive && info.framing != Framing::UntilClose;
        c.req.keep_after = keep;
        self.phase = Phase::Relay(Relay::new(body));
        UpStep::Head {
            status: info.status,
            framed_end: false,
        }
    }

    /// A `101 Switching Protocols`: relayed if the client asked for it and
    /// its body is out; held while the body is still going out.
    fn pass_switch(
        &mut self,
        env: &mut Env,
        resp: &httparse::Response,
        c: &mut H1Client,
    ) -> UpStep {
        if c.req.upgrade && !c.req.body.is_complete() {
            if matches!(self.phase, Phase::Send) {
                // The new protocol starts after the request body: the
                // switch waits, unread, until the body is out.
                self.holding_switch = true;
                return UpStep::Moved;
            }
            log::error!(
                "upstream switched protocols but did not take the request body, client: {}",
                c.peer
            );
            return UpStep::Failed {
                doing: "switching protocols",
                bad_response: false,
            };
        }
        if let Some(why) = switch_refusal(resp, c.req.upgrade) {
            log::error!("upstream switched protocols {why}, client: {}", c.peer);
            return UpStep::Failed {
                doing: "switching protocols",
                bad_response: false,
            };
        }
        let minor = c.req.minor;
        let mode = rewrite::ResponseMode::Upgrade;
        rewrite::write_client_response(c.out_buf(env), resp, mode, minor, env.date.text());
        UpStep::Upgrade
    }

    /// Relays the response body to the client as it is framed.
    fn pass_body(&mut self, env: &mut Env, c: &mut H1Client) -> UpStep {
        // Once the head is out (every wakeup of a large body but the
        // first), straight to the relay.
        if c.out.as_ref().is_some_and(|o| *c.out_pos < o.len()) {
            if let Some(step) = self.pass_head_out(env, c) {
                return step;
            }
        }
        self.pass_relay(env, c)
    }

    /// Writes the rest of the response head, with the first body bytes if
    /// they are there; Some when that is the step.
    fn pass_head_out(&mut self, env: &mut Env, c: &mut H1Client) -> Option<UpStep> {
        match self.write_head_with_body(c) {
            Ok(0) => {}
            Ok(n) => {
                // A small response often goes out whole in that `writev`.
                let done = matches!(&self.phase, Phase::Relay(r) if r.is_complete())
                    && c.out.as_ref().is_none_or(|o| *c.out_pos >= o.len());
                self.reported += n as u64;
                if done {
                    self.keep_alive &= c.req.body.is_complete();
                    return Some(UpStep::Complete(n));
                }
                return Some(UpStep::BodySent(n));
            }
            Err(step) => return Some(step),
        }
        match c.flush_out() {
            Flush::Done => None,
            Flush::Pending { wrote: true } => Some(UpStep::Moved),
            Flush::Pending { wrote: false } => Some(self.discard_cut_upload(env, c)),
            Flush::Failed => Some(UpStep::ClientGone),
        }
    }

    /// Relays the response body as it is framed.
    fn pass_relay(&mut self, env: &mut Env, c: &mut H1Client) -> UpStep {
        let Phase::Relay(relay) = &mut self.phase else {
            return UpStep::Blocked;
        };
        // The relay runs while it moves bytes (one exchange step for many
        // reads and writes); what it wrote is reported from `relay.sent`.
        let mut moved = false;
        let step = loop {
            match relay.step(
                &mut Ends {
                    src: &mut self.sock,
                    src_ready: &mut self.readable,
                    src_hup: self.hup,
                    buf: &mut self.input,
                    dst: c.stream,
                    dst_ready: c.writable,
                },
                env.bufs,
            ) {
                RelayStep::Progress => moved = true,
                step => break step,
            }
        };
        let n = usize::try_from(relay.sent - self.reported).unwrap_or(usize::MAX);
        let until_close = matches!(relay.body, body::Body::UntilClose);
        // Bytes written and a failure in one step: the exchange takes the
        // bytes from `unreported` as it drops this side.
        let complete = |up: &mut UpstreamH1| {
            up.reported += n as u64;
            UpStep::Complete(n)
        };
        match step {
            RelayStep::Progress | RelayStep::Blocked if n > 0 => {
                self.reported += n as u64;
                UpStep::BodySent(n)
            }
            RelayStep::Progress | RelayStep::Blocked if moved => UpStep::Moved,
            RelayStep::Progress => UpStep::Moved,
            RelayStep::Blocked if !c.req.upload_cut_short() => UpStep::Blocked,
            RelayStep::Blocked => self.discard_cut_upload(env, c),
            RelayStep::Complete => {
                self.keep_alive &= c.req.body.is_complete();
                complete(self)
            }
            RelayStep::SourceClosed if until_close => {
                self.keep_alive = false;
                complete(self)
            }
            RelayStep::SourceFailed(e)
                if until_close
                    && !c.req.body.is_complete()
                    && e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                // A server that answered early and closed with our upload
                // unread in its socket resets the connection: after a
                // close-delimited body, that is its end.
                self.keep_alive = false;
                complete(self)
            }
            RelayStep::SourceClosed => {
                log::error!(
                    "upstream {} prematurely closed the connection while sending the response body, client: {}",
                    self.addr,
                    c.peer
                );
                UpStep::Failed {
                    doing: "sending the response body",
                    bad_response: false,
                }
            }
            RelayStep::SourceFailed(e) => {
                log::error!(
                    "upstream {} failed while sending the response body: {e}, client: {}",
                    self.addr,
                    c.peer
                );
                UpStep::Failed {
                    doing: "sending the response body",
                    bad_response: false,
                }
            }
            RelayStep::DestFailed(e) => {
                log::debug!("client {} went away during the response: {e}", c.peer);
                UpStep::ClientGone
            }
            RelayStep::Framing(e) => {
                log::error!(
                    "upstream {} sent a bad chunked body: {}, client: {}",
                    self.addr,
                    e.reason(),
                    c.peer
                );
                UpStep::Failed {
                    doing: "sending the response body",
                    bad_response: false,
                }
            }
            // Responses carry no size limit.
            RelayStep::TooLarge => UpStep::Failed {
                doing: "sending the response body",
                bad_response: false,
            },
        }
    }

    /// When the response head is still to be written and body bytes are
    /// already buffered, sends both with one `writev` (one syscall per
    /// small response instead of two). Ok(body bytes written), Ok(0) also
    /// when it wrote only head bytes or nothing (then `flush_out` goes on).
    fn write_head_with_body(&mut self, c: &mut H1Client) -> Result<usize, UpStep> {
        let Some(out) = c.out.as_ref() else {
            return Ok(0);
        };
        if *c.out_pos >= out.len() || !*c.writable {
            return Ok(0);
        }
        let Phase::Relay(relay) = &mut self.phase else {
            return Ok(0);
        };
        let Some(input) = self.input.as_mut().filter(|b| !b.is_empty()) else {
            return Ok(0);
        };
        let ready = match relay.prepare(input) {
            Ok(n) if n > 0 => n,
            // Framing errors surface in the regular relay step.
            Ok(_) | Err(_) => return Ok(0),
        };
        let head = &out[*c.out_pos..];
        let iov = [
            std::io::IoSlice::new(head),
            std::io::IoSlice::new(&input.data()[..ready]),
        ];
        match io::write_vectored(c.stream, &iov, c.writable) {
            Io::Done(n) => {
                let from_head = n.min(head.len());
                *c.out_pos += from_head;
                let from_body = n - from_head;
                input.consume(from_body);
                relay.commit(from_body);
                Ok(from_body)
            }
            Io::Blocked => Ok(0),
            Io::Eof | Io::Failed(_) => Err(UpStep::ClientGone),
        }
    }

    /// The response waits. After an early response the client's upload
    /// keeps coming: it is thrown away meanwhile, so that a client that
    /// reads only once it has sent everything gets to read.
    fn discard_cut_upload(&mut self, env: &mut Env, c: &mut H1Client) -> UpStep {
        if !c.req.upload_cut_short() {
            return UpStep::Blocked;
        }
        match c.discard_input(env) {
            Io::Done(_) => UpStep::Moved,
            Io::Blocked => UpStep::Blocked,
            Io::Eof => {
                // It sent all it will; it may still read.
                *c.readable = false;
                UpStep::Blocked
            }
            Io::Failed(_) => UpStep::ClientGone,
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
        let reusable = request_done
            && self.keep_alive
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

/// Why a 101 cannot be relayed, if it cannot: forklb never offers h2c
/// upstream, and a switch to it would turn the connection into a tunnel
/// past routing; a switch nobody asked for is as bad.
fn switch_refusal(resp: &httparse::Response, asked: bool) -> Option<&'static str> {
    let to_http2 = resp
        .headers
        .iter()
        .filter(|h| http::name_is(h.name, "upgrade"))
        .any(|h| http::tokens(h.value).any(http::request::is_http2_protocol));
    if to_http2 {
        Some("to HTTP/2, which forklb never relays")
    } else if !asked {
        Some("without being asked")
    } else {
        None
    }
}
