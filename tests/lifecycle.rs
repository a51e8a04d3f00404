//! Process lifecycle with real processes, real signals and real HTTP: HUP
//! reload (new worker generation, kept/added/removed listening sockets,
//! invalid configuration), a killed worker under load, USR1 log reopening,
//! graceful QUIT, daemon mode, privilege drop and sd_notify.
//!
//! Operations that must not lose requests run under continuous load from
//! several client threads ([`Load`]) and assert zero failed requests.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::notify::{has_line, NotifySocket};
use support::*;

/// Two workers; `/v` answered by forklb with `body`, everything else proxied
/// to `b`; listening on `binds` (`$PORT` allowed).
fn route_config(b: &Backend, body: &str, binds: &[&str]) -> String {
    ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .shutdown_timeout("10s")
        .listener("web", binds)
        .route(Route::path("/v").ret(200, body))
        .route(Route::to("web"))
        .upstream("web", [Srv::new("b1", b.addr())])
        .build()
}

/// Two workers, an access log at `access` in `format`; `/dead/` to `dead`
/// (nothing listens there; no retries), everything else to `b`.
fn dead_route_config(b: &Backend, dead: SocketAddr, access: &Path, format: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .shutdown_timeout("10s")
        .access_log(access, format)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/dead/").upstream("dead"))
        .route(Route::to("web"))
        .upstream("web", [Srv::addr(b.addr())])
        .upstream("dead", [Srv::addr(dead)])
        .upstream_opt("retries: 0")
}

/// Load check for [`route_config`]: `/v` is "v1" or "v2", the rest "b1".
fn v_check() -> Check {
    Arc::new(|path: &str, r: &Response| {
        let body = r.body_str();
        let good = r.status == 200
            && match path {
                "/v" => body == "v1" || body == "v2",
                _ => body == "b1",
            };
        if good {
            Ok(())
        } else {
            Err(format!("status {} body {body:?}", r.status))
        }
    })
}

fn v_load(port: u16) -> Load {
    Load::start_with(
        port,
        LoadOpts {
            paths: vec!["/".into(), "/v".into()],
            check: v_check(),
            ..Default::default()
        },
    )
}

/// Waits until the master's workers are `n` pids, none of them in `old`.
fn wait_new_generation(lb: &Forklb, old: &[i32], n: usize) -> Vec<i32> {
    let mut now = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        now = lb.worker_pids();
        now.len() == n && now.iter().all(|p| !old.contains(p))
    });
    assert!(
        ok,
        "no new generation of {n} workers (old {old:?}, now {now:?})\n{}",
        lb.diagnostics()
    );
    now
}

#[test]
fn hup_reload_starts_a_new_generation_without_failed_requests() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&route_config(&b, "v1", &["127.0.0.1:$PORT"]));
    let port = lb.port();
    let before = lb.wait_workers(2, Duration::from_secs(5));
    let sockets = listening_socket_inodes(port);
    assert_eq!(http_get(port, "/v").body_str(), "v1");

    let load = v_load(port);
    load.expect_progress(200, "before HUP");
    lb.write_config(&route_config(&b, "v2", &["127.0.0.1:$PORT"]));
    load.mark("HUP");
    lb.signal(SIGHUP);

    let after = wait_new_generation(&lb, &before, 2);
    load.mark("new generation running");
    let alive = wait_all_exited(&before, Duration::from_secs(10));
    assert!(
        alive.is_empty(),
        "old workers {alive:?} still alive 10 s after HUP\n{}",
        lb.diagnostics()
    );
    load.mark("old generation gone");
    load.expect_progress(400, "after HUP");
    let report = load.stop();
    report.assert_no_failures("HUP reload", &lb.diagnostics());

    // The new configuration is the one that serves now, on the same socket.
    for i in 0..6 {
        let r = http_get(port, "/v");
        assert_eq!((r.status, r.body_str()), (200, "v2".to_owned()), "GET {i}");
    }
    let mut c = Conn::open(port).unwrap();
    for _ in 0..3 {
        assert_eq!(c.get("/v").unwrap().body_str(), "v2");
    }
    assert_eq!(lb.worker_pids(), after, "workers changed again");
    assert_eq!(
        listening_socket_inodes(port),
        sockets,
        "the listening socket was replaced"
    );
    assert_eq!(lb.pid_file_pid(), Some(lb.master_pid()));
    assert_eq!(comm(lb.master_pid()).as_deref(), Some("forklb-master"));
}

#[test]
fn hup_with_invalid_config_keeps_serving_the_old_one() {
    let b = Backend::start("b1");
    let good = route_config(&b, "v1", &["127.0.0.1:$PORT"]);
    let lb = Forklb::start(&good);
    let port = lb.port();
    let before = lb.wait_workers(2, Duration::from_secs(5));

    let load = v_load(port);
    load.expect_progress(100, "before HUP");
    lb.write_config(&format!(
        "no_such_key: 1\n{}",
        route_config(&b, "v2", &["127.0.0.1:$PORT"])
    ));
    load.mark("HUP (invalid config)");
    lb.signal(SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || lb
            .error_log_contents()
            .contains("reload failed")),
        "no \"reload failed\" in the error log after HUP with an invalid config\n{}",
        lb.diagnostics()
    );
    load.expect_progress(200, "after the failed reload");
    thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    report.assert_no_failures("HUP with an invalid config", &lb.diagnostics());

    assert_eq!(
        lb.worker_pids(),
        before,
        "workers changed on a failed reload"
    );
    for _ in 0..4 {
        assert_eq!(http_get(port, "/v").body_str(), "v1");
    }
    assert!(forklb_alive(lb.master_pid()));
    assert_eq!(lb.pid_file_pid(), Some(lb.master_pid()));
    let log = lb.error_log_contents();
    let line = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(
        line.contains("no_such_key"),
        "the reload error does not name the bad key: {line}"
    );
}

#[test]
fn hup_adds_and_removes_a_listening_address() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&route_config(&b, "v1", &["127.0.0.1:$PORT"]));
    let port = lb.port();
    let sockets = listening_socket_inodes(port);
    assert_eq!(sockets.len(), 1, "listening sockets on {port}: {sockets:?}");
    let second = free_port();
    assert!(port_refuses(second));

    let load = v_load(port);
    load.expect_progress(100, "before HUP");

    // Add 127.0.0.1:second.
    let addr2 = format!("127.0.0.1:{second}");
    lb.write_config(&route_config(&b, "v1", &["127.0.0.1:$PORT", &addr2]));
    load.mark("HUP (address added)");
    lb.signal(SIGHUP);
    let mut last = None;
    let served = wait_until(Duration::from_secs(5), || {
        last = Some(try_http_get(second, "/v").map(|r| (r.status, r.body_str())));
        matches!(&last, Some(Ok((200, body))) if body == "v1")
    });
    assert!(
        served,
        "the added address {addr2} does not serve: {last:?}\n{}",
        lb.diagnostics()
    );
    load.expect_progress(100, "after adding an address");

    // Remove it again.
    lb.write_config(&route_config(&b, "v1", &["127.0.0.1:$PORT"]));
    load.mark("HUP (address removed)");
    lb.signal(SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || port_refuses(second)),
        "the removed address {addr2} still accepts connections\n{}",
        lb.diagnostics()
    );
    load.expect_progress(100, "after removing an address");
    let report = load.stop();
    report.assert_no_failures("HUPs adding and removing an address", &lb.diagnostics());

    assert_eq!(
        listening_socket_inodes(port),
        sockets,
        "the unchanged address got a new socket"
    );
    assert_eq!(http_get(port, "/").body_str(), "b1");
}

#[test]
fn killed_worker_is_replaced_under_load() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let before = lb.wait_workers(2, Duration::from_secs(5));
    let load = Load::start(lb.port());
    load.expect_progress(100, "before the kill");

    let victim = before[0];
    load.mark(&format!("SIGKILL worker {victim}"));
    assert!(kill(victim, SIGKILL));
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            now = lb.worker_pids();
            now.len() == 2 && !now.contains(&victim)
        }),
        "worker {victim} not replaced: workers now {now:?}\n{}",
        lb.diagnostics()
    );
    assert!(now.contains(&before[1]), "the other worker must survive");
    load.mark("replacement running");
    // Requests that were in flight on the victim fail at once; let the
    // client threads notice before drawing the line.
    thread::sleep(Duration::from_millis(300));
    let failed_by_kill = load.failed();
    load.mark("line drawn");
    load.expect_progress(300, "after the replacement");
    thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!(
        "requests lost with the killed worker: {failed_by_kill}; {}",
        report.summary()
    );
    assert_eq!(
        report.failed,
        failed_by_kill,
        "requests failed after the worker was replaced\n{}\n{}",
        report.details(),
        lb.diagnostics()
    );
    for i in 0..10 {
        let r = http_get(lb.port(), "/");
        assert_eq!((r.status, r.body_str()), (200, "b1".to_owned()), "GET {i}");
    }
    assert_eq!(lb.pid_file_pid(), Some(lb.master_pid()));
}

#[test]
fn usr1_reopens_error_and_access_logs() {
    let b = Backend::start("b1");
    let dead = refused_addr();
    let logs = TempDir::new("usr1");
    let access = logs.join("access.log");
    let yaml = dead_route_config(&b, dead, &access, "combined").build();
    let lb = Forklb::start(&yaml);
    let port = lb.port();
    let error_log = lb.error_log_path().to_owned();
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();

    assert_eq!(http_get(port, "/before-rotation").status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || read(&access)
            .contains("/before-rotation")),
        "access log not written before the rotation\n{}",
        lb.diagnostics()
    );
    assert!(error_log.exists());

    // logrotate: move the files away, then USR1.
    let access_old = logs.join("access.log.1");
    let error_old = lb.dir().join("error.log.1");
    fs::rename(&access, &access_old).unwrap();
    fs::rename(&error_log, &error_old).unwrap();
    lb.signal(SIGUSR1);

    assert!(
        wait_until(Duration::from_secs(3), || error_log.exists()),
        "the error log was not re-created after USR1\n--- old error log ---\n{}",
        read(&error_old)
    );
    assert!(
        wait_until(Duration::from_secs(3), || access.exists()),
        "the access log was not re-created after USR1\n--- error log ---\n{}{}",
        read(&error_old),
        read(&error_log)
    );

    // New lines go to the new files, from the workers too: a proxied request
    // (access log) and a refused upstream (logged by the worker, 502).
    let mut n = 0;
    let dead_text = dead.to_string();
    let both = wait_until(Duration::from_secs(6), || {
        n += 1;
        let _ = try_http_get(port, &format!("/after-rotation-{n}"));
        if let Ok(r) = try_http_get(port, "/dead/x") {
            assert_eq!(r.status, 502, "{r:?}");
        }
        thread::sleep(Duration::from_millis(100));
        read(&access).contains("/after-rotation-") && read(&error_log).contains(&dead_text)
    });
    assert!(
        both,
        "after USR1, new lines did not reach the new files\n--- access.log ---\n{}\
         --- access.log.1 ---\n{}--- error.log ---\n{}--- error.log.1 ---\n{}",
        read(&access),
        read(&access_old),
        read(&error_log),
        read(&error_old)
    );
    assert!(read(&access_old).contains("/before-rotation"));
    assert!(
        !read(&access).contains("/before-rotation"),
        "old lines in the new access log"
    );
    let all_errors = format!("{}{}", read(&error_old), read(&error_log));
    assert!(
        all_errors.to_lowercase().contains("reopening logs"),
        "the master did not log the reopening\n{all_errors}"
    );
    assert_eq!(lb.worker_pids().len(), 2);
}

#[test]
fn quit_finishes_in_flight_request_then_stops_listening() {
    let b = Backend::start("b1");
    let slow = slow_backend(Duration::from_millis(1500));
    let yaml = slow_config(2, &b, &slow);
    let mut lb = Forklb::start(&yaml);
    let port = lb.port();
    let master = lb.master_pid();
    let workers = lb.wait_workers(2, Duration::from_secs(5));
    assert_eq!(http_get(port, "/").status, 200);

    let in_flight = thread::spawn(move || try_http_get(port, "/slow/x"));
    assert!(
        wait_until(Duration::from_secs(3), || slow.request_count() == 1),
        "the slow request never reached the backend"
    );
    lb.signal(SIGQUIT);

    // Listening stops at once, while the request is still in flight.
    assert!(
        wait_until(Duration::from_secs(1), || port_refuses(port)),
        "port {port} still accepts connections 1 s after QUIT\n{}",
        lb.diagnostics()
    );
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before its backend answered"
    );
    assert!(
        forklb_alive(master),
        "master exited before the request ended"
    );

    let r = in_flight.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "in-flight request failed after QUIT: {e}\n{}",
            lb.diagnostics()
        )
    });
    assert_eq!((r.status, r.body_str()), (200, "slow".to_owned()), "{r:?}");
    lb.expect_exit_0(
        Duration::from_secs(5),
        "master still running 5 s after the last request",
    );
    assert!(!lb.pid_file().exists(), "pid file left behind");
    assert!(port_refuses(port), "port {port} accepts after exit");
    assert!(
        wait_all_exited(&workers, Duration::from_secs(2)).is_empty(),
        "workers outlived the master"
    );
}

// ---------------------------------------------------------------------------
// Daemon mode

/// A forklb started with `-d` (or `daemon: true`): the foreground command
/// must exit at once, the daemon is found through its pid file. Drop kills
/// the daemon and its workers whatever happened.
struct Daemon {
    dir: TempDir,
    config: PathBuf,
    pid_file: PathBuf,
    port: u16,
    pid: Option<i32>,
}

impl Daemon {
    fn new(yaml: &str) -> Daemon {
        let dir = TempDir::new("daemon");
        let port = free_port();
        let pid_file = dir.join("forklb.pid");
        let config = dir.join("forklb.yaml");
        fs::write(
            &config,
            format!(
                "pid_file: \"{}\"\nerror_log: \"{}\"\n{}",
                pid_file.display(),
                dir.join("error.log").display(),
                yaml.replace("$PORT", &port.to_string())
            ),
        )
        .unwrap();
        Daemon {
            dir,
            config,
            pid_file,
            port,
            pid: None,
        }
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Waits (5 s at most) for the daemon's pid file and returns (and
    /// remembers, for Drop) the pid it names.
    fn wait_pid_file(&mut self) -> i32 {
        let mut pid = None;
        assert!(
            wait_until(Duration::from_secs(5), || {
                pid = read_pid_file(&self.pid_file);
                pid.is_some()
            }),
            "no pid file from the daemon\n{}",
            self.error_log()
        );
        let pid = pid.unwrap();
        self.pid = Some(pid);
        pid
    }

    /// forklb masters whose command line names our configuration file.
    fn masters_by_config(&self) -> Vec<i32> {
        let want = self.config.to_string_lossy().into_owned();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if comm(pid).as_deref() != Some("forklb-master") {
                continue;
            }
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.split(|&c| c == 0).any(|a| a == want.as_bytes()) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut pids = self.masters_by_config();
        pids.extend(self.pid);
        pids.extend(read_pid_file(&self.pid_file));
        if thread::panicking() {
            eprintln!("daemon error log:\n{}", self.error_log());
        }
        for p in pids {
            kill_tree(p);
        }
    }
}

// try_wait reaps the foreground process; clippy sees no wait() there.
#[allow(clippy::zombie_processes)]
fn daemon_serves_and_quits(args: &[&str], yaml_extra: &str) {
    let b = Backend::start("b1");
    let mut d = Daemon::new(&format!("{yaml_extra}{}", proxy_config_for(2, &[&b])));
    let started = Instant::now();
    let mut fg = forklb_command()
        .args(args)
        .arg("-c")
        .arg(&d.config)
        .stdin(Stdio::null())
        .stdout(fs::File::create(d.dir.join("stdout.log")).unwrap())
        .stderr(fs::File::create(d.dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let fg_pid = fg.id() as i32;
    let mut status = None;
    // Polled closely: the pid file is looked for right after the exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while status.is_none() && Instant::now() < deadline {
        status = fg.try_wait().unwrap();
        thread::sleep(Duration::from_micros(200));
    }
    if status.is_none() {
        let _ = fg.kill();
        let _ = fg.wait();
    }
    let fg_out = fs::read_to_string(d.dir.join("stderr.log")).unwrap_or_default();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "foreground `forklb {args:?}` did not exit 0 within 5 s: {status:?}\nstderr: {fg_out}\n{}",
        d.error_log()
    );
    eprintln!("foreground command exited after {:?}", started.elapsed());

    // The foreground command returns once the daemon is ready: its pid
    // file is there already (`forklb -d && forklb -s reopen` works).
    let written = read_pid_file(&d.pid_file);
    let pid = d.wait_pid_file();
    assert_eq!(
        written,
        Some(pid),
        "no pid file when `forklb {args:?}` returned\n{}",
        d.error_log()
    );
    assert_ne!(pid, fg_pid, "the pid file names the foreground process");
    assert_eq!(comm(pid).as_deref(), Some("forklb-master"));
    assert!(forklb_alive(pid));
    let st = proc_stat(pid).unwrap();
    assert_ne!(
        st.ppid,
        std::process::id() as i32,
        "the daemon is a child of the test"
    );
    // SAFETY: getsid has no memory-safety preconditions.
    let sid = unsafe { libc::getsid(pid) };
    assert_eq!(sid, pid, "the daemon does not lead its own session");

    let mut workers = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            workers = workers_of(pid);
            workers.len() == 2
        }),
        "daemon workers: {workers:?}\n{}",
        d.error_log()
    );
    for i in 0..4 {
        let r = http_get(d.port, "/");
        assert_eq!((r.status, r.body_str()), (200, "b1".to_owned()), "GET {i}");
    }

    assert!(kill(pid, SIGQUIT));
    assert!(
        wait_until(Duration::from_secs(5), || !forklb_alive(pid)),
        "daemon still running 5 s after QUIT\n{}",
        d.error_log()
    );
    assert!(
        wait_until(Duration::from_secs(1), || !d.pid_file.exists()),
        "pid file left behind"
    );
    assert!(
        wait_all_exited(&workers, Duration::from_secs(3)).is_empty(),
        "daemon workers outlived it"
    );
    assert!(port_refuses(d.port));
}

#[test]
fn daemon_flag_detaches_serves_and_quits() {
    daemon_serves_and_quits(&["-d"], "");
}

#[test]
fn daemon_true_in_config_detaches_serves_and_quits() {
    daemon_serves_and_quits(&[], "daemon: true\n");
}

// ---------------------------------------------------------------------------
// Privilege drop

/// The uid of `nobody` if the tests run as root and it exists; else says
/// why the test is skipped, and None.
fn nobody_uid_if_root() -> Option<u32> {
    if !running_as_root() {
        eprintln!("skipped: privilege drop needs the tests to run as root");
        return None;
    }
    let uid = passwd_uid("nobody");
    if uid.is_none() {
        eprintln!("skipped: no user nobody in /etc/passwd");
    }
    uid
}

#[test]
fn workers_drop_privileges_master_stays_root() {
    let Some(nobody) = nobody_uid_if_root() else {
        return;
    };
    let b = Backend::start("b1");
    let lb = Forklb::start(&format!("user: nobody\n{}", proxy_config_for(2, &[&b])));
    let workers = lb.wait_workers(2, Duration::from_secs(5));
    for &w in &workers {
        assert_eq!(
            proc_uids(w),
            Some(vec![nobody; 4]),
            "worker {w} uids (real, effective, saved, fs)"
        );
    }
    assert_eq!(proc_uids(lb.master_pid()), Some(vec![0; 4]), "master uids");
    for i in 0..6 {
        let r = http_get(lb.port(), "/");
        assert_eq!((r.status, r.body_str()), (200, "b1".to_owned()), "GET {i}");
    }
    // A respawned worker drops privileges too.
    assert!(kill(workers[0], SIGKILL));
    let mut now = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        now = lb.worker_pids();
        now.len() == 2 && !now.contains(&workers[0])
    }));
    for &w in &now {
        assert_eq!(proc_uids(w), Some(vec![nobody; 4]), "worker {w}");
    }
}

/// A reload applies a new `user` to the new workers, as nginx's does; an
/// unknown user fails the reload and the workers stay as they were.
#[test]
fn a_reload_applies_a_new_user_to_the_new_workers() {
    let Some(nobody) = nobody_uid_if_root() else {
        return;
    };
    let b = Backend::start("b1");
    let config = proxy_config_for(1, &[&b]);
    let lb = Forklb::start(&config);
    let before = lb.wait_workers(1, Duration::from_secs(5));
    assert_eq!(proc_uids(before[0]), Some(vec![0; 4]));
    lb.write_config(&format!("user: nobody\n{config}"));
    lb.signal(SIGHUP);
    let after = wait_new_generation(&lb, &before, 1);
    assert_eq!(
        proc_uids(after[0]),
        Some(vec![nobody; 4]),
        "worker {} after the reload\n{}",
        after[0],
        lb.diagnostics()
    );
    assert_eq!(http_get(lb.port(), "/").status, 200);
    lb.write_config(&format!("user: no-such-user-here\n{config}"));
    lb.signal(SIGHUP);
    assert!(
        lb.wait_log("reload failed", Duration::from_secs(5)),
        "{}",
        lb.diagnostics()
    );
    assert_eq!(lb.worker_pids(), after);
    assert_eq!(proc_uids(after[0]), Some(vec![nobody; 4]));
}

/// A rotation that moves the error log away and reloads (instead of USR1)
/// gets a new file at the configured path, as nginx's reload opens it
/// again; the new workers write there.
#[test]
fn a_reload_reopens_the_error_log_moved_away() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b]));
    let before = lb.wait_workers(1, Duration::from_secs(5));
    let log = lb.error_log_path().to_path_buf();
    let moved = log.with_extension("old");
    fs::rename(&log, &moved).expect("rename the error log");
    lb.signal(SIGHUP);
    let after = wait_new_generation(&lb, &before, 1);
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(&log)
            .is_ok_and(|t| !t.is_empty())),
        "no error log at {} after the reload; the moved file has:\n{}",
        log.display(),
        fs::read_to_string(&moved).unwrap_or_default()
    );
    assert!(kill(after[0], SIGKILL));
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(&log)
            .is_ok_and(|t| t.contains(&after[0].to_string()))),
        "the master did not log the worker's end in the reopened file:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
}

/// A reload that names another `pid_file` moves the pid there and removes
/// the old file, as nginx does: `forklb -s` with the edited configuration
/// finds the master.
#[test]
fn a_reload_moves_the_pid_file() {
    let b = Backend::start("b1");
    let config = proxy_config_for(1, &[&b]);
    let mut lb = Forklb::start(&config);
    let before = lb.wait_workers(1, Duration::from_secs(5));
    let moved = lb.dir().join("moved.pid");
    // The whole file is written here: the harness's header (`write_config`)
    // names the old pid file.
    let text = format!(
        "pid_file: \"{}\"\nerror_log: \"{}\"\n{}",
        moved.display(),
        lb.error_log_path().display(),
        config.replace("$PORT", &lb.port().to_string())
    );
    std::fs::write(lb.config_path(), text).expect("config");
    lb.signal(SIGHUP);
    wait_new_generation(&lb, &before, 1);
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&moved)
            .is_ok_and(|p| p.trim() == lb.master_pid().to_string())),
        "{}",
        lb.diagnostics()
    );
    assert!(!lb.pid_file().exists(), "the old pid file is still there");
    let out = run_forklb(
        &["-s", "quit", "-c", lb.config_path().to_str().expect("path")],
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(0), "{}", out.combined());
    assert!(lb.wait_exit(Duration::from_secs(10)).is_some());
    assert!(!moved.exists(), "the moved pid file outlived the master");
}

// ---------------------------------------------------------------------------
// sd_notify

#[test]
fn sd_notify_ready_reloading_stopping() {
    let mut n = NotifySocket::new();
    let b = Backend::start("b1");
    let mut lb = Forklb::start_with(&proxy_config_for(2, &[&b]), &n.opts());
    let t = Duration::from_secs(5);
    n.expect_next("READY=1 after start", t, |m| has_line(m, "READY=1"));

    let before = lb.wait_workers(2, t);
    lb.signal(SIGHUP);
    n.expect_next("RELOADING=1 at HUP", t, |m| m.starts_with("RELOADING=1"));
    n.expect_next("READY=1 after the reload", t, |m| has_line(m, "READY=1"));
    wait_new_generation(&lb, &before, 2);
    assert_eq!(http_get(lb.port(), "/").status, 200);

    lb.signal(SIGQUIT);
    n.expect_next("STOPPING=1 at QUIT", t, |m| has_line(m, "STOPPING=1"));
    assert!(lb.wait_exit(t).is_some(), "{}", lb.diagnostics());
    assert_eq!(n.next(Duration::from_millis(200)), None, "{:?}", n.seen);
}

/// Many reloads in a row under load heavy on new connections: every worker
/// generation drains while connections keep arriving, so a connection
/// accepted just as its worker starts draining must still be answered.
#[test]
fn repeated_hup_under_new_connection_load() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&route_config(&b, "v1", &["127.0.0.1:$PORT"]));
    let port = lb.port();
    let load = Load::start_with(
        port,
        LoadOpts {
            keepalive_threads: 2,
            fresh_threads: 8,
            paths: vec!["/".into(), "/v".into()],
            pause: Duration::from_millis(1),
            check: v_check(),
            ..Default::default()
        },
    );
    load.expect_progress(200, "before the reloads");
    let mut workers = lb.wait_workers(2, Duration::from_secs(5));
    for i in 0..40 {
        let body = if i % 2 == 0 { "v2" } else { "v1" };
        lb.write_config(&route_config(&b, body, &["127.0.0.1:$PORT"]));
        load.mark(&format!("HUP {i}"));
        lb.signal(SIGHUP);
        workers = wait_new_generation(&lb, &workers, 2);
        load.expect_progress(100, &format!("after HUP {i}"));
    }
    let report = load.stop();
    report.assert_no_failures("40 reloads", &lb.diagnostics());
    assert_eq!(http_get(port, "/v").body_str(), "v1");
}

/// Two upstreams: `/slow/` to `slow`, the rest to `web`.
fn slow_config(workers: usize, web: &Backend, slow: &Backend) -> String {
    side_route_config(workers, web, "slow", slow).build()
}

fn slow_backend(delay: Duration) -> Backend {
    Backend::start_with(
        "slow",
        BackendOpts {
            delay,
            ..Default::default()
        },
    )
}

/// Waits until the master runs `n` workers that are not in `old` (workers
/// of older generations may still drain beside them).
fn wait_generation_beside(lb: &Forklb, old: &[i32], n: usize) -> Vec<i32> {
    let mut fresh = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            fresh = lb
                .worker_pids()
                .into_iter()
                .filter(|p| !old.contains(p))
                .collect();
            fresh.len() == n
        }),
        "no new generation of {n} workers beside {old:?}: {fresh:?}\n{}",
        lb.diagnostics()
    );
    fresh
}

#[test]
fn hup_twice_while_a_slow_request_drains() {
    let web = Backend::start("b1");
    let slow = slow_backend(Duration::from_millis(2000));
    let lb = Forklb::start(&slow_config(2, &web, &slow));
    let port = lb.port();
    let gen1 = lb.wait_workers(2, Duration::from_secs(5));
    let load = Load::start(port);
    load.expect_progress(100, "before the reloads");

    let in_flight = thread::spawn(move || try_http_get(port, "/slow/x"));
    assert!(
        wait_until(Duration::from_secs(3), || slow.request_count() == 1),
        "the slow request never reached its backend"
    );
    load.mark("HUP 1");
    lb.signal(SIGHUP);
    let gen2 = wait_generation_beside(&lb, &gen1, 2);
    load.expect_progress(100, "after HUP 1");
    load.mark("HUP 2");
    lb.signal(SIGHUP);
    let older: Vec<i32> = gen1.iter().chain(&gen2).copied().collect();
    let gen3 = wait_generation_beside(&lb, &older, 2);
    load.expect_progress(100, "after HUP 2");

    let r = in_flight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("slow request failed across two reloads: {e}"));
    assert_eq!((r.status, r.body_str()), (200, "slow".to_owned()));
    let alive = wait_all_exited(&older, Duration::from_secs(5));
    assert!(alive.is_empty(), "old workers {alive:?} still alive");
    assert_eq!(lb.worker_pids(), gen3);
    load.expect_progress(100, "third generation alone");
    let report = load.stop();
    report.assert_no_failures("two reloads with a slow request", &lb.diagnostics());
}

#[test]
fn killed_draining_worker_is_not_respawned() {
    let web = Backend::start("b1");
    let slow = slow_backend(Duration::from_millis(3000));
    let lb = Forklb::start(&slow_config(2, &web, &slow));
    let port = lb.port();
    let gen1 = lb.wait_workers(2, Duration::from_secs(5));
    let in_flight = thread::spawn(move || try_http_get(port, "/slow/x"));
    assert!(wait_until(Duration::from_secs(3), || slow.request_count() == 1));
    lb.signal(SIGHUP);
    let gen2 = wait_generation_beside(&lb, &gen1, 2);
    // The gen-1 worker without connections exits; the other one drains.
    let mut draining = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            draining = gen1.iter().copied().filter(|&p| forklb_alive(p)).collect();
            draining.len() == 1
        }),
        "expected one draining old worker: {draining:?}"
    );
    assert!(kill(draining[0], SIGKILL));
    assert!(wait_until(Duration::from_secs(3), || !forklb_alive(
        draining[0]
    )));
    // The request it carried is lost; nothing replaces an old-generation worker.
    assert!(in_flight.join().unwrap().is_err());
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lb.worker_pids(),
        gen2,
        "a killed draining worker was respawned\n{}",
        lb.diagnostics()
    );
    assert_eq!(http_get(port, "/").body_str(), "b1");
}

#[test]
fn hup_changes_the_number_of_workers() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b]));
    let gen1 = lb.wait_workers(2, Duration::from_secs(5));
    let load = Load::start(lb.port());
    load.expect_progress(100, "before HUP");
    lb.write_config(&proxy_config_for(3, &[&b]));
    lb.signal(SIGHUP);
    wait_new_generation(&lb, &gen1, 3);
    load.expect_progress(100, "with 3 workers");
    lb.write_config(&proxy_config_for(1, &[&b]));
    let gen2 = lb.worker_pids();
    lb.signal(SIGHUP);
    wait_new_generation(&lb, &gen2, 1);
    load.expect_progress(100, "with 1 worker");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(lb.worker_pids().len(), 1);
    let report = load.stop();
    report.assert_no_failures("reloads changing the worker count", &lb.diagnostics());
}

#[test]
fn daemon_binary_upgrade_keeps_running_in_the_background() {
    let b = Backend::start("b1");
    let mut d = Daemon::new(&proxy_config_for(2, &[&b]));
    let status = forklb_command()
        .arg("-d")
        .arg("-c")
        .arg(&d.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let old = d.wait_pid_file();
    let load = Load::start(d.port);
    load.expect_progress(100, "before USR2");

    load.mark("USR2");
    assert!(kill(old, SIGUSR2));
    let mut new = None;
    let up = wait_until(Duration::from_secs(10), || {
        new = read_pid_file(&d.pid_file).filter(|&p| p != old && forklb_alive(p));
        new.is_some_and(|n| workers_of(n).len() == 2)
    });
    assert!(
        up,
        "no new master after USR2 to a daemon (pid file {:?})\n{}",
        read_pid_file(&d.pid_file),
        d.error_log()
    );
    let new = new.unwrap();
    assert_eq!(comm(new).as_deref(), Some("forklb-master"));
    // The new master did not detach again: it is the old master's child.
    assert_eq!(proc_stat(new).unwrap().ppid, old);
    load.mark("WINCH + QUIT old");
    assert!(kill(old, SIGWINCH));
    assert!(kill(old, SIGQUIT));
    assert!(
        wait_until(Duration::from_secs(10), || !forklb_alive(old)),
        "old daemon master still running\n{}",
        d.error_log()
    );
    load.mark("old master exited");
    assert_eq!(read_pid_file(&d.pid_file), Some(new));
    load.expect_progress(200, "new master alone");
    let report = load.stop();
    report.assert_no_failures("daemon binary upgrade", &d.error_log());
    assert!(kill(new, SIGQUIT));
    assert!(wait_until(Duration::from_secs(5), || !forklb_alive(new)));
    assert!(!d.pid_file.exists(), "pid file left behind");
}

#[test]
fn privileged_workers_reload_and_reopen_logs() {
    let Some(nobody) = nobody_uid_if_root() else {
        return;
    };
    let b = Backend::start("b1");
    let dead = refused_addr();
    let logs = TempDir::new("privlogs");
    let access = logs.join("access.log");
    let yaml = dead_route_config(&b, dead, &access, "json")
        .user("nobody")
        .build();
    let lb = Forklb::start(&yaml);
    let port = lb.port();
    let gen1 = lb.wait_workers(2, Duration::from_secs(5));

    // A reload: the new generation runs as nobody too.
    lb.signal(SIGHUP);
    let gen2 = wait_new_generation(&lb, &gen1, 2);
    for &w in &gen2 {
        assert_eq!(proc_uids(w), Some(vec![nobody; 4]), "worker {w}");
    }

    // logrotate with unprivileged workers: they must still write the new files.
    let error_log = lb.error_log_path().to_owned();
    fs::rename(&access, logs.join("access.log.1")).ok();
    fs::rename(&error_log, lb.dir().join("error.log.1")).unwrap();
    lb.signal(SIGUSR1);
    assert!(wait_until(Duration::from_secs(3), || error_log.exists()
        && access.exists()));
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let dead_text = dead.to_string();
    let mut n = 0;
    let ok = wait_until(Duration::from_secs(6), || {
        n += 1;
        let _ = try_http_get(port, &format!("/rotated-{n}"));
        let _ = try_http_get(port, "/dead/x");
        thread::sleep(Duration::from_millis(100));
        read(&access).contains("/rotated-") && read(&error_log).contains(&dead_text)
    });
    assert!(
        ok,
        "unprivileged workers do not write the re-created logs\n--- access.log ---\n{}\
         --- error.log ---\n{}--- error.log.1 ---\n{}",
        read(&access),
        read(&error_log),
        read(&lb.dir().join("error.log.1"))
    );
    assert!(
        !read(&error_log).contains("cannot reopen"),
        "{}",
        read(&error_log)
    );
}

#[test]
fn sd_notify_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("forklb-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let b = Backend::start("b1");
    let _lb = Forklb::start_with(
        &proxy_config_for(1, &[&b]),
        &StartOpts {
            env: vec![("NOTIFY_SOCKET".into(), format!("@{name}"))],
            ..Default::default()
        },
    );
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("no message on the abstract socket");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(has_line(&msg, "READY=1"), "{msg:?}");
}

/// A QUIT that reaches a worker just after its fork, before it installed
/// its own signal handlers, must not be lost (found under a real systemd: a
/// stop during a rollback left such a worker running until the SIGKILL).
/// The signals stay blocked across the fork until the worker handles them;
/// here QUIT follows a HUP (which forks a new generation) at varying
/// delays, so some land in that window, and every run must exit promptly.
#[test]
fn quit_right_after_workers_are_forked_is_not_lost() {
    let b = Backend::start("b");
    let yaml = proxy_config_for(4, &[&b]);
    for i in 0..12u64 {
        let mut lb = Forklb::start(&yaml);
        let first = lb.wait_workers(4, Duration::from_secs(10));
        lb.signal(libc::SIGHUP);
        // 0 to 5.5 ms: before, during and after the new workers' forks.
        std::thread::sleep(Duration::from_micros(i * 500));
        lb.signal(libc::SIGQUIT);
        let exited = lb.wait_exit(Duration::from_secs(5));
        assert!(
            exited.is_some(),
            "run {i}: the master did not exit within 5 s of QUIT (workers {:?}, first generation {first:?})\n{}",
            lb.child_pids(),
            lb.diagnostics()
        );
    }
}
