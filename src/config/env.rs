//! Environment overrides: `PATRONI_*` variables (Patroni's `ENVIRONMENT.rst`) and our
//! `PGWARDEN_*` ones, written into the document tree before it is typed, so every value
//! goes through the same parsing and validation as the file. Errors about a value that came
//! from the environment name the variable, not the key.

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::tree;

/// Reads one environment variable; `None` when unset.
pub(crate) type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Variables copied verbatim to a key path.
const SIMPLE: &[(&str, &[&str])] = &[
    ("PATRONI_NAME", &["name"]),
    ("PATRONI_SCOPE", &["scope"]),
    ("PATRONI_NAMESPACE", &["namespace"]),
    ("PATRONI_LOG_TYPE", &["log", "type"]),
    ("PATRONI_LOG_LEVEL", &["log", "level"]),
    ("PATRONI_LOG_TRACEBACK_LEVEL", &["log", "traceback_level"]),
    ("PATRONI_LOG_FORMAT", &["log", "format"]),
    ("PATRONI_LOG_DATEFORMAT", &["log", "dateformat"]),
    ("PATRONI_LOG_MAX_QUEUE_SIZE", &["log", "max_queue_size"]),
    ("PATRONI_LOG_DIR", &["log", "dir"]),
    ("PATRONI_LOG_MODE", &["log", "mode"]),
    ("PATRONI_LOG_FILE_NUM", &["log", "file_num"]),
    ("PATRONI_LOG_FILE_SIZE", &["log", "file_size"]),
    ("PATRONI_RESTAPI_LISTEN", &["restapi", "listen"]),
    (
        "PATRONI_RESTAPI_CONNECT_ADDRESS",
        &["restapi", "connect_address"],
    ),
    (
        "PATRONI_RESTAPI_USERNAME",
        &["restapi", "authentication", "username"],
    ),
    (
        "PATRONI_RESTAPI_PASSWORD",
        &["restapi", "authentication", "password"],
    ),
    ("PATRONI_RESTAPI_CERTFILE", &["restapi", "certfile"]),
    ("PATRONI_RESTAPI_KEYFILE", &["restapi", "keyfile"]),
    (
        "PATRONI_RESTAPI_KEYFILE_PASSWORD",
        &["restapi", "keyfile_password"],
    ),
    ("PATRONI_RESTAPI_CAFILE", &["restapi", "cafile"]),
    ("PATRONI_RESTAPI_CIPHERS", &["restapi", "ciphers"]),
    (
        "PATRONI_RESTAPI_VERIFY_CLIENT",
        &["restapi", "verify_client"],
    ),
    (
        "PATRONI_CTL_USERNAME",
        &["ctl", "authentication", "username"],
    ),
    (
        "PATRONI_CTL_PASSWORD",
        &["ctl", "authentication", "password"],
    ),
    ("PATRONI_CTL_INSECURE", &["ctl", "insecure"]),
    ("PATRONI_CTL_CACERT", &["ctl", "cacert"]),
    ("PATRONI_CTL_CERTFILE", &["ctl", "certfile"]),
    ("PATRONI_CTL_KEYFILE", &["ctl", "keyfile"]),
    ("PATRONI_CTL_KEYFILE_PASSWORD", &["ctl", "keyfile_password"]),
    ("PATRONI_ETCD3_CACERT", &["etcd3", "cacert"]),
    ("PATRONI_ETCD3_CERT", &["etcd3", "cert"]),
    ("PATRONI_ETCD3_KEY", &["etcd3", "key"]),
    ("PATRONI_ETCD3_PROTOCOL", &["etcd3", "protocol"]),
    ("PATRONI_ETCD3_USERNAME", &["etcd3", "username"]),
    ("PATRONI_ETCD3_PASSWORD", &["etcd3", "password"]),
    ("PATRONI_POSTGRESQL_LISTEN", &["postgresql", "listen"]),
    (
        "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
        &["postgresql", "connect_address"],
    ),
    ("PATRONI_POSTGRESQL_DATA_DIR", &["postgresql", "data_dir"]),
    (
        "PATRONI_POSTGRESQL_CONFIG_DIR",
        &["postgresql", "config_dir"],
    ),
    ("PATRONI_POSTGRESQL_BIN_DIR", &["postgresql", "bin_dir"]),
    ("PATRONI_POSTGRESQL_PGPASS", &["postgresql", "pgpass"]),
    (
        "PATRONI_SUPERUSER_USERNAME",
        &["postgresql", "authentication", "superuser", "username"],
    ),
    (
        "PATRONI_SUPERUSER_PASSWORD",
        &["postgresql", "authentication", "superuser", "password"],
    ),
    (
        "PATRONI_REPLICATION_USERNAME",
        &["postgresql", "authentication", "replication", "username"],
    ),
    (
        "PATRONI_REPLICATION_PASSWORD",
        &["postgresql", "authentication", "replication", "password"],
    ),
    (
        "PATRONI_REWIND_USERNAME",
        &["postgresql", "authentication", "rewind", "username"],
    ),
    (
        "PATRONI_REWIND_PASSWORD",
        &["postgresql", "authentication", "rewind", "password"],
    ),
];

/// etcd endpoint variables. Setting any of them replaces every endpoint key of the file:
/// Patroni merges them key by key, so a file `hosts` would beat an env `HOST` there, which
/// contradicts "the environment wins".
const ETCD_ENDPOINTS: &[(&str, &str)] = &[
    ("PATRONI_ETCD3_HOST", "host"),
    ("PATRONI_ETCD3_HOSTS", "hosts"),
    ("PATRONI_ETCD3_URL", "url"),
];

/// Our own variables; applied even when `PATRONI_CONFIGURATION` is used, since Patroni's
/// rule concerns only its own.
const PGWARDEN: &[(&str, &[&str])] = &[
    (
        "PGWARDEN_PEER_PROBE_TIMEOUT_MS",
        &["pgwarden", "peer_probe_timeout_ms"],
    ),
    (
        "PGWARDEN_DEMOTION_MARGIN_MS",
        &["pgwarden", "demotion_margin_ms"],
    ),
    (
        "PGWARDEN_UNRESPONSIVE_PRIMARY_TIMEOUT_MS",
        &["pgwarden", "unresponsive_primary_timeout_ms"],
    ),
    (
        "PGWARDEN_CALLBACK_TIMEOUT_MS",
        &["pgwarden", "callback_timeout_ms"],
    ),
    ("PGWARDEN_ROLE_HISTORY", &["pgwarden", "role_history"]),
    ("PGWARDEN_INPUT_LOG", &["pgwarden", "input_log"]),
];

/// Which key paths were set from which variables, to re-address errors.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    entries: Vec<(String, String)>,
}

impl Origins {
    /// Rewrites an error about an overridden key (or anything below it) to name the
    /// variable that supplied the value.
    pub(crate) fn readdress(&self, e: ConfigError) -> ConfigError {
        for (path, var) in &self.entries {
            let below = e.path.strip_prefix(path.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            });
            if below {
                return ConfigError::new(var.clone(), e.message);
            }
        }
        e
    }
}

/// Applies the overrides to `root`. With `patroni_vars` false (the configuration came
/// from `PATRONI_CONFIGURATION`) only `PGWARDEN_*` variables apply, as in Patroni.
pub(crate) fn apply(
    root: &mut Value,
    env: EnvFn<'_>,
    patroni_vars: bool,
) -> Result<Origins, ConfigError> {
    let mut origins = Origins::default();
    // Patroni ignores empty variables.
    let read = |name: &str| env(name).filter(|v| !v.is_empty());

    if patroni_vars {
        for (var, path) in SIMPLE {
            if let Some(value) = read(var) {
                set(root, path, Value::String(value), var)?;
                origins.entries.push((path.join("."), (*var).to_string()));
            }
        }
        let endpoints: Vec<(&str, &str, String)> = ETCD_ENDPOINTS
            .iter()
            .filter_map(|(var, key)| read(var).map(|v| (*var, *key, v)))
            .collect();
        if !endpoints.is_empty() {
            if let Some(Value::Object(etcd3)) = root.get_mut("etcd3") {
                for (_, key) in ETCD_ENDPOINTS {
                    etcd3.remove(*key);
                }
            }
            for (var, key, raw) in endpoints {
                let value = if key == "hosts" {
                    hosts_value(var, &raw)?
                } else {
                    Value::String(raw)
                };
                set(root, &["etcd3", key], value, var)?;
                origins
                    .entries
                    .push((format!("etcd3.{key}"), var.to_string()));
            }
        }
    }
    for (var, path) in PGWARDEN {
        if let Some(value) = read(var) {
            set(root, path, Value::String(value), var)?;
            origins.entries.push((path.join("."), (*var).to_string()));
        }
    }
    Ok(origins)
}

/// `PATRONI_ETCD3_HOSTS` is a comma list (`a:2379,b:2379`) or a YAML list
/// (`[a:2379, b:2379]` or `- a:2379` lines), as Patroni's `_parse_list` accepts.
fn hosts_value(var: &str, raw: &str) -> Result<Value, ConfigError> {
    let t = raw.trim();
    if !(t.starts_with('[') || t.starts_with('-')) {
        return Ok(Value::String(raw.to_string()));
    }
    let v = tree::yaml_to_json(raw, var)?;
    match v {
        Value::Array(_) => Ok(v),
        other => Err(ConfigError::new(
            var,
            format!(
                "expected a list of host:port, found {}",
                tree::render(&other)
            ),
        )),
    }
}

fn set(root: &mut Value, path: &[&str], value: Value, var: &str) -> Result<(), ConfigError> {
    if root.is_null() {
        *root = Value::Object(Map::new());
    }
    let mut node = root;
    let mut walked = String::new();
    for (i, key) in path.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(ConfigError::new(
                if walked.is_empty() {
                    "<root>".to_string()
                } else {
                    walked
                },
                format!(
                    "expected a mapping, found {}; cannot apply {var}",
                    tree::render(node)
                ),
            ));
        };
        if i + 1 == path.len() {
            map.insert((*key).to_string(), value);
            return Ok(());
        }
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(key);
        let child = map
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if child.is_null() {
            *child = Value::Object(Map::new());
        }
        node = child;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn simple_overrides_create_sections() {
        let mut root = json!({"name": "pg1", "postgresql": null});
        let env = env_of(&[
            ("PATRONI_NAME", "pg9"),
            ("PATRONI_SUPERUSER_PASSWORD", "secret"),
            ("PATRONI_SCOPE", ""),
        ]);
        apply(&mut root, &env, true).expect("applies");
        assert_eq!(root["name"], json!("pg9"));
        assert_eq!(
            root["postgresql"]["authentication"]["superuser"]["password"],
            json!("secret")
        );
        assert!(root.get("scope").is_none(), "empty variables are ignored");
    }

    #[test]
    fn etcd_endpoint_vars_replace_file_endpoints() {
        let mut root = json!({"etcd3": {"hosts": ["a:1"], "protocol": "http"}});
        let env = env_of(&[("PATRONI_ETCD3_HOST", "b:2")]);
        apply(&mut root, &env, true).expect("applies");
        assert_eq!(root["etcd3"], json!({"host": "b:2", "protocol": "http"}));
        let env = env_of(&[("PATRONI_ETCD3_HOSTS", "[x:1, y:2]")]);
        apply(&mut root, &env, true).expect("applies");
        assert_eq!(root["etcd3"]["hosts"], json!(["x:1", "y:2"]));
        assert!(root["etcd3"].get("host").is_none());
        let env = env_of(&[("PATRONI_ETCD3_HOSTS", "x:1,y:2")]);
        apply(&mut root, &env, true).expect("applies");
        assert_eq!(root["etcd3"]["hosts"], json!("x:1,y:2"));
    }

    #[test]
    fn patroni_vars_off_keeps_pgwarden_vars() {
        let mut root = json!({"name": "pg1"});
        let env = env_of(&[
            ("PATRONI_NAME", "pg9"),
            ("PGWARDEN_DEMOTION_MARGIN_MS", "500"),
        ]);
        apply(&mut root, &env, false).expect("applies");
        assert_eq!(root["name"], json!("pg1"));
        assert_eq!(root["pgwarden"]["demotion_margin_ms"], json!("500"));
    }

    #[test]
    fn scalar_in_the_way_is_an_error() {
        let mut root = json!({"postgresql": "oops"});
        let env = env_of(&[("PATRONI_POSTGRESQL_LISTEN", "1.2.3.4:5")]);
        let e = apply(&mut root, &env, true).expect_err("scalar section");
        assert_eq!(e.path, "postgresql");
        assert!(e.message.contains("PATRONI_POSTGRESQL_LISTEN"));
    }

    #[test]
    fn errors_are_readdressed_to_the_variable() {
        let mut root = json!({});
        let env = env_of(&[("PATRONI_ETCD3_HOSTS", "a:1,b:x")]);
        let o = apply(&mut root, &env, true).expect("applies");
        let e = o.readdress(ConfigError::new("etcd3.hosts[1]", "bad port"));
        assert_eq!(e.path, "PATRONI_ETCD3_HOSTS");
        let e = o.readdress(ConfigError::new("etcd3.hostsx", "other"));
        assert_eq!(e.path, "etcd3.hostsx");
    }

    #[test]
    fn bad_yaml_list_names_the_variable() {
        let mut root = json!({});
        let env = env_of(&[("PATRONI_ETCD3_HOSTS", "[a, b")]);
        let e = apply(&mut root, &env, true).expect_err("bad yaml");
        assert_eq!(e.path, "PATRONI_ETCD3_HOSTS");
    }
}
