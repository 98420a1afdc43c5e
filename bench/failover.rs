//! Failover benchmark on a real cluster (etcd + three agents + PostgreSQL 15 on loopback).
//!
//! For each timing (ttl / loop_wait / retry_timeout) and each run: bootstrap a synchronous
//! three-node cluster, SIGKILL the leader node (agent, postmaster, backends), then try an
//! INSERT on every surviving node every 50 ms and record the time from the kill to the first
//! committed write. Also samples each agent's RSS and CPU while the cluster is idle.
//!
//! `cargo bench --bench failover` (all timings), or `PGWARDEN_BENCH_TIMINGS=6/1/2 cargo bench
//! --bench failover`, `PGWARDEN_BENCH_RUNS=5`. Prints a table; nothing is asserted.

use pgwarden_testkit as support;

use std::time::{Duration, Instant};

use support::Cluster;

fn timings() -> Vec<(u32, u32, u32)> {
    let spec =
        std::env::var("PGWARDEN_BENCH_TIMINGS").unwrap_or_else(|_| "30/10/10,6/1/2,4/1/1".into());
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

fn ticks_and_rss(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks, rss_kb))
}

/// Mean CPU % and RSS of the agents over `window` of idleness.
fn idle_usage(c: &Cluster, window: Duration) -> (f64, u64) {
    let pids: Vec<u32> = (0..c.len()).filter_map(|i| c.agent_pid(i)).collect();
    let before: Vec<u64> = pids
        .iter()
        .filter_map(|p| ticks_and_rss(*p).map(|t| t.0))
        .collect();
    std::thread::sleep(window); // a measurement window, not synchronisation
    let after: Vec<(u64, u64)> = pids.iter().filter_map(|p| ticks_and_rss(*p)).collect();
    let hz = 100.0; // USER_HZ on Linux
    let cpu: f64 = after
        .iter()
        .zip(&before)
        .map(|((a, _), b)| (a - b) as f64 / hz / window.as_secs_f64() * 100.0)
        .sum::<f64>()
        / after.len().max(1) as f64;
    let rss = after.iter().map(|(_, r)| *r).max().unwrap_or(0);
    (cpu, rss)
}

fn one_failover(
    ttl: u32,
    loop_wait: u32,
    retry: u32,
    measure_idle: bool,
    phase: f64,
) -> (Duration, Duration, Option<(f64, u64)>) {
    let mut c = Cluster::builder()
        .nodes(3)
        .etcd_members(1)
        .synchronous_mode(true)
        .timing(ttl, loop_wait, retry)
        .start();
    let leader = c.wait_for_leader(Duration::from_secs(180));
    support::wait_until(Duration::from_secs(120), "a synchronous standby", || {
        c.dcs_json("sync")
            .ok()
            .flatten()
            .and_then(|v| v["sync_standby"].as_str().map(str::to_string))
    });
    c.execute(
        leader,
        "CREATE TABLE IF NOT EXISTS bench (id bigserial primary key, at timestamptz default now())",
    )
    .expect("create table");
    let idle = measure_idle.then(|| idle_usage(&c, Duration::from_secs(30)));
    // The moments above are phase-locked to the leader's loop (they follow its writes), so a
    // kill right now would always land just after a lease renewal: the worst case. Spread
    // the kills evenly over one loop_wait instead.
    std::thread::sleep(Duration::from_secs_f64(f64::from(loop_wait) * phase));
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let killed_at = Instant::now();
    c.kill_node(leader);
    let mut primary_at = None;
    let written_at = 'wait: loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(300),
            "no new leader within 300 s"
        );
        for &i in &survivors {
            if primary_at.is_none() && c.http_status(i, "OPTIONS", "/primary") == Some(200) {
                primary_at = Some(killed_at.elapsed());
            }
            let mut config = c.pg_config(i);
            config.connect_timeout(Duration::from_millis(500));
            if support::sql::execute(&config, "INSERT INTO bench DEFAULT VALUES").is_ok() {
                break 'wait killed_at.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    };
    (written_at, primary_at.unwrap_or(written_at), idle)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and a multi-minute measurement has no place in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        println!("failover benchmark: run it with `cargo bench --bench failover`");
        return;
    }
    println!("| ttl/loop_wait/retry_timeout | run | kill → first write (s) | kill → /primary 200 (s) | idle agent CPU % | agent RSS (MiB) |");
    println!("|---|---|---|---|---|---|");
    for (ttl, lw, rt) in timings() {
        let mut writes = Vec::new();
        for run in 1..=runs() {
            let phase = (run as f64 - 0.5) / runs() as f64;
            let (write, primary, idle) = one_failover(ttl, lw, rt, run == 1, phase);
            writes.push(write.as_secs_f64());
            let (cpu, rss) = idle
                .map(|(c, r)| (format!("{c:.2}"), format!("{:.1}", r as f64 / 1024.0)))
                .unwrap_or_default();
            println!(
                "| {ttl}/{lw}/{rt} | {run} | {:.2} | {:.2} | {cpu} | {rss} |",
                write.as_secs_f64(),
                primary.as_secs_f64()
            );
        }
        writes.sort_by(|a, b| a.total_cmp(b));
        let mean = writes.iter().sum::<f64>() / writes.len() as f64;
        println!(
            "| {ttl}/{lw}/{rt} | summary | mean {mean:.2}, min {:.2}, max {:.2} | | | |",
            writes[0],
            writes[writes.len() - 1]
        );
    }
}
