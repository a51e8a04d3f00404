//! The command line (DESIGN §2). Messages for `-t` follow nginx's wording so
//! operators' scripts and habits carry over.

use crate::config::Config;
use crate::master::{self, pidfile};
use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: forklb [-c FILE] [-t] [-T] [-d] [-u] [-s SIGNAL] [-V] [-h]

Options:
  -c, --conf FILE   configuration file (default /etc/forklb/forklb.yaml; env FORKLB_CONF)
  -t, --test        check the configuration and exit
  -T                check the configuration, then print it with defaults filled in
  -d, --daemon      run in the background
  -u, --upgrade     take the listening sockets over from a running instance (upgrade_sock)
  -s SIGNAL         send SIGNAL to the master: stop, quit, reload, reopen, upgrade
  -V, -v, --version print the version and exit
  -h, --help        print this help and exit
";

/// Exit codes (DESIGN §2).
pub const EXIT_OK: i32 = 0;
pub const EXIT_CONFIG: i32 = 1;
pub const EXIT_RUNTIME: i32 = 2;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub conf: Option<PathBuf>,
    pub test: bool,
    pub dump: bool,
    pub daemon: bool,
    pub upgrade: bool,
    pub signal: Option<String>,
    pub version: bool,
    pub help: bool,
}

/// Parses arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--conf" => {
                o.conf = Some(PathBuf::from(it.next().ok_or("option -c requires a file")?));
            }
            "-t" | "--test" => o.test = true,
            "-T" => {
                o.test = true;
                o.dump = true;
            }
            "-d" | "--daemon" => o.daemon = true,
            "-u" | "--upgrade" => o.upgrade = true,
            "-s" => o.signal = Some(it.next().ok_or("option -s requires a signal name")?),
            // `-v` too: `nginx -v` and `haproxy -v` print the version.
            "-V" | "-v" | "--version" => o.version = true,
            "-h" | "--help" | "-?" => o.help = true,
            s if s.starts_with("--conf=") => o.conf = Some(PathBuf::from(&s[7..])),
            s if s.starts_with("-c") && s.len() > 2 => o.conf = Some(PathBuf::from(&s[2..])),
            s => return Err(format!("invalid option: \"{s}\"")),
        }
    }
    Ok(o)
}

/// `-t` checks what the start would trip over: the folders of the log
/// files, which forklb opens but does not create (as nginx, whose `-t`
/// opens them). The pid file's, the sockets' are made at start.
fn log_dirs_exist(config: &Config) -> Result<(), String> {
    let error_log =
        (config.error_log != "stderr").then(|| ("error_log", PathBuf::from(&config.error_log)));
    let access_log = config
        .access_log
        .as_ref()
        .map(|a| ("access_log.path", a.path.clone()));
    for (field, path) in error_log.into_iter().chain(access_log) {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            return Err(format!(
                "{field}: cannot open {}: the folder {} does not exist",
                path.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

fn conf_path(o: &Options) -> PathBuf {
    o.conf
        .clone()
        .or_else(|| {
            // Set but empty is unset, as for most variables of the kind.
            std::env::var_os("FORKLB_CONF")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/etc/forklb/forklb.yaml"))
}

/// The program: returns the process exit code.
pub fn main() -> i32 {
    crate::log::set_role(crate::log::Role::Cli);
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("forklb: {e}\n\n{USAGE}");
            return EXIT_CONFIG;
        }
    };
    if opts.help {
        print!("{USAGE}");
        return EXIT_OK;
    }
    if opts.version {
        println!("forklb version {}", env!("CARGO_PKG_VERSION"));
        return EXIT_OK;
    }
    let path = conf_path(&opts);
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("forklb: [emerg] {e}");
            if opts.test {
                // The file as the error names it (absolute), as on success.
                eprintln!(
                    "forklb: configuration file {} test failed",
                    e.file.display()
                );
            }
            return EXIT_CONFIG;
        }
    };
    if opts.test {
        if let Err(e) = log_dirs_exist(&config) {
            eprintln!("forklb: [emerg] {}: {e}", config.source.display());
            eprintln!(
                "forklb: configuration file {} test failed",
                config.source.display()
            );
            return EXIT_CONFIG;
        }
        for w in &config.warnings {
            eprintln!("forklb: [warn] {w}");
        }
        eprintln!(
            "forklb: the configuration file {} syntax is ok",
            config.source.display()
        );
        eprintln!(
            "forklb: configuration file {} test is successful",
            config.source.display()
        );
        if opts.dump {
            println!("# configuration file {}:", config.source.display());
            print!("{}", config.to_yaml());
        }
        return EXIT_OK;
    }
    if let Some(sig) = &opts.signal {
        return send_signal(&config, sig);
    }
    match master::run(
        config,
        master::RunOptions {
            daemon: opts.daemon,
            upgrade: opts.upgrade,
        },
    ) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            log::error!("{e}");
            eprintln!("forklb: [emerg] {e}");
            EXIT_RUNTIME
        }
    }
}

/// `-s stop|quit|reload|reopen`: signal the master named in the pid file.
fn send_signal(config: &Config, name: &str) -> i32 {
    use nix::sys::signal::Signal;
    let sig = match name {
        "stop" => Signal::SIGTERM,
        "quit" => Signal::SIGQUIT,
        "reload" => Signal::SIGHUP,
        "reopen" => Signal::SIGUSR1,
        "upgrade" => {
            return match crate::upgrade_cmd::run(config) {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("forklb: [{}] {e}", e.severity());
                    EXIT_RUNTIME
                }
            }
        }
        other => {
            eprintln!("forklb: invalid option: \"-s {other}\" (use stop, quit, reload, reopen or upgrade)");
            return EXIT_CONFIG;
        }
    };
    let pid = match pidfile::read(&config.pid_file) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            eprintln!("forklb: [error] {e}");
            return EXIT_RUNTIME;
        }
        Err(e) => {
            eprintln!(
                "forklb: [error] open() \"{}\" failed: {e}",
                config.pid_file.display()
            );
            return EXIT_RUNTIME;
        }
    };
    let Ok(raw) = i32::try_from(pid) else {
        eprintln!(
            "forklb: [error] invalid pid {pid} in {}",
            config.pid_file.display()
        );
        return EXIT_RUNTIME;
    };
    if let Some(name) = crate::procfs::not_a_master(raw) {
        eprintln!(
            "forklb: [error] process {pid} named by {} is {name:?}, not a forklb master: the pid file is stale; nothing sent",
            config.pid_file.display()
        );
        return EXIT_RUNTIME;
    }
    if sig == Signal::SIGHUP {
        if let Some(old) = upgrading_from(config, pid) {
            // A reload now would HUP the new master alone, and a service
            // manager that reads the pid file after a reload (systemd's
            // PIDFile=) would take the new master, still the old one's
            // child, for its main process: its later stop cuts requests.
            eprintln!(
                "forklb: [error] an upgrade is in progress (old master {old}, new master {pid}): \
                 finish it (kill -QUIT {old}) or roll it back (kill -HUP {old}; kill -QUIT {pid}) \
                 before reloading; nothing sent"
            );
            return EXIT_RUNTIME;
        }
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("forklb: [error] kill({pid}, {sig}) failed: {e}");
            EXIT_RUNTIME
        }
    }
}

/// The old master of an upgrade in progress: the `.oldbin` pid file names
/// a live forklb master other than `pid` (the pid file's).
fn upgrading_from(config: &Config, pid: u32) -> Option<u32> {
    let old = pidfile::read(&crate::master::oldbin_path(&config.pid_file)).ok()?;
    let raw = i32::try_from(old).ok()?;
    let live = crate::procfs::info(raw).is_some_and(|p| p.state != 'Z' && p.state != 'X');
    (old != pid && live && crate::procfs::not_a_master(raw).is_none()).then_some(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Options, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses() {
        let o = args(&["-c", "x.yaml", "-t"]).unwrap();
        assert_eq!(o.conf, Some(PathBuf::from("x.yaml")));
        assert!(o.test && !o.dump);
        assert!(args(&["-T"]).unwrap().dump);
        assert_eq!(
            args(&["-s", "quit"]).unwrap().signal.as_deref(),
            Some("quit")
        );
        assert_eq!(
            args(&["--conf=/a"]).unwrap().conf,
            Some(PathBuf::from("/a"))
        );
        assert!(args(&["-x"]).is_err());
        assert!(args(&["-c"]).is_err());
    }
}
