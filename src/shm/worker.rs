//! One worker's shared slot: its counters and what its peers need to know
//! to balance accepting (`worker::accept_balance`).
//!
//! Only the worker that owns the slot writes it; the master and the other
//! workers read. Every field stands alone (no reader needs two of them to
//! agree), so `Relaxed` throughout.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Whether a worker's listeners are in its epoll set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum AcceptState {
    /// Draining, gone, or paused (EMFILE, worker_connections).
    #[default]
    NotAccepting = 0,
    Accepting = 1,
    /// Stepped aside to let less loaded peers take new connections.
    SteppedAside = 2,
}

impl AcceptState {
    fn from_u32(v: u32) -> AcceptState {
        match v {
            1 => AcceptState::Accepting,
            2 => AcceptState::SteppedAside,
            _ => AcceptState::NotAccepting,
        }
    }
}

/// Per-worker counters.
#[repr(C, align(64))]
pub struct WorkerShared {
    pid: AtomicU32,
    /// An `AcceptState` as u32.
    accepting: AtomicU32,
    /// `monotonic_ms` of the worker's latest loop turn (at least every
    /// `worker::HEARTBEAT`): a stale value means stopped or gone.
    heartbeat_ms: AtomicU64,
    /// Listener events handled (wake-ups to accept), against `conns_total`.
    accept_wakeups: AtomicU64,
    conns_current: AtomicU32,
    conns_total: AtomicU64,
    requests: AtomicU64,
}

/// Instance-wide sums of the per-worker counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerTotals {
    pub conns_current: u64,
    pub conns_total: u64,
    pub requests: u64,
    pub accept_wakeups: u64,
}

impl WorkerTotals {
    pub(super) fn add(&mut self, w: &WorkerShared) {
        self.conns_current += u64::from(w.conns_current.load(Relaxed));
        self.conns_total += w.conns_total.load(Relaxed);
        self.requests += w.requests.load(Relaxed);
        self.accept_wakeups += w.accept_wakeups.load(Relaxed);
    }
}

impl WorkerShared {
    // ----- the owning worker ------------------------------------------------

    /// Returns the pid the slot had: 0 at a generation's first start,
    /// else that of a predecessor (which died).
    pub fn set_pid(&self, pid: u32) -> u32 {
        self.pid.swap(pid, Relaxed)
    }

    pub fn set_accepting(&self, state: AcceptState) {
        self.accepting.store(state as u32, Relaxed);
    }

    /// The worker's loop turned at `now_ms`.
    pub fn heartbeat(&self, now_ms: u64) {
        self.heartbeat_ms.store(now_ms, Relaxed);
    }

    #[inline]
    pub fn count_accept_wakeup(&self) {
        self.accept_wakeups.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn connection_opened(&self) {
        self.conns_current.fetch_add(1, Relaxed);
        self.conns_total.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn connection_closed(&self) {
        // Saturating: never wrap below zero even if open/close mismatched.
        let _ = self
            .conns_current
            .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
    }

    #[inline]
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    // ----- readers (peers, master) ------------------------------------------

    pub fn accepting(&self) -> AcceptState {
        AcceptState::from_u32(self.accepting.load(Relaxed))
    }

    pub fn heartbeat_ms(&self) -> u64 {
        self.heartbeat_ms.load(Relaxed)
    }

    #[inline]
    pub fn conns_current(&self) -> u32 {
        self.conns_current.load(Relaxed)
    }
}
