//! Byte buffers for the data path and a per-worker pool of them, so that an
//! idle keep-alive connection holds no buffer and the steady state does no
//! heap allocation per request.

/// `n` slots of scratch for one request: the front of `stack` when it is
/// long enough (the usual case, no allocation), else `heap` grown to `n`
/// copies of `fill`.
pub fn stack_or_heap<'a, T: Clone>(
    stack: &'a mut [T],
    heap: &'a mut Vec<T>,
    n: usize,
    fill: T,
) -> &'a mut [T] {
    match stack.get_mut(..n) {
        Some(s) => s,
        None => {
            heap.resize(n, fill);
            heap
        }
    }
}

/// A fixed-capacity byte buffer with a read cursor: bytes `[start, end)` are
/// pending. Space is reclaimed by `compact` when the front is consumed.
pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn with_capacity(cap: usize) -> Buf {
        Buf {
            data: vec![0u8; cap].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Pending bytes.
    pub fn data(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Pending bytes, to patch in place (an `HTTP/1.2` request line read
    /// as 1.1).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` pending bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space at the tail, after moving pending bytes to the front if
    /// that is the only way to make room.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.compact();
        }
        &mut self.data[self.end..]
    }

    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.data.len()
    }

    /// Records that `n` bytes were written into `spare()`.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Appends as much of `bytes` as fits; returns how many were taken.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        if bytes.len() > self.data.len() - self.end {
            self.compact();
        }
        let spare = self.spare();
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.filled(n);
        n
    }

    pub fn compact(&mut self) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

/// Buffers for the data path: a free list of equally sized ones for heads
/// and ordinary bodies, and a capped set of large ones for bulk bodies.
///
/// Why large ones: a 1 MiB body through 16 KiB buffers costs 64 reads and 64
/// writes each way; through 256 KiB buffers, a handful (measured on loopback:
/// about 1.25x the throughput). They are lent only while a bulk body is
/// relayed and their number is capped per worker, so memory stays bounded
/// however many clients download at once (the rest use ordinary buffers).
pub struct BufPool {
    size: usize,
    free: Vec<Buf>,
    max_free: usize,
    large_free: Vec<Buf>,
    /// Large buffers lent out and not yet given back.
    large_out: usize,
    large_max_out: usize,
}

/// Capacity of a large buffer.
pub const LARGE_BUF: usize = 256 * 1024;
/// Large buffers kept for reuse by one worker.
const LARGE_MAX_FREE: usize = 16;

impl BufPool {
    /// `large_max_out`: most large buffers lent at once (0 = never).
    pub fn new(size: usize, max_free: usize, large_max_out: usize) -> BufPool {
        BufPool {
            size,
            free: Vec::new(),
            max_free,
            large_free: Vec::new(),
            large_out: 0,
            large_max_out,
        }
    }

    pub fn get(&mut self) -> Buf {
        self.free
            .pop()
            .unwrap_or_else(|| Buf::with_capacity(self.size))
    }

    /// A large buffer, unless as many as allowed are lent already.
    pub fn get_large(&mut self) -> Option<Buf> {
        if self.large_out >= self.large_max_out || LARGE_BUF <= self.size {
            return None;
        }
        self.large_out += 1;
        Some(
            self.large_free
                .pop()
                .unwrap_or_else(|| Buf::with_capacity(LARGE_BUF)),
        )
    }

    /// Replaces an empty ordinary buffer (or none) in `slot` with a large
    /// one, if one is available. A buffer holding bytes is left alone.
    pub fn upgrade(&mut self, slot: &mut Option<Buf>) {
        if slot
            .as_ref()
            .is_some_and(|b| !b.is_empty() || b.capacity() >= LARGE_BUF)
        {
            return;
        }
        if let Some(large) = self.get_large() {
            if let Some(small) = slot.replace(large) {
                self.put(small);
            }
        }
    }

    pub fn put(&mut self, mut buf: Buf) {
        if buf.capacity() == LARGE_BUF && LARGE_BUF > self.size {
            self.large_out = self.large_out.saturating_sub(1);
            if self.large_free.len() < LARGE_MAX_FREE {
                buf.clear();
                self.large_free.push(buf);
            }
        } else if self.free.len() < self.max_free && buf.capacity() == self.size {
            buf.clear();
            self.free.push(buf);
        }
    }
}

/// A free list of byte vectors for heads built on the fly (request heads to
/// upstreams, response heads and local responses to clients).
pub struct VecPool {
    free: Vec<Vec<u8>>,
    max_free: usize,
    initial_capacity: usize,
}

impl VecPool {
    pub fn new(initial_capacity: usize, max_free: usize) -> VecPool {
        VecPool {
            free: Vec::new(),
            max_free,
            initial_capacity,
        }
    }

    pub fn get(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.initial_capacity))
    }

    pub fn put(&mut self, mut v: Vec<u8>) {
        // Oversized vectors (a huge local body) are not worth keeping.
        if self.free.len() < self.max_free && v.capacity() <= 4 * self.initial_capacity {
            v.clear();
            self.free.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_consume_compact() {
        let mut b = Buf::with_capacity(8);
        assert_eq!(b.push(b"hello"), 5);
        b.consume(3);
        assert_eq!(b.data(), b"lo");
        assert_eq!(b.push(b"world!"), 6);
        assert_eq!(b.data(), b"loworld!");
        assert!(b.is_full());
        assert_eq!(b.push(b"x"), 0);
        b.consume(8);
        assert!(b.is_empty());
    }

    #[test]
    fn large_buffers_are_capped_and_only_replace_empty_ones() {
        let mut pool = BufPool::new(16, 4, 2);
        let mut full = Some(pool.get());
        full.as_mut().unwrap().push(b"x");
        pool.upgrade(&mut full);
        assert_eq!(full.as_ref().unwrap().capacity(), 16, "bytes held: kept");
        let mut a = Some(pool.get());
        pool.upgrade(&mut a);
        assert_eq!(a.as_ref().unwrap().capacity(), LARGE_BUF);
        let mut b = None;
        pool.upgrade(&mut b);
        assert_eq!(b.as_ref().unwrap().capacity(), LARGE_BUF);
        let mut c = None;
        pool.upgrade(&mut c);
        assert!(c.is_none(), "cap of 2 reached");
        pool.put(a.take().unwrap());
        pool.upgrade(&mut c);
        assert_eq!(c.as_ref().unwrap().capacity(), LARGE_BUF, "one came back");
    }
}
