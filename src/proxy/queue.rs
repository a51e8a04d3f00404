//! A worker's requests waiting for a server slot (servers with `maxconn`),
//! HAProxy's queues: per upstream, in the order of tickets drawn from the
//! upstream's shared counter, so the order holds across workers (the
//! shared half, and why it is enough, is in `shm::queue`).
//!
//! A waiter does not poll. When a slot frees (a request on the server
//! ends), the process that freed it wakes the worker holding the oldest
//! waiter (its eventfd, or, for this worker, `due`): one wake per slot.
//! A woken worker serves its waiters in ticket order while none older
//! waits in another worker: it takes the slot for the waiter (the same
//! atomic compare-exchange as any request) and wakes its connection,
//! whose exchange then finds the grant (`take_grant`) and connects. A
//! worker that finds a slot free but an older waiter elsewhere wakes that
//! worker; an oldest waiter that leaves passes a free slot on the same
//! way; `set maxconn server` raising a limit, or a server coming back,
//! wakes every worker with waiters (`Shm::wake_waiters`).
//!
//! Waiters bound to a server (`balance: hash` with a key) wait for that
//! server only; the others take any usable server with room, by the
//! upstream's balancing. Bound waiters of different workers race for their
//! server's slots (HAProxy keeps one queue per server; ours is per worker,
//! ordered only against the other workers' unbound waiters).

use crate::balance::{Balancer, Pick, PickCtx};
use crate::event::Slab;
use crate::route::Runtime;
use crate::shm::{Shm, NO_TICKET};
use std::collections::VecDeque;

use super::attempt::MAX_TRIES;

/// What an exchange holds while it waits: its entry and ticket (the entry's
/// slot may be reused once it is gone, the ticket tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTicket {
    id: usize,
    ticket: u64,
}

struct Waiter {
    upstream: usize,
    ticket: u64,
    /// The client connection (slot) to drive when a slot is taken for it.
    conn: usize,
    /// `balance: hash`: the server it waits for.
    bound: Option<usize>,
    /// Servers a retry must not go back to.
    excluded: [usize; MAX_TRIES],
    nexcluded: usize,
    /// A slot taken for it on this server (its active count is held), not
    /// yet picked up by its exchange.
    granted: Option<usize>,
}

/// Picks a slot for a waiter gets this many tries against other workers
/// taking the same slot between the pick and the compare-exchange.
const RACE_TRIES: usize = 4;

/// One worker's waiters.
#[derive(Default)]
pub struct Queues {
    /// Per upstream: waiting entries (not granted), oldest first.
    lists: Vec<VecDeque<usize>>,
    /// Per upstream: how many of them are not bound to a server.
    unbound: Vec<u32>,
    waiters: Slab<Waiter>,
    /// Upstreams whose waiters may find a slot now: served before the
    /// worker polls again.
    due: Vec<usize>,
}

impl Queues {
    pub fn new(upstreams: usize) -> Queues {
        Queues {
            lists: (0..upstreams).map(|_| VecDeque::new()).collect(),
            unbound: vec![0; upstreams],
            waiters: Slab::new(),
            due: Vec::new(),
        }
    }

    /// Whether some upstream's waiters must be served before the next poll.
    #[inline]
    pub fn has_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// The request of connection `conn` starts waiting for a slot in
    /// upstream `u` (for server `bound` only, if given; never on one of
    /// `excluded`). It looks once more right away (`due`): a slot freed
    /// while it was found full may have woken nobody (see `shm::queue`).
    pub fn enqueue(
        &mut self,
        shm: &Shm,
        worker: usize,
        u: usize,
        conn: usize,
        bound: Option<usize>,
        excluded: &[usize],
    ) -> WaitTicket {
        let ticket = shm.upstream(u).queue().ticket();
        let mut ex = [0; MAX_TRIES];
        let n = excluded.len().min(MAX_TRIES);
        ex[..n].copy_from_slice(&excluded[..n]);
        let id = self.waiters.insert(Waiter {
            upstream: u,
            ticket,
            conn,
            bound,
            excluded: ex,
            nexcluded: n,
            granted: None,
        });
        if let Some(list) = self.lists.get_mut(u) {
            list.push_back(id);
        }
        self.count_unbound(u, bound, true);
        // Published before it is counted: whoever sees the count sees it.
        self.publish(shm, worker, u);
        match bound {
            Some(s) => shm.server(u, s).add_waiter(),
            None => shm.upstream(u).queue().add_waiter(),
        }
        self.due.push(u);
        WaitTicket { id, ticket }
    }

    /// The server a slot was taken on for this waiter, if one was: the
    /// waiter is gone and its exchange holds the slot now.
    pub fn take_grant(&mut self, t: WaitTicket) -> Option<usize> {
        let w = self.waiters.get(t.id).filter(|w| w.ticket == t.ticket)?;
        let server = w.granted?;
        self.waiters.remove(t.id);
        Some(server)
    }

    /// The waiter leaves (timed out, its client gone): out of the queue,
    /// or, if a slot was taken for it already, the slot is given back.
    pub fn cancel(&mut self, shm: &Shm, worker: usize, t: WaitTicket) {
        let Some(w) = self.waiters.get(t.id).filter(|w| w.ticket == t.ticket) else {
            return;
        };
        let (u, granted, bound) = (w.upstream, w.granted, w.bound);
        self.waiters.remove(t.id);
        if let Some(s) = granted {
            let bound_waiters = shm.end_request(worker, u, s);
            self.slot_freed(shm, worker, u, bound_waiters);
            return;
        }
        let was_oldest = self.oldest_unbound(u) == t.ticket;
        if let Some(list) = self.lists.get_mut(u) {
            list.retain(|&id| id != t.id);
        }
        self.count_unbound(u, bound, false);
        self.publish(shm, worker, u);
        match bound {
            Some(s) => shm.server(u, s).remove_waiter(),
            None => shm.upstream(u).queue().remove_waiter(),
        }
        // A slot this waiter was about to get (or had just been woken
        // for) goes to the next oldest.
        if was_oldest && any_room(shm, u) {
            self.wake_oldest(shm, worker, u);
        }
    }

    /// A slot of upstream `u` was freed (`ServerShared::end_request`
    /// returned `bound_waiters`): if anyone waits for it, the worker with
    /// the oldest waiter is woken (this one through `due`) — or, when
    /// requests wait for that server alone, every worker with waiters
    /// (bound waiters of different workers race for their server). Called
    /// after the slot is given back.
    #[inline]
    pub fn slot_freed(&mut self, shm: &Shm, worker: usize, u: usize, bound_waiters: bool) {
        if bound_waiters {
            self.wake_waiters(shm, worker, u);
        } else if shm.upstream(u).queue().queued() > 0 {
            self.wake_oldest(shm, worker, u);
        }
    }

    /// Wakes every worker with waiters for upstream `u` (this one through
    /// `due`).
    #[cold]
    pub fn wake_waiters(&mut self, shm: &Shm, worker: usize, u: usize) {
        if self.lists.get(u).is_some_and(|l| !l.is_empty()) {
            self.due.push(u);
        }
        for w in (0..shm.worker_count()).filter(|&w| w != worker) {
            if shm.worker_queue(w, u).waiting() > 0 {
                shm.wakers().wake(w);
            }
        }
    }

    /// Wakes the worker with the oldest waiter of upstream `u` not bound
    /// to a server (this one through `due`): one wake per freed slot.
    #[cold]
    fn wake_oldest(&mut self, shm: &Shm, worker: usize, u: usize) {
        match oldest_worker(shm, u, None) {
            Some(w) if w == worker => self.due.push(u),
            Some(w) => shm.wakers().wake(w),
            None => {}
        }
    }

    /// The worker's eventfd fired: every upstream it has waiters for is
    /// served.
    pub fn woken(&mut self, shm: &Shm, worker: usize) {
        shm.wakers().drain(worker);
        for (u, list) in self.lists.iter().enumerate() {
            if !list.is_empty() {
                self.due.push(u);
            }
        }
    }

    /// Serves the upstreams that are due; connections whose requests got a
    /// slot are added to `wake`.
    pub fn serve_due(
        &mut self,
        shm: &Shm,
        worker: usize,
        rt: &Runtime,
        balancers: &mut [Balancer],
        wake: &mut Vec<usize>,
    ) {
        let mut due = std::mem::take(&mut self.due);
        due.sort_unstable();
        due.dedup();
        for &u in &due {
            self.serve(shm, worker, u, rt, balancers, wake);
        }
        due.clear();
        if self.due.is_empty() {
            self.due = due;
        }
    }

    /// Takes slots for this worker's waiters of upstream `u`, oldest first,
    /// while no older waiter of another worker could take them.
    fn serve(
        &mut self,
        shm: &Shm,
        worker: usize,
        u: usize,
        rt: &Runtime,
        balancers: &mut [Balancer],
        wake: &mut Vec<usize>,
    ) {
        let (Some(list), Some(up), Some(balancer)) = (
            self.lists.get_mut(u),
            rt.upstreams.get(u),
            balancers.get_mut(u),
        ) else {
            return;
        };
        let older_elsewhere = (0..shm.worker_count())
            .filter(|&w| w != worker)
            .map(|w| shm.worker_queue(w, u).oldest_unbound())
            .min()
            .unwrap_or(NO_TICKET);
        let mut granted = 0;
        // No server has room for an unbound waiter: the later ones neither.
        let mut unbound_blocked = false;
        let mut i = 0;
        while i < list.len() {
            let id = list[i];
            let Some(w) = self.waiters.get_mut(id) else {
                list.remove(i);
                continue;
            };
            if w.ticket > older_elsewhere {
                break;
            }
            let slot = match w.bound {
                Some(s) => (shm.server(u, s).is_ready() && shm.try_begin_request(worker, u, s))
                    .then_some(s),
                None if unbound_blocked => None,
                None => {
                    let taken = take_any(shm, worker, u, up, balancer, &w.excluded[..w.nexcluded]);
                    unbound_blocked = taken.is_none();
                    taken
                }
            };
            let Some(s) = slot else {
                i += 1;
                continue;
            };
            shm.server(u, s).count_selection();
            w.granted = Some(s);
            match w.bound {
                Some(b) => shm.server(u, b).remove_waiter(),
                None => {
                    shm.upstream(u).queue().remove_waiter();
                    if let Some(n) = self.unbound.get_mut(u) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            wake.push(w.conn);
            list.remove(i);
            granted += 1;
        }
        if granted > 0 {
            self.publish(shm, worker, u);
        }
        // An older waiter waits in another worker: a slot still free is
        // its to take, and the wake may have come to us (or have been
        // for the waiter we just served).
        if !unbound_blocked && older_elsewhere != NO_TICKET && any_room(shm, u) {
            if let Some(w) = oldest_worker(shm, u, Some(worker)) {
                shm.wakers().wake(w);
            }
        }
    }

    fn oldest_unbound(&self, u: usize) -> u64 {
        self.lists
            .get(u)
            .and_then(|l| {
                l.iter()
                    .filter_map(|&id| self.waiters.get(id))
                    .find(|w| w.bound.is_none())
            })
            .map_or(NO_TICKET, |w| w.ticket)
    }

    fn count_unbound(&mut self, u: usize, bound: Option<usize>, added: bool) {
        if let (None, Some(n)) = (bound, self.unbound.get_mut(u)) {
            *n = if added { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    fn publish(&self, shm: &Shm, worker: usize, u: usize) {
        let waiting = self.lists.get(u).map_or(0, |l| l.len() as u32);
        let unbound = self.unbound.get(u).copied().unwrap_or(0);
        shm.worker_queue(worker, u)
            .publish(self.oldest_unbound(u), waiting, unbound);
    }
}

/// The worker (other than `except`) whose oldest waiter of upstream `u`
/// not bound to a server is the oldest of all; None when none waits.
fn oldest_worker(shm: &Shm, u: usize, except: Option<usize>) -> Option<usize> {
    (0..shm.worker_count())
        .filter(|&w| Some(w) != except)
        .map(|w| (shm.worker_queue(w, u).oldest_unbound(), w))
        .filter(|&(t, _)| t != NO_TICKET)
        .min()
        .map(|(_, w)| w)
}

/// Whether a usable server of upstream `u` has a free slot now.
fn any_room(shm: &Shm, u: usize) -> bool {
    (0..shm.servers_of(u)).any(|s| {
        let sh = shm.server(u, s);
        sh.is_ready() && sh.has_room()
    })
}

/// A slot on any usable server of upstream `u` with room (by its
/// balancing), taken; None when every one is full (or none is usable).
fn take_any(
    shm: &Shm,
    worker: usize,
    u: usize,
    up: &crate::config::Upstream,
    balancer: &mut Balancer,
    excluded: &[usize],
) -> Option<usize> {
    for _ in 0..RACE_TRIES {
        let ctx = PickCtx::now(shm, u, None);
        match balancer.choose(&up.servers, &ctx, excluded) {
            Pick::Server(s) if shm.try_begin_request(worker, u, s) => return Some(s),
            // Taken by another worker between the pick and the exchange.
            Pick::Server(_) => continue,
            Pick::Full | Pick::NoServer => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    /// Two workers' queues over one shared memory: upstream `web` with
    /// servers a (maxconn 1) and b (maxconn 1), `balance`.
    fn setup(balance: &str) -> (Shm, Runtime, [Queues; 2], [Vec<Balancer>; 2]) {
        let yaml = format!(
            "listeners:\n  - name: l\n    bind: [\"127.0.0.1:8080\"]\n    routes: [{{upstream: web}}]\n\
             upstreams:\n  web:\n    balance: {balance}\n    servers:\n      \
             - {{name: a, addr: \"127.0.0.1:1\", maxconn: 1}}\n      \
             - {{name: b, addr: \"127.0.0.1:2\", maxconn: 1}}\n"
        );
        let cfg = Config::from_yaml_str(&yaml, Path::new("/etc/forklb/forklb.yaml")).unwrap();
        let rt = Runtime::new(&cfg);
        let shm = Shm::create(&[2], 2).unwrap();
        for s in 0..2 {
            shm.server(0, s).init(1, None, 0);
            shm.server(0, s).set_maxconn(1);
        }
        let algo = rt.upstreams[0].balance;
        let balancers = || vec![Balancer::new(algo, 2)];
        (
            shm,
            rt,
            [Queues::new(1), Queues::new(1)],
            [balancers(), balancers()],
        )
    }

    #[test]
    fn slots_go_to_the_oldest_waiter_whichever_worker_holds_it() {
        let (shm, rt, mut q, mut bal) = setup("roundrobin");
        // Both servers busy.
        assert!(shm.server(0, 0).try_begin_request() && shm.server(0, 1).try_begin_request());
        // Waiters: conn 10 on worker 1, 20 on worker 0, 11 on worker 1.
        let t10 = q[1].enqueue(&shm, 1, 0, 10, None, &[]);
        let t20 = q[0].enqueue(&shm, 0, 0, 20, None, &[]);
        let t11 = q[1].enqueue(&shm, 1, 0, 11, None, &[]);
        assert_eq!(shm.upstream(0).queue().queued(), 3);
        let mut served = Vec::new();
        let serve_all =
            |q: &mut [Queues; 2], bal: &mut [Vec<Balancer>; 2], served: &mut Vec<usize>| {
                for w in [0, 1] {
                    q[w].wake_waiters(&shm, w, 0);
                    q[w].serve_due(&shm, w, &rt, &mut bal[w], served);
                }
            };
        // Nothing free: nobody is served, in either worker.
        serve_all(&mut q, &mut bal, &mut served);
        assert!(served.is_empty());
        // One slot frees: worker 0 looks first but its waiter is younger.
        assert!(!shm.server(0, 1).end_request());
        serve_all(&mut q, &mut bal, &mut served);
        assert_eq!(served, [10]);
        assert_eq!(q[1].take_grant(t10), Some(1));
        assert_eq!(q[1].take_grant(t11), None);
        shm.server(0, 1).end_request();
        serve_all(&mut q, &mut bal, &mut served);
        assert_eq!(served, [10, 20]);
        // The last waiter leaves before its turn: out of the count.
        q[1].cancel(&shm, 1, t11);
        assert_eq!(shm.upstream(0).queue().queued(), 0);
        assert_eq!(shm.upstream(0).queue().max_queued(), 3);
        // A grant its exchange never picks up gives the slot back.
        let held = shm.server(0, 1).stats().active;
        q[0].cancel(&shm, 0, t20);
        assert_eq!(shm.server(0, 1).stats().active, held - 1);
    }

    #[test]
    fn bound_waiters_wait_for_their_server_only() {
        let (shm, rt, mut q, mut bal) = setup("hash");
        assert!(shm.server(0, 0).try_begin_request());
        let t = q[0].enqueue(&shm, 0, 0, 7, Some(0), &[]);
        assert_eq!(
            (shm.server(0, 0).queued(), shm.upstream(0).queue().queued()),
            (1, 0)
        );
        let mut wake = Vec::new();
        // b has room, but the waiter is a's.
        q[0].serve_due(&shm, 0, &rt, &mut bal[0], &mut wake);
        assert!(wake.is_empty());
        assert!(
            shm.server(0, 0).end_request(),
            "a's end must say a waiter waits"
        );
        q[0].slot_freed(&shm, 0, 0, true);
        q[0].serve_due(&shm, 0, &rt, &mut bal[0], &mut wake);
        assert_eq!(wake, [7]);
        assert_eq!(q[0].take_grant(t), Some(0));
        assert_eq!(shm.server(0, 0).queued(), 0);
    }
}
