//! Values of Patroni's keys: decode a raw key set into a `ClusterView`, encode what we
//! write. Pure; the JSON shapes are Patroni's so patronictl reads our keys unchanged.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::keys::{self, KeyLayout};
use crate::config::DynamicConfig;
use crate::core::types::{Lsn, Revision, Timeline};
use crate::core::view::{
    ClusterView, FailoverRequest, HistoryEntry, LeaderKey, MemberInfo, SyncState, Versioned,
};

/// One key as read from etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawKey {
    /// Value bytes.
    pub value: Vec<u8>,
    /// Attached lease (0: none).
    pub lease: i64,
    /// etcd create_revision.
    pub create_revision: i64,
    /// etcd mod_revision.
    pub mod_revision: i64,
}

/// Decode every key under the layout's prefix (keys are full paths).
pub fn decode_view(
    layout: &KeyLayout,
    keys: &BTreeMap<String, RawKey>,
    revision: i64,
) -> ClusterView {
    let mut view = ClusterView {
        revision: Revision(revision),
        ..ClusterView::default()
    };
    for (key, raw) in keys {
        let Some(name) = layout.relative(key) else {
            continue;
        };
        let text = String::from_utf8_lossy(&raw.value);
        match name {
            keys::LEADER => {
                view.leader = Some(LeaderKey {
                    name: text.to_string(),
                    lease: raw.lease,
                    create_revision: Revision(raw.create_revision),
                })
            }
            keys::INITIALIZE => {
                view.initialize = Some(text.to_string());
                view.initialize_revision = Revision(raw.mod_revision);
            }
            keys::CONFIG => match serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("config: not JSON: {e}"))
                .and_then(|v| {
                    DynamicConfig::from_json_with_warnings(&v, "").map_err(|e| e.to_string())
                }) {
                Ok((value, warnings)) => {
                    view.config_warnings = warnings;
                    view.config = Some(Versioned {
                        value,
                        mod_revision: Revision(raw.mod_revision),
                    })
                }
                Err(error) => view.config_error = Some(error),
            },
            keys::SYNC => {
                if let Some(value) = decode_sync(&text) {
                    view.sync = Some(Versioned {
                        value,
                        mod_revision: Revision(raw.mod_revision),
                    });
                }
            }
            keys::HISTORY => view.history = decode_history(&text),
            keys::FAILOVER => {
                view.failover = decode_failover(&text).map(|value| Versioned {
                    value,
                    mod_revision: Revision(raw.mod_revision),
                })
            }
            keys::FAILSAFE => view.failsafe = decode_failsafe(&text),
            keys::STATUS => {
                view.optime = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("optime").and_then(Value::as_u64))
                    .map(Lsn)
            }
            other => {
                if let Some(member) = other.strip_prefix(keys::MEMBERS) {
                    view.members
                        .insert(member.to_string(), decode_member(member, &text));
                }
            }
        }
    }
    view
}

/// Decode a `members/<name>` value (bad JSON gives a member with only its name).
pub fn decode_member(name: &str, text: &str) -> MemberInfo {
    let raw: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let s = |k: &str| {
        raw.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let lsn = |k: &str| raw.get(k).and_then(Value::as_u64).map(Lsn);
    let wal_position = lsn("xlog_location")
        .max(lsn("receive_lsn"))
        .max(lsn("replay_lsn"));
    MemberInfo {
        name: name.to_string(),
        conn_url: s("conn_url"),
        api_url: s("api_url"),
        state: s("state"),
        role: s("role"),
        timeline: raw
            .get("timeline")
            .and_then(Value::as_u64)
            .map(|t| Timeline(t as u32)),
        wal_position,
        replication_state: raw
            .get("replication_state")
            .and_then(Value::as_str)
            .map(str::to_string),
        tags: raw
            .get("tags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        raw,
    }
}

/// Decode `/sync`: `{"leader": name, "sync_standby": "a,b" | null, "quorum": n}`.
pub fn decode_sync(text: &str) -> Option<SyncState> {
    let v: Value = serde_json::from_str(text).ok()?;
    let leader = v.get("leader").and_then(Value::as_str).map(str::to_string);
    let mut sync_standby: Vec<String> = v
        .get("sync_standby")
        .and_then(Value::as_str)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    sync_standby.sort();
    let quorum = v.get("quorum").and_then(Value::as_u64).unwrap_or(0) as u32;
    Some(SyncState {
        leader,
        sync_standby,
        quorum,
    })
}

/// Decode `/failover`: `{"leader"?, "member"?, "scheduled_at"?, "override_policy"?}`, or the
/// legacy `leader:candidate` text. An empty or unusable value is no request.
pub fn decode_failover(text: &str) -> Option<FailoverRequest> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let name = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let request = match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => FailoverRequest {
            leader: name(v.get("leader")),
            candidate: name(v.get("member")),
            scheduled_at: name(v.get("scheduled_at")),
            due: None,
            override_policy: v.get("override_policy").and_then(Value::as_bool) == Some(true),
        },
        Ok(_) => return None,
        Err(_) => {
            let (leader, candidate) = text.split_once(':')?;
            let part = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
            FailoverRequest {
                leader: part(leader),
                candidate: part(candidate),
                ..FailoverRequest::default()
            }
        }
    };
    (request.leader.is_some() || request.candidate.is_some()).then_some(request)
}

/// Encode `/failover` as Patroni's REST API does (plus `override_policy` when set).
pub fn encode_failover(request: &FailoverRequest) -> String {
    let mut v = serde_json::Map::new();
    if let Some(leader) = &request.leader {
        v.insert("leader".into(), json!(leader));
    }
    if let Some(candidate) = &request.candidate {
        v.insert("member".into(), json!(candidate));
    }
    if let Some(at) = &request.scheduled_at {
        v.insert("scheduled_at".into(), json!(at));
    }
    if request.override_policy {
        v.insert("override_policy".into(), json!(true));
    }
    Value::Object(v).to_string()
}

/// Decode `/failsafe`: Patroni's `{"member": "api_url", ...}`. Anything else (bad JSON, a
/// non-string URL) is ignored, entry by entry: an unreadable key lists nobody.
pub fn decode_failsafe(text: &str) -> BTreeMap<String, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter_map(|(name, url)| Some((name, url.as_str()?.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Encode `/failsafe` as Patroni does.
pub fn encode_failsafe(members: &BTreeMap<String, String>) -> String {
    json!(members).to_string()
}

/// Encode `/sync` as Patroni does.
pub fn encode_sync(state: &SyncState) -> String {
    let standbys = if state.sync_standby.is_empty() {
        Value::Null
    } else {
        Value::String(state.sync_standby.join(","))
    };
    json!({"leader": state.leader, "quorum": state.quorum, "sync_standby": standbys}).to_string()
}

/// Decode `/history`: a JSON list of `[timeline, lsn, reason, timestamp?, new_leader?]`.
pub fn decode_history(text: &str) -> Vec<HistoryEntry> {
    let Ok(Value::Array(lines)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    lines
        .iter()
        .filter_map(|line| {
            let line = line.as_array()?;
            Some(HistoryEntry {
                timeline: Timeline(line.first()?.as_u64()? as u32),
                switch_lsn: Lsn(line.get(1)?.as_u64()?),
                reason: line
                    .get(2)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                timestamp: line.get(3).and_then(Value::as_str).map(str::to_string),
                new_leader: line.get(4).and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect()
}

/// Encode `/history`.
pub fn encode_history(entries: &[HistoryEntry]) -> String {
    let lines: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut line = vec![json!(e.timeline.0), json!(e.switch_lsn.0), json!(e.reason)];
            if let Some(ts) = &e.timestamp {
                line.push(json!(ts));
                if let Some(leader) = &e.new_leader {
                    line.push(json!(leader));
                }
            }
            Value::Array(line)
        })
        .collect();
    Value::Array(lines).to_string()
}

/// Encode `/status`.
pub fn encode_status(optime: Lsn) -> String {
    json!({"optime": optime.0, "slots": {}, "retain_slots": []}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: &str, lease: i64, rev: i64) -> RawKey {
        RawKey {
            value: value.as_bytes().to_vec(),
            lease,
            create_revision: rev,
            mod_revision: rev,
        }
    }

    #[test]
    fn decodes_a_patroni_key_set() {
        let layout = KeyLayout::new("/service", "c");
        let mut keys = BTreeMap::new();
        keys.insert("/service/c/leader".to_string(), raw("pg1", 77, 5));
        keys.insert(
            "/service/c/initialize".to_string(),
            raw("7300000000000000001", 0, 2),
        );
        keys.insert(
            "/service/c/members/pg1".to_string(),
            raw(r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","xlog_location":100,"timeline":2,"tags":{"nofailover":true}}"#, 77, 3),
        );
        keys.insert(
            "/service/c/sync".to_string(),
            raw(r#"{"leader":"pg1","sync_standby":"pg3,pg2"}"#, 0, 9),
        );
        keys.insert("/service/c/history".to_string(), raw(r#"[[1,50331808,"no recovery target specified","2026-01-01T00:00:00+00:00","pg1"]]"#, 0, 8));
        keys.insert(
            "/service/c/status".to_string(),
            raw(r#"{"optime":4096}"#, 0, 10),
        );
        keys.insert(
            "/service/c/config".to_string(),
            raw(r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#, 0, 4),
        );
        keys.insert("/service/other/leader".to_string(), raw("x", 0, 1));
        let view = decode_view(&layout, &keys, 10);
        assert_eq!(
            view.leader.as_ref().map(|l| (l.name.as_str(), l.lease)),
            Some(("pg1", 77))
        );
        assert_eq!(view.initialize.as_deref(), Some("7300000000000000001"));
        let m = &view.members["pg1"];
        assert_eq!(m.wal_position, Some(Lsn(100)));
        assert_eq!(m.timeline, Some(Timeline(2)));
        assert!(!m.can_lead());
        let sync = view.sync.as_ref().expect("sync");
        assert_eq!(sync.value.sync_standby, vec!["pg2", "pg3"]);
        assert_eq!(sync.mod_revision, Revision(9));
        assert_eq!(view.timeline(), Some(Timeline(2)));
        assert_eq!(view.optime, Some(Lsn(4096)));
        assert_eq!(view.config.as_ref().map(|c| c.value.ttl), Some(30));
    }

    #[test]
    fn sync_and_history_round_trip() {
        let state = SyncState {
            leader: Some("a".into()),
            sync_standby: vec!["b".into()],
            quorum: 0,
        };
        assert_eq!(decode_sync(&encode_sync(&state)), Some(state));
        let empty = SyncState {
            leader: Some("a".into()),
            sync_standby: vec![],
            quorum: 0,
        };
        assert!(encode_sync(&empty).contains("\"sync_standby\":null"));
        let history = vec![HistoryEntry {
            timeline: Timeline(1),
            switch_lsn: Lsn(123),
            reason: "no recovery target specified".into(),
            timestamp: Some("2026-11-25T00:00:00+00:00".into()),
            new_leader: Some("b".into()),
        }];
        assert_eq!(decode_history(&encode_history(&history)), history);
    }

    #[test]
    fn failsafe_round_trips_in_patronis_shape() {
        let mut members = BTreeMap::new();
        members.insert(
            "pg1".to_string(),
            "http://10.0.0.1:8008/patroni".to_string(),
        );
        members.insert(
            "pg2".to_string(),
            "http://10.0.0.2:8008/patroni".to_string(),
        );
        let text = encode_failsafe(&members);
        assert_eq!(
            text,
            r#"{"pg1":"http://10.0.0.1:8008/patroni","pg2":"http://10.0.0.2:8008/patroni"}"#
        );
        assert_eq!(decode_failsafe(&text), members);
        assert!(decode_failsafe("not json").is_empty());
        assert_eq!(
            decode_failsafe(r#"{"a":"http://a/patroni","b":3}"#).len(),
            1
        );
        let layout = KeyLayout::new("/service", "c");
        let mut keys = BTreeMap::new();
        keys.insert("/service/c/failsafe".to_string(), raw(&text, 0, 3));
        assert_eq!(decode_view(&layout, &keys, 3).failsafe, members);
    }
}
