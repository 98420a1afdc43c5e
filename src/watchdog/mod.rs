//! The Linux watchdog driver: opens the device (`/dev/watchdog`, or a FIFO or file in
//! tests), sets and reads its timeout, sends keepalives and disarms it with the magic close.
//! It executes what the core decided (`ArmWatchdog`, `FeedWatchdog`, `DisarmWatchdog`,
//! `CheckWatchdog`) and decides nothing itself: when to arm, and whether a device is safe
//! enough, is the core's business (`core::watchdog`).

mod device;
mod ioctl;

pub use device::{check_device, Armed, TimeoutSupport, WatchdogDevice};

use std::path::PathBuf;

/// A watchdog operation that failed, naming the device and the operation.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// Opening a FIFO for writing without blocking fails while nobody reads it.
    #[error("open watchdog device {path} for writing: no reader has it open (ENXIO; a FIFO needs its reader first)")]
    NoReader {
        /// The device.
        path: PathBuf,
    },
    /// Any other IO failure.
    #[error("{op} on watchdog device {path}: {source}")]
    Io {
        /// The device.
        path: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// An ioctl failed for a reason other than "not supported".
    #[error("{op} on watchdog device {path}: {source}")]
    Ioctl {
        /// The device.
        path: PathBuf,
        /// Which ioctl.
        op: &'static str,
        /// The OS error.
        source: nix::Error,
    },
    /// A keepalive was asked for while the device is closed.
    #[error("keepalive on watchdog device {path}: it is not armed")]
    NotArmed {
        /// The device.
        path: PathBuf,
    },
    /// The path exists but cannot serve as a watchdog.
    #[error("watchdog device {path}: {why}")]
    Unusable {
        /// The device.
        path: PathBuf,
        /// Why.
        why: String,
    },
}
