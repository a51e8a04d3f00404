//! Packaging (issue 13): `make install` installs a binary that is already built without
//! needing cargo (`sudo make install` where root has no cargo), with DESTDIR and PREFIX;
//! the logrotate file passes `logrotate -d` and, run for real, makes forklb reopen its
//! logs. Tests that need `make` or `logrotate` say so and pass when the tool is missing.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::*;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A copy of what `make install` reads (the Makefile, conf/, systemd/, packaging/),
/// so the test never writes into the repository.
fn source_copy(dir: &TempDir) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::copy(repo_file("Makefile"), src.join("Makefile")).unwrap();
    for d in ["conf", "systemd", "packaging"] {
        copy_tree(&repo_file(d), &src.join(d));
    }
    src
}

fn make_install(src: &Path, args: &[&str]) -> Output {
    Command::new("make")
        .arg("-C")
        .arg(src)
        .arg("install")
        .args(args)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .output()
        .expect("run make")
}

#[test]
fn make_install_uses_the_built_binary_without_cargo() {
    if !have("make") {
        return;
    }
    let dir = TempDir::new("install");
    let src = source_copy(&dir);
    let built = src.join("target/release/forklb");
    fs::create_dir_all(built.parent().unwrap()).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_forklb"), &built).unwrap();

    let dest = dir.join("dest");
    let destdir = format!("DESTDIR={}", dest.display());
    let out = make_install(&src, &[&destdir, "CARGO=/nonexistent/cargo"]);
    assert!(out.status.success(), "make install failed:\n{}", text(&out));

    let bin = dest.join("usr/local/sbin/forklb");
    assert_eq!(fs::read(&bin).unwrap(), fs::read(&built).unwrap());
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_to_string(dest.join("etc/forklb/forklb.yaml")).unwrap(),
        fs::read_to_string(repo_file("conf/production.yaml")).unwrap()
    );
    let unit = fs::read_to_string(dest.join("etc/systemd/system/forklb.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/sbin/forklb -c /etc/forklb/forklb.yaml"),
        "{unit}"
    );
    assert!(!unit.contains("@SBINDIR@"), "{unit}");
    assert_eq!(
        fs::read_to_string(dest.join("etc/logrotate.d/forklb")).unwrap(),
        fs::read_to_string(repo_file("packaging/logrotate/forklb")).unwrap()
    );
    assert!(dest.join("var/log/forklb").is_dir());
    assert!(
        !src.join("forklb.service.tmp").exists(),
        "make install left a temporary file"
    );

    // Again with PREFIX=/usr and a changed configuration: the configuration is kept.
    fs::write(dest.join("etc/forklb/forklb.yaml"), "# mine\n").unwrap();
    let out = make_install(&src, &[&destdir, "PREFIX=/usr", "CARGO=/nonexistent/cargo"]);
    assert!(out.status.success(), "make install failed:\n{}", text(&out));
    assert!(
        text(&out).contains("keeping existing"),
        "expected the existing configuration to be kept:\n{}",
        text(&out)
    );
    assert_eq!(
        fs::read_to_string(dest.join("etc/forklb/forklb.yaml")).unwrap(),
        "# mine\n"
    );
    assert!(dest.join("usr/sbin/forklb").is_file());
    let unit = fs::read_to_string(dest.join("etc/systemd/system/forklb.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/forklb "), "{unit}");
}

#[test]
fn make_install_without_binary_or_cargo_says_what_to_do() {
    if !have("make") {
        return;
    }
    let dir = TempDir::new("install");
    let src = source_copy(&dir);
    let dest = dir.join("dest");
    let out = make_install(
        &src,
        &[
            &format!("DESTDIR={}", dest.display()),
            "CARGO=/nonexistent/cargo",
        ],
    );
    let all = text(&out);
    assert!(!out.status.success(), "make install succeeded:\n{all}");
    assert!(
        all.contains("target/release/forklb is missing")
            && all.contains("'/nonexistent/cargo' is not found")
            && all.contains("make build"),
        "unclear message:\n{all}"
    );
    assert!(!dest.exists(), "nothing should be installed");
}

#[test]
fn logrotate_file_passes_logrotate_debug() {
    if !have("logrotate") {
        return;
    }
    let dir = TempDir::new("logrotate");
    let conf = repo_file("packaging/logrotate/forklb");
    let out = Command::new("logrotate")
        .arg("-d")
        .arg("-s")
        .arg(dir.join("state"))
        .arg(&conf)
        .output()
        .expect("run logrotate");
    let all = text(&out);
    assert!(out.status.success(), "logrotate -d failed:\n{all}");
    assert!(!all.to_lowercase().contains("error"), "{all}");
    assert!(
        all.contains("rotating pattern: /var/log/forklb/*.log"),
        "{all}"
    );
}

/// The shipped file, pointed at a test instance (log folder and pid file replaced),
/// rotates the access log and makes forklb write to a new file.
#[test]
fn logrotate_rotation_makes_forklb_reopen_its_logs() {
    if !have("logrotate") {
        return;
    }
    let backend = Backend::start("b1");
    let dir = TempDir::new("rotate");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let access = logs.join("access.log");
    let mut yaml = proxy_config_for(1, &[&backend]);
    yaml.push_str(&format!("access_log: {{path: \"{}\"}}\n", access.display()));
    let lb = Forklb::start(&yaml);
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();

    assert_eq!(http_get(lb.port(), "/before").status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || read(&access).contains("/before")),
        "access log not written\n{}",
        lb.diagnostics()
    );

    let shipped = fs::read_to_string(repo_file("packaging/logrotate/forklb")).unwrap();
    assert!(shipped.contains("/var/log/forklb/") && shipped.contains("/run/forklb/forklb.pid"));
    let conf = dir.join("forklb.logrotate");
    fs::write(
        &conf,
        shipped
            .replace("/var/log/forklb/", &format!("{}/", logs.display()))
            .replace("/run/forklb/forklb.pid", lb.pid_file().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.join("state"))
        .arg(&conf)
        .output()
        .expect("run logrotate");
    assert!(out.status.success(), "logrotate -f failed:\n{}", text(&out));

    let rotated = logs.join("access.log.1");
    assert!(
        read(&rotated).contains("/before"),
        "not rotated: {:?}",
        fs::read_dir(&logs).unwrap().collect::<Vec<_>>()
    );
    assert_eq!(http_get(lb.port(), "/after").status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || read(&access).contains("/after")),
        "forklb did not reopen the access log after logrotate\nrotated: {:?}\n{}",
        read(&rotated),
        lb.diagnostics()
    );
    assert!(!read(&rotated).contains("/after"));
}
