//! TLS hygiene (issue 14, items 9–12), with `openssl s_client` as the
//! client (real ClientHellos from another TLS stack):
//!
//! * what a client does wrong (an IP address as SNI, a renegotiation) stays
//!   out of the error log at the default level;
//! * ECDSA and RSA certificates for the same names: each client gets the
//!   one it can use, ECDSA when it can;
//! * expired and expiring certificates are warned about at `-t`, start and
//!   reload; encrypted keys are reported as such;
//! * TLS 1.2 resumes with tickets on every worker; session IDs are not
//!   issued (they would resume on one worker only).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::openssl::{self, s_client, SClient};
use support::tls::*;
use support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(10);
const DAY: u64 = 86_400;

/// One TLS listener on `$PORT` with the certificates `pairs` (in that
/// order), answering every request itself.
fn config(workers: usize, log_level: &str, pairs: &[(PathBuf, PathBuf)]) -> String {
    config_builder(workers, log_level, pairs).build()
}

fn config_builder(workers: usize, log_level: &str, pairs: &[(PathBuf, PathBuf)]) -> ConfigBuilder {
    ConfigBuilder::new()
        .workers(workers)
        .log_level(log_level)
        .shutdown_timeout("5s")
        .listener("secure", &["127.0.0.1:$PORT"])
        .certificates(pairs)
        .route(Route::any().ret(200, "ok\n"))
}

/// `forklb -t` on the configuration of [`config`] written into `dir`.
fn config_test(dir: &TempDir, pairs: &[(PathBuf, PathBuf)]) -> RunOutput {
    let path = config_builder(1, "info", pairs).write_for_check(dir);
    run_forklb(
        &["-t", "-c", path.to_str().expect("utf-8 path")],
        RUN_TIMEOUT,
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Worker lines of the error log at warn or error.
fn worker_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("#worker:") && (l.contains("[warn]") || l.contains("[error]")))
        .collect()
}

// ---------------------------------------------------------------------------
// Item 9: the error log is not the client's to fill

#[test]
fn ip_address_sni_and_renegotiation_stay_out_of_the_error_log() {
    let dir = TempDir::new("tls-quiet");
    let pair = TestCert::self_signed(&["a.test"]).write(dir.path(), "a");
    let lb = Forklb::start(&config(1, "info", std::slice::from_ref(&pair)));

    for i in 0..10 {
        let c = s_client(lb.port(), &["-servername", "127.0.0.1"]);
        assert!(
            c.connected(),
            "connection {i} with SNI 127.0.0.1 failed:\n{}",
            c.output
        );
    }
    for i in 0..3 {
        let c = openssl::s_client_renegotiating(
            lb.port(),
            &["-tls1_2", "-servername", "a.test"],
            Duration::from_millis(300),
        );
        assert!(
            c.output.contains("RENEGOTIATING"),
            "renegotiation {i} was not attempted:\n{}",
            c.output
        );
    }
    // Handshakes that fail: TLS 1.1, and a cipher suite rustls lacks.
    for args in [&["-tls1_1"][..], &["-tls1_2", "-cipher", "AES128-SHA"]] {
        let c = s_client(lb.port(), args);
        assert!(!c.connected(), "{args:?} connected:\n{}", c.output);
    }
    // The worker logs as it handles a connection; a last request after
    // the others makes sure it has handled them all.
    assert!(s_client(lb.port(), &["-servername", "a.test"]).connected());

    let log = lb.error_log_contents();
    for needle in ["Illegal SNI", "NoRenegotiation", "alert"] {
        assert!(
            !log.contains(needle),
            "{needle:?} in the error log at log_level info:\n{log}"
        );
    }
    let complaints = worker_complaints(&log);
    assert!(
        complaints.is_empty(),
        "misbehaving clients made the worker warn:\n{}",
        complaints.join("\n")
    );

    // The records are demoted to debug, not dropped.
    let lb = Forklb::start(&config(1, "debug", &[pair]));
    assert!(s_client(lb.port(), &["-servername", "127.0.0.1"]).connected());
    assert!(
        lb.wait_log("Illegal SNI", Duration::from_secs(5)),
        "no rustls record at log_level debug:\n{}",
        lb.error_log_contents()
    );
    let lines = lb.log_lines("Illegal SNI");
    assert!(
        lines.iter().all(|l| l.contains("[debug]")),
        "rustls records not at debug: {lines:?}"
    );
}

// ---------------------------------------------------------------------------
// Item 10: ECDSA + RSA for the same names

/// Which certificate a client got: `ECDSA` (256-bit key) or `RSA` (2048).
fn served(c: &SClient) -> &'static str {
    match c.server_key_bits() {
        Some(256) => "ECDSA",
        Some(2048) => "RSA",
        _ => "none",
    }
}

#[test]
fn ecdsa_and_rsa_certificates_for_one_name_serve_each_client_one_it_can_use() {
    let dir = TempDir::new("tls-dual");
    let ecdsa = TestCert::self_signed(&["a.test", "*.a.test"]).write(dir.path(), "ecdsa");
    let rsa = openssl::rsa_cert(dir.path(), "rsa", &["a.test", "*.a.test"], 2048, 30);
    let rsa_tls12 = ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"];
    let ecdsa_tls12 = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"];

    for order in [
        vec![ecdsa.clone(), rsa.clone()],
        vec![rsa.clone(), ecdsa.clone()],
    ] {
        let listed = if order[0] == ecdsa {
            "ECDSA first"
        } else {
            "RSA first"
        };
        let out = config_test(&dir, &order);
        assert_eq!(out.code(), Some(0), "{listed}: -t: {}", out.combined());
        let lb = Forklb::start(&config(1, "info", &order));
        for sni in [
            &["-servername", "a.test"][..],
            &["-servername", "x.a.test"],
            &["-noservername"],
            &["-servername", "other.test"],
        ] {
            let cases: [(&[&str], &str, &str); 5] = [
                (&["-tls1_3", "-sigalgs", "RSA-PSS+SHA256"], "RSA", "RSA-PSS"),
                (&rsa_tls12, "RSA", ""),
                (&["-tls1_3", "-sigalgs", "ECDSA+SHA256"], "ECDSA", "ECDSA"),
                (&ecdsa_tls12, "ECDSA", "ECDSA"),
                // Clients that can use both get ECDSA.
                (&[], "ECDSA", "ECDSA"),
            ];
            for (args, want, signature) in cases {
                let all: Vec<&str> = sni.iter().chain(args.iter()).copied().collect();
                let c = s_client(lb.port(), &all);
                assert!(
                    c.connected(),
                    "{listed}, {all:?}: handshake failed\n{}\n{}",
                    c.output,
                    lb.diagnostics()
                );
                assert_eq!(served(&c), want, "{listed}, {all:?}:\n{}", c.output);
                if !signature.is_empty() {
                    assert_eq!(
                        c.peer_signature_type(),
                        Some(signature),
                        "{listed}, {all:?}:\n{}",
                        c.output
                    );
                }
            }
        }
        assert!(
            worker_complaints(&lb.error_log_contents()).is_empty(),
            "{listed}:\n{}",
            lb.error_log_contents()
        );
    }
}

// ---------------------------------------------------------------------------
// Item 11: expiry and encrypted keys

fn warn_lines<'a>(text: &'a str, file: &Path) -> Vec<&'a str> {
    let file = file.display().to_string();
    text.lines()
        .filter(|l| l.contains("[warn]") && l.contains(&file))
        .collect()
}

#[test]
fn expired_and_expiring_certificates_are_warned_about_at_test_start_and_reload() {
    let dir = TempDir::new("tls-expiry");
    // Expired on 2020-01-02; expiring in 5 days and a half; fine (rcgen's
    // default validity runs to 4096).
    let expired =
        TestCert::self_signed_until(&["old.test"], 1_577_923_200).write(dir.path(), "old");
    let soon_at = now_secs() + 5 * DAY + 12 * 3600;
    let soon = TestCert::self_signed_until(&["soon.test"], soon_at).write(dir.path(), "soon");
    let fine = TestCert::self_signed(&["fine.test"]).write(dir.path(), "fine");
    let soon_date = openssl::not_after_utc(&soon.0);
    assert_eq!(
        openssl::not_after_utc(&expired.0),
        "2020-01-02 00:00:00 UTC"
    );
    let pairs = [fine.clone(), expired.clone(), soon.clone()];

    // -t: a warning, not an error, naming the file and the date.
    let out = config_test(&dir, &pairs);
    let text = out.combined();
    assert_eq!(
        out.code(),
        Some(0),
        "-t with an expired certificate: {text}"
    );
    assert!(text.contains("test is successful"), "{text}");
    let old = warn_lines(&text, &expired.0);
    assert!(
        old.len() == 1 && old[0].contains("expired on 2020-01-02 00:00:00 UTC"),
        "-t does not warn about {} with its date: {text}",
        expired.0.display()
    );
    let near = warn_lines(&text, &soon.0);
    assert!(
        near.len() == 1 && near[0].contains(&format!("expires on {soon_date}, in 5 days")),
        "-t does not warn about {} expiring on {soon_date}: {text}",
        soon.0.display()
    );
    assert!(warn_lines(&text, &fine.0).is_empty(), "{text}");

    // Start: the same warnings in the error log, and the certificates are served.
    let lb = Forklb::start(&config(1, "info", &pairs));
    let log = lb.error_log_contents();
    assert_eq!(warn_lines(&log, &expired.0).len(), 1, "at start:\n{log}");
    assert_eq!(warn_lines(&log, &soon.0).len(), 1, "at start:\n{log}");
    assert!(warn_lines(&log, &fine.0).is_empty(), "at start:\n{log}");
    for sni in ["old.test", "soon.test", "fine.test"] {
        let c = s_client(lb.port(), &["-servername", sni]);
        assert!(c.connected(), "{sni}:\n{}", c.output);
    }

    // Reload: again.
    lb.signal(SIGHUP);
    assert!(
        lb.wait_log_count("expired on 2020-01-02", 2, Duration::from_secs(10)),
        "no expiry warning at reload:\n{}",
        lb.diagnostics()
    );
    let log = lb.error_log_contents();
    assert_eq!(warn_lines(&log, &soon.0).len(), 2, "after HUP:\n{log}");
    assert!(!log.contains("reload failed"), "{log}");
}

#[test]
fn encrypted_keys_are_reported_with_the_way_to_decrypt_them() {
    let dir = TempDir::new("tls-encrypted");
    let (crt, key) = TestCert::self_signed(&["a.test"]).write(dir.path(), "a");
    for (legacy, label) in [(false, "PKCS#8"), (true, "legacy PEM")] {
        let enc = dir.join(&format!(
            "a-{}.key",
            if legacy { "legacy" } else { "pkcs8" }
        ));
        openssl::encrypt_key(&key, &enc, legacy);
        let pem = std::fs::read_to_string(&enc).expect("read encrypted key");
        assert!(
            pem.contains(if legacy {
                "Proc-Type: 4,ENCRYPTED"
            } else {
                "BEGIN ENCRYPTED PRIVATE KEY"
            }),
            "{label}: openssl wrote {pem}"
        );
        let out = config_test(&dir, &[(crt.clone(), enc.clone())]);
        let text = out.combined();
        assert_eq!(out.code(), Some(1), "{label}: {text}");
        assert!(
            text.contains(&format!("key file {} is encrypted", enc.display())),
            "{label}: the error does not say the key is encrypted: {text}"
        );
        assert!(
            text.contains(&format!("openssl pkey -in {}", enc.display())),
            "{label}: the error does not say how to decrypt: {text}"
        );
        assert!(!text.contains("no private key found"), "{label}: {text}");
    }
}

// ---------------------------------------------------------------------------
// Item 12: resumption across workers

/// Saves a session from a first connection with `args`, then reconnects
/// `n` times with it, each time with one of the two workers stopped so
/// that consecutive connections go to different workers. Returns whether
/// each reconnection resumed.
fn reconnect(lb: &Forklb, dir: &TempDir, args: &[&str], n: usize) -> Vec<bool> {
    let workers = lb.wait_workers(2, Duration::from_secs(5));
    let session = dir.join("session.pem");
    let _ = std::fs::remove_file(&session);
    let session = session.to_str().expect("utf-8 path").to_owned();
    let save: Vec<&str> = args
        .iter()
        .copied()
        .chain(["-sess_out", &session])
        .collect();
    let first = s_client(lb.port(), &save);
    assert!(
        first.connected(),
        "{save:?}: first connection:\n{}",
        first.output
    );
    assert!(
        Path::new(&session).exists(),
        "{save:?}: s_client saved no session:\n{}",
        first.output
    );
    let again: Vec<&str> = args.iter().copied().chain(["-sess_in", &session]).collect();
    let mut resumed = Vec::new();
    for i in 0..n {
        let paused = Paused::new(workers[i % 2]);
        let c = s_client(lb.port(), &again);
        drop(paused);
        assert!(
            c.connected(),
            "{again:?}: reconnection {i}:\n{}\n{}",
            c.output,
            lb.diagnostics()
        );
        resumed.push(c.reused());
    }
    resumed
}

#[test]
fn tls12_resumes_with_tickets_on_every_worker_and_issues_no_session_ids() {
    let dir = TempDir::new("tls-resume12");
    let pair = TestCert::self_signed(&["a.test"]).write(dir.path(), "a");
    let lb = Forklb::start(&config(2, "info", &[pair]));
    let workers = lb.wait_workers(2, Duration::from_secs(5));
    let tls12 = ["-tls1_2", "-servername", "a.test"];
    let tls13 = ["-tls1_3", "-servername", "a.test"];
    let tls12_no_ticket = ["-tls1_2", "-no_ticket", "-servername", "a.test"];

    for args in [&tls12[..], &tls13] {
        let resumed = reconnect(&lb, &dir, args, 10);
        assert!(
            resumed.iter().all(|&r| r),
            "{args:?} with tickets, alternating workers: resumed {resumed:?}\n{}",
            lb.diagnostics()
        );
    }

    // Without tickets a TLS 1.2 client can resume only by session ID,
    // which would be in the cache of the worker that made it (10 of 20
    // reconnections resumed before). No ID is issued: the client has no
    // session to offer and never resumes, whichever worker it reaches.
    let session = dir.join("no-ticket.pem");
    let save: Vec<&str> = tls12_no_ticket
        .iter()
        .copied()
        .chain(["-sess_out", session.to_str().expect("utf-8 path")])
        .collect();
    for i in 0..4 {
        let paused = Paused::new(workers[i % 2]);
        let c = s_client(lb.port(), &save);
        drop(paused);
        assert!(c.connected(), "{save:?}:\n{}", c.output);
        let id_line = c
            .output
            .lines()
            .find(|l| l.trim_start().starts_with("Session-ID:"))
            .unwrap_or_else(|| panic!("no Session-ID line:\n{}", c.output));
        assert_eq!(
            id_line.trim(),
            "Session-ID:",
            "connection {i}: a session ID was issued:\n{}",
            c.output
        );
        assert!(
            !session.exists(),
            "connection {i}: s_client saved a resumable session without a ticket:\n{}",
            c.output
        );
    }
}
