//! The fake PostgreSQL in its world: probes, the action worker, streaming between nodes,
//! the client's commits and their synchronous acknowledgement, watchdog resets.

use super::*;

impl World {
    pub(super) fn observe(&self, i: usize) -> PgObservation {
        let pg = &self.nodes[i].pg;
        let data_dir = match &pg.data {
            None => DataDir::Empty,
            Some(d) => DataDir::Initialized {
                sysid: d.sysid.clone(),
                state: d.control.clone(),
                timeline: Timeline(d.timeline()),
                standby_signal: d.standby_signal,
            },
        };
        let server = match (pg.running, &pg.data) {
            (Some(in_recovery), Some(d)) if !pg.frozen && !pg.postmaster_frozen => {
                let lsn = lsn_of(d.wal.len());
                Some(ServerObservation {
                    in_recovery,
                    timeline: Timeline(d.timeline()),
                    wal_position: lsn,
                    received: in_recovery.then_some(lsn),
                    replayed: in_recovery.then_some(lsn),
                    replayed_timestamp: None,
                    receiver_status: pg.streaming_from.as_ref().map(|_| "streaming".to_string()),
                    receiver_upstream: pg.streaming_from.clone(),
                    replication: if in_recovery {
                        Vec::new()
                    } else {
                        self.replication_rows(i)
                    },
                    synchronous_standby_names: d.sync_names.clone(),
                    slots: d.slots.clone(),
                    server_version: 150_000,
                    postmaster_start_time: None,
                    pending_restart: Vec::new(),
                    replay_paused: false,
                })
            }
            _ => None,
        };
        PgObservation {
            data_dir,
            postmaster_alive: pg.running.is_some(),
            server,
            silent: pg.running.is_some() && (pg.frozen || pg.postmaster_frozen),
        }
    }

    /// Standbys streaming from `i`, in member order.
    pub(super) fn streaming_standbys(&self, i: usize) -> Vec<usize> {
        let name = &self.nodes[i].name;
        (0..self.nodes.len())
            .filter(|&j| {
                let p = &self.nodes[j].pg;
                j != i
                    && p.running == Some(true)
                    && !p.frozen
                    && p.streaming_from.as_deref() == Some(name.as_str())
            })
            .collect()
    }

    pub(super) fn replication_rows(&self, i: usize) -> Vec<ReplicationPeer> {
        let rule = self.nodes[i]
            .pg
            .data
            .as_ref()
            .and_then(|d| d.sync_rule.clone());
        let standbys = self.streaming_standbys(i);
        let sync_set = self.sync_standbys_now(i, &standbys);
        standbys
            .iter()
            .map(|&j| {
                let name = self.nodes[j].name.clone();
                let listed = rule.as_ref().is_some_and(|r| r.names.contains(&name));
                let sync_state = match &rule {
                    Some(r) if listed && r.any => "quorum",
                    Some(_) if sync_set.contains(&j) => "sync",
                    Some(_) if listed => "potential",
                    _ => "async",
                };
                ReplicationPeer {
                    application_name: name,
                    state: "streaming".into(),
                    sync_state: sync_state.into(),
                    flush_lsn: Some(lsn_of(self.nodes[j].pg.wal_len())),
                    replay_lsn: Some(lsn_of(self.nodes[j].pg.wal_len())),
                    usename: Some("replicator".into()),
                    client_addr: None,
                    sync_priority: 0,
                    // A connected standby replies continuously in the model: its reply
                    // time is the time of the probe. (A cut-off standby leaves the rows at
                    // once here; the real one lingers until wal_sender_timeout, which the
                    // chaos suite covers.)
                    reply_time: Some(self.now.to_string()),
                    pid: Some(j as i32 + 1),
                }
            })
            .collect()
    }

    /// `FIRST n`: the n highest-priority listed standbys that are connected.
    pub(super) fn sync_standbys_now(&self, i: usize, streaming: &[usize]) -> Vec<usize> {
        let Some(rule) = self.nodes[i]
            .pg
            .data
            .as_ref()
            .and_then(|d| d.sync_rule.clone())
        else {
            return Vec::new();
        };
        if rule.any {
            return Vec::new();
        }
        rule.names
            .iter()
            .filter_map(|n| {
                streaming
                    .iter()
                    .copied()
                    .find(|&j| &self.nodes[j].name == n)
            })
            .take(rule.count)
            .collect()
    }

    pub(super) fn probe(&mut self, i: usize, inc: u64) {
        let observation = self.observe(i);
        // A frozen postmaster does not answer: the probe waits for its connect timeout.
        let delay = if self.nodes[i].pg.frozen || self.nodes[i].pg.postmaster_frozen {
            PROBE_TIMEOUT_MS
        } else {
            1
        };
        self.after(
            delay,
            Ev::Deliver {
                node: i,
                inc,
                input: Input::PostgresProbed(observation),
            },
        );
    }

    pub(super) fn probe_peers(&mut self, i: usize, inc: u64, members: Vec<(String, String)>) {
        let mut slowest = 5;
        let reports = members
            .into_iter()
            .map(|(name, _url)| {
                let j = self.nodes.iter().position(|n| n.name == name);
                let status = j.and_then(|j| {
                    let n = &self.nodes[j];
                    if !self.peers_reachable(i, j) || n.paused || n.agent.is_none() {
                        return None;
                    }
                    n.status
                        .as_ref()
                        .map(|s| peer_status(&patroni_json(&n.identity, s, None)))
                });
                if status.is_none() {
                    slowest = PEER_PROBE_TIMEOUT_MS;
                }
                PeerReport { name, status }
            })
            .collect();
        self.after(
            slowest,
            Ev::Deliver {
                node: i,
                inc,
                input: Input::PeersProbed(reports),
            },
        );
    }

    pub(super) fn start_next_action(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.worker_busy || n.paused || n.agent.is_none() {
            return;
        }
        let inc = n.incarnation;
        let Some(action) = self.nodes[i].worker.pop_front() else {
            return;
        };
        if let PgAction::Promote { permit, .. } = &action {
            let (lease, leader_revision) = (&permit.lease(), &permit.leader_revision());
            // The executor re-checks the fencing token against the latest published status.
            let now = self.node_now(i);
            let current = self.nodes[i].status.as_ref().is_some_and(|s| {
                s.lease == Some(*lease)
                    && s.leader_revision == Some(*leader_revision)
                    && s.lease_deadline.is_some_and(|d| now < d)
            });
            self.log(|| {
                let s = self.nodes[i].status.as_ref();
                format!(
                    "{} promote starts: now {} lease {:?} deadline {:?} fence ok {current}; store leader {:?}",
                    self.nodes[i].name,
                    now.0,
                    s.and_then(|s| s.lease),
                    s.and_then(|s| s.lease_deadline),
                    self.store.leader()
                )
            });
            if !current {
                self.after(
                    1,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::PgActionFinished {
                            action,
                            outcome: PgActionOutcome::Failed {
                                error: "fencing token is stale".into(),
                            },
                        },
                    },
                );
                return self.start_next_action(i);
            }
            if self.nodes[i].vetoes_promotion {
                self.outcome.promotions_vetoed += 1;
                let script_ms = self.rng.range(10, 200);
                self.after(
                    script_ms,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::PgActionFinished {
                            action,
                            outcome: PgActionOutcome::Vetoed {
                                error: "pre_promote exited with 1".into(),
                            },
                        },
                    },
                );
                return self.start_next_action(i);
            }
        }
        let duration = match &action {
            PgAction::Bootstrap => self.rng.range(500, 1_500),
            PgAction::Clone { .. } | PgAction::Reinitialize { .. } => self.rng.range(300, 2_000),
            PgAction::StartReplica { .. } | PgAction::StartPrimary { .. } => {
                self.rng.range(200, 800)
            }
            PgAction::Follow { .. } => self.rng.range(20, 200),
            PgAction::Promote { .. } => self.rng.range(50, 300),
            // Immediate stops kill a stopped postmaster at once (and immediate-nolock always
            // kills); a fast stop of a frozen postmaster waits for pg_ctl_timeout and fails.
            PgAction::Demote { mode } => match (mode, self.nodes[i].pg.postmaster_frozen) {
                (DemoteMode::Immediate | DemoteMode::ImmediateNolock, _) => self.rng.range(20, 150),
                (DemoteMode::Graceful | DemoteMode::Offline, false) => self.rng.range(100, 1_000),
                (DemoteMode::Graceful | DemoteMode::Offline, true) => PG_CTL_TIMEOUT_MS,
            },
            PgAction::Rewind { .. } => self.rng.range(300, 1_500),
            PgAction::SetSyncStandbys { .. }
            | PgAction::EnsureSlots { .. }
            | PgAction::Reload { .. } => self.rng.range(5, 50),
            PgAction::Restart { .. } => self.rng.range(300, 1_500),
        };
        self.nodes[i].worker_busy = true;
        self.after(
            duration,
            Ev::PgDone {
                node: i,
                inc,
                action,
            },
        );
    }

    pub(super) fn pg_done(&mut self, i: usize, inc: u64, action: PgAction) {
        let same_agent = self.alive(i, inc);
        // Signals already sent (promote, stop) take effect even if the agent died meanwhile;
        // work the agent itself carries out (clone, rewind, bootstrap) dies with it.
        let takes_effect =
            same_agent || matches!(action, PgAction::Promote { .. } | PgAction::Demote { .. });
        let outcome = if takes_effect {
            self.apply_action(i, &action)
        } else {
            Err("the agent exited".into())
        };
        if same_agent {
            self.nodes[i].worker_busy = false;
        }
        let outcome = match outcome {
            Ok(sysid) => PgActionOutcome::Done { sysid },
            Err(error) => PgActionOutcome::Failed { error },
        };
        self.log(|| format!("{} {} -> {:?}", self.nodes[i].name, action.kind(), outcome));
        if same_agent {
            self.at(
                self.now,
                Ev::Deliver {
                    node: i,
                    inc,
                    input: Input::PgActionFinished { action, outcome },
                },
            );
        }
        self.start_next_action(i);
    }

    pub(super) fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// A source a standby may connect to: reachable, running, accepting connections.
    pub(super) fn source(&self, i: usize, name: &str) -> Result<usize, String> {
        let j = self
            .find(name)
            .ok_or_else(|| format!("unknown member {name}"))?;
        let p = &self.nodes[j].pg;
        if !self.peers_reachable(i, j) {
            return Err(format!("{name} unreachable"));
        }
        if p.running.is_none() || p.frozen || p.postmaster_frozen || p.data.is_none() {
            return Err(format!("{name} is not running"));
        }
        Ok(j)
    }

    pub(super) fn apply_action(
        &mut self,
        i: usize,
        action: &PgAction,
    ) -> Result<Option<String>, String> {
        // Signals to a frozen postmaster (promote, reload) wait until it runs again.
        let signals_postmaster = matches!(
            action,
            PgAction::Promote { .. }
                | PgAction::Follow { .. }
                | PgAction::SetSyncStandbys { .. }
                | PgAction::Reload { .. }
        );
        if signals_postmaster && self.nodes[i].pg.postmaster_frozen {
            return Err(format!(
                "{}: the postmaster does not respond",
                action.kind()
            ));
        }
        match action {
            PgAction::Bootstrap => {
                if self.nodes[i].pg.data.is_some() {
                    return Err("data directory not empty".into());
                }
                let sysid = format!("73{:016}", self.plan.seed % 10_000_000_000_000_000);
                let id = self.fresh_id();
                let pg = &mut self.nodes[i].pg;
                pg.data = Some(Data {
                    sysid: sysid.clone(),
                    wal: vec![Rec { id, tl: 1 }],
                    standby_signal: false,
                    control: ControlState::InProduction,
                    upstream: None,
                    sync_names: String::new(),
                    sync_rule: None,
                    slots: Vec::new(),
                });
                pg.start(false, None)?;
                Ok(Some(sysid))
            }
            PgAction::Clone { from } | PgAction::Reinitialize { from } => {
                if matches!(action, PgAction::Clone { .. }) && self.nodes[i].pg.data.is_some() {
                    return Err("data directory not empty".into());
                }
                if matches!(action, PgAction::Reinitialize { .. }) {
                    // As the real action: stop and wipe first, whatever the clone then does.
                    let pg = &mut self.nodes[i].pg;
                    pg.stop(false);
                    pg.data = None;
                }
                let j = self.source(i, &from.name)?;
                let source = self.nodes[j].pg.data.clone().ok_or("source has no data")?;
                let pg = &mut self.nodes[i].pg;
                pg.stop(false);
                pg.data = Some(Data {
                    sysid: source.sysid,
                    wal: source.wal,
                    standby_signal: true,
                    control: ControlState::InArchiveRecovery,
                    upstream: Some(from.name.clone()),
                    sync_names: String::new(),
                    sync_rule: None,
                    slots: Vec::new(),
                });
                pg.start(true, Some(from.name.clone()))?;
                Ok(None)
            }
            PgAction::StartReplica { upstream } => {
                let upstream = upstream.as_ref().map(|u| u.name.clone());
                self.nodes[i].pg.start(true, upstream)?;
                Ok(None)
            }
            PgAction::StartPrimary { sync_standbys } => {
                // The runtime forgets the setting across an agent restart: only what the
                // core sends survives (the fake keeps none of its own).
                if let Some(d) = self.nodes[i].pg.data.as_mut() {
                    d.set_sync_names(
                        sync_standbys
                            .as_ref()
                            .map(|n| n.render())
                            .unwrap_or_default(),
                    );
                }
                self.nodes[i].pg.start(false, None)?;
                self.check_may_write(i, "start_primary");
                Ok(None)
            }
            PgAction::Follow { upstream } => {
                let pg = &mut self.nodes[i].pg;
                if pg.running != Some(true) {
                    return Err("not a running standby".into());
                }
                if let Some(d) = pg.data.as_mut() {
                    d.upstream = Some(upstream.name.clone());
                }
                Ok(None)
            }
            PgAction::Promote { sync_standbys, .. } => {
                // Strict mode: the setting is in effect before the first commit can happen.
                if let (Some(names), Some(d)) = (sync_standbys, self.nodes[i].pg.data.as_mut()) {
                    d.set_sync_names(names.render());
                }
                let id = self.fresh_id();
                let tl = self.nodes[i].pg.promote(id)?;
                self.outcome.promotions += 1;
                // Timelines only grow. Equal is possible and not a fault of the agent:
                // without a shared WAL archive PostgreSQL picks one above the highest it
                // knows, so a promotion that was isolated before writing `/history` and a
                // later one can pick the same number (the former primary is then rewound).
                if tl < self.max_tl_created {
                    self.violate(format!(
                        "{} promoted onto timeline {tl}, below timeline {} an earlier promotion created",
                        self.nodes[i].name, self.max_tl_created
                    ));
                }
                self.max_tl_created = self.max_tl_created.max(tl);
                self.check_may_write(i, "promote");
                Ok(None)
            }
            PgAction::Demote { mode } => {
                let clean = matches!(mode, DemoteMode::Graceful | DemoteMode::Offline);
                if clean && self.nodes[i].pg.postmaster_frozen {
                    return Err("pg_ctl stop -m fast: server does not shut down".into());
                }
                // Immediate: pg_ctl, or the SIGKILL of the postmaster and its children.
                self.nodes[i].pg.stop(clean);
                Ok(None)
            }
            PgAction::Rewind { from } => {
                let j = self.source(i, &from.name)?;
                let source = self.nodes[j].pg.data.clone().ok_or("source has no data")?;
                let pg = &mut self.nodes[i].pg;
                pg.stop(true);
                let data = pg.data.as_mut().ok_or("no data directory")?;
                if data.sysid != source.sysid {
                    return Err("different system identifier".into());
                }
                // pg_rewind copies what changed since the fork: the result replays as the
                // source's timeline up to where the source was.
                let keep = common_prefix(&data.wal, &source.wal);
                data.wal.truncate(keep);
                data.wal.extend_from_slice(&source.wal[keep..]);
                pg.start(true, Some(from.name.clone()))?;
                Ok(None)
            }
            PgAction::SetSyncStandbys { names } => {
                let pg = &mut self.nodes[i].pg;
                if pg.running != Some(false) {
                    return Err("not a running primary".into());
                }
                if let Some(d) = pg.data.as_mut() {
                    d.set_sync_names(names.render());
                }
                Ok(None)
            }
            PgAction::Reload { .. } => {
                if self.nodes[i].pg.running.is_none() {
                    return Err("not running".into());
                }
                Ok(None)
            }
            PgAction::Restart { start, .. } => {
                if self.nodes[i].pg.postmaster_frozen {
                    return Err("pg_ctl stop -m fast: server does not shut down".into());
                }
                self.nodes[i].pg.stop(true);
                if matches!(**start, PgAction::StartPrimary { .. }) {
                    // As the worker: a primary starts again only under a current lease.
                    let now = self.node_now(i);
                    let current = self.nodes[i].status.as_ref().is_some_and(|s| {
                        s.state == "primary"
                            && s.leader_revision.is_some()
                            && s.lease_deadline.is_some_and(|d| now < d)
                    });
                    if !current {
                        return Err("the lease ended during the restart".into());
                    }
                }
                self.apply_action(i, start)
            }
            PgAction::EnsureSlots { names } => {
                let pg = &mut self.nodes[i].pg;
                if pg.running.is_none() {
                    return Err("not running".into());
                }
                if let Some(d) = pg.data.as_mut() {
                    for n in names {
                        if !d.slots.contains(n) {
                            d.slots.push(n.clone());
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    pub(super) fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn history_of(&self, i: usize, timeline: Timeline) -> Vec<HistoryEntry> {
        let Some(d) = self.nodes[i].pg.data.as_ref() else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for (k, pair) in d.wal.windows(2).enumerate() {
            if pair[1].tl != pair[0].tl && pair[0].tl < timeline.0 {
                entries.push(HistoryEntry {
                    timeline: Timeline(pair[0].tl),
                    switch_lsn: lsn_of(k + 1),
                    reason: "no recovery target specified".into(),
                    timestamp: None,
                    new_leader: Some(self.nodes[i].name.clone()),
                });
            }
        }
        entries
    }

    /// Streaming: every standby copies what its upstream has, if its WAL is a prefix of it.
    /// A watchdog not fed within its timeout resets the machine: every process dies, and the
    /// agent comes back after the reboot.
    pub(super) fn watchdogs(&mut self) {
        for i in 0..self.nodes.len() {
            let Some((timeout, fed)) = self.nodes[i].dog else {
                continue;
            };
            if self.nodes[i].suspended_since.is_some() {
                continue;
            }
            if self.now <= fed + timeout {
                continue;
            }
            self.log(|| format!("{} WATCHDOG fires: the machine resets", self.nodes[i].name));
            self.outcome.watchdog_resets += 1;
            self.nodes[i].dog = None;
            self.kill_agent(i);
            self.nodes[i].pg.stop(false);
            self.after(AGENT_RESTART_MS, Ev::AgentStart { node: i });
        }
    }

    pub(super) fn stream(&mut self) {
        self.watchdogs();
        for i in 0..self.nodes.len() {
            let pg = &self.nodes[i].pg;
            if pg.running != Some(true) || pg.frozen {
                continue;
            }
            let upstream = pg.data.as_ref().and_then(|d| d.upstream.clone());
            // A walsender already serving this standby survives its postmaster's freeze.
            let connected = pg.streaming_from.is_some() && pg.streaming_from == upstream;
            let source = upstream.as_deref().and_then(|u| match self.source(i, u) {
                Ok(j) => Some(j),
                Err(_) => self.find(u).filter(|&j| {
                    connected
                        && self.peers_reachable(i, j)
                        && self.nodes[j].pg.postmaster_frozen
                        && !self.nodes[j].pg.frozen
                        && self.nodes[j].pg.running.is_some()
                }),
            });
            let mut streaming_from = None;
            // A slow standby receives only the records due since it last caught up.
            let cap = match self.nodes[i].slow_receive {
                Some((every, since)) => ((self.now - since) / every).min(200) as usize,
                None => 200,
            };
            let mut received = 0;
            if let Some(j) = source {
                let have = self.nodes[i].pg.wal_len();
                let (prefix, missing) = match (&self.nodes[j].pg.data, &self.nodes[i].pg.data) {
                    (Some(theirs), Some(mine)) => {
                        let upto = theirs.wal.len().min(have + cap);
                        (
                            is_prefix(&mine.wal, &theirs.wal),
                            theirs.wal.get(have..upto).map(<[Rec]>::to_vec),
                        )
                    }
                    _ => (false, None),
                };
                if prefix {
                    if let (Some(missing), Some(mine)) = (missing, self.nodes[i].pg.data.as_mut()) {
                        received = missing.len();
                        mine.wal.extend_from_slice(&missing);
                    }
                    streaming_from = upstream;
                }
            }
            if let Some((every, since)) = self.nodes[i].slow_receive.as_mut() {
                // Credit does not pile up while there is nothing to receive.
                *since = if received < cap {
                    self.now
                } else {
                    *since + received as u64 * *every
                };
            }
            self.nodes[i].pg.streaming_from = streaming_from;
        }
        for i in 0..self.nodes.len() {
            self.acknowledge(i);
        }
    }

    pub(super) fn client_writes(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].pg.is_writable() {
                continue;
            }
            let id = self.fresh_id();
            let pg = &mut self.nodes[i].pg;
            let Some(d) = pg.data.as_mut() else { continue };
            let tl = d.timeline();
            d.wal.push(Rec { id, tl });
            let upto = d.wal.len();
            pg.pending.push(Pending { id, upto });
            self.acknowledge(i);
        }
    }

    /// Acknowledge the commits on `i` its synchronous standbys have flushed.
    pub(super) fn acknowledge(&mut self, i: usize) {
        if !self.nodes[i].pg.is_writable() || self.nodes[i].pg.pending.is_empty() {
            return;
        }
        let rule = self.nodes[i]
            .pg
            .data
            .as_ref()
            .and_then(|d| d.sync_rule.clone());
        let streaming = self.streaming_standbys(i);
        if rule.is_some() {
            self.strict_engaged = true;
        }
        if rule.is_none() && self.plan.sync_variant == SyncVariant::Strict && self.strict_engaged {
            // Strict mode: once the first primary configured a synchronous standby (between
            // bootstrap and that first cycle a lone primary has nobody to wait for), no commit
            // is acknowledged without a synchronous copy, across failovers included.
            let name = self.nodes[i].name.clone();
            self.violate(format!(
                "strict mode: {name} acknowledges commits with no synchronous standby configured"
            ));
        }
        let flushed_by: Vec<usize> = match &rule {
            None => vec![usize::MAX],
            Some(r) if r.any => {
                let mut positions: Vec<usize> = streaming
                    .iter()
                    .filter(|&&j| r.names.contains(&self.nodes[j].name))
                    .map(|&j| self.nodes[j].pg.wal_len())
                    .collect();
                positions.sort_unstable_by(|a, b| b.cmp(a));
                positions
                    .get(r.count.max(1) - 1)
                    .copied()
                    .into_iter()
                    .collect()
            }
            Some(r) => {
                let sync = self.sync_standbys_now(i, &streaming);
                if sync.len() < r.count {
                    Vec::new()
                } else {
                    vec![sync
                        .iter()
                        .map(|&j| self.nodes[j].pg.wal_len())
                        .min()
                        .unwrap_or(0)]
                }
            }
        };
        let Some(&flushed) = flushed_by.first() else {
            return;
        };
        let pending = std::mem::take(&mut self.nodes[i].pg.pending);
        let (done, waiting): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| p.upto <= flushed);
        self.nodes[i].pg.pending = waiting;
        for p in done {
            self.acked.push(Ack {
                id: p.id,
                node: i,
                at: self.now,
            });
        }
    }
}
