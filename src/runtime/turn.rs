//! One turn of the agent's loop around the core: feed it an input (or wake it), publish what
//! it now says, and hand its effects to the executor. The order is the contract: the
//! transitions are logged and the status snapshot and fencing token published before any
//! effect runs (the PostgreSQL worker checks a promote against that token, member keys are
//! built from that status), and a recorded input carries exactly the effects it caused.

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
}

impl Turns {
    /// Feeds `input`, observed now.
    pub fn feed(&mut self, input: Input) {
        let now = clock::now();
        if let Some(log) = self.input_log.as_mut() {
            log.input(now, &input);
        }
        self.node.handle_input(now, input);
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
            executor.dispatch(effect);
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
