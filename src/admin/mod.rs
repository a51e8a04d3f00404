//! The HAProxy-compatible runtime API (DESIGN §6): a Unix socket served by
//! the master (`server`), the commands (`commands`), what they see of the
//! instance (`view`), the CSV, typed, JSON and state formats (`stat`, with HAProxy's field
//! table in `stat_fields` and the arguments of `show stat` in `stat_query`).

pub mod commands;
pub mod dynamic;
pub mod info;
pub mod server;
pub mod stat;
pub mod stat_fields;
pub mod stat_query;
pub mod table;
pub mod typed;
pub mod usage;
pub mod view;

pub use commands::execute;
pub use server::{AdminServer, Level, Reply};
pub use view::{Origin, View};
