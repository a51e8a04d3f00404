//! The runtime API over the admin socket, driven with `socat` exactly as
//! operators' scripts do (`echo "..." | socat stdio /path/admin.sock`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Sends `input` through socat and returns everything the socket answered.
pub fn socat(sock: &Path, input: &str) -> String {
    let mut child = Command::new("socat")
        .arg("-t5")
        .arg("stdio")
        .arg(format!("unix-connect:{}", sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat must be installed (.ci/run installs it)");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("socat output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One command `line` (newline added) through socat; the answer.
pub fn admin_cmd(sock: &Path, line: &str) -> String {
    socat(sock, &format!("{line}\n"))
}
