//! Whether the master runs in the foreground of a terminal. There the
//! terminal sends WINCH to the whole foreground process group whenever its
//! window is resized (a terminal emulator, tmux, `docker run -t`), so WINCH
//! cannot mean "drain the workers": nginx acts on it only when daemonized
//! for the same reason. A master started with `-d`, under systemd or in
//! its own process group gets no resize WINCH and keeps nginx's meaning.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// True when the process has a controlling terminal and its process group
/// is that terminal's foreground group (the one resize signals go to).
pub fn in_foreground() -> bool {
    // `/dev/tty` opens only with a controlling terminal; O_NOCTTY keeps
    // the open from ever acquiring one.
    let Ok(tty) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/tty")
    else {
        return false;
    };
    // SAFETY: tcgetpgrp and getpgrp read process state; the descriptor is
    // open for the duration of the call.
    let (foreground, ours) = unsafe { (libc::tcgetpgrp(tty.as_raw_fd()), libc::getpgrp()) };
    foreground > 0 && foreground == ours
}
