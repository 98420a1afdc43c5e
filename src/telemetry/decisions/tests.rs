//! The decision log from spans made the way `runtime::turn` makes them.

use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt as _;

use super::{DecisionLayer, DecisionLog, Query, StepKind};

fn with_log<T>(log: &Arc<DecisionLog>, body: impl FnOnce() -> T) -> T {
    let subscriber = tracing_subscriber::registry().with(DecisionLayer::new(log.clone()));
    tracing::subscriber::with_default(subscriber, body)
}

fn input(kind: &'static str) -> tracing::Span {
    tracing::info_span!(
        "pgwarden.input",
        otel.name = format!("input {kind}"),
        pgwarden.input = kind,
        pgwarden.member = "node2",
        pgwarden.leader = tracing::field::Empty,
    )
}

fn effect(name: &str, routine: bool) -> tracing::Span {
    tracing::info_span!(
        "pgwarden.effect",
        otel.name = %name,
        pgwarden.effect = %name,
        pgwarden.routine = routine,
        pgwarden.outcome = tracing::field::Empty,
    )
}

fn all(log: &DecisionLog) -> Vec<super::Decision> {
    log.query(&Query {
        limit: usize::MAX,
        ..Query::default()
    })
}

#[test]
fn an_input_its_steps_and_the_input_its_effect_caused_form_a_chain() {
    let log = DecisionLog::new(10, None).expect("test setup");
    with_log(&log, || {
        let first = input("cluster_changed");
        let acquire = first.in_scope(|| {
            let _ = tracing::info_span!(
                "pgwarden.gate",
                otel.name = "gate race",
                pgwarden.gate.decision = "race",
                pgwarden.gate.outcome = "accepted",
            );
            let _ = tracing::info_span!(
                "pgwarden.transition",
                otel.name = "replica -> candidate",
                pgwarden.why = "leader-key-free",
            );
            effect("dcs.leader.acquire", false)
        });
        first.record("pgwarden.leader", "node2");
        drop(first);
        // The effect is still running: the decision is shown, incomplete.
        let running = all(&log);
        assert_eq!(running.len(), 1);
        assert!(!running[0].complete);
        assert_eq!(running[0].steps[2].duration_us, None);

        acquire.record("pgwarden.outcome", "won");
        let second = input("leader_acquired");
        second.follows_from(&acquire);
        drop(acquire);
        second.in_scope(|| {
            let promote = effect("pg.promote", false);
            promote.record("pgwarden.outcome", "done");
        });
        drop(second);
    });
    let decisions = all(&log);
    assert_eq!(decisions.len(), 2, "{decisions:#?}");
    let (first, second) = (&decisions[0], &decisions[1]);
    assert!(first.complete && second.complete);
    assert_eq!(first.input, "cluster_changed");
    assert_eq!(first.facts["member"], "node2");
    assert_eq!(
        first.facts["leader"], "node2",
        "recorded after the span began"
    );
    let kinds: Vec<StepKind> = first.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [StepKind::Gate, StepKind::Transition, StepKind::Effect]
    );
    assert_eq!(first.steps[0].fields["gate.outcome"], "accepted");
    assert_eq!(first.steps[1].name, "replica -> candidate");
    assert_eq!(first.steps[2].fields["outcome"], "won");
    assert!(first.steps[2].duration_us.is_some());
    let cause = second
        .caused_by
        .as_ref()
        .expect("linked to the acquisition");
    assert_eq!(cause.decision, first.id);
    assert_eq!(cause.effect, "dcs.leader.acquire");
    assert_eq!(second.steps[0].name, "pg.promote");
    assert_eq!(second.steps[0].fields["outcome"], "done");
}

#[test]
fn routine_upkeep_is_not_kept() {
    let log = DecisionLog::new(10, None).expect("test setup");
    with_log(&log, || {
        input("lease_renewed").in_scope(|| {
            let _ = effect("dcs.lease.renew", true);
            let _ = effect("dcs.member.write", true);
        });
        input("postgres_probed").in_scope(|| {
            let _ = effect("dcs.member.write", true);
            let _ = effect("dcs.sync.write", false);
        });
    });
    let decisions = all(&log);
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    assert_eq!(decisions[0].input, "postgres_probed");
    assert_eq!(log.stats().recorded, 1);
}

#[test]
fn the_ring_keeps_the_newest_and_queries_filter_by_kind_and_limit() {
    let log = DecisionLog::new(3, None).expect("test setup");
    with_log(&log, || {
        for i in 0..5 {
            let name = if i % 2 == 0 {
                "pg.restart"
            } else {
                "dcs.sync.write"
            };
            input("timer").in_scope(|| drop(effect(name, false)));
        }
    });
    let kept = all(&log);
    assert_eq!(kept.iter().map(|d| d.id).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(log.stats().evicted, 2);
    let restarts = log.query(&Query {
        kinds: vec!["pg.restart".into()],
        limit: 10,
        ..Query::default()
    });
    assert_eq!(restarts.iter().map(|d| d.id).collect::<Vec<_>>(), [3, 5]);
    let effects = log.query(&Query {
        kinds: vec!["effect".into()],
        limit: 1,
        ..Query::default()
    });
    assert_eq!(effects.iter().map(|d| d.id).collect::<Vec<_>>(), [5]);
    let future = log.query(&Query {
        since_ms: Some(kept[2].at_unix_ms + 60_000),
        limit: 10,
        ..Query::default()
    });
    assert!(future.is_empty());
}

#[test]
fn secrets_are_scrubbed_from_every_text_and_the_file() {
    let dir = tempfile::tempdir().expect("test setup");
    let path = dir.path().join("decisions.jsonl");
    let log = DecisionLog::new(10, Some(&path)).expect("test setup");
    log.set_secrets(vec!["hunter2-replication".into()]);
    with_log(&log, || {
        input("pg_action_finished").in_scope(|| {
            let _ = tracing::info_span!(
                "pgwarden.transition",
                otel.name = "starting -> replica",
                pgwarden.reason = "pg_basebackup failed: password=hunter2-replication host=x",
            );
        });
    });
    let decisions = all(&log);
    let shown = serde_json::to_string(&decisions).expect("test setup");
    assert!(shown.contains("password=******** host=x"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    // The writer thread appends on its own: wait for the line (bounded).
    let mut written = String::new();
    for _ in 0..200 {
        written = std::fs::read_to_string(&path).unwrap_or_default();
        if written.ends_with('\n') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(written.lines().count(), 1, "{written:?}");
    assert!(written.contains("********") && !written.contains("hunter2"));
    let line: serde_json::Value = serde_json::from_str(written.trim()).expect("test setup");
    assert_eq!(line["input"], "pg_action_finished");
}

#[test]
fn a_policy_decision_is_a_step_of_the_consult_effects_decision() {
    let log = DecisionLog::new(10, None).expect("test setup");
    with_log(&log, || {
        let consult = input("peers_probed").in_scope(|| effect("policy.consult", false));
        // On the policy thread (the agent's subscriber is global), inside the effect's span.
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::scope(|s| {
            s.spawn(|| {
                let _subscriber = tracing::dispatcher::set_default(&dispatch);
                consult.in_scope(|| {
                    let _ = tracing::info_span!(
                        "pgwarden.policy",
                        otel.name = "policy.decide",
                        pgwarden.policy = "default",
                        pgwarden.policy.decision = "race (preference node2, node3)",
                    );
                });
            });
        });
    });
    let decisions = all(&log);
    assert_eq!(decisions.len(), 1);
    let policy = &decisions[0].steps[1];
    assert_eq!(policy.kind, StepKind::Policy);
    assert_eq!(
        policy.fields["policy.decision"],
        "race (preference node2, node3)"
    );
    assert_eq!(policy.parent, Some(0), "part of the consult effect");
}
