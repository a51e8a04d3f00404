//! The live dashboard (issue 19, route action `stats`), at the HTTP level:
//! the page, its assets and the JSON document over HTTP/1.1 and HTTP/2
//! with their security headers; the JSON against `show stat` and the
//! backends' own counts, over 2 workers; `allow`; the admin POST (token,
//! same-origin checks, the runtime API's answers, the state file); `-t`.
//! The page itself is tested in a browser elsewhere.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(10);

type Headers<'a> = Vec<(&'a str, &'a str)>;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Setup {
    lb: Forklb,
    dir: TempDir,
    sock: PathBuf,
    a: Backend,
    b: Backend,
    _c: Backend,
}

impl Setup {
    fn state_file(&self) -> PathBuf {
        self.dir.join("forklb.state")
    }
}

/// 2 workers; `/stats` read-only, `/admin` with the controls, `/mine`
/// only for 127.0.0.1; upstreams `api` (a, b) and `other` (c, checked).
fn start() -> Setup {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let dir = TempDir::new("dashboard");
    let sock = dir.join("admin.sock");
    let yaml = ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .admin_socket(&sock)
        .raw(&format!(
            "state_file: \"{}\"\n",
            dir.join("forklb.state").display()
        ))
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/stats").field("stats", "{}"))
        .route(Route::path("/admin").field("stats", "{admin: true}"))
        .route(Route::path("/mine").field("stats", "{allow: [127.0.0.1/32]}"))
        .route(Route::path("/other").upstream("other"))
        .route(Route::to("api"))
        .upstream("api", [Srv::new("a", a.addr()), Srv::new("b", b.addr())])
        .upstream("other", [Srv::new("c", c.addr())])
        .upstream_opt("health: {type: http, path: /, interval: 200ms}")
        .build();
    let lb = Forklb::start(&yaml);
    assert!(
        wait_until(T, || sock.exists()),
        "admin socket missing\n{}",
        lb.diagnostics()
    );
    Setup {
        lb,
        dir,
        sock,
        a,
        b,
        _c: c,
    }
}

fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut c = Conn::open(port).expect("connect");
    c.set_read_timeout(T);
    c.request(method, path, headers, b"").expect("response")
}

fn json(port: u16, path: &str) -> Value {
    let r = request(port, "GET", path, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_str()))
}

fn assert_security_headers(r: &Response) {
    assert_eq!(r.header("content-security-policy"), Some(CSP), "{r:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

fn upstream<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no upstream {name} in {doc}"))
}

fn server<'a>(doc: &'a Value, up: &str, name: &str) -> &'a Value {
    upstream(doc, up)["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server {up}/{name} in {doc}"))
}

fn sum(v: &Value) -> u64 {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("number"))
        .sum()
}

/// A POST of a change with `headers`.
fn post(port: u16, query: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "POST", &format!("/admin?{query}"), headers)
}

fn token(port: u16) -> String {
    json(port, "/admin?json")["token"]
        .as_str()
        .expect("token on an admin route")
        .to_owned()
}

/// The dashboard's JSON (`URL?json`) fetched with `curl PROTO`.
fn curl_json(proto: &str, url: &str) -> Value {
    let out = curl(&[proto, "-sSk", "--max-time", "10", &format!("{url}?json")]);
    assert!(out.ok(), "{}", out.combined());
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{proto} {url}?json: {e}\n{}", out.combined()))
}

/// `curl PROTO -X POST URL` with the dashboard token and `headers`
/// (`Name: value`); stdout is the body, then " STATUS".
fn curl_post(proto: &str, url: &str, token: &str, headers: &[&str]) -> ToolOutput {
    let token = format!("X-Forklb-Token: {token}");
    let mut args = vec![
        proto,
        "-sSk",
        "--max-time",
        "10",
        "-X",
        "POST",
        "-H",
        &token,
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.extend(["-w", " %{http_code}", url]);
    curl(&args)
}

#[test]
fn page_assets_and_json_over_http11() {
    let s = start();
    let port = s.lb.port();
    let page = request(port, "GET", "/stats", &[]);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_security_headers(&page);
    let html = page.body_str();
    assert!(
        html.contains("?asset=app.js") && html.contains("?asset=app.css"),
        "{html}"
    );
    // Any path under the prefix is the dashboard; HEAD has no body.
    let head = request(port, "HEAD", "/stats/x", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    assert_security_headers(&head);
    for (asset, ct) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let r = request(port, "GET", &format!("/stats?asset={asset}"), &[]);
        assert_eq!(r.status, 200, "{asset}: {r:?}");
        assert_eq!(r.header("content-type"), Some(ct));
        assert!(!r.body.is_empty());
        assert_security_headers(&r);
    }
    // The page's own parameters (read by its script) still get the page.
    let r = request(port, "GET", "/stats?refresh=1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, page.body);
    for missing in [
        "/stats?asset=../Cargo.toml",
        "/stats?asset=",
        "/stats?asset=index.html",
    ] {
        let r = request(port, "GET", missing, &[]);
        assert_eq!(r.status, 404, "{missing}: {r:?}");
        assert_security_headers(&r);
    }
    let r = request(port, "GET", "/stats?json", &[]);
    assert_security_headers(&r);
    let doc = json(port, "/stats?json");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["pid"].as_i64(), Some(i64::from(s.lb.master_pid())));
    assert_eq!(doc["workers"], 2);
    assert_eq!(doc["generation"], 1);
    assert_eq!(doc["admin"], false);
    assert!(doc.get("token").is_none(), "read-only route with a token");
    assert!(doc["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(doc["uptime_sec"].as_u64().unwrap() < 600);
    assert_eq!(
        doc["duration_buckets_ms"],
        serde_json::json!([5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000])
    );
    let l = &doc["listeners"][0];
    assert_eq!(l["name"], "web");
    assert_eq!(l["bind"][0], format!("127.0.0.1:{port}"));
    assert_eq!(l["status"], "OPEN");
    assert_eq!(l["hrsp"].as_array().unwrap().len(), 6);
    let api = upstream(&doc, "api");
    assert_eq!(api["balance"], "roundrobin");
    assert_eq!(api["status"], "UP");
    assert_eq!(api["durations"].as_array().unwrap().len(), 12);
    let a = server(&doc, "api", "a");
    assert_eq!(a["addr"], s.a.addr().to_string());
    assert_eq!(a["status"], "no check");
    assert_eq!(a["admin"], "ready");
    assert_eq!(a["weight"], 1);
    assert_eq!(a["initial_weight"], 1);
    assert_eq!(a["backup"], false);
    assert_eq!(a["maxconn"], 0);
    assert!(a["check"].is_null(), "{a}");
    assert_eq!(a["durations"].as_array().unwrap().len(), 12);
    // `other` is checked: its server's check once the checker ran.
    assert!(
        wait_until(T, || {
            server(&json(port, "/stats?json"), "other", "c")["check"]["status"] == "L7OK"
        }),
        "{}",
        json(port, "/stats?json")
    );
    let c = server(&json(port, "/stats?json"), "other", "c").clone();
    assert_eq!(c["check"]["desc"], "Layer7 check passed");
    assert!(c["check"]["duration_ms"].is_u64());
    assert_eq!(c["status"], "UP");
}

#[test]
fn json_statuses_match_show_stat() {
    let s = start();
    let port = s.lb.port();
    assert_eq!(admin_cmd(&s.sock, "set server api/b state maint"), "\n");
    assert_eq!(admin_cmd(&s.sock, "set server api/a weight 3"), "\n");
    let doc = json(port, "/stats?json");
    assert_eq!(server(&doc, "api", "b")["status"], "MAINT");
    assert_eq!(server(&doc, "api", "b")["admin"], "maint");
    assert_eq!(server(&doc, "api", "a")["weight"], 3);
    assert_eq!(server(&doc, "api", "a")["initial_weight"], 1);
    // Every server and upstream says what `show stat` says.
    for up in doc["upstreams"].as_array().unwrap() {
        let name = up["name"].as_str().unwrap();
        assert_eq!(
            up["status"].as_str().unwrap(),
            stat_field(&s.sock, name, "BACKEND", "status"),
            "{name}"
        );
        for sv in up["servers"].as_array().unwrap() {
            let sn = sv["name"].as_str().unwrap();
            for (j, f) in [("status", "status"), ("weight", "weight")] {
                let want = stat_field(&s.sock, name, sn, f);
                let got = match &sv[j] {
                    Value::String(x) => x.clone(),
                    v => v.to_string(),
                };
                assert_eq!(got, want, "{name}/{sn} {j}");
            }
        }
    }
    assert_eq!(
        doc["listeners"][0]["status"].as_str().unwrap(),
        stat_field(&s.sock, "web", "FRONTEND", "status")
    );
    assert_eq!(admin_cmd(&s.sock, "set server api/b state drain"), "\n");
    let doc = json(port, "/stats?json");
    assert_eq!(server(&doc, "api", "b")["status"], "DRAIN");
}

#[test]
fn counters_add_up_across_workers() {
    let s = start();
    let port = s.lb.port();
    for _ in 0..40 {
        assert_eq!(http_get(port, "/x").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(http_get(port, "/other").status, 200);
    }
    // A worker settles a request's counters (histograms among them) just
    // after its response is written; the document may be read a moment
    // before. Read until they settle, bounded.
    let settled = Instant::now() + T;
    let doc = loop {
        let doc = json(port, "/stats?json");
        let api = upstream(&doc, "api");
        let done = sum(&api["durations"]) == 40
            && ["a", "b"]
                .iter()
                .map(|n| sum(&server(&doc, "api", n)["durations"]))
                .sum::<u64>()
                == 40
            // The listener counts a response class as it is written out.
            && doc["listeners"][0]["hrsp"][1].as_u64() >= Some(43);
        if done || Instant::now() >= settled {
            break doc;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let api = upstream(&doc, "api");
    assert_eq!(api["cum_req"], 40, "{api}");
    assert_eq!(api["hrsp"][1], 40);
    assert_eq!(sum(&api["durations"]), 40);
    assert_eq!(api["in_flight"], 0);
    let (a, b) = (server(&doc, "api", "a"), server(&doc, "api", "b"));
    assert_eq!(a["cum_req"].as_u64().unwrap() as usize, s.a.request_count());
    assert_eq!(b["cum_req"].as_u64().unwrap() as usize, s.b.request_count());
    assert_eq!(
        a["cum_req"].as_u64().unwrap() + b["cum_req"].as_u64().unwrap(),
        40
    );
    assert_eq!(sum(&a["durations"]), a["cum_req"].as_u64().unwrap());
    assert_eq!(sum(&b["durations"]), b["cum_req"].as_u64().unwrap());
    assert_eq!(a["hrsp"][1], a["cum_req"]);
    assert_eq!(upstream(&doc, "other")["cum_req"], 3);
    // The instance and the listener saw the 43 requests and the pages.
    let l = &doc["listeners"][0];
    assert!(l["cum_req"].as_u64().unwrap() >= 43, "{l}");
    assert!(l["hrsp"][1].as_u64().unwrap() >= 43, "{l}");
    assert!(doc["cum_req"].as_u64().unwrap() >= 43);
    assert!(doc["cum_conns"].as_u64().unwrap() >= 43);
    // `show stat` read after the document: as many or more (the pages).
    let req_tot: u64 = stat_field(&s.sock, "web", "FRONTEND", "req_tot")
        .parse()
        .unwrap();
    let cum = l["cum_req"].as_u64().unwrap();
    assert!(req_tot >= cum && req_tot <= cum + 5, "{req_tot} vs {cum}");
}

#[test]
fn allow_refuses_other_sources() {
    let s = start();
    let port = s.lb.port();
    let mut c = Conn::open_from([127, 0, 0, 2], port).expect("connect from 127.0.0.2");
    c.set_read_timeout(T);
    let r = c.get("/mine?json").expect("response");
    assert_eq!(r.status, 403, "{r:?}");
    assert_security_headers(&r);
    let mut c = Conn::open_from([127, 0, 0, 2], port).expect("connect from 127.0.0.2");
    c.set_read_timeout(T);
    assert_eq!(c.get("/mine").expect("response").status, 403);
    // Other stats routes (no allow) let 127.0.0.2 in; 127.0.0.1 sees /mine.
    let mut c = Conn::open_from([127, 0, 0, 2], port).expect("connect from 127.0.0.2");
    c.set_read_timeout(T);
    assert_eq!(c.get("/stats?json").expect("response").status, 200);
    assert_eq!(request(port, "GET", "/mine", &[]).status, 200);
    assert_eq!(json(port, "/mine?json")["workers"], 2);
}

#[test]
fn admin_post_changes_state_and_weight() {
    let s = start();
    let port = s.lb.port();
    let doc = json(port, "/admin?json");
    assert_eq!(doc["admin"], true);
    let t = token(port);
    let origin = "http://localhost";
    let r = post(
        port,
        "action=state&server=api%2Fb&value=maint",
        &[
            ("X-Forklb-Token", &t),
            ("Origin", origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_str(), "{\"ok\":true}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_security_headers(&r);
    assert_eq!(stat_field(&s.sock, "api", "b", "status"), "MAINT");
    // No browser headers: the token alone (another origin cannot read it).
    let r = post(
        port,
        "action=weight&server=api/a&value=7",
        &[("X-Forklb-Token", &t)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(admin_cmd(&s.sock, "get weight api/a"), "7 (initial 1)\n\n");
    let r = post(
        port,
        "action=state&server=api/b&value=ready",
        &[("X-Forklb-Token", &t)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(stat_field(&s.sock, "api", "b", "status"), "no check");
    let r = post(
        port,
        "action=state&server=api/b&value=drain",
        &[("X-Forklb-Token", &t)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(stat_field(&s.sock, "api", "b", "status"), "DRAIN");
    // The master rewrote the state file, as after the admin socket's
    // command: weight 7 for a, admin state drain (0x08) for b.
    let state = s.state_file();
    assert!(
        wait_until(T, || {
            let text = std::fs::read_to_string(&state).unwrap_or_default();
            let row = |name: &str| -> Option<Vec<String>> {
                text.lines()
                    .find(|l| {
                        l.split(' ').nth(3) == Some(name)
                            && l.starts_with(|c: char| c.is_ascii_digit())
                    })
                    .map(|l| l.split(' ').map(str::to_owned).collect())
            };
            row("a").is_some_and(|r| r[7] == "7") && row("b").is_some_and(|r| r[6] == "8")
        }),
        "state file:\n{}",
        std::fs::read_to_string(&state).unwrap_or_default()
    );
    // Each change is logged with the client's address.
    assert!(
        s.lb.wait_log(
            "server api/b is going MAINT (set from the dashboard by 127.0.0.1)",
            T
        ),
        "{}",
        s.lb.diagnostics()
    );
    assert!(s.lb.wait_log(
        "server api/a weight set to 7 (initial 1, set from the dashboard by 127.0.0.1)",
        T
    ));
    // Traffic follows: b drains, so a takes new requests.
    let before = s.b.request_count();
    for _ in 0..10 {
        assert_eq!(http_get(port, "/x").status, 200);
    }
    assert_eq!(s.b.request_count(), before);
}

#[test]
fn admin_post_refusals_change_nothing() {
    let s = start();
    let port = s.lb.port();
    let t = token(port);
    let q = "action=state&server=api/b&value=maint";
    let (issued, mac) = t.split_once('.').unwrap();
    // The same MAC on another time (an older one: "expired" if it were
    // genuine) is a forgery.
    let older = format!("{}.{mac}", issued.parse::<u64>().unwrap() - 7200);
    let flipped = format!(
        "{issued}.{}{}",
        &mac[..mac.len() - 1],
        if mac.ends_with('0') { '1' } else { '0' }
    );
    // (what, headers, the error the JSON names)
    let cases: Vec<(&str, Headers, &str)> = vec![
        ("no token", vec![], "missing token"),
        (
            "garbage",
            vec![("X-Forklb-Token", "abc")],
            "malformed token",
        ),
        (
            "older time",
            vec![("X-Forklb-Token", &older)],
            "invalid token",
        ),
        (
            "flipped MAC",
            vec![("X-Forklb-Token", &flipped)],
            "invalid token",
        ),
        (
            "foreign Origin",
            vec![("X-Forklb-Token", &t), ("Origin", "http://evil.example")],
            "cross-origin request",
        ),
        (
            "Origin of another scheme",
            vec![("X-Forklb-Token", &t), ("Origin", "https://localhost")],
            "cross-origin request",
        ),
        (
            "cross-site fetch",
            vec![
                ("X-Forklb-Token", &t),
                ("Origin", "http://localhost"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            "cross-site request",
        ),
        (
            "same-site fetch",
            vec![("X-Forklb-Token", &t), ("Sec-Fetch-Site", "same-site")],
            "cross-site request",
        ),
    ];
    for (what, headers, error) in &cases {
        let r = post(port, q, headers);
        assert_eq!(r.status, 403, "{what}: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body["ok"], false, "{what}");
        assert_eq!(body["error"], *error, "{what}");
        assert_security_headers(&r);
    }
    // A read-only route refuses even a valid token.
    let r = request(
        port,
        "POST",
        &format!("/stats?{q}"),
        &[("X-Forklb-Token", &t)],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["error"],
        "read-only dashboard"
    );
    assert_eq!(stat_field(&s.sock, "api", "b", "status"), "no check");
    assert_eq!(admin_cmd(&s.sock, "get weight api/b"), "1 (initial 1)\n\n");
    // Other methods.
    for m in ["PUT", "DELETE", "OPTIONS"] {
        let r = request(port, m, "/admin?json", &[("X-Forklb-Token", &t)]);
        assert_eq!(r.status, 405, "{m}: {r:?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, POST"), "{m}");
        assert_security_headers(&r);
    }
    // Bad parameters: the runtime API's own answers (HAProxy 2.6's words).
    let bad = [
        (
            "action=state&server=api/nope&value=maint",
            "No such server.",
        ),
        ("action=state&server=nope/a&value=maint", "No such backend."),
        (
            "action=state&server=apia&value=maint",
            "Require 'backend/server'.",
        ),
        ("action=state&value=maint", "Require 'backend/server'."),
        (
            "action=state&server=api/a&value=up",
            "'set server <srv> state' expects 'ready', 'drain' and 'maint'.",
        ),
        (
            "action=weight&server=api/a&value=300",
            "Absolute weight can only be between 0 and 256 inclusive.",
        ),
        (
            "action=weight&server=api/a&value=x",
            "Empty weight string empty or preceded by garbage",
        ),
        (
            "action=weight&server=api/a&value=5x",
            "Trailing garbage in weight string",
        ),
        (
            "action=weight&server=api/a&value=-5%25",
            "Relative weight must be positive.",
        ),
        (
            "action=weight&server=api/a",
            "Require <weight> or <weight%>.",
        ),
        (
            "action=addr&server=api/a&value=1",
            "unknown action (state or weight)",
        ),
        ("server=api/a&value=1", "missing action (state or weight)"),
        (
            "action=weight&server=api/a+weight&value=1",
            "invalid server",
        ),
    ];
    for (q, error) in bad {
        let r = post(port, q, &[("X-Forklb-Token", &t)]);
        assert_eq!(r.status, 400, "{q}: {r:?}");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"ok": false, "error": error}),
            "{q}"
        );
    }
    assert_eq!(stat_field(&s.sock, "api", "a", "status"), "no check");
    assert_eq!(admin_cmd(&s.sock, "get weight api/a"), "1 (initial 1)\n\n");
    assert_eq!(stat_field(&s.sock, "api", "b", "status"), "no check");
}

/// A token survives a reload: the workers of the new generation are forked
/// by the same master, with the same secret. (A new master — binary
/// upgrade, restart — has a new secret; the page then takes the fresh
/// token of its next JSON poll.)
#[test]
fn token_survives_hup() {
    let s = start();
    let port = s.lb.port();
    let t = token(port);
    let old = s.lb.wait_workers(2, T);
    s.lb.signal(libc::SIGHUP);
    // The old workers drain and leave (a change reaching one still
    // draining would be refused with 503): the POST goes to a new one.
    assert!(
        wait_until(T, || {
            let now = s.lb.worker_pids();
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        }),
        "{}",
        s.lb.diagnostics()
    );
    assert_eq!(json(port, "/admin?json")["generation"], 2);
    let r = post(
        port,
        "action=weight&server=api/a&value=5",
        &[("X-Forklb-Token", &t)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(admin_cmd(&s.sock, "get weight api/a"), "5 (initial 1)\n\n");
}

#[test]
fn http2_answers_and_admin_post() {
    let be = Backend::start("b1");
    let routes = [
        Route::path("/stats").field("stats", "{admin: true}"),
        Route::to("web"),
    ];
    let h = H2Lb::start(&routes, |c| c.workers(2).upstream("web", [Srv::of(&be)]));
    for url in [h.tls_url("/stats"), h.h2c_url("/stats")] {
        let tls = url.starts_with("https");
        let proto = if tls {
            "--http2"
        } else {
            "--http2-prior-knowledge"
        };
        let out = curl(&[proto, "-sSki", "--max-time", "10", &url]);
        assert!(out.ok(), "{}\n{}", out.combined(), h.lb.diagnostics());
        let head = out.stdout.to_ascii_lowercase();
        assert!(head.starts_with("http/2 200"), "{}", out.stdout);
        assert!(
            head.contains("content-type: text/html; charset=utf-8"),
            "{}",
            out.stdout
        );
        assert!(
            head.contains(&format!(
                "content-security-policy: {}",
                CSP.to_ascii_lowercase()
            )),
            "{}",
            out.stdout
        );
        assert!(head.contains("x-content-type-options: nosniff"));
        assert!(head.contains("referrer-policy: no-referrer"));
        assert!(head.contains("cache-control: no-store"));
        let js = curl(&[
            proto,
            "-sSk",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{content_type}",
            &format!("{url}?asset=app.js"),
        ]);
        assert_eq!(
            js.stdout,
            "200 text/javascript; charset=utf-8",
            "{}",
            js.combined()
        );
        let doc = curl_json(proto, &url);
        assert_eq!(doc["workers"], 2);
        assert_eq!(server(&doc, "web", "b1")["status"], "no check");
        let t = doc["token"].as_str().expect("token").to_owned();
        let weight = if tls { "4" } else { "6" };
        let r = curl_post(
            proto,
            &format!("{url}?action=weight&server=web/b1&value={weight}"),
            &t,
            &[],
        );
        assert_eq!(r.stdout, "{\"ok\":true} 200", "{}", r.combined());
        let doc = curl_json(proto, &url);
        assert_eq!(server(&doc, "web", "b1")["weight"].to_string(), weight);
        // The origin check sees `:authority` as the Host: the page's own
        // origin passes, another is refused.
        let own = url.trim_end_matches("/stats").to_owned();
        for (origin, want) in [(own.as_str(), " 200"), ("https://evil.example", " 403")] {
            let r = curl_post(
                proto,
                &format!("{url}?action=weight&server=web/b1&value={weight}"),
                &t,
                &[&format!("Origin: {origin}")],
            );
            assert!(r.stdout.ends_with(want), "{origin}: {}", r.combined());
        }
        let r = curl(&[proto, "-sSk", "--max-time", "10", "-X", "PUT", "-i", &url]);
        let head = r.stdout.to_ascii_lowercase();
        assert!(head.starts_with("http/2 405"), "{}", r.stdout);
        assert!(head.contains("allow: get, head, post"), "{}", r.stdout);
    }
    // HTTP/1.1 over TLS: the page's origin is https://Host.
    let url = h.tls_url("/stats");
    let doc = curl_json("--http1.1", &url);
    let t = doc["token"].as_str().expect("token").to_owned();
    let own = format!("https://127.0.0.1:{}", h.tls_port());
    let plain = format!("http://127.0.0.1:{}", h.tls_port());
    for (origin, want) in [(own.as_str(), " 200"), (plain.as_str(), " 403")] {
        let r = curl_post(
            "--http1.1",
            &format!("{url}?action=state&server=web/b1&value=drain"),
            &t,
            &[&format!("Origin: {origin}"), "Sec-Fetch-Site: same-origin"],
        );
        assert!(r.stdout.ends_with(want), "{origin}: {}", r.combined());
    }
    let doc = curl_json("--http1.1", &url);
    assert_eq!(server(&doc, "web", "b1")["status"], "DRAIN");
}

/// The check of a config with a stats route in it: `forklb -t`.
fn check_stats(stats: &str) -> RunOutput {
    let dir = TempDir::new("statscheck");
    let path = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/stats").field("stats", stats))
        .write_for_check(&dir);
    run_forklb(&["-t", "-c", path.to_str().unwrap()], T)
}

#[test]
fn config_check_of_stats() {
    for good in [
        "{}",
        "{admin: true}",
        "{allow: [10.0.0.0/8, \"::1\"], admin: false}",
    ] {
        let out = check_stats(good);
        assert_eq!(out.code(), Some(0), "{good}: {}", out.combined());
    }
    for (bad, needles) in [
        (
            "{admin: true, bogus: 1}",
            &["listeners[0].routes[0].stats", "bogus"][..],
        ),
        (
            "{admin: yes}",
            &["listeners[0].routes[0].stats.admin", "expected a boolean"],
        ),
        (
            "{allow: [10.0.0.1/8]}",
            &["listeners[0].routes[0].stats.allow[0]", "10.0.0.0/8"],
        ),
        (
            "{allow: [nope]}",
            &["listeners[0].routes[0].stats.allow[0]"],
        ),
        ("{allow: 10.0.0.1}", &["listeners[0].routes[0].stats.allow"]),
    ] {
        let out = check_stats(bad);
        let all = out.combined();
        assert_eq!(out.code(), Some(1), "{bad}: {all}");
        for n in needles {
            assert!(all.contains(n), "{bad}: no {n:?} in {all}");
        }
    }
    // A route with stats and another action.
    let dir = TempDir::new("statscheck");
    let path = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(
            Route::path("/stats")
                .field("stats", "{}")
                .field("metrics", "prometheus"),
        )
        .write_for_check(&dir);
    let out = run_forklb(&["-t", "-c", path.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(1), "{}", out.combined());
    assert!(
        out.combined().contains("exactly one action"),
        "{}",
        out.combined()
    );
    // `-T` prints it back.
    let dir = TempDir::new("statsprint");
    let path = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/stats").field("stats", "{allow: [127.0.0.1], admin: true}"))
        .write_for_check(&dir);
    let out = run_forklb(&["-T", "-c", path.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(0), "{}", out.combined());
    assert!(out.stdout.contains("stats:"), "{}", out.stdout);
    assert!(out.stdout.contains("admin: true"), "{}", out.stdout);
    assert!(out.stdout.contains("127.0.0.1"), "{}", out.stdout);
}
