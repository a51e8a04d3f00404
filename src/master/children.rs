//! The master's worker processes: one slot per configured worker; each slot
//! has at most one live process. A worker that dies unexpectedly is
//! respawned in its slot — at once the first time, then with an exponential
//! back-off while it keeps dying young, so a crash loop cannot spin.

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// A worker that lived shorter than this counts as failing.
const YOUNG: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Channel tokens start after the master's own tokens.
const FIRST_CHANNEL_TOKEN: usize = 16;

struct Child {
    pid: Pid,
    slot: usize,
    /// The configuration generation the worker runs; older ones are retiring.
    generation: u64,
    token: Token,
    channel: UnixStream,
    ready: bool,
    spawned_at: Instant,
}

#[derive(Default)]
struct Slot {
    /// Consecutive early deaths.
    failures: u32,
    respawn_at: Option<Instant>,
}

pub struct Children {
    slots: Vec<Slot>,
    live: Vec<Child>,
    next_token: usize,
    /// The current generation: only its workers fill slots and respawn.
    generation: u64,
    /// WINCH: workers were told to stop and are not replaced until HUP.
    stopped: bool,
}

impl Children {
    pub fn new(slots: usize) -> Children {
        Children {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            live: Vec::new(),
            next_token: FIRST_CHANNEL_TOKEN,
            generation: 1,
            stopped: false,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Starts a new generation of `slots` workers (reload): the current
    /// workers become retiring ones; returns their pids so the caller can
    /// tell them to drain.
    pub fn new_generation(&mut self, slots: usize) -> Vec<Pid> {
        let old = self.current_pids();
        self.generation += 1;
        self.slots = (0..slots).map(|_| Slot::default()).collect();
        self.stopped = false;
        old
    }

    /// WINCH: no worker is (re)started until `restart`; returns the pids of
    /// the current workers to drain.
    pub fn stop(&mut self) -> Vec<Pid> {
        self.stopped = true;
        self.current_pids()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Rollback after WINCH: fill the slots again.
    pub fn restart(&mut self) {
        self.stopped = false;
        for s in &mut self.slots {
            *s = Slot::default();
        }
    }

    fn current_pids(&self) -> Vec<Pid> {
        self.live
            .iter()
            .filter(|c| c.generation == self.generation)
            .map(|c| c.pid)
            .collect()
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Slots without a live worker whose (re)spawn time has come.
    pub fn slots_to_spawn(&self, now: Instant) -> Vec<usize> {
        if self.stopped {
            return Vec::new();
        }
        (0..self.slots.len())
            .filter(|&s| {
                !self
                    .live
                    .iter()
                    .any(|c| c.slot == s && c.generation == self.generation)
            })
            .filter(|&s| self.slots[s].respawn_at.is_none_or(|t| t <= now))
            .collect()
    }

    pub fn next_respawn(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.respawn_at).min()
    }

    pub fn add(
        &mut self,
        slot: usize,
        pid: Pid,
        channel: std::os::unix::net::UnixStream,
        registry: &Registry,
        now: Instant,
    ) -> io::Result<()> {
        channel.set_nonblocking(true)?;
        let mut channel = UnixStream::from_std(channel);
        let token = Token(self.next_token);
        self.next_token += 1;
        registry.register(&mut channel, token, Interest::READABLE)?;
        self.slots[slot].respawn_at = None;
        log::info!(
            "started worker {slot} of generation {} as process {pid}",
            self.generation
        );
        self.live.push(Child {
            pid,
            slot,
            generation: self.generation,
            token,
            channel,
            ready: false,
            spawned_at: now,
        });
        Ok(())
    }

    pub fn spawn_failed(&mut self, slot: usize, now: Instant) {
        let s = &mut self.slots[slot];
        s.failures += 1;
        s.respawn_at = Some(now + backoff(s.failures));
    }

    /// Reads a worker's messages: `R` = ready to serve,
    /// `worker::STATE_CHANGED` = a dashboard change to runtime state.
    /// Returns whether runtime state changed (the state file is rewritten).
    pub fn on_channel_event(&mut self, token: Token) -> bool {
        let Some(child) = self.live.iter_mut().find(|c| c.token == token) else {
            return false;
        };
        let mut buf = [0u8; 64];
        let mut changed = false;
        loop {
            match child.channel.read(&mut buf) {
                Ok(0) => return changed,
                Ok(n) => {
                    if buf[..n].contains(&b'R') {
                        child.ready = true;
                    }
                    changed |= buf[..n].contains(&crate::worker::STATE_CHANGED);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return changed,
            }
        }
    }

    /// The pids of the current generation's workers.
    pub fn current_worker_pids(&self) -> Vec<i32> {
        self.current_pids().into_iter().map(Pid::as_raw).collect()
    }

    /// Writes `byte` to every current worker's channel. Best effort: a
    /// channel that cannot take it already holds an unread message, and
    /// each message only says "look at the shared state again".
    pub fn tell_workers(&mut self, byte: u8) {
        let generation = self.generation;
        for c in self.live.iter_mut().filter(|c| c.generation == generation) {
            let _ = c.channel.write(&[byte]);
        }
    }

    /// Writes `byte` to every live worker's channel, those of older
    /// generations still draining too.
    pub fn tell_all_workers(&mut self, byte: u8) {
        for c in self.live.iter_mut() {
            let _ = c.channel.write(&[byte]);
        }
    }

    /// Every slot of the current generation has a worker that serves.
    pub fn all_ready(&self) -> bool {
        (0..self.slots.len()).all(|s| {
            self.live
                .iter()
                .any(|c| c.slot == s && c.generation == self.generation && c.ready)
        })
    }

    /// Collects exited workers; with `respawn`, schedules their replacement.
    /// Returns the other children that exited (e.g. a new master started for
    /// an upgrade), with how they ended.
    pub fn reap(&mut self, now: Instant, respawn: bool) -> Vec<(Pid, String)> {
        let mut others = Vec::new();
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return others,
                Ok(s) => s,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return others, // ECHILD: no children left
            };
            let (pid, how) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exited with code {code}")),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("exited on signal {sig}")),
                _ => continue,
            };
            let Some(pos) = self.live.iter().position(|c| c.pid == pid) else {
                others.push((pid, how));
                continue;
            };
            let child = self.live.swap_remove(pos);
            if !respawn || child.generation != self.generation || self.stopped {
                log::info!("worker {} (process {pid}) {how}", child.slot);
                continue;
            }
            log::error!(
                "worker {} (process {pid}) {how} unexpectedly; respawning",
                child.slot
            );
            let slot = &mut self.slots[child.slot];
            if now.duration_since(child.spawned_at) < YOUNG {
                slot.failures += 1;
            } else {
                slot.failures = 0;
            }
            slot.respawn_at = Some(now + backoff(slot.failures));
        }
    }

    /// Whether a worker of `generation` is still alive (e.g. draining).
    pub fn has_generation(&self, generation: u64) -> bool {
        self.live.iter().any(|c| c.generation == generation)
    }

    /// (pid, uptime seconds, generation) of every live worker.
    pub fn workers_info(&self, now: Instant) -> Vec<(i32, u64, u64)> {
        self.live
            .iter()
            .map(|c| {
                (
                    c.pid.as_raw(),
                    now.duration_since(c.spawned_at).as_secs(),
                    c.generation,
                )
            })
            .collect()
    }

    pub fn signal_all(&self, sig: libc::c_int) {
        let pids: Vec<Pid> = self.live.iter().map(|c| c.pid).collect();
        signal_pids(&pids, sig);
    }

    /// In a freshly forked worker: close the master's ends of every channel.
    pub fn close_all_channels(&mut self) {
        self.live.clear();
    }
}

pub fn signal_pids(pids: &[Pid], sig: libc::c_int) {
    let Ok(sig) = Signal::try_from(sig) else {
        return;
    };
    for &pid in pids {
        if let Err(e) = kill(pid, sig) {
            log::warn!("kill({pid}, {sig}) failed: {e}");
        }
    }
}

/// No delay after a worker that lived long; then 250ms, 500ms, ... up to 30s.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let ms = 250u64.saturating_mul(1u64 << (failures - 1).min(16));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
