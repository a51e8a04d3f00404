//! HTTP/2 to clients (issue 16, DESIGN §4.1): real clients — curl, nghttp,
//! h2load and the raw-frame Python client of `tests/h2_attack/client.py` —
//! against forklb's TLS listeners (ALPN `h2`, on unless `http2: false`) and
//! `h2c: true` listeners (prior knowledge), proxying to HTTP/1.1 backends.
//! `Upgrade: h2c` is never honoured, on any listener.
//!
//! Needs curl with HTTP2, nghttp2-client and python3-h2 (`make test-deps`).

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::tls::TestCert;
use support::*;

const T: Duration = Duration::from_secs(20);

/// Everything to upstream `web`.
fn to_web() -> Vec<Route> {
    vec![Route::to("web")]
}

fn web(b: &Backend) -> impl FnOnce(ConfigBuilder) -> ConfigBuilder + '_ {
    move |c| c.upstream("web", [Srv::of(b)])
}

// ---------------------------------------------------------------------------
// Negotiation: ALPN on TLS listeners, prior knowledge on h2c listeners

#[test]
fn tls_listener_negotiates_h2_by_default() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    let (out, version) = h.curl_h2_tls("/alpn");
    assert!(out.ok(), "{}\n{}", out.combined(), h.lb.diagnostics());
    assert_eq!(version, "2", "curl --http2 must negotiate h2 by ALPN");
    assert_eq!(out.stdout, "b1");
    let reqs = be.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/alpn");
    // Upstream it is an HTTP/1.1 request.
    assert_eq!(reqs[0].version, "HTTP/1.1");
    assert_eq!(reqs[0].header("x-forwarded-proto"), Some("https"));
}

#[test]
fn http2_false_offers_only_http11() {
    let dir = TempDir::new("h2off");
    let pair = TestCert::self_signed(&["localhost"]).write(dir.path(), "a");
    let be = Backend::start("b1");
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .log_level("info")
            .listener("secure", &["127.0.0.1:$PORT"])
            .listener_opt("http2: false")
            .certificates(&[pair])
            .route(Route::to("web"))
            .upstream("web", [Srv::of(&be)])
            .build(),
    );
    let url = format!("https://127.0.0.1:{}/h1", lb.port());
    let (out, version) = curl_with_version(&["--http2", "-sSk", "--max-time", "10", &url]);
    assert!(out.ok(), "{}", out.combined());
    assert_eq!(version, "1.1", "http2: false must not offer h2");
    assert_eq!(out.stdout, "b1");

    // A client offering h2 and http/1.1 gets http/1.1.
    let both = openssl::s_client(lb.port(), &["-alpn", "h2,http/1.1"]);
    assert!(
        both.output.contains("ALPN protocol: http/1.1"),
        "{}",
        both.output
    );
    // A client offering only h2 is refused in the handshake with the
    // no_application_protocol alert (120), as nginx does (rustls's
    // behaviour, RFC 7301 §3.2).
    let only = openssl::s_client(lb.port(), &["-alpn", "h2"]);
    assert!(
        only.output.contains("no application protocol"),
        "{}",
        only.output
    );
    assert!(
        !only.output.contains("ALPN protocol: h2"),
        "{}",
        only.output
    );
    // A client offering only http/1.0 gets it, as from nginx (it was
    // refused with no_application_protocol).
    let ten = openssl::s_client(lb.port(), &["-alpn", "http/1.0"]);
    assert!(
        ten.output.contains("ALPN protocol: http/1.0"),
        "{}",
        ten.output
    );
    // curl's request and the `GET /healthz` of the s_clients that got
    // http/1.1 and http/1.0; none from the refused one.
    assert_eq!(be.request_count(), 3, "{:?}", be.requests());
}

#[test]
fn h2c_listener_accepts_prior_knowledge() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    let (out, version) = h.curl_h2c("/pk");
    assert!(out.ok(), "{}\n{}", out.combined(), h.lb.diagnostics());
    assert_eq!(version, "2");
    assert_eq!(out.stdout, "b1");
    assert_eq!(be.requests()[0].header("x-forwarded-proto"), Some("http"));
    // HTTP/1.1 still works on an h2c listener.
    let r = http_get(h.h2c_port, "/h1");
    assert_eq!((r.status, r.body_str()), (200, "b1".to_owned()));
}

/// On an h2c listener, a request line that begins as one (`GET /…`) but is
/// malformed is HTTP/1's to answer — a 400 or 505 the client can read, as
/// HAProxy answers on a port that serves both — not HTTP/2 frames; a line
/// that is no request at all (h2spec's "INVALID CONNECTION PREFACE") still
/// gets HTTP/2's GOAWAY (tests/h2spec.rs).
#[test]
fn malformed_http1_request_lines_on_an_h2c_listener_get_http1_answers() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    for (raw, status) in [
        (&b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n"[..], "400"),
        (b"GET /nine\r\n\r\n", "400"),
        (b"GET / http/1.1\r\nHost: h\r\n\r\n", "400"),
        (b"GET /v2 HTTP/2.0\r\nHost: h\r\n\r\n", "505"),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", h.h2c_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} got {text:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert!(be.requests().is_empty());
}

#[test]
fn plain_listener_refuses_the_prior_knowledge_preface() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    let (out, version) = curl_with_version(&[
        "--http2-prior-knowledge",
        "-sS",
        "--max-time",
        "10",
        &h.plain_url("/pk"),
    ]);
    assert!(
        !out.ok() || version != "2",
        "a plain listener without h2c spoke HTTP/2:\n{}",
        out.combined()
    );
    assert_ne!(out.stdout, "b1", "{}", out.combined());
    // The raw preface: an HTTP/1.1 505 (forklb reads `PRI * HTTP/2.0` as a
    // request line of another major version) and a close, or just a close.
    let mut s = TcpStream::connect(("127.0.0.1", h.plain_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 505 ") || text.starts_with("HTTP/1.1 400 "),
        "{text:?}"
    );
    assert_eq!(be.request_count(), 0, "{:?}", be.requests());
}

/// `curl --http2 http://` asks `Upgrade: h2c` (with `HTTP2-Settings`): no
/// listener switches (no 101), the request is served as HTTP/1.1, and the
/// upgrade headers do not reach the backend (h2c smuggling).
#[test]
fn upgrade_h2c_is_never_honoured() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    for url in [h.plain_url("/up"), h.h2c_url("/up")] {
        let (out, version) = curl_with_version(&["--http2", "-sv", "--max-time", "10", &url]);
        assert!(out.ok(), "{url}: {}", out.combined());
        assert!(
            out.stderr.contains("> Upgrade: h2c"),
            "curl did not ask for the upgrade: {}",
            out.combined()
        );
        assert!(
            !out.stderr.contains("< HTTP/1.1 101"),
            "{url}: {}",
            out.combined()
        );
        assert_eq!(version, "1.1", "{url}: {}", out.combined());
        assert_eq!(out.stdout, "b1");
    }
    let reqs = be.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.version, "HTTP/1.1");
        assert!(
            !r.has_header("upgrade") && !r.has_header("http2-settings"),
            "{:?}",
            r.headers
        );
    }
}

// ---------------------------------------------------------------------------
// Multiplexing

#[test]
fn nghttp_sends_several_requests_on_one_connection() {
    let be = Backend::start_with(
        "b1",
        BackendOpts {
            path_body: true,
            ..Default::default()
        },
    );
    let h = H2Lb::start(&to_web(), web(&be));
    for base in [h.tls_url(""), h.h2c_url("")] {
        let urls: Vec<String> = (0..5).map(|i| format!("{base}/n/{i}")).collect();
        let mut args = vec!["-nv", "-t", "10"];
        args.extend(urls.iter().map(String::as_str));
        let out = run_tool("nghttp", &args, T);
        assert!(out.ok(), "{}\n{}", out.combined(), h.lb.diagnostics());
        let statuses = out
            .stdout
            .lines()
            .filter(|l| l.contains(":status: 200"))
            .count();
        assert_eq!(statuses, 5, "{}", out.stdout);
        // One connection: the server's SETTINGS came once.
        let settings = out
            .stdout
            .lines()
            .filter(|l| l.contains("recv SETTINGS frame") && l.contains("flags=0x00"))
            .count();
        assert_eq!(settings, 1, "{}", out.stdout);
    }
    assert_eq!(be.request_count(), 10);
}

#[test]
fn h2load_requests_all_succeed() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    let out = run_tool(
        "h2load",
        &["-n", "2000", "-c", "4", "-m", "50", &h.tls_url("/load")],
        Duration::from_secs(60),
    );
    assert!(
        out.stdout.contains("Application protocol: h2"),
        "{}",
        out.combined()
    );
    assert_eq!(
        h2load_counts(&out),
        (2000, 2000, 0, 0),
        "{}",
        out.combined()
    );
    let out = run_tool(
        "h2load",
        &["-n", "500", "-c", "2", "-m", "10", &h.h2c_url("/load")],
        Duration::from_secs(60),
    );
    assert!(
        out.stdout.contains("Application protocol: h2c"),
        "{}",
        out.combined()
    );
    assert_eq!(h2load_counts(&out), (500, 500, 0, 0), "{}", out.combined());
    assert_eq!(be.request_count(), 2500);
}

/// A stream waiting for a slow upstream does not hold up another stream of
/// the same connection.
#[test]
fn a_slow_stream_does_not_block_a_fast_one() {
    let be = Backend::start_with(
        "b1",
        BackendOpts {
            path_delays: vec![("/slow/".to_owned(), Duration::from_secs(2))],
            ..Default::default()
        },
    );
    let h = H2Lb::start(&to_web(), web(&be));
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("client.py", mode, h.port(mode), &["parallel"], T);
        assert_eq!(v.at("a_status"), "200", "{mode:?}: {}", v.text);
        assert_eq!(v.at("b_status"), "200", "{mode:?}: {}", v.text);
        let (a, b) = (v.secs("a_end").unwrap(), v.secs("b_end").unwrap());
        assert!(
            a >= 1.9,
            "{mode:?}: the slow stream ended early: {}",
            v.text
        );
        assert!(
            b < 1.0 && b + 1.0 < a,
            "{mode:?}: the fast stream waited for the slow one: {}",
            v.text
        );
    }
}

// ---------------------------------------------------------------------------
// Bodies

#[test]
fn large_downloads_and_uploads_keep_their_bytes() {
    const DOWN: usize = 8 << 20;
    const UP: usize = 6 << 20;
    let down = Backend::start_with(
        "down",
        BackendOpts {
            stream_body: Some(DOWN),
            ..Default::default()
        },
    );
    let echo = Backend::start_with(
        "echo",
        BackendOpts {
            echo: true,
            ..Default::default()
        },
    );
    let routes = [Route::path("/down/").upstream("down"), Route::to("echo")];
    let h = H2Lb::start(&routes, |c| {
        c.upstream("down", [Srv::of(&down)])
            .upstream("echo", [Srv::of(&echo)])
    });
    let dir = TempDir::new("h2bodies");
    let expected = sha256_hex(&pattern(DOWN));
    let upload = pseudo_random_bytes(UP, 16);
    let up_file = dir.join("up.bin");
    fs::write(&up_file, &upload).unwrap();
    let up_sha = sha256_hex(&upload);
    for (i, (flag, base)) in [
        ("--http2", h.tls_url("")),
        ("--http2-prior-knowledge", h.h2c_url("")),
    ]
    .into_iter()
    .enumerate()
    {
        let url_of = |p: &str| format!("{base}{p}");
        let got = dir.join(&format!("down{i}"));
        let (out, version) = curl_with_version(&[
            flag,
            "-sSk",
            "--max-time",
            "30",
            "-o",
            got.to_str().unwrap(),
            &url_of("/down/big"),
        ]);
        assert!(out.ok(), "{}", out.combined());
        assert_eq!(version, "2");
        let bytes = fs::read(&got).unwrap();
        assert_eq!(bytes.len(), DOWN);
        assert_eq!(sha256_hex(&bytes), expected, "download {flag}");

        let back = dir.join(&format!("back{i}"));
        let (out, version) = curl_with_version(&[
            flag,
            "-sSk",
            "--max-time",
            "30",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", up_file.display()),
            "-o",
            back.to_str().unwrap(),
            &url_of("/up"),
        ]);
        assert!(out.ok(), "{}", out.combined());
        assert_eq!(version, "2");
        let bytes = fs::read(&back).unwrap();
        assert_eq!(bytes.len(), UP, "upload {flag}: echoed length");
        assert_eq!(sha256_hex(&bytes), up_sha, "upload {flag}: echoed bytes");
    }
    let reqs = echo.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(sha256_hex(&r.body), up_sha, "what the backend received");
    }
}

// ---------------------------------------------------------------------------
// Logs and counters

#[test]
fn access_log_names_the_protocol_http_2_0() {
    let be = Backend::start("b1");
    let dir = TempDir::new("h2log");
    let log = dir.join("access.log");
    let h = H2Lb::start(&to_web(), |c| web(&be)(c).access_log(&log, "combined"));
    let (out, _) = h.curl_h2_tls("/logged?x=1");
    assert!(out.ok(), "{}", out.combined());
    let (out, _) = h.curl_h2c("/logged-h2c");
    assert!(out.ok(), "{}", out.combined());
    let read = || fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(3), || read().lines().count() >= 2),
        "{:?}",
        read()
    );
    let text = read();
    assert!(
        text.contains("\"GET /logged?x=1 HTTP/2.0\" 200 2 "),
        "{text}"
    );
    assert!(
        text.contains("\"GET /logged-h2c HTTP/2.0\" 200 2 "),
        "{text}"
    );
}

/// Sum of the `forklb_server_requests_total` series of upstream `web`.
fn web_requests(port: u16) -> f64 {
    let r = http_get(port, "/metrics");
    assert_eq!(r.status, 200);
    r.body_str()
        .lines()
        .filter(|l| {
            l.starts_with("forklb_server_requests_total{") && l.contains("upstream=\"web\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_count_h2_requests() {
    let be = Backend::start("b1");
    let routes = [Route::path("/metrics").metrics(), Route::to("web")];
    let h = H2Lb::start(&routes, web(&be));
    let out = run_tool(
        "h2load",
        &["-n", "200", "-c", "2", "-m", "10", &h.tls_url("/m")],
        T,
    );
    assert_eq!(h2load_counts(&out).1, 200, "{}", out.combined());
    let out = run_tool(
        "h2load",
        &["-n", "100", "-c", "1", "-m", "10", &h.h2c_url("/m")],
        T,
    );
    assert_eq!(h2load_counts(&out).1, 100, "{}", out.combined());
    assert_eq!(web_requests(h.plain_port), 300.0);
    assert_eq!(be.request_count(), 300);
}

// ---------------------------------------------------------------------------
// Per-stream upstream behaviour

/// A dead server beside a live one: every stream is retried on the live
/// one (connect failures), then passive detection takes the dead one out.
#[test]
fn retries_and_passive_health_work_per_stream() {
    let live = Backend::start("live");
    let h = H2Lb::start(&to_web(), |c| {
        c.upstream(
            "web",
            [
                Srv::new("dead", refused_addr()),
                Srv::new("live", live.addr()),
            ],
        )
        .upstream_opt("retries: 1")
        .upstream_opt("max_fails: 2")
    });
    let out = run_tool(
        "h2load",
        &["-n", "100", "-c", "1", "-m", "20", &h.tls_url("/r")],
        T,
    );
    assert_eq!(h2load_counts(&out), (100, 100, 0, 0), "{}", out.combined());
    let out = run_tool(
        "h2load",
        &["-n", "100", "-c", "2", "-m", "20", &h.h2c_url("/r")],
        T,
    );
    assert_eq!(h2load_counts(&out), (100, 100, 0, 0), "{}", out.combined());
    assert_eq!(live.request_count(), 200);
}

/// The requests a backend got when the Python client's `case` ran over TLS
/// and over h2c (two, each answered 200).
fn backend_requests_of(case: &str) -> Vec<Request> {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("client.py", mode, h.port(mode), &[case], T);
        assert_eq!(
            v.at("status"),
            "200",
            "{case} {mode:?}: {}\nforklb's log:\n{}",
            v.text,
            h.lb.error_log_contents()
        );
    }
    let reqs = be.requests();
    assert_eq!(reqs.len(), 2, "{case}");
    reqs
}

/// HTTP/2 to HTTP/1.1: `Host` from `:authority`, cookie crumbs joined into
/// one `Cookie` (RFC 9113 §8.2.3), nothing of the pseudo-headers.
#[test]
fn request_headers_are_mapped_to_http11() {
    for r in &backend_requests_of("headers") {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/headers"));
        assert_eq!(
            r.header_all("host"),
            vec!["mapped.test:8443"],
            "{:?}",
            r.headers
        );
        assert_eq!(r.header_all("cookie"), vec!["a=1; b=2"], "{:?}", r.headers);
        assert_eq!(r.header("user-agent"), Some("h2test"));
        assert!(
            r.headers.iter().all(|(k, _)| !k.starts_with(':')),
            "{:?}",
            r.headers
        );
    }
}

/// An http(s) request names its host once (RFC 9113 §8.3.1): a stream
/// with no `:authority` and no `host`, with two `host` fields, or with an
/// empty `:authority` is malformed and reset, never forwarded with a Host
/// made up for it or one the upstream may read apart from forklb's
/// routing; one `host` field alone is the authority.
#[test]
fn requests_without_one_authority_are_reset() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("client.py", mode, h.port(mode), &["authority"], T);
        for s in ["s1", "s3", "s5"] {
            assert_eq!(v.at(s), "PROTOCOL_ERROR", "{mode:?} {s}: {}", v.text);
        }
        assert_eq!(v.at("s7"), "200", "{mode:?}: {}", v.text);
    }
    let reqs = be.requests();
    assert_eq!(reqs.len(), 2, "{:?}", be.heads());
    for r in &reqs {
        assert_eq!(r.header_all("host"), vec!["named.test"], "{:?}", r.headers);
    }
}

/// The same with more fields than fit the session's stack array (32), a
/// `host` field beside `:authority` naming the same host (dropped:
/// `:authority` is the Host, RFC 9113 §8.3.1) and three crumbs apart: every
/// field arrives, in order, once.
#[test]
fn many_request_headers_are_mapped_to_http11() {
    for r in &backend_requests_of("many_headers") {
        assert_eq!(
            r.header_all("host"),
            vec!["mapped.test:8443"],
            "{:?}",
            r.headers
        );
        assert_eq!(
            r.header_all("cookie"),
            vec!["a=1; b=2; c=3"],
            "{:?}",
            r.headers
        );
        let numbered: Vec<String> = r
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-f-"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let want: Vec<String> = (0..60).map(|i| format!("x-f-{i}=v{i}")).collect();
        assert_eq!(numbered, want);
    }
}

/// A response head whose field names take more than the 1 KiB the
/// conversion lowercases them into on the stack: every field reaches the
/// HTTP/2 client, named in lower case (RFC 9113 §8.2.2), in order, and the
/// connection's own fields do not.
#[test]
fn a_response_head_with_many_long_names_reaches_the_h2_client() {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n",
    );
    for i in 0..60 {
        head.push_str(&format!("X-A-Rather-Long-Field-Name-Number-{i}: v{i}\r\n"));
    }
    head.push_str("\r\nok");
    let be = scripted(
        "b1",
        vec![Script::new("/long", head.as_bytes(), Then::KeepAlive)],
    );
    let h = H2Lb::start(&to_web(), web(&be));
    let url = h.tls_url("/long");
    let (out, version) =
        curl_with_version(&["--http2", "-sSk", "-D", "-", "--max-time", "10", &url]);
    assert!(out.ok(), "{}", out.combined());
    assert_eq!(version, "2");
    let got: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("x-a-rather-long-field-name-number-"))
        .collect();
    let want: Vec<String> = (0..60)
        .map(|i| format!("x-a-rather-long-field-name-number-{i}: v{i}"))
        .collect();
    assert_eq!(got, want, "{}", out.stdout);
    assert!(
        !out.stdout.to_ascii_lowercase().contains("x-hop"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("ok"), "{}", out.stdout);
}

const TRAILERS: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n";

/// Trailers of a chunked HTTP/1.1 response reach the HTTP/2 client as a
/// trailing HEADERS frame.
#[test]
fn response_trailers_reach_the_h2_client() {
    let be = scripted(
        "b1",
        vec![Script::new("/trailers", TRAILERS, Then::KeepAlive)],
    );
    let h = H2Lb::start(&to_web(), web(&be));
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("client.py", mode, h.port(mode), &["trailers"], T);
        assert_eq!(v.at("status"), "200", "{mode:?}: {}", v.text);
        assert_eq!(v.at("body"), "hello", "{mode:?}: {}", v.text);
        assert_eq!(v.at("blocks"), "2", "{mode:?}: no trailers: {}", v.text);
        assert_eq!(v.at("trailer_x-checksum"), "abc", "{mode:?}: {}", v.text);
    }
}

const EARLY_HINTS: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// An interim response of the HTTP/1.1 upstream (103 Early Hints) reaches
/// the HTTP/2 client as a HEADERS frame without END_STREAM before the final
/// response's (RFC 9113 §8.1), so it can preload before the page arrives.
#[test]
fn early_hints_reach_the_h2_client() {
    let be = scripted(
        "b1",
        vec![Script::new("/hints", EARLY_HINTS, Then::KeepAlive)],
    );
    let h = H2Lb::start(&to_web(), web(&be));
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("client.py", mode, h.port(mode), &["hints"], T);
        v.assert_early_hints("</style.css>; rel=preload", "hello", &format!("{mode:?}"));
    }
}

/// Trailers a client sends after its body reach the upstream: the body goes
/// chunked (no Content-Length was given) and the trailer fields follow the
/// last chunk. A choice of ours (RFC 9110 §6.5 lets a proxy drop them):
/// gRPC-style clients and checksums use them.
#[test]
fn request_trailers_reach_a_chunked_upstream() {
    let be = Backend::start_with(
        "echo",
        BackendOpts {
            echo: true,
            ..Default::default()
        },
    );
    let h = H2Lb::start(&to_web(), web(&be));
    let v = python("client.py", H2Mode::Tls, h.tls_port(), &["req_trailers"], T);
    assert_eq!(v.at("status"), "200", "{}", v.text);
    assert_eq!(v.at("body"), "hello", "{}", v.text);
    let reqs = be.requests();
    assert_eq!(reqs.len(), 1);
    let raw = String::from_utf8_lossy(&reqs[0].raw_body).to_ascii_lowercase();
    assert_eq!(reqs[0].header("transfer-encoding"), Some("chunked"));
    assert!(raw.contains("\r\nx-req-trailer: yes\r\n"), "{raw:?}");
}

/// Several 1 MiB downloads at once on one connection keep their pooled
/// upstream connections: a pooled connection that gets a readiness event
/// left over from its last response (queued in the same round of events in
/// which the response completed) is kept, not closed — at most one upstream
/// connection per stream in flight per worker, none opened per request.
#[test]
fn concurrent_large_downloads_reuse_upstream_connections() {
    let body = vec![b'x'; 1 << 20];
    let be = Backend::start_with(
        "b1",
        BackendOpts {
            body: Some(body),
            ..Default::default()
        },
    );
    let h = H2Lb::start(&to_web(), web(&be));
    let out = run_tool(
        "h2load",
        &["-n", "60", "-c", "1", "-m", "4", &h.tls_url("/big")],
        Duration::from_secs(60),
    );
    assert_eq!(h2load_counts(&out), (60, 60, 0, 0), "{}", out.combined());
    assert!(
        out.stdout.contains("1048576") || out.stdout.contains("60.00MB"),
        "{}",
        out.combined()
    );
    assert_eq!(be.request_count(), 60);
    // One worker (H2Lb's), four streams at a time: four connections.
    assert!(
        be.connections() <= 4,
        "{} upstream connections for 60 requests, 4 at a time",
        be.connections()
    );
}

/// A client's GOAWAY ends the connection once its streams are served, and
/// forklb says which it processed with its own GOAWAY before it closes, as
/// RFC 9113 §6.8 advises ("SHOULD always send a GOAWAY frame before closing
/// a connection"); the stream still in flight is served to the end.
#[test]
fn a_client_goaway_is_answered_with_one_before_the_close() {
    let be = Backend::start_with(
        "b1",
        BackendOpts {
            path_delays: vec![("/slow/".to_owned(), Duration::from_millis(800))],
            ..Default::default()
        },
    );
    let h = H2Lb::start(&to_web(), web(&be));
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("client.py", mode, h.port(mode), &["client_goaway"], T);
        assert_eq!(v.at("a_status"), "200", "{mode:?}: {}", v.text);
        assert_eq!(v.at("goaways"), "3", "{mode:?}: {}", v.text);
        assert_eq!(v.at("goaway_before_close"), "yes", "{mode:?}: {}", v.text);
        assert_eq!(v.at("closed"), "yes", "{mode:?}: {}", v.text);
    }
}

/// Full-size DATA frames (16,384 bytes and their header) fit the worker's
/// buffers whatever `max_header_bytes` is: with nginx's 8k, a curl upload
/// of 16 KiB or more stalled its whole connection until a timeout.
#[test]
fn full_size_frames_pass_with_a_small_header_limit() {
    let be = Backend::start_with(
        "b1",
        BackendOpts {
            echo: true,
            ..Default::default()
        },
    );
    let h = H2Lb::start(&to_web(), |c| {
        web(&be)(c).set("limits", "{max_header_bytes: 8k}")
    });
    let body = pseudo_random_bytes(200 * 1024, 5);
    let (out, echoed) = curl_h2_post(&h.tls_url("/echo"), &body, 10, &["-w", "%{http_code}"]);
    assert!(out.ok(), "{}\n{}", out.combined(), h.lb.diagnostics());
    assert_eq!(out.stdout, "200", "{}", out.combined());
    assert_eq!(echoed, body);
}

/// `Max-Forwards` holds for HTTP/2 clients as for HTTP/1.1 ones (RFC 9110
/// §7.6.2): at 0 forklb is the final recipient (OPTIONS answered with
/// Allow, TRACE refused — never echoed by the server), above it goes up one
/// less, a bad value is a 400.
#[test]
fn max_forwards_holds_for_h2_clients() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    let url = h.h2c_url("/mf");
    let ask = |method: &str, value: &str| {
        let header = format!("Max-Forwards: {value}");
        let (out, version) = curl_with_version(&[
            "--http2-prior-knowledge",
            "-sS",
            "-i",
            "--max-time",
            "10",
            "-X",
            method,
            "-H",
            &header,
            &url,
        ]);
        assert!(out.ok(), "{}", out.combined());
        assert_eq!(version, "2");
        out.stdout.to_ascii_lowercase()
    };
    let trace = ask("TRACE", "0");
    assert!(trace.starts_with("http/2 405"), "{trace}");
    assert!(trace.contains("allow: get, head"), "{trace}");
    let options = ask("OPTIONS", "0");
    assert!(options.starts_with("http/2 200"), "{options}");
    assert!(options.contains("allow: get, head"), "{options}");
    assert!(be.requests().is_empty(), "{:?}", be.requests());
    assert!(ask("OPTIONS", "abc").starts_with("http/2 400"));
    assert!(ask("OPTIONS", "3").starts_with("http/2 200"));
    let seen = be.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("max-forwards"), Some("2"));
}

/// A `host` field naming another host than `:authority` makes the request
/// malformed (RFC 9113 §8.3.1 SHOULD): 400, as nginx answers, and nothing
/// reaches the server — routing and the upstream never disagree on it.
#[test]
fn a_host_field_naming_another_host_than_the_authority_is_refused() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    for mode in [H2Mode::Tls, H2Mode::H2c] {
        let v = python("client.py", mode, h.port(mode), &["other_host"], T);
        assert_eq!(v.at("status"), "400", "{mode:?}: {}", v.text);
    }
    assert!(be.requests().is_empty(), "{:?}", be.requests());
}

/// The limits of a request head hold whatever the client's protocol: an
/// HTTP/2 request line over `max_header_bytes` is a 414 and a head over it
/// or with more than 100 fields a 431, as the same request over HTTP/1.1
/// (it would go upstream as such a head); nothing reaches the server.
#[test]
fn http2_requests_keep_the_head_limits_of_http11() {
    let be = Backend::start("b1");
    let h = H2Lb::start(&to_web(), web(&be));
    let status = |extra: &[String], path: &str| {
        let url = h.h2c_url(path);
        let mut args: Vec<&str> = vec![
            "--http2-prior-knowledge",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ];
        for e in extra {
            args.extend(["-H", e.as_str()]);
        }
        args.push(&url);
        let out = curl(&args);
        assert!(out.ok(), "{}", out.combined());
        out.stdout
    };
    let long_path = format!("/{}", "a".repeat(20_000));
    assert_eq!(status(&[], &long_path), "414");
    let big: Vec<String> = (0..3)
        .map(|i| format!("x-big-{i}: {}", "v".repeat(6000)))
        .collect();
    assert_eq!(status(&big, "/big"), "431");
    let many: Vec<String> = (0..120).map(|i| format!("x-f-{i}: v")).collect();
    assert_eq!(status(&many, "/many"), "431");
    assert!(be.requests().is_empty(), "{:?}", be.requests());
    let fine: Vec<String> = (0..90).map(|i| format!("x-f-{i}: v")).collect();
    assert_eq!(status(&fine, "/fine"), "200");
}
