//! The listening sockets the master owns (bound, inherited or taken over),
//! which it hands to its workers, to a new binary (USR2) and over
//! `upgrade_sock` (`-u`).

use std::net::{SocketAddr, TcpListener};

/// A listening socket owned by the master, for listener `listener` of the
/// configuration.
pub struct BoundSocket {
    pub listener: usize,
    pub addr: SocketAddr,
    pub socket: TcpListener,
}
