//! One operator command's hold on a cluster: the tool's configuration, the cluster it
//! acts on, the lock store and the members' REST APIs, and the few conventions every
//! patronictl verb shares (questions, timestamps, the leader asked first).

use std::time::Duration;

use anyhow::Context;

use crate::config::CtlConfig;
use crate::core::view::{ClusterView, MemberInfo};
use crate::dcs::{EtcdStore, KeyLayout};
use crate::runtime::http::ApiClient;

use super::ops;

/// How long a member's REST API may take for an immediate answer.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to etcd may take before the command gives up.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster a command acts on.
pub struct Session {
    /// The tool's configuration.
    pub config: CtlConfig,
    /// The cluster's name: the one given on the command line, else the file's `scope`.
    pub scope: String,
    runtime: tokio::runtime::Runtime,
    /// The members' APIs, or why the `ctl:` TLS files cannot be used (reported by the
    /// commands that call a member, so `list` works without them).
    api_client: Result<ApiClient, String>,
}

impl Session {
    /// Acts on `cluster` (or the configuration's `scope` when none is named).
    pub fn open(config: CtlConfig, cluster: Option<&str>) -> anyhow::Result<Session> {
        let scope = cluster
            .map(str::to_owned)
            .or_else(|| config.scope.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no cluster named: give its name, or set `scope` in the configuration file"
                )
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let api_client = ApiClient::new(&config.api, "ctl").map_err(|e| e.to_string());
        Ok(Session {
            config,
            scope,
            runtime,
            api_client,
        })
    }

    /// Runs a future on the command's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The lock store, connected (asynchronously: call inside [`Session::block_on`]).
    pub async fn store(&self) -> anyhow::Result<EtcdStore> {
        let layout = KeyLayout::new(&self.config.namespace, &self.scope);
        // The login (with etcd's authentication on) is tried again while an endpoint
        // refuses the connection, within retry_timeout (see `EtcdStore::connect`).
        let connect = crate::runtime::connect_store_once(
            &self.config.etcd,
            layout,
            self.config.retry_timeout,
        );
        let what = || self.etcd_context(&format!("connecting to etcd at {:?}", self.endpoints()));
        match tokio::time::timeout(STORE_TIMEOUT, connect).await {
            Ok(connected) => connected.with_context(what),
            Err(elapsed) => Err(anyhow::Error::new(elapsed).context(what())),
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.config
            .etcd
            .hosts
            .iter()
            .map(|h| h.to_string())
            .collect()
    }

    /// `what`, with a hint when etcd is reached over TLS: etcd refuses a client
    /// certificate after the client's side of a TLS 1.3 handshake is over, so the refusal
    /// often reaches the client as a closed connection rather than as etcd's alert.
    fn etcd_context(&self, what: &str) -> String {
        if self.config.etcd.protocol == "https" {
            format!(
                "{what} over TLS (if the connection was closed or reset, etcd may have refused \
                 this client's certificate: check etcd3.cert and etcd3.key against etcd's \
                 --trusted-ca-file)"
            )
        } else {
            what.to_string()
        }
    }

    /// The cluster as etcd has it now.
    pub fn view(&self) -> anyhow::Result<ClusterView> {
        self.block_on(async {
            let store = self.store().await?;
            retrying(|| store.load())
                .await
                .with_context(|| self.etcd_context("reading the cluster from etcd"))
        })
    }

    /// `/config` as stored, with the revision it was read at (`None`: the key is absent).
    pub fn read_config(
        &self,
    ) -> anyhow::Result<Option<(serde_json::Value, crate::core::Revision)>> {
        self.block_on(async {
            let store = self.store().await?;
            retrying(|| store.read_config())
                .await
                .with_context(|| self.etcd_context("reading /config from etcd"))
        })
    }

    /// Sends `method path` to a member's REST API with the configured credentials.
    pub fn call(
        &self,
        member: &MemberInfo,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", ops::api_base(member));
        let client = self.api_client.as_ref().map_err(|e| e.clone())?;
        self.block_on(client.request(method, &url, body.map(|b| b.to_string()), timeout))
            .map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()))
            .map_err(|e| e.to_string())
    }

    /// How often members act: the cluster's `loop_wait`, else the file's.
    pub fn loop_wait(&self, view: &ClusterView) -> u32 {
        view.config
            .as_ref()
            .map_or(self.config.loop_wait, |c| c.value.loop_wait)
    }
}

/// An etcd request, tried again while it failed to connect (a dead endpoint: the
/// client's balancer moves to the next one; the request never reached etcd, so a write is
/// safe to send again), for up to [`STORE_TIMEOUT`]; any other error at once.
pub async fn retrying<T, F, Fut>(mut read: F) -> Result<T, crate::dcs::DcsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::dcs::DcsError>>,
{
    let deadline = tokio::time::Instant::now() + STORE_TIMEOUT;
    loop {
        match read().await {
            Err(e) if e.is_connection_failure() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// The members, the leader first (where patronictl sends cluster-wide requests).
pub fn leader_first(view: &ClusterView) -> Vec<&MemberInfo> {
    let leader = view.leader_name();
    let mut members: Vec<_> = view.members.values().collect();
    members.sort_by_key(|m| Some(m.name.as_str()) != leader);
    members
}

/// patronictl's timestamp before an answer (UTC here).
pub fn timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// A member whose REST API did not answer.
pub fn unreachable_member(member: &str, action: &str, error: &str) -> ops::Outcome {
    ops::Outcome {
        line: format!("Failed: {action} for member {member}: {error}"),
        ok: false,
    }
}

/// Asks `question` unless `force`; anything but y/yes aborts (exit 1, as patronictl).
pub fn confirm(force: bool, question: &str) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    use std::io::Write as _;
    print!("{question} [y/N]: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("Aborted!")
    }
}

/// Reads a secret after `question: `, without echoing it when standard input is a
/// terminal (patronictl's hidden prompt); from a pipe, the first line.
pub fn read_secret(question: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    use std::io::Write as _;
    eprint!("{question}: ");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut answer = String::new();
    let read = stdin.read_line(&mut answer);
    if let Some(saved) = &saved {
        let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, saved);
        eprintln!();
    }
    if read? == 0 {
        anyhow::bail!("Aborted! (no answer on standard input)");
    }
    Ok(answer.trim_end_matches(['\r', '\n']).to_string())
}
