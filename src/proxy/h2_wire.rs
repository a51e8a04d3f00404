//! Moving an HTTP/2 connection's bytes over its socket, for either role
//! (a client's `H2Session`, a shared upstream connection): queued frames
//! out, received bytes into the protocol — only while it takes them, so a
//! peer that does not read cannot make us buffer more.

use super::io::{self, Io};
use crate::buffer::{Buf, BufPool};
use crate::event::Stream;
use crate::h2::{ClientConn, ServerConn};
use std::time::Instant;

/// What both roles of `h2` offer the transport.
pub trait Endpoint {
    fn recv(&mut self, input: &[u8], now: Instant) -> usize;
    fn output(&self) -> &[u8];
    fn advance_output(&mut self, n: usize);
    fn wants_read(&self) -> bool;
}

macro_rules! endpoint {
    ($t:ty) => {
        impl Endpoint for $t {
            fn recv(&mut self, input: &[u8], now: Instant) -> usize {
                <$t>::recv(self, input, now)
            }
            fn output(&self) -> &[u8] {
                <$t>::output(self)
            }
            fn advance_output(&mut self, n: usize) {
                <$t>::advance_output(self, n)
            }
            fn wants_read(&self) -> bool {
                <$t>::wants_read(self)
            }
        }
    };
}
endpoint!(ServerConn);
endpoint!(ClientConn);

/// The socket ended: the peer closed it, or an error.
#[derive(Debug)]
pub enum WireError {
    Closed,
    Failed(std::io::Error),
}

/// Writes queued frames; Ok(true) if some went out.
pub fn flush(
    conn: &mut impl Endpoint,
    sock: &mut Stream,
    writable: &mut bool,
) -> Result<bool, WireError> {
    let out = conn.output();
    if out.is_empty() || !*writable {
        return Ok(false);
    }
    match io::write(sock, out, writable) {
        Io::Done(n) => {
            conn.advance_output(n);
            Ok(true)
        }
        Io::Blocked => Ok(false),
        Io::Eof => Err(WireError::Closed),
        Io::Failed(e) => Err(WireError::Failed(e)),
    }
}

/// The socket's readiness and the bytes read but not yet taken.
pub struct Inbound<'a> {
    pub sock: &'a mut Stream,
    pub readable: &'a mut bool,
    pub hup: bool,
    pub input: &'a mut Option<Buf>,
}

/// Feeds what was read before, then reads more while the protocol takes
/// it; Ok(true) if something moved. The buffer goes back to the pool when
/// empty.
pub fn read(
    conn: &mut impl Endpoint,
    w: Inbound,
    bufs: &mut BufPool,
    now: Instant,
) -> Result<bool, WireError> {
    let mut moved = false;
    if let Some(input) = w.input.as_mut().filter(|b| !b.is_empty()) {
        let used = conn.recv(input.data(), now);
        input.consume(used);
        moved |= used > 0;
    }
    if !*w.readable || !conn.wants_read() {
        release_idle(w.input, bufs);
        return Ok(moved);
    }
    let buf = w.input.get_or_insert_with(|| bufs.get());
    buf.compact();
    if buf.is_full() {
        // A frame larger than the buffer waits in it whole: the core
        // limits frames to our max frame size, which fits.
        return Ok(moved);
    }
    match io::read(w.sock, buf.spare(), w.readable, w.hup) {
        Io::Done(n) => {
            buf.filled(n);
            let used = conn.recv(buf.data(), now);
            buf.consume(used);
            Ok(true)
        }
        Io::Blocked => {
            release_idle(w.input, bufs);
            Ok(moved)
        }
        Io::Eof => Err(WireError::Closed),
        Io::Failed(e) => Err(WireError::Failed(e)),
    }
}

fn release_idle(input: &mut Option<Buf>, bufs: &mut BufPool) {
    if input.as_ref().is_some_and(Buf::is_empty) {
        if let Some(b) = input.take() {
            bufs.put(b);
        }
    }
}
