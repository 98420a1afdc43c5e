//! The lock store: Patroni's key layout and value formats (`keys`, `codec`) and the etcd v3
//! client that reads, watches and writes them (`etcd`). Decisions about what to write are
//! the core's; this module only performs them.

pub mod codec;
pub mod etcd;
pub mod keys;

use std::time::Duration;

pub use etcd::EtcdStore;
pub use keys::KeyLayout;

/// The connection to etcd once it exists. The agent starts without it: a node whose lock
/// store is unreachable at start must still run its loop, because a PostgreSQL left running
/// as primary has to be stopped without waiting for a store that may never answer.
///
/// The connection is replaced when a reload changes the credentials or TLS files (see
/// `runtime::etcd_link`). Callers take a clone per operation, so an operation in flight
/// finishes on the connection it started with and the next one uses the new one; long-lived
/// users (the watch) follow [`StoreSlot::changes`]. Leases live in etcd, not in the
/// connection: a lease granted through the old one is renewed through the new one.
#[derive(Clone)]
pub struct StoreSlot(std::sync::Arc<tokio::sync::watch::Sender<Option<EtcdStore>>>);

impl Default for StoreSlot {
    fn default() -> Self {
        StoreSlot(std::sync::Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl StoreSlot {
    /// The store, if connected.
    pub fn get(&self) -> Option<EtcdStore> {
        self.0.borrow().clone()
    }

    /// Puts `store` in use (the first connection, or a reload's).
    pub fn replace(&self, store: EtcdStore) {
        self.0.send_replace(Some(store));
    }

    /// Follows the connection: changed each time one is put in use.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Option<EtcdStore>> {
        self.0.subscribe()
    }
}

/// A lock store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum DcsError {
    /// etcd answered with an error or could not be reached.
    #[error("etcd {op}: {source}")]
    Etcd {
        /// What was attempted.
        op: &'static str,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },
    /// No answer in time.
    #[error("etcd {op}: no answer within {after:?}")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The watch was cancelled by the server or its stream ended.
    #[error("etcd watch: {0}")]
    WatchCanceled(String),
    /// A key's value is not what it must be.
    #[error("{0}")]
    Decode(String),
}

impl DcsError {
    /// The request never reached etcd: the connection to the endpoint could not be made (a
    /// dead member), so another endpoint may well answer.
    pub fn is_connection_failure(&self) -> bool {
        match self {
            DcsError::Etcd { source, .. } => {
                let text = format!("{source:?}");
                text.contains("ConnectError") || text.contains("ConnectionRefused")
            }
            _ => false,
        }
    }

    /// etcd refused the request because the lease it names does not exist (expired or
    /// revoked): proof that the lease is gone, unlike a timeout.
    pub fn lease_not_found(&self) -> bool {
        match self {
            DcsError::Etcd { source, .. } => {
                let text = source.to_string();
                // "etcdserver: requested lease not found" (a put), "lease keep alive error:
                // lease not found" (etcd-client's reading of a keep-alive answered with TTL 0).
                text.contains("lease not found")
            }
            _ => false,
        }
    }
}
