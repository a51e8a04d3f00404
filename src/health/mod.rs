//! The health checker: one process per configuration generation
//! (`forklb-health`), forked by the master, unprivileged like the workers,
//! on its own mio loop. It runs the active checks of every checked server
//! once for the whole instance and writes the results into shared memory,
//! where every worker's balancer sees them at its next pick.
//!
//! A TCP check passes when the connection is established; an HTTP check
//! sends `GET path` and passes when the status is within `expect_status`;
//! for an upstream with `tls` it does so over TLS, with the same
//! verification and SNI as the traffic (HAProxy's `check-ssl`), and for a
//! `protocol: h2`/`h2c` upstream it is an HTTP/2 request (`probe`,
//! `h2probe`): the check speaks what the traffic speaks.
//! Each check is bounded by `timeout`; the next one starts `interval` after
//! the previous ended. Transitions are logged the way operators know from
//! HAProxy: `server web/web1 is DOWN, reason: connection refused, check
//! duration: 1ms`.

pub mod counter;
mod h2probe;
mod outcome;
mod probe;

use crate::config::Health as HealthRt;
use crate::config::HealthKind;
use crate::event::Stream;
use crate::route::Runtime;
use crate::shm::{CheckFailure, HealthChange, HealthState, LastCheck, Shm};
use crate::signals::{self, SignalSet};
use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use probe::{Outcome, Probe, Request};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const CHANNEL_TOKEN: Token = Token(usize::MAX - 2);

pub struct HealthSetup {
    pub runtime: Runtime,
    pub shm: Arc<Shm>,
    pub channel: std::os::unix::net::UnixStream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Handshake,
    Sending,
    Reading,
}

impl Stage {
    /// What a failure in this stage says, by HAProxy's layers: before the
    /// connection L4, in the TLS handshake L6, after it L7.
    fn failure(self) -> CheckFailure {
        match self {
            Stage::Connecting => CheckFailure::Connect,
            Stage::Handshake => CheckFailure::Handshake,
            Stage::Sending | Stage::Reading => CheckFailure::BadResponse,
        }
    }

    /// What running out of time in this stage says.
    fn timeout(self) -> CheckFailure {
        match self {
            Stage::Connecting => CheckFailure::ConnectTimeout,
            Stage::Handshake => CheckFailure::HandshakeTimeout,
            Stage::Sending | Stage::Reading => CheckFailure::ResponseTimeout,
        }
    }
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// `code`: the HTTP status (0 for TCP checks).
    Passed { code: u16 },
    /// `code`: the HTTP status, 0 when none arrived.
    Failed { code: u16, why: CheckFailure },
}

impl Verdict {
    fn failed(why: CheckFailure) -> Verdict {
        Verdict::Failed { code: 0, why }
    }
}

struct Check {
    sock: Stream,
    started: Instant,
    deadline: Instant,
    stage: Stage,
    readable: bool,
    writable: bool,
    /// HTTP checks: the exchange (`None` for TCP checks).
    probe: Option<Probe>,
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
    fn connecting(&mut self) -> Step {
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
        if self.probe.is_none() {
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
                // An HTTP/2 check over TLS speaks HTTP/2 only where the
                // traffic would: the workers refuse a server whose ALPN did
                // not pick h2, so the check must not pass on it either.
                if let (Some(Probe::H2(_)), Stream::Tls(t)) = (&self.probe, &self.sock) {
                    if t.alpn_protocol() != Some(b"h2") {
                        return failed("the server did not agree to HTTP/2 (ALPN h2)");
                    }
                }
                self.stage = Stage::Sending;
                Step::Again
            }
            Ok(false) => Step::Wait,
            Err(e) => failed(format!("TLS handshake failed: {e}")),
        }
    }

    /// Writes what the probe queued; `Ok(true)` once all of it is out.
    fn write_queued(&mut self) -> io::Result<bool> {
        let Some(probe) = self.probe.as_mut() else {
            return Ok(true);
        };
        while !probe.output().is_empty() {
            if !self.writable {
                return Ok(false);
            }
            match self.sock.write(probe.output()) {
                Ok(n) => probe.advance_output(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes the request.
    fn sending(&mut self) -> Step {
        match self.write_queued() {
            Ok(true) => {
                self.stage = Stage::Reading;
                Step::Again
            }
            Ok(false) => Step::Wait,
            Err(e) => failed(describe(&e)),
        }
    }

    /// Reads the response until the probe knows its status.
    fn reading(&mut self) -> Step {
        // HTTP/2 answers the server's SETTINGS while reading; TLS: what
        // did not fit in the socket goes out first.
        if let Err(e) = self
            .write_queued()
            .and_then(|_| self.sock.flush_queued(&mut self.writable))
        {
            return failed(describe(&e));
        }
        if !self.readable {
            return Step::Wait;
        }
        let Some(probe) = self.probe.as_mut() else {
            return failed("no request");
        };
        let mut buf = [0u8; 4096];
        let outcome = match self.sock.read(&mut buf) {
            Ok(0) => probe.eof(),
            Ok(n) => probe.recv(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                return Step::Wait;
            }
            Err(e) => return failed(describe(&e)),
        };
        match outcome {
            Outcome::Pending => Step::Again,
            Outcome::Status(code) => Step::Status(code),
            Outcome::Failed(reason) => failed(reason),
        }
    }
}

struct Target {
    upstream: usize,
    server: usize,
    label: String,
    addr: SocketAddr,
    /// HTTP checks: what to ask (`None` for TCP checks).
    request: Option<Request>,
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
                let request = (cfg.kind == HealthKind::Http).then(|| {
                    Request::new(
                        up.protocol,
                        up.tls.is_some(),
                        &cfg.path,
                        up.host_header.as_deref().unwrap_or(&srv.addr_text),
                    )
                });
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
                        let verdict = Verdict::failed(c.stage.timeout());
                        self.finish(i, verdict, &reason);
                    }
                    // `disable health` over the runtime API: no probe, but
                    // look again at the next interval.
                    None if now >= t.next_at
                        && !self.shm.server(t.upstream, t.server).is_checked() =>
                    {
                        self.targets[i].next_at = now + self.targets[i].cfg.interval;
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
                    return self.finish(i, Verdict::failed(CheckFailure::Connect), &reason);
                }
                let sock = match &t.tls {
                    None => Stream::Plain(sock),
                    Some((cfg, name)) => {
                        match crate::tls::TlsStream::connect(sock, Arc::clone(cfg), name.clone()) {
                            Ok(s) => Stream::Tls(Box::new(s)),
                            Err(e) => {
                                let reason = format!("TLS setup failed: {e}");
                                let verdict = Verdict::failed(CheckFailure::Handshake);
                                return self.finish(i, verdict, &reason);
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
                    probe: t.request.as_ref().map(Request::probe),
                });
            }
            Err(e) => {
                let reason = describe(&e);
                self.finish(i, Verdict::failed(CheckFailure::Connect), &reason);
            }
        }
    }

    /// Moves check `i` forward as far as readiness allows.
    fn advance(&mut self, i: usize) {
        loop {
            let Some(t) = self.targets.get_mut(i) else {
                return;
            };
            let Some(c) = t.check.as_mut() else {
                return;
            };
            let stage = c.stage;
            let step = match stage {
                Stage::Connecting => c.connecting(),
                Stage::Handshake => c.handshaking(),
                Stage::Sending => c.sending(),
                Stage::Reading => c.reading(),
            };
            match step {
                Step::Again => {}
                Step::Wait => return,
                Step::Done { ok, reason } => {
                    let verdict = if ok {
                        Verdict::Passed { code: 0 }
                    } else {
                        Verdict::failed(stage.failure())
                    };
                    return self.finish(i, verdict, &reason);
                }
                Step::Status(code) => return self.judge(i, code),
            }
        }
    }

    fn judge(&mut self, i: usize, code: u16) {
        let crate::config::StatusRange { low: lo, high: hi } = self.targets[i].cfg.expect;
        let verdict = if (lo..=hi).contains(&code) {
            Verdict::Passed { code }
        } else {
            Verdict::Failed {
                code,
                why: CheckFailure::Status,
            }
        };
        let reason = format!("HTTP status {code}");
        self.finish(i, verdict, &reason);
    }

    /// Records a check result in shared memory and schedules the next one.
    fn finish(&mut self, i: usize, verdict: Verdict, reason: &str) {
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
        let (check, ok) = match verdict {
            Verdict::Passed { code } => (LastCheck::Passed { code, duration }, true),
            Verdict::Failed { code, why } => (
                LastCheck::Failed {
                    code,
                    duration,
                    why,
                },
                false,
            ),
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
        if change.is_some() {
            // The backend may have lost its last server or got one back.
            self.shm.observe_backend(t.upstream);
        }
        match change {
            Some(HealthChange::WentDown) => log::warn!(
                "server {} is DOWN, reason: {reason}, check duration: {ms}ms",
                t.label
            ),
            Some(HealthChange::WentUp { .. }) => {
                log::warn!(
                    "server {} is UP, reason: {reason}, check duration: {ms}ms",
                    t.label
                );
                // Requests queued for a full upstream may use it now.
                self.shm.wake_waiters(t.upstream);
            }
            None => {}
        }
    }
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
