//! Per-server `maxconn` (issue 17 item 5): the configuration key, `set
//! maxconn server` with HAProxy 2.6's answers (compared with a real
//! HAProxy), `show stat`'s `slim`, and the limit kept across HUP, USR2 and
//! (with `state_file`) restarts.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

struct Setup {
    lb: Forklb,
    sock: PathBuf,
    _dir: TempDir,
    _backends: Vec<Backend>,
}

/// Two workers; upstream `main` with servers `a` (maxconn 3) and `b` (no
/// limit); `extra` top-level keys.
fn start(extra: &str) -> Setup {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = TempDir::new("maxconn");
    let sock = dir.join("admin.sock");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .raw(extra)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .upstream(
            "main",
            [Srv::new("a", a.addr()).maxconn(3), Srv::new("b", b.addr())],
        )
        .build();
    let lb = Forklb::start(&yaml);
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    Setup {
        lb,
        sock,
        _dir: dir,
        _backends: vec![a, b],
    }
}

/// HAProxy 2.6 with backend `main` of servers `a` (maxconn 3) and `b`.
struct Haproxy {
    child: Child,
    sock: PathBuf,
    _dir: TempDir,
}

impl Haproxy {
    fn start() -> Haproxy {
        let dir = TempDir::new("haproxy-maxconn");
        let sock = dir.join("admin.sock");
        let cfg = format!(
            "global\n    stats socket {} mode 600 level admin\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend web\n    bind 127.0.0.1:{port}\n    default_backend main\n\
             backend main\n    server a 127.0.0.1:9 maxconn 3\n    server b 127.0.0.1:9\n",
            sock.display(),
            port = free_port(),
        );
        let cfg_path = dir.join("haproxy.cfg");
        fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
        let child = Command::new(haproxy_bin())
            .args(["-db", "-f"])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy (make test-deps installs it)");
        assert!(
            wait_until(Duration::from_secs(10), || sock.exists()
                && admin_cmd(&sock, "show info").contains("Name: HAProxy")),
            "haproxy did not start"
        );
        Haproxy {
            child,
            sock,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy_bin() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is not installed (make test-deps installs it)")
}

#[test]
fn set_maxconn_server_answers_byte_for_byte_as_haproxy() {
    let s = start("");
    let hap = Haproxy::start();
    // Each command, then the slim it leaves on main/a (HAProxy's own
    // `show stat` is the reference for that too).
    let cases = [
        "set maxconn server main/a 10",
        "set maxconn server main/a",
        "set maxconn server main/a abc",
        "set maxconn server main/a 10x",
        "set maxconn server main/a -",
        "set maxconn server main/a +7",
        "set maxconn server main/a -5",
        "set maxconn server main/a 99999999999",
        "set maxconn server main/a 99999999999999999999999",
        "set maxconn server main/a 0",
        "set maxconn server main/zz 5",
        "set maxconn server nope/a 5",
        "set maxconn server nope/a abc",
        "set maxconn server main/zz",
        "set maxconn server main",
        "set maxconn server main/ 4",
        "set maxconn server",
        "set maxconn server main/b 2",
        "set maxconn server main/a 4",
        // Empty names, as HAProxy's cli_find_server (and `get weight`) read them.
        "get weight main/",
        "get weight /a",
        "set weight main/ 3",
        "disable server /a",
    ];
    for cmd in cases {
        let want = admin_cmd(&hap.sock, cmd);
        assert_eq!(admin_cmd(&s.sock, cmd), want, "{cmd}");
        for srv in ["a", "b"] {
            assert_eq!(
                stat_field(&s.sock, "main", srv, "slim"),
                stat_field(&hap.sock, "main", srv, "slim"),
                "slim of {srv} after {cmd}"
            );
        }
    }
    // The end state: a limited to 4, b to 2; a server without a limit
    // shows an empty slim (checked above against HAProxy after `... 0`).
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "4");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "2");
    assert!(admin_cmd(&s.sock, "help set maxconn")
        .contains("set maxconn server <bk>/<srv>           : change a server's maxconn setting"));
}

#[test]
fn configured_maxconn_shows_as_slim() {
    let s = start("");
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "3");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "");
}

#[test]
fn runtime_maxconn_survives_hup_and_usr2() {
    let dir = TempDir::new("maxconnstate");
    let state = dir.join("forklb.state");
    let s = start(&format!("state_file: \"{}\"\n", state.display()));
    assert_eq!(
        admin_cmd(
            &s.sock,
            "set maxconn server main/a 7; set maxconn server main/b 2"
        ),
        "\n\n"
    );
    let text = fs::read_to_string(&state).expect("state file written");
    assert!(
        text.lines()
            .any(|l| l.starts_with("1 main 1 a ") && l.ends_with(" 7 3")),
        "{text}"
    );
    // HUP: the new generation keeps both (changed at runtime).
    s.lb.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || admin_cmd(
        &s.sock,
        "show info"
    )
    .contains("Generation: 2")));
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "7");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "2");
    // USR2: the new master reads them back from the state file.
    let old = s.lb.master_pid();
    s.lb.signal(libc::SIGUSR2);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .lb
            .pid_file_pid()
            .is_some_and(|p| p != old)),
        "new master did not come up\n{}",
        s.lb.diagnostics()
    );
    let Some(new) = s.lb.pid_file_pid() else {
        panic!("no new master pid");
    };
    s.lb.track(new);
    s.lb.signal(libc::SIGQUIT);
    assert!(wait_until(Duration::from_secs(10), || admin_cmd(
        &s.sock,
        "show info"
    )
    .contains(&format!("Pid: {new}"))));
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "7");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "2");
    // `show servers state` itself stays HAProxy's (no maxconn columns).
    let st = admin_cmd(&s.sock, "show servers state");
    assert!(
        st.lines()
            .any(|l| l.starts_with("1 main 1 a ") && l.ends_with(" - - 0")),
        "{st}"
    );
    kill(new, libc::SIGQUIT);
}
