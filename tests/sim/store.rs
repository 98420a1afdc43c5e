//! An in-memory lock store with etcd's semantics as pgwarden relies on them: a global
//! revision, create/mod revisions per key, leases whose TTL is rounded up to etcd's minimum
//! and which expire on a 500 ms tick (a key vanishes TTL + 0..0.5 s after the last
//! keep-alive), compare-and-swap transactions. Values are the real encodings (the agent's
//! codecs decode them), so the simulation exercises the same key format as production.

use std::collections::BTreeMap;
use std::sync::Arc;

use pgwarden::core::view::{ClusterView, HistoryEntry, SyncState};
use pgwarden::core::{Lsn, Revision};
use pgwarden::dcs::codec::{self, RawKey};
use pgwarden::dcs::keys;
use pgwarden::dcs::KeyLayout;

/// etcd's smallest lease TTL with default flags; smaller requests are silently rounded up.
pub const MIN_TTL_SECS: u32 = 2;
/// etcd checks lease expiry on this period.
pub const EXPIRY_TICK_MS: u64 = 500;

struct Lease {
    ttl_ms: u64,
    expires_at: u64,
}

pub struct MemStore {
    layout: KeyLayout,
    revision: i64,
    keys: BTreeMap<String, RawKey>,
    leases: BTreeMap<i64, Lease>,
    next_lease: i64,
    cached: Option<Arc<ClusterView>>,
}

/// Outcome of a leader key acquisition, as `EtcdStore::acquire_leader` reports it.
pub struct Acquired {
    pub won: bool,
    pub revision: i64,
    pub create_revision: i64,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore {
            layout: KeyLayout::new("/service", "sim"),
            revision: 1,
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            next_lease: 0x1000,
            cached: None,
        }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The decoded view at the current revision (decoded once per revision).
    pub fn view(&mut self) -> Arc<ClusterView> {
        if let Some(v) = self
            .cached
            .as_ref()
            .filter(|v| v.revision == Revision(self.revision))
        {
            return v.clone();
        }
        let view = Arc::new(codec::decode_view(&self.layout, &self.keys, self.revision));
        self.cached = Some(view.clone());
        view
    }

    /// The leader key's holder and lease, read directly (for the checkers).
    pub fn leader(&self) -> Option<(String, i64)> {
        let raw = self.keys.get(&self.layout.leader())?;
        Some((String::from_utf8_lossy(&raw.value).to_string(), raw.lease))
    }

    pub fn lease_alive(&self, lease: i64) -> bool {
        self.leases.contains_key(&lease)
    }

    pub fn grant(&mut self, now: u64, ttl_secs: u32) -> (i64, u32) {
        let granted = ttl_secs.max(MIN_TTL_SECS);
        self.next_lease += 1;
        let ttl_ms = u64::from(granted) * 1000;
        self.leases.insert(
            self.next_lease,
            Lease {
                ttl_ms,
                expires_at: now + ttl_ms,
            },
        );
        (self.next_lease, granted)
    }

    /// `Ok(false)`: the lease no longer exists.
    pub fn keep_alive(&mut self, now: u64, lease: i64) -> bool {
        match self.leases.get_mut(&lease) {
            Some(l) => {
                l.expires_at = now + l.ttl_ms;
                true
            }
            None => false,
        }
    }

    pub fn revoke(&mut self, lease: i64) {
        if self.leases.remove(&lease).is_none() {
            return;
        }
        let doomed: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, k)| k.lease == lease)
            .map(|(name, _)| name.clone())
            .collect();
        if !doomed.is_empty() {
            self.revision += 1;
            for key in doomed {
                self.keys.remove(&key);
            }
        }
    }

    /// The 500 ms expiry tick: every lease past its deadline is revoked.
    pub fn expire(&mut self, now: u64) {
        let expired: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for lease in expired {
            self.revoke(lease);
        }
    }

    fn put(&mut self, key: String, value: String, lease: i64) -> Result<i64, String> {
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(format!("etcdserver: requested lease not found ({lease:x})"));
        }
        self.revision += 1;
        let create_revision = self
            .keys
            .get(&key)
            .map(|k| k.create_revision)
            .unwrap_or(self.revision);
        self.keys.insert(
            key,
            RawKey {
                value: value.into_bytes(),
                lease,
                create_revision,
                mod_revision: self.revision,
            },
        );
        Ok(self.revision)
    }

    fn create_if_absent(&mut self, key: String, value: String, lease: i64) -> Result<bool, String> {
        if self.keys.contains_key(&key) {
            return Ok(false);
        }
        self.put(key, value, lease).map(|_| true)
    }

    fn delete(&mut self, key: &str) -> bool {
        if self.keys.remove(key).is_some() {
            self.revision += 1;
            true
        } else {
            false
        }
    }

    fn get(&self, name: &str) -> Option<&RawKey> {
        self.keys.get(&self.layout.key(name))
    }

    /// Create `leader` if absent, or move it onto `lease` when its value is already `me`.
    pub fn acquire_leader(&mut self, me: &str, lease: i64) -> Result<Acquired, String> {
        let key = self.layout.leader();
        if self.create_if_absent(key.clone(), me.to_string(), lease)? {
            return Ok(Acquired {
                won: true,
                revision: self.revision,
                create_revision: self.revision,
            });
        }
        let holder = self.keys.get(&key).map(|k| k.value.clone());
        if holder.as_deref() == Some(me.as_bytes()) {
            self.put(key.clone(), me.to_string(), lease)?;
            let create_revision = self.keys.get(&key).map(|k| k.create_revision).unwrap_or(0);
            return Ok(Acquired {
                won: true,
                revision: self.revision,
                create_revision,
            });
        }
        Ok(Acquired {
            won: false,
            revision: self.revision,
            create_revision: 0,
        })
    }

    pub fn release_leader(
        &mut self,
        me: &str,
        lease: Option<i64>,
        create_revision: Option<i64>,
    ) -> bool {
        let key = self.layout.leader();
        let ours = self.keys.get(&key).is_some_and(|k| {
            k.value == me.as_bytes()
                && lease.is_none_or(|lease| k.lease == lease)
                && create_revision.is_none_or(|rev| k.create_revision == rev)
        });
        ours && self.delete(&key)
    }

    pub fn put_member(&mut self, me: &str, value: String, lease: i64) -> Result<(), String> {
        self.put(self.layout.member(me), value, lease).map(|_| ())
    }

    pub fn race_initialize(&mut self) -> bool {
        self.create_if_absent(self.layout.key(keys::INITIALIZE), String::new(), 0)
            .unwrap_or(false)
    }

    pub fn cancel_initialize(&mut self) {
        self.delete(&self.layout.key(keys::INITIALIZE));
    }

    pub fn clear_initialize_at(&mut self, mod_revision: i64) -> bool {
        match self.get(keys::INITIALIZE) {
            Some(k) if k.mod_revision == mod_revision => {
                self.delete(&self.layout.key(keys::INITIALIZE))
            }
            _ => false,
        }
    }

    pub fn write_initialize(&mut self, sysid: &str) {
        let _ = self.put(self.layout.key(keys::INITIALIZE), sysid.to_string(), 0);
    }

    /// `patronictl pause` / `resume`: `pause: true` set in `/config`, or the key removed.
    pub fn set_pause(&mut self, paused: bool) {
        let key = self.layout.key(keys::CONFIG);
        let mut config: serde_json::Value = self
            .keys
            .get(&key)
            .and_then(|k| serde_json::from_slice(&k.value).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        if let Some(map) = config.as_object_mut() {
            if paused {
                map.insert("pause".into(), serde_json::Value::Bool(true));
            } else {
                map.remove("pause");
            }
        }
        let _ = self.put(key, config.to_string(), 0);
    }

    pub fn write_config_if_absent(&mut self, json: String) {
        let _ = self.create_if_absent(self.layout.key(keys::CONFIG), json, 0);
    }

    pub fn write_sync(&mut self, state: &SyncState, expected: Option<i64>) -> bool {
        let key = self.layout.key(keys::SYNC);
        let value = codec::encode_sync(state);
        match expected {
            None => self.create_if_absent(key, value, 0).unwrap_or(false),
            Some(rev) => {
                if self.get(keys::SYNC).map(|k| k.mod_revision) != Some(rev) {
                    return false;
                }
                self.put(key, value, 0).is_ok()
            }
        }
    }

    pub fn clear_failover(&mut self, expected: Option<i64>) -> bool {
        let current = self.get(keys::FAILOVER).map(|k| k.mod_revision);
        match (current, expected) {
            (None, _) => false,
            (Some(rev), Some(want)) if rev != want => false,
            _ => self.delete(&self.layout.key(keys::FAILOVER)),
        }
    }

    pub fn write_status(&mut self, optime: Lsn) {
        let _ = self.put(
            self.layout.key(keys::STATUS),
            codec::encode_status(optime),
            0,
        );
    }

    pub fn write_failsafe(&mut self, members: Option<&BTreeMap<String, String>>) {
        let key = self.layout.key(keys::FAILSAFE);
        match members {
            Some(members) => {
                let _ = self.put(key, codec::encode_failsafe(members), 0);
            }
            None => {
                self.delete(&key);
            }
        }
    }

    pub fn write_history(&mut self, entries: &[HistoryEntry]) {
        let _ = self.put(
            self.layout.key(keys::HISTORY),
            codec::encode_history(entries),
            0,
        );
    }
}
