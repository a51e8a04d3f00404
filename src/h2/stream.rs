//! One stream's state (RFC 9113 §5.1), shared by the server and client
//! roles. Idle streams are not stored, and closed ones are dropped (a short
//! list of recently closed ids lives in the connection), so only the three
//! live states exist here; each carries the windows of the directions it
//! still has.

use super::flow::{RecvWindow, SendWindow};
use super::headers::Malformed;

/// The receiving half: the window and the content-length check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recv {
    pub window: RecvWindow,
    expected: Option<u64>,
    received: u64,
}

impl Recv {
    pub fn new(window: RecvWindow, content_length: Option<u64>) -> Recv {
        Recv {
            window,
            expected: content_length,
            received: 0,
        }
    }

    /// Counts payload bytes against a declared content-length.
    pub fn count(&mut self, n: usize) -> Result<(), Malformed> {
        self.received = self.received.saturating_add(n as u64);
        match self.expected {
            Some(len) if self.received > len => Err("DATA longer than content-length"),
            _ => Ok(()),
        }
    }

    /// The declared length, once known (a response head arrives after the
    /// stream was opened). `None`: no check (HEAD, 204, 304).
    pub fn expect(&mut self, content_length: Option<u64>) {
        self.expected = content_length;
    }

    /// The body ended (END_STREAM).
    pub fn finish(&self) -> Result<(), Malformed> {
        match self.expected {
            Some(len) if self.received != len => Err("DATA shorter than content-length"),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Both directions open.
    Open { recv: Recv, send: SendWindow },
    /// The peer ended its side (END_STREAM received); we still send.
    HalfClosedRemote { send: SendWindow },
    /// We ended our side; the peer still sends.
    HalfClosedLocal { recv: Recv },
}

impl State {
    pub fn send(&mut self) -> Option<&mut SendWindow> {
        match self {
            State::Open { send, .. } | State::HalfClosedRemote { send } => Some(send),
            State::HalfClosedLocal { .. } => None,
        }
    }

    pub fn recv(&mut self) -> Option<&mut Recv> {
        match self {
            State::Open { recv, .. } | State::HalfClosedLocal { recv } => Some(recv),
            State::HalfClosedRemote { .. } => None,
        }
    }

    /// END_STREAM received. `None`: the stream is closed.
    pub fn close_recv(self) -> Option<State> {
        match self {
            State::Open { send, .. } => Some(State::HalfClosedRemote { send }),
            State::HalfClosedRemote { .. } | State::HalfClosedLocal { .. } => None,
        }
    }

    /// END_STREAM sent. `None`: the stream is closed.
    pub fn close_send(self) -> Option<State> {
        match self {
            State::Open { recv, .. } => Some(State::HalfClosedLocal { recv }),
            State::HalfClosedRemote { .. } | State::HalfClosedLocal { .. } => None,
        }
    }
}

/// What a HEADERS frame from the peer means on this stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Client role: the response head (1xx heads may come first).
    /// `head_request`: a response to HEAD has no body whatever its length.
    Response { head_request: bool },
    /// Trailers (the head has been received).
    Trailers,
}

/// A live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    pub state: State,
    pub next: Next,
    /// DATA bytes handed to the application and not yet reported
    /// forwarded: returned to the connection window when the stream goes.
    pub held: u64,
}

/// How a recently closed stream ended: frames that race a reset we sent
/// are ignored; on other closed streams they are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    ByUs,
    Other,
}
