//! Scenario tests of the pure core: feed inputs with a fabricated clock, read the effects.

use std::time::Duration;

use pgwarden::config::{DynamicConfig, WatchdogMode};
use pgwarden::core::restart::{RestartConditions, RestartRole};
use pgwarden::core::view::{
    ClusterView, ControlState, DataDir, FailoverRequest, HistoryEntry, LeaderKey, MemberInfo,
    PeerReport, PeerStatus, PgObservation, ReplicationPeer, ServerObservation, SyncState,
    Versioned,
};
use pgwarden::core::{
    decide_with_default, ArmReport, Callback, CallbackKind, CallbackRole, DemoteMode, Effect,
    Input, Instant, LeaseId, Lsn, Node, NodeSettings, PgAction, PgActionOutcome, PolicyAnswer,
    Revision, Timeline, Upstream, WatchdogSettings,
};

const ME: &str = "node2";
const LEASE: LeaseId = LeaseId(0x42);

fn settings(failover_priority: i64) -> NodeSettings {
    let config = DynamicConfig {
        ttl: 6,
        loop_wait: 1,
        retry_timeout: 2,
        ..DynamicConfig::default()
    };
    NodeSettings {
        name: ME.into(),
        watchdog: WatchdogSettings::default(),
        failover_priority,
        use_pg_rewind: None,
        remove_data_directory_on_rewind_failure: false,
        remove_data_directory_on_diverged_timelines: false,
        demotion_margin: Duration::from_secs(1),
        unresponsive_primary_timeout: Duration::from_secs(5),
        tags: Default::default(),
        bootstrap_config: config,
        policy_params: Default::default(),
        custom_bootstrap_method: None,
    }
}

fn member(name: &str) -> MemberInfo {
    MemberInfo {
        name: name.into(),
        conn_url: format!("postgres://127.0.0.1:{}/postgres", 5430 + name.len()),
        api_url: format!("http://127.0.0.1:8008/{name}/patroni"),
        state: "running".into(),
        role: "replica".into(),
        ..MemberInfo::default()
    }
}

fn view(leader: Option<(&str, i64)>, optime: u64, revision: i64) -> ClusterView {
    let mut v = ClusterView {
        revision: Revision(revision),
        initialize: Some("7300".into()),
        optime: Some(Lsn(optime)),
        ..ClusterView::default()
    };
    for name in ["node1", "node2", "node3"] {
        v.members.insert(name.into(), member(name));
    }
    v.leader = leader.map(|(name, lease)| LeaderKey {
        name: name.into(),
        lease,
        create_revision: Revision(5),
    });
    v
}

fn server(in_recovery: bool, lsn: u64) -> ServerObservation {
    ServerObservation {
        in_recovery,
        timeline: Timeline(1),
        wal_position: Lsn(lsn),
        received: in_recovery.then_some(Lsn(lsn)),
        replayed: in_recovery.then_some(Lsn(lsn)),
        replayed_timestamp: None,
        receiver_status: in_recovery.then(|| "streaming".to_string()),
        receiver_upstream: None,
        replication: Vec::new(),
        synchronous_standby_names: String::new(),
        slots: vec!["node1".into(), "node3".into()],
        server_version: 150000,
        postmaster_start_time: None,
        pending_restart: Vec::new(),
        replay_paused: false,
    }
}

fn pg(in_recovery: bool, lsn: u64) -> PgObservation {
    PgObservation {
        data_dir: DataDir::Initialized {
            sysid: "7300".into(),
            state: if in_recovery {
                ControlState::InArchiveRecovery
            } else {
                ControlState::InProduction
            },
            timeline: Timeline(1),
            standby_signal: in_recovery,
        },
        postmaster_alive: true,
        server: Some(server(in_recovery, lsn)),
        silent: false,
    }
}

thread_local! {
    /// Every transition the scenarios made on this thread: (from, event, to, why code).
    /// The state-machine table (`tests/sim/table.rs`) runs [`SCENARIOS`] and reads it.
    static RECORDED: std::cell::RefCell<std::collections::BTreeSet<(&'static str, String, &'static str, &'static str)>> =
        Default::default();
}

/// The node's transitions since the last look, also kept in [`RECORDED`].
fn transitions(node: &mut Node) -> Vec<pgwarden::core::why::TransitionRecord> {
    let made = node.take_transitions();
    RECORDED.with(|r| {
        r.borrow_mut().extend(
            made.iter()
                .map(|t| (t.from, t.event.clone(), t.to, t.why.code())),
        );
    });
    made
}

/// Moves the node's transitions into [`RECORDED`].
fn record(node: &mut Node) {
    let made = node.take_transitions();
    RECORDED.with(|r| {
        r.borrow_mut().extend(
            made.into_iter()
                .map(|t| (t.from, t.event, t.to, t.why.code())),
        );
    });
}

/// The transitions recorded on this thread so far.
#[allow(dead_code)] // read by the simulation binary, which includes this file
pub fn recorded() -> std::collections::BTreeSet<(&'static str, String, &'static str, &'static str)>
{
    RECORDED.with(|r| r.borrow().clone())
}

/// Effects, with every policy call answered at once by the native default policy (the
/// answers' own effects included).
fn drain(node: &mut Node) -> Vec<Effect> {
    record(node);
    let mut effects = Vec::new();
    while let Some(effect) = node.poll_effect() {
        match effect {
            Effect::ConsultPolicy(call) => {
                let now = node.status().now;
                node.handle_input(now, Input::PolicyDecided(decide_with_default(&call)));
            }
            other => effects.push(other),
        }
    }
    record(node);
    effects
}

/// The sequence number of the one `/sync` write among `effects`.
fn sync_write_seq(effects: &[Effect]) -> u64 {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::WriteSync { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no /sync write among {effects:?}"))
}

/// Effects as emitted, policy calls included and unanswered.
fn drain_raw(node: &mut Node) -> Vec<Effect> {
    record(node);
    std::iter::from_fn(|| node.poll_effect()).collect()
}

/// A node that has a lease and sees a running replica following `node1`.
fn running_replica(failover_priority: i64, my_lsn: u64, optime: u64) -> (Node, u64) {
    running_replica_with(settings(failover_priority), my_lsn, optime)
}

/// [`running_replica`] with the given settings.
fn running_replica_with(settings: NodeSettings, my_lsn: u64, optime: u64) -> (Node, u64) {
    let mut node = Node::new(settings, Instant(0));
    let mut t = 0;
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node1", 7)), optime, 10))),
    );
    let effects = drain(&mut node);
    assert!(effects.contains(&Effect::ProbePostgres));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::GrantLease { ttl_secs: 6 })));
    node.handle_input(
        Instant(t),
        Input::LeaseGranted {
            lease: LEASE,
            ttl_secs: 6,
            sent_at: Instant(t),
        },
    );
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, my_lsn)));
    let effects = drain(&mut node);
    assert_eq!(node.state(), "replica");
    assert!(effects.iter().any(
        |e| matches!(e, Effect::Pg(PgAction::Follow { upstream }) if upstream.name == "node1")
    ));
    node.handle_input(
        Instant(t),
        Input::PgActionFinished {
            action: effects
                .iter()
                .find_map(|e| match e {
                    Effect::Pg(a) => Some(a.clone()),
                    _ => None,
                })
                .expect("follow"),
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    // The finished action triggers a fresh probe before the next decision.
    assert!(drain(&mut node).contains(&Effect::ProbePostgres));
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, my_lsn)));
    let effects = drain(&mut node);
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Pg(_))),
        "already following: {effects:?}"
    );
    t += 10;
    (node, t)
}

/// The leader key disappears; returns the effects of the cycle that follows.
fn leader_key_deleted(node: &mut Node, t: u64, my_lsn: u64, optime: u64) -> Vec<Effect> {
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(view(None, optime, 20))),
    );
    let mut effects = drain(node);
    assert!(
        effects.contains(&Effect::ProbePostgres),
        "a vanished leader key starts a cycle at once"
    );
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, my_lsn)));
    effects.extend(drain(node));
    effects
}

#[test]
fn healthiest_replica_races_when_the_leader_key_is_deleted() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let effects = leader_key_deleted(&mut node, t, 1000, 1000);
    let probe = effects.iter().find_map(|e| match e {
        Effect::ProbePeers { members } => Some(members.clone()),
        _ => None,
    });
    let members = probe.expect("probes peers before racing");
    assert_eq!(members.len(), 2);
    assert_eq!(node.state(), "candidate");
    // Peers are behind (or unreachable): acquire the key.
    node.handle_input(
        Instant(t),
        Input::PeersProbed(vec![
            PeerReport {
                name: "node1".into(),
                status: None,
            },
            PeerReport {
                name: "node3".into(),
                status: Some(PeerStatus {
                    role: "replica".into(),
                    state: "running".into(),
                    wal_position: Some(Lsn(900)),
                    timeline: Some(Timeline(1)),
                    failover_priority: 1,
                    can_lead: true,
                    probe_revision: Some(Revision(1_000)),
                }),
            },
        ]),
    );
    let effects = drain(&mut node);
    assert_eq!(effects, vec![Effect::AcquireLeader { lease: LEASE }]);
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    assert!(promotes_with(&effects, LEASE, 21, None), "{effects:?}");
}

#[test]
fn a_more_advanced_peer_wins_the_race() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    leader_key_deleted(&mut node, t, 1000, 1000);
    node.handle_input(
        Instant(t),
        Input::PeersProbed(vec![PeerReport {
            name: "node3".into(),
            status: Some(PeerStatus {
                role: "replica".into(),
                state: "running".into(),
                wal_position: Some(Lsn(1200)),
                timeline: Some(Timeline(1)),
                failover_priority: 1,
                can_lead: true,
                probe_revision: Some(Revision(1_000)),
            }),
        }]),
    );
    let effects = drain(&mut node);
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::AcquireLeader { .. })));
    assert_eq!(node.state(), "replica");
}

#[test]
fn replica_lagging_beyond_maximum_lag_on_failover_does_not_race() {
    let lag = 2 * 1024 * 1024; // default maximum_lag_on_failover is 1 MiB
    let (mut node, t) = running_replica(1, 1000, 1000 + lag);
    let effects = leader_key_deleted(&mut node, t, 1000, 1000 + lag);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. } | Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
    assert!(node
        .status()
        .last_race_refusal
        .unwrap_or_default()
        .contains("maximum_lag_on_failover"));
}

#[test]
fn nofailover_never_races() {
    let (mut node, t) = running_replica(0, 1000, 1000);
    for i in 0..5 {
        let effects = leader_key_deleted(&mut node, t + i * 2000, 1000, 1000);
        assert!(!effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. } | Effect::AcquireLeader { .. })));
    }
    assert_eq!(node.state(), "replica");
}

/// `nofailover` set in the local file and reloaded (`patronictl reload`, SIGHUP) takes
/// effect at once: the standby no longer races, and its member key says so.
#[test]
fn a_reloaded_nofailover_tag_keeps_the_standby_out_of_the_race() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let mut reloaded = settings(1).reloadable();
    reloaded.failover_priority = 0;
    reloaded
        .tags
        .insert("nofailover".into(), serde_json::Value::Bool(true));
    let effects = step_with_probe(
        &mut node,
        t,
        Input::LocalConfigReloaded { settings: reloaded },
        pg(true, 1000),
    );
    assert_eq!(
        pg_actions(&effects),
        vec![PgAction::Reload { primary: false }]
    );
    finish_actions(&mut node, t, &effects);
    // The finished reload asked for a fresh probe.
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    drain(&mut node);
    assert_eq!(
        node.status().tags.get("nofailover"),
        Some(&serde_json::Value::Bool(true))
    );
    for i in 0..3 {
        let effects = leader_key_deleted(&mut node, t + 1_000 + i * 2000, 1000, 1000);
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::ProbePeers { .. } | Effect::AcquireLeader { .. })),
            "{effects:?}"
        );
    }
    assert_eq!(node.state(), "replica");
}

/// `nostream`: the standby is pointed at the leader without streaming from it (Patroni
/// follows nobody: archive and pg_wal only), the tag reloaded off makes it stream, and the
/// leader keeps no slot for a member tagged so.
#[test]
fn a_nostream_member_never_streams_and_the_leader_keeps_no_slot_for_it() {
    let mut quiet = settings(1);
    quiet
        .tags
        .insert("nostream".into(), serde_json::Value::Bool(true));
    let mut node = node_with_lease(quiet.clone(), view(Some(("node1", 7)), 1000, 10));
    node.handle_input(Instant(0), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    let follow = pg_actions(&effects);
    assert!(
        matches!(follow.as_slice(), [PgAction::Follow { upstream }] if upstream.name == "node1" && !upstream.stream),
        "{effects:?}"
    );
    finish_actions(&mut node, 0, &effects);
    node.handle_input(Instant(0), Input::PostgresProbed(pg(true, 1000)));
    assert!(
        pg_actions(&drain(&mut node)).is_empty(),
        "already configured"
    );

    let mut reloaded = quiet.reloadable();
    reloaded.tags.remove("nostream");
    let mut t = 10;
    let mut followed = Vec::new();
    for input in [
        Input::LocalConfigReloaded { settings: reloaded },
        Input::Tick,
        Input::Tick,
    ] {
        let effects = step_with_probe(&mut node, t, input, pg(true, 1000));
        followed.extend(pg_actions(&effects));
        finish_actions(&mut node, t, &effects);
        t += 1000;
    }
    assert!(
        followed
            .iter()
            .any(|a| matches!(a, PgAction::Follow { upstream } if upstream.stream)),
        "the tag lifted, it streams: {followed:?}"
    );

    // The leader's slots: node1 gets one, node3 (nostream) none.
    let mut leader = primary();
    let mut v = view(Some((ME, LEASE.0)), 0, 12);
    v.members.get_mut(ME).expect("me").role = "primary".into();
    v.members
        .get_mut("node3")
        .expect("node3")
        .tags
        .insert("nostream".into(), serde_json::Value::Bool(true));
    leader.handle_input(Instant(600), Input::ClusterChanged(std::sync::Arc::new(v)));
    let mut observed = pg(false, 2000);
    observed.server.as_mut().expect("server").slots.clear();
    let effects = step_with_probe(&mut leader, 600, Input::Tick, observed);
    assert!(
        pg_actions(&effects).contains(&PgAction::EnsureSlots {
            names: vec!["node1".into()]
        }),
        "{effects:?}"
    );
}

/// A leaderless view in synchronous mode (ttl 6, loop_wait 1) whose `/sync`, when
/// `recorded` is given, was written by `node1` with these standbys at this revision.
fn sync_mode_view(recorded: Option<(&[&str], i64)>) -> ClusterView {
    let mut v = view(None, 1000, 20);
    v.config = Some(Versioned {
        value: DynamicConfig {
            synchronous_mode: pgwarden::config::SynchronousMode::On,
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            ..DynamicConfig::default()
        },
        mod_revision: Revision(2),
    });
    v.sync = recorded.map(|(standbys, mod_revision)| Versioned {
        value: SyncState {
            leader: Some("node1".into()),
            sync_standby: standbys.iter().map(|s| s.to_string()).collect(),
            quorum: 0,
        },
        mod_revision: Revision(mod_revision),
    });
    v
}

#[test]
fn synchronous_mode_only_lets_sync_members_race() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let v = sync_mode_view(Some((&["node3"], 3)));
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    assert!(node
        .status()
        .last_race_refusal
        .unwrap_or_default()
        .contains("not-in-sync-set"));
}

/// A node that bootstrapped the cluster and runs as primary holding the key.
fn primary() -> Node {
    let mut node = Node::new(settings(1), Instant(0));
    let mut v = view(None, 0, 1);
    v.initialize = None;
    node.handle_input(Instant(0), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    node.handle_input(
        Instant(0),
        Input::LeaseGranted {
            lease: LEASE,
            ttl_secs: 6,
            sent_at: Instant(0),
        },
    );
    node.handle_input(
        Instant(0),
        Input::PostgresProbed(PgObservation {
            data_dir: DataDir::Empty,
            postmaster_alive: false,
            server: None,
            silent: false,
        }),
    );
    let effects = drain(&mut node);
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::RaceInitialize, Effect::TouchMember { lease, .. }] if *lease == LEASE
        ),
        "{effects:?}"
    );
    node.handle_input(Instant(10), Input::InitializeRaced { won: true });
    assert_eq!(drain(&mut node), vec![Effect::Pg(PgAction::Bootstrap)]);
    node.handle_input(
        Instant(500),
        Input::PgActionFinished {
            action: PgAction::Bootstrap,
            outcome: PgActionOutcome::Done {
                sysid: Some("7300".into()),
            },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::AcquireLeader { lease: LEASE }),
        "{effects:?}"
    );
    node.handle_input(
        Instant(510),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(8),
            create_revision: Revision(8),
        },
    );
    let effects = drain(&mut node);
    assert!(effects.contains(&Effect::WriteInitialize {
        sysid: "7300".into()
    }));
    assert_eq!(node.state(), "primary");
    let mut v = view(Some((ME, LEASE.0)), 0, 9);
    v.members.get_mut(ME).expect("me").role = "primary".into();
    node.handle_input(Instant(520), Input::ClusterChanged(std::sync::Arc::new(v)));
    assert!(node.status().holds_leader_key);
    node
}

/// A starting node that has seen `view` and holds a granted lease (nothing probed yet).
fn node_with_lease(settings: NodeSettings, v: ClusterView) -> Node {
    let mut node = Node::new(settings, Instant(0));
    node.handle_input(Instant(0), Input::ClusterChanged(std::sync::Arc::new(v)));
    node.handle_input(
        Instant(0),
        Input::LeaseGranted {
            lease: LEASE,
            ttl_secs: 6,
            sent_at: Instant(0),
        },
    );
    drain(&mut node);
    node
}

fn probe_empty(node: &mut Node, at: u64) -> Vec<Effect> {
    node.handle_input(
        Instant(at),
        Input::PostgresProbed(PgObservation {
            data_dir: DataDir::Empty,
            postmaster_alive: false,
            server: None,
            silent: false,
        }),
    );
    drain(node)
}

/// `bootstrap.method` other than initdb: the node never races to bootstrap (it would create
/// an empty cluster in place of the clone or restore asked for); it waits for a leader.
#[test]
fn a_custom_bootstrap_method_never_bootstraps() {
    let mut v = view(None, 0, 1);
    v.initialize = None;
    let custom = NodeSettings {
        custom_bootstrap_method: Some("clone_with_wale".into()),
        ..settings(1)
    };
    let mut node = node_with_lease(custom, v.clone());
    for at in [1_000, 2_000, 3_000] {
        let effects = probe_empty(&mut node, at);
        assert!(!effects.contains(&Effect::RaceInitialize), "{effects:?}");
    }
    assert_eq!(node.state(), "starting");
    // The same node with initdb races.
    let mut node = node_with_lease(settings(1), v);
    assert!(probe_empty(&mut node, 1_000).contains(&Effect::RaceInitialize));
}

/// An `initialize` key left empty by a bootstrap that died half-way (no leader, no member
/// "initializing new cluster") is deleted, at its revision, once seen for a whole ttl; one
/// with a member still bootstrapping is left alone.
#[test]
fn an_orphaned_initialize_key_is_cleared_after_ttl() {
    let mut v = view(None, 0, 1);
    v.initialize = Some(String::new());
    v.initialize_revision = Revision(3);
    let clears = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::ClearStaleInitialize { mod_revision, .. } => Some(*mod_revision),
            _ => None,
        })
    };
    let mut node = node_with_lease(settings(1), v.clone());
    assert_eq!(clears(&probe_empty(&mut node, 1_000)), None);
    assert_eq!(
        clears(&probe_empty(&mut node, 6_999)),
        None,
        "ttl 6 s not over"
    );
    assert_eq!(clears(&probe_empty(&mut node, 7_000)), Some(Revision(3)));

    let mut busy = v;
    busy.members.get_mut("node1").expect("node1").state =
        pgwarden::core::initialize::BOOTSTRAPPING_STATE.into();
    let mut node = node_with_lease(settings(1), busy);
    for at in [1_000, 7_000, 60_000] {
        assert_eq!(
            clears(&probe_empty(&mut node, at)),
            None,
            "node1 is bootstrapping"
        );
    }
}

#[test]
fn primary_demotes_when_its_lease_cannot_be_renewed_before_the_deadline() {
    let mut node = primary();
    drain(&mut node);
    // Renewals keep failing (etcd unreachable). ttl 6 s, margin 1 s: deadline at 5 s.
    node.handle_input(
        Instant(1_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "unavailable".into(),
        },
    );
    assert_eq!(node.state(), "primary");
    let deadline = node.status().lease_deadline.expect("deadline");
    assert_eq!(deadline, Instant(5_000));
    // retry_timeout (2 s) before the deadline: a clean stop while the lease still holds,
    // and a wake-up asked for that moment.
    assert!(node.poll_timeout().is_some_and(|t| t <= Instant(3_000)));
    node.handle_input(Instant(2_999), Input::Tick);
    assert_eq!(demotes(&drain(&mut node)), None);
    node.handle_input(Instant(3_000), Input::Tick);
    assert_eq!(demotes(&drain(&mut node)), Some(DemoteMode::Offline));
    assert_eq!(node.state(), "demoting");
    // The fast stop hangs: at the deadline PostgreSQL is killed.
    assert!(node.poll_timeout().is_some_and(|t| t <= deadline));
    node.handle_input(Instant(4_999), Input::Tick);
    assert_eq!(demotes(&drain(&mut node)), None);
    node.handle_input(deadline, Input::Tick);
    assert_eq!(
        demotes(&drain(&mut node)),
        Some(DemoteMode::ImmediateNolock)
    );
    // The overtaken fast stop reports first: the kill decides.
    node.handle_input(
        Instant(5_100),
        Input::PgActionFinished {
            action: PgAction::Demote {
                mode: DemoteMode::Offline,
            },
            outcome: PgActionOutcome::Failed {
                error: "pg_ctl stop: server died".into(),
            },
        },
    );
    assert_eq!(node.state(), "demoting");
    node.handle_input(
        Instant(5_200),
        Input::PgActionFinished {
            action: PgAction::Demote {
                mode: DemoteMode::ImmediateNolock,
            },
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    assert_eq!(node.state(), "starting");
}

#[test]
fn a_clean_offline_stop_releases_the_key_and_never_restarts_as_primary_meanwhile() {
    let mut node = primary();
    drain(&mut node);
    node.handle_input(
        Instant(1_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "unavailable".into(),
        },
    );
    node.handle_input(Instant(3_000), Input::Tick);
    assert_eq!(demotes(&drain(&mut node)), Some(DemoteMode::Offline));
    node.handle_input(
        Instant(3_500),
        Input::PgActionFinished {
            action: PgAction::Demote {
                mode: DemoteMode::Offline,
            },
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "the key is given up once PostgreSQL is down: {effects:?}"
    );
    assert_eq!(node.state(), "starting");
    // PostgreSQL is down, the stale view still names us: nothing starts it as a primary.
    let stopped = primary_shut_down();
    for t in [4_000, 4_600, 5_200] {
        let effects = cycle(&mut node, t, stopped.clone());
        assert!(
            !effects.iter().any(|e| matches!(
                e,
                Effect::Pg(PgAction::StartPrimary { .. } | PgAction::Promote { .. })
            )),
            "at {t}: {effects:?}"
        );
    }
}

#[test]
fn primary_demotes_at_once_when_the_lease_is_lost() {
    let mut node = primary();
    drain(&mut node);
    node.handle_input(
        Instant(1_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: true,
            error: "lease not found".into(),
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock
        })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "demoting");
}

/// `view` with maintenance mode on (`pause: true` in `/config`, the test timing).
fn paused(v: ClusterView) -> ClusterView {
    with_pause(v, true)
}

/// `view` with a `/config` (the test timing) that says `pause`.
fn with_pause(mut v: ClusterView, pause: bool) -> ClusterView {
    v.config = Some(Versioned {
        value: DynamicConfig {
            pause,
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            ..DynamicConfig::default()
        },
        mod_revision: Revision(3),
    });
    v
}

/// The bootstrapped primary of `primary()`, paused.
fn paused_primary() -> Node {
    let mut node = primary();
    let mut v = paused(view(Some((ME, LEASE.0)), 0, 10));
    v.members.get_mut(ME).expect("me").role = "primary".into();
    node.handle_input(Instant(600), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    assert!(node.status().config.pause);
    node
}

/// Maintenance mode is for etcd maintenance among other things: a paused primary whose
/// lease cannot be renewed, even one etcd says is gone, keeps running (Patroni too), and
/// the deadline it no longer acts on does not turn into a busy loop.
#[test]
fn a_paused_primary_is_never_demoted_by_the_agent() {
    let mut node = paused_primary();
    node.handle_input(
        Instant(1_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "unavailable".into(),
        },
    );
    for at in [3_000, 5_000, 8_000] {
        node.handle_input(Instant(at), Input::Tick);
        node.handle_input(Instant(at), Input::PostgresProbed(pg(false, 1000)));
        let effects = drain(&mut node);
        assert_eq!(demotes(&effects), None, "at {at} ms: {effects:?}");
        assert_eq!(node.state(), "primary");
        assert!(
            node.poll_timeout().is_some_and(|t| t > Instant(at)),
            "a past deadline must not wake the node at once: {:?}",
            node.timers()
        );
    }
    node.handle_input(
        Instant(9_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: true,
            error: "lease not found".into(),
        },
    );
    node.handle_input(Instant(9_000), Input::PostgresProbed(pg(false, 1000)));
    let effects = drain(&mut node);
    assert_eq!(demotes(&effects), None, "{effects:?}");
    assert_eq!(node.state(), "primary");
    // etcd is back, the key expired with the lease: the view shows no leader. The primary
    // is not demoted for the lost key; with a new lease it takes the free key back.
    node.handle_input(
        Instant(9_500),
        Input::ClusterChanged(std::sync::Arc::new(paused(view(None, 1000, 30)))),
    );
    let effects = drain(&mut node);
    assert_eq!(demotes(&effects), None, "{effects:?}");
    node.handle_input(
        Instant(9_600),
        Input::LeaseGranted {
            lease: LeaseId(0x43),
            ttl_secs: 6,
            sent_at: Instant(9_600),
        },
    );
    node.handle_input(Instant(10_700), Input::Tick);
    node.handle_input(Instant(10_700), Input::PostgresProbed(pg(false, 1000)));
    let effects = drain(&mut node);
    assert_eq!(demotes(&effects), None, "{effects:?}");
    assert!(
        effects.contains(&Effect::AcquireLeader {
            lease: LeaseId(0x43)
        }),
        "a paused running primary takes the free key: {effects:?}"
    );
    assert_eq!(node.state(), "primary");
}

/// Maintenance mode switched on while a standby's race was on: the key it just won is
/// given back and nothing is promoted.
#[test]
fn a_race_under_way_when_the_pause_comes_promotes_nothing() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let effects = leader_key_deleted(&mut node, t, 1000, 1000);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    assert_eq!(
        drain(&mut node),
        vec![Effect::AcquireLeader { lease: LEASE }]
    );
    node.handle_input(
        Instant(t + 5),
        Input::ClusterChanged(std::sync::Arc::new(paused(view(None, 1000, 21)))),
    );
    drain(&mut node);
    node.handle_input(
        Instant(t + 10),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(22),
            create_revision: Revision(22),
        },
    );
    let effects = drain(&mut node);
    assert!(!promotes(&effects), "promoted while paused: {effects:?}");
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ArmWatchdog { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
}

/// Paused: a free leader key is not raced for by a standby, and a leader whose PostgreSQL
/// stopped gives the key up and starts nothing; both come back on resume.
#[test]
fn paused_standbys_do_not_race_and_a_paused_leader_down_starts_nothing() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(paused(view(None, 1000, 20)))),
    );
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. } | Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
    assert_eq!(
        node.status().last_race_refusal.as_deref(),
        Some("maintenance mode: no automatic failover")
    );
    // Resumed: the same standby races at once.
    node.handle_input(
        Instant(t + 10),
        Input::ClusterChanged(std::sync::Arc::new(with_pause(view(None, 1000, 21), false))),
    );
    drain(&mut node);
    node.handle_input(Instant(t + 10), Input::PostgresProbed(pg(true, 1000)));
    assert!(drain(&mut node)
        .iter()
        .any(|e| matches!(e, Effect::ProbePeers { .. })));

    let mut leader = paused_primary();
    let mut down = pg(false, 1000);
    down.postmaster_alive = false;
    down.server = None;
    leader.handle_input(Instant(1_000), Input::Tick);
    leader.handle_input(Instant(1_000), Input::PostgresProbed(down.clone()));
    let effects = drain(&mut leader);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(leader.state(), "starting");
    for at in [2_000, 3_000, 4_000] {
        leader.handle_input(Instant(at), Input::Tick);
        leader.handle_input(Instant(at), Input::PostgresProbed(down.clone()));
        let effects = drain(&mut leader);
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Pg(_))),
            "paused: PostgreSQL is the operator's: {effects:?}"
        );
    }

    // A paused leader whose PostgreSQL an operator restarted as a standby is no leader.
    let mut leader = paused_primary();
    leader.handle_input(Instant(1_000), Input::Tick);
    leader.handle_input(Instant(1_000), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut leader);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Pg(_))),
        "{effects:?}"
    );
    assert_eq!(leader.state(), "replica");
}

#[test]
fn primary_demotes_when_another_member_holds_the_key() {
    let mut node = primary();
    drain(&mut node);
    node.handle_input(
        Instant(1_000),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node3", 99)), 0, 30))),
    );
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock
        })),
        "{effects:?}"
    );
}

#[test]
fn renewals_move_the_deadline_forward() {
    let mut node = primary();
    drain(&mut node);
    node.handle_input(
        Instant(2_000),
        Input::LeaseRenewed {
            lease: LEASE,
            sent_at: Instant(1_900),
        },
    );
    assert_eq!(node.status().lease_deadline, Some(Instant(6_900)));
    node.handle_input(Instant(5_500), Input::Tick);
    assert_eq!(node.state(), "primary");
}

/// A runtime `/config` whose lease budget (ttl − margin > loop_wait + retry_timeout) is
/// broken gets `loop_wait` lowered, as Patroni lowers it for its own rule; one that no
/// `loop_wait` can fix is rejected and the last good configuration kept.
#[test]
fn a_runtime_config_that_breaks_the_lease_budget_is_adjusted_or_rejected() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    // Valid for Patroni's rule (2 + 2*1 <= 4) but ttl − 1 s margin is not > loop_wait + retry_timeout.
    let risky = DynamicConfig {
        ttl: 4,
        loop_wait: 2,
        retry_timeout: 1,
        ..DynamicConfig::default()
    };
    let mut v = view(Some(("node1", 7)), 1000, 30);
    v.config = Some(Versioned {
        value: risky,
        mod_revision: Revision(30),
    });
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(v.clone())),
    );
    let config = node.status().config;
    assert_eq!(
        (config.ttl, config.loop_wait, config.retry_timeout),
        (4, 1, 1),
        "loop_wait lowered to fit"
    );

    // With a 2.5 s margin even loop_wait 1 leaves no room at ttl 4: rejected.
    let wide_margin = NodeSettings {
        demotion_margin: Duration::from_millis(2_500),
        ..settings(1)
    };
    let (mut node, t) = running_replica_with(wide_margin, 1000, 1000);
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(v.clone())),
    );
    assert_eq!(
        node.status().config.ttl,
        6,
        "kept the last good configuration"
    );
    let good = DynamicConfig {
        ttl: 8,
        loop_wait: 1,
        retry_timeout: 2,
        ..DynamicConfig::default()
    };
    v.config = Some(Versioned {
        value: good,
        mod_revision: Revision(31),
    });
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    assert_eq!(node.status().config.ttl, 8, "a valid change is applied");
}

#[test]
fn a_restarted_agent_takes_its_own_leader_key_back_onto_its_new_lease() {
    // The agent restarted while PostgreSQL kept running as primary; the key still carries
    // our name on the previous agent's lease.
    let mut node = Node::new(settings(1), Instant(0));
    node.handle_input(
        Instant(0),
        Input::ClusterChanged(std::sync::Arc::new(view(Some((ME, 0x99)), 1000, 10))),
    );
    drain(&mut node);
    node.handle_input(
        Instant(0),
        Input::LeaseGranted {
            lease: LEASE,
            ttl_secs: 6,
            sent_at: Instant(0),
        },
    );
    node.handle_input(Instant(0), Input::PostgresProbed(pg(false, 1000)));
    let effects = drain(&mut node);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))),
        "{effects:?}"
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    node.handle_input(Instant(10), Input::PeersProbed(Vec::new()));
    assert_eq!(
        drain(&mut node),
        vec![Effect::AcquireLeader { lease: LEASE }]
    );
    node.handle_input(
        Instant(20),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(11),
            create_revision: Revision(11),
        },
    );
    drain(&mut node);
    assert_eq!(node.state(), "primary");
    node.handle_input(
        Instant(30),
        Input::ClusterChanged(std::sync::Arc::new(view(Some((ME, LEASE.0)), 1000, 11))),
    );
    assert!(node.status().holds_leader_key);
}

/// A former primary (crashed, no standby.signal) restarting while another member leads.
fn former_primary_restart(use_pg_rewind: Option<bool>, remove_diverged: bool) -> Vec<Effect> {
    let mut s = settings(1);
    s.use_pg_rewind = use_pg_rewind;
    s.remove_data_directory_on_diverged_timelines = remove_diverged;
    let mut node = Node::new(s, Instant(0));
    node.handle_input(
        Instant(0),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node3", 5)), 1000, 10))),
    );
    drain(&mut node);
    let stopped = PgObservation {
        data_dir: DataDir::Initialized {
            sysid: "7300".into(),
            state: ControlState::InProduction,
            timeline: Timeline(1),
            standby_signal: false,
        },
        postmaster_alive: false,
        server: None,
        silent: false,
    };
    node.handle_input(Instant(0), Input::PostgresProbed(stopped));
    drain(&mut node)
}

/// A former primary is rewound with `use_pg_rewind`; without it, cloned again only when
/// `remove_data_directory_on_diverged_timelines` allows wiping its data, else started as a
/// standby with its data kept (Patroni's rules).
#[test]
fn a_former_primary_rejoins_with_pg_rewind_or_a_fresh_clone() {
    for remove_diverged in [false, true] {
        let effects = former_primary_restart(Some(true), remove_diverged);
        assert!(
            effects.iter().any(
                |e| matches!(e, Effect::Pg(PgAction::Rewind { from }) if from.name == "node3")
            ),
            "{effects:?}"
        );
    }
    let effects = former_primary_restart(Some(false), true);
    assert!(
        effects.iter().any(
            |e| matches!(e, Effect::Pg(PgAction::Reinitialize { from }) if from.name == "node3")
        ),
        "{effects:?}"
    );
    let effects = former_primary_restart(Some(false), false);
    assert_eq!(
        pg_actions(&effects),
        vec![PgAction::StartReplica {
            upstream: Some(Upstream {
                name: "node3".into(),
                conn_url: member("node3").conn_url,
                stream: true,
            })
        }],
        "its data kept, started as a standby"
    );
}

/// A standby whose WAL runs past its timeline's switch point in `/history` diverged; with
/// neither pg_rewind nor `remove_data_directory_on_diverged_timelines` its data is kept and
/// `/patroni` says what to do, instead of wiping it unasked.
#[test]
fn a_diverged_standby_is_kept_when_nothing_may_repair_it() {
    let mut s = settings(1);
    s.use_pg_rewind = Some(false);
    let (mut node, t) = running_replica_with(s, 1000, 1000);
    let mut v = view(Some(("node1", 7)), 3000, 20);
    v.history.push(HistoryEntry {
        timeline: Timeline(1),
        switch_lsn: Lsn(800),
        reason: "no recovery target specified".into(),
        timestamp: None,
        new_leader: Some("node1".into()),
    });
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    let effects = step_with_probe(&mut node, t + 2000, Input::Tick, pg(true, 1000));
    assert!(
        !pg_actions(&effects)
            .iter()
            .any(|a| matches!(a, PgAction::Reinitialize { .. } | PgAction::Rewind { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
    let error = node
        .status()
        .last_error
        .unwrap_or_else(|| panic!("the divergence is reported: {effects:?}"));
    assert!(
        error.contains("runs past the switch point") && error.contains("patronictl reinit"),
        "{error}"
    );
}

#[test]
fn a_running_primary_that_may_not_lead_is_demoted() {
    // PostgreSQL runs read-write, nobody holds the key, and this node is behind the
    // cluster timeline (a stale primary that woke up after a failover elsewhere).
    let mut v = view(None, 1000, 10);
    v.history = vec![pgwarden::core::view::HistoryEntry {
        timeline: Timeline(1),
        switch_lsn: Lsn(900),
        reason: "promoted".into(),
        timestamp: None,
        new_leader: Some("node3".into()),
    }];
    let mut node = node_with_lease(settings(1), v);
    node.handle_input(Instant(0), Input::PostgresProbed(pg(false, 1000)));
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock
        })),
        "{effects:?}"
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::AcquireLeader { .. } | Effect::ProbePeers { .. })));
    assert_eq!(node.state(), "demoting");
}

#[test]
fn synchronous_mode_claims_sync_before_promoting() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let v = sync_mode_view(Some((&[ME], 9)));
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    assert!(drain(&mut node)
        .iter()
        .any(|e| matches!(e, Effect::ProbePeers { .. })));
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    assert_eq!(
        drain(&mut node),
        vec![Effect::AcquireLeader { lease: LEASE }]
    );
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    assert_eq!(
        effects,
        vec![Effect::WriteSync {
            seq: 1,
            state: SyncState {
                leader: Some(ME.into()),
                sync_standby: Vec::new(),
                quorum: 0
            },
            expected_revision: Some(Revision(9)),
        }],
        "/sync is claimed before PostgreSQL may acknowledge anything alone"
    );
    // An answer to some other /sync write says nothing about the claim.
    node.handle_input(Instant(t), Input::SyncWritten { seq: 7, ok: true });
    let effects = drain(&mut node);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Promote { .. }))),
        "promoted on another write's answer: {effects:?}"
    );
    node.handle_input(Instant(t), Input::SyncWritten { seq: 1, ok: true });
    let effects = drain(&mut node);
    assert!(promotes_with(&effects, LEASE, 21, None), "{effects:?}");
}

#[test]
fn a_lost_sync_claim_postpones_the_promotion() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let v = sync_mode_view(None);
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    drain(&mut node);
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let seq = sync_write_seq(&drain(&mut node));
    node.handle_input(Instant(t), Input::SyncWritten { seq, ok: false });
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Promote { .. }))));
    assert_eq!(node.state(), "replica");
}

fn with_ttl(ttl: u32, revision: i64, leader: Option<(&str, i64)>) -> ClusterView {
    let mut v = view(leader, 1000, revision);
    v.config = Some(Versioned {
        value: DynamicConfig {
            ttl,
            loop_wait: 1,
            retry_timeout: 2,
            ..DynamicConfig::default()
        },
        mod_revision: Revision(revision),
    });
    v
}

#[test]
fn a_ttl_change_rotates_a_replicas_lease() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(with_ttl(9, 40, Some(("node1", 7))))),
    );
    drain(&mut node);
    node.handle_input(Instant(t + 1_000), Input::Tick);
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::GrantLease { ttl_secs: 9 }),
        "{effects:?}"
    );
    let new = LeaseId(0x77);
    node.handle_input(
        Instant(t + 1_005),
        Input::LeaseGranted {
            lease: new,
            ttl_secs: 9,
            sent_at: Instant(t + 1_005),
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::TouchMember { lease, .. } if *lease == new)),
        "{effects:?}"
    );
    assert!(
        effects.contains(&Effect::RevokeLease { lease: LEASE }),
        "{effects:?}"
    );
    assert_eq!(node.status().lease, Some(new));
}

#[test]
fn a_ttl_change_moves_the_leader_key_onto_the_new_lease_without_demoting() {
    let mut node = primary();
    drain(&mut node);
    node.handle_input(
        Instant(600),
        Input::ClusterChanged(std::sync::Arc::new(with_ttl(9, 40, Some((ME, LEASE.0))))),
    );
    node.handle_input(Instant(1_000), Input::Tick);
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::GrantLease { ttl_secs: 9 }),
        "{effects:?}"
    );
    let new = LeaseId(0x77);
    node.handle_input(
        Instant(1_010),
        Input::LeaseGranted {
            lease: new,
            ttl_secs: 9,
            sent_at: Instant(1_005),
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::AcquireLeader { lease: new }),
        "{effects:?}"
    );
    assert_eq!(
        node.status().lease,
        Some(LEASE),
        "the old lease stays until the key moved"
    );
    node.handle_input(
        Instant(1_020),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(41),
            create_revision: Revision(8),
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::RevokeLease { lease: LEASE }),
        "{effects:?}"
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))));
    assert_eq!(node.status().lease, Some(new));
    assert!(
        node.status().holds_leader_key,
        "the watch has not shown the move yet"
    );
    assert_eq!(
        node.status().lease_deadline,
        Some(Instant(1_005 + 9_000 - 1_000))
    );
    node.handle_input(
        Instant(1_030),
        Input::ClusterChanged(std::sync::Arc::new(with_ttl(9, 41, Some((ME, new.0))))),
    );
    assert!(node.status().holds_leader_key);
    assert_eq!(node.state(), "primary");
}

// ----- watchdog -------------------------------------------------------------------------------

/// Settings with a watchdog in `mode`; ttl 6 and safety_margin -1 give a 3 s timeout.
fn watchdog_settings(mode: WatchdogMode) -> NodeSettings {
    NodeSettings {
        watchdog: WatchdogSettings {
            mode,
            device: "/run/test-watchdog".into(),
            safety_margin: -1,
        },
        ..settings(1)
    }
}

/// A replica with a watchdog whose leader key vanishes: it races, wins the key and returns
/// the effects that follow the acquisition.
fn replica_wins_the_key(mode: WatchdogMode) -> (Node, u64, Vec<Effect>) {
    let (mut node, t) = running_replica_with(watchdog_settings(mode), 1000, 1000);
    node.handle_input(Instant(t), Input::WatchdogChecked(Ok(())));
    let effects = leader_key_deleted(&mut node, t, 1000, 1000);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    assert_eq!(
        drain(&mut node),
        vec![Effect::AcquireLeader { lease: LEASE }]
    );
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    (node, t, effects)
}

/// Whether `effects` promote under this fencing token (lease, leader key revision) with
/// these `synchronous_standby_names`.
fn promotes_with(
    effects: &[Effect],
    lease: LeaseId,
    leader_revision: i64,
    sync: Option<pgwarden::core::sync::StandbyNames>,
) -> bool {
    effects.iter().any(|e| {
        matches!(e, Effect::Pg(PgAction::Promote { permit, sync_standbys })
            if permit.lease() == lease
                && permit.leader_revision() == Revision(leader_revision)
                && *sync_standbys == sync)
    })
}

/// The promotion among `effects` (panics when there is none).
fn promotion_among(effects: Vec<Effect>) -> PgAction {
    effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Pg(a @ PgAction::Promote { .. }) => Some(a),
            _ => None,
        })
        .expect("a promotion among the effects")
}

fn promotes(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Promote { .. })))
}

fn watchdog_json_state(node: &Node) -> &'static str {
    node.status().watchdog.state.name()
}

#[test]
fn the_watchdog_is_armed_before_promotion_and_promotion_waits_for_it() {
    let (mut node, t, effects) = replica_wins_the_key(WatchdogMode::Automatic);
    assert!(
        effects.contains(&Effect::ArmWatchdog { timeout_secs: 3 }),
        "{effects:?}"
    );
    assert!(
        !promotes(&effects),
        "no promotion before the arm: {effects:?}"
    );
    assert_eq!(node.state(), "candidate");
    assert_eq!(watchdog_json_state(&node), "arming");
    node.handle_input(
        Instant(t + 5),
        Input::WatchdogArmed(Ok(ArmReport {
            device_timeout_secs: None,
        })),
    );
    let effects = drain(&mut node);
    assert!(promotes_with(&effects, LEASE, 21, None), "{effects:?}");
    let status = node.status().watchdog;
    assert_eq!(status.state.name(), "armed");
    assert_eq!(status.timeout_secs, Some(3));
    assert!(status.failed.is_none());
}

#[test]
fn a_required_watchdog_that_fails_to_arm_releases_the_key_and_never_promotes() {
    let (mut node, t, effects) = replica_wins_the_key(WatchdogMode::Required);
    assert!(effects.contains(&Effect::ArmWatchdog { timeout_secs: 3 }));
    node.handle_input(
        Instant(t + 5),
        Input::WatchdogArmed(Err("open /run/test-watchdog: ENXIO".into())),
    );
    let effects = drain(&mut node);
    assert!(!promotes(&effects), "{effects:?}");
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
    let status = node.status();
    assert_eq!(status.watchdog.state.name(), "failed");
    assert!(
        status.watchdog.failed.is_some(),
        "watchdog_failed in /patroni"
    );
    assert!(
        status
            .last_race_refusal
            .as_deref()
            .is_some_and(|r| r.contains("ENXIO")),
        "{:?}",
        status.last_race_refusal
    );
    // The key is gone; the next cycles do not race while the failure is recent.
    node.handle_input(
        Instant(t + 1_000),
        Input::ClusterChanged(std::sync::Arc::new(view(None, 1000, 22))),
    );
    node.handle_input(Instant(t + 2_000), Input::Tick);
    let mut effects = drain(&mut node);
    node.handle_input(Instant(t + 2_000), Input::PostgresProbed(pg(true, 1000)));
    effects.extend(drain(&mut node));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. } | Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert!(node
        .status()
        .last_race_refusal
        .unwrap_or_default()
        .contains("watchdog-unusable"));
}

#[test]
fn an_automatic_watchdog_that_fails_to_arm_still_promotes_and_says_so() {
    let (mut node, t, _) = replica_wins_the_key(WatchdogMode::Automatic);
    node.handle_input(
        Instant(t + 5),
        Input::WatchdogArmed(Err("open /run/test-watchdog: ENXIO".into())),
    );
    let effects = drain(&mut node);
    assert!(promotes(&effects), "{effects:?}");
    let status = node.status().watchdog;
    assert_eq!(status.state.name(), "failed");
    assert!(
        status.failed.is_none(),
        "automatic never reports watchdog_failed"
    );
    assert!(status.last_error.unwrap_or_default().contains("ENXIO"));
}

#[test]
fn a_required_device_with_a_longer_timeout_than_asked_is_refused_and_closed() {
    let (mut node, t, _) = replica_wins_the_key(WatchdogMode::Required);
    node.handle_input(
        Instant(t + 5),
        Input::WatchdogArmed(Ok(ArmReport {
            device_timeout_secs: Some(60),
        })),
    );
    let effects = drain(&mut node);
    assert!(!promotes(&effects), "{effects:?}");
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::DisarmWatchdog { .. })));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::ReleaseLeader { .. })));
}

/// A promoted leader with an armed watchdog, PostgreSQL primary, key visible.
fn armed_leader() -> (Node, u64) {
    armed_leader_with(WatchdogMode::Automatic)
}

/// [`armed_leader`] with the watchdog in `mode`.
fn armed_leader_with(mode: WatchdogMode) -> (Node, u64) {
    let (mut node, t, _) = replica_wins_the_key(mode);
    node.handle_input(
        Instant(t + 5),
        Input::WatchdogArmed(Ok(ArmReport {
            device_timeout_secs: Some(3),
        })),
    );
    let promote = promotion_among(drain(&mut node));
    node.handle_input(
        Instant(t + 10),
        Input::PgActionFinished {
            action: promote,
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    assert_eq!(node.state(), "primary");
    let mut v = view(Some((ME, LEASE.0)), 1000, 22);
    v.leader.as_mut().expect("leader").create_revision = Revision(21);
    node.handle_input(
        Instant(t + 20),
        Input::ClusterChanged(std::sync::Arc::new(v)),
    );
    node.handle_input(Instant(t + 20), Input::PostgresProbed(pg(false, 1000)));
    drain(&mut node);
    assert_eq!(node.state(), "primary");
    (node, t + 20)
}

#[test]
fn the_watchdog_is_fed_only_after_a_successful_renewal() {
    let (mut node, t) = armed_leader();
    let feeds = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| **e == Effect::FeedWatchdog)
            .count()
    };
    // Timers and cycles alone never feed it.
    node.handle_input(Instant(t + 900), Input::Tick);
    node.handle_input(Instant(t + 900), Input::PostgresProbed(pg(false, 1000)));
    let effects = drain(&mut node);
    assert_eq!(feeds(&effects), 0, "{effects:?}");
    node.handle_input(
        Instant(t + 950),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "unavailable".into(),
        },
    );
    assert_eq!(feeds(&drain(&mut node)), 0);
    // A renewal of another lease is not ours.
    node.handle_input(
        Instant(t + 960),
        Input::LeaseRenewed {
            lease: LeaseId(0x99),
            sent_at: Instant(t + 950),
        },
    );
    assert_eq!(feeds(&drain(&mut node)), 0);
    node.handle_input(
        Instant(t + 1_000),
        Input::LeaseRenewed {
            lease: LEASE,
            sent_at: Instant(t + 990),
        },
    );
    assert_eq!(feeds(&drain(&mut node)), 1);
    let age = node.status().watchdog.last_keepalive_age;
    assert_eq!(age, Some(Duration::ZERO));
}

#[test]
fn the_watchdog_is_disarmed_once_a_demoted_primary_has_stopped() {
    let (mut node, t) = armed_leader();
    node.handle_input(
        Instant(t + 100),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node3", 99)), 1000, 30))),
    );
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock
        })),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::DisarmWatchdog { .. })),
        "still armed while PostgreSQL may accept writes: {effects:?}"
    );
    // A renewal while demoting does not feed it.
    node.handle_input(
        Instant(t + 150),
        Input::LeaseRenewed {
            lease: LEASE,
            sent_at: Instant(t + 140),
        },
    );
    assert!(!drain(&mut node).contains(&Effect::FeedWatchdog));
    node.handle_input(
        Instant(t + 200),
        Input::PgActionFinished {
            action: PgAction::Demote {
                mode: DemoteMode::ImmediateNolock,
            },
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::DisarmWatchdog { .. })),
        "{effects:?}"
    );
    assert_eq!(watchdog_json_state(&node), "disarmed");
}

#[test]
fn a_node_whose_watchdog_is_required_but_missing_never_races() {
    let mut node = node_with_lease(
        watchdog_settings(WatchdogMode::Required),
        view(None, 1000, 10),
    );
    node.handle_input(
        Instant(0),
        Input::WatchdogChecked(Err(
            "stat on watchdog device /run/test-watchdog: No such file or directory".into(),
        )),
    );
    for i in 0..3 {
        let now = Instant(i * 1_000);
        node.handle_input(now, Input::Tick);
        node.handle_input(now, Input::PostgresProbed(pg(true, 1000)));
        let effects = drain(&mut node);
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::ProbePeers { .. } | Effect::AcquireLeader { .. })),
            "{effects:?}"
        );
        assert!(effects.contains(&Effect::CheckWatchdog), "{effects:?}");
    }
    let status = node.status();
    let refusal = status.last_race_refusal.unwrap_or_default();
    assert!(
        refusal.contains("watchdog-unusable") && refusal.contains("No such file"),
        "{refusal}"
    );
    assert!(status.watchdog.failed.is_some());
}

#[test]
fn a_watchdog_timeout_below_loop_wait_makes_required_unusable_and_automatic_lead_without_it() {
    // ttl 6 − safety_margin 5 = 1 s < loop_wait 2 s.
    let short = |mode| {
        let mut s = watchdog_settings(mode);
        s.watchdog.safety_margin = 5;
        s.bootstrap_config.loop_wait = 2;
        s
    };
    let (mut node, t) = running_replica_with(short(WatchdogMode::Required), 1000, 1000);
    node.handle_input(Instant(t), Input::WatchdogChecked(Ok(())));
    let effects = leader_key_deleted(&mut node, t, 1000, 1000);
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::ProbePeers { .. })));
    assert!(node
        .status()
        .last_race_refusal
        .unwrap_or_default()
        .contains("below loop_wait"));

    let (mut node, t) = running_replica_with(short(WatchdogMode::Automatic), 1000, 1000);
    let effects = leader_key_deleted(&mut node, t, 1000, 1000);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::ProbePeers { .. })));
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    drain(&mut node);
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    assert!(promotes(&effects), "{effects:?}");
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::ArmWatchdog { .. })));
    assert_eq!(watchdog_json_state(&node), "failed");
}

/// Answer every pending policy call with `decision`; returns the other effects.
fn answer_all(node: &mut Node, decision: &pgwarden_policy::Decision) -> Vec<Effect> {
    let mut effects = Vec::new();
    let mut pending: Vec<Effect> = drain_raw(node);
    while !pending.is_empty() {
        for effect in std::mem::take(&mut pending) {
            match effect {
                Effect::ConsultPolicy(call) => {
                    let now = node.status().now;
                    node.handle_input(
                        now,
                        Input::PolicyDecided(PolicyAnswer {
                            seq: call.seq,
                            decision: decision.clone(),
                            fallback: None,
                            warnings: Vec::new(),
                        }),
                    );
                    pending.extend(drain_raw(node));
                }
                other => effects.push(other),
            }
        }
    }
    effects
}

fn always_race() -> pgwarden_policy::Decision {
    pgwarden_policy::Decision {
        race: pgwarden_policy::Race::Race,
        preference: vec![ME.into()],
        fence: pgwarden_policy::Fence::None,
        sync_standbys: None,
    }
}

#[test]
fn the_gate_refuses_a_policy_that_races_while_another_member_leads() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(Instant(t + 1000), Input::Tick);
    assert!(drain_raw(&mut node).contains(&Effect::ProbePostgres));
    node.handle_input(Instant(t + 1000), Input::PostgresProbed(pg(true, 1000)));
    let effects = answer_all(&mut node, &always_race());
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::AcquireLeader { .. } | Effect::Pg(PgAction::Promote { .. })
        )),
        "{effects:?}"
    );
    let status = node.status();
    assert_eq!(status.state, "replica");
    assert!(
        status
            .policy
            .gate_rejections
            .get("leader-key-held")
            .copied()
            >= Some(1),
        "{:?}",
        status.policy
    );
    assert!(status
        .policy
        .last_gate_rejection
        .unwrap_or_default()
        .contains("node1"));
}

#[test]
fn the_gate_refuses_an_election_answer_once_the_node_lags() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let effects = leader_key_deleted(&mut node, t, 1000, 1000);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::ProbePeers { .. })));
    assert_eq!(node.state(), "candidate");
    // The leader's last position moves far ahead while the peers are probed.
    node.handle_input(
        Instant(t + 1),
        Input::ClusterChanged(std::sync::Arc::new(view(None, 1000 + 10 * 1_048_576, 21))),
    );
    node.handle_input(Instant(t + 2), Input::PeersProbed(Vec::new()));
    let effects = answer_all(&mut node, &always_race());
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
    let status = node.status();
    assert_eq!(
        status.policy.gate_rejections.get("lag-exceeded").copied(),
        Some(1),
        "{:?}",
        status.policy
    );
    assert!(status
        .last_race_refusal
        .unwrap_or_default()
        .contains("invariant gate"));
}

#[test]
fn a_policy_that_waits_postpones_the_race_and_is_asked_again() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    leader_key_deleted(&mut node, t, 1000, 1000);
    node.handle_input(Instant(t + 1), Input::PeersProbed(Vec::new()));
    let wait = pgwarden_policy::Decision {
        race: pgwarden_policy::Race::Wait(pgwarden_policy::Wait {
            delay_ms: 300,
            reason: "waiting for a same-zone replica".into(),
        }),
        preference: Vec::new(),
        fence: pgwarden_policy::Fence::None,
        sync_standbys: None,
    };
    let effects = answer_all(&mut node, &wait);
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::AcquireLeader { .. })));
    assert_eq!(node.state(), "replica");
    assert!(node
        .status()
        .last_race_refusal
        .unwrap_or_default()
        .contains("same-zone"));
    // Asked again after the delay, not a whole loop_wait later.
    assert_eq!(node.poll_timeout(), Some(Instant(t + 1 + 300)));
    node.handle_input(Instant(t + 301), Input::Tick);
    assert!(drain(&mut node).contains(&Effect::ProbePostgres));
}

/// A primary whose policy asks it to step down (a clean demotion) at its next cycle: the
/// node and the effects of that answer.
fn primary_asked_to_step_down() -> (Node, Vec<Effect>) {
    let mut node = primary();
    node.handle_input(Instant(600), Input::Tick);
    let demote = pgwarden_policy::Decision {
        race: pgwarden_policy::Race::Race,
        preference: Vec::new(),
        fence: pgwarden_policy::Fence::Demote("maintenance window".into()),
        sync_standbys: None,
    };
    node.handle_input(Instant(600), Input::PostgresProbed(pg(false, 2000)));
    let effects = answer_all(&mut node, &demote);
    (node, effects)
}

#[test]
fn a_policy_may_demote_the_primary_early_and_the_key_is_released_only_after_the_stop() {
    let (mut node, effects) = primary_asked_to_step_down();
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::Graceful
        })),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "not before the stop"
    );
    assert_eq!(node.state(), "demoting");
    node.handle_input(
        Instant(700),
        Input::PgActionFinished {
            action: PgAction::Demote {
                mode: DemoteMode::Graceful,
            },
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert!(
        !node.status().holds_leader_key,
        "a released key is not ours while the release is in flight"
    );
}

/// The leader's view with a `failover` key at revision 30, and its PostgreSQL with `node3`
/// streaming (and `node1` not connected).
fn leader_with_request(request: FailoverRequest) -> (Node, Vec<Effect>) {
    let mut node = primary();
    let mut v = view(Some((ME, LEASE.0)), 2000, 30);
    v.members.get_mut(ME).expect("me").role = "primary".into();
    v.failover = Some(Versioned {
        value: request,
        mod_revision: Revision(30),
    });
    let mut observed = pg(false, 2000);
    if let Some(server) = observed.server.as_mut() {
        server.replication.push(streaming_peer("node3", 2000));
    }
    // The view first: the probe's answer runs the decision cycle.
    node.handle_input(Instant(600), Input::ClusterChanged(std::sync::Arc::new(v)));
    node.handle_input(Instant(600), Input::PostgresProbed(observed));
    let effects = drain(&mut node);
    (node, effects)
}

#[test]
fn a_switchover_to_a_ready_standby_stops_the_leader_cleanly_before_the_key_is_released() {
    let (node, effects) = leader_with_request(FailoverRequest {
        leader: Some(ME.into()),
        candidate: Some("node3".into()),
        ..FailoverRequest::default()
    });
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::Graceful
        })),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "not before the stop"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ClearFailover { .. })),
        "the new leader clears the request, not the old one: {effects:?}"
    );
    assert_eq!(node.state(), "demoting");
}

/// Maintenance mode lets the operator's switchover to a named candidate through (Patroni):
/// the paused leader stops cleanly, releases the key and starts again as a standby, although
/// it starts nothing on its own while paused. A request naming nobody is not acted on.
#[test]
fn paused_the_leader_hands_over_to_the_named_candidate_and_rejoins_as_a_standby() {
    let request = FailoverRequest {
        leader: Some(ME.into()),
        candidate: Some("node3".into()),
        ..FailoverRequest::default()
    };
    let (mut node, mut v, observed) = paused_leader_asked(request);
    node.handle_input(
        Instant(700),
        Input::ClusterChanged(std::sync::Arc::new(v.clone())),
    );
    node.handle_input(Instant(700), Input::PostgresProbed(observed.clone()));
    let effects = drain(&mut node);
    let stop = PgAction::Demote {
        mode: DemoteMode::Graceful,
    };
    assert!(effects.contains(&Effect::Pg(stop.clone())), "{effects:?}");
    assert_eq!(node.state(), "demoting");
    node.handle_input(
        Instant(800),
        Input::PgActionFinished {
            action: stop,
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    // node3 took the key; this node's PostgreSQL is down, shut down cleanly as a primary.
    let mut after = paused(view(Some(("node3", 9)), 2000, 32));
    after.members.get_mut("node3").expect("node3").role = "primary".into();
    node.handle_input(
        Instant(900),
        Input::ClusterChanged(std::sync::Arc::new(after)),
    );
    drain(&mut node);
    let down = primary_shut_down();
    // The probe asked while the stop ran answers stale (the stop finished since); the one
    // asked after it decides.
    let mut effects = step_with_probe(&mut node, 2_000, Input::Tick, down.clone());
    assert!(effects.contains(&Effect::ProbePostgres), "{effects:?}");
    node.handle_input(Instant(2_000), Input::PostgresProbed(down));
    effects.extend(drain(&mut node));
    assert!(
        pg_actions(&effects).iter().any(|a| matches!(
            a,
            PgAction::StartReplica { upstream: Some(from) } if from.name == "node3"
        )),
        "the former leader starts as node3's standby while paused (no rewind, no clone): {effects:?}"
    );

    // Paused, a switchover naming no candidate is not acted on.
    let mut node = paused_primary();
    v.failover = Some(Versioned {
        value: FailoverRequest {
            leader: Some(ME.into()),
            ..FailoverRequest::default()
        },
        mod_revision: Revision(31),
    });
    node.handle_input(Instant(700), Input::ClusterChanged(std::sync::Arc::new(v)));
    node.handle_input(Instant(700), Input::PostgresProbed(observed));
    let effects = drain(&mut node);
    assert!(
        !pg_actions(&effects)
            .iter()
            .any(|a| matches!(a, PgAction::Demote { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "primary");
}

/// A paused leader, its view carrying `request` in the `failover` key, and what its probe
/// sees (a running primary with node3 streaming).
fn paused_leader_asked(request: FailoverRequest) -> (Node, ClusterView, PgObservation) {
    let mut v = paused(view(Some((ME, LEASE.0)), 2000, 30));
    v.members.get_mut(ME).expect("me").role = "primary".into();
    v.failover = Some(Versioned {
        value: request,
        mod_revision: Revision(30),
    });
    let mut observed = pg(false, 2000);
    if let Some(server) = observed.server.as_mut() {
        server.replication.push(streaming_peer("node3", 2000));
    }
    (paused_primary(), v, observed)
}

/// Paused, a stop for the operator's switchover that fails leaves nothing behind: when the
/// operator later stops that PostgreSQL himself (still paused), the agent starts nothing.
#[test]
fn paused_a_failed_handover_stop_leaves_the_pause_guard_whole() {
    let (mut node, mut v, observed) = paused_leader_asked(FailoverRequest {
        leader: Some(ME.into()),
        candidate: Some("node3".into()),
        ..FailoverRequest::default()
    });
    node.handle_input(
        Instant(700),
        Input::ClusterChanged(std::sync::Arc::new(v.clone())),
    );
    node.handle_input(Instant(700), Input::PostgresProbed(observed));
    let stop = PgAction::Demote {
        mode: DemoteMode::Graceful,
    };
    assert!(drain(&mut node).contains(&Effect::Pg(stop.clone())));
    node.handle_input(
        Instant(800),
        Input::PgActionFinished {
            action: stop,
            outcome: PgActionOutcome::Failed {
                error: "pg_ctl stop: timed out".into(),
            },
        },
    );
    drain(&mut node);
    // The request is withdrawn; the operator stops PostgreSQL by hand, still paused.
    v.failover = None;
    v.revision = Revision(31);
    node.handle_input(Instant(900), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    let down = primary_shut_down();
    let mut effects = Vec::new();
    for t in [1_500, 2_500, 3_500] {
        effects.extend(step_with_probe(&mut node, t, Input::Tick, down.clone()));
    }
    assert!(
        pg_actions(&effects).is_empty(),
        "paused, nothing is started: {effects:?}"
    );
}

/// Paused, the free key goes to the candidate the operator named, and only to it: it races,
/// takes the key and is promoted; another standby does not race.
#[test]
fn paused_only_the_named_candidate_races_and_is_promoted() {
    let leaderless_with_request = |candidate: &str| {
        let mut v = paused(view(None, 1000, 20));
        v.failover = Some(Versioned {
            value: FailoverRequest {
                leader: Some("node1".into()),
                candidate: Some(candidate.into()),
                ..FailoverRequest::default()
            },
            mod_revision: Revision(19),
        });
        v
    };
    let (mut other, t) = running_replica(1, 1000, 1000);
    other.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(leaderless_with_request("node3"))),
    );
    drain(&mut other);
    other.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut other);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. } | Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(other.state(), "replica");

    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(leaderless_with_request(ME))),
    );
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "the named candidate races while paused: {effects:?}"
    );
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    assert_eq!(
        drain(&mut node),
        vec![Effect::AcquireLeader { lease: LEASE }]
    );
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    assert!(
        pg_actions(&effects)
            .iter()
            .any(|a| matches!(a, PgAction::Promote { .. })),
        "{effects:?}"
    );
}

#[test]
fn a_switchover_the_policy_declines_is_cleared_with_the_reason() {
    // node1 does not stream from the leader: the default policy keeps leading.
    let (node, effects) = leader_with_request(FailoverRequest {
        leader: Some(ME.into()),
        candidate: Some("node1".into()),
        ..FailoverRequest::default()
    });
    assert!(
        effects.contains(&Effect::ClearFailover {
            expected_revision: Some(Revision(30)),
            reason: "the policy did not stop the primary for the switchover to node1".into(),
        }),
        "{effects:?}"
    );
    assert_eq!(node.state(), "primary");
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))),
        "{effects:?}"
    );
}

/// A switchover scheduled for later (`patronictl switchover --scheduled`): the leader leaves
/// it in place and wakes at its time; then it hands over as for one asked for now.
#[test]
fn a_scheduled_switchover_waits_for_its_time_then_hands_over() {
    let request = FailoverRequest {
        leader: Some(ME.into()),
        candidate: Some("node3".into()),
        scheduled_at: Some("2026-12-07T05:00:00+00:00".into()),
        due: Some(Instant(3000)),
        ..FailoverRequest::default()
    };
    let (mut node, effects) = leader_with_request(request);
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::Pg(PgAction::Demote { .. }) | Effect::ClearFailover { .. }
        )),
        "not before its time: {effects:?}"
    );
    assert_eq!(node.state(), "primary");
    assert!(
        node.poll_timeout().is_some_and(|at| at <= Instant(3000)),
        "the leader wakes at the scheduled time: {:?}",
        node.timers()
    );
    let mut observed = pg(false, 2000);
    if let Some(server) = observed.server.as_mut() {
        server.replication.push(streaming_peer("node3", 2000));
    }
    let effects = cycle(&mut node, 3000, observed);
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::Graceful
        })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "demoting");
}

/// A scheduled switchover whose time passed more than one and a half `loop_wait` ago (the
/// leader was busy, or the agent down) is dropped, not carried out at a random later moment.
#[test]
fn a_stale_scheduled_switchover_is_dropped() {
    let request = FailoverRequest {
        leader: Some(ME.into()),
        candidate: Some("node3".into()),
        scheduled_at: Some("2026-12-07T05:00:00+00:00".into()),
        due: Some(Instant(1000)),
        ..FailoverRequest::default()
    };
    let (mut node, _) = leader_with_request(request);
    let mut observed = pg(false, 2000);
    if let Some(server) = observed.server.as_mut() {
        server.replication.push(streaming_peer("node3", 2000));
    }
    // Nothing ran at its time (a busy leader): 1.7 s later it is stale.
    let effects = cycle(&mut node, 2700, observed);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::ClearFailover { expected_revision: Some(Revision(30)), reason } if reason.contains("stale")
        )),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))),
        "{effects:?}"
    );
    assert_eq!(node.state(), "primary");
}

/// A switchover scheduled before a pause waits out maintenance mode, as in Patroni: its time
/// passes unacted while paused; resumed within one and a half `loop_wait` of its time it is
/// carried out, resumed later it is dropped as stale.
#[test]
fn a_scheduled_switchover_waits_out_maintenance_mode() {
    for (resume_at, carried_out) in [(3_500, true), (4_600, false)] {
        let request = FailoverRequest {
            leader: Some(ME.into()),
            candidate: Some("node3".into()),
            scheduled_at: Some("2026-12-07T05:00:00+00:00".into()),
            due: Some(Instant(3000)),
            ..FailoverRequest::default()
        };
        let (mut node, _) = leader_with_request(request.clone());
        let mut v = view(Some((ME, LEASE.0)), 2000, 31);
        v.members.get_mut(ME).expect("me").role = "primary".into();
        v.failover = Some(Versioned {
            value: request,
            mod_revision: Revision(30),
        });
        let mut observed = pg(false, 2000);
        if let Some(server) = observed.server.as_mut() {
            server.replication.push(streaming_peer("node3", 2000));
        }
        node.handle_input(
            Instant(900),
            Input::ClusterChanged(std::sync::Arc::new(paused(v.clone()))),
        );
        drain(&mut node);
        let mut effects = Vec::new();
        for t in [3_000, 3_300] {
            effects.extend(cycle(&mut node, t, observed.clone()));
        }
        assert!(
            !effects.iter().any(|e| matches!(
                e,
                Effect::Pg(PgAction::Demote { .. }) | Effect::ClearFailover { .. }
            )),
            "paused, its time passes unacted: {effects:?}"
        );
        assert_eq!(node.state(), "primary");
        let mut resumed = with_pause(v, false);
        resumed.revision = Revision(32);
        node.handle_input(
            Instant(resume_at),
            Input::ClusterChanged(std::sync::Arc::new(resumed)),
        );
        let mut effects = drain(&mut node);
        effects.extend(cycle(&mut node, resume_at, observed));
        let demoted = effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::Graceful,
        }));
        let dropped = effects
            .iter()
            .any(|e| matches!(e, Effect::ClearFailover { reason, .. } if reason.contains("stale")));
        assert_eq!(
            (demoted, dropped),
            (carried_out, !carried_out),
            "resumed at {resume_at}: {effects:?}"
        );
    }
}

#[test]
fn the_leader_clears_requests_that_are_done_stale_or_scheduled() {
    for (request, expected_revision) in [
        // We are the candidate: the failover happened.
        (
            FailoverRequest {
                candidate: Some(ME.into()),
                ..FailoverRequest::default()
            },
            None,
        ),
        // Addressed to another leader.
        (
            FailoverRequest {
                leader: Some("node1".into()),
                candidate: Some("node3".into()),
                ..FailoverRequest::default()
            },
            Some(30),
        ),
        // Scheduled at a time that cannot be read (the runtime sets `due` from a readable one).
        (
            FailoverRequest {
                leader: Some(ME.into()),
                candidate: Some("node3".into()),
                scheduled_at: Some("2026-12-01T00:00:00Z".into()),
                ..FailoverRequest::default()
            },
            Some(30),
        ),
    ] {
        let (node, effects) = leader_with_request(request.clone());
        let cleared: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::ClearFailover {
                    expected_revision, ..
                } => Some(*expected_revision),
                _ => None,
            })
            .collect();
        assert_eq!(
            cleared,
            vec![expected_revision.map(Revision)],
            "{request:?}: {effects:?}"
        );
        assert_eq!(node.state(), "primary", "{request:?}");
    }
}

#[test]
fn an_operators_failover_waives_the_sync_rule_for_its_candidate_only() {
    // Synchronous mode, /sync names node3; the operator fails over to us (not in /sync).
    let (mut node, t) = running_replica(1, 1000, 1000);
    let mut v = sync_mode_view(Some((&["node3"], 3)));
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(v.clone())),
    );
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "without a request the gate refuses: {effects:?}"
    );
    // A failover naming someone else waives nothing for us; one naming us does.
    for (revision, candidate, elected) in [(21, "node1", false), (22, ME, true)] {
        v.failover = Some(Versioned {
            value: FailoverRequest {
                candidate: Some(candidate.into()),
                ..FailoverRequest::default()
            },
            mod_revision: Revision(revision),
        });
        v.revision = Revision(revision);
        let at = Instant(t + 1100 * (revision as u64 - 20));
        node.handle_input(at, Input::ClusterChanged(std::sync::Arc::new(v.clone())));
        drain(&mut node);
        node.handle_input(at, Input::PostgresProbed(pg(true, 1000)));
        let effects = drain(&mut node);
        assert_eq!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::ProbePeers { .. })),
            elected,
            "failover to {candidate}: {effects:?}"
        );
    }
}

/// A `pg_stat_replication` row of a standby streaming up to `lsn`.
fn streaming_peer(name: &str, lsn: u64) -> ReplicationPeer {
    ReplicationPeer {
        application_name: name.into(),
        state: "streaming".into(),
        sync_state: "async".into(),
        flush_lsn: Some(Lsn(lsn)),
        replay_lsn: Some(Lsn(lsn)),
        usename: Some("replicator".into()),
        client_addr: Some("127.0.0.1".into()),
        sync_priority: 0,
        reply_time: None,
        pid: None,
    }
}

#[test]
fn a_policy_may_choose_which_sync_standbys_but_not_fewer_than_could_be_had() {
    // The same leader (node3 streaming), answered once with no standby, once with node3.
    let refusals = |sync_standbys: Vec<String>| {
        let mut node = primary();
        let mut observed = pg(false, 2000);
        if let Some(server) = observed.server.as_mut() {
            server.replication.push(streaming_peer("node3", 2000));
        }
        node.handle_input(Instant(600), Input::PostgresProbed(observed));
        let decision = pgwarden_policy::Decision {
            race: pgwarden_policy::Race::Race,
            preference: Vec::new(),
            fence: pgwarden_policy::Fence::None,
            sync_standbys: Some(sync_standbys),
        };
        answer_all(&mut node, &decision);
        node.status().policy.gate_rejections.clone()
    };
    let empty = refusals(Vec::new());
    assert!(
        empty.get("sync-set-too-small").is_some_and(|n| *n > 0),
        "no standby where node3 could be one: {empty:?}"
    );
    let full = refusals(vec!["node3".into()]);
    assert!(full.is_empty(), "a full choice is accepted: {full:?}");
}

/// A leaderless view in quorum mode: `/sync` written by node1 with voters node2 (us) and
/// node3, quorum 1 (`ANY 1 (node2, node3)`).
fn quorum_view() -> ClusterView {
    let mut v = sync_mode_view(Some((&[ME, "node3"], 3)));
    if let Some(config) = v.config.as_mut() {
        config.value.synchronous_mode = pgwarden::config::SynchronousMode::Quorum;
    }
    if let Some(sync) = v.sync.as_mut() {
        sync.value.quorum = 1;
    }
    v
}

fn peer_at(name: &str, lsn: Option<u64>) -> PeerReport {
    PeerReport {
        name: name.into(),
        status: lsn.map(|l| PeerStatus {
            role: "replica".into(),
            state: "running".into(),
            wal_position: Some(Lsn(l)),
            timeline: Some(Timeline(1)),
            failover_priority: 1,
            can_lead: true,
            probe_revision: Some(Revision(1_000)),
        }),
    }
}

/// Run an election in `v` where the peers answer as given; the policy always races.
fn election(v: ClusterView, peers: Vec<PeerReport>) -> (Node, Vec<Effect>) {
    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "the vote is counted after the probe, not before: {effects:?}"
    );
    node.handle_input(Instant(t), Input::PeersProbed(peers));
    let effects = answer_all(&mut node, &always_race());
    (node, effects)
}

#[test]
fn quorum_mode_races_only_with_enough_votes_whatever_the_policy_says() {
    // node3 (the other voter) does not answer: a voter alone has 0 votes of 1.
    let (node, effects) = election(
        quorum_view(),
        vec![peer_at("node1", None), peer_at("node3", None)],
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert!(node
        .status()
        .policy
        .gate_rejections
        .contains_key("quorum-not-reached"));
    // node3 answers and is ahead: still no vote.
    let (_, effects) = election(
        quorum_view(),
        vec![peer_at("node1", None), peer_at("node3", Some(1001))],
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::AcquireLeader { .. })));
    // node3 answers, not ahead: one vote, enough.
    let (_, effects) = election(
        quorum_view(),
        vec![peer_at("node1", None), peer_at("node3", Some(1000))],
    );
    assert!(
        effects.contains(&Effect::AcquireLeader { lease: LEASE }),
        "{effects:?}"
    );
}

/// etcd restored from an old snapshot (or replaced): revisions start over lower. The node
/// saw the leader key vanish at revision 5,000 of the old history; in the new one, peers'
/// probes at revision 25 are fresh, not "older than the leader's departure", and count as
/// votes. Without forgetting the old history's revisions no quorum member could ever race
/// again until the new history passed 5,000 writes.
#[test]
fn a_lock_store_that_went_back_in_time_starts_a_new_history() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let mut old = quorum_view();
    old.revision = Revision(5_000);
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(old)));
    drain(&mut node);
    let mut restored = quorum_view();
    restored.revision = Revision(20);
    node.handle_input(
        Instant(t + 10),
        Input::ClusterChanged(std::sync::Arc::new(restored)),
    );
    drain(&mut node);
    node.handle_input(Instant(t + 20), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    let mut voter = peer_at("node3", Some(1000));
    if let Some(s) = voter.status.as_mut() {
        s.probe_revision = Some(Revision(25));
    }
    node.handle_input(
        Instant(t + 30),
        Input::PeersProbed(vec![peer_at("node1", None), voter]),
    );
    let effects = answer_all(&mut node, &always_race());
    assert!(
        effects.contains(&Effect::AcquireLeader { lease: LEASE }),
        "a vote of the new history was counted as stale: {effects:?}"
    );
}

#[test]
fn quorum_mode_lets_a_non_voter_win_with_quorum_plus_one_votes() {
    // Voters node1 and node3 (not us); quorum 1: we need both.
    let mut v = quorum_view();
    if let Some(sync) = v.sync.as_mut() {
        sync.value.leader = Some("node4".into());
        sync.value.sync_standby = vec!["node1".into(), "node3".into()];
    }
    let (_, effects) = election(
        v.clone(),
        vec![peer_at("node1", Some(900)), peer_at("node3", None)],
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::AcquireLeader { .. })));
    let (mut node, effects) = election(
        v,
        vec![peer_at("node1", Some(900)), peer_at("node3", Some(1000))],
    );
    assert!(effects.contains(&Effect::AcquireLeader { lease: LEASE }));
    // Having won the votes, the promotion gate lets a non-voter through.
    node.handle_input(
        Instant(20),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::WriteSync { .. })),
        "claims /sync before promoting: {effects:?}"
    );
}

#[test]
fn strict_mode_promotes_with_synchronous_standby_names_already_set() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let mut v = sync_mode_view(Some((&[ME], 9)));
    if let Some(config) = v.config.as_mut() {
        config.value.synchronous_mode_strict = true;
    }
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    drain(&mut node);
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let seq = sync_write_seq(&drain(&mut node));
    node.handle_input(Instant(t), Input::SyncWritten { seq, ok: true });
    let promote = drain(&mut node)
        .into_iter()
        .find_map(|e| match e {
            Effect::Pg(PgAction::Promote { sync_standbys, .. }) => Some(sync_standbys),
            _ => None,
        })
        .expect("promotes");
    let names = promote.expect("strict mode sets synchronous_standby_names before promoting");
    assert_eq!(names.render(), "FIRST 1 (node1,node3)");
}

/// The view of a synchronous-mode cluster we lead (at `revision`), `/sync` recording
/// `sync_standby` (at `sync_revision`).
fn sync_leader_view(
    strict: bool,
    revision: i64,
    sync_standby: Vec<String>,
    sync_revision: i64,
) -> ClusterView {
    let mut v = view(Some((ME, LEASE.0)), 0, revision);
    v.members.get_mut(ME).expect("me").role = "primary".into();
    v.config = Some(Versioned {
        value: DynamicConfig {
            synchronous_mode: pgwarden::config::SynchronousMode::On,
            synchronous_mode_strict: strict,
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            ..DynamicConfig::default()
        },
        mod_revision: Revision(2),
    });
    v.sync = Some(Versioned {
        value: SyncState {
            leader: Some(ME.into()),
            sync_standby,
            quorum: 0,
        },
        mod_revision: Revision(sync_revision),
    });
    v
}

/// The bootstrapped primary in synchronous mode (strict or not) with node3 streaming.
fn sync_primary(strict: bool, streaming: bool) -> (Node, Vec<Effect>) {
    let mut node = primary();
    let v = sync_leader_view(strict, 30, Vec::new(), 25);
    node.handle_input(Instant(600), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    let mut observed = pg(false, 2000);
    if let Some(server) = observed.server.as_mut() {
        if streaming {
            server.replication.push(streaming_peer("node3", 2000));
        }
    }
    node.handle_input(Instant(1600), Input::Tick);
    drain(&mut node);
    node.handle_input(Instant(1600), Input::PostgresProbed(observed));
    let effects = drain(&mut node);
    (node, effects)
}

#[test]
fn a_primary_configures_its_standby_on_the_first_cycle_and_looks_again_soon() {
    let (mut node, effects) = sync_primary(false, true);
    let action = effects
        .iter()
        .find_map(|e| match e {
            Effect::Pg(action @ PgAction::SetSyncStandbys { names })
                if names.members() == vec!["node3".to_string()] =>
            {
                Some(action.clone())
            }
            _ => None,
        })
        .expect("node3 configured on the first cycle");
    node.handle_input(
        Instant(1700),
        Input::PgActionFinished {
            action,
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    drain(&mut node);
    // PostgreSQL has the setting; node3 has not confirmed yet.
    let mut observed = pg(false, 2100);
    if let Some(server) = observed.server.as_mut() {
        server.synchronous_standby_names = "\"node3\"".into();
        server.replication.push(streaming_peer("node3", 2000));
    }
    // The probe out when the action finished is stale; the one it triggers decides.
    node.handle_input(Instant(1700), Input::PostgresProbed(observed.clone()));
    assert!(drain(&mut node).contains(&Effect::ProbePostgres));
    node.handle_input(Instant(1700), Input::PostgresProbed(observed));
    drain(&mut node);
    let next = node.poll_timeout().expect("a timeout");
    assert!(
        next.0 < 1700 + 1000,
        "looks again before loop_wait while the set is being built: {next:?}"
    );
}

#[test]
fn strict_mode_with_no_standby_keeps_a_placeholder_and_never_clears_it() {
    let (_, effects) = sync_primary(true, false);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Pg(PgAction::SetSyncStandbys { names })
                if names.names == vec![pgwarden::core::sync::STRICT_PLACEHOLDER.to_string()]
        )),
        "{effects:?}"
    );
    let (_, effects) = sync_primary(false, false);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::SetSyncStandbys { .. }))),
        "non-strict with no standby leaves the setting empty: {effects:?}"
    );
}

#[test]
fn a_sync_standby_that_stops_replying_is_dropped_before_its_connection_times_out() {
    // node3 is the recorded synchronous standby, node1 streams asynchronously. node3's
    // link is cut: PostgreSQL still shows it streaming (until wal_sender_timeout), but its
    // reply time stops moving at 3 s. With the default status interval (1 s) it counts as
    // silent after 5 s, and the first step drops it from /sync (FIRST mode: /sync first).
    let (mut node, effects) = sync_primary(false, true);
    for effect in effects {
        if let Effect::Pg(action) = effect {
            node.handle_input(
                Instant(1_650),
                Input::PgActionFinished {
                    action,
                    outcome: PgActionOutcome::Done { sysid: None },
                },
            );
        }
    }
    let v = sync_leader_view(false, 40, vec!["node3".into()], 35);
    node.handle_input(
        Instant(1_700),
        Input::ClusterChanged(std::sync::Arc::new(v)),
    );
    drain(&mut node);
    let observed_at = |t: u64| {
        let mut observed = pg(false, 2000);
        let server = observed.server.as_mut().expect("running");
        server.synchronous_standby_names = "\"node3\"".into();
        let mut node3 = streaming_peer("node3", 2000);
        node3.sync_state = "sync".into();
        node3.reply_time = Some(format!("reply at {}", t.min(3_000)));
        let mut node1 = streaming_peer("node1", 2000);
        node1.reply_time = Some(format!("reply at {t}"));
        server.replication = vec![node3, node1];
        observed
    };
    let drops_node3 = |effects: &[Effect]| {
        effects.iter().any(|e| match e {
            Effect::WriteSync { state, .. } => !state.sync_standby.contains(&"node3".into()),
            Effect::Pg(PgAction::SetSyncStandbys { names }) => {
                !names.members().contains(&"node3".into())
            }
            _ => false,
        })
    };
    let mut dropped_at = None;
    for t in (2_000..=12_000).step_by(500) {
        renew_until(&mut node, t, t);
        let effects = cycle(&mut node, t, observed_at(t));
        if drops_node3(&effects) {
            let first_write = effects
                .iter()
                .find(|e| matches!(e, Effect::WriteSync { .. } | Effect::Pg(_)));
            assert!(
                matches!(first_write, Some(Effect::WriteSync { state, .. }) if state.sync_standby.is_empty()),
                "/sync gives node3 up before PostgreSQL does: {effects:?}"
            );
            dropped_at = Some(t);
            break;
        }
    }
    // Silent from 3 s on: still trusted at 8 s (5 s), dropped at the next probe.
    assert_eq!(dropped_at, Some(8_500));
    assert!(
        node.status().holds_leader_key,
        "the primary keeps leading meanwhile"
    );
}

/// A primary that keeps its lease alive: renewals acknowledged up to `until`.
fn renew_until(node: &mut Node, from: u64, until: u64) {
    let mut t = from;
    while t <= until {
        node.handle_input(
            Instant(t),
            Input::LeaseRenewed {
                lease: LEASE,
                sent_at: Instant(t),
            },
        );
        t += 1_000;
    }
}

fn frozen_postmaster() -> PgObservation {
    PgObservation {
        server: None,
        postmaster_alive: true,
        silent: true,
        ..pg(false, 5_000)
    }
}

#[test]
fn a_primary_whose_postmaster_accepts_no_connection_is_killed_before_the_key_is_released() {
    let mut node = primary();
    drain(&mut node);
    // The lease stays valid throughout: only PostgreSQL is the problem.
    renew_until(&mut node, 1_000, 1_000);
    node.handle_input(Instant(1_000), Input::PostgresProbed(frozen_postmaster()));
    let effects = drain(&mut node);
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Pg(_))),
        "one silent probe is not yet a frozen primary: {effects:?}"
    );
    assert_eq!(node.state(), "primary");
    renew_until(&mut node, 2_000, 5_000);
    node.handle_input(Instant(5_999), Input::PostgresProbed(frozen_postmaster()));
    assert!(!drain(&mut node)
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))));
    // unresponsive_primary_timeout is 5 s in these settings.
    node.handle_input(Instant(6_000), Input::PostgresProbed(frozen_postmaster()));
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::Immediate
        })),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "the key is kept while the old primary may still commit: {effects:?}"
    );
    assert_eq!(node.state(), "demoting");
    assert!(node
        .status()
        .last_transition
        .contains("accepted no connection"));
    node.handle_input(
        Instant(6_100),
        Input::PgActionFinished {
            action: PgAction::Demote {
                mode: DemoteMode::Immediate,
            },
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::ReleaseLeader {
                lease: Some(LEASE),
                create_revision: Some(_)
            }
        )),
        "once it is down the key goes, naming the exact key: {effects:?}"
    );
}

#[test]
fn a_primary_that_answers_again_is_left_alone() {
    let mut node = primary();
    drain(&mut node);
    renew_until(&mut node, 1_000, 4_000);
    node.handle_input(Instant(1_000), Input::PostgresProbed(frozen_postmaster()));
    node.handle_input(Instant(4_000), Input::PostgresProbed(pg(false, 5_000)));
    drain(&mut node);
    renew_until(&mut node, 5_000, 9_000);
    // Silent again: the clock starts over.
    node.handle_input(Instant(7_000), Input::PostgresProbed(frozen_postmaster()));
    node.handle_input(Instant(9_000), Input::PostgresProbed(frozen_postmaster()));
    assert!(!drain(&mut node)
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))));
    assert_eq!(node.state(), "primary");
}

#[test]
fn a_replica_keeps_its_upstream_while_the_leader_key_blinks() {
    let (mut node, t) = running_replica(1, 1000, 3_000_000);
    // The key vanishes (an etcd hiccup, or the leader's lease expiring) and the node, which
    // is too far behind to race; then the same leader takes the key again.
    let effects = leader_key_deleted(&mut node, t, 1000, 3_000_000);
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::Pg(PgAction::Follow { .. } | PgAction::StartReplica { .. })
        )),
        "primary_conninfo untouched while no leader is known: {effects:?}"
    );
    node.handle_input(
        Instant(t + 500),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node1", 7)), 3_000_000, 30))),
    );
    let mut effects = drain(&mut node);
    node.handle_input(Instant(t + 500), Input::PostgresProbed(pg(true, 1000)));
    effects.extend(drain(&mut node));
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Pg(_))),
        "still following the same leader: nothing to change: {effects:?}"
    );
    assert_eq!(node.state(), "replica");
}

#[test]
fn an_agent_restarted_without_the_store_stops_the_primary_it_finds() {
    let mut node = Node::new(settings(1), Instant(0));
    // No view ever arrives; PostgreSQL runs read-write from before the restart.
    node.handle_input(Instant(0), Input::Tick);
    drain(&mut node);
    node.handle_input(Instant(10), Input::PostgresProbed(pg(false, 5_000)));
    assert!(
        !drain(&mut node)
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))),
        "a store that merely has not answered yet is no reason to stop"
    );
    node.handle_input(
        Instant(2_000),
        Input::DcsUnreachable {
            error: "etcd: not connected after 2s".into(),
        },
    );
    node.handle_input(Instant(2_000), Input::Tick);
    let mut effects = drain(&mut node);
    node.handle_input(Instant(2_010), Input::PostgresProbed(pg(false, 5_000)));
    effects.extend(drain(&mut node));
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock
        })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "demoting");
}

#[test]
fn an_agent_restarted_beside_a_frozen_primary_kills_it_after_the_timeout() {
    let mut node = Node::new(settings(1), Instant(0));
    node.handle_input(
        Instant(0),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node1", 7)), 5_000, 10))),
    );
    node.handle_input(
        Instant(0),
        Input::LeaseGranted {
            lease: LEASE,
            ttl_secs: 6,
            sent_at: Instant(0),
        },
    );
    drain(&mut node);
    // PostgreSQL was a primary (in production, no standby.signal), its postmaster is alive
    // and it answers nothing.
    node.handle_input(Instant(10), Input::PostgresProbed(frozen_postmaster()));
    assert!(!drain(&mut node).iter().any(|e| matches!(e, Effect::Pg(_))));
    assert_eq!(node.state(), "starting");
    node.handle_input(Instant(5_000), Input::Tick);
    assert!(drain(&mut node).contains(&Effect::ProbePostgres));
    node.handle_input(Instant(5_010), Input::PostgresProbed(frozen_postmaster()));
    let effects = drain(&mut node);
    // No key of ours to release afterwards: it is killed at once.
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock
        })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "demoting");
}

#[test]
fn a_standby_that_is_slow_to_start_is_left_alone() {
    let mut node = Node::new(settings(1), Instant(0));
    node.handle_input(
        Instant(0),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node1", 7)), 5_000, 10))),
    );
    drain(&mut node);
    let recovering = PgObservation {
        server: None,
        postmaster_alive: true,
        ..pg(true, 5_000)
    };
    for t in [10, 5_010, 60_010] {
        node.handle_input(Instant(t - 10), Input::Tick);
        drain(&mut node);
        node.handle_input(Instant(t), Input::PostgresProbed(recovering.clone()));
        assert!(!drain(&mut node)
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))));
    }
}

#[test]
fn a_promotion_still_running_at_the_deadline_is_followed_by_a_kill() {
    // The same race as above, up to the promote handed to PostgreSQL.
    let (mut node, t) = running_replica(1, 1000, 1000);
    leader_key_deleted(&mut node, t, 1000, 1000);
    node.handle_input(
        Instant(t),
        Input::PeersProbed(vec![PeerReport {
            name: "node1".into(),
            status: None,
        }]),
    );
    drain(&mut node);
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Promote { .. }))));
    // No renewal lands (etcd unreachable); the promote is slow (a replay backlog). The
    // lease was granted at 0 with ttl 6 and margin 1: the deadline is at 5 s.
    node.handle_input(Instant(5_000), Input::Tick);
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock
        })),
        "the promote may still complete: PostgreSQL must be stopped after it: {effects:?}"
    );
    assert_eq!(node.state(), "demoting");
}

// ----- failsafe mode --------------------------------------------------------------------------

const ALL: &[&str] = &["node1", "node2", "node3"];

/// `view` with `failsafe_mode: true` in `/config` and `/failsafe` listing `listed`.
fn with_failsafe(mut v: ClusterView, listed: &[&str]) -> ClusterView {
    v.config = Some(Versioned {
        value: DynamicConfig {
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            failsafe_mode: true,
            ..DynamicConfig::default()
        },
        mod_revision: Revision(3),
    });
    v.failsafe = listed
        .iter()
        .map(|name| (name.to_string(), member(name).api_url))
        .collect();
    v
}

/// One decision cycle at `t`: the timer, then the probe it asks for.
fn cycle(node: &mut Node, t: u64, observation: PgObservation) -> Vec<Effect> {
    node.handle_input(Instant(t), Input::Tick);
    let mut effects = drain(node);
    node.handle_input(Instant(t), Input::PostgresProbed(observation));
    effects.extend(drain(node));
    effects
}

fn failsafe_round(effects: &[Effect]) -> Option<Vec<String>> {
    effects.iter().find_map(|e| match e {
        Effect::ProbeFailsafe { members } => {
            Some(members.iter().map(|(name, _)| name.clone()).collect())
        }
        _ => None,
    })
}

fn demotes(effects: &[Effect]) -> Option<DemoteMode> {
    effects.iter().find_map(|e| match e {
        Effect::Pg(PgAction::Demote { mode }) => Some(*mode),
        _ => None,
    })
}

/// The bootstrapped primary of `primary()` with failsafe mode on and every member listed.
fn failsafe_primary() -> Node {
    let mut node = primary();
    let mut v = with_failsafe(view(Some((ME, LEASE.0)), 0, 10), ALL);
    v.members.get_mut(ME).expect("me").role = "primary".into();
    node.handle_input(Instant(600), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    assert!(node.status().failsafe.enabled);
    node
}

/// The store stops answering: the renewal sent at 0 is the last acknowledged one (lease
/// deadline 5 s); the failure starts a round at once.
fn store_unreachable(node: &mut Node, t: u64) -> Vec<Effect> {
    node.handle_input(
        Instant(t),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "etcd unreachable".into(),
        },
    );
    drain(node)
}

#[test]
fn a_failsafe_primary_outlives_its_lease_while_every_member_confirms() {
    let mut node = failsafe_primary();
    let effects = store_unreachable(&mut node, 1_000);
    assert_eq!(
        failsafe_round(&effects),
        Some(vec!["node1".to_string(), "node3".to_string()]),
        "{effects:?}"
    );
    assert_eq!(node.status().lease_deadline, Some(Instant(5_000)));
    let mut t = 1_000;
    while t < 12_000 {
        node.handle_input(
            Instant(t + 20),
            Input::FailsafeConfirmed {
                sent_at: Instant(t),
                refusals: Vec::new(),
            },
        );
        let status = node.status();
        assert!(status.failsafe.active, "at {t}");
        // A confirmed round counts like a renewal sent at the round's start.
        assert_eq!(status.lease_deadline, Some(Instant(t + 5_000)));
        t += 1_000;
        let effects = cycle(&mut node, t, pg(false, 1000));
        assert_eq!(demotes(&effects), None, "at {t}: {effects:?}");
        assert!(
            failsafe_round(&effects).is_some(),
            "a round per loop at {t}"
        );
    }
    assert_eq!(node.state(), "primary", "{}", node.status().last_transition);
    let status = node.status();
    let identity = pgwarden::runtime::member::Identity {
        scope: "c".into(),
        name: ME.into(),
        conn_url: String::new(),
        api_url: String::new(),
    };
    let patroni = pgwarden::runtime::member::patroni_json(&identity, &status, None);
    assert_eq!(patroni["failsafe_mode_is_active"], true);
    // Rounds stop being confirmed: the deadline of the last one (sent at t - 1 s) still
    // holds, then demotes (in failsafe mode the rounds decide; no offline stop before).
    node.handle_input(Instant(t + 3_999), Input::Tick);
    assert_eq!(node.state(), "primary");
    node.handle_input(Instant(t + 4_000), Input::Tick);
    assert_eq!(
        demotes(&drain(&mut node)),
        Some(DemoteMode::ImmediateNolock)
    );
}

#[test]
fn one_refusal_or_one_silent_member_demotes_the_failsafe_primary_at_once() {
    for refusal in [
        "node3: 500 this member runs as primary",
        "node1: http://127.0.0.1:8008/node1/failsafe: no answer within 2s",
    ] {
        let mut node = failsafe_primary();
        store_unreachable(&mut node, 1_000);
        node.handle_input(
            Instant(1_010),
            Input::FailsafeConfirmed {
                sent_at: Instant(1_000),
                refusals: Vec::new(),
            },
        );
        node.handle_input(Instant(2_000), Input::Tick);
        assert!(failsafe_round(&drain(&mut node)).is_some());
        node.handle_input(
            Instant(2_500),
            Input::FailsafeConfirmed {
                sent_at: Instant(2_000),
                refusals: vec![refusal.to_string()],
            },
        );
        // At once, before the lease deadline (5 s) even passed, and by a kill: a fast stop
        // could outlive the members' promise not to race.
        assert_eq!(
            demotes(&drain(&mut node)),
            Some(DemoteMode::ImmediateNolock)
        );
        let status = node.status();
        assert_eq!(status.state, "demoting");
        assert!(
            status.last_transition.contains("failsafe") && status.last_transition.contains(refusal),
            "{}",
            status.last_transition
        );
        assert!(!status.failsafe.active);
        // Stopped, PostgreSQL comes back as a standby: the stale view still names us, but
        // nothing lets us promote again until the store renews the lease.
        node.handle_input(
            Instant(2_600),
            Input::PgActionFinished {
                action: PgAction::Demote {
                    mode: DemoteMode::ImmediateNolock,
                },
                outcome: PgActionOutcome::Done { sysid: None },
            },
        );
        drain(&mut node);
        for t in [3_000, 3_100, 3_200] {
            let effects = cycle(&mut node, t, pg(true, 1000));
            assert!(!promotes(&effects), "at {t}: {effects:?}");
        }
    }
}

#[test]
fn the_watchdog_is_fed_after_a_confirmed_round_within_the_ttl() {
    let (mut node, t) = armed_leader();
    let mut v = with_failsafe(view(Some((ME, LEASE.0)), 1000, 23), ALL);
    v.leader.as_mut().expect("leader").create_revision = Revision(21);
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    store_unreachable(&mut node, t + 100);
    let feeds = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| **e == Effect::FeedWatchdog)
            .count()
    };
    node.handle_input(
        Instant(t + 120),
        Input::FailsafeConfirmed {
            sent_at: Instant(t + 100),
            refusals: Vec::new(),
        },
    );
    assert_eq!(feeds(&drain(&mut node)), 1);
    // An answer so late that the device (3 s) would fire after the members may race.
    node.handle_input(
        Instant(t + 4_000),
        Input::FailsafeConfirmed {
            sent_at: Instant(t + 900),
            refusals: Vec::new(),
        },
    );
    assert_eq!(feeds(&drain(&mut node)), 0);
    // A failed round never feeds it.
    node.handle_input(
        Instant(t + 4_100),
        Input::FailsafeConfirmed {
            sent_at: Instant(t + 4_000),
            refusals: vec!["node1: no answer".into()],
        },
    );
    assert_eq!(feeds(&drain(&mut node)), 0);
}

#[test]
fn the_leader_records_every_member_in_failsafe() {
    let mut node = failsafe_primary();
    // /failsafe lacks node3: the leader rewrites it with everyone, itself included.
    let mut v = with_failsafe(view(Some((ME, LEASE.0)), 0, 11), &["node1", "node2"]);
    v.members.get_mut(ME).expect("me").role = "primary".into();
    node.handle_input(Instant(700), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    let effects = cycle(&mut node, 1_000, pg(false, 1000));
    let written = effects.iter().find_map(|e| match e {
        Effect::WriteFailsafe { members } => Some(members.clone()),
        _ => None,
    });
    let members = written.flatten().expect("a /failsafe write");
    assert_eq!(members.keys().collect::<Vec<_>>(), ALL.to_vec());
    // Not asked again in the next loop while the write is on its way.
    let effects = cycle(&mut node, 1_500, pg(false, 1000));
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::WriteFailsafe { .. })));
}

/// Time passing as the runtime shows it to a replica: a tick every 250 ms, probes answered.
fn idle(node: &mut Node, from: u64, to: u64) -> Vec<Effect> {
    let mut effects = Vec::new();
    for t in (from..to).step_by(250) {
        node.handle_input(Instant(t), Input::Tick);
        let now = drain(node);
        let probed = now.contains(&Effect::ProbePostgres);
        effects.extend(now);
        if probed {
            node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
            effects.extend(drain(node));
        }
    }
    effects
}

/// A replica following node1 with failsafe mode on, past its startup grace (ttl).
fn failsafe_replica(listed: &[&str]) -> (Node, u64) {
    let (mut node, t0) = running_replica(1, 1000, 1000);
    let t = 10_000;
    idle(&mut node, t0, t);
    node.handle_input(
        Instant(t),
        Input::LeaseRenewed {
            lease: LEASE,
            sent_at: Instant(t),
        },
    );
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(with_failsafe(
            view(Some(("node1", 7)), 1000, 15),
            listed,
        ))),
    );
    if drain(&mut node).contains(&Effect::ProbePostgres) {
        node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
        drain(&mut node);
    }
    (node, t)
}

#[test]
fn a_replica_that_accepted_a_heartbeat_does_not_race_for_ttl() {
    let (mut node, t) = failsafe_replica(ALL);
    node.handle_input(
        Instant(t),
        Input::FailsafeHeartbeat {
            leader: "node1".into(),
            request: 7,
        },
    );
    assert_eq!(
        node.status().failsafe.verdict(7),
        Some(&pgwarden::core::failsafe::HeartbeatVerdict::Accepted)
    );
    let effects = leader_key_deleted(&mut node, t + 1_000, 1000, 1000);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    let refusal = node.status().last_race_refusal.unwrap_or_default();
    assert!(refusal.contains("failsafe-heartbeat"), "{refusal}");
    let races = |effects: &[Effect]| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. }))
    };
    assert!(!races(&idle(&mut node, t + 1_000, t + 5_750)));
    // A ttl of observed time after the heartbeat the promise has run out (the unobserved
    // second before the key vanished counted only one step: a little later than a ttl).
    let effects = idle(&mut node, t + 5_750, t + 7_500);
    assert!(
        races(&effects),
        "{:?} {:?} {}",
        node.status().last_race_refusal,
        node.status().failsafe.last_heartbeat,
        node.state()
    );
}

#[test]
fn a_member_missing_from_failsafe_does_not_race() {
    let (mut node, t) = failsafe_replica(&["node1", "node3"]);
    let mut v = with_failsafe(view(None, 1000, 20), &["node1", "node3"]);
    v.revision = Revision(20);
    node.handle_input(
        Instant(t + 1_000),
        Input::ClusterChanged(std::sync::Arc::new(v)),
    );
    let mut effects = drain(&mut node);
    node.handle_input(Instant(t + 1_000), Input::PostgresProbed(pg(true, 1000)));
    effects.extend(drain(&mut node));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    let refusal = node.status().last_race_refusal.unwrap_or_default();
    assert!(refusal.contains("not-in-failsafe"), "{refusal}");
}

#[test]
fn a_racing_member_refuses_heartbeats_and_a_restarted_one_waits_a_ttl() {
    // Racing: a heartbeat now would let the old primary run beside the new one.
    let (mut node, t) = failsafe_replica(&[]);
    leader_key_deleted(&mut node, t + 1_000, 1000, 1000);
    assert_eq!(
        node.state(),
        "candidate",
        "{:?} {}",
        node.status().last_race_refusal,
        node.status().last_transition
    );
    node.handle_input(
        Instant(t + 1_001),
        Input::FailsafeHeartbeat {
            leader: "node1".into(),
            request: 9,
        },
    );
    assert!(matches!(
        node.status().failsafe.verdict(9),
        Some(pgwarden::core::failsafe::HeartbeatVerdict::Refused(_))
    ));
    // Just started: what it accepted before the restart is forgotten, so it waits.
    let (mut young, t) = running_replica(1, 1000, 1000);
    young.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(with_failsafe(
            view(Some(("node1", 7)), 1000, 15),
            &[],
        ))),
    );
    if drain(&mut young).contains(&Effect::ProbePostgres) {
        young.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
        drain(&mut young);
    }
    leader_key_deleted(&mut young, t + 100, 1000, 1000);
    let refusal = young.status().last_race_refusal.unwrap_or_default();
    assert!(refusal.contains("failsafe-startup"), "{refusal}");
}

#[test]
fn a_failsafe_primary_whose_lease_expired_in_the_outage_takes_its_key_back() {
    let mut node = failsafe_primary();
    store_unreachable(&mut node, 1_000);
    node.handle_input(
        Instant(1_010),
        Input::FailsafeConfirmed {
            sent_at: Instant(1_000),
            refusals: Vec::new(),
        },
    );
    drain(&mut node);
    // The store is back and says the lease is gone; the key went with it.
    node.handle_input(
        Instant(1_500),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: true,
            error: "lease not found".into(),
        },
    );
    let effects = drain(&mut node);
    assert_eq!(demotes(&effects), None, "{effects:?}");
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::GrantLease { .. })));
    let fresh = LeaseId(0x43);
    node.handle_input(
        Instant(1_510),
        Input::LeaseGranted {
            lease: fresh,
            ttl_secs: 6,
            sent_at: Instant(1_505),
        },
    );
    drain(&mut node);
    let effects = cycle(&mut node, 2_000, pg(false, 1000));
    assert_eq!(demotes(&effects), None, "{effects:?}");
    assert!(
        effects.contains(&Effect::AcquireLeader { lease: fresh }),
        "{effects:?}"
    );
    node.handle_input(
        Instant(2_010),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(40),
            create_revision: Revision(40),
        },
    );
    drain(&mut node);
    assert_eq!(node.state(), "primary");
    assert!(node.status().holds_leader_key);
    // Had another member taken the key, the primary would demote at once.
    let mut other = failsafe_primary();
    store_unreachable(&mut other, 1_000);
    other.handle_input(
        Instant(1_010),
        Input::FailsafeConfirmed {
            sent_at: Instant(1_000),
            refusals: Vec::new(),
        },
    );
    other.handle_input(
        Instant(1_500),
        Input::ClusterChanged(std::sync::Arc::new(with_failsafe(
            view(Some(("node3", 99)), 0, 30),
            ALL,
        ))),
    );
    assert_eq!(
        demotes(&drain(&mut other)),
        Some(DemoteMode::ImmediateNolock)
    );
}

#[test]
fn the_watchdog_is_not_armed_for_a_promotion_when_the_last_renewal_is_too_old() {
    // The lease was granted at 0 (ttl 6): it may expire at 6 s. A 3 s watchdog armed at
    // 3.5 s would fire at 6.5 s, after another member could lead: no promotion then.
    let (mut node, _) =
        running_replica_with(watchdog_settings(WatchdogMode::Automatic), 1000, 1000);
    let t = 3_500;
    node.handle_input(Instant(t), Input::WatchdogChecked(Ok(())));
    leader_key_deleted(&mut node, t, 1000, 1000);
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    assert_eq!(
        drain(&mut node),
        vec![Effect::AcquireLeader { lease: LEASE }]
    );
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let effects = drain(&mut node);
    assert!(!promotes(&effects), "{effects:?}");
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ArmWatchdog { .. })),
        "{effects:?}"
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert!(node
        .status()
        .last_race_refusal
        .is_some_and(|r| r.contains("too old to arm")));
}

#[test]
fn a_quorum_vote_read_before_the_key_vanished_does_not_count() {
    // node3's position comes from a probe it asked for before it saw the key go (a voter
    // cut off from the store, or simply a loop-old snapshot): it may predate commits the
    // old primary acknowledged through node3, so it is no vote.
    let leaderless_at = quorum_view().revision;
    let stale = |lsn: u64| {
        let mut p = peer_at("node3", Some(lsn));
        if let Some(s) = p.status.as_mut() {
            s.probe_revision = Some(Revision(leaderless_at.0 - 1));
        }
        p
    };
    let (node, effects) = election(quorum_view(), vec![peer_at("node1", None), stale(1000)]);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert!(node
        .status()
        .policy
        .gate_rejections
        .contains_key("quorum-not-reached"));
    // The same answer from a probe asked for once the key was seen free counts.
    let fresh = |lsn: u64| {
        let mut p = peer_at("node3", Some(lsn));
        if let Some(s) = p.status.as_mut() {
            s.probe_revision = Some(leaderless_at);
        }
        p
    };
    let (_, effects) = election(quorum_view(), vec![peer_at("node1", None), fresh(1000)]);
    assert!(
        effects.contains(&Effect::AcquireLeader { lease: LEASE }),
        "{effects:?}"
    );
}

#[test]
fn a_primary_that_answers_with_errors_is_not_killed() {
    // Too many clients, or a pg_hba that locks the agent out: PostgreSQL answers, with an
    // error. That is not a frozen postmaster, and killing it would fail over for nothing.
    let mut node = primary();
    drain(&mut node);
    renew_until(&mut node, 1_000, 20_000);
    let refusing = PgObservation {
        silent: false,
        ..frozen_postmaster()
    };
    for t in [1_000, 6_000, 12_000, 20_000] {
        node.handle_input(Instant(t), Input::PostgresProbed(refusing.clone()));
        assert!(!drain(&mut node)
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Demote { .. }))));
    }
    assert_eq!(node.state(), "primary");
}

#[test]
fn a_failed_start_is_retried_at_the_next_cycle_not_at_once() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    // PostgreSQL went down (shut down cleanly, as a standby).
    let mut stopped = pg(true, 1000);
    stopped.server = None;
    stopped.postmaster_alive = false;
    stopped.data_dir = DataDir::Initialized {
        sysid: "7300".into(),
        state: ControlState::ShutDownInRecovery,
        timeline: Timeline(1),
        standby_signal: true,
    };
    let start_of = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Pg(a @ PgAction::StartReplica { .. }) => Some(a.clone()),
            _ => None,
        })
    };
    let mut now = t + 1000;
    node.handle_input(Instant(now), Input::Tick);
    drain(&mut node);
    node.handle_input(Instant(now), Input::PostgresProbed(stopped.clone()));
    let start = start_of(&drain(&mut node)).expect("starts PostgreSQL again");
    node.handle_input(
        Instant(now),
        Input::PgActionFinished {
            action: start,
            outcome: PgActionOutcome::Failed {
                error: "pg_ctl start: exit status 1".into(),
            },
        },
    );
    // No probe (and so no new start) before a loop_wait has passed.
    let loop_wait = 1_000 * u64::from(node.status().config.loop_wait.max(1));
    let effects = drain(&mut node);
    assert!(!effects.contains(&Effect::ProbePostgres), "{effects:?}");
    let wake = node.poll_timeout().expect("a wake-up");
    assert!(
        wake >= Instant(now + loop_wait),
        "woken at {wake:?}, before a loop_wait after the failure at {now}"
    );
    now += loop_wait;
    node.handle_input(Instant(now), Input::Tick);
    assert!(drain(&mut node).contains(&Effect::ProbePostgres));
    node.handle_input(Instant(now), Input::PostgresProbed(stopped));
    assert!(
        start_of(&drain(&mut node)).is_some(),
        "retried at the next cycle"
    );
}

#[test]
fn a_failed_rewind_is_tried_again_instead_of_starting_the_diverged_data() {
    let mut s = settings(1);
    s.use_pg_rewind = Some(true);
    let (mut node, t) = running_replica_with(s, 5000, 5000);
    // node3 was promoted at 4000, which this standby had already passed on timeline 1.
    let mut v = view(Some(("node3", 9)), 6000, 20);
    v.history = vec![HistoryEntry {
        timeline: Timeline(1),
        switch_lsn: Lsn(4000),
        reason: "no recovery target specified".into(),
        timestamp: None,
        new_leader: Some("node3".into()),
    }];
    node.handle_input(Instant(t), Input::ClusterChanged(std::sync::Arc::new(v)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 5000)));
    let rewind_of = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Pg(a @ PgAction::Rewind { .. }) => Some(a.clone()),
            _ => None,
        })
    };
    let rewind = rewind_of(&drain(&mut node)).expect("a diverged standby is rewound");
    node.handle_input(
        Instant(t),
        Input::PgActionFinished {
            action: rewind,
            outcome: PgActionOutcome::Failed {
                error: "pg_rewind: could not find previous WAL record".into(),
            },
        },
    );
    drain(&mut node);
    // PostgreSQL is down (pg_rewind needs it so); the next cycle comes a loop_wait later.
    let mut stopped = pg(true, 5000);
    stopped.server = None;
    stopped.postmaster_alive = false;
    stopped.data_dir = DataDir::Initialized {
        sysid: "7300".into(),
        state: ControlState::ShutDownInRecovery,
        timeline: Timeline(1),
        standby_signal: true,
    };
    let now = t + 1_000;
    node.handle_input(Instant(now), Input::Tick);
    assert!(drain(&mut node).contains(&Effect::ProbePostgres));
    node.handle_input(Instant(now), Input::PostgresProbed(stopped));
    let effects = drain(&mut node);
    assert!(
        rewind_of(&effects).is_some(),
        "rewound again rather than started as it is: {effects:?}"
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::StartReplica { .. }))));
}

#[test]
fn an_offline_stop_of_a_frozen_postmaster_is_turned_into_a_kill() {
    let mut node = primary();
    drain(&mut node);
    node.handle_input(
        Instant(1_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "unavailable".into(),
        },
    );
    node.handle_input(Instant(3_000), Input::Tick);
    assert_eq!(demotes(&drain(&mut node)), Some(DemoteMode::Offline));
    // The store answers again, so the deadline moves away; but the postmaster is frozen and
    // the fast stop can never finish.
    renew_until(&mut node, 3_100, 3_100);
    node.handle_input(Instant(3_200), Input::PostgresProbed(frozen_postmaster()));
    assert_eq!(demotes(&drain(&mut node)), None);
    renew_until(&mut node, 4_100, 8_100);
    // unresponsive_primary_timeout is 5 s from the first silent probe.
    node.handle_input(Instant(8_199), Input::PostgresProbed(frozen_postmaster()));
    assert_eq!(demotes(&drain(&mut node)), None);
    node.handle_input(Instant(8_200), Input::PostgresProbed(frozen_postmaster()));
    assert_eq!(
        demotes(&drain(&mut node)),
        Some(DemoteMode::ImmediateNolock)
    );
}

/// What the core answered to `POST /reinitialize` request `request`.
fn reinitialize_verdict(node: &Node, request: u64) -> Result<(), String> {
    node.status()
        .reinitialize_verdicts
        .iter()
        .find(|(id, _)| *id == request)
        .map(|(_, verdict)| verdict.clone())
        .unwrap_or_else(|| panic!("no verdict for request {request}"))
}

#[test]
fn reinitialize_wipes_and_reclones_a_replica_from_the_leader() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(Instant(t), Input::ReinitializeRequested { request: 1 });
    assert_eq!(reinitialize_verdict(&node, 1), Ok(()));
    let effects = drain(&mut node);
    let action = effects
        .iter()
        .find_map(|e| match e {
            Effect::Pg(action @ PgAction::Reinitialize { from }) if from.name == "node1" => {
                Some(action.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("a re-clone from the leader: {effects:?}"));
    assert_eq!(node.state(), "cloning");
    // A second request while the copy runs is refused, not queued or cancelling it.
    node.handle_input(Instant(t + 1), Input::ReinitializeRequested { request: 2 });
    assert_eq!(
        reinitialize_verdict(&node, 2),
        Err("reinitialize already in progress".to_string())
    );
    assert!(!drain(&mut node).iter().any(|e| matches!(e, Effect::Pg(_))));
    node.handle_input(
        Instant(t + 2),
        Input::PgActionFinished {
            action,
            outcome: PgActionOutcome::Done {
                sysid: Some("7300".into()),
            },
        },
    );
    drain(&mut node);
    assert_eq!(node.state(), "replica");
}

#[test]
fn reinitialize_is_refused_on_the_leader_and_without_one() {
    let mut node = primary();
    node.handle_input(Instant(600), Input::ReinitializeRequested { request: 7 });
    assert_eq!(
        reinitialize_verdict(&node, 7),
        Err("I am the leader, can not reinitialize".to_string())
    );
    assert!(!drain(&mut node)
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Reinitialize { .. }))));
    assert_eq!(node.state(), "primary");

    let (mut replica, t) = running_replica(1, 1000, 1000);
    let mut leaderless = view(None, 1000, 20);
    leaderless.optime = Some(Lsn(1000));
    replica.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(leaderless)),
    );
    drain(&mut replica);
    replica.handle_input(Instant(t), Input::ReinitializeRequested { request: 8 });
    assert_eq!(
        reinitialize_verdict(&replica, 8),
        Err("Cluster has no leader, can not reinitialize".to_string())
    );
}

#[test]
fn a_failed_reinitialize_is_cloned_again_at_a_later_cycle() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(Instant(t), Input::ReinitializeRequested { request: 1 });
    let action = drain(&mut node)
        .into_iter()
        .find_map(|e| match e {
            Effect::Pg(action @ PgAction::Reinitialize { .. }) => Some(action),
            _ => None,
        })
        .expect("a re-clone");
    node.handle_input(
        Instant(t + 100),
        Input::PgActionFinished {
            action,
            outcome: PgActionOutcome::Failed {
                error: "pg_basebackup: connection refused".into(),
            },
        },
    );
    drain(&mut node);
    assert_eq!(node.state(), "starting");
    // The action wiped the directory before the copy failed; a loop_wait later the node
    // clones from the leader.
    let empty = PgObservation {
        data_dir: DataDir::Empty,
        postmaster_alive: false,
        server: None,
        silent: false,
    };
    let effects = cycle(&mut node, t + 1_200, empty);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Pg(PgAction::Clone { from }) if from.name == "node1")),
        "{effects:?}"
    );
}

#[test]
fn reinitialize_refuses_a_data_directory_of_another_cluster() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let mut other = view(Some(("node1", 7)), 1000, 30);
    other.initialize = Some("9999".into());
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(other)),
    );
    drain(&mut node);
    node.handle_input(Instant(t), Input::ReinitializeRequested { request: 3 });
    let verdict = reinitialize_verdict(&node, 3);
    assert!(
        verdict
            .as_ref()
            .is_err_and(|why| why.contains("belongs to another cluster")),
        "{verdict:?}"
    );
    assert!(!drain(&mut node)
        .iter()
        .any(|e| matches!(e, Effect::Pg(PgAction::Reinitialize { .. }))));
}

/// The timer table names each moment the node wants to be woken at; `poll_timeout` is the
/// earliest, and a wake-up says which were due.
#[test]
fn the_timer_table_names_why_the_node_wakes() {
    use pgwarden::core::timers::Timer;
    let mut node = primary();
    drain(&mut node);
    node.handle_input(
        Instant(1_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "unavailable".into(),
        },
    );
    drain(&mut node);
    let timers = node.timers();
    // ttl 6 s, margin 1 s, retry_timeout 2 s.
    assert_eq!(timers.get(Timer::DemotionDeadline), Some(Instant(5_000)));
    assert_eq!(timers.get(Timer::OfflineStop), Some(Instant(3_000)));
    assert_eq!(timers.get(Timer::StopKill), None, "nothing is stopping");
    assert_eq!(
        node.poll_timeout(),
        timers.earliest().map(|(_, at)| at),
        "poll_timeout is the table's minimum"
    );
    let due = node.handle_timeout(Instant(3_000));
    assert!(due.contains(&Timer::OfflineStop), "{due:?}");
    assert!(!due.contains(&Timer::DemotionDeadline), "{due:?}");
    drain(&mut node);
    assert_eq!(node.state(), "demoting");
    // The offline stop runs: at the deadline it would be killed.
    assert_eq!(node.timers().get(Timer::StopKill), Some(Instant(5_000)));
}

/// A replica whose leader key vanished, now a candidate that probed its peers and asked the
/// policy; returns the election call, unanswered.
fn candidate_asking() -> (Node, u64, pgwarden::core::PolicyCall) {
    let (mut node, t) = running_replica(1, 1000, 1000);
    leader_key_deleted(&mut node, t, 1000, 1000);
    assert_eq!(node.state(), "candidate");
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    let call = drain_raw(&mut node)
        .into_iter()
        .find_map(|e| match e {
            Effect::ConsultPolicy(call)
                if call.purpose == pgwarden::core::ConsultPurpose::Election =>
            {
                Some(*call)
            }
            _ => None,
        })
        .expect("the election call");
    (node, t, call)
}

/// A policy that never answers the election does not keep the node a candidate: after
/// `ttl` the race is abandoned, and the same cycle, seeing the key still free, starts a new
/// election (peers probed again, the policy asked again).
#[test]
fn an_election_the_policy_does_not_answer_is_abandoned_after_ttl() {
    let (mut node, t, _call) = candidate_asking();
    let mut made = Vec::new();
    for at in [t + 3_000, t + 6_100] {
        // The lease is renewed meanwhile: only the unanswered call ends the race.
        node.handle_input(
            Instant(at),
            Input::LeaseRenewed {
                lease: LEASE,
                sent_at: Instant(at),
            },
        );
        node.handle_input(Instant(at), Input::Tick);
        drain(&mut node);
        // The runtime answers the probes the node asks for.
        for _ in 0..2 {
            node.handle_input(Instant(at), Input::PostgresProbed(pg(true, 1000)));
            made.extend(transitions(&mut node).into_iter().map(|t| (at, t)));
            drain(&mut node);
        }
    }
    let codes: Vec<(u64, &str, &str)> = made
        .iter()
        .map(|(at, t)| (*at, t.to, t.why.code()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (t + 6_100, "replica", "policy-did-not-answer"),
            (t + 6_100, "candidate", "leader-key-free"),
        ]
    );
}

/// The lease expires while the policy decides: the race is abandoned at once (a candidate
/// without a lease is past its deadline), and the policy's late "race" answer acquires
/// nothing.
#[test]
fn a_lease_lost_while_the_policy_decides_ends_the_race() {
    let (mut node, t, call) = candidate_asking();
    node.handle_input(
        Instant(t + 10),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: true,
            error: "lease not found".into(),
        },
    );
    drain_raw(&mut node);
    node.handle_input(
        Instant(t + 20),
        Input::PolicyDecided(decide_with_default(&call)),
    );
    let effects = drain(&mut node);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::AcquireLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
    assert!(
        node.status().last_transition.contains("race abandoned"),
        "{}",
        node.status().last_transition
    );
}

/// A promotion PostgreSQL refuses: the key is released at once, so a healthy member can
/// take it, and the node is a replica again.
#[test]
fn a_failed_promotion_releases_the_key() {
    let (mut node, t, effects) = replica_wins_the_key(WatchdogMode::Off);
    let promote = promotion_among(effects);
    node.handle_input(
        Instant(t + 10),
        Input::PgActionFinished {
            action: promote,
            outcome: PgActionOutcome::Failed {
                error: "pg_ctl promote: server did not promote in time".into(),
            },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "replica");
    assert!(!node.status().holds_leader_key);
}

/// The operator's `pre_promote` script refuses the promotion (Patroni's fencing hook): the
/// key is released at once and the node sits out the races for a `ttl`, so another member
/// can take the key, then races again.
#[test]
fn a_promotion_the_pre_promote_script_vetoes_releases_the_key_and_sits_out_the_races_for_ttl() {
    let (mut node, t, effects) = replica_wins_the_key(WatchdogMode::Off);
    let promote = promotion_among(effects);
    node.handle_input(
        Instant(t + 10),
        Input::PgActionFinished {
            action: promote,
            outcome: PgActionOutcome::Vetoed {
                error: "pre_promote `/usr/local/bin/fence.sh` exited with 1".into(),
            },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "{effects:?}"
    );
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::RunCallback(_))),
        "nothing happened to PostgreSQL: {effects:?}"
    );
    assert_eq!(node.state(), "replica");
    assert!(node.status().last_transition.contains("pre_promote"));
    // The key is free; within ttl (6 s) this node does not race for it.
    node.handle_input(
        Instant(t + 1000),
        Input::ClusterChanged(std::sync::Arc::new(view(None, 1000, 30))),
    );
    let mut effects = drain(&mut node);
    node.handle_input(Instant(t + 1000), Input::PostgresProbed(pg(true, 1000)));
    effects.extend(drain(&mut node));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
    assert!(node
        .status()
        .last_race_refusal
        .is_some_and(|r| r.contains("pre_promote")));
    // After it, it races again.
    let effects = cycle(&mut node, t + 6100, pg(true, 1000));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ProbePeers { .. })),
        "{effects:?}"
    );
}

/// The callbacks follow what happens to PostgreSQL: the agent's first sight of its running
/// standby is an `on_start`, a promotion an `on_role_change` to `primary`.
#[test]
fn the_callbacks_hear_of_the_first_start_and_of_a_promotion() {
    let (mut node, t, effects) = replica_wins_the_key(WatchdogMode::Off);
    let promote = promotion_among(effects);
    node.handle_input(
        Instant(t + 10),
        Input::PgActionFinished {
            action: promote,
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    let effects = drain(&mut node);
    assert!(
        effects.contains(&Effect::RunCallback(Callback {
            kind: CallbackKind::OnRoleChange,
            role: CallbackRole::Primary,
        })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "primary");
    // A fresh agent under a running standby: its first probe.
    let mut fresh = Node::new(settings(1), Instant(0));
    fresh.handle_input(
        Instant(0),
        Input::ClusterChanged(std::sync::Arc::new(view(Some(("node1", 7)), 1000, 10))),
    );
    drain(&mut fresh);
    fresh.handle_input(
        Instant(0),
        Input::LeaseGranted {
            lease: LEASE,
            ttl_secs: 6,
            sent_at: Instant(0),
        },
    );
    fresh.handle_input(Instant(0), Input::PostgresProbed(pg(true, 1000)));
    let callbacks = |effects: Vec<Effect>| -> Vec<Effect> {
        effects
            .into_iter()
            .filter(|e| matches!(e, Effect::RunCallback(_)))
            .collect()
    };
    // Its cycle points the standby at the leader: nothing to tell the scripts yet.
    let effects = drain(&mut fresh);
    let follow = effects
        .iter()
        .find_map(|e| match e {
            Effect::Pg(action @ PgAction::Follow { .. }) => Some(action.clone()),
            _ => None,
        })
        .expect("the fresh agent points its standby at the leader");
    assert_eq!(callbacks(effects), vec![]);
    fresh.handle_input(
        Instant(10),
        Input::PgActionFinished {
            action: follow,
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
    assert_eq!(callbacks(drain(&mut fresh)), vec![], "no reload announced");
    // The next cycle leaves it as it is: now it is announced.
    fresh.handle_input(Instant(20), Input::PostgresProbed(pg(true, 1000)));
    assert_eq!(
        callbacks(drain(&mut fresh)),
        vec![Effect::RunCallback(Callback {
            kind: CallbackKind::OnStart,
            role: CallbackRole::Replica,
        })]
    );
}

/// A clean stop that fails (here one a policy asked for) leaves PostgreSQL running as the
/// primary: the key is kept (it is released only once PostgreSQL is down), and the next
/// cycle finds a running primary holding the key and leads again.
#[test]
fn a_primary_whose_clean_stop_fails_keeps_its_key_and_leads_again() {
    let (mut node, _) = primary_asked_to_step_down();
    assert_eq!(node.state(), "demoting");
    node.handle_input(
        Instant(700),
        Input::PgActionFinished {
            action: PgAction::Demote {
                mode: DemoteMode::Graceful,
            },
            outcome: PgActionOutcome::Failed {
                error: "pg_ctl stop: timed out".into(),
            },
        },
    );
    let effects = drain(&mut node);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ReleaseLeader { .. })),
        "PostgreSQL may still run: the key stays: {effects:?}"
    );
    assert_eq!(node.state(), "starting");
    assert!(node.status().holds_leader_key);
    // The runtime answers the probes the node asks for; PostgreSQL still runs as primary.
    for at in [800, 900] {
        node.handle_input(Instant(at), Input::PostgresProbed(pg(false, 2000)));
        drain(&mut node);
    }
    assert_eq!(node.state(), "primary");
    assert!(node
        .status()
        .last_transition
        .contains("holding the leader key"));
}

/// A primary whose `required` watchdog must be armed again (the ttl changed) and cannot
/// be: it stops PostgreSQL rather than lead unprotected.
#[test]
fn a_required_watchdog_that_cannot_be_armed_again_demotes_the_primary() {
    let (mut node, t) = armed_leader_with(WatchdogMode::Required);
    let mut v = view(Some((ME, LEASE.0)), 1000, 30);
    v.leader.as_mut().expect("leader").create_revision = Revision(21);
    v.config = Some(Versioned {
        value: DynamicConfig {
            ttl: 8,
            loop_wait: 1,
            retry_timeout: 2,
            ..DynamicConfig::default()
        },
        mod_revision: Revision(30),
    });
    node.handle_input(
        Instant(t + 10),
        Input::ClusterChanged(std::sync::Arc::new(v)),
    );
    drain(&mut node);
    node.handle_input(Instant(t + 10), Input::PostgresProbed(pg(false, 1000)));
    let effects = drain(&mut node);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ArmWatchdog { timeout_secs: 4 })),
        "armed again for the new ttl: {effects:?}"
    );
    node.handle_input(
        Instant(t + 20),
        Input::WatchdogArmed(Err("/dev/watchdog: no such device".into())),
    );
    let effects = drain(&mut node);
    let effects = if node.state() == "primary" {
        node.handle_input(Instant(t + 30), Input::PostgresProbed(pg(false, 1000)));
        drain(&mut node)
    } else {
        effects
    };
    assert!(
        effects.contains(&Effect::Pg(PgAction::Demote {
            mode: DemoteMode::Immediate
        })),
        "{effects:?}"
    );
    assert_eq!(node.state(), "demoting");
    assert!(node
        .status()
        .last_transition
        .contains("watchdog required but unusable"));
}

/// Every scenario above, for the state-machine table (`tests/sim/table.rs`), which runs
/// them all and reads the transitions they made.
#[allow(dead_code)] // read by the simulation binary, which includes this file
pub const SCENARIOS: &[fn()] = &[
    paused_the_leader_hands_over_to_the_named_candidate_and_rejoins_as_a_standby,
    a_scheduled_switchover_waits_out_maintenance_mode,
    paused_a_failed_handover_stop_leaves_the_pause_guard_whole,
    paused_only_the_named_candidate_races_and_is_promoted,
    a_diverged_standby_is_kept_when_nothing_may_repair_it,
    a_nostream_member_never_streams_and_the_leader_keeps_no_slot_for_it,
    the_timer_table_names_why_the_node_wakes,
    an_election_the_policy_does_not_answer_is_abandoned_after_ttl,
    a_lease_lost_while_the_policy_decides_ends_the_race,
    a_failed_promotion_releases_the_key,
    a_promotion_the_pre_promote_script_vetoes_releases_the_key_and_sits_out_the_races_for_ttl,
    the_callbacks_hear_of_the_first_start_and_of_a_promotion,
    a_primary_whose_clean_stop_fails_keeps_its_key_and_leads_again,
    a_required_watchdog_that_cannot_be_armed_again_demotes_the_primary,
    healthiest_replica_races_when_the_leader_key_is_deleted,
    a_more_advanced_peer_wins_the_race,
    replica_lagging_beyond_maximum_lag_on_failover_does_not_race,
    nofailover_never_races,
    synchronous_mode_only_lets_sync_members_race,
    a_custom_bootstrap_method_never_bootstraps,
    an_orphaned_initialize_key_is_cleared_after_ttl,
    primary_demotes_when_its_lease_cannot_be_renewed_before_the_deadline,
    a_clean_offline_stop_releases_the_key_and_never_restarts_as_primary_meanwhile,
    primary_demotes_at_once_when_the_lease_is_lost,
    primary_demotes_when_another_member_holds_the_key,
    renewals_move_the_deadline_forward,
    a_runtime_config_that_breaks_the_lease_budget_is_adjusted_or_rejected,
    a_restarted_agent_takes_its_own_leader_key_back_onto_its_new_lease,
    a_former_primary_rejoins_with_pg_rewind_or_a_fresh_clone,
    a_running_primary_that_may_not_lead_is_demoted,
    synchronous_mode_claims_sync_before_promoting,
    a_lost_sync_claim_postpones_the_promotion,
    a_promotion_resumed_after_a_stop_claims_sync_again,
    a_lock_store_that_went_back_in_time_starts_a_new_history,
    a_paused_primary_is_never_demoted_by_the_agent,
    paused_standbys_do_not_race_and_a_paused_leader_down_starts_nothing,
    a_race_under_way_when_the_pause_comes_promotes_nothing,
    a_ttl_change_rotates_a_replicas_lease,
    a_ttl_change_moves_the_leader_key_onto_the_new_lease_without_demoting,
    the_watchdog_is_armed_before_promotion_and_promotion_waits_for_it,
    a_required_watchdog_that_fails_to_arm_releases_the_key_and_never_promotes,
    an_automatic_watchdog_that_fails_to_arm_still_promotes_and_says_so,
    a_required_device_with_a_longer_timeout_than_asked_is_refused_and_closed,
    the_watchdog_is_fed_only_after_a_successful_renewal,
    the_watchdog_is_disarmed_once_a_demoted_primary_has_stopped,
    a_node_whose_watchdog_is_required_but_missing_never_races,
    a_watchdog_timeout_below_loop_wait_makes_required_unusable_and_automatic_lead_without_it,
    the_gate_refuses_a_policy_that_races_while_another_member_leads,
    the_gate_refuses_an_election_answer_once_the_node_lags,
    a_policy_that_waits_postpones_the_race_and_is_asked_again,
    a_policy_may_demote_the_primary_early_and_the_key_is_released_only_after_the_stop,
    a_switchover_to_a_ready_standby_stops_the_leader_cleanly_before_the_key_is_released,
    a_switchover_the_policy_declines_is_cleared_with_the_reason,
    a_scheduled_switchover_waits_for_its_time_then_hands_over,
    a_stale_scheduled_switchover_is_dropped,
    the_leader_clears_requests_that_are_done_stale_or_scheduled,
    an_operators_failover_waives_the_sync_rule_for_its_candidate_only,
    a_policy_may_choose_which_sync_standbys_but_not_fewer_than_could_be_had,
    quorum_mode_races_only_with_enough_votes_whatever_the_policy_says,
    quorum_mode_lets_a_non_voter_win_with_quorum_plus_one_votes,
    strict_mode_promotes_with_synchronous_standby_names_already_set,
    a_primary_configures_its_standby_on_the_first_cycle_and_looks_again_soon,
    strict_mode_with_no_standby_keeps_a_placeholder_and_never_clears_it,
    a_sync_standby_that_stops_replying_is_dropped_before_its_connection_times_out,
    a_primary_whose_postmaster_accepts_no_connection_is_killed_before_the_key_is_released,
    a_primary_that_answers_again_is_left_alone,
    a_replica_keeps_its_upstream_while_the_leader_key_blinks,
    an_agent_restarted_without_the_store_stops_the_primary_it_finds,
    an_agent_restarted_beside_a_frozen_primary_kills_it_after_the_timeout,
    a_standby_that_is_slow_to_start_is_left_alone,
    a_promotion_still_running_at_the_deadline_is_followed_by_a_kill,
    a_failsafe_primary_outlives_its_lease_while_every_member_confirms,
    one_refusal_or_one_silent_member_demotes_the_failsafe_primary_at_once,
    the_watchdog_is_fed_after_a_confirmed_round_within_the_ttl,
    the_leader_records_every_member_in_failsafe,
    a_replica_that_accepted_a_heartbeat_does_not_race_for_ttl,
    a_member_missing_from_failsafe_does_not_race,
    a_racing_member_refuses_heartbeats_and_a_restarted_one_waits_a_ttl,
    a_failsafe_primary_whose_lease_expired_in_the_outage_takes_its_key_back,
    the_watchdog_is_not_armed_for_a_promotion_when_the_last_renewal_is_too_old,
    a_quorum_vote_read_before_the_key_vanished_does_not_count,
    a_primary_that_answers_with_errors_is_not_killed,
    a_failed_start_is_retried_at_the_next_cycle_not_at_once,
    a_failed_rewind_is_tried_again_instead_of_starting_the_diverged_data,
    an_offline_stop_of_a_frozen_postmaster_is_turned_into_a_kill,
    reinitialize_wipes_and_reclones_a_replica_from_the_leader,
    reinitialize_is_refused_on_the_leader_and_without_one,
    a_failed_reinitialize_is_cloned_again_at_a_later_cycle,
    reinitialize_refuses_a_data_directory_of_another_cluster,
    a_parameter_change_in_config_is_written_and_reloaded_once_nothing_else_runs,
    a_restarted_standby_comes_back_following_the_leader,
    a_restarted_primary_keeps_its_key_and_starts_as_primary,
    a_reloaded_nofailover_tag_keeps_the_standby_out_of_the_race,
    a_primary_that_does_not_start_within_primary_start_timeout_hands_over,
    a_scheduled_restart_runs_at_its_time_and_a_deleted_one_never,
];

/// `view` with a `/config` (the test timing) that sets `work_mem`.
fn with_work_mem(mut v: ClusterView, work_mem: &str) -> ClusterView {
    let mut config = DynamicConfig {
        ttl: 6,
        loop_wait: 1,
        retry_timeout: 2,
        ..DynamicConfig::default()
    };
    config
        .postgresql
        .parameters
        .insert("work_mem".into(), work_mem.into());
    v.config = Some(Versioned {
        value: config,
        mod_revision: Revision(3),
    });
    v
}

/// A former primary's data directory after a clean shutdown, nothing running.
fn primary_shut_down() -> PgObservation {
    PgObservation {
        data_dir: DataDir::Initialized {
            sysid: "7300".into(),
            state: ControlState::ShutDown,
            timeline: Timeline(1),
            standby_signal: false,
        },
        postmaster_alive: false,
        server: None,
        silent: false,
    }
}

/// Feeds `input` at `at`, answers the probe the node then asks for with `observation`, and
/// returns every effect of both steps.
fn step_with_probe(
    node: &mut Node,
    at: u64,
    input: Input,
    observation: PgObservation,
) -> Vec<Effect> {
    node.handle_input(Instant(at), input);
    let mut effects = drain(node);
    if !effects.contains(&Effect::ProbePostgres) {
        node.handle_input(Instant(at), Input::Tick);
        effects.extend(drain(node));
    }
    node.handle_input(Instant(at), Input::PostgresProbed(observation));
    effects.extend(drain(node));
    effects
}

/// The one Pg action among `effects` (`None` when there is not exactly one).
fn only_action(effects: &[Effect]) -> Option<PgAction> {
    let mut actions = pg_actions(effects);
    (actions.len() == 1).then(|| actions.remove(0))
}

fn pg_actions(effects: &[Effect]) -> Vec<PgAction> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Pg(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// `edit-config` of a parameter reaches every node: the files are rewritten and PostgreSQL
/// reloaded, once no other action runs, and again after a failed attempt.
#[test]
fn a_parameter_change_in_config_is_written_and_reloaded_once_nothing_else_runs() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let changed = |work_mem| {
        Input::ClusterChanged(std::sync::Arc::new(with_work_mem(
            view(Some(("node1", 7)), 1000, 11),
            work_mem,
        )))
    };
    let effects = step_with_probe(&mut node, t, changed("8MB"), pg(true, 1000));
    assert!(
        effects.iter().any(
            |e| matches!(e, Effect::UsePgConfig(c) if c.postgresql.parameters["work_mem"] == "8MB")
        ),
        "the worker gets the new configuration: {effects:?}"
    );
    assert_eq!(
        pg_actions(&effects),
        vec![PgAction::Reload { primary: false }],
        "{effects:?}"
    );
    // Another change while the reload runs waits for it.
    let effects = step_with_probe(&mut node, t + 1_000, changed("16MB"), pg(true, 1000));
    assert_eq!(
        pg_actions(&effects),
        vec![],
        "one action at a time: {effects:?}"
    );
    node.handle_input(
        Instant(t + 1_100),
        Input::PgActionFinished {
            action: PgAction::Reload { primary: false },
            outcome: PgActionOutcome::Failed {
                error: "pg_ctl reload: no server running".into(),
            },
        },
    );
    drain(&mut node);
    // A failure is retried at the next regular cycle, not at once.
    let effects = step_with_probe(&mut node, t + 2_200, Input::Tick, pg(true, 1000));
    assert_eq!(
        pg_actions(&effects),
        vec![PgAction::Reload { primary: false }],
        "{effects:?}"
    );
    finish_pg_action(&mut node, t + 2_300, &effects);
    drain(&mut node);
    let effects = step_with_probe(&mut node, t + 3_400, Input::Tick, pg(true, 1000));
    assert_eq!(
        pg_actions(&effects),
        vec![],
        "nothing left to reload: {effects:?}"
    );
    // The local file re-read (`POST /reload`, SIGHUP) reloads too, even unchanged.
    let reloaded = Input::LocalConfigReloaded {
        settings: settings(1).reloadable(),
    };
    let effects = step_with_probe(&mut node, t + 4_500, reloaded, pg(true, 1000));
    assert_eq!(
        pg_actions(&effects),
        vec![PgAction::Reload { primary: false }],
        "{effects:?}"
    );
}

/// An answer the core keeps for the REST API (`None`: none yet).
type Answer = Option<Result<(), String>>;

/// What the core answered to `POST /restart` request `request`, and how it ended.
fn restart_answers(node: &Node, request: u64) -> (Answer, Answer) {
    let status = node.status();
    let find = |answers: &[(u64, Result<(), String>)]| {
        answers
            .iter()
            .find(|(id, _)| *id == request)
            .map(|(_, r)| r.clone())
    };
    (
        find(&status.restart_verdicts),
        find(&status.restart_results),
    )
}

fn restart_request(request: u64, conditions: RestartConditions) -> Input {
    Input::RestartRequested {
        request,
        conditions,
    }
}

/// `patronictl restart` of a standby: stopped and started again as a standby of the
/// leader; the node waits for it (no start of its own while PostgreSQL is down) and
/// refuses a second restart meanwhile.
#[test]
fn a_restarted_standby_comes_back_following_the_leader() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let primary_only = RestartConditions {
        role: Some(RestartRole::Primary),
        ..Default::default()
    };
    node.handle_input(Instant(t), restart_request(1, primary_only));
    assert_eq!(
        restart_answers(&node, 1).0,
        Some(Err("restart conditions are not satisfied".into()))
    );
    let pending_only = RestartConditions {
        only_if_pending: true,
        ..Default::default()
    };
    node.handle_input(Instant(t), restart_request(2, pending_only));
    assert_eq!(
        restart_answers(&node, 2).0,
        Some(Err("restart conditions are not satisfied".into())),
        "nothing is pending"
    );
    assert_eq!(pg_actions(&drain(&mut node)), vec![]);
    node.handle_input(Instant(t), restart_request(3, RestartConditions::default()));
    assert_eq!(restart_answers(&node, 3), (Some(Ok(())), None));
    let effects = drain(&mut node);
    let Some(PgAction::Restart { start, request }) = only_action(&effects) else {
        panic!("a restart: {effects:?}");
    };
    assert_eq!(request, Some(3));
    assert!(
        matches!(&*start, PgAction::StartReplica { upstream: Some(u) } if u.name == "node1"),
        "{start:?}"
    );
    // PostgreSQL is down while it restarts: the node neither starts it nor leaves its state.
    let mut down = pg(true, 1000);
    down.server = None;
    down.postmaster_alive = false;
    let effects = step_with_probe(&mut node, t + 1_500, Input::Tick, down);
    assert_eq!(pg_actions(&effects), vec![], "{effects:?}");
    assert_eq!(node.state(), "replica");
    assert_eq!(node.status().pg_state(), "restarting");
    node.handle_input(
        Instant(t + 1_500),
        restart_request(4, RestartConditions::default()),
    );
    assert_eq!(
        restart_answers(&node, 4).0,
        Some(Err("restart already in progress".into()))
    );
    finish_pg_action(&mut node, t + 2_000, &effects_of_restart(start, 3));
    assert_eq!(restart_answers(&node, 3), (Some(Ok(())), Some(Ok(()))));
}

fn effects_of_restart(start: Box<PgAction>, request: u64) -> Vec<Effect> {
    vec![Effect::Pg(PgAction::Restart {
        start,
        request: Some(request),
    })]
}

/// `patronictl restart` of the leader: PostgreSQL goes down and comes back as the primary
/// while the node keeps its key and lease (no failover, as Patroni). Were the lease to end
/// meanwhile, the usual demotion would overtake it.
#[test]
fn a_restarted_primary_keeps_its_key_and_starts_as_primary() {
    let mut node = primary();
    drain(&mut node);
    let effects = step_with_probe(&mut node, 600, Input::Tick, pg(false, 5_000));
    finish_actions(&mut node, 600, &effects);
    node.handle_input(
        Instant(700),
        restart_request(1, RestartConditions::default()),
    );
    assert_eq!(restart_answers(&node, 1).0, Some(Ok(())));
    let effects = drain(&mut node);
    let Some(PgAction::Restart { start, .. }) = only_action(&effects) else {
        panic!("a restart: {effects:?}");
    };
    assert!(
        matches!(&*start, PgAction::StartPrimary { .. }),
        "{start:?}"
    );
    let mut down = pg(false, 5_000);
    down.server = None;
    down.postmaster_alive = false;
    for at in [1_700, 2_700, 3_700] {
        renew_until(&mut node, at, at);
        let effects = step_with_probe(&mut node, at, Input::Tick, down.clone());
        assert!(
            !effects.iter().any(|e| matches!(
                e,
                Effect::Pg(_) | Effect::ReleaseLeader { .. } | Effect::RevokeLease { .. }
            )),
            "nothing else while it restarts: {effects:?}"
        );
        assert_eq!(node.state(), "primary");
        assert!(node.status().holds_leader_key);
    }
    finish_pg_action(&mut node, 3_800, &effects_of_restart(start, 1));
    assert_eq!(restart_answers(&node, 1).1, Some(Ok(())));
    assert_eq!(node.state(), "primary");
}

/// Finishes every Pg action among `effects` as done at `at`.
fn finish_actions(node: &mut Node, at: u64, effects: &[Effect]) {
    for action in pg_actions(effects) {
        node.handle_input(
            Instant(at),
            Input::PgActionFinished {
                action,
                outcome: PgActionOutcome::Done { sysid: None },
            },
        );
    }
    drain(node);
}

/// `primary_start_timeout`: a leader whose PostgreSQL does not come back keeps trying (and
/// its key) while no standby could take over, and stops trying and hands over once one
/// can, as Patroni.
#[test]
fn a_primary_that_does_not_start_within_primary_start_timeout_hands_over() {
    let mut node = primary();
    let mut v = view(Some((ME, LEASE.0)), 0, 10);
    v.config = Some(Versioned {
        value: DynamicConfig {
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            primary_start_timeout: 3,
            ..DynamicConfig::default()
        },
        mod_revision: Revision(3),
    });
    v.members.get_mut(ME).expect("me").role = "primary".into();
    for name in ["node1", "node3"] {
        let m = v.members.get_mut(name).expect("a member");
        m.state = "stopped".into();
        m.wal_position = Some(Lsn(0));
    }
    node.handle_input(
        Instant(600),
        Input::ClusterChanged(std::sync::Arc::new(v.clone())),
    );
    drain(&mut node);
    let mut down = pg(false, 0);
    down.server = None;
    down.postmaster_alive = false;
    for at in (1_000..=6_000).step_by(1_000) {
        renew_until(&mut node, at, at);
        let effects = step_with_probe(&mut node, at, Input::Tick, down.clone());
        assert_eq!(
            demotes(&effects),
            None,
            "no standby can take over: {effects:?}"
        );
        assert!(node.status().holds_leader_key);
        for action in pg_actions(&effects) {
            assert!(
                matches!(action, PgAction::StartPrimary { .. }),
                "{action:?}"
            );
            node.handle_input(
                Instant(at + 100),
                Input::PgActionFinished {
                    action,
                    outcome: PgActionOutcome::Failed {
                        error: "pg_ctl start: could not start server".into(),
                    },
                },
            );
        }
        drain(&mut node);
    }
    assert_eq!(node.state(), "primary");
    // A standby is running and close enough: the leader gives up its PostgreSQL and key.
    v.members.get_mut("node1").expect("node1").state = "running".into();
    v.revision = Revision(11);
    renew_until(&mut node, 7_000, 7_000);
    let effects = step_with_probe(
        &mut node,
        7_000,
        Input::ClusterChanged(std::sync::Arc::new(v)),
        down.clone(),
    );
    assert_eq!(
        demotes(&effects),
        Some(DemoteMode::Immediate),
        "{effects:?}"
    );
    assert_eq!(node.state(), "demoting");
    assert!(
        node.status()
            .last_transition
            .contains("primary_start_timeout (3 s)"),
        "{}",
        node.status().last_transition
    );
}

fn schedule_restart(request: u64, at: u64) -> Input {
    Input::RestartScheduled {
        request,
        at: Instant(at),
        schedule: format!("at {at} ms"),
        conditions: RestartConditions::default(),
        postgres_version: None,
    }
}

/// `patronictl restart --scheduled`: one restart kept per node, its timer wakes the node at
/// its time and the restart runs then; `flush` (DELETE /restart) forgets it.
#[test]
fn a_scheduled_restart_runs_at_its_time_and_a_deleted_one_never() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    node.handle_input(Instant(t), schedule_restart(1, t + 5_000));
    assert_eq!(restart_answers(&node, 1).0, Some(Ok(())));
    node.handle_input(Instant(t), schedule_restart(2, t + 9_000));
    assert_eq!(
        restart_answers(&node, 2).0,
        Some(Err("Another restart is already scheduled".into()))
    );
    assert!(node.status().member_record().scheduled_restart.is_some());
    assert_eq!(
        node.timers()
            .get(pgwarden::core::timers::Timer::ScheduledRestart),
        Some(Instant(t + 5_000))
    );
    // Cycles before its time restart nothing.
    let effects = step_with_probe(&mut node, t + 4_000, Input::Tick, pg(true, 1000));
    assert_eq!(pg_actions(&effects), vec![], "{effects:?}");
    // Its time: the node wakes, probes, and restarts.
    let effects = step_with_probe(&mut node, t + 5_000, Input::Tick, pg(true, 1000));
    assert!(
        matches!(
            only_action(&effects),
            Some(PgAction::Restart { request: None, ref start }) if matches!(**start, PgAction::StartReplica { .. })
        ),
        "{effects:?}"
    );
    assert!(
        node.status().scheduled_restart.is_none(),
        "it ran, so it is gone"
    );
    finish_actions(&mut node, t + 5_500, &effects);
    // Scheduled again, then deleted: nothing runs at its time.
    node.handle_input(Instant(t + 6_000), schedule_restart(3, t + 8_000));
    node.handle_input(
        Instant(t + 6_000),
        Input::ScheduledRestartDeleted { request: 4 },
    );
    assert_eq!(restart_answers(&node, 4).0, Some(Ok(())));
    node.handle_input(
        Instant(t + 6_000),
        Input::ScheduledRestartDeleted { request: 5 },
    );
    assert_eq!(
        restart_answers(&node, 5).0,
        Some(Err("no restarts are scheduled".into()))
    );
    let effects = step_with_probe(&mut node, t + 8_000, Input::Tick, pg(true, 1000));
    assert_eq!(pg_actions(&effects), vec![], "{effects:?}");
}

/// A scenario missing from [`SCENARIOS`] would be missing from the table too.
#[test]
fn every_scenario_is_listed_for_the_state_machine_table() {
    let tests = include_str!("core_scenarios.rs")
        .lines()
        .filter(|l| l.trim() == "#[test]")
        .count();
    assert_eq!(
        SCENARIOS.len() + 1,
        tests,
        "add the new scenario to SCENARIOS"
    );
}

/// The first Pg action among `effects`, finished as done at `at`.
fn finish_pg_action(node: &mut Node, at: u64, effects: &[Effect]) {
    let action = effects
        .iter()
        .find_map(|e| match e {
            Effect::Pg(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no PostgreSQL action among {effects:?}"));
    node.handle_input(
        Instant(at),
        Input::PgActionFinished {
            action,
            outcome: PgActionOutcome::Done { sysid: None },
        },
    );
}

/// A race's `/sync` claim belongs to that race. A candidate killed by its deadline after the
/// claim, whose lease then came back with the key still on it, finishes the promotion from
/// the replica state: it claims `/sync` again before PostgreSQL may acknowledge anything
/// alone. (When the claim was a flag on the agent, the old race's claim leaked into this
/// one and the promotion went ahead unclaimed; the simulation showed it in 14 of seeds
/// 1–2,000.)
#[test]
fn a_promotion_resumed_after_a_stop_claims_sync_again() {
    let (mut node, t) = running_replica(1, 1000, 1000);
    let sync_view = sync_mode_view(Some((&[ME], 9)));
    node.handle_input(
        Instant(t),
        Input::ClusterChanged(std::sync::Arc::new(sync_view.clone())),
    );
    drain(&mut node);
    node.handle_input(Instant(t), Input::PostgresProbed(pg(true, 1000)));
    drain(&mut node);
    node.handle_input(Instant(t), Input::PeersProbed(Vec::new()));
    drain(&mut node);
    node.handle_input(
        Instant(t),
        Input::LeaderAcquired {
            won: true,
            revision: Revision(21),
            create_revision: Revision(21),
        },
    );
    let seq = sync_write_seq(&drain(&mut node));
    node.handle_input(Instant(t), Input::SyncWritten { seq, ok: true });
    assert!(promotes(&drain(&mut node)), "the first race promotes");
    let mut v = sync_view;
    v.leader = Some(LeaderKey {
        name: ME.into(),
        lease: LEASE.0,
        create_revision: Revision(21),
    });
    v.revision = Revision(21);
    node.handle_input(
        Instant(t + 10),
        Input::ClusterChanged(std::sync::Arc::new(v)),
    );
    drain(&mut node);
    // Renewals fail until the deadline (granted at 0, ttl 6 s, margin 1 s: 5 s): the
    // promotion in flight is stopped by a kill, which keeps the key.
    node.handle_input(
        Instant(1_000),
        Input::LeaseRenewFailed {
            lease: LEASE,
            expired: false,
            error: "unavailable".into(),
        },
    );
    node.handle_input(Instant(5_000), Input::Tick);
    assert_eq!(
        demotes(&drain(&mut node)),
        Some(DemoteMode::ImmediateNolock)
    );
    assert_eq!(node.state(), "demoting");
    finish_pg_action(
        &mut node,
        5_010,
        &[Effect::Pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock,
        })],
    );
    assert_eq!(node.state(), "starting");
    // etcd answers again: the lease (and the key on it) survived.
    node.handle_input(
        Instant(5_020),
        Input::LeaseRenewed {
            lease: LEASE,
            sent_at: Instant(5_020),
        },
    );
    drain(&mut node);
    let mut stopped = pg(false, 1000);
    stopped.postmaster_alive = false;
    stopped.server = None;
    // As after the start below: the first probe predates the stop's result.
    node.handle_input(Instant(5_030), Input::PostgresProbed(stopped.clone()));
    drain(&mut node);
    node.handle_input(Instant(6_100), Input::Tick);
    drain(&mut node);
    node.handle_input(Instant(6_100), Input::PostgresProbed(stopped));
    let effects = drain(&mut node);
    assert_eq!(node.state(), "replica", "{effects:?}");
    finish_pg_action(&mut node, 6_200, &effects);
    drain(&mut node);
    // The probe after the start is discarded as older than it; the next one decides.
    node.handle_input(Instant(6_300), Input::PostgresProbed(pg(true, 1000)));
    drain(&mut node);
    node.handle_input(Instant(6_300), Input::PostgresProbed(pg(true, 1000)));
    let effects = drain(&mut node);
    assert_eq!(node.state(), "candidate");
    assert!(
        !promotes(&effects),
        "promoted without claiming /sync: {effects:?}"
    );
    let claim = sync_write_seq(&effects);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::WriteSync { state, .. }
            if state.leader.as_deref() == Some(ME) && state.sync_standby.is_empty())),
        "{effects:?}"
    );
    node.handle_input(
        Instant(6_310),
        Input::SyncWritten {
            seq: claim,
            ok: true,
        },
    );
    assert!(
        promotes(&drain(&mut node)),
        "the claim answered, the promotion goes on"
    );
}
