//! Runs policy calls off the event loop. One dedicated thread owns the decider (wasmtime
//! stores are not shared between threads); the loop only hands it calls and receives the
//! answers as inputs. A call not answered within the deadline is answered by the native
//! default policy, so neither a stuck guest nor a slow host can hold the agent.

use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::core::{decide_with_default, Input, PolicyAnswer, PolicyCall};

/// Whatever answers policy calls on the policy thread.
pub trait Decider: Send + 'static {
    /// Answer one call (falling back to the default itself when its policy fails).
    fn decide(&mut self, call: &PolicyCall) -> PolicyAnswer;
}

/// The embedded default, natively: used when no policy host is configured.
pub struct NativeDefault;

impl Decider for NativeDefault {
    fn decide(&mut self, call: &PolicyCall) -> PolicyAnswer {
        decide_with_default(call)
    }
}

/// Hands calls to the policy thread and guarantees an answer per call by the deadline.
#[derive(Clone)]
pub struct PolicyRunner {
    calls: mpsc::Sender<Box<PolicyCall>>,
    /// Calls not answered yet: whoever removes a seq first (thread or timer) answers it.
    outstanding: Arc<Mutex<BTreeSet<u64>>>,
    inputs: UnboundedSender<Input>,
    deadline: Duration,
}

impl PolicyRunner {
    /// Start the policy thread.
    pub fn spawn(
        mut decider: impl Decider,
        inputs: UnboundedSender<Input>,
        deadline: Duration,
    ) -> std::io::Result<PolicyRunner> {
        let (calls, received) = mpsc::channel::<Box<PolicyCall>>();
        let outstanding = Arc::new(Mutex::new(BTreeSet::new()));
        let runner = PolicyRunner {
            calls,
            outstanding: outstanding.clone(),
            inputs: inputs.clone(),
            deadline,
        };
        std::thread::Builder::new()
            .name("pgwarden-policy".into())
            .spawn(move || {
                for call in received {
                    let answer = decider.decide(&call);
                    if take(&outstanding, call.seq) {
                        let _ = inputs.send(Input::PolicyDecided(answer));
                    }
                }
            })?;
        Ok(runner)
    }

    /// Submit a call; its answer arrives as `Input::PolicyDecided`.
    pub fn submit(&self, call: Box<PolicyCall>) {
        let seq = call.seq;
        if let Ok(mut outstanding) = self.outstanding.lock() {
            outstanding.insert(seq);
        }
        let backup = call.clone();
        if self.calls.send(call).is_err() {
            tracing::error!("the policy thread is gone; the embedded default decides");
        }
        let outstanding = self.outstanding.clone();
        let inputs = self.inputs.clone();
        let deadline = self.deadline;
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            if take(&outstanding, seq) {
                tracing::warn!(seq, event = backup.event.kind(), ?deadline, "policy call missed its deadline; the embedded default decides");
                let mut answer = decide_with_default(&backup);
                answer.fallback = Some(format!(
                    "no answer within the {} ms deadline",
                    deadline.as_millis()
                ));
                let _ = inputs.send(Input::PolicyDecided(answer));
            }
        });
    }
}

fn take(outstanding: &Mutex<BTreeSet<u64>>, seq: u64) -> bool {
    outstanding
        .lock()
        .map(|mut set| set.remove(&seq))
        .unwrap_or(false)
}
