//! The `initialize` key left behind by a bootstrap that died half-way.
//!
//! The member that wins the bootstrap race writes `initialize` empty, runs initdb, takes the
//! leader key and only then records the system identifier there. A failed bootstrap deletes
//! the key before its agent exits; an agent killed in between cannot, and the key stays empty
//! with no leader: every other member waits for a leader that will never come.
//! A bootstrapper's member key says "initializing new cluster" from the race until it holds
//! the leader key (initdb, the first start, the acquisition), not only while initdb runs.
//!
//! Such a key is stale once, for a whole `ttl`, it stayed empty at the same revision, no
//! member held the leader key and no member key said "initializing new cluster". A living
//! bootstrapper publishes that state in its member key, which lives on the agent's lease, so
//! it is seen for as long as the bootstrapper is alive and connected. The key is then deleted
//! with a compare on its revision, so a newer race's key is never the one removed.

use super::types::Revision;
use std::time::Duration;

use super::time::Instant;
use super::view::ClusterView;

/// The member state pgwarden (and Patroni, running initdb) publishes while bootstrapping.
pub const BOOTSTRAPPING_STATE: &str = "initializing new cluster";

/// Every state a living bootstrapper may publish: Patroni's custom bootstrap says the
/// second.
pub const BOOTSTRAPPING_STATES: &[&str] = &[BOOTSTRAPPING_STATE, "running custom bootstrap script"];

/// What the view says about `initialize` right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitializeFacts {
    /// Absent, holding a system identifier, with a leader, or with a member bootstrapping.
    Healthy,
    /// Empty, no leader, nobody bootstrapping: the key at this etcd mod_revision.
    Orphaned {
        /// The key's mod_revision.
        mod_revision: Revision,
    },
}

impl InitializeFacts {
    /// Reads the facts off a cluster view.
    pub fn of(view: &ClusterView) -> InitializeFacts {
        let orphaned = view.initialize.as_deref() == Some("")
            && view.leader.is_none()
            && !view
                .members
                .values()
                .any(|m| BOOTSTRAPPING_STATES.contains(&m.state.as_str()));
        if orphaned {
            InitializeFacts::Orphaned {
                mod_revision: view.initialize_revision,
            }
        } else {
            InitializeFacts::Healthy
        }
    }
}

/// Since when the same orphaned key has been seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrphanWatch {
    since: Option<(Revision, Instant)>,
}

impl OrphanWatch {
    /// Records what was seen at `now`; returns the revision to delete once the same orphaned
    /// key has been seen for `ttl`.
    pub fn observe(
        &mut self,
        facts: InitializeFacts,
        now: Instant,
        ttl: Duration,
    ) -> Option<Revision> {
        let InitializeFacts::Orphaned { mod_revision } = facts else {
            self.since = None;
            return None;
        };
        match self.since {
            Some((revision, since)) if revision == mod_revision => {
                (now.saturating_since(since) >= ttl).then_some(mod_revision)
            }
            _ => {
                self.since = Some((mod_revision, now));
                None
            }
        }
    }

    /// How long the current orphan has been seen, for the log.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.since.map(|(_, since)| now.saturating_since(since))
    }
}

/// Our bootstrap of a new cluster, owned by the `bootstrapping` state (leaving it drops it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootstrapRun {
    /// System identifier initdb produced, for the `initialize` key.
    pub sysid: Option<String>,
    /// initdb finished before a lease existed: take the leader key once one does.
    pub pending_leader: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::view::{LeaderKey, MemberInfo};

    fn view(initialize: Option<&str>, revision: Revision) -> ClusterView {
        ClusterView {
            initialize: initialize.map(str::to_string),
            initialize_revision: revision,
            ..ClusterView::default()
        }
    }

    #[test]
    fn only_an_empty_key_with_no_leader_and_no_bootstrapper_is_orphaned() {
        assert_eq!(
            InitializeFacts::of(&view(Some(""), Revision(7))),
            InitializeFacts::Orphaned {
                mod_revision: Revision(7)
            }
        );
        assert_eq!(
            InitializeFacts::of(&view(None, Revision(0))),
            InitializeFacts::Healthy
        );
        assert_eq!(
            InitializeFacts::of(&view(Some("7300"), Revision(7))),
            InitializeFacts::Healthy
        );
        let mut led = view(Some(""), Revision(7));
        led.leader = Some(LeaderKey {
            name: "node1".into(),
            lease: 1,
            create_revision: Revision(8),
        });
        assert_eq!(InitializeFacts::of(&led), InitializeFacts::Healthy);
        let mut busy = view(Some(""), Revision(7));
        busy.members.insert(
            "node1".into(),
            MemberInfo {
                state: BOOTSTRAPPING_STATE.into(),
                ..MemberInfo::default()
            },
        );
        assert_eq!(InitializeFacts::of(&busy), InitializeFacts::Healthy);
    }

    #[test]
    fn the_same_orphan_for_a_whole_ttl_is_stale() {
        let ttl = Duration::from_secs(6);
        let orphan = InitializeFacts::Orphaned {
            mod_revision: Revision(7),
        };
        let mut watch = OrphanWatch::default();
        assert_eq!(watch.observe(orphan, Instant(1_000), ttl), None);
        assert_eq!(watch.observe(orphan, Instant(6_999), ttl), None);
        assert_eq!(
            watch.observe(orphan, Instant(7_000), ttl),
            Some(Revision(7))
        );
        // A new race (another revision) starts the clock again.
        let newer = InitializeFacts::Orphaned {
            mod_revision: Revision(9),
        };
        assert_eq!(watch.observe(newer, Instant(7_500), ttl), None);
        assert_eq!(watch.observe(newer, Instant(13_000), ttl), None);
        // Anything healthy in between resets it.
        assert_eq!(
            watch.observe(InitializeFacts::Healthy, Instant(13_100), ttl),
            None
        );
        assert_eq!(watch.observe(newer, Instant(13_200), ttl), None);
        assert_eq!(
            watch.observe(newer, Instant(19_200), ttl),
            Some(Revision(9))
        );
    }
}
