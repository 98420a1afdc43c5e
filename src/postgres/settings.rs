//! What the PostgreSQL adapter needs from the local configuration, resolved once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, Credentials, InitdbOption, LibpqOptions};

/// Resolved settings of the local PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// Member name (application_name).
    pub name: String,
    /// Cluster name (`cluster_name`).
    pub scope: String,
    /// Directory with initdb, pg_ctl, ...
    pub bin_dir: PathBuf,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// `postgresql.config_dir`: where `postgresql.conf`, `postgresql.base.conf`,
    /// `pg_hba.conf` and `pg_ident.conf` live (the data directory unless set).
    pub config_dir: PathBuf,
    /// `listen_addresses`.
    pub listen_addresses: String,
    /// `port`.
    pub port: u16,
    /// Host the agent uses to reach its own server (socket dir or address).
    pub local_host: String,
    /// Superuser.
    pub superuser: Credentials,
    /// Replication role.
    pub replication: Credentials,
    /// pg_rewind role (superuser when not configured).
    pub rewind: Credentials,
    /// libpq options (`sslmode`, `sslcert`, ...) of the replication role: `primary_conninfo`
    /// and pg_basebackup carry them.
    pub replication_libpq: LibpqOptions,
    /// libpq options of the pg_rewind role (the superuser's when it has none of its own).
    pub rewind_libpq: LibpqOptions,
    /// `postgresql.parameters` from the local file.
    pub local_parameters: BTreeMap<String, String>,
    /// `postgresql.pg_hba` from the local file.
    pub pg_hba: Option<Vec<String>>,
    /// `postgresql.pg_ident` from the local file.
    pub pg_ident: Option<Vec<String>>,
    /// `bootstrap.pg_hba`.
    pub bootstrap_pg_hba: Vec<String>,
    /// `bootstrap.initdb`.
    pub initdb: Vec<InitdbOption>,
    /// `postgresql.basebackup`.
    pub basebackup: Vec<InitdbOption>,
    /// pgpass file the agent writes and points libpq at.
    pub pgpass: PathBuf,
    /// Bound on pg_ctl and friends.
    pub pg_ctl_timeout: Duration,
    /// Server log written by pg_ctl.
    pub log_file: PathBuf,
    /// The operator's scripts: callbacks, `pre_promote`, `before_stop`.
    pub hooks: super::hooks::Hooks,
}

impl PgSettings {
    /// Resolve from the local configuration.
    pub fn from_config(config: &Config) -> PgSettings {
        let pg = &config.postgresql;
        let bin_dir = pg.bin_dir.clone().unwrap_or_else(detect_bin_dir);
        let data_dir = pg.data_dir.clone();
        let socket_dir = pg
            .parameters
            .get("unix_socket_directories")
            .and_then(|dirs| {
                dirs.split(',')
                    .map(str::trim)
                    .find(|d| !d.is_empty())
                    .map(str::to_string)
            });
        let local_host = socket_dir.unwrap_or_else(|| pg.listen.local_host());
        let parent = data_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let dir_name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".into());
        PgSettings {
            name: config.name.clone(),
            scope: config.scope.clone(),
            bin_dir,
            listen_addresses: pg.listen.listen_addresses(),
            port: pg.listen.port,
            local_host,
            superuser: pg.authentication.superuser.clone(),
            replication: pg.authentication.replication.clone(),
            rewind: pg
                .authentication
                .rewind
                .clone()
                .unwrap_or_else(|| pg.authentication.superuser.clone()),
            replication_libpq: pg.authentication.libpq.replication.clone(),
            rewind_libpq: pg
                .authentication
                .libpq
                .rewind
                .clone()
                .unwrap_or_else(|| pg.authentication.libpq.superuser.clone()),
            local_parameters: pg.parameters.clone(),
            pg_hba: pg.pg_hba.clone(),
            pg_ident: pg.pg_ident.clone(),
            bootstrap_pg_hba: config.bootstrap.pg_hba.clone(),
            initdb: config.bootstrap.initdb.clone(),
            basebackup: pg.basebackup.clone(),
            pgpass: pg
                .pgpass
                .clone()
                .unwrap_or_else(|| parent.join(format!(".pgpass_{}", config.name))),
            pg_ctl_timeout: Duration::from_secs(pg.pg_ctl_timeout_secs.max(5)),
            log_file: parent.join(format!("{dir_name}.postgresql.log")),
            hooks: super::hooks::Hooks::from_config(config),
            config_dir: pg.config_dir.clone().unwrap_or_else(|| data_dir.clone()),
            data_dir,
        }
    }

    /// The configuration files live outside the data directory (`config_dir`).
    pub fn separate_config_dir(&self) -> bool {
        self.config_dir != self.data_dir
    }

    /// Path of a PostgreSQL program.
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
    }
}

/// Find PostgreSQL's binaries: Debian `/usr/lib/postgresql/<v>/bin`, RHEL
/// `/usr/pgsql-<v>/bin` (newest first), else rely on PATH.
pub fn detect_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            if let Ok(v) = e.file_name().to_string_lossy().parse::<u32>() {
                found.push((v, e.path().join("bin")));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(v) = name
                .strip_prefix("pgsql-")
                .and_then(|v| v.parse::<u32>().ok())
            {
                found.push((v, e.path().join("bin")));
            }
        }
    }
    found.retain(|(_, p)| p.join("pg_ctl").exists());
    found.sort();
    found.pop().map(|(_, p)| p).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_installed_postgresql() {
        // This machine (and CI) has Debian's postgresql-15.
        let dir = detect_bin_dir();
        assert!(dir.join("pg_ctl").exists(), "detected {dir:?}");
        assert!(dir.starts_with("/usr/lib/postgresql") || dir.starts_with("/usr/pgsql-"));
    }
}
