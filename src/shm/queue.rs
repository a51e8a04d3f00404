//! The shared half of the request queues of servers with `maxconn`: what
//! every worker must see to keep the queues FIFO across workers, and the
//! eventfds that wake a worker when a slot frees.
//!
//! Each worker keeps its own waiters (a request cannot move between
//! processes) in the order of tickets drawn from its upstream's shared
//! counter, and publishes, per upstream, its oldest waiter not bound to a
//! server and whether it has waiters at all (`WorkerQueue`). A freed slot
//! wakes the workers with waiters; each lets its waiters take slots only
//! while none older waits in another worker, so the oldest waiter of the
//! backend goes first whichever worker holds it.
//!
//! Orderings: a waiter counts itself (`queued`, SeqCst) before it looks
//! for a slot once more, and whoever frees a slot takes its `active` down
//! (SeqCst) before it reads `queued`: of the two, at least one sees the
//! other, so no waiter sleeps beside a free slot. On x86 these SeqCst
//! operations are the same instructions as Relaxed ones.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};

/// "No waiter" in `WorkerQueue::oldest_unbound`.
pub const NO_TICKET: u64 = u64::MAX;

/// One upstream's queue counters. Written only while requests queue, so
/// the loads every request makes (`queued`) hit a clean cache line.
#[repr(C, align(64))]
#[derive(Default)]
pub struct QueueShared {
    /// Tickets, in the order requests started waiting.
    next_ticket: AtomicU64,
    /// Waiters not bound to a server (the BACKEND row's `qcur`).
    queued: AtomicU32,
    /// Most waiters seen at once (`qmax`).
    max_queued: AtomicU32,
    /// Requests answered 503 after `timeouts.queue` (HAProxy's `sQ`; its
    /// BACKEND row counts them as connection errors).
    timeouts: AtomicU64,
}

impl QueueShared {
    /// Waiters not bound to a server, over all workers.
    #[inline]
    pub fn queued(&self) -> u32 {
        self.queued.load(SeqCst)
    }

    pub fn max_queued(&self) -> u32 {
        self.max_queued.load(Relaxed)
    }

    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Relaxed)
    }

    /// The next ticket (FIFO order over all workers); never 0, which
    /// zeroed memory holds.
    pub fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Relaxed) + 1
    }

    /// A waiter not bound to a server starts waiting.
    pub fn add_waiter(&self) {
        let now = self.queued.fetch_add(1, SeqCst) + 1;
        self.max_queued.fetch_max(now, Relaxed);
    }

    /// It stops (served, timed out or gone).
    pub fn remove_waiter(&self) {
        let _ = self
            .queued
            .fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1));
    }

    pub fn count_timeout(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    /// `clear counters`: the maximum starts over from now.
    pub fn clear_max(&self) {
        self.max_queued.store(self.queued.load(Relaxed), Relaxed);
    }

    /// A runtime server change's new generation goes on from the old
    /// generation's maximum and timeouts (its waiters stay there).
    pub fn carry_counters(&self, old: &QueueShared) {
        self.max_queued.store(old.max_queued.load(Relaxed), Relaxed);
        self.timeouts.store(old.timeouts.load(Relaxed), Relaxed);
    }

    /// `clear counters all`.
    pub fn clear_counters(&self) {
        self.timeouts.store(0, Relaxed);
        self.clear_max();
    }
}

/// What one worker publishes about its waiters of one upstream. Written
/// by that worker only.
#[repr(C)]
#[derive(Default)]
pub struct WorkerQueue {
    /// The ticket of its oldest waiter not bound to a server, or
    /// `NO_TICKET`.
    oldest_unbound: AtomicU64,
    /// How many requests it has waiting (bound or not).
    waiting: AtomicU32,
    /// How many of them are not bound to a server (counted in the
    /// upstream's `queued`): what a worker taking over the slot of one
    /// that died takes back out of it.
    unbound: AtomicU32,
}

impl WorkerQueue {
    #[inline]
    pub fn oldest_unbound(&self) -> u64 {
        // Zeroed memory means "no waiter" too: tickets start at 1 there.
        match self.oldest_unbound.load(SeqCst) {
            0 => NO_TICKET,
            t => t,
        }
    }

    #[inline]
    pub fn waiting(&self) -> u32 {
        self.waiting.load(SeqCst)
    }

    /// Publishes the worker's oldest unbound ticket (`NO_TICKET`: none)
    /// and its numbers of waiters: all, and those not bound to a server.
    pub fn publish(&self, oldest_unbound: u64, waiting: u32, unbound: u32) {
        self.oldest_unbound.store(oldest_unbound, SeqCst);
        self.waiting.store(waiting, SeqCst);
        self.unbound.store(unbound, Relaxed);
    }

    /// A worker starts in this slot: whatever a previous worker of the
    /// slot (which died) published is void. Its unbound waiters leave the
    /// upstream's count (`queue`) — else they would hold every later
    /// request back behind them for ever. (Its bound waiters stay in
    /// their servers' `qcur`, which only makes new requests for those
    /// servers go through the queue, served at once.) Returns how many
    /// unbound waiters left (their upstream's sessions end with them).
    pub fn reset(&self, queue: &QueueShared) -> u32 {
        let unbound = self.unbound.swap(0, Relaxed);
        for _ in 0..unbound {
            queue.remove_waiter();
        }
        self.publish(NO_TICKET, 0, 0);
        unbound
    }
}

/// One eventfd per worker slot, made by the master before it forks, so
/// any process of the generation can wake any worker: the worker has it
/// in its epoll set. A write adds to the counter (never blocks in practice:
/// it would need 2^64 - 2 unread wakes); the worker reads it back to zero.
pub struct Wakers {
    fds: Vec<OwnedFd>,
}

impl Wakers {
    pub fn new(workers: usize) -> std::io::Result<Wakers> {
        let fds = (0..workers)
            .map(|_| {
                // SAFETY: plain syscall; the result is checked.
                let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
                if fd < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    // SAFETY: a new descriptor nobody else owns.
                    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
                }
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Wakers { fds })
    }

    /// Worker `w`'s eventfd (for its epoll set).
    pub fn fd(&self, w: usize) -> Option<i32> {
        self.fds.get(w).map(AsRawFd::as_raw_fd)
    }

    /// Wakes worker `w`.
    pub fn wake(&self, w: usize) {
        if let Some(fd) = self.fd(w) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to our eventfd. A
            // failure (EAGAIN at a saturated counter) means it is awake.
            unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
        }
    }

    /// Resets worker `w`'s eventfd after a wake (its own).
    pub fn drain(&self, w: usize) {
        if let Some(fd) = self.fd(w) {
            let mut n: u64 = 0;
            // SAFETY: reads 8 bytes into a valid u64 (EAGAIN when unset).
            unsafe { libc::read(fd, std::ptr::addr_of_mut!(n).cast(), 8) };
        }
    }
}
