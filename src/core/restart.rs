//! `POST /restart` judged against the node, as Patroni judges it: the node must lead or
//! follow with nothing else under way, and the request's conditions (`role`,
//! `postgres_version`, `restart_pending`) must hold, else "restart conditions are not
//! satisfied". A scheduled restart is judged the same way when its time comes. Pure: the
//! facts in, the verdict out.

use std::time::Duration;

use super::time::Instant;
use super::view::ServerObservation;

/// The role a restart is limited to (`role` in the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RestartRole {
    /// Only a primary (`primary`, or the old `master`).
    Primary,
    /// Only a standby (`replica`).
    Replica,
}

/// What `POST /restart` asks for beyond the restart itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestartConditions {
    /// Restart only a node of this role.
    pub role: Option<RestartRole>,
    /// Restart only a server older than this (`server_version_num`, e.g. 150004 for
    /// "15.4"): an upgrade of the binaries is what the restart is for.
    pub below_version: Option<u32>,
    /// Restart only when a parameter waits for it (`pending_restart`).
    pub only_if_pending: bool,
}

/// What the verdict looks at.
#[derive(Clone, Copy, Debug)]
pub struct RestartFacts<'a> {
    /// The machine's state name.
    pub state: &'static str,
    /// The PostgreSQL action in flight, by kind.
    pub action_in_flight: Option<&'static str>,
    /// The running server, when the last probe reached it.
    pub server: Option<&'a ServerObservation>,
}

/// Whether the restart may start now; the error is the answer's text.
pub fn verdict(facts: RestartFacts<'_>, conditions: &RestartConditions) -> Result<(), String> {
    if let Some(kind) = facts.action_in_flight {
        return Err(format!("{kind} already in progress"));
    }
    if !matches!(facts.state, "primary" | "replica") {
        return Err(format!("the node is {}, can not restart", facts.state));
    }
    let Some(server) = facts.server else {
        return Err("PostgreSQL is not running, can not restart".into());
    };
    let role = if server.in_recovery {
        RestartRole::Replica
    } else {
        RestartRole::Primary
    };
    let role_mismatch = conditions.role.is_some_and(|wanted| wanted != role);
    let version_mismatch = conditions
        .below_version
        .is_some_and(|below| below <= server.server_version);
    let nothing_pending = conditions.only_if_pending && server.pending_restart.is_empty();
    if role_mismatch || version_mismatch || nothing_pending {
        return Err("restart conditions are not satisfied".into());
    }
    Ok(())
}

/// A restart to run later (`POST /restart` with `schedule`), kept until it runs, is
/// deleted (`DELETE /restart`), or is found stale. Like Patroni's, it lives in the agent's
/// memory and in its member key (an agent restart forgets it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledRestart {
    /// When to run it.
    pub at: Instant,
    /// The time as the operator gave it (shown in the member key and `list -e`).
    pub schedule: String,
    /// The request's conditions, judged when the time comes.
    pub conditions: RestartConditions,
    /// `postgres_version` as given (the member key shows it).
    pub postgres_version: Option<String>,
    /// `pg_postmaster_start_time()` when it was scheduled: a restart meanwhile cancels it.
    pub postmaster_start_time: Option<String>,
}

/// What a cycle does with the scheduled restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduledStep {
    /// Not yet, or the node is busy: look again at the next cycle.
    Wait,
    /// Restart now.
    Run,
    /// Drop it, for this reason (logged).
    Drop(String),
}

/// Judges the scheduled restart at `now`. Late by more than one and a half `loop_wait`
/// (the node was busy, or the agent could not act), it is dropped as stale, as Patroni
/// does; so it is in maintenance mode, where nothing automatic runs.
pub fn scheduled_step(
    scheduled: &ScheduledRestart,
    now: Instant,
    loop_wait: Duration,
    paused: bool,
    facts: RestartFacts<'_>,
) -> ScheduledStep {
    if now < scheduled.at {
        return ScheduledStep::Wait;
    }
    let grace = (loop_wait * 3 / 2).max(Duration::from_secs(2));
    if now.saturating_since(scheduled.at) > grace {
        return ScheduledStep::Drop(format!(
            "stale: it was due at {} and could not run in time",
            scheduled.schedule
        ));
    }
    if paused {
        return ScheduledStep::Drop("maintenance mode: no scheduled action runs".into());
    }
    let started = facts
        .server
        .and_then(|s| s.postmaster_start_time.as_deref());
    if let (Some(then), Some(now)) = (scheduled.postmaster_start_time.as_deref(), started) {
        if then != now {
            return ScheduledStep::Drop(format!("PostgreSQL was restarted meanwhile (at {now})"));
        }
    }
    match verdict(facts, &scheduled.conditions) {
        Ok(()) => ScheduledStep::Run,
        Err(why) if why.ends_with("already in progress") => ScheduledStep::Wait,
        Err(why) => ScheduledStep::Drop(why),
    }
}

/// Parses Patroni's `postgres_version` ("15.4", "9.6.3") into `server_version_num`.
pub fn parse_version(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a PostgreSQL version such as 15.4 or 9.6.24");
    let parts: Vec<u32> = text
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [major, minor] if *major >= 10 && *minor < 10_000 => Ok(major * 10_000 + minor),
        [major, minor, patch] if *major < 10 && *minor < 100 && *patch < 100 => {
            Ok(major * 10_000 + minor * 100 + patch)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::view::PendingParameter;

    fn server(in_recovery: bool, version: u32, pending: bool) -> ServerObservation {
        let pending_restart = if pending {
            vec![PendingParameter {
                name: "shared_buffers".into(),
                old_value: "128MB".into(),
                new_value: "256MB".into(),
            }]
        } else {
            Vec::new()
        };
        ServerObservation {
            in_recovery,
            server_version: version,
            pending_restart,
            ..Default::default()
        }
    }

    fn facts<'a>(state: &'static str, server: Option<&'a ServerObservation>) -> RestartFacts<'a> {
        RestartFacts {
            state,
            action_in_flight: None,
            server,
        }
    }

    #[test]
    fn a_running_leader_or_standby_restarts_when_nothing_else_runs() {
        let primary = server(false, 150004, false);
        assert_eq!(
            verdict(facts("primary", Some(&primary)), &Default::default()),
            Ok(())
        );
        let busy = RestartFacts {
            action_in_flight: Some("clone"),
            ..facts("replica", Some(&primary))
        };
        assert_eq!(
            verdict(busy, &Default::default()),
            Err("clone already in progress".into())
        );
        assert_eq!(
            verdict(facts("candidate", Some(&primary)), &Default::default()),
            Err("the node is candidate, can not restart".into())
        );
        assert!(verdict(facts("replica", None), &Default::default()).is_err());
    }

    #[test]
    fn each_condition_must_hold() {
        let standby = server(true, 150004, false);
        let not_met = Err("restart conditions are not satisfied".to_string());
        let role = |r| RestartConditions {
            role: Some(r),
            ..Default::default()
        };
        assert_eq!(
            verdict(
                facts("replica", Some(&standby)),
                &role(RestartRole::Replica)
            ),
            Ok(())
        );
        assert_eq!(
            verdict(
                facts("replica", Some(&standby)),
                &role(RestartRole::Primary)
            ),
            not_met
        );
        let below = |v| RestartConditions {
            below_version: Some(v),
            ..Default::default()
        };
        assert_eq!(
            verdict(facts("replica", Some(&standby)), &below(150005)),
            Ok(())
        );
        assert_eq!(
            verdict(facts("replica", Some(&standby)), &below(150004)),
            not_met
        );
        let pending = RestartConditions {
            only_if_pending: true,
            ..Default::default()
        };
        assert_eq!(verdict(facts("replica", Some(&standby)), &pending), not_met);
        let waiting = server(true, 150004, true);
        assert_eq!(verdict(facts("replica", Some(&waiting)), &pending), Ok(()));
    }

    fn scheduled(at: u64) -> ScheduledRestart {
        ScheduledRestart {
            at: Instant(at),
            schedule: "2026-12-07T01:00:00+00:00".into(),
            conditions: RestartConditions::default(),
            postgres_version: None,
            postmaster_start_time: Some("t0".into()),
        }
    }

    #[test]
    fn a_scheduled_restart_runs_on_time_waits_while_busy_and_goes_stale() {
        let mut standby = server(true, 150004, false);
        standby.postmaster_start_time = Some("t0".into());
        let s = scheduled(10_000);
        let wait = Duration::from_secs(1);
        let at = |ms| Instant(ms);
        assert_eq!(
            scheduled_step(&s, at(9_999), wait, false, facts("replica", Some(&standby))),
            ScheduledStep::Wait
        );
        assert_eq!(
            scheduled_step(
                &s,
                at(10_000),
                wait,
                false,
                facts("replica", Some(&standby))
            ),
            ScheduledStep::Run
        );
        let busy = RestartFacts {
            action_in_flight: Some("follow"),
            ..facts("replica", Some(&standby))
        };
        assert_eq!(
            scheduled_step(&s, at(10_500), wait, false, busy),
            ScheduledStep::Wait
        );
        assert!(matches!(
            scheduled_step(&s, at(12_001), wait, false, facts("replica", Some(&standby))),
            ScheduledStep::Drop(why) if why.starts_with("stale")
        ));
        assert!(matches!(
            scheduled_step(&s, at(10_000), wait, true, facts("replica", Some(&standby))),
            ScheduledStep::Drop(why) if why.contains("maintenance mode")
        ));
        standby.postmaster_start_time = Some("t1".into());
        assert!(matches!(
            scheduled_step(&s, at(10_000), wait, false, facts("replica", Some(&standby))),
            ScheduledStep::Drop(why) if why.contains("restarted meanwhile")
        ));
    }

    #[test]
    fn versions_parse_as_server_version_num() {
        assert_eq!(parse_version("15.4"), Ok(150004));
        assert_eq!(parse_version("9.6.24"), Ok(90624));
        assert!(parse_version("15").is_err());
        assert!(parse_version("9.6").is_err());
        assert!(parse_version("fifteen").is_err());
    }
}
