//! Policies on the real cluster (etcd + PostgreSQL 15 + three agents on loopback):
//! - `zone-aware` promotes the failed leader's zone-mate, every time, even when the other
//!   replica is the one Patroni's rules would prefer;
//! - `always-promote` on every node still yields exactly one leader, because the agents'
//!   invariant gate refuses the unsafe races (its refusals are read from `/metrics`), not
//!   because etcd's compare-and-swap happens to pick one.
//!
//! Scenarios share one global lock with nothing else in this binary (two cores: concurrent
//! clusters break lease timing). Run with `cargo test --test policy_cluster`.

use pgwarden_testkit as support;

use std::time::Duration;

use support::guests::guests;
use support::shared::{
    exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT, REJOIN_TIMEOUT, REPLICATION_TIMEOUT,
};
use support::{wait_check, Cluster};

/// Node `i` runs PostgreSQL as a streaming standby of the leader (`/replica` answers 200).
fn streaming(c: &Cluster, i: usize) -> Result<(), String> {
    match c.http_status(i, "GET", "/replica") {
        Some(200) => Ok(()),
        other => Err(format!("{} /replica = {other:?}", c.name(i))),
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

/// A write on `leader`, then every other node's agent reports (in `/patroni`) a WAL position
/// at least the leader's after the write: both replicas are eligible for the failover.
fn both_caught_up(c: &Cluster, leader: usize, round: u32) {
    c.execute(
        leader,
        &format!("CREATE TABLE IF NOT EXISTS zone_rounds (round int); INSERT INTO zone_rounds VALUES ({round})"),
    )
    .expect("write on the leader");
    let target: u64 = c
        .query_scalar(
            leader,
            "SELECT (pg_current_wal_lsn() - '0/0')::bigint::text",
        )
        .expect("leader LSN")
        .and_then(|v| v.parse().ok())
        .expect("a number");
    for i in (0..c.len()).filter(|&i| i != leader) {
        wait_check(
            REPLICATION_TIMEOUT,
            &format!("{} to report the leader's position {target}", c.name(i)),
            || {
                let v = c.patroni(i).ok_or("no /patroni")?;
                let received = v
                    .pointer("/xlog/received_location")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(0);
                let replayed = v
                    .pointer("/xlog/replayed_location")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(0);
                match received.max(replayed) {
                    at if at >= target => Ok(()),
                    at => Err(format!("at {at}")),
                }
            },
        );
    }
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
        // Both replicas eligible (asynchronous mode, within maximum_lag_on_failover): write on
        // the leader and wait until each replica's agent reports the leader's position.
        both_caught_up(&c, leader, round);
        c.kill_node(leader);
        let promoted = wait_check(FAILOVER_TIMEOUT, "a new leader", || c.leader_now());
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
    assert_eq!(c.leader_now(), Ok(leader));

    // The leader dies: only the synchronous standby may be promoted; the other replica's
    // "race" is refused by the gate (not-in-sync-set) before it ever reaches etcd.
    let sync = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        let name = c.sync_standby(c.name(leader))?;
        c.index_of(&name).ok_or(format!("unknown member {name}"))
    });
    let other = replicas
        .iter()
        .copied()
        .find(|&i| i != sync)
        .expect("two replicas");
    c.kill_node(leader);
    let promoted = wait_check(FAILOVER_TIMEOUT, "a new leader", || c.leader_now());
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
        assert_eq!(c.leader_now(), Ok(sync), "{}", c.diagnostics(40));
        std::thread::sleep(support::process::POLL_INTERVAL);
    }
    assert_ne!(c.http_status(other, "GET", "/primary"), Some(200));
}

/// The leader and the synchronous standby recorded in `/sync`, once the other replica streams.
fn settled_sync_cluster(c: &Cluster) -> (usize, usize, usize) {
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let sync = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        let name = c.sync_standby(c.name(leader))?;
        c.index_of(&name).ok_or(format!("unknown member {name}"))
    });
    let other = (0..3)
        .find(|&i| i != leader && i != sync)
        .expect("three nodes");
    for i in [sync, other] {
        wait_check(
            REPLICATION_TIMEOUT,
            &format!("{} streaming", c.name(i)),
            || streaming(c, i),
        );
    }
    (leader, sync, other)
}

/// `POST path body` on node `i`: (status, body text).
fn post(c: &Cluster, i: usize, path: &str, body: &str) -> (u16, String) {
    let r = c
        .http_slow(i, "POST", path, Some(body), Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("POST {path} on {}: {e}", c.name(i)));
    (r.status, r.body)
}

/// patronictl's `switchover` goes through our `POST /switchover`; the leader shuts down
/// cleanly, the candidate takes over with every committed row, the old leader follows it,
/// and the `failover` key is gone. Bad requests get Patroni's status codes.
#[test]
fn patronictl_switchover_hands_over_cleanly() {
    let _guard = exclusive();
    let c = Cluster::builder()
        .scope("pgwarden-switch")
        .synchronous_mode(true)
        .start();
    let (leader, sync, other) = settled_sync_cluster(&c);
    c.execute(
        leader,
        "CREATE TABLE handover (id int); INSERT INTO handover SELECT generate_series(1, 1000)",
    )
    .expect("write on the leader");

    // Patroni's refusals, before anything is written.
    let (code, text) = post(
        &c,
        leader,
        "/switchover",
        &format!(r#"{{"leader":"{}"}}"#, c.name(other)),
    );
    assert_eq!(code, 412, "wrong leader: {text}");
    let (code, text) = post(&c, leader, "/failover", "{}");
    assert_eq!(code, 400, "failover without candidate: {text}");
    let (code, text) = post(&c, leader, "/switchover", "not json");
    assert_eq!(code, 400, "bad body: {text}");
    assert!(text.contains("not JSON"), "{text}");
    let (code, text) = post(
        &c,
        leader,
        "/switchover",
        &format!(
            r#"{{"leader":"{}","candidate":"{}"}}"#,
            c.name(leader),
            c.name(other)
        ),
    );
    assert_eq!(
        code, 412,
        "switchover to a non-sync standby in sync mode: {text}"
    );
    assert_eq!(
        c.http_status(leader, "DELETE", "/switchover"),
        Some(404),
        "nothing to cancel"
    );

    let mut cmd = std::process::Command::new(support::process::patronictl());
    support::process::scrub_env(&mut cmd);
    cmd.arg("-c")
        .arg(c.config_path(0))
        .args([
            "switchover",
            "--leader",
            c.name(leader),
            "--candidate",
            c.name(sync),
            "--force",
        ])
        .arg(c.scope());
    let out = support::process::run_capture(&mut cmd, Duration::from_secs(90));
    assert!(
        out.stdout.contains("Successfully switched over"),
        "patronictl switchover: {out:?}\n{}",
        c.diagnostics(40)
    );
    let new_leader = wait_check(FAILOVER_TIMEOUT, "the candidate leads", || c.leader_now());
    assert_eq!(new_leader, sync, "{}", c.diagnostics(40));
    assert_eq!(
        c.query_scalar(sync, "SELECT count(*) FROM handover")
            .expect("count on the new leader"),
        Some("1000".into()),
        "every committed row survived the switchover"
    );
    wait_check(REJOIN_TIMEOUT, "the old leader follows the new one", || {
        streaming(&c, leader)
    });
    wait_check(
        Duration::from_secs(30),
        "the failover key is cleared",
        || match c.dcs_get("failover")? {
            None => Ok(()),
            Some(kv) => Err(format!("failover = {kv:?}")),
        },
    );
    scheduled_switchover(&c, new_leader);
}

/// The wall-clock time `seconds` from now, as patronictl is given it.
fn in_seconds(seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    at.replace_nanosecond(0)
        .expect("whole seconds")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time")
}

/// `patronictl` on node 0's configuration, scrubbed environment.
fn patronictl(c: &Cluster, args: &[&str]) -> support::process::Captured {
    let mut cmd = std::process::Command::new(support::process::patronictl());
    support::process::scrub_env(&mut cmd);
    cmd.arg("-c").arg(c.config_path(0)).args(args);
    support::process::run_capture(&mut cmd, Duration::from_secs(90))
}

/// `patronictl switchover --scheduled`: Patroni's refusals (a failover cannot be scheduled,
/// a time needs a zone and must be ahead), then a switchover 20 s ahead that `list` and
/// `/cluster` show, that does not happen before its time and happens at it; then one an
/// hour ahead that `patronictl flush ... switchover` deletes.
fn scheduled_switchover(c: &Cluster, leader: usize) {
    let target = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        let name = c.sync_standby(c.name(leader))?;
        c.index_of(&name).ok_or(format!("unknown member {name}"))
    });
    wait_check(REPLICATION_TIMEOUT, "the target streaming", || {
        streaming(c, target)
    });
    let (from, to) = (c.name(leader), c.name(target));
    for (path, body, code, text) in [
        (
            "/failover",
            format!(
                r#"{{"candidate":"{to}","scheduled_at":"{}"}}"#,
                in_seconds(60)
            ),
            400,
            "Failover can't be scheduled",
        ),
        (
            "/switchover",
            format!(
                r#"{{"leader":"{from}","candidate":"{to}","scheduled_at":"2030-01-01T00:00:00"}}"#
            ),
            400,
            "Timezone information is mandatory for the scheduled switchover",
        ),
        (
            "/switchover",
            format!(
                r#"{{"leader":"{from}","candidate":"{to}","scheduled_at":"{}"}}"#,
                in_seconds(-60)
            ),
            422,
            "Cannot schedule switchover in the past",
        ),
    ] {
        assert_eq!(
            post(c, leader, path, &body),
            (code, text.to_string()),
            "{body}"
        );
    }
    assert_eq!(c.dcs_get("failover"), Ok(None), "refusals write nothing");

    let at = in_seconds(20);
    let due = std::time::Instant::now() + Duration::from_secs(19);
    let out = patronictl(
        c,
        &[
            "switchover",
            "--leader",
            from,
            "--candidate",
            to,
            "--scheduled",
            &at,
            "--force",
            c.scope(),
        ],
    );
    assert!(out.stdout.contains("Switchover scheduled"), "{out:?}");
    let cluster = c.http_json(leader, "/cluster").expect("GET /cluster");
    let scheduled = &cluster["scheduled_switchover"];
    assert_eq!(
        (scheduled["from"].as_str(), scheduled["to"].as_str()),
        (Some(from), Some(to)),
        "{cluster}"
    );
    assert!(
        scheduled["at"]
            .as_str()
            .is_some_and(|a| a.starts_with(&at[..19])),
        "{cluster}"
    );
    let list = patronictl(c, &["list", c.scope()]);
    assert!(list.stdout.contains("Switchover scheduled at:"), "{list:?}");
    while std::time::Instant::now() + Duration::from_secs(2) < due {
        assert_eq!(
            c.leader_now(),
            Ok(leader),
            "the switchover ran before its time"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let new_leader = wait_check(FAILOVER_TIMEOUT, "the scheduled switchover", || {
        match c.leader_now()? {
            l if l == target => Ok(l),
            l => Err(format!("{} leads", c.name(l))),
        }
    });
    assert!(std::time::Instant::now() + Duration::from_secs(1) >= due);
    wait_check(
        Duration::from_secs(30),
        "the failover key is cleared",
        || match c.dcs_get("failover")? {
            None => Ok(()),
            Some(kv) => Err(format!("failover = {kv:?}")),
        },
    );

    // One an hour ahead, flushed.
    let standby = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        c.sync_standby(c.name(new_leader))
    });
    let out = patronictl(
        c,
        &[
            "switchover",
            "--leader",
            c.name(new_leader),
            "--candidate",
            &standby,
            "--scheduled",
            &in_seconds(3600),
            "--force",
            c.scope(),
        ],
    );
    assert!(out.stdout.contains("Switchover scheduled"), "{out:?}");
    assert!(c.dcs_get("failover").ok().flatten().is_some());
    let out = patronictl(c, &["flush", c.scope(), "switchover", "--force"]);
    assert!(
        out.stdout.contains("Success: scheduled switchover deleted"),
        "{out:?}"
    );
    assert_eq!(c.dcs_get("failover"), Ok(None));
    // pgwardenctl flushes the same way.
    let out = patronictl(
        c,
        &[
            "switchover",
            "--leader",
            c.name(new_leader),
            "--candidate",
            &standby,
            "--scheduled",
            &in_seconds(3600),
            "--force",
            c.scope(),
        ],
    );
    assert!(out.stdout.contains("Switchover scheduled"), "{out:?}");
    let out = c.ctl(&["flush", c.scope(), "switchover", "--force"]);
    assert!(
        out.success() && out.stdout.contains("Success: scheduled switchover deleted"),
        "{out:?}"
    );
    assert_eq!(c.dcs_get("failover"), Ok(None));
    let out = c.ctl(&["flush", c.scope(), "switchover", "--force"]);
    assert!(
        out.stdout.contains("No pending scheduled switchover"),
        "{out:?}"
    );
    assert_eq!(c.leader_now(), Ok(new_leader), "nothing moved");
    pgwardenctl_verbs(c, new_leader);
}

/// `pgwardenctl` switchover, failover, history, dsn, show-config and version against the
/// real cluster, each checked against what the cluster did or holds.
fn pgwardenctl_verbs(c: &Cluster, leader: usize) {
    let scope = c.scope();
    let refused = c.ctl(&["switchover", scope, "--leader", "nobody", "--force"]);
    assert!(!refused.success(), "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "Member nobody is not the leader of cluster {scope}"
        )),
        "{refused:?}"
    );
    let target = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        let name = c.sync_standby(c.name(leader))?;
        c.index_of(&name).ok_or(format!("unknown member {name}"))
    });
    wait_check(REPLICATION_TIMEOUT, "the target streaming", || {
        streaming(c, target)
    });
    let out = c.ctl(&[
        "switchover",
        scope,
        "--leader",
        c.name(leader),
        "--candidate",
        c.name(target),
        "--force",
    ]);
    assert!(
        out.success() && out.stdout.contains("Successfully switched over"),
        "pgwardenctl switchover: {out:?}\n{}",
        c.diagnostics(40)
    );
    wait_check(
        FAILOVER_TIMEOUT,
        "the switchover's candidate leads",
        || match c.leader_now()? {
            l if l == target => Ok(()),
            l => Err(format!("{} leads", c.name(l))),
        },
    );

    // A failover to the standby /sync names now (synchronous mode).
    let next = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        let name = c.sync_standby(c.name(target))?;
        c.index_of(&name).ok_or(format!("unknown member {name}"))
    });
    wait_check(REPLICATION_TIMEOUT, "the failover target streaming", || {
        streaming(c, next)
    });
    let out = c.ctl(&["failover", scope, "--candidate", c.name(next), "--force"]);
    assert!(
        out.success(),
        "pgwardenctl failover: {out:?}\n{}",
        c.diagnostics(40)
    );
    let now = wait_check(
        FAILOVER_TIMEOUT,
        "the failover's candidate leads",
        || match c.leader_now()? {
            l if l == next => Ok(l),
            l => Err(format!("{} leads", c.name(l))),
        },
    );

    // Read-only verbs: what etcd and the members hold.
    let history = c.ctl(&["history", scope]);
    let timelines = c
        .dcs_json("history")
        .expect("read /history")
        .and_then(|h| h.as_array().map(Vec::len))
        .unwrap_or(0);
    assert!(timelines >= 3, "three hand-overs at least: {timelines}");
    assert!(
        history.success() && history.stdout.contains("New Leader"),
        "{history:?}"
    );
    assert_eq!(
        history
            .stdout
            .matches("no recovery target specified")
            .count(),
        timelines,
        "{history:?}"
    );
    let dsn = c.ctl(&["dsn", scope]);
    assert_eq!(
        dsn.stdout.trim(),
        format!("host={} port={}", c.host_ip(now), c.pg_port(now)),
        "{dsn:?}"
    );
    let config = c.ctl(&["show-config", scope]);
    assert!(
        config.stdout.contains("loop_wait: 1") && config.stdout.contains("ttl: 6"),
        "{config:?}"
    );
    let version = c.ctl(&["version", scope]);
    assert!(
        version.stdout.contains("pgwardenctl version"),
        "{version:?}"
    );
    for i in 0..c.len() {
        let line = format!("{}: pgwarden {}", c.name(i), env!("CARGO_PKG_VERSION"));
        assert!(version.stdout.contains(&line), "{line} in {version:?}");
    }
    assert!(version.stdout.contains("PostgreSQL 15."), "{version:?}");
    pgwardenctl_topology_reinit_and_remove(c, now);
    pgwardenctl_edit_config(c);
    pgwardenctl_query(c, now);
    patronictl_drives_the_other_verbs(c);
}

/// [`patronictl`] with extra environment and `input` on its standard input.
fn patronictl_with(
    c: &Cluster,
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&str>,
) -> support::process::Captured {
    let mut cmd = std::process::Command::new(support::process::patronictl());
    support::process::scrub_env(&mut cmd);
    cmd.envs(env.iter().copied());
    cmd.arg("-c").arg(c.config_path(0)).args(args);
    support::process::run_capture_with_input(&mut cmd, input, Duration::from_secs(90))
}

/// The real patronictl's verbs not driven elsewhere, each checked against what the cluster
/// did: `history`, `show-config` and `dsn` print what pgwardenctl prints; `version` answers;
/// `query` reads the leader; `failover` moves the leader to the candidate; `reinit` rebuilds
/// a standby (a file left in its data directory is gone); `remove` deletes another
/// cluster's keys after the typed confirmations.
fn patronictl_drives_the_other_verbs(c: &Cluster) {
    use support::cluster::{SUPERUSER, SUPERUSER_PASSWORD};
    let scope = c.scope();
    for args in [
        &["history", scope][..],
        &["show-config", scope],
        &["dsn", scope],
    ] {
        wait_check(
            REPLICATION_TIMEOUT,
            &format!("patronictl {} as pgwardenctl", args.join(" ")),
            || {
                let theirs = patronictl(c, args);
                let ours = c.ctl(args);
                if theirs.success() && theirs.stdout == ours.stdout {
                    Ok(())
                } else {
                    Err(format!("patronictl: {theirs:?}\npgwardenctl: {ours:?}"))
                }
            },
        );
    }
    let version = patronictl(c, &["version", scope]);
    assert!(
        version.success() && version.stdout.contains("PostgreSQL 15."),
        "{version:?}"
    );

    let leader = c.wait_for_leader(FAILOVER_TIMEOUT);
    let out = patronictl_with(
        c,
        &[
            "query",
            scope,
            "-U",
            SUPERUSER,
            "-c",
            "SELECT pg_is_in_recovery()",
        ],
        &[("PGPASSWORD", SUPERUSER_PASSWORD)],
        None,
    );
    assert!(
        out.success() && out.stdout.contains("False"),
        "patronictl query reads the leader: {out:?}"
    );

    let target = wait_check(REPLICATION_TIMEOUT, "a sync standby in /sync", || {
        let name = c.sync_standby(c.name(leader))?;
        c.index_of(&name).ok_or(format!("unknown member {name}"))
    });
    wait_check(REPLICATION_TIMEOUT, "the failover target streaming", || {
        streaming(c, target)
    });
    let out = patronictl(
        c,
        &["failover", scope, "--candidate", c.name(target), "--force"],
    );
    assert!(
        out.success() && out.stdout.contains("Successfully failed over"),
        "patronictl failover: {out:?}\n{}",
        c.diagnostics(40)
    );
    let leader = wait_check(FAILOVER_TIMEOUT, "the candidate leads", || {
        match c.leader_now()? {
            l if l == target => Ok(l),
            l => Err(format!("{} leads", c.name(l))),
        }
    });

    let standby = (0..c.len()).find(|&i| i != leader).expect("a standby");
    wait_check(
        REJOIN_TIMEOUT,
        "the standby streaming before reinit",
        || streaming(c, standby),
    );
    let marker = c.data_dir(standby).join("left-by-patronictl-test");
    std::fs::write(&marker, "reinit removes me").expect("write a marker into the data dir");
    let out = patronictl(c, &["reinit", scope, c.name(standby), "--force", "--wait"]);
    assert!(
        out.success()
            && out.stdout.contains(&format!(
                "Success: reinitialize for member {}",
                c.name(standby)
            )),
        "patronictl reinit: {out:?}\n{}",
        c.diagnostics(40)
    );
    wait_check(REJOIN_TIMEOUT, "the rebuilt standby streaming", || {
        if marker.exists() {
            return Err("the data directory was not rebuilt yet".into());
        }
        streaming(c, standby)
    });

    let ghost = "/service/phantom";
    for (key, value) in [("members/x", "{}"), ("leader", "x")] {
        let mut put = c.etcd().etcdctl();
        put.args(["put", &format!("{ghost}/{key}"), value]);
        let out = support::process::run_capture(&mut put, Duration::from_secs(10));
        assert!(out.success(), "etcdctl put: {out:?}");
    }
    let out = patronictl_with(
        c,
        &["remove", "phantom"],
        &[],
        Some("phantom\nYes I am aware\nx\n"),
    );
    assert!(out.success(), "patronictl remove: {out:?}");
    let mut get = c.etcd().etcdctl();
    get.args(["get", "--prefix", "--keys-only", &format!("{ghost}/")]);
    let left = support::process::run_capture(&mut get, Duration::from_secs(10));
    assert!(
        left.success() && left.stdout.trim().is_empty(),
        "patronictl remove left keys: {left:?}"
    );
}

/// `pgwardenctl query`: the leader by default, a standby by role, a member by name, with a
/// password read from standard input; SQL errors and a member of the wrong role are
/// reported as patronictl reports them, and exit 1.
fn pgwardenctl_query(c: &Cluster, leader: usize) {
    use support::cluster::{SUPERUSER, SUPERUSER_PASSWORD};
    let scope = c.scope();
    let password = format!("{SUPERUSER_PASSWORD}\n");
    let query = |extra: &[&str]| {
        let mut args = vec!["query", scope, "-U", SUPERUSER, "--password"];
        args.extend_from_slice(extra);
        c.ctl_with_input(&args, &password)
    };
    let out = query(&[
        "-c",
        "SELECT 1 AS one, NULL AS nothing, pg_is_in_recovery() AS standby",
    ]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "one\tnothing\tstandby\n1\tNone\tf\n", "{out:?}");
    let out = query(&["-r", "replica", "-c", "SELECT pg_is_in_recovery()"]);
    assert_eq!(out.stdout, "pg_is_in_recovery\nt\n", "{out:?}");
    let out = query(&["-m", c.name(leader), "-r", "replica", "-c", "SELECT 1"]);
    assert!(
        !out.success()
            && out.stdout.contains(&format!(
                "No connection to member {} is available",
                c.name(leader)
            )),
        "{out:?}"
    );
    let out = query(&["-c", "SELECT no_such_column", "--format", "json"]);
    assert!(
        !out.success() && out.stdout.contains("ERROR, SQLSTATE: 42703"),
        "{out:?}"
    );
    let out = c.ctl_with_input(
        &[
            "query",
            scope,
            "-U",
            SUPERUSER,
            "--password",
            "-c",
            "SELECT 1",
        ],
        "wrong-password\n",
    );
    assert!(
        !out.success() && out.stdout.contains("No reachable member for the cluster"),
        "a wrong password reaches nothing: {out:?}"
    );
}

/// `pgwardenctl edit-config`: a `-p` change is shown as a diff, written and applied by every
/// member; an editor's change too; a bad value is refused naming the field and nothing is
/// written; a change from standard input waits for `--force`; no change says so.
fn pgwardenctl_edit_config(c: &Cluster) {
    let scope = c.scope();
    let work_mem_everywhere = |want: &str| {
        wait_check(
            REJOIN_TIMEOUT,
            &format!("work_mem {want} on every member"),
            || {
                for i in 0..c.len() {
                    let got = c.query_scalar(i, "SHOW work_mem")?;
                    if got.as_deref() != Some(want) {
                        return Err(format!("{}: work_mem {got:?}", c.name(i)));
                    }
                }
                Ok(())
            },
        );
    };
    let out = c.ctl(&["edit-config", scope, "-p", "work_mem=7MB", "--force"]);
    assert!(
        out.success()
            && out.stdout.contains("+    work_mem: 7MB")
            && out.stdout.contains("Configuration changed"),
        "{out:?}"
    );
    work_mem_everywhere("7MB");

    let before = c.dcs_json("config").expect("read /config");
    let out = c.ctl(&["edit-config", scope, "-s", "ttl=soon", "--force"]);
    assert!(
        !out.success() && out.stderr.contains("ttl") && out.stderr.contains("nothing was written"),
        "{out:?}"
    );
    let out = c.ctl_with_input(
        &["edit-config", scope, "--apply", "-"],
        "postgresql:\n  parameters:\n    work_mem: 3MB\n",
    );
    assert!(
        out.success() && out.stdout.contains("Use --force option to apply changes"),
        "{out:?}"
    );
    assert_eq!(c.dcs_json("config"), Ok(before), "nothing was written");

    let editor = c.node_dir(0).join("../edit-work-mem.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/work_mem: 7MB/work_mem: 9MB/' \"$1\"\n",
    )
    .expect("write the editor script");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the editor script");
    let editor = editor.to_string_lossy().into_owned();
    let out = c.ctl_with_env(
        &["edit-config", scope, "--force"],
        &[("EDITOR", editor.as_str())],
    );
    assert!(
        out.success()
            && out.stdout.contains("-    work_mem: 7MB")
            && out.stdout.contains("+    work_mem: 9MB"),
        "{out:?}"
    );
    work_mem_everywhere("9MB");
    let out = c.ctl(&["edit-config", scope, "-p", "work_mem=9MB", "--force"]);
    assert!(
        out.success() && out.stdout.contains("Not changed"),
        "{out:?}"
    );
}

/// `pgwardenctl topology`, `reinit` (the standby's data directory really is rebuilt: a
/// file left in it is gone) and `remove` (of another cluster in the same etcd, after the
/// typed confirmations; a wrong answer removes nothing).
fn pgwardenctl_topology_reinit_and_remove(c: &Cluster, leader: usize) {
    let scope = c.scope();
    let topology = c.ctl(&["topology", scope]);
    let rows: Vec<&str> = topology
        .stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Member"))
        .collect();
    assert_eq!(rows.len(), c.len(), "{topology:?}");
    assert!(
        rows[0].starts_with(&format!("| {} ", c.name(leader))),
        "the leader first: {topology:?}"
    );
    assert!(
        rows[1..].iter().all(|r| r.starts_with("| + ")),
        "standbys under it: {topology:?}"
    );

    let standby = (0..c.len()).find(|&i| i != leader).expect("a standby");
    wait_check(
        REPLICATION_TIMEOUT,
        "the standby streaming before reinit",
        || streaming(c, standby),
    );
    let marker = c.data_dir(standby).join("left-by-the-test");
    std::fs::write(&marker, "reinit removes me").expect("write a marker into the data dir");
    let refused = c.ctl(&["reinit", scope, c.name(leader), "--force"]);
    assert!(
        !refused.success(),
        "the leader is not reinitialized: {refused:?}"
    );
    let out = c.ctl(&["reinit", scope, c.name(standby), "--force", "--wait"]);
    assert!(
        out.success()
            && out.stdout.contains(&format!(
                "Success: reinitialize for member {}",
                c.name(standby)
            ))
            && out.stdout.contains(&format!(
                "Reinitialize is completed on: {}",
                c.name(standby)
            )),
        "pgwardenctl reinit: {out:?}\n{}",
        c.diagnostics(40)
    );
    assert!(!marker.exists(), "the data directory was not rebuilt");
    wait_check(
        REJOIN_TIMEOUT,
        "the reinitialized standby streaming",
        || streaming(c, standby),
    );

    // Another cluster in the same etcd, with a leader key.
    let ghost = "/service/ghost";
    for (key, value) in [("members/x", "{}"), ("leader", "x")] {
        let mut put = c.etcd().etcdctl();
        put.args(["put", &format!("{ghost}/{key}"), value]);
        let out = support::process::run_capture(&mut put, Duration::from_secs(10));
        assert!(out.success(), "etcdctl put: {out:?}");
    }
    let ghost_keys = || {
        let mut get = c.etcd().etcdctl();
        get.args(["get", "--prefix", "--keys-only", &format!("{ghost}/")]);
        let out = support::process::run_capture(&mut get, Duration::from_secs(10));
        assert!(out.success(), "etcdctl get: {out:?}");
        out.stdout.lines().filter(|l| !l.is_empty()).count()
    };
    assert_eq!(ghost_keys(), 2);
    let wrong = c.ctl_with_input(&["remove", "ghost"], "ghost\nYes I am aware\nnot-x\n");
    assert!(
        !wrong.success()
            && wrong
                .stderr
                .contains("You did not specify the current leader of the cluster"),
        "{wrong:?}"
    );
    assert_eq!(ghost_keys(), 2, "a wrong answer removes nothing");
    let out = c.ctl_with_input(&["remove", "ghost"], "ghost\nYes I am aware\nx\n");
    assert!(out.success(), "pgwardenctl remove: {out:?}");
    assert_eq!(ghost_keys(), 0, "every key of the removed cluster is gone");
    assert!(
        c.dcs_get("leader").is_ok_and(|k| k.is_some()),
        "the cluster under test keeps its keys"
    );
}

/// `strict-zero-loss` refuses a manual failover to an asynchronous standby and says why,
/// where the default policy would hand over; the operator's `override_policy` gets it done.
#[test]
fn strict_zero_loss_refuses_a_failover_to_an_async_standby_unless_overridden() {
    let _guard = exclusive();
    let strict = guests().path("strict-zero-loss");
    let c = Cluster::builder()
        .scope("pgwarden-strict")
        .synchronous_mode(true)
        .policy(0, &strict)
        .policy(1, &strict)
        .policy(2, &strict)
        .start();
    let (leader, _sync, other) = settled_sync_cluster(&c);
    let request = format!(r#"{{"candidate":"{}"}}"#, c.name(other));
    let (code, text) = post(&c, leader, "/failover", &request);
    assert_eq!(code, 503, "the failover is refused: {text}");
    assert!(
        text.contains("not a confirmed synchronous standby"),
        "the refusal names the reason: {text}"
    );
    assert_eq!(c.leader_now(), Ok(leader), "nothing moved");
    assert_eq!(
        c.dcs_get("failover").ok().flatten().map(|kv| kv.value),
        None,
        "declined requests are cleared"
    );

    let overridden = format!(
        r#"{{"candidate":"{}","override_policy":true}}"#,
        c.name(other)
    );
    let (code, text) = post(&c, leader, "/failover", &overridden);
    assert_eq!(
        code,
        200,
        "the override is honoured: {text}\n{}",
        c.diagnostics(40)
    );
    assert!(
        text.contains(&format!("failed over to \"{}\"", c.name(other))),
        "{text}"
    );
    let new_leader = wait_check(FAILOVER_TIMEOUT, "the candidate leads", || c.leader_now());
    assert_eq!(new_leader, other);
    let log = std::fs::read_to_string(c.log_path(other)).unwrap_or_default();
    assert!(
        log.contains("overrode the zero-loss rule"),
        "the candidate logs the override"
    );
}

/// `/patroni`'s `pgwarden.policy` of node `i`.
fn policy_status(c: &Cluster, i: usize) -> Result<serde_json::Value, String> {
    c.patroni(i)
        .and_then(|v| v.pointer("/pgwarden/policy").cloned())
        .ok_or_else(|| format!("{} has no pgwarden.policy in /patroni", c.name(i)))
}

/// Lower-case hex SHA-256 of a file, by `sha256sum` (an independent oracle).
fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// A cluster-wide policy in `/config` is loaded without restarting the agent, and a
/// component whose digest does not match is refused while the last good policy decides.
#[test]
fn a_cluster_wide_policy_is_hot_reloaded_and_a_wrong_digest_refused() {
    let _guard = exclusive();
    let zone_aware = guests().path("zone-aware");
    let c = Cluster::builder()
        .scope("pgwarden-reload")
        .nodes(1)
        .synchronous_mode(false)
        .start();
    c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let pid = c.agent_pid(0).expect("agent runs");
    let active = |c: &Cluster| -> Result<String, String> {
        let p = policy_status(c, 0)?;
        p.pointer("/active/name")
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .ok_or(format!("policy = {p}"))
    };
    assert_eq!(
        wait_check(Duration::from_secs(30), "an active policy", || active(&c)),
        "default",
        "the embedded default decides at first"
    );
    // The component must be readable by the agent (the postgres user): copy it beside it.
    let source = c.node_dir(0).join("zone-aware.wasm");
    std::fs::copy(&zone_aware, &source).expect("copy the component");
    let digest = sha256_of(&source);
    let mut config = c.dcs_json("config").expect("etcd").expect("/config");
    let with_policy = |config: &mut serde_json::Value, sha: &str| {
        config["policy"] = serde_json::json!({
            "name": "zone-aware",
            "sha256": sha,
            "source": source.display().to_string(),
        });
        config.to_string()
    };
    let key = format!("{}config", c.dcs_prefix());
    let wrong = "0".repeat(64);
    c.etcd().put(&key, &with_policy(&mut config, &wrong));
    let error = wait_check(
        Duration::from_secs(30),
        "the wrong digest to be refused",
        || {
            let p = policy_status(&c, 0)?;
            match p.pointer("/last_load_error").and_then(|e| e.as_str()) {
                Some(e) => Ok(e.to_string()),
                None => Err(format!("policy = {p}")),
            }
        },
    );
    assert!(
        error.contains(&format!("sha256 is {digest}, expected {wrong}")),
        "{error}"
    );
    assert_eq!(
        active(&c),
        Ok("default".into()),
        "the last good policy still decides"
    );

    c.etcd().put(&key, &with_policy(&mut config, &digest));
    wait_check(
        Duration::from_secs(30),
        "zone-aware to become active",
        || match active(&c)?.as_str() {
            "zone-aware" => Ok(()),
            other => Err(other.to_string()),
        },
    );
    assert_eq!(c.agent_pid(0), Some(pid), "no restart");
    assert_eq!(
        c.leader_now(),
        Ok(0),
        "the leader kept leading through both changes"
    );
}
