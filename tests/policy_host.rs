//! The policy host with real components: the embedded default, and one hostile test guest
//! per failure (`policies/testing/*`, built once per process by `support/guests.rs`).
//! Nothing here asserts on wall-clock time; the `policy` bench prints the figures.

use pgwarden_testkit::guests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgwarden::policy::{
    read_trace, sha256_hex, LoadedPolicy, PolicyCallError, PolicyEngine, PolicyErrorKind,
    PolicyHost, PolicyLimits, PolicyLoadError, Source, TraceFileError, TraceRecord, TraceSource,
    TraceWriter, ALLOWED_IMPORTS, CONTRACT_VERSION, DEFAULT_POLICY_COMPONENT, OUTCOME, PREFERENCE,
    RACE, SYNC_STANDBYS,
};
use pgwarden_policy::{
    ClusterView, Config, Decision, Event, Lease, Member, Policy as _, Race, Role, Switchover,
    SynchronousMode,
};
use pgwarden_policy_default::DefaultPolicy;

/// Default fuel and memory; a wall-time deadline long enough that a busy machine never
/// turns a normal call into a timeout (the timeout test sets its own).
fn limits() -> PolicyLimits {
    PolicyLimits {
        timeout: Duration::from_secs(10),
        ..PolicyLimits::default()
    }
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(limits()).expect("create the policy engine")
}

fn default_host() -> PolicyHost {
    let engine = engine();
    let default = engine
        .embedded_default()
        .expect("load the embedded default");
    PolicyHost::new(engine, default)
}

fn load_guest(engine: &PolicyEngine, name: &str) -> LoadedPolicy {
    let path = guests::guests().path(name);
    engine
        .load_file(&path, None)
        .unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

fn member(name: &str, role: Role, lsn: u64) -> Member {
    Member {
        name: name.into(),
        role,
        state: "running".into(),
        streaming: role == Role::Replica,
        timeline: Some(3),
        received_lsn: Some(lsn),
        replayed_lsn: Some(lsn),
        lag_bytes: Some(10_000 - lsn.min(10_000)),
        tags: vec![("zone".into(), format!("zone-{}", &name[1..]))],
        is_sync: false,
        failover_priority: 1,
        heartbeat_age_ms: Some(500),
        reachable: Some(true),
    }
}

/// Five members, n1 the primary, the others replicas at various positions.
fn five_members() -> Vec<Member> {
    vec![
        member("n1", Role::Primary, 10_000),
        member("n2", Role::Replica, 9_000),
        member("n3", Role::Replica, 9_500),
        member("n4", Role::Replica, 8_000),
        member("n5", Role::Replica, 9_500),
    ]
}

fn base_view(me: &str) -> ClusterView {
    ClusterView {
        now_ms: 1_000_000,
        me: me.into(),
        members: five_members(),
        lease: Lease {
            holder: Some("n1".into()),
            mine: me == "n1",
            time_left_ms: (me == "n1").then_some(20_000),
        },
        last_leader: None,
        leaderless_ms: None,
        cluster_timeline: Some(3),
        leader_lsn: Some(10_000),
        sync_leader: None,
        sync_standbys: Vec::new(),
        switchover: None,
        config: Config::default(),
    }
}

/// The leader is gone: n1's key expired and it does not answer.
fn election_view(me: &str) -> ClusterView {
    let mut view = base_view(me);
    view.lease = Lease::default();
    view.leaderless_ms = Some(1_500);
    view.last_leader = view.member("n1").cloned();
    for m in &mut view.members {
        if m.name == "n1" {
            m.reachable = Some(false);
            m.state = "stopped".into();
        }
    }
    view
}

/// Events and views on which the policies are compared.
fn scenarios() -> Vec<(Event, ClusterView)> {
    let mut leader_sync = base_view("n1");
    leader_sync.config.synchronous_mode = SynchronousMode::On;
    leader_sync.config.synchronous_node_count = 2;
    leader_sync.sync_leader = Some("n1".into());
    leader_sync.sync_standbys = vec!["n4".into()];
    for m in &mut leader_sync.members {
        m.is_sync = m.name == "n4";
    }

    let mut switchover = election_view("n5");
    let request = Switchover {
        leader: None,
        candidate: Some("n2".into()),
        override_policy: false,
    };
    switchover.switchover = Some(request.clone());

    vec![
        (Event::Tick, base_view("n2")),
        (Event::Election, election_view("n3")),
        (Event::Election, election_view("n5")),
        (Event::Election, election_view("n4")),
        (Event::LeaderExpired("n1".into()), election_view("n2")),
        (Event::Tick, leader_sync),
        (Event::SwitchoverRequested(request), switchover),
        (
            Event::StoreUnreachable("connection refused".into()),
            base_view("n3"),
        ),
    ]
}

fn native(event: &Event, view: &ClusterView) -> Decision {
    DefaultPolicy::decide(event, view)
}

#[test]
fn the_frozen_contract_is_the_current_one_while_the_version_is_0_1_0() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let current =
        std::fs::read_to_string(root.join("wit/policy.wit")).expect("read wit/policy.wit");
    let version = current
        .lines()
        .find_map(|line| line.trim().strip_prefix("package pgwarden:policy@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/policy.wit declares package pgwarden:policy@<version>;");
    assert_eq!(
        pgwarden_policy::CONTRACT_VERSION,
        version,
        "the SDK implements wit/policy.wit"
    );
    assert_eq!(
        CONTRACT_VERSION, "0.1.0",
        "the host's bindings are the 0.1.0 contract"
    );
    let frozen = std::fs::read_to_string(root.join("wit/deps/pgwarden-policy-0.1.0/policy.wit"))
        .expect("read the frozen 0.1.0 contract");
    if version == "0.1.0" {
        assert!(
            frozen == current,
            "wit/policy.wit is still 0.1.0 but differs from its frozen copy \
             wit/deps/pgwarden-policy-0.1.0/policy.wit: a released contract does not change \
             (bump the version to change it)"
        );
    } else {
        assert!(frozen.contains("package pgwarden:policy@0.1.0;"));
    }
}

#[test]
fn the_embedded_default_loads_and_reports_its_metadata() {
    let engine = engine();
    let default = engine
        .embedded_default()
        .expect("load the embedded default");
    let info = default.info();
    assert_eq!(info.name, "default");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(info.description.contains("Patroni"), "{info:?}");
    assert_eq!(info.contract_version, "0.1.0");
    assert_eq!(info.sha256, sha256_hex(DEFAULT_POLICY_COMPONENT));
    assert_eq!(info.size_bytes, DEFAULT_POLICY_COMPONENT.len());
    assert!(
        info.imports
            .iter()
            .all(|i| ALLOWED_IMPORTS.contains(&i.as_str())),
        "{:?}",
        info.imports
    );
    assert_eq!(
        info.exports,
        vec!["pgwarden:policy/decider@0.1.0".to_string()]
    );
    assert_eq!(info.source, "embedded default");
    let again = engine
        .load_bytes("again", DEFAULT_POLICY_COMPONENT, Some(&info.sha256))
        .expect("load by digest");
    let mut again_info = again.info().clone();
    assert_eq!(again_info.source, "again");
    again_info.source = info.source.clone();
    assert_eq!(&again_info, info);
}

#[test]
fn the_embedded_default_decides_like_the_native_default() {
    let engine = engine();
    let default = engine
        .embedded_default()
        .expect("load the embedded default");
    let mut host = PolicyHost::new(engine.clone(), default.clone());
    let mut kinds = std::collections::BTreeSet::new();
    for (event, view) in scenarios() {
        let expected = native(&event, &view);
        let metered = engine
            .decide_metered(&default, &event, &view)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", event.kind(), view.me));
        assert_eq!(
            metered.decision,
            expected,
            "{} as {}",
            event.kind(),
            view.me
        );
        assert!(metered.fuel_used > 0 && metered.fuel_used < limits().fuel / 100);
        let verdict = host.decide(&event, &view);
        assert_eq!(verdict.decision, expected);
        assert_eq!(
            verdict.source,
            Source::Active {
                policy: "default".into()
            }
        );
        assert_eq!(verdict.shadow, None);
        kinds.insert(format!("{:?}", std::mem::discriminant(&expected.race)));
    }
    // The scenarios exercise more than one answer, among replicas too: an election won and
    // one stood down for a more advanced peer.
    assert!(kinds.len() >= 2, "{kinds:?}");
    let elections: Vec<Race> = scenarios()
        .iter()
        .filter(|(event, view)| *event == Event::Election && !view.lease.mine)
        .map(|(event, view)| native(event, view).race)
        .collect();
    assert!(elections.contains(&Race::Race), "{elections:?}");
    assert!(
        elections
            .iter()
            .any(|r| matches!(r, Race::StandDown(why) if why.contains("is ahead"))),
        "{elections:?}"
    );
    let counters = host.counters();
    assert_eq!(counters.calls, scenarios().len() as u64);
    assert_eq!(counters.fallbacks.total(), 0);
}

/// Run `guest` as the active policy: the native default must decide, the error must be of
/// `kind`, it must be counted, and the next call (to the same guest, then to the default)
/// must work as before.
fn assert_contained(guest: &str, kind: PolicyErrorKind) -> PolicyCallError {
    let engine = engine();
    let default = engine
        .embedded_default()
        .expect("load the embedded default");
    let hostile = load_guest(&engine, guest);
    assert_eq!(hostile.name(), guest);
    let mut host = PolicyHost::new(engine, hostile);
    let (event, view) = (Event::Election, election_view("n3"));

    let verdict = host.decide(&event, &view);
    assert_eq!(
        verdict.decision,
        native(&event, &view),
        "{guest}: the native default decides"
    );
    let Source::Fallback { policy, error } = verdict.source else {
        panic!("{guest}: expected a fallback, got {:?}", verdict.source);
    };
    assert_eq!(policy, guest);
    assert_eq!(error.kind(), kind, "{guest}: {error}");
    assert_eq!(error.policy(), guest);
    assert_eq!(host.counters().fallbacks.get(kind), 1);
    assert_eq!(host.counters().fallbacks.total(), 1);

    // Not poisoned: the same guest fails the same way on the next call...
    let again = host.decide(&event, &view);
    assert_eq!(again.source.error().map(PolicyCallError::kind), Some(kind));
    assert_eq!(host.counters().fallbacks.get(kind), 2);

    // ...and a good policy on the same engine decides normally.
    host.set_active(default);
    for (event, view) in scenarios() {
        let verdict = host.decide(&event, &view);
        assert_eq!(
            verdict.source,
            Source::Active {
                policy: "default".into()
            }
        );
        assert_eq!(verdict.decision, native(&event, &view));
    }
    assert_eq!(host.counters().fallbacks.total(), 2);
    error
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_and_the_default_decides() {
    let error = assert_contained("infinite-loop", PolicyErrorKind::FuelExhausted);
    assert_eq!(
        error,
        PolicyCallError::FuelExhausted {
            policy: "infinite-loop".into(),
            fuel: limits().fuel
        }
    );
}

#[test]
fn an_infinite_loop_with_unlimited_fuel_hits_the_deadline() {
    let engine = PolicyEngine::new(PolicyLimits {
        fuel: u64::MAX,
        timeout: Duration::from_millis(200),
        ..PolicyLimits::default()
    })
    .expect("create the policy engine");
    let hostile = load_guest(&engine, "infinite-loop");
    let (event, view) = (Event::Election, election_view("n3"));
    let error = engine
        .decide(&hostile, &event, &view)
        .expect_err("an infinite loop cannot answer");
    assert_eq!(
        error,
        PolicyCallError::Timeout {
            policy: "infinite-loop".into(),
            timeout: Duration::from_millis(200)
        }
    );
    // The engine still works after an interrupted call.
    let default = engine
        .embedded_default()
        .expect("load the embedded default");
    assert_eq!(
        engine
            .decide(&default, &event, &view)
            .expect("default decides"),
        native(&event, &view)
    );
}

#[test]
fn a_memory_bomb_hits_the_cap_and_the_default_decides() {
    let error = assert_contained("memory-bomb", PolicyErrorKind::MemoryLimit);
    let PolicyCallError::MemoryLimit {
        limit_bytes,
        requested_bytes,
        ..
    } = error
    else {
        panic!("expected a memory-limit error, got {error:?}");
    };
    assert_eq!(limit_bytes, limits().memory_bytes);
    assert!(
        requested_bytes > limit_bytes,
        "{requested_bytes} > {limit_bytes}"
    );
}

#[test]
fn a_trapping_guest_is_reported_and_the_default_decides() {
    let error = assert_contained("trap", PolicyErrorKind::Trap);
    let PolicyCallError::Trap { code, message, .. } = &error else {
        panic!("expected a trap, got {error:?}");
    };
    assert_eq!(code.as_deref(), Some("UnreachableCodeReached"), "{error}");
    assert!(message.contains("unreachable"), "{message}");
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("capture lock")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_guest_log_line_reaches_tracing_attributed_to_the_policy() {
    let engine = engine();
    let trap = load_guest(&engine, "trap");
    assert!(
        trap.info()
            .imports
            .iter()
            .any(|i| i == "pgwarden:policy/host@0.1.0"),
        "{:?}",
        trap.info().imports
    );
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let (event, view) = (Event::Tick, base_view("n2"));
    let result =
        tracing::subscriber::with_default(subscriber, || engine.decide(&trap, &event, &view));
    assert_eq!(result.map_err(|e| e.kind()), Err(PolicyErrorKind::Trap));
    let text = String::from_utf8(captured.0.lock().expect("capture lock").clone()).expect("utf-8");
    let line = text
        .lines()
        .find(|line| line.contains("trap test guest: about to panic"))
        .unwrap_or_else(|| panic!("the guest's log line in {text:?}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("policy=\"trap\"") || line.contains("policy=trap"),
        "{line}"
    );
}

#[test]
fn a_malformed_answer_is_refused_and_the_default_decides() {
    let error = assert_contained("garbage", PolicyErrorKind::Malformed);
    let PolicyCallError::Malformed {
        problems, answer, ..
    } = &error
    else {
        panic!("expected a malformed answer, got {error:?}");
    };
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has("preference: \"ghost-member\" is not a member"),
        "{problems:?}"
    );
    assert!(has("preference: \"n3\" is named twice"), "{problems:?}");
    assert!(
        has("sync_standbys: \"ghost-member-sync\" is not a member"),
        "{problems:?}"
    );
    assert!(has("race.wait: delay"), "{problems:?}");
    assert!(matches!(answer.race, Race::Wait(_)));
}

#[test]
fn a_component_importing_wasi_is_refused_at_load() {
    let engine = engine();
    let path = guests::guests().path("wasi-import");
    let error = engine
        .load_file(&path, None)
        .expect_err("a WASI import must be refused");
    let PolicyLoadError::ForbiddenImports { imports, .. } = &error else {
        panic!("expected refused imports, got {error}");
    };
    // The guest asks for 0.2.0; wasm-component-ld may merge it to a later 0.2.x.
    assert_eq!(imports.len(), 1, "{imports:?}");
    let import = &imports[0];
    assert!(import.starts_with("wasi:random/random@0.2."), "{imports:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("{import}, outside pgwarden:policy")),
        "{message}"
    );
}

#[test]
fn a_digest_mismatch_is_refused_and_a_match_loads() {
    let engine = engine();
    let path = guests::guests().path("trap");
    let bytes = std::fs::read(&path).expect("read the trap guest");
    let actual = sha256_hex(&bytes);
    let wrong = "0".repeat(64);
    let error = engine
        .load_file(&path, Some(&wrong))
        .expect_err("a wrong digest must be refused");
    assert!(
        matches!(error, PolicyLoadError::DigestMismatch { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&wrong) && message.contains(&actual),
        "{message}"
    );

    let malformed = engine
        .load_file(&path, Some("not-a-digest"))
        .expect_err("a malformed digest must be refused");
    assert!(
        matches!(malformed, PolicyLoadError::DigestFormat { .. }),
        "{malformed}"
    );

    let loaded = engine
        .load_file(&path, Some(&format!("sha256:{}", actual.to_uppercase())))
        .expect("the right digest loads");
    assert_eq!(loaded.info().sha256, actual);
    assert_eq!(loaded.info().size_bytes, bytes.len());
    assert_eq!(loaded.info().source, path.display().to_string());
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let engine = engine();
    let error = engine
        .load_bytes("junk", b"\0asm but not really", None)
        .expect_err("junk must be refused");
    assert!(matches!(error, PolicyLoadError::Compile { .. }), "{error}");
    assert!(
        error.to_string().starts_with("policy junk: compiling"),
        "{error}"
    );
}

#[test]
fn hot_swap_changes_the_deciding_policy_between_two_calls() {
    let mut host = default_host();
    let trap = load_guest(host.engine(), "trap");
    let default = host
        .engine()
        .embedded_default()
        .expect("load the embedded default");
    let (event, view) = (Event::Election, election_view("n5"));

    let first = host.decide(&event, &view);
    assert_eq!(
        first.source,
        Source::Active {
            policy: "default".into()
        }
    );
    assert_eq!(host.active_info().name, "default");

    host.set_active(trap);
    assert_eq!(host.active_info().name, "trap");
    let second = host.decide(&event, &view);
    assert_eq!(second.source.policy(), "trap");
    assert_eq!(
        second.source.error().map(PolicyCallError::kind),
        Some(PolicyErrorKind::Trap)
    );
    assert_eq!(
        second.decision, first.decision,
        "the native default stood in"
    );

    host.set_active(default);
    let third = host.decide(&event, &view);
    assert_eq!(
        third.source,
        Source::Active {
            policy: "default".into()
        }
    );
    assert_eq!(host.counters().calls, 3);
    assert_eq!(host.counters().fallbacks.trap, 1);
}

#[test]
fn a_shadow_that_decides_otherwise_is_reported_and_never_acted_on() {
    let mut host = default_host();
    let garbage = load_guest(host.engine(), "garbage");
    let trap = load_guest(host.engine(), "trap");
    let same = host
        .engine()
        .embedded_default()
        .expect("load the embedded default");
    let (event, view) = (Event::Election, election_view("n3"));
    let expected = native(&event, &view);

    // A shadow identical to the active policy does not diverge.
    host.set_shadow(Some(same));
    assert_eq!(host.shadow_info().map(|i| i.name.as_str()), Some("default"));
    let verdict = host.decide(&event, &view);
    let report = verdict.shadow.expect("a shadow report");
    assert_eq!(report.policy, "default");
    assert_eq!(report.outcome, Ok(expected.clone()));
    assert!(!report.diverged);
    assert!(report.differences.is_empty());

    // A malformed shadow answer diverges, field by field; the verdict is unchanged.
    host.set_shadow(Some(garbage));
    let verdict = host.decide(&event, &view);
    assert_eq!(verdict.decision, expected);
    assert_eq!(
        verdict.source,
        Source::Active {
            policy: "default".into()
        }
    );
    let report = verdict.shadow.expect("a shadow report");
    assert_eq!(report.policy, "garbage");
    assert!(report.diverged);
    assert_eq!(
        report.differences,
        vec![OUTCOME, RACE, PREFERENCE, SYNC_STANDBYS],
        "{report:?}"
    );
    assert_eq!(
        report.outcome.as_ref().map_err(PolicyCallError::kind),
        Err(PolicyErrorKind::Malformed)
    );

    // A trapping shadow diverges too; the verdict is unchanged.
    host.set_shadow(Some(trap));
    let verdict = host.decide(&event, &view);
    assert_eq!(verdict.decision, expected);
    let report = verdict.shadow.expect("a shadow report");
    assert!(report.diverged);
    assert_eq!(report.differences, vec![OUTCOME]);

    host.set_shadow(None);
    assert_eq!(host.decide(&event, &view).shadow, None);

    let counters = host.counters();
    assert_eq!(counters.calls, 4);
    assert_eq!(counters.fallbacks.total(), 0);
    assert_eq!(counters.shadow_calls, 3);
    assert_eq!(counters.shadow_divergences, 2);
    assert_eq!(counters.shadow_failures.malformed, 1);
    assert_eq!(counters.shadow_failures.trap, 1);
}

#[test]
fn traces_round_trip_through_the_writer_and_the_reader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("decisions.jsonl");
    let mut host = default_host();
    host.set_trace(Some(TraceWriter::append(&path).expect("open the trace")));

    let mut expected = Vec::new();
    for (event, view) in scenarios().into_iter().take(3) {
        let verdict = host.decide(&event, &view);
        expected.push(TraceRecord::from_verdict(&event, &view, &verdict));
    }
    let trap = load_guest(host.engine(), "trap");
    host.set_active(trap);
    let (event, view) = (Event::Election, election_view("n2"));
    let verdict = host.decide(&event, &view);
    expected.push(TraceRecord::from_verdict(&event, &view, &verdict));
    host.set_trace(None);
    host.decide(&event, &view); // not recorded

    let records = read_trace(&path).expect("read the trace back");
    assert_eq!(records, expected);
    assert_eq!(records[0].source, TraceSource::Active);
    assert_eq!(records[0].policy, "default");
    let last = records.last().expect("records");
    assert_eq!(last.source, TraceSource::Fallback);
    assert_eq!(last.policy, "trap");
    assert_eq!(
        last.error.as_ref().map(|e| e.kind),
        Some(PolicyErrorKind::Trap)
    );
    assert_eq!(host.counters().trace_write_errors, 0);

    // The line format, as documented.
    let text = std::fs::read_to_string(&path).expect("read the trace");
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    for key in ["event", "view", "decision", "source", "policy"] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    assert_eq!(first["source"], "active");
    assert!(first.get("error").is_none());

    // Appending keeps what is there; a bad line is reported with its number.
    std::fs::write(&path, format!("{text}\n{{\"event\": \"tick\"}}\n")).expect("append junk");
    let error = read_trace(&path).expect_err("junk is not a record");
    let TraceFileError::Parse { line, .. } = &error else {
        panic!("expected a parse error, got {error}");
    };
    assert_eq!(*line, expected.len() + 2, "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("decisions.jsonl:{line}:")),
        "{error}"
    );
}

#[test]
fn the_host_can_move_to_its_own_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<PolicyHost>();
    let mut host = default_host();
    let (event, view) = (Event::Tick, base_view("n2"));
    let expected = native(&event, &view);
    let decided = std::thread::spawn(move || host.decide(&event, &view).decision)
        .join()
        .expect("the policy thread");
    assert_eq!(decided, expected);
}

#[test]
fn a_policy_from_another_engine_fails_and_the_default_decides() {
    let mut host = default_host();
    let other = engine();
    let foreign = other.embedded_default().expect("load on the other engine");
    assert!(other.owns(&foreign));
    assert!(!host.engine().owns(&foreign));
    host.set_active(foreign);
    let (event, view) = (Event::Election, election_view("n3"));
    let verdict = host.decide(&event, &view);
    assert_eq!(verdict.decision, native(&event, &view));
    assert_eq!(
        verdict.source.error().map(PolicyCallError::kind),
        Some(PolicyErrorKind::Instantiate)
    );
    assert_eq!(host.counters().fallbacks.instantiate, 1);
}
