//! `$request_id`: a unique id per request (nginx's shape, 32 hex digits),
//! logged in both access-log formats and usable in header rules.
//!
//! The high half is drawn once per worker process (after the fork, so
//! workers never share it), the low half counts the process's requests:
//! taking an id is one relaxed add on a counter no other process touches.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static PROCESS: AtomicU64 = AtomicU64::new(0);
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Draws this process's half of its ids. Workers call it once they run
/// (ids of a process that never did still differ by their counter).
pub fn seed() {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    PROCESS.store(h.finish(), Relaxed);
}

/// The next id of this process.
#[inline]
pub fn next() -> RequestId {
    RequestId {
        process: PROCESS.load(Relaxed),
        seq: SEQ.fetch_add(1, Relaxed) + 1,
    }
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// A request's unique id (`$request_id`): nginx's shape, 32 hex digits.
/// The high half is random per worker process, the low half counts its
/// requests, so ids never repeat across workers or restarts in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestId {
    pub process: u64,
    pub seq: u64,
}

impl RequestId {
    /// Appends the 32 digits: two per byte from a table, written on the
    /// stack and copied at once (it runs for every request with an id in a
    /// header rule).
    pub fn push_hex(self, out: &mut Vec<u8>) {
        let mut digits = [0u8; 32];
        let bytes = self
            .process
            .to_be_bytes()
            .into_iter()
            .chain(self.seq.to_be_bytes());
        for (pair, b) in digits.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        out.extend_from_slice(&digits);
    }

    pub fn to_hex(self) -> String {
        let mut v = Vec::with_capacity(32);
        self.push_hex(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_differ() {
        seed();
        let (a, b) = (next(), next());
        assert_ne!(a, b);
        let hex = a.to_hex();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
        let id = RequestId {
            process: 0x0123_4567_89ab_cdef,
            seq: 0xfe,
        };
        assert_eq!(id.to_hex(), "0123456789abcdef00000000000000fe");
    }
}
