//! What every cluster-test binary shares: the lock that keeps its scenarios from overlapping,
//! and the time budgets of the usual waits.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Clusters never overlap, whatever `--test-threads` says (two cores: concurrent clusters
/// break lease timing). One lock per test binary; cargo runs the binaries one at a time.
static CLUSTER_LOCK: Mutex<()> = Mutex::new(());

/// Holds the cluster lock for a scenario.
pub fn exclusive() -> MutexGuard<'static, ()> {
    // A failed scenario poisons the lock; the next one may still run.
    CLUSTER_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// initdb + first start + leader key (debug build, two busy cores).
pub const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(180);
/// Replicas cloned, streaming, synchronous set recorded.
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Leader death to a new leader: ttl + loop_wait + race + promote, with a wide margin.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(120);
/// A killed former primary back as a replica (crash recovery, pg_rewind, restart).
pub const REJOIN_TIMEOUT: Duration = Duration::from_secs(180);
/// One SQL round trip or a small replication delay.
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(30);
