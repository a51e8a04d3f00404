//! Binary upgrade (USR2): the running master starts the binary on disk with
//! its listening sockets inherited (`FORKLB_FDS="fd;fd;..."`), after moving
//! its pid file to `<pid_file>.oldbin`. The new master adopts the sockets
//! before binding anything. If the new master exits, the old one takes its
//! pid file back (and, if WINCH had stopped its workers, restarts them).

use super::listening::BoundSocket;
use crate::net;
use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const FDS_ENV: &str = "FORKLB_FDS";

/// How this process was started: the binary's absolute path as given at
/// start-up (not /proc/self/exe, which would re-run the old binary after the
/// file on disk was replaced) and the arguments.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
}

impl Invocation {
    pub fn current() -> Invocation {
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_default();
        Invocation {
            exe: absolute_exe(Path::new(&argv0)),
            args: args.collect(),
        }
    }
}

/// Resolves argv[0] the way a shell found it: a path with a slash against
/// the current folder, a bare name through PATH.
fn absolute_exe(argv0: &Path) -> PathBuf {
    if argv0.components().count() > 1 || argv0.is_absolute() {
        return std::env::current_dir()
            .map(|d| d.join(argv0))
            .unwrap_or_else(|_| argv0.to_path_buf());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(argv0);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    std::env::current_exe().unwrap_or_else(|_| argv0.to_path_buf())
}

pub fn oldbin_path(pid_file: &Path) -> PathBuf {
    let mut p = pid_file.as_os_str().to_owned();
    p.push(".oldbin");
    p.into()
}

/// The arguments the new binary gets: ours without `-u`/`--upgrade`. A
/// master started Pingora's way (`-d -u`) would otherwise make its
/// successor wait on `upgrade_sock` for sockets it already inherits
/// through FORKLB_FDS, fail there, and so never upgrade.
fn reexec_args(args: &[OsString]) -> impl Iterator<Item = &OsString> {
    args.iter().filter(|a| *a != "-u" && *a != "--upgrade")
}

/// Starts the new binary with `sockets` inherited; returns its pid.
pub fn spawn_new_master(inv: &Invocation, sockets: &[BoundSocket]) -> io::Result<u32> {
    let fds: Vec<RawFd> = sockets.iter().map(|b| b.socket.as_raw_fd()).collect();
    let list = fds
        .iter()
        .map(|fd| fd.to_string())
        .collect::<Vec<_>>()
        .join(";");
    let mut cmd = Command::new(&inv.exe);
    cmd.args(reexec_args(&inv.args)).env(FDS_ENV, list);
    // SAFETY: the closure only calls fcntl (async-signal-safe) on fds that
    // stay open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                net::set_cloexec(fd, false)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Reaped by the master's waitpid loop, not through `child`.
    Ok(child.id())
}

/// Listening sockets a master starts with instead of binding them.
#[derive(Default)]
pub struct Inherited {
    pub sockets: Vec<(TcpListener, SocketAddr)>,
    /// The master that started us by USR2 (FORKLB_FDS was set): it waits
    /// beside us as `.oldbin` and takes over again if we exit.
    pub from_master: Option<nix::unistd::Pid>,
}

/// Listening sockets inherited through FORKLB_FDS (an upgrading master) or
/// systemd socket activation (LISTEN_FDS for our pid: fds 3, 4, ...). The
/// variables are removed from the environment so workers and later
/// upgrades do not see them.
pub fn take_inherited() -> Inherited {
    let mut fds: Vec<RawFd> = Vec::new();
    let mut from_master = None;
    if let Some(value) = std::env::var_os(FDS_ENV) {
        std::env::remove_var(FDS_ENV);
        from_master = Some(nix::unistd::getppid());
        for part in value.to_string_lossy().split(';').filter(|p| !p.is_empty()) {
            match part.trim().parse::<RawFd>() {
                Ok(fd) => fds.push(fd),
                Err(_) => log::error!("ignoring invalid {FDS_ENV} entry {part:?}"),
            }
        }
    }
    fds.extend(systemd_fds());
    let mut sockets = Vec::new();
    for fd in fds {
        match net::adopt_inherited(fd) {
            Ok((l, addr)) => {
                log::info!("using inherited socket fd {fd} for {addr}");
                sockets.push((l, addr));
            }
            Err(e) => log::error!("cannot use inherited fd {fd}: {e}"),
        }
    }
    Inherited {
        sockets,
        from_master,
    }
}

/// sd_listen_fds(3): LISTEN_FDS sockets starting at fd 3, if LISTEN_PID is us.
fn systemd_fds() -> Vec<RawFd> {
    const SD_LISTEN_FDS_START: RawFd = 3;
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<RawFd>().ok())
        .unwrap_or(0);
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if !pid_matches || count <= 0 {
        return Vec::new();
    }
    log::info!("systemd socket activation: {count} socket(s)");
    (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count.min(1024)).collect()
}

#[cfg(test)]
mod reexec_tests {
    use super::*;

    #[test]
    fn the_new_binary_is_not_told_to_take_sockets_over_upgrade_sock() {
        let args: Vec<OsString> = ["-d", "-u", "-c", "f.yaml", "--upgrade"]
            .iter()
            .map(OsString::from)
            .collect();
        let kept: Vec<&OsString> = reexec_args(&args).collect();
        assert_eq!(
            kept,
            ["-d", "-c", "f.yaml"]
                .map(OsString::from)
                .iter()
                .collect::<Vec<_>>()
        );
    }
}
