//! `/cluster`, `/history` and `/config`: the cluster as this node's last view shows it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::core::view::ClusterView;

/// Patroni's `cluster_as_json` over a view.
pub fn cluster_json(scope: &str, view: &ClusterView) -> Value {
    let leader = view.leader_name();
    let sync: Vec<String> = view
        .sync
        .as_ref()
        .map(|s| s.value.sync_standby.clone())
        .unwrap_or_default();
    let optime = view.optime;
    let mut members: Vec<Value> = view
        .members
        .values()
        .map(|m| {
            let is_leader = Some(m.name.as_str()) == leader;
            let role = if is_leader {
                "leader"
            } else if sync.contains(&m.name) {
                "sync_standby"
            } else {
                "replica"
            };
            let state = if is_leader {
                m.state.clone()
            } else {
                m.replication_state
                    .clone()
                    .unwrap_or_else(|| m.state.clone())
            };
            let (host, port) =
                crate::postgres::conf::parse_conn_url(&m.conn_url).unwrap_or_default();
            let mut v = json!({
                "name": m.name,
                "role": role,
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
    json!({"members": members, "scope": scope})
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
