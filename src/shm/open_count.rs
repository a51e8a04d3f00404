//! [`OpenCount`]: how many of something are open now over all workers, and
//! the most there were at once (HAProxy's `scur` and `smax`), in shared
//! memory. Zeroed memory is an empty count.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

#[repr(C)]
pub struct OpenCount {
    current: AtomicU32,
    max: AtomicU32,
}

impl OpenCount {
    /// One more open. The maximum is written only when passed, so a
    /// steady load costs the add alone.
    #[inline]
    pub fn open(&self) {
        let now = self.current.fetch_add(1, Relaxed) + 1;
        if now > self.max.load(Relaxed) {
            self.max.fetch_max(now, Relaxed);
        }
    }

    /// `n` fewer open; never below zero, even if opens and closes were
    /// mismatched (a worker that died).
    #[inline]
    pub fn close(&self, n: u32) {
        let _ = self
            .current
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }

    /// (open now, the most at once).
    pub fn get(&self) -> (u32, u32) {
        (self.current.load(Relaxed), self.max.load(Relaxed))
    }

    /// `clear counters`: the maximum starts over from what is open now.
    pub fn clear_max(&self) {
        self.max.store(self.current.load(Relaxed), Relaxed);
    }

    /// A new generation goes on from the old one's maximum (what is open
    /// stays the old one's to count).
    pub fn carry_max(&self, old: &OpenCount) {
        self.max.store(old.max.load(Relaxed), Relaxed);
    }
}
