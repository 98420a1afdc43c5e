//! pgwarden's default policy: Patroni's failover semantics.
//!
//! - Race only when the leader key is free, PostgreSQL runs, `failover_priority` > 0, the
//!   node is within `maximum_lag_on_failover` of the leader's last position, not behind the
//!   cluster timeline (with `check_timeline`), and, in synchronous mode, allowed by `/sync`.
//! - Among the members that answered the probe: stand down for a live primary, for an
//!   eligible member that is further ahead, or one as far ahead with a higher
//!   `failover_priority` (Patroni's `is_healthiest_node`).
//! - A manual failover or switchover (the `failover` key) with a candidate: only the
//!   candidate races, without comparing itself to its peers. A failover (no leader named)
//!   waives the lag and synchronous checks, as Patroni does: the operator asked for it. The
//!   leader a switchover moves away from does not race while another member can take over.
//!   A request that has left the cluster leaderless for longer than `ttl` is ignored, so a
//!   candidate that never takes over cannot keep the cluster without a leader.
//! - The leader hands over (`fence: demote`, a clean shutdown, then the key is released) for
//!   a switchover addressed to it when the candidate, or with none named some standby, is
//!   ready: running, streaming, within `maximum_lag_on_failover`, and allowed by `/sync`.
//! - Quorum mode (`synchronous_mode: quorum`): a node outside `/sync` may race too, but
//!   only with `/sync.quorum` votes from voters not ahead of it (`quorum_vote`).
//! - The leader's synchronous standbys: streaming members that may be synchronous, those
//!   within `maximum_lag_on_syncnode` first, then by `sync_priority`, keeping current ones,
//!   then the most advanced; `synchronous_node_count` of them (all of them in quorum mode).
//!
//! The same code is the embedded component, the agent's fallback when another policy fails,
//! and the simulation's policy.

use pgwarden_policy::{
    log, ClusterView, Decision, Event, Fence, Info, Level, Member, Policy, Race, Role, Switchover,
    SynchronousMode,
};

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
            fence: fence(view),
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
    let Some(me) = view.myself() else {
        return Race::StandDown("not in the member list".into());
    };
    if let Some(switchover) = pending_switchover(view) {
        match switchover.candidate.as_deref() {
            Some(candidate) if candidate == view.me => {
                return match named_candidate_ready(view, me, switchover.leader.is_none()) {
                    Ok(()) => Race::Race,
                    Err(why) => Race::StandDown(why),
                };
            }
            Some(candidate) => {
                let candidate_alive = view
                    .member(candidate)
                    .is_some_and(|m| m.reachable != Some(false));
                if candidate_alive {
                    return Race::StandDown(format!("manual failover to {candidate}"));
                }
            }
            None if switchover.leader.as_deref() == Some(view.me.as_str()) => {
                let someone_else = view
                    .others()
                    .any(|m| m.reachable == Some(true) && healthy_enough(view, m).is_ok());
                if someone_else {
                    return Race::StandDown(
                        "a switchover away from this node is in progress".into(),
                    );
                }
            }
            None => {}
        }
    }
    match healthy_enough(view, me) {
        Err(why) => Race::StandDown(why),
        Ok(()) if me.role == Role::Primary => Race::Race,
        Ok(()) => match better_peer(view, me) {
            Some(why) => Race::StandDown(why),
            None => match quorum_vote(view, me) {
                Ok(()) => Race::Race,
                Err(why) => Race::StandDown(why),
            },
        },
    }
}

/// The `failover` key's request, unless it has kept the cluster leaderless for more than
/// `ttl` (its candidate did not take over: the cluster must not stay without a leader).
pub fn pending_switchover(view: &ClusterView) -> Option<&Switchover> {
    let switchover = view.switchover.as_ref()?;
    let stale =
        view.lease.holder.is_none() && view.leaderless_ms.is_some_and(|ms| ms > view.config.ttl_ms);
    (!stale).then_some(switchover)
}

/// Whether the node named by a manual failover (`manual`: no leader named) or a switchover
/// may race: it must be able to lead and run PostgreSQL; a switchover candidate must also
/// pass every health rule, a failover candidate need not (the operator accepted the loss).
pub fn named_candidate_ready(view: &ClusterView, me: &Member, manual: bool) -> Result<(), String> {
    if !manual {
        return healthy_enough(view, me);
    }
    if !me.can_lead() {
        return Err("nofailover (failover_priority <= 0)".into());
    }
    if me.role == Role::Unknown || me.state != "running" {
        return Err(format!("PostgreSQL is not running ({})", me.state));
    }
    Ok(())
}

/// The leader's answer to a switchover addressed to it: demote (cleanly; the host releases
/// the key after the stop) when a member can take over, otherwise keep leading (the host then
/// declines the request and deletes it).
pub fn fence(view: &ClusterView) -> Fence {
    fence_for_switchover(view, |member| switchover_ready(view, member))
}

/// [`fence`] with the caller's test of a member that may take over.
pub fn fence_for_switchover(
    view: &ClusterView,
    ready: impl Fn(&Member) -> Result<(), String>,
) -> Fence {
    if !view.lease.mine {
        return Fence::None;
    }
    let Some(switchover) = view.switchover.as_ref() else {
        return Fence::None;
    };
    if switchover.leader.as_deref().is_some_and(|l| l != view.me) {
        return Fence::None;
    }
    match switchover.candidate.as_deref() {
        Some(candidate) if candidate == view.me => Fence::None,
        Some(candidate) => match view.member(candidate).map(&ready) {
            Some(Ok(())) => Fence::Demote(format!("switchover to {candidate}")),
            Some(Err(why)) => {
                log(
                    Level::Warn,
                    &format!("switchover to {candidate} is not possible: {why}"),
                );
                Fence::None
            }
            None => {
                log(
                    Level::Warn,
                    &format!("switchover to {candidate} is not possible: no such member"),
                );
                Fence::None
            }
        },
        None => match view.others().find(|m| ready(m).is_ok()) {
            Some(member) => Fence::Demote(format!(
                "switchover: {} and possibly others can take over",
                member.name
            )),
            None => {
                log(
                    Level::Warn,
                    "switchover is not possible: no standby is ready to take over",
                );
                Fence::None
            }
        },
    }
}

/// Whether a standby can take over from the live leader now: it may lead, runs and streams
/// from the leader, is within `maximum_lag_on_failover`, and, for a switchover (not a
/// failover naming it), `/sync` allows it.
pub fn switchover_ready(view: &ClusterView, member: &Member) -> Result<(), String> {
    if !member.can_lead() {
        return Err(format!("{} may not lead (nofailover)", member.name));
    }
    if member.role != Role::Replica || member.state != "running" {
        return Err(format!(
            "{} is not a running standby ({:?}, {})",
            member.name, member.role, member.state
        ));
    }
    if !member.streaming {
        return Err(format!("{} is not streaming from the leader", member.name));
    }
    // A failover (no leader named) is the operator's explicit choice: Patroni lets it name an
    // asynchronous standby. A switchover must keep every acknowledged commit.
    let manual = view.switchover.as_ref().is_some_and(|s| s.leader.is_none());
    if !manual && view.config.synchronous_mode.is_synchronous() && !view.sync_allows(&member.name) {
        return Err(format!(
            "{} is not a synchronous standby (/sync: [{}])",
            member.name,
            view.sync_standbys.join(", ")
        ));
    }
    let limit = view.config.maximum_lag_on_failover;
    if let Some(lag) = member.lag_bytes.filter(|lag| *lag > limit) {
        return Err(format!(
            "{} lags {lag} bytes, over maximum_lag_on_failover {limit}",
            member.name
        ));
    }
    Ok(())
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
    // Quorum mode lets a member outside the voters win with enough votes (`quorum_vote`).
    let quorum = view.config.synchronous_mode == SynchronousMode::Quorum;
    if view.config.synchronous_mode.is_synchronous() && !quorum && !view.sync_allows(&me.name) {
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
        // A position on a timeline the cluster (or we) already left is not comparable: it
        // may be further along a history that was abandoned (a former primary's unreplicated
        // writes). Such a peer cannot be promoted, so it must not veto either.
        let left_behind = |tl: Option<u32>| match (peer.timeline, tl) {
            (Some(theirs), Some(other)) => theirs < other,
            _ => false,
        };
        if left_behind(me.timeline) || left_behind(view.cluster_timeline) {
            continue;
        }
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

/// The leader's synchronous standbys among the streaming members that may be synchronous
/// (no `nosync`/`nostream`, `sync_priority` > 0): first those within
/// `maximum_lag_on_syncnode` (so a lagging one is swapped for a healthier one, and kept only
/// when there is none), then higher `sync_priority`, then the current ones (so the set does
/// not flap), then the most advanced. FIRST mode takes `synchronous_node_count` of them;
/// quorum mode returns them all (`ANY n` draws from the whole set).
pub fn sync_standbys(view: &ClusterView) -> Option<Vec<String>> {
    if !view.lease.mine || !view.config.synchronous_mode.is_synchronous() {
        return None;
    }
    let candidates: Vec<&Member> = view
        .others()
        .filter(|m| m.streaming && m.can_be_sync())
        .collect();
    // Patroni measures lag from the most advanced replica when there are several (a busy
    // primary is ahead of all of them), from the leader otherwise.
    let best = candidates.iter().filter_map(|m| m.wal_position()).max();
    let several = candidates.len() > 1;
    let lagging = |m: &Member| -> bool {
        let Some(limit) = view.config.maximum_lag_on_syncnode else {
            return false;
        };
        let lag = match (several, best, m.wal_position()) {
            (true, Some(best), Some(mine)) => Some(best.saturating_sub(mine)),
            _ => m.lag_bytes,
        };
        lag.is_some_and(|lag| lag > limit)
    };
    let mut candidates = candidates;
    candidates.sort_by(|a, b| {
        lagging(a)
            .cmp(&lagging(b))
            .then(b.sync_priority().cmp(&a.sync_priority()))
            .then(b.is_sync.cmp(&a.is_sync))
            .then(b.wal_position().cmp(&a.wal_position()))
            .then(a.name.cmp(&b.name))
    });
    let count = if view.config.synchronous_mode == SynchronousMode::Quorum {
        candidates.len()
    } else {
        view.config.synchronous_node_count.max(1) as usize
    };
    Some(
        candidates
            .into_iter()
            .take(count)
            .map(|m| m.name.clone())
            .collect(),
    )
}

/// Quorum mode: whether the calling node has the votes `/sync` asks for (Patroni's
/// counting: each voter that answered and is not ahead of it is one vote, itself excluded;
/// a node outside the voters starts at -1). The leader that wrote `/sync` may lead alone
/// unless someone who answered is ahead of it. The host's gate counts the same way.
pub fn quorum_vote(view: &ClusterView, me: &Member) -> Result<(), String> {
    if view.config.synchronous_mode != SynchronousMode::Quorum || view.sync_leader.is_none() {
        return Ok(());
    }
    let quorum = view.sync_quorum().unwrap_or(0);
    let mine = me.wal_position().unwrap_or(0);
    let answered: Vec<(&str, u64)> = view
        .others()
        .filter(|p| p.reachable == Some(true))
        .filter_map(|p| Some((p.name.as_str(), p.wal_position().filter(|l| *l > 0)?)))
        .collect();
    let ahead = answered.iter().any(|(_, lsn)| *lsn > mine);
    if view.sync_leader.as_deref() == Some(view.me.as_str()) && !ahead {
        return Ok(());
    }
    let is_voter = |name: &str| view.sync_standbys.iter().any(|s| s == name);
    let mut votes: i64 = if is_voter(&view.me) { 0 } else { -1 };
    votes += answered
        .iter()
        .filter(|(name, lsn)| is_voter(name) && *lsn <= mine)
        .count() as i64;
    if votes >= i64::from(quorum) {
        Ok(())
    } else {
        Err(format!(
            "quorum not reached: {votes} votes from /sync voters not ahead, {quorum} needed"
        ))
    }
}

#[cfg(test)]
mod tests;
