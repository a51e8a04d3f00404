//! HTTP/2, sans-IO: bytes in, events and bytes out, no sockets and no timers
//! (the caller passes `now`). The worker's H2 session glue owns the socket
//! and TLS and maps events to exchanges.
//!
//! - `frame`: frame header, typed frames, parse and write.
//! - `hpack`: header compression (a wrapper around `loona-hpack`) with our
//!   limits on the dynamic table and the decoded list.
//! - `fields`: [`HeaderList`], a header list in one buffer.
//! - `headers`: RFC 9113 §8 field validation and request/response mapping.
//! - `flow`: send and receive windows.
//! - `limits`: per-connection flood budgets (rapid reset, PING, SETTINGS, ...).
//! - `stream`: one stream's state (RFC 9113 §5.1), shared by both roles.
//! - `conn`: the connection state machine both roles share (private):
//!   `conn/inbound.rs` handles the peer's frames, `conn/outbound.rs` the
//!   application's calls.
//! - `server`: [`ServerConn`], the server side of a connection.
//! - `client`: [`ClientConn`], the client side (HTTP/2 upstreams).
//!
//! Driving a `ServerConn` (the glue's loop, per readiness event):
//! 1. while `wants_read()`: read, `recv(&buf, now)`, keep the unconsumed tail;
//! 2. drain `next_event()`: `Request` starts an exchange; `Data` chunks are
//!    forwarded and reported with `consumed(stream, n)` once written
//!    upstream (that alone reopens the client's window); `Reset` aborts;
//! 3. answer with `send_headers`, then `send_data` up to `send_window`
//!    (retry the rest after the next `recv`: WINDOW_UPDATEs arrive there);
//! 4. write `output()`, `advance_output(n)`; close when `is_done()`, and
//!    log `error()` with the client's address when `is_closing()`.

pub mod client;
mod conn;
pub mod fields;
pub mod flow;
pub mod frame;
pub mod headers;
pub mod hpack;
pub mod limits;
pub mod server;
pub mod stream;
#[cfg(test)]
mod tests;

pub use client::{ClientConn, Event as ClientEvent};
pub use headers::{HeaderList, RequestHead};
pub use server::{Event, ServerConn};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Error codes (RFC 9113 §7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const INTERNAL_ERROR: u32 = 0x2;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const SETTINGS_TIMEOUT: u32 = 0x4;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const CONNECT_ERROR: u32 = 0xa;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
    pub const INADEQUATE_SECURITY: u32 = 0xc;
    pub const HTTP_1_1_REQUIRED: u32 = 0xd;
}

/// Our side's settings (config `http2:`), advertised in the preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_concurrent_streams: u32,
    /// Per stream; the connection window grows with the open streams.
    pub initial_window_size: u32,
    pub max_header_list_size: u32,
    pub max_frame_size: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_concurrent_streams: 128,
            initial_window_size: 65_535,
            max_header_list_size: 65_536,
            max_frame_size: frame::MIN_MAX_FRAME,
        }
    }
}

impl Settings {
    /// Values a peer can live with: a frame size and window inside the
    /// RFC's ranges, at least one stream.
    pub fn clamped(self) -> Settings {
        Settings {
            max_concurrent_streams: self.max_concurrent_streams.max(1),
            initial_window_size: self.initial_window_size.min(frame::MAX_WINDOW),
            max_header_list_size: self.max_header_list_size.max(1024),
            max_frame_size: self
                .max_frame_size
                .clamp(frame::MIN_MAX_FRAME, frame::MAX_MAX_FRAME),
        }
    }
}
