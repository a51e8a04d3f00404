//! Moving large bodies between plain sockets without copying them through
//! user space: `splice(2)` from the source socket into a pipe, and from the
//! pipe into the destination socket. Pipes come from a per-worker pool and
//! are held by a connection only while it relays such a body, so an idle
//! connection keeps none.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bodies shorter than this are copied: a pipe pays off only for bulk.
pub const MIN_BODY: u64 = 64 * 1024;
/// Pipe capacity asked for (the kernel default is 64 KiB).
const PIPE_SIZE: libc::c_int = 256 * 1024;

pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes in the pipe, not yet moved on.
    held: usize,
    cap: usize,
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 returned two new descriptors that we now own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe means fewer splices; the default is kept if refused.
        // SAFETY: F_SETPIPE_SZ on our own pipe.
        let cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Pipe {
            r,
            w,
            held: 0,
            cap: if cap > 0 { cap as usize } else { 64 * 1024 },
        })
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Moves up to `max` bytes from the socket `src` into the pipe; Ok(0)
    /// at end of stream.
    pub fn fill(&mut self, src: RawFd, max: usize) -> io::Result<usize> {
        let max = max.min(self.cap - self.held);
        loop {
            // SAFETY: plain splice between descriptors we hold.
            let r = unsafe {
                libc::splice(
                    src,
                    std::ptr::null_mut(),
                    self.w.as_raw_fd(),
                    std::ptr::null_mut(),
                    max,
                    libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                )
            };
            match cvt(r) {
                Ok(n) => {
                    self.held += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves held bytes into the socket `dst`.
    pub fn drain(&mut self, dst: RawFd) -> io::Result<usize> {
        loop {
            // SAFETY: as in `fill`.
            let r = unsafe {
                libc::splice(
                    self.r.as_raw_fd(),
                    std::ptr::null_mut(),
                    dst,
                    std::ptr::null_mut(),
                    self.held,
                    libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                )
            };
            match cvt(r) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.held -= n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Empty pipes kept for reuse by one worker.
pub struct PipePool {
    free: Vec<Pipe>,
    max_free: usize,
}

impl PipePool {
    pub fn new(max_free: usize) -> PipePool {
        PipePool {
            free: Vec::new(),
            max_free,
        }
    }

    /// A pipe, or None if none can be made (out of descriptors): the body
    /// is then copied as usual.
    pub fn get(&mut self) -> Option<Pipe> {
        self.free.pop().or_else(|| Pipe::new().ok())
    }

    /// Takes a pipe back; one still holding bytes is closed instead.
    pub fn put(&mut self, pipe: Pipe) {
        if pipe.held == 0 && self.free.len() < self.max_free {
            self.free.push(pipe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn bytes_cross_from_socket_to_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let c_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(c_l.local_addr().unwrap()).unwrap();
        let (mut d, _) = c_l.accept().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&data).unwrap();
        drop(a);
        let mut pool = PipePool::new(4);
        let mut p = pool.get().unwrap();
        let mut moved = 0;
        while moved < data.len() {
            let n = p.fill(b.as_raw_fd(), usize::MAX).unwrap();
            assert!(n > 0);
            while p.held() > 0 {
                moved += p.drain(c.as_raw_fd()).unwrap();
            }
        }
        assert_eq!(p.fill(b.as_raw_fd(), 10).unwrap(), 0, "end of stream");
        drop(c);
        let mut got = Vec::new();
        d.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
        pool.put(p);
        assert!(pool.get().is_some());
    }
}
