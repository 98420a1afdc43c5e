//! Cluster scenarios on real etcd + PostgreSQL 15 + three pgwarden agents on loopback, checked
//! only through the Patroni-compatible contract: REST paths and status codes, etcd keys under
//! `/service/<scope>/`, PostgreSQL itself, and `pgwardenctl list`.
//!
//! Each scenario builds its own cluster; a global lock keeps them from overlapping (two cores:
//! concurrent clusters break lease timing). Run with `cargo test --test cluster`.
//! On failure the harness prints each agent's log tail and the DCS keys; set
//! `PGWARDEN_KEEP_TEST_DIRS=1` to keep the node dirs.

use pgwarden_testkit as support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::haproxy::Haproxy;
use support::process::{
    give_to_runner, install_binaries, make_test_dir, run_capture, runner_command, set_mode,
    Captured, POLL_INTERVAL,
};
use support::shared::{
    exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT, REJOIN_TIMEOUT, REPLICATION_TIMEOUT,
    SHORT_TIMEOUT,
};
use support::{wait_check, wait_until, AckWriter, Cluster, NodeSpec};

const TABLE: &str = "acked_writes";

// ----- checks shared by the scenarios ---------------------------------------------------------

/// GET /primary: 200 on `leader`, 503 on `replicas`, no answer from `down`;
/// GET /replica: 200 on `replicas`, 503 on `leader`.
fn expect_endpoints(
    c: &Cluster,
    leader: usize,
    replicas: &[usize],
    down: &[usize],
) -> Result<(), String> {
    let primary = c.statuses("/primary");
    let replica = c.statuses("/replica");
    let mut bad = Vec::new();
    for i in 0..c.len() {
        let (want_primary, want_replica) = if i == leader {
            (Some(200), Some(503))
        } else if replicas.contains(&i) {
            (Some(503), Some(200))
        } else if down.contains(&i) {
            (None, None)
        } else {
            continue;
        };
        if primary[i] != want_primary || replica[i] != want_replica {
            bad.push(format!(
                "{}: /primary {:?} (want {want_primary:?}), /replica {:?} (want {want_replica:?})",
                c.name(i),
                primary[i],
                replica[i]
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// GET /patroni carries `role`, `state: running`, `timeline` and the role's `xlog` fields.
fn check_patroni(c: &Cluster, i: usize, role: &str) -> Result<Value, String> {
    let v = c
        .patroni(i)
        .ok_or_else(|| format!("{}: no GET /patroni answer", c.name(i)))?;
    let field = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let xlog = field("xlog");
    let xlog_ok = if role == "primary" {
        xlog.get("location").is_some_and(Value::is_u64)
    } else {
        xlog.get("received_location").is_some() || xlog.get("replayed_location").is_some()
    };
    if field("role") == role && field("state") == "running" && field("timeline").is_i64() && xlog_ok
    {
        Ok(v)
    } else {
        Err(format!(
            "{}: GET /patroni = {v} (want role {role}, state running, timeline, xlog)",
            c.name(i)
        ))
    }
}

/// Every id in the test table on node `i`.
fn ids_on(c: &Cluster, i: usize) -> Result<BTreeSet<i64>, String> {
    let rows = c.query(i, &format!("SELECT id FROM {TABLE}"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
        .collect())
}

/// A history (GET /history body or `/history` key) with an entry for timeline 1; when the entry
/// names the new leader (5th element), it must be `new_leader`.
fn history_records_failover(v: &Value, new_leader: &str) -> Result<(), String> {
    let entries = v
        .as_array()
        .ok_or_else(|| format!("history is not a list: {v}"))?;
    let entry = entries
        .iter()
        .filter_map(Value::as_array)
        .find(|e| e.first().and_then(Value::as_i64) == Some(1))
        .ok_or_else(|| format!("no entry for timeline 1 in {v}"))?;
    match entry.get(4).and_then(Value::as_str) {
        Some(name) if name != new_leader => Err(format!(
            "timeline 1 entry names {name}, want {new_leader}: {v}"
        )),
        _ => Ok(()),
    }
}

/// `pgwardenctl list`: every member, exactly one `Leader`, one `Sync Standby`, and `streaming`.
fn check_ctl_list(c: &Cluster) -> Result<String, String> {
    check_list_output(c, "pgwardenctl list", c.ctl(&["list"]))
}

/// A `list` table (ours or patronictl's) shows every member, one Leader, one Sync Standby,
/// and streaming replicas.
fn check_list_output(c: &Cluster, what: &str, out: Captured) -> Result<String, String> {
    if !out.success() {
        return Err(format!("{what} failed: {out:?}"));
    }
    let text = out.stdout;
    let lines: Vec<&str> = text.lines().collect();
    let count = |pred: &dyn Fn(&str) -> bool| lines.iter().filter(|l| pred(l)).count();
    let mut problems = Vec::new();
    for i in 0..c.len() {
        if !text.contains(c.name(i)) {
            problems.push(format!("member {} missing", c.name(i)));
        }
    }
    let leaders = count(&|l| l.contains("Leader") && !l.contains("Standby Leader"));
    if leaders != 1 {
        problems.push(format!("{leaders} lines with Leader (want 1)"));
    }
    let syncs = count(&|l| l.contains("Sync Standby"));
    if syncs != 1 {
        problems.push(format!("{syncs} lines with Sync Standby (want 1)"));
    }
    if !text.contains("streaming") {
        problems.push("no streaming member".to_string());
    }
    if problems.is_empty() {
        Ok(text)
    } else {
        Err(format!("{}\n{text}", problems.join("; ")))
    }
}

/// The node that is neither `a` nor `b` (three-node clusters).
fn third(a: usize, b: usize) -> usize {
    (0..3).find(|&i| i != a && i != b).expect("three nodes")
}

/// Bootstrap of a three-node synchronous cluster: one leader, its sync standby, a streaming
/// replica, and the test table with row 0 everywhere. Returns (leader, sync standby, other).
fn bootstrap_three(c: &Cluster) -> (usize, usize, usize) {
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let leader_name = c.name(leader).to_string();
    let sync_name = wait_check(
        REPLICATION_TIMEOUT,
        "/sync to name the leader and one sync standby",
        || c.sync_standby(&leader_name),
    );
    let sync = c
        .index_of(&sync_name)
        .expect("the sync standby is a member");
    let other = third(leader, sync);

    wait_check(
        REPLICATION_TIMEOUT,
        "GET /primary 200 only on the leader, GET /replica 200 on both standbys",
        || expect_endpoints(c, leader, &[sync, other], &[]),
    );
    wait_check(
        REPLICATION_TIMEOUT,
        "the sync standby in synchronous_standby_names and pg_stat_replication (sync), the third streaming",
        || {
            let ssn = c.query_scalar(leader, "SHOW synchronous_standby_names")?.unwrap_or_default();
            if !ssn.contains(&sync_name) {
                return Err(format!("synchronous_standby_names = {ssn:?}"));
            }
            let rows = c.query(
                leader,
                "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1",
            )?;
            let row = |name: &str| rows.iter().find(|r| r[0].as_deref() == Some(name)).cloned();
            match (row(&sync_name), row(c.name(other))) {
                (Some(s), Some(o))
                    if s[1].as_deref() == Some("streaming")
                        && s[2].as_deref() == Some("sync")
                        && o[1].as_deref() == Some("streaming") =>
                {
                    Ok(())
                }
                _ => Err(format!("pg_stat_replication = {rows:?}")),
            }
        },
    );
    wait_check(SHORT_TIMEOUT, "GET /patroni fields on every node", || {
        check_patroni(c, leader, "primary")?;
        check_patroni(c, sync, "replica")?;
        check_patroni(c, other, "replica")?;
        Ok::<(), String>(())
    });

    c.execute(
        leader,
        &format!(
            "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO {TABLE} (id) VALUES (0)"
        ),
    )
    .expect("create the test table on the leader");
    for r in [sync, other] {
        wait_check(
            REPLICATION_TIMEOUT,
            &format!("row 0 readable on {}", c.name(r)),
            || {
                ids_on(c, r)?
                    .contains(&0)
                    .then_some(())
                    .ok_or_else(|| "row 0 not there yet".to_string())
            },
        );
    }
    (leader, sync, other)
}

// ----- scenarios ------------------------------------------------------------------------------

/// Bootstrap, synchronous replication, kill -9 of the leader node under a writer, failover to
/// the sync standby with no acknowledged write lost, history, rejoin on the new timeline;
/// also the health-check methods and `pgwardenctl list`.
#[test]
fn bootstrap_replicate_failover_rejoin() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .nodes(3)
        .etcd_members(1)
        .synchronous_mode(true)
        .pgwarden(&format!("  input_log: {INPUT_LOG}\n"))
        .start();
    let (leader, _, _) = bootstrap_three(&c);

    // HAProxy's view: HEAD and OPTIONS answer like GET; bare `OPTIONS /` is the primary check.
    for i in 0..3 {
        let want = if i == leader { 200 } else { 503 };
        for (method, path) in [
            ("OPTIONS", "/"),
            ("OPTIONS", "/primary"),
            ("HEAD", "/primary"),
        ] {
            assert_eq!(
                c.http_status(i, method, path),
                Some(want),
                "{method} {path} on {}",
                c.name(i)
            );
        }
    }

    let list = wait_check(
        SHORT_TIMEOUT,
        "pgwardenctl list: one Leader, one Sync Standby, streaming",
        || check_ctl_list(&c),
    );
    eprintln!("pgwardenctl list:\n{list}");

    // Writer commits numbered rows on the leader; the leader node dies under it.
    let writer = AckWriter::start(&c.pg_config(leader), TABLE, 1);
    wait_until(SHORT_TIMEOUT, "the writer to acknowledge 20 rows", || {
        (writer.acked_count() >= 20 || writer.is_finished()).then_some(())
    });
    assert!(
        writer.error().is_none(),
        "writer failed before the fault: {:?}",
        writer.error()
    );
    let leader_name = c.name(leader).to_string();
    let sync_name = c
        .sync_standby(&leader_name)
        .expect("/sync just before the kill");
    let expected = c.index_of(&sync_name).expect("sync standby is a member");
    let survivor = third(leader, expected);

    c.kill_node(leader);
    wait_until(
        SHORT_TIMEOUT,
        "the writer to stop on the dead leader",
        || writer.is_finished().then_some(()),
    );
    let report = writer.stop(Duration::from_secs(5));
    eprintln!(
        "writer: {} acknowledged ids, stopped by {:?}",
        report.acked.len(),
        report.error
    );
    assert!(
        report.error.is_some(),
        "the writer must have hit the dead leader: {report:?}"
    );
    assert!(
        report.unsafe_commits.is_empty(),
        "commits with warnings: {:?}",
        report.unsafe_commits
    );
    assert!(report.acked.len() >= 20);

    // Exactly one new leader, the former sync standby, with every acknowledged row.
    let new_leader = c.wait_for_leader(FAILOVER_TIMEOUT);
    assert_eq!(
        c.name(new_leader),
        sync_name,
        "synchronous mode: only the sync standby ({sync_name}) may be promoted"
    );
    // GET /primary may turn 200 a moment before promotion finishes (Patroni does too).
    wait_check(
        SHORT_TIMEOUT,
        "the new leader to leave recovery (pg_is_in_recovery() = false)",
        || match c.in_recovery(new_leader)? {
            false => Ok(()),
            true => Err("still in recovery".to_string()),
        },
    );
    let present = wait_check(SHORT_TIMEOUT, "reading the ids on the new leader", || {
        ids_on(&c, new_leader)
    });
    let lost = report.missing_from(&present);
    assert!(
        lost.is_empty(),
        "{} acknowledged ids lost: {lost:?}",
        lost.len()
    );
    wait_check(
        REPLICATION_TIMEOUT,
        "GET /primary 200 only on the new leader, /replica 200 on the surviving replica",
        || expect_endpoints(&c, new_leader, &[survivor], &[leader]),
    );

    // The failover is in the history: the key and GET /history.
    wait_check(
        SHORT_TIMEOUT,
        "the /history key to record the end of timeline 1",
        || {
            history_records_failover(
                &c.dcs_json("history")?.ok_or("no /history key")?,
                &sync_name,
            )
        },
    );
    wait_check(
        SHORT_TIMEOUT,
        "GET /history on the new leader to record timeline 1",
        || {
            history_records_failover(
                &c.http_json(new_leader, "/history")
                    .ok_or("no GET /history answer")?,
                &sync_name,
            )
        },
    );
    let timeline = c
        .timeline_of(new_leader)
        .expect("timeline of the new leader");
    assert!(
        timeline >= 2,
        "promotion starts a new timeline, got {timeline}"
    );

    // The new leader's core, fed again what it was fed, promotes the same way.
    let promoted = replay_input_log(&c, new_leader);
    assert!(
        promoted
            .transitions
            .iter()
            .any(|t| t.starts_with("candidate -> primary")),
        "the replay of {} shows no promotion: {promoted:?}",
        c.name(new_leader)
    );

    // The killed node comes back as a replica of the new leader on its timeline.
    c.start_node(leader);
    wait_check(
        REJOIN_TIMEOUT,
        "the old leader to rejoin as a replica on the new timeline",
        || {
            let p = check_patroni(&c, leader, "replica")?;
            let tl = p.get("timeline").and_then(Value::as_i64);
            if tl != Some(timeline) {
                return Err(format!("timeline {tl:?}, leader is on {timeline}"));
            }
            match c.http_status(leader, "GET", "/replica") {
                Some(200) => Ok(()),
                s => Err(format!("GET /replica = {s:?}")),
            }
        },
    );
    c.execute(new_leader, &format!("INSERT INTO {TABLE} (id) VALUES (-1)"))
        .expect("write on the new leader after the rejoin");
    // Both replicas stream from the new leader: the surviving one may have received WAL
    // the new leader never had (it was asynchronous), in which case it had to be rewound.
    for r in [leader, survivor] {
        wait_check(
            REJOIN_TIMEOUT,
            &format!("the new row on {}", c.name(r)),
            || {
                ids_on(&c, r)?
                    .contains(&-1)
                    .then_some(())
                    .ok_or_else(|| "row -1 not there yet".to_string())
            },
        );
    }
    wait_check(
        SHORT_TIMEOUT,
        "final topology: one primary, two replicas",
        || expect_endpoints(&c, new_leader, &[survivor, leader], &[]),
    );

    // The synchronous standby dies: the other replica takes its place, in /sync and in
    // synchronous_standby_names, and writes go on.
    let old_sync = wait_check(
        SHORT_TIMEOUT,
        "a synchronous standby after the rejoin",
        || c.sync_standby(c.name(new_leader)),
    );
    let old_sync_idx = c.index_of(&old_sync).expect("sync standby is a member");
    let replacement = third(new_leader, old_sync_idx);
    c.kill_node(old_sync_idx);
    wait_check(
        REPLICATION_TIMEOUT,
        "the remaining replica to become the synchronous standby",
        || {
            let now = c.sync_standby(c.name(new_leader))?;
            if now != c.name(replacement) {
                return Err(format!("/sync names {now}"));
            }
            let names = c
                .query_scalar(new_leader, "SHOW synchronous_standby_names")?
                .unwrap_or_default();
            if !names.contains(c.name(replacement)) {
                return Err(format!("synchronous_standby_names = {names}"));
            }
            Ok(())
        },
    );
    c.execute(new_leader, &format!("INSERT INTO {TABLE} (id) VALUES (-2)"))
        .expect("a synchronous write with the replacement standby");

    // The old leader's log holds two runs: the one killed as leader, and the rejoin (its
    // first input after the restart found its own data ahead or behind, and rewound or
    // followed). Both replay.
    let rejoined = replay_input_log(&c, leader);
    assert_eq!(rejoined.runs, 2, "{rejoined:?}");

    // The operator's way: `pgwardenctl -c <node config> replay <log>`, which fails on a log
    // the core disagrees with (a copy with one effect added).
    let log_path = c.node_dir(new_leader).join(INPUT_LOG);
    let out = c.ctl_as(new_leader, &["replay", &log_path.to_string_lossy()]);
    assert!(
        out.success() && out.stdout.contains("the same as recorded"),
        "pgwardenctl replay: {out:?}"
    );
    assert!(out.stdout.contains("candidate -> primary"), "{out:?}");
    let tampered = c.node_dir(new_leader).join("input-log-tampered.jsonl");
    let text = fs::read_to_string(&log_path).expect("the input log");
    // The 20th record claims an effect the core never emitted.
    let forged: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(n, line)| match n {
            19 => {
                let mut record: Value = serde_json::from_str(line).expect("a record");
                record["effects"]
                    .as_array_mut()
                    .expect("the record's effects")
                    .push(Value::from("Forged"));
                record.to_string()
            }
            _ => line.to_string(),
        })
        .collect();
    fs::write(&tampered, forged.join("\n") + "\n").expect("a tampered copy");
    let out = c.ctl_as(new_leader, &["replay", &tampered.to_string_lossy()]);
    assert!(
        !out.success() && out.stderr.contains("the replay differs"),
        "pgwardenctl replay accepted a tampered log: {out:?}"
    );
}

/// Where each agent of the replay test records its inputs (relative to its node dir).
const INPUT_LOG: &str = "input-log.jsonl";

/// Replays node `i`'s input log through a fresh core built from its configuration file and
/// fails on the first input after which the core did something else than it did live.
fn replay_input_log(c: &Cluster, i: usize) -> pgwarden::core::replay::ReplayReport {
    let text = fs::read_to_string(c.config_path(i)).expect("the node's configuration");
    let loaded = pgwarden::config::parse(&text, &|_| None).expect("a valid configuration");
    let settings = pgwarden::runtime::node_settings(&loaded.config);
    let log = fs::read_to_string(c.node_dir(i).join(INPUT_LOG)).expect("the input log");
    let report = pgwarden::core::replay::replay(&settings, &log)
        .unwrap_or_else(|e| panic!("replaying {}'s input log: {e}", c.name(i)));
    eprintln!(
        "replayed {}: {} runs, {} inputs, {} effects, {} transitions",
        c.name(i),
        report.runs,
        report.inputs,
        report.effects,
        report.transitions.len()
    );
    // A replay that fed nothing proves nothing: the log covers the whole life of the node.
    assert!(report.inputs >= 50, "{report:?}");
    assert!(report.effects >= 20, "{report:?}");
    report
}

/// What a stability window saw.
#[derive(Debug, Default)]
struct Window {
    iterations: u64,
    member_refreshes: BTreeMap<String, u32>,
    xlog_advanced: bool,
    acked_before: usize,
    acked_now: usize,
    dcs_read_errors: u32,
}

/// Watches the cluster while a writer runs: at every poll the leader and its leader key are
/// unchanged, /primary and /replica answer as before, the writer has no error. Ends when at
/// least `min_window` has passed (long enough for an unrenewed lease to expire) and the loops
/// visibly ran: every member key rewritten `refreshes` times, the leader's xlog location
/// advanced, the writer acknowledged 20 more rows.
fn observe_stable(
    c: &Cluster,
    leader: usize,
    writer: &AckWriter,
    min_window: Duration,
    what: &str,
) {
    let refreshes = 3;
    let replicas: Vec<usize> = (0..c.len()).filter(|&i| i != leader).collect();
    let leader_key = c
        .dcs_get("leader")
        .expect("read /leader")
        .expect("a /leader key");
    assert_eq!(
        leader_key.value,
        c.name(leader),
        "{what}: /leader names the leader"
    );
    let members = |c: &Cluster| -> Result<BTreeMap<String, i64>, String> {
        let prefix = format!("{}members/", c.dcs_prefix());
        Ok(c.dcs_dump()?
            .into_iter()
            .filter_map(|kv| Some((kv.key.strip_prefix(&prefix)?.to_string(), kv.mod_revision)))
            .collect())
    };
    let xlog = |c: &Cluster| c.patroni(leader)?.pointer("/xlog/location")?.as_u64();
    let mut last_rev = members(c).expect("read the member keys");
    let xlog0 = xlog(c).expect("leader xlog location");
    let mut w = Window {
        acked_before: writer.acked_count(),
        ..Window::default()
    };
    let start = Instant::now();
    let deadline = min_window + Duration::from_secs(90);
    loop {
        w.iterations += 1;
        let fail = |why: String, w: &Window| -> ! {
            panic!(
                "{what}: after {:.1}s: {why}\nwindow so far: {w:?}",
                start.elapsed().as_secs_f64()
            )
        };
        if let Err(e) = expect_endpoints(c, leader, &replicas, &[]) {
            fail(format!("REST health changed: {e}"), &w);
        }
        if let Some(e) = writer.error() {
            fail(format!("a write failed: {e}"), &w);
        }
        // The harness's own etcd reads may fail briefly (e.g. during a Raft election): only
        // a changed value counts against the agents.
        match c.dcs_get("leader") {
            Ok(Some(kv))
                if kv.value == leader_key.value
                    && kv.create_revision == leader_key.create_revision => {}
            Ok(other) => fail(
                format!("/leader changed from {leader_key:?} to {other:?}"),
                &w,
            ),
            Err(_) => w.dcs_read_errors += 1,
        }
        match members(c) {
            Ok(now) => {
                for (name, rev) in &now {
                    if last_rev.get(name).is_some_and(|r| r != rev) {
                        *w.member_refreshes.entry(name.clone()).or_default() += 1;
                    }
                }
                last_rev = now;
            }
            Err(_) => w.dcs_read_errors += 1,
        }
        if xlog(c).is_some_and(|x| x > xlog0) {
            w.xlog_advanced = true;
        }
        w.acked_now = writer.acked_count();
        let loops_ran = (0..c.len())
            .all(|i| w.member_refreshes.get(c.name(i)).copied().unwrap_or(0) >= refreshes);
        if start.elapsed() >= min_window
            && loops_ran
            && w.xlog_advanced
            && w.acked_now >= w.acked_before + 20
        {
            eprintln!(
                "[harness] {what}: stable for {:.1}s: {w:?}",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        if start.elapsed() > deadline {
            fail(
                "the agents' loops did not visibly run (member keys, xlog, writes)".to_string(),
                &w,
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Losing one of three etcd members changes nothing: not the first-listed member (a follower;
/// the agents must fail over to another endpoint), and then not the Raft leader either; nor
/// do ten SIGHUPs to the leader's agent (an operator's `systemctl reload`).
/// Timing ttl 10 / loop_wait 1 / retry_timeout 4 (loop_wait + 2 * retry_timeout <= ttl) leaves
/// room for etcd's default 1-2 s leader election.
#[test]
fn etcd_member_loss_and_sighup_change_nothing() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .nodes(3)
        .etcd_members(3)
        .timing(10, 1, 4)
        .start();
    let (leader, _, _) = bootstrap_three(&c);
    let min_window = c.ttl() * 2;
    let writer = AckWriter::start(&c.pg_config(leader), TABLE, 1);

    // Phase 1: the first endpoint in every agent's etcd3.hosts dies (made a follower first so
    // this phase tests the client side only).
    if c.etcd().raft_leader().expect("etcd Raft leader") == 0 {
        c.etcd().move_leader(1);
    }
    c.etcd_mut().stop_member(0);
    observe_stable(
        &c,
        leader,
        &writer,
        min_window,
        "etcd member 0 (first listed, follower) down",
    );

    // Phase 2: back to three members, then the Raft leader dies.
    c.etcd_mut().start_member(0);
    let raft_leader = c.etcd().raft_leader().expect("etcd Raft leader");
    eprintln!("[harness] stopping etcd Raft leader: member {raft_leader}");
    c.etcd_mut().stop_member(raft_leader);
    observe_stable(&c, leader, &writer, min_window, "etcd Raft leader down");
    c.etcd_mut().start_member(raft_leader);

    // Phase 3: SIGHUP (Patroni's systemd `ExecReload`) ten times to the leader's agent, once
    // while its file is broken: each is handled (the agent logs it), none stops the agent,
    // and nothing changes for the cluster.
    sighup_ten_times(&mut c, leader);
    observe_stable(
        &c,
        leader,
        &writer,
        c.ttl(),
        "after ten SIGHUPs to the leader's agent",
    );

    // Phase 4: a second agent named as the leader refuses to start (Patroni's guard).
    a_second_agent_of_one_name_refuses(&c, leader);

    let report = writer.stop(SHORT_TIMEOUT);
    assert!(report.error.is_none(), "{report:?}");
    let present = ids_on(&c, leader).expect("ids on the leader");
    let lost = report.missing_from(&present);
    assert!(
        lost.is_empty(),
        "acknowledged ids missing on the unchanged leader: {lost:?}"
    );
}

/// Starts an agent with node `i`'s name but ports and a directory of its own: it must exit
/// non-zero, naming the running member, without creating its data directory. Two agents of
/// one name would share one member key and take each other's lease for their own.
fn a_second_agent_of_one_name_refuses(c: &Cluster, i: usize) {
    let dir = make_test_dir("pgwarden-dup-");
    let node = dir.path().join("dup");
    fs::create_dir(&node).expect("mkdir dup dir");
    set_mode(&node, 0o700);
    give_to_runner(&node);
    let pg_port = support::process::free_port();
    let spec = NodeSpec {
        dir: node.clone(),
        api_port: support::process::free_port(),
        pg_port,
        pg_listen: format!("127.0.0.1:{pg_port}"),
        ..c.spec(i).clone()
    };
    let config = node.join("pgwarden.yml");
    spec.write(&config);
    let mut cmd = runner_command(c.pgwarden_bin(), &node);
    cmd.arg(&config);
    let out = run_capture(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.is_some(),
        "a second agent named {} kept running (killed after 60 s): {out:?}",
        c.name(i)
    );
    assert!(
        !out.success(),
        "a second agent of one name started: {out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("already a node named \"{}\" running", c.name(i))),
        "stderr should name the running member:\nstderr: {}\nstdout: {}",
        out.stderr,
        out.stdout
    );
    assert!(
        !spec.data_dir().exists(),
        "the refused agent must not create its data directory"
    );
}

/// Sends SIGHUP ten times to node `i`'s agent (the fifth time with its configuration file
/// made unparsable, then restored) and checks each was handled, not fatal: the agent logs
/// every one and is alive afterwards.
fn sighup_ten_times(c: &mut Cluster, i: usize) {
    let pid = c.agent_pid(i).expect("the agent is running") as i32;
    let config = c.config_path(i).to_path_buf();
    let good = fs::read_to_string(&config).expect("read the agent's config");
    let logged = |c: &Cluster, needle: &str| {
        fs::read_to_string(c.log_path(i))
            .unwrap_or_default()
            .matches(needle)
            .count()
    };
    for round in 1..=10 {
        let broken = round == 5;
        let needle = if broken {
            fs::write(&config, "scope: [unclosed\n").expect("break the config");
            "SIGHUP: the configuration file is invalid"
        } else {
            "SIGHUP: configuration re-read"
        };
        let before = logged(c, needle);
        support::process::signal(pid, nix::sys::signal::Signal::SIGHUP);
        wait_until(
            SHORT_TIMEOUT,
            &format!("{} to log SIGHUP #{round} ({needle:?})", c.name(i)),
            || (logged(c, needle) > before).then_some(()),
        );
        if broken {
            fs::write(&config, &good).expect("restore the config");
        }
        assert!(c.agent_alive(i), "SIGHUP #{round} stopped {}", c.name(i));
    }
}

/// An invalid local config (`postgresql.listen` without a port) makes the agent exit non-zero
/// quickly, naming the key on stderr, before touching the data dir.
#[test]
fn config_validation() {
    let _guard = exclusive();
    let dir = make_test_dir("pgwarden-cfg-");
    let (pgwarden, _) = install_binaries(&dir.path().join("bin"));
    let node = dir.path().join("node1");
    fs::create_dir(&node).expect("mkdir node dir");
    set_mode(&node, 0o700);
    give_to_runner(&node);
    // Nothing listens on this etcd port: the check must not need a DCS.
    let etcd = vec![format!("127.0.0.1:{}", support::process::free_port())];
    let spec = NodeSpec {
        pg_listen: "0.0.0.0".to_string(),
        ..NodeSpec::local("pgwarden-it", "node1", &node, etcd)
    };
    let config = node.join("pgwarden.yml");
    spec.write(&config);

    let mut cmd = runner_command(&pgwarden, &node);
    cmd.arg(&config);
    let out = run_capture(&mut cmd, Duration::from_secs(30));
    assert!(
        out.status.is_some(),
        "pgwarden kept running with postgresql.listen = 0.0.0.0 (killed after 30 s): {out:?}"
    );
    assert!(
        !out.success(),
        "pgwarden accepted postgresql.listen without a port: {out:?}"
    );
    assert!(
        out.stderr.contains("postgresql.listen"),
        "stderr should name postgresql.listen:\nstderr: {}\nstdout: {}",
        out.stderr,
        out.stdout
    );
    assert!(
        !spec.data_dir().exists(),
        "an invalid config must not create the data dir"
    );
}

/// The seed guide's HAProxy checks, unchanged but for addresses and ports, route writes to the
/// leader and reads to standbys, and follow a failover; patronictl reads our etcd keys.
#[test]
fn haproxy_and_patronictl_follow_the_leader() {
    let _guard = exclusive();
    let mut c = Cluster::builder().nodes(3).synchronous_mode(true).start();
    let (leader, _sync, _other) = bootstrap_three(&c);
    let proxy = Haproxy::start(&c.haproxy_servers());
    // inter 3s, rise 2: a server is UP after about 6 s.
    let routing = Duration::from_secs(60);
    wait_check(
        routing,
        "HAProxy's writes port to reach the leader",
        || match c.behind_proxy(proxy.primary_port)? {
            (false, port) if port == c.pg_port(leader) => Ok(()),
            other => Err(format!(
                "behind the writes port: {other:?}\n{}",
                proxy.log_tail()
            )),
        },
    );
    wait_check(
        routing,
        "HAProxy's reads port to reach a standby",
        || match c.behind_proxy(proxy.replica_port)? {
            (true, port) if port != c.pg_port(leader) => Ok(()),
            other => Err(format!("behind the reads port: {other:?}")),
        },
    );

    let mut cmd = std::process::Command::new(support::process::patronictl());
    support::process::scrub_env(&mut cmd);
    cmd.arg("-c").arg(c.config_path(0)).arg("list");
    let listed = check_list_output(
        &c,
        "patronictl list",
        run_capture(&mut cmd, Duration::from_secs(60)),
    );
    let text = listed.unwrap_or_else(|e| panic!("patronictl list does not read our keys: {e}"));
    assert!(
        text.contains(c.scope()),
        "patronictl names the cluster: {text}"
    );
    ctl_list_prints_what_patronictl_prints(&c);

    c.kill_node(leader);
    let new_leader = c.wait_for_leader(FAILOVER_TIMEOUT);
    assert_ne!(new_leader, leader);
    wait_check(
        routing,
        "HAProxy's writes port to move to the new leader",
        || match c.behind_proxy(proxy.primary_port)? {
            (false, port) if port == c.pg_port(new_leader) => Ok(()),
            other => Err(format!("behind the writes port: {other:?}")),
        },
    );
    let config = c.pg_config_at(proxy.primary_port);
    support::sql::execute(&config, &format!("INSERT INTO {TABLE} (id) VALUES (-10)"))
        .expect("a write through HAProxy after the failover");
}

/// `pgwardenctl list` and `topology`, read through a patronictl-style file, print what the
/// real `patronictl` prints from the agent's file, byte for byte, in every format.
fn ctl_list_prints_what_patronictl_prints(c: &Cluster) {
    let forms: [&[&str]; 8] = [
        &["list"],
        &["list", "-e"],
        &["list", "-f", "tsv"],
        &["list", "-f", "json"],
        &["list", "-e", "-f", "json"],
        &["list", "-f", "yaml"],
        &["topology"],
        // Several clusters, one of them without a key in etcd.
        &["list", c.scope(), "no-such-cluster"],
    ];
    for args in forms {
        wait_check(
            SHORT_TIMEOUT,
            &format!("pgwardenctl {} as patronictl", args.join(" ")),
            || {
                let theirs = patronictl(c, args);
                let ours = c.ctl(args);
                if !theirs.success() || !ours.success() {
                    return Err(format!("patronictl: {theirs:?}\npgwardenctl: {ours:?}"));
                }
                if theirs.stdout == ours.stdout {
                    Ok(())
                } else {
                    Err(format!(
                        "patronictl:\n{}\npgwardenctl:\n{}",
                        theirs.stdout, ours.stdout
                    ))
                }
            },
        );
    }
}

/// `nostream`: a standby tagged so is cloned and runs in recovery but never streams: no WAL
/// receiver on it, no walsender and no replication slot for it on the leader, and a row
/// written on the leader does not reach it, over several loops.
#[test]
fn a_nostream_standby_is_cloned_but_never_streams() {
    let _guard = exclusive();
    // Both tagged: whichever bootstraps leads (the tag means nothing to a primary).
    let c = Cluster::builder()
        .nodes(2)
        .synchronous_mode(false)
        .tag(0, "nostream", "true")
        .tag(1, "nostream", "true")
        .start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let standby = 1 - leader;
    wait_check(
        REPLICATION_TIMEOUT,
        "the standby cloned and in recovery",
        || match c.in_recovery(standby)? {
            true => Ok(()),
            false => Err(format!("{} is not in recovery", c.name(standby))),
        },
    );
    c.execute(leader, "CREATE TABLE nostream_probe (id int)")
        .expect("a write on the leader");
    let started = Instant::now();
    while started.elapsed() < 4 * c.loop_wait() + Duration::from_secs(2) {
        let receivers = c.query_scalar(standby, "SELECT count(*) FROM pg_stat_wal_receiver");
        assert_eq!(receivers, Ok(Some("0".into())), "the standby streams");
        let senders = c.query_scalar(leader, "SELECT count(*) FROM pg_stat_replication");
        assert_eq!(senders, Ok(Some("0".into())), "the leader has a walsender");
        let slot = c.query_scalar(
            leader,
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
                c.name(standby)
            ),
        );
        assert_eq!(slot, Ok(Some("0".into())), "the leader keeps a slot for it");
        std::thread::sleep(POLL_INTERVAL);
    }
    let table = c.query_scalar(
        standby,
        "SELECT count(*) FROM pg_class WHERE relname = 'nostream_probe'",
    );
    assert_eq!(table, Ok(Some("0".into())), "the leader's write reached it");
    let patroni = check_patroni(&c, standby, "replica").expect("a running replica");
    assert_eq!(patroni["tags"]["nostream"], Value::Bool(true), "{patroni}");
}

/// The real `patronictl -c <node 0's config> args...`.
fn patronictl(c: &Cluster, args: &[&str]) -> Captured {
    let mut cmd = std::process::Command::new(support::process::patronictl());
    support::process::scrub_env(&mut cmd);
    cmd.arg("-c").arg(c.config_path(0)).args(args);
    run_capture(&mut cmd, Duration::from_secs(60))
}

/// Maintenance mode, driven by the real patronictl: `pause --wait` reaches every member (key,
/// `/patroni`, `/cluster`, metrics, `list`), a switchover goes only to a named candidate
/// (the former leader rejoins as its standby), the leader's PostgreSQL dies and nothing
/// automatic happens for two ttl (no standby promoted, nothing restarted, the key given up
/// as Patroni does), then `resume --wait` and the cluster recovers: a leader, writable, and
/// three members streaming or leading.
#[test]
fn maintenance_mode_acts_on_nothing_and_resume_recovers() {
    let _guard = exclusive();
    let mut c = Cluster::builder().nodes(3).start();
    let (leader, a, b) = bootstrap_three(&c);
    // PATCH /config refuses what is not a valid configuration, naming the field, and the
    // cluster keeps the one it has.
    let before = c.dcs_json("config").expect("read /config");
    for (body, names) in [
        ("{}", "empty"),
        ("[1]", "JSON object"),
        ("{not json", "not JSON"),
        (r#"{"ttl": "soon"}"#, "ttl"),
        (r#"{"synchronous_mode": "sometimes"}"#, "synchronous_mode"),
    ] {
        let r = c
            .http(a, "PATCH", "/config", Some(body))
            .expect("PATCH /config");
        assert_eq!(r.status, 400, "PATCH /config {body}: {}", r.body);
        assert!(r.body.contains(names), "PATCH /config {body}: {}", r.body);
    }
    assert_eq!(c.dcs_json("config"), Ok(before));
    let out = patronictl(&c, &["pause", "--wait"]);
    assert!(out.success(), "patronictl pause --wait: {out:?}");
    wait_check(SHORT_TIMEOUT, "every member key to say pause", || {
        for i in 0..c.len() {
            let key = c
                .dcs_json(&format!("members/{}", c.name(i)))?
                .ok_or("no member key")?;
            if key.get("pause") != Some(&Value::Bool(true)) {
                return Err(format!("{}: {key}", c.name(i)));
            }
        }
        Ok(())
    });
    for i in 0..c.len() {
        let p = c.http_json(i, "/patroni").expect("GET /patroni");
        assert_eq!(p["pause"], Value::Bool(true), "{}: {p}", c.name(i));
    }
    let cluster = c.http_json(a, "/cluster").expect("GET /cluster");
    assert_eq!(cluster["pause"], Value::Bool(true), "{cluster}");
    let metrics = c
        .http(leader, "GET", "/metrics", None)
        .expect("GET /metrics");
    assert_eq!(
        metric(&metrics.body, "patroni_is_paused"),
        Some("1"),
        "{}",
        metrics.body
    );
    let list = patronictl(&c, &["list"]);
    assert!(
        list.stdout.contains("Maintenance mode: on"),
        "patronictl list: {list:?}"
    );
    let list = c.ctl(&["list"]);
    assert!(
        list.stdout.contains("Maintenance mode: on"),
        "pgwardenctl list: {list:?}"
    );
    // No switchover is scheduled while paused (Patroni's refusal).
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let body = format!(
        r#"{{"leader":"{}","candidate":"{}","scheduled_at":"{}"}}"#,
        c.name(leader),
        c.name(a),
        later
            .format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    );
    let r = c
        .http(leader, "POST", "/switchover", Some(&body))
        .expect("POST /switchover");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Can't schedule switchover in the paused state")
    );
    // Paused, a switchover must name its candidate (Patroni's refusal)...
    let body = format!(r#"{{"leader":"{}"}}"#, c.name(leader));
    let r = c
        .http(leader, "POST", "/switchover", Some(&body))
        .expect("POST /switchover");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "Switchover is possible only to a specific candidate in a paused state"
        )
    );
    // ...and to the one it names it is carried out, paused: that member leads, the former
    // leader is started again as its standby, the third keeps streaming, and the cluster
    // stays in maintenance mode.
    let out = patronictl(
        &c,
        &[
            "switchover",
            "--leader",
            c.name(leader),
            "--candidate",
            c.name(a),
            "--force",
            c.scope(),
        ],
    );
    assert!(
        out.stdout
            .contains(&format!("Successfully switched over to \"{}\"", c.name(a))),
        "paused patronictl switchover to a candidate: {out:?}\n{}",
        c.diagnostics(40)
    );
    wait_check(
        REJOIN_TIMEOUT,
        "paused switchover: the candidate leads, the former leader and the third stream",
        || expect_endpoints(&c, a, &[leader, b], &[]),
    );
    c.execute(a, &format!("INSERT INTO {TABLE} (id) VALUES (-25)"))
        .expect("a write on the candidate after a paused switchover");
    let config = c.dcs_json("config").expect("read /config");
    assert_eq!(
        config.as_ref().and_then(|v| v.get("pause")),
        Some(&Value::Bool(true)),
        "still paused after the switchover: {config:?}"
    );
    let (leader, a) = (a, leader);

    let killed = c.kill_postgres(leader);
    let ttl = Duration::from_secs(6);
    let window = Instant::now();
    while window.elapsed() < 2 * ttl {
        for r in [a, b] {
            assert_eq!(
                c.in_recovery(r),
                Ok(true),
                "paused: {} was promoted or stopped",
                c.name(r)
            );
        }
        assert_eq!(
            c.postmaster_pid(leader),
            None,
            "paused: the agent restarted {}'s PostgreSQL (killed pid {killed})",
            c.name(leader)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    assert_eq!(
        c.dcs_json("leader"),
        Ok(None),
        "a paused leader whose PostgreSQL is down gives the key up"
    );

    let out = patronictl(&c, &["resume", "--wait"]);
    assert!(out.success(), "patronictl resume --wait: {out:?}");
    let new_leader = c.wait_for_leader(FAILOVER_TIMEOUT);
    let others: Vec<usize> = (0..c.len()).filter(|i| *i != new_leader).collect();
    wait_check(
        REJOIN_TIMEOUT,
        "after resume: one primary, the two others replicas",
        || expect_endpoints(&c, new_leader, &others, &[]),
    );
    c.execute(
        new_leader,
        &format!("INSERT INTO {TABLE} (id) VALUES (-30)"),
    )
    .expect("a write on the leader after resume");
    let metrics = c
        .http(new_leader, "GET", "/metrics", None)
        .expect("GET /metrics");
    assert_eq!(
        metric(&metrics.body, "patroni_is_paused"),
        Some("0"),
        "{}",
        metrics.body
    );
    primary_start_timeout_hands_over(&mut c, new_leader);
}

/// `primary_start_timeout`: the leader's PostgreSQL dies and cannot start again (a broken
/// line in its configuration); after the timeout the leader gives the key up and a standby
/// takes over. Repaired, the old leader rejoins as a standby.
fn primary_start_timeout_hands_over(c: &mut Cluster, leader: usize) {
    let out = patronictl(
        c,
        &[
            "edit-config",
            c.scope(),
            "--force",
            "-s",
            "primary_start_timeout=4",
        ],
    );
    assert!(
        out.success(),
        "patronictl edit-config -s primary_start_timeout=4: {out:?}"
    );
    let others: Vec<usize> = (0..c.len()).filter(|i| *i != leader).collect();
    wait_check(REJOIN_TIMEOUT, "both standbys streaming", || {
        expect_endpoints(c, leader, &others, &[])
    });
    // Synchronous mode: only a standby recorded in /sync may take over.
    wait_check(
        REJOIN_TIMEOUT,
        "a synchronous standby recorded in /sync",
        || {
            let sync = c.dcs_json("sync")?.ok_or("no /sync")?;
            match sync["sync_standby"].as_str() {
                Some(s) if !s.is_empty() => Ok(()),
                _ => Err(sync.to_string()),
            }
        },
    );
    let base = c.data_dir(leader).join("postgresql.base.conf");
    let intact = fs::read_to_string(&base).expect("read postgresql.base.conf");
    fs::write(&base, format!("{intact}\nthis line breaks the file\n"))
        .expect("break postgresql.base.conf");
    let killed = c.kill_postgres(leader);
    let what = format!(
        "a standby taking over from {} whose PostgreSQL (killed pid {killed}) cannot start",
        c.name(leader)
    );
    let new_leader = wait_until(FAILOVER_TIMEOUT, &what, || {
        c.leader_now().ok().filter(|l| *l != leader)
    });
    let log = fs::read_to_string(c.log_path(leader)).unwrap_or_default();
    assert!(
        log.contains("primary-start-timed-out"),
        "{} gave the key up for another reason",
        c.name(leader)
    );
    fs::write(&base, intact).expect("repair postgresql.base.conf");
    let standbys: Vec<usize> = (0..c.len()).filter(|i| *i != new_leader).collect();
    wait_check(
        REJOIN_TIMEOUT,
        "the repaired old leader back as a standby",
        || expect_endpoints(c, new_leader, &standbys, &[]),
    );
}

/// The value of the sample `name{labels} value` in a Prometheus text exposition.
fn metric<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
}

/// Whether a process exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

/// A leader whose postmaster is SIGSTOPped accepts no new connection, but the backends and
/// walsenders it already forked go on committing and streaming. Its agent notices after
/// `unresponsive_primary_timeout_ms`, kills the postmaster and every child, and only then
/// releases the leader key: a replica takes over with every acknowledged row, and the old
/// node comes back as a replica.
#[test]
fn a_frozen_postmaster_is_killed_before_its_key_is_released() {
    let _guard = exclusive();
    let c = Cluster::builder()
        .nodes(3)
        .pgwarden("  unresponsive_primary_timeout_ms: 4000\n")
        .start();
    let (leader, _, _) = bootstrap_three(&c);
    let writer = AckWriter::start(&c.pg_config(leader), TABLE, 1);
    wait_until(SHORT_TIMEOUT, "the writer to commit 50 rows", || {
        (writer.acked_count() >= 50).then_some(())
    });
    let postmaster = c
        .postmaster_pid(leader)
        .expect("the leader's postmaster pid");
    let forked = pgwarden::postgres::process::children_of(postmaster);
    assert!(!forked.is_empty(), "a running postmaster has children");
    let acked_before = writer.acked_count();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("SIGSTOP the postmaster");
    let frozen_at = Instant::now();
    let acked_at_freeze = writer.acked_count();
    eprintln!(
        "[harness] SIGSTOPped the postmaster {postmaster} of {}",
        c.name(leader)
    );
    // The probe needs its 3 s connect timeout to notice, and the agent 4 s more to act.
    wait_until(
        Duration::from_secs(3),
        "the existing session to keep committing with its postmaster frozen",
        || (writer.acked_count() >= acked_at_freeze + 5).then_some(()),
    );

    let new_leader = wait_until(FAILOVER_TIMEOUT, "another member to lead", || {
        c.leader_now().ok().filter(|&l| l != leader)
    });
    eprintln!(
        "[harness] {} leads {:?} after the freeze",
        c.name(new_leader),
        frozen_at.elapsed()
    );
    for pid in std::iter::once(postmaster).chain(forked) {
        assert!(
            !process_alive(pid),
            "process {pid} of the frozen server survived the new leader's election"
        );
    }
    let report = writer.stop(SHORT_TIMEOUT);
    assert!(report.acked.len() >= acked_before);
    let present = ids_on(&c, new_leader).expect("ids on the new leader");
    let lost = report.missing_from(&present);
    assert!(lost.is_empty(), "acknowledged ids lost: {lost:?}");
    wait_check(
        REJOIN_TIMEOUT,
        "the old leader to rejoin as a replica",
        || check_patroni(&c, leader, "replica").map(|_| ()),
    );
}

/// A replica that received WAL the new leader never had cannot stream from it (PostgreSQL
/// refuses a start point past the fork), even after its WAL receiver fetched the new
/// timeline's history file. Its agent must see the divergence and rewind it.
///
/// The order of events is forced: node2 is down while the leader writes (node3, tagged
/// `nofailover`, receives it all), then the leader dies and node2 comes back and leads from
/// its older position.
#[test]
fn a_replica_ahead_of_the_new_leader_is_rewound() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .nodes(3)
        .synchronous_mode(false)
        // The node that was down is a WAL segment or more behind: the operator accepts
        // losing those writes rather than having no leader.
        .dcs("maximum_lag_on_failover", "1073741824")
        .tag(2, "nofailover", "true")
        .initially_started(1)
        .start();
    let (leader, behind, ahead) = (0, 1, 2);
    assert_eq!(c.wait_for_leader(BOOTSTRAP_TIMEOUT), leader);
    c.start_node(behind);
    c.start_node(ahead);
    // Both stream before anything is written: a replica killed before it streamed has only
    // its base backup, which ends before the other replica's backup checkpoint, and a fork
    // that early leaves the replica ahead no common checkpoint for pg_rewind to start from.
    wait_check(
        REPLICATION_TIMEOUT,
        "both replicas streaming from the leader",
        || {
            let rows = c.query(
                leader,
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1",
            )?;
            let names: Vec<_> = rows.into_iter().filter_map(|r| r[0].clone()).collect();
            (names == [c.name(behind), c.name(ahead)])
                .then_some(())
                .ok_or_else(|| format!("streaming: {names:?}"))
        },
    );
    c.execute(
        leader,
        &format!("CREATE TABLE {TABLE} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now()); INSERT INTO {TABLE} (id) VALUES (0)"),
    )
    .expect("create the test table on the leader");
    for r in [behind, ahead] {
        wait_check(
            REPLICATION_TIMEOUT,
            &format!("row 0 readable on {}", c.name(r)),
            || {
                ids_on(&c, r)?
                    .contains(&0)
                    .then_some(())
                    .ok_or_else(|| "row 0 not there yet".to_string())
            },
        );
    }

    c.kill_node(behind);
    c.execute(
        leader,
        &format!("INSERT INTO {TABLE} (id) SELECT generate_series(1, 100)"),
    )
    .expect("rows only the leader and the replica ahead receive");
    wait_check(
        REPLICATION_TIMEOUT,
        "rows 1..100 on the replica ahead",
        || {
            (ids_on(&c, ahead)?.len() == 101)
                .then_some(())
                .ok_or_else(|| "not all rows there yet".to_string())
        },
    );
    c.kill_node(leader);
    c.start_node(behind);
    let new_leader = c.wait_for_leader(FAILOVER_TIMEOUT);
    assert_eq!(
        new_leader, behind,
        "only the replica that was down may lead (the other is nofailover)"
    );
    let present = ids_on(&c, new_leader).expect("ids on the new leader");
    assert!(
        !present.contains(&1),
        "the new leader was down while rows 1..100 were written, yet has them"
    );

    c.execute(new_leader, &format!("INSERT INTO {TABLE} (id) VALUES (-1)"))
        .expect("a write on the new leader");
    wait_check(
        REJOIN_TIMEOUT,
        "the replica ahead to be rewound onto the new timeline and receive row -1",
        || {
            let ids = ids_on(&c, ahead)?;
            if !ids.contains(&-1) {
                return Err(format!(
                    "{} rows, no row -1; /patroni: {:?}",
                    ids.len(),
                    c.patroni(ahead)
                ));
            }
            if ids.contains(&1) {
                return Err("row 1, which the new leader never had, is still there".into());
            }
            Ok(())
        },
    );
    let log = fs::read_to_string(c.log_path(ahead)).unwrap_or_default();
    assert!(
        log.contains("rewinding"),
        "the agent of the replica ahead never logged a rewind"
    );
}

/// The real patronictl operating a two-node cluster, one verb after the other on the same
/// cluster:
/// 1. `reinit` on a replica: `POST /reinitialize` wipes its data directory and clones it
///    again from the leader, after which it streams again. On the leader it is refused
///    with Patroni's message, and a malformed body is a 400 naming the field.
/// 2. `edit-config` of a reloadable parameter: in effect on both nodes, no restart.
/// 3. `edit-config` of a parameter that needs a restart: every node says `pending_restart`
///    with the reason (member key, `/patroni`, metrics, `list -e`); `restart --pending` of
///    the replica applies it there; `restart` of the leader keeps the leader key throughout
///    (no failover, same timeline) and applies it there. Refused restarts get Patroni's codes.
///    `restart --scheduled` shows in the key and `list -e`, a second one is refused, `flush`
///    removes it (nothing runs), scheduled again it runs at its time.
/// 4. `reload` after an edit of the local file applies it (a parameter and a tag); so does
///    SIGHUP; an invalid file is refused and changes nothing.
#[test]
fn patronictl_reinit_restart_reload_and_edit_config() {
    let _guard = exclusive();
    let c = Cluster::builder().nodes(2).synchronous_mode(false).start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let replica = 1 - leader;
    c.execute(
        leader,
        &format!("CREATE TABLE {TABLE} (id bigint PRIMARY KEY)"),
    )
    .expect("create the test table");
    wait_check(REPLICATION_TIMEOUT, "the replica streaming", || {
        check_patroni(&c, replica, "replica").and_then(|p| {
            (p["replication_state"] == "streaming")
                .then_some(())
                .ok_or_else(|| format!("replication_state {}", p["replication_state"]))
        })
    });
    // A file only the old copy has: gone once the data directory was wiped.
    let marker = c.data_dir(replica).join("pgwarden-reinit-marker");
    fs::write(&marker, "old copy").expect("write the marker");
    let started_before = c.patroni(replica).expect("/patroni")["postmaster_start_time"].clone();

    let bad = c
        .http(
            replica,
            "POST",
            "/reinitialize",
            Some(r#"{"force": "yes"}"#),
        )
        .expect("an answer");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("`force`"), "{}", bad.body);

    // patronictl itself refuses to send it to the leader ("No replica among provided
    // members"); the endpoint refuses too.
    let refused = c
        .http(leader, "POST", "/reinitialize", Some(r#"{"force": true}"#))
        .expect("an answer");
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (503, "I am the leader, can not reinitialize")
    );
    assert_eq!(c.leader_now(), Ok(leader), "the leader is left alone");

    let mut cmd = std::process::Command::new(support::process::patronictl());
    support::process::scrub_env(&mut cmd);
    cmd.arg("-c").arg(c.config_path(0)).args([
        "reinit",
        c.scope(),
        c.name(replica),
        "--force",
        "--wait",
    ]);
    let done = run_capture(&mut cmd, REJOIN_TIMEOUT);
    assert!(
        done.success() && done.stdout.contains("Success: reinitialize for member"),
        "patronictl reinit on the replica: {done:?}\n{}",
        c.diagnostics(40)
    );
    c.execute(leader, &format!("INSERT INTO {TABLE} VALUES (1)"))
        .expect("a write after the re-clone");
    wait_check(
        REJOIN_TIMEOUT,
        "the re-cloned replica streaming and holding the new row",
        || {
            let p = check_patroni(&c, replica, "replica")?;
            if p["replication_state"] != "streaming" {
                return Err(format!("replication_state {}", p["replication_state"]));
            }
            ids_on(&c, replica)?
                .contains(&1)
                .then_some(())
                .ok_or_else(|| "row 1 not there yet".to_string())
        },
    );
    assert!(
        !marker.exists(),
        "the data directory was not wiped: {} survived",
        marker.display()
    );
    assert_ne!(
        c.patroni(replica).expect("/patroni")["postmaster_start_time"],
        started_before,
        "PostgreSQL was restarted on the new copy"
    );

    edit_config_applies_on_every_node(&c);
    metrics_carry_patronis_gauges(&c, leader, replica);
    pending_restart_is_shown_and_restart_applies_it(&c, leader, replica);
    reload_and_sighup_apply_the_local_file(&c, leader, replica);
    pgwardenctl_drives_the_same_verbs(&c, leader, replica);
}

/// `pgwardenctl` does what patronictl did above, with its messages and exit codes.
fn pgwardenctl_drives_the_same_verbs(c: &Cluster, leader: usize, replica: usize) {
    let (scope, name) = (c.scope(), c.name(replica));
    let postmaster = c.postmaster_pid(replica).expect("the replica's postmaster");
    let out = c.ctl(&["restart", scope, name, "--force"]);
    assert!(
        out.success()
            && out
                .stdout
                .contains(&format!("Success: restart on member {name}")),
        "pgwardenctl restart: {out:?}"
    );
    assert_ne!(
        c.postmaster_pid(replica),
        Some(postmaster),
        "no restart happened"
    );
    // Nothing matches: an error, exit 1.
    let out = c.ctl(&[
        "restart",
        scope,
        c.name(leader),
        "--force",
        "--role",
        "replica",
    ]);
    assert!(!out.success(), "a restart that matches no member: {out:?}");
    let at = in_seconds(60);
    let out = c.ctl(&["restart", scope, name, "--force", "--scheduled", &at]);
    assert!(
        out.success()
            && out
                .stdout
                .contains(&format!("Success: restart scheduled on member {name}")),
        "pgwardenctl restart --scheduled: {out:?}"
    );
    wait_check(
        SHORT_TIMEOUT,
        "the member key to show the scheduled restart",
        || {
            scheduled_in_key(c, replica)?
                .map(|_| ())
                .ok_or_else(|| "none yet".to_string())
        },
    );
    let out = c.ctl(&["flush", scope, name, "restart", "--force"]);
    assert!(
        out.success()
            && out.stdout.contains(&format!(
                "Success: flush scheduled restart for member {name}"
            )),
        "pgwardenctl flush restart: {out:?}"
    );
    let out = c.ctl(&["reload", scope, "--force"]);
    assert!(
        out.success()
            && out
                .stdout
                .matches("Reload request received for member")
                .count()
                == 2,
        "pgwardenctl reload: {out:?}"
    );
    let out = c.ctl(&["pause", scope, "--wait"]);
    assert!(
        out.success() && out.stdout.contains("Success: cluster management is paused"),
        "pgwardenctl pause --wait: {out:?}"
    );
    for i in [leader, replica] {
        let key = c
            .dcs_json(&format!("members/{}", c.name(i)))
            .expect("read the member key")
            .expect("a member key");
        assert_eq!(key["pause"], Value::Bool(true), "{}: {key}", c.name(i));
    }
    let out = c.ctl(&["pause", scope]);
    assert!(
        !out.success() && out.stderr.contains("Cluster is already paused"),
        "a second pause: {out:?}"
    );
    let out = c.ctl(&["resume", scope, "--wait"]);
    assert!(
        out.success()
            && out
                .stdout
                .contains("Success: cluster management is resumed"),
        "pgwardenctl resume --wait: {out:?}"
    );
    assert_eq!(c.leader_now(), Ok(leader), "the verbs changed no leader");
}

/// Waits until node `i` is a replica streaming from the leader.
fn wait_streaming(c: &Cluster, i: usize, what: &str) {
    wait_check(REPLICATION_TIMEOUT, what, || {
        let p = check_patroni(c, i, "replica")?;
        (p["replication_state"] == "streaming")
            .then_some(())
            .ok_or_else(|| format!("replication_state {}", p["replication_state"]))
    });
}

/// `SHOW name` on node `i`.
fn show(c: &Cluster, i: usize, name: &str) -> Result<String, String> {
    c.query_scalar(i, &format!("SHOW {name}"))?
        .ok_or_else(|| format!("SHOW {name}: NULL"))
}

/// Waits until `SHOW name` is `value` on every node.
fn wait_setting_everywhere(c: &Cluster, nodes: &[usize], name: &str, value: &str) {
    wait_check(
        REJOIN_TIMEOUT,
        &format!("{name} = {value} on {nodes:?}"),
        || {
            for &i in nodes {
                let now = show(c, i, name)?;
                if now != value {
                    return Err(format!("{}: {name} = {now}", c.name(i)));
                }
            }
            Ok(())
        },
    );
}

fn edit_config(c: &Cluster, setting: &str) {
    let out = patronictl(c, &["edit-config", c.scope(), "--force", "--pg", setting]);
    assert!(
        out.success(),
        "patronictl edit-config --pg {setting}: {out:?}"
    );
}

/// A reloadable parameter changed with `edit-config` is in effect on every node, and
/// nobody waits for a restart.
fn edit_config_applies_on_every_node(c: &Cluster) {
    assert_ne!(show(c, 0, "work_mem").as_deref(), Ok("7MB"), "already set");
    edit_config(c, "work_mem=7MB");
    wait_setting_everywhere(c, &[0, 1], "work_mem", "7MB");
    for i in 0..c.len() {
        let key = c
            .dcs_json(&format!("members/{}", c.name(i)))
            .expect("read the member key")
            .expect("a member key");
        assert_eq!(key.get("pending_restart"), None, "{}: {key}", c.name(i));
    }
}

/// The alerting gauges of Patroni's `/metrics`, with values that follow the cluster: a
/// paused WAL replay shows on the replica (and in `/patroni`) and goes when resumed.
fn metrics_carry_patronis_gauges(c: &Cluster, leader: usize, replica: usize) {
    let sample = |i: usize, name: &str| {
        let body = c
            .http(i, "GET", "/metrics", None)
            .expect("GET /metrics")
            .body;
        metric(&body, name).map(str::to_string)
    };
    for (i, name, value) in [
        (leader, "patroni_postgres_state", "5"),
        (leader, "patroni_postgres_streaming", "0"),
        (leader, "patroni_failover_priority", "1"),
        (leader, "patroni_standby_leader", "0"),
        (replica, "patroni_postgres_streaming", "1"),
        (replica, "patroni_postgres_in_archive_recovery", "0"),
        (replica, "patroni_xlog_paused", "0"),
        (replica, "patroni_version", "100"),
    ] {
        assert_eq!(
            sample(i, name).as_deref(),
            Some(value),
            "{name} on {}",
            c.name(i)
        );
    }
    let seen: u64 = sample(leader, "patroni_dcs_last_seen")
        .and_then(|v| v.parse().ok())
        .expect("patroni_dcs_last_seen");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    assert!(now.abs_diff(seen) < 30, "dcs_last_seen {seen}, now {now}");
    c.execute(replica, "SELECT pg_wal_replay_pause()")
        .expect("pause WAL replay");
    wait_check(
        SHORT_TIMEOUT,
        "the paused replay in /metrics and /patroni",
        || {
            let paused = c.patroni(replica).ok_or("no /patroni")?["xlog"]["paused"].clone();
            match (sample(replica, "patroni_xlog_paused").as_deref(), paused) {
                (Some("1"), Value::Bool(true)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    c.execute(replica, "SELECT pg_wal_replay_resume()")
        .expect("resume WAL replay");
    wait_check(
        SHORT_TIMEOUT,
        "the resumed replay in /metrics",
        || match sample(replica, "patroni_xlog_paused").as_deref() {
            Some("0") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// The member key's `pending_restart_reason` for `shared_buffers`, when pending.
fn pending_shared_buffers(c: &Cluster, i: usize) -> Result<Option<Value>, String> {
    let key = c
        .dcs_json(&format!("members/{}", c.name(i)))?
        .ok_or("no member key")?;
    Ok(key
        .get("pending_restart")
        .filter(|p| **p == Value::Bool(true))
        .and_then(|_| key["pending_restart_reason"].get("shared_buffers").cloned()))
}

fn pending_restart_is_shown_and_restart_applies_it(c: &Cluster, leader: usize, replica: usize) {
    let before = show(c, leader, "shared_buffers").expect("SHOW shared_buffers");
    assert_ne!(before, "48MB");
    edit_config(c, "shared_buffers=48MB");
    let expected = serde_json::json!({"old_value": before, "new_value": "48MB"});
    wait_check(
        REJOIN_TIMEOUT,
        "both members pending a restart for shared_buffers",
        || {
            for i in [leader, replica] {
                match pending_shared_buffers(c, i)? {
                    Some(reason) if reason == expected => {}
                    other => return Err(format!("{}: {other:?}", c.name(i))),
                }
            }
            Ok(())
        },
    );
    let p = c.patroni(replica).expect("/patroni");
    assert_eq!(p["pending_restart"], Value::Bool(true), "{p}");
    let metrics = c
        .http(leader, "GET", "/metrics", None)
        .expect("GET /metrics");
    assert_eq!(
        metric(&metrics.body, "patroni_pending_restart"),
        Some("1"),
        "{}",
        metrics.body
    );
    let list = patronictl(c, &["list", "-e"]);
    assert!(
        list.stdout.contains("Pending restart")
            && list
                .stdout
                .contains(&format!("shared_buffers: {before}->48MB")),
        "patronictl list -e: {list:?}"
    );
    assert_eq!(
        show(c, replica, "shared_buffers").as_deref(),
        Ok(before.as_str()),
        "not before a restart"
    );

    // Refusals, with Patroni's codes and texts.
    for (i, body, status, text) in [
        (
            leader,
            r#"{"role": "replica"}"#,
            503,
            "restart conditions are not satisfied",
        ),
        (
            replica,
            r#"{"postgres_version": "9.6.1"}"#,
            503,
            "restart conditions are not satisfied",
        ),
        (
            leader,
            r#"{"role": "leader"}"#,
            400,
            "PostgreSQL role should be",
        ),
        (
            leader,
            r#"{"timeout": -1}"#,
            400,
            "Timeout should be a positive number",
        ),
        (
            leader,
            r#"{"when": "now"}"#,
            400,
            "Unknown filter for the scheduled restart: when",
        ),
        (
            leader,
            r#"{"schedule": "2030-01-01T00:00:00"}"#,
            400,
            "Timezone information is mandatory",
        ),
        (
            leader,
            r#"{"schedule": "2020-01-01T00:00:00+00:00"}"#,
            422,
            "Cannot schedule restart in the past",
        ),
    ] {
        let r = c
            .http(i, "POST", "/restart", Some(body))
            .expect("POST /restart");
        assert_eq!(
            r.status,
            status,
            "POST /restart {body} to {}: {}",
            c.name(i),
            r.body
        );
        assert!(r.body.contains(text), "POST /restart {body}: {}", r.body);
    }
    let none = c
        .http(leader, "DELETE", "/restart", None)
        .expect("DELETE /restart");
    assert_eq!(
        (none.status, none.body.as_str()),
        (404, "no restarts are scheduled")
    );

    // The replica, by `--pending`: only members pending a restart are restarted.
    let started = c.patroni(replica).expect("/patroni")["postmaster_start_time"].clone();
    let out = patronictl(
        c,
        &[
            "restart",
            c.scope(),
            c.name(replica),
            "--force",
            "--pending",
        ],
    );
    assert!(
        out.success()
            && out
                .stdout
                .contains(&format!("Success: restart on member {}", c.name(replica))),
        "patronictl restart --pending {}: {out:?}\n{}",
        c.name(replica),
        c.diagnostics(30)
    );
    assert_eq!(show(c, replica, "shared_buffers").as_deref(), Ok("48MB"));
    assert_ne!(
        c.patroni(replica).expect("/patroni")["postmaster_start_time"],
        started
    );
    wait_check(
        SHORT_TIMEOUT,
        "the replica no longer pending, the leader still",
        || match (
            pending_shared_buffers(c, replica)?,
            pending_shared_buffers(c, leader)?,
        ) {
            (None, Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    wait_streaming(c, replica, "the restarted replica streaming");

    // The leader: PostgreSQL goes down and up under the same leader key, no failover.
    let key_before = c
        .dcs_get("leader")
        .expect("read the leader key")
        .expect("a leader key");
    let timeline = c.timeline_of(leader);
    let mut cmd = std::process::Command::new(support::process::patronictl());
    support::process::scrub_env(&mut cmd);
    cmd.arg("-c")
        .arg(c.config_path(0))
        .args(["restart", c.scope(), c.name(leader), "--force"]);
    let postmaster_before = c.postmaster_pid(leader).expect("the leader's postmaster");
    let restart = std::thread::spawn(move || run_capture(&mut cmd, Duration::from_secs(60)));
    while !restart.is_finished() {
        let key = c.dcs_get("leader").expect("read the leader key");
        assert_eq!(
            key.as_ref().map(|k| (&k.value, k.create_revision)),
            Some((&key_before.value, key_before.create_revision)),
            "the leader key changed hands during the leader's restart"
        );
        assert_eq!(c.in_recovery(replica), Ok(true), "the replica was promoted");
        std::thread::sleep(POLL_INTERVAL);
    }
    let out = restart.join().expect("the patronictl thread");
    assert!(
        out.success()
            && out
                .stdout
                .contains(&format!("Success: restart on member {}", c.name(leader))),
        "patronictl restart {}: {out:?}\n{}",
        c.name(leader),
        c.diagnostics(30)
    );
    let postmaster_after = c.postmaster_pid(leader).expect("the leader's postmaster");
    assert_ne!(
        postmaster_before, postmaster_after,
        "the leader's postmaster is the same process: no restart happened"
    );
    assert_eq!(show(c, leader, "shared_buffers").as_deref(), Ok("48MB"));
    assert_eq!(c.timeline_of(leader), timeline, "a restart is no failover");
    c.execute(leader, &format!("INSERT INTO {TABLE} VALUES (2)"))
        .expect("a write after the leader's restart");
    wait_check(SHORT_TIMEOUT, "nobody pending a restart", || {
        match (
            pending_shared_buffers(c, replica)?,
            pending_shared_buffers(c, leader)?,
        ) {
            (None, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    scheduled_restart_runs_at_its_time_or_is_flushed(c, replica);
}

/// A UTC time `secs` from now, as patronictl's `--scheduled` takes it.
fn in_seconds(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The member key's `scheduled_restart.schedule`, if any.
fn scheduled_in_key(c: &Cluster, i: usize) -> Result<Option<String>, String> {
    let key = c
        .dcs_json(&format!("members/{}", c.name(i)))?
        .ok_or("no member key")?;
    Ok(key["scheduled_restart"]["schedule"]
        .as_str()
        .map(str::to_string))
}

/// `restart --scheduled`: shown in the member key and `list -e`; a second one is refused;
/// `flush ... restart` removes it (nothing restarts at its time); scheduled again, it runs.
fn scheduled_restart_runs_at_its_time_or_is_flushed(c: &Cluster, replica: usize) {
    let schedule = |at: &str| {
        patronictl(
            c,
            &[
                "restart",
                c.scope(),
                c.name(replica),
                "--force",
                "--scheduled",
                at,
            ],
        )
    };
    let postmaster = c.postmaster_pid(replica).expect("the replica's postmaster");
    let first = in_seconds(8);
    let out = schedule(&first);
    assert!(
        out.stdout.contains(&format!(
            "Success: restart scheduled on member {}",
            c.name(replica)
        )),
        "patronictl restart --scheduled: {out:?}"
    );
    wait_check(
        SHORT_TIMEOUT,
        "the member key to show the scheduled restart",
        || match scheduled_in_key(c, replica)? {
            Some(s) if s.starts_with(&first[..19]) => Ok(()),
            other => Err(format!("{other:?}, scheduled {first}")),
        },
    );
    let list = patronictl(c, &["list", "-e"]);
    assert!(
        list.stdout.contains("Scheduled restart") && list.stdout.contains(&first[..16]),
        "patronictl list -e: {list:?}"
    );
    // A second one is refused (patronictl --force would flush the first: the API then).
    let body = format!(r#"{{"schedule": "{}"}}"#, in_seconds(60));
    let second = c
        .http(replica, "POST", "/restart", Some(&body))
        .expect("POST /restart");
    assert_eq!(
        (second.status, second.body.as_str()),
        (409, "Another restart is already scheduled")
    );
    let out = patronictl(
        c,
        &["flush", c.scope(), c.name(replica), "restart", "--force"],
    );
    assert!(
        out.stdout.contains(&format!(
            "Success: flush scheduled restart for member {}",
            c.name(replica)
        )),
        "patronictl flush restart: {out:?}"
    );
    wait_check(
        SHORT_TIMEOUT,
        "the member key without a scheduled restart",
        || match scheduled_in_key(c, replica)? {
            None => Ok(()),
            Some(s) => Err(s),
        },
    );
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        c.postmaster_pid(replica),
        Some(postmaster),
        "a flushed restart ran anyway"
    );
    let out = schedule(&in_seconds(4));
    assert!(out.stdout.contains("Success: restart scheduled"), "{out:?}");
    wait_check(REJOIN_TIMEOUT, "the scheduled restart to run", || {
        match (c.postmaster_pid(replica), scheduled_in_key(c, replica)?) {
            (Some(pid), None) if pid != postmaster => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait_streaming(c, replica, "the restarted replica streaming");
}

/// Adds `line` to the local `postgresql.parameters` of node `i`'s file.
fn add_local_parameter(c: &Cluster, i: usize, line: &str) {
    let path = c.config_path(i);
    let text = fs::read_to_string(path).expect("read the agent's config");
    let anchor = "    password_encryption: scram-sha-256\n";
    assert!(text.contains(anchor), "{text}");
    let text = text.replacen(anchor, &format!("{anchor}    {line}\n"), 1);
    fs::write(path, text).expect("rewrite the agent's config");
}

fn reload_and_sighup_apply_the_local_file(c: &Cluster, leader: usize, replica: usize) {
    // `patronictl reload` (POST /reload) of the replica after an edit of its file: a
    // parameter and a tag.
    add_local_parameter(c, replica, "log_min_duration_statement: 2500");
    let path = c.config_path(replica);
    let text = fs::read_to_string(path).expect("read the agent's config");
    assert!(text.contains("  nofailover: false\n"), "{text}");
    fs::write(
        path,
        text.replace("  nofailover: false\n", "  nofailover: true\n"),
    )
    .expect("set nofailover");
    let out = patronictl(c, &["reload", c.scope(), c.name(replica), "--force"]);
    assert!(
        out.success() && out.stdout.contains("Reload request received for member"),
        "patronictl reload: {out:?}"
    );
    wait_setting_everywhere(c, &[replica], "log_min_duration_statement", "2500ms");
    wait_check(SHORT_TIMEOUT, "the reloaded tag in the member key", || {
        let key = c
            .dcs_json(&format!("members/{}", c.name(replica)))?
            .ok_or("no member key")?;
        (key["tags"]["nofailover"] == Value::Bool(true))
            .then_some(())
            .ok_or_else(|| key.to_string())
    });
    assert_ne!(
        show(c, leader, "log_min_duration_statement").as_deref(),
        Ok("2500ms")
    );
    // SIGHUP does the same (Patroni's systemd `ExecReload`).
    add_local_parameter(c, leader, "log_min_duration_statement: 3500");
    let pid = c.agent_pid(leader).expect("the leader's agent runs") as i32;
    support::process::signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_setting_everywhere(c, &[leader], "log_min_duration_statement", "3500ms");
    // An invalid file is refused, naming what is wrong, and nothing changes.
    let path = c.config_path(replica);
    let good = fs::read_to_string(path).expect("read the agent's config");
    fs::write(
        path,
        good.replace(
            "log_min_duration_statement: 2500",
            "log_min_duration_statement: [1, 2]",
        ),
    )
    .expect("break the agent's config");
    let r = c
        .http(replica, "POST", "/reload", None)
        .expect("POST /reload");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("log_min_duration_statement"), "{}", r.body);
    fs::write(path, good).expect("restore the agent's config");
    assert_eq!(
        show(c, replica, "log_min_duration_statement").as_deref(),
        Ok("2500ms")
    );
    assert_eq!(c.leader_now(), Ok(leader), "reloads change no leader");
}

/// Patroni's acceptance suite bootstraps with `wal_keep_segments`, which PostgreSQL 13 and
/// later refuse. Here: (1) a bootstrap that PostgreSQL refuses (an invalid `max_connections`)
/// ends with the agent stopped, `initialize` deleted and the half-made data directory moved
/// aside; (2) an `initialize` key orphaned by a bootstrap that died half-way (written here
/// as the dead agent would have left it) is detected and removed after ttl; (3) the fixed
/// configuration then bootstraps, with `wal_keep_segments: 100` written as
/// `wal_keep_size = 1600MB`.
#[test]
fn failed_and_orphaned_bootstraps_recover_and_old_parameters_are_translated() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .scope("pgwarden-boot")
        .nodes(1)
        .synchronous_mode(false)
        .initially_started(0)
        .start();
    let config = c.config_path(0).to_path_buf();
    let good = fs::read_to_string(&config)
        .expect("read the config")
        .replacen("wal_keep_size: 256MB", "wal_keep_segments: 100", 1);
    assert!(good.contains("wal_keep_segments: 100"), "{good}");
    let broken = good.replacen(
        "wal_keep_segments: 100",
        "wal_keep_segments: 100\n        max_connections: lots",
        1,
    );
    fs::write(&config, &broken).expect("write the broken config");

    // (1) PostgreSQL refuses to start: the agent stops and leaves nothing behind.
    c.start_node(0);
    wait_until(
        BOOTSTRAP_TIMEOUT,
        "the agent to stop after the failed bootstrap",
        || (!c.agent_alive(0)).then_some(()),
    );
    c.terminate_node(0, SHORT_TIMEOUT); // reap it
    let log = fs::read_to_string(c.log_path(0)).unwrap_or_default();
    assert!(log.contains("bootstrap failed"), "agent log:\n{log}");
    assert_eq!(
        c.dcs_get("initialize").expect("read initialize"),
        None,
        "initialize released"
    );
    assert_eq!(c.dcs_get("leader").expect("read leader"), None);
    let member = c
        .dcs_json("members/node1")
        .expect("read the member key")
        .expect("the member key outlives the agent until its lease expires");
    assert_eq!(
        member.get("state").and_then(Value::as_str),
        Some("stopped"),
        "the failed bootstrap is over: {member}"
    );
    assert!(
        !c.data_dir(0).exists(),
        "the failed data directory was moved aside"
    );
    let aside: Vec<_> = fs::read_dir(c.node_dir(0))
        .expect("list the node dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("data_failed_"))
        .collect();
    assert_eq!(aside.len(), 1, "one data_failed_* directory: {aside:?}");

    // (2) A bootstrap that died half-way: `initialize` empty, no leader, nobody bootstrapping.
    c.etcd().put(&format!("{}initialize", c.dcs_prefix()), "");
    fs::write(&config, &good).expect("write the fixed config");
    c.start_node(0);
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let log = fs::read_to_string(c.log_path(0)).unwrap_or_default();
    assert!(
        log.contains("deleted the initialize key"),
        "the orphaned initialize key is reported:\n{log}"
    );
    let sysid = c
        .dcs_get("initialize")
        .expect("read initialize")
        .expect("initialize after the bootstrap")
        .value;
    assert!(
        !sysid.is_empty() && sysid.chars().all(|ch| ch.is_ascii_digit()),
        "{sysid:?}"
    );

    // (3) wal_keep_segments reached PostgreSQL 15 as wal_keep_size.
    let size = wait_check(SHORT_TIMEOUT, "SHOW wal_keep_size on the leader", || {
        c.query_scalar(leader, "SHOW wal_keep_size")
    });
    assert_eq!(size.as_deref(), Some("1600MB"));
    assert!(
        log.contains("wal_keep_segments = 100 does not exist in PostgreSQL 15"),
        "the translation is logged:\n{log}"
    );
}

/// The scripts of the hooks test, in a directory the agents can read: every call is logged
/// in `<node dir>/hooks.log` (the node dir is the scripts' first argument); `pre_promote`
/// exits 1 while `<node dir>/veto` exists; `on_role_change` hangs for a minute while
/// `<node dir>/hang` exists (its pid in `<node dir>/hang.pid`).
/// `postgresql.config_dir: {dir}/conf`: the server reads its configuration there (initdb's
/// base file and `pg_hba.conf` moved in on the bootstrapped node, brought along by the
/// clone on the others) and none is left in the data directory.
fn config_files_live_in_config_dir(c: &Cluster, i: usize) {
    let conf = c.node_dir(i).join("conf");
    let show = |setting: &str| {
        c.query_scalar(i, &format!("SHOW {setting}"))
            .unwrap_or_else(|e| panic!("SHOW {setting} on {}: {e}", c.name(i)))
            .unwrap_or_default()
    };
    for (setting, file) in [
        ("config_file", "postgresql.conf"),
        ("hba_file", "pg_hba.conf"),
        ("ident_file", "pg_ident.conf"),
    ] {
        assert_eq!(
            show(setting),
            conf.join(file).display().to_string(),
            "{setting} on {}",
            c.name(i)
        );
    }
    assert!(
        conf.join("postgresql.base.conf").exists(),
        "the base file in {}",
        conf.display()
    );
    for file in ["postgresql.conf", "postgresql.base.conf", "pg_hba.conf"] {
        assert!(
            !c.data_dir(i).join(file).exists(),
            "{file} left in {}'s data directory",
            c.name(i)
        );
    }
}

fn hook_scripts() -> tempfile::TempDir {
    let dir = make_test_dir("pgwarden-it-hooks-");
    let scripts = [
        (
            "callback.sh",
            "#!/bin/sh\nnode=$1; shift\necho \"start $*\" >> \"$node/hooks.log\"\n\
             if [ \"$1\" = on_role_change ] && [ -f \"$node/hang\" ]; then\n\
             echo $$ > \"$node/hang.pid\"; sleep 600; fi\n\
             echo \"end $*\" >> \"$node/hooks.log\"\n",
        ),
        (
            "pre_promote.sh",
            "#!/bin/sh\nif [ -f \"$1/veto\" ]; then echo 'pre_promote veto' >> \"$1/hooks.log\"; exit 1; fi\n\
             echo 'pre_promote ok' >> \"$1/hooks.log\"\n",
        ),
        (
            "before_stop.sh",
            "#!/bin/sh\necho before_stop >> \"$1/hooks.log\"\n",
        ),
    ];
    for (name, text) in scripts {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        set_mode(&path, 0o755);
    }
    dir
}

/// Callbacks, `pre_promote` and `before_stop` on a real cluster, with scripts that record
/// their calls: each node's first sight of its PostgreSQL is an `on_start` with its role; a
/// reload is an `on_reload`, a restart an `on_restart` after `before_stop` (no `on_stop` or
/// `on_start`); a switchover stops the old primary (`before_stop`, `on_stop primary`) and
/// makes it a replica (`on_role_change replica`) while the candidate passes `pre_promote`
/// and changes role (`on_role_change primary`). That callback hangs for longer than two
/// `ttl` and the new leader keeps its key on the same lease throughout; the restart that
/// follows kills it (never ended) and runs `on_restart`. Then the leader dies while its
/// standbys' `pre_promote` vetoes: no standby is promoted until the veto is lifted.
#[test]
fn callbacks_pre_promote_and_before_stop_run_as_patroni_runs_them() {
    let _guard = exclusive();
    let hooks = hook_scripts();
    let h = hooks.path().display();
    let callbacks: String = [
        "on_start",
        "on_stop",
        "on_restart",
        "on_reload",
        "on_role_change",
    ]
    .iter()
    .map(|k| format!("    {k}: /bin/sh {h}/callback.sh {{dir}}\n"))
    .collect();
    // The same cluster keeps its configuration files outside the data directory.
    let body = format!(
        "  callbacks:\n{callbacks}  pre_promote: /bin/sh {h}/pre_promote.sh {{dir}}\n  \
         before_stop: /bin/sh {h}/before_stop.sh {{dir}}\n  config_dir: {{dir}}/conf\n"
    );
    let mut c = Cluster::builder()
        .scope("pgwarden-hooks")
        .postgresql(&body)
        .start();
    let (leader, sync, other) = bootstrap_three(&c);
    let dirs: Vec<std::path::PathBuf> = (0..c.len()).map(|i| c.node_dir(i).to_path_buf()).collect();
    let calls = |i: usize| -> Vec<String> {
        fs::read_to_string(dirs[i].join("hooks.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let has = |i: usize, line: &str| calls(i).iter().any(|l| l == line);
    let count = |i: usize, line: &str| calls(i).iter().filter(|l| *l == line).count();
    let scope = c.scope().to_string();
    let call = |kind: &str, role: &str| format!("start {kind} {role} {scope}");
    let expect = |i: usize, what: &str, line: String| {
        wait_check(SHORT_TIMEOUT, what, || {
            if has(i, &line) {
                Ok(())
            } else {
                Err(format!("no {line:?} in node {}: {:?}", i + 1, calls(i)))
            }
        })
    };

    expect(leader, "the leader's on_start", call("on_start", "primary"));
    expect(sync, "a standby's on_start", call("on_start", "replica"));
    expect(other, "a standby's on_start", call("on_start", "replica"));
    for i in 0..c.len() {
        config_files_live_in_config_dir(&c, i);
    }

    let r = c
        .http(other, "POST", "/reload", None)
        .expect("POST /reload");
    assert_eq!(r.status, 202, "{}", r.body);
    expect(
        other,
        "on_reload after /reload",
        call("on_reload", "replica"),
    );

    let r = c
        .http_slow(
            other,
            "POST",
            "/restart",
            Some("{}"),
            Duration::from_secs(90),
        )
        .expect("POST /restart");
    assert_eq!(r.status, 200, "{}", r.body);
    expect(other, "on_restart", call("on_restart", "replica"));
    assert!(has(other, "before_stop"), "{:?}", calls(other));
    assert_eq!(
        count(other, &call("on_start", "replica")),
        1,
        "{:?}",
        calls(other)
    );
    assert_eq!(
        count(other, &call("on_stop", "replica")),
        0,
        "{:?}",
        calls(other)
    );

    // The candidate's role-change callback will hang.
    fs::write(dirs[sync].join("hang"), "").expect("create the hang marker");
    let out = patronictl(
        &c,
        &[
            "switchover",
            "--leader",
            c.name(leader),
            "--candidate",
            c.name(sync),
            "--force",
            &scope,
        ],
    );
    assert!(
        out.stdout.contains("Successfully switched over"),
        "patronictl switchover: {out:?}\n{}",
        c.diagnostics(40)
    );
    expect(
        sync,
        "the candidate's on_role_change",
        call("on_role_change", "primary"),
    );
    assert!(has(sync, "pre_promote ok"), "{:?}", calls(sync));
    expect(
        leader,
        "the old leader's on_stop",
        call("on_stop", "primary"),
    );
    expect(
        leader,
        "the old leader's role change",
        call("on_role_change", "replica"),
    );
    assert!(has(leader, "before_stop"), "{:?}", calls(leader));

    // The hung callback delays nothing: the key stays the new leader's, on one lease, for
    // more than two ttl (a blocked renewal would let it expire after one).
    let key = wait_check(SHORT_TIMEOUT, "the new leader's key", || {
        match c.dcs_get("leader")? {
            Some(kv) if kv.value == c.name(sync) => Ok(kv),
            other => Err(format!("leader key {other:?}")),
        }
    });
    let until = Instant::now() + c.ttl() * 2 + Duration::from_secs(2);
    while Instant::now() < until {
        let now = c.dcs_get("leader").expect("read the leader key");
        assert_eq!(
            now.as_ref()
                .map(|kv| (&kv.value, kv.create_revision, kv.lease)),
            Some((&key.value, key.create_revision, key.lease)),
            "the leader key changed while a callback hung\n{}",
            c.diagnostics(40)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    assert!(
        !has(sync, &format!("end on_role_change primary {scope}")),
        "the callback was to hang: {:?}",
        calls(sync)
    );
    let r = c
        .http_slow(
            sync,
            "POST",
            "/restart",
            Some("{}"),
            Duration::from_secs(90),
        )
        .expect("POST /restart");
    assert_eq!(r.status, 200, "{}", r.body);
    expect(
        sync,
        "the leader's on_restart",
        call("on_restart", "primary"),
    );
    let hung: u32 = fs::read_to_string(dirs[sync].join("hang.pid"))
        .expect("the hung callback's pid")
        .trim()
        .parse()
        .expect("a pid");
    wait_check(
        SHORT_TIMEOUT,
        "the newer callback to kill the hung one",
        || match std::path::Path::new(&format!("/proc/{hung}")).exists() {
            false => Ok(()),
            true => Err(format!("callback pid {hung} still runs")),
        },
    );
    assert!(
        !has(sync, &format!("end on_role_change primary {scope}")),
        "killed, not ended: {:?}",
        calls(sync)
    );

    // The leader dies once a standby may take over (synchronous mode: the one in /sync);
    // its standbys' pre_promote vetoes every promotion.
    wait_check(
        REPLICATION_TIMEOUT,
        "/sync to name a standby of the new leader",
        || c.sync_standby(c.name(sync)),
    );
    let standbys = [leader, other];
    for i in standbys {
        wait_streaming(&c, i, "both standbys streaming before the leader dies");
        fs::write(dirs[i].join("veto"), "").expect("create the veto marker");
    }
    c.kill_node(sync);
    let vetoed = Instant::now();
    while !standbys.iter().any(|&i| has(i, "pre_promote veto")) {
        assert!(
            vetoed.elapsed() < FAILOVER_TIMEOUT,
            "no standby tried to promote: {:?}\n{}",
            standbys.map(calls),
            c.diagnostics(60)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    let until = Instant::now() + c.ttl() * 2;
    while Instant::now() < until {
        for i in standbys {
            assert_eq!(
                c.in_recovery(i),
                Ok(true),
                "{} was promoted though pre_promote vetoed\n{}",
                c.name(i),
                c.diagnostics(40)
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    for i in standbys {
        fs::remove_file(dirs[i].join("veto")).expect("remove the veto marker");
    }
    let new_leader = wait_check(FAILOVER_TIMEOUT, "a leader once the veto is lifted", || {
        let l = c.leader_now()?;
        match c.in_recovery(l)? {
            false => Ok(l),
            true => Err(format!("{} leads but is in recovery", c.name(l))),
        }
    });
    assert!(standbys.contains(&new_leader));
    expect(
        new_leader,
        "the new leader's role change",
        call("on_role_change", "primary"),
    );
    assert!(has(new_leader, "pre_promote ok"), "{:?}", calls(new_leader));
}
