//! Pingora-style upgrade over `upgrade_sock`: a new instance started with
//! `-u` listens on the Unix socket; the running instance, on QUIT, connects
//! and sends its listening sockets with SCM_RIGHTS, each named by its
//! address, waits for the acknowledgement, then drains and exits. The
//! listening sockets are never closed in between, so no connection is
//! refused: new connections queue until the new workers accept them.
//!
//! Either side may come first. A `-u` instance started before the QUIT waits
//! (at most `upgrade_timeout`); in Pingora's order (QUIT, then `-u`) the old
//! instance keeps serving and keeps offering for `upgrade_grace` (the
//! master's `Offering` state calls [`send_sockets`] again and again).

use super::listening::BoundSocket;
use crate::net;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

const MAGIC: &str = "forklb-sockets v1";
const ACK: &[u8] = b"OK";
/// Most sockets one handoff carries.
const MAX_FDS: usize = 256;
/// The receiver acknowledges right after reading the one message; the
/// sender (a master, whose loop this blocks) waits no longer than this.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `sockets` to an instance waiting on `path`. `Ok(false)` when
/// nobody waits there (then QUIT is a plain graceful shutdown).
pub fn send_sockets(path: &Path, sockets: &[BoundSocket]) -> io::Result<bool> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    let mut payload = format!("{MAGIC}\n");
    for b in sockets.iter().take(MAX_FDS) {
        payload.push_str(&format!("{}\n", b.addr));
    }
    let fds: Vec<RawFd> = sockets
        .iter()
        .take(MAX_FDS)
        .map(|b| b.socket.as_raw_fd())
        .collect();
    let iov = [IoSlice::new(payload.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    stream.set_read_timeout(Some(ACK_TIMEOUT))?;
    let mut ack = [0u8; 2];
    stream.read_exact(&mut ack)?;
    if ack != ACK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the new instance did not acknowledge the sockets",
        ));
    }
    Ok(true)
}

/// Waits on `path` until the running instance hands its sockets over, at
/// most `timeout`; a `TimedOut` error says nobody did.
pub fn receive_sockets(
    path: &Path,
    timeout: Duration,
) -> io::Result<Vec<(TcpListener, SocketAddr)>> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let result = accept_handoff(&listener, path, Instant::now() + timeout);
    let _ = std::fs::remove_file(path);
    result.map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no running instance handed its listening sockets over on {} within {} s \
                 (send the running instance QUIT, with the same upgrade_sock in its configuration)",
                path.display(),
                timeout.as_secs_f64()
            ),
        ),
        _ => e,
    })
}

fn accept_handoff(
    listener: &UnixListener,
    path: &Path,
    deadline: Instant,
) -> io::Result<Vec<(TcpListener, SocketAddr)>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let (mut stream, _) = listener.accept()?;
        // A peer that connects and sends nothing must not hold us forever.
        stream.set_read_timeout(Some(left))?;
        match receive_one(&stream) {
            Ok(sockets) => {
                let _ = stream.write_all(ACK);
                return Ok(sockets);
            }
            Err(e) => log::error!("invalid socket handoff on {}: {e}", path.display()),
        }
    }
}

fn receive_one(stream: &UnixStream) -> io::Result<Vec<(TcpListener, SocketAddr)>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (bytes, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(r) = c {
                fds.extend(r);
            }
        }
        (msg.bytes, fds)
    };
    let text = String::from_utf8_lossy(&buf[..bytes]).into_owned();
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        for fd in fds {
            // SAFETY: fds we received and own; closing them refuses the handoff.
            unsafe { libc::close(fd) };
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad handoff header",
        ));
    }
    let mut out = Vec::new();
    for (fd, line) in fds.into_iter().zip(lines) {
        match net::adopt_inherited(fd) {
            Ok((sock, addr)) => {
                log::info!("received listening socket {addr} (announced as {line})");
                out.push((sock, addr));
            }
            Err(e) => log::error!("cannot use handed-over socket {line}: {e}"),
        }
    }
    Ok(out)
}
