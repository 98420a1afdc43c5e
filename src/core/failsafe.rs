//! Failsafe mode (Patroni's `failsafe_mode`): the bookkeeping that lets a primary keep
//! running through a lock store outage while every member listed in `/failsafe` confirms
//! it over the REST API, and that keeps those members from racing meanwhile.
//!
//! Owns: the last heartbeat (`POST /failsafe`) this node accepted and the verdicts it gave,
//! the primary's last confirmed round (its right to keep running), whether failsafe is
//! active, the last `/failsafe` write asked for, and the membership arithmetic. Pure: times
//! come from the inputs; the state machine and `Node` decide when to use it.
//!
//! Why it is safe. A primary normally keeps writing only until its demotion deadline
//! (last acknowledged renewal sent + ttl − margin), because after ttl another member may hold
//! the key. In failsafe mode a round of `POST /failsafe` to every other member listed in
//! `/failsafe` replaces the renewal: the round counts only if *all* of them accepted, and
//! its send time `S` gives the deadline `S + ttl − margin`, exactly as a renewal sent at `S`
//! would. A member that accepted a heartbeat at `A ≥ S` refuses to race until `A + ttl ≥
//! S + ttl` (`safety::RaceRule::FailsafeHeartbeat`), so no member in `/failsafe` can win the key
//! before the primary must have stopped. Members not in `/failsafe` never got asked, so they
//! may not race at all while it is non-empty (`RaceRule::NotInFailsafe`). A member that does
//! not answer, or answers that it is (becoming) a primary itself, makes the round fail and the
//! primary demotes at once; the deadline from the last good round bounds it anyway. An agent
//! that restarted has forgotten what it accepted, so it waits `ttl` after its start before
//! racing (`RaceRule::FailsafeStartup`). The heartbeat is accepted or refused by the core
//! itself, atomically with its state: a member racing or promoting refuses, so a promotion
//! and an accepted heartbeat cannot overlap.
//!
//! Durations are measured on each node's boot clock, like the lease: clocks must run at the
//! same rate, not agree. Unlike the lease, nothing outside the member bounds its promise
//! (etcd expires a key on its own clock; here only the member's clock says when `ttl` is
//! over), so the promise is counted in time the member saw pass: each step between two
//! inputs counts at most `step` (the core asks to be woken twice per step while a promise
//! holds). A jump of the clock, or a suspend, then shortens the promise by at most `step`,
//! which is kept below the demotion margin. A member that was suspended cannot have
//! answered the rounds meanwhile, so the primary stopped anyway; it only waits longer.
//!
//! Must not touch: clocks, the network, the lock store.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::time::Instant;
use super::view::ClusterView;

/// Verdicts kept for the REST handler that waits for its own (a few requests at most are
/// in flight: one leader, one retry).
const VERDICTS_KEPT: usize = 16;

/// What this node answered to a `POST /failsafe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatVerdict {
    /// 200 `Accepted`: the sender may keep running; we do not race for `ttl`.
    Accepted,
    /// 500: we run as (or are becoming) a primary ourselves.
    Refused(String),
    /// 502: failsafe mode is off here.
    Disabled,
}

/// A heartbeat accepted from a leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leader that sent it.
    pub leader: String,
    /// When we accepted it (our clock).
    pub at: Instant,
    /// How much of the promise not to race is left, in observed time.
    pub left: Duration,
}

/// The core's failsafe record.
#[derive(Clone, Debug)]
pub struct Failsafe {
    /// When this agent started: what it accepted before is forgotten.
    pub started_at: Instant,
    /// What is left of the startup grace (`ttl` from the start), in observed time.
    pub startup_left: Duration,
    /// The last instant time was observed (the last input).
    pub observed_at: Instant,
    /// The last heartbeat we accepted.
    pub heartbeat: Option<Heartbeat>,
    /// Primary: send time of the last round every member accepted.
    pub confirmed_sent_at: Option<Instant>,
    /// Primary: running on failsafe now (the store unreachable, a round confirmed).
    pub active: bool,
    /// Primary: renewals of the lease fail (the store is unreachable, not a CAS mismatch).
    pub renewals_failing: bool,
    /// A round is out.
    pub round_in_flight: bool,
    /// When the next round is due.
    pub next_round_at: Instant,
    /// We demoted because a round failed: the lease no longer lets us lead until the store
    /// answers a renewal again (the stale view still names us).
    pub stood_down: bool,
    /// The `/failsafe` value last asked for (None: delete) and when.
    pub written: Option<(Option<BTreeMap<String, String>>, Instant)>,
    /// The topology problem last logged, so it is logged once.
    pub warned: Option<String>,
    /// Recent verdicts by request id.
    pub verdicts: VecDeque<(u64, HeartbeatVerdict)>,
}

impl Failsafe {
    /// A record for an agent started at `now` under `ttl`.
    pub fn new(now: Instant, ttl: Duration) -> Failsafe {
        Failsafe {
            started_at: now,
            startup_left: ttl,
            observed_at: now,
            heartbeat: None,
            confirmed_sent_at: None,
            active: false,
            renewals_failing: false,
            round_in_flight: false,
            next_round_at: now,
            stood_down: false,
            written: None,
            warned: None,
            verdicts: VecDeque::new(),
        }
    }

    /// Remember what we answered to request `id`.
    pub fn record_verdict(&mut self, id: u64, verdict: HeartbeatVerdict) {
        if self.verdicts.len() >= VERDICTS_KEPT {
            self.verdicts.pop_front();
        }
        self.verdicts.push_back((id, verdict));
    }

    /// What we answered to request `id`, if we have.
    pub fn verdict(&self, id: u64) -> Option<&HeartbeatVerdict> {
        self.verdicts
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v)
    }

    /// Let time pass up to `now`, counting at most `step` since the last observation.
    pub fn observe(&mut self, now: Instant, step: Duration) {
        let passed = now.saturating_since(self.observed_at).min(step);
        self.observed_at = self.observed_at.max(now);
        self.startup_left = self.startup_left.saturating_sub(passed);
        if let Some(h) = self.heartbeat.as_mut() {
            h.left = h.left.saturating_sub(passed);
        }
    }

    /// Accept a heartbeat from `leader` at `now`: no race for `ttl` of observed time.
    pub fn accept(&mut self, leader: String, now: Instant, ttl: Duration) {
        self.heartbeat = Some(Heartbeat {
            leader,
            at: now,
            left: ttl,
        });
    }

    /// The leader whose heartbeat still holds us back from racing, if any.
    pub fn fresh_heartbeat(&self, me: &str) -> Option<&Heartbeat> {
        self.heartbeat
            .as_ref()
            .filter(|h| h.leader != me && !h.left.is_zero())
    }

    /// Whether the agent started less than `ttl` of observed time ago (it may have accepted
    /// a heartbeat it no longer remembers).
    pub fn in_startup_grace(&self) -> bool {
        !self.startup_left.is_zero()
    }

    /// Whether a promise is running down (the core must then be woken every half `step`).
    pub fn holding(&self) -> bool {
        self.in_startup_grace() || self.heartbeat.as_ref().is_some_and(|h| !h.left.is_zero())
    }

    /// Record a round every member accepted, sent at `sent_at` (late answers never move the
    /// right back).
    pub fn confirmed(&mut self, sent_at: Instant) {
        if self.confirmed_sent_at.is_none_or(|prev| sent_at > prev) {
            self.confirmed_sent_at = Some(sent_at);
        }
        self.active = self.renewals_failing;
    }

    /// When a primary running on failsafe must have stopped writing.
    pub fn deadline(&self, ttl: Duration, margin: Duration) -> Option<Instant> {
        self.confirmed_sent_at.map(|sent| sent + ttl - margin)
    }

    /// Whether the last confirmed round still lets a primary run at `now`.
    pub fn allows_primary_at(&self, now: Instant, ttl: Duration, margin: Duration) -> bool {
        self.deadline(ttl, margin).is_some_and(|d| now < d)
    }

    /// Forget the primary's side (it stopped being primary, or a round failed).
    pub fn end_primary(&mut self) {
        self.confirmed_sent_at = None;
        self.active = false;
        self.round_in_flight = false;
    }
}

/// What the leader keeps in `/failsafe`: every member with a REST address, itself included.
pub fn desired_members(view: &ClusterView) -> BTreeMap<String, String> {
    view.members
        .values()
        .filter(|m| !m.api_url.is_empty())
        .map(|m| (m.name.clone(), m.api_url.clone()))
        .collect()
}

/// The members a round must reach: everyone in `/failsafe` but us. `Err` says why failsafe
/// cannot vouch for us (Patroni: a topology that does not list us is not safe to trust).
pub fn round_members(view: &ClusterView, me: &str) -> Result<Vec<(String, String)>, String> {
    if view.failsafe.is_empty() {
        return Err("/failsafe is empty: the leader never recorded the members".into());
    }
    if !view.failsafe.contains_key(me) {
        return Err(format!("/failsafe does not list {me}"));
    }
    Ok(view
        .failsafe
        .iter()
        .filter(|(name, _)| name.as_str() != me)
        .map(|(name, url)| (name.clone(), url.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::view::MemberInfo;

    const TTL: Duration = Duration::from_secs(6);
    const MARGIN: Duration = Duration::from_secs(1);

    #[test]
    fn a_confirmed_round_gives_the_same_deadline_as_a_renewal_sent_then() {
        let mut f = Failsafe::new(Instant(0), TTL);
        assert!(!f.allows_primary_at(Instant(0), TTL, MARGIN));
        f.renewals_failing = true;
        f.confirmed(Instant(10_000));
        assert!(f.active);
        assert_eq!(f.deadline(TTL, MARGIN), Some(Instant(15_000)));
        assert!(f.allows_primary_at(Instant(14_999), TTL, MARGIN));
        assert!(!f.allows_primary_at(Instant(15_000), TTL, MARGIN));
        f.confirmed(Instant(9_000)); // a late answer to an older round
        assert_eq!(f.deadline(TTL, MARGIN), Some(Instant(15_000)));
        f.end_primary();
        assert!(!f.active);
        assert_eq!(f.deadline(TTL, MARGIN), None);
    }

    const STEP: Duration = Duration::from_millis(500);

    fn observe_until(f: &mut Failsafe, from: u64, to: u64) {
        for t in (from..=to).step_by(250) {
            f.observe(Instant(t), STEP);
        }
    }

    #[test]
    fn a_heartbeat_holds_back_for_ttl_and_only_from_another_leader() {
        let mut f = Failsafe::new(Instant(0), TTL);
        observe_until(&mut f, 0, 5_750);
        assert!(f.in_startup_grace());
        observe_until(&mut f, 5_750, 6_000);
        assert!(!f.in_startup_grace());
        f.observe(Instant(10_000), STEP); // the input carrying the heartbeat
        f.accept("node1".into(), Instant(10_000), TTL);
        observe_until(&mut f, 10_000, 15_750);
        assert!(f.fresh_heartbeat("node2").is_some());
        assert!(f.holding());
        assert!(f.fresh_heartbeat("node1").is_none(), "our own");
        observe_until(&mut f, 15_750, 16_000);
        assert!(f.fresh_heartbeat("node2").is_none());
        assert!(!f.holding());
    }

    #[test]
    fn a_clock_jump_or_a_suspend_shortens_the_promise_by_one_step_at_most() {
        let mut f = Failsafe::new(Instant(0), TTL);
        observe_until(&mut f, 0, 7_000);
        f.accept("node1".into(), Instant(7_000), TTL);
        f.observe(Instant(60_000), STEP); // the clock jumped 53 s
        assert_eq!(f.fresh_heartbeat("node2").map(|h| h.left), Some(TTL - STEP));
    }

    #[test]
    fn verdicts_are_found_by_request_and_bounded() {
        let mut f = Failsafe::new(Instant(0), TTL);
        for id in 0..40 {
            f.record_verdict(id, HeartbeatVerdict::Accepted);
        }
        f.record_verdict(41, HeartbeatVerdict::Refused("primary".into()));
        assert_eq!(f.verdicts.len(), VERDICTS_KEPT);
        assert_eq!(f.verdict(0), None);
        assert_eq!(f.verdict(39), Some(&HeartbeatVerdict::Accepted));
        assert_eq!(
            f.verdict(41),
            Some(&HeartbeatVerdict::Refused("primary".into()))
        );
    }

    #[test]
    fn rounds_go_to_every_listed_member_but_us_and_need_us_listed() {
        let mut view = ClusterView::default();
        for (name, url) in [
            ("a", "http://a/patroni"),
            ("b", "http://b/patroni"),
            ("c", ""),
        ] {
            view.members.insert(
                name.into(),
                MemberInfo {
                    name: name.into(),
                    api_url: url.into(),
                    ..MemberInfo::default()
                },
            );
        }
        let desired = desired_members(&view);
        assert_eq!(desired.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(round_members(&view, "a").is_err(), "empty /failsafe");
        view.failsafe = desired;
        assert_eq!(
            round_members(&view, "a"),
            Ok(vec![("b".to_string(), "http://b/patroni".to_string())])
        );
        assert!(round_members(&view, "c").is_err(), "not listed");
        view.failsafe.remove("b");
        assert_eq!(round_members(&view, "a"), Ok(vec![]), "a single member");
    }
}
