//! The seeded fault schedule: which faults hit which node when, for how long, and the
//! cluster's shape (size, synchronous mode, timing). Everything a run does follows from its
//! seed through this plan and the world's own generator.

use std::fmt;

use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of the agent, the postmaster and its children; the agent restarts afterwards.
    Crash(usize),
    /// SIGKILL of the agent alone: PostgreSQL keeps running with nobody managing it.
    KillAgent(usize),
    /// SIGSTOP of the agent (its REST API and PostgreSQL worker with it).
    PauseAgent(usize),
    /// SIGSTOP of the postmaster: no queries, commits or streaming; the agent runs on.
    PausePostmaster(usize),
    /// The whole VM suspended: agent and PostgreSQL stop, the boot clock keeps counting.
    Suspend(usize),
    /// The node cannot reach the lock store (nor the store it).
    PartitionStore(usize),
    /// Two nodes cannot reach each other (streaming and REST).
    PartitionPeers(usize, usize),
    /// The node reaches nothing and nobody reaches it.
    Isolate(usize),
    /// Every lock store round trip takes hundreds of milliseconds to seconds.
    SlowStore,
    /// The lock store answers nobody (quorum lost).
    StoreOutage,
    /// A clean stop of the agent (SIGTERM: PostgreSQL stopped, leader key released), then start.
    Restart(usize),
    /// The node's boot clock jumps forward by this many milliseconds.
    ClockJump(usize, u64),
    /// The standby receives one WAL record per this many milliseconds (the client writes
    /// one per 50 ms): it falls behind for as long as the fault lasts.
    SlowStandby(usize, u64),
    /// Not a fault: an operator's `POST /reinitialize` to the node (`patronictl reinit`),
    /// whatever its role at that moment; the core accepts or refuses it.
    OperatorReinitialize(usize),
    /// Not a fault: an operator's `POST /restart` to the node (`patronictl restart`),
    /// whatever its role; the core accepts or refuses it.
    OperatorRestart(usize),
    /// Not a fault: an operator's `POST /reload` (or SIGHUP) to the node, the file unchanged.
    OperatorReload(usize),
    /// The node's `pre_promote` script exits non-zero while this lasts: every promotion it
    /// attempts is vetoed.
    PrePromoteVeto(usize),
    /// Not a fault: maintenance mode (`patronictl pause`: `pause: true` in `/config`) for as
    /// long as it lasts, then `resume`.
    OperatorPause,
}

impl Fault {
    /// Faults that leave PostgreSQL accepting writes while no agent runs that could stop
    /// it: the watchdog's to cover (or `FIRST n` synchronous replication, see `generate`).
    pub fn needs_watchdog(&self) -> bool {
        matches!(
            self,
            Fault::KillAgent(_) | Fault::PauseAgent(_) | Fault::Suspend(_)
        )
    }
}

/// `synchronous_mode` and `synchronous_mode_strict`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SyncVariant {
    Off,
    On,
    Strict,
    Quorum,
}

/// The setup draws of the generator's second stream (watchdog, synchronous variant,
/// failsafe), replaced for a seed pinned before those dimensions existed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Setup {
    /// As the simulation first generated plans (`356acbc`): no watchdog, no failsafe, and
    /// `synchronous` meant `synchronous_mode: on`. Seeds pinned then found their bugs so.
    Original,
    /// Before failsafe was drawn (until `f3555b1`): today's watchdog and synchronous
    /// variant, failsafe off.
    NoFailsafe,
}

#[derive(Clone, Debug)]
pub struct Scheduled {
    pub at: u64,
    pub duration: u64,
    pub fault: Fault,
}

/// One run's plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub nodes: usize,
    pub synchronous: bool,
    /// Which synchronous mode, when `synchronous`.
    pub sync_variant: SyncVariant,
    /// Every node runs a watchdog (`mode: automatic`, `safety_margin: -1`).
    pub watchdog: bool,
    /// `failsafe_mode: true` in the dynamic configuration.
    pub failsafe: bool,
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub margin_ms: u64,
    /// The watchdog's `safety_margin` (-1: half the ttl; Patroni's default is 5).
    pub watchdog_safety_margin: i64,
    /// `maximum_lag_on_syncnode` in bytes (-1: off).
    pub maximum_lag_on_syncnode: i64,
    pub faults: Vec<Scheduled>,
    /// When every fault has ended.
    pub heal_at: u64,
    /// How long after `heal_at` the cluster has to be whole again.
    pub heal_bound: u64,
}

/// Seeds from here on are shaped like production: half of them run Patroni's default timing
/// (ttl 30 s, loop_wait 10 s, retry_timeout 10 s, watchdog safety_margin 5 s), and the
/// schedule adds standbys that fall behind one by one. A separate range, so the schedules of
/// the seeds below it (the pinned ones among them) stay exactly as they were.
pub const PRODUCTION_SHAPED_FROM: u64 = 3_000_000;

/// Seeds from here on (production-shaped too) add operators' `POST /reinitialize` requests
/// to random nodes at random times, from their own random stream.
pub const OPERATOR_REQUESTS_FROM: u64 = 5_000_000;

/// First fault no earlier than this: the cluster has bootstrapped and replicas cloned.
const FIRST_FAULT_MS: u64 = 15_000;
const LAST_FAULT_MS: u64 = 90_000;

impl Plan {
    pub fn generate(seed: u64) -> Plan {
        Plan::generate_with(seed, None)
    }

    /// [`Plan::generate`], with the second stream's setup draws replaced by `setup`. The
    /// draws are still made, so every later draw is the same as without it.
    pub fn generate_with(seed: u64, setup: Option<Setup>) -> Plan {
        let mut rng = Rng::new(seed);
        let nodes = if rng.chance(80) { 3 } else { 2 + rng.index(3) }; // 2..=4
        let synchronous = rng.chance(50);
        // Dimensions added later draw from their own stream, so the schedules of seeds
        // pinned before them (and the bugs they found) stay as they were.
        let mut later = Rng::new(seed.rotate_left(29) ^ 0x0BAD_5EED_0000_0001);
        let watchdog = later.chance(60);
        let sync_variant = match (synchronous, later.index(4)) {
            (false, _) => SyncVariant::Off,
            (true, 0) => SyncVariant::Strict,
            (true, 1) => SyncVariant::Quorum,
            (true, _) => SyncVariant::On,
        };
        let failsafe = later.chance(50);
        let (watchdog, sync_variant, failsafe) = match setup {
            None => (watchdog, sync_variant, failsafe),
            Some(Setup::Original) => {
                let variant = if synchronous {
                    SyncVariant::On
                } else {
                    SyncVariant::Off
                };
                (false, variant, false)
            }
            Some(Setup::NoFailsafe) => (watchdog, sync_variant, false),
        };
        let (mut ttl, mut loop_wait, mut retry_timeout, mut margin_ms): (u32, u32, u32, u64) =
            match rng.index(3) {
                0 => (4, 1, 2, 500),
                1 => (6, 1, 2, 1000),
                _ => (10, 2, 3, 2000),
            };
        let mut watchdog_safety_margin = -1;
        let mut maximum_lag_on_syncnode = -1;
        let mut shaped = (seed >= PRODUCTION_SHAPED_FROM)
            .then(|| Rng::new(seed.rotate_left(17) ^ 0x5EED_0000_0000_0003));
        if let Some(shaped) = shaped.as_mut() {
            if shaped.chance(50) {
                // Patroni's defaults, with pgwarden's default demotion margin.
                (ttl, loop_wait, retry_timeout, margin_ms) = (30, 10, 10, 1000);
                watchdog_safety_margin = 5;
            }
            if shaped.chance(50) {
                maximum_lag_on_syncnode = (shaped.range(16, 512) * crate::pg::REC_BYTES) as i64;
            }
        }
        // What stops a primary whose agent is frozen or gone from acknowledging after a new
        // leader was elected: the watchdog, or in `FIRST n` synchronous mode the fact that
        // the new leader was one of its n synchronous standbys. In quorum mode (`ANY k`) the
        // old primary keeps acknowledging through any voter still streaming from it until
        // that voter follows the new leader: only the watchdog covers it, as in async mode.
        // A suspended VM is different: its watchdog sleeps with it, and on resume PostgreSQL
        // serves its clients before the agent has looked at the clock. Only `FIRST n` covers
        // a suspend longer than the lease.
        let first_n = matches!(sync_variant, SyncVariant::On | SyncVariant::Strict);
        let frozen_agent_covered = watchdog || first_n;
        let mut faults = Vec::new();
        let count = 1 + rng.index(4);
        for _ in 0..count {
            let at = rng.range(FIRST_FAULT_MS, LAST_FAULT_MS);
            let mut duration = rng.range(500, 20_000);
            let node = rng.index(nodes);
            let other = (node + 1 + rng.index(nodes - 1)) % nodes;
            let fault = match rng.index(12) {
                0 | 1 => Fault::Crash(node),
                2 => Fault::KillAgent(node),
                3 => Fault::PauseAgent(node),
                4 => Fault::PausePostmaster(node),
                5 => Fault::Suspend(node),
                6 => Fault::PartitionStore(node),
                7 => Fault::PartitionPeers(node, other),
                8 => Fault::Isolate(node),
                9 => {
                    if rng.chance(50) {
                        Fault::SlowStore
                    } else {
                        Fault::StoreOutage
                    }
                }
                10 => Fault::Restart(node),
                _ => Fault::ClockJump(node, rng.range(100, 20_000)),
            };
            let fault = match fault {
                // A killed agent's successor holds no lease and cannot know when the old one
                // ran out: in asynchronous mode only the watchdog stops that PostgreSQL in
                // time. A crash of the whole node is the asynchronous equivalent.
                Fault::KillAgent(n) if !frozen_agent_covered => Fault::Crash(n),
                other => other,
            };
            let covered = match fault {
                Fault::Suspend(_) => first_n,
                _ => frozen_agent_covered,
            };
            if fault.needs_watchdog() && !covered {
                // Uncovered, only a freeze shorter than the demotion margin is survivable:
                // the agent then resumes before its deadline.
                duration = duration.min(margin_ms.saturating_sub(100).max(100));
            }
            faults.push(Scheduled {
                at,
                duration,
                fault,
            });
        }
        if let Some(shaped) = shaped.as_mut() {
            for _ in 0..1 + shaped.index(2) {
                faults.push(Scheduled {
                    at: shaped.range(FIRST_FAULT_MS, LAST_FAULT_MS),
                    duration: shaped.range(5_000, 60_000),
                    fault: Fault::SlowStandby(shaped.index(nodes), shaped.range(60, 1_000)),
                });
            }
        }
        if seed >= OPERATOR_REQUESTS_FROM {
            let mut operator = Rng::new(seed.rotate_left(29) ^ 0x0BE5_0000_0000_0005);
            for _ in 0..1 + operator.index(3) {
                let (at, node) = (
                    operator.range(FIRST_FAULT_MS, LAST_FAULT_MS),
                    operator.index(nodes),
                );
                let fault = match operator.index(3) {
                    0 => Fault::OperatorReinitialize(node),
                    1 => Fault::OperatorRestart(node),
                    _ => Fault::OperatorReload(node),
                };
                faults.push(Scheduled {
                    at,
                    duration: 1,
                    fault,
                });
            }
            // Drawn after the requests, so those stay as they were for every seed.
            if operator.index(2) == 0 {
                faults.push(Scheduled {
                    at: operator.range(FIRST_FAULT_MS, LAST_FAULT_MS),
                    duration: operator.range(5_000, 60_000),
                    fault: Fault::PrePromoteVeto(operator.index(nodes)),
                });
            }
            // Maintenance mode, drawn last for the same reason: every fault above may hit
            // the cluster while it is paused, and the resume must put it right.
            if operator.index(3) == 0 {
                faults.push(Scheduled {
                    at: operator.range(FIRST_FAULT_MS, LAST_FAULT_MS),
                    duration: operator.range(5_000, 60_000),
                    fault: Fault::OperatorPause,
                });
            }
        }
        faults.sort_by_key(|f| f.at);
        let heal_at = faults.iter().map(|f| f.at + f.duration).max().unwrap_or(0) + 1;
        let heal_bound: u64 = 60_000 + u64::from(ttl) * 4_000;
        Plan {
            seed,
            nodes,
            synchronous,
            sync_variant,
            watchdog,
            failsafe,
            ttl,
            loop_wait,
            retry_timeout,
            margin_ms,
            watchdog_safety_margin,
            maximum_lag_on_syncnode,
            faults,
            heal_at,
            heal_bound,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} nodes, synchronous {:?}, watchdog {} (safety_margin {}), failsafe {}, ttl {} s, loop_wait {} s, retry_timeout {} s, margin {} ms, maximum_lag_on_syncnode {}",
            self.seed,
            self.nodes,
            self.sync_variant,
            self.watchdog,
            self.watchdog_safety_margin,
            self.failsafe,
            self.ttl,
            self.loop_wait,
            self.retry_timeout,
            self.margin_ms,
            self.maximum_lag_on_syncnode
        )?;
        for s in &self.faults {
            writeln!(
                f,
                "  at {:>6} ms for {:>5} ms: {:?}",
                s.at, s.duration, s.fault
            )?;
        }
        write!(f, "  all healed at {} ms", self.heal_at)
    }
}
