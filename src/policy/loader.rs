//! Loading a policy component: digest check, one compilation, the import/export allow-list
//! (nothing outside `pgwarden:policy`), linking into an `InstancePre`, and one `metadata()`
//! call whose answer is kept with the digest, size and import/export names in a
//! [`PolicyInfo`] (what `pgwardenctl policy check` shows).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::bindings::{
    PolicyPre, CONTRACT_VERSION, DECIDER_INTERFACE, HOST_INTERFACE, TYPES_INTERFACE,
};
use super::convert;
use super::engine::PolicyEngine;
use super::error::PolicyLoadError;
use super::sandbox::GuestState;
use super::validate;
use super::DEFAULT_POLICY_COMPONENT;

/// The label of the embedded default component.
pub const EMBEDDED_DEFAULT_LABEL: &str = "embedded default";

/// Imports a policy may have.
pub const ALLOWED_IMPORTS: [&str; 2] = [HOST_INTERFACE, TYPES_INTERFACE];

/// What is known about a loaded policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Name, from its `metadata()`.
    pub name: String,
    /// Its own version, from its `metadata()`.
    pub version: String,
    /// One sentence, from its `metadata()`.
    pub description: String,
    /// The contract version it was built against (`pgwarden:policy@…`).
    pub contract_version: String,
    /// Where it came from: a path, or [`EMBEDDED_DEFAULT_LABEL`], or a caller's label.
    pub source: String,
    /// sha256 of the component bytes, lowercase hex.
    pub sha256: String,
    /// Size of the component, bytes.
    pub size_bytes: usize,
    /// The component's import names.
    pub imports: Vec<String>,
    /// The component's export names.
    pub exports: Vec<String>,
}

/// A compiled, checked and linked policy, ready to be called by the engine that loaded it.
/// Cheap to clone.
#[derive(Clone)]
pub struct LoadedPolicy {
    inner: Arc<LoadedInner>,
}

struct LoadedInner {
    info: PolicyInfo,
    name: Arc<str>,
    engine: Engine,
    pre: PolicyPre<GuestState>,
}

impl fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

impl LoadedPolicy {
    /// What is known about it.
    pub fn info(&self) -> &PolicyInfo {
        &self.inner.info
    }

    /// Its name (from `metadata()`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(super) fn name_arc(&self) -> Arc<str> {
        self.inner.name.clone()
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(super) fn pre(&self) -> &PolicyPre<GuestState> {
        &self.inner.pre
    }
}

/// sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// An expected digest as given (hex, optionally `sha256:`-prefixed, any case) → lowercase
/// hex, or `None` when it is not one.
pub fn normalize_digest(expected: &str) -> Option<String> {
    let hex = expected.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

impl PolicyEngine {
    /// Load the component in the file at `path`, refusing it when its sha256 is not
    /// `expected_sha256` (hex, optionally prefixed `sha256:`).
    pub fn load_file(
        &self,
        path: &Path,
        expected_sha256: Option<&str>,
    ) -> Result<LoadedPolicy, PolicyLoadError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyLoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(&path.display().to_string(), &bytes, expected_sha256)
    }

    /// The embedded default policy (`policies/default`, built by `build.rs`).
    pub fn embedded_default(&self) -> Result<LoadedPolicy, PolicyLoadError> {
        self.load_bytes(EMBEDDED_DEFAULT_LABEL, DEFAULT_POLICY_COMPONENT, None)
    }

    /// Load a component from memory; `label` names it in errors and in its info.
    pub fn load_bytes(
        &self,
        label: &str,
        bytes: &[u8],
        expected_sha256: Option<&str>,
    ) -> Result<LoadedPolicy, PolicyLoadError> {
        let sha256 = sha256_hex(bytes);
        if let Some(expected) = expected_sha256 {
            let Some(expected) = normalize_digest(expected) else {
                return Err(PolicyLoadError::DigestFormat {
                    label: label.to_string(),
                    expected: expected.to_string(),
                });
            };
            if expected != sha256 {
                return Err(PolicyLoadError::DigestMismatch {
                    label: label.to_string(),
                    expected,
                    actual: sha256,
                });
            }
        }

        let engine = self.engine();
        let component = Component::new(engine, bytes).map_err(|e| PolicyLoadError::Compile {
            label: label.to_string(),
            size: bytes.len(),
            message: format!("{e:#}"),
        })?;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();

        let forbidden: Vec<String> = imports
            .iter()
            .filter(|name| !ALLOWED_IMPORTS.contains(&name.as_str()))
            .cloned()
            .collect();
        if !forbidden.is_empty() {
            return Err(PolicyLoadError::ForbiddenImports {
                label: label.to_string(),
                imports: forbidden,
            });
        }
        if !exports.iter().any(|name| name == DECIDER_INTERFACE) {
            return Err(PolicyLoadError::MissingExport {
                label: label.to_string(),
                expected: DECIDER_INTERFACE.to_string(),
                exports,
            });
        }

        let link_error = |e: wasmtime::Error| PolicyLoadError::Link {
            label: label.to_string(),
            message: format!("{e:#}"),
        };
        let instance_pre = self
            .linker()
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = PolicyPre::new(instance_pre).map_err(link_error)?;

        let (info, _fuel, _warnings) = self
            .call(Arc::from(label), engine, &pre, |store, bindings| {
                bindings.pgwarden_policy_decider().call_metadata(store)
            })
            .map_err(|error| PolicyLoadError::Metadata {
                label: label.to_string(),
                error,
            })?;
        let info = convert::info_from_wit(info);
        let problems = validate::info_problems(&info);
        if !problems.is_empty() {
            return Err(PolicyLoadError::MalformedMetadata {
                label: label.to_string(),
                problems,
            });
        }

        Ok(LoadedPolicy {
            inner: Arc::new(LoadedInner {
                name: Arc::from(info.name.as_str()),
                info: PolicyInfo {
                    name: info.name,
                    version: info.version,
                    description: info.description,
                    contract_version: CONTRACT_VERSION.to_string(),
                    source: label.to_string(),
                    sha256,
                    size_bytes: bytes.len(),
                    imports,
                    exports,
                },
                engine: engine.clone(),
                pre,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn digests_are_normalized() {
        let hex = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(
            normalize_digest(&format!("sha256:{hex}")).as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(normalize_digest("abc"), None);
        assert_eq!(normalize_digest(&"g".repeat(64)), None);
    }
}
