//! Reading processes from /proc: who are a process's children, what are
//! they called, are they still running. Used by `forklb -s upgrade` to follow
//! the old and new masters.

use std::fs;

/// (pid, ppid, comm, state) of one process.
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    pub state: char,
}

pub fn info(pid: i32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ..." — comm may contain spaces and parentheses,
    // so split at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        comm,
        state,
    })
}

/// CPU time `pid` has used (user + system), in clock ticks
/// (`sysconf(_SC_CLK_TCK)` per second): fields 14 and 15 of its stat line.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    // After "comm)": state is field 3, so utime (14) is the 12th word.
    let mut rest = stat.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, for [`cpu_ticks`].
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Live (not zombie) children of `ppid` whose comm passes `keep`.
fn children_where(ppid: i32, keep: impl Fn(&str) -> bool) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(info)
        .filter(|p| p.ppid == ppid && p.state != 'Z' && keep(&p.comm))
        .map(|p| p.pid)
        .collect()
}

/// Children of `ppid` whose comm is `comm`.
pub fn children_named(ppid: i32, comm: &str) -> Vec<i32> {
    children_where(ppid, |c| c == comm)
}

/// Children of `ppid` whose comm is none of `names`.
pub fn children_not_named(ppid: i32, names: &[&str]) -> Vec<i32> {
    children_where(ppid, |c| !names.contains(&c))
}

/// Running (exists and is not a zombie waiting to be reaped).
pub fn is_running(pid: i32) -> bool {
    info(pid).is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

/// What `pid` is, when it runs and is not a forklb master: its process
/// name. A pid file can outlive its master, and the number go to another
/// process; signalling that one (`-s`) would kill or confuse it. Masters
/// name themselves `forklb-master` (`prctl`), so the name tells.
pub fn not_a_master(pid: i32) -> Option<String> {
    let p = info(pid)?;
    (p.comm != "forklb-master" && p.state != 'Z' && p.state != 'X').then_some(p.comm)
}
