//! Byte buffers for the data path and a per-worker pool of them, so that an
//! idle keep-alive connection holds no buffer and the steady state does no
//! heap allocation per request.

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

/// A free list of equally sized buffers.
pub struct BufPool {
    size: usize,
    free: Vec<Buf>,
    max_free: usize,
}

impl BufPool {
    pub fn new(size: usize, max_free: usize) -> BufPool {
        BufPool {
            size,
            free: Vec::new(),
            max_free,
        }
    }

    pub fn get(&mut self) -> Buf {
        self.free
            .pop()
            .unwrap_or_else(|| Buf::with_capacity(self.size))
    }

    pub fn put(&mut self, mut buf: Buf) {
        if self.free.len() < self.max_free && buf.capacity() == self.size {
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
}
