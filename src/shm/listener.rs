//! Per listener: what `show stat` reports on its FRONTEND row (HAProxy
//! counts per frontend, so a script reading one listener's `stot` or
//! `req_tot` must not get the instance's), and whether it is disabled over
//! the runtime API.
//!
//! The counters are per worker and per listener (`ListenerCounts`), each
//! worker's block on its own cache lines: a worker counts with plain
//! atomic adds nobody else writes, so requests on two cores never bounce a
//! line between them; readers (the master, `metrics`) sum the workers.
//! The `disabled` flags (`ListenerShared`) are written by the master only.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// A listener's runtime flags, set by the master.
#[repr(C)]
pub struct ListenerShared {
    disabled: AtomicU32,
}

impl ListenerShared {
    pub fn disabled(&self) -> bool {
        self.disabled.load(Relaxed) != 0
    }

    /// Returns whether it changed.
    pub fn set_disabled(&self, disabled: bool) -> bool {
        self.disabled.swap(u32::from(disabled), Relaxed) != u32::from(disabled)
    }
}

/// One worker's counters of one listener.
#[repr(C)]
pub struct ListenerCounts {
    conns_current: AtomicU64,
    conns_total: AtomicU64,
    requests: AtomicU64,
    _pad: AtomicU64,
}

/// A listener's counters summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    pub conns_current: u64,
    pub conns_total: u64,
    pub requests: u64,
}

impl ListenerCounts {
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

    /// `clear counters all`: the totals back to zero.
    pub fn clear(&self) {
        self.conns_total.store(0, Relaxed);
        self.requests.store(0, Relaxed);
    }

    /// A runtime server change's new generation goes on from the old
    /// generation's totals (`old`, summed over its workers; see
    /// `ServerShared::carry_counters`). Open connections stay the old
    /// workers' to count.
    pub fn carry_totals(&self, old: ListenerStats) {
        self.conns_total.store(old.conns_total, Relaxed);
        self.requests.store(old.requests, Relaxed);
    }

    pub(super) fn add_to(&self, s: &mut ListenerStats) {
        s.conns_current += self.conns_current.load(Relaxed);
        s.conns_total += self.conns_total.load(Relaxed);
        s.requests += self.requests.load(Relaxed);
    }
}
