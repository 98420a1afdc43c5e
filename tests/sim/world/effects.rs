//! Carrying out the core's effects, as `src/runtime/executor.rs` does: lock store requests
//! with latency, loss and retries, the watch, probes, policy calls, the watchdog device.

use super::*;
use pgwarden::core::Revision;

impl World {
    pub(super) fn execute(&mut self, i: usize, inc: u64, effect: Effect) {
        let now = self.node_now(i);
        if matches!(
            effect,
            Effect::ReleaseLeader { .. } | Effect::AcquireLeader { .. } | Effect::WriteSync { .. }
        ) {
            self.log(|| format!("{} -> store: {effect:?}", self.nodes[i].name));
        }
        let op = match effect {
            Effect::GrantLease { ttl_secs } => Op::Grant {
                ttl_secs,
                sent_at: now,
            },
            Effect::RenewLease { lease, .. } => Op::Renew {
                lease,
                sent_at: now,
                give_up: self.now + u64::from(self.plan.retry_timeout) * 1_000,
            },
            Effect::RevokeLease { lease } => Op::Revoke { lease },
            Effect::ProbePostgres => {
                let delay = self.rng.range(2, 15);
                self.after(delay, Ev::Probe { node: i, inc });
                return;
            }
            Effect::TouchMember { member, lease } => Op::PutMember {
                lease,
                value: member_json(&self.nodes[i].identity, &member).to_string(),
            },
            Effect::RaceInitialize => Op::RaceInitialize,
            Effect::CancelInitialize => Op::CancelInitialize,
            Effect::ClearStaleInitialize { mod_revision, .. } => Op::ClearStaleInitialize {
                mod_revision: mod_revision.0,
            },
            Effect::WriteInitialize { sysid } => Op::WriteInitialize { sysid },
            Effect::WriteInitialConfig => Op::WriteConfig {
                json: self.nodes[i]
                    .settings
                    .bootstrap_config
                    .to_json()
                    .to_string(),
            },
            Effect::AcquireLeader { lease } => Op::Acquire { lease },
            Effect::ReleaseLeader {
                lease,
                create_revision,
            } => Op::Release {
                lease,
                create_revision: create_revision.map(|r| r.0),
            },
            Effect::WriteSync {
                seq,
                state,
                expected_revision,
            } => Op::WriteSync {
                seq,
                state,
                expected: expected_revision.map(|r| r.0),
            },
            Effect::ClearFailover {
                expected_revision, ..
            } => Op::ClearFailover {
                expected: expected_revision.map(|r| r.0),
            },
            Effect::WriteStatus { optime } => Op::WriteStatus { optime },
            Effect::UpdateHistory { timeline, .. } => Op::WriteHistory {
                entries: self.history_of(i, timeline),
            },
            Effect::ProbePeers { members } => {
                self.probe_peers(i, inc, members);
                return;
            }
            Effect::ProbeFailsafe { members } => {
                self.failsafe_round(i, inc, members);
                return;
            }
            Effect::WriteFailsafe { members } => Op::WriteFailsafe { members },
            Effect::ConsultPolicy(call) => {
                let answer = (self.decide)(&call);
                if let Some(error) = &answer.fallback {
                    // The sandboxed default must never need its native fallback.
                    self.violate(format!("the policy failed and fell back: {error}"));
                }
                self.after(
                    1,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::PolicyDecided(answer),
                    },
                );
                return;
            }
            Effect::Pg(action) => {
                if matches!(
                    action,
                    PgAction::Demote {
                        mode: DemoteMode::ImmediateNolock
                    }
                ) {
                    // The executor kills at once, ahead of the serial worker's queue.
                    self.nodes[i].pg.stop(false);
                }
                self.nodes[i].worker.push_back(action);
                self.start_next_action(i);
                return;
            }
            // The fake PostgreSQL has no configuration files.
            Effect::UsePgConfig(_) => return,
            // No scripts run here; the runtime never waits for them either.
            Effect::RunCallback(_) => {
                self.outcome.callbacks += 1;
                return;
            }
            Effect::CheckWatchdog => {
                self.at(
                    self.now,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::WatchdogChecked(Ok(())),
                    },
                );
                return;
            }
            Effect::ArmWatchdog { timeout_secs } => {
                self.nodes[i].dog = Some((u64::from(timeout_secs) * 1_000, self.now));
                self.at(
                    self.now,
                    Ev::Deliver {
                        node: i,
                        inc,
                        input: Input::WatchdogArmed(Ok(ArmReport {
                            device_timeout_secs: Some(timeout_secs),
                        })),
                    },
                );
                return;
            }
            Effect::FeedWatchdog => {
                if let Some((_, fed)) = self.nodes[i].dog.as_mut() {
                    *fed = self.now;
                }
                return;
            }
            Effect::DisarmWatchdog { .. } => {
                self.nodes[i].dog = None;
                return;
            }
            Effect::Shutdown { reason } => {
                self.log(|| format!("{} agent exits: {reason}", self.nodes[i].name));
                self.kill_agent(i);
                self.after(AGENT_RESTART_MS, Ev::AgentStart { node: i });
                return;
            }
        };
        let delay = self.store_latency();
        self.after(delay, Ev::Rpc { node: i, inc, op });
    }

    pub(super) fn rpc_arrives(&mut self, i: usize, inc: u64, op: Op) {
        if !self.store_reachable(i) {
            // The client times out; answer after a while.
            let delay = self.rng.range(200, 1_000);
            self.after(delay, Ev::Lost { node: i, inc, op });
            return;
        }
        let before = self.store.revision();
        let name = self.nodes[i].name.clone();
        let input = match &op {
            Op::Grant { ttl_secs, sent_at } => {
                let (lease, granted) = self.store.grant(self.now, *ttl_secs);
                Some(Input::LeaseGranted {
                    lease: LeaseId(lease),
                    ttl_secs: granted,
                    sent_at: *sent_at,
                })
            }
            Op::Renew { lease, sent_at, .. } => {
                if self.store.keep_alive(self.now, lease.0) {
                    Some(Input::LeaseRenewed {
                        lease: *lease,
                        sent_at: *sent_at,
                    })
                } else {
                    Some(Input::LeaseRenewFailed {
                        lease: *lease,
                        expired: true,
                        error: "lease not found".into(),
                    })
                }
            }
            Op::Revoke { lease } => {
                self.store.revoke(lease.0);
                None
            }
            Op::PutMember { lease, value } => {
                let _ = self.store.put_member(&name, value.clone(), lease.0);
                None
            }
            Op::RaceInitialize => Some(Input::InitializeRaced {
                won: self.store.race_initialize(),
            }),
            Op::CancelInitialize => {
                self.store.cancel_initialize();
                None
            }
            Op::ClearStaleInitialize { mod_revision } => {
                self.store.clear_initialize_at(*mod_revision);
                None
            }
            Op::WriteInitialize { sysid } => {
                self.store.write_initialize(sysid);
                None
            }
            Op::WriteConfig { json } => {
                self.store.write_config_if_absent(json.clone());
                None
            }
            Op::Acquire { lease } => Some(match self.store.acquire_leader(&name, lease.0) {
                Ok(a) => Input::LeaderAcquired {
                    won: a.won,
                    revision: Revision(a.revision),
                    create_revision: Revision(a.create_revision),
                },
                Err(_) => Input::LeaderAcquired {
                    won: false,
                    revision: Revision(0),
                    create_revision: Revision(0),
                },
            }),
            Op::Release {
                lease,
                create_revision,
            } => {
                self.store
                    .release_leader(&name, lease.map(|l| l.0), *create_revision);
                None
            }
            Op::WriteSync {
                seq,
                state,
                expected,
            } => Some(Input::SyncWritten {
                seq: *seq,
                ok: self.store.write_sync(state, *expected),
            }),
            Op::ClearFailover { expected } => {
                self.store.clear_failover(*expected);
                None
            }
            Op::WriteStatus { optime } => {
                self.store.write_status(*optime);
                None
            }
            Op::WriteHistory { entries } => {
                self.store.write_history(entries);
                None
            }
            Op::WriteFailsafe { members } => {
                self.store.write_failsafe(members.as_ref());
                None
            }
        };
        if self.store.revision() != before {
            self.store_changed();
        }
        let delay = self.store_latency();
        self.after(
            delay,
            Ev::Reply {
                node: i,
                inc,
                input,
                op,
            },
        );
    }

    /// A request or its answer was lost: report what the executor reports on an error.
    pub(super) fn rpc_failed(&mut self, i: usize, inc: u64, op: Op) {
        let error = "etcd unreachable".to_string();
        let input = match op {
            Op::Grant { .. } => Input::LeaseGrantFailed { error },
            Op::Renew { lease, give_up, .. } => {
                if self.now + RENEW_RETRY_MS < give_up && self.alive(i, inc) {
                    let sent_at = Instant(self.now + RENEW_RETRY_MS + self.nodes[i].clock_offset);
                    let delay = RENEW_RETRY_MS + self.store_latency();
                    self.after(
                        delay,
                        Ev::Rpc {
                            node: i,
                            inc,
                            op: Op::Renew {
                                lease,
                                sent_at,
                                give_up,
                            },
                        },
                    );
                    return;
                }
                Input::LeaseRenewFailed {
                    lease,
                    expired: false,
                    error,
                }
            }
            Op::RaceInitialize => Input::InitializeRaced { won: false },
            Op::Acquire { .. } => Input::LeaderAcquired {
                won: false,
                revision: Revision(0),
                create_revision: Revision(0),
            },
            Op::WriteSync { seq, .. } => Input::SyncWritten { seq, ok: false },
            _ => return,
        };
        self.at(
            self.now,
            Ev::Deliver {
                node: i,
                inc,
                input,
            },
        );
    }

    pub(super) fn store_changed(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(inc) = self.nodes[i].agent.as_ref().map(|a| a.inc) else {
                continue;
            };
            if self.nodes[i].watch_pending || self.nodes[i].watch_broken {
                continue;
            }
            self.nodes[i].watch_pending = true;
            let delay = self.store_latency();
            self.after(delay, Ev::Watch { node: i, inc });
        }
    }

    /// The watch loop: a view when the store answers, `DcsUnreachable` (and a retry every
    /// 500 ms) when it does not.
    pub(super) fn watch_deliver(&mut self, i: usize, inc: u64) {
        if !self.alive(i, inc) {
            return;
        }
        if self.store_reachable(i) {
            self.nodes[i].watch_broken = false;
            let view = self.store.view();
            self.feed(i, Input::ClusterChanged(view));
        } else {
            let was_broken = self.nodes[i].watch_broken;
            self.nodes[i].watch_broken = true;
            self.feed(
                i,
                Input::DcsUnreachable {
                    error: "watch: etcd unreachable".into(),
                },
            );
            if !was_broken {
                self.after(500, Ev::WatchRetry { node: i, inc });
            }
        }
    }
}
