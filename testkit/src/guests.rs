//! The policy test guests (`policies/testing/*`), built as components once per test process
//! with the same command as every policy component: `wasm32-unknown-unknown`, linked by
//! `wasm-component-ld`, profile `policy-guest`, target dir `<target>/policy-guests`.
//!
//! Other policy crates of the workspace (`zone-aware`, `always-promote`, ...) are built the
//! same way the first time a test asks for their path.
//!
//! Honours `CARGO_TARGET_DIR`. When `PGWARDEN_CARGO_LOCK` is set, the nested cargo runs under
//! `flock $PGWARDEN_CARGO_LOCK` (leave it unset when the outer cargo already holds that lock,
//! or the build waits for itself).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

#[path = "../../build/guest_build.rs"]
pub mod guest_build;

/// Every test guest, by directory name (package `pgwarden-policy-<name>`).
pub const GUESTS: [&str; 5] = [
    "infinite-loop",
    "memory-bomb",
    "trap",
    "garbage",
    "wasi-import",
];

/// Where the guests are; [`path`](Guests::path) builds any other policy crate on demand.
pub struct Guests {
    target_dir: PathBuf,
    others: Mutex<BTreeSet<String>>,
}

impl Guests {
    /// The component file of the policy named `name` (package `pgwarden-policy-<name>`):
    /// one of [`GUESTS`], already built, or another policy crate of the workspace
    /// (`zone-aware`, `always-promote`, ...), built on first use.
    pub fn path(&self, name: &str) -> PathBuf {
        if !GUESTS.contains(&name) {
            let mut built = self.others.lock().unwrap_or_else(|e| e.into_inner());
            if !built.contains(name) {
                cargo_build(&self.target_dir, &[name]);
                built.insert(name.to_string());
            }
        }
        let path =
            guest_build::component_path(&self.target_dir, &format!("pgwarden-policy-{name}"));
        assert!(path.is_file(), "{} was not built", path.display());
        path
    }
}

/// Build every test guest (once per process) and return where they are.
pub fn guests() -> &'static Guests {
    static BUILT: OnceLock<Guests> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target_dir = target_dir();
        cargo_build(&target_dir, &GUESTS);
        Guests {
            target_dir,
            others: Mutex::new(BTreeSet::new()),
        }
    })
}

fn manifest_dir() -> &'static Path {
    super::process::repo_root()
}

/// `${CARGO_TARGET_DIR:-<repo>/target}/policy-guests`, as build.rs uses it.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                manifest_dir().join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| manifest_dir().join("target"))
        .join("policy-guests")
}

/// Build `names` (packages `pgwarden-policy-<name>`) as components in one cargo run.
fn cargo_build(target_dir: &Path, names: &[&str]) {
    let packages: Vec<String> = names
        .iter()
        .map(|name| format!("pgwarden-policy-{name}"))
        .collect();
    let mut command = guest_build::guest_build(
        manifest_dir(),
        target_dir,
        &packages,
        std::env::var_os("PGWARDEN_CARGO_LOCK"),
    );
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running {command:?} to build policy components: {e}"));
    assert!(
        status.success(),
        "building the policy components {names:?} failed ({status}): {command:?}"
    );
}
