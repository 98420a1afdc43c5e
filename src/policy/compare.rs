//! Where two decisions differ in what the agent would do: the shadow policy's report, and
//! later `pgwardenctl policy diff`. Reason texts are prose, not behaviour, and are ignored;
//! a wait's delay is behaviour and is compared; the synchronous set is a set (order ignored),
//! the preference is an order.

use pgwarden_policy::{Decision, Fence, Race};

/// Field name of [`Decision::race`] in a difference list.
pub const RACE: &str = "race";
/// Field name of [`Decision::preference`] in a difference list.
pub const PREFERENCE: &str = "preference";
/// Field name of [`Decision::fence`] in a difference list.
pub const FENCE: &str = "fence";
/// Field name of [`Decision::sync_standbys`] in a difference list.
pub const SYNC_STANDBYS: &str = "sync_standbys";

/// The names of the fields in which `a` and `b` would make the agent act differently, in
/// declaration order; empty when they agree.
pub fn decision_differences(a: &Decision, b: &Decision) -> Vec<String> {
    let mut fields = Vec::new();
    if !same_race(&a.race, &b.race) {
        fields.push(RACE.to_string());
    }
    if a.preference != b.preference {
        fields.push(PREFERENCE.to_string());
    }
    if !same_fence(&a.fence, &b.fence) {
        fields.push(FENCE.to_string());
    }
    if !same_sync(a.sync_standbys.as_deref(), b.sync_standbys.as_deref()) {
        fields.push(SYNC_STANDBYS.to_string());
    }
    fields
}

fn same_race(a: &Race, b: &Race) -> bool {
    match (a, b) {
        (Race::Race, Race::Race) | (Race::StandDown(_), Race::StandDown(_)) => true,
        (Race::Wait(x), Race::Wait(y)) => x.delay_ms == y.delay_ms,
        _ => false,
    }
}

fn same_fence(a: &Fence, b: &Fence) -> bool {
    matches!(
        (a, b),
        (Fence::None, Fence::None)
            | (Fence::Demote(_), Fence::Demote(_))
            | (Fence::Fence(_), Fence::Fence(_))
    )
}

fn same_sync(a: Option<&[String]>, b: Option<&[String]>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            let mut x: Vec<&String> = x.iter().collect();
            let mut y: Vec<&String> = y.iter().collect();
            x.sort();
            y.sort();
            x == y
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarden_policy::Wait;

    fn base() -> Decision {
        Decision {
            race: Race::StandDown("n1 holds the key".into()),
            preference: vec!["a".into(), "b".into()],
            fence: Fence::None,
            sync_standbys: Some(vec!["a".into(), "b".into()]),
        }
    }

    #[test]
    fn reasons_and_sync_order_do_not_count() {
        let mut other = base();
        other.race = Race::StandDown("another wording".into());
        other.sync_standbys = Some(vec!["b".into(), "a".into()]);
        assert!(decision_differences(&base(), &other).is_empty());
    }

    #[test]
    fn each_differing_field_is_named() {
        let other = Decision {
            race: Race::Wait(Wait {
                delay_ms: 5,
                reason: String::new(),
            }),
            preference: vec!["b".into(), "a".into()],
            fence: Fence::Demote("x".into()),
            sync_standbys: None,
        };
        assert_eq!(
            decision_differences(&base(), &other),
            vec![RACE, PREFERENCE, FENCE, SYNC_STANDBYS]
        );
    }

    #[test]
    fn wait_delays_count() {
        let wait = |delay_ms| Decision {
            race: Race::Wait(Wait {
                delay_ms,
                reason: String::new(),
            }),
            ..base()
        };
        assert_eq!(decision_differences(&wait(1), &wait(2)), vec![RACE]);
    }
}
