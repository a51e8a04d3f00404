//! The client ↔ upstream session: one `Conn` per client connection, an
//! explicit state machine driven by readiness events from the worker.

mod body;
mod conn;
mod io;
mod pool;
mod stream;

pub use conn::{Conn, Env, ExchangeSpares, Outcome};
pub use pool::Pool;
pub use stream::Stream;

/// Token layout shared with the worker: listeners and control tokens come
/// first, then one token per client connection slot, then one per upstream
/// socket. An upstream socket keeps its token for its whole life — while
/// it serves a client connection and while it idles in the pool — so
/// pooling never touches the epoll set; `UpstreamOwners` says whose it is.
pub const FIRST_CONN_TOKEN: usize = 1 << 16;
pub const FIRST_UPSTREAM_TOKEN: usize = 1 << 40;

/// Marks an upstream socket that idles in the pool (no owning connection).
pub const POOLED: usize = usize::MAX;

/// Upstream socket slot → the client connection slot using it, or `POOLED`.
pub type UpstreamOwners = crate::worker::Slab<usize>;

pub fn client_token(slot: usize) -> mio::Token {
    mio::Token(FIRST_CONN_TOKEN + slot)
}

pub fn upstream_token(up_slot: usize) -> mio::Token {
    mio::Token(FIRST_UPSTREAM_TOKEN + up_slot)
}

/// What a token names.
pub enum TokenKind {
    Client(usize),
    Upstream(usize),
}

pub fn token_kind(token: mio::Token) -> Option<TokenKind> {
    if let Some(up) = token.0.checked_sub(FIRST_UPSTREAM_TOKEN) {
        return Some(TokenKind::Upstream(up));
    }
    token.0.checked_sub(FIRST_CONN_TOKEN).map(TokenKind::Client)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}
