//! [`Conn`]: one HTTP/2 connection, sans-IO, in either role; `ServerConn`
//! and `ClientConn` are thin layers over it that differ only in who opens
//! streams and which head (request or response) a stream starts with.
//!
//! The caller feeds bytes (`recv`), takes events, calls the `send_*`
//! methods, and writes `output()`. Stream errors are answered with
//! RST_STREAM and an `Inbound::Reset` (if the application knew the stream);
//! connection errors queue GOAWAY, after which the connection only flushes
//! its output (`is_closing`, `error`).

mod inbound;
mod outbound;

pub(crate) use outbound::common_api;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::flow::{RecvWindow, SendWindow};
use super::frame::{self, setting, Frame, FrameError, Head, Priority};
use super::headers::{self, HeaderList, RequestHead};
use super::hpack::{self, DecodeError};
use super::limits::{Budgets, Kind};
use super::stream::{Closed, Next, Recv, State, Stream};
use super::{code, Settings, PREFACE};

/// Above this much unsent output we stop reading (`wants_read`) and
/// `send_data` accepts nothing more.
const OUTPUT_SOFT: usize = 64 * 1024;
/// A peer that keeps asking for answers (PING, SETTINGS) while not reading
/// them past this bound is cut off.
const OUTPUT_HARD: usize = 1024 * 1024;
/// A header block may exceed the list size limit by this much before
/// decoding (HPACK's encoding of a list is rarely larger than the list).
const BLOCK_SLACK: usize = 16 * 1024;
/// Recently closed streams remembered to classify late frames.
const CLOSED_MEMORY: usize = 64;
/// The window a peer assumes before our SETTINGS arrive.
const DEFAULT_WINDOW: u32 = 65_535;
/// The longest wait for the ACK of the PING that follows the first
/// GOAWAY of a graceful shutdown (one round trip, RFC 9113 §6.8).
pub const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// That PING's opaque data.
const DRAIN_PING: [u8; 8] = *b"fl-drain";

/// What the peer did, for the role layers to map to their events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Request {
        stream: u32,
        head: RequestHead,
        end_stream: bool,
    },
    /// Client role: the final response head. For a response without
    /// content (HEAD, 204, 304) `end_stream` is true even when the server's
    /// HEADERS did not end the stream: the response is complete.
    Response {
        stream: u32,
        status: u16,
        headers: HeaderList,
        end_stream: bool,
    },
    /// Client role: an informational (1xx) response head before the final
    /// one, e.g. 103 Early Hints.
    Interim {
        stream: u32,
        status: u16,
        headers: HeaderList,
    },
    /// Never empty unless `end_stream`.
    Data {
        stream: u32,
        data: Vec<u8>,
        end_stream: bool,
    },
    /// Ends the request.
    Trailers { stream: u32, trailers: HeaderList },
    /// The stream is gone (client RST_STREAM, or a stream error we
    /// answered with RST_STREAM): abort its exchange.
    Reset { stream: u32 },
    /// Client role: the server did not process the stream (RST_STREAM
    /// REFUSED_STREAM, or above the last stream of its GOAWAY): the request
    /// may be sent again, whatever its method (RFC 9113 §8.7).
    Refused { stream: u32 },
}

/// A connection error: GOAWAY with `code`, `why` for the log.
#[derive(Debug)]
struct ConnError {
    code: u32,
    why: String,
}

fn conn_err(code: u32, why: impl Into<String>) -> ConnError {
    ConnError {
        code,
        why: why.into(),
    }
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> ConnError {
        conn_err(e.code, e.what)
    }
}

impl From<super::limits::Exceeded> for ConnError {
    fn from(e: super::limits::Exceeded) -> ConnError {
        conn_err(code::ENHANCE_YOUR_CALM, e.0)
    }
}

type Step = Result<(), ConnError>;
/// A decoded header list, or why the stream cannot use it.
type Decoded = Result<HeaderList, headers::Malformed>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 24-byte client preface.
    Preface,
    /// The first frame must be SETTINGS.
    FirstSettings,
    Open,
    /// GOAWAY queued after a connection error: only output is flushed.
    Closing(String),
}

/// A header block being assembled from HEADERS + CONTINUATION frames.
struct Block {
    /// When its HEADERS frame arrived.
    since: Instant,
    stream: u32,
    buf: Vec<u8>,
    end_stream: bool,
    priority: Option<Priority>,
}

/// Who we are on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    /// `next_stream`: the id our next request gets; `peer_max_streams`:
    /// the server's SETTINGS_MAX_CONCURRENT_STREAMS.
    Client {
        next_stream: u32,
        peer_max_streams: u32,
    },
}

pub struct Conn {
    role: Role,
    settings: Settings,
    phase: Phase,
    streams: BTreeMap<u32, Stream>,
    closed: VecDeque<(u32, Closed)>,
    /// Highest client stream id seen (processed or refused).
    last_stream: u32,
    block: Option<Block>,
    decoder: hpack::Decoder,
    encoder: hpack::Encoder,
    conn_send: SendWindow,
    conn_recv: RecvWindow,
    peer_window: u32,
    peer_max_frame: u32,
    settings_acked: bool,
    /// The final GOAWAY(NO_ERROR) went out: new streams are refused.
    draining: bool,
    /// Server role, graceful shutdown (RFC 9113 §6.8): the first GOAWAY
    /// (last stream 2^31-1) and a PING went out at this instant; the final
    /// GOAWAY follows the PING's ACK, or [`DRAIN_WAIT`] at the latest.
    drain_announced: Option<Instant>,
    /// Streams whose send window grew since `windows_opened` was last
    /// asked; `all_opened`: every stream's (connection window, SETTINGS).
    opened: Vec<u32>,
    all_opened: bool,
    peer_goaway: bool,
    budgets: Budgets,
    events: VecDeque<Inbound>,
    out: Vec<u8>,
}

impl Conn {
    /// Queues our preface: SETTINGS, after the client's magic string
    /// when we are the client.
    pub fn new(settings: Settings, role: Role) -> Conn {
        let settings = settings.clamped();
        let mut out = Vec::with_capacity(64);
        let mut params = vec![
            (
                setting::MAX_CONCURRENT_STREAMS,
                settings.max_concurrent_streams,
            ),
            (setting::INITIAL_WINDOW_SIZE, settings.initial_window_size),
            (setting::MAX_HEADER_LIST_SIZE, settings.max_header_list_size),
        ];
        if settings.max_frame_size != frame::MIN_MAX_FRAME {
            params.push((setting::MAX_FRAME_SIZE, settings.max_frame_size));
        }
        let phase = match role {
            Role::Server => Phase::Preface,
            Role::Client { .. } => {
                out.extend_from_slice(PREFACE);
                params.push((setting::ENABLE_PUSH, 0));
                Phase::FirstSettings
            }
        };
        frame::write_settings(&mut out, &params);
        Conn {
            role,
            settings,
            phase,
            streams: BTreeMap::new(),
            closed: VecDeque::new(),
            last_stream: 0,
            block: None,
            decoder: hpack::Decoder::default(),
            encoder: hpack::Encoder::default(),
            conn_send: SendWindow::new(DEFAULT_WINDOW),
            conn_recv: RecvWindow::new(DEFAULT_WINDOW, DEFAULT_WINDOW),
            peer_window: DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME,
            settings_acked: false,
            draining: false,
            drain_announced: None,
            opened: Vec::new(),
            all_opened: false,
            peer_goaway: false,
            budgets: Budgets::default(),
            events: VecDeque::new(),
            out,
        }
    }

    /// Consumes bytes; returns how many (all but an incomplete trailing
    /// frame, which the caller passes again with more).
    pub fn recv(&mut self, input: &[u8], now: Instant) -> usize {
        let mut pos = 0;
        loop {
            if self.is_closing() {
                return input.len();
            }
            let rest = input.get(pos..).unwrap_or_default();
            if self.phase == Phase::Preface {
                if rest.len() < PREFACE.len() {
                    if !PREFACE.starts_with(rest) {
                        self.fail(conn_err(code::PROTOCOL_ERROR, "invalid connection preface"));
                    }
                    return pos;
                }
                if rest.get(..PREFACE.len()) != Some(PREFACE) {
                    self.fail(conn_err(code::PROTOCOL_ERROR, "invalid connection preface"));
                    continue;
                }
                pos += PREFACE.len();
                self.phase = Phase::FirstSettings;
                continue;
            }
            let Some(head) = Head::parse(rest) else {
                return pos;
            };
            match self.frame(head, rest, now) {
                Ok(Some(n)) => pos += n,
                Ok(None) => return pos,
                Err(e) => self.fail(e),
            }
        }
    }

    /// One frame: `Ok(None)` if incomplete, else its length.
    fn frame(
        &mut self,
        head: Head,
        bytes: &[u8],
        now: Instant,
    ) -> Result<Option<usize>, ConnError> {
        if let Some(block) = &self.block {
            if head.kind != frame::CONTINUATION || head.stream != block.stream {
                return Err(conn_err(code::PROTOCOL_ERROR, "header block interrupted"));
            }
        }
        if self.phase == Phase::FirstSettings {
            if head.kind != frame::SETTINGS || head.flags & frame::ACK != 0 {
                return Err(conn_err(
                    code::PROTOCOL_ERROR,
                    "preface not followed by SETTINGS",
                ));
            }
            self.phase = Phase::Open;
        }
        match frame::decode(bytes, self.settings.max_frame_size) {
            Ok(None) => Ok(None),
            Ok(Some((f, n))) => {
                self.on_frame(f, now)?;
                Ok(Some(n))
            }
            Err(FrameError {
                code,
                stream: Some(id),
                what,
            }) => {
                log::debug!("h2 stream {id}: {what}");
                self.stream_error(id, code, now)?;
                Ok(Some(frame::HEADER_LEN + head.len as usize))
            }
            Err(e) => Err(e.into()),
        }
    }

    // ---- bookkeeping ----

    /// The receiving half of a new stream. Until our SETTINGS are
    /// acknowledged the peer assumes a 65535 window.
    fn new_recv(&self, content_length: Option<u64>) -> Recv {
        let iws = self.settings.initial_window_size;
        let believed = match self.settings_acked {
            true => iws,
            false => iws.max(DEFAULT_WINDOW),
        };
        Recv::new(RecvWindow::new(believed, iws), content_length)
    }

    fn closed_by(&self, id: u32) -> Option<Closed> {
        self.closed.iter().find(|(s, _)| *s == id).map(|(_, c)| *c)
    }

    /// A stream left the map: its unforwarded bytes go back to the
    /// connection window, and late frames for it are classified.
    fn forget(&mut self, id: u32, s: Stream, how: Closed) {
        self.release(usize::try_from(s.held).unwrap_or(usize::MAX));
        if self.closed.len() >= CLOSED_MEMORY {
            self.closed.pop_front();
        }
        self.closed.push_back((id, how));
        self.retarget();
    }

    /// Returns `n` bytes of the connection window.
    fn release(&mut self, n: usize) {
        if let Some(inc) = self.conn_recv.consumed(n) {
            frame::write_window_update(&mut self.out, 0, inc);
        }
    }

    /// The connection window follows the open streams.
    fn retarget(&mut self) {
        let n = u32::try_from(self.streams.len()).unwrap_or(u32::MAX).max(1);
        let target = self
            .settings
            .initial_window_size
            .saturating_mul(n)
            .max(DEFAULT_WINDOW);
        if let Some(inc) = self.conn_recv.set_target(target) {
            frame::write_window_update(&mut self.out, 0, inc);
        }
    }

    fn close_recv(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            match s.state.close_recv() {
                Some(state) => s.state = state,
                None => {
                    if let Some(s) = self.streams.remove(&id) {
                        self.forget(id, s, Closed::Other);
                    }
                }
            }
        }
    }

    /// Our side ended. A server that has answered in full while the
    /// request is still coming asks the client to stop with
    /// RST_STREAM(NO_ERROR) (RFC 9113 §8.1) instead of reading on.
    fn close_send(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let open_recv = s.state.recv().is_some();
        if self.role != Role::Server {
            match s.state.close_send() {
                Some(state) => s.state = state,
                None => {
                    if let Some(s) = self.streams.remove(&id) {
                        self.forget(id, s, Closed::Other);
                    }
                }
            }
            return;
        }
        if open_recv {
            frame::write_rst(&mut self.out, id, code::NO_ERROR);
        }
        if let Some(s) = self.streams.remove(&id) {
            let how = if open_recv {
                Closed::ByUs
            } else {
                Closed::Other
            };
            self.forget(id, s, how);
        }
    }

    /// RST_STREAM(code); the application hears of it if it knew the stream.
    fn stream_error(&mut self, id: u32, code: u32, now: Instant) -> Step {
        self.check_output()?;
        frame::write_rst(&mut self.out, id, code);
        match self.streams.remove(&id) {
            Some(s) => {
                self.forget(id, s, Closed::ByUs);
                self.events.push_back(Inbound::Reset { stream: id });
            }
            None => {
                if self.closed_by(id).is_none() {
                    if self.closed.len() >= CLOSED_MEMORY {
                        self.closed.pop_front();
                    }
                    self.closed.push_back((id, Closed::ByUs));
                }
            }
        }
        Ok(self.budgets.hit(Kind::Reset, now)?)
    }

    /// The last stream the peer opened that we processed (for GOAWAY).
    fn last_peer_stream(&self) -> u32 {
        match self.role {
            Role::Server => self.last_stream,
            Role::Client { .. } => 0,
        }
    }

    fn check_output(&self) -> Step {
        if self.out.len() > OUTPUT_HARD {
            return Err(conn_err(
                code::ENHANCE_YOUR_CALM,
                "peer not reading our output",
            ));
        }
        Ok(())
    }

    fn fail(&mut self, e: ConnError) {
        if self.is_closing() {
            return;
        }
        let last = self.last_peer_stream();
        frame::write_goaway(&mut self.out, last, e.code, e.why.as_bytes());
        for id in std::mem::take(&mut self.streams).into_keys() {
            self.events.push_back(Inbound::Reset { stream: id });
        }
        self.block = None;
        self.phase = Phase::Closing(e.why);
    }
}
