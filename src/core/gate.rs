//! The record of what the invariant gate refused. The rules live in `safety`; this keeps
//! the count per rule (exported as a metric) and the last refusal (shown in `/patroni`), so
//! a policy that keeps asking for something unsafe is visible, never fatal.

use std::collections::BTreeMap;

/// Refusals by rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateLog {
    /// Count per rule name.
    pub rejections: BTreeMap<&'static str, u64>,
    /// The last refusal: what was refused and why.
    pub last: Option<String>,
}

impl GateLog {
    /// Record that the gate refused `decision` under `rule`.
    pub fn reject(&mut self, node: &str, decision: &str, rule: &'static str, detail: String) {
        *self.rejections.entry(rule).or_default() += 1;
        tracing::warn!(node, decision, rule, %detail, "invariant gate refused a policy decision");
        self.last = Some(format!("{decision}: {detail}"));
    }
}
