//! The configuration contract seen from outside the crate: the seed guide's `patroni.yml`
//! loads unchanged, bad values are refused naming their key, environment overrides win,
//! and the dynamic `/config` document round-trips.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pgwarden::config::*;
use serde_json::json;

fn seed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/seed-patroni.yml")
}

fn seed_text() -> String {
    std::fs::read_to_string(seed_path()).expect("seed-patroni.yml is readable")
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// The seed with one exact substring replaced; panics if it is not there, so a test can
/// never silently check the unmodified seed.
fn seed_with(from: &str, to: &str) -> String {
    let text = seed_text();
    assert!(text.contains(from), "seed does not contain {from:?}");
    text.replacen(from, to, 1)
}

fn parse_err(yaml: &str) -> ConfigError {
    parse(yaml, &no_env).expect_err("configuration should be refused")
}

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.to_string(),
        port,
    }
}

#[test]
fn seed_config_loads_unchanged_with_no_warnings() {
    let loaded = load_with_env(&seed_path(), &no_env).expect("the seed patroni.yml is valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;

    assert_eq!(c.scope, "pg-cluster");
    assert_eq!(c.namespace, "/service");
    assert_eq!(c.name, "pg1");

    assert_eq!(c.restapi.listen, hp("0.0.0.0", 8008));
    assert_eq!(c.restapi.connect_address, hp("10.0.1.11", 8008));
    assert_eq!(c.restapi.authentication, None);

    assert_eq!(
        c.etcd.hosts,
        vec![
            hp("10.0.1.11", 2379),
            hp("10.0.1.12", 2379),
            hp("10.0.1.13", 2379)
        ]
    );
    assert_eq!(c.etcd.protocol, "http");
    assert_eq!(
        (c.etcd.username.as_deref(), c.etcd.password.as_deref()),
        (None, None)
    );

    let dcs = &c.bootstrap.dcs;
    assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (30, 10, 10));
    assert_eq!(dcs.maximum_lag_on_failover, 1_048_576);
    assert_eq!(dcs.synchronous_mode, SynchronousMode::On);
    assert!(!dcs.synchronous_mode_strict);
    assert_eq!(dcs.synchronous_node_count, 1);
    assert!(dcs.postgresql.use_pg_rewind);
    assert!(dcs.postgresql.use_slots);
    let expected_dynamic: BTreeMap<String, String> = [
        ("wal_level", "replica"),
        ("hot_standby", "on"),
        ("max_wal_senders", "10"),
        ("max_replication_slots", "10"),
        ("wal_keep_size", "256MB"),
        ("wal_log_hints", "on"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(dcs.postgresql.parameters, expected_dynamic);

    assert_eq!(
        c.bootstrap.initdb,
        vec![
            InitdbOption::Value("encoding".into(), "UTF8".into()),
            InitdbOption::Flag("data-checksums".into()),
        ]
    );
    let args: Vec<String> = c
        .bootstrap
        .initdb
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(args, vec!["--encoding=UTF8", "--data-checksums"]);
    assert_eq!(
        c.bootstrap.pg_hba,
        vec![
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all all 10.0.1.0/24 scram-sha-256",
            "host replication replicator 10.0.1.0/24 scram-sha-256",
        ]
    );

    let pg = &c.postgresql;
    assert_eq!(pg.listen.hosts, vec!["0.0.0.0"]);
    assert_eq!(pg.listen.port, 5432);
    assert_eq!(pg.connect_address, hp("10.0.1.11", 5432));
    // The inline "# Debian/Ubuntu: ..." comments must not leak into the paths.
    assert_eq!(pg.data_dir, PathBuf::from("/var/lib/pgsql/18/data"));
    assert_eq!(pg.bin_dir, Some(PathBuf::from("/usr/pgsql-18/bin")));
    assert_eq!(pg.config_dir, None);
    assert_eq!(pg.pgpass, None);
    let auth = &pg.authentication;
    assert_eq!(
        auth.superuser,
        Credentials {
            username: "postgres".into(),
            password: Some("ChangeMe-Super#2026".into())
        }
    );
    assert_eq!(
        auth.replication,
        Credentials {
            username: "replicator".into(),
            password: Some("ChangeMe-Repl#2026".into())
        }
    );
    assert_eq!(
        auth.rewind,
        Some(Credentials {
            username: "rewind_user".into(),
            password: Some("ChangeMe-Rewind#2026".into())
        })
    );
    assert_eq!(
        pg.parameters,
        BTreeMap::from([(
            "password_encryption".to_string(),
            "scram-sha-256".to_string()
        )])
    );
    assert_eq!(pg.pg_hba, None);
    assert_eq!(pg.pg_ctl_timeout_secs, 60);
    assert_eq!(pg.use_pg_rewind, None);
    assert!(pg.basebackup.is_empty());

    assert_eq!(c.watchdog.mode, WatchdogMode::Automatic);
    assert_eq!(c.watchdog.device, PathBuf::from("/dev/watchdog"));
    assert_eq!(c.watchdog.safety_margin, 5);

    let t = &c.tags;
    assert!(!t.nofailover && !t.noloadbalance && !t.clonefrom && !t.nosync && !t.nostream);
    assert_eq!((t.failover_priority, t.sync_priority), (1, 1));
    assert_eq!(t.replicatefrom, None);
    // Patroni leaves false boolean tags out of the member key.
    assert!(t.raw.is_empty(), "{:?}", t.raw);

    assert_eq!(c.pgwarden.peer_probe_timeout_ms, 2000);
    assert_eq!(c.pgwarden.demotion_margin_ms, 1000);
}

#[test]
fn seed_text_parses_the_same_as_the_file() {
    let from_text = parse(&seed_text(), &no_env).expect("valid");
    let from_file = load_with_env(&seed_path(), &no_env).expect("valid");
    assert_eq!(from_text, from_file);
}

#[test]
fn seed_bootstrap_dcs_is_written_as_patroni_json() {
    let c = parse(&seed_text(), &no_env).expect("valid").config;
    let doc = c.bootstrap.dcs.to_json();
    assert_eq!(
        doc,
        json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "maximum_lag_on_failover": 1048576,
            "synchronous_mode": true,
            "postgresql": {
                "use_pg_rewind": true, "use_slots": true,
                "parameters": {
                    "wal_level": "replica", "hot_standby": "on", "max_wal_senders": 10,
                    "max_replication_slots": 10, "wal_keep_size": "256MB", "wal_log_hints": "on"
                }
            }
        })
    );
    let back = DynamicConfig::from_json(&doc).expect("round trip");
    assert_eq!(back, c.bootstrap.dcs);
    assert_eq!(back.to_json(), doc);
}

#[test]
fn postgresql_listen_without_port_is_refused() {
    let e = parse_err(&seed_with("  listen: 0.0.0.0:5432", "  listen: 0.0.0.0"));
    assert_eq!(e.path, "postgresql.listen");
    assert_eq!(e.message, "\"0.0.0.0\" has no port (expected host:port)");
}

#[test]
fn restapi_listen_without_port_is_refused() {
    let e = parse_err(&seed_with("listen: 0.0.0.0:8008", "listen: 0.0.0.0"));
    assert_eq!(e.path, "restapi.listen");
    assert!(e.message.contains("no port"), "{e}");
    let e = parse_err(&seed_with("10.0.1.11:8008", "10.0.1.11:80080"));
    assert_eq!(e.path, "restapi.connect_address");
    assert!(e.message.contains("\"80080\""), "{e}");
}

/// Timing Patroni adjusts is adjusted the same way, with a warning naming the key: a ttl below
/// pgwarden's floor is raised to it, and `loop_wait + 2*retry_timeout <= ttl` is made true.
#[test]
fn ttl_below_floor_is_raised_with_a_warning() {
    let loaded = parse(&seed_with("    ttl: 30", "    ttl: 2"), &no_env).expect("adjusted");
    let dcs = &loaded.config.bootstrap.dcs;
    assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (4, 1, 1));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with("bootstrap.dcs.ttl: 2 is below pgwarden's minimum of 4")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn libpq_options_of_each_role_are_kept_and_warned_about_where_limited() {
    let yaml = seed_with(
        "      password: 'ChangeMe-Repl#2026'\n",
        "      password: 'ChangeMe-Repl#2026'\n      sslmode: verify-ca\n      \
         sslrootcert: /etc/pki/ca.crt\n      sslpassword: hush\n      sslnegotiation: direct\n",
    );
    let yaml = yaml.replacen(
        "      password: 'ChangeMe-Super#2026'\n",
        "      password: 'ChangeMe-Super#2026'\n      sslmode: require\n",
        1,
    );
    let loaded = parse(&yaml, &no_env).expect("valid");
    let libpq = &loaded.config.postgresql.authentication.libpq;
    let pairs = |v: &[(&str, &str)]| -> LibpqOptions {
        LibpqOptions(
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    assert_eq!(
        libpq.replication,
        pairs(&[
            ("sslmode", "verify-ca"),
            ("sslpassword", "hush"),
            ("sslrootcert", "/etc/pki/ca.crt"),
        ])
    );
    assert_eq!(libpq.superuser, pairs(&[("sslmode", "require")]));
    assert_eq!(libpq.rewind, Some(LibpqOptions::default()));
    assert!(loaded.config.secret_values().contains(&"hush".to_string()));
    let warned = |needle: &str| loaded.warnings.iter().any(|w| w.contains(needle));
    assert!(
        warned("replication.sslpassword: given to PostgreSQL in primary_conninfo only"),
        "{:?}",
        loaded.warnings
    );
    assert!(warned("sslnegotiation"), "{:?}", loaded.warnings);
    assert!(!format!("{libpq:?}").contains("hush"), "{libpq:?}");
    assert!(
        warned("superuser.sslmode: the agent's own connection"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn timing_rule_violation_is_adjusted_with_a_warning() {
    let yaml = seed_with(
        "    ttl: 30\n    loop_wait: 10\n    retry_timeout: 10",
        "    ttl: 21\n    loop_wait: 2\n    retry_timeout: 10",
    );
    let loaded = parse(&yaml, &no_env).expect("adjusted, as Patroni does");
    let dcs = &loaded.config.bootstrap.dcs;
    assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (21, 1, 10));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with("bootstrap.dcs.loop_wait: ") && w.contains("from 2 to 1")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn wrong_types_name_key_and_value() {
    let e = parse_err(&seed_with("    ttl: 30", "    ttl: \"abc\""));
    assert_eq!(
        e.to_string(),
        "bootstrap.dcs.ttl: \"abc\" is not a whole number of seconds"
    );
    let e = parse_err(&seed_with("    ttl: 30", "    ttl: -3"));
    assert_eq!(
        e.to_string(),
        "bootstrap.dcs.ttl: -3 is not a whole number of seconds"
    );
    let e = parse_err(&seed_with(
        "    synchronous_mode: true",
        "    synchronous_mode: sometimes",
    ));
    assert_eq!(e.path, "bootstrap.dcs.synchronous_mode");
}

#[test]
fn numbers_written_as_strings_are_accepted() {
    let c = parse(&seed_with("    ttl: 30", "    ttl: \"30\""), &no_env)
        .expect("Patroni accepts numeric strings")
        .config;
    assert_eq!(c.bootstrap.dcs.ttl, 30);
}

#[test]
fn missing_data_dir_is_refused() {
    let e = parse_err(&seed_with(
        "  data_dir: /var/lib/pgsql/18/data          # Debian/Ubuntu: /var/lib/postgresql/18/main\n",
        "",
    ));
    assert_eq!(e.path, "postgresql.data_dir");
    assert!(e.message.starts_with("missing"), "{e}");
}

#[test]
fn missing_credentials_are_refused() {
    let e = parse_err(&seed_with("      username: replicator\n", ""));
    assert_eq!(e.path, "postgresql.authentication.replication.username");
}

#[test]
fn etcd_v2_section_is_refused() {
    let e = parse_err(&seed_with("etcd3:", "etcd:"));
    assert_eq!(e.path, "etcd");
    assert!(e.message.contains("supports only etcd3"), "{e}");
    let e = parse_err(&seed_with("etcd3:", "consul:"));
    assert_eq!(e.path, "consul");
}

#[test]
fn missing_etcd3_section_is_refused() {
    let e = parse_err(&seed_with(
        "etcd3:\n  hosts:\n    - 10.0.1.11:2379\n    - 10.0.1.12:2379\n    - 10.0.1.13:2379\n",
        "",
    ));
    assert_eq!(e.path, "etcd3");
}

#[test]
fn unknown_watchdog_mode_is_refused() {
    let e = parse_err(&seed_with("  mode: automatic", "  mode: sometimes"));
    assert_eq!(e.path, "watchdog.mode");
    assert!(e.message.contains("\"sometimes\""), "{e}");
}

#[test]
fn unknown_keys_warn_but_load() {
    let yaml = seed_with(
        "restapi:\n",
        "restapi:\n  foo: 1\n  server_tokens: Minimal\n",
    ) + "citus:\n  group: 0\nsurprise: true\n";
    let loaded = parse(&yaml, &no_env).expect("unknown keys are not errors");
    let w = &loaded.warnings;
    assert!(
        w.contains(&"unknown key `restapi.foo` ignored".to_string()),
        "{w:?}"
    );
    assert!(
        w.contains(&"unknown key `surprise` ignored".to_string()),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|x| x.contains("`restapi.server_tokens` accepted but not yet supported")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|x| x.contains("`citus` accepted but not yet supported")),
        "{w:?}"
    );
    assert_eq!(loaded.config.name, "pg1");
}

#[test]
fn env_overrides_win_over_the_file() {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("PATRONI_NAME", "pg2"),
        ("PATRONI_POSTGRESQL_LISTEN", "127.0.0.1:6432"),
        ("PATRONI_ETCD3_HOSTS", "127.0.0.1:12379,127.0.0.2"),
        ("PATRONI_SUPERUSER_PASSWORD", "from-env"),
        ("PATRONI_RESTAPI_USERNAME", "admin"),
        ("PATRONI_RESTAPI_PASSWORD", "api-secret"),
    ]);
    let env = |k: &str| vars.get(k).map(|v| v.to_string());
    let c = parse(&seed_text(), &env)
        .expect("overrides are valid")
        .config;
    assert_eq!(c.name, "pg2");
    assert_eq!(c.postgresql.listen.hosts, vec!["127.0.0.1"]);
    assert_eq!(c.postgresql.listen.port, 6432);
    assert_eq!(
        c.etcd.hosts,
        vec![hp("127.0.0.1", 12379), hp("127.0.0.2", 2379)]
    );
    assert_eq!(
        c.postgresql.authentication.superuser.password.as_deref(),
        Some("from-env")
    );
    assert_eq!(c.postgresql.authentication.superuser.username, "postgres");
    assert_eq!(
        c.restapi.authentication,
        Some(Credentials {
            username: "admin".into(),
            password: Some("api-secret".into())
        })
    );
    assert_eq!(
        c.scope, "pg-cluster",
        "keys without a variable keep file values"
    );
}

#[test]
fn bad_env_value_names_the_variable() {
    let env = |k: &str| (k == "PATRONI_POSTGRESQL_LISTEN").then(|| "0.0.0.0".to_string());
    let e = parse(&seed_text(), &env).expect_err("no port");
    assert_eq!(e.path, "PATRONI_POSTGRESQL_LISTEN");
    assert!(e.message.contains("has no port"), "{e}");
    let env = |k: &str| (k == "PATRONI_ETCD3_HOSTS").then(|| "a:1,b:nope".to_string());
    let e = parse(&seed_text(), &env).expect_err("bad port");
    assert_eq!(e.path, "PATRONI_ETCD3_HOSTS");
}

#[test]
fn patroni_configuration_env_replaces_a_missing_file() {
    let yaml = seed_text();
    let env = |k: &str| match k {
        "PATRONI_CONFIGURATION" => Some(yaml.clone()),
        "PATRONI_NAME" => Some("not-applied".to_string()),
        _ => None,
    };
    let c = load_with_env(Path::new("/nonexistent/patroni.yml"), &env)
        .expect("whole YAML from the environment")
        .config;
    assert_eq!(c.name, "pg1");
}

#[test]
fn dynamic_config_round_trips_and_rejects_bad_documents() {
    let doc = json!({
        "ttl": 20, "loop_wait": 5, "retry_timeout": 5,
        "synchronous_mode": "quorum", "synchronous_node_count": 2,
        "failsafe_mode": true, "pause": true,
        "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": 200}},
        "permanent_unknown": {"kept": true}
    });
    let c = DynamicConfig::from_json(&doc).expect("valid runtime config");
    assert_eq!(c.synchronous_mode, SynchronousMode::Quorum);
    assert_eq!(c.synchronous_node_count, 2);
    assert!(c.failsafe_mode && c.pause);
    assert_eq!(c.postgresql.parameters["max_connections"], "200");
    assert_eq!(c.to_json(), doc);
    assert_eq!(DynamicConfig::from_json(&c.to_json()).expect("again"), c);

    // Timing below the floors is adjusted, as Patroni adjusts it, not refused.
    let c = DynamicConfig::from_json(&json!({"ttl": 1})).expect("ttl 1 is raised");
    assert_eq!(c.ttl, pgwarden::config::MIN_TTL_SECS);
    let e = DynamicConfig::from_json(&json!({"loop_wait": "often"})).expect_err("type");
    assert_eq!(
        e.to_string(),
        "loop_wait: \"often\" is not a whole number of seconds"
    );
}

#[test]
fn host_port_parses_and_displays() {
    let a: HostPort = "[::1]:5432".parse().expect("ipv6");
    assert_eq!(a.to_string(), "[::1]:5432");
    let e = "db1".parse::<HostPort>().expect_err("no port");
    assert_eq!(e.to_string(), "\"db1\" has no port (expected host:port)");
    let l: ListenAddress = "127.0.0.1,::1:5432".parse().expect("listen list");
    assert_eq!(l.listen_addresses(), "127.0.0.1,::1");
}

#[test]
fn local_policy_section_is_parsed_with_limits_and_checked() {
    let digest = "ab".repeat(32);
    let yaml = format!(
        "{}\npolicy:\n  path: /etc/pgwarden/zone-aware.wasm\n  sha256: {digest}\n  shadow:\n    path: /etc/pgwarden/next.wasm\n  fuel: 1000000\n  memory_mb: 8\n  timeout_ms: 15\n  deadline_ms: 300\n  trace_file: /var/lib/pgwarden/trace.jsonl\n  params:\n    zone_wait_ms: 4000\n",
        seed_text()
    );
    let loaded = parse(&yaml, &no_env).expect("valid policy section");
    let policy = &loaded.config.policy;
    let active = policy.active.as_ref().expect("active policy");
    assert_eq!(active.path, PathBuf::from("/etc/pgwarden/zone-aware.wasm"));
    assert_eq!(active.name, "zone-aware");
    assert_eq!(active.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(
        policy.shadow.as_ref().map(|s| s.name.as_str()),
        Some("next")
    );
    assert_eq!(policy.fuel, 1_000_000);
    assert_eq!(policy.memory_bytes, 8 * 1024 * 1024);
    assert_eq!((policy.timeout_ms, policy.deadline_ms), (15, 300));
    assert_eq!(
        policy.params.get("zone_wait_ms").map(String::as_str),
        Some("4000")
    );
    // The seed without a policy section runs the embedded default.
    let plain = parse(&seed_text(), &no_env).expect("seed");
    assert_eq!(plain.config.policy.active, None);

    let bad = parse_err(&format!(
        "{}\npolicy:\n  sha256: xyz\n  path: /p.wasm\n",
        seed_text()
    ));
    assert_eq!(bad.path, "policy.sha256");
    let bad = parse_err(&format!(
        "{}\npolicy:\n  timeout_ms: 50\n  deadline_ms: 40\n",
        seed_text()
    ));
    assert_eq!(bad.path, "policy.deadline_ms");
    let bad = parse_err(&format!("{}\npolicy:\n  memory_mb: 0\n", seed_text()));
    assert_eq!(bad.path, "policy.memory_mb");
}

#[test]
fn cluster_policy_in_config_requires_name_digest_and_absolute_source() {
    let digest = "0f".repeat(32);
    let ok = DynamicConfig::from_json(&json!({
        "ttl": 30,
        "policy": {"name": "zone-aware", "sha256": digest, "source": "/etc/pgwarden/za.wasm",
                   "params": {"zone_wait_ms": 5000}}
    }))
    .expect("valid /config policy");
    let policy = ok.policy.expect("policy");
    assert_eq!(policy.active.name, "zone-aware");
    assert_eq!(policy.active.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(
        policy.params.get("zone_wait_ms").map(String::as_str),
        Some("5000")
    );
    let missing = DynamicConfig::from_json(&json!({
        "policy": {"name": "x", "source": "/x.wasm"}
    }))
    .expect_err("digest is required");
    assert_eq!(missing.path, "policy.sha256");
    let relative = DynamicConfig::from_json(&json!({
        "policy": {"name": "x", "sha256": digest, "source": "x.wasm"}
    }))
    .expect_err("relative source");
    assert_eq!(relative.path, "policy.source");
}

#[test]
fn the_unresponsive_primary_timeout_defaults_to_30_s_and_refuses_less_than_a_second() {
    let c = parse(&seed_text(), &no_env).expect("valid");
    assert_eq!(c.config.pgwarden.unresponsive_primary_timeout_ms, 30_000);
    let with = |v: &str| {
        format!(
            "{}\npgwarden:\n  unresponsive_primary_timeout_ms: {v}\n",
            seed_text()
        )
    };
    let c = parse(&with("4000"), &no_env).expect("valid");
    assert_eq!(c.config.pgwarden.unresponsive_primary_timeout_ms, 4_000);
    let e = parse_err(&with("500"));
    assert_eq!(e.path, "pgwarden.unresponsive_primary_timeout_ms");
    assert!(e.message.contains("below the minimum of 1000"), "{e}");
    let e = parse_err(&with("soon"));
    assert_eq!(e.path, "pgwarden.unresponsive_primary_timeout_ms");
}

#[test]
fn the_role_history_file_is_optional_and_never_an_empty_path() {
    let c = parse(&seed_text(), &no_env).expect("valid");
    assert_eq!(c.config.pgwarden.role_history, None);
    let with = |v: &str| format!("{}\npgwarden:\n  role_history: {v}\n", seed_text());
    let c = parse(&with("/var/log/pgwarden/roles.jsonl"), &no_env).expect("valid");
    assert_eq!(
        c.config.pgwarden.role_history.as_deref(),
        Some(std::path::Path::new("/var/log/pgwarden/roles.jsonl"))
    );
    let e = parse_err(&with("''"));
    assert_eq!(e.path, "pgwarden.role_history");
    assert!(e.message.contains("empty path"), "{e}");
}

#[test]
fn the_input_log_is_optional_never_an_empty_path_and_has_an_environment_variable() {
    let c = parse(&seed_text(), &no_env).expect("valid");
    assert_eq!(c.config.pgwarden.input_log, None);
    let with = |v: &str| format!("{}\npgwarden:\n  input_log: {v}\n", seed_text());
    let c = parse(&with("inputs.jsonl"), &no_env).expect("valid");
    assert_eq!(
        c.config.pgwarden.input_log.as_deref(),
        Some(std::path::Path::new("inputs.jsonl"))
    );
    let e = parse_err(&with("''"));
    assert_eq!(e.path, "pgwarden.input_log");
    assert!(e.message.contains("empty path"), "{e}");
    let env = |name: &str| (name == "PGWARDEN_INPUT_LOG").then(|| "/tmp/in.jsonl".to_string());
    let c = parse(&seed_text(), &env).expect("valid");
    assert_eq!(
        c.config.pgwarden.input_log.as_deref(),
        Some(std::path::Path::new("/tmp/in.jsonl"))
    );
}

/// SIGHUP compares the re-read file with the running one section by section: the warning
/// it logs names exactly the sections that changed.
#[test]
fn changed_sections_name_what_differs() {
    let running = parse(&seed_text(), &no_env).expect("seed").config;
    let same = parse(&seed_text(), &no_env).expect("seed").config;
    assert!(running.changed_sections(&same).is_empty());

    let tagged = parse(&seed_with("nofailover: false", "nofailover: true"), &no_env)
        .expect("seed with nofailover")
        .config;
    assert_eq!(running.changed_sections(&tagged), vec!["tags"]);

    let two = parse(
        &seed_with("nofailover: false", "nofailover: true").replacen(
            "listen: 0.0.0.0:8008",
            "listen: 0.0.0.0:8018",
            1,
        ),
        &no_env,
    )
    .expect("seed with two changes")
    .config;
    assert_eq!(running.changed_sections(&two), vec!["restapi", "tags"]);
}

/// `bootstrap.method` other than initdb is not implemented: the configuration says so and
/// the node will not bootstrap (the core refuses the race, see core_scenarios).
#[test]
fn a_custom_bootstrap_method_is_refused_with_a_warning() {
    let loaded = parse(
        &seed_with(
            "bootstrap:\n",
            "bootstrap:\n  method: wal_g\n  wal_g:\n    command: restore.sh\n",
        ),
        &no_env,
    )
    .expect("still a valid configuration");
    assert_eq!(
        loaded.config.bootstrap.custom_method.as_deref(),
        Some("wal_g")
    );
    assert!(
        loaded.warnings.iter().any(|w| w
            .starts_with("bootstrap.method: \"wal_g\" is not supported")
            && w.contains("never bootstrap a new cluster")),
        "{:?}",
        loaded.warnings
    );
    let initdb = parse(
        &seed_with("bootstrap:\n", "bootstrap:\n  method: initdb\n"),
        &no_env,
    )
    .expect("initdb");
    assert_eq!(initdb.config.bootstrap.custom_method, None);
}

/// Keys pgwarden acts on without a word at start: each names where it takes effect. A key of
/// Patroni's configuration (`testdata/patroni-schema-keys.txt`) that is neither here, nor
/// warned about, nor refused, is silently ignored, and the walk below fails on it.
const HONOURED: &[(&str, &str)] = &[
    ("log.dateformat", "asctime in log lines (logging::line)"),
    (
        "log.deduplicate_heartbeat_logs",
        "pgwarden writes no per-loop heartbeat line: nothing to deduplicate",
    ),
    ("log.dir", "the log file (logging::writer)"),
    ("log.file_num", "rotated log files kept (logging::writer)"),
    (
        "log.format",
        "the log line template or JSON fields (logging::line)",
    ),
    (
        "log.max_queue_size",
        "the log queue's bound (logging::writer)",
    ),
    ("log.mode", "the log files' permissions (logging::writer)"),
    ("name", "member name: keys, application_name"),
    ("scope", "the etcd prefix"),
    ("namespace", "the etcd prefix"),
    ("etcd3.host", "etcd endpoints"),
    ("etcd3.hosts", "etcd endpoints"),
    ("etcd3.url", "etcd endpoints"),
    ("etcd3.proxy", "etcd endpoints"),
    ("etcd3.protocol", "etcd endpoints' scheme"),
    ("etcd3.username", "etcd authentication"),
    (
        "ctl.authentication.username",
        "credentials towards peers' APIs",
    ),
    (
        "ctl.authentication.password",
        "credentials towards peers' APIs",
    ),
    ("ctl.cacert", "TLS towards peers' APIs"),
    ("ctl.certfile", "TLS towards peers' APIs"),
    ("ctl.insecure", "TLS towards peers' APIs"),
    ("restapi.certfile", "the REST API speaks TLS"),
    ("restapi.cafile", "client certificates; TLS towards peers"),
    (
        "restapi.allowlist",
        "sources allowed to call unsafe endpoints",
    ),
    (
        "restapi.allowlist_include_members",
        "members allowed to call unsafe endpoints",
    ),
    ("restapi.http_extra_headers", "headers on every answer"),
    (
        "restapi.https_extra_headers",
        "headers on every answer over TLS",
    ),
    ("etcd3.password", "etcd authentication"),
    ("restapi.listen", "REST listener"),
    ("restapi.connect_address", "api_url in the member key"),
    (
        "restapi.authentication.username",
        "basic auth on the operator endpoints",
    ),
    (
        "restapi.authentication.password",
        "basic auth on the operator endpoints",
    ),
    ("bootstrap.initdb", "initdb options"),
    (
        "bootstrap.method",
        "a method other than initdb never bootstraps (warned when set)",
    ),
    ("postgresql.listen", "listen_addresses and port"),
    ("postgresql.connect_address", "conn_url in the member key"),
    ("postgresql.data_dir", "the data directory"),
    (
        "postgresql.config_dir",
        "where the configuration files live",
    ),
    ("postgresql.bin_dir", "where the programs are"),
    (
        "postgresql.pgpass",
        "the password file for replication and rewind",
    ),
    ("postgresql.parameters", "postgresql.conf"),
    (
        "postgresql.parameters.unix_socket_directories",
        "postgresql.conf; local connections",
    ),
    ("postgresql.pg_hba", "pg_hba.conf"),
    ("postgresql.pg_ident", "pg_ident.conf"),
    ("postgresql.pg_ctl_timeout", "bounds pg_ctl"),
    ("postgresql.use_pg_rewind", "rewind of a former primary"),
    (
        "postgresql.use_unix_socket",
        "local connections through the socket",
    ),
    (
        "postgresql.remove_data_directory_on_rewind_failure",
        "re-clone after a failed rewind",
    ),
    (
        "postgresql.remove_data_directory_on_diverged_timelines",
        "re-clone of diverged data without rewind",
    ),
    (
        "postgresql.create_replica_methods",
        "basebackup only; others refused",
    ),
    ("postgresql.callbacks.on_start", "callbacks"),
    ("postgresql.callbacks.on_stop", "callbacks"),
    ("postgresql.callbacks.on_restart", "callbacks"),
    ("postgresql.callbacks.on_reload", "callbacks"),
    ("postgresql.callbacks.on_role_change", "callbacks"),
    ("postgresql.pre_promote", "vetoes a promotion"),
    ("postgresql.before_stop", "runs before a clean stop"),
    ("watchdog.mode", "watchdog"),
    ("watchdog.device", "watchdog"),
    ("watchdog.safety_margin", "watchdog"),
    ("tags.nofailover", "never leads"),
    ("tags.failover_priority", "election preference"),
    ("tags.noloadbalance", "/replica answers 503"),
    ("tags.clonefrom", "published in the member key"),
    ("tags.nosync", "never synchronous"),
    ("tags.sync_priority", "synchronous preference"),
    ("tags.nostream", "no streaming, no slot"),
    (
        "postgresql.authentication.superuser.username",
        "local connections, rewind",
    ),
    (
        "postgresql.authentication.superuser.password",
        "local connections, rewind",
    ),
    (
        "postgresql.authentication.replication.username",
        "streaming and cloning",
    ),
    (
        "postgresql.authentication.replication.password",
        "streaming and cloning",
    ),
    (
        "postgresql.authentication.rewind.username",
        "pg_rewind's connection",
    ),
    (
        "postgresql.authentication.rewind.password",
        "pg_rewind's connection",
    ),
    (
        "postgresql.authentication.superuser.sslmode",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.sslcert",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.sslkey",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.sslpassword",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.sslrootcert",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.sslcrl",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.sslcrldir",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.gssencmode",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.superuser.channel_binding",
        "pg_rewind's --source-server when no rewind role is set",
    ),
    (
        "postgresql.authentication.replication.sslmode",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.sslcert",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.sslkey",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.sslpassword",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.sslrootcert",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.sslcrl",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.sslcrldir",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.gssencmode",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.replication.channel_binding",
        "primary_conninfo and pg_basebackup's connection",
    ),
    (
        "postgresql.authentication.rewind.sslmode",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.sslcert",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.sslkey",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.sslpassword",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.sslrootcert",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.sslcrl",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.sslcrldir",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.gssencmode",
        "pg_rewind's --source-server",
    ),
    (
        "postgresql.authentication.rewind.channel_binding",
        "pg_rewind's --source-server",
    ),
    // The dynamic configuration (`bootstrap.dcs`, then `/config`).
    ("bootstrap.dcs.loop_wait", "the HA loop's period"),
    (
        "bootstrap.dcs.retry_timeout",
        "etcd and PostgreSQL retries, the lease budget",
    ),
    (
        "bootstrap.dcs.maximum_lag_on_failover",
        "who may be promoted",
    ),
    (
        "bootstrap.dcs.maximum_lag_on_syncnode",
        "who may be synchronous",
    ),
    ("bootstrap.dcs.max_timelines_history", "/history trimmed"),
    ("bootstrap.dcs.check_timeline", "the race's timeline check"),
    (
        "bootstrap.dcs.primary_start_timeout",
        "a primary that does not start releases the key",
    ),
    (
        "bootstrap.dcs.primary_stop_timeout",
        "a stop that outlasts it is killed",
    ),
    (
        "bootstrap.dcs.synchronous_mode_strict",
        "strict synchronous mode",
    ),
    (
        "bootstrap.dcs.synchronous_node_count",
        "how many synchronous standbys",
    ),
    ("bootstrap.dcs.failsafe_mode", "failsafe mode"),
    ("bootstrap.dcs.pause", "maintenance mode"),
    (
        "bootstrap.dcs.postgresql.use_pg_rewind",
        "rewind of a former primary",
    ),
    (
        "bootstrap.dcs.postgresql.use_slots",
        "a physical slot per member",
    ),
    (
        "bootstrap.dcs.postgresql.parameters",
        "postgresql.conf on every member",
    ),
    (
        "bootstrap.dcs.postgresql.parameters.max_connections",
        "postgresql.conf",
    ),
    (
        "bootstrap.dcs.postgresql.parameters.max_locks_per_transaction",
        "postgresql.conf",
    ),
    (
        "bootstrap.dcs.postgresql.parameters.max_prepared_transactions",
        "postgresql.conf",
    ),
    (
        "bootstrap.dcs.postgresql.parameters.max_replication_slots",
        "postgresql.conf",
    ),
    (
        "bootstrap.dcs.postgresql.parameters.max_wal_senders",
        "postgresql.conf",
    ),
    (
        "bootstrap.dcs.postgresql.parameters.max_worker_processes",
        "postgresql.conf",
    ),
    (
        "bootstrap.dcs.postgresql.pg_hba",
        "pg_hba.conf on every member",
    ),
    (
        "bootstrap.dcs.postgresql.pg_ident",
        "pg_ident.conf on every member",
    ),
];

/// A value of `kind` for the walk: valid where the kind says enough, else refused with the
/// field named, which counts as not silent too.
fn sample(kind: &str) -> serde_json::Value {
    match kind {
        "bool" => json!(true),
        "int" => json!(7),
        "list" => json!(["x"]),
        "map" => json!({}),
        _ => json!("x"),
    }
}

/// Sets `path` (dotted) in `doc`, creating the mappings on the way.
fn set_path(doc: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut here = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !here.get(*part).is_some_and(serde_json::Value::is_object) {
            here[*part] = json!({});
        }
        here = here.get_mut(*part).expect("just made");
    }
    here[parts[parts.len() - 1]] = value;
}

/// `text` names `path` as a whole (not as the start of a longer key).
fn names_path(text: &str, path: &str) -> bool {
    text.match_indices(path).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + path.len()..].chars().next();
        let boundary =
            |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || "._".contains(c));
        boundary(before) && boundary(after)
    })
}

/// Issue 13, item 6: every key of Patroni 4.1's configuration is honoured (listed in
/// [`HONOURED`]), warned about at start (the warning names it or a section above it), or
/// refused (the error names it). Each key is set on the seed configuration in turn.
#[test]
fn every_patroni_key_is_honoured_warned_about_or_refused() {
    let seed: serde_json::Value = yaml_serde::from_str(&seed_text()).expect("seed YAML");
    let baseline = parse(&seed_text(), &no_env).expect("seed").warnings;
    let keys = include_str!("testdata/patroni-schema-keys.txt");
    let mut silent = Vec::new();
    let mut walked = 0;
    for line in keys
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (path, kind) = line.split_once(' ').expect("path kind");
        walked += 1;
        let mut doc = seed.clone();
        set_path(&mut doc, path, sample(kind));
        let text = serde_json::to_string(&doc).expect("json");
        let ancestors: Vec<&str> = path
            .match_indices('.')
            .map(|(at, _)| &path[..at])
            .chain([path])
            .collect();
        match parse(&text, &no_env) {
            Err(e) => {
                // Refused: the error names the key, or its section (a partner key missing).
                let e = e.to_string();
                let section = path.rsplit_once('.').map_or("", |(s, _)| s);
                assert!(
                    ancestors.iter().any(|a| names_path(&e, a)) || e.contains(section),
                    "{path}: refused without naming it: {e}"
                );
            }
            Ok(loaded) => {
                let warned = loaded
                    .warnings
                    .iter()
                    .filter(|w| !baseline.contains(w))
                    .any(|w| ancestors.iter().any(|a| names_path(w, a)));
                if !warned && !HONOURED.iter().any(|(k, _)| *k == path) {
                    silent.push(path.to_string());
                }
            }
        }
    }
    assert!(walked > 150, "the key list is there ({walked} keys)");
    assert!(
        silent.is_empty(),
        "silently ignored (implement, warn about, or list in HONOURED with where it acts): {silent:#?}"
    );
    let listed: Vec<&str> = keys.lines().filter_map(|l| l.split(' ').next()).collect();
    for (key, _) in HONOURED {
        assert!(
            listed.contains(key),
            "HONOURED names {key}, not a Patroni key"
        );
    }
}
