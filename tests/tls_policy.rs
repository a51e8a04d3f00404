//! TLS policy (issue 18 item 5): `protocols`, client certificates on a
//! listener (`client_auth`), a client certificate presented to HTTPS
//! upstreams (`upstreams.NAME.tls.{cert, key}`) and stapled OCSP responses
//! (`certificates[].ocsp`).
//!
//! Real peers throughout: the certificates, the OCSP responses and every
//! TLS client here are openssl's (`openssl req/x509/ocsp/s_client`) or
//! curl's, and the upstream that asks for a client certificate is nginx
//! (`ssl_verify_client on`).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::openssl::{make, s_client, SClient};
use support::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A certificate authority made with openssl, issuing leaf certificates
/// and signing OCSP responses for them (it is its own OCSP responder).
struct Pki {
    dir: PathBuf,
    name: String,
    crt: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let crt = dir.join(format!("{name}-ca.crt"));
        let key = dir.join(format!("{name}-ca.key"));
        let subj = format!("/CN={name} CA");
        make(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            p(&key),
            "-out",
            p(&crt),
            "-days",
            "30",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ]);
        Pki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            crt,
            key,
        }
    }

    /// `STEM.crt` (the leaf, then this CA: the chain) and `STEM.key`, with
    /// `subj`, serial number `serial` (hex) and `ext` (an extfile line:
    /// subjectAltName, extendedKeyUsage).
    fn issue(&self, stem: &str, subj: &str, serial: &str, ext: &str) -> (PathBuf, PathBuf) {
        let (crt, key, csr, extf) = (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
            self.dir.join(format!("{stem}.csr")),
            self.dir.join(format!("{stem}.ext")),
        );
        fs::write(&extf, format!("{ext}\n")).expect("write extfile");
        make(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            p(&key),
            "-out",
            p(&csr),
            "-subj",
            subj,
        ]);
        let leaf = self.dir.join(format!("{stem}.leaf"));
        let set_serial = format!("0x{serial}");
        make(&[
            "x509",
            "-req",
            "-in",
            p(&csr),
            "-CA",
            p(&self.crt),
            "-CAkey",
            p(&self.key),
            "-set_serial",
            &set_serial,
            "-days",
            "20",
            "-out",
            p(&leaf),
            "-extfile",
            p(&extf),
        ]);
        let mut chain = fs::read(&leaf).expect("read leaf");
        chain.extend(fs::read(&self.crt).expect("read CA"));
        fs::write(&crt, chain).expect("write chain");
        (crt, key)
    }

    /// A server certificate for a.test.
    fn server(&self, stem: &str, serial: &str) -> (PathBuf, PathBuf) {
        self.issue(
            stem,
            "/CN=a.test",
            serial,
            "subjectAltName=DNS:a.test\nextendedKeyUsage=serverAuth",
        )
    }

    /// A client certificate with subject `subj`.
    fn client(&self, stem: &str, subj: &str, serial: &str) -> (PathBuf, PathBuf) {
        self.issue(stem, subj, serial, "extendedKeyUsage=clientAuth")
    }

    /// An OCSP response about `cert` (issued by this CA, serial `serial`),
    /// signed by the CA: `good`, or `revoked` when `revoked`; its
    /// nextUpdate `days` ahead. Written to `out`.
    fn ocsp(&self, cert: &Path, serial: &str, revoked: bool, days: u32, out: &Path) {
        let tag = out.file_name().and_then(|n| n.to_str()).unwrap_or("r");
        let index = self.dir.join(format!("{}-{tag}.index", self.name));
        let req = self.dir.join(format!("{}-{tag}.req", self.name));
        // openssl ca's index: status, expiry, revocation time, serial, file, subject.
        let line = if revoked {
            format!("R\t301231000000Z\t260101000000Z\t{serial}\tunknown\t/CN=a.test\n")
        } else {
            format!("V\t301231000000Z\t\t{serial}\tunknown\t/CN=a.test\n")
        };
        fs::write(&index, line).expect("write index");
        make(&[
            "ocsp",
            "-issuer",
            p(&self.crt),
            "-cert",
            p(cert),
            "-no_nonce",
            "-reqout",
            p(&req),
        ]);
        let days = days.to_string();
        make(&[
            "ocsp",
            "-index",
            p(&index),
            "-rsigner",
            p(&self.crt),
            "-rkey",
            p(&self.key),
            "-CA",
            p(&self.crt),
            "-reqin",
            p(&req),
            "-respout",
            p(out),
            "-ndays",
            &days,
        ]);
    }
}

/// `tls:` of a listener in flow style: `certificates` (cert, key, ocsp)
/// and the extra `keys` (`protocols: [...]`, `client_auth: {...}`).
fn tls_line(certs: &[(&Path, &Path, Option<&Path>)], keys: &[String]) -> String {
    let certs: Vec<String> = certs
        .iter()
        .map(|(c, k, o)| {
            let ocsp = o.map_or(String::new(), |o| {
                format!(", ocsp: {}", yaml_str(&o.display().to_string()))
            });
            format!(
                "{{cert: {}, key: {}{ocsp}}}",
                yaml_str(&c.display().to_string()),
                yaml_str(&k.display().to_string())
            )
        })
        .collect();
    let mut parts = vec![format!("certificates: [{}]", certs.join(", "))];
    parts.extend(keys.iter().cloned());
    format!("tls: {{{}}}", parts.join(", "))
}

fn client_auth(ca: &Path, required: bool) -> String {
    format!(
        "client_auth: {{ca: {}, required: {required}}}",
        yaml_str(&ca.display().to_string())
    )
}

/// Two workers, one listener on `$PORT` with `tls`, answering `/healthz`
/// itself and sending the rest to `backend`.
fn listener_config(tls: &str, backend: &Backend) -> String {
    ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .shutdown_timeout("5s")
        .listener("secure", &["127.0.0.1:$PORT"])
        .listener_opt(tls)
        .route(Route::healthz())
        .route(Route::to("web"))
        .upstream("web", [Srv::of(backend)])
        .build()
}

/// `curl -sk https://127.0.0.1:PORT/PATH` with `args` (a client
/// certificate): (exit code, body).
fn curl_get(port: u16, path: &str, args: &[&str]) -> ToolOutput {
    let url = format!("https://127.0.0.1:{port}{path}");
    let mut all = vec![
        "-sk",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\nstatus=%{http_code}\n",
    ];
    all.extend_from_slice(args);
    all.push(&url);
    curl(&all)
}

fn status_of(out: &ToolOutput) -> Option<u16> {
    out.stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("status=")?.parse().ok())
}

/// `forklb -t -c FILE` with `yaml` written to `dir`.
fn check(dir: &TempDir, yaml: &str) -> RunOutput {
    let path = dir.join("check.yaml");
    fs::write(&path, yaml.replace("$PORT", &free_port().to_string())).expect("write config");
    run_forklb(&["-t", "-c", p(&path)], Duration::from_secs(30))
}

// ---------------------------------------------------------------------------
// protocols

#[test]
fn protocols_restrict_the_versions_offered() {
    let dir = TempDir::new("tlspol-versions");
    let pki = Pki::new(dir.path(), "srv");
    let (crt, key) = pki.server("a", "1001");
    let be = Backend::start("b1");
    for (only, offered, refused) in [
        ("TLSv1.3", "-tls1_3", "-tls1_2"),
        ("TLSv1.2", "-tls1_2", "-tls1_3"),
    ] {
        let tls = tls_line(&[(&crt, &key, None)], &[format!("protocols: [{only}]")]);
        let yaml = listener_config(&tls, &be).replace("log_level: info", "log_level: debug");
        assert!(yaml.contains("log_level: debug"), "{yaml}");
        let lb = Forklb::start(&yaml);
        for _ in 0..2 {
            let ok = s_client(lb.port(), &["-servername", "a.test", offered]);
            assert!(
                ok.connected() && ok.output.contains(&format!("Protocol  : {only}")),
                "protocols: [{only}]: {offered} refused\n{}",
                ok.output
            );
            let no = s_client(lb.port(), &["-servername", "a.test", refused]);
            assert!(
                !no.connected() && no.output.contains("alert protocol version"),
                "protocols: [{only}]: {refused} not refused with protocol_version\n{}",
                no.output
            );
        }
        // Logged at debug (kept out of the default level: issue 14), with
        // the client and rustls's reason.
        assert!(
            lb.wait_log_count(
                "TLS handshake with client 127.0.0.1:",
                2,
                Duration::from_secs(5)
            ),
            "protocols: [{only}]: refused handshakes not logged\n{}",
            lb.error_log_contents()
        );
        let line = lb.log_lines("TLS handshake with client").remove(0);
        assert!(
            line.contains("[debug]") && line.contains("failed: peer is incompatible"),
            "{line}"
        );
    }
    // Both by default, and when both are listed.
    for keys in [vec![], vec!["protocols: [TLSv1.2, TLSv1.3]".to_owned()]] {
        let tls = tls_line(&[(&crt, &key, None)], &keys);
        let lb = Forklb::start(&listener_config(&tls, &be));
        for v in ["-tls1_2", "-tls1_3"] {
            let c = s_client(lb.port(), &["-servername", "a.test", v]);
            assert!(c.connected(), "{keys:?} {v}\n{}", c.output);
        }
    }
}

#[test]
fn config_test_refuses_versions_rustls_does_not_speak() {
    let dir = TempDir::new("tlspol-versions-check");
    let pki = Pki::new(dir.path(), "srv");
    let (crt, key) = pki.server("a", "1001");
    let be = Backend::start("b1");
    for (list, needle) in [
        ("[TLSv1.1]", "unsupported TLS version \"TLSv1.1\""),
        ("[TLSv1.2, TLSv1]", "unsupported TLS version \"TLSv1\""),
        ("[SSLv3]", "unsupported TLS version \"SSLv3\""),
        ("[]", "at least one version is required"),
    ] {
        let tls = tls_line(&[(&crt, &key, None)], &[format!("protocols: {list}")]);
        let out = check(&dir, &listener_config(&tls, &be));
        let text = out.combined();
        assert_ne!(out.code(), Some(0), "{list} accepted\n{text}");
        assert!(
            text.contains("listeners[0].tls.protocols") && text.contains(needle),
            "{list}: the error does not name the field and the version\n{text}"
        );
        if list != "[]" {
            assert!(text.contains("TLSv1.2 and TLSv1.3 only"), "{text}");
        }
    }
}

/// The key exchange group `s_client` reports ("Server Temp Key: X25519,
/// 253 bits" / "ECDH, prime256v1, 256 bits").
fn temp_key(c: &SClient) -> Option<&str> {
    let line = c
        .output
        .lines()
        .find(|l| l.starts_with("Server Temp Key:"))?;
    let key = line.trim_start_matches("Server Temp Key:").trim();
    Some(
        key.trim_start_matches("ECDH,")
            .trim()
            .split(',')
            .next()?
            .trim(),
    )
}

#[test]
fn groups_restrict_and_order_the_key_exchange() {
    let dir = TempDir::new("tlspol-groups");
    let pki = Pki::new(dir.path(), "srv");
    let (crt, key) = pki.server("a", "1001");
    let be = Backend::start("b1");
    let sc = |port: u16, v: &str, groups: &str| {
        s_client(port, &["-servername", "a.test", v, "-groups", groups])
    };
    // One group: a client without it is refused, in both versions.
    let tls = tls_line(&[(&crt, &key, None)], &["groups: [P-256]".to_owned()]);
    let lb = Forklb::start(&listener_config(&tls, &be));
    for v in ["-tls1_2", "-tls1_3"] {
        let ok = sc(lb.port(), v, "X25519:P-256");
        assert!(ok.connected(), "{v}\n{}", ok.output);
        assert_eq!(temp_key(&ok), Some("prime256v1"), "{v}\n{}", ok.output);
        let no = sc(lb.port(), v, "X25519:P-384");
        assert!(
            !no.connected(),
            "{v}: a client without P-256 got in\n{}",
            no.output
        );
        assert!(
            no.output.contains("alert handshake failure"),
            "{v}\n{}",
            no.output
        );
    }
    drop(lb);
    // TLS 1.3: the client's key share is taken when its group is listed;
    // otherwise the server asks for its first listed group the client has.
    let tls = tls_line(
        &[(&crt, &key, None)],
        &["groups: [secp384r1, x25519]".to_owned()],
    );
    let lb = Forklb::start(&listener_config(&tls, &be));
    for (offered, got) in [
        ("X25519:P-384", "X25519"),
        ("P-256:P-384", "secp384r1"),
        ("P-256:X25519", "X25519"),
    ] {
        let c = sc(lb.port(), "-tls1_3", offered);
        assert!(c.connected(), "{offered}\n{}", c.output);
        assert_eq!(temp_key(&c), Some(got), "{offered}\n{}", c.output);
    }
    assert!(!sc(lb.port(), "-tls1_3", "P-256").connected());
    drop(lb);
    // The default accepts all of X25519, P-256 and P-384.
    let lb = Forklb::start(&listener_config(&tls_line(&[(&crt, &key, None)], &[]), &be));
    for (offered, got) in [
        ("X25519", "X25519"),
        ("P-256", "prime256v1"),
        ("P-384", "secp384r1"),
    ] {
        let c = sc(lb.port(), "-tls1_3", offered);
        assert_eq!(temp_key(&c), Some(got), "{offered}\n{}", c.output);
    }
}

#[test]
fn config_test_refuses_unknown_groups_and_prints_the_list() {
    let dir = TempDir::new("tlspol-groups-check");
    let pki = Pki::new(dir.path(), "srv");
    let (crt, key) = pki.server("a", "1001");
    let be = Backend::start("b1");
    for (list, needle) in [
        ("[X448]", "unknown key exchange group \"X448\""),
        (
            "[X25519, ffdhe2048]",
            "unknown key exchange group \"ffdhe2048\"",
        ),
        ("[]", "at least one group is required"),
    ] {
        let tls = tls_line(&[(&crt, &key, None)], &[format!("groups: {list}")]);
        let out = check(&dir, &listener_config(&tls, &be));
        let text = out.combined();
        assert_ne!(out.code(), Some(0), "{list} accepted\n{text}");
        assert!(
            text.contains("listeners[0].tls.groups") && text.contains(needle),
            "{list}: the error does not name the field and the group\n{text}"
        );
        assert!(
            text.contains("X25519, P-256, P-384, X25519MLKEM768"),
            "{text}"
        );
    }
    // -T prints the list as written.
    let tls = tls_line(
        &[(&crt, &key, None)],
        &["groups: [X25519MLKEM768, X25519]".to_owned()],
    );
    let conf = dir.join("printed.yaml");
    let yaml = listener_config(&tls, &be).replace("$PORT", &free_port().to_string());
    fs::write(&conf, yaml).expect("write config");
    let out = run_forklb(&["-T", "-c", p(&conf)], Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{}", out.combined());
    assert!(
        out.stdout.contains("groups:") && out.stdout.contains("X25519MLKEM768"),
        "{}",
        out.stdout
    );
}

/// The cipher suite `s_client` reports ("New, TLSv1.3, Cipher is X").
fn cipher(c: &SClient) -> Option<&str> {
    let line = c.output.lines().find(|l| l.contains(", Cipher is "))?;
    Some(line.split(", Cipher is ").nth(1)?.trim())
}

#[test]
fn the_server_s_order_of_cipher_suites_wins() {
    let dir = TempDir::new("tlspol-ciphers");
    let pki = Pki::new(dir.path(), "srv");
    let (crt, key) = pki.server("a", "1001");
    let be = Backend::start("b1");
    let lb = Forklb::start(&listener_config(&tls_line(&[(&crt, &key, None)], &[]), &be));
    for (args, want) in [
        (
            ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"],
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"],
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            ["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"],
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            ["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ] {
        let mut all = vec!["-servername", "a.test"];
        all.extend(args);
        let c = s_client(lb.port(), &all);
        assert!(c.connected(), "{args:?}\n{}", c.output);
        assert_eq!(cipher(&c), Some(want), "{args:?}\n{}", c.output);
    }
}

// ---------------------------------------------------------------------------
// client_auth

#[test]
fn required_client_certificates_are_verified_and_anonymous_clients_refused() {
    let dir = TempDir::new("tlspol-mtls");
    let pki = Pki::new(dir.path(), "srv");
    let clients = Pki::new(dir.path(), "clients");
    let rogue = Pki::new(dir.path(), "rogue");
    let (crt, key) = pki.server("a", "1001");
    let (ccrt, ckey) = clients.client("alice", "/O=Org/CN=alice", "2001");
    let (rcrt, rkey) = rogue.client("mallory", "/O=Org/CN=mallory", "3001");
    let be = Backend::start("b1");
    let tls = tls_line(&[(&crt, &key, None)], &[client_auth(&clients.crt, true)]);
    let lb = Forklb::start(&listener_config(&tls, &be));

    let with_cert = ["--cert", p(&ccrt), "--key", p(&ckey)];
    // Both workers: several connections each.
    for i in 0..6 {
        let out = curl_get(lb.port(), "/x", &with_cert);
        assert_eq!(
            status_of(&out),
            Some(200),
            "request {i} with a client certificate\n{}",
            out.combined()
        );
    }
    let anonymous = curl_get(lb.port(), "/x", &[]);
    assert!(
        status_of(&anonymous).is_none_or(|s| s == 0),
        "a client without a certificate got an answer\n{}",
        anonymous.combined()
    );
    let foreign = curl_get(lb.port(), "/x", &["--cert", p(&rcrt), "--key", p(&rkey)]);
    assert!(
        status_of(&foreign).is_none_or(|s| s == 0),
        "a certificate from another CA was accepted\n{}",
        foreign.combined()
    );
    // openssl s_client sees the server ask for certificates from the CA
    // and the handshake refused without one.
    let ok = s_client(
        lb.port(),
        &["-servername", "a.test", "-cert", p(&ccrt), "-key", p(&ckey)],
    );
    assert!(
        ok.connected() && ok.output.contains("HTTP/1.1 200 OK"),
        "{}",
        ok.output
    );
    assert!(
        ok.output.contains("Acceptable client certificate CA names")
            && ok.output.contains("CN = clients CA"),
        "the CertificateRequest does not name the clients CA\n{}",
        ok.output
    );
    for v in ["-tls1_2", "-tls1_3"] {
        let no = s_client(lb.port(), &["-servername", "a.test", v]);
        assert!(
            !no.output.contains("HTTP/1.1 200 OK"),
            "{v}: answered without a client certificate\n{}",
            no.output
        );
        assert!(
            no.output.contains("alert certificate required")
                || no.output.contains("alert handshake failure"),
            "{v}: no certificate_required / handshake_failure alert\n{}",
            no.output
        );
    }
    assert_eq!(
        be.request_count(),
        6,
        "only the 6 authenticated requests reached the backend"
    );
}

#[test]
fn optional_client_certificates_let_anonymous_clients_in_but_are_verified_when_offered() {
    let dir = TempDir::new("tlspol-mtls-opt");
    let pki = Pki::new(dir.path(), "srv");
    let clients = Pki::new(dir.path(), "clients");
    let rogue = Pki::new(dir.path(), "rogue");
    let (crt, key) = pki.server("a", "1001");
    let (ccrt, ckey) = clients.client("alice", "/O=Org/CN=alice", "2001");
    let (rcrt, rkey) = rogue.client("mallory", "/O=Org/CN=mallory", "3001");
    let be = Backend::start("b1");
    let tls = tls_line(&[(&crt, &key, None)], &[client_auth(&clients.crt, false)]);
    let lb = Forklb::start(&listener_config(&tls, &be));
    for i in 0..4 {
        let anonymous = curl_get(lb.port(), "/x", &[]);
        assert_eq!(
            status_of(&anonymous),
            Some(200),
            "anonymous {i}\n{}",
            anonymous.combined()
        );
        let out = curl_get(lb.port(), "/x", &["--cert", p(&ccrt), "--key", p(&ckey)]);
        assert_eq!(
            status_of(&out),
            Some(200),
            "with a certificate {i}\n{}",
            out.combined()
        );
    }
    let foreign = curl_get(lb.port(), "/x", &["--cert", p(&rcrt), "--key", p(&rkey)]);
    assert!(
        status_of(&foreign).is_none_or(|s| s == 0),
        "a certificate from another CA was accepted (required: false still verifies what is offered)\n{}",
        foreign.combined()
    );
}

#[test]
fn config_test_names_a_bad_client_ca_file() {
    let dir = TempDir::new("tlspol-mtls-check");
    let pki = Pki::new(dir.path(), "srv");
    let (crt, key) = pki.server("a", "1001");
    let be = Backend::start("b1");
    let garbage = dir.join("garbage.pem");
    fs::write(&garbage, "not a certificate\n").expect("write");
    for (ca, needle) in [
        (dir.join("missing.pem"), "cannot read certificate file"),
        (garbage.clone(), "no certificate found"),
    ] {
        let tls = tls_line(&[(&crt, &key, None)], &[client_auth(&ca, true)]);
        let out = check(&dir, &listener_config(&tls, &be));
        let text = out.combined();
        assert_ne!(out.code(), Some(0), "{}", text);
        assert!(
            text.contains("listeners[0].tls.client_auth.ca")
                && text.contains(p(&ca))
                && text.contains(needle),
            "the error does not name the field and {}\n{text}",
            ca.display()
        );
    }
}

/// `s_client` to `port` as a.test with `args`, saving its session to
/// `out` and resuming the one in `inp`.
fn s_client_session(port: u16, args: &[&str], inp: Option<&Path>, out: &Path) -> SClient {
    let mut all: Vec<&str> = vec!["-servername", "a.test", "-sess_out", p(out)];
    if let Some(inp) = inp {
        all.extend_from_slice(&["-sess_in", p(inp)]);
    }
    all.extend_from_slice(args);
    s_client(port, &all)
}

#[test]
fn sessions_of_other_listeners_do_not_resume_where_client_certificates_are_checked() {
    // rustls resumes a session without asking for the client certificate
    // again: a ticket from a listener without client_auth must not open on
    // one with it, or a client would skip the certificate.
    let dir = TempDir::new("tlspol-mtls-resume");
    let pki = Pki::new(dir.path(), "srv");
    let clients = Pki::new(dir.path(), "clients");
    let (crt, key) = pki.server("a", "1001");
    let (ccrt, ckey) = clients.client("alice", "/O=Org/CN=alice", "2001");
    let be = Backend::start("b1");
    let (opt_port, req_port) = (free_port(), free_port());
    let plain_tls = tls_line(&[(&crt, &key, None)], &[]);
    let optional = tls_line(&[(&crt, &key, None)], &[client_auth(&clients.crt, false)]);
    let required = tls_line(&[(&crt, &key, None)], &[client_auth(&clients.crt, true)]);
    let yaml = ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .listener("open", &["127.0.0.1:$PORT"])
        .listener_opt(&plain_tls)
        .route(Route::healthz())
        .listener("optional", &[&format!("127.0.0.1:{opt_port}")])
        .listener_opt(&optional)
        .route(Route::healthz())
        .listener("required", &[&format!("127.0.0.1:{req_port}")])
        .listener_opt(&required)
        .route(Route::healthz())
        .upstream("web", [Srv::of(&be)])
        .build();
    let lb = Forklb::start(&yaml);
    let cert = ["-cert", p(&ccrt), "-key", p(&ckey)];
    for v in ["-tls1_2", "-tls1_3"] {
        let (open_sess, opt_sess, scratch) = (
            dir.join("open.sess"),
            dir.join("opt.sess"),
            dir.join("x.sess"),
        );
        let first = s_client_session(lb.port(), &[v], None, &open_sess);
        assert!(
            first.connected(),
            "{v}
{}",
            first.output
        );
        // The ticket works where it was issued (so the test can fail)...
        let again = s_client_session(lb.port(), &[v], Some(&open_sess), &scratch);
        assert!(
            again.reused(),
            "{v}: no resumption on the issuing listener
{}",
            again.output
        );
        // ...and not on the listeners that check client certificates.
        let opt = s_client_session(opt_port, &[v], Some(&open_sess), &scratch);
        assert!(
            opt.connected() && !opt.reused(),
            "{v}: resumed on the client_auth listener
{}",
            opt.output
        );
        let req = s_client_session(req_port, &[v], Some(&open_sess), &scratch);
        assert!(
            !req.reused() && !req.output.contains("HTTP/1.1 200 OK"),
            "{v}: a session without a certificate was resumed where one is required
{}",
            req.output
        );
        // Sessions with a certificate resume on their own listener.
        let with = s_client_session(
            opt_port,
            &[v, cert[0], cert[1], cert[2], cert[3]],
            None,
            &opt_sess,
        );
        assert!(
            with.connected(),
            "{v}
{}",
            with.output
        );
        let resumed = s_client_session(opt_port, &[v], Some(&opt_sess), &scratch);
        assert!(
            resumed.reused(),
            "{v}: no resumption on the client_auth listener
{}",
            resumed.output
        );
    }
}

// ---------------------------------------------------------------------------
// Upstream client certificates

/// nginx serving HTTPS on `port` (HTTP/1.1 and h2), asking for client
/// certificates from `ca` (`ssl_verify_client on`) and answering with the
/// subject it verified. Killed on drop.
struct Nginx {
    _tool: Tool,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    fn start(crt: &Path, key: &Path, ca: &Path) -> Nginx {
        let dir = TempDir::new("tlspol-nginx");
        let port = free_port();
        let d = dir.path().display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {};\n    ssl_certificate_key {};\n\
                 ssl_client_certificate {};\n    ssl_verify_client on;\n\
                 location / {{ return 200 \"dn=$ssl_client_s_dn proto=$server_protocol\\n\"; }}\n  }}\n}}\n",
            p(crt),
            p(key),
            p(ca)
        );
        let path = dir.join("nginx.conf");
        fs::write(&path, conf).expect("write nginx.conf");
        let err = dir.join("startup.log");
        let tool = Tool::spawn("nginx", &["-p", &d, "-e", p(&err), "-c", p(&path)]);
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "nginx did not listen on {port}\n{}\n{}",
            fs::read_to_string(&err).unwrap_or_default(),
            fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        Nginx {
            _tool: tool,
            port,
            dir,
        }
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// forklb (2 workers) on `$PORT`, plain HTTP, proxying to `addr` over TLS
/// with `protocol` and the upstream `tls` keys `tls`.
fn upstream_tls_config(addr: &str, protocol: &str, tls: &str) -> String {
    ConfigBuilder::new()
        .workers(2)
        .log_level("info")
        .shutdown_timeout("5s")
        .listener("plain", &["127.0.0.1:$PORT"])
        .route(Route::to("secure"))
        .upstream("secure", [Srv::addr(addr)])
        .upstream_opt(&format!("protocol: {protocol}"))
        .upstream_opt("retries: 0")
        .upstream_opt("max_fails: 0")
        .upstream_opt(&format!("tls: {{{tls}}}"))
        .build()
}

#[test]
fn upstream_client_certificate_is_presented_to_nginx_over_http1_and_h2() {
    let dir = TempDir::new("tlspol-upstream");
    let pki = Pki::new(dir.path(), "srv");
    let clients = Pki::new(dir.path(), "clients");
    let (crt, key) = pki.server("a", "1001");
    let (ccrt, ckey) = clients.client("proxy", "/O=Edge/CN=forklb", "2001");
    let nginx = Nginx::start(&crt, &key, &clients.crt);
    let addr = format!("127.0.0.1:{}", nginx.port);
    let verify = format!("sni: a.test, ca: {}", yaml_str(p(&pki.crt)));
    let cert = format!(
        ", cert: {}, key: {}",
        yaml_str(p(&ccrt)),
        yaml_str(p(&ckey))
    );
    for (protocol, proto) in [("http1", "HTTP/1.1"), ("h2", "HTTP/2.0")] {
        let lb = Forklb::start(&upstream_tls_config(
            &addr,
            protocol,
            &format!("{verify}{cert}"),
        ));
        for i in 0..6 {
            let r = http_get(lb.port(), &format!("/with/{i}"));
            assert_eq!(
                (r.status, r.body_str()),
                (200, format!("dn=CN=forklb,O=Edge proto={proto}\n")),
                "{protocol} request {i}: nginx did not see forklb's client certificate\n{}\n{}",
                lb.diagnostics(),
                nginx.error_log()
            );
        }
        // Without the certificate nginx completes the handshake and refuses
        // the request itself (400, "No required SSL certificate was sent").
        let lb = Forklb::start(&upstream_tls_config(&addr, protocol, &verify));
        let r = http_get(lb.port(), "/without");
        assert_eq!(
            r.status,
            400,
            "{protocol}: {}\n{}",
            r.body_str(),
            lb.diagnostics()
        );
        assert!(
            r.body_str()
                .contains("No required SSL certificate was sent"),
            "{protocol}: {}",
            r.body_str()
        );
    }
}

#[test]
fn upstream_that_requires_a_certificate_fails_the_handshake_without_one_502() {
    // forklb itself as the upstream: `client_auth: required` refuses the
    // handshake (nginx would answer 400 instead, see above).
    let dir = TempDir::new("tlspol-upstream-502");
    let pki = Pki::new(dir.path(), "srv");
    let clients = Pki::new(dir.path(), "clients");
    let (crt, key) = pki.server("a", "1001");
    let (ccrt, ckey) = clients.client("proxy", "/O=Edge/CN=forklb", "2001");
    let be = Backend::start("origin");
    let tls = tls_line(&[(&crt, &key, None)], &[client_auth(&clients.crt, true)]);
    let inner = Forklb::start(&listener_config(&tls, &be));
    let addr = format!("127.0.0.1:{}", inner.port());
    let verify = format!("sni: a.test, ca: {}", yaml_str(p(&pki.crt)));
    let cert = format!(
        ", cert: {}, key: {}",
        yaml_str(p(&ccrt)),
        yaml_str(p(&ckey))
    );
    for protocol in ["http1", "h2"] {
        let with = Forklb::start(&upstream_tls_config(
            &addr,
            protocol,
            &format!("{verify}{cert}"),
        ));
        let without = Forklb::start(&upstream_tls_config(&addr, protocol, &verify));
        for i in 0..4 {
            let r = http_get(with.port(), &format!("/ok/{i}"));
            assert_eq!(
                r.status,
                200,
                "{protocol} {i} with the certificate\n{}",
                with.diagnostics()
            );
            let r = http_get(without.port(), &format!("/no/{i}"));
            assert_eq!(
                r.status,
                502,
                "{protocol} {i} without a certificate\n{}",
                without.diagnostics()
            );
        }
        // TLS 1.3 delivers the refusal as an alert after our side of the
        // handshake is done (on the first read): the line says it, as the
        // TLS 1.2 handshake line does (nginx: "SSL alert number 116").
        let lines = without.log_lines(&format!("upstream {addr} (server secure/{addr})"));
        assert!(
            !lines.is_empty()
                && lines
                    .iter()
                    .all(|l| l.contains("received fatal alert: CertificateRequired")),
            "{protocol}: {lines:#?}\n{}",
            without.diagnostics()
        );
    }
}

// ---------------------------------------------------------------------------
// OCSP stapling

/// A `-status` s_client's view of the stapled response: its Next Update
/// line, or `None` when none was stapled.
fn stapled_next_update(c: &SClient) -> Option<String> {
    if c.output.contains("OCSP response: no response sent") {
        return None;
    }
    c.output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Next Update: ").map(str::to_owned))
}

/// The Next Update of the response in `der`, as openssl prints it.
fn next_update_of(der: &Path) -> String {
    let out = run_tool(
        "openssl",
        &["ocsp", "-respin", p(der), "-resp_text", "-noverify"],
        Duration::from_secs(15),
    );
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Next Update: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no Next Update in\n{}", out.combined()))
}

#[test]
fn ocsp_response_is_stapled_and_reread_on_hup() {
    let dir = TempDir::new("tlspol-ocsp");
    let pki = Pki::new(dir.path(), "srv");
    let (crt, key) = pki.server("a", "1001");
    let (bcrt, bkey) = pki.issue("b", "/CN=b.test", "1002", "subjectAltName=DNS:b.test");
    let resp = dir.join("a.ocsp");
    pki.ocsp(&crt, "1001", false, 1, &resp);
    let first = next_update_of(&resp);
    let be = Backend::start("b1");
    let tls = tls_line(&[(&crt, &key, Some(&resp)), (&bcrt, &bkey, None)], &[]);
    let lb = Forklb::start(&listener_config(&tls, &be));
    for v in ["-tls1_2", "-tls1_3"] {
        for _ in 0..2 {
            let c = s_client(lb.port(), &["-servername", "a.test", "-status", v]);
            assert!(c.connected(), "{}", c.output);
            assert!(
                c.output.contains("OCSP Response Status: successful (0x0)")
                    && c.output.contains("Cert Status: good")
                    && c.output.contains("Serial Number: 1001"),
                "{v}: no good OCSP response for serial 1001 stapled\n{}",
                c.output
            );
            assert_eq!(stapled_next_update(&c), Some(first.clone()), "{v}");
        }
        // The certificate without `ocsp` staples nothing.
        let c = s_client(lb.port(), &["-servername", "b.test", "-status", v]);
        assert!(c.connected(), "{}", c.output);
        assert_eq!(stapled_next_update(&c), None, "{v}: b.test\n{}", c.output);
    }

    // A newer response in the file: stapled after HUP.
    let newer = dir.join("a2.ocsp");
    pki.ocsp(&crt, "1001", false, 3, &newer);
    let second = next_update_of(&newer);
    assert_ne!(first, second);
    fs::rename(&newer, &resp).expect("replace the response");
    lb.signal(SIGHUP);
    let mut last = None;
    let reread = wait_until(Duration::from_secs(15), || {
        last = stapled_next_update(&s_client(lb.port(), &["-servername", "a.test", "-status"]));
        last.as_deref() == Some(second.as_str())
    });
    assert!(
        reread,
        "after HUP the staple is {last:?}, not {second:?}\n{}",
        lb.diagnostics()
    );

    // A response for another certificate: the reload fails, the last good
    // response stays stapled.
    let other = dir.join("other.ocsp");
    pki.ocsp(&bcrt, "1002", false, 5, &other);
    fs::rename(&other, &resp).expect("replace the response");
    lb.signal(SIGHUP);
    assert!(
        lb.wait_log("reload failed", Duration::from_secs(10)),
        "no failed reload with a foreign OCSP response\n{}",
        lb.diagnostics()
    );
    assert!(
        lb.error_log_contents()
            .contains("is not for this certificate"),
        "{}",
        lb.diagnostics()
    );
    for _ in 0..3 {
        let c = s_client(lb.port(), &["-servername", "a.test", "-status"]);
        assert_eq!(
            stapled_next_update(&c),
            Some(second.clone()),
            "{}",
            c.output
        );
    }
}

/// Replaces the nextUpdate of the (single) response in `der` with a time
/// in 2020. The signature then no longer covers it, which does not matter
/// here: forklb checks the dates, not the responder's signature, and
/// openssl cannot make a response whose nextUpdate is already past.
fn backdate(der: &Path, out: &Path) {
    let mut bytes = fs::read(der).expect("read response");
    // [0] { GeneralizedTime(15) }: a0 11 18 0f, after thisUpdate's.
    let pat = [0xa0, 0x11, 0x18, 0x0f];
    let at = bytes
        .windows(4)
        .position(|w| w == pat)
        .expect("a nextUpdate in the response");
    bytes[at + 4..at + 19].copy_from_slice(b"20200101000000Z");
    fs::write(out, bytes).expect("write response");
}

#[test]
fn config_test_refuses_ocsp_responses_that_do_not_fit_the_certificate() {
    let dir = TempDir::new("tlspol-ocsp-check");
    let pki = Pki::new(dir.path(), "srv");
    let other_ca = Pki::new(dir.path(), "other");
    let (crt, key) = pki.server("a", "1001");
    let (bcrt, _) = pki.server("b", "1002");
    // Same serial number, another issuer.
    let (ocrt, _) = other_ca.server("o", "1001");
    let be = Backend::start("b1");

    let good = dir.join("good.ocsp");
    pki.ocsp(&crt, "1001", false, 1, &good);
    let tls = tls_line(&[(&crt, &key, Some(&good))], &[]);
    let out = check(&dir, &listener_config(&tls, &be));
    assert_eq!(
        out.code(),
        Some(0),
        "a good response refused\n{}",
        out.combined()
    );

    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "another serial",
            dir.join("serial.ocsp"),
            "is not for this certificate",
        ),
        (
            "another issuer",
            dir.join("issuer.ocsp"),
            "is not for this certificate",
        ),
        (
            "expired",
            dir.join("expired.ocsp"),
            "has expired (nextUpdate 2020-01-01",
        ),
        (
            "revoked",
            dir.join("revoked.ocsp"),
            "says the certificate is revoked",
        ),
        (
            "not DER",
            dir.join("garbage.ocsp"),
            "is not a DER OCSPResponse",
        ),
        (
            "tryLater",
            dir.join("trylater.ocsp"),
            "responseStatus 3 (tryLater)",
        ),
        (
            "missing",
            dir.join("missing.ocsp"),
            "cannot read OCSP response file",
        ),
    ];
    pki.ocsp(&bcrt, "1002", false, 1, &cases[0].1);
    other_ca.ocsp(&ocrt, "1001", false, 1, &cases[1].1);
    backdate(&good, &cases[2].1);
    pki.ocsp(&crt, "1001", true, 1, &cases[3].1);
    fs::write(&cases[4].1, pki.crt.display().to_string()).expect("write");
    // OCSPResponse { responseStatus tryLater }, as a responder sends it.
    fs::write(&cases[5].1, [0x30, 0x03, 0x0a, 0x01, 0x03]).expect("write");
    for (what, file, needle) in &cases {
        let tls = tls_line(&[(&crt, &key, Some(file))], &[]);
        let out = check(&dir, &listener_config(&tls, &be));
        let text = out.combined();
        assert_ne!(out.code(), Some(0), "{what}: accepted\n{text}");
        assert!(
            text.contains("listeners[0].tls.certificates[0].ocsp")
                && text.contains(p(file))
                && text.contains(needle),
            "{what}: the error does not name the field, {} and {needle:?}\n{text}",
            file.display()
        );
    }
}

#[test]
fn ssl_client_s_dn_goes_upstream_in_a_header_rule() {
    let dir = TempDir::new("tlspol-dn");
    let pki = Pki::new(dir.path(), "srv");
    let clients = Pki::new(dir.path(), "clients");
    let (crt, key) = pki.server("a", "1001");
    let (ccrt, ckey) = clients.client("alice", "/O=Org/CN=alice", "2001");
    let be = Backend::start("b1");
    let tls = tls_line(&[(&crt, &key, None)], &[client_auth(&clients.crt, false)]);
    let lb = Forklb::start(
        &ConfigBuilder::new()
            .workers(2)
            .listener("secure", &["127.0.0.1:$PORT"])
            .listener_opt(&tls)
            .route(Route::to("web").field(
                "request_headers",
                "{set: {X-Client-DN: \"$ssl_client_s_dn\", X-Scheme: \"$scheme\"}}",
            ))
            .upstream("web", [Srv::of(&be)])
            .build(),
    );
    let with_cert = ["--cert", p(&ccrt), "--key", p(&ckey)];
    for (proto, flag) in [("HTTP/1.1", "--http1.1"), ("HTTP/2", "--http2")] {
        let out = curl_get(lb.port(), "/dn", &[&with_cert[..], &[flag]].concat());
        assert_eq!(status_of(&out), Some(200), "{proto}\n{}", out.combined());
        let reqs = be.requests();
        let got = reqs.last().expect("a request upstream");
        assert_eq!(got.header("x-scheme"), Some("https"), "{proto}");
        let dn = got.header("x-client-dn").unwrap_or("");
        assert!(
            dn.contains("CN=alice") && dn.contains("O=Org"),
            "{proto}: X-Client-DN {dn:?}"
        );
    }
    // Without a certificate (allowed here) the variable is empty, and an
    // empty value adds no field, as nginx leaves it out; the `set` still
    // removes the client's own (a forged identity never goes upstream).
    let out = curl_get(lb.port(), "/anon", &["-H", "X-Client-DN: CN=admin"]);
    assert_eq!(status_of(&out), Some(200), "{}", out.combined());
    let reqs = be.requests();
    let got = reqs.last().expect("a request upstream");
    assert_eq!(got.header("x-client-dn"), None, "{:?}", got.headers);
}
