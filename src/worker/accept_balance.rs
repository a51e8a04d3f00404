//! Spreading connections evenly over the workers.
//!
//! The listening socket is shared and registered with EPOLLEXCLUSIVE, so a
//! new connection wakes one waiting worker — but always the first waiting
//! one in the kernel's queue, and a worker that is quick to get back to
//! `epoll_wait` collects nearly every connection of a burst (50 keep-alive
//! clients connecting at once all end up on one core). So each worker
//! compares its open connections with the least loaded worker that is
//! accepting (shared memory, no syscalls) and steps aside — removes its
//! listeners from its epoll set — while it is clearly ahead; the kernel
//! then wakes the others. The least loaded accepting worker never steps
//! aside, so someone always accepts; a peer counts only while its
//! heartbeat is fresh, so a stopped or dead worker cannot hold the others
//! back.

use crate::shm::{AcceptState, Shm};
use std::time::Duration;

/// A worker refreshes its heartbeat at least this often, even when idle.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// A peer whose heartbeat is older than this is ignored.
const PEER_FRESH_MS: u64 = 1500;
/// While stepped aside, a worker looks again this often (a burst of new
/// connections is over in a few milliseconds).
pub const RECHECK: Duration = Duration::from_millis(5);

/// How many more open connections than the least loaded accepting peer a
/// worker may hold: a few, plus 1/8 of its own (short-lived connections
/// make the counts jitter; stepping aside costs two epoll_ctl calls).
fn slack(mine: usize) -> usize {
    2 + mine / 8
}

/// The worker is far enough ahead to stop accepting.
pub fn should_step_aside(mine: usize, least_peer: Option<usize>) -> bool {
    least_peer.is_some_and(|least| mine > least + slack(mine))
}

/// A worker that stepped aside may accept again (half the slack: hysteresis).
pub fn may_return(mine: usize, least_peer: Option<usize>) -> bool {
    least_peer.is_none_or(|least| mine <= least + slack(mine) / 2)
}

/// Open connections of the least loaded other live worker that accepts
/// or stepped aside (one that stepped aside comes back within `RECHECK`
/// once it is no longer ahead; counting it keeps the others from taking a
/// whole burst meanwhile).
pub fn least_loaded_peer(shm: &Shm, me: usize, now_ms: u64) -> Option<usize> {
    (0..shm.worker_count())
        .filter(|&w| w != me)
        .map(|w| shm.worker(w))
        .filter(|w| {
            matches!(
                w.accepting(),
                AcceptState::Accepting | AcceptState::SteppedAside
            ) && now_ms.saturating_sub(w.heartbeat_ms()) < PEER_FRESH_MS
        })
        .map(|w| w.conns_current() as usize)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_worker_clearly_ahead_steps_aside() {
        assert!(!should_step_aside(10, None));
        assert!(!should_step_aside(3, Some(1)));
        assert!(should_step_aside(4, Some(1)));
        assert!(!should_step_aside(100, Some(88)));
        assert!(should_step_aside(100, Some(80)));
        // The least loaded never steps aside.
        for mine in 0..500 {
            assert!(!should_step_aside(mine, Some(mine)));
            assert!(!should_step_aside(mine, Some(mine + 1)));
        }
    }

    #[test]
    fn return_has_hysteresis() {
        assert!(may_return(5, None));
        assert!(may_return(3, Some(2)));
        assert!(!may_return(4, Some(1)));
        for mine in 0..500 {
            for least in 0..mine {
                // Whoever may return would not step aside at once.
                assert!(!(may_return(mine, Some(least)) && should_step_aside(mine, Some(least))));
            }
        }
    }

    #[test]
    fn stale_or_non_accepting_peers_are_ignored() {
        let shm = Shm::create(&[1], 3).unwrap();
        let now = 10_000;
        let (on, off) = (AcceptState::Accepting, AcceptState::NotAccepting);
        for (w, (acc, beat, conns)) in [(on, now - 100, 7), (off, now, 1), (on, now - 5_000, 0)]
            .into_iter()
            .enumerate()
        {
            let s = shm.worker(w);
            s.set_accepting(acc);
            s.heartbeat(beat);
            for _ in 0..conns {
                s.connection_opened();
            }
        }
        // Worker 1 does not accept, worker 2 is stale: only worker 0 counts.
        assert_eq!(least_loaded_peer(&shm, 1, now), Some(7));
        shm.worker(1).set_accepting(AcceptState::SteppedAside);
        assert_eq!(least_loaded_peer(&shm, 0, now), Some(1));
        shm.worker(1).set_accepting(AcceptState::NotAccepting);
        assert_eq!(least_loaded_peer(&shm, 1, now), Some(7));
        assert_eq!(least_loaded_peer(&shm, 0, now), None);
    }
}
