//! The tables of `limit_req` and `limit_conn`: fixed-size, set-associative
//! tables of per-key state in their own `MAP_SHARED` mapping, one mapping
//! per table, created by the master before it forks the workers that use
//! it. A table outlives a reload: the master hands the same mapping to the
//! next generation when a route keeps its table name (see
//! `master::generation`), so old and new workers count against one state
//! and a `limit_conn` held by an old worker is released where it was taken.
//!
//! Layout: `size` entries (default `DEFAULT_ENTRIES`) of 64 bytes in sets of `WAYS`; a key's
//! set is chosen by its fingerprint (SipHash with a random per-table seed,
//! so a client cannot aim many keys at one set). A set is guarded by a
//! spinlock word holding the owner's pid: the critical section is a scan of
//! eight entries and a few stores — no syscall, no allocation, no page
//! fault after the first touch — and a lock is only ever contended by the
//! other workers touching the same set at the same instant. A leaky bucket
//! needs its excess and its timestamp updated together with the key match
//! and the eviction choice, which single atomics cannot express across
//! eight ways. A worker killed inside the section would leave the word set:
//! a waiter that spun long finds the owner gone (`kill(pid, 0)`, outside
//! any lock) and takes the lock over.
//!
//! An entry is identified by a 64-bit fingerprint and the key's first
//! `KEY_PREFIX` bytes; both must match, so two keys share an entry only if
//! they collide in 64 bits of a seeded hash *and* share their prefix.
//! Eviction: a free way first, then an entry whose state has fully decayed
//! (a drained bucket, no request in flight: forgetting it changes nothing),
//! then the least recently looked-up bucket. `limit_conn` entries with requests
//! in flight are never evicted; a set full of them refuses the request
//! (nginx refuses when its zone is full).

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

/// Entries of a table whose limit sets no `size`: 8192 × 64 bytes = 512 KiB
/// of shared memory.
pub const DEFAULT_ENTRIES: usize = 8192;
/// The bounds of a table's `size` (64 entries: 8 sets; 16M entries: 1 GiB).
pub const MIN_ENTRIES: usize = 64;
pub const MAX_ENTRIES: usize = 1 << 24;
const WAYS: usize = 8;
/// The largest `burst` (so that a bucket's level fits 32 bits).
pub const MAX_BURST: u32 = 1_000_000;
/// Key bytes kept for matching and for `show table`.
pub const KEY_PREFIX: usize = 32;
/// Spins before a waiter checks whether the lock's owner still lives.
const SPINS_BEFORE_CHECK: u32 = 1 << 16;

/// What a table limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// `limit_req`: a leaky bucket per key.
    Req,
    /// `limit_conn`: requests in flight per key.
    Conn,
}

#[repr(C, align(64))]
struct Entry {
    /// 0: free.
    fp: AtomicU64,
    /// Milliseconds since the table's epoch of the last accounted request
    /// (the bucket leaks from there).
    last_ms: AtomicU64,
    /// Milliseconds since the epoch of the last lookup, refused requests
    /// included (nginx moves a node to the head of its LRU queue on every
    /// lookup): the eviction order.
    seen_ms: AtomicU64,
    /// `limit_req`: the bucket's level in thousandths of a request (nginx's
    /// `excess`, at most `MAX_BURST` requests); `limit_conn`: requests in
    /// flight.
    level: AtomicU32,
    key_len: AtomicU32,
    key: [AtomicU8; KEY_PREFIX],
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64);

/// The answer of [`LimitTable::take_request`] and [`LimitTable::take_conn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the limit.
    Excess,
    /// No entry could be had (a `limit_conn` set full of busy keys).
    Full,
}

/// One entry of `show table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub addr: usize,
    pub key: Vec<u8>,
    /// Milliseconds until the entry has decayed (a bucket drained); 0 for
    /// `limit_conn` entries.
    pub exp_ms: u64,
    /// `limit_req`: the bucket's level in requests (rounded up).
    pub excess: u64,
    /// `limit_conn`: requests in flight.
    pub conns: u32,
}

pub struct LimitTable {
    name: String,
    kind: TableKind,
    /// The seed of the fingerprints: the same in every process (copied by
    /// fork), different for every table and every start.
    seed: std::collections::hash_map::RandomState,
    /// Timestamps are kept relative to this instant (CLOCK_MONOTONIC: the
    /// same clock in every process; the value itself is copied by fork).
    epoch: Instant,
    locks: *mut AtomicU32,
    entries: *mut Entry,
    /// Sets of `WAYS` entries.
    sets: usize,
    len: usize,
}

// SAFETY: the pointers refer to a mapping this value owns for its life
// (unmapped on drop); every access through them is to atomics.
unsafe impl Send for LimitTable {}
// SAFETY: as for Send.
unsafe impl Sync for LimitTable {}

impl LimitTable {
    /// A table of `entries` (rounded up to whole sets, within
    /// `MIN_ENTRIES..=MAX_ENTRIES`).
    pub fn create(name: &str, kind: TableKind, entries: usize) -> io::Result<LimitTable> {
        forget_pid_at_fork();
        let sets = Self::rounded_size(entries) / WAYS;
        let locks_len = (sets * std::mem::size_of::<AtomicU32>()).next_multiple_of(64);
        let len = locks_len + sets * WAYS * std::mem::size_of::<Entry>();
        // Zero-filled: zeroes are free entries and unlocked sets.
        let base = super::map_shared_zeroed(len)?;
        Ok(LimitTable {
            name: name.to_owned(),
            kind,
            seed: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
            locks: base.cast(),
            // SAFETY: locks_len < len; page-aligned base, 64-byte offset.
            entries: unsafe { base.add(locks_len) }.cast(),
            sets,
            len,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> TableKind {
        self.kind
    }

    /// The entries a table asked for `entries` has (whole sets, bounded).
    pub fn rounded_size(entries: usize) -> usize {
        entries
            .clamp(MIN_ENTRIES, MAX_ENTRIES)
            .next_multiple_of(WAYS)
    }

    /// Entries.
    pub fn size(&self) -> usize {
        self.sets * WAYS
    }

    /// The fingerprint of `key` (never 0, the mark of a free entry).
    pub fn fingerprint(&self, key: &[u8]) -> u64 {
        let mut h = self.seed.build_hasher();
        h.write(key);
        h.finish().max(1)
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn set_of(&self, fp: u64) -> usize {
        // The high bits: the low ones are the hasher's last mixed.
        (fp >> 32) as usize % self.sets
    }

    fn lock_word(&self, set: usize) -> &AtomicU32 {
        // SAFETY: set < sets (callers reduce it), inside the locks area.
        unsafe { &*self.locks.add(set % self.sets) }
    }

    /// Runs `f` with set `set` locked. `f` must not make syscalls.
    fn with_set<R>(&self, set: usize, f: impl FnOnce(&[Entry]) -> R) -> R {
        let set = set % self.sets;
        let word = self.lock_word(set);
        let me = my_pid();
        let mut spins = 0u32;
        loop {
            match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(owner) => {
                    spins += 1;
                    if spins >= SPINS_BEFORE_CHECK {
                        spins = 0;
                        if owner != 0 && !process_alive(owner) {
                            // The owner died inside the section: take over.
                            if word
                                .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                                .is_ok()
                            {
                                break;
                            }
                        }
                    }
                    std::hint::spin_loop();
                }
            }
        }
        // SAFETY: the set's WAYS entries are inside the table.
        let ways = unsafe { std::slice::from_raw_parts(self.entries.add(set * WAYS), WAYS) };
        let r = f(ways);
        word.store(0, Ordering::Release);
        r
    }

    /// nginx's `limit_req ... nodelay` for one request of `key`: `rate` in
    /// thousandths of a request per second, `burst` in requests.
    pub fn take_request(&self, key: &[u8], now: Instant, rate: u64, burst: u64) -> Verdict {
        let fp = self.fingerprint(key);
        let now_ms = self.now_ms(now);
        let burst = burst.saturating_mul(1000);
        self.with_set(self.set_of(fp), |ways| {
            if let Some(e) = find(ways, fp, key) {
                e.seen_ms.store(now_ms, Ordering::Relaxed);
                // nginx's `excess - rate * ms / 1000 + 1000`, floored at 0
                // after the request is added, not before: a bucket that
                // leaked more than it held takes this request as a new
                // key's first (so `burst: 0` lets a client in at the rate,
                // and a drained bucket takes 1 + burst at once).
                let elapsed = now_ms.saturating_sub(e.last_ms.load(Ordering::Relaxed));
                let held = u64::from(e.level.load(Ordering::Relaxed)).saturating_add(1000);
                let excess = leaked(held, rate, elapsed);
                if excess > burst {
                    return Verdict::Excess;
                }
                // excess <= burst <= MAX_BURST * 1000 < u32::MAX.
                e.level.store(excess as u32, Ordering::Relaxed);
                e.last_ms.store(now_ms, Ordering::Relaxed);
                return Verdict::Pass;
            }
            let victim = pick_victim(ways, now_ms, rate, false).unwrap_or(0);
            // A new key's first request leaves the bucket empty (nginx).
            claim(&ways[victim], fp, key, now_ms);
            Verdict::Pass
        })
    }

    /// `limit_conn`: one more request in flight for `key` unless it has
    /// `max`. On Pass the caller holds a [`ConnHold`] to release.
    pub fn take_conn(&self, key: &[u8], now: Instant, max: u32) -> (Verdict, usize, u64) {
        let fp = self.fingerprint(key);
        let now_ms = self.now_ms(now);
        let set = self.set_of(fp);
        self.with_set(set, |ways| {
            let (i, e) = match ways
                .iter()
                .position(|e| matches(e, fp, key))
                .map(|i| (i, &ways[i]))
            {
                Some(found) => found,
                None => match pick_victim(ways, now_ms, 0, true) {
                    Some(i) => {
                        claim(&ways[i], fp, key, now_ms);
                        (i, &ways[i])
                    }
                    None => return (Verdict::Full, 0, fp),
                },
            };
            e.seen_ms.store(now_ms, Ordering::Relaxed);
            let n = e.level.load(Ordering::Relaxed);
            if n >= max {
                return (Verdict::Excess, 0, fp);
            }
            e.level.store(n + 1, Ordering::Relaxed);
            e.seen_ms.store(now_ms, Ordering::Relaxed);
            (Verdict::Pass, set * WAYS + i, fp)
        })
    }

    /// Gives back one request in flight of the entry at `index` taken for
    /// fingerprint `fp` — unless the entry was cleared (`clear table`)
    /// since, then there is nothing to give back. (If the same key took the
    /// same entry again after the clear, this gives back one of its new
    /// requests: a clear may let a key one request over its `max` until
    /// its requests of before the clear have ended.)
    pub fn release_conn(&self, index: usize, fp: u64) {
        self.with_set(index / WAYS, |ways| {
            let e = &ways[index % WAYS];
            if e.fp.load(Ordering::Relaxed) == fp {
                let n = e.level.load(Ordering::Relaxed);
                e.level.store(n.saturating_sub(1), Ordering::Relaxed);
            }
        });
    }

    /// `clear table NAME key K`: forgets `key`; whether it was there.
    pub fn clear_key(&self, key: &[u8]) -> bool {
        let fp = self.fingerprint(key);
        self.with_set(self.set_of(fp), |ways| match find(ways, fp, key) {
            Some(e) => {
                e.fp.store(0, Ordering::Relaxed);
                e.level.store(0, Ordering::Relaxed);
                true
            }
            None => false,
        })
    }

    /// `clear table NAME`: forgets every key.
    pub fn clear_all(&self) {
        for set in 0..self.sets {
            self.with_set(set, |ways| {
                for e in ways {
                    e.fp.store(0, Ordering::Relaxed);
                    e.level.store(0, Ordering::Relaxed);
                }
            });
        }
    }

    /// The live entries (a decayed one is as good as absent: HAProxy's
    /// expired entries are not shown either). `rate` as for `take_request`.
    pub fn entries(&self, now: Instant, rate: u64) -> Vec<EntryView> {
        let now_ms = self.now_ms(now);
        let mut out = Vec::new();
        for set in 0..self.sets {
            self.with_set(set, |ways| {
                for e in ways {
                    if e.fp.load(Ordering::Relaxed) == 0 || decayed(e, now_ms, rate) {
                        continue;
                    }
                    let excess = current_excess(e, now_ms, rate);
                    let len = (e.key_len.load(Ordering::Relaxed) as usize).min(KEY_PREFIX);
                    out.push(EntryView {
                        addr: e as *const Entry as usize,
                        key: e.key[..len]
                            .iter()
                            .map(|b| b.load(Ordering::Relaxed))
                            .collect(),
                        exp_ms: (excess * 1000).checked_div(rate).unwrap_or(0),
                        excess: excess.div_ceil(1000),
                        conns: e.level.load(Ordering::Relaxed),
                    });
                }
            });
        }
        out
    }
}

impl Drop for LimitTable {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; other processes keep theirs.
        unsafe {
            libc::munmap(self.locks.cast(), self.len);
        }
    }
}

/// This process's pid, the owner mark of a set's lock. Cached: getpid is
/// a system call in glibc, and a lock is taken per request. A fork clears
/// the cache (`forget_pid_at_fork`), so a worker never marks locks with
/// the master's pid.
static PID: AtomicU32 = AtomicU32::new(0);

fn my_pid() -> u32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    let p = std::process::id().max(1);
    PID.store(p, Ordering::Relaxed);
    p
}

fn forget_pid_at_fork() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn child() {
        PID.store(0, Ordering::Relaxed);
    }
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(child));
        }
    });
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn matches(e: &Entry, fp: u64, key: &[u8]) -> bool {
    if e.fp.load(Ordering::Relaxed) != fp {
        return false;
    }
    let prefix = &key[..key.len().min(KEY_PREFIX)];
    e.key_len.load(Ordering::Relaxed) as usize == prefix.len()
        && e.key
            .iter()
            .zip(prefix)
            .all(|(a, b)| a.load(Ordering::Relaxed) == *b)
}

fn find<'a>(ways: &'a [Entry], fp: u64, key: &[u8]) -> Option<&'a Entry> {
    ways.iter().find(|e| matches(e, fp, key))
}

fn claim(e: &Entry, fp: u64, key: &[u8], now_ms: u64) {
    let prefix = &key[..key.len().min(KEY_PREFIX)];
    e.fp.store(fp, Ordering::Relaxed);
    e.last_ms.store(now_ms, Ordering::Relaxed);
    e.seen_ms.store(now_ms, Ordering::Relaxed);
    e.level.store(0, Ordering::Relaxed);
    e.key_len.store(prefix.len() as u32, Ordering::Relaxed);
    for (slot, b) in e.key.iter().zip(prefix) {
        slot.store(*b, Ordering::Relaxed);
    }
}

/// `excess` after `elapsed_ms` of leaking at `rate` (thousandths/s).
fn leaked(excess: u64, rate: u64, elapsed_ms: u64) -> u64 {
    excess.saturating_sub(rate.saturating_mul(elapsed_ms) / 1000)
}

/// The entry's level now: a bucket's excess after leaking since its last
/// accounted request; with `rate` 0 (`limit_conn`), the requests in flight.
fn current_excess(e: &Entry, now_ms: u64, rate: u64) -> u64 {
    let elapsed = now_ms.saturating_sub(e.last_ms.load(Ordering::Relaxed));
    leaked(u64::from(e.level.load(Ordering::Relaxed)), rate, elapsed)
}

/// Whether forgetting the entry changes nothing: no request in flight and
/// (for a bucket) fully drained.
fn decayed(e: &Entry, now_ms: u64, rate: u64) -> bool {
    current_excess(e, now_ms, rate) == 0
}

/// The way a new key takes: a free one, a decayed one, else (buckets only,
/// `busy_pinned` false) the least recently used.
fn pick_victim(ways: &[Entry], now_ms: u64, rate: u64, busy_pinned: bool) -> Option<usize> {
    if let Some(i) = ways.iter().position(|e| e.fp.load(Ordering::Relaxed) == 0) {
        return Some(i);
    }
    if let Some(i) = ways.iter().position(|e| decayed(e, now_ms, rate)) {
        return Some(i);
    }
    if busy_pinned {
        return None;
    }
    ways.iter()
        .enumerate()
        .min_by_key(|(_, e)| e.seen_ms.load(Ordering::Relaxed))
        .map(|(i, _)| i)
}

/// A request in flight counted in a `limit_conn` table: given back when
/// dropped (the response ended, or the client went away), wherever that
/// happens.
pub struct ConnHold {
    table: std::sync::Arc<LimitTable>,
    index: usize,
    fp: u64,
}

impl ConnHold {
    pub fn new(table: std::sync::Arc<LimitTable>, index: usize, fp: u64) -> ConnHold {
        ConnHold { table, index, fp }
    }
}

impl Drop for ConnHold {
    fn drop(&mut self) {
        self.table.release_conn(self.index, self.fp);
    }
}

impl std::fmt::Debug for ConnHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnHold({}, {})", self.table.name, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn leaky_bucket_nodelay() {
        let t = LimitTable::create("t", TableKind::Req, DEFAULT_ENTRIES).unwrap();
        let now = Instant::now();
        let pass = (0..100)
            .filter(|_| t.take_request(b"k", now, 20_000, 10) == Verdict::Pass)
            .count();
        assert_eq!(pass, 11);
        // 50 ms at 20/s leaks one request.
        let later = now + Duration::from_millis(50);
        assert_eq!(t.take_request(b"k", later, 20_000, 10), Verdict::Pass);
        assert_eq!(t.take_request(b"k", later, 20_000, 10), Verdict::Excess);
        // Another key is not limited by this one.
        assert_eq!(t.take_request(b"other", later, 20_000, 10), Verdict::Pass);
        assert!(t.clear_key(b"k"));
        assert_eq!(t.take_request(b"k", later, 20_000, 10), Verdict::Pass);
    }

    /// nginx floors the excess at 0 after adding the request: a key
    /// coming at the rate with no burst is never refused, and a drained
    /// bucket takes 1 + burst at once again, as a new key does.
    #[test]
    fn a_drained_bucket_takes_requests_as_a_new_key_does() {
        let t = LimitTable::create("t", TableKind::Req, DEFAULT_ENTRIES).unwrap();
        let start = Instant::now();
        // 2/s, no burst: one request every 500 ms always passes, and one
        // 100 ms after a pass is refused.
        for i in 0..10 {
            let at = start + Duration::from_millis(500 * i);
            assert_eq!(t.take_request(b"r", at, 2_000, 0), Verdict::Pass, "{i}");
            let soon = at + Duration::from_millis(100);
            assert_eq!(t.take_request(b"r", soon, 2_000, 0), Verdict::Excess, "{i}");
        }
        // 1/s, burst 5: 6 at once, then after the bucket drained 6 again.
        let burst = |at: Instant| {
            (0..8)
                .filter(|_| t.take_request(b"b", at, 1_000, 5) == Verdict::Pass)
                .count()
        };
        assert_eq!(burst(start), 6);
        assert_eq!(burst(start + Duration::from_secs(10)), 6);
        // Half drained: 2.5 s leak 2.5 of the 5 held, so 2 pass
        // (5 - 2.5 + 1 = 3.5, then 4.5; 5.5 would be over 5).
        assert_eq!(burst(start + Duration::from_millis(12_500)), 2);
    }

    #[test]
    fn flood_of_keys_keeps_a_busy_bucket() {
        let t = LimitTable::create("t", TableKind::Req, DEFAULT_ENTRIES).unwrap();
        let now = Instant::now();
        for _ in 0..11 {
            assert_eq!(t.take_request(b"victim", now, 1000, 10), Verdict::Pass);
        }
        for i in 0..100_000u32 {
            t.take_request(format!("k{i}").as_bytes(), now, 1000, 10);
        }
        // Every flood key's bucket is empty (one request each): evicting
        // them costs nothing, so the full bucket of `victim` stayed.
        assert_eq!(t.take_request(b"victim", now, 1000, 10), Verdict::Excess);
    }

    #[test]
    fn flood_of_lasting_keys_keeps_a_bucket_in_use() {
        let t = LimitTable::create("t", TableKind::Req, DEFAULT_ENTRIES).unwrap();
        let start = Instant::now();
        // 1/m: nothing leaks noticeably during the flood.
        let rate = 1000 / 60;
        for _ in 0..6 {
            t.take_request(b"victim", start, rate, 5);
        }
        for i in 0..100_000u64 {
            let now = start + Duration::from_micros(10 * i);
            let k = format!("k{i}");
            // Two requests: every flood bucket holds a request for minutes.
            t.take_request(k.as_bytes(), now, rate, 5);
            t.take_request(k.as_bytes(), now, rate, 5);
            if i % 100 == 0 {
                assert_eq!(
                    t.take_request(b"victim", now, rate, 5),
                    Verdict::Excess,
                    "{i}"
                );
            }
        }
        // Bounded: at most the table's size is live.
        let live = t.entries(start + Duration::from_secs(1), rate).len();
        assert!(live <= DEFAULT_ENTRIES, "{live}");
        assert!(live > DEFAULT_ENTRIES / 2, "{live}");
    }

    #[test]
    fn conn_hold_releases() {
        let t =
            std::sync::Arc::new(LimitTable::create("c", TableKind::Conn, DEFAULT_ENTRIES).unwrap());
        let now = Instant::now();
        let (v, i, fp) = t.take_conn(b"k", now, 1);
        assert_eq!(v, Verdict::Pass);
        let hold = ConnHold::new(t.clone(), i, fp);
        assert_eq!(t.take_conn(b"k", now, 1).0, Verdict::Excess);
        assert_eq!(t.entries(now, 0).len(), 1);
        drop(hold);
        assert!(t.entries(now, 0).is_empty());
        assert_eq!(t.take_conn(b"k", now, 1).0, Verdict::Pass);
    }
}
