//! Shared helpers for the integration tests (std only, plus `libc`, which is a
//! regular dependency of the crate and therefore visible to integration tests,
//! and the dev-dependency `serde_json` for [`cdp`]'s JSON messages).
//! Every integration test file compiles this module on its own (`mod support;`)
//! and uses only part of it, hence the `allow` below. One file per concern:
//!
//! * [`admin`]: [`socat`], [`admin_cmd`]: the admin socket, as operators drive it.
//! * [`basics`]: [`free_port`], [`refused_addr`], [`wait_until`], [`TempDir`],
//!   [`pseudo_random_bytes`].
//! * [`wire`]: reading HTTP/1.1 messages off a socket (client and backends).
//! * [`client`]: [`http_get`], [`get_with`], [`Conn`], [`Response`]: a minimal
//!   HTTP/1.1 client that sends exact bytes.
//! * [`backend`]: [`Backend`], a tiny threaded HTTP/1.1 origin server that
//!   answers 200 with its name as the body and records every request it
//!   receives (chunked request bodies are de-chunked, and kept verbatim in
//!   `raw_body`). Options ([`BackendOpts`]): scripted raw responses per path
//!   ([`Script`]: keep-alive, close, or a 101-style echo tunnel), early
//!   answers ([`EarlyScript`]), closing idle keep-alive connections, a
//!   streamed pattern body of any size, the request path as the body.
//! * [`procfs`]: processes and sockets seen through /proc, signals, [`Paused`].
//! * [`config`]: [`ConfigBuilder`] and the standard shapes [`proxy_config`]
//!   and [`upstream_config`].
//! * [`forklb`]: [`Forklb`] runs the `forklb` binary in the foreground on a
//!   generated configuration in a private temporary folder, and inspects its
//!   processes; [`run_forklb`] runs it once (`-t`, `-V`, ...).
//! * [`load`]: continuous client [`Load`] judged by [`Check`]s, [`concurrently`].
//! * [`tls`]: test certificates (rcgen), a rustls client, an HTTPS backend.
//! * [`openssl`]: `openssl s_client` runs and openssl-made files (RSA and
//!   encrypted keys).
//! * [`notify`]: a systemd `NOTIFY_SOCKET` listener.
//! * [`h2`]: HTTP/2 clients (curl, nghttp, h2load, h2spec, the Python
//!   clients of `tests/h2_attack/`) and [`H2Lb`], forklb with a TLS, an h2c
//!   and a plain listener.
//! * [`haproxy`]: [`HaproxyProcess`], a real HAProxy on a test's configuration.
//! * [`cdp`]: [`cdp::Browser`], headless Chromium driven over the DevTools
//!   protocol on `--remote-debugging-pipe` (evaluate, click, screenshots).
//! * [`h2_origin`]: [`H2Origin`], the HTTP/2 origin of `tests/h2_attack/h2_backend.py`
//!   (h2c or TLS with ALPN `h2`) and the requests it logged ([`OriginRequest`]).
//!
//! Every read has a timeout and every wait loop has a deadline, so no test can hang.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

pub mod admin;
pub mod backend;
pub mod basics;
pub mod cdp;
pub mod client;
pub mod config;
pub mod forklb;
pub mod h2;
pub mod h2_origin;
pub mod haproxy;
pub mod load;
pub mod notify;
pub mod openssl;
pub mod procfs;
pub mod tls;
pub mod wire;

pub use admin::*;
pub use backend::*;
pub use basics::*;
pub use client::*;
pub use config::*;
pub use forklb::*;
pub use h2::*;
pub use h2_origin::*;
pub use haproxy::*;
pub use load::*;
pub use procfs::*;
pub(crate) use wire::*;

pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

/// Read/write timeout of every client and backend socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `Forklb::start` waits for the pid file and the listener.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request or response head the helpers accept.
const MAX_HEAD: usize = 1 << 20;
