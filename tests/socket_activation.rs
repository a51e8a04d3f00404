//! systemd socket activation: sockets passed as LISTEN_FDS (fd 3, ...) with
//! LISTEN_PID set to forklb's pid are adopted instead of binding.

mod support;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;
use support::*;

#[test]
fn listen_fds_socket_is_adopted() {
    let b = Backend::start("b1");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = TempDir::new("sockact");
    let conf = dir.join("forklb.yaml");
    let pid_file = dir.join("forklb.pid");
    let yaml = proxy_config_for(1, &[&b]).replace("$PORT", &port.to_string());
    std::fs::write(
        &conf,
        format!(
            "pid_file: \"{}\"\nerror_log: \"{}\"\n{yaml}",
            pid_file.display(),
            dir.join("error.log").display()
        ),
    )
    .unwrap();
    let fd = listener.as_raw_fd();
    // LISTEN_PID must be the pid of the process that reads it: the shell
    // sets it to its own pid and then execs forklb in place, as systemd does.
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" -c \"$1\"")
        .arg(env!("CARGO_BIN_EXE_forklb"))
        .arg(&conf)
        .env_remove("FORKLB_FDS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    // SAFETY: between fork and exec we only dup2 the socket to fd 3.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let ok = wait_until(Duration::from_secs(10), || pid_file.exists());
    // The port was never bound by forklb (it is taken by our socket), so a
    // served request proves the inherited socket is used.
    let result = if ok {
        try_http_get(port, "/x")
    } else {
        Err(std::io::Error::other("not ready"))
    };
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    kill(child.id() as i32, libc::SIGTERM);
    let _ = child.wait();
    drop(listener);
    let r = result.unwrap_or_else(|e| panic!("no response via the activated socket: {e}\n{log}"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"));
    assert!(
        log.contains("systemd socket activation: 1 socket(s)"),
        "{log}"
    );
}
