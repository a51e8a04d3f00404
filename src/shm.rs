//! State shared by the master, all workers and the health checker of one
//! configuration generation: one anonymous `MAP_SHARED` mapping created by
//! the master before it forks anyone, so every process sees the same pages.
//!
//! Only atomics live here (zero bytes are valid initial values), no locks,
//! and nothing that needs a syscall while held. Each server's hot fields —
//! read on every pick — share the first cache line; its counters follow.
//! Indices are flat: server `s` of upstream `u` is `base[u] + s`.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Admin states set by an operator (runtime API).
pub const ADMIN_READY: u8 = 0;
pub const ADMIN_DRAIN: u8 = 1;
pub const ADMIN_MAINT: u8 = 2;

/// Per-server shared state. 64-byte aligned: one server's hot fields never
/// share a cache line with another's.
#[repr(C, align(64))]
pub struct ServerShared {
    // --- hot: read on every pick -----------------------------------------
    /// ADMIN_READY / ADMIN_DRAIN / ADMIN_MAINT.
    pub admin: AtomicU8,
    /// 1 when active health checks say DOWN.
    pub check_down: AtomicU8,
    /// Current (effective) weight, 0–256; runtime-changeable.
    pub weight: AtomicU32,
    /// Requests in flight on this server, over all workers.
    pub active: AtomicU32,
    /// Consecutive failures seen on live traffic (passive detection).
    pub fails: AtomicU32,
    /// Passively marked down until this monotonic millisecond.
    pub down_until_ms: AtomicU64,
    /// Health counter (HAProxy semantics, see `health`).
    pub health: AtomicU32,
    /// Whether active checks run for this server.
    pub checked: AtomicU8,
    // --- counters -----------------------------------------------------------
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connect_errors: AtomicU64,
    pub response_errors: AtomicU64,
    pub retries: AtomicU64,
    /// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [AtomicU64; 6],
    pub selections: AtomicU64,
    pub max_active: AtomicU32,
    /// Unix seconds of the last state change (UP/DOWN, admin).
    pub last_change: AtomicU64,
    /// Total seconds spent DOWN before the current state.
    pub downtime: AtomicU64,
    /// Failed checks, and UP→DOWN transitions.
    pub check_fails: AtomicU64,
    pub check_downs: AtomicU64,
    /// Last check: duration in microseconds, HTTP status (0 for TCP or none).
    pub last_check_us: AtomicU64,
    pub last_check_code: AtomicU32,
    /// Last check outcome: 0 none yet, 1 passed, 2 failed.
    pub last_check_ok: AtomicU8,
}

/// Per-worker counters.
#[repr(C, align(64))]
pub struct WorkerShared {
    pub pid: AtomicU32,
    /// 1 while the worker's listeners are in its epoll set, 2 while it
    /// stepped aside to balance connections, 0 otherwise (draining, gone).
    pub accepting: AtomicU32,
    /// `monotonic_ms` of the worker's latest loop turn (at least every
    /// `worker::HEARTBEAT`): a stale value means stopped or gone.
    pub heartbeat_ms: AtomicU64,
    /// Listener events handled (wake-ups to accept), against `conns_total`.
    pub accept_wakeups: AtomicU64,
    pub conns_current: AtomicU32,
    pub conns_total: AtomicU64,
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Instance-wide sums of the per-worker counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerTotals {
    pub conns_current: u64,
    pub conns_total: u64,
    pub requests: u64,
    pub accept_wakeups: u64,
}

/// Per-upstream values every worker must agree on.
#[repr(C, align(64))]
pub struct UpstreamShared {
    /// Bumped whenever a weight changes (consistent-hash rings rebuild).
    pub weights_epoch: AtomicU32,
    /// Request durations (dispatch to end of response): cumulative-free
    /// bucket counts for `DURATION_BUCKETS` plus +Inf, sum and count.
    pub duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    pub duration_sum_us: AtomicU64,
    pub duration_count: AtomicU64,
}

/// Upper bounds (seconds) of the request-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl UpstreamShared {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The mapping and where each part lives in it.
pub struct Shm {
    ptr: *mut u8,
    len: usize,
    /// First flat server index of each upstream.
    base: Vec<usize>,
    servers: usize,
    upstreams: usize,
    workers: usize,
    workers_off: usize,
    upstreams_off: usize,
}

// SAFETY: the raw pointer is a mapping this value owns for its whole life
// (unmapped on drop), and every access through it is to an atomic, so
// moving it to or sharing it with another thread cannot race.
unsafe impl Send for Shm {}
// SAFETY: as for Send: shared access only ever reads or writes atomics.
unsafe impl Sync for Shm {}

impl Shm {
    /// Maps zeroed shared memory for `servers_per_upstream` and `workers`.
    pub fn create(servers_per_upstream: &[usize], workers: usize) -> io::Result<Shm> {
        let mut base = Vec::with_capacity(servers_per_upstream.len());
        let mut servers = 0;
        for &n in servers_per_upstream {
            base.push(servers);
            servers += n;
        }
        let server_bytes = servers * std::mem::size_of::<ServerShared>();
        let workers_off = server_bytes;
        let upstreams_off = workers_off + workers * std::mem::size_of::<WorkerShared>();
        let len = (upstreams_off
            + servers_per_upstream.len() * std::mem::size_of::<UpstreamShared>())
        .max(4096);
        // SAFETY: anonymous shared mapping; the kernel zero-fills it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Shm {
            ptr: ptr.cast(),
            len,
            base,
            servers,
            upstreams: servers_per_upstream.len(),
            workers,
            workers_off,
            upstreams_off,
        })
    }

    pub fn server_count(&self) -> usize {
        self.servers
    }

    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// Shared state of server `s` of upstream `u`. Out-of-range indices are
    /// a programming error; they return the first server rather than panic.
    pub fn server(&self, u: usize, s: usize) -> &ServerShared {
        let i = self.base.get(u).map_or(0, |b| b + s);
        let i = if i < self.servers { i } else { 0 };
        // SAFETY: i < servers (or the mapping holds at least one page of
        // zeroes, a valid ServerShared); the mapping lives as long as self
        // and is 64-byte aligned (page aligned base, 64-byte sized items).
        unsafe { &*(self.ptr.add(i * std::mem::size_of::<ServerShared>()) as *const ServerShared) }
    }

    pub fn worker(&self, w: usize) -> &WorkerShared {
        let w = if w < self.workers { w } else { 0 };
        // SAFETY: as for `server`; WorkerShared entries follow the servers.
        unsafe {
            &*(self
                .ptr
                .add(self.workers_off + w * std::mem::size_of::<WorkerShared>())
                as *const WorkerShared)
        }
    }

    /// The per-worker counters summed over every worker of the generation.
    pub fn worker_totals(&self) -> WorkerTotals {
        let mut t = WorkerTotals::default();
        for w in (0..self.workers).map(|w| self.worker(w)) {
            t.conns_current += u64::from(w.conns_current.load(Ordering::Relaxed));
            t.conns_total += w.conns_total.load(Ordering::Relaxed);
            t.requests += w.requests.load(Ordering::Relaxed);
            t.accept_wakeups += w.accept_wakeups.load(Ordering::Relaxed);
        }
        t
    }

    pub fn upstream(&self, u: usize) -> &UpstreamShared {
        let u = if u < self.upstreams { u } else { 0 };
        // SAFETY: as for `server`.
        unsafe {
            &*(self
                .ptr
                .add(self.upstreams_off + u * std::mem::size_of::<UpstreamShared>())
                as *const UpstreamShared)
        }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; other processes keep theirs.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Milliseconds of CLOCK_MONOTONIC: the same clock in every process, for
/// deadlines kept in shared memory.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ServerShared {
    /// May this server take new requests (ignoring passive marks)?
    pub fn is_ready(&self) -> bool {
        self.admin.load(Ordering::Relaxed) == ADMIN_READY
            && self.check_down.load(Ordering::Relaxed) == 0
            && self.weight.load(Ordering::Relaxed) > 0
    }

    pub fn passively_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Counts a response status into its class.
    pub fn count_response(&self, status: u16) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// A request starts on this server.
    pub fn begin(&self) {
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_active.fetch_max(now, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request on this server ended.
    pub fn end(&self) {
        // Saturating: never wrap below zero even if begin/end mismatched.
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_sharing_across_fork() {
        assert_eq!(std::mem::align_of::<ServerShared>(), 64);
        let shm = Shm::create(&[2, 3], 2).unwrap();
        shm.server(1, 2).weight.store(7, Ordering::Relaxed);
        assert_eq!(shm.server(1, 2).weight.load(Ordering::Relaxed), 7);
        assert_eq!(shm.server(0, 0).weight.load(Ordering::Relaxed), 0);
        // A child's write is seen by the parent.
        // SAFETY: the child only stores to atomics and leaves with _exit,
        // touching no lock another test thread might hold.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                shm.server(0, 1).active.store(42, Ordering::Relaxed);
                shm.worker(1).requests.store(9, Ordering::Relaxed);
                // SAFETY: _exit ends the forked child without running the
                // test harness's destructors and exit handlers twice.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        assert_eq!(shm.server(0, 1).active.load(Ordering::Relaxed), 42);
        assert_eq!(shm.worker(1).requests.load(Ordering::Relaxed), 9);
        shm.server(0, 1).end();
        assert_eq!(shm.server(0, 1).active.load(Ordering::Relaxed), 41);
    }
}
