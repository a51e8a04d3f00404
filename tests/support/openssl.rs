//! The `openssl` command line tool, for what rustls clients and rcgen do
//! not cover: a second, independent TLS client sending real ClientHellos
//! with chosen signature algorithms, cipher suites, SNI and saved sessions
//! (`s_client`), and files rcgen cannot make (RSA keys, encrypted keys).
//!
//! `make test-deps` installs openssl when missing. Every run is bounded in
//! time: a client that does not finish is killed.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::TempDir;

/// How long one `openssl` run may take.
const RUN_LIMIT: Duration = Duration::from_secs(15);

/// Runs `openssl ARGS`, writing `stdin` to it (then `hold` before closing
/// it), and returns (exit status, stdout + stderr).
fn run(args: &[&str], stdin: &[u8], hold: Duration) -> (Option<ExitStatus>, String) {
    let dir = TempDir::new("openssl");
    let out_path = dir.join("out");
    let out = fs::File::create(&out_path).expect("create output file");
    let err = out.try_clone().expect("clone output file");
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): install it (`make test-deps` does) to run this test")
        });
    if let Some(mut input) = child.stdin.take() {
        // A client that already quit closes its end: not an error here.
        let _ = input.write_all(stdin);
        thread::sleep(hold);
    }
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    (status, fs::read_to_string(&out_path).unwrap_or_default())
}

/// Runs `openssl ARGS` to make files; panics with its output on failure.
pub fn make(args: &[&str]) {
    let (status, out) = run(args, b"", Duration::ZERO);
    assert!(
        status.is_some_and(|s| s.success()),
        "openssl {args:?} failed ({status:?}):\n{out}"
    );
}

/// What `openssl s_client` printed about one connection.
pub struct SClient {
    pub output: String,
}

impl SClient {
    /// The handshake completed: `New, TLSv1.3, Cipher is ...` (or
    /// `Reused, ...`) with a real cipher.
    pub fn connected(&self) -> bool {
        self.session_line()
            .is_some_and(|l| !l.contains("Cipher is (NONE)"))
    }

    /// `New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256` or `Reused, ...`.
    pub fn session_line(&self) -> Option<&str> {
        self.output.lines().find(|l| {
            (l.starts_with("New, ") || l.starts_with("Reused, ")) && l.contains("Cipher is")
        })
    }

    /// The session was resumed (s_client's `Reused, ...` line).
    pub fn reused(&self) -> bool {
        self.session_line()
            .is_some_and(|l| l.starts_with("Reused, "))
    }

    /// `Peer signature type: ECDSA` → `ECDSA` (`RSA-PSS`, `RSA`, ...).
    pub fn peer_signature_type(&self) -> Option<&str> {
        self.value_after("Peer signature type: ")
    }

    /// `Server public key is 2048 bit` → 2048.
    pub fn server_key_bits(&self) -> Option<u32> {
        self.output.lines().find_map(|l| {
            l.strip_prefix("Server public key is ")?
                .strip_suffix(" bit")?
                .parse()
                .ok()
        })
    }

    fn value_after(&self, prefix: &str) -> Option<&str> {
        self.output
            .lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::trim))
    }
}

/// `openssl s_client` to 127.0.0.1:`port` with `args`, sending an HTTP/1.0
/// request for `/healthz` once connected and reading until the server
/// closes (so that TLS 1.3 tickets, sent after the handshake, are seen).
pub fn s_client(port: u16, args: &[&str]) -> SClient {
    let connect = format!("127.0.0.1:{port}");
    let mut all = vec!["s_client", "-connect", &connect, "-ign_eof"];
    all.extend_from_slice(args);
    let (_, output) = run(
        &all,
        b"GET /healthz HTTP/1.0\r\nHost: a.test\r\n\r\n",
        Duration::ZERO,
    );
    SClient { output }
}

/// `openssl s_client` in command mode: once connected, it reads `R` from
/// stdin and asks for a renegotiation (TLS 1.2); stdin stays open for
/// `hold`, then the client quits.
pub fn s_client_renegotiating(port: u16, args: &[&str], hold: Duration) -> SClient {
    let connect = format!("127.0.0.1:{port}");
    let mut all = vec!["s_client", "-connect", &connect];
    all.extend_from_slice(args);
    let (_, output) = run(&all, b"R\n", hold);
    SClient { output }
}

/// A self-signed certificate with an RSA key of `bits` for the DNS
/// `names`, valid for `days`: `STEM.crt` and `STEM.key` in `dir`.
pub fn rsa_cert(
    dir: &Path,
    stem: &str,
    names: &[&str],
    bits: u32,
    days: u32,
) -> (PathBuf, PathBuf) {
    let crt = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let newkey = format!("rsa:{bits}");
    let subj = format!("/CN={}", names.first().copied().unwrap_or(stem));
    let san = format!(
        "subjectAltName={}",
        names
            .iter()
            .map(|n| format!("DNS:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let days = days.to_string();
    make(&[
        "req",
        "-x509",
        "-newkey",
        &newkey,
        "-nodes",
        "-keyout",
        key.to_str().expect("utf-8 path"),
        "-out",
        crt.to_str().expect("utf-8 path"),
        "-days",
        &days,
        "-subj",
        &subj,
        "-addext",
        &san,
    ]);
    (crt, key)
}

/// Encrypts the key in `key` with a passphrase into `out`: PKCS#8
/// ("ENCRYPTED PRIVATE KEY") or, `legacy`, OpenSSL's traditional format
/// (a "Proc-Type: 4,ENCRYPTED" header in an "EC PRIVATE KEY" block).
pub fn encrypt_key(key: &Path, out: &Path, legacy: bool) {
    let (inp, outp) = (
        key.to_str().expect("utf-8 path"),
        out.to_str().expect("utf-8 path"),
    );
    let tool = if legacy { "ec" } else { "pkey" };
    make(&[
        tool,
        "-in",
        inp,
        "-aes256",
        "-passout",
        "pass:secret",
        "-out",
        outp,
    ]);
}

/// The notAfter of the certificate in `crt` as forklb prints it,
/// `YYYY-MM-DD HH:MM:SS UTC`, read by openssl (`notAfter=Jan  2 00:00:00
/// 2020 GMT`): an independent reading of the date forklb must name.
pub fn not_after_utc(crt: &Path) -> String {
    let (status, out) = run(
        &[
            "x509",
            "-noout",
            "-enddate",
            "-in",
            crt.to_str().expect("utf-8 path"),
        ],
        b"",
        Duration::ZERO,
    );
    assert!(status.is_some_and(|s| s.success()), "openssl x509: {out}");
    let text = out
        .trim()
        .strip_prefix("notAfter=")
        .unwrap_or_else(|| panic!("unexpected openssl x509 -enddate output: {out}"));
    let f: Vec<&str> = text.split_whitespace().collect();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| f.first() == Some(m))
        .unwrap_or_else(|| panic!("no month in {text:?}"))
        + 1;
    let (day, time, year) = match f.as_slice() {
        [_, d, t, y, ..] => (d.parse::<u32>().expect("day"), *t, *y),
        _ => panic!("unexpected notAfter {text:?}"),
    };
    format!("{year}-{month:02}-{day:02} {time} UTC")
}
