//! Free ports, bounded waiting, temporary folders, deterministic bytes.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Ports `free_port` hands out: below Linux's ephemeral range (32768 and
/// up), from which the kernel picks the ports of `bind(0)` (our backends)
/// and of outgoing connections. A port taken from the ephemeral range and
/// freed again for forklb to bind later could meanwhile be given to a
/// backend of a test running in parallel; forklb then could not listen,
/// and the test would talk to that backend (a TLS client saw a plain HTTP
/// answer). Here each port is handed out once per test process.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// A port on 127.0.0.1 that was free a moment ago, never handed out before
/// by this process.
pub fn free_port() -> u16 {
    let span = usize::from(PORTS.end - PORTS.start);
    // Test processes running at once start far apart.
    let start = (std::process::id() as usize).wrapping_mul(7919) % span;
    for _ in 0..span {
        let k = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = PORTS.start + ((start + k) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}

/// A 127.0.0.1 address with nothing listening on it (connections are refused).
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh folder under the system temporary folder, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("forklb-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temporary folder");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), for garbage input and bodies.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A child process (a peer server a test runs: HAProxy, nginx) killed and
/// reaped when the test is done with it, however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
