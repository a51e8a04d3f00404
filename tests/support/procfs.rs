//! Process and socket inspection over /proc, signals, [`Paused`] processes.

use std::fs;
use std::io::{self};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::*;

/// Fields of /proc/PID/stat the tests need.
#[derive(Debug, Clone)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
    })
}

/// A `kB` field of /proc/PID/status (e.g. "VmRSS", "VmHWM"), in KiB.
pub fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// /proc/PID/comm without the newline.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

/// Whether `pid` is a live (not zombie) process whose name starts with "forklb".
pub fn forklb_alive(pid: i32) -> bool {
    match proc_stat(pid) {
        Some(st) => st.state != 'Z' && st.state != 'X' && st.comm.starts_with("forklb"),
        None => false,
    }
}

/// Live (not zombie) children of `ppid`, sorted.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(st) = proc_stat(pid) {
            if st.ppid == ppid && st.state != 'Z' && st.state != 'X' {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

pub fn descendants_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children_of(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Sends `sig` to `pid`; false if the process does not exist.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Live children of `master` named `forklb-worker`, sorted.
pub fn workers_of(master: i32) -> Vec<i32> {
    children_of(master)
        .into_iter()
        .filter(|&p| comm(p).as_deref() == Some("forklb-worker"))
        .collect()
}

/// Live children of `pid` named `forklb-master` (masters started by USR2), sorted.
pub fn masters_under(pid: i32) -> Vec<i32> {
    children_of(pid)
        .into_iter()
        .filter(|&p| comm(p).as_deref() == Some("forklb-master"))
        .collect()
}

/// The pid in a pid file, if it exists and holds one followed by a newline.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    if !text.ends_with('\n') {
        return None;
    }
    text.trim().parse().ok()
}

/// Freezes `pid` (so it cannot fork replacements) and SIGKILLs it with
/// everything below it. Only forklb processes are touched.
pub fn kill_tree(pid: i32) {
    if !forklb_alive(pid) {
        return;
    }
    kill(pid, libc::SIGSTOP);
    for p in descendants_of(pid) {
        if forklb_alive(p) {
            kill(p, SIGKILL);
        }
    }
    kill(pid, SIGKILL);
}

/// The four ids (real, effective, saved, filesystem) of the `Uid:` line of
/// /proc/PID/status.
pub fn proc_uids(pid: i32) -> Option<Vec<u32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line["Uid:".len()..]
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect()
}

/// uid of `name` from /etc/passwd.
pub fn passwd_uid(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Whether the test runs as root.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One socket of /proc/net/tcp (IPv4).
#[derive(Debug, Clone)]
pub struct TcpRow {
    /// Local and remote address as the kernel writes them, e.g.
    /// `0100007F:1F90` (see [`loopback`]).
    pub local: String,
    pub remote: String,
    /// `01` established, `0A` listening.
    pub state: String,
    pub inode: u64,
}

impl TcpRow {
    /// The local port.
    pub fn local_port(&self) -> Option<u16> {
        let hex = self.local.rsplit(':').next()?;
        u16::from_str_radix(hex, 16).ok()
    }
}

/// The sockets of /proc/net/tcp (none if it cannot be read).
pub fn tcp_rows() -> Vec<TcpRow> {
    let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() <= 9 {
                return None;
            }
            Some(TcpRow {
                local: f[1].to_owned(),
                remote: f[2].to_owned(),
                state: f[3].to_owned(),
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// 127.0.0.1:`port` as /proc/net/tcp writes it.
pub fn loopback(port: u16) -> String {
    format!("0100007F:{port:04X}")
}

/// Inodes of the TCP sockets listening on 127.0.0.1:`port` (/proc/net/tcp).
pub fn listening_socket_inodes(port: u16) -> Vec<u64> {
    let want = loopback(port);
    tcp_rows()
        .into_iter()
        .filter(|r| r.local == want && r.state == "0A")
        .map(|r| r.inode)
        .collect()
}

/// Inodes of the sockets open in process `pid` (/proc/PID/fd).
pub fn socket_inodes_of(pid: i32) -> Vec<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let target = fs::read_link(e.path()).ok()?;
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Whether a connection to 127.0.0.1:`port` is refused right now.
pub fn port_refuses(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// A numeric field of /proc/PID/io (e.g. "wchar", "syscw").
pub fn proc_io(pid: i32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().parse().ok()
    })
}

/// Inodes of the established TCP connections from 127.0.0.1 to
/// 127.0.0.1:`port` (/proc/net/tcp), i.e. the client ends.
pub fn connections_to(port: u16) -> Vec<u64> {
    let want = loopback(port);
    tcp_rows()
        .into_iter()
        .filter(|r| r.remote == want && r.state == "01")
        .map(|r| r.inode)
        .collect()
}

/// Inode of the established TCP socket 127.0.0.1:`local` → 127.0.0.1:`remote`
/// (/proc/net/tcp), e.g. a proxy's upstream connection seen from the
/// backend as [`Request::peer`].
pub fn tcp_socket_inode(local: u16, remote: u16) -> Option<u64> {
    let (l, r) = (loopback(local), loopback(remote));
    tcp_rows()
        .into_iter()
        .find(|row| row.local == l && row.remote == r && row.state == "01")
        .map(|row| row.inode)
}

/// A process stopped with SIGSTOP (e.g. a worker, so that the other
/// workers accept every new connection); SIGCONT on drop.
pub struct Paused {
    pid: i32,
}

impl Paused {
    /// Stops `pid` and waits until it is stopped (state `T`).
    pub fn new(pid: i32) -> Paused {
        assert!(kill(pid, libc::SIGSTOP), "SIGSTOP {pid}");
        let stopped = wait_until(Duration::from_secs(5), || {
            proc_stat(pid).is_some_and(|s| s.state == 'T')
        });
        assert!(stopped, "process {pid} did not stop");
        Paused { pid }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        kill(self.pid, libc::SIGCONT);
    }
}

/// Waits up to `timeout` until none of `pids` is a live forklb process;
/// returns those still alive (empty: all exited).
pub fn wait_all_exited(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let mut alive = Vec::new();
    wait_until(timeout, || {
        alive = pids.iter().copied().filter(|&p| forklb_alive(p)).collect();
        alive.is_empty()
    });
    alive
}
