//! `show stat` (HAProxy's CSV, same fields in the same order) and
//! `show servers state` (HAProxy's server-state format, version 1), which
//! is also the format of the state file that carries weights and admin
//! states across restarts and upgrades.

use super::stat_fields::{Field, FIELDS};
use super::stat_query::{Format, Hide, ProxySel, StatQuery};
use super::typed;
use super::view::View;
use crate::config::{Balance, Health, HealthKind, Server, Upstream};
use crate::health::counter;
use crate::shm::{self, AdminState, ForcedHealth, LastCheck, ServerStats};
use std::fmt::Write;

/// The column of field `name`. A map built once, not a scan of `FIELDS`:
/// a row sets some 40 fields, and `show stat` writes a row per server.
fn idx(name: &str) -> usize {
    static COLUMNS: std::sync::OnceLock<std::collections::HashMap<&'static str, usize>> =
        std::sync::OnceLock::new();
    let columns = COLUMNS.get_or_init(|| {
        FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name, i))
            .collect()
    });
    columns.get(name).copied().unwrap_or(0)
}

/// HAProxy's `pid` field: the relative process number, 1 since HAProxy
/// 2.5 has one process. forklb answers for the whole instance, so 1 too.
const PROCESS_NUM: u32 = 1;

/// Counters of features forklb does not have — compression, a cache,
/// tcp-request rules, header rewrites that can fail, response denies,
/// internal errors counted apart, retries on the server that failed
/// (`wretr`: forklb's retries always go to another server, so each is a
/// redispatch, `wredis`): their events cannot happen, so they are 0, as
/// HAProxy shows them when unused (where HAProxy has the field for that
/// kind of row), not empty.
const NEVER_COUNTED: [&str; 12] = [
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "cache_lookups",
    "cache_hits",
    "dcon",
    "dses",
    "wrew",
    "eint",
    "dresp",
    "wretr",
];

/// What a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Frontend,
    Backend,
    Server,
}

impl Kind {
    /// Its bit in a `show stat` type mask, and its column in `Field::tags`.
    fn bit(self) -> i64 {
        match self {
            Kind::Frontend => 1,
            Kind::Backend => 2,
            Kind::Server => 4,
        }
    }
    fn column(self) -> usize {
        match self {
            Kind::Frontend => 0,
            Kind::Backend => 1,
            Kind::Server => 2,
        }
    }
    fn letter(self) -> char {
        match self {
            Kind::Frontend => 'F',
            Kind::Backend => 'B',
            Kind::Server => 'S',
        }
    }
    fn json_name(self) -> &'static str {
        match self {
            Kind::Frontend => "Frontend",
            Kind::Backend => "Backend",
            Kind::Server => "Server",
        }
    }
}

/// One row being filled by field name.
#[derive(Clone)]
pub struct Row {
    kind: Kind,
    iid: usize,
    sid: usize,
    vals: Vec<String>,
    /// A server in maintenance (`no-maint` hides it).
    maint: bool,
    /// A server that takes traffic: not DOWN, not in maintenance (`up`
    /// shows only those).
    up: bool,
    /// A BACKEND row's servers not stopped (neither DOWN nor in
    /// maintenance) and all its servers: HAProxy's status says `UP (2/3)`
    /// when `up` or `no-maint` hides some.
    servers: Option<(usize, usize)>,
}

impl Row {
    fn new(kind: Kind, px: &str, sv: &str, iid: usize, sid: usize) -> Row {
        let mut r = Row {
            kind,
            iid,
            sid,
            vals: vec![String::new(); FIELDS.len()],
            maint: false,
            up: true,
            servers: None,
        };
        r.set("pxname", px);
        r.set("svname", sv);
        r.set("iid", iid);
        r.set("sid", sid);
        let col = kind.column();
        for f in NEVER_COUNTED {
            if !FIELDS[idx(f)].tags[col].is_empty() {
                r.set(f, 0);
            }
        }
        r
    }
    fn set(&mut self, field: &str, v: impl ToString) {
        self.vals[idx(field)] = v.to_string();
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Field `name` (HAProxy's), `""` when it has no value.
    pub fn value(&self, name: &str) -> &str {
        &self.vals[idx(name)]
    }

    /// Whether `q` asks for this row.
    fn wanted(&self, q: &StatQuery) -> bool {
        let hidden = match q.hide {
            Hide::Nothing => false,
            Hide::Maint => self.maint,
            Hide::NotUp => !self.up,
        };
        if self.kind == Kind::Server && hidden {
            return false;
        }
        let Some(scope) = &q.scope else {
            return true;
        };
        let proxy = match &scope.proxy {
            ProxySel::All => true,
            ProxySel::Id(id) => i64::try_from(self.iid).is_ok_and(|iid| iid == *id),
            ProxySel::Name(name) => self.vals[0] == *name,
        };
        proxy
            && scope.types & self.kind.bit() != 0
            && (self.kind != Kind::Server
                || scope.sid == -1
                || i64::try_from(self.sid).is_ok_and(|sid| sid == scope.sid))
    }

    fn write(&self, q: &StatQuery, out: &mut String, first: &mut bool) {
        if !self.wanted(q) {
            return;
        }
        match self.servers {
            Some((up, all)) if q.hide != Hide::Nothing => {
                let mut row = self.clone();
                row.set("status", format!("{} ({up}/{all})", self.value("status")));
                row.write_format(q, out, first);
            }
            _ => self.write_format(q, out, first),
        }
    }

    fn write_format(&self, q: &StatQuery, out: &mut String, first: &mut bool) {
        match q.format {
            Format::Csv => self.write_csv(out),
            Format::Typed => self.write_typed(out, q.desc),
            Format::Json => {
                if !std::mem::take(first) {
                    out.push(',');
                }
                self.write_json(out);
            }
        }
    }

    fn write_csv(&self, out: &mut String) {
        for v in &self.vals {
            out.push_str(v);
            out.push(',');
        }
        out.push('\n');
    }

    /// The fields that have a value, with HAProxy's tags and type.
    fn typed_fields(&self) -> impl Iterator<Item = (usize, &'static Field, &str, &str, &String)> {
        let col = self.kind.column();
        self.vals
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(move |(i, v)| {
                let f = &FIELDS[i];
                // A field HAProxy has for another kind of row only: its
                // tags there.
                let tagged = Some(f.tags[col])
                    .filter(|t| !t.is_empty())
                    .or_else(|| f.tags.iter().copied().find(|t| !t.is_empty()))
                    .unwrap_or("MGP:str");
                let (tags, ty) = tagged.split_once(':').unwrap_or((tagged, "str"));
                // A value that is not a number goes out as a string, whatever
                // the field's type, so that the JSON stays valid.
                let ty = if ty != "str" && v.parse::<i64>().is_err() {
                    "str"
                } else {
                    ty
                };
                (i, f, tags, ty, v)
            })
    }

    fn write_typed(&self, out: &mut String, desc: bool) {
        for (i, f, tags, ty, v) in self.typed_fields() {
            let _ = write!(
                out,
                "{}.{}.{}.{i}.{}.1:{tags}:{ty}:{v}",
                self.kind.letter(),
                self.iid,
                self.sid,
                f.name
            );
            if desc {
                let _ = write!(out, ":\"{}\"", f.desc);
            }
            out.push('\n');
        }
    }

    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (n, (i, f, tags, ty, v)) in self.typed_fields().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"objType\":\"{}\",\"proxyId\":{},\"id\":{},",
                self.kind.json_name(),
                self.iid,
                self.sid
            );
            typed::json_field(out, i, f.name, tags, ty, v);
        }
        out.push(']');
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

/// A server's status word, as HAProxy prints it (`stats.c`): MAINT first;
/// then the operational state — DOWN and NOLB whatever the admin state,
/// so a drained server that went down says DOWN — and for a running
/// server DRAIN in place of UP. `/N/M` while checks have not reached the
/// top of the counter.
pub fn server_status(st: &ServerStats, health: Option<(u32, u32)>) -> String {
    if st.admin == AdminState::Maint {
        return st.admin.status_word().to_owned();
    }
    let checked = health.filter(|_| st.checked);
    let h = st.health.counter;
    // "N/M" of a server up but below the top of its counter.
    let going_down = checked
        .filter(|&(rise, fall)| h < rise + fall - 1)
        .map(|(rise, fall)| format!(" {}/{fall}", (h + 1).saturating_sub(rise)));
    // Passive detection's mark, while it holds: DOWN whatever the checks
    // or a drain say, as HAProxy's `observe layer4 on-error mark-down`
    // takes its server DOWN.
    if st.passive_down && !st.health.down {
        return "DOWN".to_owned();
    }
    if st.stopping {
        return format!("NOLB{}", going_down.unwrap_or_default());
    }
    if st.health.down {
        return match checked {
            Some((rise, fall)) => counter::status(h, true, rise, fall),
            None => "DOWN".to_owned(),
        };
    }
    match (st.admin, checked) {
        (AdminState::Drain, _) => format!("DRAIN{}", going_down.unwrap_or_default()),
        (_, Some((rise, fall))) => counter::status(h, false, rise, fall),
        // Unchecked (or checks disabled), up.
        (_, None) => "no check".to_owned(),
    }
}

/// `show stat` with its arguments: the CSV (header, then the rows asked
/// for), HAProxy's typed lines, or its JSON array of rows.
pub fn show_stat(v: &View, q: &StatQuery) -> String {
    let src = Source::of(v);
    let mut out = String::new();
    if q.format == Format::Csv {
        out.push_str("# ");
        for (i, f) in FIELDS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(f.name);
        }
        out.push_str(",\n");
    }
    if q.format == Format::Json {
        out.push('[');
    }
    let mut first = true;
    for_each_row(&src, |row| row.write(q, &mut out, &mut first));
    if q.format == Format::Json {
        out.push_str("]\n");
    }
    out
}

/// What the rows are made of: the configuration and the shared state the
/// workers count into. The master has them (`View`), and so has every
/// worker (`metrics: haproxy`).
pub struct Source<'a> {
    pub config: &'a crate::config::Config,
    pub shm: &'a shm::Shm,
}

impl<'a> Source<'a> {
    pub fn of(v: &'a View) -> Source<'a> {
        Source {
            config: v.config,
            shm: v.shm,
        }
    }
}

/// Every row in `show stat`'s order: the listeners' FRONTEND rows, then
/// per upstream its servers and its BACKEND row.
pub fn for_each_row(src: &Source, mut visit: impl FnMut(&Row)) {
    let now = shm::unix_secs();
    for (i, l) in src.config.listeners.iter().enumerate() {
        visit(&frontend_row(src, &l.name, i));
    }
    for (u, up) in src.config.upstreams.iter().enumerate() {
        upstream_rows(src, &mut visit, u, up, upstream_iid(src.config, u), now);
    }
}

/// HAProxy numbers its proxies in the order they are declared, from 2:
/// id 1 is the proxy of its own CLI (`stats socket`, "GLOBAL"). forklb's
/// listeners come first, then its upstreams, so the ids in `show stat`
/// (`iid`, and the `{iid} type sid` filter) and `show servers state`
/// (`be_id`) are those HAProxy would give the same proxies, and agree.
const FIRST_PROXY_ID: usize = 2;

fn listener_iid(l: usize) -> usize {
    FIRST_PROXY_ID + l
}

fn upstream_iid(config: &crate::config::Config, u: usize) -> usize {
    FIRST_PROXY_ID + config.listeners.len() + u
}

/// The upstream whose `iid` is `id` (a listener's is no backend's).
pub fn upstream_of_iid(config: &crate::config::Config, id: Option<usize>) -> Option<usize> {
    let u = id?.checked_sub(FIRST_PROXY_ID + config.listeners.len())?;
    (u < config.upstreams.len()).then_some(u)
}

/// Whether a listener or an upstream is called `name`.
pub fn is_proxy(v: &View, name: &str) -> bool {
    v.config.listeners.iter().any(|l| l.name == name) || v.config.upstreams.position(name).is_some()
}

/// A listener's FRONTEND row, from its own counters (`l` is its index).
fn frontend_row(v: &Source, name: &str, l: usize) -> Row {
    let iid = listener_iid(l);
    let st = v.shm.listener_stats(l);
    let mut r = Row::new(Kind::Frontend, name, "FRONTEND", iid, 0);
    r.set("scur", st.conns_current);
    r.set("smax", st.conns_max);
    r.set(
        "slim",
        v.config.worker_connections * v.shm.worker_count().max(1),
    );
    r.set("stot", st.conns_total);
    r.set(
        "status",
        if v.shm.listener_disabled(l) {
            "PAUSED"
        } else {
            "OPEN"
        },
    );
    r.set("pid", PROCESS_NUM);
    r.set("type", 0);
    r.set("req_tot", st.requests);
    for (k, f) in HRSP.iter().enumerate() {
        r.set(f, st.responses[k]);
    }
    // A session is a connection here: the session rate is the connection
    // rate (HAProxy's `rate` on a FRONTEND row).
    let rates = v.shm.listener(l).map(|x| x.rates()).unwrap_or_default();
    r.set("rate", rates.conn_rate);
    r.set("rate_lim", 0);
    r.set("rate_max", rates.conn_rate_max);
    r.set("req_rate", rates.req_rate);
    r.set("req_rate_max", rates.req_rate_max);
    r.set("mode", "http");
    r.set("conn_rate", rates.conn_rate);
    r.set("conn_rate_max", rates.conn_rate_max);
    r.set("conn_tot", st.conns_total);
    r
}

/// What an upstream's BACKEND row sums over its servers.
#[derive(Default)]
struct BackendTotals {
    /// The counters of `server_counters`, summed.
    counters: [u64; 15],
    /// Usable (ready) active and backup servers, and their weights summed
    /// apart: the backend's weight is its active servers' (its backups'
    /// only when no active server is usable, as they then take over).
    act: u32,
    bck: u32,
    act_weight: u32,
    bck_weight: u32,
    /// The latest `last_session` of its servers (0: none ever).
    last_session: u64,
    /// Its servers' average times weighted by their samples, summed (in
    /// `Timing` order), with the samples summed; and the largest maxima.
    time_sums: [u64; 4],
    time_samples: u64,
    times_max: [u32; 4],
    /// Servers neither DOWN nor in maintenance.
    not_stopped: usize,
}

impl BackendTotals {
    fn add_times(&mut self, st: &ServerStats) {
        self.last_session = self.last_session.max(st.last_session);
        let n = u64::from(st.time_samples);
        for (sum, avg) in self.time_sums.iter_mut().zip(timing_array(st.times)) {
            *sum += u64::from(avg) * n;
        }
        self.time_samples += n;
        for (m, x) in self.times_max.iter_mut().zip(timing_array(st.times_max)) {
            *m = (*m).max(x);
        }
    }

    /// The backend's average times: over its servers' recent requests.
    fn times(&self) -> [u64; 4] {
        let n = self.time_samples.max(1);
        self.time_sums.map(|sum| sum.div_ceil(n))
    }
}

/// HAProxy's names of the time averages and maxima, in `Timing` order.
const TIME_FIELDS: [(&str, &str); 4] = [
    ("qtime", "qtime_max"),
    ("ctime", "ctime_max"),
    ("rtime", "rtime_max"),
    ("ttime", "ttime_max"),
];

fn timing_array(t: shm::Timing) -> [u32; 4] {
    [t.queue, t.connect, t.response, t.total]
}

/// `lastsess`: seconds since the last request, -1 if none ever.
fn last_session_age(last: u64, now: u64) -> i64 {
    if last == 0 {
        -1
    } else {
        i64::try_from(now.saturating_sub(last)).unwrap_or(i64::MAX)
    }
}

/// One upstream's server rows, then its BACKEND row.
fn upstream_rows(
    v: &Source,
    visit: &mut impl FnMut(&Row),
    u: usize,
    up: &Upstream,
    iid: usize,
    now: u64,
) {
    let mut totals = BackendTotals::default();
    for (s, srv) in up.servers.iter().enumerate() {
        let st = v.shm.server(u, s).stats();
        // HAProxy's `cur_state != SRV_ST_STOPPED`: neither DOWN nor in
        // maintenance (a draining or NOLB server is not stopped).
        if st.admin != AdminState::Maint && !st.is_down() {
            totals.not_stopped += 1;
        }
        for (t, x) in totals.counters.iter_mut().zip(server_counters(&st)) {
            *t += x;
        }
        totals.add_times(&st);
        visit(&server_row(up, srv, &st, iid, srv.id, now));
        // Usable for new requests (admin ready, not DOWN, weight > 0).
        if st.is_ready() {
            if srv.backup {
                totals.bck += 1;
                totals.bck_weight += st.weight;
            } else {
                totals.act += 1;
                totals.act_weight += st.weight;
            }
        }
    }
    let mut row = backend_row(v, u, up, &totals, iid, now);
    row.servers = Some((totals.not_stopped, up.servers.len()));
    visit(&row);
}

/// A server's counters in the order `BackendTotals::counters` sums them:
/// scur, smax, stot, bin, bout, econ, eresp, wredis, lbtot, hrsp_1xx..other.
fn server_counters(st: &ServerStats) -> [u64; 15] {
    [
        u64::from(st.active),
        u64::from(st.max_active),
        st.requests,
        st.bytes_in,
        st.bytes_out,
        st.failed_conns,
        st.response_errors,
        st.redispatches,
        st.selections,
        st.responses[0],
        st.responses[1],
        st.responses[2],
        st.responses[3],
        st.responses[4],
        st.responses[5],
    ]
}

/// The response-class fields, in the order of `ServerStats::responses`.
pub const HRSP: [&str; 6] = [
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
];

/// A server's row; `sid` counts from 1 within its upstream.
fn server_row(
    up: &Upstream,
    srv: &Server,
    st: &ServerStats,
    iid: usize,
    sid: usize,
    now: u64,
) -> Row {
    let health = up.health.as_ref().map(|h| (h.rise.max(1), h.fall.max(1)));
    let w = st.weight;
    let mut r = Row::new(Kind::Server, &up.name, &srv.name, iid, sid);
    r.maint = st.admin == AdminState::Maint;
    // As HAProxy's `up`, which hides servers that are stopped and not
    // coming back — not those that only take no new requests (NOLB,
    // DRAIN), nor a DOWN one whose checks have begun to pass (`DOWN 1/2`).
    let rising = health.is_some() && st.checked && st.health.counter > 0;
    r.up = st.admin != AdminState::Maint && !st.passive_down && (!st.health.down || rising);
    // Requests waiting for this server alone (`balance: hash`).
    r.set("qcur", st.queued);
    r.set("qmax", st.max_queued);
    r.set("scur", st.active);
    r.set("smax", st.max_active);
    // HAProxy leaves slim empty for a server without maxconn.
    if st.maxconn > 0 {
        r.set("slim", st.maxconn);
    }
    r.set("stot", st.requests);
    r.set("bin", st.bytes_in);
    r.set("bout", st.bytes_out);
    r.set("dresp", 0);
    // Requests that failed to connect, not attempts: one the request was
    // redispatched after is its `wredis` (HAProxy's econ and wredis).
    r.set("econ", st.failed_conns);
    r.set("eresp", st.response_errors);
    r.set("wredis", st.redispatches);
    r.set("status", server_status(st, health));
    r.set("weight", w);
    r.set("act", u8::from(!srv.backup));
    r.set("bck", u8::from(srv.backup));
    r.set("lastchg", now.saturating_sub(st.last_change));
    // Only while checks run, as HAProxy (empty for an unchecked server);
    // the downtime with the current DOWN period.
    if health.is_some() && st.checked {
        r.set("chkfail", st.check_fails);
        r.set("chkdown", st.check_downs);
        let current = if st.health.down {
            now.saturating_sub(st.last_change)
        } else {
            0
        };
        r.set("downtime", st.downtime + current);
    }
    r.set("pid", PROCESS_NUM);
    r.set("lbtot", st.selections);
    r.set("type", 2);
    r.set("rate", st.rate);
    r.set("rate_max", st.rate_max);
    if let Some(h) = up.health.as_ref().filter(|_| st.checked) {
        set_check_fields(&mut r, h, st);
    }
    for (k, f) in HRSP.iter().enumerate() {
        r.set(f, st.responses[k]);
    }
    // HAProxy 2.6 counts a server's req_tot where it counts its hrsp_*:
    // the responses the server gave (0, not empty, for one that gave none).
    r.set("req_tot", st.responses.iter().sum::<u64>());
    r.set("lastsess", last_session_age(st.last_session, now));
    for (k, (avg, max)) in TIME_FIELDS.iter().enumerate() {
        r.set(avg, timing_array(st.times)[k]);
        r.set(max, timing_array(st.times_max)[k]);
    }
    r.set("addr", srv.addr.to_string());
    r.set("mode", "http");
    r.set("uweight", w);
    r
}

/// HAProxy's `check_status` word for the last check.
fn check_status(kind: HealthKind, last: LastCheck) -> &'static str {
    match (kind, last) {
        (_, LastCheck::None) => "INI",
        (HealthKind::Tcp, LastCheck::Passed { .. }) => "L4OK",
        (HealthKind::Http, LastCheck::Passed { .. }) => "L7OK",
        (_, LastCheck::Failed { why, .. }) => why.word(),
    }
}

/// The number HAProxy's `show servers state` gives a `check_status` word
/// (`enum healthcheck_status`, HAProxy 2.6).
fn check_status_number(status: &str) -> u8 {
    match status {
        "INI" => 1,
        "L4OK" => 6,
        "L4TOUT" => 7,
        "L4CON" => 8,
        "L6TOUT" => 10,
        "L6RSP" => 11,
        "L7TOUT" => 12,
        "L7RSP" => 13,
        "L7OK" => 15,
        "L7STS" => 17,
        _ => 0,
    }
}

/// The check_* fields of a server whose upstream has health checks.
fn set_check_fields(r: &mut Row, h: &Health, st: &ServerStats) {
    let code = st.last_check.code();
    let status = check_status(h.kind, st.last_check);
    r.set("check_status", status);
    r.set("check_desc", check_desc(status));
    if code > 0 {
        r.set("check_code", code);
    }
    r.set("check_duration", st.last_check.duration().as_millis());
    r.set("check_rise", h.rise);
    r.set("check_fall", h.fall);
    r.set("check_health", st.health.counter);
}

/// HAProxy's description of a check result (`check_desc`).
fn check_desc(status: &str) -> &'static str {
    match status {
        "INI" => "Initializing",
        "L4OK" => "Layer4 check passed",
        "L7OK" => "Layer7 check passed",
        "L7STS" => "Layer7 wrong status",
        "L4TOUT" => "Layer4 timeout",
        "L7TOUT" => "Layer7 timeout",
        "L7RSP" => "Layer7 invalid response",
        "L6TOUT" => "Layer6 timeout",
        "L6RSP" => "Layer6 invalid response",
        _ => "Layer4 connection problem",
    }
}

/// An upstream's BACKEND row: its servers' sums, UP while one is usable.
/// Its queue: the requests waiting for any of its servers, and those that
/// waited in vain (`timeouts.queue`), which HAProxy counts as connection
/// errors answered 5xx; so are the requests no server could take (503,
/// HAProxy's failed_conns on SRV_STATUS_NOSRV), which are requests of the
/// backend too.
fn backend_row(
    v: &Source,
    u: usize,
    up: &Upstream,
    totals: &BackendTotals,
    iid: usize,
    now: u64,
) -> Row {
    let shared = v.shm.upstream(u);
    let queue = shared.queue();
    let (sums, act, bck) = (&totals.counters, totals.act, totals.bck);
    // Answered 503 by forklb for this upstream without a server (the
    // queue timed out, or none was usable): as HAProxy, sessions, requests,
    // connection errors and 5xx responses of the BACKEND row.
    let local_5xx = queue.timeouts() + shared.no_server();
    // Requests, not attempts: the servers' stot counts a retried request
    // once per server it tried, HAProxy's BACKEND row once.
    let requests = sums[2].saturating_sub(shared.reattempts()) + local_5xx;
    let mut r = Row::new(Kind::Backend, &up.name, "BACKEND", iid, 0);
    r.set("qcur", queue.queued());
    r.set("qmax", queue.max_queued());
    // Its requests, those waiting in the queue included (HAProxy's
    // beconn), not its servers' sum: a queued request is the backend's.
    let (sessions, max_sessions) = shared.sessions();
    r.set("scur", sessions);
    r.set("smax", max_sessions);
    // The backend's sessions and requests include those answered without a
    // server (HAProxy 2.6: stot and req_tot count them, econ too).
    r.set("stot", requests);
    r.set("bin", sums[3]);
    r.set("bout", sums[4]);
    r.set("econ", sums[5] + local_5xx);
    r.set("eresp", sums[6]);
    r.set("wredis", sums[7]);
    r.set("status", if act + bck > 0 { "UP" } else { "DOWN" });
    // The row's own servers say whether the backend is UP: a change since
    // the last look (a passive mark that ran out, say) is its transition,
    // so the status and lastchg below always agree.
    let backend = shared.backend();
    backend.observe(act + bck > 0, now);
    let history = backend.history(now);
    r.set("chkdown", history.down_trans);
    r.set("lastchg", now.saturating_sub(history.last_change));
    r.set("downtime", history.downtime);
    let weight = if act > 0 {
        totals.act_weight
    } else {
        totals.bck_weight
    };
    r.set("weight", weight);
    r.set("act", act);
    r.set("bck", bck);
    r.set("pid", PROCESS_NUM);
    r.set("lbtot", sums[8]);
    r.set("type", 1);
    let (rate, rate_max) = shared.rates();
    r.set("rate", rate);
    r.set("rate_max", rate_max);
    r.set("req_tot", requests);
    for (k, f) in HRSP.iter().enumerate() {
        // hrsp_5xx is index 4: with forklb's own 502s and 504s after a
        // server was chosen, which no server row has (as HAProxy 2.6).
        let local = if k == 4 {
            local_5xx + shared.answered_5xx()
        } else {
            0
        };
        r.set(f, sums[9 + k] + local);
    }
    r.set("lastsess", last_session_age(totals.last_session, now));
    let times = totals.times();
    for (k, (avg, max)) in TIME_FIELDS.iter().enumerate() {
        r.set(avg, times[k]);
        r.set(max, totals.times_max[k]);
    }
    r.set("mode", "http");
    r.set("algo", algo_name(up.balance));
    r.set("uweight", weight);
    r
}

const STATE_HEADER: &str = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port";

/// The state file's two columns after HAProxy's: a server's current and
/// configured maxconn (HAProxy keeps no maxconn in its state file, forklb
/// carries `set maxconn server` across restarts and upgrades with them).
const STATE_FILE_EXTRA: &str = " srv_maxconn srv_imaxconn";

/// `show servers state [backend]`, as HAProxy prints it.
pub fn show_servers_state(v: &View, only: Option<&str>) -> String {
    servers_state(v, only, false)
}

/// The state file's contents: `show servers state` with the maxconn
/// columns (`STATE_FILE_EXTRA`) at the end of every line.
pub fn state_file_text(v: &View) -> String {
    servers_state(v, None, true)
}

fn servers_state(v: &View, only: Option<&str>, state_file: bool) -> String {
    let extra = if state_file { STATE_FILE_EXTRA } else { "" };
    let mut out = format!("1\n{STATE_HEADER}{extra}\n");
    let now = shm::unix_secs();
    for (u, up) in v.config.upstreams.iter().enumerate() {
        let name = &up.name;
        if only.is_some_and(|o| o != name) {
            continue;
        }
        for (s, srv) in up.servers.iter().enumerate() {
            let st = v.shm.server(u, s).stats();
            let maint = st.admin == AdminState::Maint;
            // HAProxy's srv_op_state: 0 stopped (DOWN, or in maintenance,
            // which stops a server whatever its checks say), 3 stopping
            // (`health stopping`), 2 running.
            let op = if st.is_down() || maint {
                0
            } else if st.stopping {
                3
            } else {
                2
            };
            // HAProxy's srv_admin_state bits: forced maintenance, forced drain.
            let admin = match st.admin {
                AdminState::Maint => 1,
                AdminState::Drain => 8,
                AdminState::Ready => 0,
            };
            let (ip, port) = (srv.addr.ip().to_string(), srv.addr.port());
            let check = CheckColumns::of(up.health.as_ref(), &st);
            let _ = write!(
                out,
                "{} {name} {} {} {ip} {op} {admin} {} {} {} {} {} {} {} 0 0 0 - {port} - 0 0 - - 0",
                upstream_iid(v.config, u),
                srv.id,
                srv.name,
                st.weight,
                srv.weight,
                now.saturating_sub(st.last_change),
                check.status,
                check.result,
                check.health,
                check.state,
            );
            if state_file {
                let _ = write!(out, " {} {}", st.maxconn, srv.maxconn);
            }
            out.push('\n');
        }
    }
    out
}

/// `show servers state`'s srv_check_status, srv_check_result,
/// srv_check_health and srv_check_state, as HAProxy 2.6 fills them.
struct CheckColumns {
    status: u8,
    result: u8,
    health: u32,
    state: u8,
}

impl CheckColumns {
    fn of(health: Option<&Health>, st: &ServerStats) -> CheckColumns {
        let Some(h) = health else {
            // No checks: status INI, result unknown, and the counter
            // HAProxy keeps for the server (its default rise, 2; 0 when
            // forced down, rise + fall - 1 = 4 once forced up or stopping).
            let health = match (st.health.down, st.health.counter) {
                (true, _) => 0,
                (false, 0) => 2,
                (false, _) => 4,
            };
            return CheckColumns {
                status: 1,
                result: 0,
                health,
                state: 0,
            };
        };
        let maint = st.admin == AdminState::Maint;
        // CHK_RES_*: 0 unknown (none yet), 2 failed, 3 passed.
        let result = match st.last_check {
            LastCheck::None => 0,
            LastCheck::Failed { .. } => 2,
            LastCheck::Passed { .. } => 3,
        };
        // CHK_ST_CONFIGURED 0x2, ENABLED 0x4 (not `disable health`d), and
        // PAUSED 0x8 in maintenance, where HAProxy also zeroes the counter.
        let state = 0x2
            | if st.checked {
                0x4 | if maint { 0x8 } else { 0 }
            } else {
                0
            };
        CheckColumns {
            status: check_status_number(check_status(h.kind, st.last_check)),
            result,
            health: if maint && st.checked {
                0
            } else {
                st.health.counter
            },
            state,
        }
    }
}

/// Applies a state file (the `show servers state` format, maxconn columns
/// optional): admin states, and weights and maxconns changed at runtime
/// when the configured value is still the one they were changed from.
/// Unknown backends or servers are ignored.
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
        let maint = admin & 0x7 != 0;
        shm.server(u, s).set_admin(if maint {
            AdminState::Maint
        } else if admin & 0x38 != 0 {
            AdminState::Drain
        } else {
            AdminState::Ready
        });
        // An unchecked server's op state is what an operator forced (`set
        // server … health down|stopping`): it holds across a restart, as
        // HAProxy restores it. A checked one's is its checks' to decide.
        if config.upstreams[u].health.is_none() && !maint {
            let forced = match f[5] {
                "0" => Some(ForcedHealth::Down),
                "3" => Some(ForcedHealth::Stopping),
                _ => None,
            };
            if let Some(to) = forced {
                shm.server(u, s).force_health(to, 1);
            }
        }
        if let Some(Ok(ago)) = f.get(9).map(|v| v.parse::<u64>()) {
            shm.server(u, s).restore_last_change(shm::unix_secs(), ago);
        }
        let (Ok(uweight), Ok(iweight)) = (f[7].parse::<u32>(), f[8].parse::<u32>()) else {
            continue;
        };
        let configured = &config.upstreams[u].servers[s];
        if iweight == configured.weight {
            // A weight above MAX_WEIGHT is refused and ignored, as before.
            let _ = shm.set_weight(u, s, uweight);
        }
        // Files written before the maxconn columns existed have 25 fields.
        let maxconns = f
            .get(25..27)
            .map(|m| (m[0].parse::<u32>(), m[1].parse::<u32>()));
        if let Some((Ok(maxconn), Ok(imaxconn))) = maxconns {
            if imaxconn == configured.maxconn {
                shm.server(u, s).set_maxconn(maxconn);
            }
        }
        applied += 1;
    }
    applied
}

#[cfg(test)]
mod status_tests {
    use super::*;
    use crate::shm::HealthState;

    fn st(
        admin: AdminState,
        counter: u32,
        down: bool,
        stopping: bool,
        checked: bool,
    ) -> ServerStats {
        ServerStats {
            admin,
            health: HealthState { counter, down },
            stopping,
            checked,
            ..Default::default()
        }
    }

    /// HAProxy 2.6's words (`stats.c`, `srv_hlt_st`) for each combination
    /// of admin state, operational state and check counter (rise 2, fall
    /// 2: the counter's top is 3).
    #[test]
    fn status_words_follow_haproxy_s_order() {
        use AdminState::*;
        let h = Some((2, 2));
        for (s, health, want) in [
            (st(Maint, 0, true, false, true), h, "MAINT"),
            (st(Ready, 3, false, false, true), h, "UP"),
            (st(Ready, 2, false, false, true), h, "UP 1/2"),
            (st(Ready, 1, true, false, true), h, "DOWN 1/2"),
            (st(Ready, 0, true, false, true), h, "DOWN"),
            (st(Drain, 3, false, false, true), h, "DRAIN"),
            (st(Drain, 2, false, false, true), h, "DRAIN 1/2"),
            (st(Drain, 0, true, false, true), h, "DOWN"),
            (st(Drain, 3, false, true, true), h, "NOLB"),
            (st(Ready, 2, false, true, true), h, "NOLB 1/2"),
            (st(Ready, 0, false, false, false), None, "no check"),
            (st(Ready, 0, true, false, false), None, "DOWN"),
            (st(Drain, 0, false, false, false), None, "DRAIN"),
            (st(Drain, 0, true, false, false), None, "DOWN"),
            (st(Drain, 0, false, true, false), None, "NOLB"),
            // Checks configured but disabled over the API: as unchecked.
            (st(Ready, 1, false, false, false), h, "no check"),
        ] {
            assert_eq!(server_status(&s, health), want, "{s:?}");
        }
    }

    /// A passive mark says DOWN over every state but MAINT, checked or
    /// not, and takes the server out of the usable ones.
    #[test]
    fn a_passive_mark_says_down() {
        use AdminState::*;
        let h = Some((2, 2));
        for (mut s, health, want) in [
            (st(Ready, 0, false, false, false), None, "DOWN"),
            (st(Ready, 3, false, false, true), h, "DOWN"),
            (st(Drain, 3, false, false, true), h, "DOWN"),
            (st(Ready, 3, false, true, true), h, "DOWN"),
            (st(Ready, 1, true, false, true), h, "DOWN 1/2"),
            (st(Maint, 0, false, false, true), h, "MAINT"),
        ] {
            s.passive_down = true;
            s.weight = 1;
            assert_eq!(server_status(&s, health), want, "{s:?}");
            assert!(!s.is_ready() && s.is_down(), "{s:?}");
        }
    }
}
