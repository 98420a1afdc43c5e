//! `pgwardenctl list` and `topology`: the cluster as patronictl 4 prints it, from the same
//! `cluster_as_json` document `GET /cluster` serves, in patronictl's formats (`pretty`,
//! `tsv`, `json`, `yaml`, `topology`), its columns (the restart and tag columns appear
//! with `--extended` or when a member has a value for them) and its service lines.

use serde_json::{Map, Value};

use crate::api::cluster::cluster_json;
use crate::core::view::ClusterView;

/// Output formats, patronictl's `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table under the cluster's title line.
    Pretty,
    /// Tab-separated values, the cluster name in every row.
    Tsv,
    /// A JSON array of one object per member.
    Json,
    /// The same as YAML.
    #[value(alias = "yml")]
    Yaml,
    /// `pretty`, members ordered and indented by who streams from whom.
    Topology,
}

/// The restart and tag columns: shown with `--extended`, or when any member has a value.
const EXTENDED: [(&str, &str); 4] = [
    ("Pending restart", "pending_restart"),
    ("Pending restart reason", "pending_restart_reason"),
    ("Scheduled restart", "scheduled_restart"),
    ("Tags", "tags"),
];

/// A pending-restart reason longer than this is hidden in the tables (patronictl's rule).
const LONG_REASON: usize = 50;

/// The listing of `view` for cluster `scope`.
pub fn render(scope: &str, view: &ClusterView, extended: bool, format: Format) -> String {
    let cluster = cluster_json(scope, view);
    let members: Vec<Map<String, Value>> = cluster["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_object().cloned())
        .filter(|m| m.contains_key("host"))
        .collect();
    let mut columns: Vec<&str> = vec![
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag",
        "Replay LSN",
        "Replay Lag",
    ];
    for (column, key) in EXTENDED {
        if extended || members.iter().any(|m| m.get(key).is_some_and(truthy)) {
            columns.push(column);
        }
    }
    let ports_differ = members.iter().any(|m| {
        m.get("port")
            .and_then(Value::as_u64)
            .is_some_and(|p| p != 5432)
    });
    let mut hosts: Vec<&str> = members
        .iter()
        .filter_map(|m| m.get("host").and_then(Value::as_str))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let append_port = ports_differ || hosts.len() < members.len();

    let tables = matches!(format, Format::Pretty | Format::Topology);
    let ordered = match format {
        Format::Topology => topology_sort(members),
        _ => members,
    };
    let rows: Vec<Vec<Value>> = ordered
        .iter()
        .map(|m| {
            let cells = cells(scope, m, append_port, tables);
            columns
                .iter()
                .map(|c| cells.get(*c).cloned().unwrap_or_else(|| Value::from("")))
                .collect()
        })
        .collect();

    let initialize = match view.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(sysid) => sysid,
    };
    let title = format!(" Cluster: {scope} ({initialize}) ");
    match format {
        Format::Json => json_records(&columns, &rows, true),
        Format::Yaml => yaml_records(&columns, &rows, true),
        Format::Tsv => {
            let mut lines = vec![columns.join("\t")];
            lines.extend(rows.iter().map(|r| {
                r.iter()
                    .map(|v| text(v, TagStyle::Flow))
                    .collect::<Vec<_>>()
                    .join("\t")
            }));
            lines.join("\n")
        }
        Format::Pretty | Format::Topology => {
            let style = if format == Format::Pretty {
                TagStyle::Block
            } else {
                TagStyle::Flow
            };
            let headers: Vec<&str> = columns[1..]
                .iter()
                .map(|c| match *c {
                    "Receive Lag" | "Replay Lag" => "Lag",
                    other => other,
                })
                .collect();
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r[1..].iter().map(|v| text(v, style)).collect())
                .collect();
            let right = |c: &str| matches!(c, "TL" | "Receive LSN" | "Replay LSN" | "Lag");
            let mut out = pretty_table(&title, &headers, &body, right);
            let info = service_info(&cluster);
            if !info.is_empty() {
                out.push_str("\n ");
                out.push_str(&info.join("\n "));
            }
            out
        }
    }
}

/// A member's cells by column name.
fn cells(
    scope: &str,
    m: &Map<String, Value>,
    append_port: bool,
    tables: bool,
) -> Map<String, Value> {
    let get = |key: &str| m.get(key).cloned().unwrap_or_else(|| Value::from(""));
    let mut receive = (get("receive_lsn"), get("receive_lag"));
    let mut replay = (get("replay_lsn"), get("replay_lag"));
    // Members that report one position only (older agents): it is the receive position
    // while streaming, the replay position otherwise.
    let lsn = get("lsn");
    if receive.0 == "unknown" && replay.0 == "unknown" && lsn != "" && lsn != "unknown" {
        if m.get("state").and_then(Value::as_str) == Some("streaming") {
            receive = (lsn, get("lag"));
        } else {
            replay = (lsn, get("lag"));
        }
    }
    let lag_mb = |lag: Value| match lag {
        Value::Number(n) => match n.as_u64() {
            Some(bytes) => Value::from((bytes as f64 / 1024.0 / 1024.0).round() as u64),
            None => Value::Number(n),
        },
        Value::String(s) if s == "unknown" => Value::from(""),
        other => other,
    };
    let unknown_blank = |v: Value| if v == "unknown" { Value::from("") } else { v };
    let mut host = get("host");
    if append_port {
        if let (Some(h), Some(port)) = (host.as_str(), m.get("port").and_then(Value::as_u64)) {
            if !h.is_empty() {
                host = Value::from(format!("{h}:{port}"));
            }
        }
    }
    let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
    let reason = m
        .get("pending_restart_reason")
        .and_then(Value::as_object)
        .map(|reasons| {
            reasons
                .iter()
                .map(|(param, values)| {
                    let value =
                        |k: &str| text(values.get(k).unwrap_or(&Value::Null), TagStyle::Flow);
                    let full = format!("{param}: {}->{}", value("old_value"), value("new_value"));
                    if tables && full.len() > LONG_REASON {
                        format!("{param}: [hidden - too long]")
                    } else {
                        full
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let scheduled = m.get("scheduled_restart").map(|s| {
        let mut value = s
            .get("schedule")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(version) = s.get("postgres_version").and_then(Value::as_str) {
            value.push_str(&format!(" if version < {version}"));
        }
        Value::from(value)
    });
    let mut cells = Map::new();
    cells.insert("Cluster".into(), Value::from(scope));
    cells.insert("Member".into(), get("name"));
    cells.insert("Host".into(), host);
    cells.insert("Role".into(), Value::from(title_case(role)));
    cells.insert("State".into(), get("state"));
    cells.insert("TL".into(), get("timeline"));
    cells.insert("Receive LSN".into(), unknown_blank(receive.0));
    cells.insert("Receive Lag".into(), lag_mb(receive.1));
    cells.insert("Replay LSN".into(), unknown_blank(replay.0));
    cells.insert("Replay Lag".into(), lag_mb(replay.1));
    let pending = m.get("pending_restart").is_some_and(truthy);
    cells.insert(
        "Pending restart".into(),
        Value::from(if pending { "*" } else { "" }),
    );
    cells.insert("Pending restart reason".into(), Value::from(reason));
    if let Some(scheduled) = scheduled {
        cells.insert("Scheduled restart".into(), scheduled);
    }
    if let Some(tags) = m.get("tags") {
        cells.insert("Tags".into(), tags.clone());
    }
    cells
}

/// `sync_standby` → `Sync Standby`.
fn title_case(role: &str) -> String {
    role.split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's truth of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How tags print: one `key: value` per line (pretty), or `{key: value}` (tsv, topology).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TagStyle {
    Block,
    Flow,
}

/// A cell as patronictl prints it.
fn text(v: &Value, style: TagStyle) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        Value::Object(map) if map.is_empty() => String::new(),
        Value::Object(_) => match style {
            TagStyle::Block => super::yaml::dump(v).trim_end().to_string(),
            TagStyle::Flow => super::yaml::flow(v),
        },
        Value::Array(_) => v.to_string(),
    }
}

/// Members in replication order: the leader, then each member after the one it streams
/// from (`tags.replicatefrom`, when that names a replica), indented one level per hop.
fn topology_sort(members: Vec<Map<String, Value>>) -> Vec<Map<String, Value>> {
    let is_leader = |m: &Map<String, Value>| {
        m.get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| r.ends_with("leader"))
    };
    let name = |m: &Map<String, Value>| {
        m.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let leader = members.iter().find(|m| is_leader(m)).cloned();
    let leader_name = leader.as_ref().map(name);
    let replicas: Vec<String> = members.iter().filter(|m| !is_leader(m)).map(name).collect();
    let parent_of = |m: &Map<String, Value>| {
        let wanted = m
            .get("tags")
            .and_then(|t| t.get("replicatefrom"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match wanted {
            Some(p) if p != name(m) && replicas.contains(&p) => Some(p),
            _ => leader_name.clone(),
        }
    };
    let children: Vec<(Option<String>, Map<String, Value>)> = members
        .iter()
        .filter(|m| !is_leader(m))
        .map(|m| (parent_of(m), m.clone()))
        .collect();
    let mut out = Vec::new();
    fn walk(
        level: usize,
        mut member: Map<String, Value>,
        own_name: Option<String>,
        children: &[(Option<String>, Map<String, Value>)],
        out: &mut Vec<Map<String, Value>>,
    ) {
        if level > 0 {
            let shown = format!(
                "{}+ {}",
                " ".repeat((level - 1) * 2),
                member
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            member.insert("name".into(), Value::from(shown));
        }
        if own_name.is_some() {
            out.push(member);
        }
        for (parent, child) in children {
            if *parent == own_name {
                let child_name = child.get("name").and_then(Value::as_str).map(str::to_owned);
                walk(level + 1, child.clone(), child_name, children, out);
            }
        }
    }
    walk(
        0,
        leader.unwrap_or_default(),
        leader_name,
        &children,
        &mut out,
    );
    out
}

/// Maintenance mode and a scheduled switchover, under the table.
fn service_info(cluster: &Value) -> Vec<String> {
    let mut info = Vec::new();
    if cluster.get("pause").is_some_and(truthy) {
        info.push("Maintenance mode: on".to_string());
    }
    if let Some(scheduled) = cluster.get("scheduled_switchover") {
        let mut line = format!(
            "Switchover scheduled at: {}",
            scheduled
                .get("at")
                .and_then(Value::as_str)
                .unwrap_or_default()
        );
        for key in ["from", "to"] {
            if let Some(who) = scheduled.get(key).and_then(Value::as_str) {
                line.push_str(&format!("\n{key:>24}: {who}"));
            }
        }
        info.push(line);
    }
    info
}

/// The records patronictl prints as JSON, columns in table order; empty cells are left
/// out when `drop_empty` (a listing, not a query's rows).
fn records(columns: &[&str], rows: &[Vec<Value>], drop_empty: bool) -> Vec<Vec<(String, Value)>> {
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .zip(r)
                .filter(|(_, v)| !drop_empty || !text(v, TagStyle::Flow).is_empty())
                .map(|(c, v)| (c.to_string(), v.clone()))
                .collect()
        })
        .collect()
}

/// Python's `json.dumps` of the records (`", "` and `": "` separators, table order).
pub(crate) fn json_records(columns: &[&str], rows: &[Vec<Value>], drop_empty: bool) -> String {
    let objects: Vec<String> = records(columns, rows, drop_empty)
        .iter()
        .map(|record| {
            let fields: Vec<String> = record
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), python_json(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!("[{}]", objects.join(", "))
}

/// `json.dumps` of one value (spaces after `:` and `,` inside objects too).
fn python_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), python_json(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_json).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The records as YAML (keys sorted, as PyYAML's `safe_dump` writes them).
pub(crate) fn yaml_records(columns: &[&str], rows: &[Vec<Value>], drop_empty: bool) -> String {
    let list: Vec<Value> = records(columns, rows, drop_empty)
        .into_iter()
        .map(|record| Value::Object(record.into_iter().collect()))
        .collect();
    super::yaml::dump(&Value::Array(list))
}

/// prettytable's frame, with `title` written into the top border as patronictl does.
pub(crate) fn pretty_table(
    title: &str,
    headers: &[&str],
    rows: &[Vec<String>],
    right_aligned: impl Fn(&str) -> bool,
) -> String {
    // Every row as wide as the header: missing cells are empty, extra ones dropped.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..headers.len())
                .map(|i| r.get(i).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .flat_map(|r| r[i].lines())
                .map(|l| l.chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |cells: Vec<&str>, align: &dyn Fn(usize) -> bool| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if align(i) {
                    format!(" {c:>w$} ", w = widths[i])
                } else {
                    format!(" {c:<w$} ", w = widths[i])
                }
            })
            .collect();
        format!("|{}|", padded.join("|"))
    };
    // The title replaces the top border from its second character on.
    let room = rule.chars().count().saturating_sub(2);
    let shown: String = title.chars().take(room).collect();
    let top: String = rule
        .chars()
        .take(1)
        .chain(shown.chars())
        .chain(rule.chars().skip(1 + shown.chars().count()))
        .collect();
    let multiline = rows.iter().any(|r| r.iter().any(|c| c.contains('\n')));
    // prettytable aligns a header as its column.
    let header = line(headers.to_vec(), &|i| right_aligned(headers[i]));
    let mut out = vec![top, header, rule.clone()];
    for (n, row) in rows.iter().enumerate() {
        let height = row
            .iter()
            .map(|c| c.lines().count().max(1))
            .max()
            .unwrap_or(1);
        for k in 0..height {
            let cells: Vec<&str> = row.iter().map(|c| c.lines().nth(k).unwrap_or("")).collect();
            out.push(line(cells, &|i| right_aligned(headers[i])));
        }
        if multiline && n + 1 < rows.len() {
            out.push(rule.clone());
        }
    }
    out.push(rule);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::view::{FailoverRequest, LeaderKey, MemberInfo, SyncState, Versioned};
    use crate::core::{Lsn, Revision, Timeline};
    use serde_json::json;

    fn member(name: &str, port: u16, state: &str, repl: Option<&str>, lsn: u64) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
            state: state.into(),
            replication_state: repl.map(str::to_string),
            timeline: Some(Timeline(1)),
            wal_position: Some(Lsn(lsn)),
            ..MemberInfo::default()
        }
    }

    fn three() -> ClusterView {
        let mut view = ClusterView {
            initialize: Some("7300".into()),
            optime: Some(Lsn(3 * 1024 * 1024)),
            ..ClusterView::default()
        };
        view.leader = Some(LeaderKey {
            name: "a".into(),
            lease: 1,
            create_revision: Revision(2),
        });
        view.members.insert(
            "a".into(),
            member("a", 5432, "running", None, 3 * 1024 * 1024),
        );
        let mut b = member("b", 5433, "running", Some("streaming"), 3 * 1024 * 1024);
        b.raw = json!({"receive_lsn": 3 * 1024 * 1024, "replay_lsn": 3 * 1024 * 1024});
        view.members.insert("b".into(), b);
        let mut c = member("c", 5434, "running", Some("streaming"), 1024 * 1024);
        c.raw = json!({"receive_lsn": 1024 * 1024, "replay_lsn": 1024 * 1024,
                       "tags": {"replicatefrom": "b", "nofailover": true}});
        view.members.insert("c".into(), c);
        view.sync = Some(Versioned {
            value: SyncState {
                leader: Some("a".into()),
                sync_standby: vec!["b".into()],
                quorum: 0,
            },
            mod_revision: Revision(3),
        });
        view
    }

    #[test]
    fn pretty_prints_patronictl_4s_table() {
        let text = render("demo", &three(), false, Format::Pretty);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("+ Cluster: demo (7300) -"), "{text}");
        assert_eq!(
            lines[1],
            "| Member | Host           | Role         | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags             |",
            "{text}"
        );
        assert!(
            lines.contains(&"| b      | 127.0.0.1:5433 | Sync Standby | streaming |  1 |    0/300000 |   0 |   0/300000 |   0 |                  |"),
            "{text}"
        );
        let c = lines.iter().find(|l| l.starts_with("| c ")).expect("row c");
        assert!(c.contains("|   2 |"), "c lags 2 MB: {text}");
        // Two tags make the row two lines high, and rules separate every row.
        assert!(text.contains("| nofailover: true |\n|        |"), "{text}");
        assert!(text.contains("| replicatefrom: b |\n+-"), "{text}");
        assert_eq!(
            lines.last().map(|l| l.starts_with("+-")),
            Some(true),
            "{text}"
        );
    }

    #[test]
    fn topology_indents_cascading_replicas() {
        let text = render("demo", &three(), false, Format::Topology);
        let names: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| Member"))
            .map(|l| {
                l.split('|')
                    .nth(1)
                    .unwrap_or_default()
                    .trim_end()
                    .to_string()
            })
            .collect();
        assert_eq!(names, [" a", " + b", "   + c"], "{text}");
        assert!(
            text.contains("{nofailover: true, replicatefrom: b}"),
            "{text}"
        );
    }

    #[test]
    fn machine_formats_keep_every_column_with_a_value() {
        let mut view = three();
        view.config = Some(Versioned {
            value: crate::config::DynamicConfig {
                pause: true,
                ..Default::default()
            },
            mod_revision: Revision(4),
        });
        view.failover = Some(Versioned {
            value: FailoverRequest {
                leader: Some("a".into()),
                candidate: Some("b".into()),
                scheduled_at: Some("2030-01-01T00:00:00+00:00".into()),
                ..FailoverRequest::default()
            },
            mod_revision: Revision(5),
        });
        let text = render("demo", &view, true, Format::Json);
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(parsed[0]["Cluster"], "demo");
        assert_eq!(parsed[0]["Role"], "Leader");
        assert_eq!(
            parsed[0].get("Receive LSN"),
            None,
            "empty cells are left out"
        );
        assert_eq!(parsed[2]["Receive Lag"], 2);
        assert_eq!(parsed[2]["Tags"]["nofailover"], true);
        assert!(
            text.starts_with("[{\"Cluster\": \"demo\", \"Member\": \"a\""),
            "{text}"
        );

        let tsv = render("demo", &view, true, Format::Tsv);
        let header = tsv.lines().next().expect("header");
        assert!(header.starts_with("Cluster\tMember\tHost\tRole"), "{tsv}");
        assert!(
            header.ends_with("Pending restart\tPending restart reason\tScheduled restart\tTags"),
            "{tsv}"
        );
        assert_eq!(tsv.lines().count(), 4, "{tsv}");

        let yaml = render("demo", &view, false, Format::Yaml);
        assert!(yaml.contains("- Cluster: demo"), "{yaml}");
        let pretty = render("demo", &view, false, Format::Pretty);
        assert!(pretty.contains("\n Maintenance mode: on\n Switchover scheduled at: 2030-01-01T00:00:00+00:00\n                    from: a\n                      to: b"), "{pretty}");
    }
}
