//! Conversions between the generated component types and the SDK's types. Both mirror the
//! same WIT, so each conversion is a field-for-field copy.

use crate::bindings::pgwarden::policy::types as wit;
use crate::types::*;

fn role(r: wit::Role) -> Role {
    match r {
        wit::Role::Primary => Role::Primary,
        wit::Role::Replica => Role::Replica,
        wit::Role::StandbyLeader => Role::StandbyLeader,
        wit::Role::Unknown => Role::Unknown,
    }
}

fn sync_mode(m: wit::SynchronousMode) -> SynchronousMode {
    match m {
        wit::SynchronousMode::Off => SynchronousMode::Off,
        wit::SynchronousMode::On => SynchronousMode::On,
        wit::SynchronousMode::Strict => SynchronousMode::Strict,
        wit::SynchronousMode::Quorum => SynchronousMode::Quorum,
    }
}

fn member(m: wit::Member) -> Member {
    Member {
        name: m.name,
        role: role(m.role),
        state: m.state,
        streaming: m.streaming,
        timeline: m.timeline,
        received_lsn: m.received_lsn,
        replayed_lsn: m.replayed_lsn,
        lag_bytes: m.lag_bytes,
        tags: m.tags,
        is_sync: m.is_sync,
        failover_priority: m.failover_priority,
        heartbeat_age_ms: m.heartbeat_age_ms,
        reachable: m.reachable,
    }
}

fn switchover(s: wit::Switchover) -> Switchover {
    Switchover {
        leader: s.leader,
        candidate: s.candidate,
        override_policy: s.override_policy,
    }
}

/// Host event → SDK event.
pub fn event_from_wit(e: wit::Event) -> Event {
    match e {
        wit::Event::Tick => Event::Tick,
        wit::Event::Election => Event::Election,
        wit::Event::LeaderExpired(n) => Event::LeaderExpired(n),
        wit::Event::LeaderChanged(n) => Event::LeaderChanged(n),
        wit::Event::LeaseAcquired => Event::LeaseAcquired,
        wit::Event::LeaseLost => Event::LeaseLost,
        wit::Event::LagExceeded(n) => Event::LagExceeded(n),
        wit::Event::LagRecovered(n) => Event::LagRecovered(n),
        wit::Event::SyncChanged(names) => Event::SyncChanged(names),
        wit::Event::MemberJoined(n) => Event::MemberJoined(n),
        wit::Event::MemberLeft(n) => Event::MemberLeft(n),
        wit::Event::PostgresDown => Event::PostgresDown,
        wit::Event::PostgresUp => Event::PostgresUp,
        wit::Event::StoreUnreachable(why) => Event::StoreUnreachable(why),
        wit::Event::StoreReachable => Event::StoreReachable,
        wit::Event::SwitchoverRequested(s) => Event::SwitchoverRequested(switchover(s)),
    }
}

/// Host view → SDK view.
pub fn view_from_wit(v: wit::ClusterView) -> ClusterView {
    ClusterView {
        now_ms: v.now_ms,
        me: v.me,
        members: v.members.into_iter().map(member).collect(),
        lease: Lease {
            holder: v.lease.holder,
            mine: v.lease.mine,
            time_left_ms: v.lease.time_left_ms,
        },
        last_leader: v.last_leader.map(member),
        leaderless_ms: v.leaderless_ms,
        cluster_timeline: v.cluster_timeline,
        leader_lsn: v.leader_lsn,
        sync_leader: v.sync_leader,
        sync_standbys: v.sync_standbys,
        switchover: v.switchover.map(switchover),
        config: Config {
            ttl_ms: v.config.ttl_ms,
            loop_wait_ms: v.config.loop_wait_ms,
            retry_timeout_ms: v.config.retry_timeout_ms,
            maximum_lag_on_failover: v.config.maximum_lag_on_failover,
            maximum_lag_on_syncnode: v.config.maximum_lag_on_syncnode,
            synchronous_mode: sync_mode(v.config.synchronous_mode),
            synchronous_node_count: v.config.synchronous_node_count,
            check_timeline: v.config.check_timeline,
            params: v.config.params,
        },
    }
}

/// SDK decision → host decision.
pub fn decision_to_wit(d: Decision) -> wit::Decision {
    wit::Decision {
        race: match d.race {
            Race::Race => wit::Race::Race,
            Race::StandDown(why) => wit::Race::StandDown(why),
            Race::Wait(w) => wit::Race::Wait(wit::Wait {
                delay_ms: w.delay_ms,
                reason: w.reason,
            }),
        },
        preference: d.preference,
        fence: match d.fence {
            Fence::None => wit::Fence::None,
            Fence::Demote(why) => wit::Fence::Demote(why),
            Fence::Fence(why) => wit::Fence::Fence(why),
        },
        sync_standbys: d.sync_standbys,
    }
}

/// SDK info → host info.
pub fn info_to_wit(i: Info) -> wit::Info {
    wit::Info {
        name: i.name,
        version: i.version,
        description: i.description,
    }
}
