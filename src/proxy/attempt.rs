//! The servers one request uses: which it tried (retries never go back to
//! one), which it holds (its active count in shared memory, for leastconn
//! and `show stat`), and the upstream sockets it gets — the same for an
//! HTTP/1.1 connection's exchange and for an HTTP/2 stream's.

use super::env::Env;
use crate::balance::{hash_bytes, Pick, PickCtx};
use crate::event::token::upstream_token;
use crate::event::Stream;
use crate::http;
use crate::route::HashKey;
use crate::tls::TlsStream;
use mio::net::TcpStream;
use mio::Interest;
use std::net::SocketAddr;
use std::time::Instant;

/// Most servers one request may try: the first, then each retry.
pub const MAX_TRIES: usize = 1 + crate::config::MAX_RETRIES as usize;

/// A pick and its compare-exchange are retried this often when other
/// workers take the slot in between, before the request waits instead.
const RACE_TRIES: usize = 4;

/// What taking a server for a request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The request holds a slot on this server.
    Server(usize),
    /// Every usable server is full (or others wait already): the request
    /// waits, for server `bound` only if given (`balance: hash`).
    Wait { bound: Option<usize> },
    /// No server may take requests: 503.
    NoServer,
}

#[derive(Clone, Copy)]
pub struct Attempts {
    pub upstream: usize,
    /// The server of the current attempt.
    pub server: usize,
    tried: [usize; MAX_TRIES],
    ntried: usize,
    retries_left: u32,
    /// The server whose active count this request holds.
    active_on: Option<usize>,
    /// When the request was dispatched upstream (duration histogram).
    dispatched: Option<Instant>,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_started: Option<Instant>,
    /// Milestones for the server's time averages (`show stat` ctime,
    /// rtime, ttime), on `Env::now_ms`'s clock: the request dispatched, the
    /// current attempt's server chosen, its connection up (None on a reused
    /// one), its response head in.
    dispatched_ms: u64,
    attempt_ms: Option<u64>,
    connected_ms: Option<u64>,
    head_ms: Option<u64>,
    /// Milliseconds spent waiting in a queue for a server (HAProxy's qtime).
    pub queued_ms: u32,
}

impl Attempts {
    pub const fn new() -> Attempts {
        Attempts {
            upstream: 0,
            server: 0,
            tried: [0; MAX_TRIES],
            ntried: 0,
            retries_left: 0,
            active_on: None,
            dispatched: None,
            upstream_addr: None,
            upstream_started: None,
            dispatched_ms: 0,
            attempt_ms: None,
            connected_ms: None,
            head_ms: None,
            queued_ms: 0,
        }
    }

    /// The current attempt's connection is up (TCP and TLS).
    #[inline]
    pub fn connected(&mut self, now_ms: u64) {
        self.connected_ms = Some(now_ms);
    }

    /// The current attempt's response head arrived.
    #[inline]
    pub fn response_head(&mut self, now_ms: u64) {
        self.head_ms = Some(now_ms);
    }

    /// HAProxy's times of a request answered by its server, in ms (None
    /// if no response head came).
    fn timing(&self, now_ms: u64) -> Option<crate::shm::Timing> {
        let (attempt, head) = (self.attempt_ms?, self.head_ms?);
        let ms = |later: u64, earlier: u64| {
            u32::try_from(later.saturating_sub(earlier)).unwrap_or(u32::MAX)
        };
        let up = self.connected_ms.unwrap_or(attempt);
        Some(crate::shm::Timing {
            queue: self.queued_ms,
            connect: ms(up, attempt),
            response: ms(head, up),
            total: ms(now_ms, self.dispatched_ms),
        })
    }

    /// A request for upstream `u` is dispatched now.
    #[inline]
    pub fn begin(&mut self, env: &Env, u: usize) {
        self.upstream = u;
        // One session per request, ended in `release` (which `dispatched`
        // tells): the BACKEND row's `scur`, the queued included.
        if self.dispatched.replace(env.now).is_none() {
            env.shm.upstream(u).begin_session();
        }
        self.dispatched_ms = env.now_ms;
        self.retries_left = env.rt.upstreams[u].retries;
    }

    /// The first server, by the upstream's balancing (`key` for `hash`),
    /// with its slot taken — or why there is none. No server at all is
    /// logged and counted here, once for both protocols: the upstream's
    /// BACKEND row has the 503 the caller answers (`show stat`).
    #[inline]
    pub fn acquire_first(&self, env: &mut Env, key: Option<u64>) -> Acquired {
        let acquired = self.acquire(env, key, &[]);
        if let Acquired::NoServer = acquired {
            let u = self.upstream;
            log::error!(
                "no server available in upstream {}",
                env.rt.upstreams[u].name
            );
            env.shm.upstream(u).count_no_server();
        }
        acquired
    }

    /// After a failure that may be retried: the next server not tried yet,
    /// while retries remain; None when none remain. The slot held on the
    /// failed server is given back first, so a retry that waits holds
    /// nothing. A request that goes on (to a server, or to the queue for
    /// one) is a redispatch of the server it leaves, as HAProxy counts it.
    #[inline]
    pub fn acquire_retry(&mut self, env: &mut Env) -> Option<Acquired> {
        if self.retries_left == 0 {
            return None;
        }
        self.retries_left -= 1;
        self.drop_server(env);
        let next = self.acquire(env, None, &self.tried[..self.ntried]);
        if !matches!(next, Acquired::NoServer) {
            env.shm
                .server(self.upstream, self.server)
                .count_redispatch();
        }
        Some(next)
    }

    /// The server the request went to (an attempt was made), as
    /// `(upstream, server)`: `shutdown sessions server` cuts what is on it.
    pub fn server_used(&self) -> Option<(usize, usize)> {
        self.upstream_addr.map(|_| (self.upstream, self.server))
    }

    /// Servers tried so far (a retry that waits must avoid them too).
    pub fn tried(&self) -> &[usize] {
        &self.tried[..self.ntried]
    }

    /// A server by the upstream's balancing whose slot is free, taken
    /// atomically (`maxconn`: HAProxy's rule, a request goes to a server
    /// only below its limit). Requests already waiting go first: while any
    /// waits, a new request waits behind them rather than take a slot they
    /// wait for.
    fn acquire(&self, env: &mut Env, key: Option<u64>, excluded: &[usize]) -> Acquired {
        let u = self.upstream;
        let upstream = &env.rt.upstreams[u];
        let bound = key.is_some() && upstream.balance == crate::config::Balance::Hash;
        let others_wait = env.shm.upstream(u).queue().queued() > 0;
        for _ in 0..RACE_TRIES {
            let ctx = PickCtx::at(env.shm, u, key, env.now_ms);
            let s = match env.balancers[u].choose(&upstream.servers, &ctx, excluded) {
                Pick::Server(s) => s,
                Pick::Full => return Acquired::Wait { bound: None },
                Pick::NoServer => return Acquired::NoServer,
            };
            if bound {
                // Bound to its server: it waits there if that one is full.
                if env.shm.server(u, s).queued() > 0 || !env.shm.try_begin_request(env.slot, u, s) {
                    return Acquired::Wait { bound: Some(s) };
                }
            } else if others_wait {
                return Acquired::Wait { bound: None };
            } else if !env.shm.try_begin_request(env.slot, u, s) {
                // Another worker took the last slot since the pick.
                continue;
            }
            env.shm.server(u, s).count_selection();
            return Acquired::Server(s);
        }
        Acquired::Wait { bound: None }
    }

    /// The request goes to `server`, whose slot it has taken (`acquire`,
    /// or a waiter's grant): it holds the server's active count (a slot
    /// on a server tried before is given back) and counts as tried.
    #[inline]
    pub fn use_server(&mut self, env: &mut Env, server: usize) -> SocketAddr {
        let addr = env.rt.upstreams[self.upstream].servers[server].addr;
        self.server = server;
        self.hold_server(env, server);
        env.shm
            .server(self.upstream, server)
            .touch_session(env.date.unix_secs());
        self.upstream_addr = Some(addr);
        self.attempt_ms = Some(env.now_ms);
        self.connected_ms = None;
        self.head_ms = None;
        self.upstream_started.get_or_insert(env.now);
        if !self.tried[..self.ntried].contains(&server) && self.ntried < MAX_TRIES {
            if self.ntried > 0 {
                // A retry's attempt: the request is counted once in its
                // BACKEND row however many servers it tried.
                env.shm.upstream(self.upstream).count_reattempt();
            }
            self.tried[self.ntried] = server;
            self.ntried += 1;
        }
        addr
    }

    #[inline]
    fn hold_server(&mut self, env: &mut Env, server: usize) {
        if self.active_on == Some(server) {
            return;
        }
        self.drop_server(env);
        self.active_on = Some(server);
    }

    /// Gives back the slot this request holds, if any (waking waiters).
    #[inline]
    fn drop_server(&mut self, env: &mut Env) {
        if let Some(old) = self.active_on.take() {
            let bound_waiters = env.shm.end_request(env.slot, self.upstream, old);
            env.queues
                .slot_freed(env.shm, env.slot, self.upstream, bound_waiters);
        }
    }

    /// The request no longer occupies its server: settle the counters
    /// (bytes both ways, heads included) and the duration histogram.
    #[inline]
    pub fn release(&mut self, env: &mut Env, bytes_up: u64, bytes_down: u64) {
        if let Some(s) = self.active_on.take() {
            let bound_waiters = env.shm.end_request(env.slot, self.upstream, s);
            let sh = env.shm.server(self.upstream, s);
            sh.count_bytes(bytes_up, bytes_down);
            if let Some(t) = self.timing(env.now_ms) {
                sh.record_times(t);
            }
            env.queues
                .slot_freed(env.shm, env.slot, self.upstream, bound_waiters);
        }
        if let Some(t) = self.dispatched.take() {
            let d = env.now.saturating_duration_since(t);
            let i = crate::shm::duration_bucket(d);
            let upstream = env.shm.upstream(self.upstream);
            upstream.observe_in(i, d);
            upstream.end_sessions(1);
            // The server the request went to last (after retries).
            env.shm.server(self.upstream, self.server).observe_bucket(i);
        }
    }

    /// Passive detection: a connect failure or timeout on live traffic.
    /// `max_fails` in a row mark the server down for `fail_timeout`.
    pub fn note_failure(&self, env: &mut Env) {
        let up = &env.rt.upstreams[self.upstream];
        if up.max_fails == 0 {
            return;
        }
        let sh = env.shm.server(self.upstream, self.server);
        if let Some(fails) = sh.mark_failure(up.max_fails, up.fail_timeout_ms) {
            // Its last usable server marked: the backend goes DOWN.
            env.shm.observe_backend(self.upstream);
            log::warn!(
                "server {}/{} marked down for {}ms after {fails} consecutive failures",
                up.name,
                up.servers[self.server].name,
                up.fail_timeout_ms
            );
        }
    }

    /// `server/name` of the current attempt, for log lines.
    pub fn server_name<'e>(&self, env: &'e Env) -> (&'e str, &'e str) {
        let up = &env.rt.upstreams[self.upstream];
        (&up.name, &up.servers[self.server].name)
    }
}

/// Whether an attempt may take a pooled connection (see `upstream_socket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooled {
    /// A new connection only (a PROXY header, an HTTP/2 upstream...).
    No,
    /// The most recently pooled one, as it is.
    Any,
    /// One found still open when looked at: a request not sent twice.
    Checked,
}

pub struct UpstreamSocket {
    pub sock: Stream,
    pub up_slot: usize,
    pub reused: bool,
}

/// An upstream socket for the current attempt of `att`, owned by client
/// connection `owner`: an idle pooled one if `pooled` allows and one is
/// there (`reused` true), else a new connection registered under its own
/// token, with a TLS session on top if the upstream speaks HTTPS.
///
/// `Pooled::Checked`: for a request that cannot be sent twice, a pooled
/// connection is first looked at (one `recv(MSG_PEEK)`): the pool hears of
/// a server's close by an epoll event, and a request read in the same
/// batch as that event may otherwise get the closed connection. A request
/// that can be sent again needs no look: a stale connection only costs
/// it a second try on a fresh one.
#[inline]
pub fn upstream_socket(
    env: &mut Env,
    att: &Attempts,
    owner: usize,
    addr: SocketAddr,
    pooled: Pooled,
) -> std::io::Result<UpstreamSocket> {
    let mut idle = || match pooled {
        Pooled::No => None,
        Pooled::Any | Pooled::Checked => env.pool.checkout(att.upstream, att.server),
    };
    while let Some((mut sock, up_slot)) = idle() {
        if pooled == Pooled::Checked && !sock.idle_still_clean() {
            // Closed (or written to) by the server: dropped, which also
            // takes it out of epoll.
            env.up_owners.remove(up_slot);
            continue;
        }
        // Still registered under its own token: just claim it.
        if let Some(o) = env.up_owners.get_mut(up_slot) {
            *o = owner;
        }
        return Ok(UpstreamSocket {
            sock,
            up_slot,
            reused: true,
        });
    }
    let mut s = TcpStream::connect(addr)?;
    let _ = s.set_nodelay(true);
    let up_slot = env.up_owners.insert(owner);
    let upstream = &env.rt.upstreams[att.upstream];
    let stream = env
        .registry
        .register(
            &mut s,
            upstream_token(up_slot),
            Interest::READABLE | Interest::WRITABLE,
        )
        .and_then(|()| match &upstream.tls {
            None => Ok(Stream::Plain(s)),
            Some(cfg) => {
                let name = upstream.servers[att.server]
                    .tls_name
                    .clone()
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "no valid TLS server name (set tls.sni)",
                        )
                    })?;
                let tls = TlsStream::connect(s, std::sync::Arc::clone(cfg), name)?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        });
    match stream {
        Ok(sock) => Ok(UpstreamSocket {
            sock,
            up_slot,
            reused: false,
        }),
        Err(e) => {
            env.up_owners.remove(up_slot);
            Err(e)
        }
    }
}

/// Gives a socket whose response completed cleanly back to the pool (or
/// closes it when the pool is full).
#[inline]
pub fn pool_socket(env: &mut Env, att: &Attempts, sock: Stream, up_slot: usize) {
    if let Some(o) = env.up_owners.get_mut(up_slot) {
        *o = crate::event::token::POOLED;
    }
    if let Some(freed) = env
        .pool
        .checkin(att.upstream, att.server, sock, up_slot, env.now)
    {
        env.up_owners.remove(freed);
    }
}

/// The hash of a request's `hash_key`; `uri` is its normalized path
/// (nginx's `$uri`), so every spelling of a path goes to one server.
pub fn request_hash(
    peer: std::net::IpAddr,
    req: &httparse::Request,
    path: &[u8],
    key: &HashKey,
) -> Option<u64> {
    match key {
        HashKey::Source => Some(match peer {
            std::net::IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        }),
        HashKey::Uri => Some(hash_bytes(path)),
        HashKey::Header(name) => req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| hash_bytes(http::trim_ows(h.value))),
        HashKey::Cookie(name) => req
            .headers
            .iter()
            .filter(|h| http::name_is(h.name, "cookie"))
            .flat_map(|h| h.value.split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = http::trim_ows(pair);
                let eq = pair.iter().position(|&b| b == b'=')?;
                (pair[..eq] == *name.as_bytes()).then(|| hash_bytes(&pair[eq + 1..]))
            }),
    }
}
