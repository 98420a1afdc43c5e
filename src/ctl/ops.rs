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
