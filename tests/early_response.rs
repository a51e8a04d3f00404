//! Early responses: an upstream that answers (413, 401, 403, a redirect, even
//! a 2xx) while the client is still uploading must have that answer relayed,
//! not a 502; the upload stops there, the answer goes out with
//! `Connection: close`, and the client connection ends with a lingering close,
//! so the client — which keeps sending for a while, as curl does — reads the
//! answer instead of a reset. The server is not blamed (no passive failure,
//! no retry) and the access log shows its status.

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::tls::{client_config, TestCert, TlsConn};
use support::*;

const BIG: usize = 20 * 1024 * 1024;
const PIECE: usize = 64 * 1024;

const EARLY_413: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 15\r\nConnection: close\r\n\r\nupload too big\n";

/// How the test client frames its upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
}

/// An upload as a real client (curl) does it: the body is written from one
/// thread while the response is read on another; writing stops a little
/// after the response and the close were seen (so writes keep coming while
/// forklb closes), or at the first write error.
#[derive(Debug, Clone)]
struct Upload {
    path: &'static str,
    framing: Framing,
    size: usize,
    /// Pause after each 64 KiB piece (`None`: as fast as the socket takes it).
    pace: Option<Duration>,
    /// Send `Expect: 100-continue` and wait for the `100 Continue` (or the
    /// final answer) before the body.
    expect_continue: bool,
}

impl Upload {
    fn new(path: &'static str) -> Upload {
        Upload {
            path,
            framing: Framing::Length,
            size: BIG,
            pace: None,
            expect_continue: false,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    response: Response,
    /// What the client read after the response, to the end: nothing, ended
    /// by a clean FIN (an error here is a reset).
    rest: io::Result<Vec<u8>>,
    /// Bytes of the body (with chunk framing) the client wrote.
    written: usize,
    write_error: Option<io::Error>,
    elapsed: Duration,
}

impl Outcome {
    /// The response came with `Connection: close`, then a clean end of the
    /// connection, and the client's writes were never refused.
    fn assert_closed_cleanly(&self, diagnostics: &str) {
        assert!(
            self.response.closes(),
            "no Connection: close on {:?}",
            self.response.headers
        );
        match &self.rest {
            Ok(rest) => assert!(
                rest.is_empty(),
                "bytes after the response: {:?}",
                String::from_utf8_lossy(rest)
            ),
            Err(e) => {
                panic!("connection not closed cleanly after the response: {e}\n{diagnostics}")
            }
        }
        if let Some(e) = &self.write_error {
            panic!(
                "the client's upload was refused ({e}, after {} bytes): the connection was reset instead of a lingering close\n{diagnostics}",
                self.written
            );
        }
        assert!(
            self.elapsed < Duration::from_secs(8),
            "took {:?}",
            self.elapsed
        );
    }
}

/// The body pieces of an upload, framed.
fn pieces(up: &Upload) -> impl Iterator<Item = Vec<u8>> {
    let framing = up.framing;
    let size = up.size;
    let n = size.div_ceil(PIECE);
    (0..=n).filter_map(move |i| {
        if i == n {
            return (framing == Framing::Chunked).then(|| b"0\r\n\r\n".to_vec());
        }
        let len = PIECE.min(size - i * PIECE);
        let data = vec![b'u'; len];
        Some(match framing {
            Framing::Length => data,
            Framing::Chunked => {
                let mut v = format!("{len:x}\r\n").into_bytes();
                v.extend_from_slice(&data);
                v.extend_from_slice(b"\r\n");
                v
            }
        })
    })
}

fn upload_while_reading(port: u16, up: &Upload) -> Outcome {
    let started = Instant::now();
    let mut c = Conn::open(port).expect("connect");
    c.set_read_timeout(Duration::from_secs(10));
    let framing = match up.framing {
        Framing::Length => format!("Content-Length: {}\r\n", up.size),
        Framing::Chunked => "Transfer-Encoding: chunked\r\n".to_owned(),
    };
    let expect = if up.expect_continue {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    c.send(
        format!(
            "POST {} HTTP/1.1\r\nHost: localhost\r\n{framing}{expect}\r\n",
            up.path
        )
        .as_bytes(),
    )
    .expect("send the head");
    let mut early_final = None;
    if up.expect_continue {
        let h = c
            .read_next_head()
            .expect("100 Continue or the final answer");
        if h.status != 100 {
            // The final answer came instead of 100 Continue: send no body.
            let len: usize = h
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let body = c.read_exact_bytes(len).expect("body of the answer");
            early_final = Some(Response { body, ..h });
        }
    }
    let stop = Arc::new(AtomicBool::new(early_final.is_some()));
    let mut w = c.stream().try_clone().expect("clone the socket");
    w.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let writer = {
        let stop = stop.clone();
        let up = up.clone();
        thread::spawn(move || {
            let mut written = 0;
            for piece in pieces(&up) {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = w.write_all(&piece) {
                    return (written, Some(e));
                }
                written += piece.len();
                if let Some(p) = up.pace {
                    thread::sleep(p);
                }
            }
            (written, None)
        })
    };
    let response = match early_final {
        Some(r) => r,
        None => c.read_response().unwrap_or_else(|e| {
            stop.store(true, Ordering::SeqCst);
            panic!("no response to the upload: {e}")
        }),
    };
    let rest = c.read_to_end();
    // Go on writing a little after the close was seen: forklb must still
    // take (and drop) the bytes rather than reset the connection.
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let (written, write_error) = writer.join().expect("writer thread");
    Outcome {
        response,
        rest,
        written,
        write_error,
        elapsed: started.elapsed(),
    }
}

/// A backend answering early on `/upload`-like paths and normally elsewhere.
fn early_backend(name: &str, early: Vec<EarlyScript>) -> Backend {
    Backend::start_with(
        name,
        BackendOpts {
            early,
            ..Default::default()
        },
    )
}

/// One worker; `balance: first` over the early backend and a second one, so
/// every request goes to the early backend unless it is marked down; one
/// failure would mark it down (max_fails: 1), and a retry would show on the
/// second backend. Access log in `log`.
fn config(early: &Backend, other: &Backend, log: &Path, limits: &str) -> String {
    let mut y = upstream_config(
        1,
        "first",
        &[Srv::of(early), Srv::of(other)],
        &["max_fails: 1", "fail_timeout: 30s", "retries: 1"],
    );
    y.push_str(&format!(
        "access_log: {{path: \"{}\", format: combined}}\n{limits}",
        log.display()
    ));
    y
}

struct Setup {
    early: Backend,
    other: Backend,
    _dir: TempDir,
    log: std::path::PathBuf,
    lb: Forklb,
}

fn setup(early: Vec<EarlyScript>) -> Setup {
    let early = early_backend("e1", early);
    let other = Backend::start("b2");
    let dir = TempDir::new("early");
    let log = dir.join("access.log");
    let lb = Forklb::start(&config(&early, &other, &log, ""));
    Setup {
        early,
        other,
        _dir: dir,
        log,
        lb,
    }
}

impl Setup {
    /// Nothing was blamed on the early backend: a new request still goes to
    /// it (it would go to `b2` if it were marked down), nothing was retried
    /// on `b2`, and no failure was logged.
    fn assert_nothing_blamed(&self) {
        let diag = self.lb.diagnostics();
        let r = http_get(self.lb.port(), "/after");
        assert_eq!(
            (r.status, r.header("X-Backend")),
            (200, Some("e1")),
            "the next request did not go to the early backend: {r:?}\n{diag}"
        );
        assert_eq!(
            self.other.heads(),
            Vec::<String>::new(),
            "a request was retried on the other server\n{diag}"
        );
        let errors = self.lb.error_log_contents();
        assert!(
            !errors.contains("marked down") && !errors.contains("failed while"),
            "the early answer was taken for a failure:\n{errors}"
        );
    }

    /// The early answers blamed nobody: a new request still goes to the
    /// early backend (it would go to `b2` if it were marked down), nothing
    /// was retried on `b2`, no 502 was logged, and the access log has
    /// `status` for every early answer.
    fn assert_server_not_blamed(&self, path: &str, status: u16, answers: usize) {
        self.assert_nothing_blamed();
        assert_eq!(self.early.early_answers(), answers);
        let want = format!("\"POST {path} HTTP/1.1\" {status} ");
        let upstream = format!("upstream={} upstream_status={status} ", self.early.addr());
        let read = || std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            wait_until(Duration::from_secs(3), || read().lines().count() > answers),
            "access log not flushed: {:?}",
            read()
        );
        let text = read();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("POST")).collect();
        assert_eq!(lines.len(), answers, "{text}");
        for l in lines {
            assert!(l.contains(&want) && l.contains(&upstream), "{l}");
        }
    }
}

// ---- The class: any status, any upload framing ------------------------------------

#[test]
fn content_length_upload_gets_the_early_413_not_a_502() {
    let s = setup(vec![EarlyScript::new(
        "/upload",
        EARLY_413,
        EarlyThen::Close,
    )]);
    let o = upload_while_reading(s.lb.port(), &Upload::new("/upload"));
    let diag = s.lb.diagnostics();
    assert_eq!(o.response.status, 413, "{:?}\n{diag}", o.response);
    assert_eq!(o.response.body_str(), "upload too big\n");
    o.assert_closed_cleanly(&diag);
    assert_eq!(s.early.heads(), vec!["POST /upload HTTP/1.1".to_owned()]);
    s.assert_server_not_blamed("/upload", 413, 1);
}

#[test]
fn early_401_and_403_reach_a_slowly_uploading_client() {
    let s = setup(vec![
        EarlyScript::new(
            "/auth",
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 13\r\n\r\nwho are you?\n",
            EarlyThen::Close,
        ),
        EarlyScript::new(
            "/forbidden",
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 8\r\nConnection: close\r\n\r\nnot you\n",
            EarlyThen::Close,
        ),
    ]);
    for (path, status, body) in [
        ("/auth", 401, "who are you?\n"),
        ("/forbidden", 403, "not you\n"),
    ] {
        let up = Upload {
            pace: Some(Duration::from_millis(20)),
            ..Upload::new(path)
        };
        let o = upload_while_reading(s.lb.port(), &up);
        let diag = s.lb.diagnostics();
        assert_eq!(o.response.status, status, "{:?}\n{diag}", o.response);
        assert_eq!(o.response.body_str(), body);
        o.assert_closed_cleanly(&diag);
        assert!(o.written < BIG, "the whole body went out: {}", o.written);
    }
    s.assert_nothing_blamed();
    assert_eq!(s.early.early_answers(), 2);
}

#[test]
fn chunked_upload_gets_the_early_413() {
    let s = setup(vec![EarlyScript::new(
        "/upload",
        EARLY_413,
        EarlyThen::Close,
    )]);
    let up = Upload {
        framing: Framing::Chunked,
        ..Upload::new("/upload")
    };
    let o = upload_while_reading(s.lb.port(), &up);
    let diag = s.lb.diagnostics();
    assert_eq!(o.response.status, 413, "{:?}\n{diag}", o.response);
    assert_eq!(o.response.body_str(), "upload too big\n");
    o.assert_closed_cleanly(&diag);
    s.assert_server_not_blamed("/upload", 413, 1);
}

#[test]
fn early_2xx_from_a_server_that_keeps_reading_stops_the_upload() {
    // The server answers 202 at once and reads on: forklb stops forwarding
    // the body all the same, and does not reuse that connection.
    let s = setup(vec![EarlyScript::new(
        "/upload",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\n\r\naccepted\n",
        EarlyThen::Drain,
    )]);
    let up = Upload {
        pace: Some(Duration::from_millis(5)),
        ..Upload::new("/upload")
    };
    let o = upload_while_reading(s.lb.port(), &up);
    let diag = s.lb.diagnostics();
    assert_eq!(o.response.status, 202, "{:?}\n{diag}", o.response);
    assert_eq!(o.response.body_str(), "accepted\n");
    o.assert_closed_cleanly(&diag);
    // The upstream connection is closed once the answer is relayed.
    thread::sleep(Duration::from_millis(300));
    let forwarded = s.early.drained_after_answer();
    assert!(
        forwarded < BIG / 4,
        "{forwarded} body bytes were forwarded after the early answer"
    );
    s.assert_server_not_blamed("/upload", 202, 1);
    // The connection that answered early was not pooled: /after needed a new one.
    assert_eq!(s.early.connections(), 2);
}

#[test]
fn early_redirect_from_a_server_that_holds_the_connection_without_reading() {
    let s = setup(vec![EarlyScript::new(
        "/upload",
        b"HTTP/1.1 303 See Other\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
        EarlyThen::Hold,
    )]);
    let o = upload_while_reading(s.lb.port(), &Upload::new("/upload"));
    let diag = s.lb.diagnostics();
    assert_eq!(o.response.status, 303, "{:?}\n{diag}", o.response);
    assert_eq!(o.response.header("Location"), Some("/elsewhere"));
    assert!(o.response.body.is_empty());
    o.assert_closed_cleanly(&diag);
    s.assert_server_not_blamed("/upload", 303, 1);
}

#[test]
fn early_response_bodies_of_every_framing_are_relayed_whole() {
    const LARGE: usize = 1 << 20;
    let large = pseudo_random_bytes(LARGE, 5);
    let mut with_length =
        format!("HTTP/1.1 413 Payload Too Large\r\nContent-Length: {LARGE}\r\n\r\n").into_bytes();
    with_length.extend_from_slice(&large);
    let mut chunked = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in large.chunks(100_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let until_close = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nno length, ends with the connection\n";
    let s = setup(vec![
        // Large bodies: the server keeps reading (or holding) meanwhile, as a
        // server must that wants its answer read (closing with unread input
        // would reset and truncate its own answer).
        EarlyScript::new("/length", &with_length, EarlyThen::Drain),
        EarlyScript::new("/chunked", &chunked, EarlyThen::Hold),
        // Close-delimited, then a close that resets (unread upload).
        EarlyScript::new("/close", until_close, EarlyThen::Close),
        EarlyScript::new(
            "/empty",
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
            EarlyThen::Close,
        ),
    ]);
    let cases: [(&str, u16, &[u8]); 4] = [
        ("/length", 413, &large),
        ("/chunked", 400, &large),
        ("/close", 500, b"no length, ends with the connection\n"),
        ("/empty", 401, b""),
    ];
    for (path, status, body) in cases {
        let up = Upload {
            pace: Some(Duration::from_millis(2)),
            ..Upload::new(path)
        };
        let o = upload_while_reading(s.lb.port(), &up);
        let diag = s.lb.diagnostics();
        assert_eq!(
            o.response.status, status,
            "{path}: {:?}\n{diag}",
            o.response.headers
        );
        assert!(
            o.response.body == body,
            "{path}: body of {} bytes differs (want {})",
            o.response.body.len(),
            body.len()
        );
        o.assert_closed_cleanly(&diag);
    }
    s.assert_nothing_blamed();
}

#[test]
fn expect_100_continue_upload_gets_the_early_413() {
    let s = setup(vec![EarlyScript::new(
        "/upload",
        EARLY_413,
        EarlyThen::Close,
    )]);
    for framing in [Framing::Length, Framing::Chunked] {
        let up = Upload {
            framing,
            expect_continue: true,
            ..Upload::new("/upload")
        };
        let o = upload_while_reading(s.lb.port(), &up);
        let diag = s.lb.diagnostics();
        assert_eq!(
            o.response.status, 413,
            "{framing:?}: {:?}\n{diag}",
            o.response
        );
        assert_eq!(o.response.body_str(), "upload too big\n");
        o.assert_closed_cleanly(&diag);
    }
    s.assert_server_not_blamed("/upload", 413, 2);
}

#[test]
fn answer_after_part_of_the_body_is_relayed_too() {
    // The server reads 1 MiB of the body before it decides.
    let s = setup(vec![EarlyScript {
        read_first: 1 << 20,
        ..EarlyScript::new("/upload", EARLY_413, EarlyThen::Close)
    }]);
    let o = upload_while_reading(s.lb.port(), &Upload::new("/upload"));
    let diag = s.lb.diagnostics();
    assert_eq!(o.response.status, 413, "{:?}\n{diag}", o.response);
    o.assert_closed_cleanly(&diag);
    assert!(o.written > 1 << 20);
    s.assert_server_not_blamed("/upload", 413, 1);
}

#[test]
fn normal_uploads_still_keep_the_connections_alive() {
    // Bodies that are read completely: keep-alive on both sides as before.
    let s = setup(Vec::new());
    let mut c = Conn::open(s.lb.port()).expect("connect");
    for i in 0..3 {
        let r = c
            .request("POST", "/plain", &[], &vec![b'p'; 300_000])
            .expect("POST");
        assert_eq!((r.status, r.closes()), (200, false), "request {i}: {r:?}");
    }
    assert_eq!(
        s.early.connections(),
        1,
        "the upstream connection was not reused"
    );
    assert_eq!(s.early.request_count(), 3);
}

// ---- Local answers to uploads: the same lingering close -----------------------------

#[test]
fn local_413_for_a_too_large_upload_reaches_the_client() {
    // forklb itself refuses the body by its Content-Length; the client
    // uploads on regardless, as curl does until it reads the answer.
    let early = Backend::start("e1");
    let other = Backend::start("b2");
    let dir = TempDir::new("early-local");
    let log = dir.join("access.log");
    let lb = Forklb::start(&config(
        &early,
        &other,
        &log,
        "limits: {max_body_bytes: 1m}\n",
    ));
    let o = upload_while_reading(lb.port(), &Upload::new("/upload"));
    let diag = lb.diagnostics();
    assert_eq!(o.response.status, 413, "{:?}\n{diag}", o.response);
    o.assert_closed_cleanly(&diag);
    assert_eq!(early.bytes_received(), 0);
}

// ---- TLS ----------------------------------------------------------------------------

/// A TLS front listener (certificate for a.test) before `backend`.
fn tls_front_config(dir: &Path, backend: &Backend) -> String {
    let front = TestCert::self_signed(&["a.test"]);
    ConfigBuilder::new()
        .log_level("info")
        .listener("secure", &["127.0.0.1:$PORT"])
        .certificates(&[front.write(dir, "a")])
        .route(Route::to("web"))
        .upstream("web", [Srv::new("e1", backend.addr())])
        .build()
}

#[test]
fn tls_client_that_uploads_before_reading_gets_the_early_413() {
    // Like many simple clients, this one writes its whole body before it
    // reads anything: forklb must drop the rest of the upload while it
    // answers, and linger, or the client's writes fail.
    let early = early_backend(
        "e1",
        vec![EarlyScript::new("/upload", EARLY_413, EarlyThen::Close)],
    );
    let dir = TempDir::new("early-tls");
    let lb = Forklb::start(&tls_front_config(dir.path(), &early));
    let mut c = TlsConn::connect(lb.port(), Some("a.test"), client_config()).expect("TLS");
    c.set_read_timeout(Duration::from_secs(10));
    // Well over what loopback socket buffers hold (several MiB): the
    // answer must come while the upload is still going, not after it.
    const SIZE: usize = 32 << 20;
    let mut req =
        format!("POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: {SIZE}\r\n\r\n")
            .into_bytes();
    req.extend(std::iter::repeat_n(b't', SIZE));
    if let Err(e) = c.send(&req) {
        panic!("the upload was refused: {e}\n{}", lb.diagnostics());
    }
    let r = c.read_response().expect("the early answer");
    assert_eq!(r.status, 413, "{r:?}\n{}", lb.diagnostics());
    assert_eq!(r.body_str(), "upload too big\n");
    assert!(r.closes(), "{r:?}\n{}", lb.diagnostics());
    assert_eq!(c.wait_closed(), Ok(true), "no clean TLS close");
}

/// An HTTPS origin that answers every connection's request with `answer`
/// right after its head, then closes without reading the body. Counts the
/// connections it answered.
fn tls_early_origin(cert: &TestCert, answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = cert.server_config();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    thread::spawn(move || {
        for sock in listener.incoming().take(4) {
            let Ok(sock) = sock else { continue };
            let config = config.clone();
            let count = count.clone();
            thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
                // Without it, the answer can wait behind the session tickets
                // (Nagle) and die in the reset of the close below.
                let _ = sock.set_nodelay(true);
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut seen = Vec::new();
                let mut chunk = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&chunk[..n]),
                    }
                }
                if tls.write_all(answer).and_then(|()| tls.flush()).is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                tls.conn.send_close_notify();
                let _ = tls.conn.complete_io(&mut tls.sock);
                // Dropped with the upload unread: the kernel resets.
            });
        }
    });
    (addr, answered)
}

#[test]
fn tls_upstream_early_413_is_relayed() {
    let dir = TempDir::new("early-tls-up");
    let (ca, ca_path) = support::tls::TestCa::in_dir(dir.path());
    let (addr, answered) = tls_early_origin(&ca.issue(&["origin.test"]), EARLY_413);
    let cfg = tls_upstream_config("origin.test", &ca_path, addr)
        .log_level("debug")
        .upstream_opt("max_fails: 1")
        .build();
    let lb = Forklb::start(&cfg);
    for framing in [Framing::Length, Framing::Chunked] {
        let up = Upload {
            framing,
            ..Upload::new("/upload")
        };
        let o = upload_while_reading(lb.port(), &up);
        let diag = lb.diagnostics();
        assert_eq!(
            o.response.status, 413,
            "{framing:?}: {:?}\n{diag}",
            o.response
        );
        assert_eq!(o.response.body_str(), "upload too big\n");
        o.assert_closed_cleanly(&diag);
    }
    assert_eq!(answered.load(Ordering::SeqCst), 2);
    let errors = lb.error_log_contents();
    assert!(
        !errors.contains("marked down") && !errors.contains("failed while"),
        "{errors}"
    );
}

// ---- The failure that stays a failure ----------------------------------------------

#[test]
fn upstream_that_closes_without_answering_still_gets_502() {
    let s = setup(vec![EarlyScript::new("/upload", b"", EarlyThen::Close)]);
    let o = upload_while_reading(s.lb.port(), &Upload::new("/upload"));
    let diag = s.lb.diagnostics();
    assert_eq!(o.response.status, 502, "{:?}\n{diag}", o.response);
    o.assert_closed_cleanly(&diag);
    // Bytes were sent: no retry on the other server.
    assert!(s.other.heads().is_empty(), "retried: {:?}", s.other.heads());
}

// ---- Interim responses and protocol switches during the upload ----------------------

/// A one-connection origin on 127.0.0.1 run by `serve` on its own thread.
fn raw_origin(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = sock.set_nodelay(true);
            serve(sock);
        }
    });
    addr
}

/// Reads up to the end of a head; returns what came after it.
fn read_past_head(sock: &mut TcpStream) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(p) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(seen.split_off(p + 4));
        }
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

fn single_server_config(addr: SocketAddr) -> String {
    proxy_config(1, &[("s1", addr, 1)], &[])
}

#[test]
fn interim_response_during_the_upload_is_relayed_and_keep_alive_survives() {
    // 103 Early Hints right after the head; the final 200 after the whole body.
    const SIZE: usize = 200_000;
    let addr = raw_origin(|mut sock| {
        let Some(mut body) = read_past_head(&mut sock) else {
            return;
        };
        let _ =
            sock.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
        let mut chunk = [0u8; 65536];
        while body.len() < SIZE {
            match sock.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        // Keep the connection for a moment (forklb may pool it).
        let _ = sock.read(&mut chunk);
    });
    let lb = Forklb::start(&single_server_config(addr));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes())
        .expect("head");
    c.send(&vec![b'a'; SIZE / 2]).expect("first half");
    let hint = c.read_next_head().expect("the 103");
    assert_eq!(hint.status, 103, "{hint:?}\n{}", lb.diagnostics());
    assert_eq!(hint.header("Link"), Some("</style.css>; rel=preload"));
    c.send(&vec![b'b'; SIZE / 2]).expect("second half");
    let r = c.read_response().expect("the final answer");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok\n"), "{r:?}");
    assert!(!r.closes(), "a complete upload keeps the connection: {r:?}");
    assert_eq!(c.get("/healthz").expect("next request").status, 200);
}

#[test]
fn switch_of_protocols_before_the_body_is_out_waits_for_the_body() {
    // The origin answers 101 as soon as it has the head, then echoes every
    // byte (the rest of the body first, then the tunnel's).
    let addr = raw_origin(|mut sock| {
        let Some(early) = read_past_head(&mut sock) else {
            return;
        };
        let _ = sock.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        );
        let _ = sock.write_all(&early);
        let mut chunk = [0u8; 4096];
        loop {
            match sock.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sock.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let lb = Forklb::start(&single_server_config(addr));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 10\r\n\r\nfirst")
        .expect("head and half the body");
    // The 101 reaches forklb now; it must wait for the rest of the body.
    thread::sleep(Duration::from_millis(200));
    c.send(b"-half").expect("the rest of the body");
    let r = c.read_next_head().expect("the 101");
    assert_eq!(r.status, 101, "{r:?}\n{}", lb.diagnostics());
    assert_eq!(
        c.read_exact_bytes(10).expect("the body, echoed"),
        b"first-half"
    );
    c.send(b"ping").expect("tunnel");
    assert_eq!(c.read_exact_bytes(4).expect("echo"), b"ping");
}

// ---- The lingering close is bounded -------------------------------------------------

#[test]
fn lingering_ends_after_five_quiet_seconds() {
    let s = setup(vec![EarlyScript::new(
        "/upload",
        EARLY_413,
        EarlyThen::Close,
    )]);
    let mut c = Conn::open(s.lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(10));
    let mut req =
        format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'q', 256 * 1024));
    c.send(&req).expect("head and some body");
    let r = c.read_response().expect("the early answer");
    assert_eq!(r.status, 413, "{r:?}\n{}", s.lb.diagnostics());
    assert_eq!(c.read_to_end().expect("a clean FIN"), b"");
    // forklb lingers: what the client still sends is taken.
    thread::sleep(Duration::from_secs(1));
    c.send(&[b'q'; 4096]).expect("taken while lingering");
    // 5 s without a byte end the lingering: then the socket is closed, and
    // the second write after it meets the reset of the first.
    thread::sleep(Duration::from_millis(6500));
    let first = c.send(b"late");
    thread::sleep(Duration::from_millis(200));
    let second = c.send(b"late");
    assert!(
        first.is_err() || second.is_err(),
        "forklb still lingers after 6.5 quiet seconds"
    );
}

/// A `return` of 204 or 304 has no body and no Content-Length (RFC 9110
/// §8.6, §15.3.5, §15.4.5): the next response on the connection is the
/// next request's. A body for them, or a 1xx status, is a config error.
#[test]
fn a_return_of_204_or_304_has_no_body_and_keeps_the_connection_in_step() {
    let yaml = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/nc").ret_status(204))
        .route(Route::path("/nm").ret_status(304))
        .route(Route::any().ret(200, "after\n"))
        .build();
    let lb = Forklb::start(&yaml);
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(2));
    c.send(b"GET /nc HTTP/1.1\r\nHost: x\r\n\r\nGET /nm HTTP/1.1\r\nHost: x\r\n\r\nGET /z HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    for status in [204, 304] {
        let r = c.read_next_head().expect("head");
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.header("content-length"), None, "{r:?}");
    }
    let r = c.read_response().expect("third");
    assert_eq!((r.status, r.body_str().as_str()), (200, "after\n"), "{r:?}");

    let bad = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::any().ret(204, "x"))
        .build();
    let err = Forklb::try_start(&bad)
        .err()
        .expect("a 204 with a body is refused");
    assert!(err.contains("has no body"), "{err}");
}

/// A small upload that came whole with its head and is answered by forklb
/// itself (a `return` route, a 404) keeps its connection, as nginx discards
/// the body and goes on: the pipelined request after it is answered. A
/// chunked one, whose end forklb does not look for, still closes.
#[test]
fn a_local_answer_to_a_body_that_came_whole_keeps_the_connection() {
    let b = Backend::start("b1");
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::path("/ret").ret(200, "ret\n"))
            .route(Route::path("/up").upstream("web"))
            .upstream("web", [Srv::of(&b)])
            .build(),
    );
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"POST /ret HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET /up HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("send");
    let first = c.read_response().expect("first answer");
    assert_eq!((first.status, first.body_str().as_str()), (200, "ret\n"));
    assert_ne!(first.header("connection"), Some("close"), "{first:?}");
    let second = c.read_response().expect("second answer");
    assert_eq!(second.status, 404, "{second:?}");
    let third = c.read_response().expect("the pipelined GET");
    assert_eq!((third.status, third.body_str().as_str()), (200, "b1"));
    assert_eq!(b.requests().len(), 1, "{:?}", b.requests());
    let mut chunked = Conn::open(lb.port()).expect("connect");
    chunked
        .send(b"POST /ret HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .expect("send");
    let r = chunked.read_response().expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
}
