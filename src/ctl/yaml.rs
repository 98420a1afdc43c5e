//! YAML as patronictl writes it (PyYAML's `safe_dump`, block style, keys sorted): what
//! `show-config` prints and `edit-config` diffs, so the text matches patronictl's byte for
//! byte and reads back the same in a YAML 1.1 loader (a string `on` is quoted, or PyYAML
//! would read it as `true`).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The document, block style, ending with a newline.
pub fn dump(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        // PyYAML ends a lone scalar with the document-end marker.
        scalar => {
            out.push_str(&inline(scalar));
            out.push_str("\n...\n");
        }
    }
    out
}

/// A mapping on one line, `{key: value, ...}` (PyYAML's flow style), for table cells.
pub fn flow(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", scalar_text(k), flow(v)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        scalar => inline(scalar),
    }
}

fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar_text(key));
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2);
            }
            // A sequence inside a mapping is not indented (PyYAML's default).
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, items, indent);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key follows the dash; the others line up under it.
                let mut nested = String::new();
                mapping(&mut nested, map, indent + 2);
                out.push_str(nested.trim_start());
            }
            Value::Array(inner) if !inner.is_empty() => {
                let mut nested = String::new();
                sequence(&mut nested, inner, indent + 2);
                out.push_str(nested.trim_start());
            }
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

/// A scalar or an empty collection on the rest of a line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => python_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => scalar_text(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A float as PyYAML writes it (`1.0`, `0.5`, `.inf`, `1.0e+20`).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let text = format!("{f:?}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            let mantissa = if mantissa.contains('.') {
                mantissa.to_string()
            } else {
                format!("{mantissa}.0")
            };
            let sign = if exponent.starts_with('-') { "" } else { "+" };
            format!("{mantissa}e{sign}{exponent}")
        }
        None => text,
    }
}

/// A string plain when PyYAML would write it plain, else single-quoted (double-quoted with
/// escapes when it holds a line break or a control character).
fn scalar_text(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) {
        return serde_json::to_string(s).unwrap_or_default();
    }
    if plain_allowed(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// PyYAML's resolvers for plain scalars that are not strings (YAML 1.1).
static IMPLICIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:",
        r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
        r"|~|null|Null|NULL",
        r"|[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+",
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
        r"|[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
        r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?",
        r"|<<|=",
        r")$"
    ))
    .expect("a valid pattern")
});

/// Whether PyYAML's emitter writes `s` as a plain scalar in block context.
fn plain_allowed(s: &str) -> bool {
    if s.is_empty() || IMPLICIT.is_match(s) {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    if chars[0] == ' ' || chars[chars.len() - 1] == ' ' {
        return false;
    }
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_space = chars.get(i + 1).is_none_or(|n| *n == ' ');
        let preceded_by_space = i > 0 && chars[i - 1] == ' ';
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                return false;
            }
            if "?:-".contains(c) && followed_by_space {
                return false;
            }
        } else {
            if c == ':' && followed_by_space {
                return false;
            }
            if c == '#' && preceded_by_space {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_config_dumps_as_pyyaml_dumps_it() {
        let config = json!({
            "ttl": 30,
            "postgresql": {
                "parameters": {"hot_standby": "on", "wal_level": "replica", "work_mem": "9MB",
                               "max_connections": 100, "ratio": 0.5, "empty": ""},
                "pg_hba": ["host replication replicator 10.0.0.0/8 scram-sha-256", "local all all peer"],
                "use_slots": true,
            },
            "tags": {},
            "standby_cluster": null,
            "slots": [{"name": "x", "type": "physical"}],
        });
        assert_eq!(
            dump(&config),
            "postgresql:\n  parameters:\n    empty: ''\n    hot_standby: 'on'\n    max_connections: 100\n    ratio: 0.5\n    wal_level: replica\n    work_mem: 9MB\n  pg_hba:\n  - host replication replicator 10.0.0.0/8 scram-sha-256\n  - local all all peer\n  use_slots: true\nslots:\n- name: x\n  type: physical\nstandby_cluster: null\ntags: {}\nttl: 30\n"
        );
    }

    #[test]
    fn strings_that_would_read_back_as_something_else_are_quoted() {
        for (s, want) in [
            ("on", "'on'"),
            ("No", "'No'"),
            ("123", "'123'"),
            ("0755", "'0755'"),
            ("1.5", "'1.5'"),
            ("2024-01-02", "'2024-01-02'"),
            ("null", "'null'"),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("*x", "'*x'"),
            (" lead", "' lead'"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("16MB", "16MB"),
            ("0/3000060", "0/3000060"),
            ("127.0.0.1:5432", "127.0.0.1:5432"),
            ("a,b", "a,b"),
        ] {
            assert_eq!(scalar_text(s), want, "{s:?}");
        }
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(1e20), "1.0e+20");
        assert_eq!(
            flow(&json!({"nofailover": true, "zone": "on"})),
            "{nofailover: true, zone: 'on'}"
        );
    }
}
