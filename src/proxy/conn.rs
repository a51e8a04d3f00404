//! An HTTP/1.1 client connection: the session of DESIGN §5. It reads and
//! parses request heads, answers forklb's own routes, hands every request
//! routed upstream to an `Exchange` (pass-through to an HTTP/1.1 upstream,
//! re-framed for an HTTP/2 one), keeps the connection alive between
//! requests (pipelined ones in order), turns into a tunnel after a `101`,
//! into an HTTP/2 session after the preface, and closes gracefully. The
//! worker calls `on_event` with readiness and `on_timeout` at the
//! deadline, and `drive` runs steps until none can make progress.
//!
//! ```text
//!  ReadHead ──(return/redirect/error)──────────────────► SendLocal ──┐
//!     │                                                      ▲       │
//!     ├─(HTTP/1.1 upstream)► Proxy ──(head-only, error page)─┘       │
//!     │                        │ └─(body relayed)──────────────────►│
//!     │                        └─ 101 ► Tunnel                       │
//!     ├─(HTTP/2 upstream)──► Exchange ─────────────────────────────►│
//!     └─(preface)──► Http2                                           │
//!  ◄─────────────────── keep-alive: back to ReadHead ◄────────────────┘
//!                                            or close: Closing ► Lingering
//! ```
//!
//! The exchange's upstream side (`upstream_h1`) does the per-request work:
//! connect, retries, the stale pooled connection replayed, the request
//! body relayed, an early response ending the upload, interim responses,
//! the response relayed with its framing, the connection pooled. It works
//! on the session's socket and buffers through `H1Client`, so bytes still
//! go socket to socket. After an early response (or an error) cut the
//! upload short, the connection ends with a lingering close, so that the
//! upload still on its way cannot reset the connection under the response.
//!
//! Buffers are taken from the worker's pools when needed and given back
//! when the connection goes idle, so an idle keep-alive connection holds only
//! its socket and this struct.

use super::body::{Body, Ends, Relay, RelayStep};
use super::env::{Env, Outcome};
use super::exchange::{self, Exchange, Progress, TunnelEnd};
use super::h1_client::{self, ClientRequest, H1Client};
use super::h1_exchange::H1Exchange;
use super::io::{self, Io};
use super::limit::{self, Admit};
use super::record::{self, Record};
use super::Side;
use crate::buffer::{Buf, BufPool};
use crate::event::Stream;
use crate::http::redirect::Template;
use crate::http::{self, errors, request, Framing};
use crate::route::Action;
use crate::shm::ConnHold;
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum Phase {
    /// A `proxy_protocol` listener: the PROXY header must come first
    /// (before TLS), within `timeouts.client_header`.
    ProxyHeader,
    /// Waiting for (the rest of) a request head; idle between requests.
    ReadHead,
    /// The request goes to an HTTP/1.1 upstream through its exchange
    /// (`InFlight::ex`), bytes passing through.
    Proxy,
    /// After `101 Switching Protocols`: bytes flow both ways until closed
    /// (`Conn::tunnel`), with the upstream end.
    Tunnel(Box<Tunnel>),
    /// Writing a response forklb generated itself (or the rest of an
    /// exchange's last head).
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
    /// The request goes to an HTTP/2 upstream through an exchange that
    /// re-frames its response (`h1x`).
    Exchange,
}

/// Where a request routed to an HTTP/1.1 upstream goes, and what of its
/// route goes with it.
struct Routed<'a> {
    upstream: usize,
    /// The normalized path (`hash` balancing).
    route_path: &'a [u8],
    headers: Option<std::sync::Arc<crate::http::header_rules::RouteHeaders>>,
    /// The request's host (`$host`).
    host: Option<&'a str>,
}

/// The request line of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// A complete first line that is no HTTP/1 request line. On an `h2c`
/// listener such a client may be an HTTP/2 client whose preface is broken:
/// it gets HTTP/2's answer (GOAWAY with PROTOCOL_ERROR, RFC 9113 §3.4), as on
/// HTTP/2-only ports; either way the connection closes. But a line that
/// begins as a request (`GET /x …`, see `begins_as_a_request`) is HTTP/1's
/// to judge, however broken its version: it gets a 400 or 505 it can read,
/// and an access-log line, as HAProxy answers on a port serving both.
fn not_http1(input: &[u8]) -> bool {
    !begins_as_a_request(input) && not_an_http1_request_line(input)
}

/// A method (upper-case letters, as every registered one) and a request
/// target in origin (`/`), asterisk or absolute (`http…`) form.
fn begins_as_a_request(input: &[u8]) -> bool {
    let Some(sp) = input.iter().position(|&b| b == b' ') else {
        return false;
    };
    let method = &input[..sp];
    let target = &input[sp + 1..];
    !method.is_empty()
        && method
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
        && (target.starts_with(b"/")
            || target.starts_with(b"*")
            || target
                .get(..4)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"http")))
}

fn not_an_http1_request_line(input: &[u8]) -> bool {
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

/// The request in flight: the client's side of it, forklb's own answer
/// (if it made one) and the exchange carrying it upstream (if any).
struct InFlight {
    req: ClientRequest,
    /// Status of forklb's own answer (0 = none).
    status: u16,
    /// Body bytes of forklb's own answer.
    local_body_bytes: u64,
    /// The exchange of a request routed to an HTTP/1.1 upstream; after a
    /// `101` it stays (ended, logged) until the tunnel closes.
    ex: Option<Exchange>,
    /// The request's place in a `limit_conn` table, given back when the
    /// request ends (dropped with it).
    hold: Option<ConnHold>,
}

impl InFlight {
    const fn new() -> InFlight {
        InFlight {
            req: ClientRequest::NONE,
            status: 0,
            local_body_bytes: 0,
            ex: None,
            hold: None,
        }
    }
}

/// The in-flight state lives on the heap only while a request is in
/// flight, so that an idle keep-alive connection holds a pointer for it, not
/// the state itself (see the idle-memory target in the README). Reads while
/// idle see the defaults; `begin` takes a box from the worker's spares
/// (the first write allocates one if nothing began), `end` gives it back.
struct InFlightSlot(Option<Box<InFlight>>);

/// What an idle connection's request reads as.
static IDLE: InFlight = InFlight::new();

impl InFlightSlot {
    const IDLE: InFlightSlot = InFlightSlot(None);

    /// A fresh state for a new request, in a recycled box.
    #[inline]
    fn begin(&mut self) {
        let mut cur = self
            .0
            .take()
            .or_else(|| SPARES.with_borrow_mut(Vec::pop))
            .unwrap_or_else(|| Box::new(InFlight::new()));
        // Field by field: the exchange's place is large, and None already
        // (see `end`).
        cur.req = ClientRequest::NONE;
        cur.status = 0;
        cur.local_body_bytes = 0;
        self.0 = Some(cur);
    }

    /// Back to the defaults; the box goes back to the worker's spares (an
    /// exchange still in it was ended by the caller).
    #[inline]
    fn end(&mut self) {
        if let Some(mut cur) = self.0.take() {
            cur.ex = None;
            if cur.hold.is_some() {
                cur.hold = None;
            }
            SPARES.with_borrow_mut(|spares| {
                if spares.len() < MAX_SPARES {
                    spares.push(cur);
                }
            });
        }
    }
}

thread_local! {
    /// Boxes kept by the worker (one thread) for reuse: a request then
    /// costs no heap allocation for its state (callgrind: ~450
    /// instructions per request).
    // Boxes on purpose: they move into and out of connections whole.
    #[allow(clippy::vec_box)]
    static SPARES: std::cell::RefCell<Vec<Box<InFlight>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// At most this many spare boxes per worker.
const MAX_SPARES: usize = 1024;

impl std::ops::Deref for InFlightSlot {
    type Target = InFlight;
    fn deref(&self) -> &InFlight {
        self.0.as_deref().unwrap_or(&IDLE)
    }
}

impl std::ops::DerefMut for InFlightSlot {
    fn deref_mut(&mut self) -> &mut InFlight {
        self.0.get_or_insert_with(|| Box::new(InFlight::new()))
    }
}

/// The upstream end of a tunnel after `101 Switching Protocols`.
struct Tunnel {
    end: TunnelEnd,
    readable: bool,
    writable: bool,
    hup: bool,
    /// This direction's source closed and the other end was told.
    eof_to_client: bool,
    /// What the deadline waits for.
    wait: TunnelWait,
    /// Client to upstream: its `sent` counts the tunnelled bytes.
    to_upstream: Relay,
    /// Upstream to client: its `sent` counts the tunnelled bytes.
    to_client: Relay,
}

impl Tunnel {
    fn new(end: TunnelEnd) -> Tunnel {
        let hup = end.hup;
        Tunnel {
            end,
            // What is buffered (TLS, or read with the head) is looked at
            // first; events report the rest.
            readable: true,
            writable: true,
            hup,
            eof_to_client: false,
            // The `101` head is for the client to read first.
            wait: TunnelWait::ClientReading,
            to_upstream: Relay::new(Body::UntilClose),
            to_client: Relay::new(Body::UntilClose),
        }
    }

    /// Bytes relayed so far, as the exchange's counters take them.
    fn relayed(&self) -> exchange::Tunnelled {
        exchange::Tunnelled {
            to_upstream: self.to_upstream.sent,
            to_client: self.to_client.sent,
        }
    }
}

/// What a tunnel's deadline waits for, as nginx times an upgraded
/// connection: bytes that one side does not take are bounded by that
/// side's send timeout, and a tunnel where nothing is pending by the idle
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TunnelWait {
    /// Nothing waits to be written: `upstream_read` (the idle timeout).
    Idle,
    /// Bytes wait for the client to read them: `client_send` (nginx's
    /// `send_timeout`).
    ClientReading,
    /// Bytes wait for the upstream to read them: `upstream_write`
    /// (nginx's `proxy_send_timeout`).
    UpstreamReading,
    /// Both: the shorter of the two.
    BothReading,
}

impl TunnelWait {
    fn of(to_client: bool, to_upstream: bool) -> TunnelWait {
        match (to_client, to_upstream) {
            (false, false) => TunnelWait::Idle,
            (true, false) => TunnelWait::ClientReading,
            (false, true) => TunnelWait::UpstreamReading,
            (true, true) => TunnelWait::BothReading,
        }
    }

    fn timeout(self, t: &crate::config::Timeouts) -> Duration {
        match self {
            TunnelWait::Idle => t.upstream_read,
            TunnelWait::ClientReading => t.client_send,
            TunnelWait::UpstreamReading => t.upstream_write,
            TunnelWait::BothReading => t.client_send.min(t.upstream_write),
        }
    }

    /// For the log line of a tunnel that timed out.
    fn describe(self) -> &'static str {
        match self {
            TunnelWait::Idle => "idle (upstream_read)",
            TunnelWait::ClientReading => "the client stopped reading (client_send)",
            TunnelWait::UpstreamReading => "the upstream stopped reading (upstream_write)",
            TunnelWait::BothReading => "neither side reads (client_send, upstream_write)",
        }
    }
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "upstream {}", self.end.addr)
    }
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
    /// `io::left_socket_empty`).
    c_hup: bool,
    input: Option<Buf>,
    input_fresh: bool,
    out: Option<Vec<u8>>,
    out_pos: usize,
    /// The request in flight when it goes to an HTTP/2 upstream.
    h1x: Option<Box<H1Exchange>>,
    phase: Phase,
    cur: InFlightSlot,
    head_started: bool,
    /// Tunnel: the client's side closed and the upstream was told.
    eof_to_upstream: bool,
    /// Requests completed on this connection.
    served: u32,
    /// The request as the access log needs it, while forklb answers it
    /// itself (an exchange takes it along).
    record: Option<Box<Record>>,
    /// When the current wait times out.
    pub deadline: Instant,
    /// The instant a timer entry is queued for, if any (see worker::timers).
    pub timer_at: Option<Instant>,
}

/// One direction of a tunnel: moves what it can (`relay` counts what it
/// wrote); when the source has closed its sending half, half-closes the
/// destination and sets `eof`.
fn pump(
    relay: &mut Relay,
    mut ends: Ends,
    eof: &mut bool,
    bufs: &mut BufPool,
) -> Result<bool, Closed> {
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

/// Sends the TLS records queued on a tunnel's end `s`: true when its
/// queue emptied, which is progress for the tunnel's deadline (it was
/// waiting for that side to read).
fn drained_tls_queue(s: &mut Stream, writable: &mut bool) -> Result<bool, Closed> {
    if !s.has_queued_output() {
        return Ok(false);
    }
    s.flush_queued(writable).map_err(|_| Closed)?;
    Ok(!s.has_queued_output())
}

enum Dispatch {
    /// Need more bytes for a complete head.
    Partial,
    /// The head (this many bytes) was consumed; the phase moved on.
    Consumed(usize),
    /// An error response was queued; the connection closes after it.
    Rejected,
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
            h1x: None,
            phase: if env
                .rt
                .listeners
                .get(listener)
                .is_some_and(|l| l.proxy_protocol)
            {
                Phase::ProxyHeader
            } else {
                Phase::ReadHead
            },
            cur: InFlightSlot::IDLE,
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
        match &self.phase {
            Phase::Tunnel(t) => Some(t.end.sock.sock()),
            _ => self.cur.ex.as_ref().and_then(Exchange::upstream_sock),
        }
    }

    /// A keep-alive connection between requests: it has served one and
    /// nothing of the next has arrived. A connection that has not sent its
    /// first request yet is not idle: the client has just connected and its
    /// request is on the way, so closing it would lose that request.
    /// The listener (its index in the configuration) it came in on.
    /// `$ssl_client_s_dn` of this client connection (HTTP/1): computed once
    /// per connection, on first use; empty without a client certificate.
    pub fn ssl_client_s_dn(&self) -> &str {
        self.client.client_s_dn()
    }

    pub fn listener(&self) -> usize {
        self.listener
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::ReadHead)
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

    /// `shutdown sessions server`: a connection whose request (or tunnel,
    /// after a `101`) is on one of `servers` is cut now — the exchange is
    /// aborted and logged as the connection ends, as HAProxy kills the
    /// session; anything else goes on.
    pub fn cut_if_on(&mut self, servers: &[(usize, usize)], env: &mut Env) -> Outcome {
        let on = match self.phase {
            Phase::Proxy | Phase::Tunnel(_) => {
                self.cur.ex.as_ref().is_some_and(|ex| ex.uses_any(servers))
            }
            Phase::Exchange => self.h1x.as_ref().is_some_and(|x| x.ex.uses_any(servers)),
            _ => false,
        };
        if !on {
            return Outcome::Keep;
        }
        log::info!(
            "client {}: connection cut (shutdown sessions of its server)",
            self.peer
        );
        self.finish(env, Outcome::Close)
    }

    /// The client reset its connection while its request was upstream:
    /// nothing can reach it any more, so the upstream request stops now
    /// (its connection is closed, the server's work is not waited for) and
    /// is logged 499 if no answer had started, as nginx does. A client that
    /// only half-closed (FIN after its request, as `nc -N`) still gets its
    /// answer, as HAProxy's default.
    #[cold]
    fn client_reset(&mut self, env: &mut Env) -> Outcome {
        log::info!(
            "client {} reset the connection while its request was upstream",
            self.peer
        );
        self.finish(env, Outcome::Close)
    }

    /// The worker's `shutdown_timeout` passed: the connection closes now,
    /// through `finish` like any other close, so what it carries (a
    /// request, a response under way, a tunnel) is logged and counted; an
    /// exchange that had no answer yet is logged as cut, not as abandoned
    /// by its client.
    pub fn cut_at_shutdown(&mut self, env: &mut Env) -> Outcome {
        if let Some(ex) = self.cur.0.as_mut().and_then(|c| c.ex.as_mut()) {
            ex.mark_shutdown_cut();
        }
        if let Some(x) = self.h1x.as_mut() {
            x.ex.mark_shutdown_cut();
        }
        self.finish(env, Outcome::Close)
    }

    /// Records readiness from an event and runs the state machine.
    pub fn on_event(&mut self, side: Side, ev: &mio::event::Event, env: &mut Env) -> Outcome {
        let (r, w, hup) = crate::event::readiness(ev);
        match side {
            Side::Client => {
                self.c_readable |= r;
                self.c_writable |= w;
                self.c_hup |= hup;
                if crate::event::is_reset(ev)
                    && matches!(self.phase, Phase::Proxy | Phase::Exchange)
                {
                    return self.client_reset(env);
                }
            }
            Side::Upstream(_) => {
                if let Phase::Tunnel(t) = &mut self.phase {
                    t.readable |= r;
                    t.writable |= w;
                    t.hup |= hup;
                } else if let Some(ex) = self.cur.0.as_mut().and_then(|c| c.ex.as_mut()) {
                    ex.on_upstream_event(r, w, hup);
                }
            }
        }
        self.drive(env)
    }

    /// The session's end of a pass-through exchange, and the exchange.
    fn split_proxy(&mut self) -> Option<(&mut Exchange, H1Client<'_>)> {
        let cur = self.cur.0.as_deref_mut()?;
        let ex = cur.ex.as_mut()?;
        let c = H1Client {
            stream: &mut self.client,
            readable: &mut self.c_readable,
            writable: &mut self.c_writable,
            hup: self.c_hup,
            input: &mut self.input,
            out: &mut self.out,
            out_pos: &mut self.out_pos,
            req: &mut cur.req,
            peer: self.peer,
        };
        Some((ex, c))
    }

    /// Handles the deadline passing.
    pub fn on_timeout(&mut self, env: &mut Env) -> Outcome {
        let result = match self.phase {
            Phase::ReadHead if self.head_started => {
                log::info!("client {} timed out sending the request head", self.peer);
                self.cur.begin();
                self.capture_raw_record_of_input(env);
                self.respond_error(env, 408, false)
            }
            Phase::ReadHead => return self.finish(env, Outcome::Close),
            Phase::ProxyHeader => {
                log::info!("client {} sent no complete PROXY header in time", self.peer);
                Err(Closed)
            }
            Phase::Closing { .. } | Phase::Lingering { .. } | Phase::Http2 => Err(Closed),
            Phase::Proxy => match self.split_proxy() {
                Some((ex, mut c)) => {
                    ex.on_timeout(env, &mut c);
                    Ok(true)
                }
                None => Err(Closed),
            },
            Phase::Exchange => match self.h1x.as_mut() {
                Some(x) => {
                    x.on_timeout(env);
                    Ok(true)
                }
                None => Err(Closed),
            },
            Phase::Tunnel(ref t) => {
                log::info!(
                    "tunnel of client {} to upstream {} timed out: {}",
                    self.peer,
                    t.end.addr,
                    t.wait.describe()
                );
                Err(Closed)
            }
            Phase::SendLocal => {
                log::info!(
                    "connection of client {} timed out ({:?})",
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
                Phase::Proxy => self.run_proxy(env),
                Phase::Exchange => self.run_exchange(env),
                Phase::ReadHead => self.read_head(env),
                Phase::ProxyHeader => self.read_proxy_header(),
                Phase::Tunnel(_) => self.tunnel(env),
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
                    if let Phase::Tunnel(t) = &mut self.phase {
                        // A broken upstream shows up on its next read/write.
                        let _ = t.end.sock.flush_queued(&mut t.writable);
                    }
                    return Outcome::Keep;
                }
                Err(Closed) => return self.finish(env, Outcome::Close),
            }
        }
    }

    /// Reads the PROXY header off the socket, before any TLS record or
    /// request byte is read: the bytes are peeked, and exactly the header is
    /// then consumed, so what follows it stays in the socket for the next
    /// layer. The client's address from then on is the one it names.
    fn read_proxy_header(&mut self) -> Step {
        use crate::proxy_proto::{self, Parsed};
        use std::io::Read;
        if !self.c_readable {
            return Ok(false);
        }
        let mut buf = [0u8; proxy_proto::PEEK_MAX];
        let n = match self.client.sock().peek(&mut buf) {
            Ok(0) => return Err(Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.c_readable = false;
                return Ok(false);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(true),
            Err(_) => return Err(Closed),
        };
        match proxy_proto::parse(&buf[..n]) {
            // Edge-triggered: the next bytes bring a new event.
            Ok(Parsed::Incomplete) => {
                self.c_readable = false;
                Ok(false)
            }
            Ok(Parsed::Header { len, addrs }) => {
                // The bytes were peeked: this read takes exactly them.
                match self.client.sock_mut().read(&mut buf[..len]) {
                    Ok(got) if got == len => {}
                    _ => return Err(Closed),
                }
                if let Some(a) = addrs {
                    log::debug!("client {} is {} by its PROXY header", self.peer, a.src);
                    self.peer = a.src;
                }
                self.phase = Phase::ReadHead;
                Ok(true)
            }
            Err(e) => {
                log::info!("client {}: {e}; closing", self.peer);
                Err(Closed)
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
            self.end_exchange(env, true);
            if let Some(rec) = self.record.take() {
                // Closed before the response completed: nginx's 499 if the
                // client saw nothing, else what was being sent.
                if self.cur.status == 0 {
                    self.cur.status = 499;
                }
                self.log_local(env, *rec);
            }
            self.drop_tunnel(env);
            self.cur.end();
            if let Some(b) = self.input.take() {
                env.bufs.put(b);
            }
            if let Some(v) = self.out.take() {
                env.heads.put(v);
            }
        }
        outcome
    }

    /// Settles the request's exchange, if any: counters and log line;
    /// `abort`: it stops where it is (the connection closes).
    fn end_exchange(&mut self, env: &mut Env, abort: bool) {
        let Some(cur) = self.cur.0.as_deref_mut() else {
            return;
        };
        if let Some(ex) = cur.ex.as_mut() {
            if abort {
                ex.abort(env);
            }
            ex.set_request_body(cur.req.body.sent);
            if let Phase::Tunnel(t) = &self.phase {
                ex.add_tunnelled(t.relayed());
            }
            ex.end_in_place(env);
            cur.ex = None;
        }
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
            Io::Eof => {
                self.log_cut_head(env);
                Err(Closed)
            }
            Io::Failed(e) => {
                self.client.log_client_read_failure(self.peer, &e);
                Err(Closed)
            }
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
            Err(e) => return self.reject_invalid_head(env, input.data(), &e),
        };
        self.begin_exchange(env, &req, &info);
        // A locally answered request whose body came whole with its head
        // (a small form POST to a `return` route) keeps its connection:
        // the body is skipped, as nginx discards it. A body still arriving
        // is not read: the connection closes after the answer (lingering).
        let body_in_input = match info.framing {
            Framing::None => Some(0),
            Framing::Length(n) => usize::try_from(n)
                .ok()
                .filter(|&n| input.data().len().saturating_sub(info.head_len) >= n),
            Framing::Chunked | Framing::UntilClose => None,
        };
        let local_keep = info.keep_alive && body_in_input.is_some();
        let local_consumed = info.head_len + body_in_input.unwrap_or(0);

        let mut host_buf = [0u8; 256];
        let Ok(host) = request::routing_host(&req, &mut host_buf) else {
            log::info!("client {} sent a host no route can be chosen by", self.peer);
            return self.reject(env, 400);
        };
        let target = req.path.unwrap_or("/");
        let path = request::origin_path(target);
        // Routes match the normalized path; the original goes upstream.
        let route_path = match http::path::route_path(&path) {
            Ok(p) => p,
            Err(e) => {
                log::info!("client {} sent an invalid path: {}", self.peer, e.reason());
                return self.reject(env, 400);
            }
        };
        let Some(route) = env.rt.route(self.listener, host, &route_path) else {
            self.respond_local(env, 404, "text/plain", b"", b"Not Found\n", local_keep);
            return Dispatch::Consumed(local_consumed);
        };
        if !route.permits(self.peer.ip()) {
            log::info!("client {} refused by the route's allow/deny", self.peer);
            let _ = self.respond_error(env, 403, local_keep);
            return Dispatch::Consumed(local_consumed);
        }
        // Limits after allow/deny: a refused client fills no table.
        if route.has_limits() && !self.admit(env, route, &req, &info, local_keep) {
            return Dispatch::Consumed(local_consumed);
        }
        match &route.action {
            Action::Return {
                status,
                content_type,
                body,
            } => {
                self.respond_local(env, *status, content_type, b"", body, local_keep);
            }
            Action::Redirect { status, to } => {
                self.answer_redirect(env, *status, to, host, &path, local_keep);
            }
            Action::Metrics(format) => self.answer_metrics(env, *format, local_keep),
            Action::Stats(stats) => self.answer_stats(env, stats, &req, local_keep),
            Action::Upstream(_) if info.max_forwards == Some(0) => {
                self.answer_as_final_recipient(env, &req, local_keep);
            }
            Action::Upstream(u) if env.rt.upstreams[*u].protocol.is_h2() => {
                return self.dispatch_exchange(env, &req, &info);
            }
            Action::Upstream(u) => {
                let to = Routed {
                    upstream: *u,
                    route_path: &route_path,
                    headers: route.headers.clone(),
                    host,
                };
                return self.dispatch_upstream(env, &req, &info, to);
            }
        }
        Dispatch::Consumed(local_consumed)
    }

    /// Applies the route's limits; false: refused (and answered). Out of
    /// line: a route without limits pays one test of `has_limits`.
    #[inline(never)]
    fn admit(
        &mut self,
        env: &mut Env,
        route: &crate::config::Route,
        req: &httparse::Request,
        info: &request::RequestInfo,
        local_keep: bool,
    ) -> bool {
        // A request for an HTTP/2 upstream goes through an `Exchange`,
        // whose routing applies the limits (and holds the `limit_conn`).
        let via_exchange = info.max_forwards != Some(0)
            && matches!(route.action, Action::Upstream(u) if env.rt.upstreams[u].protocol.is_h2());
        if via_exchange {
            return true;
        }
        match limit::admit(env, route, self.peer.ip(), req.headers) {
            Admit::Pass(hold) => {
                self.cur.hold = hold;
                true
            }
            Admit::Reject(status) => {
                let body = format!("{}\n", errors::reason(status));
                self.respond_local(env, status, "text/plain", b"", body.as_bytes(), local_keep);
                false
            }
        }
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
        self.end_exchange(env, true);
        self.cur.end();
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
        self.cur.begin();
        self.capture_record(env, req, info.minor);
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
    fn reject_invalid_head(
        &mut self,
        env: &mut Env,
        head: &[u8],
        e: &request::RequestError,
    ) -> Dispatch {
        log::info!("client {} sent an invalid request: {}", self.peer, e.reason);
        self.cur.begin();
        self.capture_raw_record(env, head);
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
        self.cur.begin();
        self.capture_record(env, req, info.minor);
        env.count_request(self.listener);
        let req = &mut self.cur.req;
        req.is_head = info.is_head;
        // Set for every request, also those answered without reading the
        // body: a body still to come makes the close linger.
        req.body = Relay::new(Body::from_framing(info.framing));
        req.minor = info.minor;
        req.keep_alive = info.keep_alive;
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
        // A request without Host (HTTP/1.0 may send none) is redirected to
        // the address it came to, as nginx falls back to its server name
        // rather than answer a valid request with a 400.
        let local = match host.filter(|h| !h.is_empty()) {
            Some(_) => None,
            None => self.client.sock().local_addr().ok().map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            }),
        };
        let host = host.filter(|h| !h.is_empty()).or(local.as_deref());
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

    /// A `stats` route: the dashboard (`crate::dashboard`). Out of line:
    /// the data path pays nothing for it.
    #[inline(never)]
    fn answer_stats(
        &mut self,
        env: &mut Env,
        stats: &crate::config::Stats,
        req: &httparse::Request,
        local_keep: bool,
    ) {
        use crate::dashboard;
        let a = super::stats_route::answer(env, stats, req, self.peer.ip(), self.listener);
        let mut extra = String::with_capacity(400);
        for (name, value) in dashboard::SECURITY_HEADERS {
            extra.push_str(name);
            extra.push_str(": ");
            extra.push_str(value);
            extra.push_str("\r\n");
        }
        if a.allow {
            extra.push_str("Allow: ");
            extra.push_str(dashboard::ALLOW);
            extra.push_str("\r\n");
        }
        self.respond_local(
            env,
            a.status,
            a.content_type,
            extra.as_bytes(),
            &a.body,
            local_keep,
        );
    }

    /// `Max-Forwards: 0` on an upstream route. RFC 9110 §7.6.2: forklb is
    /// the final recipient (`request::final_recipient_answer`).
    fn answer_as_final_recipient(
        &mut self,
        env: &mut Env,
        req: &httparse::Request,
        local_keep: bool,
    ) {
        let allow = format!("Allow: {}\r\n", request::FINAL_RECIPIENT_ALLOW);
        let (status, body) = request::final_recipient_answer(req.method.unwrap_or(""));
        self.respond_local(
            env,
            status,
            "text/plain",
            allow.as_bytes(),
            body,
            local_keep,
        );
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
            rec.discard(env);
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
            ssl_client_s_dn: self.client.client_s_dn(),
        };
        let client = exchange::Client {
            peer: self.peer,
            local: exchange::local_addr_for(env.rt, None, self.client.sock()),
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
        let reset = x.aborted && x.close_delimited;
        x.ex.end(env);
        if reset {
            // Closed at once (no FIN first, as a lingering close would
            // send): see `reset_on_close`.
            let _ = crate::net::reset_on_close(self.client.sock());
            return Err(Closed);
        }
        self.cur.req.keep_after = keep;
        self.next_request(env)
    }

    /// An `upstream` route to an HTTP/1.1 upstream: enforces the body
    /// limit, answers `Expect: 100-continue`, and starts the exchange with
    /// upstream `to.upstream`, which the request and its response pass
    /// through.
    #[inline]
    fn dispatch_upstream(
        &mut self,
        env: &mut Env,
        req: &httparse::Request,
        info: &request::RequestInfo,
        to: Routed,
    ) -> Dispatch {
        if let Framing::Length(n) = info.framing {
            if env.rt.max_body_bytes > 0 && n > env.rt.max_body_bytes {
                log::info!("client {} sent a too large body: {n} bytes", self.peer);
                return self.reject(env, 413);
            }
        }
        if env.rt.max_body_bytes > 0 {
            self.cur.req.body.limit_data(env.rt.max_body_bytes);
        }
        let has_body = info.framing != Framing::None;
        self.cur.req.upgrade = info.upgrade;
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
        let client = exchange::Client {
            peer: self.peer,
            local: exchange::local_addr_for(env.rt, Some(to.upstream), self.client.sock()),
            listener: self.listener,
            slot: self.slot,
        };
        let h1 = exchange::H1Request {
            upstream: to.upstream,
            route_path: to.route_path,
            headers: to.headers.as_ref(),
            host: to.host,
            ssl_client_s_dn: self.client.client_s_dn(),
            framing: info.framing,
            upgrade: info.upgrade,
            max_forwards: info.max_forwards.map(|n| n.saturating_sub(1)),
            replayable: info.idempotent && !has_body,
        };
        let record = self.record.take();
        let slot = &mut self.cur.ex;
        Exchange::start_h1(slot, env, client, &h1, req, info.is_head, record);
        self.phase = Phase::Proxy;
        Dispatch::Consumed(info.head_len)
    }

    /// A request passing through to an HTTP/1.1 upstream: the exchange
    /// moves the bytes on this connection's socket and buffers.
    fn run_proxy(&mut self, env: &mut Env) -> Step {
        let Some((ex, mut c)) = self.split_proxy() else {
            return Err(Closed);
        };
        let progress = ex.drive_h1(env, &mut c);
        let end = match progress {
            Progress::Upgraded => ex.take_tunnel(),
            _ => None,
        };
        self.deadline = ex.deadline;
        match progress {
            // The exchange ran until it was blocked.
            Progress::Moved | Progress::Blocked => Ok(false),
            Progress::Upgraded => {
                let Some(end) = end else {
                    return Err(Closed);
                };
                self.phase = Phase::Tunnel(Box::new(Tunnel::new(end)));
                // The `101` head waits for the client first.
                self.set_deadline(env, env.rt.timeouts.client_send);
                Ok(true)
            }
            Progress::Finished => {
                let aborted = self.cur.req.aborted;
                self.end_exchange(env, false);
                if aborted {
                    if self.cur.req.close_delimited {
                        let _ = crate::net::reset_on_close(self.client.sock());
                    }
                    return Err(Closed);
                }
                if self.out.as_ref().is_none_or(|o| self.out_pos >= o.len()) {
                    return self.next_request(env);
                }
                // What is left of the output (a head without body, an
                // error page) goes out; then the next request.
                self.phase = Phase::SendLocal;
                self.set_deadline(env, env.rt.timeouts.upstream_write);
                Ok(true)
            }
        }
    }

    /// Answers a request that cannot be processed; the connection closes
    /// after the answer because the rest of the input cannot be trusted.
    fn reject(&mut self, env: &mut Env, status: u16) -> Dispatch {
        let _ = self.reject_now(env, status);
        Dispatch::Rejected
    }

    fn reject_now(&mut self, env: &mut Env, status: u16) -> Step {
        let mut out = env.heads.get();
        self.cur.status = status;
        self.cur.local_body_bytes = errors::error_body_len(status) as u64;
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
        let is_head = self.cur.req.is_head;
        self.cur.status = status;
        self.cur.local_body_bytes = if is_head { 0 } else { body.len() as u64 };
        let reply = errors::Reply {
            status,
            content_type,
            extra_headers: extra,
            body,
            keep_alive: keep,
            head_only: is_head,
        };
        errors::write_response(&mut out, &reply, env.date.text());
        self.start_local(env, out, keep);
    }

    /// An error page for a request whose head was consumed.
    fn respond_error(&mut self, env: &mut Env, status: u16, keep: bool) -> Step {
        let keep = keep && !env.draining;
        let mut out = env.heads.get();
        let is_head = self.cur.req.is_head;
        self.cur.status = status;
        self.cur.local_body_bytes = if is_head {
            0
        } else {
            errors::error_body_len(status) as u64
        };
        errors::write_error(&mut out, status, keep, is_head, env.date.text());
        self.start_local(env, out, keep);
        Ok(true)
    }

    fn start_local(&mut self, env: &mut Env, out: Vec<u8>, keep: bool) {
        env.count_response(self.listener, self.cur.status);
        if let Some(old) = self.out.replace(out) {
            env.heads.put(old);
        }
        self.out_pos = 0;
        self.cur.req.keep_after = keep;
        self.phase = Phase::SendLocal;
        self.set_deadline(env, env.rt.timeouts.upstream_write);
    }

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

    fn next_request(&mut self, env: &mut Env) -> Step {
        if let Some(rec) = self.record.take() {
            self.log_local(env, *rec);
        }
        if let Some(v) = self.out.take() {
            env.heads.put(v);
        }
        self.out_pos = 0;
        if !self.cur.req.keep_after || env.draining {
            return self.close_gracefully(env);
        }
        self.phase = Phase::ReadHead;
        self.head_started = false;
        self.served += 1;
        self.cur.end();
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

    // ----- Access log -------------------------------------------------------

    #[inline]
    fn capture_record(&mut self, env: &mut Env, req: &httparse::Request, minor: u8) {
        if !env.access.enabled() {
            return;
        }
        let protocol = if minor == 0 { "HTTP/1.0" } else { "HTTP/1.1" };
        let rec = Record::capture(
            env,
            req.method.unwrap_or("-"),
            req.path.unwrap_or("-"),
            req.headers,
            protocol,
        );
        if let Some(old) = std::mem::replace(&mut self.record, rec) {
            old.discard(env);
        }
    }

    /// The record of a head that never parsed: its raw request line.
    fn capture_raw_record(&mut self, env: &mut Env, head: &[u8]) {
        let rec = Record::capture_raw(env, head);
        if let Some(old) = std::mem::replace(&mut self.record, rec) {
            old.discard(env);
        }
    }

    /// `capture_raw_record` of what the client sent so far.
    fn capture_raw_record_of_input(&mut self, env: &mut Env) {
        if let Some(head) = self.input.take() {
            self.capture_raw_record(env, head.data());
            self.input = Some(head);
        }
    }

    /// A client gone in the middle of a request head gets a log line, as
    /// nginx logs a 400 (nothing was sent): the access log shows clients
    /// that start requests and never finish them.
    fn log_cut_head(&mut self, env: &mut Env) {
        let sent_some = self
            .input
            .as_ref()
            .is_some_and(|b| b.data().iter().any(|&b| b != b'\r' && b != b'\n'));
        if !sent_some || !env.access.enabled() {
            return;
        }
        self.cur.begin();
        self.cur.status = 400;
        self.capture_raw_record_of_input(env);
    }

    /// Writes the access log line of a request forklb answered itself.
    fn log_local(&mut self, env: &mut Env, rec: Record) {
        rec.write(
            env,
            &record::Outcome {
                client: self.peer,
                status: self.cur.status,
                body_bytes: self.cur.local_body_bytes,
                upstream: None,
                upstream_status: None,
                upstream_started: None,
                request_id: crate::http::request_id::next(),
            },
        );
    }

    // ----- Tunnel -----------------------------------------------------------

    /// Copies bytes both ways after a protocol switch. When one side closes
    /// its sending half, the other side's sending half is shut down too;
    /// the tunnel ends when both directions are closed.
    fn tunnel(&mut self, env: &mut Env) -> Step {
        // The `101` head (see `run_proxy`) goes out first; once it has,
        // that is progress.
        let head_pending = self.out.as_ref().is_some_and(|o| self.out_pos < o.len());
        if !self.flush_out()? {
            return Ok(false);
        }
        let Phase::Tunnel(t) = &mut self.phase else {
            return Err(Closed);
        };
        let mut progress = head_pending;
        progress |= drained_tls_queue(&mut self.client, &mut self.c_writable)?;
        progress |= drained_tls_queue(&mut t.end.sock, &mut t.writable)?;
        if !self.eof_to_upstream {
            progress |= pump(
                &mut t.to_upstream,
                Ends {
                    src: &mut self.client,
                    src_ready: &mut self.c_readable,
                    src_hup: self.c_hup,
                    buf: &mut self.input,
                    dst: &mut t.end.sock,
                    dst_ready: &mut t.writable,
                },
                &mut self.eof_to_upstream,
                env.bufs,
            )?;
        }
        if !t.eof_to_client {
            progress |= pump(
                &mut t.to_client,
                Ends {
                    src: &mut t.end.sock,
                    src_ready: &mut t.readable,
                    src_hup: t.hup,
                    buf: &mut t.end.input,
                    dst: &mut self.client,
                    dst_ready: &mut self.c_writable,
                },
                &mut t.eof_to_client,
                env.bufs,
            )?;
        }
        if self.eof_to_upstream && t.eof_to_client {
            return Err(Closed);
        }
        if progress {
            // Only after progress: a run that moved nothing must not push
            // the deadline back.
            // Waiting: relayed bytes not written yet, or written into TLS
            // records the socket has no room for yet.
            let to_client = t.end.input.as_ref().is_some_and(|b| !b.is_empty())
                || self.client.has_queued_output();
            let to_upstream = self.input.as_ref().is_some_and(|b| !b.is_empty())
                || t.end.sock.has_queued_output();
            t.wait = TunnelWait::of(to_client, to_upstream);
            let timeout = t.wait.timeout(&env.rt.timeouts);
            self.set_deadline(env, timeout);
        }
        Ok(progress)
    }

    /// Closes the tunnel's upstream socket (which takes it out of epoll);
    /// the connection is closing.
    fn drop_tunnel(&mut self, env: &mut Env) {
        if !matches!(self.phase, Phase::Tunnel(_)) {
            return;
        }
        let closing = Phase::Closing { linger: false };
        if let Phase::Tunnel(mut t) = std::mem::replace(&mut self.phase, closing) {
            env.up_owners.remove(t.end.up_slot);
            if let Some(b) = t.end.input.take() {
                env.bufs.put(b);
            }
        }
    }

    // ----- Closing ----------------------------------------------------------

    /// Half-closes so the client reads everything before EOF; a TLS client
    /// first gets the records still queued and close_notify. A client that
    /// may still be uploading gets a lingering close.
    fn close_gracefully(&mut self, env: &mut Env) -> Step {
        let linger = self.cur.req.upload_cut_short();
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
        self.cur.end();
        self.phase = Phase::Lingering {
            until: env.now + LINGERING_TIME,
        };
        self.set_deadline(env, LINGERING_TIMEOUT);
        Ok(true)
    }

    /// Discards what the client sends until it closes or the bounds of
    /// `Phase::Lingering` are reached (`on_timeout` closes).
    fn linger(&mut self, env: &mut Env, until: Instant) -> Step {
        let got = h1_client::discard_input(
            &mut self.client,
            &mut self.input,
            &mut self.c_readable,
            self.c_hup,
            env,
        );
        match got {
            Io::Done(_) => {
                self.deadline = (env.now + LINGERING_TIMEOUT).min(until);
                Ok(true)
            }
            Io::Blocked => Ok(false),
            Io::Eof | Io::Failed(_) => Err(Closed),
        }
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
