//! The harness's event loop, a miniature of `worker::Worker`'s: events
//! of the proxy's sockets go to the connection, the scripted ends are read
//! on every turn, and the connection's deadline runs its timeout. Sends
//! wait for the proxy to have read the bytes; every wait has a deadline.

use super::peer::{self, Peer};
use super::{side_name, Harness, FIRST_UPSTREAM_PEER, IDLE, WAIT};
use crate::event::token::{self, TokenKind, POOLED};
use crate::proxy::{Conn, Env, Outcome, Side};
use mio::{Events, Interest, Token};
use std::io;
use std::time::{Duration, Instant};

impl Harness {
    /// Writes all of `bytes` from the client (`None`) or upstream peer `i`,
    /// then waits until the proxy read them.
    pub(super) fn send(&mut self, upstream: Option<usize>, bytes: &[u8]) {
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
    pub(super) fn settle(&mut self) {
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
    pub(super) fn run_until(&mut self, what: &str, mut done: impl FnMut(&mut Harness) -> bool) {
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
    pub(super) fn turn(&mut self, timeout: Option<Duration>) -> usize {
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
                    self.run_conn(now, |conn, env| conn.on_event(Side::Upstream(0), ev, env));
                }
            },
            None => {}
        }
    }

    /// Runs `f` on the connection; closes it as `Worker::close` does if the
    /// outcome says so.
    pub(super) fn run_conn(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Conn, &mut Env) -> Outcome,
    ) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let outcome = {
            let mut env = self.env(now);
            f(&mut conn, &mut env)
        };
        match outcome {
            Outcome::Keep => self.conn = Some(conn),
            Outcome::Close | Outcome::Http2 => {
                let _ = self.poll.registry().deregister(conn.client_mut());
                let mut env = self.env(now);
                conn.release(&mut env);
            }
        }
    }

    pub(super) fn env(&mut self, now: Instant) -> Env<'_> {
        let p = &mut self.parts;
        Env {
            rt: &p.rt,
            registry: self.poll.registry(),
            bufs: &mut p.bufs,
            heads: &mut p.heads,
            balancers: &mut p.balancers,
            pool: &mut p.pool,
            up_owners: &mut p.up_owners,
            access: &mut p.access,
            shm: &p.shm,
            slot: 0,
            now,
            now_ms: crate::shm::monotonic_ms(),
            date: &p.date,
            draining: false,
            h2up: &mut p.h2up,
            wake: &mut p.wake,
            state_changed: &mut p.state_changed,
            queues: &mut p.queues,
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

    pub(super) fn pump_peers(&mut self) {
        self.client.pump();
        for p in &mut self.upstreams {
            p.pump();
        }
    }
}
