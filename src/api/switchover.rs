//! Manual failover and switchover, as Patroni's REST API does them: `POST /switchover`,
//! `POST /failover` and `DELETE /switchover`. A request is checked against the current
//! cluster, written to the `failover` key, then the handler waits for the outcome. The
//! leader's policy decides whether to hand over and the candidate's policy whether to take
//! over; when either declines, the answer carries the reason that node recorded.
//!
//! These are the only handlers that write to the lock store. They are "unsafe" endpoints:
//! with `restapi.authentication` set they require HTTP basic authentication.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use crate::core::manual::{check_request, ManualAction, RequestRefusal};
use crate::core::view::{ClusterView, FailoverRequest};

/// How the answers name `action`: its title, its past tense, and that capitalized.
fn words(action: ManualAction) -> (&'static str, &'static str, &'static str) {
    match action {
        ManualAction::Switchover => ("Switchover", "switched", "Switched"),
        ManualAction::Failover => ("Failover", "failed", "Failed"),
    }
}

/// `POST /switchover`: `{"leader", "candidate"?, "scheduled_at"?, "override_policy"?}`; a
/// scheduled one answers 202 and is carried out by the leader at its time.
#[utoipa::path(post, path = "/switchover", tag = "operator",
    summary = "hand the leadership to a standby (now or at `scheduled_at`)",
    request_body(content = super::openapi::SwitchoverBody, content_type = "application/json"),
    security(("basic" = [])),
    responses((status = 200, description = "done: the new leader is named", body = String),
              (status = 202, description = "switchover scheduled", body = String),
              (status = 400, description = "a field is missing or not what is expected (named)", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 412, description = "the named leader is not the leader, or no candidate qualifies", body = String),
              (status = 422, description = "the schedule cannot be read or is in the past", body = String),
              (status = 503, description = "failed or refused (the reason follows)", body = String)))]
pub async fn post_switchover(State(state): State<ApiState>, body: Bytes) -> Response {
    handle(state, &body, ManualAction::Switchover).await
}

/// `POST /failover`: `{"candidate" (or "member"), "leader"?, "override_policy"?}`; with a
/// leader it is a switchover.
#[utoipa::path(post, path = "/failover", tag = "operator",
    summary = "make the named candidate leader, with or without a leader",
    request_body(content = super::openapi::SwitchoverBody, content_type = "application/json"),
    security(("basic" = [])),
    responses((status = 200, description = "done: the new leader is named", body = String),
              (status = 202, description = "switchover scheduled", body = String),
              (status = 400, description = "a field is missing or not what is expected (named)", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 412, description = "the named leader is not the leader, or no candidate qualifies", body = String),
              (status = 422, description = "the schedule cannot be read or is in the past", body = String),
              (status = 503, description = "failed or refused (the reason follows)", body = String)))]
pub async fn post_failover(State(state): State<ApiState>, body: Bytes) -> Response {
    handle(state, &body, ManualAction::Failover).await
}

/// `DELETE /switchover`: withdraw a scheduled switchover (or a pending request).
#[utoipa::path(delete, path = "/switchover", tag = "operator",
    summary = "withdraw a scheduled switchover",
    security(("basic" = [])),
    responses((status = 200, description = "scheduled switchover deleted", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 404, description = "no switchover is scheduled", body = String),
              (status = 409, description = "the request changed meanwhile", body = String),
              (status = 503, description = "etcd cannot be reached", body = String)))]
pub async fn delete_switchover(State(state): State<ApiState>) -> Response {
    let Some(store) = state.store.get() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the lock store is not connected",
        );
    };
    let pending = state
        .snapshot()
        .view
        .as_ref()
        .and_then(|v| v.failover.as_ref())
        .map(|f| (f.mod_revision, f.value.scheduled_at.is_some()));
    let Some((revision, scheduled)) = pending else {
        return text(StatusCode::NOT_FOUND, "no switchover is scheduled");
    };
    // Patroni's answer for a scheduled switchover (`patronictl flush ... switchover` prints
    // it); withdrawing one not yet carried out is pgwarden's extension.
    let done = match scheduled {
        true => "scheduled switchover deleted",
        false => "Pending switchover or failover cancelled",
    };
    match store.clear_failover(Some(revision)).await {
        Ok(true) => text(StatusCode::OK, done),
        Ok(false) => text(
            StatusCode::CONFLICT,
            "The pending request changed meanwhile; read it again",
        ),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("failed to delete the failover key: {e}"),
        ),
    }
}

/// A `scheduled_at`, as Patroni judges it: only a switchover is scheduled, not while paused,
/// with a time zone (400), readable and in the future (422).
fn check_schedule(at: &str, asked: ManualAction, paused: bool) -> Result<(), (StatusCode, String)> {
    if asked == ManualAction::Failover {
        return Err((
            StatusCode::BAD_REQUEST,
            "Failover can't be scheduled".into(),
        ));
    }
    if paused {
        return Err((
            StatusCode::BAD_REQUEST,
            "Can't schedule switchover in the paused state".into(),
        ));
    }
    let wall = super::restart::parse_schedule(at, "switchover")?;
    if wall < time::OffsetDateTime::now_utc() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot schedule switchover in the past".into(),
        ));
    }
    Ok(())
}

/// The request body as the `failover` key's value (checked later, against the cluster).
fn parse_body(body: &[u8]) -> Result<FailoverRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the request body is not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("the request body must be a JSON object".into());
    };
    let name = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(format!("\"{key}\" must be a member name, not {other}")),
        }
    };
    let override_policy = match map.get("override_policy") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "\"override_policy\" must be true or false, not {other}"
            ))
        }
    };
    Ok(FailoverRequest {
        leader: name("leader")?,
        candidate: name("candidate")?.or(name("member")?),
        scheduled_at: name("scheduled_at")?,
        due: None,
        override_policy,
    })
}

async fn handle(state: ApiState, body: &[u8], action: ManualAction) -> Response {
    let request = match parse_body(body) {
        Ok(request) => request,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let asked = action;
    let action = ManualAction::of(action, &request);
    let status = state.snapshot();
    let Some(view) = status.view.as_ref() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster view is not available (lock store unreachable)",
        );
    };
    let paused = view.config.as_ref().is_some_and(|c| c.value.pause);
    if let Some(at) = request.scheduled_at.as_deref() {
        if let Err((code, why)) = check_schedule(at, asked, paused) {
            return text(code, &why);
        }
    }
    if paused && request.candidate.is_none() {
        // Maintenance mode: the operator's candidate is the only one who may be promoted.
        return text(
            StatusCode::BAD_REQUEST,
            "Switchover is possible only to a specific candidate in a paused state",
        );
    }
    let scheduled = request.scheduled_at.is_some();
    match check_request(view, &request, action) {
        Ok(()) => {}
        Err(RequestRefusal::Invalid(why)) => return text(StatusCode::BAD_REQUEST, &why),
        // As in Patroni, whether the cluster allows it is judged when the time comes.
        Err(RequestRefusal::NotPossible(_)) if scheduled => {}
        Err(RequestRefusal::NotPossible(why)) => {
            return text(StatusCode::PRECONDITION_FAILED, &why)
        }
    }
    let Some(store) = state.store.get() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the lock store is not connected",
        );
    };
    if request.override_policy {
        tracing::warn!(candidate = ?request.candidate, leader = ?request.leader, "manual {} with override_policy: the operator overrides the policy's refusals", words(action).0.to_lowercase());
    }
    if let Err(e) = store.write_failover(&request).await {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("failed to write failover key into DCS: {e}"),
        );
    }
    tracing::info!(action = words(action).0, leader = ?request.leader, candidate = ?request.candidate, scheduled_at = ?request.scheduled_at, "manual request written to the failover key");
    if scheduled {
        return text(StatusCode::ACCEPTED, "Switchover scheduled");
    }
    let old_leader = view.leader_name().map(str::to_owned);
    let timeout = Duration::from_secs(2 * status.loop_wait.as_secs().max(10));
    let (code, message) = wait_for_outcome(&state, action, old_leader, &request, timeout).await;
    text(code, &message)
}

/// Poll the local view (fed by the etcd watch) until a new leader shows, the request is
/// withdrawn or declined, or `timeout` passes.
async fn wait_for_outcome(
    state: &ApiState,
    action: ManualAction,
    old_leader: Option<String>,
    request: &FailoverRequest,
    timeout: Duration,
) -> (StatusCode, String) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen_request = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let status = state.snapshot();
        let Some(view) = status.view.as_ref() else {
            continue;
        };
        let leader = view.leader_name();
        if let Some(new) = leader.filter(|l| Some(*l) != old_leader.as_deref()) {
            return match request.candidate.as_deref() {
                Some(wanted) if wanted != new => (
                    StatusCode::OK,
                    format!(
                        "{} over to \"{new}\" instead of \"{wanted}\"",
                        words(action).2
                    ),
                ),
                _ => (
                    StatusCode::OK,
                    format!("Successfully {} over to \"{new}\"", words(action).1),
                ),
            };
        }
        let pending = view.failover.as_ref().is_some_and(|f| f.value == *request);
        seen_request |= pending;
        if seen_request && !pending {
            let why = refusal(&state.api_client, view, old_leader.as_deref(), request).await;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} failed{}", words(action).0, why),
            );
        }
        if tokio::time::Instant::now() >= deadline {
            let why = refusal(&state.api_client, view, old_leader.as_deref(), request).await;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} status unknown{}", words(action).0, why),
            );
        }
    }
}

/// Why the request did not happen, as the node that had to act recorded it (the leader for
/// a handover, else the candidate): `": <reason>"`, or empty when it cannot be read.
async fn refusal(
    client: &crate::runtime::http::ApiClient,
    view: &ClusterView,
    leader: Option<&str>,
    request: &FailoverRequest,
) -> String {
    let actor = match (view.leader_name(), request.candidate.as_deref()) {
        (Some(current), _) if Some(current) == leader => Some(current),
        (_, Some(candidate)) => Some(candidate),
        _ => None,
    };
    let Some(member) = actor.and_then(|name| view.members.get(name)) else {
        return String::new();
    };
    let Ok(answer) = client
        .get_json(&member.api_url, Duration::from_secs(2))
        .await
    else {
        return String::new();
    };
    answer
        .pointer("/pgwarden/last_race_refusal")
        .and_then(Value::as_str)
        .map(|why| format!(": {} says: {why}", member.name))
        .unwrap_or_default()
}

fn text(code: StatusCode, message: &str) -> Response {
    (code, message.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_like_patronis() {
        let b = parse_body(br#"{"leader":"node1","candidate":"node2"}"#).expect("valid body");
        assert_eq!(b.leader.as_deref(), Some("node1"));
        assert_eq!(b.candidate.as_deref(), Some("node2"));
        let b = parse_body(br#"{"member":"node3","override_policy":true}"#).expect("valid body");
        assert_eq!(b.candidate.as_deref(), Some("node3"));
        assert!(b.override_policy);
        let b = parse_body(br#"{"leader":"node1","candidate":""}"#).expect("valid body");
        assert_eq!(b.candidate, None);
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert!(parse_body(b"not json")
            .expect_err("refused")
            .contains("not JSON"));
        assert!(parse_body(b"[1]")
            .expect_err("refused")
            .contains("JSON object"));
        let e = parse_body(br#"{"candidate": 3}"#).expect_err("refused");
        assert!(e.contains("\"candidate\""), "{e}");
        let e = parse_body(br#"{"candidate":"a","override_policy":"yes"}"#).expect_err("refused");
        assert!(e.contains("override_policy"), "{e}");
    }
}
