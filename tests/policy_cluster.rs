//! Policies on the real cluster (etcd + PostgreSQL 15 + three agents on loopback):
//! - `zone-aware` promotes the failed leader's zone-mate, every time, even when the other
//!   replica is the one Patroni's rules would prefer;
//! - `always-promote` on every node still yields exactly one leader, because the agents'
//!   invariant gate refuses the unsafe races (its refusals are read from `/metrics`), not
//!   because etcd's compare-and-swap happens to pick one.
//!
//! Scenarios share one global lock with nothing else in this binary (two cores: concurrent
//! clusters break lease timing). Run with `cargo test --test policy_cluster`.

mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use support::guests::guests;
use support::{wait_check, Cluster};

static CLUSTER_LOCK: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    CLUSTER_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(180);
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(120);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(120);
const REJOIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Node `i` runs PostgreSQL as a streaming standby of the leader (`/replica` answers 200).
fn streaming(c: &Cluster, i: usize) -> Result<(), String> {
    match c.http_status(i, "GET", "/replica") {
        Some(200) => Ok(()),
        other => Err(format!("{} /replica = {other:?}", c.name(i))),
    }
}

/// The one node whose `/primary` answers 200, when exactly one does.
fn sole_primary(c: &Cluster) -> Result<usize, String> {
    let statuses = c.statuses("/primary");
    let primaries: Vec<usize> = (0..c.len()).filter(|&i| statuses[i] == Some(200)).collect();
    match primaries.as_slice() {
        [one] => Ok(*one),
        _ => Err(format!("/primary: {}", c.describe(&statuses))),
    }
}

/// `pgwarden_policy_gate_rejections_total` of node `i`, by rule.
fn gate_rejections(c: &Cluster, i: usize) -> Result<Vec<(String, u64)>, String> {
    let response = c.http(i, "GET", "/metrics", None)?;
    let mut out = Vec::new();
    for line in response.body.lines() {
        let Some(rest) = line.strip_prefix("pgwarden_policy_gate_rejections_total{") else {
            continue;
        };
        let (labels, value) = rest
            .split_once("} ")
            .ok_or_else(|| format!("unparsable metric line {line:?}"))?;
        let rule = labels
            .split(',')
            .find_map(|l| l.strip_prefix("rule=\""))
            .and_then(|r| r.strip_suffix('"'))
            .ok_or_else(|| format!("no rule label in {line:?}"))?;
        let count = value
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("count in {line:?}: {e}"))?;
        out.push((rule.to_string(), count));
    }
    Ok(out)
}

fn rejections_of(c: &Cluster, i: usize, rule: &str) -> u64 {
    gate_rejections(c, i)
        .unwrap_or_default()
        .into_iter()
        .filter(|(r, _)| r == rule)
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn zone_aware_promotes_the_failed_leaders_zone_mate_every_time() {
    let _guard = exclusive();
    let zone_aware = guests().path("zone-aware");
    // node1 (zone a) bootstraps and leads; node2 is in zone b with the higher
    // failover_priority, so Patroni's rules would prefer it; node3 is in zone a.
    let mut c = Cluster::builder()
        .scope("pgwarden-zone")
        .synchronous_mode(false)
        .tag(0, "zone", "a")
        .tag(1, "zone", "b")
        .tag(1, "failover_priority", "5")
        .tag(2, "zone", "a")
        .policy(0, &zone_aware)
        .policy(1, &zone_aware)
        .policy(2, &zone_aware)
        .initially_started(1)
        .start();
    let first = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    assert_eq!(first, 0, "node1 is the only node started");
    c.start_node(1);
    c.start_node(2);
    for i in [1, 2] {
        wait_check(
            REPLICATION_TIMEOUT,
            &format!("{} streaming", c.name(i)),
            || streaming(&c, i),
        );
    }
    // Kill the zone-a leader three times; each time its zone-mate must take over, and the
    // killed node rejoins as the next round's zone-a replica.
    let mut leader = 0;
    let mut zone_mate = 2;
    for round in 1..=3 {
        c.kill_node(leader);
        let promoted = wait_check(FAILOVER_TIMEOUT, "a new leader", || sole_primary(&c));
        assert_eq!(
            promoted,
            zone_mate,
            "round {round}: {} (zone a) should be promoted, not {} ({})",
            c.name(zone_mate),
            c.name(promoted),
            c.diagnostics(40)
        );
        c.start_node(leader);
        wait_check(REJOIN_TIMEOUT, "the old leader rejoins", || {
            streaming(&c, leader)
        });
        wait_check(REPLICATION_TIMEOUT, "node2 follows the new leader", || {
            streaming(&c, 1)
        });
        std::mem::swap(&mut leader, &mut zone_mate);
    }
}

#[test]
fn always_promote_everywhere_still_yields_one_leader_thanks_to_the_gate() {
    let _guard = exclusive();
    let always = guests().path("always-promote");
    let mut c = Cluster::builder()
        .scope("pgwarden-always")
        .synchronous_mode(true)
        .policy(0, &always)
        .policy(1, &always)
        .policy(2, &always)
        .start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let replicas: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &replicas {
        wait_check(
            REPLICATION_TIMEOUT,
            &format!("{} streaming", c.name(i)),
            || streaming(&c, i),
        );
    }
    // Every replica's policy keeps answering "race"; the gate refuses it on each of them.
    for &i in &replicas {
        wait_check(
            Duration::from_secs(30),
            &format!("{} records leader-key-held refusals", c.name(i)),
            || match rejections_of(&c, i, "leader-key-held") {
                0 => Err(format!("{:?}", gate_rejections(&c, i))),
                n => Ok(n),
            },
        );
    }
    assert_eq!(sole_primary(&c), Ok(leader));

    // The leader dies: only the synchronous standby may be promoted; the other replica's
    // "race" is refused by the gate (not-in-sync-set) before it ever reaches etcd.
    let sync = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        let v = c.dcs_json("sync")?.ok_or("no /sync")?;
        let name = v
            .get("sync_standby")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(format!("/sync = {v}"))?
            .to_string();
        c.index_of(&name).ok_or(format!("unknown member {name}"))
    });
    let other = replicas
        .iter()
        .copied()
        .find(|&i| i != sync)
        .expect("two replicas");
    c.kill_node(leader);
    let promoted = wait_check(FAILOVER_TIMEOUT, "a new leader", || sole_primary(&c));
    assert_eq!(
        promoted, sync,
        "only the synchronous standby may be promoted"
    );
    wait_check(
        Duration::from_secs(30),
        &format!("{} records not-in-sync-set refusals", c.name(other)),
        || match rejections_of(&c, other, "not-in-sync-set") {
            0 => Err(format!("{:?}", gate_rejections(&c, other))),
            n => Ok(n),
        },
    );
    // Stable: one primary at every look over a few loops.
    let until = std::time::Instant::now() + c.loop_wait() * 3;
    while std::time::Instant::now() < until {
        assert_eq!(sole_primary(&c), Ok(sync), "{}", c.diagnostics(40));
        std::thread::sleep(support::process::POLL_INTERVAL);
    }
    assert_ne!(c.http_status(other, "GET", "/primary"), Some(200));
}
