//! `pgwardenctl policy check FILE`: load a component as the agent would (same engine, limits
//! and import allow-list), describe it, and make one sample call.

use std::path::PathBuf;
use std::process::ExitCode;

use pgwarden_policy::{ClusterView, Config, Event, Lease, Member, Role};

use super::source::{self, LimitArgs};
use super::{render, FOUND_PROBLEM};
use crate::policy::{LoadedPolicy, PolicyEngine};

/// Arguments of `policy check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The component file, or `default` for the policy embedded in this binary.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Refuse the component unless its sha256 is this (hex, optionally `sha256:`-prefixed),
    /// as `policy.sha256` of the agent's configuration does.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Run `policy check`.
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let engine = args.limits.engine()?;
    let policy = source::load(&engine, &args.file, args.sha256.as_deref())?;
    print_info(&policy, args.sha256.is_some(), &engine);

    let (event, view) = sample();
    let what = format!(
        "{} on {} ({} members, leader {} gone)",
        render::event(&event),
        view.me,
        view.members.len(),
        SAMPLE_LEADER
    );
    match engine.decide_metered(&policy, &event, &view) {
        Ok(metered) => {
            println!(
                "{:<12} {what}: {} (fuel {})",
                "sample",
                render::decision(&metered.decision),
                metered.fuel_used
            );
            println!("ok: the agent can load and call this policy");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!(
                "{:<12} {what}: FAILED ({}): {error}",
                "sample",
                error.kind()
            );
            eprintln!(
                "error: {} loads, but its sample call failed: the agent would decide with the \
                 embedded default instead",
                args.file.display()
            );
            Ok(ExitCode::from(FOUND_PROBLEM))
        }
    }
}

fn print_info(policy: &LoadedPolicy, digest_checked: bool, engine: &PolicyEngine) {
    let info = policy.info();
    let row = |key: &str, value: &str| println!("{key:<12} {value}");
    row("policy", &info.name);
    row("version", &info.version);
    row("description", &info.description);
    row(
        "contract",
        &format!("pgwarden:policy@{}", info.contract_version),
    );
    row("source", &info.source);
    row("size", &format!("{} bytes", info.size_bytes));
    let checked = if digest_checked {
        " (matches --sha256)"
    } else {
        ""
    };
    row("sha256", &format!("{}{checked}", info.sha256));
    for (key, names) in [("imports", &info.imports), ("exports", &info.exports)] {
        match names.split_first() {
            None => row(key, "none"),
            Some((first, rest)) => {
                row(key, first);
                for name in rest {
                    row("", name);
                }
            }
        }
    }
    row("limits", &engine.limits().to_string());
}

const SAMPLE_LEADER: &str = "node1";

/// An election on node3 of a three-member cluster whose leader, node1, is gone (its key
/// expired and it does not answer); node3 is the most advanced replica.
fn sample() -> (Event, ClusterView) {
    let member = |name: &str, role: Role, lsn: u64| Member {
        name: name.into(),
        role,
        state: "running".into(),
        streaming: role == Role::Replica,
        timeline: Some(1),
        received_lsn: Some(lsn),
        replayed_lsn: Some(lsn),
        lag_bytes: Some(10_000u64.saturating_sub(lsn)),
        tags: Vec::new(),
        is_sync: false,
        failover_priority: 1,
        heartbeat_age_ms: Some(500),
        reachable: Some(true),
    };
    let mut leader = member(SAMPLE_LEADER, Role::Primary, 10_000);
    leader.state = "stopped".into();
    leader.reachable = Some(false);
    leader.heartbeat_age_ms = Some(31_000);
    let view = ClusterView {
        now_ms: 1_000_000,
        me: "node3".into(),
        members: vec![
            leader.clone(),
            member("node2", Role::Replica, 9_000),
            member("node3", Role::Replica, 9_500),
        ],
        lease: Lease::default(),
        last_leader: Some(leader),
        leaderless_ms: Some(1_500),
        cluster_timeline: Some(1),
        leader_lsn: Some(10_000),
        sync_leader: None,
        sync_standbys: Vec::new(),
        switchover: None,
        config: Config::default(),
    };
    (Event::Election, view)
}
