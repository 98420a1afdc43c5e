//! SQL over TCP 127.0.0.1 with password (scram-sha-256) authentication, and the
//! acknowledged-write checker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{Client, Config, NoTls};

/// Connection settings for `user`/`password` on 127.0.0.1:`port`, database `postgres`.
pub fn pg_config(port: u16, user: &str, password: &str) -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .application_name("pgwarden-harness")
        .connect_timeout(Duration::from_secs(5));
    config
}

/// Opens a connection; `Err` carries a readable reason.
pub fn connect(config: &Config) -> Result<Client, String> {
    config.connect(NoTls).map_err(|e| format!("connect: {e}"))
}

/// Runs `sql` (simple protocol, may hold several statements) and returns every row as text.
pub fn query_text(config: &Config, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut client = connect(config)?;
    let messages = client
        .simple_query(sql)
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The first column of the first row of `sql`, as text.
pub fn query_scalar(config: &Config, sql: &str) -> Result<Option<String>, String> {
    Ok(query_text(config, sql)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// Runs statements whose results do not matter.
pub fn execute(config: &Config, sql: &str) -> Result<(), String> {
    query_text(config, sql).map(|_| ())
}

/// What an [`AckWriter`] saw.
#[derive(Debug, Default, Clone)]
pub struct WriterReport {
    /// Ids whose INSERT commit returned OK without a warning, in order.
    pub acked: Vec<i64>,
    /// The error that stopped the writer, if any.
    pub error: Option<String>,
    /// Commits that returned OK but carried a WARNING (e.g. a cancelled synchronous-replication
    /// wait turned into a local commit): not counted as acknowledged.
    pub unsafe_commits: Vec<(i64, String)>,
}

impl WriterReport {
    /// Acknowledged ids that are not in `present` (the rows read back from a primary).
    pub fn missing_from(&self, present: &std::collections::BTreeSet<i64>) -> Vec<i64> {
        self.acked
            .iter()
            .copied()
            .filter(|id| !present.contains(id))
            .collect()
    }
}

/// A thread that commits numbered rows (`INSERT INTO <table>(id) VALUES (n)`, autocommit) one
/// after the other and records an id only after its commit returned OK without a warning.
/// It stops at the first error or when asked to.
pub struct AckWriter {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<WriterReport>>,
    handle: Option<JoinHandle<()>>,
}

impl AckWriter {
    /// Connects (synchronously, so a bad target fails the test here) and starts writing ids
    /// `first_id, first_id + 1, ...` into `table` (which must have an `id bigint` column).
    pub fn start(config: &Config, table: &str, first_id: i64) -> AckWriter {
        let notices: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut config = config.clone();
        let sink = notices.clone();
        config.notice_callback(move |notice| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                "{}: {}",
                notice.severity(),
                notice.message()
            ));
        });
        let mut client = connect(&config).unwrap_or_else(|e| panic!("writer: {e}"));
        let statement = format!("INSERT INTO {table} (id) VALUES ($1)");
        let stop = Arc::new(AtomicBool::new(false));
        let report: Arc<Mutex<WriterReport>> = Arc::default();
        let (stop2, report2) = (stop.clone(), report.clone());
        let handle = std::thread::Builder::new()
            .name("ack-writer".into())
            .spawn(move || {
                let mut id = first_id;
                while !stop2.load(Ordering::SeqCst) {
                    notices.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    let result = client.execute(statement.as_str(), &[&id]);
                    let warnings: Vec<String> = notices
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .filter(|n| n.starts_with("WARNING"))
                        .cloned()
                        .collect();
                    let mut r = report2.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(_) if warnings.is_empty() => r.acked.push(id),
                        Ok(_) => {
                            r.unsafe_commits.push((id, warnings.join("; ")));
                            r.error = Some(format!("commit of id {id} carried {warnings:?}"));
                            break;
                        }
                        Err(e) => {
                            r.error = Some(format!("insert of id {id}: {e}"));
                            break;
                        }
                    }
                    id += 1;
                }
            })
            .expect("spawn the writer thread");
        AckWriter {
            stop,
            report,
            handle: Some(handle),
        }
    }

    /// How many ids are acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acked
            .len()
    }

    /// The error that stopped the writer, if it stopped.
    pub fn error(&self) -> Option<String> {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }

    /// Whether the writer thread has ended (after an error or a stop request).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Asks the writer to stop after its current statement (never cancels it: a cancelled
    /// synchronous-replication wait would commit locally) and waits for it up to `timeout`.
    pub fn stop(mut self, timeout: Duration) -> WriterReport {
        self.stop.store(true, Ordering::SeqCst);
        super::process::wait_until(timeout, "the writer thread to finish", || {
            self.is_finished().then_some(())
        });
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for AckWriter {
    fn drop(&mut self) {
        // Never join here: the thread may be blocked on a dead server during a panic unwind.
        self.stop.store(true, Ordering::SeqCst);
    }
}
