//! The watchdog on real clusters (etcd + PostgreSQL 15 + pgwarden on loopback). This machine
//! has no `/dev/watchdog`, so a node's `watchdog.device` is a FIFO in its dir: a test thread
//! holds the read end and records every byte (`1` keepalive, `V` magic close) and every close
//! of the writer, with the wall time it saw them. The driver's ioctls fail there with ENOTTY,
//! which the agent handles.
//!
//! Scenarios never overlap (two cores: concurrent clusters break lease timing). Run with
//! `cargo test --test watchdog`. On failure the harness prints the agents' logs and the DCS
//! keys; `PGWARDEN_KEEP_TEST_DIRS=1` keeps the node dirs.

use pgwarden_testkit as support;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::Value;
use support::process::give_to_runner;
use support::shared::{
    exclusive, BOOTSTRAP_TIMEOUT, FAILOVER_TIMEOUT, REJOIN_TIMEOUT, REPLICATION_TIMEOUT,
    SHORT_TIMEOUT,
};
use support::{wait_check, wait_until, Cluster};

/// What the reader of a FIFO saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Byte(u8),
    /// The last writer closed its end.
    WriterClosed,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    at: SystemTime,
    seen: Seen,
}

/// A FIFO standing in for `/dev/watchdog`, with a thread recording what the agent writes.
struct FifoRecorder {
    events: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn open_reader(path: &Path) -> File {
    // Non-blocking, so the open does not wait for a writer and reads never hang.
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for reading: {e}", path.display()))
}

impl FifoRecorder {
    /// Create the FIFO at `path` (owned by the agent user) and start reading it.
    fn start(path: &Path) -> FifoRecorder {
        nix::unistd::mkfifo(
            path,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
        give_to_runner(path);
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = open_reader(path);
        let thread = {
            let (events, stop, path) = (events.clone(), stop.clone(), path.to_path_buf());
            std::thread::spawn(move || record(reader, &path, &events, &stop))
        };
        FifoRecorder {
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count(&self, seen: Seen) -> usize {
        self.events().iter().filter(|e| e.seen == seen).count()
    }
}

impl Drop for FifoRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reader loop. A poll with a timeout (so `stop` is noticed) waits for data or for the
/// writer to close; after a close the FIFO is reopened (the new end first, so a reader is
/// always there for the agent's non-blocking open) because a FIFO whose writer left reports
/// POLLHUP until one comes back.
fn record(mut reader: File, path: &Path, events: &Mutex<Vec<Event>>, stop: &AtomicBool) {
    let push = |seen: Seen| {
        events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Event {
                at: SystemTime::now(),
                seen,
            })
    };
    while !stop.load(Ordering::SeqCst) {
        let ready = {
            let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(n) => n > 0,
                Err(nix::Error::EINTR) => false,
                Err(e) => panic!("poll {}: {e}", path.display()),
            }
        };
        if !ready {
            continue;
        }
        let mut buf = [0u8; 256];
        match reader.read(&mut buf) {
            Ok(0) => {
                push(Seen::WriterClosed);
                reader = open_reader(path);
            }
            Ok(n) => buf[..n].iter().for_each(|b| push(Seen::Byte(*b))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }
}

/// `pgwarden.watchdog` of node `i`'s `/patroni`.
fn watchdog_status(c: &Cluster, i: usize) -> Result<Value, String> {
    let p = c.patroni(i).ok_or("no /patroni answer")?;
    p.pointer("/pgwarden/watchdog")
        .cloned()
        .ok_or_else(|| format!("no pgwarden.watchdog in {p}"))
}

fn expect_watchdog_state(c: &Cluster, i: usize, state: &str) -> Result<Value, String> {
    let w = watchdog_status(c, i)?;
    if w.get("state").and_then(Value::as_str) == Some(state) {
        Ok(w)
    } else {
        Err(format!("{} watchdog = {w}", c.name(i)))
    }
}

/// Waits until `more` keepalives beyond those already seen have arrived.
fn wait_for_keepalives(fifo: &FifoRecorder, more: usize, what: &str) {
    let before = fifo.count(Seen::Byte(b'1'));
    wait_until(SHORT_TIMEOUT, what, || {
        (fifo.count(Seen::Byte(b'1')) >= before + more).then_some(())
    });
}

/// Waits for a magic close followed by the writer's close, after the first `skip` events;
/// asserts nothing but the close follows the `V`.
fn wait_for_magic_close(fifo: &FifoRecorder, skip: usize, what: &str) {
    let tail = wait_until(SHORT_TIMEOUT, what, || {
        let events = fifo.events();
        let tail: Vec<Seen> = events.iter().skip(skip).map(|e| e.seen).collect();
        tail.contains(&Seen::WriterClosed).then_some(tail)
    });
    let v = tail
        .iter()
        .position(|s| *s == Seen::Byte(b'V'))
        .unwrap_or_else(|| panic!("{what}: the writer closed without a magic V: {tail:?}"));
    assert_eq!(
        &tail[v..],
        &[Seen::Byte(b'V'), Seen::WriterClosed],
        "{what}: V must be the last byte before the close"
    );
}

fn fifo_watchdog(mode: &str) -> String {
    format!("  mode: {mode}\n  device: {{dir}}/watchdog.fifo\n  safety_margin: -1\n")
}

/// A single node bootstraps with `mode: automatic` on a FIFO: it arms the watchdog once it
/// leads, feeds it while it renews its lease, and a SIGTERM stops PostgreSQL, then writes
/// the magic `V` and closes the device.
#[test]
fn bootstrap_leader_arms_feeds_and_magic_closes_on_sigterm() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .scope("pgwarden-wd-boot")
        .nodes(1)
        .synchronous_mode(false)
        .watchdog(0, &fifo_watchdog("automatic"))
        .initially_started(0)
        .start();
    let fifo = FifoRecorder::start(&c.node_dir(0).join("watchdog.fifo"));
    c.start_node(0);
    assert_eq!(c.wait_for_leader(BOOTSTRAP_TIMEOUT), 0);
    let w = wait_check(SHORT_TIMEOUT, "node1's watchdog armed", || {
        expect_watchdog_state(&c, 0, "armed")
    });
    // ttl 6, safety_margin -1: ttl / 2.
    assert_eq!(w.get("timeout_s").and_then(Value::as_u64), Some(3), "{w}");
    assert_eq!(w.get("mode").and_then(Value::as_str), Some("automatic"));
    assert_eq!(
        w.get("device_timeout_s"),
        Some(&Value::Null),
        "a FIFO cannot report its timeout (ENOTTY): {w}"
    );
    wait_for_keepalives(&fifo, 5, "5 keepalives while node1 leads");
    assert_eq!(
        fifo.count(Seen::Byte(b'V')),
        0,
        "no magic close while leading"
    );
    assert_eq!(
        fifo.count(Seen::WriterClosed),
        0,
        "opened once, never closed"
    );
    assert!(c
        .patroni(0)
        .is_some_and(|p| p.get("watchdog_failed").is_none()));

    let before = fifo.events().len();
    c.terminate_node(0, Duration::from_secs(90));
    wait_for_magic_close(&fifo, before, "magic close after SIGTERM");
    assert_eq!(
        c.postmaster_pid(0),
        None,
        "PostgreSQL is stopped by the time the agent has exited"
    );
    // The clean stop's last words: the member key says stopped (its lease outlives the
    // agent by up to ttl, so patronictl list would show a running member otherwise), and
    // the leader key is released.
    let member = c
        .dcs_json(&format!("members/{}", c.name(0)))
        .expect("read the member key")
        .expect("the member key outlives the agent until its lease expires");
    assert_eq!(
        member.get("state").and_then(Value::as_str),
        Some("stopped"),
        "{member}"
    );
    assert_eq!(
        member.get("role").and_then(Value::as_str),
        Some("primary"),
        "{member}"
    );
    assert_eq!(
        c.dcs_get("leader").expect("read /leader"),
        None,
        "the leader key is released"
    );
}

/// Node2 (`mode: required`, FIFO) replicates; the leader dies; node2 arms the watchdog
/// before its PostgreSQL leaves recovery, promotes, and feeds it while it leads. A
/// switchover back demotes node2, which magic-closes the device.
#[test]
fn failover_arms_before_promotion_and_a_switchover_disarms() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .scope("pgwarden-wd-failover")
        .nodes(2)
        .synchronous_mode(false)
        .watchdog(1, &fifo_watchdog("required"))
        .initially_started(1)
        .start();
    let fifo = FifoRecorder::start(&c.node_dir(1).join("watchdog.fifo"));
    assert_eq!(c.wait_for_leader(BOOTSTRAP_TIMEOUT), 0);
    c.start_node(1);
    wait_check(REPLICATION_TIMEOUT, "node2 a streaming replica", || match c
        .http_status(1, "GET", "/replica")
    {
        Some(200) => Ok(()),
        other => Err(format!("GET /replica on node2: {other:?}")),
    });
    let w = wait_check(SHORT_TIMEOUT, "node2's watchdog usable and idle", || {
        expect_watchdog_state(&c, 1, "disarmed")
    });
    assert_eq!(w.get("unusable"), Some(&Value::Null), "{w}");
    assert!(fifo.events().is_empty(), "a replica never opens the device");

    c.kill_node(0);
    let promoted_seen = wait_check(FAILOVER_TIMEOUT, "node2 out of recovery", || {
        match c.in_recovery(1) {
            Ok(false) => Ok(SystemTime::now()),
            other => Err(format!("pg_is_in_recovery on node2: {other:?}")),
        }
    });
    assert_eq!(c.wait_for_leader(FAILOVER_TIMEOUT), 1);
    let first = *fifo
        .events()
        .first()
        .expect("node2 opened and fed the FIFO");
    assert_eq!(first.seen, Seen::Byte(b'1'), "the arm sends a keepalive");
    // PostgreSQL writes the new timeline's history file as it leaves recovery.
    let history = c.data_dir(1).join("pg_wal/00000002.history");
    let promoted_at = std::fs::metadata(&history)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", history.display()));
    // File times come from the kernel's coarse clock, which may lag the reader's clock by a
    // tick; arming precedes the promotion by a pg_ctl run at least (tens of ms).
    let tick = Duration::from_millis(10);
    eprintln!(
        "[watchdog] armed {:?} before the history file was written",
        promoted_at.duration_since(first.at).unwrap_or_default()
    );
    assert!(
        first.at <= promoted_at + tick && first.at <= promoted_seen,
        "armed at {:?}, PostgreSQL promoted at {promoted_at:?} (seen {promoted_seen:?})",
        first.at
    );
    let w = wait_check(SHORT_TIMEOUT, "node2's watchdog armed", || {
        expect_watchdog_state(&c, 1, "armed")
    });
    assert_eq!(w.get("timeout_s").and_then(Value::as_u64), Some(3), "{w}");
    wait_for_keepalives(&fifo, 5, "5 keepalives while node2 leads");
    assert_eq!(fifo.count(Seen::WriterClosed), 0);

    c.start_node(0);
    wait_check(REJOIN_TIMEOUT, "node1 streaming from node2 again", || {
        let rows = c.query(
            1,
            "SELECT state FROM pg_stat_replication WHERE application_name = 'node1'",
        )?;
        match rows.first().and_then(|r| r[0].as_deref()) {
            Some("streaming") => Ok(()),
            _ => Err(format!("pg_stat_replication on node2: {rows:?}")),
        }
    });
    let before = fifo.events().len();
    // node2 learns that node1 streams at its next loop; until then it declines.
    wait_check(
        SHORT_TIMEOUT,
        "node2 accepting a switchover to node1",
        || {
            let r = c
                .http_slow(
                    1,
                    "POST",
                    "/switchover",
                    Some(r#"{"leader":"node2","candidate":"node1"}"#),
                    Duration::from_secs(90),
                )
                .map_err(|e| format!("POST /switchover on node2: {e}"))?;
            match r.status {
                200 => Ok(()),
                503 if r.body.contains("not streaming") => Err(r.body),
                _ => panic!("switchover: {} {}", r.status, r.body),
            }
        },
    );
    wait_for_magic_close(&fifo, before, "magic close after the switchover");
    assert_eq!(c.wait_for_leader(FAILOVER_TIMEOUT), 0);
    wait_check(SHORT_TIMEOUT, "node2's watchdog disarmed", || {
        expect_watchdog_state(&c, 1, "disarmed")
    });
}

/// Node2 has `mode: required` and no device. It reports `watchdog_failed` and never takes
/// the leader key, even as the only member left.
#[test]
fn a_required_watchdog_without_device_never_leads() {
    let _guard = exclusive();
    let mut c = Cluster::builder()
        .scope("pgwarden-wd-required")
        .nodes(2)
        .synchronous_mode(false)
        .watchdog(
            1,
            "  mode: required\n  device: {dir}/no-such-watchdog\n  safety_margin: -1\n",
        )
        .start();
    assert_eq!(c.wait_for_leader(BOOTSTRAP_TIMEOUT), 0);
    wait_check(REPLICATION_TIMEOUT, "node2 a streaming replica", || match c
        .http_status(1, "GET", "/replica")
    {
        Some(200) => Ok(()),
        other => Err(format!("GET /replica on node2: {other:?}")),
    });
    let p = c.patroni(1).expect("node2 /patroni");
    assert_eq!(p.get("watchdog_failed"), Some(&Value::Bool(true)), "{p}");
    let w = expect_watchdog_state(&c, 1, "failed").expect("node2 watchdog failed");
    assert!(
        w.get("unusable")
            .and_then(Value::as_str)
            .is_some_and(|u| u.contains("no-such-watchdog")),
        "{w}"
    );

    c.kill_node(0);
    let refusal = wait_check(FAILOVER_TIMEOUT, "node2 refusing to race", || {
        let p = c.patroni(1).ok_or("no /patroni")?;
        let refusal = p
            .pointer("/pgwarden/last_race_refusal")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if refusal.contains("watchdog-unusable") {
            Ok(refusal)
        } else {
            Err(format!("last_race_refusal = {refusal:?}"))
        }
    });
    assert!(refusal.contains("no-such-watchdog"), "{refusal}");
    // The leader key is free and node2 is the only member: it keeps looping without
    // leading. Counted in its own member key refreshes (one per loop), not in seconds.
    let revision = |c: &Cluster| {
        c.dcs_get("members/node2")
            .ok()
            .flatten()
            .map(|kv| kv.mod_revision)
    };
    let mut last = revision(&c);
    let mut refreshes = 0;
    wait_check(
        FAILOVER_TIMEOUT,
        "8 loops of node2 without a leader",
        || {
            if let Some(leader) = c.dcs_get("leader")? {
                panic!("someone took the leader key: {leader:?}");
            }
            if !c.in_recovery(1)? {
                panic!("node2's PostgreSQL left recovery");
            }
            let now = revision(&c);
            if now != last {
                refreshes += 1;
                last = now;
            }
            (refreshes >= 8)
                .then_some(())
                .ok_or(format!("{refreshes} member key refreshes so far"))
        },
    );
    assert_ne!(c.http_status(1, "GET", "/primary"), Some(200));
}
