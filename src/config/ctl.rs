//! What `pgwardenctl` reads from a configuration file: patronictl's own file (`scope`,
//! `namespace`, an `etcd3:` section, a `ctl:` section) or a whole agent YAML, which holds
//! the same keys beside many the tool does not need (and does not judge).
//!
//! As patronictl: every key is optional but the lock store; the cluster named on the
//! command line wins over `scope`; `--dcs-url etcd3://host:port/namespace` replaces the
//! file's `etcd3:` section and namespace; the REST API credentials are `ctl.authentication`
//! (or `ctl.auth`, `user:password`), else `restapi.authentication` (or `restapi.auth`).

use serde_json::{json, Map, Value};

use super::error::ConfigError;
use super::etcd;
use super::local::{normalise_namespace, OTHER_DCS};
use super::model::{Credentials, EtcdConfig};
use super::tls::{parse_client, ClientTls};
use super::tree::{self, Section};
use super::DynamicConfig;

/// How a client calls members' REST APIs: the agent towards its peers, pgwardenctl towards
/// every member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiClientConfig {
    /// Basic-auth credentials for the members' unsafe REST endpoints.
    pub credentials: Option<Credentials>,
    /// TLS towards members whose `api_url` is `https://`.
    pub tls: ClientTls,
}

/// An agent's `ctl:` section: the credentials (`authentication`, or `auth` as
/// `user:password`) and TLS it uses towards its peers, with `restapi.cafile` as the CA
/// when `cacert` is absent.
pub(crate) fn parse_client_section(
    mut s: Section<'_>,
    restapi_cafile: Option<std::path::PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<ApiClientConfig, ConfigError> {
    let credentials = credentials(&mut s, warnings)?;
    let tls = parse_client(&mut s, restapi_cafile)?;
    s.finish(warnings);
    Ok(ApiClientConfig { credentials, tls })
}

/// Where the cluster is and how to reach its members.
#[derive(Debug, Clone, PartialEq)]
pub struct CtlConfig {
    /// `scope`: the cluster a command acts on when it names none.
    pub scope: Option<String>,
    /// Normalised as the agent's (`/service/` becomes `/service`).
    pub namespace: String,
    /// How to reach etcd.
    pub etcd: EtcdConfig,
    /// Credentials and TLS towards the members' REST APIs.
    pub api: ApiClientConfig,
    /// `bootstrap.dcs.loop_wait` when the file has it: how long a member may take to act,
    /// until the cluster's `/config` says otherwise.
    pub loop_wait: u32,
    /// `bootstrap.dcs.retry_timeout` when the file has it: how long an etcd call may take.
    pub retry_timeout: u32,
}

/// A validated [`CtlConfig`] and the warnings found while reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCtl {
    /// The typed configuration.
    pub config: CtlConfig,
    /// Keys the tool does not act on, one line each.
    pub warnings: Vec<String>,
}

/// Builds the tool's configuration from a document root (after environment overrides)
/// and an optional `--dcs-url`.
pub(crate) fn build(mut root: Value, dcs_url: Option<&str>) -> Result<LoadedCtl, ConfigError> {
    if root.is_null() {
        root = Value::Object(Map::new());
    }
    if let Some(url) = dcs_url {
        apply_dcs_url(&mut root, url)?;
    }
    let mut warnings = Vec::new();
    let mut s = Section::new("", &root)?;
    for dcs in OTHER_DCS {
        if s.contains(dcs) && !s.contains("etcd3") {
            return Err(ConfigError::new(
                *dcs,
                format!("pgwarden speaks only etcd3 (the etcd v3 API), not {dcs}: use an `etcd3:` section or --dcs-url etcd3://host:port"),
            ));
        }
    }
    let scope = match s.get("scope") {
        Some(v) => Some(tree::string("scope", v)?).filter(|s| !s.trim().is_empty()),
        None => None,
    };
    let namespace = match s.get("namespace") {
        Some(v) => normalise_namespace(&tree::string("namespace", v)?),
        None => "/service".to_string(),
    };
    let etcd = match s.section("etcd3")? {
        Some(e) => etcd::parse(e, &mut warnings)?,
        None => {
            return Err(ConfigError::new(
                "etcd3",
                "missing: name the lock store with an `etcd3:` section (hosts, host or url) or --dcs-url etcd3://host:port",
            ))
        }
    };
    // patronictl reads an agent's file too: its `restapi:` gives the credentials and the CA
    // when `ctl:` does not (the rest of that section is the agent's business).
    let (restapi_credentials, restapi_cafile) = match root.get("restapi") {
        Some(restapi @ Value::Object(_)) => {
            let mut section = Section::new("restapi", restapi)?;
            let credentials = credentials(&mut section, &mut Vec::new())?;
            let cafile = match section.get("cafile") {
                Some(v) => Some(tree::string("restapi.cafile", v)?.into()),
                None => None,
            };
            (credentials, cafile)
        }
        _ => (None, None),
    };
    let api = match s.section("ctl")? {
        Some(mut ctl) => {
            let credentials = credentials(&mut ctl, &mut warnings)?;
            let tls = parse_client(&mut ctl, restapi_cafile)?;
            ctl.finish(&mut warnings);
            ApiClientConfig { credentials, tls }
        }
        None => ApiClientConfig {
            credentials: None,
            tls: ClientTls {
                cacert: restapi_cafile,
                ..Default::default()
            },
        },
    };
    let api = ApiClientConfig {
        credentials: api.credentials.or(restapi_credentials),
        ..api
    };
    let dcs = root.pointer("/bootstrap/dcs");
    let whole = |key: &str, default: u32| -> Result<u32, ConfigError> {
        match dcs.and_then(|d| d.get(key)) {
            Some(v) => tree::whole_u32(&format!("bootstrap.dcs.{key}"), v, "a number of seconds"),
            None => Ok(default),
        }
    };
    let defaults = DynamicConfig::default();
    let config = CtlConfig {
        scope,
        namespace,
        etcd,
        api,
        loop_wait: whole("loop_wait", defaults.loop_wait)?,
        retry_timeout: whole("retry_timeout", defaults.retry_timeout)?,
    };
    Ok(LoadedCtl { config, warnings })
}

/// `authentication: {username, password}` or `auth: "user:password"` in `s`.
fn credentials(
    s: &mut Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Credentials>, ConfigError> {
    if let Some(a) = s.section("authentication")? {
        return super::postgresql::parse_credentials(a, warnings, true).map(Some);
    }
    let Some(v) = s.get("auth") else {
        return Ok(None);
    };
    let path = s.key_path("auth");
    let text = tree::secret(&path, v)?;
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(Some(Credentials {
            username: user.to_string(),
            password: Some(password.to_string()),
        })),
        _ => Err(ConfigError::new(path, "expected user:password")),
    }
}

/// patronictl's `--dcs-url`: `etcd3://host:port[/namespace]` replaces the file's lock
/// store (and namespace, when the URL has a path).
fn apply_dcs_url(root: &mut Value, url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| ConfigError::new("--dcs-url", format!("{url:?}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected etcd3://host:port[/namespace]"))?;
    match scheme {
        "etcd3" => {}
        "etcd" => return Err(bad("the etcd v2 API is not supported: use etcd3://")),
        other => return Err(bad(&format!("pgwarden speaks only etcd3, not {other}"))),
    }
    let (hosts, namespace) = match rest.split_once('/') {
        Some((hosts, namespace)) => (hosts, Some(namespace)),
        None => (rest, None),
    };
    if hosts.is_empty() {
        return Err(bad("no host"));
    }
    let Value::Object(map) = root else {
        return Err(ConfigError::new("<config>", "expected a mapping"));
    };
    for dcs in OTHER_DCS {
        map.remove(*dcs);
    }
    map.insert("etcd3".into(), json!({ "hosts": hosts }));
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        map.insert("namespace".into(), json!(namespace));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, dcs_url: Option<&str>) -> Result<LoadedCtl, ConfigError> {
        build(tree::yaml_to_json(yaml, "<yaml>")?, dcs_url)
    }

    #[test]
    fn a_patronictl_file_needs_only_the_lock_store() {
        let loaded = load("etcd3:\n  hosts: 127.0.0.1:2379\n", None).expect("parses");
        assert_eq!(loaded.config.scope, None);
        assert_eq!(loaded.config.namespace, "/service");
        assert_eq!(loaded.config.etcd.hosts[0].to_string(), "127.0.0.1:2379");
        assert_eq!(loaded.config.api.credentials, None);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn ctl_credentials_win_over_the_rest_apis() {
        let yaml = "scope: batman\nnamespace: /db/\netcd3: {host: 10.0.0.1}\n\
                    ctl: {authentication: {username: ops, password: s3cret}}\n\
                    restapi: {listen: 0.0.0.0:8008, authentication: {username: api, password: x}}\n";
        let loaded = load(yaml, None).expect("parses");
        assert_eq!(loaded.config.scope.as_deref(), Some("batman"));
        assert_eq!(loaded.config.namespace, "/db");
        assert_eq!(loaded.config.etcd.hosts[0].to_string(), "10.0.0.1:2379");
        let creds = loaded.config.api.credentials.expect("credentials");
        assert_eq!(
            (creds.username.as_str(), creds.password.as_deref()),
            ("ops", Some("s3cret"))
        );

        let yaml = "etcd3: {host: h}\nrestapi: {auth: 'api:pw'}\n";
        let creds = load(yaml, None)
            .expect("parses")
            .config
            .api
            .credentials
            .expect("creds");
        assert_eq!(
            (creds.username.as_str(), creds.password.as_deref()),
            ("api", Some("pw"))
        );
    }

    #[test]
    fn ctl_tls_keys_configure_the_client() {
        let loaded = load(
            "etcd3: {host: h}\nctl: {insecure: true, certfile: /c.pem, keyfile: /k.pem}\n\
             restapi: {cafile: /ca.pem}\n",
            None,
        )
        .expect("parses");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let tls = loaded.config.api.tls;
        assert!(tls.insecure);
        assert_eq!(
            tls.certfile.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
        assert_eq!(tls.cacert.as_deref(), Some(std::path::Path::new("/ca.pem")));
    }

    #[test]
    fn the_dcs_url_replaces_the_files_lock_store_and_namespace() {
        let loaded = load(
            "scope: s\netcd: {host: old:2379}\n",
            Some("etcd3://127.0.0.1:23790/other"),
        )
        .expect("parses");
        assert_eq!(loaded.config.etcd.hosts[0].to_string(), "127.0.0.1:23790");
        assert_eq!(loaded.config.namespace, "/other");
        for (url, names) in [
            ("etcd://h:2379", "v2"),
            ("consul://h:8500", "consul"),
            ("h:2379", "etcd3://"),
        ] {
            let e = load("", Some(url)).expect_err(url);
            assert!(e.to_string().contains("--dcs-url"), "{e}");
            assert!(e.to_string().contains(names), "{url}: {e}");
        }
    }

    #[test]
    fn bad_input_names_the_key() {
        for (yaml, key) in [
            ("scope: s\n", "etcd3"),
            ("etcd: {host: h}\n", "etcd"),
            ("etcd3: {host: h}\nctl: {auth: nocolon}\n", "ctl.auth"),
            (
                "etcd3: {host: h}\nbootstrap: {dcs: {loop_wait: soon}}\n",
                "bootstrap.dcs.loop_wait",
            ),
        ] {
            let e = load(yaml, None).expect_err(yaml);
            assert!(e.to_string().contains(key), "{yaml}: {e}");
        }
    }
}
