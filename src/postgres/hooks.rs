//! The operator's scripts around PostgreSQL, as Patroni runs them: `postgresql.callbacks`
//! (told what happened, never waited for: see `runtime::callbacks`), `pre_promote` (run
//! before a promotion; a non-zero exit vetoes it) and `before_stop` (run before every stop;
//! its exit status is only logged).
//!
//! Every script runs in its own process group, so a kill (a newer callback of its kind, a
//! timeout, a lease that ran out under a `pre_promote`) reaches what it started too, and a
//! signal to the agent does not reach it. Its output goes to the agent's.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use crate::core::CallbackKind;

/// The scripts, split into arguments when the configuration was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `postgresql.callbacks`: the command of each configured callback.
    pub callbacks: BTreeMap<CallbackKind, Vec<String>>,
    /// `postgresql.pre_promote`.
    pub pre_promote: Option<Vec<String>>,
    /// `postgresql.before_stop`.
    pub before_stop: Option<Vec<String>>,
    /// `pgwarden.callback_timeout_ms`: a script still running after this is killed.
    pub timeout: Duration,
}

impl Hooks {
    /// The scripts of the local configuration.
    pub fn from_config(config: &crate::config::Config) -> Hooks {
        Hooks {
            callbacks: config.postgresql.callbacks.clone(),
            pre_promote: config.postgresql.pre_promote.clone(),
            before_stop: config.postgresql.before_stop.clone(),
            timeout: Duration::from_millis(config.pgwarden.callback_timeout_ms),
        }
    }
}

/// How a script ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptEnd {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (not ours).
    Signalled(i32),
    /// It ran past its timeout and was killed.
    TimedOut(Duration),
    /// The caller stopped waiting for it (`cancel`) and it was killed.
    Cancelled,
    /// It could not be started.
    SpawnFailed(String),
}

impl ScriptEnd {
    /// Exit code 0.
    pub fn succeeded(&self) -> bool {
        *self == ScriptEnd::Exited(0)
    }
}

impl std::fmt::Display for ScriptEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptEnd::Exited(code) => write!(f, "exited with {code}"),
            ScriptEnd::Signalled(signal) => write!(f, "killed by signal {signal}"),
            ScriptEnd::TimedOut(after) => write!(f, "killed after {after:?} (timeout)"),
            ScriptEnd::Cancelled => write!(f, "killed (no longer wanted)"),
            ScriptEnd::SpawnFailed(error) => write!(f, "could not be started: {error}"),
        }
    }
}

/// Splits a configured command the way a POSIX shell would (Patroni uses `shlex.split`);
/// the error says what is wrong with it.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    let words = shlex::split(command)
        .ok_or_else(|| "cannot be split into arguments (an unclosed quote?)".to_string())?;
    if words.is_empty() {
        return Err("is empty".into());
    }
    Ok(words)
}

/// Starts `argv` in a process group of its own, stdin closed, output to the agent's.
pub fn spawn(argv: &[String]) -> std::io::Result<tokio::process::Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
}

/// SIGKILL the process group `pid` leads (the script and whatever it started that stayed
/// in its group).
pub fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Waits for `child` at most `timeout`, or until `cancel` completes: whichever comes first
/// ends it (its whole group killed, then reaped).
pub async fn wait_bounded(
    mut child: tokio::process::Child,
    timeout: Duration,
    cancel: impl Future<Output = ()>,
) -> ScriptEnd {
    let pid = child.id();
    let stop = tokio::select! {
        status = child.wait() => {
            return match status {
                Ok(status) => match status.code() {
                    Some(code) => ScriptEnd::Exited(code),
                    None => ScriptEnd::Signalled(
                        std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0),
                    ),
                },
                Err(e) => ScriptEnd::SpawnFailed(e.to_string()),
            };
        }
        _ = tokio::time::sleep(timeout) => ScriptEnd::TimedOut(timeout),
        _ = cancel => ScriptEnd::Cancelled,
    };
    if let Some(pid) = pid {
        kill_group(pid);
    }
    let _ = child.wait().await;
    stop
}

/// Runs `argv` to its end, bounded by `timeout` and `cancel`.
pub async fn run(
    argv: &[String],
    timeout: Duration,
    cancel: impl Future<Output = ()>,
) -> ScriptEnd {
    match spawn(argv) {
        Ok(child) => wait_bounded(child, timeout, cancel).await,
        Err(e) => ScriptEnd::SpawnFailed(format!("{}: {e}", argv.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            split_command("/usr/local/bin/vip.sh --dev 'eth 0'").expect("test setup"),
            vec!["/usr/local/bin/vip.sh", "--dev", "eth 0"]
        );
        assert!(split_command("/bin/x 'unclosed")
            .expect_err("an error")
            .contains("quote"));
        assert_eq!(split_command("  ").expect_err("an error"), "is empty");
    }

    #[tokio::test]
    async fn exit_codes_timeouts_and_cancels() {
        let long = Duration::from_secs(30);
        let never = std::future::pending();
        assert!(run(&sh("exit 0"), long, never).await.succeeded());
        assert_eq!(
            run(&sh("exit 3"), long, std::future::pending()).await,
            ScriptEnd::Exited(3)
        );
        let short = Duration::from_millis(200);
        assert_eq!(
            run(&sh("sleep 30"), short, std::future::pending()).await,
            ScriptEnd::TimedOut(short)
        );
        assert_eq!(
            run(&sh("sleep 30"), long, tokio::time::sleep(short)).await,
            ScriptEnd::Cancelled
        );
        assert!(matches!(
            run(
                &["/nonexistent/script".to_string()],
                long,
                std::future::pending()
            )
            .await,
            ScriptEnd::SpawnFailed(_)
        ));
    }

    #[tokio::test]
    async fn a_timeout_kills_what_the_script_started_too() {
        let dir = tempfile::tempdir().expect("test setup");
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let end = run(
            &sh(&script),
            Duration::from_millis(500),
            std::future::pending(),
        )
        .await;
        assert!(matches!(end, ScriptEnd::TimedOut(_)));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("test setup")
            .trim()
            .parse()
            .expect("test setup");
        // Killed with its group; reaped by init, so give it a moment to vanish.
        let mut alive = true;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            alive = !stat.is_empty() && !stat.contains(") Z ");
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !alive,
            "the script's background sleep {pid} survived the kill"
        );
    }
}
