//! Zones: where the failed leader ran, who shares it, and how long to wait for them.

use pgwarden_policy::{ClusterView, Config, Member, Role};
use pgwarden_policy_default::healthy_enough;

/// The member tag naming a member's zone.
pub const ZONE_TAG: &str = "zone";

/// The `policy.params` key bounding how long other zones wait for the leader's zone.
pub const ZONE_WAIT_PARAM: &str = "zone_wait_ms";

/// The failed leader's zone: the `zone` tag of the last leader as the host last saw it
/// (its member key may be gone after a failover). `None` (no tag, or empty): no preference.
pub fn leader_zone(view: &ClusterView) -> Option<&str> {
    view.last_leader
        .as_ref()
        .and_then(|leader| leader.tag(ZONE_TAG))
        .filter(|zone| !zone.is_empty())
}

/// Whether `member` runs in `zone`.
pub fn in_zone(member: &Member, zone: &str) -> bool {
    member.tag(ZONE_TAG) == Some(zone)
}

/// How long members outside the leader's zone give it, in milliseconds: `zone_wait_ms`, or
/// `ttl` when absent or unparsable, so a typo never turns into an unbounded or zero wait.
pub fn zone_wait_ms(config: &Config) -> u64 {
    config
        .param(ZONE_WAIT_PARAM)
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(config.ttl_ms)
}

/// The view with only the calling node and the members of `zone`, so the default's peer
/// comparison (`better_peer`) only weighs the calling node against its own zone.
pub fn zone_view(view: &ClusterView, zone: &str) -> ClusterView {
    let mut restricted = view.clone();
    restricted
        .members
        .retain(|m| m.name == view.me || in_zone(m, zone));
    restricted
}

/// The view with the lag rule switched off (it is the only rule that needs the leader's
/// position), to judge members that may still catch up.
pub fn without_lag(view: &ClusterView) -> ClusterView {
    let mut view = view.clone();
    view.leader_lsn = None;
    view
}

/// A member worth waiting for: it answered the probe, runs as a replica, and passes every
/// rule of the default policy except the lag limit, which it may still catch up on
/// (`lagless` is the view from [`without_lag`]). Members the rules refuse for good
/// (nofailover, stopped, outside `/sync`, behind the timeline with `check_timeline`) are not
/// worth a wait.
pub fn possible_candidate(lagless: &ClusterView, member: &Member) -> bool {
    member.reachable == Some(true)
        && member.role == Role::Replica
        && healthy_enough(lagless, member).is_ok()
}
