//! The pure core: a sans-IO node. Inputs in (`handle_input(now, input)`), effects out
//! (`poll_effect()`), and the next instant it needs to be woken (`poll_timeout()`).
//!
//! Must not touch: clocks, files, sockets, processes, async runtimes, or any IO crate.
//! `tests/architecture.rs` enforces that by scanning this folder's imports.

pub(crate) mod agent;
pub mod callbacks;
pub(crate) mod candidacy;
pub(crate) mod consult;
pub(crate) mod effect;
pub mod failsafe;
pub mod gate;
pub(crate) mod health;
pub mod initialize;
pub(crate) mod input;
pub(crate) mod lease;
pub(crate) mod machine;
pub(crate) mod manual;
pub(crate) mod parts;
pub(crate) mod protocol;
pub mod replay;
pub(crate) mod replies;
pub mod restart;
pub(crate) mod safety;
pub(crate) mod status;
pub mod sync;
pub(crate) mod time;
pub mod timers;
pub(crate) mod types;
pub mod view;
pub mod watchdog;
pub mod why;

use std::time::Duration;

use statig::prelude::*;

pub use agent::{slot_name_for_member, NodeSettings};
pub use consult::{decide_with_default, ConsultPurpose, PolicyAnswer, PolicyCall};
pub use effect::{Callback, CallbackKind, CallbackRole, DemoteMode, Effect, PgAction, Upstream};
pub use input::{Input, PgActionOutcome, ReloadedSettings};
pub use status::NodeStatus;
pub use time::Instant;
pub use types::{LeaseId, Lsn, Revision, Timeline};
pub use watchdog::{ArmReport, WatchdogSettings, WatchdogState, WatchdogStatus};

use agent::Agent;
use machine::{state_name, Event, Machine, State};

/// Answers to `POST /reinitialize` and `POST /restart` kept for the REST handlers to find
/// theirs.
const REINITIALIZE_VERDICTS_KEPT: usize = 16;

/// One pgwarden node's decision logic.
pub struct Node {
    machine: InitializedStateMachine<Machine>,
    agent: Agent,
    next_cycle_at: Instant,
    /// After a failed start or build, no cycle (which would retry it) before this.
    retry_not_before: Instant,
    /// `action_seq` when the probe in flight was requested.
    probe_in_flight: Option<u64>,
    /// The view revision when the probe in flight was requested.
    probe_asked_at_revision: Option<Revision>,
    /// Counts finished PostgreSQL actions, to discard probes that predate one.
    action_seq: u64,
    grant_in_flight: bool,
    renewal_in_flight: bool,
    /// When the lease is next granted or renewed.
    next_lease_at: Instant,
    /// A replacement lease waiting for the leader key to move onto it.
    rotation: Option<Rotation>,
    dcs_last_seen: Option<Instant>,
    /// Facts as of the last policy events, to derive the next ones.
    baseline: consult::EventBaseline,
    /// Revision of a `/config` we refused, so the refusal is logged once.
    rejected_config_revision: Option<Revision>,
    /// Last undecodable `/config` error, logged once.
    rejected_config_error: Option<String>,
}

impl Node {
    /// A node that has seen nothing yet; its first cycle starts at `now`.
    pub fn new(settings: NodeSettings, now: Instant) -> Node {
        let mut agent = Agent::new(settings);
        agent.facts.now = now;
        let ttl = Duration::from_secs(agent.facts.config.ttl.into());
        agent.failsafe = failsafe::Failsafe::new(now, ttl);
        let machine = Machine
            .uninitialized_state_machine()
            .init_with_context(&mut agent);
        Node {
            machine,
            agent,
            next_cycle_at: now,
            retry_not_before: now,
            probe_in_flight: None,
            probe_asked_at_revision: None,
            action_seq: 0,
            grant_in_flight: false,
            renewal_in_flight: false,
            next_lease_at: now,
            rotation: None,
            dcs_last_seen: None,
            baseline: consult::EventBaseline::default(),
            rejected_config_revision: None,
            rejected_config_error: None,
        }
    }

    /// Feed one fact observed at `now`.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.agent.facts.now = now;
        // Verdicts are per input: those of an earlier one no one took are stale.
        self.agent.policy.gate.take_verdicts();
        let step = self.agent.failsafe_step();
        self.agent.failsafe.observe(now, step);
        match input {
            Input::Tick => {}
            Input::ClusterChanged(view) => self.on_cluster_changed(now, view),
            Input::DcsUnreachable { error } => {
                tracing::warn!(node = %self.agent.settings.name, %error, "lock store unreachable");
                self.agent.facts.dcs_error = Some(error);
            }
            Input::PostgresProbed(observation) => self.on_postgres_probed(now, observation),
            Input::LeaseGranted {
                lease,
                ttl_secs,
                sent_at,
            } => self.on_lease_granted(now, lease, ttl_secs, sent_at),
            Input::LeaseGrantFailed { error } => {
                self.grant_in_flight = false;
                self.agent.facts.dcs_error = Some(error);
                self.store_failing(now);
            }
            Input::LeaseRenewed { lease, sent_at } => self.on_lease_renewed(now, lease, sent_at),
            Input::LeaseRenewFailed {
                lease,
                expired,
                error,
            } => self.on_lease_renew_failed(now, lease, expired, error),
            Input::InitializeRaced { won } => self.dispatch(Event::InitializeRaced(won)),
            Input::LeaderAcquired {
                won,
                revision,
                create_revision,
            } => self.on_leader_acquired(won, revision, create_revision),
            Input::SyncWritten { seq, ok } => {
                if self.agent.sync.write_in_flight == Some(seq) {
                    self.agent.sync.write_in_flight = None;
                }
                if !ok {
                    tracing::info!(node = %self.agent.settings.name, "/sync changed under us; re-reading");
                }
                self.dispatch(Event::SyncWritten { seq, ok });
            }
            Input::PeersProbed(reports) => {
                self.agent.facts.peers = Some(reports);
                self.dispatch(Event::PeersProbed);
            }
            Input::PolicyDecided(answer) => self.dispatch(Event::PolicyDecided(answer)),
            Input::WatchdogChecked(result) => self.on_watchdog_checked(now, result),
            Input::WatchdogArmed(result) => self.on_watchdog_armed(now, result),
            Input::WatchdogFeedFailed { error } => {
                tracing::error!(node = %self.agent.settings.name, %error, "watchdog keepalive failed");
                self.agent.watchdog.feed_error = Some(error);
            }
            Input::FailsafeHeartbeat { leader, request } => {
                self.on_failsafe_heartbeat(now, leader, request)
            }
            Input::ReinitializeRequested { request } => self.on_reinitialize_requested(request),
            Input::RestartRequested {
                request,
                conditions,
            } => self.on_restart_requested(request, conditions),
            Input::RestartScheduled {
                request,
                at,
                schedule,
                conditions,
                postgres_version,
            } => {
                let postmaster_start_time = self
                    .agent
                    .facts
                    .pg
                    .as_ref()
                    .and_then(|p| p.server.as_ref())
                    .and_then(|s| s.postmaster_start_time.clone());
                let scheduled = restart::ScheduledRestart {
                    at,
                    schedule,
                    conditions,
                    postgres_version,
                    postmaster_start_time,
                };
                self.on_restart_scheduled(request, scheduled)
            }
            Input::ScheduledRestartDeleted { request } => {
                self.on_scheduled_restart_deleted(request)
            }
            Input::LocalConfigReloaded { settings } => {
                if settings != self.agent.settings.reloadable() {
                    tracing::info!(node = %self.agent.settings.name, ?settings, "local settings reloaded");
                    self.agent.settings.apply(settings);
                }
                // The runtime hands the PostgreSQL worker the new local settings first:
                // the reload this asks for writes them.
                self.agent.postgres.config_outdated = true;
                self.next_cycle_at = now;
            }
            Input::FailsafeConfirmed { sent_at, refusals } => {
                self.agent.failsafe.round_in_flight = false;
                self.on_failsafe_round(now, sent_at, refusals);
            }
            Input::PgActionFinished { action, outcome } => {
                self.on_pg_action_finished(now, action, outcome)
            }
        }
        self.enforce_deadline();
        self.consult_on_events();
        if let Some(wake) = self.agent.policy.wake_at.take() {
            self.next_cycle_at = self.next_cycle_at.min(wake);
        }
        if let Some((scheduled, woken)) = self.agent.requests.scheduled_restart.as_mut() {
            if !*woken && now >= scheduled.at {
                // Its time came: a cycle now (a fresh probe, then `run_scheduled_restart`).
                *woken = true;
                self.next_cycle_at = self.next_cycle_at.min(now);
            }
        }
        if let Some(due) = self.scheduled_switchover_due() {
            if due > now {
                // The leader acts on it at its time, not a loop_wait later.
                self.next_cycle_at = self.next_cycle_at.min(due);
            }
        }
        self.maybe_start_cycle(now);
    }

    /// When the switchover scheduled in the `failover` key is due, if we lead.
    fn scheduled_switchover_due(&self) -> Option<Instant> {
        if !self.agent.holds_leader_key() {
            return None;
        }
        let request = &self.agent.facts.view.as_ref()?.failover.as_ref()?.value;
        request.scheduled_at.as_ref()?;
        request.due
    }

    /// A PostgreSQL probe: the fresh one the cycle waited for starts it.
    fn on_postgres_probed(&mut self, now: Instant, observation: view::PgObservation) {
        self.agent.facts.probe_revision = self.probe_asked_at_revision;
        // The unresponsive-primary clock runs from the first silent probe, whatever
        // the agent is busy with meanwhile (a store outage, a failsafe round, taking
        // its key back): an answer, even an error, or a dead postmaster stops it.
        if !observation.is_unresponsive() {
            self.agent.postgres.unresponsive_since = None;
        } else if self.agent.postgres.unresponsive_since.is_none() {
            self.agent.postgres.unresponsive_since = Some(now);
        }
        // A probe that reached no server says nothing of replies: skipping it keeps a
        // silent standby's clock running through a failed probe.
        if let Some(server) = observation.server.as_ref() {
            self.agent.sync.replies.observe(&server.replication, now);
        }
        let fresh = self.probe_in_flight == Some(self.action_seq);
        self.probe_in_flight = None;
        let running_as_primary = observation.server.as_ref().map(|s| !s.in_recovery);
        self.agent.facts.pg = Some(observation);
        if fresh {
            self.run_cycle();
            // The first sight of a running server is an `on_start` once the cycle has
            // decided to leave it as it is (Patroni: at the end of a cycle that started
            // nothing): a primary about to be stopped is not announced.
            let busy = self.agent.postgres.action.is_some() || self.agent.facts.view.is_none();
            if let Some(callback) = self
                .agent
                .postgres
                .callbacks
                .after_probe(running_as_primary, busy)
            {
                self.agent.outbox.push(Effect::RunCallback(callback));
            }
        } else {
            // An action finished while this probe was out: look again before deciding.
            self.next_cycle_at = now.max(self.retry_not_before);
        }
    }

    /// A lease granted: the first, or a replacement after a `ttl` change.
    fn on_lease_granted(&mut self, now: Instant, lease: LeaseId, ttl_secs: u32, sent_at: Instant) {
        self.grant_in_flight = false;
        self.dcs_seen(now);
        self.store_answers_lease();
        let ttl = Duration::from_secs(ttl_secs.into());
        match (
            self.agent.leadership.lease.id,
            self.agent.holds_leader_key(),
        ) {
            (Some(_), true) => {
                // Rotating while leader: move the leader key onto the new lease
                // first; the old lease stays valid (and renewed) until that worked.
                self.rotation = Some(Rotation {
                    lease,
                    ttl,
                    sent_at,
                });
                self.agent.outbox.push(Effect::AcquireLeader { lease });
            }
            (Some(old), false) => {
                self.switch_lease(lease, ttl, sent_at);
                self.touch_member(lease);
                self.agent.outbox.push(Effect::RevokeLease { lease: old });
            }
            (None, _) => self.switch_lease(lease, ttl, sent_at),
        }
    }

    /// A renewal acknowledged: the deadline moves, the watchdog may be fed.
    fn on_lease_renewed(&mut self, now: Instant, lease: LeaseId, sent_at: Instant) {
        self.renewal_in_flight = false;
        self.agent.leadership.lease.renewed(lease, sent_at);
        self.dcs_seen(now);
        self.store_answers_lease();
        // A leader stopping PostgreSQL (a switchover's fast shutdown, a long
        // checkpoint) still holds the key and renews it: the device is fed until the
        // stop is done.
        let stopping_with_key =
            matches!(self.machine.state(), State::Demoting {}) && self.agent.holds_leader_key();
        if self.agent.leadership.lease.id == Some(lease)
            && (self.acting_as_leader() || stopping_with_key)
        {
            let ttl = self.agent.leadership.lease.ttl;
            self.feed_watchdog(now, sent_at + ttl, "lease renewal");
        }
    }

    /// A renewal failed: the lease expired (etcd said so) or the store did not answer.
    fn on_lease_renew_failed(
        &mut self,
        now: Instant,
        lease: LeaseId,
        expired: bool,
        error: String,
    ) {
        self.renewal_in_flight = false;
        if expired && self.agent.leadership.lease.id == Some(lease) {
            tracing::warn!(node = %self.agent.settings.name, %lease, %error, "lease expired");
            self.agent.leadership.lease.lost();
            self.agent.leadership.acquired = None;
            self.next_lease_at = now;
            // The store answered: not an outage, whatever happened to the lease.
            self.agent.failsafe.renewals_failing = false;
            self.agent.failsafe.active = false;
        } else {
            self.agent.facts.dcs_error = Some(error);
            self.store_failing(now);
        }
    }

    /// The answer to a leader key acquisition.
    fn on_leader_acquired(&mut self, won: bool, revision: Revision, create_revision: Revision) {
        // An acquisition that moves our key onto a replacement lease (a `ttl` change).
        if self.rotation.is_some() {
            if let (Some(rotation), Some(old)) =
                (self.rotation.take(), self.agent.leadership.lease.id)
            {
                if won {
                    self.switch_lease(rotation.lease, rotation.ttl, rotation.sent_at);
                    self.agent.leadership.acquired = Some(parts::Acquisition {
                        lease: rotation.lease,
                        revision,
                        create_revision,
                    });
                    self.touch_member(rotation.lease);
                    self.agent.outbox.push(Effect::RevokeLease { lease: old });
                } else {
                    // Keep leading on the old lease; drop the new one.
                    self.agent.outbox.push(Effect::RevokeLease {
                        lease: rotation.lease,
                    });
                }
            }
            return;
        }
        if won {
            if let Some(lease) = self.agent.leadership.lease.id {
                self.agent.leadership.acquired = Some(parts::Acquisition {
                    lease,
                    revision,
                    create_revision,
                });
            }
        }
        self.dispatch(Event::LeaderAcquired(won));
    }

    /// Whether the watchdog device looks usable.
    fn on_watchdog_checked(&mut self, now: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let retry_after = Duration::from_secs(self.agent.facts.config.ttl.into());
                self.agent.watchdog.device_checked_ok(now, retry_after);
            }
            Err(error) => {
                if self.agent.watchdog.device_check.as_ref() != Some(&Err(error.clone())) {
                    tracing::warn!(node = %self.agent.settings.name, %error, "watchdog device check failed");
                }
                self.agent.watchdog.device_check = Some(Err(error));
            }
        }
    }

    /// A failsafe primary's `POST /failsafe`: accepted (a promise not to race) or refused.
    fn on_failsafe_heartbeat(&mut self, now: Instant, leader: String, request: u64) {
        let verdict = self.agent.failsafe_verdict();
        match &verdict {
            failsafe::HeartbeatVerdict::Accepted => {
                tracing::debug!(node = %self.agent.settings.name, %leader, "failsafe heartbeat accepted");
                let ttl = self.agent.ttl();
                self.agent.failsafe.accept(leader, now, ttl);
            }
            failsafe::HeartbeatVerdict::Refused(why) => {
                tracing::warn!(node = %self.agent.settings.name, %leader, %why, "failsafe heartbeat refused");
            }
            failsafe::HeartbeatVerdict::Disabled => {}
        }
        self.agent.failsafe.record_verdict(request, verdict);
    }

    /// `POST /reinitialize`: the verdict is kept for the API to find; accepted, it starts.
    fn on_reinitialize_requested(&mut self, request: u64) {
        let verdict = self.agent.reinitialize_verdict();
        match &verdict {
            Ok(()) => {
                tracing::info!(node = %self.agent.settings.name, "reinitialize requested")
            }
            Err(why) => {
                tracing::warn!(node = %self.agent.settings.name, %why, "reinitialize refused")
            }
        }
        let accepted = verdict.is_ok();
        keep_bounded(
            &mut self.agent.requests.reinitialize_verdicts,
            (request, verdict),
        );
        if accepted {
            self.dispatch(Event::Reinitialize);
        }
    }

    /// `POST /restart`: the verdict is kept for the API to find; accepted, it starts.
    fn on_restart_requested(&mut self, request: u64, conditions: restart::RestartConditions) {
        let verdict = restart::verdict(self.agent.restart_facts(), &conditions);
        match &verdict {
            Ok(()) => {
                tracing::info!(node = %self.agent.settings.name, ?conditions, "restart requested")
            }
            Err(why) => {
                tracing::warn!(node = %self.agent.settings.name, %why, "restart refused")
            }
        }
        let accepted = verdict.is_ok();
        keep_bounded(
            &mut self.agent.requests.restart_verdicts,
            (request, verdict),
        );
        if accepted {
            self.dispatch(Event::Restart(Some(request)));
        }
    }

    /// `POST /restart` with a schedule: kept for its time (one at a time, none while paused).
    fn on_restart_scheduled(&mut self, request: u64, scheduled: restart::ScheduledRestart) {
        let verdict = if self.agent.paused() {
            Err("Can't schedule restart in the paused state".to_string())
        } else if self.agent.requests.scheduled_restart.is_some() {
            Err("Another restart is already scheduled".to_string())
        } else {
            tracing::info!(node = %self.agent.settings.name, schedule = %scheduled.schedule, "restart scheduled");
            self.agent.requests.scheduled_restart = Some((scheduled, false));
            Ok(())
        };
        keep_bounded(
            &mut self.agent.requests.restart_verdicts,
            (request, verdict),
        );
    }

    /// `DELETE /restart`.
    fn on_scheduled_restart_deleted(&mut self, request: u64) {
        let verdict = match self.agent.requests.scheduled_restart.take() {
            Some((s, _)) => {
                tracing::info!(node = %self.agent.settings.name, schedule = %s.schedule, "scheduled restart deleted");
                Ok(())
            }
            None => Err("no restarts are scheduled".to_string()),
        };
        keep_bounded(
            &mut self.agent.requests.restart_verdicts,
            (request, verdict),
        );
    }

    /// At a cycle: the scheduled restart runs when due (and the node can), waits while the
    /// node is busy, or is dropped (see `restart::scheduled_step`).
    fn run_scheduled_restart(&mut self) {
        let Some((scheduled, _)) = self.agent.requests.scheduled_restart.as_ref() else {
            return;
        };
        let loop_wait = Duration::from_secs(self.agent.facts.config.loop_wait.max(1).into());
        let step = restart::scheduled_step(
            scheduled,
            self.agent.facts.now,
            loop_wait,
            self.agent.paused(),
            self.agent.restart_facts(),
        );
        match step {
            restart::ScheduledStep::Wait => {}
            restart::ScheduledStep::Run => {
                tracing::info!(node = %self.agent.settings.name, schedule = %scheduled.schedule, "scheduled restart starting");
                self.agent.requests.scheduled_restart = None;
                self.dispatch(Event::Restart(None));
            }
            restart::ScheduledStep::Drop(why) => {
                tracing::warn!(node = %self.agent.settings.name, schedule = %scheduled.schedule, %why, "scheduled restart dropped");
                self.agent.requests.scheduled_restart = None;
            }
        }
    }

    /// A PostgreSQL action finished: the machine hears it, then the next cycle is timed.
    fn on_pg_action_finished(&mut self, now: Instant, action: PgAction, outcome: PgActionOutcome) {
        if self.agent.postgres.action.as_ref() == Some(&action) {
            self.agent.postgres.action = None;
        }
        let failed = matches!(outcome, PgActionOutcome::Failed { .. });
        if failed && action.writes_configuration() {
            // The files may be half written or PostgreSQL not reloaded: again next cycle.
            self.agent.postgres.config_outdated = true;
        }
        if matches!(outcome, PgActionOutcome::Done { .. }) {
            let was_running = self.agent.postgres.started_on_running_server;
            if matches!(action, PgAction::Demote { .. }) {
                // One stop is announced once (a kill that overtook a stop finishes too).
                self.agent.postgres.started_on_running_server = false;
            }
            // A promotion that finished after the race was given up (the key lost meanwhile)
            // is being stopped: the scripts hear of the stop, not of a new primary.
            let abandoned = matches!(action, PgAction::Promote { .. })
                && !matches!(self.machine.state(), State::Candidate { .. });
            let callbacks = &mut self.agent.postgres.callbacks;
            if abandoned {
                callbacks.became_silently(CallbackRole::Primary);
            } else if let Some(callback) = callbacks.after_action(&action, was_running) {
                self.agent.outbox.push(Effect::RunCallback(callback));
            }
        }
        if let PgAction::Restart {
            request: Some(request),
            ..
        } = &action
        {
            let result = match &outcome {
                PgActionOutcome::Done { .. } => Ok(()),
                PgActionOutcome::Failed { error } | PgActionOutcome::Vetoed { error } => {
                    Err(error.clone())
                }
            };
            keep_bounded(&mut self.agent.requests.restart_results, (*request, result));
        }
        self.action_seq += 1;
        let retry_later =
            matches!(outcome, PgActionOutcome::Failed { .. }) && action.retried_at_next_cycle();
        self.dispatch(Event::PgActionFinished(action, outcome));
        if retry_later {
            let loop_wait = Duration::from_secs(self.agent.facts.config.loop_wait.max(1).into());
            self.retry_not_before = now + loop_wait;
            self.next_cycle_at = self.next_cycle_at.max(self.retry_not_before);
        } else {
            self.next_cycle_at = now;
        }
    }

    /// Every change of the facts a policy cares about becomes an event it is consulted on.
    fn consult_on_events(&mut self) {
        let events = self.baseline.advance(&self.agent.policy_facts());
        if self.agent.facts.view.is_none() {
            return;
        }
        for event in events {
            self.agent.consult(ConsultPurpose::Routine, event);
        }
    }

    /// Next effect to execute.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.agent.outbox.pop()
    }

    /// When the node must be woken with `Input::Tick` at the latest: the earliest of
    /// [`Node::timers`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers().earliest().map(|(_, at)| at)
    }

    /// Wake the node at `now` because its timeout passed: returns the timers that were due
    /// (for the log), then handles the wake-up like `Input::Tick`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<timers::Timer> {
        let due = self.timers().due(now);
        self.handle_input(now, Input::Tick);
        due
    }

    /// Every moment the node must be woken at, by name (see `timers`).
    pub fn timers(&self) -> timers::Timers {
        use timers::Timer;
        let mut table = timers::Timers::default();
        // While a probe is out, its answer starts the cycle: a cycle time in the past must
        // not turn into a busy loop.
        let loop_wait = Duration::from_secs(self.agent.facts.config.loop_wait.max(1).into());
        let cycle = if self.probe_in_flight.is_some() {
            self.next_cycle_at.max(self.agent.facts.now + loop_wait)
        } else {
            self.next_cycle_at
        };
        table.set(Timer::Cycle, cycle);
        if let Some((scheduled, false)) = self.agent.requests.scheduled_restart.as_ref() {
            table.set(Timer::ScheduledRestart, scheduled.at);
        }
        if !self.renewal_in_flight && !self.grant_in_flight {
            table.set(Timer::LeaseRenewal, self.next_lease_at);
        }
        // A stop through pg_ctl is killed at the deadline if still running.
        let stopping_slowly = matches!(self.machine.state(), State::Demoting {})
            && matches!(
                self.agent.postgres.action,
                Some(PgAction::Demote { mode }) if mode != DemoteMode::ImmediateNolock
            );
        if let Some(deadline) = self
            .agent
            .demotion_deadline()
            .filter(|d| stopping_slowly && *d > self.agent.facts.now)
        {
            table.set(Timer::StopKill, deadline);
        }
        let paused_primary = self.paused_primary();
        if (self.acting_as_leader() || matches!(self.machine.state(), State::Primary {}))
            && !paused_primary
        {
            if let Some(deadline) = self.agent.demotion_deadline() {
                table.set(Timer::DemotionDeadline, deadline);
                // The clean (offline) stop is due `retry_timeout` before the deadline.
                let retry = Duration::from_secs(self.agent.facts.config.retry_timeout.into());
                let offline_at = deadline - retry;
                if self.agent.failsafe.renewals_failing
                    && !self.agent.failsafe_mode()
                    && offline_at > self.agent.facts.now
                {
                    table.set(Timer::OfflineStop, offline_at);
                }
            }
        }
        if self.failsafe_round_wanted() && !self.agent.failsafe.round_in_flight {
            table.set(Timer::FailsafeRound, self.agent.failsafe.next_round_at);
        }
        if self.agent.failsafe.holding() && self.agent.failsafe_mode() {
            // A promise not to race counts only time we saw pass, a step at a time.
            table.set(
                Timer::FailsafePromise,
                self.agent.facts.now + self.agent.failsafe_step() / 2,
            );
        }
        table
    }

    /// A snapshot for the REST API, metrics and the member key.
    pub fn status(&self) -> NodeStatus {
        let a = &self.agent;
        NodeStatus {
            name: a.settings.name.clone(),
            state: state_name(self.machine.state()),
            holds_leader_key: a.holds_leader_key(),
            lease: a.leadership.lease.id,
            leader_revision: a.my_leader_revision(),
            lease_deadline: a.demotion_deadline(),
            now: a.facts.now,
            pg: a.facts.pg.clone(),
            view: a.facts.view.clone(),
            config: a.facts.config.clone(),
            tags: a.settings.tags.clone(),
            pg_action: a.postgres.action.as_ref().map(|p| p.kind()),
            last_transition: a.report.last_transition.clone(),
            last_error: a.postgres.last_error.clone(),
            last_race_refusal: a.report.last_race_refusal.clone(),
            probe_revision: a.facts.probe_revision,
            dcs_last_seen: self.dcs_last_seen,
            dcs_error: self.agent.facts.dcs_error.clone(),
            loop_wait: Duration::from_secs(a.facts.config.loop_wait.into()),
            ttl: Duration::from_secs(a.facts.config.ttl.into()),
            watchdog: a.watchdog.status(a.facts.now, &a.facts.config),
            policy: status::PolicyStatus {
                gate_rejections: a.policy.gate.rejections.clone(),
                last_gate_rejection: a.policy.gate.last.clone(),
                fallbacks: a.policy.fallbacks,
                preference: a.policy.last_preference.clone(),
            },
            failsafe: status::FailsafeStatus {
                enabled: a.failsafe_mode(),
                active: a.failsafe.active
                    && matches!(self.machine.state(), State::Primary {})
                    && a.failsafe_allows_primary(),
                members: a
                    .facts
                    .view
                    .as_ref()
                    .map(|v| v.failsafe.clone())
                    .unwrap_or_default(),
                last_heartbeat: a
                    .failsafe
                    .heartbeat
                    .as_ref()
                    .map(|h| (h.leader.clone(), a.facts.now.saturating_since(h.at))),
                verdicts: a.failsafe.verdicts.iter().cloned().collect(),
            },
            reinitialize_verdicts: a.requests.reinitialize_verdicts.iter().cloned().collect(),
            restart_verdicts: a.requests.restart_verdicts.iter().cloned().collect(),
            restart_results: a.requests.restart_results.iter().cloned().collect(),
            scheduled_restart: a.scheduled_restart(),
            failover_priority: a.settings.failover_priority,
        }
    }

    /// Current state name.
    pub fn state(&self) -> &'static str {
        state_name(self.machine.state())
    }

    /// Queue a write of our member key on `lease`, saying what it says now.
    fn touch_member(&mut self, lease: LeaseId) {
        let member = Box::new(self.agent.member_record());
        self.agent
            .outbox
            .push(Effect::TouchMember { member, lease });
    }

    fn switch_lease(&mut self, lease: LeaseId, ttl: Duration, sent_at: Instant) {
        self.agent.leadership.lease.granted(lease, ttl, sent_at);
        self.agent.leadership.lease.requested_ttl_secs = self.agent.facts.config.ttl;
    }

    fn dcs_seen(&mut self, now: Instant) {
        self.dcs_last_seen = Some(now);
        self.agent.facts.dcs_error = None;
    }

    /// Maintenance mode with a running primary here (leading, or taking its key back):
    /// the agent never stops it, whatever the lease says.
    fn paused_primary(&self) -> bool {
        self.agent.paused()
            && (matches!(self.machine.state(), State::Primary {})
                || self.agent.facts.pg.as_ref().is_some_and(|p| p.is_primary()))
    }

    fn acting_as_leader(&self) -> bool {
        matches!(
            self.machine.state(),
            State::Primary {} | State::Candidate { .. }
        ) && self.agent.holds_leader_key()
    }

    /// Keepalive only after a successful renewal of the lease our leader key is on, or a
    /// failsafe round every member confirmed: a node that can do neither stops feeding, and
    /// the device resets it before another can lead.
    ///
    /// A keepalive restarts the device's countdown from `now`, so it must not let the device
    /// fire later than another member may lead: `until` (the renewal's or the round's send
    /// time + ttl). An answer that took longer than `ttl - timeout` to arrive does not feed it.
    fn feed_watchdog(&mut self, now: Instant, until: Instant, what: &str) {
        let WatchdogState::Armed { timeout_secs, .. } = self.agent.watchdog.state else {
            return;
        };
        let WatchdogState::Armed {
            device_timeout_secs,
            ..
        } = self.agent.watchdog.state
        else {
            return;
        };
        // A device that reported a longer timeout than asked fires that much later.
        let timeout_secs = device_timeout_secs.map_or(timeout_secs, |d| d.max(timeout_secs));
        let fires_at = now + Duration::from_secs(timeout_secs.into());
        if fires_at > until {
            tracing::warn!(
                node = %self.agent.settings.name,
                late_ms = fires_at.saturating_since(until).as_millis() as u64,
                "{what} answered too late to feed the watchdog"
            );
            return;
        }
        self.agent.outbox.push(Effect::FeedWatchdog);
        self.agent.watchdog.last_keepalive = Some(now);
        self.agent.watchdog.feed_error = None;
    }

    /// The lease could not be renewed or granted: the store is unreachable (not a compare
    /// mismatch). A primary in failsafe mode starts a round at once.
    fn store_failing(&mut self, now: Instant) {
        self.agent.failsafe.renewals_failing = true;
        self.agent.failsafe.next_round_at = self.agent.failsafe.next_round_at.min(now);
    }

    /// The store granted or renewed our lease: failsafe is no longer what keeps us running.
    fn store_answers_lease(&mut self) {
        let f = &mut self.agent.failsafe;
        if f.active {
            tracing::info!(node = %self.agent.settings.name, "lock store reachable again: failsafe mode no longer active");
        }
        f.renewals_failing = false;
        f.active = false;
        f.stood_down = false;
    }

    /// A primary in failsafe mode whose lease cannot be renewed runs rounds.
    fn failsafe_round_wanted(&self) -> bool {
        self.agent.failsafe_mode()
            && self.agent.failsafe.renewals_failing
            && matches!(self.machine.state(), State::Primary {})
    }

    /// Start a failsafe round when one is due: `POST /failsafe` to every other member in
    /// `/failsafe`; alone in it, the round is confirmed at once (Patroni's single node rule).
    fn maybe_start_failsafe_round(&mut self, now: Instant, interval: Duration) {
        if !self.failsafe_round_wanted()
            || self.agent.failsafe.round_in_flight
            || now < self.agent.failsafe.next_round_at
        {
            return;
        }
        self.agent.failsafe.next_round_at = now + interval;
        let Some(view) = self.agent.facts.view.as_ref() else {
            return;
        };
        match failsafe::round_members(view, &self.agent.settings.name) {
            Err(why) => {
                if self.agent.failsafe.warned.as_ref() != Some(&why) {
                    tracing::warn!(node = %self.agent.settings.name, %why, "failsafe mode cannot keep this primary running");
                    self.agent.failsafe.warned = Some(why);
                }
            }
            Ok(members) if members.is_empty() => self.on_failsafe_round(now, now, Vec::new()),
            Ok(members) => {
                self.agent.failsafe.round_in_flight = true;
                self.agent.outbox.push(Effect::ProbeFailsafe { members });
            }
        }
    }

    /// A failsafe round's result: all accepted extends the primary's right to run and feeds
    /// the watchdog; any refusal while the store is unreachable demotes at once.
    fn on_failsafe_round(&mut self, now: Instant, sent_at: Instant, refusals: Vec<String>) {
        if !self.agent.failsafe_mode() || !matches!(self.machine.state(), State::Primary {}) {
            return;
        }
        if refusals.is_empty() {
            let was_active = self.agent.failsafe.active;
            self.agent.failsafe.confirmed(sent_at);
            if self.agent.failsafe.active && !was_active {
                tracing::warn!(node = %self.agent.settings.name, "lock store unreachable: failsafe mode active, every member confirmed this primary");
            }
            let until = sent_at + self.agent.ttl();
            self.feed_watchdog(now, until, "failsafe round");
        } else if self.agent.failsafe.renewals_failing && !self.agent.paused() {
            self.dispatch(Event::FailsafeLost(refusals.join("; ")));
        }
    }

    fn on_watchdog_armed(&mut self, now: Instant, result: Result<ArmReport, String>) {
        let WatchdogState::Arming { timeout_secs } = self.agent.watchdog.state else {
            if result.is_ok() {
                // An answer nobody waits for (leadership ended meanwhile): close it again.
                self.agent.outbox.push(Effect::DisarmWatchdog {
                    reason: "armed after leadership ended".into(),
                });
            }
            return;
        };
        let verdict = result.and_then(|report| {
            self.agent
                .watchdog
                .judge_arm(timeout_secs, &report, self.agent.facts.config.loop_wait)
                .map(|()| report)
        });
        match verdict {
            Ok(report) => {
                tracing::info!(
                    node = %self.agent.settings.name,
                    timeout_secs,
                    device_timeout_secs = ?report.device_timeout_secs,
                    "watchdog armed"
                );
                self.agent.watchdog.state = WatchdogState::Armed {
                    timeout_secs,
                    device_timeout_secs: report.device_timeout_secs,
                };
                // The arm sent the first keepalive.
                self.agent.watchdog.last_keepalive = Some(now);
                self.agent.watchdog.feed_error = None;
            }
            Err(error) => {
                // Close whatever was opened: an unsafe device must not stay armed.
                self.agent.outbox.push(Effect::DisarmWatchdog {
                    reason: format!("arm failed: {error}"),
                });
                self.agent.watchdog_failed(error);
            }
        }
        self.dispatch(Event::WatchdogArmed);
        self.next_cycle_at = now;
    }

    fn dispatch(&mut self, event: Event) {
        let before = self.agent.outbox.transition_count();
        self.machine.handle_with_context(&event, &mut self.agent);
        let made = self.agent.outbox.transitions_since(before);
        if !made.is_empty() {
            let label = event.label();
            for t in made {
                t.event.clone_from(&label);
            }
        }
    }

    /// Revisions only compare within one etcd history. One that goes back (etcd restored
    /// from an old snapshot, or replaced by an empty one) starts another: what was keyed on
    /// the old one would mislead. A key acquisition with a revision above the new view's
    /// would count as ours though that key is gone; a leader seen gone "since" a revision the
    /// new history has not reached would make every quorum vote look stale; a `/failover`
    /// or `/config` revision handled before could match a different key now.
    fn forget_revisions(&mut self, last: Revision, now_at: Revision) {
        tracing::error!(
            node = %self.agent.settings.name, from = %last, to = %now_at,
            "the lock store went back in time (etcd restored or replaced): forgetting what was keyed on its old revisions"
        );
        self.agent.leadership.acquired = None;
        self.agent.leadership.memory.leaderless_since_revision = None;
        self.agent.requests.failover_cleared = None;
        self.agent.requests.switchover_consulted = None;
        self.rejected_config_revision = None;
        self.probe_asked_at_revision = None;
    }

    /// The PostgreSQL action in flight, if any (a replay finishes a promotion with it).
    pub fn action_in_flight(&self) -> Option<&PgAction> {
        self.agent.postgres.action.as_ref()
    }

    /// The transitions made since the last call, oldest first, each with its event and
    /// [`why::Why`]: the runtime logs them, the simulation and the generated table read them.
    pub fn take_transitions(&mut self) -> Vec<why::TransitionRecord> {
        self.agent.outbox.take_transitions()
    }

    /// The invariant gate's verdicts on the input just handled (accepted, or the rule that
    /// refused), for traces and the decision log.
    pub fn take_gate_verdicts(&mut self) -> Vec<gate::GateVerdict> {
        self.agent.policy.gate.take_verdicts()
    }

    fn on_cluster_changed(&mut self, now: Instant, view: std::sync::Arc<ClusterViewAlias>) {
        self.dcs_seen(now);
        let last_revision = self.agent.facts.view.as_ref().map(|v| v.revision);
        if let Some(last) = last_revision.filter(|last| view.revision < *last) {
            self.forget_revisions(last, view.revision);
        }
        if let Some(config) = view.config.as_ref() {
            let margin_ms = self.agent.settings.demotion_margin.as_millis() as u64;
            let mut warnings = view.config_warnings.clone();
            let mut value = config.value.clone();
            value.adjust_demotion_budget("config", margin_ms, &mut warnings);
            if value != self.agent.facts.config {
                match value.validate_demotion_budget("config", margin_ms) {
                    Ok(()) => {
                        tracing::info!(node = %self.agent.settings.name, "dynamic configuration changed");
                        if value.pause != self.agent.facts.config.pause {
                            // Maintenance mode on or off: act on it now, not a loop later.
                            tracing::warn!(node = %self.agent.settings.name, paused = value.pause, "maintenance mode {}", if value.pause { "on: no automatic action" } else { "off" });
                            self.next_cycle_at = now;
                        }
                        for warning in &warnings {
                            tracing::warn!(node = %self.agent.settings.name, "/config: {warning}");
                        }
                        if value.postgresql != self.agent.facts.config.postgresql {
                            // Parameters, pg_hba or pg_ident changed: written and reloaded
                            // once no other action runs.
                            self.agent.postgres.config_outdated = true;
                            self.next_cycle_at = now;
                        }
                        self.agent.facts.config = value.clone();
                        self.agent.outbox.push(Effect::UsePgConfig(Box::new(value)));
                    }
                    Err(error) if self.rejected_config_revision != Some(config.mod_revision) => {
                        self.rejected_config_revision = Some(config.mod_revision);
                        tracing::warn!(
                            node = %self.agent.settings.name, %error,
                            "rejected /config; keeping the last good configuration"
                        );
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some(error) = view.config_error.as_ref() {
            if self.rejected_config_error.as_ref() != Some(error) {
                self.rejected_config_error = Some(error.clone());
                tracing::warn!(node = %self.agent.settings.name, %error, "rejected /config; keeping the last good configuration");
            }
        }
        let old_leader = self
            .agent
            .facts
            .view
            .as_ref()
            .and_then(|v| v.leader.clone());
        let new_leader = view.leader.clone();
        if self.agent.leadership.release_pending
            && new_leader
                .as_ref()
                .is_none_or(|l| l.name != self.agent.settings.name)
        {
            self.agent.leadership.release_pending = false;
        }
        self.agent.leadership.memory.track(&view, now);
        self.agent.facts.view = Some(view);
        if old_leader != new_leader {
            // React to a vanished or changed leader key now, not at the next loop.
            self.next_cycle_at = now;
        }
        let state = self.machine.state().clone();
        if matches!(state, State::Primary {})
            && !self.agent.holds_leader_key()
            && !self.agent.failsafe_may_retake_key()
            && !self.agent.paused()
        {
            self.dispatch(Event::MustDemote(why::Why::KeyLost));
        }
    }

    fn enforce_deadline(&mut self) {
        if self.paused_primary() {
            // Maintenance mode: a primary is never stopped by the agent, even when the lock
            // store is away (etcd maintenance is what the mode is for; Patroni too).
            return;
        }
        let is_primary = matches!(
            self.machine.state(),
            State::Primary {} | State::Candidate { .. }
        );
        if matches!(self.machine.state(), State::Demoting {}) {
            // A stop that keeps PostgreSQL running meanwhile (fast or immediate, through
            // pg_ctl) must be over by the deadline: past it, it is killed.
            let stopping_slowly = matches!(
                self.agent.postgres.action,
                Some(PgAction::Demote { mode }) if mode != DemoteMode::ImmediateNolock
            );
            // A frozen postmaster never finishes a stop through pg_ctl either: once it has
            // been silent for the unresponsive-primary timeout, it is killed too.
            let frozen = self.agent.unresponsive_too_long();
            if stopping_slowly && (!self.agent.may_stay_primary() || frozen) {
                let why = if frozen {
                    why::Why::StopMetFrozenPostmaster
                } else {
                    why::Why::StopOverranDeadline
                };
                self.dispatch(Event::KillOverdueStop(why));
            }
            return;
        }
        if matches!(self.machine.state(), State::Primary {})
            && self.agent.may_stay_primary()
            && self.agent.offline_stop_due()
            && self
                .agent
                .postgres
                .action
                .as_ref()
                .is_none_or(|a| !matches!(a, PgAction::Demote { .. }))
        {
            self.dispatch(Event::StopOffline);
            return;
        }
        if is_primary && !self.agent.may_stay_primary() {
            let why = if self.agent.failsafe_mode() && self.agent.failsafe.renewals_failing {
                why::Why::DeadlinePassedWithoutFailsafe
            } else {
                why::Why::DeadlinePassed
            };
            self.dispatch(Event::MustDemote(why));
        }
    }

    fn maybe_start_cycle(&mut self, now: Instant) {
        let loop_wait = Duration::from_secs(self.agent.facts.config.loop_wait.max(1).into());
        // Renew often enough for the lease actually held, which may still carry an old
        // ttl while a `ttl` change rotates it: at least twice per (ttl − margin).
        let held = self
            .agent
            .leadership
            .lease
            .ttl
            .saturating_sub(self.agent.settings.demotion_margin)
            / 2;
        // With a watchdog, renew at least twice per (ttl − timeout): arming (at a promotion)
        // starts the device's countdown at once, and it may only fire after the lease
        // could expire if the last renewal is recent enough (see `watchdog_gate`).
        let watchdog_slack = match self.agent.watchdog.timeout_for(&self.agent.facts.config) {
            Ok(timeout) if self.agent.watchdog.enabled() => {
                self.agent
                    .leadership
                    .lease
                    .ttl
                    .saturating_sub(Duration::from_secs(timeout.into()))
                    / 2
            }
            _ => held,
        };
        let lease_interval = if self.agent.leadership.lease.id.is_some() {
            loop_wait.min(held.min(watchdog_slack).max(Duration::from_millis(500)))
        } else {
            loop_wait
        };
        // The lease is kept on its own schedule: a slow PostgreSQL probe must never delay a
        // renewal (a leader would demote itself for a database that is merely slow to answer).
        if now >= self.next_lease_at {
            match self.agent.leadership.lease.id {
                None if !self.grant_in_flight => {
                    self.grant_in_flight = true;
                    self.agent.outbox.push(Effect::GrantLease {
                        ttl_secs: self.agent.facts.config.ttl,
                    });
                    self.next_lease_at = now + loop_wait;
                }
                Some(_)
                    if self.agent.leadership.lease.requested_ttl_secs
                        != self.agent.facts.config.ttl
                        && !self.grant_in_flight
                        && self.rotation.is_none() =>
                {
                    // `ttl` changed in /config: take a lease with the new TTL and move our
                    // keys onto it (the old one keeps being renewed meanwhile).
                    self.grant_in_flight = true;
                    self.agent.outbox.push(Effect::GrantLease {
                        ttl_secs: self.agent.facts.config.ttl,
                    });
                }
                Some(lease) if !self.renewal_in_flight => {
                    self.renewal_in_flight = true;
                    self.agent.leadership.lease.renewal_sent_at = Some(now);
                    let retry_timeout =
                        Duration::from_secs(self.agent.facts.config.retry_timeout.max(1).into());
                    self.agent.outbox.push(Effect::RenewLease {
                        lease,
                        retry_timeout,
                    });
                    self.next_lease_at = now + lease_interval;
                }
                _ => {}
            }
        }
        // Failsafe rounds stand in for renewals, on the same schedule and for the same reason.
        self.maybe_start_failsafe_round(now, lease_interval);
        if now < self.next_cycle_at || self.probe_in_flight.is_some() {
            return;
        }
        self.probe_in_flight = Some(self.action_seq);
        self.probe_asked_at_revision = self.agent.facts.view.as_ref().map(|v| v.revision);
        self.agent.outbox.push(Effect::ProbePostgres);
        self.next_cycle_at = now + loop_wait;
    }

    fn run_cycle(&mut self) {
        // A release that did not land (the store was unreachable, the answer lost) is sent
        // again while the view still shows our key: the key must not outlive our intent.
        if self.agent.leadership.release_pending && self.agent.view_shows_key_on_our_lease() {
            if let Some(release) = self.agent.release_of_current_key() {
                self.agent.outbox.push(release);
            }
        }
        if self.agent.watchdog.enabled() && !self.agent.watchdog.is_armed() {
            // Keeps the usability of a device that is not in use current, for the race
            // gate of `required` and for the status (a stat, the device is not opened).
            self.agent.outbox.push(Effect::CheckWatchdog);
        }
        self.run_scheduled_restart();
        // Let a transition made by this cycle act in the same cycle (starting → replica
        // → candidate), bounded so a flapping rule cannot spin.
        for _ in 0..3 {
            let before = self.machine.state().clone();
            self.dispatch(Event::Cycle);
            if *self.machine.state() == before {
                break;
            }
        }
        if let Some(lease) = self.agent.leadership.lease.id {
            self.touch_member(lease);
        }
        if matches!(
            self.machine.state(),
            State::Replica {} | State::Primary {} | State::Candidate { .. }
        ) {
            self.agent
                .consult(ConsultPurpose::Routine, pgwarden_policy::Event::Tick);
        }
    }
}

type ClusterViewAlias = view::ClusterView;

/// A lease granted to replace the current one after a `ttl` change.
#[derive(Clone, Copy, Debug)]
struct Rotation {
    lease: LeaseId,
    ttl: Duration,
    sent_at: Instant,
}

/// Appends an answer for the REST handlers, dropping the oldest beyond what is kept.
fn keep_bounded<T>(answers: &mut std::collections::VecDeque<T>, answer: T) {
    if answers.len() >= REINITIALIZE_VERDICTS_KEPT {
        answers.pop_front();
    }
    answers.push_back(answer);
}
