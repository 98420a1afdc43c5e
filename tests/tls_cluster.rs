//! A cluster that speaks TLS everywhere, as production runs it: etcd serves clients over
//! TLS only and demands a client certificate its CA signed (`--client-cert-auth`); every
//! agent's REST API speaks TLS with `verify_client: optional` and Basic authentication; the
//! agents, patronictl and pgwardenctl show a client certificate. etcd's authentication is
//! on: agents and tools log in with a user allowed under the cluster's namespace only. The
//! agents' own etcd certificate is short-lived and renewed during the run (SIGHUP), then
//! every etcd member is restarted once it has expired. One cluster carries every check
//! (bootstrap, the member keys, refusals, HAProxy's `check-ssl`, the real patronictl, the
//! certificate renewal, failover and rejoin) to keep CI short. Run with
//! `cargo test --test tls_cluster`.

use pgwarden_testkit as support;

use std::time::Duration;

use support::haproxy::Haproxy;
use support::http::{request_with, ApiTls};
use support::process::{run_capture, scrub_env, Captured};
use support::shared::{exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT, REPLICATION_TIMEOUT};
use support::tls::presented_certificate;
use support::{wait_check, Cluster};

/// How long the agents' first etcd client certificate is valid: long enough for every agent
/// to connect, short enough to expire during the run.
const AGENT_ETCD_CERT_LIFETIME: Duration = Duration::from_secs(60);

/// How many lines of node `i`'s log contain `text`.
fn log_count(c: &Cluster, i: usize, text: &str) -> usize {
    std::fs::read_to_string(c.log_path(i))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

fn wait_streaming(c: &Cluster, i: usize) {
    wait_check(
        REPLICATION_TIMEOUT,
        &format!("{} streaming", c.name(i)),
        || {
            let p = c.patroni(i).ok_or("no /patroni answer")?;
            (p["role"] == "replica" && p["replication_state"] == "streaming")
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "role {} replication_state {}",
                        p["role"], p["replication_state"]
                    )
                })
        },
    );
}

/// The real `patronictl` with the cluster's patronictl-style file (TLS to etcd and to the
/// members, with the client certificate and credentials).
fn patronictl(c: &Cluster, args: &[&str]) -> Captured {
    let mut cmd = std::process::Command::new(support::process::patronictl());
    scrub_env(&mut cmd);
    cmd.arg("-c").arg(c.ctl_config()).args(args);
    run_capture(&mut cmd, Duration::from_secs(90))
}

/// pgwardenctl with `yaml` as its configuration file.
fn ctl_with_file(c: &Cluster, yaml: &str, args: &[&str]) -> Captured {
    let path = c.node_dir(0).with_file_name("ctl-variant.yaml");
    std::fs::write(&path, yaml).expect("write the file");
    let mut cmd = std::process::Command::new(c.pgwardenctl_bin());
    scrub_env(&mut cmd);
    cmd.arg("-c").arg(&path).args(args);
    run_capture(&mut cmd, Duration::from_secs(30))
}

fn switch_over(c: &Cluster, tool: &str, from: usize, to: usize) {
    let args = [
        "switchover",
        "--leader",
        c.name(from),
        "--candidate",
        c.name(to),
        "--force",
    ];
    let out = if tool == "patronictl" {
        patronictl(c, &args)
    } else {
        c.ctl(&args)
    };
    assert!(
        out.success(),
        "{tool} switchover over https: {}\n{}",
        out.stdout,
        out.stderr
    );
    wait_check(
        FAILOVER_TIMEOUT,
        &format!("{} to lead", c.name(to)),
        || match c.leader_now() {
            Ok(i) if i == to => Ok(()),
            other => Err(format!("leader {other:?}")),
        },
    );
    wait_streaming(c, from);
}

#[test]
fn a_tls_cluster_bootstraps_fails_over_heals_and_obeys_the_real_tools() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .nodes(3)
        .synchronous_mode(false)
        .etcd_members(3)
        .tls("optional")
        .etcd_auth()
        .agent_etcd_cert_lifetime(AGENT_ETCD_CERT_LIFETIME)
        // In each agent's directory; the leak check reads them.
        .pgwarden("  role_history: role-history.jsonl\n")
        .section("telemetry:\n  decisions:\n    file: decisions.jsonl\n")
        .start();
    let pki = c.pki().expect("a TLS cluster").clone();
    // The agents' etcd certificate expires this long after now, or sooner.
    let agent_cert_expiry = std::time::Instant::now() + AGENT_ETCD_CERT_LIFETIME;
    let mut outputs: Vec<(String, String)> = Vec::new();
    let leader = c.wait_for_leader(BOOTSTRAP_TIMEOUT);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &others {
        wait_streaming(&c, i);
    }

    // Every member advertises its API as https, in Patroni's member key.
    for i in 0..3 {
        let member = c
            .dcs_json(&format!("members/{}", c.name(i)))
            .expect("etcd answers")
            .expect("member key");
        let url = member["api_url"].as_str().unwrap_or_default();
        assert_eq!(
            url,
            format!("https://{}/patroni", c.api_addr(i)),
            "{}'s api_url",
            c.name(i)
        );
    }

    // etcd refuses clients without the CA's certificate, and says why.
    let base = std::fs::read_to_string(c.ctl_config()).expect("ctl file");
    let without_cert: String = base
        .lines()
        .filter(|l| !l.trim_start().starts_with("cert:") && !l.trim_start().starts_with("key:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        without_cert, base,
        "the file names a client certificate to remove"
    );
    let rogue = base
        .replace(
            &pki.client.cert.display().to_string(),
            &pki.rogue_client.cert.display().to_string(),
        )
        .replace(
            &pki.client.key.display().to_string(),
            &pki.rogue_client.key.display().to_string(),
        );
    for (what, yaml) in [
        ("no client certificate", &without_cert),
        ("another CA's certificate", &rogue),
    ] {
        let out = ctl_with_file(&c, yaml, &["list"]);
        assert!(!out.success(), "etcd accepted {what}: {}", out.stdout);
        // etcd's alert (BadCertificate), or the connection closing under a request that
        // crossed it (TLS 1.3 ends the client's side of the handshake first).
        let says_how = [
            "BadCertificate",
            "broken pipe",
            "reset",
            "connection closed",
        ]
        .iter()
        .any(|why| out.stderr.contains(why))
            && out.stderr.contains("check etcd3.cert and etcd3.key");
        assert!(
            out.stderr.contains("etcd") && says_how,
            "{what}: the error names etcd and how it refused: {}",
            out.stderr
        );
        println!("etcd with {what}: {}", out.stderr.trim());
        outputs.push((format!("pgwardenctl with {what}"), out.stderr));
    }
    let listed = c.ctl(&["list"]);
    assert!(
        listed.success(),
        "pgwardenctl list over TLS: {}",
        listed.stderr
    );
    // etcd's authentication: a wrong password is refused, and said so.
    let quoted = format!("'{}'", support::cluster::ETCD_PASSWORD);
    assert!(base.contains(&quoted), "the file holds the etcd password");
    let wrong_password = base.replace(&quoted, "'not-the-password'");
    let out = ctl_with_file(&c, &wrong_password, &["list"]);
    assert!(
        !out.success() && out.stderr.contains("authentication failed"),
        "etcd refuses a wrong password, and says so: {}",
        out.stderr
    );
    outputs.push(("pgwardenctl with a wrong etcd password".into(), out.stderr));

    // The agents' etcd client certificate is renewed in place and each agent reloaded: each
    // connects again with it (the connection in use would keep the old one otherwise, and
    // fail at its next handshake once the old one expires; checked below).
    let agent_cert = c.agent_etcd_certificate().expect("agents' own").clone();
    let expiring = support::tls::Pair {
        cert: agent_cert.cert.with_file_name("agent-etcd-expiring.pem"),
        key: agent_cert.key.with_file_name("agent-etcd-expiring.key"),
    };
    for (from, to) in [
        (&agent_cert.cert, &expiring.cert),
        (&agent_cert.key, &expiring.key),
    ] {
        std::fs::copy(from, to).expect("keep the expiring certificate");
    }
    assert!(
        std::time::Instant::now() < agent_cert_expiry,
        "the run reached the renewal after the first certificate expired: lengthen AGENT_ETCD_CERT_LIFETIME"
    );
    // First a certificate etcd refuses: the leader's new connection fails, and it keeps the
    // one it has (and its key).
    let failed = "but connecting with them failed";
    let failures_before = log_count(&c, leader, failed);
    for (from, to) in [
        (&pki.rogue_client.cert, &agent_cert.cert),
        (&pki.rogue_client.key, &agent_cert.key),
    ] {
        std::fs::copy(from, to).expect("the refused certificate in place");
    }
    let pid = c.agent_pid(leader).expect("the leader's agent runs") as i32;
    support::process::signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_check(
        Duration::from_secs(20),
        "the leader's new etcd connection to fail",
        || {
            (log_count(&c, leader, failed) > failures_before)
                .then_some(())
                .ok_or_else(|| "no failure logged yet".to_string())
        },
    );
    assert_eq!(
        c.leader_now(),
        Ok(leader),
        "a refused certificate on reload keeps the connection in use"
    );
    // Then the renewed one, for every agent.
    let reconnected = "etcd credentials or TLS files changed: connected again";
    let before: Vec<usize> = (0..3).map(|i| log_count(&c, i, reconnected)).collect();
    c.renew_agent_etcd_certificate();
    for i in 0..3 {
        let pid = c.agent_pid(i).expect("the agent runs") as i32;
        support::process::signal(pid, nix::sys::signal::Signal::SIGHUP);
    }
    for (i, &logged_before) in before.iter().enumerate() {
        wait_check(
            Duration::from_secs(20),
            &format!(
                "{} to connect to etcd with the renewed certificate",
                c.name(i)
            ),
            || {
                (log_count(&c, i, reconnected) > logged_before)
                    .then_some(())
                    .ok_or_else(|| "no reconnection logged yet".to_string())
            },
        );
    }

    // The REST API: reads without a certificate, unsafe requests need one and credentials.
    let anonymous = ApiTls {
        config: pki.client_config(None),
        basic: None,
    };
    let addr = c.api_addr(leader);
    let t = Duration::from_secs(5);
    let read = request_with(addr, Some(&anonymous), "GET", "/patroni", None, t).expect("GET");
    assert_eq!(read.status, 200);
    let refused = request_with(addr, Some(&anonymous), "POST", "/restart", Some("{}"), t)
        .expect("POST without a certificate");
    assert_eq!(refused.status, 403, "{}", refused.body);
    let certified = ApiTls {
        config: pki.client_config(Some(&pki.client)),
        basic: None,
    };
    let refused = request_with(addr, Some(&certified), "POST", "/restart", Some("{}"), t)
        .expect("POST without credentials");
    assert_eq!(refused.status, 401, "{}", refused.body);
    let plain = support::http::request(addr, "GET", "/patroni", None, t);
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "plain HTTP to a TLS API gets no answer: {plain:?}"
    );

    // HAProxy's seed checks over TLS, trusting nothing and trusting the CA.
    for check in [
        " check-ssl verify none".to_string(),
        format!(" check-ssl verify required ca-file {}", pki.ca.display()),
    ] {
        let proxy = Haproxy::start_checking(&c.haproxy_servers(), &check);
        wait_check(
            Duration::from_secs(60),
            &format!("HAProxy ({check}) routing writes to the leader"),
            || match c.behind_proxy(proxy.primary_port)? {
                (false, port) if port == c.pg_port(leader) => Ok(()),
                other => Err(format!(
                    "behind the writes port: {other:?}\n{}",
                    proxy.log_tail()
                )),
            },
        );
        wait_check(
            Duration::from_secs(60),
            &format!("HAProxy ({check}) routing reads to a standby"),
            || match c.behind_proxy(proxy.replica_port)? {
                (true, port) if port != c.pg_port(leader) => Ok(()),
                other => Err(format!("behind the reads port: {other:?}")),
            },
        );
    }

    // A renewed certificate is served after SIGHUP, by the agent that re-read it only; the
    // agent keeps running and HAProxy keeps checking it.
    let before =
        presented_certificate(c.api_addr(leader), pki.client_config(None)).expect("handshake");
    let renewed = pki.renew_server();
    assert_ne!(before, renewed);
    let pid = c.agent_pid(leader).expect("the leader's agent runs") as i32;
    support::process::signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_check(
        Duration::from_secs(10),
        "the leader to serve the renewed certificate",
        || match presented_certificate(c.api_addr(leader), pki.client_config(None)) {
            Ok(der) if der == renewed => Ok(()),
            Ok(_) => Err("still the old certificate".to_string()),
            Err(e) => Err(e),
        },
    );
    assert!(c.agent_alive(leader), "SIGHUP stopped the leader's agent");
    assert_eq!(
        presented_certificate(c.api_addr(others[0]), pki.client_config(None)),
        Ok(before),
        "an agent that was not reloaded keeps its certificate"
    );

    // The real patronictl lists and switches over through etcd and the members' APIs over
    // TLS; pgwardenctl switches back.
    let listed = patronictl(&c, &["list"]);
    outputs.push((
        "patronictl list".to_string(),
        listed.stdout.clone() + &listed.stderr,
    ));
    assert!(
        listed.success(),
        "patronictl list over TLS: {}",
        listed.stderr
    );
    for i in 0..3 {
        assert!(listed.stdout.contains(c.name(i)), "{}", listed.stdout);
    }
    let candidate = others[0];
    switch_over(&c, "patronictl", leader, candidate);
    switch_over(&c, "pgwardenctl", candidate, leader);

    // The agents' first certificate has expired, and etcd refuses it (so what follows
    // proves the renewed one is in use).
    if let Some(left) = agent_cert_expiry.checked_duration_since(std::time::Instant::now()) {
        std::thread::sleep(left + Duration::from_secs(2));
    }
    let with_expiring = base
        .replace(
            &pki.client.cert.display().to_string(),
            &expiring.cert.display().to_string(),
        )
        .replace(
            &pki.client.key.display().to_string(),
            &expiring.key.display().to_string(),
        );
    let out = ctl_with_file(&c, &with_expiring, &["list"]);
    assert!(
        !out.success() && out.stderr.contains("check etcd3.cert"),
        "etcd refuses the expired certificate, at the handshake: {}{}",
        out.stdout,
        out.stderr
    );
    outputs.push(("pgwardenctl with an expired certificate".into(), out.stderr));

    // etcd endpoint failover over TLS: each member in turn dies and comes back, the first
    // endpoint in everyone's list first. The leader keeps its key through the others (no
    // election for two ttl), the tools still read the cluster. Once all three have
    // restarted, every connection the agents hold was made after the first certificate
    // expired: the member keys (each on its agent's lease) and the leader key still being
    // there two ttl later shows every agent reconnected with the renewed certificate, and
    // logged in again (etcd forgets its tokens on restart).
    for member in 0..3 {
        c.etcd_mut().stop_member(member);
        let stopped = std::time::Instant::now();
        let patience = if member == 0 { c.ttl() * 2 } else { c.ttl() };
        while stopped.elapsed() < patience {
            assert_eq!(
                c.leader_now(),
                Ok(leader),
                "the leader keeps its key while etcd member {member} is gone"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        if member == 0 {
            let listed = c.ctl(&["list"]);
            assert!(
                listed.success(),
                "pgwardenctl through the remaining TLS endpoints: {}",
                listed.stderr
            );
        }
        c.etcd_mut().start_member(member);
    }
    let restarted = std::time::Instant::now();
    while restarted.elapsed() < c.ttl() * 2 {
        assert_eq!(
            c.leader_now(),
            Ok(leader),
            "the leader keeps its key after every etcd member restarted"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every agent still writes (a renewed lease proves the handshake only: etcd does not
    // check tokens on lease renewals): WAL moves, and each member key is written again.
    let revisions: Vec<i64> = (0..3)
        .map(|i| {
            c.dcs_get(&format!("members/{}", c.name(i)))
                .expect("etcd answers")
                .unwrap_or_else(|| {
                    panic!(
                        "{}'s member key outlived the etcd restarts (its lease was kept alive)",
                        c.name(i)
                    )
                })
                .mod_revision
        })
        .collect();
    c.execute(
        leader,
        "CREATE TABLE after_etcd_restarts (id int); INSERT INTO after_etcd_restarts VALUES (1)",
    )
    .expect("a write on the leader");
    for (i, &before) in revisions.iter().enumerate() {
        wait_check(
            Duration::from_secs(30),
            &format!(
                "{} to write its member key after the etcd restarts",
                c.name(i)
            ),
            || match c.dcs_get(&format!("members/{}", c.name(i)))? {
                Some(kv) if kv.mod_revision > before => Ok(()),
                other => Err(format!("not yet: {other:?}")),
            },
        );
    }
    // And every agent's watch works: no agent reports etcd unreachable once it settled
    // (a watch refused for a token etcd forgot would be reported every half second).
    let unreachable = "lock store unreachable";
    let settled: Vec<usize> = (0..3).map(|i| log_count(&c, i, unreachable)).collect();
    std::thread::sleep(c.ttl());
    for (i, &count) in settled.iter().enumerate() {
        assert_eq!(
            log_count(&c, i, unreachable),
            count,
            "{} reports etcd unreachable after the restarts settled",
            c.name(i)
        );
    }

    // Failover on TLS etcd: the leader node dies, another member takes over, the old one
    // rejoins when it comes back.
    c.execute(
        leader,
        "CREATE TABLE tls_rows (id int PRIMARY KEY); INSERT INTO tls_rows VALUES (1)",
    )
    .expect("a write on the leader");
    for &i in &others {
        wait_check(REPLICATION_TIMEOUT, "the row on every standby", || {
            c.query_scalar(i, "SELECT count(*) FROM tls_rows")?
                .filter(|n| n == "1")
                .map(|_| ())
                .ok_or_else(|| "not yet".to_string())
        });
    }
    c.kill_node(leader);
    let new_leader = c.wait_for_leader(FAILOVER_TIMEOUT);
    assert_ne!(new_leader, leader);
    c.execute(new_leader, "INSERT INTO tls_rows VALUES (2)")
        .expect("a write on the new leader");
    c.start_node(leader);
    wait_streaming(&c, leader);
    wait_check(
        REPLICATION_TIMEOUT,
        "the old leader has the new row",
        || {
            c.query_scalar(leader, "SELECT count(*) FROM tls_rows")?
                .filter(|n| n == "2")
                .map(|_| ())
                .ok_or_else(|| "not yet".to_string())
        },
    );

    secrets_stay_secret(&c, &pki, outputs);
}

/// No configured secret appears in anything the cluster printed or answered: the agents'
/// logs (a bootstrap, switchovers, a failover and a rejoin, all over TLS), every detail
/// read of the REST API, and what pgwardenctl and patronictl printed.
fn secrets_stay_secret(c: &Cluster, pki: &support::tls::Pki, mut outputs: Vec<(String, String)>) {
    use base64::Engine as _;
    use support::cluster::{
        API_PASSWORD, API_USER, ETCD_PASSWORD, REPLICATION_PASSWORD, REWIND_PASSWORD,
        SUPERUSER_PASSWORD,
    };
    for i in 0..c.len() {
        let log = std::fs::read_to_string(c.log_path(i)).expect("agent log");
        assert!(log.len() > 1000, "{}'s log has the run in it", c.name(i));
        outputs.push((format!("{}'s log", c.name(i)), log));
        let roles = std::fs::read_to_string(c.node_dir(i).join("role-history.jsonl"))
            .expect("role history");
        assert!(
            roles.lines().count() > 2,
            "{}'s role history has the run in it",
            c.name(i)
        );
        outputs.push((format!("{}'s role history", c.name(i)), roles));
        let decisions = std::fs::read_to_string(c.node_dir(i).join("decisions.jsonl"))
            .expect("decision log file");
        assert!(
            decisions.lines().count() > 2,
            "{}'s decision log has the run in it",
            c.name(i)
        );
        outputs.push((format!("{}'s decision log", c.name(i)), decisions));
        for path in [
            "/patroni",
            "/cluster",
            "/history",
            "/config",
            "/metrics",
            "/failsafe",
            "/decisions",
        ] {
            let answer = c
                .http(i, "GET", path, None)
                .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", c.name(i)));
            // /failsafe: 502 while failsafe mode is off, with a message.
            let expected = if path == "/failsafe" { 502 } else { 200 };
            assert_eq!(answer.status, expected, "GET {path}: {}", answer.body);
            assert!(!answer.body.is_empty(), "GET {path} has a body");
            outputs.push((format!("GET {path} on {}", c.name(i)), answer.body));
        }
    }
    for args in [
        &["list", "-f", "json"][..],
        &["show-config"],
        &["history"],
        &["topology"],
        &["why", "--episodes", "50"],
    ] {
        let out = c.ctl(args);
        outputs.push((format!("pgwardenctl {args:?}"), out.stdout + &out.stderr));
    }
    let key_line = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .expect("key")
            .lines()
            .nth(1)
            .expect("a PEM body line")
            .to_string()
    };
    let secrets = [
        ("the REST API password", API_PASSWORD.to_string()),
        (
            "the Authorization header",
            base64::engine::general_purpose::STANDARD.encode(format!("{API_USER}:{API_PASSWORD}")),
        ),
        ("the superuser password", SUPERUSER_PASSWORD.to_string()),
        ("the replication password", REPLICATION_PASSWORD.to_string()),
        ("the rewind password", REWIND_PASSWORD.to_string()),
        ("the server's private key", key_line(&pki.server.key)),
        ("the client's private key", key_line(&pki.client.key)),
        ("the etcd password", ETCD_PASSWORD.to_string()),
        (
            "the agents' etcd private key",
            key_line(&c.agent_etcd_certificate().expect("agents' own").key),
        ),
    ];
    let mut leaks = Vec::new();
    for (where_, text) in &outputs {
        for (what, secret) in &secrets {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{what} in {where_}"));
            }
        }
    }
    assert!(outputs.len() > 20, "the outputs were collected");
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}
