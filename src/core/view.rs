//! Immutable snapshots the core decides on: what the lock store holds (`ClusterView`) and
//! what the local PostgreSQL looks like (`PgObservation`). Built by the runtime's adapters,
//! never mutated by the core.

use std::collections::BTreeMap;

use super::types::{Lsn, Revision, Timeline};
use crate::config::DynamicConfig;

/// A value read from the lock store together with the revision that guards writes to it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// etcd `mod_revision` of the key, for compare-and-swap.
    pub mod_revision: Revision,
}

/// The `leader` key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderKey {
    /// Member name stored as the key's value.
    pub name: String,
    /// The lease the key hangs off.
    pub lease: i64,
    /// etcd `create_revision`: with the lease id it forms the fencing token.
    pub create_revision: Revision,
}

/// One `members/<name>` key, decoded.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemberInfo {
    /// Member name (the key's last segment).
    pub name: String,
    /// `postgres://host:port/db` of its PostgreSQL.
    pub conn_url: String,
    /// `http://host:port/patroni` of its REST API.
    pub api_url: String,
    /// PostgreSQL state (`running`, `starting`, `stopped`, ...).
    pub state: String,
    /// Role as Patroni names it (`primary`, `replica`, ...).
    pub role: String,
    /// Current timeline, when known.
    pub timeline: Option<Timeline>,
    /// The member's WAL position (primary: write position, replica: max of received/replayed).
    pub wal_position: Option<Lsn>,
    /// `streaming` / `in archive recovery` for replicas.
    pub replication_state: Option<String>,
    /// Tags as configured on the member.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// The whole value, for tools that want every field.
    pub raw: serde_json::Value,
}

impl MemberInfo {
    /// `nofailover` or a `failover_priority` ≤ 0 keep a member out of every race.
    pub fn can_lead(&self) -> bool {
        let nofailover = self
            .tags
            .get("nofailover")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        !nofailover && self.failover_priority() > 0
    }

    /// Patroni's `failover_priority` tag (default 1; `nofailover` means 0).
    pub fn failover_priority(&self) -> i64 {
        match self.tags.get("failover_priority").and_then(|v| v.as_i64()) {
            Some(p) => p,
            None if self.tags.get("nofailover").and_then(|v| v.as_bool()) == Some(true) => 0,
            None => 1,
        }
    }

    /// Tagged `nostream`: the member never streams, so the leader keeps no slot for it.
    pub fn nostream(&self) -> bool {
        self.tags.get("nostream").and_then(|v| v.as_bool()) == Some(true)
    }

    /// `nosync` or `nostream` tags or a non-positive `sync_priority` keep a member out of
    /// the sync set.
    pub fn can_be_sync(&self) -> bool {
        let flag = |name: &str| {
            self.tags
                .get(name)
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        };
        let nosync = flag("nosync") || flag("nostream");
        let priority = self
            .tags
            .get("sync_priority")
            .and_then(|v| v.as_i64())
            .unwrap_or(1);
        !nosync && priority > 0
    }
}

/// The `/sync` key.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncState {
    /// The leader that recorded the set.
    pub leader: Option<String>,
    /// Members recorded as synchronous standbys (sorted).
    pub sync_standby: Vec<String>,
    /// Votes a candidate needs in quorum mode.
    pub quorum: u32,
}

impl SyncState {
    /// Whether `name` may race under synchronous mode: the recorded leader or a recorded standby.
    pub fn allows(&self, name: &str) -> bool {
        self.leader.as_deref() == Some(name) || self.sync_standby.iter().any(|s| s == name)
    }
}

/// One `/history` line: `[timeline, switch_lsn, reason, timestamp, new_leader]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub timeline: Timeline,
    /// Where it ended.
    pub switch_lsn: Lsn,
    /// PostgreSQL's reason text.
    pub reason: String,
    /// ISO timestamp of the switch, when known.
    pub timestamp: Option<String>,
    /// Who became leader, when known.
    pub new_leader: Option<String>,
}

/// Everything under `/<namespace>/<scope>/`, decoded, at one etcd revision.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterView {
    /// etcd revision this view reflects.
    pub revision: Revision,
    /// `initialize`: `Some("")` while bootstrapping, then the system identifier.
    pub initialize: Option<String>,
    /// `initialize`'s etcd mod_revision (0 when absent).
    pub initialize_revision: Revision,
    /// `config`, when present and valid.
    pub config: Option<Versioned<DynamicConfig>>,
    /// Why the stored `config` was rejected, when it was (the agent keeps its last good one).
    pub config_error: Option<String>,
    /// What was adjusted or ignored in the stored `config` (timing fixed as Patroni fixes
    /// it, keys pgwarden does not act on): logged when the configuration changes.
    pub config_warnings: Vec<String>,
    /// `leader`.
    pub leader: Option<LeaderKey>,
    /// `members/*`.
    pub members: BTreeMap<String, MemberInfo>,
    /// `sync`.
    pub sync: Option<Versioned<SyncState>>,
    /// `history`.
    pub history: Vec<HistoryEntry>,
    /// `status.optime`: the leader's last published WAL position.
    pub optime: Option<Lsn>,
    /// `failover`: a pending manual failover or switchover.
    pub failover: Option<Versioned<FailoverRequest>>,
    /// `failsafe`: member name to REST API URL, as the leader last recorded it (empty when
    /// absent).
    pub failsafe: BTreeMap<String, String>,
}

/// The `failover` key: a manual failover (a candidate, no leader) or a switchover (the
/// current leader, optionally a candidate), as Patroni's REST API and patronictl write it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailoverRequest {
    /// The leader the request is addressed to (`leader`); absent for a failover.
    pub leader: Option<String>,
    /// The member to promote (`member`); absent for "any healthy standby".
    pub candidate: Option<String>,
    /// `scheduled_at`, as written: a switchover to carry out at that time.
    pub scheduled_at: Option<String>,
    /// When `scheduled_at` falls on this node's clock, set by the runtime as the view
    /// arrives (`None`: not scheduled, or a time that cannot be read).
    #[serde(default)]
    pub due: Option<super::time::Instant>,
    /// pgwarden's extension: the operator overrides the policy's refusal of the candidate
    /// (`override_policy`); policies see it and decide whether to honour it.
    pub override_policy: bool,
}

/// Where a `failover` request stands in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// To act on now: not scheduled, or its time has come.
    Due,
    /// Scheduled for later.
    Waiting,
    /// Scheduled, but more than one and a half `loop_wait` ago (Patroni's rule: a cluster
    /// that busy should not switch over at some random later moment), or at a time that
    /// cannot be read: to be deleted.
    Stale,
}

impl FailoverRequest {
    /// Where it stands at `now`, with the cluster's `loop_wait`.
    pub fn schedule(&self, now: super::time::Instant, loop_wait: std::time::Duration) -> Schedule {
        if self.scheduled_at.is_none() {
            return Schedule::Due;
        }
        match self.due {
            None => Schedule::Stale,
            Some(due) if now < due => Schedule::Waiting,
            Some(due) if now > due + loop_wait.mul_f32(1.5) => Schedule::Stale,
            Some(_) => Schedule::Due,
        }
    }

    /// A failover (no `leader`): the operator accepts promoting the candidate whatever its
    /// lag or synchronous state, as Patroni allows in a leaderless cluster.
    pub fn is_manual_failover(&self) -> bool {
        self.leader.is_none() && self.candidate.is_some()
    }
}

impl ClusterView {
    /// The timeline the cluster is on according to `/history` (last ended timeline + 1).
    pub fn timeline(&self) -> Option<Timeline> {
        self.history
            .iter()
            .map(|h| h.timeline)
            .max()
            .map(|t| Timeline(t.0 + 1))
    }

    /// How `patronictl list` and `GET /cluster` name a member's role.
    pub fn listed_role(&self, name: &str) -> ListedRole {
        if self.leader_name() == Some(name) {
            ListedRole::Leader
        } else if self
            .sync
            .as_ref()
            .is_some_and(|s| s.value.sync_standby.iter().any(|n| n == name))
        {
            let quorum = self.config.as_ref().is_some_and(|c| {
                c.value.synchronous_mode == crate::config::SynchronousMode::Quorum
            });
            if quorum {
                ListedRole::QuorumStandby
            } else {
                ListedRole::SyncStandby
            }
        } else {
            ListedRole::Replica
        }
    }

    /// The state column: the leader's PostgreSQL state, a standby's replication state.
    pub fn listed_state(&self, member: &MemberInfo) -> String {
        match (self.listed_role(&member.name), &member.replication_state) {
            (ListedRole::Leader, _) | (_, None) => member.state.clone(),
            (_, Some(replication)) => replication.clone(),
        }
    }

    /// Name of the leader key holder.
    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }
}

/// A member's role in listings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ListedRole {
    /// Holds the leader key.
    Leader,
    /// Recorded in `/sync`.
    SyncStandby,
    /// A voter recorded in `/sync` in quorum mode.
    QuorumStandby,
    /// Any other member.
    Replica,
}

impl ListedRole {
    /// patronictl's column text.
    pub fn title(self) -> &'static str {
        match self {
            ListedRole::Leader => "Leader",
            ListedRole::SyncStandby => "Sync Standby",
            ListedRole::QuorumStandby => "Quorum Standby",
            ListedRole::Replica => "Replica",
        }
    }

    /// `GET /cluster`'s role field.
    pub fn json_name(self) -> &'static str {
        match self {
            ListedRole::Leader => "leader",
            ListedRole::SyncStandby => "sync_standby",
            ListedRole::QuorumStandby => "quorum_standby",
            ListedRole::Replica => "replica",
        }
    }
}

/// State recorded in `pg_control` (`pg_controldata` "Database cluster state").
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ControlState {
    /// Clean shutdown of a primary.
    ShutDown,
    /// Clean shutdown of a standby.
    ShutDownInRecovery,
    /// Running (or crashed) as primary.
    InProduction,
    /// Running (or crashed) as standby.
    InArchiveRecovery,
    /// Anything else PostgreSQL reports.
    Other(String),
}

/// The data directory as seen on disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DataDir {
    /// Missing or empty: nothing to start.
    Empty,
    /// A cluster seems to be there but could not be read (pg_controldata failed). Nothing
    /// destructive may be decided on this: it is not "empty".
    Unreadable(String),
    /// A PostgreSQL cluster.
    Initialized {
        /// Database system identifier.
        sysid: String,
        /// From pg_control.
        state: ControlState,
        /// Timeline of the latest checkpoint.
        timeline: Timeline,
        /// `standby.signal` present.
        standby_signal: bool,
    },
}

/// One row of `pg_stat_replication` as the primary sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicationPeer {
    /// `application_name` (our member name).
    pub application_name: String,
    /// `state` (`streaming`, `catchup`, ...).
    pub state: String,
    /// `sync_state` (`sync`, `async`, `potential`, `quorum`).
    pub sync_state: String,
    /// `flush_lsn`.
    pub flush_lsn: Option<Lsn>,
    /// `replay_lsn`.
    pub replay_lsn: Option<Lsn>,
    /// `usename`.
    pub usename: Option<String>,
    /// `client_addr`.
    pub client_addr: Option<String>,
    /// `sync_priority`.
    pub sync_priority: i32,
    /// `pid` of the walsender: one connection (a name can have two while an old connection
    /// lingers after a reconnect).
    pub pid: Option<i32>,
    /// `reply_time` as text: the standby's send time of its last reply. Only its changes
    /// are used (see the `replies` module), so the standby's clock does not matter.
    pub reply_time: Option<String>,
}

/// A parameter whose new value waits for a restart (`pg_settings.pending_restart`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingParameter {
    /// Parameter name.
    pub name: String,
    /// The value in effect (`current_setting`).
    pub old_value: String,
    /// The value the configuration files set ("?" when they no longer name it).
    pub new_value: String,
}

/// A running PostgreSQL that answered the probe.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerObservation {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Current timeline.
    pub timeline: Timeline,
    /// Primary: `pg_current_wal_lsn()`; replica: max(received, replayed).
    pub wal_position: Lsn,
    /// Replica: last WAL position received.
    pub received: Option<Lsn>,
    /// Replica: last WAL position replayed.
    pub replayed: Option<Lsn>,
    /// Replica: timestamp of the last replayed transaction.
    pub replayed_timestamp: Option<String>,
    /// Replica: WAL receiver status (`streaming`, ...), when a receiver runs.
    pub receiver_status: Option<String>,
    /// Replica: `host:port` the WAL receiver is connected to.
    pub receiver_upstream: Option<String>,
    /// Primary: standbys connected.
    pub replication: Vec<ReplicationPeer>,
    /// Current `synchronous_standby_names`.
    pub synchronous_standby_names: String,
    /// Physical replication slots present.
    pub slots: Vec<String>,
    /// `server_version_num`.
    pub server_version: u32,
    /// `pg_postmaster_start_time()`, ISO text.
    pub postmaster_start_time: Option<String>,
    /// Parameters changed in the configuration files that take effect only at a restart.
    #[serde(default)]
    pub pending_restart: Vec<PendingParameter>,
    /// Replica: `pg_is_wal_replay_paused()`.
    #[serde(default)]
    pub replay_paused: bool,
}

/// What the probe saw of the local PostgreSQL.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PgObservation {
    /// The data directory.
    pub data_dir: DataDir,
    /// A postmaster process is alive (per `postmaster.pid`).
    pub postmaster_alive: bool,
    /// The server answered queries; `None` when it did not.
    pub server: Option<ServerObservation>,
    /// The probe got no answer in time (a frozen or hung postmaster), as opposed to an
    /// answer that was an error (too many clients, authentication, starting up): only
    /// silence counts towards `unresponsive_primary_timeout`.
    pub silent: bool,
}

impl PgObservation {
    /// Running and accepting queries.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// The postmaster is alive but the probe got no answer at all (frozen or hung). An
    /// answer with an error is not silence.
    pub fn is_unresponsive(&self) -> bool {
        self.postmaster_alive && self.server.is_none() && self.silent
    }

    /// Running as a writable primary.
    pub fn is_primary(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.in_recovery)
    }

    /// Best known WAL position (running server first, else nothing).
    pub fn wal_position(&self) -> Option<Lsn> {
        self.server.as_ref().map(|s| s.wal_position)
    }

    /// Current timeline (running server, else the checkpoint's).
    pub fn timeline(&self) -> Option<Timeline> {
        match (&self.server, &self.data_dir) {
            (Some(s), _) => Some(s.timeline),
            (None, DataDir::Initialized { timeline, .. }) => Some(*timeline),
            _ => None,
        }
    }
}

/// A peer's `/patroni` answer, probed during a leader race.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerReport {
    /// Member name.
    pub name: String,
    /// Answer, or `None` when it did not answer in time (unreachable members cannot veto).
    pub status: Option<PeerStatus>,
}

/// The fields of a peer's `/patroni` the race compares.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerStatus {
    /// `role`.
    pub role: String,
    /// `state`.
    pub state: String,
    /// WAL position: `xlog.location` on a primary, max(received, replayed) on a replica.
    pub wal_position: Option<Lsn>,
    /// `timeline`.
    pub timeline: Option<Timeline>,
    /// `failover_priority` from its tags.
    pub failover_priority: i64,
    /// Whether it may lead at all (`nofailover` false and priority > 0).
    pub can_lead: bool,
    /// `pgwarden.probe_revision`: the store revision its position is no older than (absent
    /// from Patroni peers, whose quorum votes then do not count).
    pub probe_revision: Option<Revision>,
}
