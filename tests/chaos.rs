//! Chaos on a real cluster (short form, one of each fault kind in this first slice): three
//! pgwarden nodes with PostgreSQL 15 and a three-member etcd, every node and every etcd
//! member in its own network namespace on a private bridge, HAProxy in front with the seed
//! guide's checks. A writer commits numbered rows through HAProxy in synchronous mode, stale
//! clients keep writing straight to every node, a reader checks that the replica port never
//! serves an old primary (a member just promoted may serve reads until HAProxy's checks
//! catch up: it has every commit). After each fault: every acknowledged row is on the current primary,
//! the cluster heals with no human action, and at the end no two terms (node, timeline)
//! acknowledged writes in interleaved time (the agents' role histories and the clients' logs).
//!
//! Needs root (namespaces, nft). Run with `cargo test --test chaos -- --nocapture`.

use pgwarden_testkit as support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::chaos::{interleaved_terms, read_role_history, Ack, ReplicaReader, RoleLine, Writer};
use support::haproxy::Haproxy;
use support::netns::Topology;
use support::process::is_root;
use support::shared::{exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT, REPLICATION_TIMEOUT};
use support::{wait_check, wait_until, Cluster};

const TABLE: &str = "chaos_writes";
/// From the end of a fault (or the failover it caused) to a whole cluster again: three
/// members running, one leader, a synchronous standby, both replicas streaming.
const HEAL_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL of the leader's agent, postmaster and every child; restarted afterwards (a
    /// restarted node rejoining).
    KillLeader,
    /// SIGSTOP of the leader's agent for 2 × ttl, then SIGCONT. In synchronous mode the old
    /// primary cannot acknowledge once its synchronous standby has been promoted.
    FreezeLeaderAgent,
    /// SIGSTOP of the leader's postmaster.
    FreezeLeaderPostmaster,
    /// One etcd member killed (quorum kept): nothing changes. The member killed is etcd's
    /// Raft leader, the worst case: etcd answers nothing while it elects another (about a
    /// second), and keep-alives sent meanwhile hang.
    LoseEtcdMember,
    /// Two of three etcd members killed, failsafe mode off: the primary stops at its
    /// deadline; a leader again once etcd is back.
    LoseEtcdQuorum,
    /// The same with `failsafe_mode: true`: every member confirms the primary, which keeps
    /// taking writes through the outage.
    LoseEtcdQuorumFailsafe,
    /// The leader cannot reach any etcd member (nft in its namespace), then heals.
    PartitionLeaderFromEtcd,
    /// The leader cannot reach the other nodes (nor they it); it keeps etcd and the key.
    PartitionLeaderFromReplicas,
    /// The synchronous standby is cut off from everything: another standby replaces it.
    PartitionSyncStandby,
}

impl Fault {
    /// Whether the fault must end with another member leading.
    fn fails_over(self) -> bool {
        matches!(
            self,
            Fault::KillLeader
                | Fault::FreezeLeaderAgent
                | Fault::FreezeLeaderPostmaster
                | Fault::PartitionLeaderFromEtcd
        )
    }
}

/// The cluster's timing (seconds). A primary whose renewals fail stops once its deadline
/// (last renewal + ttl - the demotion margin) is less than retry_timeout away, so it rides
/// out an etcd outage of about ttl - retry_timeout - margin - loop_wait. Losing etcd's Raft
/// leader is such an outage: 1-3 s with etcd's default election timeout, more on a loaded
/// 2-core machine (a split vote takes another round). With 6/1/2 the long form saw it demote
/// the primary; with 8/1/3 a CI run did (etcd answered "no leader" for about 3 s). 12/1/5
/// rides out about 5 s. ttl >= loop_wait + 2 x retry_timeout.
const TTL: u32 = 12;
const LOOP_WAIT: u32 = 1;
const RETRY_TIMEOUT: u32 = 5;
/// HAProxy's checks, as in the seed guide (`inter 3s fall 3 rise 2`): a server is out after
/// three failed checks and in after two good ones.
const HAPROXY_INTER: u32 = 3;
const HAPROXY_FALL: u32 = 3;
const HAPROXY_RISE: u32 = 2;

impl Fault {
    /// The longest write stall through HAProxy this fault may cause, from its timing; `None`
    /// where the stall is the outage itself (quorum lost without failsafe: the primary must
    /// stop, and the late-acknowledgement check bounds it instead).
    fn stall_bound(self) -> Option<Duration> {
        let secs = |s: u32| Some(Duration::from_secs(s.into()));
        // The old leader's lease runs out (ttl), the next loop notices (loop_wait) and the
        // election's etcd calls take up to retry_timeout; then HAProxy drops the old primary
        // (fall x inter) and admits the new one (rise x inter), which may overlap but are
        // counted in full.
        let failover =
            TTL + LOOP_WAIT + RETRY_TIMEOUT + HAPROXY_INTER * (HAPROXY_FALL + HAPROXY_RISE);
        match self {
            Fault::KillLeader
            | Fault::FreezeLeaderAgent
            | Fault::FreezeLeaderPostmaster
            | Fault::PartitionLeaderFromEtcd => secs(failover),
            // A lost synchronous standby: its replies stop, and after the reply window (four
            // wal_receiver_status_interval, at least 5 s) the leader's next loop replaces it:
            // `/sync` written within retry_timeout, then synchronous_standby_names reloaded
            // (a loop and 2 s more for PostgreSQL to apply it). 14 s; measured 6-7.6 s (at
            // 8/1/3), and 60.6 s before the reply-time tracking.
            Fault::PartitionLeaderFromReplicas | Fault::PartitionSyncStandby => {
                secs(5 + 2 * LOOP_WAIT + RETRY_TIMEOUT + 2)
            }
            // Writes never wait on etcd: at most a keep-alive retry round.
            Fault::LoseEtcdMember | Fault::LoseEtcdQuorumFailsafe => {
                secs(LOOP_WAIT + RETRY_TIMEOUT)
            }
            Fault::LoseEtcdQuorum => None,
        }
    }
}

/// The partition is in place: from `host`, every target times out over TCP, and the host's
/// chaos table counts dropped packets.
fn prove_partition(host: &support::netns::Host, targets: &[std::net::SocketAddrV4]) {
    let found = host.probe_tcp(targets, Duration::from_secs(2));
    for (target, reach) in targets.iter().zip(&found) {
        assert_eq!(
            reach,
            &support::netns::Reach::Timeout,
            "{} -> {target}: the partition lets packets through; chaos table:\n{}",
            host.name(),
            host.fault_rules()
        );
    }
    let (dropped_in, dropped_out) = host.dropped_packets();
    assert!(
        dropped_in + dropped_out > 0,
        "{}: the chaos table dropped no packet:\n{}",
        host.name(),
        host.fault_rules()
    );
}

/// Every fault kind once: the short form, run in CI.
const SHORT_FORM: [Fault; 9] = [
    Fault::KillLeader,
    Fault::FreezeLeaderAgent,
    Fault::FreezeLeaderPostmaster,
    Fault::LoseEtcdMember,
    Fault::LoseEtcdQuorum,
    Fault::LoseEtcdQuorumFailsafe,
    Fault::PartitionLeaderFromEtcd,
    Fault::PartitionLeaderFromReplicas,
    Fault::PartitionSyncStandby,
];

/// One line of the report.
struct Row {
    fault: Fault,
    acked: usize,
    lost: usize,
    /// From the fault to the first write the new leader acknowledged (faults that fail over).
    first_write_ms: Option<u128>,
    /// The longest time without an acknowledged write through HAProxy, from the fault to
    /// the healed cluster.
    stall_ms: u128,
    heal_ms: u128,
}

/// The longest gap between acknowledged writes in `[from, to]` (edges included).
fn longest_stall(acks: &[Ack], from: u128, to: u128) -> u128 {
    let mut times: Vec<u128> = acks
        .iter()
        .map(|a| a.at_ms)
        .filter(|t| *t > from && *t < to)
        .collect();
    times.sort_unstable();
    let mut last = from;
    let mut longest = 0;
    for t in times.into_iter().chain(std::iter::once(to)) {
        longest = longest.max(t - last);
        last = t;
    }
    longest
}

fn ids_on(c: &Cluster, i: usize) -> Result<BTreeSet<i64>, String> {
    let rows = c.query(i, &format!("SELECT id FROM {TABLE}"))?;
    Ok(rows
        .iter()
        .filter_map(|r| r[0].as_deref()?.parse().ok())
        .collect())
}

/// Three members running, one leader, a synchronous standby in `/sync`, both replicas
/// streaming: returns the leader.
fn whole(c: &Cluster) -> Result<usize, String> {
    let leader = c.leader_now()?;
    c.sync_standby(c.name(leader))?;
    for i in 0..c.len() {
        let p = c
            .patroni(i)
            .ok_or_else(|| format!("{}: no /patroni", c.name(i)))?;
        if p["state"] != "running" {
            return Err(format!("{}: state {}", c.name(i), p["state"]));
        }
        if i != leader && p["replication_state"] != "streaming" {
            return Err(format!(
                "{}: replication_state {}",
                c.name(i),
                p["replication_state"]
            ));
        }
    }
    Ok(leader)
}

fn all_acks(writers: &[Writer]) -> Vec<Ack> {
    writers.iter().flat_map(Writer::acks).collect()
}

/// Milliseconds from `t0` to the first commit through HAProxy acknowledged after `t0`
/// (by `server`, when given).
fn first_write_by(writer: &Writer, t0: u128, server: Option<&String>) -> Option<u128> {
    writer
        .acks()
        .iter()
        .find(|a| a.at_ms > t0 && server.is_none_or(|s| &a.server == s))
        .map(|a| a.at_ms - t0)
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("{signal} to {pid}: {e}"));
}

/// A SIGSTOPped process is in state `T` (stopped) in `/proc/<pid>/stat`: the freeze
/// happened.
fn prove_stopped(pid: i32) {
    wait_check(
        Duration::from_secs(5),
        &format!("pid {pid} stopped (state T)"),
        || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
            // `pid (comm) state ...`: comm may hold spaces and parentheses, the state follows
            // the last `)`.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            if state == "T" {
                Ok(())
            } else {
                Err(format!("state {state}"))
            }
        },
    );
}

/// The etcd members stopped by a fault refuse requests: the fault happened.
fn prove_members_refuse(c: &Cluster, members: &[usize]) {
    for &m in members {
        if let Ok(status) = c.etcd().member_status(m) {
            panic!("etcd member {m} still answers after it was stopped: {status:?}");
        }
    }
}

/// No member can take writes: none answers 200 on `/primary`, and every PostgreSQL, asked
/// directly, is either not accepting connections or in recovery and refusing a write even
/// with `synchronous_commit = local` (which a primary waiting on a synchronous standby would
/// take). A temporary table, so an accepted write leaves nothing behind to fail the next try.
fn no_writable_primary(c: &Cluster) -> Result<(), String> {
    let statuses = c.statuses("/primary");
    if let Some(i) = statuses.iter().position(|s| *s == Some(200)) {
        return Err(format!("{} answers 200 on /primary", c.name(i)));
    }
    for i in 0..c.len() {
        match c.in_recovery(i) {
            // Nothing accepts connections there: nothing to write to.
            Err(_) => {}
            Ok(false) => {
                return Err(format!("{}'s PostgreSQL is out of recovery", c.name(i)));
            }
            Ok(true) => {
                let write = "SET synchronous_commit = local; \
                             CREATE TEMP TABLE chaos_quorum_probe (x int)";
                if c.execute(i, write).is_ok() {
                    return Err(format!("{}'s PostgreSQL accepted a write", c.name(i)));
                }
            }
        }
    }
    Ok(())
}

/// Every node answers `GET /failsafe` with `status` (200: failsafe mode on, 502: off).
fn every_failsafe_answer(c: &Cluster, status: u16) -> Result<(), String> {
    for i in 0..c.len() {
        let answer = c.http(i, "GET", "/failsafe", None)?;
        if answer.status != status {
            return Err(format!(
                "{}: GET /failsafe {} {}",
                c.name(i),
                answer.status,
                answer.body
            ));
        }
    }
    Ok(())
}

/// Turns `failsafe_mode` on or off in `/config` (the agents pick it up from the watch).
fn set_failsafe(c: &Cluster, on: bool) {
    let key = format!("{}config", c.dcs_prefix());
    let mut config = c
        .dcs_json("config")
        .expect("read /config")
        .expect("/config exists");
    config["failsafe_mode"] = serde_json::Value::Bool(on);
    c.etcd()
        .try_put(&key, &config.to_string())
        .expect("write /config");
}

/// The fault kinds named in `PGWARDEN_CHAOS_KINDS` (comma-separated, as in the report:
/// `PartitionSyncStandby,KillLeader`), or all of them.
fn kinds_to_run() -> Vec<Fault> {
    let Ok(names) = std::env::var("PGWARDEN_CHAOS_KINDS") else {
        return SHORT_FORM.to_vec();
    };
    let kinds: Vec<Fault> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            *SHORT_FORM
                .iter()
                .find(|f| format!("{f:?}") == name)
                .unwrap_or_else(|| {
                    panic!("PGWARDEN_CHAOS_KINDS: unknown fault kind {name:?}; expected one of {SHORT_FORM:?}")
                })
        })
        .collect();
    assert!(
        !kinds.is_empty(),
        "PGWARDEN_CHAOS_KINDS names no fault kind"
    );
    kinds
}

/// The short form (one of each kind), or `PGWARDEN_CHAOS_FAULTS` faults drawn from
/// `PGWARDEN_CHAOS_SEED` (the long form, run by `bench/chaos`); `PGWARDEN_CHAOS_KINDS`
/// narrows either to some kinds.
fn faults_to_run() -> Vec<Fault> {
    let kinds = kinds_to_run();
    let number = |name: &str| {
        std::env::var(name).ok().map(|raw| {
            raw.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={raw:?}: expected a whole number"))
        })
    };
    let Some(count) = number("PGWARDEN_CHAOS_FAULTS") else {
        return kinds;
    };
    assert!(
        count > 0,
        "PGWARDEN_CHAOS_FAULTS=0 would inject no fault: unset it, or give a count"
    );
    let mut state: u64 = number("PGWARDEN_CHAOS_SEED").unwrap_or(1).max(1);
    eprintln!("[chaos] {count} faults from seed {state}");
    (0..count)
        .map(|_| {
            // xorshift64*: a fixed, dependency-free sequence per seed.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            kinds[(r % kinds.len() as u64) as usize]
        })
        .collect()
}

/// One table row per fault kind: how many injected, writes acknowledged through HAProxy
/// from each fault to the next, acknowledged writes lost, interleavings found (over the
/// whole run), time from the fault to the first write and to a whole cluster (median and
/// maximum).
fn print_report(report: &[Row], overlaps: usize) {
    let secs = |ms: u128| ms as f64 / 1000.0;
    let spread = |mut v: Vec<u128>| {
        v.sort_unstable();
        format!(
            "{:.1} s / {:.1} s",
            secs(v[v.len() / 2]),
            secs(v[v.len() - 1])
        )
    };
    eprintln!(
        "\n| fault | injected | acknowledged | lost | overlaps | first write (median / max) | longest write stall (median / max) | healed (median / max) |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|");
    for kind in SHORT_FORM {
        let rows: Vec<&Row> = report.iter().filter(|r| r.fault == kind).collect();
        if rows.is_empty() {
            continue;
        }
        eprintln!(
            "| {kind:?} | {} | {} | {} | {overlaps} | {} | {} | {} |",
            rows.len(),
            rows.iter().map(|r| r.acked).sum::<usize>(),
            rows.iter().map(|r| r.lost).sum::<usize>(),
            {
                let firsts: Vec<u128> = rows.iter().filter_map(|r| r.first_write_ms).collect();
                if firsts.is_empty() {
                    "— (no failover)".to_string()
                } else {
                    spread(firsts)
                }
            },
            spread(rows.iter().map(|r| r.stall_ms).collect()),
            spread(rows.iter().map(|r| r.heal_ms).collect()),
        );
    }
}

#[test]
fn faults_lose_no_acknowledged_write_and_the_cluster_heals() {
    // A missing prerequisite fails the test: a suite that skips itself proves nothing.
    assert!(
        is_root(),
        "the chaos suite needs root (network namespaces, nft); run it as root, as CI does"
    );
    let _guard = exclusive();
    let mut topology = Topology::create("chaos");
    let etcd_hosts: Vec<_> = (0..3)
        .map(|i| topology.add_host(&format!("e{i}")))
        .collect();
    let node_hosts: Vec<_> = (0..3)
        .map(|i| topology.add_host(&format!("n{i}")))
        .collect();
    topology.check_fabric();
    let mut c = Cluster::builder()
        .scope("pgwarden-chaos")
        .placed(node_hosts.clone(), etcd_hosts.clone(), &topology.subnet())
        .timing(TTL, LOOP_WAIT, RETRY_TIMEOUT)
        .pgwarden("  unresponsive_primary_timeout_ms: 4000\n  role_history: role-history.jsonl\n")
        .start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    wait_check(REPLICATION_TIMEOUT, "a whole cluster", || whole(&c));
    c.execute(
        leader,
        &format!("CREATE TABLE {TABLE} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())"),
    )
    .expect("create the table");

    let proxy = Haproxy::start(&c.haproxy_servers());
    let through_proxy = c.pg_config_at(proxy.primary_port);
    wait_check(
        Duration::from_secs(60),
        "HAProxy to route writes to the leader",
        || support::sql::execute(&through_proxy, "SELECT 1"),
    );
    let names: BTreeMap<String, String> = (0..c.len())
        .map(|i| (c.host_ip(i).to_string(), c.name(i).to_string()))
        .collect();
    let mut writers = vec![Writer::start(
        "haproxy",
        &through_proxy,
        TABLE,
        1,
        Duration::from_millis(20),
    )];
    for i in 0..c.len() {
        writers.push(Writer::start(
            c.name(i),
            &c.pg_config(i),
            TABLE,
            (i as i64 + 1) * 1_000_000_000,
            Duration::from_millis(100),
        ));
    }
    let reader = ReplicaReader::start(&c.pg_config_at(proxy.replica_port));
    wait_until(Duration::from_secs(30), "the workload to commit", || {
        (writers[0].acks().len() >= 20).then_some(())
    });

    let mut report = Vec::new();
    for fault in faults_to_run() {
        let old = wait_check(HEAL_TIMEOUT, "a whole cluster before the fault", || {
            whole(&c)
        });
        // HAProxy settled: the leader out of the reads pool. A member promoted less than
        // HAProxy's detection time ago (fall 3 x inter 3 s) still takes reads; if its agent
        // froze then, its PostgreSQL would go on serving them after a new primary wrote
        // (the long form found 5 s windows: see docs/reliability.md).
        wait_check(
            HEAL_TIMEOUT,
            "HAProxy to take the leader out of the reads pool",
            || match proxy.server_status("postgres_replicas", c.name(old))? {
                s if s.starts_with("DOWN") => Ok(()),
                other => Err(format!("postgres_replicas/{}: {other}", c.name(old))),
            },
        );
        if fault == Fault::LoseEtcdMember {
            // The member about to be killed leads etcd (set up before the clock starts).
            c.etcd().move_leader(2);
        }
        let acked_before = writers[0].acks().len();
        let started = Instant::now();
        let t0 = support::chaos::now_ms();
        eprintln!("[chaos] {fault:?} (leader {})", c.name(old));
        let ttl = c.ttl();
        let etcd_addrs: Vec<_> = etcd_hosts.iter().map(|h| h.addr()).collect();
        let etcd_sockets: Vec<std::net::SocketAddrV4> = c
            .etcd()
            .endpoints()
            .iter()
            .map(|e| {
                e.parse()
                    .unwrap_or_else(|err| panic!("etcd endpoint {e}: {err}"))
            })
            .collect();
        let sync_name = c.sync_standby(c.name(old)).expect("a sync standby");
        let sync = c
            .index_of(&sync_name)
            .expect("the sync standby is a member");
        let others: Vec<_> = (0..c.len())
            .filter(|&i| i != old)
            .map(|i| node_hosts[i].addr())
            .collect();
        let mut stopped_pid = None;
        let mut quorum_lost_at = None;
        match fault {
            Fault::KillLeader => c.kill_node(old),
            Fault::FreezeLeaderAgent => {
                let pid = c.agent_pid(old).expect("the leader's agent") as i32;
                signal(pid, nix::sys::signal::Signal::SIGSTOP);
                prove_stopped(pid);
                stopped_pid = Some(pid);
            }
            Fault::FreezeLeaderPostmaster => {
                let pid = c.postmaster_pid(old).expect("the leader's postmaster");
                signal(pid, nix::sys::signal::Signal::SIGSTOP);
                prove_stopped(pid);
                stopped_pid = Some(pid);
            }
            Fault::LoseEtcdMember => c.etcd_mut().stop_member(2),
            Fault::LoseEtcdQuorum => {
                c.etcd_mut().stop_member(1);
                c.etcd_mut().stop_member(2);
                quorum_lost_at = Some(support::chaos::now_ms());
                prove_members_refuse(&c, &[1, 2]);
            }
            Fault::LoseEtcdQuorumFailsafe => {
                set_failsafe(&c, true);
                // Every agent must run with failsafe mode on (GET /failsafe answers 502 while
                // it is off), not only the key list every member: the key outlives an earlier
                // failsafe fault, and an agent that has not seen the new /config yet demotes.
                wait_check(
                    Duration::from_secs(60),
                    "every agent in failsafe mode, /failsafe listing every member",
                    || {
                        let members = c.dcs_json("failsafe")?.unwrap_or_default();
                        let n = members.as_object().map_or(0, |m| m.len());
                        if n != c.len() {
                            return Err(format!("/failsafe = {members}"));
                        }
                        every_failsafe_answer(&c, 200)
                    },
                );
                c.etcd_mut().stop_member(1);
                c.etcd_mut().stop_member(2);
                prove_members_refuse(&c, &[1, 2]);
            }
            Fault::PartitionLeaderFromEtcd => {
                node_hosts[old].block(&etcd_addrs);
                prove_partition(&node_hosts[old], &etcd_sockets);
            }
            Fault::PartitionLeaderFromReplicas => {
                node_hosts[old].block(&others);
                let replicas: Vec<_> = (0..c.len())
                    .filter(|&i| i != old)
                    .map(|i| node_hosts[i].socket(c.pg_port(i)))
                    .collect();
                prove_partition(&node_hosts[old], &replicas);
            }
            Fault::PartitionSyncStandby => {
                let mut everyone = etcd_addrs.clone();
                everyone.extend(
                    (0..c.len())
                        .filter(|&i| i != sync)
                        .map(|i| node_hosts[i].addr()),
                );
                everyone.push(topology.root_addr());
                node_hosts[sync].block(&everyone);
                let mut targets = etcd_sockets.clone();
                targets.extend(
                    (0..c.len())
                        .filter(|&i| i != sync)
                        .map(|i| node_hosts[i].socket(c.pg_port(i))),
                );
                prove_partition(&node_hosts[sync], &targets);
            }
        }
        // What the fault must lead to, and the first write acknowledged after it.
        let first_write = match fault {
            f if f.fails_over() => {
                let new = wait_until(FAILOVER_TIMEOUT, "another member to lead", || {
                    c.leader_now().ok().filter(|&l| l != old)
                });
                let new_ip = c.host_ip(new).to_string();
                Some(wait_until(
                    FAILOVER_TIMEOUT,
                    "a write on the new leader",
                    || first_write_by(&writers[0], t0, Some(&new_ip)),
                ))
            }
            Fault::LoseEtcdQuorum => {
                wait_check(
                    FAILOVER_TIMEOUT,
                    "no writable primary (no lease), asked of every API and PostgreSQL",
                    || no_writable_primary(&c),
                );
                // The old leader renewed its lease at the latest when quorum went, so the
                // lease is gone a ttl later; it must have stopped acknowledging by then. The
                // 2 s margin covers a commit in flight at the deadline and the writer
                // thread's own timestamping.
                let lost_at = quorum_lost_at.expect("the quorum loss was timed");
                let deadline = lost_at + ttl.as_millis() + 2_000;
                while support::chaos::now_ms() <= deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let old_ip = c.host_ip(old).to_string();
                let late: Vec<(i64, u128)> = writers
                    .iter()
                    .flat_map(|w| w.acks())
                    .filter(|a| a.server == old_ip && a.at_ms > deadline)
                    .map(|a| (a.id, a.at_ms - lost_at))
                    .collect();
                assert!(
                    late.is_empty(),
                    "{} acknowledged commits past its lease deadline (ttl {} ms + 2 s after \
                     quorum went): (id, ms after quorum went) {late:?}",
                    c.name(old),
                    ttl.as_millis()
                );
                // Still nothing writable past the deadline, right before the heal.
                if let Err(e) = no_writable_primary(&c) {
                    panic!("past the lease deadline: {e}");
                }
                None
            }
            Fault::LoseEtcdQuorumFailsafe => {
                // Past any lease deadline the primary lives on the members' confirmations.
                let old_ip = c.host_ip(old).to_string();
                wait_until(FAILOVER_TIMEOUT, "a write two ttl into the outage", || {
                    first_write_by(&writers[0], t0 + 2 * ttl.as_millis(), Some(&old_ip))
                });
                assert_eq!(c.leader_now(), Ok(old), "failsafe keeps the same primary");
                None
            }
            _ => {
                wait_until(FAILOVER_TIMEOUT, "a write two ttl into the fault", || {
                    first_write_by(&writers[0], t0 + 2 * ttl.as_millis(), None)
                });
                assert_eq!(c.leader_now(), Ok(old), "{fault:?} changes no leader");
                None
            }
        };
        // Heal what the fault left.
        match fault {
            Fault::KillLeader => c.start_node(old),
            Fault::FreezeLeaderAgent => {
                // The old agent stays frozen until the new leader has served writes for a ttl.
                let served_from = t0 + first_write.unwrap_or_default() + ttl.as_millis();
                wait_until(
                    FAILOVER_TIMEOUT,
                    "the new leader to serve writes for a ttl",
                    || first_write_by(&writers[0], served_from, None),
                );
                if let Some(pid) = stopped_pid {
                    signal(pid, nix::sys::signal::Signal::SIGCONT);
                }
            }
            Fault::FreezeLeaderPostmaster => {
                if let Some(pid) = stopped_pid {
                    // Killed by its agent by now; a SIGCONT to a gone pid is harmless.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGCONT,
                    );
                }
            }
            Fault::LoseEtcdMember => c.etcd_mut().start_member(2),
            Fault::LoseEtcdQuorum | Fault::LoseEtcdQuorumFailsafe => {
                c.etcd_mut().start_member(1);
                c.etcd_mut().start_member(2);
                if fault == Fault::LoseEtcdQuorumFailsafe {
                    set_failsafe(&c, false);
                    // The next fault may need failsafe off everywhere (a quorum loss that must
                    // stop the primary).
                    wait_check(HEAL_TIMEOUT, "every agent out of failsafe mode", || {
                        every_failsafe_answer(&c, 502)
                    });
                }
            }
            Fault::PartitionLeaderFromEtcd | Fault::PartitionLeaderFromReplicas => {
                node_hosts[old].heal()
            }
            Fault::PartitionSyncStandby => node_hosts[sync].heal(),
        }
        let leader = wait_check(HEAL_TIMEOUT, "the cluster to heal", || whole(&c));
        let heal_ms = started.elapsed().as_millis();
        // The workload is alive: every writer thread still runs, and both the HAProxy writer
        // and the new leader's direct client are acknowledged after the heal (a client that
        // fails every statement would otherwise pass as the worst-case client, unseen).
        for w in &writers {
            w.assert_running();
        }
        let healed_at = support::chaos::now_ms();
        for w in [&writers[0], &writers[1 + leader]] {
            wait_until(
                FAILOVER_TIMEOUT,
                &format!("writer {} acknowledged after the heal", w.label),
                || first_write_by(w, healed_at, None),
            );
        }
        // The acknowledgements first, then the rows: a commit acknowledged between the
        // two reads would otherwise look lost.
        let acks = all_acks(&writers);
        let present = ids_on(&c, leader).expect("ids on the leader");
        let lost: Vec<i64> = acks
            .iter()
            .map(|a| a.id)
            .filter(|id| !present.contains(id))
            .collect();
        assert!(
            lost.is_empty(),
            "{fault:?}: acknowledged ids missing on the primary {}: {:?}",
            c.name(leader),
            &lost[..lost.len().min(20)]
        );
        let stall_ms = longest_stall(&writers[0].acks(), t0, support::chaos::now_ms());
        if let Some(bound) = fault.stall_bound() {
            assert!(
                stall_ms <= bound.as_millis(),
                "{fault:?}: writes through HAProxy stalled {stall_ms} ms, more than the {} ms \
                 its timing allows (ttl {TTL} s, loop_wait {LOOP_WAIT} s, retry_timeout \
                 {RETRY_TIMEOUT} s, HAProxy inter {HAPROXY_INTER} s fall {HAPROXY_FALL} rise \
                 {HAPROXY_RISE})",
                bound.as_millis()
            );
        }
        report.push(Row {
            fault,
            stall_ms,
            acked: writers[0].acks().len() - acked_before,
            lost: lost.len(),
            first_write_ms: first_write,
            heal_ms,
        });
    }

    for w in writers.iter_mut() {
        w.stop(Duration::from_secs(5));
    }
    let histories: Vec<RoleLine> = (0..c.len())
        .flat_map(|i| read_role_history(&c.node_dir(i).join("role-history.jsonl")))
        .collect();
    assert!(
        histories.iter().any(|l| l.postgres == "primary"),
        "the role histories record primaries"
    );
    let (reads, primary_reads) = reader.report();
    assert!(reads > 0, "the reader read nothing");
    let mut served = all_acks(&writers);
    served.extend(primary_reads.iter().cloned());
    let overlaps = interleaved_terms(&served, &histories, &names);
    assert!(
        overlaps.is_empty(),
        "two terms served clients at once (id -1: a read on the replica port): {overlaps:#?}"
    );
    for w in &writers {
        assert!(
            w.unsafe_commits().is_empty(),
            "{}: commits with a warning: {:?}",
            w.label,
            w.unsafe_commits()
        );
    }

    print_report(&report, overlaps.len());
    for w in &writers {
        eprintln!(
            "[chaos] writer {}: {} acknowledged, errors by kind {:?}",
            w.label,
            w.acks().len(),
            w.errors()
        );
    }
    eprintln!(
        "[chaos] watchdog: the run is in synchronous mode, where a frozen agent's PostgreSQL cannot acknowledge once its synchronous standby is promoted. In asynchronous mode only a watchdog resetting the frozen host stops it acknowledging next to the new primary; this machine has no watchdog device, so that case is not run (docs/reliability.md)"
    );
    eprintln!(
        "stale direct clients acknowledged {} rows; the replica port served {reads} reads, {} of them by a member just promoted (before HAProxy's checks caught up), none by an old primary",
        writers[1..].iter().map(|w| w.acks().len()).sum::<usize>(),
        primary_reads.len()
    );
    drop(proxy);
    drop(c);
    drop(topology);
}

/// The checker itself: interleaved acknowledgements of two terms are found, a clean
/// handover is not, and a node that leads again on a new timeline is a new term.
#[test]
fn the_interleaving_checker_finds_two_terms_serving_at_once() {
    let line = |ts_ms: u128, node: &str, timeline: u32| RoleLine {
        ts_ms,
        node: node.into(),
        state: "primary".into(),
        postgres: "primary".into(),
        holds_leader_key: true,
        lease: None,
        leader_revision: None,
        timeline: Some(timeline),
        pg_action: None,
    };
    let history = vec![line(0, "a", 1), line(1_000, "b", 2), line(5_000, "a", 3)];
    let names: BTreeMap<String, String> = [("10.0.0.1", "a"), ("10.0.0.2", "b")]
        .into_iter()
        .map(|(ip, n)| (ip.to_string(), n.to_string()))
        .collect();
    let ack = |id: i64, at_ms: u128, server: &str| Ack {
        id,
        at_ms,
        server: server.into(),
    };
    let clean = [
        ack(1, 100, "10.0.0.1"),
        ack(2, 900, "10.0.0.1"),
        ack(3, 1_100, "10.0.0.2"),
        ack(4, 4_000, "10.0.0.2"),
        // a leads again, on timeline 3: a new term.
        ack(5, 5_100, "10.0.0.1"),
    ];
    assert!(interleaved_terms(&clean, &history, &names).is_empty());
    let split = [
        ack(1, 100, "10.0.0.1"),
        ack(2, 1_100, "10.0.0.2"),
        ack(3, 1_200, "10.0.0.1"),
    ];
    let found = interleaved_terms(&split, &history, &names);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("id 3"), "{found:?}");
}
