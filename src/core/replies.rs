//! Which standbys still answer the primary: a standby cut off by a partition stays
//! "streaming" in `pg_stat_replication` until `wal_sender_timeout` (60 s by default) closes
//! its connection, and a synchronous one stalls every commit that long. Its
//! `reply_time` stops moving at once, so a standby whose reply time has not changed for
//! [`reply_timeout`] is not offered as synchronous any more.
//!
//! Why the agent's clock and not `now() - reply_time`: `reply_time` is the standby's send
//! time, read on the standby's clock. A standby whose clock runs half a minute behind would
//! look silent forever and quietly lose synchronous replication. Only a change of the value
//! is used, timed on the primary agent's own clock, so clock skew between hosts cannot move
//! the verdict.
//!
//! Must not touch: IO or clocks (the time comes from the agent).

use std::collections::BTreeMap;
use std::time::Duration;

use super::time::Instant;
use super::view::ReplicationPeer;

/// PostgreSQL's unit-less `wal_receiver_status_interval` is in seconds.
const STATUS_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Status messages a standby may miss before it counts as silent.
const MISSED_REPLIES: u32 = 4;
/// Never judge a standby on less than this: a busy host can delay a walreceiver a few
/// seconds without anything being wrong with the link.
const TIMEOUT_FLOOR: Duration = Duration::from_secs(5);

/// The last reply time of each standby and when the agent first saw that value.
#[derive(Clone, Debug, Default)]
pub struct StandbyReplies {
    /// By connection (name, walsender pid): a standby that reconnects while its old
    /// walsender lingers has two rows under one name, each with its own reply time.
    seen: BTreeMap<(String, Option<i32>), (Option<String>, Instant)>,
    /// When the latest rows were taken. Silence is measured up to here, not to the time of
    /// a decision: a cycle run between probes has no news of replies and must not count
    /// the time since the last probe as silence.
    observed_at: Instant,
}

impl StandbyReplies {
    /// Record a probe's `pg_stat_replication` rows taken at `now`. Standbys that left the
    /// view are forgotten: one that reconnects starts a fresh clock.
    pub fn observe(&mut self, rows: &[ReplicationPeer], now: Instant) {
        self.observed_at = now;
        self.seen.retain(|(name, pid), _| {
            rows.iter()
                .any(|r| &r.application_name == name && r.pid == *pid)
        });
        for row in rows {
            let key = (row.application_name.clone(), row.pid);
            match self.seen.get_mut(&key) {
                Some((last, since)) if *last != row.reply_time => {
                    *last = row.reply_time.clone();
                    *since = now;
                }
                Some(_) => {}
                None => {
                    self.seen.insert(key, (row.reply_time.clone(), now));
                }
            }
        }
    }

    /// How long `row`'s reply time had stood still at the latest probe (zero if never
    /// seen).
    pub fn silent_for(&self, row: &ReplicationPeer) -> Duration {
        self.seen
            .get(&(row.application_name.clone(), row.pid))
            .map(|(_, since)| self.observed_at.saturating_since(*since))
            .unwrap_or_default()
    }

    /// Whether `row` is a standby streaming and answering within `timeout` (`None`: replies
    /// are not judged).
    pub fn is_live(&self, row: &ReplicationPeer, timeout: Option<Duration>) -> bool {
        row.state == "streaming" && timeout.is_none_or(|t| self.silent_for(row) <= t)
    }

    /// Whether `name` has rows in `rows` and every one of them is live.
    pub fn name_is_live(
        &self,
        rows: &[ReplicationPeer],
        name: &str,
        timeout: Option<Duration>,
    ) -> bool {
        let mut mine = rows
            .iter()
            .filter(|r| r.application_name == name)
            .peekable();
        mine.peek().is_some() && mine.all(|r| self.is_live(r, timeout))
    }
}

/// How long a standby's reply time may stand still before it is silent: four of its status
/// intervals, at least five seconds. `None` when the interval is 0 (periodic replies off,
/// so an idle standby never replies and silence says nothing).
pub fn reply_timeout(wal_receiver_status_interval: Option<&str>) -> Option<Duration> {
    let interval = match wal_receiver_status_interval {
        None => STATUS_INTERVAL_DEFAULT,
        Some(text) => parse_seconds_setting(text).unwrap_or(STATUS_INTERVAL_DEFAULT),
    };
    if interval.is_zero() {
        return None;
    }
    Some((interval * MISSED_REPLIES).max(TIMEOUT_FLOOR))
}

/// A PostgreSQL time setting whose base unit is seconds (`10`, `10s`, `500ms`, `1min`).
fn parse_seconds_setting(text: &str) -> Option<Duration> {
    let text = text.trim().trim_matches('\'');
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let per_unit_ms = match unit.trim() {
        "" | "s" => 1_000.0,
        "ms" => 1.0,
        "us" => 0.001,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(Duration::from_millis((number * per_unit_ms).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, reply: Option<&str>) -> ReplicationPeer {
        ReplicationPeer {
            pid: Some(100),
            application_name: name.into(),
            state: "streaming".into(),
            sync_state: "sync".into(),
            flush_lsn: None,
            replay_lsn: None,
            usename: None,
            client_addr: None,
            sync_priority: 1,
            reply_time: reply.map(str::to_string),
        }
    }

    #[test]
    fn a_standby_is_silent_from_the_first_probe_that_saw_its_reply_time() {
        let mut replies = StandbyReplies::default();
        let timeout = Some(Duration::from_secs(5));
        replies.observe(&[row("a", Some("t1"))], Instant(1_000));
        replies.observe(&[row("a", Some("t2"))], Instant(2_000));
        // t2 stands still from 2 s on.
        replies.observe(&[row("a", Some("t2"))], Instant(7_000));
        assert!(replies.is_live(&row("a", Some("t2")), timeout));
        replies.observe(&[row("a", Some("t2"))], Instant(7_001));
        assert!(!replies.is_live(&row("a", Some("t2")), timeout));
        assert_eq!(
            replies.silent_for(&row("a", Some("t2"))),
            Duration::from_millis(5_001)
        );
        // A reply brings it back.
        replies.observe(&[row("a", Some("t3"))], Instant(8_000));
        assert!(replies.is_live(&row("a", Some("t3")), timeout));
    }

    #[test]
    fn a_standby_that_reconnects_starts_a_fresh_clock() {
        let mut replies = StandbyReplies::default();
        replies.observe(&[row("a", Some("t1"))], Instant(0));
        replies.observe(&[], Instant(10_000));
        replies.observe(&[row("a", Some("t1"))], Instant(20_000));
        replies.observe(&[row("a", Some("t1"))], Instant(21_000));
        assert_eq!(
            replies.silent_for(&row("a", Some("t1"))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_lingering_dead_connection_makes_its_name_not_live() {
        // The standby reconnected (pid 200) while the old walsender (pid 100) lingers.
        let mut replies = StandbyReplies::default();
        let timeout = Some(Duration::from_secs(5));
        let old = row("a", Some("t1"));
        let mut new = row("a", Some("n1"));
        new.pid = Some(200);
        replies.observe(&[old.clone(), new.clone()], Instant(0));
        new.reply_time = Some("n2".into());
        replies.observe(&[old.clone(), new.clone()], Instant(6_000));
        assert!(replies.is_live(&new, timeout));
        assert!(!replies.is_live(&old, timeout));
        assert!(!replies.name_is_live(&[old.clone(), new.clone()], "a", timeout));
        // Once the old walsender is gone the name is live again.
        new.reply_time = Some("n3".into());
        replies.observe(std::slice::from_ref(&new), Instant(7_000));
        assert!(replies.name_is_live(std::slice::from_ref(&new), "a", timeout));
        assert!(
            !replies.name_is_live(&[new], "b", timeout),
            "no row, not live"
        );
    }

    #[test]
    fn a_standby_that_never_replied_is_silent_after_the_timeout() {
        let mut replies = StandbyReplies::default();
        replies.observe(&[row("a", None)], Instant(0));
        replies.observe(&[row("a", None)], Instant(5_001));
        let timeout = Some(Duration::from_secs(5));
        assert!(!replies.is_live(&row("a", None), timeout));
        // Replies not judged: streaming is enough.
        assert!(replies.is_live(&row("a", None), None));
    }

    #[test]
    fn a_row_that_is_not_streaming_is_never_live() {
        let replies = StandbyReplies::default();
        let mut catchup = row("a", Some("t"));
        catchup.state = "catchup".into();
        assert!(!replies.is_live(&catchup, None));
    }

    #[test]
    fn the_timeout_is_four_status_intervals_at_least_five_seconds() {
        assert_eq!(reply_timeout(None), Some(Duration::from_secs(5)));
        assert_eq!(reply_timeout(Some("1s")), Some(Duration::from_secs(5)));
        assert_eq!(reply_timeout(Some("10")), Some(Duration::from_secs(40)));
        assert_eq!(reply_timeout(Some("10s")), Some(Duration::from_secs(40)));
        assert_eq!(reply_timeout(Some("2500ms")), Some(Duration::from_secs(10)));
        assert_eq!(reply_timeout(Some("1min")), Some(Duration::from_secs(240)));
        assert_eq!(reply_timeout(Some("0")), None);
        // Unreadable: PostgreSQL would refuse it; judge on our default meanwhile.
        assert_eq!(reply_timeout(Some("soon")), Some(Duration::from_secs(5)));
    }
}
