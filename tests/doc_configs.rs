//! The configurations the documentation shows are ones forklb accepts (issue 13):
//! every ```` ```yaml ```` block of README.md and docs/configuration.md is checked with
//! `forklb -t`, as written, and so are the configurations shipped in conf/.
//!
//! A block is a whole configuration unless an HTML comment on the line right before
//! its fence (invisible once rendered) says otherwise:
//!
//! * `<!-- config-check: fragment -->` — part of a configuration: it is merged into the
//!   first whole block of the same file (mappings key by key, lists appended) and the
//!   result is checked. Use it for a section shown on its own (a TLS listener, an upstream).
//! * `<!-- config-check: invalid TEXT -->` — an example of a mistake: `forklb -t` must
//!   refuse it (exit 1) with an error containing TEXT.
//! * `<!-- config-check: skip REASON -->` — not checked; the reason is required.
//!
//! Files the block names with relative paths are made before the check: a self-signed
//! certificate and its key for each `listeners[].tls.certificates[]` entry and each
//! upstream's `tls.cert`/`tls.key`, a CA certificate for each `upstreams.*.tls.ca` and
//! `listeners[].tls.client_auth.ca` (no `ocsp` files: examples leave them out). Absolute paths must exist, so examples
//! use relative ones. Host names in server addresses must resolve everywhere the tests
//! run: use `localhost` or IP addresses.

mod support;

use serde_norway::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::tls::{TestCa, TestCert};
use support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(10);
const MARKER: &str = "<!-- config-check:";

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Whole,
    Fragment,
    Invalid(String),
    Skip,
}

#[derive(Debug)]
struct Block {
    /// `FILE:LINE` of the opening fence, for messages.
    at: String,
    kind: Kind,
    yaml: String,
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Parses a `<!-- config-check: ... -->` line.
fn parse_marker(at: &str, line: &str) -> Kind {
    let body = line
        .trim()
        .strip_prefix(MARKER)
        .and_then(|s| s.strip_suffix("-->"))
        .unwrap_or_else(|| panic!("{at}: malformed marker {line:?}"))
        .trim();
    let (word, rest) = body.split_once(' ').unwrap_or((body, ""));
    let rest = rest.trim();
    match word {
        "fragment" if rest.is_empty() => Kind::Fragment,
        "invalid" if !rest.is_empty() => Kind::Invalid(rest.to_owned()),
        "skip" if !rest.is_empty() => Kind::Skip,
        _ => panic!(
            "{at}: unknown marker {line:?} (use `fragment`, `invalid TEXT` or `skip REASON`)"
        ),
    }
}

/// The ```yaml blocks of a Markdown file, with their markers. Fences may be indented
/// (inside a list item); the indentation is removed from the block's lines.
fn yaml_blocks(rel: &str) -> Vec<Block> {
    let text = fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let indent = line.len() - trimmed.len();
        let start = i;
        let mut body = String::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let l = lines[i];
            let cut = l.len() - l.trim_start().len();
            body.push_str(&l[cut.min(indent)..]);
            body.push('\n');
            i += 1;
        }
        assert!(i < lines.len(), "{rel}:{}: unclosed code fence", start + 1);
        i += 1;
        if !matches!(info.trim(), "yaml" | "yml") {
            continue;
        }
        let at = format!("{rel}:{}", start + 1);
        let kind = match start.checked_sub(1).map(|p| lines[p].trim()) {
            Some(prev) if prev.starts_with(MARKER) => parse_marker(&at, prev),
            _ => Kind::Whole,
        };
        blocks.push(Block {
            at,
            kind,
            yaml: body,
        });
    }
    blocks
}

/// Merges `extra` into `base`: mappings key by key, sequences appended, anything else
/// replaced.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Mapping(b), Value::Mapping(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(e)) => b.extend(e),
        (b, e) => *b = e,
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

/// Makes the certificate, key and CA files the configuration names (see the module
/// documentation). Errors name what is missing.
/// `yaml` with its logs in a folder of `dir` in place of /var/log/forklb,
/// which `make install` makes (the Makefile) and this machine may lack:
/// `-t` checks that the folders of the log files exist.
fn with_test_log_folder(yaml: &str, dir: &Path) -> String {
    let logs = dir.join("var-log-forklb");
    fs::create_dir_all(&logs).expect("log folder");
    yaml.replace("/var/log/forklb/", &format!("{}/", logs.display()))
}

fn make_files(at: &str, config: &Value, dir: &Path) -> Result<(), String> {
    let place = |p: &str| -> Result<Option<PathBuf>, String> {
        let path = Path::new(p);
        if path.is_absolute() {
            return if path.exists() {
                Ok(None)
            } else {
                Err(format!(
                    "{at}: {p} does not exist; examples should name files with relative paths \
                     (they are generated for the check)"
                ))
            };
        }
        let full = dir.join(path);
        fs::create_dir_all(full.parent().unwrap()).map_err(|e| e.to_string())?;
        Ok(Some(full))
    };
    // The folders of relative log files (`logs/access.log`): forklb opens
    // the files, `-t` checks their folders exist.
    let access = get(config, "access_log").and_then(|a| get(a, "path"));
    for log in [get(config, "error_log"), access]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|p| *p != "stderr" && !Path::new(p).is_absolute())
    {
        if let Some(folder) = dir.join(log).parent() {
            fs::create_dir_all(folder).map_err(|e| e.to_string())?;
        }
    }
    let listeners = get(config, "listeners").and_then(Value::as_sequence);
    for l in listeners.into_iter().flatten() {
        let certs = get(l, "tls")
            .and_then(|t| get(t, "certificates"))
            .and_then(Value::as_sequence);
        for ck in certs.into_iter().flatten() {
            let cert = get(ck, "cert").and_then(Value::as_str);
            let key = get(ck, "key").and_then(Value::as_str);
            if let (Some(cert), Some(key)) = (cert, key) {
                if let (Some(c), Some(k)) = (place(cert)?, place(key)?) {
                    TestCert::self_signed(&["localhost", "example.com"]).write_to(&c, &k);
                }
            }
        }
        let client_ca = get(l, "tls")
            .and_then(|t| get(t, "client_auth"))
            .and_then(|a| get(a, "ca"))
            .and_then(Value::as_str);
        if let Some(ca) = client_ca {
            if let Some(path) = place(ca)? {
                TestCa::new("documentation clients CA").write(&path);
            }
        }
    }
    let upstreams = get(config, "upstreams").and_then(Value::as_mapping);
    for (_, up) in upstreams.into_iter().flatten() {
        let ca = get(up, "tls")
            .and_then(|t| get(t, "ca"))
            .and_then(Value::as_str);
        if let Some(ca) = ca {
            if let Some(path) = place(ca)? {
                TestCa::new("documentation example CA").write(&path);
            }
        }
        let tls = get(up, "tls");
        let cert = tls.and_then(|t| get(t, "cert")).and_then(Value::as_str);
        let key = tls.and_then(|t| get(t, "key")).and_then(Value::as_str);
        if let (Some(cert), Some(key)) = (cert, key) {
            if let (Some(c), Some(k)) = (place(cert)?, place(key)?) {
                TestCert::self_signed(&["client.example.com"]).write_to(&c, &k);
            }
        }
    }
    Ok(())
}

/// Runs `forklb -t` on `yaml` written as forklb.yaml in a fresh folder; `None` when it
/// does what `kind` expects, else what went wrong.
fn check_one(at: &str, kind: &Kind, yaml: &str) -> Option<String> {
    let config: Value = match serde_norway::from_str(yaml) {
        Ok(v) => v,
        // A YAML mistake is a fine example of an error too: forklb reports it.
        Err(_) if matches!(kind, Kind::Invalid(_)) => Value::Null,
        Err(e) => return Some(format!("{at}: not YAML: {e}\n{yaml}")),
    };
    let dir = TempDir::new("doc");
    if let Err(e) = make_files(at, &config, dir.path()) {
        return Some(e);
    }
    let path = dir.join("forklb.yaml");
    fs::write(&path, with_test_log_folder(yaml, dir.path())).expect("write config");
    let out = run_forklb(&["-t", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    let all = out.combined();
    match kind {
        Kind::Invalid(text) => {
            if out.code() != Some(1) || !all.contains(text.as_str()) {
                return Some(format!(
                    "{at}: expected `forklb -t` to fail with {text:?}, got exit {:?}:\n{all}\n{yaml}",
                    out.code()
                ));
            }
        }
        _ => {
            if out.code() != Some(0) || !all.contains("test is successful") {
                return Some(format!(
                    "{at}: `forklb -t` refused the example (exit {:?}):\n{all}\n{yaml}",
                    out.code()
                ));
            }
        }
    }
    None
}

/// Checks every yaml block of `rel`; panics listing every failure.
fn check_file(rel: &str) -> Vec<Block> {
    let blocks = yaml_blocks(rel);
    let base = blocks.iter().find(|b| b.kind == Kind::Whole);
    let mut failures = Vec::new();
    for b in &blocks {
        let failure = match &b.kind {
            Kind::Skip => None,
            Kind::Whole | Kind::Invalid(_) => check_one(&b.at, &b.kind, &b.yaml),
            Kind::Fragment => {
                let Some(base) = base else {
                    failures.push(format!(
                        "{}: a fragment, but {rel} has no whole example to merge it into",
                        b.at
                    ));
                    continue;
                };
                let mut merged: Value = serde_norway::from_str(&base.yaml).expect("base parses");
                match serde_norway::from_str::<Value>(&b.yaml) {
                    Ok(extra) => {
                        merge(&mut merged, extra);
                        let yaml = serde_norway::to_string(&merged).expect("serialize");
                        let at = format!("{} (merged into {})", b.at, base.at);
                        check_one(&at, &b.kind, &yaml)
                    }
                    Err(e) => Some(format!("{}: not YAML: {e}\n{}", b.at, b.yaml)),
                }
            }
        };
        failures.extend(failure);
    }
    assert!(
        failures.is_empty(),
        "{} of the configuration examples in {rel} fail:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    blocks
}

#[test]
fn markdown_yaml_blocks_are_found_with_their_markers() {
    let dir = TempDir::new("md");
    let md = "# t\n\n```yaml\na: 1\n```\n\n<!-- config-check: fragment -->\n```yaml\nb: [x]\n```\n\
              - item:\n\n  <!-- config-check: invalid unknown field -->\n  ```yaml\n  c: 2\n    d: 3\n  ```\n\
              ```sh\n```yaml inside a shell block is not a fence\n```\n\
              <!-- config-check: skip needs a real certificate -->\n```yml\ne: 1\n```\n";
    fs::write(dir.join("t.md"), md).unwrap();
    let blocks = yaml_blocks(dir.join("t.md").to_str().unwrap());
    let got: Vec<(&Kind, &str)> = blocks.iter().map(|b| (&b.kind, b.yaml.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (&Kind::Whole, "a: 1\n"),
            (&Kind::Fragment, "b: [x]\n"),
            (&Kind::Invalid("unknown field".into()), "c: 2\n  d: 3\n"),
            (&Kind::Skip, "e: 1\n"),
        ]
    );
    assert!(blocks[1].at.ends_with(":8"), "{}", blocks[1].at);

    let mut base: Value = serde_norway::from_str("l: [1]\nm: {a: 1, b: 2}\ns: x\n").unwrap();
    merge(
        &mut base,
        serde_norway::from_str("l: [2]\nm: {b: 3, c: 4}\ns: y\nn: z\n").unwrap(),
    );
    let want: Value =
        serde_norway::from_str("l: [1, 2]\nm: {a: 1, b: 3, c: 4}\ns: y\nn: z\n").unwrap();
    assert_eq!(base, want);
}

#[test]
fn readme_configuration_examples_pass_forklb_t() {
    let blocks = check_file("README.md");
    assert!(
        blocks.iter().any(|b| b.kind == Kind::Whole),
        "README.md should show at least one whole configuration: {blocks:?}"
    );
}
/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces → `-`.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of a Markdown file (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(anchor_of(line.trim_start_matches('#')));
        }
    }
    out
}

/// The documentation names no file outside the repository (README.md used to point at
/// `../shared/DESIGN.md`), and its relative links — file and `#anchor` — resolve.
#[test]
fn documentation_links_stay_inside_the_repository() {
    for rel in ["README.md", "docs/configuration.md"] {
        let text = fs::read_to_string(repo_file(rel)).unwrap();
        assert!(
            !text.contains("../shared"),
            "{rel} points at ../shared, which is not part of the repository"
        );
        let dir = repo_file(rel).parent().unwrap().to_path_buf();
        for (i, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(p) = rest.find("](") {
                rest = &rest[p + 2..];
                let Some(end) = rest.find(')') else { break };
                let link = &rest[..end];
                rest = &rest[end..];
                if link.contains("://") || link.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
                let target = if file.is_empty() {
                    repo_file(rel)
                } else {
                    dir.join(file)
                };
                assert!(
                    target.exists(),
                    "{rel}:{}: link to {link}: {} does not exist",
                    i + 1,
                    target.display()
                );
                if !anchor.is_empty() {
                    let text = fs::read_to_string(&target).unwrap();
                    assert!(
                        anchors(&text).iter().any(|a| a == anchor),
                        "{rel}:{}: link to {link}: no heading with anchor #{anchor}",
                        i + 1
                    );
                }
            }
        }
    }
    assert_eq!(
        anchor_of(" Runtime API (HAProxy-compatible)"),
        "runtime-api-haproxy-compatible"
    );
    assert_eq!(
        anchor_of(" `tls` (HTTPS to the servers)"),
        "tls-https-to-the-servers"
    );
}

#[test]
fn configuration_reference_examples_pass_forklb_t() {
    let blocks = check_file("docs/configuration.md");
    assert!(
        blocks.iter().any(|b| matches!(b.kind, Kind::Invalid(_))),
        "docs/configuration.md should show how errors look: {blocks:?}"
    );
}

/// Collects the keys of `v` (not the names under `upstreams`, which are the user's).
fn schema_keys(v: &Value, under_upstreams: bool, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let k = k.as_str().unwrap_or_default();
                if !under_upstreams {
                    out.push(k.to_owned());
                }
                schema_keys(child, !under_upstreams && k == "upstreams", out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| schema_keys(c, false, out)),
        _ => {}
    }
}

/// Every key forklb prints with `-T` (which fills in every default) is documented in
/// docs/configuration.md, so a new key cannot land undocumented.
#[test]
fn configuration_reference_documents_every_key() {
    let dir = TempDir::new("keys");
    let (cert, key) = TestCert::self_signed(&["localhost"]).write(dir.path(), "a");
    let yaml = format!(
        "admin: {{socket: a.sock}}\nstate_file: s.state\naccess_log: {{path: a.log}}\n\
         listeners:\n  - name: web\n    bind: [\"127.0.0.1:8443\"]\n\
         \x20   tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}\n\
         \x20   routes:\n\
         \x20     - {{host: a.example, path: /a/, upstream: web}}\n\
         \x20     - {{return: {{status: 200}}}}\n\
         \x20     - {{redirect: {{to: /b}}}}\n\
         \x20     - {{metrics: prometheus}}\n\
         upstreams:\n  web:\n    balance: hash\n    hash_key: uri\n    tls: {{sni: a.example}}\n\
         \x20   health: {{type: http}}\n    servers: [{{addr: \"127.0.0.1:9001\"}}]\n",
        cert.display(),
        key.display()
    );
    let path = dir.join("forklb.yaml");
    fs::write(&path, &yaml).unwrap();
    let out = run_forklb(&["-T", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{}\n{yaml}", out.combined());
    let effective: Value = serde_norway::from_str(&out.stdout).expect("-T prints YAML");
    let mut keys = Vec::new();
    schema_keys(&effective, false, &mut keys);
    assert!(keys.len() > 50, "too few keys in:\n{}", out.stdout);
    let doc = fs::read_to_string(repo_file("docs/configuration.md")).unwrap();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {missing:?}"
    );
}

/// The demo configuration passes `forklb -t` in place.
#[test]
fn demo_configuration_passes_forklb_t() {
    let path = repo_file("conf/forklb.yaml");
    let out = run_forklb(&["-t", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{}", out.combined());
}

/// The production configuration passes `forklb -t` — with `user: nobody` where its user
/// does not exist here — and has what a production install needs: a user to drop to, logs
/// under /var/log/forklb (which the shipped logrotate file rotates, signalling the pid file
/// it names), the admin socket and pid file under /run/forklb (systemd's RuntimeDirectory).
#[test]
fn production_configuration_passes_forklb_t() {
    let text = fs::read_to_string(repo_file("conf/production.yaml")).unwrap();
    let config: Value = serde_norway::from_str(&text).unwrap();
    let str_at = |path: &[&str]| -> String {
        let mut v = &config;
        for k in path {
            v = get(v, k).unwrap_or_else(|| panic!("conf/production.yaml has no {path:?}"));
        }
        v.as_str().unwrap_or_default().to_owned()
    };
    let user = str_at(&["user"]);
    assert!(!user.is_empty(), "conf/production.yaml must set user:");
    assert_eq!(str_at(&["pid_file"]), "/run/forklb/forklb.pid");
    assert!(str_at(&["admin", "socket"]).starts_with("/run/forklb/"));
    let logrotate = fs::read_to_string(repo_file("packaging/logrotate/forklb")).unwrap();
    for log in [str_at(&["access_log", "path"]), str_at(&["error_log"])] {
        assert!(
            log.starts_with("/var/log/forklb/") && log.ends_with(".log"),
            "{log} is not rotated by packaging/logrotate/forklb (/var/log/forklb/*.log)"
        );
    }
    assert!(logrotate.contains("/var/log/forklb/*.log"));
    assert!(logrotate.contains(&str_at(&["pid_file"])));

    let user_line = format!("\nuser: {user} ");
    assert!(
        text.contains(&user_line),
        "expected {user_line:?} in the file"
    );
    let checked = match nix::unistd::User::from_name(&user) {
        Ok(Some(_)) => text.clone(),
        _ => text.replacen(&user_line, "\nuser: nobody ", 1),
    };
    let dir = TempDir::new("production");
    let path = dir.join("forklb.yaml");
    fs::write(&path, with_test_log_folder(&checked, dir.path())).unwrap();
    let out = run_forklb(&["-t", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{}\n{checked}", out.combined());
}
