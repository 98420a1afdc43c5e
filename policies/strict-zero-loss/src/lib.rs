//! pgwarden's strict-zero-loss policy: no acknowledged transaction may be lost, so only a
//! confirmed synchronous standby may be promoted.
//!
//! - A node races only when `synchronous_mode` is on (any synchronous mode) and `/sync`
//!   records it as a synchronous standby (`is_sync`); then the default policy's rules apply.
//!   Any other node stands down and says why, e.g.
//!   `strict-zero-loss: node3 is not a confirmed synchronous standby (/sync: [node2])`.
//! - A manual failover to a node that is not confirmed is refused the same way, unless the
//!   operator set `override_policy`: the candidate then races (if its PostgreSQL runs and it
//!   may lead at all) and warns through the host's log that the zero-loss rule was overridden.
//! - A manual failover to a candidate this policy refuses does not hold back the confirmed
//!   standbys: the candidate will never race, so they decide as if it had named nobody.
//! - The leader keeps its lease, and chooses its synchronous standbys, as the default does;
//!   it hands over for a switchover only to a confirmed synchronous standby (or, with
//!   `override_policy`, to the named candidate if the default would).
//! - `preference` lists only the confirmed synchronous standbys, in the default's order.
//!
//! No parameters: the rule has no knob, by design.

use pgwarden_policy::{
    log, ClusterView, Decision, Event, Fence, Info, Level, Member, Policy, Race,
};
use pgwarden_policy_default as default;

/// Only confirmed synchronous standbys are promoted.
pub struct StrictZeroLoss;

impl Policy for StrictZeroLoss {
    fn info() -> Info {
        Info {
            name: "strict-zero-loss".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Only a confirmed synchronous standby is promoted (no data loss)".into(),
        }
    }

    fn decide(_event: &Event, view: &ClusterView) -> Decision {
        Decision {
            race: race(view),
            preference: preference(view),
            fence: fence(view),
            sync_standbys: default::sync_standbys(view),
        }
    }
}

/// Whether the calling node should race for the leader key.
pub fn race(view: &ClusterView) -> Race {
    if view.lease.mine || view.lease.holder.is_some() {
        return default::race(view);
    }
    let Some(me) = view.myself() else {
        return default::race(view);
    };
    match confirmed(view, me) {
        Ok(()) if candidate_refused(view) => default::race(&without_switchover(view)),
        Ok(()) => default::race(view),
        Err(why) if overridden_for(view, me) => overridden(view, me, &why),
        Err(why) => Race::StandDown(format!("strict-zero-loss: {why}")),
    }
}

/// The leader hands over for a switchover only to a confirmed synchronous standby that is
/// ready to take over; any other candidate is refused (with the reason in the log) unless
/// the operator set `override_policy`.
pub fn fence(view: &ClusterView) -> Fence {
    let overridden = view.switchover.as_ref().is_some_and(|s| s.override_policy);
    default::fence_for_switchover(view, |member| {
        default::switchover_ready(view, member)?;
        match confirmed(view, member) {
            Err(why) if !overridden => Err(format!("strict-zero-loss: {why}")),
            _ => Ok(()),
        }
    })
}

/// Whether `member` is a confirmed synchronous standby, or why not.
pub fn confirmed(view: &ClusterView, member: &Member) -> Result<(), String> {
    if !view.config.synchronous_mode.is_synchronous() {
        return Err("synchronous_mode is off: no standby is confirmed".into());
    }
    if !member.is_sync {
        return Err(format!(
            "{} is not a confirmed synchronous standby (/sync: [{}])",
            member.name,
            view.sync_standbys.join(", ")
        ));
    }
    Ok(())
}

/// The members this policy would promote: confirmed synchronous standbys, default order.
pub fn preference(view: &ClusterView) -> Vec<String> {
    default::preference(view)
        .into_iter()
        .filter(|name| {
            view.member(name)
                .is_some_and(|m| confirmed(view, m).is_ok())
        })
        .collect()
}

/// A manual failover to `me` whose operator overrode the policy's refusals.
fn overridden_for(view: &ClusterView, me: &Member) -> bool {
    default::pending_switchover(view)
        .is_some_and(|s| s.override_policy && s.candidate.as_deref() == Some(me.name.as_str()))
}

/// The race of an overridden candidate: the rule is waived, not PostgreSQL's state (the
/// default's rules for a failover's named candidate).
fn overridden(view: &ClusterView, me: &Member, why: &str) -> Race {
    if let Err(not_ready) = default::named_candidate_ready(view, me, true) {
        return Race::StandDown(not_ready);
    }
    log(
        Level::Warn,
        &format!(
            "strict-zero-loss: the operator overrode the zero-loss rule for a manual \
             failover to {} ({why}): acknowledged transactions may be lost",
            me.name
        ),
    );
    Race::Race
}

/// Whether a pending manual failover names a member this policy will never let race.
fn candidate_refused(view: &ClusterView) -> bool {
    let Some(switchover) = default::pending_switchover(view) else {
        return false;
    };
    let candidate = switchover.candidate.as_deref().and_then(|c| view.member(c));
    candidate.is_some_and(|c| !switchover.override_policy && confirmed(view, c).is_err())
}

/// The view without the pending manual failover.
fn without_switchover(view: &ClusterView) -> ClusterView {
    let mut view = view.clone();
    view.switchover = None;
    view
}

#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(StrictZeroLoss);

#[cfg(test)]
mod tests;
