//! `/cluster`, `/history` and `/config`: the cluster as this node's last view shows it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::core::view::{ClusterView, ListedRole};

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
                "timeline": m.timeline.map(|t| t.0),
                "tags": m.tags,
            });
            if !is_leader {
                let lag = match (optime, m.wal_position) {
                    (Some(o), Some(p)) => json!(o.bytes_since(p)),
                    _ => json!("unknown"),
                };
                v["lag"] = lag;
                if let Some(p) = m.wal_position {
                    v["lsn"] = json!(p.to_string());
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
