//! What an exchange and its upstream sides pass each other: the request
//! as it goes out (`RequestOut`), what a step of an upstream side did
//! (`UpStep`), and where the response goes (`ResponseSink`, the client
//! side: an HTTP/2 stream, or an HTTP/1.1 connection).

use super::h1_client::{self, H1Client};

/// Where a response goes: the client side of the exchange.
pub trait ResponseSink {
    /// The response head; `end`: no body follows.
    fn head(&mut self, status: u16, headers: &[(&[u8], &[u8])], end: bool);
    /// An interim (1xx) response head; the final one follows (103 Early
    /// Hints, a `100 Continue` the upstream sent).
    fn interim(&mut self, status: u16, headers: &[(&[u8], &[u8])]);
    /// How many body bytes `data` would take now.
    fn capacity(&self) -> usize;
    /// Body bytes; returns how many were taken (≤ `capacity`). `end` holds
    /// only if all were taken.
    fn data(&mut self, bytes: &[u8], end: bool) -> usize;
    /// `n` request body bytes went upstream: the client may send more.
    fn body_forwarded(&mut self, n: usize);
    /// Trailer fields, ending the response.
    fn trailers(&mut self, fields: &[(&[u8], &[u8])]);
    /// The response cannot be completed (the upstream failed mid-body).
    fn abort(&mut self);
    /// An HTTP/1.1 client connection that takes an HTTP/1.1 upstream's
    /// messages as they are (pass-through: heads rewritten once, bodies
    /// moved socket to socket with their framing): its end of the relay.
    /// None for sinks that need the response re-framed.
    fn h1_client(&mut self) -> Option<H1Client<'_>> {
        None
    }
}

/// The request as the exchange holds it: the head, then body bytes not
/// sent yet (the sender drains `body`).
pub struct RequestOut<'a> {
    /// The HTTP/1.1 head (empty for an HTTP/2 upstream).
    pub head: &'a [u8],
    /// The request for an HTTP/2 upstream.
    pub h2: Option<&'a crate::h2::RequestHead>,
    /// Trailer fields to send after the body (HTTP/2 upstreams).
    pub trailers: Option<&'a crate::h2::HeaderList>,
    pub body: &'a mut Vec<u8>,
    /// No more body will come from the client.
    pub ended: bool,
}

/// What one step did.
pub enum UpStep {
    Moved,
    /// Moved, and now the upstream's answer is awaited: nothing more to
    /// do until its socket is readable (ends the run without another step).
    Awaiting,
    /// TCP (and TLS) are up: the request goes out now.
    Connected,
    /// All body bytes handed over so far are written.
    BodyWritten,
    Blocked,
    /// The response head went to the sink; `framed_end`: it has no body.
    Head {
        status: u16,
        framed_end: bool,
    },
    BodySent(usize),
    /// Pass-through: bytes of the request went upstream; `client_owes`:
    /// all the client sent so far is out, the rest of its body is awaited.
    Sent {
        client_owes: bool,
    },
    /// Pass-through: a `101 Switching Protocols` was relayed; the upstream
    /// connection now belongs to the client's tunnel.
    Upgrade,
    /// Pass-through: the client's request body is unacceptable (400, 413);
    /// the upload stops and the connection closes after the answer.
    ClientError(u16),
    /// Pass-through: the client connection failed or closed mid-request.
    ClientGone,
    /// The response body is complete, its last `n` bytes sent in this step.
    Complete(usize),
    /// No connection (connect or the TLS handshake failed): another server
    /// may be tried.
    ConnectFailed(crate::event::EstablishError),
    /// A pooled connection turned out closed before any response byte.
    Stale,
    /// A new connection was closed or reset by the server before any
    /// response byte (it died, or restarted): a request that can be sent
    /// again may go to another server.
    Closed {
        doing: &'static str,
        why: Why,
    },
    /// An HTTP/2 server did not process the request (REFUSED_STREAM, or
    /// its GOAWAY's last stream is below it): it may go again, whatever
    /// its method, if it has no body to send again.
    Refused {
        doing: &'static str,
    },
    Failed {
        doing: &'static str,
        /// The upstream sent something invalid (counted as such).
        bad_response: bool,
        why: Why,
    },
}

/// Why an upstream step failed: the reason in the exchange's one error-log
/// line about it, which names the server and the client ("upstream ADDR
/// (server U/S) failed while DOING: WHY, client: PEER").
#[derive(Debug)]
pub enum Why {
    /// The server closed its connection (end of file).
    Closed,
    /// Reading or writing its connection failed: a reset, or a TLS alert
    /// (TLS 1.3 delivers a server's refusal of our client certificate on
    /// the first read after the handshake).
    Io(std::io::Error),
    /// What the server sent wrong, or what else went wrong, in words.
    Said(String),
}

impl Why {
    /// The end of a read or write that moved nothing: `Eof` or `Failed`.
    pub fn of(io: super::io::Io) -> Why {
        match io {
            super::io::Io::Failed(e) => Why::Io(e),
            _ => Why::Closed,
        }
    }

    pub fn said(text: impl Into<String>) -> Why {
        Why::Said(text.into())
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Closed => f.write_str("it closed the connection prematurely"),
            Why::Io(e) => e.fmt(f),
            Why::Said(text) => f.write_str(text),
        }
    }
}

/// A pass-through exchange answers through `H1Client` and its error pages;
/// these serve an upstream side that re-frames (none does for this client
/// today), so that nothing is lost if one does.
impl ResponseSink for H1Client<'_> {
    fn head(&mut self, status: u16, headers: &[(&[u8], &[u8])], _end: bool) {
        if let Some(out) = self.out.as_mut() {
            h1_client::write_head(out, status, headers);
        }
    }

    fn interim(&mut self, status: u16, headers: &[(&[u8], &[u8])]) {
        // HTTP/1.0 clients do not understand them (RFC 9110 §15.2).
        if self.req.minor >= 1 {
            if let Some(out) = self.out.as_mut() {
                h1_client::write_head(out, status, headers);
            }
        }
    }

    fn capacity(&self) -> usize {
        0
    }

    fn data(&mut self, _bytes: &[u8], _end: bool) -> usize {
        0
    }

    fn body_forwarded(&mut self, _n: usize) {}

    fn trailers(&mut self, _fields: &[(&[u8], &[u8])]) {}

    fn abort(&mut self) {
        self.req.aborted = true;
        self.req.keep_after = false;
    }

    fn h1_client(&mut self) -> Option<H1Client<'_>> {
        Some(self.reborrow())
    }
}
