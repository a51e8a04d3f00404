//! DNS re-resolution of server host names (upstream `resolve: INTERVAL`),
//! outside every event loop: a thread of the master does the blocking
//! lookups (`getaddrinfo`) and the master's loop takes the answers. A
//! changed address applies at once as a runtime server change does (a new
//! generation of workers with the server at its new address, counters and
//! states carried over by name; the old workers' pooled connections to the
//! old address go with them); a failed lookup keeps the last address.
//!
//! The thread touches nothing but its two channels and the resolver: no
//! logging, no shared state, so a fork of the master while it looks a
//! name up leaves the child nothing half-held that the child would use.

use crate::config::Config;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Instant;

/// How often the master looks for answers while lookups are out.
const ANSWER_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// One server whose `addr` names a host.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub upstream: String,
    pub server: String,
    pub host: String,
    pub port: u16,
}

/// A lookup and what it gave.
#[derive(Debug)]
pub struct Answer {
    pub lookup: Lookup,
    pub result: Result<SocketAddr, String>,
}

/// The master's ends of the lookup thread's channels: batches out,
/// answers in.
type Channels = (mpsc::Sender<Vec<Lookup>>, mpsc::Receiver<Vec<Answer>>);

/// The lookup thread, started at the first lookup, and when each upstream
/// is due.
#[derive(Default)]
pub struct Resolver {
    channels: Option<Channels>,
    /// Per upstream (by name): when its names are looked up next.
    due: Vec<(String, Instant)>,
    /// A batch is out: the next waits for its answers (a slow resolver
    /// must not pile lookups up).
    busy: bool,
    /// Servers (upstream, server) whose last lookup failed: said once in
    /// the log, not at every interval.
    failing: Vec<(String, String)>,
}

/// The servers of `up` whose address is a host name, not an IP literal.
fn host_servers(up: &crate::config::Upstream) -> impl Iterator<Item = Lookup> + '_ {
    up.servers.iter().filter_map(|s| {
        // Checked when the configuration was loaded; `[v6]:port` gives an IP.
        let (host, port) = crate::config::split_host_port(&s.addr_text).ok()?;
        host.parse::<std::net::IpAddr>().is_err().then(|| Lookup {
            upstream: up.name.clone(),
            server: s.name.clone(),
            host: host.to_owned(),
            port,
        })
    })
}

impl Resolver {
    /// When the master should look again: soon while answers are awaited
    /// (the thread cannot wake its poll), else when an upstream is due.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        if self.busy {
            return Some(now + ANSWER_POLL);
        }
        self.due.iter().map(|(_, at)| *at).min()
    }

    /// Sends the lookups that are due (at most one batch at a time) and
    /// returns the answers that came back since the last call.
    pub fn tick(&mut self, config: &Config, now: Instant) -> Vec<Answer> {
        let mut answers = Vec::new();
        if let Some((_, rx)) = &self.channels {
            while let Ok(batch) = rx.try_recv() {
                answers.extend(batch);
                self.busy = false;
            }
        }
        // Upstreams come and go with reloads: follow the configuration.
        self.due.retain(|(name, _)| {
            config
                .upstreams
                .iter()
                .any(|u| &u.name == name && u.resolve.is_some())
        });
        let mut batch = Vec::new();
        for up in config.upstreams.iter() {
            let Some(every) = up.resolve else { continue };
            let slot = match self.due.iter().position(|(n, _)| n == &up.name) {
                Some(i) => i,
                None => {
                    self.due.push((up.name.clone(), now + every));
                    continue;
                }
            };
            if self.busy || self.due[slot].1 > now {
                continue;
            }
            self.due[slot].1 = now + every;
            batch.extend(host_servers(up));
        }
        if !batch.is_empty() && self.send(batch) {
            self.busy = true;
        }
        answers
    }

    /// Records how a server's lookup went; true when that is news (the
    /// first failure, or the first success after failures).
    pub fn note(&mut self, lookup: &Lookup, failed: bool) -> bool {
        let key = (lookup.upstream.clone(), lookup.server.clone());
        let at = self.failing.iter().position(|k| *k == key);
        match (failed, at) {
            (true, None) => {
                self.failing.push(key);
                true
            }
            (false, Some(i)) => {
                self.failing.swap_remove(i);
                true
            }
            _ => false,
        }
    }

    fn send(&mut self, batch: Vec<Lookup>) -> bool {
        if self.channels.is_none() {
            self.channels = spawn();
        }
        match &self.channels {
            Some((tx, _)) => tx.send(batch).is_ok(),
            None => false,
        }
    }
}

/// Starts the lookup thread; None if the system refuses a thread (then
/// names keep the addresses they had at load).
fn spawn() -> Option<Channels> {
    let (job_tx, job_rx) = mpsc::channel::<Vec<Lookup>>();
    let (answer_tx, answer_rx) = mpsc::channel::<Vec<Answer>>();
    let spawned = std::thread::Builder::new()
        .name("forklb-resolve".into())
        .spawn(move || {
            while let Ok(batch) = job_rx.recv() {
                let answers = batch
                    .into_iter()
                    .map(|lookup| Answer {
                        result: crate::config::resolve_host(&lookup.host, lookup.port),
                        lookup,
                    })
                    .collect();
                if answer_tx.send(answers).is_err() {
                    return;
                }
            }
        });
    match spawned {
        Ok(_) => Some((job_tx, answer_rx)),
        Err(e) => {
            log::error!("cannot start the DNS re-resolution thread: {e}");
            None
        }
    }
}
