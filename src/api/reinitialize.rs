//! `POST /reinitialize` (Patroni's, what `patronictl reinit` calls): wipe this standby's data
//! directory and clone it again from the leader. The request is handed to the core, which
//! judges it against the node's state in the same step it acts (a node that became a
//! candidate a moment ago refuses), and answered with the core's verdict.
//!
//! Body (optional): `{"force": bool, "from_leader": bool}`. pgwarden always clones from the
//! leader, and never cancels a running PostgreSQL action (Patroni's `force`): a clone or
//! rewind cut short leaves a data directory nobody can use, so the request is refused with
//! "`<action>` already in progress" until it ends.
//!
//! Must not touch: PostgreSQL, the lock store.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use crate::core::Input;

/// How long the handler waits for the core's verdict (it comes within one input step).
const VERDICT_WAIT: Duration = Duration::from_secs(5);

/// Why a body is refused, naming the field and what was expected.
fn check_body(body: &[u8]) -> Result<(), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("POST /reinitialize: the body is not JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("POST /reinitialize: the body must be a JSON object".into());
    };
    for field in ["force", "from_leader"] {
        match fields.get(field) {
            None | Some(Value::Bool(_)) | Some(Value::Null) => {}
            Some(other) => {
                return Err(format!(
                    "POST /reinitialize: `{field}` must be true or false, got {other}"
                ))
            }
        }
    }
    Ok(())
}

/// `POST /reinitialize`: 200 `reinitialize started`; 503 with the reason when this node
/// leads, the cluster has no leader, or an action runs; 400 for a malformed body.
#[utoipa::path(post, path = "/reinitialize", tag = "operator",
    summary = "wipe this standby's data directory and clone it again from the leader",
    request_body(content = Option<super::openapi::ReinitializeBody>, content_type = "application/json"),
    security(("basic" = [])),
    responses((status = 200, description = "reinitialize started", body = String),
              (status = 400, description = "a field is not a boolean (named)", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 503, description = "refused now (the leader, no leader, an action running)", body = String)))]
pub async fn post_reinitialize(State(state): State<ApiState>, body: Bytes) -> Response {
    if let Err(why) = check_body(&body) {
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    let request =
        match super::send_to_core(&state, |request| Input::ReinitializeRequested { request }) {
            Ok(request) => request,
            Err(why) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        };
    let verdict = super::await_answer(&state, VERDICT_WAIT, |s| {
        super::find_answer(&s.reinitialize_verdicts, request).cloned()
    })
    .await;
    match verdict {
        Some(Ok(())) => (StatusCode::OK, "reinitialize started").into_response(),
        Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not judge the request in time",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::check_body;

    #[test]
    fn bodies_are_checked_field_by_field() {
        assert!(check_body(b"").is_ok());
        assert!(check_body(b"{}").is_ok());
        assert!(check_body(br#"{"force": true, "from_leader": false}"#).is_ok());
        let err = check_body(br#"{"force": "yes"}"#).expect_err("a string force");
        assert!(err.contains("`force` must be true or false"), "{err}");
        let err = check_body(b"[1]").expect_err("an array");
        assert!(err.contains("JSON object"), "{err}");
        let err = check_body(b"{nope").expect_err("not JSON");
        assert!(err.contains("not JSON"), "{err}");
    }
}
