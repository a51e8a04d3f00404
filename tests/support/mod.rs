//! Shared helpers for the integration tests (std only, plus `libc`, which is a
//! regular dependency of the crate and therefore visible to integration tests).
//!
//! * [`free_port`], [`refused_addr`]: ephemeral 127.0.0.1 ports.
//! * [`Backend`]: a tiny threaded HTTP/1.1 origin server that answers 200 with
//!   its name as the body and records every request it receives (chunked
//!   request bodies are de-chunked, and kept verbatim in `raw_body`). Options:
//!   scripted raw responses per path ([`Script`]: keep-alive, close, or a
//!   101-style echo tunnel), closing idle keep-alive connections, a streamed
//!   pattern body of any size, the request path as the body.
//! * [`Forklb`]: runs the `forklb` binary in the foreground on a generated
//!   configuration in a private temporary folder, and inspects its processes.
//! * [`http_get`], [`Conn`]: a minimal HTTP/1.1 client.
//! * [`tls`]: test certificates (rcgen), a rustls client, an HTTPS backend.
//! * [`openssl`]: `openssl s_client` runs and openssl-made files (RSA and
//!   encrypted keys).
//!
//! Every read has a timeout and every wait loop has a deadline, so no test can hang.
#![allow(dead_code, unused_imports)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub mod notify;
pub mod openssl;
pub mod tls;

pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

/// Read/write timeout of every client and backend socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `Forklb::start` waits for the pid file and the listener.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request or response head the helpers accept.
const MAX_HEAD: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Ports, waiting, temporary folders

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
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

// ---------------------------------------------------------------------------
// HTTP/1.1 wire helpers shared by the client and the backend

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A message head: the start line and the header fields in order.
type Head = (String, Vec<(String, String)>);

/// A stream with a read buffer, for reading HTTP messages one at a time:
/// a TCP socket, or (tests/support/tls.rs) a TLS session over one.
struct Wire<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
    /// Counts every byte read from the socket (backends: "received nothing").
    counter: Option<Arc<AtomicUsize>>,
}

impl Wire {
    fn new(stream: TcpStream) -> io::Result<Wire> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        Ok(Wire {
            stream,
            buf: Vec::new(),
            counter: None,
        })
    }
}

impl<S: Read> Wire<S> {
    /// Reads more bytes into the buffer; returns how many (0 at EOF).
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        if let Some(c) = &self.counter {
            c.fetch_add(n, Ordering::SeqCst);
        }
        Ok(n)
    }

    /// Reads one message head (through the empty line). `Ok(None)` when the peer
    /// closed cleanly before sending anything.
    fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return parse_head(&head[..pos]).map(Some);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("message head too large"));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF inside a message head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    fn read_exact_body(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {} of {n} body bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a chunked body",
                ));
            }
        }
    }

    /// Reads a chunked body and returns the de-chunked bytes.
    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size)?);
            if !self.read_line()?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    }

    /// Like `read_line`, but returns the line's exact bytes (without CRLF).
    fn read_line_raw(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a chunked body",
                ));
            }
        }
    }

    /// Reads a chunked body; returns (de-chunked bytes, exact wire bytes).
    /// Lenient like many origin servers (the size is trimmed), which makes
    /// a backend built on it a good detector of bodies relayed mis-framed.
    fn read_chunked_raw(&mut self) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut body = Vec::new();
        let mut raw = Vec::new();
        loop {
            let line = self.read_line_raw()?;
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
            let text = String::from_utf8_lossy(&line).into_owned();
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                loop {
                    let t = self.read_line_raw()?;
                    raw.extend_from_slice(&t);
                    raw.extend_from_slice(b"\r\n");
                    if t.is_empty() {
                        return Ok((body, raw));
                    }
                }
            }
            let data = self.read_exact_body(size)?;
            raw.extend_from_slice(&data);
            body.extend(data);
            let end = self.read_line_raw()?;
            if !end.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
            raw.extend_from_slice(b"\r\n");
        }
    }

    fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? != 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads a message body framed by `headers` (request: no body without
    /// Content-Length or chunked; response: until EOF).
    fn read_body(&mut self, headers: &[(String, String)], response: bool) -> io::Result<Vec<u8>> {
        if has_token(headers, "transfer-encoding", "chunked") {
            self.read_chunked()
        } else if let Some(cl) = header_value(headers, "content-length") {
            let n: usize = cl
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {cl:?}")))?;
            self.read_exact_body(n)
        } else if response {
            self.read_to_eof()
        } else {
            Ok(Vec::new())
        }
    }

    /// Reads the next final response (1xx skipped); `head_request`: the
    /// request was a HEAD, so the response has no body.
    fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let (start, headers) = self.read_head()?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                )
            })?;
            let mut parts = start.splitn(3, ' ');
            let version = parts.next().unwrap_or("").to_owned();
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid(format!("bad status line {start:?}")))?;
            let reason = parts.next().unwrap_or("").to_owned();
            if !version.starts_with("HTTP/1.") {
                return Err(invalid(format!("bad status line {start:?}")));
            }
            if (100..200).contains(&status) {
                continue;
            }
            let body = if head_request || status == 204 || status == 304 {
                Vec::new()
            } else {
                self.read_body(&headers, true)?
            };
            return Ok(Response {
                version,
                status,
                reason,
                headers,
                body,
            });
        }
    }
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((start, headers))
}

// ---------------------------------------------------------------------------
// Client

/// One HTTP response as the client received it.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the response announces `Connection: close`.
    pub fn closes(&self) -> bool {
        has_token(&self.headers, "connection", "close")
    }
}

/// A client connection that sends raw bytes and reads one response at a time.
pub struct Conn {
    wire: Wire,
}

impl Conn {
    pub fn open(port: u16) -> io::Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        Ok(Conn {
            wire: Wire::new(stream)?,
        })
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.wire
            .stream
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    pub fn stream(&self) -> &TcpStream {
        &self.wire.stream
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.stream.write_all(bytes)?;
        self.wire.stream.flush()
    }

    /// Reads the next final response (interim 1xx responses are skipped). The
    /// body is framed by chunked encoding, Content-Length, or the connection end.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_to(false)
    }

    /// Like `read_response`, for the answer to a HEAD request (no body).
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        self.read_response_to(true)
    }

    fn read_response_to(&mut self, head_request: bool) -> io::Result<Response> {
        self.wire.read_response(head_request)
    }

    /// Sends a request with `Host: localhost`, the given extra headers and, when
    /// `body` is not empty, a Content-Length body; reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes)?;
        if method == "HEAD" {
            self.read_head_response()
        } else {
            self.read_response()
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// Waits (bounded by the read timeout) for the peer to close. `Ok(())` on a
    /// clean EOF; an error if bytes arrive, on reset, or on timeout.
    pub fn expect_eof(&mut self) -> io::Result<()> {
        if !self.wire.buf.is_empty() {
            return Err(invalid(format!(
                "unexpected bytes instead of EOF: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            )));
        }
        match self.wire.fill()? {
            0 => Ok(()),
            _ => Err(invalid(format!(
                "unexpected bytes instead of EOF: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            ))),
        }
    }
}

impl Conn {
    /// Reads the next message head, interim (1xx) or final, without reading
    /// any body: the returned `Response` has an empty body.
    pub fn read_next_head(&mut self) -> io::Result<Response> {
        let (start, headers) = self.wire.read_head()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_owned();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {start:?}")))?;
        let reason = parts.next().unwrap_or("").to_owned();
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        })
    }

    /// Reads exactly `n` bytes (after whatever was already read).
    pub fn read_exact_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.wire.read_exact_body(n)
    }

    /// Reads raw bytes up to and including the first occurrence of `needle`.
    pub fn read_raw_until(&mut self, needle: &[u8]) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self
                .wire
                .buf
                .windows(needle.len())
                .position(|w| w == needle)
            {
                return Ok(self.wire.buf.drain(..pos + needle.len()).collect());
            }
            if self.wire.buf.len() > 64 * MAX_HEAD {
                return Err(invalid("needle not found"));
            }
            if self.wire.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF before {:?}; got {:?}",
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(&self.wire.buf)
                    ),
                ));
            }
        }
    }

    /// Reads everything until the peer closes.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        self.wire.read_to_eof()
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.wire.buf
    }

    /// Waits (bounded by the read timeout) for the peer to close the
    /// connection without sending anything more. A clean EOF or a reset
    /// both count as closed; bytes or a timeout are an error (as text).
    pub fn expect_closed(&mut self) -> Result<(), String> {
        if !self.wire.buf.is_empty() {
            return Err(format!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            ));
        }
        match self.wire.fill() {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(format!("connection not closed: {e} ({:?})", e.kind())),
        }
    }
}

/// Whether an I/O error is a read/write timeout.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// GET `path` from 127.0.0.1:`port` over a fresh connection.
pub fn try_http_get(port: u16, path: &str) -> io::Result<Response> {
    Conn::open(port)?.get(path)
}

/// GET `path` from 127.0.0.1:`port` over a fresh connection; panics on I/O errors.
pub fn http_get(port: u16, path: &str) -> Response {
    try_http_get(port, path).unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}

// ---------------------------------------------------------------------------
// Backend

/// One request as a backend received it (body de-chunked when it was chunked).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body exactly as it came over the wire (with chunk framing).
    pub raw_body: Vec<u8>,
    /// The client end of the connection the request came on.
    pub peer: Option<SocketAddr>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// Every value of the headers of that name (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a header of that name is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// What a backend does after writing a scripted response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Keep the connection and serve the next request on it.
    KeepAlive,
    /// Close the connection (shut down both directions).
    Close,
    /// Echo every byte received (a tunnel after `101`), until the peer
    /// shuts down its sending side; then close.
    Echo,
}

/// A raw response written, byte for byte, to requests whose path starts
/// with `path` (the request, with its body, is read and recorded first).
#[derive(Debug, Clone)]
pub struct Script {
    pub path: String,
    pub bytes: Vec<u8>,
    pub then: Then,
}

impl Script {
    pub fn new(path: &str, bytes: &[u8], then: Then) -> Script {
        Script {
            path: path.to_owned(),
            bytes: bytes.to_vec(),
            then,
        }
    }
}

/// Byte `i` of a [`BackendOpts::stream_body`] body.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// How a [`Backend`] answers.
#[derive(Debug, Clone)]
pub struct BackendOpts {
    /// Wait this long after receiving a request before answering.
    pub delay: Duration,
    /// Response body; `None` = the backend's name.
    pub body: Option<Vec<u8>>,
    /// Answer with the request body instead.
    pub echo: bool,
    pub status: u16,
    /// Raw responses for some paths (first matching prefix wins).
    pub scripts: Vec<Script>,
    /// Close a keep-alive connection that stays idle this long between requests.
    pub idle_close: Option<Duration>,
    /// Answer with a body of this many [`pattern_byte`]s, written in pieces.
    pub stream_body: Option<usize>,
    /// Answer with the request path as the body.
    pub path_body: bool,
    /// With `stream_body`: pause this long after each 64 KiB piece (a slow download).
    pub stream_pace: Option<Duration>,
    /// Per-path delays: requests whose path starts with the prefix wait this
    /// long instead of `delay` (first matching prefix wins).
    pub path_delays: Vec<(String, Duration)>,
    /// A health-check endpoint whose status can be switched at run time
    /// (see [`HealthSwitch`]). Its requests are counted apart
    /// ([`Backend::health_checks`]) and not recorded in `requests`/`heads`.
    pub health: Option<HealthSwitch>,
    /// Responses written as soon as the request head is read, before the
    /// body (first matching prefix wins; see [`EarlyScript`]).
    pub early: Vec<EarlyScript>,
}

/// An early answer: for requests whose path starts with `path`, the backend
/// reads the head and `read_first` body bytes, writes `bytes` (an early
/// 413, 401, ...) and then does `then`. Such requests are not recorded in
/// `requests` (their body is not read); their heads are, and
/// [`Backend::early_answers`] counts them.
#[derive(Debug, Clone)]
pub struct EarlyScript {
    pub path: String,
    /// Request body bytes read before answering (0: right after the head).
    pub read_first: usize,
    pub bytes: Vec<u8>,
    pub then: EarlyThen,
}

impl EarlyScript {
    pub fn new(path: &str, bytes: &[u8], then: EarlyThen) -> EarlyScript {
        EarlyScript {
            path: path.to_owned(),
            read_first: 0,
            bytes: bytes.to_vec(),
            then,
        }
    }
}

/// What a backend does after an [`EarlyScript`] answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyThen {
    /// Close the socket at once, the unread body with it: the kernel resets
    /// the connection (what most servers do after rejecting an upload).
    Close,
    /// Keep reading (and dropping) the body until the peer closes, then close.
    Drain,
    /// Keep the connection open without reading anything more, until the
    /// backend stops (the peer's writes fill the socket and stall).
    Hold,
}

/// A health-check path answered with a status that the test can change
/// while the backend runs (e.g. 200 → 500 → 200).
#[derive(Debug, Clone)]
pub struct HealthSwitch {
    /// Requests whose path starts with this are health checks.
    pub path: String,
    status: Arc<AtomicU16>,
}

impl HealthSwitch {
    pub fn new(path: &str, status: u16) -> HealthSwitch {
        HealthSwitch {
            path: path.to_owned(),
            status: Arc::new(AtomicU16::new(status)),
        }
    }

    /// Changes the status of the next health-check answers.
    pub fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn get(&self) -> u16 {
        self.status.load(Ordering::SeqCst)
    }
}

impl Default for BackendOpts {
    fn default() -> Self {
        BackendOpts {
            delay: Duration::ZERO,
            body: None,
            echo: false,
            status: 200,
            scripts: Vec::new(),
            idle_close: None,
            stream_body: None,
            path_body: false,
            stream_pace: None,
            path_delays: Vec::new(),
            health: None,
            early: Vec::new(),
        }
    }
}

struct BackendShared {
    name: String,
    opts: BackendOpts,
    stop: AtomicBool,
    requests: Mutex<Vec<Request>>,
    conns: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
    /// Bytes received on all connections.
    bytes: Arc<AtomicUsize>,
    /// Start lines of every request head received (even if its body was not).
    heads: Mutex<Vec<String>>,
    /// Echo tunnels ended by the peer's EOF.
    tunnels_closed: AtomicUsize,
    /// Keep-alive connections closed by `idle_close`.
    idle_closed: AtomicUsize,
    /// Requests answered by the [`HealthSwitch`].
    health_checks: AtomicUsize,
    /// Requests answered by an [`EarlyScript`].
    early_answers: AtomicUsize,
    /// Body bytes an [`EarlyThen::Drain`] read after answering.
    drained_after_answer: AtomicUsize,
}

/// A threaded HTTP/1.1 origin server on 127.0.0.1 (one thread per connection,
/// keep-alive aware). Stops when dropped.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<BackendShared>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Backend::start_with(name, BackendOpts::default())
    }

    pub fn start_with(name: &str, opts: BackendOpts) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("backend bind");
        Backend::serve(name, listener, opts)
    }

    /// Starts a backend on a given address (e.g. the address of a backend
    /// that was stopped), retrying the bind for a few seconds.
    pub fn start_at(name: &str, addr: SocketAddr, opts: BackendOpts) -> Backend {
        let listener = bind_retrying(addr);
        Backend::serve(name, listener, opts)
    }

    fn serve(name: &str, listener: TcpListener, opts: BackendOpts) -> Backend {
        let addr = listener.local_addr().expect("backend local_addr");
        let shared = Arc::new(BackendShared {
            name: name.to_owned(),
            opts,
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            bytes: Arc::new(AtomicUsize::new(0)),
            heads: Mutex::new(Vec::new()),
            tunnels_closed: AtomicUsize::new(0),
            idle_closed: AtomicUsize::new(0),
            health_checks: AtomicUsize::new(0),
            early_answers: AtomicUsize::new(0),
            drained_after_answer: AtomicUsize::new(0),
        });
        let thread = Some(spawn_acceptor(listener, shared.clone()));
        Backend {
            addr,
            shared,
            thread,
        }
    }

    /// Stops the backend the way a crash would: the listening socket is
    /// closed (new connections are refused) and every open connection is
    /// shut down, also those with a request in progress. Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Starts a stopped backend again on the same address, with the same
    /// name and options; what it recorded so far is kept and it goes on
    /// counting.
    pub fn restart(&mut self) {
        self.stop();
        let listener = bind_retrying(self.addr);
        self.shared.stop.store(false, Ordering::SeqCst);
        self.thread = Some(spawn_acceptor(listener, self.shared.clone()));
    }

    /// Whether the backend is accepting connections (not stopped).
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Requests answered by the [`HealthSwitch`] so far.
    pub fn health_checks(&self) -> usize {
        self.shared.health_checks.load(Ordering::SeqCst)
    }
}

/// Binds `addr`, retrying for up to 5 s while it is still in use.
fn bind_retrying(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("backend bind {addr}: {e}"),
        }
    }
}

fn spawn_acceptor(listener: TcpListener, s: Arc<BackendShared>) -> JoinHandle<()> {
    thread::spawn(move || {
        for stream in listener.incoming() {
            if s.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            s.accepted.fetch_add(1, Ordering::SeqCst);
            if let Ok(clone) = stream.try_clone() {
                s.conns.lock().unwrap().push(clone);
            }
            let s2 = s.clone();
            thread::spawn(move || {
                let _ = serve_backend_conn(stream, &s2);
            });
        }
    })
}

impl Backend {
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes received so far on all connections.
    pub fn bytes_received(&self) -> usize {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Start lines of all request heads received so far (also those whose
    /// body never arrived completely), in arrival order.
    pub fn heads(&self) -> Vec<String> {
        self.shared.heads.lock().unwrap().clone()
    }

    /// Echo tunnels that ended because the peer shut its side down.
    pub fn tunnels_closed(&self) -> usize {
        self.shared.tunnels_closed.load(Ordering::SeqCst)
    }

    /// Keep-alive connections this backend closed for idleness.
    pub fn idle_closed(&self) -> usize {
        self.shared.idle_closed.load(Ordering::SeqCst)
    }

    /// Requests answered early by an [`EarlyScript`] so far.
    pub fn early_answers(&self) -> usize {
        self.shared.early_answers.load(Ordering::SeqCst)
    }

    /// Request body bytes read by [`EarlyThen::Drain`] after the answer.
    pub fn drained_after_answer(&self) -> usize {
        self.shared.drained_after_answer.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_backend_conn(stream: TcpStream, s: &BackendShared) -> io::Result<()> {
    let mut wire = Wire::new(stream)?;
    wire.counter = Some(s.bytes.clone());
    wire.stream
        .set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut served = 0usize;
    loop {
        if let (Some(idle), true) = (s.opts.idle_close, served > 0 && wire.buf.is_empty()) {
            // Close a keep-alive connection that stays idle too long.
            wire.stream.set_read_timeout(Some(idle))?;
            match wire.fill() {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    s.idle_closed.fetch_add(1, Ordering::SeqCst);
                    let _ = wire.stream.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            wire.stream
                .set_read_timeout(Some(Duration::from_secs(10)))?;
        }
        let Some((start, headers)) = wire.read_head()? else {
            return Ok(());
        };
        if let Some(h) = &s.opts.health {
            if start
                .split(' ')
                .nth(1)
                .is_some_and(|p| p.starts_with(&h.path))
            {
                s.health_checks.fetch_add(1, Ordering::SeqCst);
                let close = has_token(&headers, "connection", "close");
                let out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: 7\r\n{}\r\nhealth\n",
                    h.get(),
                    if close { "Connection: close\r\n" } else { "" }
                );
                wire.stream.write_all(out.as_bytes())?;
                if close {
                    let _ = wire.stream.shutdown(Shutdown::Write);
                    return Ok(());
                }
                continue;
            }
        }
        s.heads.lock().unwrap().push(start.clone());
        let mut parts = start.split(' ');
        let (Some(method), Some(path), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            wire.stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        if let Some(early) = s.opts.early.iter().find(|e| path.starts_with(&e.path)) {
            return answer_early(wire, s, early);
        }
        let (body, raw_body) = if has_token(&headers, "transfer-encoding", "chunked") {
            wire.read_chunked_raw()?
        } else if let Some(cl) = header_value(&headers, "content-length") {
            let n: usize = cl
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {cl:?}")))?;
            let b = wire.read_exact_body(n)?;
            (b.clone(), b)
        } else {
            (Vec::new(), Vec::new())
        };
        let close = has_token(&headers, "connection", "close")
            || (version == "HTTP/1.0" && !has_token(&headers, "connection", "keep-alive"));
        let req = Request {
            method: method.to_owned(),
            path: path.to_owned(),
            version: version.to_owned(),
            headers,
            body,
            raw_body,
            peer: wire.stream.peer_addr().ok(),
        };
        let resp_body = if s.opts.echo {
            req.body.clone()
        } else if s.opts.path_body {
            req.path.as_bytes().to_vec()
        } else {
            s.opts
                .body
                .clone()
                .unwrap_or_else(|| s.name.as_bytes().to_vec())
        };
        let is_head = req.method == "HEAD";
        let script = s
            .opts
            .scripts
            .iter()
            .find(|sc| req.path.starts_with(&sc.path))
            .cloned();
        let delay = s
            .opts
            .path_delays
            .iter()
            .find(|(p, _)| req.path.starts_with(p.as_str()))
            .map_or(s.opts.delay, |&(_, d)| d);
        s.requests.lock().unwrap().push(req);
        served += 1;

        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if s.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(10));
        }

        if let Some(script) = script {
            wire.stream.write_all(&script.bytes)?;
            match script.then {
                Then::KeepAlive => continue,
                Then::Close => {
                    let _ = wire.stream.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Then::Echo => return echo_until_eof(&mut wire, s),
            }
        }

        let body_len = match s.opts.stream_body {
            Some(n) if !is_head => n,
            _ => resp_body.len(),
        };
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Type: text/plain\r\nX-Backend: {}\r\nContent-Length: {}\r\n{}\r\n",
            s.opts.status,
            s.name,
            body_len,
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        if !is_head && s.opts.stream_body.is_none() {
            out.extend_from_slice(&resp_body);
        }
        wire.stream.write_all(&out)?;
        if let (Some(n), false) = (s.opts.stream_body, is_head) {
            write_pattern(&mut wire.stream, n, s)?;
        }
        if close {
            let _ = wire.stream.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

/// The [`EarlyScript`] part of a backend connection: answer before the body.
fn answer_early(mut wire: Wire, s: &BackendShared, early: &EarlyScript) -> io::Result<()> {
    if early.read_first > 0 {
        let want = early.read_first;
        while wire.buf.len() < want {
            if wire.fill()? == 0 {
                break;
            }
        }
    }
    wire.stream.write_all(&early.bytes)?;
    s.early_answers.fetch_add(1, Ordering::SeqCst);
    match early.then {
        EarlyThen::Close => {
            // Only a close of the last descriptor resets a connection with
            // unread bytes (shutdown would not): forget the acceptor's copy.
            let peer = wire.stream.peer_addr().ok();
            s.conns
                .lock()
                .unwrap()
                .retain(|c| c.peer_addr().ok() != peer);
            drop(wire);
        }
        EarlyThen::Drain => {
            wire.stream
                .set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match wire.stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        s.drained_after_answer.fetch_add(n, Ordering::SeqCst);
                        s.bytes.fetch_add(n, Ordering::SeqCst);
                    }
                }
            }
            let _ = wire.stream.shutdown(Shutdown::Both);
        }
        EarlyThen::Hold => {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until && !s.stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(10));
            }
            let _ = wire.stream.shutdown(Shutdown::Both);
        }
    }
    Ok(())
}

/// Writes `n` pattern bytes in 64 KiB pieces.
fn write_pattern(stream: &mut TcpStream, n: usize, s: &BackendShared) -> io::Result<()> {
    const PIECE: usize = 64 * 1024;
    // 251 does not divide PIECE, so each piece starts at a different phase.
    let block: Vec<u8> = (0..PIECE + 251).map(pattern_byte).collect();
    let mut sent = 0;
    while sent < n {
        if s.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let len = PIECE.min(n - sent);
        let phase = sent % 251;
        stream.write_all(&block[phase..phase + len])?;
        sent += len;
        if let (Some(pace), true) = (s.opts.stream_pace, sent < n) {
            let until = Instant::now() + pace;
            while Instant::now() < until {
                if s.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(5).min(pace));
            }
        }
    }
    Ok(())
}

/// The tunnel half of a `101` script: echo until EOF, then close.
fn echo_until_eof(wire: &mut Wire, s: &BackendShared) -> io::Result<()> {
    wire.stream
        .set_read_timeout(Some(Duration::from_secs(10)))?;
    loop {
        if !wire.buf.is_empty() {
            let data = std::mem::take(&mut wire.buf);
            wire.stream.write_all(&data)?;
        }
        if wire.fill()? == 0 {
            s.tunnels_closed.fetch_add(1, Ordering::SeqCst);
            let _ = wire.stream.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------
// /proc

/// Fields of /proc/PID/stat the tests need.
#[derive(Debug, Clone)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
    })
}

/// A `kB` field of /proc/PID/status (e.g. "VmRSS", "VmHWM"), in KiB.
pub fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// /proc/PID/comm without the newline.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

/// Whether `pid` is a live (not zombie) process whose name starts with "forklb".
pub fn forklb_alive(pid: i32) -> bool {
    match proc_stat(pid) {
        Some(st) => st.state != 'Z' && st.state != 'X' && st.comm.starts_with("forklb"),
        None => false,
    }
}

/// Live (not zombie) children of `ppid`, sorted.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(st) = proc_stat(pid) {
            if st.ppid == ppid && st.state != 'Z' && st.state != 'X' {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

fn descendants_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children_of(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Sends `sig` to `pid`; false if the process does not exist.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

// ---------------------------------------------------------------------------
// forklb process harness

/// The standard proxy configuration of the tests (without the `pid_file` and
/// `error_log` keys, which [`Forklb`] adds): one listener on
/// `$PORT` with a `/healthz` return route and everything else to upstream `web`.
/// `servers` are (name, address, weight); `upstream_extra` are more keys of
/// upstream `web`, e.g. `["retries: 0"]`.
pub fn proxy_config(
    workers: usize,
    servers: &[(&str, SocketAddr, u32)],
    upstream_extra: &[&str],
) -> String {
    let mut y = format!(
        "workers: {workers}\n\
         log_level: info\n\
         shutdown_timeout: 10s\n\
         listeners:\n\
         \x20 - name: web\n\
         \x20   bind: [\"127.0.0.1:$PORT\"]\n\
         \x20   routes:\n\
         \x20     - path: /healthz\n\
         \x20       return: {{status: 200, body: \"ok\\n\"}}\n\
         \x20     - upstream: web\n\
         upstreams:\n\
         \x20 web:\n"
    );
    for extra in upstream_extra {
        y.push_str(&format!("    {extra}\n"));
    }
    y.push_str("    servers:\n");
    for (name, addr, weight) in servers {
        y.push_str(&format!(
            "      - {{name: {name}, addr: \"{addr}\", weight: {weight}}}\n"
        ));
    }
    y
}

/// Shorthand: `proxy_config` for backends of weight 1.
pub fn proxy_config_for(workers: usize, backends: &[&Backend]) -> String {
    let servers: Vec<(&str, SocketAddr, u32)> =
        backends.iter().map(|b| (b.name(), b.addr(), 1)).collect();
    proxy_config(workers, &servers, &[])
}

/// Extra start-up settings for [`Forklb::start_with`].
#[derive(Debug, Clone, Default)]
pub struct StartOpts {
    /// Environment variables set for forklb (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    /// Arguments before `-c FILE`.
    pub args: Vec<String>,
    /// Run this executable instead of the one cargo built (e.g. a copy).
    pub exe: Option<PathBuf>,
    /// Set `upgrade_sock` to `upgrade.sock` in the test's folder. Setting it
    /// is what makes QUIT offer the sockets for `upgrade_grace` (5 s unless
    /// the YAML says otherwise), so only Pingora-style tests ask for it.
    pub upgrade_sock: bool,
}

/// A running `forklb` (foreground master) on a generated configuration.
pub struct Forklb {
    child: Child,
    dir: TempDir,
    port: u16,
    config: PathBuf,
    pid_file: PathBuf,
    error_log: PathBuf,
    /// Every child pid observed so far, so that Drop can clean up even after
    /// the master is gone.
    seen: Mutex<Vec<i32>>,
    exit: Option<ExitStatus>,
    /// The `pid_file`/`error_log` (and maybe `upgrade_sock`) lines put before
    /// the test's YAML (see [`Forklb::write_config`]).
    header: String,
}

impl Forklb {
    /// Starts forklb on `yaml` (with `$PORT` replaced by a free port and
    /// `pid_file`, `error_log` pointing into a fresh temporary folder) and
    /// waits until it serves; panics with diagnostics otherwise.
    pub fn start(yaml: &str) -> Forklb {
        Forklb::try_start(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(yaml: &str) -> Result<Forklb, String> {
        Forklb::try_start_with(yaml, &StartOpts::default())
    }

    /// Like [`Forklb::start`], with extra environment variables, arguments or
    /// another executable.
    pub fn start_with(yaml: &str, opts: &StartOpts) -> Forklb {
        Forklb::try_start_with(yaml, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_with(yaml: &str, opts: &StartOpts) -> Result<Forklb, String> {
        let dir = TempDir::new("run");
        let port = free_port();
        let pid_file = dir.join("forklb.pid");
        let error_log = dir.join("error.log");
        let config = dir.join("forklb.yaml");
        let mut header = format!(
            "pid_file: \"{}\"\nerror_log: \"{}\"\n",
            pid_file.display(),
            error_log.display(),
        );
        if opts.upgrade_sock {
            header.push_str(&format!(
                "upgrade_sock: \"{}\"\n",
                dir.join("upgrade.sock").display()
            ));
        }
        let text = format!("{header}{}", yaml.replace("$PORT", &port.to_string()));
        fs::write(&config, text).map_err(|e| format!("write config: {e}"))?;
        let stdout = fs::File::create(dir.join("stdout.log")).map_err(|e| e.to_string())?;
        let stderr = fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
        let exe = opts
            .exe
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_forklb")));
        let mut cmd = forklb_command_at(&exe);
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
        let mut f = Forklb {
            child,
            dir,
            port,
            config,
            pid_file,
            error_log,
            seen: Mutex::new(Vec::new()),
            exit: None,
            header,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = f.child.try_wait() {
                f.exit = Some(status);
                return Err(format!(
                    "forklb exited during start-up with {status}\n{}",
                    f.diagnostics()
                ));
            }
            if f.pid_file_pid().is_some() {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    f.child_pids();
                    return Ok(f);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "forklb not ready within {START_TIMEOUT:?} (pid file: {:?}, port {port})\n{}",
                    fs::read_to_string(&f.pid_file).ok(),
                    f.diagnostics()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn master_pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The pid written in the pid file, if the file exists and holds one.
    pub fn pid_file_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(&self.pid_file).ok()?;
        if !text.ends_with('\n') {
            return None;
        }
        text.trim().parse().ok()
    }

    /// Live children of the master (workers, health checker), sorted.
    pub fn child_pids(&self) -> Vec<i32> {
        let kids = children_of(self.master_pid());
        let mut seen = self.seen.lock().unwrap();
        for k in &kids {
            if !seen.contains(k) {
                seen.push(*k);
            }
        }
        kids
    }

    /// Live children of the master named `forklb-worker`, sorted.
    pub fn worker_pids(&self) -> Vec<i32> {
        self.child_pids()
            .into_iter()
            .filter(|&p| comm(p).as_deref() == Some("forklb-worker"))
            .collect()
    }

    /// Waits until the master has exactly `n` workers; returns their pids.
    pub fn wait_workers(&self, n: usize, timeout: Duration) -> Vec<i32> {
        let mut last = Vec::new();
        if wait_until(timeout, || {
            last = self.worker_pids();
            last.len() == n
        }) {
            return last;
        }
        panic!(
            "expected {n} workers, have {last:?} (children {:?})\n{}",
            self.child_pids()
                .iter()
                .map(|&p| (p, comm(p)))
                .collect::<Vec<_>>(),
            self.diagnostics()
        );
    }

    /// Every pid ever observed as a child of the master.
    pub fn seen_pids(&self) -> Vec<i32> {
        self.seen.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        assert!(
            kill(self.master_pid(), sig),
            "kill({}, {sig}) failed",
            self.master_pid()
        );
    }

    /// Waits for the master to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return self.exit;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Replaces the configuration file with `yaml` (same treatment as at
    /// start: `$PORT` replaced, the `pid_file`/`error_log` (`upgrade_sock`)
    /// lines put first), e.g. before sending HUP.
    pub fn write_config(&self, yaml: &str) {
        let text = format!(
            "{}{}",
            self.header,
            yaml.replace("$PORT", &self.port.to_string())
        );
        // Write a sibling and rename: the master never reads a half-written file.
        let tmp = self.dir.join("forklb.yaml.tmp");
        fs::write(&tmp, text).expect("write config");
        fs::rename(&tmp, &self.config).expect("rename config");
    }

    /// Records `pid` (e.g. a new master started by USR2) so that Drop kills
    /// it, with everything under it, even after this master is gone.
    pub fn track(&self, pid: i32) {
        let mut seen = self.seen.lock().unwrap();
        if !seen.contains(&pid) {
            seen.push(pid);
        }
    }

    /// `<pid_file>.oldbin`, where the old master keeps its pid during an upgrade.
    pub fn oldbin_path(&self) -> PathBuf {
        let mut p = self.pid_file.as_os_str().to_owned();
        p.push(".oldbin");
        p.into()
    }

    pub fn error_log_path(&self) -> &Path {
        &self.error_log
    }

    /// The master started by USR2: a live child of this master named
    /// `forklb-master` (recorded with `track`).
    pub fn new_master(&self) -> Option<i32> {
        let m = masters_under(self.master_pid()).into_iter().next()?;
        self.track(m);
        Some(m)
    }

    pub fn error_log_contents(&self) -> String {
        fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    pub fn stderr_contents(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn stdout_contents(&self) -> String {
        fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// Error log, stdout and stderr, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- error log ---\n{}--- stderr ---\n{}--- stdout ---\n{}---",
            self.error_log_contents(),
            self.stderr_contents(),
            self.stdout_contents()
        )
    }
}

impl Drop for Forklb {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "forklb master {} port {}:\n{}",
                self.master_pid(),
                self.port,
                self.diagnostics()
            );
        }
        let master = self.master_pid();
        let running = self.exit.is_none() && matches!(self.child.try_wait(), Ok(None));
        let mut victims = self.seen_pids();
        if running {
            // Freeze the master so it cannot fork replacements while we kill.
            kill(master, libc::SIGSTOP);
            for p in descendants_of(master) {
                if !victims.contains(&p) {
                    victims.push(p);
                }
            }
        }
        // Masters among them (e.g. a new master started by USR2 and
        // recorded with `track`): freeze them too and take their children.
        for p in victims.clone() {
            if p != master && forklb_alive(p) && comm(p).as_deref() == Some("forklb-master") {
                kill(p, libc::SIGSTOP);
                for d in descendants_of(p) {
                    if !victims.contains(&d) {
                        victims.push(d);
                    }
                }
            }
        }
        for p in victims {
            if forklb_alive(p) {
                kill(p, SIGKILL);
            }
        }
        if running {
            kill(master, SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A `Command` for the forklb binary with an environment that cannot leak in
/// from the test runner.
pub fn forklb_command() -> Command {
    forklb_command_at(Path::new(env!("CARGO_BIN_EXE_forklb")))
}

/// Like [`forklb_command`], for a forklb executable at another path (e.g. a
/// copy that a test replaces to simulate a binary upgrade).
pub fn forklb_command_at(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    for var in [
        "RUST_LOG",
        "FORKLB_CONF",
        "FORKLB_FDS",
        "LISTEN_FDS",
        "LISTEN_PID",
        "NOTIFY_SOCKET",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Output of a forklb run that is expected to exit by itself.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout followed by stderr.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs forklb with `args` and waits (at most `timeout`) for it to exit.
pub fn run_forklb(args: &[&str], timeout: Duration) -> RunOutput {
    let dir = TempDir::new("out");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut child = forklb_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout file"))
        .stderr(fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .expect("spawn forklb");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "forklb {args:?} did not exit within {timeout:?}\nstdout: {}\nstderr: {}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    RunOutput {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// Process lifecycle helpers (upgrade, reload, daemon)

/// Live children of `master` named `forklb-worker`, sorted.
pub fn workers_of(master: i32) -> Vec<i32> {
    children_of(master)
        .into_iter()
        .filter(|&p| comm(p).as_deref() == Some("forklb-worker"))
        .collect()
}

/// Live children of `pid` named `forklb-master` (masters started by USR2), sorted.
pub fn masters_under(pid: i32) -> Vec<i32> {
    children_of(pid)
        .into_iter()
        .filter(|&p| comm(p).as_deref() == Some("forklb-master"))
        .collect()
}

/// The pid in a pid file, if it exists and holds one followed by a newline.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    if !text.ends_with('\n') {
        return None;
    }
    text.trim().parse().ok()
}

/// Freezes `pid` (so it cannot fork replacements) and SIGKILLs it with
/// everything below it. Only forklb processes are touched.
pub fn kill_tree(pid: i32) {
    if !forklb_alive(pid) {
        return;
    }
    kill(pid, libc::SIGSTOP);
    for p in descendants_of(pid) {
        if forklb_alive(p) {
            kill(p, SIGKILL);
        }
    }
    kill(pid, SIGKILL);
}

/// The four ids (real, effective, saved, filesystem) of the `Uid:` line of
/// /proc/PID/status.
pub fn proc_uids(pid: i32) -> Option<Vec<u32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line["Uid:".len()..]
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect()
}

/// Whether the test runs as root.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Inodes of the TCP sockets listening on 127.0.0.1:`port` (/proc/net/tcp).
pub fn listening_socket_inodes(port: u16) -> Vec<u64> {
    let want = format!("0100007F:{port:04X}");
    let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| f[9].parse().ok())?
        })
        .collect()
}

/// Inodes of the sockets open in process `pid` (/proc/PID/fd).
pub fn socket_inodes_of(pid: i32) -> Vec<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let target = fs::read_link(e.path()).ok()?;
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Whether a connection to 127.0.0.1:`port` is refused right now.
pub fn port_refuses(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

// ---------------------------------------------------------------------------
// Continuous client load

/// Judges one response of the load: `Err` with a reason makes it a failure.
pub type Check = Arc<dyn Fn(&str, &Response) -> Result<(), String> + Send + Sync>;

/// A check that wants status 200.
pub fn check_status_200() -> Check {
    Arc::new(|_path: &str, r: &Response| {
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("status {} body {:?}", r.status, r.body_str()))
        }
    })
}

/// How [`Load`] loads the proxy.
#[derive(Clone)]
pub struct LoadOpts {
    /// Threads that each keep one keep-alive connection and send requests on
    /// it in a loop (opening a new one when the server closes it).
    pub keepalive_threads: usize,
    /// Threads that open a new connection for every request.
    pub fresh_threads: usize,
    /// Paths requested in turn.
    pub paths: Vec<String>,
    /// Pause of every thread between two requests (leaves CPU to the server).
    pub pause: Duration,
    /// Hard limit: the threads stop after this long even if nobody stops them.
    pub max_duration: Duration,
    pub check: Check,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            keepalive_threads: 4,
            fresh_threads: 2,
            paths: vec!["/".to_owned()],
            pause: Duration::from_millis(2),
            max_duration: Duration::from_secs(60),
            check: check_status_200(),
        }
    }
}

struct LoadShared {
    stop: AtomicBool,
    started: Instant,
    ok: AtomicUsize,
    failed: AtomicUsize,
    retried: AtomicUsize,
    failures: Mutex<Vec<String>>,
    retries: Mutex<Vec<String>>,
    marks: Mutex<Vec<String>>,
}

impl LoadShared {
    fn ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    fn fail(&self, who: &str, path: &str, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut f = self.failures.lock().unwrap();
        if f.len() < 40 {
            f.push(format!("{:>6} ms {who} GET {path}: {what}", self.ms()));
        }
    }

    fn judge(&self, check: &Check, who: &str, path: &str, r: &Response) -> bool {
        match check(path, r) {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(why) => {
                self.fail(who, path, why);
                false
            }
        }
    }
}

/// Continuous client load on 127.0.0.1:`port` from several threads, counting
/// failed requests. A request that fails on a reused keep-alive connection
/// (closed or reset by the server, not a timeout) and succeeds when retried
/// at once on a fresh connection is counted as `retried`, not as failed:
/// that race is inherent to HTTP keep-alive. Stops (and joins) on drop.
pub struct Load {
    shared: Arc<LoadShared>,
    threads: Vec<JoinHandle<()>>,
}

/// What a [`Load`] saw.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub ok: usize,
    pub failed: usize,
    pub retried: usize,
    pub failures: Vec<String>,
    pub retries: Vec<String>,
    pub marks: Vec<String>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn summary(&self) -> String {
        format!(
            "{} ok, {} failed, {} retried on a fresh connection, in {:?}",
            self.ok, self.failed, self.retried, self.elapsed
        )
    }

    /// Details for failure messages: failures, retries and the test's marks.
    pub fn details(&self) -> String {
        format!(
            "{}\nfailures (first {}):\n  {}\nretried (first {}):\n  {}\nmarks:\n  {}",
            self.summary(),
            self.failures.len(),
            self.failures.join("\n  "),
            self.retries.len(),
            self.retries.join("\n  "),
            self.marks.join("\n  ")
        )
    }

    /// Panics unless no request failed and some succeeded.
    pub fn assert_no_failures(&self, what: &str, diagnostics: &str) {
        eprintln!("load during {what}: {}", self.summary());
        assert!(
            self.failed == 0 && self.ok > 0,
            "load during {what}: {}\n{diagnostics}",
            self.details()
        );
    }
}

impl Load {
    /// The default load (4 keep-alive threads, 2 new-connection threads,
    /// GET /, status 200 wanted).
    pub fn start(port: u16) -> Load {
        Load::start_with(port, LoadOpts::default())
    }

    pub fn start_with(port: u16, opts: LoadOpts) -> Load {
        let shared = Arc::new(LoadShared {
            stop: AtomicBool::new(false),
            started: Instant::now(),
            ok: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            retried: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            retries: Mutex::new(Vec::new()),
            marks: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        for t in 0..opts.keepalive_threads {
            let (s, o) = (shared.clone(), opts.clone());
            threads.push(thread::spawn(move || keepalive_client(port, t, &s, &o)));
        }
        for t in 0..opts.fresh_threads {
            let (s, o) = (shared.clone(), opts.clone());
            threads.push(thread::spawn(move || fresh_client(port, t, &s, &o)));
        }
        Load { shared, threads }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.shared.ok.load(Ordering::SeqCst)
    }

    /// Failed requests so far.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Waits until `n` more requests have succeeded (false on timeout).
    pub fn wait_progress(&self, n: usize, timeout: Duration) -> bool {
        let target = self.ok() + n;
        wait_until(timeout, || self.ok() >= target)
    }

    /// Like `wait_progress`, panicking on timeout.
    pub fn expect_progress(&self, n: usize, what: &str) {
        assert!(
            self.wait_progress(n, Duration::from_secs(5)),
            "load made no progress ({what}): {}",
            self.report().details()
        );
    }

    /// Notes an event (shown with the failures, in the same time base).
    pub fn mark(&self, what: &str) {
        let line = format!("{:>6} ms {what}", self.shared.ms());
        self.shared.marks.lock().unwrap().push(line);
    }

    /// The counts so far (the load keeps running).
    pub fn report(&self) -> LoadReport {
        let s = &self.shared;
        LoadReport {
            ok: s.ok.load(Ordering::SeqCst),
            failed: s.failed.load(Ordering::SeqCst),
            retried: s.retried.load(Ordering::SeqCst),
            failures: s.failures.lock().unwrap().clone(),
            retries: s.retries.lock().unwrap().clone(),
            marks: s.marks.lock().unwrap().clone(),
            elapsed: s.started.elapsed(),
        }
    }

    /// Stops the threads, waits for them and reports.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

fn load_running(s: &LoadShared, o: &LoadOpts) -> bool {
    !s.stop.load(Ordering::SeqCst) && s.started.elapsed() < o.max_duration
}

fn keepalive_client(port: u16, t: usize, s: &LoadShared, o: &LoadOpts) {
    let who = format!("keep-alive#{t}");
    let mut conn: Option<Conn> = None;
    let mut i = t;
    while load_running(s, o) {
        let path = o.paths[i % o.paths.len()].as_str();
        i += 1;
        let reused = conn.is_some();
        let first = match conn.take() {
            Some(c) => Ok(c),
            None => Conn::open(port),
        }
        .and_then(|mut c| c.get(path).map(|r| (c, r)));
        match first {
            Ok((c, r)) => {
                s.judge(&o.check, &who, path, &r);
                if !r.closes() {
                    conn = Some(c);
                }
            }
            Err(e) if reused && !is_timeout(&e) => {
                // The keep-alive race: the server closed the connection as
                // the request went out. Retry once, now, on a new connection.
                match Conn::open(port).and_then(|mut c| c.get(path).map(|r| (c, r))) {
                    Ok((c, r)) => {
                        if s.judge(&o.check, &who, path, &r) {
                            s.retried.fetch_add(1, Ordering::SeqCst);
                            let mut l = s.retries.lock().unwrap();
                            if l.len() < 20 {
                                l.push(format!("{:>6} ms {who} GET {path}: {e}", s.ms()));
                            }
                        }
                        if !r.closes() {
                            conn = Some(c);
                        }
                    }
                    Err(e2) => s.fail(
                        &who,
                        path,
                        format!("{e} on a reused connection, then {e2} on a new one"),
                    ),
                }
            }
            Err(e) => s.fail(
                &who,
                path,
                format!(
                    "{e} ({:?}) on a {} connection",
                    e.kind(),
                    if reused { "reused" } else { "new" }
                ),
            ),
        }
        thread::sleep(o.pause);
    }
}

fn fresh_client(port: u16, t: usize, s: &LoadShared, o: &LoadOpts) {
    let who = format!("new-conn#{t}");
    let mut i = t;
    while load_running(s, o) {
        let path = o.paths[i % o.paths.len()].as_str();
        i += 1;
        match Conn::open(port)
            .and_then(|mut c| c.request("GET", path, &[("Connection", "close")], b""))
        {
            Ok(r) => {
                s.judge(&o.check, &who, path, &r);
            }
            Err(e) => s.fail(&who, path, format!("{e} ({:?})", e.kind())),
        }
        thread::sleep(o.pause);
    }
}

// ---------------------------------------------------------------------------
// Balancing and health checks

/// One `servers:` entry of [`upstream_config`].
#[derive(Debug, Clone)]
pub struct Srv {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub backup: bool,
}

impl Srv {
    /// A primary server of weight 1.
    pub fn new(name: &str, addr: SocketAddr) -> Srv {
        Srv {
            name: name.to_owned(),
            addr,
            weight: 1,
            backup: false,
        }
    }

    /// A primary server of weight 1 for backend `b` (named like it).
    pub fn of(b: &Backend) -> Srv {
        Srv::new(b.name(), b.addr())
    }

    pub fn weight(mut self, w: u32) -> Srv {
        self.weight = w;
        self
    }

    pub fn backup(mut self) -> Srv {
        self.backup = true;
        self
    }
}

/// Like [`proxy_config`], with `balance: ALGO`, any server options
/// (backup) and more upstream keys (`upstream_extra`, e.g.
/// `"hash_key: uri"` or `"health: {type: tcp, interval: 200ms}"`).
pub fn upstream_config(
    workers: usize,
    balance: &str,
    servers: &[Srv],
    upstream_extra: &[&str],
) -> String {
    let mut y = format!(
        "workers: {workers}\n\
         log_level: info\n\
         shutdown_timeout: 10s\n\
         listeners:\n\
         \x20 - name: web\n\
         \x20   bind: [\"127.0.0.1:$PORT\"]\n\
         \x20   routes:\n\
         \x20     - path: /healthz\n\
         \x20       return: {{status: 200, body: \"ok\\n\"}}\n\
         \x20     - upstream: web\n\
         upstreams:\n\
         \x20 web:\n\
         \x20   balance: {balance}\n"
    );
    for extra in upstream_extra {
        y.push_str(&format!("    {extra}\n"));
    }
    y.push_str("    servers:\n");
    for s in servers {
        y.push_str(&format!(
            "      - {{name: {}, addr: \"{}\", weight: {}{}}}\n",
            s.name,
            s.addr,
            s.weight,
            if s.backup { ", backup: true" } else { "" }
        ));
    }
    y
}

/// GET `path` over a fresh connection with extra request headers.
pub fn try_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    Conn::open(port)?.request("GET", path, headers, b"")
}

/// Like [`try_get_with`], panicking on I/O errors.
pub fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    try_get_with(port, path, headers)
        .unwrap_or_else(|e| panic!("GET {path} {headers:?} on port {port}: {e}"))
}

/// Runs `per_thread` requests in each of `threads` client threads at once
/// (`f(thread, i)` makes one request and returns what it saw); returns
/// all the results. Concurrent clients make every worker accept some.
pub fn concurrently<T: Send + 'static>(
    threads: usize,
    per_thread: usize,
    f: impl Fn(usize, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let handles: Vec<JoinHandle<Vec<T>>> = (0..threads)
        .map(|t| {
            let f = f.clone();
            thread::spawn(move || (0..per_thread).map(|i| f(t, i)).collect())
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread panicked"))
        .collect()
}

/// How many of `items` equal `what`.
pub fn count_of<T: PartialEq>(items: &[T], what: &T) -> usize {
    items.iter().filter(|x| *x == what).count()
}

/// A numeric field of /proc/PID/io (e.g. "wchar", "syscw").
pub fn proc_io(pid: i32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().parse().ok()
    })
}

/// Inodes of the established TCP connections from 127.0.0.1 to
/// 127.0.0.1:`port` (/proc/net/tcp), i.e. the client ends.
pub fn connections_to(port: u16) -> Vec<u64> {
    let want = format!("0100007F:{port:04X}");
    let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[2] == want && f[3] == "01").then(|| f[9].parse().ok())?
        })
        .collect()
}

impl Forklb {
    /// Live children of the master named `forklb-health`, sorted.
    pub fn health_pids(&self) -> Vec<i32> {
        self.child_pids()
            .into_iter()
            .filter(|&p| comm(p).as_deref() == Some("forklb-health"))
            .collect()
    }

    /// Lines of the error log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.error_log_contents()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the error log has at least `n` lines containing `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_lines(needle).len() >= n)
    }

    /// Waits until the error log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_count(needle, 1, timeout)
    }
}

/// Inode of the established TCP socket 127.0.0.1:`local` → 127.0.0.1:`remote`
/// (/proc/net/tcp), e.g. a proxy's upstream connection seen from the
/// backend as [`Request::peer`].
pub fn tcp_socket_inode(local: u16, remote: u16) -> Option<u64> {
    let (l, r) = (
        format!("0100007F:{local:04X}"),
        format!("0100007F:{remote:04X}"),
    );
    let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r && f[3] == "01").then(|| f[9].parse().ok())?
    })
}

impl Forklb {
    /// For each of `reqs` (received by `backend`), the worker that owns the
    /// upstream connection it came on, if that connection is still open.
    /// Reads /proc once, so it stays quick for many requests.
    pub fn workers_of(&self, backend: &Backend, reqs: &[Request]) -> Vec<Option<i32>> {
        let remote = format!("0100007F:{:04X}", backend.port());
        let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        // local port → inode of the established connections to the backend.
        let mut inode_of = std::collections::HashMap::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[2] == remote && f[3] == "01" {
                let port = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                if let (Some(port), Ok(inode)) = (port, f[9].parse::<u64>()) {
                    inode_of.insert(port, inode);
                }
            }
        }
        let owners: Vec<(i32, Vec<u64>)> = self
            .worker_pids()
            .into_iter()
            .map(|p| (p, socket_inodes_of(p)))
            .collect();
        reqs.iter()
            .map(|r| {
                let inode = inode_of.get(&r.peer?.port())?;
                owners
                    .iter()
                    .find(|(_, inodes)| inodes.contains(inode))
                    .map(|&(p, _)| p)
            })
            .collect()
    }
}

/// A process stopped with SIGSTOP (e.g. a worker, so that the other
/// workers accept every new connection); SIGCONT on drop.
pub struct Paused {
    pid: i32,
}

impl Paused {
    /// Stops `pid` and waits until it is stopped (state `T`).
    pub fn new(pid: i32) -> Paused {
        assert!(kill(pid, libc::SIGSTOP), "SIGSTOP {pid}");
        let stopped = wait_until(Duration::from_secs(5), || {
            proc_stat(pid).is_some_and(|s| s.state == 'T')
        });
        assert!(stopped, "process {pid} did not stop");
        Paused { pid }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        kill(self.pid, libc::SIGCONT);
    }
}
