//! Deterministic simulation of whole pgwarden clusters: thousands of seeded fault schedules
//! (crashes, freezes, partitions, a slow or absent lock store, restarts, clock jumps) run
//! against the real core and the real default policy, with checkers after every event:
//! never two primaries able to acknowledge a commit at the same instant, no promotion
//! without the lease, no acknowledged commit lost in synchronous mode, no timeline created
//! twice, and a whole cluster again within a bound once the faults heal.
//!
//! A failing seed prints its plan and the command that replays it with a full trace:
//! `PGWARDEN_SIM_SEED=<seed> cargo test --test sim replay_one_seed -- --nocapture`.
//! Seeds that once found a bug are pinned in `pinned.rs`, each with the plan that found it,
//! and run on every build.

#[path = "../core_scenarios.rs"]
mod core_scenarios;
mod nemesis;
mod pg;
mod pinned;
mod rng;
mod store;
mod table;
mod world;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant as WallClock;

use pgwarden::core::decide_with_default;

use nemesis::Plan;
use pinned::PINNED;
use world::{Decide, Outcome, World};

fn native() -> Decide {
    Box::new(decide_with_default)
}

/// The embedded default policy as production runs it: a WebAssembly component in the
/// wasmtime host, with its fuel, memory and fallback rules.
fn wasm() -> Decide {
    let status = pgwarden::runtime::policy::SharedPolicyStatus::default();
    // The simulation checks decisions, not speed: a generous wall-clock limit, so a loaded
    // CI machine running a debug build cannot turn a slow call into a fallback.
    let config = pgwarden::config::LocalPolicyConfig {
        timeout_ms: 10_000,
        ..pgwarden::config::LocalPolicyConfig::default()
    };
    let mut host = pgwarden::runtime::policy::HostDecider::from_local(&config, status)
        .expect("the embedded default policy loads");
    Box::new(move |call| host.decide(call))
}

fn run_seed(seed: u64, decide: Decide, verbose: bool) -> Result<Outcome, String> {
    run_plan(Plan::generate(seed), decide, verbose)
}

fn run_plan(plan: Plan, decide: Decide, verbose: bool) -> Result<Outcome, String> {
    let seed = plan.seed;
    if verbose {
        eprintln!("{plan}");
    }
    let mut world = World::new(plan.clone(), decide, verbose).run();
    if world.violations.is_empty() {
        return Ok(world.outcome);
    }
    Err(format!(
        "{plan}\n  violations:\n    {}\n  state at the end:\n{}  replay: PGWARDEN_SIM_SEED={seed} cargo test --test sim replay_one_seed -- --nocapture",
        world.violations.join("\n    "),
        world.describe()
    ))
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(raw) => {
            let value = raw
                .parse()
                .unwrap_or_else(|_| panic!("{name}={raw:?}: expected a whole number"));
            eprintln!("[sim] {name}={value} (the default is {default})");
            value
        }
        Err(_) => default,
    }
}

/// A number of seeds from `name` (`default` when unset): zero fails, as a run of no seeds
/// would pass having checked nothing.
fn env_count(name: &str, default: u64) -> u64 {
    let count = env_u64(name, default);
    assert!(
        count > 0,
        "{name}=0 would run no seed: unset it, or give a count"
    );
    count
}

#[derive(Default)]
struct Summary {
    seeds: u64,
    failures: Vec<String>,
    sim_ms: u64,
    events: u64,
    promotions: usize,
    watchdog_resets: usize,
    failsafe_confirmed: usize,
    failsafe_failed: usize,
    reinitialize_accepted: usize,
    reinitialize_refused: usize,
    restart_accepted: usize,
    restart_refused: usize,
    reloads: usize,
    pauses: usize,
    promotions_vetoed: usize,
    callbacks: usize,
    acked: usize,
    heal_ms: Vec<u64>,
}

impl From<Result<Outcome, String>> for Summary {
    fn from(run: Result<Outcome, String>) -> Summary {
        match run {
            Ok(o) => Summary {
                sim_ms: o.sim_ms,
                events: o.events,
                promotions: o.promotions,
                watchdog_resets: o.watchdog_resets,
                failsafe_confirmed: o.failsafe_confirmed,
                failsafe_failed: o.failsafe_failed,
                reinitialize_accepted: o.reinitialize_accepted,
                reinitialize_refused: o.reinitialize_refused,
                restart_accepted: o.restart_accepted,
                restart_refused: o.restart_refused,
                reloads: o.reloads,
                pauses: o.pauses,
                promotions_vetoed: o.promotions_vetoed,
                callbacks: o.callbacks,
                acked: o.acked,
                heal_ms: o.healed_after_ms.into_iter().collect(),
                ..Summary::default()
            },
            Err(e) => Summary {
                failures: vec![e],
                ..Summary::default()
            },
        }
    }
}

impl Summary {
    fn add(&mut self, other: Summary) {
        self.seeds += other.seeds;
        self.failures.extend(other.failures);
        self.sim_ms += other.sim_ms;
        self.events += other.events;
        self.promotions += other.promotions;
        self.watchdog_resets += other.watchdog_resets;
        self.failsafe_confirmed += other.failsafe_confirmed;
        self.failsafe_failed += other.failsafe_failed;
        self.reinitialize_accepted += other.reinitialize_accepted;
        self.reinitialize_refused += other.reinitialize_refused;
        self.restart_accepted += other.restart_accepted;
        self.restart_refused += other.restart_refused;
        self.reloads += other.reloads;
        self.pauses += other.pauses;
        self.promotions_vetoed += other.promotions_vetoed;
        self.callbacks += other.callbacks;
        self.acked += other.acked;
        self.heal_ms.extend(other.heal_ms);
    }
}

/// Run `count` seeds from `first` on every core, each thread with its own decider.
fn run_many(first: u64, count: u64, make_decide: fn() -> Decide) -> Summary {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(2)
        .min(count.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let decide = Rc::new(RefCell::new(make_decide()));
                let mut s = Summary::default();
                let mut seed = first + t;
                while seed < first + count {
                    let shared = decide.clone();
                    let call: Decide = Box::new(move |c| (shared.borrow_mut())(c));
                    let outcome = run_seed(seed, call, false);
                    s.add(Summary {
                        seeds: 1,
                        ..Summary::from(outcome)
                    });
                    seed += threads;
                }
                s
            })
        })
        .collect();
    let mut total = Summary::default();
    for h in handles {
        total.add(h.join().expect("simulation thread panicked"));
    }
    total
}

fn report(label: &str, s: &mut Summary, started: WallClock) {
    let wall = started.elapsed().as_secs_f64();
    s.heal_ms.sort_unstable();
    let pct = |p: usize| {
        s.heal_ms
            .get((s.heal_ms.len() * p / 100).min(s.heal_ms.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "{label}: {} seeds in {wall:.1} s ({:.0} seeds/s), {:.1} simulated hours, {} events, {} promotions, {} watchdog resets, {} failsafe rounds confirmed, {} failed, {} reinitialize requests accepted, {} refused, {} restarts accepted, {} refused, {} reloads, {} maintenance-mode windows, {} promotions vetoed by pre_promote, {} callbacks, {} acknowledged commits; heal after last fault p50 {} ms, p99 {} ms, max {} ms; {} failed",
        s.seeds,
        s.seeds as f64 / wall,
        s.sim_ms as f64 / 3_600_000.0,
        s.events,
        s.promotions,
        s.watchdog_resets,
        s.failsafe_confirmed,
        s.failsafe_failed,
        s.reinitialize_accepted,
        s.reinitialize_refused,
        s.restart_accepted,
        s.restart_refused,
        s.reloads,
        s.pauses,
        s.promotions_vetoed,
        s.callbacks,
        s.acked,
        pct(50),
        pct(99),
        s.heal_ms.last().copied().unwrap_or(0),
        s.failures.len()
    );
    if !s.failures.is_empty() {
        let shown: Vec<&String> = s.failures.iter().take(5).collect();
        panic!(
            "{} of {} seeds failed; the first ones:\n\n{}",
            s.failures.len(),
            s.seeds,
            shown
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
        );
    }
}

/// The bulk: native default policy, `PGWARDEN_SIM_SEEDS` seeds (10,000 by default) from
/// `PGWARDEN_SIM_FIRST_SEED`.
#[test]
fn simulated_fault_schedules() {
    let count = env_count("PGWARDEN_SIM_SEEDS", 10_000);
    let first = env_u64("PGWARDEN_SIM_FIRST_SEED", 1);
    let started = WallClock::now();
    let mut summary = run_many(first, count, native);
    report("native policy", &mut summary, started);
    assert_eq!(summary.seeds, count);
    assert!(summary.promotions > 0, "no seed ever failed over");
}

/// A few hundred seeds with every policy call answered by the wasm component
/// (`PGWARDEN_SIM_WASM_SEEDS`, 300 by default, from seed 1,000,001): the sandboxed policy must
/// decide exactly as safely as the native one, and no call may fall back.
#[test]
fn simulated_fault_schedules_through_the_wasm_policy_host() {
    let count = env_count("PGWARDEN_SIM_WASM_SEEDS", 300);
    let started = WallClock::now();
    let mut summary = run_many(1_000_001, count, wasm);
    report("wasm policy", &mut summary, started);
    assert_eq!(summary.seeds, count);
}

/// Production-shaped seeds (`PGWARDEN_SIM_SHAPED_SEEDS`, 2,000 by default): Patroni's
/// default timing for half of them, `maximum_lag_on_syncnode` for half, and standbys that
/// fall behind (see [`nemesis::PRODUCTION_SHAPED_FROM`]).
#[test]
fn simulated_production_shaped_schedules() {
    let count = env_count("PGWARDEN_SIM_SHAPED_SEEDS", 2_000);
    let started = WallClock::now();
    let mut summary = run_many(nemesis::PRODUCTION_SHAPED_FROM + 1, count, native);
    report("production-shaped", &mut summary, started);
    assert_eq!(summary.seeds, count);
}

/// Seeds with operators' `POST /reinitialize`, `POST /restart` and `POST /reload` requests
/// to random nodes and maintenance-mode windows (pause, then resume) (`PGWARDEN_SIM_OPERATOR_SEEDS`, 500 by default): a standby wiped and
/// re-cloned at any moment, a leader or standby restarted in its role (under any fault the
/// schedule brings), the leader or a node mid-action refusing, and a node whose
/// `pre_promote` script vetoes its promotions for a while. Every check holds throughout.
#[test]
fn simulated_operator_reinitialize_requests() {
    let count = env_count("PGWARDEN_SIM_OPERATOR_SEEDS", 500);
    let started = WallClock::now();
    let mut summary = run_many(nemesis::OPERATOR_REQUESTS_FROM + 1, count, native);
    report("operator requests", &mut summary, started);
    assert_eq!(summary.seeds, count);
    if count >= 100 {
        // Both answers are exercised, or the dimension tests nothing.
        assert!(summary.reinitialize_accepted > 0, "no request was accepted");
        assert!(summary.reinitialize_refused > 0, "no request was refused");
        assert!(summary.restart_accepted > 0, "no restart was accepted");
        assert!(summary.restart_refused > 0, "no restart was refused");
        assert!(summary.reloads > 0, "no reload was asked");
        assert!(summary.pauses > 0, "the cluster was never paused");
        assert!(
            summary.promotions_vetoed > 0,
            "no promotion met a vetoing pre_promote script"
        );
    }
}

/// Seeds that once found bugs.
#[test]
fn pinned_regression_seeds() {
    for pinned in PINNED {
        if let Err(e) = run_plan(pinned.plan(), native(), false) {
            panic!("pinned seed {} fails again:\n{e}", pinned.seed);
        }
    }
}

/// Each pinned seed still generates the plan that found its bug, and is pinned once.
#[test]
fn pinned_plans_are_the_ones_that_found_their_bugs() {
    let mut drifted = Vec::new();
    for pinned in PINNED {
        let now = pinned.plan().to_string();
        if now != pinned.plan_text {
            drifted.push(format!(
                "seed {}: pinned\n{}\n  generated now\n{now}",
                pinned.seed, pinned.plan_text
            ));
        }
    }
    assert!(
        drifted.is_empty(),
        "pinned plans drifted:\n{}",
        drifted.join("\n\n")
    );
    let mut seeds: Vec<u64> = PINNED.iter().map(|p| p.seed).collect();
    seeds.sort_unstable();
    let count = seeds.len();
    seeds.dedup();
    assert_eq!(seeds.len(), count, "a seed is pinned twice");
}

/// Replays `PGWARDEN_SIM_SEED` (with its pinned setup when it is pinned) with a trace of
/// every transition, fault and action. Without it (as in CI) it checks what makes a replay
/// worth anything: a seed run twice does exactly the same thing.
#[test]
fn replay_one_seed() {
    let Some(seed) = std::env::var("PGWARDEN_SIM_SEED").ok() else {
        let seed = 17487;
        let first = run_seed(seed, native(), false).expect("pinned seed passes");
        let again = run_seed(seed, native(), false).expect("pinned seed passes");
        assert_eq!(first, again, "seed {seed} did not replay exactly");
        return;
    };
    let seed = seed.parse().expect("PGWARDEN_SIM_SEED is a number");
    // A pinned seed replays the plan it is pinned with (its setup may be an older one).
    let plan = PINNED
        .iter()
        .find(|p| p.seed == seed)
        .map_or_else(|| Plan::generate(seed), |p| p.plan());
    match run_plan(plan, native(), true) {
        Ok(o) => eprintln!("seed {seed} passes: {o:?}"),
        Err(e) => panic!("{e}"),
    }
}

/// `docs/state-machine.md` is what the core does (see `table`): every state entered, every
/// `Why` produced, and the committed file equal to the generated one.
#[test]
fn state_machine_table() {
    let (rows, sources) = table::collect();
    let doc = table::render(&rows, &sources);
    let path = table::doc_path();
    if std::env::var_os("PGWARDEN_WRITE_STATE_MACHINE").is_some() {
        std::fs::write(&path, &doc).expect("write docs/state-machine.md");
    }
    let gaps = table::gaps(&rows);
    assert!(
        gaps.is_empty(),
        "the schedules do not cover:\n{}",
        gaps.join("\n")
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != doc {
        let old: std::collections::BTreeSet<&str> = committed.lines().collect();
        let new: std::collections::BTreeSet<&str> = doc.lines().collect();
        let added: Vec<&&str> = new.difference(&old).collect();
        let removed: Vec<&&str> = old.difference(&new).collect();
        panic!(
            "docs/state-machine.md differs from what the core does; rewrite it with \
             PGWARDEN_WRITE_STATE_MACHINE=1 cargo test --test sim state_machine_table\n\
             lines the code adds: {added:#?}\nlines the code no longer has: {removed:#?}"
        );
    }
}
