//! The agent's connection to etcd: made at start (again every second until etcd answers),
//! and made again when a reload changes the credentials or the TLS files.
//!
//! A renewed client certificate (cert-manager, Vault and the like renew short-lived ones
//! every few hours) or a new password is only read when a connection is made: the
//! connection in use would keep the old one until the agent restarts, and fail at its next
//! handshake once the old certificate expires. One task, the connector, owns every attempt:
//! it connects with the settings last asked for, checks the new connection with a read
//! before putting it in use (the old one serves until then), and after a failure tries again
//! with a growing pause, or at once when a reload asks for newer settings. Two reloads can
//! never race each other's connections, and a failed attempt is never forgotten.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, EtcdConfig};
use crate::dcs::{KeyLayout, StoreSlot};

/// Asks the connector for connections (see the module's documentation).
#[derive(Clone)]
pub struct EtcdLink {
    shared: Arc<Shared>,
}

struct Shared {
    /// The settings the connection should be made with: the start's, then each reload's.
    wanted: Mutex<EtcdConfig>,
    /// What the connection in use was made with ([`fingerprint`]); `None` before the first.
    connected_with: Mutex<Option<u64>>,
    /// Wakes the connector when `wanted` changed.
    wake: tokio::sync::Notify,
}

impl EtcdLink {
    /// Starts the connector of an agent started with `config`; its connections go into
    /// `store`.
    pub fn spawn(store: StoreSlot, config: &Config) -> EtcdLink {
        let link = EtcdLink {
            shared: Arc::new(Shared {
                wanted: Mutex::new(config.etcd.clone()),
                connected_with: Mutex::new(None),
                wake: tokio::sync::Notify::new(),
            }),
        };
        let layout = KeyLayout::new(&config.namespace, &config.scope);
        let retry_timeout = config.bootstrap.dcs.retry_timeout;
        tokio::spawn(connector(link.shared.clone(), store, layout, retry_timeout));
        link
    }

    /// Whether a connection made with `etcd` would differ from the one in use (or the first
    /// is not made yet): other credentials, TLS settings or TLS file contents.
    pub fn differs(&self, etcd: &EtcdConfig) -> bool {
        *lock(&self.shared.connected_with) != Some(fingerprint(etcd))
    }

    /// Asks for a connection made with `etcd` (a reload's settings); the connector makes it
    /// in the background when it [`differs`](Self::differs).
    pub fn want(&self, etcd: EtcdConfig) {
        *lock(&self.shared.wanted) = etcd;
        self.shared.wake.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connector's loop (see the module's documentation).
async fn connector(shared: Arc<Shared>, store: StoreSlot, layout: KeyLayout, retry_timeout: u32) {
    let bound = Duration::from_secs(retry_timeout.clamp(1, 10).into());
    let mut failures: u32 = 0;
    loop {
        let etcd = lock(&shared.wanted).clone();
        let wanted = fingerprint(&etcd);
        let first = lock(&shared.connected_with).is_none();
        if *lock(&shared.connected_with) == Some(wanted) {
            shared.wake.notified().await;
            continue;
        }
        let attempt = async {
            let connection =
                super::connect_store_once(&etcd, layout.clone(), retry_timeout).await?;
            connection.verify(bound).await.map_err(|e| {
                anyhow::Error::new(e).context("a first read through the new connection")
            })?;
            anyhow::Ok(connection)
        };
        match attempt.await {
            Ok(connection) => {
                store.replace(connection);
                *lock(&shared.connected_with) = Some(wanted);
                failures = 0;
                if !first {
                    tracing::info!("etcd credentials or TLS files changed: connected again with them; new requests use the new connection");
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let error = format!("{e:#}");
                if first {
                    tracing::warn!(%error, "cannot reach etcd yet; retrying");
                } else {
                    tracing::error!(%error, "etcd credentials or TLS files changed, but connecting with them failed; the agent keeps the connection it has and tries again");
                }
                // At start every second, as an agent waiting for etcd always did; after a
                // reload, a pause growing to 10 s. A newer reload cuts it short.
                let pause = if first { 1 } else { failures.min(10) };
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(pause.into())) => {}
                    _ = shared.wake.notified() => {}
                }
            }
        }
    }
}

/// A digest of what a connection to etcd is made with: the endpoints, the credentials, the
/// TLS settings and the bytes of the TLS files (renewed files keep their names). Kept in
/// memory only.
fn fingerprint(etcd: &EtcdConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    etcd.hosts.hash(&mut hasher);
    etcd.protocol.hash(&mut hasher);
    (&etcd.username, &etcd.password).hash(&mut hasher);
    let tls = &etcd.tls;
    tls.key_password
        .as_ref()
        .map(|p| p.0.as_str())
        .hash(&mut hasher);
    if etcd.protocol == "https" {
        for path in [&tls.cacert, &tls.cert, &tls.key] {
            path.hash(&mut hasher);
            path.as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::fingerprint;
    use crate::config::EtcdConfig;

    fn https_with(dir: &std::path::Path, cert: &str) -> EtcdConfig {
        let path = dir.join("client.pem");
        std::fs::write(&path, cert).expect("write");
        let mut etcd = EtcdConfig {
            hosts: Vec::new(),
            protocol: "https".into(),
            username: Some("pgwarden".into()),
            password: Some("one".into()),
            tls: Default::default(),
        };
        etcd.tls.cert = Some(path);
        etcd
    }

    #[test]
    fn the_fingerprint_follows_file_contents_and_credentials() {
        let dir = tempfile::tempdir().expect("dir");
        let first = https_with(dir.path(), "certificate one");
        let same = fingerprint(&first);
        assert_eq!(fingerprint(&first), same, "nothing changed");
        let renewed = https_with(dir.path(), "certificate two");
        assert_ne!(fingerprint(&renewed), same, "same path, new contents");
        let mut password = renewed.clone();
        password.password = Some("two".into());
        assert_ne!(
            fingerprint(&password),
            fingerprint(&renewed),
            "a new password"
        );
        let mut plain = renewed.clone();
        plain.protocol = "http".into();
        assert_ne!(
            fingerprint(&plain),
            fingerprint(&renewed),
            "another protocol"
        );
    }
}
