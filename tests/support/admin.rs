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

/// `show info`'s value of `field` (e.g. `CumReq`), as a number.
pub fn info_value(sock: &Path, field: &str) -> u64 {
    let info = admin_cmd(sock, "show info");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in:\n{info}"))
}

/// Field `field` (by the CSV header's names) of `show stat`'s row
/// `pxname,svname` (`svname` is `FRONTEND`, `BACKEND` or a server).
pub fn stat_field(sock: &Path, pxname: &str, svname: &str, field: &str) -> String {
    stat_fields(sock, pxname, svname, &[field]).remove(0)
}

/// Fields `fields` of `show stat`'s row `pxname,svname`, read in one go
/// (so that they describe the same moment).
pub fn stat_fields(sock: &Path, pxname: &str, svname: &str, fields: &[&str]) -> Vec<String> {
    let csv = admin_cmd(sock, "show stat");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let row: Vec<&str> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|r| r.first() == Some(&pxname) && r.get(1) == Some(&svname))
        .unwrap_or_else(|| panic!("no row {pxname},{svname}:\n{csv}"));
    fields
        .iter()
        .map(|f| {
            let col = header
                .iter()
                .position(|h| h == f)
                .unwrap_or_else(|| panic!("no field {f} in show stat"));
            row.get(col).copied().unwrap_or("").to_owned()
        })
        .collect()
}
