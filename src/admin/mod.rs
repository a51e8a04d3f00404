//! The HAProxy-compatible runtime API (DESIGN §6): a Unix socket served by
//! the master (`server`), the commands (`commands`), the CSV and state
//! formats (`stat`).

pub mod commands;
pub mod server;
pub mod stat;

pub use commands::{execute, View};
pub use server::{AdminServer, Level, Reply};
