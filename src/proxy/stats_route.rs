//! A `stats` route's answer (the dashboard), asked the same way by the
//! HTTP/1.1 session (`conn.rs`) and by an HTTP/2 exchange (`exchange.rs`);
//! each then writes it in its own framing.

use super::env::Env;
use crate::dashboard::{self, Answer};
use std::net::IpAddr;

/// The dashboard's answer to `req` from `peer` on `listener`. A change it
/// made is noted in `env.state_changed`: the worker then tells the master,
/// which rewrites the state file as after the admin socket's command.
pub fn answer(
    env: &mut Env,
    stats: &crate::config::Stats,
    req: &httparse::Request,
    peer: IpAddr,
    listener: usize,
) -> Answer {
    let request = dashboard::Request {
        method: req.method.unwrap_or("GET"),
        target: req.path.unwrap_or("/"),
        headers: req.headers,
        peer,
        scheme: env.rt.listeners.get(listener).map_or("http", |l| l.proto),
    };
    let inst = dashboard::Instance {
        config: env.rt,
        shm: env.shm,
        generation: env.rt.generation,
        draining: env.draining,
    };
    let a = dashboard::answer(stats, &request, &inst);
    *env.state_changed |= a.state_changed;
    a
}
