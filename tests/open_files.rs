//! The open-files limit: RLIMIT_NOFILE is raised to fit `worker_connections`
//! (two descriptors per connection and some to spare) — the soft limit up to
//! the hard one, and as root (with CAP_SYS_RESOURCE) the hard limit too — in the master and so in
//! the workers it forks; what cannot be raised is logged.

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::*;

/// Whether this process may raise hard limits (CAP_SYS_RESOURCE, bit 24 of
/// the effective capabilities): root in a container often may not.
fn may_raise_hard_limits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// (soft, hard) "Max open files" of `pid`.
fn nofile(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut v = line["Max open files".len()..].split_whitespace();
    Some((v.next()?.parse().ok()?, v.next()?.parse().ok()?))
}

#[test]
fn open_files_limit_is_raised_to_fit_worker_connections() {
    let backend = Backend::start("a");
    let yaml = format!(
        "worker_connections: 3000\n{}",
        proxy_config_for(1, &[&backend])
    );
    let want = 3000 * 2 + 256;
    let privileged = running_as_root() && may_raise_hard_limits();
    // Started under a low hard limit, as a service manager might set it
    // (prlimit execs forklb in its own process).
    let lb = Forklb::start_with(
        &yaml,
        &StartOpts {
            exe: Some(PathBuf::from("prlimit")),
            args: vec![
                "--nofile=1024:2048".to_owned(),
                "--".to_owned(),
                env!("CARGO_BIN_EXE_forklb").to_owned(),
            ],
            ..StartOpts::default()
        },
    );
    assert_eq!(comm(lb.master_pid()).as_deref(), Some("forklb-master"));
    let workers = lb.wait_workers(1, Duration::from_secs(5));
    let log = lb.error_log_contents();
    for pid in [lb.master_pid(), workers[0]] {
        let (soft, hard) = nofile(pid).expect("read /proc/PID/limits");
        if privileged {
            assert!(
                soft >= want && hard >= want,
                "process {pid}: open files {soft}/{hard}, want {want}\n{log}"
            );
        } else {
            // Only the soft limit may move, up to the hard one.
            assert_eq!((soft, hard), (2048, 2048), "process {pid}\n{log}");
        }
    }
    if privileged {
        assert!(!log.contains("open files limit is"), "{log}");
    } else {
        assert!(
            log.contains(&format!("open files limit is 2048, below the {want}")),
            "{log}"
        );
    }
    assert_eq!(http_get(lb.port(), "/").status, 200);
}
