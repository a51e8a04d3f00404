//! The client ↔ upstream session: one `Conn` per client connection, an
//! explicit state machine driven by readiness events from the worker.

mod body;
mod conn;
mod io;
mod pool;

pub use conn::{Conn, Env, Outcome};
pub use pool::Pool;

/// Token layout shared with the worker: listeners and control tokens come
/// first, then two tokens per connection slot (client, upstream).
pub const FIRST_CONN_TOKEN: usize = 1 << 16;

pub fn client_token(slot: usize) -> mio::Token {
    mio::Token(FIRST_CONN_TOKEN + slot * 2)
}

pub fn upstream_token(slot: usize) -> mio::Token {
    mio::Token(FIRST_CONN_TOKEN + slot * 2 + 1)
}

/// Which socket of which slot a token names.
pub fn slot_of(token: mio::Token) -> Option<(usize, Side)> {
    let t = token.0.checked_sub(FIRST_CONN_TOKEN)?;
    Some((
        t / 2,
        if t % 2 == 0 {
            Side::Client
        } else {
            Side::Upstream
        },
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}
