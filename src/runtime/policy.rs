//! Runs policy calls off the event loop. One dedicated thread owns the policy host (wasmtime
//! stores are not shared between threads); the loop only hands it jobs (calls, and the
//! cluster-wide policy selection when `/config` changes) and receives the answers as inputs.
//! A call not answered within the deadline is answered by the native default policy, so
//! neither a stuck guest nor a slow host can hold the agent.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::config::{ClusterPolicy, ComponentSource, LocalPolicyConfig};
use crate::core::{decide_with_default, Input, PolicyAnswer, PolicyCall};
use crate::policy::{
    LoadedPolicy, PolicyCounters, PolicyEngine, PolicyHost, PolicyInfo, PolicyLoadError,
    TraceWriter,
};

/// What the REST API shows of the policy thread.
#[derive(Clone, Debug, Default)]
pub struct PolicyRuntimeStatus {
    /// The active policy.
    pub active: Option<PolicyInfo>,
    /// The shadow policy.
    pub shadow: Option<PolicyInfo>,
    /// The host's counters.
    pub counters: PolicyCounters,
    /// Components that could not be loaded at runtime (the last good policy kept deciding).
    pub load_failures: u64,
    /// The last such failure.
    pub last_load_error: Option<String>,
}

/// Shared with the REST API.
pub type SharedPolicyStatus = Arc<Mutex<PolicyRuntimeStatus>>;

/// The wasmtime policy host, with the local and cluster-wide policy selection.
pub struct HostDecider {
    host: PolicyHost,
    local: LocalPolicyConfig,
    /// The embedded default, compiled once (selected again whenever nothing else is named).
    embedded: LoadedPolicy,
    status: SharedPolicyStatus,
}

fn load(engine: &PolicyEngine, source: &ComponentSource) -> Result<LoadedPolicy, PolicyLoadError> {
    engine.load_file(&source.path, source.sha256.as_deref())
}

impl HostDecider {
    /// Load the policies the local configuration names (the embedded default when none).
    /// A component that cannot be loaded here refuses the start: it is local configuration.
    pub fn from_local(
        local: &LocalPolicyConfig,
        status: SharedPolicyStatus,
    ) -> anyhow::Result<HostDecider> {
        let engine = PolicyEngine::new(local.limits())?;
        let embedded = engine.embedded_default()?;
        let active = match &local.active {
            Some(source) => {
                load(&engine, source).map_err(|e| anyhow::anyhow!("policy.path: {e}"))?
            }
            None => embedded.clone(),
        };
        let shadow = match &local.shadow {
            Some(source) => {
                Some(load(&engine, source).map_err(|e| anyhow::anyhow!("policy.shadow: {e}"))?)
            }
            None => None,
        };
        let mut host = PolicyHost::new(engine, active);
        host.set_shadow(shadow);
        if let Some(path) = &local.trace_file {
            let writer =
                TraceWriter::append(path).map_err(|e| anyhow::anyhow!("policy.trace_file: {e}"))?;
            host.set_trace(Some(writer));
        }
        let decider = HostDecider {
            host,
            local: local.clone(),
            embedded,
            status,
        };
        decider.publish(None);
        Ok(decider)
    }

    fn publish(&self, load_error: Option<String>) {
        if let Ok(mut status) = self.status.lock() {
            status.active = Some(self.host.active_info().clone());
            status.shadow = self.host.shadow_info().cloned();
            status.counters = self.host.counters();
            if let Some(error) = load_error {
                status.load_failures += 1;
                status.last_load_error = Some(error);
            }
        }
    }

    fn try_select(
        &self,
        cluster: Option<&ClusterPolicy>,
    ) -> Result<(LoadedPolicy, Option<LoadedPolicy>), String> {
        let engine = self.host.engine();
        let (active, shadow) = match cluster {
            Some(c) => (Some(&c.active), c.shadow.as_ref()),
            None => (self.local.active.as_ref(), self.local.shadow.as_ref()),
        };
        let active = match active {
            Some(source) => load(engine, source)
                .map_err(|e| format!("policy {:?} from /config: {e}", source.name))?,
            None => self.embedded.clone(),
        };
        let shadow = match shadow {
            Some(source) => Some(
                load(engine, source)
                    .map_err(|e| format!("shadow policy {:?}: {e}", source.name))?,
            ),
            None => None,
        };
        Ok((active, shadow))
    }
}

impl HostDecider {
    /// Answer one call (the host falls back to the default itself when the policy fails).
    /// A span of its own, `pgwarden.policy`, says who decided what, in how long, with how
    /// much fuel, and whether (and why) the embedded default stood in.
    pub fn decide(&mut self, call: &PolicyCall) -> PolicyAnswer {
        let info = self.host.active_info();
        let span = tracing::info_span!(
            "pgwarden.policy",
            otel.name = "policy.decide",
            pgwarden.policy = %info.name,
            pgwarden.policy.sha256 = %info.sha256,
            pgwarden.policy.event = call.event.kind(),
            pgwarden.policy.purpose = ?call.purpose,
            pgwarden.policy.decision = tracing::field::Empty,
            pgwarden.policy.fuel = tracing::field::Empty,
            pgwarden.policy.latency_us = tracing::field::Empty,
            pgwarden.policy.fallback = tracing::field::Empty,
            pgwarden.policy.shadow_diverged = tracing::field::Empty,
        );
        let _entered = span.enter();
        let verdict = self.host.decide(&call.event, &call.view);
        span.record(
            "pgwarden.policy.decision",
            describe_decision(&verdict.decision),
        );
        span.record(
            "pgwarden.policy.latency_us",
            verdict.elapsed.as_micros() as u64,
        );
        if let Some(fuel) = verdict.fuel_used {
            span.record("pgwarden.policy.fuel", fuel);
        }
        if let Some(error) = verdict.source.error() {
            span.record("pgwarden.policy.fallback", error.to_string());
        }
        if let Some(shadow) = &verdict.shadow {
            span.record("pgwarden.policy.shadow_diverged", shadow.diverged);
        }
        let answer = PolicyAnswer {
            seq: call.seq,
            decision: verdict.decision,
            fallback: verdict.source.error().map(|e| e.to_string()),
            warnings: verdict.warnings,
        };
        if let Ok(mut status) = self.status.lock() {
            status.counters = self.host.counters();
        }
        answer
    }

    /// `/config`'s policy components changed (`None`: removed): select them, or the local
    /// ones; a component that cannot be loaded leaves the last good policy deciding.
    pub fn select(&mut self, cluster: Option<&ClusterPolicy>) {
        match self.try_select(cluster) {
            Ok((active, shadow)) => {
                self.host.set_active(active);
                self.host.set_shadow(shadow);
                self.publish(None);
            }
            Err(error) => {
                tracing::error!(%error, "policy not changed: keeping the last good policy");
                self.publish(Some(error));
            }
        }
    }
}

enum Job {
    /// A call (the span of the effect that asked is in `outstanding`).
    Decide(Box<PolicyCall>),
    Select(Option<ClusterPolicy>),
}

/// Hands jobs to the policy thread and guarantees an answer per call by the deadline.
#[derive(Clone)]
pub struct PolicyRunner {
    jobs: mpsc::Sender<Job>,
    /// Calls not answered yet, with their effect's span: whoever removes a seq first
    /// (thread or timer) answers it. The span lives here, not in the timer's task, so the
    /// effect's span ends with the answer rather than at the deadline.
    outstanding: Arc<Mutex<BTreeMap<u64, tracing::Span>>>,
    inputs: super::inbox::InputSender,
    deadline: Duration,
}

impl PolicyRunner {
    /// Start the policy thread.
    pub fn spawn(
        mut decider: HostDecider,
        inputs: super::inbox::InputSender,
        deadline: Duration,
    ) -> std::io::Result<PolicyRunner> {
        let (jobs, received) = mpsc::channel::<Job>();
        let outstanding = Arc::new(Mutex::new(BTreeMap::new()));
        let runner = PolicyRunner {
            jobs,
            outstanding: outstanding.clone(),
            inputs: inputs.clone(),
            deadline,
        };
        std::thread::Builder::new()
            .name("pgwarden-policy".into())
            .spawn(move || {
                for job in received {
                    match job {
                        Job::Decide(call) => {
                            // Answered at its deadline already (the default decided): the
                            // answer would be thrown away, so the call is not made.
                            let Some(span) = peek(&outstanding, call.seq) else {
                                continue;
                            };
                            let answer = span.in_scope(|| decider.decide(&call));
                            drop(span);
                            match take(&outstanding, call.seq) {
                                Some(effect) => {
                                    let decided = Input::PolicyDecided(answer);
                                    effect.record("pgwarden.outcome", decided.outcome());
                                    let _ = inputs.send_caused(decided, Some(effect));
                                }
                                None => tracing::warn!(
                                    seq = call.seq,
                                    "the policy answered after its deadline; the embedded \
                                     default's answer stands"
                                ),
                            }
                        }
                        Job::Select(cluster) => decider.select(cluster.as_ref()),
                    }
                }
            })?;
        Ok(runner)
    }

    /// Switch to the policies `/config` names (`None`: back to the local selection).
    pub fn select(&self, cluster: Option<ClusterPolicy>) {
        if self.jobs.send(Job::Select(cluster)).is_err() {
            tracing::error!("the policy thread is gone; policy selection ignored");
        }
    }

    /// Submit a call; its answer arrives as `Input::PolicyDecided`.
    pub fn submit(&self, call: Box<PolicyCall>) {
        let seq = call.seq;
        // The effect's span (`policy.consult`): the decision and the answer belong to it.
        let span = tracing::Span::current();
        if let Ok(mut outstanding) = self.outstanding.lock() {
            outstanding.insert(seq, span.clone());
        }
        let backup = call.clone();
        drop(span);
        if self.jobs.send(Job::Decide(call)).is_err() {
            tracing::error!("the policy thread is gone; the embedded default decides");
        }
        let outstanding = self.outstanding.clone();
        let inputs = self.inputs.clone();
        let deadline = self.deadline;
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            if let Some(span) = take(&outstanding, seq) {
                tracing::warn!(
                    seq,
                    event = backup.event.kind(),
                    ?deadline,
                    "policy call missed its deadline; the embedded default decides"
                );
                let mut answer = decide_with_default(&backup);
                answer.fallback = Some(format!(
                    "no answer within the {} ms deadline",
                    deadline.as_millis()
                ));
                let decided = Input::PolicyDecided(answer);
                span.record("pgwarden.outcome", decided.outcome());
                let _ = inputs.send_caused(decided, Some(span));
            }
        });
    }
}

fn peek(outstanding: &Mutex<BTreeMap<u64, tracing::Span>>, seq: u64) -> Option<tracing::Span> {
    outstanding
        .lock()
        .ok()
        .and_then(|calls| calls.get(&seq).cloned())
}

fn take(outstanding: &Mutex<BTreeMap<u64, tracing::Span>>, seq: u64) -> Option<tracing::Span> {
    outstanding
        .lock()
        .ok()
        .and_then(|mut calls| calls.remove(&seq))
}

/// A decision in words, for traces and the decision log: "race (preference node2, node3)",
/// "stand down: ...", "wait 500 ms: ...", then the fence and the synchronous standbys when
/// the policy named them.
pub fn describe_decision(decision: &pgwarden_policy::Decision) -> String {
    use pgwarden_policy::{Fence, Race};
    let mut text = match &decision.race {
        Race::Race => "race".to_string(),
        Race::StandDown(why) => format!("stand down: {why}"),
        Race::Wait(wait) => format!("wait {} ms: {}", wait.delay_ms, wait.reason),
    };
    if !decision.preference.is_empty() {
        text.push_str(&format!(" (preference {})", decision.preference.join(", ")));
    }
    match &decision.fence {
        Fence::None => {}
        Fence::Demote(why) => text.push_str(&format!("; demote: {why}")),
        Fence::Fence(why) => text.push_str(&format!("; fence: {why}")),
    }
    if let Some(sync) = &decision.sync_standbys {
        text.push_str(&format!("; synchronous standbys [{}]", sync.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe_decision;
    use pgwarden_policy::{Decision, Fence, Race, Wait};

    #[test]
    fn decisions_read_as_sentences() {
        let race = Decision {
            race: Race::Race,
            preference: vec!["node2".into(), "node3".into()],
            fence: Fence::None,
            sync_standbys: None,
        };
        assert_eq!(describe_decision(&race), "race (preference node2, node3)");
        let wait = Decision {
            race: Race::Wait(Wait {
                delay_ms: 500,
                reason: "zone a first".into(),
            }),
            preference: vec![],
            fence: Fence::Demote("isolated".into()),
            sync_standbys: Some(vec!["node3".into()]),
        };
        assert_eq!(
            describe_decision(&wait),
            "wait 500 ms: zone a first; demote: isolated; synchronous standbys [node3]"
        );
        assert_eq!(
            describe_decision(&Decision::stand_down("lagging")),
            "stand down: lagging"
        );
    }
}
