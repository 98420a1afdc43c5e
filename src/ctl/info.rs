//! What `pgwardenctl show-config`, `history`, `dsn` and `version` print, as patronictl
//! prints it. Pure: the lock store's content (or a member's `/patroni`) in, text out.

use serde_json::Value;

use crate::core::view::{ClusterView, HistoryEntry, ListedRole, MemberInfo};
use crate::postgres::conf::parse_conn_url;

/// `/config` as YAML, keys sorted (patronictl's `show-config`).
pub fn config_yaml(config: &Value) -> Result<String, String> {
    Ok(super::yaml::dump(config))
}

/// `/history` as patronictl's table: TL, LSN, Reason, Timestamp, New Leader.
pub fn history_table(history: &[HistoryEntry]) -> String {
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|entry| {
            vec![
                entry.timeline.0.to_string(),
                entry.switch_lsn.0.to_string(),
                entry.reason.clone(),
                entry.timestamp.clone().unwrap_or_default(),
                entry.new_leader.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let headers = ["TL", "LSN", "Reason", "Timestamp", "New Leader"];
    super::list::pretty_table("", &headers, &rows, |c| matches!(c, "TL" | "LSN"))
}

/// Which members `dsn` may pick from (`--role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnRole {
    /// The leader (the default).
    Leader,
    /// Any standby.
    Replica,
    /// Whoever comes first.
    Any,
}

/// `host=... port=...` of the first member matching `role` or named `member` (patronictl's
/// `dsn`; the two are exclusive).
pub fn dsn(
    view: &ClusterView,
    role: Option<DsnRole>,
    member: Option<&str>,
) -> Result<String, String> {
    if member.is_some() && role.is_some() {
        return Err("--role and --member are mutually exclusive options".into());
    }
    let role = match member {
        Some(_) => DsnRole::Any,
        None => role.unwrap_or(DsnRole::Leader),
    };
    let leader = view.leader_name();
    let matches = |m: &&MemberInfo| {
        let is_leader = view.listed_role(&m.name) == ListedRole::Leader || leader == Some(&m.name);
        let role_ok = match role {
            DsnRole::Leader => is_leader,
            DsnRole::Replica => !is_leader,
            DsnRole::Any => true,
        };
        role_ok && member.is_none_or(|name| name == m.name)
    };
    let found = view
        .members
        .values()
        .find(matches)
        .ok_or("Can not find a suitable member")?;
    let (host, port) = parse_conn_url(&found.conn_url)
        .ok_or_else(|| format!("{}: cannot read conn_url {:?}", found.name, found.conn_url))?;
    Ok(format!("host={host} port={port}"))
}

/// One member's line of `version`, from its `GET /patroni`.
pub fn version_line(member: &str, patroni: &Value) -> String {
    let pgwarden = patroni
        .pointer("/pgwarden/version")
        .and_then(Value::as_str)
        .map(|v| format!("pgwarden {v}"));
    let patroni_version = patroni
        .pointer("/patroni/version")
        .and_then(Value::as_str)
        .map(|v| format!("Patroni {v}"));
    let agent = match (pgwarden, patroni_version) {
        (Some(ours), Some(compat)) => format!("{ours} (as {compat})"),
        (Some(ours), None) => ours,
        (None, Some(compat)) => compat,
        (None, None) => "unknown agent".into(),
    };
    let postgres = patroni
        .get("server_version")
        .and_then(Value::as_u64)
        .map(|v| format!(" PostgreSQL {}", pg_version(v)))
        .unwrap_or_default();
    format!("{member}: {agent}{postgres}")
}

/// `150004` → `15.4`, `90624` → `9.6.24` (patronictl's `format_pg_version`).
pub fn pg_version(version: u64) -> String {
    if version < 100_000 {
        format!(
            "{}.{}.{}",
            version / 10_000,
            version / 100 % 100,
            version % 100
        )
    } else {
        format!("{}.{}", version / 10_000, version % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{Lsn, Timeline};
    use crate::core::view::LeaderKey;
    use serde_json::json;

    fn view() -> ClusterView {
        let mut v = ClusterView::default();
        for (name, port) in [("node1", 5432), ("node2", 5433)] {
            v.members.insert(
                name.into(),
                MemberInfo {
                    name: name.into(),
                    conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
                    ..MemberInfo::default()
                },
            );
        }
        v.leader = Some(LeaderKey {
            name: "node2".into(),
            lease: 1,
            create_revision: crate::core::types::Revision(1),
        });
        v
    }

    #[test]
    fn dsn_picks_the_leader_a_replica_or_a_member() {
        let v = view();
        assert_eq!(dsn(&v, None, None), Ok("host=127.0.0.1 port=5433".into()));
        assert_eq!(
            dsn(&v, Some(DsnRole::Replica), None),
            Ok("host=127.0.0.1 port=5432".into())
        );
        assert_eq!(
            dsn(&v, None, Some("node1")),
            Ok("host=127.0.0.1 port=5432".into())
        );
        assert_eq!(
            dsn(&v, None, Some("node9")),
            Err("Can not find a suitable member".into())
        );
        assert!(dsn(&v, Some(DsnRole::Any), Some("node1")).is_err());
    }

    #[test]
    fn versions_and_history_as_patronictl_prints_them() {
        assert_eq!(pg_version(150004), "15.4");
        assert_eq!(pg_version(90624), "9.6.24");
        let patroni = json!({"patroni": {"version": "4.1.4"}, "pgwarden": {"version": "0.1.0"}, "server_version": 150004});
        assert_eq!(
            version_line("node1", &patroni),
            "node1: pgwarden 0.1.0 (as Patroni 4.1.4) PostgreSQL 15.4"
        );
        let table = history_table(&[HistoryEntry {
            timeline: Timeline(1),
            switch_lsn: Lsn(67250600),
            reason: "no recovery target specified".into(),
            timestamp: Some("2026-12-07T04:09:36+00:00".into()),
            new_leader: Some("node2".into()),
        }]);
        assert!(table.contains("New Leader"), "{table}");
        assert!(table.contains("67250600"), "{table}");
        assert!(table.contains("no recovery target specified"), "{table}");
        let yaml = config_yaml(&json!({"ttl": 30, "loop_wait": 10})).expect("YAML");
        assert!(yaml.find("loop_wait").expect("a key") < yaml.find("ttl").expect("a key"));
    }
}
