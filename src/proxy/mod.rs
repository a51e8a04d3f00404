//! The client ↔ upstream session: one `Conn` per client connection, an
//! explicit state machine driven by readiness events from the worker.

mod attempt;
mod body;
mod client;
mod conn;
mod env;
mod exchange;
#[cfg(test)]
mod exchange_tests;
mod h1_client;
mod h1_exchange;
mod h2_session;
mod h2_upstream;
mod h2_wire;
#[cfg(test)]
mod harness;
mod io;
mod limit;
mod pool;
mod queue;
mod record;
mod side;
mod stats_route;
mod upstream_h1;
mod upstream_h2;

pub use client::Client;
pub use conn::Conn;
pub use env::{Env, Outcome};
pub use h2_upstream::{H2Upstreams, SHARED};
pub use pool::Pool;
pub use queue::Queues;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    /// The upstream socket in this upstream slot.
    Upstream(usize),
}
