//! Rates over the last second for `show info` (ConnRate, SessRate,
//! MaxConnRate, Idle_pct), as HAProxy reports them. The workers only count
//! their cumulative totals; the master samples the sums once a second, and
//! the CPU time the kernel accounts to the workers (`/proc/PID/stat`), and
//! keeps the differences, so the data path pays nothing for rates.

use std::time::{Duration, Instant};

/// How often the master samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// Connections accepted, requests: over the instance's lifetime.
    pub conns: u64,
    pub requests: u64,
    /// CPU microseconds the current generation's workers have used,
    /// summed; how many workers that is, and their pids summed (a
    /// respawned worker starts its CPU time over).
    pub busy_us: u64,
    pub workers: usize,
    pub pids: u64,
}

/// What `show info` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateView {
    pub conn_rate: u64,
    pub max_conn_rate: u64,
    pub req_rate: u64,
    pub max_req_rate: u64,
    pub idle_pct: u64,
}

impl Default for RateView {
    fn default() -> RateView {
        RateView {
            conn_rate: 0,
            max_conn_rate: 0,
            req_rate: 0,
            max_req_rate: 0,
            // Nothing measured yet: nothing was busy.
            idle_pct: 100,
        }
    }
}

#[derive(Debug, Default)]
pub struct Rates {
    last: Option<Sample>,
    view: RateView,
}

impl Rates {
    /// Takes a sample; the rates become those since the previous one.
    pub fn sample(&mut self, s: Sample) {
        if let Some(prev) = self.last {
            let elapsed = s.at.saturating_duration_since(prev.at);
            let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            if micros > 0 {
                let per_sec = |delta: u64| {
                    u64::try_from(u128::from(delta) * 1_000_000 / u128::from(micros))
                        .unwrap_or(u64::MAX)
                };
                let v = &mut self.view;
                v.conn_rate = per_sec(s.conns.saturating_sub(prev.conns));
                v.req_rate = per_sec(s.requests.saturating_sub(prev.requests));
                v.max_conn_rate = v.max_conn_rate.max(v.conn_rate);
                v.max_req_rate = v.max_req_rate.max(v.req_rate);
                // Other workers than a second ago (a reload, a respawn):
                // their CPU times do not compare, the sample says nothing.
                if s.busy_us >= prev.busy_us
                    && s.workers > 0
                    && (s.workers, s.pids) == (prev.workers, prev.pids)
                {
                    let capacity = u128::from(micros) * s.workers as u128;
                    let busy = (u128::from(s.busy_us - prev.busy_us) * 100 / capacity).min(100);
                    v.idle_pct = 100 - u64::try_from(busy).unwrap_or(100);
                }
            }
        }
        self.last = Some(s);
    }

    pub fn view(&self) -> RateView {
        self.view
    }

    /// `clear counters`: the maxima start over at 0, as HAProxy's, and the
    /// next rates are those since `now`, the totals at the clear.
    pub fn clear_max(&mut self, now: Sample) {
        self.view.max_conn_rate = 0;
        self.view.max_req_rate = 0;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64, conns: u64, requests: u64, busy_us: u64) -> Sample {
        Sample {
            at: base + Duration::from_millis(ms),
            conns,
            requests,
            busy_us,
            workers: 2,
            pids: 201,
        }
    }

    #[test]
    fn rates_are_per_second_between_samples() {
        let t = Instant::now();
        let mut r = Rates::default();
        assert_eq!(r.view(), RateView::default());
        r.sample(at(t, 0, 100, 1000, 0));
        r.sample(at(t, 1000, 150, 1400, 1_000_000));
        let v = r.view();
        assert_eq!((v.conn_rate, v.req_rate), (50, 400));
        // 1 s of CPU over 2 workers × 1 s: half idle.
        assert_eq!(v.idle_pct, 50);
        // A slower second: the maxima stay.
        r.sample(at(t, 3000, 160, 1500, 1_000_000));
        let v = r.view();
        assert_eq!((v.conn_rate, v.req_rate), (5, 50));
        assert_eq!((v.max_conn_rate, v.max_req_rate), (50, 400));
        assert_eq!(v.idle_pct, 100);
        // Cleared at 3.5 s: the maxima are 0, and the next rates count
        // from the clear, not from the sample before it.
        r.clear_max(at(t, 3500, 170, 1600, 1_000_000));
        assert_eq!((r.view().max_conn_rate, r.view().max_req_rate), (0, 0));
        r.sample(at(t, 4500, 171, 1602, 1_000_000));
        let v = r.view();
        assert_eq!((v.conn_rate, v.req_rate), (1, 2));
        assert_eq!((v.max_conn_rate, v.max_req_rate), (1, 2));
    }

    #[test]
    fn other_workers_do_not_compare() {
        let t = Instant::now();
        let mut r = Rates::default();
        r.sample(at(t, 0, 0, 0, 9_000_000));
        r.sample(at(t, 1000, 0, 0, 10_500_000));
        assert_eq!(r.view().idle_pct, 25);
        // A respawned worker: new pid, CPU time from zero.
        let mut s = at(t, 2000, 0, 0, 100_000);
        s.pids = 305;
        r.sample(s);
        assert_eq!(r.view().idle_pct, 25);
        let mut s = at(t, 3000, 0, 0, 100_000);
        s.pids = 305;
        r.sample(s);
        assert_eq!(r.view().idle_pct, 100);
    }
}
