//! Health-check rules behind `/primary`, `/replica`, `/sync` and friends: Patroni's rules
//! over a published `NodeStatus`. Pure; the REST API only maps the verdict to a status code.

use super::status::{NodeStatus, Role};

/// A health-check request as parsed from the path and query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckQuery {
    /// `?lag=` in bytes.
    pub max_lag_bytes: Option<u64>,
    /// `?replication_state=`.
    pub replication_state: Option<String>,
    /// `?tag_<k>=<v>` pairs.
    pub tags: Vec<(String, String)>,
}

/// The checks, named by what they admit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `/`, `/primary`, `/read-write`.
    Primary,
    /// `/leader`.
    Leader,
    /// `/standby-leader` (no standby clusters yet: never).
    StandbyLeader,
    /// `/replica`.
    Replica,
    /// `/read-only`.
    ReadOnly,
    /// `/sync`, `/synchronous`.
    Sync,
    /// `/read-only-sync`.
    ReadOnlySync,
    /// `/async`, `/asynchronous`.
    Async,
    /// `/quorum`: a quorum voter (`synchronous_mode: quorum`).
    Quorum,
    /// `/read-only-quorum`: the primary or a quorum voter.
    ReadOnlyQuorum,
    /// `/health`.
    Health,
    /// Unknown path: Patroni answers 503.
    Unknown,
}

impl Check {
    /// Map a path to its check, as Patroni does (first matching name wins).
    pub fn from_path(path: &str) -> Check {
        let p = path.trim_matches('/');
        match p {
            "" | "primary" | "read-write" | "master" => Check::Primary,
            "leader" => Check::Leader,
            "standby-leader" | "standby_leader" => Check::StandbyLeader,
            "replica" => Check::Replica,
            "read-only" => Check::ReadOnly,
            "sync" | "synchronous" => Check::Sync,
            "read-only-sync" | "read-only-synchronous" => Check::ReadOnlySync,
            "async" | "asynchronous" => Check::Async,
            "quorum" => Check::Quorum,
            "read-only-quorum" => Check::ReadOnlyQuorum,
            "health" => Check::Health,
            _ => Check::Unknown,
        }
    }
}

impl Check {
    /// The leader checks answer for the role alone; `?tag_` filters apply to the others
    /// (Patroni's `ignore_tags`).
    fn ignores_tags(self) -> bool {
        matches!(self, Check::Primary | Check::Leader | Check::StandbyLeader)
    }
}

/// Whether the node passes `check` (HTTP 200) or not (503), by Patroni's rules: the
/// synchronous checks need a cluster view (Patroni answers 503 on them while the lock store
/// has never been read), `/sync` admits synchronous standbys and `/quorum` quorum voters, and
/// while paused without a view the leader checks go by PostgreSQL's role alone.
pub fn passes(status: &NodeStatus, check: Check, query: &CheckQuery) -> bool {
    let primary = is_primary(status);
    let replica = || is_healthy_replica(status, query);
    let with_view = status.view.is_some();
    let verdict = match check {
        Check::Primary => primary,
        Check::Leader => leads(status) && is_running(status),
        Check::StandbyLeader | Check::Unknown => false,
        Check::Replica => replica(),
        Check::ReadOnly => primary || replica(),
        Check::Health => is_running(status),
        Check::Sync => with_view && status.is_sync_standby() && replica(),
        Check::Quorum => with_view && status.is_quorum_standby() && replica(),
        Check::Async => {
            with_view && !status.is_sync_standby() && !status.is_quorum_standby() && replica()
        }
        Check::ReadOnlySync => with_view && (primary || (status.is_sync_standby() && replica())),
        Check::ReadOnlyQuorum => {
            with_view && (primary || (status.is_quorum_standby() && replica()))
        }
    };
    verdict && (check.ignores_tags() || tags_match(status, &query.tags))
}

/// This node leads: it holds the leader key, or, paused with no view of the cluster, its
/// PostgreSQL runs as a primary (Patroni keeps answering for the operator's primary then).
fn leads(status: &NodeStatus) -> bool {
    status.holds_leader_key
        || (status.view.is_none() && status.config.pause && is_pg_primary(status))
}

fn is_running(status: &NodeStatus) -> bool {
    status.pg.as_ref().is_some_and(|p| p.is_running())
}

fn is_pg_primary(status: &NodeStatus) -> bool {
    status.role() == Role::Primary && is_running(status)
}

fn is_primary(status: &NodeStatus) -> bool {
    leads(status) && is_pg_primary(status)
}

/// A running standby that takes reads: not `noloadbalance`, in the wanted replication
/// state, within `?lag=` of the leader.
fn is_healthy_replica(status: &NodeStatus, query: &CheckQuery) -> bool {
    if !is_running(status) || status.role() != Role::Replica {
        return false;
    }
    if status.tags.get("noloadbalance").and_then(|v| v.as_bool()) == Some(true) {
        return false;
    }
    if let Some(wanted) = query.replication_state.as_deref() {
        if status.replication_state() != Some(wanted) {
            return false;
        }
    }
    if let Some(max_lag) = query.max_lag_bytes {
        let replayed = status
            .pg
            .as_ref()
            .and_then(|p| p.server.as_ref())
            .and_then(|s| s.replayed)
            .unwrap_or_default();
        if let Some(leader) = status.leader_optime() {
            if leader.bytes_since(replayed) > max_lag {
                return false;
            }
        }
    }
    true
}

/// Every `?tag_<k>=<v>` names a tag this member has with that value (non-strings compared
/// as their lower-case JSON text, so `tag_nosync=true` matches a YAML `true`).
fn tags_match(status: &NodeStatus, wanted: &[(String, String)]) -> bool {
    wanted
        .iter()
        .all(|(key, value)| match status.tags.get(key) {
            Some(serde_json::Value::String(s)) => s == value,
            Some(other) => other.to_string().to_lowercase() == value.to_lowercase(),
            None => false,
        })
}
