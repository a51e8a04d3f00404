//! A TLS session over a non-blocking TCP socket, read and written like the
//! socket itself.
//!
//! Readiness bookkeeping stays the caller's (see `proxy::io`): `read`
//! returns plaintext, driving the handshake and answering it as needed, and
//! `WouldBlock` only when the socket has no more bytes and no plaintext is
//! buffered. `write` hands plaintext to rustls and pushes ciphertext out;
//! ciphertext that does not fit stays queued (`wants_flush`) and must be
//! flushed when the socket is writable again — the connection does that
//! after every round of events, and before it closes.

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;

pub struct TlsStream {
    sock: TcpStream,
    conn: Connection,
    /// `$ssl_client_s_dn`, made on first use after the handshake: once per
    /// connection, and never for connections that do not ask.
    client_dn: std::sync::OnceLock<String>,
    /// The last `read` ended on a socket read that came back short (fewer
    /// bytes than rustls asked for): the socket was empty then. See
    /// `read_left_socket_empty`.
    socket_dry: bool,
}

/// The socket as rustls reads it, noting whether a read came back short.
struct ShortReadProbe<'a> {
    sock: &'a mut TcpStream,
    short: bool,
}

impl Read for ShortReadProbe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
}

/// A rustls failure as an I/O error, keeping rustls's description (it names
/// the reason: "invalid peer certificate: UnknownIssuer").
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsError(e))
}

/// A rustls failure for the log. rustls prints a certificate error of its
/// `Other` kind with `Debug` ("invalid peer certificate:
/// Other(OtherError(CaUsedAsEndEntity))"); the error inside says itself
/// with `Display` (forklb's own, `upstream_verify::CaPresentedAsOwn`, is
/// a sentence for the operator).
#[derive(Debug)]
struct TlsError(rustls::Error);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(inner)) => {
                write!(f, "invalid peer certificate: {inner}")
            }
            other => other.fmt(f),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl TlsStream {
    /// The server side of a client connection.
    pub fn accept(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(config).map_err(tls_error)?;
        Ok(TlsStream {
            sock,
            conn: conn.into(),
            client_dn: std::sync::OnceLock::new(),
            socket_dry: false,
        })
    }

    /// The client side of a connection to an upstream server. The
    /// ClientHello is queued at once; `handshake` sends it.
    pub fn connect(
        sock: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(config, name).map_err(tls_error)?;
        Ok(TlsStream {
            sock,
            conn: conn.into(),
            client_dn: std::sync::OnceLock::new(),
            socket_dry: false,
        })
    }

    /// The handshake is not complete yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The protocol ALPN agreed on (`b"h2"`, `b"http/1.1"`), once the
    /// handshake has got that far; `None` before, or when the client
    /// offered no ALPN (then it speaks HTTP/1.1).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The subject DN of the client certificate verified in the handshake
    /// (`client_auth`), RFC 2253 style as nginx's `$ssl_client_s_dn`
    /// (`CN=client,O=Org`); empty without one, and while handshaking (not
    /// remembered then: the certificate may still come).
    pub fn client_s_dn(&self) -> &str {
        if self.conn.is_handshaking() {
            return "";
        }
        self.client_dn
            .get_or_init(|| match (&self.conn, self.conn.peer_certificates()) {
                (Connection::Server(_), Some([leaf, ..])) => super::client_auth::subject_dn(leaf),
                _ => String::new(),
            })
    }

    pub fn sock(&self) -> &TcpStream {
        &self.sock
    }

    pub fn sock_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Ciphertext is queued for the socket.
    pub fn wants_flush(&self) -> bool {
        self.conn.wants_write()
    }

    /// Plaintext already decrypted and not yet read.
    pub fn has_buffered_plaintext(&mut self) -> bool {
        self.conn
            .reader()
            .fill_buf()
            .is_ok_and(|chunk| !chunk.is_empty())
    }

    /// After a `read` that returned plaintext: nothing more can be read
    /// before the socket's next readiness event. True when that read took
    /// ciphertext from the socket and the socket read came back short, and
    /// rustls holds no plaintext: rustls decrypts every complete record it
    /// was given (`process_new_packets`), so what it keeps is at most part
    /// of a record whose rest has not arrived — and its arrival is an edge.
    /// This spares the read that would only return `EAGAIN`, one syscall
    /// per request, as a short read does on a plain socket (`proxy::io`).
    pub fn read_left_socket_empty(&mut self) -> bool {
        self.socket_dry && !self.has_buffered_plaintext()
    }

    /// Writes queued ciphertext: Ok(true) when none is left, Ok(false) when
    /// the socket is full.
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads what the socket has into rustls and processes it. Ok(false) at
    /// EOF. A protocol error sends the alert rustls queued (best effort).
    fn pull(&mut self) -> io::Result<bool> {
        loop {
            let mut probe = ShortReadProbe {
                sock: &mut self.sock,
                short: false,
            };
            let read = self.conn.read_tls(&mut probe);
            self.socket_dry = probe.short;
            match read {
                Ok(n) => {
                    match self.conn.process_new_packets() {
                        // After close_notify the next read says EOF, and
                        // no event may come to make it (the peer need not
                        // close the socket): not "empty".
                        Ok(state) => self.socket_dry &= !state.peer_has_closed(),
                        Err(e) => {
                            if self.is_plain_http(&e) {
                                return Err(self.answer_plain_http());
                            }
                            let _ = self.flush_tls();
                            return Err(tls_error(e));
                        }
                    }
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A client spoke something other than TLS to our TLS port before any
    /// TLS record: rustls rejects the first byte as a record type. nginx
    /// takes any such first byte for plain HTTP, and so do we.
    fn is_plain_http(&self, e: &rustls::Error) -> bool {
        matches!(self.conn, Connection::Server(_))
            && self.conn.is_handshaking()
            && matches!(
                e,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
    }

    /// Answers a plain HTTP request on the TLS port as nginx does — a
    /// plain `400` saying so, instead of a TLS alert the client cannot
    /// read — and returns the error that closes the connection. One
    /// best-effort write: the socket was just accepted, so it has room.
    fn answer_plain_http(&mut self) -> io::Error {
        let mut out = Vec::with_capacity(256);
        let reply = crate::http::errors::Reply {
            status: 400,
            content_type: "text/plain",
            extra_headers: b"",
            body: b"The plain HTTP request was sent to HTTPS port\n",
            keep_alive: false,
            head_only: false,
        };
        crate::http::errors::write_response(&mut out, &reply, &crate::http::date::now());
        let _ = self.sock.write(&out);
        io::Error::new(
            io::ErrorKind::InvalidData,
            "plain HTTP request sent to the TLS port (answered 400)",
        )
    }

    /// Drives the handshake as far as the socket allows. Ok(true) once it
    /// is complete (and everything it queued was sent), Ok(false) while
    /// waiting; `readable`/`writable` are cleared on `WouldBlock`.
    pub fn handshake(&mut self, readable: &mut bool, writable: &mut bool) -> io::Result<bool> {
        loop {
            if self.conn.wants_write() {
                if !self.flush_tls()? {
                    *writable = false;
                    return Ok(false);
                }
                continue;
            }
            if !self.conn.is_handshaking() {
                return Ok(true);
            }
            match self.pull() {
                Ok(true) => {}
                Ok(false) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *readable = false;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An idle pooled connection became readable: absorbs TLS-only traffic
    /// (session tickets, key updates) and says whether the connection is
    /// still clean — no plaintext, no EOF, no error.
    pub fn idle_still_clean(&mut self) -> bool {
        loop {
            match self.pull() {
                Ok(true) => {
                    if self.has_buffered_plaintext() {
                        return false;
                    }
                }
                Ok(false) => return false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = self.flush_tls();
                    return !self.has_buffered_plaintext();
                }
                Err(_) => return false,
            }
        }
    }

    /// Queues close_notify and pushes out what fits; shuts down the
    /// socket's sending side once everything queued is out.
    pub fn shutdown_write(&mut self) -> io::Result<bool> {
        self.conn.send_close_notify();
        let flushed = self.flush_tls()?;
        if flushed {
            self.sock.shutdown(std::net::Shutdown::Write)?;
        }
        Ok(flushed)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Plaintext left from an earlier read says nothing about the socket.
        self.socket_dry = false;
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer closed without close_notify: an HTTP peer may do
                // that after a complete message; the framing decides.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Nothing decrypted: answer the handshake if it is waiting on
            // us (a full socket is fine: the flush is retried later), then
            // read more ciphertext. A failed flush does not stop the read:
            // a peer that answered and closed without reading the rest makes
            // our writes fail (EPIPE, ECONNRESET) while its answer is still
            // to be read; the error shows again on the next write.
            let _ = self.flush_tls();
            let more = self.pull()?;
            let _ = self.flush_tls();
            if !more && !self.has_buffered_plaintext() {
                return Ok(0);
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    /// The slices go into TLS records together, then out with as few
    /// socket writes as rustls needs. Together: a small response's head
    /// and body are one record, not one each (a record per slice cost
    /// both ends an extra seal/open and 22 bytes or more on the wire).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // While ciphertext is waiting for room in the socket, take no more.
        if !self.flush_tls()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.conn.writer().write_vectored(bufs)?;
        self.flush_tls()?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A server TlsStream (a listener's configuration) and a client one on
    /// a loopback pair, handshaken; the client offers `alpn`.
    fn handshaken(http2: bool, alpn: &[&[u8]]) -> (TlsStream, TlsStream) {
        let tag = format!("alpn-{http2}-{}", alpn.len());
        let (server_cfg, client_cfg) = configs(&tag, http2, alpn, None, false);
        pair(server_cfg, client_cfg).unwrap()
    }

    /// A listener's and a client's configuration. With `client_auth`
    /// (whether required), the listener verifies client certificates
    /// against a CA that issued one with subject `CN=client,O=Org`, which
    /// the client presents when `present`.
    fn configs(
        tag: &str,
        http2: bool,
        alpn: &[&[u8]],
        client_auth: Option<bool>,
        present: bool,
    ) -> (Arc<ServerConfig>, ClientConfig) {
        let dir = std::env::temp_dir().join(format!("forklb-stream-{}-{tag}", std::process::id(),));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (crt, kf) = (dir.join("a.crt"), dir.join("a.key"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&kf, key.serialize_pem()).unwrap();
        // The client CA and the client's certificate.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "clients CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params.distinguished_name = rcgen::DistinguishedName::new();
        client_params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Org");
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client");
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
        let (ca_file, ccrt, ckey) = (dir.join("ca.crt"), dir.join("c.crt"), dir.join("c.key"));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&ccrt, client_cert.pem()).unwrap();
        std::fs::write(&ckey, client_key.serialize_pem()).unwrap();

        let certs = [crate::config::CertKey {
            cert: crt,
            key: kf,
            ocsp: None,
        }];
        let auth = client_auth.map(|required| crate::config::ClientAuth {
            ca: ca_file.clone(),
            required,
        });
        let policy = crate::tls::server::Policy {
            protocols: None,
            groups: None,
            client_auth: auth.as_ref(),
        };
        let server_cfg = crate::tls::server::config(&certs, &policy, http2)
            .unwrap()
            .config;
        let identity = present.then(|| crate::tls::client::identity(&ccrt, &ckey).unwrap());
        let mut client_cfg =
            (*crate::tls::client::config(false, None, identity, &[b"http/1.1"]).unwrap()).clone();
        std::fs::remove_dir_all(&dir).unwrap();
        client_cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        (server_cfg, client_cfg)
    }

    /// Runs the handshake on a loopback pair; the server's error if it fails.
    fn pair(
        server_cfg: Arc<ServerConfig>,
        client_cfg: ClientConfig,
    ) -> io::Result<(TlsStream, TlsStream)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client_sock = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_sock, _) = listener.accept().unwrap();
        for s in [&client_sock, &server_sock] {
            s.set_nonblocking(true).unwrap();
        }
        let mut server = TlsStream::accept(TcpStream::from_std(server_sock), server_cfg).unwrap();
        let mut client = TlsStream::connect(
            TcpStream::from_std(client_sock),
            Arc::new(client_cfg),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut s_done, mut c_done) = (false, false);
        while !(s_done && c_done) {
            assert!(Instant::now() < deadline, "handshake did not finish");
            let (mut r, mut w) = (true, true);
            // The client's side of a refused handshake fails on the alert;
            // the server's error is the one the test looks at.
            c_done = c_done || client.handshake(&mut r, &mut w).unwrap_or(false);
            s_done = server.handshake(&mut r, &mut w)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok((server, client))
    }

    #[test]
    fn client_subject_dn_is_the_verified_certificate_s() {
        let (server_cfg, client_cfg) = configs("dn-req", false, &[], Some(true), true);
        let (server, client) = pair(server_cfg, client_cfg).unwrap();
        assert_eq!(server.client_s_dn(), "CN=client,O=Org");
        // Remembered: the same string again, not recomputed.
        assert!(std::ptr::eq(server.client_s_dn(), server.client_s_dn()));
        // The client side never reports the server's certificate as one.
        assert_eq!(client.client_s_dn(), "");

        let (server_cfg, client_cfg) = configs("dn-opt", false, &[], Some(false), false);
        let (server, _) = pair(server_cfg, client_cfg).unwrap();
        assert_eq!(server.client_s_dn(), "", "anonymous client allowed");
        let (server_cfg, client_cfg) = configs("dn-opt2", false, &[], Some(false), true);
        let (server, _) = pair(server_cfg, client_cfg).unwrap();
        assert_eq!(server.client_s_dn(), "CN=client,O=Org");

        let (server_cfg, client_cfg) = configs("dn-none", false, &[], Some(true), false);
        let err = pair(server_cfg, client_cfg).err().expect("refused");
        assert!(err.to_string().contains("certificate"), "{err}");
        let (server_cfg, client_cfg) = configs("dn-off", false, &[], None, true);
        let (server, _) = pair(server_cfg, client_cfg).unwrap();
        assert_eq!(
            server.client_s_dn(),
            "",
            "no client_auth: no certificate asked"
        );
    }

    #[test]
    fn alpn_protocol_is_what_the_handshake_agreed() {
        let (server, client) = handshaken(true, &[b"h2", b"http/1.1"]);
        assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(client.alpn_protocol(), Some(&b"h2"[..]));
        let (server, _) = handshaken(true, &[b"http/1.1"]);
        assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (server, _) = handshaken(false, &[b"h2", b"http/1.1"]);
        assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
        // No ALPN from the client: none agreed (the client speaks HTTP/1.1).
        let (server, _) = handshaken(true, &[]);
        assert_eq!(server.alpn_protocol(), None);
    }

    /// Writes `bytes` from the client side, flushing until the socket took
    /// all of it.
    fn send_all(client: &mut TlsStream, bytes: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut off = 0;
        while off < bytes.len() || client.wants_flush() {
            assert!(Instant::now() < deadline, "client could not send");
            off += send_some(client, bytes.get(off..).unwrap_or_default());
        }
    }

    /// One write of `bytes` (or part) from the client side, and a flush.
    fn send_some(client: &mut TlsStream, bytes: &[u8]) -> usize {
        let n = match client.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("client write: {e}"),
        };
        let _ = client.flush_tls();
        n
    }

    /// The event loop's use of `read_left_socket_empty`, with real
    /// edge-triggered epoll (mio): the server reads while it holds a
    /// readable event, and stops at `WouldBlock` or when the read says the
    /// socket is empty. If it ever said so wrongly, the bytes still in the
    /// socket would raise no event and the transfer would stall. Whatever
    /// the record and read sizes, every byte arrives, and most reads spare
    /// the `WouldBlock` one.
    #[test]
    fn read_left_socket_empty_never_loses_an_edge() {
        use mio::{Events, Interest, Poll, Token};
        // Its own tag: tests run in parallel, each with its own files.
        let (server_cfg, client_cfg) = configs("edge", false, &[b"http/1.1"], None, false);
        let (mut server, mut client) = pair(server_cfg, client_cfg).unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(server.sock_mut(), Token(0), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        let (mut spared, mut blocked) = (0, 0);
        // Records of 1 B to 16 KiB, read with buffers smaller and larger
        // than a record and than rustls's 4 KiB socket reads.
        for (total, chunk, read_size) in [
            (5, 5, 4096),
            (300, 100, 64),
            (20_000, 1000, 16_384),
            (100_000, 16_384, 3000),
            (100_000, 50, 100_000),
            (300_000, 7000, 5000),
        ] {
            let case = format!("{total} B in {chunk} B writes, {read_size} B reads");
            let sent: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let (mut off, mut got) = (0, Vec::new());
            let mut buf = vec![0; read_size];
            let mut readable = true;
            let deadline = Instant::now() + Duration::from_secs(10);
            while got.len() < sent.len() {
                assert!(
                    Instant::now() < deadline,
                    "{case}: stalled at {} B",
                    got.len()
                );
                if off < sent.len() || client.wants_flush() {
                    let end = (off + chunk).min(sent.len());
                    off += send_some(&mut client, sent.get(off..end).unwrap_or_default());
                }
                poll.poll(&mut events, Some(Duration::from_millis(1)))
                    .unwrap();
                readable |= !events.is_empty();
                while readable {
                    match server.read(&mut buf) {
                        Ok(0) => panic!("{case}: EOF"),
                        Ok(n) => {
                            got.extend_from_slice(buf.get(..n).unwrap_or_default());
                            if server.read_left_socket_empty() {
                                readable = false;
                                spared += 1;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            readable = false;
                            blocked += 1;
                        }
                        Err(e) => panic!("{case}: server read: {e}"),
                    }
                }
            }
            assert!(got == sent, "{case}: bytes differ");
        }
        assert!(
            spared > blocked,
            "{spared} reads said empty, {blocked} blocked"
        );
    }

    /// The first read that does not block (polling every millisecond,
    /// for 5 s at most): its byte count.
    fn read_within_5s(server: &mut TlsStream, buf: &mut [u8]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "nothing arrived");
            match server.read(buf) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("server read: {e}"),
            }
        }
    }

    /// Data and close_notify together, the socket left open: the read of
    /// the data does not say "empty", so the caller reads again and sees
    /// EOF (no event would come to tell it).
    #[test]
    fn read_left_socket_empty_is_false_after_close_notify() {
        let (server_cfg, client_cfg) = configs("notify", false, &[b"http/1.1"], None, false);
        let (mut server, mut client) = pair(server_cfg, client_cfg).unwrap();
        client.conn.writer().write_all(b"bye").unwrap();
        client.conn.send_close_notify();
        let mut records = Vec::new();
        while client.conn.wants_write() {
            client.conn.write_tls(&mut records).unwrap();
        }
        client.sock.write_all(&records).unwrap();
        let mut buf = [0; 64];
        let n = read_within_5s(&mut server, &mut buf);
        assert_eq!(buf.get(..n), Some(&b"bye"[..]));
        assert!(!server.read_left_socket_empty(), "close_notify is pending");
        assert_eq!(server.read(&mut buf).unwrap(), 0, "EOF");
    }

    /// Part of a record on the socket: the read that takes it returns
    /// `WouldBlock` (nothing to decrypt yet), and the read after the rest
    /// arrives returns the plaintext and says the socket is empty.
    #[test]
    fn read_left_socket_empty_with_half_a_record() {
        let (server_cfg, client_cfg) = configs("half", false, &[b"http/1.1"], None, false);
        let (mut server, mut client) = pair(server_cfg, client_cfg).unwrap();
        client.conn.writer().write_all(b"hello").unwrap();
        let mut record = Vec::new();
        while client.conn.wants_write() {
            client.conn.write_tls(&mut record).unwrap();
        }
        let (first, rest) = record.split_at(record.len() / 2);
        client.sock.write_all(first).unwrap();
        let mut buf = [0; 64];
        let e = server.read(&mut buf).expect_err("half a record");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        client.sock.write_all(rest).unwrap();
        let n = read_within_5s(&mut server, &mut buf);
        assert_eq!(buf.get(..n), Some(&b"hello"[..]));
        assert!(server.read_left_socket_empty());
        // Plaintext left over from a read says nothing about the socket.
        send_all(&mut client, b"0123456789");
        let mut small = [0; 4];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "nothing arrived");
            match server.read(&mut small) {
                Ok(4) => break,
                Ok(n) => panic!("{n} B of a 10 B record into 4"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("server read: {e}"),
            }
        }
        assert!(!server.read_left_socket_empty(), "6 B still buffered");
        assert_eq!(server.read(&mut small).unwrap(), 4);
        assert!(!server.read_left_socket_empty(), "no socket read made");
        assert_eq!(server.read(&mut small).unwrap(), 2);
        assert!(!server.read_left_socket_empty(), "no socket read made");
    }
}
