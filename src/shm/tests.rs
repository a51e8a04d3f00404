//! The mapping, and the invariants the facade keeps.

use super::*;
use std::time::Duration;

#[test]
fn layout_and_sharing_across_fork() {
    assert_eq!(std::mem::align_of::<ServerShared>(), 64);
    let shm = Shm::create(&[2, 3], 2).unwrap();
    shm.set_weight(1, 2, 7).unwrap();
    assert_eq!(shm.server(1, 2).weight(), 7);
    assert_eq!(shm.server(0, 0).weight(), 0);
    // A child's write is seen by the parent.
    // SAFETY: the child only changes atomics and leaves with _exit,
    // touching no lock another test thread might hold.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            for _ in 0..42 {
                shm.server(0, 1).begin_request();
            }
            for _ in 0..9 {
                shm.worker(1).count_request();
            }
            // SAFETY: _exit ends the forked child without running the
            // test harness's destructors and exit handlers twice.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).unwrap();
        }
    }
    assert_eq!(shm.server(0, 1).active(), 42);
    assert_eq!(shm.worker_totals().requests, 9);
    shm.server(0, 1).end_request();
    assert_eq!(shm.server(0, 1).active(), 41);
}

#[test]
fn in_flight_counting_keeps_the_peak_and_never_wraps() {
    let shm = Shm::create(&[1], 1).unwrap();
    let sh = shm.server(0, 0);
    sh.begin_request();
    sh.begin_request();
    sh.end_request();
    sh.begin_request();
    let st = sh.stats();
    assert_eq!((st.active, st.max_active, st.requests), (2, 2, 3));
    for _ in 0..5 {
        sh.end_request();
    }
    let st = sh.stats();
    assert_eq!((st.active, st.max_active), (0, 2));
    sh.count_bytes(10, 20);
    sh.count_bytes(1, 2);
    let st = sh.stats();
    assert_eq!((st.bytes_in, st.bytes_out), (11, 22));
}

#[test]
fn admin_transitions_stamp_last_change_only_on_a_change() {
    let shm = Shm::create(&[1], 1).unwrap();
    let sh = shm.server(0, 0);
    sh.init(1, None, 5);
    assert!(sh.is_ready());
    assert!(!sh.set_admin(AdminState::Ready));
    assert_eq!(sh.stats().last_change, 5);
    for state in [AdminState::Drain, AdminState::Maint] {
        assert!(sh.set_admin(state));
        assert_eq!(sh.admin(), state);
        assert!(!sh.is_ready());
        assert!(!sh.stats().is_ready());
        assert!(sh.stats().last_change > 5);
        assert!(!sh.set_admin(state));
    }
    assert!(sh.set_admin(AdminState::Ready));
    assert!(sh.is_ready() && sh.stats().is_ready());
    for state in AdminState::ALL {
        assert_eq!(AdminState::parse(state.word()), Some(state));
        assert_eq!(state.word().to_uppercase(), state.status_word());
    }
    assert_eq!(AdminState::parse("READY"), None);
}

#[test]
fn weights_stay_in_bounds_and_changes_bump_the_epoch() {
    let shm = Shm::create(&[2], 1).unwrap();
    let epoch = shm.upstream(0).weights_epoch();
    assert_eq!(shm.set_weight(0, 1, 3), Ok(true));
    assert_eq!(shm.upstream(0).weights_epoch(), epoch + 1);
    // The same weight again is no change.
    assert_eq!(shm.set_weight(0, 1, 3), Ok(false));
    assert_eq!(shm.upstream(0).weights_epoch(), epoch + 1);
    // Out of range: refused, nothing changes.
    assert_eq!(
        shm.set_weight(0, 1, MAX_WEIGHT + 1),
        Err(WeightOutOfRange(MAX_WEIGHT + 1))
    );
    assert_eq!(shm.server(0, 1).weight(), 3);
    assert_eq!(shm.upstream(0).weights_epoch(), epoch + 1);
    assert_eq!(shm.set_weight(0, 1, MAX_WEIGHT), Ok(true));
    // Weight 0 takes the server out of picking.
    shm.server(0, 0).init(1, None, 0);
    assert!(shm.server(0, 0).is_ready());
    assert_eq!(shm.set_weight(0, 0, 0), Ok(true));
    assert!(!shm.server(0, 0).is_ready());
}

#[test]
fn passive_failures_mark_down_at_max_fails_and_responses_reset_them() {
    let shm = Shm::create(&[1], 1).unwrap();
    let sh = shm.server(0, 0);
    let now = monotonic_ms();
    assert_eq!(sh.mark_failure(3, 10_000), None);
    assert_eq!(sh.mark_failure(3, 10_000), None);
    // A response in between starts the count again.
    sh.count_response(204);
    assert_eq!(sh.mark_failure(3, 10_000), None);
    assert_eq!(sh.mark_failure(3, 10_000), None);
    assert!(!sh.passively_down(now));
    assert_eq!(sh.mark_failure(3, 10_000), Some(3));
    assert!(sh.passively_down(now));
    assert!(!sh.passively_down(now + 20_000));
    // The count goes on past the mark (nginx's `fails`): once the window
    // is over, the first failure takes the server out again.
    assert_eq!(sh.mark_failure(3, 10_000), Some(4));
    // Until it answers.
    sh.count_response(200);
    assert_eq!(sh.mark_failure(3, 10_000), None);
}

#[test]
fn responses_count_by_class() {
    let shm = Shm::create(&[1], 1).unwrap();
    let sh = shm.server(0, 0);
    for status in [100, 200, 299, 302, 404, 503, 600, 99] {
        sh.count_response(status);
    }
    assert_eq!(sh.stats().responses, [1, 2, 1, 1, 1, 2]);
}

#[test]
fn health_transitions_count_downs_downtime_and_clear_passive_marks() {
    let shm = Shm::create(&[1], 1).unwrap();
    let sh = shm.server(0, 0);
    sh.init(1, Some(3), 0);
    assert_eq!(
        sh.health_state(),
        HealthState {
            counter: 3,
            down: false
        }
    );
    let failed = LastCheck::Failed {
        code: 503,
        duration: Duration::from_millis(7),
        why: CheckFailure::Status,
    };
    let down = |_| HealthState {
        counter: 0,
        down: true,
    };
    // Still UP: no transition, but the check is recorded.
    assert_eq!(
        sh.record_check(failed, |h| HealthState {
            counter: h.counter - 1,
            ..h
        }),
        None
    );
    let st = sh.stats();
    assert_eq!((st.check_fails, st.health.counter), (1, 2));
    assert_eq!(st.last_check, failed);
    assert_eq!(sh.record_check(failed, down), Some(HealthChange::WentDown));
    assert!(!sh.is_ready());
    assert_eq!(sh.record_check(failed, down), None);
    let st = sh.stats();
    // The failure of a server whose counter is already at 0 is not
    // counted, as HAProxy's chkfail.
    assert_eq!((st.check_fails, st.check_downs), (2, 1));
    // A passive mark from before the outage...
    assert_eq!(sh.mark_failure(1, 60_000), Some(1));
    let passed = LastCheck::Passed {
        code: 0,
        duration: Duration::from_micros(1500),
    };
    let up = |_| HealthState {
        counter: 3,
        down: false,
    };
    assert!(matches!(
        sh.record_check(passed, up),
        Some(HealthChange::WentUp { .. })
    ));
    // ...is gone once checks say UP.
    assert!(sh.is_ready() && !sh.passively_down(monotonic_ms()));
    let st = sh.stats();
    assert_eq!(st.last_check, passed);
    assert_eq!(st.last_check.duration().as_millis(), 1);
    assert_eq!(st.check_downs, 1);
}

#[test]
fn reload_carries_admin_runtime_weight_and_health_over() {
    let old = Shm::create(&[3], 1).unwrap();
    for s in 0..3 {
        old.server(0, s).init(5, Some(3), 100);
        old.server(0, s).set_maxconn(8);
    }
    old.server(0, 0).set_admin(AdminState::Drain);
    old.set_weight(0, 0, 9).unwrap();
    old.server(0, 0).set_maxconn(3);
    old.set_weight(0, 2, 7).unwrap();
    old.server(0, 2).set_maxconn(2);
    let failed = LastCheck::Failed {
        code: 0,
        duration: Duration::ZERO,
        why: CheckFailure::ResponseTimeout,
    };
    old.server(0, 0).record_check(failed, |_| HealthState {
        counter: 0,
        down: true,
    });
    let new = Shm::create(&[3], 1).unwrap();
    // Server 0: the file still says weight 5, maxconn 8, so the runtime
    // 9 and 3 stay; both generations check it. Server 1: never changed at
    // runtime, the file now says 6 and 10; checked by the new generation
    // only (health starts afresh). Server 2: changed at runtime (7, 2) and
    // in the file (6, 10): the file wins, as HAProxy's server state does.
    let (weights, maxconns) = ([5, 6, 6], [8, 10, 10]);
    for s in 0..3 {
        new.server(0, s).init(weights[s], Some(4), 200);
        new.server(0, s).set_maxconn(maxconns[s]);
    }
    let configured = Configured {
        weight: 5,
        maxconn: 8,
    };
    new.server(0, 0).carry_over(
        old.server(0, 0),
        configured,
        HealthCarry::Checked { full: 4 },
    );
    new.server(0, 1)
        .carry_over(old.server(0, 1), configured, HealthCarry::Nothing);
    new.server(0, 2)
        .carry_over(old.server(0, 2), configured, HealthCarry::Nothing);
    let (a, b, c) = (
        new.server(0, 0).stats(),
        new.server(0, 1).stats(),
        new.server(0, 2).stats(),
    );
    assert_eq!(
        (a.admin, a.weight, a.maxconn, a.health.down),
        (AdminState::Drain, 9, 3, true)
    );
    assert_eq!(b.maxconn, 10);
    assert_eq!((c.weight, c.maxconn), (6, 10));
    assert_eq!(a.last_change, old.server(0, 0).stats().last_change);
    assert_eq!(
        (b.admin, b.weight, b.health),
        (
            AdminState::Ready,
            6,
            HealthState {
                counter: 4,
                down: false
            }
        )
    );
    assert_eq!(b.last_change, 100);
}

#[test]
fn reload_keeps_the_health_an_operator_forced_on_an_unchecked_server() {
    let old = Shm::create(&[2], 1).unwrap();
    let new = Shm::create(&[2], 1).unwrap();
    for s in 0..2 {
        old.server(0, s).init(1, None, 100);
        new.server(0, s).init(1, None, 200);
    }
    old.server(0, 0).force_health(ForcedHealth::Down, 1);
    old.server(0, 1).force_health(ForcedHealth::Stopping, 1);
    let configured = Configured {
        weight: 1,
        maxconn: 0,
    };
    for s in 0..2 {
        new.server(0, s)
            .carry_over(old.server(0, s), configured, HealthCarry::Forced);
    }
    assert!(new.server(0, 0).stats().health.down);
    assert!(new.server(0, 1).stats().stopping);
}

#[test]
fn worker_slots_count_connections_without_wrapping() {
    let shm = Shm::create(&[1], 2).unwrap();
    let w = shm.worker(1);
    w.connection_opened();
    w.connection_opened();
    w.connection_closed();
    w.connection_closed();
    w.connection_closed();
    w.count_accept_wakeup();
    w.set_accepting(AcceptState::SteppedAside);
    w.heartbeat(1234);
    shm.worker(0).connection_opened();
    let t = shm.worker_totals();
    assert_eq!(
        (t.conns_current, t.conns_total, t.accept_wakeups),
        (1, 3, 1)
    );
    assert_eq!(w.conns_current(), 0);
    assert_eq!(w.accepting(), AcceptState::SteppedAside);
    assert_eq!(w.heartbeat_ms(), 1234);
    assert_eq!(shm.worker(0).accepting(), AcceptState::NotAccepting);
}

#[test]
fn durations_fall_into_their_buckets() {
    let shm = Shm::create(&[1], 1).unwrap();
    let up = shm.upstream(0);
    up.observe(Duration::from_millis(3));
    up.observe(Duration::from_millis(5));
    up.observe(Duration::from_secs(11));
    let d = up.durations();
    assert_eq!(d.buckets[0], 2);
    assert_eq!(d.buckets[DURATION_BUCKETS.len()], 1);
    assert_eq!((d.count, d.sum_us), (3, 11_008_000));
}

#[test]
fn listener_counters_are_per_worker_and_summed() {
    let shm = Shm::create_with_listeners(&[1], 2, 3).unwrap();
    let c = |w, l| shm.listener_counts(w, l).unwrap();
    shm.listener_opened(0, 0);
    shm.listener_opened(1, 0);
    shm.listener_opened(1, 2);
    c(1, 2).count_request();
    c(1, 2).count_request();
    shm.listener_closed(0);
    let s0 = shm.listener_stats(0);
    assert_eq!((s0.conns_current, s0.conns_total, s0.requests), (1, 2, 0));
    // The most open at once over both workers, not one worker's.
    assert_eq!(s0.conns_max, 2);
    let s2 = shm.listener_stats(2);
    assert_eq!((s2.conns_current, s2.conns_total, s2.requests), (1, 1, 2));
    assert_eq!(shm.listener_stats(1), Default::default());
    // Out of range: nothing, no panic.
    assert!(shm.listener_counts(2, 0).is_none() && shm.listener_counts(0, 3).is_none());
    assert_eq!(shm.listener_stats(7), Default::default());
    // Each worker's block starts on its own cache line.
    let a = shm.listener_counts(0, 2).unwrap() as *const _ as usize;
    let b = shm.listener_counts(1, 0).unwrap() as *const _ as usize;
    assert!(b / 64 > a / 64);
    assert!(shm.set_listener_disabled(1, true));
    assert!(shm.listener_disabled(1) && !shm.listener_disabled(0));
}

#[test]
fn time_averages_are_haproxys_sliding_averages() {
    let shm = Shm::create(&[1], 1).expect("shm");
    let sh = shm.server(0, 0);
    let t = |response, total| Timing {
        queue: 0,
        connect: 2,
        response,
        total,
    };
    // Fewer requests than the window: the plain mean of the samples.
    for v in [10, 20, 30] {
        sh.begin_request();
        sh.record_times(t(v, v + 5));
    }
    let st = sh.stats();
    assert_eq!(st.time_samples, 3);
    assert_eq!(st.times, t(20, 25));
    assert_eq!(st.times_max, t(30, 35));
    // Past the window, each sample replaces one average sample: a long
    // run of 100 ms pulls the average to 100.
    for _ in 0..5 * TIME_SAMPLES {
        sh.begin_request();
        sh.record_times(t(100, 100));
    }
    let st = sh.stats();
    assert_eq!(st.time_samples, TIME_SAMPLES);
    assert!((99..=100).contains(&st.times.response), "{:?}", st.times);
    assert_eq!(st.times.connect, 2);
    // `clear counters` forgets the maxima, `all` the averages too.
    sh.clear_max();
    assert_eq!(sh.stats().times_max, Timing::default());
    assert_eq!(sh.stats().times.response, st.times.response);
    sh.clear_counters();
    assert_eq!(sh.stats().times, Timing::default());
    assert_eq!(swrate_avg(0, 0), 0);
}

#[test]
fn a_runtime_change_carries_counters_and_passive_marks_not_what_is_in_flight() {
    let old = Shm::create(&[1], 1).unwrap();
    let s = old.server(0, 0);
    for _ in 0..3 {
        s.begin_request();
        s.count_response(200);
        s.count_bytes(10, 20);
    }
    s.begin_request(); // still in flight in the old generation
    s.touch_session(1_700_000_000);
    s.record_times(Timing {
        queue: 1,
        connect: 2,
        response: 30,
        total: 40,
    });
    s.set_rate(9);
    s.count_connect_error();
    assert_eq!(s.mark_failure(1, 60_000), Some(1));
    let new = Shm::create(&[1], 1).unwrap();
    new.server(0, 0).init(1, None, 0);
    new.server(0, 0).carry_counters(s);
    let (a, b) = (s.stats(), new.server(0, 0).stats());
    assert_eq!(
        (b.last_session, b.times, b.times_max, b.rate_max),
        (a.last_session, a.times, a.times_max, a.rate_max)
    );
    assert_eq!(
        (
            b.requests,
            b.responses,
            b.bytes_in,
            b.bytes_out,
            b.connect_errors,
            b.max_active
        ),
        (
            a.requests,
            a.responses,
            a.bytes_in,
            a.bytes_out,
            a.connect_errors,
            a.max_active
        )
    );
    assert_eq!((b.requests, b.active), (4, 0));
    assert!(new.server(0, 0).passively_down(monotonic_ms()));
    // The upstream's histogram goes on too.
    old.upstream(0).observe(Duration::from_millis(3));
    new.upstream(0).carry_counters(old.upstream(0));
    assert_eq!(new.upstream(0).durations().count, 1);
    // And each server's (30 ms: the 50 ms bucket, the fourth).
    let i = super::duration_bucket(Duration::from_millis(30));
    assert_eq!(i, 3);
    old.server(0, 0).observe_bucket(i);
    old.server(0, 0)
        .observe_bucket(super::duration_bucket(Duration::from_secs(11)));
    new.server(0, 0).carry_counters(old.server(0, 0));
    let d = new.server(0, 0).durations();
    assert_eq!(
        (d[3], d[DURATION_BUCKETS.len()], d.iter().sum::<u64>()),
        (1, 1, 2)
    );
}

#[test]
fn try_begin_request_keeps_maxconn_under_contention() {
    let shm = Shm::create(&[1], 1).unwrap();
    let sh = shm.server(0, 0);
    sh.set_maxconn(3);
    assert!((0..3).all(|_| sh.try_begin_request()));
    assert!(!sh.try_begin_request() && !sh.has_room());
    assert!(!sh.end_request(), "nobody waits for this server");
    assert!(sh.has_room() && sh.try_begin_request());
    // No limit: always in.
    sh.set_maxconn(0);
    assert!(sh.try_begin_request());
    assert_eq!(sh.stats().active, 4);
    for _ in 0..4 {
        sh.end_request();
    }
    // Eight threads racing for three slots: never a fourth in flight.
    sh.set_maxconn(3);
    let peak = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..20_000 {
                    if sh.try_begin_request() {
                        peak.fetch_max(sh.active(), std::sync::atomic::Ordering::Relaxed);
                        sh.end_request();
                    }
                }
            });
        }
    });
    assert!(peak.into_inner() <= 3);
    assert_eq!(sh.active(), 0);
    // Bound waiters make the end of a request say so (its slot is theirs).
    sh.add_waiter();
    assert!(sh.try_begin_request());
    assert!(sh.end_request());
    sh.remove_waiter();
    assert_eq!((sh.stats().queued, sh.stats().max_queued), (0, 1));
}

#[test]
fn upstream_sessions_keep_their_maximum_and_a_dead_worker_s_go() {
    let shm = Shm::create(&[1], 1).unwrap();
    let up = shm.upstream(0);
    for _ in 0..3 {
        up.begin_session();
    }
    up.end_sessions(2);
    assert_eq!(up.sessions(), (1, 3));
    // Never below zero.
    up.end_sessions(5);
    assert_eq!(up.sessions(), (0, 3));
    up.begin_session();
    up.clear_max();
    assert_eq!(up.sessions(), (1, 1));
    // A worker that died holding a slot: its session goes with the slot.
    assert!(shm.try_begin_request(0, 0, 0));
    up.begin_session();
    assert_eq!(shm.reclaim_slots(0), vec![0]);
    assert_eq!(up.sessions(), (1, 2));
}
