//! One client connection and, while a request is being proxied, its upstream
//! connection. The connection is an explicit state machine (`Phase`); the
//! worker calls `on_event` with readiness and `on_timeout` at the deadline,
//! and `drive` runs steps until none can make progress.
//!
//! ```text
//!  ReadHead ──(return/redirect/error)──────────────────► SendLocal ──┐
//!     │                                                               │
//!     └─(upstream)► Connect ► SendRequest ► ReadResponseHead ► SendResponse
//!          ▲ pooled ───────────►│  ▲ (stale pooled: fresh)  │ 101      │
//!          └── refused: next ───┘  └────────────────────────┤► Tunnel  │
//!  ◄─────────────────── keep-alive: back to ReadHead ◄────────────────┘
//!                                            or close: Closing ► Lingering
//! ```
//!
//! While the request body is being sent, the upstream is read too: a final
//! response that arrives before the body is out (413, 401, a redirect...)
//! ends the upload (`SendRequest` → `SendResponse`, see `early_response`);
//! the response is relayed with `Connection: close`, the upstream connection
//! is not pooled, and the client connection ends with a lingering close, so
//! that the upload still on its way cannot reset the connection under the
//! response.
//!
//! Buffers are taken from the worker's pools when needed and given back
//! when the connection goes idle, so an idle keep-alive connection holds only
//! its socket and this struct.

use super::attempt::{self, Attempts, UpstreamSocket};
use super::body::{Body, Ends, Relay, RelayStep};
use super::env::{Env, Outcome};
use super::exchange;
use super::h1_exchange::H1Exchange;
use super::io::{self, Io};
use super::Side;
use crate::access_log;
use crate::buffer::{Buf, BufPool};
use crate::event::Stream;
use crate::http::redirect::Template;
use crate::http::{self, errors, request, response, rewrite, Framing};
use crate::route::Action;
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head; idle between requests.
    ReadHead,
    /// Non-blocking connect to the chosen server in progress.
    Connect,
    /// Writing the request head, then streaming the body from the client,
    /// while watching for an early answer from the upstream.
    SendRequest(Upload),
    /// Waiting for the upstream's response head.
    ReadResponseHead,
    /// Writing the response head, then streaming the body from upstream.
    SendResponse,
    /// After `101 Switching Protocols`: bytes flow both ways until closed.
    Tunnel,
    /// Writing a response forklb generated itself.
    SendLocal,
    /// The connection ends: the last TLS records (and close_notify) are
    /// still queued for a full socket. `linger`: then go on to `Lingering`.
    Closing { linger: bool },
    /// The response is out and our sending side shut down, but the client may
    /// still be uploading (its body was cut short by an early response or an
    /// error): its bytes are read and thrown away until it closes, it sends
    /// nothing for `LINGERING_TIMEOUT`, or `until` (nginx's lingering close).
    Lingering { until: Instant },
    /// The first bytes were the HTTP/2 preface (TLS with ALPN h2, or h2c
    /// prior knowledge): the connection changes hands.
    Http2,
    /// The request is carried by a wire-format-agnostic exchange (`h1x`):
    /// a route to an HTTP/2 upstream.
    Exchange,
}

/// What `SendRequest` does with bytes from the upstream before the request
/// body is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    /// They are read as they come: interim responses are relayed, a final
    /// response ends the upload (`early_response`).
    Watching,
    /// A `101 Switching Protocols` came before the body was out. It stays
    /// unread until the body is sent (the new protocol starts after it),
    /// then the switch goes ahead as usual.
    HoldingSwitch,
}

/// The request line of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// A complete first line that is no HTTP/1 request line. On an `h2c`
/// listener such a client may be an HTTP/2 client whose preface is broken:
/// it gets HTTP/2's answer (GOAWAY with PROTOCOL_ERROR, RFC 9113 §3.4), as on
/// HTTP/2-only ports; either way the connection closes.
fn not_http1(input: &[u8]) -> bool {
    let Some(line) = input
        .split(|&b| b == b'\n')
        .next()
        .filter(|_| input.contains(&b'\n'))
    else {
        return false;
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(version) = line.rsplit(|&b| b == b' ').next() else {
        return true;
    };
    !(version.len() == 8 && version.starts_with(b"HTTP/1.") && version[7].is_ascii_digit())
}

/// Lingering close (see `Phase::Lingering`), with nginx's defaults
/// (`lingering_time 30s`, `lingering_timeout 5s`): a client still uploading
/// when its response is complete gets this long, at most, to notice the
/// response and stop; meanwhile its bytes are discarded. Closing a socket
/// with unread bytes in it makes the kernel reset the connection, and a
/// client whose upload write then fails (curl: "Send failure: Connection
/// reset by peer") or whose kernel drops unread input (Windows) never sees
/// the response — a 413 for a 20 MB upload would look like a network error.
const LINGERING_TIME: Duration = Duration::from_secs(30);
/// Lingering ends when the client has sent nothing for this long.
const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-request state.
#[derive(Clone, Copy)]
struct Exchange {
    /// The servers tried and held (shared with HTTP/2 streams).
    att: Attempts,
    is_head: bool,
    client_minor: u8,
    client_keep_alive: bool,
    /// The client asked to switch protocols (Connection: upgrade).
    upgrade: bool,
    /// Safe to send again on a fresh connection if a pooled one turns out
    /// stale: idempotent and without a body.
    replayable: bool,
    req: Relay,
    resp: Relay,
    /// The upstream lets us reuse the connection after this response.
    upstream_keep_alive: bool,
    /// The client connection continues after this response.
    keep_after: bool,
    /// Status sent to the client (0 = none yet).
    status: u16,
    /// Body bytes of a locally generated response.
    local_body_bytes: u64,
    upstream_status: Option<u16>,
    /// Head sizes, for the byte counters.
    req_head_len: u64,
    resp_head_len: u64,
}

impl Exchange {
    const fn new() -> Exchange {
        Exchange {
            att: Attempts::new(),
            is_head: false,
            client_minor: 1,
            client_keep_alive: false,
            upgrade: false,
            replayable: false,
            req: Relay::EMPTY,
            resp: Relay::EMPTY,
            upstream_keep_alive: false,
            keep_after: false,
            status: 0,
            local_body_bytes: 0,
            upstream_status: None,
            req_head_len: 0,
            resp_head_len: 0,
        }
    }
}

/// The per-request state lives on the heap only while a request is in
/// flight, so that an idle keep-alive connection holds a pointer for it, not
/// the state itself (see the idle-memory target in the README). Reads while
/// idle see the defaults; `begin` takes a box from the worker's spares
/// (the first write allocates one if nothing began), `end` gives it back.
struct ExchangeSlot(Option<Box<Exchange>>);

/// What an idle connection's exchange reads as.
static IDLE_EXCHANGE: Exchange = Exchange::new();

impl ExchangeSlot {
    const IDLE: ExchangeSlot = ExchangeSlot(None);

    /// A fresh exchange for a new request, in a recycled box.
    #[inline]
    fn begin(&mut self) {
        let mut ex = self
            .0
            .take()
            .or_else(|| SPARES.with_borrow_mut(Vec::pop))
            .unwrap_or_else(|| Box::new(Exchange::new()));
        *ex = Exchange::new();
        self.0 = Some(ex);
    }

    /// Back to the defaults; the box goes back to the worker's spares.
    #[inline]
    fn end(&mut self) {
        if let Some(ex) = self.0.take() {
            SPARES.with_borrow_mut(|spares| {
                if spares.len() < MAX_SPARE_EXCHANGES {
                    spares.push(ex);
                }
            });
        }
    }
}

thread_local! {
    /// Exchange boxes kept by the worker (one thread) for reuse: a request
    /// then costs no heap allocation for its state (callgrind: ~450
    /// instructions per request).
    // Boxes on purpose: they move into and out of connections whole.
    #[allow(clippy::vec_box)]
    static SPARES: std::cell::RefCell<Vec<Box<Exchange>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// At most this many spare exchanges (432 bytes each) per worker.
const MAX_SPARE_EXCHANGES: usize = 1024;

impl std::ops::Deref for ExchangeSlot {
    type Target = Exchange;
    fn deref(&self) -> &Exchange {
        self.0.as_deref().unwrap_or(&IDLE_EXCHANGE)
    }
}

impl std::ops::DerefMut for ExchangeSlot {
    fn deref_mut(&mut self) -> &mut Exchange {
        self.0.get_or_insert_with(|| Box::new(Exchange::new()))
    }
}

struct Upstream {
    sock: Stream,
    /// The TCP connection is established (TLS may still be handshaking).
    connected: bool,
    /// Its slot in `up_owners`, and so its epoll token.
    up_slot: usize,
    addr: SocketAddr,
    readable: bool,
    writable: bool,
    /// An event reported the server's FIN or an error (see
    /// `io::drains_when_short`).
    hup: bool,
    input: Option<Buf>,
    input_fresh: bool,
    head: Vec<u8>,
    head_pos: usize,
    /// Taken from the pool (may turn out stale).
    reused: bool,
    /// Any response byte arrived.
    got_any: bool,
    /// Tunnel: this direction's source closed and the other end was told.
    eof_to_client: bool,
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
    client: Stream,
    peer: SocketAddr,
    listener: usize,
    c_readable: bool,
    c_writable: bool,
    /// An event reported the client's FIN or an error (see
    /// `io::drains_when_short`).
    c_hup: bool,
    input: Option<Buf>,
    input_fresh: bool,
    out: Option<Vec<u8>>,
    out_pos: usize,
    up: Option<Box<Upstream>>,
    /// The request in flight when it goes through an `Exchange`.
    h1x: Option<Box<H1Exchange>>,
    phase: Phase,
    ex: ExchangeSlot,
    head_started: bool,
    /// Tunnel: the client's side closed and the upstream was told.
    eof_to_upstream: bool,
    /// Requests completed on this connection.
    served: u32,
    /// The request as the access log needs it, while one is in flight.
    record: Option<Box<Record>>,
    /// When the current wait times out.
    pub deadline: Instant,
    /// The instant a timer entry is queued for, if any (see worker::timers).
    pub timer_at: Option<Instant>,
}

/// Request fields kept for the access log after the head is consumed:
/// method, target, Referer and User-Agent, back to back in one pooled vector.
struct Record {
    bytes: Vec<u8>,
    ends: [usize; 4],
    minor: u8,
    started: Instant,
}

impl Record {
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start..self.ends[i]).unwrap_or(&[])
    }
}

/// One direction of a tunnel: moves what it can; when the source has
/// closed its sending half, half-closes the destination and sets `eof`.
fn pump(mut ends: Ends, eof: &mut bool, bufs: &mut BufPool) -> Result<bool, Closed> {
    let mut relay = Relay::new(Body::UntilClose);
    match relay.step(&mut ends, bufs) {
        RelayStep::Progress => Ok(true),
        RelayStep::Blocked | RelayStep::Complete | RelayStep::Framing(_) | RelayStep::TooLarge => {
            Ok(false)
        }
        RelayStep::SourceClosed => {
            let _ = ends.dst.shutdown_write();
            *eof = true;
            Ok(true)
        }
        RelayStep::SourceFailed(_) | RelayStep::DestFailed(_) => Err(Closed),
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
    /// An `HTTP/1.x` request line with x > 1: patch the minor digit at this
    /// offset to 1 and parse again.
    AsHttp11(usize),
    /// The HTTP/2 preface, where HTTP/2 is allowed.
    Http2,
}

impl Conn {
    pub fn new(
        id: u64,
        slot: usize,
        client: Stream,
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
            c_hup: false,
            input: None,
            input_fresh: false,
            out: None,
            out_pos: 0,
            up: None,
            h1x: None,
            phase: Phase::ReadHead,
            ex: ExchangeSlot::IDLE,
            head_started: false,
            eof_to_upstream: false,
            served: 0,
            record: None,
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

    /// The client socket, for (de)registration.
    pub fn client_mut(&mut self) -> &mut TcpStream {
        self.client.sock_mut()
    }

    /// The upstream socket in use, if any: the exchange harness checks that
    /// the connection read what its scripted upstream sent.
    #[cfg(test)]
    pub(crate) fn upstream_sock(&self) -> Option<&TcpStream> {
        self.up.as_ref().map(|u| u.sock.sock())
    }

    /// A keep-alive connection between requests: it has served one and
    /// nothing of the next has arrived. A connection that has not sent its
    /// first request yet is not idle: the client has just connected and its
    /// request is on the way, so closing it would lose that request.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::ReadHead
            && !self.head_started
            && self.served > 0
            && self.input.as_ref().is_none_or(Buf::is_empty)
    }

    /// For a draining worker: an idle keep-alive connection gets one last
    /// read, in case a request is already in the socket (it is then served,
    /// with `Connection: close`); otherwise it is closed.
    pub fn close_if_idle(&mut self, env: &mut Env) -> Outcome {
        if !self.is_idle() {
            return Outcome::Keep;
        }
        self.c_readable = true;
        if self.drive(env) == Outcome::Close {
            return Outcome::Close;
        }
        if self.is_idle() {
            return self.finish(env, Outcome::Close);
        }
        Outcome::Keep
    }

    /// Records readiness from an event and runs the state machine.
    pub fn on_event(&mut self, side: Side, ev: &mio::event::Event, env: &mut Env) -> Outcome {
        let (r, w, hup) = crate::event::readiness(ev);
        match side {
            Side::Client => {
                self.c_readable |= r;
                self.c_writable |= w;
                self.c_hup |= hup;
            }
            Side::Upstream(_) => {
                if let Some(up) = self.up.as_mut() {
                    up.readable |= r;
                    up.writable |= w;
                    up.hup |= hup;
                }
            }
        }
        self.drive(env)
    }

    /// Handles the deadline passing.
    pub fn on_timeout(&mut self, env: &mut Env) -> Outcome {
        let upstream = self
            .up
            .as_ref()
            .map(|u| u.addr.to_string())
            .unwrap_or_default();
        let result = match self.phase {
            Phase::ReadHead if self.head_started => {
                log::info!("client {} timed out sending the request head", self.peer);
                self.respond_error(env, 408, false)
            }
            Phase::ReadHead => return self.finish(env, Outcome::Close),
            Phase::SendRequest(_) if self.waiting_for_client_body() => {
                log::info!("client {} timed out sending the request body", self.peer);
                self.drop_upstream(env);
                self.respond_error(env, 408, false)
            }
            Phase::Connect | Phase::SendRequest(_) | Phase::ReadResponseHead => {
                self.ex.att.note_failure(env);
                let up = &env.rt.upstreams[self.ex.att.upstream];
                let doing = match (self.phase, &self.up) {
                    (Phase::Connect, Some(u)) if u.connected => "in the TLS handshake",
                    (Phase::Connect, _) => "connecting",
                    (Phase::SendRequest(_), _) => "sending the request",
                    _ => "waiting for the response head",
                };
                log::error!(
                    "upstream {upstream} (server {}/{}) timed out {doing}, client: {}",
                    up.name,
                    up.servers[self.ex.att.server].name,
                    self.peer
                );
                self.drop_upstream(env);
                self.respond_error(env, 504, false)
            }
            Phase::Closing { .. } | Phase::Lingering { .. } | Phase::Http2 => Err(Closed),
            Phase::Exchange => match self.h1x.as_mut() {
                Some(x) => {
                    x.on_timeout(env);
                    Ok(true)
                }
                None => Err(Closed),
            },
            Phase::SendResponse | Phase::Tunnel | Phase::SendLocal => {
                log::info!(
                    "connection of client {} timed out ({:?}), upstream {upstream}",
                    self.peer,
                    self.phase
                );
                Err(Closed)
            }
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
                Phase::Http2 => return Outcome::Http2,
                Phase::Exchange => self.run_exchange(env),
                Phase::ReadHead => self.read_head(env),
                Phase::Connect => self.connect_done(env),
                Phase::SendRequest(upload) => self.send_request(env, upload),
                Phase::ReadResponseHead => self.read_response_head(env),
                Phase::SendResponse => self.send_response(env),
                Phase::Tunnel => self.tunnel(env),
                Phase::SendLocal => self.send_local(env),
                Phase::Closing { linger } => self.closing(env, linger),
                Phase::Lingering { until } => self.linger(env, until),
            };
            match step {
                Ok(true) => continue,
                Ok(false) => {
                    // TLS records queued by this round (handshake answers,
                    // the rest of a write) go out while the socket takes them.
                    if self.client.flush_queued(&mut self.c_writable).is_err() {
                        return self.finish(env, Outcome::Close);
                    }
                    if let Some(up) = self.up.as_mut() {
                        // A broken upstream shows up on its next read/write.
                        let _ = up.sock.flush_queued(&mut up.writable);
                    }
                    return Outcome::Keep;
                }
                Err(Closed) => return self.finish(env, Outcome::Close),
            }
        }
    }

    /// Gives every pooled resource back; the worker drops the sockets.
    fn finish(&mut self, env: &mut Env, outcome: Outcome) -> Outcome {
        if outcome == Outcome::Close {
            if let Some(mut x) = self.h1x.take() {
                x.ex.abort(env);
                x.ex.end(env);
            }
            self.release_server(env);
            if self.record.is_some() {
                // Closed before the response completed: nginx's 499 if the
                // client saw nothing, else what was being sent.
                if self.ex.status == 0 {
                    self.ex.status = 499;
                }
                self.log_request(env);
            }
            self.drop_upstream(env);
            self.ex.end();
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
            let input = self.input.as_ref().map_or(&[][..], Buf::data);
            if input.len() >= env.rt.max_header_bytes {
                log::info!("client {} sent a request head over the limit", self.peer);
                // A request line that has not even ended is a too long
                // target (RFC 9112 §3), else the header fields are too large.
                let status = if request::request_line_len(input).is_none() {
                    414
                } else {
                    431
                };
                return self.reject_now(env, status);
            }
        }
        if !self.c_readable {
            self.release_idle_input(env);
            return Ok(false);
        }
        let buf = self.input.get_or_insert_with(|| env.bufs.get());
        match io::read(
            &mut self.client,
            buf.spare(),
            &mut self.c_readable,
            self.c_hup,
        ) {
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
        let Some(mut input) = self.input.take() else {
            return Ok(false);
        };
        let mut result = self.dispatch(env, &input);
        if let Dispatch::AsHttp11(digit_at) = result {
            if let Some(d) = input.data_mut().get_mut(digit_at) {
                *d = b'1';
            }
            result = self.dispatch(env, &input);
        }
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
            // A second higher minor after patching cannot happen; refuse it
            // rather than loop.
            Dispatch::AsHttp11(_) => Err(Closed),
            Dispatch::Close => Err(Closed),
            Dispatch::Http2 => {
                self.phase = Phase::Http2;
                Ok(true)
            }
        }
    }

    fn dispatch(&mut self, env: &mut Env, input: &Buf) -> Dispatch {
        if self.served == 0 && self.speaks_h2(env, input.data()) {
            return Dispatch::Http2;
        }
        let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        let (req, info) = match request::parse(input.data(), &mut headers) {
            Ok(request::Parsed::Partial) => return Dispatch::Partial,
            Ok(request::Parsed::HigherMinor { digit_at }) => return Dispatch::AsHttp11(digit_at),
            Ok(request::Parsed::Complete(req, info)) if info.head_len > env.rt.max_header_bytes => {
                return self.reject_oversized_head(env, input, &req, &info);
            }
            Ok(request::Parsed::Complete(req, info)) => (req, info),
            Err(e) => return self.reject_invalid_head(env, &e),
        };
        self.begin_exchange(env, &req, &info);
        // A locally answered request with a body: we do not read the body,
        // so the connection cannot continue after the answer.
        let local_keep = info.keep_alive && info.framing == Framing::None;

        let mut host_buf = [0u8; 256];
        let host = request::routing_host(&req, &mut host_buf);
        let target = req.path.unwrap_or("/");
        let path = request::origin_path(target);
        // Routes match the normalized path; the original goes upstream.
        let route_path = match http::path::route_path(path) {
            Ok(p) => p,
            Err(e) => {
                log::info!("client {} sent an invalid path: {}", self.peer, e.reason());
                return self.reject(env, 400);
            }
        };
        let Some(action) = env.rt.route(self.listener, host, &route_path) else {
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
            }
            Action::Redirect { status, to } => {
                self.answer_redirect(env, *status, to, host, path, local_keep);
            }
            Action::Metrics(format) => self.answer_metrics(env, *format, local_keep),
            Action::Upstream(_) if info.max_forwards == Some(0) => {
                self.answer_as_final_recipient(env, &req, local_keep);
            }
            Action::Upstream(u) if env.rt.upstreams[*u].protocol.is_h2() => {
                return self.dispatch_exchange(env, &req, &info);
            }
            Action::Upstream(u) => {
                return self.dispatch_upstream(env, *u, &req, &info, &route_path);
            }
        }
        Dispatch::Consumed(info.head_len)
    }

    /// The client speaks HTTP/2: it chose `h2` by ALPN (whatever it sends
    /// then is HTTP/2's to judge: a bad preface gets GOAWAY), or it sent the
    /// preface on a plain listener with `h2c: true`. Elsewhere the preface
    /// is an HTTP/1 request of version 2.0, refused with 505; `Upgrade: h2c`
    /// never counts.
    fn speaks_h2(&self, env: &Env, input: &[u8]) -> bool {
        match &self.client {
            Stream::Tls(t) => t.alpn_protocol() == Some(b"h2"),
            Stream::Plain(_) => {
                env.rt.listeners.get(self.listener).is_some_and(|l| l.h2c)
                    && (input.starts_with(H2_PREFACE_LINE) || not_http1(input))
            }
        }
    }

    /// The transport of a connection that turned out to speak HTTP/2.
    pub fn into_transport(mut self, env: &mut Env) -> super::h2_session::Transport {
        self.ex.end();
        if let Some(v) = self.out.take() {
            env.heads.put(v);
        }
        super::h2_session::Transport {
            id: self.id,
            slot: self.slot,
            client: self.client,
            peer: self.peer,
            listener: self.listener,
            input: self.input,
            hup: self.c_hup,
        }
    }

    /// A complete head over `max_header_bytes`: the limit holds for complete
    /// heads too, not only for ones still arriving. 414 if the request line
    /// alone is over it.
    #[cold]
    fn reject_oversized_head(
        &mut self,
        env: &mut Env,
        input: &Buf,
        req: &httparse::Request,
        info: &request::RequestInfo,
    ) -> Dispatch {
        log::info!(
            "client {} sent a request head of {} bytes, over the limit",
            self.peer,
            info.head_len
        );
        self.ex.begin();
        if env.access.enabled() {
            self.capture_record(env, req, info.minor);
        }
        let line = request::request_line_len(input.data()).unwrap_or(0);
        let status = if line > env.rt.max_header_bytes {
            414
        } else {
            431
        };
        self.reject(env, status)
    }

    /// A head `request::parse` refused, with the status it chose.
    #[cold]
    fn reject_invalid_head(&mut self, env: &mut Env, e: &request::RequestError) -> Dispatch {
        log::info!("client {} sent an invalid request: {}", self.peer, e.reason);
        self.ex.begin();
        if env.access.enabled() {
            let empty = httparse::Request::new(&mut []);
            self.capture_record(env, &empty, 1);
        }
        self.reject(env, e.status)
    }

    /// Starts the exchange of a valid request head: counts it and records
    /// what the answer and the connection's future depend on.
    #[inline]
    fn begin_exchange(
        &mut self,
        env: &mut Env,
        req: &httparse::Request,
        info: &request::RequestInfo,
    ) {
        self.ex.begin();
        if env.access.enabled() {
            self.capture_record(env, req, info.minor);
        }
        env.shm.worker(env.slot).count_request();
        self.ex.is_head = info.is_head;
        // Set for every request, also those answered without reading the
        // body: a body still to come makes the close linger.
        self.ex.req = Relay::new(Body::from_framing(info.framing));
        self.ex.client_minor = info.minor;
        self.ex.client_keep_alive = info.keep_alive;
    }

    /// A `redirect` route: the Location from its template, 400 when the
    /// template needs a Host the request lacks.
    fn answer_redirect(
        &mut self,
        env: &mut Env,
        status: u16,
        to: &Template,
        host: Option<&str>,
        path: &str,
        local_keep: bool,
    ) {
        let Some(to) = to.expand(host, path) else {
            log::info!(
                "client {} sent no usable Host for a redirect to $host",
                self.peer
            );
            self.respond_local(env, 400, "text/plain", b"", b"Bad Request\n", false);
            return;
        };
        let location = format!("Location: {to}\r\n");
        let body = format!("{}\n", errors::reason(status));
        self.respond_local(
            env,
            status,
            "text/plain",
            location.as_bytes(),
            body.as_bytes(),
            local_keep,
        );
    }

    /// A `metrics` route: the Prometheus page of the whole instance.
    fn answer_metrics(
        &mut self,
        env: &mut Env,
        format: crate::config::MetricsFormat,
        local_keep: bool,
    ) {
        let body = crate::metrics::render_as(format, env.rt, env.shm);
        self.respond_local(
            env,
            200,
            crate::metrics::CONTENT_TYPE,
            b"",
            body.as_bytes(),
            local_keep,
        );
    }

    /// `Max-Forwards: 0` on an upstream route. RFC 9110 §7.6.2: forklb is
    /// the final recipient. It answers OPTIONS itself and refuses TRACE
    /// (echoing a request back exposes its credentials to scripts).
    fn answer_as_final_recipient(
        &mut self,
        env: &mut Env,
        req: &httparse::Request,
        local_keep: bool,
    ) {
        let allow = b"Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n";
        let status = if req.method == Some("TRACE") {
            405
        } else {
            200
        };
        let body: &[u8] = if status == 405 {
            b"Method Not Allowed\n"
        } else {
            b""
        };
        self.respond_local(env, status, "text/plain", allow, body, local_keep);
    }

    /// An `upstream` route: enforces the body limit, answers `Expect:
    /// 100-continue`, and starts the exchange with upstream `u`.
    #[inline]
    fn dispatch_upstream(
        &mut self,
        env: &mut Env,
        u: usize,
        req: &httparse::Request,
        info: &request::RequestInfo,
        route_path: &[u8],
    ) -> Dispatch {
        if let Framing::Length(n) = info.framing {
            if env.rt.max_body_bytes > 0 && n > env.rt.max_body_bytes {
                log::info!("client {} sent a too large body: {n} bytes", self.peer);
                return self.reject(env, 413);
            }
        }
        if env.rt.max_body_bytes > 0 {
            self.ex.req.limit_data(env.rt.max_body_bytes);
        }
        let has_body = info.framing != Framing::None;
        self.ex.upgrade = info.upgrade;
        self.ex.replayable = info.idempotent && !has_body;
        if info.expect_continue && has_body {
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
        self.ex.att.begin(env, u);
        self.proxy_request(env, req, info, route_path)
    }

    /// A request for an HTTP/2 upstream: an `Exchange` carries it (and
    /// writes its own access log line).
    fn dispatch_exchange(
        &mut self,
        env: &mut Env,
        req: &httparse::Request,
        info: &request::RequestInfo,
    ) -> Dispatch {
        if let Some(rec) = self.record.take() {
            env.heads.put(rec.bytes);
        }
        let mut headers: Vec<httparse::Header> = req.headers.to_vec();
        let request = exchange::Request {
            method: req.method.unwrap_or("GET"),
            target: req.path.unwrap_or("/"),
            headers: &mut headers,
            framing: info.framing,
            protocol: if info.minor == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
        };
        let client = exchange::Client {
            peer: self.peer,
            listener: self.listener,
            slot: self.slot,
        };
        let ex = exchange::Exchange::start(env, client, request, info.framing == Framing::None);
        let keep = info.keep_alive && !env.draining;
        let mut x = H1Exchange::new(ex, info.framing, info.minor, info.is_head, keep);
        if info.expect_continue && info.framing != Framing::None && info.minor >= 1 {
            x.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.h1x = Some(Box::new(x));
        self.phase = Phase::Exchange;
        Dispatch::Consumed(info.head_len)
    }

    /// A request carried by an exchange: body in, response out.
    fn run_exchange(&mut self, env: &mut Env) -> Step {
        let Some(x) = self.h1x.as_mut() else {
            return Err(Closed);
        };
        let mut moved = false;
        if x.wants_body() {
            match self.input.as_mut().filter(|b| !b.is_empty()) {
                Some(input) => match x.take_body(env, input.data()) {
                    Ok(n) => {
                        input.consume(n);
                        moved |= n > 0;
                    }
                    Err(e) => {
                        log::info!(
                            "client {} sent a bad chunked body: {}",
                            self.peer,
                            e.reason()
                        );
                        return Err(Closed);
                    }
                },
                None if self.c_readable => {
                    let buf = self.input.get_or_insert_with(|| env.bufs.get());
                    match io::read(
                        &mut self.client,
                        buf.spare(),
                        &mut self.c_readable,
                        self.c_hup,
                    ) {
                        Io::Done(n) => {
                            buf.filled(n);
                            moved = true;
                        }
                        Io::Blocked => {}
                        Io::Eof | Io::Failed(_) => {
                            log::info!(
                                "client {} closed the connection while sending the request body",
                                self.peer
                            );
                            return Err(Closed);
                        }
                    }
                }
                None => {}
            }
        }
        let progress = x.drive(env);
        moved |= progress == exchange::Progress::Moved;
        if x.out_pos < x.out.len() && self.c_writable {
            match io::write(&mut self.client, &x.out[x.out_pos..], &mut self.c_writable) {
                Io::Done(n) => {
                    x.out_pos += n;
                    moved = true;
                }
                Io::Blocked => {}
                Io::Eof | Io::Failed(_) => return Err(Closed),
            }
        }
        self.deadline = x.ex.deadline;
        if progress != exchange::Progress::Finished || x.out_pos < x.out.len() {
            return Ok(moved);
        }
        let Some(x) = self.h1x.take() else {
            return Err(Closed);
        };
        let keep = x.keep && !x.aborted && x.upload_done();
        x.ex.end(env);
        self.ex.keep_after = keep;
        self.next_request(env)
    }

    /// Answers a request that cannot be processed; the connection closes
    /// after the answer because the rest of the input cannot be trusted.
    fn reject(&mut self, env: &mut Env, status: u16) -> Dispatch {
        let _ = self.reject_now(env, status);
        Dispatch::Rejected
    }

    fn reject_now(&mut self, env: &mut Env, status: u16) -> Step {
        let mut out = env.heads.get();
        self.ex.status = status;
        self.ex.local_body_bytes = errors::error_body_len(status) as u64;
        errors::write_error(&mut out, status, false, false, env.date.text());
        self.start_local(env, out, false);
        Ok(true)
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
        self.ex.status = status;
        self.ex.local_body_bytes = if self.ex.is_head {
            0
        } else {
            body.len() as u64
        };
        let reply = errors::Reply {
            status,
            content_type,
            extra_headers: extra,
            body,
            keep_alive: keep,
            head_only: self.ex.is_head,
        };
        errors::write_response(&mut out, &reply, env.date.text());
        self.start_local(env, out, keep);
    }

    /// An error page for a request whose head was consumed.
    fn respond_error(&mut self, env: &mut Env, status: u16, keep: bool) -> Step {
        let keep = keep && !env.draining;
        let mut out = env.heads.get();
        self.ex.status = status;
        self.ex.local_body_bytes = if self.ex.is_head {
            0
        } else {
            errors::error_body_len(status) as u64
        };
        errors::write_error(&mut out, status, keep, self.ex.is_head, env.date.text());
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

    /// After a failure before the request body was read, the client
    /// connection can continue only if there was no body to skip.
    fn can_keep_after_error(&self) -> bool {
        self.ex.client_keep_alive && self.ex.req.sent == 0 && self.ex.req.body.is_complete()
    }

    // ----- Connect ----------------------------------------------------------

    fn proxy_request(
        &mut self,
        env: &mut Env,
        req: &httparse::Request,
        info: &request::RequestInfo,
        path: &[u8],
    ) -> Dispatch {
        let upstream = &env.rt.upstreams[self.ex.att.upstream];
        let key = match upstream.balance {
            crate::config::Balance::Hash => {
                super::attempt::request_hash(self.peer.ip(), req, path, &upstream.hash_key)
            }
            _ => None,
        };
        let Some(server) = self.ex.att.pick_first(env, key) else {
            log::error!("no server available in upstream {}", upstream.name);
            let keep = self.can_keep_after_error();
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
                // Also for an HTTP/1.0 client: the request goes up as
                // HTTP/1.1, so its connection can be pooled too.
                keep_alive: env.pool.enabled(self.ex.att.upstream),
                upgrade: info.upgrade,
                framing: info.framing,
                max_forwards: info.max_forwards.map(|n| n.saturating_sub(1)),
            },
        );
        self.ex.req_head_len = head.len() as u64;
        match self.connect(env, server, head, true) {
            Ok(_) => Dispatch::Consumed(info.head_len),
            Err(Closed) => Dispatch::Close,
        }
    }

    /// Starts the exchange with `server`: a pooled connection if
    /// `use_pool` and one is idle, else a new connection.
    fn connect(&mut self, env: &mut Env, server: usize, head: Vec<u8>, use_pool: bool) -> Step {
        let addr = self.ex.att.use_server(env, server);
        let att = self.ex.att;
        match attempt::upstream_socket(env, &att, self.slot, addr, use_pool && !self.ex.upgrade) {
            Ok(UpstreamSocket {
                sock,
                up_slot,
                reused,
            }) => {
                self.up = Some(Box::new(Upstream {
                    sock,
                    connected: reused,
                    up_slot,
                    addr,
                    // A pooled connection is connected and writable; a close
                    // by the server while it is ours arrives as an event.
                    readable: false,
                    writable: reused,
                    hup: false,
                    input: None,
                    input_fresh: false,
                    head,
                    head_pos: 0,
                    reused,
                    got_any: false,
                    eof_to_client: false,
                }));
                if reused {
                    self.phase = Phase::SendRequest(Upload::Watching);
                    self.set_deadline(env, env.rt.timeouts.upstream_write);
                } else {
                    self.phase = Phase::Connect;
                    self.set_deadline(env, env.rt.timeouts.connect);
                }
                Ok(true)
            }
            Err(e) => self.connect_failed(env, addr, head, "connect() to", e),
        }
    }

    /// Waits for the TCP connection, then for the TLS handshake if any;
    /// both are bounded by the connect timeout and retried elsewhere on failure.
    fn connect_done(&mut self, env: &mut Env) -> Step {
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        match up
            .sock
            .establish(&mut up.connected, &mut up.readable, &mut up.writable)
        {
            Ok(true) => {
                self.phase = Phase::SendRequest(Upload::Watching);
                self.set_deadline(env, env.rt.timeouts.upstream_write);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                let (addr, head) = self.take_upstream(env);
                let doing = e.doing();
                self.connect_failed(env, addr, head, doing, e.into_io())
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
        what: &str,
        e: std::io::Error,
    ) -> Step {
        let (name, server) = self.ex.att.server_name(env);
        log::error!(
            "{what} {addr} (server {name}/{server}) failed: {e}, client: {}",
            self.peer
        );
        env.shm
            .server(self.ex.att.upstream, self.ex.att.server)
            .count_connect_error();
        self.ex.att.note_failure(env);
        if let Some(next) = self.ex.att.pick_retry(env) {
            return self.connect(env, next, head, true);
        }
        env.heads.put(head);
        let keep = self.can_keep_after_error();
        self.respond_error(env, 502, keep)
    }

    /// Removes the upstream connection, returning its address and the
    /// request head (for a retry).
    fn take_upstream(&mut self, env: &mut Env) -> (SocketAddr, Vec<u8>) {
        match self.up.take() {
            Some(mut up) => {
                // Closing the socket removes it from epoll; no syscall needed.
                env.up_owners.remove(up.up_slot);
                if let Some(b) = up.input.take() {
                    env.bufs.put(b);
                }
                (up.addr, up.head)
            }
            None => (SocketAddr::from(([0, 0, 0, 0], 0)), Vec::new()),
        }
    }

    fn drop_upstream(&mut self, env: &mut Env) {
        if self.up.is_some() {
            let (_, head) = self.take_upstream(env);
            env.heads.put(head);
        }
    }

    /// A pooled connection failed before any response byte: the server
    /// closed it while idle. Send the request again on a fresh connection
    /// if that is safe; true if that happened.
    fn replay_on_fresh(&mut self, env: &mut Env) -> Option<Step> {
        let up = self.up.as_ref()?;
        if !(up.reused && !up.got_any && self.ex.replayable) {
            return None;
        }
        log::debug!("pooled connection to {} was stale, reconnecting", up.addr);
        let (_, head) = self.take_upstream(env);
        let server = self.ex.att.server;
        Some(self.connect(env, server, head, false))
    }

    // ----- SendRequest ------------------------------------------------------

    fn waiting_for_client_body(&self) -> bool {
        self.up.as_ref().is_some_and(|u| u.head_pos >= u.head.len())
            && !self.ex.req.is_complete()
            && self.input.as_ref().is_none_or(Buf::is_empty)
    }

    fn send_request(&mut self, env: &mut Env, upload: Upload) -> Step {
        // What the upstream sent is read before anything more is written:
        // if it answered and closed, writing on would only be reset, and the
        // answer must be taken while it is there.
        if upload == Upload::Watching
            && self.upstream_spoke_early()
            && self.pull_response_head(env)?
        {
            return Ok(true);
        }
        let Some(up) = self.up.as_ref() else {
            return Err(Closed);
        };
        if up.head_pos < up.head.len() {
            return self.write_request_head(env);
        }
        if !self.ex.req.is_complete() {
            return self.relay_request_body(env);
        }
        // Bytes read past the body stay in `input`: the next pipelined request.
        self.phase = Phase::ReadResponseHead;
        if let Some(up) = self.up.as_mut() {
            // A response head held back (Upload::HoldingSwitch) is parsed now.
            up.input_fresh |= up.input.as_ref().is_some_and(|b| !b.is_empty());
        }
        self.set_deadline(env, env.rt.timeouts.upstream_read);
        Ok(true)
    }

    /// Writes what is left of the request head upstream; a connection that
    /// fails here may be replayed on a fresh one.
    #[inline]
    fn write_request_head(&mut self, env: &mut Env) -> Step {
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        if !up.writable {
            return Ok(false);
        }
        match io::write(&mut up.sock, &up.head[up.head_pos..], &mut up.writable) {
            Io::Done(n) => {
                up.head_pos += n;
                self.set_deadline(env, env.rt.timeouts.upstream_write);
                Ok(true)
            }
            Io::Blocked => Ok(false),
            Io::Eof | Io::Failed(_) => {
                if let Some(step) = self.replay_on_fresh(env) {
                    return step;
                }
                self.upstream_broken(env, "sending the request head")
            }
        }
    }

    /// Relays the request body upstream, after a pending `100 Continue`.
    #[inline]
    fn relay_request_body(&mut self, env: &mut Env) -> Step {
        // A pending `100 Continue` goes out before we wait for the body.
        if !self.flush_out()? {
            return Ok(false);
        }
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        let step = self.ex.req.step(
            &mut Ends {
                src: &mut self.client,
                src_ready: &mut self.c_readable,
                src_hup: self.c_hup,
                buf: &mut self.input,
                dst: &mut up.sock,
                dst_ready: &mut up.writable,
            },
            env.bufs,
        );
        self.after_body_step(env, step)
    }

    /// What a step of the request body relay means for the exchange.
    #[inline]
    fn after_body_step(&mut self, env: &mut Env, step: RelayStep) -> Step {
        match step {
            RelayStep::TooLarge => {
                // Nothing past the limit was written upstream; the
                // upstream connection is dropped mid-body, so the server
                // never sees a complete request.
                log::info!("client {} sent a too large chunked body", self.peer);
                self.drop_upstream(env);
                self.reject_now(env, 413)
            }
            RelayStep::Progress => {
                let t = if self.waiting_for_client_body() {
                    env.rt.timeouts.client_body
                } else {
                    env.rt.timeouts.upstream_write
                };
                self.set_deadline(env, t);
                Ok(true)
            }
            RelayStep::Blocked => Ok(false),
            RelayStep::Complete => Ok(true),
            RelayStep::SourceClosed => {
                log::info!(
                    "client {} closed the connection while sending the request body",
                    self.peer
                );
                Err(Closed)
            }
            RelayStep::SourceFailed(e) => {
                log::info!(
                    "client {} failed while sending the request body: {e}",
                    self.peer
                );
                Err(Closed)
            }
            RelayStep::DestFailed(e) => self.upload_refused(env, &e),
            RelayStep::Framing(e) => {
                log::info!(
                    "client {} sent a bad chunked body: {}",
                    self.peer,
                    e.reason()
                );
                self.drop_upstream(env);
                self.reject_now(env, 400)
            }
        }
    }

    /// The request body is not out yet and the upstream has sent something
    /// (an event said so, or bytes wait to be parsed). Only flags are
    /// looked at: no syscall unless the upstream really spoke.
    fn upstream_spoke_early(&self) -> bool {
        !self.ex.req.is_complete()
            && self
                .up
                .as_ref()
                .is_some_and(|u| u.input_fresh || u.readable)
    }

    /// Writing the request body to the upstream failed (EPIPE, ECONNRESET):
    /// typically the server answered early and closed without reading the
    /// rest. Its answer may be in our receive buffer still (Linux keeps
    /// received bytes readable after a reset), so it is read before anything
    /// is decided: a final response is relayed (not a failure); without one
    /// `read_response_head` answers 502.
    fn upload_refused(&mut self, env: &mut Env, e: &std::io::Error) -> Step {
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        log::debug!(
            "upstream {} stopped taking the request body ({e}), reading its response, client: {}",
            up.addr,
            self.peer
        );
        // No event may come for bytes that arrived before the reset.
        up.readable = true;
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
        if self.phase == Phase::SendResponse || self.phase == Phase::Tunnel {
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
        self.pull_response_head(env)
    }

    /// One step towards the response head, in `ReadResponseHead` or early
    /// (`SendRequest`, the body still going out): parse what arrived, else
    /// read more. Ok(false) if there was nothing to do.
    fn pull_response_head(&mut self, env: &mut Env) -> Step {
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
        match io::read(&mut up.sock, buf.spare(), &mut up.readable, up.hup) {
            Io::Done(n) => {
                buf.filled(n);
                up.input_fresh = true;
                up.got_any = true;
                if self.phase == Phase::ReadResponseHead {
                    self.set_deadline(env, env.rt.timeouts.upstream_read);
                }
                Ok(true)
            }
            Io::Blocked => Ok(false),
            Io::Eof | Io::Failed(_) => {
                if let Some(step) = self.replay_on_fresh(env) {
                    return step;
                }
                if self.ex.req.is_complete() {
                    self.upstream_broken(env, "reading the response head")
                } else {
                    // Closed or reset with no response while the body was on
                    // its way: nothing to relay, a 502 (not retried: the
                    // request was partly sent).
                    self.upstream_broken(env, "sending the request body (no response came)")
                }
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
            Err(e) => return self.refuse_invalid_response(env, &e),
        };
        if info.status == 101 && self.ex.upgrade && !self.ex.req.is_complete() {
            return self.switch_before_body_sent(env);
        }
        let out = self.out.take().unwrap_or_else(|| env.heads.get());
        if info.status == 101 {
            if let Some(why) = self.switch_refusal(&resp) {
                env.heads.put(out);
                return self.refuse_switch(env, why);
            }
            self.start_tunnel(env, out, &resp);
        } else if (100..200).contains(&info.status) {
            self.relay_interim(env, out, &resp);
        } else {
            self.start_final_response(env, out, &resp, &info);
        }
        input.consume(info.head_len);
        Ok(true)
    }

    /// An upstream response head `response::parse` refused: 502, and the
    /// server's response errors count it.
    #[cold]
    fn refuse_invalid_response(&mut self, env: &mut Env, e: &response::ResponseError) -> Step {
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
        env.shm
            .server(self.ex.att.upstream, self.ex.att.server)
            .count_response_error();
        self.drop_upstream(env);
        self.respond_error(env, 502, false)
    }

    /// A 101 to an upgrade request whose body is not all sent yet.
    fn switch_before_body_sent(&mut self, env: &mut Env) -> Step {
        if let Phase::SendRequest(_) = self.phase {
            // The new protocol starts after the request body: the switch
            // waits, unread, until the body is out.
            self.phase = Phase::SendRequest(Upload::HoldingSwitch);
            return Ok(true);
        }
        log::error!(
            "upstream switched protocols but did not take the request body, client: {}",
            self.peer
        );
        self.drop_upstream(env);
        self.respond_error(env, 502, false)
    }

    /// Why a 101 cannot be relayed, if it cannot: forklb never offers h2c
    /// upstream, and a switch to it would turn the connection into a tunnel
    /// past routing; a switch nobody asked for is as bad.
    fn switch_refusal(&self, resp: &httparse::Response) -> Option<&'static str> {
        let to_http2 = resp
            .headers
            .iter()
            .filter(|h| http::name_is(h.name, "upgrade"))
            .any(|h| http::tokens(h.value).any(request::is_http2_protocol));
        if to_http2 {
            Some("to HTTP/2, which forklb never relays")
        } else if !self.ex.upgrade {
            Some("without being asked")
        } else {
            None
        }
    }

    #[cold]
    fn refuse_switch(&mut self, env: &mut Env, why: &str) -> Step {
        log::error!("upstream switched protocols {why}, client: {}", self.peer);
        self.drop_upstream(env);
        self.respond_error(env, 502, false)
    }

    /// A 101 to an upgrade request: relays it and turns the exchange into
    /// a tunnel.
    fn start_tunnel(&mut self, env: &mut Env, mut out: Vec<u8>, resp: &httparse::Response) {
        rewrite::write_client_response(
            &mut out,
            resp,
            rewrite::ResponseMode::Upgrade,
            self.ex.client_minor,
            env.date.text(),
        );
        self.out = Some(out);
        self.ex.status = 101;
        self.ex.upstream_status = Some(101);
        self.phase = Phase::Tunnel;
        self.set_deadline(env, env.rt.timeouts.upstream_read);
    }

    /// An interim response (1xx other than 101); the final one follows.
    fn relay_interim(&mut self, env: &mut Env, mut out: Vec<u8>, resp: &httparse::Response) {
        // Relay interim responses (100 Continue, 103 Early Hints) to
        // HTTP/1.1 clients; HTTP/1.0 clients do not understand them
        // (RFC 9110 §15.2: never sent to them).
        if self.ex.client_minor >= 1 {
            rewrite::write_client_response(
                &mut out,
                resp,
                rewrite::ResponseMode::Interim,
                1,
                env.date.text(),
            );
        }
        self.out = Some(out);
        if let Some(up) = self.up.as_mut() {
            up.input_fresh = true;
        }
    }

    /// A final response head: writes the client's head, sets up the body
    /// relay and decides whether both connections stay open after it.
    #[inline]
    fn start_final_response(
        &mut self,
        env: &mut Env,
        mut out: Vec<u8>,
        resp: &httparse::Response,
        info: &response::ResponseInfo,
    ) {
        if !self.ex.req.is_complete() {
            self.early_response(&mut out, info.status);
        }
        // An HTTP/1.0 client cannot take chunked: it gets the payload alone,
        // and the connection's end ends the body (no length is known ahead).
        let dechunk = info.framing == Framing::Chunked && self.ex.client_minor == 0;
        // A close-delimited body can only end by closing the client
        // connection too (re-framing it as chunked is a later improvement).
        // An early response ends the connection (the rest of the upload
        // is in the way), and its upstream connection is not reused.
        let keep = info.framing != Framing::UntilClose
            && !dechunk
            && self.ex.client_keep_alive
            && self.ex.req.is_complete()
            && !env.draining;
        let (mode, body) = if dechunk {
            (
                rewrite::ResponseMode::Plain { keep_alive: keep },
                Body::Dechunked(http::chunked::ChunkedScanner::new()),
            )
        } else if info.framing == Framing::Chunked {
            (
                rewrite::ResponseMode::Chunked { keep_alive: keep },
                Body::from_framing(info.framing),
            )
        } else {
            (
                rewrite::ResponseMode::Plain { keep_alive: keep },
                Body::from_framing(info.framing),
            )
        };
        rewrite::write_client_response(&mut out, resp, mode, self.ex.client_minor, env.date.text());
        self.out = Some(out);
        self.ex.resp = Relay::new(body);
        self.ex.resp_head_len = info.head_len as u64;
        // Also ends the server's run of failures (passive detection).
        env.shm
            .server(self.ex.att.upstream, self.ex.att.server)
            .count_response(info.status);
        self.ex.status = info.status;
        self.ex.upstream_status = Some(info.status);
        self.ex.upstream_keep_alive = info.keep_alive;
        self.ex.keep_after = keep;
        self.phase = Phase::SendResponse;
        self.set_deadline(env, env.rt.timeouts.upstream_read);
    }

    /// A final response came before the whole request body was sent (413,
    /// 401, 403, a redirect, even a 200): the upload stops here, as in
    /// nginx and HAProxy. Nothing more is forwarded; what the client sent
    /// meanwhile is dropped and the rest is discarded as it comes (see
    /// `send_response`, then `Phase::Lingering`). This is no failure of the
    /// server: no 502, no retry, no passive-failure mark; the access log
    /// shows the status it sent.
    fn early_response(&mut self, out: &mut Vec<u8>, status: u16) {
        log::debug!(
            "upstream {} answered {status} before the request body was sent ({} bytes sent); the upload stops, client: {}",
            self.ex.att.upstream_addr.map(|a| a.to_string()).unwrap_or_default(),
            self.ex.req.sent,
            self.peer
        );
        if let Some(b) = self.input.as_mut() {
            b.clear();
        }
        // Interim responses not begun (our own `100 Continue` among them) are
        // dropped: the client needs only the final one, and a client that
        // waits for `100 Continue` then sends no body at all.
        if self.out_pos == 0 {
            out.clear();
        }
    }

    /// The request body was cut short by an early response (or error):
    /// the client may still be sending it.
    fn upload_cut_short(&self) -> bool {
        !self.ex.req.is_complete()
    }

    // ----- SendResponse -----------------------------------------------------

    /// Writes pending bytes of `out` to the client; true when all are out.
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
        if self.relay_response(env)? {
            return Ok(true);
        }
        // The response waits. After an early response the client's upload
        // keeps coming: it is thrown away meanwhile, so that a client that
        // reads only once it has sent everything gets to read.
        if self.phase != Phase::SendResponse || !self.upload_cut_short() {
            return Ok(false);
        }
        match self.discard_client_input(env) {
            Io::Done(_) => Ok(true),
            Io::Blocked => Ok(false),
            Io::Eof => {
                // It sent all it will; it may still read.
                self.c_readable = false;
                Ok(false)
            }
            Io::Failed(_) => Err(Closed),
        }
    }

    fn relay_response(&mut self, env: &mut Env) -> Step {
        if self.write_head_with_body()? {
            return Ok(true);
        }
        if !self.flush_out()? {
            return Ok(false);
        }
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        let step = self.ex.resp.step(
            &mut Ends {
                src: &mut up.sock,
                src_ready: &mut up.readable,
                src_hup: up.hup,
                buf: &mut up.input,
                dst: &mut self.client,
                dst_ready: &mut self.c_writable,
            },
            env.bufs,
        );
        match step {
            RelayStep::Progress => {
                self.set_deadline(env, env.rt.timeouts.upstream_read);
                Ok(true)
            }
            RelayStep::Blocked => Ok(false),
            RelayStep::Complete => self.response_done(env, true),
            RelayStep::SourceClosed if matches!(self.ex.resp.body, Body::UntilClose) => {
                self.response_done(env, false)
            }
            RelayStep::SourceFailed(e)
                if matches!(self.ex.resp.body, Body::UntilClose)
                    && !self.ex.req.is_complete()
                    && e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                // A server that answered early and closed with our upload
                // unread in its socket resets the connection: after a
                // close-delimited body, that is its end.
                self.response_done(env, false)
            }
            RelayStep::SourceClosed => {
                let addr = up.addr;
                log::error!(
                    "upstream {addr} prematurely closed the connection while sending the response body, client: {}",
                    self.peer
                );
                Err(Closed)
            }
            RelayStep::SourceFailed(e) => {
                let addr = up.addr;
                log::error!(
                    "upstream {addr} failed while sending the response body: {e}, client: {}",
                    self.peer
                );
                Err(Closed)
            }
            RelayStep::DestFailed(e) => {
                log::debug!("client {} went away during the response: {e}", self.peer);
                Err(Closed)
            }
            // Responses carry no size limit.
            RelayStep::TooLarge => Err(Closed),
            RelayStep::Framing(e) => {
                let addr = up.addr;
                log::error!(
                    "upstream {addr} sent a bad chunked body: {}, client: {}",
                    e.reason(),
                    self.peer
                );
                Err(Closed)
            }
        }
    }

    /// When the response head is still to be written and body bytes are
    /// already buffered, sends both with one `writev` (one syscall per small
    /// response instead of two). Ok(true) if it wrote something.
    fn write_head_with_body(&mut self) -> Result<bool, Closed> {
        let Some(out) = self.out.as_ref() else {
            return Ok(false);
        };
        if self.out_pos >= out.len() || !self.c_writable {
            return Ok(false);
        }
        let Some(up) = self.up.as_mut() else {
            return Ok(false);
        };
        let Some(input) = up.input.as_mut().filter(|b| !b.is_empty()) else {
            return Ok(false);
        };
        let ready = match self.ex.resp.prepare(input) {
            Ok(n) if n > 0 => n,
            Ok(_) => return Ok(false),
            // Framing errors surface in the regular relay step.
            Err(_) => return Ok(false),
        };
        let head = &out[self.out_pos..];
        let iov = [
            std::io::IoSlice::new(head),
            std::io::IoSlice::new(&input.data()[..ready]),
        ];
        match io::write_vectored(&mut self.client, &iov, &mut self.c_writable) {
            Io::Done(n) => {
                let from_head = n.min(head.len());
                self.out_pos += from_head;
                let from_body = n - from_head;
                input.consume(from_body);
                self.ex.resp.commit(from_body);
                Ok(true)
            }
            Io::Blocked => Ok(false),
            Io::Eof | Io::Failed(_) => Err(Closed),
        }
    }

    /// The response went out completely: pool the upstream connection if
    /// it can be reused, then continue with the next request or close.
    fn response_done(&mut self, env: &mut Env, framed: bool) -> Step {
        let reusable = framed
            && self.ex.upstream_keep_alive
            && self.ex.req.is_complete()
            && self.up.as_mut().is_some_and(|u| {
                u.input.as_ref().is_none_or(Buf::is_empty) && !u.sock.has_buffered_input()
            });
        if reusable {
            if let Some(mut up) = self.up.take() {
                if let Some(b) = up.input.take() {
                    env.bufs.put(b);
                }
                env.heads.put(up.head);
                attempt::pool_socket(env, &self.ex.att, up.sock, up.up_slot);
            }
        } else {
            self.drop_upstream(env);
        }
        self.next_request(env)
    }

    fn next_request(&mut self, env: &mut Env) -> Step {
        self.release_server(env);
        self.log_request(env);
        if let Some(v) = self.out.take() {
            env.heads.put(v);
        }
        self.out_pos = 0;
        if !self.ex.keep_after || env.draining {
            return self.close_gracefully(env);
        }
        self.phase = Phase::ReadHead;
        self.head_started = false;
        self.served += 1;
        self.ex.end();
        let pipelined = self.input.as_ref().is_some_and(|b| !b.is_empty());
        self.input_fresh = pipelined;
        if pipelined {
            self.head_started = true;
            self.set_deadline(env, env.rt.timeouts.client_header);
        } else {
            self.release_idle_input(env);
            self.set_deadline(env, env.rt.timeouts.keepalive);
        }
        Ok(true)
    }

    // ----- Shared server state ---------------------------------------------

    /// The request no longer occupies its server: settle the counters.
    fn release_server(&mut self, env: &mut Env) {
        let up = self.ex.req_head_len + self.ex.req.sent;
        let down = self.ex.resp_head_len + self.ex.resp.sent;
        self.ex.att.release(env, up, down);
    }

    // ----- Access log -------------------------------------------------------

    fn capture_record(&mut self, env: &mut Env, req: &httparse::Request, minor: u8) {
        let mut bytes = env.heads.get();
        let mut ends = [0usize; 4];
        bytes.extend_from_slice(req.method.unwrap_or("-").as_bytes());
        ends[0] = bytes.len();
        bytes.extend_from_slice(req.path.unwrap_or("-").as_bytes());
        ends[1] = bytes.len();
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| http::name_is(h.name, name))
                .map_or(&[][..], |h| h.value)
        };
        bytes.extend_from_slice(header("referer"));
        ends[2] = bytes.len();
        bytes.extend_from_slice(header("user-agent"));
        ends[3] = bytes.len();
        if let Some(old) = self.record.replace(Box::new(Record {
            bytes,
            ends,
            minor,
            started: env.now,
        })) {
            env.heads.put(old.bytes);
        }
    }

    /// Writes the access log line of the request in flight, if any.
    fn log_request(&mut self, env: &mut Env) {
        let Some(rec) = self.record.take() else {
            return;
        };
        let body_bytes = if self.ex.upstream_status.is_some() && self.ex.status != 0 {
            self.ex.resp.sent
        } else {
            self.ex.local_body_bytes
        };
        env.access.record(&access_log::Entry {
            client: self.peer,
            method: rec.field(0),
            target: rec.field(1),
            protocol: if rec.minor == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            status: self.ex.status,
            body_bytes,
            referer: rec.field(2),
            user_agent: rec.field(3),
            upstream: self.ex.att.upstream_addr,
            upstream_status: self.ex.upstream_status,
            request_time: env.now.saturating_duration_since(rec.started),
            upstream_time: access_log::since(self.ex.att.upstream_started, env.now),
        });
        env.heads.put(rec.bytes);
    }

    // ----- Tunnel -----------------------------------------------------------

    /// Copies bytes both ways after a protocol switch. When one side closes
    /// its sending half, the other side's sending half is shut down too;
    /// the tunnel ends when both directions are closed.
    fn tunnel(&mut self, env: &mut Env) -> Step {
        if !self.flush_out()? {
            return Ok(false);
        }
        let Some(up) = self.up.as_mut() else {
            return Err(Closed);
        };
        let mut progress = false;
        if !self.eof_to_upstream {
            progress |= pump(
                Ends {
                    src: &mut self.client,
                    src_ready: &mut self.c_readable,
                    src_hup: self.c_hup,
                    buf: &mut self.input,
                    dst: &mut up.sock,
                    dst_ready: &mut up.writable,
                },
                &mut self.eof_to_upstream,
                env.bufs,
            )?;
        }
        if !up.eof_to_client {
            progress |= pump(
                Ends {
                    src: &mut up.sock,
                    src_ready: &mut up.readable,
                    src_hup: up.hup,
                    buf: &mut up.input,
                    dst: &mut self.client,
                    dst_ready: &mut self.c_writable,
                },
                &mut up.eof_to_client,
                env.bufs,
            )?;
        }
        if self.eof_to_upstream && up.eof_to_client {
            return Err(Closed);
        }
        if progress {
            self.set_deadline(env, env.rt.timeouts.upstream_read);
        }
        Ok(progress)
    }

    // ----- Closing ----------------------------------------------------------

    /// Half-closes so the client reads everything before EOF; a TLS client
    /// first gets the records still queued and close_notify. A client that
    /// may still be uploading gets a lingering close.
    fn close_gracefully(&mut self, env: &mut Env) -> Step {
        let linger = self.upload_cut_short();
        match self.client.shutdown_write() {
            Ok(true) => self.closed_for_writing(env, linger),
            Err(_) => Err(Closed),
            Ok(false) => {
                self.c_writable = false;
                self.phase = Phase::Closing { linger };
                self.set_deadline(env, env.rt.timeouts.upstream_write);
                Ok(false)
            }
        }
    }

    fn closing(&mut self, env: &mut Env, linger: bool) -> Step {
        if !self.c_writable {
            return Ok(false);
        }
        match self.client.shutdown_write() {
            Ok(true) => self.closed_for_writing(env, linger),
            Err(_) => Err(Closed),
            Ok(false) => {
                self.c_writable = false;
                Ok(false)
            }
        }
    }

    /// Everything was said and the FIN is sent: close now, or linger first.
    fn closed_for_writing(&mut self, env: &mut Env, linger: bool) -> Step {
        if !linger {
            return Err(Closed);
        }
        // The request is logged and settled; only the socket is left.
        self.ex.end();
        self.phase = Phase::Lingering {
            until: env.now + LINGERING_TIME,
        };
        self.set_deadline(env, LINGERING_TIMEOUT);
        Ok(true)
    }

    /// Discards what the client sends until it closes or the bounds of
    /// `Phase::Lingering` are reached (`on_timeout` closes).
    fn linger(&mut self, env: &mut Env, until: Instant) -> Step {
        match self.discard_client_input(env) {
            Io::Done(_) => {
                self.deadline = (env.now + LINGERING_TIMEOUT).min(until);
                Ok(true)
            }
            Io::Blocked => Ok(false),
            Io::Eof | Io::Failed(_) => Err(Closed),
        }
    }

    /// Reads what the client sent and throws it away: the rest of an upload
    /// that is not forwarded. Read beneath TLS (the session is over for
    /// reading), into a large buffer if one is free, which goes back to the
    /// pool as soon as the socket is empty.
    fn discard_client_input(&mut self, env: &mut Env) -> Io {
        if !self.c_readable {
            return Io::Blocked;
        }
        if let Some(b) = self.input.as_mut() {
            b.clear();
        }
        env.bufs.upgrade(&mut self.input);
        let buf = self.input.get_or_insert_with(|| env.bufs.get());
        let got = io::read_raw(
            self.client.sock_mut(),
            buf.spare(),
            &mut self.c_readable,
            self.c_hup,
        );
        buf.clear();
        if !matches!(got, Io::Done(_)) {
            self.release_idle_input(env);
        }
        got
    }

    // ----- SendLocal --------------------------------------------------------

    fn send_local(&mut self, env: &mut Env) -> Step {
        if !self.flush_out()? {
            return Ok(false);
        }
        self.next_request(env)
    }
}

#[cfg(test)]
mod tests {
    /// An idle keep-alive connection is this struct and nothing else (no
    /// buffers, no exchange, no upstream): the README promises at most
    /// 1 KiB of memory per idle connection, and this keeps the struct a
    /// small part of that.
    #[test]
    fn idle_connection_state_stays_small() {
        let size = std::mem::size_of::<super::Conn>();
        assert!(size <= 256, "Conn grew to {size} bytes");
    }
}
