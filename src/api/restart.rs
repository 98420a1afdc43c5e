//! `POST /restart`, `DELETE /restart` and `POST /reload`: what `patronictl restart` and
//! `patronictl reload` call.
//!
//! A restart is handed to the core, which judges it against the node in the same step it
//! acts (`core::restart::verdict`), then carried out by the PostgreSQL worker. As in
//! Patroni, an immediate restart answers once it is over: 200 `restarted successfully`,
//! 503 with the reason when it is refused or fails, 503 `postgres is still starting` when
//! it outlasts `timeout`.
//!
//! Body (optional, Patroni's): `role` (`primary`, `replica`), `postgres_version` (restart
//! only an older server), `restart_pending` (only when a parameter waits for a restart),
//! `timeout` (how long to wait, seconds or with a unit), `schedule` (refused: pgwarden does
//! not schedule restarts yet, so `DELETE /restart` always finds none).
//!
//! Must not touch: PostgreSQL, the lock store.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use crate::core::restart::{parse_version, RestartConditions, RestartRole};
use crate::core::{Input, NodeStatus};
use crate::runtime::reload::ReloadOutcome;

/// How long the handler waits for the core's verdict (it comes within one input step).
const VERDICT_WAIT: Duration = Duration::from_secs(5);

/// A parsed `POST /restart` body.
#[derive(Debug, Default, PartialEq)]
struct RestartBody {
    conditions: RestartConditions,
    timeout: Option<Duration>,
    schedule: Option<String>,
}

/// Parses the body as Patroni does, field by field; the error names the field.
fn parse_body(body: &[u8]) -> Result<RestartBody, String> {
    let mut out = RestartBody::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(out);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("POST /restart: the body is not JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("POST /restart: the body must be a JSON object".into());
    };
    for (key, value) in &fields {
        match key.as_str() {
            "role" => {
                out.conditions.role = Some(match value.as_str() {
                    Some("primary" | "master") => RestartRole::Primary,
                    Some("replica") => RestartRole::Replica,
                    _ => {
                        return Err(format!(
                            "PostgreSQL role should be either primary, standby_leader, or replica \
                             (`role` is {value}; pgwarden runs no standby cluster)"
                        ))
                    }
                })
            }
            "postgres_version" => {
                let text = value
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| value.to_string());
                out.conditions.below_version =
                    Some(parse_version(&text).map_err(|e| format!("`postgres_version`: {e}"))?);
            }
            "restart_pending" => out.conditions.only_if_pending = truthy(value),
            "timeout" => {
                out.timeout = Some(parse_timeout(value).ok_or_else(|| {
                    format!("Timeout should be a positive number of seconds (`timeout` is {value})")
                })?)
            }
            "schedule" => {
                out.schedule = Some(
                    value
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| value.to_string()),
                )
            }
            other => return Err(format!("Unknown filter for the scheduled restart: {other}")),
        }
    }
    Ok(out)
}

/// Patroni reads `restart_pending` as "present and true-ish".
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::String(s) => !matches!(
            s.to_ascii_lowercase().as_str(),
            "" | "false" | "off" | "no" | "0"
        ),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// A positive duration: seconds as a number, or a string with an optional unit
/// (`ms`, `s`, `min`, `h`, `d`; seconds without one), as Patroni's `parse_int(..., 's')`.
fn parse_timeout(value: &Value) -> Option<Duration> {
    let millis = match value {
        Value::Number(n) => (n.as_f64()? * 1000.0) as u64,
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (number, unit) = s.split_at(split);
            let n: u64 = number.parse().ok()?;
            let per = match unit.trim() {
                "ms" => 1,
                "" | "s" => 1_000,
                "min" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            };
            n.checked_mul(per)?
        }
        _ => return None,
    };
    (millis >= 1000).then(|| Duration::from_millis(millis))
}

fn find(answers: &[(u64, Result<(), String>)], request: u64) -> Option<&Result<(), String>> {
    answers
        .iter()
        .rev()
        .find(|(id, _)| *id == request)
        .map(|(_, r)| r)
}

/// Waits up to `bound` for the status to hold the answer `pick` finds for `request`.
async fn await_answer(
    state: &ApiState,
    bound: Duration,
    pick: impl Fn(&NodeStatus) -> Option<Result<(), String>>,
) -> Option<Result<(), String>> {
    let mut status = state.status.clone();
    tokio::time::timeout(bound, status.wait_for(|s| pick(s).is_some()))
        .await
        .ok()
        .and_then(|seen| seen.ok().and_then(|s| pick(&s)))
}

/// `POST /restart`.
pub async fn post_restart(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = super::switchover::refused_credentials(&state, &headers) {
        return denied;
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if body.schedule.is_some() {
        if state.snapshot().config.pause {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Can't schedule restart in the paused state",
            )
                .into_response();
        }
        return (
            StatusCode::BAD_REQUEST,
            "`schedule`: pgwarden does not schedule restarts yet; restart now (no `schedule`) \
             or at the time from cron",
        )
            .into_response();
    }
    let conditions = body.conditions.clone();
    let request = match super::send_to_core(&state, |request| Input::RestartRequested {
        request,
        conditions,
    }) {
        Ok(request) => request,
        Err(why) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    };
    let verdict = await_answer(&state, VERDICT_WAIT, |s| {
        find(&s.restart_verdicts, request).cloned()
    })
    .await;
    match verdict {
        Some(Ok(())) => {}
        Some(Err(why)) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        None => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent did not judge the request in time",
            )
                .into_response()
        }
    }
    // A fast stop and a start, each bounded by pg_ctl_timeout.
    let pg_ctl = Duration::from_secs(state.config.postgresql.pg_ctl_timeout_secs.max(5));
    let bound = body.timeout.unwrap_or(2 * pg_ctl + Duration::from_secs(15));
    match await_answer(&state, bound, |s| {
        find(&s.restart_results, request).cloned()
    })
    .await
    {
        Some(Ok(())) => (StatusCode::OK, "restarted successfully").into_response(),
        Some(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("restart failed: {error}"),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "postgres is still starting",
        )
            .into_response(),
    }
}

/// `DELETE /restart`: no restart is ever scheduled here (see `post_restart`).
pub async fn delete_restart(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(denied) = super::switchover::refused_credentials(&state, &headers) {
        return denied;
    }
    (StatusCode::NOT_FOUND, "no restarts are scheduled").into_response()
}

/// `POST /reload`: re-read the local file and apply it (SIGHUP does the same). 202 as
/// Patroni's; 400 naming the field when the file is invalid (nothing changes then).
pub async fn post_reload(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(denied) = super::switchover::refused_credentials(&state, &headers) {
        return denied;
    }
    let Some(reloader) = state.reloader.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent's loop is not running",
        )
            .into_response();
    };
    match reloader.reload("POST /reload") {
        ReloadOutcome::Reloaded { .. } => {
            (StatusCode::ACCEPTED, "reload scheduled").into_response()
        }
        ReloadOutcome::Invalid(error) => (
            StatusCode::BAD_REQUEST,
            format!("the configuration file is invalid, nothing was reloaded: {error}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_as_patroni_reads_them() {
        assert_eq!(parse_body(b""), Ok(RestartBody::default()));
        let body = parse_body(
            br#"{"role": "replica", "postgres_version": "15.9", "restart_pending": true, "timeout": "30s"}"#,
        )
        .expect("a valid body");
        assert_eq!(
            body.conditions,
            RestartConditions {
                role: Some(RestartRole::Replica),
                below_version: Some(150009),
                only_if_pending: true,
            }
        );
        assert_eq!(body.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            parse_body(br#"{"timeout": 5}"#).map(|b| b.timeout),
            Ok(Some(Duration::from_secs(5)))
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = parse_body(br#"{"role": "leader"}"#).expect_err("an unknown role");
        assert!(err.contains("PostgreSQL role should be either"), "{err}");
        let err = parse_body(br#"{"postgres_version": "x"}"#).expect_err("a bad version");
        assert!(err.contains("`postgres_version`"), "{err}");
        let err = parse_body(br#"{"timeout": 0}"#).expect_err("a zero timeout");
        assert!(err.contains("Timeout should be a positive number"), "{err}");
        let err = parse_body(br#"{"timeout": "5 fortnights"}"#).expect_err("a bad unit");
        assert!(err.contains("`timeout`"), "{err}");
        let err = parse_body(br#"{"when": "now"}"#).expect_err("an unknown key");
        assert_eq!(err, "Unknown filter for the scheduled restart: when");
        let err = parse_body(b"[]").expect_err("not an object");
        assert!(err.contains("JSON object"), "{err}");
    }
}
