//! How a nested cargo builds policy components: `wasm32-unknown-unknown`, linked by the
//! rustup-bundled `wasm-component-ld` (WASI-free components), profile `policy-guest`, into
//! `<target>/policy-guests`. One file, included by `build.rs` (the embedded default) and by
//! the tests (`testkit/src/guests.rs`), so the command and its environment cannot drift.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target policy components are built for.
pub const GUEST_TARGET: &str = "wasm32-unknown-unknown";
/// The cargo profile they are built with (`Cargo.toml`).
pub const GUEST_PROFILE: &str = "policy-guest";

/// The outer build's flags and wrappers are for the host target (clippy, coverage, a test
/// build's `RUSTFLAGS`); a nested build must not inherit them, or it rebuilds the guests
/// with other flags each time.
pub const INHERITED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_PROFILE_RELEASE_DEBUG",
];

/// `cargo` in `dir` without the outer build's environment; under `flock LOCK` when `lock`
/// is given (never from build.rs: the outer cargo may hold that lock already).
pub fn nested_cargo(dir: &Path, lock: Option<OsString>) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = match lock {
        Some(lock) => {
            let mut command = Command::new("flock");
            command.arg(lock).arg(&cargo);
            command
        }
        None => Command::new(&cargo),
    };
    command.current_dir(dir);
    for inherited in INHERITED_ENV {
        command.env_remove(inherited);
    }
    command
}

/// `cargo build` of `packages` as components into `target_dir` (see [`component_path`]).
pub fn guest_build(
    manifest_dir: &Path,
    target_dir: &Path,
    packages: &[String],
    lock: Option<OsString>,
) -> Command {
    let mut command = nested_cargo(manifest_dir, lock);
    command.args(["build", "--quiet"]);
    for package in packages {
        command.args(["-p", package]);
    }
    command
        .args(["--target", GUEST_TARGET, "--profile", GUEST_PROFILE])
        .arg("--target-dir")
        .arg(target_dir)
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
            "wasm-component-ld",
        );
    command
}

/// Where [`guest_build`] puts the component of `package`.
pub fn component_path(target_dir: &Path, package: &str) -> PathBuf {
    target_dir
        .join(GUEST_TARGET)
        .join(GUEST_PROFILE)
        .join(format!("{}.wasm", package.replace('-', "_")))
}
