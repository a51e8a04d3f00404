//! One server's shared state and every operation on it.
//!
//! Fields are private: workers, the health checker and the master change
//! them only through the named operations below, so each invariant (the
//! in-flight count never wraps, weights stay in 0–256, a state change
//! stamps `last_change`, going UP clears passive marks) is kept here once.
//! Readers take a [`ServerStats`] snapshot.
//!
//! Orderings: every field is an independent counter or flag that no other
//! memory depends on, so `Relaxed` throughout — a reader sees each value
//! eventually and never needs two of them to agree — except `active`
//! against the queue counters, SeqCst (see `queue`). (The one cross-field
//! dependency, weights against the consistent-hash epoch, is ordered in
//! `Shm::set_weight`.)

use super::upstream::DURATION_BUCKETS;
use std::sync::atomic::{
    AtomicU32, AtomicU64, AtomicU8,
    Ordering::{Relaxed, SeqCst},
};
use std::time::Duration;

/// Largest weight a server may have (HAProxy's bound).
pub const MAX_WEIGHT: u32 = 256;

/// Admin state set by an operator (runtime API, state file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum AdminState {
    /// Takes new requests.
    #[default]
    Ready = 0,
    /// Finishes what it has, takes no new requests.
    Drain = 1,
    /// Out of service.
    Maint = 2,
}

impl AdminState {
    fn from_u8(v: u8) -> AdminState {
        match v {
            0 => AdminState::Ready,
            1 => AdminState::Drain,
            // Only the three values are ever stored (the field is private).
            _ => AdminState::Maint,
        }
    }

    /// `ready`, `drain`, `maint` as the runtime API spells them.
    pub fn parse(word: &str) -> Option<AdminState> {
        match word {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }

    /// The lower-case word (runtime API, metrics labels).
    pub fn word(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// The upper-case word HAProxy prints (status column, logs).
    pub fn status_word(self) -> &'static str {
        match self {
            AdminState::Ready => "READY",
            AdminState::Drain => "DRAIN",
            AdminState::Maint => "MAINT",
        }
    }

    pub const ALL: [AdminState; 3] = [AdminState::Ready, AdminState::Drain, AdminState::Maint];
}

/// What a generation's configuration gave a server, against which a
/// reload tells runtime changes (kept) from configured values (replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured {
    pub weight: u32,
    pub maxconn: u32,
}

/// A weight above [`MAX_WEIGHT`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightOutOfRange(pub u32);

const OP_UP: u8 = 0;
const OP_DOWN: u8 = 1;
const OP_STOPPING: u8 = 2;

/// An operator's `set server B/S health up|stopping|down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedHealth {
    Up,
    Stopping,
    Down,
}

impl ForcedHealth {
    pub fn parse(word: &str) -> Option<ForcedHealth> {
        match word {
            "up" => Some(ForcedHealth::Up),
            "stopping" => Some(ForcedHealth::Stopping),
            "down" => Some(ForcedHealth::Down),
            _ => None,
        }
    }
}

/// Active-check health: HAProxy's counter (see `health::counter`) and
/// whether checks say DOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthState {
    pub counter: u32,
    pub down: bool,
}

/// The latest active check, as `show stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastCheck {
    /// No check has finished yet.
    #[default]
    None,
    /// `code` is the HTTP status (0 for TCP checks).
    Passed { code: u16, duration: Duration },
    /// `code` is the HTTP status, 0 when none arrived (connect, timeout);
    /// `why`: at which layer it failed, as HAProxy's `check_status` words
    /// tell the failures apart.
    Failed {
        code: u16,
        duration: Duration,
        why: CheckFailure,
    },
}

/// Where a failed check failed: an operator reads "the port is closed"
/// (`L4CON`) apart from "the application hangs" (`L7TOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFailure {
    /// The connection was refused or failed (`L4CON`).
    Connect,
    /// The connection was not established in time (`L4TOUT`).
    ConnectTimeout,
    /// The TLS handshake failed (`L6RSP`).
    Handshake,
    /// The TLS handshake did not end in time (`L6TOUT`).
    HandshakeTimeout,
    /// Connected, but no response in time (`L7TOUT`).
    ResponseTimeout,
    /// Connected, but the server closed, reset or answered something that
    /// is not an HTTP response (`L7RSP`).
    BadResponse,
    /// A status outside `expect_status` (`L7STS`).
    Status,
}

impl CheckFailure {
    const ALL: [CheckFailure; 7] = [
        CheckFailure::Connect,
        CheckFailure::ConnectTimeout,
        CheckFailure::Handshake,
        CheckFailure::HandshakeTimeout,
        CheckFailure::ResponseTimeout,
        CheckFailure::BadResponse,
        CheckFailure::Status,
    ];

    /// HAProxy's `check_status` word.
    pub fn word(self) -> &'static str {
        match self {
            CheckFailure::Connect => "L4CON",
            CheckFailure::ConnectTimeout => "L4TOUT",
            CheckFailure::Handshake => "L6RSP",
            CheckFailure::HandshakeTimeout => "L6TOUT",
            CheckFailure::ResponseTimeout => "L7TOUT",
            CheckFailure::BadResponse => "L7RSP",
            CheckFailure::Status => "L7STS",
        }
    }

    /// Its `last_check_ok` encoding: above [`CHECK_PASSED`].
    fn encoded(self) -> u8 {
        CHECK_FAILED + self as u8
    }

    fn decoded(v: u8) -> CheckFailure {
        let at = usize::from(v.saturating_sub(CHECK_FAILED));
        Self::ALL.get(at).copied().unwrap_or(CheckFailure::Connect)
    }
}

impl LastCheck {
    pub fn code(self) -> u16 {
        match self {
            LastCheck::None => 0,
            LastCheck::Passed { code, .. } | LastCheck::Failed { code, .. } => code,
        }
    }

    pub fn duration(self) -> Duration {
        match self {
            LastCheck::None => Duration::ZERO,
            LastCheck::Passed { duration, .. } | LastCheck::Failed { duration, .. } => duration,
        }
    }

    fn passed(self) -> bool {
        matches!(self, LastCheck::Passed { .. })
    }
}

/// What of a server's health a new generation takes from the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCarry {
    /// Both generations check it: the checks' state, the counter capped at
    /// the new generation's `full`.
    Checked { full: u32 },
    /// Neither checks it: the state an operator forced.
    Forced,
    /// One checks it and the other not: the new one starts afresh.
    Nothing,
}

/// What a check result changed, for the health checker to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    WentDown,
    /// Back UP after `downtime_secs` DOWN.
    WentUp {
        downtime_secs: u64,
    },
}

/// Encodings of `last_check_ok`: failures from `CHECK_FAILED` on, one per
/// [`CheckFailure`].
const CHECK_NONE: u8 = 0;
const CHECK_PASSED: u8 = 1;
const CHECK_FAILED: u8 = 2;

/// Per-server shared state. 64-byte aligned: one server's hot fields never
/// share a cache line with another's.
#[repr(C, align(64))]
pub struct ServerShared {
    // --- hot: read on every pick -----------------------------------------
    /// An `AdminState` as u8.
    admin: AtomicU8,
    /// The operational state: `OP_UP`, `OP_DOWN` (checks, or an operator's
    /// `set server … health down`), `OP_STOPPING` (`health stopping`:
    /// HAProxy's NOLB, up but given no new requests). Pickers take only
    /// `OP_UP`, so the hot path stays one byte compare.
    check_down: AtomicU8,
    /// Current (effective) weight, 0–MAX_WEIGHT; runtime-changeable.
    weight: AtomicU32,
    /// Requests in flight on this server, over all workers.
    active: AtomicU32,
    /// Most requests in flight allowed, over all workers; 0 = no limit.
    /// Runtime-changeable (`set maxconn server`).
    maxconn: AtomicU32,
    /// Requests waiting for a slot on this server alone (`balance: hash`
    /// binds them), over all workers: its `qcur`.
    queued: AtomicU32,
    /// Consecutive failures seen on live traffic (passive detection).
    fails: AtomicU32,
    /// Passively marked down until this monotonic millisecond.
    down_until_ms: AtomicU64,
    /// Health counter (HAProxy semantics, see `health`).
    health: AtomicU32,
    /// Whether active checks run for this server.
    checked: AtomicU8,
    // --- counters -----------------------------------------------------------
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Failed connection attempts, every one (`forklb_server_connect_errors_total`).
    connect_errors: AtomicU64,
    /// Requests whose connection to this server failed with no retry to
    /// follow, so that they failed: HAProxy's `econ`, which a failure the
    /// request is redispatched after does not count (`wredis` does).
    failed_conns: AtomicU64,
    response_errors: AtomicU64,
    /// Requests that failed here and were sent on to another server
    /// (HAProxy's `wredis`: counted on the server switched away from).
    redispatches: AtomicU64,
    /// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    responses: [AtomicU64; 6],
    selections: AtomicU64,
    max_active: AtomicU32,
    /// Most requests seen waiting for this server at once (`qmax`).
    max_queued: AtomicU32,
    /// Unix seconds of the last state change (UP/DOWN, admin).
    last_change: AtomicU64,
    /// Total seconds spent DOWN before the current state.
    downtime: AtomicU64,
    /// Failed checks, and UP→DOWN transitions.
    check_fails: AtomicU64,
    check_downs: AtomicU64,
    /// Last check: duration in microseconds, HTTP status (0 for TCP or none).
    last_check_us: AtomicU64,
    last_check_code: AtomicU32,
    /// CHECK_NONE / CHECK_PASSED / CHECK_FAILED.
    last_check_ok: AtomicU8,
    /// Bumped by `shutdown sessions server`: each worker compares it with
    /// the value it saw last and cuts this server's connections when it
    /// moved (the master's channel byte says when to look).
    shutdown_seq: AtomicU32,
    /// Unix seconds of the last request given to this server (0: never):
    /// `lastsess`.
    last_session: AtomicU64,
    /// Requests per second over the last second, and the highest seen:
    /// written by the master, which samples `requests` once a second.
    rate: AtomicU32,
    rate_max: AtomicU32,
    /// HAProxy's sliding sums (`swrate`) of queue, connect, response and
    /// total times in milliseconds over the last [`TIME_SAMPLES`]
    /// requests (`Timing` order), and their maxima.
    times: [AtomicU32; 4],
    times_max: [AtomicU32; 4],
    /// Request durations per `DURATION_BUCKETS` bucket (+Inf last), not
    /// cumulative: the dashboard's latency per server. Counted where the
    /// upstream's histogram is (`Attempt::release`).
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
}

/// The index of `status`'s class among the response counters (`hrsp_1xx`
/// ... `hrsp_other`).
#[inline]
pub(super) fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// Requests HAProxy's time averages (`qtime`...) are taken over.
pub const TIME_SAMPLES: u32 = 1024;

/// One request's times as `show stat` averages them (HAProxy's qtime,
/// ctime, rtime and ttime), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Waiting in a queue for a free slot.
    pub queue: u32,
    /// Connecting (0 on a reused connection).
    pub connect: u32,
    /// From the connection (or its reuse) to the response head.
    pub response: u32,
    /// The whole request, from its dispatch to its end.
    pub total: u32,
}

impl Timing {
    fn as_array(self) -> [u32; 4] {
        [self.queue, self.connect, self.response, self.total]
    }

    fn from_array(a: [u32; 4]) -> Timing {
        Timing {
            queue: a[0],
            connect: a[1],
            response: a[2],
            total: a[3],
        }
    }
}

/// A sliding sum's average over `window` samples (HAProxy's `swrate_avg`).
pub fn swrate_avg(sum: u32, window: u32) -> u32 {
    if window == 0 {
        return 0;
    }
    // Rounded up, as HAProxy's.
    sum.div_ceil(window)
}

/// Adds `v` to a sliding sum (HAProxy's `swrate_add_dynamic`): once the
/// window is `full` (more requests than [`TIME_SAMPLES`]), one average
/// sample leaves as `v` comes in; before, the sum just grows. (The window
/// is a constant power of two, so this is a shift, no division.)
#[inline]
fn swrate_add(sum: u32, full: bool, v: u32) -> u32 {
    let leaving = if full { sum.div_ceil(TIME_SAMPLES) } else { 0 };
    sum.saturating_sub(leaving).saturating_add(v)
}

/// A point-in-time copy of one server's state for `show stat`, `show
/// servers state` and `/metrics`. Fields are read one by one (no lock), so
/// two of them may be a request apart; each is exact on its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerStats {
    pub admin: AdminState,
    pub health: HealthState,
    pub weight: u32,
    /// 0 = no limit.
    pub maxconn: u32,
    pub active: u32,
    pub max_active: u32,
    /// Requests waiting for this server alone, and the most seen at once.
    pub queued: u32,
    pub max_queued: u32,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_errors: u64,
    /// Requests that failed connecting here, not retried (`econ`).
    pub failed_conns: u64,
    pub response_errors: u64,
    /// Requests that failed here and went on to another server (`wredis`).
    pub redispatches: u64,
    pub selections: u64,
    /// By class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [u64; 6],
    pub last_change: u64,
    pub downtime: u64,
    pub check_fails: u64,
    pub check_downs: u64,
    pub last_check: LastCheck,
    /// Active checks run (configured and not disabled over the API).
    pub checked: bool,
    /// `health stopping`: up, but given no new requests (HAProxy's NOLB).
    pub stopping: bool,
    /// Taken out by passive detection (`max_fails`) until `fail_timeout`
    /// is over: DOWN to whoever reads the state, as HAProxy's `observe
    /// layer4 on-error mark-down` shows its server. (Picks still fall back
    /// on it when every server is marked: see `balance`.)
    pub passive_down: bool,
    /// Unix seconds of the last request given to it (0: never).
    pub last_session: u64,
    /// Requests per second over the last second, and the highest seen.
    pub rate: u32,
    pub rate_max: u32,
    /// Average times over the last requests (HAProxy's qtime, ctime,
    /// rtime, ttime), with the number of requests averaged, and maxima.
    pub times: Timing,
    pub time_samples: u32,
    pub times_max: Timing,
}

impl ServerStats {
    /// Usable for new requests: what [`ServerShared::is_ready`] says, and
    /// not passively marked down.
    pub fn is_ready(&self) -> bool {
        self.admin == AdminState::Ready && !self.is_down() && !self.stopping && self.weight > 0
    }

    /// DOWN: by its checks or an operator (`health down`), or marked by
    /// passive detection.
    pub fn is_down(&self) -> bool {
        self.health.down || self.passive_down
    }
}

impl ServerShared {
    // ----- picking (every request) ------------------------------------------

    /// May this server take new requests (ignoring passive marks)?
    #[inline]
    pub fn is_ready(&self) -> bool {
        self.admin.load(Relaxed) == AdminState::Ready as u8
            && self.check_down.load(Relaxed) == 0
            && self.weight.load(Relaxed) > 0
    }

    #[inline]
    pub fn passively_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Relaxed) > now_ms
    }

    #[inline]
    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    /// Requests in flight, over all workers.
    #[inline]
    pub fn active(&self) -> u32 {
        self.active.load(Relaxed)
    }

    /// The in-flight limit; 0 = none.
    #[inline]
    pub fn maxconn(&self) -> u32 {
        self.maxconn.load(Relaxed)
    }

    #[inline]
    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Relaxed))
    }

    /// A pick chose this server.
    #[inline]
    pub fn count_selection(&self) {
        self.selections.fetch_add(1, Relaxed);
    }

    // ----- `clear counters` (the master) ----------------------------------------

    /// `clear counters`: the maxima start over (in flight now, the last
    /// second's rate, zero times), as HAProxy's.
    pub fn clear_max(&self) {
        self.max_active.store(self.active.load(Relaxed), Relaxed);
        // 0, as HAProxy's: the master's sampler starts over from the clear.
        self.rate_max.store(0, Relaxed);
        for m in &self.times_max {
            m.store(0, Relaxed);
        }
        self.max_queued.store(self.queued.load(Relaxed), Relaxed);
    }

    /// `clear counters all`: every counter back to zero (as HAProxy clears
    /// a server's counters); states, weights, health and timings stay.
    pub fn clear_counters(&self) {
        for c in [
            &self.requests,
            &self.bytes_in,
            &self.bytes_out,
            &self.connect_errors,
            &self.failed_conns,
            &self.response_errors,
            &self.redispatches,
            &self.selections,
            &self.check_fails,
            &self.check_downs,
            &self.last_session,
        ]
        .into_iter()
        .chain(&self.responses)
        {
            c.store(0, Relaxed);
        }
        for t in &self.times {
            t.store(0, Relaxed);
        }
        self.clear_max();
    }

    /// Counts a request whose duration fell in bucket `i`
    /// (`upstream::duration_bucket`).
    #[inline]
    pub fn observe_bucket(&self, i: usize) {
        if let Some(b) = self.duration_buckets.get(i) {
            b.fetch_add(1, Relaxed);
        }
    }

    /// The duration histogram (per bucket, +Inf last).
    pub fn durations(&self) -> [u64; DURATION_BUCKETS.len() + 1] {
        std::array::from_fn(|k| self.duration_buckets[k].load(Relaxed))
    }

    // ----- `shutdown sessions server` ------------------------------------------

    /// The master: every connection to this server is to be cut.
    pub fn request_shutdown(&self) {
        self.shutdown_seq.fetch_add(1, Relaxed);
    }

    /// How many shutdowns were requested so far (wrapping).
    pub fn shutdown_seq(&self) -> u32 {
        self.shutdown_seq.load(Relaxed)
    }

    // ----- rates (the master, once a second) ------------------------------------

    /// The master's sample: `rate` requests over the last second.
    pub fn set_rate(&self, rate: u32) {
        self.rate.store(rate, Relaxed);
        self.rate_max.fetch_max(rate, Relaxed);
    }

    /// Requests given to this server so far (what rates are sampled from).
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    // ----- one request's life -----------------------------------------------

    /// A request was given to this server at `unix_secs` (`lastsess`). The
    /// line is written by `begin_request` anyway; a store of the same value
    /// is skipped so a busy server's line is not dirtied once more.
    #[inline]
    pub fn touch_session(&self, unix_secs: u64) {
        if self.last_session.load(Relaxed) != unix_secs {
            self.last_session.store(unix_secs, Relaxed);
        }
    }

    /// A request that got a response head ended: its times join the
    /// sliding averages (HAProxy counts only such requests too).
    #[inline]
    pub fn record_times(&self, t: Timing) {
        let full = self.requests.load(Relaxed) > u64::from(TIME_SAMPLES);
        for (k, v) in t.as_array().into_iter().enumerate() {
            let _ =
                self.times[k].fetch_update(Relaxed, Relaxed, |sum| Some(swrate_add(sum, full, v)));
            if v > self.times_max[k].load(Relaxed) {
                self.times_max[k].fetch_max(v, Relaxed);
            }
        }
    }

    /// Whether a request may start here now: below `maxconn`, or no limit.
    /// (A hint for picking; `try_begin_request` decides.)
    #[inline]
    pub fn has_room(&self) -> bool {
        let max = self.maxconn.load(Relaxed);
        max == 0 || self.active.load(Relaxed) < max
    }

    /// A request starts on this server if it is below its `maxconn`:
    /// taken atomically (a compare-exchange), so however many workers try
    /// at once, at most `maxconn` get in. Without a limit, one add.
    #[inline]
    pub fn try_begin_request(&self) -> bool {
        let max = self.maxconn.load(Relaxed);
        let now = if max == 0 {
            self.active.fetch_add(1, SeqCst) + 1
        } else {
            match self
                .active
                .fetch_update(SeqCst, SeqCst, |v| (v < max).then_some(v + 1))
            {
                Ok(before) => before + 1,
                Err(_) => return false,
            }
        };
        // Written only when passed: a steady load pays a load, not a
        // locked compare-exchange, per request.
        if now > self.max_active.load(Relaxed) {
            self.max_active.fetch_max(now, Relaxed);
        }
        self.requests.fetch_add(1, Relaxed);
        true
    }

    /// A request starts on this server, whatever its limit (tests).
    #[inline]
    pub fn begin_request(&self) {
        let now = self.active.fetch_add(1, Relaxed) + 1;
        self.max_active.fetch_max(now, Relaxed);
        self.requests.fetch_add(1, Relaxed);
    }

    /// A request on this server ended (or moved to another server).
    /// Returns whether requests wait for this server alone: then the freed
    /// slot is theirs to take (see `queue` for the ordering).
    #[inline]
    pub fn end_request(&self) -> bool {
        // Saturating: never wrap below zero even if begin/end mismatched.
        let _ = self
            .active
            .fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1));
        self.queued.load(SeqCst) > 0
    }

    /// Requests waiting for this server alone, over all workers.
    #[inline]
    pub fn queued(&self) -> u32 {
        self.queued.load(SeqCst)
    }

    /// A request bound to this server starts waiting for it.
    pub fn add_waiter(&self) {
        let now = self.queued.fetch_add(1, SeqCst) + 1;
        self.max_queued.fetch_max(now, Relaxed);
    }

    /// It stops waiting (served, timed out or gone).
    pub fn remove_waiter(&self) {
        let _ = self
            .queued
            .fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1));
    }

    /// Bytes of a finished request: sent to the server, received from it.
    #[inline]
    pub fn count_bytes(&self, to_server: u64, from_server: u64) {
        self.bytes_in.fetch_add(to_server, Relaxed);
        self.bytes_out.fetch_add(from_server, Relaxed);
    }

    /// A response head arrived: counts its status class and ends the run
    /// of failures passive detection counts (the server answers).
    #[inline]
    pub fn count_response(&self, status: u16) {
        self.fails.store(0, Relaxed);
        self.responses[status_class(status)].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn count_connect_error(&self) {
        self.connect_errors.fetch_add(1, Relaxed);
    }

    /// A request's connection here failed and no retry follows.
    pub fn count_failed_conn(&self) {
        self.failed_conns.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn count_response_error(&self) {
        self.response_errors.fetch_add(1, Relaxed);
    }

    /// A request that failed on this server goes on to another one: a
    /// redispatch, counted on the server left, as HAProxy counts `wredis`
    /// (forklb never retries on the server that failed, so every retry
    /// is one; none is a `wretr`).
    #[inline]
    pub fn count_redispatch(&self) {
        self.redispatches.fetch_add(1, Relaxed);
    }

    /// A server back UP (a check, an operator's `health up`, leaving
    /// maint): a passive mark left by the failures before would otherwise
    /// keep it out until `fail_timeout`, and its count would go on.
    fn clear_passive_marks(&self) {
        self.down_until_ms.store(0, Relaxed);
        self.fails.store(0, Relaxed);
    }

    /// Passive detection: one more failure on live traffic. The
    /// `max_fails`-th in a row marks the server down for `fail_timeout_ms`;
    /// returns the failures that did it. The count is not started again
    /// there but when the server answers (`count_response`) or a check
    /// brings it UP, as nginx keeps `fails`: once `fail_timeout` is over,
    /// the server gets requests again, and if the first of them fails it
    /// is out again at once — not after `max_fails` more clients got an
    /// error. (Two workers may both reach the limit at once: both mark,
    /// with nearly the same deadline, which is harmless.)
    pub fn mark_failure(&self, max_fails: u32, fail_timeout_ms: u64) -> Option<u32> {
        let fails = self
            .fails
            .fetch_update(Relaxed, Relaxed, |f| Some(f.saturating_add(1)))
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if fails < max_fails {
            return None;
        }
        self.down_until_ms
            .store(super::monotonic_ms() + fail_timeout_ms, Relaxed);
        Some(fails)
    }

    // ----- active checks (the health checker, the only writer) --------------

    pub fn health_state(&self) -> HealthState {
        HealthState {
            counter: self.health.load(Relaxed),
            down: self.check_down.load(Relaxed) == OP_DOWN,
        }
    }

    /// Records a finished check. `judge` turns the current health into the
    /// next (`health::counter`); a change of the DOWN flag is a transition:
    /// it stamps `last_change`, counts downs or downtime, and going UP
    /// clears passive marks — the check has just shown the server works,
    /// and a mark left by the failures before the outage would otherwise
    /// keep it out until `fail_timeout` runs out.
    ///
    /// Read-modify-write without a compare-exchange: the health checker is
    /// the only process that writes these fields after the generation
    /// starts.
    pub fn record_check(
        &self,
        check: LastCheck,
        judge: impl FnOnce(HealthState) -> HealthState,
    ) -> Option<HealthChange> {
        self.last_check_us
            .store(check.duration().as_micros() as u64, Relaxed);
        self.last_check_code.store(u32::from(check.code()), Relaxed);
        let ok = check.passed();
        let encoded = match check {
            LastCheck::None => CHECK_NONE,
            LastCheck::Passed { .. } => CHECK_PASSED,
            LastCheck::Failed { why, .. } => why.encoded(),
        };
        self.last_check_ok.store(encoded, Relaxed);
        let before = self.health_state();
        // HAProxy counts a failed check only while the counter has room to
        // fall (`chkfail`): not the failures of a server already DOWN.
        if !ok && before.counter > 0 {
            self.check_fails.fetch_add(1, Relaxed);
        }
        let after = judge(before);
        self.health.store(after.counter, Relaxed);
        self.check_down.store(u8::from(after.down), Relaxed);
        if before.down == after.down {
            return None;
        }
        let unix = super::unix_secs();
        let since = self.last_change.swap(unix, Relaxed);
        if after.down {
            self.check_downs.fetch_add(1, Relaxed);
            Some(HealthChange::WentDown)
        } else {
            let downtime_secs = unix.saturating_sub(since);
            self.downtime.fetch_add(downtime_secs, Relaxed);
            self.clear_passive_marks();
            Some(HealthChange::WentUp { downtime_secs })
        }
    }

    // ----- operators and generations (the master) ---------------------------

    /// `set server B/S health up|stopping|down`: the state checks would
    /// reach, set now (`full` is the counter of a fully UP server). The next
    /// check, if any, goes on from there, as in HAProxy. A change of the
    /// DOWN flag stamps `last_change` and accounts downtime like a check's.
    pub fn force_health(&self, to: ForcedHealth, full: u32) -> bool {
        let (op, counter) = match to {
            ForcedHealth::Up => (OP_UP, full),
            ForcedHealth::Stopping => (OP_STOPPING, full),
            ForcedHealth::Down => (OP_DOWN, 0),
        };
        self.health.store(counter, Relaxed);
        let before = self.check_down.swap(op, Relaxed);
        if before == op {
            return false;
        }
        let unix = super::unix_secs();
        let since = self.last_change.swap(unix, Relaxed);
        if before == OP_DOWN {
            self.downtime.fetch_add(unix.saturating_sub(since), Relaxed);
            self.clear_passive_marks();
        }
        if op == OP_DOWN {
            // A transition to DOWN, as HAProxy counts them (`chkdown`),
            // whoever made it.
            self.check_downs.fetch_add(1, Relaxed);
        }
        true
    }

    /// `enable|disable health B/S`: whether active checks run for this
    /// server. Disabled, the last result is ignored (the server counts as
    /// up unless an operator forces it down); returns whether it changed.
    pub fn set_checked(&self, on: bool) -> bool {
        if self.checked.swap(u8::from(on), Relaxed) == u8::from(on) {
            return false;
        }
        if !on {
            let _ = self
                .check_down
                .compare_exchange(OP_DOWN, OP_UP, Relaxed, Relaxed);
        }
        true
    }

    /// Active checks run for this server (configured, and not disabled).
    pub fn is_checked(&self) -> bool {
        self.checked.load(Relaxed) != 0
    }

    /// Sets the admin state; on a change stamps `last_change` and returns true.
    pub fn set_admin(&self, state: AdminState) -> bool {
        self.swap_admin(state).is_some()
    }

    /// The previous admin state, if `state` changed it (then `last_change`
    /// is stamped).
    fn swap_admin(&self, state: AdminState) -> Option<AdminState> {
        let before = AdminState::from_u8(self.admin.swap(state as u8, Relaxed));
        if before == state {
            return None;
        }
        self.last_change.store(super::unix_secs(), Relaxed);
        Some(before)
    }

    /// An operator's `set server … state` / `enable|disable server`: as
    /// [`set_admin`](Self::set_admin), and leaving MAINT starts the server
    /// UP again, as HAProxy does: a checked server at `rise` (UP, and
    /// DOWN again at the first failed check), any other one UP whatever
    /// health an operator forced on it (unchecked, a forced DOWN would
    /// otherwise last until `health up`). `rise`: the upstream's checks.
    pub fn set_admin_by_operator(&self, state: AdminState, rise: Option<u32>) -> bool {
        let Some(before) = self.swap_admin(state) else {
            return false;
        };
        if before == AdminState::Maint {
            if let Some(rise) = rise.filter(|_| self.is_checked()) {
                self.health.store(rise, Relaxed);
            }
            if self.check_down.swap(OP_UP, Relaxed) == OP_DOWN {
                self.clear_passive_marks();
            }
        }
        true
    }

    /// A state file's `srv_time_since_last_change` (written `secs_ago`
    /// seconds before `now_unix`): `lastchg` goes on across a restart or an
    /// upgrade, as HAProxy restores it.
    pub fn restore_last_change(&self, now_unix: u64, secs_ago: u64) {
        self.last_change
            .store(now_unix.saturating_sub(secs_ago), Relaxed);
    }

    /// Stores a weight; returns the previous one. `Shm::set_weight` is the
    /// public way: it also tells the workers' hash rings.
    pub(super) fn swap_weight(&self, weight: u32) -> Result<u32, WeightOutOfRange> {
        if weight > MAX_WEIGHT {
            return Err(WeightOutOfRange(weight));
        }
        Ok(self.weight.swap(weight, Relaxed))
    }

    /// Sets the in-flight limit (0 = none); returns the previous one.
    /// Any 32-bit value is taken, as HAProxy's `set maxconn server` does.
    pub fn set_maxconn(&self, maxconn: u32) -> u32 {
        self.maxconn.swap(maxconn, Relaxed)
    }

    /// A new generation's starting state: READY with its configured weight
    /// and, when `health` is given (checks configured), UP with that
    /// health counter.
    pub fn init(&self, weight: u32, health: Option<u32>, now_unix: u64) {
        self.weight.store(weight.min(MAX_WEIGHT), Relaxed);
        self.admin.store(AdminState::Ready as u8, Relaxed);
        self.checked.store(u8::from(health.is_some()), Relaxed);
        self.health.store(health.unwrap_or(0), Relaxed);
        self.last_change.store(now_unix, Relaxed);
    }

    /// On a reload, what an operator and the checks decided about the same
    /// server in the previous generation (`old`): its admin state, its
    /// weight and maxconn if changed at runtime (`old_configured` is what
    /// the old configuration gave it) and not changed in the file since,
    /// its health as `health` says, and when its state changed.
    pub fn carry_over(&self, old: &ServerShared, old_configured: Configured, health: HealthCarry) {
        self.admin.store(old.admin.load(Relaxed), Relaxed);
        // A value changed at runtime stays while the file still configures
        // what it was changed from (`init` stored the new file's value);
        // a file that changed it wins, as HAProxy's server state does.
        let old_weight = old.weight.load(Relaxed);
        if old_weight != old_configured.weight && self.weight.load(Relaxed) == old_configured.weight
        {
            self.weight.store(old_weight, Relaxed);
        }
        let old_maxconn = old.maxconn.load(Relaxed);
        if old_maxconn != old_configured.maxconn
            && self.maxconn.load(Relaxed) == old_configured.maxconn
        {
            self.maxconn.store(old_maxconn, Relaxed);
        }
        match health {
            HealthCarry::Checked { full } => {
                self.check_down.store(old.check_down.load(Relaxed), Relaxed);
                self.health
                    .store(old.health.load(Relaxed).min(full), Relaxed);
            }
            // Unchecked in both: what an operator forced (`set server …
            // health down|stopping`) holds until they change it.
            HealthCarry::Forced => {
                self.check_down.store(old.check_down.load(Relaxed), Relaxed);
            }
            HealthCarry::Nothing => {}
        }
        self.last_change
            .store(old.last_change.load(Relaxed), Relaxed);
    }

    /// A runtime server change (`add server`, `del server`, `set server
    /// addr`) starts a new generation of the same configuration plus that
    /// change: unlike a reload, the server's counters go on from where the
    /// old generation's are (as HAProxy's do: its servers are not
    /// recreated). What is in flight is not copied — the old generation's
    /// workers finish those requests and count them there. Passive marks
    /// go on too: a server live traffic just found failing stays out
    /// until its `fail_timeout`, whatever else an operator changed.
    pub fn carry_counters(&self, old: &ServerShared) {
        for (new, old) in self.duration_buckets.iter().zip(&old.duration_buckets) {
            new.store(old.load(Relaxed), Relaxed);
        }
        self.fails.store(old.fails.load(Relaxed), Relaxed);
        self.down_until_ms
            .store(old.down_until_ms.load(Relaxed), Relaxed);
        let pairs = [
            (&self.requests, &old.requests),
            (&self.bytes_in, &old.bytes_in),
            (&self.bytes_out, &old.bytes_out),
            (&self.connect_errors, &old.connect_errors),
            (&self.failed_conns, &old.failed_conns),
            (&self.response_errors, &old.response_errors),
            (&self.redispatches, &old.redispatches),
            (&self.selections, &old.selections),
            (&self.downtime, &old.downtime),
            (&self.check_fails, &old.check_fails),
            (&self.check_downs, &old.check_downs),
            (&self.last_check_us, &old.last_check_us),
            (&self.last_session, &old.last_session),
        ];
        for (new, old) in pairs
            .into_iter()
            .chain(self.responses.iter().zip(&old.responses))
        {
            new.store(old.load(Relaxed), Relaxed);
        }
        self.max_active.store(old.max_active.load(Relaxed), Relaxed);
        self.max_queued.store(old.max_queued.load(Relaxed), Relaxed);
        self.last_check_code
            .store(old.last_check_code.load(Relaxed), Relaxed);
        self.last_check_ok
            .store(old.last_check_ok.load(Relaxed), Relaxed);
        self.checked.store(old.checked.load(Relaxed), Relaxed);
        // Rates are the master's to sample again; their maxima and the
        // time averages go on.
        self.rate_max.store(old.rate_max.load(Relaxed), Relaxed);
        for (new, old) in self
            .times
            .iter()
            .zip(&old.times)
            .chain(self.times_max.iter().zip(&old.times_max))
        {
            new.store(old.load(Relaxed), Relaxed);
        }
    }

    // ----- readers ----------------------------------------------------------

    pub fn stats(&self) -> ServerStats {
        let code = self.last_check_code.load(Relaxed) as u16;
        let duration = Duration::from_micros(self.last_check_us.load(Relaxed));
        // HAProxy's window: the requests so far, at most TIME_SAMPLES.
        let samples = self.requests.load(Relaxed).min(u64::from(TIME_SAMPLES)) as u32;
        ServerStats {
            admin: self.admin(),
            health: self.health_state(),
            checked: self.is_checked(),
            stopping: self.check_down.load(Relaxed) == OP_STOPPING,
            passive_down: self.passively_down(super::monotonic_ms()),
            weight: self.weight.load(Relaxed),
            maxconn: self.maxconn.load(Relaxed),
            active: self.active.load(Relaxed),
            max_active: self.max_active.load(Relaxed),
            queued: self.queued.load(Relaxed),
            max_queued: self.max_queued.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            failed_conns: self.failed_conns.load(Relaxed),
            response_errors: self.response_errors.load(Relaxed),
            redispatches: self.redispatches.load(Relaxed),
            selections: self.selections.load(Relaxed),
            responses: std::array::from_fn(|k| self.responses[k].load(Relaxed)),
            last_change: self.last_change.load(Relaxed),
            downtime: self.downtime.load(Relaxed),
            check_fails: self.check_fails.load(Relaxed),
            check_downs: self.check_downs.load(Relaxed),
            last_check: match self.last_check_ok.load(Relaxed) {
                CHECK_NONE => LastCheck::None,
                CHECK_PASSED => LastCheck::Passed { code, duration },
                failed => LastCheck::Failed {
                    code,
                    duration,
                    why: CheckFailure::decoded(failed),
                },
            },
            last_session: self.last_session.load(Relaxed),
            rate: self.rate.load(Relaxed),
            rate_max: self.rate_max.load(Relaxed),
            times: Timing::from_array(std::array::from_fn(|k| {
                swrate_avg(self.times[k].load(Relaxed), samples)
            })),
            time_samples: samples,
            times_max: Timing::from_array(std::array::from_fn(|k| self.times_max[k].load(Relaxed))),
        }
    }
}
