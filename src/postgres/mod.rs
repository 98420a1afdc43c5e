//! The local PostgreSQL: resolved settings, observation (`probe`), configuration files
//! (`conf`, pure), and the actions the core asks for (`actions`).

pub mod actions;
pub mod conf;
pub mod controldata;
pub mod hooks;
pub mod probe;
pub mod process;
pub mod settings;

use std::time::Duration;

pub use actions::PgController;

/// SIGKILL the postmaster of `settings.data_dir` and every process it forked, if one runs
/// (the `immediate-nolock` stop; see [`process::kill_server`]).
pub fn kill_postmaster(settings: &PgSettings) {
    if let Some(pid) = probe::postmaster_pid(&settings.data_dir).filter(|p| probe::pid_alive(*p)) {
        let killed = process::kill_server(pid);
        tracing::warn!(
            pid,
            processes = killed,
            "PostgreSQL killed (immediate-nolock)"
        );
    }
}
pub use settings::PgSettings;

/// A PostgreSQL operation that failed, naming what was attempted.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A program could not be started or waited for.
    #[error("{what}: {source}")]
    Spawn {
        /// Command line.
        what: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A program exited with an error.
    #[error("{what}: {status}: {stderr}")]
    Failed {
        /// Command line.
        what: String,
        /// Exit status.
        status: String,
        /// Its error output.
        stderr: String,
    },
    /// Something took too long.
    #[error("{what}: no result within {after:?}")]
    Timeout {
        /// What.
        what: String,
        /// Bound.
        after: Duration,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What.
        what: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A query failed.
    #[error("{what}: {source}")]
    Sql {
        /// What.
        what: String,
        /// Driver error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Input the adapter cannot use.
    #[error("{0}")]
    BadInput(String),
}
