//! Walking skeleton, command line: `-t`, `-T`, `-V` (DESIGN §2) and the
//! configuration errors they report (DESIGN §4).

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;
use support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `yaml` as forklb.yaml in `dir` and returns its path.
fn write_config(dir: &TempDir, yaml: &str) -> PathBuf {
    let path = dir.join("forklb.yaml");
    fs::write(&path, yaml).expect("write config");
    path
}

/// A valid configuration; line numbers matter to the line:column test.
fn good_yaml(dir: &TempDir) -> String {
    format!(
        "workers: 1\n\
         pid_file: \"{}\"\n\
         error_log: \"{}\"\n\
         listeners:\n\
         \x20 - name: web\n\
         \x20   bind: [\"127.0.0.1:{}\"]\n\
         \x20   routes:\n\
         \x20     - path: /healthz\n\
         \x20       return: {{status: 200, body: \"ok\\n\"}}\n\
         \x20     - upstream: web\n\
         upstreams:\n\
         \x20 web:\n\
         \x20   servers:\n\
         \x20     - {{name: b1, addr: \"127.0.0.1:9\", weight: 1}}\n",
        dir.join("forklb.pid").display(),
        dir.join("error.log").display(),
        free_port()
    )
}

fn check(yaml: &str) -> (RunOutput, PathBuf, TempDir) {
    let dir = TempDir::new("check");
    let path = write_config(&dir, yaml);
    let out = run_forklb(&["-t", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    (out, path, dir)
}

/// Runs `-t` on `good_yaml` edited by `edit` and expects failure with a message
/// that names the file and contains every string of `needles`.
fn expect_invalid(edit: impl Fn(String) -> String, needles: &[&str]) -> String {
    let dir = TempDir::new("bad");
    let yaml = edit(good_yaml(&dir));
    let path = write_config(&dir, &yaml);
    let out = run_forklb(&["-t", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    let all = out.combined();
    assert_eq!(out.code(), Some(1), "config:\n{yaml}\noutput:\n{all}");
    assert!(
        all.contains("forklb.yaml"),
        "the error must name the file:\n{all}"
    );
    for n in needles {
        assert!(
            all.contains(n),
            "expected {n:?} in:\n{all}\nconfig:\n{yaml}"
        );
    }
    assert!(
        !all.contains("test is successful"),
        "failure reported as success:\n{all}"
    );
    all
}

/// Whether `text` contains `:LINE:COL` for this line and some column.
fn has_line_col(text: &str, line: usize) -> bool {
    let pat = format!(":{line}:");
    text.match_indices(&pat).any(|(i, _)| {
        text[i + pat.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn test_flag_accepts_good_config() {
    let dir = TempDir::new("good");
    let (out, path, _d) = check(&good_yaml(&dir));
    let all = out.combined();
    assert_eq!(out.code(), Some(0), "output:\n{all}");
    assert!(all.contains("test is successful"), "output:\n{all}");
    assert!(
        all.contains(path.to_str().unwrap()),
        "message should name the file:\n{all}"
    );
    // -t must not start serving nor leave a pid file behind.
    assert!(!dir.join("forklb.pid").exists());
}

#[test]
fn long_test_flag_and_conf_flag() {
    let dir = TempDir::new("long");
    let path = write_config(&dir, &good_yaml(&dir));
    let out = run_forklb(&["--test", "--conf", path.to_str().unwrap()], RUN_TIMEOUT);
    assert_eq!(out.code(), Some(0), "output:\n{}", out.combined());
    assert!(out.combined().contains("test is successful"));
}

#[test]
fn unknown_upstream_names_the_route_field() {
    expect_invalid(
        |y| y.replace("      - upstream: web\n", "      - upstream: nope\n"),
        &["listeners[0].routes[1].upstream"],
    );
    // And as the first route.
    expect_invalid(
        |y| {
            y.replace(
                "      - path: /healthz\n        return: {status: 200, body: \"ok\\n\"}\n",
                "",
            )
            .replace("      - upstream: web\n", "      - upstream: nope\n")
        },
        &["listeners[0].routes[0].upstream"],
    );
}

#[test]
fn weight_out_of_range_is_rejected() {
    expect_invalid(|y| y.replace("weight: 1}", "weight: 300}"), &["weight"]);
}

#[test]
fn unknown_key_reports_line_and_column() {
    // Nested: line 7 (after "bind" on line 6).
    let all = expect_invalid(
        |y| y.replace("    routes:\n", "    bogus_key: 1\n    routes:\n"),
        &["bogus_key"],
    );
    assert!(has_line_col(&all, 7), "expected :7:COL in:\n{all}");
    // Top level: line 2.
    let all = expect_invalid(
        |y| y.replacen("\n", "\nfrobnicate: yes\n", 1),
        &["frobnicate"],
    );
    assert!(has_line_col(&all, 2), "expected :2:COL in:\n{all}");
}

#[test]
fn yaml_syntax_error_reports_line_and_column() {
    // Line 5 gets an unterminated flow sequence.
    let all = expect_invalid(|y| y.replace("  - name: web\n", "  - name: [web\n"), &[]);
    assert!(
        (4..=14).any(|l| has_line_col(&all, l)),
        "expected :LINE:COL in:\n{all}"
    );
}

#[test]
fn missing_bind_is_rejected() {
    expect_invalid(
        |y| {
            let start = y.find("    bind:").unwrap();
            let end = start + y[start..].find('\n').unwrap() + 1;
            format!("{}{}", &y[..start], &y[end..])
        },
        &["listeners[0].bind"],
    );
}

#[test]
fn dump_flag_prints_effective_config_with_defaults() {
    let dir = TempDir::new("dump");
    let path = write_config(&dir, &good_yaml(&dir));
    let out = run_forklb(&["-T", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    let all = out.combined();
    assert_eq!(out.code(), Some(0), "output:\n{all}");
    assert!(all.contains("test is successful"), "output:\n{all}");
    assert!(
        out.stdout.contains("keepalive: 75s") || out.stdout.contains("client_header: 10s"),
        "defaults missing from -T output:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("shutdown_timeout: 30s"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("max_header_bytes: 16k"),
        "{}",
        out.stdout
    );
}

#[test]
fn version_flag() {
    for flag in ["-V", "-v", "--version"] {
        let out = run_forklb(&[flag], RUN_TIMEOUT);
        let all = out.combined();
        assert_eq!(out.code(), Some(0), "{flag}: {all}");
        assert!(
            all.contains(env!("CARGO_PKG_VERSION")),
            "{flag} should print the version:\n{all}"
        );
    }
}

#[test]
fn missing_config_file_is_an_error() {
    let dir = TempDir::new("missing");
    let path = dir.join("does-not-exist.yaml");
    let out = run_forklb(&["-t", "-c", path.to_str().unwrap()], RUN_TIMEOUT);
    assert_eq!(out.code(), Some(1), "output:\n{}", out.combined());
    assert!(out.combined().contains("does-not-exist.yaml"));
}

#[test]
fn unknown_option_is_a_usage_error() {
    let out = run_forklb(&["--no-such-option"], RUN_TIMEOUT);
    assert_eq!(out.code(), Some(1), "output:\n{}", out.combined());
}

/// `-t` on `yaml` must fail within `bound`, naming the file with a
/// line:column and saying the nesting is too deep.
fn expect_too_deep(what: &str, yaml: &str, bound: Duration) {
    let started = std::time::Instant::now();
    let (out, path, _d) = check(yaml);
    let took = started.elapsed();
    let all = out.combined();
    let head: String = all.chars().take(600).collect();
    assert_eq!(out.code(), Some(1), "{what}: {head}");
    assert!(
        all.contains(&format!("{}:", path.display())) && all.contains("nests deeper than 32"),
        "{what}: the error must name the file and the limit:\n{head}"
    );
    assert!(
        (1..=40).any(|l| has_line_col(&all, l)),
        "{what}: expected :LINE:COL near the top in:\n{head}"
    );
    // Parsing this (or any) depth took the YAML parser tens of seconds.
    assert!(took < bound, "{what}: refused only after {took:?}");
}

#[test]
fn deep_yaml_nesting_is_refused_quickly() {
    const DEPTH: usize = 100_000;
    // Well within RUN_TIMEOUT, far below the 20-40 s a 100,000-deep file
    // kept the YAML parser busy for.
    let bound = Duration::from_secs(3);
    let flow_seq = format!("listeners: {}{}\n", "[".repeat(DEPTH), "]".repeat(DEPTH));
    expect_too_deep("flow sequences", &flow_seq, bound);
    let flow_map = format!(
        "listeners: {}1{}\n",
        "{a: ".repeat(DEPTH),
        "}".repeat(DEPTH)
    );
    expect_too_deep("flow mappings", &flow_map, bound);
    // Nesting by indentation grows the file with the square of the depth:
    // 2,000 levels are 2 MB.
    let block_map: String = std::iter::once("listeners:\n".to_owned())
        .chain((1..=2000).map(|i| format!("{}a:\n", " ".repeat(i))))
        .collect();
    expect_too_deep("block mappings", &block_map, bound);
    let block_seq = format!("listeners:\n  {}x\n", "- ".repeat(DEPTH));
    expect_too_deep("block sequences", &block_seq, bound);
    let keys = format!("listeners:\n  {}x\n", "? ".repeat(DEPTH));
    expect_too_deep("explicit keys", &keys, bound);
    // A sequence at its key's indentation, the deepest way to write blocks.
    let stair: String = std::iter::once("listeners:\n".to_owned())
        .chain((0..1000).map(|i| format!("{}- a:\n", " ".repeat(2 * i))))
        .collect();
    expect_too_deep("block staircase", &stair, bound);
}

#[test]
fn ordinary_nesting_still_passes() {
    // Flow style inside block style, brackets inside strings and comments.
    let dir = TempDir::new("nested");
    let yaml = good_yaml(&dir).replace(
        "      - upstream: web\n",
        "      - {path: /a, return: {status: 200, body: \"[[{{ '\"}} # [[[[\n      - upstream: web\n",
    );
    let (out, _p, _d) = check(&yaml);
    assert_eq!(out.code(), Some(0), "{}\n{yaml}", out.combined());
}

#[test]
fn worker_connections_has_an_upper_bound() {
    for huge in ["18446744073709551615", "500001"] {
        expect_invalid(
            |y| format!("worker_connections: {huge}\n{y}"),
            &["worker_connections", "more than the maximum of 500000"],
        );
    }
    let dir = TempDir::new("wc");
    let (out, _p, _d) = check(&format!("worker_connections: 500000\n{}", good_yaml(&dir)));
    assert_eq!(out.code(), Some(0), "{}", out.combined());
}

/// A bad duration or size names its own field and points at its value,
/// at the top level and nested alike (not the mapping around it).
#[test]
fn bad_durations_and_sizes_name_their_field_line_and_column() {
    let all = expect_invalid(
        |y| y.replacen("workers: 1\n", "workers: 1\nshutdown_timeout: 10x\n", 1),
        &["shutdown_timeout: invalid duration \"10x\""],
    );
    assert!(all.contains(":2:19:"), "expected :2:19: in:\n{all}");
    let all = expect_invalid(
        |y| {
            y.replacen(
                "workers: 1\n",
                "workers: 1\ntimeouts:\n  client_header: 10s\n  connect: 1.5s\n",
                1,
            )
        },
        &["timeouts.connect: invalid duration \"1.5s\""],
    );
    assert!(all.contains(":4:12:"), "expected :4:12: in:\n{all}");
    let all = expect_invalid(
        |y| {
            y.replacen(
                "workers: 1\n",
                "workers: 1\nlimits: {max_header_bytes: 10x}\n",
                1,
            )
        },
        &["limits.max_header_bytes: invalid size"],
    );
    assert!(has_line_col(&all, 2), "expected :2:COL in:\n{all}");
}

/// A UTF-8 byte order mark before the YAML is allowed, as YAML allows it.
#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = TempDir::new("bom");
    let (out, _path, _d) = check(&format!("\u{feff}{}", good_yaml(&dir)));
    assert_eq!(out.code(), Some(0), "{}", out.combined());
}

/// `-t` fails where the start would: a log file in a folder that does not
/// exist (forklb opens log files, it does not make their folders).
#[test]
fn log_files_in_missing_folders_fail_the_test() {
    let all = expect_invalid(
        |y| y.replace("/error.log\"", "/nodir/error.log\""),
        &[
            "error_log: cannot open",
            "/nodir does not exist",
            "test failed",
        ],
    );
    assert!(!all.contains("syntax is ok"), "{all}");
    expect_invalid(
        |y| format!("{y}access_log: {{path: /nonexistent-forklb-dir/access.log}}\n"),
        &[
            "access_log.path: cannot open",
            "/nonexistent-forklb-dir does not exist",
        ],
    );
}
