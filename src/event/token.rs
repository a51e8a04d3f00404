//! The worker's token layout: listeners and control tokens come first,
//! then one token per client connection slot, then one per upstream
//! socket. An upstream socket keeps its token for its whole life — while
//! it serves a client connection and while it idles in the pool — so
//! pooling never touches the epoll set; `UpstreamOwners` says whose it is.

// The small functions are `#[inline]`: they run on every event, from
// other modules' codegen units.

use super::Slab;
use mio::Token;

pub const FIRST_CONN_TOKEN: usize = 1 << 16;
pub const FIRST_UPSTREAM_TOKEN: usize = 1 << 40;

/// The worker's signal pipe and its channel to the master, just below the
/// connection tokens (listeners take 0, 1, 2, ...).
pub const SIGNAL_TOKEN: Token = Token(FIRST_CONN_TOKEN - 1);
pub const CHANNEL_TOKEN: Token = Token(FIRST_CONN_TOKEN - 2);
/// The worker's eventfd: a server slot its queued requests wait for freed.
pub const QUEUE_TOKEN: Token = Token(FIRST_CONN_TOKEN - 3);

/// Marks an upstream socket that idles in the pool (no owning connection).
pub const POOLED: usize = usize::MAX;

/// Upstream socket slot → the client connection slot using it, or `POOLED`.
pub type UpstreamOwners = Slab<usize>;

#[inline]
pub fn client_token(slot: usize) -> Token {
    Token(FIRST_CONN_TOKEN + slot)
}

#[inline]
pub fn upstream_token(up_slot: usize) -> Token {
    Token(FIRST_UPSTREAM_TOKEN + up_slot)
}

/// What a token names.
pub enum TokenKind {
    Client(usize),
    Upstream(usize),
}

#[inline]
pub fn token_kind(token: Token) -> Option<TokenKind> {
    if let Some(up) = token.0.checked_sub(FIRST_UPSTREAM_TOKEN) {
        return Some(TokenKind::Upstream(up));
    }
    token.0.checked_sub(FIRST_CONN_TOKEN).map(TokenKind::Client)
}
