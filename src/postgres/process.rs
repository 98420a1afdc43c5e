//! Running PostgreSQL's programs: bounded in time, stderr captured for the error message,
//! in their own process group so a signal to the agent does not reach PostgreSQL.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::PgError;

/// How a program's output is handled.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Output {
    /// Captured: stdout is returned, stderr goes into the error.
    Captured,
    /// Discarded: `pg_ctl start` must not hold our pipes open through the postmaster it
    /// forks (the server log goes to its `-l` file).
    Discarded,
}

/// Run `program args...` with stdin closed, wait at most `timeout`, return stdout.
pub async fn run(
    program: &Path,
    args: &[String],
    envs: &[(&str, String)],
    timeout: Duration,
) -> Result<String, PgError> {
    execute(program, args, envs, timeout, Output::Captured).await
}

/// SIGKILL a postmaster and every process it forked (backends, walsenders, auxiliaries),
/// children first found through `/proc` before the postmaster dies (they are re-parented
/// afterwards). Returns how many processes were signalled.
pub fn kill_server(postmaster: i32) -> usize {
    signal_server(postmaster).len()
}

/// [`kill_server`], then wait (up to `bound`) until every process signalled is gone, reaped
/// included: a postmaster started at once would otherwise find the old one's
/// `postmaster.pid` naming a process that still exists (PostgreSQL's `kill(pid, 0)` sees a
/// zombie too) and refuse to start. Orphans are reaped by init, which may take a moment.
pub async fn kill_server_and_wait(postmaster: i32, bound: Duration) -> usize {
    let victims = signal_server(postmaster);
    let deadline = tokio::time::Instant::now() + bound;
    while victims.iter().any(|&pid| process_exists(pid)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victims.len()
}

/// SIGKILLs the postmaster and its children; the pids signalled.
fn signal_server(postmaster: i32) -> Vec<i32> {
    let signal = |pid: i32, sig| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    // Stopped first, so it forks no new backend between the listing and the kill.
    let _ = signal(postmaster, nix::sys::signal::Signal::SIGSTOP);
    let children = children_of(postmaster);
    std::iter::once(postmaster)
        .chain(children)
        .filter(|&pid| signal(pid, nix::sys::signal::Signal::SIGKILL).is_ok())
        .collect()
}

/// The process exists (a zombie not yet reaped included).
fn process_exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process is stopped (SIGSTOP: state `T` in `/proc/<pid>/stat`).
pub fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|s| s == "T")
        })
        .unwrap_or(false)
}

/// Pids whose parent is `parent`, from `/proc/<pid>/stat` (a postmaster's backends,
/// walsenders and auxiliaries).
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid ...": the command may contain spaces.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// `pg_ctl start ...`: output discarded, success or failure only.
pub async fn pg_ctl_start(
    pg_ctl: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<(), PgError> {
    execute(pg_ctl, args, &[], timeout, Output::Discarded)
        .await
        .map(|_| ())
}

async fn execute(
    program: &Path,
    args: &[String],
    envs: &[(&str, String)],
    timeout: Duration,
    output: Output,
) -> Result<String, PgError> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let what = format!("{name} {}", args.join(" "));
    let pipe = || match output {
        Output::Captured => Stdio::piped(),
        Output::Discarded => Stdio::null(),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(pipe())
        .stderr(pipe())
        .process_group(0);
    // A captured program is ours alone: kill it if we stop waiting. `pg_ctl start` is left
    // alone, since killing it mid-start would not stop the postmaster it forked anyway.
    cmd.kill_on_drop(output == Output::Captured);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let spawn_error = |source| PgError::Spawn {
        what: what.clone(),
        source,
    };
    let child = cmd.spawn().map_err(spawn_error)?;
    let result = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| PgError::Timeout {
            what: what.clone(),
            after: timeout,
        })?
        .map_err(|source| PgError::Spawn {
            what: what.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&result.stdout).to_string();
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr).trim().to_string();
        let detail = match (output, stderr.is_empty()) {
            (Output::Discarded, _) => "see the PostgreSQL log".to_string(),
            (Output::Captured, true) => stdout.trim().to_string(),
            (Output::Captured, false) => stderr,
        };
        return Err(PgError::Failed {
            what,
            status: result.status.to_string(),
            stderr: detail,
        });
    }
    Ok(stdout)
}
