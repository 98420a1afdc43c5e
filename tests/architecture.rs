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

/// Every source file of `src/core`.
fn core_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core"),
        &mut files,
    );
    files
}

/// What `code` (one line, comments removed) uses of [`FORBIDDEN`]: the words it contains,
/// and the IO modules of a grouped `std::{...}` import (`use std::{fs, io}` names no
/// `std::fs`).
fn forbidden_in(code: &str) -> Vec<String> {
    let mut found: Vec<String> = FORBIDDEN
        .iter()
        .filter(|word| code.contains(*word))
        .map(|word| word.to_string())
        .collect();
    let mut rest = code;
    while let Some(start) = rest.find("std::{") {
        let group = &rest[start + "std::{".len()..];
        let inner = group.split('}').next().unwrap_or_default();
        for item in inner.split(',') {
            let module = item.trim().split("::").next().unwrap_or_default();
            let word = format!("std::{module}");
            if FORBIDDEN.contains(&word.as_str()) && !found.contains(&word) {
                found.push(word);
            }
        }
        rest = group;
    }
    found
}

/// Every use of a [`FORBIDDEN`] word in the Rust files under `dir`, as `file:line: ...`.
fn violations_in(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in forbidden_in(code) {
                violations.push(format!(
                    "{}:{}: `{word}` in `{}`",
                    file.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    violations
}

#[test]
fn core_imports_no_io_and_reads_no_clock() {
    let files = core_files();
    assert!(
        files.len() > 5,
        "expected the core's modules, found {files:?}"
    );
    let violations = violations_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core"));
    assert!(
        violations.is_empty(),
        "src/core must stay pure:\n{}",
        violations.join("\n")
    );
}

/// The scanner itself, on a fixture tree with one forbidden use per file (one nested a
/// directory down, one in a grouped import) and a mention in a comment that is allowed.
#[test]
fn the_checker_catches_a_violation() {
    let dir = tempfile::tempdir().expect("fixture dir");
    let nested = dir.path().join("nested");
    std::fs::create_dir(&nested).expect("mkdir");
    let fixture = [
        (dir.path().join("io.rs"), "use tokio::sync::mpsc;\n"),
        (
            dir.path().join("clock.rs"),
            "// Instant::now is fine in a comment\nfn f() { let _ = std::time::Instant::now(); }\n",
        ),
        (
            nested.join("grouped.rs"),
            "use std::{collections::BTreeMap, fs};\n",
        ),
        (
            dir.path().join("pure.rs"),
            "pub fn add(a: u32, b: u32) -> u32 { a + b }\n",
        ),
    ];
    for (path, text) in &fixture {
        std::fs::write(path, text).expect("write fixture");
    }
    let found: Vec<String> = violations_in(dir.path())
        .iter()
        .map(|v| {
            let (file, rest) = v.split_once(':').expect("file:line");
            let name = Path::new(file).file_name().expect("name").to_string_lossy();
            format!("{name}:{}", rest.split(" in ").next().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        found,
        vec![
            "clock.rs:2: `Instant::now`".to_string(),
            "io.rs:1: `tokio`".to_string(),
            "grouped.rs:1: `std::fs`".to_string(),
        ],
        "the scanner finds each forbidden use, and only those"
    );
}

/// Lines of `src/core` that build a transition by hand: outside `Agent::go` there may be
/// none, so every transition names its `Why` (and the table in docs/state-machine.md is
/// complete).
fn hand_made_transitions(text: &str) -> Vec<(usize, String)> {
    let mut inside_go = false;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        if code.contains("fn go(") {
            inside_go = true;
        } else if inside_go && code.contains("fn ") {
            inside_go = false;
        }
        if code.contains("Transition(") && !code.contains("TransitionRecord") && !inside_go {
            found.push((n + 1, line.trim().to_string()));
        }
    }
    found
}

#[test]
fn every_transition_goes_through_go_with_a_why() {
    let files = core_files();
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in hand_made_transitions(&text) {
            // `match outcome { .. Transition(_) => .. }` inspects, it does not build one.
            if line.contains("Transition(_)") {
                continue;
            }
            violations.push(format!("{}:{n}: {line}", file.display()));
        }
    }
    assert!(
        violations.is_empty(),
        "build transitions with `self.go(State::x(), Why::..)`:\n{}",
        violations.join("\n")
    );
    // The checker itself finds one, also right after `go`.
    let sample = "fn f() {\n    Transition(State::replica())\n}\n";
    assert_eq!(hand_made_transitions(sample).len(), 1);
    let after_go =
        "fn go(&mut self) {\n    Transition(to)\n}\npub fn g() {\n    Transition(State::x())\n}\n";
    assert_eq!(hand_made_transitions(after_go).len(), 1);
}

/// The modules of `src/core` a module names (`super::x`, `crate::core::x`), from its source.
fn core_imports(text: &str, modules: &[String]) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    for line in text.lines() {
        // Doc comments and comments may mention a module without depending on it.
        let code = line.split("//").next().unwrap_or_default();
        for prefix in ["super::", "crate::core::"] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// A cycle in `graph`, if any, as the list of modules along it.
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

/// The core's modules import each other without a cycle: each can be read, tested and
/// changed from the bottom up (the policy protocol, the facts, the rules, then the machine).
#[test]
fn core_modules_import_each_other_without_cycles() {
    let files = core_files();
    let modules: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str().map(str::to_string))
        .filter(|m| m != "mod")
        .collect();
    let mut graph = std::collections::BTreeMap::new();
    for file in &files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if name == "mod" {
            continue; // the node itself: it may use every module
        }
        let text = std::fs::read_to_string(file).expect("read source");
        let mut imports = core_imports(&text, &modules);
        imports.remove(name);
        graph.insert(name.to_string(), imports);
    }
    assert!(graph.len() > 5, "expected the core's modules: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("src/core has an import cycle: {}", cycle.join(" -> "));
    }
    // The checker finds one.
    let mut sample = std::collections::BTreeMap::new();
    sample.insert("a".to_string(), ["b".to_string()].into());
    sample.insert("b".to_string(), ["a".to_string()].into());
    assert!(find_cycle(&sample).is_some());
}

/// The fields of `pub struct <name>` in `text`: lines `pub <field>:` between its `{` and `}`.
fn struct_fields(text: &str, name: &str) -> Vec<String> {
    let start = text
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("no `pub struct {name}`"));
    let body = &text[start..];
    let end = body.find("\n}").expect("the struct's closing brace");
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|line| {
            let field = line.trim().strip_prefix("pub ")?.split(':').next()?;
            Some(field.trim().to_string())
        })
        .collect()
}

/// The statig context stays small: facts, outbox and owned parts, at most 15 fields. A flag
/// a state needs belongs to that state (state-local data, like the candidate's `Race`), or
/// to the part whose bookkeeping it is (`core/parts.rs`); a new field here is the sign of
/// a flag set and reset by hand again.
#[test]
fn the_agent_is_facts_an_outbox_and_owned_parts() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core/agent.rs"))
            .expect("read src/core/agent.rs");
    let fields = struct_fields(&text, "Agent");
    assert!(
        fields.len() <= 15,
        "Agent has {} fields, at most 15 are allowed: {fields:?}",
        fields.len()
    );
    assert!(fields.contains(&"facts".to_string()), "{fields:?}");
    // The checker itself: a struct over the limit is counted as such.
    let many: String = (0..16).map(|i| format!("    pub f{i}: bool,\n")).collect();
    let sample = format!("pub struct Agent {{\n{many}}}\n");
    assert_eq!(struct_fields(&sample, "Agent").len(), 16);
}
