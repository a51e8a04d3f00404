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
//! `Harness::new` takes any configuration, e.g. `STANDARD` with
//! `timeouts: {client_header: 100ms}` in front: the connection's timeouts
//! run when its deadline passes, so a timeout test takes that long.
//!
//! Files: this one is the script API; `looping` the event loop, `parts`
//! what the worker owns, `peer` a scripted socket, `wire` message framing.

mod looping;
mod parts;
mod peer;
mod wire;

pub use wire::Message;

use super::Conn;
use crate::config::Config;
use crate::event::token;
use crate::event::Stream;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use parts::{connect_pair, loopback, WorkerParts};
use peer::Peer;
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
