//! HTTP/2 connections to upstream servers (`protocol: h2` or `h2c`), shared
//! by all exchanges of a worker: requests from any client connection are
//! streams on a few connections per server, as many as the server's
//! SETTINGS_MAX_CONCURRENT_STREAMS allow on each.
//!
//! A connection belongs to no client connection: its socket's owner in
//! `UpstreamOwners` is `SHARED`, and the worker hands its events here.
//! What arrives for a stream waits in that stream's inbox (bounded by the
//! stream's receive window, which reopens only as the client takes the
//! bytes), and the stream's owner — the client connection whose exchange
//! opened it — is named in `wake` to be driven.

use super::h2_wire::{self, WireError};
use crate::buffer::{Buf, BufPool};
use crate::event::token::UpstreamOwners;
use crate::event::{EstablishError, Slab, Stream};
use crate::h2::client::Event;
use crate::h2::{self, ClientConn, RequestHead};
use crate::proxy_proto::{Header, Preface};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// `UpstreamOwners` value of a shared HTTP/2 upstream socket.
pub const SHARED: usize = usize::MAX - 1;

/// An idle shared connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle connection opened with a PROXY header (`send_proxy`) serves
/// one client only: it goes sooner, so that clients that left do not keep
/// a connection each.
const PRIVATE_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TCP connecting (`connected` false) or TLS handshaking.
    Connecting {
        connected: bool,
    },
    Ready,
    /// Failed or ended: no new streams; removed when its streams are gone.
    Dead,
}

/// What waits for one stream's exchange.
struct Inbox {
    owner: usize,
    events: VecDeque<Event>,
}

struct UpConn {
    id: u64,
    upstream: usize,
    server: usize,
    sock: Stream,
    up_slot: usize,
    phase: Phase,
    readable: bool,
    writable: bool,
    hup: bool,
    conn: ClientConn,
    input: Option<Buf>,
    streams: HashMap<u32, Inbox>,
    /// Client connections waiting for it to be ready (or to fail).
    waiters: Vec<usize>,
    idle_since: Instant,
    why_dead: Option<ConnFailure>,
    /// `send_proxy`: the PROXY header this connection opened with (the
    /// client it belongs to), and what of it is still to be written.
    private: Option<Box<Preface>>,
}

/// A stream's connection, as an exchange holds it: a slab index and the
/// connection's id (the slot may be reused by a later connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    idx: usize,
    id: u64,
}

/// What an exchange finds when it looks at its connection.
pub enum ConnState {
    Connecting,
    Ready,
    Failed(ConnFailure),
}

/// Why a shared connection failed, by the stage its log line names.
#[derive(Debug, Clone)]
pub enum ConnFailure {
    /// The TCP connection (or the PROXY header written on it).
    Connect(String),
    /// The TLS handshake, or an ALPN that did not pick h2.
    Handshake(String),
    /// Afterwards: the HTTP/2 connection itself ended.
    Ended(String),
}

impl ConnFailure {
    pub fn into_establish_error(self) -> EstablishError {
        match self {
            ConnFailure::Connect(why) | ConnFailure::Ended(why) => {
                EstablishError::Connect(std::io::Error::other(why))
            }
            ConnFailure::Handshake(why) => EstablishError::Handshake(std::io::Error::other(why)),
        }
    }
}

impl std::fmt::Display for ConnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnFailure::Connect(why) | ConnFailure::Handshake(why) | ConnFailure::Ended(why) => {
                f.write_str(why)
            }
        }
    }
}

#[derive(Default)]
pub struct H2Upstreams {
    conns: Slab<UpConn>,
    next_id: u64,
    /// Why the last few connections failed, by id: a connection that fails
    /// before it carries a stream is closed at once, and the requests
    /// waiting for it learn why from here (their error-log line names the
    /// certificate or ALPN failure, not "connection closed").
    recent_failures: VecDeque<(u64, ConnFailure)>,
}

/// How many closed connections' failure reasons are kept for their waiters.
const RECENT_FAILURES: usize = 64;

impl H2Upstreams {
    /// A connection to `server` of `upstream` that can take a stream now or
    /// once connected; None if a new one must be opened (`add`). One still
    /// connecting after `connect_timeout` is given up (`sweep` closes it).
    pub fn find(
        &self,
        (upstream, server): (usize, usize),
        private: Option<&Header>,
        now: Instant,
        connect_timeout: Duration,
    ) -> Option<ConnRef> {
        let mut pick = None;
        for idx in self.conns.keys() {
            let Some(c) = self.conns.get(idx) else {
                continue;
            };
            if c.upstream != upstream || c.server != server {
                continue;
            }
            // A connection that named a client serves that client only.
            if c.private.as_ref().map(|p| &p.header) != private {
                continue;
            }
            match c.phase {
                Phase::Ready if c.conn.can_open_stream() => {
                    return Some(ConnRef { idx, id: c.id });
                }
                // Wait for one being opened rather than open another: a
                // burst of requests must not open a connection each.
                Phase::Connecting { .. }
                    if now.saturating_duration_since(c.idle_since) < connect_timeout =>
                {
                    pick = Some(ConnRef { idx, id: c.id })
                }
                _ => {}
            }
        }
        pick
    }

    /// Takes a freshly opened socket as a new connection.
    /// `private`: the PROXY header it opens with (`send_proxy`), which
    /// makes it that client's only.
    pub fn add(
        &mut self,
        (upstream, server, private): (usize, usize, Option<Header>),
        sock: Stream,
        up_slot: usize,
        settings: h2::Settings,
        owners: &mut UpstreamOwners,
        now: Instant,
    ) -> ConnRef {
        if let Some(o) = owners.get_mut(up_slot) {
            *o = SHARED;
        }
        self.next_id += 1;
        let id = self.next_id;
        let idx = self.conns.insert(UpConn {
            id,
            upstream,
            server,
            sock,
            up_slot,
            phase: Phase::Connecting { connected: false },
            readable: false,
            writable: false,
            hup: false,
            conn: ClientConn::new(settings),
            input: None,
            streams: HashMap::new(),
            waiters: Vec::new(),
            idle_since: now,
            why_dead: None,
            private: private.map(|h| Box::new(Preface::new(h))),
        });
        ConnRef { idx, id }
    }

    fn get(&mut self, r: ConnRef) -> Option<&mut UpConn> {
        self.conns.get_mut(r.idx).filter(|c| c.id == r.id)
    }

    /// Why the connection died, if it did: the failure it died of, kept
    /// while it is open and a while after it is closed (else "connection
    /// closed"). None while it lives: a reset of one of its streams was
    /// the server's RST_STREAM.
    pub fn death(&self, r: ConnRef) -> Option<ConnFailure> {
        match self.conns.get(r.idx).filter(|c| c.id == r.id) {
            Some(c) if c.phase != Phase::Dead => None,
            _ => Some(self.why_failed(r)),
        }
    }

    /// The failure a dead (or closed) connection died of.
    fn why_failed(&self, r: ConnRef) -> ConnFailure {
        let open = self.conns.get(r.idx).filter(|c| c.id == r.id);
        let kept = match open {
            Some(c) => c.why_dead.clone(),
            None => self
                .recent_failures
                .iter()
                .find(|(id, _)| *id == r.id)
                .map(|(_, why)| why.clone()),
        };
        kept.unwrap_or_else(|| ConnFailure::Ended("connection closed".to_owned()))
    }

    /// Where the connection stands; a caller that waits is woken when that
    /// changes.
    pub fn state(&mut self, r: ConnRef, waiter: usize) -> ConnState {
        let Some(c) = self.get(r) else {
            return ConnState::Failed(self.why_failed(r));
        };
        match c.phase {
            Phase::Ready => ConnState::Ready,
            Phase::Dead => ConnState::Failed(self.why_failed(r)),
            Phase::Connecting { .. } => {
                if !c.waiters.contains(&waiter) {
                    c.waiters.push(waiter);
                }
                ConnState::Connecting
            }
        }
    }

    /// Opens a stream for `owner`'s exchange; None while the server's
    /// stream limit is reached (the caller waits and asks again).
    pub fn open(&mut self, r: ConnRef, head: &RequestHead, end: bool, owner: usize) -> Option<u32> {
        let c = self.get(r)?;
        if c.phase != Phase::Ready {
            return None;
        }
        let Some(stream) = c.conn.send_request(head, end) else {
            if !c.waiters.contains(&owner) {
                c.waiters.push(owner);
            }
            return None;
        };
        c.streams.insert(
            stream,
            Inbox {
                owner,
                events: VecDeque::new(),
            },
        );
        Some(stream)
    }

    pub fn capacity(&mut self, r: ConnRef, stream: u32) -> usize {
        self.get(r).map_or(0, |c| c.conn.send_capacity(stream))
    }

    pub fn send_data(&mut self, r: ConnRef, stream: u32, data: &[u8], end: bool) -> usize {
        self.get(r)
            .map_or(0, |c| c.conn.send_data(stream, data, end))
    }

    pub fn send_trailers(&mut self, r: ConnRef, stream: u32, fields: &[(&[u8], &[u8])]) {
        if let Some(c) = self.get(r) {
            c.conn.send_trailers(stream, fields);
        }
    }

    /// The next thing that arrived for `stream` (None: nothing yet).
    pub fn next_event(&mut self, r: ConnRef, stream: u32) -> Option<Event> {
        let c = self.get(r)?;
        let inbox = c.streams.get_mut(&stream)?;
        inbox.events.pop_front()
    }

    /// Puts back what the client could not take yet.
    pub fn unread(&mut self, r: ConnRef, stream: u32, ev: Event) {
        if let Some(inbox) = self.get(r).and_then(|c| c.streams.get_mut(&stream)) {
            inbox.events.push_front(ev);
        }
    }

    /// `n` response bytes reached the client: the server may send more.
    pub fn consumed(&mut self, r: ConnRef, stream: u32, n: usize) {
        if let Some(c) = self.get(r) {
            c.conn.consumed(stream, n);
        }
    }

    /// The exchange is over: a stream still open is cancelled.
    pub fn release(&mut self, r: ConnRef, stream: Option<u32>, now: Instant) {
        let Some(c) = self.get(r) else {
            return;
        };
        if let Some(stream) = stream {
            if c.streams.remove(&stream).is_some() {
                c.conn.reset(stream, h2::code::CANCEL);
            }
        }
        if c.streams.is_empty() {
            c.idle_since = now;
        }
    }

    /// The worker saw readiness on shared socket `up_slot`.
    pub fn on_socket_event(
        &mut self,
        up_slot: usize,
        r: bool,
        w: bool,
        hup: bool,
    ) -> Option<ConnRef> {
        let idx = self
            .conns
            .keys()
            .into_iter()
            .find(|&i| self.conns.get(i).is_some_and(|c| c.up_slot == up_slot))?;
        let c = self.conns.get_mut(idx)?;
        c.readable |= r;
        c.writable |= w;
        c.hup |= hup;
        Some(ConnRef { idx, id: c.id })
    }

    /// Moves bytes both ways on the connection: connect, handshake, write
    /// our frames, read the server's and sort them into the inboxes. The
    /// client connections with news are added to `wake`.
    pub fn pump(
        &mut self,
        r: ConnRef,
        bufs: &mut BufPool,
        owners: &mut UpstreamOwners,
        now: Instant,
        wake: &mut Vec<usize>,
    ) {
        let Some(c) = self.get(r) else {
            return;
        };
        if let Err(why) = c.pump(bufs, now, wake) {
            c.die(why, wake);
        }
        if c.phase == Phase::Dead && c.streams.is_empty() {
            self.close(r.idx, bufs, owners);
        }
    }

    fn close(&mut self, idx: usize, bufs: &mut BufPool, owners: &mut UpstreamOwners) {
        if let Some(mut c) = self.conns.remove(idx) {
            if let Some(why) = c.why_dead.take() {
                if self.recent_failures.len() == RECENT_FAILURES {
                    self.recent_failures.pop_front();
                }
                self.recent_failures.push_back((c.id, why));
            }
            owners.remove(c.up_slot);
            if let Some(b) = c.input.take() {
                bufs.put(b);
            }
        }
    }

    /// `shutdown sessions server`: the connections to any of `servers` are
    /// closed now (their streams' owners, if any are left, are woken and see
    /// the connection failed).
    pub fn close_servers(
        &mut self,
        servers: &[(usize, usize)],
        bufs: &mut BufPool,
        owners: &mut UpstreamOwners,
        wake: &mut Vec<usize>,
    ) {
        for idx in self.conns.keys() {
            let Some(c) = self
                .conns
                .get_mut(idx)
                .filter(|c| servers.contains(&(c.upstream, c.server)))
            else {
                continue;
            };
            c.die(
                ConnFailure::Ended("shutdown sessions of the server".into()),
                wake,
            );
            if c.streams.is_empty() {
                self.close(idx, bufs, owners);
            }
        }
    }

    /// Closes connections idle too long (GOAWAY first, as a courtesy).
    pub fn sweep(&mut self, bufs: &mut BufPool, owners: &mut UpstreamOwners, now: Instant) {
        for idx in self.conns.keys() {
            // Idle since (or connecting since) too long.
            let idle = self.conns.get_mut(idx).is_some_and(|c| {
                let limit = if c.private.is_some() {
                    PRIVATE_IDLE_TIMEOUT
                } else {
                    IDLE_TIMEOUT
                };
                c.streams.is_empty() && now.saturating_duration_since(c.idle_since) >= limit
            });
            if idle {
                if let Some(c) = self.conns.get_mut(idx) {
                    c.conn.go_away();
                    let _ = c.flush();
                }
                self.close(idx, bufs, owners);
            }
        }
    }
}

impl UpConn {
    fn pump(
        &mut self,
        bufs: &mut BufPool,
        now: Instant,
        wake: &mut Vec<usize>,
    ) -> Result<(), ConnFailure> {
        if let Phase::Connecting { connected } = &mut self.phase {
            if !self
                .sock
                .establish_with(
                    connected,
                    &mut self.readable,
                    &mut self.writable,
                    self.private.as_deref_mut(),
                )
                .map_err(|e| match e {
                    EstablishError::Connect(e) => ConnFailure::Connect(e.to_string()),
                    EstablishError::Handshake(e) => ConnFailure::Handshake(e.to_string()),
                })?
            {
                return Ok(());
            }
            if let Stream::Tls(t) = &self.sock {
                if t.alpn_protocol() != Some(b"h2") {
                    return Err(ConnFailure::Handshake(
                        "the server did not agree to HTTP/2 (ALPN h2)".into(),
                    ));
                }
            }
            self.phase = Phase::Ready;
            wake.append(&mut self.waiters);
        }
        if self.phase == Phase::Dead {
            return Ok(());
        }
        loop {
            // Output over its bound holds every stream's body back: when
            // it drains, all owners look.
            let output_full = !self.conn.wants_read();
            let wrote = match self.flush() {
                Ok(wrote) => wrote,
                Err(write_failed) => return Err(self.reason_to_read(bufs, now, write_failed)),
            };
            let read = self.read(bufs, now)?;
            let mut got = false;
            while let Some(ev) = self.conn.next_event() {
                got = true;
                let stream = match &ev {
                    Event::Response { stream, .. }
                    | Event::Interim { stream, .. }
                    | Event::Data { stream, .. }
                    | Event::Trailers { stream, .. }
                    | Event::Reset { stream }
                    | Event::Refused { stream } => *stream,
                };
                match self.streams.get_mut(&stream) {
                    Some(inbox) => {
                        wake.push(inbox.owner);
                        inbox.events.push_back(ev);
                    }
                    // Its exchange is gone: keep the connection window open.
                    None => {
                        if let Event::Data { data, .. } = &ev {
                            self.conn.consumed(stream, data.len());
                        }
                    }
                }
            }
            // A WINDOW_UPDATE makes no event, but a stream waiting to send
            // its body may go on now: its owner looks (every owner only
            // when the connection's window or the initial window grew).
            let (all, opened) = self.conn.windows_opened();
            if all || (wrote && output_full) {
                wake.extend(self.streams.values().map(|i| i.owner));
            } else {
                wake.extend(
                    opened
                        .iter()
                        .filter_map(|id| self.streams.get(id))
                        .map(|i| i.owner),
                );
            }
            if self.conn.can_open_stream() && !self.waiters.is_empty() {
                wake.append(&mut self.waiters);
            }
            if !(wrote || read || got) {
                break;
            }
        }
        let _ = self.sock.flush_queued(&mut self.writable);
        if self.conn.is_done() || self.conn.is_closing() {
            let why = self
                .conn
                .error()
                .unwrap_or("the server ended the connection");
            return Err(ConnFailure::Ended(why.to_owned()));
        }
        Ok(())
    }

    /// A server that refused us and closed makes our writes fail (EPIPE,
    /// ECONNRESET) while its reason may still be waiting to be read: a
    /// TLS 1.3 alert refusing our client certificate comes after our side
    /// of the handshake. What a last read fails with says why, if it fails.
    fn reason_to_read(
        &mut self,
        bufs: &mut BufPool,
        now: Instant,
        write_failed: ConnFailure,
    ) -> ConnFailure {
        self.readable = true;
        match self.read(bufs, now) {
            Err(read_failed) => read_failed,
            Ok(_) => write_failed,
        }
    }

    fn flush(&mut self) -> Result<bool, ConnFailure> {
        h2_wire::flush(&mut self.conn, &mut self.sock, &mut self.writable).map_err(why)
    }

    fn read(&mut self, bufs: &mut BufPool, now: Instant) -> Result<bool, ConnFailure> {
        let inbound = h2_wire::Inbound {
            sock: &mut self.sock,
            readable: &mut self.readable,
            hup: self.hup,
            input: &mut self.input,
        };
        h2_wire::read(&mut self.conn, inbound, bufs, now).map_err(why)
    }

    /// No more streams: each open one learns it was reset.
    fn die(&mut self, why: ConnFailure, wake: &mut Vec<usize>) {
        if self.phase != Phase::Dead {
            log::debug!("HTTP/2 upstream connection ends: {why}");
        }
        self.phase = Phase::Dead;
        self.why_dead = Some(why);
        wake.append(&mut self.waiters);
        for (&stream, inbox) in self.streams.iter_mut() {
            inbox.events.push_back(Event::Reset { stream });
            wake.push(inbox.owner);
        }
    }
}

/// Why a shared connection's socket ended, for its log line.
fn why(e: WireError) -> ConnFailure {
    ConnFailure::Ended(match e {
        WireError::Closed => "the server closed the connection".to_owned(),
        WireError::Failed(e) => format!("the connection failed: {e}"),
    })
}
