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
//! `timeout` (how long to wait, seconds or with a unit), `schedule` (an ISO 8601 time with a
//! time zone: 202 `Restart scheduled`, the conditions judged when it comes; 409 when one is
//! already scheduled; `DELETE /restart` removes it).
//!
//! Must not touch: PostgreSQL, the lock store.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use crate::core::restart::{parse_version, RestartConditions, RestartRole};
use crate::core::Input;
use crate::runtime::reload::ReloadOutcome;

/// How long the handler waits for the core's verdict (it comes within one input step).
const VERDICT_WAIT: Duration = Duration::from_secs(5);

/// A parsed `POST /restart` body.
#[derive(Debug, Default, PartialEq)]
struct RestartBody {
    conditions: RestartConditions,
    /// `postgres_version` as given (a scheduled restart shows it).
    postgres_version: Option<String>,
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
                out.postgres_version = Some(text);
            }
            // Patroni: the key's presence is the condition, whatever its value.
            "restart_pending" => out.conditions.only_if_pending = true,
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

/// `POST /restart`.
#[utoipa::path(post, path = "/restart", tag = "operator",
    summary = "restart PostgreSQL now or at a time, optionally only under conditions",
    request_body(content = Option<super::openapi::RestartBody>, content_type = "application/json"),
    security(("basic" = [])),
    responses((status = 200, description = "restarted", body = String),
              (status = 202, description = "restart scheduled", body = String),
              (status = 400, description = "a field is not what is expected (named)", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 409, description = "a restart is already scheduled", body = String),
              (status = 422, description = "the schedule cannot be read or is in the past", body = String),
              (status = 500, description = "a scheduled restart refused while paused (Patroni's answer)", body = String),
              (status = 503, description = "refused now or conditions not met", body = String)))]
pub async fn post_restart(State(state): State<ApiState>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if let Some(schedule) = body.schedule {
        return schedule_restart(&state, schedule, body.conditions, body.postgres_version).await;
    }
    let conditions = body.conditions.clone();
    let request = match super::send_to_core(&state, |request| Input::RestartRequested {
        request,
        conditions,
    }) {
        Ok(request) => request,
        Err(why) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    };
    let verdict = super::await_answer(&state, VERDICT_WAIT, |s| {
        super::find_answer(&s.restart_verdicts, request).cloned()
    })
    .await;
    match verdict {
        Some(Ok(())) => {}
        Some(Err(why)) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        None => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent did not answer in time; the request may still be carried out",
            )
                .into_response()
        }
    }
    // A fast stop and a start, each bounded by pg_ctl_timeout.
    let pg_ctl = Duration::from_secs(state.config.postgresql.pg_ctl_timeout_secs.max(5));
    let bound = body.timeout.unwrap_or(2 * pg_ctl + Duration::from_secs(15));
    match super::await_answer(&state, bound, |s| {
        super::find_answer(&s.restart_results, request).cloned()
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

/// `POST /restart` with a `schedule`, Patroni's codes: 500 while paused, 400 without a time
/// zone, 422 unparsable or in the past, 202 scheduled, 409 one already is.
async fn schedule_restart(
    state: &ApiState,
    schedule: String,
    conditions: RestartConditions,
    postgres_version: Option<String>,
) -> Response {
    const PAUSED: &str = "Can't schedule restart in the paused state";
    if state.snapshot().config.pause {
        return (StatusCode::INTERNAL_SERVER_ERROR, PAUSED).into_response();
    }
    let wall = match parse_schedule(&schedule, "restart") {
        Ok(wall) => wall,
        Err((code, why)) => return (code, why).into_response(),
    };
    let now_wall = time::OffsetDateTime::now_utc();
    if wall < now_wall {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot schedule restart in the past",
        )
            .into_response();
    }
    let delay = Duration::try_from(wall - now_wall).unwrap_or_default();
    let at = crate::runtime::clock::now() + delay;
    let request = match super::send_to_core(state, |request| Input::RestartScheduled {
        request,
        at,
        schedule,
        conditions,
        postgres_version,
    }) {
        Ok(request) => request,
        Err(why) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    };
    match super::await_answer(state, VERDICT_WAIT, |s| {
        super::find_answer(&s.restart_verdicts, request).cloned()
    })
    .await
    {
        Some(Ok(())) => (StatusCode::ACCEPTED, "Restart scheduled").into_response(),
        Some(Err(why)) if why == PAUSED => (StatusCode::INTERNAL_SERVER_ERROR, why).into_response(),
        Some(Err(why)) => (StatusCode::CONFLICT, why).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not answer in time; the request may still be carried out",
        )
            .into_response(),
    }
}

/// The operator's time, or Patroni's answer to it.
pub(super) fn parse_schedule(
    text: &str,
    action: &str,
) -> Result<time::OffsetDateTime, (StatusCode, String)> {
    use crate::runtime::clock::{parse_wall, ScheduleError};
    parse_wall(text).map_err(|e| match e {
        ScheduleError::NoTimeZone => (
            StatusCode::BAD_REQUEST,
            format!("Timezone information is mandatory for the scheduled {action}"),
        ),
        ScheduleError::Unparsable => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"
                .into(),
        ),
    })
}

/// `DELETE /restart`: 200 `scheduled restart deleted`, 404 `no restarts are scheduled`.
#[utoipa::path(delete, path = "/restart", tag = "operator",
    summary = "cancel a scheduled restart",
    security(("basic" = [])),
    responses((status = 200, description = "scheduled restart deleted", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 404, description = "no restarts are scheduled", body = String),
              (status = 503, description = "the agent did not answer in time", body = String)))]
pub async fn delete_restart(State(state): State<ApiState>) -> Response {
    let request =
        match super::send_to_core(&state, |request| Input::ScheduledRestartDeleted { request }) {
            Ok(request) => request,
            Err(why) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        };
    match super::await_answer(&state, VERDICT_WAIT, |s| {
        super::find_answer(&s.restart_verdicts, request).cloned()
    })
    .await
    {
        Some(Ok(())) => (StatusCode::OK, "scheduled restart deleted").into_response(),
        Some(Err(why)) => (StatusCode::NOT_FOUND, why).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not answer in time; the request may still be carried out",
        )
            .into_response(),
    }
}

/// `POST /reload`: re-read the local file and apply it (SIGHUP does the same). 202 as
/// Patroni's; 400 naming the field when the file is invalid (nothing changes then).
#[utoipa::path(post, path = "/reload", tag = "operator",
    summary = "re-read the local configuration file (SIGHUP does the same)",
    security(("basic" = [])),
    responses((status = 202, description = "reload scheduled", body = String),
              (status = 400, description = "the file is invalid; nothing changed", body = String),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 503, description = "the agent's loop is not running", body = String)))]
pub async fn post_reload(State(state): State<ApiState>) -> Response {
    let Some(reloader) = state.reloader.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent's loop is not running",
        )
            .into_response();
    };
    let outcome = tokio::task::spawn_blocking(move || reloader.reload("POST /reload")).await;
    let Ok(outcome) = outcome else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the reload did not finish").into_response();
    };
    match outcome {
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
    fn schedules_need_a_time_zone() {
        assert!(parse_schedule("2030-01-02T03:04:05+01:00", "restart").is_ok());
        assert_eq!(
            parse_schedule("2030-01-02T03:04:05", "restart"),
            Err((
                StatusCode::BAD_REQUEST,
                "Timezone information is mandatory for the scheduled restart".into()
            ))
        );
        assert_eq!(
            parse_schedule("next tuesday", "switchover").map_err(|e| e.0),
            Err(StatusCode::UNPROCESSABLE_ENTITY)
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
