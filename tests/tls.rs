//! TLS (issue 7): HTTPS listeners (certificates chosen by SNI, TLS 1.2 and
//! 1.3 only, ALPN, keep-alive, large bodies, handshake time-outs, reload of
//! certificates, session resumption across workers), HTTPS upstreams
//! (SNI, verification, pooling) and redirects to https.
//!
//! Certificates are made at test time (rcgen); the clients are rustls
//! clients that accept any certificate and look at the presented one.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::ProtocolVersion;
use support::tls::*;
use support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration with one TLS listener on `$PORT` (certificates `pairs`,
/// in that order): `/healthz` answered by forklb, everything else to
/// upstream `web` (the `backends`). `top` is put before `listeners:`.
fn tls_config(
    workers: usize,
    top: &str,
    pairs: &[(PathBuf, PathBuf)],
    backends: &[&Backend],
) -> String {
    tls_builder(workers, top, pairs, backends).build()
}

/// [`tls_config`] before it is built, for more listener keys.
fn tls_builder(
    workers: usize,
    top: &str,
    pairs: &[(PathBuf, PathBuf)],
    backends: &[&Backend],
) -> ConfigBuilder {
    ConfigBuilder::new()
        .workers(workers)
        .log_level("info")
        .shutdown_timeout("5s")
        .raw(top)
        .listener("secure", &["127.0.0.1:$PORT"])
        .certificates(pairs)
        .route(Route::healthz())
        .route(Route::to("web"))
        .upstream("web", backends.iter().map(|b| Srv::of(b)))
}

fn connect(port: u16, sni: Option<&str>) -> TlsConn {
    TlsConn::connect(port, sni, client_config())
        .unwrap_or_else(|e| panic!("TLS handshake with SNI {sni:?} on port {port}: {e}"))
}

/// Which of the named certificates `der` is (for readable failures).
fn which<'a>(der: &[u8], named: &[(&'a str, &TestCert)]) -> &'a str {
    named
        .iter()
        .find(|(_, c)| c.der == der)
        .map_or("an unknown certificate", |(n, _)| n)
}

// ---------------------------------------------------------------------------
// 1. SNI

/// A certificate naming the host exactly is served rather than a wildcard
/// covering it, in whichever order they are listed, as nginx and HAProxy
/// choose: the wildcard listed first (the default) hid the dedicated one.
#[test]
fn an_exact_name_is_served_over_a_wildcard_listed_first() {
    let dir = TempDir::new("tls-exact");
    let wild = TestCert::self_signed(&["*.w.test"]);
    let exact = TestCert::self_signed(&["x.w.test"]);
    let pw = wild.write(dir.path(), "wild");
    let px = exact.write(dir.path(), "exact");
    let be = Backend::start("b1");
    let named = [("the wildcard", &wild), ("x.w.test's", &exact)];
    let lb = Forklb::start(&tls_config(1, "", &[pw, px], &[&be]));
    for (sni, want) in [
        ("x.w.test", &exact),
        ("X.W.TEST", &exact),
        ("y.w.test", &wild),
    ] {
        let got = connect(lb.port(), Some(sni)).peer_cert_der();
        assert!(
            got == want.der,
            "SNI {sni}: got {}, want {}",
            which(&got, &named),
            which(&want.der, &named)
        );
    }
}

#[test]
fn sni_selects_the_certificate_and_the_first_is_the_default() {
    let dir = TempDir::new("tls-sni");
    let a = TestCert::self_signed(&["a.test"]);
    let b = TestCert::self_signed(&["*.b.test"]);
    let pa = a.write(dir.path(), "a");
    let pb = b.write(dir.path(), "b");
    let be = Backend::start("b1");
    let named = [("A (a.test)", &a), ("B (*.b.test)", &b)];

    // Both orders: the default is whichever comes first.
    for (order, first) in [(vec![pa.clone(), pb.clone()], &a), (vec![pb, pa], &b)] {
        let lb = Forklb::start(&tls_config(1, "", &order, &[&be]));
        let default_name = which(&first.der, &named);
        let cases: [(Option<&str>, &TestCert); 7] = [
            (Some("a.test"), &a),
            (Some("x.b.test"), &b),
            (Some("other.b.test"), &b),
            // A wildcard covers exactly one label.
            (Some("deep.x.b.test"), first),
            (Some("b.test"), first),
            (Some("unknown.test"), first),
            (None, first),
        ];
        for (sni, want) in cases {
            let mut c = connect(lb.port(), sni);
            let got = c.peer_cert_der();
            assert!(
                got == want.der,
                "SNI {sni:?} (default {default_name}): got {}, want {}",
                which(&got, &named),
                which(&want.der, &named)
            );
            let r = c
                .get("/sni")
                .unwrap_or_else(|e| panic!("GET over TLS with SNI {sni:?}: {e}"));
            assert_eq!(r.status, 200, "SNI {sni:?}: {r:?}");
            assert_eq!(r.body_str(), "b1");
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Protocol versions

/// A ClientHello as a TLS 1.0/1.1-only client sends it: record version
/// 03 01, `client_version`, a few TLS 1.0 cipher suites, no extensions.
fn legacy_client_hello(client_version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&client_version);
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    let suites: [u16; 5] = [0x002f, 0x0035, 0x000a, 0xc013, 0xc014];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut hs = vec![1u8]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Sends `hello` on a new connection; returns what the server answered
/// before closing (at most a few bytes), or an error on time-out.
fn answer_to_hello(port: u16, hello: &[u8]) -> Result<Vec<u8>, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(hello).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= 5 {
                    return Ok(got);
                }
            }
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "no answer and no close within 5 s (got {got:02x?})"
                ))
            }
            // Reset: refused by closing.
            Err(_) => return Ok(got),
        }
    }
}

#[test]
fn tls12_and_tls13_work_older_versions_are_refused() {
    let dir = TempDir::new("tls-versions");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(1, "", &[a.write(dir.path(), "a")], &[&be]));

    for (version, want) in [
        (&TLS12, ProtocolVersion::TLSv1_2),
        (&TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let cfg = client_config_with(&[version], &[b"http/1.1"], None);
        let mut c = TlsConn::connect(lb.port(), Some("a.test"), cfg)
            .unwrap_or_else(|e| panic!("{want:?} handshake: {e}\n{}", lb.diagnostics()));
        assert_eq!(c.tls().protocol_version(), Some(want));
        assert_eq!(c.peer_cert_der(), a.der, "{want:?}: wrong certificate");
        let r = c
            .get(&format!("/v/{want:?}"))
            .unwrap_or_else(|e| panic!("GET over {want:?}: {e}"));
        assert_eq!(r.status, 200, "{want:?}: {r:?}");
        assert_eq!(r.body_str(), "b1", "{want:?}");
    }
    assert_eq!(be.request_count(), 2);

    for (label, v) in [("TLS 1.0", [3u8, 1u8]), ("TLS 1.1", [3, 2])] {
        let got = answer_to_hello(lb.port(), &legacy_client_hello(v))
            .unwrap_or_else(|e| panic!("{label} ClientHello: {e}"));
        eprintln!("{label} ClientHello answered with {got:02x?}");
        assert!(
            got.first() != Some(&0x16),
            "{label} ClientHello answered with a handshake record (ServerHello?): {got:02x?}"
        );
        assert!(
            got.is_empty() || got[0] == 0x15,
            "{label} ClientHello: expected an alert record or a close, got {got:02x?}"
        );
    }
    // The server is still fine.
    let mut c = connect(lb.port(), Some("a.test"));
    assert_eq!(c.get("/after").expect("GET after refusals").status, 200);
}

// ---------------------------------------------------------------------------
// 3. Keep-alive, ALPN, X-Forwarded-Proto

#[test]
fn fifty_keepalive_requests_on_one_tls_connection() {
    let dir = TempDir::new("tls-ka");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start("b1");
    // `http2: false`: the listener speaks HTTP/1.1 only (a listener with
    // the default `http2: true` selects h2 for this client, see
    // `alpn_selects_h2_by_default_and_http11_for_http11_clients`).
    let lb = Forklb::start(
        &tls_builder(1, "", &[a.write(dir.path(), "a")], &[&be])
            .listener_opt("http2: false")
            .build(),
    );

    // The client offers h2 first: forklb speaks HTTP/1.1 only.
    let cfg = client_config_with(&[&TLS13, &TLS12], &[b"h2", b"http/1.1"], None);
    let mut c = TlsConn::connect(lb.port(), Some("a.test"), cfg).expect("handshake");
    assert_eq!(
        c.tls().alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN must select http/1.1"
    );
    for i in 0..50 {
        let r = c
            .get(&format!("/ka/{i}"))
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive TLS connection: {e}"));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert!(!r.closes(), "request {i} answered with Connection: close");
        assert_eq!(r.body_str(), "b1", "request {i}");
    }
    let reqs = be.requests();
    assert_eq!(reqs.len(), 50);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.path, format!("/ka/{i}"));
        assert_eq!(
            r.header("x-forwarded-proto"),
            Some("https"),
            "request {i} headers: {:?}",
            r.headers
        );
    }
}

/// The default `http2: true` offers `h2` first: a client offering both gets
/// h2; a client offering only http/1.1 (or no ALPN) still gets HTTP/1.1.
#[test]
fn alpn_selects_h2_by_default_and_http11_for_http11_clients() {
    let dir = TempDir::new("tls-alpn");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(1, "", &[a.write(dir.path(), "a")], &[&be]));

    let cfg = client_config_with(&[&TLS13, &TLS12], &[b"h2", b"http/1.1"], None);
    let c = TlsConn::connect(lb.port(), Some("a.test"), cfg).expect("handshake");
    assert_eq!(
        c.tls().alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN must select h2"
    );
    drop(c);

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let cfg = client_config_with(&[&TLS13, &TLS12], alpn, None);
        let mut c = TlsConn::connect(lb.port(), Some("a.test"), cfg).expect("handshake");
        let expected = if alpn.is_empty() {
            None
        } else {
            Some(&b"http/1.1"[..])
        };
        assert_eq!(c.tls().alpn_protocol(), expected, "offered {alpn:?}");
        let r = c.get("/h1").expect("GET over HTTP/1.1");
        assert_eq!(
            (r.status, r.body_str()),
            (200, "b1".into()),
            "offered {alpn:?}"
        );
    }
}

#[test]
fn pipelined_early_and_slowly_read_data_over_tls() {
    let dir = TempDir::new("tls-pipe");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start_with(
        "b1",
        BackendOpts {
            path_body: true,
            ..Default::default()
        },
    );
    let lb = Forklb::start(&tls_config(1, "", &[a.write(dir.path(), "a")], &[&be]));
    let port = lb.port();
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: localhost\r\n\r\n");

    for version in [&TLS13, &TLS12] {
        let v = format!("{:?}", version.version);
        let cfg = client_config_with(&[version], &[b"http/1.1"], None);
        // The first request leaves with the client's Finished.
        let mut c =
            TlsConn::connect_sending(port, Some("a.test"), cfg.clone(), get("/early").as_bytes())
                .unwrap_or_else(|e| panic!("{v}: handshake: {e}"));
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("{v}: response to a request sent with the Finished: {e}"));
        assert_eq!((r.status, r.body_str()), (200, "/early".to_owned()), "{v}");

        // Five pipelined requests in one TLS write (one record).
        let batch: String = (0..5).map(|i| get(&format!("/pipe/{i}"))).collect();
        c.send(batch.as_bytes()).expect("send pipelined requests");
        for i in 0..5 {
            let r = c
                .read_response()
                .unwrap_or_else(|e| panic!("{v}: pipelined response {i}: {e}"));
            assert_eq!(r.status, 200, "{v}: pipelined response {i}");
            assert_eq!(
                r.body_str(),
                format!("/pipe/{i}"),
                "{v}: pipelined response {i}"
            );
        }

        // A POST whose head and body come in one record.
        let post = b"POST /post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello";
        c.send(post).expect("send POST");
        let r = c.read_response().expect("POST response");
        assert_eq!((r.status, r.body_str()), (200, "/post".to_owned()), "{v}");
    }
    let posts: Vec<_> = be
        .requests()
        .into_iter()
        .filter(|r| r.path == "/post")
        .collect();
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|r| r.body == b"hello"));
}

#[test]
fn slowly_read_large_response_over_tls_arrives_whole() {
    const SIZE: usize = 4 << 20;
    let dir = TempDir::new("tls-slow");
    let a = TestCert::self_signed(&["a.test"]);
    let big = Backend::start_with(
        "big",
        BackendOpts {
            stream_body: Some(SIZE),
            ..Default::default()
        },
    );
    let lb = Forklb::start(&tls_config(1, "", &[a.write(dir.path(), "a")], &[&big]));
    let mut c = connect(lb.port(), Some("a.test"));
    c.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    // Let every buffer on the way fill up, then read.
    thread::sleep(Duration::from_millis(1500));
    let mut other = connect(lb.port(), Some("a.test"));
    assert_eq!(
        other
            .get("/other")
            .expect("GET on another connection")
            .status,
        200
    );
    let r = c.read_response().expect("the large response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE, "body length");
    if let Some(i) = (0..SIZE).find(|&i| r.body[i] != pattern_byte(i)) {
        panic!("body differs first at byte {i}");
    }
    // And the connection still serves.
    assert_eq!(c.get("/again").expect("GET after").status, 200);
}

#[test]
fn over_tls_half_a_head_gets_408_and_closes_are_clean() {
    let dir = TempDir::new("tls-408");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(
        1,
        "timeouts: {client_header: 1s}\n",
        &[a.write(dir.path(), "a")],
        &[&be],
    ));

    // Half a request head after the handshake: an (encrypted) 408, then close.
    let mut c = connect(lb.port(), Some("a.test"));
    c.set_read_timeout(Duration::from_secs(4));
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .expect("send half a head");
    let t = Instant::now();
    let r = c.read_response().expect("408 response over TLS");
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        t.elapsed() <= Duration::from_millis(2500),
        "408 after {:?}; client_header is 1 s",
        t.elapsed()
    );
    let clean = c.wait_closed().expect("closed after the 408");
    assert!(
        clean,
        "connection closed after the 408 without a TLS close_notify"
    );
    assert_eq!(be.request_count(), 0);

    // Connection: close: the response, then close_notify.
    let mut c = connect(lb.port(), Some("a.test"));
    let r = c
        .request("GET", "/bye", &[("Connection", "close")], b"")
        .expect("GET with Connection: close");
    assert_eq!(r.status, 200);
    assert!(r.closes(), "{r:?}");
    let clean = c.wait_closed().expect("closed after Connection: close");
    assert!(
        clean,
        "connection closed after Connection: close without a TLS close_notify"
    );
}

// ---------------------------------------------------------------------------
// 4. Large bodies

#[test]
fn eight_mib_bodies_both_ways_over_tls() {
    const SIZE: usize = 8 << 20;
    let dir = TempDir::new("tls-big");
    let a = TestCert::self_signed(&["a.test"]);
    let echo = Backend::start_with(
        "echo",
        BackendOpts {
            echo: true,
            ..Default::default()
        },
    );
    let big = Backend::start_with(
        "big",
        BackendOpts {
            stream_body: Some(SIZE),
            ..Default::default()
        },
    );
    let cfg = ConfigBuilder::new()
        .log_level("info")
        .listener("secure", &["127.0.0.1:$PORT"])
        .certificates(&[a.write(dir.path(), "a")])
        .route(Route::path("/echo").upstream("echo"))
        .route(Route::to("big"))
        .upstream("echo", [Srv::addr(echo.addr())])
        .upstream("big", [Srv::addr(big.addr())])
        .build();
    let lb = Forklb::start(&cfg);
    let mut c = connect(lb.port(), Some("a.test"));
    c.set_read_timeout(Duration::from_secs(10));

    // Upload with Content-Length, echoed back.
    let data = pseudo_random_bytes(SIZE, 7);
    let r = c
        .request("POST", "/echo/cl", &[], &data)
        .expect("POST 8 MiB (Content-Length)");
    assert_eq!(
        r.status,
        200,
        "POST Content-Length: {:?}",
        (r.status, &r.headers)
    );
    assert_eq!(r.body.len(), SIZE, "echoed length (Content-Length upload)");
    assert!(
        r.body == data,
        "echoed bytes differ (Content-Length upload)"
    );

    // Upload chunked (uneven chunks), echoed back.
    let data2 = pseudo_random_bytes(SIZE, 11);
    let mut req =
        b"POST /echo/chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    let mut off = 0;
    let mut n = 1000;
    while off < data2.len() {
        let len = n.min(data2.len() - off);
        req.extend_from_slice(format!("{len:x}\r\n").as_bytes());
        req.extend_from_slice(&data2[off..off + len]);
        req.extend_from_slice(b"\r\n");
        off += len;
        n = n * 3 % 200_003 + 17;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req).expect("send chunked POST");
    let r = c.read_response().expect("response to the chunked POST");
    assert_eq!(r.status, 200, "POST chunked: {:?}", (r.status, &r.headers));
    assert_eq!(r.body.len(), SIZE, "echoed length (chunked upload)");
    assert!(r.body == data2, "echoed bytes differ (chunked upload)");
    let reqs = echo.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[0].body == data && reqs[1].body == data2,
        "bodies as the backend received them differ"
    );

    // Download.
    let r = c.get("/big").expect("GET 8 MiB");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE, "downloaded length");
    if let Some(i) = (0..SIZE).find(|&i| r.body[i] != pattern_byte(i)) {
        panic!("downloaded body differs first at byte {i}");
    }
}

// ---------------------------------------------------------------------------
// 5. HTTPS upstream

#[test]
fn https_upstream_gets_sni_and_host_and_connections_are_pooled() {
    let dir = TempDir::new("tls-up");
    let (ca, ca_path) = TestCa::in_dir(dir.path());
    let tb = TlsBackend::start("tlsb", &ca.issue(&["one.one.one.one"]));
    let cfg = tls_upstream_config("one.one.one.one", &ca_path, tb.addr())
        .upstream_opt("host_header: one.one.one.one")
        .build();
    let lb = Forklb::start(&cfg);

    const N: usize = 6;
    let mut conn = Conn::open(lb.port()).expect("connect");
    for i in 0..N {
        let r = conn
            .get(&format!("/up/{i}"))
            .unwrap_or_else(|e| panic!("request {i}: {e}\n{}", lb.diagnostics()));
        assert_eq!(r.status, 200, "request {i}: {r:?}\n{}", lb.diagnostics());
        assert_eq!(r.body_str(), "tlsb", "request {i}");
    }
    let reqs = tb.requests();
    assert_eq!(reqs.len(), N, "requests at the HTTPS backend");
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.path, format!("/up/{i}"));
        assert_eq!(
            r.sni.as_deref(),
            Some("one.one.one.one"),
            "SNI of request {i}"
        );
        assert_eq!(
            r.header("host"),
            Some("one.one.one.one"),
            "Host of request {i}"
        );
    }
    let hs = tb.handshakes();
    assert!(
        (1..N).contains(&hs),
        "{hs} TLS handshakes at the backend for {N} sequential requests: upstream TLS connections are not pooled"
    );
}

#[test]
fn https_upstream_carries_8_mib_bodies_both_ways_from_a_tls_listener() {
    const SIZE: usize = 8 << 20;
    let dir = TempDir::new("tls-up-big");
    let (ca, ca_path) = TestCa::in_dir(dir.path());
    let tb = TlsBackend::start("tlsb", &ca.issue(&["origin.test"]));
    let front = TestCert::self_signed(&["a.test"]);
    let cfg = ConfigBuilder::new()
        .log_level("info")
        .listener("secure", &["127.0.0.1:$PORT"])
        .certificates(&[front.write(dir.path(), "a")])
        .route(Route::to("web"))
        .upstream("web", [Srv::new("s1", tb.addr())])
        .upstream_tls("origin.test", &ca_path)
        .build();
    let lb = Forklb::start(&cfg);
    let mut c = connect(lb.port(), Some("a.test"));
    c.set_read_timeout(Duration::from_secs(10));

    let data = pseudo_random_bytes(SIZE, 23);
    let r = c.request("POST", "/echo", &[], &data).unwrap_or_else(|e| {
        panic!(
            "POST 8 MiB through the HTTPS upstream: {e}\n{}",
            lb.diagnostics()
        )
    });
    assert_eq!(
        r.status,
        200,
        "{:?}\n{}",
        (r.status, &r.headers),
        lb.diagnostics()
    );
    assert_eq!(r.body.len(), SIZE, "echoed length");
    assert!(r.body == data, "echoed bytes differ");

    let r = c.get(&format!("/big/{SIZE}")).unwrap_or_else(|e| {
        panic!(
            "GET 8 MiB through the HTTPS upstream: {e}\n{}",
            lb.diagnostics()
        )
    });
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE, "downloaded length");
    if let Some(i) = (0..SIZE).find(|&i| r.body[i] != pattern_byte(i)) {
        panic!("downloaded body differs first at byte {i}");
    }
    let reqs = tb.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[0].body == data,
        "the body as the HTTPS backend received it differs"
    );
    assert_eq!(reqs[1].body.len(), 0);
}

#[test]
fn concurrent_tls_clients_on_two_workers() {
    let dir = TempDir::new("tls-conc");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(2, "", &[a.write(dir.path(), "a")], &[&be]));
    let port = lb.port();
    let der = a.der.clone();
    // 8 threads, each: 10 new connections with 3 requests each.
    let results = concurrently(8, 10, move |t, i| -> Result<(), String> {
        let mut c = TlsConn::connect(port, Some("a.test"), client_config())
            .map_err(|e| format!("thread {t} connection {i}: handshake: {e}"))?;
        if c.peer_cert_der() != der {
            return Err(format!("thread {t} connection {i}: wrong certificate"));
        }
        for k in 0..3 {
            let r = c
                .get(&format!("/c/{t}/{i}/{k}"))
                .map_err(|e| format!("thread {t} connection {i} request {k}: {e}"))?;
            if r.status != 200 || r.body_str() != "b1" {
                return Err(format!("thread {t} connection {i} request {k}: {r:?}"));
            }
        }
        Ok(())
    });
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        lb.diagnostics()
    );
    assert_eq!(be.request_count(), 240);
}

#[test]
fn pooled_tls_upstream_connection_closed_by_backend_is_detected() {
    let dir = TempDir::new("tls-up-stale");
    let (ca, ca_path) = TestCa::in_dir(dir.path());
    let tb = TlsBackend::start_with(
        "tlsb",
        &ca.issue(&["origin.test"]),
        TlsBackendOpts {
            idle_close: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    );
    let cfg = tls_upstream_config("origin.test", &ca_path, tb.addr()).build();
    let lb = Forklb::start(&cfg);
    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..3 {
        let r = c.get(&format!("/stale/{i}")).expect("GET");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "tlsb"),
            "request {i} after the HTTPS backend closed the pooled connection: {r:?}\n{}",
            lb.error_log_contents()
        );
        assert!(
            wait_until(Duration::from_secs(3), || tb.idle_closed() == i + 1),
            "the HTTPS backend did not close its idle connection"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tb.request_count(), 3);
    assert_eq!(tb.handshakes(), 3);
}

#[test]
fn stalled_upstream_tls_handshake_fails_in_bounded_time() {
    let dir = TempDir::new("tls-up-stall");
    let (ca, ca_path) = TestCa::in_dir(dir.path());
    let tb = TlsBackend::start_with(
        "stall",
        &ca.issue(&["origin.test"]),
        TlsBackendOpts {
            stall_handshake: true,
            ..Default::default()
        },
    );
    let cfg = tls_upstream_config("origin.test", &ca_path, tb.addr())
        .set(
            "timeouts",
            "{connect: 1s, upstream_read: 1s, upstream_write: 1s}",
        )
        .upstream_opt("retries: 0")
        .build();
    let lb = Forklb::start(&cfg);
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(Duration::from_secs(8));
    let t = Instant::now();
    let r = c
        .get("/stall")
        .unwrap_or_else(|e| panic!("no answer {:?} after the request: {e}", t.elapsed()));
    assert!(
        r.status == 502 || r.status == 504,
        "stalled upstream handshake: {r:?}"
    );
    assert!(
        t.elapsed() <= Duration::from_secs(4),
        "stalled upstream handshake answered only after {:?} (connect and upstream_read are 1 s)",
        t.elapsed()
    );
    assert!(tb.connections() >= 1);
}

// ---------------------------------------------------------------------------
// 6. Upstream verification

/// The error-log lines that name `server` and give a reason.
fn verification_error_lines(lb: &Forklb, server: &str) -> Vec<String> {
    lb.log_lines(server)
        .into_iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["certificate", "issuer", "verif", "trust", "name"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect()
}

#[test]
fn upstream_certificate_verification_failures_give_502_and_are_logged() {
    let dir = TempDir::new("tls-verify");
    let (ca, ca_path) = TestCa::in_dir(dir.path());
    // Self-signed: not trusted by ca.pem.
    let untrusted = TlsBackend::start("untrusted", &TestCert::self_signed(&["one.one.one.one"]));
    // Trusted, but for another name than the SNI forklb is told to use.
    let trusted = TlsBackend::start("trusted", &ca.issue(&["one.one.one.one"]));
    // Trusted, for "localhost", given by host name without `sni`.
    let named = TlsBackend::start("named", &ca.issue(&["localhost"]));
    let ca_yaml = yaml_str(&ca_path.display().to_string());
    let cfg = ConfigBuilder::new()
        .log_level("info")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/strict").upstream("web"))
        .route(Route::path("/wrongname").upstream("wrongname"))
        .route(Route::path("/lax").upstream("lax"))
        .route(Route::path("/systemroots").upstream("systemroots"))
        .route(Route::path("/byname").upstream("byname"))
        .upstream("web", [Srv::new("s1", untrusted.addr())])
        .upstream_opt("retries: 0")
        .upstream_tls("one.one.one.one", &ca_path)
        .upstream("wrongname", [Srv::new("s1", trusted.addr())])
        .upstream_opt("retries: 0")
        .upstream_opt(&format!(
            "tls: {{sni: other.test, verify: true, ca: {ca_yaml}}}"
        ))
        .upstream("lax", [Srv::new("s1", untrusted.addr())])
        .upstream_opt("tls: {verify: false}")
        .upstream("systemroots", [Srv::new("s1", trusted.addr())])
        .upstream_opt("retries: 0")
        .upstream_opt("tls: {sni: one.one.one.one}")
        .upstream(
            "byname",
            [Srv::new("s1", format!("localhost:{}", named.port()))],
        )
        .upstream_opt(&format!("tls: {{ca: {ca_yaml}}}"))
        .build();
    let lb = Forklb::start(&cfg);

    let r = http_get(lb.port(), "/strict");
    assert_eq!(
        r.status,
        502,
        "untrusted upstream certificate: {r:?}\n{}",
        lb.diagnostics()
    );
    assert_eq!(
        untrusted.request_count(),
        0,
        "a request reached the untrusted upstream"
    );
    assert!(
        wait_until(Duration::from_secs(3), || !verification_error_lines(
            &lb, "web/s1"
        )
        .is_empty()),
        "no error-log line names web/s1 with a reason\n{}",
        lb.diagnostics()
    );

    let r = http_get(lb.port(), "/wrongname");
    assert_eq!(
        r.status,
        502,
        "upstream certificate for another name: {r:?}\n{}",
        lb.diagnostics()
    );
    assert_eq!(
        trusted.request_count(),
        0,
        "a request reached the misnamed upstream"
    );
    assert!(
        wait_until(Duration::from_secs(3), || !verification_error_lines(
            &lb,
            "wrongname/s1"
        )
        .is_empty()),
        "no error-log line names wrongname/s1 with a reason\n{}",
        lb.diagnostics()
    );

    eprintln!(
        "verification errors logged:\n{}\n{}",
        verification_error_lines(&lb, "web/s1").join("\n"),
        verification_error_lines(&lb, "wrongname/s1").join("\n")
    );
    // The stage that failed is named, as the README shows the line.
    for line in verification_error_lines(&lb, "web/s1") {
        assert!(line.contains("TLS handshake with 127.0.0.1:"), "{line}");
    }

    // verify: false talks to the untrusted server; without `sni`, an IP
    // address sends no SNI.
    let r = http_get(lb.port(), "/lax");
    assert_eq!(r.status, 200, "verify: false: {r:?}\n{}", lb.diagnostics());
    assert_eq!(r.body_str(), "untrusted");
    let reqs = untrusted.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].sni, None,
        "SNI sent to a server given by IP address"
    );
    assert_eq!(reqs[0].path, "/lax");

    // Verification is on by default, with the system roots: the test CA is
    // not among them.
    let r = http_get(lb.port(), "/systemroots");
    assert_eq!(
        r.status,
        502,
        "a certificate of the test CA was accepted without `ca` (verify must default to true): {r:?}"
    );
    assert_eq!(trusted.request_count(), 0);
    assert!(
        wait_until(Duration::from_secs(3), || !verification_error_lines(
            &lb,
            "systemroots/s1"
        )
        .is_empty()),
        "no error-log line names systemroots/s1 with a reason\n{}",
        lb.diagnostics()
    );

    // Without `sni`, the server's host name is the SNI (and is verified).
    let r = http_get(lb.port(), "/byname");
    assert_eq!(
        r.status,
        200,
        "server given as localhost: {r:?}\n{}",
        lb.diagnostics()
    );
    assert_eq!(r.body_str(), "named");
    let reqs = named.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].sni.as_deref(),
        Some("localhost"),
        "SNI for a server given by name"
    );
}

/// The first error-log line naming `server` (waited for), for its reason.
fn first_log_line(lb: &Forklb, server: &str) -> String {
    assert!(
        lb.wait_log(server, Duration::from_secs(3)),
        "no error-log line names {server}\n{}",
        lb.diagnostics()
    );
    lb.log_lines(server).remove(0)
}

/// A self-signed certificate with `CA:TRUE` (what `openssl req -x509`
/// makes by default) is taken as the server's when exactly that
/// certificate is the `ca` file and it is valid for the name and for now,
/// as nginx and HAProxy take it; anything else still fails, and a CA
/// certificate that is not pinned is refused with a sentence saying what
/// to do instead of webpki's `CaUsedAsEndEntity`.
#[test]
fn a_pinned_self_signed_ca_flagged_upstream_certificate_is_accepted() {
    let dir = TempDir::new("tls-pin");
    let pinned = TestCert::self_signed_ca_flagged(&["app.internal", "127.0.0.1"], None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = TestCert::self_signed_ca_flagged(&["app.internal"], Some(now - 2 * 86_400));
    let stranger = TestCert::self_signed_ca_flagged(&["app.internal"], None);
    let (pinned_crt, _) = pinned.write(dir.path(), "pinned");
    let (expired_crt, _) = expired.write(dir.path(), "expired");
    let (stranger_crt, _) = stranger.write(dir.path(), "stranger");
    let app = TlsBackend::start("app", &pinned);
    let old = TlsBackend::start("old", &expired);
    let tls = |sni: &str, ca: &PathBuf| {
        let ca = yaml_str(&ca.display().to_string());
        format!("tls: {{sni: {sni}, ca: {ca}}}")
    };
    let cfg = ConfigBuilder::new()
        .log_level("info")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/pin_name").upstream("pin_name"))
        .route(Route::path("/pin_ip").upstream("pin_ip"))
        .route(Route::path("/pin_other").upstream("pin_other"))
        .route(Route::path("/pin_old").upstream("pin_old"))
        .route(Route::path("/not_pinned").upstream("not_pinned"))
        .upstream("pin_name", [Srv::new("s1", app.addr())])
        .upstream_opt(&tls("app.internal", &pinned_crt))
        // Without `sni`: verified against the IP address in its SANs.
        .upstream("pin_ip", [Srv::new("s1", app.addr())])
        .upstream_opt(&format!(
            "tls: {{ca: {}}}",
            yaml_str(&pinned_crt.display().to_string())
        ))
        .upstream("pin_other", [Srv::new("s1", app.addr())])
        .upstream_opt("retries: 0")
        .upstream_opt(&tls("other.internal", &pinned_crt))
        .upstream("pin_old", [Srv::new("s1", old.addr())])
        .upstream_opt("retries: 0")
        .upstream_opt(&tls("app.internal", &expired_crt))
        .upstream("not_pinned", [Srv::new("s1", app.addr())])
        .upstream_opt("retries: 0")
        .upstream_opt(&tls("app.internal", &stranger_crt))
        .build();
    let lb = Forklb::start(&cfg);

    for path in ["/pin_name", "/pin_ip"] {
        let r = http_get(lb.port(), path);
        assert_eq!(
            (r.status, r.body_str()),
            (200, "app".to_owned()),
            "{path}: the pinned certificate was refused: {r:?}\n{}",
            lb.diagnostics()
        );
    }
    assert_eq!(app.request_count(), 2);

    let r = http_get(lb.port(), "/pin_other");
    assert_eq!(r.status, 502, "pinned, but for another name: {r:?}");
    let line = first_log_line(&lb, "pin_other/s1");
    assert!(line.contains("not valid for name"), "{line}");

    let r = http_get(lb.port(), "/pin_old");
    assert_eq!(r.status, 502, "pinned, but expired: {r:?}");
    assert_eq!(old.request_count(), 0);
    let line = first_log_line(&lb, "pin_old/s1");
    assert!(line.contains("certificate expired"), "{line}");

    let r = http_get(lb.port(), "/not_pinned");
    assert_eq!(r.status, 502, "a CA certificate not in `ca`: {r:?}");
    let line = first_log_line(&lb, "not_pinned/s1");
    assert!(
        line.contains(
            "the server presents a CA certificate (CA:TRUE) as its own: re-issue it with \
             CA:FALSE, or put exactly that certificate in `ca`"
        ) && !line.contains("OtherError"),
        "{line}"
    );
    assert_eq!(app.request_count(), 2, "a refused server got a request");
}

// ---------------------------------------------------------------------------
// 7. Plain HTTP on the TLS port, stalled handshakes

#[test]
fn plaintext_and_stalled_handshakes_only_affect_their_own_connection() {
    let dir = TempDir::new("tls-stall");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(
        1,
        "timeouts: {client_header: 2s}\n",
        &[a.write(dir.path(), "a")],
        &[&be],
    ));
    let port = lb.port();

    let mut good = connect(port, Some("a.test"));
    assert_eq!(good.get("/before").expect("GET before").status, 200);

    // Plain HTTP on the TLS port: answered 400 in plain text and closed,
    // never proxied.
    let mut plain = Conn::open(port).expect("connect");
    plain.set_read_timeout(Duration::from_secs(5));
    plain
        .send(b"GET /plain HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send plain request");
    let t = Instant::now();
    let got = match plain.read_to_end() {
        Ok(b) => b,
        Err(e) if is_timeout(&e) => panic!("plain HTTP on the TLS port: not closed within 5 s"),
        Err(_) => plain.buffered().to_vec(),
    };
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "plain HTTP on the TLS port closed only after {:?}",
        t.elapsed()
    );
    let text = String::from_utf8_lossy(&got);
    // As nginx: a plain 400 that says what happened, then close.
    assert!(
        text.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && text.contains("Connection: close\r\n")
            && text.ends_with("The plain HTTP request was sent to HTTPS port\n"),
        "plain HTTP on the TLS port answered with {text:?}"
    );
    assert!(
        !text.contains(" 200 ") && !text.contains("b1"),
        "plain HTTP on the TLS port was served: {text:?}"
    );
    assert_eq!(
        be.request_count(),
        1,
        "the plain request reached the backend"
    );
    assert_eq!(
        good.get("/after-plain").expect("GET after plain").status,
        200
    );

    // Stalled handshakes: one connection sends nothing, one half a ClientHello.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let silent = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    let mut half = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    let hello = client_hello_bytes("a.test");
    half.write_all(&hello[..hello.len() / 2])
        .expect("send half a ClientHello");
    // And one that trickles a ClientHello, a byte every 200 ms.
    let mut trickle = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    let stalled_at = Instant::now();
    let trickle_reader = trickle.try_clone().expect("clone");
    let trickler = thread::spawn(move || {
        for &byte in &hello {
            if trickle.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
            if stalled_at.elapsed() > Duration::from_secs(8) {
                return;
            }
        }
    });
    thread::sleep(Duration::from_millis(100));

    // Others are served at once, on new and on kept-alive connections.
    let t = Instant::now();
    let mut fresh = connect(port, Some("a.test"));
    let r = fresh.get("/during-stall").expect("GET during the stall");
    assert_eq!(r.status, 200);
    assert_eq!(
        good.get("/during-stall-ka")
            .expect("GET during the stall")
            .status,
        200
    );
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "a new TLS client waited {:?} behind stalled handshakes",
        t.elapsed()
    );

    // The stalled ones are closed after client_header (2 s).
    let closed_after = move |mut s: TcpStream, what: &str| -> Duration {
        s.set_read_timeout(Some(Duration::from_secs(7))).unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => panic!(
                    "{what}: not closed {:?} after it stalled (client_header: 2s)",
                    stalled_at.elapsed()
                ),
                Err(_) => break,
            }
        }
        assert!(
            got.first() != Some(&0x16),
            "{what}: got a handshake record from a stalled handshake: {got:02x?}"
        );
        stalled_at.elapsed()
    };
    let h = thread::spawn(move || closed_after(half, "half a ClientHello"));
    let tr = thread::spawn(move || closed_after(trickle_reader, "trickled ClientHello"));
    let s_after = closed_after(silent, "silent connection");
    let h_after = h.join().expect("reader thread");
    let t_after = tr.join().expect("reader thread");
    let _ = trickler.join();
    for (what, after) in [
        ("silent connection", s_after),
        ("half a ClientHello", h_after),
        ("trickled ClientHello", t_after),
    ] {
        assert!(
            after >= Duration::from_millis(1500) && after <= Duration::from_millis(6000),
            "{what} closed {after:?} after it stalled; client_header is 2 s"
        );
    }
    assert_eq!(
        good.get("/after-stall")
            .expect("GET after the stall")
            .status,
        200
    );
}

// ---------------------------------------------------------------------------
// 8. Reload and -t

#[test]
fn hup_with_a_broken_certificate_keeps_the_old_one_and_a_fixed_one_is_served() {
    let dir = TempDir::new("tls-reload");
    let old = TestCert::self_signed(&["a.test"]);
    let (crt, key) = old.write(dir.path(), "a");
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(1, "", &[(crt.clone(), key.clone())], &[&be]));
    let named = |der: &[u8], new: &TestCert| -> String {
        which(
            der,
            &[("the old certificate", &old), ("the new certificate", new)],
        )
        .to_owned()
    };
    assert!(presented_cert(lb.port(), Some("a.test")).expect("handshake") == old.der);

    // Garbage in the certificate file: the reload fails, the old certificate stays.
    write_atomically(
        &crt,
        b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
    );
    lb.signal(SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || lb
            .error_log_contents()
            .contains("reload failed")),
        "no \"reload failed\" in the error log after HUP with a broken certificate\n{}",
        lb.diagnostics()
    );
    let log = lb.error_log_contents();
    assert!(
        log.lines()
            .any(|l| l.contains("reload failed") && l.contains("a.crt"))
            || log.contains(&crt.display().to_string()),
        "the failed reload does not name the certificate file {}\n{log}",
        crt.display()
    );
    let new = TestCert::self_signed(&["a.test"]);
    for i in 0..5 {
        let mut c = connect(lb.port(), Some("a.test"));
        let got = c.peer_cert_der();
        assert!(
            got == old.der,
            "connection {i} after the failed reload got {}",
            named(&got, &new)
        );
        assert_eq!(c.get("/old").expect("GET").status, 200);
    }

    // A valid certificate with the key of another one: the reload fails too.
    let workers = lb.worker_pids();
    write_atomically(&crt, new.cert_pem.as_bytes());
    lb.signal(SIGHUP);
    assert!(
        lb.wait_log_count("reload failed", 2, Duration::from_secs(5)),
        "no second \"reload failed\" after HUP with a certificate that does not match its key\n{}",
        lb.diagnostics()
    );
    for i in 0..3 {
        let got = presented_cert(lb.port(), Some("a.test")).expect("handshake");
        assert!(
            got == old.der,
            "connection {i} after the mismatched reload got {}",
            named(&got, &new)
        );
    }
    assert_eq!(
        lb.worker_pids(),
        workers,
        "workers changed on a failed reload"
    );

    // A valid new certificate and key: served after HUP.
    new.write_to(&crt, &key);
    lb.signal(SIGHUP);
    let mut last = Vec::new();
    let served = wait_until(Duration::from_secs(10), || {
        last = presented_cert(lb.port(), Some("a.test")).unwrap_or_default();
        last == new.der
    });
    assert!(
        served,
        "the new certificate is not served 10 s after HUP (got {})\n{}",
        named(&last, &new),
        lb.diagnostics()
    );
    let mut c = connect(lb.port(), Some("a.test"));
    assert!(c.peer_cert_der() == new.der);
    assert_eq!(c.get("/new").expect("GET").status, 200);
}

/// A configuration for `forklb -t` with one TLS listener.
fn check_yaml(dir: &TempDir, pairs: &[(PathBuf, PathBuf)]) -> PathBuf {
    ConfigBuilder::new()
        .listener("secure", &["127.0.0.1:$PORT"])
        .certificates(pairs)
        .route(Route::any().ret(200, "ok\n"))
        .write_for_check(dir)
}

/// A PEM file cut off in the middle of a section (a copy that stopped
/// short) is refused by `-t` with its label in words, not as a list of
/// byte values ("missing section end marker: [67, 69, 82, 84, ...]"): a
/// listener's certificate, and an upstream's `ca`.
#[test]
fn config_test_says_which_pem_section_is_cut_off() {
    let dir = TempDir::new("tls-cut-pem");
    let a = TestCert::self_signed(&["a.test"]);
    let (a_crt, a_key) = a.write(dir.path(), "a");
    let cut = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, &pem[..pem.len() / 2]).unwrap();
        path
    };
    let cut_crt = cut("cut.crt", &a.cert_pem);
    let cut_ca = cut("cut-ca.pem", &TestCa::new("cut CA").cert_pem);
    let listener = || check_yaml(&dir, &[(cut_crt.clone(), a_key.clone())]);
    let upstream = || {
        ConfigBuilder::new()
            .listener("secure", &["127.0.0.1:$PORT"])
            .certificates(&[(a_crt.clone(), a_key.clone())])
            .route(Route::to("web"))
            .upstream("web", [Srv::new("s1", "127.0.0.1:1")])
            .upstream_tls("app.internal", &cut_ca)
            .write_for_check(&dir)
    };
    let cases: [(&dyn Fn() -> PathBuf, &PathBuf); 2] =
        [(&listener, &cut_crt), (&upstream, &cut_ca)];
    for (write_config, file) in cases {
        // Each writes forklb.yaml in `dir`: checked before the next is written.
        let cfg = write_config();
        let out = run_forklb(&["-t", "-c", cfg.to_str().unwrap()], RUN_TIMEOUT);
        let text = out.combined();
        assert_eq!(out.code(), Some(1), "{}: {text}", file.display());
        assert!(
            text.contains(&file.display().to_string())
                && text.contains("a CERTIFICATE section has no end line")
                && !text.contains("[67, 69"),
            "{}: {text}",
            file.display()
        );
    }
}

#[test]
fn config_test_rejects_missing_broken_and_mismatched_certificate_files() {
    let dir = TempDir::new("tls-check");
    let a = TestCert::self_signed(&["a.test"]);
    let b = TestCert::self_signed(&["b.test"]);
    let (a_crt, a_key) = a.write(dir.path(), "a");
    let (b_crt, b_key) = b.write(dir.path(), "b");
    let run = |pairs: &[(PathBuf, PathBuf)]| {
        let cfg = check_yaml(&dir, pairs);
        run_forklb(&["-t", "-c", cfg.to_str().unwrap()], RUN_TIMEOUT)
    };

    let out = run(&[
        (a_crt.clone(), a_key.clone()),
        (b_crt.clone(), b_key.clone()),
    ]);
    assert_eq!(
        out.code(),
        Some(0),
        "valid certificates: {}",
        out.combined()
    );
    assert!(
        out.combined().contains("test is successful"),
        "{}",
        out.combined()
    );

    let missing = dir.join("missing.key");
    let out = run(&[(a_crt.clone(), missing.clone())]);
    assert_eq!(out.code(), Some(1), "missing key file: {}", out.combined());
    assert!(
        out.combined().contains(&missing.display().to_string()),
        "the error does not name the missing key file {}: {}",
        missing.display(),
        out.combined()
    );

    let garbage = dir.join("garbage.crt");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let out = run(&[(garbage.clone(), a_key.clone())]);
    assert_eq!(
        out.code(),
        Some(1),
        "garbage certificate file: {}",
        out.combined()
    );
    assert!(
        out.combined().contains(&garbage.display().to_string()),
        "the error does not name the broken certificate file {}: {}",
        garbage.display(),
        out.combined()
    );

    // Certificate A with the key of B.
    let out = run(&[(a_crt.clone(), b_key.clone())]);
    assert_eq!(
        out.code(),
        Some(1),
        "mismatched certificate and key: {}",
        out.combined()
    );
    let text = out.combined();
    assert!(
        text.contains(&a_crt.display().to_string()) || text.contains(&b_key.display().to_string()),
        "the mismatch error names neither {} nor {}: {text}",
        a_crt.display(),
        b_key.display()
    );
}

// ---------------------------------------------------------------------------
// 9. Redirect to https

#[test]
fn plain_listener_redirects_to_https_with_host_and_request_uri() {
    let dir = TempDir::new("tls-redirect");
    let a = TestCert::self_signed(&["foo.test"]);
    let be = Backend::start("b1");
    let cfg = ConfigBuilder::new()
        .log_level("info")
        .listener("plain", &["127.0.0.1:$PORT"])
        .route(Route::any().redirect("https://$host:8443$request_uri", 301))
        .listener("secure", &[&format!("127.0.0.1:{}", free_port())])
        .certificates(&[a.write(dir.path(), "a")])
        .route(Route::to("web"))
        .upstream("web", [Srv::new("b1", be.addr())])
        .build();
    // `$PORT` is replaced by the harness; `$host` and `$request_uri` are not.
    let lb = Forklb::start(&cfg);
    for (host, path, want) in [
        ("foo.test", "/x?y=1", "https://foo.test:8443/x?y=1"),
        ("FOO.Test:8080", "/x?y=1", "https://foo.test:8443/x?y=1"),
        ("foo.test", "/", "https://foo.test:8443/"),
        (
            "bar.test",
            "/a%20b/c?q=1&r=2",
            "https://bar.test:8443/a%20b/c?q=1&r=2",
        ),
    ] {
        // (Conn::request would send `Host: localhost`.)
        let mut c = Conn::open(lb.port()).expect("connect");
        c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .expect("send");
        let r = c.read_response().expect("redirect response");
        assert_eq!(r.status, 301, "Host {host:?} {path}: {r:?}");
        assert_eq!(
            r.header("location"),
            Some(want),
            "Host {host:?} {path}: {:?}",
            r.headers
        );
    }
    assert_eq!(be.request_count(), 0);
}

// ---------------------------------------------------------------------------
// 10. Session resumption across workers

fn resumption_across_workers(version: &'static rustls::SupportedProtocolVersion, label: &str) {
    let dir = TempDir::new("tls-resume");
    let a = TestCert::self_signed(&["a.test"]);
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(2, "", &[a.write(dir.path(), "a")], &[&be]));
    let workers = lb.wait_workers(2, Duration::from_secs(5));
    let sessions: Arc<ClientSessionMemoryCache> = Arc::new(ClientSessionMemoryCache::new(64));
    let cfg = client_config_with(&[version], &[b"http/1.1"], Some(sessions));

    let mut kinds = Vec::new();
    for i in 0..20 {
        // Stop one worker so that the other one serves this connection:
        // consecutive connections go to different workers.
        let serving = workers[i % 2];
        let paused = Paused::new(workers[(i + 1) % 2]);
        let mut c = TlsConn::connect(lb.port(), Some("a.test"), cfg.clone()).unwrap_or_else(|e| {
            panic!(
                "{label} connection {i} (worker {serving}): {e}\n{}",
                lb.diagnostics()
            )
        });
        let r = c
            .get(&format!("/resume/{i}"))
            .unwrap_or_else(|e| panic!("{label} GET on connection {i}: {e}"));
        assert_eq!(r.status, 200);
        assert_eq!(
            c.tls().protocol_version(),
            Some(if version == &TLS12 {
                ProtocolVersion::TLSv1_2
            } else {
                ProtocolVersion::TLSv1_3
            })
        );
        // The connection is indeed the serving worker's.
        let local = c.tcp().local_addr().expect("local_addr").port();
        let inode = tcp_socket_inode(lb.port(), local).expect("server end of the connection");
        assert!(
            socket_inodes_of(serving).contains(&inode),
            "{label} connection {i} was not accepted by worker {serving}"
        );
        kinds.push(c.handshake_kind());
        drop(c);
        drop(paused);
    }
    assert_eq!(
        kinds[0],
        Some(HandshakeKind::Full),
        "{label}: first connection {kinds:?}"
    );
    let not_resumed: Vec<usize> = (1..kinds.len())
        .filter(|&i| kinds[i] != Some(HandshakeKind::Resumed))
        .collect();
    assert!(
        not_resumed.is_empty(),
        "{label}: connections {not_resumed:?} (alternating between workers {workers:?}) were not resumed: {kinds:?}"
    );
}

#[test]
fn tls13_sessions_resume_across_workers() {
    resumption_across_workers(&TLS13, "TLS 1.3");
}

#[test]
fn tls12_sessions_resume_across_workers() {
    resumption_across_workers(&TLS12, "TLS 1.2");
}

// ---------------------------------------------------------------------------
// Certificate files: Ed25519 and SEC1 keys, chains

/// Minimal DER: the (tag, content, rest) of the element at the start of `d`.
fn der_next(d: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = d[0];
    let (len, hdr) = if d[1] < 0x80 {
        (d[1] as usize, 2)
    } else {
        let n = (d[1] & 0x7f) as usize;
        let len = d[2..2 + n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | b as usize);
        (len, 2 + n)
    };
    (tag, &d[hdr..hdr + len], &d[hdr + len..])
}

/// The SEC1 `ECPrivateKey` inside a PKCS#8 EC key.
fn pkcs8_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (tag, seq, _) = der_next(pkcs8);
    assert_eq!(tag, 0x30);
    let (_, _version, rest) = der_next(seq);
    let (_, _alg, rest) = der_next(rest);
    let (tag, key, _) = der_next(rest);
    assert_eq!(tag, 0x04);
    key.to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in s.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[test]
fn ed25519_and_sec1_keys_and_certificate_chains_are_served() {
    let dir = TempDir::new("tls-keys");
    let ed = TestCert::self_signed_ed25519(&["ed.test"]);
    let ed_pair = ed.write(dir.path(), "ed");
    let ec = TestCert::self_signed(&["ec.test"]);
    let (ec_crt, ec_key) = ec.write(dir.path(), "ec");
    write_atomically(
        &ec_key,
        pem("EC PRIVATE KEY", &pkcs8_to_sec1(&ec.key_der)).as_bytes(),
    );
    let ca = TestCa::new("forklb chain CA");
    let leaf = ca.issue(&["chain.test"]);
    let (chain_crt, chain_key) = leaf.write(dir.path(), "chain");
    write_atomically(
        &chain_crt,
        format!("{}{}", leaf.cert_pem, ca.cert_pem).as_bytes(),
    );
    let be = Backend::start("b1");
    let lb = Forklb::start(&tls_config(
        1,
        "",
        &[ed_pair, (ec_crt, ec_key), (chain_crt, chain_key)],
        &[&be],
    ));

    for version in [&TLS13, &TLS12] {
        let cfg = client_config_with(&[version], &[b"http/1.1"], None);
        for (sni, want) in [("ed.test", &ed), ("ec.test", &ec), ("chain.test", &leaf)] {
            let mut c = TlsConn::connect(lb.port(), Some(sni), cfg.clone())
                .unwrap_or_else(|e| panic!("{sni} ({:?}): {e}", version.version));
            assert!(c.peer_cert_der() == want.der, "{sni}: wrong certificate");
            assert_eq!(c.get("/k").expect("GET").status, 200, "{sni}");
            if sni == "chain.test" {
                let chain: Vec<Vec<u8>> = c
                    .tls()
                    .peer_certificates()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.to_vec())
                    .collect();
                assert_eq!(
                    chain.len(),
                    2,
                    "the chain in the certificate file is not sent whole"
                );
                assert!(
                    chain[1] == ca.der,
                    "second certificate of the chain is not the CA"
                );
            }
        }
    }
}
