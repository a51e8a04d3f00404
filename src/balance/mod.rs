//! Server selection, reading the state all workers share (`shm`): a server
//! takes new requests when its admin state is READY, checks do not say DOWN,
//! its current weight is above 0, and live traffic has not marked it down
//! (passive detection). Backups are used only when no primary can be, and
//! then share the load. Servers already tried for a request are excluded,
//! so retries go elsewhere. If only passive marks stand in the way, they are
//! ignored — trying a suspect server beats answering 503.
//!
//! The per-worker part here is small: round-robin positions, a random
//! generator and the consistent-hash ring.

mod hash;

pub use hash::{hash_bytes, HashRing};

use crate::config::Balance;
use crate::config::Server as ServerRt;
use crate::shm::Shm;

/// What a pick may look at besides the servers.
pub struct PickCtx<'a> {
    pub shm: &'a Shm,
    pub upstream: usize,
    pub now_ms: u64,
    /// Hash of the request's `hash_key` (balance: hash), if it has one.
    pub key: Option<u64>,
}

impl<'a> PickCtx<'a> {
    /// A context for a pick now (reads the clock; `at` takes the event
    /// loop's).
    pub fn now(shm: &'a Shm, upstream: usize, key: Option<u64>) -> PickCtx<'a> {
        PickCtx::at(shm, upstream, key, crate::shm::monotonic_ms())
    }

    /// A context for a pick at `now_ms` (`shm::monotonic_ms`, the clock
    /// passive marks are compared with).
    pub fn at(shm: &'a Shm, upstream: usize, key: Option<u64>, now_ms: u64) -> PickCtx<'a> {
        PickCtx {
            shm,
            upstream,
            now_ms,
            key,
        }
    }
}

pub struct Balancer {
    algo: Balance,
    /// Smooth weighted round robin: each server's current weight.
    current: Vec<i64>,
    /// random: xorshift64* state.
    rng: u64,
    ring: Option<HashRing>,
}

/// What a pick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// This server takes the request (if its slot is still free when
    /// taken: `ServerShared::try_begin_request`). With `balance: hash` and
    /// a key it may be full: the request is bound to it and waits for it.
    Server(usize),
    /// Usable servers exist, all at their `maxconn`: the request waits.
    Full,
    /// No server may take requests (all down, in maintenance, weight 0).
    NoServer,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Honour passive marks.
    Strict,
    /// Everything is marked: ignore passive marks.
    Lenient,
}

impl Balancer {
    pub fn new(algo: Balance, servers: usize) -> Balancer {
        let seed = (u64::from(std::process::id()) << 32)
            ^ crate::shm::monotonic_ms()
            ^ 0x9E37_79B9_7F4A_7C15;
        Balancer {
            algo,
            current: vec![0; servers],
            rng: seed | 1,
            ring: None,
        }
    }

    /// Picks a server index, or None when no server may take the request
    /// now (see [`choose`](Self::choose)).
    pub fn pick(
        &mut self,
        servers: &[ServerRt],
        ctx: &PickCtx,
        excluded: &[usize],
    ) -> Option<usize> {
        match self.choose(servers, ctx, excluded) {
            Pick::Server(i) => {
                ctx.shm.server(ctx.upstream, i).count_selection();
                Some(i)
            }
            Pick::Full | Pick::NoServer => None,
        }
    }

    /// Picks a server that may take the request: usable, and below its
    /// `maxconn`. A usable server at its limit is passed over — unless
    /// `balance: hash` binds the request to it (it has a key), which then
    /// waits for that server. When every usable server is full, `Full`:
    /// the request waits in the upstream's queue; passive marks and
    /// backups are not a way around a full server (as in HAProxy, backups
    /// serve only when no primary is usable at all). The caller counts the
    /// selection once the request has the server's slot.
    pub fn choose(&mut self, servers: &[ServerRt], ctx: &PickCtx, excluded: &[usize]) -> Pick {
        let algo = self.algo;
        let bound = algo == Balance::Hash && ctx.key.is_some();
        // A usable server was passed over because it is full.
        let full = std::cell::Cell::new(false);
        for pass in [Pass::Strict, Pass::Lenient] {
            for backup in [false, true] {
                let usable = |i: usize| -> Option<u32> {
                    let s = servers.get(i)?;
                    if s.backup != backup || excluded.contains(&i) {
                        return None;
                    }
                    let sh = ctx.shm.server(ctx.upstream, i);
                    if !sh.is_ready() || (pass == Pass::Strict && sh.passively_down(ctx.now_ms)) {
                        return None;
                    }
                    let w = match algo {
                        // static-rr ignores runtime weight changes (HAProxy).
                        Balance::StaticRr => s.weight,
                        _ => sh.weight(),
                    };
                    if w > 0 && !bound && !sh.has_room() {
                        full.set(true);
                        return None;
                    }
                    Some(w)
                };
                if !(0..servers.len()).any(|i| usable(i).is_some_and(|w| w > 0)) {
                    if full.get() {
                        return Pick::Full;
                    }
                    continue;
                }
                let choice = match self.algo {
                    Balance::Roundrobin | Balance::StaticRr => {
                        self.smooth_weighted(servers.len(), usable)
                    }
                    Balance::First => {
                        (0..servers.len()).find(|&i| usable(i).is_some_and(|w| w > 0))
                    }
                    Balance::Leastconn => self.least_conn(servers.len(), ctx, usable),
                    Balance::Random => self.two_choices(servers.len(), ctx, usable),
                    Balance::Hash => match ctx.key {
                        Some(key) => self.consistent(servers, ctx, key, usable),
                        // No key in this request: spread like round robin (HAProxy).
                        None => self.smooth_weighted(servers.len(), usable),
                    },
                };
                if let Some(i) = choice {
                    return Pick::Server(i);
                }
                if full.get() {
                    return Pick::Full;
                }
            }
        }
        Pick::NoServer
    }

    /// nginx's smooth weighted round robin: every candidate gains its weight,
    /// the largest wins and pays back the total. Weights 5,1,1 give
    /// a a b a c a a — spread out, not bunched.
    fn smooth_weighted(
        &mut self,
        n: usize,
        usable: impl Fn(usize) -> Option<u32>,
    ) -> Option<usize> {
        if self.current.len() != n {
            self.current = vec![0; n];
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..n {
            let Some(w) = usable(i).filter(|&w| w > 0) else {
                continue;
            };
            let w = i64::from(w);
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

    /// Fewest requests in flight (over all workers) per unit of weight.
    /// Servers tied for the fewest — typically all of them at low load —
    /// share by smooth weighted round robin, so weights hold even when
    /// nothing is in flight (as nginx breaks its ties).
    fn least_conn(
        &mut self,
        n: usize,
        ctx: &PickCtx,
        usable: impl Fn(usize) -> Option<u32>,
    ) -> Option<usize> {
        let mut best: Option<(u64, u64)> = None; // (active, weight) of the lowest ratio
        for i in 0..n {
            let Some(w) = usable(i).filter(|&w| w > 0) else {
                continue;
            };
            let (a, w) = (u64::from(active(ctx, i)), u64::from(w));
            // a/w < best_a/best_w, without division.
            if best.is_none_or(|(ba, bw)| a * bw < ba * w) {
                best = Some((a, w));
            }
        }
        let (ba, bw) = best?;
        self.smooth_weighted(n, |i| {
            usable(i).filter(|&w| w > 0 && u64::from(active(ctx, i)) * bw == ba * u64::from(w))
        })
    }

    /// Power of two choices: two servers drawn by weight, the one with
    /// fewer requests in flight per unit of weight wins; on a tie the first
    /// draw stays (HAProxy's random(2)), so idle servers share by weight.
    fn two_choices(
        &mut self,
        n: usize,
        ctx: &PickCtx,
        usable: impl Fn(usize) -> Option<u32>,
    ) -> Option<usize> {
        let total: u64 = (0..n).filter_map(&usable).map(u64::from).sum();
        if total == 0 {
            return None;
        }
        let mut draw = || {
            let mut r = self.next_random() % total;
            for i in 0..n {
                let w = u64::from(usable(i).unwrap_or(0));
                if r < w {
                    return Some(i);
                }
                r -= w;
            }
            None
        };
        let a = draw()?;
        let b = draw()?;
        let load = |i: usize| {
            let w = u64::from(usable(i).unwrap_or(1).max(1));
            (u64::from(active(ctx, i)), w)
        };
        let ((la, wa), (lb, wb)) = (load(a), load(b));
        Some(if lb * wa < la * wb { b } else { a })
    }

    fn consistent(
        &mut self,
        servers: &[ServerRt],
        ctx: &PickCtx,
        key: u64,
        usable: impl Fn(usize) -> Option<u32>,
    ) -> Option<usize> {
        let epoch = ctx.shm.upstream(ctx.upstream).weights_epoch();
        if self.ring.as_ref().is_none_or(|r| r.epoch() != epoch) {
            let weights: Vec<u32> = (0..servers.len())
                .map(|i| ctx.shm.server(ctx.upstream, i).weight())
                .collect();
            self.ring = Some(HashRing::build(servers, &weights, epoch));
        }
        self.ring
            .as_ref()?
            .lookup(key, |i| usable(i).is_some_and(|w| w > 0))
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: fast, good enough to spread load.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn active(ctx: &PickCtx, i: usize) -> u32 {
    ctx.shm.server(ctx.upstream, i).active()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::{AdminState, HealthState, LastCheck};
    use std::time::Duration;

    fn servers(weights: &[(u32, bool)]) -> Vec<ServerRt> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &(weight, backup))| ServerRt {
                name: format!("s{i}"),
                addr: "127.0.0.1:1".parse().unwrap(),
                addr_text: "127.0.0.1:1".into(),
                tls_name: None,
                weight,
                backup,
                maxconn: 0,
                id: i + 1,
            })
            .collect()
    }

    fn shm_for(s: &[ServerRt]) -> Shm {
        let shm = Shm::create(&[s.len()], 1).unwrap();
        for (i, srv) in s.iter().enumerate() {
            shm.server(0, i).init(srv.weight, None, 0);
        }
        shm
    }

    const DOWN: HealthState = HealthState {
        counter: 0,
        down: true,
    };
    const UP: HealthState = HealthState {
        counter: 1,
        down: false,
    };

    fn failed() -> LastCheck {
        LastCheck::Failed {
            code: 0,
            duration: Duration::ZERO,
            why: crate::shm::CheckFailure::Connect,
        }
    }

    fn passed() -> LastCheck {
        LastCheck::Passed {
            code: 0,
            duration: Duration::ZERO,
        }
    }

    /// Passive detection marks server `s` down (until well after `ctx`'s now).
    fn mark_down(shm: &Shm, s: usize) {
        assert!(shm.server(0, s).mark_failure(1, 5000).is_some());
    }

    /// `n` requests in flight on server `s`.
    fn in_flight(shm: &Shm, s: usize, n: u32) {
        for _ in 0..n {
            shm.server(0, s).begin_request();
        }
    }

    fn ctx(shm: &Shm) -> PickCtx<'_> {
        PickCtx {
            shm,
            upstream: 0,
            now_ms: 1000,
            key: None,
        }
    }

    #[test]
    fn smooth_sequence() {
        let s = servers(&[(5, false), (1, false), (1, false)]);
        let shm = shm_for(&s);
        let mut b = Balancer::new(Balance::Roundrobin, 3);
        let seq: Vec<usize> = (0..7)
            .map(|_| b.pick(&s, &ctx(&shm), &[]).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_exclusion_and_runtime_weight() {
        let s = servers(&[(1, false), (3, false), (0, false)]);
        let shm = shm_for(&s);
        let mut b = Balancer::new(Balance::Roundrobin, 3);
        let mut counts = [0; 3];
        for _ in 0..8 {
            counts[b.pick(&s, &ctx(&shm), &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [2, 6, 0]);
        assert_eq!(b.pick(&s, &ctx(&shm), &[1]), Some(0));
        assert_eq!(b.pick(&s, &ctx(&shm), &[0, 1]), None);
        shm.set_weight(0, 1, 0).unwrap();
        assert!((0..5).all(|_| b.pick(&s, &ctx(&shm), &[]) == Some(0)));
    }

    #[test]
    fn admin_health_and_backups() {
        let s = servers(&[(1, false), (1, true), (1, true)]);
        let shm = shm_for(&s);
        let mut b = Balancer::new(Balance::Roundrobin, 3);
        assert_eq!(b.pick(&s, &ctx(&shm), &[]), Some(0));
        shm.server(0, 0).set_admin(AdminState::Maint);
        let picks: Vec<usize> = (0..4)
            .map(|_| b.pick(&s, &ctx(&shm), &[]).unwrap())
            .collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
        shm.server(0, 0).set_admin(AdminState::Ready);
        shm.server(0, 0).record_check(failed(), |_| DOWN);
        assert_ne!(b.pick(&s, &ctx(&shm), &[]), Some(0));
        shm.server(0, 0).record_check(passed(), |_| UP);
        assert_eq!(b.pick(&s, &ctx(&shm), &[]), Some(0));
    }

    #[test]
    fn passive_marks_are_ignored_when_nothing_else_is_left() {
        let s = servers(&[(1, false), (1, false)]);
        let shm = shm_for(&s);
        let mut b = Balancer::new(Balance::Roundrobin, 2);
        mark_down(&shm, 0);
        assert!((0..4).all(|_| b.pick(&s, &ctx(&shm), &[]) == Some(1)));
        mark_down(&shm, 1);
        assert!(b.pick(&s, &ctx(&shm), &[]).is_some());
    }

    #[test]
    fn idle_servers_share_by_weight_under_leastconn_and_random() {
        let s = servers(&[(3, false), (1, false)]);
        let shm = shm_for(&s);
        for algo in [Balance::Leastconn, Balance::Random] {
            let mut b = Balancer::new(algo, 2);
            let heavy = (0..4000)
                .filter(|_| b.pick(&s, &ctx(&shm), &[]) == Some(0))
                .count();
            assert!((2800..=3200).contains(&heavy), "{algo:?}: {heavy} of 4000");
        }
    }

    #[test]
    fn leastconn_prefers_idle_and_rotates_ties() {
        let s = servers(&[(1, false), (1, false), (1, false)]);
        let shm = shm_for(&s);
        let mut b = Balancer::new(Balance::Leastconn, 3);
        in_flight(&shm, 0, 5);
        let picks: Vec<usize> = (0..4)
            .map(|_| b.pick(&s, &ctx(&shm), &[]).unwrap())
            .collect();
        assert!(picks.iter().all(|&p| p != 0));
        assert!(picks.contains(&1) && picks.contains(&2), "{picks:?}");
    }

    #[test]
    fn random_two_choices_avoids_the_loaded_server() {
        let s = servers(&[(1, false), (1, false)]);
        let shm = shm_for(&s);
        in_flight(&shm, 0, 100);
        let mut b = Balancer::new(Balance::Random, 2);
        let ones = (0..1000)
            .filter(|_| b.pick(&s, &ctx(&shm), &[]) == Some(1))
            .count();
        // Server 1 wins unless both draws hit server 0 (p = 1/4).
        assert!(ones > 650, "{ones}");
    }

    #[test]
    fn first_takes_the_first_usable() {
        let s = servers(&[(1, false), (1, false)]);
        let shm = shm_for(&s);
        let mut b = Balancer::new(Balance::First, 2);
        assert!((0..3).all(|_| b.pick(&s, &ctx(&shm), &[]) == Some(0)));
        shm.server(0, 0).set_admin(AdminState::Drain);
        assert_eq!(b.pick(&s, &ctx(&shm), &[]), Some(1));
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_the_removed_servers_keys() {
        let s = servers(&[(1, false), (1, false), (1, false), (1, false)]);
        let shm = shm_for(&s);
        let mut b = Balancer::new(Balance::Hash, 4);
        let pick = |b: &mut Balancer, k: u64| {
            let c = PickCtx {
                key: Some(k),
                ..ctx(&shm)
            };
            b.pick(&s, &c, &[]).unwrap()
        };
        let keys: Vec<u64> = (0..4000u64).map(|i| hash_bytes(&i.to_le_bytes())).collect();
        let before: Vec<usize> = keys.iter().map(|&k| pick(&mut b, k)).collect();
        assert_eq!(
            before,
            keys.iter().map(|&k| pick(&mut b, k)).collect::<Vec<_>>()
        );
        let mut counts = [0usize; 4];
        for &p in &before {
            counts[p] += 1;
        }
        assert!(counts.iter().all(|&c| c > 600), "{counts:?}");
        shm.server(0, 2).set_admin(AdminState::Maint);
        let after: Vec<usize> = keys.iter().map(|&k| pick(&mut b, k)).collect();
        for (x, y) in before.iter().zip(&after) {
            if *x != 2 {
                assert_eq!(x, y, "a key of a remaining server moved");
            } else {
                assert_ne!(*y, 2);
            }
        }
    }
}
