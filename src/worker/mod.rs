//! A worker process: its own mio `Poll` (created after fork), the shared
//! listening sockets registered with EPOLLEXCLUSIVE, a slab of connections,
//! and a deadline heap. Runs until the master tells it to stop.
//!
//! Signals: TERM/INT exit at once, QUIT drains (stop accepting, close idle
//! connections, finish in-flight requests with `Connection: close`, exit when
//! none are left or at `shutdown_timeout`, cutting what is still open through
//! the normal close path, so it is logged and counted), USR1 reopens the logs. If the
//! master disappears (its end of our channel closes) the worker drains too.

mod accept_balance;
mod timers;

use crate::access_log::{self, AccessLog};
use crate::balance::Balancer;
use crate::buffer::{BufPool, VecPool};
use crate::event::token::{
    self, TokenKind, UpstreamOwners, CHANNEL_TOKEN, POOLED, QUEUE_TOKEN, SIGNAL_TOKEN,
};
use crate::event::{Slab, Stream};
use crate::http::date::DateCache;
use crate::net;
use crate::proxy::{Client, Conn, Env, H2Upstreams, Outcome, Pool, Queues, Side, SHARED};
use crate::route::Runtime;
use crate::shm::AcceptState;
use crate::signals::{self, SignalSet};
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use timers::Timers;

/// Pooled upstream connections idle longer than this are closed (servers
/// commonly close idle keep-alive connections after 60-75 s).
const POOL_MAX_IDLE: Duration = Duration::from_secs(50);
const POOL_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// After EMFILE/ENFILE, accepting pauses this long instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections accepted per listener event at most. The listener is
/// level-triggered, so the rest are seen at the next `epoll_wait` — and
/// meanwhile other workers are woken for them (HAProxy's `tune.maxaccept`).
const ACCEPT_BATCH: usize = 4;

/// Most 256 KiB bulk-body buffers one worker lends at once (16 MiB), so
/// many simultaneous downloads cannot grow memory without bound.
const LARGE_BUFS_PER_WORKER: usize = 64;

/// A listening socket inherited from the master, and the index of its
/// listener in the configuration.
/// The master's word on a worker's channel: a listener was disabled or
/// enabled over the runtime API (the flags are in shared memory).
pub const LISTENERS_CHANGED: u8 = b'L';

/// The master's word on a worker's channel: `shutdown sessions server` was
/// asked for a server (its `shutdown_seq` in shared memory moved).
pub const SHUTDOWN_SESSIONS: u8 = b'K';

/// A worker's word on its channel to the master: a dashboard change
/// altered runtime state (the master rewrites the state file, as after the
/// same command on the admin socket).
pub const STATE_CHANGED: u8 = b'S';

pub struct WorkerListener {
    pub socket: TcpListener,
    pub listener: usize,
}

/// Everything a worker starts with.
pub struct WorkerSetup {
    pub slot: usize,
    pub runtime: Runtime,
    pub listeners: Vec<WorkerListener>,
    /// The worker's end of its channel to the master.
    pub channel: std::os::unix::net::UnixStream,
    pub access_log: AccessLog,
    /// State shared by every process of this generation.
    pub shm: std::sync::Arc<crate::shm::Shm>,
}

struct Worker {
    poll: Poll,
    rt: Runtime,
    listeners: Vec<WorkerListener>,
    /// Listeners are in the epoll set (not paused, not draining).
    accepting: bool,
    accept_resume_at: Option<Instant>,
    /// Stepped aside: clearly more connections than another worker.
    balance_paused: bool,
    next_heartbeat: Instant,
    conns: Slab<Client>,
    timers: Timers,
    bufs: BufPool,
    heads: VecPool,
    balancers: Vec<Balancer>,
    pool: Pool,
    /// Upstream socket slot → owning connection slot (or POOLED).
    up_owners: UpstreamOwners,
    next_sweep: Instant,
    access: AccessLog,
    next_access_flush: Instant,
    shm: std::sync::Arc<crate::shm::Shm>,
    slot: usize,
    signals: SignalSet,
    channel: UnixStream,
    next_conn_id: u64,
    drain_deadline: Option<Instant>,
    /// The `Date` of the responses this worker sends.
    date: DateCache,
    /// HTTP/2 connections to upstreams, shared by all client connections.
    h2up: H2Upstreams,
    /// Client connections to drive because a shared upstream connection
    /// has news for them.
    wake: Vec<usize>,
    /// A dashboard change to tell the master about (`STATE_CHANGED`).
    state_changed: bool,
    /// Per upstream, per server: the `shutdown_seq` last acted on.
    shutdown_seen: Vec<Vec<u32>>,
    /// `shm::monotonic_ms()` at the current round of events (`Env::now_ms`).
    now_ms: u64,
    /// Open connections when `balance_accepting` last weighed them.
    balanced_conns: usize,
    /// Requests waiting for a server slot (`maxconn`).
    queues: Queues,
}

/// Runs the worker until it is told to stop (Ok) or cannot go on (Err).
pub fn run(setup: WorkerSetup) -> io::Result<()> {
    let run = |mut w: Worker| {
        let result = w.run();
        // Peers must not wait for an exiting worker to take connections.
        w.accepting = false;
        w.balance_paused = false;
        w.publish_accepting();
        result
    };
    Worker::new(setup).and_then(run)
}

impl Worker {
    fn new(setup: WorkerSetup) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let mut signals = SignalSet::new(&[
            signals::SIGTERM,
            signals::SIGINT,
            signals::SIGQUIT,
            signals::SIGUSR1,
            signals::SIGHUP,
            signals::SIGWINCH,
            signals::SIGUSR2,
        ])?;
        signals.register(poll.registry(), SIGNAL_TOKEN)?;
        setup.channel.set_nonblocking(true)?;
        let mut channel = UnixStream::from_std(setup.channel);
        poll.registry()
            .register(&mut channel, CHANNEL_TOKEN, Interest::READABLE)?;
        // Other processes write our eventfd when a slot our queued requests
        // wait for frees.
        if let Some(fd) = setup.shm.wakers().fd(setup.slot) {
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                QUEUE_TOKEN,
                Interest::READABLE,
            )?;
        }
        for (i, l) in setup.listeners.iter().enumerate() {
            if !setup.shm.listener_disabled(l.listener) {
                net::register_exclusive(poll.as_raw_fd(), &l.socket, i)?;
            }
        }
        // A buffer holds a request head with room to spare, and at least a
        // whole HTTP/2 frame of the largest size we allow (SETTINGS_MAX_
        // FRAME_SIZE, 16 KiB, plus its header): a frame that cannot fit
        // would never complete, and its connection would stall.
        let h2_frame = crate::h2::frame::MIN_MAX_FRAME as usize + crate::h2::frame::HEADER_LEN;
        let buf_size = (setup.runtime.max_header_bytes + 4096)
            .max(16 * 1024)
            .max(h2_frame);
        let balancers = setup
            .runtime
            .upstreams
            .iter()
            .map(|u| Balancer::new(u.balance, u.servers.len()))
            .collect();
        let pool = Pool::new(
            setup
                .runtime
                .upstreams
                .iter()
                .map(|u| u.keepalive)
                .collect(),
            POOL_MAX_IDLE,
        );
        Ok(Worker {
            poll,
            pool,
            up_owners: Slab::new(),
            next_sweep: Instant::now() + POOL_SWEEP_EVERY,
            access: setup.access_log,
            shm: setup.shm,
            slot: setup.slot,
            next_access_flush: Instant::now() + access_log::FLUSH_EVERY,
            listeners: setup.listeners,
            accepting: true,
            accept_resume_at: None,
            balance_paused: false,
            next_heartbeat: Instant::now(),
            conns: Slab::new(),
            timers: Timers::default(),
            bufs: BufPool::new(buf_size, 1024, LARGE_BUFS_PER_WORKER),
            heads: VecPool::new(1024, 1024),
            balancers,
            signals,
            channel,
            next_conn_id: 1,
            drain_deadline: None,
            date: DateCache::new(Instant::now()),
            h2up: H2Upstreams::default(),
            shutdown_seen: Vec::new(),
            now_ms: crate::shm::monotonic_ms(),
            balanced_conns: usize::MAX,
            wake: Vec::new(),
            state_changed: false,
            queues: Queues::new(setup.runtime.upstreams.len()),
            rt: setup.runtime,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        // This process's half of its `$request_id`s (drawn after the fork).
        crate::http::request_id::seed();
        let predecessor = self.shm.worker(self.slot).set_pid(std::process::id());
        if predecessor != 0 {
            // What the worker this one replaces (dead) left behind: its
            // waiters' count, the slots its requests held. (Only then: the
            // scan touches a counter per server.)
            for u in 0..self.rt.upstreams.len() {
                let upstream = self.shm.upstream(u);
                let left = self.shm.worker_queue(self.slot, u).reset(upstream.queue());
                upstream.end_sessions(left);
            }
            for u in self.shm.reclaim_slots(self.slot) {
                self.shm.wake_waiters(u);
            }
        }
        self.publish_accepting();
        self.balance_accepting(Instant::now());
        // Shutdowns asked for before this worker started are not its to do.
        self.servers_to_cut();
        // Tell the master we are ready to serve.
        let _ = self.channel.write(b"R");
        let mut events = Events::with_capacity(1024);
        loop {
            if std::mem::take(&mut self.state_changed) {
                // Best effort, as the master's words to us: a full channel
                // holds an unread byte that says the same.
                let _ = self.channel.write(&[STATE_CHANGED]);
            }
            let now = Instant::now();
            let timeout = self.next_wakeup().map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.date.refresh(now);
            self.now_ms = crate::shm::monotonic_ms();
            for ev in events.iter() {
                match ev.token() {
                    SIGNAL_TOKEN => {
                        self.signals.drain_wakeups();
                        if self.signals.take(signals::SIGTERM) || self.signals.take(signals::SIGINT)
                        {
                            log::info!("exiting");
                            return Ok(());
                        }
                        if self.signals.take(signals::SIGQUIT) {
                            self.start_drain(now, "graceful shutdown");
                        }
                        if self.signals.take(signals::SIGUSR1) {
                            if let Err(e) = crate::log::reopen() {
                                log::error!("cannot reopen the error log: {e}");
                            }
                            self.access.reopen();
                        }
                    }
                    CHANNEL_TOKEN => self.read_channel(now),
                    QUEUE_TOKEN => self.queues.woken(&self.shm, self.slot),
                    Token(t) if t < self.listeners.len() => self.accept(t, now),
                    token => self.conn_event(token, ev, now),
                }
            }
            let now = Instant::now();
            self.expire(now);
            self.run_woken(now);
            self.serve_queues(now);
            self.resume_accepting(now);
            self.balance_accepting(now);
            if now >= self.next_sweep {
                for slot in self.pool.sweep(now) {
                    self.up_owners.remove(slot);
                }
                self.h2up.sweep(&mut self.bufs, &mut self.up_owners, now);
                self.next_sweep = now + POOL_SWEEP_EVERY;
            }
            if now >= self.next_access_flush {
                self.access.flush();
                self.next_access_flush = now + access_log::FLUSH_EVERY;
            }
            if let Some(deadline) = self.drain_deadline {
                self.close_idle(now);
                if self.conns.is_empty() {
                    log::info!("drained, exiting");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    log::warn!(
                        "shutdown timeout: closing {} open connection(s)",
                        self.conns.len()
                    );
                    self.cut_all(Instant::now());
                    return Ok(());
                }
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if self.queues.has_due() {
            return Some(Instant::now());
        }
        [
            self.timers.next(),
            self.accept_resume_at,
            self.drain_deadline,
            Some(self.next_sweep),
            Some(self.next_heartbeat),
            self.access.has_pending().then_some(self.next_access_flush),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn env(&mut self, now: Instant) -> Env<'_> {
        Env {
            rt: &self.rt,
            registry: self.poll.registry(),
            bufs: &mut self.bufs,
            heads: &mut self.heads,
            balancers: &mut self.balancers,
            pool: &mut self.pool,
            up_owners: &mut self.up_owners,
            access: &mut self.access,
            shm: &self.shm,
            slot: self.slot,
            now,
            now_ms: self.now_ms,
            date: &self.date,
            draining: self.drain_deadline.is_some(),
            h2up: &mut self.h2up,
            wake: &mut self.wake,
            queues: &mut self.queues,
            state_changed: &mut self.state_changed,
        }
    }

    /// Queued requests whose slot may be free now take it, and their
    /// connections run (which may free more: a few rounds, bounded; what
    /// is left is due at once after the next poll).
    #[inline]
    fn serve_queues(&mut self, now: Instant) {
        for _ in 0..4 {
            if !self.queues.has_due() {
                return;
            }
            self.queues.serve_due(
                &self.shm,
                self.slot,
                &self.rt,
                &mut self.balancers,
                &mut self.wake,
            );
            self.run_woken(now);
        }
    }

    fn read_channel(&mut self, now: Instant) {
        let mut buf = [0u8; 64];
        loop {
            match self.channel.read(&mut buf) {
                Ok(0) => {
                    // The master is gone: nobody will ever tell us to stop.
                    log::warn!("master exited, shutting down gracefully");
                    let _ = self.poll.registry().deregister(&mut self.channel);
                    self.start_drain(now, "master gone");
                    return;
                }
                Ok(n) => {
                    if buf[..n].contains(&b'Q') {
                        self.start_drain(now, "graceful shutdown");
                    }
                    if buf[..n].contains(&LISTENERS_CHANGED) {
                        self.apply_listener_flags();
                    }
                    if buf[..n].contains(&SHUTDOWN_SESSIONS) {
                        self.shutdown_sessions(now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// The servers whose `shutdown_seq` moved since last seen (all of
    /// them are recorded as seen now).
    fn servers_to_cut(&mut self) -> Vec<(usize, usize)> {
        let shm = &self.shm;
        self.shutdown_seen
            .resize_with(shm.upstream_count(), Vec::new);
        let mut cut = Vec::new();
        for (u, seen) in self.shutdown_seen.iter_mut().enumerate() {
            seen.resize(shm.servers_of(u), 0);
            for (s, last) in seen.iter_mut().enumerate() {
                let now = shm.server(u, s).shutdown_seq();
                if *last != now {
                    *last = now;
                    cut.push((u, s));
                }
            }
        }
        cut
    }

    /// `shutdown sessions server`: every connection to the servers named
    /// cuts now — client connections (or HTTP/2 streams) with a request or
    /// tunnel on them, idle pooled connections, shared HTTP/2 connections.
    fn shutdown_sessions(&mut self, now: Instant) {
        let servers = self.servers_to_cut();
        if servers.is_empty() {
            return;
        }
        for slot in self.pool.drop_servers(&servers) {
            self.up_owners.remove(slot);
        }
        for slot in self.conns.keys() {
            self.run_conn(slot, now, |conn, env| conn.cut_sessions_on(&servers, env));
        }
        self.h2up.close_servers(
            &servers,
            &mut self.bufs,
            &mut self.up_owners,
            &mut self.wake,
        );
        self.run_woken(now);
    }

    fn start_drain(&mut self, now: Instant, why: &str) {
        if self.drain_deadline.is_some() {
            return;
        }
        log::info!("{why}: draining {} connection(s)", self.conns.len());
        self.drain_deadline = Some(now + self.rt.shutdown_timeout);
        self.pause_accepting();
        // Our copies of the listening sockets are no longer needed; the
        // master keeps its own.
        self.listeners.clear();
        self.accept_resume_at = None;
        self.balance_paused = false;
        self.publish_accepting();
    }

    /// At `shutdown_timeout`: every connection still open closes through
    /// its normal close path, so each exchange it carries gets its access
    /// log line and its counters settle (nginx logs the requests its
    /// `worker_shutdown_timeout` cuts, too). The log is flushed at exit.
    fn cut_all(&mut self, now: Instant) {
        for slot in self.conns.keys() {
            self.run_conn(slot, now, |conn, env| conn.cut_at_shutdown(env));
        }
    }

    fn close_idle(&mut self, now: Instant) {
        for slot in self.conns.keys() {
            if self.conns.get_mut(slot).is_some_and(|c| c.is_idle()) {
                self.run_conn(slot, now, |conn, env| conn.close_if_idle(env));
            }
        }
    }

    /// A listener was disabled or enabled over the runtime API: while we
    /// accept, our epoll set follows the flags (re-registering one that is
    /// in it already is harmless: `register_exclusive` then fails with
    /// EEXIST, which is ignored).
    fn apply_listener_flags(&mut self) {
        if !self.accepting {
            return;
        }
        let epfd = self.poll.as_raw_fd();
        for (i, l) in self.listeners.iter().enumerate() {
            if self.shm.listener_disabled(l.listener) {
                let _ = net::deregister(epfd, &l.socket);
            } else {
                let _ = net::register_exclusive(epfd, &l.socket, i);
            }
        }
    }

    fn pause_accepting(&mut self) {
        if self.accepting {
            let epfd = self.poll.as_raw_fd();
            for l in &self.listeners {
                if !self.shm.listener_disabled(l.listener) {
                    let _ = net::deregister(epfd, &l.socket);
                }
            }
            self.accepting = false;
            self.publish_accepting();
        }
    }

    fn publish_accepting(&self) {
        let state = match (self.accepting, self.balance_paused) {
            (true, _) => AcceptState::Accepting,
            (false, true) if self.drain_deadline.is_none() => AcceptState::SteppedAside,
            (false, _) => AcceptState::NotAccepting,
        };
        self.shm.worker(self.slot).set_accepting(state);
    }

    /// Publishes the heartbeat and steps aside from accepting while this
    /// worker holds clearly more connections than another (see
    /// `accept_balance`), or comes back.
    fn balance_accepting(&mut self, now: Instant) {
        let mine = self.conns.len();
        // Nothing new to weigh: the same number of connections as at the
        // last look, and no heartbeat (or recheck while stepped aside) due.
        // A round of keep-alive traffic then costs nothing here.
        if mine == self.balanced_conns && now < self.next_heartbeat {
            return;
        }
        self.balanced_conns = mine;
        let now_ms = self.now_ms;
        self.shm.worker(self.slot).heartbeat(now_ms);
        if self.drain_deadline.is_some() || self.accept_resume_at.is_some() {
            return;
        }
        let least = accept_balance::least_loaded_peer(&self.shm, self.slot, now_ms);
        if self.accepting && accept_balance::should_step_aside(mine, least) {
            log::debug!("{mine} connections, a peer has {least:?}: stepping aside from accepting");
            self.balance_paused = true;
            self.pause_accepting();
        } else if self.balance_paused && accept_balance::may_return(mine, least) {
            log::debug!("{mine} connections, least loaded peer {least:?}: accepting again");
            self.balance_paused = false;
            self.resume_accepting(now);
        }
        self.next_heartbeat = now
            + if self.balance_paused {
                accept_balance::RECHECK
            } else {
                accept_balance::HEARTBEAT
            };
    }

    fn resume_accepting(&mut self, now: Instant) {
        if self.accepting || self.drain_deadline.is_some() || self.balance_paused {
            return;
        }
        if self.accept_resume_at.is_some_and(|t| now < t) {
            return;
        }
        if self.conns.len() >= self.rt.worker_connections {
            return;
        }
        let epfd = self.poll.as_raw_fd();
        for (i, l) in self.listeners.iter().enumerate() {
            if self.shm.listener_disabled(l.listener) {
                continue;
            }
            if let Err(e) = net::register_exclusive(epfd, &l.socket, i) {
                log::error!("cannot resume accepting: {e}");
            }
        }
        self.accepting = true;
        self.accept_resume_at = None;
        self.publish_accepting();
    }

    fn accept(&mut self, index: usize, now: Instant) {
        // An event still queued for a listener disabled meanwhile.
        if self
            .listeners
            .get(index)
            .is_some_and(|l| self.shm.listener_disabled(l.listener))
        {
            return;
        }
        self.shm.worker(self.slot).count_accept_wakeup();
        for _ in 0..ACCEPT_BATCH {
            if self.conns.len() >= self.rt.worker_connections {
                log::warn!(
                    "{} worker_connections are not enough, pausing accept",
                    self.rt.worker_connections
                );
                self.pause_accepting();
                return;
            }
            let Some(l) = self.listeners.get(index) else {
                return;
            };
            let listener = l.listener;
            match net::accept(&l.socket) {
                Ok((stream, peer)) => self.add_conn(stream, peer, listener, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    log::error!("accept() failed: {e}; pausing accept for {ACCEPT_BACKOFF:?}");
                    self.pause_accepting();
                    self.accept_resume_at = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => {
                    log::debug!("accept() failed: {e}");
                    continue;
                }
            }
        }
    }

    fn add_conn(
        &mut self,
        stream: mio::net::TcpStream,
        peer: std::net::SocketAddr,
        listener: usize,
        now: Instant,
    ) {
        let stream = match self.rt.listeners.get(listener).and_then(|l| l.tls.as_ref()) {
            None => Stream::Plain(stream),
            Some(cfg) => match crate::tls::TlsStream::accept(stream, std::sync::Arc::clone(cfg)) {
                Ok(tls) => Stream::Tls(Box::new(tls)),
                Err(e) => {
                    log::error!("cannot start a TLS session with {peer}: {e}");
                    return;
                }
            },
        };
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        // The slot is only known after insertion; build, insert, then register.
        let slot = {
            let env = self.env(now);
            let conn = Conn::new(id, usize::MAX, stream, peer, listener, &env);
            self.conns.insert(Client::H1(conn))
        };
        self.shm.worker(self.slot).connection_opened();
        self.shm.listener_opened(self.slot, listener);
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.set_slot(slot);
        let Some(sock) = conn.client_mut() else {
            return;
        };
        if let Err(e) = self.poll.registry().register(
            sock,
            token::client_token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("cannot register a client connection: {e}");
            self.close(slot);
            return;
        }
        self.run_conn(slot, now, |conn, env| conn.drive(env));
    }

    fn conn_event(&mut self, token: Token, ev: &mio::event::Event, now: Instant) {
        match token::token_kind(token) {
            Some(TokenKind::Client(slot)) => {
                self.run_conn(slot, now, |conn, env| conn.on_event(Side::Client, ev, env));
            }
            Some(TokenKind::Upstream(up_slot)) => match self.up_owners.get(up_slot) {
                // An idle pooled connection had an event: the server closed
                // it or sent something unasked, and it cannot be reused —
                // unless it has nothing to read (an event left over from its
                // last response) or only TLS housekeeping (a session ticket).
                Some(&POOLED)
                    if self
                        .pool
                        .get_mut(up_slot)
                        .is_some_and(|s| s.idle_still_clean()) => {}
                Some(&POOLED) if self.pool.remove(up_slot) => {
                    self.up_owners.remove(up_slot);
                }
                Some(&POOLED) => {}
                Some(&SHARED) => self.shared_upstream_event(up_slot, ev, now),
                Some(&slot) => {
                    self.run_conn(slot, now, |conn, env| {
                        conn.on_event(Side::Upstream(up_slot), ev, env)
                    });
                }
                // A stale event for a socket closed earlier in this batch.
                None => {}
            },
            None => {}
        }
    }

    /// Readiness on a shared HTTP/2 upstream connection: it moves bytes,
    /// and the client connections whose streams got news run.
    fn shared_upstream_event(&mut self, up_slot: usize, ev: &mio::event::Event, now: Instant) {
        let (r, w, hup) = crate::event::readiness(ev);
        if let Some(c) = self.h2up.on_socket_event(up_slot, r, w, hup) {
            self.h2up
                .pump(c, &mut self.bufs, &mut self.up_owners, now, &mut self.wake);
        }
        self.run_woken(now);
    }

    /// Drives the client connections named in `wake` (each once per round;
    /// driving them may name more, so a few rounds, bounded).
    #[inline]
    fn run_woken(&mut self, now: Instant) {
        if self.wake.is_empty() {
            return;
        }
        self.run_woken_rounds(now);
    }

    #[cold]
    fn run_woken_rounds(&mut self, now: Instant) {
        for _ in 0..8 {
            if self.wake.is_empty() {
                return;
            }
            let mut woken = std::mem::take(&mut self.wake);
            woken.sort_unstable();
            woken.dedup();
            for slot in woken.drain(..) {
                self.run_conn(slot, now, |conn, env| conn.drive(env));
            }
            if self.wake.is_empty() {
                self.wake = woken;
            }
        }
    }

    /// Runs `f` on the connection in `slot`, then closes it or re-arms its
    /// timer as the outcome says.
    fn run_conn(
        &mut self,
        slot: usize,
        now: Instant,
        f: impl FnOnce(&mut Client, &mut Env) -> Outcome,
    ) {
        let Worker {
            conns,
            rt,
            poll,
            bufs,
            heads,
            balancers,
            pool,
            up_owners,
            access,
            timers,
            drain_deadline,
            shm,
            slot: worker_slot,
            date,
            h2up,
            wake,
            now_ms,
            queues,
            state_changed,
            ..
        } = &mut *self;
        let Some(conn) = conns.get_mut(slot) else {
            return;
        };
        let mut env = Env {
            rt,
            registry: poll.registry(),
            bufs,
            heads,
            balancers,
            pool,
            up_owners,
            access,
            shm,
            slot: *worker_slot,
            now,
            now_ms: *now_ms,
            date,
            draining: drain_deadline.is_some(),
            h2up,
            wake,
            queues,
            state_changed,
        };
        match f(conn, &mut env) {
            Outcome::Close | Outcome::Http2 => self.close(slot),
            Outcome::Keep => {
                let (deadline, id) = (conn.deadline(), conn.id());
                if let Some(at) = conn.timer_at() {
                    if at.is_none_or(|t| deadline < t) {
                        timers.schedule(deadline, slot, id);
                        *at = Some(deadline);
                    }
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((slot, id)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if conn.id() != id {
                continue;
            }
            let deadline = conn.deadline();
            let Some(at) = conn.timer_at() else {
                continue;
            };
            *at = None;
            if deadline > now {
                // The deadline moved later since this entry was queued.
                self.timers.schedule(deadline, slot, id);
                *at = Some(deadline);
                continue;
            }
            self.run_conn(slot, now, |conn, env| conn.on_timeout(env));
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns.remove(slot) {
            self.shm.worker(self.slot).connection_closed();
            if let Some(l) = conn.listener() {
                self.shm.listener_closed(l);
            }
            if let Some(sock) = conn.client_mut() {
                let _ = self.poll.registry().deregister(sock);
            }
            let mut env = self.env(Instant::now());
            conn.release(&mut env);
        }
    }
}
