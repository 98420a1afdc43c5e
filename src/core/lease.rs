//! Lease arithmetic: when the agent may act as primary.
//!
//! Invariant: validity is measured from when a renewal was *sent*, never from when its
//! acknowledgement arrived. etcd restarts the TTL when it processes the keep-alive, which is
//! after we sent it, so `sent_at + ttl` is never later than the real expiry: a slow reply can
//! only shorten our belief in the lease. The demotion deadline subtracts a margin on top, the
//! time we budget for stopping PostgreSQL before another node can possibly hold the lock
//! (followers see the key vanish at real expiry, which is at least `ttl` after our send).

use std::time::Duration;

use super::time::Instant;
use super::types::LeaseId;

/// The agent's lease as far as the core knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lease {
    /// Granted lease, if any.
    pub id: Option<LeaseId>,
    /// TTL etcd granted (it may round small requests up).
    pub ttl: Duration,
    /// TTL we asked for (the configured `ttl`); a different configured value rotates the lease.
    pub requested_ttl_secs: u32,
    /// Send time of the last acknowledged grant or renewal.
    pub last_ack_sent_at: Option<Instant>,
    /// Send time of the renewal in flight, if any.
    pub renewal_sent_at: Option<Instant>,
}

impl Lease {
    /// Latest instant at which etcd can still consider the lease alive, from our side.
    pub fn valid_until(&self) -> Option<Instant> {
        self.id?;
        self.last_ack_sent_at.map(|sent| sent + self.ttl)
    }

    /// When a primary holding this lease must have stopped accepting writes.
    pub fn demotion_deadline(&self, margin: Duration) -> Option<Instant> {
        self.valid_until().map(|until| until - margin)
    }

    /// Whether a primary may keep acting at `now`.
    pub fn allows_primary_at(&self, now: Instant, margin: Duration) -> bool {
        self.demotion_deadline(margin)
            .is_some_and(|deadline| now < deadline)
    }

    /// Record a grant sent at `sent_at`.
    pub fn granted(&mut self, id: LeaseId, ttl: Duration, sent_at: Instant) {
        self.id = Some(id);
        self.ttl = ttl;
        self.last_ack_sent_at = Some(sent_at);
        self.renewal_sent_at = None;
    }

    /// Record an acknowledged renewal of `id` that was sent at `sent_at`.
    pub fn renewed(&mut self, id: LeaseId, sent_at: Instant) {
        if self.id != Some(id) {
            return; // a late answer about a lease we already dropped
        }
        // Acknowledgements can arrive out of order; keep the latest send time.
        if self.last_ack_sent_at.is_none_or(|prev| sent_at > prev) {
            self.last_ack_sent_at = Some(sent_at);
        }
        self.renewal_sent_at = None;
    }

    /// Forget the lease (it expired or was revoked).
    pub fn lost(&mut self) {
        *self = Lease::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_counts_from_send_time_minus_margin() {
        let mut lease = Lease::default();
        assert!(!lease.allows_primary_at(Instant(0), Duration::from_secs(1)));
        lease.granted(LeaseId(7), Duration::from_secs(6), Instant(1_000));
        assert_eq!(lease.valid_until(), Some(Instant(7_000)));
        assert_eq!(
            lease.demotion_deadline(Duration::from_secs(1)),
            Some(Instant(6_000))
        );
        assert!(lease.allows_primary_at(Instant(5_999), Duration::from_secs(1)));
        assert!(!lease.allows_primary_at(Instant(6_000), Duration::from_secs(1)));
    }

    #[test]
    fn late_or_foreign_acknowledgements_never_extend_the_lease() {
        let mut lease = Lease::default();
        lease.granted(LeaseId(7), Duration::from_secs(6), Instant(1_000));
        lease.renewed(LeaseId(7), Instant(3_000));
        lease.renewed(LeaseId(7), Instant(2_000)); // older renewal acknowledged late
        assert_eq!(lease.valid_until(), Some(Instant(9_000)));
        lease.renewed(LeaseId(8), Instant(5_000)); // not our lease
        assert_eq!(lease.valid_until(), Some(Instant(9_000)));
        lease.lost();
        assert_eq!(lease.valid_until(), None);
    }
}
