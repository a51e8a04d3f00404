//! The error log: a `log::Log` implementation writing nginx-style lines
//! (`2026/11/21 13:40:00 [info] 1234: message`) to stderr or a file.
//!
//! Each line goes out in one `write(2)` on an `O_APPEND` descriptor, so lines
//! from the master and all workers never interleave. `reopen()` re-opens the
//! file for logrotate (USR1).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where log lines go.
enum Sink {
    /// `journal`: stderr is systemd's journal stream, and each line begins
    /// with its syslog priority (`<3>` for an error), which the journal
    /// reads and strips, so `journalctl -p warning` finds forklb's lines.
    Stderr {
        journal: bool,
    },
    File {
        path: PathBuf,
        file: File,
    },
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: Logger = Logger {
    sink: Mutex::new(Sink::Stderr { journal: false }),
};

/// Short role tag shown in every line (`master`, `worker`, ...), set after fork.
static ROLE: AtomicU8 = AtomicU8::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    Master = 0,
    Worker = 1,
    Health = 2,
    Cli = 3,
}

pub fn set_role(role: Role) {
    ROLE.store(role as u8, Ordering::Relaxed);
}

fn role_name() -> &'static str {
    match ROLE.load(Ordering::Relaxed) {
        0 => "master",
        1 => "worker",
        2 => "health",
        _ => "cli",
    }
}

/// Opens a log file for appending (one `write(2)` per line or batch stays
/// whole even with several writers), creating it 0644.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Installs the logger. `target` is `"stderr"` or a file path; `RUST_LOG`
/// (a plain level name) overrides `level`.
pub fn init(target: &str, level: log::LevelFilter) -> io::Result<()> {
    let sink = if target == "stderr" {
        Sink::Stderr {
            journal: stderr_is_the_journal(),
        }
    } else {
        let path = PathBuf::from(target);
        let file = open_append(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open error log {}: {e}", path.display()),
            )
        })?;
        Sink::File { path, file }
    };
    if let Ok(mut s) = LOGGER.sink.lock() {
        *s = sink;
    }
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<log::LevelFilter>().ok())
        .unwrap_or(level);
    // A second init (e.g. after reload) only swaps the sink and level.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
    Ok(())
}

/// systemd sets `JOURNAL_STREAM=DEVICE:INODE` for a service whose stderr
/// goes to the journal (systemd.exec(5)); stderr is that stream when its
/// device and inode match (not when a child redirected it elsewhere).
fn stderr_is_the_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(2) else {
        return false;
    };
    dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino)
}

/// The syslog priority the journal reads from a line's `<N>` prefix.
fn journal_priority(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    }
}

/// Runs `f` on the log file, if logging goes to a file (e.g. to chown it).
pub fn with_file(f: impl FnOnce(&File)) {
    let guard = match LOGGER.sink.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Sink::File { file, .. } = &*guard {
        f(file);
    }
}

/// Re-opens the log file (after logrotate moved it away).
pub fn reopen() -> io::Result<()> {
    let mut guard = match LOGGER.sink.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Sink::File { path, file } = &mut *guard {
        *file = open_append(path)?;
    }
    Ok(())
}

/// The level a record is logged at. rustls reports what a peer did wrong
/// (an IP address as SNI, a renegotiation attempt, a bad alert) at warn,
/// once per connection: any client could fill the error log with them
/// (14,523 lines in 10 s of a benchmark connecting by IP). They are
/// debug information about one peer; forklb logs what matters to the
/// operator itself, so every rustls record is demoted to debug.
fn effective_level(metadata: &log::Metadata) -> log::Level {
    if is_peer_chatter(metadata.target()) {
        log::Level::Debug.max(metadata.level())
    } else {
        metadata.level()
    }
}

/// Records of the TLS library (`rustls`, `rustls::server::hs`, ...).
fn is_peer_chatter(target: &str) -> bool {
    target
        .strip_prefix("rustls")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        effective_level(metadata) <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let effective = effective_level(record.metadata());
        let level = match effective {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let line = format!(
            "{} [{}] {}#{}: {}\n",
            timestamp(SystemTime::now()),
            level,
            std::process::id(),
            role_name(),
            record.args()
        );
        let mut guard = match self.sink.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Logging must never take a process down: write errors are dropped.
        let _ = match &mut *guard {
            Sink::Stderr { journal: false } => io::stderr().write_all(line.as_bytes()),
            Sink::Stderr { journal: true } => {
                let prefixed = format!("{}{line}", journal_priority(effective));
                io::stderr().write_all(prefixed.as_bytes())
            }
            Sink::File { file, .. } => file.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

/// `YYYY/MM/DD HH:MM:SS` in UTC, as nginx prints it (nginx uses local time;
/// UTC avoids reading the time zone database in every worker).
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}/{mo:02}/{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970/01/01 00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1795219200 + 3_723);
        assert_eq!(timestamp(t), "2026/11/21 01:02:03");
        assert_eq!(civil_from_days(59), (1970, 3, 1));
    }

    fn level_of(target: &str, level: log::Level) -> log::Level {
        effective_level(&log::Metadata::builder().target(target).level(level).build())
    }

    #[test]
    fn rustls_records_are_demoted_to_debug() {
        use log::Level::*;
        assert_eq!(level_of("rustls::server::hs", Warn), Debug);
        assert_eq!(level_of("rustls", Error), Debug);
        assert_eq!(level_of("rustls::conn", Trace), Trace);
        // Only the rustls crate: forklb's own records and look-alikes keep theirs.
        assert_eq!(level_of("forklb::tls::server", Warn), Warn);
        assert_eq!(level_of("rustls_native_certs", Warn), Warn);
    }
}
