//! Inputs: facts the runtime reports to the core. Past-tense names; each carries what the
//! core needs to decide, nothing it must look up.

use super::effect::PgAction;
use super::time::Instant;
use super::types::{LeaseId, Revision};
use super::view::{ClusterView, PeerReport, PgObservation};

/// What a finished PostgreSQL action produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PgActionOutcome {
    /// It worked; bootstrap reports the new system identifier.
    Done {
        /// System identifier (bootstrap and clone).
        sysid: Option<String>,
    },
    /// It failed, with the error text for logs and status.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// The operator's `pre_promote` script refused the promotion (a non-zero exit, or it
    /// did not finish in time); nothing was changed.
    Vetoed {
        /// What the script did.
        error: String,
    },
}

/// The local settings a reload of the file (`POST /reload`, SIGHUP) changes in a running
/// core: tags (so `nofailover`, `failover_priority`, `nosync`, `noloadbalance` take effect
/// at once, as in Patroni) and the rewind choices.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReloadedSettings {
    /// `failover_priority` (`nofailover` ⇒ 0).
    pub failover_priority: i64,
    /// Tags as configured.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Local `postgresql.use_pg_rewind`.
    pub use_pg_rewind: Option<bool>,
    /// `postgresql.remove_data_directory_on_rewind_failure`.
    pub remove_data_directory_on_rewind_failure: bool,
    /// `postgresql.remove_data_directory_on_diverged_timelines`.
    #[serde(default)]
    pub remove_data_directory_on_diverged_timelines: bool,
}

/// A fact for the core.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Input {
    /// A timeout the core asked for has passed.
    Tick,
    /// The lock store's content changed (or was read for the first time).
    ClusterChanged(std::sync::Arc<ClusterView>),
    /// Reading or watching the lock store failed.
    DcsUnreachable {
        /// Error text.
        error: String,
    },
    /// Result of `ProbePostgres`.
    PostgresProbed(PgObservation),
    /// A lease was granted; `sent_at` is when the grant request left.
    LeaseGranted {
        /// The lease.
        lease: LeaseId,
        /// TTL granted (etcd may round up).
        ttl_secs: u32,
        /// Send time of the grant.
        sent_at: Instant,
    },
    /// A keep-alive was acknowledged.
    LeaseRenewed {
        /// The lease.
        lease: LeaseId,
        /// Send time of the keep-alive.
        sent_at: Instant,
    },
    /// A keep-alive failed; `expired` when etcd says the lease no longer exists.
    LeaseRenewFailed {
        /// The lease.
        lease: LeaseId,
        /// The lease is gone (not a transient error).
        expired: bool,
        /// Error text.
        error: String,
    },
    /// Granting a lease failed.
    LeaseGrantFailed {
        /// Error text.
        error: String,
    },
    /// Result of `RaceInitialize`.
    InitializeRaced {
        /// We created `initialize`.
        won: bool,
    },
    /// Result of `AcquireLeader`.
    LeaderAcquired {
        /// We hold the key now.
        won: bool,
        /// etcd revision of the transaction: views older than it predate the acquisition.
        revision: Revision,
        /// The key's create_revision (the fencing token, with the lease).
        create_revision: Revision,
    },
    /// Result of `WriteSync`.
    SyncWritten {
        /// The `seq` of the `Effect::WriteSync` answered.
        seq: u64,
        /// The compare-and-swap succeeded.
        ok: bool,
    },
    /// Result of `ProbePeers`.
    PeersProbed(Vec<PeerReport>),
    /// Result of `ConsultPolicy`.
    PolicyDecided(super::protocol::PolicyAnswer),
    /// Result of `CheckWatchdog`: `Err` says why the device is unusable.
    WatchdogChecked(Result<(), String>),
    /// Result of `ArmWatchdog`.
    WatchdogArmed(Result<super::watchdog::ArmReport, String>),
    /// A `FeedWatchdog` keepalive failed.
    WatchdogFeedFailed {
        /// Error text.
        error: String,
    },
    /// A leader's `POST /failsafe` reached our REST API; the core answers it (the verdict
    /// for `request` appears in the status) and, when it accepts, does not race for `ttl`.
    FailsafeHeartbeat {
        /// The sending leader's member name.
        leader: String,
        /// Request id chosen by the REST handler, to find its verdict.
        request: u64,
    },
    /// `POST /reinitialize` reached our REST API: wipe the data directory and clone it
    /// again from the leader. The core answers (the verdict for `request` appears in the
    /// status), so the request is judged atomically with the node's state.
    ReinitializeRequested {
        /// Request id chosen by the REST handler, to find its verdict.
        request: u64,
    },
    /// `POST /restart` reached our REST API: stop PostgreSQL and start it again in its
    /// role, if `conditions` hold. The verdict for `request` appears in the status, and
    /// once the restart ran, its result.
    RestartRequested {
        /// Request id chosen by the REST handler, to find its verdict.
        request: u64,
        /// The request's conditions (role, version, pending restart).
        conditions: super::restart::RestartConditions,
    },
    /// `POST /restart` with a `schedule`: restart at `at`, if the conditions hold then.
    RestartScheduled {
        /// Request id chosen by the REST handler, to find its verdict.
        request: u64,
        /// When (the runtime converted the operator's wall-clock time).
        at: super::time::Instant,
        /// The time as the operator gave it.
        schedule: String,
        /// The request's conditions.
        conditions: super::restart::RestartConditions,
        /// `postgres_version` as given.
        postgres_version: Option<String>,
    },
    /// `DELETE /restart`: forget the scheduled restart.
    ScheduledRestartDeleted {
        /// Request id chosen by the REST handler, to find its verdict.
        request: u64,
    },
    /// The local configuration file was re-read (`POST /reload`, SIGHUP) and the PostgreSQL
    /// worker given its settings: the core takes `settings`, and the configuration files
    /// are rewritten and reloaded.
    LocalConfigReloaded {
        /// What the file now says of the settings a reload changes.
        settings: ReloadedSettings,
    },
    /// Result of `ProbeFailsafe`: `refusals` is empty when every member accepted.
    FailsafeConfirmed {
        /// When the round started (before the first request left).
        sent_at: Instant,
        /// One line per member that refused or did not answer.
        refusals: Vec<String>,
    },
    /// A `Pg` action finished.
    PgActionFinished {
        /// The action.
        action: PgAction,
        /// Its outcome.
        outcome: PgActionOutcome,
    },
}

impl Input {
    /// Short stable name for logs, traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Tick => "tick",
            Input::ClusterChanged(_) => "cluster_changed",
            Input::DcsUnreachable { .. } => "dcs_unreachable",
            Input::PostgresProbed(_) => "postgres_probed",
            Input::LeaseGranted { .. } => "lease_granted",
            Input::LeaseRenewed { .. } => "lease_renewed",
            Input::LeaseRenewFailed { .. } => "lease_renew_failed",
            Input::LeaseGrantFailed { .. } => "lease_grant_failed",
            Input::InitializeRaced { .. } => "initialize_raced",
            Input::LeaderAcquired { .. } => "leader_acquired",
            Input::SyncWritten { .. } => "sync_written",
            Input::PeersProbed(_) => "peers_probed",
            Input::PolicyDecided(_) => "policy_decided",
            Input::WatchdogChecked(_) => "watchdog_checked",
            Input::WatchdogArmed(_) => "watchdog_armed",
            Input::WatchdogFeedFailed { .. } => "watchdog_feed_failed",
            Input::FailsafeHeartbeat { .. } => "failsafe_heartbeat",
            Input::ReinitializeRequested { .. } => "reinitialize_requested",
            Input::RestartRequested { .. } => "restart_requested",
            Input::RestartScheduled { .. } => "restart_scheduled",
            Input::ScheduledRestartDeleted { .. } => "scheduled_restart_deleted",
            Input::LocalConfigReloaded { .. } => "local_config_reloaded",
            Input::FailsafeConfirmed { .. } => "failsafe_confirmed",
            Input::PgActionFinished { .. } => "pg_action_finished",
        }
    }

    /// How the effect it reports on went, in a word (`won`, `lost`, `failed`, ...): the
    /// outcome of that effect's span and of its step in the decision log.
    pub fn outcome(&self) -> &'static str {
        match self {
            Input::LeaseRenewFailed { expired: true, .. } => "expired",
            Input::DcsUnreachable { .. }
            | Input::LeaseRenewFailed { .. }
            | Input::LeaseGrantFailed { .. }
            | Input::WatchdogChecked(Err(_))
            | Input::WatchdogArmed(Err(_))
            | Input::WatchdogFeedFailed { .. } => "failed",
            Input::InitializeRaced { won } | Input::LeaderAcquired { won, .. } => {
                if *won {
                    "won"
                } else {
                    "lost"
                }
            }
            Input::SyncWritten { ok: false, .. } => "conflict",
            Input::PolicyDecided(answer) if answer.fallback.is_some() => "fallback",
            Input::PolicyDecided(_) => "decided",
            Input::FailsafeConfirmed { refusals, .. } if !refusals.is_empty() => "refused",
            Input::PgActionFinished { outcome, .. } => match outcome {
                PgActionOutcome::Done { .. } => "done",
                PgActionOutcome::Failed { .. } => "failed",
                PgActionOutcome::Vetoed { .. } => "vetoed",
            },
            _ => "ok",
        }
    }
}
