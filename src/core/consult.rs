//! Consulting the policy: what the core sends (`PolicyCall`: an event and the immutable
//! cluster view in the contract's types) and how it tells events apart from the facts it
//! already had. Building the view is pure: every field comes from the agent's facts.

use super::types::Revision;
use std::collections::BTreeSet;

use pgwarden_policy as contract;

use super::time::Instant;
use super::view::{ClusterView, MemberInfo, PeerReport, PgObservation, Schedule};
use crate::config::{DynamicConfig, SynchronousMode};

/// The agent's facts a policy's view and events are made of, borrowed: the core hands
/// these over, not the agent, so this module depends on facts only.
pub struct PolicyFacts<'a> {
    /// This member's name.
    pub me: &'a str,
    /// Time of the input being handled.
    pub now: Instant,
    /// Latest lock store content.
    pub view: Option<&'a ClusterView>,
    /// Latest PostgreSQL probe.
    pub pg: Option<&'a PgObservation>,
    /// Effective dynamic configuration.
    pub config: &'a DynamicConfig,
    /// Local `policy.params`.
    pub local_params: &'a std::collections::BTreeMap<String, String>,
    /// Configured tags.
    pub tags: &'a serde_json::Map<String, serde_json::Value>,
    /// This member's failover priority.
    pub failover_priority: i64,
    /// Whether the leader key is ours (on our lease).
    pub holds_leader_key: bool,
    /// Why the lock store is unreachable, when it is.
    pub dcs_error: Option<&'a str>,
    /// Time left before the demotion deadline, while we hold the key.
    pub time_left_ms: Option<u64>,
    /// The leader as last seen.
    pub last_leader: Option<&'a contract::Member>,
    /// Since when the leader key has been free.
    pub leaderless_since: Option<Instant>,
    /// The last peer probe's answers.
    pub peers: Option<&'a [PeerReport]>,
    /// Which standbys reply (see `replies`): only they count as streaming.
    pub live_standbys: &'a dyn StandbyLiveness,
}

/// Whether a standby's replies are live, judged by whoever keeps the reply clocks.
pub trait StandbyLiveness {
    /// Whether every connection named `name` in `rows` (`pg_stat_replication`) replies.
    fn is_live(&self, rows: &[super::view::ReplicationPeer], name: &str) -> bool;
}

pub use super::protocol::{ConsultPurpose, PolicyAnswer, PolicyCall};

/// The facts events are derived from, as of the last time the core looked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventBaseline {
    leader: Option<String>,
    held_leader_key: bool,
    members: BTreeSet<String>,
    sync_standbys: Vec<String>,
    lagging: BTreeSet<String>,
    postgres_up: Option<bool>,
    store_reachable: bool,
    failover: Option<(Revision, contract::Switchover)>,
}

impl EventBaseline {
    /// Compare the agent's facts with the baseline, return what changed as events, and move
    /// the baseline forward.
    pub fn advance(&mut self, agent: &PolicyFacts<'_>) -> Vec<contract::Event> {
        let mut events = Vec::new();
        let now = EventBaseline::observe(agent);
        if now.store_reachable != self.store_reachable {
            events.push(if now.store_reachable {
                contract::Event::StoreReachable
            } else {
                contract::Event::StoreUnreachable(
                    agent
                        .dcs_error
                        .unwrap_or("lock store unreachable")
                        .to_string(),
                )
            });
        }
        if agent.view.is_some() {
            if self.held_leader_key && !now.held_leader_key {
                events.push(contract::Event::LeaseLost);
            }
            if !self.held_leader_key && now.held_leader_key {
                events.push(contract::Event::LeaseAcquired);
            }
            if now.leader != self.leader {
                match (&self.leader, &now.leader) {
                    (_, Some(new)) => events.push(contract::Event::LeaderChanged(new.clone())),
                    (Some(old), None) => events.push(contract::Event::LeaderExpired(old.clone())),
                    (None, None) => {}
                }
            }
            for joined in now.members.difference(&self.members) {
                events.push(contract::Event::MemberJoined(joined.clone()));
            }
            for left in self.members.difference(&now.members) {
                events.push(contract::Event::MemberLeft(left.clone()));
            }
            if now.sync_standbys != self.sync_standbys {
                events.push(contract::Event::SyncChanged(now.sync_standbys.clone()));
            }
            if let Some((revision, request)) = &now.failover {
                if self.failover.as_ref().map(|(r, _)| r) != Some(revision) {
                    events.push(contract::Event::SwitchoverRequested(request.clone()));
                }
            }
            for name in now.lagging.difference(&self.lagging) {
                events.push(contract::Event::LagExceeded(name.clone()));
            }
            for name in self.lagging.difference(&now.lagging) {
                if now.members.contains(name) {
                    events.push(contract::Event::LagRecovered(name.clone()));
                }
            }
        }
        match (self.postgres_up, now.postgres_up) {
            (Some(true), Some(false)) => events.push(contract::Event::PostgresDown),
            (Some(false), Some(true)) => events.push(contract::Event::PostgresUp),
            _ => {}
        }
        *self = now;
        events
    }

    fn observe(agent: &PolicyFacts<'_>) -> EventBaseline {
        let Some(view) = agent.view else {
            return EventBaseline {
                postgres_up: agent.pg.map(PgObservation::is_running),
                store_reachable: agent.dcs_error.is_none(),
                ..EventBaseline::default()
            };
        };
        let max_lag = agent.config.maximum_lag_on_failover;
        let lagging = view
            .members
            .values()
            .filter(|m| lag_bytes(view, m).is_some_and(|lag| lag > max_lag))
            .map(|m| m.name.clone())
            .collect();
        EventBaseline {
            leader: view.leader_name().map(str::to_owned),
            held_leader_key: agent.holds_leader_key,
            members: view.members.keys().cloned().collect(),
            sync_standbys: view
                .sync
                .as_ref()
                .map(|s| s.value.sync_standby.clone())
                .unwrap_or_default(),
            lagging,
            postgres_up: agent.pg.map(PgObservation::is_running),
            store_reachable: agent.dcs_error.is_none(),
            failover: pending_switchover(view, agent.now, agent.config),
        }
    }
}

/// The `failover` key as policies see it, with its revision. A scheduled switchover is seen
/// from its time on (the event that it is requested comes then).
fn pending_switchover(
    view: &ClusterView,
    now: Instant,
    config: &DynamicConfig,
) -> Option<(Revision, contract::Switchover)> {
    let failover = view.failover.as_ref()?;
    let request = &failover.value;
    let loop_wait = std::time::Duration::from_secs(config.loop_wait.into());
    // Paused, only a request naming its candidate and not scheduled goes through (Patroni).
    let allowed_while_paused = request.candidate.is_some() && request.scheduled_at.is_none();
    let allowed = !config.pause || allowed_while_paused;
    (request.schedule(now, loop_wait) == Schedule::Due && allowed).then(|| {
        (
            failover.mod_revision,
            contract::Switchover {
                leader: request.leader.clone(),
                candidate: request.candidate.clone(),
                override_policy: request.override_policy,
            },
        )
    })
}

fn lag_bytes(view: &ClusterView, member: &MemberInfo) -> Option<u64> {
    if view.leader_name() == Some(member.name.as_str()) {
        return None;
    }
    let optime = view.optime?;
    Some(optime.bytes_since(member.wal_position?))
}

fn role_from_text(role: &str) -> contract::Role {
    match role {
        "primary" | "master" => contract::Role::Primary,
        "replica" => contract::Role::Replica,
        "standby_leader" | "standby-leader" => contract::Role::StandbyLeader,
        _ => contract::Role::Unknown,
    }
}

fn tag_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A member as the lock store shows it.
fn member_from_key(view: &ClusterView, m: &MemberInfo) -> contract::Member {
    let sync_standbys = view.sync.as_ref().map(|s| &s.value.sync_standby);
    contract::Member {
        name: m.name.clone(),
        role: role_from_text(&m.role),
        state: m.state.clone(),
        streaming: m.replication_state.as_deref() == Some("streaming"),
        timeline: m.timeline.map(|t| t.0),
        received_lsn: m.wal_position.map(|l| l.0),
        replayed_lsn: m.wal_position.map(|l| l.0),
        lag_bytes: lag_bytes(view, m),
        tags: m
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), tag_text(v)))
            .collect(),
        is_sync: sync_standbys.is_some_and(|s| s.contains(&m.name)),
        failover_priority: m.failover_priority(),
        heartbeat_age_ms: None,
        reachable: None,
    }
}

/// Our own entry, from the local probe (fresher than our member key).
fn apply_local(member: &mut contract::Member, pg: &PgObservation, optime: Option<u64>) {
    match &pg.server {
        Some(server) => {
            member.role = if server.in_recovery {
                contract::Role::Replica
            } else {
                contract::Role::Primary
            };
            member.state = "running".into();
            member.timeline = Some(server.timeline.0);
            member.streaming = server.receiver_status.as_deref() == Some("streaming");
            member.received_lsn = Some(server.received.unwrap_or(server.wal_position).0);
            member.replayed_lsn = Some(server.replayed.unwrap_or(server.wal_position).0);
            member.lag_bytes = if server.in_recovery {
                optime.map(|o| o.saturating_sub(server.wal_position.0))
            } else {
                None
            };
        }
        None => {
            member.role = contract::Role::Unknown;
            member.state = if pg.postmaster_alive {
                "starting".into()
            } else {
                "stopped".into()
            };
            member.streaming = false;
            member.timeline = pg.timeline().map(|t| t.0);
        }
    }
}

/// A probed peer's answer overrides what its member key said.
fn apply_report(member: &mut contract::Member, report: &PeerReport) {
    let Some(status) = report.status.as_ref() else {
        member.reachable = Some(false);
        return;
    };
    member.reachable = Some(true);
    member.role = role_from_text(&status.role);
    member.state = status.state.clone();
    if let Some(tl) = status.timeline {
        member.timeline = Some(tl.0);
    }
    if let Some(lsn) = status.wal_position {
        member.received_lsn = Some(lsn.0);
        member.replayed_lsn = Some(lsn.0);
    }
    member.failover_priority = if status.can_lead {
        status.failover_priority
    } else {
        0
    };
}

fn synchronous_mode(agent: &PolicyFacts<'_>) -> contract::SynchronousMode {
    match (
        agent.config.synchronous_mode,
        agent.config.synchronous_mode_strict,
    ) {
        (SynchronousMode::Off, _) => contract::SynchronousMode::Off,
        (SynchronousMode::On, false) => contract::SynchronousMode::On,
        (SynchronousMode::On, true) => contract::SynchronousMode::Strict,
        (SynchronousMode::Quorum, _) => contract::SynchronousMode::Quorum,
    }
}

/// The local `policy.params`, overridden by those of `/config`. In quorum mode the host
/// adds `/sync.quorum` as [`contract::SYNC_QUORUM_PARAM`]: contract 0.1.0 has no field for
/// it, and a policy cannot count votes without it.
fn policy_params(agent: &PolicyFacts<'_>) -> Vec<(String, String)> {
    let mut params = agent.local_params.clone();
    if let Some(cluster) = agent.config.policy.as_ref() {
        params.extend(cluster.params.clone());
    }
    let quorum = agent
        .view
        .and_then(|v| v.sync.as_ref())
        .map(|s| s.value.quorum);
    if let Some(quorum) =
        quorum.filter(|_| agent.config.synchronous_mode == SynchronousMode::Quorum)
    {
        params.insert(contract::SYNC_QUORUM_PARAM.to_string(), quorum.to_string());
    }
    params.into_iter().collect()
}

/// The view a policy gets, built from the agent's facts. `peers`: include the reports of the
/// last peer probe (elections only: they are stale otherwise).
pub fn policy_view(agent: &PolicyFacts<'_>, with_peers: bool) -> contract::ClusterView {
    let me = agent.me.to_string();
    let empty = ClusterView::default();
    let view = agent.view.unwrap_or(&empty);
    let optime = view.optime.map(|l| l.0);
    let leading_server = agent
        .pg
        .and_then(|p| p.server.as_ref())
        .filter(|s| !s.in_recovery && agent.holds_leader_key);
    let mut members: Vec<contract::Member> = view
        .members
        .values()
        .map(|m| member_from_key(view, m))
        .collect();
    if !members.iter().any(|m| m.name == me) {
        members.push(contract::Member {
            name: me.clone(),
            role: contract::Role::Unknown,
            state: "stopped".into(),
            streaming: false,
            timeline: None,
            received_lsn: None,
            replayed_lsn: None,
            lag_bytes: None,
            tags: agent
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), tag_text(v)))
                .collect(),
            is_sync: false,
            failover_priority: agent.failover_priority,
            heartbeat_age_ms: None,
            reachable: None,
        });
        members.sort_by(|a, b| a.name.cmp(&b.name));
    }
    for member in &mut members {
        if member.name == me {
            member.failover_priority = agent.failover_priority;
            if let Some(pg) = agent.pg {
                apply_local(member, pg, optime);
            }
            continue;
        }
        if let Some(server) = leading_server {
            // The leader knows its standbys best: pg_stat_replication.
            let row = server
                .replication
                .iter()
                .find(|r| r.application_name == member.name);
            // A standby that stopped replying is not counted as streaming: it may not be
            // made synchronous (see `core::replies`).
            member.streaming = row.is_some()
                && agent
                    .live_standbys
                    .is_live(&server.replication, &member.name);
            if let Some(row) = row {
                member.received_lsn = row.flush_lsn.map(|l| l.0);
                member.replayed_lsn = row.replay_lsn.map(|l| l.0);
                member.lag_bytes = row.flush_lsn.map(|l| server.wal_position.bytes_since(l));
            }
        }
        if with_peers {
            if let Some(report) = agent
                .peers
                .and_then(|peers| peers.iter().find(|p| p.name == member.name))
            {
                apply_report(member, report);
            }
        }
    }
    let held = agent.holds_leader_key;
    let time_left_ms = agent.time_left_ms.filter(|_| held);
    let sync = view.sync.as_ref().map(|s| &s.value);
    let config = agent.config;
    contract::ClusterView {
        now_ms: agent.now.0,
        me,
        members,
        lease: contract::Lease {
            holder: view.leader_name().map(str::to_owned),
            mine: held,
            time_left_ms,
        },
        last_leader: agent.last_leader.cloned(),
        leaderless_ms: agent
            .leaderless_since
            .filter(|_| view.leader.is_none())
            .map(|since| agent.now.0.saturating_sub(since.0)),
        cluster_timeline: view.timeline().map(|t| t.0),
        leader_lsn: optime,
        sync_leader: sync.and_then(|s| s.leader.clone()),
        sync_standbys: sync.map(|s| s.sync_standby.clone()).unwrap_or_default(),
        switchover: pending_switchover(view, agent.now, agent.config).map(|(_, request)| request),
        config: contract::Config {
            ttl_ms: u64::from(config.ttl) * 1000,
            loop_wait_ms: u64::from(config.loop_wait) * 1000,
            retry_timeout_ms: u64::from(config.retry_timeout) * 1000,
            maximum_lag_on_failover: config.maximum_lag_on_failover,
            // Patroni: 0 or below never swaps a synchronous standby for lag.
            maximum_lag_on_syncnode: u64::try_from(config.maximum_lag_on_syncnode)
                .ok()
                .filter(|limit| *limit > 0),
            synchronous_mode: synchronous_mode(agent),
            synchronous_node_count: config.synchronous_node_count,
            check_timeline: config.check_timeline,
            params: policy_params(agent),
        },
    }
}

/// The leader as last seen (its member key expires with it) and since when, at which view
/// revision, the key has been free.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaderMemory {
    /// The leader as last seen in the view.
    pub last_leader: Option<contract::Member>,
    /// When the key was first seen free.
    pub leaderless_since: Option<Instant>,
    /// The view revision at which it was first seen free.
    pub leaderless_since_revision: Option<Revision>,
}

impl LeaderMemory {
    /// Updates the memory from a new view seen at `now`.
    pub fn track(&mut self, view: &ClusterView, now: Instant) {
        match view.leader.as_ref() {
            Some(leader) => {
                self.leaderless_since = None;
                self.leaderless_since_revision = None;
                if let Some(member) = view.members.get(&leader.name) {
                    self.last_leader = Some(member_from_key(view, member));
                }
            }
            None => {
                if self.leaderless_since.is_none() {
                    self.leaderless_since = Some(now);
                    self.leaderless_since_revision = Some(view.revision);
                }
            }
        }
    }
}

/// Answer a call with the default policy, natively: what the simulation and the core's tests
/// use, and what the runtime falls back to.
pub fn decide_with_default(call: &PolicyCall) -> PolicyAnswer {
    use contract::Policy;
    PolicyAnswer {
        seq: call.seq,
        decision: pgwarden_policy_default::DefaultPolicy::decide(&call.event, &call.view),
        fallback: None,
        warnings: Vec::new(),
    }
}
