//! One turn of the agent's loop around the core: feed it an input (or wake it), publish what
//! it now says, and hand its effects to the executor. The order is the contract: the
//! transitions are logged and the status snapshot and fencing token published before any
//! effect runs (the PostgreSQL worker checks a promote against that token, member keys are
//! built from that status), and a recorded input carries exactly the effects it caused.
//!
//! Each handled input (and each wake with a timer due) is a span, `pgwarden.input`, linked
//! to the effect whose result it is (see `inbox`) and carrying the facts every node shares
//! about a failover (scope, leader, the leader key's revision and lease, timeline), so one
//! query finds a failover's spans on every node. Its children: the gate's verdicts
//! (`pgwarden.gate`), the transitions (`pgwarden.transition`: from, to, the `Why` code and
//! text) and the effects (`pg.promote`, `dcs.lease.renew`, ...), which last as long as the
//! work they start, on whichever task carries it out; a policy call's decision is a child
//! of its effect (`runtime::policy`). With `telemetry:` set they are exported as
//! OpenTelemetry spans; the decision log (`telemetry::decisions`) is built from them.

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
    /// The cluster's scope, a span attribute.
    pub scope: String,
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
    /// Feeds `input`, observed now; `cause` is the span of the effect it reports on.
    pub fn feed(&mut self, input: Input, cause: Option<tracing::Span>) {
        let now = clock::now();
        if let Some(log) = self.input_log.as_mut() {
            log.input(now, &input);
        }
        let kind = input.kind();
        let span = self.input_span(kind, None);
        if let Some(cause) = &cause {
            span.follows_from(cause);
        }
        crate::telemetry::stamp_trace_ids(&span);
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
            let span = self.input_span("timer", Some(due.join(",")));
            crate::telemetry::stamp_trace_ids(&span);
            self.current = Some(span);
        }
    }

    /// The span of one input; the facts after it was handled are recorded in `publish`.
    fn input_span(&self, kind: &'static str, timers: Option<String>) -> tracing::Span {
        tracing::info_span!(
            "pgwarden.input",
            otel.name = format!("input {kind}"),
            pgwarden.input = kind,
            pgwarden.timers = timers,
            pgwarden.member = %self.name,
            pgwarden.scope = %self.scope,
            pgwarden.state = tracing::field::Empty,
            pgwarden.leader = tracing::field::Empty,
            pgwarden.leader.revision = tracing::field::Empty,
            pgwarden.leader.lease = tracing::field::Empty,
            pgwarden.timeline = tracing::field::Empty,
            pgwarden.view.revision = tracing::field::Empty,
            pgwarden.trace_id = tracing::field::Empty,
            pgwarden.span_id = tracing::field::Empty,
        )
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
        self.log_gate_verdicts();
        self.log_transitions();
        self.publish(&input_span);
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
            let name = effect.name();
            let span = tracing::info_span!(
                "pgwarden.effect",
                otel.name = %name,
                pgwarden.effect = %name,
                pgwarden.routine = effect.is_routine(),
                pgwarden.outcome = tracing::field::Empty,
            );
            span.in_scope(|| executor.dispatch(effect));
        }
        if let Some(log) = self.input_log.as_mut() {
            log.flush();
        }
        stop
    }

    /// The gate's verdicts on the input: spans of their own (closed at once), children of
    /// the input's.
    fn log_gate_verdicts(&mut self) {
        for verdict in self.node.take_gate_verdicts() {
            let (outcome, rule, detail) = match &verdict.refused {
                None => ("accepted", None, None),
                Some((rule, detail)) => ("refused", Some(*rule), Some(detail.as_str())),
            };
            tracing::debug!(decision = verdict.decision, outcome, rule, "invariant gate");
            let _ = tracing::info_span!(
                "pgwarden.gate",
                otel.name = format!("gate {}", verdict.decision),
                pgwarden.gate.decision = verdict.decision,
                pgwarden.gate.outcome = outcome,
                pgwarden.gate.rule = rule,
                pgwarden.gate.detail = detail,
            );
        }
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

    /// The status snapshot, the fencing token, the policy selection and the role history;
    /// the facts shared by every node's spans about the same failover go on `input_span`.
    fn publish(&mut self, input_span: &tracing::Span) {
        let status = self.node.status();
        record_shared_facts(input_span, &status);
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

/// The facts every node's input spans share about one failover: the leader key's holder,
/// revision and lease (ours once we hold it, before the watch shows it), the timeline, and
/// the lock store revision of the view the decision was made on.
fn record_shared_facts(span: &tracing::Span, status: &NodeStatus) {
    if span.is_disabled() {
        return;
    }
    span.record("pgwarden.state", status.state);
    let view = status.view.as_ref();
    let leader = view.and_then(|v| v.leader.as_ref());
    if status.holds_leader_key {
        span.record("pgwarden.leader", status.name.as_str());
        if let Some(revision) = status.leader_revision {
            span.record("pgwarden.leader.revision", revision.0);
        }
        if let Some(lease) = status.lease {
            span.record("pgwarden.leader.lease", format!("{:x}", lease.0));
        }
    } else if let Some(leader) = leader {
        span.record("pgwarden.leader", leader.name.as_str());
        span.record("pgwarden.leader.revision", leader.create_revision.0);
        span.record("pgwarden.leader.lease", format!("{:x}", leader.lease));
    }
    let timeline = status
        .pg
        .as_ref()
        .and_then(|p| p.timeline())
        .or_else(|| view.and_then(|v| v.timeline()));
    if let Some(timeline) = timeline {
        span.record("pgwarden.timeline", timeline.0);
    }
    if let Some(view) = view {
        span.record("pgwarden.view.revision", view.revision.0);
    }
}
