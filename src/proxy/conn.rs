//! One client connection and, while a request is being proxied, its upstream
//! connection. The connection is an explicit state machine (`Phase`); the
//! worker calls `on_event` with readiness and `on_timeout` at the deadline,
//! and `drive` runs steps until none can make progress.
//!
//! ```text
//!  ReadHead ──(return/redirect/error)──────────────► SendLocal ─┐
//!     │                                                          │
//!     └─(upstream)► Connect ► SendRequest ► ReadResponseHead ► SendResponse
//!                     ▲  │ (refused: next server)                 │
//!                     └──┘                                        │
//!  ◄────────────── keep-alive: back to ReadHead ◄─────────────────┘
//! ```
//!
//! Buffers are taken from the worker's pools when needed and given back
//! when the connection goes idle, so an idle keep-alive connection holds only
//! its socket and this struct.

use super::io::{self, Io};
use super::{upstream_token, Side};
use crate::balance::Balancer;
use crate::buffer::{Buf, BufPool, VecPool};
use crate::http::{self, errors, request, response, rewrite, Framing};
use crate::route::{Action, Runtime};
use mio::net::TcpStream;
use mio::{Interest, Registry};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the worker lends a connection while driving it.
pub struct Env<'a> {
    pub rt: &'a Runtime,
    pub registry: &'a Registry,
    pub bufs: &'a mut BufPool,
    pub heads: &'a mut VecPool,
    pub balancers: &'a mut [Balancer],
    pub now: Instant,
    /// The worker is shutting down gracefully: finish, then close.
    pub draining: bool,
}

/// What the worker should do with the connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head; idle between requests.
    ReadHead,
    /// Non-blocking connect to the chosen server in progress.
    Connect,
    /// Writing the request head, then streaming the body from the client.
    SendRequest,
    /// Waiting for the upstream's response head.
    ReadResponseHead,
    /// Writing the response head, then streaming the body from upstream.
    SendResponse,
    /// Writing a response forklb generated itself.
    SendLocal,
}

/// Most servers one request may try (1 + the largest `retries`).
const MAX_TRIES: usize = 17;

/// Per-request state.
#[derive(Clone, Copy)]
struct Exchange {
    upstream: usize,
    server: usize,
    is_head: bool,
    idempotent: bool,
    client_minor: u8,
    client_keep_alive: bool,
    /// Request body bytes still to forward.
    req_left: u64,
    tried: [usize; MAX_TRIES],
    ntried: usize,
    retries_left: u32,
    /// Some byte of the request reached the upstream socket.
    sent_any: bool,
    resp_framing: Framing,
    resp_left: u64,
    /// The client connection continues after this response.
    keep_after: bool,
}

impl Exchange {
    const fn new() -> Exchange {
        Exchange {
            upstream: 0,
            server: 0,
            is_head: false,
            idempotent: true,
            client_minor: 1,
            client_keep_alive: false,
            req_left: 0,
            tried: [0; MAX_TRIES],
            ntried: 0,
            retries_left: 0,
            sent_any: false,
            resp_framing: Framing::None,
            resp_left: 0,
            keep_after: false,
        }
    }
}

struct Upstream {
    sock: TcpStream,
    addr: SocketAddr,
    readable: bool,
    writable: bool,
    input: Option<Buf>,
    head: Vec<u8>,
    head_pos: usize,
    input_fresh: bool,
}

/// A step either made progress (run another), is blocked on readiness, or
/// ends the connection.
type Step = Result<bool, Closed>;

/// The connection must be closed (everything that could be said was said).
#[derive(Debug)]
struct Closed;

pub struct Conn {
    pub id: u64,
    slot: usize,
    client: TcpStream,
    peer: SocketAddr,
    listener: usize,
    c_readable: bool,
    c_writable: bool,
    input: Option<Buf>,
    input_fresh: bool,
    out: Option<Vec<u8>>,
    out_pos: usize,
    up: Option<Upstream>,
    phase: Phase,
    ex: Exchange,
    head_started: bool,
    /// When the current wait times out.
    pub deadline: Instant,
    /// The instant a timer entry is queued for, if any (see worker::timers).
    pub timer_at: Option<Instant>,
}

impl Conn {
    pub fn new(
        id: u64,
        slot: usize,
        client: TcpStream,
        peer: SocketAddr,
        listener: usize,
        env: &Env,
    ) -> Conn {
        Conn {
            id,
            slot,
            client,
            peer,
            listener,
            // Data often arrives with the connection: try reading at once.
            c_readable: true,
            c_writable: true,
            input: None,
            input_fresh: false,
            out: None,
            out_pos: 0,
            up: None,
            phase: Phase::ReadHead,
            ex: Exchange::new(),
            head_started: false,
            deadline: env.now + env.rt.timeouts.client_header,
            timer_at: None,
        }
    }

    /// The slot is known only after the connection entered the slab.
    pub fn set_slot(&mut self, slot: usize) {
        self.slot = slot;
    }

    /// Returns pooled buffers and closes the upstream side; the worker then
    /// drops the connection (closing the client socket).
    pub fn release(&mut self, env: &mut Env) {
        self.finish(env, Outcome::Close);
    }

    pub fn client_mut(&mut self) -> &mut TcpStream {
        &mut self.client
    }

    /// True while nothing of a request has arrived (an idle keep-alive
    /// connection), which a draining worker may close at once.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::ReadHead
            && !self.head_started
            && self.input.as_ref().is_none_or(Buf::is_empty)
    }

    /// Records readiness from an event and runs the state machine.
    pub fn on_event(&mut self, side: Side, ev: &mio::event::Event, env: &mut Env) -> Outcome {
        let r = ev.is_readable() || ev.is_read_closed() || ev.is_error();
        let w = ev.is_writable() || ev.is_write_closed() || ev.is_error();
        match side {
            Side::Client => {
                self.c_readable |= r;
                self.c_writable |= w;
            }
            Side::Upstream => {
                if let Some(up) = self.up.as_mut() {
                    up.readable |= r;
                    up.writable |= w;
                }
            }
        }
        self.drive(env)
    }

    /// Handles the deadline passing.
    pub fn on_timeout(&mut self, env: &mut Env) -> Outcome {
        let result = match self.phase {
            Phase::ReadHead if self.head_started => {
                log::debug!("client {} timed out sending the request head", self.peer);
                self.respond_error(env, 408, false)
            }
            Phase::ReadHead => return self.finish(env, Outcome::Close),
            Phase::Connect => {
                let addr = self.up.as_ref().map(|u| u.addr);
                log::error!(
                    "upstream {} timed out while connecting, client: {}",
                    addr.map(|a| a.to_string()).unwrap_or_default(),
                    self.peer
                );
                self.drop_upstream(env);
                self.respond_error(env, 504, false)
            }
            Phase::SendRequest | Phase::ReadResponseHead => {
                let addr = self.up.as_ref().map(|u| u.addr);
                log::error!(
                    "upstream {} timed out, client: {}",
                    addr.map(|a| a.to_string()).unwrap_or_default(),
                    self.peer
                );
                self.drop_upstream(env);
                self.respond_error(env, 504, false)
            }
            Phase::SendResponse | Phase::SendLocal => Err(Closed),
        };
        match result {
            Ok(_) => self.drive(env),
            Err(Closed) => self.finish(env, Outcome::Close),
        }
    }

    /// Runs steps until none makes progress.
    pub fn drive(&mut self, env: &mut Env) -> Outcome {
        loop {
            let step = match self.phase {
                Phase::ReadHead => self.read_head(env),
                Phase::Connect => self.connect_done(env),
                Phase::SendRequest => self.send_request(env),
                Phase::ReadResponseHead => self.read_response_head(env),
                Phase::SendResponse => self.send_response(env),
                Phase::SendLocal => self.send_local(env),
            };
            match step {
                Ok(true) => continue,
                Ok(false) => return Outcome::Keep,
                Err(Closed) => return self.finish(env, Outcome::Close),
            }
        }
    }

    /// Gives every pooled resource back; the worker drops the sockets.
    fn finish(&mut self, env: &mut Env, outcome: Outcome) -> Outcome {
        if outcome == Outcome::Close {
            self.drop_upstream(env);
            if let Some(b) = self.input.take() {
                env.bufs.put(b);
            }
            if let Some(v) = self.out.take() {
                env.heads.put(v);
            }
        }
        outcome
    }

    fn set_deadline(&mut self, env: &Env, timeout: Duration) {
        self.deadline = env.now + timeout;
    }

    // ----- ReadHead -------------------------------------------------------

    fn read_head(&mut self, env: &mut Env) -> Step {
        if self.input_fresh {
            self.input_fresh = false;
            if self.parse_request(env)? {
                return Ok(true);
            }
            let len = self.input.as_ref().map_or(0, Buf::len);
            if len >= env.rt.max_header_bytes {
                log::debug!("client {} sent a request head over the limit", self.peer);
                return self.respond_error(env, 431, false);
            }
        }
        if !self.c_readable {
            self.release_idle_input(env);
            return Ok(false);
        }
        let buf = self.input.get_or_insert_with(|| env.bufs.get());
        match io::read(&mut self.client, buf.spare(), &mut self.c_readable) {
            Io::Done(n) => {
                buf.filled(n);
                self.input_fresh = true;
                if !self.head_started {
                    // The whole head must arrive within client_header.
                    self.head_started = true;
                    self.set_deadline(env, env.rt.timeouts.client_header);
                }
                Ok(true)
            }
            Io::Blocked => {
                self.release_idle_input(env);
                Ok(false)
            }
            Io::Eof | Io::Failed(_) => Err(Closed),
        }
    }

    fn release_idle_input(&mut self, env: &mut Env) {
        if self.input.as_ref().is_some_and(Buf::is_empty) {
            if let Some(b) = self.input.take() {
                env.bufs.put(b);
            }
        }
    }

    /// Tries to parse a complete head from `input`; Ok(true) once the
    /// request is dispatched (phase changed), Ok(false) if more bytes are needed.
    fn parse_request(&mut self, env: &mut Env) -> Step {
        let Some(input) = self.input.take() else {
            return Ok(false);
        };
        let result = self.dispatch(env, &input);
        self.input = Some(input);
        match result {
            Dispatch::Partial => Ok(false),
            Dispatch::Consumed(n) => {
                if let Some(b) = self.input.as_mut() {
                    b.consume(n);
                }
                Ok(true)
            }
            Dispatch::Rejected => Ok(true),
            Dispatch::Close => Err(Closed),
        }
    }

    fn dispatch(&mut self, env: &mut Env, input: &Buf) -> Dispatch {
        let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        let (req, info) = match request::parse(input.data(), &mut headers) {
            Ok(request::Parsed::Partial) => return Dispatch::Partial,
            Ok(request::Parsed::Complete(req, info)) => (req, info),
            Err(e) => {
                log::info!("client {} sent an invalid request: {}", self.peer, e.reason);
                return self.reject(env, e.status);
            }
        };
        self.ex = Exchange::new();
        self.ex.is_head = info.is_head;
        self.ex.idempotent = info.idempotent;
        self.ex.client_minor = info.minor;
        self.ex.client_keep_alive = info.keep_alive;
        let has_body = info.framing != Framing::None;
        // A locally answered request with a body: we do not read the body,
        // so the connection cannot continue after the answer.
        let local_keep = info.keep_alive && !has_body;

        let mut host_buf = [0u8; 256];
        let host = request::host_of(&req, &mut host_buf);
        let path = req.path.unwrap_or("/");
        let Some(action) = env.rt.route(self.listener, host, path) else {
            self.respond_local(env, 404, "text/plain", b"", b"Not Found\n", local_keep);
            return Dispatch::Consumed(info.head_len);
        };
        match action {
            Action::Return {
                status,
                content_type,
                body,
            } => {
                self.respond_local(env, *status, content_type, b"", body, local_keep);
                Dispatch::Consumed(info.head_len)
            }
            Action::Redirect { status, to } => {
                let location = format!("Location: {to}\r\n");
                let body = format!("{}\n", errors::reason(*status));
                self.respond_local(
                    env,
                    *status,
                    "text/plain",
                    location.as_bytes(),
                    body.as_bytes(),
                    local_keep,
                );
                Dispatch::Consumed(info.head_len)
            }
            Action::Metrics => {
                self.respond_local(
                    env,
                    501,
                    "text/plain",
                    b"",
                    b"Not Implemented\n",
                    local_keep,
                );
                Dispatch::Consumed(info.head_len)
            }
            Action::Upstream(u) => {
                if info.framing == Framing::Chunked {
                    // Streaming chunked request bodies comes with the full
                    // framing work; until then never forward them mis-framed.
                    log::info!(
                        "client {}: chunked request bodies are not supported yet",
                        self.peer
                    );
                    return self.reject(env, 501);
                }
                if let Framing::Length(n) = info.framing {
                    if env.rt.max_body_bytes > 0 && n > env.rt.max_body_bytes {
                        log::info!("client {} sent a too large body: {n} bytes", self.peer);
                        return self.reject(env, 413);
                    }
                    self.ex.req_left = n;
                }
                if info.expect_continue && self.ex.req_left > 0 {
                    // Like nginx, answer `100 Continue` ourselves as we start
                    // reading the body; Expect is not forwarded.
                    let mut out = env.heads.get();
                    if info.minor >= 1 {
                        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    if let Some(old) = self.out.replace(out) {
                        env.heads.put(old);
                    }
                    self.out_pos = 0;
                }
                self.ex.upstream = *u;
                self.ex.retries_left = env.rt.upstreams[*u].retries;
                self.proxy_request(env, &req, &info)
            }
        }
    }

    /// Answers a request that cannot be processed; the connection closes
    /// after the answer because the rest of the input cannot be trusted.
    fn reject(&mut self, env: &mut Env, status: u16) -> Dispatch {
        let mut out = env.heads.get();
        errors::write_error(&mut out, status, false, false);
        self.start_local(env, out, false);
        Dispatch::Rejected
    }

    fn respond_local(
        &mut self,
        env: &mut Env,
        status: u16,
        content_type: &str,
        extra: &[u8],
        body: &[u8],
        keep: bool,
    ) {
        let keep = keep && !env.draining;
        let mut out = env.heads.get();
        errors::write_response(
            &mut out,
            status,
            content_type,
            extra,
            body,
            keep,
            self.ex.is_head,
        );
        self.start_local(env, out, keep);
    }

    /// An error page for a request whose head was consumed.
    fn respond_error(&mut self, env: &mut Env, status: u16, keep: bool) -> Step {
        let keep = keep && !env.draining;
        let mut out = env.heads.get();
        errors::write_error(&mut out, status, keep, self.ex.is_head);
        self.start_local(env, out, keep);
        Ok(true)
    }

    fn start_local(&mut self, env: &mut Env, out: Vec<u8>, keep: bool) {
        if let Some(old) = self.out.replace(out) {
            env.heads.put(old);
        }
        self.out_pos = 0;
        self.ex.keep_after = keep;
        self.phase = Phase::SendLocal;
        self.set_deadline(env, env.rt.timeouts.upstream_write);
    }

    // ----- Connect ----------------------------------------------------------

    fn proxy_request(
        &mut self,
        env: &mut Env,
        req: &httparse::Request,
        info: &request::RequestInfo,
    ) -> Dispatch {
        let upstream = &env.rt.upstreams[self.ex.upstream];
        let Some(server) = env.balancers[self.ex.upstream].pick(&upstream.servers, &[]) else {
            log::error!("no server available in upstream {}", upstream.name);
            let keep = self.ex.client_keep_alive && self.ex.req_left == 0;
            let _ = self.respond_error(env, 503, keep);
            return if keep {
                Dispatch::Consumed(info.head_len)
            } else {
                Dispatch::Rejected
            };
        };
        let mut head = env.heads.get();
        rewrite::write_upstream_request(
            &mut head,
            req,
            &rewrite::UpstreamRequest {
                client_ip: self.peer.ip(),
                proto: env
                    .rt
                    .listeners
                    .get(self.listener)
                    .map_or("http", |l| l.proto),
                host_override: upstream.host_header.as_deref(),
                default_host: &upstream.servers[server].addr_text,
                // Upstream keep-alive pooling is not implemented yet.
                keep_alive: false,
                http10: info.minor == 0,
                framing: info.framing,
            },
        );
        match self.connect(env, server, head) {
            Ok(_) => Dispatch::Consumed(info.head_len),
            Err(Closed) => Dispatch::Close,
        }
    }

    /// Starts a connection to `server`, with the request head to send.
    fn connect(&mut self, env: &mut Env, server: usize, head: Vec<u8>) -> Step {
        let upstream = &env.rt.upstreams[self.ex.upstream];
        let addr = upstream.servers[server].addr;
        self.ex.server = server;
        if self.ex.ntried < MAX_TRIES {
            self.ex.tried[self.ex.ntried] = server;
            self.ex.ntried += 1;
        }
        let sock = TcpStream::connect(addr).and_then(|mut s| {
            env.registry.register(
                &mut s,
                upstream_token(self.slot),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match sock {
            Ok(sock) => {
                let _ = sock.set_nodelay(true);
                self.up = Some(Upstream {
                    sock,
                    addr,
                    readable: false,
                    writable: false,
                    input: None,
                    head,
                    head_pos: 0,
                    input_fresh: false,
                });
                self.phase = Phase::Connect;
                self.set_deadline(env, env.rt.timeouts.connect);
                Ok(true)
            }
            Err(e) => self.connect_failed(env, addr, head, e),
        }
    }

    fn connect_done(&mut self, env: &mut Env) -> Step {
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        if !up.writable && !up.readable {
            return Ok(false);
        }
        let err = match up.sock.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match up.sock.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
                    // Spurious wake-up: still connecting.
                    up.writable = false;
                    up.readable = false;
                    return Ok(false);
                }
                Err(e) => Some(e),
            },
        };
        match err {
            None => {
                self.phase = Phase::SendRequest;
                self.set_deadline(env, env.rt.timeouts.upstream_write);
                Ok(true)
            }
            Some(e) => {
                let Some(mut up) = self.up.take() else {
                    return Err(Closed);
                };
                let _ = env.registry.deregister(&mut up.sock);
                if let Some(b) = up.input.take() {
                    env.bufs.put(b);
                }
                self.connect_failed(env, up.addr, up.head, e)
            }
        }
    }

    /// A connection attempt failed before any byte was sent: try another
    /// server while retries remain, else answer 502.
    fn connect_failed(
        &mut self,
        env: &mut Env,
        addr: SocketAddr,
        head: Vec<u8>,
        e: std::io::Error,
    ) -> Step {
        let upstream = &env.rt.upstreams[self.ex.upstream];
        log::error!(
            "connect() to {} (server {}/{}) failed: {}, client: {}",
            addr,
            upstream.name,
            upstream.servers[self.ex.server].name,
            e,
            self.peer
        );
        if self.ex.retries_left > 0 {
            self.ex.retries_left -= 1;
            let tried = &self.ex.tried[..self.ex.ntried];
            if let Some(next) = env.balancers[self.ex.upstream].pick(&upstream.servers, tried) {
                return self.connect(env, next, head);
            }
        }
        env.heads.put(head);
        // The body (if any) is still unread on the client socket, so the
        // connection can continue only if there is none.
        let keep = self.ex.client_keep_alive && self.ex.req_left == 0;
        self.respond_error(env, 502, keep)
    }

    fn drop_upstream(&mut self, env: &mut Env) {
        if let Some(mut up) = self.up.take() {
            let _ = env.registry.deregister(&mut up.sock);
            if let Some(b) = up.input.take() {
                env.bufs.put(b);
            }
            env.heads.put(std::mem::take(&mut up.head));
        }
    }

    // ----- SendRequest ------------------------------------------------------

    fn send_request(&mut self, env: &mut Env) -> Step {
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        if up.head_pos < up.head.len() {
            if !up.writable {
                return Ok(false);
            }
            return match io::write(&mut up.sock, &up.head[up.head_pos..], &mut up.writable) {
                Io::Done(n) => {
                    up.head_pos += n;
                    self.ex.sent_any = true;
                    self.set_deadline(env, env.rt.timeouts.upstream_write);
                    Ok(true)
                }
                Io::Blocked => Ok(false),
                Io::Eof | Io::Failed(_) => self.upstream_broken(env, "sending the request head"),
            };
        }
        if self.ex.req_left > 0 {
            // A pending `100 Continue` goes out before we wait for the body.
            if !self.flush_out()? {
                return Ok(false);
            }
            let Some(up) = self.up.as_mut() else {
                return Err(Closed);
            };
            let has_input = self.input.as_ref().is_some_and(|b| !b.is_empty());
            if has_input {
                if !up.writable {
                    return Ok(false);
                }
                let Some(input) = self.input.as_mut() else {
                    return Err(Closed);
                };
                let n = (input.len() as u64).min(self.ex.req_left) as usize;
                return match io::write(&mut up.sock, &input.data()[..n], &mut up.writable) {
                    Io::Done(n) => {
                        input.consume(n);
                        self.ex.req_left -= n as u64;
                        self.set_deadline(env, env.rt.timeouts.upstream_write);
                        Ok(true)
                    }
                    Io::Blocked => Ok(false),
                    Io::Eof | Io::Failed(_) => {
                        self.upstream_broken(env, "sending the request body")
                    }
                };
            }
            if !self.c_readable {
                self.set_deadline(env, env.rt.timeouts.client_body);
                return Ok(false);
            }
            let input = self.input.get_or_insert_with(|| env.bufs.get());
            return match io::read(&mut self.client, input.spare(), &mut self.c_readable) {
                Io::Done(n) => {
                    input.filled(n);
                    self.set_deadline(env, env.rt.timeouts.client_body);
                    Ok(true)
                }
                Io::Blocked => Ok(false),
                Io::Eof | Io::Failed(_) => {
                    log::info!(
                        "client {} closed the connection while sending the request body",
                        self.peer
                    );
                    Err(Closed)
                }
            };
        }
        // Bytes read past the body stay in `input`: the next pipelined request.
        self.input_fresh = self.input.as_ref().is_some_and(|b| !b.is_empty());
        self.phase = Phase::ReadResponseHead;
        self.set_deadline(env, env.rt.timeouts.upstream_read);
        Ok(true)
    }

    /// The upstream connection failed after bytes were sent: 502 if the
    /// client has not seen a response yet, and the client connection ends.
    fn upstream_broken(&mut self, env: &mut Env, doing: &str) -> Step {
        let addr = self
            .up
            .as_ref()
            .map(|u| u.addr.to_string())
            .unwrap_or_default();
        log::error!(
            "upstream {addr} failed while {doing}, client: {}",
            self.peer
        );
        self.drop_upstream(env);
        if self.phase == Phase::SendResponse {
            return Err(Closed);
        }
        self.respond_error(env, 502, false)
    }

    // ----- ReadResponseHead -------------------------------------------------

    fn read_response_head(&mut self, env: &mut Env) -> Step {
        // Interim responses (1xx) already relayed go out first.
        if !self.flush_out()? {
            return Ok(false);
        }
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        if up.input_fresh {
            up.input_fresh = false;
            if let Some(mut input) = up.input.take() {
                let result = self.parse_response(env, &mut input);
                match self.up.as_mut() {
                    Some(up) => up.input = Some(input),
                    None => env.bufs.put(input),
                }
                return result;
            }
        }
        if !up.readable {
            return Ok(false);
        }
        let buf = up.input.get_or_insert_with(|| env.bufs.get());
        if buf.is_full() {
            log::error!(
                "upstream {} sent a too big response head, client: {}",
                up.addr,
                self.peer
            );
            self.drop_upstream(env);
            return self.respond_error(env, 502, false);
        }
        match io::read(&mut up.sock, buf.spare(), &mut up.readable) {
            Io::Done(n) => {
                buf.filled(n);
                up.input_fresh = true;
                self.set_deadline(env, env.rt.timeouts.upstream_read);
                Ok(true)
            }
            Io::Blocked => Ok(false),
            Io::Eof => {
                let addr = up.addr;
                log::error!(
                    "upstream {addr} prematurely closed the connection while reading the response head, client: {}",
                    self.peer
                );
                self.drop_upstream(env);
                self.respond_error(env, 502, false)
            }
            Io::Failed(e) => {
                let addr = up.addr;
                log::error!("upstream {addr} read failed: {e}, client: {}", self.peer);
                self.drop_upstream(env);
                self.respond_error(env, 502, false)
            }
        }
    }

    /// Parses the response head in `input` (owned by the caller while we
    /// run). Interim 1xx responses are relayed and parsing continues.
    fn parse_response(&mut self, env: &mut Env, input: &mut Buf) -> Step {
        let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        let (resp, info) = match response::parse(input.data(), &mut headers, self.ex.is_head) {
            Ok(response::Parsed::Partial) => return Ok(true),
            Ok(response::Parsed::Complete(r, i)) => (r, i),
            Err(e) => {
                let addr = self
                    .up
                    .as_ref()
                    .map(|u| u.addr.to_string())
                    .unwrap_or_default();
                log::error!(
                    "upstream {addr} sent an invalid response: {}, client: {}",
                    e.reason,
                    self.peer
                );
                self.drop_upstream(env);
                return self.respond_error(env, 502, false);
            }
        };
        let mut out = self.out.take().unwrap_or_else(|| env.heads.get());
        if (100..200).contains(&info.status) {
            if info.status == 101 {
                env.heads.put(out);
                log::error!(
                    "upstream switched protocols without being asked, client: {}",
                    self.peer
                );
                self.drop_upstream(env);
                return self.respond_error(env, 502, false);
            }
            // Relay interim responses (100 Continue, 103 Early Hints) to
            // HTTP/1.1 clients; HTTP/1.0 clients do not understand them.
            if self.ex.client_minor >= 1 {
                rewrite::write_client_response(&mut out, &resp, false, true, 1);
            }
            self.out = Some(out);
            input.consume(info.head_len);
            self.mark_upstream_input_fresh();
            return Ok(true);
        }
        let framed = matches!(info.framing, Framing::None | Framing::Length(_));
        if info.framing == Framing::Chunked && self.ex.client_minor == 0 {
            // We asked with HTTP/1.0; a chunked answer is a protocol error.
            env.heads.put(out);
            log::error!(
                "upstream sent a chunked response to an HTTP/1.0 request, client: {}",
                self.peer
            );
            self.drop_upstream(env);
            return self.respond_error(env, 502, false);
        }
        // Chunked and close-delimited bodies are relayed as they come until
        // the upstream closes (it was asked to), then the client connection
        // closes too: correct framing without decoding chunks.
        let keep = framed && self.ex.client_keep_alive && !env.draining;
        rewrite::write_client_response(
            &mut out,
            &resp,
            info.framing == Framing::Chunked,
            keep,
            self.ex.client_minor,
        );
        self.out = Some(out);
        self.ex.resp_framing = info.framing;
        self.ex.resp_left = match info.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        self.ex.keep_after = keep;
        input.consume(info.head_len);
        self.phase = Phase::SendResponse;
        self.set_deadline(env, env.rt.timeouts.upstream_read);
        Ok(true)
    }

    /// After an interim response, parse what follows it in the buffer.
    fn mark_upstream_input_fresh(&mut self) {
        if let Some(up) = self.up.as_mut() {
            up.input_fresh = true;
        }
    }

    // ----- SendResponse -----------------------------------------------------

    fn flush_out(&mut self) -> Result<bool, Closed> {
        let Some(out) = self.out.as_ref() else {
            return Ok(true);
        };
        if self.out_pos >= out.len() {
            return Ok(true);
        }
        if !self.c_writable {
            return Ok(false);
        }
        match io::write(&mut self.client, &out[self.out_pos..], &mut self.c_writable) {
            Io::Done(n) => {
                self.out_pos += n;
                Ok(self.out_pos >= out.len())
            }
            Io::Blocked => Ok(false),
            Io::Eof | Io::Failed(_) => Err(Closed),
        }
    }

    fn send_response(&mut self, env: &mut Env) -> Step {
        if !self.flush_out()? {
            return Ok(false);
        }
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        let complete = match self.ex.resp_framing {
            Framing::None => true,
            Framing::Length(_) => self.ex.resp_left == 0,
            Framing::Chunked | Framing::UntilClose => false,
        };
        if complete {
            return self.response_done(env);
        }
        let pending = up.input.as_ref().map_or(0, Buf::len);
        if pending > 0 {
            if !self.c_writable {
                return Ok(false);
            }
            let Some(input) = up.input.as_mut() else {
                return Err(Closed);
            };
            let n = match self.ex.resp_framing {
                Framing::Length(_) => (pending as u64).min(self.ex.resp_left) as usize,
                _ => pending,
            };
            return match io::write(&mut self.client, &input.data()[..n], &mut self.c_writable) {
                Io::Done(n) => {
                    input.consume(n);
                    if let Framing::Length(_) = self.ex.resp_framing {
                        self.ex.resp_left -= n as u64;
                    }
                    self.set_deadline(env, env.rt.timeouts.upstream_read);
                    Ok(true)
                }
                Io::Blocked => Ok(false),
                Io::Eof | Io::Failed(_) => Err(Closed),
            };
        }
        if !up.readable {
            return Ok(false);
        }
        let buf = up.input.get_or_insert_with(|| env.bufs.get());
        match io::read(&mut up.sock, buf.spare(), &mut up.readable) {
            Io::Done(n) => {
                buf.filled(n);
                self.set_deadline(env, env.rt.timeouts.upstream_read);
                Ok(true)
            }
            Io::Blocked => Ok(false),
            Io::Eof
                if self.ex.resp_framing == Framing::UntilClose
                    || self.ex.resp_framing == Framing::Chunked =>
            {
                self.response_done(env)
            }
            Io::Eof | Io::Failed(_) => {
                let addr = up.addr;
                log::error!(
                    "upstream {addr} prematurely closed the connection while sending the response body, client: {}",
                    self.peer
                );
                Err(Closed)
            }
        }
    }

    /// The response went out completely: continue with the next request or
    /// close.
    fn response_done(&mut self, env: &mut Env) -> Step {
        self.drop_upstream(env);
        self.next_request(env)
    }

    fn next_request(&mut self, env: &mut Env) -> Step {
        if let Some(v) = self.out.take() {
            env.heads.put(v);
        }
        self.out_pos = 0;
        if !self.ex.keep_after || env.draining {
            // Half-close first so the client reads everything before EOF.
            let _ = self.client.shutdown(std::net::Shutdown::Write);
            return Err(Closed);
        }
        self.phase = Phase::ReadHead;
        self.head_started = false;
        self.ex = Exchange::new();
        let pipelined = self.input.as_ref().is_some_and(|b| !b.is_empty());
        self.input_fresh = pipelined;
        if pipelined {
            self.head_started = true;
            self.set_deadline(env, env.rt.timeouts.client_header);
        } else {
            self.set_deadline(env, env.rt.timeouts.keepalive);
        }
        Ok(true)
    }

    // ----- SendLocal --------------------------------------------------------

    fn send_local(&mut self, env: &mut Env) -> Step {
        if !self.flush_out()? {
            return Ok(false);
        }
        self.next_request(env)
    }
}

enum Dispatch {
    /// Need more bytes for a complete head.
    Partial,
    /// The head (this many bytes) was consumed; the phase moved on.
    Consumed(usize),
    /// An error response was queued; the connection closes after it.
    Rejected,
    /// Close at once.
    Close,
}
