//! Recorded runs of the core, and their replay. The core is a function of its settings and
//! of the sequence of (now, input) it is fed, so a run recorded on a real node
//! (`pgwarden.input_log`) can be fed again to a fresh `Node` and must produce the same
//! effects and transitions, in the same order. A replay that differs names the first input
//! where it did: either the core is not deterministic (a bug) or the code changed what it
//! decides for that history, which is how a behaviour change is found on a real incident.
//!
//! One JSON object per line ([`Record`]). A record without an input starts a run (the
//! agent started: `Node::new` at `at`); every other one is an input and what the core did
//! in answer. A trailing partial line (the agent was writing it) is ignored.
//!
//! Inputs are read back with serde, except the result of a promotion: its action carries a
//! [`PromotionPermit`](super::safety::PromotionPermit), which only the invariant gate can
//! make, so the replay takes the promotion the replayed core has in flight, after checking
//! it carries the recorded fencing token.

use serde::{Deserialize, Serialize};

use super::effect::{Effect, PgAction};
use super::input::{Input, PgActionOutcome};
use super::time::Instant;
use super::why::TransitionRecord;
use super::{Node, NodeSettings};

/// One line of a recorded run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the input was handled; for the first record of a run, when the node was made.
    pub at: Instant,
    /// The input as serde writes it (`None`: a run starts here).
    pub input: Option<serde_json::Value>,
    /// The effects the core emitted in answer, as `Debug` prints them.
    pub effects: Vec<String>,
    /// The transitions made in answer (`TransitionRecord::summary`).
    pub transitions: Vec<String>,
}

impl Record {
    /// The record of a run starting at `at`.
    pub fn start(at: Instant) -> Record {
        Record {
            at,
            ..Record::default()
        }
    }

    /// The record of `input` handled at `at` (its effects and transitions follow).
    pub fn input(at: Instant, input: &Input) -> Record {
        Record {
            at,
            // Serializing plain data into a Value cannot fail (no map with non-string keys).
            input: Some(serde_json::to_value(input).unwrap_or(serde_json::Value::Null)),
            ..Record::default()
        }
    }

    /// Note an effect emitted in answer.
    pub fn effect(&mut self, effect: &Effect) {
        self.effects.push(format!("{effect:?}"));
    }

    /// Note a transition made in answer.
    pub fn transition(&mut self, transition: &TransitionRecord) {
        self.transitions.push(transition.summary());
    }
}

impl TransitionRecord {
    /// `from -> to (why-code)`: what a replay compares.
    pub fn summary(&self) -> String {
        format!("{} -> {} ({})", self.from, self.to, self.why.code())
    }
}

/// Why a recorded run could not be replayed, or where the replay differed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReplayError {
    /// A line is not a record.
    #[error("line {line}: not a record: {error}")]
    Unreadable {
        /// 1-based line number.
        line: usize,
        /// What serde said.
        error: String,
    },
    /// The log does not start with the start of a run.
    #[error("line {line}: an input before any run started")]
    NoRun {
        /// 1-based line number.
        line: usize,
    },
    /// A promotion finished that the replayed core does not have in flight with the same
    /// fencing token.
    #[error("line {line}: a promotion finished but the replay has {in_flight} in flight")]
    PromotionNotInFlight {
        /// 1-based line number.
        line: usize,
        /// What the replay has in flight.
        in_flight: String,
    },
    /// The replayed core did something else.
    #[error("line {line}: the replay differs after {input}:\n  recorded: {recorded:?}\n  replayed: {replayed:?}")]
    Diverged {
        /// 1-based line number.
        line: usize,
        /// The input, shortened.
        input: String,
        /// What the record says (effects, then transitions).
        recorded: Vec<String>,
        /// What the replay did.
        replayed: Vec<String>,
    },
}

/// What a replay went through.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Runs (agent starts) replayed.
    pub runs: usize,
    /// Inputs fed.
    pub inputs: usize,
    /// Effects compared.
    pub effects: usize,
    /// Every transition made, in order.
    pub transitions: Vec<String>,
}

/// Feed every run of `log` to a fresh node made with `settings`, comparing what it does
/// with what was recorded.
pub fn replay(settings: &NodeSettings, log: &str) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport::default();
    let mut node: Option<Node> = None;
    // Only complete lines: the last one may still be being written.
    let complete = match log.rfind('\n') {
        Some(end) => &log[..=end],
        None => "",
    };
    for (index, text) in complete.lines().enumerate() {
        let line = index + 1;
        if text.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(text).map_err(|e| ReplayError::Unreadable {
            line,
            error: e.to_string(),
        })?;
        let (label, node) = match &record.input {
            None => {
                report.runs += 1;
                (
                    "the start".to_string(),
                    node.insert(Node::new(settings.clone(), record.at)),
                )
            }
            Some(value) => {
                let node = node.as_mut().ok_or(ReplayError::NoRun { line })?;
                let input = decode(value, node, line)?;
                let label = short(value);
                report.inputs += 1;
                node.handle_input(record.at, input);
                (label, node)
            }
        };
        let mut replayed = Record::default();
        for t in node.take_transitions() {
            replayed.transition(&t);
        }
        while let Some(effect) = node.poll_effect() {
            replayed.effect(&effect);
            if matches!(effect, Effect::Shutdown { .. }) {
                break; // the agent stops here: nothing after it was taken
            }
        }
        if replayed.effects != record.effects || replayed.transitions != record.transitions {
            return Err(ReplayError::Diverged {
                line,
                input: label,
                recorded: [record.effects, record.transitions].concat(),
                replayed: [replayed.effects, replayed.transitions].concat(),
            });
        }
        report.effects += replayed.effects.len();
        report.transitions.extend(replayed.transitions);
    }
    Ok(report)
}

/// The input a record holds, with a finished promotion taken from the node.
fn decode(value: &serde_json::Value, node: &Node, line: usize) -> Result<Input, ReplayError> {
    let unreadable = |e: serde_json::Error| ReplayError::Unreadable {
        line,
        error: e.to_string(),
    };
    let finished = value.get("PgActionFinished");
    let Some(promote) = finished.and_then(|f| f.get("action")?.get("Promote")) else {
        return serde_json::from_value(value.clone()).map_err(unreadable);
    };
    let outcome: PgActionOutcome = serde_json::from_value(
        finished
            .and_then(|f| f.get("outcome"))
            .cloned()
            .unwrap_or_default(),
    )
    .map_err(unreadable)?;
    let recorded_token = (
        promote.pointer("/permit/lease").and_then(|v| v.as_i64()),
        promote
            .pointer("/permit/leader_revision")
            .and_then(|v| v.as_i64()),
    );
    match node.action_in_flight() {
        Some(action @ PgAction::Promote { permit, .. })
            if recorded_token == (Some(permit.lease().0), Some(permit.leader_revision().0)) =>
        {
            Ok(Input::PgActionFinished {
                action: action.clone(),
                outcome,
            })
        }
        other => Err(ReplayError::PromotionNotInFlight {
            line,
            in_flight: format!("{other:?}"),
        }),
    }
}

/// The input's variant name, for messages.
fn short(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(name) => name.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::LeaseId;
    use crate::core::view::{DataDir, PgObservation};

    fn settings() -> NodeSettings {
        let config = crate::config::DynamicConfig {
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            ..Default::default()
        };
        NodeSettings {
            name: "node1".into(),
            failover_priority: 1,
            watchdog: Default::default(),
            use_pg_rewind: None,
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
            demotion_margin: std::time::Duration::from_secs(1),
            unresponsive_primary_timeout: std::time::Duration::from_secs(5),
            tags: Default::default(),
            bootstrap_config: config,
            policy_params: Default::default(),
            custom_bootstrap_method: None,
        }
    }

    /// Runs `inputs` through a node as the runtime does and returns the log it writes.
    fn record(inputs: &[(u64, Input)]) -> String {
        let mut node = Node::new(settings(), Instant(0));
        let mut pending = Record::start(Instant(0));
        let mut log = String::new();
        let take = |node: &mut Node, record: &mut Record| {
            for t in node.take_transitions() {
                record.transition(&t);
            }
            while let Some(effect) = node.poll_effect() {
                record.effect(&effect);
            }
        };
        take(&mut node, &mut pending);
        for (at, input) in inputs {
            log.push_str(&serde_json::to_string(&pending).expect("record"));
            log.push('\n');
            pending = Record::input(Instant(*at), input);
            node.handle_input(Instant(*at), input.clone());
            take(&mut node, &mut pending);
        }
        log.push_str(&serde_json::to_string(&pending).expect("record"));
        log.push('\n');
        log
    }

    fn bootstrap_inputs() -> Vec<(u64, Input)> {
        vec![
            (0, Input::ClusterChanged(Default::default())),
            (
                5,
                Input::LeaseGranted {
                    lease: LeaseId(7),
                    ttl_secs: 6,
                    sent_at: Instant(5),
                },
            ),
            (
                10,
                Input::PostgresProbed(PgObservation {
                    data_dir: DataDir::Empty,
                    postmaster_alive: false,
                    server: None,
                    silent: false,
                }),
            ),
            (20, Input::InitializeRaced { won: true }),
            (1_000, Input::Tick),
        ]
    }

    #[test]
    fn a_recorded_run_replays_to_the_same_effects_and_a_changed_one_is_found() {
        let log = record(&bootstrap_inputs());
        let report = replay(&settings(), &log).expect("the same core does the same");
        assert_eq!(report.runs, 1);
        assert_eq!(report.inputs, 5);
        assert!(report.effects >= 4, "{report:?}");
        assert!(
            report
                .transitions
                .iter()
                .any(|t| t.starts_with("starting -> bootstrapping")),
            "{report:?}"
        );
        // A partial last line (being written) is ignored.
        let partial = format!("{log}{{\"at\":");
        assert_eq!(replay(&settings(), &partial), Ok(report));
        // A core that decides otherwise is caught at the first input where it does.
        let tampered = log.replacen("RaceInitialize", "RaceInitialise", 1);
        assert!(
            matches!(
                replay(&settings(), &tampered),
                Err(ReplayError::Diverged { line: 4, .. })
            ),
            "{:?}",
            replay(&settings(), &tampered)
        );
        // So is another node's configuration (a lower priority changes nothing here, a
        // different ttl changes the lease it asks for).
        let mut other = settings();
        other.bootstrap_config.ttl = 8;
        assert!(matches!(
            replay(&other, &log),
            Err(ReplayError::Diverged { .. })
        ));
        assert_eq!(
            replay(
                &settings(),
                "{\"at\":1,\"input\":\"Tick\",\"effects\":[],\"transitions\":[]}\n"
            ),
            Err(ReplayError::NoRun { line: 1 })
        );
    }

    #[test]
    fn a_promotion_result_is_taken_from_the_replayed_core_never_from_the_log() {
        let log = "{\"at\":0,\"input\":null,\"effects\":[],\"transitions\":[]}\n\
            {\"at\":1,\"input\":{\"PgActionFinished\":{\"action\":{\"Promote\":{\"permit\":{\"lease\":7,\"leader_revision\":3},\"sync_standbys\":null}},\"outcome\":{\"Done\":{\"sysid\":null}}}},\"effects\":[],\"transitions\":[]}\n";
        match replay(&settings(), log) {
            Err(ReplayError::PromotionNotInFlight { line: 2, .. }) => {}
            other => panic!("a permit was read from the log: {other:?}"),
        }
    }
}
