//! `forklb -s upgrade`: the whole nginx binary-upgrade dance in one command,
//! verified at each step and rolled back on failure:
//!
//! 1. USR2 to the master in the pid file (it starts the binary on disk);
//! 2. wait until the pid file names a new, running master (it writes the
//!    file only once its workers serve);
//! 3. WINCH the old master and wait until its workers are gone;
//! 4. QUIT the old master and wait until it has exited.
//!
//! If the new master does not come up within `upgrade_timeout` (a binary
//! that hangs, say): QUIT it, KILL it if it is still there after a grace,
//! and wait until the old master — which reaps it — has taken its pid file
//! back, so `forklb -s reload` works right after. If the old workers do not
//! stop in time: HUP the old master (restarting its workers) and QUIT the
//! new one.

use crate::config::Config;
use crate::master::pidfile;
use crate::procfs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);
/// How long a stray new master gets to exit after QUIT before KILL.
const STRAY_GRACE: Duration = Duration::from_secs(5);
/// How long the old master gets to take its pid file back once the stray
/// new master is gone (it only needs to reap it).
const TAKE_BACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Process names of the old master's own children, which are not the new
/// master (DESIGN §3).
const OWN_CHILDREN: &[&str] = &["forklb-worker", "forklb-health"];

/// Why the upgrade stopped. Steps already taken (and a rollback) have been
/// reported on the way; this is the last word.
#[derive(Debug)]
pub enum UpgradeError {
    /// The pid file cannot be read.
    PidFile { path: PathBuf, source: io::Error },
    /// The pid file names a process that is gone.
    NotRunning { pid: i32, pid_file: PathBuf },
    /// `.oldbin` names another running master: an upgrade is under way.
    InProgress { oldbin: PathBuf, previous: i32 },
    /// A signal could not be sent.
    Signal {
        pid: i32,
        signal: Signal,
        source: nix::Error,
    },
    /// The new master gave up (or never started); the old one serves on.
    NewMasterFailed { old: i32, why: &'static str },
    /// The new master was not ready in time and was stopped.
    NotReady,
    /// The old workers did not stop in time: the old master got its
    /// workers back and the new master was told to quit.
    RolledBack { old: i32, new: i32 },
    /// Everything is done but the old master has not exited (yet).
    OldMasterStillRunning { old: i32 },
}

impl UpgradeError {
    /// The severity word of the message; a lingering old master is a
    /// warning (the new master serves), the rest are errors.
    pub fn severity(&self) -> &'static str {
        match self {
            UpgradeError::OldMasterStillRunning { .. } => "warn",
            _ => "error",
        }
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::PidFile { path, source } => {
                write!(f, "open() \"{}\" failed: {source}", path.display())
            }
            UpgradeError::NotRunning { pid, pid_file } => {
                write!(f, "master {pid} from {} is not running", pid_file.display())
            }
            UpgradeError::InProgress { oldbin, previous } => write!(
                f,
                "an upgrade is already in progress: {} names the running master {previous}; finish it (QUIT {previous}) or roll it back first",
                oldbin.display()
            ),
            UpgradeError::Signal {
                pid,
                signal,
                source,
            } => write!(f, "kill({pid}, {signal}) failed: {source}"),
            UpgradeError::NewMasterFailed { old, why } => {
                write!(f, "upgrade failed: {why}; master {old} keeps serving")
            }
            UpgradeError::NotReady => {
                write!(f, "upgrade failed: the new binary did not become ready")
            }
            UpgradeError::RolledBack { old, new } => write!(
                f,
                "upgrade rolled back: the old workers did not stop in time; master {old} serves again, the new master {new} was told to quit"
            ),
            UpgradeError::OldMasterStillRunning { old } => {
                write!(f, "the old master {old} is still running")
            }
        }
    }
}

impl std::error::Error for UpgradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpgradeError::PidFile { source, .. } => Some(source),
            UpgradeError::Signal { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn say(msg: &str) {
    println!("forklb: {msg}");
}

fn send(pid: i32, signal: Signal) -> Result<(), UpgradeError> {
    kill(Pid::from_raw(pid), signal).map_err(|source| UpgradeError::Signal {
        pid,
        signal,
        source,
    })
}

/// Sends a signal on the way back (rollback, cleanup): a failure is
/// reported and the rollback goes on.
fn send_reporting(pid: i32, signal: Signal) {
    if let Err(e) = send(pid, signal) {
        eprintln!("forklb: [error] {e}");
    }
}

fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

pub fn run(config: &Config) -> Result<(), UpgradeError> {
    let old = running_master(config)?;
    let oldbin = crate::master::oldbin_path(&config.pid_file);
    if let Ok(previous) = pidfile::read(&oldbin).map(|p| p as i32) {
        if previous != old && procfs::is_running(previous) {
            return Err(UpgradeError::InProgress { oldbin, previous });
        }
    }
    say(&format!("upgrading master {old}: sending USR2"));
    send(old, Signal::SIGUSR2)?;
    let Some(new) = wait_for_new_master(config, old, &oldbin)? else {
        roll_back_unready(config, old, &oldbin);
        return Err(UpgradeError::NotReady);
    };
    let workers = procfs::children_named(new, "forklb-worker").len();
    say(&format!(
        "new master {new} is serving with {workers} worker(s)"
    ));
    retire_old_master(config, old, new)?;
    say(&format!("upgrade complete: master {new} serves alone"));
    Ok(())
}

/// The pid of the master the pid file names, if it runs.
fn running_master(config: &Config) -> Result<i32, UpgradeError> {
    match pidfile::read(&config.pid_file).map(|p| p as i32) {
        Ok(p) if procfs::is_running(p) && procfs::not_a_master(p).is_none() => Ok(p),
        Ok(pid) => Err(UpgradeError::NotRunning {
            pid,
            pid_file: config.pid_file.clone(),
        }),
        Err(source) => Err(UpgradeError::PidFile {
            path: config.pid_file.clone(),
            source,
        }),
    }
}

/// Waits for the new master to name itself in the pid file: its pid, None
/// if it did not within `upgrade_timeout`, an error if it visibly failed.
fn wait_for_new_master(
    config: &Config,
    old: i32,
    oldbin: &Path,
) -> Result<Option<i32>, UpgradeError> {
    // The old master moves its pid file to .oldbin at once; the new master
    // writes the pid file when it serves. If .oldbin goes away again, the
    // new master failed and the old one took its pid file back.
    let started = Instant::now();
    let mut saw_oldbin = false;
    let mut gave_up = None;
    let new = wait_for(config.upgrade_timeout, || {
        if let Ok(p) = pidfile::read(&config.pid_file).map(|p| p as i32) {
            if p != old && procfs::is_running(p) {
                return Some(Some(p));
            }
        }
        if oldbin.exists() {
            saw_oldbin = true;
        } else if saw_oldbin {
            gave_up = Some("the new master exited; the old master took its pid file back");
            return Some(None);
        } else if started.elapsed() > Duration::from_secs(3) {
            gave_up = Some("the master did not start an upgrade (see its error log)");
            return Some(None);
        }
        None
    })
    .flatten();
    if let Some(why) = gave_up {
        return Err(UpgradeError::NewMasterFailed { old, why });
    }
    Ok(new)
}

/// The new master did not become ready in time: stops it and waits for the
/// old master to take the pid file back.
fn roll_back_unready(config: &Config, old: i32, oldbin: &Path) {
    say(&format!(
        "the new master did not become ready within {} s: rolling back",
        config.upgrade_timeout.as_secs_f64()
    ));
    stop_stray_new_master(old);
    let back = wait_for(TAKE_BACK_TIMEOUT, || {
        let named = pidfile::read(&config.pid_file).ok() == Some(old as u32);
        (named && !oldbin.exists()).then_some(())
    });
    if back.is_none() {
        eprintln!(
            "forklb: [error] the old master {old} did not take {} back",
            config.pid_file.display()
        );
    } else {
        say(&format!(
            "master {old} keeps serving; {} names it again",
            config.pid_file.display()
        ));
    }
}

/// With the new master serving: drains the old workers (WINCH), rolling
/// back if they do not stop in time, then stops the old master (QUIT).
fn retire_old_master(config: &Config, old: i32, new: i32) -> Result<(), UpgradeError> {
    say(&format!("sending WINCH to the old master {old}"));
    send(old, Signal::SIGWINCH)?;
    let drain = config.shutdown_timeout + Duration::from_secs(10);
    let drained = wait_for(drain, || {
        procfs::children_named(old, "forklb-worker")
            .is_empty()
            .then_some(())
    });
    if drained.is_none() {
        say("the old workers did not stop in time: rolling back");
        say(&format!(
            "sending HUP to the old master {old} and QUIT to the new master {new}"
        ));
        send_reporting(old, Signal::SIGHUP);
        send_reporting(new, Signal::SIGQUIT);
        return Err(UpgradeError::RolledBack { old, new });
    }
    say("old workers have exited");

    say(&format!("sending QUIT to the old master {old}"));
    send(old, Signal::SIGQUIT)?;
    let quit = wait_for(config.upgrade_timeout, || {
        (!procfs::is_running(old)).then_some(())
    });
    if quit.is_none() {
        return Err(UpgradeError::OldMasterStillRunning { old });
    }
    Ok(())
}

/// The processes the old master started besides its workers and health
/// checker: the new binary, whatever it calls itself. Sampled twice, so a
/// worker forked a moment ago (still named like its master) is not taken.
fn new_master_candidates(old: i32) -> Vec<i32> {
    let first = procfs::children_not_named(old, OWN_CHILDREN);
    std::thread::sleep(POLL);
    let second = procfs::children_not_named(old, OWN_CHILDREN);
    first.into_iter().filter(|p| second.contains(p)).collect()
}

/// QUIT the new process(es) of a failed upgrade, then KILL what is left
/// after `STRAY_GRACE`. The old master reaps them and takes its pid file back.
fn stop_stray_new_master(old: i32) {
    let strays = new_master_candidates(old);
    if strays.is_empty() {
        return;
    }
    for &p in &strays {
        say(&format!("sending QUIT to the new process {p}"));
        send_reporting(p, Signal::SIGQUIT);
    }
    let gone = wait_for(STRAY_GRACE, || {
        strays.iter().all(|&p| !procfs::is_running(p)).then_some(())
    });
    if gone.is_some() {
        return;
    }
    for &p in strays.iter().filter(|&&p| procfs::is_running(p)) {
        say(&format!(
            "the new process {p} did not exit within {} s: sending KILL",
            STRAY_GRACE.as_secs()
        ));
        send_reporting(p, Signal::SIGKILL);
    }
}
