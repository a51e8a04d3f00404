//! systemd's sd_notify protocol, with std only: one datagram to the
//! `$NOTIFY_SOCKET` Unix socket (a path, or `@name` for the abstract
//! namespace). Without the variable (not under systemd) nothing is sent.
//!
//! What forklb tells systemd (sd_notify(3), systemd.service(5)), so that the
//! unit's MainPID is always the master named in the pid file, through binary
//! upgrades and rollbacks:
//!
//! - `READY=1` when the pid file is written (the workers serve).
//! - `RELOADING=1` … `READY=1` around a reload, only from the master the pid
//!   file names (an old master rolled back by HUP is not the service's).
//! - `MAINPID=` moves with the pid file. A master started by USR2 (or `-u`)
//!   says `MAINPID=<itself>` with its `READY=1`; an old master that takes the
//!   pid file back because the new one exited says `MAINPID=<itself>`.
//! - A master that stops while another master will go on serving hands the
//!   service over with `MAINPID=<that master>` and never says `STOPPING=1`:
//!   systemd would take `STOPPING=1` for the whole service stopping and kill
//!   the survivor at TimeoutStopSec. The old master quitting after an
//!   upgrade names the new one; a new master quitting in a rollback names the
//!   old one. Only a master with no successor says `STOPPING=1`.
//!
//! The unit needs `NotifyAccess=all`: the new master is not systemd's main
//! process when it announces itself, and after a new master dies
//! mid-upgrade the old one must be able to claim the service back although
//! systemd (252) still names the dead one — neither `main` nor `exec` would
//! accept those messages. Workers and the health checker drop
//! `NOTIFY_SOCKET` from their environment and never notify.

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

/// Another master (`pid`) serves from now on.
pub fn hand_over(pid: u32) {
    log::info!("telling systemd that master {pid} is the service's main process now");
    notify(&format!("MAINPID={pid}"));
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
