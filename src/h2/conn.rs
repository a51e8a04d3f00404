//! [`Conn`]: one HTTP/2 connection, sans-IO, in either role; `ServerConn`
//! and `ClientConn` are thin layers over it that differ only in who opens
//! streams and which head (request or response) a stream starts with.
//!
//! The caller feeds bytes (`recv`), takes events, calls the `send_*`
//! methods, and writes `output()`. Stream errors are answered with
//! RST_STREAM and an `Inbound::Reset` (if the application knew the stream);
//! connection errors queue GOAWAY, after which the connection only flushes
//! its output (`is_closing`, `error`).

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

/// What the peer did, for the role layers to map to their events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Request {
        stream: u32,
        head: RequestHead,
        end_stream: bool,
    },
    Response {
        stream: u32,
        status: u16,
        headers: HeaderList,
        end_stream: bool,
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
    /// GOAWAY(NO_ERROR) sent by `go_away`: new streams are refused.
    draining: bool,
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

    fn on_frame(&mut self, f: Frame<'_>, now: Instant) -> Step {
        match f {
            Frame::Data {
                stream,
                data,
                end_stream,
                flow_len,
            } => self.on_data(stream, data, end_stream, flow_len, now),
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
                priority,
            } => {
                let block = Block {
                    stream,
                    buf: block.to_vec(),
                    end_stream,
                    priority,
                };
                self.on_fragment(block, end_headers, now)
            }
            Frame::Continuation {
                block: part,
                end_headers,
                ..
            } => {
                let mut block = self.block.take().ok_or_else(|| {
                    conn_err(code::PROTOCOL_ERROR, "CONTINUATION without HEADERS")
                })?;
                if part.is_empty() && !end_headers {
                    self.budgets.hit(Kind::EmptyContinuation, now)?;
                }
                block.buf.extend_from_slice(part);
                self.on_fragment(block, end_headers, now)
            }
            Frame::Priority { .. } => Ok(self.budgets.hit(Kind::Priority, now)?),
            Frame::RstStream { stream, .. } => self.on_rst(stream, now),
            Frame::Settings { ack, params } => self.on_settings(ack, params, now),
            Frame::PushPromise { .. } => {
                Err(conn_err(code::PROTOCOL_ERROR, "PUSH_PROMISE from a client"))
            }
            Frame::Ping { ack, data } => {
                self.budgets.hit(Kind::Ping, now)?;
                if !ack {
                    self.check_output()?;
                    frame::write_ping(&mut self.out, true, data);
                }
                Ok(())
            }
            Frame::GoAway { code, last_stream } => {
                log::debug!("h2 peer GOAWAY code {code} last stream {last_stream}");
                self.on_goaway(last_stream);
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                self.on_window_update(stream, increment, now)
            }
            Frame::Unknown { .. } => Ok(self.budgets.hit(Kind::Unknown, now)?),
        }
    }

    /// A header block fragment: bounded (CVE-2024-27316: before it is
    /// decoded), then kept for its CONTINUATION or handled.
    fn on_fragment(&mut self, block: Block, end_headers: bool, now: Instant) -> Step {
        self.check_block(&block)?;
        if end_headers {
            self.on_block(block, now)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    fn on_rst(&mut self, stream: u32, now: Instant) -> Step {
        if stream > self.last_stream {
            let why = "RST_STREAM on an idle stream";
            return Err(conn_err(code::PROTOCOL_ERROR, why));
        }
        if let Some(s) = self.streams.remove(&stream) {
            self.forget(stream, s, Closed::Other);
            self.events.push_back(Inbound::Reset { stream });
            // CVE-2023-44487 counts these.
            self.budgets.hit(Kind::Reset, now)?;
        }
        Ok(())
    }

    fn on_goaway(&mut self, last_stream: u32) {
        self.peer_goaway = true;
        // Our streams above `last_stream` were not processed: the
        // application may retry them elsewhere.
        if self.role != Role::Server {
            let unprocessed = self.streams.split_off(&last_stream.saturating_add(1));
            for (id, s) in unprocessed {
                self.forget(id, s, Closed::Other);
                self.events.push_back(Inbound::Reset { stream: id });
            }
        }
    }

    /// The block must not exceed the list size limit by much.
    fn check_block(&self, block: &Block) -> Step {
        if block.buf.len() > self.settings.max_header_list_size as usize + BLOCK_SLACK {
            return Err(conn_err(
                code::ENHANCE_YOUR_CALM,
                "header block too large (CONTINUATION flood)",
            ));
        }
        Ok(())
    }

    fn on_data(
        &mut self,
        id: u32,
        data: &[u8],
        end_stream: bool,
        flow_len: u32,
        now: Instant,
    ) -> Step {
        if data.is_empty() && !end_stream {
            self.budgets.hit(Kind::EmptyData, now)?;
        }
        self.conn_recv.receive(flow_len).map_err(|_| {
            conn_err(
                code::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            )
        })?;
        let early = |s: &Stream| matches!(s.next, Next::Response { .. });
        let Some(s) = self.streams.get_mut(&id).filter(|s| !early(s)) else {
            return self.on_stray_data(id, flow_len, now);
        };
        let Some(recv) = s.state.recv() else {
            self.release(flow_len as usize);
            return self.stream_error(id, code::STREAM_CLOSED, now);
        };
        if recv.window.receive(flow_len).is_err() {
            self.release(flow_len as usize);
            return self.stream_error(id, code::FLOW_CONTROL_ERROR, now);
        }
        // Padding never reaches the application: hand it back now.
        let padding = (flow_len as usize).saturating_sub(data.len());
        let stream_update = recv.window.consumed(padding);
        let checked = recv.count(data.len()).and_then(|()| match end_stream {
            true => recv.finish(),
            false => Ok(()),
        });
        s.held += data.len() as u64;
        if let Some(inc) = stream_update {
            frame::write_window_update(&mut self.out, id, inc);
        }
        self.release(padding);
        if let Err(why) = checked {
            log::debug!("h2 stream {id}: {why}");
            return self.stream_error(id, code::PROTOCOL_ERROR, now);
        }
        if !data.is_empty() || end_stream {
            self.events.push_back(Inbound::Data {
                stream: id,
                data: data.to_vec(),
                end_stream,
            });
        }
        if end_stream {
            self.close_recv(id);
        }
        Ok(())
    }

    /// DATA for no live stream, or before a response head: dropped (its
    /// bytes go back to the connection window) and answered.
    fn on_stray_data(&mut self, id: u32, flow_len: u32, now: Instant) -> Step {
        self.release(flow_len as usize);
        if id > self.last_stream {
            return Err(conn_err(code::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        match (self.streams.contains_key(&id), self.closed_by(id)) {
            (true, _) => self.stream_error(id, code::PROTOCOL_ERROR, now),
            (false, Some(Closed::ByUs)) => Ok(()),
            (false, _) => self.stream_error(id, code::STREAM_CLOSED, now),
        }
    }

    fn on_block(&mut self, block: Block, now: Instant) -> Step {
        let Block {
            stream: id,
            buf,
            end_stream,
            priority,
        } = block;
        // Decoded whatever becomes of the stream: the table must stay in step.
        let list = match self
            .decoder
            .decode(&buf, self.settings.max_header_list_size as usize)
        {
            Ok(list) => Ok(list),
            Err(DecodeError::Compression(why)) => {
                return Err(conn_err(code::COMPRESSION_ERROR, why))
            }
            Err(DecodeError::TooLarge) => {
                Err("header list larger than SETTINGS_MAX_HEADER_LIST_SIZE")
            }
        };
        if id % 2 == 0 {
            return Err(conn_err(
                code::PROTOCOL_ERROR,
                "HEADERS on an even stream id",
            ));
        }
        if priority.is_some_and(|p| p.depends_on == id) {
            if id > self.last_stream {
                self.last_stream = id;
            }
            return self.stream_error(id, code::PROTOCOL_ERROR, now);
        }
        match self.streams.get(&id).map(|s| s.next) {
            Some(Next::Trailers) => return self.on_trailers(id, list, end_stream, now),
            Some(Next::Response { head_request }) => {
                return self.on_response(id, list, end_stream, head_request, now)
            }
            None => {}
        }
        if id <= self.last_stream {
            return match self.closed_by(id) {
                Some(Closed::ByUs) => Ok(()),
                Some(Closed::Other) => {
                    Err(conn_err(code::STREAM_CLOSED, "HEADERS on a closed stream"))
                }
                None => Err(conn_err(code::PROTOCOL_ERROR, "stream id not increasing")),
            };
        }
        if self.role != Role::Server {
            return Err(conn_err(code::PROTOCOL_ERROR, "HEADERS on an idle stream"));
        }
        self.on_request(id, list, end_stream, now)
    }

    /// Server role: HEADERS opening a new stream.
    fn on_request(&mut self, id: u32, list: Decoded, end_stream: bool, now: Instant) -> Step {
        self.last_stream = id;
        self.budgets.stream_opened();
        if self.draining || self.streams.len() >= self.settings.max_concurrent_streams as usize {
            return self.stream_error(id, code::REFUSED_STREAM, now);
        }
        let head = match list.and_then(headers::request) {
            Ok(head) => head,
            Err(why) => {
                log::debug!("h2 stream {id}: malformed request: {why}");
                return self.stream_error(id, code::PROTOCOL_ERROR, now);
            }
        };
        let recv = self.new_recv(head.content_length);
        if end_stream && recv.finish().is_err() {
            log::debug!("h2 stream {id}: content-length without DATA");
            return self.stream_error(id, code::PROTOCOL_ERROR, now);
        }
        let send = SendWindow::new(self.peer_window);
        let state = match end_stream {
            true => State::HalfClosedRemote { send },
            false => State::Open { recv, send },
        };
        self.streams.insert(
            id,
            Stream {
                state,
                next: Next::Trailers,
                held: 0,
            },
        );
        self.retarget();
        self.events.push_back(Inbound::Request {
            stream: id,
            head,
            end_stream,
        });
        Ok(())
    }

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

    /// Client role: a response head (or an informational 1xx one, skipped).
    fn on_response(
        &mut self,
        id: u32,
        list: Decoded,
        end_stream: bool,
        head_request: bool,
        now: Instant,
    ) -> Step {
        let (status, headers, length) = match list.and_then(headers::response) {
            Ok(parsed) => parsed,
            Err(why) => {
                log::debug!("h2 stream {id}: malformed response: {why}");
                return self.stream_error(id, code::PROTOCOL_ERROR, now);
            }
        };
        if (100..200).contains(&status) {
            return match end_stream {
                true => self.stream_error(id, code::PROTOCOL_ERROR, now),
                false => Ok(()),
            };
        }
        let no_body = head_request || status == 204 || status == 304;
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        s.next = Next::Trailers;
        let Some(recv) = s.state.recv() else {
            return self.stream_error(id, code::STREAM_CLOSED, now);
        };
        recv.expect(if no_body { None } else { length });
        if end_stream && recv.finish().is_err() {
            return self.stream_error(id, code::PROTOCOL_ERROR, now);
        }
        self.events.push_back(Inbound::Response {
            stream: id,
            status,
            headers,
            end_stream,
        });
        if end_stream {
            self.close_recv(id);
        }
        Ok(())
    }

    fn on_trailers(&mut self, id: u32, list: Decoded, end_stream: bool, now: Instant) -> Step {
        let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.state.recv()) else {
            return self.stream_error(id, code::STREAM_CLOSED, now);
        };
        let checked = match end_stream {
            false => Err("second HEADERS without END_STREAM"),
            true => recv
                .finish()
                .and_then(|()| list.and_then(headers::trailers)),
        };
        match checked {
            Ok(trailers) => {
                self.events.push_back(Inbound::Trailers {
                    stream: id,
                    trailers,
                });
                self.close_recv(id);
                Ok(())
            }
            Err(why) => {
                log::debug!("h2 stream {id}: {why}");
                self.stream_error(id, code::PROTOCOL_ERROR, now)
            }
        }
    }

    fn on_settings(&mut self, ack: bool, params: &[u8], now: Instant) -> Step {
        self.budgets.hit(Kind::Settings, now)?;
        if ack {
            if !self.settings_acked {
                self.settings_acked = true;
                let delta =
                    i64::from(self.settings.initial_window_size) - i64::from(DEFAULT_WINDOW);
                if delta < 0 {
                    for s in self.streams.values_mut() {
                        if let Some(recv) = s.state.recv() {
                            recv.window.adjust(delta);
                        }
                    }
                }
            }
            return Ok(());
        }
        for (id, value) in frame::settings_params(params) {
            match id {
                setting::HEADER_TABLE_SIZE => self.encoder.set_peer_table_size(value),
                setting::INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - i64::from(self.peer_window);
                    self.peer_window = value;
                    for s in self.streams.values_mut() {
                        if let Some(send) = s.state.send() {
                            send.adjust(delta).map_err(|_| {
                                conn_err(
                                    code::FLOW_CONTROL_ERROR,
                                    "SETTINGS_INITIAL_WINDOW_SIZE overflows a window",
                                )
                            })?;
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => self.peer_max_frame = value,
                setting::MAX_CONCURRENT_STREAMS => {
                    if let Role::Client {
                        peer_max_streams, ..
                    } = &mut self.role
                    {
                        *peer_max_streams = value;
                    }
                }
                _ => {}
            }
        }
        self.check_output()?;
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, increment: u32, now: Instant) -> Step {
        self.budgets.hit(Kind::WindowUpdate, now)?;
        if id == 0 {
            return self
                .conn_send
                .grant(increment)
                .map_err(|_| conn_err(code::FLOW_CONTROL_ERROR, "connection window above 2^31-1"));
        }
        if id > self.last_stream {
            return Err(conn_err(
                code::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let overflow = match self.streams.get_mut(&id).and_then(|s| s.state.send()) {
            Some(send) => send.grant(increment).is_err(),
            None => false,
        };
        if overflow {
            return self.stream_error(id, code::FLOW_CONTROL_ERROR, now);
        }
        Ok(())
    }

    // ---- bookkeeping ----

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

    // ---- the application's side ----

    pub fn next_event(&mut self) -> Option<Inbound> {
        self.events.pop_front()
    }

    fn live_send(&mut self, stream: u32) -> bool {
        !self.is_closing()
            && self
                .streams
                .get_mut(&stream)
                .is_some_and(|s| s.state.send().is_some())
    }

    /// HPACK-encodes and writes a head (pseudo-headers first) or trailers
    /// (`pseudo` empty, `end_stream`); ignores a stream that is gone.
    pub fn send_fields(
        &mut self,
        stream: u32,
        pseudo: &[(&[u8], &[u8])],
        fields: &[(&[u8], &[u8])],
        end_stream: bool,
    ) {
        if !self.live_send(stream) {
            return;
        }
        let mut block = Vec::new();
        let all = pseudo.iter().chain(fields).copied();
        self.encoder.encode(all, &mut block);
        frame::write_headers(
            &mut self.out,
            stream,
            &block,
            end_stream,
            self.peer_max_frame,
        );
        if end_stream {
            self.close_send(stream);
        }
    }

    /// Client role: whether a new stream may be opened now (the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS, GOAWAY, ids left).
    pub fn can_open_stream(&self) -> bool {
        match self.role {
            Role::Client {
                next_stream,
                peer_max_streams,
            } => {
                !self.is_closing()
                    && !self.peer_goaway
                    && !self.draining
                    && next_stream <= frame::MAX_WINDOW
                    && self.streams.len() < peer_max_streams as usize
            }
            Role::Server => false,
        }
    }

    /// Client role: opens the next stream (its head is written by the
    /// caller with `send_fields`). `head_request`: the response has no body.
    pub fn open_stream(&mut self, head_request: bool) -> Option<u32> {
        if !self.can_open_stream() {
            return None;
        }
        let Role::Client { next_stream, .. } = &mut self.role else {
            return None;
        };
        let id = *next_stream;
        *next_stream = id.saturating_add(2);
        self.last_stream = id;
        let state = State::Open {
            recv: self.new_recv(None),
            send: SendWindow::new(self.peer_window),
        };
        let next = Next::Response { head_request };
        self.streams.insert(
            id,
            Stream {
                state,
                next,
                held: 0,
            },
        );
        self.budgets.stream_opened();
        self.retarget();
        Some(id)
    }

    /// Writes as much of `data` as the windows (and our output bound)
    /// allow; returns the bytes accepted. `end_stream` applies only if all
    /// of `data` was accepted.
    pub fn send_data(&mut self, stream: u32, data: &[u8], end_stream: bool) -> usize {
        if !self.live_send(stream) {
            return 0;
        }
        let room = OUTPUT_SOFT.saturating_sub(self.out.len());
        let n = data.len().min(self.send_window(stream)).min(room);
        let Some(taken) = data.get(..n) else {
            return 0;
        };
        let end = end_stream && n == data.len();
        if taken.is_empty() {
            if end {
                frame::write_data(&mut self.out, stream, &[], true);
                self.close_send(stream);
            }
            return 0;
        }
        let mut chunks = taken.chunks(self.peer_max_frame as usize).peekable();
        while let Some(chunk) = chunks.next() {
            frame::write_data(&mut self.out, stream, chunk, end && chunks.peek().is_none());
        }
        self.conn_send.take(n);
        if let Some(send) = self.streams.get_mut(&stream).and_then(|s| s.state.send()) {
            send.take(n);
        }
        if end {
            self.close_send(stream);
        }
        n
    }

    /// min(stream, connection) send window; 0 if the stream is gone.
    pub fn send_window(&self, stream: u32) -> usize {
        match self.streams.get(&stream).map(|s| s.state) {
            Some(State::Open { send, .. } | State::HalfClosedRemote { send }) => {
                send.available().min(self.conn_send.available())
            }
            _ => 0,
        }
    }

    /// RST_STREAM from our side (e.g. the upstream failed mid-body).
    pub fn reset(&mut self, stream: u32, code: u32) {
        if self.is_closing() {
            return;
        }
        if let Some(s) = self.streams.remove(&stream) {
            frame::write_rst(&mut self.out, stream, code);
            self.forget(stream, s, Closed::ByUs);
        }
    }

    /// The application forwarded `n` bytes of the stream's request body:
    /// reopen the windows (batched).
    pub fn consumed(&mut self, stream: u32, n: usize) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let n = n.min(usize::try_from(s.held).unwrap_or(usize::MAX));
        s.held -= n as u64;
        let update = s.state.recv().and_then(|r| r.window.consumed(n));
        if let Some(inc) = update {
            frame::write_window_update(&mut self.out, stream, inc);
        }
        self.release(n);
    }

    /// Graceful drain: GOAWAY(NO_ERROR, last stream); later requests are
    /// refused, those in flight finish.
    pub fn go_away(&mut self) {
        if self.is_closing() || self.draining {
            return;
        }
        self.draining = true;
        let last = self.last_peer_stream();
        frame::write_goaway(&mut self.out, last, code::NO_ERROR, b"");
    }

    pub fn output(&self) -> &[u8] {
        &self.out
    }

    pub fn advance_output(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// A connection error queued GOAWAY: flush the output, then close.
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_))
    }

    /// Nothing left to do: the transport can close.
    pub fn is_done(&self) -> bool {
        self.out.is_empty()
            && (self.is_closing()
                || ((self.draining || self.peer_goaway) && self.streams.is_empty()))
    }

    /// Why the connection is being closed.
    pub fn error(&self) -> Option<&str> {
        match &self.phase {
            Phase::Closing(why) => Some(why),
            _ => None,
        }
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// False while our output is over its bound: a client that does not read
    /// cannot make us buffer more by sending.
    pub fn wants_read(&self) -> bool {
        !self.is_closing() && self.out.len() < OUTPUT_SOFT
    }
}

/// The methods both roles expose unchanged, written once: `ServerConn` and
/// `ClientConn` each wrap a `Conn` in a field named `conn`.
macro_rules! common_api {
    () => {
        /// Consumes bytes; returns how many (all but an incomplete trailing
        /// frame, which the caller passes again with more). After a
        /// connection error it queues GOAWAY and goes closing.
        pub fn recv(&mut self, input: &[u8], now: std::time::Instant) -> usize {
            self.conn.recv(input, now)
        }
        /// Writes as much of `data` as the stream and connection windows
        /// (and our output bound) allow, in frames of at most the peer's
        /// max frame size; returns the bytes accepted. `end_stream` applies
        /// only if all of `data` was accepted; empty `data` with
        /// `end_stream` sends an empty END_STREAM DATA frame.
        pub fn send_data(&mut self, stream: u32, data: &[u8], end_stream: bool) -> usize {
            self.conn.send_data(stream, data, end_stream)
        }
        /// Trailers, ending our side of the stream.
        pub fn send_trailers(&mut self, stream: u32, trailers: &[(&[u8], &[u8])]) {
            self.conn.send_fields(stream, &[], trailers, true)
        }
        /// min(stream, connection) send window; 0 if the stream is gone.
        pub fn send_window(&self, stream: u32) -> usize {
            self.conn.send_window(stream)
        }
        /// RST_STREAM from our side (e.g. the other side failed mid-body).
        pub fn reset(&mut self, stream: u32, code: u32) {
            self.conn.reset(stream, code)
        }
        /// The application forwarded `n` bytes of the stream's DATA: reopen
        /// the windows (WINDOW_UPDATE, batched).
        pub fn consumed(&mut self, stream: u32, n: usize) {
            self.conn.consumed(stream, n)
        }
        /// Graceful drain: GOAWAY(NO_ERROR); streams in flight finish.
        pub fn go_away(&mut self) {
            self.conn.go_away()
        }
        pub fn output(&self) -> &[u8] {
            self.conn.output()
        }
        pub fn advance_output(&mut self, n: usize) {
            self.conn.advance_output(n)
        }
        /// A connection error queued GOAWAY: flush the output, then close.
        pub fn is_closing(&self) -> bool {
            self.conn.is_closing()
        }
        /// Closing or drained with no streams, and the output empty: the
        /// transport can close.
        pub fn is_done(&self) -> bool {
            self.conn.is_done()
        }
        /// Why the connection is being closed (for a log line naming the peer).
        pub fn error(&self) -> Option<&str> {
            self.conn.error()
        }
        /// Streams not yet closed both ways.
        pub fn open_streams(&self) -> usize {
            self.conn.open_streams()
        }
        /// False while our output is over its bound (back-pressure: a peer
        /// that does not read cannot grow our memory).
        pub fn wants_read(&self) -> bool {
            self.conn.wants_read()
        }
    };
}
pub(super) use common_api;
