//! Members for policies' native unit tests (feature `testing`): a healthy replica or primary
//! at the leader's last position, and chained tweaks. Shared by the policies in this
//! repository and by crates made with `pgwardenctl policy new`.

use crate::{Member, Role};

/// The leader's last published position in every view: members start there (no lag).
pub const LEADER_LSN: u64 = 10_000;

/// A running, streaming replica on timeline 1 at the leader's position, probed and reachable.
pub fn replica(name: &str) -> Member {
    Member {
        name: name.into(),
        role: Role::Replica,
        state: "running".into(),
        streaming: true,
        timeline: Some(1),
        received_lsn: Some(LEADER_LSN),
        replayed_lsn: Some(LEADER_LSN),
        lag_bytes: Some(0),
        tags: Vec::new(),
        is_sync: false,
        failover_priority: 1,
        heartbeat_age_ms: Some(1_000),
        reachable: Some(true),
    }
}

/// A running primary (otherwise as [`replica`]).
pub fn primary(name: &str) -> Member {
    Member {
        role: Role::Primary,
        streaming: false,
        ..replica(name)
    }
}

/// Chained tweaks of a test member.
pub trait MemberExt {
    /// At `lsn` (received and replayed), lagging [`LEADER_LSN`] − `lsn`.
    fn lsn(self, lsn: u64) -> Self;
    /// With this `failover_priority`.
    fn priority(self, priority: i64) -> Self;
    /// With this tag added.
    fn tag(self, key: &str, value: &str) -> Self;
    /// In this PostgreSQL state.
    fn state(self, state: &str) -> Self;
    /// Probed with this outcome (`None`: not probed).
    fn reachable(self, reachable: Option<bool>) -> Self;
    /// On this timeline.
    fn timeline(self, timeline: u32) -> Self;
    /// Recorded in `/sync`.
    fn sync(self) -> Self;
    /// Not streaming from the leader.
    fn not_streaming(self) -> Self;
    /// With this many bytes of lag (position unchanged).
    fn lag(self, lag: u64) -> Self;
}

impl MemberExt for Member {
    fn lsn(mut self, lsn: u64) -> Self {
        self.received_lsn = Some(lsn);
        self.replayed_lsn = Some(lsn);
        self.lag_bytes = Some(LEADER_LSN.saturating_sub(lsn));
        self
    }
    fn priority(mut self, priority: i64) -> Self {
        self.failover_priority = priority;
        self
    }
    fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }
    fn state(mut self, state: &str) -> Self {
        self.state = state.into();
        self
    }
    fn reachable(mut self, reachable: Option<bool>) -> Self {
        self.reachable = reachable;
        self
    }
    fn timeline(mut self, timeline: u32) -> Self {
        self.timeline = Some(timeline);
        self
    }
    fn sync(mut self) -> Self {
        self.is_sync = true;
        self
    }
    fn not_streaming(mut self) -> Self {
        self.streaming = false;
        self
    }
    fn lag(mut self, lag: u64) -> Self {
        self.lag_bytes = Some(lag);
        self
    }
}
