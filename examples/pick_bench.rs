//! Micro-benchmark of server selection: nanoseconds per `Balancer::pick`
//! for each algorithm over 2, 8 and 64 servers, on the same shared-memory
//! state the workers read (weights 1–3, a few requests in flight).
//!
//! Run with `cargo run --release --example pick_bench`.

use forklb::balance::{hash_bytes, Balancer, PickCtx};
use forklb::config::Balance;
use forklb::config::Server as ServerRt;
use forklb::shm::Shm;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [2, 8, 64];
const ALGOS: [(&str, Balance); 6] = [
    ("roundrobin", Balance::Roundrobin),
    ("static-rr", Balance::StaticRr),
    ("leastconn", Balance::Leastconn),
    ("random", Balance::Random),
    ("hash", Balance::Hash),
    ("first", Balance::First),
];
/// Measuring time per case (after a warm-up of a quarter of that).
const MEASURE: Duration = Duration::from_millis(120);
/// Distinct hash keys cycled through (hash only).
const KEYS: usize = 4096;

fn servers(n: usize) -> Vec<ServerRt> {
    (0..n)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", 10_000 + i);
            ServerRt {
                name: format!("s{i}"),
                addr: addr.parse().expect("address"),
                addr_text: addr,
                tls_name: None,
                weight: (i % 3) as u32 + 1,
                backup: false,
                maxconn: 0,
                id: i + 1,
            }
        })
        .collect()
}

fn shm_for(servers: &[ServerRt]) -> Shm {
    let shm = Shm::create(&[servers.len()], 1).expect("shared memory");
    for (i, s) in servers.iter().enumerate() {
        let sh = shm.server(0, i);
        sh.init(s.weight, None, 0);
        // Some requests in flight, so leastconn and random compare real loads.
        for _ in 0..i % 5 {
            sh.begin_request();
        }
    }
    shm
}

/// Runs picks for about `d`; returns (picks, elapsed).
fn run(
    b: &mut Balancer,
    servers: &[ServerRt],
    shm: &Shm,
    keys: &[u64],
    hashed: bool,
    d: Duration,
) -> (u64, Duration) {
    let start = Instant::now();
    let mut picks = 0u64;
    let mut k = 0usize;
    loop {
        for _ in 0..1024 {
            let ctx = PickCtx {
                shm,
                upstream: 0,
                now_ms: 1_000,
                key: if hashed { Some(keys[k]) } else { None },
            };
            k = (k + 1) % keys.len();
            black_box(b.pick(black_box(servers), &ctx, &[]));
        }
        picks += 1024;
        let e = start.elapsed();
        if e >= d {
            return (picks, e);
        }
    }
}

fn main() {
    let keys: Vec<u64> = (0..KEYS)
        .map(|i| hash_bytes(format!("user-{i}").as_bytes()))
        .collect();
    println!("forklb pick micro-benchmark: ns per pick (weights 1-3, some requests in flight)\n");
    print!("{:<12}", "algorithm");
    for n in SIZES {
        print!("{:>12}", format!("{n} servers"));
    }
    println!();
    print!("{:-<12}", "");
    for _ in SIZES {
        print!("{:->12}", "");
    }
    println!();
    let mut ring_builds = Vec::new();
    for (name, algo) in ALGOS {
        print!("{name:<12}");
        for n in SIZES {
            let servers = servers(n);
            let shm = shm_for(&servers);
            let mut b = Balancer::new(algo, n);
            let hashed = algo == Balance::Hash;
            if hashed {
                // The first keyed pick builds the ring (once per weight change).
                let t = Instant::now();
                let ctx = PickCtx {
                    shm: &shm,
                    upstream: 0,
                    now_ms: 1_000,
                    key: Some(keys[0]),
                };
                black_box(b.pick(&servers, &ctx, &[]));
                ring_builds.push((n, t.elapsed()));
            }
            run(&mut b, &servers, &shm, &keys, hashed, MEASURE / 4);
            let (picks, e) = run(&mut b, &servers, &shm, &keys, hashed, MEASURE);
            let ns = e.as_nanos() as f64 / picks as f64;
            print!("{ns:>12.1}");
        }
        println!();
    }
    println!();
    for (n, t) in ring_builds {
        println!(
            "hash ring build ({} points) for {n} servers: {:.1} us",
            (0..n).map(|i| (i % 3 + 1) * 100).sum::<usize>(),
            t.as_secs_f64() * 1e6
        );
    }
}
