//! Connection deadlines: a min-heap with lazy deletion. Each connection keeps
//! its current deadline; a heap entry whose deadline no longer matches the
//! connection's (or whose connection id was reused) is skipped when popped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    /// Schedules a check of connection `slot` (with unique id `id`) at `at`.
    pub fn schedule(&mut self, at: Instant, slot: usize, id: u64) {
        self.heap.push(Reverse((at, slot, id)));
    }

    /// The earliest scheduled instant, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((_, slot, id))| (slot, id))
            }
            _ => None,
        }
    }
}
