//! An HTTP/2 client connection: the transport (plain or TLS) carrying an
//! `h2::ServerConn`, with one `Exchange` per request stream. Streams run
//! independently: each has its own upstream socket and deadline, and the
//! stream's send window (the client's reading speed) paces its upstream
//! reads, so a slow stream never holds back the others and nothing is
//! buffered without bound.

use super::env::{Env, Outcome};
use super::exchange::{Client, Exchange, Progress, Request, ResponseSink};
use super::h2_wire::{self, WireError};
use crate::buffer::{self, Buf};
use crate::event::Stream;
use crate::h2::{self, Event, ServerConn};
use crate::http::{self, Framing};
use std::net::SocketAddr;
use std::time::Instant;

/// What a connection hands over when its first bytes are the HTTP/2
/// preface (TLS with ALPN h2, or h2c prior knowledge).
pub struct Transport {
    pub id: u64,
    pub slot: usize,
    pub client: Stream,
    pub peer: SocketAddr,
    pub listener: usize,
    /// Bytes read already: the preface and whatever followed it.
    pub input: Option<Buf>,
    pub hup: bool,
}

struct StreamExchange {
    id: u32,
    ex: Exchange,
    /// Something happened for this stream alone (an event on its upstream
    /// socket, DATA from the client): drive it even when not all streams
    /// are driven.
    dirty: bool,
}

pub struct H2Session {
    pub id: u64,
    slot: usize,
    client: Stream,
    peer: SocketAddr,
    listener: usize,
    readable: bool,
    writable: bool,
    hup: bool,
    input: Option<Buf>,
    conn: ServerConn,
    streams: Vec<StreamExchange>,
    /// The worker drains: the graceful shutdown began (two GOAWAYs, RFC
    /// 9113 §6.8); in-flight streams finish.
    draining: bool,
    /// `finish` ran (the worker's `release` calls it once more).
    finished: bool,
    /// With no stream open, the connection closes at this instant.
    idle_until: Instant,
    pub deadline: Instant,
    pub timer_at: Option<Instant>,
}

/// An exchange's view of its stream.
struct StreamSink<'a> {
    conn: &'a mut ServerConn,
    stream: u32,
}

impl ResponseSink for StreamSink<'_> {
    fn head(&mut self, status: u16, headers: &[(&[u8], &[u8])], end: bool) {
        self.conn.send_headers(self.stream, status, headers, end);
    }

    /// A 1xx head is a HEADERS frame without END_STREAM before the final
    /// one (RFC 9113 §8.1): 103 Early Hints reach HTTP/2 clients too.
    fn interim(&mut self, status: u16, headers: &[(&[u8], &[u8])]) {
        self.conn.send_headers(self.stream, status, headers, false);
    }

    fn capacity(&self) -> usize {
        self.conn.send_capacity(self.stream)
    }

    fn data(&mut self, bytes: &[u8], end: bool) -> usize {
        self.conn.send_data(self.stream, bytes, end)
    }

    fn body_forwarded(&mut self, n: usize) {
        self.conn.consumed(self.stream, n);
    }

    fn trailers(&mut self, fields: &[(&[u8], &[u8])]) {
        self.conn.send_trailers(self.stream, fields);
    }

    fn abort(&mut self) {
        self.conn.reset(self.stream, h2::code::INTERNAL_ERROR);
    }
}

impl H2Session {
    pub fn new(t: Transport, env: &Env) -> H2Session {
        let settings = super::env::h2_settings(env.rt);
        H2Session {
            id: t.id,
            slot: t.slot,
            client: t.client,
            peer: t.peer,
            listener: t.listener,
            readable: true,
            writable: true,
            hup: t.hup,
            input: t.input,
            conn: ServerConn::new(settings),
            streams: Vec::new(),
            draining: false,
            finished: false,
            idle_until: env.now + env.rt.timeouts.client_header,
            deadline: env.now + env.rt.timeouts.client_header,
            timer_at: None,
        }
    }

    /// The listener (its index in the configuration) it came in on.
    pub fn listener(&self) -> usize {
        self.listener
    }

    /// `$ssl_client_s_dn` of this client connection (HTTP/2, shared by its
    /// streams): computed once per connection, on first use; empty without
    /// a client certificate.
    pub fn ssl_client_s_dn(&self) -> &str {
        self.client.client_s_dn()
    }

    pub fn client_mut(&mut self) -> &mut mio::net::TcpStream {
        self.client.sock_mut()
    }

    /// Readiness of the client socket or of one stream's upstream socket.
    pub fn on_event(
        &mut self,
        up_slot: Option<usize>,
        ev: &mio::event::Event,
        env: &mut Env,
    ) -> Outcome {
        let (r, w, hup) = crate::event::readiness(ev);
        match up_slot {
            None => {
                self.readable |= r;
                self.writable |= w;
                self.hup |= hup;
            }
            Some(slot) => {
                if let Some(s) = self
                    .streams
                    .iter_mut()
                    .find(|s| s.ex.up_slot() == Some(slot))
                {
                    s.ex.on_upstream_event(r, w, hup);
                    s.dirty = true;
                }
                // Only that stream has news (unless the connection's
                // windows or output room change on the way). What it
                // answers is written once the worker has seen this round's
                // readiness events (it drives the woken connections then):
                // responses that finish together go out in one write (and
                // one TLS record), not one each.
                // With a single stream there is nothing to wait for.
                let defer = self.streams.len() > 1;
                let out = self.run(env, false, !defer);
                if defer && out == Outcome::Keep && !self.conn.output().is_empty() {
                    env.wake.push(self.slot);
                }
                return out;
            }
        }
        self.drive(env)
    }

    /// A draining worker: GOAWAY now; the connection ends when its streams
    /// have.
    pub fn close_if_idle(&mut self, env: &mut Env) -> Outcome {
        self.drive(env)
    }

    pub fn on_timeout(&mut self, env: &mut Env) -> Outcome {
        let now = env.now;
        if self
            .conn
            .header_block_since()
            .is_some_and(|since| since + env.rt.timeouts.client_header <= now)
        {
            log::info!(
                "client {} did not complete an HTTP/2 header block within {:?}",
                self.peer,
                env.rt.timeouts.client_header
            );
            self.conn.header_block_timeout();
            return self.drive(env);
        }
        if self.streams.is_empty() && self.idle_until <= now {
            log::debug!("HTTP/2 connection of client {} idle, closing", self.peer);
            self.conn.go_away();
            self.draining = true;
            let _ = self.flush();
            return self.finish(env, Outcome::Close);
        }
        for s in self.streams.iter_mut().filter(|s| s.ex.deadline <= now) {
            let mut sink = StreamSink {
                conn: &mut self.conn,
                stream: s.id,
            };
            s.ex.on_timeout(env, &mut sink);
        }
        self.drive(env)
    }

    /// `shutdown sessions server`: the streams whose requests are on one of
    /// `servers` are reset (as when their upstream fails) and their
    /// exchanges aborted and logged; the connection and its other streams
    /// go on.
    pub fn cut_streams_on(&mut self, servers: &[(usize, usize)], env: &mut Env) -> Outcome {
        let mut i = 0;
        let mut cut = 0;
        while i < self.streams.len() {
            if !self.streams[i].ex.uses_any(servers) {
                i += 1;
                continue;
            }
            let mut s = self.streams.swap_remove(i);
            StreamSink {
                conn: &mut self.conn,
                stream: s.id,
            }
            .abort();
            s.ex.abort(env);
            s.ex.end(env);
            cut += 1;
        }
        if cut == 0 {
            return Outcome::Keep;
        }
        log::info!(
            "client {}: {cut} HTTP/2 stream(s) cut (shutdown sessions of their server)",
            self.peer
        );
        if self.streams.is_empty() {
            self.idle_until = env.now + env.rt.timeouts.keepalive;
        }
        self.drive(env)
    }

    /// Runs the connection and all its streams until nothing moves.
    pub fn drive(&mut self, env: &mut Env) -> Outcome {
        self.run(env, true, true)
    }

    /// Runs the connection until nothing moves: every stream when `all`,
    /// else those with news of their own (`dirty`) — unless something that
    /// may unblock any stream happens: client bytes arrive (a WINDOW_UPDATE
    /// or SETTINGS among them), or output over its bound drains. With 100
    /// streams, an upstream event then costs one stream's step, not 100.
    /// `flush`: write to the client (else the caller has the connection
    /// driven again soon, which writes).
    fn run(&mut self, env: &mut Env, mut all: bool, flush: bool) -> Outcome {
        if env.draining && !self.draining {
            self.draining = true;
            self.conn.shutdown(env.now);
        }
        self.conn.drain_tick(env.now);
        loop {
            let output_full = !self.conn.wants_read();
            let mut moved = match flush.then(|| self.flush()) {
                None => false,
                Some(Ok(m)) => m,
                Some(Err(_)) => return self.finish(env, Outcome::Close),
            };
            all |= moved && output_full;
            match self.read(env) {
                Ok(m) => {
                    moved |= m;
                    all |= m;
                }
                Err(e) => {
                    if let WireError::Failed(e) = e {
                        self.client.log_client_read_failure(self.peer, &e);
                    }
                    return self.finish(env, Outcome::Close);
                }
            }
            while let Some(ev) = self.conn.next_event() {
                self.on_h2_event(env, ev);
                moved = true;
            }
            moved |= self.drive_streams(env, all);
            all = false;
            if !moved {
                break;
            }
        }
        if flush && self.client.flush_queued(&mut self.writable).is_err() {
            return self.finish(env, Outcome::Close);
        }
        if self.conn.is_done()
            || (self.draining
                && self.conn.drained()
                && self.streams.is_empty()
                && self.conn.output().is_empty())
        {
            return self.finish(env, Outcome::Close);
        }
        self.set_deadline(env);
        Outcome::Keep
    }

    /// Writes queued frames; Ok(true) if some went out.
    fn flush(&mut self) -> Result<bool, WireError> {
        h2_wire::flush(&mut self.conn, &mut self.client, &mut self.writable)
    }

    /// Reads client bytes into the connection (while it takes them).
    fn read(&mut self, env: &mut Env) -> Result<bool, WireError> {
        let inbound = h2_wire::Inbound {
            sock: &mut self.client,
            readable: &mut self.readable,
            hup: self.hup,
            input: &mut self.input,
        };
        h2_wire::read(&mut self.conn, inbound, env.bufs, env.now)
    }

    fn on_h2_event(&mut self, env: &mut Env, ev: Event) {
        match ev {
            Event::Request {
                stream,
                head,
                end_stream,
            } => self.start_stream(env, stream, head, end_stream),
            Event::Data {
                stream,
                data,
                end_stream,
            } => match self.streams.iter_mut().find(|s| s.id == stream) {
                Some(s) => {
                    s.ex.push_body(env, &data, end_stream);
                    s.dirty = true;
                }
                // Its exchange is over (answered early): keep the
                // connection's window open.
                None => self.conn.consumed(stream, data.len()),
            },
            Event::Trailers { stream, trailers } => {
                if let Some(s) = self.streams.iter_mut().find(|s| s.id == stream) {
                    s.ex.push_trailers(env, &trailers);
                    s.dirty = true;
                }
            }
            Event::Reset { stream } => {
                if let Some(pos) = self.streams.iter().position(|s| s.id == stream) {
                    let mut s = self.streams.swap_remove(pos);
                    s.ex.abort(env);
                    s.ex.end(env);
                    if self.streams.is_empty() {
                        self.idle_until = env.now + env.rt.timeouts.keepalive;
                    }
                }
            }
        }
    }

    /// A request head: its exchange starts (routing, the first attempt).
    fn start_stream(&mut self, env: &mut Env, stream: u32, head: h2::RequestHead, end: bool) {
        let client = Client {
            peer: self.peer,
            local: super::exchange::local_addr_for(env.rt, None, self.client.sock()),
            listener: self.listener,
            slot: self.slot,
        };
        let (Ok(method), Ok(target)) = (
            std::str::from_utf8(head.method()),
            std::str::from_utf8(head.path()),
        ) else {
            self.conn.reset(stream, h2::code::PROTOCOL_ERROR);
            return;
        };
        // `:authority` is the Host (RFC 9113 §8.3.1); a Host field beside
        // it that says the same is dropped, one that names another host is
        // kept, so that the request has two and is refused (400, as nginx;
        // §8.3.1: such a request SHOULD be malformed). On the stack unless
        // the fields are many.
        let mut stack = [httparse::EMPTY_HEADER; 32];
        let mut heap = Vec::new();
        let room = head.headers().len() + 1;
        let slots = buffer::stack_or_heap(&mut stack, &mut heap, room, httparse::EMPTY_HEADER);
        let mut n = 0;
        let authority = head.authority();
        let host = authority.map(|a| (&b"host"[..], a));
        for (i, (name, value)) in host.into_iter().chain(head.headers()).enumerate() {
            let Ok(name) = std::str::from_utf8(name) else {
                self.conn.reset(stream, h2::code::PROTOCOL_ERROR);
                return;
            };
            // The first is `:authority`'s, if any.
            if i > 0
                && http::name_is(name, "host")
                && authority.is_some_and(|a| a.eq_ignore_ascii_case(value))
            {
                continue;
            }
            if let Some(slot) = slots.get_mut(n) {
                *slot = httparse::Header { name, value };
                n += 1;
            }
        }
        let headers = slots.get_mut(..n).unwrap_or_default();
        let framing = match head.content_length {
            Some(n) => Framing::Length(n),
            None if end => Framing::None,
            None => Framing::Chunked,
        };
        let req = Request {
            method,
            target,
            headers,
            framing,
            protocol: "HTTP/2.0",
            ssl_client_s_dn: self.client.client_s_dn(),
        };
        env.count_request(self.listener);
        let ex = Exchange::start(env, client, req, end);
        self.streams.push(StreamExchange {
            id: stream,
            ex,
            dirty: true,
        });
    }

    /// Runs every stream's exchange; finished ones are logged and dropped.
    fn drive_streams(&mut self, env: &mut Env, all: bool) -> bool {
        let mut moved = false;
        let mut i = 0;
        while i < self.streams.len() {
            let s = &mut self.streams[i];
            if !(all || s.dirty) {
                i += 1;
                continue;
            }
            s.dirty = false;
            let mut sink = StreamSink {
                conn: &mut self.conn,
                stream: s.id,
            };
            match s.ex.drive(env, &mut sink) {
                Progress::Moved => moved = true,
                // Upgraded: only HTTP/1.1 clients switch protocols.
                Progress::Blocked | Progress::Upgraded => {}
                Progress::Finished => {
                    moved = true;
                    let s = self.streams.swap_remove(i);
                    s.ex.end(env);
                    if self.streams.is_empty() {
                        self.idle_until = env.now + env.rt.timeouts.keepalive;
                    }
                    continue;
                }
            }
            i += 1;
        }
        moved
    }

    /// The earliest of: the streams' deadlines (or the idle timeout when
    /// there is none), a header block's `client_header` bound, the final
    /// GOAWAY of a graceful shutdown.
    fn set_deadline(&mut self, env: &Env) {
        let streams = self.streams.iter().map(|s| s.ex.deadline).min();
        let mut at = streams.unwrap_or(self.idle_until);
        if let Some(since) = self.conn.header_block_since() {
            at = at.min(since + env.rt.timeouts.client_header);
        }
        if let Some(drain) = self.conn.drain_deadline() {
            at = at.min(drain);
        }
        self.deadline = at;
    }

    /// Every exchange still in flight ends (logged as the client's doing).
    fn finish(&mut self, env: &mut Env, outcome: Outcome) -> Outcome {
        if outcome == Outcome::Close && !self.finished {
            self.finished = true;
            // Also when the client closed first, after our GOAWAY.
            if let Some(why) = self.conn.error() {
                log::info!("HTTP/2 connection of client {} closed: {why}", self.peer);
            }
            for mut s in self.streams.drain(..) {
                s.ex.abort(env);
                s.ex.end(env);
            }
            if let Some(b) = self.input.take() {
                env.bufs.put(b);
            }
        }
        outcome
    }

    /// The worker's `shutdown_timeout` passed: every stream still open is
    /// cut, and logged as cut, as the connection closes.
    pub fn cut_at_shutdown(&mut self, env: &mut Env) -> Outcome {
        for s in &mut self.streams {
            s.ex.mark_shutdown_cut();
        }
        self.finish(env, Outcome::Close)
    }

    /// Closes everything (the worker drops the socket afterwards).
    pub fn release(&mut self, env: &mut Env) {
        self.finish(env, Outcome::Close);
    }
}
