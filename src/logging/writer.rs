//! Where log lines go: a bounded queue drained by a thread of its own, into standard output
//! or a size-rotated file. A full queue drops the line and counts it (Patroni's
//! `max_queue_size` and `logger_records_lost`): a stuck pipe or a slow disk never holds the
//! agent's loop, which a blocking write to standard output would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

/// The name of the log file under `log.dir`.
pub const FILE_NAME: &str = "pgwarden.log";

/// The queue's counters (shown in `/patroni` as Patroni does).
#[derive(Debug, Default)]
pub struct QueueCounters {
    waiting: AtomicUsize,
    lost: AtomicU64,
}

impl QueueCounters {
    /// Lines waiting for the writer.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Lines dropped because the queue was full (or the destination failed).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Where the thread writes.
pub enum Destination {
    /// Standard output.
    Stdout,
    /// `<dir>/pgwarden.log`, rotated by size.
    File(RotatingFile),
}

/// The sending side, handed to the formatting layer (one line per write).
#[derive(Clone)]
pub struct LineQueue {
    lines: mpsc::SyncSender<Vec<u8>>,
    counters: Arc<QueueCounters>,
}

impl LineQueue {
    /// Starts the writer thread for `destination`, with room for `capacity` lines.
    pub fn start(destination: Destination, capacity: usize) -> io::Result<LineQueue> {
        let (lines, received) = mpsc::sync_channel::<Vec<u8>>(capacity.max(1));
        let counters = Arc::new(QueueCounters::default());
        let mine = counters.clone();
        std::thread::Builder::new()
            .name("pgwarden-log".into())
            .spawn(move || drain(received, destination, &mine))?;
        Ok(LineQueue { lines, counters })
    }

    /// The counters.
    pub fn counters(&self) -> Arc<QueueCounters> {
        self.counters.clone()
    }

    /// Queues one line; false when it was dropped.
    pub fn push(&self, line: Vec<u8>) -> bool {
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        match self.lines.try_send(line) {
            Ok(()) => true,
            Err(_) => {
                self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

fn drain(
    received: mpsc::Receiver<Vec<u8>>,
    mut destination: Destination,
    counters: &QueueCounters,
) {
    let mut failing = false;
    for line in received {
        let written = match &mut destination {
            Destination::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Destination::File(file) => file.write_line(&line),
        };
        // Counted as waiting until written, so a drain at exit waits for this one too.
        counters.waiting.fetch_sub(1, Ordering::Relaxed);
        match written {
            Ok(()) => failing = false,
            Err(error) => {
                counters.lost.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    // The log cannot report its own failure: standard error can.
                    eprintln!("pgwarden: writing the log failed ({error}); lines are dropped");
                    failing = true;
                }
            }
        }
    }
}

/// `pgwarden.log`, moved to `pgwarden.log.1` (and `.1` to `.2`, ...) when the next line
/// would take it past `max_bytes`; `keep` rotated files are kept (Patroni's `file_num`,
/// `file_size`, `mode`).
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    mode: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (or creates) `<dir>/pgwarden.log` for appending.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        keep: u32,
        mode: Option<u32>,
    ) -> io::Result<RotatingFile> {
        let path = dir.join(FILE_NAME);
        let mode = mode.unwrap_or(0o640);
        let file = open_append(&path, mode)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            max_bytes,
            keep,
            mode,
            file,
            size,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.file = open_append(&self.path, self.mode)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_by_size_and_keeps_file_num_files() {
        let dir = tempfile::tempdir().expect("dir");
        let mut file = RotatingFile::open(dir.path(), 100, 2, Some(0o600)).expect("open");
        for i in 0..10 {
            file.write_line(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes())
                .expect("write");
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        // 40-byte lines, 100 bytes a file: two lines each; lines 8-9 in the live file.
        assert!(
            read("pgwarden.log").starts_with("line 08"),
            "{}",
            read("pgwarden.log")
        );
        assert!(read("pgwarden.log.1").starts_with("line 06"));
        assert!(read("pgwarden.log.2").starts_with("line 04"));
        assert!(
            !dir.path().join("pgwarden.log.3").exists(),
            "file_num 2 keeps two"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("pgwarden.log"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().expect("dir");
        let file = RotatingFile::open(dir.path(), 1 << 20, 1, None).expect("open");
        let queue = LineQueue::start(Destination::File(file), 4).expect("start");
        let sent = (0..10_000)
            .filter(|i| queue.push(format!("{i}\n").into_bytes()))
            .count();
        let counters = queue.counters();
        assert_eq!(sent as u64 + counters.lost(), 10_000);
        assert!(
            counters.lost() > 0,
            "a 4-line queue cannot take 10000 lines at once"
        );
        // Everything accepted reaches the file.
        let mut written = 0;
        for _ in 0..200 {
            written = std::fs::read_to_string(dir.path().join(FILE_NAME))
                .expect("log")
                .lines()
                .count();
            if written == sent {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(written, sent);
    }
}
