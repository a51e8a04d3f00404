//! Building blocks of the worker's event loop that both the loop
//! (`worker`) and the connections it drives (`proxy`, `health`) use: the
//! slab of stable slots, the token layout, and a connection's byte stream
//! (plain or TLS). It sits below both, so `worker` imports `proxy` and
//! never the other way round.

mod slab;
mod stream;
pub mod token;

pub use slab::Slab;
pub use stream::{EstablishError, Stream};

/// Whether the peer is gone for good: an error (a reset) or both halves
/// closed (`EPOLLHUP`), not only its FIN (it may still read).
#[inline]
pub fn is_reset(ev: &mio::event::Event) -> bool {
    ev.is_error() || ev.is_write_closed()
}

/// What a readiness event says about a socket: readable, writable, and
/// whether the peer's FIN or an error came (`hup`, see `proxy::io`).
#[inline]
pub fn readiness(ev: &mio::event::Event) -> (bool, bool, bool) {
    let r = ev.is_readable() || ev.is_read_closed() || ev.is_error();
    let w = ev.is_writable() || ev.is_write_closed() || ev.is_error();
    let hup = ev.is_read_closed() || ev.is_error();
    (r, w, hup)
}
