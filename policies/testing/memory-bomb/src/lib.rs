//! Test guest for the policy host: `decide` allocates 1 MiB chunks, touching every page,
//! until the allocation fails. The host's memory cap must stop it (a denied `memory.grow`,
//! then the allocator's abort traps), and the host must keep working.

use pgwarden_policy::{ClusterView, Decision, Event, Info, Policy};

/// Size of one allocation.
const CHUNK: usize = 1 << 20;
/// Bytes between two touched bytes (one wasm page).
const PAGE: usize = 64 * 1024;

/// Grows its heap forever.
pub struct MemoryBomb;

impl Policy for MemoryBomb {
    fn info() -> Info {
        Info {
            name: "memory-bomb".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "test guest: decide allocates memory forever".into(),
        }
    }

    fn decide(_event: &Event, _view: &ClusterView) -> Decision {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            for offset in (0..CHUNK).step_by(PAGE) {
                chunk[offset] = 1;
            }
            chunks.push(std::hint::black_box(chunk));
        }
    }
}

#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(MemoryBomb);
