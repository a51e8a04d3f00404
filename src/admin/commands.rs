//! The runtime API's commands, with HAProxy's output formats and error
//! strings so operators' scripts work unchanged. Everything is read from and
//! written to the shared state, so one answer covers every worker and every
//! change reaches all workers at their next pick.

use super::dynamic;
use super::info::{self, InfoFormat};
use super::server::{Level, Reply};
use super::stat;
use super::stat_query::StatQuery;
use super::table;
use super::usage;
use super::view::View;
use crate::config::Balance;
use crate::shm::{self, AdminState, ForcedHealth};
use std::fmt::Write;

/// A command's answer, and what the master must do besides sending it.
pub struct Outcome {
    pub reply: Reply,
    pub effect: Effect,
}

/// What a command changed that the master acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Runtime state (weights, admin states): the state file is rewritten.
    StateChanged,
    /// `clear counters`: the master's rate maxima start over too.
    CountersCleared,
    /// A listener was disabled or enabled: the workers are told to look.
    ListenersChanged,
    /// `add server`, `del server`, `set server B/S addr`: the master
    /// applies the change and starts a worker generation with it.
    Servers(crate::config::overlay::ServerChange),
    /// `shutdown sessions server`: every worker (draining ones too) is told
    /// to cut what is on the servers whose `shutdown_seq` moved.
    SessionsShutdown,
}

pub(super) fn text(s: impl Into<String>) -> Outcome {
    Outcome {
        reply: Reply::Text(s.into()),
        effect: Effect::None,
    }
}

fn changed() -> Outcome {
    Outcome {
        reply: Reply::Text(String::new()),
        effect: Effect::StateChanged,
    }
}

fn permission_denied() -> Outcome {
    text("Permission denied\n")
}

/// Runs one command (other than `reload`, which the master runs itself).
pub fn execute(cmd: &str, level: Level, v: &View) -> Outcome {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    match words.as_slice() {
        ["help", args @ ..] => text(usage::help(level, args)),
        // HAProxy 2.6 ignores words after a complete command (except where
        // `show stat`'s contract says otherwise): `prompt x` toggles too.
        ["prompt", ..] => Outcome {
            reply: Reply::TogglePrompt,
            effect: Effect::None,
        },
        ["quit", ..] => Outcome {
            reply: Reply::Quit,
            effect: Effect::None,
        },
        ["show", "info", args @ ..] => match InfoFormat::parse(args) {
            Ok(format) => text(info::show_info(v, format)),
            Err(e) => text(e),
        },
        ["show", "version", ..] => text(info::show_version()),
        ["show", "table", args @ ..] => table::show(v, level, args),
        ["clear", "table", args @ ..] => table::clear(v, level, args),
        ["clear", "counters", ..] if level < Level::Operator => permission_denied(),
        // As HAProxy: `all` clears every counter, any other word the maxima.
        ["clear", "counters", "all", ..] if level < Level::Admin => permission_denied(),
        ["clear", "counters", "all", ..] => clear_counters(v, true),
        ["clear", "counters", ..] => clear_counters(v, false),
        ["disable" | "enable", "frontend", ..] if level < Level::Admin => permission_denied(),
        ["disable", "frontend", name, ..] => set_frontend(v, name, true),
        ["enable", "frontend", name, ..] => set_frontend(v, name, false),
        ["disable" | "enable", "frontend"] => text("A frontend name is expected.\n"),
        ["show", "proc"] => text(show_proc(v)),
        ["show", "backend", ..] => text(show_backend(v)),
        ["show", "stat", args @ ..] => {
            match StatQuery::parse(args, |name| stat::is_proxy(v, name)) {
                Ok(q) => text(stat::show_stat(v, &q)),
                Err(e) => text(e),
            }
        }
        ["show", "servers", "state"] => text(stat::show_servers_state(v, None)),
        ["show", "servers", "state", b, ..] => match v.config.upstreams.position(b) {
            Some(_) => text(stat::show_servers_state(v, Some(b))),
            None => text("Can't find backend.\n"),
        },
        // HAProxy's `get weight` parses on its own: `/s` looks for backend "".
        ["get", "weight", target, ..] if target.starts_with('/') => text("No such backend.\n"),
        // Commands on a server look it up before they read their other
        // arguments, as HAProxy's `cli_find_server` first: `set weight
        // nope/x` is `No such backend.`, not a missing weight.
        ["get", "weight", target, ..] => on_server(v, target, |u, s| {
            let cur = v.shm.server(u, s).weight();
            let initial = v.config.upstreams[u].servers[s].weight;
            text(format!("{cur} (initial {initial})\n"))
        }),
        ["get", "weight"] => text("Require 'backend/server'.\n"),
        ["set", "weight" | "server", ..] | ["enable" | "disable", "server", ..]
            if level < Level::Admin =>
        {
            permission_denied()
        }
        ["set", "weight", target, rest @ ..] => {
            on_server(v, target, |u, s| set_weight(v, u, s, rest.first()))
        }
        ["set", "server", target, rest @ ..] => {
            on_server(v, target, |u, s| set_server(v, u, s, rest))
        }
        ["set", "weight"] | ["set", "server"] => text("Require 'backend/server'.\n"),
        ["set", "maxconn", "server", ..] if level < Level::Admin => permission_denied(),
        ["set", "maxconn", "server", target, rest @ ..] => on_server(v, target, |u, s| {
            set_maxconn(v, u, s, rest.first().copied())
        }),
        ["set", "maxconn", "server"] => text("Require 'backend/server'.\n"),
        ["add" | "del", "server", ..] if level < Level::Admin => permission_denied(),
        ["add", "server", args @ ..] => dynamic::add_server(v, args),
        ["del", "server", args @ ..] => dynamic::del_server(v, args),
        ["enable" | "disable", "health", ..] if level < Level::Admin => permission_denied(),
        ["enable", "health", target, ..] => on_server(v, target, |u, s| set_checks(v, u, s, true)),
        ["disable", "health", target, ..] => {
            on_server(v, target, |u, s| set_checks(v, u, s, false))
        }
        ["enable" | "disable", "health"] => text("Require 'backend/server'.\n"),
        ["shutdown", "sessions", "server", ..] if level < Level::Admin => permission_denied(),
        ["shutdown", "sessions", "server", target, ..] => {
            on_server(v, target, |u, s| shutdown_sessions(v, u, s))
        }
        ["shutdown", "sessions", "server"] => text("Require 'backend/server'.\n"),
        ["enable", "server", target, ..] => {
            on_server(v, target, |u, s| set_admin(v, u, s, AdminState::Ready))
        }
        ["disable", "server", target, ..] => {
            on_server(v, target, |u, s| set_admin(v, u, s, AdminState::Maint))
        }
        ["enable" | "disable", "server"] => text("Require 'backend/server'.\n"),
        _ => text(usage::unknown(level, &words)),
    }
}

/// `shutdown sessions server B/S`: every worker cuts the connections it
/// has to the server (HAProxy kills the sessions; new requests may still
/// go to the server — put it in maint first to keep them away).
fn shutdown_sessions(v: &View, u: usize, s: usize) -> Outcome {
    v.shm.server(u, s).request_shutdown();
    // Workers of a generation replaced by a runtime server change may
    // still hold connections to it.
    let up = &v.config.upstreams[u];
    for sh in v.draining_servers(&up.name, &up.servers[s].name) {
        sh.request_shutdown();
    }
    log::warn!(
        "sessions of server {}/{} shut down over the admin socket",
        up.name,
        up.servers[s].name
    );
    Outcome {
        reply: Reply::Text(String::new()),
        effect: Effect::SessionsShutdown,
    }
}

/// Runs `then` on the server `target` names (`backend/server`), or answers
/// HAProxy's error when there is none.
fn on_server(v: &View, target: &str, then: impl FnOnce(usize, usize) -> Outcome) -> Outcome {
    match find(v, target) {
        Ok((u, s)) => then(u, s),
        Err(e) => text(e),
    }
}

/// HAProxy 2.6's answer to `set server B/S` without a subcommand it knows.
const SET_SERVER_USAGE: &str = "usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n";

/// Subcommands of HAProxy's `set server` that forklb has no use for (no
/// agent checks, no separate check address, no runtime DNS or TLS change).
const SET_SERVER_UNSUPPORTED: [&str; 8] = [
    "agent",
    "agent-addr",
    "agent-port",
    "agent-send",
    "check-addr",
    "check-port",
    "fqdn",
    "ssl",
];

/// `set server B/S <subcommand> ...` once the server is found. As in
/// HAProxy, subcommands are case-sensitive and words after the ones a
/// subcommand reads are ignored.
fn set_server(v: &View, u: usize, s: usize, rest: &[&str]) -> Outcome {
    match rest {
        ["weight", w @ ..] => set_weight(v, u, s, w.first()),
        ["state", word, ..] => match AdminState::parse(word) {
            Some(admin) => set_admin(v, u, s, admin),
            None => text(STATE_WORDS),
        },
        ["state"] => text(STATE_WORDS),
        ["health", word, ..] => match ForcedHealth::parse(word) {
            Some(to) => set_health(v, u, s, to),
            None => text(HEALTH_WORDS),
        },
        ["health"] => text(HEALTH_WORDS),
        ["addr", args @ ..] => dynamic::set_addr(v, u, s, args),
        [sub, ..] if SET_SERVER_UNSUPPORTED.contains(sub) => {
            text("'set server <srv>' only supports 'state', 'weight', 'health' and 'addr' here.\n")
        }
        _ => text(SET_SERVER_USAGE),
    }
}

const STATE_WORDS: &str = "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n";

/// Resolves `backend/server` with HAProxy's error strings (its
/// `cli_find_server`: an empty backend or server name is a missing one).
fn find(v: &View, target: &str) -> Result<(usize, usize), String> {
    let Some((b, s)) = target
        .split_once('/')
        .filter(|(b, s)| !b.is_empty() && !s.is_empty())
    else {
        return Err("Require 'backend/server'.\n".to_owned());
    };
    // `#ID` names a backend or server by its id, as in HAProxy: the
    // backend's `iid` of `show stat`, the server's `sid` (leading digits,
    // as HAProxy's atoi reads them).
    let upstream = match b.strip_prefix('#') {
        Some(id) => super::stat::upstream_of_iid(v.config, leading_number(id)),
        None => v.config.upstreams.position(b),
    };
    let Some(u) = upstream else {
        return Err("No such backend.\n".to_owned());
    };
    let servers = &v.config.upstreams[u].servers;
    let server = match s.strip_prefix('#') {
        Some(id) => {
            let id = leading_number(id);
            servers.iter().position(|x| Some(x.id) == id)
        }
        None => servers.iter().position(|x| x.name == s),
    };
    let Some(i) = server else {
        return Err("No such server.\n".to_owned());
    };
    Ok((u, i))
}

/// The number the leading digits of `s` make, as C's atoi reads an id.
fn leading_number(s: &str) -> Option<usize> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..digits].parse().ok()
}

/// `set weight B/S W[%]` and `set server B/S weight W[%]`.
fn set_weight(v: &View, u: usize, s: usize, w: Option<&&str>) -> Outcome {
    let Some(&w) = w else {
        return text("Require <weight> or <weight%>.\n");
    };
    let up = &v.config.upstreams[u];
    let initial = up.servers[s].weight;
    // HAProxy's `server_parse_weight_change_request`, in its order: a
    // number read by strtol, then `%` alone after it for a relative
    // weight; the range is checked before trailing garbage (`300x` is out
    // of range, `5x` is garbage). Some answers have no newline, as there.
    let Some((n, rest)) = strtol_prefix(w) else {
        return text("Empty weight string empty or preceded by garbage");
    };
    let max = i64::from(shm::MAX_WEIGHT);
    let weight = if rest == "%" {
        if n < 0 {
            return text("Relative weight must be positive.\n");
        }
        // Truncated, as HAProxy does: 50% of 3 is 1; at most 25600%.
        (i64::from(initial) * n.min(25_600) / 100).min(max) as u32
    } else if !(0..=max).contains(&n) {
        return text("Absolute weight can only be between 0 and 256 inclusive.\n");
    } else if !rest.is_empty() {
        return text("Trailing garbage in weight string");
    } else {
        n as u32
    };
    if up.balance == Balance::StaticRr && weight != 0 && weight != initial {
        return text(
            "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n",
        );
    }
    // Bounded above (either way at most MAX_WEIGHT), so set_weight cannot refuse.
    if v.shm.set_weight(u, s, weight) == Ok(true) {
        log::info!(
            "server {}/{} weight set to {weight} (initial {initial}, {})",
            v.config.upstreams[u].name,
            up.servers[s].name,
            v.origin
        );
    }
    // Queued requests may have room now (a limit raised, a server back).
    v.shm.wake_waiters(u);
    changed()
}

/// `set maxconn server B/S N`: HAProxy's `strtol` reading (a sign, digits,
/// nothing after them) and its storing into an unsigned int, so `-5` is
/// 4294967291 and an overflow saturates before it is truncated, as there.
/// 0 means no limit. A raised limit lets queued requests in at once: the
/// master wakes the workers (`Effect::StateChanged`).
fn set_maxconn(v: &View, u: usize, s: usize, n: Option<&str>) -> Outcome {
    let Some(n) = n else {
        return text("Require <maxconn>.\n");
    };
    let maxconn = match parse_strtol(n) {
        Strtol::Value(v) => to_unsigned_int(v),
        Strtol::NoDigits => return text("maxconn string empty or preceded by garbage"),
        Strtol::Trailing => return text("Trailing garbage in maxconn string"),
    };
    let old = v.shm.server(u, s).set_maxconn(maxconn);
    if old != maxconn {
        let up = &v.config.upstreams[u];
        log::info!(
            "server {}/{} maxconn set to {maxconn} (was {old}, 0 = no limit)",
            up.name,
            up.servers[s].name
        );
    }
    // Queued requests may have room now (a limit raised, a server back).
    v.shm.wake_waiters(u);
    changed()
}

/// What C's `strtol(s, &end, 10)` makes of a word.
#[derive(Debug, PartialEq, Eq)]
enum Strtol {
    /// Saturated at the bounds of a 64-bit long, as `strtol` does.
    Value(i64),
    /// No digits after the optional sign (`end == s`).
    NoDigits,
    /// Digits, then something else (`*end != '\0'`).
    Trailing,
}

/// A long stored into an unsigned int, as C does it (modulo 2^32).
fn to_unsigned_int(v: i64) -> u32 {
    v as u32
}

fn parse_strtol(word: &str) -> Strtol {
    match strtol_prefix(word) {
        None => Strtol::NoDigits,
        Some((_, rest)) if !rest.is_empty() => Strtol::Trailing,
        Some((v, _)) => Strtol::Value(v),
    }
}

/// C's `strtol(s, &end, 10)` on a word: the value (saturated at the
/// bounds of a 64-bit long) and what follows the digits; None when no
/// digits follow the optional sign (`end == s`).
fn strtol_prefix(word: &str) -> Option<(i64, &str)> {
    let (negative, digits) = match word.as_bytes().first() {
        Some(b'-') => (true, &word[1..]),
        Some(b'+') => (false, &word[1..]),
        _ => (false, word),
    };
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        return None;
    }
    let (number, rest) = digits.split_at(len);
    let value = number.bytes().fold(0i64, |acc, d| {
        let d = i64::from(d - b'0');
        if negative {
            acc.saturating_mul(10).saturating_sub(d)
        } else {
            acc.saturating_mul(10).saturating_add(d)
        }
    });
    Some((value, rest))
}

fn set_admin(v: &View, u: usize, s: usize, admin: AdminState) -> Outcome {
    let rise = v.config.upstreams[u].health.as_ref().map(|h| h.rise);
    if v.shm.server(u, s).set_admin_by_operator(admin, rise) {
        log::warn!(
            "server {}/{} is going {} ({})",
            v.config.upstreams[u].name,
            v.config.upstreams[u].servers[s].name,
            admin.status_word(),
            v.origin
        );
    }
    // Queued requests may have room now (a limit raised, a server back).
    v.shm.wake_waiters(u);
    changed()
}

const HEALTH_WORDS: &str = "'set server <srv> health' expects 'up', 'stopping', or 'down'.\n";

/// `set server B/S health up|stopping|down`.
fn set_health(v: &View, u: usize, s: usize, to: ForcedHealth) -> Outcome {
    let full = v.config.upstreams[u]
        .health
        .as_ref()
        .map_or(1, |h| (h.rise + h.fall).saturating_sub(1).max(1));
    if v.shm.server(u, s).force_health(to, full) {
        log::warn!(
            "server {}/{} health set to {} over the admin socket",
            v.config.upstreams[u].name,
            v.config.upstreams[u].servers[s].name,
            match to {
                ForcedHealth::Up => "up",
                ForcedHealth::Stopping => "stopping",
                ForcedHealth::Down => "down",
            }
        );
    }
    // A state change: the state file keeps it, the backend's row sees it.
    changed()
}

/// `enable|disable health B/S`: active checks for one server.
fn set_checks(v: &View, u: usize, s: usize, on: bool) -> Outcome {
    if v.config.upstreams[u].health.is_none() {
        return text(if on {
            "Health check was not configured on this server, cannot enable.\n"
        } else {
            ""
        });
    }
    if v.shm.server(u, s).set_checked(on) {
        log::warn!(
            "health checks of server {}/{} {} over the admin socket",
            v.config.upstreams[u].name,
            v.config.upstreams[u].servers[s].name,
            if on { "enabled" } else { "disabled" }
        );
    }
    text("")
}

/// `disable frontend F` / `enable frontend F`: the listener's sockets
/// leave (or rejoin) every worker's epoll set; the kernel keeps queueing
/// new connections in the backlog meanwhile, as with HAProxy's pause.
fn set_frontend(v: &View, name: &str, disable: bool) -> Outcome {
    let Some(l) = v.config.listeners.iter().position(|l| l.name == name) else {
        return text("No such frontend.\n");
    };
    if !v.shm.set_listener_disabled(l, disable) {
        return text(if disable {
            "All sockets are already disabled.\n"
        } else {
            "All sockets are already enabled.\n"
        });
    }
    log::warn!(
        "listener {name} {} over the admin socket",
        if disable {
            "disabled (new connections wait in the backlog)"
        } else {
            "enabled"
        }
    );
    Outcome {
        reply: Reply::Text(String::new()),
        effect: Effect::ListenersChanged,
    }
}

/// `clear counters [all]`: in the shared state every worker counts into,
/// so it holds for all of them at once. Without `all` only the maxima
/// (smax, MaxConnRate...) start over, as in HAProxy.
fn clear_counters(v: &View, all: bool) -> Outcome {
    for l in 0..v.config.listeners.len() {
        if let Some(ls) = v.shm.listener(l) {
            ls.clear_max();
        }
        if all {
            for w in 0..v.shm.worker_count() {
                if let Some(c) = v.shm.listener_counts(w, l) {
                    c.clear();
                }
            }
        }
    }
    for (u, up) in v.config.upstreams.iter().enumerate() {
        v.shm.upstream(u).clear_max();
        for s in 0..up.servers.len() {
            let srv = v.shm.server(u, s);
            if all {
                srv.clear_counters();
            } else {
                srv.clear_max();
            }
        }
        let queue = v.shm.upstream(u).queue();
        if all {
            queue.clear_counters();
            v.shm.upstream(u).clear_counters();
        } else {
            queue.clear_max();
        }
    }
    log::info!(
        "{} cleared over the admin socket",
        if all { "all counters" } else { "max counters" }
    );
    Outcome {
        reply: Reply::Text(String::new()),
        effect: Effect::CountersCleared,
    }
}

fn show_proc(v: &View) -> String {
    let mut out = format!(
        "#{:<15} {:<15} {:<15} {:<15} {}\n",
        "<PID>", "<type>", "<generation>", "<uptime>", "<version>"
    );
    let ver = env!("CARGO_PKG_VERSION");
    let _ = writeln!(
        out,
        "{:<16} {:<15} {:<15} {:<15} {ver}",
        v.pid,
        "master",
        v.generation,
        uptime(v.uptime_secs)
    );
    out.push_str("# workers\n");
    for (pid, up, generation) in &v.workers {
        let _ = writeln!(
            out,
            "{pid:<16} {:<15} {generation:<15} {:<15} {ver}",
            "worker",
            uptime(*up)
        );
    }
    out
}

fn uptime(s: u64) -> String {
    format!(
        "{}d{:02}h{:02}m{:02}s",
        s / 86_400,
        (s % 86_400) / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

fn show_backend(v: &View) -> String {
    let mut out = String::from("# name\n");
    for up in v.config.upstreams.iter() {
        out.push_str(&up.name);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{parse_strtol, to_unsigned_int, Strtol};

    #[test]
    fn maxconn_words_read_as_strtol_does() {
        assert_eq!(parse_strtol("10"), Strtol::Value(10));
        assert_eq!(parse_strtol("+7"), Strtol::Value(7));
        assert_eq!(parse_strtol("-5"), Strtol::Value(-5));
        // HAProxy stores these into an unsigned int: 4294967291, 1215752191.
        assert_eq!(to_unsigned_int(-5), 4_294_967_291);
        assert_eq!(to_unsigned_int(99_999_999_999), 1_215_752_191);
        assert_eq!(
            parse_strtol("99999999999999999999999"),
            Strtol::Value(i64::MAX)
        );
        assert_eq!(parse_strtol("abc"), Strtol::NoDigits);
        assert_eq!(parse_strtol("-"), Strtol::NoDigits);
        assert_eq!(parse_strtol(""), Strtol::NoDigits);
        assert_eq!(parse_strtol("10x"), Strtol::Trailing);
    }
}
