//! A client connection as the worker holds it: HTTP/1.1 (`Conn`) until the
//! client's first bytes are the HTTP/2 preface where HTTP/2 is allowed, then
//! an `H2Session` on the same socket, token and slot. The worker sees only
//! `Keep` or `Close`.

use super::conn::Conn;
use super::env::{Env, Outcome};
use super::h2_session::H2Session;
use super::Side;
use mio::net::TcpStream;
use std::time::Instant;

// HTTP/1.1 connections are the common case: inline in the slab, no
// allocation per connection; an HTTP/2 session is large and boxed.
#[allow(clippy::large_enum_variant)]
pub enum Client {
    H1(Conn),
    H2(Box<H2Session>),
    /// Only while the transport changes hands (never seen by the worker).
    Switching,
}

impl Client {
    #[inline]
    pub fn id(&self) -> u64 {
        match self {
            Client::H1(c) => c.id,
            Client::H2(s) => s.id,
            Client::Switching => 0,
        }
    }

    #[inline]
    pub fn deadline(&self) -> Instant {
        match self {
            Client::H1(c) => c.deadline,
            Client::H2(s) => s.deadline,
            Client::Switching => Instant::now(),
        }
    }

    /// The instant a timer entry is queued for, if any (worker::timers).
    #[inline]
    pub fn timer_at(&mut self) -> Option<&mut Option<Instant>> {
        match self {
            Client::H1(c) => Some(&mut c.timer_at),
            Client::H2(s) => Some(&mut s.timer_at),
            Client::Switching => None,
        }
    }

    pub fn set_slot(&mut self, slot: usize) {
        if let Client::H1(c) = self {
            c.set_slot(slot);
        }
    }

    /// The client socket, for (de)registration.
    pub fn client_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Client::H1(c) => Some(c.client_mut()),
            Client::H2(s) => Some(s.client_mut()),
            Client::Switching => None,
        }
    }

    /// The listener the connection came in on (none only mid-switch).
    pub fn listener(&self) -> Option<usize> {
        match self {
            Client::H1(c) => Some(c.listener()),
            Client::H2(s) => Some(s.listener()),
            Client::Switching => None,
        }
    }

    /// Worth telling to finish when the worker drains: an idle HTTP/1.1
    /// keep-alive connection, or any HTTP/2 connection (it sends GOAWAY
    /// and lets its streams finish).
    pub fn is_idle(&self) -> bool {
        match self {
            Client::H1(c) => c.is_idle(),
            Client::H2(_) => true,
            Client::Switching => false,
        }
    }

    pub fn close_if_idle(&mut self, env: &mut Env) -> Outcome {
        let o = match self {
            Client::H1(c) => c.close_if_idle(env),
            Client::H2(s) => s.close_if_idle(env),
            Client::Switching => Outcome::Close,
        };
        self.settle(o, env)
    }

    #[inline]
    pub fn on_event(&mut self, side: Side, ev: &mio::event::Event, env: &mut Env) -> Outcome {
        let o = match self {
            Client::H1(c) => c.on_event(side, ev, env),
            Client::H2(s) => {
                let up = match side {
                    Side::Client => None,
                    Side::Upstream(slot) => Some(slot),
                };
                s.on_event(up, ev, env)
            }
            Client::Switching => Outcome::Close,
        };
        self.settle(o, env)
    }

    #[inline]
    pub fn on_timeout(&mut self, env: &mut Env) -> Outcome {
        let o = match self {
            Client::H1(c) => c.on_timeout(env),
            Client::H2(s) => s.on_timeout(env),
            Client::Switching => Outcome::Close,
        };
        self.settle(o, env)
    }

    #[inline]
    pub fn drive(&mut self, env: &mut Env) -> Outcome {
        let o = match self {
            Client::H1(c) => c.drive(env),
            Client::H2(s) => s.drive(env),
            Client::Switching => Outcome::Close,
        };
        self.settle(o, env)
    }

    /// `shutdown sessions server`: cuts what this connection has on one of
    /// `servers` (`(upstream, server)` pairs).
    pub fn cut_sessions_on(&mut self, servers: &[(usize, usize)], env: &mut Env) -> Outcome {
        match self {
            Client::H1(c) => c.cut_if_on(servers, env),
            Client::H2(s) => s.cut_streams_on(servers, env),
            Client::Switching => Outcome::Keep,
        }
    }

    /// The worker's `shutdown_timeout` passed: what is still open ends
    /// now, each exchange logged and counted as its connection closes.
    pub fn cut_at_shutdown(&mut self, env: &mut Env) -> Outcome {
        match self {
            Client::H1(c) => c.cut_at_shutdown(env),
            Client::H2(s) => s.cut_at_shutdown(env),
            Client::Switching => Outcome::Close,
        }
    }

    pub fn release(&mut self, env: &mut Env) {
        match self {
            Client::H1(c) => c.release(env),
            Client::H2(s) => s.release(env),
            Client::Switching => {}
        }
    }

    /// An HTTP/1.1 connection that met the HTTP/2 preface becomes an
    /// HTTP/2 session here, which runs at once on the bytes already read.
    #[inline]
    fn settle(&mut self, o: Outcome, env: &mut Env) -> Outcome {
        if o != Outcome::Http2 {
            return o;
        }
        self.become_h2(env)
    }

    #[cold]
    fn become_h2(&mut self, env: &mut Env) -> Outcome {
        let Client::H1(conn) = std::mem::replace(self, Client::Switching) else {
            return Outcome::Close;
        };
        let timer_at = conn.timer_at;
        let mut session = Box::new(H2Session::new(conn.into_transport(env), env));
        session.timer_at = timer_at;
        *self = Client::H2(session);
        match self {
            Client::H2(s) => s.drive(env),
            _ => Outcome::Close,
        }
    }
}
