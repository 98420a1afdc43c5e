//! Builds the default policy component (`policies/default`) and hands it to the agent, which
//! embeds it: a plain `cargo build` of a clean checkout yields an agent that has its default
//! policy, and no binary artifact is committed.
//!
//! The guest is built by a nested cargo for `wasm32-unknown-unknown`, linked with the
//! rustup-bundled `wasm-component-ld` (a WASI-free component), into its own target
//! directory so it neither fights the outer build's lock nor inherits its flags.

use std::env;
use std::path::{Path, PathBuf};

#[path = "build/guest_build.rs"]
#[allow(dead_code)] // the tests use the rest of it
mod guest_build;

fn main() {
    for watched in [
        "policies/sdk",
        "policies/default",
        "wit/policy.wit",
        "Cargo.lock",
        "build/guest_build.rs",
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
    let mut command =
        guest_build::guest_build(manifest_dir, target_dir, &[package.to_string()], None);
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build the {package} policy component: {e}"));
    if !status.success() {
        panic!(
            "building the {package} policy component failed ({status}). It needs the \
             wasm32-unknown-unknown target: `rustup target add wasm32-unknown-unknown`."
        );
    }
    guest_build::component_path(target_dir, package)
}
