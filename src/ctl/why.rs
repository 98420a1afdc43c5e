//! `pgwardenctl why [MEMBER]`: what a member decided lately and why, from its decision log
//! (`GET /decisions`).
//!
//! Decisions linked by cause (an effect's result is the next input) form an episode: a
//! failover on the new leader reads "leader key free → peers probed → policy said race →
//! gate accepted → key acquired → promoted". Each episode gets a one-line summary, then
//! its decisions step by step.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::telemetry::decisions::{Decision, Step, StepKind};

/// Episodes shown when the operator does not say.
pub const DEFAULT_EPISODES: usize = 3;

/// The episodes (last `episodes` of them) in `decisions`, oldest first, rendered for a
/// terminal.
pub fn render(member: &str, decisions: &[Decision], episodes: usize) -> String {
    let groups = episodes_of(decisions);
    let shown = groups.len().saturating_sub(episodes);
    let mut out = String::new();
    if groups.is_empty() {
        let _ = writeln!(out, "{member}: no decisions recorded yet");
        return out;
    }
    for group in &groups[shown..] {
        let _ = writeln!(out, "{}", summary(member, group));
        for decision in group {
            render_decision(&mut out, decision);
        }
        out.push('\n');
    }
    out
}

/// Decisions grouped by the first decision of their chain of causes, each group in order;
/// only groups where something happened (a transition, a gate verdict, a PostgreSQL
/// action).
fn episodes_of<'a>(decisions: &'a [Decision]) -> Vec<Vec<&'a Decision>> {
    let by_id: BTreeMap<u64, &'a Decision> = decisions.iter().map(|d| (d.id, d)).collect();
    let root_of = |mut d: &'a Decision| {
        // Causes point to older decisions; the bound guards against a malformed answer.
        for _ in 0..by_id.len() {
            match d.caused_by.as_ref().and_then(|c| by_id.get(&c.decision)) {
                Some(parent) if parent.id < d.id => d = parent,
                _ => break,
            }
        }
        d.id
    };
    let mut groups: BTreeMap<u64, Vec<&Decision>> = BTreeMap::new();
    for decision in by_id.values() {
        groups.entry(root_of(decision)).or_default().push(decision);
    }
    groups
        .into_values()
        .filter(|group| group.iter().any(|d| d.steps.iter().any(is_eventful)))
        .collect()
}

fn is_eventful(step: &Step) -> bool {
    match step.kind {
        StepKind::Transition | StepKind::Gate => true,
        StepKind::Effect => step.name.starts_with("pg.") && !is_routine(step),
        StepKind::Policy => false,
    }
}

fn is_routine(step: &Step) -> bool {
    step.fields.get("routine") == Some(&Value::Bool(true))
}

fn text<'a>(step: &'a Step, field: &str) -> Option<&'a str> {
    step.fields.get(field).and_then(Value::as_str)
}

/// `14:02:11` of an RFC 3339 time.
fn clock_time(at: &str) -> &str {
    at.split_once('T')
        .map(|(_, t)| t.get(..8).unwrap_or(t))
        .unwrap_or(at)
}

/// `14:02:11.204` of an RFC 3339 time.
fn clock_time_ms(at: &str) -> &str {
    at.split_once('T')
        .map(|(_, t)| t.get(..12).unwrap_or(t).trim_end_matches('Z'))
        .unwrap_or(at)
}

fn duration(us: u64) -> String {
    if us >= 10_000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}

/// "node2 became primary at 14:02:11 because the leader key is free; policy default said
/// race (preference node2, node3); gate accepted race, promote; promote took 131 ms".
fn summary(member: &str, group: &[&Decision]) -> String {
    let steps = || {
        group
            .iter()
            .flat_map(|d| d.steps.iter().map(move |s| (*d, s)))
    };
    let transitions: Vec<(&Decision, &Step)> = steps()
        .filter(|(_, s)| s.kind == StepKind::Transition)
        .collect();
    let mut parts = Vec::new();
    let first = group[0];
    let mut head = match transitions.last() {
        Some((d, s)) => {
            let to = text(s, "to").unwrap_or("?");
            let what = if to == "primary" {
                "became primary".to_string()
            } else {
                format!("went to {to}")
            };
            format!("{member} {what} at {}", clock_time(&d.at))
        }
        None => format!("{member} decided at {}", clock_time(&first.at)),
    };
    match transitions.first().and_then(|(_, s)| text(s, "reason")) {
        Some(reason) => {
            let _ = write!(head, " because {reason}");
        }
        None => {
            let _ = write!(head, " on {}", first.input);
        }
    }
    parts.push(head);
    if let Some(policy) = policy_part(group) {
        parts.push(policy);
    }
    let verdicts: Vec<String> = steps()
        .filter(|(_, s)| s.kind == StepKind::Gate)
        .map(|(_, s)| {
            let decision = text(s, "gate.decision").unwrap_or("?");
            match text(s, "gate.rule") {
                Some(rule) => format!("refused {decision} ({rule})"),
                None => format!("accepted {decision}"),
            }
        })
        .collect();
    if !verdicts.is_empty() {
        let mut deduped: Vec<String> = Vec::new();
        for v in verdicts {
            if !deduped.contains(&v) {
                deduped.push(v);
            }
        }
        parts.push(format!("gate {}", deduped.join(", ")));
    }
    for (_, effect) in steps().filter(|(_, s)| s.kind == StepKind::Effect && is_eventful(s)) {
        let action = effect.name.trim_start_matches("pg.");
        let outcome = text(effect, "outcome");
        parts.push(match (effect.duration_us, outcome) {
            (Some(us), Some("done") | None) => format!("{action} took {}", duration(us)),
            (Some(us), Some(outcome)) => format!("{action} {outcome} after {}", duration(us)),
            (None, _) => format!("{action} still running"),
        });
    }
    parts.join("; ")
}

/// What the policy said: the first answer the agent acted on, or that the embedded default
/// stood in (the policy failed, or missed its deadline and its answer was not used).
fn policy_part(group: &[&Decision]) -> Option<String> {
    let consults = group.iter().flat_map(|d| {
        d.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == StepKind::Effect && s.name == "policy.consult")
            .map(move |(i, s)| {
                let answer = d.steps.iter().find(|p| p.parent == Some(i));
                (s, answer)
            })
    });
    let mut first = None;
    for (consult, answer) in consults {
        let fell_back = text(consult, "outcome") == Some("fallback");
        let line = match answer {
            Some(answer) => {
                let name = text(answer, "policy").unwrap_or("?");
                let said = text(answer, "policy.decision").unwrap_or("?");
                match (text(answer, "policy.fallback"), fell_back) {
                    (Some(error), _) => {
                        format!("policy {name} failed ({error}); the embedded default said {said}")
                    }
                    (None, true) => {
                        format!("policy {name} missed its deadline; the embedded default decided")
                    }
                    (None, false) => format!("policy {name} said {said}"),
                }
            }
            None if fell_back => {
                "the policy missed its deadline; the embedded default decided".to_string()
            }
            None => continue,
        };
        if fell_back {
            return Some(line);
        }
        first.get_or_insert(line);
    }
    first
}

fn render_decision(out: &mut String, decision: &Decision) {
    let mut facts = Vec::new();
    for (key, label) in [
        ("state", "state"),
        ("leader", "leader"),
        ("leader.revision", "key revision"),
        ("timeline", "timeline"),
        ("timers", "timers"),
    ] {
        if let Some(value) = decision.facts.get(key) {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), String::from);
            facts.push(format!("{label} {shown}"));
        }
    }
    let cause = decision
        .caused_by
        .as_ref()
        .map(|c| format!(" ← {} of #{}", c.effect, c.decision))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {}  #{} input {}{cause}  [{}]{}",
        clock_time_ms(&decision.at),
        decision.id,
        decision.input,
        facts.join(", "),
        if decision.complete {
            ""
        } else {
            " (in progress)"
        },
    );
    for (index, step) in decision.steps.iter().enumerate() {
        if step.parent.is_some() || (step.kind == StepKind::Effect && is_routine(step)) {
            continue;
        }
        let _ = writeln!(out, "      {}", step_line(step));
        for part in decision.steps.iter().filter(|s| s.parent == Some(index)) {
            let _ = writeln!(out, "        {}", step_line(part));
        }
    }
}

fn step_line(step: &Step) -> String {
    match step.kind {
        StepKind::Gate => {
            let decision = text(step, "gate.decision").unwrap_or("?");
            match (text(step, "gate.rule"), text(step, "gate.detail")) {
                (Some(rule), Some(detail)) => {
                    format!("gate {decision}: refused by {rule}: {detail}")
                }
                (Some(rule), None) => format!("gate {decision}: refused by {rule}"),
                _ => format!("gate {decision}: accepted"),
            }
        }
        StepKind::Transition => format!(
            "{}  [{}] {}",
            step.name,
            text(step, "why").unwrap_or("?"),
            text(step, "reason").unwrap_or("")
        ),
        StepKind::Effect => {
            let outcome = text(step, "outcome").unwrap_or("sent");
            match step.duration_us {
                Some(us) => format!("{}: {outcome} ({})", step.name, duration(us)),
                None => format!("{}: running", step.name),
            }
        }
        StepKind::Policy => {
            let mut line = format!(
                "policy {} ({}) said {}",
                text(step, "policy").unwrap_or("?"),
                text(step, "policy.sha256")
                    .map(|h| h.get(..12).unwrap_or(h))
                    .unwrap_or("?"),
                text(step, "policy.decision").unwrap_or("?"),
            );
            if let Some(us) = step.fields.get("policy.latency_us").and_then(Value::as_u64) {
                let _ = write!(line, " in {}", duration(us));
            }
            if let Some(fuel) = step.fields.get("policy.fuel").and_then(Value::as_u64) {
                let _ = write!(line, ", fuel {fuel}");
            }
            if let Some(error) = text(step, "policy.fallback") {
                let _ = write!(line, "; fell back to the embedded default: {error}");
            }
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::decisions::CausedBy;
    use serde_json::json;

    fn step(kind: StepKind, name: &str, duration_us: Option<u64>, fields: Value) -> Step {
        Step {
            kind,
            name: name.into(),
            offset_us: 0,
            duration_us,
            fields: serde_json::from_value(fields).expect("test setup"),
            parent: None,
        }
    }

    fn decision(id: u64, input: &str, cause: Option<(u64, &str)>, steps: Vec<Step>) -> Decision {
        Decision {
            id,
            at: format!("2026-12-07T14:02:11.{:03}Z", id * 10),
            at_unix_ms: 0,
            input: input.into(),
            facts: serde_json::from_value(json!({"state": "replica", "leader": "node1"}))
                .expect("test setup"),
            caused_by: cause.map(|(decision, effect)| CausedBy {
                decision,
                effect: effect.into(),
            }),
            steps,
            complete: true,
        }
    }

    fn failover() -> Vec<Decision> {
        vec![
            decision(
                7,
                "cluster_changed",
                None,
                vec![
                    step(
                        StepKind::Transition,
                        "replica -> candidate",
                        Some(5),
                        json!({"to": "candidate", "why": "leader-key-free",
                               "reason": "leader key is free: probing members before the election"}),
                    ),
                    step(
                        StepKind::Effect,
                        "peers.probe",
                        Some(9000),
                        json!({"routine": true, "outcome": "ok"}),
                    ),
                ],
            ),
            // Unrelated upkeep between the links of the chain.
            decision(
                8,
                "timer",
                None,
                vec![step(StepKind::Effect, "dcs.sync.write", Some(3), json!({}))],
            ),
            decision(
                9,
                "peers_probed",
                Some((7, "peers.probe")),
                vec![
                    step(
                        StepKind::Effect,
                        "policy.consult",
                        Some(700),
                        json!({"outcome": "decided"}),
                    ),
                    Step {
                        parent: Some(0),
                        ..step(
                            StepKind::Policy,
                            "policy.decide",
                            Some(400),
                            json!({"policy": "default", "policy.sha256": "0123456789abcdef",
                                   "policy.decision": "race (preference node2, node3)",
                                   "policy.latency_us": 412, "policy.fuel": 120000}),
                        )
                    },
                ],
            ),
            decision(
                10,
                "policy_decided",
                Some((9, "policy.consult")),
                vec![
                    step(
                        StepKind::Gate,
                        "gate race",
                        Some(1),
                        json!({"gate.decision": "race", "gate.outcome": "accepted"}),
                    ),
                    step(
                        StepKind::Effect,
                        "dcs.leader.acquire",
                        Some(4000),
                        json!({"outcome": "won"}),
                    ),
                ],
            ),
            decision(
                11,
                "leader_acquired",
                Some((10, "dcs.leader.acquire")),
                vec![
                    step(
                        StepKind::Gate,
                        "gate promote",
                        Some(1),
                        json!({"gate.decision": "promote", "gate.outcome": "accepted"}),
                    ),
                    step(
                        StepKind::Transition,
                        "candidate -> primary",
                        Some(2),
                        json!({"to": "primary", "why": "promoting", "reason": "holding the leader key: promoting"}),
                    ),
                    step(
                        StepKind::Effect,
                        "pg.promote",
                        Some(131_000),
                        json!({"outcome": "done"}),
                    ),
                ],
            ),
        ]
    }

    #[test]
    fn a_failover_reads_as_one_episode_with_its_summary() {
        let shown = render("node2", &failover(), 5);
        let summary = shown
            .lines()
            .find(|l| l.contains("became primary"))
            .expect(&shown);
        assert_eq!(
            summary,
            "node2 became primary at 14:02:11 because leader key is free: probing members \
             before the election; policy default said race (preference node2, node3); gate \
             accepted race, accepted promote; promote took 131 ms"
        );
        assert!(
            shown.contains("#11 input leader_acquired ← dcs.leader.acquire of #10"),
            "{shown}"
        );
        assert!(
            shown.contains(
                "      policy.consult: decided (0.7 ms)\n        policy default (0123456789ab) \
                 said race (preference node2, node3) in 0.4 ms, fuel 120000\n"
            ),
            "the decision under its effect: {shown}"
        );
        assert!(shown.contains("pg.promote: done (131 ms)"), "{shown}");
        assert!(
            !shown.contains("peers.probe: ok"),
            "routine effects are left out: {shown}"
        );
        // The unrelated upkeep is an episode of its own (a non-PostgreSQL effect only: not
        // shown).
        assert!(!shown.contains("#8"), "{shown}");
    }

    #[test]
    fn a_policy_that_missed_its_deadline_is_not_taken_for_the_decider() {
        let mut decisions = failover();
        decisions[2].steps[0]
            .fields
            .insert("outcome".into(), json!("fallback"));
        let shown = render("node2", &decisions, 5);
        assert!(
            shown.contains("; policy default missed its deadline; the embedded default decided;"),
            "{shown}"
        );
    }

    #[test]
    fn only_the_last_episodes_are_shown_and_refusals_say_their_rule() {
        let mut decisions = failover();
        decisions.push(decision(
            20,
            "policy_decided",
            None,
            vec![step(
                StepKind::Gate,
                "gate race",
                Some(1),
                json!({"gate.decision": "race", "gate.outcome": "refused",
                       "gate.rule": "leader-key-held", "gate.detail": "node1 holds the leader key"}),
            )],
        ));
        let shown = render("node3", &decisions, 1);
        assert!(!shown.contains("became primary"), "{shown}");
        assert!(
            shown.starts_with(
                "node3 decided at 14:02:11 on policy_decided; gate refused race (leader-key-held)"
            ),
            "{shown}"
        );
        assert!(shown.contains("gate race: refused by leader-key-held: node1 holds the leader key"));
        assert_eq!(
            render("node3", &[], 3),
            "node3: no decisions recorded yet\n"
        );
    }
}
