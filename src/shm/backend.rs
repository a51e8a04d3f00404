//! Whether an upstream as a whole is UP or DOWN, and its history: the
//! BACKEND row's `chkdown`, `lastchg` and `downtime`, HAProxy's
//! `down_trans`, `last_change` and `down_time` of a backend. It is DOWN
//! while none of its servers may take new requests (HAProxy: no active
//! and no backup server left).
//!
//! Nothing recomputes it on a timer of its own: whoever changes a server's
//! usability looks (the health checker after a transition, the master
//! after an operator's change, a worker after a passive mark), the master
//! looks once a second (a passive mark ends by itself when its
//! `fail_timeout` is over), and so does every reader of the BACKEND row,
//! from the very servers it shows — so its status and `lastchg` never
//! disagree. Any process may look: a transition is taken with a
//! compare-exchange, so of two that see it, one counts it.

use std::sync::atomic::{
    AtomicU64, AtomicU8,
    Ordering::{AcqRel, Relaxed},
};

/// Not looked at yet (zeroed memory): the first look sets the state
/// without counting a transition.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// One upstream's state. Written only on transitions, so a cache line
/// of its own costs nothing on the data path.
#[repr(C, align(64))]
#[derive(Default)]
pub struct BackendShared {
    state: AtomicU8,
    /// Unix seconds of the last transition (or of the generation's start).
    last_change: AtomicU64,
    /// UP→DOWN transitions (`chkdown`). Like the rest, not zeroed by
    /// `clear counters all`: HAProxy keeps a backend's outside the
    /// counters it clears.
    down_trans: AtomicU64,
    /// Seconds DOWN before the current state (`downtime` without the
    /// current DOWN period).
    downtime: AtomicU64,
}

/// A copy of [`BackendShared`], as the BACKEND row shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendHistory {
    pub down: bool,
    pub last_change: u64,
    pub down_trans: u64,
    /// Seconds DOWN in total, the current DOWN period included.
    pub downtime: u64,
}

impl BackendShared {
    /// A generation starts (`now`: unix seconds); its first look sets the
    /// state.
    pub fn start(&self, now: u64) {
        self.last_change.store(now, Relaxed);
    }

    /// Whether some server may take requests (`usable`) at unix second
    /// `now`: a change from the last look is a transition, stamped and
    /// counted. Returns whether this call made one.
    pub fn observe(&self, usable: bool, now: u64) -> bool {
        let want = if usable { UP } else { DOWN };
        let before = self.state.swap(want, AcqRel);
        if before == want || before == UNKNOWN {
            return false;
        }
        let since = self.last_change.swap(now, Relaxed);
        if usable {
            self.downtime.fetch_add(now.saturating_sub(since), Relaxed);
        } else {
            self.down_trans.fetch_add(1, Relaxed);
        }
        true
    }

    pub fn history(&self, now: u64) -> BackendHistory {
        let down = self.state.load(Relaxed) == DOWN;
        let last_change = self.last_change.load(Relaxed);
        let current = if down {
            now.saturating_sub(last_change)
        } else {
            0
        };
        BackendHistory {
            down,
            last_change,
            down_trans: self.down_trans.load(Relaxed),
            downtime: self.downtime.load(Relaxed) + current,
        }
    }

    /// On a reload, the upstream of the same name in the previous
    /// generation: its state and when it last changed go on (as a
    /// server's `last_change` does); with `counters` (a runtime server
    /// change, not a reload) its transitions and downtime too.
    pub fn carry_over(&self, old: &BackendShared, counters: bool) {
        self.state.store(old.state.load(Relaxed), Relaxed);
        self.last_change
            .store(old.last_change.load(Relaxed), Relaxed);
        if counters {
            self.down_trans.store(old.down_trans.load(Relaxed), Relaxed);
            self.downtime.store(old.downtime.load(Relaxed), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_stamp_count_and_add_up_downtime() {
        let b = BackendShared::default();
        b.start(100);
        // The first look sets the state: no transition, even DOWN.
        assert!(!b.observe(false, 101));
        let h = b.history(105);
        assert_eq!(
            (h.down, h.last_change, h.down_trans, h.downtime),
            (true, 100, 0, 5)
        );
        assert!(b.observe(true, 110));
        assert!(!b.observe(true, 111));
        assert!(b.observe(false, 120));
        assert_eq!(b.history(123).downtime, 10 + 3);
        assert!(b.observe(true, 130));
        let h = b.history(200);
        assert_eq!(
            (h.down, h.last_change, h.down_trans, h.downtime),
            (false, 130, 1, 20)
        );
        // A reload keeps the state and its time, a runtime change all.
        let (reloaded, changed) = (BackendShared::default(), BackendShared::default());
        reloaded.carry_over(&b, false);
        changed.carry_over(&b, true);
        assert_eq!(reloaded.history(200).down_trans, 0);
        assert_eq!(reloaded.history(200).last_change, 130);
        assert_eq!(changed.history(200), h);
    }
}
