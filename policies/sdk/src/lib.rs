//! SDK for pgwarden failover policies.
//!
//! A policy is a type implementing [`Policy`]: a pure function from one [`Event`] and an
//! immutable [`ClusterView`] to a [`Decision`]. The same code runs natively (unit tests, the
//! agent's fallback, the simulation) and as a WebAssembly component: a guest crate enables the
//! `guest` feature and calls [`export_policy!`], then builds for `wasm32-unknown-unknown`
//! with `linker = "wasm-component-ld"`. The contract is `wit/policy.wit`
//! (`pgwarden:policy@0.1.0`); the types here mirror it field for field.

mod types;

#[cfg(feature = "testing")]
pub mod testing;

pub use types::*;

/// The version of the contract this SDK implements.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// A failover policy: stateless, deterministic, given everything it may look at.
pub trait Policy {
    /// Name, version and description.
    fn info() -> Info;

    /// Decide on one event.
    fn decide(event: &Event, view: &ClusterView) -> Decision;
}

/// Write a line to the agent's log (a no-op outside a component, e.g. in native tests).
pub fn log(level: Level, message: &str) {
    #[cfg(all(feature = "guest", target_arch = "wasm32"))]
    {
        use bindings::pgwarden::policy::host;
        let level = match level {
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(all(feature = "guest", target_arch = "wasm32")))]
    {
        let _ = (level, message);
    }
}

/// Generated component bindings (the `guest` feature).
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/policy.wit",
        world: "policy",
        pub_export_macro: true,
        default_bindings_module: "pgwarden_policy::bindings",
    });
}

#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod glue;

/// Export a [`Policy`] implementation as the component's `decider`.
///
/// ```ignore
/// struct MyPolicy;
/// impl pgwarden_policy::Policy for MyPolicy { /* ... */ }
/// pgwarden_policy::export_policy!(MyPolicy);
/// ```
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[doc(hidden)]
        pub struct PgwardenPolicyExport;

        impl $crate::bindings::exports::pgwarden::policy::decider::Guest for PgwardenPolicyExport {
            fn metadata() -> $crate::bindings::pgwarden::policy::types::Info {
                $crate::glue::info_to_wit(<$policy as $crate::Policy>::info())
            }

            fn decide(
                event: $crate::bindings::pgwarden::policy::types::Event,
                view: $crate::bindings::pgwarden::policy::types::ClusterView,
            ) -> $crate::bindings::pgwarden::policy::types::Decision {
                let event = $crate::glue::event_from_wit(event);
                let view = $crate::glue::view_from_wit(view);
                $crate::glue::decision_to_wit(<$policy as $crate::Policy>::decide(&event, &view))
            }
        }

        $crate::bindings::export!(PgwardenPolicyExport with_types_in $crate::bindings);
    };
}
