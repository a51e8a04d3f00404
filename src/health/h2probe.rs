//! The HTTP/2 check of `protocol: h2` / `h2c` upstreams: the client
//! preface and SETTINGS, one `GET` stream (`:authority` as the traffic's
//! Host), then the response HEADERS' `:status`. Servers that speak only
//! HTTP/2 would answer an HTTP/1.1 check with garbage or a GOAWAY, so a
//! check in the traffic's protocol is the only one that tells UP from DOWN.
//! The connection is simply closed once the status is known: a check has
//! nothing else to say, and the server treats it like any lost client.

use super::outcome::Outcome;
use crate::h2::{ClientConn, ClientEvent, RequestHead, Settings};
use std::time::Instant;

pub(super) struct H2Probe {
    conn: ClientConn,
    /// The check's stream (`None` only if the connection refused to open
    /// one, which a fresh connection never does).
    stream: Option<u32>,
    /// A trailing incomplete frame, passed again with the next bytes.
    pending: Vec<u8>,
}

impl H2Probe {
    pub fn new(scheme: &str, authority: &str, path: &str) -> H2Probe {
        // The body is never read: the default (small) windows are plenty.
        let mut conn = ClientConn::new(Settings::default());
        let head = RequestHead::new(
            b"GET",
            scheme.as_bytes(),
            Some(authority.as_bytes()),
            path.as_bytes(),
            [(&b"user-agent"[..], &b"forklb-health"[..])],
            None,
        );
        let stream = conn.send_request(&head, true);
        H2Probe {
            conn,
            stream,
            pending: Vec::new(),
        }
    }

    pub fn output(&self) -> &[u8] {
        self.conn.output()
    }

    pub fn advance_output(&mut self, n: usize) {
        self.conn.advance_output(n)
    }

    pub fn recv(&mut self, bytes: &[u8]) -> Outcome {
        let Some(stream) = self.stream else {
            return Outcome::Failed("HTTP/2: no stream could be opened".to_owned());
        };
        self.pending.extend_from_slice(bytes);
        let used = self.conn.recv(&self.pending, Instant::now());
        self.pending.drain(..used.min(self.pending.len()));
        while let Some(event) = self.conn.next_event() {
            match event {
                ClientEvent::Response {
                    stream: s, status, ..
                } if s == stream => return Outcome::Status(status),
                ClientEvent::Reset { stream: s } | ClientEvent::Refused { stream: s }
                    if s == stream =>
                {
                    return Outcome::Failed("HTTP/2 stream reset by the server".to_owned())
                }
                _ => {}
            }
        }
        if let Some(why) = self.conn.error() {
            return Outcome::Failed(format!("HTTP/2 error: {why}"));
        }
        if self.conn.is_done() {
            // GOAWAY below our stream, with nothing in flight.
            return Outcome::Failed("HTTP/2 connection closed by the server".to_owned());
        }
        Outcome::Pending
    }

    pub fn eof(&mut self) -> Outcome {
        Outcome::Failed("connection closed before an HTTP/2 response".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::{Event, ServerConn};

    /// Moves bytes between the probe and an in-memory server until both
    /// are quiet; returns the probe's last outcome.
    fn pump(probe: &mut H2Probe, server: &mut ServerConn) -> Outcome {
        let mut last = Outcome::Pending;
        for _ in 0..100 {
            let (a, b) = (probe.output().to_vec(), server.output().to_vec());
            if a.is_empty() && b.is_empty() {
                return last;
            }
            probe.advance_output(a.len());
            server.advance_output(b.len());
            server.recv(&a, Instant::now());
            if !b.is_empty() {
                last = probe.recv(&b);
                if last != Outcome::Pending {
                    return last;
                }
            }
        }
        panic!("pump never settled");
    }

    fn answer(status: u16) -> Outcome {
        let mut probe = H2Probe::new("http", "app.test:8080", "/ready");
        let mut server = ServerConn::new(Settings::default());
        assert_eq!(pump(&mut probe, &mut server), Outcome::Pending);
        let stream = match server.next_event() {
            Some(Event::Request { stream, head, .. }) => {
                assert_eq!(head.method(), b"GET");
                assert_eq!(head.path(), b"/ready");
                assert_eq!(head.authority(), Some(&b"app.test:8080"[..]));
                stream
            }
            other => panic!("{other:?}"),
        };
        server.send_headers(stream, status, &[], true);
        pump(&mut probe, &mut server)
    }

    #[test]
    fn reads_the_status_of_the_response_headers() {
        assert_eq!(answer(200), Outcome::Status(200));
        assert_eq!(answer(503), Outcome::Status(503));
    }

    #[test]
    fn a_reset_stream_or_garbage_fails() {
        let mut probe = H2Probe::new("http", "a", "/");
        let mut server = ServerConn::new(Settings::default());
        pump(&mut probe, &mut server);
        let Some(Event::Request { stream, .. }) = server.next_event() else {
            panic!("no request")
        };
        server.reset(stream, crate::h2::code::REFUSED_STREAM);
        assert!(matches!(pump(&mut probe, &mut server), Outcome::Failed(_)));

        // An HTTP/1.1 server's answer to the preface.
        let mut probe = H2Probe::new("http", "a", "/");
        let out = probe.recv(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        assert!(
            matches!(out, Outcome::Failed(ref m) if m.contains("HTTP/2")),
            "{out:?}"
        );
        assert!(matches!(probe.eof(), Outcome::Failed(_)));
    }
}
