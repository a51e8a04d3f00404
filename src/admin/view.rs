//! What the runtime API's commands see of the running instance: the
//! configuration, the shared state and the process facts the master keeps.

use crate::config::Config;
use crate::shm::{self, ServerShared, Shm};

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
    /// Who asks, for the log lines of changes.
    pub origin: Origin,
}

/// Where a runtime command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The admin socket (the master).
    Socket,
    /// An `admin: true` dashboard, from this client (a worker).
    Dashboard(std::net::IpAddr),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Socket => f.write_str("set over the admin socket"),
            Origin::Dashboard(ip) => write!(f, "set from the dashboard by {ip}"),
        }
    }
}

impl View<'_> {
    /// Server `server` of upstream `upstream` in each draining generation
    /// that has it (found by name: positions differ between them).
    pub fn draining_servers<'s>(
        &'s self,
        upstream: &'s str,
        server: &'s str,
    ) -> impl Iterator<Item = &'s ServerShared> + 's {
        self.draining.iter().filter_map(move |(cfg, shm)| {
            let u = cfg.upstreams.position(upstream)?;
            let s = cfg.upstreams[u]
                .servers
                .iter()
                .position(|x| x.name == server)?;
            Some(shm.server(u, s))
        })
    }

    /// Requests in flight on server `server` of upstream `upstream`, or
    /// waiting for it alone, in the draining generations.
    pub fn draining_attached(&self, upstream: &str, server: &str) -> u32 {
        self.draining_servers(upstream, server)
            .map(|sh| sh.active() + sh.queued())
            .sum()
    }
}
