//! Decision traces: one JSON line per decision (event, view, decision, who decided, the
//! failure if the active policy failed). The agent appends them; `pgwardenctl policy
//! test|diff` replays them, so [`read_trace`] accepts exactly what [`TraceWriter`] writes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use pgwarden_policy::{ClusterView, Decision, Event};
use serde::{Deserialize, Serialize};

use super::error::{PolicyCallError, PolicyErrorKind};
use super::host::{Source, Verdict};

/// Who made a traced decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceSource {
    /// The active policy.
    Active,
    /// The native default, after the active policy failed.
    Fallback,
}

/// How the active policy failed, as traced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedFailure {
    /// The kind of failure.
    pub kind: PolicyErrorKind,
    /// The error's message.
    pub message: String,
}

impl From<&PolicyCallError> for TracedFailure {
    fn from(error: &PolicyCallError) -> TracedFailure {
        TracedFailure {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// One traced decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// What happened.
    pub event: Event,
    /// What the policy saw.
    pub view: ClusterView,
    /// What was decided (and handed to the core's gate).
    pub decision: Decision,
    /// Who decided.
    pub source: TraceSource,
    /// The active policy's name (also when the native default stood in for it).
    pub policy: String,
    /// How the active policy failed, for a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TracedFailure>,
}

impl TraceRecord {
    /// The record of `verdict`, the answer to `event` with `view`.
    pub fn from_verdict(event: &Event, view: &ClusterView, verdict: &Verdict) -> TraceRecord {
        let (source, policy, error) = match &verdict.source {
            Source::Active { policy } => (TraceSource::Active, policy.clone(), None),
            Source::Fallback { policy, error } => (
                TraceSource::Fallback,
                policy.clone(),
                Some(TracedFailure::from(error)),
            ),
        };
        TraceRecord {
            event: event.clone(),
            view: view.clone(),
            decision: verdict.decision.clone(),
            source,
            policy,
            error,
        }
    }
}

/// Reading or writing a trace file failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceFileError {
    /// Opening the file failed.
    #[error("trace {path}: opening failed: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Reading a line failed.
    #[error("trace {path}:{line}: reading failed: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a trace record.
    #[error("trace {path}:{line}: not a trace record: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("trace {path}: encoding a record failed: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Appending a record failed.
    #[error("trace {path}: appending a record failed: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// Appends records to a trace file, one line each, written with one `write` call per line
/// (no buffering: a crash loses at most the line being written).
#[derive(Debug)]
pub struct TraceWriter {
    path: PathBuf,
    file: File,
}

impl TraceWriter {
    /// Open `path` for appending, creating it if needed.
    pub fn append(path: &Path) -> Result<TraceWriter, TraceFileError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TraceFileError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(TraceWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Append one record and flush it.
    pub fn write(&mut self, record: &TraceRecord) -> Result<(), TraceFileError> {
        let mut line = serde_json::to_vec(record).map_err(|source| TraceFileError::Encode {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|source| TraceFileError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// Every record of the trace file at `path`; blank lines are skipped.
pub fn read_trace(path: &Path) -> Result<Vec<TraceRecord>, TraceFileError> {
    let file = File::open(path).map_err(|source| TraceFileError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut records = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|source| TraceFileError::Read {
            path: path.to_path_buf(),
            line: number,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| TraceFileError::Parse {
            path: path.to_path_buf(),
            line: number,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}
