//! DNS re-resolution (issue 18 item 6): an upstream with `resolve:` looks
//! its servers' host names up again on its own; a new address applies
//! without a reload (logged, counters kept), a failed lookup keeps the last
//! address. forklb runs in a private mount namespace whose `/etc/hosts`
//! (and `/etc/resolv.conf`, pointing at nothing, so a name missing from the
//! hosts file fails at once) the test rewrites: real `getaddrinfo`, no DNS
//! server needed. Needs root for the namespace (CI runs as root).

mod support;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

const NAME: &str = "app.forklb.test";

/// A wrapper that runs forklb with `hosts` and `resolv` bind-mounted over
/// the system's files in a mount namespace of its own (same pid: exec).
fn wrapper(dir: &Path) -> PathBuf {
    let path = dir.join("forklb-private-hosts.sh");
    fs::write(
        &path,
        "#!/bin/sh\n\
         exec unshare --mount --propagation private sh -c \
         'mount --bind \"$FORKLB_TEST_HOSTS\" /etc/hosts && \
          mount --bind \"$FORKLB_TEST_RESOLV\" /etc/resolv.conf && \
          exec \"$FORKLB_TEST_BIN\" \"$@\"' sh \"$@\"\n",
    )
    .expect("write wrapper");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
    path
}

/// Rewrites the hosts file in place (the bind mount follows the inode).
fn set_hosts(path: &Path, ip: Option<&str>) {
    let mut text = "127.0.0.1 localhost\n".to_owned();
    if let Some(ip) = ip {
        text.push_str(&format!("{ip} {NAME}\n"));
    }
    fs::write(path, text).expect("write hosts");
}

fn body(port: u16) -> String {
    match try_http_get(port, "/") {
        Ok(r) if r.status == 200 => String::from_utf8_lossy(&r.body).into_owned(),
        Ok(r) => format!("status {}", r.status),
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn a_changed_address_applies_without_a_reload_and_a_failed_lookup_keeps_it() {
    let dir = TempDir::new("dnsres");
    let hosts = dir.join("hosts");
    let resolv = dir.join("resolv.conf");
    set_hosts(&hosts, Some("127.0.0.1"));
    fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .expect("write resolv.conf");
    // The same port on two loopback addresses: only DNS tells them apart.
    let port = free_port();
    let first = Backend::start_at(
        "first",
        SocketAddr::from(([127, 0, 0, 1], port)),
        BackendOpts::default(),
    );
    let second = Backend::start_at(
        "second",
        SocketAddr::from(([127, 0, 0, 2], port)),
        BackendOpts::default(),
    );
    let sock = dir.join("admin.sock");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .admin_socket(&sock)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("app"))
        .upstream("app", [Srv::new("s1", format!("{NAME}:{port}"))])
        .upstream_opt("resolve: 200ms")
        .build();
    let opts = StartOpts {
        exe: Some(wrapper(dir.path())),
        env: vec![
            ("FORKLB_TEST_HOSTS".into(), hosts.display().to_string()),
            ("FORKLB_TEST_RESOLV".into(), resolv.display().to_string()),
            (
                "FORKLB_TEST_BIN".into(),
                env!("CARGO_BIN_EXE_forklb").to_owned(),
            ),
        ],
        ..StartOpts::default()
    };
    let lb = Forklb::start_with(&yaml, &opts);
    let lb_port = lb.port();
    for _ in 0..4 {
        assert_eq!(body(lb_port), "first");
    }
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));

    // The name moves: new requests go to the new address, no reload.
    set_hosts(&hosts, Some("127.0.0.2"));
    assert!(
        wait_until(Duration::from_secs(5), || body(lb_port) == "second"),
        "requests never reached the new address\n{}",
        lb.diagnostics()
    );
    for _ in 0..4 {
        assert_eq!(body(lb_port), "second", "{}", lb.diagnostics());
    }
    assert!(
        lb.wait_log(
            &format!("server app/s1: {NAME} now resolves to 127.0.0.2, was 127.0.0.1:{port}"),
            Duration::from_secs(2)
        ),
        "{}",
        lb.diagnostics()
    );
    // Its counters went on (the 4 + 4 requests and the probes above).
    let stot: u64 = stat_field(&sock, "app", "s1", "stot").parse().unwrap_or(0);
    assert!(stot >= 8, "stot {stot}");
    assert_eq!(
        stat_field(&sock, "app", "s1", "addr"),
        format!("127.0.0.2:{port}")
    );

    // The name disappears: the last address stays.
    let served_before = second.request_count();
    set_hosts(&hosts, None);
    assert!(
        lb.wait_log(
            &format!("it keeps 127.0.0.2:{port}"),
            Duration::from_secs(5)
        ),
        "{}",
        lb.diagnostics()
    );
    for _ in 0..3 {
        assert_eq!(body(lb_port), "second", "{}", lb.diagnostics());
    }
    assert!(second.request_count() >= served_before + 3);
    // Back again: said once.
    set_hosts(&hosts, Some("127.0.0.2"));
    assert!(
        lb.wait_log(&format!("{NAME} resolves again"), Duration::from_secs(5)),
        "{}",
        lb.diagnostics()
    );
    assert_eq!(lb.log_lines("it keeps").len(), 1, "{}", lb.diagnostics());
    drop(first);
}

#[test]
fn resolve_is_validated() {
    let dir = TempDir::new("dnsresval");
    let cfg = dir.join("f.yaml");
    fs::write(
        &cfg,
        "listeners:\n  - name: web\n    bind: [\"127.0.0.1:1\"]\n    routes: [{upstream: app}]\n\
         upstreams:\n  app:\n    resolve: 10ms\n    servers: [{addr: \"localhost:80\"}]\n",
    )
    .expect("write config");
    let out = run_forklb(
        &["-t", "-c", cfg.to_str().unwrap_or_default()],
        Duration::from_secs(10),
    );
    assert_ne!(out.code(), Some(0), "{}", out.combined());
    assert!(
        out.combined()
            .contains("upstreams.app.resolve: must be at least 100ms"),
        "{}",
        out.combined()
    );
}
