//! The API's OpenAPI 3.1 document (`GET /openapi.json`), generated from the handlers'
//! `#[utoipa::path]` annotations: the router in `api::router` is built from the same
//! annotations (utoipa-axum's `routes!`), so a handler cannot be routed without being
//! documented. The health checks, which the fallback serves for any of their paths, are
//! added here from [`HEALTH_PATHS`].
//!
//! Bodies are documented by the schemas below; the handlers read them field by field
//! themselves (to name the field in a 400), so these types only describe.

use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, PathItem, Required, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every path the fallback answers as a health check (Patroni's names), GET/HEAD/OPTIONS.
pub const HEALTH_PATHS: &[&str] = &[
    "/",
    "/primary",
    "/read-write",
    "/master",
    "/leader",
    "/standby-leader",
    "/standby_leader",
    "/replica",
    "/read-only",
    "/sync",
    "/synchronous",
    "/read-only-sync",
    "/read-only-synchronous",
    "/async",
    "/asynchronous",
    "/quorum",
    "/read-only-quorum",
    "/health",
];

/// `GET /patroni` (and health checks' GET bodies): the member's status, as Patroni shows it.
#[derive(Serialize, ToSchema)]
pub struct PatroniStatus {
    /// PostgreSQL's state: `running`, `stopped`, `starting`, `stopping`, `restarting`, ...
    pub state: String,
    /// `primary`, `replica`, `standby_leader`, `uninitialized`, ...
    pub role: String,
    /// `{version, scope, name}` of the agent.
    pub patroni: PatroniIdentity,
    /// `server_version`, `timeline`, `xlog`, `replication`, `pgwarden`, ... when known.
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

/// `patroni` in [`PatroniStatus`].
#[derive(Serialize, ToSchema)]
pub struct PatroniIdentity {
    /// The version pgwarden answers as.
    pub version: String,
    /// The cluster.
    pub scope: String,
    /// The member.
    pub name: String,
}

/// `GET /cluster`: the members as etcd has them.
#[derive(Serialize, ToSchema)]
pub struct ClusterStatus {
    /// One entry per member key.
    pub members: Vec<ClusterMember>,
    /// `scope`, `pause`, `scheduled_switchover`, ... when set.
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

/// A member in [`ClusterStatus`].
#[derive(Serialize, ToSchema)]
pub struct ClusterMember {
    /// The member name.
    pub name: String,
    /// `leader`, `sync_standby`, `quorum_standby`, `replica`, ...
    pub role: String,
    /// `running`, `streaming`, `stopped`, ...
    pub state: String,
}

/// An error about `/config`: `{"error": "..."}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field when a value is refused.
    pub error: String,
}

/// `POST /switchover` and `POST /failover`. Empty or blank names count as absent.
#[derive(Serialize, ToSchema)]
pub struct SwitchoverBody {
    /// The current leader (a switchover names it).
    pub leader: Option<String>,
    /// Who should lead (a failover names it; `member` is its old name).
    pub candidate: Option<String>,
    /// Patroni's old name for `candidate`.
    pub member: Option<String>,
    /// ISO 8601 time of a scheduled switchover.
    pub scheduled_at: Option<String>,
    /// pgwarden's extension: override a policy's refusal.
    pub override_policy: Option<bool>,
}

/// `POST /restart`; every field is optional, an empty body restarts now.
#[derive(Serialize, ToSchema)]
pub struct RestartBody {
    /// ISO 8601 time to restart at.
    pub schedule: Option<String>,
    /// Restart only when PostgreSQL says a restart is pending.
    pub restart_pending: Option<bool>,
    /// Restart only a member of this role (`primary`, `replica`).
    pub role: Option<String>,
    /// Restart only when the running version is older than this one.
    pub postgres_version: Option<String>,
    /// Seconds the start may take.
    pub timeout: Option<f64>,
}

/// `POST /reinitialize`.
#[derive(Serialize, ToSchema)]
pub struct ReinitializeBody {
    /// Accepted for Patroni's sake; a running action is never cancelled.
    pub force: Option<bool>,
    /// Accepted for Patroni's sake; pgwarden always clones from the leader.
    pub from_leader: Option<bool>,
}

/// `POST /failsafe`: a leader's heartbeat while etcd is unreachable.
#[derive(Serialize, ToSchema)]
pub struct FailsafeHeartbeat {
    /// The leader's name.
    pub name: String,
    /// Its `conn_url`.
    pub conn_url: Option<String>,
    /// Its `api_url`.
    pub api_url: Option<String>,
    /// Permanent slots to advance (ignored: pgwarden keeps none).
    #[schema(value_type = Object)]
    pub slots: Option<serde_json::Value>,
}

/// Adds the Basic authentication scheme the unsafe operations name.
struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pgwarden REST API",
        description = "Patroni's REST API, as pgwarden serves it: health checks for HAProxy, \
                       status, and the operator endpoints patronictl calls. Unsafe operations \
                       (POST, PUT, PATCH, DELETE) need the Basic credentials of \
                       `restapi.authentication` when it is set, a client certificate with \
                       `verify_client`, and a source in `restapi.allowlist` when set."
    ),
    modifiers(&BasicAuth),
    components(schemas(
        PatroniStatus,
        PatroniIdentity,
        ClusterStatus,
        ClusterMember,
        ErrorBody,
        SwitchoverBody,
        RestartBody,
        ReinitializeBody,
        FailsafeHeartbeat
    ))
)]
/// The document's fixed parts: information, schemas, security schemes.
pub struct ApiDoc;

/// The health check operation on `path`.
fn health_operation(path: &str, method: &str) -> utoipa::openapi::path::Operation {
    let query = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    };
    let mut ok = ResponseBuilder::new().description("the check passes");
    let mut failing =
        ResponseBuilder::new().description("the check fails (by design, not an error)");
    if method == "get" {
        let body = utoipa::openapi::ContentBuilder::new()
            .schema(Some(utoipa::openapi::Ref::from_schema_name(
                "PatroniStatus",
            )))
            .build();
        ok = ok.content("application/json", body.clone());
        failing = failing.content("application/json", body);
    }
    OperationBuilder::new()
        .tag("health")
        .operation_id(Some(format!(
            "{method}_health_{}",
            path.trim_matches('/').replace(['-', '/'], "_")
        )))
        .summary(Some(format!("health check {path}")))
        .parameter(query(
            "lag",
            "the most lag allowed, in bytes or with a unit (16kB, 64MB)",
        ))
        .parameter(query(
            "replication_state",
            "`streaming` or `in archive recovery`",
        ))
        .response("200", ok.build())
        .response("503", failing.build())
        .build()
}

/// Adds the health checks to `doc`.
pub fn add_health_checks(doc: &mut utoipa::openapi::OpenApi) {
    for path in HEALTH_PATHS {
        for (method, name) in [
            (HttpMethod::Get, "get"),
            (HttpMethod::Head, "head"),
            (HttpMethod::Options, "options"),
        ] {
            let item = PathItem::new(method, health_operation(path, name));
            let entry = doc.paths.paths.entry((*path).to_string()).or_default();
            merge(entry, item);
        }
    }
}

/// Copies the operations of `from` into `into`.
fn merge(into: &mut PathItem, from: PathItem) {
    macro_rules! take {
        ($($field:ident),*) => {$(
            if from.$field.is_some() {
                into.$field = from.$field;
            }
        )*};
    }
    take!(get, head, options);
}

/// The guard's answers (`api::access`) on the operations it guards: 408 and 413 on every
/// unsafe operation (the body is read within bounds before the handler runs), 401 on the
/// detail reads (`pgwarden.protect_reads`).
pub fn add_guard_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    let text = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "text/plain",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        for operation in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut operation.responses.responses;
            responses
                .entry("408".into())
                .or_insert_with(|| text("the body did not arrive within 10 s"));
            responses
                .entry("413".into())
                .or_insert_with(|| text("the body is over 1 MiB"));
        }
        if super::access::DETAIL_READS.contains(&path.as_str()) {
            if let Some(get) = item.get.as_mut() {
                get.responses
                    .responses
                    .entry("401".into())
                    .or_insert_with(|| {
                        text("with pgwarden.protect_reads: no or wrong credentials")
                    });
            }
        }
    }
}
