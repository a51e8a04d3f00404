//! A connection's byte stream: a plain TCP socket or a TLS session over
//! one. The proxy reads and writes both alike; TLS needs a few extra
//! moves (handshake, flushing queued records, close_notify) that are
//! no-ops for plain sockets.

// Every read and write of a connection passes through here from `proxy`;
// `#[inline]` lets the calls fold into the caller whatever codegen unit
// this module lands in (callgrind keep-alive: 12,737 -> 12,674 Ir/request).

use crate::tls::TlsStream;
use mio::net::TcpStream;
use std::io::{self, Read, Write};

/// Which stage of `Stream::establish` failed.
#[derive(Debug)]
pub enum EstablishError {
    Connect(io::Error),
    Handshake(io::Error),
}

impl EstablishError {
    /// What failed, for log lines: "connect() to ADDR", "TLS handshake with ADDR".
    pub fn doing(&self) -> &'static str {
        match self {
            EstablishError::Connect(_) => "connect() to",
            EstablishError::Handshake(_) => "TLS handshake with",
        }
    }

    pub fn into_io(self) -> io::Error {
        match self {
            EstablishError::Connect(e) | EstablishError::Handshake(e) => e,
        }
    }
}

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: a TLS session is large, and most connections are plain.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The socket, for registering with epoll and socket options.
    #[inline]
    pub fn sock_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.sock_mut(),
        }
    }

    /// Why reading from a client failed, for the error log at debug level:
    /// a client's own failure is no server error, and a client must not be
    /// able to fill the log at the default level (issue 14), but an
    /// operator chasing one needs the reason (nginx logs these at its
    /// `info`, below its default level: "SSL_do_handshake() failed ...
    /// while SSL handshaking", "recv() failed ...").
    pub fn log_client_read_failure(&self, peer: std::net::SocketAddr, e: &io::Error) {
        match self {
            Stream::Tls(t) if t.is_handshaking() => {
                log::debug!("TLS handshake with client {peer} failed: {e}")
            }
            _ => log::debug!("reading from client {peer} failed: {e}"),
        }
    }

    /// `$ssl_client_s_dn`: the verified client certificate's subject
    /// (see [`TlsStream::client_s_dn`]); empty on plain connections.
    pub fn client_s_dn(&self) -> &str {
        match self {
            Stream::Plain(_) => "",
            Stream::Tls(t) => t.client_s_dn(),
        }
    }

    #[inline]
    pub fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.sock(),
        }
    }

    /// Bytes written to this stream still wait for room in the socket
    /// (TLS records queued; a plain socket queues nothing of its own).
    #[inline]
    pub fn has_queued_output(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.wants_flush(),
        }
    }

    /// Sends queued TLS records if the socket is writable; clears
    /// `writable` when it fills up.
    #[inline]
    pub fn flush_queued(&mut self, writable: &mut bool) -> io::Result<()> {
        if let Stream::Tls(t) = self {
            if *writable && t.wants_flush() && !t.flush_tls()? {
                *writable = false;
            }
        }
        Ok(())
    }

    /// Runs the TLS handshake as far as it can go; Ok(true) when done
    /// (at once for plain sockets).
    #[inline]
    pub fn handshake(&mut self, readable: &mut bool, writable: &mut bool) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            Stream::Tls(t) => t.handshake(readable, writable),
        }
    }

    /// Drives a new outgoing connection: the non-blocking connect (done once
    /// `connected`), then the TLS handshake if any. Ok(true) once both are
    /// done; a spurious wake-up clears the readiness flags.
    pub fn establish(
        &mut self,
        connected: &mut bool,
        readable: &mut bool,
        writable: &mut bool,
    ) -> Result<bool, EstablishError> {
        self.establish_with(connected, readable, writable, None)
    }

    /// `establish`, with a PROXY protocol header written raw on the socket
    /// once it is connected, before the TLS handshake (`send_proxy`).
    pub fn establish_with(
        &mut self,
        connected: &mut bool,
        readable: &mut bool,
        writable: &mut bool,
        preface: Option<&mut crate::proxy_proto::Preface>,
    ) -> Result<bool, EstablishError> {
        if !*connected {
            if !*writable && !*readable {
                return Ok(false);
            }
            match crate::net::connect_progress(self.sock()) {
                Ok(true) => *connected = true,
                Ok(false) => {
                    *writable = false;
                    *readable = false;
                    return Ok(false);
                }
                Err(e) => return Err(EstablishError::Connect(e)),
            }
        }
        if let Some(p) = preface {
            // At most 108 bytes on a fresh socket: one write takes them,
            // but a short one is carried on all the same.
            while !p.rest().is_empty() {
                match self.sock_mut().write(p.rest()) {
                    Ok(0) => return Err(EstablishError::Connect(io::ErrorKind::WriteZero.into())),
                    Ok(n) => p.pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        *writable = false;
                        return Ok(false);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(EstablishError::Connect(e)),
                }
            }
        }
        self.handshake(readable, writable)
            .map_err(EstablishError::Handshake)
    }

    /// Ends the sending direction: close_notify for TLS, then FIN. Ok(false)
    /// if TLS records are still queued (the FIN follows when they are out).
    #[inline]
    pub fn shutdown_write(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(s) => s.shutdown(std::net::Shutdown::Write).map(|()| true),
            Stream::Tls(t) => t.shutdown_write(),
        }
    }

    /// Decrypted bytes wait to be read (never for plain sockets, whose
    /// unread bytes stay in the kernel).
    #[inline]
    pub fn has_buffered_input(&mut self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.has_buffered_plaintext(),
        }
    }

    /// A pooled idle connection had a readiness event: true if it can still
    /// be reused — nothing to read (a plain socket's event can be one left
    /// over from its last response, queued in the round of events in which
    /// that response completed and the socket was pooled), or only TLS
    /// housekeeping (session tickets). Bytes, EOF or an error: false.
    #[inline]
    pub fn idle_still_clean(&mut self) -> bool {
        match self {
            Stream::Plain(s) => {
                let mut byte = [0u8; 1];
                loop {
                    return match s.peek(&mut byte) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        _ => false,
                    };
                }
            }
            Stream::Tls(t) => t.idle_still_clean(),
        }
    }
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(bufs),
            Stream::Tls(t) => t.write_vectored(bufs),
        }
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}
