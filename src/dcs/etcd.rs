//! The etcd v3 lock store (native gRPC): one lease per agent, the leader key taken with a
//! create_revision == 0 transaction and released with a value == own-name transaction,
//! compare-and-swap on mod_revision for `/sync`, and a prefix watch feeding the view.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};

use super::codec::{self, RawKey};
use super::keys::{self, KeyLayout};
use super::DcsError;
use crate::core::view::{ClusterView, FailoverRequest, HistoryEntry, SyncState};
use crate::core::{LeaseId, Lsn, Revision};

/// Outcome of a leader key acquisition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderAcquisition {
    /// The key is ours now.
    pub won: bool,
    /// etcd revision of the transaction.
    pub revision: Revision,
    /// The key's create_revision (half of the fencing token).
    pub create_revision: Revision,
}

/// A connection to the cluster's keys in etcd.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// A second connection for the watch: `client`'s per-request timeout would cut the
    /// long-lived watch stream every `request_timeout`. HTTP/2 keep-alive pings still detect
    /// a dead connection.
    watch_client: Client,
    layout: KeyLayout,
}

fn err(op: &'static str) -> impl FnOnce(etcd_client::Error) -> DcsError {
    move |source| DcsError::Etcd { op, source }
}

impl EtcdStore {
    /// Connect to any of `endpoints` (`host:port`); requests fail over between them.
    ///
    /// With credentials, the login is sent on the connected client and sent again while it
    /// fails to connect, within `request_timeout`: a fresh client sends its first request to
    /// the endpoint whose connection settles first, and a dead endpoint's refusal settles
    /// before a live one's TLS handshake, so a login sent while connecting (etcd-client's
    /// way) fails every time one endpoint is down, and an agent started then would never
    /// connect. The retry goes through the same client, whose other endpoints are ready by
    /// then.
    pub async fn connect(
        endpoints: &[String],
        credentials: Option<(String, String)>,
        tls: Option<etcd_client::TlsOptions>,
        layout: KeyLayout,
        request_timeout: Duration,
    ) -> Result<EtcdStore, DcsError> {
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let base = ConnectOptions::new()
            .with_connect_timeout(request_timeout)
            .with_keep_alive(Duration::from_secs(1), request_timeout)
            .with_require_leader(true)
            // etcd's tokens expire (`--auth-token-ttl`, JWT lifetimes) and a restarted member
            // forgets the simple ones: a request refused for its token is sent again with a
            // new one, instead of failing from then on. (A watch is refused in its stream,
            // not as an error: `watch` renews the token itself.)
            .with_auto_token_refresh(true);
        let base = match tls {
            Some(tls) => base.with_tls(tls),
            None => base,
        };
        let client = Client::connect(
            urls.clone(),
            Some(base.clone().with_timeout(request_timeout)),
        )
        .await
        .map_err(err("connect"))?;
        let watch_client = Client::connect(urls, Some(base))
            .await
            .map_err(err("connect"))?;
        if let Some(credentials) = credentials {
            let deadline = tokio::time::Instant::now() + request_timeout;
            for client in [&client, &watch_client] {
                retry_unreachable("login", deadline, request_timeout, || {
                    let (mut client, credentials) = (client.clone(), credentials.clone());
                    async move { client.update_user(Some(credentials)).await }
                })
                .await?;
            }
        }
        Ok(EtcdStore {
            client,
            watch_client,
            layout,
        })
    }

    /// One cheap read on each of the store's two connections (a count of the cluster's
    /// keys), tried again while it cannot connect, within `within`. Connecting sends nothing
    /// without credentials: a certificate etcd refuses, or a CA that does not match etcd's,
    /// shows here instead of on the first real request, so a reload never swaps a working
    /// connection for a broken one.
    pub async fn verify(&self, within: Duration) -> Result<(), DcsError> {
        let deadline = tokio::time::Instant::now() + within;
        for client in [&self.client, &self.watch_client] {
            let prefix = self.layout.prefix();
            retry_unreachable("verify", deadline, within, || {
                let mut kv = client.kv_client();
                async move {
                    let options = GetOptions::new().with_prefix().with_count_only();
                    kv.get(prefix, Some(options)).await.map(|_| ())
                }
            })
            .await?;
        }
        Ok(())
    }

    /// The key layout in use.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// Read every key of the cluster (linearizable).
    pub async fn load_raw(&self) -> Result<(BTreeMap<String, RawKey>, i64), DcsError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(self.layout.prefix(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(err("range"))?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut keys = BTreeMap::new();
        for item in resp.kvs() {
            keys.insert(
                String::from_utf8_lossy(item.key()).to_string(),
                RawKey {
                    value: item.value().to_vec(),
                    lease: item.lease(),
                    create_revision: item.create_revision(),
                    mod_revision: item.mod_revision(),
                },
            );
        }
        Ok((keys, revision))
    }

    /// Delete every key of the cluster (`patronictl remove`); returns how many there were.
    pub async fn delete_cluster(&self) -> Result<i64, DcsError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .delete(
                self.layout.prefix(),
                Some(DeleteOptions::new().with_prefix()),
            )
            .await
            .map_err(err("delete"))?;
        Ok(resp.deleted())
    }

    /// Read and decode the cluster.
    pub async fn load(&self) -> Result<ClusterView, DcsError> {
        let (keys, revision) = self.load_raw().await?;
        Ok(codec::decode_view(&self.layout, &keys, revision))
    }

    /// Follow the cluster's keys: `on_view` gets a decoded view after the first read and after
    /// every change. Returns when the watch breaks (the caller reports and calls again).
    pub async fn watch(&self, mut on_view: impl FnMut(ClusterView)) -> Result<(), DcsError> {
        let (mut keys, revision) = self.load_raw().await?;
        on_view(codec::decode_view(&self.layout, &keys, revision));
        let mut watch_client = self.watch_client.watch_client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = watch_client
            .watch(self.layout.prefix(), Some(options))
            .await
            .map_err(err("watch"))?;
        let mut current_revision = revision;
        while let Some(resp) = stream.message().await.map_err(err("watch"))? {
            if resp.canceled() {
                let reason = resp.cancel_reason().to_string();
                // etcd refuses a watch whose token it no longer knows (expired, or the member
                // restarted) in the stream, not as an error the client's refresh would see:
                // log in again, so the next watch goes through.
                if reason.contains("auth token") || reason.contains("permission denied") {
                    if let Err(e) = self.watch_client.refresh_token().await {
                        tracing::warn!(error = %e, "etcd watch: logging in again failed");
                    }
                }
                return Err(DcsError::WatchCanceled(reason));
            }
            if let Some(h) = resp.header() {
                current_revision = current_revision.max(h.revision());
            }
            for event in resp.events() {
                let Some(item) = event.kv() else { continue };
                let key = String::from_utf8_lossy(item.key()).to_string();
                match event.event_type() {
                    EventType::Put => {
                        keys.insert(
                            key,
                            RawKey {
                                value: item.value().to_vec(),
                                lease: item.lease(),
                                create_revision: item.create_revision(),
                                mod_revision: item.mod_revision(),
                            },
                        );
                    }
                    EventType::Delete => {
                        keys.remove(&key);
                    }
                }
                current_revision = current_revision.max(item.mod_revision());
            }
            if !resp.events().is_empty() {
                on_view(codec::decode_view(&self.layout, &keys, current_revision));
            }
        }
        Err(DcsError::WatchCanceled("watch stream ended".into()))
    }

    /// Grant a lease; returns its id and the TTL etcd actually granted.
    pub async fn grant_lease(&self, ttl_secs: u32) -> Result<(LeaseId, u32), DcsError> {
        let mut lease = self.client.lease_client();
        let resp = lease
            .grant(ttl_secs.into(), None)
            .await
            .map_err(err("lease grant"))?;
        Ok((LeaseId(resp.id()), resp.ttl().max(0) as u32))
    }

    /// Send one keep-alive, waiting at most `timeout` for the answer; `Ok(false)` when the
    /// lease no longer exists.
    pub async fn keep_alive(&self, lease: LeaseId, timeout: Duration) -> Result<bool, DcsError> {
        let mut client = self.client.lease_client();
        let work = async {
            let (mut keeper, mut stream) = client
                .keep_alive(lease.0)
                .await
                .map_err(err("keep-alive"))?;
            keeper.keep_alive().await.map_err(err("keep-alive"))?;
            match stream.message().await.map_err(err("keep-alive"))? {
                Some(resp) => Ok(resp.ttl() > 0),
                None => Err(DcsError::WatchCanceled("keep-alive stream closed".into())),
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| DcsError::Timeout {
                op: "keep-alive",
                after: timeout,
            })?
    }

    /// Revoke a lease (clean shutdown): its keys vanish at once.
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), DcsError> {
        let mut client = self.client.lease_client();
        client.revoke(lease.0).await.map_err(err("lease revoke"))?;
        Ok(())
    }

    /// Put `members/<name>` on our lease.
    pub async fn put_member(
        &self,
        name: &str,
        value: String,
        lease: LeaseId,
    ) -> Result<(), DcsError> {
        let mut kv = self.client.kv_client();
        kv.put(
            self.layout.member(name),
            value,
            Some(PutOptions::new().with_lease(lease.0)),
        )
        .await
        .map_err(err("put member"))?;
        Ok(())
    }

    async fn create_if_absent(
        &self,
        key: String,
        value: String,
        lease: Option<LeaseId>,
        op: &'static str,
    ) -> Result<(bool, i64), DcsError> {
        let mut kv = self.client.kv_client();
        let put = match lease {
            Some(l) => TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(l.0))),
            None => TxnOp::put(key.clone(), value, None),
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([put]);
        let resp = kv.txn(txn).await.map_err(err(op))?;
        Ok((
            resp.succeeded(),
            resp.header().map(|h| h.revision()).unwrap_or_default(),
        ))
    }

    /// Bootstrap race: create `initialize` (empty) if nobody has.
    pub async fn race_initialize(&self) -> Result<bool, DcsError> {
        Ok(self
            .create_if_absent(
                self.layout.key(keys::INITIALIZE),
                String::new(),
                None,
                "race initialize",
            )
            .await?
            .0)
    }

    /// Delete `initialize` (failed bootstrap).
    pub async fn cancel_initialize(&self) -> Result<(), DcsError> {
        let mut kv = self.client.kv_client();
        kv.delete(self.layout.key(keys::INITIALIZE), None)
            .await
            .map_err(err("delete initialize"))?;
        Ok(())
    }

    /// Delete `initialize` only if it is still at `mod_revision` (an orphan left by a
    /// bootstrap that died). Returns whether it was deleted.
    pub async fn clear_initialize_at(&self, mod_revision: Revision) -> Result<bool, DcsError> {
        let mut kv = self.client.kv_client();
        let key = self.layout.key(keys::INITIALIZE);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision.0,
            )])
            .and_then([TxnOp::delete(key, None)]);
        Ok(kv
            .txn(txn)
            .await
            .map_err(err("clear orphaned initialize"))?
            .succeeded())
    }

    /// Record the system identifier in `initialize`.
    pub async fn write_initialize(&self, sysid: &str) -> Result<(), DcsError> {
        let mut kv = self.client.kv_client();
        kv.put(self.layout.key(keys::INITIALIZE), sysid, None)
            .await
            .map_err(err("put initialize"))?;
        Ok(())
    }

    /// `config` as stored, parsed as JSON, with its mod_revision (`None`: absent).
    pub async fn read_config(&self) -> Result<Option<(serde_json::Value, Revision)>, DcsError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(self.layout.key(keys::CONFIG), None)
            .await
            .map_err(err("read config"))?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let value = serde_json::from_slice(kv.value())
            .map_err(|e| DcsError::Decode(format!("config: not JSON: {e}")))?;
        Ok(Some((value, Revision(kv.mod_revision()))))
    }

    /// Write `config`: only if it is still at `expected` (compare-and-swap), or whatever it
    /// holds with `None`. Returns whether it was written.
    pub async fn write_config(
        &self,
        json: String,
        expected: Option<Revision>,
    ) -> Result<bool, DcsError> {
        let mut kv = self.client.kv_client();
        let key = self.layout.key(keys::CONFIG);
        let Some(revision) = expected else {
            kv.put(key, json, None).await.map_err(err("write config"))?;
            return Ok(true);
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision.0,
            )])
            .and_then([TxnOp::put(key, json, None)]);
        Ok(kv.txn(txn).await.map_err(err("write config"))?.succeeded())
    }

    /// Create `config` if absent.
    pub async fn write_config_if_absent(&self, json: String) -> Result<bool, DcsError> {
        Ok(self
            .create_if_absent(self.layout.key(keys::CONFIG), json, None, "create config")
            .await?
            .0)
    }

    /// Take the leader key on `lease`: create it if absent, or move our own key (left on an
    /// older lease of ours) onto this one. Returns (won, revision of the transaction).
    pub async fn acquire_leader(
        &self,
        me: &str,
        lease: LeaseId,
    ) -> Result<LeaderAcquisition, DcsError> {
        let key = self.layout.leader();
        let (won, revision) = self
            .create_if_absent(key.clone(), me.to_string(), Some(lease), "acquire leader")
            .await?;
        if won {
            return Ok(LeaderAcquisition {
                won,
                revision: Revision(revision),
                create_revision: Revision(revision),
            });
        }
        let mut kv = self.client.kv_client();
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, me)])
            .and_then([
                TxnOp::put(key.clone(), me, Some(PutOptions::new().with_lease(lease.0))),
                TxnOp::get(key, None),
            ]);
        let resp = kv.txn(txn).await.map_err(err("take over own leader key"))?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        // A takeover keeps the key's create_revision: read it back for the fencing token.
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or(revision);
        Ok(LeaderAcquisition {
            won: resp.succeeded(),
            revision: Revision(revision),
            create_revision: Revision(create_revision),
        })
    }

    /// Delete the leader key if it still holds our name on `lease` and was created at
    /// `create_revision` (a delayed release must not delete a key we have since taken again,
    /// on a newer lease or on the same one).
    pub async fn release_leader(
        &self,
        me: &str,
        lease: Option<LeaseId>,
        create_revision: Option<Revision>,
    ) -> Result<bool, DcsError> {
        let mut kv = self.client.kv_client();
        let key = self.layout.leader();
        let mut guards = vec![Compare::value(key.clone(), CompareOp::Equal, me)];
        if let Some(lease) = lease {
            guards.push(Compare::lease(key.clone(), CompareOp::Equal, lease.0));
        }
        if let Some(revision) = create_revision {
            guards.push(Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                revision.0,
            ));
        }
        let txn = Txn::new().when(guards).and_then([TxnOp::delete(key, None)]);
        Ok(kv
            .txn(txn)
            .await
            .map_err(err("release leader"))?
            .succeeded())
    }

    /// Put `/failover` (a plain put, as Patroni's REST API does: the newest request wins).
    pub async fn write_failover(&self, request: &FailoverRequest) -> Result<(), DcsError> {
        let mut kv = self.client.kv_client();
        kv.put(
            self.layout.key(keys::FAILOVER),
            codec::encode_failover(request),
            None,
        )
        .await
        .map_err(err("write failover"))?;
        Ok(())
    }

    /// Delete `/failover`; with `expected_revision`, only if nobody rewrote it since.
    /// Returns whether a key was deleted.
    pub async fn clear_failover(
        &self,
        expected_revision: Option<Revision>,
    ) -> Result<bool, DcsError> {
        let mut kv = self.client.kv_client();
        let key = self.layout.key(keys::FAILOVER);
        let guards = match expected_revision {
            Some(rev) => vec![Compare::mod_revision(key.clone(), CompareOp::Equal, rev.0)],
            None => vec![Compare::create_revision(key.clone(), CompareOp::Greater, 0)],
        };
        let txn = Txn::new().when(guards).and_then([TxnOp::delete(key, None)]);
        Ok(kv
            .txn(txn)
            .await
            .map_err(err("clear failover"))?
            .succeeded())
    }

    /// Compare-and-swap `/sync`.
    pub async fn write_sync(
        &self,
        state: &SyncState,
        expected_revision: Option<Revision>,
    ) -> Result<bool, DcsError> {
        let key = self.layout.key(keys::SYNC);
        let value = codec::encode_sync(state);
        match expected_revision {
            None => Ok(self
                .create_if_absent(key, value, None, "create sync")
                .await?
                .0),
            Some(rev) => {
                let mut kv = self.client.kv_client();
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev.0)])
                    .and_then([TxnOp::put(key, value, None)]);
                Ok(kv.txn(txn).await.map_err(err("write sync"))?.succeeded())
            }
        }
    }

    /// Put `/failsafe` (`None`: delete it).
    pub async fn write_failsafe(
        &self,
        members: Option<&BTreeMap<String, String>>,
    ) -> Result<(), DcsError> {
        let mut kv = self.client.kv_client();
        let key = self.layout.key(keys::FAILSAFE);
        match members {
            Some(members) => {
                kv.put(key, codec::encode_failsafe(members), None)
                    .await
                    .map_err(err("put failsafe"))?;
            }
            None => {
                kv.delete(key, None).await.map_err(err("delete failsafe"))?;
            }
        }
        Ok(())
    }

    /// Put `/status`.
    pub async fn write_status(&self, optime: Lsn) -> Result<(), DcsError> {
        let mut kv = self.client.kv_client();
        kv.put(
            self.layout.key(keys::STATUS),
            codec::encode_status(optime),
            None,
        )
        .await
        .map_err(err("put status"))?;
        Ok(())
    }

    /// Put `/history`.
    pub async fn write_history(&self, entries: &[HistoryEntry]) -> Result<(), DcsError> {
        let mut kv = self.client.kv_client();
        kv.put(
            self.layout.key(keys::HISTORY),
            codec::encode_history(entries),
            None,
        )
        .await
        .map_err(err("put history"))?;
        Ok(())
    }
}

/// Runs `call` until it succeeds, fails for another reason than a refused connection, or
/// `deadline` passes (each attempt bounded by it too; `bound` names the limit in the error).
async fn retry_unreachable<T, F, Fut>(
    op: &'static str,
    deadline: tokio::time::Instant,
    bound: Duration,
    mut call: F,
) -> Result<T, DcsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    loop {
        let error = match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(source)) => DcsError::Etcd { op, source },
            Err(_) => return Err(DcsError::Timeout { op, after: bound }),
        };
        if !error.is_connection_failure() || tokio::time::Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
