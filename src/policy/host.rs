//! The policy host the runtime owns (from one dedicated thread): the active policy, an
//! optional shadow, counters and an optional trace. Every event gets a [`Verdict`]: the
//! active policy's decision, or — when it fails in any way — the native default's
//! (`pgwarden_policy_default::DefaultPolicy`, the same code as the embedded component).
//! The shadow runs after the active one; its decisions are compared, never acted on.

use std::time::{Duration, Instant};

use pgwarden_policy::{ClusterView, Decision, Event, Policy as _};
use pgwarden_policy_default::DefaultPolicy;

use super::compare::decision_differences;
use super::engine::PolicyEngine;
use super::error::{PolicyCallError, PolicyErrorKind};
use super::loader::{LoadedPolicy, PolicyInfo};
use super::trace::{TraceRecord, TraceWriter};

/// Difference-list entry of a shadow that failed instead of deciding.
pub const OUTCOME: &str = "outcome";

/// Who made the decision of a [`Verdict`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The active policy.
    Active {
        /// Its name.
        policy: String,
    },
    /// The native default, because the active policy failed.
    Fallback {
        /// The active policy's name.
        policy: String,
        /// How it failed.
        error: PolicyCallError,
    },
}

impl Source {
    /// The active policy's name.
    pub fn policy(&self) -> &str {
        match self {
            Source::Active { policy } | Source::Fallback { policy, .. } => policy,
        }
    }

    /// The failure, for a fallback.
    pub fn error(&self) -> Option<&PolicyCallError> {
        match self {
            Source::Active { .. } => None,
            Source::Fallback { error, .. } => Some(error),
        }
    }
}

/// What the shadow policy would have done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowReport {
    /// Its name.
    pub policy: String,
    /// Its decision, or how it failed.
    pub outcome: Result<Decision, PolicyCallError>,
    /// It would not have produced the verdict's decision: it decided otherwise, or failed.
    pub diverged: bool,
    /// The fields that differ (as `compare` names them), preceded by [`OUTCOME`] when the
    /// shadow failed (a malformed answer is still compared field by field).
    pub differences: Vec<String>,
    /// How long the shadow call took.
    pub elapsed: Duration,
}

/// The host's answer to one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The decision to hand to the core's gate.
    pub decision: Decision,
    /// Who made it.
    pub source: Source,
    /// The shadow's report, when a shadow is set.
    pub shadow: Option<ShadowReport>,
    /// Time to the decision (the active call, plus the fallback if it failed; not the shadow).
    pub elapsed: Duration,
    /// What the active policy logged at warn or error level while deciding.
    pub warnings: Vec<String>,
    /// Fuel the active policy's call used (`None` when it failed).
    pub fuel_used: Option<u64>,
}

/// Failures counted per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// [`PolicyErrorKind::Instantiate`].
    pub instantiate: u64,
    /// [`PolicyErrorKind::Trap`].
    pub trap: u64,
    /// [`PolicyErrorKind::FuelExhausted`].
    pub fuel_exhausted: u64,
    /// [`PolicyErrorKind::Timeout`].
    pub timeout: u64,
    /// [`PolicyErrorKind::MemoryLimit`].
    pub memory_limit: u64,
    /// [`PolicyErrorKind::Malformed`].
    pub malformed: u64,
}

impl ErrorCounts {
    /// The count of one kind.
    pub fn get(&self, kind: PolicyErrorKind) -> u64 {
        match kind {
            PolicyErrorKind::Instantiate => self.instantiate,
            PolicyErrorKind::Trap => self.trap,
            PolicyErrorKind::FuelExhausted => self.fuel_exhausted,
            PolicyErrorKind::Timeout => self.timeout,
            PolicyErrorKind::MemoryLimit => self.memory_limit,
            PolicyErrorKind::Malformed => self.malformed,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        PolicyErrorKind::ALL
            .iter()
            .map(|kind| self.get(*kind))
            .sum()
    }

    fn bump(&mut self, kind: PolicyErrorKind) {
        let slot = match kind {
            PolicyErrorKind::Instantiate => &mut self.instantiate,
            PolicyErrorKind::Trap => &mut self.trap,
            PolicyErrorKind::FuelExhausted => &mut self.fuel_exhausted,
            PolicyErrorKind::Timeout => &mut self.timeout,
            PolicyErrorKind::MemoryLimit => &mut self.memory_limit,
            PolicyErrorKind::Malformed => &mut self.malformed,
        };
        *slot = slot.saturating_add(1);
    }
}

/// The host's counters since it was created (for `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCounters {
    /// Events decided.
    pub calls: u64,
    /// Decisions the native default made because the active policy failed, per failure kind.
    pub fallbacks: ErrorCounts,
    /// Shadow calls.
    pub shadow_calls: u64,
    /// Shadow calls that diverged (decided otherwise, or failed).
    pub shadow_divergences: u64,
    /// Shadow calls that failed, per failure kind (also counted as divergences).
    pub shadow_failures: ErrorCounts,
    /// Trace records that could not be written.
    pub trace_write_errors: u64,
}

/// The policy host.
#[derive(Debug)]
pub struct PolicyHost {
    engine: PolicyEngine,
    active: LoadedPolicy,
    shadow: Option<LoadedPolicy>,
    counters: PolicyCounters,
    trace: Option<TraceWriter>,
}

impl PolicyHost {
    /// A host deciding with `active`, which `engine` loaded.
    pub fn new(engine: PolicyEngine, active: LoadedPolicy) -> PolicyHost {
        PolicyHost {
            engine,
            active,
            shadow: None,
            counters: PolicyCounters::default(),
            trace: None,
        }
    }

    /// The engine (to load policies for [`set_active`](Self::set_active) and
    /// [`set_shadow`](Self::set_shadow); a policy loaded by another engine always fails).
    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// Decide from the next call on with `policy`.
    pub fn set_active(&mut self, policy: LoadedPolicy) {
        self.warn_if_foreign(&policy);
        let info = policy.info();
        tracing::info!(
            policy = %info.name,
            version = %info.version,
            sha256 = %info.sha256,
            source = %info.source,
            "active failover policy set"
        );
        self.active = policy;
    }

    /// Run `policy` (or none) as the shadow from the next call on.
    pub fn set_shadow(&mut self, policy: Option<LoadedPolicy>) {
        match &policy {
            Some(policy) => {
                self.warn_if_foreign(policy);
                let info = policy.info();
                tracing::info!(
                    policy = %info.name,
                    version = %info.version,
                    sha256 = %info.sha256,
                    source = %info.source,
                    "shadow failover policy set"
                );
            }
            None => tracing::info!("shadow failover policy removed"),
        }
        self.shadow = policy;
    }

    fn warn_if_foreign(&self, policy: &LoadedPolicy) {
        if !self.engine.owns(policy) {
            tracing::error!(
                policy = policy.name(),
                "policy loaded by another policy engine: every call to it will fail"
            );
        }
    }

    /// Record every verdict to `writer` (or stop recording).
    pub fn set_trace(&mut self, writer: Option<TraceWriter>) {
        self.trace = writer;
    }

    /// The active policy.
    pub fn active_info(&self) -> &PolicyInfo {
        self.active.info()
    }

    /// The shadow policy, if any.
    pub fn shadow_info(&self) -> Option<&PolicyInfo> {
        self.shadow.as_ref().map(LoadedPolicy::info)
    }

    /// The counters so far.
    pub fn counters(&self) -> PolicyCounters {
        self.counters
    }

    /// Decide on `event` with `view`: the active policy, or the native default when it fails;
    /// then the shadow, for comparison only.
    pub fn decide(&mut self, event: &Event, view: &ClusterView) -> Verdict {
        let started = Instant::now();
        self.counters.calls = self.counters.calls.saturating_add(1);
        let policy = self.active.name().to_string();
        let mut warnings = Vec::new();
        let mut fuel_used = None;
        let (decision, source) = match self.engine.decide_metered(&self.active, event, view) {
            Ok(metered) => {
                warnings = metered.warnings;
                fuel_used = Some(metered.fuel_used);
                (metered.decision, Source::Active { policy })
            }
            Err(error) => {
                self.counters.fallbacks.bump(error.kind());
                tracing::warn!(
                    policy = %policy,
                    event = event.kind(),
                    kind = %error.kind(),
                    error = %error,
                    "failover policy failed; the native default decides"
                );
                (
                    DefaultPolicy::decide(event, view),
                    Source::Fallback { policy, error },
                )
            }
        };
        let elapsed = started.elapsed();
        let shadow = self
            .shadow
            .clone()
            .map(|shadow| self.run_shadow(&shadow, event, view, &decision));
        let verdict = Verdict {
            decision,
            source,
            shadow,
            elapsed,
            warnings,
            fuel_used,
        };
        self.record(event, view, &verdict);
        verdict
    }

    fn run_shadow(
        &mut self,
        shadow: &LoadedPolicy,
        event: &Event,
        view: &ClusterView,
        decision: &Decision,
    ) -> ShadowReport {
        let started = Instant::now();
        let outcome = self.engine.decide(shadow, event, view);
        let elapsed = started.elapsed();
        self.counters.shadow_calls = self.counters.shadow_calls.saturating_add(1);
        let differences = match &outcome {
            Ok(theirs) => decision_differences(decision, theirs),
            Err(error) => {
                self.counters.shadow_failures.bump(error.kind());
                let mut differences = vec![OUTCOME.to_string()];
                if let PolicyCallError::Malformed { answer, .. } = error {
                    differences.extend(decision_differences(decision, answer));
                }
                differences
            }
        };
        let diverged = !differences.is_empty();
        if diverged {
            self.counters.shadow_divergences = self.counters.shadow_divergences.saturating_add(1);
            match &outcome {
                Ok(theirs) => tracing::info!(
                    shadow = shadow.name(),
                    event = event.kind(),
                    differences = ?differences,
                    decided = ?decision,
                    shadow_decision = ?theirs,
                    "shadow policy would have decided otherwise"
                ),
                Err(error) => tracing::info!(
                    shadow = shadow.name(),
                    event = event.kind(),
                    kind = %error.kind(),
                    error = %error,
                    "shadow policy failed"
                ),
            }
        }
        ShadowReport {
            policy: shadow.name().to_string(),
            outcome,
            diverged,
            differences,
            elapsed,
        }
    }

    fn record(&mut self, event: &Event, view: &ClusterView, verdict: &Verdict) {
        let Some(writer) = self.trace.as_mut() else {
            return;
        };
        if let Err(error) = writer.write(&TraceRecord::from_verdict(event, view, verdict)) {
            self.counters.trace_write_errors = self.counters.trace_write_errors.saturating_add(1);
            tracing::warn!(%error, "writing the policy trace failed");
        }
    }
}
