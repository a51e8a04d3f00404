//! `metrics: prometheus` routes: the output parses as the Prometheus text
//! format and its numbers add up over all workers.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;

/// Parses the text format strictly: every line is a comment (`# HELP` /
/// `# TYPE`) or `name{labels} value` / `name value` with a float value.
fn parse(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP forklb_") || rest.starts_with("TYPE forklb_"),
                "bad comment: {line}"
            );
            if let Some(t) = rest.strip_prefix("TYPE ") {
                let kind = t.split(' ').nth(1).unwrap_or("");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels: {line}"));
                let mut labels = HashMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label: {line}"));
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), HashMap::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name: {line}"
        );
        out.push((name, labels, value));
    }
    out
}

fn value(m: &[(String, HashMap<String, String>, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

#[test]
fn metrics_parse_and_add_up_over_workers() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/metrics").metrics())
        .route(Route::to("main"))
        .upstream("main", [Srv::new("a", a.addr()), Srv::new("b", b.addr())])
        .build();
    let lb = Forklb::start(&yaml);
    for _ in 0..40 {
        assert_eq!(http_get(lb.port(), "/x").status, 200);
    }
    // A worker settles a request's counters (the duration histogram among
    // them) just after its response is written: the page read by the other
    // worker may come a moment before. Read until they settle, briefly.
    let settled = Instant::now() + Duration::from_secs(2);
    let r = loop {
        let r = http_get(lb.port(), "/metrics");
        let count = value(
            &parse(&r.body_str()),
            "forklb_upstream_request_duration_seconds_count",
            &[("upstream", "main")],
        );
        if count >= 40.0 || Instant::now() >= settled {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4"),
        "{r:?}"
    );
    let m = parse(&r.body_str());
    assert_eq!(value(&m, "forklb_workers", &[]), 2.0);
    assert_eq!(value(&m, "forklb_generation", &[]), 1.0);
    assert_eq!(
        value(&m, "forklb_server_requests_total", &[("upstream", "main")]),
        40.0
    );
    assert_eq!(
        value(&m, "forklb_server_requests_total", &[("server", "a")]) as usize,
        a.request_count()
    );
    assert_eq!(
        value(&m, "forklb_server_responses_total", &[("code", "2xx")]),
        40.0
    );
    assert_eq!(value(&m, "forklb_server_up", &[("server", "b")]), 1.0);
    assert_eq!(value(&m, "forklb_server_weight", &[("server", "a")]), 1.0);
    assert_eq!(
        value(
            &m,
            "forklb_server_admin_state",
            &[("server", "a"), ("state", "ready")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "forklb_server_admin_state",
            &[("server", "a"), ("state", "maint")]
        ),
        0.0
    );
    assert!(value(&m, "forklb_server_bytes_out_total", &[]) > 0.0);
    assert!(value(&m, "forklb_requests_total", &[]) >= 41.0);
    assert!(value(&m, "forklb_connections_total", &[]) >= 41.0);
    // The histogram: cumulative buckets ending in +Inf = count = requests.
    let buckets: Vec<f64> = m
        .iter()
        .filter(|(n, l, _)| {
            n == "forklb_upstream_request_duration_seconds_bucket" && l["upstream"] == "main"
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(buckets.len(), 12);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(*buckets.last().unwrap(), 40.0);
    assert_eq!(
        value(
            &m,
            "forklb_upstream_request_duration_seconds_count",
            &[("upstream", "main")]
        ),
        40.0
    );
    assert!(
        value(
            &m,
            "forklb_upstream_request_duration_seconds_sum",
            &[("upstream", "main")]
        ) > 0.0
    );
}
