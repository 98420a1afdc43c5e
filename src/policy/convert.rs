//! Conversions between the SDK's plain types (`pgwarden_policy`, what the agent builds and
//! traces store) and the types `bindgen!` generated for the component boundary. Both mirror
//! the same WIT, so each conversion is a field-for-field copy: SDK → WIT for the arguments
//! (event, view), WIT → SDK for the answers (decision, info).

use pgwarden_policy as sdk;

use super::bindings::pgwarden::policy::types as wit;

fn role(r: sdk::Role) -> wit::Role {
    match r {
        sdk::Role::Primary => wit::Role::Primary,
        sdk::Role::Replica => wit::Role::Replica,
        sdk::Role::StandbyLeader => wit::Role::StandbyLeader,
        sdk::Role::Unknown => wit::Role::Unknown,
    }
}

fn sync_mode(m: sdk::SynchronousMode) -> wit::SynchronousMode {
    match m {
        sdk::SynchronousMode::Off => wit::SynchronousMode::Off,
        sdk::SynchronousMode::On => wit::SynchronousMode::On,
        sdk::SynchronousMode::Strict => wit::SynchronousMode::Strict,
        sdk::SynchronousMode::Quorum => wit::SynchronousMode::Quorum,
    }
}

fn member(m: &sdk::Member) -> wit::Member {
    wit::Member {
        name: m.name.clone(),
        role: role(m.role),
        state: m.state.clone(),
        streaming: m.streaming,
        timeline: m.timeline,
        received_lsn: m.received_lsn,
        replayed_lsn: m.replayed_lsn,
        lag_bytes: m.lag_bytes,
        tags: m.tags.clone(),
        is_sync: m.is_sync,
        failover_priority: m.failover_priority,
        heartbeat_age_ms: m.heartbeat_age_ms,
        reachable: m.reachable,
    }
}

fn switchover(s: &sdk::Switchover) -> wit::Switchover {
    wit::Switchover {
        leader: s.leader.clone(),
        candidate: s.candidate.clone(),
        override_policy: s.override_policy,
    }
}

fn config(c: &sdk::Config) -> wit::Config {
    wit::Config {
        ttl_ms: c.ttl_ms,
        loop_wait_ms: c.loop_wait_ms,
        retry_timeout_ms: c.retry_timeout_ms,
        maximum_lag_on_failover: c.maximum_lag_on_failover,
        maximum_lag_on_syncnode: c.maximum_lag_on_syncnode,
        synchronous_mode: sync_mode(c.synchronous_mode),
        synchronous_node_count: c.synchronous_node_count,
        check_timeline: c.check_timeline,
        params: c.params.clone(),
    }
}

/// SDK event → component event.
pub fn event_to_wit(e: &sdk::Event) -> wit::Event {
    match e {
        sdk::Event::Tick => wit::Event::Tick,
        sdk::Event::Election => wit::Event::Election,
        sdk::Event::LeaderExpired(n) => wit::Event::LeaderExpired(n.clone()),
        sdk::Event::LeaderChanged(n) => wit::Event::LeaderChanged(n.clone()),
        sdk::Event::LeaseAcquired => wit::Event::LeaseAcquired,
        sdk::Event::LeaseLost => wit::Event::LeaseLost,
        sdk::Event::LagExceeded(n) => wit::Event::LagExceeded(n.clone()),
        sdk::Event::LagRecovered(n) => wit::Event::LagRecovered(n.clone()),
        sdk::Event::SyncChanged(names) => wit::Event::SyncChanged(names.clone()),
        sdk::Event::MemberJoined(n) => wit::Event::MemberJoined(n.clone()),
        sdk::Event::MemberLeft(n) => wit::Event::MemberLeft(n.clone()),
        sdk::Event::PostgresDown => wit::Event::PostgresDown,
        sdk::Event::PostgresUp => wit::Event::PostgresUp,
        sdk::Event::StoreUnreachable(why) => wit::Event::StoreUnreachable(why.clone()),
        sdk::Event::StoreReachable => wit::Event::StoreReachable,
        sdk::Event::SwitchoverRequested(s) => wit::Event::SwitchoverRequested(switchover(s)),
    }
}

/// SDK view → component view.
pub fn view_to_wit(v: &sdk::ClusterView) -> wit::ClusterView {
    wit::ClusterView {
        now_ms: v.now_ms,
        me: v.me.clone(),
        members: v.members.iter().map(member).collect(),
        lease: wit::Lease {
            holder: v.lease.holder.clone(),
            mine: v.lease.mine,
            time_left_ms: v.lease.time_left_ms,
        },
        last_leader: v.last_leader.as_ref().map(member),
        leaderless_ms: v.leaderless_ms,
        cluster_timeline: v.cluster_timeline,
        leader_lsn: v.leader_lsn,
        sync_leader: v.sync_leader.clone(),
        sync_standbys: v.sync_standbys.clone(),
        switchover: v.switchover.as_ref().map(switchover),
        config: config(&v.config),
    }
}

/// Component decision → SDK decision.
pub fn decision_from_wit(d: wit::Decision) -> sdk::Decision {
    sdk::Decision {
        race: match d.race {
            wit::Race::Race => sdk::Race::Race,
            wit::Race::StandDown(why) => sdk::Race::StandDown(why),
            wit::Race::Wait(w) => sdk::Race::Wait(sdk::Wait {
                delay_ms: w.delay_ms,
                reason: w.reason,
            }),
        },
        preference: d.preference,
        fence: match d.fence {
            wit::Fence::None => sdk::Fence::None,
            wit::Fence::Demote(why) => sdk::Fence::Demote(why),
            wit::Fence::Fence(why) => sdk::Fence::Fence(why),
        },
        sync_standbys: d.sync_standbys,
    }
}

/// Component info → SDK info.
pub fn info_from_wit(i: wit::Info) -> sdk::Info {
    sdk::Info {
        name: i.name,
        version: i.version,
        description: i.description,
    }
}
