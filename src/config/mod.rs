//! Patroni-compatible configuration: reads Patroni's YAML (the seed guide's `patroni.yml`
//! parses and validates unchanged), applies `PATRONI_*` / `PGWARDEN_*` environment
//! overrides, validates, and hands out typed structs ([`Config`], [`DynamicConfig`]).
//!
//! This module owns the meaning of every configuration key, its default and its limits. It
//! does no IO beyond reading the configuration file and the process environment in
//! [`load`]; it never touches etcd or PostgreSQL. Other modules read the typed values and
//! never re-validate them.
//!
//! Sources, as in Patroni (`patroni/config.py`):
//! 1. the file (or a directory of `*.yml`/`*.yaml`, merged in name order) when it exists;
//!    otherwise the whole YAML from `PATRONI_CONFIGURATION`;
//! 2. then `PATRONI_*` variables override single keys (not applied when the YAML came from
//!    `PATRONI_CONFIGURATION`); `PGWARDEN_*` variables always apply.
//!
//! Unknown keys and Patroni keys pgwarden does not act on yet are not errors: they come
//! back as [`Loaded::warnings`] for the caller to log. A value pgwarden cannot use
//! safely is a [`ConfigError`] naming the key (or environment variable) and the value.
//!
//! Timing values that break Patroni's rules are adjusted as Patroni adjusts them, with a
//! warning. Deliberate differences from Patroni: `ttl` may go down to [`MIN_TTL_SECS`]
//! (Patroni: 20) and `retry_timeout` to 1 (Patroni: 3), an
//! unknown `watchdog.mode` is refused rather than turning the watchdog off, and only the
//! `etcd3` DCS is accepted.

mod access;
mod address;
mod ctl;
mod dynamic;
mod env;
mod error;
mod etcd;
mod local;
mod log;
mod model;
mod policy;
mod postgresql;
mod tags;
mod telemetry;
mod tls;
mod tree;

use std::path::Path;

use serde_json::{Map, Value};

pub use access::{AllowEntry, ApiAccess};
pub use address::{AddressError, HostPort, ListenAddress};
pub use ctl::{ApiClientConfig, CtlConfig, LoadedCtl};
pub use dynamic::{DynamicConfig, DynamicPostgresql, SynchronousMode, MIN_TTL_SECS};
pub use error::ConfigError;
#[cfg(test)]
pub(crate) use log::parse_template as parse_log_template;
pub use log::{LogConfig, LogField, LogFormat, LogLevel, Piece};
pub use model::{
    Authentication, BootstrapConfig, Config, Credentials, EtcdConfig, InitdbOption, LibpqOptions,
    PgwardenConfig, PostgresqlConfig, RestApiConfig, RoleLibpqOptions, Tags, WatchdogConfig,
    WatchdogMode,
};
pub use policy::{ClusterPolicy, ComponentSource, LocalPolicyConfig};
pub use telemetry::{ExportSettings, OtlpProtocol, TelemetryConfig};
pub use tls::{ClientTls, EtcdTls, Secret, ServerTls, VerifyClient};

/// The environment variable holding a whole YAML configuration.
pub const CONFIGURATION_ENV: &str = "PATRONI_CONFIGURATION";

/// A validated configuration and the warnings found while reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// Unknown keys, keys accepted but not yet supported, and defaults filled in for keys
    /// Patroni requires; one human-readable line each, for the caller to log.
    pub warnings: Vec<String>,
}

/// Reads the configuration at `path` (a file, or a directory of YAML files) or, when it
/// does not exist, from `PATRONI_CONFIGURATION`; applies overrides from the process
/// environment; validates.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with_env(path, &|name| {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    })
}

/// [`load`] with an injected environment, for tests and for callers that filter it.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    if path.exists() {
        let root = read_path(path)?;
        return finish(root, env, true);
    }
    match env(CONFIGURATION_ENV).filter(|y| !y.trim().is_empty()) {
        Some(yaml) => {
            let root = tree::yaml_to_json(&yaml, CONFIGURATION_ENV)?;
            finish(root, env, false)
        }
        None => Err(ConfigError::new(
            path.display().to_string(),
            format!("cannot read: no such file or directory, and {CONFIGURATION_ENV} is not set"),
        )),
    }
}

/// Reads what `pgwardenctl` needs (see [`CtlConfig`]) from `path` (a patronictl file, an
/// agent's YAML, or a directory of them), as patronictl: a file that does not exist is an
/// error when the operator named it (`explicit`), and an empty configuration otherwise;
/// `PATRONI_*` variables override keys; `dcs_url` replaces the lock store.
pub fn load_ctl(
    path: &Path,
    explicit: bool,
    dcs_url: Option<&str>,
) -> Result<LoadedCtl, ConfigError> {
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let mut root = if path.exists() {
        read_path(path)?
    } else if explicit {
        return Err(ConfigError::new(
            path.display().to_string(),
            "cannot read: no such file or directory (check -c/--config-file)",
        ));
    } else {
        match env(CONFIGURATION_ENV).filter(|y| !y.trim().is_empty()) {
            Some(yaml) => tree::yaml_to_json(&yaml, CONFIGURATION_ENV)?,
            None => Value::Object(Map::new()),
        }
    };
    if root.is_null() {
        root = Value::Object(Map::new());
    }
    let origins = env::apply(&mut root, &env, true)?;
    ctl::build(root, dcs_url).map_err(|e| origins.readdress(e))
}

/// Parses YAML text, applies overrides from `env` (but not `PATRONI_CONFIGURATION`: the
/// text is the document), and validates. Pure: reads neither files nor the process
/// environment.
pub fn parse(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let root = tree::yaml_to_json(yaml, "<yaml>")?;
    finish(root, env, true)
}

fn finish(
    mut root: Value,
    env: &dyn Fn(&str) -> Option<String>,
    patroni_vars: bool,
) -> Result<Loaded, ConfigError> {
    let origins = env::apply(&mut root, env, patroni_vars)?;
    let mut warnings = Vec::new();
    let config = local::build(&root, &mut warnings).map_err(|e| origins.readdress(e))?;
    Ok(Loaded { config, warnings })
}

fn read_path(path: &Path) -> Result<Value, ConfigError> {
    let io_err = |p: &Path, e: std::io::Error| {
        ConfigError::new(p.display().to_string(), format!("cannot read: {e}"))
    };
    if !path.is_dir() {
        let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        return tree::yaml_to_json(&text, &path.display().to_string());
    }
    // Patroni merges every *.yml / *.yaml file of a directory in name order.
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| io_err(path, e))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::new(
            path.display().to_string(),
            "directory contains no .yml or .yaml files",
        ));
    }
    let mut merged = Value::Object(Map::new());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io_err(&file, e))?;
        let doc = tree::yaml_to_json(&text, &file.display().to_string())?;
        patch(&mut merged, doc);
    }
    Ok(merged)
}

/// Patroni's `patch_config`: mappings merge recursively, `null` deletes, anything else
/// replaces.
fn patch(base: &mut Value, update: Value) {
    match (base, update) {
        (Value::Object(b), Value::Object(u)) => {
            for (k, v) in u {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(existing) =
                    b.get_mut(&k).filter(|e| e.is_object() && v.is_object())
                {
                    patch(existing, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (base, update) => {
            if !update.is_null() {
                *base = update;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MINIMAL: &str = "\
scope: c
name: n1
restapi: {listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}
etcd3: {hosts: 127.0.0.1:2379}
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /tmp/d
  authentication:
    superuser: {username: postgres}
    replication: {username: replicator}
";

    #[test]
    fn patch_merges_and_deletes() {
        let mut a = json!({"x": {"a": 1, "b": 2}, "y": 1});
        patch(&mut a, json!({"x": {"b": null, "c": 3}, "y": {"z": 1}}));
        assert_eq!(a, json!({"x": {"a": 1, "c": 3}, "y": {"z": 1}}));
    }

    #[test]
    fn minimal_document_loads_with_defaults() {
        let l = parse(MINIMAL, &|_| None).expect("valid");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = l.config;
        assert_eq!(c.namespace, "/service");
        assert_eq!(c.watchdog.mode, WatchdogMode::Automatic);
        assert_eq!(c.bootstrap.dcs, DynamicConfig::default());
        assert_eq!(c.pgwarden, PgwardenConfig::default());
        assert_eq!(c.tags, Tags::default());
    }

    #[test]
    fn empty_document_is_refused() {
        let e = parse("", &|_| None).expect_err("empty");
        assert!(e.message.contains("empty"), "{e}");
    }

    #[test]
    fn directory_files_merge_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("10-base.yml"), MINIMAL).expect("write");
        std::fs::write(dir.path().join("20-node.yaml"), "name: n2\n").expect("write");
        std::fs::write(dir.path().join("README"), "not yaml: [").expect("write");
        let l = load_with_env(dir.path(), &|_| None).expect("merged");
        assert_eq!(l.config.name, "n2");
    }

    #[test]
    fn configuration_env_is_used_when_the_file_is_missing() {
        let env = |k: &str| match k {
            CONFIGURATION_ENV => Some(MINIMAL.to_string()),
            "PATRONI_NAME" => Some("ignored".to_string()),
            _ => None,
        };
        let l = load_with_env(Path::new("/nonexistent/pgwarden.yml"), &env).expect("from env");
        assert_eq!(l.config.name, "n1", "other PATRONI_* vars are not applied");
        let e = load_with_env(Path::new("/nonexistent/pgwarden.yml"), &|_| None)
            .expect_err("nothing to read");
        assert_eq!(e.path, "/nonexistent/pgwarden.yml");
    }

    #[test]
    fn file_wins_over_configuration_env_and_env_overrides_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("patroni.yml");
        std::fs::write(&file, MINIMAL).expect("write");
        let env = |k: &str| match k {
            CONFIGURATION_ENV => Some("scope: other\n".to_string()),
            "PATRONI_NAME" => Some("from-env".to_string()),
            _ => None,
        };
        let l = load_with_env(&file, &env).expect("file");
        assert_eq!(l.config.scope, "c");
        assert_eq!(l.config.name, "from-env");
    }

    #[test]
    fn yaml_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.yml");
        std::fs::write(&file, "scope: [\n").expect("write");
        let e = load_with_env(&file, &|_| None).expect_err("bad yaml");
        assert_eq!(e.path, file.display().to_string());
        assert!(e.message.contains("line"), "{e}");
    }
}
