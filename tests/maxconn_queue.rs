//! Per-server `maxconn` (issue 17 item 5): the configuration key, `set
//! maxconn server` with HAProxy 2.6's answers (compared with a real
//! HAProxy), `show stat`'s `slim`, and the limit kept across HUP, USR2 and
//! (with `state_file`) restarts.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use support::*;

struct Setup {
    lb: Forklb,
    sock: PathBuf,
    _dir: TempDir,
    _backends: Vec<Backend>,
}

/// Two workers; upstream `main` with servers `a` (maxconn 3) and `b` (no
/// limit); `extra` top-level keys.
fn start(extra: &str) -> Setup {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = TempDir::new("maxconn");
    let sock = dir.join("admin.sock");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .raw(extra)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .upstream(
            "main",
            [Srv::new("a", a.addr()).maxconn(3), Srv::new("b", b.addr())],
        )
        .build();
    let lb = Forklb::start(&yaml);
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    Setup {
        lb,
        sock,
        _dir: dir,
        _backends: vec![a, b],
    }
}

/// HAProxy 2.6 with backend `main` of servers `a` (maxconn 3) and `b`.
struct Haproxy {
    /// First: killed before its folder goes.
    _process: HaproxyProcess,
    sock: PathBuf,
    _dir: TempDir,
}

impl Haproxy {
    fn start() -> Haproxy {
        let dir = TempDir::new("haproxy-maxconn");
        let sock = dir.join("admin.sock");
        let cfg = format!(
            "global\n    stats socket {} mode 600 level admin\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend web\n    bind 127.0.0.1:{port}\n    default_backend main\n\
             backend main\n    server a 127.0.0.1:9 maxconn 3\n    server b 127.0.0.1:9\n",
            sock.display(),
            port = free_port(),
        );
        let process = HaproxyProcess::start(dir.path(), &cfg);
        assert!(
            wait_until(Duration::from_secs(10), || sock.exists()
                && admin_cmd(&sock, "show info").contains("Name: HAProxy")),
            "haproxy did not start"
        );
        Haproxy {
            _process: process,
            sock,
            _dir: dir,
        }
    }
}

#[test]
fn set_maxconn_server_answers_byte_for_byte_as_haproxy() {
    let s = start("");
    let hap = Haproxy::start();
    // Each command, then the slim it leaves on main/a (HAProxy's own
    // `show stat` is the reference for that too).
    let cases = [
        "set maxconn server main/a 10",
        "set maxconn server main/a",
        "set maxconn server main/a abc",
        "set maxconn server main/a 10x",
        "set maxconn server main/a -",
        "set maxconn server main/a +7",
        "set maxconn server main/a -5",
        "set maxconn server main/a 99999999999",
        "set maxconn server main/a 99999999999999999999999",
        "set maxconn server main/a 0",
        "set maxconn server main/zz 5",
        "set maxconn server nope/a 5",
        "set maxconn server nope/a abc",
        "set maxconn server main/zz",
        "set maxconn server main",
        "set maxconn server main/ 4",
        "set maxconn server",
        "set maxconn server main/b 2",
        "set maxconn server main/a 4",
        // Empty names, as HAProxy's cli_find_server (and `get weight`) read them.
        "get weight main/",
        "get weight /a",
        "set weight main/ 3",
        "disable server /a",
    ];
    for cmd in cases {
        let want = admin_cmd(&hap.sock, cmd);
        assert_eq!(admin_cmd(&s.sock, cmd), want, "{cmd}");
        for srv in ["a", "b"] {
            assert_eq!(
                stat_field(&s.sock, "main", srv, "slim"),
                stat_field(&hap.sock, "main", srv, "slim"),
                "slim of {srv} after {cmd}"
            );
        }
    }
    // The end state: a limited to 4, b to 2; a server without a limit
    // shows an empty slim (checked above against HAProxy after `... 0`).
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "4");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "2");
    assert!(admin_cmd(&s.sock, "help set maxconn")
        .contains("set maxconn server <bk>/<srv>           : change a server's maxconn setting"));
}

#[test]
fn configured_maxconn_shows_as_slim() {
    let s = start("");
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "3");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "");
}

#[test]
fn runtime_maxconn_survives_hup_and_usr2() {
    let dir = TempDir::new("maxconnstate");
    let state = dir.join("forklb.state");
    let s = start(&format!("state_file: \"{}\"\n", state.display()));
    assert_eq!(
        admin_cmd(
            &s.sock,
            "set maxconn server main/a 7; set maxconn server main/b 2"
        ),
        "\n\n"
    );
    let text = fs::read_to_string(&state).expect("state file written");
    assert!(
        text.lines()
            .any(|l| l.starts_with("3 main 1 a ") && l.ends_with(" 7 3")),
        "{text}"
    );
    // HUP: the new generation keeps both (changed at runtime).
    s.lb.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || admin_cmd(
        &s.sock,
        "show info"
    )
    .contains("Generation: 2")));
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "7");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "2");
    // USR2: the new master reads them back from the state file.
    let new = s.lb.upgrade_through_usr2(&s.sock);
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "7");
    assert_eq!(stat_field(&s.sock, "main", "b", "slim"), "2");
    // `show servers state` itself stays HAProxy's (no maxconn columns).
    let st = admin_cmd(&s.sock, "show servers state");
    assert!(
        st.lines()
            .any(|l| l.starts_with("3 main 1 a ") && l.ends_with(" - - 0")),
        "{st}"
    );
    kill(new, libc::SIGQUIT);
}

// ---------------------------------------------------------------------------
// The queue

/// An origin that holds every request until the test lets it go (or, with
/// `hold`, for that long), counting the requests in flight at once and
/// recording the order they arrived in (by path).
struct Gate {
    addr: std::net::SocketAddr,
    shared: Arc<GateShared>,
}

struct GateShared {
    state: Mutex<GateState>,
    cv: Condvar,
    hold: Option<Duration>,
}

#[derive(Default)]
struct GateState {
    in_flight: usize,
    max_in_flight: usize,
    arrived: Vec<String>,
    /// Requests the test let go and that have not taken their leave yet.
    releases: usize,
    stop: bool,
}

impl Gate {
    fn start(hold: Option<Duration>) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(GateShared {
            state: Mutex::new(GateState::default()),
            cv: Condvar::new(),
            hold,
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.state.lock().map(|st| st.stop).unwrap_or(true) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve_gated(conn, &s));
            }
        });
        Gate { addr, shared }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.shared.state.lock().expect("gate lock")
    }

    fn in_flight(&self) -> usize {
        self.state().in_flight
    }

    fn max_in_flight(&self) -> usize {
        self.state().max_in_flight
    }

    fn arrived(&self) -> Vec<String> {
        self.state().arrived.clone()
    }

    /// Lets `n` held requests answer.
    fn release(&self, n: usize) {
        self.state().releases += n;
        self.shared.cv.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.state().stop = true;
        self.shared.cv.notify_all();
        // Unblocks the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// One connection: request heads (no bodies), each held, then answered
/// with its path as the body; keep-alive.
fn serve_gated(mut conn: std::net::TcpStream, s: &GateShared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        {
            let Ok(mut st) = s.state.lock() else { return };
            st.in_flight += 1;
            st.max_in_flight = st.max_in_flight.max(st.in_flight);
            st.arrived.push(path.clone());
            let until = s.hold.map(|h| Instant::now() + h);
            loop {
                if st.stop {
                    return;
                }
                if let Some(t) = until {
                    let now = Instant::now();
                    if now >= t {
                        break;
                    }
                    let Ok((g, _)) = s.cv.wait_timeout(st, t - now) else {
                        return;
                    };
                    st = g;
                } else if st.releases > 0 {
                    st.releases -= 1;
                    break;
                } else {
                    let Ok((g, _)) = s.cv.wait_timeout(st, Duration::from_millis(200)) else {
                        return;
                    };
                    st = g;
                }
            }
            st.in_flight -= 1;
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
            path.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A GET of `path` on a new connection, in a thread: its status (0 when
/// the connection failed) and body.
fn spawn_get(port: u16, path: &str) -> std::thread::JoinHandle<(u16, String)> {
    let path = path.to_owned();
    std::thread::spawn(move || match try_http_get(port, &path) {
        Ok(r) => (r.status, r.body_str()),
        Err(_) => (0, String::new()),
    })
}

/// Two workers, listener with h2c, upstream `main` of `servers`,
/// `balance`, `timeouts.queue` (60s unless given), an access log.
fn start_queue(servers: Vec<Srv>, balance: &str, queue_timeout: Option<&str>) -> Setup {
    let dir = TempDir::new("maxconnq");
    let sock = dir.join("admin.sock");
    // Long by default: a loaded machine must not turn a wait into a 503.
    let t = queue_timeout.unwrap_or("60s");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .access_log(&dir.join("access.log"), "combined")
        .raw(&format!("timeouts: {{queue: {t}}}\n"))
        .listener("web", &["127.0.0.1:$PORT"])
        .listener_opt("h2c: true")
        .route(Route::to("main"))
        .upstream("main", servers)
        .balance(balance)
        .build();
    let lb = Forklb::start(&yaml);
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    Setup {
        lb,
        sock,
        _dir: dir,
        _backends: Vec::new(),
    }
}

fn stat_num(s: &Setup, sv: &str, field: &str) -> u64 {
    stat_field(&s.sock, "main", sv, field).parse().unwrap_or(0)
}

#[test]
fn never_more_than_maxconn_in_flight_across_workers_and_all_served() {
    let gate = Gate::start(Some(Duration::from_millis(150)));
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(3)],
        "roundrobin",
        None,
    );
    let port = s.lb.port();
    // 12 clients at once, each on its own connection (the two workers
    // accept them): 3 at a time reach the server, the rest wait.
    let clients: Vec<_> = (0..12)
        .map(|i| spawn_get(port, &format!("/r{i}")))
        .collect();
    let results: Vec<(u16, String)> = clients
        .into_iter()
        .map(|c| c.join().unwrap_or((0, String::new())))
        .collect();
    for (i, (status, body)) in results.iter().enumerate() {
        assert_eq!(
            (*status, body.as_str()),
            (200, format!("/r{i}").as_str()),
            "{}",
            s.lb.diagnostics()
        );
    }
    assert_eq!(gate.max_in_flight(), 3, "the limit was not kept");
    assert!(
        stat_num(&s, "BACKEND", "qmax") >= 1,
        "nothing waited:\n{}",
        admin_cmd(&s.sock, "show stat")
    );
    assert_eq!(stat_num(&s, "BACKEND", "qcur"), 0);
    assert_eq!(stat_num(&s, "a", "smax"), 3);
    assert_eq!(stat_num(&s, "a", "stot"), 12);
    assert_eq!(stat_field(&s.sock, "main", "a", "slim"), "3");
}

/// A request sent on a connection of our own (kept: its response is read
/// later; its port tells which worker holds it).
fn send_get(port: u16, path: &str) -> Conn {
    let mut c = Conn::open(port).expect("connect");
    c.set_read_timeout(Duration::from_secs(10));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .expect("send");
    c
}

/// The worker (pid) holding the proxy's end of client connection `c`.
fn worker_of(s: &Setup, c: &Conn) -> Option<i32> {
    let client_port = c.stream().local_addr().ok()?.port();
    let inode = tcp_socket_inode(s.lb.port(), client_port)?;
    s.lb.worker_pids()
        .into_iter()
        .find(|&pid| socket_inodes_of(pid).contains(&inode))
}

#[track_caller]
fn wait_for(what: &str, s: &Setup, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(Duration::from_secs(5), cond),
        "{what}\n{}\n{}",
        admin_cmd(&s.sock, "show stat"),
        s.lb.diagnostics()
    );
}

#[test]
fn queued_requests_are_served_in_arrival_order_across_workers() {
    let gate = Gate::start(None);
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(1)],
        "roundrobin",
        None,
    );
    let port = s.lb.port();
    let mut conns = vec![send_get(port, "/first")];
    wait_for("the first request did not arrive", &s, || {
        gate.in_flight() == 1
    });
    for i in 1..=6 {
        conns.push(send_get(port, &format!("/q{i}")));
        wait_for(&format!("/q{i} did not queue"), &s, || {
            stat_num(&s, "BACKEND", "qcur") == i
        });
    }
    // The waiting clients are spread over both workers (each steps aside
    // from accepting when it holds clearly more connections).
    let workers: std::collections::BTreeSet<i32> =
        conns[1..].iter().filter_map(|c| worker_of(&s, c)).collect();
    assert_eq!(workers.len(), 2, "all queued requests on one worker");
    // One slot, freed six times: the oldest waiter gets it each time.
    for k in 1..=6 {
        gate.release(1);
        wait_for(&format!("waiter {k} was not served"), &s, || {
            gate.arrived().len() == k + 1
        });
        assert_eq!(gate.in_flight(), 1);
    }
    gate.release(1);
    let want: Vec<String> = std::iter::once("/first".to_owned())
        .chain((1..=6).map(|i| format!("/q{i}")))
        .collect();
    assert_eq!(gate.arrived(), want, "not first come, first served");
    for (c, path) in conns.iter_mut().zip(&want) {
        let r = c.read_response().expect("response");
        assert_eq!((r.status, r.body_str()), (200, path.clone()));
    }
    assert_eq!(gate.max_in_flight(), 1);
    assert_eq!(stat_num(&s, "BACKEND", "qmax"), 6);
}

#[test]
fn a_request_waiting_longer_than_timeouts_queue_gets_503() {
    let gate = Gate::start(None);
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(1)],
        "roundrobin",
        Some("300ms"),
    );
    let port = s.lb.port();
    let mut first = send_get(port, "/first");
    wait_for("the first request did not arrive", &s, || {
        gate.in_flight() == 1
    });
    let started = Instant::now();
    let r = http_get(port, "/late");
    let waited = started.elapsed();
    assert_eq!(r.status, 503);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    // As HAProxy counts its `sQ`: a connection error and a 5xx of the
    // backend; nothing waits any more; the server never saw it.
    assert_eq!(stat_num(&s, "BACKEND", "econ"), 1);
    assert_eq!(stat_num(&s, "BACKEND", "hrsp_5xx"), 1);
    assert_eq!(stat_num(&s, "BACKEND", "qcur"), 0);
    assert_eq!(stat_num(&s, "BACKEND", "qmax"), 1);
    assert_eq!(stat_num(&s, "a", "econ"), 0);
    assert!(s
        .lb
        .wait_log("in the queue of upstream main: 503", Duration::from_secs(2)));
    gate.release(1);
    assert_eq!(first.read_response().expect("response").status, 200);
    assert_eq!(gate.arrived(), ["/first"]);
    let log = s._dir.join("access.log");
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("\"GET /late HTTP/1.1\" 503 "))),
        "no 503 for /late in the access log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn a_client_that_leaves_while_queued_leaves_the_queue() {
    let gate = Gate::start(None);
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(1)],
        "roundrobin",
        None,
    );
    let port = s.lb.port();
    let mut first = send_get(port, "/first");
    wait_for("the first request did not arrive", &s, || {
        gate.in_flight() == 1
    });
    let gone = send_get(port, "/gone");
    wait_for("/gone did not queue", &s, || {
        stat_num(&s, "BACKEND", "qcur") == 1
    });
    drop(gone);
    wait_for("the queue kept a client that left", &s, || {
        stat_num(&s, "BACKEND", "qcur") == 0
    });
    gate.release(1);
    assert_eq!(first.read_response().expect("response").status, 200);
    let next = spawn_get(port, "/next");
    wait_for("/next did not arrive", &s, || gate.in_flight() == 1);
    gate.release(1);
    assert_eq!(next.join().map(|r| r.0).unwrap_or(0), 200);
    assert_eq!(
        gate.arrived(),
        ["/first", "/next"],
        "/gone reached the server"
    );
}

#[test]
fn balance_first_fills_a_server_to_its_maxconn_then_spills_and_refills() {
    let (ga, gb) = (Gate::start(None), Gate::start(None));
    let s = start_queue(
        vec![
            Srv::new("a", ga.addr).maxconn(2),
            Srv::new("b", gb.addr).maxconn(2),
        ],
        "first",
        None,
    );
    let port = s.lb.port();
    let mut held = vec![send_get(port, "/1"), send_get(port, "/2")];
    wait_for("a did not fill", &s, || ga.in_flight() == 2);
    assert_eq!(gb.in_flight(), 0, "b was used before a was full");
    held.push(send_get(port, "/3"));
    wait_for("no spill to b", &s, || gb.in_flight() == 1);
    // a frees both slots: new requests go to a again.
    ga.release(2);
    for c in &mut held[..2] {
        assert_eq!(c.read_response().expect("response").status, 200);
    }
    // A worker gives a slot back right after writing the response's last
    // bytes; on a loaded machine the client may read them first.
    wait_for("a did not give its slots back", &s, || {
        stat_num(&s, "a", "scur") == 0
    });
    let more = [send_get(port, "/4"), send_get(port, "/5")];
    wait_for("a was not refilled", &s, || ga.in_flight() == 2);
    assert_eq!(gb.in_flight(), 1);
    assert_eq!(gb.arrived(), ["/3"]);
    let mut b2 = send_get(port, "/6");
    wait_for("b was not filled", &s, || gb.in_flight() == 2);
    // Everything full: the next one waits, then a slot of b serves it.
    let mut last = send_get(port, "/7");
    wait_for("/7 did not queue", &s, || {
        stat_num(&s, "BACKEND", "qcur") == 1
    });
    gb.release(1);
    wait_for("/7 did not reach b", &s, || gb.arrived().len() == 3);
    ga.release(2);
    gb.release(2);
    for mut c in held.into_iter().skip(2).chain(more) {
        assert_eq!(c.read_response().expect("response").status, 200);
    }
    assert_eq!(b2.read_response().expect("response").status, 200);
    assert_eq!(last.read_response().expect("response").status, 200);
}

#[test]
fn set_maxconn_server_raises_and_lowers_the_limit_at_runtime() {
    let gate = Gate::start(None);
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(1)],
        "roundrobin",
        None,
    );
    let port = s.lb.port();
    let mut conns = vec![send_get(port, "/h")];
    wait_for("/h did not arrive", &s, || gate.in_flight() == 1);
    conns.push(send_get(port, "/w1"));
    conns.push(send_get(port, "/w2"));
    wait_for("/w1 and /w2 did not queue", &s, || {
        stat_num(&s, "BACKEND", "qcur") == 2
    });
    // Raised: the waiters go at once (no request has to end first).
    assert_eq!(admin_cmd(&s.sock, "set maxconn server main/a 3"), "\n");
    wait_for("a raised limit did not let the waiters in", &s, || {
        gate.in_flight() == 3
    });
    assert_eq!(stat_num(&s, "BACKEND", "qcur"), 0);
    // Lowered below what is in flight: nothing in flight is cut.
    assert_eq!(admin_cmd(&s.sock, "set maxconn server main/a 1"), "\n");
    conns.push(send_get(port, "/after"));
    wait_for("/after did not queue", &s, || {
        stat_num(&s, "BACKEND", "qcur") == 1
    });
    assert_eq!(gate.in_flight(), 3);
    gate.release(3);
    for c in &mut conns[..3] {
        assert_eq!(c.read_response().expect("response").status, 200);
    }
    // Only once all three are done does /after get the one slot.
    wait_for("/after was not served", &s, || gate.in_flight() == 1);
    gate.release(1);
    assert_eq!(conns[3].read_response().expect("response").status, 200);
    assert_eq!(gate.max_in_flight(), 3);
}

#[test]
fn http2_streams_queue_too() {
    let gate = Gate::start(Some(Duration::from_millis(200)));
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(2)],
        "roundrobin",
        None,
    );
    let url = format!("http://127.0.0.1:{}/h2", s.lb.port());
    // Eight streams at once on one HTTP/2 connection (prior knowledge).
    let out = run_tool(
        "h2load",
        &["-n", "8", "-c", "1", "-m", "8", &url],
        Duration::from_secs(20),
    );
    let (_, ok, failed, errored) = h2load_counts(&out);
    assert_eq!((ok, failed, errored), (8, 0, 0), "{}", out.combined());
    assert_eq!(gate.max_in_flight(), 2, "the limit was not kept");
    assert!(stat_num(&s, "BACKEND", "qmax") >= 1, "no stream waited");
    assert_eq!(stat_num(&s, "a", "stot"), 8);
}

#[test]
fn hash_bound_requests_wait_for_their_own_server() {
    let (ga, gb) = (Gate::start(None), Gate::start(None));
    let dir = TempDir::new("maxconnhash");
    let sock = dir.join("admin.sock");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .upstream(
            "main",
            [
                Srv::new("a", ga.addr).maxconn(1),
                Srv::new("b", gb.addr).maxconn(1),
            ],
        )
        .balance("hash")
        .upstream_opt("hash_key: uri")
        .build();
    let lb = Forklb::start(&yaml);
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let s = Setup {
        lb,
        sock,
        _dir: dir,
        _backends: Vec::new(),
    };
    let port = s.lb.port();
    let mut first = send_get(port, "/key");
    wait_for("/key did not arrive", &s, || {
        ga.in_flight() + gb.in_flight() == 1
    });
    let (mine, other, name) = if ga.in_flight() == 1 {
        (&ga, &gb, "a")
    } else {
        (&gb, &ga, "b")
    };
    // The same key: bound to the same (full) server, it waits in that
    // server's queue although the other server is free.
    let mut second = send_get(port, "/key");
    wait_for("the second /key did not queue on its server", &s, || {
        stat_num(&s, name, "qcur") == 1
    });
    assert_eq!(stat_num(&s, "BACKEND", "qcur"), 0);
    assert_eq!(other.in_flight(), 0, "a bound request went elsewhere");
    mine.release(1);
    assert_eq!(first.read_response().expect("response").status, 200);
    wait_for("the bound waiter was not served", &s, || {
        mine.in_flight() == 1
    });
    mine.release(1);
    assert_eq!(second.read_response().expect("response").status, 200);
    assert_eq!(mine.arrived(), ["/key", "/key"]);
    assert!(other.arrived().is_empty());
    assert_eq!(stat_num(&s, name, "qmax"), 1);
    assert_eq!(stat_num(&s, name, "qcur"), 0);
}

#[test]
fn a_worker_that_dies_with_waiters_does_not_hold_the_queue_back() {
    let gate = Gate::start(None);
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(1)],
        "roundrobin",
        None,
    );
    let port = s.lb.port();
    let mut first = send_get(port, "/first");
    wait_for("/first did not arrive", &s, || gate.in_flight() == 1);
    let holder = worker_of(&s, &first).expect("worker of /first");
    // Waiters until one is on the other worker (the accept balancing
    // spreads them within a few).
    let mut waiters = Vec::new();
    let victim = loop {
        assert!(waiters.len() < 8, "every waiter on the worker of /first");
        let c = send_get(port, &format!("/w{}", waiters.len()));
        let n = waiters.len() as u64 + 1;
        wait_for("a waiter did not queue", &s, || {
            stat_num(&s, "BACKEND", "qcur") == n
        });
        let w = worker_of(&s, &c);
        waiters.push(c);
        if let Some(w) = w.filter(|&w| w != holder) {
            break w;
        }
    };
    let survivors: Vec<Conn> = waiters
        .into_iter()
        .filter(|c| worker_of(&s, c) == Some(holder))
        .collect();
    kill(victim, libc::SIGKILL);
    // Its waiters are gone with it; the worker started in its place
    // takes them out of the count, so the rest are not held back.
    let left = survivors.len() as u64;
    wait_for("the dead worker's waiters stayed counted", &s, || {
        stat_num(&s, "BACKEND", "qcur") == left
    });
    gate.release(1 + survivors.len());
    assert_eq!(first.read_response().expect("response").status, 200);
    for mut c in survivors {
        assert_eq!(c.read_response().expect("response").status, 200);
    }
    let next = spawn_get(port, "/next");
    wait_for("/next did not arrive", &s, || {
        gate.arrived().last().is_some_and(|p| p == "/next")
    });
    gate.release(1);
    assert_eq!(next.join().map(|r| r.0).unwrap_or(0), 200);
}

#[test]
fn a_worker_that_dies_holding_slots_gives_them_back() {
    let gate = Gate::start(None);
    let s = start_queue(
        vec![Srv::new("a", gate.addr).maxconn(1)],
        "roundrobin",
        None,
    );
    let port = s.lb.port();
    let first = send_get(port, "/first");
    wait_for("/first did not arrive", &s, || gate.in_flight() == 1);
    let Some(holder) = worker_of(&s, &first) else {
        panic!("no worker holds /first");
    };
    kill(holder, libc::SIGKILL);
    // The worker started in its place gives the dead one's slot back.
    wait_for("the dead worker's slot stayed taken", &s, || {
        stat_num(&s, "a", "scur") == 0
    });
    let next = spawn_get(port, "/next");
    wait_for("/next did not reach the server", &s, || {
        gate.arrived().last().is_some_and(|p| p == "/next")
    });
    gate.release(2);
    assert_eq!(next.join().map(|r| r.0).unwrap_or(0), 200);
    drop(first);
}

#[test]
fn requests_for_an_http2_upstream_queue_too() {
    let origin = H2Origin::start("o");
    let dir = TempDir::new("maxconnh2up");
    let sock = dir.join("admin.sock");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .raw("timeouts: {queue: 60s}\n")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .upstream("main", [Srv::new("o", origin.addr()).maxconn(1)])
        .upstream_opt("protocol: h2c")
        .build();
    let lb = Forklb::start(&yaml);
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let s = Setup {
        lb,
        sock,
        _dir: dir,
        _backends: Vec::new(),
    };
    // Four HTTP/1.1 clients at once, each response streamed over ~300 ms:
    // one stream at a time on the upstream, the others wait their turn.
    let clients: Vec<_> = (0..4)
        .map(|_| spawn_get(s.lb.port(), "/stream?n=3&ms=150"))
        .collect();
    for c in clients {
        let (status, body) = c.join().unwrap_or((0, String::new()));
        assert_eq!(
            (status, body.as_str()),
            (200, "chunk 0\nchunk 1\nchunk 2\n")
        );
    }
    assert_eq!(stat_num(&s, "o", "smax"), 1);
    assert_eq!(stat_num(&s, "o", "stot"), 4);
    assert!(stat_num(&s, "BACKEND", "qmax") >= 1, "nothing waited");
    assert_eq!(origin.requests_for("/stream?n=3&ms=150").len(), 4);
}
