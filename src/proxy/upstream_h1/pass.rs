//! The pass-through mode of the HTTP/1.1 upstream side, for an HTTP/1.1
//! client (`H1Client`, the session's end lent for a step): the request head
//! goes up, the request body is relayed from the client socket as framed
//! (validated on the way: 400 for bad chunking, 413 over the limit), the
//! upstream is watched for an early answer meanwhile; interim responses are
//! relayed, a `101` hands the connection to the session's tunnel, and the
//! final response head is rewritten once into the client's output while
//! its body moves socket to socket with its framing. The relays loop within
//! one step while they move bytes, so a large body costs the exchange a
//! step per wakeup, not per read.

use super::{Phase, UpstreamH1};
use crate::buffer::Buf;
use crate::http::chunked::ChunkedScanner;
use crate::http::{self, response, rewrite, Framing};
use crate::proxy::body::{self, Ends, Relay, RelayStep};
use crate::proxy::env::Env;
use crate::proxy::h1_client::{Flush, H1Client};
use crate::proxy::io::{self, Io};
use crate::proxy::side::{UpStep, Why};

impl UpstreamH1 {
    /// One step of a pass-through exchange (an HTTP/1.1 client's `c`);
    /// `head`: the request head as it goes upstream.
    pub fn step_pass(&mut self, env: &mut Env, head: &[u8], c: &mut H1Client) -> UpStep {
        let step = match self.phase {
            Phase::Connect { .. } => self.connect_step(),
            Phase::Send => self.pass_send(env, head, c),
            Phase::AwaitHead => self.pass_await_head(env, head, c),
            Phase::Body(_) | Phase::Relay(_) => self.pass_body(env, c),
        };
        // TLS records queued by this step go out while the socket takes them.
        let _ = self.sock.flush_queued(&mut self.writable);
        step
    }

    /// Pass-through: the whole request head is out and the request body
    /// waits for the client (its `client_body` timeout runs).
    pub fn waiting_for_client(&self, head: &[u8], c: &H1Client) -> bool {
        matches!(self.phase, Phase::Send)
            && self.head_pos >= head.len()
            && !c.req.body.is_complete()
            && c.input.as_ref().is_none_or(Buf::is_empty)
    }

    /// Writes the request head, then relays the request body from the
    /// client, while watching for an early answer from the upstream.
    fn pass_send(&mut self, env: &mut Env, head: &[u8], c: &mut H1Client) -> UpStep {
        // What the upstream sent is read before anything more is written:
        // if it answered and closed, writing on would only be reset, and
        // the answer must be taken while it is there. Only flags are looked
        // at: no syscall unless the upstream really spoke.
        if !self.holding_switch && !c.req.body.is_complete() && (self.input_fresh || self.readable)
        {
            match self.pass_head(env, head, c) {
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
                    // The body is the client's to send from now on: its
                    // `client_body` timeout runs, even before a first byte.
                    UpStep::Sent {
                        client_owes: self.waiting_for_client(head, c),
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
    fn pass_await_head(&mut self, env: &mut Env, head: &[u8], c: &mut H1Client) -> UpStep {
        match c.flush_out() {
            Flush::Done => self.pass_head(env, head, c),
            Flush::Pending { wrote: true } => UpStep::Moved,
            Flush::Pending { wrote: false } => UpStep::Blocked,
            Flush::Failed => UpStep::ClientGone,
        }
    }

    /// One step towards the response head, awaited or early (the body still
    /// going out): parse what arrived, else read more. `head`: the request
    /// head as it went upstream.
    fn pass_head(&mut self, env: &mut Env, head: &[u8], c: &mut H1Client) -> UpStep {
        if self.input_fresh {
            self.input_fresh = false;
            if let Some(mut input) = self.input.take() {
                let step = self.pass_parse(env, head, &mut input, c);
                self.input = Some(input);
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
                bad_response: false,
                why: Why::said("it sent a too big response head"),
            };
        }
        match io::read(&mut self.sock, buf.spare(), &mut self.readable, self.hup) {
            Io::Done(n) => {
                buf.filled(n);
                self.got_any = true;
                // Parsed at once (a whole head usually comes in one read).
                let mut input = self.input.take();
                let step = match input.as_mut() {
                    Some(input) => self.pass_parse(env, head, input, c),
                    None => UpStep::Moved,
                };
                self.input = input;
                step
            }
            Io::Blocked => UpStep::Blocked,
            Io::Eof | Io::Failed(_) if self.reused && !self.got_any => UpStep::Stale,
            end @ (Io::Eof | Io::Failed(_)) if c.req.body.is_complete() && !self.got_any => {
                UpStep::Closed {
                    doing: "reading the response head",
                    why: Why::of(end),
                }
            }
            end @ (Io::Eof | Io::Failed(_)) if c.req.body.is_complete() => UpStep::Failed {
                doing: "reading the response head",
                bad_response: false,
                why: Why::of(end),
            },
            // Closed or reset with no response while the body was on its
            // way: nothing to relay (not retried: the request was partly sent).
            end @ (Io::Eof | Io::Failed(_)) => UpStep::Failed {
                doing: "sending the request body (no response came)",
                bad_response: false,
                why: Why::of(end),
            },
        }
    }

    /// Parses the response head in `input`: an interim one is relayed, a
    /// `101` starts the tunnel, a final one is rewritten for the client
    /// and its body relayed as it is framed.
    fn pass_parse(
        &mut self,
        env: &mut Env,
        head: &[u8],
        input: &mut Buf,
        c: &mut H1Client,
    ) -> UpStep {
        let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        response::read_higher_minor_as_1_1(input.data_mut());
        let (resp, info) = match response::parse(input.data(), &mut headers, c.req.is_head) {
            Ok(response::Parsed::Partial) => return UpStep::Moved,
            Ok(response::Parsed::Complete(r, i)) => (r, i),
            Err(e) => {
                return UpStep::Failed {
                    doing: "reading the response head",
                    bad_response: true,
                    why: Why::said(format!("it sent an invalid response: {}", e.reason)),
                };
            }
        };
        if info.status == 101 {
            let step = self.pass_switch(env, head, &resp, c);
            if matches!(step, UpStep::Upgrade) {
                input.consume(info.head_len);
                self.head_len = info.head_len as u64;
            }
            return step;
        }
        let date = env.date.text();
        if (100..200).contains(&info.status) {
            // 100 Continue, 103 Early Hints: relayed to HTTP/1.1 clients;
            // HTTP/1.0 clients do not understand them (RFC 9110 §15.2).
            if c.req.minor >= 1 {
                let mode = rewrite::ResponseMode::Interim;
                rewrite::write_client_response(c.out_buf(env), &resp, mode, 1, date, None);
            }
            input.consume(info.head_len);
            self.input_fresh = true;
            return UpStep::Moved;
        }
        // Body bytes that came with the head are looked at before the head
        // goes out: framing already broken there is a 502, as HAProxy
        // answers, not a 200 whose body is then cut. (An HTTP/1.0 client's
        // body is dechunked, and one cut short later resets its connection.)
        if info.framing == Framing::Chunked && c.req.minor >= 1 {
            let early = input.data().get(info.head_len..).unwrap_or(&[]);
            if !early.is_empty() && ChunkedScanner::new().scan(early).is_err() {
                return UpStep::Failed {
                    doing: "reading the response body",
                    bad_response: true,
                    why: Why::said("it sent an invalid chunked body"),
                };
            }
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
        c.req.close_delimited = dechunk || info.framing == Framing::UntilClose;
        let minor = c.req.minor;
        let rules = self.rules.as_deref().map(|r| r.response());
        rewrite::write_client_response(c.out_buf(env), &resp, mode, minor, date, rules);
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
    /// its body is out; held while the body is still going out. `head`: the
    /// request head as it went upstream (its Upgrade is what was offered).
    fn pass_switch(
        &mut self,
        env: &mut Env,
        head: &[u8],
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
            return UpStep::Failed {
                doing: "switching protocols",
                bad_response: false,
                why: Why::said("it switched protocols but did not take the request body"),
            };
        }
        if let Some(why) = switch_refusal(resp, c.req.upgrade, head) {
            return UpStep::Failed {
                doing: "switching protocols",
                bad_response: false,
                why: Why::said(format!("it switched protocols {why}")),
            };
        }
        let minor = c.req.minor;
        let mode = rewrite::ResponseMode::Upgrade;
        rewrite::write_client_response(c.out_buf(env), resp, mode, minor, env.date.text(), None);
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
            RelayStep::SourceClosed => UpStep::Failed {
                doing: "sending the response body",
                bad_response: false,
                why: Why::Closed,
            },
            RelayStep::SourceFailed(e) => UpStep::Failed {
                doing: "sending the response body",
                bad_response: false,
                why: Why::Io(e),
            },
            RelayStep::DestFailed(e) => {
                log::debug!("client {} went away during the response: {e}", c.peer);
                UpStep::ClientGone
            }
            RelayStep::Framing(e) => UpStep::Failed {
                doing: "sending the response body",
                bad_response: false,
                why: Why::said(format!("it sent a bad chunked body: {}", e.reason())),
            },
            // Responses carry no size limit.
            RelayStep::TooLarge => UpStep::Failed {
                doing: "sending the response body",
                bad_response: false,
                why: Why::said("the response body is over a size limit"),
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
}

/// Why a 101 cannot be relayed, if it cannot: forklb never offers h2c
/// upstream, and a switch to it would turn the connection into a tunnel
/// past routing; a switch nobody asked for is as bad, and so is one to a
/// protocol the request did not offer (RFC 9110 §7.8: a server MUST NOT
/// switch to a protocol the client did not list). `request_head`: the
/// request as it went upstream, whose Upgrade is the client's offer less
/// the HTTP/2 protocols forklb removes.
fn switch_refusal(
    resp: &httparse::Response,
    asked: bool,
    request_head: &[u8],
) -> Option<&'static str> {
    let chosen = || {
        resp.headers
            .iter()
            .filter(|h| http::name_is(h.name, "upgrade"))
            .flat_map(|h| http::tokens(h.value))
    };
    if chosen().any(http::request::is_http2_protocol) {
        Some("to HTTP/2, which forklb never relays")
    } else if !asked {
        Some("without being asked")
    } else if chosen().next().is_none() {
        // RFC 9110 §15.2.2: a 101 must say which protocol the connection
        // switches to; without, what follows is nobody's guess (HAProxy
        // answers 502 as well).
        Some("without naming the protocol (no Upgrade)")
    } else if !offers_all(request_head, chosen()) {
        Some("to a protocol the client did not offer in its Upgrade")
    } else {
        None
    }
}

/// Whether the request head's Upgrade lists every protocol of `chosen`
/// (see `http::upgrade_protocol_matches`); the head is parsed once.
fn offers_all<'c>(request_head: &[u8], mut chosen: impl Iterator<Item = &'c [u8]>) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // forklb wrote this head itself: it parses.
    if req.parse(request_head).is_err() {
        return false;
    }
    let offered = || {
        req.headers
            .iter()
            .filter(|h| http::name_is(h.name, "upgrade"))
            .flat_map(|h| http::tokens(h.value))
    };
    chosen.all(|p| offered().any(|o| http::upgrade_protocol_matches(o, p)))
}
