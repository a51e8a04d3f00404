//! The raw HTTP/1.1 client: [`Conn`] sends exact bytes and reads one [`Response`] at a time.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::*;

/// One HTTP response as the client received it.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the response announces `Connection: close`.
    pub fn closes(&self) -> bool {
        has_token(&self.headers, "connection", "close")
    }
}

/// A client connection that sends raw bytes and reads one response at a time.
pub struct Conn {
    wire: Wire,
}

impl Conn {
    pub fn open(port: u16) -> io::Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        Ok(Conn {
            wire: Wire::new(stream)?,
        })
    }

    /// A connection to 127.0.0.1:`port` from the loopback address `src`
    /// (127.0.0.2, ...): a client of another address, for per-source limits.
    pub fn open_from(src: [u8; 4], port: u16) -> io::Result<Conn> {
        use nix::sys::socket::{
            bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let [a, b, c, d] = src;
        bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0))?;
        connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port))?;
        Ok(Conn {
            wire: Wire::new(TcpStream::from(fd))?,
        })
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.wire
            .stream
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    pub fn stream(&self) -> &TcpStream {
        &self.wire.stream
    }

    /// Closes with a TCP reset (SO_LINGER 0), as a client killed or
    /// aborting does, instead of a FIN.
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a descriptor we own, with a valid linger.
        let r = unsafe {
            libc::setsockopt(
                self.wire.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.stream.write_all(bytes)?;
        self.wire.stream.flush()
    }

    /// Reads the next final response (interim 1xx responses are skipped). The
    /// body is framed by chunked encoding, Content-Length, or the connection end.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_to(false)
    }

    /// Like `read_response`, for the answer to a HEAD request (no body).
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        self.read_response_to(true)
    }

    fn read_response_to(&mut self, head_request: bool) -> io::Result<Response> {
        self.wire.read_response(head_request)
    }

    /// Sends a request with `Host: localhost`, the given extra headers and, when
    /// `body` is not empty, a Content-Length body; reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
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
        if method == "HEAD" {
            self.read_head_response()
        } else {
            self.read_response()
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// Waits (bounded by the read timeout) for the peer to close. `Ok(())` on a
    /// clean EOF; an error if bytes arrive, on reset, or on timeout.
    pub fn expect_eof(&mut self) -> io::Result<()> {
        if !self.wire.buf.is_empty() {
            return Err(invalid(format!(
                "unexpected bytes instead of EOF: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            )));
        }
        match self.wire.fill()? {
            0 => Ok(()),
            _ => Err(invalid(format!(
                "unexpected bytes instead of EOF: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            ))),
        }
    }
}

impl Conn {
    /// Reads the next message head, interim (1xx) or final, without reading
    /// any body: the returned `Response` has an empty body.
    pub fn read_next_head(&mut self) -> io::Result<Response> {
        self.wire.read_response_head()
    }

    /// Reads exactly `n` bytes (after whatever was already read).
    pub fn read_exact_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.wire.read_exact_body(n)
    }

    /// Reads raw bytes up to and including the first occurrence of `needle`.
    pub fn read_raw_until(&mut self, needle: &[u8]) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self
                .wire
                .buf
                .windows(needle.len())
                .position(|w| w == needle)
            {
                return Ok(self.wire.buf.drain(..pos + needle.len()).collect());
            }
            if self.wire.buf.len() > 64 * MAX_HEAD {
                return Err(invalid("needle not found"));
            }
            if self.wire.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF before {:?}; got {:?}",
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(&self.wire.buf)
                    ),
                ));
            }
        }
    }

    /// Reads everything until the peer closes.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        self.wire.read_to_eof()
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.wire.buf
    }

    /// Waits (bounded by the read timeout) for the peer to close the
    /// connection without sending anything more. A clean EOF or a reset
    /// both count as closed; bytes or a timeout are an error (as text).
    pub fn expect_closed(&mut self) -> Result<(), String> {
        if !self.wire.buf.is_empty() {
            return Err(format!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            ));
        }
        match self.wire.fill() {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!(
                "unexpected bytes instead of a close: {:?}",
                String::from_utf8_lossy(&self.wire.buf)
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(format!("connection not closed: {e} ({:?})", e.kind())),
        }
    }
}

/// Whether an I/O error is a read/write timeout.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// GET `path` from 127.0.0.1:`port` over a fresh connection.
pub fn try_http_get(port: u16, path: &str) -> io::Result<Response> {
    Conn::open(port)?.get(path)
}

/// GET `path` from 127.0.0.1:`port` over a fresh connection; panics on I/O errors.
pub fn http_get(port: u16, path: &str) -> Response {
    try_http_get(port, path).unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}

/// GET `path` over a fresh connection with extra request headers.
pub fn try_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    Conn::open(port)?.request("GET", path, headers, b"")
}

/// Like [`try_get_with`], panicking on I/O errors.
pub fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    try_get_with(port, path, headers)
        .unwrap_or_else(|e| panic!("GET {path} {headers:?} on port {port}: {e}"))
}
