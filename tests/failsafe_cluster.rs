//! Failsafe mode on real etcd + PostgreSQL 15 + three pgwarden agents: with
//! `failsafe_mode: true` an etcd outage leaves the primary writable while every member
//! confirms it over `POST /failsafe`, and demotes it once one member cannot; without failsafe
//! mode the same outage demotes the primary at its lease deadline.
//!
//! Same conventions as `tests/cluster.rs`: one cluster at a time (a global lock), conditions
//! waited on with deadlines, password authentication, processes signalled by pid (etcd is
//! frozen with SIGSTOP and always continued, even when an assertion fails).
//! Run with `cargo test --test failsafe_cluster`.

use pgwarden_testkit as support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::process::{signal, POLL_INTERVAL};
use support::shared::{exclusive, BOOTSTRAP_TIMEOUT, REPLICATION_TIMEOUT};
use support::{wait_check, Cluster};

/// An outage noticed, a demotion carried out, a new leader after recovery.
const REACTION_TIMEOUT: Duration = Duration::from_secs(90);

const TABLE: &str = "failsafe_writes";

/// A process frozen with SIGSTOP for as long as this lives.
struct Frozen {
    pid: i32,
    what: String,
}

impl Frozen {
    fn new(pid: i32, what: &str) -> Frozen {
        signal(pid, Signal::SIGSTOP);
        eprintln!("[test] froze {what} (pid {pid})");
        Frozen {
            pid,
            what: what.to_string(),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.pid, Signal::SIGCONT);
        eprintln!("[test] continued {} (pid {})", self.what, self.pid);
    }
}

/// A three-node asynchronous cluster, replicas streaming; returns the leader.
fn healthy_cluster(failsafe: bool) -> (Cluster, usize) {
    let mut builder = Cluster::builder().nodes(3).synchronous_mode(false);
    if failsafe {
        builder = builder.dcs("failsafe_mode", "true");
    }
    let c = builder.start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    wait_check(REPLICATION_TIMEOUT, "both replicas streaming", || {
        let statuses = c.statuses("/replica");
        let streaming = (0..c.len())
            .filter(|&i| i != leader && statuses[i] == Some(200))
            .count();
        if streaming == 2 {
            Ok(())
        } else {
            Err(format!("GET /replica: {}", c.describe(&statuses)))
        }
    });
    c.execute(
        leader,
        &format!("CREATE TABLE {TABLE} (id bigint PRIMARY KEY)"),
    )
    .expect("create table");
    (c, leader)
}

fn patroni_field(c: &Cluster, i: usize, field: &str) -> Option<Value> {
    c.patroni(i).and_then(|p| p.get(field).cloned())
}

fn last_transition(c: &Cluster, i: usize) -> String {
    c.patroni(i)
        .and_then(|p| {
            p.pointer("/pgwarden/last_transition")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The reason of node `i`'s last transition out of `Primary`, from its log (`/patroni` shows
/// only the latest transition, which by then is the restart as a standby).
fn demotion_reason(c: &Cluster, i: usize) -> String {
    let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
    log.lines()
        .rev()
        .find(|l| l.contains("state transition") && l.contains("from=\"primary\""))
        .map(str::to_string)
        .unwrap_or_else(|| format!("no demotion in the log; last: {}", last_transition(c, i)))
}

fn etcd_pid(c: &Cluster) -> i32 {
    c.etcd().pid(0).expect("the harness started etcd")
}

/// Some node accepts writes again (after the outage): returns it.
fn wait_for_writable_leader(c: &Cluster) -> usize {
    let mut id = 1_000_000;
    wait_check(REACTION_TIMEOUT, "a leader accepting writes again", || {
        let leader = c.leader_now()?;
        id += 1;
        writable(c, leader, id).map(|()| leader)
    })
}

/// The primary accepts a write (a fresh connection each time).
fn writable(c: &Cluster, i: usize, id: i64) -> Result<(), String> {
    c.execute(i, &format!("INSERT INTO {TABLE} VALUES ({id})"))
}

#[test]
fn failsafe_keeps_the_primary_through_an_etcd_outage_until_a_member_cannot_confirm() {
    let _guard = exclusive();
    let (c, leader) = healthy_cluster(true);
    let replicas: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // The leader records every member in /failsafe; GET /failsafe serves it.
    wait_check(
        REPLICATION_TIMEOUT,
        "/failsafe to list all three members",
        || {
            let listed = c.dcs_json("failsafe")?.unwrap_or(Value::Null);
            let all = (0..3).all(|i| {
                listed
                    .get(c.name(i))
                    .and_then(Value::as_str)
                    .is_some_and(|url| url.ends_with("/patroni"))
            });
            if all {
                Ok(())
            } else {
                Err(format!("/failsafe = {listed}"))
            }
        },
    );
    let served = c
        .http_json(replicas[0], "/failsafe")
        .expect("GET /failsafe");
    assert_eq!(served.as_object().map(|m| m.len()), Some(3), "{served}");

    let outage_started = Instant::now();
    let etcd = Frozen::new(etcd_pid(&c), "etcd");
    wait_check(
        REACTION_TIMEOUT,
        "/patroni to show failsafe_mode_is_active",
        || match patroni_field(&c, leader, "failsafe_mode_is_active") {
            Some(Value::Bool(true)) => Ok(()),
            other => Err(format!(
                "failsafe_mode_is_active = {other:?}; {}",
                last_transition(&c, leader)
            )),
        },
    );
    let metrics = c
        .http(leader, "GET", "/metrics", None)
        .map(|r| r.body)
        .unwrap_or_default();
    assert!(
        metrics.contains("patroni_failsafe_mode_is_active{")
            && metrics
                .lines()
                .any(|l| l.starts_with("patroni_failsafe_mode_is_active{") && l.ends_with(" 1")),
        "{metrics}"
    );
    // Past any lease deadline (ttl after the outage began) by two more ttl, the primary
    // keeps accepting writes: every member keeps confirming it.
    let window_end = outage_started + c.ttl() * 3;
    let mut id = 1;
    while Instant::now() < window_end {
        writable(&c, leader, id).unwrap_or_else(|e| {
            panic!(
                "the primary stopped accepting writes {:?} into the outage: {e}; {}\n{}",
                outage_started.elapsed(),
                last_transition(&c, leader),
                c.diagnostics(40)
            )
        });
        id += 1;
        std::thread::sleep(POLL_INTERVAL);
    }
    eprintln!(
        "[test] {id} writes accepted during {:?} of etcd outage",
        outage_started.elapsed()
    );
    assert_eq!(c.in_recovery(leader), Ok(false));

    // One replica's agent stops answering: the next round fails and the primary demotes.
    let silent = Frozen::new(
        c.agent_pid(replicas[0]).expect("agent running") as i32,
        &format!("{}'s agent", c.name(replicas[0])),
    );
    wait_check(
        REACTION_TIMEOUT,
        "the primary to stop accepting writes",
        || match writable(&c, leader, id) {
            Ok(()) => {
                id += 1;
                Err("still writable".to_string())
            }
            Err(_) => Ok(()),
        },
    );
    let why = demotion_reason(&c, leader);
    eprintln!("[test] demoted: {why}");
    assert!(why.contains("failsafe"), "{why}");
    // Nobody takes over while etcd is away (the members that confirmed do not race, and
    // none could reach etcd anyway); the former primary's health check follows its stop.
    wait_check(
        REACTION_TIMEOUT,
        "no node answering GET /primary with 200",
        || {
            let statuses = c.statuses("/primary");
            if statuses.contains(&Some(200)) {
                Err(c.describe(&statuses))
            } else {
                Ok(())
            }
        },
    );

    // Everything continues: the cluster elects a leader again.
    drop(silent);
    drop(etcd);
    wait_for_writable_leader(&c);
}

#[test]
fn without_failsafe_an_etcd_outage_demotes_the_primary_at_its_deadline() {
    let _guard = exclusive();
    let (c, leader) = healthy_cluster(false);
    writable(&c, leader, 1).expect("a write before the outage");
    let etcd = Frozen::new(etcd_pid(&c), "etcd");
    let mut id = 2;
    wait_check(
        REACTION_TIMEOUT,
        "the primary to stop accepting writes",
        || match writable(&c, leader, id) {
            Ok(()) => {
                id += 1;
                Err("still writable".to_string())
            }
            Err(_) => Ok(()),
        },
    );
    let why = demotion_reason(&c, leader);
    eprintln!("[test] demoted: {why}");
    assert!(
        why.contains("deadline") && !why.contains("failsafe"),
        "{why}"
    );
    assert_ne!(
        patroni_field(&c, leader, "failsafe_mode_is_active"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        c.http_status(leader, "GET", "/failsafe"),
        Some(502),
        "GET /failsafe with failsafe mode off"
    );
    drop(etcd);
    wait_for_writable_leader(&c);
}
