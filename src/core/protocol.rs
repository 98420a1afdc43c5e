//! The policy protocol as the core speaks it: the call it emits (an effect) and the answer
//! that comes back (an input). Depends on nothing else in the core, so effects, inputs and
//! the agent can all name these types without importing each other.

use pgwarden_policy as contract;

/// Why the core asks: an election decides whether to race; routine calls carry every other
/// event (their race answers are only checked by the gate, their fence and synchronous
/// standby answers are applied).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConsultPurpose {
    /// The leader key is free and the peers were probed.
    Election,
    /// Any other event.
    Routine,
}

/// One policy call for the runtime to make; it answers with `Input::PolicyDecided`.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyCall {
    /// Matches the answer to the question.
    pub seq: u64,
    /// Why the core asks.
    pub purpose: ConsultPurpose,
    /// What happened.
    pub event: contract::Event,
    /// Everything the policy may look at.
    pub view: contract::ClusterView,
}

/// The policy's answer, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PolicyAnswer {
    /// The call's `seq`.
    pub seq: u64,
    /// What was decided.
    pub decision: contract::Decision,
    /// Set when the configured policy failed and the embedded default decided instead.
    pub fallback: Option<String>,
    /// What the policy logged at warn or error level while deciding (its reasons for a
    /// refusal the decision itself cannot carry, such as a declined switchover).
    pub warnings: Vec<String>,
}
