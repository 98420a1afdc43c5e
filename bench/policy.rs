//! Policy host benchmark: what a decision through a WebAssembly policy costs, and how fast a
//! runaway guest is cut off.
//!
//! `cargo bench --bench policy` (release). Prints figures; nothing is asserted. Measures:
//! loading the embedded default (compile + link + `metadata()`), a fresh instance with a
//! trivial call, decision latency per event on a 5-member view (marshalling both ways and
//! validation included) through the engine and through `PolicyHost`, fuel used per default
//! decision, and the time to cut off the infinite-loop guest by fuel (default limits) and by
//! the epoch deadline (unlimited fuel). `PGWARDEN_BENCH_CALLS` sets the number of calls
//! (default 10 000).

use pgwarden_testkit::guests;

use std::time::{Duration, Instant};

use pgwarden::policy::{PolicyEngine, PolicyHost, PolicyLimits, DEFAULT_POLICY_COMPONENT};
use pgwarden_policy::{ClusterView, Config, Event, Lease, Member, Role, SynchronousMode};

fn calls() -> usize {
    std::env::var("PGWARDEN_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

fn member(name: &str, role: Role, lsn: u64, reachable: bool) -> Member {
    Member {
        name: name.into(),
        role,
        state: if reachable { "streaming" } else { "stopped" }.into(),
        streaming: reachable && role == Role::Replica,
        timeline: Some(3),
        received_lsn: Some(lsn),
        replayed_lsn: Some(lsn),
        lag_bytes: Some(10_000 - lsn.min(10_000)),
        tags: vec![
            ("zone".into(), format!("zone-{}", &name[1..])),
            ("nofailover".into(), "false".into()),
        ],
        is_sync: false,
        failover_priority: 1,
        heartbeat_age_ms: Some(500),
        reachable: Some(reachable),
    }
}

/// The leader n1 is gone; n3 decides whether to race, four peers probed.
fn election_view() -> ClusterView {
    let n1 = member("n1", Role::Primary, 10_000, false);
    ClusterView {
        now_ms: 1_000_000,
        me: "n3".into(),
        members: vec![
            n1.clone(),
            member("n2", Role::Replica, 9_000, true),
            member("n3", Role::Replica, 9_500, true),
            member("n4", Role::Replica, 8_000, true),
            member("n5", Role::Replica, 9_400, true),
        ],
        lease: Lease::default(),
        last_leader: Some(n1),
        leaderless_ms: Some(1_500),
        cluster_timeline: Some(3),
        leader_lsn: Some(10_000),
        sync_leader: None,
        sync_standbys: Vec::new(),
        switchover: None,
        config: Config::default(),
    }
}

/// n1 leads in synchronous mode and picks its standbys.
fn leader_view() -> ClusterView {
    let mut view = election_view();
    view.me = "n1".into();
    view.members[0] = member("n1", Role::Primary, 10_000, true);
    view.members[0].state = "running".into();
    view.lease = Lease {
        holder: Some("n1".into()),
        mine: true,
        time_left_ms: Some(20_000),
    };
    view.leaderless_ms = None;
    view.config.synchronous_mode = SynchronousMode::On;
    view.config.synchronous_node_count = 2;
    view
}

/// p50, p99 and max of `samples`, sorted in place.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index.min(samples.len() - 1)]
    };
    format!(
        "p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}  (n={})",
        at(0.50),
        at(0.99),
        samples[samples.len() - 1],
        samples.len()
    )
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

fn main() {
    let limits = PolicyLimits::default();
    println!("policy host bench — limits: {limits}");
    println!(
        "embedded default component: {} bytes",
        DEFAULT_POLICY_COMPONENT.len()
    );

    let (engine, engine_time) = time(|| PolicyEngine::new(limits).expect("create the engine"));
    println!("engine creation (pooling allocator, epoch ticker): {engine_time:.1?}");

    // Load = compile (JIT, parallel) + import check + link + one metadata() call.
    let mut loads = Vec::new();
    for _ in 0..10 {
        let (policy, took) = time(|| engine.embedded_default().expect("load"));
        drop(policy);
        loads.push(took);
    }
    println!(
        "load embedded default (compile+link+metadata): {}",
        summary(&mut loads)
    );
    let default = engine
        .embedded_default()
        .expect("load the embedded default");

    let n = calls();
    let mut fresh = Vec::with_capacity(n);
    for _ in 0..n {
        let (info, took) = time(|| engine.metadata(&default));
        info.expect("metadata");
        fresh.push(took);
    }
    println!(
        "fresh instance + metadata() call:            {}",
        summary(&mut fresh)
    );

    for (label, event, view) in [
        ("election, 5 members", Event::Election, election_view()),
        (
            "leader tick, sync mode, 5 members",
            Event::Tick,
            leader_view(),
        ),
    ] {
        let mut latencies = Vec::with_capacity(n);
        let mut fuel = 0;
        for _ in 0..n {
            let (metered, took) = time(|| engine.decide_metered(&default, &event, &view));
            fuel = metered.expect("decide").fuel_used;
            latencies.push(took);
        }
        println!("decide ({label}) via engine:  {}", summary(&mut latencies));
        println!(
            "  fuel used per decision: {fuel} units ({:.3}% of the {} budget)",
            fuel as f64 * 100.0 / limits.fuel as f64,
            limits.fuel
        );
    }

    let mut host = PolicyHost::new(engine.clone(), default.clone());
    let (event, view) = (Event::Election, election_view());
    let mut verdicts = Vec::with_capacity(n);
    for _ in 0..n {
        let (verdict, took) = time(|| host.decide(&event, &view));
        assert!(verdict.source.error().is_none(), "{:?}", verdict.source);
        verdicts.push(took);
    }
    println!(
        "decide (election) via PolicyHost:          {}",
        summary(&mut verdicts)
    );
    println!(
        "  fallbacks during the run: {} (a timeout under load falls back to the native default)",
        host.counters().fallbacks.total()
    );

    let path = guests::guests().path("infinite-loop");
    let runaway = engine
        .load_file(&path, None)
        .expect("load the infinite loop");
    let mut cutoffs = Vec::new();
    let mut kinds = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let (result, took) = time(|| engine.decide(&runaway, &event, &view));
        let kind = result.expect_err("an infinite loop cannot answer").kind();
        *kinds.entry(kind.as_str()).or_insert(0) += 1;
        cutoffs.push(took);
    }
    println!(
        "infinite loop cut off, default limits:       {}  {kinds:?}",
        summary(&mut cutoffs)
    );

    let epoch_only = PolicyEngine::new(PolicyLimits {
        fuel: u64::MAX,
        ..limits
    })
    .expect("create the epoch-only engine");
    let runaway = epoch_only
        .load_file(&path, None)
        .expect("load the infinite loop");
    let mut cutoffs = Vec::new();
    let mut kinds = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let (result, took) = time(|| epoch_only.decide(&runaway, &event, &view));
        let kind = result.expect_err("an infinite loop cannot answer").kind();
        *kinds.entry(kind.as_str()).or_insert(0) += 1;
        cutoffs.push(took);
    }
    println!(
        "infinite loop cut off, epoch only ({:?}): {}  {kinds:?}",
        limits.timeout,
        summary(&mut cutoffs)
    );
}
