//! HTTP/2 conformance: h2spec (`../shared/tools/h2spec`, 146 cases of RFC
//! 7540/9113 and HPACK) against forklb over TLS (ALPN h2) and over h2c
//! (prior knowledge). HAProxy 2.6 passes all 146 on this machine.
//!
//! The requests go to a backend whose answer is 4 KiB: with a shorter body
//! h2spec skips http2/6.9.2/2 (it needs DATA beyond a small window), and a
//! skip is not a pass.

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::*;

fn h2spec_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/h2spec");
    assert!(
        p.exists(),
        "{} is missing (the shared test tools, see ../shared/tools/README.md)",
        p.display()
    );
    p
}

/// (tests, passed, skipped, failed) of h2spec's last line,
/// `146 tests, 146 passed, 0 skipped, 0 failed`.
fn summary(out: &ToolOutput) -> (u32, u32, u32, u32) {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains(" tests, ") && l.contains(" passed"))
        .unwrap_or_else(|| panic!("no h2spec summary line:\n{}", out.combined()));
    let n = |word: &str| -> u32 {
        line.split(',')
            .map(str::trim)
            .find_map(|p| p.strip_suffix(word)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{word}` in {line:?}"))
    };
    (n("tests"), n("passed"), n("skipped"), n("failed"))
}

/// The failed cases (h2spec marks them `×`, with the reason on the lines
/// after), at most 80 lines, for the message.
fn failures(out: &ToolOutput) -> String {
    let lines: Vec<&str> = out.stdout.lines().collect();
    let mut picked = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains('×') {
            picked.push(l.trim());
            picked.extend(
                lines[i + 1..]
                    .iter()
                    .take_while(|n| !n.contains('×') && !n.contains('✔') && !n.trim().is_empty())
                    .map(|n| n.trim()),
            );
        }
    }
    picked.truncate(80);
    picked.join("\n")
}

fn run_h2spec(port: u16, tls: bool) -> ToolOutput {
    let port = port.to_string();
    let exe = h2spec_path();
    let mut args = vec!["-h", "127.0.0.1", "-p", &port];
    if tls {
        args.extend_from_slice(&["-t", "-k"]);
    }
    run_tool(exe.to_str().unwrap(), &args, Duration::from_secs(60))
}

#[test]
fn h2spec_passes_over_tls_and_h2c() {
    let be = Backend::start_with(
        "b1",
        BackendOpts {
            body: Some(vec![b'm'; 4096]),
            ..Default::default()
        },
    );
    let h = H2Lb::start(&[Route::to("web")], |c| c.upstream("web", [Srv::of(&be)]));
    for (what, port, tls) in [("TLS", h.tls_port(), true), ("h2c", h.h2c_port, false)] {
        let out = run_h2spec(port, tls);
        let s = summary(&out);
        assert_eq!(
            s,
            (146, 146, 0, 0),
            "h2spec over {what}: {s:?} (tests, passed, skipped, failed)\nfailures:\n{}\n{}",
            failures(&out),
            h.lb.diagnostics()
        );
    }
}
