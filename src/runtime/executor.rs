//! Turns effects into IO. Every effect runs in its own task (PostgreSQL actions on one
//! serial worker) and reports back as an `Input`; nothing here decides anything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::clock;
use super::member::{member_json, Identity};
use crate::config::DynamicConfig;
use crate::core::status::MemberRecord;
use crate::core::view::SyncState;
use crate::core::view::{HistoryEntry, PeerReport, PeerStatus};
use crate::core::{
    ArmReport, Effect, Input, LeaseId, Lsn, PgAction, PgActionOutcome, Revision, Timeline,
};
use crate::dcs::{EtcdStore, StoreSlot};
use crate::postgres::hooks::ScriptEnd;
use crate::postgres::{probe, PgController, PgSettings};
use crate::watchdog::WatchdogDevice;

/// The shortest wait for one keep-alive answer (a healthy etcd answers in milliseconds).
const KEEP_ALIVE_ATTEMPT_FLOOR: Duration = Duration::from_millis(500);
/// The pause between a failed keep-alive and the next attempt.
const KEEP_ALIVE_RETRY_PAUSE: Duration = Duration::from_millis(300);

/// The fencing token the PostgreSQL worker re-checks before promoting.
#[derive(Clone, Debug, Default)]
pub struct Fence {
    /// Lease we currently hold.
    pub lease: Option<LeaseId>,
    /// create_revision of our leader key.
    pub leader_revision: Option<Revision>,
    /// Demotion deadline (boot clock).
    pub deadline: Option<crate::core::Instant>,
    /// The core is in the primary state (not stopping it): a restart may start PostgreSQL
    /// as a primary again.
    pub leading: bool,
}

/// Shared handles the effects need.
#[derive(Clone)]
pub struct Executor {
    /// Inputs back to the loop.
    pub inputs: super::inbox::InputSender,
    /// The lock store.
    pub store: StoreSlot,
    /// Local PostgreSQL settings.
    pub pg: Arc<PgSettings>,
    /// Serial queue of PostgreSQL actions (and the configuration they use).
    pub pg_queue: UnboundedSender<PgWork>,
    /// Who we are.
    pub identity: Identity,
    /// Bootstrap dynamic configuration, written to `/config` after bootstrap.
    pub bootstrap_config: DynamicConfig,
    /// Timeout of a peer probe.
    pub peer_probe_timeout: Duration,
    /// Policy calls.
    pub policy: super::policy::PolicyRunner,
    /// The watchdog device (open while armed).
    pub watchdog: Arc<Mutex<WatchdogDevice>>,
    /// The peers' REST APIs (probes, `POST /failsafe`), with the `ctl:` TLS and credentials.
    pub api_client: super::http::ApiClient,
    /// Told when the emergency stop killed PostgreSQL (see `PgController::with_kill_signal`).
    pub pg_killed: Arc<tokio::sync::Notify>,
    /// The callback runner (`runtime::callbacks`).
    pub callbacks: UnboundedSender<super::callbacks::CallbackWork>,
    /// The lock store effects in flight, awaited before the agent stops on its own
    /// ([`Executor::settle`]): a failed bootstrap's delete of `initialize` must reach etcd.
    pub store_tasks: tokio_util::task::TaskTracker,
}

impl Executor {
    /// Start carrying out `effect`.
    pub fn dispatch(&self, effect: Effect) {
        let this = self.clone();
        match effect {
            Effect::Pg(action) => {
                if matches!(
                    action,
                    PgAction::Demote {
                        mode: crate::core::DemoteMode::ImmediateNolock
                    }
                ) {
                    // The emergency stop must not wait behind whatever action the serial
                    // worker is running (a slot creation, a slow promote): kill now; the
                    // queued action then finds PostgreSQL down and reports it.
                    crate::postgres::kill_postmaster(&self.pg);
                    self.pg_killed.notify_waiters();
                }
                // The action runs later, on the worker: it carries the effect's span along.
                let _ = self
                    .pg_queue
                    .send(PgWork::Action(action, tracing::Span::current()));
            }
            Effect::RunCallback(callback) => {
                let _ = self
                    .callbacks
                    .send(super::callbacks::CallbackWork::Run(callback));
            }
            Effect::UsePgConfig(config) => {
                let _ = self.pg_queue.send(PgWork::Config(config));
            }
            Effect::ConsultPolicy(call) => self.policy.submit(call),
            // The watchdog runs inline: a few non-blocking syscalls, and an arm must be
            // complete before any effect queued after it (the promotion) can run.
            Effect::CheckWatchdog => {
                let path = lock_watchdog(&self.watchdog).path().to_path_buf();
                let result = crate::watchdog::check_device(&path).map_err(|e| e.to_string());
                self.send(Input::WatchdogChecked(result));
            }
            Effect::ArmWatchdog { timeout_secs } => {
                let result = lock_watchdog(&self.watchdog)
                    .arm(timeout_secs)
                    .map(|armed| ArmReport {
                        device_timeout_secs: armed.device_timeout(),
                    })
                    .map_err(|e| e.to_string());
                if let Err(error) = &result {
                    tracing::warn!(%error, timeout_secs, "arming the watchdog failed");
                }
                self.send(Input::WatchdogArmed(result));
            }
            Effect::FeedWatchdog => {
                if let Err(e) = lock_watchdog(&self.watchdog).keepalive() {
                    self.send(Input::WatchdogFeedFailed {
                        error: e.to_string(),
                    });
                }
            }
            Effect::DisarmWatchdog { reason } => disarm_watchdog(&self.watchdog, &reason),
            // The loop stops the agent, after `settle` (see `runtime::run`).
            Effect::Shutdown { .. } => {}
            other @ (Effect::GrantLease { .. }
            | Effect::RenewLease { .. }
            | Effect::RevokeLease { .. }
            | Effect::ProbePostgres
            | Effect::TouchMember { .. }
            | Effect::RaceInitialize
            | Effect::CancelInitialize
            | Effect::ClearStaleInitialize { .. }
            | Effect::WriteInitialize { .. }
            | Effect::WriteInitialConfig
            | Effect::AcquireLeader { .. }
            | Effect::ReleaseLeader { .. }
            | Effect::WriteSync { .. }
            | Effect::ClearFailover { .. }
            | Effect::WriteStatus { .. }
            | Effect::UpdateHistory { .. }
            | Effect::ProbePeers { .. }
            | Effect::ProbeFailsafe { .. }
            | Effect::WriteFailsafe { .. }) => {
                use tracing::Instrument as _;
                let span = tracing::Span::current();
                self.store_tasks
                    .spawn(async move { this.run(other).await }.instrument(span));
            }
        }
    }

    /// Waits up to `bound` for the lock store effects already dispatched; returns whether
    /// all of them finished.
    pub async fn settle(&self, bound: Duration) -> bool {
        self.store_tasks.close();
        tokio::time::timeout(bound, self.store_tasks.wait())
            .await
            .is_ok()
    }

    fn send(&self, input: Input) {
        let _ = self.inputs.send(input);
    }

    async fn run(self, effect: Effect) {
        let effect = match effect {
            Effect::ProbePostgres => {
                let observation = probe::observe(&self.pg).await;
                return self.send(Input::PostgresProbed(observation));
            }
            Effect::ProbePeers { members } => return self.probe_peers(members).await,
            Effect::ProbeFailsafe { members } => {
                let input =
                    super::failsafe::run_round(&self.identity, &self.api_client, members).await;
                return self.send(input);
            }
            other => other,
        };
        let Some(store) = self.store.get() else {
            return self.store_not_connected(effect);
        };
        let store = &store;
        let me = self.identity.name.as_str();
        match effect {
            Effect::GrantLease { ttl_secs } => self.grant_lease(store, ttl_secs).await,
            Effect::RenewLease {
                lease,
                retry_timeout,
            } => self.renew_lease(store, lease, retry_timeout).await,
            Effect::RevokeLease { lease } => {
                log_err("revoke the old lease", store.revoke_lease(lease).await)
            }
            Effect::TouchMember { member, lease } => self.touch_member(store, &member, lease).await,
            Effect::RaceInitialize => {
                let won = match store.race_initialize().await {
                    Ok(won) => won,
                    Err(e) => {
                        tracing::warn!(error = %e, "initialize race failed");
                        false
                    }
                };
                self.send(Input::InitializeRaced { won });
            }
            Effect::CancelInitialize => {
                log_err("delete initialize", store.cancel_initialize().await)
            }
            Effect::ClearStaleInitialize {
                mod_revision,
                orphaned_for,
            } => {
                self.clear_stale_initialize(store, mod_revision, orphaned_for)
                    .await
            }
            Effect::WriteInitialize { sysid } => {
                log_err("write initialize", store.write_initialize(&sysid).await)
            }
            Effect::WriteInitialConfig => {
                let json = self.bootstrap_config.to_json().to_string();
                log_err(
                    "write initial config",
                    store.write_config_if_absent(json).await.map(|_| ()),
                )
            }
            Effect::AcquireLeader { lease } => self.acquire_leader(store, lease).await,
            Effect::ReleaseLeader {
                lease,
                create_revision,
            } => log_err(
                "release leader",
                store
                    .release_leader(me, lease, create_revision)
                    .await
                    .map(|_| ()),
            ),
            Effect::WriteSync {
                seq,
                state,
                expected_revision,
            } => self.write_sync(store, seq, state, expected_revision).await,
            Effect::ClearFailover {
                expected_revision,
                reason,
            } => match store.clear_failover(expected_revision).await {
                Ok(true) => tracing::info!(%reason, "cleared the failover key"),
                Ok(false) => tracing::debug!(%reason, "failover key already changed or gone"),
                Err(e) => tracing::warn!(error = %e, %reason, "could not clear the failover key"),
            },
            Effect::WriteStatus { optime } => {
                log_err("write status", store.write_status(optime).await)
            }
            Effect::UpdateHistory {
                timeline,
                known,
                keep_last,
            } => {
                self.update_history(store, timeline, &known, keep_last)
                    .await
            }
            Effect::WriteFailsafe { members } => log_err(
                "write failsafe",
                store.write_failsafe(members.as_ref()).await,
            ),
            Effect::ProbePostgres
            | Effect::ProbePeers { .. }
            | Effect::ProbeFailsafe { .. }
            | Effect::Pg(_)
            | Effect::RunCallback(_)
            | Effect::UsePgConfig(_)
            | Effect::ConsultPolicy(_)
            | Effect::Shutdown { .. }
            | Effect::CheckWatchdog
            | Effect::ArmWatchdog { .. }
            | Effect::FeedWatchdog
            | Effect::DisarmWatchdog { .. } => {}
        }
    }

    /// Ask etcd for a lease of `ttl_secs`; report what it granted.
    async fn grant_lease(&self, store: &EtcdStore, ttl_secs: u32) {
        let sent_at = clock::now();
        match store.grant_lease(ttl_secs).await {
            Ok((lease, granted)) => {
                if granted != ttl_secs {
                    tracing::warn!(
                        requested = ttl_secs,
                        granted,
                        "etcd granted a different lease TTL"
                    );
                }
                self.send(Input::LeaseGranted {
                    lease,
                    ttl_secs: granted,
                    sent_at,
                })
            }
            Err(e) => self.send(Input::LeaseGrantFailed {
                error: e.to_string(),
            }),
        }
    }

    /// Renew `lease`, retrying transient failures within retry_timeout; report the last
    /// send time.
    async fn renew_lease(&self, store: &EtcdStore, lease: LeaseId, retry_timeout: Duration) {
        // Retry transient failures within retry_timeout; report the last send time.
        // Each attempt gets a third of the budget: a keep-alive sent on a stream
        // whose etcd member just died, or during an etcd leader election (about a
        // second), hangs rather than fails, and must not take the whole budget
        // from the retry that would succeed.
        // retry_timeout as configured when the core asked (a change in /config applies at
        // once, as it does to the core's deadlines).
        let give_up_at = clock::now() + retry_timeout;
        let per_attempt = (retry_timeout / 3).max(KEEP_ALIVE_ATTEMPT_FLOOR);
        loop {
            let sent_at = clock::now();
            let left = give_up_at.saturating_since(sent_at);
            let attempt = per_attempt.min(left);
            match store.keep_alive(lease, attempt).await {
                Ok(true) => return self.send(Input::LeaseRenewed { lease, sent_at }),
                Ok(false) => {
                    return self.send(Input::LeaseRenewFailed {
                        lease,
                        expired: true,
                        error: "lease not found".into(),
                    })
                }
                // etcd-client turns etcd's TTL-0 answer for an unknown lease into an
                // error: it is an answer, not an outage.
                Err(e) if e.lease_not_found() => {
                    return self.send(Input::LeaseRenewFailed {
                        lease,
                        expired: true,
                        error: e.to_string(),
                    })
                }
                // No attempt is started that could not get an answer in time.
                Err(e) if clock::now() + KEEP_ALIVE_RETRY_PAUSE >= give_up_at => {
                    tracing::warn!(error = %e, %lease, "lease keep-alive failed within retry_timeout");
                    return self.send(Input::LeaseRenewFailed {
                        lease,
                        expired: false,
                        error: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "keep-alive failed; retrying");
                    tokio::time::sleep(KEEP_ALIVE_RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Write our member key on `lease`.
    async fn touch_member(&self, store: &EtcdStore, member: &MemberRecord, lease: LeaseId) {
        let me = self.identity.name.as_str();
        let value = member_json(&self.identity, member);
        if let Err(e) = store.put_member(me, value.to_string(), lease).await {
            tracing::warn!(error = %e, "could not update the member key");
            if e.lease_not_found() {
                // etcd says the lease is gone: that is authoritative, whatever the
                // keep-alive path reports (after a long outage it may keep failing
                // instead of answering TTL 0, and the lease would never be replaced).
                self.send(Input::LeaseRenewFailed {
                    lease,
                    expired: true,
                    error: e.to_string(),
                });
            }
        }
    }

    /// Take the leader key onto `lease`; report the outcome.
    async fn acquire_leader(&self, store: &EtcdStore, lease: LeaseId) {
        let me = self.identity.name.as_str();
        let input = match store.acquire_leader(me, lease).await {
            Ok(a) => Input::LeaderAcquired {
                won: a.won,
                revision: a.revision,
                create_revision: a.create_revision,
            },
            Err(e) => {
                tracing::warn!(error = %e, "leader key acquisition failed");
                Input::LeaderAcquired {
                    won: false,
                    revision: Revision(0),
                    create_revision: Revision(0),
                }
            }
        };
        self.send(input);
    }

    /// Compare-and-swap `/sync`; report whether it took.
    async fn write_sync(
        &self,
        store: &EtcdStore,
        seq: u64,
        state: SyncState,
        expected_revision: Option<Revision>,
    ) {
        let ok = match store.write_sync(&state, expected_revision).await {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(error = %e, "/sync write failed");
                false
            }
        };
        if ok {
            tracing::info!(sync_standby = ?state.sync_standby, "recorded synchronous standbys in /sync");
        }
        self.send(Input::SyncWritten { seq, ok });
    }

    /// Add the timeline that ended to `/history`, from PostgreSQL's history file.
    async fn update_history(
        &self,
        store: &EtcdStore,
        timeline: Timeline,
        known: &[HistoryEntry],
        keep_last: u32,
    ) {
        let me = self.identity.name.as_str();
        match read_timeline_history(&self.pg, timeline, known, me) {
            Ok(entries) => {
                let entries = newest(entries, keep_last);
                log_err("write history", store.write_history(&entries).await)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the timeline history file")
            }
        }
    }

    /// Delete an orphaned `initialize` key at its revision, saying what happened.
    async fn clear_stale_initialize(
        &self,
        store: &EtcdStore,
        mod_revision: Revision,
        orphaned_for: Duration,
    ) {
        match store.clear_initialize_at(mod_revision).await {
            Ok(true) => tracing::warn!(
                mod_revision = %mod_revision,
                orphaned_for = ?orphaned_for,
                "deleted the initialize key: it was empty with no leader and no member \
                 bootstrapping (a bootstrap died half-way); the members race to bootstrap again"
            ),
            Ok(false) => tracing::info!(
                mod_revision = %mod_revision,
                "the orphaned initialize key changed before it could be deleted; left as it is"
            ),
            Err(e) => tracing::warn!(error = %e, "deleting the orphaned initialize key failed"),
        }
    }

    async fn probe_peers(&self, members: Vec<(String, String)>) {
        let timeout = self.peer_probe_timeout;
        let probes = members.into_iter().map(|(name, url)| {
            let client = self.api_client.clone();
            async move {
                let status = client
                    .get_json(&url, timeout)
                    .await
                    .ok()
                    .map(|v| peer_status(&v));
                PeerReport { name, status }
            }
        });
        let reports = futures_join_all(probes).await;
        self.send(Input::PeersProbed(reports));
    }

    /// The agent has not reached etcd yet: answer what the core waits for with a failure.
    fn store_not_connected(&self, effect: Effect) {
        let error = "etcd: not connected yet".to_string();
        let input = match effect {
            Effect::GrantLease { .. } => Input::LeaseGrantFailed { error },
            Effect::RenewLease { lease, .. } => Input::LeaseRenewFailed {
                lease,
                expired: false,
                error,
            },
            Effect::RaceInitialize => Input::InitializeRaced { won: false },
            Effect::AcquireLeader { .. } => Input::LeaderAcquired {
                won: false,
                revision: Revision(0),
                create_revision: Revision(0),
            },
            Effect::WriteSync { seq, .. } => Input::SyncWritten { seq, ok: false },
            other => {
                tracing::debug!(?other, "lock store not connected; effect dropped");
                return;
            }
        };
        self.send(input);
    }
}

/// The device, even if a panic elsewhere poisoned the lock (its state is a file handle,
/// which a panic cannot leave half-updated).
fn lock_watchdog(watchdog: &Mutex<WatchdogDevice>) -> std::sync::MutexGuard<'_, WatchdogDevice> {
    watchdog.lock().unwrap_or_else(|e| e.into_inner())
}

/// Magic-close the device if it is open, logging the outcome.
pub fn disarm_watchdog(watchdog: &Mutex<WatchdogDevice>, reason: &str) {
    let mut device = lock_watchdog(watchdog);
    if !device.is_armed() {
        return;
    }
    match device.disarm() {
        Ok(()) => tracing::info!(%reason, device = %device.path().display(), "watchdog disarmed"),
        Err(e) => tracing::error!(error = %e, %reason, "disarming the watchdog failed"),
    }
}

async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn log_err<E: std::fmt::Display>(what: &str, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "{what} failed");
    }
}

/// Read a peer's `/patroni` answer into what the race compares.
pub fn peer_status(v: &Value) -> PeerStatus {
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let xlog = v.get("xlog");
    let lsn = |k: &str| xlog.and_then(|x| x.get(k)).and_then(Value::as_u64).map(Lsn);
    let wal_position = lsn("location").or(lsn("received_location").max(lsn("replayed_location")));
    let tags = v.get("tags");
    let nofailover = tags
        .and_then(|t| t.get("nofailover"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let failover_priority = tags
        .and_then(|t| t.get("failover_priority"))
        .and_then(Value::as_i64)
        .unwrap_or(if nofailover { 0 } else { 1 });
    PeerStatus {
        role: s("role"),
        state: s("state"),
        wal_position,
        timeline: v
            .get("timeline")
            .and_then(Value::as_u64)
            .map(|t| Timeline(t as u32)),
        failover_priority,
        // Patroni: a member reporting `watchdog_failed` is "not watchdog capable".
        can_lead: !nofailover
            && failover_priority > 0
            && v.get("watchdog_failed").and_then(Value::as_bool) != Some(true),
        probe_revision: v
            .pointer("/pgwarden/probe_revision")
            .and_then(Value::as_i64)
            .map(Revision),
    }
}

/// Build `/history` from `pg_wal/<timeline>.history`, keeping timestamps already recorded.
fn read_timeline_history(
    pg: &PgSettings,
    timeline: Timeline,
    existing: &[HistoryEntry],
    me: &str,
) -> std::io::Result<Vec<HistoryEntry>> {
    let path = pg
        .data_dir
        .join("pg_wal")
        .join(format!("{:08X}.history", timeline.0));
    let text = std::fs::read_to_string(path)?;
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(tli), Some(lsn)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(tli), Some(lsn)) = (tli.trim().parse::<u32>(), Lsn::parse(lsn)) else {
            continue;
        };
        let reason = parts.next().unwrap_or_default().trim().to_string();
        let known = existing.iter().find(|e| e.timeline.0 == tli);
        let last = tli + 1 == timeline.0;
        entries.push(HistoryEntry {
            timeline: Timeline(tli),
            switch_lsn: lsn,
            reason,
            timestamp: known
                .and_then(|k| k.timestamp.clone())
                .or_else(|| last.then(clock::wall_iso)),
            new_leader: known
                .and_then(|k| k.new_leader.clone())
                .or_else(|| last.then(|| me.to_string())),
        });
    }
    Ok(entries)
}

/// The serial PostgreSQL worker: one action at a time, fencing token re-checked before a promote.
/// What the serial PostgreSQL worker is handed, in order.
#[derive(Debug)]
pub enum PgWork {
    /// Carry out an action, inside the span of the effect that asked for it (its duration
    /// and outcome are recorded there).
    Action(PgAction, tracing::Span),
    /// Use this dynamic configuration for the actions that follow.
    Config(Box<DynamicConfig>),
    /// Use these local settings for the actions that follow (`POST /reload`, SIGHUP).
    Local(Arc<PgSettings>),
}

/// The serial PostgreSQL worker: one action at a time, in order, a promotion only while
/// its fencing token is still current.
pub async fn run_pg_worker(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<PgWork>,
    mut controller: PgController,
    fence: Arc<Mutex<Fence>>,
    inputs: super::inbox::InputSender,
) {
    controller.learn_server().await;
    while let Some(work) = queue.recv().await {
        let action = match work {
            PgWork::Config(config) => {
                controller.set_dynamic(*config);
                continue;
            }
            PgWork::Local(settings) => {
                controller.set_local(settings);
                continue;
            }
            PgWork::Action(action, span) => (action, span),
        };
        let (action, span) = action;
        if let PgAction::Promote { permit, .. } = &action {
            if let Some(outcome) = clear_to_promote(&controller, &fence, permit).await {
                let refused = match &outcome {
                    PgActionOutcome::Vetoed { .. } => "vetoed",
                    _ => "refused",
                };
                span.record("pgwarden.outcome", refused);
                let finished = Input::PgActionFinished { action, outcome };
                let _ = inputs.send_caused(finished, Some(span));
                continue;
            }
        }
        use tracing::Instrument as _;
        tracing::info!(parent: &span, action = action.kind(), "PostgreSQL action starting");
        let started = clock::now();
        let result = async {
            match &action {
                PgAction::Restart { start, .. } => restart(&mut controller, start, &fence).await,
                other => controller.execute(other).await,
            }
        }
        .instrument(span.clone())
        .await;
        span.record(
            "pgwarden.outcome",
            if result.is_ok() { "done" } else { "failed" },
        );
        let outcome = match result {
            Ok(sysid) => PgActionOutcome::Done { sysid },
            Err(e) => PgActionOutcome::Failed {
                error: e.to_string(),
            },
        };
        tracing::info!(
            action = action.kind(),
            elapsed_ms = clock::now().saturating_since(started).as_millis() as u64,
            ?outcome,
            "PostgreSQL action finished"
        );
        let finished = Input::PgActionFinished { action, outcome };
        let _ = inputs.send_caused(finished, Some(span));
    }
}

/// Whether the promotion under `permit` may go ahead: `None` if so, else why not. The
/// fencing token must be current before and after the operator's `pre_promote` script,
/// which must exit 0 (Patroni's veto); the script is killed if the token goes stale while
/// it runs (no promotion could follow) or it outlives the callback timeout (a veto).
async fn clear_to_promote(
    controller: &PgController,
    fence: &Mutex<Fence>,
    permit: &crate::core::safety::PromotionPermit,
) -> Option<PgActionOutcome> {
    let current = || {
        let f = fence.lock().map(|f| f.clone()).unwrap_or_default();
        let ok = f.lease == Some(permit.lease())
            && f.leader_revision == Some(permit.leader_revision())
            && f.deadline.is_some_and(|d| clock::now() < d);
        (ok, f)
    };
    let stale = |f: Fence| {
        tracing::warn!(?f, lease = %permit.lease(), leader_revision = %permit.leader_revision(), "refusing to promote: fencing token is stale");
        Some(PgActionOutcome::Failed {
            error: "fencing token is stale".into(),
        })
    };
    if let (false, f) = current() {
        return stale(f);
    }
    let hooks = &controller.settings().hooks;
    let Some(command) = &hooks.pre_promote else {
        return None;
    };
    let token_gone = async {
        while current().0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let end = crate::postgres::hooks::run(command, hooks.timeout, token_gone).await;
    let command = command.join(" ");
    match end {
        ScriptEnd::Exited(0) => {
            tracing::info!(%command, "pre_promote script allowed the promotion")
        }
        ScriptEnd::Cancelled => {
            // Never promote on a script that did not say yes, whatever the token says now.
            tracing::warn!(%command, "pre_promote script killed: the fencing token went stale while it ran");
            return stale(current().1);
        }
        other => {
            tracing::warn!(%command, end = %other, "pre_promote script refused the promotion");
            return Some(PgActionOutcome::Vetoed {
                error: format!("pre_promote `{command}` {other}"),
            });
        }
    }
    match current() {
        (true, _) => None,
        (false, f) => stale(f),
    }
}

/// `POST /restart`: a fast stop, then the start the core chose. A primary starts again only
/// while our lease is current and the core still leads: the stop may take as long as a
/// checkpoint, and a lease that ended meanwhile may have a new leader already, or the core
/// may have decided to stop PostgreSQL (a demotion queued behind this restart); starting
/// here would open a window with two primaries, or writes about to be cut off.
async fn restart(
    controller: &mut PgController,
    start: &PgAction,
    fence: &Mutex<Fence>,
) -> Result<Option<String>, crate::postgres::PgError> {
    controller
        .execute(&PgAction::Demote {
            mode: crate::core::DemoteMode::Graceful,
        })
        .await?;
    if matches!(start, PgAction::StartPrimary { .. }) {
        let f = fence.lock().map(|f| f.clone()).unwrap_or_default();
        let current = f.leading
            && f.leader_revision.is_some()
            && f.deadline.is_some_and(|d| clock::now() < d);
        if !current {
            return Err(crate::postgres::PgError::BadInput(
                "the lease ended during the restart: PostgreSQL is not started as a primary".into(),
            ));
        }
    }
    controller.execute(start).await
}

/// The newest `keep_last` entries (all when 0), as Patroni trims `/history` to
/// `max_timelines_history`.
fn newest(mut entries: Vec<HistoryEntry>, keep_last: u32) -> Vec<HistoryEntry> {
    let keep = keep_last as usize;
    if keep > 0 && entries.len() > keep {
        entries.drain(..entries.len() - keep);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_max_timelines_history_entries() {
        let entry = |t: u32| HistoryEntry {
            timeline: Timeline(t),
            switch_lsn: crate::core::Lsn(u64::from(t) << 24),
            reason: "no recovery target specified".into(),
            timestamp: None,
            new_leader: None,
        };
        let all: Vec<HistoryEntry> = (1..=5).map(entry).collect();
        assert_eq!(newest(all.clone(), 0), all);
        assert_eq!(newest(all.clone(), 9), all);
        let kept: Vec<u32> = newest(all, 2).iter().map(|e| e.timeline.0).collect();
        assert_eq!(kept, [4, 5]);
    }

    #[test]
    fn a_peer_reporting_watchdog_failed_cannot_lead() {
        let ok = serde_json::json!({"role": "replica", "state": "running"});
        assert!(peer_status(&ok).can_lead);
        let failed =
            serde_json::json!({"role": "replica", "state": "running", "watchdog_failed": true});
        assert!(!peer_status(&failed).can_lead);
    }
}
