//! The shipped unit, `systemd/forklb.service`, under a real systemd (Debian's
//! systemd 252 booted as PID 1 of an isolated namespace by
//! `../shared/tools/systemd_ns.sh`): start, binary upgrade by signals, by
//! `forklb -s upgrade` and rolled back, then `systemctl reload` and `stop`;
//! a crash restarts the unit. After each path the unit must stay `active
//! (running)` with MainPID = the master in the pid file and no restart, also
//! after waiting past TimeoutStopSec (shortened in the test's copy of the
//! unit), and a request loop inside the namespace sees no failure.
//!
//! Needs root (CI runs as root; `make test` installs systemd and curl).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// TimeoutStopSec in the test's copy of the unit (40s in the shipped one).
const STOP_TIMEOUT_SECS: u64 = 5;
const T10: Duration = Duration::from_secs(10);
const URL: &str = "http://127.0.0.1:8080/";

const CONFIG: &str = "\
workers: 2
shutdown_timeout: 3s
listeners:
  - name: web
    bind: [\"127.0.0.1:8080\"]
    routes:
      - return: {status: 200, body: \"ok\\n\"}
";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/systemd_ns.sh")
}

/// One process of the namespace, from its /proc/PID/stat.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    comm: String,
}

/// What `systemctl show` says about forklb.service.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnitState {
    main_pid: i32,
    active: String,
    sub: String,
    restarts: u32,
}

/// A systemd booted in its own namespaces with forklb.service installed; shut
/// down (and its cgroup removed) on drop, whatever happened.
struct Systemd {
    dir: TempDir,
    up: bool,
}

impl Systemd {
    /// Boots systemd and installs the unit (TimeoutStopSec shortened), the
    /// binary cargo built and `CONFIG`.
    fn boot(tag: &str) -> Systemd {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(
            uid, 0,
            "these tests boot systemd in a namespace and need root (CI runs as root)"
        );
        assert!(
            script().is_file(),
            "{} is missing (../shared must sit beside the project)",
            script().display()
        );
        assert!(
            Path::new("/lib/systemd/systemd").exists(),
            "systemd is not installed (make test installs it)"
        );
        let mut s = Systemd {
            dir: TempDir::new(&format!("systemd-{tag}")),
            up: false,
        };
        let out = s.tool(&["up", s.path()]);
        s.up = true;
        assert!(out.status.success(), "systemd_ns up failed: {}", text(&out));

        let bin = s.dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        install_binary(Path::new(env!("CARGO_BIN_EXE_forklb")), &bin.join("forklb"));
        let conf = s.dir.join("forklb.yaml");
        fs::write(&conf, CONFIG).unwrap();
        let out = s.tool(&["put", s.path(), path_str(&conf), "/etc/forklb/forklb.yaml"]);
        assert!(out.status.success(), "put config: {}", text(&out));

        let shipped = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/forklb.service"),
        )
        .unwrap();
        assert!(shipped.contains("TimeoutStopSec=40s"), "{shipped}");
        let unit = s.dir.join("forklb.service");
        fs::write(
            &unit,
            shipped.replace(
                "TimeoutStopSec=40s",
                &format!("TimeoutStopSec={STOP_TIMEOUT_SECS}s"),
            ),
        )
        .unwrap();
        let out = s.tool(&["install-unit", s.path(), path_str(&unit), path_str(&bin)]);
        assert!(out.status.success(), "install-unit: {}", text(&out));
        s
    }

    fn path(&self) -> &str {
        path_str(self.dir.path())
    }

    fn tool(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(script())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run systemd_ns.sh")
    }

    /// Runs `cmd` inside the namespace.
    fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", self.path(), "--"];
        args.extend_from_slice(cmd);
        self.tool(&args)
    }

    /// Runs `cmd` inside; panics with the journal unless it exits 0.
    fn ok(&self, cmd: &[&str]) -> String {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}\n{}",
            text(&out),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journal(&self) -> String {
        let out = self.exec(&["journalctl", "--no-pager", "-u", "forklb", "-n", "150"]);
        format!("--- journal of forklb.service ---\n{}", text(&out))
    }

    fn state(&self) -> UnitState {
        let out = self.ok(&[
            "systemctl",
            "show",
            "-p",
            "MainPID",
            "-p",
            "ActiveState",
            "-p",
            "SubState",
            "-p",
            "NRestarts",
            "forklb",
        ]);
        let get = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_default()
                .to_owned()
        };
        UnitState {
            main_pid: get("MainPID").parse().unwrap_or(-1),
            active: get("ActiveState"),
            sub: get("SubState"),
            restarts: get("NRestarts").parse().unwrap_or(u32::MAX),
        }
    }

    /// The pid in /run/forklb/forklb.pid (inside), if any.
    fn pid_file(&self) -> Option<i32> {
        let out = self.exec(&["cat", "/run/forklb/forklb.pid"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Every process of the namespace.
    fn procs(&self) -> Vec<Proc> {
        let out = self.ok(&[
            "sh",
            "-c",
            "for f in /proc/[0-9]*/stat; do cat \"$f\" 2>/dev/null; echo; done",
        ]);
        out.lines().filter_map(parse_stat).collect()
    }

    fn children(&self, ppid: i32, comm: &str) -> Vec<i32> {
        self.procs()
            .into_iter()
            .filter(|p| p.ppid == ppid && p.comm == comm)
            .map(|p| p.pid)
            .collect()
    }

    fn alive(&self, pid: i32) -> bool {
        self.procs().iter().any(|p| p.pid == pid)
    }

    fn forklb_procs(&self) -> Vec<Proc> {
        self.procs()
            .into_iter()
            .filter(|p| p.comm.starts_with("forklb"))
            .collect()
    }

    fn kill(&self, sig: &str, pid: i32) {
        self.ok(&["kill", &format!("-{sig}"), &pid.to_string()]);
    }

    /// Waits until `cond` holds (checked every 100 ms), else panics with `what`,
    /// the unit's state and the journal.
    fn wait(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Systemd) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\nunit: {:?}, pid file: {:?}\nprocesses: {:?}\n{}",
                    self.state(),
                    self.pid_file(),
                    self.forklb_procs(),
                    self.journal()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `systemctl start forklb`: active, MainPID = the pid file's master with
    /// 2 workers. Returns that master.
    fn start(&self) -> i32 {
        self.ok(&["systemctl", "start", "forklb"]);
        let st = self.state();
        assert_eq!(
            (st.active.as_str(), st.sub.as_str()),
            ("active", "running"),
            "{st:?}\n{}",
            self.journal()
        );
        let master = self.pid_file().expect("pid file after start");
        assert_eq!(st.main_pid, master, "{}", self.journal());
        self.wait("2 workers", T10, |s| {
            s.children(master, "forklb-worker").len() == 2
        });
        master
    }

    /// The unit is active (running) with MainPID = `master` = the pid file,
    /// and has not restarted.
    fn assert_serving(&self, master: i32, when: &str) {
        let st = self.state();
        let pid_file = self.pid_file();
        assert!(
            st.active == "active"
                && st.sub == "running"
                && st.main_pid == master
                && pid_file == Some(master)
                && st.restarts == 0,
            "{when}: unit {st:?}, pid file {pid_file:?}, expected master {master}\nprocesses: {:?}\n{}",
            self.forklb_procs(),
            self.journal()
        );
    }

    /// After USR2 to `old`: waits until the pid file names a new master (a
    /// child of `old`) that serves with 2 workers; returns it. MainPID stays
    /// `old` meanwhile: systemd follows the new master once the old one exits.
    fn wait_new_master(&self, old: i32) -> i32 {
        let mut new = 0;
        self.wait("a new master in the pid file, with 2 workers", T10, |s| {
            let Some(p) = s.pid_file() else { return false };
            new = p;
            p != old && s.children(p, "forklb-worker").len() == 2
        });
        assert_eq!(self.children(old, "forklb-master"), vec![new]);
        let st = self.state();
        assert!(
            st.active == "active" && st.main_pid == old && st.restarts == 0,
            "during the upgrade: {st:?}\n{}",
            self.journal()
        );
        new
    }

    /// Past TimeoutStopSec: had systemd started stopping the unit, it would
    /// have killed it by now.
    fn wait_past_stop_timeout(&self) {
        thread::sleep(Duration::from_secs(STOP_TIMEOUT_SECS + 3));
    }

    /// `systemctl reload` starts a new generation under the same master;
    /// `systemctl stop` stops everything.
    fn reload_then_stop(&self, master: i32) {
        let before = self.children(master, "forklb-worker");
        self.ok(&["systemctl", "reload", "forklb"]);
        self.wait("new workers after systemctl reload", T10, |s| {
            let now = s.children(master, "forklb-worker");
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        });
        self.assert_serving(master, "after systemctl reload");
        let out = self.ok(&["curl", "-sS", "--max-time", "5", URL]);
        assert_eq!(out, "ok\n");

        self.ok(&["systemctl", "stop", "forklb"]);
        let st = self.state();
        assert_eq!(st.active, "inactive", "{st:?}\n{}", self.journal());
        assert!(
            self.forklb_procs().is_empty(),
            "left after stop: {:?}",
            self.forklb_procs()
        );
        let out = self.exec(&["curl", "-sS", "--max-time", "5", URL]);
        assert!(!out.status.success(), "still answering after stop");
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.journal());
        }
        if self.up {
            let out = self.tool(&["down", self.path()]);
            if !out.status.success() {
                eprintln!("systemd_ns down: {}", text(&out));
            }
        }
    }
}

/// `curl` in a loop inside the namespace, one new connection per request,
/// recording every status (000 = no answer) in a file, until stopped.
struct RequestLoop<'a> {
    ns: &'a Systemd,
    child: Child,
    codes: PathBuf,
    stop: PathBuf,
}

impl<'a> RequestLoop<'a> {
    fn start(ns: &'a Systemd) -> RequestLoop<'a> {
        let codes = ns.dir.join("codes");
        let stop = ns.dir.join("stop-loop");
        let _ = fs::remove_file(&stop);
        fs::write(&codes, "").unwrap();
        // Bounded twice: by the stop file and by a deadline of its own.
        let body = format!(
            "end=$(( $(date +%s) + 240 )); \
             while [ ! -e '{stop}' ] && [ $(date +%s) -lt $end ]; do \
               curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 5 {URL} >> '{codes}'; \
             done",
            stop = stop.display(),
            codes = codes.display()
        );
        let child = Command::new("bash")
            .arg(script())
            .args(["exec", ns.path(), "--", "sh", "-c", &body])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the request loop");
        let l = RequestLoop {
            ns,
            child,
            codes,
            stop,
        };
        l.expect_progress(20, "request loop start");
        l
    }

    fn codes(&self) -> Vec<String> {
        fs::read_to_string(&self.codes)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// At least `n` more answers within 10 s.
    fn expect_progress(&self, n: usize, when: &str) {
        let start = self.codes().len();
        self.ns.wait(&format!("{n} requests ({when})"), T10, |_| {
            self.codes().len() >= start + n
        });
    }

    /// Stops the loop and asserts that every request got a 200.
    fn finish(mut self, what: &str) {
        self.expect_progress(20, "before stopping the loop");
        fs::write(&self.stop, "").unwrap();
        let deadline = Instant::now() + T10;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let codes = self.codes();
        let failed: Vec<&String> = codes.iter().filter(|c| c.as_str() != "200").collect();
        eprintln!("{what}: {} requests, {} failed", codes.len(), failed.len());
        assert!(
            failed.is_empty(),
            "{what}: {} of {} requests failed (codes {:?})\n{}",
            failed.len(),
            codes.len(),
            failed,
            self.ns.journal()
        );
    }
}

impl Drop for RequestLoop<'_> {
    fn drop(&mut self) {
        let _ = fs::write(&self.stop, "");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_stat(line: &str) -> Option<Proc> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line.get(..open)?.trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_owned();
    let mut rest = line.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Proc { pid, ppid, comm })
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn install_binary(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::copy(from, to).expect("copy forklb");
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn usr2_winch_quit_keeps_the_unit_running() {
    let ns = Systemd::boot("signals");
    let old = ns.start();
    let load = RequestLoop::start(&ns);

    ns.kill("USR2", old);
    let new = ns.wait_new_master(old);
    load.expect_progress(20, "after USR2");
    ns.kill("WINCH", old);
    ns.wait("the old workers to exit after WINCH", T10, |s| {
        s.children(old, "forklb-worker").is_empty()
    });
    load.expect_progress(20, "after WINCH");
    ns.kill("QUIT", old);
    ns.wait("the old master to exit after QUIT", T10, |s| !s.alive(old));
    ns.wait("MainPID on the new master", T10, |s| {
        s.state().main_pid == new
    });
    ns.assert_serving(new, "right after the old master exited");

    ns.wait_past_stop_timeout();
    ns.assert_serving(new, "past TimeoutStopSec after the upgrade");
    load.finish("USR2/WINCH/QUIT");
    ns.reload_then_stop(new);
}

#[test]
fn s_upgrade_keeps_the_unit_running() {
    let ns = Systemd::boot("s-upgrade");
    let old = ns.start();
    let load = RequestLoop::start(&ns);

    let bin = format!("{}/bin/forklb", ns.path());
    let out = ns.ok(&[&bin, "-s", "upgrade", "-c", "/etc/forklb/forklb.yaml"]);
    assert!(out.contains("upgrade complete"), "{out}");
    assert!(!ns.alive(old), "the old master survived -s upgrade");
    let new = ns.pid_file().expect("pid file after -s upgrade");
    assert_ne!(new, old);
    ns.assert_serving(new, "right after forklb -s upgrade");

    ns.wait_past_stop_timeout();
    ns.assert_serving(new, "past TimeoutStopSec after forklb -s upgrade");
    load.finish("forklb -s upgrade");
    ns.reload_then_stop(new);
}

#[test]
fn rollback_keeps_the_unit_running_on_the_old_master() {
    let ns = Systemd::boot("rollback");
    let old = ns.start();
    let load = RequestLoop::start(&ns);

    ns.kill("USR2", old);
    let new = ns.wait_new_master(old);
    ns.kill("WINCH", old);
    ns.wait("the old workers to exit after WINCH", T10, |s| {
        s.children(old, "forklb-worker").is_empty()
    });
    load.expect_progress(20, "after WINCH");
    // Roll back: the old master restarts its workers, the new one quits.
    ns.kill("HUP", old);
    ns.wait("the old master's workers back after HUP", T10, |s| {
        s.children(old, "forklb-worker").len() == 2
    });
    load.expect_progress(20, "after HUP to the old master");
    ns.kill("QUIT", new);
    ns.wait("the new master to exit after QUIT", T10, |s| !s.alive(new));
    ns.wait("the pid file back on the old master", T10, |s| {
        s.pid_file() == Some(old)
    });
    ns.assert_serving(old, "right after the rollback");

    ns.wait_past_stop_timeout();
    ns.assert_serving(old, "past TimeoutStopSec after the rollback");
    load.finish("rollback");
    ns.reload_then_stop(old);
}

#[test]
fn crashed_master_is_restarted_and_stop_still_works() {
    let ns = Systemd::boot("crash");
    let first = ns.start();
    ns.kill("KILL", first);
    let mut now = UnitState {
        main_pid: 0,
        active: String::new(),
        sub: String::new(),
        restarts: 0,
    };
    ns.wait(
        "the unit restarted after the crash",
        Duration::from_secs(20),
        |s| {
            now = s.state();
            now.restarts == 1
                && now.active == "active"
                && now.main_pid != first
                && s.pid_file() == Some(now.main_pid)
        },
    );
    let master = now.main_pid;
    ns.wait("2 workers after the restart", T10, |s| {
        s.children(master, "forklb-worker").len() == 2
    });
    let out = ns.ok(&["curl", "-sS", "--max-time", "5", URL]);
    assert_eq!(out, "ok\n");
    ns.ok(&["systemctl", "stop", "forklb"]);
    assert_eq!(ns.state().active, "inactive", "{}", ns.journal());
    assert!(ns.forklb_procs().is_empty(), "{:?}", ns.forklb_procs());
}

/// `systemctl stop` in the middle of an upgrade (both masters alive, the
/// old one's workers stopped by WINCH) stops both, gracefully: no SIGKILL,
/// no failed state.
#[test]
fn stop_during_an_upgrade_stops_both_masters() {
    let ns = Systemd::boot("stop-mid-upgrade");
    let old = ns.start();
    ns.kill("USR2", old);
    let new = ns.wait_new_master(old);
    ns.kill("WINCH", old);
    ns.wait("the old workers to exit after WINCH", T10, |s| {
        s.children(old, "forklb-worker").is_empty()
    });
    ns.ok(&["systemctl", "stop", "forklb"]);
    let st = ns.state();
    assert_eq!(
        (st.active.as_str(), st.restarts),
        ("inactive", 0),
        "{st:?}\n{}",
        ns.journal()
    );
    assert!(ns.forklb_procs().is_empty(), "{:?}", ns.forklb_procs());
    // Graceful: no worker killed (a master may get systemd's final SIGKILL
    // while it is exiting, after its workers are gone: harmless), and the
    // unit did not fail.
    let journal = ns.journal();
    let killed_worker = journal
        .lines()
        .any(|l| l.contains("SIGKILL") && l.contains("forklb-worker"));
    assert!(
        !killed_worker
            && !journal.contains("Failed with result")
            && journal.contains("Deactivated successfully"),
        "not a graceful stop (new master {new}):\n{journal}"
    );
}
