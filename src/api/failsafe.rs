//! `GET /failsafe` and `POST /failsafe` (Patroni's failsafe mode). The GET reads the
//! published status like every other read. The POST is a leader's heartbeat during a lock
//! store outage: it is handed to the core as an input and answered with the core's verdict,
//! so it is judged atomically with the node's state (a member racing or promoting refuses).
//!
//! Must not touch: PostgreSQL, the lock store.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::ApiState;
use crate::core::failsafe::HeartbeatVerdict;
use crate::core::Input;

/// How long the handler waits for the core's verdict. Below the sender's 2 s timeout, so a
/// busy core gives the sender an answer (a refusal) rather than a timeout and a retry.
const VERDICT_WAIT: Duration = Duration::from_millis(1_500);

/// `GET /failsafe`: `/failsafe`'s members and URLs; 502 when failsafe mode is off.
#[utoipa::path(get, path = "/failsafe", tag = "failsafe",
    summary = "the members of the `failsafe` key and their API URLs",
    responses((status = 200, description = "name to api_url", body = std::collections::BTreeMap<String, String>),
              (status = 502, description = "failsafe mode is off", body = String)))]
pub async fn get_failsafe(State(state): State<ApiState>) -> Response {
    let status = state.snapshot();
    if !status.failsafe.enabled {
        return (StatusCode::BAD_GATEWAY, "Failsafe mode is not enabled").into_response();
    }
    Json(serde_json::json!(status.failsafe.members)).into_response()
}

/// `POST /failsafe`: `{name, conn_url, api_url, slots}` from a leader. 200 `Accepted`, 500
/// when this member runs as (or is becoming) primary, 502 when failsafe mode is off.
#[utoipa::path(post, path = "/failsafe", tag = "failsafe",
    summary = "a leader's heartbeat while etcd is unreachable",
    request_body(content = super::openapi::FailsafeHeartbeat, content_type = "application/json"),
    security(("basic" = [])),
    responses((status = 200, description = "Accepted (the `lsn` header carries this member's position)", body = String),
              (status = 400, description = "not a heartbeat (the field is named)", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 500, description = "this member runs as primary (Patroni's answer)", body = String),
              (status = 502, description = "failsafe mode is off", body = String),
              (status = 503, description = "the agent did not judge the heartbeat in time", body = String)))]
pub async fn post_failsafe(State(state): State<ApiState>, body: Bytes) -> Response {
    if !state.snapshot().failsafe.enabled {
        return (StatusCode::BAD_GATEWAY, "Failsafe mode is not enabled").into_response();
    }
    let leader = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string));
    let Some(leader) = leader else {
        return (
            StatusCode::BAD_REQUEST,
            "POST /failsafe needs a JSON body with the leader's name",
        )
            .into_response();
    };
    let request = match super::send_to_core(&state, |request| Input::FailsafeHeartbeat {
        leader,
        request,
    }) {
        Ok(request) => request,
        Err(why) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    };
    let mut status = state.status.clone();
    let verdict = tokio::time::timeout(
        VERDICT_WAIT,
        status.wait_for(|s| s.failsafe.verdict(request).is_some()),
    )
    .await;
    let verdict = match verdict {
        Ok(Ok(s)) => s.failsafe.verdict(request).cloned(),
        _ => None,
    };
    match verdict {
        Some(HeartbeatVerdict::Accepted) => (StatusCode::OK, "Accepted").into_response(),
        Some(HeartbeatVerdict::Refused(why)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, why).into_response()
        }
        Some(HeartbeatVerdict::Disabled) => {
            (StatusCode::BAD_GATEWAY, "Failsafe mode is not enabled").into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not judge the heartbeat in time",
        )
            .into_response(),
    }
}
