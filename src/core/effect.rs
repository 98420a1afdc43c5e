//! Effects: commands the core asks the runtime to carry out. Imperative names; each one is
//! executed by exactly one executor and its outcome returns as an `Input`.

use super::sync::StandbyNames;
use super::types::{LeaseId, Lsn, Revision, Timeline};
use super::view::SyncState;

/// Where a replica streams from (or clones from).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    /// Member name of the source.
    pub name: String,
    /// Its `conn_url` from the member key.
    pub conn_url: String,
    /// Whether to stream WAL from it. False for a member tagged `nostream`: it is cloned
    /// from the source but then replays only what `restore_command` and `pg_wal` give it
    /// (no `primary_conninfo`, no slot), as in Patroni.
    #[serde(default = "streams_by_default")]
    pub stream: bool,
}

fn streams_by_default() -> bool {
    true
}

/// How to stop PostgreSQL when demoting (Patroni's modes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DemoteMode {
    /// Fast shutdown with checkpoint, then release the leader key (switchover).
    Graceful,
    /// Immediate shutdown, release the leader key.
    Immediate,
    /// Immediate shutdown; the key is already gone or someone else's.
    ImmediateNolock,
    /// Fast shutdown while the lock store is unreachable; the key is left to expire.
    Offline,
}

impl DemoteMode {
    /// The `pg_ctl stop -m` mode.
    pub fn shutdown_mode(self) -> &'static str {
        match self {
            DemoteMode::Graceful | DemoteMode::Offline => "fast",
            DemoteMode::Immediate | DemoteMode::ImmediateNolock => "immediate",
        }
    }
}

/// Actions that change the local PostgreSQL. At most one runs at a time.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PgAction {
    /// initdb with the bootstrap options, write configuration and pg_hba, start, create roles.
    Bootstrap,
    /// pg_basebackup from `from`, write standby configuration, start as a replica.
    Clone {
        /// Source member.
        from: Upstream,
    },
    /// Wipe the data directory and clone again.
    Reinitialize {
        /// Source member.
        from: Upstream,
    },
    /// Start as a standby following `upstream` (none: replay local WAL and wait).
    StartReplica {
        /// Leader to follow, if known.
        upstream: Option<Upstream>,
    },
    /// Start as a primary (the leader key is ours and PostgreSQL was down).
    StartPrimary {
        /// `synchronous_standby_names` to start with (`None`: none). The runtime keeps the
        /// setting only in memory, so a restarted agent must be told what `/sync` promises.
        sync_standbys: Option<StandbyNames>,
    },
    /// Point a running standby at `upstream` (rewrites primary_conninfo and reloads).
    Follow {
        /// Leader to follow.
        upstream: Upstream,
    },
    /// Promote the standby; the fencing token must still be current when it runs.
    // Never read back from a log: a permit is made only by the gate (a replay takes the
    // promotion in flight instead, see `replay`).
    #[serde(skip_deserializing)]
    Promote {
        /// The gate's permit, with the fencing token (lease, leader key revision) the
        /// decision was made under.
        permit: super::safety::PromotionPermit,
        /// Strict synchronous mode: `synchronous_standby_names` to put in effect before the
        /// promotion, so the first commit already waits for a standby.
        sync_standbys: Option<StandbyNames>,
    },
    /// Stop PostgreSQL.
    Demote {
        /// How.
        mode: DemoteMode,
    },
    /// Stop if needed, pg_rewind against `from`, start as its standby.
    Rewind {
        /// The new leader.
        from: Upstream,
    },
    /// Set `synchronous_standby_names` (empty: none) and reload.
    SetSyncStandbys {
        /// The setting.
        names: StandbyNames,
    },
    /// Create missing physical replication slots.
    EnsureSlots {
        /// Slot names to exist.
        names: Vec<String>,
    },
    /// Rewrite the configuration files (postgresql.conf, pg_hba.conf, pg_ident.conf) from
    /// the configuration in force and reload PostgreSQL: `/config` or the local file
    /// changed. What needs a restart shows as pending in the next probe.
    Reload {
        /// PostgreSQL runs as a primary: the files must set up no standby (a primary
        /// promoted by hand in maintenance mode still has the standby setup it was started
        /// with, which a crash restart would otherwise bring back).
        primary: bool,
    },
    /// Stop PostgreSQL (fast) and start it again as `start` says (`StartPrimary` or
    /// `StartReplica`): `POST /restart`. The PostgreSQL worker starts a primary only while
    /// the lease it holds is current.
    Restart {
        /// How to start again.
        start: Box<PgAction>,
        /// The `POST /restart` request it answers (`None`: a scheduled restart).
        request: Option<u64>,
    },
}

impl PgAction {
    /// Short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PgAction::Bootstrap => "bootstrap",
            PgAction::Clone { .. } => "clone",
            PgAction::Reinitialize { .. } => "reinitialize",
            PgAction::StartReplica { .. } => "start_replica",
            PgAction::StartPrimary { .. } => "start_primary",
            PgAction::Follow { .. } => "follow",
            PgAction::Promote { .. } => "promote",
            PgAction::Demote { .. } => "demote",
            PgAction::Rewind { .. } => "rewind",
            PgAction::SetSyncStandbys { .. } => "set_sync_standbys",
            PgAction::EnsureSlots { .. } => "ensure_slots",
            PgAction::Reload { .. } => "reload",
            PgAction::Restart { .. } => "restart",
        }
    }

    /// Whether a failure is retried at the next regular cycle rather than at once: starting
    /// or building a server that just failed to start or build would fail the same way, and
    /// a clone retried in a tight loop hammers the leader. Stopping and promoting are not
    /// among them: what follows their failure decides safety and must not wait.
    pub fn retried_at_next_cycle(&self) -> bool {
        matches!(
            self,
            PgAction::Bootstrap
                | PgAction::Clone { .. }
                | PgAction::Reinitialize { .. }
                | PgAction::StartReplica { .. }
                | PgAction::StartPrimary { .. }
                | PgAction::Follow { .. }
                | PgAction::Rewind { .. }
                | PgAction::Reload { .. }
                | PgAction::Restart { .. }
        )
    }

    /// Whether carrying it out writes the configuration files from the configuration in
    /// force (so a pending reload is done by it).
    pub fn writes_configuration(&self) -> bool {
        matches!(
            self,
            PgAction::Bootstrap
                | PgAction::Clone { .. }
                | PgAction::Reinitialize { .. }
                | PgAction::StartReplica { .. }
                | PgAction::StartPrimary { .. }
                | PgAction::Follow { .. }
                | PgAction::Rewind { .. }
                | PgAction::SetSyncStandbys { .. }
                | PgAction::Reload { .. }
                | PgAction::Restart { .. }
        )
    }
}

/// A command for the runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Grant a new lease with this TTL (the first one, or a replacement after a `ttl` change).
    GrantLease {
        /// Requested TTL in seconds.
        ttl_secs: u32,
    },
    /// Send one keep-alive for `lease`, retrying a failed attempt within `retry_timeout`.
    RenewLease {
        /// The lease.
        lease: LeaseId,
        /// How long transient failures are retried (`retry_timeout` as configured now).
        retry_timeout: std::time::Duration,
    },
    /// Revoke a lease we no longer use (after moving our keys to a new one).
    RevokeLease {
        /// The old lease.
        lease: LeaseId,
    },
    /// Probe PostgreSQL (data dir, process, SQL) and report `PostgresProbed`.
    ProbePostgres,
    /// Write `members/<me>` on our lease.
    TouchMember {
        /// What the key says.
        member: Box<super::status::MemberRecord>,
        /// The lease.
        lease: LeaseId,
    },
    /// Create `initialize` (empty) if absent; report `InitializeRaced`.
    RaceInitialize,
    /// Delete `initialize` after a failed bootstrap.
    CancelInitialize,
    /// Delete an `initialize` key orphaned by a bootstrap that died half-way, if it is still
    /// at `mod_revision` (see `initialize`).
    ClearStaleInitialize {
        /// The orphaned key's mod_revision.
        mod_revision: Revision,
        /// How long it was seen orphaned, for the log.
        orphaned_for: std::time::Duration,
    },
    /// Set `initialize` to the system identifier.
    WriteInitialize {
        /// Database system identifier.
        sysid: String,
    },
    /// Create `config` from the bootstrap section if absent.
    WriteInitialConfig,
    /// Take the `leader` key on `lease` (create_revision == 0, or value == me with an old lease).
    AcquireLeader {
        /// The lease to attach.
        lease: LeaseId,
    },
    /// Delete `leader` if it is still the key we decided to give up: our name, on `lease`,
    /// created at `create_revision` (a delayed release must never delete a key taken again
    /// since, even on the same lease).
    ReleaseLeader {
        /// Our lease when the release was decided.
        lease: Option<LeaseId>,
        /// The key's create_revision as we last saw it.
        create_revision: Option<Revision>,
    },
    /// Compare-and-swap `sync` (expected `None`: create).
    WriteSync {
        /// Sequence number, returned in `Input::SyncWritten`.
        seq: u64,
        /// New value.
        state: SyncState,
        /// mod_revision read; `None` when the key did not exist.
        expected_revision: Option<Revision>,
    },
    /// Delete `failover` (with `expected_revision`: only if nobody rewrote it since).
    ClearFailover {
        /// mod_revision read; `None` deletes whatever is there (the new leader does).
        expected_revision: Option<Revision>,
        /// Why, for the log.
        reason: String,
    },
    /// Put `status` with the leader's WAL position.
    WriteStatus {
        /// Leader's WAL position.
        optime: Lsn,
    },
    /// Rebuild `history` from the local timeline history file of `timeline`.
    UpdateHistory {
        /// The timeline we run on.
        timeline: Timeline,
        /// `/history` as the core knows it (entries the local file lacks are kept).
        known: Vec<super::view::HistoryEntry>,
        /// `max_timelines_history`: keep only the newest this many entries (0: all).
        keep_last: u32,
    },
    /// The dynamic configuration PostgreSQL actions use from now on (parameters, pg_hba,
    /// slots): sent in order with them whenever `/config` changes.
    UsePgConfig(Box<crate::config::DynamicConfig>),
    /// GET `/patroni` of these members; report `PeersProbed`.
    ProbePeers {
        /// (name, api_url).
        members: Vec<(String, String)>,
    },
    /// Failsafe round: `POST /failsafe` to each of these members (name, api_url) with our
    /// name and addresses (2 s timeout, one retry); report `FailsafeConfirmed` with the send
    /// time of the round. Only 200 counts as accepted.
    ProbeFailsafe {
        /// (name, api_url) from `/failsafe`, ourselves excluded.
        members: Vec<(String, String)>,
    },
    /// Put `/failsafe` (`None`: delete it): member name to REST API URL.
    WriteFailsafe {
        /// The members, or `None` to delete the key (failsafe mode off).
        members: Option<std::collections::BTreeMap<String, String>>,
    },
    /// Ask the policy; report `PolicyDecided` (never later than the policy deadline: the
    /// runtime answers with the embedded default when the policy fails or hangs).
    ConsultPolicy(Box<super::protocol::PolicyCall>),
    /// Change the local PostgreSQL; report `PgActionFinished`.
    Pg(PgAction),
    /// Run the user's callback script for what just happened to PostgreSQL (see
    /// `callbacks`), if one is configured, without waiting for it; reports nothing.
    RunCallback(Callback),
    /// Check that the watchdog device exists and is writable, without opening it (opening
    /// a real device starts its countdown); report `WatchdogChecked`.
    CheckWatchdog,
    /// Open the watchdog device (if not open), set its timeout and send a first keepalive;
    /// report `WatchdogArmed`. Emitted before any promotion.
    ArmWatchdog {
        /// Seconds (`ttl - safety_margin`).
        timeout_secs: u32,
    },
    /// One keepalive; only after a successful lease renewal of the leader. A failure comes
    /// back as `WatchdogFeedFailed`.
    FeedWatchdog,
    /// Magic close (`V`) and close the device.
    DisarmWatchdog {
        /// Why, for the log.
        reason: String,
    },
    /// Stop the agent with an error (unrecoverable local state).
    Shutdown {
        /// Why.
        reason: String,
    },
}

impl Effect {
    /// What it does, where: the name of its span and of its step in the decision log
    /// (`pg.promote`, `dcs.lease.renew`).
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        let name = match self {
            Effect::Pg(action) => return format!("pg.{}", action.kind()).into(),
            Effect::GrantLease { .. } => "dcs.lease.grant",
            Effect::RenewLease { .. } => "dcs.lease.renew",
            Effect::RevokeLease { .. } => "dcs.lease.revoke",
            Effect::ProbePostgres => "pg.probe",
            Effect::TouchMember { .. } => "dcs.member.write",
            Effect::RaceInitialize => "dcs.initialize.race",
            Effect::CancelInitialize => "dcs.initialize.cancel",
            Effect::ClearStaleInitialize { .. } => "dcs.initialize.clear",
            Effect::WriteInitialize { .. } => "dcs.initialize.write",
            Effect::WriteInitialConfig => "dcs.config.write",
            Effect::AcquireLeader { .. } => "dcs.leader.acquire",
            Effect::ReleaseLeader { .. } => "dcs.leader.release",
            Effect::WriteSync { .. } => "dcs.sync.write",
            Effect::ClearFailover { .. } => "dcs.failover.clear",
            Effect::WriteStatus { .. } => "dcs.status.write",
            Effect::UpdateHistory { .. } => "dcs.history.write",
            Effect::UsePgConfig(_) => "pg.config",
            Effect::ProbePeers { .. } => "peers.probe",
            Effect::ProbeFailsafe { .. } => "failsafe.probe",
            Effect::WriteFailsafe { .. } => "dcs.failsafe.write",
            Effect::ConsultPolicy(_) => "policy.consult",
            Effect::RunCallback(_) => "callback.run",
            Effect::CheckWatchdog => "watchdog.check",
            Effect::ArmWatchdog { .. } => "watchdog.arm",
            Effect::FeedWatchdog => "watchdog.feed",
            Effect::DisarmWatchdog { .. } => "watchdog.disarm",
            Effect::Shutdown { .. } => "agent.shutdown",
        };
        name.into()
    }

    /// Whether it is the agent's routine upkeep (renewing the lease, writing the member
    /// key, probing, feeding the watchdog), which every loop repeats and no one asks "why"
    /// about: the decision log keeps an input only for what else it caused.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            Effect::RenewLease { .. }
                | Effect::ProbePostgres
                | Effect::TouchMember { .. }
                | Effect::WriteStatus { .. }
                | Effect::ProbePeers { .. }
                | Effect::ProbeFailsafe { .. }
                | Effect::WriteFailsafe { .. }
                | Effect::CheckWatchdog
                | Effect::FeedWatchdog
                | Effect::UsePgConfig(_)
        )
    }
}

/// A callback, by its key in `postgresql.callbacks`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// PostgreSQL was started.
    OnStart,
    /// PostgreSQL was stopped.
    OnStop,
    /// PostgreSQL was restarted.
    OnRestart,
    /// PostgreSQL's configuration was reloaded.
    OnReload,
    /// PostgreSQL was promoted, or a former primary now follows.
    OnRoleChange,
}

impl CallbackKind {
    /// Every callback, in the order Patroni documents them.
    pub const ALL: [CallbackKind; 5] = [
        CallbackKind::OnStart,
        CallbackKind::OnStop,
        CallbackKind::OnRestart,
        CallbackKind::OnReload,
        CallbackKind::OnRoleChange,
    ];

    /// The key in `postgresql.callbacks`, also the script's first argument.
    pub fn name(self) -> &'static str {
        match self {
            CallbackKind::OnStart => "on_start",
            CallbackKind::OnStop => "on_stop",
            CallbackKind::OnRestart => "on_restart",
            CallbackKind::OnReload => "on_reload",
            CallbackKind::OnRoleChange => "on_role_change",
        }
    }

    /// The kind named `name` in `postgresql.callbacks`.
    pub fn from_name(name: &str) -> Option<CallbackKind> {
        CallbackKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The role a callback is told (its second argument), Patroni's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackRole {
    /// A writable primary.
    Primary,
    /// A standby.
    Replica,
    /// A former primary, stopped (before it follows the new leader).
    Demoted,
}

impl CallbackRole {
    /// The script's second argument.
    pub fn name(self) -> &'static str {
        match self {
            CallbackRole::Primary => "primary",
            CallbackRole::Replica => "replica",
            CallbackRole::Demoted => "demoted",
        }
    }
}

/// One callback to run: `<command> <kind> <role> <scope>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Callback {
    /// Which one.
    pub kind: CallbackKind,
    /// The role it is told.
    pub role: CallbackRole,
}
