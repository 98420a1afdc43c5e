//! Test guest: the most reckless policy possible. Whatever the event and the view, it
//! races, prefers only itself, never fences and keeps the host's synchronous standbys.
//!
//! It exists so tests can show that safety does not depend on the policy, nor on the lock
//! store refusing a second leader: the host's invariant gate must stop every unsafe
//! promotion this policy asks for (a live primary elsewhere, a lagging or stopped node,
//! nofailover, ...). Never deploy it.

use pgwarden_policy::{ClusterView, Decision, Event, Fence, Info, Policy, Race};

/// Always races.
pub struct AlwaysPromote;

impl Policy for AlwaysPromote {
    fn info() -> Info {
        Info {
            name: "always-promote".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test guest: always races for the leader key (unsafe by design)".into(),
        }
    }

    fn decide(_event: &Event, view: &ClusterView) -> Decision {
        Decision {
            race: Race::Race,
            preference: vec![view.me.clone()],
            fence: Fence::None,
            sync_standbys: None,
        }
    }
}

#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(AlwaysPromote);

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarden_policy::{Config, Lease};

    #[test]
    fn races_even_when_another_member_holds_the_leader_key() {
        let view = ClusterView {
            now_ms: 0,
            me: "node3".into(),
            members: Vec::new(),
            lease: Lease {
                holder: Some("node1".into()),
                mine: false,
                time_left_ms: None,
            },
            last_leader: None,
            leaderless_ms: None,
            cluster_timeline: None,
            leader_lsn: None,
            sync_leader: None,
            sync_standbys: Vec::new(),
            switchover: None,
            config: Config::default(),
        };
        assert_eq!(
            AlwaysPromote::decide(&Event::Tick, &view),
            Decision {
                race: Race::Race,
                preference: vec!["node3".into()],
                fence: Fence::None,
                sync_standbys: None,
            }
        );
        assert_eq!(AlwaysPromote::info().name, "always-promote");
    }
}
