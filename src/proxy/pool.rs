//! Idle upstream connections kept for reuse, per worker, per upstream (at
//! most `keepalive` each), most recently used first.
//!
//! Idle sockets stay in the epoll set under their own token: when a server
//! closes one (or sends anything) while it idles, the worker hears about it
//! at once and drops it (`remove`). The periodic sweep drops old entries.
//! A close that races with a checkout is caught by the request path, which
//! sends idempotent requests again on a fresh connection.

use crate::event::Stream;
use std::time::{Duration, Instant};

struct Idle {
    sock: Stream,
    /// The socket's upstream slot (its epoll token).
    up_slot: usize,
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

    /// The most recently pooled idle connection to `server` of
    /// `upstream`, with its upstream slot.
    pub fn checkout(&mut self, upstream: usize, server: usize) -> Option<(Stream, usize)> {
        let idle = self.upstreams.get_mut(upstream)?;
        let pos = idle.iter().rposition(|i| i.server == server)?;
        let entry = idle.remove(pos);
        Some((entry.sock, entry.up_slot))
    }

    /// Keeps `sock` for reuse. Returns what the caller must free: `sock`'s
    /// own slot if it cannot be kept, or the slot of the oldest entry that
    /// made room.
    pub fn checkin(
        &mut self,
        upstream: usize,
        server: usize,
        sock: Stream,
        up_slot: usize,
        now: Instant,
    ) -> Option<usize> {
        let cap = self.caps.get(upstream).copied().unwrap_or(0);
        let Some(idle) = self.upstreams.get_mut(upstream) else {
            return Some(up_slot);
        };
        if cap == 0 {
            return Some(up_slot);
        }
        let evicted = if idle.len() >= cap {
            Some(idle.remove(0).up_slot)
        } else {
            None
        };
        idle.push(Idle {
            sock,
            up_slot,
            server,
            since: now,
        });
        evicted
    }

    /// The idle connection of `up_slot`, if pooled.
    pub fn get_mut(&mut self, up_slot: usize) -> Option<&mut Stream> {
        self.upstreams
            .iter_mut()
            .flat_map(|idle| idle.iter_mut())
            .find(|i| i.up_slot == up_slot)
            .map(|i| &mut i.sock)
    }

    /// Drops the idle socket of `up_slot` (its server closed it or sent
    /// something unasked); true if it was pooled.
    pub fn remove(&mut self, up_slot: usize) -> bool {
        for idle in &mut self.upstreams {
            if let Some(pos) = idle.iter().position(|i| i.up_slot == up_slot) {
                idle.remove(pos);
                return true;
            }
        }
        false
    }

    /// Drops the idle connections to any of `servers` (`(upstream,
    /// server)` pairs); returns their slots.
    pub fn drop_servers(&mut self, servers: &[(usize, usize)]) -> Vec<usize> {
        let mut freed = Vec::new();
        for (u, idle) in self.upstreams.iter_mut().enumerate() {
            idle.retain(|i| {
                let keep = !servers.contains(&(u, i.server));
                if !keep {
                    freed.push(i.up_slot);
                }
                keep
            });
        }
        freed
    }

    /// Drops connections idle longer than the limit; returns their slots.
    pub fn sweep(&mut self, now: Instant) -> Vec<usize> {
        let max = self.max_idle;
        let mut freed = Vec::new();
        for idle in &mut self.upstreams {
            idle.retain(|i| {
                let keep = now.duration_since(i.since) < max;
                if !keep {
                    freed.push(i.up_slot);
                }
                keep
            });
        }
        freed
    }

    pub fn idle_count(&self) -> usize {
        self.upstreams.iter().map(Vec::len).sum()
    }
}
