//! TLS helpers for the integration tests:
//!
//! * [`TestCert`], [`TestCa`]: certificates made at test time with rcgen
//!   (ECDSA P-256 keys, or Ed25519), written as PEM files.
//! * [`client_config`], [`TlsConn`]: a blocking rustls HTTP/1.1 client over a
//!   `std::net::TcpStream`; it accepts any server certificate (the tests look
//!   at the presented certificate themselves).
//! * [`TlsBackend`]: a threaded HTTPS origin server (rustls on a std
//!   listener) that records the SNI it saw, every request and how many TLS
//!   handshakes it completed.
//!
//! Every socket has read/write timeouts, so no test can hang.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
    SignatureScheme, StreamOwned, SupportedProtocolVersion,
};

use super::{has_token, header_value, invalid, pattern_byte, Response, Wire, IO_TIMEOUT};

pub use rustls::client::ClientSessionMemoryCache;
pub use rustls::version::{TLS12, TLS13};
pub use rustls::HandshakeKind;

/// The crypto provider of the crate (forklb::tls::crypto), as an `Arc`.
pub fn provider() -> Arc<CryptoProvider> {
    ::forklb::tls::provider()
}

// ---------------------------------------------------------------------------
// Certificates

/// A certificate with its private key, in PEM and DER.
#[derive(Clone)]
pub struct TestCert {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The leaf certificate (DER), to compare with what a server presents.
    pub der: Vec<u8>,
    /// The private key (PKCS#8 DER).
    pub key_der: Vec<u8>,
}

fn leaf_params(names: &[&str]) -> rcgen::CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names.clone()).expect("certificate names");
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    params
}

impl TestCert {
    /// A self-signed certificate for the DNS `names` (ECDSA P-256 key).
    pub fn self_signed(names: &[&str]) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("generate key");
        let cert = leaf_params(names).self_signed(&key).expect("self-sign");
        TestCert::from_parts(&cert, &key)
    }

    /// Like [`TestCert::self_signed`], with an Ed25519 key.
    pub fn self_signed_ed25519(names: &[&str]) -> TestCert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("generate key");
        let cert = leaf_params(names).self_signed(&key).expect("self-sign");
        TestCert::from_parts(&cert, &key)
    }

    /// Like [`TestCert::self_signed`], valid for the 30 days up to
    /// `not_after` (seconds since the Unix epoch): expired, or about to.
    pub fn self_signed_until(names: &[&str], not_after: u64) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("generate key");
        let mut params = leaf_params(names);
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_after = epoch + Duration::from_secs(not_after);
        params.not_before = epoch + Duration::from_secs(not_after.saturating_sub(30 * 86_400));
        let cert = params.self_signed(&key).expect("self-sign");
        TestCert::from_parts(&cert, &key)
    }

    /// A self-signed certificate for `names` (DNS names or IP addresses)
    /// marked `CA:TRUE`, as `openssl req -x509` makes one by default
    /// (OpenSSL 3); valid from a day ago until `not_after` (seconds since
    /// the Unix epoch), or for a year when `None`.
    pub fn self_signed_ca_flagged(names: &[&str], not_after: Option<u64>) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("generate key");
        let mut params = leaf_params(names);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let not_after = not_after.unwrap_or(now + 365 * 86_400);
        params.not_after = epoch + Duration::from_secs(not_after);
        params.not_before = epoch + Duration::from_secs(not_after.min(now) - 86_400);
        let cert = params.self_signed(&key).expect("self-sign");
        TestCert::from_parts(&cert, &key)
    }

    fn from_parts(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> TestCert {
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }

    /// Writes `STEM.crt` and `STEM.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        self.write_to(&cert, &key);
        (cert, key)
    }

    /// Writes the certificate and the key to the given paths (each through a
    /// sibling file and a rename, so a reader never sees half a file).
    pub fn write_to(&self, cert: &Path, key: &Path) {
        write_atomically(cert, self.cert_pem.as_bytes());
        write_atomically(key, self.key_pem.as_bytes());
    }

    /// A rustls server configuration presenting this certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(self.der.clone())], key)
            .expect("server certificate");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// Writes `bytes` to `path` through a sibling temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// A certificate authority that issues leaf certificates.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate (PEM), for `ca:` files.
    pub cert_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf certificate for the DNS `names`, signed by this CA.
    pub fn issue(&self, names: &[&str]) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("generate key");
        let mut params = leaf_params(names);
        params.use_authority_key_identifier_extension = true;
        params
            .key_usages
            .push(rcgen::KeyUsagePurpose::DigitalSignature);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        TestCert::from_parts(&cert, &key)
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write(&self, path: &Path) {
        write_atomically(path, self.cert_pem.as_bytes());
    }

    /// A CA named "forklb test CA", written to `ca.pem` in `dir` (returned
    /// with that path, for `ca:` keys).
    pub fn in_dir(dir: &Path) -> (TestCa, PathBuf) {
        let ca = TestCa::new("forklb test CA");
        let ca_path = dir.join("ca.pem");
        ca.write(&ca_path);
        (ca, ca_path)
    }
}

// ---------------------------------------------------------------------------
// Client

/// Accepts any server certificate (the signatures are still checked).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration for `versions` that accepts any server
/// certificate, offers ALPN `alpn` and keeps sessions in `sessions` (or in
/// a private in-memory cache when `None`).
pub fn client_config_with(
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
    sessions: Option<Arc<dyn ClientSessionStore>>,
) -> Arc<ClientConfig> {
    let p = provider();
    let mut cfg = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(p)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    if let Some(s) = sessions {
        cfg.resumption = Resumption::store(s);
    }
    Arc::new(cfg)
}

/// TLS 1.2 and 1.3, ALPN http/1.1, any certificate, private session cache.
pub fn client_config() -> Arc<ClientConfig> {
    client_config_with(&[&TLS13, &TLS12], &[b"http/1.1"], None)
}

/// A TLS client connection to 127.0.0.1 that sends HTTP/1.1 requests and
/// reads one response at a time.
pub struct TlsConn {
    io: Wire<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsConn {
    /// Connects to 127.0.0.1:`port` and completes the handshake, sending SNI
    /// `sni` (none when `None`).
    pub fn connect(port: u16, sni: Option<&str>, config: Arc<ClientConfig>) -> io::Result<TlsConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        TlsConn::handshake(sock, sni, config)
    }

    /// Like [`TlsConn::connect`], with `early` queued before the handshake:
    /// rustls sends it as soon as it can (TLS 1.3: together with the client
    /// Finished, in one write), as browsers and curl often do.
    pub fn connect_sending(
        port: u16,
        sni: Option<&str>,
        config: Arc<ClientConfig>,
        early: &[u8],
    ) -> io::Result<TlsConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        TlsConn::handshake_sending(sock, sni, config, early)
    }

    /// Completes a TLS handshake on a connected socket.
    pub fn handshake(
        sock: TcpStream,
        sni: Option<&str>,
        config: Arc<ClientConfig>,
    ) -> io::Result<TlsConn> {
        TlsConn::handshake_sending(sock, sni, config, b"")
    }

    fn handshake_sending(
        sock: TcpStream,
        sni: Option<&str>,
        config: Arc<ClientConfig>,
        early: &[u8],
    ) -> io::Result<TlsConn> {
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let _ = sock.set_nodelay(true);
        // rustls sends no SNI for an IP address.
        let name: ServerName<'static> = match sni {
            Some(n) => ServerName::try_from(n.to_owned())
                .map_err(|e| invalid(format!("server name {n:?}: {e}")))?,
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let conn = ClientConnection::new(config, name)
            .map_err(|e| invalid(format!("client connection: {e}")))?;
        let mut tls = StreamOwned::new(conn, sock);
        if !early.is_empty() {
            tls.conn.writer().write_all(early)?;
        }
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut tls.sock)?;
        }
        Ok(TlsConn {
            io: Wire {
                stream: tls,
                buf: Vec::new(),
                counter: None,
            },
        })
    }

    /// The rustls connection (protocol version, ALPN, handshake kind...).
    pub fn tls(&self) -> &ClientConnection {
        &self.io.stream.conn
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.io.stream.sock
    }

    /// DER of the certificate the server presented (the leaf).
    pub fn peer_cert_der(&self) -> Vec<u8> {
        self.tls()
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.tls().handshake_kind()
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.tcp()
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.stream.write_all(bytes)?;
        self.io.stream.flush()
    }

    /// Sends a request with the given headers (plus `Host: localhost` unless
    /// they have a Host) and, when `body` is not empty, a Content-Length body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            req.push_str("Host: localhost\r\n");
        }
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
        self.read_response()
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// Waits (bounded by the read timeout) for the server to end the
    /// connection. `Ok(true)` for a clean TLS close (close_notify), `Ok(false)`
    /// for a TCP close or reset without close_notify; an error text if bytes
    /// arrive or on time-out.
    pub fn wait_closed(&mut self) -> Result<bool, String> {
        if !self.io.buf.is_empty() {
            return Err(format!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(&self.io.buf)
            ));
        }
        match self.io.fill() {
            Ok(0) => Ok(true),
            Ok(_) => Err(format!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(&self.io.buf)
            )),
            Err(e) if super::is_timeout(&e) => Err(format!("not closed: {e}")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(format!("error instead of a close: {e} ({:?})", e.kind())),
        }
    }

    /// Reads the next final response (1xx skipped).
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.io.read_response(false)
    }
}

/// One connection to 127.0.0.1:`port`: handshake with SNI `sni`, return the
/// DER of the presented certificate.
pub fn presented_cert(port: u16, sni: Option<&str>) -> io::Result<Vec<u8>> {
    let conn = TlsConn::connect(port, sni, client_config())?;
    Ok(conn.peer_cert_der())
}

/// A TLS ClientHello as a real client (rustls) sends it, for `sni`.
pub fn client_hello_bytes(sni: &str) -> Vec<u8> {
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut conn = ClientConnection::new(client_config(), name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    out
}

// ---------------------------------------------------------------------------
// HTTPS origin server

/// One request as a [`TlsBackend`] received it.
#[derive(Debug, Clone)]
pub struct TlsRequest {
    /// The SNI of the TLS connection it came on.
    pub sni: Option<String>,
    /// The number of the connection (in accept order, from 0).
    pub conn: usize,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TlsRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// How a [`TlsBackend`] behaves.
#[derive(Debug, Clone, Default)]
pub struct TlsBackendOpts {
    /// Close a keep-alive connection that stays idle this long between
    /// requests (close_notify, then the socket).
    pub idle_close: Option<Duration>,
    /// Accept connections but never answer the TLS handshake.
    pub stall_handshake: bool,
}

struct TlsBackendShared {
    name: String,
    opts: TlsBackendOpts,
    idle_closed: AtomicUsize,
    config: Arc<ServerConfig>,
    stop: AtomicBool,
    accepted: AtomicUsize,
    handshakes: AtomicUsize,
    failed_handshakes: AtomicUsize,
    handshake_errors: Mutex<Vec<String>>,
    requests: Mutex<Vec<TlsRequest>>,
    conns: Mutex<Vec<TcpStream>>,
}

/// A threaded HTTPS/1.1 origin server on 127.0.0.1 that answers 200 with its
/// name as the body (header `X-Backend: NAME`), keep-alive aware. Paths
/// starting with `/echo` get the request body back, `/big/N` gets N
/// [`pattern_byte`]s.
pub struct TlsBackend {
    addr: SocketAddr,
    shared: Arc<TlsBackendShared>,
    thread: Option<JoinHandle<()>>,
}

impl TlsBackend {
    pub fn start(name: &str, cert: &TestCert) -> TlsBackend {
        TlsBackend::start_with(name, cert, TlsBackendOpts::default())
    }

    pub fn start_with(name: &str, cert: &TestCert, opts: TlsBackendOpts) -> TlsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind TLS backend");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(TlsBackendShared {
            name: name.to_owned(),
            opts,
            idle_closed: AtomicUsize::new(0),
            config: cert.server_config(),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            failed_handshakes: AtomicUsize::new(0),
            handshake_errors: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let id = s.accepted.fetch_add(1, Ordering::SeqCst);
                if let Ok(c) = stream.try_clone() {
                    s.conns.lock().unwrap().push(c);
                }
                let s2 = s.clone();
                thread::spawn(move || {
                    let _ = serve_tls_conn(stream, id, &s2);
                });
            }
        });
        TlsBackend {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// Keep-alive connections closed by `idle_close` so far.
    pub fn idle_closed(&self) -> usize {
        self.shared.idle_closed.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed so far.
    pub fn failed_handshakes(&self) -> usize {
        self.shared.failed_handshakes.load(Ordering::SeqCst)
    }

    /// Why the failed handshakes failed (as the server saw it).
    pub fn handshake_errors(&self) -> Vec<String> {
        self.shared.handshake_errors.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<TlsRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn serve_tls_conn(sock: TcpStream, id: usize, s: &TlsBackendShared) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = sock.set_nodelay(true);
    if s.opts.stall_handshake {
        while !s.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        return Ok(());
    }
    let conn = ServerConnection::new(s.config.clone()).map_err(|e| invalid(e.to_string()))?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            if !s.stop.load(Ordering::SeqCst) {
                s.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                s.handshake_errors.lock().unwrap().push(e.to_string());
            }
            return Err(e);
        }
    }
    s.handshakes.fetch_add(1, Ordering::SeqCst);
    let sni = tls.conn.server_name().map(str::to_owned);
    let mut io = Wire {
        stream: tls,
        buf: Vec::new(),
        counter: None,
    };
    let mut served = 0usize;
    loop {
        if let (Some(idle), true) = (s.opts.idle_close, served > 0 && io.buf.is_empty()) {
            // Wait for the next request at most `idle`, then close.
            io.stream.sock.set_read_timeout(Some(idle))?;
            match io.fill() {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if super::is_timeout(&e) => {
                    s.idle_closed.fetch_add(1, Ordering::SeqCst);
                    io.stream.conn.send_close_notify();
                    let _ = io.stream.conn.complete_io(&mut io.stream.sock);
                    let _ = io.stream.sock.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            io.stream
                .sock
                .set_read_timeout(Some(Duration::from_secs(10)))?;
        }
        let Some((start, headers)) = io.read_head()? else {
            return Ok(());
        };
        served += 1;
        let mut parts = start.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let version = parts.next().unwrap_or("").to_owned();
        let body = io.read_body(&headers, false)?;
        let close = has_token(&headers, "connection", "close")
            || (version == "HTTP/1.0" && !has_token(&headers, "connection", "keep-alive"));
        // `/echo...`: the request body; `/big/N`: N pattern bytes; else the name.
        let big: Option<usize> = path.strip_prefix("/big/").and_then(|n| n.parse().ok());
        let resp: Vec<u8> = if path.starts_with("/echo") {
            body.clone()
        } else if big.is_some() {
            Vec::new()
        } else {
            s.name.as_bytes().to_vec()
        };
        let len = big.unwrap_or(resp.len());
        s.requests.lock().unwrap().push(TlsRequest {
            sni: sni.clone(),
            conn: id,
            method: method.clone(),
            path,
            headers,
            body,
        });
        let out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: {}\r\nContent-Length: {len}\r\n{}\r\n",
            s.name,
            if close { "Connection: close\r\n" } else { "" }
        );
        io.stream.write_all(out.as_bytes())?;
        if method != "HEAD" {
            if let Some(n) = big {
                const PIECE: usize = 64 * 1024;
                let block: Vec<u8> = (0..PIECE + 251).map(pattern_byte).collect();
                let mut sent = 0;
                while sent < n {
                    let len = PIECE.min(n - sent);
                    let phase = sent % 251;
                    io.stream.write_all(&block[phase..phase + len])?;
                    sent += len;
                }
            } else {
                io.stream.write_all(&resp)?;
            }
        }
        io.stream.flush()?;
        if close {
            io.stream.conn.send_close_notify();
            let _ = io.stream.conn.complete_io(&mut io.stream.sock);
            let _ = io.stream.sock.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}
