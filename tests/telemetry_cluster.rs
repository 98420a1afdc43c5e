//! Traces on real clusters: the agents export OpenTelemetry spans over OTLP/gRPC to an
//! in-process collector (`fake-opentelemetry-collector`), and a dead collector changes
//! nothing but a counter. Run with `cargo test --test telemetry_cluster`.

use pgwarden_testkit as support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use support::shared::{exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT};
use support::{wait_check, Cluster};

/// A collector on a free loopback port, drained all the time (its channel holds 64 spans,
/// and a full one would stall the agents' exports) into `spans`.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    stop: Arc<AtomicBool>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start() -> Collector {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopping) = (spans.clone(), stop.clone());
        let drain = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut server = FakeCollectorServer::start().await.expect("collector");
                ready_tx
                    .send(server.endpoint())
                    .expect("report the endpoint");
                while !stopping.load(Ordering::Relaxed) {
                    let batch = server.exported_spans(1, Duration::from_millis(300)).await;
                    into.lock().expect("spans").extend(batch);
                }
            });
        });
        let endpoint = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the collector starts");
        Collector {
            endpoint,
            spans,
            stop,
            drain: Some(drain),
        }
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().expect("spans").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
    }
}

fn telemetry_section(endpoint: &str) -> String {
    format!(
        "telemetry:\n  otlp:\n    endpoint: {endpoint}\n    timeout_ms: 2000\n  \
         decisions:\n    file: decisions.jsonl\n"
    )
}

/// Whether the span's attribute `key` holds the string `value` (the collector keeps
/// attribute values as their Debug text).
fn has(span: &ExportedSpan, key: &str, value: &str) -> bool {
    span.attributes
        .get(key)
        .is_some_and(|v| v.contains(&format!("\"{value}\"")))
}

/// The value of a counter on node `i`'s `/metrics`.
fn counter(c: &Cluster, i: usize, name: &str) -> Option<u64> {
    let answer = c.http(i, "GET", "/metrics", None).ok()?;
    answer
        .body
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A failover in a three-node cluster, traced: the promoted node's `pg.promote` span (done, lasting as long as the
/// promotion) is a child of the input that decided it, and the transition to primary (with
/// its `Why`) a child of the input that reported the promotion done; bootstrap and the
/// lease renewals are spans too, and nothing was dropped.
#[test]
fn a_failover_is_traced_from_the_deciding_input_to_the_promotion() {
    let _guard = exclusive();
    let collector = Collector::start();
    let mut c = Cluster::builder()
        .scope("pgwarden-traces")
        .nodes(3)
        .synchronous_mode(false)
        .section(&telemetry_section(&collector.endpoint))
        .section(
            "log:\n  type: json\n  format: [asctime, {levelname: level}, message, name]\n  \
             static_fields: {service: pgwarden-test}\n",
        )
        .start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let standbys: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    wait_check(Duration::from_secs(30), "spans from both agents", || {
        let spans = collector.spans();
        let from = |i: usize| {
            spans
                .iter()
                .any(|s| s.name.starts_with("input ") && has(s, "pgwarden.member", c.name(i)))
        };
        (0..3)
            .all(from)
            .then_some(())
            .ok_or_else(|| format!("{} spans so far", spans.len()))
    });
    wait_check(
        Duration::from_secs(20),
        "the bootstrap and lease renewals as spans",
        || {
            let spans = collector.spans();
            let bootstrap = spans
                .iter()
                .any(|s| s.name == "pg.bootstrap" && has(s, "pgwarden.outcome", "done"));
            let renewal = spans.iter().any(|s| s.name == "dcs.lease.renew");
            if bootstrap && renewal {
                return Ok(());
            }
            let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            names.sort();
            names.dedup();
            Err(format!(
                "bootstrap {bootstrap}, renewal {renewal}; names: {names:?}"
            ))
        },
    );

    // Only a streaming standby can take over.
    wait_check(Duration::from_secs(60), "the standbys streaming", || {
        for &i in &standbys {
            let p = c.patroni(i).ok_or("no /patroni answer")?;
            if p["role"] != "replica" || p["replication_state"] != "streaming" {
                return Err(format!(
                    "{}: role {} state {}",
                    c.name(i),
                    p["role"],
                    p["replication_state"]
                ));
            }
        }
        Ok(())
    });
    c.kill_node(leader);
    let other = c.wait_for_leader(FAILOVER_TIMEOUT);
    assert!(standbys.contains(&other), "a standby took over");
    let third = standbys
        .into_iter()
        .find(|&i| i != other)
        .expect("three nodes");
    let by_id = |spans: &[ExportedSpan]| -> HashMap<String, ExportedSpan> {
        spans
            .iter()
            .map(|s| (s.span_id.clone(), s.clone()))
            .collect()
    };
    let promote = wait_check(Duration::from_secs(30), "the promotion's span", || {
        let spans = collector.spans();
        spans
            .iter()
            .find(|s| s.name == "pg.promote")
            .cloned()
            .ok_or_else(|| format!("{} spans, no pg.promote yet", spans.len()))
    });
    let spans = collector.spans();
    let index = by_id(&spans);
    assert!(has(&promote, "pgwarden.outcome", "done"), "{promote:?}");
    assert!(
        promote.end_time_unix_nano > promote.start_time_unix_nano,
        "the span lasts as long as the promotion"
    );
    let input = index
        .get(&promote.parent_span_id)
        .unwrap_or_else(|| panic!("pg.promote's parent was exported: {promote:?}"));
    assert!(input.name.starts_with("input "), "{input:?}");
    assert!(
        has(input, "pgwarden.member", c.name(other)),
        "the promoted node decided it: {input:?}"
    );
    // The promotion's end is an input of its own (`pg_action_finished`), whose child is the
    // transition to primary with its Why.
    let promoted = wait_check(
        Duration::from_secs(20),
        "the transition to primary, as a child of the promoted node's input",
        || {
            let spans = collector.spans();
            let index = by_id(&spans);
            spans
                .iter()
                .find(|s| {
                    has(s, "pgwarden.to", "primary")
                        && s.start_time_unix_nano >= promote.start_time_unix_nano
                        && index.get(&s.parent_span_id).is_some_and(|p| {
                            p.name == "input pg_action_finished"
                                && has(p, "pgwarden.member", c.name(other))
                        })
                })
                .cloned()
                .ok_or_else(|| {
                    let mut names: Vec<&str> = spans
                        .iter()
                        .filter(|s| s.name.contains(" -> "))
                        .map(|s| s.name.as_str())
                        .collect();
                    names.dedup();
                    format!("transitions so far: {names:?}")
                })
        },
    );
    assert!(
        has(&promoted, "pgwarden.from", "promoting")
            || promoted.attributes.contains_key("pgwarden.from"),
        "{promoted:?}"
    );
    assert!(
        promoted.attributes.contains_key("pgwarden.why"),
        "the transition names its Why: {promoted:?}"
    );
    election_is_traced(&collector, c.name(other));
    log_lines_lead_to_their_decision_and_trace(&c, other, &collector);
    failover_attributes_are_shared(&collector, c.name(other), c.name(third));
    decisions_explain_the_failover(&c, other);
    assert_eq!(
        counter(&c, other, "pgwarden_telemetry_spans_dropped_total"),
        Some(0),
        "nothing dropped"
    );
    let exported = counter(&c, other, "pgwarden_telemetry_spans_exported_total").unwrap_or(0);
    assert!(exported > 10, "{exported} spans exported");
}

/// The promoted node's election in its spans: the policy's decision is a child of the
/// `policy.consult` effect (who decided, what, in how long), the answer's input links to
/// that effect, and the gate's verdict on the race is a child of that input.
fn election_is_traced(collector: &Collector, member: &str) {
    // Every candidate's gate accepts its own race (the loser then loses the acquisition):
    // the promoted node's verdict, and the spans it links to, arriving batch by batch.
    let (spans, consult) = wait_check(Duration::from_secs(20), "the election's spans", || {
        let spans = collector.spans();
        let index: HashMap<&str, &ExportedSpan> =
            spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
        let answer = spans
            .iter()
            .filter(|s| s.name == "gate race" && has(s, "pgwarden.gate.outcome", "accepted"))
            .filter_map(|gate| index.get(gate.parent_span_id.as_str()))
            .find(|input| has(input, "pgwarden.member", member))
            .ok_or_else(|| format!("{} spans, no accepted race of {member} yet", spans.len()))?;
        assert_eq!(answer.name, "input policy_decided", "{answer:?}");
        let consult = answer
            .links
            .iter()
            .find_map(|l| index.get(l.span_id.as_str()))
            .ok_or_else(|| format!("the linked effect not exported yet: {answer:?}"))?;
        let consult = (*consult).clone();
        Ok::<_, String>((spans.clone(), consult))
    });
    let consult = &consult;
    assert_eq!(consult.name, "policy.consult", "{consult:?}");
    assert!(has(consult, "pgwarden.outcome", "decided"), "{consult:?}");
    let decision = spans
        .iter()
        .find(|s| s.name == "policy.decide" && s.parent_span_id == consult.span_id)
        .unwrap_or_else(|| panic!("the policy's decision under {consult:?}"));
    assert!(
        has(decision, "pgwarden.policy.event", "election"),
        "{decision:?}"
    );
    let said = &decision.attributes["pgwarden.policy.decision"];
    assert!(said.contains("race"), "{decision:?}");
    for key in [
        "pgwarden.policy",
        "pgwarden.policy.sha256",
        "pgwarden.policy.fuel",
        "pgwarden.policy.latency_us",
    ] {
        assert!(decision.attributes.contains_key(key), "{key}: {decision:?}");
    }
}

/// One query finds the failover on every node: the third node's input spans, once it sees
/// the new leader, carry the same leader, leader key revision and lease as the new
/// leader's own spans after it took the key.
fn failover_attributes_are_shared(collector: &Collector, leader: &str, third: &str) {
    let attribute = |s: &ExportedSpan, key: &str| s.attributes.get(key).cloned();
    let (on_leader, on_third) = wait_check(
        Duration::from_secs(20),
        "the new leader's key on both nodes' spans",
        || {
            let spans = collector.spans();
            let keyed = |member: &str| {
                spans
                    .iter()
                    .filter(|s| s.name.starts_with("input ") && has(s, "pgwarden.member", member))
                    .rfind(|s| has(s, "pgwarden.leader", leader))
                    .cloned()
            };
            match (keyed(leader), keyed(third)) {
                (Some(a), Some(b)) => Ok((a, b)),
                (a, b) => Err(format!("leader's {}, third's {}", a.is_some(), b.is_some())),
            }
        },
    );
    for key in [
        "pgwarden.leader.revision",
        "pgwarden.leader.lease",
        "pgwarden.scope",
    ] {
        let (a, b) = (attribute(&on_leader, key), attribute(&on_third, key));
        assert!(a.is_some(), "{key} on the leader's span: {on_leader:?}");
        assert_eq!(a, b, "{key} is the same on both nodes' spans");
    }
}

/// The promoted node's log (`log.type: json`, renamed and static fields) has its transition
/// to primary as a JSON line naming the decision (the one `GET /decisions` has with that
/// transition) and the trace (one the collector received).
fn log_lines_lead_to_their_decision_and_trace(c: &Cluster, leader: usize, collector: &Collector) {
    let log = std::fs::read_to_string(c.log_path(leader)).expect("agent log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 5, "the log is JSON lines: {log}");
    let promoted = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("state transition"))
                && l["to"] == "primary"
        })
        .unwrap_or_else(|| panic!("the transition to primary in {log}"));
    assert_eq!(promoted["level"], "INFO", "{promoted}");
    assert_eq!(promoted["service"], "pgwarden-test", "{promoted}");
    assert_eq!(promoted["name"], "pgwarden.runtime.turn", "{promoted}");
    assert!(promoted["asctime"].is_string(), "{promoted}");
    let decision = promoted["decision"]
        .as_u64()
        .unwrap_or_else(|| panic!("{promoted}"));
    let answer = c
        .http_json(leader, "/decisions?kind=transition&limit=1000")
        .expect("GET /decisions");
    let named = answer["decisions"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == decision))
        .unwrap_or_else(|| panic!("decision {decision} in {answer}"));
    assert!(
        named["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(|s| s["fields"]["to"] == "primary")),
        "{named}"
    );
    let trace_id = promoted["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{promoted}"));
    assert!(
        collector.spans().iter().any(|s| s.trace_id == trace_id),
        "the line's trace {trace_id} was exported"
    );
}

/// The decision log tells the same story without a collector: `pgwardenctl why` on the
/// new leader sums the failover up in one line, `GET /decisions` links each input to the
/// effect behind it, and the file has it too, with no secret anywhere.
fn decisions_explain_the_failover(c: &Cluster, leader: usize) {
    let name = c.name(leader);
    let why = wait_check(Duration::from_secs(30), "pgwardenctl why", || {
        let out = c.ctl(&["why", name, "--episodes", "20"]);
        if !out.success() {
            return Err(format!("{}{}", out.stdout, out.stderr));
        }
        let summary = out.stdout.lines().find(|l| {
            l.starts_with(&format!("{name} became primary at "))
                && l.contains("; policy ")
                && l.contains(" said race")
                && l.contains("gate accepted race")
                && l.contains("promote took ")
        });
        match summary {
            Some(_) => Ok(out.stdout),
            None => Err(out.stdout),
        }
    });
    assert!(why.contains("pg.promote: done ("), "{why}");
    let answer = c
        .http_json(leader, "/decisions?kind=pg.promote")
        .expect("GET /decisions");
    let promotions = answer["decisions"].as_array().expect("decisions");
    let promotion = promotions.last().unwrap_or_else(|| panic!("{answer}"));
    let promote = promotion["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == "pg.promote"))
        .unwrap_or_else(|| panic!("{promotion}"));
    assert_eq!(promote["fields"]["outcome"], "done", "{promotion}");
    assert!(
        promote["duration_us"].as_u64().is_some_and(|us| us > 0),
        "{promotion}"
    );
    // Back along the causes to the election: every link names a decision still kept.
    let all = c
        .http_json(leader, "/decisions?limit=1000")
        .expect("GET /decisions");
    let decisions = all["decisions"].as_array().expect("decisions");
    let by_id = |id: &serde_json::Value| decisions.iter().find(|d| &d["id"] == id);
    let mut chain = vec![promotion.clone()];
    while let Some(cause) = chain
        .last()
        .and_then(|d| d["caused_by"]["decision"].as_u64())
    {
        let parent = by_id(&cause.into()).unwrap_or_else(|| panic!("#{cause} kept: {all}"));
        chain.push(parent.clone());
    }
    let inputs: Vec<&str> = chain
        .iter()
        .rev()
        .filter_map(|d| d["input"].as_str())
        .collect();
    assert!(
        inputs.contains(&"policy_decided") && inputs.contains(&"peers_probed"),
        "the promotion's chain goes back to the election: {inputs:?}"
    );
    let file = std::fs::read_to_string(c.node_dir(leader).join("decisions.jsonl"))
        .expect("the decision log file");
    assert!(
        file.contains("\"pg.promote\""),
        "the file has the promotion"
    );
    for secret in [
        support::cluster::SUPERUSER_PASSWORD,
        support::cluster::REPLICATION_PASSWORD,
        support::cluster::REWIND_PASSWORD,
    ] {
        assert!(
            !file.contains(secret) && !why.contains(secret),
            "a password leaked"
        );
    }
}

/// A collector that is not there: the cluster bootstraps as without tracing, the failures
/// are counted, and the log says so once.
#[test]
fn a_dead_collector_costs_a_counter_and_one_warning() {
    let _guard = exclusive();
    let port = support::process::free_port();
    let c = Cluster::builder()
        .scope("pgwarden-traces-dead")
        .nodes(1)
        .synchronous_mode(false)
        .section(&telemetry_section(&format!("http://127.0.0.1:{port}")))
        .section("log:\n  dir: logs\n  mode: 0600\n  format: '%(levelname)-8s %(message)s'\n")
        .start();
    assert_eq!(c.wait_for_leader(BOOTSTRAP_TIMEOUT), 0);
    // The log goes to `log.dir` (relative to the agent's directory), not to standard output.
    let file = c.node_dir(0).join("logs/pgwarden.log");
    wait_check(
        Duration::from_secs(30),
        "export failures counted",
        || match counter(&c, 0, "pgwarden_telemetry_export_failures_total") {
            Some(n) if n >= 2 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let log = std::fs::read_to_string(&file).expect("log.dir's file");
    let warnings = log
        .lines()
        .filter(|l| l.contains("telemetry: exporting spans failed"))
        .count();
    assert!(
        log.lines()
            .any(|l| l.starts_with("WARNING  telemetry: exporting spans failed")),
        "the template's padded level: {log}"
    );
    let stdout = std::fs::read_to_string(c.log_path(0)).unwrap_or_default();
    assert!(
        !stdout.contains("pgwarden started"),
        "nothing logged to standard output: {stdout}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file)
        .expect("log file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "log.mode");
    assert_eq!(
        warnings, 1,
        "one warning for a dead collector, not one per export"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on the collector's port (the fault is real)"
    );
}
