//! forklb: an nginx-style master/worker reverse proxy and load balancer.
//!
//! Module map (DESIGN §5): `cli` parses the command line, `config` the YAML file,
//! `master` owns processes and signals, `worker` runs the mio event loop whose
//! connections are driven by `proxy`, with `http` for head parsing and framing,
//! `balance` for server choice, `net` for sockets and `log` for the error log.

pub mod config;
