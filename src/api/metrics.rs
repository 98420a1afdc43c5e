//! `/metrics` in Prometheus text format, Patroni's metric names (a subset so far).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;

/// Every metric `/metrics` exports; `tests/dashboards.rs` checks the dashboards use no other.
pub const METRIC_NAMES: &[&str] = &[
    "patroni_postgres_running",
    "patroni_postmaster_start_time",
    "patroni_xlog_replayed_timestamp",
    "patroni_primary",
    "patroni_replica",
    "patroni_sync_standby",
    "patroni_xlog_location",
    "patroni_xlog_received_location",
    "patroni_xlog_replayed_location",
    "patroni_postgres_timeline",
    "patroni_cluster_unlocked",
    "patroni_is_paused",
    "patroni_pending_restart",
    "patroni_version",
    "patroni_standby_leader",
    "patroni_quorum_standby",
    "patroni_xlog_paused",
    "patroni_postgres_streaming",
    "patroni_postgres_in_archive_recovery",
    "patroni_postgres_state",
    "patroni_failsafe_member",
    "patroni_dcs_last_seen",
    "patroni_failover_priority",
    "patroni_postgres_server_version",
    "patroni_failsafe_mode_is_active",
    "patroni_failsafe_mode_enabled",
    "pgwarden_lease_remaining_milliseconds",
    "pgwarden_policy_gate_rejections_total",
    "pgwarden_policy_fallbacks_total",
    "pgwarden_policy_calls_total",
    "pgwarden_policy_failures_total",
    "pgwarden_policy_shadow_divergences_total",
    "pgwarden_policy_load_failures_total",
    "pgwarden_policy_info",
    "pgwarden_telemetry_spans_dropped_total",
    "pgwarden_telemetry_spans_exported_total",
    "pgwarden_telemetry_export_failures_total",
];
use crate::core::status::Role;

/// One gauge in Prometheus text form.
fn write_gauge(
    out: &mut String,
    labels: &str,
    name: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    debug_assert!(
        METRIC_NAMES.contains(&name),
        "{name} missing from METRIC_NAMES"
    );
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}"
    );
}

#[utoipa::path(get, path = "/metrics", tag = "status",
    summary = "Prometheus metrics (Patroni's gauges and pgwarden's)",
    responses((status = 200, description = "text exposition format", body = String, content_type = "text/plain")))]
pub(super) async fn get_metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let s = state.snapshot();
    let labels = format!(
        "{{scope=\"{}\",name=\"{}\"}}",
        state.config.scope, state.config.name
    );
    let server = s.pg.as_ref().and_then(|p| p.server.as_ref());
    let mut out = String::new();
    let epoch = |text: Option<&String>| {
        text.and_then(|t| crate::runtime::clock::epoch_secs_of_pg_timestamp(t))
            .unwrap_or(0.0)
    };
    write_gauge(
        &mut out,
        &labels,
        "patroni_postmaster_start_time",
        "Epoch seconds since PostgreSQL started.",
        epoch(server.and_then(|x| x.postmaster_start_time.as_ref())),
    );
    write_gauge(
        &mut out,
        &labels,
        "patroni_xlog_replayed_timestamp",
        "Current timestamp of the replayed WAL (epoch seconds; 0 when unknown or a primary).",
        epoch(
            server
                .filter(|x| x.in_recovery)
                .and_then(|x| x.replayed_timestamp.as_ref()),
        ),
    );
    let mut gauge = |name: &str, help: &str, value: i128| {
        write_gauge(&mut out, &labels, name, help, value);
    };
    gauge(
        "patroni_postgres_running",
        "Value is 1 if PostgreSQL is running, 0 otherwise.",
        server.is_some() as i128,
    );
    gauge(
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise.",
        (s.holds_leader_key && s.role() == Role::Primary) as i128,
    );
    gauge(
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise.",
        (server.is_some() && s.role() == Role::Replica) as i128,
    );
    gauge(
        "patroni_sync_standby",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        s.is_sync_standby() as i128,
    );
    gauge(
        "patroni_xlog_location",
        "Current WAL location (primary only).",
        server
            .filter(|x| !x.in_recovery)
            .map(|x| x.wal_position.0 as i128)
            .unwrap_or(0),
    );
    gauge(
        "patroni_xlog_received_location",
        "Last received WAL location (replica only).",
        server
            .and_then(|x| x.received)
            .map(|l| l.0 as i128)
            .unwrap_or(0),
    );
    gauge(
        "patroni_xlog_replayed_location",
        "Last replayed WAL location (replica only).",
        server
            .and_then(|x| x.replayed)
            .map(|l| l.0 as i128)
            .unwrap_or(0),
    );
    gauge(
        "patroni_postgres_timeline",
        "PostgreSQL timeline.",
        s.timeline().map(|t| t.0 as i128).unwrap_or(0),
    );
    gauge(
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster has no leader.",
        s.view.as_ref().is_some_and(|v| v.leader.is_none()) as i128,
    );
    gauge(
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled (maintenance mode), 0 otherwise.",
        s.config.pause as i128,
    );
    gauge(
        "patroni_pending_restart",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        server.is_some_and(|server| !server.pending_restart.is_empty()) as i128,
    );
    gauge(
        "patroni_version",
        "pgwarden's version, each part padded to two digits (0.1.0 is 100).",
        padded_version(env!("CARGO_PKG_VERSION")),
    );
    gauge(
        "patroni_standby_leader",
        "Value is 1 if this node is the standby_leader (pgwarden runs no standby cluster: 0).",
        0,
    );
    gauge(
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        s.is_quorum_standby() as i128,
    );
    gauge(
        "patroni_xlog_paused",
        "Value is 1 if WAL replay is paused, 0 otherwise.",
        server.is_some_and(|x| x.replay_paused) as i128,
    );
    gauge(
        "patroni_postgres_streaming",
        "Value is 1 if PostgreSQL is streaming, 0 otherwise.",
        (s.replication_state() == Some("streaming")) as i128,
    );
    gauge(
        "patroni_postgres_in_archive_recovery",
        "Value is 1 if PostgreSQL is replicating from archive, 0 otherwise.",
        (s.replication_state() == Some("in archive recovery")) as i128,
    );
    gauge(
        "patroni_postgres_state",
        "Numeric representation of the PostgreSQL state, Patroni's indexes (5=running, 6=starting, 9=restarting, 11=stopping, 12=stopped, 4=creating replica, 0=initializing new cluster; -1 for a state Patroni has no index for, such as rewinding).",
        postgres_state_index(s.pg_state()),
    );
    gauge(
        "patroni_failsafe_member",
        "Value is 1 if this node is a member of failsafe, 0 otherwise.",
        s.failsafe.members.contains_key(&state.config.name) as i128,
    );
    gauge(
        "patroni_dcs_last_seen",
        "Epoch seconds when the lock store last answered.",
        super::dcs_last_seen_epoch(&s).unwrap_or(0) as i128,
    );
    gauge(
        "patroni_failover_priority",
        "Failover priority of this node.",
        s.failover_priority as i128,
    );
    gauge(
        "patroni_postgres_server_version",
        "PostgreSQL server version.",
        server.map(|x| x.server_version as i128).unwrap_or(0),
    );
    gauge(
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active (the primary runs on members' confirmations).",
        s.failsafe.active as i128,
    );
    gauge(
        "patroni_failsafe_mode_enabled",
        "Value is 1 if failsafe mode is enabled in the dynamic configuration.",
        s.failsafe.enabled as i128,
    );
    gauge(
        "pgwarden_lease_remaining_milliseconds",
        "Milliseconds until this node's demotion deadline (0 when not leader).",
        s.lease_deadline
            .filter(|_| s.holds_leader_key)
            .map(|d| d.0 as i128 - s.now.0 as i128)
            .unwrap_or(0),
    );
    let _ = writeln!(
        out,
        "# HELP pgwarden_policy_gate_rejections_total Policy decisions the invariant gate refused, by rule.\n\
         # TYPE pgwarden_policy_gate_rejections_total counter"
    );
    for (rule, count) in &s.policy.gate_rejections {
        let _ = writeln!(
            out,
            "pgwarden_policy_gate_rejections_total{{scope=\"{}\",name=\"{}\",rule=\"{rule}\"}} {count}",
            state.config.scope, state.config.name
        );
    }
    let _ = writeln!(
        out,
        "# HELP pgwarden_policy_fallbacks_total Policy calls the embedded default answered because the policy failed.\n\
         # TYPE pgwarden_policy_fallbacks_total counter\n\
         pgwarden_policy_fallbacks_total{labels} {}",
        s.policy.fallbacks
    );
    let policy = state.policy_status();
    let counters = policy.counters;
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{labels} {value}"
        );
    };
    counter(
        "pgwarden_policy_calls_total",
        "Events the policy host decided.",
        counters.calls,
    );
    counter(
        "pgwarden_policy_shadow_divergences_total",
        "Events where the shadow policy decided otherwise (or failed).",
        counters.shadow_divergences,
    );
    counter(
        "pgwarden_policy_load_failures_total",
        "Policy components that could not be loaded at runtime (the last good one kept deciding).",
        policy.load_failures,
    );
    let _ = writeln!(
        out,
        "# HELP pgwarden_policy_failures_total Active policy calls that failed, by kind (the embedded default decided).\n\
         # TYPE pgwarden_policy_failures_total counter"
    );
    for kind in crate::policy::PolicyErrorKind::ALL {
        let _ = writeln!(
            out,
            "pgwarden_policy_failures_total{{scope=\"{}\",name=\"{}\",kind=\"{}\"}} {}",
            state.config.scope,
            state.config.name,
            kind.as_str(),
            counters.fallbacks.get(kind)
        );
    }
    if let Some(active) = &policy.active {
        let _ = writeln!(
            out,
            "# HELP pgwarden_policy_info The active policy (value 1).\n# TYPE pgwarden_policy_info gauge\n\
             pgwarden_policy_info{{scope=\"{}\",name=\"{}\",policy=\"{}\",version=\"{}\",sha256=\"{}\"}} 1",
            state.config.scope, state.config.name, active.name, active.version, active.sha256
        );
    }
    if let Some(telemetry) = crate::telemetry::stats() {
        for (name, help, value) in [
            (
                "pgwarden_telemetry_spans_dropped_total",
                "Spans dropped because the export queue was full (a slow or dead collector).",
                telemetry.dropped(),
            ),
            (
                "pgwarden_telemetry_spans_exported_total",
                "Spans the collector accepted.",
                telemetry.exported(),
            ),
            (
                "pgwarden_telemetry_export_failures_total",
                "Span exports that failed (the collector down, refusing or too slow).",
                telemetry.failed_exports(),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{scope=\"{}\",name=\"{}\"}} {value}",
                state.config.scope, state.config.name
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Patroni's version metric: each part padded to two digits ("4.1.4" is 40104).
fn padded_version(version: &str) -> i128 {
    version
        .split('.')
        .map(|part| {
            format!(
                "{:0>2}",
                part.trim_start_matches(|c: char| !c.is_ascii_digit())
            )
        })
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// Patroni's `PostgresqlState` index of a state text (indexes never change in Patroni).
fn postgres_state_index(state: &str) -> i128 {
    match state {
        "initializing new cluster" => 0,
        "initdb failed" => 1,
        "running custom bootstrap script" => 2,
        "custom bootstrap failed" => 3,
        "creating replica" => 4,
        "running" => 5,
        "starting" => 6,
        "starting after custom bootstrap" => 7,
        "start failed" => 8,
        "restarting" => 9,
        "restart failed" => 10,
        "stopping" => 11,
        "stopped" => 12,
        "stop failed" => 13,
        "crashed" => 14,
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_and_states_read_as_patronis() {
        assert_eq!(super::padded_version("4.1.4"), 40104);
        assert_eq!(super::padded_version("0.1.0"), 100);
        assert_eq!(super::postgres_state_index("restarting"), 9);
        assert_eq!(super::postgres_state_index("rewinding"), -1);
    }
}
