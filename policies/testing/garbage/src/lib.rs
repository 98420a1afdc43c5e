//! Test guest for the policy host: `decide` answers a decision that is well typed but
//! semantically malformed: a preference naming members that do not exist and naming one
//! twice, a synchronous set naming a non-member, and an absurd wait delay. The host's
//! validation must refuse it and fall back to the native default.

use pgwarden_policy::{ClusterView, Decision, Event, Fence, Info, Policy, Race, Wait};

/// A member name no test view contains.
pub const GHOST: &str = "ghost-member";

/// Answers nonsense.
pub struct Garbage;

impl Policy for Garbage {
    fn info() -> Info {
        Info {
            name: "garbage".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "test guest: decide answers a malformed decision".into(),
        }
    }

    fn decide(_event: &Event, view: &ClusterView) -> Decision {
        Decision {
            race: Race::Wait(Wait {
                delay_ms: u64::MAX,
                reason: "wait forever".into(),
            }),
            preference: vec![GHOST.into(), view.me.clone(), view.me.clone()],
            fence: Fence::None,
            sync_standbys: Some(vec![format!("{GHOST}-sync")]),
        }
    }
}

#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(Garbage);
