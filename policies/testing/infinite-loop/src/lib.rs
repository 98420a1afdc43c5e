//! Test guest for the policy host: `decide` never returns. The host must cut the call off
//! (fuel or epoch deadline), fall back to the native default, and keep working.

use pgwarden_policy::{ClusterView, Decision, Event, Info, Policy};

/// Spins forever.
pub struct InfiniteLoop;

impl Policy for InfiniteLoop {
    fn info() -> Info {
        Info {
            name: "infinite-loop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "test guest: decide never returns".into(),
        }
    }

    fn decide(_event: &Event, view: &ClusterView) -> Decision {
        // `black_box` keeps the optimizer from proving the loop side-effect free.
        let mut counter = view.now_ms;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(InfiniteLoop);
