//! Test guest for the policy host: a component that implements the `pgwarden:policy`
//! decider but also imports `wasi:random/random@0.2.0`. The host must refuse it at load,
//! naming the import. Only the `wasm32` build has content; natively this crate is empty.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: ["../../../wit/deps/pgwarden-policy-0.1.0/policy.wit", "wit"],
        world: "pgwarden-testing:wasi-import/policy-with-wasi",
        generate_all,
    });

    use exports::pgwarden::policy::decider::Guest;
    use pgwarden::policy::types::{ClusterView, Decision, Event, Fence, Info, Race};

    struct WasiImport;

    impl Guest for WasiImport {
        fn metadata() -> Info {
            Info {
                name: "wasi-import".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: "test guest: imports wasi:random".into(),
            }
        }

        fn decide(_event: Event, _view: ClusterView) -> Decision {
            let roll = wasi::random::random::get_random_u64();
            Decision {
                race: Race::StandDown(format!("rolled {roll}")),
                preference: Vec::new(),
                fence: Fence::None,
                sync_standbys: None,
            }
        }
    }

    export!(WasiImport);
}
