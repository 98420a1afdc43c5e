//! patronictl's verbs, as `pgwardenctl` runs them: each reads the cluster from etcd, asks
//! before it acts (unless `--force`), sends the members' REST API what patronictl sends
//! and prints what patronictl prints. `Ok(false)` means a member refused or failed.

use std::time::Duration;

use anyhow::Context;

use super::info;
use super::ops::{self, RoleFilter};
use super::session::{confirm, leader_first, timestamp, unreachable_member, Session, API_TIMEOUT};

/// `edit-config`'s options, patronictl's.
#[derive(Clone, Debug, Default)]
pub struct EditOptions {
    /// Do not show the diff.
    pub quiet: bool,
    /// `-s key.path=value` pairs.
    pub set: Vec<String>,
    /// `-p parameter=value` pairs.
    pub pg: Vec<String>,
    /// A YAML file merged in (`-` for standard input).
    pub apply: Option<String>,
    /// A YAML file that replaces the configuration (`-` for standard input).
    pub replace: Option<String>,
    /// Do not ask for confirmation.
    pub force: bool,
}

/// `why`'s options.
#[derive(Clone, Debug)]
pub struct WhyOptions {
    /// Episodes to show, the newest.
    pub episodes: usize,
    /// Decisions to fetch at most.
    pub limit: usize,
    /// Only decisions of these kinds (comma-separated, see `GET /decisions`).
    pub kind: Option<String>,
    /// Only decisions since (RFC 3339 or Unix seconds).
    pub since: Option<String>,
    /// Print the endpoint's JSON.
    pub json: bool,
}

/// A query-string value, percent-encoded (RFC 3986 unreserved characters kept).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b',' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `list`'s options.
#[derive(Clone, Debug)]
pub struct ListOptions {
    /// Show the restart and tag columns even when no member has a value for them.
    pub extended: bool,
    /// Print the time before each listing.
    pub timestamp: bool,
    /// How to print.
    pub format: super::list::Format,
    /// List again every so often until interrupted.
    pub watch: Option<Duration>,
}

impl Session {
    /// `patronictl list` (and `topology`, the `Topology` format): the members, their
    /// roles, states, timelines and lag; every `watch` seconds until interrupted when set.
    pub fn list(&self, options: &ListOptions) -> anyhow::Result<bool> {
        loop {
            let started = std::time::Instant::now();
            if options.timestamp {
                println!("{}", timestamp());
            }
            let view = self.view()?;
            let listing = super::list::render(&self.scope, &view, options.extended, options.format);
            println!("{listing}");
            let Some(every) = options.watch else {
                return Ok(true);
            };
            std::thread::sleep(every.saturating_sub(started.elapsed()));
        }
    }

    /// `patronictl restart`: POST `/restart` to each member named (all when none is) of
    /// `role`, now or at `options.scheduled`; with `--pending` only those pending a restart.
    pub fn restart(
        &self,
        names: &[String],
        role: RoleFilter,
        options: &ops::RestartOptions,
        force: bool,
    ) -> anyhow::Result<bool> {
        let view = self.view()?;
        let mut members = ops::select(&view, names, role).map_err(anyhow::Error::msg)?;
        if options.pending && options.scheduled.is_none() {
            members.retain(|m| ops::pending_restart(m));
            if members.is_empty() {
                println!("No member is pending a restart");
                return Ok(true);
            }
        }
        let listed: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        let when = options
            .scheduled
            .as_deref()
            .map_or(String::new(), |at| format!(" at {at}"));
        confirm(
            force,
            &format!(
                "Are you sure you want to restart members {}{when}?",
                listed.join(", ")
            ),
        )?;
        let body = ops::restart_body(options);
        // An immediate restart answers once PostgreSQL is back.
        let wait = Duration::from_secs(600);
        let mut all_ok = true;
        for member in members {
            if options.scheduled.is_some() && force && ops::has_scheduled_restart(member) {
                // patronictl --force replaces a scheduled restart.
                let _ = self.call(member, "DELETE", "/restart", None, API_TIMEOUT);
            }
            let outcome = match self.call(member, "POST", "/restart", Some(body.clone()), wait) {
                Ok((status, text)) => ops::restart_outcome(&member.name, status, &text),
                Err(error) => unreachable_member(&member.name, "restart", &error),
            };
            println!("{}", outcome.line);
            all_ok &= outcome.ok;
        }
        Ok(all_ok)
    }

    /// `patronictl reload`: POST `/reload` to each member named of `role`.
    pub fn reload(&self, names: &[String], role: RoleFilter, force: bool) -> anyhow::Result<bool> {
        let view = self.view()?;
        let members = ops::select(&view, names, role).map_err(anyhow::Error::msg)?;
        let listed: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        confirm(
            force,
            &format!(
                "Are you sure you want to reload members {}?",
                listed.join(", ")
            ),
        )?;
        let loop_wait = self.loop_wait(&view);
        let mut all_ok = true;
        for member in members {
            let outcome = match self.call(member, "POST", "/reload", None, API_TIMEOUT) {
                Ok((status, text)) => ops::reload_outcome(&member.name, status, &text, loop_wait),
                Err(error) => unreachable_member(&member.name, "reload", &error),
            };
            println!("{}", outcome.line);
            all_ok &= outcome.ok;
        }
        Ok(all_ok)
    }

    /// `patronictl flush`: forget scheduled restarts (`target` `restart`) or the scheduled
    /// switchover (`switchover`).
    pub fn flush(
        &self,
        names: &[String],
        target: &str,
        role: RoleFilter,
        force: bool,
    ) -> anyhow::Result<bool> {
        let view = self.view()?;
        match target {
            "restart" => {
                let members = ops::select(&view, names, role).map_err(anyhow::Error::msg)?;
                let listed: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                confirm(
                    force,
                    &format!(
                        "Are you sure you want to flush scheduled restarts of members {}?",
                        listed.join(", ")
                    ),
                )?;
                let mut all_ok = true;
                for member in members {
                    if !ops::has_scheduled_restart(member) {
                        println!("No scheduled restart for member {}", member.name);
                        continue;
                    }
                    let action = "flush scheduled restart";
                    let outcome = match self.call(member, "DELETE", "/restart", None, API_TIMEOUT) {
                        Ok((status, text)) => {
                            ops::action_outcome(action, &member.name, status, &text)
                        }
                        Err(error) => unreachable_member(&member.name, action, &error),
                    };
                    println!("{}", outcome.line);
                    all_ok &= outcome.ok;
                }
                Ok(all_ok)
            }
            "switchover" => {
                let scheduled = view
                    .failover
                    .as_ref()
                    .is_some_and(|f| f.value.scheduled_at.is_some());
                if !scheduled {
                    println!("No pending scheduled switchover");
                    return Ok(true);
                }
                // As patronictl: the first member that answers 200 or 404 settles it.
                for member in leader_first(&view) {
                    match self.call(member, "DELETE", "/switchover", None, API_TIMEOUT) {
                        Ok((200, text)) => {
                            println!("Success: {text}");
                            return Ok(true);
                        }
                        Ok((404, text)) => {
                            println!("Failed: {text}");
                            return Ok(false);
                        }
                        Ok((status, text)) => println!(
                            "Failed: member={}, status_code={status}, ({text})",
                            member.name
                        ),
                        Err(error) => println!("Member {} is not accessible: {error}", member.name),
                    }
                }
                anyhow::bail!("no member could delete the scheduled switchover")
            }
            other => anyhow::bail!("cannot flush {other:?}: name restart or switchover"),
        }
    }

    /// `patronictl switchover` and `failover`: POST the request to the leader (or the
    /// candidate when there is none), print its answer and the cluster after.
    pub fn hand_over(&self, asked: &ops::HandOver<'_>, force: bool) -> anyhow::Result<bool> {
        let view = self.view()?;
        let scope = &self.scope;
        let body = ops::hand_over_body(&view, scope, asked).map_err(anyhow::Error::msg)?;
        let action = if asked.switchover {
            "switchover"
        } else {
            "failover"
        };
        let demote = view
            .leader_name()
            .map(|l| format!(", demoting current leader {l}"))
            .unwrap_or_default();
        let question = match asked.scheduled_at {
            Some(at) => format!(
                "Are you sure you want to schedule switchover of cluster {scope} at {at}{demote}?"
            ),
            None => format!("Are you sure you want to {action} cluster {scope}{demote}?"),
        };
        confirm(force, &question)?;
        // patronictl asks the leader, or the candidate when there is none.
        let target = view
            .leader_name()
            .or(asked.candidate)
            .and_then(|name| view.members.get(name))
            .ok_or_else(|| anyhow::anyhow!("no member to send the {action} to"))?;
        let wait = Duration::from_secs(180);
        let outcome = match self.call(target, "POST", &format!("/{action}"), Some(body), wait) {
            Ok((status, text)) => {
                ops::hand_over_outcome(asked.switchover, status, &text, &timestamp())
            }
            Err(error) => unreachable_member(&target.name, action, &error),
        };
        println!("{}", outcome.line);
        println!(
            "{}",
            super::list::render(scope, &self.view()?, false, super::list::Format::Pretty)
        );
        Ok(outcome.ok)
    }

    /// `patronictl show-config`: `/config` as YAML.
    pub fn show_config(&self) -> anyhow::Result<bool> {
        let config = self
            .read_config()?
            .map(|(value, _)| value)
            .unwrap_or_default();
        // patronictl's echo adds a newline after the document's own.
        println!(
            "{}",
            info::config_yaml(&config).map_err(anyhow::Error::msg)?
        );
        Ok(true)
    }

    /// `pgwardenctl why [MEMBER]`: the member's (the leader's when none is named) last
    /// decisions, from its `GET /decisions`, as episodes with a summary each; with `json`,
    /// the endpoint's answer as it is.
    pub fn why(&self, member: Option<&str>, options: &WhyOptions) -> anyhow::Result<bool> {
        let view = self.view()?;
        let name = match member {
            Some(name) => name,
            None => view
                .leader_name()
                .context("the cluster has no leader: name a member")?,
        };
        let target = view
            .members
            .get(name)
            .with_context(|| format!("{name} is not a member of {}", self.scope))?;
        let mut path = format!("/decisions?limit={}", options.limit);
        for (key, value) in [("kind", &options.kind), ("since", &options.since)] {
            if let Some(value) = value {
                path.push_str(&format!("&{key}={}", percent_encode(value)));
            }
        }
        let (status, body) = self
            .call(target, "GET", &path, None, API_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{name}: GET /decisions: {e}"))?;
        if status != 200 {
            anyhow::bail!("{name}: GET /decisions answered {status}: {}", body.trim());
        }
        if options.json {
            println!("{}", body.trim());
            return Ok(true);
        }
        let answer: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("{name}: GET /decisions"))?;
        let decisions: Vec<crate::telemetry::decisions::Decision> =
            serde_json::from_value(answer["decisions"].clone())
                .with_context(|| format!("{name}: GET /decisions: the decisions"))?;
        print!("{}", super::why::render(name, &decisions, options.episodes));
        Ok(true)
    }

    /// `patronictl history`: the timelines the cluster went through.
    pub fn history(&self) -> anyhow::Result<bool> {
        println!("{}", info::history_table(&self.view()?.history));
        Ok(true)
    }

    /// `patronictl dsn`: how to connect to the leader, a replica or a named member.
    pub fn dsn(&self, role: Option<info::DsnRole>, member: Option<&str>) -> anyhow::Result<bool> {
        println!(
            "{}",
            info::dsn(&self.view()?, role, member).map_err(anyhow::Error::msg)?
        );
        Ok(true)
    }

    /// `patronictl version CLUSTER [MEMBER]...`: each member's agent and PostgreSQL versions.
    pub fn versions(&self, names: &[String]) -> anyhow::Result<bool> {
        let view = self.view()?;
        println!();
        let mut all_ok = true;
        for member in view.members.values() {
            if !names.is_empty() && !names.contains(&member.name) {
                continue;
            }
            let answer = self
                .call(member, "GET", "/patroni", None, API_TIMEOUT)
                .and_then(|(_, text)| serde_json::from_str(&text).map_err(|e| e.to_string()));
            match answer {
                Ok(patroni) => println!("{}", info::version_line(&member.name, &patroni)),
                Err(error) => {
                    all_ok = false;
                    println!("{}: failed to get version: {error}", member.name);
                }
            }
        }
        Ok(all_ok)
    }

    /// `patronictl pause` / `resume` (`--wait`: until every member reports it).
    pub fn toggle_pause(&self, paused: bool, wait: bool) -> anyhow::Result<bool> {
        let view = self.view()?;
        let now_paused = view.config.as_ref().is_some_and(|c| c.value.pause);
        let word = if paused { "paused" } else { "resumed" };
        if now_paused == paused {
            anyhow::bail!("Cluster is already {word}");
        }
        // Patroni's body: `null` deletes the key on resume.
        let body = serde_json::json!({ "pause": if paused { serde_json::json!(true) } else { serde_json::Value::Null } });
        let mut answered = false;
        for member in leader_first(&view) {
            match self.call(member, "PATCH", "/config", Some(body.clone()), API_TIMEOUT) {
                Ok((200, _)) => {
                    answered = true;
                    break;
                }
                Ok((status, text)) => println!(
                    "Failed: member={}, status_code={status}, ({text})",
                    member.name
                ),
                Err(error) => println!("Member {} is not accessible: {error}", member.name),
            }
        }
        if !answered {
            anyhow::bail!("no member accepted the change");
        }
        if wait {
            println!("Waiting for cluster to become {word}");
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                let waiting = ops::members_not_yet(&self.view()?, paused);
                if waiting.is_empty() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    anyhow::bail!("members not yet {word} after 120 s: {}", waiting.join(", "));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        println!("Success: cluster management is {word}");
        Ok(true)
    }

    /// `patronictl reinit`: each standby named is wiped and cloned again (POST
    /// `/reinitialize`); one already being rebuilt is asked about (or, with `--force`,
    /// restarted); `--wait` follows them until they are done.
    pub fn reinit(
        &self,
        names: &[String],
        force: bool,
        from_leader: bool,
        wait: bool,
    ) -> anyhow::Result<bool> {
        if names.is_empty() {
            anyhow::bail!("name the members to reinitialize");
        }
        let view = self.view()?;
        let members = ops::select(&view, names, RoleFilter::Replica).map_err(anyhow::Error::msg)?;
        let listed: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        confirm(
            force,
            &format!(
                "Are you sure you want to reinitialize members {}?",
                listed.join(", ")
            ),
        )?;
        let mut all_ok = true;
        let mut waiting = Vec::new();
        for member in members {
            let mut body = serde_json::json!({ "force": force, "from_leader": from_leader });
            let started = loop {
                let answer = self.call(
                    member,
                    "POST",
                    "/reinitialize",
                    Some(body.clone()),
                    API_TIMEOUT,
                );
                let (status, text) = match answer {
                    Ok(answer) => answer,
                    Err(error) => {
                        println!(
                            "{}",
                            unreachable_member(&member.name, "reinitialize", &error).line
                        );
                        break false;
                    }
                };
                let outcome = ops::action_outcome("reinitialize", &member.name, status, &text);
                println!("{}", outcome.line);
                if !outcome.ok
                    && text.ends_with(" already in progress")
                    && !force
                    && ask("Do you want to cancel it and reinitialize anyway?")?
                {
                    body["force"] = serde_json::Value::Bool(true);
                    continue;
                }
                break outcome.ok;
            };
            all_ok &= started;
            if started && wait {
                waiting.push((member, 0));
            }
        }
        let mut shown = Vec::new();
        while !waiting.is_empty() {
            let names: Vec<&str> = waiting.iter().map(|(m, _)| m.name.as_str()).collect();
            if names != shown {
                println!(
                    "Waiting for reinitialize to complete on: {}",
                    names.join(", ")
                );
                shown = names.clone();
            }
            std::thread::sleep(Duration::from_secs(2));
            waiting.retain_mut(|(member, failed_polls)| {
                let state = self
                    .call(member, "GET", "/patroni", None, API_TIMEOUT)
                    .ok()
                    .and_then(|(_, text)| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .and_then(|p| p.get("state").and_then(|s| s.as_str()).map(str::to_owned));
                let Some(state) = state else {
                    // An API that stops answering is not waited for forever.
                    *failed_polls += 1;
                    if *failed_polls >= MAX_FAILED_POLLS {
                        println!(
                            "Failed: {} did not answer GET /patroni {MAX_FAILED_POLLS} times in a row",
                            member.name
                        );
                        all_ok = false;
                        return false;
                    }
                    return true;
                };
                *failed_polls = 0;
                let done = state != "creating replica";
                if done {
                    println!("Reinitialize is completed on: {}", member.name);
                }
                !done
            });
        }
        Ok(all_ok)
    }

    /// `patronictl remove`: every key of the cluster is deleted from etcd, after the
    /// operator typed the cluster's name, "Yes I am aware" and, when a leader holds the
    /// key, its name.
    pub fn remove(&self, format: super::list::Format) -> anyhow::Result<bool> {
        let view = self.view()?;
        println!("{}", super::list::render(&self.scope, &view, false, format));
        if prompt("Please confirm the cluster name to remove")? != self.scope {
            anyhow::bail!("Cluster names specified do not match");
        }
        let aware = "Yes I am aware";
        let typed = prompt(&format!(
            "You are about to remove all information in DCS for {}, please type: \"{aware}\"",
            self.scope
        ))?;
        if typed != aware {
            anyhow::bail!("You did not exactly type \"{aware}\"");
        }
        if let Some(leader) = view.leader_name() {
            let typed = prompt(
                "This cluster currently is healthy. Please specify the leader name to continue",
            )?;
            if typed != leader {
                anyhow::bail!("You did not specify the current leader of the cluster");
            }
        }
        let deleted = self.block_on(async {
            let store = self.store().await?;
            super::session::retrying(|| store.delete_cluster())
                .await
                .context("deleting the cluster's keys from etcd")
        })?;
        tracing::info!(scope = %self.scope, deleted, "cluster removed from etcd");
        Ok(true)
    }

    /// `patronictl edit-config`: the cluster's `/config` changed by `-s`/`-p` pairs, a
    /// merged (`--apply`) or replacing (`--replace`) YAML file, or the operator's editor;
    /// the diff shown, the result checked as every agent would check it (refused with the
    /// field named), then written only if nobody changed it meanwhile (compare-and-swap on
    /// the key's revision).
    pub fn edit_config(&self, options: &EditOptions) -> anyhow::Result<bool> {
        use super::edit;
        let (current, revision) = self.read_config()?.ok_or_else(|| {
            anyhow::anyhow!(
                "The config key does not exist in the cluster {}",
                self.scope
            )
        })?;
        let before = edit::to_yaml(&current);
        let mut changed = current.clone();
        let mut edited = false;
        if let Some(source) = &options.replace {
            let text = read_source(source)?;
            changed = edit::apply_document(serde_json::json!({}), &text, source)
                .map_err(anyhow::Error::msg)?;
            edited = true;
        }
        if let Some(source) = &options.apply {
            let text = read_source(source)?;
            changed = edit::apply_document(changed, &text, source).map_err(anyhow::Error::msg)?;
            edited = true;
        }
        let pairs = options
            .set
            .iter()
            .cloned()
            .chain(options.pg.iter().map(|p| edit::pg_pair(p)));
        for pair in pairs {
            edit::set_pair(&mut changed, &pair).map_err(anyhow::Error::msg)?;
            edited = true;
        }
        if !edited {
            let text = self.invoke_editor(&before)?;
            changed = edit::apply_document(serde_json::json!({}), &text, "the edited file")
                .map_err(anyhow::Error::msg)?;
        }
        if changed == current {
            if !options.quiet {
                println!("Not changed");
            }
            return Ok(true);
        }
        if !options.quiet {
            println!("{}", edit::unified_diff(&before, &edit::to_yaml(&changed)));
        }
        let from_stdin = [&options.apply, &options.replace]
            .iter()
            .any(|s| s.as_deref() == Some("-"));
        if from_stdin && !options.force {
            println!("Use --force option to apply changes");
            return Ok(true);
        }
        check_dynamic_config(&changed)?;
        confirm(options.force, "Apply these changes?")?;
        let document = serde_json::to_string(&changed)?;
        let written = self.block_on(async {
            let store = self.store().await?;
            super::session::retrying(|| store.write_config(document.clone(), Some(revision)))
                .await
                .context("writing /config to etcd")
        })?;
        if !written {
            anyhow::bail!("Config modification aborted due to concurrent changes");
        }
        println!("Configuration changed");
        Ok(true)
    }

    /// `$EDITOR` (else `editor`, else `vi`) on a temporary copy of `text`; what it left.
    fn invoke_editor(&self, text: &str) -> anyhow::Result<String> {
        let command = std::env::var("EDITOR")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| {
                ["editor", "vi"]
                    .into_iter()
                    .find(|e| on_path(e))
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "EDITOR environment variable is not set. editor or vi are not available"
                )
            })?;
        // Created exclusively, readable by the operator alone, removed when dropped.
        let file = tempfile::Builder::new()
            .prefix(&format!("{}-config-", self.scope.replace('/', "_")))
            .suffix(".yaml")
            .tempfile()
            .context("creating a temporary file for the editor")?;
        let path = file.path().to_path_buf();
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or("vi");
        let status = std::process::Command::new(program)
            .args(words)
            .arg(&path)
            .status()
            .with_context(|| format!("running the editor {command:?}"));
        let edited = std::fs::read_to_string(&path);
        drop(file);
        let status = status?;
        if !status.success() {
            anyhow::bail!(
                "Editor exited with return code {}",
                status.code().unwrap_or(-1)
            );
        }
        edited.with_context(|| format!("reading {}", path.display()))
    }
}

/// How many `GET /patroni` in a row may go unanswered while `reinit --wait` waits.
const MAX_FAILED_POLLS: u32 = 5;

/// Asks a yes/no question (patronictl's `click.confirm`, default no).
fn ask(question: &str) -> anyhow::Result<bool> {
    Ok(matches!(
        prompt(&format!("{question} [y/N]"))?
            .to_ascii_lowercase()
            .as_str(),
        "y" | "yes"
    ))
}

/// Prints `question: ` and reads one line from stdin, trimmed.
fn prompt(question: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    print!("{question}: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer)? == 0 {
        anyhow::bail!("Aborted! (no answer on standard input)");
    }
    Ok(answer.trim().to_string())
}

/// Whether `program` is an executable file on `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A file's text, or standard input's for `-`.
fn read_source(source: &str) -> anyhow::Result<String> {
    if source == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(source).with_context(|| format!("reading {source}"))
}

/// What every agent would make of a `/config`: refused here with the field named, so a
/// bad value never reaches the cluster (the agents would keep their last good one).
fn check_dynamic_config(document: &serde_json::Value) -> anyhow::Result<()> {
    let refused = |e: crate::config::ConfigError| {
        anyhow::anyhow!("the edited configuration is refused, nothing was written: {e}")
    };
    let (mut config, warnings) =
        crate::config::DynamicConfig::from_json_with_warnings(document, "").map_err(refused)?;
    for warning in warnings {
        // What every agent will log: a key it does not act on is said before it is written.
        eprintln!("Warning: {warning}");
    }
    let margin_ms = crate::config::PgwardenConfig::default().demotion_margin_ms;
    config.adjust_demotion_budget("config", margin_ms, &mut Vec::new());
    config
        .validate_demotion_budget("config", margin_ms)
        .map_err(refused)
}
