//! The REST API HAProxy and patronictl talk to: Patroni's paths, methods and status codes.
//! Every health and status answer comes from the last published `NodeStatus`; no such
//! handler touches PostgreSQL or etcd, so a hung database cannot hang a health check. Only
//! the operator endpoints (`switchover`) write to etcd; `failsafe` and `reinitialize` hand
//! their request to the core and answer with its verdict.

pub mod access;
pub mod cluster;
pub mod config;
mod decisions;
mod failsafe;
pub mod metrics;
pub mod openapi;
mod reinitialize;
mod restart;
pub mod serve;
mod switchover;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::core::health::{self, Check, CheckQuery};
use crate::core::NodeStatus;
use crate::runtime::clock;
use crate::runtime::member::{patroni_json, Identity};

/// What handlers read.
#[derive(Clone)]
pub struct ApiState {
    identity: Arc<Identity>,
    status: watch::Receiver<Arc<NodeStatus>>,
    config: Arc<Config>,
    policy: crate::runtime::policy::SharedPolicyStatus,
    /// For the operator endpoints that write the `failover` key.
    store: crate::dcs::StoreSlot,
    /// The core's inputs, for `POST /failsafe` heartbeats the core must judge.
    inputs: Option<crate::runtime::inbox::InputSender>,
    /// Re-reads the local file (`POST /reload`).
    reloader: Option<Arc<crate::runtime::reload::Reloader>>,
    /// Other members' APIs (why a switchover did not happen).
    api_client: crate::runtime::http::ApiClient,
    /// Who may call what (`access`).
    rules: access::SharedRules,
    /// The decision log (`GET /decisions`).
    decisions: Option<Arc<crate::telemetry::decisions::DecisionLog>>,
}

impl ApiState {
    /// State over a status channel.
    pub fn new(
        identity: Identity,
        status: watch::Receiver<Arc<NodeStatus>>,
        config: Config,
    ) -> ApiState {
        ApiState {
            identity: Arc::new(identity),
            status,
            policy: Default::default(),
            store: crate::dcs::StoreSlot::default(),
            inputs: None,
            reloader: None,
            api_client: crate::runtime::http::ApiClient::plain(),
            rules: Arc::new(std::sync::RwLock::new(Arc::new(access::Rules::new(
                &config,
                Vec::new(),
            )))),
            config: Arc::new(config),
            decisions: None,
        }
    }

    /// Serve `log` at `GET /decisions`.
    pub fn with_decisions(
        mut self,
        log: Arc<crate::telemetry::decisions::DecisionLog>,
    ) -> ApiState {
        self.decisions = Some(log);
        self
    }

    /// Follow `rules` (resolved host names, replaced on reload).
    pub fn with_rules(mut self, rules: access::SharedRules) -> ApiState {
        self.rules = rules;
        self
    }

    fn rules(&self) -> Arc<access::Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reach other members' APIs with `client` (TLS, credentials).
    pub fn with_api_client(mut self, client: crate::runtime::http::ApiClient) -> ApiState {
        self.api_client = client;
        self
    }

    /// Let `POST /reload` re-read and apply the local configuration file.
    pub fn with_reloader(mut self, reloader: Arc<crate::runtime::reload::Reloader>) -> ApiState {
        self.reloader = Some(reloader);
        self
    }

    /// Let `POST /failsafe` hand heartbeats to the core.
    pub fn with_inputs(mut self, inputs: crate::runtime::inbox::InputSender) -> ApiState {
        self.inputs = Some(inputs);
        self
    }

    /// Show the policy thread's status (active policy, counters) in `/patroni` and `/metrics`.
    pub fn with_policy(mut self, policy: crate::runtime::policy::SharedPolicyStatus) -> ApiState {
        self.policy = policy;
        self
    }

    /// Let `POST /switchover`, `POST /failover` and `DELETE /switchover` write the
    /// `failover` key.
    pub fn with_store(mut self, store: crate::dcs::StoreSlot) -> ApiState {
        self.store = store;
        self
    }

    fn policy_status(&self) -> crate::runtime::policy::PolicyRuntimeStatus {
        self.policy.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn snapshot(&self) -> Arc<NodeStatus> {
        self.status.borrow().clone()
    }

    fn patroni(&self, status: &NodeStatus) -> Value {
        patroni_json(&self.identity, status, dcs_last_seen_epoch(status))
    }
}

/// When the lock store last answered, in epoch seconds (`dcs_last_seen`).
fn dcs_last_seen_epoch(status: &NodeStatus) -> Option<u64> {
    status.dcs_last_seen.map(|t| {
        let age = clock::now().saturating_since(t).as_secs();
        clock::wall_epoch_secs().saturating_sub(age)
    })
}

/// Bind `restapi.listen`.
pub async fn bind(config: &Config) -> std::io::Result<TcpListener> {
    let listen = &config.restapi.listen;
    let host = if listen.host.is_empty() || listen.host == "*" {
        "0.0.0.0"
    } else {
        listen.host.as_str()
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    TcpListener::bind((host, listen.port)).await
}

/// Request ids for inputs the core answers in the status (`POST /failsafe`,
/// `POST /reinitialize`), so each handler finds its own verdict among concurrent ones.
static NEXT_REQUEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Hand the core the input `make` builds around a fresh request id; the id, or why the
/// agent's loop cannot take it (answered as 503).
fn send_to_core(
    state: &ApiState,
    make: impl FnOnce(u64) -> crate::core::Input,
) -> Result<u64, &'static str> {
    let inputs = state
        .inputs
        .as_ref()
        .ok_or("the agent's loop is not running")?;
    let request = NEXT_REQUEST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    inputs
        .send(make(request))
        .map_err(|_| "the agent's loop stopped")?;
    Ok(request)
}

/// The answer the core gave to `request` among `answers` (the newest for that id).
fn find_answer(answers: &[(u64, Result<(), String>)], request: u64) -> Option<&Result<(), String>> {
    answers
        .iter()
        .rev()
        .find(|(id, _)| *id == request)
        .map(|(_, r)| r)
}

/// Waits up to `bound` for the published status to hold the answer `pick` finds.
async fn await_answer(
    state: &ApiState,
    bound: std::time::Duration,
    pick: impl Fn(&NodeStatus) -> Option<Result<(), String>>,
) -> Option<Result<(), String>> {
    let mut status = state.status.clone();
    tokio::time::timeout(bound, status.wait_for(|s| pick(s).is_some()))
        .await
        .ok()
        .and_then(|seen| seen.ok().and_then(|s| pick(&s)))
}

/// Every handler with its route, and the OpenAPI document of them, from the same
/// annotations (the health checks are the fallback's, added by `openapi`).
fn documented_routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    use utoipa_axum::routes;
    let (router, mut doc) = utoipa_axum::router::OpenApiRouter::with_openapi(
        <openapi::ApiDoc as utoipa::OpenApi>::openapi(),
    )
    .routes(routes!(get_patroni))
    .routes(routes!(cluster::get_cluster))
    .routes(routes!(cluster::get_history))
    .routes(routes!(
        cluster::get_config,
        config::patch_config,
        config::put_config
    ))
    .routes(routes!(metrics::get_metrics))
    .routes(routes!(liveness))
    .routes(routes!(readiness))
    .routes(routes!(
        switchover::post_switchover,
        switchover::delete_switchover
    ))
    .routes(routes!(switchover::post_failover))
    .routes(routes!(reinitialize::post_reinitialize))
    .routes(routes!(restart::post_restart, restart::delete_restart))
    .routes(routes!(restart::post_reload))
    .routes(routes!(failsafe::get_failsafe, failsafe::post_failsafe))
    .routes(routes!(decisions::get_decisions))
    .routes(routes!(get_openapi))
    .split_for_parts();
    openapi::add_health_checks(&mut doc);
    openapi::add_guard_answers(&mut doc);
    (router, doc)
}

/// The API's OpenAPI document.
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| documented_routes().1)
}

#[utoipa::path(get, path = "/openapi.json", tag = "status",
    summary = "this document",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
async fn get_openapi() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

/// The router.
pub fn router(state: ApiState) -> Router {
    let (routes, _) = documented_routes();
    let routes = routes
        .fallback(health_check)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .with_state(state);
    // The method rewrite must run before routing, so it wraps a router that has no routes
    // of its own (a layer on `routes` would run after routing and see OPTIONS as 405).
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(options_as_head))
}

/// Patroni answers OPTIONS like HEAD on every path: status line only. HAProxy's bare
/// `option httpchk` sends `OPTIONS /`.
async fn options_as_head(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() == Method::OPTIONS {
        *request.method_mut() = Method::HEAD;
    }
    next.run(request).await
}

/// Serve until the process ends, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    tls: Option<Arc<serve::ServerTlsHandle>>,
) {
    serve::serve(listener, router(state), tls).await
}

#[utoipa::path(get, path = "/patroni", tag = "status",
    summary = "the member's status (what peers, patronictl and monitoring read)",
    responses((status = 200, description = "status", body = openapi::PatroniStatus)))]
async fn get_patroni(State(state): State<ApiState>) -> Json<Value> {
    let status = state.snapshot();
    let mut body = state.patroni(&status);
    if let Some(pgwarden) = body.get_mut("pgwarden").and_then(Value::as_object_mut) {
        pgwarden.insert("policy".into(), policy_json(&state, &status));
    }
    if let (Some(log), Some(object)) = (crate::logging::queue_counters(), body.as_object_mut()) {
        // As Patroni: shown only while lines wait (more than its normal two).
        if log.waiting() > 2 {
            object.insert("logger_queue_size".into(), log.waiting().into());
            if log.lost() > 0 {
                object.insert("logger_records_lost".into(), log.lost().into());
            }
        }
    }
    Json(body)
}

/// The `pgwarden.policy` object of `/patroni`: which policies decide, and what the host and
/// the invariant gate did with their answers.
fn policy_json(state: &ApiState, status: &NodeStatus) -> Value {
    let runtime = state.policy_status();
    let info = |p: &crate::policy::PolicyInfo| {
        serde_json::json!({
            "name": p.name,
            "version": p.version,
            "contract": p.contract_version,
            "source": p.source,
            "sha256": p.sha256,
        })
    };
    let c = &runtime.counters;
    serde_json::json!({
        "active": runtime.active.as_ref().map(info),
        "shadow": runtime.shadow.as_ref().map(info),
        "calls": c.calls,
        "fallbacks": status.policy.fallbacks,
        "shadow_divergences": c.shadow_divergences,
        "load_failures": runtime.load_failures,
        "last_load_error": runtime.last_load_error,
        "gate_rejections": status.policy.gate_rejections,
        "last_gate_rejection": status.policy.last_gate_rejection,
        "preference": status.policy.preference,
    })
}

fn status_only(ok: bool) -> Response {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Body::empty()).into_response()
}

#[utoipa::path(get, path = "/liveness", tag = "health",
    summary = "the agent's loop runs (Kubernetes liveness)",
    responses((status = 200, description = "alive"), (status = 503, description = "the loop has not run within ttl (by design)")))]
async fn liveness(State(state): State<ApiState>) -> Response {
    let status = state.snapshot();
    let limit = if status.holds_leader_key {
        status.ttl
    } else {
        status.ttl * 2
    };
    status_only(clock::now().saturating_since(status.now) <= limit.max(status.loop_wait * 2))
}

#[utoipa::path(get, path = "/readiness", tag = "health",
    summary = "leader, or a streaming replica within lag (Kubernetes readiness)",
    params(("lag" = Option<String>, Query, description = "the most lag allowed, in bytes or with a unit")),
    responses((status = 200, description = "ready"), (status = 503, description = "not ready (by design)")))]
async fn readiness(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let status = state.snapshot();
    if status.holds_leader_key {
        return status_only(true);
    }
    let max_lag = params
        .get("lag")
        .and_then(|l| parse_size(l))
        .unwrap_or(status.config.maximum_lag_on_failover);
    let query = CheckQuery {
        max_lag_bytes: Some(max_lag),
        replication_state: Some("streaming".into()),
        tags: Vec::new(),
    };
    status_only(health::passes(&status, Check::Replica, &query))
}

async fn health_check(
    State(state): State<ApiState>,
    method: Method,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    // Health checks are reads: another method on them is not a route (Patroni: 501).
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(axum::http::header::ALLOW, "GET, HEAD, OPTIONS")],
            "method not allowed",
        )
            .into_response();
    }
    let status = state.snapshot();
    let check = Check::from_path(uri.path());
    let query = CheckQuery {
        max_lag_bytes: params.get("lag").and_then(|l| parse_size(l)),
        replication_state: params.get("replication_state").cloned(),
        tags: params
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("tag_").map(|t| (t.to_string(), v.clone())))
            .collect(),
    };
    let ok = health::passes(&status, check, &query);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if method == Method::GET {
        (code, Json(state.patroni(&status))).into_response()
    } else {
        (code, Body::empty()).into_response()
    }
}

/// Parse a lag value in bytes or with a unit (`16kB`, `64MB`, `1GB`), like Patroni.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1024,
        "MB" => 1024 * 1024,
        "GB" => 1024 * 1024 * 1024,
        "TB" => 1024u64.pow(4),
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn lag_values_accept_units() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("16kB"), Some(16 * 1024));
        assert_eq!(parse_size("64MB"), Some(64 * 1024 * 1024));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("abc"), None);
        assert_eq!(parse_size("5XB"), None);
    }
}
