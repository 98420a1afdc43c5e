//! Proves the harness works before the agent does: a 3-member etcd that survives losing a
//! member and leaves no process behind, and the process/SQL helpers against a real postmaster
//! (password login, SIGKILL of the whole postmaster tree, the acknowledged-write checker).

use pgwarden_testkit as support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use support::process::{
    give_to_runner, kill_tree, make_test_dir, pid_alive, run_capture, runner_command, set_mode,
    spawn_logged, wait_dead,
};
use support::{sql, wait_check, wait_until, AckWriter, EtcdCluster};

#[test]
fn three_member_etcd_survives_member_loss_and_cleans_up() {
    let key = "/pgwarden-harness/probe";
    let (all_pids, data_root) = {
        let mut etcd = EtcdCluster::start(3);
        assert_eq!(etcd.endpoints().len(), 3);
        assert_eq!(etcd.client_urls().len(), 3);
        let first_pids = etcd.pids();
        assert_eq!(first_pids.len(), 3, "three running members");

        // Raft leadership can be read and moved (the member-loss scenario relies on it).
        let leader = etcd.raft_leader().expect("a Raft leader");
        let target = (leader + 1) % 3;
        etcd.move_leader(target);
        assert_eq!(etcd.raft_leader(), Ok(target));

        etcd.put(key, "v1");
        assert_eq!(etcd.get(key).expect("key written").value, "v1");

        etcd.stop_member(0);
        assert!(
            !pid_alive(first_pids[0]),
            "member 0 is dead after stop_member"
        );
        assert!(!etcd.is_running(0));
        assert_eq!(etcd.live_endpoints().len(), 2);

        // Two of three members keep quorum: writes and linearizable reads still work.
        wait_check(
            Duration::from_secs(30),
            "a write with one member down",
            || etcd.try_put(key, "v2"),
        );
        let kv = etcd.get(key).expect("key after member loss");
        assert_eq!(kv.value, "v2");
        let under = etcd.get_prefix("/pgwarden-harness/");
        assert_eq!(under.len(), 1, "prefix read: {under:?}");
        assert!(kv.mod_revision > kv.create_revision);

        // The restarted member (same data dir and ports) catches up and serves reads itself.
        etcd.start_member(0);
        let only_first = vec![etcd.endpoints()[0].clone()];
        wait_check(
            Duration::from_secs(30),
            "the restarted member to serve v2",
            || {
                let kvs = etcd.try_get_prefix_on(&only_first, key)?;
                match kvs.first() {
                    Some(kv) if kv.value == "v2" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        );

        let mut all = first_pids;
        all.extend(etcd.pids());
        let data_root = etcd
            .log_path(0)
            .parent()
            .expect("member logs live in the cluster dir")
            .to_path_buf();
        (all, data_root)
    };
    // Dropped: no member process may survive, and the data dirs are gone.
    wait_dead(
        &all_pids,
        Duration::from_secs(10),
        "every etcd member to be gone after drop",
    );
    if std::env::var_os("PGWARDEN_KEEP_TEST_DIRS").is_none() {
        assert!(
            !data_root.exists(),
            "{} removed on drop",
            data_root.display()
        );
    }
}

/// Runs `program args` as the agent user and panics unless it succeeds.
fn run_as_runner(program: &Path, home: &Path, args: &[&str]) {
    let mut cmd = runner_command(program, home);
    cmd.args(args);
    let out = run_capture(&mut cmd, Duration::from_secs(120));
    assert!(out.success(), "{program:?} {args:?} failed: {out:?}");
}

#[test]
fn harness_kills_a_real_postmaster_tree_and_checks_acked_writes() {
    let bin = Path::new(support::cluster::PG_BIN_DIR);
    let dir = make_test_dir("pgwarden-pgprobe-");
    let node = dir.path().join("node");
    fs::create_dir(&node).expect("mkdir node dir");
    set_mode(&node, 0o700);
    give_to_runner(&node);
    let pwfile = node.join("pw");
    fs::write(&pwfile, support::cluster::SUPERUSER_PASSWORD).expect("write password file");
    give_to_runner(&pwfile);
    let data = node.join("data");
    let data_s = data.to_str().expect("utf-8 path");
    run_as_runner(
        &bin.join("initdb"),
        &node,
        &[
            "-D",
            data_s,
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "--pwfile",
            pwfile.to_str().expect("utf-8 path"),
            "-E",
            "UTF8",
        ],
    );

    let port = support::process::free_port();
    let log = node.join("postgres.log");
    let start = |what: &str| {
        let mut cmd = runner_command(&bin.join("postgres"), &node);
        cmd.args(["-D", data_s, "-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", node.display()));
        spawn_logged(&mut cmd, &log, what)
    };
    let config = sql::pg_config(port, "postgres", support::cluster::SUPERUSER_PASSWORD);
    let mut postmaster = start("postgres");
    wait_check(
        Duration::from_secs(60),
        "password login to the probe postmaster",
        || sql::query_scalar(&config, "SELECT 1"),
    );
    let mut wrong = config.clone();
    wrong.password("not-the-password");
    assert!(
        sql::connect(&wrong).is_err(),
        "a wrong password must be refused (scram, no trust)"
    );

    sql::execute(&config, "CREATE TABLE acked (id bigint PRIMARY KEY)").expect("create table");
    let writer = AckWriter::start(&config, "acked", 1);
    wait_until(
        Duration::from_secs(60),
        "the writer to acknowledge 50 rows",
        || (writer.acked_count() >= 50).then_some(()),
    );

    let pm_pid: i32 = fs::read_to_string(data.join("postmaster.pid"))
        .expect("read postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid on the first line of postmaster.pid");
    assert_eq!(
        pm_pid,
        postmaster.id() as i32,
        "setpriv execs: the child is the postmaster"
    );
    let cmd = support::process::cmdline(pm_pid).expect("postmaster cmdline");
    assert!(
        cmd.contains(data_s),
        "postmaster cmdline {cmd:?} names the data dir"
    );
    let children = support::process::descendants(pm_pid);
    assert!(
        children.len() >= 3,
        "postmaster children (backends, checkpointer...): {children:?}"
    );

    let victims = kill_tree(pm_pid);
    let _ = postmaster.wait();
    for c in &children {
        assert!(victims.contains(c), "kill_tree signalled child {c}");
    }
    wait_dead(
        &victims,
        Duration::from_secs(10),
        "the whole postmaster tree",
    );

    wait_until(
        Duration::from_secs(30),
        "the writer to stop on the dead server",
        || writer.is_finished().then_some(()),
    );
    let report = writer.stop(Duration::from_secs(5));
    assert!(
        report.error.is_some(),
        "the writer stopped on an error: {report:?}"
    );
    assert!(report.unsafe_commits.is_empty(), "{report:?}");

    // After crash recovery every acknowledged id is there.
    let mut postmaster = start("postgres after SIGKILL");
    let present = wait_check(
        Duration::from_secs(60),
        "the probe postmaster back after crash recovery",
        || sql::query_text(&config, "SELECT id FROM acked"),
    );
    let present: std::collections::BTreeSet<i64> = present
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
        .collect();
    let missing: Vec<i64> = report
        .acked
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    assert!(missing.is_empty(), "acknowledged ids lost: {missing:?}");

    let pids = kill_tree(postmaster.id() as i32);
    let _ = postmaster.wait();
    wait_dead(
        &pids,
        Duration::from_secs(10),
        "the probe postmaster to stop",
    );
}
