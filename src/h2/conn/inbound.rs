//! The peer's frames: one handler per frame type, and the header block
//! handling for requests (server role), responses (client role) and
//! trailers.

use std::time::Instant;

use super::*;

impl Conn {
    pub(super) fn on_frame(&mut self, f: Frame<'_>, now: Instant) -> Step {
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
                self.check_block(block.len())?;
                if end_headers {
                    // The usual case: the whole block in one frame, decoded
                    // where it lies.
                    return self.on_block(stream, block, end_stream, priority, now);
                }
                self.block = Some(Block {
                    since: now,
                    stream,
                    buf: block.to_vec(),
                    end_stream,
                    priority,
                });
                Ok(())
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
                self.check_block(block.buf.len())?;
                if end_headers {
                    let Block {
                        stream,
                        buf,
                        end_stream,
                        priority,
                        ..
                    } = block;
                    return self.on_block(stream, &buf, end_stream, priority, now);
                }
                self.block = Some(block);
                Ok(())
            }
            Frame::Priority { .. } => Ok(self.budgets.hit(Kind::Priority, now)?),
            Frame::RstStream { stream, code } => self.on_rst(stream, code, now),
            Frame::Settings { ack, params } => self.on_settings(ack, params, now),
            Frame::PushPromise { .. } => {
                Err(conn_err(code::PROTOCOL_ERROR, "PUSH_PROMISE from a client"))
            }
            Frame::Ping { ack, data } => {
                self.budgets.hit(Kind::Ping, now)?;
                if !ack {
                    self.check_output()?;
                    frame::write_ping(&mut self.out, true, data);
                } else if data == DRAIN_PING {
                    self.final_goaway();
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

    fn on_rst(&mut self, stream: u32, reason: u32, now: Instant) -> Step {
        if stream > self.last_stream {
            let why = "RST_STREAM on an idle stream";
            return Err(conn_err(code::PROTOCOL_ERROR, why));
        }
        if let Some(mut s) = self.streams.remove(&stream) {
            // Client role: a server that has sent its whole response may
            // stop our upload with NO_ERROR (RFC 9113 §8.1): not a failure.
            let answered = self.role != Role::Server && s.state.recv().is_none();
            self.forget(stream, s, Closed::Other);
            if answered && reason == code::NO_ERROR {
                return Ok(());
            }
            let refused = self.role != Role::Server && reason == code::REFUSED_STREAM;
            self.events.push_back(match refused {
                true => Inbound::Refused { stream },
                false => Inbound::Reset { stream },
            });
            // CVE-2023-44487 counts these.
            self.budgets.hit(Kind::Reset, now)?;
        }
        Ok(())
    }

    fn on_goaway(&mut self, last_stream: u32) {
        self.peer_goaway = true;
        // Server role: the connection ends once the streams in flight are
        // served; our own GOAWAY tells the client which of its streams we
        // processed (RFC 9113 §6.8: "SHOULD always send a GOAWAY frame
        // before closing"), as Go's server answers one.
        if self.role == Role::Server {
            self.final_goaway();
        }
        // Our streams above `last_stream` were not processed: the
        // application may send them again on another connection.
        if self.role != Role::Server {
            let unprocessed = self.streams.split_off(&last_stream.saturating_add(1));
            for (id, s) in unprocessed {
                self.forget(id, s, Closed::Other);
                self.events.push_back(Inbound::Refused { stream: id });
            }
        }
    }

    /// A header block (so far) must not exceed the list size limit by much
    /// (CVE-2024-27316: checked before it is decoded).
    fn check_block(&self, len: usize) -> Step {
        if len > self.settings.max_header_list_size as usize + BLOCK_SLACK {
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

    fn on_block(
        &mut self,
        id: u32,
        buf: &[u8],
        end_stream: bool,
        priority: Option<Priority>,
        now: Instant,
    ) -> Step {
        // Decoded whatever becomes of the stream: the table must stay in step.
        let list = match self
            .decoder
            .decode(buf, self.settings.max_header_list_size as usize)
        {
            Ok(list) => Ok(list),
            Err(DecodeError::Compression(why)) => {
                return Err(conn_err(code::COMPRESSION_ERROR, why))
            }
            Err(DecodeError::TooLarge) => {
                Err("header list larger than SETTINGS_MAX_HEADER_LIST_SIZE")
            }
        };
        if id.is_multiple_of(2) {
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

    /// Client role: a response head, or an informational 1xx one (relayed
    /// as `Interim`).
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
            // An interim head cannot end the stream, and HTTP/2 has no
            // 101 (RFC 9113 §8.6): both are malformed.
            if end_stream || status == 101 {
                return self.stream_error(id, code::PROTOCOL_ERROR, now);
            }
            self.events.push_back(Inbound::Interim {
                stream: id,
                status,
                headers,
            });
            return Ok(());
        }
        let no_body = head_request || status == 204 || status == 304;
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        s.next = Next::Trailers;
        let Some(recv) = s.state.recv() else {
            return self.stream_error(id, code::STREAM_CLOSED, now);
        };
        // No content (RFC 9113 §8.1.1): a DATA frame with any makes the
        // response malformed. Its end is the head's: what the server sends
        // after it, if anything, never reaches the client.
        recv.expect(if no_body { Some(0) } else { length });
        if end_stream && recv.finish().is_err() {
            return self.stream_error(id, code::PROTOCOL_ERROR, now);
        }
        self.events.push_back(Inbound::Response {
            stream: id,
            status,
            headers,
            end_stream: end_stream || no_body,
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
                    self.all_opened |= delta > 0;
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
            self.all_opened = true;
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
        // Kept for the client role only (shared upstream connections ask).
        let client = self.role != Role::Server;
        if client && !self.opened.contains(&id) && self.streams.contains_key(&id) {
            self.opened.push(id);
        }
        if overflow {
            return self.stream_error(id, code::FLOW_CONTROL_ERROR, now);
        }
        Ok(())
    }
}
