//! Pure rendering of the files pgwarden owns in the data directory: `postgresql.conf`
//! (which includes initdb's original as `postgresql.base.conf`), `pg_hba.conf`, the
//! pgpass file and `primary_conninfo`. Writing them is `files`' job.

use crate::config::LibpqOptions;
use std::collections::{BTreeMap, BTreeSet};

/// Parameters that must be equal on every member; they come from the cluster-wide
/// configuration only and are also passed on the `postgres` command line (Patroni's list).
pub const CLUSTER_WIDE: &[&str] = &[
    "max_connections",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_prepared_transactions",
    "wal_level",
    "track_commit_timestamp",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "wal_keep_segments",
    "wal_log_hints",
];

/// Where a standby streams from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamFrom {
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Replication role.
    pub user: String,
    /// pgpass file holding its password.
    pub passfile: String,
    /// Our member name (application_name, so the primary can name us in sync settings).
    pub application_name: String,
    /// Slot on the upstream, when slots are used.
    pub slot: Option<String>,
    /// The replication role's libpq options (`sslmode`, `sslcert`, ...).
    pub libpq: LibpqOptions,
}

/// Render `primary_conninfo`.
pub fn primary_conninfo(from: &StreamFrom) -> String {
    let mut conninfo = format!(
        "host={} port={} user={} passfile={} application_name={} connect_timeout=3",
        quote_conninfo(&from.host),
        from.port,
        quote_conninfo(&from.user),
        quote_conninfo(&from.passfile),
        quote_conninfo(&from.application_name)
    );
    if !from.libpq.0.is_empty() {
        conninfo.push(' ');
        conninfo.push_str(&libpq_conninfo(&from.libpq.0));
    }
    conninfo
}

/// libpq options as `key=value` pairs of a connection string (`sslmode=verify-ca ...`).
pub fn libpq_conninfo(options: &[(String, String)]) -> String {
    options
        .iter()
        .map(|(k, v)| format!("{k}={}", quote_conninfo(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`libpq_conninfo`] for a program's command line (pg_basebackup, pg_rewind), which any
/// local user can read in the process list: without `sslpassword`.
pub fn libpq_conninfo_for_command(options: &[(String, String)]) -> String {
    let shown: Vec<(String, String)> = options
        .iter()
        .filter(|(k, _)| k != "sslpassword")
        .cloned()
        .collect();
    libpq_conninfo(&shown)
}

fn quote_conninfo(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Quote a value for postgresql.conf.
pub fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Effective parameters: cluster-wide ones from the dynamic configuration, everything else
/// from the dynamic configuration overridden by the local file (Patroni's precedence).
pub fn merge_parameters(
    dynamic: &BTreeMap<String, String>,
    local: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = dynamic.clone();
    for (name, value) in local {
        if !CLUSTER_WIDE.contains(&name.as_str()) || !dynamic.contains_key(name) {
            merged.insert(name.clone(), value.clone());
        }
    }
    merged
}

/// What the PostgreSQL server binary knows: its major version and the parameters
/// `postgres --describe-config` lists (every parameter settable in a file except developer
/// options, which are listed in [`DEVELOPER_PARAMETERS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerParameters {
    /// Major version (13, 14, 15, ...).
    pub major: u32,
    /// Parameter names, lowercase.
    pub names: BTreeSet<String>,
}

impl ServerParameters {
    /// Parses `postgres --describe-config` (tab-separated, the name first) and the major
    /// version from `postgres --version` ("postgres (PostgreSQL) 15.18 ...").
    pub fn parse(describe_config: &str, version: &str) -> Option<ServerParameters> {
        let number = version
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
        let major = number.split(['.', 'b', 'r', 'd']).next()?.parse().ok()?;
        let names = describe_config
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        Some(ServerParameters { major, names })
    }

    fn knows(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.contains(&name) || DEVELOPER_PARAMETERS.contains(&name.as_str())
    }
}

/// Settable in postgresql.conf but not listed by `--describe-config` (developer options
/// and a few others; compared with `pg_settings` of PostgreSQL 15, plus later versions').
pub const DEVELOPER_PARAMETERS: &[&str] = &[
    "allow_in_place_tablespaces",
    "allow_system_table_mods",
    "application_name",
    "backtrace_functions",
    "debug_discard_caches",
    "debug_io_direct",
    "debug_logical_replication_streaming",
    "debug_parallel_query",
    "force_parallel_mode",
    "ignore_checksum_failure",
    "ignore_invalid_pages",
    "ignore_system_indexes",
    "jit_debugging_support",
    "jit_dump_bitcode",
    "jit_expressions",
    "jit_profiling_support",
    "jit_tuple_deforming",
    "post_auth_delay",
    "pre_auth_delay",
    "remove_temp_files_after_crash",
    "restrict_nonsystem_relation_kind",
    "send_abort_for_crash",
    "send_abort_for_kill",
    "trace_notify",
    "trace_recovery_messages",
    "trace_sort",
    "wal_consistency_checking",
    "zero_damaged_pages",
];

/// Parameters PostgreSQL removed or renamed: (name, first major without it, replacement).
pub const RETIRED_PARAMETERS: &[(&str, u32, Option<&str>)] = &[
    ("checkpoint_segments", 10, Some("max_wal_size")),
    ("default_with_oids", 12, None),
    (
        "min_parallel_relation_size",
        10,
        Some("min_parallel_table_scan_size"),
    ),
    ("operator_precedence_warning", 14, None),
    ("replacement_sort_tuples", 11, None),
    ("sql_inheritance", 10, None),
    ("ssl_renegotiation_limit", 10, None),
    ("stats_temp_directory", 15, None),
    ("vacuum_cleanup_index_scale_factor", 14, None),
    ("vacuum_defer_cleanup_age", 16, None),
    ("force_parallel_mode", 16, Some("debug_parallel_query")),
    ("old_snapshot_threshold", 17, None),
    ("db_user_namespace", 17, None),
    ("trace_recovery_messages", 17, None),
    ("wal_keep_segments", 13, Some("wal_keep_size")),
];

/// The parameters as `server` accepts them, and a warning per change: `wal_keep_segments`
/// and `wal_keep_size` are converted into each other by version (16 MB a segment, as
/// Patroni assumes), `wal_level = hot_standby` is written `replica`, and a parameter the
/// server does not know is left out (PostgreSQL would refuse to start), except extension
/// parameters (a dot in the name), which only the loaded extension can check.
pub fn for_server(
    mut params: BTreeMap<String, String>,
    server: &ServerParameters,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let pg = server.major;
    if pg >= 13 {
        if let Some(segments) = params.remove("wal_keep_segments") {
            match (
                params.contains_key("wal_keep_size"),
                segments.trim().parse::<u64>(),
            ) {
                (false, Ok(n)) => {
                    let size = format!("{}MB", n * 16);
                    warnings.push(format!(
                        "wal_keep_segments = {segments} does not exist in PostgreSQL {pg}: \
                         written as wal_keep_size = {size} (16 MB a segment)"
                    ));
                    params.insert("wal_keep_size".into(), size);
                }
                (true, _) => warnings.push(format!(
                    "wal_keep_segments = {segments} does not exist in PostgreSQL {pg}: left \
                     out (wal_keep_size is set)"
                )),
                (false, Err(_)) => warnings.push(format!(
                    "wal_keep_segments = {segments:?} does not exist in PostgreSQL {pg} and is \
                     not a number of segments: left out"
                )),
            }
        }
    } else if let Some(size) = params.remove("wal_keep_size") {
        match parse_megabytes(&size) {
            Some(mb) if !params.contains_key("wal_keep_segments") => {
                let segments = (mb + 8) / 16;
                warnings.push(format!(
                    "wal_keep_size = {size} does not exist in PostgreSQL {pg}: written as \
                     wal_keep_segments = {segments}"
                ));
                params.insert("wal_keep_segments".into(), segments.to_string());
            }
            _ => warnings.push(format!(
                "wal_keep_size = {size} does not exist in PostgreSQL {pg}: left out"
            )),
        }
    }
    if params.get("wal_level").map(String::as_str) == Some("hot_standby") {
        warnings.push("wal_level = hot_standby is written as its current name, replica".into());
        params.insert("wal_level".into(), "replica".into());
    }
    if !server.names.is_empty() {
        params.retain(|name, value| {
            if name.contains('.') || server.knows(name) {
                return true;
            }
            let retired = RETIRED_PARAMETERS
                .iter()
                .find(|(n, since, _)| *n == name.as_str() && pg >= *since);
            warnings.push(match retired {
                Some((_, since, Some(instead))) => format!(
                    "{name} = {value} was replaced by {instead} in PostgreSQL {since}: left out \
                     (set {instead} instead)"
                ),
                Some((_, since, None)) => {
                    format!("{name} = {value} was removed in PostgreSQL {since}: left out")
                }
                None => format!("{name} = {value} is not a parameter of PostgreSQL {pg}: left out"),
            });
            false
        });
    }
    (params, warnings)
}

/// A size in megabytes: a plain number is megabytes (wal_keep_size's unit).
fn parse_megabytes(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit.trim().to_ascii_lowercase().as_str() {
        "" | "mb" => Some(n),
        "kb" => Some(n / 1024),
        "gb" => Some(n * 1024),
        "tb" => Some(n * 1024 * 1024),
        _ => None,
    }
}

/// Render `postgresql.conf`.
pub fn postgresql_conf(
    parameters: &BTreeMap<String, String>,
    standby: Option<&StreamFrom>,
    synchronous_standby_names: &str,
) -> String {
    let mut out = String::from(
        "# Written by pgwarden: edits are overwritten. Change parameters in the pgwarden/Patroni\n\
         # configuration (local file or /config) instead.\n\
         include 'postgresql.base.conf'\n\n",
    );
    let mut params = parameters.clone();
    params.insert(
        "synchronous_standby_names".into(),
        synchronous_standby_names.to_string(),
    );
    match standby {
        Some(from) if from.host.is_empty() => {
            // No leader known: replay local WAL and wait; never stream from nowhere.
            params.remove("primary_conninfo");
            params.remove("primary_slot_name");
            params.insert("recovery_target_timeline".into(), "latest".into());
        }
        Some(from) => {
            params.insert("primary_conninfo".into(), primary_conninfo(from));
            params.insert("recovery_target_timeline".into(), "latest".into());
            match &from.slot {
                Some(slot) => params.insert("primary_slot_name".into(), slot.clone()),
                None => params.remove("primary_slot_name"),
            };
        }
        None => {
            params.remove("primary_conninfo");
            params.remove("primary_slot_name");
        }
    }
    for (name, value) in &params {
        out.push_str(&format!("{name} = {}\n", quote_conf(value)));
    }
    out
}

/// Render a file of configured lines (`pg_hba.conf`, `pg_ident.conf`), saying where they
/// come from (`pg_hba`, `pg_ident`).
pub fn lines_file(source: &str, lines: &[String]) -> String {
    let mut out = format!("# Written by pgwarden from the {source} configuration.\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One pgpass line matching any host, port and database.
pub fn pgpass_line(user: &str, password: &str) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:{}:{}\n", esc(user), esc(password))
}

/// Parse `postgres://host:port/db` (the member key's `conn_url`) into host and port.
pub fn parse_conn_url(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let hostport = rest.split('/').next()?;
    let hostport = hostport.rsplit('@').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, port) = v6.split_once("]:")?;
        return Some((host.to_string(), port.parse().ok()?));
    }
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_parameters_cannot_override_cluster_wide_ones() {
        let dynamic: BTreeMap<String, String> = [
            ("max_connections".into(), "100".into()),
            ("work_mem".into(), "4MB".into()),
        ]
        .into();
        let local: BTreeMap<String, String> = [
            ("max_connections".into(), "5".into()),
            ("work_mem".into(), "8MB".into()),
        ]
        .into();
        let merged = merge_parameters(&dynamic, &local);
        assert_eq!(merged["max_connections"], "100");
        assert_eq!(merged["work_mem"], "8MB");
    }

    #[test]
    fn standby_conf_names_upstream_slot_and_timeline() {
        let from = StreamFrom {
            host: "127.0.0.1".into(),
            port: 5433,
            user: "replicator".into(),
            passfile: "/tmp/x/pgpass".into(),
            application_name: "node2".into(),
            slot: Some("node2".into()),
            libpq: LibpqOptions::default(),
        };
        let conf = postgresql_conf(&BTreeMap::new(), Some(&from), "");
        assert!(conf.contains("primary_conninfo = 'host=127.0.0.1 port=5433 user=replicator passfile=/tmp/x/pgpass application_name=node2 connect_timeout=3'"));
        let tls = StreamFrom {
            libpq: LibpqOptions(vec![
                ("sslmode".into(), "verify-ca".into()),
                ("sslcert".into(), "/etc/pki/my cert.crt".into()),
            ]),
            ..from.clone()
        };
        assert!(primary_conninfo(&tls)
            .ends_with("connect_timeout=3 sslmode=verify-ca sslcert='/etc/pki/my cert.crt'"));
        let mut with_password = tls.libpq.0.clone();
        with_password.push(("sslpassword".into(), "s3cret".into()));
        assert_eq!(
            libpq_conninfo_for_command(&with_password),
            "sslmode=verify-ca sslcert='/etc/pki/my cert.crt'"
        );
        assert!(conf.contains("primary_slot_name = 'node2'"));
        assert!(conf.contains("recovery_target_timeline = 'latest'"));
        let primary = postgresql_conf(&BTreeMap::new(), None, "\"node2\"");
        assert!(!primary.contains("primary_conninfo"));
        assert!(primary.contains("synchronous_standby_names = '\"node2\"'"));
    }

    fn pg15() -> ServerParameters {
        ServerParameters {
            major: 15,
            names: [
                "wal_keep_size",
                "wal_level",
                "work_mem",
                "max_wal_size",
                "port",
            ]
            .map(String::from)
            .into(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wal_keep_segments_becomes_wal_keep_size_on_13_and_later() {
        let (out, warnings) = for_server(params(&[("wal_keep_segments", "100")]), &pg15());
        assert_eq!(out, params(&[("wal_keep_size", "1600MB")]));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("wal_keep_size = 1600MB"),
            "{warnings:?}"
        );
        // An explicit wal_keep_size wins.
        let (out, _) = for_server(
            params(&[("wal_keep_segments", "100"), ("wal_keep_size", "256MB")]),
            &pg15(),
        );
        assert_eq!(out, params(&[("wal_keep_size", "256MB")]));
        // And the other way round before 13.
        let pg12 = ServerParameters {
            major: 12,
            names: ["wal_keep_segments"].map(String::from).into(),
        };
        let (out, _) = for_server(params(&[("wal_keep_size", "1GB")]), &pg12);
        assert_eq!(out, params(&[("wal_keep_segments", "64")]));
    }

    #[test]
    fn unknown_and_retired_parameters_are_left_out_with_a_reason() {
        let (out, warnings) = for_server(
            params(&[
                ("checkpoint_segments", "8"),
                ("stats_temp_directory", "/tmp"),
                ("no_such_thing", "1"),
                ("work_mem", "4MB"),
                ("pg_stat_statements.max", "100"),
                ("zero_damaged_pages", "off"),
                ("wal_level", "hot_standby"),
            ]),
            &pg15(),
        );
        assert_eq!(
            out,
            params(&[
                ("pg_stat_statements.max", "100"),
                ("wal_level", "replica"),
                ("work_mem", "4MB"),
                ("zero_damaged_pages", "off"),
            ])
        );
        let all = warnings.join("\n");
        assert!(
            all.contains("checkpoint_segments = 8 was replaced by max_wal_size in PostgreSQL 10"),
            "{all}"
        );
        assert!(
            all.contains("stats_temp_directory = /tmp was removed in PostgreSQL 15"),
            "{all}"
        );
        assert!(
            all.contains("no_such_thing = 1 is not a parameter of PostgreSQL 15"),
            "{all}"
        );
        // Without the server's list nothing is left out.
        let (out, _) = for_server(
            params(&[("no_such_thing", "1")]),
            &ServerParameters {
                major: 15,
                names: BTreeSet::new(),
            },
        );
        assert_eq!(out, params(&[("no_such_thing", "1")]));
    }

    #[test]
    fn server_parameters_parse_describe_config_and_version() {
        let s = ServerParameters::parse(
            "archive_command\tsighup\tWAL\tSTRING\n\nWal_Keep_Size\tsighup\tx\n",
            "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n",
        )
        .expect("parsed");
        assert_eq!(s.major, 15);
        assert!(s.knows("wal_keep_size") && s.knows("archive_command"));
        assert_eq!(
            ServerParameters::parse("", "postgres (PostgreSQL) 17beta1").map(|s| s.major),
            Some(17)
        );
    }

    #[test]
    fn conn_urls_and_pgpass_escape() {
        assert_eq!(
            parse_conn_url("postgres://127.0.0.1:5433/postgres"),
            Some(("127.0.0.1".into(), 5433))
        );
        assert_eq!(
            parse_conn_url("postgres://db1/postgres"),
            Some(("db1".into(), 5432))
        );
        assert_eq!(parse_conn_url("http://x"), None);
        assert_eq!(pgpass_line("u", "a:b\\c"), "*:*:*:u:a\\:b\\\\c\n");
        assert_eq!(quote_conf("it's"), "'it''s'");
    }
}
