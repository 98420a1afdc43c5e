//! The record of the invariant gate's verdicts. The rules live in `safety`; this keeps the
//! count of refusals per rule (exported as a metric), the last refusal (shown in
//! `/patroni`), so a policy that keeps asking for something unsafe is visible, never fatal,
//! and the verdicts of the input being handled (traces and the decision log show them).

use std::collections::BTreeMap;

/// One verdict of the gate: on what, and the rule that refused it (none: accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateVerdict {
    /// What was judged: `race`, `promote`, `sync-standbys`.
    pub decision: &'static str,
    /// The rule that refused it and why, or `None` when it was accepted.
    pub refused: Option<(&'static str, String)>,
}

/// Refusals by rule, and the verdicts of the current input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateLog {
    /// Count per rule name (refused policy decisions).
    pub rejections: BTreeMap<&'static str, u64>,
    /// The last refusal: what was refused and why.
    pub last: Option<String>,
    /// The verdicts given while handling the current input.
    verdicts: Vec<GateVerdict>,
}

impl GateLog {
    /// Record that the gate refused the policy's `decision` under `rule`.
    pub fn reject(
        &mut self,
        node: &str,
        decision: &'static str,
        rule: &'static str,
        detail: String,
    ) {
        *self.rejections.entry(rule).or_default() += 1;
        tracing::warn!(node, decision, rule, %detail, "invariant gate refused a policy decision");
        self.last = Some(format!("{decision}: {detail}"));
        self.verdicts.push(GateVerdict {
            decision,
            refused: Some((rule, detail)),
        });
    }

    /// Record that the gate accepted `decision`.
    pub fn accept(&mut self, decision: &'static str) {
        self.verdicts.push(GateVerdict {
            decision,
            refused: None,
        });
    }

    /// Record that the gate refused a promotion the host itself was about to make (not a
    /// policy's decision: not counted among the policy's refusals).
    pub fn refuse_promotion(&mut self, rule: &'static str, detail: String) {
        self.verdicts.push(GateVerdict {
            decision: "promote",
            refused: Some((rule, detail)),
        });
    }

    /// The verdicts given since the last call (a new input starts with none).
    pub fn take_verdicts(&mut self) -> Vec<GateVerdict> {
        std::mem::take(&mut self.verdicts)
    }
}
