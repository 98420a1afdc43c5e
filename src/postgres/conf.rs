//! Pure rendering of the files pgwarden owns in the data directory: `postgresql.conf`
//! (which includes initdb's original as `postgresql.base.conf`), `pg_hba.conf`, the
//! pgpass file and `primary_conninfo`. Writing them is `files`' job.

use std::collections::BTreeMap;

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
}

/// Render `primary_conninfo`.
pub fn primary_conninfo(from: &StreamFrom) -> String {
    format!(
        "host={} port={} user={} passfile={} application_name={} connect_timeout=3",
        quote_conninfo(&from.host),
        from.port,
        quote_conninfo(&from.user),
        quote_conninfo(&from.passfile),
        quote_conninfo(&from.application_name)
    )
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

/// Render `pg_hba.conf` from configured lines.
pub fn pg_hba(lines: &[String]) -> String {
    let mut out = String::from("# Written by pgwarden from the pg_hba configuration.\n");
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
        };
        let conf = postgresql_conf(&BTreeMap::new(), Some(&from), "");
        assert!(conf.contains("primary_conninfo = 'host=127.0.0.1 port=5433 user=replicator passfile=/tmp/x/pgpass application_name=node2 connect_timeout=3'"));
        assert!(conf.contains("primary_slot_name = 'node2'"));
        assert!(conf.contains("recovery_target_timeline = 'latest'"));
        let primary = postgresql_conf(&BTreeMap::new(), None, "\"node2\"");
        assert!(!primary.contains("primary_conninfo"));
        assert!(primary.contains("synchronous_standby_names = '\"node2\"'"));
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
