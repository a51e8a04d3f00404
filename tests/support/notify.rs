//! A bound datagram socket standing in for systemd's `NOTIFY_SOCKET`: what
//! forklb tells systemd (sd_notify) arrives here, one message per datagram.
//! The real systemd is driven in tests/systemd_unit.rs.

use super::{StartOpts, TempDir};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct NotifySocket {
    _dir: TempDir,
    path: PathBuf,
    sock: UnixDatagram,
    /// Every message received so far, in order.
    pub seen: Vec<String>,
}

/// `msg` has `line` as one of its lines (`READY=1`, `MAINPID=42`, ...).
pub fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = TempDir::new("notify");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a read timeout");
        NotifySocket {
            _dir: dir,
            path,
            sock,
            seen: Vec::new(),
        }
    }

    /// Start options that point forklb's `NOTIFY_SOCKET` here.
    pub fn opts(&self) -> StartOpts {
        StartOpts {
            env: vec![(
                "NOTIFY_SOCKET".into(),
                self.path.to_string_lossy().into_owned(),
            )],
            ..Default::default()
        }
    }

    /// The next message, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(m.clone());
                return Some(m);
            }
        }
        None
    }

    /// The next message must arrive within `timeout` and satisfy `ok`.
    pub fn expect_next(
        &mut self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        match self.next(timeout) {
            Some(m) if ok(&m) => m,
            other => panic!(
                "expected {what}, got {other:?} (all messages: {:?})",
                self.seen
            ),
        }
    }

    /// Some message within `timeout` has every line of `lines` (others
    /// before it are recorded and skipped).
    pub fn expect_lines(&mut self, lines: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(m) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if lines.iter().all(|want| has_line(&m, want)) {
                return;
            }
        }
        panic!("no message with {lines:?}; messages: {:?}", self.seen);
    }

    /// Every message that arrives within `window`.
    pub fn drain(&mut self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(m) = self.next(deadline.saturating_duration_since(Instant::now())) {
            out.push(m);
        }
        out
    }

    /// Some message so far had `line`.
    pub fn said(&self, line: &str) -> bool {
        self.seen.iter().any(|m| has_line(m, line))
    }
}
