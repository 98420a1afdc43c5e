//! The agent loop's inbox: every input, with the effect whose work produced it.
//!
//! An effect's result comes back as a later input (`AcquireLeader` → `LeaderAcquired`), so a
//! failover is a chain of inputs, each handled on its own. Each input carries the span of
//! the effect that caused it, taken from where it is sent: the loop links the input's span
//! to it (an OpenTelemetry span link) and the decision log records the decision that caused
//! it, so "why" can follow the chain back. Inputs from the lock store's watch, signals and
//! REST requests have no cause.

use tokio::sync::mpsc;

use crate::core::Input;

/// The name of the spans that can cause an input (`runtime::turn`).
pub const EFFECT_SPAN: &str = "pgwarden.effect";

/// An input, with the span of the effect it reports on.
#[derive(Debug)]
pub struct Sourced {
    /// The input.
    pub input: Input,
    /// The effect's span (kept open until the input is handled, so a link can name it).
    pub cause: Option<tracing::Span>,
}

/// The receiving end, read by the agent's loop.
pub type InputReceiver = mpsc::UnboundedReceiver<Sourced>;

/// A sender of inputs to the agent's loop (cheap to clone).
#[derive(Clone, Debug)]
pub struct InputSender(mpsc::UnboundedSender<Sourced>);

/// The loop is gone: nothing will handle the input.
#[derive(Debug, thiserror::Error)]
#[error("the agent's loop stopped")]
pub struct LoopStopped;

impl InputSender {
    /// A new inbox.
    pub fn channel() -> (InputSender, InputReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (InputSender(tx), rx)
    }

    /// Send `input`, caused by the effect whose span is current (when one is).
    pub fn send(&self, input: Input) -> Result<(), LoopStopped> {
        let current = tracing::Span::current();
        let cause = current
            .metadata()
            .is_some_and(|m| m.name() == EFFECT_SPAN)
            .then_some(current);
        if let Some(span) = &cause {
            span.record("pgwarden.outcome", input.outcome());
        }
        self.send_caused(input, cause)
    }

    /// Send `input`, caused by the effect of `cause` (a span carried to where the work
    /// finished).
    pub fn send_caused(
        &self,
        input: Input,
        cause: Option<tracing::Span>,
    ) -> Result<(), LoopStopped> {
        self.0
            .send(Sourced { input, cause })
            .map_err(|_| LoopStopped)
    }
}
