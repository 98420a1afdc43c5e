//! `GET /decisions`: the agent's last decisions from the decision log
//! (`telemetry::decisions`), oldest first, with what caused each, the gate's verdicts, the
//! transitions and the effects with their outcomes and durations. pgwarden's own; Patroni
//! has none. `pgwardenctl why` reads it.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;

use serde_json::json;

use super::ApiState;
use crate::telemetry::decisions::{self, Decision, LogStats};

/// Decisions returned when the request does not say.
const DEFAULT_LIMIT: usize = 100;

/// The filters of `GET /decisions` (read from the query string by hand, so a malformed one
/// is answered in JSON like every other refusal).
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DecisionFilter {
    /// Comma-separated kinds: an input (`policy_decided`), a step's name (`pg.promote`) or
    /// a step kind (`gate`, `transition`, `effect`, `policy`); any of them matches.
    kind: Option<String>,
    /// Decisions at or after this time: RFC 3339, or seconds since the Unix epoch.
    since: Option<String>,
    /// Decisions at or before this time (same forms).
    until: Option<String>,
    /// The newest this many of the matching decisions (default 100).
    limit: Option<usize>,
}

/// The answer of `GET /decisions`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct DecisionsBody {
    /// The member answering.
    member: String,
    /// The matching decisions, oldest first.
    decisions: Vec<Decision>,
    /// The log's counters.
    log: LogStats,
}

#[utoipa::path(get, path = "/decisions", tag = "status",
    summary = "the agent's last decisions: cause, gate verdicts, transitions, effects",
    params(DecisionFilter),
    responses((status = 200, description = "decisions, oldest first", body = DecisionsBody),
              (status = 400, description = "a filter that cannot be read", body = Object),
              (status = 503, description = "this agent keeps no decision log", body = Object)))]
pub(super) async fn get_decisions(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(log) = state.decisions.as_ref() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "this agent keeps no decision log"})),
        )
            .into_response();
    };
    let query = match DecisionFilter::from_params(&params).and_then(|f| to_query(&f)) {
        Ok(query) => query,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
        }
    };
    Json(DecisionsBody {
        member: state.identity.name.clone(),
        decisions: log.query(&query),
        log: log.stats(),
    })
    .into_response()
}

impl DecisionFilter {
    fn from_params(params: &HashMap<String, String>) -> Result<DecisionFilter, String> {
        let limit = params
            .get("limit")
            .map(|raw| {
                raw.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("limit: {raw:?}: expected a whole number"))
            })
            .transpose()?;
        Ok(DecisionFilter {
            kind: params.get("kind").cloned(),
            since: params.get("since").cloned(),
            until: params.get("until").cloned(),
            limit,
        })
    }
}

fn to_query(filter: &DecisionFilter) -> Result<decisions::Query, String> {
    let kinds = filter
        .kind
        .as_deref()
        .map(|k| {
            k.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let time = |name: &str, raw: &Option<String>| {
        raw.as_deref()
            .map(|raw| parse_time(raw).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    Ok(decisions::Query {
        kinds,
        since_ms: time("since", &filter.since)?,
        until_ms: time("until", &filter.until)?,
        limit: filter.limit.unwrap_or(DEFAULT_LIMIT),
    })
}

/// RFC 3339 or seconds since the epoch, as milliseconds since the epoch.
fn parse_time(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok((seconds * 1000.0) as u64);
        }
    }
    let parsed = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
        format!("{raw:?}: expected an RFC 3339 time (2026-12-07T14:02:11Z) or Unix seconds")
    })?;
    u64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{raw:?}: before 1970"))
}

#[cfg(test)]
mod tests {
    use super::{parse_time, DecisionFilter};
    use std::collections::HashMap;

    #[test]
    fn times_are_rfc3339_or_unix_seconds() {
        assert_eq!(
            parse_time("1765116131").expect("test setup"),
            1_765_116_131_000
        );
        assert_eq!(
            parse_time("2025-12-07T14:02:11Z").expect("test setup"),
            1_765_116_131_000
        );
        assert_eq!(
            parse_time("2025-12-07T15:02:11.5+01:00").expect("test setup"),
            1_765_116_131_500
        );
        let params = HashMap::from([("limit".to_string(), "-1".to_string())]);
        let error = DecisionFilter::from_params(&params).expect_err("refused");
        assert_eq!(error, "limit: \"-1\": expected a whole number");
        let error = parse_time("yesterday").expect_err("refused");
        assert!(error.contains("RFC 3339"), "{error}");
    }
}
