//! Builds the typed [`Config`] from the document tree (after environment overrides): the
//! top level, `restapi`, `bootstrap`, `watchdog` and `pgwarden`, delegating `etcd3`,
//! `postgresql` and `tags` to their modules, then the rules that span sections.

use std::path::PathBuf;

use serde_json::Value;

use super::address::{AddressError, HostPort};
use super::dynamic::DynamicConfig;
use super::error::ConfigError;
use super::model::{
    BootstrapConfig, Config, PgwardenConfig, RestApiConfig, WatchdogConfig, WatchdogMode,
};
use super::postgresql::{self, INITDB_FORBIDDEN};
use super::tree::{self, Section};
use super::{etcd, tags};

/// The member name Patroni reserves for its strict-mode synchronous placeholder.
const RESERVED_NAME: &str = "__patroni_strict_sync_replica_placeholder__";

/// DCS sections of Patroni that pgwarden refuses: it speaks only the etcd v3 API.
pub(crate) const OTHER_DCS: &[&str] = &[
    "etcd",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
];

const TOP_UNSUPPORTED: &[&str] = &["citus", "thread_pool_size", "thread_stack_size"];

const RESTAPI_UNSUPPORTED: &[&str] = &["request_queue_size", "server_tokens", "thread_pool_size"];

/// Builds and validates the whole configuration from the document root.
pub(crate) fn build(root: &Value, warnings: &mut Vec<String>) -> Result<Config, ConfigError> {
    if root.is_null() || root.as_object().is_some_and(|m| m.is_empty()) {
        return Err(ConfigError::new("<config>", "configuration is empty"));
    }
    let mut s = Section::new("", root)?;

    for dcs in OTHER_DCS {
        if s.contains(dcs) {
            let message = if *dcs == "etcd" {
                "pgwarden supports only etcd3 (the etcd v3 API); the `etcd:` section selects \
                 the v2 API, whose keys v3 clients cannot see. Use an `etcd3:` section"
                    .to_string()
            } else {
                format!("pgwarden supports only etcd3 (the etcd v3 API), not {dcs}")
            };
            return Err(ConfigError::new(*dcs, message));
        }
    }

    let scope = required_name(&mut s, "scope")?;
    let name = required_name(&mut s, "name")?;
    if name.contains('/') {
        return Err(ConfigError::new(
            "name",
            format!("{name:?} contains '/', which would break the members/<name> key"),
        ));
    }
    if name == RESERVED_NAME {
        return Err(ConfigError::new(
            "name",
            format!("{name:?} is reserved by Patroni's synchronous mode"),
        ));
    }
    let namespace = match s.get("namespace") {
        Some(v) => normalise_namespace(&tree::string("namespace", v)?),
        None => "/service".to_string(),
    };

    let restapi = match s.section("restapi")? {
        Some(r) => parse_restapi(r, warnings)?,
        None => {
            return Err(ConfigError::new(
                "restapi",
                "missing (expected listen and connect_address)",
            ))
        }
    };
    let etcd = match s.section("etcd3")? {
        Some(e) => etcd::parse(e, warnings)?,
        None => {
            return Err(ConfigError::new(
                "etcd3",
                "missing: pgwarden needs an `etcd3:` section with hosts, host or url",
            ))
        }
    };
    let mut bootstrap = match s.section("bootstrap")? {
        Some(b) => parse_bootstrap(b, warnings)?,
        None => BootstrapConfig {
            dcs: DynamicConfig::default(),
            initdb: Vec::new(),
            pg_hba: Vec::new(),
            custom_method: None,
        },
    };
    let postgresql = match s.section("postgresql")? {
        Some(p) => postgresql::parse(p, warnings)?,
        None => {
            return Err(ConfigError::new(
                "postgresql",
                "missing (data_dir, listen and authentication are required)",
            ))
        }
    };
    let watchdog = match s.section("watchdog")? {
        Some(w) => parse_watchdog(w, warnings)?,
        None => WatchdogConfig {
            mode: WatchdogMode::Automatic,
            device: PathBuf::from("/dev/watchdog"),
            safety_margin: 5,
        },
    };
    let tags = tags::parse(s.get("tags"), warnings)?;
    // Towards its peers the agent uses `ctl:`'s credentials, else its own API's (Patroni's
    // `PatroniRequest`): peers protect `POST /failsafe` the same way.
    let mut ctl = match s.section("ctl")? {
        Some(c) => super::ctl::parse_client_section(c, restapi.cafile.clone(), warnings)?,
        None => super::ctl::ApiClientConfig {
            credentials: None,
            tls: super::tls::ClientTls {
                cacert: restapi.cafile.clone(),
                ..Default::default()
            },
        },
    };
    if ctl.credentials.is_none() {
        ctl.credentials = restapi.authentication.clone();
    }
    let pgwarden = match s.section("pgwarden")? {
        Some(p) => parse_pgwarden(p, warnings)?,
        None => PgwardenConfig::default(),
    };
    let policy = match s.section("policy")? {
        Some(p) => super::policy::parse_local(p, warnings)?,
        None => super::policy::LocalPolicyConfig::default(),
    };
    let log = match s.section("log")? {
        Some(section) => super::log::parse(section, warnings)?,
        None => super::log::LogConfig::default(),
    };
    let telemetry = match s.section("telemetry")? {
        Some(t) => super::telemetry::parse(t, warnings)?,
        None => super::telemetry::TelemetryConfig::default(),
    };
    s.unsupported(TOP_UNSUPPORTED);
    s.finish(warnings);

    if pgwarden.protect_reads && restapi.authentication.is_none() {
        return Err(ConfigError::new(
            "pgwarden.protect_reads",
            "reads are protected by restapi.authentication, which is missing",
        ));
    }
    bootstrap
        .dcs
        .adjust_demotion_budget("bootstrap.dcs", pgwarden.demotion_margin_ms, warnings);
    bootstrap
        .dcs
        .validate_demotion_budget("bootstrap.dcs", pgwarden.demotion_margin_ms)?;
    if watchdog.mode != WatchdogMode::Off && watchdog.safety_margin >= i64::from(bootstrap.dcs.ttl)
    {
        warnings.push(format!(
            "watchdog.safety_margin {} is not below bootstrap.dcs.ttl {}; the watchdog cannot \
             be armed with that ttl",
            watchdog.safety_margin, bootstrap.dcs.ttl
        ));
    }

    Ok(Config {
        scope,
        namespace,
        name,
        restapi,
        ctl,
        etcd,
        bootstrap,
        postgresql,
        watchdog,
        tags,
        pgwarden,
        policy,
        telemetry,
        log,
    })
}

fn required_name(s: &mut Section<'_>, key: &str) -> Result<String, ConfigError> {
    let v = match s.get(key) {
        Some(v) => tree::string(key, v)?,
        None => String::new(),
    };
    if v.trim().is_empty() {
        return Err(ConfigError::new(key, "missing or empty"));
    }
    Ok(v)
}

/// `/service/` → `/service`, `service` → `/service`, `//a//b/` → `/a/b`, `/` → ``.
/// Patroni builds its key prefix as `'/'.join(['', namespace, scope])` with repeated
/// slashes collapsed; storing the namespace in this form gives the same keys.
pub(crate) fn normalise_namespace(raw: &str) -> String {
    let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("/{}", parts.join("/"))
    }
}

fn host_port(s: &mut Section<'_>, key: &str) -> Result<Option<HostPort>, ConfigError> {
    let path = s.key_path(key);
    match s.get(key) {
        Some(v) => tree::string(&path, v)?
            .parse()
            .map(Some)
            .map_err(|e: AddressError| ConfigError::new(path, e.message)),
        None => Ok(None),
    }
}

fn parse_restapi(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<RestApiConfig, ConfigError> {
    let listen = host_port(&mut s, "listen")?.ok_or_else(|| {
        ConfigError::new(
            "restapi.listen",
            "missing (expected host:port, e.g. 0.0.0.0:8008)",
        )
    })?;
    let connect_address = match host_port(&mut s, "connect_address")? {
        Some(c) => c,
        None => {
            warnings.push(format!(
                "key `restapi.connect_address` missing; using restapi.listen {listen} (Patroni \
                 requires it)"
            ));
            listen.clone()
        }
    };
    // Peers probe api_url during a leader race; a wildcard would make them probe
    // themselves instead of this node.
    if connect_address.is_wildcard() {
        return Err(ConfigError::new(
            "restapi.connect_address",
            format!("{connect_address} is a wildcard address other members cannot connect to"),
        ));
    }
    let authentication = match s.section("authentication")? {
        Some(a) => Some(postgresql::parse_credentials(a, warnings, true)?),
        None => None,
    };
    let (tls, cafile) = super::tls::parse_server(&mut s)?;
    let access = super::access::parse(&mut s)?;
    s.unsupported(RESTAPI_UNSUPPORTED);
    s.finish(warnings);
    Ok(RestApiConfig {
        listen,
        connect_address,
        authentication,
        tls,
        cafile,
        access,
    })
}

fn parse_bootstrap(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<BootstrapConfig, ConfigError> {
    let dcs = match s.get("dcs") {
        Some(v) => {
            let (dcs, w) = DynamicConfig::from_json_with_warnings(v, "bootstrap.dcs")?;
            warnings.extend(w);
            dcs
        }
        None => DynamicConfig::default(),
    };
    let initdb = match s.get("initdb") {
        Some(v) => postgresql::parse_options("bootstrap.initdb", v, INITDB_FORBIDDEN, warnings)?,
        None => Vec::new(),
    };
    let pg_hba = match s.get("pg_hba") {
        Some(v) => tree::string_list("bootstrap.pg_hba", v, false)?,
        None => Vec::new(),
    };
    // A custom bootstrap method has its own section named after it.
    let mut custom_method = None;
    if let Some(v) = s.get("method") {
        let method = tree::string("bootstrap.method", v)?;
        if method != "initdb" {
            warnings.push(format!(
                "bootstrap.method: {method:?} is not supported by pgwarden (only initdb): this \
                 node will never bootstrap a new cluster, it only joins one that another member \
                 bootstrapped (an empty cluster is not created in place of the clone or restore \
                 that was asked for)"
            ));
            s.unsupported(&[method.as_str()]);
            custom_method = Some(method);
        }
    }
    s.unsupported(&["post_bootstrap", "post_init", "users"]);
    s.finish(warnings);
    Ok(BootstrapConfig {
        dcs,
        initdb,
        pg_hba,
        custom_method,
    })
}

fn parse_watchdog(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<WatchdogConfig, ConfigError> {
    let mode = match s.get("mode") {
        Some(v) => parse_watchdog_mode(v)?,
        None => WatchdogMode::Automatic,
    };
    let device = match s.get("device") {
        Some(v) => PathBuf::from(tree::string("watchdog.device", v)?),
        None => PathBuf::from("/dev/watchdog"),
    };
    let safety_margin = match s.get("safety_margin") {
        Some(v) => {
            let m = tree::integer("watchdog.safety_margin", v, "a whole number of seconds")?;
            if m < -1 {
                return Err(ConfigError::new(
                    "watchdog.safety_margin",
                    format!("{m} is not allowed (expected seconds >= 0, or -1 for ttl/2)"),
                ));
            }
            m
        }
        None => 5,
    };
    s.unsupported(&["driver"]);
    s.finish(warnings);
    Ok(WatchdogConfig {
        mode,
        device,
        safety_margin,
    })
}

/// Patroni's spellings (`parse_mode`), plus booleans: `false` is off; `true` is automatic.
/// Unlike Patroni, which disables the watchdog on an unrecognised mode, an unknown word is
/// refused: a typo in `required` must not silently turn the watchdog off.
fn parse_watchdog_mode(v: &Value) -> Result<WatchdogMode, ConfigError> {
    let word = match v {
        Value::Bool(false) => return Ok(WatchdogMode::Off),
        Value::Bool(true) => return Ok(WatchdogMode::Automatic),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => String::new(),
    };
    match word.as_str() {
        "off" | "disable" | "disabled" | "false" | "no" => Ok(WatchdogMode::Off),
        "automatic" | "auto" | "on" | "true" | "yes" => Ok(WatchdogMode::Automatic),
        "required" | "require" => Ok(WatchdogMode::Required),
        _ => Err(ConfigError::new(
            "watchdog.mode",
            format!(
                "{} is not a watchdog mode (expected off, automatic or required)",
                tree::render(v)
            ),
        )),
    }
}

fn parse_pgwarden(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<PgwardenConfig, ConfigError> {
    let mut c = PgwardenConfig::default();
    if let Some(v) = s.get("protect_reads") {
        c.protect_reads = tree::boolean("pgwarden.protect_reads", v)?;
    }
    if let Some(v) = s.get("peer_probe_timeout_ms") {
        c.peer_probe_timeout_ms = tree::whole(
            "pgwarden.peer_probe_timeout_ms",
            v,
            "a whole number of milliseconds",
        )?;
        if c.peer_probe_timeout_ms == 0 {
            return Err(ConfigError::new(
                "pgwarden.peer_probe_timeout_ms",
                "0 is below the minimum of 1 millisecond",
            ));
        }
    }
    if let Some(v) = s.get("demotion_margin_ms") {
        c.demotion_margin_ms = tree::whole(
            "pgwarden.demotion_margin_ms",
            v,
            "a whole number of milliseconds",
        )?;
        // The deadline is computed on this node's clock while etcd expires the lease on
        // its own; a zero margin leaves no room for the difference.
        if c.demotion_margin_ms == 0 {
            return Err(ConfigError::new(
                "pgwarden.demotion_margin_ms",
                "0 is below the minimum of 1 millisecond",
            ));
        }
    }
    if let Some(v) = s.get("role_history") {
        let path = tree::string("pgwarden.role_history", v)?;
        if path.trim().is_empty() {
            return Err(ConfigError::new(
                "pgwarden.role_history",
                "an empty path; leave the key out to keep no role history",
            ));
        }
        c.role_history = Some(path.into());
    }
    if let Some(v) = s.get("input_log") {
        let path = tree::string("pgwarden.input_log", v)?;
        if path.trim().is_empty() {
            return Err(ConfigError::new(
                "pgwarden.input_log",
                "an empty path; leave the key out to record no inputs",
            ));
        }
        c.input_log = Some(path.into());
    }
    if let Some(v) = s.get("unresponsive_primary_timeout_ms") {
        c.unresponsive_primary_timeout_ms = tree::whole(
            "pgwarden.unresponsive_primary_timeout_ms",
            v,
            "a whole number of milliseconds",
        )?;
        // Below a second a busy but healthy primary (one slow probe) would be killed.
        if c.unresponsive_primary_timeout_ms < 1000 {
            return Err(ConfigError::new(
                "pgwarden.unresponsive_primary_timeout_ms",
                format!(
                    "{} is below the minimum of 1000 milliseconds",
                    c.unresponsive_primary_timeout_ms
                ),
            ));
        }
    }
    if let Some(v) = s.get("callback_timeout_ms") {
        c.callback_timeout_ms = tree::whole(
            "pgwarden.callback_timeout_ms",
            v,
            "a whole number of milliseconds",
        )?;
        if c.callback_timeout_ms < 1000 {
            return Err(ConfigError::new(
                "pgwarden.callback_timeout_ms",
                format!(
                    "{} is below the minimum of 1000 milliseconds",
                    c.callback_timeout_ms
                ),
            ));
        }
    }
    s.finish(warnings);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_normalise() {
        assert_eq!(normalise_namespace("/service/"), "/service");
        assert_eq!(normalise_namespace("service"), "/service");
        assert_eq!(normalise_namespace("//a//b/"), "/a/b");
        assert_eq!(normalise_namespace("/"), "");
        assert_eq!(normalise_namespace(""), "");
    }

    #[test]
    fn watchdog_modes() {
        for (v, m) in [
            (json!(false), WatchdogMode::Off),
            (json!(true), WatchdogMode::Automatic),
            (json!("off"), WatchdogMode::Off),
            (json!("Automatic"), WatchdogMode::Automatic),
            (json!("auto"), WatchdogMode::Automatic),
            (json!("required"), WatchdogMode::Required),
            (json!("require"), WatchdogMode::Required),
        ] {
            assert_eq!(parse_watchdog_mode(&v).expect("known mode"), m, "{v}");
        }
        let e = parse_watchdog_mode(&json!("sometimes")).expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "watchdog.mode: \"sometimes\" is not a watchdog mode (expected off, automatic or required)"
        );
    }
}
