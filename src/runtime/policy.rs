//! Runs policy calls off the event loop. One dedicated thread owns the policy host (wasmtime
//! stores are not shared between threads); the loop only hands it jobs (calls, and the
//! cluster-wide policy selection when `/config` changes) and receives the answers as inputs.
//! A call not answered within the deadline is answered by the native default policy, so
//! neither a stuck guest nor a slow host can hold the agent.

use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

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
    pub fn decide(&mut self, call: &PolicyCall) -> PolicyAnswer {
        let span = tracing::info_span!(
            "policy.decide",
            seq = call.seq,
            event = call.event.kind(),
            policy = %self.host.active_info().name
        );
        let _entered = span.enter();
        let verdict = self.host.decide(&call.event, &call.view);
        tracing::debug!(race = ?verdict.decision.race, fence = ?verdict.decision.fence, elapsed_us = verdict.elapsed.as_micros() as u64, "decided");
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
    Decide(Box<PolicyCall>),
    Select(Option<ClusterPolicy>),
}

/// Hands jobs to the policy thread and guarantees an answer per call by the deadline.
#[derive(Clone)]
pub struct PolicyRunner {
    jobs: mpsc::Sender<Job>,
    /// Calls not answered yet: whoever removes a seq first (thread or timer) answers it.
    outstanding: Arc<Mutex<BTreeSet<u64>>>,
    inputs: UnboundedSender<Input>,
    deadline: Duration,
}

impl PolicyRunner {
    /// Start the policy thread.
    pub fn spawn(
        mut decider: HostDecider,
        inputs: UnboundedSender<Input>,
        deadline: Duration,
    ) -> std::io::Result<PolicyRunner> {
        let (jobs, received) = mpsc::channel::<Job>();
        let outstanding = Arc::new(Mutex::new(BTreeSet::new()));
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
                            let answer = decider.decide(&call);
                            if take(&outstanding, call.seq) {
                                let _ = inputs.send(Input::PolicyDecided(answer));
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
        if let Ok(mut outstanding) = self.outstanding.lock() {
            outstanding.insert(seq);
        }
        let backup = call.clone();
        if self.jobs.send(Job::Decide(call)).is_err() {
            tracing::error!("the policy thread is gone; the embedded default decides");
        }
        let outstanding = self.outstanding.clone();
        let inputs = self.inputs.clone();
        let deadline = self.deadline;
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            if take(&outstanding, seq) {
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
                let _ = inputs.send(Input::PolicyDecided(answer));
            }
        });
    }
}

fn take(outstanding: &Mutex<BTreeSet<u64>>, seq: u64) -> bool {
    outstanding
        .lock()
        .map(|mut set| set.remove(&seq))
        .unwrap_or(false)
}
