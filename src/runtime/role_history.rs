//! The node's role history as JSON lines (`pgwarden.role_history`): one line each time what
//! matters for split-brain analysis changes: the agent's state, whether it holds the leader
//! key and on which lease, what PostgreSQL is (primary, replica, down), its timeline, and
//! the PostgreSQL action in flight. Written before the effects of a step are executed, so a
//! promotion shows (`pg_action: "promote"`) before PostgreSQL can become writable; chaos
//! tests read these files from every node and look for overlapping writable intervals.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::core::NodeStatus;

/// What one line records, apart from the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleEntry {
    /// Member name.
    pub node: String,
    /// State machine state (`primary`, `replica`, `demoting`, ...).
    pub state: &'static str,
    /// PostgreSQL as last probed: `primary`, `replica`, `starting` (postmaster up, no
    /// answer), `stopped`, or `unknown` before the first probe.
    pub postgres: &'static str,
    /// The leader key is ours on our current lease.
    pub holds_leader_key: bool,
    /// Our etcd lease, in hex as etcdctl prints it.
    pub lease: Option<String>,
    /// create_revision of our leader key while we hold it.
    pub leader_revision: Option<i64>,
    /// PostgreSQL's timeline as last probed.
    pub timeline: Option<u32>,
    /// The PostgreSQL action in flight (`promote`, `demote`, `start_primary`, ...).
    pub pg_action: Option<&'static str>,
}

impl RoleEntry {
    /// The entry for a status snapshot.
    pub fn of(status: &NodeStatus) -> RoleEntry {
        let postgres = match status.pg.as_ref() {
            None => "unknown",
            Some(pg) => match pg.server.as_ref() {
                Some(server) if server.in_recovery => "replica",
                Some(_) => "primary",
                None if pg.postmaster_alive => "starting",
                None => "stopped",
            },
        };
        RoleEntry {
            node: status.name.clone(),
            state: status.state,
            postgres,
            holds_leader_key: status.holds_leader_key,
            lease: status.lease.map(|l| format!("{:x}", l.0)),
            leader_revision: status.leader_revision.map(|r| r.0),
            timeline: status.pg.as_ref().and_then(|p| p.timeline()).map(|t| t.0),
            pg_action: status.pg_action,
        }
    }
}

/// A line as written: the entry and the wall-clock time (milliseconds since the epoch, so
/// the files of several nodes on one machine can be merged).
#[derive(Serialize)]
struct Line<'a> {
    ts_ms: u128,
    #[serde(flatten)]
    entry: &'a RoleEntry,
}

/// Appends a line whenever the entry changes; a write error is logged once and the agent
/// goes on (the history is for analysis, never a reason to stop).
pub struct RoleHistory {
    path: PathBuf,
    file: Option<File>,
    last: Option<RoleEntry>,
    failed: bool,
}

impl RoleHistory {
    /// Opens (creates, appends to) `path`.
    pub fn open(path: &Path) -> RoleHistory {
        let mut history = RoleHistory {
            path: path.to_path_buf(),
            file: None,
            last: None,
            failed: false,
        };
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => history.file = Some(file),
            Err(error) => history.fail(&error),
        }
        history
    }

    /// Records `status` if it differs from the last line written.
    pub fn record(&mut self, status: &NodeStatus) {
        let entry = RoleEntry::of(status);
        if self.last.as_ref() == Some(&entry) {
            return;
        }
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        if let Some(file) = self.file.as_mut() {
            let written = serde_json::to_string(&Line {
                ts_ms,
                entry: &entry,
            })
            .map_err(std::io::Error::other)
            .and_then(|mut line| {
                line.push('\n');
                file.write_all(line.as_bytes())
            });
            if let Err(error) = written {
                self.fail(&error);
            }
        }
        self.last = Some(entry);
    }

    fn fail(&mut self, error: &std::io::Error) {
        if !self.failed {
            self.failed = true;
            tracing::warn!(path = %self.path.display(), %error, "cannot write the role history; going on without it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DynamicConfig;
    use crate::core::{Instant, Node, NodeSettings, WatchdogSettings};
    use std::time::Duration;

    fn status() -> NodeStatus {
        let settings = NodeSettings {
            name: "node1".into(),
            watchdog: WatchdogSettings::default(),
            failover_priority: 1,
            use_pg_rewind: None,
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
            demotion_margin: Duration::from_secs(1),
            unresponsive_primary_timeout: Duration::from_secs(30),
            tags: Default::default(),
            bootstrap_config: DynamicConfig::default(),
            policy_params: Default::default(),
            custom_bootstrap_method: None,
        };
        Node::new(settings, Instant(0)).status()
    }

    #[test]
    fn a_line_per_change_and_none_for_the_same_facts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("roles.jsonl");
        let mut history = RoleHistory::open(&path);
        let mut s = status();
        history.record(&s);
        history.record(&s);
        s.state = "primary";
        s.holds_leader_key = true;
        s.lease = Some(crate::core::LeaseId(0x1f));
        s.pg_action = Some("promote");
        history.record(&s);
        let text = std::fs::read_to_string(&path).expect("read the history");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["postgres"], "unknown");
        assert_eq!(lines[1]["state"], "primary");
        assert_eq!(lines[1]["lease"], "1f");
        assert_eq!(lines[1]["pg_action"], "promote");
        assert!(lines[1]["ts_ms"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000));
    }

    #[test]
    fn an_unwritable_path_is_survived() {
        let mut history = RoleHistory::open(Path::new("/nonexistent-dir/roles.jsonl"));
        history.record(&status());
        assert!(history.failed);
    }
}
