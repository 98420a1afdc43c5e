//! The invariant gate: rules no decision may break, whoever made it. A refused decision
//! is reported with the rule's name; it never crashes the agent.

use std::fmt;

use super::types::Timeline;
use super::view::SyncState;

/// A safety rule that refused a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Only the holder of the leader key may be primary.
    LeaderKeyNotHeld,
    /// The lease's demotion deadline has passed (or there is no lease).
    LeaseDeadlinePassed,
    /// Never promote behind the cluster timeline.
    BehindClusterTimeline {
        /// Ours.
        mine: Timeline,
        /// The cluster's.
        cluster: Timeline,
    },
    /// In synchronous mode only a member recorded in `/sync` may be promoted.
    NotSynchronous,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::LeaderKeyNotHeld => write!(f, "leader-key-not-held"),
            Rule::LeaseDeadlinePassed => write!(f, "lease-deadline-passed"),
            Rule::BehindClusterTimeline { mine, cluster } => {
                write!(
                    f,
                    "behind-cluster-timeline (ours {mine}, cluster {cluster})"
                )
            }
            Rule::NotSynchronous => write!(f, "not-in-sync-set"),
        }
    }
}

/// What the promotion check looks at.
#[derive(Clone, Copy, Debug)]
pub struct PromotionFacts<'a> {
    /// Our name.
    pub me: &'a str,
    /// The leader key is ours on our lease.
    pub holds_leader_key: bool,
    /// Now is before the demotion deadline.
    pub lease_allows_primary: bool,
    /// Our timeline.
    pub my_timeline: Option<Timeline>,
    /// The cluster's timeline from `/history`.
    pub cluster_timeline: Option<Timeline>,
    /// `synchronous_mode: on`.
    pub synchronous_mode: bool,
    /// `/sync`.
    pub sync: Option<&'a SyncState>,
}

/// Check that promoting now breaks no invariant.
pub fn check_promotion(facts: &PromotionFacts<'_>) -> Result<(), Rule> {
    if !facts.holds_leader_key {
        return Err(Rule::LeaderKeyNotHeld);
    }
    if !facts.lease_allows_primary {
        return Err(Rule::LeaseDeadlinePassed);
    }
    if let (Some(mine), Some(cluster)) = (facts.my_timeline, facts.cluster_timeline) {
        if mine < cluster {
            return Err(Rule::BehindClusterTimeline { mine, cluster });
        }
    }
    if facts.synchronous_mode {
        if let Some(sync) = facts.sync.filter(|s| s.leader.is_some()) {
            if !sync.allows(facts.me) {
                return Err(Rule::NotSynchronous);
            }
        }
    }
    Ok(())
}
