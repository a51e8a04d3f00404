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

/// A listener's runtime flags and rates, set by the master.
#[repr(C)]
pub struct ListenerShared {
    disabled: AtomicU32,
    /// Connections and requests per second over the last second (the
    /// master samples the counters once a second), and the highest seen.
    conn_rate: AtomicU32,
    conn_rate_max: AtomicU32,
    req_rate: AtomicU32,
    req_rate_max: AtomicU32,
}

/// A listener's rates, as `show stat` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerRates {
    pub conn_rate: u32,
    pub conn_rate_max: u32,
    pub req_rate: u32,
    pub req_rate_max: u32,
}

impl ListenerShared {
    /// The master's sample of the last second.
    pub fn set_rates(&self, conns: u32, requests: u32) {
        self.conn_rate.store(conns, Relaxed);
        self.conn_rate_max.fetch_max(conns, Relaxed);
        self.req_rate.store(requests, Relaxed);
        self.req_rate_max.fetch_max(requests, Relaxed);
    }

    pub fn rates(&self) -> ListenerRates {
        ListenerRates {
            conn_rate: self.conn_rate.load(Relaxed),
            conn_rate_max: self.conn_rate_max.load(Relaxed),
            req_rate: self.req_rate.load(Relaxed),
            req_rate_max: self.req_rate_max.load(Relaxed),
        }
    }

    /// A runtime server change's new generation keeps the old one's rate
    /// maxima (the rates themselves are sampled again).
    pub fn carry_max(&self, old: &ListenerShared) {
        self.conn_rate_max
            .store(old.conn_rate_max.load(Relaxed), Relaxed);
        self.req_rate_max
            .store(old.req_rate_max.load(Relaxed), Relaxed);
    }

    /// `clear counters`: the maxima start over from the current rates.
    pub fn clear_max(&self) {
        // 0, as HAProxy's: the master's sampler starts over from the clear.
        self.conn_rate_max.store(0, Relaxed);
        self.req_rate_max.store(0, Relaxed);
    }

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
    /// Responses sent by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    responses: [AtomicU64; 6],
}

/// A listener's counters summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    pub conns_current: u64,
    pub conns_total: u64,
    pub requests: u64,
    /// Responses sent by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [u64; 6],
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

    /// A response with `status` went to a client of this listener.
    #[inline]
    pub fn count_response(&self, status: u16) {
        self.responses[super::server::status_class(status)].fetch_add(1, Relaxed);
    }

    /// `clear counters all`: the totals back to zero.
    pub fn clear(&self) {
        self.conns_total.store(0, Relaxed);
        self.requests.store(0, Relaxed);
        for r in &self.responses {
            r.store(0, Relaxed);
        }
    }

    /// A runtime server change's new generation goes on from the old
    /// generation's totals (`old`, summed over its workers; see
    /// `ServerShared::carry_counters`). Open connections stay the old
    /// workers' to count.
    pub fn carry_totals(&self, old: ListenerStats) {
        self.conns_total.store(old.conns_total, Relaxed);
        self.requests.store(old.requests, Relaxed);
        for (r, &o) in self.responses.iter().zip(&old.responses) {
            r.store(o, Relaxed);
        }
    }

    pub(super) fn add_to(&self, s: &mut ListenerStats) {
        s.conns_current += self.conns_current.load(Relaxed);
        s.conns_total += self.conns_total.load(Relaxed);
        s.requests += self.requests.load(Relaxed);
        for (sum, r) in s.responses.iter_mut().zip(&self.responses) {
            *sum += r.load(Relaxed);
        }
    }
}
