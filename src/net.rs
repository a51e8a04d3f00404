//! Listening sockets: created by the master before forking, shared by all
//! workers. Each worker registers the shared socket in its own epoll with
//! EPOLLEXCLUSIVE, so one incoming connection wakes one worker, not all of
//! them (mio registers edge-triggered without that flag, hence the raw
//! `epoll_ctl`). We prefer one shared socket over one SO_REUSEPORT socket per
//! worker because a shared socket loses nothing when a worker dies or the
//! worker count changes on reload, and it is one fd to hand over on upgrade.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: fd is a valid socket; the option value is a plain c_int.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Converts a std address into a sockaddr_storage for bind/connect.
fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is a valid "empty" value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Creates a non-blocking, close-on-exec listening socket on `addr`.
pub fn bind_listener(addr: SocketAddr) -> Result<TcpListener, NetError> {
    let fail = |op, err| NetError { addr, op, err };
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
    .map_err(|e| fail("socket", e))?;
    // SAFETY: fd was just created and is owned here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).map_err(|e| fail("setsockopt", e))?;
    // Accepted sockets inherit TCP_NODELAY (small responses must not wait
    // for Nagle), which saves a setsockopt per connection.
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1).map_err(|e| fail("setsockopt", e))?;
    if addr.is_ipv6() {
        // "[::]:80" should not also grab IPv4, so an IPv4 listener can coexist.
        set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
            .map_err(|e| fail("setsockopt", e))?;
    }
    let (storage, len) = sockaddr_of(&addr);
    // SAFETY: storage holds a valid sockaddr of length len.
    cvt(unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) })
        .map_err(|e| fail("bind", e))?;
    // SAFETY: fd is a bound stream socket.
    cvt(unsafe { libc::listen(fd, LISTEN_BACKLOG) }).map_err(|e| fail("listen", e))?;
    Ok(TcpListener::from(owned))
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

/// Accepts one connection: non-blocking, close-on-exec, TCP_NODELAY.
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
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid out-parameter.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    if rl.rlim_cur >= want {
        return Ok(rl.rlim_cur);
    }
    if want > rl.rlim_max {
        let ceiling = nr_open().unwrap_or(rl.rlim_max);
        let hard = want.min(ceiling);
        if hard > rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: hard,
                rlim_max: hard,
            };
            // SAFETY: raised holds valid limits. EPERM without privilege:
            // then only the soft limit moves, below.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                return Ok(hard);
            }
        }
    }
    let soft = want.min(rl.rlim_max);
    if soft > rl.rlim_cur {
        rl.rlim_cur = soft;
        // SAFETY: rl holds valid limits.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })?;
    }
    Ok(rl.rlim_cur)
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
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: querying an option of a descriptor; fails cleanly if fd is not a socket.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut accepting as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    if accepting == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited fd {fd} is not a listening socket"),
        ));
    }
    // SAFETY: fd is an open listening socket handed to us; we own it now.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    set_cloexec(fd, true)?;
    listener.set_nonblocking(true)?;
    // Whoever created it may not have set it; accepted sockets inherit it.
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor we hold.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) }).map(|_| ())
}
