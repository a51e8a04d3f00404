//! What an exchange and its upstream sides pass each other: the request
//! as it goes out (`RequestOut`), what a step of an upstream side did
//! (`UpStep`), and where the response goes (`ResponseSink`, the client
//! side: an HTTP/2 stream, or an HTTP/1.1 connection).

/// Where a response goes: the client side of the exchange.
pub trait ResponseSink {
    /// The response head; `end`: no body follows.
    fn head(&mut self, status: u16, headers: &[(&[u8], &[u8])], end: bool);
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
    /// The response body is complete, its last `n` bytes sent in this step.
    Complete(usize),
    /// No connection: another server may be tried.
    ConnectFailed(std::io::Error),
    /// A pooled connection turned out closed before any response byte.
    Stale,
    Failed {
        doing: &'static str,
        /// The upstream sent something invalid (counted as such).
        bad_response: bool,
    },
}
