//! Signal delivery into a mio event loop, nginx-style: the handlers only set a
//! flag and wake the loop through a pipe; the loop then acts on the flags in
//! a fixed order.
//!
//! Each process (master, worker) owns one `SignalSet`. After `fork` the child
//! must call `SignalSet::unregister` on the parent's set before installing its
//! own, so a signal sent to the child never wakes the parent's loop.

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use signal_hook::SigId;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use libc::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

pub struct SignalSet {
    flags: Vec<(libc::c_int, Arc<AtomicBool>)>,
    ids: Vec<SigId>,
    wake: UnixStream,
}

impl SignalSet {
    /// Registers handlers for `signals`; pending signals are reported through
    /// `take` after the wake stream (registered with `register`) turns readable.
    pub fn new(signals: &[libc::c_int]) -> io::Result<SignalSet> {
        let (read_end, write_end) = std::os::unix::net::UnixStream::pair()?;
        read_end.set_nonblocking(true)?;
        write_end.set_nonblocking(true)?;
        let mut flags = Vec::with_capacity(signals.len());
        let mut ids = Vec::with_capacity(signals.len() * 2);
        for &sig in signals {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(signal_hook::flag::register(sig, Arc::clone(&flag))?);
            let w = write_end.try_clone()?;
            ids.push(signal_hook::low_level::pipe::register(sig, w)?);
            flags.push((sig, flag));
        }
        // SAFETY: the fd comes from a std UnixStream we own and give away here.
        let wake = unsafe { UnixStream::from_raw_fd(read_end.into_raw_fd()) };
        // A forked child starts with these blocked (`BlockedForFork`): what
        // arrived since the fork is delivered now, to the handlers above.
        let _ = sigmask(libc::SIG_UNBLOCK, signals);
        Ok(SignalSet { flags, ids, wake })
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.wake, token, Interest::READABLE)
    }

    /// Empties the wake pipe (call when its token fires).
    pub fn drain_wakeups(&mut self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = self.wake.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// True once per delivery batch of `sig`.
    pub fn take(&self, sig: libc::c_int) -> bool {
        self.flags
            .iter()
            .any(|(s, f)| *s == sig && f.swap(false, Ordering::AcqRel))
    }

    /// Removes this set's handlers from the process (used in a forked child to
    /// drop the parent's set). The signals' dispositions stay caught, so the
    /// caller installs its own set right after.
    pub fn unregister(self) {
        for id in self.ids {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Restores the default disposition of the given signals (before exec or
/// when a child wants default behaviour).
pub fn reset_default(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: installing SIG_DFL is always sound.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// The signals a forked child handles, blocked from just before `fork`
/// until the child has installed its own `SignalSet` (which unblocks them),
/// as nginx does. Between `SignalSet::unregister` of the parent's set and
/// the child's new set, a caught signal would find no handler and be lost:
/// a QUIT sent to a worker at that moment left it running, and `systemctl
/// stop` waited for it until the SIGKILL. Blocked, it stays pending. In the
/// parent, dropping the guard restores the mask; the child never drops it
/// (it leaves through `process::exit`).
pub struct BlockedForFork {
    previous: libc::sigset_t,
}

/// What workers and the health checker handle.
const CHILD_SIGNALS: [libc::c_int; 7] =
    [SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP, SIGWINCH, SIGUSR2];

impl BlockedForFork {
    pub fn new() -> io::Result<BlockedForFork> {
        let previous = sigmask(libc::SIG_BLOCK, &CHILD_SIGNALS)?;
        Ok(BlockedForFork { previous })
    }
}

impl Drop for BlockedForFork {
    fn drop(&mut self) {
        // SAFETY: restores a mask read from the kernel; no pointers kept.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

/// Applies `how` (SIG_BLOCK / SIG_UNBLOCK) for `signals`; returns the
/// previous mask.
fn sigmask(how: libc::c_int, signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    // SAFETY: the sets are plain values initialized by sigemptyset before
    // use, and pthread_sigmask only reads `set` and writes `previous`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        let mut previous: libc::sigset_t = std::mem::zeroed();
        let rc = libc::pthread_sigmask(how, &set, &mut previous);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(previous)
    }
}
