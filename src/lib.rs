//! forklb: an nginx-style master/worker reverse proxy and load balancer.
//!
//! Module map (DESIGN §5): `cli` parses the command line, `config` the YAML
//! file; `master` owns processes, signals and the pid file; `worker` runs the
//! mio event loop whose connections are driven by `proxy`, with `http` for
//! head parsing, framing and rewriting, `route` for the compiled routes,
//! `balance` for server choice, `net` for sockets, `buffer` for pooled
//! buffers, `signals` for signal delivery and `log` for the error log.

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod event;
pub mod health;
pub mod http;
pub mod log;
pub mod master;
pub mod metrics;
pub mod net;
pub mod procfs;
pub mod proxy;
pub mod route;
pub mod shm;
pub mod signals;
pub mod tls;
pub mod upgrade_cmd;
pub mod worker;
