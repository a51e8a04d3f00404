//! What the master knows of the instance and the workers do not: its pid,
//! when it started, whether it is stopping, the rates it samples once a
//! second, and the totals of the generations before this one. The master
//! publishes them at every sample; a worker's `metrics: haproxy` reads them.
//! Written by the master only; each field stands alone, so `Relaxed`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

#[repr(C, align(64))]
pub struct InstanceShared {
    master_pid: AtomicU32,
    stopping: AtomicU32,
    started_unix: AtomicU64,
    conn_rate: AtomicU64,
    max_conn_rate: AtomicU64,
    req_rate: AtomicU64,
    max_req_rate: AtomicU64,
    idle_pct: AtomicU64,
    /// Connections and requests of earlier generations (lifetime totals
    /// minus this generation's own).
    earlier_conns: AtomicU64,
    earlier_requests: AtomicU64,
}

/// A copy of [`InstanceShared`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Instance {
    pub master_pid: u32,
    pub stopping: bool,
    pub started_unix: u64,
    pub conn_rate: u64,
    pub max_conn_rate: u64,
    pub req_rate: u64,
    pub max_req_rate: u64,
    pub idle_pct: u64,
    pub earlier_conns: u64,
    pub earlier_requests: u64,
}

impl InstanceShared {
    /// The master's view, published.
    pub fn publish(&self, i: &Instance) {
        self.master_pid.store(i.master_pid, Relaxed);
        self.stopping.store(u32::from(i.stopping), Relaxed);
        self.started_unix.store(i.started_unix, Relaxed);
        self.conn_rate.store(i.conn_rate, Relaxed);
        self.max_conn_rate.store(i.max_conn_rate, Relaxed);
        self.req_rate.store(i.req_rate, Relaxed);
        self.max_req_rate.store(i.max_req_rate, Relaxed);
        self.idle_pct.store(i.idle_pct, Relaxed);
        self.earlier_conns.store(i.earlier_conns, Relaxed);
        self.earlier_requests.store(i.earlier_requests, Relaxed);
    }

    pub fn read(&self) -> Instance {
        Instance {
            master_pid: self.master_pid.load(Relaxed),
            stopping: self.stopping.load(Relaxed) != 0,
            started_unix: self.started_unix.load(Relaxed),
            conn_rate: self.conn_rate.load(Relaxed),
            max_conn_rate: self.max_conn_rate.load(Relaxed),
            req_rate: self.req_rate.load(Relaxed),
            max_req_rate: self.max_req_rate.load(Relaxed),
            idle_pct: self.idle_pct.load(Relaxed),
            earlier_conns: self.earlier_conns.load(Relaxed),
            earlier_requests: self.earlier_requests.load(Relaxed),
        }
    }
}
