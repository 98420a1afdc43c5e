//! The watchdog as the core sees it: the configured mode, the timeout arithmetic, what the
//! runtime last reported about the device, and whether it is armed. Pure bookkeeping; the
//! state machine decides when to arm, feed and disarm, the runtime's driver does the IO.
//!
//! Must not touch: the device, clocks (times come from the inputs).

use std::time::Duration;

use super::time::Instant;
use crate::config::{DynamicConfig, WatchdogMode};

/// Local `watchdog:` settings the core decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchdogSettings {
    /// Off, automatic or required.
    pub mode: WatchdogMode,
    /// Device path, for status only (the runtime opens it).
    pub device: String,
    /// Seconds between the device firing and the leader key expiring; `-1` means `ttl / 2`.
    pub safety_margin: i64,
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        WatchdogSettings {
            mode: WatchdogMode::Off,
            device: "/dev/watchdog".into(),
            safety_margin: 5,
        }
    }
}

/// Where the device stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchdogState {
    /// `mode: off`: never opened.
    Off,
    /// Not armed (the node does not lead, or it demoted).
    Disarmed,
    /// An arm request is out; promotion waits for its answer.
    Arming {
        /// Timeout asked for, in seconds.
        timeout_secs: u32,
    },
    /// Open and counting down; fed after every successful lease renewal.
    Armed {
        /// Timeout asked for, in seconds.
        timeout_secs: u32,
        /// What the device reported back (`None`: it cannot tell, e.g. a FIFO).
        device_timeout_secs: Option<u32>,
    },
    /// The last arm failed or the device's timeout was unsafe; not armed.
    Failed {
        /// Why.
        error: String,
    },
}

impl WatchdogState {
    /// Stable name for `/patroni` and logs.
    pub fn name(&self) -> &'static str {
        match self {
            WatchdogState::Off => "off",
            WatchdogState::Disarmed => "disarmed",
            WatchdogState::Arming { .. } => "arming",
            WatchdogState::Armed { .. } => "armed",
            WatchdogState::Failed { .. } => "failed",
        }
    }
}

/// What the driver reports after arming.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArmReport {
    /// Timeout the device reports (WDIOC_GETTIMEOUT), when it supports the ioctl.
    pub device_timeout_secs: Option<u32>,
}

/// The core's record of the watchdog.
#[derive(Clone, Debug)]
pub struct Watchdog {
    /// Local settings.
    pub settings: WatchdogSettings,
    /// Current state.
    pub state: WatchdogState,
    /// The runtime's last check of the device (exists, writable); `None`: not checked yet.
    pub device_check: Option<Result<(), String>>,
    /// When the last keepalive was sent.
    pub last_keepalive: Option<Instant>,
    /// Last keepalive error since the last successful one.
    pub feed_error: Option<String>,
    /// When the state last became `Failed`.
    pub failed_at: Option<Instant>,
}

/// The device timeout for `ttl`: Patroni's `ttl - safety_margin`, `ttl // 2` with margin `-1`.
pub fn timeout_secs(ttl: u32, safety_margin: i64) -> u32 {
    if safety_margin < 0 {
        ttl / 2
    } else {
        let margin = u32::try_from(safety_margin).unwrap_or(u32::MAX);
        ttl.saturating_sub(margin)
    }
}

impl Watchdog {
    /// A watchdog nobody has touched yet.
    pub fn new(settings: WatchdogSettings) -> Watchdog {
        let state = if settings.mode == WatchdogMode::Off {
            WatchdogState::Off
        } else {
            WatchdogState::Disarmed
        };
        Watchdog {
            settings,
            state,
            device_check: None,
            last_keepalive: None,
            feed_error: None,
            failed_at: None,
        }
    }

    /// A device check succeeded at `now`: a failed arm older than `retry_after` may be
    /// tried again (sooner would churn the leader key on every loop while it keeps failing).
    pub fn device_checked_ok(&mut self, now: Instant, retry_after: Duration) {
        self.device_check = Some(Ok(()));
        let stale = self
            .failed_at
            .is_none_or(|at| now.saturating_since(at) >= retry_after);
        if matches!(self.state, WatchdogState::Failed { .. }) && stale {
            self.state = WatchdogState::Disarmed;
        }
    }

    /// Whether the mode asks for a watchdog at all.
    pub fn enabled(&self) -> bool {
        self.settings.mode != WatchdogMode::Off
    }

    /// `mode: required`.
    pub fn required(&self) -> bool {
        self.settings.mode == WatchdogMode::Required
    }

    /// The timeout to arm with under `config`, or why the timing makes the watchdog unusable
    /// (Patroni: the device must not fire between two loops of a healthy leader).
    pub fn timeout_for(&self, config: &DynamicConfig) -> Result<u32, String> {
        let timeout = timeout_secs(config.ttl, self.settings.safety_margin);
        if timeout == 0 || timeout < config.loop_wait {
            return Err(format!(
                "watchdog timeout {timeout} s (ttl {} - safety_margin {}) is below loop_wait {} s",
                config.ttl, self.settings.safety_margin, config.loop_wait
            ));
        }
        Ok(timeout)
    }

    /// Why a node with `mode: required` may not lead now; `None` when it may (or the mode
    /// is not required). An unchecked device counts as unusable: safe until proven usable.
    pub fn required_but_unusable(&self, config: &DynamicConfig) -> Option<String> {
        if !self.required() {
            return None;
        }
        if let Err(why) = self.timeout_for(config) {
            return Some(why);
        }
        if let WatchdogState::Failed { error } = &self.state {
            return Some(format!("the last arm failed: {error}"));
        }
        match &self.device_check {
            None => Some(format!("device {} not checked yet", self.settings.device)),
            Some(Err(error)) => Some(error.clone()),
            Some(Ok(())) => None,
        }
    }

    /// Whether the device is armed or being armed (it must be disarmed when leadership ends).
    pub fn is_armed(&self) -> bool {
        matches!(
            self.state,
            WatchdogState::Armed { .. } | WatchdogState::Arming { .. }
        )
    }

    /// Judge an arm report against what was asked (Patroni's rules): a device that fires
    /// later than asked is unsafe for `required`; one that fires sooner than `loop_wait`
    /// would reset a healthy leader. `Err` says why the device must be disarmed again.
    pub fn judge_arm(
        &self,
        requested: u32,
        report: &ArmReport,
        loop_wait: u32,
    ) -> Result<(), String> {
        match report.device_timeout_secs {
            Some(actual) if actual > requested && self.required() => Err(format!(
                "device timeout {actual} s is longer than the requested {requested} s"
            )),
            Some(actual) if actual < loop_wait => Err(format!(
                "device timeout {actual} s is below loop_wait {loop_wait} s"
            )),
            _ => Ok(()),
        }
    }

    /// Age of the last keepalive at `now`.
    pub fn keepalive_age(&self, now: Instant) -> Option<Duration> {
        self.last_keepalive.map(|t| now.saturating_since(t))
    }
}

/// The watchdog part of `NodeStatus`.
#[derive(Clone, Debug)]
pub struct WatchdogStatus {
    /// Configured mode.
    pub mode: WatchdogMode,
    /// Device path.
    pub device: String,
    /// Current state.
    pub state: WatchdogState,
    /// Timeout for the current `ttl`, when usable.
    pub timeout_secs: Option<u32>,
    /// Age of the last keepalive.
    pub last_keepalive_age: Option<Duration>,
    /// `required` and unusable: why this node may not lead (Patroni's `watchdog_failed`).
    pub failed: Option<String>,
    /// Last problem seen (arm, check or keepalive), for operators.
    pub last_error: Option<String>,
}

impl Watchdog {
    /// The status snapshot at `now` under `config`.
    pub fn status(&self, now: Instant, config: &DynamicConfig) -> WatchdogStatus {
        let last_error = match (&self.state, &self.device_check, &self.feed_error) {
            (WatchdogState::Failed { error }, _, _) => Some(error.clone()),
            (_, _, Some(error)) => Some(error.clone()),
            (_, Some(Err(error)), _) if self.enabled() => Some(error.clone()),
            _ => None,
        };
        // A device that is not in use but fails its check shows as failed: that is what
        // an operator needs to see before this node is ever asked to lead.
        let state = match (&self.state, &self.device_check) {
            (WatchdogState::Disarmed, Some(Err(error))) => WatchdogState::Failed {
                error: error.clone(),
            },
            (state, _) => state.clone(),
        };
        WatchdogStatus {
            mode: self.settings.mode,
            device: self.settings.device.clone(),
            state,
            timeout_secs: self.timeout_for(config).ok().filter(|_| self.enabled()),
            last_keepalive_age: self.keepalive_age(now),
            failed: self.required_but_unusable(config),
            last_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ttl: u32, loop_wait: u32) -> DynamicConfig {
        DynamicConfig {
            ttl,
            loop_wait,
            ..DynamicConfig::default()
        }
    }

    fn watchdog(mode: WatchdogMode, safety_margin: i64) -> Watchdog {
        Watchdog::new(WatchdogSettings {
            mode,
            device: "/dev/watchdog".into(),
            safety_margin,
        })
    }

    #[test]
    fn timeout_is_ttl_minus_margin_or_half_the_ttl() {
        assert_eq!(timeout_secs(30, 5), 25);
        assert_eq!(timeout_secs(30, -1), 15);
        assert_eq!(timeout_secs(6, 5), 1);
        assert_eq!(timeout_secs(6, 10), 0);
        let w = watchdog(WatchdogMode::Automatic, 5);
        assert_eq!(w.timeout_for(&config(30, 10)), Ok(25));
        assert!(
            w.timeout_for(&config(12, 10)).is_err(),
            "7 s < loop_wait 10 s"
        );
        assert!(w.timeout_for(&config(5, 1)).is_err(), "0 s");
    }

    #[test]
    fn required_is_unusable_until_the_device_checked_out() {
        let mut w = watchdog(WatchdogMode::Required, -1);
        let c = config(6, 1);
        assert!(w.required_but_unusable(&c).is_some());
        w.device_check = Some(Err("no such file".into()));
        assert_eq!(w.required_but_unusable(&c).as_deref(), Some("no such file"));
        w.device_check = Some(Ok(()));
        assert_eq!(w.required_but_unusable(&c), None);
        w.state = WatchdogState::Failed {
            error: "ENXIO".into(),
        };
        assert!(w.required_but_unusable(&c).is_some());
        let automatic = watchdog(WatchdogMode::Automatic, -1);
        assert_eq!(automatic.required_but_unusable(&c), None);
    }

    #[test]
    fn a_longer_device_timeout_is_refused_only_when_required() {
        let report = ArmReport {
            device_timeout_secs: Some(60),
        };
        assert!(watchdog(WatchdogMode::Required, 5)
            .judge_arm(25, &report, 10)
            .is_err());
        assert!(watchdog(WatchdogMode::Automatic, 5)
            .judge_arm(25, &report, 10)
            .is_ok());
        let short = ArmReport {
            device_timeout_secs: Some(5),
        };
        assert!(watchdog(WatchdogMode::Automatic, 5)
            .judge_arm(25, &short, 10)
            .is_err());
        let unknown = ArmReport {
            device_timeout_secs: None,
        };
        assert!(watchdog(WatchdogMode::Required, 5)
            .judge_arm(25, &unknown, 10)
            .is_ok());
    }
}
