//! `/cluster`, `/history` and `/config`: the cluster as this node's last view shows it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::core::view::{ClusterView, ListedRole};
use crate::core::Lsn;

/// Patroni's `cluster_as_json` over a view.
pub fn cluster_json(scope: &str, view: &ClusterView) -> Value {
    let optime = view.optime;
    let mut members: Vec<Value> = view
        .members
        .values()
        .map(|m| {
            let role = view.listed_role(&m.name);
            let is_leader = role == ListedRole::Leader;
            let state = view.listed_state(m);
            let (host, port) =
                crate::postgres::conf::parse_conn_url(&m.conn_url).unwrap_or_default();
            let mut v = json!({
                "name": m.name,
                "role": role.json_name(),
                "state": state,
                "api_url": m.api_url,
                "host": host,
                "port": port,
            });
            // Patroni copies these from the member key when they are there.
            for field in [
                "timeline",
                "pending_restart",
                "pending_restart_reason",
                "scheduled_restart",
                "tags",
            ] {
                if let Some(value) = m.raw.get(field) {
                    v[field] = value.clone();
                }
            }
            if v.get("timeline").is_none() {
                if let Some(timeline) = m.timeline {
                    v["timeline"] = json!(timeline.0);
                }
            }
            if !is_leader {
                for (lsn_field, lag_field, key) in [
                    ("receive_lsn", "receive_lag", "receive_lsn"),
                    ("replay_lsn", "replay_lag", "replay_lsn"),
                    ("lsn", "lag", "xlog_location"),
                ] {
                    let (lsn, lag) = lsn_and_lag(optime, member_lsn(m, key));
                    v[lsn_field] = lsn;
                    v[lag_field] = lag;
                }
            }
            v
        })
        .collect();
    members.sort_by_key(|m| m["name"].as_str().unwrap_or_default().to_string());
    let mut cluster = json!({"members": members, "scope": scope});
    if view.config.as_ref().is_some_and(|c| c.value.pause) {
        cluster["pause"] = json!(true);
    }
    if let Some(request) = view.failover.as_ref().map(|f| &f.value) {
        if let Some(at) = &request.scheduled_at {
            let mut scheduled = json!({"at": at});
            if let Some(leader) = &request.leader {
                scheduled["from"] = json!(leader);
            }
            if let Some(candidate) = &request.candidate {
                scheduled["to"] = json!(candidate);
            }
            cluster["scheduled_switchover"] = scheduled;
        }
    }
    cluster
}

/// A WAL position from the member key (a number, as Patroni writes it).
fn member_lsn(member: &crate::core::view::MemberInfo, key: &str) -> Option<Lsn> {
    member
        .raw
        .get(key)
        .and_then(Value::as_u64)
        .filter(|lsn| *lsn > 0)
        .map(Lsn)
        .or_else(|| {
            (key == "xlog_location")
                .then_some(member.wal_position)
                .flatten()
        })
}

/// Patroni's pair for one position: `unknown` for both when the member did not say, else
/// the position and how far the leader's last known position (`/status`) is ahead of it.
fn lsn_and_lag(leader: Option<Lsn>, lsn: Option<Lsn>) -> (Value, Value) {
    match lsn {
        None => (json!("unknown"), json!("unknown")),
        Some(lsn) => (
            json!(lsn.to_string()),
            json!(leader.unwrap_or_default().bytes_since(lsn)),
        ),
    }
}

#[utoipa::path(get, path = "/cluster", tag = "status",
    summary = "the cluster's members as etcd has them",
    responses((status = 200, description = "members", body = super::openapi::ClusterStatus),
              (status = 503, description = "no view of the cluster yet", body = Object)))]
pub(super) async fn get_cluster(State(state): State<ApiState>) -> Response {
    let status = state.snapshot();
    match status.view.as_ref() {
        Some(view) => Json(cluster_json(&state.config.scope, view)).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "no view of the cluster yet"})),
        )
            .into_response(),
    }
}

#[utoipa::path(get, path = "/history", tag = "status",
    summary = "timeline history: [timeline, switch LSN, reason, time, new leader]",
    responses((status = 200, description = "history lines", body = Vec<Vec<serde_json::Value>>)))]
pub(super) async fn get_history(State(state): State<ApiState>) -> Json<Value> {
    let status = state.snapshot();
    let lines: Vec<Value> = status
        .view
        .as_ref()
        .map(|v| {
            v.history
                .iter()
                .map(|h| {
                    json!([
                        h.timeline.0,
                        h.switch_lsn.0,
                        h.reason,
                        h.timestamp,
                        h.new_leader
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    Json(Value::Array(lines))
}

#[utoipa::path(get, path = "/config", tag = "configuration",
    summary = "the cluster-wide configuration (`/config` in etcd)",
    responses((status = 200, description = "the document", body = Object),
              (status = 502, description = "no configuration in the lock store", body = Object)))]
pub(super) async fn get_config(State(state): State<ApiState>) -> Response {
    let status = state.snapshot();
    match status.view.as_ref().and_then(|v| v.config.as_ref()) {
        Some(c) => Json(c.value.to_json()).into_response(),
        None => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": "no configuration in the lock store"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::view::{LeaderKey, MemberInfo};
    use crate::core::Revision;

    fn member(name: &str, raw: Value) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            conn_url: format!("postgres://127.0.0.1:5432/{name}"),
            api_url: format!("http://127.0.0.1:8008/{name}"),
            state: "running".into(),
            role: "replica".into(),
            raw,
            ..MemberInfo::default()
        }
    }

    /// Patroni's `cluster_as_json`: receive, replay and current position each with its lag
    /// behind `/status`, `unknown` when the member did not say, the leader without any.
    #[test]
    fn members_show_receive_and_replay_lag_apart() {
        let mut view = ClusterView {
            optime: Some(Lsn(0x3000)),
            leader: Some(LeaderKey {
                name: "a".into(),
                lease: 1,
                create_revision: Revision(1),
            }),
            ..ClusterView::default()
        };
        view.members.insert(
            "a".into(),
            member("a", json!({"xlog_location": 0x3000, "timeline": 2})),
        );
        view.members.insert(
            "b".into(),
            member(
                "b",
                json!({"xlog_location": 0x2000, "receive_lsn": 0x2800, "replay_lsn": 0x2000,
                       "pending_restart": true, "tags": {"zone": "x"}}),
            ),
        );
        view.members.insert("c".into(), member("c", json!({})));
        let json = cluster_json("s", &view);
        let members = json["members"].as_array().expect("members");
        let leader = &members[0];
        assert_eq!(leader["timeline"], 2);
        assert!(leader.get("lag").is_none() && leader.get("receive_lag").is_none());
        let b = &members[1];
        assert_eq!(
            (&b["receive_lsn"], &b["receive_lag"]),
            (&json!("0/2800"), &json!(0x800))
        );
        assert_eq!(
            (&b["replay_lsn"], &b["replay_lag"]),
            (&json!("0/2000"), &json!(0x1000))
        );
        assert_eq!((&b["lsn"], &b["lag"]), (&json!("0/2000"), &json!(0x1000)));
        assert_eq!(b["pending_restart"], true);
        assert_eq!(b["tags"]["zone"], "x");
        let c = &members[2];
        for field in [
            "receive_lsn",
            "receive_lag",
            "replay_lsn",
            "replay_lag",
            "lsn",
            "lag",
        ] {
            assert_eq!(c[field], "unknown", "{field}");
        }
        assert!(c.get("timeline").is_none());
    }
}
