//! Relaying a message body from one socket to another, whatever its
//! framing. Bytes are validated ("taken") before they are written, and the
//! count of taken-but-unwritten bytes is kept, so a partial write never
//! makes the chunked scanner look at the same bytes twice, and bytes past
//! the end of the body (the next pipelined message) are never relayed.

use super::io::{self, Io};
use crate::buffer::{Buf, BufPool};
use crate::event::Stream;
use crate::http::chunked::{ChunkError, ChunkedScanner};
use crate::http::Framing;

/// Bodies with at least this much left are relayed through a large buffer
/// (see `BufPool::upgrade`).
pub(super) const BULK_BODY: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub enum Body {
    Empty,
    Length(u64),
    Chunked(ChunkedScanner),
    /// A chunked body relayed as its payload alone, framing and trailers
    /// dropped: for a client that cannot take chunked (HTTP/1.0), whose
    /// connection then ends with the body.
    Dechunked(ChunkedScanner),
    UntilClose,
}

impl Body {
    pub fn from_framing(f: Framing) -> Body {
        match f {
            Framing::None | Framing::Length(0) => Body::Empty,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(ChunkedScanner::new()),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    /// Every byte of the body has been taken.
    pub fn is_complete(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Length(n) => *n == 0,
            Body::Chunked(s) | Body::Dechunked(s) => s.is_done(),
            Body::UntilClose => false,
        }
    }

    /// Takes body bytes from the front of `buf`; returns how many, which
    /// stay at its front to be written. Framing that is not relayed
    /// (`Dechunked`) is consumed from `buf` here.
    fn take(&mut self, buf: &mut Buf) -> Result<usize, ChunkError> {
        let data = buf.data();
        match self {
            Body::Empty => Ok(0),
            Body::Length(left) => {
                let n = (data.len() as u64).min(*left);
                *left -= n;
                Ok(n as usize)
            }
            Body::Chunked(s) => s.scan(data),
            Body::Dechunked(s) => {
                let (framing, payload) = s.dechunk(data)?;
                buf.consume(framing);
                Ok(payload)
            }
            Body::UntilClose => Ok(data.len()),
        }
    }

    /// So much is still to come that a large buffer pays off.
    fn is_bulk(&self) -> bool {
        matches!(self, Body::Length(left) if *left >= BULK_BODY)
    }

    /// Payload bytes seen so far (chunked: excluding framing).
    pub fn data_seen(&self) -> Option<u64> {
        match self {
            Body::Chunked(s) | Body::Dechunked(s) => Some(s.data_total()),
            _ => None,
        }
    }
}

/// A body in flight: its framing state and how many bytes at the front of
/// the source buffer are taken but not yet written.
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    pub body: Body,
    ready: usize,
    /// Total bytes written to the destination.
    pub sent: u64,
    /// Most payload bytes allowed (chunked bodies, whose size is learnt
    /// as they stream); checked before anything over it is written.
    max_data: Option<u64>,
}

pub enum RelayStep {
    /// Bytes moved; run again.
    Progress,
    /// Waiting for readiness.
    Blocked,
    /// The whole body was written.
    Complete,
    /// The source closed (for `UntilClose` that is the end of the body).
    SourceClosed,
    SourceFailed(std::io::Error),
    DestFailed(std::io::Error),
    Framing(ChunkError),
    /// The payload went over the limit; the offending bytes were not written.
    TooLarge,
}

/// One direction's sockets and readiness, borrowed for a step.
pub struct Ends<'a> {
    pub src: &'a mut Stream,
    pub src_ready: &'a mut bool,
    /// The source's last event reported its FIN or an error.
    pub src_hup: bool,
    pub buf: &'a mut Option<Buf>,
    pub dst: &'a mut Stream,
    pub dst_ready: &'a mut bool,
}

impl Relay {
    pub const EMPTY: Relay = Relay {
        body: Body::Empty,
        ready: 0,
        sent: 0,
        max_data: None,
    };

    pub fn new(body: Body) -> Relay {
        Relay {
            body,
            ready: 0,
            sent: 0,
            max_data: None,
        }
    }

    pub fn limit_data(&mut self, max: u64) {
        self.max_data = Some(max);
    }

    pub fn is_complete(&self) -> bool {
        self.ready == 0 && self.body.is_complete()
    }

    /// Takes body bytes at the front of `buf` (if none are taken yet) and
    /// returns how many taken bytes, at its front, are ready to write.
    pub fn prepare(&mut self, buf: &mut Buf) -> Result<usize, RelayStep> {
        if self.ready == 0 && !buf.is_empty() && !self.body.is_complete() {
            self.ready = self.body.take(buf).map_err(RelayStep::Framing)?;
            if let (Some(max), Some(seen)) = (self.max_data, self.body.data_seen()) {
                if seen > max {
                    self.ready = 0;
                    return Err(RelayStep::TooLarge);
                }
            }
        }
        Ok(self.ready)
    }

    /// Bytes taken from the source wait to be written: the destination is
    /// what the relay waits for.
    pub fn holds_output(&self) -> bool {
        self.ready > 0
    }

    /// Records that `n` prepared bytes were written.
    pub fn commit(&mut self, n: usize) {
        let n = n.min(self.ready);
        self.ready -= n;
        self.sent += n as u64;
    }

    /// Makes one unit of progress: write taken bytes, take buffered bytes,
    /// or read more from the source.
    pub fn step(&mut self, ends: &mut Ends, pool: &mut BufPool) -> RelayStep {
        if self.is_complete() {
            return RelayStep::Complete;
        }
        if let Some(buf) = ends.buf.as_mut() {
            match self.prepare(buf) {
                Ok(_) if self.is_complete() => return RelayStep::Complete,
                Ok(_) => {}
                Err(step) => return step,
            }
        }
        if self.ready > 0 {
            if !*ends.dst_ready {
                return RelayStep::Blocked;
            }
            let Some(buf) = ends.buf.as_mut() else {
                return RelayStep::Blocked;
            };
            return match io::write(ends.dst, &buf.data()[..self.ready], ends.dst_ready) {
                Io::Done(n) => {
                    buf.consume(n);
                    self.commit(n);
                    RelayStep::Progress
                }
                Io::Blocked => RelayStep::Blocked,
                Io::Eof => RelayStep::DestFailed(std::io::ErrorKind::WriteZero.into()),
                Io::Failed(e) => RelayStep::DestFailed(e),
            };
        }
        if !*ends.src_ready {
            return RelayStep::Blocked;
        }
        if self.body.is_bulk() {
            pool.upgrade(ends.buf);
        }
        let buf = ends.buf.get_or_insert_with(|| pool.get());
        match io::read(ends.src, buf.spare(), ends.src_ready, ends.src_hup) {
            Io::Done(n) => {
                buf.filled(n);
                RelayStep::Progress
            }
            Io::Blocked => RelayStep::Blocked,
            Io::Eof => RelayStep::SourceClosed,
            Io::Failed(e) => RelayStep::SourceFailed(e),
        }
    }
}
