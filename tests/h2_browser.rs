//! A real browser over HTTP/2 (issue 16): headless Chromium loads a page
//! through forklb's TLS listener (ALPN h2) — the page, 30 images, a script
//! and a 300 KB upload by `fetch`, all multiplexed on one connection — and
//! reports what it saw in the DOM it dumps (`--dump-dom`): the protocol of
//! every load from the Resource Timing API, how many images decoded, and the
//! echoed upload's length.
//!
//! Needs Debian's `chromium` (`make test-deps` installs it).

mod support;

use std::time::Duration;
use support::h2::{run_tool, H2Lb};
use support::*;

const IMAGES: usize = 30;
const UPLOAD: usize = 300_000;

fn raw(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The page: images, then a script that waits for them (window `load`),
/// uploads a body and writes its findings into `#result`.
fn page() -> String {
    let imgs: String = (0..IMAGES)
        .map(|i| format!("<img src=\"/img/{i}.svg\" width=10 height=10>"))
        .collect();
    format!(
        "<!doctype html><html><head><title>h2</title></head><body>{imgs}\
         <p id=\"result\">pending</p><script src=\"/app.js\"></script></body></html>"
    )
}

const SCRIPT: &str = "window.addEventListener('load', function () {\
  var decoded = 0;\
  for (var i = 0; i < document.images.length; i++) {\
    if (document.images[i].complete && document.images[i].naturalWidth > 0) decoded++;\
  }\
  var protos = {};\
  performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))\
    .forEach(function (e) { protos[e.nextHopProtocol || 'none'] = (protos[e.nextHopProtocol || 'none'] || 0) + 1; });\
  fetch('/echo', {method: 'POST', body: 'x'.repeat(300000)})\
    .then(function (r) { return r.text(); })\
    .then(function (t) {\
      document.getElementById('result').textContent =\
        'decoded=' + decoded + ' protocols=' + JSON.stringify(protos) + ' echoed=' + t.length;\
    }, function (err) { document.getElementById('result').textContent = 'fetch failed: ' + err; });\
});";

const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">\
<rect width=\"10\" height=\"10\" fill=\"teal\"/></svg>";

#[test]
fn chromium_loads_a_page_over_h2() {
    let opts = BackendOpts {
        echo: true,
        scripts: vec![
            Script::new("/page", &raw("text/html", &page()), Then::KeepAlive),
            Script::new("/img/", &raw("image/svg+xml", SVG), Then::KeepAlive),
            Script::new(
                "/app.js",
                &raw("application/javascript", SCRIPT),
                Then::KeepAlive,
            ),
        ],
        ..BackendOpts::default()
    };
    let be = Backend::start_with("b1", opts);
    let h = H2Lb::start(&[Route::to("web")], |c| c.upstream("web", [Srv::of(&be)]));
    let profile = TempDir::new("chromium");
    let url = h.tls_url("/page");
    let user_data = format!("--user-data-dir={}", profile.path().display());
    // The flags of a headless run on a closed machine: no sandbox (root), no
    // GPU, no QUIC (h2 only), no background traffic to Google's hosts.
    let out = run_tool(
        "chromium",
        &[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            &user_data,
            "--virtual-time-budget=10000",
            "--dump-dom",
            &url,
        ],
        Duration::from_secs(90),
    );
    let result = out
        .stdout
        .split("<p id=\"result\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or("")
        .to_owned();
    let why = || format!("{}\n{}", out.combined(), h.lb.diagnostics());
    assert!(
        result.contains(&format!("decoded={IMAGES} ")),
        "every image must load: {result:?}\n{}",
        why()
    );
    assert!(
        result.contains(&format!("echoed={UPLOAD}")),
        "the upload must come back whole: {result:?}\n{}",
        why()
    );
    // The page, app.js and the 30 images: every one over h2, nothing else.
    let expected = format!("protocols={{\"h2\":{}}}", IMAGES + 2);
    assert!(
        result.contains(&expected),
        "every load must be HTTP/2 ({expected}): {result:?}\n{}",
        why()
    );
    let reqs = be.requests();
    let uploads: Vec<_> = reqs.iter().filter(|r| r.path == "/echo").collect();
    assert_eq!(uploads.len(), 1, "{reqs:?}");
    assert_eq!(uploads[0].body.len(), UPLOAD);
    assert_eq!(
        reqs.iter().filter(|r| r.path.starts_with("/img/")).count(),
        IMAGES
    );
}
