//! Host-side bindings of the policy contract, generated from the FROZEN copy of
//! `pgwarden:policy@0.1.0` (`wit/deps/pgwarden-policy-0.1.0/policy.wit`): the host keeps
//! loading guests built against a released version even after `wit/policy.wit` moves on.
//! A single file, so the `deps` folder is not parsed as a second copy of the package.
//!
//! Nothing but the generated code lives here; conversions are in `convert`, the `log` import
//! is implemented in `sandbox`.

wasmtime::component::bindgen!({
    path: "wit/deps/pgwarden-policy-0.1.0/policy.wit",
    world: "policy",
});

/// The contract version these bindings implement.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Component-model name of the import carrying the `log` function.
pub const HOST_INTERFACE: &str = "pgwarden:policy/host@0.1.0";

/// Component-model name of the types-only interface a guest may import.
pub const TYPES_INTERFACE: &str = "pgwarden:policy/types@0.1.0";

/// Component-model name of the export the host calls.
pub const DECIDER_INTERFACE: &str = "pgwarden:policy/decider@0.1.0";

/// The package every import must come from.
pub const PACKAGE_PREFIX: &str = "pgwarden:policy/";
