//! Replaying a recorded trace: every record's event and view go through a [`PolicyHost`]
//! deciding with the given policy — the agent's own calling path, so a policy that fails
//! (trap, fuel, timeout, memory, malformed answer) is replaced by the native default exactly
//! as in the agent, and the verdict says so.

use std::path::Path;

use crate::policy::{
    decision_differences, read_trace, LoadedPolicy, PolicyEngine, PolicyHost, TraceRecord, Verdict,
};

/// Every record of the trace at `path`; an empty trace is an error (nothing to replay).
/// Errors name the file and, for a bad record, its line.
pub fn read(path: &Path) -> anyhow::Result<Vec<TraceRecord>> {
    let records = read_trace(path)?;
    if records.is_empty() {
        anyhow::bail!("trace {}: no records to replay", path.display());
    }
    Ok(records)
}

/// The verdict of `policy` on every record, in order.
pub fn replay(
    engine: &PolicyEngine,
    policy: LoadedPolicy,
    records: &[TraceRecord],
) -> Vec<Verdict> {
    let mut host = PolicyHost::new(engine.clone(), policy);
    records
        .iter()
        .map(|record| host.decide(&record.event, &record.view))
        .collect()
}

/// Where a replayed decision differs from the one recorded (field names, empty: same).
pub fn against_recorded(record: &TraceRecord, verdict: &Verdict) -> Vec<String> {
    decision_differences(&record.decision, &verdict.decision)
}
