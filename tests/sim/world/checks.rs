//! The invariants checked after every event, and what "healed" means.

use super::*;

impl World {
    pub(super) fn violate(&mut self, what: String) {
        self.log(|| format!("VIOLATION: {what}"));
        self.violations.push(format!("at {} ms: {what}", self.now));
    }

    /// Whoever becomes writable must hold the leader key on a live lease, and must have
    /// every acknowledged commit in synchronous mode.
    pub(super) fn check_may_write(&mut self, i: usize, how: &str) {
        let name = self.nodes[i].name.clone();
        let holds = self
            .store
            .leader()
            .is_some_and(|(holder, lease)| holder == name && self.store.lease_alive(lease));
        if !holds {
            self.violate(format!(
                "{name} became a writable primary ({how}) without holding the leader key on a live lease"
            ));
        }
        if self.plan.synchronous {
            let wal = self.nodes[i]
                .pg
                .data
                .as_ref()
                .map(|d| {
                    d.wal
                        .iter()
                        .map(|r| r.id)
                        .collect::<std::collections::BTreeSet<_>>()
                })
                .unwrap_or_default();
            let lost: Vec<&Ack> = self.acked.iter().filter(|a| !wal.contains(&a.id)).collect();
            if let Some(first) = lost.first() {
                let what = format!(
                    "{name} became primary ({how}) without {} acknowledged commits (the first: #{} acknowledged by {} at {} ms)",
                    lost.len(),
                    first.id,
                    self.nodes[first.node].name,
                    first.at
                );
                self.violate(what);
            }
        }
    }

    /// A leader whose postmaster accepts no connection is replaced: detected after
    /// `unresponsive_primary_timeout`, killed (immediate stop of a stopped postmaster), its key
    /// released, so a healthy member can be elected (bounded by `ttl` plus an election).
    pub(super) fn check_frozen_leader(&mut self) {
        let Some((leader, _)) = self.store.leader() else {
            return;
        };
        let Some(l) = self.find(&leader) else {
            return;
        };
        let Some(since) = self.nodes[l].pg.postmaster_frozen_since else {
            return;
        };
        if self.cluster_paused {
            // Maintenance mode: a leader whose postmaster runs keeps its key (Patroni's
            // rule); nothing is stopped, and nobody else is promoted either.
            return;
        }
        let since = since.max(self.resumed_at);
        let loop_ms = u64::from(self.plan.loop_wait) * 1_000;
        let bound = UNRESPONSIVE_PRIMARY_TIMEOUT_MS + PROBE_TIMEOUT_MS + 2 * loop_ms + 2_000;
        let same_agent = self.nodes[l]
            .agent
            .as_ref()
            .is_some_and(|a| a.inc == self.nodes[l].incarnation_at_freeze);
        if same_agent && !self.nodes[l].paused && self.now > since + bound {
            self.violate(format!(
                "{leader} still holds the leader key {} ms after its postmaster froze",
                self.now - since
            ));
        }
    }

    /// Maintenance mode's one hazard, Patroni's too and documented: the cluster was resumed,
    /// but this node's agent (frozen, killed or cut off before it saw the resume) still
    /// holds the cluster paused, with its watchdog off, so nothing stops its primary while
    /// the others elect a leader. Never an excuse while the cluster is paused.
    fn missed_the_resume(&self, i: usize) -> bool {
        !self.cluster_paused
            && self.nodes[i]
                .status
                .as_ref()
                .is_some_and(|s| s.config.pause)
    }

    /// Never two nodes able to acknowledge a commit at the same instant.
    pub(super) fn check_writers(&mut self) {
        if self.nodes.iter().filter(|n| n.pg.is_writable()).count() < 2 {
            return;
        }
        let able: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.can_acknowledge(i) && !self.missed_the_resume(i))
            .collect();
        if able.len() > 1 {
            let names: Vec<&str> = able.iter().map(|&i| self.nodes[i].name.as_str()).collect();
            let what = format!("two primaries can acknowledge writes at once: {names:?}");
            self.violate(what);
        }
    }

    pub(super) fn can_acknowledge(&self, i: usize) -> bool {
        let pg = &self.nodes[i].pg;
        if !pg.is_writable() {
            return false;
        }
        let Some(rule) = pg.data.as_ref().and_then(|d| d.sync_rule.clone()) else {
            return true;
        };
        let streaming = self.streaming_standbys(i);
        if rule.any {
            streaming
                .iter()
                .filter(|&&j| rule.names.contains(&self.nodes[j].name))
                .count()
                >= rule.count
        } else {
            self.sync_standbys_now(i, &streaming).len() >= rule.count
        }
    }

    /// `None` when one leader runs a writable primary and every other member streams from it.
    pub(super) fn unhealthy_reason(&self) -> Option<String> {
        let Some((leader, _)) = self.store.leader() else {
            return Some("no leader key".into());
        };
        let Some(l) = self.find(&leader) else {
            return Some(format!("leader key names unknown {leader}"));
        };
        if !self.nodes[l].pg.is_writable() || self.nodes[l].agent.is_none() {
            return Some(format!("leader {leader} is not a running primary"));
        }
        for (j, n) in self.nodes.iter().enumerate() {
            if j == l {
                continue;
            }
            if n.agent.is_none() || n.paused {
                return Some(format!("{} has no running agent", n.name));
            }
            if n.pg.running != Some(true) || n.pg.streaming_from.as_deref() != Some(leader.as_str())
            {
                return Some(format!(
                    "{} is not streaming from {leader} (state {:?}, running {:?}, streaming from {:?})",
                    n.name,
                    n.status.as_ref().map(|s| s.state),
                    n.pg.running,
                    n.pg.streaming_from
                ));
            }
        }
        None
    }

    pub fn describe(&mut self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "  {}: agent {} state {:?} pg running {:?} frozen {} tl {:?} wal {} upstream {:?} streaming {:?} last transition {:?}\n",
                n.name,
                if n.agent.is_some() { "up" } else { "down" },
                n.status.as_ref().map(|s| s.state),
                n.pg.running,
                n.pg.frozen,
                n.pg.timeline(),
                n.pg.wal_len(),
                n.pg.data.as_ref().and_then(|d| d.upstream.clone()),
                n.pg.streaming_from,
                n.status.as_ref().map(|s| s.last_transition.clone()),
            ));
        }
        out.push_str(&format!("  leader key: {:?}\n", self.store.leader()));
        let view = self.store.view();
        let history: Vec<String> = view
            .history
            .iter()
            .map(|h| format!("tl {} ended at {}", h.timeline, h.switch_lsn))
            .collect();
        out.push_str(&format!(
            "  /history: {history:?}, /sync: {:?}\n",
            view.sync
        ));
        out
    }
}
