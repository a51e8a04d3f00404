//! `show table [NAME [key K]]` and `clear table NAME [key K]`: the
//! `limit_req` / `limit_conn` tables in HAProxy 2.6's stick-table shape and
//! with its answers (captured from a real HAProxy 2.6):
//!
//! ```text
//! # table: web:/api/:req, type: string, size:8192, used:1
//! 0x7f5da8042470: key=127.0.0.2 use=0 exp=450 excess=9
//! ```
//!
//! `exp` is the milliseconds until the entry has decayed (a bucket drained;
//! a drained or idle entry is as good as absent and is not shown, as HAProxy
//! does not show expired entries). `limit_req` entries carry `excess` (the
//! bucket's level in requests, nginx's name), `limit_conn` entries
//! `conn_cur` (requests in flight, HAProxy's name; also their `use`).

use super::commands::{text, Outcome};
use super::server::Level;
use super::view::View;
use crate::config::limits::LimitKey;
use crate::shm::{EntryView, LimitTable, TableKind};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

const NO_SUCH_TABLE: &str = "No such table\n";
const KEY_EXPECTED: &str = "Key value expected\n";
const SHOW_ARGS: &str =
    "Optional argument only supports \"data.<store_data_type>\" <operator> <value> and key <key>\n";
const CLEAR_ARGS: &str = "Required arguments: <table> \"data.<store_data_type>\" <operator> <value> or <table> key <key>\n";

/// `show table` with its arguments (after the two words).
pub fn show(v: &View, level: Level, args: &[&str]) -> Outcome {
    let now = Instant::now();
    let Some((&name, rest)) = args.split_first() else {
        let mut out = String::new();
        for t in v.shm.limits() {
            header(&mut out, t, live(v, t, now).len());
        }
        return text(out);
    };
    let Some(t) = table(v, name) else {
        return text(NO_SUCH_TABLE);
    };
    let key = match rest {
        [] => None,
        ["key"] => return text(KEY_EXPECTED),
        ["key", k, ..] => Some(*k),
        _ => return text(SHOW_ARGS),
    };
    if key.is_some() && level < Level::Operator {
        return text("Permission denied\n");
    }
    let source = by_source(v, t);
    let entries = live(v, t, now);
    let mut out = String::new();
    match key {
        Some(k) => {
            // HAProxy prints nothing at all for an absent key.
            let wanted = stored_key(source, k);
            if let Some(e) = entries.iter().find(|e| Some(&e.key) == wanted.as_ref()) {
                header(&mut out, t, entries.len());
                line(&mut out, t.kind(), source, e);
            }
        }
        None => {
            header(&mut out, t, entries.len());
            if level < Level::Operator {
                out.push_str("# contents not dumped due to insufficient privileges\n");
            } else {
                for e in &entries {
                    line(&mut out, t.kind(), source, e);
                }
            }
        }
    }
    text(out)
}

/// `clear table` with its arguments (after the two words).
pub fn clear(v: &View, level: Level, args: &[&str]) -> Outcome {
    let Some((&name, rest)) = args.split_first() else {
        return text(CLEAR_ARGS);
    };
    let Some(t) = table(v, name) else {
        return text(NO_SUCH_TABLE);
    };
    match rest {
        // HAProxy: without the level, clearing a whole table silently does
        // nothing; a key is refused.
        [] if level < Level::Operator => text(""),
        [] => {
            t.clear_all();
            text("")
        }
        ["key"] => text(KEY_EXPECTED),
        ["key", ..] if level < Level::Operator => text("Permission denied\n"),
        ["key", k, ..] => {
            if let Some(key) = stored_key(by_source(v, t), k) {
                t.clear_key(&key);
            }
            text("")
        }
        _ => text(CLEAR_ARGS),
    }
}

fn table<'a>(v: &'a View, name: &str) -> Option<&'a LimitTable> {
    v.shm
        .limits()
        .iter()
        .find(|t| t.name() == name)
        .map(|t| &**t)
}

/// The table's entries still holding state.
fn live(v: &View, t: &LimitTable, now: Instant) -> Vec<EntryView> {
    t.entries(now, rate_of(v, t))
}

/// The rate of a `limit_req` table (its route's, in the running
/// configuration); 0 for `limit_conn` tables.
fn rate_of(v: &View, t: &LimitTable) -> u64 {
    v.config
        .listeners
        .iter()
        .flat_map(|l| &l.routes)
        .filter_map(|r| r.limit_req.as_ref())
        .find(|l| l.table_name == t.name())
        .map_or(0, |l| l.spec.rate.millis_per_sec())
}

fn truncated(key: &[u8]) -> &[u8] {
    &key[..key.len().min(crate::shm::KEY_PREFIX)]
}

/// Whether a table is keyed by the client's address (its entries hold the
/// address's bytes, shown and given as text).
fn by_source(v: &View, t: &LimitTable) -> bool {
    v.config
        .listeners
        .iter()
        .flat_map(|l| &l.routes)
        .flat_map(|r| {
            let req = r.limit_req.as_ref().map(|l| (&l.table_name, &l.spec.key));
            let conn = r.limit_conn.as_ref().map(|l| (&l.table_name, &l.spec.key));
            req.into_iter().chain(conn)
        })
        .any(|(name, key)| name == t.name() && *key == LimitKey::Source)
}

/// The stored form of a key given as text: an address's bytes in a table
/// keyed by source (None: not an address, so in no entry).
fn stored_key(source: bool, text: &str) -> Option<Vec<u8>> {
    if !source {
        return Some(truncated(text.as_bytes()).to_vec());
    }
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(a.octets().to_vec()),
        IpAddr::V6(a) => Some(a.octets().to_vec()),
    }
}

/// A stored key as text.
fn key_text(source: bool, key: &[u8]) -> String {
    if source {
        if let Ok(b) = <[u8; 4]>::try_from(key) {
            return Ipv4Addr::from(b).to_string();
        }
        if let Ok(b) = <[u8; 16]>::try_from(key) {
            return Ipv6Addr::from(b).to_string();
        }
    }
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn header(out: &mut String, t: &LimitTable, used: usize) {
    let _ = writeln!(
        out,
        "# table: {}, type: string, size:{}, used:{used}",
        t.name(),
        t.size()
    );
}

fn line(out: &mut String, kind: TableKind, source: bool, e: &EntryView) {
    let _ = write!(out, "{:#x}: key={}", e.addr, key_text(source, &e.key));
    let _ = match kind {
        TableKind::Req => writeln!(out, " use=0 exp={} excess={}", e.exp_ms, e.excess),
        TableKind::Conn => writeln!(out, " use={} exp=0 conn_cur={}", e.conns, e.conns),
    };
}
