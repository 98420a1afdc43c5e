//! A cluster of pgwarden agents (each with its own PostgreSQL) on loopback, backed by an
//! [`EtcdCluster`]. Writes Patroni-format YAML per node, starts agents as the `postgres` user,
//! simulates node death, and cleans up every process it started, even when a test panics.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use super::etcd::{EtcdCluster, Kv};
use super::http::{self, HttpResponse, HTTP_TIMEOUT};
use super::netns::Host;
use super::process::{
    assert_port_free, cmdline, failure_log_lines, free_port, give_to_runner, install_binaries,
    kill_tree, make_test_dir, pid_alive, pids_with_cmdline_containing, run_capture, runner_command,
    set_mode, spawn_logged, tail_file, wait_check, wait_dead, wait_until, Captured,
};
use super::sql;

/// PostgreSQL 15 binaries.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Superuser from every node's config.
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "Harness-Super#2026";
/// Replication user.
pub const REPLICATION_USER: &str = "replicator";
pub const REPLICATION_PASSWORD: &str = "Harness-Repl#2026";
/// pg_rewind user.
pub const REWIND_USER: &str = "rewind_user";
pub const REWIND_PASSWORD: &str = "Harness-Rewind#2026";
/// DCS namespace (Patroni default).
pub const NAMESPACE: &str = "/service/";
/// `restapi.authentication` of a TLS cluster (and the `ctl:` credentials of its tools).
pub const API_USER: &str = "ops";
pub const API_PASSWORD: &str = "Harness-Api#2026";
/// The etcd user of a cluster built with [`ClusterBuilder::etcd_auth`] (agents and tools).
pub const ETCD_USER: &str = "pgwarden";
/// Its password.
pub const ETCD_PASSWORD: &str = "Harness-Etcd#2026";

/// Everything that goes into one node's YAML.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub scope: String,
    pub name: String,
    pub dir: PathBuf,
    pub api_port: u16,
    pub pg_port: u16,
    /// `postgresql.listen`; normally `127.0.0.1:<pg_port>`.
    pub pg_listen: String,
    /// The address the REST API and PostgreSQL listen on and advertise: 127.0.0.1, or the
    /// node's host address in a chaos topology.
    pub host: String,
    /// The network clients and standbys connect from (pg_hba): `127.0.0.1/32`, or the
    /// topology's subnet.
    pub client_net: String,
    pub etcd_hosts: Vec<String>,
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub synchronous_mode: bool,
    /// Extra `bootstrap.dcs` keys (a `synchronous_mode` here replaces the boolean).
    pub dcs_extra: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Extra top-level YAML appended verbatim (e.g. a `policy:` section).
    pub extra_yaml: String,
    /// More keys of the `postgresql:` section, lines indented two spaces.
    pub postgresql_extra: String,
    /// The `watchdog:` section's body, indented two spaces (default `mode: "off"`).
    pub watchdog: String,
    /// More keys of `restapi:` (TLS), lines indented two spaces.
    pub restapi_extra: String,
    /// More keys of `etcd3:` (TLS), lines indented two spaces.
    pub etcd_extra: String,
}

/// The scram-only pg_hba lines used for bootstrap and at runtime (never `trust`).
pub const PG_HBA: [&str; 3] = [
    "local all all scram-sha-256",
    "host all all 127.0.0.1/32 scram-sha-256",
    "host replication replicator 127.0.0.1/32 scram-sha-256",
];

/// [`PG_HBA`], plus the same TCP lines for `client_net` when it is not loopback.
pub fn pg_hba_lines(client_net: &str) -> Vec<String> {
    let mut lines: Vec<String> = PG_HBA.iter().map(|l| l.to_string()).collect();
    if client_net != "127.0.0.1/32" {
        lines.push(format!("host all all {client_net} scram-sha-256"));
        lines.push(format!(
            "host replication replicator {client_net} scram-sha-256"
        ));
    }
    lines
}

impl NodeSpec {
    /// A node on loopback with fresh free ports and the [`ClusterBuilder`] default timing
    /// (ttl 6, loop_wait 1, retry_timeout 2, synchronous mode on, no extra tags).
    pub fn local(scope: &str, name: &str, dir: &Path, etcd_hosts: Vec<String>) -> NodeSpec {
        let d = ClusterBuilder::default();
        let pg_port = free_port();
        NodeSpec {
            scope: scope.to_string(),
            name: name.to_string(),
            dir: dir.to_path_buf(),
            api_port: free_port(),
            pg_port,
            pg_listen: format!("127.0.0.1:{pg_port}"),
            host: "127.0.0.1".to_string(),
            client_net: "127.0.0.1/32".to_string(),
            etcd_hosts,
            ttl: d.ttl,
            loop_wait: d.loop_wait,
            retry_timeout: d.retry_timeout,
            synchronous_mode: d.synchronous_mode,
            dcs_extra: Vec::new(),
            tags: Vec::new(),
            extra_yaml: String::new(),
            postgresql_extra: String::new(),
            watchdog: "  mode: \"off\"\n".to_string(),
            restapi_extra: String::new(),
            etcd_extra: String::new(),
        }
    }

    /// `<dir>/data`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The Patroni-format YAML of this node.
    pub fn render(&self) -> String {
        let dir = self.dir.display();
        let mut y = String::new();
        let hba = |indent: &str| {
            pg_hba_lines(&self.client_net)
                .iter()
                .map(|l| format!("{indent}- {l}\n"))
                .collect::<String>()
        };
        let _ = write!(
            y,
            "scope: {scope}\nnamespace: {NAMESPACE}\nname: {name}\n\n\
             restapi:\n  listen: {host}:{api}\n  connect_address: {host}:{api}\n{restapi}\n\
             etcd3:\n{etcd}  hosts:\n",
            host = self.host,
            scope = self.scope,
            name = self.name,
            api = self.api_port,
            restapi = self.restapi_extra,
            etcd = self.etcd_extra,
        );
        for h in &self.etcd_hosts {
            let _ = writeln!(y, "    - {h}");
        }
        let _ = write!(
            y,
            "\nbootstrap:\n  dcs:\n    ttl: {ttl}\n    loop_wait: {lw}\n    retry_timeout: {rt}\n\
             {sync}    postgresql:\n      \
             use_pg_rewind: true\n      use_slots: true\n      parameters:\n        \
             wal_level: replica\n        hot_standby: \"on\"\n        max_wal_senders: 10\n        \
             max_replication_slots: 10\n        wal_keep_size: 256MB\n        wal_log_hints: \"on\"\n  \
             initdb:\n    - encoding: UTF8\n    - data-checksums\n  pg_hba:\n{hba2}\n",
            ttl = self.ttl,
            lw = self.loop_wait,
            rt = self.retry_timeout,
            sync = self.dcs_lines(),
            hba2 = hba("    "),
        );
        let _ = write!(
            y,
            "postgresql:\n  listen: {listen}\n  connect_address: {host}:{pg}\n  \
             data_dir: {dir}/data\n  bin_dir: {PG_BIN_DIR}\n  pgpass: {dir}/pgpass\n  \
             authentication:\n    superuser:\n      username: {SUPERUSER}\n      password: '{SUPERUSER_PASSWORD}'\n    \
             replication:\n      username: {REPLICATION_USER}\n      password: '{REPLICATION_PASSWORD}'\n    \
             rewind:\n      username: {REWIND_USER}\n      password: '{REWIND_PASSWORD}'\n  \
             parameters:\n    unix_socket_directories: '{dir}'\n    password_encryption: scram-sha-256\n  \
             pg_hba:\n{hba4}{extra}\n",
            extra = self.postgresql_extra,
            listen = self.pg_listen,
            host = self.host,
            pg = self.pg_port,
            hba4 = hba("    "),
        );
        // The seed's tags, unless the test sets them; booleans and numbers stay unquoted
        // (YAML `true` is a boolean, `'true'` a string).
        y.push_str("tags:\n");
        for default in ["nofailover", "noloadbalance", "clonefrom", "nosync"] {
            if !self.tags.iter().any(|(k, _)| k == default) {
                let _ = writeln!(y, "  {default}: false");
            }
        }
        for (k, v) in &self.tags {
            if v.parse::<bool>().is_ok() || v.parse::<i64>().is_ok() {
                let _ = writeln!(y, "  {k}: {v}");
            } else {
                let _ = writeln!(y, "  {k}: '{v}'");
            }
        }
        y.push_str("\nwatchdog:\n");
        y.push_str(&self.watchdog);
        y.push_str(&self.extra_yaml);
        y
    }

    /// `synchronous_mode` and the extra `bootstrap.dcs` keys, as YAML lines.
    fn dcs_lines(&self) -> String {
        let mut lines = String::new();
        let overridden = |key: &str| self.dcs_extra.iter().any(|(k, _)| k == key);
        if !overridden("maximum_lag_on_failover") {
            lines.push_str("    maximum_lag_on_failover: 1048576\n");
        }
        if !overridden("synchronous_mode") {
            let _ = writeln!(lines, "    synchronous_mode: {}", self.synchronous_mode);
        }
        for (k, v) in &self.dcs_extra {
            let _ = writeln!(lines, "    {k}: {v}");
        }
        lines
    }

    /// Writes the YAML to `path` (mode 600, owned by the agent user).
    pub fn write(&self, path: &Path) {
        fs::write(path, self.render()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        set_mode(path, 0o600);
        give_to_runner(path);
    }
}

/// Builder for [`Cluster`]; defaults: 3 nodes, 1 etcd member, synchronous mode on,
/// ttl 6 / loop_wait 1 / retry_timeout 2, scope `pgwarden-it`.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: usize,
    etcd_members: usize,
    scope: String,
    synchronous_mode: bool,
    dcs_extra: Vec<(String, String)>,
    ttl: u32,
    loop_wait: u32,
    retry_timeout: u32,
    tags: Vec<Vec<(String, String)>>,
    /// A policy component per node, copied into the node's dir.
    policies: Vec<Option<PathBuf>>,
    /// Extra YAML (e.g. `policy.params`) appended to every node's `policy:` section.
    /// How many nodes `start` starts (the others wait for `Cluster::start_node`).
    initially_started: Option<usize>,
    /// `watchdog:` section bodies per node (`{dir}` stands for the node's dir).
    watchdogs: Vec<Option<String>>,
    /// The `pgwarden:` section's body for every node, lines indented two spaces.
    pgwarden: String,
    /// More keys of every node's `postgresql:` section, lines indented two spaces, `{dir}`
    /// replaced by the node's dir.
    postgresql_extra: String,
    /// Chaos topology: a host (network namespace) per node and per etcd member, and the
    /// subnet clients connect from. Empty: everything on loopback.
    node_hosts: Vec<Host>,
    etcd_hosts: Vec<Host>,
    client_net: Option<String>,
    /// TLS everywhere: etcd with client certificates, the REST API with this
    /// `verify_client` and Basic authentication.
    tls: Option<String>,
    /// etcd's authentication on (TLS clusters).
    etcd_auth: bool,
    /// The agents' etcd client certificate expires this long after the cluster starts.
    agent_etcd_cert_lifetime: Option<Duration>,
    /// Top-level YAML added to every node's file (whole sections).
    top_level: String,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            nodes: 3,
            etcd_members: 1,
            scope: "pgwarden-it".to_string(),
            synchronous_mode: true,
            dcs_extra: Vec::new(),
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            tags: Vec::new(),
            policies: Vec::new(),
            initially_started: None,
            watchdogs: Vec::new(),
            pgwarden: String::new(),
            postgresql_extra: String::new(),
            node_hosts: Vec::new(),
            etcd_hosts: Vec::new(),
            client_net: None,
            tls: None,
            etcd_auth: false,
            agent_etcd_cert_lifetime: None,
            top_level: String::new(),
        }
    }
}

impl ClusterBuilder {
    /// The `pgwarden:` section of every node: lines indented two spaces
    /// (e.g. `"  unresponsive_primary_timeout_ms: 4000\n"`).
    pub fn pgwarden(mut self, body: &str) -> Self {
        self.pgwarden = body.to_string();
        self
    }

    /// More keys of every node's `postgresql:` section: lines indented two spaces, `{dir}`
    /// replaced by the node's dir (e.g. `"  pre_promote: {dir}/fence.sh\n"`).
    pub fn postgresql(mut self, body: &str) -> Self {
        self.postgresql_extra = body.to_string();
        self
    }

    /// TLS everywhere, as production runs it: etcd serves clients over TLS only and asks
    /// for a client certificate; the REST API speaks TLS with `verify_client` (`none`,
    /// `optional`, `required`) and Basic authentication; agents and tools show the client
    /// certificate. Certificates come from a fresh [`super::tls::Pki`].
    pub fn tls(mut self, verify_client: &str) -> Self {
        self.tls = Some(verify_client.to_string());
        self
    }

    /// Number of pgwarden nodes (`node1..nodeN`).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// Number of etcd members.
    pub fn etcd_members(mut self, n: usize) -> Self {
        self.etcd_members = n;
        self
    }
    /// Cluster `scope`.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_string();
        self
    }
    /// `bootstrap.dcs.synchronous_mode`.
    pub fn synchronous_mode(mut self, on: bool) -> Self {
        self.synchronous_mode = on;
        self
    }
    /// Another `bootstrap.dcs` key, e.g. `dcs("synchronous_mode_strict", "true")`.
    pub fn dcs(mut self, key: &str, value: &str) -> Self {
        self.dcs_extra.push((key.to_string(), value.to_string()));
        self
    }
    /// `bootstrap.dcs.{ttl, loop_wait, retry_timeout}`.
    pub fn timing(mut self, ttl: u32, loop_wait: u32, retry_timeout: u32) -> Self {
        self.ttl = ttl;
        self.loop_wait = loop_wait;
        self.retry_timeout = retry_timeout;
        self
    }
    /// A tag on node `i` (0-based), e.g. `tag(0, "zone", "a")`.
    pub fn tag(mut self, i: usize, key: &str, value: &str) -> Self {
        if self.tags.len() <= i {
            self.tags.resize(i + 1, Vec::new());
        }
        self.tags[i].push((key.to_string(), value.to_string()));
        self
    }

    /// Run the policy component at `path` on node `i` (copied into the node's dir).
    pub fn policy(mut self, i: usize, path: &Path) -> Self {
        if self.policies.len() <= i {
            self.policies.resize(i + 1, None);
        }
        self.policies[i] = Some(path.to_path_buf());
        self
    }
    /// The `watchdog:` section of node `i`: lines indented two spaces, `{dir}` replaced by
    /// the node's dir (e.g. `"  mode: required\n  device: {dir}/watchdog.fifo\n"`).
    pub fn watchdog(mut self, i: usize, body: &str) -> Self {
        if self.watchdogs.len() <= i {
            self.watchdogs.resize(i + 1, None);
        }
        self.watchdogs[i] = Some(body.to_string());
        self
    }
    /// Start only the first `n` nodes; start the rest with [`Cluster::start_node`].
    pub fn initially_started(mut self, n: usize) -> Self {
        self.initially_started = Some(n);
        self
    }

    /// Runs node `i` in `nodes[i]`'s network namespace and etcd member `j` in `etcd[j]`'s,
    /// each listening on its host's address; clients connect from `client_net` (the
    /// topology's subnet). Sets the node and etcd member counts.
    pub fn placed(mut self, nodes: Vec<Host>, etcd: Vec<Host>, client_net: &str) -> Self {
        self.nodes = nodes.len();
        self.etcd_members = etcd.len();
        self.node_hosts = nodes;
        self.etcd_hosts = etcd;
        self.client_net = Some(client_net.to_string());
        self
    }

    /// Whole top-level sections added to every node's file (e.g. `"telemetry:\n  ..."`;
    /// `{dir}` stands for the node's dir).
    pub fn section(mut self, yaml: &str) -> Self {
        self.top_level.push('\n');
        self.top_level.push_str(yaml);
        self
    }

    /// etcd with authentication on (a TLS cluster only): agents and tools log in as
    /// [`ETCD_USER`], allowed under the cluster's namespace only; their certificates' common
    /// names are no etcd user, so nothing works without the password.
    pub fn etcd_auth(mut self) -> Self {
        self.etcd_auth = true;
        self
    }

    /// The agents' etcd client certificate (a TLS cluster only; tools keep their own)
    /// expires `lifetime` after the cluster starts: see
    /// [`Cluster::renew_agent_etcd_certificate`].
    pub fn agent_etcd_cert_lifetime(mut self, lifetime: Duration) -> Self {
        self.agent_etcd_cert_lifetime = Some(lifetime);
        self
    }

    /// Starts etcd, writes the node configs and starts every agent (does not wait for a
    /// leader: use [`Cluster::wait_for_leader`]).
    pub fn start(self) -> Cluster {
        let pki = self.tls.as_ref().map(|_| {
            let dir = make_test_dir("pgwarden-it-pki-");
            let pki = super::tls::Pki::generate(dir.path());
            (dir, pki)
        });
        let etcd = match (&pki, self.etcd_hosts.is_empty()) {
            (Some((_, pki)), _) => EtcdCluster::start_tls(self.etcd_members, pki),
            (None, true) => EtcdCluster::start(self.etcd_members),
            (None, false) => EtcdCluster::start_in(&self.etcd_hosts),
        };
        if self.etcd_auth {
            assert!(pki.is_some(), "etcd_auth needs a TLS cluster");
            etcd.enable_auth(ETCD_USER, ETCD_PASSWORD, NAMESPACE);
        }
        // Issued last, just before the agents start: a short lifetime counts from here.
        let agent_etcd = pki
            .as_ref()
            .map(|(_, pki)| match self.agent_etcd_cert_lifetime {
                Some(lifetime) => {
                    pki.issue_client(AGENT_ETCD_CERT, "pgwarden agent", Some(lifetime))
                }
                None => pki.client.clone(),
            });
        let base = make_test_dir("pgwarden-it-");
        let (pgwarden, pgwardenctl) = install_binaries(&base.path().join("bin"));
        let nodes = (0..self.nodes)
            .map(|i| {
                let name = format!("node{}", i + 1);
                let dir = base.path().join(&name);
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                set_mode(&dir, 0o700);
                give_to_runner(&dir);
                let mut extra_yaml = match self.policies.get(i).cloned().flatten() {
                    Some(component) => {
                        let copy = dir.join("policy.wasm");
                        fs::copy(&component, &copy).unwrap_or_else(|e| {
                            panic!("copy {} to {}: {e}", component.display(), copy.display())
                        });
                        give_to_runner(&copy);
                        format!("\npolicy:\n  path: {}\n", copy.display())
                    }
                    None => String::new(),
                };
                if !self.pgwarden.is_empty() {
                    extra_yaml.push_str("\npgwarden:\n");
                    extra_yaml.push_str(&self.pgwarden);
                }
                extra_yaml.push_str(&self.top_level.replace("{dir}", &dir.display().to_string()));
                let mut local = NodeSpec::local(&self.scope, &name, &dir, etcd.endpoints());
                if let Some(host) = self.node_hosts.get(i) {
                    local.host = host.addr().to_string();
                    local.pg_listen = format!("{}:{}", local.host, local.pg_port);
                    local.client_net = self.client_net.clone().unwrap_or_default();
                }
                let watchdog = match self.watchdogs.get(i).cloned().flatten() {
                    Some(body) => body.replace("{dir}", &dir.display().to_string()),
                    None => local.watchdog.clone(),
                };
                let (restapi_extra, etcd_extra) = match (&pki, &self.tls) {
                    (Some((_, pki)), Some(verify_client)) => {
                        extra_yaml.push_str(&pki_ctl_section(pki));
                        (
                            format!(
                                "  certfile: {}\n  keyfile: {}\n  cafile: {}\n  verify_client: {verify_client}\n  \
                                 authentication:\n    username: {API_USER}\n    password: '{API_PASSWORD}'\n",
                                pki.server.cert.display(),
                                pki.server.key.display(),
                                pki.ca.display()
                            ),
                            pki_etcd_lines(
                                pki,
                                agent_etcd.as_ref().unwrap_or(&pki.client),
                                self.etcd_auth,
                            ),
                        )
                    }
                    _ => (String::new(), String::new()),
                };
                let spec = NodeSpec {
                    extra_yaml,
                    watchdog,
                    restapi_extra,
                    etcd_extra,
                    ttl: self.ttl,
                    loop_wait: self.loop_wait,
                    retry_timeout: self.retry_timeout,
                    synchronous_mode: self.synchronous_mode,
                    dcs_extra: self.dcs_extra.clone(),
                    tags: self.tags.get(i).cloned().unwrap_or_default(),
                    postgresql_extra: self
                        .postgresql_extra
                        .replace("{dir}", &dir.display().to_string()),
                    ..local
                };
                let config = dir.join("pgwarden.yml");
                spec.write(&config);
                Node {
                    log: dir.join("agent.log"),
                    config,
                    spec,
                    agent: None,
                    starts: 0,
                    host: self.node_hosts.get(i).cloned(),
                }
            })
            .collect();
        let api_tls = pki.as_ref().map(|(_, pki)| super::http::ApiTls {
            config: pki.client_config(Some(&pki.client)),
            basic: Some(format!("{API_USER}:{API_PASSWORD}")),
        });
        let mut cluster = Cluster {
            nodes,
            pgwarden,
            pgwardenctl,
            base,
            etcd,
            api_tls,
            pki,
            agent_etcd,
            etcd_auth: self.etcd_auth,
        };
        let started = self.initially_started.unwrap_or(cluster.nodes.len());
        for i in 0..started.min(cluster.nodes.len()) {
            cluster.start_node(i);
        }
        cluster
    }
}

struct Node {
    spec: NodeSpec,
    config: PathBuf,
    log: PathBuf,
    agent: Option<Child>,
    starts: u32,
    /// The network namespace the agent (and so PostgreSQL) runs in, if any.
    host: Option<Host>,
}

/// A running cluster. Node indexes are 0-based; node `i` is named `node{i+1}`.
/// Dropping it SIGKILLs every agent, postmaster and postmaster child it started, then etcd;
/// when dropped during a panic it first prints the agents' log tails and the DCS keys.
pub struct Cluster {
    nodes: Vec<Node>,
    pgwarden: PathBuf,
    pgwardenctl: PathBuf,
    // Field order matters: processes die in Drop::drop, then the dirs go, then etcd.
    base: tempfile::TempDir,
    etcd: EtcdCluster,
    /// How the harness reaches a TLS cluster's REST APIs.
    api_tls: Option<super::http::ApiTls>,
    /// A TLS cluster's certificates (and the directory holding them).
    pki: Option<(tempfile::TempDir, super::tls::Pki)>,
    /// The agents' etcd client certificate (a TLS cluster's).
    agent_etcd: Option<super::tls::Pair>,
    /// Whether etcd asks for [`ETCD_USER`]'s password.
    etcd_auth: bool,
}

/// The stem of the agents' own etcd client certificate files.
const AGENT_ETCD_CERT: &str = "agent-etcd";

/// `etcd3:` keys for a TLS etcd with the client certificate `client` (and the etcd user's
/// credentials when `auth`), lines indented two spaces.
fn pki_etcd_lines(pki: &super::tls::Pki, client: &super::tls::Pair, auth: bool) -> String {
    let mut lines = format!(
        "  protocol: https\n  cacert: {}\n  cert: {}\n  key: {}\n",
        pki.ca.display(),
        client.cert.display(),
        client.key.display()
    );
    if auth {
        lines.push_str(&format!(
            "  username: {ETCD_USER}\n  password: '{ETCD_PASSWORD}'\n"
        ));
    }
    lines
}

/// The `ctl:` section of a TLS cluster's agents and tools.
fn pki_ctl_section(pki: &super::tls::Pki) -> String {
    format!(
        "\nctl:\n  cacert: {}\n  certfile: {}\n  keyfile: {}\n  authentication:\n    \
         username: {API_USER}\n    password: '{API_PASSWORD}'\n",
        pki.ca.display(),
        pki.client.cert.display(),
        pki.client.key.display()
    )
}

impl Cluster {
    /// A builder with the defaults of [`ClusterBuilder`].
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    // ----- layout -------------------------------------------------------------------------

    /// Number of nodes.
    #[allow(clippy::len_without_is_empty)] // never empty: built with at least one member
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// `node{i+1}`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].spec.name
    }
    /// Index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.name == name)
    }
    /// The node's spec (ports, dirs, timing).
    pub fn spec(&self, i: usize) -> &NodeSpec {
        &self.nodes[i].spec
    }
    /// Cluster scope.
    pub fn scope(&self) -> &str {
        &self.nodes[0].spec.scope
    }
    /// Configured `ttl` (seconds).
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.nodes[0].spec.ttl.into())
    }
    /// Configured `loop_wait` (seconds).
    pub fn loop_wait(&self) -> Duration {
        Duration::from_secs(self.nodes[0].spec.loop_wait.into())
    }
    /// The node's YAML config file.
    pub fn config_path(&self, i: usize) -> &Path {
        &self.nodes[i].config
    }
    /// The node's dir (config, data dir, pgpass, socket, log).
    pub fn node_dir(&self, i: usize) -> &Path {
        &self.nodes[i].spec.dir
    }
    /// The node's PostgreSQL data dir.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].spec.data_dir()
    }
    /// The agent's stdout+stderr.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }
    /// REST API address.
    pub fn api_addr(&self, i: usize) -> SocketAddr {
        let ip: std::net::IpAddr = self.nodes[i]
            .spec
            .host
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        (ip, self.nodes[i].spec.api_port).into()
    }
    /// Every node as an HAProxy backend (name, address, PostgreSQL port, REST port).
    pub fn haproxy_servers(&self) -> Vec<super::haproxy::Server> {
        (0..self.len())
            .map(|i| {
                (
                    self.name(i).to_string(),
                    self.host_ip(i).to_string(),
                    self.pg_port(i),
                    self.api_addr(i).port(),
                )
            })
            .collect()
    }

    /// The address node `i` listens on (127.0.0.1 unless placed in a namespace).
    pub fn host_ip(&self, i: usize) -> &str {
        &self.nodes[i].spec.host
    }
    /// PostgreSQL port.
    pub fn pg_port(&self, i: usize) -> u16 {
        self.nodes[i].spec.pg_port
    }
    /// The installed (postgres-readable) agent binary.
    /// The pgwardenctl binary the cluster installed.
    pub fn pgwardenctl_bin(&self) -> &Path {
        &self.pgwardenctl
    }

    pub fn pgwarden_bin(&self) -> &Path {
        &self.pgwarden
    }
    /// The etcd cluster.
    pub fn etcd(&self) -> &EtcdCluster {
        &self.etcd
    }
    /// The etcd cluster, to stop/start members.
    pub fn etcd_mut(&mut self) -> &mut EtcdCluster {
        &mut self.etcd
    }

    // ----- processes ----------------------------------------------------------------------

    /// Starts (or restarts) node `i`'s agent with its config, as the `postgres` user.
    pub fn start_node(&mut self, i: usize) {
        // The secret-leak check of a TLS cluster reads the logs: let them hold everything
        // pgwarden says.
        let log_filter = self.api_tls.as_ref().map(|_| "pgwarden=debug,info");
        let node = &mut self.nodes[i];
        assert!(
            node.agent.is_none(),
            "agent of {} is already running",
            node.spec.name
        );
        if node.starts == 0 && node.host.is_none() {
            assert_port_free(node.spec.api_port, &format!("{} REST API", node.spec.name));
            assert_port_free(node.spec.pg_port, &format!("{} PostgreSQL", node.spec.name));
        }
        node.starts += 1;
        let mut cmd = runner_command(&self.pgwarden, &node.spec.dir);
        cmd.arg(&node.config).env("RUST_BACKTRACE", "1");
        if let Some(filter) = log_filter {
            cmd.env("PGWARDEN_LOG", filter);
        }
        if let Some(host) = &node.host {
            cmd = host.wrap(&cmd);
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let what = format!("agent {} (start #{})", node.spec.name, node.starts);
        let child = spawn_logged(&mut cmd, &node.log, &what);
        if let Some(host) = &node.host {
            host.track(child.id() as i32);
        }
        node.agent = Some(child);
    }

    /// Clean stop: SIGTERM to node `i`'s agent, then wait for it to exit (it stops its
    /// PostgreSQL first). Panics if it has not exited within `timeout`.
    pub fn terminate_node(&mut self, i: usize, timeout: Duration) {
        let name = self.nodes[i].spec.name.clone();
        let mut child = self.nodes[i]
            .agent
            .take()
            .unwrap_or_else(|| panic!("agent of {name} is not running"));
        super::process::signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
        let status = wait_until(
            timeout,
            &format!("agent {name} to exit after SIGTERM"),
            || child.try_wait().ok().flatten(),
        );
        eprintln!("[harness] {name} exited after SIGTERM: {status}");
    }

    /// Whether node `i`'s agent was started and not killed (it may have exited on its own).
    pub fn is_started(&self, i: usize) -> bool {
        self.nodes[i].agent.is_some()
    }

    /// PID of node `i`'s agent process, while started.
    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].agent.as_ref().map(Child::id)
    }

    /// Whether node `i`'s agent process is alive right now.
    pub fn agent_alive(&mut self, i: usize) -> bool {
        match self.nodes[i].agent.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The postmaster pid from `<data_dir>/postmaster.pid`, when that process is alive and its
    /// command line names this node's dir (guards against a stale file and pid reuse).
    pub fn postmaster_pid(&self, i: usize) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir(i).join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let dir = self.node_dir(i).display().to_string();
        (pid_alive(pid) && cmdline(pid).is_some_and(|c| c.contains(&dir))).then_some(pid)
    }

    /// Node death: SIGKILL the agent, the postmaster and every postmaster child (plus any
    /// process whose command line names this node's dir, e.g. pg_basebackup or pg_rewind),
    /// and wait until all of them are gone.
    pub fn kill_node(&mut self, i: usize) {
        let mut victims = Vec::new();
        if let Some(mut child) = self.nodes[i].agent.take() {
            victims.extend(kill_tree(child.id() as i32));
            let _ = child.wait();
        }
        if let Some(pm) = self.postmaster_pid(i) {
            victims.extend(kill_tree(pm));
        }
        let needle = format!("{}/", self.node_dir(i).display());
        for pid in pids_with_cmdline_containing(&needle) {
            victims.extend(kill_tree(pid));
        }
        wait_dead(
            &victims,
            Duration::from_secs(15),
            &format!("every process of {} to die after SIGKILL", self.name(i)),
        );
        eprintln!("[harness] killed {} (pids {victims:?})", self.name(i));
    }

    /// PostgreSQL's death alone (the agent lives): SIGKILL the postmaster and its children,
    /// and wait until they are gone. Returns the postmaster's pid.
    pub fn kill_postgres(&mut self, i: usize) -> i32 {
        let pm = self
            .postmaster_pid(i)
            .unwrap_or_else(|| panic!("{} runs no postmaster", self.name(i)));
        let victims = kill_tree(pm);
        wait_dead(
            &victims,
            Duration::from_secs(15),
            &format!("{}'s PostgreSQL to die after SIGKILL", self.name(i)),
        );
        eprintln!(
            "[harness] killed {}'s PostgreSQL (pids {victims:?})",
            self.name(i)
        );
        pm
    }

    // ----- REST ---------------------------------------------------------------------------

    /// One request to node `i`'s REST API.
    pub fn http(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<HttpResponse, String> {
        self.http_slow(i, method, path, body, HTTP_TIMEOUT)
    }

    /// [`http`](Self::http) for requests that wait for an outcome (switchover, failover).
    pub fn http_slow(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<HttpResponse, String> {
        http::request_with(
            self.api_addr(i),
            self.api_tls.as_ref(),
            method,
            path,
            body,
            timeout,
        )
    }

    /// `(pg_is_in_recovery(), port)` of the server behind a HAProxy port.
    pub fn behind_proxy(&self, proxy_port: u16) -> Result<(bool, u16), String> {
        let mut config = self.pg_config_at(proxy_port);
        config.connect_timeout(Duration::from_secs(3));
        let rows = super::sql::query_text(
            &config,
            "SELECT pg_is_in_recovery()::text, current_setting('port')",
        )?;
        let row = rows.first().ok_or("no row")?;
        let port = row[1]
            .as_deref()
            .and_then(|p| p.parse().ok())
            .ok_or("no port")?;
        Ok((row[0].as_deref() == Some("true"), port))
    }

    /// A TLS cluster's certificates.
    pub fn pki(&self) -> Option<&super::tls::Pki> {
        self.pki.as_ref().map(|(_, pki)| pki)
    }

    /// The agents' etcd client certificate (a TLS cluster's).
    pub fn agent_etcd_certificate(&self) -> Option<&super::tls::Pair> {
        self.agent_etcd.as_ref()
    }

    /// Replaces the agents' etcd client certificate files with a new, long-lived
    /// certificate (the agents read it at their next reload); returns its DER.
    pub fn renew_agent_etcd_certificate(&self) -> Vec<u8> {
        let pki = self.pki().expect("a TLS cluster");
        let pair = pki.issue_client(AGENT_ETCD_CERT, "pgwarden agent", None);
        assert_eq!(
            Some(&pair.cert),
            self.agent_etcd.as_ref().map(|p| &p.cert),
            "the agents were started with their own etcd certificate (agent_etcd_cert_lifetime)"
        );
        super::tls::first_der(&pair.cert)
    }

    /// Status code of `method path` on node `i` (`None`: no answer).
    pub fn http_status(&self, i: usize, method: &str, path: &str) -> Option<u16> {
        self.http(i, method, path, None).ok().map(|r| r.status)
    }

    /// `GET path` on node `i` parsed as JSON, whatever the status (health checks answer 503
    /// with a JSON body too).
    pub fn http_json(&self, i: usize, path: &str) -> Option<Value> {
        self.http(i, "GET", path, None).ok()?.json()
    }

    /// `GET path` status on every node.
    pub fn statuses(&self, path: &str) -> Vec<Option<u16>> {
        (0..self.len())
            .map(|i| self.http_status(i, "GET", path))
            .collect()
    }

    /// The `/sync` key names `leader` and exactly one standby, a member: that standby.
    pub fn sync_standby(&self, leader: &str) -> Result<String, String> {
        let v = self.dcs_json("sync")?.ok_or("no /sync key yet")?;
        if v.get("leader").and_then(Value::as_str) != Some(leader) {
            return Err(format!("/sync = {v} (leader should be {leader})"));
        }
        let standby = v.get("sync_standby").and_then(Value::as_str).unwrap_or("");
        let names: Vec<&str> = standby.split(',').filter(|s| !s.is_empty()).collect();
        match names.as_slice() {
            [one] if *one != leader && self.index_of(one).is_some() => Ok(one.to_string()),
            _ => Err(format!(
                "/sync = {v} (want exactly one standby, a member other than {leader})"
            )),
        }
    }

    /// The one node answering `GET /primary` with 200, `Err` (with all statuses) unless
    /// exactly one does.
    pub fn leader_now(&self) -> Result<usize, String> {
        let statuses = self.statuses("/primary");
        let leaders: Vec<usize> = (0..self.len())
            .filter(|&i| statuses[i] == Some(200))
            .collect();
        match leaders.as_slice() {
            [one] => Ok(*one),
            _ => Err(format!(
                "GET /primary per node: {}",
                self.describe(&statuses)
            )),
        }
    }

    /// Waits until exactly one node answers `GET /primary` with 200 and returns it.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let i = wait_check(timeout, "exactly one node with GET /primary = 200", || {
            self.leader_now()
        });
        eprintln!("[harness] leader is {}", self.name(i));
        i
    }

    /// `GET /patroni` of node `i`.
    pub fn patroni(&self, i: usize) -> Option<Value> {
        self.http_json(i, "/patroni")
    }

    /// `role` from node `i`'s `GET /patroni`.
    pub fn role_of(&self, i: usize) -> Option<String> {
        Some(self.patroni(i)?.get("role")?.as_str()?.to_string())
    }

    /// `timeline` from node `i`'s `GET /patroni`.
    pub fn timeline_of(&self, i: usize) -> Option<i64> {
        self.patroni(i)?.get("timeline")?.as_i64()
    }

    /// `node1=Some(200), node2=None, ...` for messages.
    pub fn describe(&self, statuses: &[Option<u16>]) -> String {
        statuses
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{}={}",
                    self.name(i),
                    s.map_or("no answer".to_string(), |c| c.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    // ----- SQL ----------------------------------------------------------------------------

    /// Superuser connection settings for any port on 127.0.0.1 (a proxy in front of the nodes).
    pub fn pg_config_at(&self, port: u16) -> postgres::Config {
        sql::pg_config(port, SUPERUSER, SUPERUSER_PASSWORD)
    }

    /// Superuser connection settings for node `i` (TCP 127.0.0.1, scram password).
    pub fn pg_config(&self, i: usize) -> postgres::Config {
        let mut config = sql::pg_config(self.pg_port(i), SUPERUSER, SUPERUSER_PASSWORD);
        config.host(self.host_ip(i));
        config
    }

    /// A superuser connection to node `i`.
    pub fn connect(&self, i: usize) -> Result<postgres::Client, String> {
        sql::connect(&self.pg_config(i))
    }

    /// Rows of `sql` on node `i`, as text.
    pub fn query(&self, i: usize, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        sql::query_text(&self.pg_config(i), sql)
    }

    /// First column of the first row of `sql` on node `i`.
    pub fn query_scalar(&self, i: usize, sql: &str) -> Result<Option<String>, String> {
        sql::query_scalar(&self.pg_config(i), sql)
    }

    /// Runs statements on node `i`.
    pub fn execute(&self, i: usize, sql: &str) -> Result<(), String> {
        sql::execute(&self.pg_config(i), sql)
    }

    /// `pg_is_in_recovery()` on node `i`.
    pub fn in_recovery(&self, i: usize) -> Result<bool, String> {
        Ok(self
            .query_scalar(i, "SELECT pg_is_in_recovery()")?
            .as_deref()
            == Some("t"))
    }

    // ----- DCS ----------------------------------------------------------------------------

    /// `/service/<scope>/`.
    pub fn dcs_prefix(&self) -> String {
        format!("{NAMESPACE}{}/", self.scope())
    }

    /// The key `/service/<scope>/<key>` (e.g. `leader`, `sync`, `members/node1`).
    pub fn dcs_get(&self, key: &str) -> Result<Option<Kv>, String> {
        self.etcd.try_get(&format!("{}{key}", self.dcs_prefix()))
    }

    /// The JSON value of `/service/<scope>/<key>`.
    pub fn dcs_json(&self, key: &str) -> Result<Option<Value>, String> {
        Ok(self.dcs_get(key)?.and_then(|kv| kv.json()))
    }

    /// Every key under `/service/<scope>/`.
    pub fn dcs_dump(&self) -> Result<Vec<Kv>, String> {
        self.etcd.try_get_prefix(&self.dcs_prefix())
    }

    // ----- pgwardenctl --------------------------------------------------------------------

    /// Runs `pgwardenctl -c <the cluster's patronictl-style file> args...` (30 s deadline).
    pub fn ctl(&self, args: &[&str]) -> Captured {
        let mut cmd = Command::new(&self.pgwardenctl);
        super::process::scrub_env(&mut cmd);
        cmd.arg("-c").arg(self.ctl_config()).args(args);
        run_capture(&mut cmd, Duration::from_secs(30))
    }

    /// [`Cluster::ctl`] answering its questions with `input`.
    pub fn ctl_with_input(&self, args: &[&str], input: &str) -> Captured {
        let mut cmd = Command::new(&self.pgwardenctl);
        super::process::scrub_env(&mut cmd);
        cmd.arg("-c").arg(self.ctl_config()).args(args);
        super::process::run_capture_with_input(&mut cmd, Some(input), Duration::from_secs(30))
    }

    /// [`Cluster::ctl`] with extra environment variables (`EDITOR`, ...).
    pub fn ctl_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Captured {
        let mut cmd = Command::new(&self.pgwardenctl);
        super::process::scrub_env(&mut cmd);
        cmd.envs(env.iter().copied());
        cmd.arg("-c").arg(self.ctl_config()).args(args);
        run_capture(&mut cmd, Duration::from_secs(30))
    }

    /// A patronictl-style configuration file, as an operator's workstation holds it:
    /// `scope`, `namespace` and `etcd3` only, no agent sections (written once).
    pub fn ctl_config(&self) -> PathBuf {
        let path = self.base.path().join("patronictl.yaml");
        if !path.exists() {
            let spec = &self.nodes[0].spec;
            let tls = self.pki();
            let mut yaml = format!(
                "scope: {}\nnamespace: {NAMESPACE}\n{}etcd3:\n{}  hosts:\n",
                spec.scope,
                tls.map(pki_ctl_section).unwrap_or_default().trim_start(),
                tls.map(|pki| pki_etcd_lines(pki, &pki.client, self.etcd_auth))
                    .unwrap_or_default(),
            );
            for host in &spec.etcd_hosts {
                yaml.push_str(&format!("    - {host}\n"));
            }
            std::fs::write(&path, yaml).expect("write patronictl.yaml");
        }
        path
    }

    /// Runs `pgwardenctl -c <node i's agent config> args...` (30 s deadline).
    pub fn ctl_as(&self, i: usize, args: &[&str]) -> Captured {
        let mut cmd = Command::new(&self.pgwardenctl);
        super::process::scrub_env(&mut cmd);
        cmd.arg("-c").arg(self.config_path(i)).args(args);
        run_capture(&mut cmd, Duration::from_secs(30))
    }

    // ----- diagnostics --------------------------------------------------------------------

    /// Log tails, REST status and DCS keys of the whole cluster.
    pub fn diagnostics(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.len() {
            let _ = writeln!(
                out,
                "===== {} agent log {} (last {lines} lines) =====\n{}",
                self.name(i),
                self.log_path(i).display(),
                tail_file(self.log_path(i), lines)
            );
            // pg_ctl's own log (`-l`): startup failures land here.
            let ctl_log = self.node_dir(i).join("data.postgresql.log");
            if ctl_log.exists() {
                let _ = writeln!(
                    out,
                    "----- {} pg_ctl log {} (last 30 lines) -----\n{}",
                    self.name(i),
                    ctl_log.display(),
                    tail_file(&ctl_log, 30)
                );
            }
            if let Some(pg_log) = newest_file(&self.data_dir(i).join("log")) {
                let _ = writeln!(
                    out,
                    "----- {} PostgreSQL log {} (last 20 lines) -----\n{}",
                    self.name(i),
                    pg_log.display(),
                    tail_file(&pg_log, 20)
                );
            }
            let _ = writeln!(
                out,
                "----- {} GET /patroni: {}",
                self.name(i),
                self.http(i, "GET", "/patroni", None)
                    .map_or_else(|e| e, |r| format!("{} {}", r.status, r.body))
            );
        }
        match self.dcs_dump() {
            Ok(kvs) => {
                let _ = writeln!(out, "===== DCS keys under {} =====", self.dcs_prefix());
                for kv in kvs {
                    let _ = writeln!(
                        out,
                        "{} (create {}, mod {}, lease {:x}) = {}",
                        kv.key, kv.create_revision, kv.mod_revision, kv.lease, kv.value
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(out, "===== DCS keys: {e}");
            }
        }
        out
    }

    fn kill_everything(&mut self) {
        let mut victims = Vec::new();
        for i in 0..self.nodes.len() {
            if let Some(mut child) = self.nodes[i].agent.take() {
                victims.extend(kill_tree(child.id() as i32));
                let _ = child.wait();
            }
        }
        for i in 0..self.nodes.len() {
            if let Some(pm) = self.postmaster_pid(i) {
                victims.extend(kill_tree(pm));
            }
        }
        let needle = format!("{}/", self.base.path().display());
        for pid in pids_with_cmdline_containing(&needle) {
            victims.extend(kill_tree(pid));
        }
        for _ in 0..200 {
            if victims.iter().all(|&p| !pid_alive(p)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval of a bounded wait
        }
        let alive: Vec<i32> = victims.into_iter().filter(|&p| pid_alive(p)).collect();
        eprintln!("[harness] WARNING: processes still alive after SIGKILL: {alive:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n[harness] test failed; cluster diagnostics follow (dir {})\n{}",
                self.base.path().display(),
                self.diagnostics(failure_log_lines())
            );
            if std::env::var_os("PGWARDEN_KEEP_TEST_DIRS").is_none() {
                eprintln!(
                    "[harness] set PGWARDEN_KEEP_TEST_DIRS=1 to keep the node dirs of a failed run"
                );
            }
        }
        self.kill_everything();
    }
}

fn newest_file(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}
