//! Semantic sanity of what a guest answers: a decision that names members the view does not
//! have, names one twice, asks for an absurd wait or carries megabytes of "reason" is
//! malformed, and the host decides without it. This is sanity only: the core's invariant
//! gate enforces safety on every decision separately, whoever made it.

use std::collections::HashSet;
use std::time::Duration;

use pgwarden_policy::{ClusterView, Decision, Fence, Info, Race};

/// The longest wait a policy may ask for (the host caps waits at `ttl` anyway; anything
/// beyond this is a bug, not a choice).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The longest reason text a decision may carry, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// The longest policy name and version, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// The longest policy description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Every problem of `decision` as an answer to a call with `view`; empty when it is sane.
pub fn decision_problems(decision: &Decision, view: &ClusterView) -> Vec<String> {
    let mut problems = Vec::new();
    let members: HashSet<&str> = view.members.iter().map(|m| m.name.as_str()).collect();

    match &decision.race {
        Race::Race => {}
        Race::StandDown(reason) => reason_problem(&mut problems, "race.stand-down", reason),
        Race::Wait(wait) => {
            let max_ms = u64::try_from(MAX_WAIT.as_millis()).unwrap_or(u64::MAX);
            if wait.delay_ms > max_ms {
                problems.push(format!(
                    "race.wait: delay {} ms exceeds the maximum of {max_ms} ms",
                    wait.delay_ms
                ));
            }
            reason_problem(&mut problems, "race.wait", &wait.reason);
        }
    }

    names_problems(&mut problems, "preference", &decision.preference, &members);

    match &decision.fence {
        Fence::None => {}
        Fence::Demote(reason) => reason_problem(&mut problems, "fence.demote", reason),
        Fence::Fence(reason) => reason_problem(&mut problems, "fence.fence", reason),
    }

    if let Some(sync) = &decision.sync_standbys {
        names_problems(&mut problems, "sync_standbys", sync, &members);
        if sync.contains(&view.me) {
            problems.push(format!(
                "sync_standbys: names the calling node {:?}, which would be the leader",
                view.me
            ));
        }
    }
    problems
}

/// Every problem of a policy's self-description; empty when it is sane.
pub fn info_problems(info: &Info) -> Vec<String> {
    let mut problems = Vec::new();
    if info.name.trim().is_empty() {
        problems.push("name: empty".to_string());
    }
    for (field, value, max) in [
        ("name", &info.name, MAX_NAME_BYTES),
        ("version", &info.version, MAX_NAME_BYTES),
        ("description", &info.description, MAX_DESCRIPTION_BYTES),
    ] {
        if value.len() > max {
            problems.push(format!("{field}: {} bytes, more than {max}", value.len()));
        }
    }
    problems
}

fn reason_problem(problems: &mut Vec<String>, field: &str, reason: &str) {
    if reason.len() > MAX_REASON_BYTES {
        problems.push(format!(
            "{field}: reason of {} bytes exceeds {MAX_REASON_BYTES}",
            reason.len()
        ));
    }
}

fn names_problems(
    problems: &mut Vec<String>,
    field: &str,
    names: &[String],
    members: &HashSet<&str>,
) {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            problems.push(format!("{field}: {name:?} is named twice"));
        } else if !members.contains(name.as_str()) {
            problems.push(format!("{field}: {name:?} is not a member of the view"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarden_policy::{Config, Lease, Member, Role, Wait};

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            role: Role::Replica,
            state: "streaming".into(),
            streaming: true,
            timeline: Some(1),
            received_lsn: Some(100),
            replayed_lsn: Some(100),
            lag_bytes: Some(0),
            tags: Vec::new(),
            is_sync: false,
            failover_priority: 1,
            heartbeat_age_ms: Some(10),
            reachable: Some(true),
        }
    }

    fn view() -> ClusterView {
        ClusterView {
            now_ms: 1,
            me: "a".into(),
            members: vec![member("a"), member("b"), member("c")],
            lease: Lease::default(),
            last_leader: None,
            leaderless_ms: None,
            cluster_timeline: Some(1),
            leader_lsn: Some(100),
            sync_leader: None,
            sync_standbys: Vec::new(),
            switchover: None,
            config: Config::default(),
        }
    }

    #[test]
    fn a_sane_decision_has_no_problems() {
        let decision = Decision {
            race: Race::Wait(Wait {
                delay_ms: 1_000,
                reason: "later".into(),
            }),
            preference: vec!["b".into(), "a".into()],
            fence: Fence::Demote("lagging".into()),
            sync_standbys: Some(vec!["b".into(), "c".into()]),
        };
        assert_eq!(decision_problems(&decision, &view()), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_named() {
        let decision = Decision {
            race: Race::Wait(Wait {
                delay_ms: u64::MAX,
                reason: "x".repeat(MAX_REASON_BYTES + 1),
            }),
            preference: vec!["ghost".into(), "b".into(), "b".into()],
            fence: Fence::Fence("y".repeat(MAX_REASON_BYTES + 1)),
            sync_standbys: Some(vec!["a".into(), "nobody".into()]),
        };
        let problems = decision_problems(&decision, &view());
        let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
        assert!(has("race.wait: delay"), "{problems:?}");
        assert!(has("race.wait: reason"), "{problems:?}");
        assert!(has("preference: \"ghost\" is not a member"), "{problems:?}");
        assert!(has("preference: \"b\" is named twice"), "{problems:?}");
        assert!(has("fence.fence: reason"), "{problems:?}");
        assert!(
            has("sync_standbys: \"nobody\" is not a member"),
            "{problems:?}"
        );
        assert!(has("sync_standbys: names the calling node"), "{problems:?}");
        assert_eq!(problems.len(), 7, "{problems:?}");
    }

    #[test]
    fn the_wait_bound_is_inclusive() {
        let decision = Decision {
            race: Race::Wait(Wait {
                delay_ms: 3_600_000,
                reason: String::new(),
            }),
            preference: Vec::new(),
            fence: Fence::None,
            sync_standbys: None,
        };
        assert!(decision_problems(&decision, &view()).is_empty());
    }

    #[test]
    fn info_must_have_a_name_and_bounded_texts() {
        let info = Info {
            name: " ".into(),
            version: "v".repeat(MAX_NAME_BYTES + 1),
            description: "fine".into(),
        };
        let problems = info_problems(&info);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
