//! Synchronous replication bookkeeping: what `synchronous_standby_names` should say, and the
//! safe order of changes between it and the `/sync` key. Pure step functions: each call
//! returns the one next change (a `/sync` compare-and-swap or a PostgreSQL reconfiguration),
//! never two, so every intermediate state is one the invariants below hold in.
//!
//! Must not touch: IO of any kind; who carries a step out is the runtime's business.
//!
//! # `synchronous_mode: on` (`FIRST n`)
//! Invariant: every member recorded in `/sync` is synchronous in PostgreSQL. So a standby
//! is added to PostgreSQL first and recorded only once PostgreSQL reports it `sync` and it
//! has flushed the barrier (the primary's position when the change was seen in effect:
//! commits before it were acknowledged without it); it is removed from `/sync` first and
//! from PostgreSQL second. A failover candidate chosen from `/sync` therefore has every
//! acknowledged commit.
//!
//! # `synchronous_mode: quorum` (`ANY k (S)`)
//! `/sync` holds the voters `V` and `quorum` `q`. A candidate wins the race only with
//! `votes >= q`, where `votes` counts the voters other than itself that answered and are not
//! ahead of it, and a candidate outside `V` starts at -1 (Patroni's counting). In other
//! words it has heard from `q + 1` distinct voters (itself included when it is one), none
//! ahead of it.
//!
//! Why no acknowledged commit is lost as long as `q + k >= |V ∪ S|` (or `V` is empty):
//! a commit acknowledged under `ANY k (S)` is on the leader and on at least `k` members of
//! `S` (its holders `H`). At least `k - |S \ V|` of them are voters, so at most
//! `|V| - k + |S \ V| = |V ∪ S| - k <= q` voters lack it. The `q + 1` voters a winner heard
//! from cannot all be among those, so one of them holds the commit and, not being ahead of
//! the winner on the same timeline, proves the winner holds it too. With `V` empty nobody
//! can collect a vote: only the leader that wrote `/sync` may lead again (it has everything).
//!
//! The invariant must hold for every PostgreSQL setting a commit may have been acknowledged
//! under, not only the current one. Hence the order (one change per step):
//! 1. shrink `V` (drop voters leaving the set or no longer in PostgreSQL), keeping `q`:
//!    fewer voters never lets more candidates win, whatever setting was in effect;
//! 2. before reconfiguring PostgreSQL to `ANY k* (S*)`, raise `q` to `|V ∪ S*| - k*` so the
//!    new setting satisfies the invariant with the recorded `/sync` (the old one still does:
//!    raising `q` only makes winning harder);
//! 3. reconfigure PostgreSQL;
//! 4. once `k*` members of `S*` have flushed the barrier, every earlier commit is on `k*`
//!    members of `S*` too (the old settings are retired), so `/sync` may be set to
//!    `V = S*, q = |S*| - k*`, which meets the invariant with equality.
//!
//! # `synchronous_mode_strict`
//! With too few eligible standbys, PostgreSQL keeps the recorded standbys or a placeholder
//! name no standby uses ([`STRICT_PLACEHOLDER`]): commits wait instead of running without a
//! synchronous copy. It is never cleared.

use super::types::{Lsn, Revision};
use super::view::{ReplicationPeer, SyncState, Versioned};

/// The name Patroni puts in `synchronous_standby_names` when strict mode has no standby:
/// no standby connects with it, so commits wait.
pub const STRICT_PLACEHOLDER: &str = "__patroni_strict_sync_replica_placeholder__";

/// How PostgreSQL picks the standbys a commit waits for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SyncMethod {
    /// `FIRST n (...)`: the `n` highest-priority connected names.
    First,
    /// `ANY n (...)`: any `n` of the names (quorum commit).
    Any,
}

/// `synchronous_standby_names`, parsed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StandbyNames {
    /// FIRST or ANY.
    pub method: SyncMethod,
    /// How many standbys must confirm a commit (0 with no names).
    pub num: u32,
    /// Member names in priority order (may hold [`STRICT_PLACEHOLDER`]).
    pub names: Vec<String>,
}

impl StandbyNames {
    /// Empty: commits never wait.
    pub fn none() -> StandbyNames {
        StandbyNames {
            method: SyncMethod::First,
            num: 0,
            names: Vec::new(),
        }
    }

    /// `FIRST n (names)` with `n` = all of them: every listed standby confirms each commit.
    pub fn all_of(names: Vec<String>) -> StandbyNames {
        StandbyNames {
            method: SyncMethod::First,
            num: names.len() as u32,
            names,
        }
    }

    /// `ANY num (names)`, names sorted (order means nothing to ANY).
    pub fn any(num: u32, mut names: Vec<String>) -> StandbyNames {
        names.sort();
        names.dedup();
        StandbyNames {
            method: SyncMethod::Any,
            num,
            names,
        }
    }

    /// No standby is waited for.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() || self.num == 0
    }

    /// Real member names (the strict placeholder left out).
    pub fn members(&self) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| *n != STRICT_PLACEHOLDER)
            .cloned()
            .collect()
    }

    /// Every listed standby confirms each commit (what `/sync` in FIRST mode relies on).
    pub fn requires_all(&self) -> bool {
        !self.is_empty() && self.num as usize >= self.names.len()
    }

    /// Render as the parameter's text.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let quoted: Vec<String> = self.names.iter().map(|n| quote_standby_name(n)).collect();
        match self.method {
            SyncMethod::First if quoted.len() == 1 && self.num == 1 => quoted[0].clone(),
            SyncMethod::First => format!("FIRST {} ({})", self.num, quoted.join(",")),
            SyncMethod::Any => format!("ANY {} ({})", self.num, quoted.join(",")),
        }
    }

    /// Parse the parameter's text (`FIRST n (...)`, `ANY n (...)`, `n (...)` or a plain
    /// list, which PostgreSQL reads as `FIRST 1`).
    pub fn parse(text: &str) -> StandbyNames {
        let text = text.trim();
        if text.is_empty() {
            return StandbyNames::none();
        }
        let (head, inner) = match (text.find('('), text.rfind(')')) {
            (Some(open), Some(close)) if close > open => (&text[..open], &text[open + 1..close]),
            _ => ("", text),
        };
        let names: Vec<String> = inner
            .split(',')
            .map(|s| s.trim().trim_matches('"').replace("\"\"", "\""))
            .filter(|s| !s.is_empty() && s != "*")
            .collect();
        let mut words = head.split_whitespace();
        let (method, num) = match (words.next(), words.next()) {
            (Some(w), n) if w.eq_ignore_ascii_case("any") => {
                (SyncMethod::Any, n.and_then(|n| n.parse().ok()).unwrap_or(1))
            }
            (Some(w), n) if w.eq_ignore_ascii_case("first") => (
                SyncMethod::First,
                n.and_then(|n| n.parse().ok()).unwrap_or(1),
            ),
            (Some(n), _) => (SyncMethod::First, n.parse().unwrap_or(1)),
            (None, _) => (SyncMethod::First, 1),
        };
        if names.is_empty() {
            return StandbyNames::none();
        }
        StandbyNames { method, num, names }
    }
}

/// Which synchronous mode the primary runs, as the step functions need it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SyncPlan {
    /// `synchronous_mode: quorum`.
    pub quorum: bool,
    /// `synchronous_mode_strict`.
    pub strict: bool,
    /// `synchronous_node_count` (at least 1).
    pub node_count: u32,
}

impl SyncPlan {
    /// What `synchronous_standby_names` should say, given the standbys chosen (in order of
    /// preference; FIRST mode: already at most `node_count`) and the voters/standbys
    /// recorded in `/sync` by us.
    pub fn target(&self, chosen: &[String], recorded: &[String]) -> StandbyNames {
        let wanted = self.node_count.max(1);
        if chosen.is_empty() {
            if !self.strict {
                return StandbyNames::none();
            }
            // Strict: keep waiting for the standbys that were synchronous (they may come
            // back), or for a name nobody has.
            let keep: Vec<String> = if recorded.is_empty() {
                vec![STRICT_PLACEHOLDER.to_string()]
            } else {
                recorded.to_vec()
            };
            return if self.quorum {
                let num = wanted.min(keep.len() as u32);
                StandbyNames::any(num, keep)
            } else {
                StandbyNames::all_of(keep)
            };
        }
        if self.quorum {
            // Auto-reduced to the standbys there are.
            StandbyNames::any(wanted.min(chosen.len() as u32), chosen.to_vec())
        } else {
            StandbyNames::all_of(chosen.iter().take(wanted as usize).cloned().collect())
        }
    }

    /// What a standby about to be promoted puts in `synchronous_standby_names` beforehand in
    /// strict mode, so not one commit is acknowledged without a synchronous copy: any of the
    /// other members that may be synchronous (the first to reconnect satisfies it), or the
    /// placeholder. `None` outside strict mode (writes may run alone until one reconnects).
    pub fn before_promotion(&self, others: &[String]) -> Option<StandbyNames> {
        if !self.strict {
            return None;
        }
        let mut names = others.to_vec();
        names.sort();
        if names.is_empty() {
            names.push(STRICT_PLACEHOLDER.to_string());
        }
        let num = self.node_count.max(1).min(names.len() as u32);
        Some(if self.quorum {
            StandbyNames::any(num, names)
        } else {
            StandbyNames {
                method: SyncMethod::First,
                num,
                names,
            }
        })
    }
}

/// The next single step towards the desired synchronous set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// Compare-and-swap `/sync`.
    Record {
        /// New value.
        state: SyncState,
        /// Revision read (`None`: create).
        expected_revision: Option<Revision>,
    },
    /// Change `synchronous_standby_names`.
    Configure(StandbyNames),
}

/// What the step functions look at.
#[derive(Clone, Copy, Debug)]
pub struct SyncFacts<'a> {
    /// Our member name (the leader).
    pub me: &'a str,
    /// `/sync` as read.
    pub recorded: Option<&'a Versioned<SyncState>>,
    /// `synchronous_standby_names` in effect.
    pub configured: &'a StandbyNames,
    /// `pg_stat_replication`.
    pub replication: &'a [ReplicationPeer],
    /// What PostgreSQL should say ([`SyncPlan::target`]).
    pub target: &'a StandbyNames,
    /// WAL position the configured standbys must have flushed to count (None: not measured
    /// since the last change).
    pub barrier: Option<Lsn>,
}

/// Decide the next step, or `None` when nothing can or needs to change now.
pub fn next_step(facts: &SyncFacts<'_>) -> Option<SyncStep> {
    let expected_revision = facts.recorded.map(|r| r.mod_revision);
    let mine = facts
        .recorded
        .filter(|r| r.value.leader.as_deref() == Some(facts.me));
    let Some(mine) = mine else {
        // Claim /sync with an empty set: only the leader itself may then race.
        return Some(SyncStep::Record {
            state: state(facts.me, Vec::new(), 0),
            expected_revision,
        });
    };
    match facts.target.method {
        SyncMethod::First => first_step(facts, &mine.value, expected_revision),
        SyncMethod::Any => quorum_step(facts, &mine.value, expected_revision),
    }
}

/// Members of `names` PostgreSQL shows streaming, confirmed synchronous (or quorum) and
/// flushed past the barrier.
fn confirmed(facts: &SyncFacts<'_>, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            facts.replication.iter().any(|r| {
                &r.application_name == *n
                    && r.state == "streaming"
                    && (r.sync_state == "sync" || r.sync_state == "quorum")
                    && facts
                        .barrier
                        .is_some_and(|b| r.flush_lsn.is_some_and(|f| f >= b))
            })
        })
        .cloned()
        .collect()
}

fn first_step(
    facts: &SyncFacts<'_>,
    recorded: &SyncState,
    expected_revision: Option<Revision>,
) -> Option<SyncStep> {
    let in_sync = &recorded.sync_standby;
    let wanted = facts.target.members();
    // Only a setting that waits for every listed name vouches for each one of them (an
    // `ANY` or partial `FIRST` setting, e.g. after a mode change, vouches for none).
    let vouched = if facts.configured.requires_all() {
        facts.configured.members()
    } else {
        Vec::new()
    };
    let keep: Vec<String> = in_sync
        .iter()
        .filter(|n| wanted.contains(n) && vouched.contains(n))
        .cloned()
        .collect();
    if keep.len() != in_sync.len() || recorded.quorum != 0 {
        return Some(SyncStep::Record {
            state: state(facts.me, keep, 0),
            expected_revision,
        });
    }
    if facts.configured != facts.target {
        return Some(SyncStep::Configure(facts.target.clone()));
    }
    if !facts.configured.requires_all() {
        // `FIRST 1 (b, c)` (set before a strict promotion) waits for whichever connects
        // first: it vouches for no particular standby, so nothing is recorded under it.
        return None;
    }
    let mut record: Vec<String> = in_sync.clone();
    for n in confirmed(facts, &wanted) {
        if !record.contains(&n) {
            record.push(n);
        }
    }
    record.sort();
    let mut current = in_sync.clone();
    current.sort();
    (record != current).then(|| SyncStep::Record {
        state: state(facts.me, record, 0),
        expected_revision,
    })
}

fn quorum_step(
    facts: &SyncFacts<'_>,
    recorded: &SyncState,
    expected_revision: Option<Revision>,
) -> Option<SyncStep> {
    let voters = &recorded.sync_standby;
    let q = recorded.quorum;
    let target = facts.target.members();
    let configured = facts.configured.members();
    // 1. Voters leaving the set, or not in PostgreSQL's setting, go first.
    let keep: Vec<String> = voters
        .iter()
        .filter(|v| target.contains(v) && configured.contains(v))
        .cloned()
        .collect();
    if keep.len() != voters.len() {
        return Some(SyncStep::Record {
            state: state(facts.me, keep, q),
            expected_revision,
        });
    }
    if facts.configured != facts.target {
        // 2. The recorded quorum must already cover the new setting ...
        if !voters.is_empty() {
            let need = union_len(voters, &target).saturating_sub(facts.target.num as usize) as u32;
            if q < need {
                return Some(SyncStep::Record {
                    state: state(facts.me, voters.clone(), need),
                    expected_revision,
                });
            }
        }
        // 3. ... before PostgreSQL changes.
        return Some(SyncStep::Configure(facts.target.clone()));
    }
    // 4. Once enough of the new set flushed the barrier, earlier settings are retired and
    //    the voters can be the new set, with the smallest quorum the invariant allows.
    let retired = confirmed(facts, &target).len() >= facts.target.num as usize;
    if !retired {
        return None;
    }
    let new_q = (target.len() as u32).saturating_sub(facts.target.num);
    let mut new_voters = target;
    new_voters.sort();
    let mut current = voters.clone();
    current.sort();
    (new_voters != current || new_q != q).then(|| SyncStep::Record {
        state: state(facts.me, new_voters, new_q),
        expected_revision,
    })
}

fn union_len(a: &[String], b: &[String]) -> usize {
    a.len() + b.iter().filter(|n| !a.contains(n)).count()
}

/// The quorum invariant (`q + k >= |V ∪ S|`, or no voters) for one PostgreSQL setting.
pub fn quorum_invariant_holds(recorded: &SyncState, configured: &StandbyNames) -> bool {
    let voters = &recorded.sync_standby;
    if voters.is_empty() {
        return true;
    }
    let members = configured.members();
    let k = if configured.is_empty() {
        0
    } else {
        configured.num as usize
    };
    recorded.quorum as usize + k >= union_len(voters, &members)
}

/// Whether `/sync` allows `me` to lead in quorum mode, given the positions of the voters
/// that answered: Patroni's counting (voters not ahead of `me`, other than `me`; a
/// non-voter starts at -1) must reach `quorum`. The leader that wrote `/sync` may lead alone
/// when nobody answered ahead of it. `Err` carries (votes, needed).
pub fn quorum_votes(
    me: &str,
    my_position: Lsn,
    recorded: &SyncState,
    answers: &[(String, Lsn)],
) -> Result<(), (i64, u32)> {
    let voters = &recorded.sync_standby;
    // Only those that may hold acknowledged commits can be "ahead": the recorded leader and
    // the voters. A non-voter further along (a crashed old primary with unacknowledged WAL)
    // must not veto the claimer, or nobody could ever lead again.
    let ahead = answers.iter().any(|(name, lsn)| {
        *lsn > my_position
            && (voters.contains(name) || recorded.leader.as_deref() == Some(name.as_str()))
    });
    if recorded.leader.as_deref() == Some(me) && !ahead {
        return Ok(());
    }
    let mut votes: i64 = if voters.iter().any(|v| v == me) {
        0
    } else {
        -1
    };
    votes += answers
        .iter()
        .filter(|(name, lsn)| name != me && voters.contains(name) && *lsn <= my_position)
        .count() as i64;
    if votes >= i64::from(recorded.quorum) {
        Ok(())
    } else {
        Err((votes, recorded.quorum))
    }
}

fn state(me: &str, mut names: Vec<String>, quorum: u32) -> SyncState {
    names.sort();
    SyncState {
        leader: Some(me.to_string()),
        sync_standby: names,
        quorum,
    }
}

/// A name as Patroni writes it into `synchronous_standby_names`: bare when PostgreSQL reads
/// it as an identifier (`node2`, the strict placeholder, which Patroni's acceptance suite
/// expects bare), double-quoted otherwise (`"postgres-1"`, and `first` and `any`, keywords
/// there). PostgreSQL matches the names case-insensitively either way.
fn quote_standby_name(name: &str) -> String {
    let mut chars = name.chars();
    let bare = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !name.eq_ignore_ascii_case("first")
        && !name.eq_ignore_ascii_case("any");
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Render member names as `synchronous_standby_names`, every one of them required.
pub fn render_standby_names(names: &[String]) -> String {
    StandbyNames::all_of(names.to_vec()).render()
}

/// Parse `synchronous_standby_names` back into member names.
pub fn parse_standby_names(text: &str) -> Vec<String> {
    StandbyNames::parse(text).names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn peer(name: &str, sync_state: &str, flush: u64) -> ReplicationPeer {
        ReplicationPeer {
            application_name: name.into(),
            state: "streaming".into(),
            sync_state: sync_state.into(),
            flush_lsn: Some(Lsn(flush)),
            replay_lsn: Some(Lsn(flush)),
            usename: None,
            client_addr: None,
            sync_priority: 0,
            reply_time: None,
            pid: None,
        }
    }

    fn recorded(leader: &str, sync: &[&str], quorum: u32) -> Versioned<SyncState> {
        Versioned {
            value: SyncState {
                leader: Some(leader.into()),
                sync_standby: names(sync),
                quorum,
            },
            mod_revision: Revision(5),
        }
    }

    fn step(
        rec: &Versioned<SyncState>,
        configured: &StandbyNames,
        replication: &[ReplicationPeer],
        target: &StandbyNames,
        barrier: Option<u64>,
    ) -> Option<SyncStep> {
        next_step(&SyncFacts {
            me: "a",
            recorded: Some(rec),
            configured,
            replication,
            target,
            barrier: barrier.map(Lsn),
        })
    }

    fn record(sync: &[&str], quorum: u32) -> Option<SyncStep> {
        Some(SyncStep::Record {
            state: state("a", names(sync), quorum),
            expected_revision: Some(Revision(5)),
        })
    }

    const MULTI: SyncPlan = SyncPlan {
        quorum: false,
        strict: false,
        node_count: 1,
    };
    const STRICT: SyncPlan = SyncPlan {
        quorum: false,
        strict: true,
        node_count: 1,
    };
    const QUORUM: SyncPlan = SyncPlan {
        quorum: true,
        strict: false,
        node_count: 1,
    };

    #[test]
    fn new_leader_claims_sync_key_first() {
        let old = recorded("b", &["a"], 0);
        let target = StandbyNames::all_of(names(&["c"]));
        let step = next_step(&SyncFacts {
            me: "a",
            recorded: Some(&old),
            configured: &StandbyNames::none(),
            replication: &[],
            target: &target,
            barrier: None,
        });
        assert_eq!(record(&[], 0), step);
        let step = next_step(&SyncFacts {
            me: "a",
            recorded: None,
            configured: &StandbyNames::none(),
            replication: &[],
            target: &target,
            barrier: None,
        });
        assert_eq!(
            step,
            Some(SyncStep::Record {
                state: state("a", vec![], 0),
                expected_revision: None
            })
        );
    }

    #[test]
    fn replacement_shrinks_record_then_configures_then_records() {
        let b = StandbyNames::all_of(names(&["b"]));
        let c = StandbyNames::all_of(names(&["c"]));
        // b is recorded; c is desired instead.
        let rec = recorded("a", &["b"], 0);
        assert_eq!(
            step(&rec, &b, &[peer("c", "async", 100)], &c, Some(100)),
            record(&[], 0)
        );
        let rec = recorded("a", &[], 0);
        assert_eq!(
            step(&rec, &b, &[peer("c", "async", 100)], &c, Some(100)),
            Some(SyncStep::Configure(c.clone()))
        );
        // Configured but not yet confirmed sync: nothing to record yet.
        assert_eq!(
            step(&rec, &c, &[peer("c", "potential", 100)], &c, Some(100)),
            None
        );
        assert_eq!(
            step(&rec, &c, &[peer("c", "sync", 100)], &c, Some(100)),
            record(&["c"], 0)
        );
        let rec = recorded("a", &["c"], 0);
        assert_eq!(
            step(&rec, &c, &[peer("c", "sync", 100)], &c, Some(100)),
            None
        );
    }

    #[test]
    fn a_standby_behind_the_barrier_is_not_recorded_yet() {
        let c = StandbyNames::all_of(names(&["c"]));
        let rec = recorded("a", &[], 0);
        // PostgreSQL calls c synchronous, but c has not flushed what the primary had when
        // it became synchronous: commits before that were acknowledged without it.
        assert_eq!(
            step(&rec, &c, &[peer("c", "sync", 100)], &c, Some(150)),
            None
        );
        // No barrier measured yet: never record.
        assert_eq!(step(&rec, &c, &[peer("c", "sync", 100)], &c, None), None);
    }

    #[test]
    fn non_strict_clears_postgres_but_keeps_the_leader_in_sync() {
        let b = StandbyNames::all_of(names(&["b"]));
        let target = MULTI.target(&[], &names(&["b"]));
        assert_eq!(target, StandbyNames::none());
        let rec = recorded("a", &["b"], 0);
        assert_eq!(step(&rec, &b, &[], &target, Some(1)), record(&[], 0));
        let rec = recorded("a", &[], 0);
        assert_eq!(
            step(&rec, &b, &[], &target, Some(1)),
            Some(SyncStep::Configure(StandbyNames::none()))
        );
        assert_eq!(step(&rec, &StandbyNames::none(), &[], &target, None), None);
    }

    #[test]
    fn strict_keeps_the_recorded_standby_or_a_placeholder() {
        // b is recorded and gone: PostgreSQL keeps waiting for it, /sync keeps it.
        let target = STRICT.target(&[], &names(&["b"]));
        assert_eq!(target, StandbyNames::all_of(names(&["b"])));
        let rec = recorded("a", &["b"], 0);
        assert_eq!(step(&rec, &target, &[], &target, Some(1)), None);
        // Nothing recorded: the placeholder, never recorded in /sync.
        let target = STRICT.target(&[], &[]);
        assert_eq!(target.render(), STRICT_PLACEHOLDER);
        let rec = recorded("a", &[], 0);
        assert_eq!(
            step(&rec, &StandbyNames::none(), &[], &target, None),
            Some(SyncStep::Configure(target.clone()))
        );
        assert_eq!(step(&rec, &target, &[], &target, Some(1)), None);
        // A standby appears: PostgreSQL moves to it (writes wait for it until it is sync),
        // then /sync records it.
        let c = STRICT.target(&names(&["c"]), &[]);
        assert_eq!(
            step(&rec, &target, &[peer("c", "async", 5)], &c, Some(1)),
            Some(SyncStep::Configure(c.clone()))
        );
        assert_eq!(
            step(&rec, &c, &[peer("c", "sync", 5)], &c, Some(1)),
            record(&["c"], 0)
        );
    }

    #[test]
    fn node_count_limits_first_and_is_reduced_to_the_eligible() {
        let plan = SyncPlan {
            node_count: 2,
            ..MULTI
        };
        assert_eq!(
            plan.target(&names(&["b", "c", "d"]), &[]).render(),
            "FIRST 2 (b,c)"
        );
        assert_eq!(plan.target(&names(&["b"]), &[]).render(), "b");
        let strict = SyncPlan {
            strict: true,
            ..plan
        };
        assert!(
            !strict.target(&[], &[]).is_empty(),
            "never below 1 in strict mode"
        );
        let quorum = SyncPlan {
            node_count: 2,
            ..QUORUM
        };
        assert_eq!(
            quorum.target(&names(&["c", "b", "d"]), &[]).render(),
            "ANY 2 (b,c,d)"
        );
        assert_eq!(quorum.target(&names(&["b"]), &[]).render(), "ANY 1 (b)");
    }

    #[test]
    fn before_promotion_only_in_strict_mode() {
        assert_eq!(MULTI.before_promotion(&names(&["b"])), None);
        assert_eq!(
            STRICT
                .before_promotion(&names(&["c", "b"]))
                .map(|s| s.render()),
            Some("FIRST 1 (b,c)".to_string())
        );
        assert_eq!(
            STRICT.before_promotion(&[]).map(|s| s.members()),
            Some(Vec::new())
        );
        let strict_quorum = SyncPlan {
            strict: true,
            ..QUORUM
        };
        assert_eq!(
            strict_quorum
                .before_promotion(&names(&["b", "c"]))
                .map(|s| s.render()),
            Some("ANY 1 (b,c)".to_string())
        );
    }

    #[test]
    fn nothing_is_recorded_under_a_setting_that_waits_for_any_one_of_several() {
        let either = STRICT
            .before_promotion(&names(&["b", "c"]))
            .expect("strict");
        let rec = recorded("a", &[], 0);
        let rows = [peer("b", "sync", 9), peer("c", "potential", 9)];
        assert_eq!(step(&rec, &either, &rows, &either, Some(1)), None);
    }

    #[test]
    fn leaving_quorum_mode_forgets_what_any_does_not_vouch_for() {
        // ANY 1 (b, c) does not put every commit on b: FIRST mode may not keep b recorded.
        let any = StandbyNames::any(1, names(&["b", "c"]));
        let rec = recorded("a", &["b", "c"], 1);
        let target = MULTI.target(&names(&["b"]), &[]);
        assert_eq!(step(&rec, &any, &[], &target, Some(1)), record(&[], 0));
    }

    #[test]
    fn standby_names_render_and_parse() {
        let one = StandbyNames::all_of(names(&["node2"]));
        assert_eq!(one.render(), "node2");
        assert_eq!(StandbyNames::parse("\"node2\""), one);
        let dashed = StandbyNames::all_of(names(&["postgres-1"]));
        assert_eq!(dashed.render(), "\"postgres-1\"");
        assert_eq!(StandbyNames::parse(&dashed.render()), dashed);
        let keyword = StandbyNames::all_of(names(&["Any", "x\"y"]));
        assert_eq!(keyword.render(), "FIRST 2 (\"Any\",\"x\"\"y\")");
        let placeholder = StandbyNames::any(1, names(&[STRICT_PLACEHOLDER]));
        assert_eq!(
            placeholder.render(),
            "ANY 1 (__patroni_strict_sync_replica_placeholder__)"
        );
        let two = StandbyNames::all_of(names(&["a", "b"]));
        assert_eq!(two.render(), "FIRST 2 (a,b)");
        assert_eq!(StandbyNames::parse(&two.render()), two);
        let any = StandbyNames::any(1, names(&["x", "y"]));
        assert_eq!(StandbyNames::parse("ANY 1 (x, y)"), any);
        assert_eq!(StandbyNames::parse(&any.render()), any);
        assert_eq!(StandbyNames::parse("2 (a, b)"), two);
        assert_eq!(StandbyNames::parse("a, b").num, 1);
        assert!(StandbyNames::parse("").is_empty());
        assert_eq!(render_standby_names(&names(&["a", "b"])), two.render());
        assert_eq!(parse_standby_names("ANY 1 (x, y)"), vec!["x", "y"]);
    }

    #[test]
    fn quorum_growth_raises_quorum_then_configures_then_records() {
        let b = StandbyNames::any(1, names(&["b"]));
        let bc = StandbyNames::any(1, names(&["b", "c"]));
        let rec = recorded("a", &["b"], 0);
        let both = [peer("b", "quorum", 9), peer("c", "quorum", 9)];
        // The new setting ANY 1 (b, c) needs q >= |{b} ∪ {b,c}| - 1 = 1 first.
        assert_eq!(step(&rec, &b, &both, &bc, Some(9)), record(&["b"], 1));
        let rec = recorded("a", &["b"], 1);
        assert_eq!(
            step(&rec, &b, &both, &bc, Some(9)),
            Some(SyncStep::Configure(bc.clone()))
        );
        // Not retired until one of them has flushed the barrier.
        assert_eq!(step(&rec, &bc, &both, &bc, Some(10)), None);
        assert_eq!(step(&rec, &bc, &both, &bc, Some(9)), record(&["b", "c"], 1));
        let rec = recorded("a", &["b", "c"], 1);
        assert_eq!(step(&rec, &bc, &both, &bc, Some(9)), None);
    }

    #[test]
    fn quorum_shrink_drops_the_voter_first() {
        let bc = StandbyNames::any(1, names(&["b", "c"]));
        let b = StandbyNames::any(1, names(&["b"]));
        let rec = recorded("a", &["b", "c"], 1);
        let only_b = [peer("b", "quorum", 9)];
        assert_eq!(step(&rec, &bc, &only_b, &b, Some(9)), record(&["b"], 1));
        let rec = recorded("a", &["b"], 1);
        assert_eq!(
            step(&rec, &bc, &only_b, &b, Some(9)),
            Some(SyncStep::Configure(b.clone()))
        );
        assert_eq!(step(&rec, &b, &only_b, &b, Some(9)), record(&["b"], 0));
    }

    #[test]
    fn quorum_node_count_changes_keep_the_invariant() {
        let any1 = StandbyNames::any(1, names(&["b", "c"]));
        let any2 = StandbyNames::any(2, names(&["b", "c"]));
        let both = [peer("b", "quorum", 9), peer("c", "quorum", 9)];
        // Up: PostgreSQL first (more copies never hurts), then the smaller quorum.
        let rec = recorded("a", &["b", "c"], 1);
        assert_eq!(
            step(&rec, &any1, &both, &any2, Some(9)),
            Some(SyncStep::Configure(any2.clone()))
        );
        assert_eq!(
            step(&rec, &any2, &both, &any2, Some(9)),
            record(&["b", "c"], 0)
        );
        // Down: the larger quorum first.
        let rec = recorded("a", &["b", "c"], 0);
        assert_eq!(
            step(&rec, &any2, &both, &any1, Some(9)),
            record(&["b", "c"], 1)
        );
    }

    /// Drive the steps from many starting points to many targets, applying each one, and
    /// check the invariant against every PostgreSQL setting not yet retired.
    #[test]
    fn quorum_steps_never_break_the_invariant() {
        let pool = ["b", "c", "d"];
        let subsets: Vec<Vec<String>> = (0..8u8)
            .map(|m| {
                pool.iter()
                    .enumerate()
                    .filter(|(i, _)| m & (1 << i) != 0)
                    .map(|(_, n)| n.to_string())
                    .collect()
            })
            .collect();
        for from in &subsets {
            for to in &subsets {
                for k_from in 1..=2u32 {
                    for k_to in 1..=2u32 {
                        let plan = SyncPlan {
                            quorum: true,
                            strict: false,
                            node_count: k_to,
                        };
                        let start = plan_with(k_from).target(from, &[]);
                        let mut rec = recorded(
                            "a",
                            &from.iter().map(String::as_str).collect::<Vec<_>>(),
                            (from.len() as u32).saturating_sub(start.num),
                        );
                        let mut configured = start.clone();
                        let target = plan.target(to, &[]);
                        let replication: Vec<ReplicationPeer> =
                            pool.iter().map(|n| peer(n, "quorum", 9)).collect();
                        let mut live = vec![configured.clone()];
                        for _ in 0..10 {
                            for setting in &live {
                                assert!(
                                    quorum_invariant_holds(&rec.value, setting),
                                    "{from:?}/{k_from} -> {to:?}/{k_to}: {:?} vs {setting:?}",
                                    rec.value
                                );
                            }
                            match step(&rec, &configured, &replication, &target, Some(9)) {
                                Some(SyncStep::Record { state, .. }) => {
                                    rec.value = state;
                                }
                                Some(SyncStep::Configure(next)) => {
                                    configured = next.clone();
                                    live.push(next);
                                }
                                None => break,
                            }
                            // Everyone flushed the barrier: once PostgreSQL has the
                            // target setting, every earlier one is retired.
                            if configured == target {
                                live = vec![configured.clone()];
                            }
                        }
                        assert_eq!(configured, target);
                        assert!(quorum_invariant_holds(&rec.value, &configured));
                    }
                }
            }
        }
    }

    fn plan_with(node_count: u32) -> SyncPlan {
        SyncPlan {
            node_count,
            ..QUORUM
        }
    }

    #[test]
    fn votes_follow_patronis_counting() {
        let sync = SyncState {
            leader: Some("a".into()),
            sync_standby: names(&["b", "c"]),
            quorum: 1,
        };
        let at = |n: &str, l: u64| (n.to_string(), Lsn(l));
        // b alone: it is a voter but needs one more voter not ahead of it.
        assert_eq!(quorum_votes("b", Lsn(10), &sync, &[]), Err((0, 1)));
        assert_eq!(quorum_votes("b", Lsn(10), &sync, &[at("c", 10)]), Ok(()));
        // c ahead gives no vote.
        assert_eq!(
            quorum_votes("b", Lsn(10), &sync, &[at("c", 11)]),
            Err((0, 1))
        );
        // A non-voter needs quorum + 1 votes.
        assert_eq!(
            quorum_votes("d", Lsn(10), &sync, &[at("c", 10)]),
            Err((0, 1))
        );
        assert_eq!(
            quorum_votes("d", Lsn(10), &sync, &[at("b", 9), at("c", 10)]),
            Ok(())
        );
        // The former leader may lead alone unless someone is ahead.
        assert_eq!(quorum_votes("a", Lsn(10), &sync, &[]), Ok(()));
        assert!(quorum_votes("a", Lsn(10), &sync, &[at("b", 11)]).is_err());
        // No voters: nobody but the leader.
        let empty = SyncState {
            leader: Some("a".into()),
            sync_standby: Vec::new(),
            quorum: 0,
        };
        assert!(quorum_votes("b", Lsn(10), &empty, &[at("c", 1)]).is_err());
        // A non-voter further along (a crashed old primary's unacknowledged WAL) does not
        // veto the claimer: only the leader and the voters may hold acknowledged commits.
        let claimed = SyncState {
            leader: Some("b".into()),
            sync_standby: vec![],
            quorum: 0,
        };
        assert_eq!(
            quorum_votes("b", Lsn(10), &claimed, &[("a".into(), Lsn(50))]),
            Ok(())
        );
    }
}
