//! The node's named timers: every moment the core needs to be woken at, by name.
//!
//! `Node::timers` fills the table from the facts each time it is asked (a timer is a
//! deadline the state implies, not something started and cancelled by hand, so none can be
//! left running by mistake); `poll_timeout` is its earliest entry, and `handle_timeout`
//! names the ones that are due, for the log.

use std::fmt;

use super::time::Instant;

/// What the node can be woken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The next decision cycle (a fresh PostgreSQL probe, then the machine decides): every
    /// `loop_wait`, sooner after a change, a finished action or a policy's wake-up.
    Cycle,
    /// The next lease grant or renewal, on its own schedule so a slow probe never delays it.
    LeaseRenewal,
    /// A leader's demotion deadline: past it, PostgreSQL must not accept writes.
    DemotionDeadline,
    /// Renewals fail: the clean (offline) stop is due `retry_timeout` before the deadline.
    OfflineStop,
    /// A stop through pg_ctl still running at the deadline is turned into a kill.
    StopKill,
    /// The next failsafe round while the lock store is unreachable.
    FailsafeRound,
    /// A promise not to race (failsafe) counts only observed time: look again soon.
    FailsafePromise,
    /// A restart an operator scheduled (`POST /restart` with `schedule`) is due.
    ScheduledRestart,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 8] = [
        Timer::Cycle,
        Timer::LeaseRenewal,
        Timer::DemotionDeadline,
        Timer::OfflineStop,
        Timer::StopKill,
        Timer::FailsafeRound,
        Timer::FailsafePromise,
        Timer::ScheduledRestart,
    ];

    /// Stable name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Timer::Cycle => "cycle",
            Timer::LeaseRenewal => "lease-renewal",
            Timer::DemotionDeadline => "demotion-deadline",
            Timer::OfflineStop => "offline-stop",
            Timer::StopKill => "stop-kill",
            Timer::FailsafeRound => "failsafe-round",
            Timer::FailsafePromise => "failsafe-promise",
            Timer::ScheduledRestart => "scheduled-restart",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The table: when each timer is due, if it is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timers {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl Timers {
    /// Sets `timer` to `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    /// When `timer` is due, if set.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// The earliest set timer (the first in table order on a tie).
    pub fn earliest(&self) -> Option<(Timer, Instant)> {
        Timer::ALL
            .iter()
            .filter_map(|t| self.get(*t).map(|at| (*t, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// The timers due at `now`.
    pub fn due(&self, now: Instant) -> Vec<Timer> {
        Timer::ALL
            .iter()
            .copied()
            .filter(|t| self.get(*t).is_some_and(|at| at <= now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_is_the_minimum_and_due_names_all_past_ones() {
        let mut t = Timers::default();
        assert_eq!(t.earliest(), None);
        t.set(Timer::Cycle, Instant(1_000));
        t.set(Timer::LeaseRenewal, Instant(500));
        t.set(Timer::DemotionDeadline, Instant(5_000));
        assert_eq!(t.earliest(), Some((Timer::LeaseRenewal, Instant(500))));
        assert_eq!(t.due(Instant(999)), vec![Timer::LeaseRenewal]);
        assert_eq!(
            t.due(Instant(1_000)),
            vec![Timer::Cycle, Timer::LeaseRenewal]
        );
        assert_eq!(Timer::ALL.map(Timer::index), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Timer::StopKill.to_string(), "stop-kill");
    }
}
