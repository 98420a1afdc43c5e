//! Traces on real clusters: the agents export OpenTelemetry spans over OTLP/gRPC to an
//! in-process collector (`fake-opentelemetry-collector`), and a dead collector changes
//! nothing but a counter. Run with `cargo test --test telemetry_cluster`.

mod support;

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
    format!("telemetry:\n  otlp:\n    endpoint: {endpoint}\n    timeout_ms: 2000\n")
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

/// A failover, traced: the promoted node's `pg.promote` span (done, lasting as long as the
/// promotion) is a child of the input that decided it, and the transition to primary (with
/// its `Why`) a child of the input that reported the promotion done; bootstrap and the
/// lease renewals are spans too, and nothing was dropped.
#[test]
fn a_failover_is_traced_from_the_deciding_input_to_the_promotion() {
    let _guard = exclusive();
    let collector = Collector::start();
    let mut c = Cluster::builder()
        .scope("pgwarden-traces")
        .nodes(2)
        .synchronous_mode(false)
        .section(&telemetry_section(&collector.endpoint))
        .start();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let other = 1 - leader;
    wait_check(Duration::from_secs(30), "spans from both agents", || {
        let spans = collector.spans();
        let from = |i: usize| {
            spans
                .iter()
                .any(|s| s.name.starts_with("input ") && has(s, "pgwarden.member", c.name(i)))
        };
        (from(0) && from(1))
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
    wait_check(Duration::from_secs(60), "the standby streaming", || {
        let p = c.patroni(other).ok_or("no /patroni answer")?;
        (p["role"] == "replica" && p["replication_state"] == "streaming")
            .then_some(())
            .ok_or_else(|| format!("role {} state {}", p["role"], p["replication_state"]))
    });
    c.kill_node(leader);
    assert_eq!(c.wait_for_leader(FAILOVER_TIMEOUT), other);
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
    assert_eq!(
        counter(&c, other, "pgwarden_telemetry_spans_dropped_total"),
        Some(0),
        "nothing dropped"
    );
    let exported = counter(&c, other, "pgwarden_telemetry_spans_exported_total").unwrap_or(0);
    assert!(exported > 10, "{exported} spans exported");
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
        .start();
    assert_eq!(c.wait_for_leader(BOOTSTRAP_TIMEOUT), 0);
    wait_check(
        Duration::from_secs(30),
        "export failures counted",
        || match counter(&c, 0, "pgwarden_telemetry_export_failures_total") {
            Some(n) if n >= 2 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let log = std::fs::read_to_string(c.log_path(0)).expect("log");
    let warnings = log
        .lines()
        .filter(|l| l.contains("telemetry: exporting spans failed"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning for a dead collector, not one per export"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on the collector's port (the fault is real)"
    );
}
