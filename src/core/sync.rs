//! Synchronous replication bookkeeping: the safe order of changes between PostgreSQL's
//! `synchronous_standby_names` and the `/sync` key.
//!
//! Invariant: every member recorded in `/sync` is synchronous in PostgreSQL. So a standby
//! is added to PostgreSQL first and recorded only once PostgreSQL reports it `sync`; it is
//! removed from `/sync` first and from PostgreSQL second. A failover candidate chosen from
//! `/sync` therefore has every acknowledged commit.

use super::types::Lsn;
use super::view::{ReplicationPeer, SyncState, Versioned};

/// The next single step towards the desired synchronous set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// Compare-and-swap `/sync`.
    Record {
        /// New value.
        state: SyncState,
        /// Revision read (`None`: create).
        expected_revision: Option<i64>,
    },
    /// Change `synchronous_standby_names`.
    Configure(Vec<String>),
}

/// Decide the next step, or `None` when PostgreSQL and `/sync` already agree with `desired`.
pub fn next_step(
    me: &str,
    recorded: Option<&Versioned<SyncState>>,
    configured: &[String],
    replication: &[ReplicationPeer],
    desired: &[String],
    barrier: Option<Lsn>,
) -> Option<SyncStep> {
    let expected_revision = recorded.map(|r| r.mod_revision);
    let mine = recorded.filter(|r| r.value.leader.as_deref() == Some(me));
    let Some(mine) = mine else {
        // Claim /sync with an empty set: only the leader itself may then race.
        return Some(SyncStep::Record {
            state: state(me, Vec::new()),
            expected_revision,
        });
    };
    let in_sync = &mine.value.sync_standby;
    let keep: Vec<String> = in_sync
        .iter()
        .filter(|n| desired.contains(n) && configured.contains(n))
        .cloned()
        .collect();
    if keep.len() != in_sync.len() {
        return Some(SyncStep::Record {
            state: state(me, keep),
            expected_revision,
        });
    }
    if configured != desired {
        return Some(SyncStep::Configure(desired.to_vec()));
    }
    let confirmed: Vec<String> = desired
        .iter()
        .filter(|n| {
            replication.iter().any(|r| {
                &r.application_name == *n
                    && r.state == "streaming"
                    && (r.sync_state == "sync" || r.sync_state == "quorum")
                    // Caught up with what the primary had when it made the standby
                    // synchronous: earlier commits were acknowledged without it.
                    && barrier.is_some_and(|b| r.flush_lsn.is_some_and(|f| f >= b))
            })
        })
        .cloned()
        .collect();
    let mut wanted: Vec<String> = in_sync.clone();
    for n in confirmed {
        if !wanted.contains(&n) {
            wanted.push(n);
        }
    }
    wanted.sort();
    let mut current = in_sync.clone();
    current.sort();
    if wanted != current {
        return Some(SyncStep::Record {
            state: state(me, wanted),
            expected_revision,
        });
    }
    None
}

fn state(me: &str, mut names: Vec<String>) -> SyncState {
    names.sort();
    SyncState {
        leader: Some(me.to_string()),
        sync_standby: names,
        quorum: 0,
    }
}

/// Render member names as `synchronous_standby_names`.
pub fn render_standby_names(names: &[String]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
        .collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("FIRST {n} ({})", quoted.join(",")),
    }
}

/// Parse `synchronous_standby_names` back into member names (`FIRST n (...)`, `ANY n
/// (...)`, `n (...)` or a plain list).
pub fn parse_standby_names(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    let inner = match (text.find('('), text.rfind(')')) {
        (Some(open), Some(close)) if close > open => &text[open + 1..close],
        _ => text,
    };
    inner
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty() && s != "*")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, sync_state: &str) -> ReplicationPeer {
        ReplicationPeer {
            application_name: name.into(),
            state: "streaming".into(),
            sync_state: sync_state.into(),
            flush_lsn: Some(Lsn(100)),
            replay_lsn: Some(Lsn(100)),
            usename: None,
            client_addr: None,
            sync_priority: 0,
        }
    }

    fn recorded(leader: &str, sync: &[&str]) -> Versioned<SyncState> {
        Versioned {
            value: SyncState {
                leader: Some(leader.into()),
                sync_standby: sync.iter().map(|s| s.to_string()).collect(),
                quorum: 0,
            },
            mod_revision: 5,
        }
    }

    #[test]
    fn new_leader_claims_sync_key_first() {
        let old = recorded("a", &["b"]);
        let step = next_step("b", Some(&old), &[], &[], &["c".into()], None);
        assert_eq!(
            step,
            Some(SyncStep::Record {
                state: state("b", vec![]),
                expected_revision: Some(5)
            })
        );
    }

    #[test]
    fn replacement_shrinks_record_then_configures_then_records() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // b is recorded; c is desired instead.
        let rec = recorded("a", &["b"]);
        let step = next_step(
            "a",
            Some(&rec),
            &names(&["b"]),
            &[peer("c", "async")],
            &names(&["c"]),
            Some(Lsn(100)),
        );
        assert_eq!(
            step,
            Some(SyncStep::Record {
                state: state("a", vec![]),
                expected_revision: Some(5)
            })
        );
        let rec = recorded("a", &[]);
        let step = next_step(
            "a",
            Some(&rec),
            &names(&["b"]),
            &[peer("c", "async")],
            &names(&["c"]),
            Some(Lsn(100)),
        );
        assert_eq!(step, Some(SyncStep::Configure(names(&["c"]))));
        // Configured but not yet confirmed sync: nothing to record yet.
        let step = next_step(
            "a",
            Some(&rec),
            &names(&["c"]),
            &[peer("c", "potential")],
            &names(&["c"]),
            Some(Lsn(100)),
        );
        assert_eq!(step, None);
        let step = next_step(
            "a",
            Some(&rec),
            &names(&["c"]),
            &[peer("c", "sync")],
            &names(&["c"]),
            Some(Lsn(100)),
        );
        assert_eq!(
            step,
            Some(SyncStep::Record {
                state: state("a", names(&["c"])),
                expected_revision: Some(5)
            })
        );
        let rec = recorded("a", &["c"]);
        assert_eq!(
            next_step(
                "a",
                Some(&rec),
                &names(&["c"]),
                &[peer("c", "sync")],
                &names(&["c"]),
                Some(Lsn(100))
            ),
            None
        );
    }

    #[test]
    fn a_standby_behind_the_barrier_is_not_recorded_yet() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rec = recorded("a", &[]);
        // PostgreSQL calls c synchronous, but c has not flushed what the primary had when
        // it became synchronous: commits before that were acknowledged without it.
        let step = next_step(
            "a",
            Some(&rec),
            &names(&["c"]),
            &[peer("c", "sync")],
            &names(&["c"]),
            Some(Lsn(150)),
        );
        assert_eq!(step, None);
        // No barrier measured yet: never record.
        let step = next_step(
            "a",
            Some(&rec),
            &names(&["c"]),
            &[peer("c", "sync")],
            &names(&["c"]),
            None,
        );
        assert_eq!(step, None);
    }

    #[test]
    fn standby_names_render_and_parse() {
        let one = vec!["node2".to_string()];
        assert_eq!(render_standby_names(&one), "\"node2\"");
        assert_eq!(parse_standby_names("\"node2\""), one);
        let two = vec!["a".to_string(), "b".to_string()];
        assert_eq!(render_standby_names(&two), "FIRST 2 (\"a\",\"b\")");
        assert_eq!(parse_standby_names(&render_standby_names(&two)), two);
        assert_eq!(parse_standby_names("ANY 1 (x, y)"), vec!["x", "y"]);
        assert!(parse_standby_names("").is_empty());
    }
}
