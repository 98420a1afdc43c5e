//! `pgwardenctl policy new|check|test|diff`, run as the built binary against the embedded
//! default, the workspace's policy components (built by `support/guests.rs`) and a trace
//! written here with the agent's `TraceWriter`: a three-member cluster whose leader's lease
//! expires, lag events, and elections on a replica, every decision recorded by the default.
//!
//! No configuration file exists for any of these runs: the policy tools must not need one.
//! Replays use a generous wall-time limit so a busy machine never turns a call into a
//! timeout (the default limits are asserted on the header only).

use pgwarden_testkit::guests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgwarden::policy::{
    decision_differences, sha256_hex, TraceRecord, TraceSource, TraceWriter,
    DEFAULT_POLICY_COMPONENT,
};
use pgwarden_policy::{
    ClusterView, Config, Decision, Event, Lease, Member, Policy as _, Race, Role,
};
use pgwarden_policy_always_promote::AlwaysPromote;
use pgwarden_policy_default::DefaultPolicy;

const TIMEOUT: [&str; 2] = ["--timeout-ms", "10000"];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run `pgwardenctl` with `args`, with no configuration file to be found.
fn ctl<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgwardenctl"));
    command
        .args(args)
        .env("PATRONICTL_CONFIG_FILE", "/nonexistent/pgwardenctl.yaml")
        .env_remove("PGWARDEN_LOG");
    command
        .output()
        .unwrap_or_else(|e| panic!("running pgwardenctl {command:?}: {e}"))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let output = ctl(args);
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `policy <command> <args...> --timeout-ms 10000`.
fn policy(command: &str, args: &[&str]) -> Run {
    let mut all = vec!["policy", command];
    all.extend_from_slice(args);
    all.extend_from_slice(&TIMEOUT);
    run(&all)
}

fn guest(name: &str) -> String {
    guests::guests().path(name).display().to_string()
}

/// The `#N ...` lines: one per reported call.
fn call_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with('#')).collect()
}

/// The `N` of every `#N ...` line.
fn call_numbers(stdout: &str) -> BTreeSet<usize> {
    call_lines(stdout)
        .iter()
        .map(|line| {
            line[1..]
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no call number in {line:?}"))
        })
        .collect()
}

// ---------------------------------------------------------------- the trace

const MIB: u64 = 1 << 20;
const LEADER_LSN: u64 = 0x5000_0000;

fn member(name: &str, role: Role, zone: &str, lsn: u64) -> Member {
    Member {
        name: name.into(),
        role,
        state: "running".into(),
        streaming: role == Role::Replica,
        timeline: Some(1),
        received_lsn: Some(lsn),
        replayed_lsn: Some(lsn),
        lag_bytes: Some(LEADER_LSN.saturating_sub(lsn)),
        tags: vec![("zone".into(), zone.into())],
        is_sync: false,
        failover_priority: 1,
        heartbeat_age_ms: Some(400),
        reachable: Some(true),
    }
}

/// node2's view while node1 leads; node3 is `node3_behind` bytes behind the leader.
fn led_by_node1(now_ms: u64, node3_behind: u64) -> ClusterView {
    ClusterView {
        now_ms,
        me: "node2".into(),
        members: vec![
            member("node1", Role::Primary, "zone-a", LEADER_LSN),
            member("node2", Role::Replica, "zone-b", LEADER_LSN - 4_096),
            member("node3", Role::Replica, "zone-a", LEADER_LSN - node3_behind),
        ],
        lease: Lease {
            holder: Some("node1".into()),
            mine: false,
            time_left_ms: None,
        },
        last_leader: None,
        leaderless_ms: None,
        cluster_timeline: Some(1),
        leader_lsn: Some(LEADER_LSN),
        sync_leader: None,
        sync_standbys: Vec::new(),
        switchover: None,
        config: Config::default(),
    }
}

/// node1's lease expired. `node3`: whether node3 answered the probe of an election
/// (node1 never does); `None`: nobody was probed for this call.
fn leaderless(now_ms: u64, leaderless_ms: u64, node3: Option<bool>) -> ClusterView {
    let mut view = led_by_node1(now_ms, 1_024);
    view.lease = Lease::default();
    view.leaderless_ms = Some(leaderless_ms);
    view.last_leader = view.member("node1").cloned();
    for m in &mut view.members {
        match m.name.as_str() {
            "node1" => {
                m.reachable = node3.map(|_| false);
                m.heartbeat_age_ms = Some(31_000);
            }
            "node3" => m.reachable = node3,
            _ => {}
        }
    }
    view
}

/// node3 leads on timeline 2; node1 is down.
fn led_by_node3(now_ms: u64) -> ClusterView {
    let mut view = leaderless(now_ms, 0, Some(true));
    view.leaderless_ms = None;
    view.lease = Lease {
        holder: Some("node3".into()),
        mine: false,
        time_left_ms: None,
    };
    view.cluster_timeline = Some(2);
    for m in &mut view.members {
        match m.name.as_str() {
            "node1" => m.state = "stopped".into(),
            "node3" => {
                m.role = Role::Primary;
                m.streaming = false;
                m.timeline = Some(2);
            }
            _ => {}
        }
    }
    view
}

fn events() -> Vec<(Event, ClusterView)> {
    vec![
        (Event::Tick, led_by_node1(1_000_000, 2_048)),
        (
            Event::LagExceeded("node3".into()),
            led_by_node1(1_010_000, 20 * MIB),
        ),
        (
            Event::LagRecovered("node3".into()),
            led_by_node1(1_020_000, 1_024),
        ),
        (
            Event::LeaderExpired("node1".into()),
            leaderless(1_050_000, 0, None),
        ),
        (Event::Election, leaderless(1_051_500, 1_500, Some(true))),
        (Event::Election, leaderless(1_053_000, 3_000, Some(false))),
        (
            Event::LeaderChanged("node3".into()),
            led_by_node3(1_053_500),
        ),
        (Event::Tick, led_by_node3(1_060_000)),
    ]
}

/// What the default policy decides on each event (what the trace records).
fn default_decisions() -> Vec<Decision> {
    events()
        .iter()
        .map(|(event, view)| DefaultPolicy::decide(event, view))
        .collect()
}

/// Write the trace, as an agent running the default policy records it, to `path`.
fn write_trace(path: &Path) {
    let mut writer = TraceWriter::append(path).expect("open the trace");
    for ((event, view), decision) in events().into_iter().zip(default_decisions()) {
        writer
            .write(&TraceRecord {
                event,
                view,
                decision,
                source: TraceSource::Active,
                policy: "default".into(),
                error: None,
            })
            .expect("write a trace record");
    }
}

fn trace() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy-trace.jsonl");
    write_trace(&path);
    (dir, path.display().to_string())
}

#[test]
fn the_trace_tells_the_story_the_tests_rely_on() {
    let decisions = default_decisions();
    let races: Vec<bool> = decisions.iter().map(|d| d.race == Race::Race).collect();
    // node2 races when the key expires (nobody probed) and when node3 does not answer;
    // it stands down for node1's and node3's leases and for node3 when node3 is ahead.
    assert_eq!(
        races,
        [false, false, false, true, false, true, false, false],
        "{decisions:#?}"
    );
    assert!(
        matches!(&decisions[4].race, Race::StandDown(why) if why.contains("node3")),
        "{:?}",
        decisions[4]
    );
}

// ---------------------------------------------------------------- check

#[test]
fn check_describes_the_embedded_default_without_a_configuration_file() {
    let out = policy("check", &["default"]);
    assert_eq!(out.code, Some(0), "{out}");
    let field = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .map(|l| l[key.len()..].trim().to_string())
            .unwrap_or_else(|| panic!("no {key} line\n{out}"))
    };
    assert_eq!(field("policy"), "default");
    assert_eq!(field("version"), "0.1.0");
    assert!(field("description").contains("Patroni"), "{out}");
    assert_eq!(field("contract"), "pgwarden:policy@0.1.0");
    assert_eq!(field("source"), "embedded default");
    assert_eq!(
        field("size"),
        format!("{} bytes", DEFAULT_POLICY_COMPONENT.len())
    );
    assert_eq!(field("sha256"), sha256_hex(DEFAULT_POLICY_COMPONENT));
    for name in [
        "pgwarden:policy/host@0.1.0",
        "pgwarden:policy/types@0.1.0",
        "pgwarden:policy/decider@0.1.0",
    ] {
        assert!(out.stdout.contains(name), "{name} not listed\n{out}");
    }
    assert!(field("exports").starts_with("pgwarden:policy/decider@0.1.0"));
    assert!(field("sample").contains("race: race"), "{out}");
    assert!(
        out.stdout.contains("ok: the agent can load and call"),
        "{out}"
    );
}

#[test]
fn check_uses_the_agents_limits_unless_told_otherwise() {
    let out = run(&["policy", "check", "default"]);
    assert!(
        out.stdout
            .contains("limits       fuel 50000000, memory 16777216 bytes, timeout 20ms"),
        "{out}"
    );
    let out = policy(
        "check",
        &["default", "--fuel", "123456", "--memory-mb", "4"],
    );
    assert!(
        out.stdout
            .contains("limits       fuel 123456, memory 4194304 bytes, timeout 10s"),
        "{out}"
    );
}

#[test]
fn check_prints_a_guests_metadata_size_and_digest_and_verifies_a_given_digest() {
    let path = guest("zone-aware");
    let bytes = std::fs::read(&path).expect("read the zone-aware component");
    let digest = sha256_hex(&bytes);
    let out = policy("check", &[&path]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("policy       zone-aware\n"), "{out}");
    assert!(
        out.stdout
            .contains("description  Patroni's rules, preferring"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("source       {path}\n")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("size         {} bytes\n", bytes.len())),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("sha256       {digest}\n")),
        "{out}"
    );

    let prefixed = format!("sha256:{}", digest.to_uppercase());
    let out = policy("check", &[&path, "--sha256", &prefixed]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains(&format!("sha256       {digest} (matches --sha256)")),
        "{out}"
    );

    let wrong = "0".repeat(64);
    let out = policy("check", &[&path, "--sha256", &wrong]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr.contains(&wrong) && out.stderr.contains(&digest),
        "{out}"
    );
}

#[test]
fn check_refuses_a_wasi_importing_guest_and_names_the_import() {
    let path = guest("wasi-import");
    let out = policy("check", &[&path]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.starts_with("error: policy "), "{out}");
    assert!(out.stderr.contains(&path), "{out}");
    // The guest asks for 0.2.0; wasm-component-ld may merge it to a later 0.2.x.
    assert!(
        out.stderr.contains("imports wasi:random/random@0.2."),
        "{out}"
    );
    assert!(out.stderr.contains("outside pgwarden:policy"), "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
}

#[test]
fn check_refuses_bytes_that_are_not_a_component() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"\0asm but not really").expect("write junk");
    let out = policy("check", &[&path.display().to_string()]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("compiling the component"), "{out}");

    let missing = dir.path().join("missing.wasm").display().to_string();
    let out = policy("check", &[&missing]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains(&missing), "{out}");
    assert!(out.stderr.contains("No such file"), "{out}");
}

#[test]
fn check_reports_a_guest_that_loads_but_fails_its_sample_call() {
    let out = policy("check", &[&guest("trap")]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("policy       trap\n"), "{out}");
    assert!(out.stdout.contains("FAILED (trap)"), "{out}");
    assert!(out.stderr.contains("sample call failed"), "{out}");
}

// ---------------------------------------------------------------- test

#[test]
fn test_replays_every_record_and_finds_the_recorded_decisions() {
    let (_dir, trace) = trace();
    let out = policy("test", &["default", "--trace", &trace]);
    assert_eq!(out.code, Some(0), "{out}");
    let lines = call_lines(&out.stdout);
    let events = events();
    assert_eq!(lines.len(), events.len(), "one line per record\n{out}");
    for (i, (line, (event, view))) in lines.iter().zip(&events).enumerate() {
        assert!(
            line.starts_with(&format!("#{} {} {}", i + 1, view.me, event.kind())),
            "{line}"
        );
        assert!(line.contains("| by default |"), "{line}");
        assert!(line.ends_with("| recorded: same"), "{line}");
    }
    assert!(
        lines[1].starts_with("#2 node2 lag-exceeded(node3): race: stand-down (node1 holds"),
        "{out}"
    );
    assert!(
        lines[4].starts_with("#5 node2 election: race: stand-down (node3 is ahead"),
        "{out}"
    );
    assert!(
        lines[5].starts_with("#6 node2 election: race: race | preference: [node1, node3, node2]"),
        "{out}"
    );
    assert!(
        out.stdout.contains(
            "8 calls: 0 differ from the recorded decisions, 0 failures (the default decided \
             instead)"
        ),
        "{out}"
    );
}

#[test]
fn test_says_where_a_policy_departs_from_the_recording() {
    let (_dir, trace) = trace();
    let out = policy("test", &[&guest("always-promote"), "--trace", &trace]);
    assert_eq!(out.code, Some(0), "{out}");
    let lines = call_lines(&out.stdout);
    let mut differ = 0;
    for ((line, (event, view)), recorded) in lines.iter().zip(events()).zip(default_decisions()) {
        assert!(
            line.contains("race: race | preference: [node2] | fence: none | sync: keep"),
            "{line}"
        );
        let fields = decision_differences(&recorded, &AlwaysPromote::decide(&event, &view));
        if fields.is_empty() {
            assert!(line.ends_with("recorded: same"), "{line}");
        } else {
            differ += 1;
            assert!(
                line.ends_with(&format!("recorded: differs ({})", fields.join(", "))),
                "{line}"
            );
        }
    }
    assert!(differ > 0);
    // The recorded values of a differing field follow the line.
    assert!(
        out.stdout
            .contains("    recorded race: stand-down (node3 is ahead"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "8 calls: {differ} differ from the recorded decisions, 0 failures"
        )),
        "{out}"
    );
}

#[test]
fn test_shows_the_fallback_and_its_error_when_the_policy_fails() {
    let (_dir, trace) = trace();
    let out = policy("test", &[&guest("trap"), "--trace", &trace]);
    assert_eq!(out.code, Some(1), "a failing policy fails the test\n{out}");
    let lines = call_lines(&out.stdout);
    assert_eq!(lines.len(), 8, "{out}");
    for line in &lines {
        // The native default decided, as the trace recorded.
        assert!(
            line.contains("| FAILED (trap), the default decided | recorded: same"),
            "{line}"
        );
    }
    let errors = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("    error: policy trap: the call trapped"))
        .count();
    assert_eq!(errors, 8, "{out}");
    assert!(
        out.stdout
            .contains("8 calls: 0 differ from the recorded decisions, 8 failures"),
        "{out}"
    );
}

#[test]
fn test_with_json_prints_one_document() {
    let (_dir, trace) = trace();
    let out = policy(
        "test",
        &[&guest("always-promote"), "--trace", &trace, "--json"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(doc["policy"]["name"], "always-promote");
    let calls = doc["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 8);
    assert_eq!(calls[4]["index"], 5);
    assert_eq!(calls[4]["kind"], "election");
    assert_eq!(calls[4]["me"], "node2");
    assert_eq!(calls[4]["decision"]["race"], "race");
    assert_eq!(calls[4]["fell_back"], false);
    assert!(calls[4]["error"].is_null());
    assert_eq!(calls[4]["recorded"]["same"], false);
    assert_eq!(calls[4]["recorded"]["differences"][0], "race");
    assert!(calls[4]["recorded"]["decision"]["race"]["stand-down"]
        .as_str()
        .is_some_and(|why| why.contains("node3")));
    assert_eq!(doc["summary"]["calls"], 8);
    assert_eq!(doc["summary"]["failures"], 0);
}

#[test]
fn test_reports_a_bad_trace_line_with_its_file_and_line() {
    let (dir, trace) = trace();
    let bad = dir.path().join("bad.jsonl");
    let first = std::fs::read_to_string(&trace)
        .expect("read the trace")
        .lines()
        .next()
        .expect("a record")
        .to_string();
    std::fs::write(&bad, format!("{first}\n\n{{\"event\": \"tick\"}}\n")).expect("write");
    let out = policy("test", &["default", "--trace", &bad.display().to_string()]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr
            .contains(&format!("trace {}:3: not a trace record", bad.display())),
        "{out}"
    );

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").expect("write");
    let out = policy(
        "test",
        &["default", "--trace", &empty.display().to_string()],
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("no records to replay"), "{out}");
}

// ---------------------------------------------------------------- diff

#[test]
fn diff_prints_the_events_where_always_promote_races_and_the_default_does_not() {
    let (_dir, trace) = trace();
    let promote = guest("always-promote");
    let out = policy("diff", &["default", &promote, "--trace", &trace]);
    assert_eq!(out.code, Some(0), "differences alone exit 0\n{out}");
    let expected: BTreeSet<usize> = events()
        .iter()
        .zip(default_decisions())
        .enumerate()
        .filter(|(_, ((event, view), default))| {
            !decision_differences(default, &AlwaysPromote::decide(event, view)).is_empty()
        })
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(call_numbers(&out.stdout), expected, "{out}");
    // Where the default stands down, always-promote races.
    for (i, default) in default_decisions().iter().enumerate() {
        let header = call_lines(&out.stdout)
            .into_iter()
            .find(|l| l.starts_with(&format!("#{} ", i + 1)));
        if let Race::StandDown(_) = default.race {
            let header = header.unwrap_or_else(|| panic!("#{} not reported\n{out}", i + 1));
            assert!(header.contains("differs in race"), "{header}");
        } else if let Some(header) = header {
            assert!(!header.contains("differs in race"), "{header}");
        }
    }
    assert!(
        out.stdout.contains(
            "#5 node2 election: differs in race, preference\n    race          A: stand-down \
             (node3 is ahead"
        ),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("                  B: race\n    preference    A: [node1, node3, node2]\n                  B: [node2]\n"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "8 calls: {} decided differently; failures (the default decided instead): A 0, B 0",
            expected.len()
        )),
        "{out}"
    );

    let out = policy(
        "diff",
        &["default", &promote, "--trace", &trace, "--exit-code"],
    );
    assert_eq!(out.code, Some(1), "--exit-code with differences\n{out}");
}

#[test]
fn diff_prints_only_the_events_that_differ() {
    let (_dir, trace) = trace();
    let out = policy(
        "diff",
        &["default", "default", "--trace", &trace, "--exit-code"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(call_lines(&out.stdout).is_empty(), "{out}");
    assert!(out.stdout.contains("no differences"), "{out}");

    // zone-aware waits for the failed leader's zone where the default stands down, and
    // agrees elsewhere: the diff lists exactly the calls `test` finds differing from the
    // recording (which the default made).
    let zone = guest("zone-aware");
    let diff = policy("diff", &["default", &zone, "--trace", &trace]);
    assert_eq!(diff.code, Some(0), "{diff}");
    let test = policy("test", &[&zone, "--trace", &trace]);
    assert_eq!(test.code, Some(0), "{test}");
    let differing: BTreeSet<usize> = call_lines(&test.stdout)
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains("recorded: differs"))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(call_numbers(&diff.stdout), differing, "{diff}\n{test}");
    assert!(
        !differing.is_empty() && differing.len() < 8,
        "{diff}\n{test}"
    );
    assert!(
        diff.stdout.contains("#5 node2 election: differs in race"),
        "{diff}"
    );
    assert!(diff.stdout.contains("B: wait "), "{diff}");
}

#[test]
fn diff_counts_a_failing_policy_as_an_outcome_difference() {
    let (_dir, trace) = trace();
    let out = policy("diff", &["default", &guest("trap"), "--trace", &trace]);
    assert_eq!(out.code, Some(0), "{out}");
    let lines = call_lines(&out.stdout);
    assert_eq!(lines.len(), 8, "{out}");
    for line in lines {
        // The default decided for the trap: the same decision, a different outcome.
        assert!(line.ends_with("differs in outcome"), "{line}");
    }
    assert!(
        out.stdout
            .contains("    outcome       A: answered\n                  B: failed, the default decided: policy trap: the call trapped"),
        "{out}"
    );
    assert!(out.stdout.contains("A 0, B 8"), "{out}");
}

// ---------------------------------------------------------------- new

/// A directory inside this checkout (under `target/`), where `policy new` finds the SDK.
fn dir_in_checkout() -> tempfile::TempDir {
    let parent = manifest_dir().join("target/ctl-policy-tests");
    std::fs::create_dir_all(&parent).expect("create target/ctl-policy-tests");
    tempfile::tempdir_in(parent).expect("temp dir in the checkout")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The path dependency `name = { path = "..." }` of the manifest at `crate_dir`, resolved.
fn dependency(crate_dir: &Path, name: &str) -> (String, PathBuf) {
    let manifest = read(&crate_dir.join("Cargo.toml"));
    let line = manifest
        .lines()
        .find(|l| l.starts_with(&format!("{name} = {{ path = ")))
        .unwrap_or_else(|| panic!("no path dependency {name}\n{manifest}"));
    let path = line
        .split('"')
        .nth(1)
        .unwrap_or_else(|| panic!("no path in {line}"))
        .to_string();
    let resolved = crate_dir
        .join(&path)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{path} from {}: {e}", crate_dir.display()));
    (path, resolved)
}

#[test]
fn new_creates_a_crate_that_depends_on_the_checkouts_sdk_by_relative_path() {
    let dir = dir_in_checkout();
    let crate_dir = dir.path().join("site-rules");
    let out = run(&[
        "policy",
        "new",
        "site-rules",
        "--dir",
        &crate_dir.display().to_string(),
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    for file in [
        "Cargo.toml",
        ".cargo/config.toml",
        "src/lib.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} missing\n{out}");
        assert!(out.stdout.contains(&format!("  {file}\n")), "{out}");
    }

    let manifest = read(&crate_dir.join("Cargo.toml"));
    assert!(
        manifest.contains("[package]\nname = \"site-rules\"\n"),
        "{manifest}"
    );
    assert!(
        manifest.contains("crate-type = [\"cdylib\", \"rlib\"]"),
        "{manifest}"
    );
    assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
    assert!(
        manifest.contains("[target.'cfg(target_arch = \"wasm32\")'.dependencies]"),
        "{manifest}"
    );
    assert!(manifest.contains("features = [\"guest\"]"), "{manifest}");
    let root = manifest_dir().canonicalize().expect("checkout");
    let (sdk, resolved) = dependency(&crate_dir, "pgwarden-policy");
    assert!(
        sdk.starts_with("../"),
        "relative inside the checkout: {sdk}"
    );
    assert_eq!(resolved, root.join("policies/sdk"));
    let (_, resolved) = dependency(&crate_dir, "pgwarden-policy-default");
    assert_eq!(resolved, root.join("policies/default"));
    assert!(
        out.stdout.contains("inside the pgwarden workspace"),
        "{out}"
    );

    let config = read(&crate_dir.join(".cargo/config.toml"));
    assert!(
        config.contains("[target.wasm32-unknown-unknown]\nlinker = \"wasm-component-ld\""),
        "{config}"
    );
    let lib = read(&crate_dir.join("src/lib.rs"));
    assert!(lib.contains("pub struct SiteRules;"), "{lib}");
    assert!(lib.contains("name: \"site-rules\".into()"), "{lib}");
    assert!(
        lib.contains("pgwarden_policy::export_policy!(SiteRules);"),
        "{lib}"
    );
    assert!(lib.contains("#[cfg(test)]"), "{lib}");
    assert!(!lib.contains("{{"), "an unfilled placeholder\n{lib}");
    let readme = read(&crate_dir.join("README.md"));
    assert!(
        readme.contains("cargo build --target wasm32-unknown-unknown --release"),
        "{readme}"
    );
    assert!(
        readme.contains("target/wasm32-unknown-unknown/release/site_rules.wasm"),
        "{readme}"
    );
}

#[test]
fn new_outside_a_checkout_uses_sdk_or_explained_placeholders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = manifest_dir().canonicalize().expect("checkout");

    let with_sdk = dir.path().join("a");
    let sdk = root.join("policies/sdk").display().to_string();
    let out = run(&[
        "policy",
        "new",
        "with-sdk",
        "--dir",
        &with_sdk.display().to_string(),
        "--sdk",
        &sdk,
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        dependency(&with_sdk, "pgwarden-policy").1,
        root.join("policies/sdk")
    );
    assert_eq!(
        dependency(&with_sdk, "pgwarden-policy-default").1,
        root.join("policies/default")
    );
    assert!(out.stderr.is_empty(), "{out}");

    // The checkout itself is accepted as --sdk too.
    let with_root = dir.path().join("b");
    let out = run(&[
        "policy",
        "new",
        "with-root",
        "--dir",
        &with_root.display().to_string(),
        "--sdk",
        &root.display().to_string(),
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        dependency(&with_root, "pgwarden-policy").1,
        root.join("policies/sdk")
    );

    let bare = dir.path().join("c");
    let out = run(&[
        "policy",
        "new",
        "bare",
        "--dir",
        &bare.display().to_string(),
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.starts_with("warning: no pgwarden checkout"),
        "{out}"
    );
    let manifest = read(&bare.join("Cargo.toml"));
    assert!(
        manifest.contains("pgwarden-policy = { path = \"PATH/TO/pgwarden/policies/sdk\" }"),
        "{manifest}"
    );
    assert!(manifest.contains("are placeholders"), "{manifest}");

    let out = run(&[
        "policy",
        "new",
        "nowhere",
        "--dir",
        &dir.path().join("d").display().to_string(),
        "--sdk",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("neither a pgwarden checkout"), "{out}");
    assert!(!dir.path().join("d").exists());
}

#[test]
fn new_refuses_an_existing_directory_and_an_invalid_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let existing = dir.path().join("taken");
    std::fs::create_dir(&existing).expect("create");
    let out = run(&[
        "policy",
        "new",
        "taken",
        "--dir",
        &existing.display().to_string(),
    ]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("already exists"), "{out}");
    assert_eq!(
        std::fs::read_dir(&existing).expect("read").count(),
        0,
        "nothing written into it"
    );

    for (name, why) in [
        ("2fast", "must start with an ASCII letter"),
        ("my policy", "' ' is not allowed"),
        ("fn", "Rust keyword"),
        ("pgwarden-policy", "crate the policy needs"),
    ] {
        let target = dir.path().join("fresh");
        let out = run(&[
            "policy",
            "new",
            name,
            "--dir",
            &target.display().to_string(),
        ]);
        assert_eq!(out.code, Some(2), "{name}: {out}");
        assert!(
            out.stderr
                .contains(&format!("{name:?} is not a valid policy crate name")),
            "{out}"
        );
        assert!(out.stderr.contains(why), "{name}: {out}");
        assert!(!target.exists(), "{name}: created anyway");
    }
}

/// Run cargo (under `flock $PGWARDEN_CARGO_LOCK` when set, as `support/guests.rs` does) in
/// `dir` with the build environment of this test removed.
fn cargo(dir: &Path, args: &[&str]) {
    let mut command =
        guests::guest_build::nested_cargo(dir, std::env::var_os("PGWARDEN_CARGO_LOCK"));
    command.args(args);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({})\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The whole authoring loop, once: `new`, the crate's formatting and native tests, the README's build
/// command, then `check` and `test` on the component it built. Slow: it builds the SDK's
/// glue for wasm32 (into `target/policy-template`, kept between runs).
#[test]
fn a_new_crate_passes_its_tests_and_builds_a_component_the_agent_accepts() {
    let dir = dir_in_checkout();
    let crate_dir = dir.path().join("first-policy");
    let out = run(&[
        "policy",
        "new",
        "first-policy",
        "--dir",
        &crate_dir.display().to_string(),
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    // The versions this workspace builds with (and has downloaded).
    std::fs::copy(
        manifest_dir().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .expect("copy Cargo.lock");
    let target_dir = manifest_dir().join("target/policy-template");
    let target_dir = target_dir.display().to_string();

    cargo(&crate_dir, &["fmt", "--check"]);
    cargo(
        &crate_dir,
        &["test", "--quiet", "--target-dir", &target_dir],
    );
    cargo(
        &crate_dir,
        &[
            "build",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--release",
            "--target-dir",
            &target_dir,
        ],
    );
    let component = Path::new(&target_dir)
        .join("wasm32-unknown-unknown/release/first_policy.wasm")
        .display()
        .to_string();

    let out = policy("check", &[&component]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("policy       first-policy\n"), "{out}");
    assert!(!out.stdout.contains("wasi"), "a WASI-free component\n{out}");

    // Without `min_leaderless_ms`, it decides as the default: the recording, exactly.
    let (_trace_dir, trace) = trace();
    let out = policy("test", &[&component, "--trace", &trace]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains("8 calls: 0 differ from the recorded decisions, 0 failures"),
        "{out}"
    );
}
