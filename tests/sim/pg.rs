//! A fake PostgreSQL: a data directory holding a WAL (a sequence of records, each stamped
//! with the timeline it was written on), a postmaster that runs as primary or standby, can be
//! frozen (its postmaster alone, or the whole machine) or killed, synchronous commit over `synchronous_standby_names`, and
//! physical streaming that only works while the standby's WAL is a prefix of its upstream's
//! (a standby that has WAL its upstream lacks has diverged and cannot stream, as in
//! PostgreSQL). Promotion appends a timeline-switch record, as the end-of-recovery
//! checkpoint does.

use pgwarden::core::view::ControlState;
use pgwarden::core::{Lsn, Timeline};

/// One WAL record: a client's commit or a timeline switch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Unique across the run (commits are numbered by the client).
    pub id: u64,
    /// Timeline it was written on.
    pub tl: u32,
}

/// Bytes of WAL per record: makes `maximum_lag_on_failover` (1 MiB) about 256 records.
pub const REC_BYTES: u64 = 4096;

pub fn lsn_of(len: usize) -> Lsn {
    Lsn(len as u64 * REC_BYTES)
}

/// What is on disk.
#[derive(Clone, Debug)]
pub struct Data {
    pub sysid: String,
    pub wal: Vec<Rec>,
    pub standby_signal: bool,
    pub control: ControlState,
    /// Member whose PostgreSQL `primary_conninfo` names.
    pub upstream: Option<String>,
    /// `synchronous_standby_names`: set through [`Data::set_sync_names`], which keeps
    /// `sync_rule` in step.
    pub sync_names: String,
    /// `sync_names` parsed once, when set (commits and probes read it many times a second).
    pub sync_rule: Option<SyncRule>,
    pub slots: Vec<String>,
}

impl Data {
    pub fn set_sync_names(&mut self, text: String) {
        self.sync_rule = parse_sync_rule(&text);
        self.sync_names = text;
    }

    pub fn timeline(&self) -> u32 {
        self.wal.last().map(|r| r.tl).unwrap_or(1)
    }
}

/// A commit waiting for its synchronous standbys.
#[derive(Copy, Clone, Debug)]
pub struct Pending {
    pub id: u64,
    /// WAL length that must be flushed by the standbys.
    pub upto: usize,
}

#[derive(Clone, Debug, Default)]
pub struct FakePg {
    pub data: Option<Data>,
    /// `Some(in_recovery)` while the postmaster runs.
    pub running: Option<bool>,
    /// The whole server stopped (a suspended VM): no queries, commits or streaming.
    pub frozen: bool,
    /// Only the postmaster SIGSTOPped: no new connection is accepted (probes, new
    /// replication connections, pg_rewind, basebackup), but the backends and walsenders it
    /// already forked keep serving, committing and streaming.
    pub postmaster_frozen: bool,
    /// When the postmaster froze, for the liveness checker.
    pub postmaster_frozen_since: Option<u64>,
    /// The upstream this standby streamed from at the last replication step.
    pub streaming_from: Option<String>,
    pub pending: Vec<Pending>,
}

impl FakePg {
    pub fn is_writable(&self) -> bool {
        self.running == Some(false) && !self.frozen
    }

    pub fn wal_len(&self) -> usize {
        self.data.as_ref().map(|d| d.wal.len()).unwrap_or(0)
    }

    pub fn timeline(&self) -> Option<Timeline> {
        self.data.as_ref().map(|d| Timeline(d.timeline()))
    }

    /// Start the postmaster (data must exist).
    pub fn start(&mut self, as_standby: bool, upstream: Option<String>) -> Result<(), String> {
        let data = self.data.as_mut().ok_or("no data directory")?;
        if self.running.is_some() {
            return Err("already running".into());
        }
        data.standby_signal = as_standby;
        if as_standby {
            data.upstream = upstream;
            data.control = ControlState::InArchiveRecovery;
        } else {
            data.upstream = None;
            data.control = ControlState::InProduction;
        }
        self.running = Some(as_standby);
        self.frozen = false;
        self.postmaster_frozen = false;
        self.postmaster_frozen_since = None;
        self.streaming_from = None;
        Ok(())
    }

    /// Stop; `clean` writes a shutdown checkpoint (fast), otherwise it is a crash
    /// (immediate or SIGKILL). Waiting commits are never acknowledged.
    pub fn stop(&mut self, clean: bool) {
        if let (Some(in_recovery), Some(data)) = (self.running, self.data.as_mut()) {
            if clean {
                data.control = if in_recovery {
                    ControlState::ShutDownInRecovery
                } else {
                    ControlState::ShutDown
                };
            }
        }
        self.running = None;
        self.frozen = false;
        self.postmaster_frozen = false;
        self.postmaster_frozen_since = None;
        self.streaming_from = None;
        self.pending.clear();
    }

    /// Promote a running standby: a new timeline, one above the highest it knows.
    pub fn promote(&mut self, switch_id: u64) -> Result<u32, String> {
        if self.running != Some(true) || self.frozen {
            return Err("not a running standby".into());
        }
        let data = self.data.as_mut().ok_or("no data directory")?;
        let tl = data.timeline() + 1;
        data.wal.push(Rec { id: switch_id, tl });
        data.standby_signal = false;
        data.upstream = None;
        data.control = ControlState::InProduction;
        self.running = Some(false);
        self.streaming_from = None;
        Ok(tl)
    }
}

/// Length of the common prefix of two WALs.
pub fn common_prefix(a: &[Rec], b: &[Rec]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Parsed `synchronous_standby_names`: how many of which names must confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRule {
    /// `ANY n`: any n of the names; otherwise `FIRST n`: the n highest-priority connected.
    pub any: bool,
    pub count: usize,
    pub names: Vec<String>,
}

/// PostgreSQL's grammar, as far as pgwarden writes it: `name`, `"a","b"`, `FIRST n (...)`,
/// `ANY n (...)`, `n (...)`. Empty: asynchronous.
pub fn parse_sync_rule(text: &str) -> Option<SyncRule> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let names: Vec<String> = pgwarden::core::sync::parse_standby_names(text);
    let (any, count) = match text.find('(') {
        Some(open) => {
            let head = text[..open].trim();
            let mut words = head.split_whitespace();
            let (any, n) = match (words.next(), words.next()) {
                (Some(w), Some(n)) if w.eq_ignore_ascii_case("any") => (true, n),
                (Some(w), Some(n)) if w.eq_ignore_ascii_case("first") => (false, n),
                (Some(n), None) => (false, n),
                _ => (false, "1"),
            };
            (any, n.parse().unwrap_or(1))
        }
        None => (false, 1),
    };
    Some(SyncRule { any, count, names })
}
