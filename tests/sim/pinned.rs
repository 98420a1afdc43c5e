//! The regression seeds: each seed that found a bug, with the setup and the whole plan it
//! ran when it did (see `Pinned`). To pin a new one, add it with the plan
//! `PGWARDEN_SIM_SEED=<seed> cargo test --test sim replay_one_seed -- --nocapture` prints
//! first.

use crate::nemesis::{Plan, Setup};

/// A seed that found a bug, with the setup and the whole plan it ran when it did. The plan
/// depends on `Plan::generate`: a change to the generator that alters it fails
/// `pinned_plans_are_the_ones_that_found_their_bugs` instead of quietly running something
/// else under the old number (five seeds drifted that way once: the second stream's draws
/// changed under them).
pub struct Pinned {
    pub seed: u64,
    /// `None`: today's draws; otherwise the setup draws of the generator the seed was
    /// pinned under (see `Setup`).
    pub setup: Option<Setup>,
    /// The plan's text (its `Display`) when the seed found its bug.
    pub plan_text: &'static str,
}

impl Pinned {
    pub fn plan(&self) -> Plan {
        Plan::generate_with(self.seed, self.setup)
    }
}

const fn pinned(seed: u64, setup: Option<Setup>, plan_text: &'static str) -> Pinned {
    Pinned {
        seed,
        setup,
        plan_text,
    }
}

/// Seeds that found bugs, replayed on every run with the plan that found them.
pub const PINNED: &[Pinned] = &[
    // A standby that received WAL past the new leader's switch point never streamed again:
    // divergence is now judged from `/history`.
    pinned(11, Some(Setup::Original), PLAN_11),
    // A slow store delivered a leader-key release after a promotion had started under the
    // same key: the key is no longer counted as ours once its release is asked for.
    pinned(64, Some(Setup::Original), PLAN_64),
    // An agent restarted while isolated left PostgreSQL running as primary, waiting for etcd
    // before its loop started: the loop now runs first and stops such a primary (offline).
    pinned(409, Some(Setup::Original), PLAN_409),
    // A late, unguarded release deleted the key its node had taken again on the same
    // lease: releases carry the key's create_revision.
    pinned(1129, Some(Setup::Original), PLAN_1129),
    pinned(6721, Some(Setup::Original), PLAN_6721),
    // A late `/sync` claim failure released the key of a promotion already under way.
    pinned(9984, Some(Setup::Original), PLAN_9984),
    // Promotion, then the store unreachable: the lost `/history` write was never repeated,
    // so a diverged standby went unnoticed (17487) and a second promotion reused the
    // timeline (11503).
    pinned(11503, Some(Setup::NoFailsafe), PLAN_11503),
    pinned(17487, Some(Setup::NoFailsafe), PLAN_17487),
    // A former primary further along an abandoned timeline vetoed every election.
    pinned(19621, Some(Setup::NoFailsafe), PLAN_19621),
    // The deadline's immediate stop of a frozen postmaster waited on pg_ctl while the lease
    // expired: immediate-nolock now kills at once.
    pinned(364, Some(Setup::NoFailsafe), PLAN_364),
    // Found in the simulation's own model: a suspended VM's watchdog fired during the
    // suspend (24665); a restarted agent's lease wait counted against the frozen-leader
    // bound (22746). The first also showed that a suspend longer than the lease is beyond
    // any watchdog in asynchronous mode.
    pinned(24665, Some(Setup::NoFailsafe), PLAN_24665),
    pinned(22746, Some(Setup::NoFailsafe), PLAN_22746),
    // Failsafe: a replica's clock jumped forward, its accepted heartbeat looked a ttl old at
    // once and it raced beside the failsafe primary: promises now count observed time.
    pinned(21355, None, PLAN_21355),
    // Failsafe: a failed round demoted `offline` (fast) a primary whose postmaster was
    // frozen; the stop hung past the members' promise not to race. Now immediate-nolock.
    pinned(4282, None, PLAN_4282),
    // Failsafe: a primary's postmaster froze just before a store partition; while the agent
    // took its key back the unresponsive clock was not running, and the kill came late.
    // The clock now runs from the first silent probe, whatever the agent is doing.
    pinned(3_011_084, None, PLAN_3011084),
    // An offline (fast) stop begun during an isolation met a frozen postmaster; the store
    // came back, the deadline moved away, and the stop hung with the key held. A stop of a
    // silent postmaster is now turned into a kill after the unresponsive timeout.
    pinned(8683, None, PLAN_8683),
];

const PLAN_11: &str = r#"seed 11: 4 nodes, synchronous On, watchdog false (safety_margin -1), failsafe false, ttl 6 s, loop_wait 1 s, retry_timeout 2 s, margin 1000 ms, maximum_lag_on_syncnode -1
  at  24856 ms for  7617 ms: Restart(2)
  at  40040 ms for 15038 ms: Suspend(2)
  at  79748 ms for 12494 ms: KillAgent(1)
  all healed at 92243 ms"#;
const PLAN_64: &str = r#"seed 64: 4 nodes, synchronous Off, watchdog false (safety_margin -1), failsafe false, ttl 4 s, loop_wait 1 s, retry_timeout 2 s, margin 500 ms, maximum_lag_on_syncnode -1
  at  23867 ms for  4444 ms: Restart(1)
  at  48445 ms for 14004 ms: StoreOutage
  at  75444 ms for 16314 ms: SlowStore
  all healed at 91759 ms"#;
const PLAN_409: &str = r#"seed 409: 3 nodes, synchronous Off, watchdog false (safety_margin -1), failsafe false, ttl 4 s, loop_wait 1 s, retry_timeout 2 s, margin 500 ms, maximum_lag_on_syncnode -1
  at  74233 ms for 18301 ms: Crash(1)
  at  76015 ms for  5292 ms: Isolate(2)
  at  76795 ms for 14641 ms: Crash(2)
  all healed at 92535 ms"#;
const PLAN_1129: &str = r#"seed 1129: 3 nodes, synchronous Off, watchdog false (safety_margin -1), failsafe false, ttl 6 s, loop_wait 1 s, retry_timeout 2 s, margin 1000 ms, maximum_lag_on_syncnode -1
  at  58784 ms for 18867 ms: ClockJump(1, 12965)
  at  73275 ms for   900 ms: PauseAgent(0)
  at  81243 ms for 17437 ms: SlowStore
  all healed at 98681 ms"#;
const PLAN_6721: &str = r#"seed 6721: 3 nodes, synchronous Off, watchdog false (safety_margin -1), failsafe false, ttl 6 s, loop_wait 1 s, retry_timeout 2 s, margin 1000 ms, maximum_lag_on_syncnode -1
  at  28937 ms for   900 ms: Suspend(0)
  at  36215 ms for 16168 ms: PausePostmaster(1)
  at  39707 ms for 19904 ms: SlowStore
  at  82113 ms for  8536 ms: ClockJump(0, 14352)
  all healed at 90650 ms"#;
const PLAN_9984: &str = r#"seed 9984: 3 nodes, synchronous On, watchdog false (safety_margin -1), failsafe false, ttl 4 s, loop_wait 1 s, retry_timeout 2 s, margin 500 ms, maximum_lag_on_syncnode -1
  at  34168 ms for 14445 ms: SlowStore
  all healed at 48614 ms"#;
const PLAN_11503: &str = r#"seed 11503: 3 nodes, synchronous Off, watchdog true (safety_margin -1), failsafe false, ttl 6 s, loop_wait 1 s, retry_timeout 2 s, margin 1000 ms, maximum_lag_on_syncnode -1
  at  63222 ms for 11116 ms: Restart(0)
  at  75883 ms for 19349 ms: KillAgent(0)
  all healed at 95233 ms"#;
const PLAN_17487: &str = r#"seed 17487: 3 nodes, synchronous Quorum, watchdog false (safety_margin -1), failsafe false, ttl 4 s, loop_wait 1 s, retry_timeout 2 s, margin 500 ms, maximum_lag_on_syncnode -1
  at  16313 ms for  2722 ms: Crash(1)
  at  18582 ms for 19574 ms: SlowStore
  at  60775 ms for   400 ms: PauseAgent(2)
  at  82019 ms for  3441 ms: PartitionStore(1)
  all healed at 85461 ms"#;
const PLAN_19621: &str = r#"seed 19621: 3 nodes, synchronous Off, watchdog true (safety_margin -1), failsafe false, ttl 10 s, loop_wait 2 s, retry_timeout 3 s, margin 2000 ms, maximum_lag_on_syncnode -1
  at  45209 ms for 16156 ms: Isolate(0)
  at  78613 ms for 11917 ms: Crash(0)
  at  88946 ms for 14733 ms: PausePostmaster(1)
  at  89351 ms for 17430 ms: PauseAgent(2)
  all healed at 106782 ms"#;
const PLAN_364: &str = r#"seed 364: 2 nodes, synchronous Off, watchdog false (safety_margin -1), failsafe false, ttl 6 s, loop_wait 1 s, retry_timeout 2 s, margin 1000 ms, maximum_lag_on_syncnode -1
  at  66322 ms for   900 ms: Suspend(0)
  at  76236 ms for 19796 ms: PartitionStore(1)
  at  80758 ms for 10553 ms: PausePostmaster(1)
  all healed at 96033 ms"#;
const PLAN_24665: &str = r#"seed 24665: 3 nodes, synchronous Off, watchdog true (safety_margin -1), failsafe false, ttl 10 s, loop_wait 2 s, retry_timeout 3 s, margin 2000 ms, maximum_lag_on_syncnode -1
  at  34425 ms for  1900 ms: Suspend(2)
  at  53170 ms for 16193 ms: KillAgent(2)
  at  76149 ms for  1540 ms: Restart(0)
  all healed at 77690 ms"#;
const PLAN_22746: &str = r#"seed 22746: 2 nodes, synchronous On, watchdog false (safety_margin -1), failsafe false, ttl 10 s, loop_wait 2 s, retry_timeout 3 s, margin 2000 ms, maximum_lag_on_syncnode -1
  at  57547 ms for 15950 ms: PausePostmaster(0)
  at  63087 ms for  1202 ms: KillAgent(0)
  at  71441 ms for  5806 ms: KillAgent(1)
  at  76355 ms for  5572 ms: PauseAgent(0)
  all healed at 81928 ms"#;
const PLAN_21355: &str = r#"seed 21355: 3 nodes, synchronous Off, watchdog false (safety_margin -1), failsafe true, ttl 4 s, loop_wait 1 s, retry_timeout 2 s, margin 500 ms, maximum_lag_on_syncnode -1
  at  21022 ms for  6001 ms: PartitionStore(1)
  at  25102 ms for 14783 ms: ClockJump(0, 10276)
  at  31433 ms for 14233 ms: PartitionStore(0)
  all healed at 45667 ms"#;
const PLAN_4282: &str = r#"seed 4282: 3 nodes, synchronous Off, watchdog false (safety_margin -1), failsafe true, ttl 10 s, loop_wait 2 s, retry_timeout 3 s, margin 2000 ms, maximum_lag_on_syncnode -1
  at  51818 ms for  2368 ms: PartitionPeers(2, 1)
  at  74134 ms for 18974 ms: PartitionStore(2)
  at  80709 ms for  8499 ms: PausePostmaster(2)
  at  84318 ms for  6295 ms: Isolate(0)
  all healed at 93109 ms"#;
const PLAN_3011084: &str = r#"seed 3011084: 3 nodes, synchronous Strict, watchdog false (safety_margin -1), failsafe true, ttl 6 s, loop_wait 1 s, retry_timeout 2 s, margin 1000 ms, maximum_lag_on_syncnode -1
  at  19155 ms for 15653 ms: PausePostmaster(2)
  at  20608 ms for  5643 ms: PartitionStore(2)
  at  59544 ms for  7365 ms: SlowStandby(0, 586)
  at  72811 ms for 12909 ms: PausePostmaster(2)
  all healed at 85721 ms"#;
const PLAN_8683: &str = r#"seed 8683: 3 nodes, synchronous Strict, watchdog false (safety_margin -1), failsafe false, ttl 10 s, loop_wait 2 s, retry_timeout 3 s, margin 2000 ms, maximum_lag_on_syncnode -1
  at  33463 ms for  4989 ms: Isolate(2)
  at  34497 ms for 17601 ms: PausePostmaster(1)
  at  34854 ms for  4099 ms: Isolate(1)
  at  82698 ms for  7732 ms: KillAgent(0)
  all healed at 90431 ms"#;
