//! The admin socket: a Unix stream socket served by the master's event loop,
//! framed like HAProxy 2.6's stats socket. A command ends at a newline or
//! at an unescaped `;` (`\;` is a literal one); each runs as soon as it is
//! complete, and its answer is followed by an empty line. A session closes
//! once an answer leaves nothing unread behind it, so every command already
//! sent is answered; a command never completed (no newline before EOF) is
//! not run. After `prompt` the session is interactive: the socket stays
//! open and every answer is followed by a `> ` prompt, until `quit`, a
//! second `prompt`, or the client closes.
//!
//! Nothing here blocks: lines are bounded, idle connections time out, and
//! a client that does not read its answers gets no more of them (its
//! further commands wait) until it does, or until it idles out.

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest command line accepted.
const MAX_LINE: usize = 16 * 1024;
/// While more output than this is unsent, a session's further commands wait
/// (and its input is not read), so a client that sends without reading
/// cannot make the master buffer without bound. One answer may be larger:
/// `show stat` of a configuration with 100,000 servers is some 40 MB.
const MAX_OUTPUT: usize = 4 * 1024 * 1024;
/// HAProxy's `stats timeout` default.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin tokens live far above the master's other tokens.
const FIRST_TOKEN: usize = 1 << 40;

/// Who may do what (`admin.level`), as HAProxy's stats socket levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    User,
    Operator,
    Admin,
}

struct Session {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes at the front of `output` already written: advancing an offset
    /// rather than draining the vector keeps a large answer linear to send.
    sent: usize,
    writable: bool,
    interactive: bool,
    /// Close once the output is written.
    closing: bool,
    deadline: Instant,
}

pub struct AdminServer {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file we created: during an upgrade the
    /// new master binds the same path, and the old one must then not remove
    /// the new one's file when it exits.
    file_id: Option<(u64, u64)>,
    level: Level,
    sessions: HashMap<usize, Session>,
    next_id: usize,
}

/// What running one command produced.
pub enum Reply {
    Text(String),
    /// `prompt`: toggle interactive mode.
    TogglePrompt,
    /// `quit`: close the session.
    Quit,
}

impl AdminServer {
    /// Binds the socket (replacing a stale one) with `mode` permissions.
    pub fn bind(
        path: &Path,
        mode: u32,
        level: Level,
        registry: &Registry,
        token: Token,
    ) -> io::Result<AdminServer> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(AdminServer {
            listener,
            path: path.to_path_buf(),
            file_id: file_id(path),
            level,
            sessions: HashMap::new(),
            next_id: 0,
        })
    }

    pub fn owns(token: Token) -> bool {
        token.0 >= FIRST_TOKEN
    }

    pub fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    if let Err(e) = registry.register(
                        &mut stream,
                        Token(FIRST_TOKEN + id),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::error!("admin socket: cannot register a connection: {e}");
                        continue;
                    }
                    self.sessions.insert(
                        id,
                        Session {
                            stream,
                            input: Vec::new(),
                            output: Vec::new(),
                            sent: 0,
                            writable: true,
                            interactive: false,
                            closing: false,
                            deadline: now + IDLE_TIMEOUT,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("admin socket accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Serves a session after an event: reads complete lines, runs their
    /// commands with `exec`, writes the answers.
    pub fn service(
        &mut self,
        token: Token,
        writable: bool,
        now: Instant,
        exec: &mut dyn FnMut(&str, Level) -> Reply,
    ) {
        let id = token.0 - FIRST_TOKEN;
        let level = self.level;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.writable |= writable;
        let mut eof = false;
        let mut buf = [0u8; 4096];
        while !s.closing && s.unsent() <= MAX_OUTPUT {
            match s.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    s.input.extend_from_slice(&buf[..n]);
                    s.deadline = now + IDLE_TIMEOUT;
                    if s.input.len() > MAX_LINE && next_delimiter(&s.input).is_none() {
                        s.output.extend_from_slice(b"Command line too long.\n\n");
                        s.closing = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.sessions.remove(&id);
                    return;
                }
            }
        }
        run_commands(s, level, exec);
        // HAProxy closes a non-interactive session once an answer left
        // nothing unread behind it (a partial command keeps it waiting for
        // the rest); at EOF a partial command is dropped unanswered, in
        // both modes. Complete commands held back by a pending answer still
        // run after EOF: the next writable event brings us back here.
        if eof && next_delimiter(&s.input).is_none() {
            s.closing = true;
        }
        if flush(s).is_err() || (s.closing && s.unsent() == 0) {
            self.sessions.remove(&id);
        }
    }

    /// Drops sessions idle past their deadline.
    pub fn expire(&mut self, now: Instant) {
        self.sessions.retain(|_, s| s.deadline > now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions.values().map(|s| s.deadline).min()
    }
}

impl AdminServer {
    /// In a forked child: close our descriptors, leave the file alone.
    pub fn close_in_child(mut self) {
        self.file_id = None;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if self.file_id.is_some() && file_id(&self.path) == self.file_id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Runs the complete commands waiting in the session's input, as long as
/// the client keeps reading the answers. HAProxy 2.6 reads one command at
/// a time, each ended by a newline or an unescaped `;`, so each gets its
/// own answer and, in interactive mode, its own prompt.
fn run_commands(s: &mut Session, level: Level, exec: &mut dyn FnMut(&str, Level) -> Reply) {
    while !s.closing && s.unsent() <= MAX_OUTPUT {
        let Some(end) = next_delimiter(&s.input) else {
            break;
        };
        let raw: Vec<u8> = s.input.drain(..=end).collect();
        let cmd = unescape(&String::from_utf8_lossy(&raw[..end]));
        run_command(s, cmd.trim(), level, exec);
        // Non-interactive: an answer that leaves nothing unread ends the
        // session, as in HAProxy (pipelined commands already sent still run).
        if !s.interactive && s.input.is_empty() {
            s.closing = true;
        }
    }
}

/// Runs one command (an empty one too: HAProxy answers it with the list
/// of commands) and queues its answer, its empty line and the prompt.
fn run_command(
    s: &mut Session,
    cmd: &str,
    level: Level,
    exec: &mut dyn FnMut(&str, Level) -> Reply,
) {
    match exec(cmd, level) {
        Reply::Text(t) => s.output.extend_from_slice(t.as_bytes()),
        // `prompt` again in interactive mode turns it off, as in HAProxy.
        Reply::TogglePrompt => s.interactive = !s.interactive,
        Reply::Quit => {
            s.interactive = false;
            s.closing = true;
            return;
        }
    }
    // The prompt follows the empty line when the command leaves the
    // session interactive: `prompt` itself answers "\n> ".
    s.output
        .extend_from_slice(if s.interactive { b"\n> " } else { b"\n" });
}

impl Session {
    fn unsent(&self) -> usize {
        self.output.len() - self.sent
    }
}

fn flush(s: &mut Session) -> io::Result<()> {
    while s.writable && s.unsent() > 0 {
        match s.stream.write(&s.output[s.sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                s.sent += n;
                if s.sent == s.output.len() {
                    s.output.clear();
                    s.sent = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Where the first complete command in `input` ends: the index of its
/// newline or unescaped `;`. As HAProxy's `co_getdelim(..., "\n;", '\\')`,
/// a backslash makes the next byte (a `;`, a newline, a backslash) part of
/// the command.
fn next_delimiter(input: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\\' => i += 2,
            b';' | b'\n' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A command's text with `\;` read as a literal `;`.
fn unescape(cmd: &str) -> String {
    cmd.replace("\\;", ";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_end_at_newlines_and_unescaped_semicolons() {
        assert_eq!(next_delimiter(b"a; b"), Some(1));
        assert_eq!(next_delimiter(b"get x\n"), Some(5));
        assert_eq!(next_delimiter(br"a\;b;c"), Some(4));
        assert_eq!(next_delimiter(b"a\\\nb\n"), Some(4));
        assert_eq!(next_delimiter(b"show version"), None);
        assert_eq!(next_delimiter(br"a\;"), None);
        assert_eq!(next_delimiter(br"a\\;"), Some(3));
        assert_eq!(next_delimiter(b""), None);
        assert_eq!(unescape(r"get weight a/b\;x"), "get weight a/b;x");
    }
}
