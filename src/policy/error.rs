//! The policy host's errors: creating the engine, loading a component, and calling one.
//! Each message says what was attempted and with what (the policy's label or name).

use std::fmt;
use std::time::Duration;

use pgwarden_policy::Decision;
use serde::{Deserialize, Serialize};

use super::bindings::{HOST_INTERFACE, PACKAGE_PREFIX, TYPES_INTERFACE};

/// Creating the policy engine failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyEngineError {
    /// wasmtime refused the configuration.
    #[error("creating the policy engine (wasmtime, limits {limits}) failed: {message}")]
    Create {
        /// The limits asked for, as text.
        limits: String,
        /// wasmtime's error.
        message: String,
    },
    /// The epoch ticker thread could not be started.
    #[error("starting the policy engine's epoch ticker thread failed: {0}")]
    Ticker(#[source] std::io::Error),
    /// The limits cannot work (zero fuel, memory or timeout).
    #[error("policy limits {limits}: {problem}")]
    Limits {
        /// The limits asked for, as text.
        limits: String,
        /// What is wrong with them.
        problem: String,
    },
}

/// Loading a policy component failed; the policy is not usable.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The file could not be read.
    #[error("policy {path}: reading the component failed: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The expected digest is not a sha256 in hex.
    #[error(
        "policy {label}: the expected digest {expected:?} is not a sha256 in hex (64 hex digits)"
    )]
    DigestFormat {
        /// Path or label of the policy.
        label: String,
        /// The digest given.
        expected: String,
    },
    /// The component's digest is not the one expected.
    #[error("policy {label}: sha256 is {actual}, expected {expected}; refusing to load it")]
    DigestMismatch {
        /// Path or label of the policy.
        label: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes read.
        actual: String,
    },
    /// wasmtime could not compile the bytes (not a component, invalid, unsupported feature).
    #[error("policy {label}: compiling the component ({size} bytes) failed: {message}")]
    Compile {
        /// Path or label of the policy.
        label: String,
        /// Size of the bytes.
        size: usize,
        /// wasmtime's error.
        message: String,
    },
    /// The component imports something the host does not offer.
    #[error(
        "policy {label}: imports {}; a policy may import only {HOST_INTERFACE} and {TYPES_INTERFACE}",
        describe_imports(.imports)
    )]
    ForbiddenImports {
        /// Path or label of the policy.
        label: String,
        /// Every offending import name.
        imports: Vec<String>,
    },
    /// The component does not export the decider interface.
    #[error(
        "policy {label}: does not export {expected} (its exports: {})",
        list_or_none(.exports)
    )]
    MissingExport {
        /// Path or label of the policy.
        label: String,
        /// The export the host needs.
        expected: String,
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// Linking the component against the host's imports failed (a type mismatch).
    #[error(
        "policy {label}: linking against the host's pgwarden:policy imports failed: {message}"
    )]
    Link {
        /// Path or label of the policy.
        label: String,
        /// wasmtime's error.
        message: String,
    },
    /// Calling `metadata()` failed.
    #[error("policy {label}: calling metadata() failed: {error}")]
    Metadata {
        /// Path or label of the policy.
        label: String,
        /// How the call failed.
        error: PolicyCallError,
    },
    /// `metadata()` answered nonsense.
    #[error("policy {label}: metadata() answered a malformed info: {}", .problems.join("; "))]
    MalformedMetadata {
        /// Path or label of the policy.
        label: String,
        /// What is wrong with it.
        problems: Vec<String>,
    },
}

fn describe_imports(imports: &[String]) -> String {
    imports
        .iter()
        .map(|name| {
            if name.starts_with(PACKAGE_PREFIX) {
                format!("{name} (not provided by this host)")
            } else {
                format!("{name}, outside pgwarden:policy")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The kind of a failed policy call, for counters, metrics labels and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyErrorKind {
    /// The component could not be instantiated for the call.
    Instantiate,
    /// The guest trapped (a panic, an out-of-bounds access, `unreachable`).
    Trap,
    /// The guest used up its fuel.
    FuelExhausted,
    /// The guest ran past the wall-time deadline.
    Timeout,
    /// The guest tried to grow its memory past the cap.
    MemoryLimit,
    /// The guest answered, but the answer fails validation.
    Malformed,
}

impl PolicyErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [PolicyErrorKind; 6] = [
        PolicyErrorKind::Instantiate,
        PolicyErrorKind::Trap,
        PolicyErrorKind::FuelExhausted,
        PolicyErrorKind::Timeout,
        PolicyErrorKind::MemoryLimit,
        PolicyErrorKind::Malformed,
    ];

    /// Snake-case name (metrics label, trace field).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyErrorKind::Instantiate => "instantiate",
            PolicyErrorKind::Trap => "trap",
            PolicyErrorKind::FuelExhausted => "fuel_exhausted",
            PolicyErrorKind::Timeout => "timeout",
            PolicyErrorKind::MemoryLimit => "memory_limit",
            PolicyErrorKind::Malformed => "malformed",
        }
    }
}

impl fmt::Display for PolicyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call into a policy failed; the host decides without it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyCallError {
    /// The component could not be instantiated (memory or instance limits, engine mismatch).
    #[error("policy {policy}: instantiating the component failed: {message}")]
    Instantiate {
        /// Policy name.
        policy: String,
        /// What failed.
        message: String,
    },
    /// The guest trapped.
    #[error("policy {policy}: the call trapped: {message}")]
    Trap {
        /// Policy name.
        policy: String,
        /// wasmtime's trap code (`UnreachableCodeReached`, ...), when it was a wasm trap.
        code: Option<String>,
        /// The trap's message.
        message: String,
    },
    /// The guest used up its fuel.
    #[error("policy {policy}: the call used up its fuel ({fuel} units)")]
    FuelExhausted {
        /// Policy name.
        policy: String,
        /// The fuel it was given.
        fuel: u64,
    },
    /// The guest ran past the deadline (epoch interruption).
    #[error("policy {policy}: the call ran past its {timeout:?} deadline")]
    Timeout {
        /// Policy name.
        policy: String,
        /// The deadline it was given.
        timeout: Duration,
    },
    /// The guest tried to grow its memory past the cap, then trapped.
    #[error(
        "policy {policy}: the call trapped after its memory growth to {requested_bytes} bytes \
         was refused (cap {limit_bytes} bytes): {message}"
    )]
    MemoryLimit {
        /// Policy name.
        policy: String,
        /// The cap.
        limit_bytes: usize,
        /// The size it asked for.
        requested_bytes: usize,
        /// The trap's message.
        message: String,
    },
    /// The guest's answer fails validation.
    #[error("policy {policy}: malformed decision: {}", .problems.join("; "))]
    Malformed {
        /// Policy name.
        policy: String,
        /// Every problem found.
        problems: Vec<String>,
        /// The answer as the guest gave it (never acted on).
        answer: Box<Decision>,
    },
}

impl PolicyCallError {
    /// The kind of failure.
    pub fn kind(&self) -> PolicyErrorKind {
        match self {
            PolicyCallError::Instantiate { .. } => PolicyErrorKind::Instantiate,
            PolicyCallError::Trap { .. } => PolicyErrorKind::Trap,
            PolicyCallError::FuelExhausted { .. } => PolicyErrorKind::FuelExhausted,
            PolicyCallError::Timeout { .. } => PolicyErrorKind::Timeout,
            PolicyCallError::MemoryLimit { .. } => PolicyErrorKind::MemoryLimit,
            PolicyCallError::Malformed { .. } => PolicyErrorKind::Malformed,
        }
    }

    /// The name of the policy that failed.
    pub fn policy(&self) -> &str {
        match self {
            PolicyCallError::Instantiate { policy, .. }
            | PolicyCallError::Trap { policy, .. }
            | PolicyCallError::FuelExhausted { policy, .. }
            | PolicyCallError::Timeout { policy, .. }
            | PolicyCallError::MemoryLimit { policy, .. }
            | PolicyCallError::Malformed { policy, .. } => policy,
        }
    }
}
