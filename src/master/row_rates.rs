//! `show stat`'s per-row rates (`rate`, `req_rate`, `conn_rate` and their
//! maxima), as HAProxy reports them: per server and per backend the
//! requests of the last second, per frontend its connections and requests.
//! Workers only count totals; the master samples them once a second (with
//! `rates`) and publishes the differences in shared memory, where the admin
//! socket and `metrics: haproxy` read them.

use crate::shm::Shm;
use std::time::Instant;

/// The totals at the previous sample, for one generation's shared memory.
#[derive(Debug, Default)]
pub struct RowRates {
    at: Option<Instant>,
    /// The configuration generation the totals were read from: a reload
    /// starts new counters, which do not compare with the old ones.
    generation: u64,
    /// Per upstream, per server slot: requests so far.
    servers: Vec<Vec<u64>>,
    /// Per listener: (connections, requests) so far.
    listeners: Vec<(u64, u64)>,
}

impl RowRates {
    /// Samples every row of generation `generation`'s `shm` at `now`:
    /// rates since the last sample are published, the totals kept for the
    /// next one.
    pub fn sample(&mut self, shm: &Shm, generation: u64, listeners: usize, now: Instant) {
        let elapsed = match self.at {
            Some(at) if self.generation == generation => Some(now.saturating_duration_since(at)),
            _ => None,
        }
        .filter(|d| !d.is_zero());
        let per_sec = |delta: u64| -> u32 {
            let Some(d) = elapsed else { return 0 };
            let rate = u128::from(delta) * 1_000_000 / d.as_micros().max(1);
            u32::try_from(rate).unwrap_or(u32::MAX)
        };

        let (servers, listeners) = totals(shm, listeners);

        if elapsed.is_some() {
            for (u, now_u) in servers.iter().enumerate() {
                let mut backend = 0;
                for (s, &n) in now_u.iter().enumerate() {
                    let before = self.servers.get(u).and_then(|v| v.get(s)).copied();
                    // A counter cleared (`clear counters all`) or a slot
                    // new since the last sample: nothing to compare.
                    let delta = before.map_or(0, |b| n.saturating_sub(b));
                    backend += delta;
                    shm.server(u, s).set_rate(per_sec(delta));
                }
                shm.upstream(u).set_rate(per_sec(backend));
            }
            for (l, &(conns, requests)) in listeners.iter().enumerate() {
                let (c0, r0) = self.listeners.get(l).copied().unwrap_or((conns, requests));
                if let Some(ls) = shm.listener(l) {
                    ls.set_rates(
                        per_sec(conns.saturating_sub(c0)),
                        per_sec(requests.saturating_sub(r0)),
                    );
                }
            }
        }
        self.at = Some(now);
        self.generation = generation;
        self.servers = servers;
        self.listeners = listeners;
    }

    /// `clear counters`: the next rates count from now, nothing published.
    pub fn rebase(&mut self, shm: &Shm, generation: u64, listeners: usize, now: Instant) {
        (self.servers, self.listeners) = totals(shm, listeners);
        self.at = Some(now);
        self.generation = generation;
    }
}

/// Per upstream per server its requests so far; per listener its
/// (connections, requests) so far.
type Totals = (Vec<Vec<u64>>, Vec<(u64, u64)>);

fn totals(shm: &Shm, listeners: usize) -> Totals {
    let servers = (0..shm.upstream_count())
        .map(|u| {
            (0..shm.servers_of(u))
                .map(|s| shm.server(u, s).requests())
                .collect()
        })
        .collect();
    let listeners = (0..listeners)
        .map(|l| {
            let st = shm.listener_stats(l);
            (st.conns_total, st.requests)
        })
        .collect();
    (servers, listeners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_are_per_second_per_row_and_start_over_at_a_reload() {
        let shm = Shm::create_with_listeners(&[2], 1, 1).expect("shm");
        let t = Instant::now();
        let mut r = RowRates::default();
        r.sample(&shm, 1, 1, t);
        for _ in 0..30 {
            shm.server(0, 0).begin_request();
        }
        for _ in 0..10 {
            shm.server(0, 1).begin_request();
        }
        if let Some(c) = shm.listener_counts(0, 0) {
            for _ in 0..5 {
                shm.listener_opened(0, 0);
                c.count_request();
            }
        }
        r.sample(&shm, 1, 1, t + Duration::from_millis(500));
        assert_eq!(shm.server(0, 0).stats().rate, 60);
        assert_eq!(shm.server(0, 1).stats().rate, 20);
        assert_eq!(shm.upstream(0).rates(), (80, 80));
        let l = shm.listener(0).map(|l| l.rates()).unwrap_or_default();
        assert_eq!((l.conn_rate, l.req_rate), (10, 10));
        // A quiet second: the rates drop, the maxima stay.
        r.sample(&shm, 1, 1, t + Duration::from_millis(1500));
        assert_eq!(shm.server(0, 0).stats().rate, 0);
        assert_eq!(shm.server(0, 0).stats().rate_max, 60);
        assert_eq!(shm.upstream(0).rates(), (0, 80));
        // The next generation's mapping (a reload): its first sample has
        // nothing to compare with.
        let other = Shm::create_with_listeners(&[2], 1, 1).expect("shm");
        for _ in 0..50 {
            other.server(0, 0).begin_request();
        }
        r.sample(&other, 2, 1, t + Duration::from_millis(2500));
        assert_eq!(other.server(0, 0).stats().rate, 0);
    }
}
