//! Runs the callbacks the core asks for (`Effect::RunCallback`), as Patroni does: never
//! waited for by the decision loop (a callback that hangs delays no lease renewal and no
//! demotion), one at a time per class: a new `on_start`, `on_stop`, `on_restart` or
//! `on_role_change` kills the one of those still running (with what it started), and
//! `on_reload` has a slot of its own, so a reload never kills a role change's script. A
//! script still running after `pgwarden.callback_timeout_ms` is killed.
//!
//! A script is called as `<command> <callback> <role> <scope>`, e.g. `vip.sh on_role_change
//! primary batman`.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::core::{Callback, CallbackKind};
use crate::postgres::hooks::{self, Hooks, ScriptEnd};

/// How long a superseded callback may take to die before the next one starts anyway.
const SUPERSEDED_REAP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the callback runner is handed.
#[derive(Debug)]
pub enum CallbackWork {
    /// Run this callback, if configured.
    Run(Callback),
    /// Use these scripts from now on (`POST /reload`, SIGHUP).
    Hooks(Arc<Hooks>),
}

/// A running callback: told to stop through `cancel`, finished when `done` is.
struct Running {
    kind: CallbackKind,
    cancel: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

/// The slot a callback runs in: `on_reload` beside the others, as in Patroni.
fn slot_of(kind: CallbackKind) -> usize {
    usize::from(kind == CallbackKind::OnReload)
}

/// Starts the runner for the cluster `scope`; send it work through the returned channel.
pub fn spawn(hooks: Arc<Hooks>, scope: String) -> mpsc::UnboundedSender<CallbackWork> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(rx, hooks, scope));
    tx
}

async fn run(
    mut work: mpsc::UnboundedReceiver<CallbackWork>,
    mut hooks: Arc<Hooks>,
    scope: String,
) {
    let mut slots: [Option<Running>; 2] = [None, None];
    while let Some(item) = work.recv().await {
        let callback = match item {
            CallbackWork::Hooks(new) => {
                hooks = new;
                continue;
            }
            CallbackWork::Run(callback) => callback,
        };
        let Some(command) = hooks.callbacks.get(&callback.kind) else {
            continue;
        };
        let slot = &mut slots[slot_of(callback.kind)];
        if let Some(previous) = slot.take() {
            if !previous.done.is_finished() {
                tracing::warn!(
                    running = previous.kind.name(),
                    next = callback.kind.name(),
                    "callback still running: killed, a newer one replaces it"
                );
                let _ = previous.cancel.send(());
                // Killed and reaped in a few milliseconds: the next one starts after it
                // (bounded: a child stuck in the kernel must not hold every later one).
                let _ = tokio::time::timeout(SUPERSEDED_REAP_WAIT, previous.done).await;
            }
        }
        let mut argv = command.clone();
        argv.extend([
            callback.kind.name().to_string(),
            callback.role.name().to_string(),
            scope.clone(),
        ]);
        let child = match hooks::spawn(&argv) {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(command = %argv.join(" "), %error, "callback could not be started");
                continue;
            }
        };
        tracing::info!(command = %argv.join(" "), pid = child.id(), "callback started");
        let (cancel, cancelled) = oneshot::channel::<()>();
        let timeout = hooks.timeout;
        let done = tokio::spawn(async move {
            let end = hooks::wait_bounded(child, timeout, async {
                let _ = cancelled.await;
            })
            .await;
            let command = argv.join(" ");
            match end {
                ScriptEnd::Exited(0) => tracing::info!(%command, "callback finished"),
                ScriptEnd::Cancelled => tracing::info!(%command, "callback killed: superseded"),
                ScriptEnd::TimedOut(_) => tracing::warn!(%command, %end, "callback killed"),
                other => tracing::warn!(%command, end = %other, "callback failed"),
            }
        });
        *slot = Some(Running {
            kind: callback.kind,
            cancel,
            done,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::CallbackRole;
    use std::time::Duration;

    fn recorder(dir: &std::path::Path, sleep_secs: u32) -> Vec<String> {
        let script = dir.join("cb.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"start $1 $2 $3\" >> {log}\nsleep {sleep_secs}\necho \"end $1\" >> {log}\n",
                log = dir.join("calls").display()
            ),
        )
        .expect("test setup");
        vec!["/bin/sh".into(), script.display().to_string()]
    }

    async fn calls_after(dir: &std::path::Path, expected_lines: usize) -> Vec<String> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(dir.join("calls")).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= expected_lines {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn a_new_callback_kills_the_running_one_but_a_reload_runs_beside_it() {
        let dir = tempfile::tempdir().expect("test setup");
        let command = recorder(dir.path(), 2);
        let hooks = Hooks {
            callbacks: CallbackKind::ALL
                .into_iter()
                .map(|k| (k, command.clone()))
                .collect(),
            timeout: Duration::from_secs(30),
            ..Hooks::default()
        };
        let runner = spawn(Arc::new(hooks), "batman".into());
        let send = |kind, role| {
            runner
                .send(CallbackWork::Run(Callback { kind, role }))
                .expect("test setup")
        };
        send(CallbackKind::OnStop, CallbackRole::Primary);
        calls_after(dir.path(), 1).await;
        send(CallbackKind::OnReload, CallbackRole::Replica);
        send(CallbackKind::OnRoleChange, CallbackRole::Replica);
        let calls = calls_after(dir.path(), 5).await;
        assert_eq!(calls[0], "start on_stop primary batman");
        assert!(calls.contains(&"start on_reload replica batman".to_string()));
        assert!(calls.contains(&"start on_role_change replica batman".to_string()));
        assert!(calls.contains(&"end on_reload".to_string()), "{calls:?}");
        assert!(
            calls.contains(&"end on_role_change".to_string()),
            "{calls:?}"
        );
        assert!(
            !calls.contains(&"end on_stop".to_string()),
            "on_stop was superseded and must not have finished: {calls:?}"
        );
    }

    #[tokio::test]
    async fn an_unconfigured_callback_runs_nothing_and_a_timeout_kills() {
        let dir = tempfile::tempdir().expect("test setup");
        let command = recorder(dir.path(), 60);
        let hooks = Hooks {
            callbacks: [(CallbackKind::OnStart, command)].into_iter().collect(),
            timeout: Duration::from_millis(300),
            ..Hooks::default()
        };
        let runner = spawn(Arc::new(hooks), "batman".into());
        let run = |kind| {
            runner
                .send(CallbackWork::Run(Callback {
                    kind,
                    role: CallbackRole::Replica,
                }))
                .expect("test setup")
        };
        run(CallbackKind::OnStop);
        run(CallbackKind::OnStart);
        let calls = calls_after(dir.path(), 1).await;
        assert_eq!(calls, vec!["start on_start replica batman"]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calls = calls_after(dir.path(), 2).await;
        assert_eq!(
            calls.len(),
            1,
            "killed by its timeout before it ended: {calls:?}"
        );
    }
}
