//! Native unit tests of the default policy.
//!
//! Each test builds a small view (a healthy three-member cluster whose leader key is free,
//! unless the test says otherwise) and asserts the exact outcome of one rule.

use super::*;
use pgwarden_policy::testing::{primary, replica, MemberExt, LEADER_LSN};
use pgwarden_policy::{Config, Lease, Switchover, SynchronousMode};

/// A leaderless view as `me` sees it: the members sorted by name, default configuration.
fn view(me: &str, mut members: Vec<Member>) -> ClusterView {
    members.sort_by(|a, b| a.name.cmp(&b.name));
    ClusterView {
        now_ms: 100_000,
        me: me.into(),
        members,
        lease: Lease::default(),
        last_leader: Some(primary("node1")),
        leaderless_ms: Some(0),
        cluster_timeline: Some(1),
        leader_lsn: Some(LEADER_LSN),
        sync_leader: None,
        sync_standbys: Vec::new(),
        switchover: None,
        config: Config::default(),
    }
}

/// The cluster after its leader `node1` failed: two equal replicas left.
fn leaderless(me: &str) -> ClusterView {
    view(me, vec![replica("node2"), replica("node3")])
}

/// `view` in synchronous mode, `/sync` recorded by `node1` with `standbys`.
fn sync_view(me: &str, members: Vec<Member>, standbys: &[&str]) -> ClusterView {
    let mut v = view(me, members);
    v.config.synchronous_mode = SynchronousMode::On;
    v.sync_leader = Some("node1".into());
    v.sync_standbys = standbys.iter().map(|s| s.to_string()).collect();
    v
}

/// `view` as the leader `me` sees it.
fn leading(me: &str, members: Vec<Member>) -> ClusterView {
    let mut v = view(me, members);
    v.lease = Lease {
        holder: Some(me.into()),
        mine: true,
        time_left_ms: Some(20_000),
    };
    v.leaderless_ms = None;
    v
}

fn stand_down(reason: &str) -> Race {
    Race::StandDown(reason.into())
}

mod race_rules {
    use super::*;

    #[test]
    fn a_healthy_replica_with_no_better_peer_races() {
        assert_eq!(race(&leaderless("node2")), Race::Race);
    }

    #[test]
    fn a_leader_key_held_by_another_member_stands_down_naming_it() {
        let mut v = leaderless("node2");
        v.lease.holder = Some("node3".into());
        assert_eq!(race(&v), stand_down("node3 holds the leader key"));
    }

    #[test]
    fn our_own_leader_key_keeps_racing_whatever_our_health() {
        let v = leading(
            "node1",
            vec![primary("node1").state("stopped"), replica("node2")],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn a_member_missing_from_the_list_stands_down() {
        let v = leaderless("node9");
        assert_eq!(race(&v), stand_down("not in the member list"));
    }
}

mod healthy_enough_rules {
    use super::*;

    const NOFAILOVER: &str = "nofailover (failover_priority <= 0)";

    #[test]
    fn the_nofailover_tag_never_leads() {
        let v = view("node2", vec![replica("node2").tag("nofailover", "true")]);
        assert_eq!(race(&v), stand_down(NOFAILOVER));
    }

    #[test]
    fn failover_priority_zero_never_leads() {
        let v = view("node2", vec![replica("node2").priority(0)]);
        assert_eq!(race(&v), stand_down(NOFAILOVER));
    }

    #[test]
    fn a_stopped_postgres_does_not_race() {
        let v = view("node2", vec![replica("node2").state("stopped")]);
        assert_eq!(race(&v), stand_down("PostgreSQL is not running (stopped)"));
    }

    #[test]
    fn an_unknown_role_does_not_race_even_if_running() {
        let mut me = replica("node2");
        me.role = Role::Unknown;
        let v = view("node2", vec![me]);
        assert_eq!(race(&v), stand_down("PostgreSQL is not running (running)"));
    }

    #[test]
    fn a_stale_primary_behind_the_cluster_timeline_stands_down_without_check_timeline() {
        let mut v = view("node1", vec![primary("node1"), replica("node2")]);
        v.cluster_timeline = Some(2);
        assert!(!v.config.check_timeline);
        assert_eq!(
            race(&v),
            stand_down("timeline 1 is behind the cluster timeline 2")
        );
    }

    #[test]
    fn a_primary_on_the_cluster_timeline_races_even_with_peers_ahead() {
        let v = view(
            "node1",
            vec![primary("node1"), replica("node2").lsn(LEADER_LSN + 500)],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn a_replica_behind_the_timeline_races_without_check_timeline() {
        let mut v = leaderless("node2");
        v.cluster_timeline = Some(2);
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn a_replica_behind_the_timeline_stands_down_with_check_timeline() {
        let mut v = leaderless("node2");
        v.cluster_timeline = Some(2);
        v.config.check_timeline = true;
        assert_eq!(
            race(&v),
            stand_down("timeline 1 is behind the cluster timeline 2")
        );
    }

    #[test]
    fn a_replica_on_the_cluster_timeline_races_with_check_timeline() {
        let mut v = view("node2", vec![replica("node2").timeline(2)]);
        v.cluster_timeline = Some(2);
        v.config.check_timeline = true;
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn synchronous_mode_refuses_a_member_not_in_sync() {
        let v = sync_view(
            "node3",
            vec![replica("node2"), replica("node3")],
            &["node2"],
        );
        assert_eq!(
            race(&v),
            stand_down(
                "synchronous mode: not in /sync (leader Some(\"node1\"), standbys [\"node2\"])"
            )
        );
    }

    #[test]
    fn synchronous_mode_allows_a_recorded_standby() {
        let v = sync_view(
            "node2",
            vec![replica("node2"), replica("node3")],
            &["node2"],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn synchronous_mode_allows_the_member_that_recorded_sync() {
        let v = sync_view(
            "node1",
            vec![replica("node1"), replica("node3")],
            &["node2"],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn synchronous_mode_without_a_recorded_sync_leader_allows_everyone() {
        let mut v = sync_view("node3", vec![replica("node2"), replica("node3")], &[]);
        v.sync_leader = None;
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn lag_over_maximum_lag_on_failover_stands_down() {
        let mut v = view("node2", vec![replica("node2").lsn(LEADER_LSN - 1_001)]);
        v.config.maximum_lag_on_failover = 1_000;
        assert_eq!(
            race(&v),
            stand_down("lag 1001 bytes exceeds maximum_lag_on_failover 1000")
        );
    }

    #[test]
    fn lag_exactly_at_maximum_lag_on_failover_races() {
        let mut v = view("node2", vec![replica("node2").lsn(LEADER_LSN - 1_000)]);
        v.config.maximum_lag_on_failover = 1_000;
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn healthy_enough_accepts_a_healthy_replica() {
        let v = leaderless("node2");
        assert_eq!(healthy_enough(&v, &replica("node2")), Ok(()));
    }
}

mod better_peer_rules {
    use super::*;

    #[test]
    fn a_live_primary_peer_makes_us_stand_down() {
        let v = view("node2", vec![primary("node1"), replica("node2")]);
        assert_eq!(race(&v), stand_down("primary node1 is still alive"));
    }

    #[test]
    fn an_unreachable_primary_does_not_veto() {
        let v = view(
            "node2",
            vec![primary("node1").reachable(Some(false)), replica("node2")],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn a_stopped_primary_does_not_veto() {
        let v = view(
            "node2",
            vec![primary("node1").state("stopped"), replica("node2")],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn a_peer_further_ahead_makes_us_stand_down() {
        let v = view(
            "node2",
            vec![replica("node2").lsn(9_000), replica("node3").lsn(9_500)],
        );
        assert_eq!(race(&v), stand_down("node3 is ahead (9500 > 9000)"));
    }

    #[test]
    fn a_peer_further_along_an_abandoned_timeline_does_not_veto() {
        // node3 is a former primary on timeline 1 with writes nobody received; node2 is on
        // the cluster's timeline 2. Without this rule neither could ever lead.
        let v = view(
            "node2",
            vec![
                replica("node2").lsn(9_000).timeline(2),
                replica("node3").lsn(9_500).timeline(1),
            ],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn a_peer_behind_does_not_veto() {
        let v = view(
            "node2",
            vec![replica("node2").lsn(9_500), replica("node3").lsn(9_000)],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn an_equal_peer_with_a_higher_priority_makes_us_stand_down() {
        let v = view(
            "node2",
            vec![replica("node2"), replica("node3").priority(2)],
        );
        assert_eq!(
            race(&v),
            stand_down("node3 has the same position and a higher failover_priority")
        );
    }

    #[test]
    fn an_equal_peer_with_a_lower_priority_does_not_veto() {
        let v = view(
            "node2",
            vec![replica("node2").priority(2), replica("node3")],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn unreachable_or_unprobed_peers_cannot_veto() {
        for reachable in [Some(false), None] {
            let v = view(
                "node2",
                vec![
                    replica("node2").lsn(9_000),
                    replica("node3").lsn(9_900).reachable(reachable),
                ],
            );
            assert_eq!(race(&v), Race::Race, "peer reachable = {reachable:?}");
        }
    }

    #[test]
    fn a_peer_that_may_not_lead_cannot_veto() {
        let v = view(
            "node2",
            vec![
                replica("node2").lsn(9_000),
                replica("node3").lsn(9_900).tag("nofailover", "true"),
            ],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn a_peer_outside_sync_cannot_veto_in_synchronous_mode() {
        let v = sync_view(
            "node2",
            vec![replica("node2").lsn(9_000), replica("node3").lsn(9_900)],
            &["node2"],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn better_peer_names_nobody_in_a_cluster_of_equals() {
        let v = leaderless("node3");
        assert_eq!(better_peer(&v, &replica("node3")), None);
    }
}

mod manual_failover {
    use super::*;

    fn failover_to(me: &str, candidate: &str, members: Vec<Member>) -> ClusterView {
        let mut v = view(me, members);
        v.switchover = Some(Switchover {
            leader: None,
            candidate: Some(candidate.into()),
            override_policy: false,
        });
        v
    }

    #[test]
    fn another_live_candidate_makes_us_stand_down() {
        let v = failover_to("node2", "node3", vec![replica("node2"), replica("node3")]);
        assert_eq!(race(&v), stand_down("manual failover to node3"));
    }

    #[test]
    fn another_candidate_wins_even_if_we_are_ahead() {
        let v = failover_to(
            "node2",
            "node3",
            vec![
                replica("node2").lsn(LEADER_LSN),
                replica("node3").lsn(9_900),
            ],
        );
        assert_eq!(race(&v), stand_down("manual failover to node3"));
    }

    #[test]
    fn an_unreachable_candidate_does_not_stop_the_others() {
        let v = failover_to(
            "node2",
            "node3",
            vec![replica("node2"), replica("node3").reachable(Some(false))],
        );
        assert_eq!(race(&v), Race::Race);
    }

    #[test]
    fn the_candidate_races() {
        let v = failover_to(
            "node3",
            "node3",
            vec![replica("node2").lsn(9_900), replica("node3")],
        );
        assert_eq!(race(&v), Race::Race);
    }
}

mod preference_order {
    use super::*;

    #[test]
    fn furthest_ahead_first_then_priority_then_name() {
        let v = view(
            "node2",
            vec![
                replica("node2").lsn(9_000),
                replica("node3").lsn(9_500),
                replica("node4").lsn(9_000).priority(3),
                replica("node5").lsn(9_000),
            ],
        );
        assert_eq!(preference(&v), ["node3", "node4", "node2", "node5"]);
    }

    #[test]
    fn members_that_may_not_lead_or_are_unknown_are_left_out() {
        let mut unknown = replica("node5");
        unknown.role = Role::Unknown;
        let v = view(
            "node2",
            vec![
                replica("node2"),
                replica("node3").tag("nofailover", "true"),
                replica("node4").priority(0),
                unknown,
            ],
        );
        assert_eq!(preference(&v), ["node2"]);
    }
}

mod quorum_race {
    use super::*;

    /// Quorum mode, `/sync` by node1 with `voters` and `quorum`, as `me` sees it.
    fn quorum_view(me: &str, members: Vec<Member>, voters: &[&str], quorum: u32) -> ClusterView {
        let mut v = sync_view(me, members, voters);
        v.config.synchronous_mode = SynchronousMode::Quorum;
        v.config.params.push((
            pgwarden_policy::SYNC_QUORUM_PARAM.into(),
            quorum.to_string(),
        ));
        v
    }

    #[test]
    fn a_voter_needs_the_vote_of_another_voter() {
        let alone = quorum_view(
            "node2",
            vec![replica("node2"), replica("node3").reachable(Some(false))],
            &["node2", "node3"],
            1,
        );
        assert!(matches!(race(&alone), Race::StandDown(why) if why.contains("quorum not reached")));
        let with_vote = quorum_view(
            "node2",
            vec![replica("node2"), replica("node3")],
            &["node2", "node3"],
            1,
        );
        assert_eq!(race(&with_vote), Race::Race);
    }

    #[test]
    fn a_non_voter_may_win_with_quorum_plus_one_votes() {
        let one = quorum_view(
            "node4",
            vec![
                replica("node2").lsn(9_000),
                replica("node3").reachable(Some(false)),
                replica("node4"),
            ],
            &["node2", "node3"],
            1,
        );
        assert!(matches!(race(&one), Race::StandDown(_)));
        let two = quorum_view(
            "node4",
            vec![
                replica("node2").lsn(9_000),
                replica("node3"),
                replica("node4"),
            ],
            &["node2", "node3"],
            1,
        );
        assert_eq!(race(&two), Race::Race);
    }

    #[test]
    fn the_leader_that_wrote_sync_may_lead_alone() {
        let v = quorum_view(
            "node1",
            vec![replica("node1"), replica("node2").reachable(Some(false))],
            &["node2"],
            1,
        );
        assert_eq!(race(&v), Race::Race);
    }
}

mod sync_standby_choice {
    use super::*;

    /// The leader `node1` in synchronous mode with `count` synchronous standbys wanted.
    fn sync_leader(members: Vec<Member>, count: u32) -> ClusterView {
        let mut all = vec![primary("node1")];
        all.extend(members);
        let mut v = leading("node1", all);
        v.config.synchronous_mode = SynchronousMode::On;
        v.config.synchronous_node_count = count;
        v.sync_leader = Some("node1".into());
        v
    }

    #[test]
    fn none_when_not_leading() {
        let v = sync_view(
            "node2",
            vec![replica("node2"), replica("node3")],
            &["node2"],
        );
        assert_eq!(sync_standbys(&v), None);
    }

    #[test]
    fn none_in_asynchronous_mode() {
        let v = leading("node1", vec![primary("node1"), replica("node2")]);
        assert_eq!(sync_standbys(&v), None);
    }

    #[test]
    fn current_sync_standbys_come_first_so_the_set_does_not_flap() {
        let v = sync_leader(
            vec![
                replica("node2").lsn(LEADER_LSN),
                replica("node3").lsn(9_000).sync(),
            ],
            1,
        );
        assert_eq!(sync_standbys(&v), Some(vec!["node3".to_string()]));
    }

    #[test]
    fn the_most_advanced_fill_the_remaining_places() {
        let v = sync_leader(
            vec![
                replica("node2").lsn(9_000),
                replica("node3").lsn(9_800),
                replica("node4").lsn(9_500).sync(),
            ],
            2,
        );
        assert_eq!(
            sync_standbys(&v),
            Some(vec!["node4".to_string(), "node3".to_string()])
        );
    }

    #[test]
    fn nosync_nostream_priority_zero_and_not_streaming_members_are_skipped() {
        let v = sync_leader(
            vec![
                replica("node2").tag("nosync", "true"),
                replica("node3").not_streaming(),
                replica("node4").tag("nostream", "true"),
                replica("node5").tag("sync_priority", "0"),
                replica("node6").lsn(9_000),
            ],
            3,
        );
        assert_eq!(sync_standbys(&v), Some(vec!["node6".to_string()]));
    }

    #[test]
    fn a_sync_standby_lagging_beyond_maximum_lag_on_syncnode_is_swapped() {
        let mut v = sync_leader(
            vec![
                replica("node2").lsn(5_000).sync(),
                replica("node3").lsn(LEADER_LSN),
            ],
            1,
        );
        v.config.maximum_lag_on_syncnode = Some(1_000);
        assert_eq!(sync_standbys(&v), Some(vec!["node3".to_string()]));
        // Within the limit it stays (no flapping).
        v.config.maximum_lag_on_syncnode = Some(10_000);
        assert_eq!(sync_standbys(&v), Some(vec!["node2".to_string()]));
    }

    #[test]
    fn a_lagging_sync_standby_is_kept_when_there_is_no_healthier_one() {
        let mut v = sync_leader(vec![replica("node2").lag(5_000).sync()], 1);
        v.config.maximum_lag_on_syncnode = Some(1_000);
        assert_eq!(sync_standbys(&v), Some(vec!["node2".to_string()]));
    }

    #[test]
    fn a_higher_sync_priority_is_preferred() {
        let v = sync_leader(
            vec![
                replica("node2").sync(),
                replica("node3").tag("sync_priority", "5").lsn(9_000),
            ],
            1,
        );
        assert_eq!(sync_standbys(&v), Some(vec!["node3".to_string()]));
    }

    #[test]
    fn quorum_mode_returns_every_eligible_standby() {
        let mut v = sync_leader(
            vec![
                replica("node2"),
                replica("node3").lsn(9_000),
                replica("node4").tag("nosync", "true"),
            ],
            1,
        );
        v.config.synchronous_mode = SynchronousMode::Quorum;
        assert_eq!(
            sync_standbys(&v),
            Some(vec!["node2".to_string(), "node3".to_string()])
        );
    }

    #[test]
    fn an_unlimited_syncnode_lag_keeps_lagging_members() {
        let v = sync_leader(vec![replica("node2").lag(5_000_000)], 1);
        assert_eq!(sync_standbys(&v), Some(vec!["node2".to_string()]));
    }

    #[test]
    fn the_choice_is_truncated_to_synchronous_node_count() {
        let v = sync_leader(
            vec![
                replica("node2").lsn(9_000),
                replica("node3").lsn(9_800),
                replica("node4").lsn(9_500),
            ],
            1,
        );
        assert_eq!(sync_standbys(&v), Some(vec!["node3".to_string()]));
    }

    #[test]
    fn a_node_count_of_zero_still_keeps_one_standby() {
        let v = sync_leader(vec![replica("node2"), replica("node3")], 0);
        assert_eq!(sync_standbys(&v), Some(vec!["node2".to_string()]));
    }

    #[test]
    fn no_eligible_member_gives_an_empty_set() {
        let v = sync_leader(vec![replica("node2").not_streaming()], 1);
        assert_eq!(sync_standbys(&v), Some(Vec::new()));
    }
}

mod whole_decision {
    use super::*;

    #[test]
    fn decide_combines_the_rules_and_does_not_fence_without_a_switchover() {
        let v = view(
            "node2",
            vec![replica("node2").lsn(9_500), replica("node3").lsn(9_000)],
        );
        let decision = DefaultPolicy::decide(&Event::Election, &v);
        assert_eq!(
            decision,
            Decision {
                race: Race::Race,
                preference: vec!["node2".into(), "node3".into()],
                fence: Fence::None,
                sync_standbys: None,
            }
        );
    }

    #[test]
    fn info_names_the_policy() {
        let info = DefaultPolicy::info();
        assert_eq!(info.name, "default");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }
}

mod switchover {
    use super::*;
    use pgwarden_policy::Switchover;

    fn request(leader: Option<&str>, candidate: Option<&str>) -> Switchover {
        Switchover {
            leader: leader.map(str::to_owned),
            candidate: candidate.map(str::to_owned),
            override_policy: false,
        }
    }

    /// node1 leads; node2 streams and is caught up, node3 does not stream.
    fn asked(request: Switchover) -> ClusterView {
        let mut v = leading(
            "node1",
            vec![replica("node2"), replica("node3").not_streaming()],
        );
        v.switchover = Some(request);
        v
    }

    #[test]
    fn the_leader_demotes_for_a_ready_candidate_and_keeps_leading_otherwise() {
        let ready = asked(request(Some("node1"), Some("node2")));
        assert_eq!(fence(&ready), Fence::Demote("switchover to node2".into()));
        let not_streaming = asked(request(Some("node1"), Some("node3")));
        assert_eq!(fence(&not_streaming), Fence::None);
        let unknown = asked(request(Some("node1"), Some("node9")));
        assert_eq!(fence(&unknown), Fence::None);
        // Addressed to another leader: not ours to act on.
        let elsewhere = asked(request(Some("node7"), Some("node2")));
        assert_eq!(fence(&elsewhere), Fence::None);
        // No candidate named: any ready standby will do.
        let any = asked(request(Some("node1"), None));
        assert!(matches!(fence(&any), Fence::Demote(_)), "{:?}", fence(&any));
    }

    #[test]
    fn a_switchover_needs_the_sync_set_but_a_failover_does_not() {
        let mut v = asked(request(Some("node1"), Some("node2")));
        v.config.synchronous_mode = SynchronousMode::On;
        v.sync_leader = Some("node1".into());
        v.sync_standbys = vec!["node3".into()];
        let node2 = v.member("node2").cloned().expect("node2");
        assert!(
            switchover_ready(&v, &node2).is_err(),
            "switchover: not in /sync"
        );
        v.switchover = Some(request(None, Some("node2")));
        assert_eq!(
            switchover_ready(&v, &node2),
            Ok(()),
            "failover: the operator's call"
        );
    }

    #[test]
    fn only_the_named_candidate_races_and_a_failover_waives_its_lag() {
        let mut v = leaderless("node3");
        v.members = vec![replica("node2"), replica("node3").lsn(0)];
        v.config.maximum_lag_on_failover = 100; // node3 is 10,000 bytes behind
        v.switchover = Some(request(None, Some("node3")));
        assert_eq!(
            race(&v),
            Race::Race,
            "a failover's candidate races despite its lag"
        );
        v.switchover = Some(request(Some("node1"), Some("node3")));
        assert!(
            matches!(race(&v), Race::StandDown(_)),
            "a switchover's candidate must be healthy"
        );
        v.me = "node2".into();
        v.switchover = Some(request(None, Some("node3")));
        assert_eq!(race(&v), stand_down("manual failover to node3"));
    }

    #[test]
    fn a_request_that_kept_the_cluster_leaderless_past_ttl_is_ignored() {
        let mut v = leaderless("node2");
        v.switchover = Some(request(None, Some("node3")));
        v.leaderless_ms = Some(v.config.ttl_ms - 1);
        assert!(pending_switchover(&v).is_some());
        v.leaderless_ms = Some(v.config.ttl_ms + 1);
        assert!(pending_switchover(&v).is_none());
    }
}
