//! pgwarden's zone-aware policy: Patroni's rules, but a failover prefers a new leader in
//! the failed leader's zone (same latency to the applications, no cross-zone traffic).
//!
//! The failed leader's zone is the `zone` tag of `last_leader`. When it has one, among the
//! members the default rules would allow to lead:
//!
//! - a member of that zone races unless a reachable member *of the same zone* should lead
//!   instead (the default's `better_peer`, restricted to the zone); a live primary anywhere
//!   still makes it stand down;
//! - a member of another zone waits (`Race::Wait`) while a reachable replica of the leader's
//!   zone could lead, even one still over `maximum_lag_on_failover` that may catch up, for at
//!   most `zone_wait_ms` after the leader key was freed; after that, or with no such member,
//!   it decides exactly as the default policy;
//! - `preference` lists the leader's zone first, each group in the default's order.
//!
//! Without a leader zone, while leading, when the key is held, and for a manual failover
//! naming a candidate (the operator's choice beats the zone), it is the default policy.
//! Synchronous standbys are the default's choice.
//!
//! Settings:
//! - member tag `zone`: the member's zone (text, compared exactly; empty means none);
//! - `policy.params.zone_wait_ms`: milliseconds another zone waits for the leader's zone,
//!   counted from when the leader key was freed (`leaderless_ms`). Default, and when the
//!   value does not parse as an integer: the configuration's `ttl`. `0`: never wait.

mod zone;

pub use zone::{
    in_zone, leader_zone, possible_candidate, without_lag, zone_view, zone_wait_ms, ZONE_TAG,
    ZONE_WAIT_PARAM,
};

use pgwarden_policy::{ClusterView, Decision, Event, Info, Policy, Race, Role, Wait};
use pgwarden_policy_default as default;

/// Patroni's rules, preferring the failed leader's zone.
pub struct ZoneAware;

impl Policy for ZoneAware {
    fn info() -> Info {
        Info {
            name: "zone-aware".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Patroni's rules, preferring a new leader in the failed leader's zone"
                .into(),
        }
    }

    fn decide(_event: &Event, view: &ClusterView) -> Decision {
        Decision {
            race: race(view),
            preference: preference(view),
            fence: default::fence(view),
            sync_standbys: default::sync_standbys(view),
        }
    }
}

/// Whether the calling node should race for the leader key.
pub fn race(view: &ClusterView) -> Race {
    let Some(zone) = leader_zone(view) else {
        return default::race(view);
    };
    let manual_candidate = default::pending_switchover(view).is_some_and(|s| s.candidate.is_some());
    if view.lease.mine || view.lease.holder.is_some() || manual_candidate {
        return default::race(view);
    }
    // Whatever is not a healthy replica (unhealthy: stands down; a primary: races) is
    // decided by the default rules: zones only order the healthy replicas.
    let Some(me) = view
        .myself()
        .filter(|me| me.role != Role::Primary && default::healthy_enough(view, me).is_ok())
    else {
        return default::race(view);
    };
    if in_zone(me, zone) {
        if let Some(primary) = view.others().find(|p| p.is_live_primary()) {
            return Race::StandDown(format!("primary {} is still alive", primary.name));
        }
        return match default::better_peer(&zone_view(view, zone), me) {
            Some(why) => Race::StandDown(why),
            None => Race::Race,
        };
    }
    match wait_for_zone(view, zone) {
        Some(wait) => Race::Wait(wait),
        None => default::race(view),
    }
}

/// For a member outside the leader's zone: a wait for a possible candidate of that zone,
/// while the bound has not passed. `None` when the wait is over or pointless: no such
/// candidate, a live primary (the default stands down for it), or an unknown leaderless
/// time (a wait could not be bounded).
pub fn wait_for_zone(view: &ClusterView, zone: &str) -> Option<Wait> {
    if view.others().any(|p| p.is_live_primary()) {
        return None;
    }
    let bound = zone_wait_ms(&view.config);
    let remaining = bound.saturating_sub(view.leaderless_ms?);
    if remaining == 0 {
        return None;
    }
    let lagless = without_lag(view);
    let candidate = default::preference(view)
        .into_iter()
        .filter_map(|name| view.member(&name))
        .find(|m| m.name != view.me && in_zone(m, zone) && possible_candidate(&lagless, m))?;
    Some(Wait {
        // Ask again at the next loop at the latest: the candidate may vanish meanwhile.
        delay_ms: remaining.min(view.config.loop_wait_ms).max(1),
        reason: format!(
            "zone-aware: {} in the failed leader's zone {zone} may lead; \
             waiting up to {remaining} ms more (zone_wait_ms {bound})",
            candidate.name
        ),
    })
}

/// The default's order, with the failed leader's zone first.
pub fn preference(view: &ClusterView) -> Vec<String> {
    let mut order = default::preference(view);
    if let Some(zone) = leader_zone(view) {
        // Stable: each group keeps the default's order.
        order.sort_by_key(|name| !view.member(name).is_some_and(|m| in_zone(m, zone)));
    }
    order
}

#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(ZoneAware);

#[cfg(test)]
mod tests;
