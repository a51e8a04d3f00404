//! forklb: an nginx-style master/worker reverse proxy and load balancer.
//!
//! Module map (DESIGN §5), from the top layer down; a module imports only
//! modules below it (`tools/structure_report.py` reports any circle):
//!
//! - `cli`: the command line; the only place that maps errors to exit codes.
//! - `upgrade_cmd`: `forklb -s upgrade`, the whole binary-upgrade sequence.
//! - `master`: processes, signals, reload, upgrade, pid file, listening sockets.
//! - `admin`: the runtime API (socket, commands, `show stat` and state file).
//! - `worker`: a worker's mio event loop, accept balancing and deadlines.
//! - `proxy`: one client connection's state machine and the upstream pool.
//! - `health`: the active health checker process.
//! - `event`: what the event loops share: slab, token layout, plain/TLS stream.
//! - `metrics`: the Prometheus text of the shared counters.
//! - `balance`: server choice (round robin, leastconn, hash, ...).
//! - `route`: the compiled routes and upstreams a worker runs with.
//! - `access_log`: access log lines, buffered and reopened.
//! - `config`: the YAML file: schema, units, validation.
//! - `tls`: certificates, SNI, session tickets, the non-blocking TLS stream.
//! - `http`: head parsing, framing, rewriting, error pages.
//! - `h2`: HTTP/2 sans-IO: frames, HPACK, flow control, the server connection.
//! - `shm`: the state shared by all processes of a generation.
//! - `net`: sockets: listeners, inheritance, socket options.
//! - `proxy_proto`: the PROXY protocol header (v1, v2), read and written.
//! - `buffer`: pooled buffers.
//! - `signals`: signal delivery into the event loops.
//! - `log`: the error log.
//! - `procfs`: facts about processes from /proc.

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod event;
pub mod h2;
pub mod health;
pub mod http;
pub mod log;
pub mod master;
pub mod metrics;
pub mod metrics_haproxy;
pub mod net;
pub mod procfs;
pub mod proxy;
pub mod proxy_proto;
pub mod route;
pub mod shm;
pub mod signals;
pub mod tls;
pub mod upgrade_cmd;
pub mod worker;
