//! Failsafe rounds over the simulated peer network, as `src/runtime/failsafe.rs` runs them:
//! a `POST /failsafe` reaches each member after a network delay and is judged by that
//! member's own core (a member that runs as or is becoming primary refuses); a member that
//! cannot be reached, is frozen or is down never answers, and the round then ends only
//! after both attempts timed out.

use super::*;

/// Patroni's 2 s timeout, twice (one retry).
const UNANSWERED_MS: u64 = 4_000;

impl World {
    /// The leader sends its round: the requests land after a short delay.
    pub(super) fn failsafe_round(&mut self, i: usize, inc: u64, members: Vec<(String, String)>) {
        let sent_at = self.node_now(i);
        let delay = self.rng.range(1, 10);
        self.after(
            delay,
            Ev::FailsafePost {
                node: i,
                inc,
                members,
                sent_at,
            },
        );
    }

    /// The requests reach the members; the verdicts go back to the leader.
    pub(super) fn failsafe_post_arrives(
        &mut self,
        i: usize,
        inc: u64,
        members: Vec<(String, String)>,
        sent_at: Instant,
    ) {
        let leader = self.nodes[i].name.clone();
        let mut refusals = Vec::new();
        let mut unanswered = false;
        for (name, _url) in members {
            let Some(j) = self.find(&name) else {
                refusals.push(format!("{name}: unknown host"));
                unanswered = true;
                continue;
            };
            let n = &self.nodes[j];
            if !self.peers_reachable(i, j) || n.paused || n.agent.is_none() {
                refusals.push(format!("{name}: no answer"));
                unanswered = true;
                continue;
            }
            self.next_failsafe_request += 1;
            let request = self.next_failsafe_request;
            self.feed(
                j,
                Input::FailsafeHeartbeat {
                    leader: leader.clone(),
                    request,
                },
            );
            let verdict = self.nodes[j]
                .status
                .as_ref()
                .and_then(|s| s.failsafe.verdict(request).cloned());
            match verdict {
                Some(HeartbeatVerdict::Accepted) => {}
                Some(HeartbeatVerdict::Refused(why)) => refusals.push(format!("{name}: 500 {why}")),
                Some(HeartbeatVerdict::Disabled) => refusals.push(format!("{name}: 502")),
                None => refusals.push(format!("{name}: no verdict")),
            }
        }
        if refusals.is_empty() {
            self.outcome.failsafe_confirmed += 1;
        } else {
            self.outcome.failsafe_failed += 1;
            self.log(|| format!("failsafe round of {leader} failed: {refusals:?}"));
        }
        // The answers (or the timeouts) travel back; an answer needs the way back open.
        let delay = if unanswered {
            UNANSWERED_MS
        } else {
            self.rng.range(1, 10)
        };
        self.after(
            delay,
            Ev::Deliver {
                node: i,
                inc,
                input: Input::FailsafeConfirmed { sent_at, refusals },
            },
        );
    }
}
