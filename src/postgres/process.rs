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
