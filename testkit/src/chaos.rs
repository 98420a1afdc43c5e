//! The chaos suite's workload and checkers: a writer through HAProxy that reconnects across
//! failovers, stale clients that keep writing straight to every node (the worst case: a
//! client still connected to an old primary), a reader on the replica port, and the checks
//! run after each fault: every acknowledged row on the current primary, and no two terms
//! (node, timeline) acknowledging writes in interleaved time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::{Config, NoTls};

/// Wall-clock milliseconds since the epoch (the agents' role history uses the same clock).
pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// One acknowledged commit: its id, when the client saw the acknowledgement, and which
/// server (address) acknowledged it.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: i64,
    pub at_ms: u128,
    pub server: String,
}

#[derive(Default)]
struct Log {
    acks: Vec<Ack>,
    /// Failed connects and statements, by kind (`connect`, a SQLSTATE, or `closed`).
    errors: BTreeMap<String, usize>,
    /// Commits that returned with a WARNING (a cancelled synchronous wait): not acknowledged.
    unsafe_commits: Vec<(i64, String)>,
}

/// A client inserting numbered rows in a loop, reconnecting after any error. Each commit
/// is recorded only when it returned without a warning; it never cancels a statement (a
/// cancelled synchronous-replication wait commits locally).
pub struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    handle: Option<JoinHandle<()>>,
    pub label: String,
}

impl Writer {
    /// Starts writing ids `first_id..` into `table` through `config`, pausing `pause`
    /// between commits and 200 ms after an error.
    pub fn start(
        label: &str,
        config: &Config,
        table: &str,
        first_id: i64,
        pause: Duration,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<Log>> = Arc::default();
        let (stop2, log2) = (stop.clone(), log.clone());
        let mut config = config.clone();
        let notices: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = notices.clone();
        config.notice_callback(move |n| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                "{}: {}",
                n.severity(),
                n.message()
            ))
        });
        config.connect_timeout(Duration::from_secs(2));
        let sql =
            format!("INSERT INTO {table} (id) VALUES ($1) RETURNING host(inet_server_addr())");
        let handle = std::thread::Builder::new()
            .name(format!("writer-{label}"))
            .spawn(move || {
                let mut id = first_id;
                let mut client: Option<postgres::Client> = None;
                while !stop2.load(Ordering::SeqCst) {
                    let c = match client.as_mut() {
                        Some(c) => c,
                        None => match config.connect(NoTls) {
                            Ok(c) => client.insert(c),
                            Err(_) => {
                                *lock(&log2).errors.entry("connect".into()).or_default() += 1;
                                std::thread::sleep(Duration::from_millis(200));
                                continue;
                            }
                        },
                    };
                    lock(&notices).clear();
                    let result = c.query_one(sql.as_str(), &[&id]);
                    let warnings: Vec<String> = lock(&notices)
                        .iter()
                        .filter(|n| n.starts_with("WARNING"))
                        .cloned()
                        .collect();
                    match result {
                        Ok(row) if warnings.is_empty() => {
                            let server: Option<String> = row.get(0);
                            lock(&log2).acks.push(Ack {
                                id,
                                at_ms: now_ms(),
                                server: server.unwrap_or_default(),
                            });
                        }
                        Ok(_) => lock(&log2).unsafe_commits.push((id, warnings.join("; "))),
                        Err(e) => {
                            let kind = e
                                .code()
                                .map_or_else(|| "closed".to_string(), |c| c.code().to_string());
                            *lock(&log2).errors.entry(kind).or_default() += 1;
                            client = None;
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                    id += 1;
                    std::thread::sleep(pause);
                }
            })
            .expect("spawn a writer thread");
        Writer {
            stop,
            log,
            handle: Some(handle),
            label: label.to_string(),
        }
    }

    /// Acknowledged commits so far.
    pub fn acks(&self) -> Vec<Ack> {
        lock(&self.log).acks.clone()
    }

    /// Errors (failed connects and statements) so far, by kind: `connect`, the SQLSTATE
    /// of a refused statement, or `closed` (the connection broke under it).
    pub fn errors(&self) -> BTreeMap<String, usize> {
        lock(&self.log).errors.clone()
    }

    /// Panics if the thread ended before it was asked to (a panic in it, say): a writer
    /// that silently stopped would leave the faults after it judged on no workload.
    pub fn assert_running(&self) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        if self.handle.as_ref().is_none_or(|h| h.is_finished()) {
            panic!("writer {} stopped on its own", self.label);
        }
    }

    /// Commits that carried a WARNING.
    pub fn unsafe_commits(&self) -> Vec<(i64, String)> {
        lock(&self.log).unsafe_commits.clone()
    }

    /// Asks the thread to stop; waits up to `timeout` for it (a statement blocked on a
    /// synchronous standby that never comes is left to the process exit). Panics if the
    /// thread panicked.
    pub fn stop(&mut self, timeout: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + timeout;
        while self.handle.as_ref().is_some_and(|h| !h.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(h) = self.handle.take() {
                if let Err(panic) = h.join() {
                    panic!("writer {} panicked: {panic:?}", self.label);
                }
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A reader on HAProxy's replica port. HAProxy notices a promotion only after its checks
/// fail (`fall 3` × `inter 3s` in the seed's configuration), so for a few seconds reads may
/// reach the member just promoted: harmless, it has everything. What must never happen is a
/// read from an old primary after a new one took over: such reads are returned as
/// acknowledgement-like records for [`interleaved_terms`].
pub struct ReplicaReader {
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<(usize, Vec<Ack>)>>,
    handle: Option<JoinHandle<()>>,
}

impl ReplicaReader {
    pub fn start(config: &Config) -> ReplicaReader {
        let stop = Arc::new(AtomicBool::new(false));
        let reads: Arc<Mutex<(usize, Vec<Ack>)>> = Arc::default();
        let (stop2, reads2) = (stop.clone(), reads.clone());
        let mut config = config.clone();
        config.connect_timeout(Duration::from_secs(2));
        let handle = std::thread::Builder::new()
            .name("replica-reader".into())
            .spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    // A new connection each time: HAProxy balances per connection.
                    if let Ok(mut c) = config.connect(NoTls) {
                        if let Ok(row) =
                            c.query_one("SELECT pg_is_in_recovery(), host(inet_server_addr())", &[])
                        {
                            let in_recovery: bool = row.get(0);
                            let server: Option<String> = row.get(1);
                            let mut r = lock(&reads2);
                            r.0 += 1;
                            if !in_recovery {
                                r.1.push(Ack {
                                    id: -1,
                                    at_ms: now_ms(),
                                    server: server.unwrap_or_default(),
                                });
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .expect("spawn the reader thread");
        ReplicaReader {
            stop,
            reads,
            handle: Some(handle),
        }
    }

    /// (reads served, reads served by a server not in recovery).
    pub fn report(&self) -> (usize, Vec<Ack>) {
        lock(&self.reads).clone()
    }
}

impl Drop for ReplicaReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One line of an agent's role history (`pgwarden.role_history`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct RoleLine {
    pub ts_ms: u128,
    pub node: String,
    pub state: String,
    pub postgres: String,
    pub holds_leader_key: bool,
    pub lease: Option<String>,
    pub leader_revision: Option<i64>,
    pub timeline: Option<u32>,
    pub pg_action: Option<String>,
}

/// Every line of a role history file (a missing file is an empty history).
pub fn read_role_history(path: &Path) -> Vec<RoleLine> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("role history {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "role history {} line {}: {e}: {line:?} (every line must parse: a line \
                     dropped here would hide a term from the interleaving check)",
                    path.display(),
                    n + 1
                )
            })
        })
        .collect()
}

/// The term (node, timeline) an acknowledgement belongs to: the timeline node `node` last
/// recorded at or before `at_ms` (a promotion records the new timeline before clients can
/// see it acknowledged... or just after: a term is then attributed to the timeline of the
/// next line within 2 s).
fn term_of(history: &[RoleLine], node: &str, at_ms: u128) -> (String, Option<u32>) {
    let lines: Vec<&RoleLine> = history.iter().filter(|l| l.node == node).collect();
    let before = lines
        .iter()
        .rev()
        .find(|l| l.ts_ms <= at_ms && l.postgres == "primary")
        .and_then(|l| l.timeline);
    let soon_after = lines
        .iter()
        .find(|l| l.ts_ms > at_ms && l.ts_ms <= at_ms + 2_000 && l.postgres == "primary")
        .and_then(|l| l.timeline);
    (node.to_string(), before.max(soon_after))
}

/// Split brain as clients saw it: two terms whose acknowledgements interleave in time
/// (term A acknowledges, then term B, then term A again). `names` maps a server address to
/// its member name. Returns one line per interleaving found.
pub fn interleaved_terms(
    acks: &[Ack],
    history: &[RoleLine],
    names: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut sorted: Vec<&Ack> = acks.iter().collect();
    sorted.sort_by_key(|a| a.at_ms);
    let mut finished: BTreeSet<(String, Option<u32>)> = BTreeSet::new();
    let mut current: Option<(String, Option<u32>)> = None;
    let mut found = Vec::new();
    for ack in sorted {
        let node = names
            .get(&ack.server)
            .cloned()
            .unwrap_or_else(|| ack.server.clone());
        let term = term_of(history, &node, ack.at_ms);
        if current.as_ref() != Some(&term) {
            if finished.contains(&term) {
                found.push(format!(
                    "id {} acknowledged at {} ms by {} (timeline {:?}) after another term had acknowledged",
                    ack.id, ack.at_ms, term.0, term.1
                ));
            }
            if let Some(previous) = current.replace(term) {
                finished.insert(previous);
            }
        }
    }
    found
}
