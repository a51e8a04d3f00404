//! The dashboard's JSON document (`?json`): the instance, its listeners,
//! upstreams and servers, for the whole instance (all workers: shared
//! memory). Statuses, counters and check results are `show stat`'s rows
//! (`admin::stat::for_each_row`), read by field name, so the page and the
//! runtime API never disagree.

use super::writer::JsonWriter;
use crate::admin::stat::{self, Kind, Row, Source, HRSP};
use crate::config::Config;
use crate::shm::{AdminState, Shm, DURATION_BUCKETS};

/// What the document says about the process beside the shared state.
pub struct Facts<'a> {
    pub generation: u64,
    /// The route has `admin: true`.
    pub admin: bool,
    /// The admin token (only on `admin: true` routes).
    pub token: Option<&'a str>,
    /// Unix time in milliseconds.
    pub now_ms: u64,
}

pub fn render(config: &Config, shm: &Shm, facts: &Facts) -> String {
    let mut w = JsonWriter::with_capacity(1024 + 512 * config.upstreams.len());
    w.begin_object();
    instance(&mut w, shm, facts);
    let src = Source { config, shm };
    let mut doc = Rows::default();
    w.key("listeners");
    w.begin_array();
    stat::for_each_row(&src, |row| match row.kind() {
        Kind::Frontend => {
            listener(&mut w, config, doc.listener, row);
            doc.listener += 1;
        }
        Kind::Server => {
            doc.close_listeners(&mut w);
            server(&mut doc.servers, config, shm, doc.upstream, doc.server, row);
            doc.server += 1;
        }
        Kind::Backend => {
            doc.close_listeners(&mut w);
            upstream(&mut w, shm, doc.upstream, row, &doc.servers);
            doc.servers.clear();
            doc.server = 0;
            doc.upstream += 1;
        }
    });
    doc.close_listeners(&mut w);
    w.end_array();
    w.end_object();
    w.finish()
}

/// Where the walk over `show stat`'s rows is: listeners come first, then
/// per upstream its servers and its BACKEND row.
struct Rows {
    listener: usize,
    upstream: usize,
    server: usize,
    /// The servers of the current upstream, rendered, until its BACKEND
    /// row comes (the upstream's object holds them after its own fields).
    servers: JsonWriter,
    /// The listeners' array is still open (the upstreams' is not yet).
    listener_open: bool,
}

impl Default for Rows {
    fn default() -> Rows {
        Rows {
            listener: 0,
            upstream: 0,
            server: 0,
            servers: JsonWriter::with_capacity(512),
            listener_open: true,
        }
    }
}

impl Rows {
    /// Ends the listeners' array and opens the upstreams' (once).
    fn close_listeners(&mut self, w: &mut JsonWriter) {
        if std::mem::take(&mut self.listener_open) {
            w.end_array();
            w.key("upstreams");
            w.begin_array();
        }
    }
}

/// A numeric field of a row (0 when empty: HAProxy leaves some empty).
fn num(row: &Row, field: &str) -> u64 {
    row.value(field).parse().unwrap_or(0)
}

fn hrsp(row: &Row) -> [u64; 6] {
    HRSP.map(|f| num(row, f))
}

fn instance(w: &mut JsonWriter, shm: &Shm, facts: &Facts) {
    let inst = shm.instance().read();
    let totals = shm.worker_totals();
    w.field_str("version", env!("CARGO_PKG_VERSION"));
    w.field_uint("pid", u64::from(inst.master_pid));
    let uptime = if inst.started_unix == 0 {
        0
    } else {
        (facts.now_ms / 1000).saturating_sub(inst.started_unix)
    };
    w.field_uint("uptime_sec", uptime);
    w.field_uint("generation", facts.generation);
    w.field_uint("workers", shm.worker_count() as u64);
    w.field_uint("time_ms", facts.now_ms);
    w.field_uint("curr_conns", totals.conns_current);
    // Lifetime totals: the earlier generations' too, as `show info`.
    w.field_uint("cum_conns", totals.conns_total + inst.earlier_conns);
    w.field_uint("cum_req", totals.requests + inst.earlier_requests);
    w.key("admin");
    w.boolean(facts.admin);
    if let Some(t) = facts.token {
        w.field_str("token", t);
    }
    w.key("duration_buckets_ms");
    w.begin_array();
    for b in DURATION_BUCKETS {
        w.uint((b * 1000.0).round() as u64);
    }
    w.end_array();
}

fn listener(w: &mut JsonWriter, config: &Config, l: usize, row: &Row) {
    w.begin_object();
    w.field_str("name", row.value("pxname"));
    w.key("bind");
    w.begin_array();
    for a in config.listeners.get(l).iter().flat_map(|l| &l.addrs) {
        w.string(&a.to_string());
    }
    w.end_array();
    w.field_str("status", row.value("status"));
    w.field_uint("curr_conns", num(row, "scur"));
    w.field_uint("cum_conns", num(row, "stot"));
    w.field_uint("cum_req", num(row, "req_tot"));
    w.key("hrsp");
    w.uints(&hrsp(row));
    w.end_object();
}

fn server(w: &mut JsonWriter, config: &Config, shm: &Shm, u: usize, s: usize, row: &Row) {
    let srv = config.upstreams.get(u).and_then(|up| up.servers.get(s));
    let sh = shm.server(u, s);
    let st = sh.stats();
    w.begin_object();
    w.field_str("name", row.value("svname"));
    w.field_str("addr", row.value("addr"));
    w.field_str("status", row.value("status"));
    w.field_str(
        "admin",
        match st.admin {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        },
    );
    w.field_uint("weight", num(row, "weight"));
    w.field_uint("initial_weight", srv.map_or(0, |x| u64::from(x.weight)));
    w.key("backup");
    w.boolean(srv.is_some_and(|x| x.backup));
    w.field_uint("in_flight", num(row, "scur"));
    w.field_uint("queue", num(row, "qcur"));
    w.field_uint("maxconn", u64::from(st.maxconn));
    w.field_uint("cum_req", num(row, "stot"));
    w.key("hrsp");
    w.uints(&hrsp(row));
    w.key("durations");
    w.uints(&sh.durations());
    w.key("check");
    if row.value("check_status").is_empty() {
        w.null();
    } else {
        w.begin_object();
        w.field_str("status", row.value("check_status"));
        w.field_str("desc", row.value("check_desc"));
        w.field_uint("duration_ms", num(row, "check_duration"));
        w.end_object();
    }
    w.field_uint("last_change_sec", num(row, "lastchg"));
    w.end_object();
}

fn upstream(w: &mut JsonWriter, shm: &Shm, u: usize, row: &Row, servers: &JsonWriter) {
    w.begin_object();
    w.field_str("name", row.value("pxname"));
    w.field_str("balance", row.value("algo"));
    w.field_str("status", row.value("status"));
    w.field_uint("in_flight", num(row, "scur"));
    w.field_uint("queue", num(row, "qcur"));
    w.field_uint("cum_req", num(row, "req_tot"));
    w.key("hrsp");
    w.uints(&hrsp(row));
    w.key("durations");
    w.uints(&shm.upstream(u).durations().buckets);
    w.key("servers");
    w.begin_array();
    w.raw_items(servers);
    w.end_array();
    w.end_object();
}

/// Unix time now in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
