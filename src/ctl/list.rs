//! `pgwardenctl list`: the cluster as patronictl prints it.

use comfy_table::presets::ASCII_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};

use crate::core::view::{ClusterView, ListedRole};
use crate::postgres::conf::parse_conn_url;

/// One row of the listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Member name.
    pub member: String,
    /// `host:port` of its PostgreSQL.
    pub host: String,
    /// `Leader`, `Sync Standby` or `Replica`.
    pub role: String,
    /// `running`, `streaming`, ...
    pub state: String,
    /// Timeline.
    pub timeline: Option<u32>,
    /// Lag behind the leader in MB (none for the leader or when unknown).
    pub lag_mb: Option<f64>,
}

/// Rows for every member, sorted by name.
pub fn rows(view: &ClusterView) -> Vec<Row> {
    let leader_lsn = view
        .leader_name()
        .and_then(|l| view.members.get(l))
        .and_then(|m| m.wal_position)
        .max(view.optime);
    view.members
        .values()
        .map(|m| {
            let role = view.listed_role(&m.name);
            let host = parse_conn_url(&m.conn_url)
                .map(|(h, p)| format!("{h}:{p}"))
                .unwrap_or_else(|| m.conn_url.clone());
            let lag_mb = match (role, leader_lsn, m.wal_position) {
                (ListedRole::Leader, _, _) => None,
                (_, Some(l), Some(p)) => Some(l.bytes_since(p) as f64 / (1024.0 * 1024.0)),
                _ => None,
            };
            Row {
                member: m.name.clone(),
                host,
                role: role.title().into(),
                state: view.listed_state(m),
                timeline: m.timeline.map(|t| t.0),
                lag_mb,
            }
        })
        .collect()
}

/// Render the listing with patronictl's title line.
pub fn render(scope: &str, view: &ClusterView) -> String {
    let title = match view.initialize.as_deref() {
        None => format!("+ Cluster: {scope} (uninitialized) +"),
        Some("") => format!("+ Cluster: {scope} (initializing) +"),
        Some(sysid) => format!("+ Cluster: {scope} ({sysid}) +"),
    };
    let mut table = Table::new();
    table.load_preset(ASCII_FULL_CONDENSED);
    table.set_header(vec!["Member", "Host", "Role", "State", "TL", "Lag in MB"]);
    for r in rows(view) {
        table.add_row(vec![
            r.member,
            r.host,
            r.role,
            r.state,
            r.timeline.map(|t| t.to_string()).unwrap_or_default(),
            match r.lag_mb {
                Some(mb) => format!("{}", mb.round() as u64),
                None => String::new(),
            },
        ]);
    }
    for col in [4, 5] {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    // patronictl's footer, which runbooks grep for.
    if view.config.as_ref().is_some_and(|c| c.value.pause) {
        format!("{title}\n{table}\n Maintenance mode: on")
    } else {
        format!("{title}\n{table}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::view::{LeaderKey, MemberInfo, SyncState, Versioned};
    use crate::core::{Lsn, Revision, Timeline};

    fn member(name: &str, port: u16, state: &str, repl: Option<&str>, lsn: u64) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
            state: state.into(),
            replication_state: repl.map(str::to_string),
            timeline: Some(Timeline(1)),
            wal_position: Some(Lsn(lsn)),
            ..MemberInfo::default()
        }
    }

    #[test]
    fn roles_states_and_lag_like_patronictl() {
        let mut view = ClusterView {
            initialize: Some("7300".into()),
            ..ClusterView::default()
        };
        view.leader = Some(LeaderKey {
            name: "a".into(),
            lease: 1,
            create_revision: Revision(2),
        });
        view.members.insert(
            "a".into(),
            member("a", 5432, "running", None, 3 * 1024 * 1024),
        );
        view.members.insert(
            "b".into(),
            member("b", 5433, "running", Some("streaming"), 3 * 1024 * 1024),
        );
        view.members.insert(
            "c".into(),
            member("c", 5434, "running", Some("streaming"), 1024 * 1024),
        );
        view.sync = Some(Versioned {
            value: SyncState {
                leader: Some("a".into()),
                sync_standby: vec!["b".into()],
                quorum: 0,
            },
            mod_revision: Revision(3),
        });
        let r = rows(&view);
        assert_eq!(r[0].role, "Leader");
        assert_eq!(r[0].state, "running");
        assert_eq!(r[0].lag_mb, None);
        assert_eq!(r[1].role, "Sync Standby");
        assert_eq!(r[1].state, "streaming");
        assert_eq!(r[1].lag_mb, Some(0.0));
        assert_eq!(r[2].role, "Replica");
        assert_eq!(r[2].lag_mb, Some(2.0));
        let text = render("demo", &view);
        assert!(text.starts_with("+ Cluster: demo (7300) +"));
        assert!(text.contains("| Sync Standby |"));
    }
}
