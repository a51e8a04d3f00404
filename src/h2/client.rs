//! [`ClientConn`]: the client side of one HTTP/2 connection (forklb to an
//! `h2`/`h2c` upstream), sans-IO, over the same `Conn` as the server side.

use super::conn::{common_api, Conn, Inbound, Role};
use super::{headers, HeaderList, RequestHead, Settings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The final response head; `end_stream` for a response without
    /// content (HEAD, 204, 304) even if the server has not ended the stream.
    Response {
        stream: u32,
        status: u16,
        headers: HeaderList,
        end_stream: bool,
    },
    /// An informational (1xx) head before the final one (103 Early Hints).
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
    /// Ends the response.
    Trailers { stream: u32, trailers: HeaderList },
    /// The stream is gone (server RST_STREAM, a stream error, the
    /// connection failed).
    Reset { stream: u32 },
    /// The server did not process the stream (RST_STREAM REFUSED_STREAM,
    /// or above the last stream of its GOAWAY): safe to send again,
    /// whatever the method (RFC 9113 §8.7).
    Refused { stream: u32 },
}

pub struct ClientConn {
    conn: Conn,
}

impl ClientConn {
    /// Queues the client preface and our SETTINGS (push disabled).
    pub fn new(settings: Settings) -> ClientConn {
        let role = Role::Client {
            next_stream: 1,
            // Until the server's SETTINGS say otherwise (RFC 9113 §5.1.2
            // has no limit; a conservative start avoids a burst of
            // refused streams).
            peer_max_streams: 100,
        };
        ClientConn {
            conn: Conn::new(settings, role),
        }
    }

    /// Whether `send_request` would open a stream now (the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS, GOAWAY, closing).
    pub fn can_open_stream(&self) -> bool {
        self.conn.can_open_stream()
    }

    /// Opens a stream and writes the request head; `None` if no stream can
    /// be opened now. Hop-by-hop fields are dropped.
    pub fn send_request(&mut self, head: &RequestHead, end_stream: bool) -> Option<u32> {
        let stream = self.conn.open_stream(head.method() == b"HEAD")?;
        let mut pseudo: Vec<(&[u8], &[u8])> = vec![(b":method", head.method())];
        if head.method() != b"CONNECT" {
            pseudo.push((b":scheme", head.scheme()));
            pseudo.push((b":path", head.path()));
        }
        if let Some(authority) = head.authority() {
            pseudo.push((b":authority", authority));
        }
        let fields: Vec<(&[u8], &[u8])> = head
            .headers()
            .iter()
            .filter(|(n, v)| headers::check_connection_specific(n, v).is_ok())
            .collect();
        self.conn.send_fields(stream, &pseudo, &fields, end_stream);
        Some(stream)
    }

    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            return Some(match self.conn.next_event()? {
                Inbound::Response {
                    stream,
                    status,
                    headers,
                    end_stream,
                } => Event::Response {
                    stream,
                    status,
                    headers,
                    end_stream,
                },
                Inbound::Interim {
                    stream,
                    status,
                    headers,
                } => Event::Interim {
                    stream,
                    status,
                    headers,
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
                Inbound::Refused { stream } => Event::Refused { stream },
                // Only the server role produces these.
                Inbound::Request { .. } => continue,
            });
        }
    }

    common_api!();
}
