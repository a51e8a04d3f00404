//! What the runtime API's commands see of the running instance: the
//! configuration, the shared state and the process facts the master keeps.

use crate::config::Config;
use crate::shm::{self, Shm};

/// What the commands may look at.
pub struct View<'a> {
    pub config: &'a Config,
    pub shm: &'a Shm,
    pub pid: u32,
    pub uptime_secs: u64,
    pub generation: u64,
    /// (pid, uptime seconds, generation) of the live workers.
    pub workers: Vec<(i32, u64, u64)>,
    /// Connections and requests over the instance's lifetime: every
    /// generation since start, draining ones included (`show info`).
    pub totals: shm::WorkerTotals,
    /// Rates over the last second, sampled by the master.
    pub rates: crate::master::rates::RateView,
    /// The master is shutting down (QUIT or TERM): `show info`'s Stopping.
    pub stopping: bool,
    /// Unix time the master started.
    pub started_unix: u64,
    /// Replaced generations whose workers may still be draining: their
    /// configuration and shared state (`del server` must see their
    /// requests in flight too).
    pub draining: Vec<(&'a Config, &'a Shm)>,
}

impl View<'_> {
    /// Requests in flight on server `server` of upstream `upstream`, or
    /// waiting for it alone, in the draining generations (found by name:
    /// positions differ between them).
    pub fn draining_attached(&self, upstream: &str, server: &str) -> u32 {
        self.draining
            .iter()
            .filter_map(|(cfg, shm)| {
                let u = cfg.upstreams.position(upstream)?;
                let s = cfg.upstreams[u]
                    .servers
                    .iter()
                    .position(|x| x.name == server)?;
                let sh = shm.server(u, s);
                Some(sh.active() + sh.queued())
            })
            .sum()
    }
}
