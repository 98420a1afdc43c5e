//! `pgwardenctl policy test FILE --trace T.jsonl`: replay every recorded call of a trace
//! through a policy with the agent's limits; print each decision, whether the policy failed
//! (and the default decided), and whether it is the decision the trace recorded.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

use super::replay::{self, against_recorded};
use super::source::{self, LimitArgs};
use super::{render, FOUND_PROBLEM};
use crate::policy::{TraceRecord, TracedFailure, Verdict};

/// Arguments of `policy test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The component file, or `default` for the policy embedded in this binary.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The trace to replay: JSON lines as the agent writes to `policy.trace_file`.
    #[arg(long, value_name = "T.jsonl")]
    trace: PathBuf,
    /// Refuse the component unless its sha256 is this.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What one replayed call came to.
struct Call<'a> {
    index: usize,
    record: &'a TraceRecord,
    verdict: Verdict,
    differences: Vec<String>,
}

/// Run `policy test`.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let records = replay::read(&args.trace)?;
    let engine = args.limits.engine()?;
    let policy = source::load(&engine, &args.file, args.sha256.as_deref())?;
    let info = policy.info().clone();
    let verdicts = replay::replay(&engine, policy, &records);
    let calls: Vec<Call<'_>> = records
        .iter()
        .zip(verdicts)
        .enumerate()
        .map(|(i, (record, verdict))| Call {
            index: i + 1,
            differences: against_recorded(record, &verdict),
            record,
            verdict,
        })
        .collect();
    let differ = calls.iter().filter(|c| !c.differences.is_empty()).count();
    let failures = calls
        .iter()
        .filter(|c| c.verdict.source.error().is_some())
        .count();

    if args.json {
        let document = json!({
            "policy": {
                "name": info.name,
                "version": info.version,
                "source": info.source,
                "sha256": info.sha256,
            },
            "trace": args.trace.display().to_string(),
            "limits": engine.limits().to_string(),
            "calls": calls.iter().map(call_json).collect::<Vec<_>>(),
            "summary": {"calls": calls.len(), "differ": differ, "failures": failures},
        });
        println!("{document}");
    } else {
        println!("policy  {}", source::describe(&info));
        println!(
            "trace   {} ({} records)",
            args.trace.display(),
            records.len()
        );
        println!("limits  {}", engine.limits());
        println!();
        for call in &calls {
            print_call(call);
        }
        println!();
        println!(
            "{} calls: {differ} differ from the recorded decisions, {failures} failures (the \
             default decided instead)",
            calls.len()
        );
    }
    Ok(if failures > 0 {
        ExitCode::from(FOUND_PROBLEM)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_call(call: &Call<'_>) {
    let outcome = match call.verdict.source.error() {
        None => format!("by {}", call.verdict.source.policy()),
        Some(error) => format!("FAILED ({}), the default decided", error.kind()),
    };
    let recorded = if call.differences.is_empty() {
        "same".to_string()
    } else {
        format!("differs ({})", call.differences.join(", "))
    };
    println!(
        "#{} {} {}: {} | {outcome} | recorded: {recorded}",
        call.index,
        call.record.view.me,
        render::event(&call.record.event),
        render::decision(&call.verdict.decision),
    );
    if let Some(error) = call.verdict.source.error() {
        println!("    error: {error}");
    }
    for field in &call.differences {
        println!(
            "    recorded {field}: {}",
            render::field(&call.record.decision, field)
        );
    }
}

fn call_json(call: &Call<'_>) -> Value {
    json!({
        "index": call.index,
        "me": call.record.view.me,
        "kind": call.record.event.kind(),
        "event": call.record.event,
        "decision": call.verdict.decision,
        "fell_back": call.verdict.source.error().is_some(),
        "error": call.verdict.source.error().map(TracedFailure::from),
        "recorded": {
            "policy": call.record.policy,
            "source": call.record.source,
            "decision": call.record.decision,
            "same": call.differences.is_empty(),
            "differences": call.differences,
        },
    })
}
