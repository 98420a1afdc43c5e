//! Carrying out `PgAction`s: initdb, pg_basebackup, pg_ctl start/stop/promote/reload,
//! pg_rewind, and the few SQL statements an agent needs (roles, slots). Each step names
//! what it attempted in its error. The decision to act was made by the core.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::conf::{self, StreamFrom};
use super::probe;
use super::settings::PgSettings;
use super::{hooks, process, PgError};
use crate::config::{DynamicConfig, InitdbOption};
use crate::core::sync::StandbyNames;
use crate::core::view::ControlState;
use crate::core::DemoteMode;
use crate::core::{slot_name_for_member, PgAction, Upstream};

/// How long `pg_ctl stop -m immediate` may take before the postmaster is killed.
const IMMEDIATE_STOP_WAIT: Duration = Duration::from_secs(5);

/// How long a killed server's processes may take to vanish before a start is tried anyway.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Executes PostgreSQL actions, one at a time, and remembers how PostgreSQL is configured.
pub struct PgController {
    s: Arc<PgSettings>,
    /// Notified when the postmaster is killed out of band (`kill_postmaster`): a
    /// `before_stop` script still running is then pointless and must not hold the worker.
    killed: Arc<tokio::sync::Notify>,
    standby: Option<StreamFrom>,
    sync_names: String,
    dynamic: DynamicConfig,
    /// What the server binary accepts, read once (`None` until then, or when it could not
    /// be read: then parameters are written as configured).
    server: Option<conf::ServerParameters>,
    /// The warnings of the last translation, so each is logged once, not at every write.
    translation_warnings: Vec<String>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

impl PgController {
    /// A controller for the configured PostgreSQL.
    pub fn new(settings: Arc<PgSettings>, dynamic: DynamicConfig) -> PgController {
        PgController {
            s: settings,
            killed: Arc::default(),
            standby: None,
            sync_names: String::new(),
            dynamic,
            server: None,
            translation_warnings: Vec::new(),
        }
    }

    /// Reads what the server binary accepts (`postgres --version`, `--describe-config`).
    /// The PostgreSQL worker calls it once, before its first action: never between a
    /// promotion's fencing check and the promotion. When it fails, parameters are written
    /// as configured (and PostgreSQL says which one it refuses).
    pub async fn learn_server(&mut self) {
        let postgres = self.s.bin("postgres");
        let wait = Duration::from_secs(30);
        let version = process::run(&postgres, &["--version".into()], &[], wait).await;
        let describe = process::run(&postgres, &["--describe-config".into()], &[], wait).await;
        match (version, describe) {
            (Ok(version), Ok(describe)) => {
                self.server = conf::ServerParameters::parse(&describe, &version);
                if self.server.is_none() {
                    tracing::warn!(%version, "cannot read the PostgreSQL version; parameters are written as configured");
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(
                error = %e,
                "cannot list the parameters PostgreSQL accepts; they are written as configured"
            ),
        }
    }

    /// Use this cluster-wide configuration for parameters and pg_hba from now on.
    pub fn set_dynamic(&mut self, dynamic: DynamicConfig) {
        self.dynamic = dynamic;
    }

    /// Shares `killed` with whoever kills the postmaster out of band (the executor's
    /// emergency stop), so a running `before_stop` is given up then.
    pub fn with_kill_signal(mut self, killed: Arc<tokio::sync::Notify>) -> PgController {
        self.killed = killed;
        self
    }

    /// The local settings in use.
    pub fn settings(&self) -> &PgSettings {
        &self.s
    }

    /// Use these local settings from now on (`POST /reload`, SIGHUP): the next action that
    /// writes the configuration files writes them.
    pub fn set_local(&mut self, settings: Arc<PgSettings>) {
        self.s = settings;
    }

    /// Carry out one action; bootstrap and clone return the system identifier.
    pub async fn execute(&mut self, action: &PgAction) -> Result<Option<String>, PgError> {
        match action {
            PgAction::Bootstrap => self.bootstrap().await.map(Some),
            PgAction::Clone { from } => self.clone_from(from).await.map(Some),
            PgAction::Reinitialize { from } => {
                self.stop("immediate").await?;
                self.wipe_data_dir()?;
                self.clone_from(from).await.map(Some)
            }
            PgAction::StartReplica { upstream } => {
                self.standby = Some(self.stream_from(upstream.as_ref())?);
                self.start().await.map(|_| None)
            }
            PgAction::StartPrimary { sync_standbys } => {
                self.standby = None;
                if let Some(names) = sync_standbys {
                    self.sync_names = names.render();
                }
                self.start().await.map(|_| None)
            }
            PgAction::Follow { upstream } => {
                self.standby = Some(self.stream_from(Some(upstream))?);
                self.write_conf()?;
                self.reload().await.map(|_| None)
            }
            PgAction::Promote { sync_standbys, .. } => {
                self.promote(sync_standbys.as_ref()).await.map(|_| None)
            }
            PgAction::Demote {
                mode: DemoteMode::ImmediateNolock,
            } => {
                self.kill();
                Ok(None)
            }
            PgAction::Demote { mode } => self.stop(mode.shutdown_mode()).await.map(|_| None),
            PgAction::Rewind { from } => self.rewind(from).await.map(|_| None),
            PgAction::SetSyncStandbys { names } => {
                // Only a primary is told its synchronous standbys: no standby setup.
                self.standby = None;
                self.sync_names = names.render();
                self.write_conf()?;
                self.reload().await.map(|_| None)
            }
            PgAction::EnsureSlots { names } => self.ensure_slots(names).await.map(|_| None),
            PgAction::Reload { primary } => {
                if *primary {
                    self.standby = None;
                }
                self.write_conf()?;
                self.reload().await.map(|_| None)
            }
            // Its start as a primary needs the fencing token checked after the stop, which
            // only the worker holds (`runtime::executor::run_pg_worker`).
            PgAction::Restart { .. } => Err(PgError::BadInput(
                "a restart is carried out by the PostgreSQL worker".into(),
            )),
        }
    }

    /// [`PgController::configured_parameters`] as this PostgreSQL version accepts them
    /// (see [`conf::for_server`]); a new warning is logged once.
    fn parameters(&mut self) -> BTreeMap<String, String> {
        let params = self.configured_parameters();
        let Some(server) = &self.server else {
            return params;
        };
        let (params, warnings) = conf::for_server(params, server);
        if warnings != self.translation_warnings {
            for warning in &warnings {
                tracing::warn!("postgresql parameters: {warning}");
            }
            self.translation_warnings = warnings;
        }
        params
    }

    fn configured_parameters(&self) -> BTreeMap<String, String> {
        let mut params = conf::merge_parameters(
            &self.dynamic.postgresql.parameters,
            &self.s.local_parameters,
        );
        params.insert("listen_addresses".into(), self.s.listen_addresses.clone());
        params.insert("port".into(), self.s.port.to_string());
        params
            .entry("cluster_name".into())
            .or_insert_with(|| self.s.scope.clone());
        // Defaults an HA cluster needs (Patroni sets the same ones).
        for (k, v) in [
            ("hot_standby", "on"),
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("wal_log_hints", "on"),
            // A standby reports its flush position at least this often even when no WAL
            // arrives: a commit waiting for a standby that was just made synchronous is
            // released by that report (PostgreSQL's default, 10 s, stalls writes that long).
            ("wal_receiver_status_interval", "1s"),
            // A standby that lost its primary retries streaming this often: the time a new
            // primary runs without a synchronous copy after a failover (default 5 s).
            ("wal_retrieve_retry_interval", "1s"),
        ] {
            params.entry(k.into()).or_insert_with(|| v.into());
        }
        params
    }

    fn write_file(&self, path: &Path, content: &str, mode: u32) -> Result<(), PgError> {
        let tmp = path.with_extension("pgwarden-tmp");
        std::fs::write(&tmp, content).map_err(io(format!("write {}", tmp.display())))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(io(format!("rename to {}", path.display())))
    }

    fn write_conf(&mut self) -> Result<(), PgError> {
        let mut params = self.parameters();
        if self.s.separate_config_dir() {
            self.adopt_config_files()?;
            for (param, file) in [("hba_file", "pg_hba.conf"), ("ident_file", "pg_ident.conf")] {
                let path = self.s.config_dir.join(file).display().to_string();
                params.entry(param.to_string()).or_insert(path);
            }
        }
        let text = conf::postgresql_conf(&params, self.standby.as_ref(), &self.sync_names);
        self.write_file(&self.s.config_dir.join("postgresql.conf"), &text, 0o600)?;
        // Local lines win over the cluster-wide ones (Patroni's precedence); with neither,
        // initdb's file (plus bootstrap.pg_hba) stays.
        let line_files = [
            ("pg_hba", &self.s.pg_hba, &self.dynamic.postgresql.pg_hba),
            (
                "pg_ident",
                &self.s.pg_ident,
                &self.dynamic.postgresql.pg_ident,
            ),
        ];
        for (source, local, cluster_wide) in line_files {
            if let Some(lines) = local.as_ref().or(cluster_wide.as_ref()) {
                let path = self.s.config_dir.join(format!("{source}.conf"));
                self.write_file(&path, &conf::lines_file(source, lines), 0o600)?;
            }
        }
        let signal = self.s.data_dir.join("standby.signal");
        if self.standby.is_some() {
            std::fs::write(&signal, "").map_err(io("write standby.signal"))?;
        } else if signal.exists() {
            std::fs::remove_file(&signal).map_err(io("remove standby.signal"))?;
        }
        Ok(())
    }

    /// With a separate `config_dir`: create it, and move into it the files initdb,
    /// pg_basebackup or pg_rewind left in the data directory (`postgresql.base.conf`,
    /// `pg_hba.conf`, `pg_ident.conf`) when it has none of its own, as Patroni keeps them
    /// there. A clone of a member that itself kept them elsewhere brings no base file: an
    /// empty one is written, so the `include` in `postgresql.conf` holds.
    fn adopt_config_files(&self) -> Result<(), PgError> {
        let dir = &self.s.config_dir;
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("chmod {}", dir.display())))?;
        for file in ["postgresql.base.conf", "pg_hba.conf", "pg_ident.conf"] {
            let (kept, left) = (dir.join(file), self.s.data_dir.join(file));
            if kept.exists() || !left.exists() {
                continue;
            }
            let text =
                std::fs::read_to_string(&left).map_err(io(format!("read {}", left.display())))?;
            self.write_file(&kept, &text, 0o600)?;
            std::fs::remove_file(&left).map_err(io(format!("remove {}", left.display())))?;
        }
        let base = dir.join("postgresql.base.conf");
        if !base.exists() {
            self.write_file(
                &base,
                "# Written by pgwarden: the data directory brought no configuration of its own.\n",
                0o600,
            )?;
        }
        Ok(())
    }

    /// `--config-file=...` for a server whose configuration lives in `config_dir`.
    fn config_file_arg(&self) -> Option<String> {
        self.s.separate_config_dir().then(|| {
            format!(
                "--config-file={}",
                self.s.config_dir.join("postgresql.conf").display()
            )
        })
    }

    fn write_pgpass(&self) -> Result<(), PgError> {
        let mut text = String::new();
        for c in [&self.s.replication, &self.s.superuser, &self.s.rewind] {
            if let Some(pw) = &c.password {
                text.push_str(&conf::pgpass_line(&c.username, pw));
            }
        }
        self.write_file(&self.s.pgpass, &text, 0o600)
    }

    fn stream_from(&self, upstream: Option<&Upstream>) -> Result<StreamFrom, PgError> {
        // `nostream`: configured as a standby of nobody, so it replays only what
        // restore_command and pg_wal give it.
        let upstream = upstream.filter(|u| u.stream);
        let (host, port) = match upstream {
            Some(u) => conf::parse_conn_url(&u.conn_url).ok_or_else(|| {
                PgError::BadInput(format!(
                    "leader conn_url {:?} is not postgres://host:port/db",
                    u.conn_url
                ))
            })?,
            None => (String::new(), 0),
        };
        self.write_pgpass()?;
        Ok(StreamFrom {
            host,
            port,
            user: self.s.replication.username.clone(),
            passfile: self.s.pgpass.display().to_string(),
            application_name: self.s.name.clone(),
            libpq: self.s.replication_libpq.clone(),
            slot: self
                .dynamic
                .postgresql
                .use_slots
                .then(|| slot_name_for_member(&self.s.name)),
        })
        .map(|mut from| {
            if upstream.is_none() {
                from.slot = None;
            }
            from
        })
    }

    fn ctl_args(&self, verb: &str) -> Vec<String> {
        vec![
            verb.to_string(),
            "-D".into(),
            self.s.data_dir.display().to_string(),
            "-w".into(),
            "-t".into(),
            self.s.pg_ctl_timeout.as_secs().to_string(),
        ]
    }

    async fn start(&mut self) -> Result<(), PgError> {
        if let Some(pid) = probe::postmaster_pid(&self.s.data_dir) {
            if probe::pid_alive(pid) {
                return Ok(()); // already running; configuration is applied by the caller's reload
            }
        }
        self.write_pgpass()?;
        self.write_conf()?;
        let cluster_wide: Vec<String> = self
            .config_file_arg()
            .into_iter()
            .chain(
                self.parameters()
                    .iter()
                    .filter(|(k, _)| conf::CLUSTER_WIDE.contains(&k.as_str()))
                    .map(|(k, v)| format!("--{k}={v}")),
            )
            .collect();
        let mut args = self.ctl_args("start");
        args.push("-l".into());
        args.push(self.s.log_file.display().to_string());
        if !cluster_wide.is_empty() {
            args.push("-o".into());
            args.push(cluster_wide.join(" "));
        }
        process::pg_ctl_start(
            &self.s.bin("pg_ctl"),
            &args,
            self.s.pg_ctl_timeout + Duration::from_secs(5),
        )
        .await
    }

    /// The emergency stop (`immediate-nolock`: the key is lost or the lease deadline has
    /// passed, another member may be promoted any moment): SIGKILL of the postmaster and
    /// every process it forked, no waiting on a postmaster that may be frozen. A crash, as
    /// far as the data is concerned, like an immediate shutdown.
    fn kill(&mut self) {
        super::kill_postmaster(&self.s);
    }

    /// The operator's `before_stop` script, waited for (bounded by the callback timeout, and
    /// given up when the postmaster is killed meanwhile: a deadline passed); its exit status
    /// is only logged, as in Patroni. An immediate stop (a fence, a re-clone) does not wait
    /// for it.
    async fn before_stop(&self) {
        let Some(command) = &self.s.hooks.before_stop else {
            return;
        };
        let end = hooks::run(command, self.s.hooks.timeout, self.killed.notified()).await;
        let command = command.join(" ");
        if end.succeeded() {
            tracing::info!(%command, "before_stop script finished");
        } else {
            tracing::warn!(%command, %end, "before_stop script failed; stopping PostgreSQL anyway");
        }
    }

    async fn stop(&mut self, mode: &str) -> Result<(), PgError> {
        let Some(pid) = probe::postmaster_pid(&self.s.data_dir).filter(|p| probe::pid_alive(*p))
        else {
            return Ok(());
        };
        if mode == "immediate" && process::is_stopped(pid) {
            // SIGSTOPped: pg_ctl's SIGQUIT would wait in its queue until the wait expires.
            let killed = process::kill_server_and_wait(pid, KILL_WAIT).await;
            tracing::warn!(
                pid,
                processes = killed,
                "the postmaster is stopped (SIGSTOP); killed it and its children"
            );
            return Ok(());
        }
        if mode != "immediate" {
            self.before_stop().await;
        }
        let mut args = self.ctl_args("stop");
        args.push("-m".into());
        args.push(mode.into());
        // An immediate stop takes well under a second when the postmaster runs; waiting the
        // whole pg_ctl_timeout for one that is frozen would keep a primary whose sessions
        // may still commit alive (and the leader key held) for a minute.
        let stop_timeout = self.primary_stop_timeout(mode);
        let wait = if mode == "immediate" {
            self.s.pg_ctl_timeout.min(IMMEDIATE_STOP_WAIT)
        } else if let Some(bound) = stop_timeout {
            self.s.pg_ctl_timeout.min(bound)
        } else {
            self.s.pg_ctl_timeout
        };
        if let Some(t) = args.iter().position(|a| a == "-t") {
            args[t + 1] = wait.as_secs().max(1).to_string();
        }
        let result = process::run(
            &self.s.bin("pg_ctl"),
            &args,
            &[],
            wait + Duration::from_secs(2),
        )
        .await;
        if let Err(error) = result {
            if let Some(bound) = stop_timeout.filter(|_| probe::pid_alive(pid)) {
                // Patroni's primary_stop_timeout: a primary whose clean stop waits on a
                // synchronous standby that never answers is killed rather than kept.
                let killed = process::kill_server_and_wait(pid, KILL_WAIT).await;
                tracing::warn!(%error, pid, processes = killed, timeout_s = bound.as_secs(),
                    "PostgreSQL did not stop within primary_stop_timeout; killed it");
                return Ok(());
            }
            if mode != "immediate" {
                return Err(error);
            }
            // The postmaster did not obey (SIGSTOPped or hung): kill it and every process
            // it forked. Its backends would otherwise keep serving, and committing on, the
            // connections they already have.
            tracing::warn!(%error, pid, "pg_ctl stop -m immediate failed; killing the postmaster and its children");
            let killed = process::kill_server_and_wait(pid, KILL_WAIT).await;
            tracing::warn!(pid, processes = killed, "PostgreSQL killed");
        }
        Ok(())
    }

    /// `primary_stop_timeout` when it bounds this stop: a clean stop of a primary (no
    /// `standby.signal`) under synchronous mode, with the setting above 0 (Patroni's rule).
    fn primary_stop_timeout(&self, mode: &str) -> Option<Duration> {
        let seconds = self.dynamic.primary_stop_timeout;
        let synchronous = self.dynamic.synchronous_mode != crate::config::SynchronousMode::Off;
        let primary = !self.s.data_dir.join("standby.signal").exists();
        (mode != "immediate" && seconds > 0 && synchronous && primary)
            .then(|| Duration::from_secs(seconds.into()))
    }

    async fn reload(&self) -> Result<(), PgError> {
        let args = vec![
            "reload".into(),
            "-D".into(),
            self.s.data_dir.display().to_string(),
        ];
        process::run(&self.s.bin("pg_ctl"), &args, &[], self.s.pg_ctl_timeout)
            .await
            .map(|_| ())
    }

    /// Wait (bounded by `pg_ctl_timeout`) until new sessions see `name = value`.
    async fn await_setting(&self, name: &str, value: &str) -> Result<(), PgError> {
        let literal = |v: &str| format!("'{}'", v.replace('\'', "''"));
        let sql = format!(
            "DO $$ BEGIN IF current_setting({}) IS DISTINCT FROM {} THEN \
             RAISE EXCEPTION 'not reloaded yet'; END IF; END $$",
            literal(name),
            literal(value)
        );
        let what = format!("wait for {name} = {value} after reload");
        let deadline = tokio::time::Instant::now() + self.s.pg_ctl_timeout;
        loop {
            let attempt = execute_sql(&self.s, &sql, &what, Duration::from_secs(5)).await;
            match attempt {
                Ok(()) => return Ok(()),
                Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn promote(&mut self, sync: Option<&StandbyNames>) -> Result<(), PgError> {
        if let Some(sync) = sync {
            // Strict mode: the setting must be in effect before the first commit the new
            // primary could acknowledge. A standby ignores it, so it is set now. Committing
            // backends do not read the setting itself: they wait only once the checkpointer
            // has published it (`sync_standbys_defined` in shared memory), which it does when
            // it handles the reload. A new session seeing the value proves the postmaster
            // reloaded and so has signalled the checkpointer; a CHECKPOINT (a restartpoint
            // here, quick when little was replayed since the last one) proves the
            // checkpointer went round its loop, handling that signal, since.
            self.sync_names = sync.render();
            self.write_conf()?;
            self.reload().await?;
            self.await_setting("synchronous_standby_names", &self.sync_names)
                .await?;
            execute_sql(
                &self.s,
                "CHECKPOINT",
                "CHECKPOINT so the checkpointer publishes synchronous_standby_names",
                self.s.pg_ctl_timeout,
            )
            .await?;
        }
        let args = self.ctl_args("promote");
        process::run(
            &self.s.bin("pg_ctl"),
            &args,
            &[],
            self.s.pg_ctl_timeout + Duration::from_secs(5),
        )
        .await?;
        // PostgreSQL is a primary now, whatever happens next: a failure below must not be
        // reported as a failed promotion (the core would release the key while we accept
        // writes), so it is logged and left to the next cycle.
        self.standby = None;
        if sync.is_none() {
            self.sync_names = String::new();
        }
        if let Err(error) = self.write_conf() {
            tracing::warn!(%error, "rewriting postgresql.conf after promote failed");
        } else if let Err(error) = self.reload().await {
            tracing::warn!(%error, "reload after promote failed");
        }
        // pg_rewind on the old primary needs the new timeline in pg_control. A checkpoint
        // can take long; it runs beside the action queue so a demotion never waits for it.
        let settings = self.s.clone();
        tokio::spawn(async move {
            if let Err(error) = execute_sql(
                &settings,
                "CHECKPOINT",
                "CHECKPOINT after promote",
                Duration::from_secs(120),
            )
            .await
            {
                tracing::warn!(%error, "checkpoint after promote failed");
            }
        });
        Ok(())
    }

    fn wipe_data_dir(&self) -> Result<(), PgError> {
        let dir = &self.s.data_dir;
        if probe::postmaster_pid(dir).is_some_and(probe::pid_alive) {
            return Err(PgError::BadInput(format!(
                "refusing to empty {}: a postmaster is running on it",
                dir.display()
            )));
        }
        if dir.exists() {
            for entry in std::fs::read_dir(dir).map_err(io(format!("read {}", dir.display())))? {
                let path = entry.map_err(io("read dir entry"))?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                        .map_err(io(format!("remove {}", path.display())))?;
                } else {
                    std::fs::remove_file(&path)
                        .map_err(io(format!("remove {}", path.display())))?;
                }
            }
        } else {
            std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod data dir"))
    }

    async fn sysid(&self) -> Result<String, PgError> {
        Ok(probe::read_control_data(&self.s).await?.sysid)
    }

    /// initdb, first start, roles. All or nothing: a failure leaves no half-made cluster
    /// behind (see [`PgController::discard_failed_bootstrap`]), so the next attempt, on this
    /// node or another, starts from an empty data directory.
    async fn bootstrap(&mut self) -> Result<String, PgError> {
        // Only an empty data directory is bootstrapped (the core decides so), so whatever
        // it holds after a failure is the failed attempt's (initdb cleans up after itself,
        // except when it is killed for taking too long).
        self.wipe_data_dir()?;
        if let Err(error) = self.initdb().await {
            self.discard_failed_bootstrap().await;
            return Err(error);
        }
        match self.first_start().await {
            Ok(sysid) => Ok(sysid),
            Err(error) => {
                self.discard_failed_bootstrap().await;
                Err(error)
            }
        }
    }

    /// Stops whatever the failed bootstrap started and moves its data directory aside to
    /// `<data_dir>_failed_<unix time>` (as Patroni does), for the operator to inspect.
    async fn discard_failed_bootstrap(&mut self) {
        let dir = self.s.data_dir.clone();
        if probe::postmaster_pid(&dir).is_some_and(probe::pid_alive) {
            if let Err(e) = self.stop("immediate").await {
                // Never move a directory a postmaster still runs on.
                tracing::error!(error = %e, "stopping the PostgreSQL of a failed bootstrap failed; its data directory stays where it is");
                return;
            }
        }
        if !dir.exists() || std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) {
            return;
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut aside = dir.clone().into_os_string();
        aside.push(format!("_failed_{stamp}"));
        match std::fs::rename(&dir, &aside) {
            Ok(()) => tracing::warn!(
                from = %dir.display(),
                to = %std::path::Path::new(&aside).display(),
                "moved the data directory of the failed bootstrap aside"
            ),
            Err(e) => tracing::error!(
                error = %e,
                dir = %dir.display(),
                "could not move the data directory of the failed bootstrap aside; the next \
                 start will find it initialized"
            ),
        }
    }

    async fn initdb(&mut self) -> Result<(), PgError> {
        let pwfile = self.s.pgpass.with_extension("initdb-pw");
        let password = self.s.superuser.password.clone().unwrap_or_default();
        self.write_file(&pwfile, &format!("{password}\n"), 0o600)?;
        let mut args = vec![
            "-D".to_string(),
            self.s.data_dir.display().to_string(),
            format!("--username={}", self.s.superuser.username),
            format!("--pwfile={}", pwfile.display()),
        ];
        let names: Vec<&str> = self.s.initdb.iter().map(InitdbOption::name).collect();
        // Password authentication unless the operator chose otherwise: initdb's default is
        // `trust` for local connections, which would make the configured passwords moot.
        if !names.iter().any(|n| n.starts_with("auth")) {
            args.push("--auth-local=scram-sha-256".into());
            args.push("--auth-host=scram-sha-256".into());
        }
        args.extend(self.s.initdb.iter().map(InitdbOption::to_arg));
        let result =
            process::run(&self.s.bin("initdb"), &args, &[], Duration::from_secs(300)).await;
        let _ = std::fs::remove_file(&pwfile);
        result.map(|_| ())
    }

    /// After initdb: configuration files, the first start, the roles.
    async fn first_start(&mut self) -> Result<String, PgError> {
        let data = &self.s.data_dir;
        std::fs::rename(
            data.join("postgresql.conf"),
            data.join("postgresql.base.conf"),
        )
        .map_err(io("move initdb's postgresql.conf to postgresql.base.conf"))?;
        if self.s.pg_hba.is_none()
            && self.dynamic.postgresql.pg_hba.is_none()
            && !self.s.bootstrap_pg_hba.is_empty()
        {
            let mut hba = std::fs::read_to_string(data.join("pg_hba.conf"))
                .map_err(io("read pg_hba.conf"))?;
            hba.push_str("\n# bootstrap.pg_hba\n");
            hba.push_str(&conf::lines_file(
                "bootstrap.pg_hba",
                &self.s.bootstrap_pg_hba,
            ));
            self.write_file(&data.join("pg_hba.conf"), &hba, 0o600)?;
        }
        self.standby = None;
        self.sync_names = String::new();
        self.start().await?;
        self.create_roles().await?;
        self.sysid().await
    }

    async fn create_roles(&self) -> Result<(), PgError> {
        let quote_ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let quote_lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let mut sql = String::new();
        let su = &self.s.superuser.username;
        let repl = &self.s.replication;
        if &repl.username != su {
            sql.push_str(&format!(
                "CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD {};\n",
                quote_ident(&repl.username),
                quote_lit(repl.password.as_deref().unwrap_or_default())
            ));
        }
        let rw = &self.s.rewind;
        if &rw.username != su && rw.username != repl.username {
            let name = quote_ident(&rw.username);
            sql.push_str(&format!(
                "CREATE ROLE {name} WITH LOGIN PASSWORD {};\n",
                quote_lit(rw.password.as_deref().unwrap_or_default())
            ));
            for f in [
                "pg_catalog.pg_ls_dir(text, boolean, boolean)",
                "pg_catalog.pg_stat_file(text, boolean)",
                "pg_catalog.pg_read_binary_file(text)",
                "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
            ] {
                sql.push_str(&format!("GRANT EXECUTE ON FUNCTION {f} TO {name};\n"));
            }
        }
        if !sql.is_empty() {
            execute_sql(
                &self.s,
                &sql,
                "create replication and rewind roles",
                Duration::from_secs(30),
            )
            .await?;
        }
        Ok(())
    }

    async fn clone_from(&mut self, from: &Upstream) -> Result<String, PgError> {
        self.wipe_data_dir()?;
        // The copy always comes from the source; whether the standby then streams from it
        // is `from.stream`'s to say.
        let source = Upstream {
            stream: true,
            ..from.clone()
        };
        let stream = self.stream_from(Some(&source))?;
        let mut args = vec![
            "-D".to_string(),
            self.s.data_dir.display().to_string(),
            "-h".into(),
            stream.host.clone(),
            "-p".into(),
            stream.port.to_string(),
            "-U".into(),
            self.s.replication.username.clone(),
            "--no-password".into(),
            "--wal-method=stream".into(),
            "--checkpoint=fast".into(),
        ];
        // The role's sslmode, sslcert, ... (-h, -p and -U above take precedence).
        let libpq = conf::libpq_conninfo_for_command(&self.s.replication_libpq.0);
        if !libpq.is_empty() {
            args.push(format!("--dbname={libpq}"));
        }
        args.extend(self.s.basebackup.iter().map(InitdbOption::to_arg));
        let env = [("PGPASSFILE", self.s.pgpass.display().to_string())];
        if let Err(e) = process::run(
            &self.s.bin("pg_basebackup"),
            &args,
            &env,
            Duration::from_secs(3600),
        )
        .await
        {
            let _ = self.wipe_data_dir(); // a half-copied directory must not look like a cluster
            return Err(e);
        }
        self.standby = Some(self.stream_from(Some(from))?);
        self.sync_names = String::new();
        self.start().await?;
        self.sysid().await
    }

    async fn rewind(&mut self, from: &Upstream) -> Result<(), PgError> {
        self.stop("fast").await?;
        let data = self.s.data_dir.display().to_string();
        let clean = matches!(
            probe::read_control_data(&self.s).await?.state,
            ControlState::ShutDown | ControlState::ShutDownInRecovery
        );
        if !clean {
            // pg_rewind needs a cleanly shut down target: finish crash recovery in
            // single-user mode first (it exits at end of input). Single-user mode refuses
            // standby mode, and a node stopped while it started as a standby has the signal
            // file: drop it (and recovery.signal); `start` writes the standby setup again.
            for signal in ["standby.signal", "recovery.signal"] {
                let path = self.s.data_dir.join(signal);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(PgError::Io {
                            what: format!("remove {}", path.display()),
                            source,
                        })
                    }
                }
            }
            // The configuration files are those of the last start (config_dir included).
            let mut args = vec!["--single".to_string(), "-D".into(), data.clone()];
            args.extend(self.config_file_arg());
            args.extend(["-c".into(), "archive_mode=off".into(), "postgres".into()]);
            process::run(
                &self.s.bin("postgres"),
                &args,
                &[],
                Duration::from_secs(600),
            )
            .await?;
        }
        let (host, port) = conf::parse_conn_url(&from.conn_url).ok_or_else(|| {
            PgError::BadInput(format!(
                "leader conn_url {:?} is not postgres://host:port/db",
                from.conn_url
            ))
        })?;
        self.write_pgpass()?;
        let mut source = format!(
            "host={host} port={port} user={} dbname=postgres",
            self.s.rewind.username
        );
        let libpq = conf::libpq_conninfo_for_command(&self.s.rewind_libpq.0);
        if !libpq.is_empty() {
            source.push(' ');
            source.push_str(&libpq);
        }
        let args = vec![
            format!("--target-pgdata={data}"),
            format!("--source-server={source}"),
            "--no-ensure-shutdown".into(),
        ];
        let env = [("PGPASSFILE", self.s.pgpass.display().to_string())];
        process::run(
            &self.s.bin("pg_rewind"),
            &args,
            &env,
            Duration::from_secs(3600),
        )
        .await?;
        // pg_rewind copied the leader's configuration files; ours are rewritten on start.
        self.standby = Some(self.stream_from(Some(from))?);
        self.sync_names = String::new();
        self.start().await
    }

    async fn ensure_slots(&self, names: &[String]) -> Result<(), PgError> {
        for name in names {
            let quoted = name.replace('\'', "''");
            let sql = format!(
                "SELECT pg_create_physical_replication_slot('{quoted}', true) WHERE NOT EXISTS \
                 (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{quoted}')"
            );
            execute_sql(
                &self.s,
                &sql,
                &format!("create replication slot {name}"),
                Duration::from_secs(10),
            )
            .await?;
        }
        Ok(())
    }
}

/// Run `sql` on the local server as the superuser, bounded by `timeout` in all.
async fn execute_sql(
    settings: &PgSettings,
    sql: &str,
    what: &str,
    timeout: Duration,
) -> Result<(), PgError> {
    let work = async {
        let client = probe::connect(settings, timeout).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|source| PgError::Sql {
                what: what.to_string(),
                source,
            })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| PgError::Timeout {
            what: what.to_string(),
            after: timeout,
        })?
}
