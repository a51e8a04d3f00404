//! Connection and request totals over the instance's lifetime, across
//! reloads (`show info`'s CurrConns, CumConns, CumReq), as HAProxy reports
//! them for its process.
//!
//! Workers count into their generation's shared memory, and a reload gives
//! the new generation a fresh mapping. So the master keeps each replaced
//! mapping while that generation's workers drain — they go on counting the
//! requests they finish — and only once the last of them has been reaped
//! (nothing can count there any more) folds its final totals into a sum and
//! lets the mapping go. Every generation is thus read from its own memory
//! while it may change and from the sum afterwards, never both: nothing is
//! lost or counted twice, and the totals never go down.

use crate::shm::{Shm, WorkerTotals};
use std::sync::Arc;

#[derive(Default)]
pub struct LifetimeTotals {
    /// Generations whose workers have all exited.
    finished: WorkerTotals,
    /// Replaced generations whose workers may still be draining.
    retiring: Vec<(u64, Arc<Shm>)>,
}

impl LifetimeTotals {
    /// A reload replaced `generation`, whose state is `shm`.
    pub fn retire(&mut self, generation: u64, shm: Arc<Shm>) {
        self.retiring.push((generation, shm));
    }

    /// Folds the retiring generations with no live worker left (`live`
    /// says whether a generation still has one) into the finished sum.
    pub fn collect(&mut self, live: impl Fn(u64) -> bool) {
        let finished = &mut self.finished;
        self.retiring.retain(|(generation, shm)| {
            if live(*generation) {
                return true;
            }
            let t = shm.worker_totals();
            // Its workers are gone: whatever `conns_current` still says
            // (a worker killed mid-connection) is no connection now.
            finished.conns_total += t.conns_total;
            finished.requests += t.requests;
            finished.accept_wakeups += t.accept_wakeups;
            false
        });
    }

    /// The instance's totals, with `current` the running generation's state.
    pub fn totals(&self, current: &Shm) -> WorkerTotals {
        let mut t = self.finished;
        for shm in std::iter::once(current).chain(self.retiring.iter().map(|(_, s)| &**s)) {
            let g = shm.worker_totals();
            t.conns_current += g.conns_current;
            t.conns_total += g.conns_total;
            t.requests += g.requests;
            t.accept_wakeups += g.accept_wakeups;
        }
        t
    }

    /// In a forked child: unmap the old generations it has no use for.
    pub fn forget(&mut self) {
        self.retiring.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generation whose workers opened `conns` connections (`current`
    /// still open) and received `requests` requests.
    fn generation(conns: u64, requests: u64, current: u64) -> Arc<Shm> {
        let shm = Shm::create(&[1], 2).unwrap();
        for _ in 0..conns {
            shm.worker(0).connection_opened();
        }
        for _ in current..conns {
            shm.worker(0).connection_closed();
        }
        for _ in 0..requests {
            shm.worker(1).count_request();
        }
        Arc::new(shm)
    }

    #[test]
    fn draining_generations_count_until_folded_once() {
        let mut life = LifetimeTotals::default();
        let first = generation(10, 20, 2);
        let second = generation(5, 7, 1);
        life.retire(1, Arc::clone(&first));
        let t = life.totals(&second);
        assert_eq!((t.conns_current, t.conns_total, t.requests), (3, 15, 27));
        // Generation 1 still drains and still counts.
        for _ in 0..3 {
            first.worker(1).count_request();
        }
        life.collect(|g| g == 1);
        assert_eq!(life.totals(&second).requests, 30);
        // Its last worker exited (one connection left behind by a kill).
        life.collect(|_| false);
        let t = life.totals(&second);
        assert_eq!((t.conns_current, t.conns_total, t.requests), (1, 15, 30));
        assert!(life.retiring.is_empty());
        // Folding again adds nothing.
        life.collect(|_| false);
        assert_eq!(life.totals(&second).requests, 30);
    }
}
