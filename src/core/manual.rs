//! Operator requests: whether a manual switchover or failover makes sense for the cluster
//! as the lock store shows it (Patroni's REST checks and messages). Pure: the REST API
//! parses the request and maps a refusal to its status code; the leader's and candidate's
//! policies decide the rest once the request is in the `failover` key.

use super::view::{ClusterView, FailoverRequest};
use crate::config::SynchronousMode;

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualAction {
    /// Move the leadership away from a named, live leader.
    Switchover,
    /// Promote a named candidate (with or without a live leader).
    Failover,
}

impl ManualAction {
    /// The action a request really is: a failover naming the leader is a switchover (Patroni).
    pub fn of(asked: ManualAction, request: &FailoverRequest) -> ManualAction {
        if request.leader.is_some() {
            ManualAction::Switchover
        } else {
            asked
        }
    }
}

/// Why a request is refused before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestRefusal {
    /// The request itself is wrong (HTTP 400).
    Invalid(String),
    /// The cluster does not allow it now (HTTP 412).
    NotPossible(String),
}

/// Check `request` (for `action`, see [`ManualAction::of`]) against `view`.
pub fn check_request(
    view: &ClusterView,
    request: &FailoverRequest,
    action: ManualAction,
) -> Result<(), RequestRefusal> {
    use RequestRefusal::{Invalid, NotPossible};
    match action {
        ManualAction::Switchover if request.leader.is_none() => {
            return Err(Invalid(
                "Switchover could be performed only from a specific leader".into(),
            ))
        }
        ManualAction::Failover if request.candidate.is_none() => {
            return Err(Invalid(
                "Failover could be performed only to a specific candidate".into(),
            ))
        }
        _ => {}
    }
    let leader = view.leader_name();
    if let Some(named) = request.leader.as_deref() {
        if leader != Some(named) {
            return Err(NotPossible(format!(
                "leader name does not match: {named} is not the leader ({})",
                leader.unwrap_or("none")
            )));
        }
    }
    let Some(candidate) = request.candidate.as_deref() else {
        return match view.members.keys().any(|m| Some(m.as_str()) != leader) {
            true => Ok(()),
            false => Err(NotPossible("No good candidates have been found".into())),
        };
    };
    if !view.members.contains_key(candidate) {
        return Err(NotPossible(format!(
            "candidate does not exist: no member named {candidate}"
        )));
    }
    if leader == Some(candidate) {
        return Err(match action {
            ManualAction::Switchover => Invalid("Switchover target and source are the same".into()),
            ManualAction::Failover => NotPossible("Can't fail over to the leader.".into()),
        });
    }
    let sync_mode = view
        .config
        .as_ref()
        .is_some_and(|c| c.value.synchronous_mode != SynchronousMode::Off);
    let recorded = view.sync.as_ref().map(|s| &s.value);
    if action == ManualAction::Switchover
        && sync_mode
        && recorded.is_some_and(|s| s.leader.is_some() && !s.allows(candidate))
    {
        return Err(NotPossible(
            "candidate name does not match with sync_standby".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DynamicConfig;
    use crate::core::view::{LeaderKey, MemberInfo, SyncState, Versioned};
    use crate::core::Revision;

    fn cluster(sync_mode: bool) -> ClusterView {
        let mut view = ClusterView {
            leader: Some(LeaderKey {
                name: "node1".into(),
                lease: 7,
                create_revision: Revision(3),
            }),
            sync: Some(Versioned {
                value: SyncState {
                    leader: Some("node1".into()),
                    sync_standby: vec!["node2".into()],
                    quorum: 0,
                },
                mod_revision: Revision(4),
            }),
            config: Some(Versioned {
                value: DynamicConfig {
                    synchronous_mode: if sync_mode {
                        SynchronousMode::On
                    } else {
                        SynchronousMode::Off
                    },
                    ..DynamicConfig::default()
                },
                mod_revision: Revision(2),
            }),
            ..ClusterView::default()
        };
        for name in ["node1", "node2", "node3"] {
            view.members.insert(
                name.into(),
                MemberInfo {
                    name: name.into(),
                    ..MemberInfo::default()
                },
            );
        }
        view
    }

    fn request(leader: Option<&str>, candidate: Option<&str>) -> FailoverRequest {
        FailoverRequest {
            leader: leader.map(str::to_owned),
            candidate: candidate.map(str::to_owned),
            ..FailoverRequest::default()
        }
    }

    fn check(
        view: &ClusterView,
        asked: ManualAction,
        r: FailoverRequest,
    ) -> Result<(), RequestRefusal> {
        check_request(view, &r, ManualAction::of(asked, &r))
    }

    #[test]
    fn patronis_refusals() {
        let v = cluster(true);
        let not_possible =
            |r: Result<(), RequestRefusal>| matches!(r, Err(RequestRefusal::NotPossible(_)));
        let invalid = |r: Result<(), RequestRefusal>| matches!(r, Err(RequestRefusal::Invalid(_)));
        assert!(invalid(check(
            &v,
            ManualAction::Switchover,
            request(None, Some("node2"))
        )));
        assert!(invalid(check(
            &v,
            ManualAction::Failover,
            request(None, None)
        )));
        assert!(not_possible(check(
            &v,
            ManualAction::Switchover,
            request(Some("node3"), None)
        )));
        assert!(not_possible(check(
            &v,
            ManualAction::Failover,
            request(None, Some("node9"))
        )));
        assert!(not_possible(check(
            &v,
            ManualAction::Failover,
            request(None, Some("node1"))
        )));
        assert!(invalid(check(
            &v,
            ManualAction::Switchover,
            request(Some("node1"), Some("node1"))
        )));
    }

    #[test]
    fn synchronous_mode_limits_switchovers_not_failovers() {
        let sync = cluster(true);
        assert_eq!(
            check(
                &sync,
                ManualAction::Switchover,
                request(Some("node1"), Some("node3"))
            ),
            Err(RequestRefusal::NotPossible(
                "candidate name does not match with sync_standby".into()
            ))
        );
        assert_eq!(
            check(
                &sync,
                ManualAction::Switchover,
                request(Some("node1"), Some("node2"))
            ),
            Ok(())
        );
        // A failover naming an asynchronous standby is the operator's call (policies decide).
        assert_eq!(
            check(&sync, ManualAction::Failover, request(None, Some("node3"))),
            Ok(())
        );
        let asynchronous = cluster(false);
        assert_eq!(
            check(
                &asynchronous,
                ManualAction::Switchover,
                request(Some("node1"), Some("node3"))
            ),
            Ok(())
        );
        // A failover naming the leader becomes a switchover and needs the right leader.
        assert_eq!(
            ManualAction::of(
                ManualAction::Failover,
                &request(Some("node1"), Some("node2"))
            ),
            ManualAction::Switchover
        );
    }
}
