//! The core's inputs as JSON lines (`pgwarden.input_log`), each with the effects and
//! transitions the core made in answer: a recorded run that `core::replay` feeds to a fresh
//! core. Each line is written whole, once the effects of its input have been taken, so a
//! reader sees complete records (and at most one partial last line). A write error is
//! logged once and recording stops; the agent goes on.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::core::replay::Record;
use crate::core::why::TransitionRecord;
use crate::core::{Effect, Input, Instant};

/// The recorder: the record of the last input, completed by what the loop takes next.
pub struct InputLog {
    path: PathBuf,
    file: Option<File>,
    pending: Option<Record>,
}

impl InputLog {
    /// Opens (creates, appends to) `path`; the run starts at `at` (`Node::new`'s time).
    pub fn open(path: &Path, at: Instant) -> InputLog {
        let mut log = InputLog {
            path: path.to_path_buf(),
            file: None,
            pending: Some(Record::start(at)),
        };
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => log.file = Some(file),
            Err(error) => log.fail(&error),
        }
        log
    }

    /// `input` is about to be handled at `at`: writes the previous record, starts this one.
    pub fn input(&mut self, at: Instant, input: &Input) {
        self.flush();
        if self.file.is_some() {
            self.pending = Some(Record::input(at, input));
        }
    }

    /// A transition the core made in answer to the pending input.
    pub fn transition(&mut self, transition: &TransitionRecord) {
        if let Some(record) = self.pending.as_mut() {
            record.transition(transition);
        }
    }

    /// An effect the core emitted in answer to the pending input.
    pub fn effect(&mut self, effect: &Effect) {
        if let Some(record) = self.pending.as_mut() {
            record.effect(effect);
        }
    }

    /// Writes the pending record, if any.
    pub fn flush(&mut self) {
        let (Some(record), Some(file)) = (self.pending.take(), self.file.as_mut()) else {
            return;
        };
        let written = serde_json::to_string(&record)
            .map_err(std::io::Error::other)
            .and_then(|mut line| {
                line.push('\n');
                file.write_all(line.as_bytes())
            });
        if let Err(error) = written {
            self.fail(&error);
        }
    }

    fn fail(&mut self, error: &std::io::Error) {
        tracing::warn!(path = %self.path.display(), %error, "input log unavailable; no longer recording inputs");
        self.file = None;
        self.pending = None;
    }
}
