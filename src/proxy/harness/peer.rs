//! A scripted end of an exchange (the client, or one connection of the
//! upstream server): a non-blocking loopback socket in the harness's poll,
//! whose input is collected on every turn of the loop.

use super::wire::{self, Kind, Message};
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

pub struct Peer {
    /// None once the script closed it.
    pub sock: Option<TcpStream>,
    /// Everything received so far.
    pub input: Vec<u8>,
    /// How much of `input` earlier messages took.
    pub taken: usize,
    /// The other side closed (EOF) or reset the connection.
    pub closed: bool,
    pub reset: bool,
}

impl Peer {
    pub fn new(sock: TcpStream) -> Peer {
        Peer {
            sock: Some(sock),
            input: Vec::new(),
            taken: 0,
            closed: false,
            reset: false,
        }
    }

    /// Reads what has arrived, without blocking.
    pub fn pump(&mut self) {
        let Some(sock) = self.sock.as_mut().filter(|_| !self.closed) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closed = true;
                    self.reset = true;
                    return;
                }
            }
        }
    }

    /// Writes as much of `bytes` as the socket takes; Err if the other side
    /// is gone.
    pub fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(sock) = self.sock.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "closed by the script",
            ));
        };
        match sock.write(bytes) {
            Ok(n) => Ok(n),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// The next complete message after what was taken, taking it.
    pub fn take_message(&mut self, kind: Kind) -> Option<Message> {
        let (m, len) = wire::parse(&self.input[self.taken..], kind, self.closed)?;
        self.taken += len;
        Some(m)
    }

    /// Bytes written but not yet acknowledged by the other side's kernel.
    pub fn unsent(&self) -> usize {
        self.sock.as_ref().map_or(0, |s| queued(s, libc::TIOCOUTQ))
    }

    /// Closes our socket: a FIN, or with `reset` an RST (SO_LINGER 0).
    pub fn close(&mut self, registry: &mio::Registry, reset: bool) {
        let Some(mut sock) = self.sock.take() else {
            return;
        };
        if reset {
            set_reset_on_close(&sock);
        }
        let _ = registry.deregister(&mut sock);
    }
}

/// Sends an RST instead of a FIN when the socket is closed (SO_LINGER 0).
fn set_reset_on_close(sock: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized, initialised option.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// Bytes in a socket's receive queue (`FIONREAD`) or unacknowledged in
/// its send queue (`TIOCOUTQ`): how the harness knows the proxy has read
/// what a scripted end sent, instead of sleeping.
pub fn queued(sock: &impl AsRawFd, request: libc::Ioctl) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: both requests write one int through the pointer.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut n as *mut libc::c_int) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}
