//! [`HaproxyProcess`]: a real HAProxy 2.6 (`make test-deps` installs it),
//! for tests that compare forklb's answers with HAProxy's or put HAProxy in
//! front of forklb. It runs in the foreground (`-db`) on a configuration
//! the test writes, and is killed when dropped.

use super::KillOnDrop;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// Debian's HAProxy binary.
pub fn haproxy_bin() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is not installed (make test-deps installs it)")
}

/// A running HAProxy, killed on drop.
pub struct HaproxyProcess(KillOnDrop);

impl HaproxyProcess {
    /// Writes `config` to `dir/haproxy.cfg` and starts HAProxy on it. The
    /// caller waits for what it needs (its admin socket, a port).
    pub fn start(dir: &Path, config: &str) -> HaproxyProcess {
        let path = dir.join("haproxy.cfg");
        fs::write(&path, config).expect("write haproxy.cfg");
        let child = Command::new(haproxy_bin())
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy (make test-deps installs it)");
        HaproxyProcess(KillOnDrop(child))
    }
}
