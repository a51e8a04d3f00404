//! Server selection. Primaries with weight > 0 are candidates; backups are
//! used only when no primary is, and then share the load among themselves.
//! Servers already tried for this request are excluded (retries go elsewhere).
//!
//! The state here is per worker; issue #5 moves weights and server states
//! into memory shared by all workers.

use crate::config::Balance;
use crate::route::ServerRt;

pub struct Balancer {
    algo: Balance,
    /// Smooth weighted round robin: each server's current weight.
    current: Vec<i64>,
}

impl Balancer {
    pub fn new(algo: Balance, servers: usize) -> Balancer {
        Balancer {
            algo,
            current: vec![0; servers],
        }
    }

    /// Picks a server index, or None when no server may take the request.
    pub fn pick(&mut self, servers: &[ServerRt], excluded: &[usize]) -> Option<usize> {
        let usable = |i: usize, s: &ServerRt, backup: bool| {
            s.weight > 0 && s.backup == backup && !excluded.contains(&i)
        };
        for backup in [false, true] {
            let any = servers
                .iter()
                .enumerate()
                .any(|(i, s)| usable(i, s, backup));
            if !any {
                continue;
            }
            return match self.algo {
                Balance::First => servers
                    .iter()
                    .enumerate()
                    .position(|(i, s)| usable(i, s, backup)),
                // static-rr has no runtime weight changes yet, so it is the
                // same sequence as roundrobin for now.
                _ => self.smooth_weighted(servers, |i, s| usable(i, s, backup)),
            };
        }
        None
    }

    /// nginx's smooth weighted round robin: every candidate gains its weight,
    /// the largest wins and pays back the total. Weights 5,1,1 give
    /// a a b a c a a — spread out, not bunched.
    fn smooth_weighted(
        &mut self,
        servers: &[ServerRt],
        usable: impl Fn(usize, &ServerRt) -> bool,
    ) -> Option<usize> {
        if self.current.len() != servers.len() {
            self.current = vec![0; servers.len()];
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, s) in servers.iter().enumerate() {
            if !usable(i, s) {
                continue;
            }
            let w = i64::from(s.weight);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(weights: &[(u32, bool)]) -> Vec<ServerRt> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &(weight, backup))| ServerRt {
                name: format!("s{i}"),
                addr: "127.0.0.1:1".parse().unwrap(),
                addr_text: "127.0.0.1:1".into(),
                weight,
                backup,
            })
            .collect()
    }

    #[test]
    fn smooth_sequence() {
        let s = servers(&[(5, false), (1, false), (1, false)]);
        let mut b = Balancer::new(Balance::Roundrobin, 3);
        let seq: Vec<usize> = (0..7).map(|_| b.pick(&s, &[]).unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_and_exclusion() {
        let s = servers(&[(1, false), (3, false), (0, false)]);
        let mut b = Balancer::new(Balance::Roundrobin, 3);
        let mut counts = [0; 3];
        for _ in 0..8 {
            counts[b.pick(&s, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [2, 6, 0]);
        assert_eq!(b.pick(&s, &[1]), Some(0));
        assert_eq!(b.pick(&s, &[0, 1]), None);
    }

    #[test]
    fn backups_only_when_primaries_unusable() {
        let s = servers(&[(1, false), (1, true), (1, true)]);
        let mut b = Balancer::new(Balance::Roundrobin, 3);
        assert_eq!(b.pick(&s, &[]), Some(0));
        let picks: Vec<usize> = (0..4).map(|_| b.pick(&s, &[0]).unwrap()).collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
        let mut f = Balancer::new(Balance::First, 3);
        assert_eq!(f.pick(&s, &[0]), Some(1));
    }
}
