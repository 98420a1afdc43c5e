//! The `tags:` section with Patroni's precedence rules (`patroni/tags.py`): an explicit
//! `nofailover` wins over `failover_priority`, and likewise `nosync` over `sync_priority`.
//! Any other key is a user tag, published as is.

use serde_json::{Map, Value};

use super::error::{join, ConfigError};
use super::model::Tags;
use super::tree;

/// Boolean tags Patroni leaves out of the member key when they are false.
const HIDDEN_WHEN_FALSE: &[&str] = &[
    "nofailover",
    "noloadbalance",
    "clonefrom",
    "nosync",
    "nostream",
];

/// Builds [`Tags`] from the `tags:` section (`None` when absent).
pub(crate) fn parse(v: Option<&Value>, warnings: &mut Vec<String>) -> Result<Tags, ConfigError> {
    let mut tags = Tags::default();
    let map = match v {
        None | Some(Value::Null) => return Ok(tags),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ConfigError::new(
                "tags",
                format!("expected a mapping, found {}", tree::render(other)),
            ))
        }
    };
    let p = |k: &str| join("tags", k);
    let get = |k: &str| map.get(k).filter(|v| !v.is_null());
    let flag = |k: &str| get(k).map(|v| tree::boolean(&p(k), v)).transpose();
    let priority = |k: &str| {
        get(k)
            .map(|v| tree::integer(&p(k), v, "an integer priority"))
            .transpose()
    };

    let nofailover = flag("nofailover")?;
    let failover_priority = priority("failover_priority")?;
    tags.nofailover = nofailover.unwrap_or(failover_priority.is_some_and(|fp| fp <= 0));
    tags.failover_priority = if nofailover == Some(true) {
        0
    } else {
        failover_priority.unwrap_or(1)
    };
    if let (Some(nf), Some(fp)) = (nofailover, failover_priority) {
        if nf == (fp > 0) {
            warnings.push(format!(
                "tags.nofailover {nf} conflicts with tags.failover_priority {fp}; nofailover \
                 takes precedence, as in Patroni"
            ));
        }
    }

    let nosync = flag("nosync")?;
    let sync_priority = priority("sync_priority")?;
    tags.nosync = nosync.unwrap_or(sync_priority.is_some_and(|sp| sp <= 0));
    tags.sync_priority = if nosync == Some(true) {
        0
    } else {
        sync_priority.unwrap_or(1)
    };
    if let (Some(ns), Some(sp)) = (nosync, sync_priority) {
        if ns == (sp > 0) {
            warnings.push(format!(
                "tags.nosync {ns} conflicts with tags.sync_priority {sp}; nosync takes \
                 precedence, as in Patroni"
            ));
        }
    }

    tags.noloadbalance = flag("noloadbalance")?.unwrap_or(false);
    tags.clonefrom = flag("clonefrom")?.unwrap_or(false);
    tags.nostream = flag("nostream")?.unwrap_or(false);
    tags.replicatefrom = get("replicatefrom")
        .map(|v| tree::string(&p("replicatefrom"), v))
        .transpose()?;
    if let Some(upstream) = &tags.replicatefrom {
        warnings.push(format!(
            "{}: cascading replication is not supported by pgwarden yet; this member \
             streams from the leader, not from {upstream:?}",
            p("replicatefrom")
        ));
    }

    let mut raw = Map::new();
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        if HIDDEN_WHEN_FALSE.contains(&k.as_str()) && !tree::boolean(&p(k), v)? {
            continue;
        }
        raw.insert(k.clone(), v.clone());
    }
    tags.raw = raw;
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(v: Value) -> (Tags, Vec<String>) {
        let mut w = Vec::new();
        let t = parse(Some(&v), &mut w).expect("valid tags");
        (t, w)
    }

    #[test]
    fn defaults() {
        let mut w = Vec::new();
        let t = parse(None, &mut w).expect("absent");
        assert_eq!(t, Tags::default());
        assert_eq!((t.failover_priority, t.sync_priority), (1, 1));
    }

    #[test]
    fn nofailover_implies_priority_zero() {
        let (t, _) = tags(json!({"nofailover": true}));
        assert!(t.nofailover);
        assert_eq!(t.failover_priority, 0);
        let (t, _) = tags(json!({"failover_priority": 0}));
        assert!(t.nofailover);
        let (t, _) = tags(json!({"failover_priority": 5}));
        assert!(!t.nofailover);
        assert_eq!(t.failover_priority, 5);
    }

    #[test]
    fn explicit_nofailover_wins_with_warning() {
        let (t, w) = tags(json!({"nofailover": false, "failover_priority": 0}));
        assert!(!t.nofailover);
        assert_eq!(t.failover_priority, 0);
        assert_eq!(w.len(), 1);
        let (t, w) = tags(json!({"nosync": true, "sync_priority": 3}));
        assert!(t.nosync);
        assert_eq!(t.sync_priority, 0);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn raw_hides_false_flags_and_keeps_user_tags() {
        let (t, _) = tags(json!({
            "nofailover": false, "noloadbalance": true, "zone": "a", "rack": 3, "clonefrom": "off"
        }));
        assert_eq!(
            Value::Object(t.raw),
            json!({"noloadbalance": true, "zone": "a", "rack": 3})
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut w = Vec::new();
        let e = parse(Some(&json!({"nosync": "perhaps"})), &mut w).expect_err("bad bool");
        assert_eq!(e.path, "tags.nosync");
        let e = parse(Some(&json!({"failover_priority": "high"})), &mut w).expect_err("bad int");
        assert_eq!(e.path, "tags.failover_priority");
        let e = parse(Some(&json!([1])), &mut w).expect_err("not a mapping");
        assert_eq!(e.path, "tags");
    }
}
