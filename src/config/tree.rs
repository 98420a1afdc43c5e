//! The untyped document: YAML text to a JSON tree, a section reader that remembers which
//! keys were consumed (so the rest can be reported as unknown), and scalar coercions that
//! accept what Patroni's YAML loader would (numbers written as strings, `on`/`off` booleans).
//!
//! It knows nothing about which keys exist; the typed builders in the sibling modules decide.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::{join, ConfigError};

/// Parses YAML text into a JSON tree. `source` names the text in errors (a file path or
/// `<yaml>`). Merge keys (`<<: *anchor`) are resolved, as PyYAML does for Patroni.
pub(crate) fn yaml_to_json(text: &str, source: &str) -> Result<Value, ConfigError> {
    let mut doc: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| yaml_error(source, &e))?;
    doc.apply_merge().map_err(|e| yaml_error(source, &e))?;
    convert(&doc, "")
}

fn yaml_error(source: &str, e: &yaml_serde::Error) -> ConfigError {
    // yaml_serde's message already ends with "at line L column C" when it knows the
    // position; prefix it anyway so the position is always first and easy to spot.
    match e.location() {
        Some(loc) => ConfigError::new(
            source,
            format!(
                "invalid YAML at line {}, column {}: {e}",
                loc.line(),
                loc.column()
            ),
        ),
        None => ConfigError::new(source, format!("invalid YAML: {e}")),
    }
}

fn convert(v: &yaml_serde::Value, path: &str) -> Result<Value, ConfigError> {
    use yaml_serde::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match serde_json::Number::from_f64(f) {
                    Some(num) => Value::Number(num),
                    None => {
                        return Err(ConfigError::new(
                            display_path(path),
                            format!("{n} is not a finite number"),
                        ))
                    }
                }
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{}[{i}]", display_path(path))))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    // PyYAML turns `1:` into an int key and Patroni then looks keys up by
                    // string, so such keys are unusable there; stringify instead of failing.
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(ConfigError::new(
                            display_path(path),
                            format!("mapping key {other:?} is not a string"),
                        ))
                    }
                };
                let child = convert(val, &join(path, &key))?;
                out.insert(key, child);
            }
            Value::Object(out)
        }
        // Custom tags carry no meaning for Patroni's safe_load either; use the tagged value.
        Y::Tagged(t) => convert(&t.value, path)?,
    })
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.to_string()
    }
}

/// Renders a value for an error message: strings quoted, long values shortened.
pub(crate) fn render(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "<unprintable>".to_string());
    if s.chars().count() > 80 {
        let head: String = s.chars().take(77).collect();
        format!("{head}...")
    } else {
        s
    }
}

/// A mapping being read key by key. Keys never asked for are reported by [`Section::finish`]
/// as unknown; keys listed with [`Section::unsupported`] as accepted-but-not-supported.
pub(crate) struct Section<'a> {
    path: String,
    map: &'a Map<String, Value>,
    used: BTreeSet<String>,
    unsupported: Vec<String>,
}

impl<'a> Section<'a> {
    /// Opens `v` as a mapping at `path`; `null` (an empty YAML section) reads as empty.
    pub(crate) fn new(path: &str, v: &'a Value) -> Result<Self, ConfigError> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let map = match v {
            Value::Object(m) => m,
            Value::Null => EMPTY.get_or_init(Map::new),
            other => {
                return Err(ConfigError::new(
                    display_path(path),
                    format!("expected a mapping, found {}", render(other)),
                ))
            }
        };
        Ok(Section {
            path: path.to_string(),
            map,
            used: BTreeSet::new(),
            unsupported: Vec::new(),
        })
    }

    /// The dotted path of `key` in this section.
    pub(crate) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Whether `key` is present at all, even as null (does not consume it).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Whether `key` is present with a non-null value (does not consume it).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// Consumes `key`; `None` when absent or null (Patroni treats `key:` as unset).
    pub(crate) fn get(&mut self, key: &str) -> Option<&'a Value> {
        self.used.insert(key.to_string());
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Consumes `key` and opens it as a nested mapping.
    pub(crate) fn section(&mut self, key: &str) -> Result<Option<Section<'a>>, ConfigError> {
        let path = self.key_path(key);
        match self.get(key) {
            None => Ok(None),
            Some(v) => Section::new(&path, v).map(Some),
        }
    }

    /// Marks Patroni keys pgwarden accepts but does not act on yet.
    pub(crate) fn unsupported(&mut self, keys: &[&str]) {
        for key in keys {
            if self.map.contains_key(*key) && self.used.insert((*key).to_string()) {
                self.unsupported.push((*key).to_string());
            }
        }
    }

    /// Emits warnings for unsupported and unknown keys.
    pub(crate) fn finish(self, warnings: &mut Vec<String>) {
        for key in &self.unsupported {
            warnings.push(format!(
                "key `{}` accepted but not yet supported by pgwarden; it has no effect",
                join(&self.path, key)
            ));
        }
        for key in self.map.keys() {
            if !self.used.contains(key) {
                warnings.push(format!("unknown key `{}` ignored", join(&self.path, key)));
            }
        }
    }
}

/// A string; numbers are accepted and rendered as written (YAML `name: 1` is the name "1").
pub(crate) fn string(path: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ConfigError::new(
            path,
            format!("expected a string, found {}", render(other)),
        )),
    }
}

/// Like [`string`] but never echoes the value: used for passwords.
pub(crate) fn secret(path: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(ConfigError::new(
            path,
            "expected a string (value not shown because it is a secret)",
        )),
    }
}

/// A boolean. Strings and 0/1 are accepted the way Patroni's `parse_bool` does, because
/// YAML 1.1 files written for PyYAML use `on`/`yes` and our YAML 1.2 parser reads those
/// as strings.
pub(crate) fn boolean(path: &str, v: &Value) -> Result<bool, ConfigError> {
    let parsed = match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool_str(s),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| {
        ConfigError::new(
            path,
            format!(
                "{} is not a boolean (expected true/false, on/off or yes/no)",
                render(v)
            ),
        )
    })
}

/// Parses a boolean word; `None` when it is not one.
pub(crate) fn parse_bool_str(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A signed integer, from a YAML number or a string of digits (Patroni calls `int()`).
/// `what` completes "is not ...", e.g. "a whole number of seconds".
pub(crate) fn integer(path: &str, v: &Value, what: &str) -> Result<i64, ConfigError> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| ConfigError::new(path, format!("{} is not {what}", render(v))))
}

/// A non-negative integer; negative values get the same message as non-numbers.
pub(crate) fn whole(path: &str, v: &Value, what: &str) -> Result<u64, ConfigError> {
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| ConfigError::new(path, format!("{} is not {what}", render(v))))
}

/// A non-negative integer that fits in `u32`.
pub(crate) fn whole_u32(path: &str, v: &Value, what: &str) -> Result<u32, ConfigError> {
    let n = whole(path, v, what)?;
    u32::try_from(n).map_err(|_| ConfigError::new(path, format!("{n} is too large for {what}")))
}

/// A list of strings: a YAML sequence, or (when `comma` is set) a comma-separated string
/// as Patroni accepts for `etcd3.hosts` and list-valued environment variables.
pub(crate) fn string_list(path: &str, v: &Value, comma: bool) -> Result<Vec<String>, ConfigError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(&format!("{path}[{i}]"), item))
            .collect(),
        Value::String(s) if comma => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()),
        other => Err(ConfigError::new(
            path,
            format!(
                "expected a list{}, found {}",
                if comma {
                    " or a comma-separated string"
                } else {
                    ""
                },
                render(other)
            ),
        )),
    }
}

/// A PostgreSQL parameter value rendered as the text PostgreSQL reads: booleans become
/// `on`/`off` (as Patroni writes them), numbers are kept as written, strings as-is.
pub(crate) fn pg_value(path: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::Bool(true) => Ok("on".to_string()),
        Value::Bool(false) => Ok("off".to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(ConfigError::new(
            path,
            format!(
                "expected a scalar PostgreSQL setting, found {}",
                render(other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_scalars_map_to_json() {
        let v = yaml_to_json(
            "a: 1\nb: -2\nc: 0.5\nd: on\ne: true\nf: 0777\ng:\n",
            "<yaml>",
        )
        .expect("valid yaml");
        assert_eq!(
            v,
            json!({"a": 1, "b": -2, "c": 0.5, "d": "on", "e": true, "f": "0777", "g": null})
        );
    }

    #[test]
    fn yaml_merge_keys_are_resolved() {
        let v = yaml_to_json("x: &x {b: 1}\ny:\n  <<: *x\n  c: 2\n", "<yaml>").expect("yaml");
        assert_eq!(v["y"], json!({"b": 1, "c": 2}));
    }

    #[test]
    fn yaml_syntax_error_has_line_and_column() {
        let e = yaml_to_json("a: [1, 2\n", "/etc/p.yml").expect_err("bad yaml");
        assert_eq!(e.path, "/etc/p.yml");
        assert!(e.message.contains("line 2, column 1"), "{}", e.message);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = yaml_to_json("a: 1\na: 2\n", "<yaml>").expect_err("duplicate");
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn non_string_keys_are_stringified() {
        let v = yaml_to_json("1: x\ntrue: y\n", "<yaml>").expect("yaml");
        assert_eq!(v, json!({"1": "x", "true": "y"}));
    }

    #[test]
    fn section_reports_unknown_and_unsupported() {
        let v = json!({"listen": "x", "certfile": "c", "bogus": 1});
        let mut s = Section::new("restapi", &v).expect("mapping");
        assert!(s.get("listen").is_some());
        s.unsupported(&["certfile", "keyfile"]);
        let mut w = Vec::new();
        s.finish(&mut w);
        assert_eq!(
            w,
            vec![
                "key `restapi.certfile` accepted but not yet supported by pgwarden; it has no effect"
                    .to_string(),
                "unknown key `restapi.bogus` ignored".to_string()
            ]
        );
    }

    #[test]
    fn section_refuses_scalars() {
        let v = json!("nope");
        let e = Section::new("restapi", &v).err().expect("not a mapping");
        assert_eq!(e.path, "restapi");
        assert!(e.message.contains("expected a mapping"));
    }

    #[test]
    fn coercions_accept_patroni_forms() {
        assert_eq!(whole("t", &json!("30"), "n").expect("string digits"), 30);
        assert_eq!(whole("t", &json!(30), "n").expect("number"), 30);
        assert!(whole("t", &json!(-3), "a whole number").is_err());
        assert!(whole("t", &json!(1.5), "a whole number").is_err());
        assert_eq!(integer("t", &json!("-1"), "n").expect("signed"), -1);
        assert!(boolean("b", &json!("yes")).expect("yes"));
        assert!(!boolean("b", &json!("OFF")).expect("off"));
        assert!(boolean("b", &json!(1)).expect("1"));
        assert!(boolean("b", &json!("maybe")).is_err());
        assert_eq!(pg_value("p", &json!(true)).expect("bool"), "on");
        assert_eq!(pg_value("p", &json!(10)).expect("int"), "10");
        assert_eq!(pg_value("p", &json!("256MB")).expect("str"), "256MB");
        assert!(pg_value("p", &json!([1])).is_err());
        assert_eq!(
            string_list("h", &json!("a:1, b:2,"), true).expect("comma"),
            vec!["a:1", "b:2"]
        );
        assert!(string_list("h", &json!("a"), false).is_err());
    }

    #[test]
    fn whole_error_names_value() {
        let e = whole(
            "bootstrap.dcs.ttl",
            &json!("abc"),
            "a whole number of seconds",
        )
        .expect_err("not a number");
        assert_eq!(
            e.to_string(),
            "bootstrap.dcs.ttl: \"abc\" is not a whole number of seconds"
        );
    }
}
