//! The live dashboard (issue 19) in a real browser: headless Chromium, driven
//! over the DevTools protocol (`support::cdp`), loads forklb's `stats` route
//! from the real binary (2 workers, real backends, health checks) and the
//! tests read what it rendered from the DOM, click its controls with real
//! mouse events and check every effect over the admin socket.
//!
//! Screenshots (desktop and phone width) go to
//! `target/test-output/dashboard/`.
//!
//! Needs Debian's `chromium` (`make test-deps` installs it).

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::cdp::Browser;
use support::h2::H2Lb;
use support::*;

/// One Chromium at a time: the tests of this file run in parallel threads,
/// and the machine is small.
static BROWSER: Mutex<()> = Mutex::new(());

fn one_browser() -> MutexGuard<'static, ()> {
    BROWSER.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long the page may take to show something (it polls every second in
/// these tests; the bound allows for a loaded machine).
const PAGE: Duration = Duration::from_secs(10);

/// The upstreams of the standard configuration. Every one has `web1` and
/// `web2` on live backends; `web3` differs (see [`third_server`]).
const UPSTREAMS: [&str; 7] = [
    "api", "auth", "billing", "legacy", "search", "static", "web",
];

enum Third {
    /// A live backend.
    Live,
    /// A closed port: health checks take it DOWN.
    Closed,
    /// A live backend marked `backup`.
    Backup,
    /// No third server.
    None,
}

fn third_server(upstream: &str) -> Third {
    match upstream {
        "auth" | "search" => Third::Closed,
        "billing" => Third::Backup,
        "legacy" => Third::None,
        _ => Third::Live,
    }
}

struct Setup {
    lb: Forklb,
    sock: PathBuf,
    access_log: PathBuf,
    _dir: TempDir,
    _backends: Vec<Backend>,
}

impl Setup {
    fn url(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/stats{query}", self.lb.port())
    }

    fn status(&self, up: &str, srv: &str) -> String {
        stat_field(&self.sock, up, srv, "status")
    }
}

/// forklb with 2 workers, an admin socket, a `stats` route at `/stats`
/// (`admin` as given), a route `/<upstream>` per upstream and the
/// upstreams of [`UPSTREAMS`]: `legacy` has only servers on closed ports
/// (all DOWN, so its requests get 503), `static` has no health checks
/// (`no check`). Waits until the health checks have settled.
fn start(admin: bool) -> Setup {
    let dir = TempDir::new("dashbrowser");
    let sock = dir.join("admin.sock");
    let access_log = dir.join("access.log");
    let mut backends = Vec::new();
    let mut cfg = ConfigBuilder::new()
        .workers(2)
        .admin_socket(&sock)
        .access_log(&access_log, "combined")
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/stats").field("stats", format!("{{admin: {admin}}}")));
    for u in UPSTREAMS {
        cfg = cfg.route(Route::path(&format!("/{u}")).upstream(u));
    }
    for u in UPSTREAMS {
        let mut servers = Vec::new();
        if u == "legacy" {
            servers.push(Srv::new("web1", refused_addr()));
            servers.push(Srv::new("web2", refused_addr()));
        } else {
            for name in ["web1", "web2"] {
                let b = Backend::start(&format!("{u}-{name}"));
                servers.push(Srv::new(name, b.addr()));
                backends.push(b);
            }
        }
        match third_server(u) {
            Third::Live | Third::Backup => {
                let b = Backend::start(&format!("{u}-web3"));
                let s = Srv::new("web3", b.addr());
                servers.push(if matches!(third_server(u), Third::Backup) {
                    s.backup()
                } else {
                    s
                });
                backends.push(b);
            }
            Third::Closed => servers.push(Srv::new("web3", refused_addr())),
            Third::None => {}
        }
        cfg = cfg.upstream(u, servers).upstream_opt("retries: 0");
        if u != "static" {
            cfg = cfg.upstream_opt(
                "health: {type: tcp, interval: 200ms, timeout: 300ms, rise: 2, fall: 2}",
            );
        }
    }
    let lb = Forklb::start(&cfg.build());
    let s = Setup {
        lb,
        sock,
        access_log,
        _dir: dir,
        _backends: backends,
    };
    assert!(
        wait_until(Duration::from_secs(10), || s.sock.exists()),
        "no admin socket"
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            s.status("auth", "web3") == "DOWN"
                && s.status("search", "web3") == "DOWN"
                && s.status("legacy", "web1") == "DOWN"
                && s.status("legacy", "web2") == "DOWN"
                && s.status("api", "web1") == "UP"
        }),
        "health checks did not settle: {}",
        admin_cmd(&s.sock, "show stat")
    );
    s
}

/// `get weight UP/SRV` over the admin socket, without the answer's
/// trailing empty line: "7 (initial 1)".
fn weight(s: &Setup, server: &str) -> String {
    admin_cmd(&s.sock, &format!("get weight {server}"))
        .trim_end()
        .to_owned()
}

fn launch() -> Browser {
    Browser::launch().unwrap_or_else(|e| panic!("{e}"))
}

/// The folder screenshots go to (created).
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-output/dashboard");
    fs::create_dir_all(&dir).expect("create target/test-output/dashboard");
    dir
}

fn save_screenshot(b: &mut Browser, name: &str, full: bool) {
    let png = b.screenshot(full).unwrap_or_else(|e| panic!("{e}"));
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = output_dir().join(name);
    fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Successful polls so far (the page counts them in `body[data-polls]`).
fn polls(b: &mut Browser) -> u64 {
    b.eval("Number(document.body.dataset.polls)")
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// Waits until the page has polled `n` more times.
fn wait_polls(b: &mut Browser, n: u64) {
    let target = polls(b) + n;
    assert!(
        b.wait_for(
            &format!("Number(document.body.dataset.polls) >= {target}"),
            PAGE + Duration::from_secs(n)
        ),
        "the page did not poll {n} more times: {:?}",
        b.eval("document.body.dataset.conn")
    );
}

/// `[ [ "up/srv", "status text" ], ... ]` as the page shows them.
const SERVER_STATUSES: &str = "JSON.stringify([...document.querySelectorAll('tr[data-server]')]\
    .map(r => [r.dataset.server, r.querySelector('.st').textContent]))";

fn page_statuses(b: &mut Browser) -> Vec<(String, String)> {
    let v = b.eval(SERVER_STATUSES).unwrap_or_else(|e| panic!("{e}"));
    let parsed: Vec<(String, String)> =
        serde_json::from_str(v.as_str().unwrap_or("[]")).expect("statuses JSON");
    parsed
}

/// JS: the status text of server `up/srv` on the page.
fn status_expr(server: &str) -> String {
    format!("(document.querySelector('tr[data-server=\"{server}\"] .st') || {{}}).textContent")
}

/// Asserts the page logged no error (a CSP violation, an exception, a
/// failed load).
fn assert_no_page_errors(b: &Browser) {
    let errors = b.page_errors();
    assert!(errors.is_empty(), "page errors: {errors:#?}");
}

/// Background requests through every upstream (2xx, and 503 from `legacy`)
/// plus some 404s, until dropped: the page then has rates to show.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut i = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let path = match i % 13 {
                    0..=4 => "/api/x",
                    5 | 6 => "/web/x",
                    7 => "/auth/x",
                    8 => "/billing/x",
                    9 => "/search/x",
                    10 => "/static/x",
                    11 => "/legacy/x",
                    _ => "/nothing-here",
                };
                let _ = try_http_get(port, path);
                i += 1;
                thread::sleep(Duration::from_millis(5));
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Cases 1, 2, 3, 6 (admin page) and 7: every upstream and server with its
/// status; a `set server ... state maint` over the admin socket shows within
/// one refresh; clicks on drain/ready and a weight change act (admin
/// socket), a runtime-API error is shown; phone width does not overflow;
/// screenshots.
#[test]
fn admin_page_renders_follows_the_runtime_api_and_acts() {
    let _one = one_browser();
    let s = start(true);
    let mut b = launch();
    b.viewport(1400, 1000, 1.0, false).expect("viewport");
    b.navigate(&s.url("?refresh=1")).expect("navigate");
    wait_polls(&mut b, 2);

    // 1. Every upstream and server, with the status `show stat` gives.
    let shown_upstreams = b
        .eval("JSON.stringify([...document.querySelectorAll('[data-upstream]')].map(e => e.dataset.upstream).sort())")
        .expect("upstreams");
    let mut want: Vec<&str> = UPSTREAMS.to_vec();
    want.sort();
    assert_eq!(
        shown_upstreams.as_str().unwrap_or(""),
        serde_json::to_string(&want).expect("json"),
        "upstreams on the page"
    );
    let mut expected = Vec::new();
    for u in UPSTREAMS {
        let n = if matches!(third_server(u), Third::None) {
            2
        } else {
            3
        };
        for i in 1..=n {
            let srv = format!("web{i}");
            let st = s.status(u, &srv);
            expected.push((format!("{u}/{srv}"), st));
        }
    }
    expected.sort();
    // The page may be one poll behind `show stat`: wait until it agrees.
    let agreed = wait_until(PAGE, || {
        let mut shown = page_statuses(&mut b);
        shown.sort();
        shown == expected
    });
    assert!(
        agreed,
        "page statuses {:?}\n!= show stat {expected:?}",
        page_statuses(&mut b)
    );
    let statuses: std::collections::HashMap<String, String> = expected.into_iter().collect();
    assert_eq!(statuses["auth/web3"], "DOWN");
    assert_eq!(statuses["legacy/web1"], "DOWN");
    assert_eq!(statuses["static/web1"], "no check");
    assert_eq!(statuses["api/web1"], "UP");
    // Colour classes follow the status.
    for (server, class) in [
        ("auth/web3", "st-down"),
        ("api/web1", "st-up"),
        ("static/web1", "st-nocheck"),
    ] {
        let has = b
            .eval(&format!(
                "document.querySelector('tr[data-server=\"{server}\"] .st').classList.contains('{class}')"
            ))
            .expect("class");
        assert_eq!(has, Value::Bool(true), "{server} lacks {class}");
    }
    let backup_tag = b
        .eval("!!document.querySelector('tr[data-server=\"billing/web3\"] .tag:not(.queued)')")
        .expect("backup tag");
    assert_eq!(
        backup_tag,
        Value::Bool(true),
        "billing/web3 is not marked backup"
    );
    let listener = b
        .eval("(document.querySelector('tr[data-listener=\"web\"]') || {}).textContent || ''")
        .expect("listener");
    assert!(
        listener
            .as_str()
            .unwrap_or("")
            .contains(&format!("127.0.0.1:{}", s.lb.port())),
        "listener row: {listener}"
    );
    // Admin controls: three state buttons and a weight input per server.
    let controls = b
        .eval("[document.querySelectorAll('button[data-action=\"maint\"]').length, document.querySelectorAll('input.weight').length]")
        .expect("controls");
    assert_eq!(controls, serde_json::json!([20, 20]), "controls per server");

    // 2. A change over the admin socket shows within one refresh: by the
    // second poll after it (the first may have been under way already).
    assert_eq!(admin_cmd(&s.sock, "set server api/web2 state maint"), "\n");
    let before = polls(&mut b);
    assert!(
        b.wait_for(&format!("{} === 'MAINT'", status_expr("api/web2")), PAGE),
        "api/web2 never shown MAINT: {:?}",
        b.eval(&status_expr("api/web2"))
    );
    let after = polls(&mut b);
    assert!(
        after <= before + 2,
        "MAINT shown only after {} polls",
        after - before
    );
    let maint_class = b
        .eval("document.querySelector('tr[data-server=\"api/web2\"] .st').classList.contains('st-maint')")
        .expect("class");
    assert_eq!(maint_class, Value::Bool(true));
    assert_eq!(admin_cmd(&s.sock, "set server api/web2 state ready"), "\n");

    // 3. Clicks: drain, then weight, then ready; each verified over the
    // admin socket, and the page follows.
    b.click("tr[data-server=\"web/web1\"] button[data-action=\"drain\"]")
        .expect("click drain");
    assert!(
        wait_until(PAGE, || s.status("web", "web1") == "DRAIN"),
        "drain click did not act: {} / page errors {:?} / shown {:?}",
        s.status("web", "web1"),
        b.page_errors(),
        b.eval("document.getElementById('action-error-text').textContent")
    );
    assert!(
        b.wait_for(&format!("{} === 'DRAIN'", status_expr("web/web1")), PAGE),
        "page does not show DRAIN"
    );
    b.eval("{ const i = document.querySelector('tr[data-server=\"web/web1\"] input.weight'); i.focus(); i.value = '7'; }")
        .expect("type weight");
    b.click("tr[data-server=\"web/web1\"] button[data-action=\"weight\"]")
        .expect("click set");
    assert!(
        wait_until(PAGE, || weight(&s, "web/web1") == "7 (initial 1)"),
        "weight click did not act: {}",
        weight(&s, "web/web1")
    );
    b.click("tr[data-server=\"web/web1\"] button[data-action=\"ready\"]")
        .expect("click ready");
    assert!(
        wait_until(PAGE, || s.status("web", "web1") == "UP"),
        "ready click did not act: {}",
        s.status("web", "web1")
    );
    // A maint click on another server.
    b.click("tr[data-server=\"search/web2\"] button[data-action=\"maint\"]")
        .expect("click maint");
    assert!(
        wait_until(PAGE, || s.status("search", "web2") == "MAINT"),
        "maint click did not act: {}",
        s.status("search", "web2")
    );
    // The runtime API's refusal is shown to the operator, nothing changes.
    b.eval("{ const i = document.querySelector('tr[data-server=\"web/web2\"] input.weight'); i.focus(); i.value = '300'; }")
        .expect("type weight");
    b.click("tr[data-server=\"web/web2\"] button[data-action=\"weight\"]")
        .expect("click set");
    assert!(
        b.wait_for(
            "!document.getElementById('action-error').hidden && \
             document.getElementById('action-error-text').textContent.includes('256')",
            PAGE
        ),
        "no error shown for weight 300: {:?}",
        b.eval("document.getElementById('action-error-text').textContent")
    );
    assert_eq!(weight(&s, "web/web2"), "1 (initial 1)");
    b.click("#action-error-close").expect("dismiss");
    assert!(
        b.wait_for("document.getElementById('action-error').hidden", PAGE),
        "error not dismissed"
    );

    // 7. Screenshots with some traffic flowing (rates, latencies, charts).
    {
        let _traffic = Traffic::start(s.lb.port());
        wait_polls(&mut b, 6);
        b.eval("window.scrollTo(0, 0)").expect("scroll");
        save_screenshot(&mut b, "desktop.png", false);
        save_screenshot(&mut b, "desktop-full.png", true);

        // 6. Phone width: nothing overflows horizontally.
        b.viewport(390, 844, 2.0, true).expect("phone viewport");
        wait_polls(&mut b, 2);
        let overflow = b
            .eval("[document.documentElement.scrollWidth, window.innerWidth]")
            .expect("widths");
        let (sw, iw) = (overflow[0].as_u64(), overflow[1].as_u64());
        assert!(
            sw.is_some() && sw <= iw,
            "phone width overflows: scrollWidth {sw:?} > innerWidth {iw:?}"
        );
        b.eval("window.scrollTo(0, 0)").expect("scroll");
        save_screenshot(&mut b, "phone.png", false);
    }
    let rate = b
        .eval("document.getElementById('k-rps').textContent")
        .expect("req/s");
    eprintln!("instance req/s shown: {rate}");
    assert_no_page_errors(&b);
}

/// A tiny HTTP server on another port serving `page` to every request: the
/// attacker's site (another origin: same host, other port).
fn serve_page(page: String) -> (u16, Arc<AtomicBool>) {
    let port = free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind attacker");
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(IO_TIMEOUT));
                    let mut buf = [0u8; 8192];
                    let _ = c.read(&mut buf);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = c.write_all(answer.as_bytes());
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (port, stop)
}

/// Case 4: a page from another origin cannot change anything — a `fetch`
/// POST without the token (no-cors: it does reach forklb), one WITH a valid
/// token (its custom header needs a CORS preflight, which fails), an
/// auto-submitted form POST — and cannot read the JSON (no CORS headers).
#[test]
fn another_origin_cannot_change_or_read_anything() {
    let _one = one_browser();
    let s = start(true);
    // A valid token, as if the attacker had it: it must not help.
    let doc: Value =
        serde_json::from_str(&http_get(s.lb.port(), "/stats?json").body_str()).expect("JSON");
    let token = doc["token"].as_str().expect("token").to_owned();
    let dash = s.url("");
    let page = format!(
        r#"<!doctype html><html><body><p id="result">pending</p>
<iframe name="sink"></iframe>
<form id="f" method="post" target="sink"
      action="{dash}?action=state&amp;server=api%2Fweb1&amp;value=maint"></form>
<script>
const dash = {dash:?};
const out = [];
async function run() {{
  try {{ const r = await fetch(dash + '?json'); await r.text(); out.push('json:read'); }}
  catch (e) {{ out.push('json:blocked'); }}
  try {{ await fetch(dash + '?action=state&server=api%2Fweb1&value=maint', {{method: 'POST', mode: 'no-cors'}});
         out.push('nocors:sent'); }}
  catch (e) {{ out.push('nocors:error'); }}
  try {{ await fetch(dash + '?action=weight&server=api%2Fweb1&value=9', {{method: 'POST', mode: 'no-cors',
           headers: {{'X-Forklb-Token': {token:?}}}}});
         out.push('nocors-token:sent'); }}
  catch (e) {{ out.push('nocors-token:error'); }}
  try {{ const r = await fetch(dash + '?action=state&server=api%2Fweb1&value=drain', {{method: 'POST',
           headers: {{'X-Forklb-Token': {token:?}}}}});
         out.push('cors-token:' + r.status); }}
  catch (e) {{ out.push('cors-token:blocked'); }}
  const sink = document.querySelector('iframe');
  const done = () => {{ document.getElementById('result').textContent = out.join(' ') + ' form:submitted'; }};
  sink.addEventListener('load', done);
  setTimeout(done, 3000);
  document.getElementById('f').submit();
}}
run();
</script></body></html>"#
    );
    let (port, stop) = serve_page(page);
    let mut b = launch();
    b.navigate(&format!("http://127.0.0.1:{port}/evil.html"))
        .expect("navigate");
    assert!(
        b.wait_for(
            "document.getElementById('result').textContent.includes('form:submitted')",
            PAGE + Duration::from_secs(5)
        ),
        "the attacker page did not finish: {:?}",
        b.eval("document.getElementById('result').textContent")
    );
    let result = b
        .eval("document.getElementById('result').textContent")
        .expect("result");
    let result = result.as_str().unwrap_or("").to_owned();
    eprintln!("attacker page: {result}");
    stop.store(true, Ordering::Relaxed);
    assert!(
        result.contains("json:blocked"),
        "JSON readable cross-origin: {result}"
    );
    assert!(result.contains("nocors:sent"), "{result}");
    assert!(
        result.contains("cors-token:blocked"),
        "preflighted POST went through: {result}"
    );

    // The simple POSTs and the form did reach forklb, and were refused.
    let refused = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"POST /stats?action=") && l.contains("\" 403 "))
            .count()
    };
    assert!(
        wait_until(PAGE, || refused(
            &fs::read_to_string(&s.access_log).unwrap_or_default()
        ) >= 3),
        "expected 3 refused POSTs in the access log:\n{}",
        fs::read_to_string(&s.access_log).unwrap_or_default()
    );
    // Nothing changed (and nothing changes later).
    assert!(
        !wait_until(Duration::from_secs(2), || s.status("api", "web1") != "UP"
            || weight(&s, "api/web1") != "1 (initial 1)"),
        "another origin changed api/web1: {} / {}",
        s.status("api", "web1"),
        weight(&s, "api/web1")
    );
}

/// Case 5: without `admin: true` the page renders no controls at all, and a
/// same-origin POST (even with a token header) gets 403. Also: failing polls
/// show "connection lost", and the page recovers.
#[test]
fn read_only_page_has_no_controls_and_refuses_posts() {
    let _one = one_browser();
    let s = start(false);
    let mut b = launch();
    b.navigate(&s.url("?refresh=1")).expect("navigate");
    wait_polls(&mut b, 2);
    let rows = b
        .eval("document.querySelectorAll('tr[data-server]').length")
        .expect("rows");
    assert_eq!(rows, serde_json::json!(20), "server rows");
    let controls = b
        .eval("document.querySelectorAll('[data-action], input.weight, td.ctl, th.ctl').length")
        .expect("controls");
    assert_eq!(
        controls,
        serde_json::json!(0),
        "read-only page has controls"
    );
    let status = b
        .eval(
            "fetch('?action=state&server=api%2Fweb1&value=maint', {method: 'POST', \
             headers: {'X-Forklb-Token': 'x'}}).then(r => r.status)",
        )
        .expect("POST");
    assert_eq!(status, serde_json::json!(403), "read-only POST");
    assert_eq!(s.status("api", "web1"), "UP");
    assert_no_page_errors(&b);

    // Polls that fail (workers stopped: the poll times out) show
    // "connection lost"; the page recovers by itself.
    {
        let _paused: Vec<Paused> = s.lb.worker_pids().into_iter().map(Paused::new).collect();
        assert!(
            b.wait_for(
                "document.body.dataset.conn === 'lost' && !document.getElementById('lost').hidden",
                Duration::from_secs(20)
            ),
            "no connection-lost state: {:?}",
            b.eval("document.body.dataset.conn")
        );
    }
    assert!(
        b.wait_for(
            "document.body.dataset.conn === 'ok' && document.getElementById('lost').hidden",
            Duration::from_secs(20)
        ),
        "the page did not recover: {:?}",
        b.eval("document.body.dataset.conn")
    );
}

/// Case 6 with 100 upstreams: everything renders (collapsed), and nothing
/// overflows at phone width; screenshots of both widths.
#[test]
fn hundred_upstreams_render_at_desktop_and_phone_width() {
    let _one = one_browser();
    let mut cfg = ConfigBuilder::new()
        .workers(2)
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/stats").field("stats", "{admin: true}"));
    let backend = Backend::start("shared");
    for i in 0..100 {
        cfg = cfg.upstream(
            &format!("service-{i:03}"),
            [
                Srv::new("app1", backend.addr()),
                Srv::new("app2", backend.addr()),
                Srv::new("app3", refused_addr()).backup(),
            ],
        );
    }
    let lb = Forklb::start(&cfg.build());
    let mut b = launch();
    b.viewport(1400, 1000, 1.0, false).expect("viewport");
    b.navigate(&format!("http://127.0.0.1:{}/stats?refresh=1", lb.port()))
        .expect("navigate");
    wait_polls(&mut b, 2);
    let counts = b
        .eval("[document.querySelectorAll('[data-upstream]').length, document.querySelectorAll('tr[data-server]').length, document.querySelectorAll('.up.closed').length]")
        .expect("counts");
    assert_eq!(
        counts,
        serde_json::json!([100, 300, 100]),
        "upstreams, servers, collapsed"
    );
    // Expand one, filter, sort: the page stays usable with many upstreams.
    b.click("[data-upstream=\"service-007\"] .up-head")
        .expect("expand");
    assert!(b.wait_for(
        "!document.querySelector('[data-upstream=\"service-007\"]').classList.contains('closed')",
        PAGE
    ));
    b.eval("{ const f = document.getElementById('filter'); f.value = 'service-01'; f.dispatchEvent(new Event('input')); }")
        .expect("filter");
    let visible = b
        .eval("[...document.querySelectorAll('[data-upstream]')].filter(e => !e.hidden).length")
        .expect("visible");
    assert_eq!(visible, serde_json::json!(10), "filter 'service-01'");
    // A server's address matches too, and opens its (collapsed) upstream.
    let addr = b
        .eval("document.querySelector('tr[data-server=\"service-042/app3\"] td.addr').textContent")
        .expect("addr");
    let addr = addr.as_str().unwrap_or("").to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    b.eval(&format!(
        "{{ const f = document.getElementById('filter'); f.value = '{addr}'; f.dispatchEvent(new Event('input')); }}"
    ))
    .expect("filter by address");
    let shown = b
        .eval("JSON.stringify([...document.querySelectorAll('[data-upstream]')].filter(e => !e.hidden)\
               .map(e => [e.dataset.upstream, e.querySelector('.up-body').offsetHeight > 0]))")
        .expect("shown");
    assert_eq!(
        shown.as_str(),
        Some("[[\"service-042\",true]]"),
        "filter by a server's address"
    );
    b.eval("{ const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); }")
        .expect("clear filter");
    b.eval("window.scrollTo(0, 0)").expect("scroll");
    save_screenshot(&mut b, "desktop-100-upstreams.png", false);
    // What a poll costs: the document's size, the browser's update time.
    let cost = b
        .eval("fetch('?json').then(r => r.text()).then(t => [t.length, Number(document.body.dataset.renderMs)])")
        .expect("cost");
    eprintln!(
        "100 upstreams x 3 servers: JSON {} bytes, page update {} ms",
        cost[0], cost[1]
    );
    assert!(cost[0].as_u64().unwrap_or(0) > 0, "{cost}");

    b.viewport(390, 844, 2.0, true).expect("phone viewport");
    wait_polls(&mut b, 2);
    let widths = b
        .eval("[document.documentElement.scrollWidth, window.innerWidth]")
        .expect("widths");
    let (sw, iw) = (widths[0].as_u64(), widths[1].as_u64());
    assert!(
        sw.is_some() && sw <= iw,
        "phone width overflows with 100 upstreams: scrollWidth {sw:?} > innerWidth {iw:?}"
    );
    save_screenshot(&mut b, "phone-100-upstreams.png", false);
    assert_no_page_errors(&b);
}

/// The page over TLS and HTTP/2 (ALPN h2): every load and poll is h2, and
/// the controls act (the same-origin check against `:authority`).
#[test]
fn admin_page_over_tls_h2_polls_and_acts() {
    let _one = one_browser();
    let dir = TempDir::new("dashh2");
    let sock = dir.join("admin.sock");
    let b1 = Backend::start("web1");
    let b2 = Backend::start("web2");
    let routes = [
        Route::path("/stats").field("stats", "{admin: true}"),
        Route::to("web"),
    ];
    let h = H2Lb::start(&routes, |c| {
        c.workers(2)
            .admin_socket(&sock)
            .upstream("web", [Srv::of(&b1), Srv::of(&b2)])
    });
    assert!(
        wait_until(Duration::from_secs(10), || sock.exists()),
        "no admin socket"
    );
    let mut b = Browser::launch_with(&["--ignore-certificate-errors", "--disable-quic"])
        .unwrap_or_else(|e| panic!("{e}"));
    b.navigate(&h.tls_url("/stats?refresh=1"))
        .expect("navigate");
    wait_polls(&mut b, 2);
    let protocols = b
        .eval(
            "JSON.stringify([...new Set(performance.getEntriesByType('navigation')\
             .concat(performance.getEntriesByType('resource')).map(e => e.nextHopProtocol))])",
        )
        .expect("protocols");
    assert_eq!(protocols.as_str(), Some("[\"h2\"]"), "page, assets, polls");
    b.click("tr[data-server=\"web/web2\"] button[data-action=\"maint\"]")
        .expect("click maint");
    assert!(
        wait_until(PAGE, || stat_field(&sock, "web", "web2", "status")
            == "MAINT"),
        "maint click over h2 did not act: {} / shown {:?}",
        stat_field(&sock, "web", "web2", "status"),
        b.eval("document.getElementById('action-error-text').textContent")
    );
    assert!(
        b.wait_for(&format!("{} === 'MAINT'", status_expr("web/web2")), PAGE),
        "page does not show MAINT"
    );
    b.click("tr[data-server=\"web/web2\"] button[data-action=\"ready\"]")
        .expect("click ready");
    assert!(
        wait_until(PAGE, || stat_field(&sock, "web", "web2", "status")
            != "MAINT"),
        "ready click over h2 did not act"
    );
    assert_no_page_errors(&b);
}
