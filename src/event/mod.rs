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
