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

/// Why an operator's time (`schedule`, `scheduled_at`) cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// A date and time without a time zone (Patroni answers 400).
    NoTimeZone,
    /// Not an ISO 8601 date and time (Patroni answers 422).
    Unparsable,
}

/// An ISO 8601 time with a time zone (`2026-12-07T01:00:00+00:00`, what patronictl sends;
/// a space for the `T` is accepted too).
pub fn parse_wall(text: &str) -> Result<time::OffsetDateTime, ScheduleError> {
    use time::format_description::well_known::Iso8601;
    let text = text.trim();
    let normalized = match text.get(10..11) {
        Some(" ") => format!("{}T{}", &text[..10], &text[11..]),
        _ => text.to_string(),
    };
    if let Ok(at) = time::OffsetDateTime::parse(&normalized, &Iso8601::DEFAULT) {
        return Ok(at);
    }
    if time::PrimitiveDateTime::parse(&normalized, &Iso8601::DEFAULT).is_ok() {
        return Err(ScheduleError::NoTimeZone);
    }
    Err(ScheduleError::Unparsable)
}

/// Epoch seconds of a timestamp as PostgreSQL prints `timestamptz` in its ISO style
/// (`2026-12-07 06:49:26.123456+00`); `None` when it is not one.
pub fn epoch_secs_of_pg_timestamp(text: &str) -> Option<f64> {
    let at = parse_wall(text).ok()?;
    Some(at.unix_timestamp() as f64 + f64::from(at.nanosecond()) / 1e9)
}

/// The boot-clock instant at which the wall clock will read (or read) `wall`: what the core
/// compares with its `now`.
pub fn instant_of_wall(wall: time::OffsetDateTime) -> Instant {
    let (boot, now_wall) = (now(), time::OffsetDateTime::now_utc());
    let millis = |d: time::Duration| d.whole_milliseconds().clamp(0, i128::from(u64::MAX)) as u64;
    if wall >= now_wall {
        Instant(boot.0.saturating_add(millis(wall - now_wall)))
    } else {
        Instant(boot.0.saturating_sub(millis(now_wall - wall)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_timestamps_read_as_epoch_seconds() {
        let at = |t| epoch_secs_of_pg_timestamp(t).expect(t);
        assert_eq!(at("2030-01-02 03:04:05+00"), 1_893_553_445.0);
        assert_eq!(at("2030-01-02 03:04:05+01"), 1_893_549_845.0);
        assert_eq!(at("2030-01-02 04:34:05.25+05:30"), 1_893_539_045.25);
        assert_eq!(epoch_secs_of_pg_timestamp("yesterday"), None);
    }

    #[test]
    fn schedules_need_a_time_zone() {
        let at = parse_wall("2030-01-02T03:04:05+01:00").expect("ISO 8601 with an offset");
        assert_eq!(at.unix_timestamp(), 1_893_549_845);
        assert!(parse_wall("2030-01-02 03:04:05.123456+00:00").is_ok());
        assert_eq!(
            parse_wall("2030-01-02T03:04:05"),
            Err(ScheduleError::NoTimeZone)
        );
        assert_eq!(parse_wall("next tuesday"), Err(ScheduleError::Unparsable));
    }

    #[test]
    fn wall_times_map_onto_the_boot_clock() {
        let in_a_minute = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
        let at = instant_of_wall(in_a_minute).0 as i64 - now().0 as i64;
        assert!((59_000..=60_000).contains(&at), "{at}");
        let a_minute_ago = time::OffsetDateTime::now_utc() - time::Duration::seconds(60);
        let at = now().0 as i64 - instant_of_wall(a_minute_ago).0 as i64;
        assert!((60_000..=61_000).contains(&at), "{at}");
    }
}
