//! The scripted [`Backend`]: a tiny threaded HTTP/1.1 origin server, its options
//! ([`BackendOpts`]) and scripts ([`Script`], [`EarlyScript`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::*;

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
    /// Connections the client (forklb) closed between requests.
    closed_by_peer: AtomicUsize,
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

/// A [`Backend`] that answers the paths of `scripts` as they say.
pub fn scripted(name: &str, scripts: Vec<Script>) -> Backend {
    Backend::start_with(
        name,
        BackendOpts {
            scripts,
            ..Default::default()
        },
    )
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
            closed_by_peer: AtomicUsize::new(0),
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

    /// Connections the client (forklb) closed between requests.
    pub fn closed_by_peer(&self) -> usize {
        self.shared.closed_by_peer.load(Ordering::SeqCst)
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
            s.closed_by_peer.fetch_add(1, Ordering::SeqCst);
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

/// A backend whose `/health` answers `status` (switchable at run time).
pub fn checked_backend(name: &str, status: u16) -> (Backend, HealthSwitch) {
    let sw = HealthSwitch::new("/health", status);
    let b = Backend::start_with(
        name,
        BackendOpts {
            health: Some(sw.clone()),
            ..Default::default()
        },
    );
    (b, sw)
}
