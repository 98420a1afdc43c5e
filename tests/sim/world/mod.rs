//! The simulated world: N agents running the real core, one in-memory lock store, a fake
//! PostgreSQL per node, a network that can be cut, a client writing numbered commits to
//! every writable primary, and a discrete-event clock. It plays the part of the runtime:
//! every effect the core emits is carried out here (with latency, failures and faults) and
//! its result fed back as an input, exactly as `src/runtime/executor.rs` does against etcd
//! and PostgreSQL.

mod checks;
mod effects;
mod failsafe;
mod faults;
mod postgres;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use pgwarden::config::{DynamicConfig, SynchronousMode, WatchdogMode};
use pgwarden::core::failsafe::HeartbeatVerdict;
use pgwarden::core::view::{
    ControlState, DataDir, HistoryEntry, PeerReport, PgObservation, ReplicationPeer,
    ServerObservation, SyncState,
};
use pgwarden::core::watchdog::{ArmReport, WatchdogSettings};
use pgwarden::core::{
    DemoteMode, Effect, Input, Instant, LeaseId, Node, NodeSettings, NodeStatus, PgAction,
    PgActionOutcome, PolicyAnswer, PolicyCall, Timeline,
};
use pgwarden::runtime::executor::peer_status;
use pgwarden::runtime::member::{member_json, patroni_json, Identity};

use crate::nemesis::{Fault, Plan, SyncVariant};
use crate::pg::{common_prefix, lsn_of, Data, FakePg, Pending, Rec};
use crate::rng::Rng;
use crate::store::{MemStore, EXPIRY_TICK_MS};

/// Decides policy calls: the native default policy, or a wasm component through the host.
pub type Decide = Box<dyn FnMut(&PolicyCall) -> PolicyAnswer>;

/// Client commits are attempted this often on every writable primary.
const WRITE_EVERY_MS: u64 = 50;
/// Standbys pull WAL from their upstream this often.
const STREAM_EVERY_MS: u64 = 20;
/// `pgwarden.unresponsive_primary_timeout_ms` in the simulated clusters.
const UNRESPONSIVE_PRIMARY_TIMEOUT_MS: u64 = 5_000;
/// `pg_ctl_timeout`: how long a fast stop of a frozen postmaster waits before failing.
const PG_CTL_TIMEOUT_MS: u64 = 60_000;
/// A probe of a frozen postmaster gives up after this long (the probe's connect timeout).
const PROBE_TIMEOUT_MS: u64 = 3_000;
/// `pgwarden.peer_probe_timeout_ms`.
const PEER_PROBE_TIMEOUT_MS: u64 = 2_000;
/// The executor's pause between keep-alive retries.
const RENEW_RETRY_MS: u64 = 300;
/// systemd's restart delay for an agent that exited.
const AGENT_RESTART_MS: u64 = 5_000;

/// A lock store request in flight, and what its answer becomes.
#[derive(Clone, Debug)]
enum Op {
    Grant {
        ttl_secs: u32,
        sent_at: Instant,
    },
    Renew {
        lease: LeaseId,
        sent_at: Instant,
        give_up: u64,
    },
    Revoke {
        lease: LeaseId,
    },
    PutMember {
        lease: LeaseId,
        value: String,
    },
    RaceInitialize,
    CancelInitialize,
    ClearStaleInitialize {
        mod_revision: i64,
    },
    WriteInitialize {
        sysid: String,
    },
    WriteConfig {
        json: String,
    },
    Acquire {
        lease: LeaseId,
    },
    Release {
        lease: Option<LeaseId>,
        create_revision: Option<i64>,
    },
    WriteSync {
        seq: u64,
        state: SyncState,
        expected: Option<i64>,
    },
    ClearFailover {
        expected: Option<i64>,
    },
    WriteStatus {
        optime: pgwarden::core::Lsn,
    },
    WriteHistory {
        entries: Vec<HistoryEntry>,
    },
    WriteFailsafe {
        members: Option<BTreeMap<String, String>>,
    },
}

#[derive(Clone, Debug)]
enum Ev {
    Tick {
        node: usize,
        gen: u64,
    },
    Deliver {
        node: usize,
        inc: u64,
        input: Input,
    },
    /// A request reaching the store.
    Rpc {
        node: usize,
        inc: u64,
        op: Op,
    },
    /// The store's answer reaching the node (a failure if the way back is cut).
    Reply {
        node: usize,
        inc: u64,
        input: Option<Input>,
        op: Op,
    },
    /// The request never reached the store: the client reports an error.
    Lost {
        node: usize,
        inc: u64,
        op: Op,
    },
    Watch {
        node: usize,
        inc: u64,
    },
    WatchRetry {
        node: usize,
        inc: u64,
    },
    Probe {
        node: usize,
        inc: u64,
    },
    PgDone {
        node: usize,
        inc: u64,
        action: PgAction,
    },
    /// A failsafe round's requests reaching the members.
    FailsafePost {
        node: usize,
        inc: u64,
        members: Vec<(String, String)>,
        sent_at: Instant,
    },
    Expiry,
    Stream,
    Write,
    FaultStart(usize),
    FaultEnd(usize),
    AgentStart {
        node: usize,
    },
    HealCheck,
}

struct Agent {
    node: Node,
    inc: u64,
}

struct SimNode {
    name: String,
    identity: Identity,
    settings: NodeSettings,
    agent: Option<Agent>,
    incarnation: u64,
    paused: bool,
    held: Vec<Input>,
    tick_gen: u64,
    clock_offset: u64,
    pg: FakePg,
    worker: VecDeque<PgAction>,
    worker_busy: bool,
    watch_broken: bool,
    watch_pending: bool,
    status: Option<NodeStatus>,
    /// The watchdog device while armed: (timeout, last keepalive), global milliseconds.
    dog: Option<(u64, u64)>,
    /// The machine is suspended (VM), since then: nothing on it runs, its watchdog included.
    suspended_since: Option<u64>,
    /// The agent's incarnation when the postmaster froze (the liveness check applies to an
    /// agent that kept running; a restarted one has no lease and waits for the old to expire).
    incarnation_at_freeze: u64,
    /// A slow standby: (one record per this many ms, received everything due up to then).
    slow_receive: Option<(u64, u64)>,
    /// Its `pre_promote` script vetoes every promotion.
    vetoes_promotion: bool,
}

/// A commit the client saw acknowledged.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: u64,
    pub node: usize,
    pub at: u64,
}

/// Counters a run reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub acked: usize,
    pub promotions: usize,
    pub watchdog_resets: usize,
    /// Failsafe rounds every member confirmed, and rounds that failed.
    pub failsafe_confirmed: usize,
    pub failsafe_failed: usize,
    /// Operators' `POST /reinitialize` requests accepted and refused.
    pub reinitialize_accepted: usize,
    pub reinitialize_refused: usize,
    /// Operators' `POST /restart` requests accepted and refused, and reloads.
    pub restart_accepted: usize,
    pub restart_refused: usize,
    pub reloads: usize,
    /// Maintenance-mode windows (pause, then resume).
    pub pauses: usize,
    /// Promotions the `pre_promote` script vetoed, and callbacks run.
    pub promotions_vetoed: usize,
    pub callbacks: usize,
    pub healed_after_ms: Option<u64>,
    pub events: u64,
    pub sim_ms: u64,
}

pub struct World {
    pub plan: Plan,
    now: u64,
    rng: Rng,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    store: MemStore,
    store_down: u32,
    /// Maintenance mode is on (`OperatorPause`).
    cluster_paused: bool,
    /// When maintenance mode last ended: timeouts that the pause suspends run from here.
    resumed_at: u64,
    slow_store: u32,
    nodes: Vec<SimNode>,
    cut_store: Vec<u32>,
    cut_peer: BTreeMap<(usize, usize), u32>,
    next_id: u64,
    acked: Vec<Ack>,
    max_tl_created: u32,
    /// A primary has had synchronous standbys configured (strict mode is in force).
    strict_engaged: bool,
    next_failsafe_request: u64,
    next_reinitialize_request: u64,
    next_restart_request: u64,
    decide: Decide,
    pub violations: Vec<String>,
    pub outcome: Outcome,
    /// Every transition any node made: (from, event, to, why code).
    pub transitions: BTreeSet<(&'static str, String, &'static str, &'static str)>,
    verbose: bool,
}

impl World {
    pub fn new(plan: Plan, decide: Decide, verbose: bool) -> World {
        World::with_settings(plan, decide, verbose, |_| {})
    }

    /// [`World::new`] with every node's settings adjusted by `tweak` (the state-machine
    /// table drives settings the generated plans keep fixed, like `use_pg_rewind`).
    pub fn with_settings(
        plan: Plan,
        decide: Decide,
        verbose: bool,
        tweak: impl Fn(&mut NodeSettings),
    ) -> World {
        let mut rng = Rng::new(plan.seed.wrapping_mul(31).wrapping_add(7));
        let config = DynamicConfig {
            ttl: plan.ttl,
            loop_wait: plan.loop_wait,
            retry_timeout: plan.retry_timeout,
            synchronous_mode: match plan.sync_variant {
                SyncVariant::Off => SynchronousMode::Off,
                SyncVariant::On | SyncVariant::Strict => SynchronousMode::On,
                SyncVariant::Quorum => SynchronousMode::Quorum,
            },
            synchronous_mode_strict: plan.sync_variant == SyncVariant::Strict,
            failsafe_mode: plan.failsafe,
            maximum_lag_on_syncnode: plan.maximum_lag_on_syncnode,
            ..DynamicConfig::default()
        };
        let mut nodes = (0..plan.nodes)
            .map(|i| {
                let name = format!("node{}", i + 1);
                SimNode {
                    identity: Identity {
                        scope: "sim".into(),
                        name: name.clone(),
                        conn_url: format!("postgres://10.99.0.{}:5432/postgres", i + 1),
                        api_url: format!("http://10.99.0.{}:8008/patroni", i + 1),
                    },
                    settings: NodeSettings {
                        name: name.clone(),
                        failover_priority: 1,
                        watchdog: WatchdogSettings {
                            mode: if plan.watchdog {
                                WatchdogMode::Automatic
                            } else {
                                WatchdogMode::Off
                            },
                            device: "/dev/watchdog".into(),
                            safety_margin: plan.watchdog_safety_margin,
                        },
                        use_pg_rewind: Some(true),
                        remove_data_directory_on_rewind_failure: true,
                        remove_data_directory_on_diverged_timelines: true,
                        demotion_margin: Duration::from_millis(plan.margin_ms),
                        unresponsive_primary_timeout: Duration::from_millis(
                            UNRESPONSIVE_PRIMARY_TIMEOUT_MS,
                        ),
                        tags: Default::default(),
                        bootstrap_config: config.clone(),
                        policy_params: Default::default(),
                        custom_bootstrap_method: None,
                    },
                    name,
                    agent: None,
                    incarnation: 0,
                    paused: false,
                    held: Vec::new(),
                    tick_gen: 0,
                    clock_offset: rng.range(0, 5_000),
                    pg: FakePg::default(),
                    worker: VecDeque::new(),
                    worker_busy: false,
                    watch_broken: false,
                    watch_pending: false,
                    status: None,
                    dog: None,
                    suspended_since: None,
                    incarnation_at_freeze: 0,
                    slow_receive: None,
                    vetoes_promotion: false,
                }
            })
            .collect::<Vec<_>>();
        for node in &mut nodes {
            tweak(&mut node.settings);
        }
        let n = nodes.len();
        let mut world = World {
            plan,
            now: 0,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            store: MemStore::new(),
            store_down: 0,
            cluster_paused: false,
            resumed_at: 0,
            slow_store: 0,
            nodes,
            cut_store: vec![0; n],
            cut_peer: BTreeMap::new(),
            next_id: 1,
            acked: Vec::new(),
            max_tl_created: 1,
            strict_engaged: false,
            next_failsafe_request: 0,
            next_reinitialize_request: 0,
            next_restart_request: 0,
            decide,
            violations: Vec::new(),
            outcome: Outcome::default(),
            transitions: BTreeSet::new(),
            verbose,
        };
        for i in 0..n {
            let at = world.rng.range(0, 300);
            world.at(at, Ev::AgentStart { node: i });
        }
        world.at(EXPIRY_TICK_MS, Ev::Expiry);
        world.at(STREAM_EVERY_MS, Ev::Stream);
        world.at(WRITE_EVERY_MS, Ev::Write);
        for (i, f) in world.plan.faults.clone().iter().enumerate() {
            world.at(f.at, Ev::FaultStart(i));
            world.at(f.at + f.duration, Ev::FaultEnd(i));
        }
        world.at(world.plan.heal_at, Ev::HealCheck);
        world
    }

    fn at(&mut self, when: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((when.max(self.now), self.seq), ev);
    }

    fn after(&mut self, delay: u64, ev: Ev) {
        self.at(self.now + delay, ev);
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            eprintln!("[{:>7} ms] {}", self.now, what());
        }
    }

    fn node_now(&self, i: usize) -> Instant {
        Instant(self.now + self.nodes[i].clock_offset)
    }

    fn store_reachable(&self, i: usize) -> bool {
        self.store_down == 0 && self.cut_store[i] == 0
    }

    fn peers_reachable(&self, a: usize, b: usize) -> bool {
        a == b
            || self
                .cut_peer
                .get(&(a.min(b), a.max(b)))
                .copied()
                .unwrap_or(0)
                == 0
    }

    fn store_latency(&mut self) -> u64 {
        if self.slow_store > 0 {
            self.rng.range(300, 2_500)
        } else {
            self.rng.range(1, 5)
        }
    }

    /// Run until the cluster healed after the last fault, or the heal bound passed.
    pub fn run(mut self) -> World {
        let end = self.plan.heal_at + self.plan.heal_bound;
        while let Some((&(when, seq), _)) = self.queue.iter().next() {
            if when > end || self.outcome.healed_after_ms.is_some() || !self.violations.is_empty() {
                break;
            }
            let ev = self.queue.remove(&(when, seq)).expect("peeked event");
            self.now = when;
            self.outcome.events += 1;
            self.handle(ev);
            self.check_writers();
        }
        self.outcome.sim_ms = self.now;
        self.outcome.acked = self.acked.len();
        if self.violations.is_empty() && self.outcome.healed_after_ms.is_none() {
            let why = self.unhealthy_reason().unwrap_or_default();
            self.violations.push(format!(
                "the cluster did not heal within {} ms after the last fault: {why}",
                self.plan.heal_bound
            ));
        }
        self
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick { node, gen } => {
                if self.nodes[node].tick_gen == gen {
                    self.feed(node, Input::Tick);
                }
            }
            Ev::Deliver { node, inc, input } => {
                if self.nodes[node]
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.inc == inc)
                {
                    self.feed(node, input);
                }
            }
            Ev::Rpc { node, inc, op } => self.rpc_arrives(node, inc, op),
            Ev::Reply {
                node,
                inc,
                input,
                op,
            } => {
                if self.store_reachable(node) {
                    if let Some(input) = input {
                        self.at(self.now, Ev::Deliver { node, inc, input });
                    }
                } else {
                    self.rpc_failed(node, inc, op);
                }
            }
            Ev::Lost { node, inc, op } => self.rpc_failed(node, inc, op),
            Ev::Watch { node, inc } => {
                self.nodes[node].watch_pending = false;
                self.watch_deliver(node, inc);
            }
            Ev::WatchRetry { node, inc } => {
                if self.alive(node, inc) && self.nodes[node].watch_broken {
                    self.watch_deliver(node, inc);
                    if self.nodes[node].watch_broken {
                        self.after(500, Ev::WatchRetry { node, inc });
                    }
                }
            }
            Ev::Probe { node, inc } => self.probe(node, inc),
            Ev::PgDone { node, inc, action } => self.pg_done(node, inc, action),
            Ev::FailsafePost {
                node,
                inc,
                members,
                sent_at,
            } => {
                if self.alive(node, inc) {
                    self.failsafe_post_arrives(node, inc, members, sent_at);
                }
            }
            Ev::Expiry => {
                self.check_frozen_leader();
                let before = self.store.revision();
                self.store.expire(self.now);
                if self.store.revision() != before {
                    self.store_changed();
                }
                self.after(EXPIRY_TICK_MS, Ev::Expiry);
            }
            Ev::Stream => {
                self.stream();
                self.after(STREAM_EVERY_MS, Ev::Stream);
            }
            Ev::Write => {
                self.client_writes();
                self.after(WRITE_EVERY_MS, Ev::Write);
            }
            Ev::FaultStart(i) => self.fault(i, true),
            Ev::FaultEnd(i) => self.fault(i, false),
            Ev::AgentStart { node } => self.start_agent(node),
            Ev::HealCheck => {
                if self.unhealthy_reason().is_none() {
                    self.outcome.healed_after_ms = Some(self.now - self.plan.heal_at);
                } else {
                    self.after(250, Ev::HealCheck);
                }
            }
        }
    }

    fn alive(&self, node: usize, inc: u64) -> bool {
        self.nodes[node]
            .agent
            .as_ref()
            .is_some_and(|a| a.inc == inc)
    }

    // ---- the agent process -------------------------------------------------------------

    fn start_agent(&mut self, i: usize) {
        if self.nodes[i].agent.is_some() {
            return;
        }
        if self.nodes[i].suspended_since.is_some() {
            // Nothing starts on a suspended machine; look again after it resumes.
            self.after(500, Ev::AgentStart { node: i });
            return;
        }
        let now = self.node_now(i);
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        let inc = n.incarnation;
        n.agent = Some(Agent {
            node: Node::new(n.settings.clone(), now),
            inc,
        });
        n.paused = false;
        n.held.clear();
        n.worker.clear();
        n.watch_broken = false;
        self.log(|| format!("{} agent starts (incarnation {inc})", self.nodes[i].name));
        if self.store_reachable(i) {
            self.watch_deliver(i, inc);
        } else {
            // The runtime reports an unreachable store only once connecting took longer
            // than retry_timeout.
            self.nodes[i].watch_broken = true;
            let patience = u64::from(self.plan.retry_timeout) * 1_000;
            self.after(patience, Ev::WatchRetry { node: i, inc });
        }
        self.feed(i, Input::Tick);
    }

    fn kill_agent(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.agent = None;
        n.paused = false;
        n.held.clear();
        n.worker.clear();
        n.worker_busy = false;
        n.tick_gen += 1;
        n.status = None;
    }

    fn resume(&mut self, i: usize) {
        if !self.nodes[i].paused {
            return;
        }
        self.nodes[i].paused = false;
        let held = std::mem::take(&mut self.nodes[i].held);
        self.log(|| {
            format!(
                "{} agent resumes with {} inputs",
                self.nodes[i].name,
                held.len()
            )
        });
        // A resumed process first sees its timers fire (the boot clock moved on), then the
        // answers that queued up while it was stopped.
        self.feed(i, Input::Tick);
        for input in held {
            if self.nodes[i].agent.is_none() || self.nodes[i].paused {
                break;
            }
            self.feed(i, input);
        }
        self.start_next_action(i);
    }

    /// Hand an input to the node's core and carry out what it asks.
    fn feed(&mut self, i: usize, input: Input) {
        let now = self.node_now(i);
        let n = &mut self.nodes[i];
        if n.paused {
            if !matches!(input, Input::Tick) {
                n.held.push(input);
            }
            return;
        }
        let Some(agent) = n.agent.as_mut() else {
            return;
        };
        let inc = agent.inc;
        if self.verbose
            && matches!(
                input,
                Input::LeaseGranted { .. }
                    | Input::LeaseRenewFailed { .. }
                    | Input::LeaseRenewed { .. }
                    | Input::LeaderAcquired { .. }
                    | Input::LeaseGrantFailed { .. }
            )
        {
            eprintln!(
                "[{:>7} ms] {} (node time {}) <- {input:?}",
                self.now, n.name, now.0
            );
        }
        agent.node.handle_input(now, input);
        let made = agent.node.take_transitions();
        let before = n.status.as_ref().map(|s| s.state);
        let status = agent.node.status();
        let after = status.state;
        n.status = Some(status);
        let mut effects = Vec::new();
        while let Some(e) = agent.node.poll_effect() {
            effects.push(e);
        }
        let wake = agent.node.poll_timeout();
        for t in made {
            self.transitions
                .insert((t.from, t.event, t.to, t.why.code()));
        }
        if before != Some(after) {
            let s = self.nodes[i]
                .status
                .as_ref()
                .map(|s| s.last_transition.clone());
            self.log(|| {
                format!(
                    "{} -> {after}: {}",
                    self.nodes[i].name,
                    s.unwrap_or_default()
                )
            });
        }
        for effect in effects {
            if self.nodes[i].agent.as_ref().map(|a| a.inc) != Some(inc) {
                break; // the agent exited while carrying out an earlier effect
            }
            self.execute(i, inc, effect);
        }
        // The runtime sleeps at most a second between looks at the boot clock.
        let offset = self.nodes[i].clock_offset;
        let wake = wake
            .map(|w| w.0.saturating_sub(offset))
            .unwrap_or(u64::MAX)
            .min(self.now + 1_000)
            .max(self.now + 1);
        let n = &mut self.nodes[i];
        n.tick_gen += 1;
        let gen = n.tick_gen;
        self.at(wake, Ev::Tick { node: i, gen });
    }
}

/// Whether `mine` is a prefix of `theirs`. Record ids are unique and WAL only ever grows by
/// appending or by copying a prefix of another WAL, so a record found at the same position in
/// both implies the same history before it: comparing the last one suffices.
fn is_prefix(mine: &[Rec], theirs: &[Rec]) -> bool {
    match mine.last() {
        None => true,
        Some(last) => theirs.get(mine.len() - 1) == Some(last),
    }
}
