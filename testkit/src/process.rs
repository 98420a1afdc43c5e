//! Processes, ports, users and polling: the low-level pieces every harness part uses.
//!
//! Every server the harness starts gets its own process group and is stopped by pid (never by
//! name); node death is SIGKILL of a whole process tree, found through `/proc`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// How often `wait_until`/`wait_check` poll their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// The OS user agents (and therefore PostgreSQL) run as when the tests run as root.
pub const RUNNER_USER: &str = "postgres";

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Ok`, or panics after `timeout` naming
/// `what` and the last observation (the last `Err`).
pub fn wait_check<T, E: Debug>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    let mut polls = 0u64;
    loop {
        polls += 1;
        match f() {
            Ok(value) => {
                eprintln!(
                    "[harness] {what}: ok after {:.1}s ({polls} polls)",
                    start.elapsed().as_secs_f64()
                );
                return value;
            }
            Err(observation) => {
                if start.elapsed() >= timeout {
                    panic!(
                        "timed out after {:.1}s ({polls} polls) waiting for: {what}\n\
                         last observation: {observation:?}",
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    wait_check(timeout, what, || f().ok_or("condition still false"))
}

static ALLOCATED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that was free a moment ago and that this test process has not
/// handed out before.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        drop(listener);
        let mut used = ALLOCATED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if used.insert(port) {
            return port;
        }
    }
    panic!("could not find a free port on 127.0.0.1 after 1000 attempts");
}

/// Whether nothing listens on 127.0.0.1:`port` right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Panics with a clear message when `port` is taken (checked right before starting a server).
pub fn assert_port_free(port: u16, what: &str) {
    assert!(
        port_is_free(port),
        "port 127.0.0.1:{port} for {what} is already in use"
    );
}

/// Whether the tests run as root (then agents are started as [`RUNNER_USER`]).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// uid/gid of [`RUNNER_USER`] when running as root, else `None` (agents run as ourselves).
pub fn runner_ids() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name(RUNNER_USER)
        .expect("look up the postgres OS user")
        .expect("the OS user `postgres` must exist to run agents when the tests run as root");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// Hands `path` to the agent user (no-op when not root).
pub fn give_to_runner(path: &Path) {
    if let Some((uid, gid)) = runner_ids() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {RUNNER_USER}: {e}", path.display()));
    }
}

/// `chmod mode path`.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A fresh directory under /tmp (mode 755, so the agent user can traverse it), removed on drop
/// unless `PGWARDEN_KEEP_TEST_DIRS` is set.
pub fn make_test_dir(prefix: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create a temp dir under /tmp");
    set_mode(dir.path(), 0o755);
    if std::env::var_os("PGWARDEN_KEEP_TEST_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!(
            "[harness] keeping {} (PGWARDEN_KEEP_TEST_DIRS)",
            dir.path().display()
        );
    }
    dir
}

/// Copies the package's binaries into `dir` (mode 755) so the agent user can run them: the
/// checkout and `/root` need not be readable by `postgres`.
pub fn install_binaries(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    set_mode(dir, 0o755);
    let copy = |name: &str, as_name: &str| {
        let src = cargo_bin(name);
        let dst = dir.join(as_name);
        fs::copy(&src, &dst)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        set_mode(&dst, 0o755);
        dst
    };
    (
        copy("pgwarden", "pgwarden"),
        copy("pgwardenctl", "pgwardenctl"),
    )
}

/// A binary of the pgwarden package. Cargo builds the package's binaries before its tests
/// and benches, into `<target>/<profile>/`; the test binary runs from `<profile>/deps/`.
pub fn cargo_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the running test binary's path");
    let mut dir = exe.parent().expect("the test binary's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("the profile's directory");
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: cargo builds it with the pgwarden package's tests and benches",
        path.display()
    );
    path
}

/// The repository's root (the testkit is `<root>/testkit`).
pub fn repo_root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the repository")
}

/// Removes from `cmd`'s environment what could silently override a test's config files:
/// Patroni/pgwarden environment overrides and libpq defaults.
pub fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PATRONI_") || k.starts_with("PGWARDEN_") || k.starts_with("PG") {
            cmd.env_remove(&key);
        }
    }
}

/// A command that runs `program` as the agent user (through `setpriv` when we are root), in
/// its own process group, with a scrubbed environment and `HOME=home`.
pub fn runner_command(program: &Path, home: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={RUNNER_USER}"))
            .arg(format!("--regid={RUNNER_USER}"))
            .arg("--init-groups")
            .arg("--")
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    scrub_env(&mut cmd);
    cmd.env("HOME", home).current_dir(home).process_group(0);
    cmd
}

/// Spawns `cmd` with stdin closed and stdout+stderr appended to `log` (after a marker line).
pub fn spawn_logged(cmd: &mut Command, log: &Path, what: &str) -> Child {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
    {
        use std::io::Write;
        let _ = writeln!(file, "===== harness: starting {what}: {cmd:?} =====");
    }
    give_to_runner(log);
    let err = file.try_clone().expect("clone log file handle");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what} ({cmd:?}): {e}"));
    eprintln!(
        "[harness] started {what}: pid {}, log {}",
        child.id(),
        log.display()
    );
    child
}

/// Output of [`run_capture`].
#[derive(Debug)]
pub struct Captured {
    /// Exit status, `None` when the command was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` to completion capturing stdout/stderr; kills its process group after `timeout`.
pub fn run_capture(cmd: &mut Command, timeout: Duration) -> Captured {
    run_capture_with_input(cmd, None, timeout)
}

/// [`run_capture`] with `input` written to the command's standard input (then closed).
pub fn run_capture_with_input(
    cmd: &mut Command,
    input: Option<&str>,
    timeout: Duration,
) -> Captured {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let (Some(text), Some(mut pipe)) = (input, child.stdin.take()) {
        use std::io::Write as _;
        // A command that exits before reading it all closes the pipe: not an error here.
        let _ = pipe.write_all(text.as_bytes());
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)), // poll interval
            _ => {
                let pid = child.id() as i32;
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Captured {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The fields of `/proc/<pid>/stat` the harness needs.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Parses `/proc/<pid>/stat`; `None` when the process does not exist.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// Every process currently in /proc.
pub fn all_procs() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

/// All descendants of `pid` (children, grandchildren, ...), by parent pid.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in all_procs() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if !out.contains(&c) {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

/// `/proc/<pid>/cmdline` with NULs turned into spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_string(),
    )
}

/// Pids whose command line contains `needle` (used with a test's unique temp path only).
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_procs()
        .into_iter()
        .filter(|p| p.pid != me && pid_alive(p.pid))
        .filter(|p| cmdline(p.pid).is_some_and(|c| c.contains(needle)))
        .map(|p| p.pid)
        .collect()
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone already).
pub fn signal(pid: i32, sig: Signal) {
    if pid > 1 {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// SIGKILLs `pid`, its process group when it leads one, and every descendant. The tree is
/// frozen with SIGSTOP first so nobody forks or reparents while it is collected (a postmaster's
/// backends each run in their own session, so its process group alone is not enough).
/// Returns the pids signalled.
pub fn kill_tree(pid: i32) -> Vec<i32> {
    if pid <= 1 || !pid_alive(pid) {
        return Vec::new();
    }
    signal(pid, Signal::SIGSTOP);
    let mut victims = descendants(pid);
    for &v in &victims {
        signal(v, Signal::SIGSTOP);
    }
    for v in descendants(pid) {
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    if proc_stat(pid).is_some_and(|s| s.pgrp == pid) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for &v in &victims {
        signal(v, Signal::SIGKILL);
    }
    signal(pid, Signal::SIGKILL);
    victims.push(pid);
    victims
}

/// Waits until none of `pids` is alive.
pub fn wait_dead(pids: &[i32], timeout: Duration, what: &str) {
    wait_check(timeout, what, || {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still alive: {alive:?}"))
        }
    });
}

/// The last `lines` lines of a (text) file, or a note why it could not be read.
pub fn tail_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// How many log lines to print per process when a test fails (`PGWARDEN_TEST_LOG_LINES`).
pub fn failure_log_lines() -> usize {
    std::env::var("PGWARDEN_TEST_LOG_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

/// Where `scripts/test` installs patronictl (the compatibility oracle).
pub fn patronictl() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PGWARDEN_PATRONICTL") {
        return path.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let path = target.join("patroni-venv/bin/patronictl");
    assert!(
        path.exists(),
        "patronictl not found at {}: scripts/test installs it (or set PGWARDEN_PATRONICTL)",
        path.display()
    );
    path
}

/// The schemathesis CLI that `scripts/test` installs into `target/schemathesis-venv`
/// (`PGWARDEN_SCHEMATHESIS` overrides). Missing, the test fails: it never skips.
pub fn schemathesis() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PGWARDEN_SCHEMATHESIS") {
        return path.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let path = target.join("schemathesis-venv/bin/schemathesis");
    assert!(
        path.exists(),
        "schemathesis not found at {}: scripts/test installs it (or set PGWARDEN_SCHEMATHESIS)",
        path.display()
    );
    path
}
