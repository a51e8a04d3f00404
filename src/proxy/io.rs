//! Non-blocking read/write on edge-triggered sockets. Readiness is tracked
//! in a flag per direction that an event sets and that `WouldBlock` (or a
//! read proving the socket drained, see `left_socket_empty`) clears, so no
//! edge is ever lost.

use crate::event::Stream;
use mio::net::TcpStream;
use std::io::{self, Read, Write};

pub enum Io {
    /// This many bytes moved.
    Done(usize),
    /// The peer closed its sending side (read returned 0).
    Eof,
    /// Not ready; the flag was cleared and an event will come.
    Blocked,
    Failed(io::Error),
}

/// `hup`: the socket's last event reported the peer's FIN or an error.
/// Unless it did, a read that proves the socket empty (see
/// `left_socket_empty`) clears the flag at once, saving the read that would
/// only return `EAGAIN` (one syscall per request).
pub fn read(sock: &mut Stream, into: &mut [u8], ready: &mut bool, hup: bool) -> Io {
    let asked = into.len();
    read_with(sock, into, ready, hup, |s, n| {
        left_socket_empty(s, n, asked)
    })
}

/// Reads straight from the TCP socket, beneath any TLS session: for bytes
/// that are thrown away unread (the rest of an upload nobody wants, see
/// `Conn::discard_client_input`), so they cost no decryption.
pub fn read_raw(sock: &mut TcpStream, into: &mut [u8], ready: &mut bool, hup: bool) -> Io {
    let asked = into.len();
    read_with(sock, into, ready, hup, |_, n| n < asked)
}

/// One read; `drained(sock, n)`: the `n` bytes read prove the socket empty,
/// asked only when the last event reported no FIN or error (`hup`).
fn read_with<S: Read>(
    sock: &mut S,
    into: &mut [u8],
    ready: &mut bool,
    hup: bool,
    drained: impl FnOnce(&mut S, usize) -> bool,
) -> Io {
    debug_assert!(!into.is_empty(), "read into a full buffer looks like EOF");
    loop {
        return match sock.read(into) {
            Ok(0) => Io::Eof,
            Ok(n) => {
                if !hup && drained(sock, n) {
                    *ready = false;
                }
                Io::Done(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                Io::Blocked
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Io::Failed(e),
        };
    }
}

/// Whether a read of `n` bytes (of `asked`) proves the socket drained, so
/// that waiting for the next event is safe: under edge-triggered epoll,
/// Linux reports every later arrival of data as a new event. A plain socket
/// is drained when it gave less than asked; a TLS stream when its own socket
/// read came back short and rustls holds no plaintext
/// (`TlsStream::read_left_socket_empty`). Not asked when the last event
/// reported the peer's FIN or an error (`hup`): that event was the last
/// one, so the socket is read until it says end of stream (nginx
/// does the same with EPOLLRDHUP: `rev->ready = 0` after a short read
/// unless EOF is pending).
fn left_socket_empty(sock: &mut Stream, n: usize, asked: usize) -> bool {
    match sock {
        Stream::Plain(_) => n < asked,
        Stream::Tls(t) => t.read_left_socket_empty(),
    }
}

/// `writev`: several buffers in one syscall.
pub fn write_vectored<S: Write>(sock: &mut S, bufs: &[std::io::IoSlice], ready: &mut bool) -> Io {
    write_with(ready, || sock.write_vectored(bufs))
}

pub fn write<S: Write>(sock: &mut S, from: &[u8], ready: &mut bool) -> Io {
    write_with(ready, || sock.write(from))
}

/// Runs a write until it is not interrupted and classifies the outcome.
fn write_with(ready: &mut bool, mut attempt: impl FnMut() -> io::Result<usize>) -> Io {
    loop {
        return match attempt() {
            Ok(0) => Io::Failed(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => Io::Done(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                Io::Blocked
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Io::Failed(e),
        };
    }
}
