//! The admin socket's framing and argument checking, as HAProxy 2.6's
//! stats socket does them (each expected answer here was taken from a live
//! HAProxy 2.6 with the same command): pipelined commands, commands never
//! completed, empty commands, prompts, the order in which `B/S` and the
//! other arguments are checked, and arguments HAProxy ignores.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;
use support::*;

struct Setup {
    _lb: Forklb,
    _dir: TempDir,
    sock: PathBuf,
    _backend: Backend,
}

/// Upstream `app` (servers s1, s2, s3 of weights 1, 2, 3) and `plain`
/// (p1, p2), none checked; an admin socket at admin level.
fn start() -> Setup {
    start_with(|c, be| {
        c.route(Route::to("app"))
            .upstream(
                "app",
                [
                    Srv::new("s1", be.addr()).weight(1),
                    Srv::new("s2", be.addr()).weight(2),
                    Srv::new("s3", be.addr()).weight(3),
                ],
            )
            .upstream(
                "plain",
                [Srv::new("p1", be.addr()), Srv::new("p2", be.addr())],
            )
    })
}

/// forklb with one worker, listener `web` and an admin socket at admin
/// level, and what `build` adds (routes, upstreams on the backend `be`);
/// returns once the socket is there.
fn start_with(build: impl FnOnce(ConfigBuilder, &Backend) -> ConfigBuilder) -> Setup {
    let be = Backend::start("x");
    let dir = TempDir::new("adminproto");
    let sock = dir.join("admin.sock");
    let base = ConfigBuilder::new()
        .workers(1)
        .admin_socket(&sock)
        .listener("web", &["127.0.0.1:$PORT"]);
    let lb = Forklb::start(&build(base, &be).build());
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    Setup {
        _lb: lb,
        _dir: dir,
        sock,
        _backend: be,
    }
}

/// `show version`'s answer without its empty line.
fn version(s: &Setup) -> String {
    admin_cmd(&s.sock, "show version").trim_end().to_owned()
}

const EMPTY_COMMAND: &str = "Unknown command. Please enter one of the following commands only:\n";

// ---------------------------------------------------------------------------
// Framing

#[test]
fn every_line_already_sent_is_answered() {
    let s = start();
    assert_eq!(
        socat(
            &s.sock,
            "get weight app/s1\nget weight app/s2\nget weight app/s3\n"
        ),
        "1 (initial 1)\n\n2 (initial 2)\n\n3 (initial 3)\n\n"
    );
    // The second line switches to interactive mode, the third gets a prompt.
    let v = version(&s);
    assert_eq!(
        socat(&s.sock, "show version\nprompt\nshow version\n"),
        format!("{v}\n\n\n> {v}\n\n> ")
    );
}

#[test]
fn a_command_without_its_newline_is_never_run() {
    let s = start();
    assert_eq!(socat(&s.sock, "show version"), "");
    assert_eq!(socat(&s.sock, "set weight app/s1 7"), "");
    assert_eq!(admin_cmd(&s.sock, "get weight app/s1"), "1 (initial 1)\n\n");
    assert_eq!(
        socat(&s.sock, "get weight app/s1\nget weight app/s2"),
        "1 (initial 1)\n\n"
    );
    // Interactive mode too drops it at EOF.
    assert_eq!(socat(&s.sock, "prompt\nget weight app/s2"), "\n> ");
    // A `;` ends a command as a newline does.
    assert_eq!(socat(&s.sock, "get weight app/s2;"), "2 (initial 2)\n\n");
    assert_eq!(
        socat(&s.sock, "get weight app/s2;get weight app/s3"),
        "2 (initial 2)\n\n"
    );
}

#[test]
fn a_partial_command_keeps_the_session_for_its_end() {
    let s = start();
    let mut c = UnixStream::connect(&s.sock).expect("connect");
    c.write_all(b"get weight app/s1\nget weight ap")
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(b"p/s3\n").expect("write");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read until closed");
    assert_eq!(out, "1 (initial 1)\n\n3 (initial 3)\n\n");
}

#[test]
fn empty_commands_get_the_list_of_commands() {
    let s = start();
    for (input, lists) in [
        ("\n", 1),
        (" \n", 1),
        ("\t\n", 1),
        (";\n", 2),
        ("get weight app/s1;\n", 1),
        ("get weight app/s1;;get weight app/s2\n", 1),
        ("prompt\n\n", 1),
    ] {
        let out = socat(&s.sock, input);
        assert_eq!(
            out.matches(EMPTY_COMMAND).count(),
            lists,
            "{input:?}:\n{out}"
        );
        assert!(out.contains("  quit "), "{input:?}:\n{out}");
    }
    let out = socat(&s.sock, "\n");
    assert!(out.starts_with(EMPTY_COMMAND), "{out}");
    assert!(
        out.ends_with("  quit                                    : disconnect\n\n"),
        "{out}"
    );
    // The answer around an empty command in the middle of a line.
    let out = socat(&s.sock, "get weight app/s1;;get weight app/s2\n");
    assert!(out.starts_with("1 (initial 1)\n\n"), "{out}");
    assert!(out.ends_with(": disconnect\n\n2 (initial 2)\n\n"), "{out}");
}

#[test]
fn each_command_gets_its_own_prompt() {
    let s = start();
    assert_eq!(
        socat(&s.sock, "prompt\nget weight app/s1;get weight app/s2\n"),
        "\n> 1 (initial 1)\n\n> 2 (initial 2)\n\n> "
    );
    let out = socat(&s.sock, "prompt\n\n");
    assert!(out.starts_with(&format!("\n> {EMPTY_COMMAND}")), "{out}");
    assert!(out.ends_with(": disconnect\n\n> "), "{out}");
}

#[test]
fn a_second_prompt_leaves_interactive_mode() {
    let s = start();
    // Off again: no more prompts, and the session ends once nothing is
    // left to read, as a non-interactive one.
    assert_eq!(
        socat(
            &s.sock,
            "prompt\nprompt\nget weight app/s1\nget weight app/s2\n"
        ),
        "\n> \n1 (initial 1)\n\n2 (initial 2)\n\n"
    );
    let mut c = UnixStream::connect(&s.sock).expect("connect");
    c.write_all(b"prompt\nprompt\n").expect("write");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = String::new();
    c.read_to_string(&mut out)
        .expect("closed without the client closing");
    assert_eq!(out, "\n> \n");
}

// ---------------------------------------------------------------------------
// Arguments

const SET_SERVER_USAGE: &str = "usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n\n";

/// The server is looked up before anything else is checked.
#[test]
fn the_server_is_looked_up_before_the_other_arguments() {
    let s = start();
    for (cmd, answer) in [
        ("set weight nope/p1", "No such backend.\n\n"),
        ("set weight nope/p1 5", "No such backend.\n\n"),
        ("set weight plain/nope", "No such server.\n\n"),
        ("set weight plain", "Require 'backend/server'.\n\n"),
        ("set weight plain/p1", "Require <weight> or <weight%>.\n\n"),
        ("set server nope/p1 weight", "No such backend.\n\n"),
        ("set server nope/p1", "No such backend.\n\n"),
        ("set server nope/p1 state", "No such backend.\n\n"),
        ("set server nope/p1 health", "No such backend.\n\n"),
        ("set server plain/nope foo", "No such server.\n\n"),
        ("set server plain/nope state", "No such server.\n\n"),
        ("set server plain", "Require 'backend/server'.\n\n"),
        ("set server plain/", "Require 'backend/server'.\n\n"),
        ("set server", "Require 'backend/server'.\n\n"),
        ("set maxconn server nope/x 5", "No such backend.\n\n"),
        ("set maxconn server plain/p1", "Require <maxconn>.\n\n"),
        ("enable health plain", "Require 'backend/server'.\n\n"),
        ("disable health plain/x", "No such server.\n\n"),
        ("enable server nope/x", "No such backend.\n\n"),
        ("get weight plain/", "Require 'backend/server'.\n\n"),
        ("get weight /p1 x", "No such backend.\n\n"),
        (
            "shutdown sessions server plain/",
            "Require 'backend/server'.\n\n",
        ),
    ] {
        assert_eq!(admin_cmd(&s.sock, cmd), answer, "{cmd}");
    }
}

#[test]
fn set_server_without_a_known_subcommand_gets_haproxys_usage() {
    let s = start();
    for cmd in [
        "set server plain/p2",
        "set server plain/p2 foo",
        // Subcommands are case-sensitive, as in HAProxy.
        "set server plain/p1 State ready",
    ] {
        assert_eq!(admin_cmd(&s.sock, cmd), SET_SERVER_USAGE, "{cmd}");
    }
    assert_eq!(
        admin_cmd(&s.sock, "show servers state plain")
            .matches(" 2 0 1 1 ")
            .count(),
        2
    );
}

/// Words after those a command on a server reads are ignored, as by
/// HAProxy.
#[test]
fn extra_words_after_a_server_command_are_ignored() {
    let s = start();
    assert_eq!(
        admin_cmd(&s.sock, "get weight app/s1 extra"),
        "1 (initial 1)\n\n"
    );
    assert_eq!(admin_cmd(&s.sock, "set weight app/s1 255 extra"), "\n");
    assert_eq!(
        admin_cmd(&s.sock, "get weight app/s1"),
        "255 (initial 1)\n\n"
    );
    assert_eq!(admin_cmd(&s.sock, "set server plain/p2 weight 3 4"), "\n");
    assert_eq!(
        admin_cmd(&s.sock, "get weight plain/p2"),
        "3 (initial 1)\n\n"
    );
    assert_eq!(admin_cmd(&s.sock, "disable server app/s1 extra"), "\n");
    assert_eq!(stat_field(&s.sock, "app", "s1", "status"), "MAINT");
    assert_eq!(admin_cmd(&s.sock, "enable server app/s1 extra"), "\n");
    assert_eq!(
        admin_cmd(&s.sock, "set server app/s1 state drain extra"),
        "\n"
    );
    assert_eq!(stat_field(&s.sock, "app", "s1", "status"), "DRAIN");
    assert_eq!(
        admin_cmd(&s.sock, "set server app/s1 state ready extra"),
        "\n"
    );
    assert_eq!(stat_field(&s.sock, "app", "s1", "status"), "no check");
    assert_eq!(
        admin_cmd(&s.sock, "enable health app/s1 extra"),
        "Health check was not configured on this server, cannot enable.\n\n"
    );
    assert_eq!(admin_cmd(&s.sock, "disable health app/s1 extra"), "\n");
}

/// Words after a complete command are ignored, as by HAProxy — but not
/// by `show stat`, whose contract makes an unknown argument an error.
#[test]
fn extra_words_after_other_commands_are_ignored() {
    let s = start();
    assert_eq!(admin_cmd(&s.sock, "disable frontend web extra"), "\n");
    assert_eq!(stat_field(&s.sock, "web", "FRONTEND", "status"), "PAUSED");
    assert_eq!(admin_cmd(&s.sock, "enable frontend web extra"), "\n");
    assert_eq!(stat_field(&s.sock, "web", "FRONTEND", "status"), "OPEN");
    // Any word but `all` clears the maxima only, as in HAProxy.
    assert_eq!(admin_cmd(&s.sock, "clear counters foo"), "\n");
    assert_eq!(admin_cmd(&s.sock, "clear counters all extra"), "\n");
    assert_eq!(
        admin_cmd(&s.sock, "show servers state app extra"),
        admin_cmd(&s.sock, "show servers state app")
    );
    assert_eq!(
        admin_cmd(&s.sock, "show servers state nope extra"),
        "Can't find backend.\n\n"
    );
    assert_eq!(
        admin_cmd(&s.sock, "show backend x"),
        "# name\napp\nplain\n\n"
    );
    let v = version(&s);
    assert_eq!(admin_cmd(&s.sock, "show version x"), format!("{v}\n\n"));
    assert_eq!(socat(&s.sock, "prompt x\nquit x\nshow version\n"), "\n> ");
    assert!(
        admin_cmd(&s.sock, "show stat extra").starts_with("Unknown argument 'extra' to show stat"),
        "{}",
        admin_cmd(&s.sock, "show stat extra")
    );
}

// ---------------------------------------------------------------------------
// show stat up / no-maint

/// Upstream `chk` (TCP checks) with `c1` on a closed port (DOWN) and
/// `c2`..`c4` on a live backend, `c2` put in maintenance; and `plain` (p1,
/// p2, unchecked). HAProxy 2.6 says `UP (2/4)` for such a backend.
fn start_checked() -> Setup {
    let closed = format!("127.0.0.1:{}", free_port());
    let s = start_with(|c, be| {
        c.route(Route::to("plain"))
            .upstream(
                "plain",
                [Srv::new("p1", be.addr()), Srv::new("p2", be.addr())],
            )
            .upstream(
                "chk",
                [
                    Srv::new("c1", &closed),
                    Srv::new("c2", be.addr()),
                    Srv::new("c3", be.addr()),
                    Srv::new("c4", be.addr()),
                ],
            )
            .upstream_opt("health: {type: tcp, interval: 100ms, timeout: 500ms, rise: 1, fall: 1}")
    });
    assert_eq!(admin_cmd(&s.sock, "set server chk/c2 state maint"), "\n");
    assert!(
        wait_until(Duration::from_secs(5), || {
            stat_field(&s.sock, "chk", "c1", "status") == "DOWN"
                && stat_field(&s.sock, "chk", "c3", "status") == "UP"
                && stat_field(&s.sock, "chk", "c4", "status") == "UP"
        }),
        "{}",
        admin_cmd(&s.sock, "show stat")
    );
    s
}

/// `pxname,svname,status` of the CSV rows of `chk`.
fn chk_rows(csv: &str) -> Vec<String> {
    csv.lines()
        .filter(|l| l.starts_with("chk,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("{},{}", f[1], f[17])
        })
        .collect()
}

#[test]
fn backend_status_counts_servers_when_some_are_hidden() {
    let s = start_checked();
    assert_eq!(
        chk_rows(&admin_cmd(&s.sock, "show stat")),
        ["c1,DOWN", "c2,MAINT", "c3,UP", "c4,UP", "BACKEND,UP"]
    );
    assert_eq!(
        chk_rows(&admin_cmd(&s.sock, "show stat up")),
        ["c3,UP", "c4,UP", "BACKEND,UP (2/4)"]
    );
    assert_eq!(
        chk_rows(&admin_cmd(&s.sock, "show stat no-maint")),
        ["c1,DOWN", "c3,UP", "c4,UP", "BACKEND,UP (2/4)"]
    );
    // The flags add up, as in HAProxy: `no-maint` after `up` hides no less.
    assert_eq!(
        chk_rows(&admin_cmd(&s.sock, "show stat up no-maint")),
        ["c3,UP", "c4,UP", "BACKEND,UP (2/4)"]
    );
    assert_eq!(
        chk_rows(&admin_cmd(&s.sock, "show stat -1 2 -1 up")),
        ["BACKEND,UP (2/4)"]
    );
    assert_eq!(
        chk_rows(&admin_cmd(&s.sock, "show stat -1 2 -1")),
        ["BACKEND,UP"]
    );
    let typed = admin_cmd(&s.sock, "show stat up typed");
    assert!(
        typed.contains(".0.17.status.1:SGP:str:UP (2/4)\n"),
        "{typed}"
    );
    assert!(
        typed.contains(".0.17.status.1:SGP:str:UP (2/2)\n"),
        "{typed}"
    );
    let json = admin_cmd(&s.sock, "show stat json no-maint");
    assert!(
        json.contains(r#""value":{"type":"str","value":"UP (2/4)"}"#),
        "{json}"
    );
    assert!(!admin_cmd(&s.sock, "show stat typed").contains("(2/4)"));
}

/// A server that takes no new requests (NOLB) is not stopped: `up` shows
/// it and the BACKEND row counts it, as in HAProxy 2.6.
#[test]
fn up_keeps_a_nolb_server() {
    let s = start_checked();
    assert_eq!(
        admin_cmd(&s.sock, "set server plain/p1 health stopping"),
        "\n"
    );
    let csv = admin_cmd(&s.sock, "show stat up");
    let plain: Vec<&str> = csv.lines().filter(|l| l.starts_with("plain,")).collect();
    assert_eq!(plain.len(), 3, "{csv}");
    assert!(
        plain[0].starts_with("plain,p1,") && plain[0].contains(",NOLB,"),
        "{csv}"
    );
    assert!(plain[2].contains(",UP (2/2),"), "{csv}");
    assert_eq!(admin_cmd(&s.sock, "set server plain/p1 health down"), "\n");
    let csv = admin_cmd(&s.sock, "show stat up");
    let plain: Vec<&str> = csv.lines().filter(|l| l.starts_with("plain,")).collect();
    assert_eq!(plain.len(), 2, "{csv}");
    assert!(plain[1].contains(",UP (1/2),"), "{csv}");
}
