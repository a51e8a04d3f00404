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

/// A request's unique id (`$request_id`): nginx's shape, 32 hex digits.
/// The high half is random per worker process, the low half counts its
/// requests, so ids never repeat across workers or restarts in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestId {
    pub process: u64,
    pub seq: u64,
}

impl RequestId {
    pub fn push_hex(self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for word in [self.process, self.seq] {
            for shift in (0..16).rev() {
                out.push(HEX[((word >> (shift * 4)) & 0xf) as usize]);
            }
        }
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
    }
}
