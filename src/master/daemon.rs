//! `-d` / `daemon: true`: detach from the terminal like nginx — fork (the
//! parent exits 0), start a new session, and point stdin/stdout/stderr at
//! /dev/null. Called after the sockets are bound, so bind errors still reach
//! the terminal and the exit code of the foreground `forklb -d`.

use std::io;
use std::os::fd::AsRawFd;

pub fn daemonize() -> io::Result<()> {
    // SAFETY: the process is single-threaded here (before any worker or
    // helper thread exists), so fork is safe.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { .. } => {
            // The daemon continues; the foreground process is done.
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Child => {}
    }
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
