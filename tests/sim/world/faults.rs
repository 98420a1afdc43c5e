//! The nemesis at work: starting and ending each scheduled fault.

use super::*;

impl World {
    pub(super) fn fault(&mut self, idx: usize, start: bool) {
        let fault = self.plan.faults[idx].fault.clone();
        self.log(|| {
            format!(
                "fault {} {:?}",
                if start { "starts" } else { "ends" },
                fault
            )
        });
        let delta: i64 = if start { 1 } else { -1 };
        let bump = |c: &mut u32| *c = (*c as i64 + delta).max(0) as u32;
        match fault {
            Fault::Crash(i) => {
                if start {
                    self.kill_agent(i);
                    self.nodes[i].pg.stop(false);
                } else {
                    self.start_agent(i);
                }
            }
            Fault::KillAgent(i) => {
                if start {
                    self.kill_agent(i);
                } else {
                    self.start_agent(i);
                }
            }
            Fault::PauseAgent(i) => {
                if start {
                    if self.nodes[i].agent.is_some() {
                        self.nodes[i].paused = true;
                    }
                } else {
                    self.resume(i);
                }
            }
            Fault::PausePostmaster(i) => {
                if self.nodes[i].pg.running.is_some() || !start {
                    let frozen = start && self.nodes[i].pg.running.is_some();
                    self.nodes[i].pg.postmaster_frozen = frozen;
                    self.nodes[i].pg.postmaster_frozen_since = frozen.then_some(self.now);
                    self.nodes[i].incarnation_at_freeze = self.nodes[i].incarnation;
                }
            }
            Fault::Suspend(i) => {
                if start {
                    self.nodes[i].suspended_since.get_or_insert(self.now);
                    if self.nodes[i].agent.is_some() {
                        self.nodes[i].paused = true;
                    }
                    if self.nodes[i].pg.running.is_some() {
                        self.nodes[i].pg.frozen = true;
                    }
                } else {
                    // The VM's watchdog device was suspended with it: its countdown resumes
                    // where it stopped.
                    if let Some(since) = self.nodes[i].suspended_since.take() {
                        if let Some((_, fed)) = self.nodes[i].dog.as_mut() {
                            *fed += self.now - since.max(*fed).min(self.now);
                        }
                    }
                    self.nodes[i].pg.frozen = false;
                    self.resume(i);
                }
            }
            Fault::PartitionStore(i) => {
                bump(&mut self.cut_store[i]);
                self.network_changed();
            }
            Fault::PartitionPeers(a, b) => {
                let c = self.cut_peer.entry((a.min(b), a.max(b))).or_default();
                bump(c);
            }
            Fault::Isolate(i) => {
                bump(&mut self.cut_store[i]);
                for j in 0..self.nodes.len() {
                    if j != i {
                        let c = self.cut_peer.entry((i.min(j), i.max(j))).or_default();
                        bump(c);
                    }
                }
                self.network_changed();
            }
            Fault::SlowStore => bump(&mut self.slow_store),
            Fault::StoreOutage => {
                bump(&mut self.store_down);
                self.network_changed();
            }
            Fault::Restart(i) => {
                if start {
                    self.clean_stop(i);
                } else {
                    self.start_agent(i);
                }
            }
            Fault::SlowStandby(i, every_ms) => {
                if start {
                    self.nodes[i].slow_receive = Some((every_ms, self.now));
                } else if self.nodes[i]
                    .slow_receive
                    .is_some_and(|(e, _)| e == every_ms)
                {
                    self.nodes[i].slow_receive = None;
                }
            }
            Fault::OperatorReinitialize(i) => {
                let n = &self.nodes[i];
                if start && n.agent.is_some() && !n.paused {
                    self.next_reinitialize_request += 1;
                    let request = self.next_reinitialize_request;
                    self.feed(i, Input::ReinitializeRequested { request });
                    let verdict = self.nodes[i].status.as_ref().and_then(|s| {
                        s.reinitialize_verdicts
                            .iter()
                            .find(|(id, _)| *id == request)
                            .map(|(_, v)| v.clone())
                    });
                    self.log(|| format!("POST /reinitialize to node {i}: {verdict:?}"));
                    match verdict {
                        Some(Ok(())) => self.outcome.reinitialize_accepted += 1,
                        Some(Err(_)) => self.outcome.reinitialize_refused += 1,
                        None => panic!("node {i} gave no verdict to POST /reinitialize"),
                    }
                }
            }
            Fault::OperatorRestart(i) => {
                let n = &self.nodes[i];
                if start && n.agent.is_some() && !n.paused {
                    self.next_restart_request += 1;
                    let request = self.next_restart_request;
                    self.feed(
                        i,
                        Input::RestartRequested {
                            request,
                            conditions: Default::default(),
                        },
                    );
                    let verdict = self.nodes[i].status.as_ref().and_then(|s| {
                        s.restart_verdicts
                            .iter()
                            .find(|(id, _)| *id == request)
                            .map(|(_, v)| v.clone())
                    });
                    self.log(|| format!("POST /restart to node {i}: {verdict:?}"));
                    match verdict {
                        Some(Ok(())) => self.outcome.restart_accepted += 1,
                        Some(Err(_)) => self.outcome.restart_refused += 1,
                        None => panic!("node {i} gave no verdict to POST /restart"),
                    }
                }
            }
            Fault::OperatorReload(i) => {
                let n = &self.nodes[i];
                if start && n.agent.is_some() && !n.paused {
                    let settings = n.settings.reloadable();
                    self.feed(i, Input::LocalConfigReloaded { settings });
                    self.log(|| format!("POST /reload to node {i}"));
                    self.outcome.reloads += 1;
                }
            }
            Fault::PrePromoteVeto(i) => self.nodes[i].vetoes_promotion = start,
            Fault::OperatorPause => {
                if !start && !self.every_member_sees_the_store() {
                    // The operator's guide: resume only when every member runs and sees
                    // etcd, or a primary that cannot see the resume keeps running beside
                    // the one the others elect (Patroni's maintenance mode has the same
                    // hazard). The operator looks again shortly.
                    self.after(500, Ev::FaultEnd(idx));
                    return;
                }
                // The operator retries until etcd takes it: nobody reads it before then.
                self.store.set_pause(start);
                self.cluster_paused = start;
                if !start {
                    self.resumed_at = self.now;
                }
                self.store_changed();
                self.log(|| format!("patronictl {}", if start { "pause" } else { "resume" }));
                if start {
                    self.outcome.pauses += 1;
                }
            }
            Fault::ClockJump(i, ms) => {
                if start {
                    self.nodes[i].clock_offset += ms;
                    self.feed(i, Input::Tick);
                }
            }
        }
    }

    /// Every member's agent runs (not stopped, not suspended) and reaches the lock store.
    fn every_member_sees_the_store(&self) -> bool {
        (0..self.nodes.len()).all(|i| {
            let n = &self.nodes[i];
            n.agent.is_some() && !n.paused && n.suspended_since.is_none() && self.store_reachable(i)
        })
    }

    /// SIGTERM: PostgreSQL stopped (fast), then the leader key released if it was ours.
    pub(super) fn clean_stop(&mut self, i: usize) {
        let Some(status) = self.nodes[i].status.clone() else {
            self.kill_agent(i);
            return;
        };
        if self.nodes[i].paused {
            return; // a stopped process does not handle SIGTERM until continued
        }
        self.kill_agent(i);
        self.nodes[i].pg.stop(true);
        self.nodes[i].dog = None;
        if status.holds_leader_key && self.store_reachable(i) {
            let before = self.store.revision();
            self.store.release_leader(
                &self.nodes[i].name,
                status.lease.map(|l| l.0),
                status.leader_revision.map(|r| r.0),
            );
            if self.store.revision() != before {
                self.store_changed();
            }
        }
    }

    /// Watches notice a cut within their retry period, and recover on the next retry.
    pub(super) fn network_changed(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(inc) = self.nodes[i].agent.as_ref().map(|a| a.inc) else {
                continue;
            };
            let reachable = self.store_reachable(i);
            if !reachable && !self.nodes[i].watch_broken {
                let delay = self.rng.range(50, 500);
                self.nodes[i].watch_broken = true;
                self.after(delay, Ev::WatchRetry { node: i, inc });
                let at = self.now + delay;
                self.at(
                    at,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::DcsUnreachable {
                            error: "watch: etcd unreachable".into(),
                        },
                    },
                );
            }
        }
    }
}
