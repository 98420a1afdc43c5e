//! Running PostgreSQL's programs: bounded in time, stderr captured for the error message,
//! in their own process group so a signal to the agent does not reach PostgreSQL.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::PgError;

/// Run `program args...`, wait at most `timeout`, return stdout.
pub async fn run(
    program: &Path,
    args: &[String],
    envs: &[(&str, String)],
    stdin_null: bool,
    timeout: Duration,
) -> Result<String, PgError> {
    let what = format!(
        "{} {}",
        program
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        args.join(" ")
    );
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if stdin_null {
        cmd.stdin(Stdio::null());
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().map_err(|source| PgError::Spawn {
        what: what.clone(),
        source,
    })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| PgError::Timeout {
            what: what.clone(),
            after: timeout,
        })?
        .map_err(|source| PgError::Spawn {
            what: what.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let detail = if stderr.is_empty() { stdout } else { stderr };
        return Err(PgError::Failed {
            what,
            status: output.status.to_string(),
            stderr: detail,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// `pg_ctl start` must not hold our pipes open through the postmaster: stdout goes nowhere,
/// the server log goes to `log_file`.
pub async fn pg_ctl_start(
    pg_ctl: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<(), PgError> {
    let what = format!("pg_ctl {}", args.join(" "));
    let mut cmd = tokio::process::Command::new(pg_ctl);
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| PgError::Spawn {
        what: what.clone(),
        source,
    })?;
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .map_err(|_| PgError::Timeout {
            what: what.clone(),
            after: timeout,
        })?
        .map_err(|source| PgError::Spawn {
            what: what.clone(),
            source,
        })?;
    if !status.success() {
        return Err(PgError::Failed {
            what,
            status: status.to_string(),
            stderr: "see the PostgreSQL log".into(),
        });
    }
    Ok(())
}
