//! The decision boundary policies will own: whether this node races for the leader key and
//! which standbys are synchronous. `PatroniRules` is the default and reproduces Patroni's
//! `is_healthiest_node`: failover tags, synchronous-mode eligibility, lag against the
//! leader's last optime, timeline, and the peers' `/patroni` compared by WAL position.
//! Safety does not depend on this code: `safety` re-checks what must never happen.

use super::view::{ClusterView, PeerReport, PgObservation, ReplicationPeer};
use crate::config::{DynamicConfig, SynchronousMode};

/// What the policy sees when deciding whether to race.
#[derive(Clone, Copy, Debug)]
pub struct RaceContext<'a> {
    /// Our member name.
    pub me: &'a str,
    /// Our `failover_priority` (≤ 0: never lead; `nofailover` maps to 0).
    pub my_failover_priority: i64,
    /// Lock store content.
    pub view: &'a ClusterView,
    /// Local PostgreSQL.
    pub pg: &'a PgObservation,
    /// Effective dynamic configuration.
    pub config: &'a DynamicConfig,
    /// Peers' answers, once probed.
    pub peers: Option<&'a [PeerReport]>,
}

/// The verdict on racing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaceVerdict {
    /// Try to take the leader key.
    Race,
    /// Do not race, and why.
    StandDown(String),
}

/// Decisions that a failover policy makes.
pub trait FailoverPolicy {
    /// Whether to race for the leader key (called before and after probing peers).
    fn should_race(&self, ctx: &RaceContext<'_>) -> RaceVerdict;

    /// Which connected standbys the leader should make synchronous, in preference order.
    fn choose_sync_standbys(
        &self,
        view: &ClusterView,
        replication: &[ReplicationPeer],
        current: &[String],
        count: usize,
    ) -> Vec<String>;
}

/// Patroni's rules, the embedded default.
#[derive(Clone, Copy, Debug, Default)]
pub struct PatroniRules;

impl FailoverPolicy for PatroniRules {
    fn should_race(&self, ctx: &RaceContext<'_>) -> RaceVerdict {
        if ctx.my_failover_priority <= 0 {
            return RaceVerdict::StandDown("nofailover (failover_priority <= 0)".into());
        }
        let Some(server) = ctx.pg.server.as_ref() else {
            return RaceVerdict::StandDown("PostgreSQL is not running".into());
        };
        let cluster_timeline = ctx.view.timeline();
        if !server.in_recovery {
            // A running primary stays healthiest unless it is behind the cluster timeline:
            // that is a stale primary which must not take the lock back.
            return match cluster_timeline {
                Some(tl) if server.timeline < tl => RaceVerdict::StandDown(format!(
                    "running primary on timeline {} is behind cluster timeline {}",
                    server.timeline, tl
                )),
                _ => RaceVerdict::Race,
            };
        }
        // Quorum mode is run as synchronous mode with a FIRST-n set until it is implemented:
        // never weaker than what the operator asked for.
        let sync_mode = ctx.config.synchronous_mode != SynchronousMode::Off;
        let sync = ctx.view.sync.as_ref().map(|s| &s.value);
        if sync_mode {
            if let Some(sync) = sync.filter(|s| s.leader.is_some()) {
                if !sync.allows(ctx.me) {
                    return RaceVerdict::StandDown(format!(
                        "synchronous mode: not in /sync (leader {:?}, sync {:?})",
                        sync.leader, sync.sync_standby
                    ));
                }
            }
        }
        let my_lsn = server.wal_position;
        if let Some(optime) = ctx.view.optime {
            let lag = optime.bytes_since(my_lsn);
            if lag > ctx.config.maximum_lag_on_failover {
                return RaceVerdict::StandDown(format!(
                    "lag {lag} bytes exceeds maximum_lag_on_failover {}",
                    ctx.config.maximum_lag_on_failover
                ));
            }
        }
        if ctx.config.check_timeline {
            if let Some(tl) = cluster_timeline {
                if server.timeline < tl {
                    return RaceVerdict::StandDown(format!(
                        "timeline {} behind cluster timeline {tl}",
                        server.timeline
                    ));
                }
            }
        }
        let Some(peers) = ctx.peers else {
            return RaceVerdict::Race;
        };
        for peer in peers {
            let Some(status) = peer.status.as_ref() else {
                continue; // unreachable members cannot veto
            };
            if status.role == "primary" && status.state == "running" {
                return RaceVerdict::StandDown(format!("primary {} is still alive", peer.name));
            }
            let eligible = status.can_lead
                && (!sync_mode || sync.is_none_or(|s| s.leader.is_none() || s.allows(&peer.name)));
            if !eligible {
                continue;
            }
            let Some(peer_lsn) = status.wal_position else {
                continue;
            };
            if peer_lsn > my_lsn {
                return RaceVerdict::StandDown(format!(
                    "{} is ahead ({peer_lsn} > {my_lsn})",
                    peer.name
                ));
            }
            if peer_lsn == my_lsn && status.failover_priority > ctx.my_failover_priority {
                return RaceVerdict::StandDown(format!(
                    "{} has the same position and a higher failover_priority",
                    peer.name
                ));
            }
        }
        RaceVerdict::Race
    }

    fn choose_sync_standbys(
        &self,
        view: &ClusterView,
        replication: &[ReplicationPeer],
        current: &[String],
        count: usize,
    ) -> Vec<String> {
        let mut candidates: Vec<&ReplicationPeer> = replication
            .iter()
            .filter(|r| r.state == "streaming")
            .filter(|r| {
                view.members
                    .get(&r.application_name)
                    .is_some_and(|m| m.can_be_sync())
            })
            .collect();
        // Keep the current synchronous standbys first so the set does not flap, then the
        // most advanced, then by name for determinism.
        candidates.sort_by(|a, b| {
            let a_cur = current.contains(&a.application_name);
            let b_cur = current.contains(&b.application_name);
            b_cur
                .cmp(&a_cur)
                .then(b.flush_lsn.cmp(&a.flush_lsn))
                .then(a.application_name.cmp(&b.application_name))
        });
        let mut names: Vec<String> = Vec::new();
        for c in candidates {
            if !names.contains(&c.application_name) {
                names.push(c.application_name.clone());
            }
        }
        names.truncate(count);
        names
    }
}
