//! The application's side: events out, heads and data in, windows,
//! resets, drain, and the output buffer.

use super::*;

impl Conn {
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
        // Encoded in place behind room for the frame header; a block
        // larger than a frame (rare) is moved out and split.
        let start = self.out.len();
        self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
        let all = pseudo.iter().chain(fields).copied();
        self.encoder.encode(all, &mut self.out);
        let len = self.out.len() - start - frame::HEADER_LEN;
        if len <= self.peer_max_frame as usize {
            let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
            let head = frame::head_bytes(len, frame::HEADERS, flags, stream);
            if let Some(room) = self.out.get_mut(start..start + frame::HEADER_LEN) {
                room.copy_from_slice(&head);
            }
        } else {
            let block = self.out.split_off(start + frame::HEADER_LEN);
            self.out.truncate(start);
            frame::write_headers(
                &mut self.out,
                stream,
                &block,
                end_stream,
                self.peer_max_frame,
            );
        }
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
        let mut frames = 0;
        while let Some(chunk) = chunks.next() {
            frame::write_data(&mut self.out, stream, chunk, end && chunks.peek().is_none());
            frames += 1;
        }
        self.budgets.data_frames_sent(frames);
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

    /// What `send_data` would take now: the send window, and the room
    /// left in the output before its soft bound.
    pub fn send_capacity(&self, stream: u32) -> usize {
        self.send_window(stream)
            .min(OUTPUT_SOFT.saturating_sub(self.out.len()))
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

    /// Immediate drain: GOAWAY(NO_ERROR, last stream); later requests are
    /// refused, those in flight finish.
    pub fn go_away(&mut self) {
        self.final_goaway();
    }

    pub(super) fn final_goaway(&mut self) {
        if self.is_closing() || self.draining {
            return;
        }
        self.draining = true;
        self.drain_announced = None;
        let last = self.last_peer_stream();
        frame::write_goaway(&mut self.out, last, code::NO_ERROR, b"");
    }

    /// Graceful shutdown as RFC 9113 §6.8 advises: GOAWAY with the last
    /// stream 2^31-1 and a PING now (requests already on their way are
    /// still served), the final GOAWAY with the real last stream once the
    /// PING is answered or [`DRAIN_WAIT`] has passed (`drain_tick`).
    /// The client role (which accepts no streams) goes away at once.
    pub fn shutdown(&mut self, now: Instant) {
        if self.is_closing() || self.draining || self.drain_announced.is_some() {
            return;
        }
        if self.role != Role::Server || self.phase != Phase::Open {
            return self.final_goaway();
        }
        self.drain_announced = Some(now);
        frame::write_goaway(&mut self.out, frame::MAX_WINDOW, code::NO_ERROR, b"");
        frame::write_ping(&mut self.out, false, DRAIN_PING);
    }

    /// The final GOAWAY of a graceful shutdown whose PING went unanswered.
    pub fn drain_tick(&mut self, now: Instant) {
        if self.drain_deadline().is_some_and(|at| at <= now) {
            self.final_goaway();
        }
    }

    /// When `drain_tick` sends the final GOAWAY if the PING's ACK has not.
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.drain_announced.map(|at| at + DRAIN_WAIT)
    }

    /// The final GOAWAY went out (graceful shutdown or `go_away`).
    pub fn drained(&self) -> bool {
        self.draining
    }

    /// When the header block being received (HEADERS without END_HEADERS,
    /// waiting for its CONTINUATION) began.
    pub fn header_block_since(&self) -> Option<Instant> {
        self.block.as_ref().map(|b| b.since)
    }

    /// The header block took too long: the connection ends (GOAWAY), as
    /// no other frame may come before its CONTINUATION.
    pub fn header_block_timeout(&mut self) {
        if self.block.is_some() {
            self.fail(conn_err(
                code::PROTOCOL_ERROR,
                "header block not completed in time (CONTINUATION missing)",
            ));
        }
    }

    /// Streams whose send window grew since the last call (WINDOW_UPDATE):
    /// `(true, _)` if every stream's may have (connection window,
    /// SETTINGS_INITIAL_WINDOW_SIZE).
    pub fn windows_opened(&mut self) -> (bool, Vec<u32>) {
        let all = std::mem::take(&mut self.all_opened);
        let mut ids = std::mem::take(&mut self.opened);
        if all {
            ids.clear();
        }
        (all, ids)
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
        /// What `send_data` would take now (window and output room).
        pub fn send_capacity(&self, stream: u32) -> usize {
            self.conn.send_capacity(stream)
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
        /// Immediate drain: GOAWAY(NO_ERROR) with the last stream; streams
        /// in flight finish.
        pub fn go_away(&mut self) {
            self.conn.go_away()
        }
        /// Graceful shutdown in two GOAWAYs (RFC 9113 §6.8; see `Conn`).
        pub fn shutdown(&mut self, now: std::time::Instant) {
            self.conn.shutdown(now)
        }
        /// Sends the final GOAWAY of a shutdown once its wait is over.
        pub fn drain_tick(&mut self, now: std::time::Instant) {
            self.conn.drain_tick(now)
        }
        /// When `drain_tick` has something to do.
        pub fn drain_deadline(&self) -> Option<std::time::Instant> {
            self.conn.drain_deadline()
        }
        /// The final GOAWAY went out.
        pub fn drained(&self) -> bool {
            self.conn.drained()
        }
        /// When the header block still waiting for CONTINUATION began.
        pub fn header_block_since(&self) -> Option<std::time::Instant> {
            self.conn.header_block_since()
        }
        /// Ends the connection over a header block never completed.
        pub fn header_block_timeout(&mut self) {
            self.conn.header_block_timeout()
        }
        /// Streams whose send window grew since the last call; `(true, _)`:
        /// possibly every stream's.
        pub fn windows_opened(&mut self) -> (bool, Vec<u32>) {
            self.conn.windows_opened()
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
pub(crate) use common_api;
