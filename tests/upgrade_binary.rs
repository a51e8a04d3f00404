//! Binary upgrade with real processes, signals and HTTP: USR2 (a new master
//! beside the old one, sockets inherited through FORKLB_FDS), WINCH, QUIT,
//! rollback with HUP, a new master that dies or cannot start, a second
//! USR2, sd_notify MAINPID, `forklb -s upgrade`, and the Pingora-style
//! `-u` socket handover over `upgrade_sock`.
//!
//! Every step that must not lose requests runs under continuous load from
//! several client threads ([`Load`]) and asserts zero failed requests.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const T5: Duration = Duration::from_secs(5);
const T10: Duration = Duration::from_secs(10);

/// After USR2: waits until the new master (a child of the old one) has
/// written the pid file and runs `workers` workers; returns its pid.
fn wait_new_master(lb: &Forklb, workers: usize) -> i32 {
    let mut new = None;
    let mut state = String::new();
    let ok = wait_until(T10, || {
        new = lb.new_master();
        state = format!(
            "new master {new:?}, pid file {:?}, .oldbin {:?}, new workers {:?}",
            read_pid_file(lb.pid_file()),
            read_pid_file(&lb.oldbin_path()),
            new.map(workers_of)
        );
        match new {
            Some(n) => read_pid_file(lb.pid_file()) == Some(n) && workers_of(n).len() == workers,
            None => false,
        }
    });
    assert!(
        ok,
        "no new master serving 10 s after USR2: {state}\n{}",
        lb.diagnostics()
    );
    new.unwrap()
}

fn wait_all_exited(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let mut alive = Vec::new();
    wait_until(timeout, || {
        alive = pids.iter().copied().filter(|&p| forklb_alive(p)).collect();
        alive.is_empty()
    });
    alive
}

fn wait_workers_of(master: i32, n: usize, lb: &Forklb) -> Vec<i32> {
    let mut w = Vec::new();
    assert!(
        wait_until(T10, || {
            w = workers_of(master);
            w.len() == n
        }),
        "master {master} has workers {w:?}, expected {n}\n{}",
        lb.diagnostics()
    );
    w
}

/// Waits until the pid file names `pid` again and `.oldbin` is gone.
fn wait_pid_file_back(lb: &Forklb, pid: i32) {
    let mut state = String::new();
    let ok = wait_until(T10, || {
        state = format!(
            "pid file {:?}, .oldbin {:?}",
            read_pid_file(lb.pid_file()),
            read_pid_file(&lb.oldbin_path())
        );
        read_pid_file(lb.pid_file()) == Some(pid) && !lb.oldbin_path().exists()
    });
    assert!(
        ok,
        "the pid file does not name {pid} again: {state}\n{}",
        lb.diagnostics()
    );
}

fn assert_serves(port: u16, body: &str) {
    for i in 0..6 {
        let r = http_get(port, "/");
        assert_eq!((r.status, r.body_str()), (200, body.to_owned()), "GET {i}");
    }
}

/// The forklb binary copied to `dir/bin/forklb`, so a test can replace the
/// "binary on disk" that USR2 starts.
fn copy_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("forklb");
    install(Path::new(env!("CARGO_BIN_EXE_forklb")), &exe);
    exe
}

/// Copies `from` to `to` through a sibling and a rename (a new inode; never
/// a half-written executable). The copy is made by `cp`, so this process
/// never holds a file it will execute open for writing: a child forked
/// meanwhile by another test thread would inherit that descriptor, and
/// exec would fail with ETXTBSY ("Text file busy").
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    let status = std::process::Command::new("cp")
        .arg(from)
        .arg(&tmp)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp {} {}: {status}",
        from.display(),
        tmp.display()
    );
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, to).unwrap();
}

/// Replaces `exe` with a script that records its arguments and FORKLB_FDS
/// in `marker` and exits 1: a new binary that cannot start.
fn install_failing_binary(exe: &Path, marker: &Path) {
    let text = exe.with_extension("txt");
    fs::write(
        &text,
        format!(
            "#!/bin/sh\necho \"args=$*\" > '{m}.tmp'\necho \"fds=$FORKLB_FDS\" >> '{m}.tmp'\n\
             mv '{m}.tmp' '{m}'\nexit 1\n",
            m = marker.display()
        ),
    )
    .unwrap();
    install(&text, exe);
}

// ---------------------------------------------------------------------------
// USR2 → WINCH → QUIT

#[test]
fn usr2_winch_quit_under_load() {
    let b = Backend::start("b1");
    let mut lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let sockets = listening_socket_inodes(port);
    assert_eq!(sockets.len(), 1, "{sockets:?}");

    let load = Load::start(port);
    load.expect_progress(200, "before USR2");

    load.mark("USR2");
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    load.mark(&format!("new master {new} ready"));
    assert_ne!(new, old);
    assert_eq!(comm(new).as_deref(), Some("forklb-master"));
    assert_eq!(proc_stat(new).unwrap().ppid, old, "new master's parent");
    assert_eq!(
        read_pid_file(&lb.oldbin_path()),
        Some(old),
        ".oldbin must name the old master"
    );
    // Side by side: the old workers still run, the new master took the same
    // socket (inherited, not bound anew).
    assert_eq!(lb.worker_pids(), old_workers);
    assert_eq!(
        listening_socket_inodes(port),
        sockets,
        "a new socket appeared"
    );
    assert!(
        socket_inodes_of(new).contains(&sockets[0]),
        "the new master does not hold the inherited listening socket"
    );
    load.expect_progress(200, "old and new side by side");

    load.mark("WINCH old");
    assert!(kill(old, SIGWINCH));
    let alive = wait_all_exited(&old_workers, T10);
    assert!(
        alive.is_empty(),
        "old workers {alive:?} still alive 10 s after WINCH\n{}",
        lb.diagnostics()
    );
    load.mark("old workers gone");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(workers_of(old), Vec::<i32>::new(), "old workers respawned");
    assert!(forklb_alive(old), "the old master exited on WINCH");
    assert!(
        socket_inodes_of(old).contains(&sockets[0]),
        "the old master closed its listening socket on WINCH"
    );
    load.expect_progress(200, "after WINCH");

    load.mark("QUIT old");
    lb.signal(SIGQUIT);
    let status = lb.wait_exit(T10);
    assert!(
        status.is_some(),
        "old master still running 10 s after QUIT\n{}",
        lb.diagnostics()
    );
    assert_eq!(status.unwrap().code(), Some(0), "{status:?}");
    load.mark("old master exited");
    assert!(
        wait_until(Duration::from_secs(2), || !lb.oldbin_path().exists()),
        ".oldbin left behind"
    );
    assert_eq!(read_pid_file(lb.pid_file()), Some(new));
    assert!(forklb_alive(new));
    assert_eq!(workers_of(new).len(), 2);
    load.expect_progress(300, "new master alone");
    let report = load.stop();
    report.assert_no_failures("USR2, WINCH, QUIT", &lb.diagnostics());
    assert_serves(port, "b1");
    assert_eq!(listening_socket_inodes(port), sockets);
}

#[test]
fn slow_download_started_before_usr2_arrives_byte_exact() {
    const SIZE: usize = 4 << 20;
    let web = Backend::start("b1");
    // 64 pieces of 64 KiB, 45 ms apart: about 2.9 s.
    let big = Backend::start_with(
        "big",
        BackendOpts {
            stream_body: Some(SIZE),
            stream_pace: Some(Duration::from_millis(45)),
            ..Default::default()
        },
    );
    let yaml = format!(
        "workers: 2\n\
         log_level: info\n\
         shutdown_timeout: 20s\n\
         listeners:\n\
         \x20 - name: web\n\
         \x20   bind: [\"127.0.0.1:$PORT\"]\n\
         \x20   routes:\n\
         \x20     - path: /big/\n\
         \x20       upstream: big\n\
         \x20     - upstream: web\n\
         upstreams:\n\
         \x20 web:\n\
         \x20   servers: [{{addr: \"{}\"}}]\n\
         \x20 big:\n\
         \x20   servers: [{{addr: \"{}\"}}]\n",
        web.addr(),
        big.addr()
    );
    let mut lb = Forklb::start(&yaml);
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let load = Load::start(port);
    load.expect_progress(100, "before the download");

    // The download starts while only the old master's workers exist.
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let download = thread::spawn(move || {
        let started = Instant::now();
        let result = Conn::open(port).and_then(|mut c| {
            c.set_read_timeout(Duration::from_secs(15));
            c.get("/big/file")
        });
        done2.store(true, Ordering::SeqCst);
        (result, started.elapsed())
    });
    assert!(
        wait_until(T5, || big.request_count() == 1),
        "the download never reached its backend"
    );
    assert_eq!(lb.worker_pids(), old_workers);

    load.mark("USR2");
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    load.mark("WINCH old");
    assert!(kill(old, SIGWINCH));
    load.mark("QUIT old");
    lb.signal(SIGQUIT);
    let in_flight_at_quit = !done.load(Ordering::SeqCst);
    if in_flight_at_quit {
        // The old master waits for its draining worker.
        thread::sleep(Duration::from_millis(200));
        if !done.load(Ordering::SeqCst) {
            assert!(
                forklb_alive(old),
                "old master exited with a download in flight\n{}",
                lb.diagnostics()
            );
        }
    } else {
        eprintln!("note: the download ended before QUIT (slow new master start-up)");
    }

    let (result, took) = download.join().unwrap();
    let r = result.unwrap_or_else(|e| panic!("download failed: {e}\n{}", lb.diagnostics()));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE, "download length");
    if let Some(i) = r
        .body
        .iter()
        .enumerate()
        .position(|(i, &x)| x != pattern_byte(i))
    {
        panic!("download differs from the pattern at byte {i}");
    }
    eprintln!("download took {took:?}; in flight at QUIT: {in_flight_at_quit}");

    let status = lb.wait_exit(T10);
    assert!(
        status.is_some(),
        "old master still running 10 s after the download\n{}",
        lb.diagnostics()
    );
    assert_eq!(status.unwrap().code(), Some(0));
    load.mark("old master exited");
    assert_eq!(read_pid_file(lb.pid_file()), Some(new));
    load.expect_progress(200, "new master alone");
    let report = load.stop();
    report.assert_no_failures("USR2, WINCH, QUIT with a download", &lb.diagnostics());
}

// ---------------------------------------------------------------------------
// Rollback and failed upgrades

#[test]
fn rollback_hup_old_then_quit_new_under_load() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let load = Load::start(port);
    load.expect_progress(200, "before USR2");

    load.mark("USR2");
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    let new_workers = workers_of(new);
    load.mark("WINCH old");
    assert!(kill(old, SIGWINCH));
    assert!(wait_all_exited(&old_workers, T10).is_empty());
    load.expect_progress(200, "after WINCH");

    // Rollback: the old master restarts workers from its configuration ...
    load.mark("HUP old");
    lb.signal(SIGHUP);
    let restarted = wait_workers_of(old, 2, &lb);
    assert!(
        restarted.iter().all(|p| !old_workers.contains(p)),
        "{restarted:?} vs {old_workers:?}"
    );
    load.mark("old workers back");
    load.expect_progress(200, "old and new side by side again");

    // ... and the new master goes away.
    load.mark("QUIT new");
    assert!(kill(new, SIGQUIT));
    assert!(
        wait_until(T10, || !forklb_alive(new)),
        "new master still running 10 s after QUIT\n{}",
        lb.diagnostics()
    );
    load.mark("new master exited");
    wait_pid_file_back(&lb, old);
    assert!(wait_all_exited(&new_workers, T5).is_empty());
    assert_eq!(masters_under(old), Vec::<i32>::new());
    load.expect_progress(300, "old master alone");
    let report = load.stop();
    report.assert_no_failures("rollback", &lb.diagnostics());
    assert_eq!(workers_of(old), restarted);
    assert_serves(port, "b1");
}

#[test]
fn old_master_takes_pid_file_back_when_new_master_is_terminated() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    assert!(kill(new, SIGTERM));
    assert!(
        wait_until(T5, || !forklb_alive(new)),
        "new master survived TERM"
    );
    wait_pid_file_back(&lb, old);
    assert_eq!(lb.worker_pids(), old_workers, "old workers changed");
    assert_serves(lb.port(), "b1");
    assert_eq!(masters_under(old), Vec::<i32>::new());
}

#[test]
fn old_master_restarts_workers_when_new_master_dies_after_winch() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    assert!(kill(old, SIGWINCH));
    assert!(wait_all_exited(&old_workers, T10).is_empty());
    assert!(kill(new, SIGTERM));
    assert!(
        wait_until(T5, || !forklb_alive(new)),
        "new master survived TERM"
    );
    wait_pid_file_back(&lb, old);
    let restarted = wait_workers_of(old, 2, &lb);
    assert!(restarted.iter().all(|p| !old_workers.contains(p)));
    assert_serves(lb.port(), "b1");
}

#[test]
fn new_binary_that_cannot_start_is_rolled_back_under_load() {
    let b = Backend::start("b1");
    let bin_dir = TempDir::new("bin");
    let exe = copy_binary(bin_dir.path());
    let lb = Forklb::start_with(
        &proxy_config_for(2, &[&b]),
        &StartOpts {
            exe: Some(exe.clone()),
            ..Default::default()
        },
    );
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let marker = bin_dir.join("ran");
    install_failing_binary(&exe, &marker);

    let load = Load::start(port);
    load.expect_progress(200, "before USR2");
    load.mark("USR2");
    lb.signal(SIGUSR2);
    assert!(
        wait_until(T5, || marker.exists()),
        "USR2 did not run the binary on disk ({})\n{}",
        exe.display(),
        lb.diagnostics()
    );
    load.mark("new binary ran");
    wait_pid_file_back(&lb, old);
    load.expect_progress(300, "after the failed upgrade");
    let report = load.stop();
    report.assert_no_failures("USR2 with a failing new binary", &lb.diagnostics());

    assert_eq!(lb.worker_pids(), old_workers, "old workers changed");
    assert_eq!(masters_under(old), Vec::<i32>::new());
    let ran = fs::read_to_string(&marker).unwrap();
    let config = lb.config_path().display().to_string();
    assert!(
        ran.contains(&format!("args=-c {config}")),
        "the new binary got other arguments: {ran}"
    );
    assert!(
        ran.lines()
            .any(|l| l.starts_with("fds=") && l.len() > "fds=".len()),
        "FORKLB_FDS not set for the new binary: {ran}"
    );
    assert_serves(port, "b1");
}

#[test]
fn usr2_runs_the_binary_now_on_disk_with_the_same_arguments() {
    let b = Backend::start("b1");
    let bin_dir = TempDir::new("bin");
    let exe = copy_binary(bin_dir.path());
    let lb = Forklb::start_with(
        &proxy_config_for(1, &[&b]),
        &StartOpts {
            exe: Some(exe.clone()),
            ..Default::default()
        },
    );
    let old = lb.master_pid();
    // "Upgrade" the binary: a new file (new inode) at the same path.
    install(Path::new(env!("CARGO_BIN_EXE_forklb")), &exe);
    let new_ino = fs::metadata(&exe).unwrap().ino();
    let old_exe = fs::read_link(format!("/proc/{old}/exe")).unwrap();
    assert!(
        old_exe.to_string_lossy().ends_with("(deleted)"),
        "{old_exe:?}"
    );

    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 1);
    assert_eq!(
        fs::metadata(format!("/proc/{new}/exe")).unwrap().ino(),
        new_ino,
        "the new master does not run the binary now on disk"
    );
    let args = |pid: i32| -> Vec<Vec<u8>> {
        let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        raw.split(|&c| c == 0).skip(1).map(|a| a.to_vec()).collect()
    };
    assert_eq!(args(new), args(old), "arguments differ");
    assert_serves(lb.port(), "b1");
}

#[test]
fn second_usr2_during_an_upgrade_is_refused() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let old = lb.master_pid();
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    let log_before = lb.error_log_contents().len();

    let load = Load::start(lb.port());
    load.expect_progress(100, "before the second USR2");
    load.mark("USR2 old, USR2 new");
    lb.signal(SIGUSR2);
    assert!(kill(new, SIGUSR2));
    thread::sleep(Duration::from_millis(1000));
    load.expect_progress(100, "after the second USR2");
    let report = load.stop();
    report.assert_no_failures("a refused second USR2", &lb.diagnostics());

    assert_eq!(masters_under(old), vec![new], "masters under the old one");
    assert_eq!(masters_under(new), Vec::<i32>::new(), "a third master");
    assert_eq!(read_pid_file(lb.pid_file()), Some(new));
    assert_eq!(read_pid_file(&lb.oldbin_path()), Some(old));
    let log = lb.error_log_contents();
    let tail = &log[log_before.min(log.len())..];
    assert!(
        tail.lines().filter(|l| l.contains("USR2")).count() >= 2,
        "the refused USR2s were not logged:\n{tail}"
    );
    assert_eq!(workers_of(old).len(), 2);
    assert_eq!(workers_of(new).len(), 2);
}

#[test]
fn sd_notify_new_master_announces_mainpid() {
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let b = Backend::start("b1");
    let lb = Forklb::start_with(
        &proxy_config_for(2, &[&b]),
        &StartOpts {
            env: vec![("NOTIFY_SOCKET".into(), path.to_string_lossy().into_owned())],
            ..Default::default()
        },
    );
    let mut seen = Vec::new();
    let mut recv_until = |pred: &dyn Fn(&str) -> bool| -> bool {
        let deadline = Instant::now() + T10;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = pred(&m);
                seen.push(m);
                if hit {
                    return true;
                }
            }
        }
        false
    };
    let has = |m: &str, line: &str| m.lines().any(|l| l == line);
    assert!(recv_until(&|m| has(m, "READY=1")), "no READY=1 at start");
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    let want = format!("MAINPID={new}");
    let got = recv_until(&|m| has(m, &want) && has(m, "READY=1"));
    assert!(
        got,
        "no message with {want} and READY=1 from the new master; messages: {seen:?}"
    );
}

// ---------------------------------------------------------------------------
// forklb -s upgrade

/// Runs `forklb -s upgrade -c CONFIG` in a thread (it must exit within
/// `timeout`); meanwhile records every new master under the old one, so the
/// test cleans it up whatever happens.
fn run_s_upgrade(lb: &Forklb, timeout: Duration) -> RunOutput {
    let config = lb.config_path().to_string_lossy().into_owned();
    let h = thread::spawn(move || run_forklb(&["-s", "upgrade", "-c", &config], timeout));
    let deadline = Instant::now() + timeout + Duration::from_secs(5);
    while !h.is_finished() && Instant::now() < deadline {
        let _ = lb.new_master();
        if let Some(p) = read_pid_file(lb.pid_file()) {
            if p != lb.master_pid() && forklb_alive(p) {
                lb.track(p);
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = h.join().unwrap_or_else(|_| {
        panic!(
            "forklb -s upgrade did not exit within {timeout:?}\n{}",
            lb.diagnostics()
        )
    });
    eprintln!(
        "forklb -s upgrade: {:?}\n--- stdout ---\n{}--- stderr ---\n{}---",
        out.status, out.stdout, out.stderr
    );
    out
}

#[test]
fn s_upgrade_runs_the_whole_sequence_under_load() {
    let b = Backend::start("b1");
    let mut lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let sockets = listening_socket_inodes(port);
    let load = Load::start(port);
    load.expect_progress(200, "before -s upgrade");

    load.mark("forklb -s upgrade");
    let started = Instant::now();
    let out = run_s_upgrade(&lb, Duration::from_secs(20));
    load.mark("forklb -s upgrade exited");
    assert_eq!(
        out.code(),
        Some(0),
        "forklb -s upgrade failed:\n{}\n{}",
        out.combined(),
        lb.diagnostics()
    );
    let steps = out
        .combined()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert!(
        steps >= 3,
        "forklb -s upgrade should print its steps:\n{}",
        out.combined()
    );
    eprintln!("forklb -s upgrade took {:?}", started.elapsed());

    let status = lb.wait_exit(T10);
    assert!(
        status.is_some(),
        "old master still running after -s upgrade\n{}",
        lb.diagnostics()
    );
    assert_eq!(status.unwrap().code(), Some(0));
    let new = read_pid_file(lb.pid_file()).expect("no pid file after -s upgrade");
    lb.track(new);
    assert_ne!(new, old);
    assert!(forklb_alive(new));
    assert_eq!(comm(new).as_deref(), Some("forklb-master"));
    assert!(!lb.oldbin_path().exists(), ".oldbin left behind");
    assert!(wait_all_exited(&old_workers, T5).is_empty());
    assert_eq!(workers_of(new).len(), 2);
    load.expect_progress(300, "new master alone");
    let report = load.stop();
    report.assert_no_failures("forklb -s upgrade", &lb.diagnostics());
    assert_eq!(listening_socket_inodes(port), sockets);
    assert_serves(port, "b1");
}

#[test]
fn s_upgrade_with_an_invalid_config_exits_1_and_changes_nothing() {
    let b = Backend::start("b1");
    let yaml = proxy_config_for(2, &[&b]);
    let lb = Forklb::start(&yaml);
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    lb.write_config(&format!("no_such_key: 1\n{yaml}"));
    let out = run_s_upgrade(&lb, T5);
    assert_eq!(out.code(), Some(1), "{}", out.combined());
    assert!(
        out.stderr.contains("no_such_key"),
        "the error does not name the problem:\n{}",
        out.stderr
    );
    thread::sleep(Duration::from_millis(300));
    assert!(forklb_alive(old));
    assert_eq!(lb.pid_file_pid(), Some(old));
    assert!(!lb.oldbin_path().exists());
    assert_eq!(masters_under(old), Vec::<i32>::new());
    assert_eq!(lb.worker_pids(), old_workers);
    assert_serves(lb.port(), "b1");
}

#[test]
fn s_upgrade_rolls_back_when_the_new_binary_cannot_start() {
    let b = Backend::start("b1");
    let bin_dir = TempDir::new("bin");
    let exe = copy_binary(bin_dir.path());
    let lb = Forklb::start_with(
        &proxy_config_for(2, &[&b]),
        &StartOpts {
            exe: Some(exe.clone()),
            ..Default::default()
        },
    );
    let port = lb.port();
    let old = lb.master_pid();
    lb.wait_workers(2, T5);
    let marker = bin_dir.join("ran");
    install_failing_binary(&exe, &marker);

    let load = Load::start(port);
    load.expect_progress(200, "before -s upgrade");
    load.mark("forklb -s upgrade");
    let started = Instant::now();
    // The old master takes its pid file back within milliseconds of the new
    // binary's exit; -s upgrade should notice that, not wait out a long timeout.
    let out = run_s_upgrade(&lb, T10);
    load.mark("forklb -s upgrade exited");
    eprintln!("forklb -s upgrade took {:?}", started.elapsed());
    assert_ne!(
        out.code(),
        Some(0),
        "forklb -s upgrade reported success with a broken binary:\n{}",
        out.combined()
    );
    assert!(marker.exists(), "the new binary never ran");
    wait_pid_file_back(&lb, old);
    assert!(forklb_alive(old));
    assert_eq!(masters_under(old), Vec::<i32>::new());
    let workers = wait_workers_of(old, 2, &lb);
    load.expect_progress(300, "after the failed upgrade");
    let report = load.stop();
    report.assert_no_failures("forklb -s upgrade rolled back", &lb.diagnostics());
    assert_eq!(workers_of(old), workers);
    assert_serves(port, "b1");
}

// ---------------------------------------------------------------------------
// Pingora-style -u: socket handover over upgrade_sock

/// A second forklb, started with `-u -c FILE`; killed with its workers on drop.
struct Upgrader {
    child: Child,
    dir: PathBuf,
}

impl Upgrader {
    fn start(lb: &Forklb) -> Upgrader {
        let dir = lb.dir().to_owned();
        let child = forklb_command()
            .arg("-u")
            .arg("-c")
            .arg(lb.config_path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("upgrader.stdout.log")).unwrap())
            .stderr(fs::File::create(dir.join("upgrader.stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Upgrader { child, dir }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn output(&self) -> String {
        format!(
            "--- -u stdout ---\n{}--- -u stderr ---\n{}",
            fs::read_to_string(self.dir.join("upgrader.stdout.log")).unwrap_or_default(),
            fs::read_to_string(self.dir.join("upgrader.stderr.log")).unwrap_or_default()
        )
    }
}

impl Drop for Upgrader {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.output());
        }
        kill_tree(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[test]
fn u_takes_over_the_listening_sockets_on_quit_under_load() {
    let b = Backend::start("b1");
    let mut lb = Forklb::start_with(&proxy_config_for(2, &[&b]), &with_upgrade_sock());
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let sockets = listening_socket_inodes(port);
    let sock_path = lb.dir().join("upgrade.sock");
    let load = Load::start(port);
    load.expect_progress(200, "before -u");

    load.mark("forklb -u started");
    let mut up = Upgrader::start(&lb);
    let waiting = wait_until(T10, || {
        is_socket(&sock_path) || matches!(up.child.try_wait(), Ok(Some(_)))
    });
    let exited = up.child.try_wait().ok().flatten();
    assert!(
        waiting && exited.is_none(),
        "forklb -u is not waiting on {} (exited: {exited:?})\n{}\n{}",
        sock_path.display(),
        up.output(),
        lb.diagnostics()
    );
    load.expect_progress(200, "-u waiting");
    assert!(forklb_alive(old));
    assert_eq!(
        lb.pid_file_pid(),
        Some(old),
        "pid file changed before the handover"
    );

    load.mark("QUIT old");
    lb.signal(SIGQUIT);
    let new = up.pid();
    let mut state = String::new();
    let ok = wait_until(T10, || {
        state = format!(
            "pid file {:?}, -u workers {:?}",
            read_pid_file(lb.pid_file()),
            workers_of(new)
        );
        read_pid_file(lb.pid_file()) == Some(new) && workers_of(new).len() == 2
    });
    assert!(
        ok,
        "forklb -u did not take over: {state}\n{}\n{}",
        up.output(),
        lb.diagnostics()
    );
    load.mark("-u instance serving");
    let status = lb.wait_exit(T10);
    assert!(
        status.is_some(),
        "old master still running 10 s after QUIT\n{}",
        lb.diagnostics()
    );
    assert_eq!(status.unwrap().code(), Some(0));
    load.mark("old master exited");
    assert!(wait_all_exited(&old_workers, T5).is_empty());
    assert_eq!(comm(new).as_deref(), Some("forklb-master"));
    load.expect_progress(300, "-u instance alone");
    let report = load.stop();
    report.assert_no_failures(
        "-u handover",
        &format!("{}\n{}", up.output(), lb.diagnostics()),
    );
    assert_eq!(
        listening_socket_inodes(port),
        sockets,
        "the listening socket was not handed over (bound anew?)"
    );
    assert_serves(port, "b1");

    // The new instance shuts down normally.
    assert!(kill(new, SIGQUIT));
    let mut code = None;
    assert!(
        wait_until(T10, || {
            code = up.child.try_wait().ok().flatten();
            code.is_some()
        }),
        "-u instance still running 10 s after QUIT"
    );
    assert_eq!(code.unwrap().code(), Some(0));
    assert!(!lb.pid_file().exists(), "pid file left behind");
}

/// `upgrade_sock` in the test's folder (the Pingora-style tests).
fn with_upgrade_sock() -> StartOpts {
    StartOpts {
        upgrade_sock: true,
        ..Default::default()
    }
}

/// QUIT with nobody taking the sockets. `stale_socket`: `upgrade_sock` is set
/// (with no grace) and a socket file nobody listens on is there.
fn quit_is_plain_graceful_shutdown(stale_socket: bool) {
    let b = Backend::start("b1");
    let mut lb = if stale_socket {
        let yaml = format!("upgrade_grace: 0s\n{}", proxy_config_for(2, &[&b]));
        Forklb::start_with(&yaml, &with_upgrade_sock())
    } else {
        Forklb::start(&proxy_config_for(2, &[&b]))
    };
    let port = lb.port();
    let workers = lb.wait_workers(2, T5);
    if stale_socket {
        // A socket file nobody listens on any more.
        let l = UnixListener::bind(lb.dir().join("upgrade.sock")).unwrap();
        drop(l);
    }
    assert_serves(port, "b1");
    let started = Instant::now();
    lb.signal(SIGQUIT);
    let status = lb.wait_exit(T5);
    assert!(
        status.is_some(),
        "master still running 5 s after QUIT\n{}",
        lb.diagnostics()
    );
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "QUIT took {:?}",
        started.elapsed()
    );
    assert!(!lb.pid_file().exists(), "pid file left behind");
    assert!(port_refuses(port));
    assert!(wait_all_exited(&workers, T5).is_empty());
}

#[test]
fn quit_without_a_waiting_upgrader_is_a_plain_graceful_shutdown() {
    quit_is_plain_graceful_shutdown(false);
}

#[test]
fn quit_with_a_stale_upgrade_socket_is_a_plain_graceful_shutdown() {
    quit_is_plain_graceful_shutdown(true);
}

#[test]
fn term_to_the_old_master_leaves_the_new_one_serving() {
    let b = Backend::start("b1");
    let mut lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let old_workers = lb.wait_workers(2, T5);
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    let new_workers = workers_of(new);
    lb.signal(SIGTERM);
    let status = lb.wait_exit(T5);
    assert!(
        status.is_some(),
        "old master survived TERM\n{}",
        lb.diagnostics()
    );
    assert!(wait_all_exited(&old_workers, T5).is_empty());
    assert!(
        forklb_alive(new),
        "TERM to the old master stopped the new one"
    );
    assert_eq!(workers_of(new), new_workers);
    assert_eq!(read_pid_file(lb.pid_file()), Some(new));
    assert!(
        wait_until(Duration::from_secs(2), || !lb.oldbin_path().exists()),
        ".oldbin left behind"
    );
    assert_serves(lb.port(), "b1");
}

#[test]
fn s_upgrade_refuses_while_an_upgrade_is_in_progress() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let old = lb.master_pid();
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    let load = Load::start(lb.port());
    load.expect_progress(100, "before -s upgrade");
    // The pid file names the new master, and `.oldbin` the old one, which
    // still runs: a second upgrade must be refused, quickly.
    let out = run_s_upgrade(&lb, T10);
    assert_ne!(out.code(), Some(0), "{}", out.combined());
    load.expect_progress(100, "after -s upgrade");
    let report = load.stop();
    report.assert_no_failures("a refused -s upgrade", &lb.diagnostics());
    assert!(forklb_alive(old) && forklb_alive(new));
    assert_eq!(masters_under(old), vec![new]);
    assert_eq!(masters_under(new), Vec::<i32>::new(), "a third master");
    assert_eq!(read_pid_file(lb.pid_file()), Some(new));
    assert_eq!(read_pid_file(&lb.oldbin_path()), Some(old));
    assert_eq!(workers_of(old).len(), 2);
    assert_eq!(workers_of(new).len(), 2);
}
