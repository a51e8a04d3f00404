//! The shared state of a new configuration generation, and what carries
//! over into it from the running one on a reload.
//!
//! Carry-over goes by upstream and server name through a [`ServerIndex`] of
//! the running configuration, built once: one pass over the new servers, one
//! constant-time lookup each. (Scanning the old lists per server made a
//! reload with 100,000 servers cost the master seconds of CPU, during which
//! it neither reaped children nor answered signals or admin commands.)

use crate::config::{Config, ServerIndex};
use crate::shm::{self, Shm};
use std::io;

/// The limit tables of `config`: a table whose name and kind the running
/// generation has, at the same size, is handed on (the same mapping: its
/// state goes on, and a request in flight in an old worker releases its
/// `limit_conn` where the new workers count); others start empty. A route
/// whose limit changed (rate, burst, max) keeps its state, read with the
/// new settings; a new `size` starts an empty table.
fn limit_tables(
    config: &Config,
    previous: Option<&Shm>,
) -> io::Result<Vec<std::sync::Arc<shm::LimitTable>>> {
    config
        .limit_tables()
        .into_iter()
        .map(|(name, kind, size)| {
            let old = previous.and_then(|p| {
                p.limits()
                    .iter()
                    .find(|t| {
                        t.name() == name
                            && t.kind() == kind
                            && t.size() == shm::LimitTable::rounded_size(size)
                    })
                    .cloned()
            });
            match old {
                Some(t) => Ok(t),
                None => shm::LimitTable::create(&name, kind, size).map(std::sync::Arc::new),
            }
        })
        .collect()
}

/// Creates the shared state of a generation: every server READY with its
/// configured weight and maxconn and, if checked, fully UP. With `previous`
/// (a reload), admin states, weights and maxconns changed at runtime and
/// health carry over by
/// upstream and server name, so neither an operator's `maint` nor a DOWN
/// server is forgotten.
///
/// `counters`: a runtime server change (not a reload) — the counters of
/// servers, upstreams and listeners go on from the previous generation's.
pub fn build_shm(
    config: &Config,
    previous: Option<(&Shm, &Config)>,
    counters: bool,
) -> io::Result<Shm> {
    let counts: Vec<usize> = config.upstreams.iter().map(|u| u.servers.len()).collect();
    let mut shm =
        Shm::create_with_listeners(&counts, config.workers.resolve(), config.listeners.len())?;
    shm.set_limits(limit_tables(config, previous.map(|(s, _)| s))?);
    // A listener disabled over the runtime API stays disabled across a
    // reload (matched by name). Its counters start over, as HAProxy's do.
    if let Some((old_shm, old_cfg)) = previous {
        for (i, l) in config.listeners.iter().enumerate() {
            if let Some(o) = old_cfg.listeners.iter().position(|x| x.name == l.name) {
                shm.set_listener_disabled(i, old_shm.listener_disabled(o));
                if counters {
                    if let Some(c) = shm.listener_counts(0, i) {
                        c.carry_totals(old_shm.listener_stats(o));
                    }
                    if let (Some(new), Some(old)) = (shm.listener(i), old_shm.listener(o)) {
                        new.carry_max(old);
                    }
                }
            }
        }
    }
    let now = shm::unix_secs();
    let previous = previous.map(|(old_shm, old_cfg)| (old_shm, old_cfg, ServerIndex::new(old_cfg)));
    for (ui, up) in config.upstreams.iter().enumerate() {
        // The backend's state and when it last changed go on by name (its
        // first look then finds whether this generation's servers still
        // agree); a new upstream starts now.
        let backend = shm.upstream(ui).backend();
        backend.start(now);
        if let Some((old_shm, _, index)) = &previous {
            if let Some(oui) = index.upstream(&up.name) {
                backend.carry_over(old_shm.upstream(oui).backend(), counters);
                if counters {
                    shm.upstream(ui).carry_counters(old_shm.upstream(oui));
                }
            }
        }
        let full_health = up.health.as_ref().map(|h| h.rise + h.fall - 1);
        // A checked server starts UP at `rise`, as HAProxy starts it ("up,
        // but will fall down at first failure"): traffic flows at once, and
        // a server broken from the start is out after one check, not `fall`.
        let starting_health = up.health.as_ref().map(|h| h.rise);
        for (si, s) in up.servers.iter().enumerate() {
            let sh = shm.server(ui, si);
            sh.init(s.weight, starting_health, now);
            sh.set_maxconn(s.maxconn);
            let Some((old_shm, old_cfg, index)) = &previous else {
                continue;
            };
            let Some((oui, osi)) = index.server(&up.name, &s.name) else {
                continue;
            };
            let old_up = &old_cfg.upstreams[oui];
            // Health carries over when both generations check the server,
            // or neither does (then it is what an operator forced).
            let health = match (full_health, old_up.health.is_some()) {
                (Some(full), true) => shm::HealthCarry::Checked { full },
                (None, false) => shm::HealthCarry::Forced,
                _ => shm::HealthCarry::Nothing,
            };
            let old_s = &old_up.servers[osi];
            sh.carry_over(
                old_shm.server(oui, osi),
                shm::Configured {
                    weight: old_s.weight,
                    maxconn: old_s.maxconn,
                },
                health,
            );
            if counters {
                sh.carry_counters(old_shm.server(oui, osi));
            }
        }
    }
    Ok(shm)
}
