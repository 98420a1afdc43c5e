//! `pgwardenctl`: the operator CLI (patronictl's commands, growing) and the policy authoring
//! tools (`pgwardenctl policy new|check|test|diff`), which need no configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pgwarden::ctl::info;
use pgwarden::ctl::ops::{self, RoleFilter};
use pgwarden::ctl::policy::PolicyCommand;

/// pgwarden's operator CLI.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (the agent's Patroni-format YAML; the `policy` commands do not
    /// read it).
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the cluster's members, roles, states, timelines and lag.
    List {
        /// Cluster name (must match the configuration's scope; informational).
        cluster: Option<String>,
    },
    /// Failover policy authoring: create, check, and replay traces through policy components.
    /// Set PGWARDEN_LOG (e.g. `info`) to see the policies' own log lines on stderr.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Restart PostgreSQL on the members named (all when none is), in their role, as
    /// `patronictl restart`: the leader keeps its key. Exits 1 if any member failed.
    Restart {
        /// Cluster name, then member names.
        #[arg(value_name = "CLUSTER [MEMBER]...")]
        names: Vec<String>,
        /// Only members of this role.
        #[arg(long, value_enum, default_value = "any")]
        role: RoleFilter,
        /// Only members pending a restart (a parameter waits for it).
        #[arg(long)]
        pending: bool,
        /// When: an ISO 8601 time (UTC when no zone is given), or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Only members whose PostgreSQL is older than this version (`15.4`).
        #[arg(long = "pg-version")]
        pg_version: Option<String>,
        /// How long to wait for PostgreSQL to come back (seconds, or with a unit: `2min`).
        #[arg(long)]
        timeout: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Re-read the members' configuration files and apply them, as `patronictl reload`.
    Reload {
        /// Cluster name, then member names.
        #[arg(value_name = "CLUSTER [MEMBER]...")]
        names: Vec<String>,
        /// Only members of this role.
        #[arg(long, value_enum, default_value = "any")]
        role: RoleFilter,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Forget scheduled restarts (`... restart`) or the scheduled switchover (`...
    /// switchover`), as `patronictl flush`.
    Flush {
        /// Cluster name, member names, then `restart` or `switchover`.
        #[arg(value_name = "CLUSTER [MEMBER]... restart|switchover", required = true)]
        names: Vec<String>,
        /// Only members of this role.
        #[arg(long, value_enum, default_value = "any")]
        role: RoleFilter,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Maintenance mode on: no automatic failover or PostgreSQL action, as `patronictl pause`.
    Pause {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
        /// Wait until every member says it is paused.
        #[arg(long)]
        wait: bool,
    },
    /// Maintenance mode off, as `patronictl resume`.
    Resume {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
        /// Wait until every member says it is resumed.
        #[arg(long)]
        wait: bool,
    },
    /// Hand the leadership to a standby, now or at a time (`--scheduled`), as `patronictl
    /// switchover`. Exits 1 when the cluster refuses.
    Switchover {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
        /// The current leader (default: whoever leads).
        #[arg(long, visible_alias = "primary")]
        leader: Option<String>,
        /// The standby to promote (default: the healthiest the leader's policy picks).
        #[arg(long)]
        candidate: Option<String>,
        /// When: an ISO 8601 time (UTC when no zone is given), or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Promote a named standby, with or without a leader, as `patronictl failover`.
    Failover {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
        /// The standby to promote.
        #[arg(long)]
        candidate: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Print the cluster-wide configuration (`/config`) as YAML, as `patronictl show-config`.
    ShowConfig {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
    },
    /// The timelines the cluster went through (`/history`), as `patronictl history`.
    History {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
    },
    /// `host=... port=...` of the leader (or `--role replica`, or `--member`), as
    /// `patronictl dsn`.
    Dsn {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
        /// Which member: the leader (default), a replica, or any.
        #[arg(long, value_enum)]
        role: Option<DsnRoleArg>,
        /// This member.
        #[arg(long)]
        member: Option<String>,
    },
    /// pgwardenctl's version and, with a cluster name, every member's agent and PostgreSQL
    /// versions, as `patronictl version`.
    Version {
        /// Cluster name, then member names (all when none is).
        #[arg(value_name = "CLUSTER [MEMBER]...")]
        names: Vec<String>,
    },
    /// Feed a node's recorded inputs (`pgwarden.input_log`) to a fresh core built from its
    /// configuration file (-c) and check it does what the agent did: the same effects and
    /// transitions after every input. Prints the transitions; exits 1 at the first input
    /// where this build decides otherwise.
    Replay {
        /// The input log the agent wrote.
        input_log: PathBuf,
    },
}

/// `dsn --role`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DsnRoleArg {
    /// The leader.
    Leader,
    /// The leader (patronictl's other name).
    Primary,
    /// A standby.
    Replica,
    /// Any member.
    Any,
}

fn default_config() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".config/patroni/patronictl.yaml")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy { command } => {
            init_policy_log();
            pgwarden::ctl::policy::run(&command)
        }
        Command::List { cluster } => finish(list(cli.config, cluster)),
        Command::Replay { input_log } => finish(replay(cli.config, &input_log)),
        Command::Restart {
            names,
            role,
            pending,
            scheduled,
            pg_version,
            timeout,
            force,
        } => {
            let options = ops::RestartOptions {
                pending,
                scheduled: scheduled.filter(|s| s != "now").map(with_zone),
                pg_version,
                timeout,
            };
            finish_ops(cli.config, |ctl| ctl.restart(&names, role, &options, force))
        }
        Command::Reload { names, role, force } => {
            finish_ops(cli.config, |ctl| ctl.reload(&names, role, force))
        }
        Command::Flush { names, role, force } => {
            finish_ops(cli.config, |ctl| ctl.flush(&names, role, force))
        }
        Command::Switchover {
            cluster,
            leader,
            candidate,
            scheduled,
            force,
        } => {
            let scheduled = scheduled.filter(|s| s != "now").map(with_zone);
            let asked = ops::HandOver {
                switchover: true,
                leader: leader.as_deref(),
                candidate: candidate.as_deref(),
                scheduled_at: scheduled.as_deref(),
            };
            finish_ops(cli.config, |ctl| ctl.hand_over(cluster, &asked, force))
        }
        Command::Failover {
            cluster,
            candidate,
            force,
        } => {
            let asked = ops::HandOver {
                switchover: false,
                leader: None,
                candidate: candidate.as_deref(),
                scheduled_at: None,
            };
            finish_ops(cli.config, |ctl| ctl.hand_over(cluster, &asked, force))
        }
        Command::ShowConfig { cluster } => finish_ops(cli.config, |ctl| ctl.show_config(cluster)),
        Command::History { cluster } => finish_ops(cli.config, |ctl| ctl.history(cluster)),
        Command::Dsn {
            cluster,
            role,
            member,
        } => {
            let role = role.map(|r| match r {
                DsnRoleArg::Leader | DsnRoleArg::Primary => info::DsnRole::Leader,
                DsnRoleArg::Replica => info::DsnRole::Replica,
                DsnRoleArg::Any => info::DsnRole::Any,
            });
            finish_ops(cli.config, |ctl| ctl.dsn(cluster, role, member.as_deref()))
        }
        Command::Version { names } => {
            println!("pgwardenctl version {}", env!("CARGO_PKG_VERSION"));
            if names.is_empty() {
                return ExitCode::SUCCESS;
            }
            finish_ops(cli.config, |ctl| ctl.versions(&names))
        }
        Command::Pause { cluster, wait } => {
            finish_ops(cli.config, |ctl| ctl.toggle_pause(cluster, true, wait))
        }
        Command::Resume { cluster, wait } => {
            finish_ops(cli.config, |ctl| ctl.toggle_pause(cluster, false, wait))
        }
    }
}

/// An ISO 8601 time without a zone is taken as UTC (patronictl takes the local zone).
fn with_zone(at: String) -> String {
    let zoned = at.ends_with('Z')
        || at
            .get(10..)
            .is_some_and(|time| time.contains('+') || time.contains('-'));
    if zoned {
        at
    } else {
        format!("{at}+00:00")
    }
}

/// Runs an operator verb: `Ok(false)` (a member failed) exits 1 as an error does.
fn finish_ops(config: Option<PathBuf>, run: impl FnOnce(&Ctl) -> anyhow::Result<bool>) -> ExitCode {
    let result = Ctl::open(config).and_then(|ctl| run(&ctl));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

/// The cluster an operator verb acts on: its configuration, the lock store, the members'
/// REST APIs.
struct Ctl {
    config: pgwarden::config::Config,
    runtime: tokio::runtime::Runtime,
}

/// How long a member's REST API may take for an immediate answer.
const API_TIMEOUT: Duration = Duration::from_secs(10);

impl Ctl {
    fn open(config: Option<PathBuf>) -> anyhow::Result<Ctl> {
        let path = config.unwrap_or_else(default_config);
        let loaded =
            pgwarden::config::load(&path).with_context(|| format!("reading {}", path.display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Ctl {
            config: loaded.config,
            runtime,
        })
    }

    /// The cluster as etcd has it now.
    fn view(&self) -> anyhow::Result<pgwarden::core::view::ClusterView> {
        self.runtime.block_on(async {
            let store = tokio::time::timeout(
                Duration::from_secs(10),
                pgwarden::runtime::connect_store(&self.config),
            )
            .await
            .context("connecting to etcd")?;
            store.load().await.context("reading the cluster from etcd")
        })
    }

    /// Checks the positional cluster name against the configured scope; the rest are
    /// member names.
    fn members_of<'a>(&self, names: &'a [String]) -> anyhow::Result<&'a [String]> {
        match names.split_first() {
            None => Ok(names),
            Some((cluster, members)) if *cluster == self.config.scope => Ok(members),
            Some((cluster, _)) => anyhow::bail!(
                "cluster {cluster:?} is not the configured scope {:?}",
                self.config.scope
            ),
        }
    }

    /// Sends `method path` to a member's REST API with the configured credentials.
    fn call(
        &self,
        member: &pgwarden::core::view::MemberInfo,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", ops::api_base(member));
        let auth = self.config.restapi.authentication.as_ref().map(|c| {
            (
                c.username.as_str(),
                c.password.as_deref().unwrap_or_default(),
            )
        });
        self.runtime
            .block_on(pgwarden::runtime::http::request_as(
                method,
                &url,
                body.map(|b| b.to_string()),
                auth,
                timeout,
            ))
            .map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()))
            .map_err(|e| e.to_string())
    }

    fn restart(
        &self,
        names: &[String],
        role: RoleFilter,
        options: &ops::RestartOptions,
        force: bool,
    ) -> anyhow::Result<bool> {
        let names = self.members_of(names)?;
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

    fn reload(&self, names: &[String], role: RoleFilter, force: bool) -> anyhow::Result<bool> {
        let names = self.members_of(names)?;
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
        let loop_wait = view
            .config
            .as_ref()
            .map_or(self.config.bootstrap.dcs.loop_wait, |c| c.value.loop_wait);
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

    fn flush(&self, names: &[String], role: RoleFilter, force: bool) -> anyhow::Result<bool> {
        let Some((target, names)) = names.split_last() else {
            anyhow::bail!("name what to flush: restart or switchover");
        };
        let names = self.members_of(names)?;
        let view = self.view()?;
        match target.as_str() {
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

    /// Checks an optional positional cluster name against the configured scope.
    fn check_cluster(&self, cluster: Option<String>) -> anyhow::Result<()> {
        match cluster {
            Some(cluster) => self.members_of(&[cluster]).map(|_| ()),
            None => Ok(()),
        }
    }

    fn hand_over(
        &self,
        cluster: Option<String>,
        asked: &ops::HandOver<'_>,
        force: bool,
    ) -> anyhow::Result<bool> {
        self.check_cluster(cluster)?;
        let view = self.view()?;
        let scope = &self.config.scope;
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
        println!("{}", pgwarden::ctl::list::render(scope, &self.view()?));
        Ok(outcome.ok)
    }

    fn show_config(&self, cluster: Option<String>) -> anyhow::Result<bool> {
        self.check_cluster(cluster)?;
        let config = self.runtime.block_on(async {
            let store = tokio::time::timeout(
                Duration::from_secs(10),
                pgwarden::runtime::connect_store(&self.config),
            )
            .await
            .context("connecting to etcd")?;
            store
                .read_config()
                .await
                .context("reading /config from etcd")
        })?;
        let config = config.map(|(value, _)| value).unwrap_or_default();
        print!(
            "{}",
            info::config_yaml(&config).map_err(anyhow::Error::msg)?
        );
        Ok(true)
    }

    fn history(&self, cluster: Option<String>) -> anyhow::Result<bool> {
        self.check_cluster(cluster)?;
        println!("{}", info::history_table(&self.view()?.history));
        Ok(true)
    }

    fn dsn(
        &self,
        cluster: Option<String>,
        role: Option<info::DsnRole>,
        member: Option<&str>,
    ) -> anyhow::Result<bool> {
        self.check_cluster(cluster)?;
        println!(
            "{}",
            info::dsn(&self.view()?, role, member).map_err(anyhow::Error::msg)?
        );
        Ok(true)
    }

    fn versions(&self, names: &[String]) -> anyhow::Result<bool> {
        let names = self.members_of(names)?;
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

    fn toggle_pause(
        &self,
        cluster: Option<String>,
        paused: bool,
        wait: bool,
    ) -> anyhow::Result<bool> {
        if let Some(cluster) = cluster {
            self.members_of(&[cluster])?;
        }
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
}

/// The members, the leader first (where patronictl sends cluster-wide requests).
fn leader_first(
    view: &pgwarden::core::view::ClusterView,
) -> Vec<&pgwarden::core::view::MemberInfo> {
    let leader = view.leader_name();
    let mut members: Vec<_> = view.members.values().collect();
    members.sort_by_key(|m| Some(m.name.as_str()) != leader);
    members
}

/// patronictl's timestamp before an answer (UTC here).
fn timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// A member whose REST API did not answer.
fn unreachable_member(member: &str, action: &str, error: &str) -> ops::Outcome {
    ops::Outcome {
        line: format!("Failed: {action} for member {member}: {error}"),
        ok: false,
    }
}

/// Asks `question` unless `force`; anything but y/yes aborts (exit 1, as patronictl).
fn confirm(force: bool, question: &str) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    use std::io::Write as _;
    print!("{question} [y/N]: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("Aborted!")
    }
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // What `main() -> anyhow::Result<()>` prints.
            eprintln!("Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

fn replay(config: Option<PathBuf>, input_log: &std::path::Path) -> anyhow::Result<()> {
    let path = config.unwrap_or_else(default_config);
    let loaded =
        pgwarden::config::load(&path).with_context(|| format!("reading {}", path.display()))?;
    let settings = pgwarden::runtime::node_settings(&loaded.config);
    let log = std::fs::read_to_string(input_log)
        .with_context(|| format!("reading {}", input_log.display()))?;
    let report = pgwarden::core::replay::replay(&settings, &log)
        .with_context(|| format!("replaying {}", input_log.display()))?;
    for transition in &report.transitions {
        println!("{transition}");
    }
    println!(
        "replayed {} runs, {} inputs, {} effects, {} transitions: the same as recorded",
        report.runs,
        report.inputs,
        report.effects,
        report.transitions.len()
    );
    Ok(())
}

/// Forward the policy host's log (and the policies' `log` lines) to stderr when
/// `PGWARDEN_LOG` asks for it, as the agent does.
fn init_policy_log() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("PGWARDEN_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_writer(std::io::stderr)
            .init();
    }
}

fn list(config: Option<PathBuf>, cluster: Option<String>) -> anyhow::Result<()> {
    let path = config.unwrap_or_else(default_config);
    let loaded =
        pgwarden::config::load(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = loaded.config;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(name) = cluster.filter(|c| *c != config.scope) {
        anyhow::bail!(
            "cluster {name:?} is not the configured scope {:?}",
            config.scope
        );
    }
    let view = runtime.block_on(async {
        let store = tokio::time::timeout(
            Duration::from_secs(10),
            pgwarden::runtime::connect_store(&config),
        )
        .await
        .context("connecting to etcd")?;
        store.load().await.context("reading the cluster from etcd")
    })?;
    println!("{}", pgwarden::ctl::list::render(&config.scope, &view));
    Ok(())
}
