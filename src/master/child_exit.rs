//! How a forked child (a worker or the health checker) ends. Its code
//! returns a typed error; the exit status made of it here is read back only
//! by this master's reaper, which logs it ("exited with code 2"), so it is
//! no part of the command line's exit codes (DESIGN §2, mapped in `cli`).

use std::fmt;
use std::io;

/// Why a forked child stopped serving.
#[derive(Debug)]
pub enum ChildError {
    /// Switching to the unprivileged user failed.
    Privileges {
        user: String,
        uid: u32,
        source: io::Error,
    },
    /// The worker or the checker could not go on.
    Run {
        /// "worker" or "health checker".
        role: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Privileges { user, uid, source } => {
                write!(f, "cannot switch to user {user} (uid {uid}): {source}")
            }
            ChildError::Run { role, source } => write!(f, "{role} failed: {source}"),
        }
    }
}

impl std::error::Error for ChildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChildError::Privileges { source, .. } | ChildError::Run { source, .. } => Some(source),
        }
    }
}

/// Status of a child whose work failed: distinct from a clean stop (0) in
/// the reaper's log line, and the same number it has always been.
const FAILED: i32 = 2;

/// Logs a failed child's error (in the child's own log role) and ends the
/// forked process; it never returns to the master's code.
pub fn exit(result: Result<(), ChildError>) -> ! {
    let status = match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            FAILED
        }
    };
    std::process::exit(status)
}
