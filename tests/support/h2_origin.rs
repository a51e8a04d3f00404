//! [`H2Origin`]: `tests/h2_attack/h2_backend.py`, an HTTP/2 origin server
//! (h2c with prior knowledge, or TLS with ALPN `h2`) for forklb's
//! `protocol: h2c` / `h2` upstreams. It logs every connection and every
//! finished request as a JSON line, read back as [`OriginRequest`]s, so
//! tests can see what went upstream and over how many connections.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::h2::{Tool, PYTHON};
use super::tls::{write_atomically, TestCert};
use super::*;

/// One line of the origin's log: a request (`event` absent) or a new
/// connection (`event: conn`). JSON is YAML, so the crate's YAML parser
/// reads it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct OriginRequest {
    pub event: Option<String>,
    pub name: String,
    /// The connection id (1, 2, ... in accept order).
    pub conn: u64,
    pub stream: u64,
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    /// Regular fields (no pseudo-headers), as received; request trailers
    /// come last, named `x-trailer-NAME`.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha256: String,
}

impl OriginRequest {
    /// The first field called `name` (lowercase, as HTTP/2 sends it).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct H2Origin {
    name: String,
    port: u16,
    log: PathBuf,
    health: PathBuf,
    _tool: Tool,
    dir: TempDir,
}

impl H2Origin {
    /// An h2c (prior knowledge) origin on a free port.
    pub fn start(name: &str) -> H2Origin {
        H2Origin::spawn(name, None, true)
    }

    /// An origin speaking HTTP/2 over TLS (ALPN `h2` only) with `cert`.
    pub fn start_tls(name: &str, cert: &TestCert) -> H2Origin {
        H2Origin::spawn(name, Some(cert), true)
    }

    /// An origin speaking HTTP/2 over TLS that offers no ALPN at all (so
    /// nothing says HTTP/2 was agreed).
    pub fn start_tls_without_alpn(name: &str, cert: &TestCert) -> H2Origin {
        H2Origin::spawn(name, Some(cert), false)
    }

    fn spawn(name: &str, cert: Option<&TestCert>, alpn: bool) -> H2Origin {
        let dir = TempDir::new("h2origin");
        let log = dir.join("requests.jsonl");
        let health = dir.join("health");
        let script = h2_script("h2_backend.py");
        let mut args: Vec<String> = vec![
            script.display().to_string(),
            name.to_owned(),
            "0".to_owned(),
            log.display().to_string(),
            "--health".to_owned(),
            health.display().to_string(),
        ];
        if let Some(cert) = cert {
            let (c, k) = cert.write(dir.path(), "origin");
            args.extend(["--tls".to_owned(), c.display().to_string()]);
            args.push(k.display().to_string());
            if !alpn {
                args.push("--no-alpn".to_owned());
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let tool = Tool::spawn(PYTHON, &refs);
        let mut port = 0;
        let listening = wait_until(Duration::from_secs(10), || {
            port = KeyValues::parse(&tool.stdout_so_far())
                .get("port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            port != 0
        });
        assert!(
            listening,
            "h2_backend.py {name} did not start (python3-h2 missing? `make test-deps`): {}",
            tool.stdout_so_far()
        );
        H2Origin {
            name: name.to_owned(),
            port,
            log,
            health,
            _tool: tool,
            dir,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Every log line so far (connections and requests).
    fn lines(&self) -> Vec<OriginRequest> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_norway::from_str(l)
                    .unwrap_or_else(|e| panic!("bad origin log line {l:?}: {e}"))
            })
            .collect()
    }

    /// The requests it finished, in order.
    pub fn requests(&self) -> Vec<OriginRequest> {
        self.lines()
            .into_iter()
            .filter(|r| r.event.is_none())
            .collect()
    }

    /// Its requests for `path` (exact, with the query).
    pub fn requests_for(&self, path: &str) -> Vec<OriginRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Requests for `path` it refused unprocessed (RST_STREAM
    /// REFUSED_STREAM, or a GOAWAY below them).
    pub fn refusals(&self, path: &str) -> usize {
        self.lines()
            .iter()
            .filter(|r| r.event.as_deref() == Some("refused") && r.path == path)
            .count()
    }

    /// Connections accepted so far (checks included).
    pub fn connections(&self) -> usize {
        self.lines()
            .iter()
            .filter(|r| r.event.as_deref() == Some("conn"))
            .count()
    }

    /// The distinct connections that carried requests for paths starting
    /// with `prefix`.
    pub fn connections_serving(&self, prefix: &str) -> BTreeSet<u64> {
        self.requests()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .map(|r| r.conn)
            .collect()
    }

    /// What `/health` answers from now on.
    pub fn set_health(&self, status: u16) {
        write_atomically(&self.health, status.to_string().as_bytes());
    }

    /// Requests for `/health` so far.
    pub fn health_checks(&self) -> usize {
        self.requests_for("/health").len()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
