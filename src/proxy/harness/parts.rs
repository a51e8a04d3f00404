//! What a worker owns and lends its connections (`Env`), built from a
//! configuration as `Worker::new` and the master build them, and the
//! loopback client connection the harness hands the proxy.

use crate::access_log::AccessLog;
use crate::balance::Balancer;
use crate::buffer::{BufPool, VecPool};
use crate::config::Config;
use crate::event::token::UpstreamOwners;
use crate::event::Slab;
use crate::http::date::DateCache;
use crate::proxy::Pool;
use crate::route::Runtime;
use crate::shm::Shm;
use mio::net::TcpStream;
use std::time::{Duration, Instant};

/// What the worker would own, lent to the connection as an `Env`.
pub struct WorkerParts {
    pub rt: Runtime,
    pub bufs: BufPool,
    pub heads: VecPool,
    pub balancers: Vec<Balancer>,
    pub pool: Pool,
    pub up_owners: UpstreamOwners,
    pub access: AccessLog,
    pub shm: Shm,
    pub date: DateCache,
    pub h2up: crate::proxy::H2Upstreams,
    pub wake: Vec<usize>,
    pub state_changed: bool,
    pub queues: crate::proxy::Queues,
}

impl WorkerParts {
    /// As `Worker::new` and the master's `build_shm` (every server READY
    /// with its weight), for worker slot 0 of one.
    pub fn new(config: &Config) -> WorkerParts {
        let rt = Runtime::new(config);
        let counts: Vec<usize> = rt.upstreams.iter().map(|u| u.servers.len()).collect();
        let shm = Shm::create(&counts, 1).unwrap_or_else(|e| panic!("shm: {e}"));
        for (ui, up) in rt.upstreams.iter().enumerate() {
            let full_health = up.health.as_ref().map(|h| h.rise + h.fall - 1);
            for (si, s) in up.servers.iter().enumerate() {
                shm.server(ui, si)
                    .init(s.weight, full_health, crate::shm::unix_secs());
            }
        }
        let balancers = rt
            .upstreams
            .iter()
            .map(|u| Balancer::new(u.balance, u.servers.len()))
            .collect();
        let pool = Pool::new(
            rt.upstreams.iter().map(|u| u.keepalive).collect(),
            Duration::from_secs(50),
        );
        WorkerParts {
            bufs: BufPool::new((rt.max_header_bytes + 4096).max(16 * 1024), 1024, 64),
            heads: VecPool::new(1024, 1024),
            balancers,
            pool,
            up_owners: Slab::new(),
            access: AccessLog::disabled(),
            shm,
            date: DateCache::new(Instant::now()),
            h2up: crate::proxy::H2Upstreams::default(),
            wake: Vec::new(),
            state_changed: false,
            queues: crate::proxy::Queues::new(rt.upstreams.len()),
            rt,
        }
    }
}

pub fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A connected loopback pair: the client's end, the accepted end (what a
/// listener gives the worker) and the client's address.
pub fn connect_pair() -> (TcpStream, TcpStream, std::net::SocketAddr) {
    let listener =
        std::net::TcpListener::bind(loopback()).unwrap_or_else(|e| panic!("client bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("listener address: {e}"));
    // Loopback connects complete in the kernel at once: the accept below
    // finds the connection queued (a blocking connect returned, so the
    // handshake is done).
    let client = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    let (accepted, peer) = listener
        .accept()
        .unwrap_or_else(|e| panic!("client accept: {e}"));
    for s in [&client, &accepted] {
        s.set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let _ = s.set_nodelay(true);
    }
    (
        TcpStream::from_std(client),
        TcpStream::from_std(accepted),
        peer,
    )
}
