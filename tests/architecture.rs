//! The core is pure: nothing under `src/core` may import an IO crate, read a clock or do
//! async work. This test reads the sources, so a violation fails CI, not just review.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "etcd_client",
    "tokio_postgres",
    "wasmtime",
    "axum",
    "hyper",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "crate::runtime",
    "crate::dcs",
    "crate::postgres",
    "crate::api",
    "Instant::now",
    "SystemTime::now",
    "async fn",
    ".await",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/core") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_imports_no_io_and_reads_no_clock() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core"),
        &mut files,
    );
    assert!(
        files.len() > 5,
        "expected the core's modules, found {files:?}"
    );
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    violations.push(format!(
                        "{}:{}: `{word}` in `{}`",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "src/core must stay pure:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_catches_a_violation() {
    // Guard against a checker that passes vacuously.
    let sample = "use tokio::sync::mpsc;";
    assert!(FORBIDDEN.iter().any(|w| sample.contains(w)));
}
