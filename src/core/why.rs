//! Why the state machine moved: one value per reason, with a stable code (logs, the
//! generated table in `docs/state-machine.md`, metrics and traces use it) and a human text.
//!
//! Every transition names one (`Agent::go`); there is no free-text or default reason. A
//! variant may carry the detail that makes its text useful (an error, a member's name);
//! its code never changes with the detail.

use std::fmt;

/// One transition as it happened: the generated table (`docs/state-machine.md`), the log
/// and the simulation's trace are made of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRecord {
    /// State left.
    pub from: &'static str,
    /// The event handled, as the machine's `Event::label` names it.
    pub event: String,
    /// State entered.
    pub to: &'static str,
    /// Why.
    pub why: Why,
}

/// The reason of one transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    // ----- starting ---------------------------------------------------------------------
    /// No `initialize` key and an empty data directory: race to bootstrap.
    NoClusterYet,
    /// Empty data directory and a leader to copy.
    CloneEmptyDataDirectory,
    /// PostgreSQL was found running.
    AlreadyRunning,
    /// A former primary (or diverged standby) is rewound to the leader's timeline.
    RewindFormerPrimary,
    /// A former primary without `use_pg_rewind` is copied again.
    RecloneFormerPrimary,
    /// Start PostgreSQL as a standby, of this leader (or of none yet).
    StartStandby {
        /// The leader it will follow, when known.
        upstream: Option<String>,
    },
    /// `POST /reinitialize` was accepted: wipe and copy from this member.
    ReinitializeRequested {
        /// The member copied from.
        from: String,
    },
    // ----- bootstrapping ---------------------------------------------------------------
    /// Another member won the `initialize` race.
    AnotherMemberBootstraps,
    /// initdb done and the leader key taken.
    Bootstrapped,
    // ----- cloning and rewinding -------------------------------------------------------
    /// pg_basebackup finished.
    Cloned,
    /// pg_basebackup failed; the next cycle tries again.
    CloneFailed {
        /// What failed.
        error: String,
    },
    /// pg_rewind finished.
    Rewound,
    /// pg_rewind failed and removing the data directory is allowed: copy it again.
    RewindFailedReclone {
        /// What failed.
        error: String,
    },
    /// pg_rewind failed; it is tried again (PostgreSQL would refuse the diverged data).
    RewindFailedRetry {
        /// What failed.
        error: String,
    },
    // ----- replica ---------------------------------------------------------------------
    /// PostgreSQL is down (and no postmaster is starting it).
    PostgresNotRunning,
    /// PostgreSQL runs as a primary and the leader key is ours.
    PrimaryHoldingKey,
    /// The standby's data diverged from the leader's timeline: rewind.
    DivergedRewind {
        /// How it diverged.
        detail: String,
    },
    /// The standby's data diverged and `use_pg_rewind` is off: copy again.
    DivergedReclone {
        /// How it diverged.
        detail: String,
    },
    /// The leader key is free: probe the members, then ask the policy.
    LeaderKeyFree,
    // ----- candidate -------------------------------------------------------------------
    /// The policy or the gate decided against racing.
    NotRacing {
        /// Who refused and why.
        detail: String,
    },
    /// The acquisition lost.
    LostRace,
    /// The policy did not answer the election within `ttl`.
    PolicyDidNotAnswer,
    /// A safety rule refused the promotion; the key is released.
    PromotionRefused {
        /// The rule.
        rule: String,
    },
    /// The key is ours: the watchdog is armed before PostgreSQL becomes writable.
    ArmingWatchdog,
    /// The key is ours: `/sync` names us before PostgreSQL becomes writable.
    ClaimingSync,
    /// The key is ours: promoting.
    Promoting,
    /// The key is ours and PostgreSQL already runs as a primary.
    KeyTakenAlreadyPrimary,
    /// `/sync` changed between our claim and the promotion; the key is released.
    SyncChangedBeforePromotion,
    /// The watchdog is required and unusable: the key is released.
    WatchdogRefusedPromotion {
        /// Why the device is unusable.
        detail: String,
    },
    /// The promotion failed; the key is released.
    PromoteFailed {
        /// What failed.
        error: String,
    },
    /// The `pre_promote` script refused the promotion: the key is released and this node
    /// sits out the races for a `ttl`, as in Patroni.
    PrePromoteVetoed {
        /// What the script did.
        error: String,
    },
    /// PostgreSQL left recovery.
    Promoted,
    /// The key or the lease was lost before the promotion finished.
    RaceAbandoned {
        /// What was lost.
        lost: Box<Why>,
    },
    // ----- maintenance mode ------------------------------------------------------------
    /// Paused, the leader's PostgreSQL is not running: the key is released, PostgreSQL left
    /// stopped (Patroni does the same).
    PausedLeaderDown,
    /// Paused, the leader's PostgreSQL runs as a standby: the key is released.
    PausedLeaderNotPrimary,
    // ----- demotions (to demoting) -----------------------------------------------------
    /// PostgreSQL runs as a primary, the lock store is unreachable and no lease covers it.
    PrimaryWithoutStore,
    /// The postmaster has accepted no connection for too long.
    PrimaryUnresponsive {
        /// How long it was silent.
        silent_ms: u64,
    },
    /// The leader's PostgreSQL has not come up within `primary_start_timeout` and a standby
    /// could take over: it is stopped and the key released.
    PrimaryStartTimedOut {
        /// `primary_start_timeout`, seconds.
        timeout_s: u32,
    },
    /// PostgreSQL runs as a primary while another member holds the key.
    OtherHoldsKey {
        /// The member holding it.
        leader: String,
    },
    /// A primary that may not lead (gate or policy refusal) stops at once.
    MayNotLead {
        /// Why it may not.
        detail: String,
    },
    /// The leader key is gone or held by another member.
    KeyLost,
    /// The lease could not be renewed before the demotion deadline.
    DeadlinePassed,
    /// As [`Why::DeadlinePassed`], in failsafe mode with no round confirming us since.
    DeadlinePassedWithoutFailsafe,
    /// Renewals fail and the deadline is within `retry_timeout`: a fast stop while the
    /// lease still covers it (Patroni's offline).
    OfflineStop {
        /// `retry_timeout`, seconds.
        retry_timeout: u32,
    },
    /// Failsafe mode could not confirm this primary while the store is unreachable.
    FailsafeLost {
        /// The members' refusals.
        refusals: String,
    },
    /// The watchdog is required and unusable while we lead.
    WatchdogUnusable {
        /// Why the device is unusable.
        detail: String,
    },
    /// The policy stops the primary earlier than the host would.
    PolicyFence {
        /// The policy's reason.
        detail: String,
    },
    /// A stop through pg_ctl outlived the demotion deadline: PostgreSQL is killed.
    StopOverranDeadline,
    /// A stop through pg_ctl met a frozen postmaster: PostgreSQL is killed.
    StopMetFrozenPostmaster,
    // ----- demoting --------------------------------------------------------------------
    /// PostgreSQL stopped.
    Demoted,
    /// The stop failed: PostgreSQL may still run; the key, if held, was kept (it is released
    /// only once PostgreSQL is down) and the next cycle decides again.
    StopFailed {
        /// What failed.
        error: String,
    },
}

impl Why {
    /// Every code, in declaration order (the generated table checks each is produced).
    pub const CODES: &'static [&'static str] = &[
        "no-cluster-yet",
        "clone-empty-data-directory",
        "already-running",
        "rewind-former-primary",
        "reclone-former-primary",
        "start-standby",
        "reinitialize-requested",
        "another-member-bootstraps",
        "bootstrapped",
        "cloned",
        "clone-failed",
        "rewound",
        "rewind-failed-reclone",
        "rewind-failed-retry",
        "postgres-not-running",
        "primary-holding-key",
        "diverged-rewind",
        "diverged-reclone",
        "leader-key-free",
        "not-racing",
        "lost-race",
        "policy-did-not-answer",
        "promotion-refused",
        "arming-watchdog",
        "claiming-sync",
        "promoting",
        "key-taken-already-primary",
        "sync-changed-before-promotion",
        "watchdog-refused-promotion",
        "promote-failed",
        "pre-promote-vetoed",
        "promoted",
        "race-abandoned",
        "primary-without-store",
        "primary-unresponsive",
        "primary-start-timed-out",
        "paused-leader-down",
        "paused-leader-not-primary",
        "other-holds-key",
        "may-not-lead",
        "key-lost",
        "deadline-passed",
        "deadline-passed-without-failsafe",
        "offline-stop",
        "failsafe-lost",
        "watchdog-unusable",
        "policy-fence",
        "stop-overran-deadline",
        "stop-met-frozen-postmaster",
        "demoted",
        "stop-failed",
    ];

    /// The stable code: lower-case words joined by dashes.
    pub fn code(&self) -> &'static str {
        match self {
            Why::NoClusterYet => "no-cluster-yet",
            Why::CloneEmptyDataDirectory => "clone-empty-data-directory",
            Why::AlreadyRunning => "already-running",
            Why::RewindFormerPrimary => "rewind-former-primary",
            Why::RecloneFormerPrimary => "reclone-former-primary",
            Why::StartStandby { .. } => "start-standby",
            Why::ReinitializeRequested { .. } => "reinitialize-requested",
            Why::AnotherMemberBootstraps => "another-member-bootstraps",
            Why::Bootstrapped => "bootstrapped",
            Why::Cloned => "cloned",
            Why::CloneFailed { .. } => "clone-failed",
            Why::Rewound => "rewound",
            Why::RewindFailedReclone { .. } => "rewind-failed-reclone",
            Why::RewindFailedRetry { .. } => "rewind-failed-retry",
            Why::PostgresNotRunning => "postgres-not-running",
            Why::PrimaryHoldingKey => "primary-holding-key",
            Why::DivergedRewind { .. } => "diverged-rewind",
            Why::DivergedReclone { .. } => "diverged-reclone",
            Why::LeaderKeyFree => "leader-key-free",
            Why::NotRacing { .. } => "not-racing",
            Why::LostRace => "lost-race",
            Why::PolicyDidNotAnswer => "policy-did-not-answer",
            Why::PromotionRefused { .. } => "promotion-refused",
            Why::ArmingWatchdog => "arming-watchdog",
            Why::ClaimingSync => "claiming-sync",
            Why::Promoting => "promoting",
            Why::KeyTakenAlreadyPrimary => "key-taken-already-primary",
            Why::SyncChangedBeforePromotion => "sync-changed-before-promotion",
            Why::WatchdogRefusedPromotion { .. } => "watchdog-refused-promotion",
            Why::PromoteFailed { .. } => "promote-failed",
            Why::PrePromoteVetoed { .. } => "pre-promote-vetoed",
            Why::Promoted => "promoted",
            Why::RaceAbandoned { .. } => "race-abandoned",
            Why::PausedLeaderDown => "paused-leader-down",
            Why::PausedLeaderNotPrimary => "paused-leader-not-primary",
            Why::PrimaryWithoutStore => "primary-without-store",
            Why::PrimaryUnresponsive { .. } => "primary-unresponsive",
            Why::PrimaryStartTimedOut { .. } => "primary-start-timed-out",
            Why::OtherHoldsKey { .. } => "other-holds-key",
            Why::MayNotLead { .. } => "may-not-lead",
            Why::KeyLost => "key-lost",
            Why::DeadlinePassed => "deadline-passed",
            Why::DeadlinePassedWithoutFailsafe => "deadline-passed-without-failsafe",
            Why::OfflineStop { .. } => "offline-stop",
            Why::FailsafeLost { .. } => "failsafe-lost",
            Why::WatchdogUnusable { .. } => "watchdog-unusable",
            Why::PolicyFence { .. } => "policy-fence",
            Why::StopOverranDeadline => "stop-overran-deadline",
            Why::StopMetFrozenPostmaster => "stop-met-frozen-postmaster",
            Why::Demoted => "demoted",
            Why::StopFailed { .. } => "stop-failed",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NoClusterYet => write!(f, "no cluster yet: racing to bootstrap"),
            Why::CloneEmptyDataDirectory => {
                write!(f, "empty data directory: cloning from the leader")
            }
            Why::AlreadyRunning => write!(f, "PostgreSQL already running"),
            Why::RewindFormerPrimary => {
                write!(f, "former primary: rewinding to the new leader's timeline")
            }
            Why::RecloneFormerPrimary => {
                write!(f, "former primary without use_pg_rewind: re-cloning")
            }
            Why::StartStandby { upstream: Some(u) } => write!(f, "starting as a standby of {u}"),
            Why::StartStandby { upstream: None } => {
                write!(f, "starting as a standby; no leader yet")
            }
            Why::ReinitializeRequested { from } => write!(
                f,
                "reinitialize requested: wiping the data directory and cloning from {from}"
            ),
            Why::AnotherMemberBootstraps => {
                write!(f, "another member is bootstrapping the cluster")
            }
            Why::Bootstrapped => write!(f, "bootstrapped a new cluster and took the leader key"),
            Why::Cloned => write!(f, "cloned from the leader"),
            Why::CloneFailed { error } => write!(f, "clone failed ({error}); will retry"),
            Why::Rewound => write!(f, "rewound and following the leader"),
            Why::RewindFailedReclone { error } => {
                write!(f, "pg_rewind failed ({error}); re-cloning")
            }
            Why::RewindFailedRetry { error } => {
                write!(f, "pg_rewind failed ({error}); will retry")
            }
            Why::PostgresNotRunning => write!(f, "PostgreSQL is not running"),
            Why::PrimaryHoldingKey => write!(f, "running primary and holding the leader key"),
            Why::DivergedRewind { detail } => write!(f, "{detail}: rewinding"),
            Why::DivergedReclone { detail } => {
                write!(f, "{detail} and use_pg_rewind is off: re-cloning")
            }
            Why::LeaderKeyFree => {
                write!(f, "leader key is free: probing members before the election")
            }
            Why::NotRacing { detail } => write!(f, "not racing: {detail}"),
            Why::LostRace => write!(f, "lost the race for the leader key"),
            Why::PolicyDidNotAnswer => write!(f, "the policy did not answer the election in time"),
            Why::PromotionRefused { rule } => {
                write!(f, "promotion refused by safety rule: {rule}")
            }
            Why::ArmingWatchdog => write!(
                f,
                "holding the leader key: arming the watchdog before promoting"
            ),
            Why::ClaimingSync => write!(f, "holding the leader key: claiming /sync before promoting"),
            Why::Promoting => write!(f, "holding the leader key: promoting"),
            Why::KeyTakenAlreadyPrimary => {
                write!(f, "took the leader key; PostgreSQL already primary")
            }
            Why::SyncChangedBeforePromotion => {
                write!(f, "/sync changed under us before promotion; promotion postponed")
            }
            Why::WatchdogRefusedPromotion { detail } => {
                write!(f, "not promoting: {detail}; released the leader key")
            }
            Why::PromoteFailed { error } => {
                write!(f, "promote failed ({error}); released the leader key")
            }
            Why::PrePromoteVetoed { error } => write!(
                f,
                "the pre_promote script refused the promotion ({error}); released the leader \
                 key and sits out the races for ttl"
            ),
            Why::Promoted => write!(f, "promoted"),
            Why::RaceAbandoned { lost } => write!(f, "race abandoned: {lost}"),
            Why::PausedLeaderDown => write!(
                f,
                "maintenance mode: PostgreSQL is not running; released the leader key and left it stopped"
            ),
            Why::PausedLeaderNotPrimary => write!(
                f,
                "maintenance mode: PostgreSQL runs as a standby; released the leader key"
            ),
            Why::PrimaryWithoutStore => write!(
                f,
                "PostgreSQL runs as primary but the lock store is unreachable and no lease covers it: stopping (immediate-nolock)"
            ),
            Why::PrimaryUnresponsive { silent_ms } => write!(
                f,
                "PostgreSQL has accepted no connection for {silent_ms} ms (postmaster frozen or hung): stopping it before releasing the leader key"
            ),
            Why::PrimaryStartTimedOut { timeout_s } => write!(
                f,
                "PostgreSQL has not been running for primary_start_timeout ({timeout_s} s) and a standby can take over: stopping it and releasing the leader key"
            ),
            Why::OtherHoldsKey { leader } => {
                write!(f, "running as primary while {leader} holds the leader key")
            }
            Why::MayNotLead { detail } => write!(f, "running primary may not lead: {detail}"),
            Why::KeyLost => write!(f, "the leader key is gone or held by another member"),
            Why::DeadlinePassed => write!(f, "lease demotion deadline passed"),
            Why::DeadlinePassedWithoutFailsafe => write!(
                f,
                "lease demotion deadline passed and no failsafe round confirmed this primary since"
            ),
            Why::OfflineStop { retry_timeout } => write!(
                f,
                "demoting (offline, a fast stop): the lease could not be renewed; the demotion deadline is less than retry_timeout ({retry_timeout} s) away; the key is released once PostgreSQL is down, or expires"
            ),
            Why::FailsafeLost { refusals } => write!(
                f,
                "demoting (immediate-nolock): the lock store is unreachable and failsafe mode could not confirm this primary: {refusals}"
            ),
            Why::WatchdogUnusable { detail } => {
                write!(f, "demoting: watchdog required but unusable ({detail})")
            }
            Why::PolicyFence { detail } => write!(f, "policy stops the primary: {detail}"),
            Why::StopOverranDeadline => write!(
                f,
                "the demotion deadline passed before PostgreSQL stopped: killing it"
            ),
            Why::StopMetFrozenPostmaster => write!(
                f,
                "PostgreSQL accepts no connection (postmaster frozen or hung) while it stops: killing it"
            ),
            Why::Demoted => write!(f, "PostgreSQL stopped after demotion"),
            Why::StopFailed { error } => write!(
                f,
                "stopping PostgreSQL failed ({error}); deciding again at the next cycle"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case_and_listed() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Why::CODES {
            assert!(seen.insert(code), "{code} listed twice");
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{code}"
            );
        }
        // A code only a variant's `code()` knows would be missing from the table check.
        for why in [
            Why::StartStandby { upstream: None },
            Why::RaceAbandoned {
                lost: Box::new(Why::KeyLost),
            },
            Why::StopMetFrozenPostmaster,
        ] {
            assert!(Why::CODES.contains(&why.code()), "{}", why.code());
        }
        assert_eq!(
            Why::RaceAbandoned {
                lost: Box::new(Why::DeadlinePassed)
            }
            .to_string(),
            "race abandoned: lease demotion deadline passed"
        );
    }
}
