//! One request and its response, knowing no client wire format (DESIGN §5
//! "Sessions and exchanges"). A session hands it a request head and body
//! chunks; it routes, answers locally or picks a server and drives its
//! upstream side (`upstream_h1`), and hands the response head and body
//! chunks to a `ResponseSink`, which pushes back when the client reads
//! slowly (an HTTP/2 stream's send window). HTTP/2 streams use it, and
//! HTTP/1.1 connections for every request they route upstream: to an
//! HTTP/1.1 upstream in pass-through (`start_h1`: the sink lends its
//! socket, bodies move socket to socket with their framing), to an HTTP/2
//! upstream re-framed (`h1_exchange`).

use super::attempt::{self, Acquired, Attempts};
use super::env::Env;
use super::h1_client::H1Client;
use super::h2_upstream::SHARED;
use super::queue::WaitTicket;
use super::record::{self, Record};
pub use super::side::ResponseSink;
use super::side::{RequestOut, UpStep, Why};
use super::upstream_h1::UpstreamH1;
use super::upstream_h2::UpstreamH2;
use crate::buffer::Buf;
use crate::event::Stream;
use crate::h2;
use crate::http::header_rules::{Applied, RouteHeaders, Vars};
use crate::http::request_id::{self, RequestId};
use crate::http::{self, errors, rewrite, Framing};
use crate::route::Action;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A request head as the exchange needs it, whatever the client spoke.
pub struct Request<'r> {
    pub method: &'r str,
    /// Origin form (or `*`), as the client sent it.
    pub target: &'r str,
    /// Header fields, with `Host` (from `:authority` for HTTP/2).
    pub headers: &'r mut [httparse::Header<'r>],
    /// How the body is delimited: `Length`, `Chunked` (length unknown),
    /// or `None`.
    pub framing: Framing,
    pub protocol: &'static str,
    /// The connection's verified client certificate subject (mTLS), empty
    /// without one: `$ssl_client_s_dn`.
    pub ssl_client_s_dn: &'r str,
}

/// The client connection an exchange belongs to.
#[derive(Clone, Copy)]
pub struct Client {
    pub peer: SocketAddr,
    /// The address the client reached (the listener's end of its
    /// connection), for the PROXY headers of `send_proxy` upstreams: known
    /// only where the configuration has one (see `local_addr_for`).
    pub local: Option<SocketAddr>,
    pub listener: usize,
    /// The connection's slot: owner of the upstream sockets it uses.
    pub slot: usize,
}

/// The local address of a client socket when a PROXY header may need it:
/// one `getsockname` per request, and only in configurations with a
/// `send_proxy` upstream (`upstream`: the request's, when already known).
#[inline]
pub fn local_addr_for(
    rt: &crate::route::Runtime,
    upstream: Option<usize>,
    sock: &mio::net::TcpStream,
) -> Option<SocketAddr> {
    let needed = match upstream {
        Some(u) => rt.upstreams.get(u).is_some_and(|u| u.send_proxy.is_some()),
        None => rt.send_proxy_any,
    };
    if needed {
        sock.local_addr().ok()
    } else {
        None
    }
}

/// An HTTP/1.1 request for an HTTP/1.1 upstream, routed by its session
/// (`Exchange::start_h1`).
pub struct H1Request<'r> {
    pub upstream: usize,
    /// The normalized path (for `hash` balancing).
    pub route_path: &'r [u8],
    /// The route's header rules, and the request's host for `$host` and
    /// client certificate subject for `$ssl_client_s_dn`.
    pub headers: Option<&'r Arc<RouteHeaders>>,
    pub host: Option<&'r str>,
    pub ssl_client_s_dn: &'r str,
    pub framing: Framing,
    /// The client asked to switch protocols.
    pub upgrade: bool,
    /// `Max-Forwards`, as it goes on (decremented).
    pub max_forwards: Option<u64>,
    /// Safe to send again on a fresh connection: idempotent, no body.
    pub replayable: bool,
}

/// The upstream connection after a `101`, for the client's tunnel.
pub struct TunnelEnd {
    pub sock: Stream,
    pub up_slot: usize,
    pub addr: SocketAddr,
    /// What the server sent after its `101` head.
    pub input: Option<Buf>,
    /// An event reported the server's FIN or an error already.
    pub hup: bool,
}

/// Bytes a tunnel relayed after the `101`, each way.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tunnelled {
    pub to_upstream: u64,
    pub to_client: u64,
}

/// How the current server failed before anything reached the client
/// (`Exchange::fail_over`).
enum Failover<'a> {
    /// connect() or the TLS handshake failed: `econ`, then 502.
    ConnectFailed {
        what: &'a str,
        error: &'a dyn std::fmt::Display,
    },
    /// Not connected within `timeouts.connect`: `econ`, then 504.
    ConnectTimedOut { doing: &'a str },
    /// The server closed before answering a replayable request: `eresp`,
    /// then 502.
    ClosedBeforeAnswer { doing: &'a str, why: Why },
    /// An HTTP/2 server refused the request unprocessed twice (it is
    /// shutting down, or at its stream limit): not a failure of the
    /// server (no `eresp`, no passive mark), then 502.
    Refused { doing: &'a str },
}

/// A response forklb makes itself.
struct Local {
    status: u16,
    /// The failure was the upstream's and came before the request body
    /// was read: an HTTP/1.1 connection may go on after the answer.
    keep_ok: bool,
    content_type: &'static [u8],
    /// One extra header field (Location, Allow), if any.
    extra: Option<(&'static [u8], Vec<u8>)>,
    /// A dashboard answer: with `dashboard::SECURITY_HEADERS`.
    dashboard: bool,
    body: Vec<u8>,
    head_sent: bool,
    pos: usize,
}

/// A request waiting for a server slot (`maxconn`): its place in the
/// worker's queue, and how it connects once a slot is taken for it.
struct Queued {
    wait: WaitTicket,
    use_pool: bool,
    /// When it began to wait (`Env::now_ms`), for the queue time (qtime).
    since_ms: u64,
}

enum State {
    /// Boxed: rare, and large (`State` moves cheaply without it).
    Local(Box<Local>),
    /// Waiting in the upstream's queue until a slot is taken for it or
    /// `timeouts.queue` passes (then 503, HAProxy's `sQ`).
    Queued(Box<Queued>),
    Upstream(Box<UpstreamH1>),
    /// A stream on a shared HTTP/2 upstream connection.
    UpstreamH2(Box<UpstreamH2>),
    /// The response is complete (or was aborted): the session logs and
    /// drops the exchange.
    Finished,
}

pub struct Exchange {
    state: State,
    att: Attempts,
    record: Option<Box<Record>>,
    client: Client,
    /// An HTTP/1.1 client of an HTTP/1.1 upstream: bytes pass through.
    passthrough: bool,
    /// The response head's size (pass-through), for the byte counters.
    resp_head_len: u64,
    is_head: bool,
    /// Safe to send again on a fresh connection: idempotent, no body.
    replayable: bool,
    /// An HTTP/2 server refused the request unprocessed once, and it went
    /// again to the same server (a second refusal moves on).
    resent_refused: bool,
    /// Status sent to the client (0: none yet).
    status: u16,
    upstream_status: Option<u16>,
    /// Response body bytes sent to the client.
    body_sent: u64,
    /// The request as it goes upstream: its head, then body bytes still
    /// to send (re-framed as chunked when the length is unknown).
    req_head: Vec<u8>,
    /// The request for an HTTP/2 upstream (then `req_head` stays empty and
    /// `req_out` holds the body unframed), with its trailers.
    req_h2: Option<Box<h2::RequestHead>>,
    req_trailers: Option<h2::HeaderList>,
    req_framing: Framing,
    req_out: Vec<u8>,
    /// Payload bytes in `req_out`, reported forwarded once written.
    req_unacked: usize,
    req_ended: bool,
    req_total: u64,
    pub deadline: Instant,
    /// `$request_id`, logged.
    request_id: RequestId,
    /// The route's header rules with their values for this request.
    rules: Option<Arc<Applied>>,
    /// The request's place in a `limit_conn` table (HTTP/2: one per
    /// stream), given back when the exchange is dropped.
    hold: Option<crate::shm::ConnHold>,
    /// What its log line says if it ends before any response went out.
    unanswered: Unanswered,
}

/// Why an exchange ended before any response went to its client: the
/// status its access log line gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanswered {
    /// The client went away, or its connection ended: nginx's 499.
    ClientClosed,
    /// The worker's `shutdown_timeout` passed and it cut the exchange:
    /// nobody answered and the client did not leave, so, as nginx logs
    /// such a request at its `worker_shutdown_timeout`, status `000`.
    ShutdownCut,
}

impl Unanswered {
    fn log_status(self) -> u16 {
        match self {
            Unanswered::ClientClosed => 499,
            Unanswered::ShutdownCut => 0,
        }
    }
}

/// One run of `drive`: whether anything moved, and the wait its last
/// step began (the deadline is computed once, when the run ends).
#[derive(Default)]
struct Run {
    moved: bool,
    wait: Option<std::time::Duration>,
}

impl Run {
    fn settle(&mut self, ex: &mut Exchange, env: &Env) {
        if let Some(t) = self.wait.take() {
            ex.deadline = env.now + t;
        }
    }
}

/// Whether a request whose fields came parsed (HTTP/2) breaks the limits
/// an HTTP/1.1 head has (`max_header_bytes`, `http::MAX_HEADERS` fields):
/// it goes upstream as such a head, and the limits must not depend on the
/// client's protocol. 414 when the request line alone is over the size,
/// else 431. Cookie crumbs count as the one field they are joined into.
fn over_head_limits(
    method: &str,
    target: &str,
    headers: &[httparse::Header],
    max_bytes: usize,
) -> Option<u16> {
    const CRLF: usize = 2;
    // "METHOD SP target SP HTTP/1.1 CRLF".
    let line = method.len() + 1 + target.len() + 1 + 8 + CRLF;
    if line > max_bytes {
        return Some(414);
    }
    let (mut size, mut fields, mut crumbs) = (line + CRLF, 0usize, 0usize);
    for h in headers {
        if http::name_is(h.name, "cookie") {
            // Joined with "; " after the first crumb.
            size += h.value.len()
                + if crumbs == 0 {
                    h.name.len() + 2 + CRLF
                } else {
                    2
                };
            fields += usize::from(crumbs == 0);
            crumbs += 1;
        } else {
            size += h.name.len() + 2 + h.value.len() + CRLF;
            fields += 1;
        }
    }
    (size > max_bytes || fields > http::MAX_HEADERS).then_some(431)
}

/// Request body bytes an exchange holds for its upstream at most.
const REQ_BUFFER_MAX: usize = 64 * 1024;

/// What `drive` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Moved,
    Blocked,
    Finished,
    /// A `101` went to the client: its session takes the upstream
    /// connection (`take_tunnel`) and ends the exchange when the tunnel ends.
    Upgraded,
}

impl Exchange {
    /// Starts the exchange of a valid request head: routes it and begins
    /// the answer (local, or the first upstream attempt).
    /// The caller counted the request (`count_request`) already.
    pub fn start(env: &mut Env, client: Client, req: Request, end_of_request: bool) -> Exchange {
        let record = Record::capture(env, req.method, req.target, req.headers, req.protocol);
        let is_head = req.method == "HEAD";
        let idempotent = matches!(req.method, "GET" | "HEAD" | "OPTIONS" | "TRACE");
        let mut ex = Exchange {
            state: State::Finished,
            att: Attempts::new(),
            record,
            client,
            passthrough: false,
            resp_head_len: 0,
            is_head,
            replayable: idempotent && req.framing == Framing::None,
            resent_refused: false,
            status: 0,
            upstream_status: None,
            body_sent: 0,
            req_head: Vec::new(),
            req_h2: None,
            req_trailers: None,
            req_framing: req.framing,
            req_out: Vec::new(),
            req_unacked: 0,
            req_ended: end_of_request,
            req_total: 0,
            deadline: env.now + env.rt.timeouts.upstream_read,
            request_id: request_id::next(),
            rules: None,
            hold: None,
            unanswered: Unanswered::ClientClosed,
        };
        ex.route(env, req);
        ex
    }

    /// Starts the exchange of an HTTP/1.1 request its session routed to
    /// HTTP/1.1 upstream `r.upstream` (the session answers the other
    /// routes itself and has checked the body's declared size). The
    /// request body and the response pass through (`H1Client`).
    /// The exchange is made in `slot` (it is large: no copy on the way).
    pub fn start_h1<'s>(
        slot: &'s mut Option<Exchange>,
        env: &mut Env,
        client: Client,
        r: &H1Request,
        req: &httparse::Request,
        is_head: bool,
        record: Option<Box<Record>>,
    ) -> &'s mut Exchange {
        let ex = slot.insert(Exchange {
            state: State::Finished,
            att: Attempts::new(),
            record,
            client,
            passthrough: true,
            resp_head_len: 0,
            is_head,
            replayable: r.replayable,
            resent_refused: false,
            status: 0,
            upstream_status: None,
            body_sent: 0,
            req_head: Vec::new(),
            req_h2: None,
            req_trailers: None,
            req_framing: r.framing,
            req_out: Vec::new(),
            req_unacked: 0,
            // The body goes socket to socket: nothing of it waits here.
            req_ended: true,
            req_total: 0,
            deadline: env.now + env.rt.timeouts.upstream_read,
            request_id: request_id::next(),
            rules: None,
            hold: None,
            unanswered: Unanswered::ClientClosed,
        });
        ex.att.begin(env, r.upstream);
        ex.apply_rules(env, r.headers, r.host, r.ssl_client_s_dn);
        let upstream = &env.rt.upstreams[r.upstream];
        let key = match upstream.balance {
            crate::config::Balance::Hash => {
                attempt::request_hash(client.peer.ip(), req, r.route_path, &upstream.hash_key)
            }
            _ => None,
        };
        let acquired = ex.att.acquire_first(env, key);
        let Some(server) = host_server(acquired) else {
            ex.local_error_keeping(503, true);
            return ex;
        };
        let how = rewrite::UpstreamRequest {
            client_ip: client.peer.ip(),
            proto: env
                .rt
                .listeners
                .get(client.listener)
                .map_or("http", |l| l.proto),
            host_override: upstream.host_header.as_deref(),
            default_host: &upstream.servers[server].addr_text,
            // Also for an HTTP/1.0 client: the request goes up as
            // HTTP/1.1, so its connection can be pooled too.
            keep_alive: env.pool.enabled(r.upstream),
            upgrade: r.upgrade,
            framing: r.framing,
            max_forwards: r.max_forwards,
            rules: ex.rules.as_deref().map(Applied::request),
        };
        let mut head = env.heads.get();
        rewrite::write_upstream_request(&mut head, req, &how);
        ex.req_head = head;
        // An upgraded connection is never pooled: it is not taken from it.
        ex.go(env, acquired, !r.upgrade);
        ex
    }

    fn route(&mut self, env: &mut Env, req: Request) {
        let mut host_buf = [0u8; 256];
        let hreq = httparse::Request {
            method: Some(req.method),
            path: Some(req.target),
            version: Some(1),
            headers: req.headers,
        };
        // CONNECT asks for a tunnel, which forklb does not offer.
        if req.method == "CONNECT" {
            return self.local_error(405);
        }
        let limits = over_head_limits(
            req.method,
            req.target,
            hreq.headers,
            env.rt.max_header_bytes,
        );
        if let Some(status) = limits {
            log::info!(
                "client {} sent a request head over the limits ({status})",
                self.client.peer
            );
            return self.local_error(status);
        }
        let mut hosts = hreq
            .headers
            .iter()
            .filter(|h| http::name_is(h.name, "host"));
        if hosts.clone().nth(1).is_some() {
            // HTTP/2: a Host naming another host than `:authority`.
            log::info!("client {} sent two different hosts", self.client.peer);
            return self.local_error(400);
        }
        if hosts.any(|h| !http::host::is_valid(h.value)) {
            log::info!("client {} sent an invalid authority", self.client.peer);
            return self.local_error(400);
        }
        let Ok(host) = http::request::routing_host(&hreq, &mut host_buf) else {
            log::info!(
                "client {} sent a host no route can be chosen by",
                self.client.peer
            );
            return self.local_error(400);
        };
        let path = http::request::origin_path(req.target);
        let route_path = match http::path::route_path(&path) {
            Ok(p) => p,
            Err(e) => {
                log::info!(
                    "client {} sent an invalid path: {}",
                    self.client.peer,
                    e.reason()
                );
                return self.local_error(400);
            }
        };
        let Some(route) = env.rt.route(self.client.listener, host, &route_path) else {
            return self.local(404, b"Not Found\n".to_vec(), None);
        };
        if !route.permits(self.client.peer.ip()) {
            log::info!(
                "client {} refused by the route's allow/deny",
                self.client.peer
            );
            return self.local_error(403);
        }
        // Limits after allow/deny: a refused client fills no table.
        if route.has_limits() {
            match super::limit::admit(env, route, self.client.peer.ip(), hreq.headers) {
                super::limit::Admit::Pass(hold) => self.hold = hold,
                super::limit::Admit::Reject(status) => return self.local_error(status),
            }
        }
        match &route.action {
            Action::Return {
                status,
                content_type,
                body,
            } => {
                let ct = content_type.as_bytes().to_vec();
                self.local(*status, body.clone(), Some((b"content-type", ct)));
            }
            Action::Redirect { status, to } => match to.expand(host, &path) {
                Some(to) => {
                    let body = format!("{}\n", errors::reason(*status)).into_bytes();
                    self.local(*status, body, Some((b"location", to.into_bytes())));
                }
                None => self.local_error(400),
            },
            Action::Metrics(format) => {
                let body = crate::metrics::render_as(*format, env.rt, env.shm).into_bytes();
                self.local(200, body, None);
                if let State::Local(l) = &mut self.state {
                    l.content_type = crate::metrics::CONTENT_TYPE.as_bytes();
                }
            }
            Action::Stats(stats) => self.answer_stats(env, stats, &hreq),
            Action::Upstream(u) => {
                // RFC 9110 §7.6.2, as for HTTP/1.1 clients (conn.rs).
                let max_forwards = match http::request::max_forwards(req.method, hreq.headers) {
                    Ok(Some(0)) => return self.answer_as_final_recipient(req.method),
                    Ok(n) => n.map(|n| n - 1),
                    Err(e) => {
                        log::info!(
                            "client {} sent an invalid request: {}",
                            self.client.peer,
                            e.reason
                        );
                        return self.local_error(400);
                    }
                };
                self.apply_rules(env, route.headers.as_ref(), host, req.ssl_client_s_dn);
                self.dispatch_upstream(env, *u, &hreq, &route_path, max_forwards)
            }
        }
    }

    /// `Max-Forwards: 0` on an upstream route: forklb is the final
    /// recipient (`http::request::final_recipient_answer`).
    fn answer_as_final_recipient(&mut self, method: &str) {
        let allow = http::request::FINAL_RECIPIENT_ALLOW.as_bytes().to_vec();
        let (status, body) = http::request::final_recipient_answer(method);
        self.local(status, body.to_vec(), Some((b"allow", allow)));
    }

    /// A `stats` route: the dashboard (`crate::dashboard`).
    #[inline(never)]
    fn answer_stats(
        &mut self,
        env: &mut Env,
        stats: &crate::config::Stats,
        req: &httparse::Request,
    ) {
        let (peer, listener) = (self.client.peer.ip(), self.client.listener);
        let a = super::stats_route::answer(env, stats, req, peer, listener);
        let allow = a
            .allow
            .then(|| (&b"allow"[..], crate::dashboard::ALLOW.as_bytes().to_vec()));
        self.local(a.status, a.body.into_owned(), allow);
        if let State::Local(l) = &mut self.state {
            l.content_type = a.content_type.as_bytes();
            l.dashboard = true;
        }
    }

    /// The route's header rules, their values expanded for this request.
    fn apply_rules(
        &mut self,
        env: &Env,
        rules: Option<&Arc<RouteHeaders>>,
        host: Option<&str>,
        ssl_client_s_dn: &str,
    ) {
        let Some(rules) = rules else { return };
        let listener = env.rt.listeners.get(self.client.listener);
        let vars = Vars {
            client: self.client.peer,
            host: host.unwrap_or("").as_bytes(),
            scheme: listener.map_or("http", |l| l.proto),
            request_id: self.request_id,
            server_name: listener.map_or("", |l| l.name.as_str()),
            ssl_client_s_dn,
        };
        self.rules = Some(Arc::new(Applied::new(rules, &vars)));
    }

    fn dispatch_upstream(
        &mut self,
        env: &mut Env,
        u: usize,
        req: &httparse::Request,
        route_path: &[u8],
        max_forwards: Option<u64>,
    ) {
        if let Framing::Length(n) = self.req_framing {
            if env.rt.max_body_bytes > 0 && n > env.rt.max_body_bytes {
                log::info!(
                    "client {} sent a too large body: {n} bytes",
                    self.client.peer
                );
                return self.local_error(413);
            }
        }
        self.att.begin(env, u);
        let upstream = &env.rt.upstreams[u];
        let key = match upstream.balance {
            crate::config::Balance::Hash => {
                attempt::request_hash(self.client.peer.ip(), req, route_path, &upstream.hash_key)
            }
            _ => None,
        };
        let acquired = self.att.acquire_first(env, key);
        let Some(server) = host_server(acquired) else {
            return self.local_error(503);
        };
        let how = rewrite::UpstreamRequest {
            client_ip: self.client.peer.ip(),
            proto: env
                .rt
                .listeners
                .get(self.client.listener)
                .map_or("https", |l| l.proto),
            host_override: upstream.host_header.as_deref(),
            default_host: &upstream.servers[server].addr_text,
            keep_alive: env.pool.enabled(u),
            upgrade: false,
            framing: self.req_framing,
            max_forwards,
            rules: self.rules.as_deref().map(Applied::request),
        };
        if upstream.protocol.is_h2() {
            // An absolute-form target goes up as its path, its authority
            // the `:authority` (RFC 9112 §3.2.2), unless `host_header` says.
            let target = req.path.unwrap_or("/");
            let (absolute, path) = match http::request::split_absolute(target) {
                Some((a, p)) => (Some(a), p),
                None => (None, std::borrow::Cow::Borrowed(target)),
            };
            let (mut authority, headers) = rewrite::upstream_fields(req, &how);
            if let (Some(a), None) = (absolute, how.host_override) {
                authority = a.as_bytes().to_vec();
            }
            self.req_h2 = Some(Box::new(h2::RequestHead::new(
                req.method.unwrap_or("GET").as_bytes(),
                if upstream.tls.is_some() {
                    b"https"
                } else {
                    b"http"
                },
                Some(&authority),
                path.as_bytes(),
                headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                match self.req_framing {
                    Framing::Length(n) => Some(n),
                    _ => None,
                },
            )));
        } else {
            let mut head = env.heads.get();
            rewrite::write_upstream_request(&mut head, req, &how);
            self.req_head = head;
        }
        self.go(env, acquired, true);
    }

    /// Connects to the server `acquired` holds a slot on, or waits for one.
    fn go(&mut self, env: &mut Env, acquired: Acquired, use_pool: bool) {
        match acquired {
            Acquired::Server(s) => self.connect(env, s, use_pool),
            Acquired::Wait { bound } => self.wait_for_slot(env, bound, use_pool),
            Acquired::NoServer => self.local_error_keeping(503, true),
        }
    }

    /// Every server this request may use is full: it waits in the queue
    /// (bound to server `bound`, if given) for at most `timeouts.queue`.
    fn wait_for_slot(&mut self, env: &mut Env, bound: Option<usize>, use_pool: bool) {
        let wait = env.queues.enqueue(
            env.shm,
            env.slot,
            self.att.upstream,
            self.client.slot,
            bound,
            self.att.tried(),
        );
        self.deadline = env.now + env.rt.timeouts.queue;
        self.state = State::Queued(Box::new(Queued {
            wait,
            use_pool,
            since_ms: env.now_ms,
        }));
    }

    /// Starts the attempt on `server`.
    fn connect(&mut self, env: &mut Env, server: usize, use_pool: bool) {
        let addr = self.att.use_server(env, server);
        if self.req_h2.is_some() {
            return self.connect_h2(env, server, addr);
        }
        let preface = self
            .proxy_header(env)
            .map(|h| Box::new(crate::proxy_proto::Preface::new(h)));
        // A connection opened with a PROXY header is this client's alone.
        let use_pool = use_pool && preface.is_none();
        let pooled = match (use_pool, self.replayable) {
            (false, _) => attempt::Pooled::No,
            (true, true) => attempt::Pooled::Any,
            (true, false) => attempt::Pooled::Checked,
        };
        match attempt::upstream_socket(env, &self.att, self.client.slot, addr, pooled) {
            Ok(sock) => {
                let timeout = if sock.reused {
                    env.rt.timeouts.upstream_write
                } else {
                    env.rt.timeouts.connect
                };
                self.deadline = env.now + timeout;
                let mut up = UpstreamH1::new(sock, addr, preface);
                up.rules = self.rules.clone();
                self.state = State::Upstream(Box::new(up));
            }
            Err(e) => self.fail_over(
                env,
                addr,
                Failover::ConnectFailed {
                    what: "connect() to",
                    error: &e,
                },
            ),
        }
    }

    /// The PROXY header naming this request's client, if its upstream has
    /// `send_proxy`.
    fn proxy_header(&self, env: &Env) -> Option<crate::proxy_proto::Header> {
        let v = env.rt.upstreams[self.att.upstream].send_proxy?;
        // Without the local address (getsockname failed), the listener's
        // configured one.
        let local = self.client.local.unwrap_or_else(|| {
            env.rt.listeners[self.client.listener]
                .addrs
                .first()
                .copied()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
        });
        Some(crate::proxy_proto::Header::new(v, self.client.peer, local))
    }

    /// A stream on a connection to `server`: one that has room, or one
    /// being opened, or a new one. With `send_proxy`, only a connection
    /// whose PROXY header names this very client (same address and port)
    /// is shared.
    fn connect_h2(&mut self, env: &mut Env, server: usize, addr: SocketAddr) {
        let u = self.att.upstream;
        let header = self.proxy_header(env);
        let found = env.h2up.find(
            (u, server),
            header.as_ref(),
            env.now,
            env.rt.timeouts.connect,
        );
        let conn = match found {
            Some(c) => c,
            None => {
                match attempt::upstream_socket(env, &self.att, SHARED, addr, attempt::Pooled::No) {
                    Ok(sock) => {
                        let settings = super::env::h2_settings(env.rt);
                        env.h2up.add(
                            (u, server, header),
                            sock.sock,
                            sock.up_slot,
                            settings,
                            env.up_owners,
                            env.now,
                        )
                    }
                    Err(e) => {
                        return self.fail_over(
                            env,
                            addr,
                            Failover::ConnectFailed {
                                what: "connect() to",
                                error: &e,
                            },
                        )
                    }
                }
            }
        };
        self.deadline = env.now + env.rt.timeouts.connect;
        let mut up = UpstreamH2::new(conn);
        up.rules = self.rules.clone();
        self.state = State::UpstreamH2(Box::new(up));
    }

    /// The current server failed before anything reached the client: the
    /// failure is logged and counted (`econ` or `eresp`, and toward its
    /// passive marks), then the request goes to the next server while
    /// retries remain, else it is answered with the failure's status.
    fn fail_over(&mut self, env: &mut Env, addr: SocketAddr, failure: Failover) {
        let (name, server) = self.att.server_name(env);
        let peer = self.client.peer;
        let failed = self.att.server;
        let shared = env.shm.server(self.att.upstream, failed);
        let connecting = !matches!(failure, Failover::ClosedBeforeAnswer { .. });
        let refused = matches!(failure, Failover::Refused { .. });
        let (status, keep_ok) = match failure {
            Failover::ConnectFailed { what, error } => {
                log::error!(
                    "{what} {addr} (server {name}/{server}) failed: {error}, client: {peer}"
                );
                shared.count_connect_error();
                (502, true)
            }
            Failover::ConnectTimedOut { doing } => {
                log::error!(
                    "upstream {addr} (server {name}/{server}) timed out {doing}, client: {peer}"
                );
                shared.count_connect_error();
                (504, false)
            }
            Failover::ClosedBeforeAnswer { doing, why } => {
                log::error!(
                    "upstream {addr} (server {name}/{server}) failed while {doing}: {why}, client: {peer}"
                );
                shared.count_response_error();
                // No body was left unread: the client connection goes on.
                (502, true)
            }
            Failover::Refused { doing } => {
                log::warn!("upstream {addr} (server {name}/{server}) {doing}, client: {peer}");
                (502, true)
            }
        };
        if !refused {
            self.att.note_failure(env);
        }
        match self.att.acquire_retry(env) {
            Some(Acquired::Server(next)) => self.connect(env, next, true),
            Some(Acquired::Wait { bound }) => self.wait_for_slot(env, bound, true),
            Some(Acquired::NoServer) | None => {
                if connecting {
                    // The request fails for want of a connection: the
                    // server's `econ`, as HAProxy counts it (only then).
                    env.shm
                        .server(self.att.upstream, failed)
                        .count_failed_conn();
                }
                self.count_answered_5xx(env);
                self.local_error_keeping(status, keep_ok);
            }
        }
    }

    /// A 5xx of ours for a request a server was chosen for: the BACKEND
    /// row's hrsp_5xx (`UpstreamShared::count_answered_5xx`).
    fn count_answered_5xx(&self, env: &Env) {
        env.shm.upstream(self.att.upstream).count_answered_5xx();
    }

    fn local_error(&mut self, status: u16) {
        self.local_error_keeping(status, false);
    }

    /// An error page; `keep_ok`: see `Local`.
    fn local_error_keeping(&mut self, status: u16, keep_ok: bool) {
        let body = if self.passthrough {
            // The session's own error page (`H1Client::error_page`).
            Vec::new()
        } else {
            format!("{}\n", errors::reason(status)).into_bytes()
        };
        self.local(status, body, None);
        if let State::Local(l) = &mut self.state {
            l.keep_ok = keep_ok;
        }
    }

    fn local(&mut self, status: u16, body: Vec<u8>, extra: Option<(&'static [u8], Vec<u8>)>) {
        self.state = State::Local(Box::new(Local {
            status,
            keep_ok: false,
            content_type: b"text/plain",
            extra,
            dashboard: false,
            body,
            head_sent: false,
            pos: 0,
        }));
    }

    /// The upstream socket this exchange uses, if any (events name it).
    /// Whether the request was sent to (or is being sent to) one of
    /// `servers` (`(upstream, server)` pairs): `shutdown sessions server`.
    pub fn uses_any(&self, servers: &[(usize, usize)]) -> bool {
        self.att
            .server_used()
            .is_some_and(|used| servers.contains(&used))
    }

    pub fn up_slot(&self) -> Option<usize> {
        match &self.state {
            State::Upstream(up) => Some(up.up_slot()),
            _ => None,
        }
    }

    /// The upstream socket in use, if any (the harness's checks).
    #[cfg(test)]
    pub fn upstream_sock(&self) -> Option<&mio::net::TcpStream> {
        match &self.state {
            State::Upstream(up) => Some(up.sock()),
            _ => None,
        }
    }

    /// After `Progress::Upgraded`: the upstream connection, for the
    /// client's tunnel.
    pub fn take_tunnel(&mut self) -> Option<TunnelEnd> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Upstream(up) => {
                let (sock, up_slot, addr, input, hup) = up.into_tunnel();
                Some(TunnelEnd {
                    sock,
                    up_slot,
                    addr,
                    input,
                    hup,
                })
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Request body bytes that went upstream past the exchange (pass-
    /// through: the client's relay counts them), for the byte counters.
    pub fn set_request_body(&mut self, n: u64) {
        self.req_total = n;
    }

    /// The tunnel after its `101` ends: the bytes it relayed count as the
    /// exchange's, as nginx's `$body_bytes_sent` and HAProxy's `bin` and
    /// `bout` count them. Call after `set_request_body`.
    pub fn add_tunnelled(&mut self, t: Tunnelled) {
        self.req_total += t.to_upstream;
        self.body_sent += t.to_client;
    }

    /// The request no longer occupies its server: its active count, byte
    /// counters and duration settle (once; later calls do nothing).
    #[inline]
    fn release_server(&mut self, env: &mut Env) {
        let up = self.req_head.len() as u64 + self.req_total;
        let down = self.resp_head_len + self.body_sent;
        self.att.release(env, up, down);
    }

    /// Readiness of its upstream socket.
    #[inline]
    pub fn on_upstream_event(&mut self, r: bool, w: bool, hup: bool) {
        if let State::Upstream(up) = &mut self.state {
            up.ready(r, w, hup);
        }
    }

    /// How many request body bytes the exchange takes now: what waits for
    /// the upstream is bounded (a slow upstream slows the client down).
    pub fn body_room(&self) -> usize {
        REQ_BUFFER_MAX.saturating_sub(self.req_out.len())
    }

    /// Request body bytes from the client (at most what the session's flow
    /// control lets it send). The exchange keeps them until its upstream
    /// takes them; a body over `max_body_bytes` ends in 413.
    pub fn push_body(&mut self, env: &mut Env, data: &[u8], end: bool) {
        self.req_total += data.len() as u64;
        if env.rt.max_body_bytes > 0 && self.req_total > env.rt.max_body_bytes {
            log::info!("client {} sent a too large body", self.client.peer);
            self.fail_before_response(env, 413);
            return;
        }
        if matches!(self.state, State::Local(_) | State::Finished) {
            // Nobody reads it: let the client go on (the window reopens).
            self.req_unacked += data.len();
            self.req_ended |= end;
            return;
        }
        if self.req_framing == Framing::Chunked && self.req_h2.is_none() {
            if !data.is_empty() {
                use std::io::Write;
                let _ = write!(self.req_out, "{:x}\r\n", data.len());
                self.req_out.extend_from_slice(data);
                self.req_out.extend_from_slice(b"\r\n");
            }
            if end {
                self.req_out.extend_from_slice(b"0\r\n\r\n");
            }
        } else {
            self.req_out.extend_from_slice(data);
        }
        self.req_unacked += data.len();
        self.req_ended |= end;
    }

    /// Trailer fields after the request body: they follow the last chunk
    /// when the body goes upstream chunked (a Content-Length body cannot
    /// carry them in HTTP/1.1: they are dropped, as RFC 9110 §6.5 allows).
    pub fn push_trailers(&mut self, env: &mut Env, fields: &h2::HeaderList) {
        // A waiting request keeps them for the upstream it will reach.
        let queued = matches!(self.state, State::Queued(_));
        if matches!(self.state, State::UpstreamH2(_)) || (queued && self.req_h2.is_some()) {
            self.req_trailers = Some(fields.clone());
            self.req_ended = true;
            return;
        }
        if self.req_framing != Framing::Chunked
            || !(queued || matches!(self.state, State::Upstream(_)))
        {
            return self.push_body(env, &[], true);
        }
        self.req_out.extend_from_slice(b"0\r\n");
        http::write_fields(&mut self.req_out, fields.iter());
        self.req_out.extend_from_slice(b"\r\n");
        self.req_ended = true;
    }

    /// Runs the exchange as far as it goes.
    pub fn drive(&mut self, env: &mut Env, sink: &mut dyn ResponseSink) -> Progress {
        let mut run = Run::default();
        let progress = loop {
            let step = match &mut self.state {
                State::Finished => break Progress::Finished,
                State::Queued(q) => match env.queues.take_grant(q.wait) {
                    Some(server) => {
                        let use_pool = q.use_pool;
                        let waited = env.now_ms.saturating_sub(q.since_ms);
                        self.att.queued_ms = self
                            .att
                            .queued_ms
                            .saturating_add(u32::try_from(waited).unwrap_or(u32::MAX));
                        self.state = State::Finished;
                        self.connect(env, server, use_pool);
                        run.moved = true;
                        // The attempt set its own deadline.
                        run.wait = None;
                        continue;
                    }
                    // A pass-through client that leaves while its request
                    // waits leaves the queue at once.
                    None if sink.h1_client().is_some_and(|c| c.hup) => UpStep::ClientGone,
                    None => UpStep::Blocked,
                },
                State::Local(l) if self.passthrough => {
                    self.status = l.status;
                    if let Some(mut c) = sink.h1_client() {
                        c.error_page(env, l.status, l.keep_ok);
                    }
                    self.body_sent = if self.is_head {
                        0
                    } else {
                        errors::error_body_len(l.status) as u64
                    };
                    self.state = State::Finished;
                    break Progress::Finished;
                }
                State::Local(l) => {
                    let done = send_local(l, self.is_head, env.date.text(), sink);
                    self.status = l.status;
                    if done {
                        self.body_sent = if self.is_head { 0 } else { l.body.len() as u64 };
                        self.ack_body(sink);
                        self.state = State::Finished;
                        break Progress::Finished;
                    }
                    UpStep::Blocked
                }
                State::Upstream(up) if self.passthrough => match sink.h1_client() {
                    Some(mut c) => up.step_pass(env, &self.req_head, &mut c),
                    None => UpStep::Failed {
                        doing: "relaying the response",
                        bad_response: false,
                        why: Why::said("the client side cannot relay it"),
                    },
                },
                State::Upstream(up) => {
                    let mut req = RequestOut {
                        head: &self.req_head,
                        h2: None,
                        trailers: None,
                        body: &mut self.req_out,
                        ended: self.req_ended,
                    };
                    up.step(env, &mut req, sink, self.is_head)
                }
                State::UpstreamH2(up) => {
                    let mut req = RequestOut {
                        head: &[],
                        h2: self.req_h2.as_deref(),
                        trailers: self.req_trailers.as_ref(),
                        body: &mut self.req_out,
                        ended: self.req_ended,
                    };
                    up.step(env, &mut req, sink, self.client.slot)
                }
            };
            if let Some(p) = self.after_step(env, step, sink, &mut run) {
                break p;
            }
        };
        run.settle(self, env);
        progress
    }

    /// `drive` for the session of an HTTP/1.1 client in pass-through: the
    /// same steps, without a dynamic call per step (the hot path of every
    /// HTTP/1.1 request; the rest goes through `drive`).
    pub fn drive_h1(&mut self, env: &mut Env, c: &mut H1Client) -> Progress {
        let mut run = Run::default();
        let progress = loop {
            let step = match &mut self.state {
                State::Upstream(up) => up.step_pass(env, &self.req_head, c),
                _ => {
                    run.settle(self, env);
                    return self.drive(env, c);
                }
            };
            if let UpStep::Complete(_) = step {
                // The body went past the exchange: for the counters, which
                // settle now.
                self.req_total = c.req.body.sent;
            }
            if let Some(p) = self.after_step(env, step, c, &mut run) {
                break p;
            }
        };
        run.settle(self, env);
        progress
    }

    /// What a step of the upstream side means for the exchange; Some when
    /// `drive` stops.
    #[inline(always)]
    fn after_step(
        &mut self,
        env: &mut Env,
        step: UpStep,
        sink: &mut dyn ResponseSink,
        run: &mut Run,
    ) -> Option<Progress> {
        let t = &env.rt.timeouts;
        // The upstream sent something invalid (counted as such).
        let bad_response = matches!(
            step,
            UpStep::Failed {
                bad_response: true,
                ..
            }
        );
        match step {
            UpStep::Moved => {
                run.moved = true;
                run.wait = Some(t.upstream_read);
            }
            UpStep::Awaiting => {
                run.wait = Some(t.upstream_read);
                return Some(Progress::Moved);
            }
            UpStep::BodyWritten => {
                run.moved = true;
                self.ack_body(sink);
                // All sent: now the client owes the rest of its body
                // (`client_body`), or the upstream its answer.
                run.wait = Some(if self.req_ended {
                    t.upstream_read
                } else {
                    t.client_body
                });
            }
            UpStep::Connected => {
                run.moved = true;
                self.att.connected(env.now_ms);
                run.wait = Some(t.upstream_write);
            }
            UpStep::Sent { client_owes } => {
                run.moved = true;
                run.wait = Some(if client_owes {
                    t.client_body
                } else {
                    t.upstream_write
                });
            }
            UpStep::Upgrade => {
                // A response like any other for the counters: the server's
                // (and its backend's) `hrsp_1xx`, the head's bytes in
                // `bout`, the time to the head.
                self.att.response_head(env.now_ms);
                env.shm
                    .server(self.att.upstream, self.att.server)
                    .count_response(101);
                if let State::Upstream(up) = &self.state {
                    self.resp_head_len = up.head_len();
                }
                self.status = 101;
                self.upstream_status = Some(101);
                run.wait = Some(t.upstream_read);
                return Some(Progress::Upgraded);
            }
            UpStep::ClientError(status) => {
                run.moved = true;
                // The upstream connection is dropped mid-body, so the
                // server never sees a complete request.
                self.fail_before_response(env, status);
            }
            UpStep::ClientGone => {
                self.abort(env);
                sink.abort();
                return Some(Progress::Finished);
            }
            UpStep::Blocked => {
                // After progress, a response held up by a client that does
                // not take it waits `client_send` (nginx's `send_timeout`),
                // not as long as a slow server may (`upstream_read`). Only
                // after progress: a run that moved nothing must not push
                // the deadline back.
                if run.moved && self.status != 0 && self.waits_on_client(sink) {
                    run.wait = Some(t.client_send);
                }
                return Some(if run.moved {
                    Progress::Moved
                } else {
                    Progress::Blocked
                });
            }
            UpStep::Head { status, framed_end } => {
                run.moved = true;
                self.att.response_head(env.now_ms);
                env.shm
                    .server(self.att.upstream, self.att.server)
                    .count_response(status);
                self.status = status;
                self.upstream_status = Some(status);
                if let State::Upstream(up) = &self.state {
                    self.resp_head_len = up.head_len();
                }
                if framed_end {
                    self.finish_upstream(env);
                }
            }
            UpStep::BodySent(n) => {
                run.moved = true;
                self.body_sent += n as u64;
                run.wait = Some(t.upstream_read);
            }
            UpStep::Complete(n) => {
                self.body_sent += n as u64;
                // The server is free the moment its response is complete,
                // before its connection is pooled: the client's next
                // request may already be on its way to another worker
                // (`drive_h1` has set the request's byte count).
                self.release_server(env);
                self.finish_upstream(env);
                return Some(Progress::Finished);
            }
            UpStep::ConnectFailed(e) => {
                run.moved = true;
                let addr = self.take_upstream(env);
                // "connect() to ADDR" or "TLS handshake with ADDR".
                let what = e.doing();
                let error = e.into_io();
                self.fail_over(
                    env,
                    addr,
                    Failover::ConnectFailed {
                        what,
                        error: &error,
                    },
                );
                // The next attempt set its own deadline.
                run.wait = None;
            }
            UpStep::Stale => {
                run.moved = true;
                if self.replayable {
                    log::debug!("pooled upstream connection was stale, reconnecting");
                    self.take_upstream(env);
                    let server = self.att.server;
                    self.connect(env, server, false);
                    run.wait = None;
                } else {
                    self.upstream_failed(env, "sending the request", Why::Closed);
                }
            }
            UpStep::Closed { doing, why } if self.replayable && self.status == 0 => {
                // The server closed or reset a new connection before its
                // response began (it died, or restarted): nothing went to
                // the client and the request can be sent again, so it goes
                // to another server while retries remain, as nginx's
                // `proxy_next_upstream error` does for an idempotent one.
                run.moved = true;
                let addr = self.take_upstream(env);
                self.fail_over(env, addr, Failover::ClosedBeforeAnswer { doing, why });
                run.wait = None;
            }
            UpStep::Refused { doing } if self.status == 0 && self.req_framing == Framing::None => {
                // Not processed (RFC 9113 §8.7): safe to send again,
                // whatever the method. Once more to the same server, on a
                // connection that takes streams (a GOAWAY'd one does not),
                // then to another while retries remain.
                run.moved = true;
                let addr = self.take_upstream(env);
                if self.resent_refused {
                    self.fail_over(env, addr, Failover::Refused { doing });
                } else {
                    self.resent_refused = true;
                    log::info!(
                        "upstream {addr} refused a stream unprocessed; sending the request again, client: {}",
                        self.client.peer
                    );
                    let server = self.att.server;
                    self.connect(env, server, false);
                }
                run.wait = None;
            }
            // Not replayable (or a response began): as any other failure.
            UpStep::Closed { doing, why } | UpStep::Failed { doing, why, .. } => {
                run.moved = true;
                if bad_response {
                    env.shm
                        .server(self.att.upstream, self.att.server)
                        .count_response_error();
                }
                return self.fail_during_exchange(env, sink, doing, why);
            }
            UpStep::Refused { doing } => {
                run.moved = true;
                let why = Why::said("it refused the stream");
                return self.fail_during_exchange(env, sink, doing, why);
            }
        }
        None
    }

    /// The response goes no further until the client takes what it was
    /// given: relayed bytes wait for its socket (pass-through), or the
    /// sink takes nothing (its output bound, an HTTP/2 window).
    fn waits_on_client(&self, sink: &dyn ResponseSink) -> bool {
        match &self.state {
            State::Upstream(up) if self.passthrough => up.relay_waits_on_client(),
            State::Upstream(_) | State::UpstreamH2(_) => sink.capacity() == 0,
            _ => false,
        }
    }

    /// Reports request body bytes the upstream took (or that nobody reads).
    fn ack_body(&mut self, sink: &mut dyn ResponseSink) {
        if self.req_unacked > 0 {
            sink.body_forwarded(self.req_unacked);
            self.req_unacked = 0;
        }
    }

    /// [`Self::upstream_failed`] for a step's failure; a response already
    /// begun is aborted (the session resets it).
    fn fail_during_exchange(
        &mut self,
        env: &mut Env,
        sink: &mut dyn ResponseSink,
        doing: &str,
        why: Why,
    ) -> Option<Progress> {
        self.upstream_failed(env, doing, why);
        if matches!(self.state, State::Finished) {
            sink.abort();
            return Some(Progress::Finished);
        }
        None
    }

    /// The upstream failed: 502 if the client has not seen a head yet,
    /// else the response is cut (`Finished`, the session resets it). One
    /// error-log line says so, naming the server as the connect and
    /// handshake lines do, and why.
    fn upstream_failed(&mut self, env: &mut Env, doing: &str, why: Why) {
        let addr = self.take_upstream(env);
        let (name, server) = self.att.server_name(env);
        log::error!(
            "upstream {addr} (server {name}/{server}) failed while {doing}: {why}, client: {}",
            self.client.peer
        );
        if self.status == 0 {
            self.count_answered_5xx(env);
            self.local_error(502);
        } else {
            self.state = State::Finished;
        }
    }

    /// An answer of ours replaces an upstream attempt not yet answered.
    fn fail_before_response(&mut self, env: &mut Env, status: u16) {
        if self.status != 0 {
            self.take_upstream(env);
            self.state = State::Finished;
            return;
        }
        self.take_upstream(env);
        self.local_error(status);
    }

    /// The response is complete: its socket goes back to the pool if the
    /// exchange left it clean.
    fn finish_upstream(&mut self, env: &mut Env) {
        if let State::Upstream(up) = &self.state {
            self.body_sent += up.unreported();
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Upstream(up) => {
                let reusable = self.req_ended && self.req_out.is_empty();
                if let Some((sock, up_slot)) = up.into_reusable(env, reusable) {
                    attempt::pool_socket(env, &self.att, sock, up_slot);
                }
            }
            State::UpstreamH2(up) => up.close(env),
            State::Queued(q) => env.queues.cancel(env.shm, env.slot, q.wait),
            State::Local(_) | State::Finished => {}
        }
    }

    /// Closes the upstream socket of the current attempt; its address.
    fn take_upstream(&mut self, env: &mut Env) -> SocketAddr {
        let addr = self
            .att
            .upstream_addr
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        if !matches!(self.state, State::Finished) {
            if let State::Upstream(up) = &self.state {
                self.body_sent += up.unreported();
            }
            match std::mem::replace(&mut self.state, State::Finished) {
                State::Upstream(up) => up.close(env),
                State::UpstreamH2(up) => up.close(env),
                State::Queued(q) => env.queues.cancel(env.shm, env.slot, q.wait),
                State::Local(_) | State::Finished => {}
            }
        }
        addr
    }

    /// The deadline passed: the wait it bounds failed.
    pub fn on_timeout(&mut self, env: &mut Env, sink: &mut dyn ResponseSink) {
        if let State::Queued(_) = self.state {
            return self.queue_timeout(env);
        }
        let client_owes = match (&self.state, sink.h1_client()) {
            (State::Upstream(up), Some(c)) if self.status == 0 => {
                up.waiting_for_client(&self.req_head, &c)
            }
            _ => false,
        };
        if client_owes {
            log::info!(
                "client {} timed out sending the request body",
                self.client.peer
            );
            self.take_upstream(env);
            return self.local_error(408);
        }
        let (doing, connecting) = match &self.state {
            State::Upstream(_) | State::UpstreamH2(_)
                if self.status == 0 && !self.req_ended && self.req_out.is_empty() =>
            {
                log::info!(
                    "client {} timed out sending the request body",
                    self.client.peer
                );
                self.take_upstream(env);
                return self.local_error(408);
            }
            State::Upstream(up) => (up.doing(), up.connecting()),
            State::UpstreamH2(up) => (up.doing(), up.connecting()),
            // (Queued was answered above.)
            State::Local(_) | State::Finished | State::Queued(_) => {
                log::info!("client {} stopped reading a response", self.client.peer);
                self.state = State::Finished;
                sink.abort();
                return;
            }
        };
        if self.status == 0 && connecting {
            // Not connected within `timeouts.connect`: nothing was sent, so
            // the request goes to another server while retries remain, as
            // after a refused connection (nginx and HAProxy retry too).
            let addr = self.take_upstream(env);
            self.fail_over(env, addr, Failover::ConnectTimedOut { doing });
        } else if self.status == 0 {
            self.att.note_failure(env);
            // HAProxy: sH; a connect timeout went above (sC).
            self.server_timed_out(env, doing);
            self.count_answered_5xx(env);
            self.local_error(504);
        } else if self.waits_on_client(sink) {
            // The client stopped reading (`client_send`): its doing.
            log::info!(
                "response to client {} timed out ({doing})",
                self.client.peer
            );
            self.take_upstream(env);
            self.state = State::Finished;
            sink.abort();
        } else {
            // The server stopped sending mid-response (`upstream_read`), as
            // nginx's "upstream timed out ... while reading upstream"
            // (HAProxy: sD).
            self.server_timed_out(env, doing);
            self.state = State::Finished;
            sink.abort();
        }
    }

    /// The server let `upstream_read` pass: a response error on it and its
    /// BACKEND row, its connection dropped, an error-log line naming it.
    fn server_timed_out(&mut self, env: &mut Env, doing: &str) {
        env.shm
            .server(self.att.upstream, self.att.server)
            .count_response_error();
        let addr = self.take_upstream(env);
        let (name, server) = self.att.server_name(env);
        log::error!(
            "upstream {addr} (server {name}/{server}) timed out {doing}, client: {}",
            self.client.peer
        );
    }

    /// No slot within `timeouts.queue`: 503, as HAProxy answers (its
    /// `sQ`), counted on the upstream (`show stat`: the BACKEND row's
    /// `econ` and `hrsp_5xx`).
    #[cold]
    fn queue_timeout(&mut self, env: &mut Env) {
        self.take_upstream(env);
        let u = self.att.upstream;
        env.shm.upstream(u).queue().count_timeout();
        log::warn!(
            "request of client {} waited {:?} in the queue of upstream {}: 503",
            self.client.peer,
            env.rt.timeouts.queue,
            env.rt.upstreams[u].name
        );
        self.local_error_keeping(503, true);
    }

    /// The client reset the stream, or the connection ends: whatever is
    /// in flight stops (nginx's 499 if nothing was sent).
    pub fn abort(&mut self, env: &mut Env) {
        self.take_upstream(env);
        self.state = State::Finished;
    }

    /// The worker's `shutdown_timeout` passed: the exchange is about to be
    /// aborted, and if nothing was answered yet, its log line says so.
    pub fn mark_shutdown_cut(&mut self) {
        self.unanswered = Unanswered::ShutdownCut;
    }

    /// Settles the counters and writes the access log line.
    pub fn end(mut self, env: &mut Env) {
        self.end_in_place(env);
    }

    /// `end` for an exchange its owner drops afterwards where it is.
    pub fn end_in_place(&mut self, env: &mut Env) {
        if !matches!(self.state, State::Finished) {
            self.take_upstream(env);
        }
        self.release_server(env);
        env.heads.put(std::mem::take(&mut self.req_head));
        if self.status != 0 {
            env.count_response(self.client.listener, self.status);
        }
        if let Some(r) = self.record.take() {
            r.write(
                env,
                &record::Outcome {
                    client: self.client.peer,
                    // Ended before any answer (aborted).
                    status: if self.status == 0 {
                        self.unanswered.log_status()
                    } else {
                        self.status
                    },
                    body_bytes: self.body_sent,
                    upstream: self.att.upstream_addr,
                    upstream_status: self.upstream_status,
                    upstream_started: self.att.upstream_started,
                    request_id: self.request_id,
                },
            );
        }
    }
}

/// The server whose address is the Host of a request without one: the
/// one it holds a slot on — or, waiting, the one it is bound to or the
/// upstream's first (its server is not known yet); None: no server at all.
fn host_server(acquired: Acquired) -> Option<usize> {
    match acquired {
        Acquired::Server(s) | Acquired::Wait { bound: Some(s) } => Some(s),
        Acquired::Wait { bound: None } => Some(0),
        Acquired::NoServer => None,
    }
}

/// Sends as much of a local response as the sink takes; true when done.
fn send_local(l: &mut Local, is_head: bool, date: &[u8], sink: &mut dyn ResponseSink) -> bool {
    let body: &[u8] = if is_head { &[] } else { &l.body };
    if !l.head_sent {
        let len = l.body.len().to_string();
        let mut fields: Vec<(&[u8], &[u8])> = vec![
            (b"server", b"forklb"),
            (b"date", date),
            (b"content-type", l.content_type),
        ];
        if errors::own_response_has_length(l.status) {
            fields.push((b"content-length", len.as_bytes()));
        }
        if let Some((name, value)) = &l.extra {
            if *name == b"content-type" {
                fields[2].1 = value;
            } else {
                fields.push((name, value));
            }
        }
        if l.dashboard {
            for (name, value) in crate::dashboard::SECURITY_HEADERS {
                fields.push((name.as_bytes(), value.as_bytes()));
            }
        }
        sink.head(l.status, &fields, body.is_empty());
        l.head_sent = true;
        if body.is_empty() {
            return true;
        }
    }
    let rest = body.get(l.pos..).unwrap_or(&[]);
    let n = sink.data(rest, true);
    l.pos += n;
    l.pos >= body.len()
}
