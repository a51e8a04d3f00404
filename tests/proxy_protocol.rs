//! The PROXY protocol in (listener `proxy_protocol: true`) and out
//! (upstream `send_proxy: v1|v2`), and routes' `allow` / `deny`: real bytes
//! from loopback source addresses (127.0.0.2, ... bound before connect),
//! a real HAProxy 2.6 sending `send-proxy` / `send-proxy-v2` in front of
//! forklb, and a real nginx with `listen ... proxy_protocol` behind it.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::tls::TestCert;
use support::*;

/// A TCP connection to 127.0.0.1:`port` from `src` (any 127/8 address).
fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0))).expect("bind source");
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )
    .expect("connect");
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `bytes`, then reads until the peer closes (or 10 s pass).
fn exchange(mut s: TcpStream, bytes: &[u8]) -> String {
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

fn v2_header(src: SocketAddr, dst: SocketAddr, local: bool, tlvs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    let mut body = Vec::new();
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            h.push(0x21);
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("one family"),
    }
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn proxy_header_names_the_client_everywhere() {
    let b = Backend::start("b1");
    let dir = TempDir::new("pp-in");
    let log = dir.join("access.log");
    let lb = Forklb::start(&format!(
        "workers: 2\ntimeouts: {{client_header: 1s}}\n\
         access_log: {{path: \"{}\"}}\n\
         listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    proxy_protocol: true\n    routes:\n\
         \x20     - {{path: /, upstream: web}}\n\
         upstreams:\n  web:\n    servers: [{{addr: \"{}\"}}]\n",
        log.display(),
        b.addr()
    ));
    let port = lb.port();
    let dst: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // v1, the request in the same segment.
    let v1 = [
        format!("PROXY TCP4 203.0.113.7 127.0.0.1 5555 {port}\r\n").as_bytes(),
        GET,
    ]
    .concat();
    let r = exchange(connect_from(Ipv4Addr::LOCALHOST, port), &v1);
    assert_eq!(status_of(&r), 200, "{r}\n{}", lb.diagnostics());
    // v2 over IPv6 with TLVs (ALPN, NOOP), the header in pieces.
    let v6: SocketAddr = "[2001:db8::9]:4444".parse().unwrap();
    let h = v2_header(
        v6,
        "[::1]:443".parse().unwrap(),
        false,
        &[1, 0, 2, b'h', b'2', 4, 0, 0],
    );
    let mut s = connect_from(Ipv4Addr::LOCALHOST, port);
    for part in h.chunks(7) {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = exchange(s, GET);
    assert_eq!(status_of(&r), 200, "{r}");
    // v2 LOCAL (a health check of the sender): the real peer stands.
    let local = v2_header(dst, dst, true, &[]);
    let r = exchange(
        connect_from(Ipv4Addr::new(127, 0, 0, 9), port),
        &[&local[..], GET].concat(),
    );
    assert_eq!(status_of(&r), 200, "{r}");
    // v1 UNKNOWN: the real peer too.
    let r = exchange(
        connect_from(Ipv4Addr::new(127, 0, 0, 8), port),
        &[b"PROXY UNKNOWN\r\n".as_slice(), GET].concat(),
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let xff: Vec<String> = b
        .requests()
        .iter()
        .map(|q| q.header("x-forwarded-for").unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        xff,
        ["203.0.113.7", "2001:db8::9", "127.0.0.9", "127.0.0.8"]
    );
    assert!(
        wait_until(Duration::from_secs(5), || read(&log).lines().count() >= 4),
        "{}",
        read(&log)
    );
    // Each worker flushes its own lines: sorted, not in request order.
    let text = read(&log);
    let mut first: Vec<&str> = text
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    first.sort_unstable();
    assert_eq!(
        first,
        ["127.0.0.8", "127.0.0.9", "2001:db8::9", "203.0.113.7"]
    );

    // No header, a malformed one, a truncated one: closed, nothing answered,
    // nothing proxied.
    for bad in [
        GET.to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(),
        b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120], b"\r\n"].concat(),
        {
            let mut h = v2_header(v6, v6, false, &[]);
            h[12] = 0x13; // v1 in the binary format, command 3
            h
        },
        {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
            h.extend_from_slice(&[0u8; 64]);
            h
        },
    ] {
        let r = exchange(connect_from(Ipv4Addr::LOCALHOST, port), &bad);
        assert_eq!(r, "", "{:?}", String::from_utf8_lossy(&bad));
    }
    // Truncated, then silence: closed at client_header (1 s), well within 5.
    let started = Instant::now();
    let r = exchange(
        connect_from(Ipv4Addr::LOCALHOST, port),
        b"PROXY TCP4 1.2.3.4 ",
    );
    assert_eq!(r, "");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b.request_count(), 4);
}

/// What an upstream that reads a PROXY header saw: one entry per
/// connection, the header's line (v1) or source address (v2).
struct ProxyOrigin {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ProxyOrigin {
    /// Answers every request on a connection with 200 and keep-alive, and
    /// records the PROXY header each connection began with.
    fn start() -> ProxyOrigin {
        let l = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                let seen = Arc::clone(&s2);
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut header_done = false;
                    loop {
                        let Ok(n) = c.read(&mut chunk) else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if !header_done {
                            let text = if buf.starts_with(b"PROXY ") {
                                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                                    continue;
                                };
                                let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                                buf.drain(..end + 2);
                                line
                            } else if buf.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
                                if buf.len() < 16 {
                                    continue;
                                }
                                let len = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
                                if buf.len() < len {
                                    continue;
                                }
                                let src = if buf[13] == 0x11 {
                                    format!("v2 {}.{}.{}.{}", buf[16], buf[17], buf[18], buf[19])
                                } else {
                                    format!("v2 family {:#x}", buf[13])
                                };
                                buf.drain(..len);
                                src
                            } else {
                                "none".to_owned()
                            };
                            seen.lock().unwrap().push(text);
                            header_done = true;
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let _ = c.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                            );
                        }
                    }
                });
            }
        });
        ProxyOrigin { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn send_proxy_opens_a_private_connection_per_client() {
    let v1 = ProxyOrigin::start();
    let v2 = ProxyOrigin::start();
    let lb = Forklb::start(&format!(
        "workers: 2\n\
         listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    routes:\n\
         \x20     - {{path: /v2/, upstream: two}}\n\
         \x20     - {{path: /, upstream: one}}\n\
         upstreams:\n  one:\n    send_proxy: v1\n    servers: [{{addr: \"127.0.0.1:{}\"}}]\n\
         \x20 two:\n    send_proxy: v2\n    servers: [{{addr: \"127.0.0.1:{}\"}}]\n",
        v1.port, v2.port
    ));
    let port = lb.port();
    // Two requests on one client connection, then a request from another
    // client address: each upstream connection names its own client, and
    // none is reused (a pooled one would carry the first client's header).
    for (src, path) in [
        (Ipv4Addr::new(127, 0, 0, 2), "/a"),
        (Ipv4Addr::new(127, 0, 0, 3), "/v2/b"),
    ] {
        let mut s = connect_from(src, port);
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        for _ in 0..2 {
            s.write_all(req.as_bytes()).unwrap();
            // The origin's answer: a head, then `ok` (Content-Length: 2).
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\nok") {
                let n = s.read(&mut chunk).expect("response");
                assert!(
                    n > 0,
                    "closed: {:?}\n{}",
                    String::from_utf8_lossy(&got),
                    lb.diagnostics()
                );
                got.extend_from_slice(&chunk[..n]);
            }
            assert!(
                got.starts_with(b"HTTP/1.1 200 "),
                "{:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    let r = exchange(connect_from(Ipv4Addr::new(127, 0, 0, 4), port), GET);
    assert_eq!(status_of(&r), 200, "{r}");
    let one = v1.seen();
    assert_eq!(one.len(), 3, "{one:?}");
    assert!(
        one[0].starts_with("PROXY TCP4 127.0.0.2 127.0.0.1 "),
        "{one:?}"
    );
    assert!(one[0].ends_with(&format!(" {port}")), "{one:?}");
    assert_eq!(
        one[0][..30.min(one[0].len())],
        one[1][..30.min(one[1].len())]
    );
    assert!(
        one[2].starts_with("PROXY TCP4 127.0.0.4 127.0.0.1 "),
        "{one:?}"
    );
    assert_eq!(v2.seen(), ["v2 127.0.0.3", "v2 127.0.0.3"]);
}

#[test]
fn allow_and_deny_by_source_and_by_proxy_header() {
    let b = Backend::start("b1");
    let pp_port = free_port();
    let lb = Forklb::start(&format!(
        "workers: 2\n\
         listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    h2c: true\n    routes:\n{routes}\
         \x20 - name: pp\n    bind: [\"127.0.0.1:{pp_port}\"]\n    proxy_protocol: true\n    routes:\n{routes}\
         upstreams:\n  web:\n    servers: [{{addr: \"{}\"}}]\n",
        b.addr(),
        routes = "      - {path: /allow/, upstream: web, allow: [\"127.0.0.2\", \"2001:db8::/32\"]}\n\
                  \x20     - {path: /deny/, upstream: web, deny: [\"127.0.0.3/32\", \"::1\"]}\n\
                  \x20     - {path: /both/, upstream: web, allow: [127.0.0.5], deny: [127.0.0.0/29]}\n\
                  \x20     - {path: /, return: {status: 200, body: open}}\n",
    ));
    let port = lb.port();
    let get = |src: [u8; 4], path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        status_of(&exchange(connect_from(src.into(), port), req.as_bytes()))
    };
    let cases: &[([u8; 4], &str, u16)] = &[
        ([127, 0, 0, 2], "/allow/x", 200),
        ([127, 0, 0, 1], "/allow/x", 403),
        ([127, 0, 0, 3], "/deny/x", 403),
        ([127, 0, 0, 2], "/deny/x", 200),
        ([127, 0, 0, 5], "/both/x", 200),
        ([127, 0, 0, 6], "/both/x", 403),
        ([127, 0, 0, 9], "/both/x", 200),
        ([127, 0, 0, 1], "/other", 200),
    ];
    for &(src, path, want) in cases {
        assert_eq!(get(src, path), want, "{src:?} {path}\n{}", lb.diagnostics());
    }
    // Through PROXY headers: the address they name decides.
    let via = |hdr: &str, path: &str| {
        let req = format!("{hdr}GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        status_of(&exchange(
            connect_from(Ipv4Addr::LOCALHOST, pp_port),
            req.as_bytes(),
        ))
    };
    let h = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 1000 {pp_port}\r\n");
    let h6 = |src: &str| format!("PROXY TCP6 {src} ::1 1000 {pp_port}\r\n");
    assert_eq!(via(&h("127.0.0.2"), "/allow/"), 200);
    assert_eq!(via(&h("10.1.2.3"), "/allow/"), 403);
    assert_eq!(via(&h6("2001:db8:1::5"), "/allow/"), 200);
    assert_eq!(via(&h6("::1"), "/deny/"), 403);
    assert_eq!(via(&h6("::2"), "/deny/"), 200);
    // HTTP/2 (h2c prior knowledge) from a refused address: a 403 stream.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .args(["--http2-prior-knowledge", "--interface", "127.0.0.3"])
        .arg(format!("http://127.0.0.1:{port}/deny/h2"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403 2");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .args(["--http2-prior-knowledge", "--interface", "127.0.0.2"])
        .arg(format!("http://127.0.0.1:{port}/deny/h2"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2");
    let paths: Vec<String> = b.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(b.request_count(), 8, "{paths:?}");
}

#[test]
fn config_check_names_the_bad_entry() {
    for (extra, want) in [
        ("allow: [\"10.0.0.1/8\"]", "routes[0].allow[0]"),
        ("deny: [\"127.0.0.1\", \"nonsense\"]", "routes[0].deny[1]"),
        ("allow: [\"::/129\"]", "the prefix length must be 0 to 128"),
    ] {
        let yaml = format!(
            "listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    routes:\n\
             \x20     - {{path: /, return: {{status: 200}}, {extra}}}\n"
        );
        let err = Forklb::try_start(&yaml).err().unwrap_or_default();
        assert!(err.contains(want), "{extra}: {err}");
    }
    let yaml =
        "listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    routes: [{upstream: g}]\n\
                upstreams:\n  g:\n    send_proxy: v3\n    servers: [{addr: \"127.0.0.1:1\"}]\n";
    let err = Forklb::try_start(yaml).err().unwrap_or_default();
    assert!(err.contains("upstreams.g.send_proxy"), "{err}");
}

/// HAProxy 2.6 in front: `send-proxy` (v1) and `send-proxy-v2` to a plain
/// listener, and `send-proxy-v2` then TLS with ALPN `h2` to a TLS listener
/// (the header comes before the handshake; the client's address holds in
/// the HTTP/2 session).
#[test]
fn haproxy_send_proxy_in_front_of_forklb() {
    let b = Backend::start("b1");
    let dir = TempDir::new("pp-haproxy");
    let log = dir.join("access.log");
    let (cert, key) = TestCert::self_signed(&["localhost"]).write(dir.path(), "lb");
    let tls_port = free_port();
    let lb = Forklb::start(&format!(
        "workers: 2\naccess_log: {{path: \"{}\"}}\n\
         listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    proxy_protocol: true\n    routes:\n\
         \x20     - {{path: /, upstream: web}}\n\
         \x20 - name: tls\n    bind: [\"127.0.0.1:{tls_port}\"]\n    proxy_protocol: true\n\
         \x20   tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}\n    routes:\n\
         \x20     - {{path: /, upstream: web}}\n\
         upstreams:\n  web:\n    servers: [{{addr: \"{}\"}}]\n",
        log.display(),
        cert.display(),
        key.display(),
        b.addr()
    ));
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend f1\n    bind 127.0.0.1:{p1}\n    default_backend v1\n\
         frontend f2\n    bind 127.0.0.1:{p2}\n    default_backend v2\n\
         frontend f3\n    bind 127.0.0.1:{p3}\n    default_backend v3\n\
         backend v1\n    server lb 127.0.0.1:{port} send-proxy check inter 300ms\n\
         backend v2\n    server lb 127.0.0.1:{port} send-proxy-v2 check inter 300ms check-send-proxy\n\
         backend v3\n    server lb 127.0.0.1:{tls_port} send-proxy-v2 ssl verify none alpn h2\n",
        port = lb.port()
    );
    let _hap = HaproxyProcess::start(dir.path(), &cfg);
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            p2
        ))
        .is_ok()),
        "haproxy did not start"
    );
    for (src, port) in [
        ([127, 0, 0, 6], p1),
        ([127, 0, 0, 7], p2),
        ([127, 0, 0, 8], p3),
    ] {
        let mut ok = false;
        // HAProxy may still be checking the server at its start.
        wait_until(Duration::from_secs(10), || {
            let r = exchange(connect_from(src.into(), port), GET);
            ok = status_of(&r) == 200;
            ok
        });
        assert!(ok, "{}", lb.diagnostics());
    }
    let xff: Vec<String> = b
        .requests()
        .iter()
        .map(|q| q.header("x-forwarded-for").unwrap_or("").to_owned())
        .collect();
    assert!(xff.iter().any(|x| x == "127.0.0.6"), "{xff:?}");
    assert!(xff.iter().any(|x| x == "127.0.0.7"), "{xff:?}");
    assert!(xff.iter().any(|x| x == "127.0.0.8"), "{xff:?}");
    assert!(xff.iter().all(|x| x.starts_with("127.0.0.")), "{xff:?}");
    assert!(
        wait_until(Duration::from_secs(5), || read(&log)
            .contains("127.0.0.7 - - [")
            && read(&log).contains("127.0.0.8 - - [")),
        "{}",
        read(&log)
    );
    let text = read(&log);
    let h2_line = text
        .lines()
        .find(|l| l.starts_with("127.0.0.8 "))
        .unwrap_or("");
    assert!(h2_line.contains(" HTTP/2.0\" 200 "), "{h2_line}");
}

#[test]
fn forklb_send_proxy_to_nginx_proxy_protocol() {
    let dir = TempDir::new("pp-nginx");
    let (n1, n2, n3) = (free_port(), free_port(), free_port());
    let (n4, n5) = (free_port(), free_port());
    let (cert, key) = TestCert::self_signed(&["localhost"]).write(dir.path(), "ng");
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{}}\nhttp {{\n  access_log {d}/access.log;\n\
         client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
         uwsgi_temp_path {d}; scgi_temp_path {d};\n\
         server {{ listen 127.0.0.1:{n1} proxy_protocol; listen 127.0.0.1:{n2} proxy_protocol;\n\
         listen 127.0.0.1:{n3} ssl proxy_protocol;\n\
         listen 127.0.0.1:{n4} http2 proxy_protocol; listen 127.0.0.1:{n5} ssl http2 proxy_protocol;\n\
         ssl_certificate {cert}; ssl_certificate_key {key};\n\
         location / {{ return 200 \"pp=$proxy_protocol_addr:$proxy_protocol_port\\n\"; }} }}\n}}\n",
        d = dir.path().display(),
        cert = cert.display(),
        key = key.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _nginx = KillOnDrop(
        Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (make test-deps installs nginx-light)"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            n2
        ))
        .is_ok()),
        "nginx did not start: {}",
        read(&dir.join("error.log"))
    );
    let lb = Forklb::start(&format!(
        "workers: 2\n\
         listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    routes:\n\
         \x20     - {{path: /v2/, upstream: two}}\n\
         \x20     - {{path: /tls/, upstream: three}}\n\
         \x20     - {{path: /h2c/, upstream: four}}\n\
         \x20     - {{path: /h2/, upstream: five}}\n\
         \x20     - {{path: /, upstream: one}}\n\
         upstreams:\n  one:\n    send_proxy: v1\n    servers: [{{addr: \"127.0.0.1:{n1}\"}}]\n\
         \x20 two:\n    send_proxy: v2\n    servers: [{{addr: \"127.0.0.1:{n2}\"}}]\n\
         \x20 three:\n    send_proxy: v2\n    tls: {{verify: false}}\n    servers: [{{addr: \"127.0.0.1:{n3}\"}}]\n\
         \x20 four:\n    protocol: h2c\n    send_proxy: v1\n    servers: [{{addr: \"127.0.0.1:{n4}\"}}]\n\
         \x20 five:\n    protocol: h2\n    send_proxy: v2\n    tls: {{verify: false}}\n    servers: [{{addr: \"127.0.0.1:{n5}\"}}]\n"
    ));
    // The TLS upstream: the header goes before the ClientHello (nginx reads
    // it first, then does the handshake).
    for (src, path) in [
        ([127, 0, 0, 2], "/x"),
        ([127, 0, 0, 3], "/v2/x"),
        ([127, 0, 0, 4], "/tls/x"),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = exchange(connect_from(src.into(), lb.port()), req.as_bytes());
        assert_eq!(status_of(&r), 200, "{r}\n{}", lb.diagnostics());
        let ip = Ipv4Addr::from(src).to_string();
        assert!(r.contains(&format!("pp={ip}:")), "{r}");
    }
    // HTTP/2 upstreams: a connection per client, never shared. Clients
    // take turns, so that a connection one left idle in a worker would be
    // found by the next: each must still be named itself.
    for round in 0..8u8 {
        for (path, base) in [("/h2c/x", 5u8), ("/h2/x", 7)] {
            let src = [127, 0, 0, base + round % 2];
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let r = exchange(connect_from(src.into(), lb.port()), req.as_bytes());
            assert_eq!(status_of(&r), 200, "{r}\n{}", lb.diagnostics());
            let ip = Ipv4Addr::from(src).to_string();
            assert!(r.contains(&format!("pp={ip}:")), "round {round}: {r}");
        }
    }
}

/// An IPv4-mapped block in `allow`/`deny` is the IPv4 block it maps, as in
/// nginx: a client named by the PROXY header (TCP6 with a mapped address,
/// or TCP4) is matched by it. The rule was silently dead.
#[test]
fn ipv4_mapped_blocks_match_the_clients_they_map() {
    let lb = Forklb::start(
        "listeners:\n  - name: web\n    bind: [\"127.0.0.1:$PORT\"]\n    proxy_protocol: true\n    routes:\n\
         \x20     - {path: /, return: {status: 200, body: \"in\\n\"}, deny: [\"::ffff:192.0.2.0/120\"]}\n",
    );
    let port = lb.port();
    for (header, status) in [
        ("PROXY TCP6 ::ffff:192.0.2.5 ::1 5555 80\r\n", 403),
        ("PROXY TCP4 192.0.2.5 127.0.0.1 5555 80\r\n", 403),
        ("PROXY TCP4 198.51.100.1 127.0.0.1 5555 80\r\n", 200),
    ] {
        let r = exchange(
            connect_from(Ipv4Addr::LOCALHOST, port),
            &[header.as_bytes(), GET].concat(),
        );
        assert_eq!(status_of(&r), status, "{header}: {r}\n{}", lb.diagnostics());
    }
}
