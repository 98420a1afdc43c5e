//! `pgwardenctl edit-config`'s pure part: patronictl's `-s key.path=value` and
//! `-p parameter=value` edits, the merge of a YAML file (`--apply`, `--replace`), the
//! YAML an operator edits and the unified diff shown before anything is written.

use serde_json::{Map, Value};

/// One `-s` pair applied to `config` as patronictl applies it: the dotted path names
/// nested keys, except below `postgresql.parameters`, where a parameter's name may itself
/// hold dots (`pg_stat_statements.max`); the value is read as YAML; an empty value or
/// `null` removes the key, and a mapping left empty goes too.
pub fn set_pair(config: &mut Value, pair: &str) -> Result<(), String> {
    let Some((path, raw)) = pair.split_once('=').filter(|_| !pair.is_empty()) else {
        return Err(format!("Invalid parameter setting {pair}"));
    };
    let path: Vec<&str> = path.trim().split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "Invalid parameter setting {pair}: an empty key in the path"
        ));
    }
    let value = yaml_value(raw).map_err(|e| format!("Invalid parameter setting {pair}: {e}"))?;
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    set_path(config, &path, value, &[]);
    Ok(())
}

/// `-p name=value`: a `-s` pair below `postgresql.parameters`.
pub fn pg_pair(pair: &str) -> String {
    format!("postgresql.parameters.{}", pair.trim_start())
}

fn set_path(config: &mut Value, path: &[&str], value: Value, prefix: &[&str]) {
    let Value::Object(map) = config else {
        return;
    };
    let joined;
    let path: Vec<&str> = if prefix == ["postgresql", "parameters"] {
        joined = path.join(".");
        vec![joined.as_str()]
    } else {
        path.to_vec()
    };
    let key = path[0];
    if path.len() == 1 {
        if value.is_null() {
            map.remove(key);
        } else {
            map.insert(key.to_string(), value);
        }
        return;
    }
    let child = map.entry(key.to_string()).or_insert(Value::Null);
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    let mut deeper = prefix.to_vec();
    deeper.push(key);
    set_path(child, &path[1..], value, &deeper);
    if child.as_object().is_some_and(Map::is_empty) {
        map.remove(key);
    }
}

/// A value as patronictl's YAML loader reads it: YAML 1.1, so `on`, `off`, `yes` and `no`
/// are booleans (what Patroni then stores), and an empty value is null.
pub fn yaml_value(raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    let yaml_1_1_bool = match trimmed {
        "on" | "On" | "ON" | "yes" | "Yes" | "YES" => Some(true),
        "off" | "Off" | "OFF" | "no" | "No" | "NO" => Some(false),
        _ => None,
    };
    if let Some(b) = yaml_1_1_bool {
        return Ok(Value::Bool(b));
    }
    if trimmed.is_empty() {
        return Ok(Value::Null);
    }
    yaml_serde::from_str::<Value>(raw).map_err(|e| e.to_string())
}

/// A YAML document (`--apply`, `--replace`) merged into `config` as Patroni's
/// `patch_config` merges: mappings key by key, `null` removes, anything else replaces.
pub fn apply_document(config: Value, text: &str, source: &str) -> Result<Value, String> {
    let patch: Value = yaml_serde::from_str(text).map_err(|e| format!("{source}: {e}"))?;
    match patch {
        Value::Null => Ok(config),
        Value::Object(_) => Ok(crate::api::config::merge_patch(config, &patch)),
        other => Err(format!("{source}: expected a mapping, not {other}")),
    }
}

/// The configuration as the operator reads and edits it.
pub fn to_yaml(config: &Value) -> String {
    super::yaml::dump(config)
}

/// patronictl's unified diff of two YAML texts (no file names, three lines of context).
pub fn unified_diff(before: &str, after: &str) -> String {
    let with_newline = |s: &str| format!("{}\n", s.trim_end_matches('\n'));
    let (before, after) = (with_newline(before), with_newline(after));
    let diff = similar::TextDiff::from_lines(&before, &after);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header("", "")
        .to_string();
    text.lines().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_set_nested_keys_and_parameters_with_dots() {
        let mut config = json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}});
        set_pair(&mut config, "ttl=20").expect("ttl");
        set_pair(&mut config, &pg_pair("pg_stat_statements.max=5000")).expect("dotted");
        set_pair(&mut config, &pg_pair("synchronous_commit=on")).expect("on");
        set_pair(&mut config, "postgresql.use_pg_rewind=true").expect("bool");
        set_pair(&mut config, "tags.zone=").expect("empty removes");
        assert_eq!(
            config,
            json!({"ttl": 20, "postgresql": {"use_pg_rewind": true, "parameters": {
                "work_mem": "4MB", "pg_stat_statements.max": 5000, "synchronous_commit": true}}})
        );
        set_pair(&mut config, &pg_pair("work_mem=null")).expect("null removes");
        set_pair(&mut config, &pg_pair("pg_stat_statements.max=")).expect("removes");
        set_pair(&mut config, &pg_pair("synchronous_commit=")).expect("removes");
        assert_eq!(
            config["postgresql"].get("parameters"),
            None,
            "emptied mappings go"
        );
        for bad in ["ttl", "", "=3", "a..b=1"] {
            assert!(set_pair(&mut config, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn documents_merge_and_null_removes() {
        let config = json!({"ttl": 30, "loop_wait": 10, "postgresql": {"parameters": {"a": 1}}});
        let merged = apply_document(
            config,
            "loop_wait: null\npostgresql:\n  parameters:\n    b: 2\n",
            "f",
        )
        .expect("merges");
        assert_eq!(
            merged,
            json!({"ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}}})
        );
        assert!(apply_document(json!({}), "- a\n", "f").is_err());
    }

    #[test]
    fn the_diff_is_difflibs() {
        let before = to_yaml(&json!({"loop_wait": 10, "retry_timeout": 10, "ttl": 30}));
        let after = to_yaml(&json!({"loop_wait": 10, "retry_timeout": 10, "ttl": 20}));
        assert_eq!(
            unified_diff(&before, &after),
            "--- \n+++ \n@@ -1,3 +1,3 @@\n loop_wait: 10\n retry_timeout: 10\n-ttl: 30\n+ttl: 20"
        );
    }
}
