//! Test guest for the policy host: `decide` panics. Built with `panic = "abort"` (the
//! `policy-guest` profile), the panic is a wasm trap; the host must report it, fall back to
//! the native default, and keep working. It logs one line first (the only test guest that
//! uses the host's `log` import).

use pgwarden_policy::{ClusterView, Decision, Event, Info, Level, Policy};

/// Panics on every decision.
pub struct Trap;

impl Policy for Trap {
    fn info() -> Info {
        Info {
            name: "trap".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "test guest: decide panics (a trap)".into(),
        }
    }

    fn decide(event: &Event, _view: &ClusterView) -> Decision {
        // The one guest that logs, so the host's `log` import is linked and called for real.
        pgwarden_policy::log(Level::Warn, "trap test guest: about to panic");
        panic!("trap test guest: deliberate panic on {}", event.kind())
    }
}

#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(Trap);
