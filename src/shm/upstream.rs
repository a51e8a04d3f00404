//! Per-upstream shared state: the request-duration histogram, and the
//! weights epoch the workers' consistent-hash rings follow.

use super::backend::BackendShared;
use super::open_count::OpenCount;
use super::queue::QueueShared;
use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::Duration;

/// Upper bounds (seconds) of the request-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The index of `d`'s bucket in `DURATION_BUCKETS` (the last: +Inf).
#[inline]
pub fn duration_bucket(d: Duration) -> usize {
    let secs = d.as_secs_f64();
    DURATION_BUCKETS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(DURATION_BUCKETS.len())
}

/// Per-upstream values every worker must agree on.
#[repr(C, align(64))]
pub struct UpstreamShared {
    /// Bumped whenever a weight changes (consistent-hash rings rebuild).
    weights_epoch: AtomicU32,
    /// Request durations (dispatch to end of response): cumulative-free
    /// bucket counts for `DURATION_BUCKETS` plus +Inf, and their sum. The
    /// count is the buckets' sum, added up when read: one atomic add less
    /// per request.
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    /// Requests dispatched to this upstream and not ended, over all
    /// workers — those waiting in a queue included, as HAProxy's backend
    /// counts its streams (`scur`) — and the most seen at once (`smax`).
    /// On the line the end of every request writes anyway (the sum above).
    sessions: OpenCount,
    /// Requests per second over the last second, and the highest seen
    /// (the master samples once a second).
    rate: AtomicU32,
    rate_max: AtomicU32,
    /// Requests answered 503 because no server of the upstream could take
    /// them: HAProxy counts those in its BACKEND row (req_tot, hrsp_5xx,
    /// econ) though no server row has them.
    no_server: AtomicU64,
    /// Requests a server had been chosen for that forklb answered 5xx
    /// itself (502: connecting or the response failed; 504: the server
    /// timed out): HAProxy 2.6 counts them in the BACKEND row's hrsp_5xx,
    /// not in the server row's (its server rows count what servers sent).
    answered_5xx: AtomicU64,
    /// Attempts on a further server by requests that had one already (a
    /// retry after a failure): the servers' `stot` count every attempt,
    /// the BACKEND row's counts requests, as HAProxy's does, so these
    /// come off the servers' sum. Counted on retries only, never on the
    /// path every request takes.
    reattempts: AtomicU64,
    /// The queue of requests waiting for a server slot (`maxconn`), on
    /// its own cache line: the counters above change on every request.
    queue: QueueShared,
    /// UP or DOWN as a whole, and its transitions.
    backend: BackendShared,
}

/// A copy of an upstream's duration histogram.
#[derive(Debug, Clone, Copy, Default)]
pub struct Durations {
    /// Per bucket (not cumulative), the last one +Inf.
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of the durations, microseconds.
    pub sum_us: u64,
    pub count: u64,
}

impl UpstreamShared {
    /// The shared half of the upstream's request queue.
    #[inline]
    pub fn queue(&self) -> &QueueShared {
        &self.queue
    }

    /// Whether the upstream is UP or DOWN as a whole, and its history.
    pub fn backend(&self) -> &BackendShared {
        &self.backend
    }

    /// Counts one request's duration. Relaxed: the histogram's parts are
    /// read one by one anyway (Prometheus tolerates a scrape that sees a
    /// bucket one request ahead of the count).
    #[inline]
    pub fn observe(&self, d: Duration) {
        self.observe_in(duration_bucket(d), d);
    }

    /// Counts one request's duration `d`, whose bucket `i` the caller
    /// found already (`duration_bucket`: the server's histogram takes the
    /// same index).
    #[inline]
    pub fn observe_in(&self, i: usize, d: Duration) {
        let Some(bucket) = self.duration_buckets.get(i) else {
            return;
        };
        bucket.fetch_add(1, Relaxed);
        self.duration_sum_us
            .fetch_add(d.as_micros() as u64, Relaxed);
    }

    pub fn durations(&self) -> Durations {
        let buckets: [u64; DURATION_BUCKETS.len() + 1] =
            std::array::from_fn(|k| self.duration_buckets[k].load(Relaxed));
        Durations {
            buckets,
            sum_us: self.duration_sum_us.load(Relaxed),
            count: buckets.iter().sum(),
        }
    }

    /// A request is dispatched to this upstream (before it looks for a
    /// server: one waiting in the queue counts).
    #[inline]
    pub fn begin_session(&self) {
        self.sessions.open();
    }

    /// `n` requests dispatched here ended (or their worker died).
    #[inline]
    pub fn end_sessions(&self, n: u32) {
        self.sessions.close(n);
    }

    /// (requests dispatched here and not ended, the most at once).
    pub fn sessions(&self) -> (u32, u32) {
        self.sessions.get()
    }

    /// A request got 503: no server could take it.
    #[inline]
    pub fn count_no_server(&self) {
        self.no_server.fetch_add(1, Relaxed);
    }

    pub fn no_server(&self) -> u64 {
        self.no_server.load(Relaxed)
    }

    /// A request a server was chosen for got a 5xx of forklb's own.
    #[inline]
    pub fn count_answered_5xx(&self) {
        self.answered_5xx.fetch_add(1, Relaxed);
    }

    pub fn answered_5xx(&self) -> u64 {
        self.answered_5xx.load(Relaxed)
    }

    /// A request that failed on a server took another server's slot.
    pub fn count_reattempt(&self) {
        self.reattempts.fetch_add(1, Relaxed);
    }

    pub fn reattempts(&self) -> u64 {
        self.reattempts.load(Relaxed)
    }

    /// `clear counters all`.
    pub fn clear_counters(&self) {
        self.no_server.store(0, Relaxed);
        self.answered_5xx.store(0, Relaxed);
        self.reattempts.store(0, Relaxed);
    }

    /// The master's sample of the last second.
    pub fn set_rate(&self, rate: u32) {
        self.rate.store(rate, Relaxed);
        self.rate_max.fetch_max(rate, Relaxed);
    }

    /// (rate, rate_max).
    pub fn rates(&self) -> (u32, u32) {
        (self.rate.load(Relaxed), self.rate_max.load(Relaxed))
    }

    /// `clear counters`: the maximum starts over from the current rate.
    pub fn clear_max(&self) {
        // 0, as HAProxy's: the master's sampler starts over from the clear.
        self.rate_max.store(0, Relaxed);
        // As a server's `smax`: from what is in flight now.
        self.sessions.clear_max();
    }

    /// The weights epoch. Acquire pairs with the Release in
    /// `bump_weights_epoch`: a worker that sees a new epoch also sees the
    /// weight changed before it, so it never builds a ring from the old
    /// weight and files it under the new epoch (it would then keep that
    /// ring until the next change). On x86 an Acquire load is the same
    /// instruction as a Relaxed one, and a Release fetch_add the same
    /// locked add.
    #[inline]
    pub fn weights_epoch(&self) -> u32 {
        self.weights_epoch.load(Acquire)
    }

    /// A runtime server change's new generation goes on from the old
    /// generation's histogram, 503 and 5xx counts, `smax` and queue
    /// counters (see `ServerShared::carry_counters`; what is in flight or
    /// waits stays in the old one).
    pub fn carry_counters(&self, old: &UpstreamShared) {
        self.no_server.store(old.no_server.load(Relaxed), Relaxed);
        self.answered_5xx
            .store(old.answered_5xx.load(Relaxed), Relaxed);
        self.reattempts.store(old.reattempts.load(Relaxed), Relaxed);
        for (new, old) in self.duration_buckets.iter().zip(&old.duration_buckets) {
            new.store(old.load(Relaxed), Relaxed);
        }
        self.duration_sum_us
            .store(old.duration_sum_us.load(Relaxed), Relaxed);
        self.sessions.carry_max(&old.sessions);
        self.queue.carry_counters(&old.queue);
        self.rate_max.store(old.rate_max.load(Relaxed), Relaxed);
    }

    /// After a weight changed (see `weights_epoch`).
    pub(super) fn bump_weights_epoch(&self) {
        self.weights_epoch.fetch_add(1, Release);
    }
}
