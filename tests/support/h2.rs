//! HTTP/2 clients for the tests/h2_*.rs files: the command-line tools
//! (`curl`, `nghttp`, `h2load`, `../shared/tools/h2spec`) and the raw-frame
//! Python clients in `tests/h2_attack/` (run with Debian's
//! `/usr/bin/python3` and its `python3-h2`, which `make test-deps`
//! installs), plus [`H2Lb`]: forklb with a TLS listener (`http2` on by
//! default), an `h2c: true` listener and a plain one, all with the same
//! routes.
//!
//! Every tool runs with a deadline and is killed when it passes.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::tls::TestCert;
use super::*;

/// Debian's interpreter: `python3-h2` installs the `h2` and `hpack` modules
/// for it (a pyenv or venv `python3` first on PATH would not have them).
pub const PYTHON: &str = "/usr/bin/python3";

/// What a tool printed and how it ended (`code` is `None` when it was
/// killed at its deadline or by a signal).
#[derive(Debug)]
pub struct ToolOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl ToolOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn combined(&self) -> String {
        format!(
            "exit {:?}{} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            if self.timed_out {
                " (killed at its deadline)"
            } else {
                ""
            },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    /// `key=value` lines of stdout (what the Python clients print).
    pub fn values(&self) -> KeyValues {
        KeyValues::parse(&self.stdout)
    }
}

/// A running tool whose output goes to files (no pipe can fill up).
pub struct Tool {
    child: Child,
    dir: TempDir,
    started: Instant,
    what: String,
}

impl Tool {
    pub fn spawn(program: &str, args: &[&str]) -> Tool {
        let dir = TempDir::new("tool");
        let out = fs::File::create(dir.join("stdout")).expect("create stdout file");
        let err = fs::File::create(dir.join("stderr")).expect("create stderr file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): install it (`make test-deps` does)")
            });
        Tool {
            child,
            dir,
            started: Instant::now(),
            what: format!("{program} {}", args.join(" ")),
        }
    }

    /// What it printed so far.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    /// Waits for the tool to exit, killing it after `timeout` (counted from
    /// its start).
    pub fn wait(mut self, timeout: Duration) -> ToolOutput {
        let deadline = self.started + timeout;
        let mut timed_out = false;
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    timed_out = true;
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let out = ToolOutput {
            code,
            stdout: fs::read_to_string(self.dir.join("stdout")).unwrap_or_default(),
            stderr: fs::read_to_string(self.dir.join("stderr")).unwrap_or_default(),
            elapsed: self.started.elapsed(),
            timed_out,
        };
        if timed_out {
            eprintln!("{} was killed after {timeout:?}", self.what);
        }
        out
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `program` with `args`, killed after `timeout`.
pub fn run_tool(program: &str, args: &[&str], timeout: Duration) -> ToolOutput {
    Tool::spawn(program, args).wait(timeout)
}

/// A file of `tests/h2_attack/`.
pub fn h2_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/h2_attack")
        .join(name)
}

/// `tls` or `h2c`: how a Python client reaches forklb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Mode {
    Tls,
    H2c,
}

impl H2Mode {
    fn arg(self) -> &'static str {
        match self {
            H2Mode::Tls => "tls",
            H2Mode::H2c => "h2c",
        }
    }
}

/// Starts `tests/h2_attack/SCRIPT MODE 127.0.0.1 PORT ARGS...`.
pub fn spawn_python(script: &str, mode: H2Mode, port: u16, args: &[&str]) -> Tool {
    let path = h2_script(script);
    let port = port.to_string();
    let mut all = vec![path.to_str().unwrap(), mode.arg(), "127.0.0.1", &port];
    all.extend_from_slice(args);
    Tool::spawn(PYTHON, &all)
}

/// Runs a Python client to its end (killed after `timeout`); a crash of the
/// client itself fails the test.
pub fn python(
    script: &str,
    mode: H2Mode,
    port: u16,
    args: &[&str],
    timeout: Duration,
) -> KeyValues {
    let out = spawn_python(script, mode, port, args).wait(timeout);
    assert!(
        out.ok() && !out.stderr.contains("Traceback"),
        "{script} {args:?} failed:\n{}",
        out.combined()
    );
    let v = out.values();
    assert!(
        v.get("reader_error").is_none_or(|e| e == "none"),
        "{script} {args:?}: its reader failed:\n{}",
        out.combined()
    );
    v
}

/// `key=value` lines.
#[derive(Debug, Clone, Default)]
pub struct KeyValues {
    pub map: HashMap<String, String>,
    pub text: String,
}

impl KeyValues {
    pub fn parse(text: &str) -> KeyValues {
        let map = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        KeyValues {
            map,
            text: text.to_owned(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The value of `key`, which must be there.
    pub fn at(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no {key}= in:\n{}", self.text))
    }

    /// `key` as seconds (`none` → `None`).
    pub fn secs(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// What `client.py hints` saw was one 103 with Link `link` before
    /// a 200 with body `body`; `what` names the case in a failure.
    pub fn assert_early_hints(&self, link: &str, body: &str, what: &str) {
        assert_eq!(self.at("blocks"), "2", "{what}: {}", self.text);
        assert_eq!(self.at("first_status"), "103", "{what}: {}", self.text);
        assert_eq!(self.at("first_link"), link, "{what}: {}", self.text);
        assert_eq!(self.at("final_status"), "200", "{what}: {}", self.text);
        assert_eq!(self.at("body"), body, "{what}: {}", self.text);
    }

    /// The server sent GOAWAY or closed the connection.
    pub fn ended(&self) -> bool {
        self.get("goaway").is_some_and(|g| g != "none") || self.get("closed") == Some("yes")
    }

    /// When the server ended the connection (GOAWAY or close, whichever
    /// came first), in seconds after the client connected.
    pub fn ended_after(&self) -> Option<f64> {
        match (self.secs("goaway_after"), self.secs("closed_after")) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `curl ARGS` (killed after 30 s).
pub fn curl(args: &[&str]) -> ToolOutput {
    run_tool("curl", args, Duration::from_secs(30))
}

/// POSTs `body` to `url` over HTTP/2 (TLS, certificate not checked) with
/// curl and `extra` arguments, for at most `max_secs`: curl's output and
/// the response body it saved.
pub fn curl_h2_post(
    url: &str,
    body: &[u8],
    max_secs: u32,
    extra: &[&str],
) -> (ToolOutput, Vec<u8>) {
    let dir = TempDir::new("curl-h2-post");
    let file = dir.join("body.bin");
    std::fs::write(&file, body).expect("request body file");
    let data = format!("@{}", file.display());
    let back = dir.join("back.bin");
    let max = max_secs.to_string();
    let back_arg = back.to_str().expect("path");
    let mut args = vec![
        "--http2",
        "-sSk",
        "--max-time",
        &max,
        "--data-binary",
        &data,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", back_arg, url]);
    let out = curl(&args);
    let got = std::fs::read(&back).unwrap_or_default();
    (out, got)
}

/// The counts of h2load's `requests:` line: (total, succeeded, failed,
/// errored).
pub fn h2load_counts(out: &ToolOutput) -> (u64, u64, u64, u64) {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests: line from h2load:\n{}", out.combined()));
    let n = |word: &str| -> u64 {
        line.split(',')
            .map(str::trim)
            .find_map(|part| {
                let part = part.strip_prefix("requests:").unwrap_or(part).trim();
                part.strip_suffix(word)
                    .and_then(|num| num.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no `{word}` count in {line:?}"))
    };
    (n("total"), n("succeeded"), n("failed"), n("errored"))
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use ::forklb::tls::crypto::primitives::digest;
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `n` [`pattern_byte`]s: what a backend with `stream_body: Some(n)` sends.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(pattern_byte).collect()
}

/// forklb with three listeners sharing `routes`: `tls` on `$PORT` (TLS,
/// `http2` left at its default), `h2c` (`h2c: true`) and `plain` (neither),
/// each on its own port. `extra` adds top-level keys and the upstreams.
pub struct H2Lb {
    pub lb: Forklb,
    /// The configuration it started with (`$PORT` not replaced), for
    /// [`Forklb::write_config`].
    pub yaml: String,
    pub h2c_port: u16,
    pub plain_port: u16,
    _certs: TempDir,
}

impl H2Lb {
    /// `configure` gets the builder with the listeners in place and adds
    /// upstreams (and top-level keys).
    pub fn start(routes: &[Route], configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> H2Lb {
        let certs = TempDir::new("h2certs");
        let pair = TestCert::self_signed(&["localhost"]).write(certs.path(), "h2");
        let (h2c_port, plain_port) = (free_port(), free_port());
        let mut b = ConfigBuilder::new()
            .log_level("info")
            .shutdown_timeout("5s")
            .listener("tls", &["127.0.0.1:$PORT"])
            .certificates(&[pair]);
        for r in routes {
            b = b.route(r.clone());
        }
        b = b
            .listener("h2c", &[&format!("127.0.0.1:{h2c_port}")])
            .listener_opt("h2c: true");
        for r in routes {
            b = b.route(r.clone());
        }
        b = b.listener("plain", &[&format!("127.0.0.1:{plain_port}")]);
        for r in routes {
            b = b.route(r.clone());
        }
        let yaml = configure(b).build();
        let lb = Forklb::start(&yaml);
        H2Lb {
            lb,
            yaml,
            h2c_port,
            plain_port,
            _certs: certs,
        }
    }

    pub fn tls_port(&self) -> u16 {
        self.lb.port()
    }

    pub fn tls_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.tls_port())
    }

    pub fn h2c_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.h2c_port)
    }

    pub fn plain_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.plain_port)
    }

    /// The port of `mode`'s listener.
    pub fn port(&self, mode: H2Mode) -> u16 {
        match mode {
            H2Mode::Tls => self.tls_port(),
            H2Mode::H2c => self.h2c_port,
        }
    }

    /// `curl --http2 -sk URL` over TLS: (exit ok, body, `%{http_version}`).
    pub fn curl_h2_tls(&self, path: &str) -> (ToolOutput, String) {
        curl_with_version(&["--http2", "-sSk", "--max-time", "10", &self.tls_url(path)])
    }

    /// `curl --http2-prior-knowledge URL` on the h2c listener.
    pub fn curl_h2c(&self, path: &str) -> (ToolOutput, String) {
        curl_with_version(&[
            "--http2-prior-knowledge",
            "-sS",
            "--max-time",
            "10",
            &self.h2c_url(path),
        ])
    }
}

/// curl with `-w '\n%{http_version}'` appended: the output with the version
/// line taken off its stdout, and the version.
pub fn curl_with_version(args: &[&str]) -> (ToolOutput, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-w", "\n%{http_version}"]);
    let mut out = curl(&all);
    let (body, version) = match out.stdout.rsplit_once('\n') {
        Some((b, v)) => (b.to_owned(), v.trim().to_owned()),
        None => (String::new(), out.stdout.trim().to_owned()),
    };
    out.stdout = body;
    (out, version)
}
