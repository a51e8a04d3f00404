//! Idle upstream connections kept for reuse, per worker, per upstream (at
//! most `keepalive` each), most recently used first.
//!
//! Idle sockets are out of the epoll set; a connection the server closed
//! while idle is found at checkout by a non-blocking peek (EOF or stray
//! bytes = stale, dropped) and by the periodic sweep of old entries.

use mio::net::TcpStream;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

struct Idle {
    sock: TcpStream,
    server: usize,
    since: Instant,
}

pub struct Pool {
    upstreams: Vec<Vec<Idle>>,
    caps: Vec<usize>,
    max_idle: Duration,
}

impl Pool {
    /// `caps[u]` = idle connections kept for upstream `u`.
    pub fn new(caps: Vec<usize>, max_idle: Duration) -> Pool {
        Pool {
            upstreams: caps
                .iter()
                .map(|&c| Vec::with_capacity(c.min(64)))
                .collect(),
            caps,
            max_idle,
        }
    }

    pub fn enabled(&self, upstream: usize) -> bool {
        self.caps.get(upstream).is_some_and(|&c| c > 0)
    }

    /// A live idle connection to `server` of `upstream`, if one is pooled.
    pub fn checkout(&mut self, upstream: usize, server: usize) -> Option<TcpStream> {
        let idle = self.upstreams.get_mut(upstream)?;
        while let Some(pos) = idle.iter().rposition(|i| i.server == server) {
            let entry = idle.remove(pos);
            let mut probe = [0u8; 1];
            match entry.sock.peek(&mut probe) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Some(entry.sock),
                // Closed (Ok(0)), unsolicited bytes, or an error: stale.
                _ => continue,
            }
        }
        None
    }

    /// Keeps `sock` for reuse; the oldest entry makes room when full.
    pub fn checkin(&mut self, upstream: usize, server: usize, sock: TcpStream, now: Instant) {
        let cap = self.caps.get(upstream).copied().unwrap_or(0);
        let Some(idle) = self.upstreams.get_mut(upstream) else {
            return;
        };
        if cap == 0 {
            return;
        }
        if idle.len() >= cap {
            idle.remove(0);
        }
        idle.push(Idle {
            sock,
            server,
            since: now,
        });
    }

    /// Drops connections idle longer than the limit.
    pub fn sweep(&mut self, now: Instant) {
        let max = self.max_idle;
        for idle in &mut self.upstreams {
            idle.retain(|i| now.duration_since(i.since) < max);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.upstreams.iter().map(Vec::len).sum()
    }
}
