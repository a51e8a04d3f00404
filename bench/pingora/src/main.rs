//! Pingora's load-balancer quick start, as a bench peer (bench/run.sh).
//!
//!   pingora-lb --upstream 127.0.0.1:8001 --upstream 127.0.0.1:8002 \
//!       [--listen 127.0.0.1:8080] \
//!       [--tls-listen 127.0.0.1:8443 --cert cert.pem --key key.pem] \
//!       [--threads 2] [--pool 512]
//!
//! Upstreams may also come from PINGORA_UPSTREAMS (comma separated). At least
//! one of --listen / --tls-listen. The bench runs one process with a plain
//! listener and another with a TLS one, like its other proxies.
//!
//! What it does, as in the quick start:
//! - round robin over the upstreams (LoadBalancer<RoundRobin>, no health check:
//!   the bench's backends are up for the whole run);
//! - plain HTTP/1.1 to the upstreams (no TLS, no SNI), with the Host header set
//!   to the chosen upstream's address (as nginx's default `proxy_set_header
//!   Host $proxy_host` does);
//! - keep-alive to the upstreams through Pingora's connection pool (its
//!   default; nothing to switch on). `upstream_keepalive_pool_size` is per
//!   worker thread (default 128): the pool, one LRU for the process, keeps at
//!   most that times `threads` idle connections. Here 512 (--pool), so 1,024
//!   in all with 2 threads, as forklb's and nginx's TLS instances (512 per
//!   worker, bench/run.sh's TLS_KEEPALIVE): scenario 11's 800 requests in
//!   flight, each on its own HTTP/1.1 upstream connection, can all go back to
//!   the pool instead of being closed;
//! - `threads: 2` (--threads) in the server conf: two worker threads, as the
//!   other proxies have two workers/threads on this 2-core machine;
//! - a TLS listener (rustls) with `enable_h2()`: ALPN h2 and http/1.1.
use async_trait::async_trait;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::sync::Arc;

pub struct LB(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for LB {
    /// The chosen upstream's address, for the Host header.
    type CTX = String;
    fn new_ctx(&self) -> Self::CTX {
        String::new()
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut String,
    ) -> Result<Box<HttpPeer>> {
        let upstream = self
            .0
            .select(b"", 256) // round robin: the key does not matter
            .ok_or_else(|| Error::explain(HTTPStatus(502), "no upstream"))?;
        *ctx = upstream.addr.to_string();
        // tls = false: plain HTTP to the backends; the SNI is then unused.
        let peer = Box::new(HttpPeer::new(upstream, false, String::new()));
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut String,
    ) -> Result<()> {
        // As the quick start: Host = the upstream (here its address).
        upstream_request.insert_header("Host", ctx.as_str())?;
        Ok(())
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("pingora-lb: {msg}");
    eprintln!(
        "usage: pingora-lb --upstream HOST:PORT... [--listen ADDR] \
         [--tls-listen ADDR --cert PEM --key PEM] [--threads N] [--pool N]"
    );
    std::process::exit(2);
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    let mut upstreams: Vec<String> = std::env::var("PINGORA_UPSTREAMS")
        .map(|s| {
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let (mut listen, mut tls_listen, mut cert, mut key) = (None, None, None, None);
    let (mut threads, mut pool) = (2usize, 512usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--upstream" => upstreams.push(val()),
            "--listen" => listen = Some(val()),
            "--tls-listen" => tls_listen = Some(val()),
            "--cert" => cert = Some(val()),
            "--key" => key = Some(val()),
            "--threads" => threads = val().parse().unwrap_or_else(|_| usage("bad --threads")),
            "--pool" => pool = val().parse().unwrap_or_else(|_| usage("bad --pool")),
            "-h" | "--help" => usage("help"),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if upstreams.is_empty() {
        usage("no upstream (--upstream or PINGORA_UPSTREAMS)");
    }
    if listen.is_none() && tls_listen.is_none() {
        usage("nothing to listen on (--listen and/or --tls-listen)");
    }

    // The server conf, as a YAML file would give it (docs/user_guide/conf.md).
    // grace_period_seconds 0, graceful_shutdown_timeout_seconds 1: on SIGTERM
    // (graceful shutdown) stop listening and exit within a second instead of
    // Pingora's default 5-minute grace period: the bench stops it with SIGTERM
    // (SIGINT would be Pingora's fast shutdown).
    let conf = ServerConf::from_yaml(&format!(
        "---\nversion: 1\nthreads: {threads}\nupstream_keepalive_pool_size: {pool}\n\
         grace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n"
    ))
    .unwrap_or_else(|e| usage(&format!("server conf: {e}")));
    let mut my_server = Server::new_with_opt_and_conf(None, conf);
    my_server.bootstrap();

    let lb = LoadBalancer::try_from_iter(upstreams.iter().map(String::as_str))
        .unwrap_or_else(|e| usage(&format!("upstreams: {e}")));
    let mut svc = http_proxy_service(&my_server.configuration, LB(Arc::new(lb)));
    if let Some(addr) = &listen {
        svc.add_tcp(addr);
    }
    if let Some(addr) = &tls_listen {
        let (Some(cert), Some(key)) = (&cert, &key) else {
            usage("--tls-listen needs --cert and --key");
        };
        let mut tls = TlsSettings::intermediate(cert, key)
            .unwrap_or_else(|e| usage(&format!("TLS settings: {e}")));
        tls.enable_h2();
        svc.add_tls_with_settings(addr, None, tls);
    }
    my_server.add_service(svc);
    my_server.run_forever();
}
