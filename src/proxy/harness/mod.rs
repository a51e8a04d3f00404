//! An in-process harness that drives one client connection's exchange
//! (`Conn`) with scripted ends, so that a protocol edge case needs neither
//! a forklb process nor a backend process to test (as Pingora tests its
//! sessions with mock I/O).
//!
//! The harness is a miniature worker: it builds the configuration from a
//! YAML string and owns what a worker lends a connection (`Env`: runtime,
//! buffer pools, balancers, upstream pool, shared memory, ...). It accepts
//! one client connection on a 127.0.0.1 listener and runs its own mio
//! `Poll`, routing client and upstream tokens to the `Conn` as
//! `worker::Worker` does. Both ends are scripted sockets in the same poll
//! and the same thread: the client, and a loopback "upstream server" whose
//! address the configuration names (`$UPSTREAM`). Nothing runs in another
//! thread, so a test is a plain sequence of steps:
//!
//! ```text
//! let mut h = Harness::standard();
//! h.client_send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
//! let req = h.upstream_request();            // waits for the forwarded request
//! h.upstream_send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
//! let resp = h.client_response();            // waits for the relayed response
//! ```
//!
//! Every wait (`client_response`, `upstream_request`, `client_closed`, ...)
//! turns the event loop until its condition holds and panics, showing what
//! each end received, if it does not within `WAIT`. A send returns once the
//! proxy has read the bytes (its socket's receive queue is empty), so the
//! pieces of `client_send_pieces` / `upstream_send_pieces` reach the proxy
//! as separate reads — no sleeps. If the proxy does not read (it is not
//! expecting input then), the send returns when the loop goes idle.
//!
//! To write a test: start with `Harness::standard()` (one route to one
//! server, default limits) or `Harness::new(yaml)` for other settings,
//! script the two ends in the order the exchange needs, and assert on the
//! returned `Message`s, on `client_closed`, `upstream_connections`,
//! `upstream_bytes` and `pooled`. Tests live in `proxy::exchange_tests`.

mod peer;
mod wire;

pub use wire::Message;

use super::{Conn, Env, ExchangeSpares, Outcome, Pool, Side};
use crate::access_log::AccessLog;
use crate::balance::Balancer;
use crate::buffer::{BufPool, VecPool};
use crate::config::Config;
use crate::event::token::{self, TokenKind, UpstreamOwners, POOLED};
use crate::event::{Slab, Stream};
use crate::http::date::DateCache;
use crate::route::Runtime;
use crate::shm::Shm;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use peer::Peer;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};
use wire::Kind;

/// The longest any single wait may take before the test fails. Everything
/// is on loopback in one thread: a healthy step takes microseconds.
const WAIT: Duration = Duration::from_secs(3);

/// A send is done when the proxy read it, or when the loop saw no event for
/// this long (the proxy is not reading that side now).
const IDLE: Duration = Duration::from_millis(20);

/// Tokens of the scripted ends (below the worker's connection tokens).
const CLIENT: Token = Token(1);
const UPSTREAM_LISTENER: Token = Token(2);
const FIRST_UPSTREAM_PEER: usize = 3;

/// The connection's slot in the (one-slot) worker.
const SLOT: usize = 0;

/// One listener, one route, one upstream `web` with one server.
pub const STANDARD: &str = r#"
workers: 1
listeners:
  - name: web
    bind: ["127.0.0.1:1"]
    routes:
      - upstream: web
upstreams:
  web:
    servers:
      - {name: web1, addr: "$UPSTREAM"}
"#;

/// What the worker would own, lent to the connection as an `Env`.
struct WorkerParts {
    rt: Runtime,
    bufs: BufPool,
    heads: VecPool,
    exchanges: ExchangeSpares,
    balancers: Vec<Balancer>,
    pool: Pool,
    up_owners: UpstreamOwners,
    access: AccessLog,
    shm: Shm,
    date: DateCache,
}

pub struct Harness {
    poll: Poll,
    events: Option<Events>,
    parts: WorkerParts,
    /// None once the connection closed.
    conn: Option<Conn>,
    client: Peer,
    upstream_listener: TcpListener,
    /// Every connection the proxy opened to the upstream server, in order.
    upstreams: Vec<Peer>,
}

impl Harness {
    /// `STANDARD`.
    pub fn standard() -> Harness {
        Harness::new(STANDARD)
    }

    /// A harness running `yaml`, in which `$UPSTREAM` stands for the
    /// scripted upstream server's address; the client is connected to the
    /// configuration's first listener.
    pub fn new(yaml: &str) -> Harness {
        let upstream_listener =
            TcpListener::bind(loopback()).unwrap_or_else(|e| panic!("upstream bind: {e}"));
        let up_addr = upstream_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("upstream address: {e}"));
        let yaml = yaml.replace("$UPSTREAM", &up_addr.to_string());
        let config = Config::from_yaml_str(&yaml, Path::new("/harness/forklb.yaml"))
            .unwrap_or_else(|e| panic!("invalid harness config: {e}\n{yaml}"));
        let poll = Poll::new().unwrap_or_else(|e| panic!("poll: {e}"));
        let mut upstream_listener = upstream_listener;
        poll.registry()
            .register(
                &mut upstream_listener,
                UPSTREAM_LISTENER,
                Interest::READABLE,
            )
            .unwrap_or_else(|e| panic!("register upstream listener: {e}"));
        let (client, accepted, peer_addr) = connect_pair();
        let mut client = client;
        poll.registry()
            .register(&mut client, CLIENT, Interest::READABLE)
            .unwrap_or_else(|e| panic!("register client: {e}"));
        let mut h = Harness {
            parts: WorkerParts::new(&config),
            poll,
            events: Some(Events::with_capacity(64)),
            conn: None,
            client: Peer::new(client),
            upstream_listener,
            upstreams: Vec::new(),
        };
        // As `Worker::add_conn`: build, register, drive once.
        let now = Instant::now();
        let mut conn = {
            let env = h.env(now);
            Conn::new(1, SLOT, Stream::Plain(accepted), peer_addr, 0, &env)
        };
        h.poll
            .registry()
            .register(
                conn.client_mut(),
                token::client_token(SLOT),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap_or_else(|e| panic!("register the proxy's client socket: {e}"));
        h.conn = Some(conn);
        h.run_conn(now, |conn, env| conn.drive(env));
        h
    }

    // ---- the client end ------------------------------------------------

    /// Sends `bytes` from the client; returns once the proxy read them.
    pub fn client_send(&mut self, bytes: &[u8]) {
        self.send(None, bytes);
    }

    /// Sends each piece separately, each read by the proxy before the next.
    pub fn client_send_pieces(&mut self, pieces: &[&[u8]]) {
        for piece in pieces {
            self.client_send(piece);
        }
    }

    /// Sends `bytes` one byte at a time.
    pub fn client_send_bytewise(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.client_send(std::slice::from_ref(b));
        }
    }

    /// Waits for the next complete response on the client connection.
    pub fn client_response(&mut self) -> Message {
        self.client_message(Kind::Response)
    }

    /// Waits for the next response to a HEAD request (it has no body).
    pub fn client_response_to_head(&mut self) -> Message {
        self.client_message(Kind::ResponseToHead)
    }

    fn client_message(&mut self, kind: Kind) -> Message {
        let mut got = None;
        self.run_until("a response on the client connection", |h| {
            got = h.client.take_message(kind);
            got.is_some()
        });
        got.unwrap_or_else(|| unreachable!("run_until returned"))
    }

    /// Waits until the proxy has closed the client connection (FIN or RST);
    /// returns what arrived after the responses taken so far.
    pub fn client_closed(&mut self) -> Vec<u8> {
        self.run_until("the proxy to close the client connection", |h| {
            h.client.closed
        });
        self.client.input[self.client.taken..].to_vec()
    }

    /// The proxy reset the client connection (seen by `client_closed`):
    /// a client may then lose a response it has not read yet.
    pub fn client_was_reset(&self) -> bool {
        self.client.reset
    }

    /// The client ends its sending side (FIN), keeping the reading side.
    pub fn client_shutdown_write(&mut self) {
        if let Some(s) = self.client.sock.as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        self.settle();
    }

    /// The client connection is still open (checked after the loop settled).
    pub fn client_open(&mut self) -> bool {
        self.settle();
        !self.client.closed
    }

    /// Everything the client received.
    pub fn client_received(&self) -> &[u8] {
        &self.client.input
    }

    // ---- the upstream end ----------------------------------------------

    /// Waits for the next complete request on the latest upstream
    /// connection (waiting for the proxy to connect if it has not).
    pub fn upstream_request(&mut self) -> Message {
        let mut got = None;
        self.run_until("a request on the upstream connection", |h| {
            got = h
                .upstreams
                .last_mut()
                .and_then(|p| p.take_message(Kind::Request));
            got.is_some()
        });
        got.unwrap_or_else(|| unreachable!("run_until returned"))
    }

    /// Waits until the latest upstream connection received a request head;
    /// returns it, leaving the body to arrive (`upstream_received`).
    pub fn upstream_head(&mut self) -> String {
        self.run_until("a request head on the upstream connection", |h| {
            h.upstreams
                .last()
                .is_some_and(|p| wire::find(&p.input[p.taken..], b"\r\n\r\n").is_some())
        });
        let p = self.latest_upstream();
        let end = p.taken + wire::find(&p.input[p.taken..], b"\r\n\r\n").unwrap_or(0) + 4;
        let head = String::from_utf8_lossy(&p.input[p.taken..end]).into_owned();
        p.taken = end;
        head
    }

    /// Sends `bytes` from the latest upstream connection; returns once the
    /// proxy read them (or stopped reading).
    pub fn upstream_send(&mut self, bytes: &[u8]) {
        let i = self.upstreams.len().checked_sub(1);
        let Some(i) = i else {
            panic!("upstream_send: the proxy has not connected to the upstream");
        };
        self.send(Some(i), bytes);
    }

    /// Sends each piece separately, each read by the proxy before the next.
    pub fn upstream_send_pieces(&mut self, pieces: &[&[u8]]) {
        for piece in pieces {
            self.upstream_send(piece);
        }
    }

    /// Closes the latest upstream connection (FIN).
    pub fn upstream_close(&mut self) {
        self.drop_latest_upstream(false);
    }

    /// Resets the latest upstream connection (RST).
    pub fn upstream_reset(&mut self) {
        self.drop_latest_upstream(true);
    }

    /// Waits until the proxy has closed the latest upstream connection.
    pub fn upstream_closed(&mut self) {
        self.run_until("the proxy to close the upstream connection", |h| {
            h.upstreams.last().is_some_and(|p| p.closed)
        });
    }

    /// Connections the proxy opened to the upstream server so far.
    pub fn upstream_connections(&mut self) -> usize {
        self.settle();
        self.upstreams.len()
    }

    /// Bytes the upstream server received, over all connections.
    pub fn upstream_bytes(&mut self) -> usize {
        self.settle();
        self.upstreams.iter().map(|p| p.input.len()).sum()
    }

    /// What the latest upstream connection received after what was taken.
    pub fn upstream_received(&mut self) -> Vec<u8> {
        self.settle();
        let p = self.latest_upstream();
        p.input[p.taken..].to_vec()
    }

    /// Idle upstream connections in the proxy's pool.
    pub fn pooled(&mut self) -> usize {
        self.settle();
        self.parts.pool.idle_count()
    }

    fn latest_upstream(&mut self) -> &mut Peer {
        self.upstreams
            .last_mut()
            .unwrap_or_else(|| panic!("the proxy has not connected to the upstream"))
    }

    fn drop_latest_upstream(&mut self, reset: bool) {
        let Some(p) = self.upstreams.last_mut() else {
            panic!("the proxy has not connected to the upstream");
        };
        p.close(self.poll.registry(), reset);
        self.settle();
    }

    // ---- the loop ------------------------------------------------------

    /// Writes all of `bytes` from the client (`None`) or upstream peer `i`,
    /// then waits until the proxy read them.
    fn send(&mut self, upstream: Option<usize>, bytes: &[u8]) {
        let mut sent = 0;
        let deadline = Instant::now() + WAIT;
        while sent < bytes.len() {
            let peer = match upstream {
                None => &mut self.client,
                Some(i) => &mut self.upstreams[i],
            };
            match peer.write_some(&bytes[sent..]) {
                Ok(n) => sent += n,
                Err(e) => panic!(
                    "{} cannot send ({sent} of {} bytes sent): {e}",
                    side_name(upstream),
                    bytes.len()
                ),
            }
            if sent < bytes.len() {
                if Instant::now() > deadline {
                    panic!(
                        "{} could not send within {WAIT:?} ({sent} of {} bytes)",
                        side_name(upstream),
                        bytes.len()
                    );
                }
                self.turn(Some(IDLE));
            }
        }
        self.settle_after_send(upstream);
    }

    /// Turns the loop until the proxy has read everything `upstream` (or
    /// the client) sent, or the loop is idle.
    fn settle_after_send(&mut self, upstream: Option<usize>) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            // The connection acts on what it read in the same turn
            // (`drive` runs until blocked), so this is the whole effect.
            if self.proxy_read_all(upstream) {
                return;
            }
            if self.turn(Some(IDLE)) == 0 {
                return;
            }
        }
    }

    fn proxy_read_all(&mut self, upstream: Option<usize>) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        match upstream {
            None => {
                self.client.unsent() == 0 && peer::queued(conn.client_mut(), libc::FIONREAD) == 0
            }
            Some(i) => {
                self.upstreams[i].unsent() == 0
                    && conn
                        .upstream_sock()
                        .is_none_or(|s| peer::queued(s, libc::FIONREAD) == 0)
            }
        }
    }

    /// Turns the loop until a turn sees no event for `IDLE`.
    fn settle(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.turn(Some(IDLE)) > 0 {
            if Instant::now() > deadline {
                panic!(
                    "the loop never went idle within {WAIT:?}\n{}",
                    self.report()
                );
            }
        }
    }

    /// Turns the loop until `done` holds; panics after `WAIT`.
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&mut Harness) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump_peers();
            if done(self) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("waited {WAIT:?} for {what}\n{}", self.report());
            }
            self.turn(Some((deadline - now).min(Duration::from_millis(50))));
        }
    }

    /// One round of the event loop: waits up to `timeout` (or the
    /// connection's deadline) for events, hands the proxy's to the
    /// connection, accepts upstream connections, collects what the scripted
    /// ends received and runs the connection's timeout if due. Returns the
    /// number of events seen.
    fn turn(&mut self, timeout: Option<Duration>) -> usize {
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(64));
        let now = Instant::now();
        let timeout = match (&self.conn, timeout) {
            (Some(c), Some(t)) => Some(t.min(c.deadline.saturating_duration_since(now))),
            (_, t) => t,
        };
        match self.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
        let now = Instant::now();
        self.parts.date.refresh(now);
        let mut seen = 0;
        for ev in events.iter() {
            seen += 1;
            let t = ev.token();
            if t.0 < token::FIRST_CONN_TOKEN {
                continue; // a scripted end: pumped below
            }
            self.proxy_event(ev, now);
        }
        self.events = Some(events);
        self.accept_upstreams();
        self.pump_peers();
        if self.conn.as_ref().is_some_and(|c| c.deadline <= now) {
            self.run_conn(now, |conn, env| conn.on_timeout(env));
        }
        seen
    }

    /// Routes an event as `Worker::conn_event` does.
    fn proxy_event(&mut self, ev: &mio::event::Event, now: Instant) {
        match token::token_kind(ev.token()) {
            Some(TokenKind::Client(_)) => {
                self.run_conn(now, |conn, env| conn.on_event(Side::Client, ev, env));
            }
            Some(TokenKind::Upstream(up_slot)) => match self.parts.up_owners.get(up_slot) {
                Some(&POOLED)
                    if self
                        .parts
                        .pool
                        .get_mut(up_slot)
                        .is_some_and(|s| s.idle_still_clean()) => {}
                Some(&POOLED) if self.parts.pool.remove(up_slot) => {
                    self.parts.up_owners.remove(up_slot);
                }
                Some(&POOLED) | None => {}
                Some(_) => {
                    self.run_conn(now, |conn, env| conn.on_event(Side::Upstream, ev, env));
                }
            },
            None => {}
        }
    }

    /// Runs `f` on the connection; closes it as `Worker::close` does if the
    /// outcome says so.
    fn run_conn(&mut self, now: Instant, f: impl FnOnce(&mut Conn, &mut Env) -> Outcome) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let outcome = {
            let mut env = self.env(now);
            f(&mut conn, &mut env)
        };
        match outcome {
            Outcome::Keep => self.conn = Some(conn),
            Outcome::Close => {
                let _ = self.poll.registry().deregister(conn.client_mut());
                let mut env = self.env(now);
                conn.release(&mut env);
            }
        }
    }

    fn env(&mut self, now: Instant) -> Env<'_> {
        let p = &mut self.parts;
        Env {
            rt: &p.rt,
            registry: self.poll.registry(),
            bufs: &mut p.bufs,
            heads: &mut p.heads,
            exchanges: &mut p.exchanges,
            balancers: &mut p.balancers,
            pool: &mut p.pool,
            up_owners: &mut p.up_owners,
            access: &mut p.access,
            shm: &p.shm,
            slot: 0,
            now,
            date: &p.date,
            draining: false,
        }
    }

    fn accept_upstreams(&mut self) {
        loop {
            match self.upstream_listener.accept() {
                Ok((mut sock, _)) => {
                    let t = Token(FIRST_UPSTREAM_PEER + self.upstreams.len());
                    self.poll
                        .registry()
                        .register(&mut sock, t, Interest::READABLE)
                        .unwrap_or_else(|e| panic!("register upstream peer: {e}"));
                    self.upstreams.push(Peer::new(sock));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("upstream accept: {e}"),
            }
        }
    }

    fn pump_peers(&mut self) {
        self.client.pump();
        for p in &mut self.upstreams {
            p.pump();
        }
    }

    /// What each end received, for failure messages.
    fn report(&self) -> String {
        let mut s = format!(
            "client received ({} bytes, closed: {}): {}\n",
            self.client.input.len(),
            self.client.closed,
            excerpt(&self.client.input)
        );
        for (i, p) in self.upstreams.iter().enumerate() {
            s += &format!(
                "upstream connection {i} received ({} bytes, closed: {}): {}\n",
                p.input.len(),
                p.closed,
                excerpt(&p.input)
            );
        }
        s += &format!("proxy connection open: {}", self.conn.is_some());
        s
    }
}

impl WorkerParts {
    /// As `Worker::new` and the master's `build_shm` (every server READY
    /// with its weight), for worker slot 0 of one.
    fn new(config: &Config) -> WorkerParts {
        let rt = Runtime::new(config);
        let counts: Vec<usize> = rt.upstreams.iter().map(|u| u.servers.len()).collect();
        let shm = Shm::create(&counts, 1).unwrap_or_else(|e| panic!("shm: {e}"));
        for (ui, up) in rt.upstreams.iter().enumerate() {
            let full_health = up.health.as_ref().map(|h| h.rise + h.fall - 1);
            for (si, s) in up.servers.iter().enumerate() {
                shm.server(ui, si)
                    .init(s.weight, full_health, crate::shm::unix_secs());
            }
        }
        let balancers = rt
            .upstreams
            .iter()
            .map(|u| Balancer::new(u.balance, u.servers.len()))
            .collect();
        let pool = Pool::new(
            rt.upstreams.iter().map(|u| u.keepalive).collect(),
            Duration::from_secs(50),
        );
        WorkerParts {
            bufs: BufPool::new((rt.max_header_bytes + 4096).max(16 * 1024), 1024, 64),
            heads: VecPool::new(1024, 1024),
            exchanges: ExchangeSpares::default(),
            balancers,
            pool,
            up_owners: Slab::new(),
            access: AccessLog::disabled(),
            shm,
            date: DateCache::new(Instant::now()),
            rt,
        }
    }
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A connected loopback pair: the client's end, the accepted end (what a
/// listener gives the worker) and the client's address.
fn connect_pair() -> (TcpStream, TcpStream, std::net::SocketAddr) {
    let listener =
        std::net::TcpListener::bind(loopback()).unwrap_or_else(|e| panic!("client bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("listener address: {e}"));
    // Loopback connects complete in the kernel at once: the accept below
    // finds the connection queued (a blocking connect returned, so the
    // handshake is done).
    let client = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    let (accepted, peer) = listener
        .accept()
        .unwrap_or_else(|e| panic!("client accept: {e}"));
    for s in [&client, &accepted] {
        s.set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let _ = s.set_nodelay(true);
    }
    (
        TcpStream::from_std(client),
        TcpStream::from_std(accepted),
        peer,
    )
}

/// `bytes` for a failure message, the middle of a long run left out.
fn excerpt(bytes: &[u8]) -> String {
    const EDGE: usize = 300;
    if bytes.len() <= 2 * EDGE {
        return format!("{:?}", String::from_utf8_lossy(bytes));
    }
    format!(
        "{:?} ... {:?}",
        String::from_utf8_lossy(&bytes[..EDGE]),
        String::from_utf8_lossy(&bytes[bytes.len() - EDGE..])
    )
}

fn side_name(upstream: Option<usize>) -> String {
    match upstream {
        None => "the client".to_owned(),
        Some(i) => format!("upstream connection {i}"),
    }
}
