//! The local `postgresql:` section and the option lists shared with `bootstrap.initdb`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::address::{HostPort, ListenAddress};
use super::dynamic::parse_parameters;
use super::error::{join, ConfigError};
use super::model::{
    Authentication, Credentials, InitdbOption, LibpqOptions, PostgresqlConfig, RoleLibpqOptions,
};
use super::tree::{self, Section};
use crate::core::CallbackKind;

const UNSUPPORTED: &[&str] = &[
    "proxy_address",
    "bin_name",
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
    "pg_hba_primary",
    "pg_hba_replica",
    "pg_hba_standby_leader",
    "pg_ident_primary",
    "pg_ident_replica",
    "pg_ident_standby_leader",
    "custom_conf",
    "recovery_conf",
    "use_unix_socket_repl",
    "rewind",
];

/// libpq connection options Patroni accepts beside username/password, all of which
/// PostgreSQL 15's libpq knows: they go into every connection made as the role.
const LIBPQ_OPTIONS: &[&str] = &[
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
];

/// libpq options newer than PostgreSQL 15's libpq (`sslnegotiation` is 17's).
const LIBPQ_TOO_NEW: &[&str] = &["sslnegotiation"];

/// Parameters Patroni ignores in the local configuration: they must match cluster-wide
/// (so they live in `/config`) or are derived from other keys.
const LOCAL_FORBIDDEN_PARAMETERS: &[&str] = &[
    "listen_addresses",
    "port",
    "cluster_name",
    "wal_level",
    "hot_standby",
    "max_connections",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "track_commit_timestamp",
    "max_replication_slots",
    "max_worker_processes",
    "wal_log_hints",
    "wal_keep_segments",
    "wal_keep_size",
];

/// initdb options the agent sets itself (Patroni refuses them the same way).
pub(crate) const INITDB_FORBIDDEN: &[&str] =
    &["pgdata", "nosync", "pwfile", "sync-only", "version"];
/// pg_basebackup options the agent sets itself.
const BASEBACKUP_FORBIDDEN: &[&str] = &["pgdata", "format", "wal-method", "xlog-method"];

/// Builds [`PostgresqlConfig`] from the `postgresql:` section.
pub(crate) fn parse(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<PostgresqlConfig, ConfigError> {
    let listen_path = s.key_path("listen");
    let listen: ListenAddress = match s.get("listen") {
        Some(v) => tree::string(&listen_path, v)?
            .parse()
            .map_err(|e: super::address::AddressError| ConfigError::new(&listen_path, e.message))?,
        None => {
            return Err(ConfigError::new(
                listen_path,
                "missing (expected host:port, e.g. 0.0.0.0:5432)",
            ))
        }
    };
    let ca_path = s.key_path("connect_address");
    let connect_address = match s.get("connect_address") {
        Some(v) => {
            let hp: HostPort = tree::string(&ca_path, v)?
                .parse()
                .map_err(|e: super::address::AddressError| ConfigError::new(&ca_path, e.message))?;
            if hp.is_wildcard() {
                return Err(ConfigError::new(
                    ca_path,
                    format!("{hp} is a wildcard address other members cannot connect to"),
                ));
            }
            hp
        }
        None => {
            let host = listen.local_host();
            if listen
                .hosts
                .iter()
                .all(|h| super::address::is_wildcard_host(h))
            {
                return Err(ConfigError::new(
                    ca_path,
                    format!(
                        "missing, and postgresql.listen {listen} only has wildcard hosts other \
                         members cannot connect to"
                    ),
                ));
            }
            let hp = HostPort {
                host,
                port: listen.port,
            };
            warnings.push(format!(
                "key `{ca_path}` missing; using {hp} from postgresql.listen (Patroni requires it)"
            ));
            hp
        }
    };

    let data_dir = match s.get("data_dir") {
        Some(v) => {
            let d = tree::string(&s.key_path("data_dir"), v)?;
            if d.trim().is_empty() {
                return Err(ConfigError::new(s.key_path("data_dir"), "is empty"));
            }
            PathBuf::from(d)
        }
        None => {
            return Err(ConfigError::new(
                s.key_path("data_dir"),
                "missing (expected the PostgreSQL data directory)",
            ))
        }
    };
    let config_dir = optional_path(&mut s, "config_dir")?;
    let bin_dir = optional_path(&mut s, "bin_dir")?;
    let pgpass = optional_path(&mut s, "pgpass")?;

    let authentication = match s.section("authentication")? {
        Some(a) => parse_authentication(a, warnings)?,
        None => {
            return Err(ConfigError::new(
                s.key_path("authentication"),
                "missing (superuser and replication credentials are required)",
            ))
        }
    };

    let mut parameters = BTreeMap::new();
    if let Some(v) = s.get("parameters") {
        let path = s.key_path("parameters");
        parameters = parse_parameters(&path, v)?;
        parameters.retain(|name, _| {
            let lower = name.to_ascii_lowercase();
            if !LOCAL_FORBIDDEN_PARAMETERS.contains(&lower.as_str()) {
                return true;
            }
            let why = match lower.as_str() {
                "listen_addresses" | "port" => "it is set from postgresql.listen",
                "cluster_name" => "it is set from scope",
                _ => "it is settable only in the dynamic configuration (bootstrap.dcs or /config)",
            };
            warnings.push(format!(
                "key `{}` ignored: {why}, as in Patroni",
                join(&path, name)
            ));
            false
        });
        if parameters.contains_key("wal_receiver_status_interval") {
            // Kept (PostgreSQL takes it), but the primary judges its standbys' silence by
            // the cluster-wide value (see core::replies): a longer local one reads as silence.
            warnings.push(format!(
                "key `{}`: the primary judges standbys' replies by the value in the dynamic \
                 configuration (bootstrap.dcs or /config, default 1s); set it there so every \
                 node agrees",
                join(&path, "wal_receiver_status_interval")
            ));
        }
    }
    let pg_hba = match s.get("pg_hba") {
        Some(v) => Some(tree::string_list(&s.key_path("pg_hba"), v, false)?),
        None => None,
    };
    let pg_ident = match s.get("pg_ident") {
        Some(v) => Some(tree::string_list(&s.key_path("pg_ident"), v, false)?),
        None => None,
    };
    let pg_ctl_timeout_secs = match s.get("pg_ctl_timeout") {
        Some(v) => tree::whole(
            &s.key_path("pg_ctl_timeout"),
            v,
            "a whole number of seconds",
        )?,
        None => 60,
    };
    let use_pg_rewind = match s.get("use_pg_rewind") {
        Some(v) => Some(tree::boolean(&s.key_path("use_pg_rewind"), v)?),
        None => None,
    };
    let flag = |s: &mut Section<'_>, key: &str| -> Result<bool, ConfigError> {
        let path = s.key_path(key);
        s.get(key).map_or(Ok(false), |v| tree::boolean(&path, v))
    };
    let remove_data_directory_on_rewind_failure =
        flag(&mut s, "remove_data_directory_on_rewind_failure")?;
    let remove_data_directory_on_diverged_timelines =
        flag(&mut s, "remove_data_directory_on_diverged_timelines")?;
    let use_unix_socket = flag(&mut s, "use_unix_socket")?;
    let callbacks = match s.section("callbacks")? {
        Some(c) => parse_callbacks(c, warnings)?,
        None => BTreeMap::new(),
    };
    let pre_promote = optional_command(&mut s, "pre_promote")?;
    let before_stop = optional_command(&mut s, "before_stop")?;
    let basebackup = match s.get("basebackup") {
        Some(v) => parse_options(&s.key_path("basebackup"), v, BASEBACKUP_FORBIDDEN, warnings)?,
        None => Vec::new(),
    };

    // Patroni reads `postgresql.<method>` for every custom replica-creation method named in
    // create_replica_methods; those sections are known, just not acted on.
    if let Some(v) = s.get("create_replica_methods") {
        let path = s.key_path("create_replica_methods");
        let methods = tree::string_list(&path, v, false)?;
        if methods.iter().any(|m| m != "basebackup") {
            warnings.push(format!(
                "key `{path}` accepted but not yet supported by pgwarden; replicas are created \
                 with pg_basebackup"
            ));
        }
        let custom: Vec<&str> = methods
            .iter()
            .map(String::as_str)
            .filter(|m| *m != "basebackup")
            .collect();
        s.unsupported(&custom);
    }
    s.unsupported(UNSUPPORTED);
    s.finish(warnings);

    Ok(PostgresqlConfig {
        listen,
        connect_address,
        data_dir,
        config_dir,
        bin_dir,
        pgpass,
        authentication: {
            warn_agent_connection_without_tls(&authentication, &parameters, warnings);
            authentication
        },
        parameters,
        pg_hba,
        pg_ident,
        pg_ctl_timeout_secs,
        use_pg_rewind,
        remove_data_directory_on_rewind_failure,
        remove_data_directory_on_diverged_timelines,
        basebackup,
        use_unix_socket,
        callbacks,
        pre_promote,
        before_stop,
    })
}

/// `postgresql.callbacks`: a command per callback Patroni knows; another key is warned
/// about (Patroni ignores it too).
fn parse_callbacks(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<CallbackKind, Vec<String>>, ConfigError> {
    let mut callbacks = BTreeMap::new();
    for kind in CallbackKind::ALL {
        if let Some(command) = optional_command(&mut s, kind.name())? {
            callbacks.insert(kind, command);
        }
    }
    s.finish(warnings);
    Ok(callbacks)
}

/// A script's command line, split as a shell would; empty means unset.
fn optional_command(s: &mut Section<'_>, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let path = s.key_path(key);
    let Some(v) = s.get(key) else {
        return Ok(None);
    };
    let command = tree::string(&path, v)?;
    if command.trim().is_empty() {
        return Ok(None);
    }
    crate::postgres::hooks::split_command(&command)
        .map(Some)
        .map_err(|e| ConfigError::new(path, format!("{command:?} {e}")))
}

/// An optional path; an empty string means unset (Patroni's default `bin_dir` is `''`).
fn optional_path(s: &mut Section<'_>, key: &str) -> Result<Option<PathBuf>, ConfigError> {
    let path = s.key_path(key);
    match s.get(key) {
        Some(v) => {
            let p = tree::string(&path, v)?;
            Ok((!p.trim().is_empty()).then(|| PathBuf::from(p)))
        }
        None => Ok(None),
    }
}

fn parse_authentication(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<Authentication, ConfigError> {
    fn required(
        s: &mut Section<'_>,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(Credentials, LibpqOptions), ConfigError> {
        match s.section(key)? {
            Some(c) => parse_role(c, warnings),
            None => Err(ConfigError::new(
                s.key_path(key),
                "missing (expected username and password)",
            )),
        }
    }
    let (superuser, superuser_libpq) = required(&mut s, "superuser", warnings)?;
    let (replication, replication_libpq) = required(&mut s, "replication", warnings)?;
    let (rewind, rewind_libpq) = match s.section("rewind")? {
        Some(c) => {
            let (credentials, libpq) = parse_role(c, warnings)?;
            (Some(credentials), Some(libpq))
        }
        None => (None, None),
    };
    s.finish(warnings);
    Ok(Authentication {
        superuser,
        replication,
        rewind,
        libpq: RoleLibpqOptions {
            superuser: superuser_libpq,
            replication: replication_libpq,
            rewind: rewind_libpq,
        },
    })
}

/// The agent's own connection to its PostgreSQL (tokio-postgres, without TLS) goes over
/// the Unix socket when `unix_socket_directories` names one, else over TCP: a superuser
/// `sslmode` that demands TLS cannot be honoured there, only by the libpq tools.
fn warn_agent_connection_without_tls(
    authentication: &Authentication,
    parameters: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) {
    let over_socket = parameters
        .get("unix_socket_directories")
        .is_some_and(|dirs| dirs.split(',').any(|d| !d.trim().is_empty()));
    let demands_tls = authentication.libpq.superuser.0.iter().any(|(k, v)| {
        k == "sslmode" && matches!(v.as_str(), "require" | "verify-ca" | "verify-full")
    });
    if demands_tls && !over_socket {
        warnings.push(
            "postgresql.authentication.superuser.sslmode: the agent's own connection to \
             PostgreSQL is made without TLS (over TCP, as unix_socket_directories is not set); \
             pg_rewind and the other libpq tools use it. Set unix_socket_directories so the \
             agent connects over the socket"
                .into(),
        );
    }
}

/// A PostgreSQL role: `{username, password}` and its libpq options (`sslmode`, ...).
fn parse_role(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Credentials, LibpqOptions), ConfigError> {
    let mut libpq = Vec::new();
    for key in LIBPQ_OPTIONS {
        if let Some(v) = s.get(key) {
            let path = s.key_path(key);
            let value = if *key == "sslpassword" {
                tree::secret(&path, v)?
            } else {
                tree::string(&path, v)?
            };
            if value.trim().is_empty() {
                return Err(ConfigError::new(path, "expected a value (or leave it out)"));
            }
            // It is written into postgresql.conf (primary_conninfo), one line per setting.
            if value.chars().any(char::is_control) {
                return Err(ConfigError::new(
                    path,
                    "expected a value without control characters (a line break would break \
                     postgresql.conf)",
                ));
            }
            if *key == "sslpassword" {
                warnings.push(format!(
                    "{path}: given to PostgreSQL in primary_conninfo only; pg_basebackup and \
                     pg_rewind run without it (a command line shows in the process list), so \
                     their key must not need it"
                ));
            }
            libpq.push((key.to_string(), value));
        }
    }
    s.unsupported(LIBPQ_TOO_NEW);
    let credentials = parse_credentials(s, warnings, false)?;
    Ok((credentials, LibpqOptions(libpq)))
}

/// Reads `{username, password}`; `password_required` for HTTP Basic auth.
pub(crate) fn parse_credentials(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
    password_required: bool,
) -> Result<Credentials, ConfigError> {
    let user_path = s.key_path("username");
    let username = match s.get("username") {
        Some(v) => tree::string(&user_path, v)?,
        None => String::new(),
    };
    if username.trim().is_empty() {
        return Err(ConfigError::new(
            user_path,
            "missing (a user name is required)",
        ));
    }
    let pw_path = s.key_path("password");
    let password = match s.get("password") {
        Some(v) => Some(tree::secret(&pw_path, v)?),
        None => None,
    };
    if password_required && password.is_none() {
        return Err(ConfigError::new(
            pw_path,
            "missing (a password is required)",
        ));
    }
    s.finish(warnings);
    Ok(Credentials { username, password })
}

/// Parses an option list (`bootstrap.initdb`, `postgresql.basebackup`): items are a bare
/// name (`- data-checksums`) or a one-pair mapping (`- encoding: UTF8`); a plain mapping
/// (`{max-rate: 100M}`) is accepted too. Options the agent sets itself are dropped with a
/// warning, as Patroni does.
pub(crate) fn parse_options(
    path: &str,
    v: &Value,
    forbidden: &[&str],
    warnings: &mut Vec<String>,
) -> Result<Vec<InitdbOption>, ConfigError> {
    let mut out = Vec::new();
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let ipath = format!("{path}[{i}]");
                match item {
                    Value::String(_) | Value::Number(_) => {
                        let name = option_name(&ipath, &tree::string(&ipath, item)?)?;
                        out.push(InitdbOption::Flag(name));
                    }
                    Value::Object(m) if m.len() == 1 => {
                        for (k, val) in m {
                            out.push(pair(&ipath, k, val)?);
                        }
                    }
                    other => {
                        return Err(ConfigError::new(
                            ipath,
                            format!(
                                "expected an option name or a single `name: value` pair, found {}",
                                tree::render(other)
                            ),
                        ))
                    }
                }
            }
        }
        Value::Object(m) => {
            for (k, val) in m {
                out.push(pair(path, k, val)?);
            }
        }
        other => {
            return Err(ConfigError::new(
                path,
                format!("expected a list of options, found {}", tree::render(other)),
            ))
        }
    }
    out.retain(|o| {
        if forbidden.contains(&o.name()) {
            warnings.push(format!(
                "option `{}` in `{path}` ignored: pgwarden sets it itself",
                o.name()
            ));
            false
        } else {
            true
        }
    });
    Ok(out)
}

fn option_name(path: &str, raw: &str) -> Result<String, ConfigError> {
    // Tolerate `--data-checksums`: the dashes are added back by to_arg().
    let name = raw.trim().trim_start_matches('-');
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('=') {
        return Err(ConfigError::new(
            path,
            format!("{raw:?} is not an option name"),
        ));
    }
    Ok(name.to_string())
}

fn pair(path: &str, key: &str, val: &Value) -> Result<InitdbOption, ConfigError> {
    let name = option_name(path, key)?;
    if val.is_null() {
        return Ok(InitdbOption::Flag(name));
    }
    let value = tree::string(&join(path, key), val)?;
    Ok(InitdbOption::Value(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pg(v: Value) -> Result<(PostgresqlConfig, Vec<String>), ConfigError> {
        let s = Section::new("postgresql", &v)?;
        let mut w = Vec::new();
        let c = parse(s, &mut w)?;
        Ok((c, w))
    }

    fn base() -> Value {
        json!({
            "listen": "0.0.0.0:5432",
            "connect_address": "10.0.0.1:5432",
            "data_dir": "/data",
            "authentication": {
                "superuser": {"username": "postgres", "password": "s"},
                "replication": {"username": "replicator", "password": "r"}
            }
        })
    }

    #[test]
    fn minimal_section_gets_defaults() {
        let (c, w) = pg(base()).expect("valid");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.pg_ctl_timeout_secs, 60);
        assert_eq!(c.use_pg_rewind, None);
        assert!(c.bin_dir.is_none());
        assert!(c.authentication.rewind.is_none());
        assert_eq!(c.authentication.superuser.password.as_deref(), Some("s"));
    }

    #[test]
    fn callbacks_and_hooks_are_split_and_checked() {
        let mut v = base();
        v["callbacks"] = json!({
            "on_role_change": "/usr/local/bin/vip.sh --dev 'eth 0'",
            "on_stop": "",
            "on_promote": "/bin/true"
        });
        v["pre_promote"] = json!("/usr/local/bin/fence.sh");
        let (c, w) = pg(v).expect("valid");
        assert_eq!(
            c.callbacks[&CallbackKind::OnRoleChange],
            vec!["/usr/local/bin/vip.sh", "--dev", "eth 0"]
        );
        assert_eq!(c.callbacks.len(), 1, "an empty command is no callback");
        assert_eq!(c.pre_promote, Some(vec!["/usr/local/bin/fence.sh".into()]));
        assert_eq!(c.before_stop, None);
        assert!(
            w.iter()
                .any(|x| x.contains("unknown key `postgresql.callbacks.on_promote`")),
            "{w:?}"
        );
        let mut v = base();
        v["before_stop"] = json!("/bin/stop 'unclosed");
        let e = pg(v).expect_err("bad quoting");
        assert_eq!(e.path, "postgresql.before_stop");
        assert!(e.to_string().contains("unclosed quote"), "{e}");
    }

    #[test]
    fn cluster_wide_parameters_are_dropped_locally() {
        let mut v = base();
        v["parameters"] = json!({"max_connections": 100, "work_mem": "4MB", "Port": 1});
        let (c, w) = pg(v).expect("valid");
        assert_eq!(c.parameters.len(), 1);
        assert_eq!(c.parameters["work_mem"], "4MB");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w
            .iter()
            .any(|x| x.contains("`postgresql.parameters.max_connections` ignored")));
    }

    #[test]
    fn missing_pieces_are_named() {
        let mut v = base();
        v.as_object_mut().map(|m| m.remove("data_dir"));
        assert_eq!(pg(v).expect_err("no data_dir").path, "postgresql.data_dir");
        let mut v = base();
        v["authentication"]["replication"] = json!({"password": "x"});
        assert_eq!(
            pg(v).expect_err("no user").path,
            "postgresql.authentication.replication.username"
        );
        let mut v = base();
        v["authentication"]
            .as_object_mut()
            .map(|m| m.remove("superuser"));
        assert_eq!(
            pg(v).expect_err("no superuser").path,
            "postgresql.authentication.superuser"
        );
        let mut v = base();
        v["listen"] = json!("0.0.0.0");
        let e = pg(v).expect_err("no port");
        assert_eq!(
            e.to_string(),
            "postgresql.listen: \"0.0.0.0\" has no port (expected host:port)"
        );
    }

    #[test]
    fn connect_address_rules() {
        let mut v = base();
        v["connect_address"] = json!("0.0.0.0:5432");
        assert!(pg(v).expect_err("wildcard").message.contains("wildcard"));
        let mut v = base();
        v.as_object_mut().map(|m| m.remove("connect_address"));
        assert!(pg(v)
            .expect_err("wildcard listen")
            .message
            .contains("wildcard"));
        let mut v = base();
        v.as_object_mut().map(|m| m.remove("connect_address"));
        v["listen"] = json!("127.0.0.1:5433");
        let (c, w) = pg(v).expect("defaulted");
        assert_eq!(c.connect_address.to_string(), "127.0.0.1:5433");
        assert!(w[0].contains("connect_address"), "{w:?}");
    }

    #[test]
    fn option_lists() {
        let mut w = Vec::new();
        let o = parse_options(
            "bootstrap.initdb",
            &json!(["data-checksums", {"encoding": "UTF8"}, "--nosync", {"locale": "C"}]),
            INITDB_FORBIDDEN,
            &mut w,
        )
        .expect("valid");
        assert_eq!(
            o.iter().map(InitdbOption::to_arg).collect::<Vec<_>>(),
            vec!["--data-checksums", "--encoding=UTF8", "--locale=C"]
        );
        assert_eq!(w.len(), 1);
        let o = parse_options(
            "b",
            &json!({"max-rate": "100M", "checkpoint": "fast"}),
            &[],
            &mut w,
        )
        .expect("mapping form");
        assert!(o.contains(&InitdbOption::Value("max-rate".into(), "100M".into())));
        let e = parse_options("b", &json!([{"a": 1, "b": 2}]), &[], &mut w).expect_err("two");
        assert_eq!(e.path, "b[0]");
        assert!(parse_options("b", &json!("x"), &[], &mut w).is_err());
    }

    #[test]
    fn custom_replica_methods_are_known() {
        let mut v = base();
        v["create_replica_methods"] = json!(["pgbackrest", "basebackup"]);
        v["pgbackrest"] = json!({"command": "x"});
        let (_, w) = pg(v).expect("valid");
        assert!(w.iter().all(|x| !x.starts_with("unknown")), "{w:?}");
        assert!(
            w.iter()
                .any(|x| x.contains("`postgresql.pgbackrest` accepted")),
            "{w:?}"
        );
    }
}
