//! The driver: feeds the core its inputs (lock store watch, PostgreSQL probes, timers,
//! effect results), executes the effects it emits, and publishes its status for the REST
//! API. The only async, clock-reading, IO-doing layer around the pure core.

pub mod callbacks;
pub mod clock;
pub mod etcd_link;
pub mod executor;
pub mod failsafe;
pub mod http;
pub mod inbox;
pub mod input_log;
pub mod member;
pub mod policy;
pub mod reload;
pub mod role_history;
pub mod turn;
pub mod unique_name;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::api;
use crate::config::Config;
use crate::core::{Input, Node, NodeSettings, NodeStatus, ReloadedSettings};
use crate::dcs::{EtcdStore, KeyLayout, StoreSlot};
use crate::postgres::{PgController, PgSettings};
use crate::watchdog::WatchdogDevice;
use executor::{Executor, Fence};
use member::Identity;

/// Settings of the core derived from the local configuration.
pub fn node_settings(config: &Config) -> NodeSettings {
    let reloadable = reloadable_settings(config);
    NodeSettings {
        name: config.name.clone(),
        watchdog: crate::core::WatchdogSettings {
            mode: config.watchdog.mode,
            device: config.watchdog.device.display().to_string(),
            safety_margin: config.watchdog.safety_margin,
        },
        failover_priority: reloadable.failover_priority,
        use_pg_rewind: reloadable.use_pg_rewind,
        remove_data_directory_on_rewind_failure: reloadable.remove_data_directory_on_rewind_failure,
        remove_data_directory_on_diverged_timelines: reloadable
            .remove_data_directory_on_diverged_timelines,
        demotion_margin: Duration::from_millis(config.pgwarden.demotion_margin_ms),
        unresponsive_primary_timeout: Duration::from_millis(
            config.pgwarden.unresponsive_primary_timeout_ms,
        ),
        tags: reloadable.tags,
        bootstrap_config: config.bootstrap.dcs.clone(),
        policy_params: config.policy.params.clone(),
        custom_bootstrap_method: config.bootstrap.custom_method.clone(),
    }
}

/// The core's settings a reload of the local file changes (see `reload`).
pub fn reloadable_settings(config: &Config) -> ReloadedSettings {
    ReloadedSettings {
        failover_priority: if config.tags.nofailover {
            0
        } else {
            config.tags.failover_priority
        },
        tags: config.tags.raw.clone(),
        use_pg_rewind: config.postgresql.use_pg_rewind,
        remove_data_directory_on_rewind_failure: config
            .postgresql
            .remove_data_directory_on_rewind_failure,
        remove_data_directory_on_diverged_timelines: config
            .postgresql
            .remove_data_directory_on_diverged_timelines,
    }
}

/// Log what the watchdog configuration means at start: the timeout arithmetic and whether
/// the device looks usable (the core re-checks every loop and decides).
fn log_watchdog_plan(config: &Config) {
    let w = &config.watchdog;
    if w.mode == crate::config::WatchdogMode::Off {
        tracing::info!("watchdog off");
        return;
    }
    let dcs = &config.bootstrap.dcs;
    let timeout = crate::core::watchdog::timeout_secs(dcs.ttl, w.safety_margin);
    let device = w.device.display().to_string();
    let mode = format!("{:?}", w.mode).to_lowercase();
    if timeout == 0 || timeout < dcs.loop_wait {
        tracing::warn!(%mode, %device, timeout, ttl = dcs.ttl, safety_margin = w.safety_margin, loop_wait = dcs.loop_wait,
            "watchdog timeout (ttl - safety_margin) is below loop_wait: watchdog unusable with the bootstrap timing");
    }
    match crate::watchdog::check_device(&w.device) {
        Ok(()) => {
            tracing::info!(%mode, %device, timeout, "watchdog device present; it is armed before this node promotes")
        }
        Err(e) if w.mode == crate::config::WatchdogMode::Required => {
            tracing::error!(error = %e, "watchdog.mode is required and the device is unusable: this node will not become leader")
        }
        Err(e) => {
            tracing::warn!(error = %e, "watchdog device unusable; this node leads without one (mode automatic)")
        }
    }
}

/// This node's identity as published in its member key.
pub fn identity(config: &Config) -> Identity {
    Identity {
        scope: config.scope.clone(),
        name: config.name.clone(),
        conn_url: format!("postgres://{}/postgres", config.postgresql.connect_address),
        api_url: format!(
            "{}://{}/patroni",
            config.restapi.scheme(),
            config.restapi.connect_address
        ),
    }
}

/// One attempt at connecting to etcd with `etcd`'s settings, each etcd call bounded by
/// `retry_timeout` seconds (1 to 10). The TLS files are read each time (a certificate being
/// replaced may be missing for a moment).
pub async fn connect_store_once(
    etcd: &crate::config::EtcdConfig,
    layout: KeyLayout,
    retry_timeout: u32,
) -> anyhow::Result<EtcdStore> {
    let endpoints: Vec<String> = etcd
        .hosts
        .iter()
        .map(|h| format!("{}://{h}", etcd.protocol))
        .collect();
    let credentials = etcd.username.clone().zip(etcd.password.clone());
    let timeout = Duration::from_secs(retry_timeout.clamp(1, 10).into());
    let tls = etcd_tls(etcd).context("TLS towards etcd")?;
    EtcdStore::connect(&endpoints, credentials, tls, layout, timeout)
        .await
        .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))
}

/// The TLS options for `etcd`'s endpoints: `None` over plain HTTP.
pub fn etcd_tls(
    etcd: &crate::config::EtcdConfig,
) -> Result<Option<etcd_client::TlsOptions>, crate::tls::TlsError> {
    if etcd.protocol == "https" {
        crate::tls::etcd_options(&etcd.tls).map(Some)
    } else {
        Ok(None)
    }
}

/// Run the agent until SIGTERM/SIGINT. `config_path` is where `config` was read from; SIGHUP
/// re-reads it. `decisions` is fed by the tracing layer (see `telemetry::decisions`) and
/// served at `GET /decisions`.
pub async fn run(
    config: Config,
    config_path: &Path,
    decisions: Arc<crate::telemetry::decisions::DecisionLog>,
) -> anyhow::Result<()> {
    decisions.set_secrets(config.secret_values());
    // First of all: SIGHUP's default action would kill the agent and leave PostgreSQL
    // unmanaged (see `reload`).
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // Certificates that cannot be used refuse the start, as a bad configuration does.
    etcd_tls(&config.etcd).context("TLS towards etcd")?;
    let server_tls = match &config.restapi.tls {
        Some(tls) => {
            let (handle, warnings) =
                api::serve::ServerTlsHandle::load(tls).context("the REST API's TLS")?;
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            Some(Arc::new(handle))
        }
        None => None,
    };
    let api_client =
        http::ApiClient::new(&config.ctl, "ctl").context("TLS towards the members' REST APIs")?;
    let access_rules: api::access::SharedRules = Arc::new(std::sync::RwLock::new(Arc::new(
        api::access::Rules::resolve(&config).await,
    )));
    // A policy named in the local configuration that cannot be loaded refuses the start.
    let policy_status = policy::SharedPolicyStatus::default();
    let decider = policy::HostDecider::from_local(&config.policy, policy_status.clone())
        .context("loading the failover policy")?;
    // The loop runs before etcd answers: a PostgreSQL left running as primary must be
    // stopped even if the store never comes back (the core decides; see `decide_start`).
    let store = StoreSlot::default();
    let etcd_link = etcd_link::EtcdLink::spawn(store.clone(), &config);
    // Before PostgreSQL is touched: a second agent of one name refuses, as Patroni does.
    // Bounded short (etcd's answer, then the running member's): a primary left running
    // while etcd is unreachable must not wait long for the loop that stops it.
    let uniqueness = unique_name::check(
        &store,
        &api_client,
        &config.name,
        &config.scope,
        unique_name::ETCD_WAIT,
    )
    .await;
    match uniqueness {
        unique_name::Uniqueness::Unique => {}
        unique_name::Uniqueness::Taken { url } => anyhow::bail!(
            "can't start: there is already a node named {:?} running ({url} answers); \
             give this node a name of its own",
            config.name
        ),
        unique_name::Uniqueness::Unknown { why } => tracing::warn!(
            name = %config.name,
            "could not check that no other node named so is running: {why}"
        ),
    }
    let settings = node_settings(&config);
    let identity = identity(&config);
    let pg = Arc::new(PgSettings::from_config(&config));
    let started_at = clock::now();
    let node = Node::new(settings, started_at);

    let (input_tx, mut inputs) = inbox::InputSender::channel();
    let (status_tx, status_rx) = watch::channel(Arc::new(node.status()));
    let (pg_tx, pg_rx) = mpsc::unbounded_channel();
    let fence = Arc::new(Mutex::new(Fence::default()));
    let callback_runner = callbacks::spawn(Arc::new(pg.hooks.clone()), config.scope.clone());
    let watchdog = Arc::new(Mutex::new(WatchdogDevice::new(&config.watchdog.device)));

    let pg_killed = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(executor::run_pg_worker(
        pg_rx,
        PgController::new(pg.clone(), config.bootstrap.dcs.clone())
            .with_kill_signal(pg_killed.clone()),
        fence.clone(),
        input_tx.clone(),
    ));
    tokio::spawn(watch_cluster(
        store.clone(),
        input_tx.clone(),
        Duration::from_secs(config.bootstrap.dcs.retry_timeout.clamp(1, 10).into()),
    ));
    let reloader = Arc::new(
        reload::Reloader::new(
            config_path.to_path_buf(),
            config.clone(),
            pg.clone(),
            pg_tx.clone(),
            callback_runner.clone(),
            input_tx.clone(),
            reload::Api {
                server_tls: server_tls.clone(),
                client: api_client.clone(),
                rules: access_rules.clone(),
            },
        )
        .with_etcd(etcd_link)
        .with_decisions(decisions.clone()),
    );
    let listener = api::bind(&config).await.context("starting the REST API")?;
    tokio::spawn(api::serve(
        listener,
        api::ApiState::new(identity.clone(), status_rx.clone(), config.clone())
            .with_policy(policy_status)
            .with_store(store.clone())
            .with_inputs(input_tx.clone())
            .with_reloader(reloader.clone())
            .with_api_client(api_client.clone())
            .with_rules(access_rules)
            .with_decisions(decisions.clone()),
        server_tls,
    ));

    let policy = policy::PolicyRunner::spawn(
        decider,
        input_tx.clone(),
        Duration::from_millis(config.policy.deadline_ms),
    )
    .context("starting the policy thread")?;
    let policy_runner = policy.clone();
    let executor = Executor {
        inputs: input_tx.clone(),
        store: store.clone(),
        pg,
        pg_queue: pg_tx,
        identity,
        bootstrap_config: config.bootstrap.dcs.clone(),
        peer_probe_timeout: Duration::from_millis(config.pgwarden.peer_probe_timeout_ms),
        policy,
        watchdog: watchdog.clone(),
        api_client: api_client.clone(),
        store_tasks: tokio_util::task::TaskTracker::new(),
        callbacks: callback_runner,
        pg_killed,
    };

    tracing::info!(name = %config.name, scope = %config.scope, "pgwarden started");
    log_watchdog_plan(&config);
    let mut turns = turn::Turns {
        name: config.name.clone(),
        scope: config.scope.clone(),
        node,
        status: status_tx,
        fence,
        policy: policy_runner,
        selected: None,
        role_history: config
            .pgwarden
            .role_history
            .as_deref()
            .map(role_history::RoleHistory::open),
        input_log: config
            .pgwarden
            .input_log
            .as_deref()
            .map(|path| input_log::InputLog::open(path, started_at)),
        current: None,
    };
    let fatal = loop {
        if let Some(reason) = turns.publish_and_execute(&executor) {
            break Some(reason);
        }
        tokio::select! {
            input = inputs.recv() => match input {
                Some(sourced) => turns.feed(sourced.input, sourced.cause),
                None => anyhow::bail!("all input sources stopped"),
            },
            _ = tokio::time::sleep(turns.sleep_for()) => turns.wake(),
            _ = tokio::signal::ctrl_c() => break None,
            _ = sigterm.recv() => break None,
            _ = sighup.recv() => {
                // File reads (the YAML, certificates) stay off the agent's loop.
                let reloader = reloader.clone();
                tokio::task::spawn_blocking(move || reloader.reload("SIGHUP"));
            }
        }
    };
    let status = turns.node.status();
    match &fatal {
        Some(reason) => tracing::error!(%reason, "stopping the agent"),
        None => tracing::info!("shutting down"),
    }
    shutdown(&store, &status, &reloader.settings(), &executor, &watchdog).await;
    match fatal {
        Some(reason) => anyhow::bail!("stopped: {reason}"),
        None => Ok(()),
    }
}

/// How long a stop waits for the lock store: `retry_timeout`, 1 to 30 s, so a stop ends
/// even when etcd does not answer.
fn store_bound(status: &NodeStatus) -> Duration {
    Duration::from_secs(status.config.retry_timeout.clamp(1, 30).into())
}

/// Clean stop (SIGTERM, or the core's `Shutdown`: a failed bootstrap, a data directory of
/// another cluster), never leaving PostgreSQL running unmanaged: a primary stops PostgreSQL before releasing the leader key, so no other
/// member can be promoted while it still accepts writes; the watchdog is disarmed once
/// PostgreSQL is down (Patroni's shutdown safepoint), and left counting if it is not. The
/// member key says `stopped` before the key is released, so tools (patronictl list) and
/// peers never see a stopped member as running.
async fn shutdown(
    store: &StoreSlot,
    status: &NodeStatus,
    (config, pg): &(Config, Arc<PgSettings>),
    executor: &Executor,
    watchdog: &Mutex<WatchdogDevice>,
) {
    if status.config.pause {
        // Maintenance mode: the operator owns PostgreSQL. It keeps running, and the leader
        // key expires with the lease, to be taken back by this primary when the agent is
        // started again (Patroni does the same).
        executor::disarm_watchdog(watchdog, "maintenance mode: agent stopping");
        if !executor.settle(store_bound(status)).await {
            tracing::warn!("lock store writes still running when the agent stops");
        }
        tracing::warn!("maintenance mode: PostgreSQL left running, the leader key left to expire");
        return;
    }
    let mut controller = PgController::new(stop_settings(pg, status), status.config.clone());
    let stop = crate::core::PgAction::Demote {
        mode: crate::core::DemoteMode::Graceful,
    };
    let was_running = status.pg.as_ref().is_some_and(|pg| pg.postmaster_alive);
    if let Err(e) = controller.execute(&stop).await {
        // Still running: keep the key, so no other member is promoted beside it.
        tracing::error!(error = %e, "stopping PostgreSQL at shutdown failed; leaving the leader key to expire");
        return;
    }
    // Patroni calls no callback while bootstrapping (a failed bootstrap stops here).
    if was_running && status.state != "bootstrapping" {
        stopped_callback(pg, &config.scope, status);
    }
    executor::disarm_watchdog(watchdog, "clean shutdown");
    // PostgreSQL is down. Lock store writes already on their way (a failed bootstrap's
    // delete of `initialize`, a member key write that would say `running` after ours says
    // `stopped`) land before the last words.
    let bound = store_bound(status);
    if !executor.settle(bound).await {
        tracing::warn!("lock store writes still running when the agent stops");
    }
    let identity = &executor.identity;
    let Some(store) = store.get() else {
        return; // never connected: the key, if any, is not ours to release
    };
    if let Some(lease) = status.lease {
        // PostgreSQL is down (stopped above); the role stays what it was, as Patroni's does.
        let stopped = crate::core::status::MemberRecord {
            pg: status
                .pg
                .clone()
                .map(|pg| crate::core::view::PgObservation {
                    server: None,
                    postmaster_alive: false,
                    ..pg
                }),
            pg_action: None,
            // A bootstrap that failed is over: the key must not keep saying it runs.
            bootstrapping: false,
            ..status.member_record()
        };
        let mut value = member::member_json(identity, &stopped);
        value["role"] = serde_json::json!(status.role().as_str());
        let value = value.to_string();
        match tokio::time::timeout(bound, store.put_member(&config.name, value, lease)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "writing the member key's final state (stopped) failed")
            }
            Err(_) => tracing::warn!(
                ?bound,
                "writing the member key's final state (stopped) timed out"
            ),
        }
    }
    if status.holds_leader_key {
        let release = store.release_leader(&config.name, status.lease, status.leader_revision);
        match tokio::time::timeout(bound, release).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader key failed"),
            Err(_) => tracing::warn!(
                ?bound,
                "releasing the leader key timed out; it expires with the lease"
            ),
        }
    }
}

/// The settings for the stop at shutdown. Nothing renews the lease any more: a leader's
/// `before_stop` may take only half the time left before its demotion deadline, so the
/// stop itself still ends before another member can be promoted.
fn stop_settings(pg: &Arc<PgSettings>, status: &NodeStatus) -> Arc<PgSettings> {
    let Some(deadline) = status.lease_deadline.filter(|_| status.holds_leader_key) else {
        return pg.clone();
    };
    let left = deadline.saturating_since(clock::now()) / 2;
    if left >= pg.hooks.timeout {
        return pg.clone();
    }
    let mut settings = PgSettings::clone(pg);
    settings.hooks.timeout = left;
    if left.is_zero() {
        settings.hooks.before_stop = None;
    }
    Arc::new(settings)
}

/// `on_stop` for the stop at shutdown (Patroni calls it too). Started, not waited for: it
/// runs in its own process group and outlives the agent.
fn stopped_callback(pg: &PgSettings, scope: &str, status: &NodeStatus) {
    let Some(command) = pg.hooks.callbacks.get(&crate::core::CallbackKind::OnStop) else {
        return;
    };
    let role = match status.pg.as_ref().is_some_and(|pg| pg.is_primary()) {
        true => crate::core::CallbackRole::Primary,
        false => crate::core::CallbackRole::Replica,
    };
    let mut argv = command.clone();
    argv.extend([
        crate::core::CallbackKind::OnStop.name().to_string(),
        role.name().to_string(),
        scope.to_string(),
    ]);
    match crate::postgres::hooks::spawn(&argv) {
        Ok(_) => tracing::info!(command = %argv.join(" "), "callback started"),
        Err(error) => {
            tracing::error!(command = %argv.join(" "), %error, "callback could not be started")
        }
    }
}

/// Follow the lock store forever, reporting every change and every failure.
/// Until the first connection, the store counts as unreachable only once connecting has
/// taken longer than `patience` (a normal start connects well within it, and the core stops
/// a running primary it cannot cover with a lease when the store is unreachable).
async fn watch_cluster(slot: StoreSlot, inputs: inbox::InputSender, patience: Duration) {
    let started = tokio::time::Instant::now();
    let mut connections = slot.changes();
    loop {
        let Some(store) = connections.borrow_and_update().clone() else {
            if started.elapsed() >= patience {
                let _ = inputs.send(Input::DcsUnreachable {
                    error: format!("etcd: not connected after {patience:?}"),
                });
            }
            // A new connection ends the wait at once.
            let _ = tokio::time::timeout(Duration::from_millis(500), connections.changed()).await;
            continue;
        };
        let tx = inputs.clone();
        let watch = store.watch(move |mut view| {
            if let Some(failover) = view.failover.as_mut() {
                failover.value.due = failover
                    .value
                    .scheduled_at
                    .as_deref()
                    .and_then(|at| clock::parse_wall(at).ok())
                    .map(clock::instant_of_wall);
            }
            let _ = tx.send(Input::ClusterChanged(std::sync::Arc::new(view)));
        });
        // A reload's new connection replaces the watch at once (it reads the keys again
        // first, so no change is missed): the old connection is let go.
        let result = tokio::select! {
            result = watch => Some(result),
            _ = connections.changed() => None,
        };
        match result {
            // A new connection: watch through it at once.
            None => continue,
            Some(Err(e)) => {
                let _ = inputs.send(Input::DcsUnreachable {
                    error: e.to_string(),
                });
            }
            Some(Ok(())) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
