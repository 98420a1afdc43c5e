//! The core's notion of time: milliseconds on a clock that keeps counting through suspend.
//!
//! The core never reads a clock. The runtime passes `now` with every input, read from
//! CLOCK_BOOTTIME, so a VM suspend or a SIGSTOP shows up as elapsed time and a primary that
//! wakes after its demotion deadline sees the deadline as passed. The simulation fabricates
//! these values freely, which `std::time::Instant` would not allow.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the boot clock, in milliseconds.
#[derive(
    Copy,
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Instant(pub u64);

impl Instant {
    /// Milliseconds elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs.as_millis() as u64))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_sub(rhs.as_millis() as u64))
    }
}
