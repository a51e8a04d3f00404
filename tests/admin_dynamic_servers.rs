//! Dynamic servers over the runtime API (issue 17 item 4): `add server`,
//! `del server`, `set server B/S addr`. Answers are checked byte for byte
//! against a real HAProxy 2.6 given the same commands; the effects with
//! real backends behind 2 workers: an added server takes traffic once
//! enabled, a deleted one none, a moved one none at its old address (not
//! even over a pooled connection), and every change survives HUP, a
//! restart and a USR2 upgrade with `state_file`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use std::time::Duration;
use support::*;

struct Setup {
    lb: Forklb,
    dir: TempDir,
    sock: PathBuf,
    a: Backend,
    b: Backend,
}

/// Upstream `web` (round robin over `a` and `b`, passive detection off
/// so a stopped backend is not marked down behind the test's back) and
/// `st` (static-rr, which takes no dynamic servers); `extra` is added to
/// the top level, `upstream_extra` to `web`.
fn yaml(dir: &TempDir, a: &Backend, b: &Backend, extra: &str, upstream_extra: &[&str]) -> String {
    let mut c = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&dir.join("admin.sock"))
        .raw(extra)
        .listener("front", &["127.0.0.1:$PORT"])
        .route(Route::path("/metrics").metrics())
        .route(Route::to("web"))
        .upstream("web", [Srv::new("a", a.addr()), Srv::new("b", b.addr())]);
    for line in upstream_extra {
        c = c.upstream_opt(line);
    }
    c.upstream("st", [Srv::new("s1", a.addr())])
        .balance("static-rr")
        .build()
}

fn start_with(a: Backend, b: Backend, extra: &str, upstream_extra: &[&str]) -> Setup {
    let dir = TempDir::new("dynsrv");
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(&yaml(&dir, &a, &b, extra, upstream_extra));
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    Setup {
        lb,
        dir,
        sock,
        a,
        b,
    }
}

fn start() -> Setup {
    start_with(Backend::start("a"), Backend::start("b"), "", &[])
}

/// Waits until the workers of the master's generation serve (a server
/// change starts a new one; several changes on one line start workers
/// once, for the last): `show proc` lists 2 workers of that generation.
fn wait_serving(s: &Setup) {
    let serving = || {
        let out = admin_cmd(&s.sock, "show proc");
        let generation_of = |l: &str| l.split_whitespace().nth(2).map(str::to_owned);
        let master = out
            .lines()
            .find(|l| l.contains(" master "))
            .and_then(generation_of);
        master.is_some()
            && out
                .lines()
                .filter(|l| l.contains(" worker ") && generation_of(l) == master)
                .count()
                == 2
    };
    assert!(
        wait_until(Duration::from_secs(10), serving),
        "the new generation does not serve\n{}\n{}",
        admin_cmd(&s.sock, "show proc"),
        s.lb.diagnostics()
    );
}

/// Bodies of `n` requests, each on a new connection.
fn bodies(port: u16, n: usize) -> Vec<String> {
    (0..n).map(|_| http_get(port, "/").body_str()).collect()
}

fn count(bodies: &[String], name: &str) -> usize {
    bodies.iter().filter(|b| *b == name).count()
}

fn status(s: &Setup, server: &str) -> String {
    stat_field(&s.sock, "web", server, "status")
}

// ---------------------------------------------------------------------------
// The answers, against HAProxy

struct Haproxy {
    /// First: killed before its folder goes.
    _process: HaproxyProcess,
    _dir: TempDir,
    sock: PathBuf,
}

impl Haproxy {
    /// Backends `web` (roundrobin, servers a and b at the given addresses)
    /// and `st` (static-rr), as forklb's [`yaml`].
    fn start(a: &Backend, b: &Backend) -> Haproxy {
        let dir = TempDir::new("dynsrv-haproxy");
        let sock = dir.join("admin.sock");
        let cfg = format!(
            "global\n    stats socket {} mode 600 level admin\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             backend web\n    balance roundrobin\n    server a {}\n    server b {}\n\
             backend st\n    balance static-rr\n    server s1 {}\n",
            sock.display(),
            a.addr(),
            b.addr(),
            a.addr()
        );
        let process = HaproxyProcess::start(dir.path(), &cfg);
        assert!(
            wait_until(Duration::from_secs(10), || sock.exists()
                && !admin_cmd(&sock, "show backend").is_empty()),
            "haproxy did not start"
        );
        Haproxy {
            _process: process,
            _dir: dir,
            sock,
        }
    }
}

#[test]
fn answers_and_errors_are_haproxys() {
    let s = start();
    let h = Haproxy::start(&s.a, &s.b);
    let (a, b) = (s.a.addr(), s.b.addr());
    let lines = [
        // add server: syntax, lookups, the backend's balancing, the name,
        // the address, keywords, an existing name.
        "add server".to_owned(),
        "add server web".to_owned(),
        "add server web/".to_owned(),
        "add server /x 127.0.0.1:1".to_owned(),
        "add server nope/x 127.0.0.1:1".to_owned(),
        "add server st/x 127.0.0.1:1".to_owned(),
        "add server web/x".to_owned(),
        "add server web/a$b 127.0.0.1:1".to_owned(),
        "add server web/c/d 127.0.0.1:1".to_owned(),
        "add server web/x 127.0.0.1:abc".to_owned(),
        "add server web/x 127.0.0.1:1-5".to_owned(),
        "add server web/x 127.0.0.1:99999".to_owned(),
        "add server web/x 127.0.0.1:1 bogus 1".to_owned(),
        "add server web/x 127.0.0.1:1 backup 1".to_owned(),
        "add server web/x 127.0.0.1:1 weight 300".to_owned(),
        "add server web/x 127.0.0.1:1 weight -1".to_owned(),
        "add server web/a 127.0.0.1:1".to_owned(),
        // del server: lookups, not in maintenance.
        "del server".to_owned(),
        "del server web".to_owned(),
        "del server nope/x".to_owned(),
        "del server web/nope".to_owned(),
        "del server web/a".to_owned(),
        // set server addr: lookups, missing and bad addresses, bad ports.
        "set server web/a addr".to_owned(),
        "set server nope/a addr 127.0.0.1".to_owned(),
        "set server web/nope addr 127.0.0.1".to_owned(),
        "set server web/a addr notip".to_owned(),
        "set server web/a addr 127.0.0.1:80".to_owned(),
        "set server web/a addr 01.2.3.4".to_owned(),
        format!("set server web/a addr {}", a.ip()),
        format!("set server web/a addr {} port {}", a.ip(), a.port()),
        format!("set server web/a addr {} port abc", a.ip()),
        format!("set server web/a addr {} port", a.ip()),
        // Success, and what follows from it.
        format!("add server web/c {a} weight 2 backup maxconn 10"),
        format!("add server web/c {a}"),
        "del server web/c".to_owned(),
        "del server web/c".to_owned(),
        format!("set server web/b addr 127.0.0.2 port {}", b.port()),
        format!("set server web/b addr 127.0.0.2 port {}", a.port()),
        format!("set server web/b addr {} port {}", b.ip(), b.port()),
        "set server web/b addr 127.0.0.3 port abc".to_owned(),
        format!("set server web/b addr [{}]", b.ip()),
        "set server web/b addr ::1 port 80".to_owned(),
        format!("set server web/b addr {} port {}", b.ip(), b.port()),
        "disable server web/b; del server web/b".to_owned(),
    ];
    for line in &lines {
        let ours = admin_cmd(&s.sock, line);
        let theirs = admin_cmd(&h.sock, line);
        assert_eq!(ours, theirs, "answer to {line:?}\n{}", s.lb.diagnostics());
    }
    // An added server starts in maintenance (HAProxy 2.6), as there.
    for sock in [&s.sock, &h.sock] {
        assert_eq!(
            admin_cmd(sock, &format!("add server web/n {a}")),
            "New server registered.\n\n"
        );
        assert_eq!(stat_field(sock, "web", "n", "status"), "MAINT");
    }
    // Server ids as HAProxy numbers them: a deletion leaves the others'
    // ids, an added server takes the lowest free one (b's 2 here).
    let ids = |sock: &Path| -> Vec<String> {
        admin_cmd(sock, "show servers state web")
            .lines()
            .skip(2)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(' ').skip(2).take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    for line in [
        format!("add server web/p {a}"),
        "disable server web/a; del server web/a".to_owned(),
        format!("add server web/q {a}"),
    ] {
        assert_eq!(
            admin_cmd(&s.sock, &line),
            admin_cmd(&h.sock, &line),
            "{line}"
        );
    }
    assert_eq!(ids(&s.sock), ["2 n", "3 p", "1 q"]);
    assert_eq!(ids(&s.sock), ids(&h.sock));
    assert_eq!(stat_field(&s.sock, "web", "p", "sid"), "3");
}

#[test]
fn only_admins_change_servers() {
    let dir = TempDir::new("dynsrv-op");
    let sock = dir.join("admin.sock");
    let a = Backend::start("a");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .raw(&format!(
            "admin: {{socket: \"{}\", level: operator}}\n",
            sock.display()
        ))
        .listener("front", &["127.0.0.1:$PORT"])
        .route(Route::to("web"))
        .upstream("web", [Srv::new("a", a.addr())])
        .build();
    let lb = Forklb::start(&yaml);
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    for line in [
        "add server web/x 127.0.0.1:1",
        "del server web/a",
        "set server web/a addr 127.0.0.1",
    ] {
        assert_eq!(admin_cmd(&sock, line), "Permission denied\n\n", "{line}");
    }
    assert!(lb.diagnostics().contains("forklb"), "still running");
}

// ---------------------------------------------------------------------------
// Effects

#[test]
fn an_added_server_takes_traffic_once_enabled_in_both_workers() {
    let s = start();
    let c = Backend::start("c");
    assert_eq!(
        admin_cmd(&s.sock, &format!("add server web/c {}", c.addr())),
        "New server registered.\n\n"
    );
    wait_serving(&s);
    assert_eq!(status(&s, "c"), "MAINT");
    let before = bodies(s.lb.port(), 12);
    assert_eq!(count(&before, "c"), 0, "{before:?}");
    assert_eq!(admin_cmd(&s.sock, "enable server web/c"), "\n");
    // Round robin over a, b and c in each worker: c gets a third of every
    // worker's requests (±1 per worker), whichever worker takes them.
    let after = bodies(s.lb.port(), 30);
    let n = count(&after, "c");
    assert!(
        (8..=12).contains(&n),
        "c should get a third: {n}: {after:?}"
    );
    assert_eq!(c.request_count(), n);
    // Every view sees it: show stat, show servers state, get weight, show
    // backend is unchanged.
    assert_eq!(admin_cmd(&s.sock, "get weight web/c"), "1 (initial 1)\n\n");
    let state = admin_cmd(&s.sock, "show servers state web");
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("3 web 3 c 127.0.0.1 2 0 1 1 ")),
        "{state}"
    );
    assert_eq!(stat_field(&s.sock, "web", "c", "stot"), n.to_string());
    // So do the workers' metrics.
    let metrics = http_get(s.lb.port(), "/metrics").body_str();
    let line = format!("forklb_server_requests_total{{upstream=\"web\",server=\"c\"}} {n}");
    assert!(metrics.contains(&line), "{metrics}");
}

#[test]
fn weight_and_backup_of_an_added_server_are_honoured() {
    let s = start();
    let (c, d) = (Backend::start("c"), Backend::start("d"));
    let out = admin_cmd(
        &s.sock,
        &format!(
            "add server web/c {} weight 4 maxconn 50; add server web/d {} backup; \
             enable server web/c; enable server web/d",
            c.addr(),
            d.addr()
        ),
    );
    assert_eq!(
        out,
        "New server registered.\n\nNew server registered.\n\n\n\n"
    );
    // One line, several changes: one new generation of workers is started.
    wait_serving(&s);
    assert_eq!(admin_cmd(&s.sock, "get weight web/c"), "4 (initial 4)\n\n");
    assert_eq!(stat_field(&s.sock, "web", "d", "bck"), "1");
    // maxconn is the server's in-flight limit (`slim`), none for d.
    assert_eq!(stat_field(&s.sock, "web", "c", "slim"), "50");
    assert_eq!(stat_field(&s.sock, "web", "d", "slim"), "");
    // Weights 1:1:4 in each worker: c gets two thirds; the backup none.
    let got = bodies(s.lb.port(), 30);
    let n = count(&got, "c");
    assert!(
        (18..=22).contains(&n),
        "c (weight 4) should get 2/3: {n}: {got:?}"
    );
    assert_eq!(count(&got, "d"), 0, "{got:?}");
    // With the primaries in maintenance the backup serves.
    admin_cmd(
        &s.sock,
        "disable server web/a; disable server web/b; disable server web/c",
    );
    let got = bodies(s.lb.port(), 6);
    assert_eq!(count(&got, "d"), 6, "{got:?}");
}

#[test]
fn del_needs_maintenance_and_nothing_in_flight() {
    let s = start();
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_millis(1500),
            ..Default::default()
        },
    );
    admin_cmd(
        &s.sock,
        &format!(
            "add server web/slow {}; enable server web/slow; disable server web/a; disable server web/b",
            slow.addr()
        ),
    );
    wait_serving(&s);
    assert_eq!(
        admin_cmd(&s.sock, "del server web/slow"),
        "Only servers in maintenance mode can be deleted.\n"
    );
    let port = s.lb.port();
    let inflight = std::thread::spawn(move || http_get(port, "/").body_str());
    assert!(
        wait_until(Duration::from_secs(3), || stat_field(
            &s.sock, "web", "slow", "scur"
        ) == "1"),
        "request not in flight"
    );
    admin_cmd(&s.sock, "disable server web/slow; enable server web/a");
    assert_eq!(
        admin_cmd(&s.sock, "del server web/slow"),
        "Server still has connections attached to it, cannot remove it.\n"
    );
    assert_eq!(inflight.join().expect("request thread"), "slow");
    assert_eq!(
        admin_cmd(&s.sock, "del server web/slow"),
        "Server deleted.\n"
    );
    wait_serving(&s);
    let stat = admin_cmd(&s.sock, "show stat");
    assert!(!stat.contains("web,slow,"), "{stat}");
    assert_eq!(
        admin_cmd(&s.sock, "get weight web/slow"),
        "No such server.\n\n"
    );
    let served = slow.request_count();
    admin_cmd(&s.sock, "enable server web/b");
    let got = bodies(s.lb.port(), 10);
    assert_eq!(count(&got, "slow"), 0, "{got:?}");
    assert_eq!(slow.request_count(), served);
}

#[test]
fn a_deleted_server_in_flight_on_a_draining_generation_blocks_del() {
    // The request runs in generation 1; a reload makes generation 2, whose
    // own count is 0: the draining one's must be seen.
    let slow = Backend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_millis(2000),
            ..Default::default()
        },
    );
    let s = start_with(slow, Backend::start("b"), "", &[]);
    admin_cmd(&s.sock, "disable server web/b");
    let port = s.lb.port();
    let inflight = std::thread::spawn(move || http_get(port, "/").body_str());
    assert!(wait_until(Duration::from_secs(3), || stat_field(
        &s.sock, "web", "a", "scur"
    ) == "1"));
    assert_eq!(admin_cmd(&s.sock, "reload"), "Success=1\n\n");
    assert_eq!(admin_cmd(&s.sock, "disable server web/a"), "\n");
    assert_eq!(
        admin_cmd(&s.sock, "del server web/a"),
        "Server still has connections attached to it, cannot remove it.\n"
    );
    assert_eq!(inflight.join().expect("request thread"), "slow");
    assert_eq!(admin_cmd(&s.sock, "del server web/a"), "Server deleted.\n");
}

#[test]
fn set_addr_moves_every_new_request_and_drops_pooled_connections() {
    let logs = TempDir::new("dynsrv-log");
    let access = logs.join("access.log");
    let s = start_with(
        Backend::start("a"),
        Backend::start("b"),
        &format!("access_log: {{path: \"{}\"}}\n", access.display()),
        &[],
    );
    let new_a = Backend::start("new-a");
    admin_cmd(&s.sock, "disable server web/b");
    // A kept-alive client connection, and pooled connections to a's old
    // address in both workers.
    let mut kept = Conn::open(s.lb.port()).expect("connect");
    assert_eq!(kept.get("/").expect("request").body_str(), "a");
    let _ = bodies(s.lb.port(), 6);
    let old_requests = s.a.request_count();
    assert!(s.a.connections() >= 1);
    let line = format!(
        "set server web/a addr {} port {}",
        new_a.addr().ip(),
        new_a.addr().port()
    );
    assert_eq!(
        admin_cmd(&s.sock, &line),
        format!(
            "no need to change the addr, port changed from '{}' to '{}' by 'stats socket command'\n\n",
            s.a.addr().port(),
            new_a.addr().port()
        )
    );
    wait_serving(&s);
    // The kept-alive connection belongs to a draining worker, which closes
    // it: a client that goes on reconnects and reaches the new address.
    if let Ok(r) = kept.get("/") {
        assert_eq!(r.body_str(), "new-a");
    }
    let got = bodies(s.lb.port(), 10);
    assert_eq!(count(&got, "new-a"), 10, "{got:?}");
    assert_eq!(
        s.a.request_count(),
        old_requests,
        "a request reached the old address"
    );
    // The access log names where the requests went.
    let logged = format!("upstream={} ", new_a.addr());
    assert!(
        wait_until(Duration::from_secs(3), || fs::read_to_string(&access)
            .is_ok_and(
                |l| l.lines().filter(|l| l.contains(&logged)).count() >= 10
            )),
        "{:?}",
        fs::read_to_string(&access)
    );
    let state = admin_cmd(&s.sock, "show servers state web");
    let port = new_a.addr().port().to_string();
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("3 web 1 a ") && l.split(' ').nth(18) == Some(port.as_str())),
        "{state}"
    );
}

#[test]
fn health_checks_probe_added_servers_and_new_addresses() {
    let opts = || BackendOpts {
        health: Some(HealthSwitch::new("/health", 200)),
        ..Default::default()
    };
    let s = start_with(
        Backend::start_with("a", opts()),
        Backend::start_with("b", opts()),
        "",
        &["health: {type: http, path: /health, interval: 200ms, timeout: 500ms, rise: 1, fall: 1}"],
    );
    let (c, moved) = (
        Backend::start_with("c", opts()),
        Backend::start_with("m", opts()),
    );
    admin_cmd(
        &s.sock,
        &format!(
            "add server web/c {}; set server web/b addr {} port {}",
            c.addr(),
            moved.addr().ip(),
            moved.addr().port()
        ),
    );
    assert!(
        wait_until(Duration::from_secs(5), || c.health_checks() >= 2
            && moved.health_checks() >= 2),
        "checks: c {}, moved {}\n{}",
        c.health_checks(),
        moved.health_checks(),
        s.lb.diagnostics()
    );
    // b's old address is no longer probed.
    std::thread::sleep(Duration::from_millis(300));
    let old = s.b.health_checks();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(s.b.health_checks(), old, "the old address is still checked");
}

// ---------------------------------------------------------------------------
// Persistence

/// The changes every persistence test makes: c added (weight 3, enabled),
/// a deleted, b moved to `moved`.
fn change_all(s: &Setup, c: &Backend, moved: &Backend) {
    let out = admin_cmd(
        &s.sock,
        &format!(
            "add server web/c {} weight 3; enable server web/c; disable server web/a; \
             del server web/a; set server web/b addr {} port {}",
            c.addr(),
            moved.addr().ip(),
            moved.addr().port()
        ),
    );
    assert!(out.contains("Server deleted.\n"), "{out}");
}

/// What the changes look like from outside: the servers, c's weight and
/// state, and where requests go.
fn assert_changed(s: &Setup, c: &Backend, moved: &Backend, when: &str) {
    let state = admin_cmd(&s.sock, "show servers state web");
    let rows: Vec<(String, String, String)> = state
        .lines()
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[3].to_owned(), f[6].to_owned(), f[18].to_owned())
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "b".to_owned(),
                "0".to_owned(),
                moved.addr().port().to_string()
            ),
            ("c".to_owned(), "0".to_owned(), c.addr().port().to_string()),
        ],
        "{when}: {state}\n{}",
        s.lb.diagnostics()
    );
    assert_eq!(
        admin_cmd(&s.sock, "get weight web/c"),
        "3 (initial 3)\n\n",
        "{when}"
    );
    // Weights 3:1 in each worker: c gets three quarters (±1 per worker).
    let got = bodies(s.lb.port(), 16);
    let n = count(&got, "c");
    assert!((10..=14).contains(&n), "{when}: {got:?}");
    assert_eq!(count(&got, "m"), 16 - n, "{when}: {got:?}");
}

#[test]
fn changes_survive_hup() {
    let s = start();
    let (c, moved) = (Backend::start("c"), Backend::start("m"));
    change_all(&s, &c, &moved);
    wait_serving(&s);
    assert_changed(&s, &c, &moved, "after the change");
    s.lb.signal(libc::SIGHUP);
    wait_serving(&s);
    assert_changed(&s, &c, &moved, "after HUP");
    let served = s.a.request_count();
    let _ = bodies(s.lb.port(), 6);
    assert_eq!(s.a.request_count(), served, "the deleted server is back");
}

#[test]
fn the_file_wins_over_an_added_server_of_the_same_name() {
    let s = start();
    let (c, file_c) = (Backend::start("c"), Backend::start("file-c"));
    admin_cmd(&s.sock, &format!("add server web/c {}", c.addr()));
    wait_serving(&s);
    // The file now defines c itself, at another address.
    let yaml = yaml(&s.dir, &s.a, &s.b, "", &[]).replace(
        &format!("{{name: b, addr: \"{}\"}}", s.b.addr()),
        &format!(
            "{{name: b, addr: \"{}\"}}\n      - {{name: c, addr: \"{}\"}}",
            s.b.addr(),
            file_c.addr()
        ),
    );
    assert!(
        yaml.contains("file") || yaml.contains(&file_c.addr().to_string()),
        "{yaml}"
    );
    s.lb.write_config(&yaml);
    assert_eq!(admin_cmd(&s.sock, "reload"), "Success=1\n\n");
    let state = admin_cmd(&s.sock, "show servers state web");
    let port = file_c.addr().port().to_string();
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("3 web 3 c ") && l.split(' ').nth(18) == Some(port.as_str())),
        "{state}\n{}",
        s.lb.diagnostics()
    );
}

#[test]
fn changes_survive_a_restart_and_a_usr2_upgrade_with_state_file() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (c, moved) = (Backend::start("c"), Backend::start("m"));
    let keep = TempDir::new("dynsrv-state");
    let state = keep.join("forklb.state");
    let extra = format!("state_file: \"{}\"\n", state.display());
    let s = start_with(a, b, &extra, &[]);
    change_all(&s, &c, &moved);
    wait_serving(&s);
    let text = fs::read_to_string(&state).expect("state file");
    assert!(text.contains("# forklb-server add web/c "), "{text}");
    // USR2: the new master starts from the state file.
    s.lb.upgrade_through_usr2(&s.sock);
    assert_changed(&s, &c, &moved, "after USR2");
    // A restart: everything stops (the test's teardown kills the masters
    // and workers), then starts again from the file and the state file —
    // with a and b elsewhere now: the changes apply by name.
    drop(s);
    let s = start_with(Backend::start("a"), Backend::start("b"), &extra, &[]);
    assert_changed(&s, &c, &moved, "after a restart");
}

#[test]
fn an_added_server_of_a_tls_upstream_is_reached_over_tls() {
    let dir = TempDir::new("dynsrv-tls");
    let sock = dir.join("admin.sock");
    let (ca, ca_path) = support::tls::TestCa::in_dir(dir.path());
    let cert = ca.issue(&["localhost"]);
    let (s1, s2) = (
        support::tls::TlsBackend::start("s1", &cert),
        support::tls::TlsBackend::start("s2", &cert),
    );
    let yaml = tls_upstream_config("localhost", &ca_path, s1.addr())
        .workers(2)
        .admin_socket(&sock)
        .build();
    let lb = Forklb::start(&yaml);
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let out = admin_cmd(
        &sock,
        &format!(
            "add server web/s2 {}; enable server web/s2; disable server web/s1",
            s2.addr()
        ),
    );
    assert_eq!(
        out,
        "New server registered.\n\n\n\n",
        "{}",
        lb.diagnostics()
    );
    let ok = wait_until(Duration::from_secs(5), || {
        try_http_get(lb.port(), "/").is_ok_and(|r| r.body_str() == "s2")
    });
    assert!(ok, "s2 not reached\n{}", lb.diagnostics());
    let reqs = s2.requests();
    assert_eq!(reqs[0].sni.as_deref(), Some("localhost"), "tls.sni is sent");
}

#[test]
fn an_upstream_may_lose_every_server_and_get_one_back() {
    let s = start_with(
        Backend::start("a"),
        Backend::start("b"),
        "",
        &["health: {type: tcp, interval: 200ms, timeout: 500ms, rise: 1, fall: 1}"],
    );
    let out = admin_cmd(
        &s.sock,
        "disable server web/a; disable server web/b; del server web/a; del server web/b",
    );
    assert_eq!(out, "\n\nServer deleted.\nServer deleted.\n");
    wait_serving(&s);
    assert_eq!(http_get(s.lb.port(), "/").status, 503);
    let stat = admin_cmd(&s.sock, "show stat");
    assert!(stat.contains("web,BACKEND,"), "{stat}");
    assert!(
        !stat.contains("web,a,") && !stat.contains("web,b,"),
        "{stat}"
    );
    let c = Backend::start("c");
    admin_cmd(
        &s.sock,
        &format!("add server web/c {}; enable server web/c", c.addr()),
    );
    wait_serving(&s);
    assert!(
        wait_until(Duration::from_secs(3), || try_http_get(s.lb.port(), "/")
            .is_ok_and(|r| r.body_str() == "c")),
        "{}",
        s.lb.diagnostics()
    );
    let log = s.lb.error_log_contents();
    assert!(
        log.contains("server web/a deleted over the admin socket"),
        "{log}"
    );
    assert!(
        !log.contains("panic") && !log.contains("unexpectedly"),
        "{log}"
    );
}
