//! The policy host: loads failover policy components (wasmtime, component model), calls them
//! with limits, falls back to the native default when they fail, runs a shadow beside the
//! active one, and records traces. Decisions it returns still pass the core's invariant gate.
//!
//! - `bindings`: `bindgen!` of the frozen contract (`wit/deps/pgwarden-policy-0.1.0`).
//! - `convert`: SDK types ⇄ generated types.
//! - `engine`: the wasmtime engine, limits, and one call in a fresh store.
//! - `ticker`: the epoch ticker behind the wall-time deadline.
//! - `sandbox`: a call's store data (resource limiter, the `log` import).
//! - `loader`: digest, import allow-list, linking, metadata.
//! - `validate`: semantic sanity of an answer.
//! - `compare`: where two decisions differ.
//! - `host`: [`PolicyHost`] (active, fallback, shadow, counters).
//! - `trace`: JSON-lines decision traces.

mod bindings;
mod compare;
mod convert;
mod engine;
mod error;
mod host;
mod loader;
mod sandbox;
mod ticker;
mod trace;
mod validate;

pub use bindings::CONTRACT_VERSION;
pub use compare::{decision_differences, FENCE, PREFERENCE, RACE, SYNC_STANDBYS};
pub use engine::{Metered, PolicyEngine, PolicyLimits};
pub use error::{PolicyCallError, PolicyEngineError, PolicyErrorKind, PolicyLoadError};
pub use host::{ErrorCounts, PolicyCounters, PolicyHost, ShadowReport, Source, Verdict, OUTCOME};
pub use loader::{
    normalize_digest, sha256_hex, LoadedPolicy, PolicyInfo, ALLOWED_IMPORTS, EMBEDDED_DEFAULT_LABEL,
};
pub use trace::{read_trace, TraceFileError, TraceRecord, TraceSource, TraceWriter, TracedFailure};
pub use validate::decision_problems;

/// The default policy component (`policies/default`), built by `build.rs`.
pub const DEFAULT_POLICY_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/default_policy.wasm"));
