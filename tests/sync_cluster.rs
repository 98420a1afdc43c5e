//! Synchronous replication on real etcd + PostgreSQL 15 + three pgwarden agents: strict mode
//! (writes wait with no synchronous standby and resume when one returns) and quorum commit
//! (`ANY 1 (...)`, `/sync.quorum`, a failover that keeps every acknowledged row).
//!
//! Same conventions as `tests/cluster.rs`: one cluster at a time (a global lock), conditions
//! waited on with deadlines, password authentication, servers stopped by pid.
//! Run with `cargo test --test sync_cluster`.

use pgwarden_testkit as support;

use std::collections::BTreeSet;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::shared::{
    exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT, REPLICATION_TIMEOUT, SHORT_TIMEOUT,
};
use support::{wait_check, wait_until, AckWriter, Cluster};

/// How long a write must stay blocked to count as blocked (a negative check needs a window;
/// unblocked, a commit takes milliseconds).
const BLOCKED_WINDOW: Duration = Duration::from_secs(5);

const TABLE: &str = "acked_writes";

/// `/sync` as (leader, sorted standbys, quorum).
fn sync_key(c: &Cluster) -> Result<(String, Vec<String>, u64), String> {
    let v = c.dcs_json("sync")?.ok_or("no /sync key yet")?;
    let leader = v
        .get("leader")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut standbys: Vec<String> = v
        .get("sync_standby")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    standbys.sort();
    let quorum = v.get("quorum").and_then(Value::as_u64).unwrap_or(0);
    Ok((leader, standbys, quorum))
}

fn ssn(c: &Cluster, i: usize) -> Result<String, String> {
    Ok(c.query_scalar(i, "SHOW synchronous_standby_names")?
        .unwrap_or_default())
}

fn ids_on(c: &Cluster, i: usize) -> Result<BTreeSet<i64>, String> {
    let rows = c.query(i, &format!("SELECT id FROM {TABLE}"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
        .collect())
}

/// One INSERT on its own connection and thread, never cancelled (no statement_timeout): a
/// cancelled synchronous-replication wait would commit locally. The receiver gets the result
/// and any WARNING the server sent with it.
fn insert_in_background(c: &Cluster, i: usize, id: i64) -> mpsc::Receiver<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    let mut config = c.pg_config(i);
    let warnings: std::sync::Arc<Mutex<Vec<String>>> = Default::default();
    let sink = warnings.clone();
    config.notice_callback(move |n| {
        if n.severity() == "WARNING" {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(n.message().to_string());
        }
    });
    let mut client = support::sql::connect(&config).expect("connect for the blocked write");
    std::thread::spawn(move || {
        let result = client
            .execute(&format!("INSERT INTO {TABLE} (id) VALUES ($1)"), &[&id])
            .map(|_| ())
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let w = warnings.lock().unwrap_or_else(|e| e.into_inner());
                if w.is_empty() {
                    Ok(())
                } else {
                    Err(format!("committed with warnings: {w:?}"))
                }
            });
        let _ = tx.send(result);
    });
    rx
}

/// Strict mode: with both standbys gone a commit waits (the primary never clears
/// `synchronous_standby_names`); when one standby returns, the waiting commit completes.
#[test]
fn strict_mode_blocks_writes_without_a_standby_and_resumes_when_one_returns() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .nodes(3)
        .synchronous_mode(true)
        .dcs("synchronous_mode_strict", "true")
        .dcs("primary_stop_timeout", "3")
        .start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let leader_name = c.name(leader).to_string();
    let sync_name = wait_check(REPLICATION_TIMEOUT, "/sync to name one standby", || {
        c.sync_standby(&leader_name)
    });
    let sync = c.index_of(&sync_name).expect("member");
    let other = (0..3).find(|&i| i != leader && i != sync).expect("three");
    c.execute(
        leader,
        &format!("CREATE TABLE {TABLE} (id bigint PRIMARY KEY)"),
    )
    .expect("create table");
    c.execute(leader, &format!("INSERT INTO {TABLE} VALUES (0)"))
        .expect("first row");

    c.kill_node(sync);
    c.kill_node(other);
    // Their member keys expire with their leases; by then the leader has seen that no
    // eligible standby is left, which is when a non-strict leader would clear the setting.
    let (sync_key_name, other_name) = (sync_name.clone(), c.name(other).to_string());
    wait_check(SHORT_TIMEOUT, "the dead members' keys to expire", || {
        let left: Vec<String> = c
            .dcs_dump()?
            .into_iter()
            .map(|kv| kv.key)
            .filter(|k| k.ends_with(&sync_key_name) || k.ends_with(&other_name))
            .filter(|k| k.contains("/members/"))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still there: {left:?}"))
        }
    });
    let setting = ssn(&c, leader).expect("SHOW synchronous_standby_names");
    eprintln!("synchronous_standby_names with no standby: {setting}");
    assert!(
        !setting.is_empty(),
        "strict mode never clears synchronous_standby_names"
    );

    let blocked = insert_in_background(&c, leader, 1);
    match blocked.recv_timeout(BLOCKED_WINDOW) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("the write returned with no synchronous standby: {other:?}"),
    }
    assert!(
        !ssn(&c, leader).expect("show").is_empty(),
        "still set while the write waits"
    );
    let (_, recorded, _) = sync_key(&c).expect("/sync");
    eprintln!("/sync while blocked: {recorded:?}");

    // The standby that was not synchronous comes back: the leader makes it synchronous and
    // the waiting commit completes.
    c.start_node(other);
    let result = wait_until(REPLICATION_TIMEOUT, "the blocked write to commit", || {
        blocked.try_recv().ok()
    });
    assert_eq!(result, Ok(()), "the waiting commit completed cleanly");
    let other_name = c.name(other).to_string();
    wait_check(
        SHORT_TIMEOUT,
        "/sync to record the returned standby",
        || match sync_key(&c)? {
            (l, s, _) if l == leader_name && s == vec![other_name.clone()] => Ok(()),
            seen => Err(format!("{seen:?}")),
        },
    );
    wait_check(SHORT_TIMEOUT, "row 1 on the returned standby", || {
        ids_on(&c, other)?
            .contains(&1)
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });

    primary_stop_timeout_kills_a_stop_that_waits_on_a_frozen_standby(&c, leader, other);
}

/// `primary_stop_timeout: 3` under synchronous mode: the standby's processes are frozen, so
/// a fast shutdown of the primary waits on its walsender (it leaves only once the standby
/// confirms the shutdown checkpoint, up to `wal_sender_timeout`, a minute); the agent kills
/// the postmaster after 3 s and the restart goes on.
fn primary_stop_timeout_kills_a_stop_that_waits_on_a_frozen_standby(
    c: &Cluster,
    leader: usize,
    standby: usize,
) {
    use nix::sys::signal::Signal;
    use support::process::{descendants, proc_stat, signal};
    const WARNING: &str = "did not stop within primary_stop_timeout";
    let log = std::fs::read_to_string(c.log_path(leader)).unwrap_or_default();
    assert!(!log.contains(WARNING), "no earlier kill");
    let old_postmaster = c.postmaster_pid(leader).expect("leader's postmaster");
    let standby_postmaster = c.postmaster_pid(standby).expect("standby's postmaster");
    let mut frozen = descendants(standby_postmaster);
    frozen.push(standby_postmaster);
    for &pid in &frozen {
        signal(pid, Signal::SIGSTOP);
    }
    wait_check(
        SHORT_TIMEOUT,
        "the standby's processes to be stopped",
        || match frozen
            .iter()
            .find(|&&pid| proc_stat(pid).is_some_and(|s| !matches!(s.state, 'T' | 'Z')))
        {
            None => Ok(()),
            Some(pid) => Err(format!("{pid} still runs")),
        },
    );
    let r = c
        .http_slow(
            leader,
            "POST",
            "/restart",
            Some("{}"),
            Duration::from_secs(90),
        )
        .expect("POST /restart");
    assert_eq!(
        r.status, 200,
        "the restart goes on once the stop is killed (the old postmaster reaped first): {}",
        r.body
    );
    wait_check(SHORT_TIMEOUT, "the agent to kill the stop", || {
        let log = std::fs::read_to_string(c.log_path(leader)).map_err(|e| e.to_string())?;
        log.contains(WARNING)
            .then_some(())
            .ok_or_else(|| "no kill logged yet".to_string())
    });
    let new_postmaster = wait_until(SHORT_TIMEOUT, "a new postmaster on the leader", || {
        c.postmaster_pid(leader)
            .filter(|&pid| pid != old_postmaster)
    });
    for &pid in &frozen {
        signal(pid, Signal::SIGCONT);
    }
    eprintln!("postmaster {old_postmaster} killed, {new_postmaster} started");
    wait_check(SHORT_TIMEOUT, "the leader to write again", || {
        c.execute(
            leader,
            &format!("INSERT INTO {TABLE} VALUES (2) ON CONFLICT DO NOTHING"),
        )
    });
}

/// Quorum commit: `ANY 1 (both standbys)`, `/sync` with both voters and quorum 1
/// (`quorum + numsync = 1 + 1 >= |voters ∪ sync| = 2`); the leader dies under a writer and
/// a standby that has every acknowledged row takes over.
#[test]
fn quorum_mode_failover_keeps_every_acknowledged_row() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .nodes(3)
        .dcs("synchronous_mode", "quorum")
        .dcs("synchronous_node_count", "1")
        .start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let leader_name = c.name(leader).to_string();
    let mut replicas: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| c.name(i).to_string())
        .collect();
    replicas.sort();
    let want_ssn = format!("ANY 1 ({},{})", replicas[0], replicas[1]);
    wait_check(
        REPLICATION_TIMEOUT,
        "ANY 1 with both standbys, and /sync with both voters and quorum 1",
        || {
            let setting = ssn(&c, leader)?;
            let key = sync_key(&c)?;
            if setting == want_ssn && key == (leader_name.clone(), replicas.clone(), 1) {
                Ok(())
            } else {
                Err(format!("ssn {setting:?}, /sync {key:?}"))
            }
        },
    );
    let quorum_rows = c
        .query(
            leader,
            "SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1",
        )
        .expect("pg_stat_replication");
    eprintln!("pg_stat_replication: {quorum_rows:?}");
    assert!(
        quorum_rows
            .iter()
            .all(|r| r.get(1).cloned().flatten().as_deref() == Some("quorum")),
        "both standbys are quorum candidates: {quorum_rows:?}"
    );
    // Patroni's health checks in quorum mode: the voters answer /quorum and
    // /read-only-quorum, not /sync (synchronous standbys of `synchronous_mode: on` only);
    // the leader answers /primary, not /quorum; /patroni says quorum_standby.
    wait_check(SHORT_TIMEOUT, "quorum-mode health checks", || {
        let mut problems = Vec::new();
        for i in 0..3 {
            let expected: &[(&str, u16)] = if i == leader {
                &[("/primary", 200), ("/quorum", 503), ("/sync", 503)]
            } else {
                &[
                    ("/quorum", 200),
                    ("/read-only-quorum", 200),
                    ("/sync", 503),
                    ("/replica", 200),
                ]
            };
            for (path, code) in expected {
                let got = c.http_status(i, "GET", path);
                if got != Some(*code) {
                    problems.push(format!("{} {path} = {got:?}, want {code}", c.name(i)));
                }
            }
            let patroni = c
                .http_json(i, "/patroni")
                .ok_or_else(|| format!("{}: GET /patroni failed", c.name(i)))?;
            // Patroni writes the field for quorum standbys only.
            let flag = patroni.get("quorum_standby").and_then(Value::as_bool);
            if flag.unwrap_or(false) != (i != leader) {
                problems.push(format!("{} /patroni quorum_standby: {patroni}", c.name(i)));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    });

    c.execute(
        leader,
        &format!("CREATE TABLE {TABLE} (id bigint PRIMARY KEY)"),
    )
    .expect("create table");
    let writer = AckWriter::start(&c.pg_config(leader), TABLE, 1);
    wait_until(SHORT_TIMEOUT, "the writer to acknowledge 50 rows", || {
        (writer.acked_count() >= 50 || writer.is_finished()).then_some(())
    });
    assert!(writer.error().is_none(), "writer: {:?}", writer.error());
    c.kill_node(leader);
    wait_until(
        SHORT_TIMEOUT,
        "the writer to stop on the dead leader",
        || writer.is_finished().then_some(()),
    );
    let report = writer.stop(Duration::from_secs(5));
    assert!(
        report.unsafe_commits.is_empty(),
        "commits with warnings: {:?}",
        report.unsafe_commits
    );
    eprintln!("writer: {} acknowledged rows", report.acked.len());

    let new_leader = c.wait_for_leader(FAILOVER_TIMEOUT);
    assert_ne!(new_leader, leader);
    let present = wait_check(SHORT_TIMEOUT, "the rows on the new leader", || {
        ids_on(&c, new_leader)
    });
    let lost = report.missing_from(&present);
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    let new_name = c.name(new_leader).to_string();
    wait_check(
        SHORT_TIMEOUT,
        "/sync led by the new leader",
        || match sync_key(&c)? {
            (l, s, q) if l == new_name => Ok((s, q)),
            seen => Err(format!("{seen:?}")),
        },
    );
}
