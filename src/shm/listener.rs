//! Per listener: what `show stat` reports on its FRONTEND row (HAProxy
//! counts per frontend, so a script reading one listener's `stot` or
//! `req_tot` must not get the instance's), and whether it is disabled over
//! the runtime API.
//!
//! The counters are per worker and per listener (`ListenerCounts`), each
//! worker's block on its own cache lines: a worker counts with plain
//! atomic adds nobody else writes, so requests on two cores never bounce a
//! line between them; readers (the master, `metrics`) sum the workers.
//! Open connections are the exception: `smax` is the most open at once
//! over all workers, which a sum of per-worker counts cannot tell, so
//! they are one count per listener (`ListenerShared`), as HAProxy's
//! `feconn` — its line moves between cores once per connection opened or
//! closed, never per request. The `disabled` flags and the rates are
//! written by the master only.

use super::open_count::OpenCount;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// A listener's open connections, runtime flags and rates. On a cache
/// line of its own: the workers write `conns_current`.
#[repr(C, align(64))]
pub struct ListenerShared {
    /// Connections open on this listener, over all workers, and the most
    /// seen at once (`scur`, `smax`).
    conns: OpenCount,
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

    #[inline]
    pub fn connection_opened(&self) {
        self.conns.open();
    }

    #[inline]
    pub fn connection_closed(&self) {
        self.conns.close(1);
    }

    /// (open connections, the most at once).
    pub fn connections(&self) -> (u32, u32) {
        self.conns.get()
    }

    /// A runtime server change's new generation keeps the old one's
    /// maxima (the rates themselves are sampled again; the open
    /// connections stay the old workers' to count).
    pub fn carry_max(&self, old: &ListenerShared) {
        self.conn_rate_max
            .store(old.conn_rate_max.load(Relaxed), Relaxed);
        self.req_rate_max
            .store(old.req_rate_max.load(Relaxed), Relaxed);
        self.conns.carry_max(&old.conns);
    }

    /// `clear counters`: the maxima start over (`smax` from the
    /// connections open now, as a server's does).
    pub fn clear_max(&self) {
        // 0, as HAProxy's: the master's sampler starts over from the clear.
        self.conn_rate_max.store(0, Relaxed);
        self.req_rate_max.store(0, Relaxed);
        self.conns.clear_max();
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
    conns_total: AtomicU64,
    requests: AtomicU64,
    /// Responses sent by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    responses: [AtomicU64; 6],
}

/// A listener's counters summed over the workers, with its open
/// connections (`ListenerShared`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    pub conns_current: u64,
    /// The most connections open at once.
    pub conns_max: u64,
    pub conns_total: u64,
    pub requests: u64,
    /// Responses sent by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [u64; 6],
}

impl ListenerCounts {
    /// A connection opened (it counts as open in `ListenerShared`).
    #[inline]
    pub fn count_connection(&self) {
        self.conns_total.fetch_add(1, Relaxed);
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
        s.conns_total += self.conns_total.load(Relaxed);
        s.requests += self.requests.load(Relaxed);
        for (sum, r) in s.responses.iter_mut().zip(&self.responses) {
            *sum += r.load(Relaxed);
        }
    }
}
