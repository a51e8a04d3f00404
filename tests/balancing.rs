//! Balancing algorithms over several worker processes that share server
//! state: weighted round robin, leastconn, consistent hashing (source, uri,
//! header, cookie), random (power of two choices), first, and backups.

mod support;

use std::collections::HashMap;
use std::time::Duration;
use support::*;

/// For each worker of `lb`: how many connections it holds open to
/// 127.0.0.1:`port` (in flight or idle in its keep-alive pool).
fn worker_conns(lb: &Forklb, port: u16) -> Vec<(i32, usize)> {
    let conns = connections_to(port);
    lb.worker_pids()
        .into_iter()
        .map(|p| {
            let mine = socket_inodes_of(p);
            (p, conns.iter().filter(|i| mine.contains(i)).count())
        })
        .collect()
}

/// How many workers hold a connection to any of `backends` (a worker that
/// proxied a request keeps the upstream connection in its pool).
fn workers_with_upstream_conns(lb: &Forklb, backends: &[&Backend]) -> usize {
    let per: Vec<Vec<(i32, usize)>> = backends
        .iter()
        .map(|b| worker_conns(lb, b.port()))
        .collect();
    lb.worker_pids()
        .iter()
        .filter(|&&p| per.iter().flatten().any(|&(q, n)| q == p && n > 0))
        .count()
}

#[test]
fn weights_3_to_1_over_two_workers() {
    let heavy = Backend::start("heavy");
    let light = Backend::start("light");
    let cfg = upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&heavy).weight(3), Srv::of(&light).weight(1)],
        &[],
    );
    let lb = Forklb::start(&cfg);
    let (x, y) = two_workers(&lb);
    let port = lb.port();

    // New connection per request, from 4 threads at once; each worker
    // serves half of them (the other one is stopped meanwhile).
    let mut bodies = Vec::new();
    for (serving, stopped) in [(x, y), (y, x)] {
        let paused = Paused::new(stopped);
        bodies.extend(burst_bodies(port, &format!("/w/{serving}"), 4, 50));
        drop(paused);
    }
    let h = count_of(&bodies, &"heavy".to_owned());
    let l = count_of(&bodies, &"light".to_owned());
    eprintln!("heavy {h}, light {l}");
    assert_eq!(h + l, 400);
    assert!(
        (280..=320).contains(&h),
        "weight 3 of 4 should get 75% ± 5% of 400 requests: heavy {h}, light {l}"
    );
    assert_eq!(heavy.request_count(), h);
    assert_eq!(light.request_count(), l);
    assert_eq!(
        workers_with_upstream_conns(&lb, &[&heavy, &light]),
        2,
        "both workers should have proxied requests (pooled upstream connections: heavy {:?}, light {:?})",
        worker_conns(&lb, heavy.port()),
        worker_conns(&lb, light.port())
    );
}

/// The two workers of `lb`.
fn two_workers(lb: &Forklb) -> (i32, i32) {
    let w = lb.wait_workers(2, Duration::from_secs(5));
    (w[0], w[1])
}

/// A backend whose `/slow` requests take `slow` to answer.
fn slow_backend(name: &str, slow: Duration) -> Backend {
    Backend::start_with(
        name,
        BackendOpts {
            path_delays: vec![("/slow".to_owned(), slow)],
            ..Default::default()
        },
    )
}

#[test]
fn leastconn_avoids_a_server_busy_with_slow_requests_of_another_worker() {
    let a = slow_backend("a", Duration::from_secs(6));
    let b = slow_backend("b", Duration::from_millis(1500));
    let lb = Forklb::start(&upstream_config(
        2,
        "leastconn",
        &[Srv::of(&a), Srv::of(&b)],
        &[],
    ));
    lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();

    // Worker x takes the slow requests, worker y the fast ones: the other
    // one is stopped meanwhile (SIGSTOP), so y knows a is busy only from
    // the shared state.
    let (x, y) = two_workers(&lb);
    // 12 slow requests, sent one after the other (each once a backend has
    // it): leastconn alternates, so each server gets about 6.
    let y_paused = Paused::new(y);
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for k in 0..12 {
        slow.push(std::thread::spawn(move || {
            let mut c = Conn::open(port)?;
            c.set_read_timeout(Duration::from_secs(20));
            c.get(&format!("/slow/{k}"))
                .map(|r| (r.status, r.body_str()))
        }));
        let seen = |be: &Backend| {
            be.requests()
                .iter()
                .filter(|r| r.path.starts_with("/slow"))
                .count()
        };
        assert!(
            wait_until(Duration::from_secs(3), || seen(&a) + seen(&b) > k),
            "slow request {k} reached no backend"
        );
    }
    let a_slow = a.request_count();
    let b_slow = b.request_count();
    // b answers its slow requests after 1.5 s; a keeps its own for 8 s.
    assert!(
        wait_until(Duration::from_secs(5), || slow
            .iter()
            .filter(|h| h.is_finished())
            .count()
            >= b_slow),
        "b's slow requests were not answered"
    );
    drop(y_paused);
    let holders = worker_conns(&lb, a.port());
    eprintln!("slow requests: a {a_slow}, b {b_slow}; a's connections per worker {holders:?}");
    assert_eq!(
        holders,
        vec![(x, a_slow), (y, 0)],
        "x should hold all of a's slow requests"
    );
    assert!(
        (4..=8).contains(&a_slow),
        "leastconn should spread 12 slow requests about evenly: a {a_slow}, b {b_slow}"
    );
    let in_flight_on_a: usize = holders.iter().map(|&(_, n)| n).sum();
    assert_eq!(
        in_flight_on_a, a_slow,
        "a's slow requests should all be in flight"
    );

    // Fast requests from 4 threads at once, new connection each, all
    // through worker y (x is stopped). All should go to b while a is busy.
    // Were in-flight counts per worker, y would see a and b idle and send
    // half of them to a.
    let x_paused = Paused::new(x);
    let fast = burst_bodies(port, "/fast", 4, 20);
    let fast_done = started.elapsed();
    drop(x_paused);
    let to_a = count_of(&fast, &"a".to_owned());
    // Which worker proxied each fast request that b got.
    let b_fast: Vec<Request> = b
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/fast"))
        .collect();
    let mut by_worker: Vec<(i32, usize)> = lb.worker_pids().into_iter().map(|p| (p, 0)).collect();
    for w in lb.workers_of(&b, &b_fast).into_iter().flatten() {
        if let Some(e) = by_worker.iter_mut().find(|(p, _)| *p == w) {
            e.1 += 1;
        }
    }
    eprintln!(
        "fast requests: a {to_a}, b {} in {fast_done:?}; b's fast requests per worker {by_worker:?}",
        fast.len() - to_a
    );
    assert!(
        fast_done < Duration::from_secs(5),
        "the fast phase ended after a's slow requests ({fast_done:?}): machine too slow for this test"
    );
    assert!(
        to_a <= 2,
        "leastconn sent {to_a} of 80 new requests to a, which had {a_slow} requests in flight \
         in another worker (b had at most 4)"
    );
    assert_eq!(
        by_worker,
        vec![(x, 0), (y, 80 - to_a)],
        "worker y should have proxied the fast requests"
    );

    // Once a's slow requests are done, leastconn uses both servers again.
    for h in slow {
        let (status, _) = h.join().expect("slow client").expect("slow request");
        assert_eq!(status, 200);
    }
    let after: Vec<String> = (0..40)
        .map(|i| http_get(port, &format!("/after/{i}")).body_str())
        .collect();
    let (na, nb) = (
        count_of(&after, &"a".to_owned()),
        count_of(&after, &"b".to_owned()),
    );
    assert!(
        na >= 10 && nb >= 10,
        "idle servers should share again: a {na}, b {nb}"
    );
}

// ---- Consistent hashing ---------------------------------------------------------------

/// Which backend (by body) answers GET `path` with header `X-User: user`,
/// for each user, over a fresh connection each.
fn assignments(port: u16, users: &[String]) -> HashMap<String, String> {
    users
        .iter()
        .map(|u| {
            let r = get_with(port, "/u", &[("X-User", u), ("Connection", "close")]);
            assert_eq!(r.status, 200, "user {u}: {r:?}");
            (u.clone(), r.body_str())
        })
        .collect()
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// Per backend name, how many of the values in `m` it has.
fn tally(m: &HashMap<String, String>) -> HashMap<String, usize> {
    let mut t = HashMap::new();
    for v in m.values() {
        *t.entry(v.clone()).or_insert(0) += 1;
    }
    t
}

/// After `gone` left: keys of the other servers must not move, keys of
/// `gone` must move to the others (spread over more than one), and about
/// 1/4 of the keys move.
fn check_remap(before: &HashMap<String, String>, after: &HashMap<String, String>, gone: &str) {
    let mut moved = Vec::new();
    for (k, was) in before {
        let now = &after[k];
        if was == gone {
            assert_ne!(now, gone, "key {k} still goes to {gone}");
            moved.push(now.clone());
        } else {
            assert_eq!(
                now, was,
                "key {k} of a remaining server moved from {was} to {now} when {gone} left"
            );
        }
    }
    let frac = moved.len() as f64 / before.len() as f64;
    let mut receivers = moved.clone();
    receivers.sort();
    receivers.dedup();
    eprintln!(
        "{} of {} keys moved ({:.0}%), to {receivers:?}; before {:?}, after {:?}",
        moved.len(),
        before.len(),
        frac * 100.0,
        tally(before),
        tally(after)
    );
    assert!(
        (0.10..=0.40).contains(&frac),
        "about 1/4 of the keys should move when 1 of 4 servers leaves, not {:.0}%",
        frac * 100.0
    );
    assert!(
        receivers.len() >= 2,
        "the keys of {gone} should spread over the remaining servers: {receivers:?}"
    );
}

fn four_backends() -> Vec<Backend> {
    ["a", "b", "c", "d"]
        .iter()
        .map(|n| Backend::start(n))
        .collect()
}

#[test]
fn hash_source_is_sticky_across_workers_and_connections() {
    let bs: Vec<Backend> = ["a", "b", "c"].iter().map(|n| Backend::start(n)).collect();
    let servers: Vec<Srv> = bs.iter().map(Srv::of).collect();
    let lb = Forklb::start(&upstream_config(2, "hash", &servers, &[]));
    let (x, y) = two_workers(&lb);
    let port = lb.port();

    // Through each worker in turn (the other one stopped): new connections
    // from 4 threads at once, and 2 keep-alive connections.
    let mut bodies = Vec::new();
    for (serving, stopped) in [(x, y), (y, x)] {
        let paused = Paused::new(stopped);
        bodies.extend(burst_bodies(port, &format!("/s/{serving}"), 4, 10));
        bodies.extend(
            concurrently(2, 1, move |t, _| {
                let mut c = Conn::open(port).expect("connect");
                (0..15)
                    .map(|i| {
                        c.get(&format!("/ka/{serving}/{t}/{i}"))
                            .expect("GET")
                            .body_str()
                    })
                    .collect::<Vec<_>>()
            })
            .into_iter()
            .flatten(),
        );
        drop(paused);
    }
    let first = bodies[0].clone();
    assert!(
        bodies.iter().all(|b| *b == first),
        "every request from 127.0.0.1 should go to one server: {:?}",
        bodies.iter().fold(HashMap::new(), |mut m, b| {
            *m.entry(b.clone()).or_insert(0) += 1;
            m
        })
    );
    let chosen = bs.iter().find(|b| b.name() == first).unwrap();
    assert_eq!(chosen.request_count(), 140);
    assert_eq!(bodies.len(), 140);
    eprintln!(
        "source hash: all to {first}; connections per worker {:?}",
        worker_conns(&lb, chosen.port())
    );
    assert_eq!(
        workers_with_upstream_conns(&lb, &[chosen]),
        2,
        "both workers should have proxied requests: {:?}",
        worker_conns(&lb, chosen.port())
    );
}

#[test]
fn hash_header_is_sticky_spreads_and_falls_back_to_round_robin() {
    let bs = four_backends();
    let servers: Vec<Srv> = bs.iter().map(Srv::of).collect();
    let lb = Forklb::start(&upstream_config(
        2,
        "hash",
        &servers,
        &["hash_key: header:X-User"],
    ));
    lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();
    let us = users(200);

    let first = assignments(port, &us);
    // Again, from 4 threads at once (both workers), on keep-alive connections.
    let us2 = us.clone();
    let again: HashMap<String, String> = concurrently(4, 1, move |t, _| {
        let mut c = Conn::open(port).expect("connect");
        us2.iter()
            .skip(t)
            .step_by(4)
            .map(|u| {
                let r = c.request("GET", "/u2", &[("X-User", u)], b"").expect("GET");
                (u.clone(), r.body_str())
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(again.len(), 200);
    for u in &us {
        assert_eq!(first[u], again[u], "{u} changed server");
    }
    let t = tally(&first);
    eprintln!("200 users over 4 servers: {t:?}");
    for b in &bs {
        let n = t.get(b.name()).copied().unwrap_or(0);
        assert!(
            n >= 25,
            "server {} got only {n} of 200 users: {t:?}",
            b.name()
        );
    }
    // The header name is case-insensitive; the value is trimmed.
    let r = get_with(port, "/u3", &[("x-user", " user-7 ")]);
    assert_eq!(r.body_str(), first["user-7"]);

    // Without the header: round robin over all servers.
    let bodies: Vec<String> = (0..40)
        .map(|i| http_get(port, &format!("/nokey/{i}")).body_str())
        .collect();
    for b in &bs {
        let n = count_of(&bodies, &b.name().to_owned());
        assert!(
            n >= 5,
            "requests without the key should spread (round robin): {} got {n} of 40",
            b.name()
        );
    }
}

#[test]
fn hash_remaps_only_the_keys_of_a_server_marked_down_by_health_checks() {
    let mut bs = four_backends();
    let servers: Vec<Srv> = bs.iter().map(Srv::of).collect();
    let lb = Forklb::start(&upstream_config(
        2,
        "hash",
        &servers,
        &[
            "hash_key: header:X-User",
            "health: {type: tcp, interval: 200ms, timeout: 500ms, rise: 2, fall: 2}",
        ],
    ));
    let us = users(200);
    let before = assignments(lb.port(), &us);
    bs[3].stop();
    assert!(
        lb.wait_log("server web/d is DOWN", Duration::from_secs(10)),
        "d was not marked DOWN"
    );
    let after = assignments(lb.port(), &us);
    check_remap(&before, &after, "d");
}

#[test]
fn hash_remaps_only_the_keys_of_a_server_marked_down_passively() {
    let mut bs = four_backends();
    let servers: Vec<Srv> = bs.iter().map(Srv::of).collect();
    let lb = Forklb::start(&upstream_config(
        2,
        "hash",
        &servers,
        &["hash_key: header:X-User", "fail_timeout: 60s"],
    ));
    let port = lb.port();
    let us = users(200);
    let before = assignments(port, &us);
    bs[3].stop();
    // d's users: their requests fail to connect and are retried elsewhere
    // (no client error) until max_fails (3) marks d down.
    let d_users: Vec<&String> = us.iter().filter(|u| before[*u] == "d").collect();
    for u in d_users.iter().cycle().take(10) {
        let r = get_with(port, "/u", &[("X-User", u)]);
        assert_eq!(r.status, 200, "user {u} while d is stopped: {r:?}");
        if !lb.log_lines("server web/d marked down").is_empty() {
            break;
        }
    }
    assert!(
        lb.wait_log("server web/d marked down", Duration::from_secs(2)),
        "d was not marked down after failed connections"
    );
    let after = assignments(port, &us);
    check_remap(&before, &after, "d");
}

#[test]
fn hash_remaps_only_the_keys_of_a_server_removed_by_reload() {
    let bs = four_backends();
    let servers: Vec<Srv> = bs.iter().map(Srv::of).collect();
    let extra = ["hash_key: header:X-User"];
    let lb = Forklb::start(&upstream_config(2, "hash", &servers, &extra));
    let old = lb.wait_workers(2, Duration::from_secs(5));
    let us = users(200);
    let before = assignments(lb.port(), &us);

    lb.write_config(&upstream_config(2, "hash", &servers[..3], &extra));
    lb.signal(SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let now = lb.worker_pids();
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        }),
        "the new generation did not replace the old workers: {:?}\n{}",
        lb.worker_pids(),
        lb.diagnostics()
    );
    let d_count = bs[3].request_count();
    let after = assignments(lb.port(), &us);
    assert_eq!(bs[3].request_count(), d_count, "d is no longer configured");
    check_remap(&before, &after, "d");
}

#[test]
fn hash_cookie_and_uri() {
    let bs: Vec<Backend> = ["a", "b", "c"].iter().map(|n| Backend::start(n)).collect();
    let servers: Vec<Srv> = bs.iter().map(Srv::of).collect();

    // cookie:sid — the sid value decides, wherever it is in the header.
    let lb = Forklb::start(&upstream_config(
        2,
        "hash",
        &servers,
        &["hash_key: cookie:sid"],
    ));
    let port = lb.port();
    let mut by_sid = HashMap::new();
    for i in 0..60 {
        let sid = format!("S{i:03}");
        let r1 = get_with(port, "/c", &[("Cookie", &format!("sid={sid}"))]);
        let r2 = get_with(
            port,
            "/c",
            &[("Cookie", &format!("lang=en; sid={sid}; theme=dark"))],
        );
        let r3 = get_with(
            port,
            "/other",
            &[("Cookie", "a=1"), ("Cookie", &format!("sid={sid}"))],
        );
        assert_eq!(r1.status, 200);
        assert_eq!(
            (r1.body_str(), r1.body_str()),
            (r2.body_str(), r3.body_str()),
            "sid {sid} went to different servers"
        );
        by_sid.insert(sid, r1.body_str());
    }
    let t = tally(&by_sid);
    eprintln!("60 sids over 3 servers: {t:?}");
    assert!(
        bs.iter()
            .all(|b| t.get(b.name()).copied().unwrap_or(0) >= 8),
        "sids should spread over all servers: {t:?}"
    );
    // A cookie whose name only ends in "sid" is not the key: round robin.
    let xs: Vec<String> = (0..12)
        .map(|_| get_with(port, "/c", &[("Cookie", "xsid=S001; sidx=S001")]).body_str())
        .collect();
    assert!(
        bs.iter().all(|b| count_of(&xs, &b.name().to_owned()) >= 2),
        "requests without a sid cookie should spread (round robin): {xs:?}"
    );
    drop(lb);

    // uri — the path decides (the query string does not).
    let lb = Forklb::start(&upstream_config(2, "hash", &servers, &["hash_key: uri"]));
    let port = lb.port();
    let mut by_path = HashMap::new();
    for i in 0..60 {
        let path = format!("/p/{i}");
        let r1 = http_get(port, &path);
        let r2 = get_with(
            port,
            &format!("{path}?q={i}&x=y"),
            &[("Connection", "close")],
        );
        let r3 = http_get(port, &path);
        // Another spelling of the same path (it hashes normalized).
        let r4 = http_get(port, &format!("/x/..//p/./%{:02X}", b'0' + (i % 10) as u8));
        let r4_expected = http_get(port, &format!("/p/{}", i % 10));
        assert_eq!(
            (r1.body_str(), r1.body_str()),
            (r2.body_str(), r3.body_str()),
            "{path} went to different servers"
        );
        assert_eq!(
            r4.body_str(),
            r4_expected.body_str(),
            "a spelling of /p/{} went elsewhere",
            i % 10
        );
        by_path.insert(path, r1.body_str());
    }
    let t = tally(&by_path);
    eprintln!("60 paths over 3 servers: {t:?}");
    assert!(
        bs.iter()
            .all(|b| t.get(b.name()).copied().unwrap_or(0) >= 8),
        "paths should spread over all servers: {t:?}"
    );
}

// ---- Random (power of two choices) ----------------------------------------------------

#[test]
fn random_spreads_over_all_servers() {
    let bs: Vec<Backend> = ["a", "b", "c"].iter().map(|n| Backend::start(n)).collect();
    let servers: Vec<Srv> = bs.iter().map(Srv::of).collect();
    let lb = Forklb::start(&upstream_config(2, "random", &servers, &[]));
    lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();
    let bodies = burst_bodies(port, "/r", 4, 75);
    let counts: Vec<usize> = bs
        .iter()
        .map(|b| count_of(&bodies, &b.name().to_owned()))
        .collect();
    eprintln!("random over 3 servers, 300 requests: {counts:?}");
    assert!(
        counts.iter().all(|&n| n >= 60),
        "each of 3 servers should get a fair share (>= 20%) of 300 requests: {counts:?}"
    );
}

#[test]
fn random_two_choices_avoid_a_server_busy_with_slow_requests_of_another_worker() {
    // b's and c's slow requests must outlast the 18 being sent (under a
    // loaded test run that took over 1.5 s: they ended meanwhile, and two
    // choices rightly sent nearly all the rest to b and c).
    let a = slow_backend("a", Duration::from_secs(8));
    let b = slow_backend("b", Duration::from_millis(2500));
    let c = slow_backend("c", Duration::from_millis(2500));
    let servers = [Srv::of(&a), Srv::of(&b), Srv::of(&c)];
    let lb = Forklb::start(&upstream_config(2, "random", &servers, &[]));
    lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();

    // As for leastconn: worker x takes the slow requests, y the fast ones.
    let (x, y) = two_workers(&lb);
    // 18 slow requests one after the other: two choices spreads them, and
    // a keeps its share for 8 s.
    let y_paused = Paused::new(y);
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    let slow_seen = |be: &Backend| {
        be.requests()
            .iter()
            .filter(|r| r.path.starts_with("/slow"))
            .count()
    };
    for k in 0..18 {
        slow.push(std::thread::spawn(move || {
            let mut c = Conn::open(port)?;
            c.set_read_timeout(Duration::from_secs(20));
            c.get(&format!("/slow/{k}")).map(|r| r.status)
        }));
        assert!(
            wait_until(Duration::from_secs(3), || slow_seen(&a)
                + slow_seen(&b)
                + slow_seen(&c)
                > k),
            "slow request {k} reached no backend"
        );
    }
    let a_slow = slow_seen(&a);
    let others = slow_seen(&b) + slow_seen(&c);
    assert!(
        wait_until(Duration::from_secs(5), || slow
            .iter()
            .filter(|h| h.is_finished())
            .count()
            >= others),
        "b's and c's slow requests were not answered"
    );
    drop(y_paused);
    let holders = worker_conns(&lb, a.port());
    eprintln!("slow requests: a {a_slow}, b+c {others}; a's connections per worker {holders:?}");
    assert!(
        a_slow >= 3,
        "a should hold several slow requests: a {a_slow}, b+c {others}"
    );
    assert_eq!(
        holders,
        vec![(x, a_slow), (y, 0)],
        "x should hold all of a's slow requests"
    );

    // 300 fast requests through worker y: a is drawn twice (and so chosen)
    // only 1 time in 9; without the comparison, or with in-flight counts
    // per worker, it would get 1 in 3.
    let fast_b = b.request_count();
    let fast_c = c.request_count();
    let x_paused = Paused::new(x);
    let fast = burst_bodies(port, "/fast", 4, 75);
    let fast_done = started.elapsed();
    drop(x_paused);
    let to_a = count_of(&fast, &"a".to_owned());
    assert!(
        fast_done < Duration::from_secs(7),
        "the fast phase ended after a's slow requests ({fast_done:?}): machine too slow for this test"
    );
    // Per worker: share of its fast requests that went to a.
    let mut per_worker: HashMap<i32, (usize, usize)> = HashMap::new();
    for (be, skip) in [(&a, a_slow), (&b, fast_b), (&c, fast_c)] {
        let reqs: Vec<Request> = be
            .requests()
            .into_iter()
            .skip(skip)
            .filter(|r| r.path.starts_with("/fast"))
            .collect();
        for w in lb.workers_of(be, &reqs).into_iter().flatten() {
            let e = per_worker.entry(w).or_insert((0, 0));
            e.1 += 1;
            if be.name() == "a" {
                e.0 += 1;
            }
        }
    }
    eprintln!(
        "fast requests: a {to_a} of 300 in {fast_done:?}; per worker (to a, all) {per_worker:?}"
    );
    assert!(
        to_a <= 60,
        "two choices should avoid busy a most of the time: a got {to_a} of 300 (expected ~33)"
    );
    assert_eq!(
        per_worker.get(&x).copied().unwrap_or_default().1,
        0,
        "worker x was stopped during the fast phase: {per_worker:?}"
    );
    for h in slow {
        assert_eq!(h.join().expect("slow client").expect("slow request"), 200);
    }
}

// ---- First -------------------------------------------------------------------------------

#[test]
fn first_uses_the_first_server_until_it_goes_down_then_the_next() {
    let mut a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let servers = [Srv::of(&a), Srv::of(&b), Srv::of(&c)];
    let lb = Forklb::start(&upstream_config(
        2,
        "first",
        &servers,
        &["fail_timeout: 1s"],
    ));
    lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();
    let burst = move |tag: &'static str| burst_bodies(port, &format!("/{tag}"), 4, 10);

    let up = burst("up");
    assert_eq!(
        count_of(&up, &"a".to_owned()),
        40,
        "all to the first server: {up:?}"
    );

    // a goes away: connect failures are retried on b, and a is marked down.
    a.stop();
    let down = burst("down");
    assert_eq!(
        count_of(&down, &"b".to_owned()),
        40,
        "all to the second server: {down:?}"
    );
    assert_eq!(c.request_count(), 0);
    assert!(
        lb.wait_log("server web/a marked down", Duration::from_secs(2)),
        "a not marked down"
    );

    // a is back: once its mark expires (fail_timeout 1 s), it takes all again.
    a.restart();
    let a_before = a.request_count();
    assert!(
        wait_until(Duration::from_secs(5), || {
            http_get(port, "/probe").body_str() == "a"
        }),
        "a did not take traffic again"
    );
    assert!(a.request_count() > a_before);
    let back = burst("back");
    assert_eq!(
        count_of(&back, &"a".to_owned()),
        40,
        "all to the first server again: {back:?}"
    );
}

// ---- Backups ------------------------------------------------------------------------------

#[test]
fn backups_take_over_when_primaries_are_down_and_step_back_when_they_return() {
    let mut p1 = Backend::start("p1");
    let mut p2 = Backend::start("p2");
    let k1 = Backend::start("k1");
    let k2 = Backend::start("k2");
    let servers = [
        Srv::of(&p1),
        Srv::of(&k1).backup(),
        Srv::of(&p2),
        Srv::of(&k2).backup(),
    ];
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &servers,
        &["health: {type: tcp, interval: 200ms, timeout: 500ms, rise: 2, fall: 2}"],
    ));
    lb.wait_workers(2, Duration::from_secs(5));
    let port = lb.port();
    let burst = move |tag: &'static str| burst_bodies(port, &format!("/{tag}"), 4, 10);
    let share = |v: &[String], names: [&str; 2]| names.map(|n| count_of(v, &n.to_owned()));

    let up = burst("up");
    let [n1, n2] = share(&up, ["p1", "p2"]);
    assert!(
        n1 + n2 == 40 && n1 >= 12 && n2 >= 12,
        "primaries share, backups idle: {up:?}"
    );

    p1.stop();
    p2.stop();
    for p in ["p1", "p2"] {
        assert!(
            lb.wait_log(&format!("server web/{p} is DOWN"), Duration::from_secs(10)),
            "{p} not marked DOWN"
        );
    }
    let down = burst("down");
    let [m1, m2] = share(&down, ["k1", "k2"]);
    assert!(
        m1 + m2 == 40 && m1 >= 12 && m2 >= 12,
        "with the primaries DOWN the backups should share the traffic: k1 {m1}, k2 {m2}"
    );

    p1.restart();
    p2.restart();
    for p in ["p1", "p2"] {
        assert!(
            lb.wait_log(&format!("server web/{p} is UP"), Duration::from_secs(10)),
            "{p} not marked UP again"
        );
    }
    let (k1_before, k2_before) = (k1.request_count(), k2.request_count());
    let back = burst("back");
    let [n1, n2] = share(&back, ["p1", "p2"]);
    assert!(
        n1 + n2 == 40 && n1 >= 12 && n2 >= 12,
        "the primaries should take the traffic back: p1 {n1}, p2 {n2}: {back:?}"
    );
    assert_eq!(
        (k1.request_count(), k2.request_count()),
        (k1_before, k2_before)
    );
}

// ---- Weights in the other algorithms, passive marks ------------------------------------

#[test]
fn static_rr_and_leastconn_follow_weights_and_weight_0_gets_nothing() {
    let heavy = Backend::start("heavy");
    let light = Backend::start("light");
    let zero = Backend::start("zero");
    let servers = [
        Srv::of(&heavy).weight(3),
        Srv::of(&light).weight(1),
        Srv::of(&zero).weight(0),
    ];
    for algo in ["static-rr", "leastconn"] {
        let lb = Forklb::start(&upstream_config(2, algo, &servers, &[]));
        let port = lb.port();
        let bodies = burst_bodies(port, "", 4, 100);
        let (h, l, z) = (
            count_of(&bodies, &"heavy".to_owned()),
            count_of(&bodies, &"light".to_owned()),
            count_of(&bodies, &"zero".to_owned()),
        );
        eprintln!("{algo}: heavy {h}, light {l}, zero {z}");
        assert_eq!(z, 0, "{algo}: a server of weight 0 gets no traffic");
        // static-rr is exact per worker; leastconn only has to favour the
        // heavy one under this (light, concurrent) load.
        let (lo, hi) = if algo == "static-rr" {
            (280, 320)
        } else {
            (200, 399)
        };
        assert!(
            (lo..=hi).contains(&h),
            "{algo}: weight 3 of 4 should get about 75% of 400: heavy {h}, light {l}"
        );
    }
}

#[test]
fn leastconn_counts_in_flight_requests_per_unit_of_weight() {
    // Both servers slow: 12 requests held at once end up about 9:3 for
    // weights 3:1 (unweighted, it would be 6:6).
    let a = slow_backend("a", Duration::from_secs(3));
    let b = slow_backend("b", Duration::from_secs(3));
    let lb = Forklb::start(&upstream_config(
        2,
        "leastconn",
        &[Srv::of(&a).weight(3), Srv::of(&b).weight(1)],
        &[],
    ));
    let port = lb.port();
    let mut slow = Vec::new();
    for k in 0..12 {
        slow.push(std::thread::spawn(move || {
            let mut c = Conn::open(port)?;
            c.set_read_timeout(Duration::from_secs(15));
            c.get(&format!("/slow/{k}")).map(|r| r.status)
        }));
        assert!(
            wait_until(Duration::from_secs(3), || a.request_count()
                + b.request_count()
                > k),
            "slow request {k} reached no backend"
        );
    }
    let (na, nb) = (a.request_count(), b.request_count());
    // 9:3 balances exactly; how ties are broken may shift one request.
    assert!(
        na + nb == 12 && (8..=10).contains(&na),
        "in flight per unit of weight 3:1: a {na}, b {nb} (expected about 9:3)"
    );
    for h in slow {
        assert_eq!(h.join().expect("client").expect("slow request"), 200);
    }
}

#[test]
fn hash_ring_follows_weights() {
    let bs = four_backends();
    let servers: Vec<Srv> = bs
        .iter()
        .enumerate()
        .map(|(i, b)| Srv::of(b).weight(if i == 0 { 3 } else { 1 }))
        .collect();
    let lb = Forklb::start(&upstream_config(
        2,
        "hash",
        &servers,
        &["hash_key: header:X-User"],
    ));
    let t = tally(&assignments(lb.port(), &users(300)));
    eprintln!("300 users, weights 3:1:1:1: {t:?}");
    let a = t.get("a").copied().unwrap_or(0);
    // Expected half (150); the ring's spread leaves some room.
    assert!(
        (105..=195).contains(&a),
        "weight 3 of 6 should own about half of the keys: {t:?}"
    );
}

#[test]
fn backups_stay_idle_while_any_primary_is_usable() {
    let mut p1 = Backend::start("p1");
    let p2 = Backend::start("p2");
    let k1 = Backend::start("k1");
    let lb = Forklb::start(&upstream_config(
        2,
        "roundrobin",
        &[Srv::of(&p1), Srv::of(&p2), Srv::of(&k1).backup()],
        &["health: {type: tcp, interval: 200ms, timeout: 500ms, rise: 2, fall: 2}"],
    ));
    let port = lb.port();
    p1.stop();
    assert!(
        lb.wait_log("server web/p1 is DOWN", Duration::from_secs(10)),
        "p1 not marked DOWN"
    );
    let bodies = concurrently(4, 10, move |t, i| {
        get_with(port, &format!("/{t}/{i}"), &[("Connection", "close")]).body_str()
    });
    assert_eq!(count_of(&bodies, &"p2".to_owned()), 40, "{bodies:?}");
    assert_eq!(
        k1.request_count(),
        0,
        "a backup took traffic while p2 was UP"
    );
}

#[test]
fn passive_marks_are_ignored_when_every_server_is_marked() {
    let mut a = Backend::start("a");
    let mut b = Backend::start("b");
    let lb = Forklb::start(&upstream_config(
        1,
        "roundrobin",
        &[Srv::of(&a), Srv::of(&b)],
        &["max_fails: 1", "fail_timeout: 60s"],
    ));
    let port = lb.port();
    a.stop();
    b.stop();
    // Both refuse: 502, and each is marked down for 60 s.
    for i in 0..4 {
        let r = http_get(port, &format!("/dead/{i}"));
        assert_eq!(r.status, 502, "{r:?}");
    }
    for n in ["a", "b"] {
        assert!(
            lb.wait_log(
                &format!("server web/{n} marked down"),
                Duration::from_secs(2)
            ),
            "{n} not marked down\n{}",
            lb.diagnostics()
        );
    }
    // b comes back well within fail_timeout: with every server marked, the
    // marks are ignored, so b is tried (directly or as the retry) and serves.
    b.restart();
    for i in 0..10 {
        let r = http_get(port, &format!("/back/{i}"));
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "b"),
            "request {i} with every server marked down but b back"
        );
    }
}

#[test]
fn max_fails_0_never_marks_a_server_down() {
    let mut a = Backend::start("a");
    let b = Backend::start("b");
    let lb = Forklb::start(&upstream_config(
        1,
        "roundrobin",
        &[Srv::of(&a), Srv::of(&b)],
        &["max_fails: 0"],
    ));
    let port = lb.port();
    a.stop();
    for i in 0..10 {
        let r = http_get(port, &format!("/{i}"));
        assert_eq!((r.status, r.body_str().as_str()), (200, "b"), "request {i}");
    }
    assert!(
        lb.log_lines("marked down").is_empty(),
        "{:?}",
        lb.log_lines("marked down")
    );
    // Without marks, a is still picked in turn (and the request retried on b).
    assert!(
        lb.log_lines("connect() to").len() >= 4,
        "a should still be tried: {:?}",
        lb.log_lines("connect() to")
    );
}

/// Requests one after the other on one keep-alive connection (so no other
/// request is ever in flight) to `balance: algo` over weights 3:1; the
/// number that went to the heavy and the light server.
fn idle_weighted(algo: &str, n: usize) -> (usize, usize) {
    let heavy = Backend::start("heavy");
    let light = Backend::start("light");
    let lb = Forklb::start(&upstream_config(
        1,
        algo,
        &[Srv::of(&heavy).weight(3), Srv::of(&light).weight(1)],
        &[],
    ));
    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..n {
        let r = c.get(&format!("/idle/{i}")).expect("GET");
        assert_eq!(r.status, 200, "{r:?}");
    }
    (heavy.request_count(), light.request_count())
}

#[test]
fn random_follows_weights_when_servers_are_idle() {
    // Two draws by weight; with nothing in flight the loads tie and the
    // draw decides (HAProxy random(2), nginx random two), so traffic
    // follows the weights: 75% ± 10% (sd of 400 draws ≈ 2%).
    let (h, l) = idle_weighted("random", 400);
    eprintln!("random, idle, weights 3:1: heavy {h}, light {l}");
    assert!(
        (260..=340).contains(&h),
        "random with weights 3:1 and idle servers: heavy got {h} of 400 (light {l}); \
         expected about 300 (75%)"
    );
}

#[test]
fn leastconn_uses_every_server_when_all_are_idle() {
    // With nothing in flight every server has 0 requests per unit of
    // weight: a tie, and ties rotate (HAProxy picks idle servers first;
    // nginx breaks ties by weighted round robin), so the light server
    // gets a share too.
    let (h, l) = idle_weighted("leastconn", 40);
    eprintln!("leastconn, idle, weights 3:1: heavy {h}, light {l}");
    assert!(
        l >= 5,
        "leastconn with weights 3:1 and idle servers: light got {l} of 40 (heavy {h})"
    );
}
