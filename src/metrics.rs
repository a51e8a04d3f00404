//! `/metrics` in the Prometheus text format (0.0.4): instance-wide counters
//! and gauges read from shared memory, so any worker answers for all of
//! them, plus a request-duration histogram per upstream.

use crate::route::Runtime;
use crate::shm::{AdminState, ServerStats, Shm, DURATION_BUCKETS};
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `/metrics` in the route's format.
pub fn render_as(format: crate::config::MetricsFormat, rt: &Runtime, shm: &Shm) -> String {
    match format {
        crate::config::MetricsFormat::Prometheus => render(rt, shm),
        crate::config::MetricsFormat::Haproxy => crate::metrics_haproxy::render(rt, shm),
    }
}

pub fn render(rt: &Runtime, shm: &Shm) -> String {
    let mut out = String::with_capacity(8192);
    instance_families(&mut out, rt, shm);
    // One snapshot per server for every family below.
    let stats: Vec<Vec<ServerStats>> = rt
        .upstreams
        .iter()
        .enumerate()
        .map(|(u, up)| {
            (0..up.servers.len())
                .map(|i| shm.server(u, i).stats())
                .collect()
        })
        .collect();
    server_counters(&mut out, rt, &stats);
    server_responses(&mut out, rt, &stats);
    server_admin_states(&mut out, rt, &stats);
    upstream_durations(&mut out, rt, shm);
    out
}

/// Families about the whole instance: version, generation, workers,
/// connections and requests summed over the workers.
fn instance_families(out: &mut String, rt: &Runtime, shm: &Shm) {
    let workers = shm.worker_count();
    let totals = shm.worker_totals();

    family(
        out,
        "forklb_info",
        "gauge",
        "Version of the running forklb.",
    );
    let _ = writeln!(
        out,
        "forklb_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        out,
        "forklb_generation",
        "gauge",
        "Configuration generation (reloads + 1).",
    );
    let _ = writeln!(out, "forklb_generation {}", rt.generation);
    family(
        out,
        "forklb_workers",
        "gauge",
        "Worker processes of this generation.",
    );
    let _ = writeln!(out, "forklb_workers {workers}");
    family(
        out,
        "forklb_connections_current",
        "gauge",
        "Open client connections.",
    );
    let _ = writeln!(out, "forklb_connections_current {}", totals.conns_current);
    family(
        out,
        "forklb_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(out, "forklb_connections_total {}", totals.conns_total);
    family(
        out,
        "forklb_accept_wakeups_total",
        "counter",
        "Listener events workers handled; about one per accepted connection means no thundering herd.",
    );
    let _ = writeln!(out, "forklb_accept_wakeups_total {}", totals.accept_wakeups);
    family(
        out,
        "forklb_worker_connections",
        "gauge",
        "Open client connections per worker (how evenly connections spread).",
    );
    for w in 0..workers {
        let n = shm.worker(w).conns_current();
        let _ = writeln!(out, "forklb_worker_connections{{worker=\"{w}\"}} {n}");
    }
    family(
        out,
        "forklb_requests_total",
        "counter",
        "Requests received (all routes).",
    );
    let _ = writeln!(out, "forklb_requests_total {}", totals.requests);
}

/// One family per server counter or gauge, a sample per (upstream, server).
fn server_counters(out: &mut String, rt: &Runtime, stats: &[Vec<ServerStats>]) {
    type Getter = fn(&ServerStats) -> u64;
    let per_server: [(&str, &str, &str, Getter); 9] = [
        (
            "forklb_server_requests_total",
            "counter",
            "Requests sent to the server.",
            |s| s.requests,
        ),
        (
            "forklb_server_bytes_in_total",
            "counter",
            "Bytes sent to the server.",
            |s| s.bytes_in,
        ),
        (
            "forklb_server_bytes_out_total",
            "counter",
            "Bytes received from the server.",
            |s| s.bytes_out,
        ),
        (
            "forklb_server_connect_errors_total",
            "counter",
            "Failed connection attempts.",
            |s| s.connect_errors,
        ),
        (
            "forklb_server_response_errors_total",
            "counter",
            "Invalid or failed responses.",
            |s| s.response_errors,
        ),
        (
            "forklb_server_redispatches_total",
            "counter",
            "Requests that failed on this server and went on to another one.",
            |s| s.redispatches,
        ),
        (
            "forklb_server_active_requests",
            "gauge",
            "Requests in flight on the server.",
            |s| u64::from(s.active),
        ),
        ("forklb_server_weight", "gauge", "Current weight.", |s| {
            u64::from(s.weight)
        }),
        (
            "forklb_server_up",
            "gauge",
            "1 if the server may take new requests (ready, not DOWN by checks, an operator or passive detection, weight > 0).",
            |s| u64::from(s.is_ready()),
        ),
    ];
    for (name, kind, help, get) in per_server {
        family(out, name, kind, help);
        for (u, up) in rt.upstreams.iter().enumerate() {
            for (i, srv) in up.servers.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{upstream=\"{}\",server=\"{}\"}} {}",
                    label(&up.name),
                    label(&srv.name),
                    get(&stats[u][i])
                );
            }
        }
    }
}

/// Responses per server by status class.
fn server_responses(out: &mut String, rt: &Runtime, stats: &[Vec<ServerStats>]) {
    family(
        out,
        "forklb_server_responses_total",
        "counter",
        "Responses by status class.",
    );
    for (u, up) in rt.upstreams.iter().enumerate() {
        for (i, srv) in up.servers.iter().enumerate() {
            let st = &stats[u][i];
            for (k, class) in ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
                .iter()
                .enumerate()
            {
                let _ = writeln!(
                    out,
                    "forklb_server_responses_total{{upstream=\"{}\",server=\"{}\",code=\"{class}\"}} {}",
                    label(&up.name),
                    label(&srv.name),
                    st.responses[k]
                );
            }
        }
    }
}

/// The admin state per server as one 0/1 sample per possible state.
fn server_admin_states(out: &mut String, rt: &Runtime, stats: &[Vec<ServerStats>]) {
    family(
        out,
        "forklb_server_admin_state",
        "gauge",
        "Admin state (one of ready, drain, maint is 1).",
    );
    for (u, up) in rt.upstreams.iter().enumerate() {
        for (i, srv) in up.servers.iter().enumerate() {
            let admin = stats[u][i].admin;
            for value in AdminState::ALL {
                let state = value.word();
                let _ = writeln!(
                    out,
                    "forklb_server_admin_state{{upstream=\"{}\",server=\"{}\",state=\"{state}\"}} {}",
                    label(&up.name),
                    label(&srv.name),
                    u8::from(admin == value)
                );
            }
        }
    }
}

/// The request-duration histogram per upstream (cumulative buckets).
fn upstream_durations(out: &mut String, rt: &Runtime, shm: &Shm) {
    family(
        out,
        "forklb_upstream_request_duration_seconds",
        "histogram",
        "Time from dispatching a request to an upstream to the end of its response.",
    );
    for (u, up) in rt.upstreams.iter().enumerate() {
        let d = shm.upstream(u).durations();
        let name = label(&up.name);
        let mut cumulative = 0;
        for (k, b) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += d.buckets[k];
            let _ = writeln!(
                out,
                "forklb_upstream_request_duration_seconds_bucket{{upstream=\"{name}\",le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += d.buckets[DURATION_BUCKETS.len()];
        let _ = writeln!(
            out,
            "forklb_upstream_request_duration_seconds_bucket{{upstream=\"{name}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "forklb_upstream_request_duration_seconds_sum{{upstream=\"{name}\"}} {}",
            d.sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "forklb_upstream_request_duration_seconds_count{{upstream=\"{name}\"}} {}",
            d.count
        );
    }
}
