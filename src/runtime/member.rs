//! The JSON this node publishes about itself: the `members/<name>` value and the
//! `GET /patroni` body, both in Patroni's field names.

use serde_json::{json, Map, Value};

use crate::core::status::MemberRecord;
use crate::core::status::Role;
use crate::core::view::DataDir;
use crate::core::NodeStatus;

/// The Patroni version whose REST and key formats pgwarden speaks (tools such as
/// patronictl compare it to decide which fields exist).
pub const PATRONI_COMPAT_VERSION: &str = "4.1.4";

/// Static facts about this node that status JSON needs.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Cluster scope.
    pub scope: String,
    /// Member name.
    pub name: String,
    /// `postgres://host:port/postgres`.
    pub conn_url: String,
    /// `http://host:port/patroni`.
    pub api_url: String,
}

/// `members/<name>` value.
pub fn member_json(id: &Identity, status: &MemberRecord) -> Value {
    let mut m = Map::new();
    m.insert("conn_url".into(), json!(id.conn_url));
    m.insert("api_url".into(), json!(id.api_url));
    m.insert("state".into(), json!(status.pg_state()));
    m.insert("role".into(), json!(status.role().as_str()));
    m.insert("version".into(), json!(PATRONI_COMPAT_VERSION));
    m.insert("pgwarden_version".into(), json!(env!("CARGO_PKG_VERSION")));
    if let Some(server) = status.pg.as_ref().and_then(|p| p.server.as_ref()) {
        m.insert("xlog_location".into(), json!(server.wal_position.0));
        if server.in_recovery {
            if let Some(r) = server.received {
                m.insert("receive_lsn".into(), json!(r.0));
            }
            if let Some(r) = server.replayed {
                m.insert("replay_lsn".into(), json!(r.0));
            }
            if let Some(state) = status.replication_state() {
                m.insert("replication_state".into(), json!(state));
            }
        }
    }
    if let Some(tl) = status.timeline() {
        m.insert("timeline".into(), json!(tl.0));
    }
    if !status.tags.is_empty() {
        m.insert("tags".into(), Value::Object(status.tags.clone()));
    }
    if status.pause {
        m.insert("pause".into(), json!(true));
    }
    insert_pending_restart(&mut m, status.pg.as_ref());
    insert_scheduled_restart(&mut m, status.scheduled_restart.as_ref());
    Value::Object(m)
}

/// Patroni's `scheduled_restart`: `schedule` and the request's filters (`patronictl list
/// -e` shows "<schedule> if version < <postgres_version>").
fn insert_scheduled_restart(
    m: &mut Map<String, Value>,
    scheduled: Option<&crate::core::restart::ScheduledRestart>,
) {
    let Some(s) = scheduled else {
        return;
    };
    let mut r = Map::new();
    r.insert("schedule".into(), json!(s.schedule));
    if let Some(v) = &s.postgres_version {
        r.insert("postgres_version".into(), json!(v));
    }
    if let Some(role) = s.conditions.role {
        let role = match role {
            crate::core::restart::RestartRole::Primary => "primary",
            crate::core::restart::RestartRole::Replica => "replica",
        };
        r.insert("role".into(), json!(role));
    }
    if s.conditions.only_if_pending {
        r.insert("restart_pending".into(), json!(true));
    }
    if let Some(t) = &s.postmaster_start_time {
        r.insert("postmaster_start_time".into(), json!(t));
    }
    m.insert("scheduled_restart".into(), Value::Object(r));
}

/// Patroni's `pending_restart` (present only when true) and `pending_restart_reason`
/// (`{parameter: {old_value, new_value}}`, what `patronictl list -e` shows).
fn insert_pending_restart(
    m: &mut Map<String, Value>,
    pg: Option<&crate::core::view::PgObservation>,
) {
    let Some(pending) = pg
        .and_then(|p| p.server.as_ref())
        .map(|s| &s.pending_restart)
        .filter(|p| !p.is_empty())
    else {
        return;
    };
    let reason: Map<String, Value> = pending
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                json!({"old_value": p.old_value, "new_value": p.new_value}),
            )
        })
        .collect();
    m.insert("pending_restart".into(), json!(true));
    m.insert("pending_restart_reason".into(), Value::Object(reason));
}

/// `GET /patroni` body.
pub fn patroni_json(id: &Identity, status: &NodeStatus, dcs_last_seen_epoch: Option<u64>) -> Value {
    let mut m = Map::new();
    m.insert("state".into(), json!(status.pg_state()));
    let role = match status.role() {
        Role::Uninitialized => "uninitialized",
        r => r.as_str(),
    };
    m.insert("role".into(), json!(role));
    if status.config.pause {
        m.insert("pause".into(), json!(true));
    }
    if let Some(server) = status.pg.as_ref().and_then(|p| p.server.as_ref()) {
        if let Some(t) = &server.postmaster_start_time {
            m.insert("postmaster_start_time".into(), json!(t));
        }
        m.insert("server_version".into(), json!(server.server_version));
        if server.in_recovery {
            m.insert(
                "xlog".into(),
                json!({
                    "received_location": server.received.map(|l| l.0),
                    "replayed_location": server.replayed.map(|l| l.0),
                    "replayed_timestamp": server.replayed_timestamp,
                    "paused": server.replay_paused,
                }),
            );
            if let Some(state) = status.replication_state() {
                m.insert("replication_state".into(), json!(state));
            }
        } else {
            m.insert("xlog".into(), json!({"location": server.wal_position.0}));
            let replication: Vec<Value> = server
                .replication
                .iter()
                .map(|r| {
                    json!({
                        "usename": r.usename,
                        "application_name": r.application_name,
                        "client_addr": r.client_addr,
                        "state": r.state,
                        "sync_state": r.sync_state,
                        "sync_priority": r.sync_priority,
                    })
                })
                .collect();
            if !replication.is_empty() {
                m.insert("replication".into(), Value::Array(replication));
            }
        }
    }
    if let Some(tl) = status.timeline() {
        m.insert("timeline".into(), json!(tl.0));
    }
    if status.is_sync_standby() {
        m.insert("sync_standby".into(), json!(true));
    }
    if status.is_quorum_standby() {
        m.insert("quorum_standby".into(), json!(true));
    }
    if status.view.as_ref().is_some_and(|v| v.leader.is_none()) {
        m.insert("cluster_unlocked".into(), json!(true));
    }
    if status.failsafe.active {
        // Patroni shows the field only while the primary runs on failsafe.
        m.insert("failsafe_mode_is_active".into(), json!(true));
    }
    if let Some(seen) = dcs_last_seen_epoch {
        m.insert("dcs_last_seen".into(), json!(seen));
    }
    if !status.tags.is_empty() {
        m.insert("tags".into(), Value::Object(status.tags.clone()));
    }
    if let Some(DataDir::Initialized { sysid, .. }) = status.pg.as_ref().map(|p| &p.data_dir) {
        m.insert("database_system_identifier".into(), json!(sysid));
    }
    insert_pending_restart(&mut m, status.pg.as_ref());
    insert_scheduled_restart(&mut m, status.scheduled_restart.as_ref());
    if status.watchdog.failed.is_some() {
        // Patroni's field (`required` and unusable); peers treat such a member as unable
        // to lead.
        m.insert("watchdog_failed".into(), json!(true));
    }
    m.insert(
        "patroni".into(),
        json!({"version": PATRONI_COMPAT_VERSION, "scope": id.scope, "name": id.name}),
    );
    m.insert(
        "pgwarden".into(),
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "state": status.state,
            "last_transition": status.last_transition,
            "last_error": status.last_error,
            "last_race_refusal": status.last_race_refusal,
            "holds_leader_key": status.holds_leader_key,
            "lease_deadline_in_ms": status.lease_deadline.map(|d| d.0 as i64 - status.now.0 as i64),
            "dcs_error": status.dcs_error,
            "probe_revision": status.probe_revision,
            "watchdog": watchdog_json(&status.watchdog),
        }),
    );
    Value::Object(m)
}

/// The `pgwarden.watchdog` object of `/patroni`.
fn watchdog_json(w: &crate::core::WatchdogStatus) -> Value {
    let mode = match w.mode {
        crate::config::WatchdogMode::Off => "off",
        crate::config::WatchdogMode::Automatic => "automatic",
        crate::config::WatchdogMode::Required => "required",
    };
    let device_timeout = match &w.state {
        crate::core::WatchdogState::Armed {
            device_timeout_secs,
            ..
        } => *device_timeout_secs,
        _ => None,
    };
    json!({
        "mode": mode,
        "device": w.device,
        "state": w.state.name(),
        "timeout_s": w.timeout_secs,
        "device_timeout_s": device_timeout,
        "last_keepalive_age_ms": w.last_keepalive_age.map(|a| a.as_millis() as u64),
        "unusable": w.failed,
        "last_error": w.last_error,
    })
}
