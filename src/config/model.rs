//! The typed, validated local configuration. Values here have passed every check in this
//! module; the rest of the crate reads them and never re-validates.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::address::{HostPort, ListenAddress};
use super::dynamic::DynamicConfig;

/// A node's whole local configuration (Patroni's YAML plus `PATRONI_*` overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Cluster name; the second segment of every DCS key.
    pub scope: String,
    /// DCS key prefix, normalised: leading `/`, no trailing `/`, no doubled `/`
    /// (`/service/` becomes `/service`; `/` becomes the empty string). Keys live under
    /// `{namespace}/{scope}/`.
    pub namespace: String,
    /// This member's name, unique in the cluster.
    pub name: String,
    /// REST API listener and advertised address.
    pub restapi: RestApiConfig,
    /// How the agent calls its peers' REST APIs (`ctl:`; credentials and TLS).
    pub ctl: super::ctl::ApiClientConfig,
    /// How to reach etcd (v3 API).
    pub etcd: EtcdConfig,
    /// Settings used only when this node initialises a new cluster.
    pub bootstrap: BootstrapConfig,
    /// The local PostgreSQL instance.
    pub postgresql: PostgresqlConfig,
    /// The Linux watchdog.
    pub watchdog: WatchdogConfig,
    /// Member tags.
    pub tags: Tags,
    /// pgwarden's own settings (`pgwarden:` section; Patroni ignores it).
    pub pgwarden: PgwardenConfig,
    /// The failover policy (`policy:` section; Patroni ignores it).
    pub policy: super::policy::LocalPolicyConfig,
    /// Where traces go (`telemetry:` section; Patroni has none).
    pub telemetry: super::telemetry::TelemetryConfig,
    /// `log:` (Patroni's).
    pub log: super::log::LogConfig,
}

impl Config {
    /// The top-level sections (YAML names) in which `other` differs from `self`.
    pub fn changed_sections(&self, other: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                changed.push(name);
            }
        };
        check("scope", self.scope != other.scope);
        check("namespace", self.namespace != other.namespace);
        check("name", self.name != other.name);
        check("restapi", self.restapi != other.restapi);
        check("ctl", self.ctl != other.ctl);
        check("etcd3", self.etcd != other.etcd);
        check("bootstrap", self.bootstrap != other.bootstrap);
        check("postgresql", self.postgresql != other.postgresql);
        check("watchdog", self.watchdog != other.watchdog);
        check("tags", self.tags != other.tags);
        check("pgwarden", self.pgwarden != other.pgwarden);
        check("policy", self.policy != other.policy);
        check("telemetry", self.telemetry != other.telemetry);
        check("log", self.log != other.log);
        changed
    }

    /// Every secret value the file holds (passwords, key passphrases, exporter header
    /// values), for the outputs that must never show one to redact them by value.
    pub fn secret_values(&self) -> Vec<String> {
        let auth = &self.postgresql.authentication;
        let passwords = [
            self.restapi.authentication.as_ref(),
            self.ctl.credentials.as_ref(),
            Some(&auth.superuser),
            Some(&auth.replication),
            auth.rewind.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|c| c.password.clone());
        let keys = [
            self.restapi
                .tls
                .as_ref()
                .and_then(|t| t.keyfile_password.as_ref()),
            self.ctl.tls.keyfile_password.as_ref(),
            self.etcd.tls.key_password.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|s| s.0.clone());
        let headers = self.telemetry.headers.iter().map(|(_, v)| v.0.clone());
        let libpq = &auth.libpq;
        let ssl_passwords = libpq
            .superuser
            .secrets()
            .chain(libpq.replication.secrets())
            .chain(libpq.rewind.iter().flat_map(LibpqOptions::secrets))
            .cloned()
            .collect::<Vec<_>>();
        passwords
            .chain(self.etcd.password.clone())
            .chain(keys)
            .chain(headers)
            .chain(ssl_passwords)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// `restapi:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApiConfig {
    /// Address the API binds to.
    pub listen: HostPort,
    /// Address other members and tools use (`api_url` in the member key); defaults to
    /// `listen` when absent, with a warning.
    pub connect_address: HostPort,
    /// Basic-auth credentials protecting the unsafe (non-GET) endpoints.
    pub authentication: Option<Credentials>,
    /// TLS, when `certfile` is set.
    pub tls: Option<super::tls::ServerTls>,
    /// `cafile`: the CA of client certificates, and towards peers when `ctl.cacert` is
    /// absent.
    pub cafile: Option<PathBuf>,
    /// `allowlist`, `allowlist_include_members` and the extra headers.
    pub access: super::access::ApiAccess,
}

impl RestApiConfig {
    /// `https` with TLS, else `http`: the scheme of this member's `api_url`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// `etcd3:` section, resolved to a list of endpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// etcd client endpoints, in configured order.
    pub hosts: Vec<HostPort>,
    /// `http` or `https`.
    pub protocol: String,
    /// etcd user for authentication, if any.
    pub username: Option<String>,
    /// etcd password, if any.
    pub password: Option<String>,
    /// TLS settings, used with `https`.
    pub tls: super::tls::EtcdTls,
}

/// The password never shows in `Debug` output.
impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("hosts", &self.hosts)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// `bootstrap:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    /// The initial cluster-wide `/config` document (`bootstrap.dcs`).
    pub dcs: DynamicConfig,
    /// Options passed to `initdb`.
    pub initdb: Vec<InitdbOption>,
    /// pg_hba.conf lines written after initdb.
    pub pg_hba: Vec<String>,
    /// `bootstrap.method` when it names something other than `initdb` (not implemented:
    /// such a node refuses to bootstrap a new cluster).
    pub custom_method: Option<String>,
}

/// One `initdb` (or `pg_basebackup`) option, as Patroni lists them in YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitdbOption {
    /// `- data-checksums`: a switch without a value.
    Flag(String),
    /// `- encoding: UTF8`: an option with a value.
    Value(String, String),
}

impl InitdbOption {
    /// The option's name without leading dashes.
    pub fn name(&self) -> &str {
        match self {
            InitdbOption::Flag(n) | InitdbOption::Value(n, _) => n,
        }
    }

    /// The command-line argument: `--data-checksums` or `--encoding=UTF8`.
    pub fn to_arg(&self) -> String {
        match self {
            InitdbOption::Flag(n) => format!("--{n}"),
            InitdbOption::Value(n, v) => format!("--{n}={v}"),
        }
    }
}

/// `postgresql:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresqlConfig {
    /// `listen_addresses` and `port`.
    pub listen: ListenAddress,
    /// Address other members connect to (`conn_url` in the member key).
    pub connect_address: HostPort,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// Where postgresql.conf lives when not in the data directory.
    pub config_dir: Option<PathBuf>,
    /// Directory of the PostgreSQL binaries; `None` means search `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Where to write the pgpass file used for replication and rewind connections.
    pub pgpass: Option<PathBuf>,
    /// Roles the agent connects as.
    pub authentication: Authentication,
    /// Local PostgreSQL settings, rendered as PostgreSQL text. Parameters that Patroni
    /// allows only in the dynamic configuration (`max_connections`, `wal_level`, ...) are
    /// dropped here with a warning, as Patroni ignores them locally.
    pub parameters: BTreeMap<String, String>,
    /// Local pg_hba.conf lines; when set they win over the dynamic ones.
    pub pg_hba: Option<Vec<String>>,
    /// Local pg_ident.conf lines; when set they win over the dynamic ones.
    pub pg_ident: Option<Vec<String>>,
    /// Seconds to wait for `pg_ctl` start/stop/promote.
    pub pg_ctl_timeout_secs: u64,
    /// Local override of the dynamic `postgresql.use_pg_rewind`.
    pub use_pg_rewind: Option<bool>,
    /// Wipe the data directory (and re-clone) when pg_rewind fails.
    pub remove_data_directory_on_rewind_failure: bool,
    /// Wipe the data directory (and re-clone) when timelines diverged and rewind is off.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Options passed to `pg_basebackup` when cloning.
    pub basebackup: Vec<InitdbOption>,
    /// Connect to the local instance over its Unix socket rather than TCP.
    pub use_unix_socket: bool,
    /// `callbacks`: the command run for each callback, split into arguments.
    pub callbacks: BTreeMap<crate::core::CallbackKind, Vec<String>>,
    /// `pre_promote`: run before a promotion; a non-zero exit vetoes it.
    pub pre_promote: Option<Vec<String>>,
    /// `before_stop`: run before PostgreSQL is stopped.
    pub before_stop: Option<Vec<String>>,
}

/// A role name and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Role (or HTTP user) name.
    pub username: String,
    /// Password; `None` relies on pgpass or trust.
    pub password: Option<String>,
}

/// The password never shows in `Debug` output (logs, error reports, panics).
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// `postgresql.authentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Superuser used by the agent for local management.
    pub superuser: Credentials,
    /// Role used by replicas to stream from the primary.
    pub replication: Credentials,
    /// Role used by pg_rewind; the superuser when `None`.
    pub rewind: Option<Credentials>,
    /// libpq options beside each role's name and password (`sslmode`, `sslcert`, ...): every
    /// libpq connection as that role carries them.
    pub libpq: RoleLibpqOptions,
}

/// libpq options of each role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleLibpqOptions {
    /// `superuser`'s.
    pub superuser: LibpqOptions,
    /// `replication`'s.
    pub replication: LibpqOptions,
    /// `rewind`'s (the superuser's when `rewind` is not set).
    pub rewind: Option<LibpqOptions>,
}

/// libpq options (`sslmode: verify-ca`, `sslcert: /path`), in libpq's order.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct LibpqOptions(pub Vec<(String, String)>);

impl LibpqOptions {
    /// The values of `sslpassword` (secrets, scrubbed from the decision log).
    pub fn secrets(&self) -> impl Iterator<Item = &String> {
        self.0
            .iter()
            .filter(|(k, _)| k == "sslpassword")
            .map(|(_, v)| v)
    }
}

/// `sslpassword` never shows in `Debug` output (logs, error reports, panics).
impl std::fmt::Debug for LibpqOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| {
                let v = if k == "sslpassword" { "<secret>" } else { v };
                (k, v.to_string())
            }))
            .finish()
    }
}

/// How the agent uses the watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogMode {
    /// Never open the device.
    Off,
    /// Use the device if it works; lead without it otherwise.
    Automatic,
    /// Refuse leadership unless the device can be armed.
    Required,
}

/// `watchdog:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Off, automatic (Patroni's default) or required.
    pub mode: WatchdogMode,
    /// Device path, `/dev/watchdog` by default.
    pub device: PathBuf,
    /// Seconds between the watchdog firing and the leader key expiring: the device
    /// timeout is `ttl - safety_margin`; `-1` means `ttl / 2`.
    pub safety_margin: i64,
}

/// `tags:` section, with Patroni's defaults and precedence rules applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Tags {
    /// Never become leader.
    pub nofailover: bool,
    /// Preference among equally advanced candidates; 0 means never lead.
    pub failover_priority: i64,
    /// Answer 503 on `/replica` so load balancers skip this node.
    pub noloadbalance: bool,
    /// Preferred source for new replicas' base backups.
    pub clonefrom: bool,
    /// Never be a synchronous standby.
    pub nosync: bool,
    /// Preference for synchronous standby selection; 0 means never.
    pub sync_priority: i64,
    /// Do not stream; recover from the WAL archive only.
    pub nostream: bool,
    /// Member to replicate from (cascading) instead of the leader.
    pub replicatefrom: Option<String>,
    /// Tags as configured, published in the member key and matched by `?tag_k=v`. As in
    /// Patroni, the boolean tags `nofailover`, `noloadbalance`, `clonefrom`, `nosync` and
    /// `nostream` are left out when false.
    pub raw: serde_json::Map<String, serde_json::Value>,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            nofailover: false,
            failover_priority: 1,
            noloadbalance: false,
            clonefrom: false,
            nosync: false,
            sync_priority: 1,
            nostream: false,
            replicatefrom: None,
            raw: serde_json::Map::new(),
        }
    }
}

/// `pgwarden:` section: our extensions. Patroni ignores unknown top-level sections, so a
/// file carrying it still works with Patroni.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgwardenConfig {
    /// Timeout of the `GET /patroni` probe of each peer during a leader race (Patroni
    /// hard-codes 2 s).
    pub peer_probe_timeout_ms: u64,
    /// How long before the lease would expire the leader stops acting as primary: the
    /// demotion deadline is the send time of the last acknowledged renewal + ttl − margin.
    pub demotion_margin_ms: u64,
    /// How long a running primary may fail to answer the probe (postmaster alive, no new
    /// connection accepted) before it is stopped (immediate, then SIGKILL of the postmaster
    /// and its children) and the leader key released.
    pub unresponsive_primary_timeout_ms: u64,
    /// A file to append the node's role history to, as JSON lines (state, PostgreSQL role,
    /// leader key, lease, timeline, action in flight, on every change): for chaos testing
    /// and post-mortems. Off when unset.
    pub role_history: Option<std::path::PathBuf>,
    /// A file to append every input the core is fed to, with what it emitted in answer, as
    /// JSON lines (`core::replay`): `pgwardenctl`-free post-mortems and the replay test feed
    /// it to a fresh core, which must do the same. Off when unset; it grows by every probe
    /// and view (a few kB each), so it is for tests and incidents, not for always.
    pub input_log: Option<std::path::PathBuf>,
    /// How long a callback, `pre_promote` or `before_stop` script may run before it is
    /// killed (Patroni has no bound; a hung script must not pile up or hold a stop).
    pub callback_timeout_ms: u64,
    /// Reads other than health checks (`/patroni`, `/cluster`, `/history`, `/config`,
    /// `/metrics`, `GET /failsafe`) need `restapi.authentication` too; Patroni cannot
    /// protect reads. Health checks stay open for HAProxy.
    pub protect_reads: bool,
}

impl Default for PgwardenConfig {
    fn default() -> Self {
        PgwardenConfig {
            peer_probe_timeout_ms: 2000,
            demotion_margin_ms: 1000,
            unresponsive_primary_timeout_ms: 30_000,
            role_history: None,
            input_log: None,
            callback_timeout_ms: 120_000,
            protect_reads: false,
        }
    }
}
