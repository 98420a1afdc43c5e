//! pgwarden's default policy: Patroni's failover semantics.
//!
//! - Race only when the leader key is free, PostgreSQL runs, `failover_priority` > 0, the
//!   node is within `maximum_lag_on_failover` of the leader's last position, not behind the
//!   cluster timeline (with `check_timeline`), and, in synchronous mode, allowed by `/sync`.
//! - Among the members that answered the probe: stand down for a live primary, for an
//!   eligible member that is further ahead, or one as far ahead with a higher
//!   `failover_priority` (Patroni's `is_healthiest_node`).
//! - A manual failover with a candidate: only the candidate races.
//! - The leader keeps its current synchronous standbys, then adds the most advanced
//!   streaming members that may be synchronous, up to `synchronous_node_count`.
//!
//! The same code is the embedded component, the agent's fallback when another policy fails,
//! and the simulation's policy.

use pgwarden_policy::{ClusterView, Decision, Event, Fence, Info, Member, Policy, Race, Role};

/// Patroni's rules.
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {
    fn info() -> Info {
        Info {
            name: "default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Patroni's failover semantics (pgwarden's embedded default)".into(),
        }
    }

    fn decide(_event: &Event, view: &ClusterView) -> Decision {
        Decision {
            race: race(view),
            preference: preference(view),
            fence: Fence::None,
            sync_standbys: sync_standbys(view),
        }
    }
}

/// Whether the calling node should race for the leader key.
pub fn race(view: &ClusterView) -> Race {
    if view.lease.mine {
        return Race::Race; // we lead: keep it (a policy steps down through `fence`)
    }
    // Our own name on an older lease (the agent restarted) is not another leader: the
    // acquisition moves the key onto the current lease.
    if let Some(holder) = view.lease.holder.as_ref().filter(|h| **h != view.me) {
        return Race::StandDown(format!("{holder} holds the leader key"));
    }
    if let Some(candidate) = view
        .switchover
        .as_ref()
        .and_then(|s| s.candidate.as_deref())
    {
        if candidate != view.me {
            let candidate_alive = view
                .member(candidate)
                .is_some_and(|m| m.reachable != Some(false));
            if candidate_alive {
                return Race::StandDown(format!("manual failover to {candidate}"));
            }
        }
    }
    let Some(me) = view.myself() else {
        return Race::StandDown("not in the member list".into());
    };
    match healthy_enough(view, me) {
        Err(why) => Race::StandDown(why),
        Ok(()) if me.role == Role::Primary => Race::Race,
        Ok(()) => match better_peer(view, me) {
            Some(why) => Race::StandDown(why),
            None => Race::Race,
        },
    }
}

/// The rules a node checks about itself before racing.
pub fn healthy_enough(view: &ClusterView, me: &Member) -> Result<(), String> {
    if !me.can_lead() {
        return Err("nofailover (failover_priority <= 0)".into());
    }
    if me.role == Role::Unknown || me.state != "running" {
        return Err(format!("PostgreSQL is not running ({})", me.state));
    }
    if let (Some(mine), Some(cluster)) = (me.timeline, view.cluster_timeline) {
        let stale_primary = me.role == Role::Primary;
        if mine < cluster && (stale_primary || view.config.check_timeline) {
            return Err(format!(
                "timeline {mine} is behind the cluster timeline {cluster}"
            ));
        }
    }
    if me.role == Role::Primary {
        return Ok(()); // a running primary on the cluster timeline is the healthiest
    }
    if view.config.synchronous_mode.is_synchronous() && !view.sync_allows(&me.name) {
        return Err(format!(
            "synchronous mode: not in /sync (leader {:?}, standbys {:?})",
            view.sync_leader, view.sync_standbys
        ));
    }
    if let (Some(leader), Some(mine)) = (view.leader_lsn, me.wal_position()) {
        let lag = leader.saturating_sub(mine);
        if lag > view.config.maximum_lag_on_failover {
            return Err(format!(
                "lag {lag} bytes exceeds maximum_lag_on_failover {}",
                view.config.maximum_lag_on_failover
            ));
        }
    }
    Ok(())
}

/// A probed member that should lead instead of the calling node, as a reason.
pub fn better_peer(view: &ClusterView, me: &Member) -> Option<String> {
    let my_lsn = me.wal_position().unwrap_or(0);
    let sync_mode = view.config.synchronous_mode.is_synchronous();
    for peer in view.others().filter(|p| p.reachable == Some(true)) {
        if peer.is_live_primary() {
            return Some(format!("primary {} is still alive", peer.name));
        }
        let eligible = peer.can_lead() && (!sync_mode || view.sync_allows(&peer.name));
        let Some(peer_lsn) = peer.wal_position().filter(|_| eligible) else {
            continue;
        };
        if peer_lsn > my_lsn {
            return Some(format!("{} is ahead ({peer_lsn} > {my_lsn})", peer.name));
        }
        if peer_lsn == my_lsn && peer.failover_priority > me.failover_priority {
            return Some(format!(
                "{} has the same position and a higher failover_priority",
                peer.name
            ));
        }
    }
    None
}

/// Members that may lead, most suitable first: furthest ahead, then higher priority, then name.
pub fn preference(view: &ClusterView) -> Vec<String> {
    let mut candidates: Vec<&Member> = view
        .members
        .iter()
        .filter(|m| m.can_lead() && m.role != Role::Unknown)
        .collect();
    candidates.sort_by(|a, b| {
        b.wal_position()
            .cmp(&a.wal_position())
            .then(b.failover_priority.cmp(&a.failover_priority))
            .then(a.name.cmp(&b.name))
    });
    candidates.into_iter().map(|m| m.name.clone()).collect()
}

/// The leader's synchronous standbys: current ones first so the set does not flap, then the
/// most advanced streaming members that may be synchronous.
pub fn sync_standbys(view: &ClusterView) -> Option<Vec<String>> {
    if !view.lease.mine || !view.config.synchronous_mode.is_synchronous() {
        return None;
    }
    let mut candidates: Vec<&Member> = view
        .others()
        .filter(|m| m.streaming && m.can_be_sync())
        .filter(|m| {
            let limit = view.config.maximum_lag_on_syncnode;
            limit.is_none_or(|limit| m.lag_bytes.is_none_or(|lag| lag <= limit))
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.is_sync
            .cmp(&a.is_sync)
            .then(b.wal_position().cmp(&a.wal_position()))
            .then(a.name.cmp(&b.name))
    });
    let count = view.config.synchronous_node_count.max(1) as usize;
    Some(
        candidates
            .into_iter()
            .take(count)
            .map(|m| m.name.clone())
            .collect(),
    )
}

#[cfg(test)]
mod tests;
