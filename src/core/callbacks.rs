//! Which user callback (`postgresql.callbacks`) a PostgreSQL action calls for, as Patroni
//! calls them: `on_start`, `on_stop`, `on_restart`, `on_reload` and `on_role_change`, each
//! with the role PostgreSQL has after the action (`primary`, `replica`, `demoted`).
//!
//! Patroni's rules, which VIP, DNS and pgbouncer scripts written for it rely on:
//! - a start calls `on_start`, a stop `on_stop` (only when a server was running), a restart
//!   `on_restart` (not `on_stop` then `on_start`), a reload `on_reload` (a change of the
//!   followed leader or of `synchronous_standby_names` is a reload too);
//! - a promotion calls `on_role_change` with `primary`; a former primary (stopped: role
//!   `demoted`) started again as a standby calls `on_role_change` with `replica`, not
//!   `on_start`, once some callback has been called since the agent started;
//! - the agent's first sight of a running server, when no action of its own started it
//!   (the agent restarted under a running PostgreSQL, or a bootstrap finished: Patroni calls
//!   no callback during a bootstrap) calls `on_start`, so a script re-asserts what it
//!   manages after an agent restart.
//!
//! Pure: the action that finished and what the agent knew in, the callback out. The runtime
//! runs it (`runtime::callbacks`), outside the decision loop.

use super::effect::PgAction;
pub use super::effect::{Callback, CallbackKind, CallbackRole};

/// What the callbacks rules remember between actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackBook {
    /// A start, stop, restart or role change callback was called since the agent started
    /// (Patroni's `cb_called`): until then a start is an `on_start`, whatever came before.
    called: bool,
    /// The role PostgreSQL was last put in by an action, or first seen in.
    role: Option<CallbackRole>,
}

impl CallbackBook {
    /// The callback a successful `action` calls for. `server_was_running`: a postmaster was
    /// alive before it (a stop of a stopped server calls nothing).
    pub fn after_action(
        &mut self,
        action: &PgAction,
        server_was_running: bool,
    ) -> Option<Callback> {
        let callback = match action {
            // Patroni calls nothing during a bootstrap; the first probe of the new primary
            // calls `on_start` (see `after_probe`).
            PgAction::Bootstrap => {
                self.role = Some(CallbackRole::Primary);
                return None;
            }
            PgAction::StartPrimary { .. } => self.started(CallbackRole::Primary),
            PgAction::StartReplica { .. }
            | PgAction::Clone { .. }
            | PgAction::Reinitialize { .. }
            | PgAction::Rewind { .. } => self.started(CallbackRole::Replica),
            PgAction::Promote { .. } => {
                self.became(CallbackKind::OnRoleChange, CallbackRole::Primary)
            }
            PgAction::Demote { .. } => {
                if !server_was_running {
                    return None;
                }
                let role = self.role.unwrap_or(CallbackRole::Replica);
                let callback = self.became(CallbackKind::OnStop, role);
                if role == CallbackRole::Primary {
                    self.role = Some(CallbackRole::Demoted);
                }
                callback
            }
            PgAction::Restart { start, .. } => {
                let role = match **start {
                    PgAction::StartPrimary { .. } => CallbackRole::Primary,
                    _ => CallbackRole::Replica,
                };
                self.became(CallbackKind::OnRestart, role)
            }
            PgAction::Follow { .. } => {
                if self.role_changes_to_replica() {
                    self.became(CallbackKind::OnRoleChange, CallbackRole::Replica)
                } else if !self.called {
                    // A fresh agent pointing its running standby at the leader: no change
                    // the scripts have been told of (its `on_start` follows).
                    return None;
                } else {
                    self.reloaded(CallbackRole::Replica)
                }
            }
            PgAction::Reload { primary } => self.reloaded(if *primary {
                CallbackRole::Primary
            } else {
                CallbackRole::Replica
            }),
            PgAction::SetSyncStandbys { .. } => self.reloaded(CallbackRole::Primary),
            PgAction::EnsureSlots { .. } => return None,
        };
        Some(callback)
    }

    /// The callback a probe calls for: the first running server the agent sees when no
    /// callback has been called yet and no action of its own is under way calls `on_start`
    /// with the role it runs in. `running_as_primary`: `None` when no server answered.
    pub fn after_probe(
        &mut self,
        running_as_primary: Option<bool>,
        action_in_flight: bool,
    ) -> Option<Callback> {
        if self.called || action_in_flight {
            return None;
        }
        let role = match running_as_primary? {
            true => CallbackRole::Primary,
            false => CallbackRole::Replica,
        };
        Some(self.became(CallbackKind::OnStart, role))
    }

    /// PostgreSQL is in `role` now, but the scripts are not told (a promotion that finished
    /// after the race was given up, about to be stopped: its `on_stop primary` follows).
    pub fn became_silently(&mut self, role: CallbackRole) {
        self.role = Some(role);
    }

    /// A start as `role`: `on_role_change` for a former primary now following (Patroni's
    /// `follow`), `on_start` otherwise.
    fn started(&mut self, role: CallbackRole) -> Callback {
        if role == CallbackRole::Replica && self.role_changes_to_replica() {
            return self.became(CallbackKind::OnRoleChange, role);
        }
        self.became(CallbackKind::OnStart, role)
    }

    /// A former primary (running or stopped) becomes a standby, after some callback told
    /// the scripts it was one.
    fn role_changes_to_replica(&self) -> bool {
        self.called
            && matches!(
                self.role,
                Some(CallbackRole::Primary | CallbackRole::Demoted)
            )
    }

    fn became(&mut self, kind: CallbackKind, role: CallbackRole) -> Callback {
        self.called = true;
        self.role = Some(role);
        Callback { kind, role }
    }

    /// A reload leaves the role and Patroni's `cb_called` as they are.
    fn reloaded(&mut self, role: CallbackRole) -> Callback {
        self.role = Some(role);
        Callback {
            kind: CallbackKind::OnReload,
            role,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::effect::{DemoteMode, Upstream};

    fn upstream() -> Upstream {
        Upstream {
            name: "b".into(),
            conn_url: "postgres://b:5432/postgres".into(),
            stream: true,
        }
    }

    fn call(kind: CallbackKind, role: CallbackRole) -> Option<Callback> {
        Some(Callback { kind, role })
    }

    fn stop() -> PgAction {
        PgAction::Demote {
            mode: DemoteMode::Graceful,
        }
    }

    #[test]
    fn a_bootstrapped_primary_is_started_by_its_first_probe_and_only_once() {
        let mut book = CallbackBook::default();
        assert_eq!(book.after_action(&PgAction::Bootstrap, false), None);
        // The probe while an action runs, and one that reached no server, call nothing.
        assert_eq!(book.after_probe(Some(true), true), None);
        assert_eq!(book.after_probe(None, false), None);
        use CallbackKind::*;
        use CallbackRole::*;
        assert_eq!(book.after_probe(Some(true), false), call(OnStart, Primary));
        assert_eq!(book.after_probe(Some(true), false), None);
    }

    #[test]
    fn a_switchover_stops_the_primary_then_changes_its_role_and_promotes_the_replica() {
        use CallbackKind::*;
        use CallbackRole::*;
        let mut old = CallbackBook::default();
        assert_eq!(old.after_probe(Some(true), false), call(OnStart, Primary));
        assert_eq!(old.after_action(&stop(), true), call(OnStop, Primary));
        let rejoin = PgAction::StartReplica {
            upstream: Some(upstream()),
        };
        assert_eq!(
            old.after_action(&rejoin, false),
            call(OnRoleChange, Replica)
        );
        // From then on a standby's start is a start.
        assert_eq!(old.after_action(&stop(), true), call(OnStop, Replica));
        assert_eq!(old.after_action(&rejoin, false), call(OnStart, Replica));

        let mut new = CallbackBook::default();
        let clone = PgAction::Clone { from: upstream() };
        assert_eq!(new.after_action(&clone, false), call(OnStart, Replica));
        // A re-pointed standby reloads.
        let follow = PgAction::Follow {
            upstream: upstream(),
        };
        assert_eq!(new.after_action(&follow, true), call(OnReload, Replica));
    }

    #[test]
    fn a_rewound_former_primary_changes_role_but_a_fresh_agent_starts_it() {
        use CallbackKind::*;
        use CallbackRole::*;
        let rewind = PgAction::Rewind { from: upstream() };
        let mut book = CallbackBook::default();
        book.after_probe(Some(true), false);
        book.after_action(&stop(), true);
        assert_eq!(
            book.after_action(&rewind, false),
            call(OnRoleChange, Replica)
        );
        // An agent that never called a callback (it restarted after its primary crashed)
        // tells the scripts of a start.
        let mut fresh = CallbackBook::default();
        assert_eq!(fresh.after_action(&rewind, false), call(OnStart, Replica));
    }

    #[test]
    fn restarts_reloads_and_stops_of_nothing() {
        use CallbackKind::*;
        use CallbackRole::*;
        let mut book = CallbackBook::default();
        let restart = PgAction::Restart {
            start: Box::new(PgAction::StartPrimary {
                sync_standbys: None,
            }),
            request: Some(1),
        };
        assert_eq!(book.after_action(&restart, true), call(OnRestart, Primary));
        assert_eq!(
            book.after_action(&PgAction::Reload { primary: true }, true),
            call(OnReload, Primary)
        );
        assert_eq!(
            book.after_action(
                &PgAction::SetSyncStandbys {
                    names: crate::core::sync::StandbyNames::none()
                },
                true
            ),
            call(OnReload, Primary)
        );
        assert_eq!(
            book.after_action(&PgAction::EnsureSlots { names: vec![] }, true),
            None
        );
        assert_eq!(
            book.after_action(&stop(), false),
            None,
            "nothing was running"
        );
        let kill = PgAction::Demote {
            mode: DemoteMode::ImmediateNolock,
        };
        assert_eq!(book.after_action(&kill, true), call(OnStop, Primary));
    }

    #[test]
    fn names_round_trip() {
        for kind in CallbackKind::ALL {
            assert_eq!(CallbackKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(CallbackKind::from_name("on_promote"), None);
    }
}
