//! Walking skeleton, processes: names, worker respawn, QUIT and TERM.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn master_and_workers_are_named() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(3, &[&b1]));

    assert_eq!(comm(lb.master_pid()).as_deref(), Some("forklb-master"));
    assert_eq!(lb.pid_file_pid(), Some(lb.master_pid()));
    let workers = lb.wait_workers(3, Duration::from_secs(5));
    for &w in &workers {
        assert_eq!(comm(w).as_deref(), Some("forklb-worker"), "pid {w}");
    }
    // Nothing else but workers (and possibly a health checker) under the master.
    for p in lb.child_pids() {
        let name = comm(p).unwrap_or_default();
        assert!(
            name == "forklb-worker" || name == "forklb-health",
            "unexpected child {p} named {name:?}"
        );
    }
    // Stable: still exactly the same three a moment later.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(lb.worker_pids(), workers);
    assert_eq!(http_get(lb.port(), "/").status, 200);
}

#[test]
fn killed_worker_is_replaced() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(2, &[&b1]));
    let before = lb.wait_workers(2, Duration::from_secs(5));
    let victim = before[0];

    assert!(kill(victim, SIGKILL));
    let mut now = Vec::new();
    let replaced = wait_until(Duration::from_secs(5), || {
        now = lb.worker_pids();
        now.len() == 2 && !now.contains(&victim)
    });
    assert!(
        replaced,
        "worker {victim} not replaced: workers now {now:?}\n{}",
        lb.diagnostics()
    );
    assert!(now.contains(&before[1]), "the other worker must survive");
    for i in 0..6 {
        let r = http_get(lb.port(), "/");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "b1"),
            "request {i}"
        );
    }
    assert_eq!(comm(lb.master_pid()).as_deref(), Some("forklb-master"));
}

#[test]
fn quit_finishes_in_flight_request_then_exits() {
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_secs(2),
            ..Default::default()
        },
    );
    let mut lb = Forklb::start(&proxy_config_for(2, &[&slow]));
    let workers = lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();

    let started = Instant::now();
    let in_flight = thread::spawn(move || try_http_get(port, "/slow"));
    assert!(
        wait_until(Duration::from_secs(3), || slow.request_count() == 1),
        "the request never reached the backend"
    );
    lb.signal(SIGQUIT);

    // After QUIT a new connection is not served (refused, closed, or ignored
    // until exit), while the in-flight request still completes.
    thread::sleep(Duration::from_millis(300));
    if let Ok(mut c) = Conn::open(port) {
        c.set_read_timeout(Duration::from_millis(1000));
        if c.send(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n").is_ok() {
            if let Ok(r) = c.read_response() {
                assert!(
                    !(200..300).contains(&r.status),
                    "a connection opened after QUIT was served: {r:?}"
                );
            }
        }
    }

    let r = in_flight
        .join()
        .expect("client thread")
        .unwrap_or_else(|e| {
            panic!(
                "in-flight request failed after QUIT: {e}\n{}",
                lb.diagnostics()
            )
        });
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        slow.request_count(),
        1,
        "the late request reached the backend"
    );

    lb.expect_exit_0(
        Duration::from_secs(5),
        "master still running 5 s after the drained request",
    );
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            left = lb
                .seen_pids()
                .into_iter()
                .chain(workers.iter().copied())
                .filter(|&p| forklb_alive(p))
                .collect();
            left.is_empty()
        }),
        "forklb processes still alive after the master exited: {left:?}"
    );
    assert!(!lb.pid_file().exists(), "pid file left behind");
}

#[test]
fn term_exits_fast_and_removes_pid_file() {
    let b1 = Backend::start("b1");
    let mut lb = Forklb::start(&proxy_config_for(2, &[&b1]));
    let workers = lb.wait_workers(2, Duration::from_secs(5));
    assert_eq!(http_get(lb.port(), "/").status, 200);

    let started = Instant::now();
    lb.signal(SIGTERM);
    lb.expect_exit_0(
        Duration::from_secs(3),
        "master still running 3 s after TERM",
    );
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(2), || {
            left = workers
                .iter()
                .copied()
                .filter(|&p| forklb_alive(p))
                .collect();
            left.is_empty()
        }),
        "workers still alive after TERM: {left:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "TERM shutdown took {:?}",
        started.elapsed()
    );
    assert!(!lb.pid_file().exists(), "pid file left behind");
    let addr = SocketAddr::from(([127, 0, 0, 1], lb.port()));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "listener still accepting after TERM"
    );
}

/// `-s` signals only a forklb master: a pid file naming 0 (which would be
/// the caller's own process group), 1, or a process of another program
/// (a stale file whose number was reused) is refused, nothing is sent,
/// exit 2.
#[test]
fn s_refuses_a_pid_file_that_names_no_master() {
    let dir = TempDir::new("spid");
    let pid_file = dir.join("forklb.pid");
    let conf = dir.join("forklb.yaml");
    let yaml = standard_config(1)
        .set("pid_file", yaml_str(pid_file.to_str().unwrap()))
        .upstream(
            "web",
            [Srv::new("b", "127.0.0.1:9".parse::<SocketAddr>().unwrap())],
        )
        .build()
        .replace("$PORT", &free_port().to_string());
    std::fs::write(&conf, yaml).unwrap();
    let conf = conf.to_str().unwrap().to_owned();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    for (content, needle) in [
        ("0\n".to_owned(), "invalid pid"),
        ("1\n".to_owned(), "invalid pid"),
        (format!("{}\n", sleeper.id()), "not a forklb master"),
    ] {
        std::fs::write(&pid_file, &content).unwrap();
        for sig in ["reopen", "stop"] {
            let out = run_forklb(&["-s", sig, "-c", &conf], Duration::from_secs(10));
            assert_eq!(out.code(), Some(2), "{content:?} {sig}: {}", out.combined());
            assert!(
                out.combined().contains(needle),
                "{content:?} {sig}: {}",
                out.combined()
            );
        }
    }
    assert!(
        sleeper.try_wait().expect("wait").is_none(),
        "the other program's process was signalled"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// In a terminal's foreground a window resize sends WINCH to the master
/// (a terminal emulator, tmux, `docker run -t`): there WINCH is ignored and
/// logged, or every resize would stop the workers and leave nobody serving
/// (nginx acts on WINCH only when daemonized). The master runs in a pty,
/// in its foreground group, as a shell starts it.
#[test]
fn winch_in_a_terminals_foreground_does_not_stop_the_workers() {
    let b1 = Backend::start("b1");
    let dir = TempDir::new("tty");
    let port = free_port();
    let config = dir.join("forklb.yaml");
    let pid_file = dir.join("forklb.pid");
    let error_log = dir.join("error.log");
    let yaml = format!(
        "pid_file: \"{}\"\nerror_log: \"{}\"\n{}",
        pid_file.display(),
        error_log.display(),
        proxy_config_for(1, &[&b1]).replace("$PORT", &port.to_string())
    );
    std::fs::write(&config, yaml).expect("config");
    // The child of pty.fork is a session leader whose controlling terminal
    // is the pty, in its foreground group; it becomes forklb. The parent
    // prints its pid and keeps the pty drained.
    let script = "import os, pty, sys\n\
                  pid, fd = pty.fork()\n\
                  if pid == 0:\n    os.execv(sys.argv[1], [sys.argv[1], '-c', sys.argv[2]])\n\
                  print(pid, flush=True)\n\
                  while True:\n    try:\n        data = os.read(fd, 4096)\n    except OSError:\n        break\n    if not data:\n        break\n";
    let mut holder = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_forklb")])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the pty child's pid");
    let master: i32 = line.trim().parse().expect("pid");
    let ready = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == master.to_string())
            && try_http_get(port, "/").is_ok()
    });
    let log = || std::fs::read_to_string(&error_log).unwrap_or_default();
    assert!(ready, "forklb in a pty not serving\n{}", log());
    assert!(kill(master, libc::SIGWINCH));
    assert!(
        wait_until(Duration::from_secs(5), || log()
            .contains("received WINCH in a terminal")),
        "{}",
        log()
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(http_get(port, "/").status, 200, "{}", log());
    assert!(!log().contains("stopping workers"), "{}", log());
    assert!(kill(master, libc::SIGTERM));
    let gone = wait_until(Duration::from_secs(10), || !kill(master, 0));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(gone, "the master did not exit on TERM\n{}", log());
}

/// With `error_log: stderr` under systemd (JOURNAL_STREAM names stderr's
/// device and inode), every line begins with its syslog priority (`<6>`
/// info, `<4>` warn, `<3>` error), which the journal reads and strips:
/// `journalctl -p warning` finds forklb's warnings and errors. Elsewhere
/// the lines are as in a file.
#[test]
fn stderr_lines_carry_their_priority_for_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("journal");
    for journal in [true, false] {
        let port = free_port();
        let config = dir.join("forklb.yaml");
        let pid_file = dir.join("forklb.pid");
        std::fs::write(
            &config,
            format!(
                "pid_file: \"{}\"\nerror_log: stderr\nworkers: 1\nlisteners:\n  - name: web\n    bind: [\"127.0.0.1:{port}\"]\n    routes:\n      - return: {{status: 200}}\n",
                pid_file.display()
            ),
        )
        .expect("config");
        let err_path = dir.join(&format!("stderr-{journal}.log"));
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let meta = err.metadata().expect("metadata");
        let mut cmd = forklb_command();
        cmd.arg("-c").arg(&config).stderr(err);
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        let mut child = cmd.spawn().expect("spawn");
        let text = || std::fs::read_to_string(&err_path).unwrap_or_default();
        let ready = wait_until(Duration::from_secs(10), || text().contains("ready:"));
        let worker = wait_until(Duration::from_secs(5), || {
            !children_of(child.id() as i32).is_empty()
        });
        assert!(ready && worker, "{}", text());
        // A worker killed: an error line.
        for w in children_of(child.id() as i32) {
            kill(w, libc::SIGKILL);
        }
        assert!(
            wait_until(Duration::from_secs(5), || text().contains("[error]")),
            "{}",
            text()
        );
        kill(child.id() as i32, libc::SIGTERM);
        let _ = child.wait();
        let out = text();
        for line in out.lines().filter(|l| !l.is_empty()) {
            let want = if !journal {
                ""
            } else if line.contains("[error]") {
                "<3>"
            } else if line.contains("[warn]") {
                "<4>"
            } else {
                "<6>"
            };
            assert!(
                line.starts_with(&format!("{want}2")),
                "journal {journal}: {line:?}\n{out}"
            );
        }
    }
}
