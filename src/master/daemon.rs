//! `-d` / `daemon: true`: detach from the terminal like nginx — fork, start
//! a new session, and point stdin/stdout/stderr at /dev/null. Called after
//! the sockets are bound, so bind errors still reach the terminal and the
//! exit code of the foreground `forklb -d`.
//!
//! Unlike nginx, the foreground process returns only once the daemon is
//! ready — its pid file written — so `forklb -d && forklb -s reopen` and a
//! `Type=forking` unit find the pid file: the daemon writes one byte on a
//! pipe then (`report_ready`). If the daemon exits before that (its
//! workers could not start), the foreground process exits 2.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// The daemon's end of the pipe to the foreground process (-1: none).
static READY_FD: AtomicI32 = AtomicI32::new(-1);

/// How long the foreground process waits for the daemon to be ready; it
/// then returns 0 anyway (the daemon runs, it is only slow to start).
const READY_WAIT: Duration = Duration::from_secs(60);

pub fn daemonize() -> io::Result<()> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(io::Error::from)?;
    // SAFETY: the process is single-threaded here (before any worker or
    // helper thread exists), so fork is safe.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(write_end);
            std::process::exit(wait_ready(read_end));
        }
        nix::unistd::ForkResult::Child => {}
    }
    drop(read_end);
    READY_FD.store(
        std::os::fd::IntoRawFd::into_raw_fd(write_end),
        Ordering::SeqCst,
    );
    nix::unistd::setsid().map_err(io::Error::from)?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The foreground process: 0 once the daemon says it is ready (or after
/// `READY_WAIT`), 2 if it exited first.
fn wait_ready(read_end: OwnedFd) -> i32 {
    let mut pfd = libc::pollfd {
        fd: read_end.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(READY_WAIT.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n == 0 {
        eprintln!(
            "forklb: [warn] the daemon is not ready after {}s; it goes on starting (see the error log)",
            READY_WAIT.as_secs()
        );
        return 0;
    }
    let mut byte = [0u8; 1];
    match std::fs::File::from(read_end).read(&mut byte) {
        Ok(1) => 0,
        _ => {
            eprintln!("forklb: [emerg] the daemon exited before it was ready (see the error log)");
            2
        }
    }
}

/// The daemon is ready (its pid file is written): the foreground process
/// may return. Once; a master not started with `-d` has no pipe.
pub fn report_ready() {
    let fd = READY_FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: the fd was ours alone (taken out of READY_FD above).
        let f = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = nix::unistd::write(&f, b"R");
    }
}

/// A child of the master (worker, health checker) must not hold the pipe:
/// the foreground process would then not see the master exit early.
pub fn forget_in_child() {
    let fd: RawFd = READY_FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: closing our copy of the inherited pipe end, used nowhere else.
        unsafe {
            libc::close(fd);
        }
    }
}
