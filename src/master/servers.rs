//! Runtime server changes (`add server`, `del server`, `set server B/S
//! addr`) in the master, the source of truth.
//!
//! Shared memory is laid out once per generation with fixed server slots,
//! and every worker, the health checker and the pools hold positions into
//! it. Rather than grow it in place, a change starts a *new generation* of
//! the running configuration plus the change, exactly as a reload does,
//! minus reading the file: new workers (and a new health checker) start
//! with the new server list, balancer state and empty connection pools,
//! while the old workers finish what they have in flight with the old
//! list — so no position ever changes under a request in flight, and after
//! `set server B/S addr` no pooled connection to the old address can be
//! reused (the pools that hold them belong to workers that take no new
//! requests: draining workers close idle client connections and answer
//! what is in flight with `Connection: close`). Admin states, weights,
//! health and the counters carry over by name. Several changes in one
//! command line (or one turn of the master's loop) start workers once:
//! only the last generation's are ever forked.
//!
//! The cost is a fork per worker and a health checker per change, and
//! for long-lived connections (WebSockets, long downloads) an old
//! generation that drains until they end or `shutdown_timeout`, as after
//! a reload. A change also lives in the runtime overlay
//! (`config::overlay`), re-applied over the file at every reload and, with
//! `state_file`, at start (restarts and USR2 upgrades).

use super::generation::build_shm;
use super::{HealthProc, Master};
use crate::config::overlay::{self, ServerChange};
use crate::config::Config;
use crate::shm::{AdminState, Shm};
use std::sync::Arc;
use std::time::Instant;

impl Master {
    /// Applies a change the runtime API checked and accepted; an error is
    /// the answer to give instead (the running generation is untouched).
    pub(super) fn change_servers(&mut self, change: &ServerChange) -> Result<(), String> {
        let mut new = self.config.clone();
        overlay::apply(&mut new, change).map_err(|e| format!("{e}."))?;
        let shm = build_shm(&new, Some((&self.shm, &self.config)), true)
            .map_err(|e| format!("Cannot set up shared memory: {e}."))?;
        if let ServerChange::Add { upstream, .. } = change {
            // HAProxy 2.6: an added server starts in maintenance, so that
            // it can be configured further before it takes traffic.
            if let Some(u) = new.upstreams.position(upstream) {
                let s = new.upstreams[u].servers.len().saturating_sub(1);
                shm.server(u, s).set_admin(AdminState::Maint);
            }
        }
        // The overlay remembers the id the added server got, to give it
        // the same one when it is applied over a reloaded file.
        let mut change = change.clone();
        if let ServerChange::Add { upstream, server } = &mut change {
            server.id = new
                .upstreams
                .iter()
                .find(|u| &u.name == upstream)
                .and_then(|u| u.servers.iter().find(|s| s.name == server.name))
                .map(|s| s.id);
        }
        self.overlay.record(&change);
        self.switch_generation(new, shm, "servers changed over the admin socket");
        Ok(())
    }

    /// Makes `new` (with its shared state `shm`) the running configuration:
    /// the current workers and health checker drain and exit, the new ones
    /// start at this turn's end.
    pub(super) fn switch_generation(&mut self, new: Config, shm: Shm, why: &str) {
        let old_shm = std::mem::replace(&mut self.shm, Arc::new(shm));
        // Publish into the new mapping at the next turn, before its
        // workers are asked for metrics.
        self.next_sample = Instant::now();
        let generation = self.children.generation();
        // The old generation's counters stay readable while it drains.
        self.lifetime.retire(generation, Arc::clone(&old_shm));
        let old_config = std::mem::replace(&mut self.config, new);
        self.draining.push((generation, old_config, old_shm));
        let old = self.children.new_generation(self.config.workers.resolve());
        log::info!(
            "configuration generation {} loaded ({why}); draining {} old worker(s)",
            self.children.generation(),
            old.len()
        );
        super::signal_pids(&old, libc::SIGQUIT);
        // The old generation's checker goes; the new one starts this turn.
        self.stop_health(libc::SIGTERM);
        self.health = HealthProc::default();
    }

    /// Takes the DNS answers (`resolver`): servers whose host name now
    /// resolves to another address move there at once, in one new
    /// generation for all of them; a failed lookup keeps the address.
    /// Servers an operator placed (`set server addr`, `add server`) keep
    /// the address they were given.
    pub(super) fn apply_dns(&mut self, answers: Vec<super::resolver::Answer>) {
        let mut new: Option<Config> = None;
        let mut moved = 0;
        for a in answers {
            let l = &a.lookup;
            let Some(u) = self.config.upstreams.position(&l.upstream) else {
                continue;
            };
            let Some(s) = self.config.upstreams[u]
                .servers
                .iter()
                .position(|x| x.name == l.server)
            else {
                continue;
            };
            if self.overlay.sets_addr(&l.upstream, &l.server) {
                continue;
            }
            let old = self.config.upstreams[u].servers[s].addr;
            match a.result {
                Err(e) => {
                    if self.resolver.note(l, true) {
                        log::warn!("server {}/{}: {e}; it keeps {old}", l.upstream, l.server);
                    }
                }
                Ok(addr) => {
                    if self.resolver.note(l, false) {
                        log::info!(
                            "server {}/{}: {} resolves again",
                            l.upstream,
                            l.server,
                            l.host
                        );
                    }
                    if addr != old {
                        log::warn!(
                            "server {}/{}: {} now resolves to {}, was {old}: new connections go there",
                            l.upstream,
                            l.server,
                            l.host,
                            addr.ip()
                        );
                        let cfg = new.get_or_insert_with(|| self.config.clone());
                        cfg.upstreams.0[u].servers[s].addr = addr;
                        moved += 1;
                    }
                }
            }
        }
        let Some(new) = new else { return };
        match build_shm(&new, Some((&self.shm, &self.config)), true) {
            Ok(shm) => self.switch_generation(
                new,
                shm,
                &format!("{moved} server address(es) changed in DNS"),
            ),
            Err(e) => log::error!("cannot apply new server addresses from DNS: {e}"),
        }
    }

    /// Forgets the draining generations whose workers have all exited.
    pub(super) fn collect_draining(&mut self) {
        let children = &self.children;
        self.draining
            .retain(|(g, _, _)| children.has_generation(*g));
    }

    /// The draining generations, for the runtime API.
    pub(super) fn draining_view(&self) -> Vec<(&Config, &Shm)> {
        self.draining.iter().map(|(_, c, s)| (c, &**s)).collect()
    }
}
