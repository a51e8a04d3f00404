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
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::notify::NotifySocket;
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

/// Backend `b1` behind a forklb of two workers: the backend, the instance,
/// its master and its workers.
fn start_two_workers() -> (Backend, Forklb, i32, Vec<i32>) {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    (b, lb, old, old_workers)
}

/// Backend `b1` behind a forklb of two workers that was sent USR2: the
/// backend, the instance, its old master and the new master (with its two
/// workers running).
fn start_mid_upgrade() -> (Backend, Forklb, i32, i32) {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let old = lb.master_pid();
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    (b, lb, old, new)
}

/// forklb started on `yaml` from a copy of its binary in a fresh folder
/// ([`copy_binary`]), so that the test can replace the binary on disk.
fn start_from_copy(yaml: &str) -> (TempDir, PathBuf, Forklb) {
    let bin_dir = TempDir::new("bin");
    let exe = copy_binary(bin_dir.path());
    let lb = Forklb::start_with(
        yaml,
        &StartOpts {
            exe: Some(exe.clone()),
            ..Default::default()
        },
    );
    (bin_dir, exe, lb)
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
    let (_b, mut lb, old, old_workers) = start_two_workers();
    let port = lb.port();
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
    lb.expect_exit_0(T10, "old master still running 10 s after QUIT");
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
    let yaml = side_route_config(2, &web, "big", &big)
        .shutdown_timeout("20s")
        .build();
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

    lb.expect_exit_0(T10, "old master still running 10 s after the download");
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
    let (_b, lb, old, old_workers) = start_two_workers();
    let port = lb.port();
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
    let (_b, lb, old, old_workers) = start_two_workers();
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
    let (_b, lb, old, old_workers) = start_two_workers();
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
    let (bin_dir, exe, lb) = start_from_copy(&proxy_config_for(2, &[&b]));
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
    let (_bin_dir, exe, lb) = start_from_copy(&proxy_config_for(1, &[&b]));
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
    let (_b, lb, old, new) = start_mid_upgrade();
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

/// The notify protocol of a binary upgrade (src/master/notify.rs), with a
/// socket standing in for systemd: the new master stays silent while its
/// old master (systemd's main process) lives, nobody says STOPPING=1 while
/// a master goes on serving, and the new master claims MAINPID once the old
/// one has exited. (The real systemd is driven in tests/systemd_unit.rs.)
#[test]
fn sd_notify_new_master_announces_mainpid() {
    let mut sd = NotifySocket::new();
    let b = Backend::start("b1");
    let mut lb = Forklb::start_with(&proxy_config_for(2, &[&b]), &sd.opts());
    sd.expect_lines(&["READY=1"], T10);
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    let during = sd.drain(Duration::from_millis(700));
    assert!(
        during.is_empty(),
        "the new master spoke for the service while the old one is its main process: {during:?}"
    );
    lb.signal(SIGWINCH);
    lb.signal(SIGQUIT);
    assert!(lb.wait_exit(T10).is_some(), "{}", lb.diagnostics());
    let want = format!("MAINPID={new}");
    sd.expect_lines(&[&want, "READY=1"], T5);
    assert!(!sd.said("STOPPING=1"), "{:?}", sd.seen);
    assert_serves(lb.port(), "b1");

    // The last master stopping is the service stopping.
    assert!(kill(new, SIGQUIT));
    sd.expect_lines(&["STOPPING=1"], T5);
    assert!(wait_all_exited(&[new], T10).is_empty());
}

/// Rollback: the new master quits without STOPPING=1, the old master takes
/// the pid file back and says MAINPID=<itself>.
#[test]
fn sd_notify_rollback_keeps_the_old_master_main() {
    let mut sd = NotifySocket::new();
    let b = Backend::start("b1");
    let lb = Forklb::start_with(&proxy_config_for(2, &[&b]), &sd.opts());
    let old = lb.master_pid();
    sd.expect_lines(&["READY=1"], T10);
    lb.signal(SIGUSR2);
    let new = wait_new_master(&lb, 2);
    lb.signal(SIGWINCH);
    assert!(wait_until(T10, || workers_of(old).is_empty()));
    lb.signal(SIGHUP);
    wait_workers_of(old, 2, &lb);
    assert!(kill(new, SIGQUIT));
    wait_pid_file_back(&lb, old);
    let want = format!("MAINPID={old}");
    sd.expect_lines(&[&want], T5);
    sd.drain(Duration::from_millis(300));
    assert!(
        !sd.said("STOPPING=1") && !sd.said("RELOADING=1"),
        "{:?}",
        sd.seen
    );
    assert_serves(lb.port(), "b1");
    lb.signal(SIGQUIT);
    sd.expect_lines(&["STOPPING=1"], T5);
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
    let (_b, mut lb, old, old_workers) = start_two_workers();
    let port = lb.port();
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

    lb.expect_exit_0(T10, "old master still running after -s upgrade");
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
    let (bin_dir, exe, lb) = start_from_copy(&proxy_config_for(2, &[&b]));
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

/// Waits until the `-u` instance `new` has written the pid file and serves
/// with 2 workers.
fn wait_u_serving(lb: &Forklb, up: &Upgrader, new: i32) {
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
    wait_u_serving(&lb, &up, new);
    load.mark("-u instance serving");
    lb.expect_exit_0(T10, "old master still running 10 s after QUIT");
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
    lb.expect_exit_0(T5, "master still running 5 s after QUIT");
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
    let (_b, lb, old, new) = start_mid_upgrade();
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

// ---------------------------------------------------------------------------
// Pingora's order: QUIT the old instance first, then start `forklb -u`

/// Pingora's quick start upgrades with `kill -QUIT old && new -u`: with
/// `upgrade_sock` set, the old instance keeps accepting after QUIT and keeps
/// offering its sockets until the new one takes them; nothing is refused.
#[test]
fn pingora_order_quit_then_u_drops_nothing_under_load() {
    let b = Backend::start("b1");
    let mut lb = Forklb::start_with(&proxy_config_for(2, &[&b]), &with_upgrade_sock());
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let sockets = listening_socket_inodes(port);
    let load = Load::start(port);
    load.expect_progress(200, "before QUIT");

    load.mark("QUIT old");
    lb.signal(SIGQUIT);
    // Make the order certain, and longer than a shell would take.
    thread::sleep(Duration::from_millis(500));
    load.expect_progress(100, "the old instance after QUIT, nobody waiting yet");
    assert!(forklb_alive(old));
    assert_eq!(workers_of(old), old_workers, "old workers stopped early");

    load.mark("forklb -u started");
    let mut up = Upgrader::start(&lb);
    let new = up.pid();
    wait_u_serving(&lb, &up, new);
    lb.expect_exit_0(T10, "old master still running");
    assert!(wait_all_exited(&old_workers, T5).is_empty());
    load.expect_progress(300, "-u instance alone");
    let report = load.stop();
    report.assert_no_failures(
        "QUIT, then -u",
        &format!("{}\n{}", up.output(), lb.diagnostics()),
    );
    assert_eq!(listening_socket_inodes(port), sockets, "sockets bound anew");
    assert!(kill(new, SIGQUIT));
    assert!(
        wait_until(T10, || matches!(up.child.try_wait(), Ok(Some(_)))),
        "-u instance still running 10 s after QUIT"
    );
}

/// With `upgrade_sock` set and nobody coming, QUIT serves on for
/// `upgrade_grace`, then is a graceful shutdown.
#[test]
fn quit_with_upgrade_sock_serves_for_the_grace_then_stops() {
    let b = Backend::start("b1");
    let yaml = format!("upgrade_grace: 2s\n{}", proxy_config_for(2, &[&b]));
    let mut lb = Forklb::start_with(&yaml, &with_upgrade_sock());
    let port = lb.port();
    let workers = lb.wait_workers(2, T5);
    let started = Instant::now();
    lb.signal(SIGQUIT);
    // New connections are still served well inside the grace.
    while started.elapsed() < Duration::from_millis(1200) {
        assert_serves(port, "b1");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(forklb_alive(lb.master_pid()));
    let status = lb.wait_exit(T10);
    let took = started.elapsed();
    assert!(status.is_some(), "still running\n{}", lb.diagnostics());
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "QUIT took {took:?} with a 2 s grace"
    );
    assert!(port_refuses(port));
    assert!(wait_all_exited(&workers, T5).is_empty());
    assert!(
        lb.error_log_contents()
            .contains("no instance took the listening sockets"),
        "{}",
        lb.error_log_contents()
    );
}

/// A configuration for a lone `-u` instance: nobody will hand it sockets.
fn lonely_upgrader_config(dir: &TempDir, extra: &str) -> (PathBuf, PathBuf, u16) {
    let port = free_port();
    let sock = dir.join("upgrade.sock");
    let conf = dir.join("forklb.yaml");
    fs::write(
        &conf,
        format!(
            "pid_file: \"{}\"\nerror_log: \"{}\"\nupgrade_sock: \"{}\"\n{extra}{}",
            dir.join("forklb.pid").display(),
            dir.join("error.log").display(),
            sock.display(),
            proxy_config(1, &[("b1", refused_addr(), 1)], &[]).replace("$PORT", &port.to_string())
        ),
    )
    .unwrap();
    (conf, sock, port)
}

/// `-u` with nobody to take sockets from says what it waits for and gives
/// up after `upgrade_timeout` with exit 2.
#[test]
fn u_with_nobody_to_take_from_gives_up() {
    let dir = TempDir::new("lonely-u");
    let (conf, sock, port) = lonely_upgrader_config(&dir, "upgrade_timeout: 1s\n");
    let started = Instant::now();
    let out = run_forklb(&["-u", "-c", conf.to_str().unwrap()], T10);
    let took = started.elapsed();
    assert_eq!(out.code(), Some(2), "{}", out.combined());
    let err = out.combined();
    assert!(
        err.contains(&format!("waiting up to 1 s on {}", sock.display())) && err.contains("QUIT"),
        "does not say what it waits for:\n{err}"
    );
    assert!(
        err.contains("no running instance handed its listening sockets over"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
    assert!(!sock.exists(), "socket file left behind");
    assert!(!dir.join("forklb.pid").exists());
    assert!(port_refuses(port));
}

/// `forklb -d -u` in Pingora's order detaches once it holds the sockets:
/// the shell gets its prompt back and the daemon serves.
#[test]
fn d_u_in_pingora_order_detaches_and_serves() {
    let b = Backend::start("b1");
    let mut lb = Forklb::start_with(&proxy_config_for(2, &[&b]), &with_upgrade_sock());
    let port = lb.port();
    let load = Load::start(port);
    load.expect_progress(100, "before QUIT");
    lb.signal(SIGQUIT);
    let fg = run_forklb(&["-d", "-u", "-c", lb.config_path().to_str().unwrap()], T10);
    assert_eq!(fg.code(), Some(0), "{}", fg.combined());
    let mut daemon = None;
    assert!(
        wait_until(T10, || {
            daemon = read_pid_file(lb.pid_file()).filter(|&p| p != lb.master_pid());
            daemon.is_some_and(|p| workers_of(p).len() == 2)
        }),
        "no daemon serving\n{}",
        lb.diagnostics()
    );
    let daemon = daemon.unwrap();
    lb.track(daemon);
    assert_eq!(comm(daemon).as_deref(), Some("forklb-master"));
    // SAFETY: getsid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::getsid(daemon) }, daemon, "not detached");
    assert!(lb.wait_exit(T10).is_some(), "{}", lb.diagnostics());
    load.expect_progress(200, "daemon alone");
    // Started with -u, it still upgrades by USR2: its successor takes the
    // sockets from FORKLB_FDS, not by waiting on upgrade_sock.
    let conf = lb.config_path().to_str().unwrap().to_owned();
    let up = run_forklb(&["-s", "upgrade", "-c", &conf], Duration::from_secs(30));
    assert_eq!(
        up.code(),
        Some(0),
        "{}\n{}",
        up.combined(),
        lb.diagnostics()
    );
    let next = read_pid_file(lb.pid_file()).expect("pid file after -s upgrade");
    assert_ne!(next, daemon, "{}", up.combined());
    lb.track(next);
    assert!(
        wait_all_exited(&[daemon], T10).is_empty(),
        "old master left"
    );
    load.expect_progress(300, "after -s upgrade");
    let report = load.stop();
    report.assert_no_failures("QUIT, then -d -u, then -s upgrade", &lb.diagnostics());
    assert!(kill(next, SIGQUIT));
    assert!(wait_all_exited(&[next], T10).is_empty());
}

// ---------------------------------------------------------------------------
// forklb -s upgrade with a new binary that never becomes ready

/// Replaces `exe` with a script that records its pid in `marker` and then
/// hangs, never serving; `ignore_quit`: it also ignores QUIT.
fn install_hanging_binary(exe: &Path, marker: &Path, ignore_quit: bool) {
    let text = exe.with_extension("txt");
    let trap = if ignore_quit { "trap '' QUIT\n" } else { "" };
    fs::write(
        &text,
        format!(
            "#!/bin/sh\n{trap}echo $$ > '{m}.tmp'\nmv '{m}.tmp' '{m}'\n\
             while :; do sleep 0.1; done\n",
            m = marker.display()
        ),
    )
    .unwrap();
    install(&text, exe);
}

fn s_upgrade_with_a_hanging_binary(ignore_quit: bool) {
    let b = Backend::start("b1");
    let yaml = format!("upgrade_timeout: 2s\n{}", proxy_config_for(2, &[&b]));
    let (bin_dir, exe, lb) = start_from_copy(&yaml);
    let port = lb.port();
    let old = lb.master_pid();
    let old_workers = lb.wait_workers(2, T5);
    let marker = bin_dir.join("ran");
    install_hanging_binary(&exe, &marker, ignore_quit);

    let load = Load::start(port);
    load.expect_progress(200, "before -s upgrade");
    let started = Instant::now();
    let out = run_s_upgrade(&lb, Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(
        out.code(),
        Some(2),
        "{}\n{}",
        out.combined(),
        lb.diagnostics()
    );
    let stray: i32 = fs::read_to_string(&marker)
        .expect("the new binary never ran")
        .trim()
        .parse()
        .unwrap();
    assert!(
        out.stdout
            .contains(&format!("sending QUIT to the new process {stray}")),
        "{}",
        out.combined()
    );
    if ignore_quit {
        assert!(out.stdout.contains("sending KILL"), "{}", out.combined());
        assert!(took >= Duration::from_secs(7), "KILL came after {took:?}");
    }
    assert!(took < Duration::from_secs(20), "-s upgrade took {took:?}");
    // Back in place the moment -s upgrade returns.
    assert_eq!(read_pid_file(lb.pid_file()), Some(old));
    assert!(!lb.oldbin_path().exists(), ".oldbin left behind");
    assert!(
        !forklb_alive(stray) && comm(stray).is_none(),
        "stray {stray} left"
    );
    assert_eq!(workers_of(old), old_workers);

    // And the master takes orders again at once.
    let conf = lb.config_path().to_str().unwrap().to_owned();
    let reload = run_forklb(&["-s", "reload", "-c", &conf], T5);
    assert_eq!(reload.code(), Some(0), "{}", reload.combined());
    let mut now = Vec::new();
    assert!(
        wait_until(T10, || {
            now = workers_of(old);
            now.len() == 2 && now.iter().all(|p| !old_workers.contains(p))
        }),
        "no new generation after -s reload: {now:?}\n{}",
        lb.diagnostics()
    );
    load.expect_progress(200, "after the reload");
    let report = load.stop();
    report.assert_no_failures("-s upgrade with a hanging binary", &lb.diagnostics());
}

#[test]
fn s_upgrade_stops_a_new_binary_that_hangs() {
    s_upgrade_with_a_hanging_binary(false);
}

#[test]
fn s_upgrade_kills_a_new_binary_that_hangs_and_ignores_quit() {
    s_upgrade_with_a_hanging_binary(true);
}

/// QUIT to the old master before its new one (USR2) serves is held: the
/// old master serves on meanwhile, and when the new binary never comes to
/// serve (here it hangs), the QUIT is given up rather than leave nobody
/// serving. A second QUIT stops it.
#[test]
fn quit_before_the_new_master_serves_is_held_and_given_up_if_it_never_does() {
    let b = Backend::start("b1");
    let yaml = format!("upgrade_timeout: 2s\n{}", proxy_config_for(2, &[&b]));
    let (bin_dir, exe, mut lb) = start_from_copy(&yaml);
    let port = lb.port();
    let old = lb.master_pid();
    lb.wait_workers(2, T5);
    let marker = bin_dir.join("ran");
    install_hanging_binary(&exe, &marker, false);

    let load = Load::start(port);
    load.expect_progress(100, "before USR2");
    assert!(kill(old, SIGUSR2));
    assert!(
        wait_until(T5, || marker.exists()),
        "the new binary never ran"
    );
    let stray: i32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    lb.signal(SIGQUIT);
    assert!(
        lb.wait_log("received QUIT while the new master is not serving yet", T5),
        "{}",
        lb.diagnostics()
    );
    load.expect_progress(200, "QUIT held");
    assert!(
        lb.wait_log("QUIT not done", T10),
        "the held QUIT was not given up\n{}",
        lb.diagnostics()
    );
    load.expect_progress(300, "QUIT given up");
    assert!(forklb_alive(old), "the old master quit");
    let report = load.stop();
    report.assert_no_failures("QUIT before the new master serves", &lb.diagnostics());
    // The stray new binary is the operator's to stop; then QUIT again.
    assert!(kill(stray, SIGKILL));
    lb.signal(SIGQUIT);
    lb.expect_exit_0(T10, "a second QUIT");
}

/// `forklb -s reload` while an upgrade is in progress (both masters live)
/// is refused: it would HUP the new master alone, and systemd, which reads
/// the pid file after a reload, would take the new master (the old one's
/// child) for the main process and cut requests at the next stop. Once the
/// upgrade is done, it reloads as usual.
#[test]
fn s_reload_is_refused_while_an_upgrade_is_in_progress() {
    let (_b, mut lb, old, new) = start_mid_upgrade();
    let conf = lb.config_path().to_str().expect("path").to_owned();
    let out = run_forklb(&["-s", "reload", "-c", &conf], T10);
    assert_eq!(out.code(), Some(2), "{}", out.combined());
    assert!(
        out.combined().contains("an upgrade is in progress"),
        "{}",
        out.combined()
    );
    // Nothing was sent: the new master's workers are the same.
    let new_workers = workers_of(new);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(workers_of(new), new_workers);
    // Done (the old master quits): a reload goes to the new master.
    assert!(kill(old, SIGWINCH) && kill(old, SIGQUIT));
    // The old master is this test's child: reaped here.
    assert!(lb.wait_exit(T10).is_some(), "{}", lb.diagnostics());
    let out = run_forklb(&["-s", "reload", "-c", &conf], T10);
    assert_eq!(out.code(), Some(0), "{}", out.combined());
    assert!(
        wait_until(T10, || workers_of(new)
            .iter()
            .all(|w| !new_workers.contains(w))),
        "no new generation after the reload\n{}",
        lb.diagnostics()
    );
}
