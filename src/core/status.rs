//! `NodeStatus`: the snapshot the core publishes for the REST API, metrics and the member
//! key. Readers never reach into the live node, so a hung PostgreSQL or lock store cannot
//! delay a health check.

use std::sync::Arc;
use std::time::Duration;

use super::time::Instant;
use super::types::{LeaseId, Lsn, Revision, Timeline};
use super::view::{ClusterView, PgObservation};
use crate::config::DynamicConfig;

/// What the node looks like at one instant.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// Member name.
    pub name: String,
    /// State machine state.
    pub state: &'static str,
    /// The leader key is ours on our current lease.
    pub holds_leader_key: bool,
    /// Our lease.
    pub lease: Option<LeaseId>,
    /// create_revision of our leader key while we hold it (fencing token, with the lease).
    pub leader_revision: Option<Revision>,
    /// When a primary must have demoted if the lease is not renewed.
    pub lease_deadline: Option<Instant>,
    /// When this snapshot was taken.
    pub now: Instant,
    /// Latest PostgreSQL probe.
    pub pg: Option<PgObservation>,
    /// Latest lock store view (shared with the core).
    pub view: Option<Arc<ClusterView>>,
    /// Effective dynamic configuration.
    pub config: DynamicConfig,
    /// Configured tags.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// PostgreSQL action in flight.
    pub pg_action: Option<&'static str>,
    /// Last transition and its reason.
    pub last_transition: String,
    /// Last PostgreSQL action error.
    pub last_error: Option<String>,
    /// Why the node did not race last time.
    pub last_race_refusal: Option<String>,
    /// The lock store revision this node had seen when the PostgreSQL probe behind `pg` was
    /// asked for: the position in `pg` is no older than that revision (quorum votes).
    pub probe_revision: Option<Revision>,
    /// Last successful contact with the lock store.
    pub dcs_last_seen: Option<Instant>,
    /// Last lock store error, cleared by the next success.
    pub dcs_error: Option<String>,
    /// `loop_wait`.
    pub loop_wait: Duration,
    /// `ttl`.
    pub ttl: Duration,
    /// The watchdog: mode, state, timeout, last keepalive.
    pub watchdog: super::watchdog::WatchdogStatus,
    /// What the policy and the invariant gate did.
    pub policy: PolicyStatus,
    /// Failsafe mode: whether it is on, whether this primary runs on it, what we answered.
    pub failsafe: FailsafeStatus,
    /// Recent answers to `POST /reinitialize`, by request id.
    pub reinitialize_verdicts: Vec<(u64, Result<(), String>)>,
    /// Recent answers to `POST /restart`: (request id, accepted or why not).
    pub restart_verdicts: Vec<(u64, Result<(), String>)>,
    /// How accepted restarts ended: (request id, done or the error).
    pub restart_results: Vec<(u64, Result<(), String>)>,
    /// The restart scheduled for later, if any.
    pub scheduled_restart: Option<super::restart::ScheduledRestart>,
    /// `failover_priority` (0 with `nofailover`).
    pub failover_priority: i64,
}

/// The failsafe part of `NodeStatus`, for `/patroni`, `/failsafe` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct FailsafeStatus {
    /// `failsafe_mode` in the effective configuration.
    pub enabled: bool,
    /// This primary keeps running on failsafe confirmations (the lock store unreachable).
    pub active: bool,
    /// `/failsafe` as last seen.
    pub members: std::collections::BTreeMap<String, String>,
    /// The last heartbeat accepted: from which leader, how long ago.
    pub last_heartbeat: Option<(String, Duration)>,
    /// Recent answers to `POST /failsafe`, by request id.
    pub verdicts: Vec<(u64, super::failsafe::HeartbeatVerdict)>,
}

impl FailsafeStatus {
    /// What we answered to request `id`.
    pub fn verdict(&self, id: u64) -> Option<&super::failsafe::HeartbeatVerdict> {
        self.verdicts
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v)
    }
}

/// The policy's and the gate's record, for `/patroni` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct PolicyStatus {
    /// Decisions the invariant gate refused, by rule.
    pub gate_rejections: std::collections::BTreeMap<&'static str, u64>,
    /// The last refusal.
    pub last_gate_rejection: Option<String>,
    /// Answers the embedded default gave because the policy failed.
    pub fallbacks: u64,
    /// The policy's last promotion preference.
    pub preference: Vec<String>,
}

/// Patroni's role names.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Read-write, holding the leader key.
    Primary,
    /// Standby.
    Replica,
    /// Not running or not known.
    Uninitialized,
}

impl Role {
    /// Patroni's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Uninitialized => "uninitialized",
        }
    }
}

/// What this member publishes in its member key (`members/<name>`): PostgreSQL as last
/// probed, the action in flight, the tags. `Effect::TouchMember` carries one, so the write
/// needs nothing but it and the node's fixed identity.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRecord {
    /// Latest PostgreSQL probe.
    pub pg: Option<PgObservation>,
    /// Kind of the PostgreSQL action in flight.
    pub pg_action: Option<&'static str>,
    /// The node is bootstrapping a new cluster (initdb, first start, or taking the leader
    /// key for the first time): the key says so throughout, or other members would take
    /// the `initialize` key for an orphan (see `initialize`).
    pub bootstrapping: bool,
    /// Tags as configured.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Maintenance mode is on (the key says `"pause": true`, as Patroni's; `patronictl
    /// pause --wait` waits for every member to say so).
    pub pause: bool,
    /// The restart scheduled for later (`scheduled_restart` in the key).
    pub scheduled_restart: Option<super::restart::ScheduledRestart>,
}

impl MemberRecord {
    /// Role from PostgreSQL's point of view (like Patroni's `role` field).
    pub fn role(&self) -> Role {
        role(self.pg.as_ref())
    }

    /// Patroni's PostgreSQL state string.
    pub fn pg_state(&self) -> &'static str {
        pg_state(self.pg.as_ref(), self.pg_action, self.bootstrapping)
    }

    /// Timeline PostgreSQL runs on.
    pub fn timeline(&self) -> Option<Timeline> {
        self.pg.as_ref().and_then(|p| p.timeline())
    }

    /// `streaming` or `in archive recovery` for a running standby.
    pub fn replication_state(&self) -> Option<&'static str> {
        replication_state(self.pg.as_ref())
    }
}

fn role(pg: Option<&PgObservation>) -> Role {
    match pg.and_then(|p| p.server.as_ref()) {
        Some(s) if !s.in_recovery => Role::Primary,
        Some(_) => Role::Replica,
        None => match pg.map(|p| &p.data_dir) {
            Some(super::view::DataDir::Initialized { .. }) => Role::Replica,
            _ => Role::Uninitialized,
        },
    }
}

fn pg_state(
    pg: Option<&PgObservation>,
    action: Option<&'static str>,
    bootstrapping: bool,
) -> &'static str {
    if bootstrapping {
        return super::initialize::BOOTSTRAPPING_STATE;
    }
    match (action, pg) {
        (Some("bootstrap"), _) => super::initialize::BOOTSTRAPPING_STATE,
        (Some("clone" | "reinitialize"), _) => "creating replica",
        (Some("rewind"), _) => "rewinding",
        (Some("restart"), _) => "restarting",
        (Some("demote"), _) => "stopping",
        (Some("start_replica" | "start_primary"), _) => "starting",
        (_, Some(pg)) if pg.server.is_some() => "running",
        (_, Some(pg)) if pg.postmaster_alive => "starting",
        _ => "stopped",
    }
}

fn replication_state(pg: Option<&PgObservation>) -> Option<&'static str> {
    let server = pg?.server.as_ref()?;
    if !server.in_recovery {
        return None;
    }
    Some(match server.receiver_status.as_deref() {
        Some("streaming") => "streaming",
        _ => "in archive recovery",
    })
}

impl NodeStatus {
    /// Role from PostgreSQL's point of view (like Patroni's `role` field).
    pub fn role(&self) -> Role {
        role(self.pg.as_ref())
    }

    /// Patroni's PostgreSQL state string.
    pub fn pg_state(&self) -> &'static str {
        pg_state(
            self.pg.as_ref(),
            self.pg_action,
            self.state == "bootstrapping",
        )
    }

    /// What the member key says (`MemberRecord`).
    pub fn member_record(&self) -> MemberRecord {
        MemberRecord {
            pg: self.pg.clone(),
            pg_action: self.pg_action,
            bootstrapping: self.state == "bootstrapping",
            tags: self.tags.clone(),
            pause: self.config.pause,
            scheduled_restart: self.scheduled_restart.clone(),
        }
    }

    /// Timeline PostgreSQL runs on.
    pub fn timeline(&self) -> Option<Timeline> {
        self.pg.as_ref().and_then(|p| p.timeline())
    }

    /// `streaming` or `in archive recovery` for a running standby.
    pub fn replication_state(&self) -> Option<&'static str> {
        replication_state(self.pg.as_ref())
    }

    /// Whether this member is a synchronous standby (`/sync` names it, synchronous mode is
    /// on and not quorum, PostgreSQL runs as a standby): Patroni's `sync_standby`.
    pub fn is_sync_standby(&self) -> bool {
        self.config.synchronous_mode == crate::config::SynchronousMode::On && self.listed_in_sync()
    }

    /// Whether this member votes in quorum commit (`/sync` names it and
    /// `synchronous_mode` is `quorum`): Patroni's `quorum_standby`.
    pub fn is_quorum_standby(&self) -> bool {
        self.config.synchronous_mode == crate::config::SynchronousMode::Quorum
            && self.listed_in_sync()
    }

    /// `/sync` names this member, which runs as a standby (a leader is never its own
    /// standby, whatever a stale `/sync` says).
    fn listed_in_sync(&self) -> bool {
        self.role() == Role::Replica
            && self
                .view
                .as_ref()
                .and_then(|v| v.sync.as_ref())
                .is_some_and(|s| {
                    s.value.leader.as_deref() != Some(self.name.as_str())
                        && s.value.sync_standby.contains(&self.name)
                })
    }

    /// The leader's WAL position as best known: `/status.optime` or what we received.
    pub fn leader_optime(&self) -> Option<Lsn> {
        let optime = self.view.as_ref().and_then(|v| v.optime);
        let received = self
            .pg
            .as_ref()
            .and_then(|p| p.server.as_ref())
            .and_then(|s| s.received);
        optime.max(received)
    }
}
