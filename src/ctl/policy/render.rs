//! Events and decisions as one-line text, the way `policy test` and `policy diff` print them.

use pgwarden_policy::{Decision, Event, Fence, Race};

use crate::policy::{FENCE, PREFERENCE, RACE, SYNC_STANDBYS};

/// The event's kind with its argument: `leader-expired(node1)`, `election`, ...
pub fn event(event: &Event) -> String {
    let kind = event.kind();
    match event {
        Event::LeaderExpired(name)
        | Event::LeaderChanged(name)
        | Event::LagExceeded(name)
        | Event::LagRecovered(name)
        | Event::MemberJoined(name)
        | Event::MemberLeft(name) => format!("{kind}({name})"),
        Event::StoreUnreachable(why) => format!("{kind}({why:?})"),
        Event::SyncChanged(names) => format!("{kind}({})", list(names)),
        Event::SwitchoverRequested(s) => {
            let mut parts = vec![
                format!("leader {}", s.leader.as_deref().unwrap_or("-")),
                format!("candidate {}", s.candidate.as_deref().unwrap_or("-")),
            ];
            if s.override_policy {
                parts.push("override".into());
            }
            format!("{kind}({})", parts.join(", "))
        }
        Event::Tick
        | Event::Election
        | Event::LeaseAcquired
        | Event::LeaseLost
        | Event::PostgresDown
        | Event::PostgresUp
        | Event::StoreReachable => kind.to_string(),
    }
}

/// `race`, `stand-down (why)`, `wait 5000 ms (why)`.
pub fn race(race: &Race) -> String {
    match race {
        Race::Race => "race".into(),
        Race::StandDown(why) => format!("stand-down ({why})"),
        Race::Wait(wait) => format!("wait {} ms ({})", wait.delay_ms, wait.reason),
    }
}

/// `none`, `demote (why)`, `fence (why)`.
pub fn fence(fence: &Fence) -> String {
    match fence {
        Fence::None => "none".into(),
        Fence::Demote(why) => format!("demote ({why})"),
        Fence::Fence(why) => format!("fence ({why})"),
    }
}

/// `[a, b]`, or `keep` for `None` (the host keeps its choice).
pub fn sync_standbys(sync: Option<&[String]>) -> String {
    match sync {
        None => "keep".into(),
        Some(names) => list(names),
    }
}

/// `[a, b]`.
pub fn list(names: &[String]) -> String {
    format!("[{}]", names.join(", "))
}

/// The whole decision on one line.
pub fn decision(d: &Decision) -> String {
    format!(
        "race: {} | preference: {} | fence: {} | sync: {}",
        race(&d.race),
        list(&d.preference),
        fence(&d.fence),
        sync_standbys(d.sync_standbys.as_deref()),
    )
}

/// One field of a decision, by its [`crate::policy::decision_differences`] name.
pub fn field(d: &Decision, name: &str) -> String {
    match name {
        RACE => race(&d.race),
        PREFERENCE => list(&d.preference),
        FENCE => fence(&d.fence),
        SYNC_STANDBYS => sync_standbys(d.sync_standbys.as_deref()),
        other => format!("(no field {other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarden_policy::{Switchover, Wait};

    #[test]
    fn events_carry_their_argument() {
        assert_eq!(event(&Event::Election), "election");
        assert_eq!(
            event(&Event::LeaderExpired("node1".into())),
            "leader-expired(node1)"
        );
        assert_eq!(
            event(&Event::SyncChanged(vec!["a".into(), "b".into()])),
            "sync-changed([a, b])"
        );
        assert_eq!(
            event(&Event::SwitchoverRequested(Switchover {
                leader: Some("n1".into()),
                candidate: None,
                override_policy: true,
            })),
            "switchover-requested(leader n1, candidate -, override)"
        );
    }

    #[test]
    fn a_decision_fits_on_one_line() {
        let d = Decision {
            race: Race::Wait(Wait {
                delay_ms: 500,
                reason: "zone".into(),
            }),
            preference: vec!["a".into(), "b".into()],
            fence: Fence::None,
            sync_standbys: None,
        };
        assert_eq!(
            decision(&d),
            "race: wait 500 ms (zone) | preference: [a, b] | fence: none | sync: keep"
        );
        assert_eq!(field(&d, RACE), "wait 500 ms (zone)");
        assert_eq!(field(&d, SYNC_STANDBYS), "keep");
    }
}
