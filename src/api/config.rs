//! `PATCH /config` and `PUT /config`: change the cluster-wide dynamic configuration through
//! any member, as `patronictl edit-config`, `pause` and `resume` do.
//!
//! PATCH merges the body into the stored document (objects recursively, `null` deletes a
//! key: JSON merge patch) and writes it only if the key is still at the revision it was read
//! at, answering 409 when someone wrote it meanwhile. PUT replaces the document. Either way
//! the result must be a valid configuration (timing within pgwarden's rules, known values
//! of the right type): a bad one is refused with 400 naming the field, and the cluster keeps
//! the one it has. Both answer 200 with the document now stored.
//!
//! Must not touch: PostgreSQL (every agent applies `/config` from its watch).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::config::DynamicConfig;

/// `PATCH /config`.
#[utoipa::path(patch, path = "/config", tag = "configuration",
    summary = "merge a JSON patch into `/config` (null removes a key)",
    request_body(content = Object, description = "the keys to change", content_type = "application/json"),
    security(("basic" = [])),
    responses((status = 200, description = "the new document", body = Object),
              (status = 400, description = "not a JSON object, or a value the agents refuse (the field is named)", body = super::openapi::ErrorBody),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 409, description = "`/config` changed meanwhile", body = super::openapi::ErrorBody),
              (status = 503, description = "etcd cannot be reached, or holds no configuration yet", body = super::openapi::ErrorBody)))]
pub(super) async fn patch_config(State(state): State<ApiState>, body: Bytes) -> Response {
    let patch = match object_body(&body) {
        Ok(patch) => patch,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let Some(store) = state.store.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the lock store is not connected",
        );
    };
    let (current, revision) = match store.read_config().await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no configuration in the lock store yet",
            )
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let merged = merge_patch(current.clone(), &patch);
    if merged == current {
        return Json(merged).into_response();
    }
    if let Err(why) = validate(&state, &merged) {
        return error(StatusCode::BAD_REQUEST, &why);
    }
    match store.write_config(merged.to_string(), Some(revision)).await {
        Ok(true) => Json(merged).into_response(),
        Ok(false) => error(
            StatusCode::CONFLICT,
            "the configuration changed while it was being patched; read it and try again",
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `PUT /config`.
#[utoipa::path(put, path = "/config", tag = "configuration",
    summary = "replace `/config` with the document",
    request_body(content = Object, description = "the whole document", content_type = "application/json"),
    security(("basic" = [])),
    responses((status = 200, description = "the new document", body = Object),
              (status = 400, description = "not a JSON object, or a value the agents refuse (the field is named)", body = super::openapi::ErrorBody),
              (status = 401, description = "no or wrong credentials", body = String),
              (status = 403, description = "source or client certificate refused", body = String),
              (status = 502, description = "the lock store refused the write", body = super::openapi::ErrorBody),
              (status = 503, description = "etcd cannot be reached", body = super::openapi::ErrorBody)))]
pub(super) async fn put_config(State(state): State<ApiState>, body: Bytes) -> Response {
    let document = match object_body(&body) {
        Ok(document) => document,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    if let Err(why) = validate(&state, &document) {
        return error(StatusCode::BAD_REQUEST, &why);
    }
    let Some(store) = state.store.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the lock store is not connected",
        );
    };
    match store.write_config(document.to_string(), None).await {
        Ok(_) => Json(document).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

/// The body as a non-empty JSON object, or what it is instead (a 400).
fn object_body(body: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if !map.is_empty() => Ok(Value::Object(map)),
        Ok(Value::Object(_)) => Err("the body is an empty object".into()),
        Ok(other) => Err(format!("the body must be a JSON object, not {other}")),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

/// A configuration every agent would accept, or what is wrong with it, naming the field
/// (a 400).
fn validate(state: &ApiState, document: &Value) -> Result<(), String> {
    let mut config = DynamicConfig::from_json(document).map_err(|e| e.to_string())?;
    // As every agent reads it: timing adjusted first (loop_wait lowered to fit the
    // demotion budget, with a warning in their logs), then checked.
    let margin_ms = state.config.pgwarden.demotion_margin_ms;
    config.adjust_demotion_budget("config", margin_ms, &mut Vec::new());
    config
        .validate_demotion_budget("config", margin_ms)
        .map_err(|e| e.to_string())
}

/// JSON merge patch (RFC 7386, as Patroni applies it): objects merge key by key, `null`
/// removes a key, anything else replaces.
pub fn merge_patch(target: Value, patch: &Value) -> Value {
    let Value::Object(changes) = patch else {
        return patch.clone();
    };
    let mut merged = match target {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    for (key, change) in changes {
        if change.is_null() {
            merged.remove(key);
        } else {
            let before = merged.remove(key).unwrap_or(Value::Null);
            merged.insert(key.clone(), merge_patch(before, change));
        }
    }
    Value::Object(merged)
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({"error": message}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_merges_objects_deletes_nulls_and_replaces_the_rest() {
        let stored = json!({
            "ttl": 30,
            "pause": true,
            "postgresql": {"parameters": {"work_mem": "4MB", "max_connections": 100}},
            "tags": ["a"],
        });
        let patch = json!({
            "pause": null,
            "postgresql": {"parameters": {"work_mem": "8MB", "wal_level": "logical"}},
            "tags": ["b", "c"],
            "loop_wait": 10,
        });
        assert_eq!(
            merge_patch(stored, &patch),
            json!({
                "ttl": 30,
                "loop_wait": 10,
                "postgresql": {"parameters": {
                    "work_mem": "8MB", "max_connections": 100, "wal_level": "logical"
                }},
                "tags": ["b", "c"],
            })
        );
        // A patch of a scalar with an object makes an object; removing an absent key is a
        // no-op.
        assert_eq!(
            merge_patch(
                json!({"a": 1}),
                &json!({"a": {"b": null, "c": 2}, "z": null})
            ),
            json!({"a": {"c": 2}})
        );
    }

    #[test]
    fn only_a_non_empty_object_is_a_body() {
        assert!(object_body(br#"{"pause": true}"#).is_ok());
        assert_eq!(
            object_body(b"{}").expect_err("refused"),
            "the body is an empty object"
        );
        assert!(object_body(b"[1]")
            .expect_err("refused")
            .contains("JSON object"));
        assert!(object_body(b"{not json")
            .expect_err("refused")
            .contains("not JSON"));
    }
}
