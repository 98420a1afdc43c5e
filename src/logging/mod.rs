//! The agent's log, as Patroni's `log:` section configures it (see `config::log`): the
//! level and per-module levels, plain or JSON lines, standard output or a rotated file in
//! `log.dir`, all through a bounded queue a thread of its own drains, so writing the log
//! never holds the agent's loop. `PGWARDEN_LOG` (a `tracing` filter such as
//! `info,pgwarden::runtime=debug`) wins over the file's levels.

pub mod line;
pub mod writer;

use std::io;
use std::sync::{Arc, OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;
use writer::{Destination, LineQueue, QueueCounters, RotatingFile};

static COUNTERS: OnceLock<Arc<QueueCounters>> = OnceLock::new();

/// The log queue's counters, once the log is set up (for `/patroni`).
pub fn queue_counters() -> Option<Arc<QueueCounters>> {
    COUNTERS.get().cloned()
}

/// The filter: `env` (`PGWARDEN_LOG`) when set and valid, else `log.level` with
/// `log.loggers`. An invalid `env` is reported in the second value.
pub fn filter(config: &LogConfig, env: Option<&str>) -> (EnvFilter, Option<String>) {
    let from_file = || {
        let mut directives = config.level.directive().to_string();
        for (target, level) in &config.loggers {
            directives.push_str(&format!(",{target}={}", level.directive()));
        }
        EnvFilter::new(directives)
    };
    match env {
        Some(raw) => match EnvFilter::try_new(raw) {
            Ok(filter) => (filter, None),
            Err(e) => (
                from_file(),
                Some(format!(
                    "PGWARDEN_LOG={raw:?} is not a valid filter ({e}); using log.level"
                )),
            ),
        },
        None => (from_file(), None),
    }
}

/// Waits up to `bound` for the lines already queued to be written (at exit: the last
/// lines say why the agent stopped).
pub fn drain(bound: std::time::Duration) {
    let Some(counters) = queue_counters() else {
        return;
    };
    let started = std::time::Instant::now();
    while counters.waiting() > 0 && started.elapsed() < bound {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Starts the writer thread for `config` (`log.dir` or standard output) and returns what
/// the formatting layer writes through.
pub fn start_writer(config: &LogConfig) -> io::Result<QueueWriter> {
    let destination = match &config.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Destination::File(RotatingFile::open(
                dir,
                config.file_size,
                config.file_num,
                config.mode,
            )?)
        }
        None => Destination::Stdout,
    };
    let queue = LineQueue::start(destination, config.max_queue_size)?;
    let _ = COUNTERS.set(queue.counters());
    Ok(QueueWriter(queue))
}

/// Hands each formatted line to the writer thread.
#[derive(Clone)]
pub struct QueueWriter(LineQueue);

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueueWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl io::Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatting layer writes each line whole: one write, one queued line. A full
        // queue drops it (counted); it is not an error for the caller.
        self.0.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
