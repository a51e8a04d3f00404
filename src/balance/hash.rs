//! Consistent hashing (ketama): each server owns points on a 32-bit ring in
//! proportion to its weight; a key goes to the first point at or after its
//! hash whose server may take requests. When a server leaves, only its keys
//! move (to the next points); everyone else's stay.

use crate::config::Server as ServerRt;

/// Ring points per unit of weight: enough for an even spread with few servers.
const POINTS_PER_WEIGHT: u32 = 100;

pub struct HashRing {
    /// (position, server index), sorted by position.
    points: Vec<(u32, usize)>,
    epoch: u32,
}

/// FNV-1a, then a murmur3 finalizer for avalanche: cheap and well spread.
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl HashRing {
    /// Builds the ring for `servers` with their current `weights`.
    pub fn build(servers: &[ServerRt], weights: &[u32], epoch: u32) -> HashRing {
        let mut points = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            let w = weights.get(i).copied().unwrap_or(s.weight);
            let mut label = Vec::with_capacity(s.name.len() + 12);
            for p in 0..w.saturating_mul(POINTS_PER_WEIGHT) {
                label.clear();
                label.extend_from_slice(s.name.as_bytes());
                label.push(b'#');
                label.extend_from_slice(&p.to_le_bytes());
                points.push(((hash_bytes(&label) >> 32) as u32, i));
            }
        }
        points.sort_unstable();
        HashRing { points, epoch }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The server for `key`: the first point at or after the key's position
    /// (wrapping) whose server is usable.
    pub fn lookup(&self, key: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let pos = (key >> 32) as u32;
        let start = self.points.partition_point(|&(p, _)| p < pos);
        let n = self.points.len();
        (0..n)
            .map(|k| self.points[(start + k) % n].1)
            .find(|&i| usable(i))
    }
}
