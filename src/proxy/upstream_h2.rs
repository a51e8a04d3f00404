//! An exchange's upstream side as a stream on a shared HTTP/2 upstream
//! connection (`h2_upstream`): open the stream once the connection is up,
//! send the body as the stream's window allows, and pass the response
//! head, body and trailers on as the sink takes them (the server's window
//! reopens only for what the client took).

use super::env::Env;
use super::h2_upstream::{ConnRef, ConnState};
use super::side::{RequestOut, ResponseSink, UpStep, Why};
use crate::h2::client::Event;
use crate::http;

pub struct UpstreamH2 {
    conn: ConnRef,
    stream: Option<u32>,
    /// END_STREAM (or trailers) went out.
    end_sent: bool,
    got_head: bool,
    /// The exchange was told all the body so far is sent (`BodyWritten`):
    /// the rest is the client's to send, its `client_body` timeout runs.
    told_client_owes: bool,
    /// The route's header rules (`response_headers` apply to the head).
    pub rules: Option<std::sync::Arc<crate::http::header_rules::Applied>>,
}

impl UpstreamH2 {
    pub fn new(conn: ConnRef) -> UpstreamH2 {
        UpstreamH2 {
            conn,
            stream: None,
            end_sent: false,
            got_head: false,
            told_client_owes: false,
            rules: None,
        }
    }

    /// No stream opened yet (the connection is being made or waited for):
    /// a timeout now is a connection error, later a response error.
    pub fn connecting(&self) -> bool {
        self.stream.is_none()
    }

    pub fn doing(&self) -> &'static str {
        match (self.stream, self.got_head) {
            (None, _) => "connecting (HTTP/2)",
            (Some(_), false) => "waiting for the response head",
            (Some(_), true) => "sending the response body",
        }
    }

    pub fn step(
        &mut self,
        env: &mut Env,
        req: &mut RequestOut,
        sink: &mut dyn ResponseSink,
        owner: usize,
    ) -> UpStep {
        let step = self.step_inner(env, req, sink, owner);
        // What this step queued goes out now, and what came is sorted.
        env.h2up
            .pump(self.conn, env.bufs, env.up_owners, env.now, env.wake);
        step
    }

    fn step_inner(
        &mut self,
        env: &mut Env,
        req: &mut RequestOut,
        sink: &mut dyn ResponseSink,
        owner: usize,
    ) -> UpStep {
        let Some(stream) = self.stream else {
            return self.open(env, req, owner);
        };
        if let Some(step) = self.send_body(env, req, stream) {
            return step;
        }
        let Some(ev) = env.h2up.next_event(self.conn, stream) else {
            return UpStep::Blocked;
        };
        match ev {
            Event::Response {
                status,
                headers,
                end_stream,
                ..
            } => {
                self.got_head = true;
                let mut fields = fields_for_client(status, &headers);
                if !headers.iter().any(|(n, _)| n == b"date") {
                    fields.push((b"date", env.date.text()));
                }
                if let Some(r) = &self.rules {
                    r.response().edit_borrowed(&mut fields);
                }
                sink.head(status, &fields, end_stream);
                UpStep::Head {
                    status,
                    framed_end: end_stream,
                }
            }
            Event::Interim {
                status, headers, ..
            } => {
                // 103 Early Hints and the like go out as they came, before
                // the final response, as from an HTTP/1.1 upstream.
                sink.interim(status, &fields_for_client(status, &headers));
                UpStep::Moved
            }
            Event::Data {
                data, end_stream, ..
            } => {
                let n = data.len().min(sink.capacity());
                if n == 0 && !data.is_empty() {
                    env.h2up.unread(
                        self.conn,
                        stream,
                        Event::Data {
                            stream,
                            data,
                            end_stream,
                        },
                    );
                    return UpStep::Blocked;
                }
                let all = n == data.len();
                let taken = sink.data(&data[..n], end_stream && all);
                env.h2up.consumed(self.conn, stream, taken);
                if taken < data.len() {
                    let rest = data[taken..].to_vec();
                    env.h2up.unread(
                        self.conn,
                        stream,
                        Event::Data {
                            stream,
                            data: rest,
                            end_stream,
                        },
                    );
                    return UpStep::BodySent(taken);
                }
                if end_stream {
                    UpStep::Complete(taken)
                } else {
                    UpStep::BodySent(taken)
                }
            }
            Event::Trailers { trailers, .. } => {
                let fields: Vec<(&[u8], &[u8])> = trailers
                    .iter()
                    .filter(|(n, _)| !http::rewrite::is_framing_or_hop(n))
                    .collect();
                if fields.is_empty() {
                    sink.data(&[], true);
                } else {
                    sink.trailers(&fields);
                }
                UpStep::Complete(0)
            }
            Event::Refused { .. } if !self.got_head => {
                self.stream = None;
                UpStep::Refused {
                    doing: "waiting for the response head (stream refused, not processed)",
                }
            }
            Event::Reset { .. } | Event::Refused { .. } => {
                self.stream = None;
                UpStep::Failed {
                    doing: if self.got_head {
                        "sending the response body"
                    } else {
                        "waiting for the response head"
                    },
                    bad_response: false,
                    // The connection's failure if it died (a TLS 1.3
                    // alert refusing our certificate comes after the
                    // handshake), else the server's RST_STREAM.
                    why: match env.h2up.death(self.conn) {
                        Some(failure) => Why::said(failure.to_string()),
                        None => Why::said("the stream was reset"),
                    },
                }
            }
        }
    }

    /// Opens the stream once the connection is ready.
    fn open(&mut self, env: &mut Env, req: &mut RequestOut, owner: usize) -> UpStep {
        match env.h2up.state(self.conn, owner) {
            ConnState::Connecting => UpStep::Blocked,
            // Its log line names the stage: "TLS handshake with ADDR".
            ConnState::Failed(why) => UpStep::ConnectFailed(why.into_establish_error()),
            ConnState::Ready => {
                let Some(head) = req.h2 else {
                    return UpStep::Failed {
                        doing: "starting the request",
                        bad_response: false,
                        why: Why::said("no HTTP/2 request head was made"),
                    };
                };
                let end = req.ended && req.body.is_empty() && req.trailers.is_none();
                match env.h2up.open(self.conn, head, end, owner) {
                    Some(stream) => {
                        self.stream = Some(stream);
                        self.end_sent = end;
                        UpStep::Connected
                    }
                    None => UpStep::Blocked,
                }
            }
        }
    }

    /// Sends what the client sent so far, as the stream's window allows.
    fn send_body(&mut self, env: &mut Env, req: &mut RequestOut, stream: u32) -> Option<UpStep> {
        if !req.body.is_empty() {
            let cap = env.h2up.capacity(self.conn, stream);
            if cap == 0 {
                return None;
            }
            let n = req.body.len().min(cap);
            let last = req.ended && n == req.body.len() && req.trailers.is_none();
            let sent = env.h2up.send_data(self.conn, stream, &req.body[..n], last);
            req.body.drain(..sent);
            self.end_sent |= last && sent == n;
            self.told_client_owes = req.body.is_empty();
            return Some(if req.body.is_empty() {
                UpStep::BodyWritten
            } else {
                UpStep::Moved
            });
        }
        if req.ended && !self.end_sent {
            self.end_sent = true;
            match req.trailers {
                Some(t) => {
                    let fields: Vec<(&[u8], &[u8])> = t.iter().collect();
                    env.h2up.send_trailers(self.conn, stream, &fields);
                }
                None => {
                    env.h2up.send_data(self.conn, stream, &[], true);
                }
            }
            return Some(UpStep::Moved);
        }
        if !req.ended && !self.told_client_owes {
            // Nothing to send and more to come (a stream opened before its
            // first DATA): the client owes it, even before a first byte.
            self.told_client_owes = true;
            return Some(UpStep::BodyWritten);
        }
        None
    }

    /// The exchange is over: a stream still open is cancelled.
    pub fn close(self, env: &mut Env) {
        env.h2up.release(self.conn, self.stream, env.now);
        env.h2up
            .pump(self.conn, env.bufs, env.up_owners, env.now, env.wake);
    }
}

/// A response head's fields as the client gets them: without the
/// Content-Length a 1xx or 204 must not carry.
fn fields_for_client(status: u16, headers: &crate::h2::HeaderList) -> Vec<(&[u8], &[u8])> {
    let no_length = http::rewrite::length_forbidden(status);
    headers
        .iter()
        .filter(|(n, _)| !(no_length && *n == b"content-length"))
        .collect()
}
