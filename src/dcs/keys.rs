//! Patroni's key layout under `/<namespace>/<scope>/`.

/// The keys of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// Layout for `namespace` (e.g. `/service`, with or without slashes) and `scope`.
    pub fn new(namespace: &str, scope: &str) -> KeyLayout {
        let ns = namespace.trim_matches('/');
        let prefix = if ns.is_empty() {
            format!("/{scope}/")
        } else {
            format!("/{ns}/{scope}/")
        };
        KeyLayout { prefix }
    }

    /// `/<namespace>/<scope>/`: every key of the cluster starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Full key for a name relative to the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `leader`.
    pub fn leader(&self) -> String {
        self.key(LEADER)
    }

    /// `members/<name>`.
    pub fn member(&self, name: &str) -> String {
        self.key(&format!("{MEMBERS}{name}"))
    }

    /// Relative name of a full key, if it is ours.
    pub fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())
    }
}

/// Relative key names.
pub const LEADER: &str = "leader";
/// Member keys' folder.
pub const MEMBERS: &str = "members/";
/// Dynamic configuration.
pub const CONFIG: &str = "config";
/// Bootstrap marker / system identifier.
pub const INITIALIZE: &str = "initialize";
/// Synchronous standby record.
pub const SYNC: &str = "sync";
/// Timeline history.
pub const HISTORY: &str = "history";
/// Leader's optime and slots.
pub const STATUS: &str = "status";
/// Manual failover/switchover request.
pub const FAILOVER: &str = "failover";
/// Failsafe membership: member name to REST API URL, kept by the leader.
pub const FAILSAFE: &str = "failsafe";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_patroni() {
        for ns in ["/service/", "/service", "service"] {
            let keys = KeyLayout::new(ns, "pg-cluster");
            assert_eq!(keys.leader(), "/service/pg-cluster/leader");
            assert_eq!(keys.member("pg1"), "/service/pg-cluster/members/pg1");
            assert_eq!(keys.key(SYNC), "/service/pg-cluster/sync");
            assert_eq!(
                keys.relative("/service/pg-cluster/members/pg2"),
                Some("members/pg2")
            );
            assert_eq!(keys.relative("/service/other/leader"), None);
        }
    }
}
