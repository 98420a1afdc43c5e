//! The policy host: loads failover policy components (wasmtime, component model), calls them
//! with limits, falls back to the native default when they fail, runs a shadow beside the
//! active one, and records traces. Decisions it returns still pass the core's invariant gate.

/// The default policy component (`policies/default`), built by `build.rs`.
pub const DEFAULT_POLICY_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/default_policy.wasm"));
