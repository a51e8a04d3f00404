//! `show stat` (HAProxy's CSV, same fields in the same order) and
//! `show servers state` (HAProxy's server-state format, version 1), which
//! is also the format of the state file that carries weights and admin
//! states across restarts and upgrades.

use super::view::View;
use crate::config::{Balance, Health, HealthKind, Server, Upstream};
use crate::health::counter;
use crate::shm::{self, AdminState, LastCheck, ServerStats};
use std::fmt::Write;

/// HAProxy 2.6's `show stat` fields, in order, up to `uweight`.
const FIELDS: [&str; 100] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
];

/// The column of field `name`. A map built once, not a scan of `FIELDS`:
/// a row sets some 40 fields, and `show stat` writes a row per server.
fn idx(name: &str) -> usize {
    static COLUMNS: std::sync::OnceLock<std::collections::HashMap<&'static str, usize>> =
        std::sync::OnceLock::new();
    let columns = COLUMNS.get_or_init(|| FIELDS.iter().enumerate().map(|(i, f)| (*f, i)).collect());
    columns.get(name).copied().unwrap_or(0)
}

/// One CSV row being filled by field name.
struct Row(Vec<String>);

impl Row {
    fn new(px: &str, sv: &str) -> Row {
        let mut r = Row(vec![String::new(); FIELDS.len()]);
        r.set("pxname", px);
        r.set("svname", sv);
        r
    }
    fn set(&mut self, field: &str, v: impl ToString) {
        self.0[idx(field)] = v.to_string();
    }
    fn write(&self, out: &mut String) {
        for v in &self.0 {
            out.push_str(v);
            out.push(',');
        }
        out.push('\n');
    }
}

pub fn algo_name(b: Balance) -> &'static str {
    match b {
        Balance::Roundrobin => "roundrobin",
        Balance::StaticRr => "static-rr",
        Balance::Leastconn => "leastconn",
        Balance::Random => "random",
        Balance::Hash => "hash",
        Balance::First => "first",
    }
}

/// A server's status word, as HAProxy prints it.
pub fn server_status(st: &ServerStats, health: Option<(u32, u32)>) -> String {
    match st.admin {
        AdminState::Maint | AdminState::Drain => st.admin.status_word().to_owned(),
        AdminState::Ready => match health {
            Some((rise, fall)) => counter::status(st.health.counter, st.health.down, rise, fall),
            None => "no check".to_owned(),
        },
    }
}

pub fn show_stat(v: &View) -> String {
    let mut out = String::from("# ");
    out.push_str(&FIELDS.join(","));
    out.push_str(",\n");
    let now = shm::unix_secs();
    let t = v.shm.worker_totals();
    for (i, l) in v.config.listeners.iter().enumerate() {
        frontend_row(v, &l.name, i + 1, &t).write(&mut out);
    }
    let base_iid = v.config.listeners.len();
    for (u, up) in v.config.upstreams.iter().enumerate() {
        upstream_rows(&mut out, v, u, up, base_iid + u + 1, now);
    }
    out
}

/// A listener's FRONTEND row; its counters are instance-wide (`t`).
fn frontend_row(v: &View, name: &str, iid: usize, t: &shm::WorkerTotals) -> Row {
    let (cur, tot, req) = (t.conns_current, t.conns_total, t.requests);
    let mut r = Row::new(name, "FRONTEND");
    r.set("scur", cur);
    r.set(
        "slim",
        v.config.worker_connections * v.shm.worker_count().max(1),
    );
    r.set("stot", tot);
    r.set("status", "OPEN");
    r.set("pid", v.pid);
    r.set("iid", iid);
    r.set("sid", 0);
    r.set("type", 0);
    r.set("req_tot", req);
    r.set("mode", "http");
    r.set("conn_tot", tot);
    r
}

/// What an upstream's BACKEND row sums over its servers.
#[derive(Default)]
struct BackendTotals {
    /// The counters of `server_counters`, summed.
    counters: [u64; 13],
    /// Usable (ready) active and backup servers, and their weights summed.
    act: u32,
    bck: u32,
    weight: u32,
}

/// One upstream's server rows, then its BACKEND row.
fn upstream_rows(out: &mut String, v: &View, u: usize, up: &Upstream, iid: usize, now: u64) {
    let mut totals = BackendTotals::default();
    for (s, srv) in up.servers.iter().enumerate() {
        let st = v.shm.server(u, s).stats();
        for (t, x) in totals.counters.iter_mut().zip(server_counters(&st)) {
            *t += x;
        }
        server_row(v, up, srv, &st, iid, s + 1, now).write(out);
        // Usable for new requests (admin ready, not DOWN, weight > 0).
        if st.is_ready() {
            if srv.backup {
                totals.bck += 1;
            } else {
                totals.act += 1;
            }
            totals.weight += st.weight;
        }
    }
    backend_row(v, up, &totals, iid).write(out);
}

/// A server's counters in the order `BackendTotals::counters` sums them:
/// scur, smax, stot, bin, bout, econ, eresp, wretr, lbtot, hrsp_1xx..4xx.
fn server_counters(st: &ServerStats) -> [u64; 13] {
    [
        u64::from(st.active),
        u64::from(st.max_active),
        st.requests,
        st.bytes_in,
        st.bytes_out,
        st.connect_errors,
        st.response_errors,
        st.retries,
        st.selections,
        st.responses[0],
        st.responses[1],
        st.responses[2],
        st.responses[3],
    ]
}

/// A server's row; `sid` counts from 1 within its upstream.
fn server_row(
    v: &View,
    up: &Upstream,
    srv: &Server,
    st: &ServerStats,
    iid: usize,
    sid: usize,
    now: u64,
) -> Row {
    let health = up.health.as_ref().map(|h| (h.rise.max(1), h.fall.max(1)));
    let w = st.weight;
    let mut r = Row::new(&up.name, &srv.name);
    r.set("qcur", 0);
    r.set("qmax", 0);
    r.set("scur", st.active);
    r.set("smax", st.max_active);
    r.set("stot", st.requests);
    r.set("bin", st.bytes_in);
    r.set("bout", st.bytes_out);
    r.set("dresp", 0);
    r.set("econ", st.connect_errors);
    r.set("eresp", st.response_errors);
    r.set("wretr", st.retries);
    r.set("wredis", 0);
    r.set("status", server_status(st, health));
    r.set("weight", w);
    r.set("act", u8::from(!srv.backup));
    r.set("bck", u8::from(srv.backup));
    if health.is_some() {
        r.set("chkfail", st.check_fails);
        r.set("chkdown", st.check_downs);
    }
    r.set("lastchg", now.saturating_sub(st.last_change));
    r.set("downtime", st.downtime);
    r.set("pid", v.pid);
    r.set("iid", iid);
    r.set("sid", sid);
    r.set("lbtot", st.selections);
    r.set("type", 2);
    if let Some(h) = &up.health {
        set_check_fields(&mut r, h, st);
    }
    for (k, f) in [
        "hrsp_1xx",
        "hrsp_2xx",
        "hrsp_3xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "hrsp_other",
    ]
    .iter()
    .enumerate()
    {
        r.set(f, st.responses[k]);
    }
    r.set("addr", srv.addr.to_string());
    r.set("mode", "http");
    r.set("uweight", w);
    r
}

/// The check_* fields of a server whose upstream has health checks.
fn set_check_fields(r: &mut Row, h: &Health, st: &ServerStats) {
    let code = st.last_check.code();
    let status = match (h.kind, st.last_check) {
        (_, LastCheck::None) => "INI",
        (HealthKind::Tcp, LastCheck::Passed { .. }) => "L4OK",
        (HealthKind::Http, LastCheck::Passed { .. }) => "L7OK",
        (HealthKind::Http, LastCheck::Failed { code, .. }) if code > 0 => "L7STS",
        _ => "L4CON",
    };
    r.set("check_status", status);
    if code > 0 {
        r.set("check_code", code);
    }
    r.set("check_duration", st.last_check.duration().as_millis());
    r.set("check_rise", h.rise);
    r.set("check_fall", h.fall);
    r.set("check_health", st.health.counter);
}

/// An upstream's BACKEND row: its servers' sums, UP while one is usable.
fn backend_row(v: &View, up: &Upstream, totals: &BackendTotals, iid: usize) -> Row {
    let (sums, act, bck) = (&totals.counters, totals.act, totals.bck);
    let mut r = Row::new(&up.name, "BACKEND");
    r.set("qcur", 0);
    r.set("qmax", 0);
    r.set("scur", sums[0]);
    r.set("smax", sums[1]);
    r.set("stot", sums[2]);
    r.set("bin", sums[3]);
    r.set("bout", sums[4]);
    r.set("econ", sums[5]);
    r.set("eresp", sums[6]);
    r.set("wretr", sums[7]);
    r.set("status", if act + bck > 0 { "UP" } else { "DOWN" });
    r.set("weight", totals.weight);
    r.set("act", act);
    r.set("bck", bck);
    r.set("pid", v.pid);
    r.set("iid", iid);
    r.set("sid", 0);
    r.set("lbtot", sums[8]);
    r.set("type", 1);
    r.set("req_tot", sums[2]);
    r.set("mode", "http");
    r.set("algo", algo_name(up.balance));
    r
}

const STATE_HEADER: &str = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port";

/// `show servers state [backend]` (and the state file's contents).
pub fn show_servers_state(v: &View, only: Option<&str>) -> String {
    let mut out = format!("1\n{STATE_HEADER}\n");
    let now = shm::unix_secs();
    for (u, up) in v.config.upstreams.iter().enumerate() {
        let name = &up.name;
        if only.is_some_and(|o| o != name) {
            continue;
        }
        for (s, srv) in up.servers.iter().enumerate() {
            let st = v.shm.server(u, s).stats();
            let down = st.health.down;
            let op = if down { 0 } else { 2 };
            // HAProxy's srv_admin_state bits: forced maintenance, forced drain.
            let admin = match st.admin {
                AdminState::Maint => 1,
                AdminState::Drain => 8,
                AdminState::Ready => 0,
            };
            let (ip, port) = (srv.addr.ip().to_string(), srv.addr.port());
            let checked = up.health.is_some();
            let _ =
                writeln!(
                out,
                "{} {name} {} {} {ip} {op} {admin} {} {} {} {} {} {} {} 0 0 0 - {port} - 0 0 - - 0",
                u + 1,
                s + 1,
                srv.name,
                st.weight,
                srv.weight,
                now.saturating_sub(st.last_change),
                if checked { 6 } else { 0 },
                if checked { if down { 1 } else { 3 } } else { 0 },
                st.health.counter,
                if checked { 6 } else { 0 },
            );
        }
    }
    out
}

/// Applies a state file (the `show servers state` format): admin states,
/// and weights changed at runtime when the configured weight is still the
/// one they were changed from. Unknown backends or servers are ignored.
pub fn apply_state(text: &str, config: &crate::config::Config, shm: &shm::Shm) -> usize {
    let mut applied = 0;
    // One lookup per line: scanning the lists instead would make a state
    // file of many servers quadratic to apply.
    let index = crate::config::ServerIndex::new(config);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line == "1" {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 {
            continue;
        }
        let Some((u, s)) = index.server(f[1], f[3]) else {
            continue;
        };
        let admin: u32 = f[6].parse().unwrap_or(0);
        shm.server(u, s).set_admin(if admin & 0x7 != 0 {
            AdminState::Maint
        } else if admin & 0x38 != 0 {
            AdminState::Drain
        } else {
            AdminState::Ready
        });
        let (Ok(uweight), Ok(iweight)) = (f[7].parse::<u32>(), f[8].parse::<u32>()) else {
            continue;
        };
        if iweight == config.upstreams[u].servers[s].weight {
            // A weight above MAX_WEIGHT is refused and ignored, as before.
            let _ = shm.set_weight(u, s, uweight);
        }
        applied += 1;
    }
    applied
}
