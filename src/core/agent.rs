//! The facts the state machine decides on, and the outbox it writes effects to.
//! `Agent` is statig's context: handlers read and update it; only `Node` feeds it inputs.

use std::collections::VecDeque;
use std::time::Duration;

use super::consult::{self, ConsultPurpose, PolicyAnswer, PolicyCall};
use super::effect::{Effect, PgAction, Upstream};
use super::failsafe::{self, Failsafe, HeartbeatVerdict};
use super::initialize::OrphanWatch;
use super::input::{PgActionOutcome, ReloadedSettings};
use super::parts::{
    Acquisition, Facts, Leadership, PolicyBook, PostgresControl, Published, Report, Requests,
    SyncBook,
};
use super::replies;
use super::safety;
use super::sync::{self, StandbyNames, SyncFacts, SyncPlan, SyncStep};
use super::time::Instant;
use super::types::{Lsn, Revision, Timeline};
use super::view::{FailoverRequest, ReplicationPeer, Schedule, ServerObservation};
use super::watchdog::{Watchdog, WatchdogState};
use super::why::{TransitionRecord, Why};
use crate::config::{DynamicConfig, SynchronousMode};

/// Effects queued for the runtime, the reason of the transition being made, and the
/// transitions made since the runtime last took them.
#[derive(Debug, Default)]
pub struct Outbox {
    effects: VecDeque<Effect>,
    why: Option<Why>,
    transitions: Vec<TransitionRecord>,
}

impl Outbox {
    /// Queue an effect.
    pub fn push(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    /// Say why the transition being returned happens (`Agent::go`).
    pub fn explain(&mut self, why: Why) {
        debug_assert!(self.why.is_none(), "two reasons for one transition");
        self.why = Some(why);
    }

    /// Take the reason for the transition hook.
    pub fn take_why(&mut self) -> Option<Why> {
        self.why.take()
    }

    /// Record a transition made.
    pub fn record(&mut self, transition: TransitionRecord) {
        self.transitions.push(transition);
    }

    /// The transitions recorded since `from` (an earlier [`Outbox::transition_count`]).
    pub fn transitions_since(&mut self, from: usize) -> &mut [TransitionRecord] {
        &mut self.transitions[from..]
    }

    /// How many transitions are recorded.
    pub fn transition_count(&self) -> usize {
        self.transitions.len()
    }

    /// Take the recorded transitions.
    pub fn take_transitions(&mut self) -> Vec<TransitionRecord> {
        std::mem::take(&mut self.transitions)
    }

    /// Next effect for the runtime.
    pub fn pop(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }
}

impl consult::StandbyLiveness for Agent {
    fn is_live(&self, rows: &[ReplicationPeer], name: &str) -> bool {
        self.standby_is_live(rows, name)
    }
}

/// What the node knows about itself from the local configuration.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Member name.
    pub name: String,
    /// `failover_priority` (`nofailover` ⇒ 0).
    pub failover_priority: i64,
    /// The `watchdog:` section: with `mode: required` and no usable device the node never
    /// leads.
    pub watchdog: super::watchdog::WatchdogSettings,
    /// Local `postgresql.use_pg_rewind`, overriding the dynamic value when set.
    pub use_pg_rewind: Option<bool>,
    /// `postgresql.remove_data_directory_on_rewind_failure`.
    pub remove_data_directory_on_rewind_failure: bool,
    /// `postgresql.remove_data_directory_on_diverged_timelines`: without pg_rewind, may data
    /// that diverged from the leader be wiped and cloned again?
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Time budgeted to stop PostgreSQL before the lease can expire.
    pub demotion_margin: Duration,
    /// How long a running primary may not answer before it is stopped and the key released.
    pub unresponsive_primary_timeout: Duration,
    /// Tags as configured (published, and read by health checks).
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Dynamic configuration to use until `/config` exists (`bootstrap.dcs`).
    pub bootstrap_config: DynamicConfig,
    /// Local `policy.params` (`/config`'s override them).
    pub policy_params: std::collections::BTreeMap<String, String>,
    /// `bootstrap.method` when it is not `initdb`: custom bootstrap is not implemented, so
    /// this node never bootstraps a new cluster (an empty one in place of the clone or
    /// restore asked for would be worse than none); it joins one another member created.
    pub custom_bootstrap_method: Option<String>,
}

impl NodeSettings {
    /// The `nostream` tag: this member never streams WAL (it replays from the archive).
    pub fn nostream(&self) -> bool {
        self.tags.get("nostream").and_then(|v| v.as_bool()) == Some(true)
    }

    /// Takes what a reload changes.
    pub fn apply(&mut self, reloaded: ReloadedSettings) {
        self.failover_priority = reloaded.failover_priority;
        self.tags = reloaded.tags;
        self.use_pg_rewind = reloaded.use_pg_rewind;
        self.remove_data_directory_on_rewind_failure =
            reloaded.remove_data_directory_on_rewind_failure;
        self.remove_data_directory_on_diverged_timelines =
            reloaded.remove_data_directory_on_diverged_timelines;
    }

    /// What a reload could change, as it is now.
    pub fn reloadable(&self) -> ReloadedSettings {
        ReloadedSettings {
            failover_priority: self.failover_priority,
            tags: self.tags.clone(),
            use_pg_rewind: self.use_pg_rewind,
            remove_data_directory_on_rewind_failure: self.remove_data_directory_on_rewind_failure,
            remove_data_directory_on_diverged_timelines: self
                .remove_data_directory_on_diverged_timelines,
        }
    }
}

/// The machine's context (statig): the facts it decides on, the outbox it writes to and the
/// bookkeeping it owns, one part per concern (`parts`). `Node` feeds the facts; the
/// candidate's phases live in the candidate state, not here.
#[derive(Debug)]
pub struct Agent {
    /// Local settings.
    pub settings: NodeSettings,
    /// What the node observes (time, lock store, PostgreSQL, peers, configuration).
    pub facts: Facts,
    /// Effects to emit, with the transitions made.
    pub outbox: Outbox,
    /// Our lease and our hold on the leader key.
    pub leadership: Leadership,
    /// What was asked of the local PostgreSQL.
    pub postgres: PostgresControl,
    /// A primary's synchronous standbys and `/sync` writes.
    pub sync: SyncBook,
    /// What a primary last published in `/status` and `/history`.
    pub published: Published,
    /// Policy calls, answers and the gate's refusals.
    pub policy: PolicyBook,
    /// Operators' requests in progress.
    pub requests: Requests,
    /// How long an orphaned `initialize` key has been seen (see `initialize`).
    pub orphaned_initialize: OrphanWatch,
    /// The watchdog's mode, state and last device check.
    pub watchdog: Watchdog,
    /// Failsafe mode: heartbeats accepted, the primary's confirmed rounds.
    pub failsafe: Failsafe,
    /// What the status shows about the machine.
    pub report: Report,
}

/// Whether the watchdog lets this node act as primary now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchdogGate {
    /// Armed with the right timeout, not wanted, or failed in `automatic` mode.
    Ready,
    /// An arm request is out (just queued, or earlier).
    Arming,
    /// `required` and the device cannot be armed: never act as primary.
    Refused(String),
}

impl Agent {
    /// A fresh agent that knows only its settings.
    pub fn new(settings: NodeSettings) -> Agent {
        let config = settings.bootstrap_config.clone();
        let watchdog = Watchdog::new(settings.watchdog.clone());
        Agent {
            settings,
            facts: Facts::new(config),
            outbox: Outbox::default(),
            leadership: Leadership::default(),
            postgres: PostgresControl::default(),
            sync: SyncBook::default(),
            published: Published::default(),
            policy: PolicyBook::default(),
            requests: Requests::default(),
            orphaned_initialize: OrphanWatch::default(),
            watchdog,
            failsafe: Failsafe::new(Instant(0), Duration::ZERO),
            report: Report::default(),
        }
    }

    /// Maintenance mode (`pause` in `/config`): the node observes and reports, keeps the
    /// leader key while its PostgreSQL runs as primary, and takes no automatic action (no
    /// race for a free key, no start, stop, promotion or demotion of PostgreSQL, no watchdog).
    pub fn paused(&self) -> bool {
        self.facts.config.pause
    }

    /// In maintenance mode, the operator's switchover or failover to a named candidate (not
    /// scheduled): the one manual action Patroni lets through while paused.
    fn paused_handover(&self) -> Option<&FailoverRequest> {
        if !self.paused() {
            return None;
        }
        let request = &self.facts.view.as_ref()?.failover.as_ref()?.value;
        (request.candidate.is_some() && request.scheduled_at.is_none()).then_some(request)
    }

    /// Paused, and the operator named us as the candidate: we may race and be promoted.
    pub fn paused_handover_to_me(&self) -> bool {
        let me = self.settings.name.as_str();
        self.paused_handover()
            .is_some_and(|r| r.candidate.as_deref() == Some(me))
    }

    /// Paused, we lead, and the operator asked us to hand over to someone else: our
    /// policy may stop this primary for it.
    pub fn paused_handover_from_me(&self) -> bool {
        let me = self.settings.name.as_str();
        self.holds_leader_key()
            && self.paused_handover().is_some_and(|r| {
                r.candidate.as_deref() != Some(me) && r.leader.as_deref().is_none_or(|l| l == me)
            })
    }

    /// Queue a PostgreSQL action and remember it is in flight.
    ///
    /// Invariants: one action at a time, except that a stop may overtake the action in
    /// flight (a deadline kill, a lost key, a fence: the serial worker runs it next, or
    /// kills what runs); a promotion carries the fencing token of the lease we hold.
    pub fn start_pg(&mut self, action: PgAction) {
        debug_assert!(
            self.postgres.action.is_none() || matches!(action, PgAction::Demote { .. }),
            "{action:?} started while {:?} is in flight",
            self.postgres.action
        );
        if let PgAction::Promote { permit, .. } = &action {
            debug_assert_eq!(
                Some(permit.lease()),
                self.leadership.lease.id,
                "a promotion without the current lease's fencing token"
            );
        }
        if action.writes_configuration() {
            self.postgres.config_outdated = false;
        }
        self.postgres.started_on_running_server =
            self.facts.pg.as_ref().is_some_and(|pg| pg.postmaster_alive);
        self.postgres.action = Some(action.clone());
        self.outbox.push(Effect::Pg(action));
    }

    /// Rewrites the configuration files and reloads PostgreSQL when they predate the
    /// configuration in force and nothing else runs (a running server only: a start
    /// writes them anyway).
    pub fn reload_if_outdated(&mut self) {
        let Some(primary) = self
            .facts
            .pg
            .as_ref()
            .filter(|p| p.is_running())
            .map(|p| p.is_primary())
        else {
            return;
        };
        if self.postgres.config_outdated && self.postgres.action.is_none() {
            self.start_pg(PgAction::Reload { primary });
        }
    }

    /// Whether another member could take over now (Patroni's `is_failover_possible`, read
    /// from the member keys): a running standby that may lead, within
    /// `maximum_lag_on_failover` of our last published position, and recorded in `/sync`
    /// when synchronous mode is on.
    pub fn failover_possible(&self) -> bool {
        let Some(view) = self.facts.view.as_ref() else {
            return false;
        };
        let position = self.published.optime.or(view.optime);
        let synchronous = self.facts.config.synchronous_mode != SynchronousMode::Off;
        let recorded: &[String] = view
            .sync
            .as_ref()
            .map_or(&[], |s| s.value.sync_standby.as_slice());
        view.members.values().any(|m| {
            m.name != self.settings.name
                && m.can_lead()
                && m.state == "running"
                && m.role == "replica"
                && match (position, m.wal_position) {
                    (Some(ours), Some(theirs)) => {
                        ours.bytes_since(theirs) <= self.facts.config.maximum_lag_on_failover
                    }
                    (Some(_), None) => false,
                    (None, _) => true,
                }
                && (!synchronous || recorded.contains(&m.name))
        })
    }

    /// What `POST /restart` is judged on.
    pub fn restart_facts(&self) -> super::restart::RestartFacts<'_> {
        let server = self.facts.pg.as_ref().and_then(|p| p.server.as_ref());
        // A primary restarted here starts again as one, which only the leader may: a
        // paused primary left running beside another leader is not restarted.
        // Nor one whose lease is not current (maintenance mode through an etcd outage): it
        // would be stopped and then refused its start.
        let state = match server {
            Some(s) if !s.in_recovery && !self.holds_leader_key() => {
                "a primary without the leader key"
            }
            Some(s) if !s.in_recovery && !self.lease_allows_primary() => {
                "a primary whose lease is not current"
            }
            _ => self.report.state_name,
        };
        super::restart::RestartFacts {
            state,
            action_in_flight: self.postgres.action.as_ref().map(PgAction::kind),
            server,
        }
    }

    /// Give the leader key up. Until a view shows it gone (or someone else's), the key is not
    /// ours: a late view that still names us must not start a promotion that the release,
    /// landing afterwards, would leave running without the key.
    pub fn release_leader_key(&mut self) {
        if let Some(release) = self.release_of_current_key() {
            self.outbox.push(release);
        }
        self.leadership.acquired = None;
        self.leadership.release_pending = true;
    }

    /// The release of the leader key we know of: the one the view shows with our name, or
    /// our last acquisition on the current lease. `None` when we know of no key of ours:
    /// a release without a `create_revision` could delete a key we take later.
    pub fn release_of_current_key(&self) -> Option<Effect> {
        let lease = self.leadership.lease.id?;
        let acquired = self
            .leadership
            .acquired
            .filter(|a| a.lease == lease)
            .map(|a| a.create_revision);
        let seen = self
            .facts
            .view
            .as_ref()
            .and_then(|v| v.leader.as_ref())
            .filter(|l| l.name == self.settings.name && l.lease == lease.0)
            .map(|l| l.create_revision);
        Some(Effect::ReleaseLeader {
            lease: Some(lease),
            create_revision: Some(seen.or(acquired)?),
        })
    }

    /// Whether `/history` should be written for `timeline` now. The write has no answer and
    /// can be lost (the store unreachable right after a promotion): it is repeated every
    /// two loops until the view shows the timeline. Without it other members cannot tell
    /// they are behind the cluster timeline, nor that their WAL ran past its switch point.
    pub fn history_write_due(&self, timeline: Timeline) -> bool {
        let again_after = Duration::from_secs(u64::from(self.facts.config.loop_wait.max(1)) * 2);
        match self.published.history {
            Some((written, at)) if written == timeline => {
                self.facts.now.saturating_since(at) >= again_after
            }
            _ => true,
        }
    }

    /// A promotion has been handed to PostgreSQL and has not reported back.
    pub fn promote_in_flight(&self) -> bool {
        matches!(self.postgres.action, Some(PgAction::Promote { .. }))
    }

    /// Our `failover_priority`.
    pub fn my_failover_priority(&self) -> i64 {
        if self.watchdog_refusal().is_some() {
            return 0; // Patroni's rule: a required but unusable watchdog never leads
        }
        self.settings.failover_priority
    }

    /// With `watchdog.mode: required`, why the device is unusable now (`None`: usable, or
    /// not required).
    pub fn watchdog_refusal(&self) -> Option<String> {
        self.watchdog.required_but_unusable(&self.facts.config)
    }

    /// Make sure the watchdog is armed before acting as primary (Patroni arms it in
    /// `enforce_primary_role`): queue an arm when it is not, re-arm when `ttl` changed the
    /// timeout. `automatic` leads without a working device (logged, shown in the status).
    pub fn watchdog_gate(&mut self) -> WatchdogGate {
        if !self.watchdog.enabled() {
            return WatchdogGate::Ready;
        }
        let wanted = self.watchdog.timeout_for(&self.facts.config);
        match (&self.watchdog.state, wanted) {
            (WatchdogState::Arming { .. }, _) => WatchdogGate::Arming,
            (WatchdogState::Armed { timeout_secs, .. }, Ok(t)) if *timeout_secs == t => {
                WatchdogGate::Ready
            }
            (WatchdogState::Failed { error }, _) => {
                if self.watchdog.required() {
                    WatchdogGate::Refused(format!("watchdog could not be armed: {error}"))
                } else {
                    WatchdogGate::Ready
                }
            }
            (_, Err(why)) => {
                if self.watchdog.is_armed() {
                    self.disarm_watchdog(format!("timing no longer allows a watchdog: {why}"));
                }
                self.watchdog_failed(why.clone());
                if self.watchdog.required() {
                    WatchdogGate::Refused(why)
                } else {
                    WatchdogGate::Ready
                }
            }
            (_, Ok(timeout_secs))
                if !self.facts.pg.as_ref().is_some_and(|p| p.is_primary())
                    && self.leadership.lease.valid_until().is_none_or(|until| {
                        self.facts.now + Duration::from_secs(timeout_secs.into()) > until
                    }) =>
            {
                // Arming starts the countdown now: if the last acknowledged renewal is too
                // old, the device would fire after the lease could already have expired and
                // another member been promoted. Before a promotion that is refused: the key
                // is given back and the race run again once renewals are fresh (they are
                // sent often enough for this). A primary already writable arms regardless:
                // late protection beats none.
                let why = format!(
                    "the last lease renewal is too old to arm a {timeout_secs} s watchdog safely"
                );
                tracing::warn!(node = %self.settings.name, %why, "not promoting yet");
                WatchdogGate::Refused(why)
            }
            (_, Ok(timeout_secs)) => {
                // Arm even when the last device check failed or has not answered yet: the
                // arm is the real test, and a restarted leader must not demote for a check
                // that is merely late.
                self.watchdog.state = WatchdogState::Arming { timeout_secs };
                self.outbox.push(Effect::ArmWatchdog { timeout_secs });
                WatchdogGate::Arming
            }
        }
    }

    /// Record that the watchdog cannot be used (logged once per failure).
    pub fn watchdog_failed(&mut self, error: String) {
        if self.watchdog.state
            != (WatchdogState::Failed {
                error: error.clone(),
            })
        {
            if self.watchdog.required() {
                tracing::error!(node = %self.settings.name, %error, "watchdog required but unusable: this node will not lead");
            } else {
                tracing::warn!(node = %self.settings.name, %error, "watchdog unusable; leading without it (mode automatic)");
            }
        }
        self.watchdog.state = WatchdogState::Failed { error };
        self.watchdog.failed_at = Some(self.facts.now);
    }

    /// Magic-close the device if it is armed (or being armed); a failed `automatic` device
    /// is tried again next time the node leads.
    pub fn disarm_watchdog(&mut self, reason: impl Into<String>) {
        if self.watchdog.is_armed() {
            let reason = reason.into();
            tracing::info!(node = %self.settings.name, %reason, "disarming the watchdog");
            self.outbox.push(Effect::DisarmWatchdog { reason });
            self.watchdog.state = WatchdogState::Disarmed;
            self.watchdog.last_keepalive = None;
        } else if matches!(self.watchdog.state, WatchdogState::Failed { .. })
            && !self.watchdog.required()
        {
            self.watchdog.state = WatchdogState::Disarmed;
        }
    }

    /// The leader key as the latest view shows it.
    pub fn view_leader(&self) -> Option<&str> {
        self.facts.view.as_ref().and_then(|v| v.leader_name())
    }

    /// Our acquisition, while the latest view predates it (the watch lags the write).
    fn pending_acquisition(&self) -> Option<Acquisition> {
        let lease = self.leadership.lease.id?;
        let view = self.facts.view.as_ref()?;
        self.leadership
            .acquired
            .filter(|a| a.lease == lease && view.revision < a.revision)
    }

    /// The view shows the leader key with our name on our current lease, whatever we intend.
    pub fn view_shows_key_on_our_lease(&self) -> bool {
        let (Some(lease), Some(view)) = (self.leadership.lease.id, self.facts.view.as_ref()) else {
            return false;
        };
        view.leader
            .as_ref()
            .is_some_and(|l| l.name == self.settings.name && l.lease == lease.0)
    }

    /// Whether the leader key is ours, on our current lease.
    pub fn holds_leader_key(&self) -> bool {
        if self.leadership.release_pending {
            return false;
        }
        if self.pending_acquisition().is_some() {
            return true;
        }
        self.view_shows_key_on_our_lease()
    }

    /// `create_revision` of our leader key, for the fencing token.
    pub fn my_leader_revision(&self) -> Option<Revision> {
        if let Some(a) = self.pending_acquisition() {
            return Some(a.create_revision);
        }
        if !self.holds_leader_key() {
            return None;
        }
        self.facts
            .view
            .as_ref()?
            .leader
            .as_ref()
            .map(|l| l.create_revision)
    }

    /// Whether the lease still allows acting as primary now (what a promotion needs). After
    /// a failed failsafe round the lease no longer counts until the store renews it: the
    /// stale view still names us, and we just stood down.
    pub fn lease_allows_primary(&self) -> bool {
        !self.failsafe.stood_down
            && self
                .leadership
                .lease
                .allows_primary_at(self.facts.now, self.settings.demotion_margin)
    }

    /// Whether a running primary may keep running now: the lease, or in failsafe mode the
    /// last round every member confirmed.
    pub fn may_stay_primary(&self) -> bool {
        self.lease_allows_primary() || self.failsafe_allows_primary()
    }

    /// PostgreSQL has been silent (see `PgObservation::is_unresponsive`) for at least
    /// `unresponsive_primary_timeout`.
    pub fn unresponsive_too_long(&self) -> bool {
        self.postgres.unresponsive_since.is_some_and(|since| {
            self.facts.now.saturating_since(since) >= self.settings.unresponsive_primary_timeout
        })
    }

    /// Renewals are failing and the demotion deadline is at most `retry_timeout` away: the
    /// time to stop PostgreSQL cleanly (fast shutdown: standbys receive all its WAL, so it
    /// rejoins without a rewind) before the deadline would have it killed. The validated
    /// timing (`ttl − margin > loop_wait + retry_timeout`) keeps this from ever holding
    /// while renewals succeed. Not in failsafe mode: there the members' confirmations
    /// decide (a confirmed round extends the right to run, a failed one kills), and the
    /// first round is only sent when renewals are found failing, which is about this moment.
    pub fn offline_stop_due(&self) -> bool {
        !self.failsafe_mode() && self.may_stay_primary() && self.lease_lapsing()
    }

    /// Renewals of our lease are failing and its demotion deadline is within
    /// `retry_timeout`: a primary stops (offline), a replica does not race (it would have to
    /// stop right after winning).
    pub fn lease_lapsing(&self) -> bool {
        let retry = Duration::from_secs(self.facts.config.retry_timeout.into());
        self.failsafe.renewals_failing
            && self
                .demotion_deadline()
                .is_some_and(|deadline| self.facts.now + retry >= deadline)
    }

    /// `failsafe_mode` in the effective configuration.
    pub fn failsafe_mode(&self) -> bool {
        self.facts.config.failsafe_mode
    }

    /// `ttl`.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.facts.config.ttl.into())
    }

    /// The most a failsafe promise runs down between two inputs: below the demotion margin,
    /// so a clock jump cannot cut it shorter than the primary's budget (see `failsafe`).
    pub fn failsafe_step(&self) -> Duration {
        (self.settings.demotion_margin / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// The last confirmed failsafe round still covers a primary.
    pub fn failsafe_allows_primary(&self) -> bool {
        self.failsafe_mode()
            && self.failsafe.allows_primary_at(
                self.facts.now,
                self.ttl(),
                self.settings.demotion_margin,
            )
    }

    /// When a primary must have stopped writing: the later of the lease's deadline and the
    /// failsafe one.
    pub fn demotion_deadline(&self) -> Option<Instant> {
        let margin = self.settings.demotion_margin;
        let lease = self
            .leadership
            .lease
            .demotion_deadline(margin)
            .filter(|_| !self.failsafe.stood_down);
        let failsafe = self
            .failsafe
            .deadline(self.ttl(), margin)
            .filter(|_| self.failsafe_mode());
        lease.max(failsafe)
    }

    /// A primary that lost its key during a lock store outage (the lease expired meanwhile)
    /// may take it back while its failsafe right holds and nobody else holds the key: the
    /// members it asked do not race, the others may not.
    pub fn failsafe_may_retake_key(&self) -> bool {
        !self.leadership.release_pending
            && self.failsafe_allows_primary()
            && self
                .view_leader()
                .is_none_or(|leader| leader == self.settings.name)
    }

    /// The answer to a leader's `POST /failsafe`, decided against our own state so that a
    /// heartbeat is never accepted while we race or promote.
    pub fn failsafe_verdict(&self) -> HeartbeatVerdict {
        if !self.failsafe_mode() {
            return HeartbeatVerdict::Disabled;
        }
        if self.facts.pg.as_ref().is_some_and(|p| p.is_primary()) {
            return HeartbeatVerdict::Refused("this member runs as primary".into());
        }
        if matches!(self.report.state_name, "candidate" | "primary") || self.holds_leader_key() {
            return HeartbeatVerdict::Refused(format!(
                "this member is becoming primary (state {})",
                self.report.state_name
            ));
        }
        HeartbeatVerdict::Accepted
    }

    /// The `/failsafe` write the leader owes, if any: the members when failsafe mode is on
    /// and the key differs, a delete when it is off and the key exists. Asked again after
    /// two loops while the view still differs (the write has no answer and can be lost).
    pub fn failsafe_write_due(&self) -> Option<Option<std::collections::BTreeMap<String, String>>> {
        let view = self.facts.view.as_ref()?;
        let wanted = if self.failsafe_mode() {
            let members = failsafe::desired_members(view);
            if members == view.failsafe || !members.contains_key(&self.settings.name) {
                return None; // up to date, or our own member key is not visible yet
            }
            Some(members)
        } else if view.failsafe.is_empty() {
            return None;
        } else {
            None
        };
        let again_after = Duration::from_secs(u64::from(self.facts.config.loop_wait.max(1)) * 2);
        match &self.failsafe.written {
            Some((asked, at))
                if *asked == wanted && self.facts.now.saturating_since(*at) < again_after =>
            {
                None
            }
            _ => Some(wanted),
        }
    }

    /// The leader as an upstream to follow or clone from.
    pub fn leader_upstream(&self) -> Option<Upstream> {
        let view = self.facts.view.as_ref()?;
        let leader = view.leader.as_ref()?;
        let member = view.members.get(&leader.name)?;
        if member.conn_url.is_empty() {
            return None;
        }
        Some(Upstream {
            name: leader.name.clone(),
            conn_url: member.conn_url.clone(),
            stream: !self.settings.nostream(),
        })
    }

    /// Why the local WAL cannot be a prefix of the leader's, judged from `/history`: our
    /// timeline ended at a switch point and we hold WAL past it (a standby that received
    /// writes the new leader never had). Such a standby can never stream from the leader
    /// (PostgreSQL refuses a start point outside the leader's history); it must be rewound.
    pub fn diverged_from_history(&self) -> Option<String> {
        let server = self.facts.pg.as_ref()?.server.as_ref()?;
        let view = self.facts.view.as_ref()?;
        let ended = view
            .history
            .iter()
            .find(|h| h.timeline == server.timeline)?;
        (server.wal_position > ended.switch_lsn).then(|| {
            format!(
                "WAL at {} on timeline {} runs past the switch point {} in the cluster's history",
                server.wal_position, server.timeline, ended.switch_lsn
            )
        })
    }

    /// Effective `use_pg_rewind`.
    pub fn use_pg_rewind(&self) -> bool {
        self.settings
            .use_pg_rewind
            .unwrap_or(self.facts.config.postgresql.use_pg_rewind)
    }

    /// Without pg_rewind, may data that (may have) diverged from the leader be wiped and
    /// cloned again? Patroni's `remove_data_directory_on_diverged_timelines`; without it the
    /// data is kept and the node started as a standby, which cannot stream if it did diverge
    /// (the operator reinitializes it).
    pub fn may_reclone_diverged(&self) -> bool {
        self.settings.remove_data_directory_on_diverged_timelines
    }

    /// Say (in `/patroni`'s last error and the log, once per change) that this standby's data
    /// diverged from the leader and is kept because nothing may repair it.
    pub fn note_divergence_kept(&mut self, detail: &str) {
        let error = format!(
            "{detail}: the data is kept because neither use_pg_rewind nor \
             remove_data_directory_on_diverged_timelines is set; this standby cannot stream \
             until it is reinitialized (patronictl reinit)"
        );
        if self.postgres.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(node = %self.settings.name, %error, "diverged standby kept");
            self.postgres.last_error = Some(error);
        }
    }

    /// After a failed pg_rewind, may the data directory be wiped and cloned again?
    pub fn may_reclone_after_rewind(&self) -> bool {
        self.settings.remove_data_directory_on_rewind_failure
    }

    /// Other members' REST URLs, for the race.
    pub fn peer_api_urls(&self) -> Vec<(String, String)> {
        let Some(view) = self.facts.view.as_ref() else {
            return Vec::new();
        };
        view.members
            .values()
            .filter(|m| m.name != self.settings.name && !m.api_url.is_empty())
            .map(|m| (m.name.clone(), m.api_url.clone()))
            .collect()
    }

    /// What our member key says now.
    pub fn member_record(&self) -> super::status::MemberRecord {
        super::status::MemberRecord {
            pg: self.facts.pg.clone(),
            pg_action: self.postgres.action.as_ref().map(PgAction::kind),
            bootstrapping: self.report.state_name == "bootstrapping",
            tags: self.settings.tags.clone(),
            pause: self.paused(),
            scheduled_restart: self.scheduled_restart(),
        }
    }

    /// The restart scheduled for later, if any.
    pub fn scheduled_restart(&self) -> Option<super::restart::ScheduledRestart> {
        self.requests
            .scheduled_restart
            .as_ref()
            .map(|(s, _)| s.clone())
    }

    /// The facts a policy's view and events are made of.
    pub fn policy_facts(&self) -> consult::PolicyFacts<'_> {
        let held = self.holds_leader_key();
        consult::PolicyFacts {
            me: &self.settings.name,
            now: self.facts.now,
            view: self.facts.view.as_deref(),
            pg: self.facts.pg.as_ref(),
            config: &self.facts.config,
            local_params: &self.settings.policy_params,
            tags: &self.settings.tags,
            failover_priority: self.my_failover_priority(),
            holds_leader_key: held,
            dcs_error: self.facts.dcs_error.as_deref(),
            time_left_ms: held
                .then(|| {
                    self.leadership
                        .lease
                        .demotion_deadline(self.settings.demotion_margin)
                        .map(|deadline| deadline.0.saturating_sub(self.facts.now.0))
                })
                .flatten(),
            last_leader: self.leadership.memory.last_leader.as_ref(),
            leaderless_since: self.leadership.memory.leaderless_since,
            peers: self.facts.peers.as_deref(),
            live_standbys: self,
        }
    }

    /// Queue a policy call; the answer comes back as `Input::PolicyDecided`.
    pub fn consult(&mut self, purpose: ConsultPurpose, event: pgwarden_policy::Event) -> u64 {
        self.policy.seq += 1;
        let seq = self.policy.seq;
        let view = consult::policy_view(&self.policy_facts(), purpose == ConsultPurpose::Election);
        // The end-of-cycle call (after a fresh probe of PostgreSQL) is the one whose answer
        // may decline a switchover; earlier answers may only accept it.
        let end_of_cycle = event == pgwarden_policy::Event::Tick;
        if let Some(revision) = self.switchover_for_me().filter(|_| end_of_cycle) {
            if self.requests.switchover_consulted.map(|(_, r)| r) != Some(revision) {
                self.requests.switchover_consulted = Some((seq, revision));
            }
        }
        self.outbox.push(Effect::ConsultPolicy(Box::new(PolicyCall {
            seq,
            purpose,
            event,
            view,
        })));
        seq
    }

    /// The `failover` key's revision when it asks us, the leader, to hand over: addressed to
    /// us (or to whoever leads), naming someone else or nobody, and due (a scheduled one
    /// from its time on, and not while paused: Patroni waits for the resume).
    pub fn switchover_for_me(&self) -> Option<Revision> {
        let failover = self.facts.view.as_ref()?.failover.as_ref()?;
        let me = self.settings.name.as_str();
        let request = &failover.value;
        let to_me = request.leader.as_deref().is_none_or(|l| l == me);
        let away = request.candidate.as_deref() != Some(me);
        let due = request.scheduled_at.is_none()
            || (request.schedule(self.facts.now, self.loop_wait()) == Schedule::Due
                && !self.paused());
        (self.holds_leader_key() && to_me && away && due).then_some(failover.mod_revision)
    }

    /// A manual failover (no `leader` in the request) naming us: Patroni lets the named
    /// candidate of a leaderless cluster be promoted whatever its lag or synchronous state,
    /// because the operator asked for it. The gate waives those two rules, nothing else.
    pub fn manual_failover_to_me(&self) -> bool {
        self.facts
            .view
            .as_ref()
            .and_then(|v| v.failover.as_ref())
            .is_some_and(|f| {
                f.value.is_manual_failover()
                    && f.value.candidate.as_deref() == Some(self.settings.name.as_str())
            })
    }

    /// The leader's housekeeping of the `failover` key: a request that is done, stale or
    /// unsupported is deleted (once per revision); one addressed to us is left to the policy.
    pub fn tidy_failover_key(&mut self) {
        let Some(failover) = self.facts.view.as_ref().and_then(|v| v.failover.clone()) else {
            self.requests.switchover_consulted = None;
            return;
        };
        if self.requests.failover_cleared == Some(failover.mod_revision) {
            return;
        }
        let me = self.settings.name.clone();
        let request = &failover.value;
        let (expected_revision, reason) = if request.candidate.as_deref() == Some(me.as_str()) {
            (
                None,
                format!("{me} leads: the requested failover is complete"),
            )
        } else if let Some(leader) = request.leader.as_deref().filter(|l| *l != me) {
            (
                Some(failover.mod_revision),
                format!("a switchover from {leader} was requested, but {me} leads"),
            )
        } else if let (Some(at), Schedule::Stale, false) = (
            &request.scheduled_at,
            request.schedule(self.facts.now, self.loop_wait()),
            self.paused(),
        ) {
            let reason = match request.due {
                None => format!(
                    "the scheduled switchover's time {at:?} cannot be read (ISO 8601 with a time zone expected)"
                ),
                Some(_) => format!(
                    "the switchover scheduled at {at} was not carried out in time; dropped as stale"
                ),
            };
            (Some(failover.mod_revision), reason)
        } else {
            return;
        };
        tracing::info!(node = %me, %reason, "clearing the failover key");
        self.requests.failover_cleared = Some(failover.mod_revision);
        self.outbox.push(Effect::ClearFailover {
            expected_revision,
            reason,
        });
    }

    /// `loop_wait` in force.
    fn loop_wait(&self) -> Duration {
        Duration::from_secs(self.facts.config.loop_wait.into())
    }

    /// The policy answered a call that carried a switchover addressed to us and did not stop
    /// the primary: the request is declined and its key deleted, so it does not linger.
    pub fn decline_switchover_if_unanswered(&mut self, answer: &PolicyAnswer) {
        let Some((asked_seq, revision)) = self.requests.switchover_consulted else {
            return;
        };
        if answer.seq < asked_seq
            || answer.decision.fence != pgwarden_policy::Fence::None
            || self.switchover_for_me() != Some(revision)
            || self.requests.failover_cleared == Some(revision)
        {
            return;
        }
        let target = self
            .facts
            .view
            .as_ref()
            .and_then(|v| v.failover.as_ref())
            .and_then(|f| f.value.candidate.as_deref())
            .map(|c| format!(" to {c}"))
            .unwrap_or_default();
        let reason = match answer.warnings.last() {
            Some(why) => format!("the policy declined the switchover{target}: {why}"),
            None => format!("the policy did not stop the primary for the switchover{target}"),
        };
        tracing::warn!(node = %self.settings.name, %reason, "switchover declined");
        self.report.last_race_refusal = Some(reason.clone());
        self.requests.failover_cleared = Some(revision);
        self.outbox.push(Effect::ClearFailover {
            expected_revision: Some(revision),
            reason,
        });
    }

    /// The invariant gate for racing, before the peers were probed; `Err` names the rule.
    pub fn check_race_allowed(&self) -> Result<(), safety::RaceRule> {
        self.check_race_with_votes(None)
    }

    /// The probed peers' positions, as quorum votes are counted from them (members whose
    /// PostgreSQL answered with a position).
    ///
    /// A vote counts only if the voter's position was read after the leader key vanished:
    /// its `/patroni` answers from its last probe, which can be a loop old, and a voter cut
    /// off from the store may still report a position older than commits the old primary
    /// acknowledged through it until its deadline. Any probe asked for after the voter saw
    /// the key free is newer than every such commit (the old primary stopped before its
    /// lease, and so the key, could go).
    pub fn peer_positions(&self) -> Vec<(String, Lsn)> {
        let since = self.leadership.memory.leaderless_since_revision;
        self.facts
            .peers
            .iter()
            .flatten()
            .filter_map(|p| {
                let status = p.status.as_ref()?;
                let fresh = match (since, status.probe_revision) {
                    (Some(since), Some(seen)) => seen >= since,
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                if !fresh {
                    return None;
                }
                let lsn = status.wal_position.filter(|l| l.0 > 0)?;
                Some((p.name.clone(), lsn))
            })
            .collect()
    }

    /// The invariant gate for racing; with `answers` (the election, after the probe) the
    /// quorum vote is counted too.
    pub fn check_race_with_votes(
        &self,
        answers: Option<&[(String, Lsn)]>,
    ) -> Result<(), safety::RaceRule> {
        let pg = self.facts.pg.as_ref();
        let view = self.facts.view.as_ref();
        let watchdog_unusable = self.watchdog_refusal();
        safety::check_race(&safety::RaceFacts {
            me: &self.settings.name,
            watchdog_unusable: watchdog_unusable.as_deref(),
            failover_priority: self.my_failover_priority(),
            leader: view.and_then(|v| v.leader_name()),
            postgres_running: pg.is_some_and(|p| p.is_running()),
            postgres_primary: pg.is_some_and(|p| p.is_primary()),
            my_position: pg.and_then(|p| p.wal_position()),
            leader_position: view.and_then(|v| v.optime),
            maximum_lag: self.facts.config.maximum_lag_on_failover,
            my_timeline: pg.and_then(|p| p.timeline()),
            cluster_timeline: view.and_then(|v| v.timeline()),
            synchronous_mode: self.facts.config.synchronous_mode != SynchronousMode::Off,
            quorum: self.facts.config.synchronous_mode == SynchronousMode::Quorum,
            sync: view.and_then(|v| v.sync.as_ref()).map(|s| &s.value),
            answers,
            manual_failover: self.manual_failover_to_me(),
            failsafe_heartbeat_from: self
                .failsafe
                .fresh_heartbeat(&self.settings.name)
                .map(|h| h.leader.as_str()),
            not_in_failsafe: self.failsafe_mode()
                && view.is_some_and(|v| {
                    !v.failsafe.is_empty() && !v.failsafe.contains_key(&self.settings.name)
                }),
            failsafe_startup: self.failsafe_mode() && self.failsafe.in_startup_grace(),
            lease_lapsing: !self.failsafe_mode() && self.lease_lapsing(),
        })
    }

    /// Book-keeping for every policy answer: fallbacks, preference, the synchronous standby
    /// choice (checked here, once per answer), and the gate's verdict on a routine "race".
    pub fn note_decision(&mut self, answer: &PolicyAnswer, election: Option<u64>) {
        if let Some(error) = &answer.fallback {
            self.policy.fallbacks += 1;
            tracing::warn!(node = %self.settings.name, %error, "policy failed; the embedded default decided");
        }
        self.policy.last_preference = answer.decision.preference.clone();
        self.sync.policy_choice =
            self.checked_sync_choice(answer.decision.sync_standbys.as_deref());
        // A routine "race" is only acted on through an election, but the gate judges it
        // anyway: a policy asking for something unsafe shows up in the refusal counts.
        let routine_race = answer.decision.race == pgwarden_policy::Race::Race
            && election != Some(answer.seq)
            && !self.holds_leader_key()
            && self.facts.view.is_some();
        if routine_race {
            if let Err(rule) = self.check_race_allowed() {
                self.policy
                    .gate
                    .reject(&self.settings.name, "race", rule.name(), rule.to_string());
            }
        }
    }

    /// A standby the primary sees streaming and still replying: the only kind that may be
    /// made synchronous. A cut-off standby stays "streaming" until `wal_sender_timeout`,
    /// stalling every commit meanwhile; its silence shows much sooner. Judged by name over
    /// `rows` (`pg_stat_replication`): every connection under the name must be live, since
    /// PostgreSQL may count a dead one left over from before a reconnect as the synchronous
    /// one.
    pub fn standby_is_live(&self, rows: &[ReplicationPeer], name: &str) -> bool {
        let interval = self
            .facts
            .config
            .postgresql
            .parameters
            .get("wal_receiver_status_interval");
        let timeout = replies::reply_timeout(interval.map(String::as_str));
        self.sync.replies.name_is_live(rows, name, timeout)
    }

    /// The policy's synchronous standbys, minus those that may not be synchronous (each one
    /// refused by the gate), at most `synchronous_node_count`.
    fn checked_sync_choice(&mut self, chosen: Option<&[String]>) -> Option<Vec<String>> {
        let chosen = chosen?;
        if !self.holds_leader_key() {
            return None;
        }
        let server = self.facts.pg.as_ref()?.server.as_ref()?;
        let view = self.facts.view.as_ref()?;
        // Live streaming members (not us) that may be synchronous: what any choice is drawn
        // from.
        let mut eligible: Vec<&str> = server
            .replication
            .iter()
            .map(|r| r.application_name.as_str())
            .filter(|name| {
                *name != self.settings.name && self.standby_is_live(&server.replication, name)
            })
            .filter(|name| view.members.get(*name).is_some_and(|m| m.can_be_sync()))
            .collect();
        eligible.sort_unstable();
        eligible.dedup();
        let mut accepted: Vec<String> = Vec::new();
        for name in chosen {
            if !eligible.contains(&name.as_str()) {
                self.policy.gate.reject(
                    &self.settings.name,
                    "sync-standbys",
                    "sync-standby-not-eligible",
                    format!("{name} is not a streaming, replying member that may be synchronous"),
                );
            } else if !accepted.contains(name) {
                accepted.push(name.clone());
            }
        }
        let wanted = self.facts.config.synchronous_node_count.max(1) as usize;
        // FIRST: exactly the synchronous standbys. Quorum: the set `ANY n` draws from,
        // which may be larger than n.
        if self.facts.config.synchronous_mode != SynchronousMode::Quorum {
            accepted.truncate(wanted);
        }
        // Fewer synchronous standbys than could be had is less durability than the host
        // would keep: a policy may pick which ones, not how few.
        if accepted.len() < wanted.min(eligible.len()) {
            self.policy.gate.reject(
                &self.settings.name,
                "sync-standbys",
                "sync-set-too-small",
                format!(
                    "{} synchronous standbys chosen where {} are eligible (synchronous_node_count {wanted}); the host keeps its own choice",
                    accepted.len(),
                    eligible.len()
                ),
            );
            return None;
        }
        Some(accepted)
    }

    /// The invariant gate for promotion; `Err` names the rule.
    pub fn check_promotion_allowed(
        &self,
        quorum_votes_won: bool,
    ) -> Result<safety::PromotionPermit, safety::Rule> {
        let key = if self.holds_leader_key() {
            self.leadership.lease.id.zip(self.my_leader_revision())
        } else {
            None
        };
        safety::check_promotion(&safety::PromotionFacts {
            me: &self.settings.name,
            key,
            lease_allows_primary: self.lease_allows_primary(),
            my_timeline: self.facts.pg.as_ref().and_then(|p| p.timeline()),
            cluster_timeline: self.facts.view.as_ref().and_then(|v| v.timeline()),
            synchronous_mode: self.facts.config.synchronous_mode != SynchronousMode::Off,
            quorum: self.facts.config.synchronous_mode == SynchronousMode::Quorum,
            quorum_votes_won,
            sync: self
                .facts
                .view
                .as_ref()
                .and_then(|v| v.sync.as_ref())
                .map(|s| &s.value),
            manual_failover: self.manual_failover_to_me(),
        })
    }

    /// The `/sync` write a promotion needs first, if any: the value and the revision to
    /// compare against.
    pub fn presync_claim(
        &self,
        already_claimed: bool,
    ) -> Option<(super::view::SyncState, Option<Revision>)> {
        if self.facts.config.synchronous_mode == SynchronousMode::Off || already_claimed {
            return None;
        }
        let recorded = self.facts.view.as_ref()?.sync.as_ref();
        if recorded.is_some_and(|r| {
            r.value.leader.as_deref() == Some(self.settings.name.as_str())
                && r.value.sync_standby.is_empty()
        }) {
            return None;
        }
        Some((
            super::view::SyncState {
                leader: Some(self.settings.name.clone()),
                sync_standby: Vec::new(),
                quorum: 0,
            },
            recorded.map(|r| r.mod_revision),
        ))
    }

    /// A numbered `/sync` compare-and-swap, marked in flight.
    pub fn write_sync(
        &mut self,
        state: super::view::SyncState,
        expected_revision: Option<Revision>,
    ) -> Effect {
        self.sync.writes_issued += 1;
        let seq = self.sync.writes_issued;
        self.sync.write_in_flight = Some(seq);
        Effect::WriteSync {
            seq,
            state,
            expected_revision,
        }
    }

    /// The synchronous mode as the step functions see it (`None`: off).
    pub fn sync_plan(&self) -> Option<SyncPlan> {
        (self.facts.config.synchronous_mode != SynchronousMode::Off).then(|| SyncPlan {
            quorum: self.facts.config.synchronous_mode == SynchronousMode::Quorum,
            strict: self.facts.config.synchronous_mode_strict,
            node_count: self.facts.config.synchronous_node_count.max(1),
        })
    }

    /// The promotion action: in strict mode it carries the `synchronous_standby_names` to
    /// put in effect first (the other members that may be synchronous), so the new primary
    /// never acknowledges a commit without a synchronous copy.
    pub fn promote_action(&self, permit: safety::PromotionPermit) -> PgAction {
        PgAction::Promote {
            permit,
            sync_standbys: self.promotion_sync_standbys(),
        }
    }

    /// Strict synchronous mode: `synchronous_standby_names` a promotion puts in effect first.
    fn promotion_sync_standbys(&self) -> Option<StandbyNames> {
        let others: Vec<String> = self
            .facts
            .view
            .as_ref()
            .map(|v| {
                v.members
                    .values()
                    .filter(|m| m.name != self.settings.name && m.can_be_sync())
                    .map(|m| m.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.sync_plan().and_then(|p| p.before_promotion(&others))
    }

    /// Starting PostgreSQL as the primary again (it was down while we hold the key): with the
    /// standbys `/sync` records for us all required (at least as strict as whatever set was
    /// in effect; the next cycle narrows it safely), or in strict mode with nobody recorded,
    /// what a promotion would start with. Never fewer than `/sync` promises.
    pub fn start_primary_action(&self) -> PgAction {
        let recorded: Vec<String> = self
            .facts
            .view
            .as_ref()
            .and_then(|v| v.sync.as_ref())
            .filter(|s| s.value.leader.as_deref() == Some(self.settings.name.as_str()))
            .map(|s| s.value.sync_standby.clone())
            .unwrap_or_default();
        let sync_standbys = if recorded.is_empty() {
            self.promotion_sync_standbys()
        } else {
            Some(StandbyNames::all_of(recorded))
        };
        PgAction::StartPrimary { sync_standbys }
    }

    /// Book-keeping common to every finished PostgreSQL action.
    pub fn note_action_result(&mut self, action: &PgAction, outcome: &PgActionOutcome) {
        match outcome {
            PgActionOutcome::Done { .. } => {
                self.postgres.last_error = None;
                match action {
                    PgAction::Restart { start, .. } => self.note_action_result(start, outcome),
                    PgAction::Follow { upstream } => {
                        self.postgres.following = Some(upstream.clone())
                    }
                    PgAction::StartReplica { upstream } => {
                        self.postgres.following = upstream.clone();
                        self.postgres.rejoin_after_handover = false;
                    }
                    PgAction::Clone { from }
                    | PgAction::Reinitialize { from }
                    | PgAction::Rewind { from } => {
                        self.postgres.following = Some(from.clone());
                        self.postgres.rejoin_after_handover = false;
                        self.postgres.maybe_diverged = false;
                    }
                    PgAction::Promote { .. }
                    | PgAction::StartPrimary { .. }
                    | PgAction::Bootstrap => {
                        self.postgres.following = None;
                        self.postgres.maybe_diverged = false;
                        self.sync.barrier = None;
                    }
                    PgAction::SetSyncStandbys { .. } => self.sync.barrier = None,
                    _ => {}
                }
            }
            PgActionOutcome::Failed { error } | PgActionOutcome::Vetoed { error } => {
                tracing::warn!(node = %self.settings.name, action = action.kind(), %error, "PostgreSQL action failed");
                self.postgres.last_error = Some(format!("{}: {error}", action.kind()));
            }
        }
    }

    /// The next PostgreSQL change a running primary needs: slots, then the sync set.
    pub fn next_pg_step_for_primary(&self, server: &ServerObservation) -> Option<PgAction> {
        let view = self.facts.view.as_ref()?;
        if self.facts.config.postgresql.use_slots {
            let missing: Vec<String> = view
                .members
                .iter()
                .filter(|(name, member)| **name != self.settings.name && !member.nostream())
                .map(|(name, _)| slot_name_for_member(name))
                .filter(|slot| !server.slots.contains(slot))
                .collect();
            if !missing.is_empty() {
                return Some(PgAction::EnsureSlots { names: missing });
            }
        }
        let configured = StandbyNames::parse(&server.synchronous_standby_names);
        if self.facts.config.synchronous_mode == SynchronousMode::Off {
            return (!configured.is_empty()).then(|| PgAction::SetSyncStandbys {
                names: StandbyNames::none(),
            });
        }
        match self.sync_step(server)? {
            SyncStep::Configure(names) => Some(PgAction::SetSyncStandbys { names }),
            SyncStep::Record { .. } => None,
        }
    }

    /// The next `/sync` write a running primary needs.
    pub fn next_sync_record(&mut self, server: &ServerObservation) -> Option<Effect> {
        if self.facts.config.synchronous_mode == SynchronousMode::Off
            || self.sync.write_in_flight.is_some()
        {
            return None;
        }
        match self.sync_step(server)? {
            SyncStep::Record {
                state,
                expected_revision,
            } => Some(self.write_sync(state, expected_revision)),
            SyncStep::Configure(_) => None,
        }
    }

    /// What `synchronous_standby_names` should say now.
    fn sync_target(&self, server: &ServerObservation) -> Option<StandbyNames> {
        let plan = self.sync_plan()?;
        let view = self.facts.view.as_ref()?;
        let chosen = match &self.sync.policy_choice {
            Some(chosen) => chosen.clone(),
            None => pgwarden_policy_default::sync_standbys(&consult::policy_view(
                &self.policy_facts(),
                false,
            ))
            .unwrap_or_default(),
        };
        // Only standbys PostgreSQL sees streaming and replying may be chosen (the gate
        // checked a policy's choice against the same rows, but a standby may have fallen
        // silent since).
        let chosen: Vec<String> = chosen
            .into_iter()
            .filter(|n| {
                server.replication.iter().any(|r| &r.application_name == n)
                    && self.standby_is_live(&server.replication, n)
            })
            .collect();
        let recorded: Vec<String> = view
            .sync
            .as_ref()
            .filter(|s| s.value.leader.as_deref() == Some(self.settings.name.as_str()))
            .map(|s| s.value.sync_standby.clone())
            .unwrap_or_default();
        let configured = StandbyNames::parse(&server.synchronous_standby_names);
        if plan.strict && chosen.is_empty() && recorded.is_empty() && !configured.is_empty() {
            // Strict and nobody to choose yet (a new primary whose standbys are still
            // reconnecting): keep what the promotion set, which any of them satisfies on
            // reconnecting, rather than switching to the placeholder.
            return Some(configured);
        }
        Some(plan.target(&chosen, &recorded))
    }

    fn sync_step(&self, server: &ServerObservation) -> Option<SyncStep> {
        let view = self.facts.view.as_ref()?;
        let target = self.sync_target(server)?;
        let configured = StandbyNames::parse(&server.synchronous_standby_names);
        sync::next_step(&SyncFacts {
            me: &self.settings.name,
            recorded: view.sync.as_ref(),
            configured: &configured,
            replication: &server.replication,
            target: &target,
            barrier: self.sync.barrier,
        })
    }

    /// The synchronous set is still being built: a step is pending, or fewer standbys are
    /// recorded than running members could provide. The primary then looks again within a
    /// second rather than a `loop_wait` later: this is the window in which commits may be
    /// acknowledged without a synchronous copy (non-strict mode) or wait (strict mode).
    pub fn sync_converging(&self, server: &ServerObservation) -> bool {
        let (Some(plan), Some(view)) = (self.sync_plan(), self.facts.view.as_ref()) else {
            return false;
        };
        if self.sync_step(server).is_some() {
            return true;
        }
        let running = view
            .members
            .values()
            .filter(|m| m.name != self.settings.name && m.can_be_sync() && m.state == "running")
            .count();
        let wanted = if plan.quorum {
            running
        } else {
            running.min(plan.node_count as usize)
        };
        let recorded = view
            .sync
            .as_ref()
            .filter(|s| s.value.leader.as_deref() == Some(self.settings.name.as_str()))
            .map_or(0, |s| s.value.sync_standby.len());
        recorded < wanted
    }
}

/// Patroni's replication slot name for a member: lower case, `-` and `.` as `_`, other
/// characters as `uXXXX`, at most 63 bytes.
pub fn slot_name_for_member(name: &str) -> String {
    let mut slot = String::new();
    for c in name.chars().flat_map(|c| c.to_lowercase()) {
        match c {
            'a'..='z' | '0'..='9' | '_' => slot.push(c),
            '-' | '.' => slot.push('_'),
            other => slot.push_str(&format!("u{:04x}", other as u32)),
        }
    }
    slot.truncate(63);
    slot
}
