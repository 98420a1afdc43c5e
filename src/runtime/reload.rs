//! Reloading the local configuration: SIGHUP and `POST /reload` (`patronictl reload`).
//!
//! Patroni's systemd unit reloads with `kill -HUP`, so an operator's routine `systemctl
//! reload` sends it. The default action of SIGHUP is to terminate the process, which would
//! leave PostgreSQL running unmanaged (a primary with nobody renewing its lease): the agent
//! handles the signal for its whole life and never stops on it.
//!
//! A reload re-reads and validates the file. An invalid file is reported with the field it
//! names and changes nothing. A valid one is applied at once where it can be:
//! `postgresql.parameters`, `pg_hba`, `pg_ident` (the files are rewritten and PostgreSQL
//! reloaded, as Patroni does even when nothing changed, so a reload also picks up renewed
//! certificates), `tags` (`nofailover`, `failover_priority`, `nosync`, ...),
//! `postgresql.use_pg_rewind`, `remove_data_directory_on_rewind_failure` and
//! `remove_data_directory_on_diverged_timelines`, the callbacks,
//! `pre_promote` and `before_stop` scripts, the REST API's certificates, access rules and
//! client, and etcd's credentials and TLS files (a new connection, see `etcd_link`); each
//! other changed section is named with a warning that it takes effect when the agent
//! restarts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;

use super::callbacks::CallbackWork;
use super::executor::PgWork;
use crate::config::Config;
use crate::core::Input;
use crate::postgres::PgSettings;

/// What one reload found and did.
#[derive(Debug, PartialEq)]
pub enum ReloadOutcome {
    /// The file is valid. `applied`: the settings it changed that are in force (or being
    /// put in force: a new etcd connection); `not_applied`: the sections that take effect
    /// at the next start.
    Reloaded {
        /// Changed and applied (`postgresql.parameters`, ...).
        applied: Vec<&'static str>,
        /// Changed, not applied to the running agent.
        not_applied: Vec<&'static str>,
    },
    /// The file cannot be used; the running configuration stays.
    Invalid(String),
}

/// What a reload changes in the REST API: its certificate, the client towards peers, and
/// the access rules (allowlist, credentials, extra headers).
pub struct Api {
    /// The REST API's TLS, when it speaks TLS.
    pub server_tls: Option<Arc<crate::api::serve::ServerTlsHandle>>,
    /// Towards the peers' APIs.
    pub client: super::http::ApiClient,
    /// Who may call what.
    pub rules: crate::api::access::SharedRules,
}

/// Re-reads the agent's file and applies it; shared by the signal handler and the REST API.
pub struct Reloader {
    path: PathBuf,
    /// What the agent runs with: the file it started with, plus every applied reload.
    running: Mutex<(Config, Arc<PgSettings>)>,
    pg_queue: UnboundedSender<PgWork>,
    callbacks: UnboundedSender<CallbackWork>,
    inputs: super::inbox::InputSender,
    api: Api,
    /// Counts reloads of the access rules (see `reload_rules`).
    rules_generation: Arc<std::sync::atomic::AtomicU64>,
    /// The connection to etcd, made again when its credentials or TLS files change.
    etcd: Option<super::etcd_link::EtcdLink>,
    /// The decision log, told the secrets to scrub (the file's, old and new).
    decisions: Option<Arc<crate::telemetry::decisions::DecisionLog>>,
}

impl Reloader {
    /// A reloader for the agent started with `config` (read from `path`).
    pub fn new(
        path: PathBuf,
        config: Config,
        pg: Arc<PgSettings>,
        pg_queue: UnboundedSender<PgWork>,
        callbacks: UnboundedSender<CallbackWork>,
        inputs: super::inbox::InputSender,
        api: Api,
    ) -> Reloader {
        Reloader {
            path,
            running: Mutex::new((config, pg)),
            pg_queue,
            callbacks,
            inputs,
            api,
            rules_generation: Arc::default(),
            etcd: None,
            decisions: None,
        }
    }

    /// Keeps `log` scrubbing the secrets of every file read.
    pub fn with_decisions(
        mut self,
        log: Arc<crate::telemetry::decisions::DecisionLog>,
    ) -> Reloader {
        self.decisions = Some(log);
        self
    }

    /// Reconnects to etcd through `link` when a reload changes its credentials or TLS
    /// files.
    pub fn with_etcd(mut self, link: super::etcd_link::EtcdLink) -> Reloader {
        self.etcd = Some(link);
        self
    }

    /// The configuration the agent runs with now, and its PostgreSQL settings.
    pub fn settings(&self) -> (Config, Arc<PgSettings>) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the file and applies what can be applied; `trigger` names the cause in the
    /// log. Never fails: an invalid file leaves everything as it was.
    pub fn reload(&self, trigger: &str) -> ReloadOutcome {
        let file = self.path.display().to_string();
        let loaded = match crate::config::load(&self.path) {
            Ok(loaded) => loaded,
            Err(e) => {
                let error = e.to_string();
                tracing::error!(%file, %error, "{trigger}: the configuration file is invalid; the agent keeps running with the configuration it has");
                return ReloadOutcome::Invalid(error);
            }
        };
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let new = loaded.config;
        // One reload at a time from here (SIGHUP and POST /reload may cross): what is in
        // force and what `running` says must come from the same file.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // Certificates are read before anything changes: files that cannot be used refuse
        // the whole reload, as an invalid file does.
        let etcd_reconnect = match self.check_etcd(&running.0, &new) {
            Ok(reconnect) => reconnect,
            Err(error) => {
                let error = error.to_string();
                tracing::error!(%file, %error, "{trigger}: the etcd TLS files cannot be used; the agent keeps running with the configuration it has");
                return ReloadOutcome::Invalid(error);
            }
        };
        if let Err(error) = self.reload_tls(&new) {
            let error = error.to_string();
            tracing::error!(%file, %error, "{trigger}: the TLS files cannot be used; the agent keeps running with the configuration it has");
            return ReloadOutcome::Invalid(error);
        }
        let (config, pg) = &mut *running;
        let old_secrets = config.secret_values();
        let mut applied = reloadable_changes(config, &new);
        if let (true, Some(link)) = (etcd_reconnect, &self.etcd) {
            applied.push("etcd3 credentials or TLS files (connecting again in the background)");
            link.want(new.etcd.clone());
            config.etcd = new.etcd.clone();
        }
        config.postgresql.parameters = new.postgresql.parameters.clone();
        config.postgresql.pg_hba = new.postgresql.pg_hba.clone();
        config.postgresql.pg_ident = new.postgresql.pg_ident.clone();
        config.postgresql.use_pg_rewind = new.postgresql.use_pg_rewind;
        config.postgresql.remove_data_directory_on_rewind_failure =
            new.postgresql.remove_data_directory_on_rewind_failure;
        config
            .postgresql
            .remove_data_directory_on_diverged_timelines =
            new.postgresql.remove_data_directory_on_diverged_timelines;
        config.tags = new.tags.clone();
        config.postgresql.callbacks = new.postgresql.callbacks.clone();
        config.postgresql.pre_promote = new.postgresql.pre_promote.clone();
        config.postgresql.before_stop = new.postgresql.before_stop.clone();
        config.ctl = new.ctl.clone();
        if self.api.server_tls.is_some() && new.restapi.tls.is_some() {
            config.restapi.tls = new.restapi.tls.clone();
        }
        config.restapi.authentication = new.restapi.authentication.clone();
        config.restapi.access = new.restapi.access.clone();
        config.restapi.cafile = new.restapi.cafile.clone();
        config.pgwarden.protect_reads = new.pgwarden.protect_reads;
        self.reload_rules(config);
        if let Some(log) = &self.decisions {
            // Texts recorded before may still hold the old secrets: both are scrubbed.
            let mut secrets = old_secrets;
            secrets.extend(new.secret_values());
            log.set_secrets(secrets);
        }
        let not_applied = config.changed_sections(&new);
        let mut settings = PgSettings::clone(pg);
        settings.local_parameters = new.postgresql.parameters.clone();
        settings.pg_hba = new.postgresql.pg_hba.clone();
        settings.pg_ident = new.postgresql.pg_ident.clone();
        settings.hooks = crate::postgres::hooks::Hooks {
            timeout: settings.hooks.timeout,
            ..crate::postgres::hooks::Hooks::from_config(config)
        };
        if settings.hooks != pg.hooks {
            let _ = self
                .callbacks
                .send(CallbackWork::Hooks(Arc::new(settings.hooks.clone())));
        }
        *pg = Arc::new(settings);
        // The worker takes the settings before the core's reload action reaches it.
        let _ = self.pg_queue.send(PgWork::Local(pg.clone()));
        let _ = self.inputs.send(Input::LocalConfigReloaded {
            settings: super::reloadable_settings(config),
        });
        if applied.is_empty() {
            tracing::info!(%file, "{trigger}: configuration re-read; PostgreSQL is reloaded");
        } else {
            tracing::info!(%file, changed = %applied.join(", "), "{trigger}: configuration re-read; changes applied, PostgreSQL reloaded");
        }
        if !not_applied.is_empty() {
            tracing::warn!(
                %file,
                changed = %not_applied.join(", "),
                "{trigger}: these changed sections are NOT applied to the running agent: they take effect when the agent restarts"
            );
        }
        ReloadOutcome::Reloaded {
            applied,
            not_applied,
        }
    }

    /// Re-reads the REST API's certificate and key (new connections get them; Patroni's
    /// reload does the same when the file changed) and the client's towards peers. Turning
    /// TLS on or off changes `api_url`: that waits for a restart (reported as a change to
    /// `restapi` not applied).
    fn reload_tls(&self, new: &Config) -> Result<(), crate::tls::TlsError> {
        // Both are read before either is installed: a reload applies whole or not at all.
        let client = crate::tls::client_config(&new.ctl.tls, "ctl")?;
        if let (Some(handle), Some(tls)) = (&self.api.server_tls, &new.restapi.tls) {
            for warning in handle.reload(tls)? {
                tracing::warn!("{warning}");
            }
        }
        self.api.client.install(client, new.ctl.credentials.clone());
        Ok(())
    }

    /// Whether `new` asks for another connection to etcd: the same endpoints (new ones wait
    /// for a restart, as every other `etcd3` change) with other credentials, TLS settings or
    /// TLS file contents than the connection in use. Its TLS files are read here, so
    /// unusable ones refuse the reload before anything changes.
    fn check_etcd(&self, running: &Config, new: &Config) -> Result<bool, crate::tls::TlsError> {
        let Some(link) = &self.etcd else {
            return Ok(false);
        };
        let (old, fresh) = (&running.etcd, &new.etcd);
        if old.hosts != fresh.hosts || old.protocol != fresh.protocol || !link.differs(fresh) {
            return Ok(false);
        }
        super::etcd_tls(fresh)?;
        Ok(true)
    }

    /// New access rules from `config`, in force at once; host names in the allowlist
    /// allow nothing until they are resolved, on a task of their own (bounded), so a slow
    /// DNS never delays the credentials. A later reload's rules are never overwritten by an
    /// earlier reload's late resolution.
    fn reload_rules(&self, config: &Config) {
        use crate::api::access::Rules;
        use std::sync::atomic::Ordering;
        let generation = self.rules_generation.fetch_add(1, Ordering::SeqCst) + 1;
        *self.api.rules.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Rules::new(config, Vec::new()));
        let has_hosts = config
            .restapi
            .access
            .allowlist
            .iter()
            .any(|e| matches!(e, crate::config::AllowEntry::Host(_)));
        if !has_hosts {
            return;
        }
        let (config, rules) = (config.clone(), self.api.rules.clone());
        let current = self.rules_generation.clone();
        tokio::spawn(async move {
            let resolved = Rules::resolve(&config).await;
            let mut slot = rules.write().unwrap_or_else(|e| e.into_inner());
            if current.load(Ordering::SeqCst) == generation {
                *slot = Arc::new(resolved);
            }
        });
    }
}

/// The settings a reload applies, by name, that differ.
fn reloadable_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.postgresql, &new.postgresql);
    [
        ("postgresql.parameters", a.parameters != b.parameters),
        ("postgresql.pg_hba", a.pg_hba != b.pg_hba),
        ("postgresql.pg_ident", a.pg_ident != b.pg_ident),
        (
            "postgresql.use_pg_rewind",
            a.use_pg_rewind != b.use_pg_rewind,
        ),
        (
            "postgresql.remove_data_directory_on_rewind_failure",
            a.remove_data_directory_on_rewind_failure != b.remove_data_directory_on_rewind_failure,
        ),
        (
            "postgresql.remove_data_directory_on_diverged_timelines",
            a.remove_data_directory_on_diverged_timelines
                != b.remove_data_directory_on_diverged_timelines,
        ),
        ("tags", running.tags != new.tags),
        ("postgresql.callbacks", a.callbacks != b.callbacks),
        ("postgresql.pre_promote", a.pre_promote != b.pre_promote),
        ("postgresql.before_stop", a.before_stop != b.before_stop),
        ("ctl", running.ctl != new.ctl),
        (
            "restapi.authentication",
            running.restapi.authentication != new.restapi.authentication,
        ),
        (
            "restapi allowlist and headers",
            running.restapi.access != new.restapi.access,
        ),
        (
            "pgwarden.protect_reads",
            running.pgwarden.protect_reads != new.pgwarden.protect_reads,
        ),
        (
            "restapi TLS files",
            running.restapi.tls.is_some()
                && new.restapi.tls.is_some()
                && running.restapi.tls != new.restapi.tls,
        ),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}
