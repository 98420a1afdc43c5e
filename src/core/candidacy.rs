//! A candidate's race for the leader key: the phases it goes through and what it learnt on
//! the way. The `candidate` state owns one `Race` (statig state-local storage), so every
//! way out of the state drops it: no flag of an abandoned race can leak into the next.
//!
//! ```text
//! ProbingPeers ──peers answered──▶ AwaitingPolicy ──policy: race, gate: yes──▶ Acquiring
//!      key ours ──▶ [ArmingWatchdog] ──▶ [ClaimingSync] ──▶ Promoting ──▶ (primary)
//! ```
//! A node that finds the key already ours (a restarted agent) enters at `Acquiring`'s end.

use super::time::Instant;

/// Where a race is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Peers are being probed; the policy is asked once they answer.
    #[default]
    ProbingPeers,
    /// The election call waits for the policy's answer.
    AwaitingPolicy {
        /// The call's sequence number (only its answer is the election's).
        seq: u64,
        /// When it was asked: unanswered for `ttl`, the race is abandoned.
        asked_at: Instant,
    },
    /// The leader key is being acquired.
    Acquiring,
    /// The key is ours; the promotion waits for the watchdog arm in flight.
    ArmingWatchdog,
    /// The key is ours; the pre-promotion `/sync` claim is in flight. Only its own answer
    /// may let the promotion go on (a routine write's success says nothing about the claim).
    ClaimingSync {
        /// The claim's sequence number.
        seq: u64,
    },
    /// PostgreSQL is being promoted.
    Promoting,
}

/// One race for the leader key, from the free key seen to promotion or retreat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Race {
    /// Where the race is.
    pub phase: Phase,
    /// Quorum mode: this race's election passed the gate's vote count (what lets a member
    /// outside `/sync` be promoted).
    pub votes_won: bool,
    /// `/sync` was claimed for this promotion.
    pub sync_claimed: bool,
}

impl Race {
    /// A race that starts with the key already ours (nothing to probe, ask or acquire).
    pub fn with_key() -> Race {
        Race {
            phase: Phase::Acquiring,
            ..Race::default()
        }
    }

    /// The election call waiting for an answer, if any.
    pub fn election_seq(&self) -> Option<u64> {
        match self.phase {
            Phase::AwaitingPolicy { seq, .. } => Some(seq),
            _ => None,
        }
    }

    /// Whether `seq` answers the election call.
    pub fn answers_election(&self, seq: u64) -> bool {
        self.election_seq() == Some(seq)
    }

    /// Whether `seq` answers the `/sync` claim in flight.
    pub fn answers_claim(&self, seq: u64) -> bool {
        self.phase == Phase::ClaimingSync { seq }
    }

    /// Whether the election was asked more than `ttl` before `now` and is unanswered.
    pub fn election_overdue(&self, now: Instant, ttl: std::time::Duration) -> bool {
        matches!(self.phase, Phase::AwaitingPolicy { asked_at, .. } if now.saturating_since(asked_at) > ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_calls_in_flight_answer_and_the_election_expires_after_ttl() {
        let mut race = Race::default();
        assert_eq!(race.phase, Phase::ProbingPeers);
        assert!(!race.answers_election(1));
        race.phase = Phase::AwaitingPolicy {
            seq: 7,
            asked_at: Instant(1_000),
        };
        assert!(race.answers_election(7));
        assert!(!race.answers_election(6));
        assert!(!race.answers_claim(7));
        let ttl = Duration::from_secs(10);
        assert!(!race.election_overdue(Instant(11_000), ttl));
        assert!(race.election_overdue(Instant(11_001), ttl));
        race.phase = Phase::ClaimingSync { seq: 3 };
        assert!(race.answers_claim(3));
        assert!(!race.answers_claim(4));
        assert!(!race.election_overdue(Instant(99_000), ttl));
        assert_eq!(Race::with_key().phase, Phase::Acquiring);
    }
}
