//! Native unit tests of the strict-zero-loss policy.
//!
//! The cluster after its leader `node1` failed, in synchronous mode: `/sync` (recorded by
//! `node1`) names `node2`; `node3` is an asynchronous replica. Both are healthy, reachable
//! and at the leader's last position unless a test says otherwise.

use super::*;
use pgwarden_policy::testing::{replica, LEADER_LSN};
use pgwarden_policy::Role;
use pgwarden_policy::{Config, Lease, Switchover, SynchronousMode};

fn view(me: &str) -> ClusterView {
    let mut sync = replica("node2");
    sync.is_sync = true;
    ClusterView {
        now_ms: 500_000,
        me: me.into(),
        members: vec![sync, replica("node3")],
        lease: Lease::default(),
        last_leader: None,
        leaderless_ms: Some(1_000),
        cluster_timeline: Some(1),
        leader_lsn: Some(LEADER_LSN),
        sync_leader: Some("node1".into()),
        sync_standbys: vec!["node2".into()],
        switchover: None,
        config: Config {
            synchronous_mode: SynchronousMode::On,
            ..Config::default()
        },
    }
}

fn failover_to(me: &str, candidate: &str, override_policy: bool) -> ClusterView {
    let mut v = view(me);
    v.switchover = Some(Switchover {
        leader: None,
        candidate: Some(candidate.into()),
        override_policy,
    });
    v
}

fn stand_down(reason: &str) -> Race {
    Race::StandDown(reason.into())
}

const NODE3_REFUSED: &str =
    "strict-zero-loss: node3 is not a confirmed synchronous standby (/sync: [node2])";

#[test]
fn a_confirmed_synchronous_standby_races() {
    assert_eq!(race(&view("node2")), Race::Race);
}

#[test]
fn a_confirmed_standby_still_obeys_the_default_rules() {
    let mut v = view("node2");
    v.members[0].state = "stopped".into();
    assert_eq!(race(&v), stand_down("PostgreSQL is not running (stopped)"));
}

#[test]
fn a_member_outside_sync_is_refused_naming_the_sync_set() {
    assert_eq!(race(&view("node3")), stand_down(NODE3_REFUSED));
}

#[test]
fn being_allowed_by_sync_is_not_enough_without_is_sync() {
    let mut v = view("node3");
    v.sync_leader = None; // the default would let anyone race
    assert_eq!(pgwarden_policy_default::race(&v), Race::Race);
    assert_eq!(race(&v), stand_down(NODE3_REFUSED));
}

#[test]
fn asynchronous_mode_refuses_everyone() {
    for me in ["node2", "node3"] {
        let mut v = view(me);
        v.config.synchronous_mode = SynchronousMode::Off;
        assert_eq!(
            race(&v),
            stand_down("strict-zero-loss: synchronous_mode is off: no standby is confirmed"),
            "{me}"
        );
    }
}

#[test]
fn a_manual_failover_to_a_member_outside_sync_is_refused() {
    assert_eq!(
        race(&failover_to("node3", "node3", false)),
        stand_down(NODE3_REFUSED)
    );
}

#[test]
fn an_overridden_manual_failover_races() {
    assert_eq!(race(&failover_to("node3", "node3", true)), Race::Race);
    let mut v = failover_to("node3", "node3", true);
    v.config.synchronous_mode = SynchronousMode::Off;
    assert_eq!(race(&v), Race::Race);
}

#[test]
fn an_override_does_not_promote_a_stopped_postgres() {
    let mut v = failover_to("node3", "node3", true);
    v.members[1].state = "stopped".into();
    assert_eq!(race(&v), stand_down("PostgreSQL is not running (stopped)"));
}

#[test]
fn an_override_for_someone_else_does_not_make_us_race() {
    let mut v = failover_to("node3", "node4", true);
    v.members.push(replica("node4"));
    assert_eq!(race(&v), stand_down(NODE3_REFUSED));
    v.me = "node2".into();
    assert_eq!(race(&v), stand_down("manual failover to node4"));
}

#[test]
fn a_refused_candidate_does_not_hold_back_the_confirmed_standby() {
    assert_eq!(race(&failover_to("node2", "node3", false)), Race::Race);
}

#[test]
fn stand_down_while_a_leader_holds_the_key() {
    let mut v = view("node2");
    v.lease.holder = Some("node1".into());
    assert_eq!(race(&v), stand_down("node1 holds the leader key"));
}

#[test]
fn stand_down_for_a_live_primary() {
    let mut v = view("node2");
    let mut primary = replica("node1");
    primary.role = Role::Primary;
    v.members.insert(0, primary);
    assert_eq!(race(&v), stand_down("primary node1 is still alive"));
}

#[test]
fn the_leader_keeps_its_lease_and_the_default_sync_choice() {
    let mut v = view("node1");
    let mut leader = replica("node1");
    leader.role = Role::Primary;
    v.members.insert(0, leader);
    v.lease = Lease {
        holder: Some("node1".into()),
        mine: true,
        time_left_ms: Some(10_000),
    };
    let decision = StrictZeroLoss::decide(&Event::Tick, &v);
    assert_eq!(decision.race, Race::Race);
    assert_eq!(decision.fence, Fence::None);
    assert_eq!(decision.sync_standbys, Some(vec!["node2".to_string()]));
    assert_eq!(
        decision.sync_standbys,
        pgwarden_policy_default::sync_standbys(&v)
    );
}

#[test]
fn preference_lists_only_confirmed_standbys() {
    let mut v = view("node3");
    v.members[1].received_lsn = Some(LEADER_LSN + 10); // ahead, but not confirmed
    assert_eq!(preference(&v), ["node2"]);
    v.config.synchronous_mode = SynchronousMode::Off;
    assert!(preference(&v).is_empty());
}

#[test]
fn info_names_the_policy() {
    assert_eq!(StrictZeroLoss::info().name, "strict-zero-loss");
}

/// node1 leads (lease held) and is asked to hand over to `candidate`.
fn switchover_to(candidate: &str, override_policy: bool) -> ClusterView {
    let mut v = view("node1");
    let mut leader = replica("node1");
    leader.role = Role::Primary;
    v.members.insert(0, leader);
    v.lease = Lease {
        holder: Some("node1".into()),
        mine: true,
        time_left_ms: Some(10_000),
    };
    v.switchover = Some(Switchover {
        leader: Some("node1".into()),
        candidate: Some(candidate.into()),
        override_policy,
    });
    v
}

#[test]
fn the_leader_hands_over_only_to_a_confirmed_standby_unless_overridden() {
    assert_eq!(
        fence(&switchover_to("node2", false)),
        Fence::Demote("switchover to node2".into())
    );
    // node3 is streaming and caught up, so the default would hand over; this policy refuses.
    assert_eq!(fence(&switchover_to("node3", false)), Fence::None);
    // The override is for a failover (no leader named): a switchover keeps every commit
    // under the default's rules too.
    let mut overridden = switchover_to("node3", true);
    assert_eq!(fence(&overridden), Fence::None);
    if let Some(request) = overridden.switchover.as_mut() {
        request.leader = None;
    }
    assert_eq!(
        fence(&overridden),
        Fence::Demote("switchover to node3".into())
    );
    if let Some(request) = overridden.switchover.as_mut() {
        request.override_policy = false;
    }
    assert_eq!(
        fence(&overridden),
        Fence::None,
        "a failover without override is refused"
    );
}
