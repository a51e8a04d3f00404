//! State shared by the master, all workers and the health checker of one
//! configuration generation: one anonymous `MAP_SHARED` mapping created by
//! the master before it forks anyone, so every process sees the same pages.
//!
//! Only atomics live here (zero bytes are valid initial values), no locks,
//! and nothing that needs a syscall while held. Each server's hot fields —
//! read on every pick — share the first cache line; its counters follow.
//! Indices are flat: server `s` of upstream `u` is `base[u] + s`.
//!
//! Every field is private to this module: the rest of forklb uses named
//! operations (`begin_request`, `count_response`, `set_admin`,
//! `set_weight`, `record_check`, ...) and reads snapshots (`stats`,
//! `worker_totals`, `durations`), so the memory orderings and the
//! invariants between fields live here, one concern per file:
//! `server` (per server), `worker` (per worker slot), `upstream` (per
//! upstream). This file is the mapping and its layout.

mod backend;
mod instance;
mod limits;
mod listener;
mod open_count;
mod queue;
mod server;
mod upstream;
mod worker;

pub use backend::{BackendHistory, BackendShared};
pub use instance::{Instance, InstanceShared};
pub use limits::{
    ConnHold, EntryView, LimitTable, TableKind, Verdict, DEFAULT_ENTRIES, KEY_PREFIX, MAX_BURST,
    MAX_ENTRIES, MIN_ENTRIES,
};
pub use listener::{ListenerCounts, ListenerRates, ListenerShared, ListenerStats};
pub use queue::{QueueShared, Wakers, WorkerQueue, NO_TICKET};
pub use server::{
    swrate_avg, AdminState, CheckFailure, Configured, ForcedHealth, HealthCarry, HealthChange,
    HealthState, LastCheck, ServerShared, ServerStats, Timing, WeightOutOfRange, MAX_WEIGHT,
    TIME_SAMPLES,
};
pub use upstream::{duration_bucket, Durations, UpstreamShared, DURATION_BUCKETS};
pub use worker::{AcceptState, WorkerShared, WorkerTotals};

use std::io;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

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
    instance_off: usize,
    /// One `ListenerShared` per configured listener.
    listeners_off: usize,
    listeners: usize,
    /// Per worker, a block of one `ListenerCounts` per listener, padded
    /// to whole cache lines (`counts_stride` bytes).
    counts_off: usize,
    counts_stride: usize,
    /// Per worker, one `WorkerQueue` per upstream (`upstreams` of them).
    queues_off: usize,
    /// Per worker, one u32 per server: the slots (requests in flight) it
    /// holds there, `held_stride` bytes a worker.
    held_off: usize,
    held_stride: usize,
    /// The workers' eventfds (queued requests are woken through them).
    wakers: Wakers,
    /// The `limit_req` / `limit_conn` tables, in `Config::limit_tables`
    /// order; each its own mapping, which a reload may hand on (see
    /// `limits`).
    limits: Vec<std::sync::Arc<LimitTable>>,
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
        Shm::create_with_listeners(servers_per_upstream, workers, 0)
    }

    /// [`create`](Self::create), with room for `listeners` listener flags.
    pub fn create_with_listeners(
        servers_per_upstream: &[usize],
        workers: usize,
        listeners: usize,
    ) -> io::Result<Shm> {
        let mut base = Vec::with_capacity(servers_per_upstream.len());
        let mut servers = 0;
        for &n in servers_per_upstream {
            base.push(servers);
            servers += n;
        }
        let server_bytes = servers * std::mem::size_of::<ServerShared>();
        let workers_off = server_bytes;
        let upstreams_off = workers_off + workers * std::mem::size_of::<WorkerShared>();
        // Every part's size is a multiple of 64 (their alignment), so the
        // instance block that follows is aligned too.
        let instance_off =
            upstreams_off + servers_per_upstream.len() * std::mem::size_of::<UpstreamShared>();
        let listeners_off = instance_off + std::mem::size_of::<InstanceShared>();
        let counts_off = (listeners_off + listeners * std::mem::size_of::<ListenerShared>())
            .next_multiple_of(64);
        let counts_stride =
            (listeners * std::mem::size_of::<ListenerCounts>()).next_multiple_of(64);
        let queues_off = counts_off + workers * counts_stride;
        let queues_len = workers * servers_per_upstream.len() * std::mem::size_of::<WorkerQueue>();
        // At least one entry, so the fallback index of `worker_queue` is
        // inside the mapping even without upstreams.
        let held_off =
            (queues_off + queues_len.max(std::mem::size_of::<WorkerQueue>())).next_multiple_of(64);
        let held_stride = (servers * std::mem::size_of::<AtomicU32>()).next_multiple_of(64);
        let len = (held_off + workers * held_stride).max(4096);
        let wakers = Wakers::new(workers)?;
        let ptr = map_shared_zeroed(len)?;
        Ok(Shm {
            ptr,
            len,
            base,
            servers,
            upstreams: servers_per_upstream.len(),
            workers,
            workers_off,
            upstreams_off,
            instance_off,
            listeners_off,
            listeners,
            counts_off,
            counts_stride,
            queues_off,
            held_off,
            held_stride,
            wakers,
            limits: Vec::new(),
        })
    }

    /// Installs the limit tables (before the workers are forked).
    pub fn set_limits(&mut self, tables: Vec<std::sync::Arc<LimitTable>>) {
        self.limits = tables;
    }

    /// Limit table `t` (`Config::limit_tables` order).
    #[inline]
    pub fn limit(&self, t: usize) -> Option<&std::sync::Arc<LimitTable>> {
        self.limits.get(t)
    }

    pub fn limits(&self) -> &[std::sync::Arc<LimitTable>] {
        &self.limits
    }

    pub fn server_count(&self) -> usize {
        self.servers
    }

    /// Server slots of upstream `u` (0 for an unknown upstream).
    pub fn servers_of(&self, u: usize) -> usize {
        let Some(&b) = self.base.get(u) else {
            return 0;
        };
        self.base.get(u + 1).copied().unwrap_or(self.servers) - b
    }

    pub fn upstream_count(&self) -> usize {
        self.base.len()
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
        for w in 0..self.workers {
            t.add(self.worker(w));
        }
        t
    }

    /// Sets server `s` of upstream `u` to `weight` (at most
    /// [`MAX_WEIGHT`]); returns whether it changed. A change bumps the
    /// upstream's weights epoch after the weight is stored, so every
    /// worker's consistent-hash ring rebuilds with the new weight (see
    /// `UpstreamShared::weights_epoch` for the ordering).
    pub fn set_weight(&self, u: usize, s: usize, weight: u32) -> Result<bool, WeightOutOfRange> {
        let changed = self.server(u, s).swap_weight(weight)? != weight;
        if changed {
            self.upstream(u).bump_weights_epoch();
        }
        Ok(changed)
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

impl Shm {
    /// Listener `l`'s flags (its index in the configuration), if the
    /// mapping has room for it.
    pub fn listener(&self, l: usize) -> Option<&ListenerShared> {
        // SAFETY: l < listeners, so in the mapping; 64-byte aligned, as
        // ListenerShared needs (every part before it is a multiple of 64,
        // and so is ListenerShared); zeroes are a valid value.
        (l < self.listeners).then(|| unsafe {
            &*(self
                .ptr
                .add(self.listeners_off + l * std::mem::size_of::<ListenerShared>())
                as *const ListenerShared)
        })
    }

    /// Worker `w`'s counters of listener `l`.
    pub fn listener_counts(&self, w: usize, l: usize) -> Option<&ListenerCounts> {
        // SAFETY: w < workers and l < listeners, so inside worker w's block
        // in the mapping; 8-byte aligned (blocks start on 64-byte
        // boundaries, entries are multiples of 8 bytes); zeroes are valid.
        (w < self.workers && l < self.listeners).then(|| unsafe {
            &*(self.ptr.add(
                self.counts_off
                    + w * self.counts_stride
                    + l * std::mem::size_of::<ListenerCounts>(),
            ) as *const ListenerCounts)
        })
    }

    /// Listener `l`'s counters summed over the workers, and its open
    /// connections.
    pub fn listener_stats(&self, l: usize) -> ListenerStats {
        let mut s = ListenerStats::default();
        for w in 0..self.workers {
            if let Some(c) = self.listener_counts(w, l) {
                c.add_to(&mut s);
            }
        }
        if let Some(x) = self.listener(l) {
            let (current, max) = x.connections();
            (s.conns_current, s.conns_max) = (u64::from(current), u64::from(max));
        }
        s
    }

    /// Worker `w` accepted a connection on listener `l`.
    #[inline]
    pub fn listener_opened(&self, w: usize, l: usize) {
        if let Some(c) = self.listener_counts(w, l) {
            c.count_connection();
        }
        if let Some(x) = self.listener(l) {
            x.connection_opened();
        }
    }

    /// A connection of listener `l` closed.
    #[inline]
    pub fn listener_closed(&self, l: usize) {
        if let Some(x) = self.listener(l) {
            x.connection_closed();
        }
    }

    /// Listener `l` was disabled over the runtime API: workers keep it out
    /// of their epoll set.
    pub fn listener_disabled(&self, l: usize) -> bool {
        self.listener(l).is_some_and(ListenerShared::disabled)
    }

    /// Sets listener `l`'s flag; returns whether it changed.
    pub fn set_listener_disabled(&self, l: usize, disabled: bool) -> bool {
        self.listener(l).is_some_and(|x| x.set_disabled(disabled))
    }

    /// What worker `w` publishes about its waiters of upstream `u`.
    pub fn worker_queue(&self, w: usize, u: usize) -> &WorkerQueue {
        let (w, u) = if w < self.workers && u < self.upstreams {
            (w, u)
        } else {
            (0, 0)
        };
        let i = w * self.upstreams + u;
        // SAFETY: i < workers * upstreams, inside the block `create` sized
        // (or, with none, at its start in the zeroed page `len` keeps at
        // least); 8-byte aligned (the block starts on a 64-byte boundary,
        // entries are 16 bytes); zeroes are a valid WorkerQueue.
        unsafe {
            &*(self
                .ptr
                .add(self.queues_off + i * std::mem::size_of::<WorkerQueue>())
                as *const WorkerQueue)
        }
    }

    /// The count of slots worker `w` holds on server `s` of upstream `u`.
    fn held(&self, w: usize, u: usize, s: usize) -> Option<&AtomicU32> {
        let i = self
            .base
            .get(u)
            .map(|b| b + s)
            .filter(|&i| i < self.servers)?;
        (w < self.workers).then(|| {
            // SAFETY: w < workers and i < servers: inside worker w's block
            // of the mapping; 4-byte aligned (blocks start on 64-byte
            // boundaries); zeroes are a valid AtomicU32.
            unsafe {
                &*(self.ptr.add(
                    self.held_off + w * self.held_stride + i * std::mem::size_of::<AtomicU32>(),
                ) as *const AtomicU32)
            }
        })
    }

    /// Worker `w` takes a slot on server `s` of upstream `u` if the server
    /// is below its `maxconn` (`ServerShared::try_begin_request`), and
    /// notes it as its own: if it dies holding it, the worker started in
    /// its place gives it back (`reclaim_slots`) — else a dead worker's
    /// requests would keep their slots for the generation's life.
    #[inline]
    pub fn try_begin_request(&self, w: usize, u: usize, s: usize) -> bool {
        if !self.server(u, s).try_begin_request() {
            return false;
        }
        if let Some(h) = self.held(w, u, s) {
            // Only worker w writes its block: no read-modify-write needed.
            h.store(h.load(Relaxed) + 1, Relaxed);
        }
        true
    }

    /// Worker `w` gives a slot back; returns what
    /// `ServerShared::end_request` returns (requests wait for this server).
    #[inline]
    pub fn end_request(&self, w: usize, u: usize, s: usize) -> bool {
        if let Some(h) = self.held(w, u, s) {
            h.store(h.load(Relaxed).saturating_sub(1), Relaxed);
        }
        self.server(u, s).end_request()
    }

    /// A worker starts in slot `w`: the slots its predecessor (which died)
    /// still held are given back, and so are those requests' sessions of
    /// their upstream (`UpstreamShared::sessions`: else the BACKEND row's
    /// `scur` would keep them for the generation's life). Returns the
    /// upstreams that got slots back (their waiters are to be woken).
    pub fn reclaim_slots(&self, w: usize) -> Vec<usize> {
        let mut freed = Vec::new();
        for u in 0..self.upstreams {
            for s in 0..self.servers_of(u) {
                let Some(h) = self.held(w, u, s) else {
                    continue;
                };
                let n = h.swap(0, Relaxed);
                for _ in 0..n {
                    self.server(u, s).end_request();
                }
                self.upstream(u).end_sessions(n);
                if n > 0 && freed.last() != Some(&u) {
                    freed.push(u);
                }
            }
        }
        freed
    }

    /// Looks whether upstream `u` has a server that may take requests
    /// now (ready, not DOWN, weight > 0, not passively marked): a change
    /// since the last look is a transition of the backend (see
    /// `backend`). Whoever changed a server's usability calls it; it
    /// reads one line per server.
    pub fn observe_backend(&self, u: usize) {
        if u >= self.upstreams {
            return;
        }
        let now_ms = monotonic_ms();
        let usable = (0..self.servers_of(u)).any(|s| {
            let sh = self.server(u, s);
            sh.is_ready() && !sh.passively_down(now_ms)
        });
        self.upstream(u).backend().observe(usable, unix_secs());
    }

    /// [`observe_backend`](Self::observe_backend) for every upstream.
    pub fn observe_backends(&self) {
        for u in 0..self.upstreams {
            self.observe_backend(u);
        }
    }

    /// The workers' eventfds.
    pub fn wakers(&self) -> &Wakers {
        &self.wakers
    }

    /// Wakes the workers with requests waiting for a slot in upstream `u`
    /// (a limit was raised, a server came back): they look again. Costs
    /// a load per worker when nothing waits.
    pub fn wake_waiters(&self, u: usize) {
        for w in 0..self.workers {
            if self.worker_queue(w, u).waiting() > 0 {
                self.wakers.wake(w);
            }
        }
    }

    /// What the master publishes about the instance.
    pub fn instance(&self) -> &InstanceShared {
        // SAFETY: as for `server`: in the mapping (`len` covers it), 64-byte
        // aligned (see `create`), zeroes are a valid InstanceShared.
        unsafe { &*(self.ptr.add(self.instance_off) as *const InstanceShared) }
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

/// A fresh anonymous `MAP_SHARED` mapping of `len` bytes, zero-filled by
/// the kernel: made before a fork, it is the same pages in every process.
/// The caller unmaps it (`munmap`) when it is dropped.
pub(crate) fn map_shared_zeroed(len: usize) -> io::Result<*mut u8> {
    // SAFETY: a new anonymous mapping; no existing memory is touched.
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
    Ok(ptr.cast())
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

#[cfg(test)]
mod tests;
