//! The pid file: the master's pid and a newline, written atomically (temp
//! file + rename) once the master is ready to serve, removed on exit.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Checks early (before forking anything) that the pid file can be written,
/// creating its folder if needed.
pub fn check_writable(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir)?;
        }
    }
    let tmp = temp_path(path);
    fs::File::create(&tmp)?;
    fs::remove_file(&tmp)
}

pub fn write(path: &Path, pid: u32) -> io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "{pid}")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Removes the pid file if it still names `pid` (a newer master may own it).
pub fn remove_if_ours(path: &Path, pid: u32) {
    if read(path).ok() == Some(pid) {
        let _ = fs::remove_file(path);
    }
}

/// The pid the file names. 0 and 1 are refused with the rest of what is
/// not a pid: `kill(0, …)` would signal the caller's own process group and
/// `kill(1, …)` init, and a master is neither (nor above `i32::MAX`).
pub fn read(path: &Path) -> io::Result<u32> {
    let text = fs::read_to_string(path)?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|&p| p > 1 && i32::try_from(p).is_ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid pid in {}: {:?}", path.display(), text.trim()),
            )
        })
}

fn temp_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".tmp.{}", std::process::id()));
    p.into()
}
