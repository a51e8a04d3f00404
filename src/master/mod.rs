//! The master process: binds the listening sockets, forks the workers,
//! writes the pid file once they serve, and then only reacts — to signals,
//! to workers exiting, to timers. It is never on the data path.
//!
//! Like nginx's master cycle, signal handlers only set flags; `run` wakes up
//! and acts on them in a fixed order: reap children, terminate, quit,
//! reload, reopen, upgrade — the whole lifecycle reads top to bottom there.

mod child_exit;
mod children;
mod daemon;
mod generation;
mod handoff;
mod lifetime;
mod listening;
pub mod notify;
pub mod pidfile;
mod privileges;
pub mod rates;
mod resolver;
mod row_rates;
mod servers;
mod terminal;
mod upgrade;

pub use upgrade::oldbin_path;

use crate::config::Config;
use crate::net;
use crate::signals::{self, SignalSet};
use child_exit::ChildError;
use children::{backoff, signal_pids, Children};
use generation::build_shm;
use listening::BoundSocket;
use mio::{Events, Poll, Token};
use nix::unistd::Pid;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use upgrade::Invocation;

const SIGNAL_TOKEN: Token = Token(0);
const ADMIN_TOKEN: Token = Token(1);

/// Extra time after `shutdown_timeout` before remaining workers are killed.
const QUIT_GRACE: Duration = Duration::from_secs(5);
/// How long workers get to exit after TERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// While offering the listening sockets after QUIT, how often to look for a
/// `-u` instance on `upgrade_sock` (Pingora's old instance tries every 1 s;
/// sooner means the new instance serves sooner).
const OFFER_INTERVAL: Duration = Duration::from_millis(100);
/// How often a master started by USR2 looks whether its old master is gone.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub enum MasterError {
    Log(io::Error),
    Bind(net::NetError),
    PidFile { path: PathBuf, err: io::Error },
    Setup { what: &'static str, err: io::Error },
}

impl fmt::Display for MasterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterError::Log(e) => write!(f, "{e}"),
            MasterError::Bind(e) => write!(f, "{e}"),
            MasterError::PidFile { path, err } => {
                write!(f, "cannot write pid file {}: {err}", path.display())
            }
            MasterError::Setup { what, err } => write!(f, "{what} failed: {err}"),
        }
    }
}

impl std::error::Error for MasterError {}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> MasterError {
    move |err| MasterError::Setup { what, err }
}

/// A QUIT that came while the new master (USR2) was not serving yet:
/// draining then would leave nobody to answer while the new binary starts,
/// or hangs. It is held until the new master serves (then this master
/// quits), or fails or is not serving by `until` (`upgrade_timeout`; then
/// it is given up and this master serves on). A second QUIT always goes
/// ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuitHold {
    None,
    Waiting { until: Instant },
    GaveUp,
}

/// Where the master is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// QUIT with an upgrade grace: still serving, offering the listening
    /// sockets on `upgrade_sock` until a `-u` instance takes them or `until`.
    Offering {
        until: Instant,
        next_try: Instant,
        /// Failed attempts so far (only the first error is logged loudly).
        errors: u32,
    },
    /// QUIT: workers drain; kill what is left at the deadline.
    Quitting {
        kill_at: Instant,
    },
    /// TERM/INT: workers exit now; kill what is left at the deadline.
    Terminating {
        kill_at: Instant,
    },
}

pub struct Master {
    config: Config,
    /// The access log file, opened once here so a bad path fails start-up;
    /// each worker gets its own descriptor of it.
    access_log: Option<std::fs::File>,
    poll: Poll,
    signals: Option<SignalSet>,
    sockets: Vec<BoundSocket>,
    children: Children,
    state: State,
    /// A `-u` instance took our listening sockets: it writes the pid file
    /// when it serves, so we leave the file alone when we exit (checking
    /// that it still names us and then removing it would race with that
    /// write).
    handed_over: bool,
    pid_written: bool,
    pid: u32,
    /// Where our pid file is now: `pid_file`, or `pid_file.oldbin` while a
    /// new binary runs beside us.
    pid_path: PathBuf,
    invocation: Invocation,
    /// The new master started by USR2, while it runs.
    upgrade_child: Option<Pid>,
    /// A QUIT held back while the new master (USR2) is not serving yet.
    quit_hold: QuitHold,
    /// The new master (USR2) was seen serving (the pid file named it).
    /// Once it has, a QUIT is never held for it: it may be exiting already
    /// (a `systemctl stop` quits it first), its pid file gone.
    upgrade_served: bool,
    /// Who workers run as (root only).
    identity: Option<privileges::Identity>,
    /// How this master came to be (a plain start, a USR2 upgrade, `-u`).
    origin: Origin,
    /// State shared with this generation's workers and health checker.
    shm: std::sync::Arc<crate::shm::Shm>,
    /// Totals over the instance's lifetime (`show info`), old generations
    /// included.
    lifetime: lifetime::LifetimeTotals,
    health: HealthProc,
    /// The runtime API socket, if configured.
    admin: Option<crate::admin::AdminServer>,
    started: Instant,
    /// Unix time of the start (`show info`'s Start_time_sec), taken once.
    started_unix: u64,
    /// Rates over the last second (`show info`), sampled every
    /// `rates::SAMPLE_EVERY` at `next_sample`.
    rates: rates::Rates,
    /// `show stat`'s per-row rates, sampled with `rates`.
    row_rates: row_rates::RowRates,
    /// DNS re-resolution of server host names (upstream `resolve`).
    resolver: resolver::Resolver,
    next_sample: Instant,
    /// `sysconf(_SC_CLK_TCK)`: the unit of /proc's CPU times.
    clock_ticks: u64,
    /// Servers added, deleted or moved over the runtime API: re-applied
    /// over the file at every reload (and saved in `state_file`).
    overlay: crate::config::overlay::Overlay,
    /// Replaced generations while their workers drain: (generation, its
    /// configuration, its shared state), for `del server`'s in-flight check.
    draining: Vec<(u64, Config, std::sync::Arc<crate::shm::Shm>)>,
}

/// The health checker process of the current generation.
#[derive(Default)]
struct HealthProc {
    pid: Option<Pid>,
    /// Our end of its channel: when the master dies, the checker sees EOF.
    channel: Option<std::os::unix::net::UnixStream>,
    spawned_at: Option<Instant>,
    respawn_at: Option<Instant>,
    failures: u32,
}

/// Where a master stands among masters. It decides what the master tells
/// systemd when it is ready and who serves on when it stops (see `notify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Bound its sockets itself (or got them from systemd socket activation).
    Fresh,
    /// Started by USR2 of `old_master`, which waits beside it as `.oldbin`
    /// (and is systemd's main process while it lives).
    Usr2 { old_master: Pid },
    /// Took over from an instance that is gone or going: after `-u`, or once
    /// the master that started us by USR2 has exited. systemd must be told
    /// to follow us.
    Succeeded,
}

/// Start-up choices made on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// `-d`: detach (also `daemon: true` in the configuration).
    pub daemon: bool,
    /// `-u`: take the listening sockets over from the running instance
    /// through `upgrade_sock` before serving.
    pub upgrade: bool,
}

/// Runs the master until it exits; `Ok` means a clean shutdown.
pub fn run(config: Config, opts: RunOptions) -> Result<(), MasterError> {
    crate::log::set_role(crate::log::Role::Master);
    crate::log::init(&config.error_log, config.log_level.to_filter()).map_err(MasterError::Log)?;
    fit_open_files_limit(config.worker_connections);
    // Before any worker is forked: they all inherit this one secret.
    crate::dashboard::token::init();
    pidfile::check_writable(&config.pid_file).map_err(|err| MasterError::PidFile {
        path: config.pid_file.clone(),
        err,
    })?;
    let access_log = match &config.access_log {
        Some(a) => Some(crate::access_log::open(&a.path).map_err(MasterError::Log)?),
        None => None,
    };
    // Sockets handed over by an upgrading master are adopted before anything
    // is bound, so the same addresses keep the same sockets.
    let (inherited, origin) = if opts.upgrade {
        let sockets = receive_handoff(&config)?;
        (sockets, Origin::Succeeded)
    } else {
        let inherited = upgrade::take_inherited();
        let origin = match inherited.from_master {
            Some(old_master) => Origin::Usr2 { old_master },
            None => Origin::Fresh,
        };
        (inherited.sockets, origin)
    };
    let sockets = bind_all(&config, inherited)?;
    let identity = privileges::for_workers(&config, true).map_err(|e| MasterError::Setup {
        what: "user lookup",
        err: io::Error::other(e),
    })?;
    if let Some(id) = &identity {
        chown_logs(id, access_log.as_ref());
    }
    // Detach only now: bind and log errors above (and a `-u` that got no
    // sockets) still reach the terminal. A master started by USR2 is already
    // where it should be: its old master must stay its parent for a rollback.
    if (opts.daemon || config.daemon) && !matches!(origin, Origin::Usr2 { .. }) {
        daemon::daemonize().map_err(setup("daemon"))?;
    }
    let poll = Poll::new().map_err(setup("epoll_create"))?;
    let mut sigs = SignalSet::new(&[
        signals::SIGTERM,
        signals::SIGINT,
        signals::SIGQUIT,
        signals::SIGHUP,
        signals::SIGUSR1,
        signals::SIGUSR2,
        signals::SIGWINCH,
        signals::SIGCHLD,
    ])
    .map_err(setup("signal setup"))?;
    sigs.register(poll.registry(), SIGNAL_TOKEN)
        .map_err(setup("signal setup"))?;
    set_process_name("forklb-master");
    let mut config = config;
    let state = read_state_file(&config);
    let overlay = state
        .as_deref()
        .map(|text| restore_overlay(text, &mut config))
        .unwrap_or_default();
    let shm = build_shm(&config, None, false).map_err(setup("shared memory"))?;
    let mut master = Master {
        shm: std::sync::Arc::new(shm),
        lifetime: lifetime::LifetimeTotals::default(),
        health: HealthProc::default(),
        admin: None,
        started: Instant::now(),
        started_unix: crate::shm::unix_secs(),
        rates: rates::Rates::default(),
        row_rates: row_rates::RowRates::default(),
        resolver: resolver::Resolver::default(),
        next_sample: Instant::now(),
        clock_ticks: crate::procfs::ticks_per_sec(),
        overlay,
        draining: Vec::new(),
        access_log,
        children: Children::new(config.workers.resolve()),
        config,
        poll,
        signals: Some(sigs),
        sockets,
        state: State::Running,
        handed_over: false,
        pid_written: false,
        pid: std::process::id(),
        pid_path: PathBuf::new(),
        invocation: Invocation::current(),
        upgrade_child: None,
        quit_hold: QuitHold::None,
        upgrade_served: false,
        identity,
        origin,
    };
    master.pid_path = master.config.pid_file.clone();
    if let Some(text) = state {
        master.apply_state_file(&text);
    }
    master.bind_admin();
    log::info!(
        "forklb {} starting: {} worker(s), listening on {}",
        env!("CARGO_PKG_VERSION"),
        master.children.slots(),
        master
            .sockets
            .iter()
            .map(|s| s.addr.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    warn_unverified_tls(&master.config);
    log_load_warnings(&master.config);
    master.run()
}

/// Raises RLIMIT_NOFILE (inherited by the workers) to what
/// `worker_connections` may need: a client and an upstream socket per
/// connection, and some to spare; warns if it cannot.
fn fit_open_files_limit(worker_connections: usize) {
    let want = (worker_connections as u64)
        .saturating_mul(2)
        .saturating_add(256);
    match net::raise_nofile_limit(want) {
        Ok(have) if have < want => log::warn!(
            "open files limit is {have}, below the {want} that worker_connections \
             {worker_connections} may need (raising the hard limit needs root with \
             CAP_SYS_RESOURCE, or LimitNOFILE= in the systemd unit)"
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
}

/// `-u`: waits (at most `upgrade_timeout`) on `upgrade_sock` for the running
/// instance's listening sockets, telling the operator what it waits for.
fn receive_handoff(config: &Config) -> Result<Vec<(TcpListener, SocketAddr)>, MasterError> {
    let path = config.upgrade_sock_path();
    let timeout = config.upgrade_timeout;
    let msg = format!(
        "waiting up to {} s on {} for the running instance to hand over its listening sockets \
         (send it QUIT)",
        timeout.as_secs_f64(),
        path.display()
    );
    log::info!("{msg}");
    if config.error_log != "stderr" {
        eprintln!("forklb: {msg}");
    }
    handoff::receive_sockets(path, timeout).map_err(setup("upgrade_sock handoff"))
}

/// `verify: false` is allowed, but nobody should run it unknowingly.
fn warn_unverified_tls(cfg: &Config) {
    for up in cfg.upstreams.iter() {
        if up.tls_settings.as_ref().is_some_and(|t| !t.verify) {
            log::warn!(
                "upstream {}: TLS certificate verification is off (tls.verify: false); \
                 the servers' identity is not checked",
                up.name
            );
        }
    }
}

/// What loading the configuration found (expiring certificates), now that
/// the error log is open.
fn log_load_warnings(cfg: &Config) {
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
}

/// Binds every address of the configuration, taking a socket from
/// `existing` where one already listens on that address (inherited at an
/// upgrade, or kept across a reload). Sockets of `existing` that the
/// configuration no longer names are closed.
fn bind_all(
    config: &Config,
    mut existing: Vec<(TcpListener, SocketAddr)>,
) -> Result<Vec<BoundSocket>, MasterError> {
    let mut out = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        for &addr in &l.addrs {
            let socket = match existing.iter().position(|(_, a)| *a == addr) {
                Some(pos) => existing.swap_remove(pos).0,
                None => net::bind_listener(addr).map_err(MasterError::Bind)?,
            };
            out.push(BoundSocket {
                listener: i,
                addr,
                socket,
            });
        }
    }
    for (_, addr) in existing {
        log::info!("closing listening socket {addr}: no longer configured");
    }
    Ok(out)
}

/// Logs a refused reload and returns its reason.
fn reload_failed(reason: String) -> String {
    log::error!("reload failed, keeping the running configuration: {reason}");
    reason
}

/// The state file's text, if configured and present (a start after a
/// restart or an upgrade).
fn read_state_file(config: &Config) -> Option<String> {
    let path = config.state_file.as_ref()?;
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log::error!("cannot read state file {}: {e}", path.display());
            None
        }
    }
}

/// Re-applies the runtime server changes saved in a state file over the
/// configuration just loaded; returns the overlay that remains.
fn restore_overlay(text: &str, config: &mut Config) -> crate::config::overlay::Overlay {
    let (mut overlay, bad) = crate::config::overlay::Overlay::parse(text);
    for line in bad {
        log::warn!("state file: ignoring unreadable runtime server line {line:?}");
    }
    for note in overlay.reapply(config) {
        log::warn!("state file: {note}");
    }
    if !overlay.is_empty() {
        log::info!("state file: runtime server changes re-applied");
    }
    overlay
}

/// Hands the error log and access log files to the worker identity.
fn chown_logs(id: &privileges::Identity, access_log: Option<&std::fs::File>) {
    crate::log::with_file(|f| {
        if let Err(e) = privileges::chown_file(f, id) {
            log::warn!("cannot chown the error log to {}: {e}", id.user);
        }
    });
    if let Some(f) = access_log {
        if let Err(e) = privileges::chown_file(f, id) {
            log::warn!("cannot chown the access log to {}: {e}", id.user);
        }
    }
}

fn process_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|p| nix::sys::signal::kill(Pid::from_raw(p), None).is_ok())
}

/// Sets the name `ps -o comm` shows.
pub fn set_process_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

impl Master {
    fn run(&mut self) -> Result<(), MasterError> {
        let mut events = Events::with_capacity(64);
        self.spawn_missing(Instant::now());
        loop {
            let now = Instant::now();
            let timeout = self.next_wakeup().map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(MasterError::Setup {
                        what: "epoll_wait",
                        err: e,
                    });
                }
            }
            for ev in events.iter() {
                if ev.token() == SIGNAL_TOKEN {
                    if let Some(s) = self.signals.as_mut() {
                        s.drain_wakeups();
                    }
                } else if ev.token() == ADMIN_TOKEN {
                    if let Some(a) = self.admin.as_mut() {
                        a.accept(self.poll.registry(), Instant::now());
                    }
                } else if crate::admin::AdminServer::owns(ev.token()) {
                    let writable = ev.is_writable();
                    self.serve_admin(ev.token(), writable, Instant::now());
                } else if self.children.on_channel_event(ev.token()) {
                    // A dashboard change: what the admin socket's
                    // `Effect::StateChanged` does.
                    self.state_changed(Instant::now());
                }
            }
            if self.cycle(Instant::now()) {
                if !self.handed_over {
                    // The next start reads it: written now, the ages of
                    // the last changes (`lastchg`) in it are current.
                    self.save_state_file(Instant::now());
                    pidfile::remove_if_ours(&self.pid_path, self.pid);
                }
                log::info!("exit");
                return Ok(());
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let kill_at = match self.state {
            State::Running => None,
            State::Offering { next_try, .. } => Some(next_try),
            State::Quitting { kill_at } | State::Terminating { kill_at } => Some(kill_at),
        };
        let admin = self.admin.as_ref().and_then(|a| a.next_deadline());
        let now = Instant::now();
        // Nothing signals these two; look now and then.
        let watch_parent = matches!(self.origin, Origin::Usr2 { .. }).then(|| now + WATCH_INTERVAL);
        let watch_new_master = ((!self.serving()
            || matches!(self.quit_hold, QuitHold::Waiting { .. }))
            && self.new_master_starting())
        .then(|| now + OFFER_INTERVAL);
        [
            kill_at,
            self.children.next_respawn(),
            self.health.respawn_at,
            admin,
            watch_parent,
            watch_new_master,
            Some(self.next_sample),
            self.resolver.next_wakeup(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn take_signal(&self, sig: libc::c_int) -> bool {
        self.signals.as_ref().is_some_and(|s| s.take(sig))
    }

    /// One turn of the master cycle; true when the master should exit.
    fn cycle(&mut self, now: Instant) -> bool {
        if let Some(a) = self.admin.as_mut() {
            a.expire(now);
        }
        if now >= self.next_sample {
            self.sample_rates(now);
        }
        if matches!(self.state, State::Running) {
            let answers = self.resolver.tick(&self.config, now);
            if !answers.is_empty() {
                self.apply_dns(answers);
            }
        }
        // 1. Reap. (Always: a coalesced SIGCHLD must not be missed.)
        let _ = self.take_signal(signals::SIGCHLD);
        let running = self.serving();
        for (pid, how) in self.children.reap(now, running) {
            if self.upgrade_child == Some(pid) {
                self.upgrade_failed(&how);
            } else if self.health.pid == Some(pid) {
                self.health_exited(&how, now, running);
            } else {
                log::info!("process {pid} {how}");
            }
        }
        self.lifetime.collect(|g| self.children.has_generation(g));
        self.collect_draining();
        self.check_old_master();

        // 2. Terminate (fast).
        if self.take_signal(signals::SIGTERM) | self.take_signal(signals::SIGINT)
            && !matches!(self.state, State::Terminating { .. })
        {
            log::info!("received TERM/INT: fast shutdown");
            if self.serving() {
                self.announce_stop(false);
            }
            self.close_listeners();
            self.children.signal_all(libc::SIGTERM);
            self.stop_health(libc::SIGTERM);
            self.state = State::Terminating {
                kill_at: now + TERM_GRACE,
            };
        }

        // 3. Quit (graceful), after offering the sockets to a `-u` instance.
        if self.upgrade_child.is_some() && !self.upgrade_served {
            self.upgrade_served = !self.new_master_starting();
        }
        if self.take_signal(signals::SIGQUIT) && self.state == State::Running {
            match self.quit_hold {
                QuitHold::None if self.upgrade_child.is_some() && !self.upgrade_served => {
                    // Draining now would leave nobody serving while the
                    // new binary starts (or hangs).
                    log::warn!(
                        "received QUIT while the new master is not serving yet: serving on \
                         until it is, then quitting (for {} s at most; QUIT again quits now)",
                        self.config.upgrade_timeout.as_secs_f64()
                    );
                    self.quit_hold = QuitHold::Waiting {
                        until: now + self.config.upgrade_timeout,
                    };
                }
                // Not starting, or a QUIT insisted on.
                _ => {
                    self.quit_hold = QuitHold::None;
                    self.quit(now);
                }
            }
        }
        if let QuitHold::Waiting { until } = self.quit_hold {
            if self.upgrade_child.is_some() && self.upgrade_served {
                // The new master serves: the held QUIT goes ahead.
                self.quit_hold = QuitHold::None;
                if self.state == State::Running {
                    self.quit(now);
                }
            } else if self.upgrade_child.is_none() || now >= until {
                // It failed, or never came to serve: quitting would leave
                // nobody serving.
                self.quit_hold = QuitHold::GaveUp;
                log::error!(
                    "QUIT not done: the new master did not come to serve; this master serves \
                     on (send QUIT again to stop it)"
                );
            }
        }
        if let State::Offering {
            until,
            next_try,
            errors,
        } = self.state
        {
            if now >= next_try {
                self.offer_again(now, until, errors);
            }
        }

        // 4. Reload, 5. reopen, 6. upgrade, 7. stop accepting.
        if self.take_signal(signals::SIGHUP) && self.state == State::Running {
            let _ = self.reload_announced();
            self.rebind_admin_if_moved();
        }
        if self.take_signal(signals::SIGUSR1) {
            log::info!("received USR1: reopening logs");
            if let Err(e) = crate::log::reopen() {
                log::error!("cannot reopen the error log: {e}");
            }
            if let Some(cfg) = &self.config.access_log {
                // Workers started later inherit this descriptor.
                match crate::access_log::open(&cfg.path) {
                    Ok(f) => self.access_log = Some(f),
                    Err(e) => log::error!("{e}"),
                }
            }
            // Files re-created just now must stay writable by the workers.
            if let Some(id) = &self.identity {
                chown_logs(id, self.access_log.as_ref());
            }
            self.children.signal_all(libc::SIGUSR1);
        }
        if self.take_signal(signals::SIGUSR2) && self.state == State::Running {
            self.start_upgrade();
        }
        if self.take_signal(signals::SIGWINCH) && self.state == State::Running {
            if terminal::in_foreground() {
                log::warn!(
                    "received WINCH in a terminal's foreground, where a window resize sends it: \
                     ignored (to drain the workers with WINCH, run forklb with -d or under systemd)"
                );
            } else {
                log::info!(
                    "received WINCH: stopping workers gracefully, keeping the listening sockets"
                );
                let pids = self.children.stop();
                signal_pids(&pids, libc::SIGQUIT);
            }
        }

        match self.state {
            State::Running | State::Offering { .. } => {
                self.spawn_missing(now);
                self.spawn_health_if_needed(now);
                if !self.pid_written && self.children.all_ready() {
                    match pidfile::write(&self.config.pid_file, self.pid) {
                        Ok(()) => {
                            self.pid_written = true;
                            log::info!("ready: {} worker(s) serving", self.children.slots());
                            match self.origin {
                                Origin::Fresh => {
                                    notify::ready();
                                    daemon::report_ready();
                                }
                                // The old master is systemd's main process
                                // and our parent: systemd follows us when it
                                // exits (it reads the pid file then), while
                                // we are its own child, not a stranger it
                                // could not supervise. Until then we are not
                                // the service's voice.
                                Origin::Usr2 { .. } => {}
                                Origin::Succeeded => {
                                    notify::ready_as_main(self.pid);
                                    daemon::report_ready();
                                }
                            }
                        }
                        Err(e) => {
                            log::error!(
                                "cannot write pid file {}: {e}",
                                self.config.pid_file.display()
                            );
                        }
                    }
                }
                false
            }
            State::Quitting { kill_at } | State::Terminating { kill_at } => {
                if self.children.is_empty()
                    && self.health.pid.is_none()
                    && (!self.new_master_starting() || now >= kill_at)
                {
                    return true;
                }
                if now >= kill_at {
                    log::warn!(
                        "{} worker(s) did not exit in time: killing",
                        self.children.len()
                    );
                    self.children.signal_all(libc::SIGKILL);
                    self.stop_health(libc::SIGKILL);
                    // Give the kernel a moment; reaping happens on SIGCHLD.
                    self.state = State::Terminating {
                        kill_at: now + Duration::from_secs(1),
                    };
                }
                false
            }
        }
    }

    /// QUIT: hand the sockets to a waiting `-u` instance and drain; or, with
    /// an upgrade grace, go on serving while offering them (`Offering`).
    fn quit(&mut self, now: Instant) {
        log::info!("received QUIT: graceful shutdown");
        // With a successor master (a binary upgrade or its rollback) nobody
        // needs our sockets: they live on in that master.
        let grace = match self.successor() {
            Some(_) => Duration::ZERO,
            None => self.config.upgrade_grace(),
        };
        if self.offer_sockets(0) {
            self.begin_quit(now, true);
        } else if grace.is_zero() {
            self.begin_quit(now, false);
        } else {
            log::info!(
                "still serving for up to {} s while offering the listening sockets on {} \
                 (start the new instance with -u)",
                grace.as_secs_f64(),
                self.config.upgrade_sock_path().display()
            );
            self.state = State::Offering {
                until: now + grace,
                next_try: now + OFFER_INTERVAL,
                errors: 1,
            };
        }
    }

    /// One more offer of the sockets during the grace; at its end, drain.
    fn offer_again(&mut self, now: Instant, until: Instant, errors: u32) {
        if self.offer_sockets(errors) {
            self.begin_quit(now, true);
        } else if now >= until {
            log::info!("no instance took the listening sockets: closing them");
            self.begin_quit(now, false);
        } else {
            self.state = State::Offering {
                until,
                next_try: now + OFFER_INTERVAL,
                errors: errors + 1,
            };
        }
    }

    /// Still serving: running, or offering the sockets after QUIT.
    fn serving(&self) -> bool {
        matches!(self.state, State::Running | State::Offering { .. })
    }

    /// The pid file names this master (it is the one systemd should follow).
    fn named_in_pid_file(&self) -> bool {
        self.pid_written && self.pid_path == self.config.pid_file
    }

    /// This master is systemd's main process: the pid file names it and no
    /// old master (whose child it is) still holds that place.
    fn speaks_for_service(&self) -> bool {
        self.named_in_pid_file() && !matches!(self.origin, Origin::Usr2 { .. })
    }

    /// One attempt to hand the listening sockets to a `-u` instance waiting
    /// on `upgrade_sock`; true when it took them. `attempt` > 0 logs errors
    /// quietly (the offer is retried every `OFFER_INTERVAL`).
    fn offer_sockets(&self, attempt: u32) -> bool {
        let path = self.config.upgrade_sock_path();
        match handoff::send_sockets(path, &self.sockets) {
            Ok(true) => {
                log::info!(
                    "handed {} listening socket(s) over to the new instance on {}",
                    self.sockets.len(),
                    path.display()
                );
                true
            }
            Ok(false) => false,
            Err(e) if attempt <= 1 => {
                log::error!("socket handoff on {} failed: {e}", path.display());
                false
            }
            Err(e) => {
                log::debug!("socket handoff on {} failed: {e}", path.display());
                false
            }
        }
    }

    /// Stops accepting and drains the workers (QUIT). `handed_over`: a `-u`
    /// instance took the listening sockets and serves on.
    fn begin_quit(&mut self, now: Instant, handed_over: bool) {
        self.handed_over |= handed_over;
        self.announce_stop(handed_over);
        self.close_listeners();
        self.children.signal_all(libc::SIGQUIT);
        self.stop_health(libc::SIGTERM);
        self.state = State::Quitting {
            kill_at: now + self.config.shutdown_timeout + QUIT_GRACE,
        };
    }

    /// The master that goes on serving when this one exits, if any: the new
    /// master our USR2 started, or — for a master started by USR2 — the old
    /// master still waiting as `.oldbin` (a rollback).
    fn successor(&self) -> Option<u32> {
        if let Some(new) = self.upgrade_child {
            return u32::try_from(new.as_raw()).ok();
        }
        if let Origin::Usr2 { old_master } = self.origin {
            // Still our parent (it would have been reparented away had it
            // exited) and still waiting in `.oldbin`.
            let oldbin = upgrade::oldbin_path(&self.config.pid_file);
            let old = u32::try_from(old_master.as_raw()).ok();
            if nix::unistd::getppid() == old_master && pidfile::read(&oldbin).ok() == old {
                return old;
            }
        }
        None
    }

    /// Tells systemd this master stops: the service goes on with the
    /// successor (MAINPID moves to it), or with a `-u` instance (which
    /// announces itself when it serves), or it is stopping as a whole.
    fn announce_stop(&self, handed_over: bool) {
        match self.successor() {
            Some(pid) => log::info!("master {pid} goes on serving the service"),
            None if handed_over => {}
            None => notify::stopping(),
        }
    }

    /// A master started by USR2 whose old master has exited is reparented
    /// (to systemd under systemd): from now on it must be the main process.
    /// systemd normally follows the pid file when the old master exits; the
    /// announcement covers units without `PIDFile=`.
    fn check_old_master(&mut self) {
        let Origin::Usr2 { old_master } = self.origin else {
            return;
        };
        if nix::unistd::getppid() == old_master {
            return;
        }
        log::info!("the old master {old_master} has exited");
        self.origin = Origin::Succeeded;
        if self.named_in_pid_file() {
            notify::ready_as_main(self.pid);
        }
    }

    /// A quitting master whose new master (USR2) is not serving yet waits
    /// for it: were it to exit first, systemd would find no pid file and
    /// stop the whole service.
    fn new_master_starting(&self) -> bool {
        let Some(new) = self.upgrade_child else {
            return false;
        };
        pidfile::read(&self.config.pid_file).ok() != u32::try_from(new.as_raw()).ok()
    }

    /// A reload (HUP or the admin `reload`), bracketed by RELOADING=1 and
    /// READY=1 when this master speaks for the service.
    fn reload_announced(&mut self) -> Result<(), String> {
        let announce = self.speaks_for_service();
        if announce {
            notify::reloading();
        }
        let result = self.reload();
        if announce {
            notify::ready();
        }
        result
    }

    /// HUP. After WINCH (an upgrade in progress) this is the rollback:
    /// workers restart from the configuration in memory. Otherwise the file
    /// is read and validated completely; if anything is wrong the running
    /// configuration stays, untouched.
    fn reload(&mut self) -> Result<(), String> {
        if self.children.is_stopped() {
            log::info!(
                "received HUP after WINCH: restarting workers with the configuration in memory"
            );
            self.children.restart();
            return Ok(());
        }
        log::info!("received HUP: reloading {}", self.config.source.display());
        let mut new = match Config::load(&self.config.source) {
            Ok(c) => c,
            Err(e) => {
                return Err(reload_failed(format!("{e}")));
            }
        };
        // Servers added, deleted or moved at runtime stay so (see
        // `config::overlay` for who wins when the file changed too); the
        // overlay is only committed once the reload succeeds.
        let mut overlay = self.overlay.clone();
        for note in overlay.reapply(&mut new) {
            log::warn!("reload: {note}");
        }
        // The workers' identity, looked up again as nginx does at a reload:
        // new workers run as the new `user`/`group` (an unknown one fails
        // the reload, nothing changed yet).
        let changed = new.user != self.config.user || new.group != self.config.group;
        let identity = privileges::for_workers(&new, changed)
            .map_err(|e| reload_failed(format!("user lookup: {e}")))?;
        // Bind new addresses first: on failure nothing has changed yet.
        let mut existing: Vec<(TcpListener, SocketAddr)> = Vec::new();
        let mut fresh: Vec<(TcpListener, SocketAddr)> = Vec::new();
        for l in &new.listeners {
            for &addr in &l.addrs {
                if self.sockets.iter().any(|b| b.addr == addr) {
                    continue;
                }
                match net::bind_listener(addr) {
                    Ok(sock) => fresh.push((sock, addr)),
                    Err(e) => {
                        return Err(reload_failed(format!("{e}")));
                    }
                }
            }
        }
        let access_log = match &new.access_log {
            Some(a) => match crate::access_log::open(&a.path) {
                Ok(f) => Some(f),
                Err(e) => {
                    return Err(reload_failed(format!("{e}")));
                }
            },
            None => None,
        };
        if new.error_log != self.config.error_log || new.log_level != self.config.log_level {
            if let Err(e) = crate::log::init(&new.error_log, new.log_level.to_filter()) {
                return Err(reload_failed(format!("{e}")));
            }
        } else if let Err(e) = crate::log::reopen() {
            // The same path is opened again, as the access log is and as
            // nginx does: a rotation that moved the file away and reloads
            // (instead of USR1) gets a new file. The old one is kept if
            // that fails.
            log::error!("cannot reopen the error log: {e}");
        }
        existing.extend(
            std::mem::take(&mut self.sockets)
                .into_iter()
                .map(|b| (b.socket, b.addr)),
        );
        existing.extend(fresh);
        self.sockets = match bind_all(&new, existing) {
            Ok(s) => s,
            // Unreachable in practice: every address was bound above.
            Err(e) => {
                log::error!("reload: {e}");
                Vec::new()
            }
        };
        if new.worker_connections > self.config.worker_connections {
            fit_open_files_limit(new.worker_connections);
        }
        // Runtime state (admin states, changed weights, health) carries over
        // to the new generation by upstream and server name.
        let shm = match build_shm(&new, Some((&self.shm, &self.config)), false) {
            Ok(s) => s,
            Err(e) => {
                return Err(reload_failed(format!("shared memory: {e}")));
            }
        };
        self.overlay = overlay;
        if new.daemon != self.config.daemon {
            log::warn!("reload: `daemon` takes effect at the next start");
        }
        warn_unverified_tls(&new);
        log_load_warnings(&new);
        self.move_pid_file(&mut new);
        self.access_log = access_log;
        self.identity = identity;
        if let Some(id) = &self.identity {
            chown_logs(id, self.access_log.as_ref());
        }
        self.switch_generation(new, shm, "reload");
        // The overlay may have lost entries the file now overrides.
        self.save_state_file(Instant::now());
        Ok(())
    }

    /// A reload that names another `pid_file`: the pid goes there and the
    /// old file goes away, as nginx moves it, so `forklb -s` with the edited
    /// file finds the master. Kept where it is (with a warning) while an
    /// upgrade holds it as `.oldbin`, before it was first written, or when
    /// the new one cannot be written.
    fn move_pid_file(&mut self, new: &mut Config) {
        if new.pid_file == self.config.pid_file {
            return;
        }
        let keep = |new: &mut Config, why: &str| {
            log::warn!(
                "pid_file {}: {why}; the pid stays in {}",
                new.pid_file.display(),
                self.config.pid_file.display()
            );
            new.pid_file = self.config.pid_file.clone();
        };
        if self.upgrade_child.is_some()
            || self.pid_path != self.config.pid_file
            || !self.pid_written
        {
            return keep(new, "not moved during an upgrade or the start-up");
        }
        match pidfile::write(&new.pid_file, self.pid) {
            Ok(()) => {
                pidfile::remove_if_ours(&self.config.pid_file, self.pid);
                self.pid_path = new.pid_file.clone();
                log::info!("pid file moved to {}", new.pid_file.display());
            }
            Err(e) => keep(new, &e.to_string()),
        }
    }

    /// USR2: start the binary on disk beside us with our sockets.
    fn start_upgrade(&mut self) {
        if let Some(pid) = self.upgrade_child {
            log::warn!(
                "received USR2, but an upgrade is already in progress (new master {pid}); ignored"
            );
            return;
        }
        let oldbin = upgrade::oldbin_path(&self.config.pid_file);
        if let Ok(other) = pidfile::read(&oldbin) {
            if other != self.pid && process_alive(other) {
                log::warn!(
                    "received USR2, but the previous master {other} ({}) still runs; ignored",
                    oldbin.display()
                );
                return;
            }
        }
        log::info!("received USR2: starting {}", self.invocation.exe.display());
        // The new master reads the state file at its start: written now,
        // the ages of the last changes (`lastchg`) in it are current.
        self.save_state_file(Instant::now());
        if let Err(e) = std::fs::rename(&self.config.pid_file, &oldbin) {
            log::error!(
                "cannot rename {} to {}: {e}; upgrade aborted",
                self.config.pid_file.display(),
                oldbin.display()
            );
            return;
        }
        self.pid_path = oldbin;
        match upgrade::spawn_new_master(&self.invocation, &self.sockets) {
            Ok(pid) => {
                log::info!("new master started as process {pid}");
                self.upgrade_child = i32::try_from(pid).ok().map(Pid::from_raw);
                self.upgrade_served = false;
            }
            Err(e) => {
                log::error!("cannot start {}: {e}", self.invocation.exe.display());
                self.take_back_pid_file();
            }
        }
    }

    /// The new master exited: the upgrade failed or was rolled back.
    fn upgrade_failed(&mut self, how: &str) {
        log::error!("new master {how}; taking the pid file back");
        self.upgrade_child = None;
        self.take_back_pid_file();
        if !self.serving() {
            // Stopping too: nobody takes the service back.
            return;
        }
        // systemd may have followed the new master: it must follow us again.
        notify::ready_as_main(self.pid);
        // The new master had taken the admin socket's path over.
        self.admin = None;
        self.bind_admin();
        if self.children.is_stopped() {
            log::info!("restarting workers");
            self.children.restart();
        }
    }

    fn take_back_pid_file(&mut self) {
        let oldbin = upgrade::oldbin_path(&self.config.pid_file);
        if self.pid_path == oldbin {
            if let Err(e) = std::fs::rename(&oldbin, &self.config.pid_file) {
                log::error!("cannot rename {} back: {e}", oldbin.display());
                // Write it anew rather than leave no pid file.
                let _ = pidfile::write(&self.config.pid_file, self.pid);
            }
            self.pid_path = self.config.pid_file.clone();
        }
    }

    fn spawn_health_if_needed(&mut self, now: Instant) {
        let needed = self.config.upstreams.iter().any(|u| u.health.is_some());
        if !needed || self.health.pid.is_some() || self.health.respawn_at.is_some_and(|t| t > now) {
            return;
        }
        self.health.respawn_at = None;
        if let Err(e) = self.spawn_health(now) {
            log::error!("cannot start the health checker: {e}");
            self.health.failures += 1;
            self.health.respawn_at = Some(now + backoff(self.health.failures));
        }
    }

    fn spawn_health(&mut self, now: Instant) -> io::Result<()> {
        let (master_end, checker_end) = std::os::unix::net::UnixStream::pair()?;
        let _blocked = signals::BlockedForFork::new()?;
        // SAFETY: the master is single-threaded.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Parent { child } => {
                log::info!("started the health checker as process {child}");
                self.health.pid = Some(child);
                self.health.channel = Some(master_end);
                self.health.spawned_at = Some(now);
                Ok(())
            }
            nix::unistd::ForkResult::Child => {
                drop(master_end);
                child_exit::exit(self.become_health(checker_end));
            }
        }
    }

    /// Runs in the forked child: drops the master's resources, then checks.
    fn become_health(&mut self, channel: std::os::unix::net::UnixStream) -> Result<(), ChildError> {
        self.enter_child(crate::log::Role::Health, "forklb-health")?;
        // The checker needs no listening socket.
        self.sockets.clear();
        crate::health::run(crate::health::HealthSetup {
            runtime: crate::route::Runtime::new(&self.config),
            shm: std::sync::Arc::clone(&self.shm),
            channel,
        })
        .map_err(|source| ChildError::Run {
            role: "health checker",
            source,
        })
    }

    fn health_exited(&mut self, how: &str, now: Instant, respawn: bool) {
        let young = self
            .health
            .spawned_at
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(2));
        self.health.pid = None;
        self.health.channel = None;
        if !respawn {
            log::info!("health checker {how}");
            return;
        }
        self.health.failures = if young { self.health.failures + 1 } else { 0 };
        self.health.respawn_at = Some(now + backoff(self.health.failures));
        log::error!("health checker {how} unexpectedly; respawning");
    }

    fn stop_health(&mut self, sig: libc::c_int) {
        if let Some(pid) = self.health.pid {
            signal_pids(&[pid], sig);
        }
    }

    // ----- Runtime API ------------------------------------------------------

    fn bind_admin(&mut self) {
        let Some(cfg) = self.config.admin.clone() else {
            self.admin = None;
            return;
        };
        let mode = u32::from_str_radix(cfg.mode.trim_start_matches("0o"), 8).unwrap_or(0o600);
        let level = match cfg.level {
            crate::config::AdminLevel::User => crate::admin::Level::User,
            crate::config::AdminLevel::Operator => crate::admin::Level::Operator,
            crate::config::AdminLevel::Admin => crate::admin::Level::Admin,
        };
        self.admin = None;
        match crate::admin::AdminServer::bind(
            &cfg.socket,
            mode,
            level,
            self.poll.registry(),
            ADMIN_TOKEN,
        ) {
            Ok(a) => {
                log::info!("admin socket listening on {}", cfg.socket.display());
                self.admin = Some(a);
            }
            Err(e) => log::error!(
                "cannot listen on admin socket {}: {e}",
                cfg.socket.display()
            ),
        }
    }

    /// After a reload (HUP, or the admin `reload` once its command is
    /// served): a runtime API socket the new file adds, moves or removes
    /// follows it (HAProxy re-creates its stats socket at a reload).
    fn rebind_admin_if_moved(&mut self) {
        let wanted = self.config.admin.as_ref().map(|a| a.socket.as_path());
        if wanted != self.admin.as_ref().map(|a| a.path()) {
            self.admin = None;
            self.bind_admin();
        }
    }

    fn serve_admin(&mut self, token: Token, writable: bool, now: Instant) {
        let Some(mut admin) = self.admin.take() else {
            return;
        };
        admin.service(token, writable, now, &mut |cmd, level| {
            self.admin_command(cmd, level, now)
        });
        self.admin = Some(admin);
        // A `reload` may have moved the socket.
        self.rebind_admin_if_moved();
    }

    fn admin_command(
        &mut self,
        cmd: &str,
        level: crate::admin::Level,
        now: Instant,
    ) -> crate::admin::Reply {
        use crate::admin::{Level, Reply};
        if cmd.split_whitespace().collect::<Vec<_>>() == ["reload"] {
            if level < Level::Admin {
                return Reply::Text("Permission denied\n".to_owned());
            }
            log::info!("reload requested over the admin socket");
            let result = self.reload_announced();
            return Reply::Text(match result {
                Ok(()) => "Success=1\n".to_owned(),
                Err(e) => format!("Success=0\n--\n{e}\n"),
            });
        }
        use crate::admin::commands::Effect;
        let out = crate::admin::execute(cmd, level, &self.admin_view(now));
        match out.effect {
            Effect::None => {}
            Effect::StateChanged => self.state_changed(now),
            Effect::CountersCleared => self.rebase_rates(now),
            Effect::ListenersChanged => {
                self.children.tell_workers(crate::worker::LISTENERS_CHANGED)
            }
            Effect::Servers(change) => {
                if let Err(e) = self.change_servers(&change) {
                    log::error!("runtime server change refused: {e}");
                    return Reply::Text(format!("{e}\n"));
                }
                self.save_state_file(now);
            }
            Effect::SessionsShutdown => self
                .children
                .tell_all_workers(crate::worker::SHUTDOWN_SESSIONS),
        }
        out.reply
    }

    /// Shutting down (QUIT or TERM): `show info`'s Stopping.
    fn stopping(&self) -> bool {
        !matches!(self.state, State::Running)
    }

    /// The totals `show info` makes rates of, now (`totals`: the
    /// instance's, read by the caller, who needs them too).
    fn rates_sample(&self, now: Instant, totals: &crate::shm::WorkerTotals) -> rates::Sample {
        let pids = self.children.current_worker_pids();
        let ticks: u64 = pids
            .iter()
            .filter_map(|p| crate::procfs::cpu_ticks(*p))
            .sum();
        rates::Sample {
            at: now,
            conns: totals.conns_total,
            requests: totals.requests,
            busy_us: ticks.saturating_mul(1_000_000) / self.clock_ticks,
            workers: pids.len(),
            pids: pids.iter().map(|&p| u64::try_from(p).unwrap_or(0)).sum(),
        }
    }

    /// `clear counters`: the rate maxima start over at 0 (the admin command
    /// cleared those in shared memory), and the next rates count only what
    /// comes after now: sampled as usual, the second before the clear would
    /// put its rate back as the new maximum.
    fn rebase_rates(&mut self, now: Instant) {
        let totals = self.lifetime.totals(&self.shm);
        let s = self.rates_sample(now, &totals);
        self.rates.clear_max(s);
        self.row_rates.rebase(
            &self.shm,
            self.children.generation(),
            self.config.listeners.len(),
            now,
        );
    }

    /// Samples the counters `show info` makes rates of.
    fn sample_rates(&mut self, now: Instant) {
        let totals = self.lifetime.totals(&self.shm);
        let s = self.rates_sample(now, &totals);
        self.rates.sample(s);
        self.row_rates.sample(
            &self.shm,
            self.children.generation(),
            self.config.listeners.len(),
            now,
        );
        // A passive mark ends by itself: its backend is UP again within a
        // second even if nothing reads it.
        self.shm.observe_backends();
        let r = self.rates.view();
        let current = self.shm.worker_totals();
        self.shm.instance().publish(&crate::shm::Instance {
            master_pid: self.pid,
            stopping: self.stopping(),
            started_unix: self.started_unix,
            conn_rate: r.conn_rate,
            max_conn_rate: r.max_conn_rate,
            req_rate: r.req_rate,
            max_req_rate: r.max_req_rate,
            idle_pct: r.idle_pct,
            earlier_conns: totals.conns_total.saturating_sub(current.conns_total),
            earlier_requests: totals.requests.saturating_sub(current.requests),
        });
        self.next_sample = now + rates::SAMPLE_EVERY;
    }

    fn admin_view(&self, now: Instant) -> crate::admin::View<'_> {
        crate::admin::View {
            config: &self.config,
            shm: &self.shm,
            pid: self.pid,
            uptime_secs: now.duration_since(self.started).as_secs(),
            generation: self.children.generation(),
            workers: self.children.workers_info(now),
            totals: self.lifetime.totals(&self.shm),
            rates: self.rates.view(),
            stopping: self.stopping(),
            started_unix: self.started_unix,
            draining: self.draining_view(),
            origin: crate::admin::Origin::Socket,
        }
    }

    /// An operator changed a server (admin socket, dashboard): the
    /// backends see whether they lost their last usable server or got
    /// one back, and the state file is written.
    fn state_changed(&self, now: Instant) {
        self.shm.observe_backends();
        self.save_state_file(now);
    }

    /// Writes runtime state (weights, maxconns, admin states) atomically.
    fn save_state_file(&self, now: Instant) {
        let Some(path) = self.config.state_file.as_ref() else {
            return;
        };
        let mut text = crate::admin::stat::state_file_text(&self.admin_view(now));
        // Runtime server changes, as comment lines HAProxy would skip.
        text.push_str(&self.overlay.to_lines());
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // Its folder is made on demand, as the pid file's: forklb owns the
        // file, and a missing folder would lose every runtime change.
        let folder = path.parent().filter(|d| !d.as_os_str().is_empty());
        let result = folder
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            log::error!("cannot write state file {}: {e}", path.display());
        }
    }

    /// Applies the state file's server states (at start: after a restart
    /// or an upgrade; its runtime server changes are in the configuration
    /// already, see `restore_overlay`).
    fn apply_state_file(&mut self, text: &str) {
        let n = crate::admin::stat::apply_state(text, &self.config, &self.shm);
        if let Some(path) = &self.config.state_file {
            log::info!(
                "state file {}: restored {n} server state(s)",
                path.display()
            );
        }
    }

    fn close_listeners(&mut self) {
        self.sockets.clear();
    }

    fn spawn_missing(&mut self, now: Instant) {
        for slot in self.children.slots_to_spawn(now) {
            if let Err(e) = self.spawn_worker(slot, now) {
                log::error!("cannot start worker {slot}: {e}");
                self.children.spawn_failed(slot, now);
            }
        }
    }

    fn spawn_worker(&mut self, slot: usize, now: Instant) -> io::Result<()> {
        let (master_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
        let _blocked = signals::BlockedForFork::new()?;
        // SAFETY: the master is single-threaded, so the child may run
        // arbitrary code after fork.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Parent { child } => {
                drop(worker_end);
                self.children
                    .add(slot, child, master_end, self.poll.registry(), now)
            }
            nix::unistd::ForkResult::Child => {
                drop(master_end);
                child_exit::exit(self.become_worker(slot, worker_end));
            }
        }
    }

    /// Runs in the forked child: drops everything of the master's, then
    /// serves as worker `slot`. Never returns to the master's code.
    /// First steps of every forked child (worker, health checker): take its
    /// name, drop the master's signal handlers, admin socket, channels and
    /// epoll instance, and switch to the unprivileged identity.
    fn enter_child(&mut self, role: crate::log::Role, name: &str) -> Result<(), ChildError> {
        crate::log::set_role(role);
        set_process_name(name);
        daemon::forget_in_child();
        if let Some(a) = self.admin.take() {
            a.close_in_child();
        }
        if let Some(s) = self.signals.take() {
            s.unregister();
        }
        // Only masters speak to systemd (NotifyAccess=all would let a
        // child's message through).
        std::env::remove_var(notify::ENV);
        // Other children's channels: holding them would hide the master's
        // death from those children.
        self.children.close_all_channels();
        self.health.channel = None;
        self.lifetime.forget();
        // SAFETY: the child never uses the master's epoll instance again and
        // exits without dropping `self`, so the fd is closed exactly once.
        unsafe {
            libc::close(std::os::fd::AsRawFd::as_raw_fd(&self.poll));
        }
        if let Some(id) = &self.identity {
            privileges::drop_to(id).map_err(|source| ChildError::Privileges {
                user: id.user.clone(),
                uid: id.uid.as_raw(),
                source,
            })?;
        }
        Ok(())
    }

    fn become_worker(
        &mut self,
        slot: usize,
        channel: std::os::unix::net::UnixStream,
    ) -> Result<(), ChildError> {
        self.enter_child(crate::log::Role::Worker, "forklb-worker")?;
        let listeners = std::mem::take(&mut self.sockets)
            .into_iter()
            .map(|b| crate::worker::WorkerListener {
                socket: b.socket,
                listener: b.listener,
            })
            .collect();
        let access_log = match (&self.config.access_log, self.access_log.take()) {
            (Some(cfg), Some(file)) => {
                crate::access_log::AccessLog::new(cfg.path.clone(), file, cfg.format)
            }
            _ => crate::access_log::AccessLog::disabled(),
        };
        let mut runtime = crate::route::Runtime::new(&self.config);
        runtime.generation = self.children.generation();
        crate::worker::run(crate::worker::WorkerSetup {
            slot,
            runtime,
            listeners,
            channel,
            access_log,
            shm: std::sync::Arc::clone(&self.shm),
        })
        .map_err(|source| ChildError::Run {
            role: "worker",
            source,
        })
    }
}
