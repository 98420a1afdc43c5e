//! Where a node's failover policy comes from and how it is limited.
//!
//! Local (`policy:` at the top of the YAML; Patroni ignores it):
//! ```yaml
//! policy:
//!   path: /etc/pgwarden/zone-aware.wasm   # absent: the embedded default
//!   sha256: 3f2a...                        # optional: refuse any other component
//!   shadow: {path: /etc/pgwarden/candidate.wasm, sha256: ...}
//!   fuel: 50000000                         # per call
//!   memory_mb: 16                          # per call
//!   timeout_ms: 20                         # per call (the sandbox's epoch deadline)
//!   deadline_ms: 500                       # the runtime's hard bound on an answer
//!   trace_file: /var/lib/pgwarden/policy-trace.jsonl
//!   params: {zone_wait_ms: 5000}
//! ```
//! Cluster-wide (`/config`, hot-reloaded; it wins over the local `path`):
//! ```yaml
//! policy:
//!   name: zone-aware
//!   sha256: 3f2a...                        # required: every node checks its own copy
//!   source: /etc/pgwarden/policies/zone-aware.wasm
//!   params: {zone_wait_ms: 5000}
//!   shadow: {name: candidate, sha256: ..., source: ...}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::error::ConfigError;
use super::tree::{self, Section};
use crate::policy::PolicyLimits;

/// A component file and, optionally, the digest it must have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComponentSource {
    /// Name for logs and status (the file stem when not given).
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Lower-case hex SHA-256 the file must match.
    pub sha256: Option<String>,
}

/// The local `policy:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPolicyConfig {
    /// The active policy (`None`: the embedded default).
    pub active: Option<ComponentSource>,
    /// A policy run beside the active one whose decisions are only recorded.
    pub shadow: Option<ComponentSource>,
    /// Fuel per call.
    pub fuel: u64,
    /// Linear memory per call, bytes.
    pub memory_bytes: u64,
    /// Wall-time limit per call inside the sandbox, milliseconds.
    pub timeout_ms: u64,
    /// The runtime's bound on an answer (else the native default answers), milliseconds.
    pub deadline_ms: u64,
    /// Append every policy call and decision here (JSON lines) for replay.
    pub trace_file: Option<PathBuf>,
    /// Parameters passed to the policy (`/config` `policy.params` override them).
    pub params: BTreeMap<String, String>,
}

impl Default for LocalPolicyConfig {
    /// The host's default limits, a 500 ms deadline, the embedded default policy.
    fn default() -> Self {
        let limits = PolicyLimits::default();
        LocalPolicyConfig {
            active: None,
            shadow: None,
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes as u64,
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            deadline_ms: 500,
            trace_file: None,
            params: BTreeMap::new(),
        }
    }
}

impl LocalPolicyConfig {
    /// The per-call limits these settings give the policy host.
    pub fn limits(&self) -> PolicyLimits {
        PolicyLimits {
            fuel: self.fuel,
            memory_bytes: usize::try_from(self.memory_bytes).unwrap_or(usize::MAX),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

/// The `policy` document of `/config`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterPolicy {
    /// The active policy; its digest is required.
    pub active: ComponentSource,
    /// Optional shadow policy.
    pub shadow: Option<ComponentSource>,
    /// Parameters for the policy.
    pub params: BTreeMap<String, String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sha256(path: &str, v: &Value) -> Result<String, ConfigError> {
    let given = tree::string(path, v)?;
    crate::policy::normalize_digest(&given).ok_or_else(|| {
        ConfigError::new(
            path,
            format!("{given:?} is not a SHA-256 digest (64 hexadecimal characters)"),
        )
    })
}

fn params(path: &str, v: &Value) -> Result<BTreeMap<String, String>, ConfigError> {
    let Some(map) = v.as_object() else {
        return Err(ConfigError::new(
            path,
            format!(
                "expected a mapping of names to values, found {}",
                tree::render(v)
            ),
        ));
    };
    Ok(map.iter().map(|(k, v)| (k.clone(), text(v))).collect())
}

fn stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into())
}

/// The component a section names with `path` (and optionally `sha256`, `name`); `None`
/// without a `path`.
fn component_at(s: &mut Section<'_>) -> Result<Option<ComponentSource>, ConfigError> {
    let Some(v) = s.get("path") else {
        return Ok(None);
    };
    let path = PathBuf::from(tree::string(&s.key_path("path"), v)?);
    let sha = match s.get("sha256") {
        Some(v) => Some(sha256(&s.key_path("sha256"), v)?),
        None => None,
    };
    let name = match s.get("name") {
        Some(v) => tree::string(&s.key_path("name"), v)?,
        None => stem(&path),
    };
    Ok(Some(ComponentSource {
        name,
        path,
        sha256: sha,
    }))
}

/// A local component reference: `{path, sha256?, name?}`.
fn local_source(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<ComponentSource, ConfigError> {
    let source = component_at(&mut s)?
        .ok_or_else(|| ConfigError::new(s.key_path("path"), "missing: the component file"))?;
    s.finish(warnings);
    Ok(source)
}

/// A cluster-wide component reference: `{name, sha256, source}`, all required.
fn cluster_source(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<ComponentSource, ConfigError> {
    let mut required = |key: &str, what: &str| -> Result<&Value, ConfigError> {
        let path = s.key_path(key);
        s.get(key)
            .ok_or_else(|| ConfigError::new(&path, format!("missing: {what}")))
    };
    let name = required("name", "the policy's name")?.clone();
    let digest = required("sha256", "the component's SHA-256, which every node checks")?.clone();
    let source = required("source", "the component's path on every node")?.clone();
    let source_path = s.key_path("source");
    let name = tree::string(&s.key_path("name"), &name)?;
    let digest = sha256(&s.key_path("sha256"), &digest)?;
    let path = PathBuf::from(tree::string(&source_path, &source)?);
    if !path.is_absolute() {
        return Err(ConfigError::new(
            &source_path,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    s.finish(warnings);
    Ok(ComponentSource {
        name,
        path,
        sha256: Some(digest),
    })
}

/// Parse the local `policy:` section.
pub(crate) fn parse_local(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<LocalPolicyConfig, ConfigError> {
    let mut c = LocalPolicyConfig {
        active: component_at(&mut s)?,
        ..LocalPolicyConfig::default()
    };
    if let Some(shadow) = s.section("shadow")? {
        c.shadow = Some(local_source(shadow, warnings)?);
    }
    for (key, slot, what, min) in [
        ("fuel", &mut c.fuel, "a whole number of fuel units", 1_000),
        (
            "timeout_ms",
            &mut c.timeout_ms,
            "a whole number of milliseconds",
            2,
        ),
        (
            "deadline_ms",
            &mut c.deadline_ms,
            "a whole number of milliseconds",
            10,
        ),
    ] {
        if let Some(v) = s.get(key) {
            let path = s.key_path(key);
            *slot = tree::whole(&path, v, what)?;
            if *slot < min {
                return Err(ConfigError::new(
                    &path,
                    format!("{} is below the minimum of {min}", *slot),
                ));
            }
        }
    }
    if let Some(v) = s.get("memory_mb") {
        let path = s.key_path("memory_mb");
        let mb = tree::whole(&path, v, "a whole number of MiB")?;
        if !(1..=4096).contains(&mb) {
            return Err(ConfigError::new(
                &path,
                format!("{mb} is outside 1..=4096 MiB"),
            ));
        }
        c.memory_bytes = mb * 1024 * 1024;
    }
    if c.deadline_ms <= c.timeout_ms {
        return Err(ConfigError::new(
            s.key_path("deadline_ms"),
            format!(
                "{} must exceed policy.timeout_ms ({}): the runtime's bound covers the call",
                c.deadline_ms, c.timeout_ms
            ),
        ));
    }
    if let Some(v) = s.get("trace_file") {
        c.trace_file = Some(PathBuf::from(tree::string(&s.key_path("trace_file"), v)?));
    }
    if let Some(v) = s.get("params") {
        c.params = params(&s.key_path("params"), v)?;
    }
    s.finish(warnings);
    Ok(c)
}

/// Parse the `policy` document of `/config` (at `path`).
pub(crate) fn parse_cluster(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<ClusterPolicy, ConfigError> {
    let mut policy_params = BTreeMap::new();
    if let Some(v) = s.get("params") {
        policy_params = params(&s.key_path("params"), v)?;
    }
    let shadow = match s.section("shadow")? {
        Some(shadow) => Some(cluster_source(shadow, warnings)?),
        None => None,
    };
    let active = cluster_source(s, warnings)?;
    Ok(ClusterPolicy {
        active,
        shadow,
        params: policy_params,
    })
}
