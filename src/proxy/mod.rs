//! The client ↔ upstream session: one `Conn` per client connection, an
//! explicit state machine driven by readiness events from the worker.

mod attempt;
mod body;
mod conn;
#[cfg(test)]
mod exchange_tests;
#[cfg(test)]
mod harness;
mod io;
mod pool;

pub use conn::{Conn, Env, ExchangeSpares, Outcome};
pub use pool::Pool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}
