//! The decision log: the agent's last decisions, kept in memory and served at
//! `GET /decisions`, with no collector needed.
//!
//! It is built from the same spans that are exported as traces (`runtime::turn`), by a
//! tracing layer: an input's span (`pgwarden.input`) opens a decision, and each span under
//! it becomes one of its steps: the gate's verdicts, the transitions, the effects (with
//! their outcome and duration once their work finishes) and, under a `policy.consult`
//! effect, the policy's decision. A decision closes when its span does, that is once every
//! effect it started has finished. An input that is the result of an effect (see
//! `runtime::inbox`) names the decision behind that effect, so a failover reads as a chain:
//! leader key gone → peers probed → policy said race → key acquired → promoted.
//!
//! Only decisions worth asking "why" about are kept: those with a transition, a gate
//! verdict, a policy decision or an effect beyond routine upkeep (lease renewal, member
//! key, probes, watchdog feeding). The last `keep` of them stay in a ring; a decision still
//! running is shown too, marked incomplete. Completed decisions can also be appended to a
//! file as JSON lines, written by a thread of its own through a bounded queue: a slow disk
//! never holds the agent's loop (lines that do not fit are dropped and counted).
//!
//! Secrets never appear: every text is scrubbed of the configuration's secret values
//! before it is stored.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The span that opens a decision.
pub const INPUT_SPAN: &str = "pgwarden.input";
/// Decisions kept by default.
pub const DEFAULT_KEEP: usize = 1000;
/// Lines waiting for the file writer at most.
const FILE_QUEUE: usize = 1024;
/// What replaces a secret.
const REDACTED: &str = "********";

/// What a step of a decision is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The invariant gate's verdict (`pgwarden.gate`).
    Gate,
    /// A state transition (`pgwarden.transition`).
    Transition,
    /// An effect and its work (`pgwarden.effect`).
    Effect,
    /// A policy call's decision (`pgwarden.policy`).
    Policy,
}

impl StepKind {
    /// Its name (`gate`, `transition`, `effect`, `policy`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Gate => "gate",
            StepKind::Transition => "transition",
            StepKind::Effect => "effect",
            StepKind::Policy => "policy",
        }
    }

    fn of_span(name: &str) -> Option<StepKind> {
        match name {
            "pgwarden.gate" => Some(StepKind::Gate),
            "pgwarden.transition" => Some(StepKind::Transition),
            "pgwarden.effect" => Some(StepKind::Effect),
            "pgwarden.policy" => Some(StepKind::Policy),
            _ => None,
        }
    }
}

/// One step of a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    /// What it is.
    pub kind: StepKind,
    /// Its name (`pg.promote`, `replica -> candidate`, `gate race`, `policy.decide`).
    pub name: String,
    /// Microseconds from the start of the decision to the start of the step.
    pub offset_us: u64,
    /// How long it took; absent while it runs.
    pub duration_us: Option<u64>,
    /// Its attributes, without the `pgwarden.` prefix (`outcome`, `why`, `rule`, ...).
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, Value>,
    /// The step it is part of, by index (a policy decision: its `policy.consult` effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
}

/// The decision behind the effect an input reports on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CausedBy {
    /// That decision's id.
    pub decision: u64,
    /// The effect (`dcs.leader.acquire`).
    pub effect: String,
}

/// One handled input and what came of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// Increasing id (per agent run).
    pub id: u64,
    /// When the input was handled, RFC 3339 UTC.
    pub at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The input (`cluster_changed`, `policy_decided`, `timer`, ...).
    pub input: String,
    /// What the node knew after handling it: `member`, `scope`, `state`, `leader`,
    /// `leader.revision`, `leader.lease`, `timeline`, `view.revision`, `timers`.
    #[schema(value_type = Object)]
    pub facts: BTreeMap<String, Value>,
    /// The decision whose effect this input reports on.
    pub caused_by: Option<CausedBy>,
    /// Gate verdicts, transitions, effects and policy decisions, in the order they began.
    pub steps: Vec<Step>,
    /// False while an effect it started is still running.
    pub complete: bool,
}

impl Decision {
    /// Worth keeping: something beyond routine upkeep happened.
    fn is_notable(&self) -> bool {
        self.steps.iter().any(|s| match s.kind {
            StepKind::Effect => s.fields.get("routine") != Some(&Value::Bool(true)),
            _ => true,
        })
    }

    /// Whether the input, or one of its steps, is named `kind` (`policy_decided`,
    /// `pg.promote`), or one of its steps is of that kind (`gate`, `transition`).
    pub fn matches_kind(&self, kind: &str) -> bool {
        self.input == kind
            || self.steps.iter().any(|s| {
                s.name == kind
                    || s.fields.get("effect").and_then(Value::as_str) == Some(kind)
                    || s.kind.as_str() == kind
            })
    }
}

/// Which decisions a query wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Any of these kinds (see [`Decision::matches_kind`]); empty: all.
    pub kinds: Vec<String>,
    /// Handled at or after (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Handled at or before.
    pub until_ms: Option<u64>,
    /// The newest `limit` of those.
    pub limit: usize,
}

/// Counters of the log itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogStats {
    /// Decisions recorded since the start.
    pub recorded: u64,
    /// Decisions evicted from the ring (older than the last `keep`).
    pub evicted: u64,
    /// Lines not written to the file (queue full or write failed).
    pub file_dropped: u64,
}

#[derive(Default)]
struct Ring {
    next_id: u64,
    /// Decisions whose span is still open, by id.
    open: BTreeMap<u64, (Decision, Instant)>,
    /// Closed notable decisions, oldest first.
    done: VecDeque<Decision>,
    recorded: u64,
    evicted: u64,
}

/// The decision log (shared by the tracing layer, the REST API and the file writer).
pub struct DecisionLog {
    keep: usize,
    ring: Mutex<Ring>,
    secrets: RwLock<Vec<String>>,
    file: Option<mpsc::SyncSender<String>>,
    file_dropped: Arc<AtomicU64>,
}

impl DecisionLog {
    /// A log keeping the last `keep` decisions, appending them to `file` when set.
    pub fn new(keep: usize, file: Option<&Path>) -> std::io::Result<Arc<DecisionLog>> {
        let file_dropped = Arc::new(AtomicU64::new(0));
        let file = match file {
            Some(path) => Some(spawn_writer(path, file_dropped.clone())?),
            None => None,
        };
        Ok(Arc::new(DecisionLog {
            keep: keep.max(1),
            ring: Mutex::new(Ring::default()),
            secrets: RwLock::new(Vec::new()),
            file,
            file_dropped,
        }))
    }

    /// The secret values to scrub from every text (the configuration's, see
    /// `Config::secret_values`); called at start and on each reload.
    pub fn set_secrets(&self, mut secrets: Vec<String>) {
        // Longest first: a secret that contains another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        if let Ok(mut s) = self.secrets.write() {
            *s = secrets;
        }
    }

    /// The decisions `query` asks for, oldest first (complete or not).
    pub fn query(&self, query: &Query) -> Vec<Decision> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        let in_range = |d: &Decision| {
            query.since_ms.is_none_or(|t| d.at_unix_ms >= t)
                && query.until_ms.is_none_or(|t| d.at_unix_ms <= t)
                && (query.kinds.is_empty() || query.kinds.iter().any(|k| d.matches_kind(k)))
        };
        // Newest first, and only `limit` of each kind cloned: the agent's loop waits for
        // this lock, so a query must not copy the whole ring under it.
        let open = ring.open.values().rev().map(|(d, _)| d);
        let mut found: Vec<Decision> = open
            .filter(|d| d.is_notable() && in_range(d))
            .take(query.limit)
            .cloned()
            .collect();
        let done = ring.done.iter().rev().filter(|d| in_range(d));
        found.extend(done.take(query.limit).cloned());
        drop(ring);
        found.sort_by_key(|d| d.id);
        let skip = found.len().saturating_sub(query.limit);
        found.drain(..skip);
        found
    }

    /// The log's own counters.
    pub fn stats(&self) -> LogStats {
        let ring = self.ring.lock();
        let (recorded, evicted) = ring.map(|r| (r.recorded, r.evicted)).unwrap_or_default();
        LogStats {
            recorded,
            evicted,
            file_dropped: self.file_dropped.load(Ordering::Relaxed),
        }
    }

    fn scrub(&self, mut text: String) -> String {
        if let Ok(secrets) = self.secrets.read() {
            for secret in secrets.iter() {
                if text.contains(secret.as_str()) {
                    text = text.replace(secret.as_str(), REDACTED);
                }
            }
        }
        text
    }

    fn scrub_fields(&self, fields: Fields) -> BTreeMap<String, Value> {
        fields
            .0
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, Value::String(self.scrub(s))),
                other => (k, other),
            })
            .collect()
    }

    fn open(&self, facts: Fields) -> u64 {
        let facts = self.scrub_fields(facts);
        let now = SystemTime::now();
        let at_unix_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let at = time::OffsetDateTime::from(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let Ok(mut ring) = self.ring.lock() else {
            return 0;
        };
        ring.next_id += 1;
        let id = ring.next_id;
        let input = facts
            .get("input")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let decision = Decision {
            id,
            at,
            at_unix_ms,
            input,
            facts: facts.into_iter().filter(|(k, _)| k != "input").collect(),
            caused_by: None,
            steps: Vec::new(),
            complete: false,
        };
        ring.open.insert(id, (decision, Instant::now()));
        // A span that never closes (a hung task) must not hold memory forever: past
        // several rings' worth of open decisions, the oldest is closed as it stands.
        if ring.open.len() > self.keep.saturating_mul(4).max(64) {
            if let Some((&oldest, _)) = ring.open.iter().next() {
                drop(ring);
                self.finish(oldest, false);
            }
        }
        id
    }

    fn with_open(&self, id: u64, change: impl FnOnce(&mut Decision, Instant)) {
        if let Ok(mut ring) = self.ring.lock() {
            if let Some((decision, started)) = ring.open.get_mut(&id) {
                change(decision, *started);
            }
        }
    }

    fn add_facts(&self, id: u64, facts: Fields) {
        let facts = self.scrub_fields(facts);
        self.with_open(id, |d, _| d.facts.extend(facts));
    }

    fn add_step(
        &self,
        id: u64,
        kind: StepKind,
        name: String,
        fields: Fields,
        parent: Option<usize>,
    ) -> usize {
        let fields = self.scrub_fields(fields);
        let name = self.scrub(name);
        let mut index = usize::MAX;
        self.with_open(id, |d, started| {
            index = d.steps.len();
            d.steps.push(Step {
                kind,
                name,
                offset_us: started.elapsed().as_micros() as u64,
                duration_us: None,
                fields,
                parent,
            });
        });
        index
    }

    fn update_step(&self, id: u64, index: usize, fields: Fields) {
        let fields = self.scrub_fields(fields);
        self.with_open(id, |d, _| {
            if let Some(step) = d.steps.get_mut(index) {
                step.fields.extend(fields);
            }
        });
    }

    fn finish_step(&self, id: u64, index: usize, duration_us: u64) {
        self.with_open(id, |d, _| {
            if let Some(step) = d.steps.get_mut(index) {
                step.duration_us = Some(duration_us);
            }
        });
    }

    fn set_cause(&self, id: u64, cause: CausedBy) {
        self.with_open(id, |d, _| d.caused_by = Some(cause));
    }

    /// The decision's span closed: every effect it started has finished.
    fn close(&self, id: u64) {
        self.finish(id, true);
    }

    /// Moves an open decision to the ring (when notable); `complete` is false when it is
    /// evicted while its effects still run (a span that never closed).
    fn finish(&self, id: u64, complete: bool) {
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let Some((mut decision, _)) = ring.open.remove(&id) else {
            return;
        };
        if !decision.is_notable() {
            return;
        }
        decision.complete = complete;
        ring.recorded += 1;
        let line = self.file.as_ref().map(|_| decision.clone());
        ring.done.push_back(decision);
        while ring.done.len() > self.keep {
            ring.done.pop_front();
            ring.evicted += 1;
        }
        drop(ring);
        // Serialised outside the lock the agent's loop waits for.
        if let (Some(file), Some(decision)) = (&self.file, line) {
            let sent = serde_json::to_string(&decision)
                .ok()
                .is_some_and(|line| file.try_send(line).is_ok());
            if !sent {
                self.file_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The file writer: one thread appending lines, so the disk never holds the caller.
fn spawn_writer(path: &Path, dropped: Arc<AtomicU64>) -> std::io::Result<mpsc::SyncSender<String>> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let (tx, rx) = mpsc::sync_channel::<String>(FILE_QUEUE);
    let shown: PathBuf = path.to_path_buf();
    std::thread::Builder::new()
        .name("pgwarden-decisions".into())
        .spawn(move || {
            for line in rx {
                if let Err(error) = writeln!(file, "{line}") {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "pgwarden: decision log {}: {error}; line dropped",
                        shown.display()
                    );
                }
            }
        })?;
    Ok(tx)
}

/// A span's attributes as JSON values, `pgwarden.` prefixes removed (`otel.*` dropped).
#[derive(Default)]
struct Fields(BTreeMap<String, Value>);

impl Fields {
    fn insert(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name.starts_with("otel.") {
            return;
        }
        let name = name.strip_prefix("pgwarden.").unwrap_or(name);
        self.0.insert(name.to_string(), value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::String(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::Bool(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.insert(field, Value::String(format!("{value:?}")));
    }
}

/// The extension on an input's span: its decision, and its trace once stamped.
struct Root {
    decision: u64,
    trace: Option<(String, String)>,
}

/// Where the thread is among the agent's decisions: the decision of the span it is in, and
/// that decision's OpenTelemetry trace and span ids while traces are exported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Whereabouts {
    /// The decision log's id.
    pub decision: u64,
    /// `(trace_id, span_id)` of the decision's input span.
    pub trace: Option<(String, String)>,
}

thread_local! {
    /// The decision spans entered on this thread, innermost last (span id, whereabouts).
    static ENTERED: std::cell::RefCell<Vec<(u64, Whereabouts)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The decision this thread is working on, if any (for log lines: a layer cannot look the
/// current span up itself while the subscriber is busy with an event).
pub fn current_whereabouts() -> Option<Whereabouts> {
    ENTERED
        .try_with(|entered| entered.borrow().last().map(|(_, w)| w.clone()))
        .ok()
        .flatten()
}

fn whereabouts_of<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Option<Whereabouts>
where
    S: for<'a> LookupSpan<'a>,
{
    span.scope().find_map(|s| {
        s.extensions().get::<Root>().map(|root| Whereabouts {
            decision: root.decision,
            trace: root.trace.clone(),
        })
    })
}

/// The extension on a step's span.
struct StepRef {
    decision: u64,
    index: usize,
    name: String,
    started: Instant,
}

/// Builds the decision log from the agent's spans (add it to the subscriber, filtered to
/// pgwarden's own spans at info level).
pub struct DecisionLayer {
    log: Arc<DecisionLog>,
}

impl DecisionLayer {
    /// A layer recording into `log`.
    pub fn new(log: Arc<DecisionLog>) -> DecisionLayer {
        DecisionLayer { log }
    }
}

/// The decision a span belongs to: its own, or its nearest ancestor's.
fn decision_of<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Option<u64>
where
    S: for<'a> LookupSpan<'a>,
{
    span.scope().find_map(|s| {
        let ext = s.extensions();
        ext.get::<Root>()
            .map(|r| r.decision)
            .or_else(|| ext.get::<StepRef>().map(|r| r.decision))
    })
}

impl<S> Layer<S> for DecisionLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let name = attrs.metadata().name();
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if name == INPUT_SPAN {
            let decision = self.log.open(fields);
            span.extensions_mut().insert(Root {
                decision,
                trace: None,
            });
            return;
        }
        let Some(kind) = StepKind::of_span(name) else {
            return;
        };
        let parent = span.parent();
        let Some(decision) = parent.as_ref().and_then(decision_of) else {
            return;
        };
        let parent_step = parent.as_ref().and_then(|p| {
            p.extensions()
                .get::<StepRef>()
                .filter(|s| s.decision == decision)
                .map(|s| s.index)
        });
        let mut otel_name = OtelName::default();
        attrs.record(&mut otel_name);
        let step_name = otel_name.0.unwrap_or_else(|| name.to_string());
        let index = self
            .log
            .add_step(decision, kind, step_name.clone(), fields, parent_step);
        span.extensions_mut().insert(StepRef {
            decision,
            index,
            name: step_name,
            started: Instant::now(),
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut ext = span.extensions_mut();
        if let Some(root) = ext.get_mut::<Root>() {
            // Each `record` call brings one field: the ids arrive one after the other.
            let text = |key: &str| fields.0.get(key).and_then(Value::as_str).map(String::from);
            if let Some(trace_id) = text("trace_id") {
                root.trace = Some((trace_id, String::new()));
            }
            if let (Some(span_id), Some((_, slot))) = (text("span_id"), root.trace.as_mut()) {
                *slot = span_id;
            }
            self.log.add_facts(root.decision, fields);
        } else if let Some(step) = ext.get_mut::<StepRef>() {
            self.log.update_step(step.decision, step.index, fields);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(whereabouts) = ctx.span(id).as_ref().and_then(whereabouts_of) else {
            return;
        };
        let _ = ENTERED.try_with(|entered| entered.borrow_mut().push((id.into_u64(), whereabouts)));
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let id = id.into_u64();
        let _ = ENTERED.try_with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|(entered, _)| *entered == id) {
                entered.remove(at);
            }
        });
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let (Some(span), Some(cause)) = (ctx.span(id), ctx.span(follows)) else {
            return;
        };
        let Some(root) = span.extensions().get::<Root>().map(|r| r.decision) else {
            return;
        };
        let ext = cause.extensions();
        if let Some(step) = ext.get::<StepRef>() {
            self.log.set_cause(
                root,
                CausedBy {
                    decision: step.decision,
                    effect: step.name.clone(),
                },
            );
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        if let Some(root) = ext.get::<Root>() {
            self.log.close(root.decision);
        } else if let Some(step) = ext.get::<StepRef>() {
            let duration = step.started.elapsed().as_micros() as u64;
            self.log.finish_step(step.decision, step.index, duration);
        }
    }
}

/// The `otel.name` attribute, which names a step.
#[derive(Default)]
struct OtelName(Option<String>);

impl Visit for OtelName {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "otel.name" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "otel.name" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests;
