//! The cluster-wide dynamic configuration: the `/config` key in etcd, seeded from
//! `bootstrap.dcs`. Parsed from JSON (runtime) or from the YAML tree (bootstrap), validated
//! with pgwarden's timing rules, and written back as JSON that keeps unknown keys.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::{join, ConfigError};
use super::tree::{self, Section};

/// The smallest `ttl` pgwarden accepts, in seconds (Patroni's floor is 20).
///
/// Two rules set it. etcd grants leases of at least 2 s, so anything shorter is silently
/// rounded up and the configured value would lie. And the leader must be able to renew
/// once, with a retry, before its own demotion deadline: ttl − demotion margin (1 s by
/// default) > loop_wait + retry_timeout. With the minima loop_wait = 1 and
/// retry_timeout = 1 that needs ttl − 1 > 2, and Patroni's `loop_wait + 2*retry_timeout
/// <= ttl` needs ttl ≥ 3; 4 s is the smallest ttl that satisfies both.
pub const MIN_TTL_SECS: u32 = 4;

/// `synchronous_mode`: off, on (Patroni's multisync "FIRST n") or quorum ("ANY n").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SynchronousMode {
    /// Asynchronous replication.
    Off,
    /// Synchronous standbys listed in `/sync`; only they may be promoted.
    On,
    /// Quorum commit: `ANY n (...)`.
    Quorum,
}

/// The `postgresql` part of the dynamic configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynamicPostgresql {
    /// Rewind a former primary with pg_rewind instead of re-cloning it.
    pub use_pg_rewind: bool,
    /// Keep a physical replication slot per member.
    pub use_slots: bool,
    /// Cluster-wide PostgreSQL settings, rendered as PostgreSQL text.
    pub parameters: BTreeMap<String, String>,
    /// Cluster-wide pg_hba.conf lines, if set.
    pub pg_hba: Option<Vec<String>>,
    /// Cluster-wide pg_ident.conf lines, if set.
    #[serde(default)]
    pub pg_ident: Option<Vec<String>>,
}

impl Default for DynamicPostgresql {
    fn default() -> Self {
        DynamicPostgresql {
            use_pg_rewind: false,
            use_slots: true,
            parameters: BTreeMap::new(),
            pg_hba: None,
            pg_ident: None,
        }
    }
}

/// The cluster-wide `/config` document (also `bootstrap.dcs`), with Patroni's defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DynamicConfig {
    /// Lease time-to-live, seconds.
    pub ttl: u32,
    /// Seconds between HA loop runs.
    pub loop_wait: u32,
    /// Deadline for retrying DCS and PostgreSQL operations, seconds.
    pub retry_timeout: u32,
    /// Bytes a replica may lag and still be promoted.
    pub maximum_lag_on_failover: u64,
    /// Bytes a sync standby may lag before it is swapped out; -1 never swaps.
    pub maximum_lag_on_syncnode: i64,
    /// Entries kept in `/history`; 0 keeps all.
    pub max_timelines_history: u32,
    /// Seconds a crashed primary may take to start before failing over.
    pub primary_start_timeout: u32,
    /// Seconds a stop may take in synchronous mode before SIGKILL; 0 never kills
    /// (Patroni's default).
    pub primary_stop_timeout: u32,
    /// Refuse candidates whose timeline is behind the cluster's.
    pub check_timeline: bool,
    /// Synchronous replication mode.
    pub synchronous_mode: SynchronousMode,
    /// Block writes rather than run with no synchronous standby.
    pub synchronous_mode_strict: bool,
    /// Number of synchronous standbys.
    pub synchronous_node_count: u32,
    /// Keep the primary running while the DCS is down if every member confirms it.
    pub failsafe_mode: bool,
    /// Maintenance mode: observe, never act.
    pub pause: bool,
    /// `postgresql` sub-document.
    pub postgresql: DynamicPostgresql,
    /// The cluster-wide failover policy (pgwarden's extension), hot-reloaded.
    pub policy: Option<super::policy::ClusterPolicy>,
    /// The whole document as given (a JSON object), so writing `/config` keeps keys
    /// pgwarden does not know.
    pub raw: Value,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        DynamicConfig {
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            maximum_lag_on_failover: 1_048_576,
            maximum_lag_on_syncnode: -1,
            max_timelines_history: 0,
            primary_start_timeout: 300,
            primary_stop_timeout: 0,
            check_timeline: false,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            failsafe_mode: false,
            pause: false,
            postgresql: DynamicPostgresql::default(),
            policy: None,
            raw: Value::Object(Map::new()),
        }
    }
}

const SECONDS: &str = "a whole number of seconds";
const BYTES: &str = "a whole number of bytes";

/// Patroni keys in `/config` that pgwarden accepts but does not act on yet.
const UNSUPPORTED: &[&str] = &[
    "primary_race_backoff",
    "standby_cluster",
    "slots",
    "ignore_slots",
    "member_slots_ttl",
];

const PG_UNSUPPORTED: &[&str] = &[
    "recovery_conf",
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
    "pg_hba_primary",
    "pg_hba_replica",
    "pg_hba_standby_leader",
    "pg_ident_primary",
    "pg_ident_replica",
    "pg_ident_standby_leader",
    "bin_name",
    "bin_dir",
    "use_unix_socket",
    "use_unix_socket_repl",
    "pg_ctl_timeout",
    "remove_data_directory_on_rewind_failure",
    "remove_data_directory_on_diverged_timelines",
    "rewind",
    "callbacks",
    "create_replica_methods",
    "basebackup",
];

/// Keys Patroni drops from the dynamic `postgresql` section because they are per node.
const PG_LOCAL_ONLY: &[&str] = &[
    "connect_address",
    "proxy_address",
    "listen",
    "config_dir",
    "data_dir",
    "pgpass",
    "authentication",
];

impl DynamicConfig {
    /// Parses and validates a `/config` document read from etcd. Key paths in errors
    /// have no prefix (`ttl: ...`). Warnings about unknown keys are dropped; use
    /// [`DynamicConfig::from_json_with_warnings`] to see them.
    pub fn from_json(v: &Value) -> Result<DynamicConfig, ConfigError> {
        Self::from_json_with_warnings(v, "").map(|(c, _)| c)
    }

    /// Parses and validates a dynamic configuration document found at `path_prefix`
    /// (`""` for `/config`, `bootstrap.dcs` for the YAML), returning warnings about
    /// unknown and not-yet-supported keys.
    pub fn from_json_with_warnings(
        v: &Value,
        path_prefix: &str,
    ) -> Result<(DynamicConfig, Vec<String>), ConfigError> {
        let root_path = if path_prefix.is_empty() {
            "/config"
        } else {
            path_prefix
        };
        if !v.is_object() && !v.is_null() {
            return Err(ConfigError::new(
                root_path,
                format!("expected a JSON object, found {}", tree::render(v)),
            ));
        }
        let mut warnings = Vec::new();
        let mut s = Section::new(path_prefix, v)?;
        let mut c = DynamicConfig {
            raw: if v.is_null() {
                Value::Object(Map::new())
            } else {
                v.clone()
            },
            ..DynamicConfig::default()
        };

        if let Some(x) = s.get("ttl") {
            c.ttl = tree::whole_u32(&s.key_path("ttl"), x, SECONDS)?;
        }
        if let Some(x) = s.get("loop_wait") {
            c.loop_wait = tree::whole_u32(&s.key_path("loop_wait"), x, SECONDS)?;
        }
        if let Some(x) = s.get("retry_timeout") {
            c.retry_timeout = tree::whole_u32(&s.key_path("retry_timeout"), x, SECONDS)?;
        }
        if let Some(x) = s.get("maximum_lag_on_failover") {
            c.maximum_lag_on_failover =
                tree::whole(&s.key_path("maximum_lag_on_failover"), x, BYTES)?;
        }
        if let Some(x) = s.get("maximum_lag_on_syncnode") {
            c.maximum_lag_on_syncnode = tree::integer(
                &s.key_path("maximum_lag_on_syncnode"),
                x,
                "a number of bytes (or -1)",
            )?;
        }
        if let Some(x) = s.get("max_timelines_history") {
            c.max_timelines_history = tree::whole_u32(
                &s.key_path("max_timelines_history"),
                x,
                "a whole number of entries",
            )?;
        }
        // The master_* spellings predate Patroni 2.1 and are still honoured by it when
        // the primary_* key is absent.
        for (key, legacy, slot) in [
            (
                "primary_start_timeout",
                "master_start_timeout",
                &mut c.primary_start_timeout,
            ),
            (
                "primary_stop_timeout",
                "master_stop_timeout",
                &mut c.primary_stop_timeout,
            ),
        ] {
            let legacy_value = s.get(legacy);
            if let Some(x) = s.get(key) {
                *slot = tree::whole_u32(&s.key_path(key), x, SECONDS)?;
            } else if let Some(x) = legacy_value {
                *slot = tree::whole_u32(&s.key_path(legacy), x, SECONDS)?;
            }
        }
        if let Some(x) = s.get("check_timeline") {
            c.check_timeline = tree::boolean(&s.key_path("check_timeline"), x)?;
        }
        if let Some(x) = s.get("synchronous_mode") {
            c.synchronous_mode = parse_sync_mode(&s.key_path("synchronous_mode"), x)?;
        }
        if let Some(x) = s.get("synchronous_mode_strict") {
            c.synchronous_mode_strict = tree::boolean(&s.key_path("synchronous_mode_strict"), x)?;
        }
        if let Some(x) = s.get("synchronous_node_count") {
            c.synchronous_node_count = tree::whole_u32(
                &s.key_path("synchronous_node_count"),
                x,
                "a whole number of standbys",
            )?;
        }
        if let Some(x) = s.get("failsafe_mode") {
            c.failsafe_mode = tree::boolean(&s.key_path("failsafe_mode"), x)?;
        }
        if let Some(x) = s.get("pause") {
            c.pause = tree::boolean(&s.key_path("pause"), x)?;
        }
        if let Some(pg) = s.section("postgresql")? {
            c.postgresql = parse_postgresql(pg, &mut warnings)?;
        }
        if let Some(p) = s.section("policy")? {
            c.policy = Some(super::policy::parse_cluster(p, &mut warnings)?);
        }
        s.unsupported(UNSUPPORTED);
        s.finish(&mut warnings);

        c.adjust_timing(path_prefix, &mut warnings);
        c.validate(path_prefix)?;
        Ok((c, warnings))
    }

    /// Adjusts the timing as Patroni does, with a warning each: a value below its floor is
    /// raised to it (pgwarden's floors: ttl [`MIN_TTL_SECS`], loop_wait 1, retry_timeout 1;
    /// Patroni's are 20, 1 and 3), then `loop_wait + 2*retry_timeout <= ttl` is made true by
    /// lowering `loop_wait`, and only when that is not enough by setting `loop_wait` to 1 and
    /// `retry_timeout` to `(ttl - 1) / 2`. The rule lets the leader sleep one loop and retry its
    /// DCS calls before its lease expires.
    pub fn adjust_timing(&mut self, path_prefix: &str, warnings: &mut Vec<String>) {
        let p = |k: &str| join(path_prefix, k);
        for (name, value, floor) in [
            ("loop_wait", &mut self.loop_wait, 1),
            ("retry_timeout", &mut self.retry_timeout, 1),
            ("ttl", &mut self.ttl, MIN_TTL_SECS),
        ] {
            if *value < floor {
                warnings.push(format!(
                    "{}: {value} is below pgwarden's minimum of {floor} seconds; adjusted to {floor}",
                    p(name)
                ));
                *value = floor;
            }
        }
        let (ttl, loop_wait, retry_timeout) = (self.ttl, self.loop_wait, self.retry_timeout);
        if 1 + 2 * u64::from(retry_timeout) > u64::from(ttl) {
            self.loop_wait = 1;
            self.retry_timeout = (ttl - 1) / 2;
            warnings.push(format!(
                "{}: loop_wait + 2*retry_timeout must not exceed ttl {ttl}: adjusted loop_wait \
                 from {loop_wait} to 1 and retry_timeout from {retry_timeout} to {}",
                p("ttl"),
                self.retry_timeout
            ));
        } else if u64::from(loop_wait) + 2 * u64::from(retry_timeout) > u64::from(ttl) {
            self.loop_wait = ttl - 2 * retry_timeout;
            warnings.push(format!(
                "{}: loop_wait + 2*retry_timeout must not exceed ttl {ttl} (retry_timeout \
                 {retry_timeout}): adjusted loop_wait from {loop_wait} to {}",
                p("loop_wait"),
                self.loop_wait
            ));
        }
    }

    /// pgwarden's own rule on top of Patroni's: the leader must be able to renew once, with
    /// a retry, before its demotion deadline (`ttl − demotion_margin > loop_wait +
    /// retry_timeout`). Adjusted the same way: `loop_wait` is lowered (not below 1) with a
    /// warning; what cannot be fixed so is left to
    /// [`DynamicConfig::validate_demotion_budget`] to refuse.
    pub fn adjust_demotion_budget(
        &mut self,
        path_prefix: &str,
        demotion_margin_ms: u64,
        warnings: &mut Vec<String>,
    ) {
        let budget_ms = (u64::from(self.ttl) * 1000).saturating_sub(demotion_margin_ms);
        let needed_ms =
            |loop_wait: u32, retry: u32| (u64::from(loop_wait) + u64::from(retry)) * 1000;
        let before = self.loop_wait;
        while self.loop_wait > 1 && budget_ms <= needed_ms(self.loop_wait, self.retry_timeout) {
            self.loop_wait -= 1;
        }
        if self.loop_wait != before {
            warnings.push(format!(
                "{}: ttl {} s minus the demotion margin {demotion_margin_ms} ms must exceed \
                 loop_wait + retry_timeout {} s, so the leader can renew once with a retry \
                 before it must demote: adjusted loop_wait from {before} to {}",
                join(path_prefix, "loop_wait"),
                self.ttl,
                self.retry_timeout,
                self.loop_wait
            ));
        }
    }

    /// Checks what [`DynamicConfig::adjust_timing`] leaves to refuse:
    /// `synchronous_node_count >= 1`.
    pub fn validate(&self, path_prefix: &str) -> Result<(), ConfigError> {
        let p = |k: &str| join(path_prefix, k);
        if self.synchronous_node_count < 1 {
            return Err(ConfigError::new(
                p("synchronous_node_count"),
                format!("{} is below the minimum of 1", self.synchronous_node_count),
            ));
        }
        Ok(())
    }

    /// Checks that the leader can renew once, with a retry, before its demotion deadline:
    /// `ttl − demotion_margin > loop_wait + retry_timeout`. Needs the local
    /// `pgwarden.demotion_margin_ms`, so it is separate from [`DynamicConfig::validate`].
    pub fn validate_demotion_budget(
        &self,
        path_prefix: &str,
        demotion_margin_ms: u64,
    ) -> Result<(), ConfigError> {
        let budget_ms = u64::from(self.ttl) * 1000;
        let cycle_ms = (u64::from(self.loop_wait) + u64::from(self.retry_timeout)) * 1000;
        if budget_ms.saturating_sub(demotion_margin_ms) <= cycle_ms {
            return Err(ConfigError::new(
                join(path_prefix, "ttl"),
                format!(
                    "ttl {} s minus the demotion margin {demotion_margin_ms} ms must exceed \
                     loop_wait {} + retry_timeout {} = {} s, or the leader would demote itself \
                     before it could retry a lease renewal",
                    self.ttl,
                    self.loop_wait,
                    self.retry_timeout,
                    cycle_ms / 1000
                ),
            ));
        }
        Ok(())
    }

    /// The document to store in `/config`: [`DynamicConfig::raw`] with every known key
    /// written in its JSON type (numbers as numbers, flags as booleans). Known keys absent
    /// from `raw` are added only when their value differs from the default, so a
    /// programmatic change is not lost and a round trip adds nothing.
    pub fn to_json(&self) -> Value {
        let mut out = match &self.raw {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        let d = DynamicConfig::default();
        let mut put = |k: &str, v: Value, default: Value| {
            if out.contains_key(k) || v != default {
                out.insert(k.to_string(), v);
            }
        };
        put("ttl", self.ttl.into(), d.ttl.into());
        put("loop_wait", self.loop_wait.into(), d.loop_wait.into());
        put(
            "retry_timeout",
            self.retry_timeout.into(),
            d.retry_timeout.into(),
        );
        put(
            "maximum_lag_on_failover",
            self.maximum_lag_on_failover.into(),
            d.maximum_lag_on_failover.into(),
        );
        put(
            "maximum_lag_on_syncnode",
            self.maximum_lag_on_syncnode.into(),
            d.maximum_lag_on_syncnode.into(),
        );
        put(
            "max_timelines_history",
            self.max_timelines_history.into(),
            d.max_timelines_history.into(),
        );
        put(
            "primary_start_timeout",
            self.primary_start_timeout.into(),
            d.primary_start_timeout.into(),
        );
        put(
            "primary_stop_timeout",
            self.primary_stop_timeout.into(),
            d.primary_stop_timeout.into(),
        );
        put(
            "check_timeline",
            self.check_timeline.into(),
            d.check_timeline.into(),
        );
        put(
            "synchronous_mode",
            sync_mode_json(self.synchronous_mode),
            sync_mode_json(d.synchronous_mode),
        );
        put(
            "synchronous_mode_strict",
            self.synchronous_mode_strict.into(),
            d.synchronous_mode_strict.into(),
        );
        put(
            "synchronous_node_count",
            self.synchronous_node_count.into(),
            d.synchronous_node_count.into(),
        );
        put(
            "failsafe_mode",
            self.failsafe_mode.into(),
            d.failsafe_mode.into(),
        );
        put("pause", self.pause.into(), d.pause.into());

        let raw_pg = out.get("postgresql").cloned().unwrap_or(Value::Null);
        let pg = postgresql_json(&self.postgresql, &raw_pg);
        if out.contains_key("postgresql") || pg.as_object().is_some_and(|m| !m.is_empty()) {
            out.insert("postgresql".to_string(), pg);
        }
        Value::Object(out)
    }
}

fn sync_mode_json(m: SynchronousMode) -> Value {
    match m {
        SynchronousMode::Off => Value::Bool(false),
        SynchronousMode::On => Value::Bool(true),
        SynchronousMode::Quorum => Value::String("quorum".to_string()),
    }
}

fn postgresql_json(pg: &DynamicPostgresql, raw: &Value) -> Value {
    let mut out = match raw {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let d = DynamicPostgresql::default();
    for (k, v, default) in [
        ("use_pg_rewind", pg.use_pg_rewind, d.use_pg_rewind),
        ("use_slots", pg.use_slots, d.use_slots),
    ] {
        if out.contains_key(k) || v != default {
            out.insert(k.to_string(), Value::Bool(v));
        }
    }
    // Keep the parameters exactly as given (10 stays a number, "on" a string) unless the
    // typed map was changed; then write the typed values.
    let raw_params = out.get("parameters").map(render_params).unwrap_or_default();
    if raw_params != pg.parameters {
        let m: Map<String, Value> = pg
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        out.insert("parameters".to_string(), Value::Object(m));
    }
    for (key, lines) in [("pg_hba", &pg.pg_hba), ("pg_ident", &pg.pg_ident)] {
        let raw = out
            .get(key)
            .and_then(|v| tree::string_list("", v, false).ok());
        if raw != *lines {
            match lines {
                Some(lines) => {
                    out.insert(key.to_string(), lines.clone().into());
                }
                None => {
                    out.remove(key);
                }
            }
        }
    }
    Value::Object(out)
}

fn render_params(v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = v {
        for (k, v) in m {
            if let Ok(s) = tree::pg_value("", v) {
                out.insert(k.clone(), s);
            }
        }
    }
    out
}

/// Parses `synchronous_mode`: booleans (and Patroni's boolean words) or `quorum`.
pub(crate) fn parse_sync_mode(path: &str, v: &Value) -> Result<SynchronousMode, ConfigError> {
    if let Value::String(s) = v {
        if s.trim().eq_ignore_ascii_case("quorum") {
            return Ok(SynchronousMode::Quorum);
        }
    }
    match tree::boolean(path, v) {
        Ok(true) => Ok(SynchronousMode::On),
        Ok(false) => Ok(SynchronousMode::Off),
        Err(_) => Err(ConfigError::new(
            path,
            format!(
                "{} is not a synchronous mode (expected true, false, on, off or quorum)",
                tree::render(v)
            ),
        )),
    }
}

/// Parses a `parameters` mapping into PostgreSQL text; null values are unset.
pub(crate) fn parse_parameters(
    path: &str,
    v: &Value,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let Value::Object(m) = v else {
        return Err(ConfigError::new(
            path,
            format!("expected a mapping of settings, found {}", tree::render(v)),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, val) in m {
        if val.is_null() {
            continue;
        }
        out.insert(k.clone(), tree::pg_value(&join(path, k), val)?);
    }
    Ok(out)
}

fn parse_postgresql(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<DynamicPostgresql, ConfigError> {
    let mut pg = DynamicPostgresql::default();
    if let Some(x) = s.get("use_pg_rewind") {
        pg.use_pg_rewind = tree::boolean(&s.key_path("use_pg_rewind"), x)?;
    }
    if let Some(x) = s.get("use_slots") {
        pg.use_slots = tree::boolean(&s.key_path("use_slots"), x)?;
    }
    if let Some(x) = s.get("parameters") {
        pg.parameters = parse_parameters(&s.key_path("parameters"), x)?;
    }
    if let Some(x) = s.get("pg_hba") {
        pg.pg_hba = Some(tree::string_list(&s.key_path("pg_hba"), x, false)?);
    }
    if let Some(x) = s.get("pg_ident") {
        pg.pg_ident = Some(tree::string_list(&s.key_path("pg_ident"), x, false)?);
    }
    for key in PG_LOCAL_ONLY {
        if s.has(key) {
            s.get(key);
            warnings.push(format!(
                "key `{}` ignored: it is per node and belongs in the local postgresql section",
                s.key_path(key)
            ));
        }
    }
    s.unsupported(PG_UNSUPPORTED);
    s.finish(warnings);
    Ok(pg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_patronis() {
        let c = DynamicConfig::from_json(&json!({})).expect("empty is valid");
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 10, 10));
        assert_eq!(c.maximum_lag_on_failover, 1_048_576);
        assert_eq!(c.maximum_lag_on_syncnode, -1);
        assert_eq!(c.primary_start_timeout, 300);
        assert_eq!(c.primary_stop_timeout, 0);
        assert_eq!(c.synchronous_mode, SynchronousMode::Off);
        assert_eq!(c.synchronous_node_count, 1);
        assert!(c.postgresql.use_slots);
        assert!(!c.postgresql.use_pg_rewind);
        assert_eq!(c, DynamicConfig::default());
    }

    #[test]
    fn strings_of_digits_are_numbers() {
        let c =
            DynamicConfig::from_json(&json!({"ttl": "20", "loop_wait": "5", "retry_timeout": "7"}))
                .expect("ok");
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (20, 5, 7));
        assert_eq!(c.to_json()["ttl"], json!(20));
    }

    #[test]
    fn sync_modes() {
        for (v, m) in [
            (json!(true), SynchronousMode::On),
            (json!("on"), SynchronousMode::On),
            (json!(false), SynchronousMode::Off),
            (json!("off"), SynchronousMode::Off),
            (json!("quorum"), SynchronousMode::Quorum),
        ] {
            let c = DynamicConfig::from_json(&json!({ "synchronous_mode": v })).expect("ok");
            assert_eq!(c.synchronous_mode, m);
        }
        let e = DynamicConfig::from_json(&json!({"synchronous_mode": "sometimes"}))
            .expect_err("bad mode");
        assert_eq!(e.path, "synchronous_mode");
        assert!(e.message.contains("\"sometimes\""), "{}", e.message);
    }

    #[test]
    fn timing_is_adjusted_as_patroni_does() {
        let adjusted = |v: Value| {
            DynamicConfig::from_json_with_warnings(&v, "bootstrap.dcs")
                .expect("adjusted, not refused")
        };
        // The acceptance suite's timing: loop_wait is lowered to fit.
        let (c, w) = adjusted(json!({"ttl": 21, "loop_wait": 2, "retry_timeout": 10}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (21, 1, 10));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("bootstrap.dcs.loop_wait: "), "{w:?}");
        assert!(w[0].contains("from 2 to 1"), "{w:?}");
        // loop_wait alone cannot fix it: retry_timeout is lowered too.
        let (c, w) = adjusted(json!({"ttl": 10, "loop_wait": 5, "retry_timeout": 5}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (10, 1, 4));
        assert!(w[0].contains("retry_timeout from 5 to 4"), "{w:?}");
        // Below the floors: raised to them.
        let (c, w) = adjusted(json!({"ttl": 3, "loop_wait": 0, "retry_timeout": 0}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (4, 1, 1));
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w.iter()
                .any(|w| w.starts_with("bootstrap.dcs.ttl: 3 is below")),
            "{w:?}"
        );
        // Nothing to adjust: no warning, and the document keeps what was written.
        let (c, w) = adjusted(json!({"ttl": 4, "loop_wait": 1, "retry_timeout": 1}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (4, 1, 1));
        assert!(w.is_empty(), "{w:?}");
        let e = DynamicConfig::from_json(&json!({"synchronous_node_count": 0})).expect_err("0");
        assert_eq!(e.path, "synchronous_node_count");
    }

    #[test]
    fn the_lease_budget_lowers_loop_wait() {
        let mut c = DynamicConfig {
            ttl: 10,
            loop_wait: 9,
            retry_timeout: 1,
            ..DynamicConfig::default()
        };
        let mut warnings = Vec::new();
        c.adjust_demotion_budget("bootstrap.dcs", 1000, &mut warnings);
        assert_eq!(c.loop_wait, 7, "10 s - 1 s > 7 + 1 s");
        assert!(warnings[0].contains("from 9 to 7"), "{warnings:?}");
        c.validate_demotion_budget("bootstrap.dcs", 1000)
            .expect("fits now");
        let mut fine = DynamicConfig::default();
        let mut none = Vec::new();
        fine.adjust_demotion_budget("", 1000, &mut none);
        assert!(none.is_empty() && fine.loop_wait == 10);
    }

    #[test]
    fn wrong_types_name_the_value() {
        let e = DynamicConfig::from_json(&json!({"ttl": -3})).expect_err("negative");
        assert_eq!(e.to_string(), "ttl: -3 is not a whole number of seconds");
        let e = DynamicConfig::from_json(&json!({"maximum_lag_on_failover": -1}))
            .expect_err("negative lag");
        assert_eq!(e.path, "maximum_lag_on_failover");
        let e = DynamicConfig::from_json(&json!([1])).expect_err("not an object");
        assert_eq!(e.path, "/config");
    }

    #[test]
    fn legacy_master_timeouts() {
        let c = DynamicConfig::from_json(&json!({"master_start_timeout": 0})).expect("legacy");
        assert_eq!(c.primary_start_timeout, 0);
        let c = DynamicConfig::from_json(
            &json!({"master_start_timeout": 0, "primary_start_timeout": 20}),
        )
        .expect("both");
        assert_eq!(c.primary_start_timeout, 20);
    }

    #[test]
    fn round_trip_keeps_unknown_keys_and_types() {
        let doc = json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "synchronous_mode": "on",
            "slots": {"s": {"type": "physical"}},
            "future_knob": [1, 2],
            "postgresql": {"use_pg_rewind": "true", "parameters": {"max_wal_senders": 10, "hot_standby": "on"}}
        });
        let (c, w) = DynamicConfig::from_json_with_warnings(&doc, "").expect("valid");
        assert!(w.iter().any(|x| x.contains("`future_knob`")), "{w:?}");
        assert!(
            w.iter().any(|x| x.contains("`slots` accepted but not yet")),
            "{w:?}"
        );
        assert_eq!(c.postgresql.parameters["max_wal_senders"], "10");
        let out = c.to_json();
        assert_eq!(out["synchronous_mode"], json!(true));
        assert_eq!(out["postgresql"]["use_pg_rewind"], json!(true));
        assert_eq!(
            out["postgresql"]["parameters"]["max_wal_senders"],
            json!(10)
        );
        assert_eq!(out["future_knob"], json!([1, 2]));
        assert_eq!(out["slots"], doc["slots"]);
        assert!(out.get("pause").is_none(), "defaults are not added: {out}");
        let again = DynamicConfig::from_json(&out).expect("round trip");
        assert_eq!(again.to_json(), out);
    }

    #[test]
    fn to_json_reflects_programmatic_changes() {
        let mut c = DynamicConfig {
            pause: true,
            ttl: 20,
            ..DynamicConfig::default()
        };
        c.postgresql
            .parameters
            .insert("work_mem".into(), "8MB".into());
        let out = c.to_json();
        assert_eq!(out["pause"], json!(true));
        assert_eq!(out["ttl"], json!(20));
        assert_eq!(out["postgresql"]["parameters"]["work_mem"], json!("8MB"));
        assert!(out.get("loop_wait").is_none());
    }

    #[test]
    fn demotion_budget() {
        let c = DynamicConfig {
            ttl: 10,
            loop_wait: 8,
            retry_timeout: 1,
            ..DynamicConfig::default()
        };
        c.validate("").expect("Patroni rule holds: 8 + 2 <= 10");
        let e = c
            .validate_demotion_budget("bootstrap.dcs", 1000)
            .expect_err("9 s left, 9 s needed");
        assert_eq!(e.path, "bootstrap.dcs.ttl");
        DynamicConfig::default()
            .validate_demotion_budget("", 1000)
            .expect("30 - 1 > 20");
        let floor = DynamicConfig {
            ttl: 4,
            loop_wait: 1,
            retry_timeout: 1,
            ..DynamicConfig::default()
        };
        floor
            .validate_demotion_budget("", 1000)
            .expect("4 - 1 > 2 at the floor");
    }

    #[test]
    fn local_only_keys_warn() {
        let (_, w) = DynamicConfig::from_json_with_warnings(
            &json!({"postgresql": {"data_dir": "/x", "recovery_conf": {}}}),
            "bootstrap.dcs",
        )
        .expect("valid");
        assert!(
            w.iter()
                .any(|x| x.contains("`bootstrap.dcs.postgresql.data_dir` ignored")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|x| x.contains("`bootstrap.dcs.postgresql.recovery_conf` accepted")),
            "{w:?}"
        );
    }
}
