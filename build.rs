//! Builds the default policy component (`policies/default`) and hands it to the agent, which
//! embeds it: a plain `cargo build` of a clean checkout yields an agent that has its default
//! policy, and no binary artifact is committed.
//!
//! The guest is built by a nested cargo for `wasm32-unknown-unknown`, linked with the
//! rustup-bundled `wasm-component-ld` (a WASI-free component), into its own target
//! directory so it neither fights the outer build's lock nor inherits its flags.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-unknown-unknown";
const GUEST_PROFILE: &str = "policy-guest";

fn main() {
    for watched in [
        "policies/sdk",
        "policies/default",
        "wit/policy.wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guest_target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target"))
        .join("policy-guests");
    let component = build_guest(
        &manifest_dir,
        &guest_target_dir,
        "pgwarden-policy-default-component",
    );
    let embedded = out_dir.join("default_policy.wasm");
    std::fs::copy(&component, &embedded).unwrap_or_else(|e| {
        panic!(
            "copying {} to {}: {e}",
            component.display(),
            embedded.display()
        )
    });
}

fn build_guest(manifest_dir: &Path, target_dir: &Path, package: &str) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(manifest_dir)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--target",
            GUEST_TARGET,
            "--profile",
            GUEST_PROFILE,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
            "wasm-component-ld",
        );
    // The outer build's flags and wrappers (clippy, coverage) are for the host target.
    for inherited in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(inherited);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build the {package} policy component: {e}"));
    if !status.success() {
        panic!(
            "building the {package} policy component failed ({status}). It needs the \
             wasm32-unknown-unknown target: `rustup target add wasm32-unknown-unknown`."
        );
    }
    let file = format!("{}.wasm", package.replace('-', "_"));
    target_dir.join(GUEST_TARGET).join(GUEST_PROFILE).join(file)
}
