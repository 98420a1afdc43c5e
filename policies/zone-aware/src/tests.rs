//! Native unit tests of the zone-aware policy.
//!
//! The cluster: `node1`, the failed leader in zone `a` (its member key is gone); `node2` in
//! zone `a`; `node3` and `node4` in zone `b`. Everyone is a healthy, reachable replica at
//! the leader's last position unless a test says otherwise.

use super::*;
use pgwarden_policy::testing::{self, MemberExt, LEADER_LSN};
use pgwarden_policy::{Config, Fence, Lease, Member, Switchover, SynchronousMode};
use pgwarden_policy_default::DefaultPolicy;

/// A healthy replica of `zone` at the leader's position.
fn replica(name: &str, zone: &str) -> Member {
    testing::replica(name).tag(ZONE_TAG, zone)
}

fn cluster() -> Vec<Member> {
    vec![
        replica("node2", "a"),
        replica("node3", "b"),
        replica("node4", "b"),
    ]
}

/// `me`'s view `waited_ms` after the leader key of `node1` (zone `a`) was freed.
fn view(me: &str, members: Vec<Member>, waited_ms: u64) -> ClusterView {
    let mut leader = replica("node1", "a");
    leader.role = Role::Primary;
    ClusterView {
        now_ms: 500_000,
        me: me.into(),
        members,
        lease: Lease::default(),
        last_leader: Some(leader),
        leaderless_ms: Some(waited_ms),
        cluster_timeline: Some(1),
        leader_lsn: Some(LEADER_LSN),
        sync_leader: None,
        sync_standbys: Vec::new(),
        switchover: None,
        config: Config {
            params: vec![(ZONE_WAIT_PARAM.into(), "5000".into())],
            ..Config::default()
        },
    }
}

fn waits_for(race: &Race, member: &str) -> bool {
    matches!(race, Race::Wait(wait) if wait.reason.contains(&format!("zone-aware: {member} ")))
}

#[test]
fn the_leaders_zone_races_while_another_zone_waits_naming_the_candidate() {
    assert_eq!(race(&view("node2", cluster(), 1_000)), Race::Race);
    assert_eq!(
        race(&view("node3", cluster(), 1_000)),
        Race::Wait(Wait {
            delay_ms: 4_000,
            reason: "zone-aware: node2 in the failed leader's zone a may lead; \
                     waiting up to 4000 ms more (zone_wait_ms 5000)"
                .into(),
        })
    );
}

#[test]
fn the_wait_asks_again_at_the_next_loop_at_the_latest() {
    let mut v = view("node3", cluster(), 0);
    v.config.params = vec![(ZONE_WAIT_PARAM.into(), "60000".into())];
    match race(&v) {
        Race::Wait(wait) => assert_eq!(wait.delay_ms, v.config.loop_wait_ms),
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn after_zone_wait_ms_another_zone_races() {
    assert_eq!(race(&view("node3", cluster(), 5_000)), Race::Race);
    assert_eq!(race(&view("node3", cluster(), 9_000)), Race::Race);
}

#[test]
fn without_a_leader_zone_it_is_the_default_policy() {
    for me in ["node2", "node3", "node4"] {
        let mut members = cluster();
        members[0] = replica("node2", "a").lsn(9_000);
        let mut v = view(me, members, 1_000);
        if let Some(leader) = v.last_leader.as_mut() {
            leader.tags.clear();
        }
        assert_eq!(
            ZoneAware::decide(&Event::Election, &v),
            DefaultPolicy::decide(&Event::Election, &v),
            "{me}"
        );
    }
    let mut v = view("node3", cluster(), 1_000);
    v.last_leader = None;
    assert_eq!(race(&v), Race::Race);
}

#[test]
fn a_same_zone_peer_further_ahead_makes_us_stand_down() {
    let mut members = cluster();
    members[0] = replica("node2", "a").lsn(9_000);
    members.push(replica("node5", "a").lsn(9_500));
    assert_eq!(
        race(&view("node2", members, 1_000)),
        Race::StandDown("node5 is ahead (9500 > 9000)".into())
    );
}

#[test]
fn another_zones_peer_further_ahead_does_not_stop_the_same_zone_node() {
    let mut members = cluster();
    members[0] = replica("node2", "a").lsn(9_500);
    let v = view("node2", members, 1_000);
    assert_eq!(race(&v), Race::Race);
    assert_eq!(
        default::race(&v),
        Race::StandDown("node3 is ahead (10000 > 9500)".into()),
        "the default would have picked node3"
    );
}

#[test]
fn a_live_primary_anywhere_makes_everyone_stand_down() {
    let mut members = cluster();
    members[2].role = Role::Primary; // node4, zone b
    let expected = Race::StandDown("primary node4 is still alive".into());
    assert_eq!(race(&view("node2", members.clone(), 1_000)), expected);
    assert_eq!(race(&view("node3", members, 1_000)), expected);
}

#[test]
fn a_lagging_same_zone_member_is_waited_for_up_to_the_bound() {
    let mut members = cluster();
    members[0] = replica("node2", "a").lsn(LEADER_LSN - 2_000);
    let lagging = |me: &str, waited_ms: u64| {
        let mut v = view(me, members.clone(), waited_ms);
        v.config.maximum_lag_on_failover = 1_000;
        v
    };
    assert_eq!(
        race(&lagging("node2", 1_000)),
        Race::StandDown("lag 2000 bytes exceeds maximum_lag_on_failover 1000".into())
    );
    assert!(waits_for(&race(&lagging("node3", 1_000)), "node2"));
    assert!(waits_for(&race(&lagging("node3", 4_999)), "node2"));
    assert_eq!(race(&lagging("node3", 5_000)), Race::Race);
}

#[test]
fn members_the_rules_refuse_for_good_are_not_waited_for() {
    let refused: [fn(&mut Member); 4] = [
        |m| m.reachable = Some(false),
        |m| m.failover_priority = 0,
        |m| m.state = "stopped".into(),
        |m| m.tags.push(("nofailover".into(), "true".into())),
    ];
    for refuse in refused {
        let mut members = cluster();
        refuse(&mut members[0]);
        let v = view("node3", members, 1_000);
        assert_eq!(race(&v), Race::Race, "{:?}", v.members[0]);
    }
}

#[test]
fn a_same_zone_member_outside_sync_is_not_waited_for() {
    let mut v = view("node3", cluster(), 1_000);
    v.config.synchronous_mode = SynchronousMode::On;
    v.sync_leader = Some("node1".into());
    v.sync_standbys = vec!["node3".into()];
    assert_eq!(race(&v), Race::Race);
}

#[test]
fn zone_wait_ms_defaults_to_ttl_and_ignores_garbage() {
    let mut config = Config::default();
    assert_eq!(zone_wait_ms(&config), config.ttl_ms);
    config.params = vec![(ZONE_WAIT_PARAM.into(), "soon".into())];
    assert_eq!(zone_wait_ms(&config), config.ttl_ms);
    config.params = vec![(ZONE_WAIT_PARAM.into(), " 750 ".into())];
    assert_eq!(zone_wait_ms(&config), 750);

    let mut v = view("node3", cluster(), 29_999);
    v.config.params = vec![(ZONE_WAIT_PARAM.into(), "-1".into())];
    assert!(waits_for(&race(&v), "node2"));
    v.leaderless_ms = Some(30_000);
    assert_eq!(race(&v), Race::Race);
}

#[test]
fn an_unknown_leaderless_time_never_waits() {
    let mut v = view("node3", cluster(), 0);
    v.leaderless_ms = None;
    assert_eq!(race(&v), Race::Race);
}

#[test]
fn a_manual_failover_candidate_beats_the_zone() {
    let mut v = view("node3", cluster(), 1_000);
    v.switchover = Some(Switchover {
        leader: None,
        candidate: Some("node3".into()),
        override_policy: false,
    });
    assert_eq!(race(&v), Race::Race);
    v.me = "node2".into();
    assert_eq!(race(&v), Race::StandDown("manual failover to node3".into()));
}

#[test]
fn a_held_leader_key_is_respected() {
    let mut v = view("node2", cluster(), 1_000);
    v.lease.holder = Some("node4".into());
    assert_eq!(
        race(&v),
        Race::StandDown("node4 holds the leader key".into())
    );
}

#[test]
fn preference_lists_the_leaders_zone_first_in_the_default_order() {
    let members = vec![
        replica("node2", "a").lsn(9_000),
        replica("node3", "b").lsn(9_900),
        replica("node4", "b").lsn(9_950),
        replica("node5", "a").lsn(9_500),
    ];
    let v = view("node3", members, 1_000);
    assert_eq!(preference(&v), ["node5", "node2", "node4", "node3"]);
}

#[test]
fn decide_reuses_the_default_sync_standbys() {
    let mut v = view("node2", cluster(), 0);
    v.lease = Lease {
        holder: Some("node2".into()),
        mine: true,
        time_left_ms: Some(10_000),
    };
    v.config.synchronous_mode = SynchronousMode::On;
    let decision = ZoneAware::decide(&Event::Tick, &v);
    assert_eq!(decision.race, Race::Race);
    assert_eq!(decision.fence, Fence::None);
    assert_eq!(decision.sync_standbys, default::sync_standbys(&v));
    assert_eq!(decision.sync_standbys, Some(vec!["node3".to_string()]));
}

#[test]
fn info_names_the_policy() {
    assert_eq!(ZoneAware::info().name, "zone-aware");
}

#[test]
fn the_leader_hands_over_for_a_switchover_as_the_default_does() {
    // node2 leads; a switchover to node3 (zone b, streaming, caught up) is addressed to it.
    let mut v = view("node2", cluster(), 0);
    v.lease = Lease {
        holder: Some("node2".into()),
        mine: true,
        time_left_ms: Some(10_000),
    };
    v.switchover = Some(Switchover {
        leader: Some("node2".into()),
        candidate: Some("node3".into()),
        override_policy: false,
    });
    let decision = ZoneAware::decide(&Event::Tick, &v);
    assert_eq!(decision.fence, Fence::Demote("switchover to node3".into()));
    assert_eq!(
        decision.fence,
        DefaultPolicy::decide(&Event::Tick, &v).fence
    );
}
