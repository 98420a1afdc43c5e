//! The simulated world: N agents running the real core, one in-memory lock store, a fake
//! PostgreSQL per node, a network that can be cut, a client writing numbered commits to
//! every writable primary, and a discrete-event clock. It plays the part of the runtime:
//! every effect the core emits is carried out here (with latency, failures and faults) and
//! its result fed back as an input, exactly as `src/runtime/executor.rs` does against etcd
//! and PostgreSQL.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use pgwarden::config::DynamicConfig;
use pgwarden::core::view::{
    ControlState, DataDir, HistoryEntry, PeerReport, PgObservation, ReplicationPeer,
    ServerObservation, SyncState,
};
use pgwarden::core::{
    DemoteMode, Effect, Input, Instant, LeaseId, Node, NodeSettings, NodeStatus, PgAction,
    PgActionOutcome, PolicyAnswer, PolicyCall, Timeline,
};
use pgwarden::runtime::executor::peer_status;
use pgwarden::runtime::member::{member_json, patroni_json, Identity};

use crate::nemesis::{Fault, Plan};
use crate::pg::{common_prefix, lsn_of, parse_sync_rule, Data, FakePg, Pending, Rec};
use crate::rng::Rng;
use crate::store::{MemStore, EXPIRY_TICK_MS};

/// Decides policy calls: the native default policy, or a wasm component through the host.
pub type Decide = Box<dyn FnMut(&PolicyCall) -> PolicyAnswer>;

/// Client commits are attempted this often on every writable primary.
const WRITE_EVERY_MS: u64 = 50;
/// Standbys pull WAL from their upstream this often.
const STREAM_EVERY_MS: u64 = 20;
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
}

/// A commit the client saw acknowledged.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: u64,
    pub node: usize,
    pub at: u64,
}

/// Counters a run reports.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub acked: usize,
    pub promotions: usize,
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
    slow_store: u32,
    nodes: Vec<SimNode>,
    cut_store: Vec<u32>,
    cut_peer: BTreeMap<(usize, usize), u32>,
    next_id: u64,
    acked: Vec<Ack>,
    max_tl_created: u32,
    decide: Decide,
    pub violations: Vec<String>,
    pub outcome: Outcome,
    verbose: bool,
}

impl World {
    pub fn new(plan: Plan, decide: Decide, verbose: bool) -> World {
        let mut rng = Rng::new(plan.seed.wrapping_mul(31).wrapping_add(7));
        let config = DynamicConfig {
            ttl: plan.ttl,
            loop_wait: plan.loop_wait,
            retry_timeout: plan.retry_timeout,
            synchronous_mode: if plan.synchronous {
                pgwarden::config::SynchronousMode::On
            } else {
                pgwarden::config::SynchronousMode::Off
            },
            ..DynamicConfig::default()
        };
        let nodes = (0..plan.nodes)
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
                        watchdog_required: false,
                        use_pg_rewind: Some(true),
                        remove_data_directory_on_rewind_failure: true,
                        demotion_margin: Duration::from_millis(plan.margin_ms),
                        tags: Default::default(),
                        bootstrap_config: config.clone(),
                        policy_params: Default::default(),
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
                }
            })
            .collect::<Vec<_>>();
        let n = nodes.len();
        let mut world = World {
            plan,
            now: 0,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            store: MemStore::new(),
            store_down: 0,
            slow_store: 0,
            nodes,
            cut_store: vec![0; n],
            cut_peer: BTreeMap::new(),
            next_id: 1,
            acked: Vec::new(),
            max_tl_created: 1,
            decide,
            violations: Vec::new(),
            outcome: Outcome::default(),
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
            Ev::Expiry => {
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
        let before = n.status.as_ref().map(|s| s.state);
        let status = agent.node.status();
        let after = status.state;
        n.status = Some(status);
        let mut effects = Vec::new();
        while let Some(e) = agent.node.poll_effect() {
            effects.push(e);
        }
        let wake = agent.node.poll_timeout();
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

    fn execute(&mut self, i: usize, inc: u64, effect: Effect) {
        let now = self.node_now(i);
        if matches!(
            effect,
            Effect::ReleaseLeader { .. } | Effect::AcquireLeader { .. } | Effect::WriteSync { .. }
        ) {
            self.log(|| format!("{} -> store: {effect:?}", self.nodes[i].name));
        }
        let op = match effect {
            Effect::GrantLease { ttl_secs } => Op::Grant {
                ttl_secs,
                sent_at: now,
            },
            Effect::RenewLease { lease } => Op::Renew {
                lease,
                sent_at: now,
                give_up: self.now + u64::from(self.plan.retry_timeout) * 1_000,
            },
            Effect::RevokeLease { lease } => Op::Revoke { lease },
            Effect::ProbePostgres => {
                let delay = self.rng.range(2, 15);
                self.after(delay, Ev::Probe { node: i, inc });
                return;
            }
            Effect::TouchMember { lease } => {
                let Some(status) = self.nodes[i].status.as_ref() else {
                    return;
                };
                Op::PutMember {
                    lease,
                    value: member_json(&self.nodes[i].identity, status).to_string(),
                }
            }
            Effect::RaceInitialize => Op::RaceInitialize,
            Effect::CancelInitialize => Op::CancelInitialize,
            Effect::WriteInitialize { sysid } => Op::WriteInitialize { sysid },
            Effect::WriteInitialConfig => Op::WriteConfig {
                json: self.nodes[i]
                    .settings
                    .bootstrap_config
                    .to_json()
                    .to_string(),
            },
            Effect::AcquireLeader { lease } => Op::Acquire { lease },
            Effect::ReleaseLeader {
                lease,
                create_revision,
            } => Op::Release {
                lease,
                create_revision,
            },
            Effect::WriteSync {
                state,
                expected_revision,
            } => Op::WriteSync {
                state,
                expected: expected_revision,
            },
            Effect::ClearFailover {
                expected_revision, ..
            } => Op::ClearFailover {
                expected: expected_revision,
            },
            Effect::WriteStatus { optime } => Op::WriteStatus { optime },
            Effect::UpdateHistory { timeline } => Op::WriteHistory {
                entries: self.history_of(i, timeline),
            },
            Effect::ProbePeers { members } => {
                self.probe_peers(i, inc, members);
                return;
            }
            Effect::ConsultPolicy(call) => {
                let answer = (self.decide)(&call);
                self.after(
                    1,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::PolicyDecided(answer),
                    },
                );
                return;
            }
            Effect::Pg(action) => {
                self.nodes[i].worker.push_back(action);
                self.start_next_action(i);
                return;
            }
            Effect::Shutdown { reason } => {
                self.log(|| format!("{} agent exits: {reason}", self.nodes[i].name));
                self.kill_agent(i);
                self.after(AGENT_RESTART_MS, Ev::AgentStart { node: i });
                return;
            }
        };
        let delay = self.store_latency();
        self.after(delay, Ev::Rpc { node: i, inc, op });
    }

    // ---- the lock store ----------------------------------------------------------------

    fn rpc_arrives(&mut self, i: usize, inc: u64, op: Op) {
        if !self.store_reachable(i) {
            // The client times out; answer after a while.
            let delay = self.rng.range(200, 1_000);
            self.after(delay, Ev::Lost { node: i, inc, op });
            return;
        }
        let before = self.store.revision();
        let name = self.nodes[i].name.clone();
        let input = match &op {
            Op::Grant { ttl_secs, sent_at } => {
                let (lease, granted) = self.store.grant(self.now, *ttl_secs);
                Some(Input::LeaseGranted {
                    lease: LeaseId(lease),
                    ttl_secs: granted,
                    sent_at: *sent_at,
                })
            }
            Op::Renew { lease, sent_at, .. } => {
                if self.store.keep_alive(self.now, lease.0) {
                    Some(Input::LeaseRenewed {
                        lease: *lease,
                        sent_at: *sent_at,
                    })
                } else {
                    Some(Input::LeaseRenewFailed {
                        lease: *lease,
                        expired: true,
                        error: "lease not found".into(),
                    })
                }
            }
            Op::Revoke { lease } => {
                self.store.revoke(lease.0);
                None
            }
            Op::PutMember { lease, value } => {
                let _ = self.store.put_member(&name, value.clone(), lease.0);
                None
            }
            Op::RaceInitialize => Some(Input::InitializeRaced {
                won: self.store.race_initialize(),
            }),
            Op::CancelInitialize => {
                self.store.cancel_initialize();
                None
            }
            Op::WriteInitialize { sysid } => {
                self.store.write_initialize(sysid);
                None
            }
            Op::WriteConfig { json } => {
                self.store.write_config_if_absent(json.clone());
                None
            }
            Op::Acquire { lease } => Some(match self.store.acquire_leader(&name, lease.0) {
                Ok(a) => Input::LeaderAcquired {
                    won: a.won,
                    revision: a.revision,
                    create_revision: a.create_revision,
                },
                Err(_) => Input::LeaderAcquired {
                    won: false,
                    revision: 0,
                    create_revision: 0,
                },
            }),
            Op::Release {
                lease,
                create_revision,
            } => {
                self.store
                    .release_leader(&name, lease.map(|l| l.0), *create_revision);
                None
            }
            Op::WriteSync { state, expected } => Some(Input::SyncWritten {
                ok: self.store.write_sync(state, *expected),
            }),
            Op::ClearFailover { expected } => {
                self.store.clear_failover(*expected);
                None
            }
            Op::WriteStatus { optime } => {
                self.store.write_status(*optime);
                None
            }
            Op::WriteHistory { entries } => {
                self.store.write_history(entries);
                None
            }
        };
        if self.store.revision() != before {
            self.store_changed();
        }
        let delay = self.store_latency();
        self.after(
            delay,
            Ev::Reply {
                node: i,
                inc,
                input,
                op,
            },
        );
    }

    /// A request or its answer was lost: report what the executor reports on an error.
    fn rpc_failed(&mut self, i: usize, inc: u64, op: Op) {
        let error = "etcd unreachable".to_string();
        let input = match op {
            Op::Grant { .. } => Input::LeaseGrantFailed { error },
            Op::Renew { lease, give_up, .. } => {
                if self.now + RENEW_RETRY_MS < give_up && self.alive(i, inc) {
                    let sent_at = Instant(self.now + RENEW_RETRY_MS + self.nodes[i].clock_offset);
                    let delay = RENEW_RETRY_MS + self.store_latency();
                    self.after(
                        delay,
                        Ev::Rpc {
                            node: i,
                            inc,
                            op: Op::Renew {
                                lease,
                                sent_at,
                                give_up,
                            },
                        },
                    );
                    return;
                }
                Input::LeaseRenewFailed {
                    lease,
                    expired: false,
                    error,
                }
            }
            Op::RaceInitialize => Input::InitializeRaced { won: false },
            Op::Acquire { .. } => Input::LeaderAcquired {
                won: false,
                revision: 0,
                create_revision: 0,
            },
            Op::WriteSync { .. } => Input::SyncWritten { ok: false },
            _ => return,
        };
        self.at(
            self.now,
            Ev::Deliver {
                node: i,
                inc,
                input,
            },
        );
    }

    fn store_changed(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(inc) = self.nodes[i].agent.as_ref().map(|a| a.inc) else {
                continue;
            };
            if self.nodes[i].watch_pending || self.nodes[i].watch_broken {
                continue;
            }
            self.nodes[i].watch_pending = true;
            let delay = self.store_latency();
            self.after(delay, Ev::Watch { node: i, inc });
        }
    }

    /// The watch loop: a view when the store answers, `DcsUnreachable` (and a retry every
    /// 500 ms) when it does not.
    fn watch_deliver(&mut self, i: usize, inc: u64) {
        if !self.alive(i, inc) {
            return;
        }
        if self.store_reachable(i) {
            self.nodes[i].watch_broken = false;
            let view = self.store.view();
            self.feed(
                i,
                Input::ClusterChanged(Box::new(Rc::unwrap_or_clone(view))),
            );
        } else {
            let was_broken = self.nodes[i].watch_broken;
            self.nodes[i].watch_broken = true;
            self.feed(
                i,
                Input::DcsUnreachable {
                    error: "watch: etcd unreachable".into(),
                },
            );
            if !was_broken {
                self.after(500, Ev::WatchRetry { node: i, inc });
            }
        }
    }

    // ---- PostgreSQL --------------------------------------------------------------------

    fn observe(&self, i: usize) -> PgObservation {
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
            (Some(in_recovery), Some(d)) if !pg.frozen => {
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
                })
            }
            _ => None,
        };
        PgObservation {
            data_dir,
            postmaster_alive: pg.running.is_some(),
            server,
        }
    }

    /// Standbys streaming from `i`, in member order.
    fn streaming_standbys(&self, i: usize) -> Vec<usize> {
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

    fn replication_rows(&self, i: usize) -> Vec<ReplicationPeer> {
        let rule = self.nodes[i]
            .pg
            .data
            .as_ref()
            .and_then(|d| parse_sync_rule(&d.sync_names));
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
                }
            })
            .collect()
    }

    /// `FIRST n`: the n highest-priority listed standbys that are connected.
    fn sync_standbys_now(&self, i: usize, streaming: &[usize]) -> Vec<usize> {
        let Some(rule) = self.nodes[i]
            .pg
            .data
            .as_ref()
            .and_then(|d| parse_sync_rule(&d.sync_names))
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

    fn probe(&mut self, i: usize, inc: u64) {
        let observation = self.observe(i);
        // A frozen postmaster does not answer: the probe waits for its connect timeout.
        let delay = if self.nodes[i].pg.frozen {
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

    fn probe_peers(&mut self, i: usize, inc: u64, members: Vec<(String, String)>) {
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

    fn start_next_action(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.worker_busy || n.paused || n.agent.is_none() {
            return;
        }
        let inc = n.incarnation;
        let Some(action) = self.nodes[i].worker.pop_front() else {
            return;
        };
        if let PgAction::Promote {
            lease,
            leader_revision,
        } = &action
        {
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
        }
        let duration = match &action {
            PgAction::Bootstrap => self.rng.range(500, 1_500),
            PgAction::Clone { .. } | PgAction::Reinitialize { .. } => self.rng.range(300, 2_000),
            PgAction::StartReplica { .. } | PgAction::StartPrimary => self.rng.range(200, 800),
            PgAction::Follow { .. } => self.rng.range(20, 200),
            PgAction::Promote { .. } => self.rng.range(50, 300),
            PgAction::Demote { mode } => match mode {
                DemoteMode::Immediate | DemoteMode::ImmediateNolock => self.rng.range(20, 150),
                DemoteMode::Graceful | DemoteMode::Offline => self.rng.range(100, 1_000),
            },
            PgAction::Rewind { .. } => self.rng.range(300, 1_500),
            PgAction::SetSyncStandbys { .. } | PgAction::EnsureSlots { .. } => {
                self.rng.range(5, 50)
            }
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

    fn pg_done(&mut self, i: usize, inc: u64, action: PgAction) {
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

    fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// A source a standby may copy from: reachable, running, not frozen.
    fn source(&self, i: usize, name: &str) -> Result<usize, String> {
        let j = self
            .find(name)
            .ok_or_else(|| format!("unknown member {name}"))?;
        let p = &self.nodes[j].pg;
        if !self.peers_reachable(i, j) {
            return Err(format!("{name} unreachable"));
        }
        if p.running.is_none() || p.frozen || p.data.is_none() {
            return Err(format!("{name} is not running"));
        }
        Ok(j)
    }

    fn apply_action(&mut self, i: usize, action: &PgAction) -> Result<Option<String>, String> {
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
                    slots: Vec::new(),
                });
                pg.start(false, None)?;
                Ok(Some(sysid))
            }
            PgAction::Clone { from } | PgAction::Reinitialize { from } => {
                if matches!(action, PgAction::Clone { .. }) && self.nodes[i].pg.data.is_some() {
                    return Err("data directory not empty".into());
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
            PgAction::StartPrimary => {
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
            PgAction::Promote { .. } => {
                let id = self.fresh_id();
                let tl = self.nodes[i].pg.promote(id)?;
                self.outcome.promotions += 1;
                if tl <= self.max_tl_created {
                    self.violate(format!(
                        "{} promoted onto timeline {tl}, which an earlier promotion already created",
                        self.nodes[i].name
                    ));
                }
                self.max_tl_created = self.max_tl_created.max(tl);
                self.check_may_write(i, "promote");
                Ok(None)
            }
            PgAction::Demote { mode } => {
                let clean = matches!(mode, DemoteMode::Graceful | DemoteMode::Offline);
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
                    d.sync_names = pgwarden::core::sync::render_standby_names(names);
                }
                Ok(None)
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

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn history_of(&self, i: usize, timeline: Timeline) -> Vec<HistoryEntry> {
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
    fn stream(&mut self) {
        for i in 0..self.nodes.len() {
            let pg = &self.nodes[i].pg;
            if pg.running != Some(true) || pg.frozen {
                continue;
            }
            let upstream = pg.data.as_ref().and_then(|d| d.upstream.clone());
            let source = upstream.as_deref().and_then(|u| self.source(i, u).ok());
            let mut streaming_from = None;
            if let Some(j) = source {
                let have = self.nodes[i].pg.wal_len();
                let (prefix, missing) = match (&self.nodes[j].pg.data, &self.nodes[i].pg.data) {
                    (Some(theirs), Some(mine)) => {
                        let upto = theirs.wal.len().min(have + 200);
                        (
                            is_prefix(&mine.wal, &theirs.wal),
                            theirs.wal.get(have..upto).map(<[Rec]>::to_vec),
                        )
                    }
                    _ => (false, None),
                };
                if prefix {
                    if let (Some(missing), Some(mine)) = (missing, self.nodes[i].pg.data.as_mut()) {
                        mine.wal.extend_from_slice(&missing);
                    }
                    streaming_from = upstream;
                }
            }
            self.nodes[i].pg.streaming_from = streaming_from;
        }
        for i in 0..self.nodes.len() {
            self.acknowledge(i);
        }
    }

    fn client_writes(&mut self) {
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
    fn acknowledge(&mut self, i: usize) {
        if !self.nodes[i].pg.is_writable() || self.nodes[i].pg.pending.is_empty() {
            return;
        }
        let rule = self.nodes[i]
            .pg
            .data
            .as_ref()
            .and_then(|d| parse_sync_rule(&d.sync_names));
        let streaming = self.streaming_standbys(i);
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

    // ---- faults ------------------------------------------------------------------------

    fn fault(&mut self, idx: usize, start: bool) {
        let fault = self.plan.faults[idx].fault.clone();
        self.log(|| {
            format!(
                "fault {} {:?}",
                if start { "starts" } else { "ends" },
                fault
            )
        });
        let delta: i64 = if start { 1 } else { -1 };
        let bump = |c: &mut u32| *c = (*c as i64 + delta).max(0) as u32;
        match fault {
            Fault::Crash(i) => {
                if start {
                    self.kill_agent(i);
                    self.nodes[i].pg.stop(false);
                } else {
                    self.start_agent(i);
                }
            }
            Fault::KillAgent(i) => {
                if start {
                    self.kill_agent(i);
                } else {
                    self.start_agent(i);
                }
            }
            Fault::PauseAgent(i) => {
                if start {
                    if self.nodes[i].agent.is_some() {
                        self.nodes[i].paused = true;
                    }
                } else {
                    self.resume(i);
                }
            }
            Fault::PausePostmaster(i) => {
                if self.nodes[i].pg.running.is_some() || !start {
                    self.nodes[i].pg.frozen = start && self.nodes[i].pg.running.is_some();
                }
            }
            Fault::Suspend(i) => {
                if start {
                    if self.nodes[i].agent.is_some() {
                        self.nodes[i].paused = true;
                    }
                    if self.nodes[i].pg.running.is_some() {
                        self.nodes[i].pg.frozen = true;
                    }
                } else {
                    self.nodes[i].pg.frozen = false;
                    self.resume(i);
                }
            }
            Fault::PartitionStore(i) => {
                bump(&mut self.cut_store[i]);
                self.network_changed();
            }
            Fault::PartitionPeers(a, b) => {
                let c = self.cut_peer.entry((a.min(b), a.max(b))).or_default();
                bump(c);
            }
            Fault::Isolate(i) => {
                bump(&mut self.cut_store[i]);
                for j in 0..self.nodes.len() {
                    if j != i {
                        let c = self.cut_peer.entry((i.min(j), i.max(j))).or_default();
                        bump(c);
                    }
                }
                self.network_changed();
            }
            Fault::SlowStore => bump(&mut self.slow_store),
            Fault::StoreOutage => {
                bump(&mut self.store_down);
                self.network_changed();
            }
            Fault::Restart(i) => {
                if start {
                    self.clean_stop(i);
                } else {
                    self.start_agent(i);
                }
            }
            Fault::ClockJump(i, ms) => {
                if start {
                    self.nodes[i].clock_offset += ms;
                    self.feed(i, Input::Tick);
                }
            }
        }
    }

    /// SIGTERM: PostgreSQL stopped (fast), then the leader key released if it was ours.
    fn clean_stop(&mut self, i: usize) {
        let Some(status) = self.nodes[i].status.clone() else {
            self.kill_agent(i);
            return;
        };
        if self.nodes[i].paused {
            return; // a stopped process does not handle SIGTERM until continued
        }
        self.kill_agent(i);
        self.nodes[i].pg.stop(true);
        if status.holds_leader_key && self.store_reachable(i) {
            let before = self.store.revision();
            self.store.release_leader(
                &self.nodes[i].name,
                status.lease.map(|l| l.0),
                status.leader_revision,
            );
            if self.store.revision() != before {
                self.store_changed();
            }
        }
    }

    /// Watches notice a cut within their retry period, and recover on the next retry.
    fn network_changed(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(inc) = self.nodes[i].agent.as_ref().map(|a| a.inc) else {
                continue;
            };
            let reachable = self.store_reachable(i);
            if !reachable && !self.nodes[i].watch_broken {
                let delay = self.rng.range(50, 500);
                self.nodes[i].watch_broken = true;
                self.after(delay, Ev::WatchRetry { node: i, inc });
                let at = self.now + delay;
                self.at(
                    at,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::DcsUnreachable {
                            error: "watch: etcd unreachable".into(),
                        },
                    },
                );
            }
        }
    }

    // ---- checkers ----------------------------------------------------------------------

    fn violate(&mut self, what: String) {
        self.log(|| format!("VIOLATION: {what}"));
        self.violations.push(format!("at {} ms: {what}", self.now));
    }

    /// Whoever becomes writable must hold the leader key on a live lease, and must have
    /// every acknowledged commit in synchronous mode.
    fn check_may_write(&mut self, i: usize, how: &str) {
        let name = self.nodes[i].name.clone();
        let holds = self
            .store
            .leader()
            .is_some_and(|(holder, lease)| holder == name && self.store.lease_alive(lease));
        if !holds {
            self.violate(format!(
                "{name} became a writable primary ({how}) without holding the leader key on a live lease"
            ));
        }
        if self.plan.synchronous {
            let wal = self.nodes[i]
                .pg
                .data
                .as_ref()
                .map(|d| {
                    d.wal
                        .iter()
                        .map(|r| r.id)
                        .collect::<std::collections::BTreeSet<_>>()
                })
                .unwrap_or_default();
            let lost: Vec<&Ack> = self.acked.iter().filter(|a| !wal.contains(&a.id)).collect();
            if let Some(first) = lost.first() {
                let what = format!(
                    "{name} became primary ({how}) without {} acknowledged commits (the first: #{} acknowledged by {} at {} ms)",
                    lost.len(),
                    first.id,
                    self.nodes[first.node].name,
                    first.at
                );
                self.violate(what);
            }
        }
    }

    /// Never two nodes able to acknowledge a commit at the same instant.
    fn check_writers(&mut self) {
        if self.nodes.iter().filter(|n| n.pg.is_writable()).count() < 2 {
            return;
        }
        let able: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.can_acknowledge(i))
            .collect();
        if able.len() > 1 {
            let names: Vec<&str> = able.iter().map(|&i| self.nodes[i].name.as_str()).collect();
            let what = format!("two primaries can acknowledge writes at once: {names:?}");
            self.violate(what);
        }
    }

    fn can_acknowledge(&self, i: usize) -> bool {
        let pg = &self.nodes[i].pg;
        if !pg.is_writable() {
            return false;
        }
        let Some(rule) = pg
            .data
            .as_ref()
            .and_then(|d| parse_sync_rule(&d.sync_names))
        else {
            return true;
        };
        let streaming = self.streaming_standbys(i);
        if rule.any {
            streaming
                .iter()
                .filter(|&&j| rule.names.contains(&self.nodes[j].name))
                .count()
                >= rule.count
        } else {
            self.sync_standbys_now(i, &streaming).len() >= rule.count
        }
    }

    /// `None` when one leader runs a writable primary and every other member streams from it.
    fn unhealthy_reason(&self) -> Option<String> {
        let Some((leader, _)) = self.store.leader() else {
            return Some("no leader key".into());
        };
        let Some(l) = self.find(&leader) else {
            return Some(format!("leader key names unknown {leader}"));
        };
        if !self.nodes[l].pg.is_writable() || self.nodes[l].agent.is_none() {
            return Some(format!("leader {leader} is not a running primary"));
        }
        for (j, n) in self.nodes.iter().enumerate() {
            if j == l {
                continue;
            }
            if n.agent.is_none() || n.paused {
                return Some(format!("{} has no running agent", n.name));
            }
            if n.pg.running != Some(true) || n.pg.streaming_from.as_deref() != Some(leader.as_str())
            {
                return Some(format!(
                    "{} is not streaming from {leader} (state {:?}, running {:?}, streaming from {:?})",
                    n.name,
                    n.status.as_ref().map(|s| s.state),
                    n.pg.running,
                    n.pg.streaming_from
                ));
            }
        }
        None
    }

    pub fn describe(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "  {}: agent {} state {:?} pg running {:?} frozen {} tl {:?} wal {} upstream {:?} streaming {:?} last transition {:?}\n",
                n.name,
                if n.agent.is_some() { "up" } else { "down" },
                n.status.as_ref().map(|s| s.state),
                n.pg.running,
                n.pg.frozen,
                n.pg.timeline(),
                n.pg.wal_len(),
                n.pg.data.as_ref().and_then(|d| d.upstream.clone()),
                n.pg.streaming_from,
                n.status.as_ref().map(|s| s.last_transition.clone()),
            ));
        }
        out.push_str(&format!("  leader key: {:?}\n", self.store.leader()));
        out
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
