//! The agent's owned parts. `Agent` is these plus the settings, the outbox, the watchdog and
//! the failsafe; each part is one kind of bookkeeping with the rule for who changes it. The
//! candidate's phases are not here: they live in the `candidate` state itself
//! (`candidacy::Race`), so leaving the state drops them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::consult::LeaderMemory;
use super::effect::{PgAction, Upstream};
use super::gate::GateLog;
use super::lease::Lease;
use super::replies::StandbyReplies;
use super::time::Instant;
use super::types::{LeaseId, Lsn, Revision, Timeline};
use super::view::{ClusterView, PeerReport, PgObservation};
use crate::config::DynamicConfig;

/// What the node observes: written only by `Node` as inputs arrive, read by the machine.
#[derive(Debug)]
pub struct Facts {
    /// Time of the input being handled.
    pub now: Instant,
    /// Latest lock store content.
    /// Shared: a status snapshot takes it without copying the members.
    pub view: Option<Arc<ClusterView>>,
    /// Effective dynamic configuration (last good `/config`, else bootstrap).
    pub config: DynamicConfig,
    /// Latest PostgreSQL probe.
    pub pg: Option<PgObservation>,
    /// Peers' answers from the last probe.
    pub peers: Option<Vec<PeerReport>>,
    /// See `NodeStatus::probe_revision`.
    pub probe_revision: Option<Revision>,
    /// Last lock store error, until it answers again.
    pub dcs_error: Option<String>,
}

impl Facts {
    /// Facts before anything is observed, with the bootstrap configuration.
    pub fn new(config: DynamicConfig) -> Facts {
        Facts {
            now: Instant(0),
            view: None,
            config,
            pg: None,
            peers: None,
            probe_revision: None,
            dcs_error: None,
        }
    }
}

/// A leader key acquisition the view may not show yet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Acquisition {
    /// The lease the key was put on.
    pub lease: LeaseId,
    /// etcd revision of the transaction.
    pub revision: Revision,
    /// The key's create_revision.
    pub create_revision: Revision,
}

/// Our lease and our hold on the leader key.
#[derive(Debug, Default)]
pub struct Leadership {
    /// Our lease.
    pub lease: Lease,
    /// Our last successful leader key acquisition.
    pub acquired: Option<Acquisition>,
    /// We asked to release the leader key: do not count it as ours while the release is in
    /// flight.
    pub release_pending: bool,
    /// The leader as last seen, and since when (and which view revision) the key has been
    /// free (quorum votes must be newer than that revision).
    pub memory: LeaderMemory,
    /// The `pre_promote` script refused our promotion: no race before this (Patroni's
    /// back-off of a `ttl`, so another member gets the key).
    pub race_backoff_until: Option<Instant>,
}

/// What the agent has asked of the local PostgreSQL, and what it learnt doing so.
#[derive(Debug, Default)]
pub struct PostgresControl {
    /// The PostgreSQL action in flight.
    pub action: Option<PgAction>,
    /// The leader PostgreSQL was last configured to follow, and whether it streams from it.
    pub following: Option<Upstream>,
    /// PostgreSQL was a primary that may have diverged from the current leader.
    pub maybe_diverged: bool,
    /// This primary was stopped to hand over to an operator's candidate in maintenance
    /// mode: it is started again as a standby (part of the operator's action, as in
    /// Patroni), although the agent starts nothing else while paused.
    pub rejoin_after_handover: bool,
    /// Since when our running primary has not answered the probe (postmaster alive).
    pub unresponsive_since: Option<Instant>,
    /// Last PostgreSQL action error.
    pub last_error: Option<String>,
    /// The configuration files predate the configuration in force (`/config` or the local
    /// file changed): a reload is due once no other action runs. Any action that writes
    /// the files does it.
    pub config_outdated: bool,
    /// Since when the leader's PostgreSQL has been down or starting (`primary_start_timeout`
    /// counts from it); cleared at every transition.
    pub primary_down_since: Option<Instant>,
    /// What the callback rules remember (the role the scripts were last told).
    pub callbacks: super::callbacks::CallbackBook,
    /// A postmaster was alive when the action in flight was started (a stop of a running
    /// server calls `on_stop`; the probes during a stop may already see it gone).
    pub started_on_running_server: bool,
}

/// A primary's bookkeeping of its synchronous standbys and `/sync`.
#[derive(Debug, Default)]
pub struct SyncBook {
    /// Sequence number of the last `/sync` write issued (answers carry it back).
    pub writes_issued: u64,
    /// The `/sync` write in flight, by sequence number.
    pub write_in_flight: Option<u64>,
    /// WAL position a newly configured synchronous standby must have flushed before it is
    /// recorded in `/sync` (None: not measured since the last change).
    pub barrier: Option<Lsn>,
    /// The synchronous standbys the policy chose, after the gate's check (`None`: the
    /// default rule).
    pub policy_choice: Option<Vec<String>>,
    /// When each standby last replied, as the primary's probes saw it.
    pub replies: StandbyReplies,
}

/// What a primary last published in the lock store, so it is written once per change.
#[derive(Debug, Default)]
pub struct Published {
    /// Last optime written to `/status`.
    pub optime: Option<Lsn>,
    /// The last `/history` write asked for: the timeline and when.
    pub history: Option<(Timeline, Instant)>,
}

/// The policy's side: calls made, what it answered, what the gate refused.
#[derive(Debug, Default)]
pub struct PolicyBook {
    /// Sequence number of the last policy call.
    pub seq: u64,
    /// The policy's last promotion preference order.
    pub last_preference: Vec<String>,
    /// Answers decided by the embedded default because the policy failed.
    pub fallbacks: u64,
    /// Decisions the invariant gate refused.
    pub gate: GateLog,
    /// Run a decision cycle no later than this (a policy asked to be consulted again).
    pub wake_at: Option<Instant>,
}

/// Operators' requests in progress: switchover, failover, reinitialize, restart.
#[derive(Debug, Default)]
pub struct Requests {
    /// The routine call that first carried a switchover addressed to us: (seq, key revision).
    pub switchover_consulted: Option<(u64, Revision)>,
    /// The `failover` key revision we already asked to clear.
    pub failover_cleared: Option<Revision>,
    /// Recent answers to `POST /reinitialize`, by request id (oldest first, bounded).
    pub reinitialize_verdicts: VecDeque<(u64, Result<(), String>)>,
    /// Recent answers to `POST /restart`, by request id (oldest first, bounded).
    pub restart_verdicts: VecDeque<(u64, Result<(), String>)>,
    /// How the accepted restarts ended, by request id (oldest first, bounded).
    pub restart_results: VecDeque<(u64, Result<(), String>)>,
    /// The restart scheduled for later, and whether its time already woke a cycle.
    pub scheduled_restart: Option<(super::restart::ScheduledRestart, bool)>,
}

/// What the status shows about the machine: kept by the transition hook and the race.
#[derive(Debug)]
pub struct Report {
    /// Last transition with its reason.
    pub last_transition: String,
    /// Current state name (kept by the transition hook).
    pub state_name: &'static str,
    /// Why the last race was not entered.
    pub last_race_refusal: Option<String>,
}

impl Default for Report {
    fn default() -> Report {
        Report {
            last_transition: String::new(),
            state_name: "starting",
            last_race_refusal: None,
        }
    }
}
