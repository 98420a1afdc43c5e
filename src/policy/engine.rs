//! The policy engine: one wasmtime `Engine` (fuel, epoch interruption, NaN
//! canonicalization, pooling allocator) with its epoch ticker, the host's `Linker`, the
//! per-call limits, and the calling convention: every call gets a FRESH `Store` (a policy is
//! stateless; a trap never poisons a later call), with fuel, an epoch deadline and a memory
//! cap, and every failure is classified into a [`PolicyCallError`].
//!
//! Loading components lives in `loader`; this module only runs them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pgwarden_policy::{ClusterView, Decision, Event, Info};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::bindings::{Policy as Bindings, PolicyPre};
use super::convert;
use super::error::{PolicyCallError, PolicyEngineError};
use super::loader::LoadedPolicy;
use super::sandbox::{GuestState, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES, MAX_TABLE_ELEMENTS};
use super::ticker::EpochTicker;
use super::validate;

/// Component instances the engine's pool holds (calls in flight at once, across threads).
const POOL_COMPONENT_INSTANCES: u32 = 32;
/// Bytes of a pool slot reset with `memset` instead of released to the kernel.
const KEEP_RESIDENT: usize = 2 << 20;
/// One wasm page.
const WASM_PAGE: usize = 64 * 1024;

/// Resources one policy call may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Fuel (roughly, wasm instructions) per call, instantiation included.
    pub fuel: u64,
    /// Linear memory cap, bytes.
    pub memory_bytes: usize,
    /// Wall-time deadline per call (epoch interruption, 1 ms granularity).
    pub timeout: Duration,
}

impl Default for PolicyLimits {
    /// 50 M fuel (the default policy uses a small fraction of it on a 5-member view; the
    /// `policy` bench prints the figure), 16 MiB of memory, 20 ms.
    fn default() -> PolicyLimits {
        PolicyLimits {
            fuel: 50_000_000,
            memory_bytes: 16 << 20,
            timeout: Duration::from_millis(20),
        }
    }
}

impl fmt::Display for PolicyLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fuel {}, memory {} bytes, timeout {:?}",
            self.fuel, self.memory_bytes, self.timeout
        )
    }
}

impl PolicyLimits {
    fn problem(&self) -> Option<&'static str> {
        if self.fuel == 0 {
            Some("fuel must be positive")
        } else if self.memory_bytes < WASM_PAGE {
            Some("memory must be at least one wasm page (64 KiB)")
        } else if self.timeout.is_zero() {
            Some("timeout must be positive")
        } else {
            None
        }
    }
}

/// A successful call with what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metered {
    /// The validated decision.
    pub decision: Decision,
    /// Fuel used by the call (instantiation included).
    pub fuel_used: u64,
    /// What the policy logged at warn or error level during the call.
    pub warnings: Vec<String>,
}

/// The wasmtime engine policies are compiled for and run on. Cheap to clone (shared);
/// the epoch ticker stops when the last clone is dropped.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: PolicyLimits,
    deadline_ticks: u64,
    // Declared last: dropped after the rest, and joined on drop.
    _ticker: EpochTicker,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// An engine whose calls run under `limits`.
    pub fn new(limits: PolicyLimits) -> Result<PolicyEngine, PolicyEngineError> {
        if let Some(problem) = limits.problem() {
            return Err(PolicyEngineError::Limits {
                limits: limits.to_string(),
                problem: problem.to_string(),
            });
        }
        let create_error = |e: wasmtime::Error| PolicyEngineError::Create {
            limits: limits.to_string(),
            message: format!("{e:#}"),
        };

        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_COMPONENT_INSTANCES)
            .total_core_instances(POOL_COMPONENT_INSTANCES * cap_u32(MAX_INSTANCES))
            .total_memories(POOL_COMPONENT_INSTANCES * cap_u32(MAX_MEMORIES))
            .total_tables(POOL_COMPONENT_INSTANCES * cap_u32(MAX_TABLES))
            .max_memories_per_component(cap_u32(MAX_MEMORIES))
            .max_memories_per_module(cap_u32(MAX_MEMORIES))
            .max_core_instances_per_component(cap_u32(MAX_INSTANCES))
            .max_tables_per_component(cap_u32(MAX_TABLES))
            .max_tables_per_module(cap_u32(MAX_TABLES))
            .table_elements(MAX_TABLE_ELEMENTS)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .max_memory_size(limits.memory_bytes.div_ceil(WASM_PAGE) * WASM_PAGE);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .wasm_backtrace_max_frames(None)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(create_error)?;

        let mut linker = Linker::<GuestState>::new(&engine);
        Bindings::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |state| state)
            .map_err(create_error)?;

        let ticker = EpochTicker::start(engine.clone()).map_err(PolicyEngineError::Ticker)?;
        Ok(PolicyEngine {
            inner: Arc::new(EngineInner {
                deadline_ticks: EpochTicker::deadline_ticks(limits.timeout),
                engine,
                linker,
                limits,
                _ticker: ticker,
            }),
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> PolicyLimits {
        self.inner.limits
    }

    /// Ask `policy` to decide on `event` with `view`; the answer is validated.
    pub fn decide(
        &self,
        policy: &LoadedPolicy,
        event: &Event,
        view: &ClusterView,
    ) -> Result<Decision, PolicyCallError> {
        self.decide_metered(policy, event, view)
            .map(|metered| metered.decision)
    }

    /// [`decide`](Self::decide), also reporting the fuel the call used.
    pub fn decide_metered(
        &self,
        policy: &LoadedPolicy,
        event: &Event,
        view: &ClusterView,
    ) -> Result<Metered, PolicyCallError> {
        let wit_event = convert::event_to_wit(event);
        let wit_view = convert::view_to_wit(view);
        let (answer, fuel_used, warnings) = self.call(
            policy.name_arc(),
            policy.engine(),
            policy.pre(),
            |store, bindings| {
                bindings
                    .pgwarden_policy_decider()
                    .call_decide(store, &wit_event, &wit_view)
            },
        )?;
        let decision = convert::decision_from_wit(answer);
        let problems = validate::decision_problems(&decision, view);
        if !problems.is_empty() {
            return Err(PolicyCallError::Malformed {
                policy: policy.name().to_string(),
                problems,
                answer: Box::new(decision),
            });
        }
        Ok(Metered {
            decision,
            fuel_used,
            warnings,
        })
    }

    /// Whether `policy` was loaded by this engine (only such policies can be called).
    pub fn owns(&self, policy: &LoadedPolicy) -> bool {
        Engine::same(policy.engine(), &self.inner.engine)
    }

    /// Ask `policy` for its metadata again, in a fresh instance (what a trivial call costs:
    /// instantiation plus one small answer).
    pub fn metadata(&self, policy: &LoadedPolicy) -> Result<Info, PolicyCallError> {
        self.call(
            policy.name_arc(),
            policy.engine(),
            policy.pre(),
            |store, bindings| bindings.pgwarden_policy_decider().call_metadata(store),
        )
        .map(|(info, _fuel, _warnings)| convert::info_from_wit(info))
    }

    /// The wasmtime engine (for loading).
    pub(super) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The host's linker (for loading).
    pub(super) fn linker(&self) -> &Linker<GuestState> {
        &self.inner.linker
    }

    /// Instantiate `pre` in a fresh store under the limits and run `f`; returns its result
    /// and the fuel used.
    pub(super) fn call<R>(
        &self,
        policy: Arc<str>,
        engine: &Engine,
        pre: &PolicyPre<GuestState>,
        f: impl FnOnce(&mut Store<GuestState>, &Bindings) -> wasmtime::Result<R>,
    ) -> Result<(R, u64, Vec<String>), PolicyCallError> {
        let limits = self.inner.limits;
        if !Engine::same(engine, &self.inner.engine) {
            return Err(PolicyCallError::Instantiate {
                policy: policy.to_string(),
                message: "the policy was loaded by another policy engine".to_string(),
            });
        }
        let mut store = Store::new(
            &self.inner.engine,
            GuestState::new(policy.clone(), limits.memory_bytes),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.inner.deadline_ticks);
        if let Err(e) = store.set_fuel(limits.fuel) {
            return Err(PolicyCallError::Instantiate {
                policy: policy.to_string(),
                message: format!("setting fuel {}: {e:#}", limits.fuel),
            });
        }

        let result = match pre.instantiate(&mut store) {
            Ok(bindings) => {
                f(&mut store, &bindings).map_err(|e| classify(&policy, &limits, &store, e, false))
            }
            Err(e) => Err(classify(&policy, &limits, &store, e, true)),
        };
        let dropped = store.data().dropped_log_lines();
        if dropped > 0 {
            tracing::warn!(
                policy = &*policy,
                dropped,
                "policy log lines dropped (over the per-call cap)"
            );
        }
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let warnings = store.data_mut().take_warnings();
        result.map(|value| (value, fuel_used, warnings))
    }
}

/// What a failed instantiation or call means.
fn classify(
    policy: &str,
    limits: &PolicyLimits,
    store: &Store<GuestState>,
    error: wasmtime::Error,
    instantiating: bool,
) -> PolicyCallError {
    let policy = policy.to_string();
    let trap = error.downcast_ref::<Trap>().copied().or_else(|| {
        error
            .chain()
            .find_map(|cause| cause.downcast_ref::<Trap>().copied())
    });
    match trap {
        Some(Trap::OutOfFuel) => {
            return PolicyCallError::FuelExhausted {
                policy,
                fuel: limits.fuel,
            }
        }
        Some(Trap::Interrupt) => {
            return PolicyCallError::Timeout {
                policy,
                timeout: limits.timeout,
            }
        }
        _ => {}
    }
    let message = format!("{error:#}");
    if let Some(requested_bytes) = store.data().limiter.refused_growth() {
        return PolicyCallError::MemoryLimit {
            policy,
            limit_bytes: store.data().limiter.memory_bytes(),
            requested_bytes,
            message,
        };
    }
    match trap {
        Some(code) => PolicyCallError::Trap {
            policy,
            code: Some(format!("{code:?}")),
            message,
        },
        None if instantiating => PolicyCallError::Instantiate { policy, message },
        None => PolicyCallError::Trap {
            policy,
            code: None,
            message,
        },
    }
}

fn cap_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
