//! A headless Chromium driven over the DevTools protocol (CDP) on
//! `--remote-debugging-pipe`: JSON messages, each ending in a NUL byte, that
//! Chromium reads from its fd 3 and writes to its fd 4. No websocket needed.
//!
//! [`Browser::launch`] starts `/usr/bin/chromium` (Debian's `chromium`;
//! `make test-deps` installs it) with a private profile folder, opens one
//! page and attaches to it (flat session). Every call waits for its answer
//! at most [`CALL_TIMEOUT`]; every helper that waits for a condition takes a
//! bound. Console messages, log entries (CSP violations land there) and
//! uncaught exceptions of the page are kept for [`Browser::page_errors`]
//! (failed network loads are not: a test expecting a 403 checks it itself).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::TempDir;

/// How long one CDP command may take to be answered.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Page console/log/exception texts seen so far.
    errors: Arc<Mutex<Vec<String>>>,
    _profile: TempDir,
}

impl Browser {
    /// Starts headless Chromium and attaches to a fresh blank page.
    pub fn launch() -> Result<Browser, String> {
        Browser::launch_with(&[])
    }

    /// [`Browser::launch`] with more command-line flags (e.g.
    /// `--ignore-certificate-errors` for a test certificate).
    pub fn launch_with(flags: &[&str]) -> Result<Browser, String> {
        let profile = TempDir::new("chromium");
        let (to_r, to_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (from_r, from_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (in_fd, out_fd) = (to_r.as_raw_fd(), from_w.as_raw_fd());
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between
        // fork and exec. The pipe ends are first moved to fds >= 10 so that
        // the dup2 to 3 and 4 cannot clobber each other; dup2's targets are
        // not close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(in_fd, libc::F_DUPFD, 10);
                let b = libc::fcntl(out_fd, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(a);
                libc::close(b);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {CHROMIUM} (make test-deps installs it): {e}"))?;
        // Our copies of Chromium's ends: closed, so that EOF reaches us when
        // Chromium exits.
        drop(to_r);
        drop(from_w);

        let errors = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let errs = Arc::clone(&errors);
        thread::spawn(move || read_messages(from_r, tx, errs));

        let mut b = Browser {
            child,
            to_browser: to_w,
            from_browser: rx,
            next_id: 1,
            session: String::new(),
            errors,
            _profile: profile,
        };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| format!("no targetId in {target}"))?
            .to_owned();
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        b.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {attached}"))?
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(domain, json!({}))?;
        }
        Ok(b)
    }

    fn send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .map_err(|e| format!("{method}: write to chromium: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(m) if m["id"].as_u64() == Some(id) => {
                    if let Some(err) = m.get("error") {
                        return Err(format!("{method}: {err}"));
                    }
                    return Ok(m["result"].clone());
                }
                Ok(_) => continue, // an event or an older answer
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{method}: no answer in {CALL_TIMEOUT:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{method}: chromium went away"))
                }
            }
        }
    }

    /// A command to the browser itself (no page session).
    pub fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.send(None, method, params)
    }

    /// A command to the page; its `result`.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// Navigates the page to `url` (returns when the navigation committed;
    /// wait for content with [`Browser::wait_for`]).
    pub fn navigate(&mut self, url: &str) -> Result<(), String> {
        let r = self.call("Page.navigate", json!({"url": url}))?;
        match r.get("errorText") {
            Some(e) => Err(format!("navigate {url}: {e}")),
            None => Ok(()),
        }
    }

    /// Evaluates `expr` in the page (promises awaited); its JSON value.
    pub fn eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("{expr}: {ex}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expr` every 50 ms until it is `true` or `timeout` passes.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expr).map(|v| v == json!(true)).unwrap_or(false) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Viewport of `width`×`height` CSS pixels (`mobile`: phone emulation).
    pub fn viewport(
        &mut self,
        width: u32,
        height: u32,
        scale: f64,
        mobile: bool,
    ) -> Result<(), String> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile}),
        )?;
        Ok(())
    }

    /// A PNG of the viewport (`full`: of the whole page).
    pub fn screenshot(&mut self, full: bool) -> Result<Vec<u8>, String> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": full}),
        )?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        base64_decode(data)
    }

    /// A real mouse click (press and release of the left button) in the
    /// middle of the element `selector` finds, after scrolling it into view.
    pub fn click(&mut self, selector: &str) -> Result<(), String> {
        let sel = serde_json::to_string(selector).map_err(|e| e.to_string())?;
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ))?;
        let (x, y) = match (rect[0].as_f64(), rect[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(format!("no element {selector}")),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )?;
        }
        Ok(())
    }

    /// Console errors, log entries and uncaught exceptions of the page.
    pub fn page_errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits Chromium's output at NUL bytes into JSON messages; keeps the page's
/// error-level console messages, log entries and exceptions in `errors`.
fn read_messages(
    mut from: std::io::PipeReader,
    tx: mpsc::Sender<Value>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|&b| b == 0) {
            let msg: Vec<u8> = buf.drain(..=end).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) else {
                continue;
            };
            note_error(&v, &errors);
            if tx.send(v).is_err() {
                return;
            }
        }
    }
}

fn note_error(v: &Value, errors: &Mutex<Vec<String>>) {
    let text = match v["method"].as_str() {
        // Failed loads (`source: network`, e.g. an expected 403) are the
        // tests' business; CSP violations come as `security`/`javascript`.
        Some("Log.entryAdded")
            if v["params"]["entry"]["level"] == "error"
                && v["params"]["entry"]["source"] != "network" =>
        {
            format!("log: {}", v["params"]["entry"]["text"])
        }
        Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
            format!("console: {}", v["params"]["args"])
        }
        Some("Runtime.exceptionThrown") => {
            format!("exception: {}", v["params"]["exceptionDetails"])
        }
        _ => return,
    };
    if let Ok(mut e) = errors.lock() {
        e.push(text);
    }
}

/// Standard base64 (CDP's binary encoding) to bytes.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return Err(format!("bad base64 byte {c}")),
        };
        acc = ((acc << 6) | u32::from(v)) & 0xff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
