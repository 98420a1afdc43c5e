//! One turn of the agent's loop around the core: feed it an input (or wake it), publish what
//! it now says, and hand its effects to the executor. The order is the contract: the
//! transitions are logged and the status snapshot and fencing token published before any
//! effect runs (the PostgreSQL worker checks a promote against that token, member keys are
//! built from that status), and a recorded input carries exactly the effects it caused.
//!
//! Each handled input (and each wake with a timer due) is a span, `pgwarden.input`; its
//! transitions are child spans (`pgwarden.transition`: from, to, the `Why` code and text),
//! and so are its effects (`pg.promote`, `dcs.lease.renew`, ...), which last as long as the
//! work they start, on whichever task carries it out. With `telemetry:` set they are
//! exported as OpenTelemetry spans.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::executor::{Executor, Fence};
use super::input_log::InputLog;
use super::policy::PolicyRunner;
use super::role_history::RoleHistory;
use super::{clock, NodeStatus};
use crate::config::ComponentSource;
use crate::core::{Effect, Input, Node};

/// The core and what surrounds each of its steps.
pub struct Turns {
    /// Member name, for the log.
    pub name: String,
    /// The core.
    pub node: Node,
    /// Where the status snapshot goes (REST API, member keys).
    pub status: watch::Sender<Arc<NodeStatus>>,
    /// The fencing token the PostgreSQL worker checks a promote against.
    pub fence: Arc<Mutex<Fence>>,
    /// The policy thread, told when `/config` names other components.
    pub policy: PolicyRunner,
    /// The components last selected (active, shadow).
    pub selected: Option<(ComponentSource, Option<ComponentSource>)>,
    /// `pgwarden.role_history`, when set.
    pub role_history: Option<RoleHistory>,
    /// `pgwarden.input_log`, when set.
    pub input_log: Option<InputLog>,
    /// The span of the input last handled, whose transitions and effects are published next.
    pub current: Option<tracing::Span>,
}

impl Turns {
    /// Feeds `input`, observed now.
    pub fn feed(&mut self, input: Input) {
        let now = clock::now();
        if let Some(log) = self.input_log.as_mut() {
            log.input(now, &input);
        }
        let kind = input.kind();
        let span = tracing::info_span!(
            "pgwarden.input",
            otel.name = format!("input {kind}"),
            pgwarden.input = kind,
            pgwarden.member = %self.name,
        );
        span.in_scope(|| self.node.handle_input(now, input));
        self.current = Some(span);
    }

    /// Wakes the core because its timeout passed (an `Input::Tick` to the core and the log).
    pub fn wake(&mut self) {
        let now = clock::now();
        if let Some(log) = self.input_log.as_mut() {
            log.input(now, &Input::Tick);
        }
        let due = self.node.handle_timeout(now);
        if !due.is_empty() {
            let due: Vec<&str> = due.iter().map(|t| t.name()).collect();
            tracing::debug!(timers = ?due, "timers due");
            // Only a wake with a timer due is a span: the others decide nothing.
            self.current = Some(tracing::info_span!(
                "pgwarden.input",
                otel.name = "input timer",
                pgwarden.input = "timer",
                pgwarden.timers = due.join(","),
                pgwarden.member = %self.name,
            ));
        }
    }

    /// How long to sleep before the core must be woken: at most a second, as tokio's timers
    /// run on the monotonic clock, which stops during a suspend, and a resumed leader must
    /// see its deadline on the boot clock.
    pub fn sleep_for(&self) -> Duration {
        let wake = self
            .node
            .poll_timeout()
            .unwrap_or_else(|| clock::now() + Duration::from_secs(1));
        wake.saturating_since(clock::now())
            .min(Duration::from_secs(1))
    }

    /// Publishes what the last step decided, then runs its effects. Returns why the agent
    /// must stop, when the core said so (`Effect::Shutdown`: nothing after it runs).
    pub fn publish_and_execute(&mut self, executor: &Executor) -> Option<String> {
        let input_span = self.current.take().unwrap_or_else(tracing::Span::none);
        let _input = input_span.enter();
        self.log_transitions();
        self.publish();
        let mut stop = None;
        while let Some(effect) = self.node.poll_effect() {
            tracing::debug!(?effect, "effect");
            if let Some(log) = self.input_log.as_mut() {
                log.effect(&effect);
            }
            if let Effect::Shutdown { reason } = effect {
                stop = Some(reason);
                break;
            }
            let name = effect_span_name(&effect);
            let span = tracing::info_span!(
                "pgwarden.effect",
                otel.name = %name,
                pgwarden.effect = %name,
                pgwarden.outcome = tracing::field::Empty,
            );
            span.in_scope(|| executor.dispatch(effect));
        }
        if let Some(log) = self.input_log.as_mut() {
            log.flush();
        }
        stop
    }

    fn log_transitions(&mut self) {
        for t in self.node.take_transitions() {
            if let Some(log) = self.input_log.as_mut() {
                log.transition(&t);
            }
            tracing::info!(
                node = %self.name, from = t.from, to = t.to, event = %t.event, why = t.why.code(),
                "state transition: {}", t.why
            );
            // A span of its own (closed at once): traces show each transition as a child of
            // the input that caused it, with its code and text.
            let _ = tracing::info_span!(
                "pgwarden.transition",
                otel.name = format!("{} -> {}", t.from, t.to),
                pgwarden.from = t.from,
                pgwarden.to = t.to,
                pgwarden.why = t.why.code(),
                pgwarden.reason = %t.why,
                pgwarden.event = %t.event,
            );
        }
    }

    /// The status snapshot, the fencing token, the policy selection and the role history.
    fn publish(&mut self) {
        let status = self.node.status();
        let sources = status
            .config
            .policy
            .as_ref()
            .map(|p| (p.active.clone(), p.shadow.clone()));
        if sources != self.selected {
            // `/config` names other components (or none): hot reload on the policy thread.
            // Parameters alone reach the policy through its view, without a reload.
            self.selected = sources;
            self.policy.select(status.config.policy.clone());
        }
        if let Ok(mut f) = self.fence.lock() {
            *f = Fence {
                lease: status.lease,
                leader_revision: status.leader_revision,
                deadline: status.lease_deadline,
                leading: status.state == "primary",
            };
        }
        if let Some(history) = self.role_history.as_mut() {
            history.record(&status);
        }
        let _ = self.status.send(Arc::new(status));
    }
}

/// The span name of an effect: what it does, where (`pg.promote`, `dcs.lease.renew`).
fn effect_span_name(effect: &Effect) -> String {
    let name = match effect {
        Effect::Pg(action) => return format!("pg.{}", action.kind()),
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
    name.to_string()
}
