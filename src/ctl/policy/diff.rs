//! `pgwardenctl policy diff A B --trace T.jsonl`: replay a trace through two policies and
//! print only the calls on which the agent would act differently, field by field (reason
//! texts are prose and do not count, see [`crate::policy::decision_differences`]).
//!
//! Each side is what the agent would act on: when a policy fails, the default's decision,
//! and the failure itself is a difference (`outcome`) when only one side failed.

use std::path::PathBuf;
use std::process::ExitCode;

use super::replay;
use super::source::{self, LimitArgs};
use super::{render, FOUND_PROBLEM};
use crate::policy::{decision_differences, Verdict, OUTCOME};

/// Arguments of `policy diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The first component file, or `default` for the policy embedded in this binary.
    #[arg(value_name = "A")]
    a: PathBuf,
    /// The second component file, or `default`.
    #[arg(value_name = "B")]
    b: PathBuf,
    /// The trace to replay: JSON lines as the agent writes to `policy.trace_file`.
    #[arg(long, value_name = "T.jsonl")]
    trace: PathBuf,
    /// Exit with status 1 when the policies decide differently on any call (without it, the
    /// status is 0 either way).
    #[arg(long)]
    exit_code: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Run `policy diff`.
pub fn run(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let records = replay::read(&args.trace)?;
    let engine = args.limits.engine()?;
    let a = source::load(&engine, &args.a, None)?;
    let b = source::load(&engine, &args.b, None)?;
    println!("A       {}", source::describe(a.info()));
    println!("B       {}", source::describe(b.info()));
    println!(
        "trace   {} ({} records)",
        args.trace.display(),
        records.len()
    );
    println!("limits  {}", engine.limits());
    println!();

    let verdicts_a = replay::replay(&engine, a, &records);
    let verdicts_b = replay::replay(&engine, b, &records);
    let mut differ = 0usize;
    for (i, (record, (va, vb))) in records
        .iter()
        .zip(verdicts_a.iter().zip(&verdicts_b))
        .enumerate()
    {
        let fields = differences(va, vb);
        if fields.is_empty() {
            continue;
        }
        differ += 1;
        println!(
            "#{} {} {}: differs in {}",
            i + 1,
            record.view.me,
            render::event(&record.event),
            fields.join(", ")
        );
        for field in &fields {
            println!("    {field:<13} A: {}", side(va, field));
            println!("    {:<13} B: {}", "", side(vb, field));
        }
    }
    let failed = |verdicts: &[Verdict]| {
        verdicts
            .iter()
            .filter(|v| v.source.error().is_some())
            .count()
    };
    if differ == 0 {
        println!("no differences");
    }
    println!();
    println!(
        "{} calls: {differ} decided differently; failures (the default decided instead): A {}, \
         B {}",
        records.len(),
        failed(&verdicts_a),
        failed(&verdicts_b)
    );
    Ok(if differ > 0 && args.exit_code {
        ExitCode::from(FOUND_PROBLEM)
    } else {
        ExitCode::SUCCESS
    })
}

/// The fields in which the agent would act differently: [`OUTCOME`] first when only one side
/// failed, then the decisions' differences.
fn differences(a: &Verdict, b: &Verdict) -> Vec<String> {
    let mut fields = Vec::new();
    if a.source.error().is_some() != b.source.error().is_some() {
        fields.push(OUTCOME.to_string());
    }
    fields.extend(decision_differences(&a.decision, &b.decision));
    fields
}

fn side(verdict: &Verdict, field: &str) -> String {
    if field == OUTCOME {
        return match verdict.source.error() {
            None => "answered".into(),
            Some(error) => format!("failed, the default decided: {error}"),
        };
    }
    render::field(&verdict.decision, field)
}
