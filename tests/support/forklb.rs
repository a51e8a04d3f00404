//! The [`Forklb`] instance runner (a foreground master on a generated
//! configuration in a private folder) and [`run_forklb`] for one-shot runs.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Extra start-up settings for [`Forklb::start_with`].
#[derive(Debug, Clone, Default)]
pub struct StartOpts {
    /// Environment variables set for forklb (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    /// Arguments before `-c FILE`.
    pub args: Vec<String>,
    /// Run this executable instead of the one cargo built (e.g. a copy).
    pub exe: Option<PathBuf>,
    /// Set `upgrade_sock` to `upgrade.sock` in the test's folder. Setting it
    /// is what makes QUIT offer the sockets for `upgrade_grace` (5 s unless
    /// the YAML says otherwise), so only Pingora-style tests ask for it.
    pub upgrade_sock: bool,
}

/// A running `forklb` (foreground master) on a generated configuration.
pub struct Forklb {
    child: Child,
    dir: TempDir,
    port: u16,
    config: PathBuf,
    pid_file: PathBuf,
    error_log: PathBuf,
    /// Every child pid observed so far, so that Drop can clean up even after
    /// the master is gone.
    seen: Mutex<Vec<i32>>,
    exit: Option<ExitStatus>,
    /// The `pid_file`/`error_log` (and maybe `upgrade_sock`) lines put before
    /// the test's YAML (see [`Forklb::write_config`]).
    header: String,
}

impl Forklb {
    /// Starts forklb on `yaml` (with `$PORT` replaced by a free port and
    /// `pid_file`, `error_log` pointing into a fresh temporary folder) and
    /// waits until it serves; panics with diagnostics otherwise.
    pub fn start(yaml: &str) -> Forklb {
        Forklb::try_start(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(yaml: &str) -> Result<Forklb, String> {
        Forklb::try_start_with(yaml, &StartOpts::default())
    }

    /// Like [`Forklb::start`], with extra environment variables, arguments or
    /// another executable.
    pub fn start_with(yaml: &str, opts: &StartOpts) -> Forklb {
        Forklb::try_start_with(yaml, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_with(yaml: &str, opts: &StartOpts) -> Result<Forklb, String> {
        let dir = TempDir::new("run");
        let port = free_port();
        let pid_file = dir.join("forklb.pid");
        let error_log = dir.join("error.log");
        let config = dir.join("forklb.yaml");
        let mut header = format!(
            "pid_file: \"{}\"\nerror_log: \"{}\"\n",
            pid_file.display(),
            error_log.display(),
        );
        if opts.upgrade_sock {
            header.push_str(&format!(
                "upgrade_sock: \"{}\"\n",
                dir.join("upgrade.sock").display()
            ));
        }
        let text = format!("{header}{}", yaml.replace("$PORT", &port.to_string()));
        fs::write(&config, text).map_err(|e| format!("write config: {e}"))?;
        let stdout = fs::File::create(dir.join("stdout.log")).map_err(|e| e.to_string())?;
        let stderr = fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
        let exe = opts
            .exe
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_forklb")));
        let mut cmd = forklb_command_at(&exe);
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
        let mut f = Forklb {
            child,
            dir,
            port,
            config,
            pid_file,
            error_log,
            seen: Mutex::new(Vec::new()),
            exit: None,
            header,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = f.child.try_wait() {
                f.exit = Some(status);
                return Err(format!(
                    "forklb exited during start-up with {status}\n{}",
                    f.diagnostics()
                ));
            }
            if f.pid_file_pid().is_some() {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    f.child_pids();
                    return Ok(f);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "forklb not ready within {START_TIMEOUT:?} (pid file: {:?}, port {port})\n{}",
                    fs::read_to_string(&f.pid_file).ok(),
                    f.diagnostics()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn master_pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The pid written in the pid file, if the file exists and holds one.
    pub fn pid_file_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(&self.pid_file).ok()?;
        if !text.ends_with('\n') {
            return None;
        }
        text.trim().parse().ok()
    }

    /// Live children of the master (workers, health checker), sorted.
    pub fn child_pids(&self) -> Vec<i32> {
        let kids = children_of(self.master_pid());
        let mut seen = self.seen.lock().unwrap();
        for k in &kids {
            if !seen.contains(k) {
                seen.push(*k);
            }
        }
        kids
    }

    /// Live children of the master named `forklb-worker`, sorted.
    pub fn worker_pids(&self) -> Vec<i32> {
        self.child_pids()
            .into_iter()
            .filter(|&p| comm(p).as_deref() == Some("forklb-worker"))
            .collect()
    }

    /// Waits until the master has exactly `n` workers; returns their pids.
    pub fn wait_workers(&self, n: usize, timeout: Duration) -> Vec<i32> {
        let mut last = Vec::new();
        if wait_until(timeout, || {
            last = self.worker_pids();
            last.len() == n
        }) {
            return last;
        }
        panic!(
            "expected {n} workers, have {last:?} (children {:?})\n{}",
            self.child_pids()
                .iter()
                .map(|&p| (p, comm(p)))
                .collect::<Vec<_>>(),
            self.diagnostics()
        );
    }

    /// Every pid ever observed as a child of the master.
    pub fn seen_pids(&self) -> Vec<i32> {
        self.seen.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        assert!(
            kill(self.master_pid(), sig),
            "kill({}, {sig}) failed",
            self.master_pid()
        );
    }

    /// Waits for the master to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return self.exit;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the master to exit, and asserts that it did
    /// (else panics with `still_running` and the diagnostics), with status 0.
    pub fn expect_exit_0(&mut self, timeout: Duration, still_running: &str) {
        let status = self.wait_exit(timeout);
        assert!(status.is_some(), "{still_running}\n{}", self.diagnostics());
        assert_eq!(status.unwrap().code(), Some(0), "{status:?}");
    }

    /// Replaces the configuration file with `yaml` (same treatment as at
    /// start: `$PORT` replaced, the `pid_file`/`error_log` (`upgrade_sock`)
    /// lines put first), e.g. before sending HUP.
    pub fn write_config(&self, yaml: &str) {
        let text = format!(
            "{}{}",
            self.header,
            yaml.replace("$PORT", &self.port.to_string())
        );
        // Write a sibling and rename: the master never reads a half-written file.
        let tmp = self.dir.join("forklb.yaml.tmp");
        fs::write(&tmp, text).expect("write config");
        fs::rename(&tmp, &self.config).expect("rename config");
    }

    /// USR2, then QUIT to this (old) master once the new one named in the
    /// pid file serves, and waits until the admin socket `sock` answers for
    /// the new master; returns its pid (tracked, so Drop stops it).
    pub fn upgrade_through_usr2(&self, sock: &Path) -> i32 {
        let old = self.master_pid();
        self.signal(libc::SIGUSR2);
        assert!(
            wait_until(Duration::from_secs(10), || self
                .pid_file_pid()
                .is_some_and(|p| p != old)),
            "new master did not come up\n{}",
            self.diagnostics()
        );
        let new = self.pid_file_pid().expect("new master pid");
        self.track(new);
        // The old master leaves; the new one owns the admin socket.
        self.signal(libc::SIGQUIT);
        assert!(
            wait_until(Duration::from_secs(10), || super::admin_cmd(
                sock,
                "show info"
            )
            .contains(&format!("Pid: {new}"))),
            "the admin socket does not answer for the new master {new}\n{}",
            self.diagnostics()
        );
        new
    }

    /// Records `pid` (e.g. a new master started by USR2) so that Drop kills
    /// it, with everything under it, even after this master is gone.
    pub fn track(&self, pid: i32) {
        let mut seen = self.seen.lock().unwrap();
        if !seen.contains(&pid) {
            seen.push(pid);
        }
    }

    /// `<pid_file>.oldbin`, where the old master keeps its pid during an upgrade.
    pub fn oldbin_path(&self) -> PathBuf {
        let mut p = self.pid_file.as_os_str().to_owned();
        p.push(".oldbin");
        p.into()
    }

    pub fn error_log_path(&self) -> &Path {
        &self.error_log
    }

    /// The master started by USR2: a live child of this master named
    /// `forklb-master` (recorded with `track`).
    pub fn new_master(&self) -> Option<i32> {
        let m = masters_under(self.master_pid()).into_iter().next()?;
        self.track(m);
        Some(m)
    }

    pub fn error_log_contents(&self) -> String {
        fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    pub fn stderr_contents(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn stdout_contents(&self) -> String {
        fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// Error log, stdout and stderr, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- error log ---\n{}--- stderr ---\n{}--- stdout ---\n{}---",
            self.error_log_contents(),
            self.stderr_contents(),
            self.stdout_contents()
        )
    }
}

impl Drop for Forklb {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "forklb master {} port {}:\n{}",
                self.master_pid(),
                self.port,
                self.diagnostics()
            );
        }
        let master = self.master_pid();
        let running = self.exit.is_none() && matches!(self.child.try_wait(), Ok(None));
        let mut victims = self.seen_pids();
        if running {
            // Freeze the master so it cannot fork replacements while we kill.
            kill(master, libc::SIGSTOP);
            for p in descendants_of(master) {
                if !victims.contains(&p) {
                    victims.push(p);
                }
            }
        }
        // Masters among them (e.g. a new master started by USR2 and
        // recorded with `track`): freeze them too and take their children.
        for p in victims.clone() {
            if p != master && forklb_alive(p) && comm(p).as_deref() == Some("forklb-master") {
                kill(p, libc::SIGSTOP);
                for d in descendants_of(p) {
                    if !victims.contains(&d) {
                        victims.push(d);
                    }
                }
            }
        }
        for p in victims {
            if forklb_alive(p) {
                kill(p, SIGKILL);
            }
        }
        if running {
            kill(master, SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A `Command` for the forklb binary with an environment that cannot leak in
/// from the test runner.
pub fn forklb_command() -> Command {
    forklb_command_at(Path::new(env!("CARGO_BIN_EXE_forklb")))
}

/// Like [`forklb_command`], for a forklb executable at another path (e.g. a
/// copy that a test replaces to simulate a binary upgrade).
pub fn forklb_command_at(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    // Its own process group: run from a terminal, the tests' masters are
    // not in its foreground group, where forklb ignores WINCH (a window
    // resize sends it there).
    cmd.process_group(0);
    for var in [
        "RUST_LOG",
        "FORKLB_CONF",
        "FORKLB_FDS",
        "LISTEN_FDS",
        "LISTEN_PID",
        "NOTIFY_SOCKET",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Output of a forklb run that is expected to exit by itself.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout followed by stderr.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs forklb with `args` and waits (at most `timeout`) for it to exit.
pub fn run_forklb(args: &[&str], timeout: Duration) -> RunOutput {
    let dir = TempDir::new("out");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut child = forklb_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout file"))
        .stderr(fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .expect("spawn forklb");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "forklb {args:?} did not exit within {timeout:?}\nstdout: {}\nstderr: {}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    RunOutput {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

impl Forklb {
    /// Live children of the master named `forklb-health`, sorted.
    pub fn health_pids(&self) -> Vec<i32> {
        self.child_pids()
            .into_iter()
            .filter(|&p| comm(p).as_deref() == Some("forklb-health"))
            .collect()
    }

    /// Lines of the error log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.error_log_contents()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the error log has at least `n` lines containing `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_lines(needle).len() >= n)
    }

    /// Waits until the error log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_count(needle, 1, timeout)
    }
}

impl Forklb {
    /// For each of `reqs` (received by `backend`), the worker that owns the
    /// upstream connection it came on, if that connection is still open.
    /// Reads /proc once, so it stays quick for many requests.
    pub fn workers_of(&self, backend: &Backend, reqs: &[Request]) -> Vec<Option<i32>> {
        let remote = loopback(backend.port());
        // local port → inode of the established connections to the backend.
        let inode_of: std::collections::HashMap<u16, u64> = tcp_rows()
            .into_iter()
            .filter(|r| r.remote == remote && r.state == "01")
            .filter_map(|r| Some((r.local_port()?, r.inode)))
            .collect();
        let owners: Vec<(i32, Vec<u64>)> = self
            .worker_pids()
            .into_iter()
            .map(|p| (p, socket_inodes_of(p)))
            .collect();
        reqs.iter()
            .map(|r| {
                let inode = inode_of.get(&r.peer?.port())?;
                owners
                    .iter()
                    .find(|(_, inodes)| inodes.contains(inode))
                    .map(|&(p, _)| p)
            })
            .collect()
    }
}
