//! Listening sockets: created by the master before forking, shared by all
//! workers. Each worker registers the shared socket in its own epoll with
//! EPOLLEXCLUSIVE, so one incoming connection wakes one worker, not all of
//! them (mio registers edge-triggered without that flag, hence the raw
//! `epoll_ctl`). We prefer one shared socket over one SO_REUSEPORT socket per
//! worker because a shared socket loses nothing when a worker dies or the
//! worker count changes on reload, and it is one fd to hand over on upgrade.

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::{
    bind, getsockopt, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
    SockaddrStorage,
};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, RawFd};

/// Backlog for listen(2); the kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: libc::c_int = 4096;

#[derive(Debug)]
pub struct NetError {
    pub addr: SocketAddr,
    pub op: &'static str,
    pub err: io::Error,
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} failed: {}", self.op, self.addr, self.err)
    }
}

impl std::error::Error for NetError {}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Creates a non-blocking, close-on-exec listening socket on `addr`.
pub fn bind_listener(addr: SocketAddr) -> Result<TcpListener, NetError> {
    let fail = |op, err: Errno| NetError {
        addr,
        op,
        err: err.into(),
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail("socket", e))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail("setsockopt", e))?;
    // Accepted sockets inherit TCP_NODELAY (small responses must not wait
    // for Nagle), which saves a setsockopt per connection.
    setsockopt(&fd, sockopt::TcpNoDelay, &true).map_err(|e| fail("setsockopt", e))?;
    if addr.is_ipv6() {
        // "[::]:80" should not also grab IPv4, so an IPv4 listener can coexist.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|e| fail("setsockopt", e))?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| fail("bind", e))?;
    // Not nix's `listen`: its `Backlog` refuses values from SOMAXCONN up,
    // and we want to ask for 4096 and let the kernel cap it.
    // SAFETY: listen(2) on a socket this function owns; no pointers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), LISTEN_BACKLOG) }).map_err(|e| NetError {
        addr,
        op: "listen",
        err: e,
    })?;
    Ok(TcpListener::from(fd))
}

/// Registers a shared listening socket in `epoll_fd` (a worker's mio Poll)
/// level-triggered with EPOLLEXCLUSIVE, under `token`. mio reports the event
/// with this token like any other.
pub fn register_exclusive(epoll_fd: RawFd, listener: &TcpListener, token: usize) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
        u64: token as u64,
    };
    // SAFETY: both fds are valid; ev lives across the call.
    cvt(unsafe { libc::epoll_ctl(epoll_fd, libc::EPOLL_CTL_ADD, listener.as_raw_fd(), &mut ev) })
        .map(|_| ())
}

/// Removes a listening socket from `epoll_fd` (when a worker starts draining).
pub fn deregister(epoll_fd: RawFd, listener: &TcpListener) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: both fds are valid.
    cvt(unsafe { libc::epoll_ctl(epoll_fd, libc::EPOLL_CTL_DEL, listener.as_raw_fd(), &mut ev) })
        .map(|_| ())
}

/// Where a non-blocking `connect` stands once its socket reported
/// readiness: Ok(true) connected, Ok(false) a spurious wake-up (still
/// connecting), Err the connection failed.
pub fn connect_progress(sock: &mio::net::TcpStream) -> io::Result<bool> {
    match sock.take_error() {
        Ok(Some(e)) | Err(e) => Err(e),
        Ok(None) => match sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        },
    }
}

/// One `accept4(2)`: the new socket is non-blocking and close-on-exec from
/// the start, and has TCP_NODELAY from the listener — no further syscalls.
pub fn accept(listener: &TcpListener) -> io::Result<(mio::net::TcpStream, SocketAddr)> {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage/len describe a writable buffer of the right size.
    let fd = cvt(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 returned a new descriptor that we now own.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let addr = sockaddr_to_addr(&storage)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))?;
    Ok((mio::net::TcpStream::from_std(stream), addr))
}

/// The address in a sockaddr filled by the kernel (IPv4 or IPv6).
fn sockaddr_to_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Raises RLIMIT_NOFILE towards `want` open files and returns the soft
/// limit now in force. The soft limit goes up to the hard limit; past it,
/// the hard limit is raised too when the process may (root, or
/// CAP_SYS_RESOURCE), as far as the kernel's ceiling `fs.nr_open`, as
/// nginx's `worker_rlimit_nofile` does. Workers inherit the result.
pub fn raise_nofile_limit(want: u64) -> io::Result<u64> {
    let (cur, max) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if cur >= want {
        return Ok(cur);
    }
    if want > max {
        let ceiling = nr_open().unwrap_or(max);
        let hard = want.min(ceiling);
        // EPERM without privilege: then only the soft limit moves, below.
        if hard > max && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            return Ok(hard);
        }
    }
    let soft = want.min(max);
    if soft > cur {
        setrlimit(Resource::RLIMIT_NOFILE, soft, max)?;
        return Ok(soft);
    }
    Ok(cur)
}

/// The most open files any process may have (`/proc/sys/fs/nr_open`).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Takes over a listening socket inherited from another forklb (binary
/// upgrade): checks it is a listening TCP socket, marks it close-on-exec and
/// non-blocking again, and returns it with its address.
pub fn adopt_inherited(fd: RawFd) -> io::Result<(TcpListener, SocketAddr)> {
    // SAFETY: fd was handed to this process to own (FORKLB_FDS, LISTEN_FDS,
    // upgrade_sock) and nothing else here uses it. If it is no listening
    // socket, ownership goes back to the caller unclosed, as it came.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    match getsockopt(&listener, sockopt::AcceptConn) {
        Ok(true) => {}
        Ok(false) => {
            let _ = listener.into_raw_fd();
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("inherited fd {fd} is not a listening socket"),
            ));
        }
        Err(e) => {
            let _ = listener.into_raw_fd();
            return Err(e.into());
        }
    }
    set_cloexec(fd, true)?;
    listener.set_nonblocking(true)?;
    // Whoever created it may not have set it; accepted sockets inherit it.
    setsockopt(&listener, sockopt::TcpNoDelay, &true)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Makes the socket's close an RST instead of a FIN (SO_LINGER 0): the way
/// to tell a client whose response ends with the connection that it was
/// cut short — after a FIN it would take what it got as complete.
pub fn reset_on_close(sock: &impl AsFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(sock, sockopt::Linger, &linger)?;
    Ok(())
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let mut flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    flags.set(FdFlag::FD_CLOEXEC, on);
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}
