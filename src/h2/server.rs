//! [`ServerConn`]: the server side of one HTTP/2 connection, sans-IO.
//!
//! The glue feeds it bytes (`recv`), takes events (`next_event`), answers
//! with `send_headers`/`send_data`/`send_trailers`, reports forwarded
//! request bytes with `consumed`, and writes `output()`.

use super::conn::{common_api, Conn, Inbound, Role};
use super::{HeaderList, RequestHead, Settings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Request {
        stream: u32,
        head: RequestHead,
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

pub struct ServerConn {
    conn: Conn,
}

impl ServerConn {
    /// Queues the server preface (our SETTINGS); expects the client's.
    pub fn new(settings: Settings) -> ServerConn {
        ServerConn {
            conn: Conn::new(settings, Role::Server),
        }
    }

    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            return Some(match self.conn.next_event()? {
                Inbound::Request {
                    stream,
                    head,
                    end_stream,
                } => Event::Request {
                    stream,
                    head,
                    end_stream,
                },
                Inbound::Data {
                    stream,
                    data,
                    end_stream,
                } => Event::Data {
                    stream,
                    data,
                    end_stream,
                },
                Inbound::Trailers { stream, trailers } => Event::Trailers { stream, trailers },
                Inbound::Reset { stream } => Event::Reset { stream },
                // Only the client role produces these.
                Inbound::Response { .. } | Inbound::Interim { .. } | Inbound::Refused { .. } => {
                    continue
                }
            });
        }
    }

    /// HPACK-encodes a response head (split into CONTINUATION frames by
    /// the peer's max frame size); ignores a stream that is gone.
    pub fn send_headers(
        &mut self,
        stream: u32,
        status: u16,
        headers: &[(&[u8], &[u8])],
        end_stream: bool,
    ) {
        let s = status.clamp(100, 999);
        let digits = [
            b'0' + (s / 100) as u8,
            b'0' + (s / 10 % 10) as u8,
            b'0' + (s % 10) as u8,
        ];
        self.conn
            .send_fields(stream, &[(b":status", &digits)], headers, end_stream);
    }

    common_api!();
}
