//! The agent's state machine (statig, synchronous). Handlers read the facts kept in
#![allow(missing_docs)] // statig generates the State/Superstate enums
//! `Agent`, push effects into the `Outbox`, and return a transition with a reason that the
//! transition hook logs. No IO, no clock: `now` is in the agent's facts.
//!
//! States: starting, bootstrapping, cloning, rewinding, demoting, and the superstate
//! `running` holding replica, candidate and primary.

use statig::prelude::*;

use super::agent::{Agent, WatchdogGate};
use super::candidacy::{Phase, Race};
use super::consult::{ConsultPurpose, PolicyAnswer};
use super::effect::{DemoteMode, Effect, PgAction};
use super::initialize::BootstrapRun;
use super::input::PgActionOutcome;
use super::view::{ClusterView, DataDir, PgObservation};
use super::why::{TransitionRecord, Why};

/// How soon a primary whose synchronous set is still being built looks again.
const SYNC_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Events the machine reacts to; derived from inputs by `Node`.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The periodic decision point: a fresh PostgreSQL probe just arrived.
    Cycle,
    /// Result of the initialize race.
    InitializeRaced(bool),
    /// Result of a leader key acquisition.
    LeaderAcquired(bool),
    /// Peers were probed; the reports are in the agent.
    PeersProbed,
    /// A PostgreSQL action finished.
    PgActionFinished(PgAction, PgActionOutcome),
    /// A `/sync` compare-and-swap finished: its sequence number and whether it succeeded.
    SyncWritten {
        /// The write's sequence number.
        seq: u64,
        /// The compare-and-swap succeeded.
        ok: bool,
    },
    /// The leader key is no longer ours, or the lease deadline passed: stop being primary now.
    MustDemote(Why),
    /// The policy answered a call.
    PolicyDecided(PolicyAnswer),
    /// An arm of the watchdog finished (the state in `Agent::watchdog` is updated).
    WatchdogArmed,
    /// A failsafe round failed while the lock store is unreachable: stop being primary now.
    FailsafeLost(String),
    /// Renewals are failing and the demotion deadline is within `retry_timeout`: stop
    /// PostgreSQL cleanly while the lease still covers it (Patroni's `offline`).
    StopOffline,
    /// A stop through pg_ctl must be over now (the deadline passed, or the postmaster is
    /// frozen): kill PostgreSQL.
    KillOverdueStop(Why),
    /// An operator asked for a fresh copy (`POST /reinitialize`) and the core accepted it
    /// ([`Agent::reinitialize_verdict`]): only `starting` and `replica` receive it.
    Reinitialize,
    /// An operator asked for a restart (`POST /restart`, the request id; `None`: a
    /// scheduled one whose time came) and the core accepted it (`restart::verdict`): only
    /// `primary` and `replica` receive it.
    Restart(Option<u64>),
}

#[state_machine(
    initial = "State::starting()",
    state(derive(Debug, Clone, PartialEq, Eq)),
    superstate(derive(Debug)),
    after_transition = "Self::after_transition"
)]
impl Machine {
    /// Deciding what this data directory and cluster call for.
    #[state]
    fn starting(context: &mut Agent, event: &Event) -> Outcome<State> {
        match event {
            Event::Cycle => context.decide_start(),
            Event::Reinitialize => context.start_reinitialize(),
            Event::PgActionFinished(action, outcome) => {
                context.note_action_result(action, outcome);
                Handled
            }
            _ => Handled,
        }
    }

    /// Won (or is racing for) `initialize`: initdb and first start.
    #[state]
    fn bootstrapping(context: &mut Agent, run: &mut BootstrapRun, event: &Event) -> Outcome<State> {
        match event {
            Event::InitializeRaced(true) => {
                context.start_pg(PgAction::Bootstrap);
                Handled
            }
            Event::InitializeRaced(false) => {
                context.go(State::starting(), Why::AnotherMemberBootstraps)
            }
            Event::PgActionFinished(PgAction::Bootstrap, PgActionOutcome::Done { sysid }) => {
                run.sysid = sysid.clone();
                match context.leadership.lease.id {
                    Some(lease) => context.outbox.push(Effect::AcquireLeader { lease }),
                    None => run.pending_leader = true,
                }
                Handled
            }
            Event::PgActionFinished(PgAction::Bootstrap, PgActionOutcome::Failed { error }) => {
                context.outbox.push(Effect::CancelInitialize);
                context.outbox.push(Effect::Shutdown {
                    reason: format!("bootstrap failed: {error}"),
                });
                Handled
            }
            Event::Cycle if run.pending_leader => {
                if let Some(lease) = context.leadership.lease.id {
                    run.pending_leader = false;
                    context.outbox.push(Effect::AcquireLeader { lease });
                }
                Handled
            }
            Event::LeaderAcquired(true) => {
                if let Some(sysid) = run.sysid.clone() {
                    context.outbox.push(Effect::WriteInitialize { sysid });
                }
                context.outbox.push(Effect::WriteInitialConfig);
                context.go(State::primary(), Why::Bootstrapped)
            }
            Event::LeaderAcquired(false) => {
                if context
                    .view_leader()
                    .is_some_and(|l| l != context.settings.name)
                {
                    context.outbox.push(Effect::Shutdown {
                        reason: "bootstrapped but another member holds the leader key".into(),
                    });
                } else {
                    // A lock store error, not a rival: try again on the next cycle.
                    run.pending_leader = true;
                }
                Handled
            }
            _ => Handled,
        }
    }

    /// pg_basebackup from the leader in progress.
    #[state]
    fn cloning(context: &mut Agent, event: &Event) -> Outcome<State> {
        match event {
            Event::PgActionFinished(action, outcome) => {
                context.note_action_result(action, outcome);
                match outcome {
                    PgActionOutcome::Done { .. } => context.go(State::replica(), Why::Cloned),
                    PgActionOutcome::Failed { error } | PgActionOutcome::Vetoed { error } => {
                        context.go(
                            State::starting(),
                            Why::CloneFailed {
                                error: error.clone(),
                            },
                        )
                    }
                }
            }
            _ => Handled,
        }
    }

    /// pg_rewind against the new leader in progress.
    #[state]
    fn rewinding(context: &mut Agent, event: &Event) -> Outcome<State> {
        match event {
            Event::PgActionFinished(action, outcome) => {
                context.note_action_result(action, outcome);
                match outcome {
                    PgActionOutcome::Done { .. } => context.go(State::replica(), Why::Rewound),
                    PgActionOutcome::Failed { error } | PgActionOutcome::Vetoed { error } => {
                        if let (true, Some(from)) = (
                            context.may_reclone_after_rewind() && !context.paused(),
                            context.leader_upstream(),
                        ) {
                            context.start_pg(PgAction::Reinitialize { from });
                            let error = error.clone();
                            context.go(State::cloning(), Why::RewindFailedReclone { error })
                        } else {
                            // Starting the data as it is would be refused by PostgreSQL (or
                            // worse, stream nothing): the next cycle rewinds again, a
                            // loop_wait later, until it works or an operator re-clones.
                            context.postgres.maybe_diverged = true;
                            let error = error.clone();
                            context.go(State::starting(), Why::RewindFailedRetry { error })
                        }
                    }
                }
            }
            _ => Handled,
        }
    }

    /// Stopping a primary that must not stay one.
    #[state]
    fn demoting(context: &mut Agent, event: &Event) -> Outcome<State> {
        match event {
            Event::KillOverdueStop(why) => {
                // A stop through pg_ctl that must be over now (the deadline passed, or the
                // postmaster is frozen): PostgreSQL is killed; the stop's answer, when it
                // comes, is overtaken by the kill's.
                context.start_pg(PgAction::Demote {
                    mode: DemoteMode::ImmediateNolock,
                });
                context.go(State::demoting(), why.clone())
            }
            Event::PgActionFinished(action @ PgAction::Demote { .. }, outcome)
                if context.postgres.action.is_some() =>
            {
                // A stop that a later one (the deadline's kill) overtook: that one decides.
                context.note_action_result(action, outcome);
                Handled
            }
            Event::PgActionFinished(action @ PgAction::Demote { mode }, outcome) => {
                context.note_action_result(action, outcome);
                let stopped = matches!(outcome, PgActionOutcome::Done { .. });
                if stopped
                    && matches!(
                        mode,
                        DemoteMode::Graceful | DemoteMode::Immediate | DemoteMode::Offline
                    )
                    && context.holds_leader_key()
                {
                    // PostgreSQL is down: only now may another member be promoted.
                    context.release_leader_key();
                }
                if stopped {
                    // PostgreSQL accepts no more writes: the fence may go (Patroni disables
                    // the watchdog at the shutdown safepoint). A failed stop keeps it armed
                    // and unfed, so the device resets a node that could not stop.
                    context.disarm_watchdog("demoted");
                }
                context.postgres.maybe_diverged = true;
                if !stopped {
                    // Still a primary: no handover to rejoin after.
                    context.postgres.rejoin_after_handover = false;
                }
                let why = match outcome {
                    PgActionOutcome::Done { .. } => Why::Demoted,
                    PgActionOutcome::Failed { error } | PgActionOutcome::Vetoed { error } => {
                        Why::StopFailed {
                            error: error.clone(),
                        }
                    }
                };
                context.go(State::starting(), why)
            }
            Event::PgActionFinished(action, outcome) => {
                context.note_action_result(action, outcome);
                Handled
            }
            _ => Handled,
        }
    }

    /// PostgreSQL runs; the lock store decides the role.
    #[superstate]
    fn running(context: &mut Agent, event: &Event) -> Outcome<State> {
        match event {
            Event::PgActionFinished(action, outcome) => {
                context.note_action_result(action, outcome);
                Handled
            }
            Event::PolicyDecided(answer) => {
                context.note_decision(answer, None);
                Handled
            }
            _ => Handled,
        }
    }

    /// A standby following the leader.
    #[state(superstate = "running")]
    fn replica(context: &mut Agent, event: &Event) -> Outcome<State> {
        match event {
            Event::Cycle => context.decide_replica(),
            Event::Reinitialize => context.start_reinitialize(),
            Event::Restart(request) => context.start_restart(*request),
            _ => Super,
        }
    }

    /// Racing for the leader key: probing peers, asking the policy, acquiring, promoting.
    /// The race's phases are this state's own data: leaving the state drops them.
    #[state(superstate = "running")]
    fn candidate(context: &mut Agent, race: &mut Race, event: &Event) -> Outcome<State> {
        match event {
            // Peers answered: the policy is asked once per race.
            Event::PeersProbed if race.phase == Phase::ProbingPeers => {
                let seq =
                    context.consult(ConsultPurpose::Election, pgwarden_policy::Event::Election);
                race.phase = Phase::AwaitingPolicy {
                    seq,
                    asked_at: context.facts.now,
                };
                Handled
            }
            Event::PolicyDecided(answer) if race.answers_election(answer.seq) => {
                context.note_decision(answer, Some(answer.seq));
                context.decide_election(race, &answer.decision.race)
            }
            Event::PolicyDecided(answer) => {
                context.note_decision(answer, race.election_seq());
                Handled
            }
            Event::LeaderAcquired(true) => {
                race.sync_claimed = false;
                context.promote_after_acquire(Entry::Within(race))
            }
            // Only the claim's own answer counts: an earlier claim's, or a routine write's
            // sent while we were primary before, may arrive after a new claim went out.
            Event::SyncWritten { seq, ok }
                if race.answers_claim(*seq) && !context.promote_in_flight() =>
            {
                race.phase = Phase::Acquiring;
                if *ok {
                    race.sync_claimed = true;
                    context.promote_after_acquire(Entry::Within(race))
                } else {
                    context.release_leader_key();
                    context.go(State::replica(), Why::SyncChangedBeforePromotion)
                }
            }
            Event::LeaderAcquired(false) => context.go(State::replica(), Why::LostRace),
            Event::WatchdogArmed if race.phase == Phase::ArmingWatchdog => {
                race.phase = Phase::Acquiring;
                context.promote_after_acquire(Entry::Within(race))
            }
            Event::PgActionFinished(action @ PgAction::Promote { .. }, outcome) => {
                context.note_action_result(action, outcome);
                match outcome {
                    PgActionOutcome::Done { .. } => context.go(State::primary(), Why::Promoted),
                    PgActionOutcome::Failed { error } => {
                        context.release_leader_key();
                        let error = error.clone();
                        context.go(State::replica(), Why::PromoteFailed { error })
                    }
                    PgActionOutcome::Vetoed { error } => {
                        context.release_leader_key();
                        let ttl = std::time::Duration::from_secs(context.facts.config.ttl.into());
                        context.leadership.race_backoff_until = Some(context.facts.now + ttl);
                        let error = error.clone();
                        context.go(State::replica(), Why::PrePromoteVetoed { error })
                    }
                }
            }
            Event::MustDemote(lost) => {
                // The key was taken or the deadline passed before promotion finished.
                let why = Why::RaceAbandoned {
                    lost: Box::new(lost.clone()),
                };
                // A promote already handed to PostgreSQL may still complete: stop it as if it
                // had (the stop runs right after it, or kills it meanwhile), keeping the
                // watchdog armed until PostgreSQL is down.
                if context.facts.pg.as_ref().is_some_and(|p| p.is_primary())
                    || context.promote_in_flight()
                {
                    context.start_pg(PgAction::Demote {
                        mode: DemoteMode::ImmediateNolock,
                    });
                    context.go(State::demoting(), why)
                } else {
                    context.go(State::replica(), why)
                }
            }
            Event::Cycle => context.check_election_deadline(race),
            _ => Super,
        }
    }

    /// The leader: holds the key, runs PostgreSQL read-write.
    #[state(superstate = "running")]
    fn primary(context: &mut Agent, event: &Event) -> Outcome<State> {
        match event {
            Event::Cycle => context.decide_primary(),
            Event::Restart(request) => context.start_restart(*request),
            Event::MustDemote(why) => {
                context.start_pg(PgAction::Demote {
                    mode: DemoteMode::ImmediateNolock,
                });
                context.go(State::demoting(), why.clone())
            }
            Event::StopOffline => {
                context.start_pg(PgAction::Demote {
                    mode: DemoteMode::Offline,
                });
                let retry_timeout = context.facts.config.retry_timeout;
                context.go(State::demoting(), Why::OfflineStop { retry_timeout })
            }
            Event::FailsafeLost(why) => {
                // Patroni stops `offline` (fast) here. This primary may already run past its
                // lease on failsafe rounds, and the members' promise not to race ends a `ttl`
                // after their last heartbeat: a fast stop that hangs (a frozen postmaster, a
                // long checkpoint) would outlive it. So: killed at once, like any lost key
                // (found by the simulation, seed 4282). Until the store renews our lease,
                // neither it nor the stale view that still names us may start a promotion.
                context.failsafe.stood_down = true;
                context.failsafe.end_primary();
                context.start_pg(PgAction::Demote {
                    mode: DemoteMode::ImmediateNolock,
                });
                let refusals = why.clone();
                context.go(State::demoting(), Why::FailsafeLost { refusals })
            }
            Event::PolicyDecided(answer) => {
                context.note_decision(answer, None);
                let outcome = context.apply_fence(&answer.decision.fence);
                if matches!(outcome, Handled) {
                    context.decline_switchover_if_unanswered(answer);
                }
                outcome
            }
            _ => Super,
        }
    }
}

/// The statig shared storage. Empty on purpose: the facts live in `Agent`, the context,
/// because statig gives no mutable access to shared storage between events.
#[derive(Debug, Default)]
pub struct Machine;

impl Machine {
    fn after_transition(&mut self, source: &State, target: &State, context: &mut Agent) {
        // The failsafe right belongs to the primary that earned it, in that term only; a
        // primary stopping PostgreSQL keeps it until the stop is over, so that a clean
        // (offline) stop is not cut short by a kill the moment it starts.
        let primary_term_over = match (source, target) {
            (State::Primary {}, State::Demoting {}) | (State::Demoting {}, State::Demoting {}) => {
                false
            }
            (State::Primary {}, _) | (State::Demoting {}, _) => true,
            _ => false,
        };
        if primary_term_over {
            context.failsafe.end_primary();
        }
        if matches!(source, State::Candidate { .. })
            && matches!(target, State::Replica {} | State::Starting {})
            && !context.promote_in_flight()
        {
            // The promotion was abandoned before PostgreSQL became writable.
            context.disarm_watchdog("promotion abandoned");
        }
        let (from, to) = (state_name(source), state_name(target));
        context.report.state_name = to;
        context.postgres.primary_down_since = None;
        let Some(why) = context.outbox.take_why() else {
            // `Agent::go` is the only way to a transition (tests/architecture.rs checks it).
            debug_assert!(false, "a transition {from} -> {to} without a Why");
            tracing::error!(node = %context.settings.name, from, to, "state transition without a reason (a bug)");
            return;
        };
        context.report.last_transition = format!("{from} -> {to}: {why}");
        context.outbox.record(TransitionRecord {
            from,
            event: String::new(),
            to,
            why,
        });
    }
}

impl Event {
    /// The event's name with the part of its payload that decides transitions
    /// (`PgActionFinished(clone, failed)`), for the table and the log.
    pub fn label(&self) -> String {
        let done = |ok: bool| if ok { "done" } else { "failed" };
        match self {
            Event::Cycle => "Cycle".into(),
            Event::InitializeRaced(won) => {
                format!("InitializeRaced({})", if *won { "won" } else { "lost" })
            }
            Event::LeaderAcquired(won) => {
                format!("LeaderAcquired({})", if *won { "won" } else { "lost" })
            }
            Event::PeersProbed => "PeersProbed".into(),
            Event::PgActionFinished(action, outcome) => format!(
                "PgActionFinished({}, {})",
                action.kind(),
                done(matches!(outcome, PgActionOutcome::Done { .. }))
            ),
            Event::SyncWritten { ok, .. } => format!("SyncWritten({})", done(*ok)),
            Event::MustDemote(why) => format!("MustDemote({})", why.code()),
            Event::PolicyDecided(_) => "PolicyDecided".into(),
            Event::WatchdogArmed => "WatchdogArmed".into(),
            Event::FailsafeLost(_) => "FailsafeLost".into(),
            Event::StopOffline => "StopOffline".into(),
            Event::KillOverdueStop(why) => format!("KillOverdueStop({})", why.code()),
            Event::Reinitialize => "Reinitialize".into(),
            Event::Restart(Some(request)) => format!("Restart({request})"),
            Event::Restart(None) => "Restart(scheduled)".into(),
        }
    }
}

/// Where a promotion step runs from: inside the candidate state (the race is updated in
/// place) or from another state (the candidate state is entered with this race).
enum Entry<'a> {
    Within(&'a mut Race),
    From(Race),
}

impl Entry<'_> {
    fn race(&mut self) -> &mut Race {
        match self {
            Entry::Within(race) => race,
            Entry::From(race) => race,
        }
    }
}

/// Stable lower-case name of a state, for status and logs.
pub fn state_name(state: &State) -> &'static str {
    match state {
        State::Starting {} => "starting",
        State::Bootstrapping { .. } => "bootstrapping",
        State::Cloning {} => "cloning",
        State::Rewinding {} => "rewinding",
        State::Demoting {} => "demoting",
        State::Replica {} => "replica",
        State::Candidate { .. } => "candidate",
        State::Primary {} => "primary",
    }
}

impl Agent {
    /// The one way to change state: the target and why (recorded by `after_transition`).
    fn go(&mut self, to: State, why: Why) -> Outcome<State> {
        self.outbox.explain(why);
        Transition(to)
    }

    /// Whether `POST /reinitialize` may go ahead now, or why not (Patroni's messages where
    /// it has one). Only a standby (or a node still deciding how to start) that sees a
    /// leader to clone from and runs no PostgreSQL action is wiped. A running action is
    /// never cancelled, whatever `force` says: a clone or rewind cut short leaves a data
    /// directory nobody can use.
    pub fn reinitialize_verdict(&self) -> Result<(), String> {
        let leader = self.facts.view.as_ref().and_then(|v| v.leader.as_ref());
        // The key may name us on an old lease (an agent restarted beside its primary).
        if self.holds_leader_key()
            || self.report.state_name == "primary"
            || leader.is_some_and(|l| l.name == self.settings.name)
        {
            return Err("I am the leader, can not reinitialize".into());
        }
        if leader.is_none() {
            return Err("Cluster has no leader, can not reinitialize".into());
        }
        // A data directory of another cluster (a misconfigured node) is not ours to wipe:
        // the agent refuses to run on it, and so does this.
        let cluster_sysid = self
            .facts
            .view
            .as_ref()
            .and_then(|v| v.initialize.as_deref())
            .filter(|s| !s.is_empty());
        if let (Some(DataDir::Initialized { sysid, .. }), Some(cluster)) =
            (self.facts.pg.as_ref().map(|p| &p.data_dir), cluster_sysid)
        {
            if sysid != cluster {
                return Err(format!(
                    "the data directory belongs to another cluster (system identifier {sysid}, the cluster's {cluster}), can not reinitialize"
                ));
            }
        }
        if let Some(action) = &self.postgres.action {
            return Err(format!("{} already in progress", action.kind()));
        }
        if !matches!(self.report.state_name, "starting" | "replica") {
            return Err(format!(
                "the node is {}, can not reinitialize",
                self.report.state_name
            ));
        }
        if self
            .leader_upstream()
            .is_none_or(|u| u.name == self.settings.name)
        {
            return Err("the leader's member key is not visible yet, can not reinitialize".into());
        }
        Ok(())
    }

    /// Wipe the data directory and clone from the leader (accepted `POST /reinitialize`).
    fn start_reinitialize(&mut self) -> Outcome<State> {
        let Some(from) = self
            .leader_upstream()
            .filter(|u| u.name != self.settings.name)
        else {
            return Handled; // the verdict checked this; nothing to clone from any more
        };
        let why = Why::ReinitializeRequested {
            from: from.name.clone(),
        };
        self.start_pg(PgAction::Reinitialize { from });
        self.go(State::cloning(), why)
    }

    /// Stop PostgreSQL and start it again in the role it has (accepted `POST /restart`).
    /// The node stays in its state: a primary keeps its key and lease meanwhile, as in
    /// Patroni, and the cycles wait for the action.
    fn start_restart(&mut self, request: Option<u64>) -> Outcome<State> {
        let Some(pg) = self
            .facts
            .pg
            .as_ref()
            .filter(|_| self.postgres.action.is_none())
        else {
            return Handled; // the verdict checked this
        };
        let start = if pg.is_primary() {
            self.start_primary_action()
        } else {
            PgAction::StartReplica {
                upstream: self
                    .leader_upstream()
                    .filter(|u| u.name != self.settings.name),
            }
        };
        self.start_pg(PgAction::Restart {
            start: Box::new(start),
            request,
        });
        Handled
    }

    fn decide_start(&mut self) -> Outcome<State> {
        if let Some(stop) = self.stop_primary_without_store() {
            return stop;
        }
        if self.found_unresponsive_primary() && !self.paused() {
            // An agent (re)started beside a primary that accepts no connection: nothing
            // else will ever stop it, and its sessions may still commit.
            return self.stop_unresponsive_primary();
        }
        let (Some(pg), Some(view)) = (self.facts.pg.clone(), self.facts.view.clone()) else {
            return Handled;
        };
        if self.postgres.action.is_some() {
            return Handled;
        }
        if !self.paused() {
            // Resumed: the ordinary rules below decide how it rejoins.
            self.postgres.rejoin_after_handover = false;
        }
        if self.paused() && !pg.is_running() {
            // Maintenance mode: the agent starts, clones, rewinds and bootstraps nothing,
            // but a primary it stopped for the operator's switchover starts again as a
            // standby (Patroni's demote does), and only that.
            return match self.postgres.rejoin_after_handover {
                true => self.rejoin_after_paused_handover(&pg, &view),
                false => Handled,
            };
        }
        match &pg.data_dir {
            DataDir::Unreadable(error) => {
                self.postgres.last_error = Some(format!("data directory unreadable: {error}"));
                Handled // never bootstrap or clone over something we could not read
            }
            DataDir::Empty => {
                if view.initialize.is_none() {
                    if self.my_failover_priority() <= 0 {
                        return Handled; // nofailover members never bootstrap a cluster
                    }
                    if self.settings.custom_bootstrap_method.is_some() {
                        // Refused at start with a warning: wait for a leader to clone from.
                        return Handled;
                    }
                    self.outbox.push(Effect::RaceInitialize);
                    return self.go(
                        State::bootstrapping(BootstrapRun::default()),
                        Why::NoClusterYet,
                    );
                }
                let facts = super::initialize::InitializeFacts::of(&view);
                let ttl = std::time::Duration::from_secs(self.facts.config.ttl.into());
                if let Some(mod_revision) =
                    self.orphaned_initialize.observe(facts, self.facts.now, ttl)
                {
                    self.outbox.push(Effect::ClearStaleInitialize {
                        mod_revision,
                        orphaned_for: self.orphaned_initialize.age(self.facts.now).unwrap_or(ttl),
                    });
                }
                match self.leader_upstream() {
                    Some(from) if from.name != self.settings.name => {
                        self.start_pg(PgAction::Clone { from });
                        self.go(State::cloning(), Why::CloneEmptyDataDirectory)
                    }
                    _ => Handled, // wait for a leader to clone from
                }
            }
            DataDir::Initialized {
                sysid,
                state,
                standby_signal,
                ..
            } => {
                if let Some(init) = view.initialize.as_deref().filter(|s| !s.is_empty()) {
                    if init != sysid {
                        self.outbox.push(Effect::Shutdown {
                            reason: format!(
                                "data directory system identifier {sysid} differs from the cluster's {init}"
                            ),
                        });
                        return Handled;
                    }
                }
                if pg.is_running() {
                    return self.go(State::replica(), Why::AlreadyRunning);
                }
                if pg.postmaster_alive {
                    return Handled; // starting up or shutting down: look again next cycle
                }
                let former_primary = !standby_signal
                    && matches!(
                        state,
                        super::view::ControlState::ShutDown
                            | super::view::ControlState::InProduction
                    );
                let upstream = self
                    .leader_upstream()
                    .filter(|u| u.name != self.settings.name);
                let repairable = self.use_pg_rewind() || self.may_reclone_diverged();
                match upstream {
                    Some(from)
                        if repairable && (former_primary || self.postgres.maybe_diverged) =>
                    {
                        if self.use_pg_rewind() {
                            self.start_pg(PgAction::Rewind { from });
                            self.go(State::rewinding(), Why::RewindFormerPrimary)
                        } else {
                            self.start_pg(PgAction::Reinitialize { from });
                            self.go(State::cloning(), Why::RecloneFormerPrimary)
                        }
                    }
                    upstream => {
                        if former_primary {
                            self.postgres.maybe_diverged = true;
                        }
                        let why = Why::StartStandby {
                            upstream: upstream.as_ref().map(|u| u.name.clone()),
                        };
                        self.start_pg(PgAction::StartReplica { upstream });
                        self.go(State::replica(), why)
                    }
                }
            }
        }
    }

    /// Paused, the former leader stopped for the operator's switchover starts as a standby of
    /// the new leader (or of none yet): no rewind, no fresh clone, no bootstrap while paused
    /// (a clean switchover leaves nothing to rewind; after the resume the usual checks run).
    fn rejoin_after_paused_handover(
        &mut self,
        pg: &PgObservation,
        view: &ClusterView,
    ) -> Outcome<State> {
        let DataDir::Initialized { sysid, .. } = &pg.data_dir else {
            return Handled;
        };
        let other_cluster = view
            .initialize
            .as_deref()
            .is_some_and(|init| !init.is_empty() && init != sysid);
        if pg.postmaster_alive || other_cluster {
            return Handled;
        }
        // Rewound or not, it was a primary: divergence is checked once it follows.
        self.postgres.maybe_diverged = true;
        let upstream = self
            .leader_upstream()
            .filter(|u| u.name != self.settings.name);
        let why = Why::StartStandby {
            upstream: upstream.as_ref().map(|u| u.name.clone()),
        };
        self.start_pg(PgAction::StartReplica { upstream });
        self.go(State::replica(), why)
    }

    /// An agent that (re)started and cannot reach the lock store holds no lease, so nothing
    /// says that the PostgreSQL it found running as primary is still the leader: another
    /// member may have been promoted meanwhile, or be any moment (the old agent's lease ends
    /// at a time nobody here knows). It is killed at once, the key left alone (Patroni stops
    /// `offline`, fast, which can take as long as a checkpoint).
    fn stop_primary_without_store(&mut self) -> Option<Outcome<State>> {
        let primary = self.facts.pg.as_ref().is_some_and(|p| p.is_primary());
        if self.facts.view.is_some()
            || self.facts.dcs_error.is_none()
            || !primary
            || self.lease_allows_primary()
            || self.postgres.action.is_some()
        {
            return None;
        }
        self.start_pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock,
        });
        Some(self.go(State::demoting(), Why::PrimaryWithoutStore))
    }

    fn decide_replica(&mut self) -> Outcome<State> {
        let (Some(pg), Some(view)) = (self.facts.pg.clone(), self.facts.view.clone()) else {
            return Handled;
        };
        if self.postgres.action.is_some() {
            return Handled;
        }
        if !pg.is_running() {
            if pg.postmaster_alive {
                return Handled;
            }
            return self.go(State::starting(), Why::PostgresNotRunning);
        }
        let me = self.settings.name.clone();
        let leader = view.leader.clone();
        if pg.is_primary() {
            return match leader {
                Some(l) if l.name == me && self.holds_leader_key() => {
                    self.go(State::primary(), Why::PrimaryHoldingKey)
                }
                // Maintenance mode: the operator's primary runs on (Patroni too).
                Some(l) if l.name != me && self.paused() => Handled,
                Some(l) if l.name != me => {
                    self.start_pg(PgAction::Demote {
                        mode: DemoteMode::ImmediateNolock,
                    });
                    self.go(State::demoting(), Why::OtherHoldsKey { leader: l.name })
                }
                // A running primary takes a free key (back), paused or not.
                _ => self.start_race(),
            };
        }
        match leader {
            Some(l) if l.name != me => {
                let Some(upstream) = self.leader_upstream() else {
                    return Handled; // leader's member key not visible yet
                };
                let definite = self.diverged_from_history();
                let diverged = match definite.clone() {
                    Some(why) => Some(why),
                    None if self.postgres.maybe_diverged => {
                        Some("data may have diverged from the new leader".to_string())
                    }
                    None => None,
                };
                if let Some(detail) = diverged.filter(|_| !self.paused()) {
                    if self.use_pg_rewind() {
                        self.start_pg(PgAction::Rewind { from: upstream });
                        return self.go(State::rewinding(), Why::DivergedRewind { detail });
                    }
                    if self.may_reclone_diverged() {
                        self.start_pg(PgAction::Reinitialize { from: upstream });
                        return self.go(State::cloning(), Why::DivergedReclone { detail });
                    }
                    // Neither pg_rewind nor removing the data directory is allowed: the data
                    // is kept (Patroni too); a standby that did diverge cannot stream and
                    // waits for the operator's reinitialize.
                    if definite.is_some() {
                        self.note_divergence_kept(&detail);
                    }
                }
                if self.postgres.following.as_ref() != Some(&upstream) {
                    self.start_pg(PgAction::Follow { upstream });
                }
                self.reload_if_outdated();
                Handled
            }
            Some(_)
                if self.holds_leader_key() && self.paused() && !self.paused_handover_to_me() =>
            {
                // Maintenance mode: a leader whose PostgreSQL is a standby is no leader.
                self.release_leader_key();
                Handled
            }
            Some(_) if self.holds_leader_key() => {
                // Our key with our lease while PostgreSQL is a standby: finish the promotion.
                self.promote_after_acquire(Entry::From(Race::with_key()))
            }
            Some(_) => Handled, // our name on an old lease: wait for it to expire
            None if self.paused() && !self.paused_handover_to_me() => {
                self.report.last_race_refusal =
                    Some("maintenance mode: no automatic failover".into());
                Handled
            }
            None if self
                .leadership
                .race_backoff_until
                .is_some_and(|until| self.facts.now < until) =>
            {
                self.report.last_race_refusal = Some(
                    "the pre_promote script refused this node's promotion less than ttl ago".into(),
                );
                Handled
            }
            None => self.start_race(),
        }
    }

    fn start_race(&mut self) -> Outcome<State> {
        // The gate first: probing peers and asking the policy is pointless when no answer
        // could be acted on, and a writable primary that may not lead must stop now.
        if let Err(rule) = self.check_race_allowed() {
            if let Some(stop) = self.stop_primary_that_may_not_lead(&rule.to_string()) {
                return stop;
            }
            self.report.last_race_refusal = Some(rule.to_string());
            return Handled;
        }
        let members = self.peer_api_urls();
        self.outbox.push(Effect::ProbePeers { members });
        self.go(State::candidate(Race::default()), Why::LeaderKeyFree)
    }

    /// Without the key a writable PostgreSQL must stop at once, whatever a policy prefers:
    /// the demotion to start when ours is a primary, `None` otherwise.
    fn stop_primary_that_may_not_lead(&mut self, why: &str) -> Option<Outcome<State>> {
        if !self.facts.pg.as_ref().is_some_and(|p| p.is_primary()) || self.paused() {
            return None;
        }
        self.start_pg(PgAction::Demote {
            mode: DemoteMode::ImmediateNolock,
        });
        let detail = why.to_string();
        Some(self.go(State::demoting(), Why::MayNotLead { detail }))
    }

    /// Act on the policy's election answer, through the gate.
    fn decide_election(
        &mut self,
        race: &mut Race,
        answer: &pgwarden_policy::Race,
    ) -> Outcome<State> {
        let answers = self.peer_positions();
        let standby = !self.facts.pg.as_ref().is_some_and(|p| p.is_primary());
        let refusal = match answer {
            // Paused while the race was on: only a running primary takes the key.
            _ if self.paused() && standby && !self.paused_handover_to_me() => {
                Some("maintenance mode: no automatic failover".to_string())
            }
            pgwarden_policy::Race::Race => match self.check_race_with_votes(Some(&answers)) {
                Ok(()) => {
                    self.policy.gate.accept("race");
                    race.votes_won = true;
                    None
                }
                Err(rule) => {
                    let detail = rule.to_string();
                    self.policy.gate.reject(
                        &self.settings.name,
                        "race",
                        rule.name(),
                        detail.clone(),
                    );
                    Some(format!("refused by the invariant gate: {detail}"))
                }
            },
            pgwarden_policy::Race::StandDown(why) => Some(format!("policy: {why}")),
            pgwarden_policy::Race::Wait(wait) => {
                let ttl = std::time::Duration::from_secs(self.facts.config.ttl.into());
                let delay = std::time::Duration::from_millis(wait.delay_ms).min(ttl);
                self.policy.wake_at = Some(self.facts.now + delay);
                Some(format!(
                    "policy waits {} ms: {}",
                    delay.as_millis(),
                    wait.reason
                ))
            }
        };
        if let Some(why) = refusal {
            self.report.last_race_refusal = Some(why.clone());
            if let Some(stop) = self.stop_primary_that_may_not_lead(&why) {
                return stop;
            }
            return self.go(State::replica(), Why::NotRacing { detail: why });
        }
        // The gate refused above if another member holds the key.
        // The key is free, or still ours from a previous run of the agent (our old lease):
        // the acquisition moves it onto the current lease (Patroni does too).
        match self.leadership.lease.id {
            Some(lease) => {
                self.outbox.push(Effect::AcquireLeader { lease });
                race.phase = Phase::Acquiring;
                Handled
            }
            // Without a lease the deadline has passed: `enforce_deadline` abandons a
            // candidate's race first, so this is only a guard.
            None => self.go(
                State::replica(),
                Why::RaceAbandoned {
                    lost: Box::new(Why::DeadlinePassed),
                },
            ),
        }
    }

    /// An election the policy has not answered within `ttl` is abandoned.
    fn check_election_deadline(&mut self, race: &Race) -> Outcome<State> {
        if race.election_overdue(self.facts.now, self.ttl()) {
            self.go(State::replica(), Why::PolicyDidNotAnswer)
        } else {
            Handled
        }
    }

    /// A policy may stop the local primary earlier than the host would (never later: the
    /// host's own deadline does not wait for it).
    fn apply_fence(&mut self, fence: &pgwarden_policy::Fence) -> Outcome<State> {
        let (mode, why) = match fence {
            pgwarden_policy::Fence::None => return Handled,
            pgwarden_policy::Fence::Demote(why) => (DemoteMode::Graceful, why),
            pgwarden_policy::Fence::Fence(why) => (DemoteMode::Immediate, why),
        };
        let handover = self.paused_handover_from_me();
        if self.postgres.action.is_some() || (self.paused() && !handover) {
            // An action is running (the next answer will ask again), or maintenance mode:
            // the operator's primary is not stopped by a policy either, except to hand over
            // to the candidate the operator named.
            return Handled;
        }
        if handover {
            self.postgres.rejoin_after_handover = true;
        }
        self.start_pg(PgAction::Demote { mode });
        let detail = why.clone();
        self.go(State::demoting(), Why::PolicyFence { detail })
    }

    /// The key is ours: arm the watchdog, claim `/sync`, promote, each step once the one
    /// before is done, through the gate each time. Called again as each step finishes.
    fn promote_after_acquire(&mut self, mut entry: Entry<'_>) -> Outcome<State> {
        if self.promote_in_flight() {
            return Handled; // its outcome decides; releasing the key now would orphan it
        }
        let running_primary = self.facts.pg.as_ref().is_some_and(|p| p.is_primary());
        if self.paused() && !running_primary && !self.paused_handover_to_me() {
            // Paused while this standby's race was on: nothing is promoted (only a running
            // primary takes the key in maintenance mode, or the operator's candidate).
            self.release_leader_key();
            let detail = "maintenance mode: no automatic failover".to_string();
            return self.go(State::replica(), Why::NotRacing { detail });
        }
        let permit = match self.check_promotion_allowed(entry.race().votes_won) {
            Ok(permit) => {
                self.policy.gate.accept("promote");
                permit
            }
            Err(rule) => {
                self.policy
                    .gate
                    .refuse_promotion(rule.name(), rule.to_string());
                self.release_leader_key();
                let rule = rule.to_string();
                return self.go(State::replica(), Why::PromotionRefused { rule });
            }
        };
        // The watchdog first: a `required` node that cannot arm it must not claim `/sync`
        // for itself (only it could then be promoted) nor become writable. Maintenance mode
        // runs without it (only a running primary, above, gets this far then).
        let gate = if self.paused() {
            WatchdogGate::Ready
        } else {
            self.watchdog_gate()
        };
        match gate {
            WatchdogGate::Ready => {}
            WatchdogGate::Arming => {
                return self.stay_candidate(entry, Phase::ArmingWatchdog, Why::ArmingWatchdog);
            }
            WatchdogGate::Refused(why) => {
                self.report.last_race_refusal = Some(why.clone());
                if self.facts.pg.as_ref().is_some_and(|p| p.is_primary()) {
                    // Demoting releases the key once PostgreSQL is down.
                    self.start_pg(PgAction::Demote {
                        mode: DemoteMode::Immediate,
                    });
                    return self.go(State::demoting(), Why::WatchdogUnusable { detail: why });
                }
                self.release_leader_key();
                return self.go(
                    State::replica(),
                    Why::WatchdogRefusedPromotion { detail: why },
                );
            }
        }
        if let Some((state, expected_revision)) = self.presync_claim(entry.race().sync_claimed) {
            // Synchronous mode: record ourselves as the leader in /sync, with no standby,
            // before PostgreSQL can acknowledge a commit alone. Until a new standby is
            // confirmed only we may be promoted, so nothing we acknowledge can be lost.
            let claim = self.write_sync(state, expected_revision);
            let Effect::WriteSync { seq, .. } = &claim else {
                unreachable!("write_sync returns a WriteSync");
            };
            let phase = Phase::ClaimingSync { seq: *seq };
            self.outbox.push(claim);
            return self.stay_candidate(entry, phase, Why::ClaimingSync);
        }
        let already_primary = self.facts.pg.as_ref().is_some_and(|p| p.is_primary());
        if already_primary {
            return self.go(State::primary(), Why::KeyTakenAlreadyPrimary);
        }
        self.start_pg(self.promote_action(permit));
        self.stay_candidate(entry, Phase::Promoting, Why::Promoting)
    }

    /// Moves the race to `phase`: in place when already a candidate, else by entering the
    /// candidate state with it (`why` says so).
    fn stay_candidate(&mut self, entry: Entry<'_>, phase: Phase, why: Why) -> Outcome<State> {
        match entry {
            Entry::Within(race) => {
                race.phase = phase;
                Handled
            }
            Entry::From(mut race) => {
                race.phase = phase;
                self.go(State::candidate(race), why)
            }
        }
    }

    /// PostgreSQL was last a primary (pg_control says in production, no standby signal), its
    /// postmaster is alive and it answers no connection, and no action of ours is running.
    /// A standby in a long recovery looks the same and is left alone.
    fn found_unresponsive_primary(&mut self) -> bool {
        let Some(pg) = self.facts.pg.as_ref() else {
            return false;
        };
        let was_primary = matches!(
            &pg.data_dir,
            DataDir::Initialized {
                state: super::view::ControlState::InProduction,
                standby_signal: false,
                ..
            }
        );
        was_primary && pg.is_unresponsive() && self.postgres.action.is_none()
    }

    /// The postmaster is alive but accepts no connection (frozen, hung, or recovering for
    /// too long). Its existing sessions may still commit, so the key must not be released
    /// while it runs: after `unresponsive_primary_timeout` it is stopped (immediate, then
    /// SIGKILL of the postmaster and its children), and the demotion releases the key only
    /// once it is down.
    ///
    /// The clock (`unresponsive_since`) is kept by the probe handler: only silent probes
    /// count, an answer with an error (too many clients, authentication, starting up) stops
    /// it, as killing a primary for being full would fail over for nothing.
    fn stop_unresponsive_primary(&mut self) -> Outcome<State> {
        if !self.unresponsive_too_long() {
            return Handled;
        }
        let silent = self
            .postgres
            .unresponsive_since
            .map_or(std::time::Duration::ZERO, |since| {
                self.facts.now.saturating_since(since)
            });
        self.postgres.unresponsive_since = None;
        // With the key, it is released once PostgreSQL is down; without it there is
        // nothing to wait for and the kill goes out at once.
        let mode = if self.holds_leader_key() {
            DemoteMode::Immediate
        } else {
            DemoteMode::ImmediateNolock
        };
        self.start_pg(PgAction::Demote { mode });
        let silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX);
        self.go(State::demoting(), Why::PrimaryUnresponsive { silent_ms })
    }

    /// `primary_start_timeout`, as Patroni: a leader whose PostgreSQL has been down or
    /// starting for that long (0: as soon as it is seen down) stops it and releases the key
    /// once it is down, so a healthy standby takes over; when none could, it keeps trying.
    /// Only a dead postmaster, or one our start is bringing up, counts: a running one that
    /// answers with errors (too many clients) is no reason to fail over, and a silent one is
    /// `unresponsive_primary_timeout`'s. An operator's restart is not judged while it runs
    /// (its stop may take a checkpoint's time): the clock starts if its start fails.
    fn give_up_a_primary_that_does_not_start(&mut self) -> Option<Outcome<State>> {
        if matches!(self.postgres.action, Some(PgAction::Restart { .. })) {
            return None;
        }
        let pg = self.facts.pg.as_ref()?;
        let starting = matches!(self.postgres.action, Some(PgAction::StartPrimary { .. }));
        if pg.is_running() || (pg.postmaster_alive && !starting) {
            self.postgres.primary_down_since = None;
            return None;
        }
        if matches!(self.postgres.action, Some(PgAction::Demote { .. })) {
            return None;
        }
        let now = self.facts.now;
        let since = *self.postgres.primary_down_since.get_or_insert(now);
        let timeout_s = self.facts.config.primary_start_timeout;
        let waited = now.saturating_since(since);
        if waited < std::time::Duration::from_secs(timeout_s.into()) || !self.failover_possible() {
            return None;
        }
        self.start_pg(PgAction::Demote {
            mode: DemoteMode::Immediate,
        });
        Some(self.go(State::demoting(), Why::PrimaryStartTimedOut { timeout_s }))
    }

    fn decide_primary(&mut self) -> Outcome<State> {
        if self.paused() {
            return self.decide_paused_primary();
        }
        // A postmaster silent for too long is stopped whatever else is going on: while it
        // runs, the sessions it already forked may commit, and no key or failsafe round
        // should keep such a primary in place.
        if self.postgres.action.is_none()
            && self.facts.pg.as_ref().is_some_and(|p| p.is_unresponsive())
        {
            if let outcome @ Transition(_) = self.stop_unresponsive_primary() {
                return outcome;
            }
        }
        if !self.holds_leader_key() {
            if self.failsafe_may_retake_key() {
                // The lease expired during the outage; the members we asked do not race.
                if let Some(lease) = self.leadership.lease.id {
                    self.outbox.push(Effect::AcquireLeader { lease });
                }
                return Handled;
            }
            self.start_pg(PgAction::Demote {
                mode: DemoteMode::ImmediateNolock,
            });
            return self.go(State::demoting(), Why::KeyLost);
        }
        if !self.may_stay_primary() {
            self.start_pg(PgAction::Demote {
                mode: DemoteMode::ImmediateNolock,
            });
            return self.go(State::demoting(), Why::DeadlinePassed);
        }
        if let Some(stop) = self.give_up_a_primary_that_does_not_start() {
            return stop;
        }
        if self.facts.dcs_error.is_none() {
            if let Some(members) = self.failsafe_write_due() {
                self.failsafe.written = Some((members.clone(), self.facts.now));
                self.outbox.push(Effect::WriteFailsafe { members });
            }
        }
        match self.watchdog_gate() {
            WatchdogGate::Ready => {}
            WatchdogGate::Arming => return Handled,
            WatchdogGate::Refused(why) => {
                if self.postgres.action.is_some() {
                    return Handled;
                }
                self.start_pg(PgAction::Demote {
                    mode: DemoteMode::Immediate,
                });
                return self.go(State::demoting(), Why::WatchdogUnusable { detail: why });
            }
        }
        self.tidy_failover_key();
        let Some(pg) = self.facts.pg.clone() else {
            return Handled;
        };
        if self.postgres.action.is_some() {
            return Handled;
        }
        let Some(server) = pg.server.clone() else {
            if !pg.postmaster_alive {
                let start = self.start_primary_action();
                self.start_pg(start);
                return Handled;
            }
            return self.stop_unresponsive_primary();
        };
        if server.in_recovery {
            // A primary has no election of its own: `/sync` names it (claimed before it was
            // promoted), so no quorum votes are needed to finish a promotion.
            if let Ok(permit) = self.check_promotion_allowed(false) {
                self.policy.gate.accept("promote");
                self.start_pg(self.promote_action(permit));
            }
            return Handled;
        }
        self.run_primary_duties(&server);
        if self.sync_converging(&server) {
            // Standbys reconnect to a new primary within a second or two; waiting a whole
            // loop_wait to notice would stretch the window without a synchronous copy.
            let loop_wait = std::time::Duration::from_secs(self.facts.config.loop_wait.into());
            let soon = self.facts.now + loop_wait.min(SYNC_POLL);
            self.policy.wake_at = Some(self.policy.wake_at.map_or(soon, |w| w.min(soon)));
        }
        Handled
    }

    /// A primary's WAL position to `/status` (once per change) and a new timeline to
    /// `/history` (until the view shows it).
    fn publish_position(&mut self, server: &super::view::ServerObservation) {
        if self.published.optime != Some(server.wal_position) {
            self.published.optime = Some(server.wal_position);
            self.outbox.push(Effect::WriteStatus {
                optime: server.wal_position,
            });
        }
        let cluster_timeline = self
            .facts
            .view
            .as_ref()
            .and_then(|v| v.timeline())
            .unwrap_or_default();
        if server.timeline.0 > 1
            && server.timeline > cluster_timeline
            && self.history_write_due(server.timeline)
        {
            self.published.history = Some((server.timeline, self.facts.now));
            let known = self
                .facts
                .view
                .as_ref()
                .map(|v| v.history.clone())
                .unwrap_or_default();
            self.outbox.push(Effect::UpdateHistory {
                timeline: server.timeline,
                known,
                keep_last: self.facts.config.max_timelines_history,
            });
        }
    }

    /// Maintenance mode: the key is kept while PostgreSQL runs as primary, and nothing is
    /// taken into the agent's hands: no demotion (deadline, lost key, unresponsive
    /// postmaster, policy), no start, no promotion, no watchdog. What a primary publishes
    /// (`/status`, `/history`, `/sync` and its standbys) goes on, as in Patroni.
    fn decide_paused_primary(&mut self) -> Outcome<State> {
        self.disarm_watchdog("maintenance mode");
        let Some(pg) = self.facts.pg.clone() else {
            return Handled;
        };
        if self.postgres.action.is_some() {
            return Handled;
        }
        let Some(server) = pg.server.clone() else {
            if pg.postmaster_alive {
                return Handled; // starting, stopping or frozen: the operator's to judge
            }
            if self.holds_leader_key() {
                self.release_leader_key();
            }
            return self.go(State::starting(), Why::PausedLeaderDown);
        };
        if server.in_recovery {
            if self.holds_leader_key() {
                self.release_leader_key();
            }
            return self.go(State::replica(), Why::PausedLeaderNotPrimary);
        }
        if !self.holds_leader_key() {
            // The first running primary takes a free key (Patroni too); a key another
            // member holds is left alone, and so is this primary.
            if let (None, Some(lease)) = (self.view_leader(), self.leadership.lease.id) {
                self.outbox.push(Effect::AcquireLeader { lease });
            }
            return Handled;
        }
        self.run_primary_duties(&server);
        Handled
    }

    /// What a leader does every cycle, paused or not: publish its position and timeline,
    /// and keep `/sync` and its synchronous standbys (and slots) up to date.
    fn run_primary_duties(&mut self, server: &super::view::ServerObservation) {
        self.publish_position(server);
        // The LSN a new synchronous standby must have flushed before it is recorded in
        // /sync: taken once PostgreSQL shows the configured set, after the change.
        let configured = crate::core::sync::parse_standby_names(&server.synchronous_standby_names);
        if self.sync.barrier.is_none() && !configured.is_empty() {
            self.sync.barrier = Some(server.wal_position);
        }
        if let Some(effect) = self.next_sync_record(server) {
            self.outbox.push(effect);
        }
        // The reload first: a step that keeps failing (a slot PostgreSQL refuses) must not
        // hold a configuration change back for ever.
        self.reload_if_outdated();
        if self.postgres.action.is_none() {
            if let Some(step) = self.next_pg_step_for_primary(server) {
                self.start_pg(step);
            }
        }
    }
}
