//! The only place that reads clocks. `now()` is CLOCK_BOOTTIME in milliseconds: it keeps
//! counting while the machine is suspended or the process is stopped, so lease deadlines
//! computed by the core stay honest after a pause.

use crate::core::Instant;

/// Milliseconds on the boot clock.
pub fn now() -> Instant {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => Instant(ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000),
        // CLOCK_BOOTTIME exists on every Linux since 2.6.39; MONOTONIC is the fallback.
        Err(_) => match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
            Ok(ts) => Instant(ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000),
            Err(_) => Instant(0),
        },
    }
}

/// Wall-clock time as ISO 8601 in Patroni's form (`2026-11-25T21:40:00.123456+00:00`), for
/// `/history` and status fields only, never for decisions.
pub fn wall_iso() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// Wall-clock seconds since the epoch (for `dcs_last_seen`).
pub fn wall_epoch_secs() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}
