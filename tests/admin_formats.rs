//! The runtime API's HAProxy 2.6 formats (issue 17): `show stat` with its
//! filter `{<iid>|<proxy>} <type> <sid>`, `no-maint`, `up`, and the `typed`
//! and `json` formats; `show info [typed|json]`, `show version`, `clear
//! counters [all]`; `metrics: haproxy` — checked against the real HAProxy
//! (Debian's `haproxy`, which `make test-deps` installs): for every field
//! both print, the tags and types (and `show info`'s positions) must be
//! HAProxy's, and every metric family forklb serves must be one of its
//! Prometheus exporter's, with the same type, HELP text and labels.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::*;

struct Setup {
    lb: Forklb,
    _dir: TempDir,
    sock: PathBuf,
    _backends: Vec<Backend>,
    /// The `api` listener, with `metrics: haproxy` on `/metrics`.
    api_port: u16,
}

/// Listeners `web` and `api`; upstream `main` (servers `a`, `b`, TCP
/// checks) and `other` (server `c`, unchecked); a few requests through it.
fn start() -> Setup {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let dir = TempDir::new("adminstat");
    let sock = dir.join("admin.sock");
    let api_port = free_port();
    let yaml = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::to("main"))
        .listener("api", &[&format!("127.0.0.1:{api_port}")])
        .route(Route::path("/metrics").metrics_haproxy())
        .route(Route::to("other"))
        .upstream("main", [Srv::new("a", a.addr()), Srv::new("b", b.addr())])
        .upstream_opt("health: {type: tcp, interval: 200ms, timeout: 500ms, rise: 1, fall: 1}")
        .upstream("other", [Srv::new("c", c.addr())])
        .build();
    let lb = Forklb::start(&yaml);
    assert!(
        wait_until(Duration::from_secs(5), || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    for _ in 0..4 {
        assert_eq!(http_get(lb.port(), "/").status, 200);
    }
    Setup {
        lb,
        _dir: dir,
        sock,
        _backends: vec![a, b, c],
        api_port,
    }
}

/// The `pxname,svname` of each CSV row (the header checked and dropped).
fn rows(csv: &str) -> Vec<String> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or("");
    assert!(header.starts_with("# pxname,svname,qcur,"), "{csv}");
    lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn filters_select_proxies_kinds_and_servers() {
    let s = start();
    let all = rows(&admin_cmd(&s.sock, "show stat"));
    assert_eq!(
        all,
        [
            "web,FRONTEND",
            "api,FRONTEND",
            "main,a",
            "main,b",
            "main,BACKEND",
            "other,c",
            "other,BACKEND"
        ],
        "{}",
        s.lb.diagnostics()
    );
    let cases: &[(&str, &[&str])] = &[
        ("-1 4 -1", &["main,a", "main,b", "other,c"]),
        ("-1 1 -1", &["web,FRONTEND", "api,FRONTEND"]),
        ("-1 2 -1", &["main,BACKEND", "other,BACKEND"]),
        // Server 1 of every upstream; BACKEND rows are not filtered by sid.
        (
            "-1 6 1",
            &["main,a", "main,BACKEND", "other,c", "other,BACKEND"],
        ),
        ("main 6 2", &["main,b", "main,BACKEND"]),
        ("main -1 -1", &["main,a", "main,b", "main,BACKEND"]),
        ("main 1 -1", &[]),
        ("web 7 -1", &["web,FRONTEND"]),
        // Numeric ids as HAProxy's behind its stats socket (1 is the
        // CLI's own): listeners from 2, then upstreams.
        ("2 -1 -1", &["web,FRONTEND"]),
        ("3 -1 -1", &["api,FRONTEND"]),
        ("5 4 -1", &["other,c"]),
        ("1 -1 -1", &[]),
        ("99 -1 -1", &[]),
        ("main 4 7", &[]),
    ];
    for (args, want) in cases {
        let got = rows(&admin_cmd(&s.sock, &format!("show stat {args}")));
        assert_eq!(&got, want, "show stat {args}");
    }
}

#[test]
fn no_maint_and_up_hide_servers() {
    let s = start();
    assert_eq!(admin_cmd(&s.sock, "set server main/b state maint"), "\n");
    let no_maint = rows(&admin_cmd(&s.sock, "show stat -1 4 -1 no-maint"));
    assert_eq!(no_maint, ["main,a", "other,c"]);
    let up = rows(&admin_cmd(&s.sock, "show stat up"));
    assert!(!up.contains(&"main,b".to_owned()), "{up:?}");
    assert!(up.contains(&"main,BACKEND".to_owned()), "{up:?}");
    // A drained server still takes traffic: `up` keeps it.
    assert_eq!(admin_cmd(&s.sock, "set server main/b state drain"), "\n");
    let up = rows(&admin_cmd(&s.sock, "show stat -1 4 -1 up"));
    assert_eq!(up, ["main,a", "main,b", "other,c"]);
}

#[test]
fn unknown_arguments_are_errors() {
    let s = start();
    for args in [
        "foo",
        "typed csv",
        "main 4",
        "main x -1",
        "main 4 y",
        "-1 4 -1 json extra",
    ] {
        let answer = admin_cmd(&s.sock, &format!("show stat {args}"));
        assert!(
            answer.starts_with("Unknown argument") || answer.starts_with("show stat:"),
            "show stat {args}: {answer}"
        );
        assert!(!answer.contains("pxname"), "show stat {args}: {answer}");
    }
    assert_eq!(
        admin_cmd(&s.sock, "show stat nope 4 -1"),
        "No such proxy.\n\n"
    );
    assert_eq!(admin_cmd(&s.sock, "show stat 0 4 -1"), "No such proxy.\n\n");
}

/// `(kind letter, field name) → "TAGS:type"` of typed lines, checking each
/// line's shape on the way.
fn typed_tags(typed: &str) -> BTreeMap<(char, String), String> {
    let mut out = BTreeMap::new();
    for line in typed.lines().filter(|l| !l.is_empty()) {
        // F.2.0.4.scur.1:MGP:u32:0
        let (key, rest) = line.split_once(':').unwrap_or_else(|| panic!("{line}"));
        let parts: Vec<&str> = key.split('.').collect();
        assert_eq!(parts.len(), 6, "{line}");
        let kind = parts[0].chars().next().unwrap_or('?');
        assert!("FBS".contains(kind), "{line}");
        for n in &parts[1..4] {
            assert!(n.parse::<u64>().is_ok(), "{line}");
        }
        assert_eq!(parts[5], "1", "{line}");
        let mut it = rest.splitn(3, ':');
        let (tags, ty) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        assert_eq!(tags.len(), 3, "{line}");
        assert!(["str", "u32", "u64", "s32"].contains(&ty), "{line}");
        out.insert((kind, parts[4].to_owned()), format!("{tags}:{ty}"));
    }
    out
}

#[test]
fn typed_lines_carry_haproxys_tags() {
    let s = start();
    let typed = admin_cmd(&s.sock, "show stat typed");
    let ours = typed_tags(&typed);
    assert!(
        typed
            .lines()
            .any(|l| l.starts_with("S.4.1.17.status.1:SGP:str:")),
        "{typed}"
    );
    assert!(
        typed.lines().any(|l| l == "F.2.0.0.pxname.1:KNS:str:web"),
        "{typed}"
    );
    // desc appends HAProxy's description.
    let desc = admin_cmd(&s.sock, "show stat -1 1 -1 typed desc");
    assert!(
        desc.lines()
            .any(|l| l == "F.2.0.1.svname.1:KNS:str:FRONTEND:\"Server name\""),
        "{desc}"
    );

    let hap = Haproxy::start();
    let theirs = typed_tags(&hap.cmd("show stat typed"));
    let mut compared = 0;
    for (key, tags) in &ours {
        if let Some(t) = theirs.get(key) {
            assert_eq!(tags, t, "{key:?}: forklb {tags}, HAProxy {t}");
            compared += 1;
        }
    }
    assert!(
        compared > 60,
        "only {compared} fields in common:\n{theirs:?}"
    );
}

#[test]
fn json_is_haproxys_shape() {
    let s = start();
    let json = admin_cmd(&s.sock, "show stat json");
    let summary = python_json_summary(&json);
    let hap = Haproxy::start();
    let theirs = python_json_summary(&hap.cmd("show stat json"));
    // The same keys on every entry, and the same objType names.
    assert_eq!(
        summary["keys"], theirs["keys"],
        "ours {summary:?}\ntheirs {theirs:?}"
    );
    assert_eq!(summary["types"], "Backend,Frontend,Server", "{summary:?}");
    assert_eq!(summary["rows"], "7", "{summary:?}");
    // Filters apply to JSON too; nothing selected is an empty array.
    assert_eq!(admin_cmd(&s.sock, "show stat 99 -1 -1 json"), "[]\n\n");
    assert_eq!(
        python_json_summary(&admin_cmd(&s.sock, "show stat main 4 -1 json"))["rows"],
        "2"
    );
}

/// Parses `json` with Python's json module (Debian's python3): the number
/// of rows, the sorted set of keys of the entries, the objTypes.
fn python_json_summary(json: &str) -> BTreeMap<String, String> {
    let dir = TempDir::new("statjson");
    let file = dir.join("stat.json");
    fs::write(&file, json).expect("write json");
    let script = "import json,sys\n\
        d=json.load(open(sys.argv[1]))\n\
        keys=set(); types=set()\n\
        for row in d:\n\
        \x20 for e in row:\n\
        \x20   keys.add(','.join(sorted(e.keys()))+'|'+','.join(sorted(e['field']))+'|'+','.join(sorted(e['tags']))+'|'+','.join(sorted(e['value'])))\n\
        \x20   types.add(e['objType'])\n\
        print('rows=%d' % len(d)); print('keys=%s' % ';'.join(sorted(keys))); print('types=%s' % ','.join(sorted(types)))\n";
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "not valid JSON: {}\n{json}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// HAProxy 2.6 with a frontend, a backend of a checked and an unchecked
/// server, and an admin socket; one request through it.
struct Haproxy {
    /// First: killed before its folder goes.
    _process: HaproxyProcess,
    _dir: TempDir,
    sock: PathBuf,
    _backend: Backend,
    /// Its Prometheus exporter (`/metrics`).
    prom_port: u16,
}

impl Haproxy {
    fn start() -> Haproxy {
        let be = Backend::start("h");
        let dir = TempDir::new("haproxy");
        let sock = dir.join("admin.sock");
        let (port, prom_port) = (free_port(), free_port());
        let cfg = format!(
            "global\n    stats socket {} mode 600 level admin\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend web\n    bind 127.0.0.1:{port}\n    default_backend main\n\
             backend main\n    server a {addr} check inter 200ms\n    server b {addr}\n\
             frontend prom\n    bind 127.0.0.1:{prom}\n    http-request use-service prometheus-exporter if {{ path /metrics }}\n",
            sock.display(),
            prom = prom_port,
            addr = be.addr()
        );
        let process = HaproxyProcess::start(dir.path(), &cfg);
        assert!(
            wait_until(Duration::from_secs(10), || sock.exists()
                && try_http_get(port, "/").is_ok()),
            "haproxy did not start"
        );
        Haproxy {
            _process: process,
            _dir: dir,
            sock,
            _backend: be,
            prom_port,
        }
    }

    fn cmd(&self, line: &str) -> String {
        admin_cmd(&self.sock, line)
    }
}

// ---------------------------------------------------------------------------
// show info, show version, clear counters

/// `name → (position, "TAGS:type")` of `show info typed` lines.
fn info_typed(typed: &str) -> BTreeMap<String, (String, String)> {
    typed
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            // 49.Idle_pct.1:MaP:u32:100
            let (key, rest) = l.split_once(':').unwrap_or_else(|| panic!("{l}"));
            let (pos, name) = key
                .strip_suffix(".1")
                .and_then(|k| k.split_once('.'))
                .unwrap_or_else(|| panic!("{l}"));
            let mut it = rest.splitn(3, ':');
            let tags = format!("{}:{}", it.next().unwrap_or(""), it.next().unwrap_or(""));
            (name.to_owned(), (pos.to_owned(), tags))
        })
        .collect()
}

#[test]
fn show_info_has_haproxys_fields_positions_and_tags() {
    let s = start();
    let plain = admin_cmd(&s.sock, "show info");
    for name in [
        "Idle_pct",
        "ConnRate",
        "SessRate",
        "MaxConnRate",
        "Stopping",
        "Jobs",
        "Listeners",
        "CumReq",
        "Uptime_sec",
    ] {
        assert!(
            plain.lines().any(|l| l.starts_with(&format!("{name}: "))),
            "show info lacks {name}:\n{plain}"
        );
    }
    assert!(plain.contains("\nStopping: 0\n"), "{plain}");
    assert!(plain.contains("\nListeners: 2\n"), "{plain}");
    let ours = info_typed(&admin_cmd(&s.sock, "show info typed"));
    let hap = Haproxy::start();
    let theirs = info_typed(&hap.cmd("show info typed"));
    let mut compared = 0;
    for (name, t) in &ours {
        if let Some(h) = theirs.get(name) {
            assert_eq!(t, h, "{name}: forklb {t:?}, HAProxy {h:?}");
            compared += 1;
        }
    }
    assert!(compared >= 25, "only {compared} fields in common");
    // JSON: a flat array of entries shaped like HAProxy's.
    let json = admin_cmd(&s.sock, "show info json");
    assert!(
        json.starts_with("[{\"field\":{\"pos\":0,\"name\":\"Name\"}"),
        "{json}"
    );
    let theirs_json = hap.cmd("show info json");
    let shape = |j: &str| {
        let dir = TempDir::new("infojson");
        let f = dir.join("info.json");
        fs::write(&f, j).expect("write");
        let out = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import json,sys; d=json.load(open(sys.argv[1])); \
                 print(sorted(set(','.join(sorted(e)) + '|' + ','.join(sorted(e['tags'])) for e in d)))",
            ])
            .arg(&f)
            .output()
            .expect("python3");
        assert!(out.status.success(), "not JSON: {j}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(shape(&json), shape(&theirs_json));
    let desc = admin_cmd(&s.sock, "show info typed desc");
    assert!(
        desc.lines()
            .any(|l| l == "0.Name.1:POS:str:forklb:\"Product name\""),
        "{desc}"
    );
    let bad = admin_cmd(&s.sock, "show info fancy");
    assert!(
        bad.starts_with("Unknown argument 'fancy' to show info."),
        "{bad}"
    );
    assert_eq!(
        admin_cmd(&s.sock, "show version"),
        format!("{}\n\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn rates_and_idle_follow_the_load() {
    let s = start();
    // Idle: nothing to do, so (nearly) all of the last second was waiting.
    assert!(
        wait_until(Duration::from_secs(5), || info_value(&s.sock, "Idle_pct")
            >= 90),
        "an idle instance must report Idle_pct near 100:\n{}",
        admin_cmd(&s.sock, "show info")
    );
    // 2.5 s of new connections: the rate over a whole second shows them.
    let port = s.lb.port();
    let stop = std::time::Instant::now() + Duration::from_millis(2500);
    let mut sent = 0u64;
    let mut max_seen = 0;
    while std::time::Instant::now() < stop {
        assert_eq!(http_get(port, "/").status, 200);
        sent += 1;
        if sent.is_multiple_of(20) {
            max_seen = max_seen.max(info_value(&s.sock, "ConnRate"));
        }
    }
    assert!(sent > 50, "only {sent} requests in 2.5 s");
    assert!(
        max_seen >= 10,
        "ConnRate never rose under {sent} connections in 2.5 s:\n{}",
        admin_cmd(&s.sock, "show info")
    );
    let max_rate = info_value(&s.sock, "MaxConnRate");
    assert!(
        max_rate >= max_seen,
        "MaxConnRate {max_rate} < a seen rate {max_seen}"
    );
    assert!(
        max_rate <= sent,
        "MaxConnRate {max_rate} > all {sent} connections"
    );
    // Quiet again: the rate falls back to 0, the maximum stays until
    // `clear counters` resets it.
    assert!(
        wait_until(Duration::from_secs(5), || info_value(&s.sock, "ConnRate")
            == 0),
        "ConnRate must fall to 0 when idle"
    );
    assert_eq!(info_value(&s.sock, "MaxConnRate"), max_rate);
    assert_eq!(admin_cmd(&s.sock, "clear counters"), "\n");
    assert_eq!(info_value(&s.sock, "MaxConnRate"), 0);
}

#[test]
fn clear_counters_resets_maxima_and_all_resets_every_counter() {
    let s = start();
    for _ in 0..6 {
        assert_eq!(http_get(s.lb.port(), "/").status, 200);
    }
    let stot: u64 = stat_field(&s.sock, "main", "a", "stot")
        .parse()
        .expect("stot");
    assert!(stot > 0);
    // Sequential requests, but two workers: the next request can begin on
    // the other worker while the first is still releasing the server after
    // its last response byte went out, so the maximum is 1 or 2.
    let smax = stat_field(&s.sock, "main", "a", "smax");
    assert!(smax == "1" || smax == "2", "smax {smax}");
    // Without `all`: the maxima only (nothing in flight now).
    assert_eq!(admin_cmd(&s.sock, "clear counters"), "\n");
    assert_eq!(stat_field(&s.sock, "main", "a", "smax"), "0");
    assert_eq!(stat_field(&s.sock, "main", "a", "stot"), stot.to_string());
    // `all`: every counter of every server, seen by every worker.
    assert_eq!(admin_cmd(&s.sock, "clear counters all"), "\n");
    for srv in ["a", "b", "c"] {
        for f in ["stot", "bin", "bout", "hrsp_2xx", "lbtot"] {
            assert_eq!(
                stat_field(&s.sock, if srv == "c" { "other" } else { "main" }, srv, f),
                "0",
                "{srv} {f}"
            );
        }
    }
    // Counting goes on from zero.
    for _ in 0..4 {
        assert_eq!(http_get(s.lb.port(), "/").status, 200);
    }
    let a: u64 = stat_field(&s.sock, "main", "a", "stot")
        .parse()
        .expect("stot");
    let b: u64 = stat_field(&s.sock, "main", "b", "stot")
        .parse()
        .expect("stot");
    assert_eq!(a + b, 4);
    // Another word than `all` clears the maxima only, as in HAProxy.
    assert_eq!(admin_cmd(&s.sock, "clear counters everything"), "\n");
    assert_eq!(stat_field(&s.sock, "main", "a", "stot"), a.to_string());
}

// ---------------------------------------------------------------------------
// metrics: haproxy

/// A Prometheus text body: family → (TYPE, HELP, label names seen), and
/// the samples as `(name{labels}, value)`.
struct Exposition {
    families: BTreeMap<String, (String, String, Vec<String>)>,
    samples: Vec<(String, String)>,
}

fn exposition(body: &str) -> Exposition {
    let mut families: BTreeMap<String, (String, String, Vec<String>)> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_owned()).or_default().1 = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_owned()).or_default().0 = ty.to_owned();
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let name = series.split('{').next().unwrap_or(series);
            let fam = families
                .get_mut(name)
                .unwrap_or_else(|| panic!("sample before its # TYPE: {line}"));
            if let Some(labels) = series.split_once('{').map(|(_, l)| l.trim_end_matches('}')) {
                for l in labels.split(',') {
                    let key = l.split('=').next().unwrap_or("").to_owned();
                    if !fam.2.contains(&key) {
                        fam.2.push(key);
                    }
                }
            }
            assert!(
                value == "NaN" || value.parse::<f64>().is_ok(),
                "not a number: {line}"
            );
            samples.push((series.to_owned(), value.to_owned()));
        }
    }
    Exposition { families, samples }
}

#[test]
fn metrics_haproxy_speaks_haproxys_exporter() {
    let s = start();
    let r = http_get(s.api_port, "/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );
    let ours = exposition(&r.body_str());
    let hap = Haproxy::start();
    let theirs_body = try_http_get(hap.prom_port, "/metrics")
        .expect("HAProxy's exporter")
        .body_str();
    let theirs = exposition(&theirs_body);
    assert!(ours.families.len() >= 50, "{:?}", ours.families.keys());
    for (name, (ty, help, labels)) in &ours.families {
        let (hty, hhelp, hlabels) = theirs
            .families
            .get(name)
            .unwrap_or_else(|| panic!("{name} is no HAProxy family"));
        assert_eq!((ty, help), (hty, hhelp), "{name}");
        let (mut a, mut b) = (labels.clone(), hlabels.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: labels");
    }
    // What dashboards read first is there.
    for name in [
        "haproxy_process_requests_total",
        "haproxy_process_idle_time_percent",
        "haproxy_frontend_http_requests_total",
        "haproxy_backend_status",
        "haproxy_backend_http_responses_total",
        "haproxy_server_status",
        "haproxy_server_sessions_total",
        "haproxy_server_check_status",
        "haproxy_server_current_sessions",
    ] {
        assert!(ours.families.contains_key(name), "{name} missing");
    }
    // The values are show stat's: 4 requests over main's two servers.
    let value = |series: &str| -> u64 {
        ours.samples
            .iter()
            .find(|(s, _)| s == series)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series}"))
    };
    let a = value("haproxy_server_sessions_total{proxy=\"main\",server=\"a\"}");
    let b = value("haproxy_server_sessions_total{proxy=\"main\",server=\"b\"}");
    assert_eq!(a + b, 4);
    assert_eq!(
        value("haproxy_backend_http_responses_total{proxy=\"main\",code=\"2xx\"}"),
        4
    );
    assert_eq!(
        value("haproxy_server_status{proxy=\"main\",server=\"a\",state=\"UP\"}"),
        1
    );
    // A state change shows at once, in every worker's answer.
    assert_eq!(admin_cmd(&s.sock, "set server main/a state maint"), "\n");
    for _ in 0..4 {
        let now = exposition(&http_get(s.api_port, "/metrics").body_str());
        let maint = now
            .samples
            .iter()
            .find(|(s, _)| {
                s == "haproxy_server_status{proxy=\"main\",server=\"a\",state=\"MAINT\"}"
            })
            .map(|(_, v)| v.clone());
        assert_eq!(maint.as_deref(), Some("1"));
    }
}

// ---------------------------------------------------------------------------
// What HAProxy's show stat / show servers state say and forklb said otherwise

#[test]
fn backend_weight_counts_active_servers_and_maint_is_op_state_0() {
    let (a, b, bk) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("k"),
    );
    let dir = TempDir::new("adminweight");
    let sock = dir.join("admin.sock");
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .admin_socket(&sock)
            .listener("web", &["127.0.0.1:$PORT"])
            .route(Route::to("main"))
            .upstream(
                "main",
                [
                    Srv::new("a", a.addr()).weight(2),
                    Srv::new("b", b.addr()).weight(3),
                    Srv::new("k", bk.addr()).weight(7).backup(),
                ],
            )
            .build(),
    );
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let backend = |field: &str| stat_field(&sock, "main", "BACKEND", field);
    // Backups do not add to the backend's weight while actives serve.
    assert_eq!(backend("weight"), "5");
    assert_eq!(backend("uweight"), "5");
    assert_eq!((backend("act"), backend("bck")), ("2".into(), "1".into()));
    assert_eq!(admin_cmd(&sock, "set server main/a state maint"), "\n");
    assert_eq!(admin_cmd(&sock, "set server main/b state maint"), "\n");
    // No active server left: the backups carry the backend.
    assert_eq!(backend("weight"), "7");
    let state = admin_cmd(&sock, "show servers state main");
    let op_state = |srv: &str| {
        state
            .lines()
            .find(|l| l.split(' ').nth(3) == Some(srv))
            .and_then(|l| l.split(' ').nth(5))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{srv} missing:\n{state}"))
    };
    assert_eq!(op_state("a"), "0", "{state}");
    assert_eq!(op_state("k"), "2", "{state}");
    drop(lb);
}

// ---------------------------------------------------------------------------
// help and unknown commands

#[test]
fn help_and_unknown_commands_read_as_haproxys() {
    let s = start();
    let hap = Haproxy::start();
    let ours = admin_cmd(&s.sock, "help");
    let theirs = hap.cmd("help");
    assert_eq!(ours.lines().next(), theirs.lines().next());
    // Every usage line of a command HAProxy has too is HAProxy's, byte for byte.
    let mut shared = 0;
    for line in ours.lines().skip(1).filter(|l| !l.is_empty()) {
        let usage = line.split(" : ").next().unwrap_or(line).trim_end();
        let words: Vec<&str> = usage
            .split_whitespace()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .collect();
        let key = format!("  {}", words.join(" "));
        if let Some(h) = theirs
            .lines()
            .find(|h| h.starts_with(&format!("{key} ")) || h.starts_with(&format!("{key}:")))
        {
            assert_eq!(line, h, "usage of {key:?}");
            shared += 1;
        }
    }
    assert!(shared >= 15, "only {shared} usage lines in common:\n{ours}");
    // A typo: the same header, the same suggestion, the same closing lines.
    for typo in ["show servers stat", "show stats"] {
        let o = admin_cmd(&s.sock, typo);
        let t = hap.cmd(typo);
        assert_eq!(o.lines().next(), t.lines().next(), "{typo}");
        let tail = |x: &str| {
            x.lines()
                .rev()
                .take(4)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(tail(&o), tail(&t), "{typo}:\n{o}\n---\n{t}");
    }
    let o = admin_cmd(&s.sock, "show servers stat");
    let t = hap.cmd("show servers stat");
    let line = "  show servers state [<backend>]          : dump volatile server information (all or for a single backend)";
    assert!(
        o.lines().any(|l| l == line) && t.lines().any(|l| l == line),
        "{o}\n---\n{t}"
    );
}

#[test]
fn frontend_rows_count_their_own_listener() {
    let s = start();
    // start() sent 4 requests over 4 connections to `web` (and the harness
    // probed the port once), none to `api`.
    let web = |f: &str| stat_field(&s.sock, "web", "FRONTEND", f);
    let api = |f: &str| stat_field(&s.sock, "api", "FRONTEND", f);
    let n = |v: String| v.parse::<u64>().expect("a number");
    assert!(
        wait_until(Duration::from_secs(5), || web("scur") == "0"),
        "closed connections leave scur"
    );
    assert_eq!(web("req_tot"), "4");
    assert!(n(web("stot")) >= 4, "{}", web("stot"));
    assert_eq!(web("stot"), web("conn_tot"));
    let api_conns = n(api("stot"));
    assert_eq!(api("req_tot"), "0");
    // Three requests on one keep-alive connection to `api`: one session.
    let mut c = Conn::open(s.api_port).expect("connect api");
    for _ in 0..3 {
        assert_eq!(c.get("/metrics").expect("GET").status, 200);
    }
    assert_eq!(api("scur"), "1");
    assert_eq!(n(api("stot")), api_conns + 1);
    assert_eq!(api("req_tot"), "3");
    assert_eq!(web("req_tot"), "4", "a listener's requests are its own");
    drop(c);
    assert!(wait_until(Duration::from_secs(5), || api("scur") == "0"));
}

#[test]
fn shutdown_sessions_answers_are_haproxys() {
    let s = start();
    let hap = Haproxy::start();
    for cmd in [
        "shutdown sessions server main/a",
        "shutdown sessions server main/a and more",
        "shutdown sessions server main/nope",
        "shutdown sessions server nope/a",
        "shutdown sessions server main",
        "shutdown sessions server",
        "help shutdown sessions",
    ] {
        assert_eq!(admin_cmd(&s.sock, cmd), hap.cmd(cmd), "{cmd}");
    }
    // An incomplete command: the same first lines (HAProxy lists its own
    // `shutdown` commands we do not have after ours).
    let (o, t) = (
        admin_cmd(&s.sock, "shutdown sessions"),
        hap.cmd("shutdown sessions"),
    );
    assert_eq!(
        o.lines().take(2).collect::<Vec<_>>(),
        t.lines().take(2).collect::<Vec<_>>(),
        "{o}\n---\n{t}"
    );
}

/// `set weight` / `set server … weight` with every kind of value: HAProxy
/// 2.6's answers byte for byte (the dashboard shows them as they are).
#[test]
fn set_weight_answers_are_haproxys() {
    let s = start();
    let hap = Haproxy::start();
    for value in [
        "1",
        "0",
        "256",
        "257",
        "300",
        "-1",
        "x",
        "5x",
        "300x",
        "%",
        "x%",
        "-5%",
        "5.5%",
        "5%x",
        "50%",
        "100%",
        "300%",
        "99999999999999999999",
        "+2",
        "",
    ] {
        for form in ["set server main/b weight", "set weight main/b"] {
            let cmd = format!("{form} {value}");
            assert_eq!(admin_cmd(&s.sock, &cmd), hap.cmd(&cmd), "{cmd}");
        }
    }
    for cmd in [
        "get weight main/b",
        "set server main/b weight",
        "set weight main/b",
    ] {
        assert_eq!(admin_cmd(&s.sock, cmd), hap.cmd(cmd), "{cmd}");
    }
}
