//! The REST API over a published status: Patroni's status codes, status-only HEAD/OPTIONS,
//! JSON field names. No server, no cluster: the router is called directly.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use pgwarden::api::{router, ApiState};
use pgwarden::core::view::{
    ClusterView, ControlState, DataDir, LeaderKey, MemberInfo, PgObservation, ServerObservation,
};
use pgwarden::core::{Input, Instant, LeaseId, Lsn, Node, NodeStatus, Revision, Timeline};
use pgwarden::runtime::member::Identity;
use tower::ServiceExt;

const SEED: &str = include_str!("testdata/seed-patroni.yml");

fn pg(in_recovery: bool) -> PgObservation {
    PgObservation {
        data_dir: DataDir::Initialized {
            sysid: "7300".into(),
            state: ControlState::InProduction,
            timeline: Timeline(1),
            standby_signal: in_recovery,
        },
        postmaster_alive: true,
        server: Some(ServerObservation {
            in_recovery,
            timeline: Timeline(1),
            wal_position: Lsn(5000),
            received: in_recovery.then_some(Lsn(5000)),
            replayed: in_recovery.then_some(Lsn(4000)),
            replayed_timestamp: None,
            receiver_status: in_recovery.then(|| "streaming".to_string()),
            receiver_upstream: None,
            replication: Vec::new(),
            synchronous_standby_names: String::new(),
            slots: Vec::new(),
            server_version: 150018,
            postmaster_start_time: None,
            pending_restart: Vec::new(),
            replay_paused: false,
        }),
        silent: false,
    }
}

/// The status of `pg1` from the seed config, primary (holding the key) or replica.
fn status(primary: bool) -> NodeStatus {
    let loaded = pgwarden::config::parse(SEED, &|_| None).expect("seed config");
    let mut node = Node::new(pgwarden::runtime::node_settings(&loaded.config), Instant(0));
    let lease = LeaseId(7);
    node.handle_input(
        Instant(0),
        Input::LeaseGranted {
            lease,
            ttl_secs: 30,
            sent_at: Instant(0),
        },
    );
    let mut view = ClusterView {
        revision: Revision(10),
        initialize: Some("7300".into()),
        optime: Some(Lsn(5000)),
        ..ClusterView::default()
    };
    view.members.insert(
        "pg1".into(),
        MemberInfo {
            name: "pg1".into(),
            ..MemberInfo::default()
        },
    );
    let holder = if primary {
        ("pg1", lease.0)
    } else {
        ("pg2", 99)
    };
    view.leader = Some(LeaderKey {
        name: holder.0.into(),
        lease: holder.1,
        create_revision: Revision(3),
    });
    node.handle_input(Instant(0), Input::ClusterChanged(std::sync::Arc::new(view)));
    node.handle_input(Instant(0), Input::PostgresProbed(pg(!primary)));
    node.status()
}

async fn call(status: NodeStatus, method: Method, uri: &str) -> (StatusCode, Vec<u8>) {
    let (code, _, body) = call_typed(status, method, uri).await;
    (code, body)
}

/// [`call`], with the answer's `Content-Type`.
async fn call_typed(
    status: NodeStatus,
    method: Method,
    uri: &str,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let loaded = pgwarden::config::parse(SEED, &|_| None).expect("seed config");
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(status));
    let identity = Identity {
        scope: "pg-cluster".into(),
        name: "pg1".into(),
        conn_url: "postgres://10.0.1.11:5432/postgres".into(),
        api_url: "http://10.0.1.11:8008/patroni".into(),
    };
    let app = router(ApiState::new(identity, rx, loaded.config));
    let response = app
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let code = response.status();
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (code, content_type, body)
}

#[tokio::test]
async fn leader_answers_200_on_primary_and_503_on_replica() {
    let s = status(true);
    assert!(s.holds_leader_key);
    for (method, path, code) in [
        (Method::GET, "/primary", 200),
        (Method::GET, "/", 200),
        (Method::GET, "/read-write", 200),
        (Method::GET, "/leader", 200),
        (Method::GET, "/read-only", 200),
        (Method::GET, "/read-only-quorum", 200),
        (Method::GET, "/quorum", 503),
        (Method::GET, "/health", 200),
        (Method::GET, "/replica", 503),
        (Method::GET, "/sync", 503),
        (Method::GET, "/async", 503),
        (Method::GET, "/no-such-check", 503),
    ] {
        assert_eq!(
            call(s.clone(), method, path).await.0.as_u16(),
            code,
            "GET {path}"
        );
    }
}

#[tokio::test]
async fn head_and_options_answer_with_the_status_only() {
    for (path, code) in [
        ("/primary", 200),
        ("/replica", 503),
        ("/", 200),
        ("/patroni", 200),
    ] {
        for method in [Method::HEAD, Method::OPTIONS] {
            let (got, body) = call(status(true), method.clone(), path).await;
            assert_eq!(got.as_u16(), code, "{method} {path}");
            assert!(body.is_empty(), "{method} {path} has a body");
        }
    }
}

#[tokio::test]
async fn replica_answers_200_on_replica_within_lag_and_503_beyond() {
    let s = status(false);
    assert_eq!(
        call(s.clone(), Method::GET, "/primary").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(s.clone(), Method::GET, "/replica").await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(s.clone(), Method::GET, "/replica?lag=10MB").await.0,
        StatusCode::OK
    );
    // Replayed 4000, leader at 5000: 1000 bytes behind.
    assert_eq!(
        call(s.clone(), Method::GET, "/replica?lag=500").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(
            s.clone(),
            Method::GET,
            "/replica?replication_state=streaming"
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        call(s.clone(), Method::GET, "/replica?tag_zone=a").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(call(s, Method::GET, "/async").await.0, StatusCode::OK);
}

/// `pg1` as a standby of `pg2` that `/sync` names, under `mode`.
fn listed_standby(mode: pgwarden::config::SynchronousMode) -> NodeStatus {
    let mut s = status(false);
    s.config.synchronous_mode = mode;
    let view = std::sync::Arc::make_mut(s.view.as_mut().expect("a view"));
    view.sync = Some(pgwarden::core::view::Versioned {
        value: pgwarden::core::view::SyncState {
            leader: Some("pg2".into()),
            sync_standby: vec!["pg1".into()],
            quorum: 1,
        },
        mod_revision: Revision(9),
    });
    s
}

async fn codes(s: &NodeStatus, paths: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    for path in paths {
        out.push(call(s.clone(), Method::GET, path).await.0.as_u16());
    }
    out
}

#[tokio::test]
async fn sync_and_quorum_checks_follow_the_synchronous_mode_as_patroni() {
    use pgwarden::config::SynchronousMode;
    let paths = [
        "/sync",
        "/read-only-sync",
        "/quorum",
        "/read-only-quorum",
        "/async",
    ];
    // Synchronous mode: a listed standby is a sync standby, not a quorum voter.
    let sync = listed_standby(SynchronousMode::On);
    assert_eq!(codes(&sync, &paths).await, [200, 200, 503, 503, 503]);
    let body: serde_json::Value =
        serde_json::from_slice(&call(sync, Method::GET, "/patroni").await.1).expect("json");
    assert_eq!(body["sync_standby"], true);
    assert!(body.get("quorum_standby").is_none());

    // Quorum mode: the same standby votes; `/sync` and `/async` refuse it, as in Patroni.
    let quorum = listed_standby(SynchronousMode::Quorum);
    assert_eq!(codes(&quorum, &paths).await, [503, 503, 200, 200, 503]);
    let body: serde_json::Value =
        serde_json::from_slice(&call(quorum.clone(), Method::GET, "/patroni").await.1)
            .expect("json");
    assert_eq!(body["quorum_standby"], true);
    assert!(body.get("sync_standby").is_none());
    let (_, metrics) = call(quorum.clone(), Method::GET, "/metrics").await;
    let metrics = String::from_utf8(metrics).expect("utf-8");
    assert!(metrics.contains("patroni_quorum_standby{scope=\"pg-cluster\",name=\"pg1\"} 1"));
    assert!(metrics.contains("patroni_sync_standby{scope=\"pg-cluster\",name=\"pg1\"} 0"));

    // A `/sync` left over after synchronous mode was turned off lists nobody.
    let off = listed_standby(SynchronousMode::Off);
    assert_eq!(codes(&off, &paths).await, [503, 503, 503, 503, 200]);

    // Without a view of the cluster the synchronous checks answer 503, `/replica` still 200.
    let mut blind = listed_standby(SynchronousMode::On);
    blind.view = None;
    assert_eq!(codes(&blind, &paths).await, [503, 503, 503, 503, 503]);
    assert_eq!(codes(&blind, &["/replica"]).await, [200]);
}

#[tokio::test]
async fn tag_filters_apply_to_every_check_but_the_leader_ones() {
    let mut primary = status(true);
    primary
        .tags
        .insert("zone".into(), serde_json::Value::String("a".into()));
    let paths = [
        "/primary?tag_zone=b",
        "/leader?tag_zone=b",
        "/read-only?tag_zone=b",
        "/read-only?tag_zone=a",
        "/health?tag_zone=b",
        "/health?tag_zone=a",
    ];
    assert_eq!(
        codes(&primary, &paths).await,
        [200, 200, 503, 200, 503, 200]
    );
}

#[tokio::test]
async fn patroni_status_uses_patronis_field_names() {
    let (code, body) = call(status(false), Method::GET, "/patroni").await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["role"], "replica");
    assert_eq!(v["state"], "running");
    assert_eq!(v["timeline"], 1);
    assert_eq!(v["replication_state"], "streaming");
    assert_eq!(v["xlog"]["received_location"], 5000);
    assert_eq!(v["xlog"]["replayed_location"], 4000);
    assert_eq!(v["server_version"], 150018);
    assert_eq!(v["database_system_identifier"], "7300");
    assert_eq!(v["patroni"]["scope"], "pg-cluster");
    assert_eq!(v["patroni"]["name"], "pg1");
    let (code, body) = call(status(true), Method::GET, "/primary").await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["role"], "primary");
    assert_eq!(v["xlog"]["location"], 5000);
}

/// A node (`pg1`, a replica or the leader) with `failsafe_mode` as given, behind the router,
/// its core fed by a loop like the runtime's: `POST /failsafe` goes through the core.
async fn failsafe_call(
    primary: bool,
    failsafe_mode: bool,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, String) {
    let loaded = pgwarden::config::parse(SEED, &|_| None).expect("seed config");
    let mut node = Node::new(pgwarden::runtime::node_settings(&loaded.config), Instant(0));
    let mut view = ClusterView {
        revision: Revision(10),
        initialize: Some("7300".into()),
        ..ClusterView::default()
    };
    view.config = Some(pgwarden::core::view::Versioned {
        value: pgwarden::config::DynamicConfig {
            failsafe_mode,
            ..loaded.config.bootstrap.dcs.clone()
        },
        mod_revision: Revision(2),
    });
    view.failsafe
        .insert("pg1".into(), "http://10.0.1.11:8008/patroni".into());
    view.failsafe
        .insert("pg2".into(), "http://10.0.1.12:8008/patroni".into());
    node.handle_input(Instant(0), Input::ClusterChanged(std::sync::Arc::new(view)));
    node.handle_input(Instant(0), Input::PostgresProbed(pg(!primary)));
    let (status_tx, status_rx) = tokio::sync::watch::channel(Arc::new(node.status()));
    let (input_tx, mut inputs) = pgwarden::runtime::inbox::InputSender::channel();
    tokio::spawn(async move {
        while let Some(sourced) = inputs.recv().await {
            node.handle_input(Instant(10), sourced.input);
            let _ = status_tx.send(Arc::new(node.status()));
        }
    });
    let identity = Identity {
        scope: "pg-cluster".into(),
        name: "pg1".into(),
        conn_url: "postgres://10.0.1.11:5432/postgres".into(),
        api_url: "http://10.0.1.11:8008/patroni".into(),
    };
    let app = router(ApiState::new(identity, status_rx, loaded.config).with_inputs(input_tx));
    let response = app
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
        .expect("response");
    let code = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (code, String::from_utf8_lossy(&bytes).to_string())
}

#[tokio::test]
async fn post_failsafe_is_answered_by_the_core() {
    let heartbeat = r#"{"name":"pg2","conn_url":"postgres://10.0.1.12:5432/postgres","api_url":"http://10.0.1.12:8008/patroni","slots":{}}"#;
    let (code, body) = failsafe_call(false, true, Method::POST, "/failsafe", heartbeat).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "Accepted"));
    // A member running as primary refuses: the sender must not keep running beside it.
    let (code, body) = failsafe_call(true, true, Method::POST, "/failsafe", heartbeat).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (code, _) = failsafe_call(false, false, Method::POST, "/failsafe", heartbeat).await;
    assert_eq!(code, StatusCode::BAD_GATEWAY);
    let (code, _) = failsafe_call(false, true, Method::POST, "/failsafe", "{}").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn get_failsafe_lists_the_members_or_says_it_is_off() {
    let (code, body) = failsafe_call(false, true, Method::GET, "/failsafe", "").await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["pg2"], "http://10.0.1.12:8008/patroni");
    let (code, _) = failsafe_call(false, false, Method::GET, "/failsafe", "").await;
    assert_eq!(code, StatusCode::BAD_GATEWAY);
}

/// The OpenAPI document and the router agree: every documented operation is routed (never
/// 404 or 405), every unsafe method the router accepts on any known path is documented, and
/// the document is served at `/openapi.json`.
#[tokio::test]
async fn the_openapi_document_and_the_router_agree() {
    let doc = serde_json::to_value(pgwarden::api::openapi_document()).expect("serialisable");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for method in ["get", "head", "options", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    assert!(documented.len() > 60, "{documented:?}");
    // Patroni's endpoints (patroni-facts), each with its methods: none may go missing.
    let patroni: &[(&str, &[&str])] = &[
        ("/patroni", &["GET"]),
        ("/cluster", &["GET"]),
        ("/history", &["GET"]),
        ("/config", &["GET", "PATCH", "PUT"]),
        ("/metrics", &["GET"]),
        ("/liveness", &["GET"]),
        ("/readiness", &["GET"]),
        ("/switchover", &["POST", "DELETE"]),
        ("/failover", &["POST"]),
        ("/reinitialize", &["POST"]),
        ("/restart", &["POST", "DELETE"]),
        ("/reload", &["POST"]),
        ("/failsafe", &["GET", "POST"]),
        ("/primary", &["GET", "HEAD", "OPTIONS"]),
        ("/replica", &["GET", "HEAD", "OPTIONS"]),
        ("/", &["GET", "HEAD", "OPTIONS"]),
    ];
    for (path, methods) in patroni {
        for method in *methods {
            assert!(
                documented.contains(&(path.to_string(), method.to_string())),
                "{method} {path} is not documented (nor routed)"
            );
        }
    }
    for (path, method) in &documented {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let (code, content_type, body) = call_typed(status(true), m, path).await;
        assert!(
            code != StatusCode::NOT_FOUND && code != StatusCode::METHOD_NOT_ALLOWED,
            "documented {method} {path} is not routed: {code} {}",
            String::from_utf8_lossy(&body)
        );
        let operation = &paths[path][method.to_lowercase()];
        let documented_answer = &operation["responses"][code.as_str()];
        assert!(
            !documented_answer.is_null(),
            "{method} {path} answered {code}, which its document does not list"
        );
        // A body comes in a media type the document lists for that status.
        if !body.is_empty() {
            let media = content_type
                .as_deref()
                .and_then(|t| t.split(';').next())
                .unwrap_or_default()
                .trim()
                .to_string();
            let listed = documented_answer["content"]
                .as_object()
                .is_some_and(|content| content.contains_key(&media));
            assert!(
                listed,
                "{method} {path} answered {code} as {media:?}, the document lists {}",
                documented_answer["content"]
            );
        }
    }
    // Every Patroni endpoint name and a stranger, with every method: an unsafe method the
    // router takes must be documented.
    let mut candidates: Vec<String> = paths.keys().cloned().collect();
    candidates.extend(
        [
            "/citus",
            "/mpp",
            "/sigterm",
            "/members",
            "/leader/",
            "/nonexistent",
        ]
        .map(String::from),
    );
    for path in &candidates {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let m = Method::from_bytes(method.as_bytes()).expect("method");
            let (code, _) = call(status(true), m, path).await;
            let routed = code != StatusCode::METHOD_NOT_ALLOWED && code != StatusCode::NOT_FOUND;
            let is_documented = documented.contains(&(path.clone(), method.to_string()));
            assert_eq!(
                routed, is_documented,
                "{method} {path}: routed {routed} ({code}), documented {is_documented}"
            );
        }
    }
    let (code, body) = call(status(true), Method::GET, "/openapi.json").await;
    assert_eq!(code, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(served, doc);
    assert!(served["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
}
