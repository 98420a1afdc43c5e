//! Synchronous replication figures on a real cluster (etcd + three agents + PostgreSQL 15 on
//! loopback); prints them, asserts nothing.
//!
//! 1. Failover window: SIGKILL the leader node, then poll the survivors every 20 ms and note
//!    when one is promoted, when its `synchronous_standby_names` is non-empty, when
//!    `pg_stat_replication` shows a standby `sync`/`quorum`, and when `/sync` records it. In
//!    non-strict mode, promotion → standby confirmed is the window in which the new primary
//!    acknowledges commits with no synchronous copy; in strict mode the setting is non-empty
//!    at promotion (commits wait instead) and the window is zero.
//! 2. Write stall when the synchronous standby dies: a writer commits one row after another
//!    on the leader; SIGKILL the sync standby node and report the longest commit.
//!
//! `cargo bench --bench sync`; `PGWARDEN_BENCH_TIMINGS=6/1/2,30/10/10` (default `6/1/2`),
//! `PGWARDEN_BENCH_RUNS=3`.

use pgwarden_testkit as support;

use std::time::{Duration, Instant};

use postgres::Client;
use support::Cluster;

fn timings() -> Vec<(u32, u32, u32)> {
    let spec = std::env::var("PGWARDEN_BENCH_TIMINGS").unwrap_or_else(|_| "6/1/2".into());
    spec.split(',')
        .filter_map(|t| {
            let v: Vec<u32> = t.split('/').filter_map(|x| x.trim().parse().ok()).collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .collect()
}

fn runs() -> usize {
    std::env::var("PGWARDEN_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

fn cluster(strict: bool, timing: (u32, u32, u32)) -> (Cluster, usize) {
    let mut b = Cluster::builder()
        .nodes(3)
        .synchronous_mode(true)
        .timing(timing.0, timing.1, timing.2);
    if strict {
        b = b.dcs("synchronous_mode_strict", "true");
    }
    let c = b.start();
    let leader = c.wait_for_leader(Duration::from_secs(180));
    let name = c.name(leader).to_string();
    support::wait_check(Duration::from_secs(120), "a synchronous standby", || {
        c.sync_standby(&name)
    });
    c.execute(leader, "CREATE TABLE bench (id bigserial primary key)")
        .expect("create table");
    (c, leader)
}

/// A kept connection to node `i` (reconnected when it breaks).
struct Probe {
    config: postgres::Config,
    client: Option<Client>,
}

impl Probe {
    fn new(c: &Cluster, i: usize) -> Probe {
        let mut config = c.pg_config(i);
        config.connect_timeout(Duration::from_millis(300));
        Probe {
            config,
            client: None,
        }
    }

    /// (in recovery, synchronous_standby_names, standbys sync or quorum)
    fn look(&mut self) -> Option<(bool, String, i64)> {
        if self.client.is_none() {
            self.client = support::sql::connect(&self.config).ok();
        }
        let client = self.client.as_mut()?;
        let row = client.query_one(
            "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), \
             (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync','quorum'))",
            &[],
        );
        match row {
            Ok(r) => Some((r.get(0), r.get(1), r.get(2))),
            Err(_) => {
                self.client = None;
                None
            }
        }
    }
}

#[derive(Default, Debug)]
struct Window {
    promoted: Option<Duration>,
    setting_at_promotion: Option<String>,
    setting: Option<Duration>,
    confirmed: Option<Duration>,
    recorded: Option<Duration>,
}

fn failover_window(strict: bool, timing: (u32, u32, u32)) -> Window {
    let (mut c, leader) = cluster(strict, timing);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut probes: Vec<(usize, Probe)> =
        survivors.iter().map(|&i| (i, Probe::new(&c, i))).collect();
    let killed = Instant::now();
    c.kill_node(leader);
    let mut w = Window::default();
    let mut new_leader = None;
    while killed.elapsed() < Duration::from_secs(300) && w.recorded.is_none() {
        for (i, probe) in probes.iter_mut() {
            if new_leader.is_some_and(|l| l != *i) {
                continue;
            }
            let Some((in_recovery, setting, confirmed)) = probe.look() else {
                continue;
            };
            if in_recovery {
                continue;
            }
            let at = killed.elapsed();
            if w.promoted.is_none() {
                new_leader = Some(*i);
                w.promoted = Some(at);
                w.setting_at_promotion = Some(setting.clone());
            }
            if w.setting.is_none() && !setting.is_empty() {
                w.setting = Some(at);
            }
            if w.confirmed.is_none() && confirmed > 0 {
                w.confirmed = Some(at);
            }
        }
        if let (Some(l), Some(_)) = (new_leader, w.confirmed) {
            let name = c.name(l).to_string();
            if c.sync_standby(&name).is_ok() {
                w.recorded = Some(killed.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20)); // sampling interval
    }
    w
}

/// Longest commit while the synchronous standby dies (and the leader replaces it).
fn standby_death_stall(timing: (u32, u32, u32)) -> (Duration, Duration) {
    let (mut c, leader) = cluster(false, timing);
    let name = c.name(leader).to_string();
    // The standby PostgreSQL waits for, once /sync agrees with it.
    let sync_name = support::wait_check(
        Duration::from_secs(60),
        "/sync and pg_stat_replication to agree",
        || {
            let recorded = c.sync_standby(&name)?;
            let in_pg = c.query_scalar(
                leader,
                "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
            )?;
            (in_pg.as_deref() == Some(recorded.as_str()))
                .then_some(recorded.clone())
                .ok_or(format!("/sync {recorded}, PostgreSQL {in_pg:?}"))
        },
    );
    let sync = c.index_of(&sync_name).expect("member");
    let mut client = support::sql::connect(&c.pg_config(leader)).expect("connect");
    let mut typical = Duration::ZERO;
    for _ in 0..50 {
        let t = Instant::now();
        client
            .execute("INSERT INTO bench DEFAULT VALUES", &[])
            .expect("insert");
        typical = typical.max(t.elapsed());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let t = Instant::now();
            if client
                .execute("INSERT INTO bench DEFAULT VALUES", &[])
                .is_err()
            {
                break;
            }
            longest = longest.max(t.elapsed());
        }
        longest
    });
    c.kill_node(sync);
    let killed = Instant::now();
    eprintln!(
        "[bench] killed the sync standby; leader log: {}",
        c.log_path(leader).display()
    );
    // Long enough for a member key to expire and the set to be rebuilt.
    let span = Duration::from_secs(u64::from(timing.0) * 3);
    while killed.elapsed() < span {
        std::thread::sleep(Duration::from_millis(100)); // measurement window
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let longest = writer.join().unwrap_or_default();
    (typical, longest)
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64()))
        .unwrap_or_else(|| "-".into())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("synchronous replication benchmark: run it with `cargo bench --bench sync`");
        return;
    }
    println!("| ttl/loop_wait/retry | mode | run | kill → promoted (s) | setting at promotion | promoted → setting non-empty (s) | promoted → standby sync (s) | promoted → /sync recorded (s) |");
    println!("|---|---|---|---|---|---|---|---|");
    let only = std::env::var("PGWARDEN_BENCH_ONLY").unwrap_or_default();
    for timing in timings() {
        let (ttl, lw, rt) = timing;
        for strict in [false, true].into_iter().filter(|_| only != "stall") {
            for run in 1..=runs() {
                let w = failover_window(strict, timing);
                let since =
                    |d: Option<Duration>| secs(d.zip(w.promoted).map(|(d, p)| d.saturating_sub(p)));
                println!(
                    "| {ttl}/{lw}/{rt} | {} | {run} | {} | {:?} | {} | {} | {} |",
                    if strict { "strict" } else { "on" },
                    secs(w.promoted),
                    w.setting_at_promotion.clone().unwrap_or_default(),
                    since(w.setting),
                    since(w.confirmed),
                    since(w.recorded),
                );
            }
        }
        for run in (1..=runs()).filter(|_| only != "failover") {
            let (typical, longest) = standby_death_stall(timing);
            println!(
                "| {ttl}/{lw}/{rt} | sync standby SIGKILL, non-strict | {run} | typical commit {:.3} s | longest commit {:.2} s | | | |",
                typical.as_secs_f64(),
                longest.as_secs_f64()
            );
        }
    }
}
