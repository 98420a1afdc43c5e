//! Dashboards stay honest: every metric a panel queries is one the agent exports.

use std::collections::BTreeSet;

use pgwarden::api::metrics::METRIC_NAMES;

fn metric_names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            current.push(c);
        } else {
            if current.starts_with("patroni_") || current.starts_with("pgwarden_") {
                names.push(current.clone());
            }
            current.clear();
        }
    }
    names
}

#[test]
fn every_dashboard_metric_is_exported() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut used = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                .expect("dashboard is JSON");
        for panel in doc["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                used.extend(metric_names_in(target["expr"].as_str().unwrap_or_default()));
            }
        }
    }
    assert!(!used.is_empty(), "no metrics found in dashboards/");
    let unknown: Vec<_> = used
        .iter()
        .filter(|m| !METRIC_NAMES.contains(&m.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "dashboards query metrics the agent does not export: {unknown:?}"
    );
}
