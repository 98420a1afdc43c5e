//! The invariant gate: rules no decision may break, whoever made it. A refused decision
//! is reported with the rule's name; it never crashes the agent.

use std::fmt;

use super::sync;
use super::types::{LeaseId, Lsn, Revision, Timeline};
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
    /// Quorum mode: promoted only by the leader that wrote `/sync` or after an election
    /// won with enough votes.
    QuorumNotWon,
}

impl Rule {
    /// The rule's name, without the details (for counts and span attributes).
    pub fn name(&self) -> &'static str {
        match self {
            Rule::LeaderKeyNotHeld => "leader-key-not-held",
            Rule::LeaseDeadlinePassed => "lease-deadline-passed",
            Rule::BehindClusterTimeline { .. } => "behind-cluster-timeline",
            Rule::NotSynchronous => "not-synchronous",
            Rule::QuorumNotWon => "quorum-not-won",
        }
    }
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
            Rule::QuorumNotWon => {
                write!(f, "quorum-not-reached (no election won with /sync votes)")
            }
        }
    }
}

/// What the promotion check looks at.
#[derive(Clone, Copy, Debug)]
pub struct PromotionFacts<'a> {
    /// Our name.
    pub me: &'a str,
    /// When the leader key is ours on our lease: that lease and the key's create_revision
    /// (the fencing token the promotion will carry).
    pub key: Option<(LeaseId, Revision)>,
    /// Now is before the demotion deadline.
    pub lease_allows_primary: bool,
    /// Our timeline.
    pub my_timeline: Option<Timeline>,
    /// The cluster's timeline from `/history`.
    pub cluster_timeline: Option<Timeline>,
    /// `synchronous_mode: on` or `quorum`.
    pub synchronous_mode: bool,
    /// `synchronous_mode: quorum`.
    pub quorum: bool,
    /// Quorum mode: our last election passed the vote count.
    pub quorum_votes_won: bool,
    /// `/sync`.
    pub sync: Option<&'a SyncState>,
    /// An operator's manual failover names us: the synchronous-set rule is waived.
    pub manual_failover: bool,
}

/// Proof that [`check_promotion`] passed, carrying the fencing token it passed with. Only
/// that function makes one and `PgAction::Promote` needs one, so no promotion can skip the
/// gate: it is a property of the types, not a convention at each call site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PromotionPermit {
    lease: LeaseId,
    leader_revision: Revision,
}

impl PromotionPermit {
    /// The lease the promotion was allowed under.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// The create_revision of the leader key it was allowed under.
    pub fn leader_revision(&self) -> Revision {
        self.leader_revision
    }
}

/// Check that promoting now breaks no invariant.
pub fn check_promotion(facts: &PromotionFacts<'_>) -> Result<PromotionPermit, Rule> {
    let Some((lease, leader_revision)) = facts.key else {
        return Err(Rule::LeaderKeyNotHeld);
    };
    if !facts.lease_allows_primary {
        return Err(Rule::LeaseDeadlinePassed);
    }
    if let (Some(mine), Some(cluster)) = (facts.my_timeline, facts.cluster_timeline) {
        if mine < cluster {
            return Err(Rule::BehindClusterTimeline { mine, cluster });
        }
    }
    if facts.synchronous_mode && !facts.manual_failover {
        if let Some(sync) = facts.sync.filter(|s| s.leader.is_some()) {
            if facts.quorum {
                // Being a voter proves nothing alone: the votes do.
                if sync.leader.as_deref() != Some(facts.me) && !facts.quorum_votes_won {
                    return Err(Rule::QuorumNotWon);
                }
            } else if !sync.allows(facts.me) {
                return Err(Rule::NotSynchronous);
            }
        }
    }
    Ok(PromotionPermit {
        lease,
        leader_revision,
    })
}

/// A rule that refused a policy's decision to race for the leader key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaceRule {
    /// `nofailover` or `failover_priority` ≤ 0.
    MayNotLead,
    /// `watchdog.mode: required` and the device is not usable.
    WatchdogUnusable(String),
    /// Another member holds the leader key.
    LeaderKeyHeld(String),
    /// Our lease's renewals are failing and it lapses within `retry_timeout`: a win would be
    /// followed at once by an offline demotion (a new timeline for nothing).
    LeaseLapsing,
    /// PostgreSQL does not answer.
    PostgresNotRunning,
    /// Our timeline is behind the cluster's.
    BehindClusterTimeline {
        /// Ours.
        mine: Timeline,
        /// The cluster's.
        cluster: Timeline,
    },
    /// Synchronous mode and `/sync` does not name us.
    NotSynchronous,
    /// Quorum mode: fewer votes from `/sync` voters not ahead of us than `/sync.quorum`.
    QuorumNotReached {
        /// Votes counted (Patroni's counting: a non-voter starts at -1).
        votes: i64,
        /// `/sync.quorum`.
        needed: u32,
    },
    /// Failsafe: a leader's `POST /failsafe` accepted less than `ttl` ago says it may still
    /// run as primary through a lock store outage.
    FailsafeHeartbeat(String),
    /// Failsafe: `/failsafe` lists the members a failsafe primary asks; we are not among them.
    NotInFailsafe,
    /// Failsafe: the agent started less than `ttl` ago and may have accepted a heartbeat it
    /// no longer remembers.
    FailsafeStartup,
    /// Further behind the leader's last position than `maximum_lag_on_failover`.
    LagExceeded {
        /// Bytes behind.
        lag: u64,
        /// The limit.
        limit: u64,
    },
}

impl RaceRule {
    /// Stable name, for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            RaceRule::MayNotLead => "may-not-lead",
            RaceRule::WatchdogUnusable(_) => "watchdog-unusable",
            RaceRule::LeaderKeyHeld(_) => "leader-key-held",
            RaceRule::LeaseLapsing => "lease-lapsing",
            RaceRule::PostgresNotRunning => "postgres-not-running",
            RaceRule::BehindClusterTimeline { .. } => "behind-cluster-timeline",
            RaceRule::NotSynchronous => "not-in-sync-set",
            RaceRule::QuorumNotReached { .. } => "quorum-not-reached",
            RaceRule::FailsafeHeartbeat(_) => "failsafe-heartbeat",
            RaceRule::NotInFailsafe => "not-in-failsafe",
            RaceRule::FailsafeStartup => "failsafe-startup",
            RaceRule::LagExceeded { .. } => "lag-exceeded",
        }
    }
}

impl fmt::Display for RaceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaceRule::MayNotLead => {
                write!(f, "may-not-lead (nofailover or failover_priority <= 0)")
            }
            RaceRule::WatchdogUnusable(why) => {
                write!(f, "watchdog-unusable (mode required: {why})")
            }
            RaceRule::LeaderKeyHeld(holder) => write!(f, "leader-key-held (by {holder})"),
            RaceRule::PostgresNotRunning => write!(f, "postgres-not-running"),
            RaceRule::BehindClusterTimeline { mine, cluster } => {
                write!(
                    f,
                    "behind-cluster-timeline (ours {mine}, cluster {cluster})"
                )
            }
            RaceRule::NotSynchronous => write!(f, "not-in-sync-set"),
            RaceRule::QuorumNotReached { votes, needed } => write!(
                f,
                "quorum-not-reached ({votes} votes from /sync voters not ahead, {needed} needed)"
            ),
            RaceRule::FailsafeHeartbeat(leader) => write!(
                f,
                "failsafe-heartbeat ({leader} confirmed itself as primary over POST /failsafe less than ttl ago)"
            ),
            RaceRule::NotInFailsafe => {
                write!(f, "not-in-failsafe (/failsafe does not list this member)")
            }
            RaceRule::LeaseLapsing => write!(
                f,
                "lease-lapsing (renewals are failing and the lease lapses within retry_timeout)"
            ),
            RaceRule::FailsafeStartup => write!(
                f,
                "failsafe-startup (started less than ttl ago; a failsafe primary may count on us)"
            ),
            RaceRule::LagExceeded { lag, limit } => {
                write!(
                    f,
                    "lag-exceeded ({lag} bytes > maximum_lag_on_failover {limit})"
                )
            }
        }
    }
}

/// What the race check looks at.
#[derive(Clone, Copy, Debug)]
pub struct RaceFacts<'a> {
    /// Our name.
    pub me: &'a str,
    /// With `watchdog.mode: required`, why the device is unusable.
    pub watchdog_unusable: Option<&'a str>,
    /// Our effective `failover_priority`.
    pub failover_priority: i64,
    /// Holder of the leader key, if any.
    pub leader: Option<&'a str>,
    /// PostgreSQL answers queries.
    pub postgres_running: bool,
    /// It runs read-write.
    pub postgres_primary: bool,
    /// Our WAL position.
    pub my_position: Option<Lsn>,
    /// The leader's last published position.
    pub leader_position: Option<Lsn>,
    /// `maximum_lag_on_failover`.
    pub maximum_lag: u64,
    /// Our timeline.
    pub my_timeline: Option<Timeline>,
    /// The cluster's timeline from `/history`.
    pub cluster_timeline: Option<Timeline>,
    /// Any synchronous mode.
    pub synchronous_mode: bool,
    /// `synchronous_mode: quorum`.
    pub quorum: bool,
    /// `/sync`.
    pub sync: Option<&'a SyncState>,
    /// Probed peers' WAL positions (`None`: not probed yet; the vote is then counted at
    /// the election).
    pub answers: Option<&'a [(String, Lsn)]>,
    /// An operator's manual failover names us (Patroni's `failover --candidate` in a
    /// leaderless cluster): the synchronous-set and lag rules are waived; the operator
    /// accepted losing what the candidate lacks. Timeline and liveness rules still hold.
    pub manual_failover: bool,
    /// Failsafe: the leader whose accepted heartbeat is younger than `ttl`.
    pub failsafe_heartbeat_from: Option<&'a str>,
    /// Failsafe mode on, `/failsafe` non-empty and without us.
    pub not_in_failsafe: bool,
    /// Failsafe mode on and the agent started less than `ttl` ago.
    pub failsafe_startup: bool,
    /// Our lease's renewals are failing and its deadline is within `retry_timeout`.
    pub lease_lapsing: bool,
}

/// Check that racing for the leader key now breaks no invariant, whatever a policy said.
/// The holder of the key itself is not racing and is not checked here.
pub fn check_race(facts: &RaceFacts<'_>) -> Result<(), RaceRule> {
    if let Some(why) = facts.watchdog_unusable {
        return Err(RaceRule::WatchdogUnusable(why.to_owned()));
    }
    if facts.failover_priority <= 0 {
        return Err(RaceRule::MayNotLead);
    }
    if let Some(holder) = facts.leader.filter(|l| *l != facts.me) {
        return Err(RaceRule::LeaderKeyHeld(holder.to_owned()));
    }
    if facts.lease_lapsing {
        return Err(RaceRule::LeaseLapsing);
    }
    if !facts.postgres_running {
        return Err(RaceRule::PostgresNotRunning);
    }
    if let (Some(mine), Some(cluster)) = (facts.my_timeline, facts.cluster_timeline) {
        if mine < cluster {
            return Err(RaceRule::BehindClusterTimeline { mine, cluster });
        }
    }
    if facts.postgres_primary {
        return Ok(()); // a running primary on the cluster timeline has every committed write
    }
    // Failsafe rules hold even for an operator's failover: a primary may still be running
    // on the strength of our promise (see `failsafe`'s module comment).
    if let Some(leader) = facts.failsafe_heartbeat_from {
        return Err(RaceRule::FailsafeHeartbeat(leader.to_owned()));
    }
    if facts.not_in_failsafe {
        return Err(RaceRule::NotInFailsafe);
    }
    if facts.failsafe_startup {
        return Err(RaceRule::FailsafeStartup);
    }
    if facts.manual_failover {
        return Ok(());
    }
    if facts.synchronous_mode {
        if let Some(sync) = facts.sync.filter(|s| s.leader.is_some()) {
            if facts.quorum {
                // A member outside the voters may win too, with enough votes (see
                // `sync`'s module comment for why the count guarantees every
                // acknowledged commit).
                if let Some(answers) = facts.answers {
                    let mine = facts.my_position.unwrap_or_default();
                    sync::quorum_votes(facts.me, mine, sync, answers)
                        .map_err(|(votes, needed)| RaceRule::QuorumNotReached { votes, needed })?;
                }
            } else if !sync.allows(facts.me) {
                return Err(RaceRule::NotSynchronous);
            }
        }
    }
    if let (Some(mine), Some(leader)) = (facts.my_position, facts.leader_position) {
        let lag = leader.bytes_since(mine);
        if lag > facts.maximum_lag {
            return Err(RaceRule::LagExceeded {
                lag,
                limit: facts.maximum_lag,
            });
        }
    }
    Ok(())
}
