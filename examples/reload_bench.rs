//! Reload cost at scale: master CPU and wall time of a HUP with 100,000
//! servers, for three shapes of configuration (one upstream of 100,000
//! servers, 100,000 upstreams of one, and half of each). Servers are IP:port
//! literals, so nothing resolves DNS. The master is started from the forklb
//! binary beside this example (or `FORKLB_BIN`) on 127.0.0.1.
//!
//! Run with `cargo build --release && cargo run --release --example reload_bench`
//! (also run by `make bench`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SERVERS: usize = 100_000;
const RELOADS: u64 = 3;
const WAIT: Duration = Duration::from_secs(120);

fn addr(k: usize) -> String {
    format!(
        "127.{}.{}.{}:{}",
        10 + (k >> 16),
        (k >> 8) & 255,
        k & 255,
        8000 + k % 1000
    )
}

/// A configuration whose first `in_one` servers share upstream `big` and
/// the others have an upstream each.
fn config(dir: &Path, port: u16, in_one: usize) -> String {
    let mut y = format!(
        "workers: 1\npid_file: \"{d}/forklb.pid\"\nerror_log: \"{d}/error.log\"\n\
         upgrade_sock: \"{d}/upgrade.sock\"\nlisteners:\n  - name: web\n    \
         bind: [\"127.0.0.1:{port}\"]\n    routes: [{{upstream: u{SERVERS}}}]\nupstreams:\n",
        d = dir.display()
    );
    if in_one > 0 {
        y.push_str("  big:\n    servers:\n");
        for k in 0..in_one {
            let _ = writeln!(y, "      - {{name: s{k}, addr: \"{}\"}}", addr(k));
        }
    }
    for k in in_one..=SERVERS {
        let _ = writeln!(
            y,
            "  u{k}:\n    servers: [{{name: s{k}, addr: \"{}\"}}]",
            addr(k % SERVERS)
        );
    }
    y
}

fn forklb_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FORKLB_BIN") {
        return Ok(PathBuf::from(p));
    }
    // target/release/examples/reload_bench → target/release/forklb
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("forklb"))
        .ok_or("cannot locate the forklb binary; set FORKLB_BIN")?;
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// utime + stime of `pid`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(str::parse::<u64>)
        .sum::<std::result::Result<u64, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Master {
    child: Child,
    dir: PathBuf,
}

impl Drop for Master {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a master on the shape, reloads it `RELOADS` times; returns the
/// master CPU and wall time of each reload.
fn measure(bin: &Path, in_one: usize) -> Result<Vec<(Duration, Duration)>> {
    let dir = std::env::temp_dir().join(format!(
        "forklb-reload-bench-{}-{in_one}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("forklb.yaml");
    std::fs::write(&conf, config(&dir, free_port()?, in_one))?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let m = Master { child, dir };
    let pid_file = m.dir.join("forklb.pid");
    let log = m.dir.join("error.log");
    wait_for("the master to serve", || pid_file.exists())?;
    let pid = m.child.id();
    let mut out = Vec::new();
    for generation in 2..2 + RELOADS {
        let before = cpu_time(pid)?;
        let started = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        let needle = format!("configuration generation {generation} loaded");
        wait_for("the reload", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains(&needle))
        })?;
        out.push((cpu_time(pid)? - before, started.elapsed()));
    }
    Ok(out)
}

fn main() -> Result<()> {
    let bin = forklb_bin()?;
    println!("reload (HUP) with {SERVERS} servers, {RELOADS} reloads each, master CPU / wall:");
    for (shape, in_one) in [
        ("1 upstream x 100000 servers", SERVERS),
        ("100000 upstreams x 1 server", 0),
        ("50000 in 1 upstream + 50000 upstreams x 1", SERVERS / 2),
    ] {
        let runs = measure(&bin, in_one)?;
        let text: Vec<String> = runs
            .iter()
            .map(|(cpu, wall)| format!("{:.2} s / {:.2} s", cpu.as_secs_f64(), wall.as_secs_f64()))
            .collect();
        println!("  {shape:<44} {}", text.join(", "));
    }
    Ok(())
}
