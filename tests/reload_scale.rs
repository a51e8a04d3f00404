//! A reload of a large configuration costs the master time linear in its
//! size: 100,000 servers — half in one upstream, half in upstreams of one
//! server each — with runtime state carried over by name. Scanning lists
//! per server (as carry-over and the duplicate-name check once did) cost
//! 13 s of master CPU in a release build for one upstream of 100,000, and
//! far more in the debug build tests use; linear, it is about 1.5 s here
//! (0.4 s in release), and the bound below sits between the two.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

const SERVERS: usize = 100_000;
/// Master CPU one reload may take in a debug build.
const RELOAD_CPU_BOUND: Duration = Duration::from_secs(6);

/// An IP:port literal per server (nothing to resolve), all distinct.
fn addr(k: usize) -> String {
    format!(
        "127.{}.{}.{}:{}",
        10 + (k >> 16),
        (k >> 8) & 255,
        k & 255,
        8000 + k % 1000
    )
}

fn big_config(admin: &Path) -> String {
    let first_half = (0..SERVERS / 2).map(|k| Srv::new(&format!("s{k}"), addr(k)));
    let mut c = ConfigBuilder::new()
        .admin_socket(admin)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::healthz())
        .route(Route::to("big"))
        .upstream("big", first_half);
    for k in SERVERS / 2..SERVERS {
        c = c.upstream(&format!("u{k}"), [Srv::new(&format!("s{k}"), addr(k))]);
    }
    c.build()
}

/// utime + stime of `pid`.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(f.iter().sum::<u64>() * 1000 / hz)
}

#[test]
fn reload_of_100k_servers_is_linear() {
    let dir = TempDir::new("bigadmin");
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(&big_config(&sock));
    assert!(wait_until(Duration::from_secs(10), || sock.exists()));
    // Runtime state on servers at the far ends of both shapes.
    let last_big = format!("big/s{}", SERVERS / 2 - 1);
    let last_upstream = format!("u{}", SERVERS - 1);
    assert_eq!(admin_cmd(&sock, &format!("set weight {last_big} 7")), "\n");
    assert_eq!(
        admin_cmd(
            &sock,
            &format!("disable server {last_upstream}/s{}", SERVERS - 1)
        ),
        "\n"
    );

    let master = lb.master_pid();
    let before = cpu_time(master);
    let started = Instant::now();
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_log(
            "configuration generation 2 loaded",
            Duration::from_secs(120)
        ),
        "no reload\n{}",
        lb.diagnostics()
    );
    let cpu = cpu_time(master) - before;
    eprintln!(
        "reload of {SERVERS} servers: {cpu:?} of master CPU, {:?} wall",
        started.elapsed()
    );
    assert!(
        cpu < RELOAD_CPU_BOUND,
        "the reload took {cpu:?} of master CPU (bound {RELOAD_CPU_BOUND:?})"
    );

    // The master answers at once, and the state came along by name.
    assert!(admin_cmd(&sock, "show info").contains("Generation: 2"));
    assert_eq!(
        admin_cmd(&sock, &format!("get weight {last_big}")),
        "7 (initial 1)\n\n"
    );
    let state = admin_cmd(&sock, &format!("show servers state {last_upstream}"));
    assert!(
        state
            .lines()
            .any(|l| l.contains(&format!(" {last_upstream} ")) && l.split(' ').nth(6) == Some("1")),
        "{last_upstream} lost its maint state:\n{state}"
    );
    lb.wait_workers(1, Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(20), || try_http_get(
            lb.port(),
            "/healthz"
        )
        .is_ok_and(|r| r.status == 200)),
        "{}",
        lb.diagnostics()
    );
}
