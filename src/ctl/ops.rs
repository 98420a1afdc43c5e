//! Operator verbs that ask members' REST APIs, as patronictl's do: `restart`, `reload`,
//! `flush`, `pause`, `resume`. Pure: which members a command addresses, the request it
//! sends each, and how an answer reads (patronictl's messages). The binary does the IO.

use serde_json::{json, Map, Value};

use crate::core::view::{ClusterView, MemberInfo};

/// `--role`: which members a command addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleFilter {
    /// The leader.
    Leader,
    /// The leader (patronictl's name for the same).
    Primary,
    /// Every member but the leader.
    Replica,
    /// Every member.
    Any,
}

impl RoleFilter {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RoleFilter::Leader => "leader",
            RoleFilter::Primary => "primary",
            RoleFilter::Replica => "replica",
            RoleFilter::Any => "any",
        }
    }
}

/// The members named (all when none is), filtered by role; an unknown name is an error.
pub fn select<'a>(
    view: &'a ClusterView,
    names: &[String],
    role: RoleFilter,
) -> Result<Vec<&'a MemberInfo>, String> {
    for name in names {
        if !view.members.contains_key(name) {
            return Err(format!("{name} is not a member of the cluster"));
        }
    }
    let leader = view.leader_name();
    let chosen: Vec<&MemberInfo> = view
        .members
        .values()
        .filter(|m| names.is_empty() || names.contains(&m.name))
        .filter(|m| {
            let is_leader = leader == Some(m.name.as_str());
            match role {
                RoleFilter::Leader | RoleFilter::Primary => is_leader,
                RoleFilter::Replica => !is_leader,
                RoleFilter::Any => true,
            }
        })
        .collect();
    if chosen.is_empty() {
        return Err("no member matches the names and role given".into());
    }
    Ok(chosen)
}

/// A member's REST API base (`api_url` without its `/patroni`).
pub fn api_base(member: &MemberInfo) -> String {
    member
        .api_url
        .strip_suffix("/patroni")
        .unwrap_or(&member.api_url)
        .trim_end_matches('/')
        .to_string()
}

/// What `restart` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartOptions {
    /// Only members pending a restart.
    pub pending: bool,
    /// When (an ISO 8601 time with a time zone); none: now.
    pub scheduled: Option<String>,
    /// Only servers older than this version (`15.4`).
    pub pg_version: Option<String>,
    /// How long to wait for PostgreSQL to come back (seconds or with a unit).
    pub timeout: Option<String>,
}

/// The `POST /restart` body.
pub fn restart_body(options: &RestartOptions) -> Value {
    let mut body = Map::new();
    if options.pending {
        body.insert("restart_pending".into(), json!(true));
    }
    if let Some(at) = &options.scheduled {
        body.insert("schedule".into(), json!(at));
    }
    if let Some(v) = &options.pg_version {
        body.insert("postgres_version".into(), json!(v));
    }
    if let Some(t) = &options.timeout {
        body.insert("timeout".into(), json!(t));
    }
    Value::Object(body)
}

/// An answer, as the operator reads it; `ok` says whether it counts as a success for the
/// exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// patronictl's line.
    pub line: String,
    /// A success.
    pub ok: bool,
}

/// patronictl's reading of a `POST /restart` answer.
pub fn restart_outcome(member: &str, status: u16, body: &str) -> Outcome {
    match status {
        200 => Outcome {
            line: format!("Success: restart on member {member}"),
            ok: true,
        },
        202 => Outcome {
            line: format!("Success: restart scheduled on member {member}"),
            ok: true,
        },
        409 => Outcome {
            line: format!("Failed: another restart is already scheduled on member {member}"),
            ok: false,
        },
        _ => Outcome {
            line: format!("Failed: restart for member {member}, status code={status}, ({body})"),
            ok: false,
        },
    }
}

/// patronictl's reading of an answer to `action` (`reload`, `flush scheduled restart`).
pub fn action_outcome(action: &str, member: &str, status: u16, body: &str) -> Outcome {
    if status >= 400 {
        Outcome {
            line: format!("Failed: {action} for member {member}, status code={status}, ({body})"),
            ok: false,
        }
    } else {
        Outcome {
            line: format!("Success: {action} for member {member}"),
            ok: true,
        }
    }
}

/// patronictl's reading of a `POST /reload` answer: 202 says when it is handled.
pub fn reload_outcome(member: &str, status: u16, body: &str, loop_wait: u32) -> Outcome {
    if status == 202 {
        Outcome {
            line: format!(
                "Reload request received for member {member} and will be processed within {loop_wait} seconds"
            ),
            ok: true,
        }
    } else {
        action_outcome("reload", member, status, body)
    }
}

/// Whether the member key says `scheduled_restart`.
pub fn has_scheduled_restart(member: &MemberInfo) -> bool {
    member.raw.get("scheduled_restart").is_some()
}

/// Whether the member key says `pending_restart`.
pub fn pending_restart(member: &MemberInfo) -> bool {
    member.raw.get("pending_restart") == Some(&Value::Bool(true))
}

/// Whether every member key says `pause` as `paused` (what `pause --wait` and `resume
/// --wait` wait for); the members that do not yet.
pub fn members_not_yet(view: &ClusterView, paused: bool) -> Vec<String> {
    view.members
        .values()
        .filter(|m| (m.raw.get("pause") == Some(&Value::Bool(true))) != paused)
        .map(|m| m.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::view::LeaderKey;
    use crate::core::Revision;

    fn view() -> ClusterView {
        let mut v = ClusterView::default();
        for name in ["node1", "node2", "node3"] {
            v.members.insert(
                name.into(),
                MemberInfo {
                    name: name.into(),
                    api_url: format!("http://127.0.0.1:8008/{name}/patroni"),
                    raw: if name == "node3" {
                        json!({"pending_restart": true, "pause": true})
                    } else {
                        json!({})
                    },
                    ..MemberInfo::default()
                },
            );
        }
        v.leader = Some(LeaderKey {
            name: "node1".into(),
            lease: 1,
            create_revision: Revision(1),
        });
        v
    }

    fn names(members: Vec<&MemberInfo>) -> Vec<&str> {
        members.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn members_are_chosen_by_name_and_role() {
        let v = view();
        let all = select(&v, &[], RoleFilter::Any).expect("every member");
        assert_eq!(names(all), ["node1", "node2", "node3"]);
        let replicas = select(&v, &[], RoleFilter::Replica).expect("the replicas");
        assert_eq!(names(replicas), ["node2", "node3"]);
        let leader = select(&v, &[], RoleFilter::Primary).expect("the leader");
        assert_eq!(names(leader), ["node1"]);
        let named = select(&v, &["node2".into()], RoleFilter::Any).expect("node2");
        assert_eq!(names(named), ["node2"]);
        assert!(select(&v, &["node9".into()], RoleFilter::Any).is_err());
        assert!(select(&v, &["node2".into()], RoleFilter::Leader).is_err());
        assert_eq!(api_base(&v.members["node1"]), "http://127.0.0.1:8008/node1");
        assert!(pending_restart(&v.members["node3"]));
        assert_eq!(members_not_yet(&v, true), ["node1", "node2"]);
    }

    #[test]
    fn restart_bodies_and_answers_read_as_patronictls() {
        let body = restart_body(&RestartOptions {
            pending: true,
            scheduled: Some("2030-01-01T00:00:00+00:00".into()),
            pg_version: Some("15.4".into()),
            timeout: None,
        });
        assert_eq!(
            body,
            json!({"restart_pending": true, "schedule": "2030-01-01T00:00:00+00:00", "postgres_version": "15.4"})
        );
        assert_eq!(restart_body(&RestartOptions::default()), json!({}));
        assert_eq!(
            restart_outcome("node2", 200, "restarted successfully").line,
            "Success: restart on member node2"
        );
        assert!(!restart_outcome("node2", 409, "").ok);
        let failed = restart_outcome("node2", 503, "restart conditions are not satisfied");
        assert_eq!(
            failed.line,
            "Failed: restart for member node2, status code=503, (restart conditions are not satisfied)"
        );
        assert!(!failed.ok);
        assert!(reload_outcome("node2", 202, "reload scheduled", 10).ok);
        assert!(!reload_outcome("node2", 400, "bad file", 10).ok);
    }
}

/// `switchover` or `failover`, as the operator asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver<'a> {
    /// `switchover` (from a leader) or `failover` (to a candidate).
    pub switchover: bool,
    /// `--leader` (`--primary`).
    pub leader: Option<&'a str>,
    /// `--candidate`.
    pub candidate: Option<&'a str>,
    /// `--scheduled`, with its zone (switchover only).
    pub scheduled_at: Option<&'a str>,
}

/// patronictl's checks of a switchover or failover against the cluster, then the body it
/// posts (to the leader's `/switchover` or `/failover`). With no `--leader` a switchover
/// is from the current leader.
pub fn hand_over_body(
    view: &ClusterView,
    scope: &str,
    asked: &HandOver<'_>,
) -> Result<Value, String> {
    let action = if asked.switchover {
        "Switchover"
    } else {
        "Failover"
    };
    let leader = view.leader_name();
    if asked.switchover {
        let Some(current) = leader else {
            return Err("This cluster has no leader; use failover to a named candidate".into());
        };
        if let Some(named) = asked.leader.filter(|l| *l != current) {
            return Err(format!(
                "Member {named} is not the leader of cluster {scope}"
            ));
        }
    } else if asked.candidate.is_none() {
        return Err("Failover could be performed only to a specific candidate".into());
    }
    if asked.scheduled_at.is_some() && !asked.switchover {
        return Err("Failover can't be scheduled".into());
    }
    if let Some(candidate) = asked.candidate {
        if leader == Some(candidate) {
            return Err(format!("{action} target and source are the same."));
        }
        let can_lead = view
            .members
            .get(candidate)
            .is_some_and(|m| m.tags.get("nofailover").and_then(Value::as_bool) != Some(true));
        if !can_lead {
            return Err(format!(
                "Member {candidate} does not exist in cluster {scope} or is tagged as nofailover"
            ));
        }
    }
    let mut body = Map::new();
    if asked.switchover {
        body.insert("leader".into(), json!(asked.leader.or(leader)));
    }
    if let Some(candidate) = asked.candidate {
        body.insert("candidate".into(), json!(candidate));
    }
    if let Some(at) = asked.scheduled_at {
        body.insert("scheduled_at".into(), json!(at));
    }
    Ok(Value::Object(body))
}

/// patronictl's reading of the answer: the member's text after a timestamp on success
/// (200, or 202 for a scheduled one), else `<Action> failed, details: <code>, <text>`.
pub fn hand_over_outcome(switchover: bool, status: u16, body: &str, timestamp: &str) -> Outcome {
    match status {
        200 | 202 => Outcome {
            line: format!("{timestamp} {body}"),
            ok: true,
        },
        _ => {
            let action = if switchover { "Switchover" } else { "Failover" };
            let result = if body.to_lowercase().contains("status unknown") {
                "result unknown"
            } else {
                "failed"
            };
            Outcome {
                line: format!("{action} {result}, details: {status}, {body}"),
                ok: false,
            }
        }
    }
}

#[cfg(test)]
mod hand_over_tests {
    use super::*;
    use crate::core::view::LeaderKey;

    fn view() -> ClusterView {
        let mut v = ClusterView::default();
        for name in ["node1", "node2", "node3"] {
            let mut m = MemberInfo {
                name: name.into(),
                ..MemberInfo::default()
            };
            if name == "node3" {
                m.tags.insert("nofailover".into(), json!(true));
            }
            v.members.insert(name.into(), m);
        }
        v.leader = Some(LeaderKey {
            name: "node1".into(),
            lease: 1,
            create_revision: crate::core::types::Revision(1),
        });
        v
    }

    fn ask<'a>(
        switchover: bool,
        leader: Option<&'a str>,
        candidate: Option<&'a str>,
    ) -> HandOver<'a> {
        HandOver {
            switchover,
            leader,
            candidate,
            scheduled_at: None,
        }
    }

    #[test]
    fn patronictls_checks_before_anything_is_sent() {
        let v = view();
        assert_eq!(
            hand_over_body(&v, "batman", &ask(true, None, Some("node2"))),
            Ok(json!({"leader": "node1", "candidate": "node2"}))
        );
        assert_eq!(
            hand_over_body(&v, "batman", &ask(true, Some("node2"), None)),
            Err("Member node2 is not the leader of cluster batman".into())
        );
        assert_eq!(
            hand_over_body(&v, "batman", &ask(true, None, Some("node3"))),
            Err("Member node3 does not exist in cluster batman or is tagged as nofailover".into())
        );
        assert_eq!(
            hand_over_body(&v, "batman", &ask(false, None, None)),
            Err("Failover could be performed only to a specific candidate".into())
        );
        assert_eq!(
            hand_over_body(&v, "batman", &ask(false, None, Some("node1"))),
            Err("Failover target and source are the same.".into())
        );
        let scheduled = HandOver {
            scheduled_at: Some("2030-01-01T00:00:00+00:00"),
            ..ask(true, None, Some("node2"))
        };
        assert_eq!(
            hand_over_body(&v, "batman", &scheduled),
            Ok(
                json!({"leader": "node1", "candidate": "node2", "scheduled_at": "2030-01-01T00:00:00+00:00"})
            )
        );
        assert!(!hand_over_outcome(true, 412, "candidate name does not match", "t").ok);
        assert_eq!(
            hand_over_outcome(true, 200, "Successfully switched over to \"node2\"", "t").line,
            "t Successfully switched over to \"node2\""
        );
    }
}
