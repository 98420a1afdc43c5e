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
    /// `/quorum` (quorum mode not yet: never).
    Quorum,
    /// `/read-only-quorum`: the primary (no quorum standbys yet).
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

/// Whether the node passes `check` (HTTP 200) or not (503).
pub fn passes(status: &NodeStatus, check: Check, query: &CheckQuery) -> bool {
    match check {
        Check::Primary => is_primary(status),
        Check::Leader => status.holds_leader_key && is_running(status),
        Check::StandbyLeader | Check::Quorum | Check::Unknown => false,
        Check::ReadOnlyQuorum => is_primary(status),
        Check::Replica => is_healthy_replica(status, query),
        Check::ReadOnly => is_primary(status) || is_healthy_replica(status, query),
        Check::Sync => is_healthy_replica(status, query) && status.is_sync_standby(),
        Check::ReadOnlySync => {
            is_primary(status) || (is_healthy_replica(status, query) && status.is_sync_standby())
        }
        Check::Async => is_healthy_replica(status, query) && !status.is_sync_standby(),
        Check::Health => is_running(status),
    }
}

fn is_running(status: &NodeStatus) -> bool {
    status.pg.as_ref().is_some_and(|p| p.is_running())
}

fn is_primary(status: &NodeStatus) -> bool {
    status.holds_leader_key && status.role() == Role::Primary && is_running(status)
}

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
    for (key, value) in &query.tags {
        let matches = match status.tags.get(key) {
            Some(serde_json::Value::String(s)) => s == value,
            Some(other) => other.to_string().to_lowercase() == value.to_lowercase(),
            None => false,
        };
        if !matches {
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
