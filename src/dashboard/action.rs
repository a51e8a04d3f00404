//! A dashboard change (`POST ?action=state|weight&server=UP/SRV&value=…`):
//! the runtime API's command line, run by the runtime API's own code
//! (`admin::execute`, level admin) against this worker's configuration
//! and the shared state, so a change from the page is exactly the change
//! the admin socket would make (checks, log line, effect on the pickers).

use crate::admin::commands::Effect;
use crate::admin::{self, Level, Origin, Reply, View};
use crate::config::Config;
use crate::shm::Shm;
use std::net::IpAddr;

/// What the page asked for, checked enough to build a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    State { server: &'a str, value: &'a str },
    Weight { server: &'a str, value: &'a str },
}

/// Why a change was not made: the answer's status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error: String,
}

fn bad(error: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        error: error.into(),
    }
}

impl<'a> Change<'a> {
    /// From the query's `action`, `server` and `value`. A word with white
    /// space or a control character is refused here: it would split into
    /// more words of the command line than the page meant.
    pub fn parse(
        action: Option<&'a str>,
        server: Option<&'a str>,
        value: Option<&'a str>,
    ) -> Result<Change<'a>, Refusal> {
        let word = |w: Option<&'a str>, what: &str| -> Result<&'a str, Refusal> {
            let w = w.unwrap_or("");
            if w.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(format!("invalid {what}")));
            }
            Ok(w)
        };
        let server = word(server, "server")?;
        if server.is_empty() {
            // What the runtime API answers to `set server` without one.
            return Err(bad("Require 'backend/server'."));
        }
        let value = word(value, "value")?;
        match action {
            Some("state") => Ok(Change::State { server, value }),
            Some("weight") => Ok(Change::Weight { server, value }),
            Some(_) => Err(bad("unknown action (state or weight)")),
            None => Err(bad("missing action (state or weight)")),
        }
    }

    /// The runtime API's command for it.
    pub fn command(&self) -> String {
        match self {
            Change::State { server, value } => format!("set server {server} state {value}"),
            Change::Weight { server, value } => format!("set server {server} weight {value}"),
        }
    }
}

/// Runs `change` as the runtime API would for an admin. Ok(true): runtime
/// state changed (the master must rewrite the state file).
pub fn apply(
    change: &Change,
    config: &Config,
    shm: &Shm,
    generation: u64,
    client: IpAddr,
) -> Result<bool, Refusal> {
    let view = View {
        config,
        shm,
        pid: std::process::id(),
        uptime_secs: 0,
        generation,
        workers: Vec::new(),
        totals: Default::default(),
        rates: Default::default(),
        stopping: false,
        started_unix: 0,
        // Draining generations are the master's to see; state and weight
        // commands touch the current generation's shared state only.
        draining: Vec::new(),
        origin: Origin::Dashboard(client),
    };
    let out = admin::execute(&change.command(), Level::Admin, &view);
    let text = match out.reply {
        Reply::Text(t) => t,
        // `set server` never answers otherwise; refuse rather than guess.
        _ => return Err(bad("unexpected runtime API answer")),
    };
    let text = text.trim();
    if !text.is_empty() {
        return Err(bad(text));
    }
    Ok(out.effect == Effect::StateChanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let c = Change::parse(Some("state"), Some("api/web1"), Some("maint")).unwrap();
        assert_eq!(c.command(), "set server api/web1 state maint");
        let c = Change::parse(Some("weight"), Some("api/web1"), Some("7")).unwrap();
        assert_eq!(c.command(), "set server api/web1 weight 7");
        assert_eq!(
            Change::parse(Some("weight"), Some("api/web1 state"), Some("7")),
            Err(bad("invalid server"))
        );
        assert_eq!(
            Change::parse(Some("state"), Some("a/b"), Some("maint\n")),
            Err(bad("invalid value"))
        );
        assert_eq!(
            Change::parse(Some("addr"), Some("a/b"), Some("1")),
            Err(bad("unknown action (state or weight)"))
        );
    }
}
