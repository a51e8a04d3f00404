//! The health checker: one process per configuration generation
//! (`forklb-health`), forked by the master, unprivileged like the workers,
//! on its own mio loop. It runs the active checks of every checked server
//! once for the whole instance and writes the results into shared memory,
//! where every worker's balancer sees them at its next pick.
//!
//! A TCP check passes when the connection is established; an HTTP check
//! sends `GET path` and passes when the status is within `expect_status`;
//! for an upstream with `tls` it does so over TLS, with the same
//! verification and SNI as the traffic (HAProxy's `check-ssl`).
//! Each check is bounded by `timeout`; the next one starts `interval` after
//! the previous ended. Transitions are logged the way operators know from
//! HAProxy: `server web/web1 is DOWN, reason: connection refused, check
//! duration: 1ms`.

pub mod counter;

use crate::config::Health as HealthRt;
use crate::config::HealthKind;
use crate::event::Stream;
use crate::route::Runtime;
use crate::shm::{HealthChange, HealthState, LastCheck, Shm};
use crate::signals::{self, SignalSet};
use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const CHANNEL_TOKEN: Token = Token(usize::MAX - 2);
/// Bytes of an HTTP check response read at most (the status line is enough).
const MAX_RESPONSE: usize = 4096;

pub struct HealthSetup {
    pub runtime: Runtime,
    pub shm: Arc<Shm>,
    pub channel: std::os::unix::net::UnixStream,
}

enum Stage {
    Connecting,
    Handshake,
    Sending { sent: usize },
    Reading,
}

struct Check {
    sock: Stream,
    started: Instant,
    deadline: Instant,
    stage: Stage,
    readable: bool,
    writable: bool,
    response: Vec<u8>,
}

/// What one stage of a check came to.
enum Step {
    /// Go round again: the stage moved on, or there may be more to read.
    Again,
    /// Nothing more until the socket is ready again.
    Wait,
    /// The check is over, without a status code.
    Done { ok: bool, reason: String },
    /// A status line arrived: judge its code.
    Status(u16),
}

fn failed(reason: impl Into<String>) -> Step {
    Step::Done {
        ok: false,
        reason: reason.into(),
    }
}

impl Check {
    /// Waits for the connection; a TCP check passes once it is established.
    fn connecting(&mut self, http: bool) -> Step {
        if !self.writable && !self.readable {
            return Step::Wait;
        }
        match crate::net::connect_progress(self.sock.sock()) {
            Ok(true) => {}
            Ok(false) => {
                self.writable = false;
                self.readable = false;
                return Step::Wait;
            }
            Err(e) => return failed(describe(&e)),
        }
        if !http {
            return Step::Done {
                ok: true,
                reason: "connection established".to_owned(),
            };
        }
        self.stage = Stage::Handshake;
        Step::Again
    }

    /// The TLS handshake (a no-op for plain sockets).
    fn handshaking(&mut self) -> Step {
        match self.sock.handshake(&mut self.readable, &mut self.writable) {
            Ok(true) => {
                self.stage = Stage::Sending { sent: 0 };
                Step::Again
            }
            Ok(false) => Step::Wait,
            Err(e) => failed(format!("TLS handshake failed: {e}")),
        }
    }

    /// Writes the rest of `request`, `sent` bytes of which went out already.
    fn sending(&mut self, sent: usize, request: &[u8]) -> Step {
        if !self.writable {
            return Step::Wait;
        }
        match self.sock.write(&request[sent..]) {
            Ok(n) if sent + n >= request.len() => self.stage = Stage::Reading,
            Ok(n) => self.stage = Stage::Sending { sent: sent + n },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                return Step::Wait;
            }
            Err(e) => return failed(describe(&e)),
        }
        Step::Again
    }

    /// Reads the response until its status line is complete.
    fn reading(&mut self) -> Step {
        // TLS: what did not fit in the socket goes out first.
        if let Err(e) = self.sock.flush_queued(&mut self.writable) {
            return failed(describe(&e));
        }
        if !self.readable {
            return Step::Wait;
        }
        let mut buf = [0u8; 1024];
        match self.sock.read(&mut buf) {
            Ok(0) => match status_code(&self.response) {
                Some(code) => Step::Status(code),
                None => failed("connection closed before a status line"),
            },
            Ok(n) => {
                self.response.extend_from_slice(&buf[..n]);
                if let Some(code) = status_code(&self.response) {
                    return Step::Status(code);
                }
                if self.response.len() >= MAX_RESPONSE {
                    return failed("no status line in the response");
                }
                Step::Again
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Step::Wait
            }
            Err(e) => failed(describe(&e)),
        }
    }
}

struct Target {
    upstream: usize,
    server: usize,
    label: String,
    addr: SocketAddr,
    request: Vec<u8>,
    /// HTTP checks of an HTTPS upstream: its client configuration and the
    /// server's name.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    cfg: HealthRt,
    next_at: Instant,
    check: Option<Check>,
}

/// Runs the checker until it is told to stop (Ok) or cannot go on (Err).
pub fn run(setup: HealthSetup) -> io::Result<()> {
    Checker::new(setup).and_then(|mut c| c.run())
}

struct Checker {
    poll: Poll,
    signals: SignalSet,
    channel: UnixStream,
    shm: Arc<Shm>,
    targets: Vec<Target>,
}

impl Checker {
    fn new(setup: HealthSetup) -> io::Result<Checker> {
        let poll = Poll::new()?;
        let mut signals = SignalSet::new(&[
            signals::SIGTERM,
            signals::SIGINT,
            signals::SIGQUIT,
            signals::SIGUSR1,
            signals::SIGHUP,
        ])?;
        signals.register(poll.registry(), SIGNAL_TOKEN)?;
        setup.channel.set_nonblocking(true)?;
        let mut channel = UnixStream::from_std(setup.channel);
        poll.registry()
            .register(&mut channel, CHANNEL_TOKEN, Interest::READABLE)?;
        let now = Instant::now();
        let mut targets = Vec::new();
        for (u, up) in setup.runtime.upstreams.iter().enumerate() {
            let Some(cfg) = &up.health else {
                continue;
            };
            for (s, srv) in up.servers.iter().enumerate() {
                let request = match cfg.kind {
                    HealthKind::Tcp => Vec::new(),
                    HealthKind::Http => format!(
                        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: forklb-health\r\nConnection: close\r\n\r\n",
                        cfg.path,
                        up.host_header.as_deref().unwrap_or(&srv.addr_text)
                    )
                    .into_bytes(),
                };
                let tls = match (cfg.kind, &up.tls, &srv.tls_name) {
                    (HealthKind::Http, Some(c), Some(name)) => Some((Arc::clone(c), name.clone())),
                    _ => None,
                };
                targets.push(Target {
                    upstream: u,
                    server: s,
                    label: format!("{}/{}", up.name, srv.name),
                    addr: srv.addr,
                    request,
                    tls,
                    cfg: cfg.clone(),
                    // The first round starts at once, so a dead server is
                    // found within interval × fall + timeout of start-up.
                    next_at: now,
                    check: None,
                });
            }
        }
        log::info!(
            "health checker started: {} server(s) checked",
            targets.len()
        );
        Ok(Checker {
            poll,
            signals,
            channel,
            shm: setup.shm,
            targets,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let next = self
                .targets
                .iter()
                .map(|t| t.check.as_ref().map_or(t.next_at, |c| c.deadline))
                .min();
            let timeout = next.map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    SIGNAL_TOKEN => {
                        self.signals.drain_wakeups();
                        let stop = [signals::SIGTERM, signals::SIGINT, signals::SIGQUIT]
                            .iter()
                            .fold(false, |acc, &s| self.signals.take(s) | acc);
                        if stop {
                            return Ok(());
                        }
                        if self.signals.take(signals::SIGUSR1) {
                            let _ = crate::log::reopen();
                        }
                    }
                    CHANNEL_TOKEN => {
                        let mut buf = [0u8; 16];
                        // EOF: the master is gone; checking for nobody is pointless.
                        if matches!(self.channel.read(&mut buf), Ok(0)) {
                            return Ok(());
                        }
                    }
                    Token(i) => {
                        if let Some(c) = self.targets.get_mut(i).and_then(|t| t.check.as_mut()) {
                            c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                            c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                        }
                        self.advance(i);
                    }
                }
            }
            let now = Instant::now();
            for i in 0..self.targets.len() {
                let t = &self.targets[i];
                match &t.check {
                    Some(c) if now >= c.deadline => {
                        let reason = format!("timeout after {}ms", t.cfg.timeout.as_millis());
                        self.finish(i, false, &reason, 0);
                    }
                    None if now >= t.next_at => self.start(i),
                    _ => {}
                }
            }
        }
    }

    fn start(&mut self, i: usize) {
        let now = Instant::now();
        let t = &mut self.targets[i];
        match TcpStream::connect(t.addr) {
            Ok(mut sock) => {
                if let Err(e) = self.poll.registry().register(
                    &mut sock,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    let reason = e.to_string();
                    return self.finish(i, false, &reason, 0);
                }
                let sock = match &t.tls {
                    None => Stream::Plain(sock),
                    Some((cfg, name)) => {
                        match crate::tls::TlsStream::connect(sock, Arc::clone(cfg), name.clone()) {
                            Ok(s) => Stream::Tls(Box::new(s)),
                            Err(e) => {
                                let reason = format!("TLS setup failed: {e}");
                                return self.finish(i, false, &reason, 0);
                            }
                        }
                    }
                };
                t.check = Some(Check {
                    sock,
                    started: now,
                    deadline: now + t.cfg.timeout,
                    stage: Stage::Connecting,
                    readable: false,
                    writable: false,
                    response: Vec::new(),
                });
            }
            Err(e) => {
                let reason = describe(&e);
                self.finish(i, false, &reason, 0);
            }
        }
    }

    /// Moves check `i` forward as far as readiness allows.
    fn advance(&mut self, i: usize) {
        loop {
            let Some(t) = self.targets.get_mut(i) else {
                return;
            };
            let http = t.cfg.kind == HealthKind::Http;
            let Some(c) = t.check.as_mut() else {
                return;
            };
            let step = match c.stage {
                Stage::Connecting => c.connecting(http),
                Stage::Handshake => c.handshaking(),
                Stage::Sending { sent } => c.sending(sent, &t.request),
                Stage::Reading => c.reading(),
            };
            match step {
                Step::Again => {}
                Step::Wait => return,
                Step::Done { ok, reason } => return self.finish(i, ok, &reason, 0),
                Step::Status(code) => return self.judge(i, code),
            }
        }
    }

    fn judge(&mut self, i: usize, code: u16) {
        let crate::config::StatusRange { low: lo, high: hi } = self.targets[i].cfg.expect;
        let ok = (lo..=hi).contains(&code);
        let reason = format!("HTTP status {code}");
        self.finish(i, ok, &reason, code);
    }

    /// Records a check result in shared memory and schedules the next one.
    fn finish(&mut self, i: usize, ok: bool, reason: &str, code: u16) {
        let now = Instant::now();
        let Some(t) = self.targets.get_mut(i) else {
            return;
        };
        let duration = match t.check.take() {
            Some(mut c) => {
                let _ = self.poll.registry().deregister(c.sock.sock_mut());
                now.saturating_duration_since(c.started)
            }
            None => Duration::ZERO,
        };
        t.next_at = now + t.cfg.interval;
        let check = if ok {
            LastCheck::Passed { code, duration }
        } else {
            LastCheck::Failed { code, duration }
        };
        let (rise, fall) = (t.cfg.rise, t.cfg.fall);
        let change = self
            .shm
            .server(t.upstream, t.server)
            .record_check(check, |h| {
                let (counter, down, _) = counter::apply(h.counter, h.down, ok, rise, fall);
                HealthState { counter, down }
            });
        let ms = duration.as_millis();
        match change {
            Some(HealthChange::WentDown) => log::warn!(
                "server {} is DOWN, reason: {reason}, check duration: {ms}ms",
                t.label
            ),
            Some(HealthChange::WentUp { .. }) => log::warn!(
                "server {} is UP, reason: {reason}, check duration: {ms}ms",
                t.label
            ),
            None => {}
        }
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

/// An error as operators read it: `connection refused`, not `os error 111`.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::TimedOut => "timeout".to_owned(),
        _ => e.to_string(),
    }
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
}
