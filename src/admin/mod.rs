//! The HAProxy-compatible runtime API (DESIGN §6): a Unix socket served by
//! the master (`server`), the commands (`commands`), what they see of the
//! instance (`view`), the CSV and state formats (`stat`).

pub mod commands;
pub mod server;
pub mod stat;
pub mod view;

pub use commands::execute;
pub use server::{AdminServer, Level, Reply};
pub use view::View;
