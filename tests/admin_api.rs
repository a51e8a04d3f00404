//! The runtime API over the admin socket, driven with `socat` exactly as
//! operators' scripts do (`echo "..." | socat stdio /path/admin.sock`).

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::*;

struct Setup {
    lb: Forklb,
    _dir: TempDir,
    sock: PathBuf,
    a: Backend,
    b: Backend,
}

/// Two workers, upstream `main` with servers `a` and `b`, an admin socket
/// (and optionally a state file) in the instance's folder.
fn start(extra: &str) -> Setup {
    start_on(Backend::start("a"), Backend::start("b"), extra)
}

/// [`start`] with backends of the caller's.
fn start_on(a: Backend, b: Backend, extra: &str) -> Setup {
    let dir = TempDir::new("adminsock");
    let sock = dir.join("admin.sock");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .raw(extra)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .upstream("main", [Srv::new("a", a.addr()), Srv::new("b", b.addr())])
        .build();
    let lb = Forklb::start(&yaml);
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    Setup {
        lb,
        _dir: dir,
        sock,
        a,
        b,
    }
}

fn counts(port: u16, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        match http_get(port, "/").body_str().as_str() {
            "a" => a += 1,
            "b" => b += 1,
            other => panic!("unexpected body {other:?}"),
        }
    }
    (a, b)
}

#[test]
fn help_info_backend_and_unknown_commands() {
    let s = start("");
    let help = admin_cmd(&s.sock, "help");
    assert!(
        help.starts_with("The following commands are valid at this level:\n"),
        "{help}"
    );
    for c in [
        "show stat",
        "set weight",
        "set server",
        "show servers state",
        "reload",
    ] {
        assert!(help.contains(c), "help lacks {c}: {help}");
    }
    assert!(
        help.ends_with("\n\n"),
        "every answer ends with an empty line: {help:?}"
    );
    let info = admin_cmd(&s.sock, "show info");
    for f in [
        "Name: forklb",
        "Version: ",
        "Uptime_sec: ",
        "Nbproc: 2",
        "CurrConns: ",
        "CumConns: ",
        "CumReq: ",
        "Generation: 1",
    ] {
        assert!(info.contains(f), "show info lacks {f}: {info}");
    }
    assert!(
        info.contains(&format!("Pid: {}\n", s.lb.master_pid())),
        "{info}"
    );
    assert_eq!(admin_cmd(&s.sock, "show backend"), "# name\nmain\n\n");
    // HAProxy 2.6's wording: the closest commands, then help/prompt/quit.
    let unknown = admin_cmd(&s.sock, "frobnicate now");
    assert!(
        unknown.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        ),
        "{unknown}"
    );
    assert!(
        unknown.ends_with(
            "  help [<command>]                        : list matching or all commands\n  \
             prompt                                  : toggle interactive mode with prompt\n  \
             quit                                    : disconnect\n\n"
        ),
        "{unknown}"
    );
    let typo = admin_cmd(&s.sock, "show stats");
    assert!(
        typo.contains("\n  show stat [desc|json|no-maint|typed|up]*: report counters for each proxy and server\n"),
        "{typo}"
    );
    let proc_ = admin_cmd(&s.sock, "show proc");
    assert!(
        proc_.contains("master") && proc_.matches(" worker ").count() == 2,
        "{proc_}"
    );
}

#[test]
fn error_strings_are_haproxys() {
    let s = start("");
    assert_eq!(
        admin_cmd(&s.sock, "set weight nope/a 1"),
        "No such backend.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "set weight main/zz 1"),
        "No such server.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "set weight main 1"),
        "Require 'backend/server'.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "get weight main"),
        "Require 'backend/server'.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "set server main/zz state maint"),
        "No such server.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "disable server nope/a"),
        "No such backend.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "set server main/a state sleepy"),
        "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "set weight main/a 300"),
        "Absolute weight can only be between 0 and 256 inclusive.\n\n"
    );
    assert_eq!(admin_cmd(&s.sock, "get weight main/a"), "1 (initial 1)\n\n");
}

#[test]
fn pipelined_commands_and_escaped_semicolons() {
    let s = start("");
    let out = admin_cmd(
        &s.sock,
        "set weight main/a 7; get weight main/a; set weight main/a 50%; get weight main/a",
    );
    // set answers an empty line, get its value then an empty line. A
    // relative weight truncates, as in HAProxy 2.6: 50% of 1 is 0.
    assert_eq!(out, "\n7 (initial 1)\n\n\n0 (initial 1)\n\n");
    let out = admin_cmd(&s.sock, r"get weight main/a\;x");
    assert_eq!(out, "No such server.\n\n");
}

#[test]
fn prompt_mode_keeps_the_session_open() {
    let s = start("");
    let out = socat(&s.sock, "prompt\nget weight main/a\nshow backend\nquit\n");
    assert_eq!(out, "\n> 1 (initial 1)\n\n> # name\nmain\n\n> ");
}

#[test]
fn socket_permissions_and_levels() {
    use std::os::unix::fs::PermissionsExt;
    let s = start("");
    let mode = std::fs::metadata(&s.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(s);
    // A user-level socket may look but not touch.
    let a = Backend::start("a");
    let dir = TempDir::new("adminlvl");
    let sock = dir.join("user.sock");
    let yaml = standard_config(1)
        .set(
            "admin",
            format!(
                "{{socket: {}, mode: \"0660\", level: user}}",
                yaml_str(&sock.display().to_string())
            ),
        )
        .upstream("web", [Srv::of(&a).weight(1)])
        .build();
    let lb = Forklb::start(&yaml);
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    assert_eq!(
        admin_cmd(&sock, "set weight web/a 5"),
        "Permission denied\n\n"
    );
    assert_eq!(
        admin_cmd(&sock, "disable server web/a"),
        "Permission denied\n\n"
    );
    assert_eq!(admin_cmd(&sock, "reload"), "Permission denied\n\n");
    assert_eq!(admin_cmd(&sock, "get weight web/a"), "1 (initial 1)\n\n");
    assert!(!admin_cmd(&sock, "help").contains("set weight"));
    drop(lb);
}

#[test]
fn set_weight_splits_traffic_about_ten_to_one() {
    let s = start("");
    assert_eq!(admin_cmd(&s.sock, "set weight main/a 10"), "\n");
    let (a, b) = counts(s.lb.port(), 220);
    // 10:1 of 220 is 200:20; each of 2 workers runs its own smooth sequence.
    assert!((190..=210).contains(&a), "a={a} b={b}");
    assert_eq!(a + b, 220);
    assert_eq!(admin_cmd(&s.sock, "set server main/a weight 1"), "\n");
    let (a, b) = counts(s.lb.port(), 100);
    assert!((40..=60).contains(&a), "a={a} b={b}");
}

#[test]
fn maint_and_ready_under_load_lose_nothing() {
    let s = start("");
    let load = Load::start(s.lb.port());
    std::thread::sleep(Duration::from_millis(300));
    load.mark("maint a");
    assert_eq!(admin_cmd(&s.sock, "set server main/a state maint"), "\n");
    std::thread::sleep(Duration::from_millis(200));
    let before = s.a.request_count();
    std::thread::sleep(Duration::from_millis(500));
    let during = s.a.request_count() - before;
    assert_eq!(during, 0, "a still got requests while in maint");
    load.mark("ready a");
    assert_eq!(admin_cmd(&s.sock, "set server main/a state ready"), "\n");
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    report.assert_no_failures("maint/ready", &s.lb.diagnostics());
    assert!(
        s.a.request_count() > before,
        "a was not used again after ready"
    );
    assert!(report.ok > 100, "too little load: {}", report.ok);
}

#[test]
fn rolling_maint_ready_deploy_loop_under_load() {
    let s = start("");
    let load = Load::start(s.lb.port());
    std::thread::sleep(Duration::from_millis(200));
    for round in 0..3 {
        for srv in ["a", "b"] {
            load.mark(&format!("round {round}: maint {srv}"));
            assert_eq!(
                admin_cmd(&s.sock, &format!("set server main/{srv} state maint")),
                "\n"
            );
            std::thread::sleep(Duration::from_millis(150)); // ... deploy ...
            assert_eq!(
                admin_cmd(&s.sock, &format!("set server main/{srv} state ready")),
                "\n"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let report = load.stop();
    report.assert_no_failures("rolling deploy", &s.lb.diagnostics());
    assert!(s.a.request_count() > 0 && s.b.request_count() > 0);
}

#[test]
fn show_stat_totals_equal_requests_sent_through_two_workers() {
    let s = start("");
    for _ in 0..60 {
        assert_eq!(http_get(s.lb.port(), "/").status, 200);
    }
    let stat = admin_cmd(&s.sock, "show stat");
    let mut lines = stat.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,"), "{header}");
    let names: Vec<&str> = header
        .trim_start_matches("# ")
        .trim_end_matches(',')
        .split(',')
        .collect();
    let col = |n: &str| names.iter().position(|x| *x == n).unwrap();
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    for r in &rows {
        assert_eq!(
            r.len(),
            names.len() + 1,
            "every field is followed by a comma: {r:?}"
        );
    }
    let row = |sv: &str| {
        rows.iter()
            .find(|r| r[0] == "main" && r[1] == sv)
            .unwrap()
            .clone()
    };
    let (a, b, be) = (row("a"), row("b"), row("BACKEND"));
    let stot = |r: &Vec<&str>| r[col("stot")].parse::<u64>().unwrap();
    assert_eq!(stot(&a) + stot(&b), 60);
    assert_eq!(stot(&be), 60);
    assert_eq!(a[col("status")], "no check");
    assert_eq!(be[col("status")], "UP");
    assert_eq!(be[col("algo")], "roundrobin");
    assert_eq!(a[col("hrsp_2xx")], stot(&a).to_string());
    assert!(rows.iter().any(|r| r[0] == "web" && r[1] == "FRONTEND"));
    assert_eq!(admin_cmd(&s.sock, "disable server main/b"), "\n");
    let stat = admin_cmd(&s.sock, "show stat");
    assert!(
        stat.lines()
            .any(|l| l.starts_with("main,b,") && l.contains(",MAINT,")),
        "{stat}"
    );
    let state = admin_cmd(&s.sock, "show servers state main");
    assert!(state.starts_with("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight"), "{state}");
    assert!(
        state
            .lines()
            // be_id 3: HAProxy's id of the proxy after one listener (id 1
            // is its CLI's, 2 the frontend's), as show stat's iid says.
            // op_state 0: HAProxy 2.6 reports a server in maintenance as
            // stopped (admin_state 1 says why).
            .any(|l| l.starts_with("3 main 2 b 127.0.0.1 0 1 1 1 ")),
        "{state}"
    );
    assert_eq!(
        admin_cmd(&s.sock, "show servers state nope"),
        "Can't find backend.\n\n"
    );
}

#[test]
fn weights_and_maint_survive_hup_and_usr2() {
    let dir = TempDir::new("adminstate");
    // In a folder that does not exist yet: made on demand, as the pid
    // file's (a missing folder lost every runtime change).
    let state = dir.join("state").join("forklb.state");
    let s = start(&format!("state_file: \"{}\"\n", state.display()));
    assert_eq!(
        admin_cmd(&s.sock, "set weight main/a 5; disable server main/b"),
        "\n\n"
    );
    assert!(state.exists(), "state file not written");
    // HUP: a new generation keeps the runtime state.
    s.lb.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || admin_cmd(
        &s.sock,
        "show info"
    )
    .contains("Generation: 2")));
    assert_eq!(admin_cmd(&s.sock, "get weight main/a"), "5 (initial 1)\n\n");
    let (a, b) = counts(s.lb.port(), 20);
    assert_eq!((a, b), (20, 0), "b is still in maint after HUP");
    // USR2: the new master reads the state file at start.
    let new = s.lb.upgrade_through_usr2(&s.sock);
    assert_eq!(admin_cmd(&s.sock, "get weight main/a"), "5 (initial 1)\n\n");
    let st = admin_cmd(&s.sock, "show servers state");
    assert!(
        st.lines()
            .any(|l| l.starts_with("3 main 2 b ") && l.split(' ').nth(6) == Some("1")),
        "{st}"
    );
    let (a, b) = counts(s.lb.port(), 10);
    assert_eq!((a, b), (10, 0));
    kill(new, libc::SIGQUIT);
}

#[test]
fn reload_over_the_socket() {
    let s = start("");
    assert_eq!(admin_cmd(&s.sock, "reload"), "Success=1\n\n");
    assert!(admin_cmd(&s.sock, "show info").contains("Generation: 2"));
    let cfg = std::fs::read_to_string(s.lb.config_path()).unwrap();
    std::fs::write(s.lb.config_path(), format!("{cfg}bogus_key: 1\n")).unwrap();
    let out = admin_cmd(&s.sock, "reload");
    assert!(
        out.starts_with("Success=0\n--\n") && out.contains("bogus_key"),
        "{out}"
    );
    assert!(admin_cmd(&s.sock, "show info").contains("Generation: 2"));
    assert_eq!(http_get(s.lb.port(), "/").status, 200);
}

#[test]
fn cumulative_counters_span_reloads_and_draining_workers() {
    // `/slow` takes 3 s, so a request can still be running on an old
    // worker while the new generation serves.
    let opts = || BackendOpts {
        path_delays: vec![("/slow".to_owned(), Duration::from_secs(3))],
        ..Default::default()
    };
    let (a, b) = (
        Backend::start_with("a", opts()),
        Backend::start_with("b", opts()),
    );
    let Setup {
        lb,
        sock,
        a,
        b,
        _dir,
    } = start_on(a, b, "");
    let port = lb.port();
    // The harness's readiness probe was one connection: wait until it is
    // counted and closed, then count from there.
    assert!(
        wait_until(Duration::from_secs(5), || info_value(&sock, "CumConns")
            >= 1
            && info_value(&sock, "CurrConns") == 0),
        "{}",
        admin_cmd(&sock, "show info")
    );
    let (conns0, reqs0) = (info_value(&sock, "CumConns"), info_value(&sock, "CumReq"));

    // Generation 1: 20 connections of one request, one of three.
    for _ in 0..20 {
        assert_eq!(http_get(port, "/").status, 200);
    }
    let mut ka = Conn::open(port).unwrap();
    for _ in 0..3 {
        assert_eq!(ka.get("/").unwrap().status, 200);
    }
    drop(ka);
    // And one still running when the reload comes.
    let slow = std::thread::spawn(move || {
        let mut c = Conn::open(port).unwrap();
        c.set_read_timeout(Duration::from_secs(10));
        c.get("/slow").map(|r| r.status)
    });
    assert!(
        wait_until(Duration::from_secs(5), || a.request_count()
            + b.request_count()
            == 24),
        "the slow request did not reach a backend"
    );
    let old_workers = lb.worker_pids();
    lb.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || admin_cmd(&sock, "show info")
            .contains("Generation: 2")),
        "no reload\n{}",
        lb.diagnostics()
    );

    // Generation 2: 10 more, while an old worker drains the slow one.
    for _ in 0..10 {
        assert_eq!(http_get(port, "/").status, 200);
    }
    let draining = old_workers.iter().any(|&p| forklb_alive(p));
    let (conns, reqs) = (20 + 1 + 1 + 10, 20 + 3 + 1 + 10);
    assert_eq!(info_value(&sock, "CumConns") - conns0, conns);
    assert_eq!(info_value(&sock, "CumReq") - reqs0, reqs);
    if draining {
        assert!(info_value(&sock, "CurrConns") >= 1, "the slow one is open");
    }

    // The slow request ends on its old worker, which then exits.
    assert_eq!(slow.join().unwrap().unwrap(), 200);
    assert!(
        wait_until(Duration::from_secs(10), || old_workers
            .iter()
            .all(|&p| !forklb_alive(p))),
        "old workers did not exit\n{}",
        lb.diagnostics()
    );
    // Folded into the lifetime sums: nothing lost, nothing twice.
    assert_eq!(info_value(&sock, "CumConns") - conns0, conns);
    assert_eq!(info_value(&sock, "CumReq") - reqs0, reqs);
    assert_eq!(info_value(&sock, "CurrConns"), 0);

    // A second reload and more traffic keep adding up.
    lb.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || admin_cmd(
        &sock,
        "show info"
    )
    .contains("Generation: 3")));
    for _ in 0..5 {
        assert_eq!(http_get(port, "/").status, 200);
    }
    assert_eq!(info_value(&sock, "CumConns") - conns0, conns + 5);
    assert_eq!(info_value(&sock, "CumReq") - reqs0, reqs + 5);
    assert_eq!(
        a.request_count() + b.request_count(),
        reqs as usize + 5,
        "the backends saw exactly these requests"
    );
}

/// On a reload a weight or maxconn changed at runtime stays only while the
/// file still configures what it was changed from: an edit of the file
/// wins (it was lost for good, the state file then kept the runtime value),
/// as HAProxy's server state does. A health an operator forced on an
/// unchecked server (`set server … health down|stopping`) holds across a
/// reload and, with `state_file`, an upgrade (the server went back into
/// rotation).
#[test]
fn a_reload_takes_the_files_edits_and_keeps_forced_health() {
    let dir = TempDir::new("adminreload");
    let state = dir.join("forklb.state");
    let extra = format!("state_file: \"{}\"\n", state.display());
    let s = start(&extra);
    assert_eq!(
        admin_cmd(
            &s.sock,
            "set weight main/a 5; set maxconn server main/a 7; set server main/b health down"
        ),
        "\n\n\n"
    );
    assert_eq!(stat_field(&s.sock, "main", "b", "status"), "DOWN");
    // The file now says weight 2 and maxconn 3 for a.
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&s.sock)
        .raw(&extra)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .upstream(
            "main",
            [
                Srv::new("a", s.a.addr()).weight(2).maxconn(3),
                Srv::new("b", s.b.addr()),
            ],
        )
        .build();
    s.lb.write_config(&yaml);
    s.lb.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || admin_cmd(
        &s.sock,
        "show info"
    )
    .contains("Generation: 2")));
    assert_eq!(admin_cmd(&s.sock, "get weight main/a"), "2 (initial 2)\n\n");
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "3");
    assert_eq!(stat_field(&s.sock, "main", "b", "status"), "DOWN");
    let (a, b) = counts(s.lb.port(), 10);
    assert_eq!((a, b), (10, 0), "b, forced down, took requests after HUP");
    // The state file's lastchg goes on in the new master, as HAProxy's.
    std::thread::sleep(Duration::from_millis(2100));
    // USR2: the new master reads the state file.
    let new = s.lb.upgrade_through_usr2(&s.sock);
    assert_eq!(stat_field(&s.sock, "main", "b", "status"), "DOWN");
    assert_eq!(admin_cmd(&s.sock, "get weight main/a"), "2 (initial 2)\n\n");
    let lastchg: u64 = stat_field(&s.sock, "main", "b", "lastchg")
        .parse()
        .expect("lastchg");
    assert!(lastchg >= 2, "lastchg {lastchg} s after the upgrade");
    kill(new, libc::SIGQUIT);
}
