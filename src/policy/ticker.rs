//! The epoch ticker: a background thread that advances a wasmtime engine's epoch every
//! [`TICK`], which is what turns a call's wall-time timeout into an epoch deadline. It stops
//! (and is joined) when the ticker is dropped.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Period of the epoch ticker.
pub const TICK: Duration = Duration::from_millis(1);

/// The largest deadline handed to wasmtime (about 146 000 years of 1 ms ticks).
pub const MAX_DEADLINE_TICKS: u64 = u64::MAX / 4;

/// A running ticker; dropping it stops the thread.
pub struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Start ticking `engine`'s epoch.
    pub fn start(engine: wasmtime::Engine) -> std::io::Result<EpochTicker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                // Any message, or the sender's drop, stops it.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Epoch deadline (in ticks) that lets a call run for at least `timeout`: a deadline of
    /// N ticks fires between N−1 and N periods from now, so one tick is added, and N ≥ 2
    /// (a deadline of 1 races the ticker). Capped at [`MAX_DEADLINE_TICKS`] so adding it to
    /// the current epoch cannot overflow.
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        let tick = TICK.as_nanos().max(1);
        let ticks = timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks)
            .unwrap_or(MAX_DEADLINE_TICKS)
            .saturating_add(1)
            .clamp(2, MAX_DEADLINE_TICKS)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the policy epoch ticker thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_cover_the_timeout_and_are_at_least_two_ticks() {
        assert_eq!(EpochTicker::deadline_ticks(Duration::ZERO), 2);
        assert_eq!(EpochTicker::deadline_ticks(Duration::from_micros(10)), 2);
        assert_eq!(EpochTicker::deadline_ticks(Duration::from_millis(20)), 21);
        assert_eq!(
            EpochTicker::deadline_ticks(Duration::from_micros(20_500)),
            22
        );
        assert_eq!(
            EpochTicker::deadline_ticks(Duration::MAX),
            MAX_DEADLINE_TICKS
        );
    }
}
