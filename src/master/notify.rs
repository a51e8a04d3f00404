//! systemd's sd_notify protocol, with std only: one datagram to the
//! `$NOTIFY_SOCKET` Unix socket (a path, or `@name` for the abstract
//! namespace). Without the variable (not under systemd) nothing is sent.
//!
//! What forklb tells systemd (sd_notify(3), systemd.service(5)), so that the
//! unit's MainPID is the master in the pid file after binary upgrades and
//! rollbacks, and systemd never kills a master that goes on serving:
//!
//! - `READY=1` when the pid file is written (the workers serve).
//! - `RELOADING=1` … `READY=1` around a reload, only from the master the pid
//!   file names (an old master rolled back by HUP is not yet the service's).
//! - MainPID moves to a new master (USR2) only once the old master has
//!   exited. The old master stays systemd's main process during the upgrade;
//!   when it exits, systemd reads `PIDFile=`, which names the new master by
//!   then, and the new master — reparented to systemd — is its child, so
//!   systemd supervises it fully (sees it exit, signals it on stop). A new
//!   master announced earlier, while it is the old master's child, is a
//!   process systemd 252 cannot supervise: it does not notice its exit and
//!   skips straight to SIGKILL on `systemctl stop`. The new master also says
//!   `MAINPID=<itself>` once it sees its old master gone (for units without
//!   `PIDFile=`), and so does a `-u` instance when it is ready.
//! - In a rollback the old master never stopped being the main process; it
//!   repeats `MAINPID=<itself>` when it takes the pid file back.
//! - `STOPPING=1` only from a master with no successor: systemd takes it for
//!   the whole service stopping and kills the survivor at TimeoutStopSec. The
//!   old master quitting after an upgrade, a new master quitting in a
//!   rollback and an instance that handed its sockets to `-u` stay silent.
//!   An old master quitting before its new master is ready waits for it, so
//!   the pid file names a live master when systemd reads it.
//!
//! The unit says `NotifyAccess=main`: every message that matters comes from
//! the main process (the master systemd follows), so nothing else in the
//! cgroup — a compromised worker, say — can make systemd stop the service or
//! follow another process. Messages from masters that are not the main
//! process (a new master's READY=1 before its old master exits, a `-u`
//! instance's MAINPID= under a unit that did not start it) are dropped by
//! systemd and need not arrive. `all` works as well (the protocol never
//! relies on a message being refused); `exec` adds only ExecReload/ExecStop,
//! which never notify. Workers and the health checker drop `NOTIFY_SOCKET`
//! from their environment and never notify.

use std::os::unix::net::UnixDatagram;

pub const ENV: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `READY=1`, `RELOADING=1`, `MAINPID=123`). Failures
/// are logged, never fatal: systemd integration must not stop the proxy.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os(ENV) else {
        return;
    };
    let sock = match UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("sd_notify: cannot create a socket: {e}");
            return;
        }
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_send(&sock, name, state.as_bytes())
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
            .map(|_| ())
    };
    if let Err(e) = result {
        log::warn!("sd_notify {state:?} failed: {e}");
    }
}

fn abstract_send(sock: &UnixDatagram, name: &[u8], msg: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr).map(|_| ())
}

pub fn ready() {
    notify("READY=1");
}

/// This master serves now and systemd must follow it.
pub fn ready_as_main(pid: u32) {
    notify(&format!("MAINPID={pid}\nREADY=1"));
}

/// The whole service stops (no other master goes on serving).
pub fn stopping() {
    notify("STOPPING=1");
}

/// `RELOADING=1` needs the time for systemd's Type=notify-reload.
pub fn reloading() {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}
