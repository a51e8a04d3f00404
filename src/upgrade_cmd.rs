//! `forklb -s upgrade`: the whole nginx binary-upgrade dance in one command,
//! verified at each step and rolled back on failure:
//!
//! 1. USR2 to the master in the pid file (it starts the binary on disk);
//! 2. wait until the pid file names a new, running master (it writes the
//!    file only once its workers serve);
//! 3. WINCH the old master and wait until its workers are gone;
//! 4. QUIT the old master and wait until it has exited.
//!
//! If the new master does not come up in time: QUIT it (if it exists) and
//! the old master takes its pid file back by itself. If the old workers do
//! not stop in time: HUP the old master (restarting its workers) and QUIT
//! the new one.

use crate::cli::{EXIT_OK, EXIT_RUNTIME};
use crate::config::Config;
use crate::master::pidfile;
use crate::procfs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

fn say(msg: &str) {
    println!("forklb: {msg}");
}

fn send(pid: i32, sig: Signal) -> bool {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("forklb: [error] kill({pid}, {sig}) failed: {e}");
            false
        }
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

pub fn run(config: &Config) -> i32 {
    let old = match pidfile::read(&config.pid_file).map(|p| p as i32) {
        Ok(p) if procfs::is_running(p) => p,
        Ok(p) => {
            eprintln!(
                "forklb: [error] master {p} from {} is not running",
                config.pid_file.display()
            );
            return EXIT_RUNTIME;
        }
        Err(e) => {
            eprintln!(
                "forklb: [error] open() \"{}\" failed: {e}",
                config.pid_file.display()
            );
            return EXIT_RUNTIME;
        }
    };
    let oldbin = crate::master::oldbin_path(&config.pid_file);
    if let Ok(previous) = pidfile::read(&oldbin).map(|p| p as i32) {
        if previous != old && procfs::is_running(previous) {
            eprintln!(
                "forklb: [error] an upgrade is already in progress: {} names the running master {previous}; finish it (QUIT {previous}) or roll it back first",
                oldbin.display()
            );
            return EXIT_RUNTIME;
        }
    }
    say(&format!("upgrading master {old}: sending USR2"));
    if !send(old, Signal::SIGUSR2) {
        return EXIT_RUNTIME;
    }
    // The old master moves its pid file to .oldbin at once; the new master
    // writes the pid file when it serves. If .oldbin goes away again, the
    // new master failed and the old one took its pid file back.
    let started = Instant::now();
    let mut saw_oldbin = false;
    let mut gave_up = None;
    let new = wait_for(STEP_TIMEOUT, || {
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
        eprintln!("forklb: [error] upgrade failed: {why}; master {old} keeps serving");
        return EXIT_RUNTIME;
    }
    let Some(new) = new else {
        say("the new master did not come up in time: rolling back");
        for p in procfs::children_named(old, "forklb-master") {
            say(&format!("sending QUIT to the new master {p}"));
            send(p, Signal::SIGQUIT);
        }
        return EXIT_RUNTIME;
    };
    let workers = procfs::children_named(new, "forklb-worker").len();
    say(&format!(
        "new master {new} is serving with {workers} worker(s)"
    ));

    say(&format!("sending WINCH to the old master {old}"));
    if !send(old, Signal::SIGWINCH) {
        return EXIT_RUNTIME;
    }
    let drain = config.shutdown_timeout.get() + Duration::from_secs(10);
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
        send(old, Signal::SIGHUP);
        send(new, Signal::SIGQUIT);
        return EXIT_RUNTIME;
    }
    say("old workers have exited");

    say(&format!("sending QUIT to the old master {old}"));
    if !send(old, Signal::SIGQUIT) {
        return EXIT_RUNTIME;
    }
    if wait_for(STEP_TIMEOUT, || (!procfs::is_running(old)).then_some(())).is_none() {
        eprintln!("forklb: [warn] the old master {old} is still running");
        return EXIT_RUNTIME;
    }
    say(&format!("upgrade complete: master {new} serves alone"));
    EXIT_OK
}
