//! SIGHUP: re-read the local configuration and say what changed.
//!
//! Patroni's systemd unit reloads with `kill -HUP`, so an operator's routine `systemctl
//! reload` sends it. The default action of SIGHUP is to terminate the process, which would
//! leave PostgreSQL running unmanaged (a primary with nobody renewing its lease): the agent
//! handles the signal for its whole life and never stops on it.
//!
//! Applying a changed file to the running agent is not implemented yet: the file is read
//! and validated, an invalid file is reported with the field it names, and each changed
//! section is named with a warning that it takes effect at the next start.

use std::path::Path;

use crate::config::Config;

/// What one SIGHUP found, for the log (and the tests that read it).
#[derive(Debug, PartialEq)]
pub enum ReloadOutcome {
    /// The file is valid and says what the agent runs with.
    Unchanged,
    /// The file is valid and differs in these top-level sections; not applied.
    ChangedNotApplied(Vec<&'static str>),
    /// The file cannot be used; the running configuration stays.
    Invalid(String),
}

/// Re-reads `path` as the agent's start did and compares it with `running`.
pub fn reread(path: &Path, running: &Config) -> ReloadOutcome {
    match crate::config::load(path) {
        Err(e) => ReloadOutcome::Invalid(e.to_string()),
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            let changed = running.changed_sections(&loaded.config);
            if changed.is_empty() {
                ReloadOutcome::Unchanged
            } else {
                ReloadOutcome::ChangedNotApplied(changed)
            }
        }
    }
}

/// Handles one SIGHUP: logs what [`reread`] found. Never fails: the agent keeps running
/// with the configuration it has.
pub fn on_sighup(path: &Path, running: &Config) {
    let file = path.display().to_string();
    match reread(path, running) {
        ReloadOutcome::Unchanged => {
            tracing::info!(%file, "SIGHUP: configuration re-read, nothing changed")
        }
        ReloadOutcome::ChangedNotApplied(sections) => tracing::warn!(
            %file,
            changed = %sections.join(", "),
            "SIGHUP: configuration re-read; the changed sections are NOT applied to the running \
             agent (live reload is not implemented yet): they take effect when the agent restarts"
        ),
        ReloadOutcome::Invalid(error) => tracing::error!(
            %file,
            %error,
            "SIGHUP: the configuration file is invalid; the agent keeps running with the configuration it started with"
        ),
    }
}
