//! schemathesis (PyPI) against the API's own OpenAPI document, on a throwaway cluster of
//! its own: it fires switchovers, failovers, restarts, reinitializations, reloads and
//! configuration patches with generated bodies, over TLS with the credentials, and checks
//! every answer against the document (status codes, content types, bodies, headers), that
//! malformed input is refused with a 4xx, and that protected operations refuse requests
//! without credentials. The cluster must be healthy afterwards: one leader, every member
//! running and replicating, every row intact. Run with `cargo test --test api_fuzz`
//! (`PGWARDEN_FUZZ_EXAMPLES` sets the examples per operation; CI uses the default).

use pgwarden_testkit as support;

use std::time::Duration;

use support::cluster::{API_PASSWORD, API_USER};
use support::process::{run_capture, schemathesis};
use support::shared::{exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT, REJOIN_TIMEOUT};
use support::{wait_check, Cluster};

/// Rows written before the run, read back after it.
const ROWS: i64 = 200;

fn replicating(c: &Cluster, leader: usize) -> Result<(), String> {
    for i in (0..c.len()).filter(|&i| i != leader) {
        let p = c
            .patroni(i)
            .ok_or_else(|| format!("{}: no answer", c.name(i)))?;
        if p["role"] != "replica" || p["replication_state"] != "streaming" {
            return Err(format!(
                "{}: role {} replication_state {}",
                c.name(i),
                p["role"],
                p["replication_state"]
            ));
        }
    }
    Ok(())
}

#[test]
fn schemathesis_finds_no_answer_outside_the_document_and_the_cluster_survives() {
    let _guard = exclusive();
    let c = Cluster::builder()
        .nodes(3)
        .synchronous_mode(false)
        .tls("none")
        .start();
    let pki = c.pki().expect("TLS").clone();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    wait_check(REJOIN_TIMEOUT, "every standby streaming", || {
        replicating(&c, leader)
    });
    c.execute(
        leader,
        &format!(
            "CREATE TABLE fuzz_rows (id int PRIMARY KEY); \
             INSERT INTO fuzz_rows SELECT generate_series(1, {ROWS})"
        ),
    )
    .expect("rows on the leader");

    // The run replaces `/config` with generated documents (PUT takes any object): it is put
    // back afterwards, so the health checks below judge the cluster with its own timing.
    let config = c
        .http(leader, "GET", "/config", None)
        .expect("GET /config")
        .body;
    let examples = std::env::var("PGWARDEN_FUZZ_EXAMPLES").unwrap_or_else(|_| "8".into());
    let workdir = c.node_dir(0).with_file_name("schemathesis");
    std::fs::create_dir_all(&workdir).expect("schemathesis' directory");
    let mut cmd = std::process::Command::new(schemathesis());
    // Its cache (`.schemathesis/`) goes to the throwaway directory, not the checkout.
    cmd.current_dir(&workdir);
    cmd.arg("run")
        .arg(format!("https://{}/openapi.json", c.api_addr(leader)))
        .args(["--checks", "all"])
        // A valid-looking body may still be refused for what it asks (a switchover to a
        // member that does not exist: 412): acceptance is the cluster's call, not the
        // schema's. Every 5xx an operation may answer is in the document, so the status
        // code conformance check is what catches an undocumented server error. The
        // resource checks need links between operations, which this API has none of.
        .args([
            "--exclude-checks",
            "positive_data_acceptance,not_a_server_error,use_after_free,ensure_resource_availability",
        ])
        .args(["--auth", &format!("{API_USER}:{API_PASSWORD}")])
        .arg("--tls-verify")
        .arg(&pki.ca)
        .args(["--max-examples", &examples])
        .args(["--workers", "1", "--seed", "20261207", "--no-color"])
        .args(["--request-timeout", "90", "--generation-database", "none"])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "junit"])
        .arg("--report-dir")
        .arg(workdir.join("report"));
    let out = run_capture(&mut cmd, Duration::from_secs(1200));
    let tail: String = out
        .stdout
        .lines()
        .rev()
        .take(80)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| format!("{l}\n"))
        .collect();
    println!("{tail}");
    assert!(
        out.success(),
        "schemathesis found answers outside the document:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("passed"),
        "schemathesis ran operations: {tail}"
    );

    // The cluster after the storm: one leader, the others streaming, every row there.
    let leader = c.wait_for_leader(FAILOVER_TIMEOUT * 2);
    let restored = c
        .http(leader, "PUT", "/config", Some(&config))
        .expect("PUT /config");
    assert_eq!(restored.status, 200, "/config put back: {}", restored.body);
    wait_check(REJOIN_TIMEOUT * 2, "every standby streaming again", || {
        replicating(&c, leader)
    });
    let rows = c
        .query_scalar(leader, "SELECT count(*) FROM fuzz_rows")
        .expect("the leader answers");
    assert_eq!(rows.as_deref(), Some(ROWS.to_string().as_str()));
    for i in 0..c.len() {
        wait_check(
            REJOIN_TIMEOUT,
            &format!("every row on {}", c.name(i)),
            || {
                c.query_scalar(i, "SELECT count(*) FROM fuzz_rows")?
                    .filter(|n| *n == ROWS.to_string())
                    .map(|_| ())
                    .ok_or_else(|| "not yet".to_string())
            },
        );
    }
}
