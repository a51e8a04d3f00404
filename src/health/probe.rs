//! What an HTTP check says and reads, whatever the protocol: a [`Probe`]
//! queues bytes to send and digests what arrives until it knows the
//! response status. The checker's socket stages (connect, TLS, write,
//! read) drive any probe the same way, so HTTP/1.1 and HTTP/2 checks share
//! them and the `expect_status` judgement.

use super::h2probe::H2Probe;
pub(super) use super::outcome::Outcome;
use crate::config::UpstreamProtocol;

/// Bytes of an HTTP/1.1 check response read at most (the status line is
/// enough).
const MAX_RESPONSE: usize = 4096;

/// What to ask a server, built once per target and turned into a fresh
/// [`Probe`] for every check.
#[derive(Debug, Clone)]
pub(super) enum Request {
    /// `GET path HTTP/1.1`, complete on the wire.
    Http1(Vec<u8>),
    /// The same GET as an HTTP/2 request (`protocol: h2` / `h2c`).
    H2 {
        scheme: &'static str,
        authority: String,
        path: String,
    },
}

impl Request {
    /// The check request for `path` with `authority` as Host/`:authority`,
    /// in the upstream's protocol (`tls`: the connection is HTTPS).
    pub fn new(protocol: UpstreamProtocol, tls: bool, path: &str, authority: &str) -> Request {
        if protocol.is_h2() {
            return Request::H2 {
                scheme: if tls { "https" } else { "http" },
                authority: authority.to_owned(),
                path: path.to_owned(),
            };
        }
        Request::Http1(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: forklb-health\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    }

    pub fn probe(&self) -> Probe {
        match self {
            Request::Http1(bytes) => Probe::Http1(H1Probe {
                request: bytes.clone(),
                sent: 0,
                response: Vec::new(),
            }),
            Request::H2 {
                scheme,
                authority,
                path,
            } => Probe::H2(Box::new(H2Probe::new(scheme, authority, path))),
        }
    }
}

/// One check's exchange.
pub(super) enum Probe {
    Http1(H1Probe),
    H2(Box<H2Probe>),
}

impl Probe {
    /// What is queued to be written (HTTP/2 may queue more while reading:
    /// the SETTINGS acknowledgement).
    pub fn output(&self) -> &[u8] {
        match self {
            Probe::Http1(p) => &p.request[p.sent..],
            Probe::H2(p) => p.output(),
        }
    }

    pub fn advance_output(&mut self, n: usize) {
        match self {
            Probe::Http1(p) => p.sent = p.sent.saturating_add(n).min(p.request.len()),
            Probe::H2(p) => p.advance_output(n),
        }
    }

    /// Digests bytes read from the server.
    pub fn recv(&mut self, bytes: &[u8]) -> Outcome {
        match self {
            Probe::Http1(p) => p.recv(bytes),
            Probe::H2(p) => p.recv(bytes),
        }
    }

    /// The server closed the connection.
    pub fn eof(&mut self) -> Outcome {
        match self {
            Probe::Http1(p) => match status_code(&p.response) {
                Some(code) => Outcome::Status(code),
                None => Outcome::Failed("connection closed before a status line".to_owned()),
            },
            Probe::H2(p) => p.eof(),
        }
    }
}

pub(super) struct H1Probe {
    request: Vec<u8>,
    sent: usize,
    response: Vec<u8>,
}

impl H1Probe {
    fn recv(&mut self, bytes: &[u8]) -> Outcome {
        self.response.extend_from_slice(bytes);
        if let Some(code) = status_code(&self.response) {
            return Outcome::Status(code);
        }
        if self.response.len() >= MAX_RESPONSE {
            return Outcome::Failed("no status line in the response".to_owned());
        }
        Outcome::Pending
    }
}

/// The status code of `HTTP/1.x NNN ...` once the status line is complete.
fn status_code(resp: &[u8]) -> Option<u16> {
    let end = resp.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&resp[..end]).ok()?.trim_end();
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\nX: y"),
            Some(503)
        );
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), None);
        assert_eq!(status_code(b"garbage\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000 x\r\n"), None);
    }

    #[test]
    fn h2_upstreams_get_an_h2_probe() {
        for (protocol, tls) in [(UpstreamProtocol::H2c, false), (UpstreamProtocol::H2, true)] {
            let p = Request::new(protocol, tls, "/health", "app:80").probe();
            assert!(matches!(p, Probe::H2(_)));
            // The client preface comes first.
            assert!(p.output().starts_with(crate::h2::PREFACE));
        }
    }

    #[test]
    fn http1_probe_sends_the_request_and_reads_the_status() {
        let req = Request::new(UpstreamProtocol::Http1, false, "/health", "app:80");
        let mut p = req.probe();
        let out = String::from_utf8(p.output().to_vec()).unwrap();
        assert!(
            out.starts_with("GET /health HTTP/1.1\r\nHost: app:80\r\n"),
            "{out}"
        );
        p.advance_output(4);
        assert!(p.output().starts_with(b"/health"));
        p.advance_output(usize::MAX);
        assert!(p.output().is_empty());
        assert_eq!(p.recv(b"HTTP/1.1 50"), Outcome::Pending);
        assert_eq!(p.recv(b"3 Busy\r\n"), Outcome::Status(503));
        let mut p = req.probe();
        assert!(matches!(p.eof(), Outcome::Failed(_)));
        assert!(matches!(p.recv(&[b'x'; MAX_RESPONSE]), Outcome::Failed(_)));
    }
}
