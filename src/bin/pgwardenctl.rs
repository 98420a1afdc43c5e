//! `pgwardenctl`: the operator CLI (patronictl's commands, growing) and the policy authoring
//! tools (`pgwardenctl policy new|check|test|diff`), which need no configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pgwarden::ctl::commands::{EditOptions, ListOptions};
use pgwarden::ctl::info;
use pgwarden::ctl::ops::{self, RoleFilter};
use pgwarden::ctl::policy::PolicyCommand;
use pgwarden::ctl::query::QueryOptions;
use pgwarden::ctl::session::Session;

/// pgwarden's operator CLI.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// patronictl's global options, before the verb (after it, `-c` and `-d` are `query`'s).
#[derive(clap::Args, Debug)]
struct Global {
    /// Configuration file: patronictl's (`scope`, `namespace`, `etcd3`, `ctl`) or an agent's
    /// YAML (the `policy` commands do not read it).
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// The lock store, replacing the file's: `etcd3://host:port[/namespace]`.
    #[arg(short = 'd', long = "dcs-url", visible_alias = "dcs", env = "DCS_URL")]
    dcs_url: Option<String>,
    /// Do not verify the members' TLS certificates (patronictl's `ctl.insecure`).
    #[arg(short = 'k', long)]
    insecure: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the cluster's members, roles, states, timelines and lag.
    List {
        /// Cluster names (default: the configuration's scope).
        clusters: Vec<String>,
        #[command(flatten)]
        options: ListArgs,
    },
    /// The members as `list` shows them, ordered and indented by who streams from whom, as
    /// `patronictl topology`.
    Topology {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        #[command(flatten)]
        options: WatchArgs,
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
    /// Wipe standbys' data directories and clone them again from the leader, as
    /// `patronictl reinit`. Exits 1 if any member refused.
    Reinit {
        /// Cluster name, then member names.
        #[arg(value_name = "CLUSTER MEMBER...", required = true, num_args = 2..)]
        names: Vec<String>,
        /// Do not ask for confirmation; cancel a reinitialization already under way.
        #[arg(long)]
        force: bool,
        /// Clone from the leader (pgwarden always does).
        #[arg(long = "from-leader")]
        from_leader: bool,
        /// Wait until the members are rebuilt.
        #[arg(long)]
        wait: bool,
    },
    /// Delete every key of the cluster from etcd, after typed confirmations, as
    /// `patronictl remove`.
    Remove {
        /// Cluster name.
        cluster: String,
        /// How to print the members before asking.
        #[arg(short = 'f', long, value_enum, default_value = "pretty")]
        format: pgwarden::ctl::list::Format,
    },
    /// Change the cluster-wide configuration (`/config`) with `-s`/`-p` pairs, a YAML file or
    /// an editor, showing the diff first, as `patronictl edit-config`.
    EditConfig {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// Do not show the changes.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Set a value: `key.path=value` (YAML; empty or `null` removes the key). Repeatable.
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Set a PostgreSQL parameter: `name=value`, short for `-s
        /// postgresql.parameters.name=value`. Repeatable.
        #[arg(short = 'p', long = "pg", value_name = "NAME=VALUE")]
        pg: Vec<String>,
        /// Merge this YAML file into the configuration (`-` for standard input).
        #[arg(long, value_name = "FILE")]
        apply: Option<String>,
        /// Replace the configuration with this YAML file (`-` for standard input).
        #[arg(long, value_name = "FILE")]
        replace: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Run SQL on a member (the leader unless `--member` or `--role` says otherwise) and print
    /// the rows, as `patronictl query`. Exits 1 when no member answered or the SQL failed.
    Query {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// The SQL to run.
        #[arg(
            short = 'c',
            long,
            conflicts_with = "file",
            required_unless_present = "file"
        )]
        command: Option<String>,
        /// Run the SQL in this file.
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// Ask for the password (else `PGPASSWORD`).
        #[arg(long)]
        password: bool,
        /// Database user (default: `PGUSER`, else the OS user).
        #[arg(short = 'U', long)]
        username: Option<String>,
        /// Database (default: the member's).
        #[arg(short = 'd', long)]
        dbname: Option<String>,
        /// The member's role.
        #[arg(short = 'r', long, value_enum)]
        role: Option<RoleFilter>,
        /// This member.
        #[arg(short = 'm', long)]
        member: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "tsv")]
        format: pgwarden::ctl::list::Format,
        /// The `tsv` column delimiter.
        #[arg(long, default_value = "\t")]
        delimiter: String,
        /// Run again every 2 seconds until interrupted.
        #[arg(short = 'W')]
        every_two_seconds: bool,
        /// Run again every so many seconds until interrupted.
        #[arg(short = 'w', long = "watch", value_name = "SECONDS", value_parser = watch_seconds)]
        watch: Option<f64>,
    },
    /// Print a shell completion script: `pgwardenctl completion bash >
    /// /etc/bash_completion.d/pgwardenctl`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the cluster-wide configuration (`/config`) as YAML, as `patronictl show-config`.
    ShowConfig {
        /// Cluster name (must match the configuration's scope).
        cluster: Option<String>,
    },
    /// Why a member did what it did lately: its last decisions (`GET /decisions`) as
    /// episodes, each with a summary ("node2 became primary at 14:02:11 because ...;
    /// policy default said race ...; gate accepted ...; promote took 131 ms") and its steps.
    /// pgwarden's own (patronictl has none).
    Why {
        /// The member (default: the leader).
        member: Option<String>,
        /// Cluster name (default: the configuration's scope).
        #[arg(long)]
        cluster: Option<String>,
        /// Episodes to show, the newest.
        #[arg(long, default_value_t = pgwarden::ctl::why::DEFAULT_EPISODES)]
        episodes: usize,
        /// Decisions to fetch at most.
        #[arg(long, default_value_t = 500)]
        limit: usize,
        /// Only decisions of these kinds: inputs (`policy_decided`), effects (`pg.promote`)
        /// or step kinds (`gate`, `transition`, `effect`, `policy`), comma-separated.
        #[arg(long)]
        kind: Option<String>,
        /// Only decisions since this time (RFC 3339 or Unix seconds).
        #[arg(long)]
        since: Option<String>,
        /// Print `GET /decisions`'s JSON as it is.
        #[arg(long)]
        json: bool,
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

/// `list`'s options, as patronictl's.
#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Show the pending and scheduled restart and tag columns even when empty.
    #[arg(short = 'e', long)]
    extended: bool,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "pretty")]
    format: pgwarden::ctl::list::Format,
    #[command(flatten)]
    watch: WatchArgs,
}

/// patronictl's `--timestamp`, `-W` and `--watch`.
#[derive(clap::Args, Debug)]
struct WatchArgs {
    /// Print the time before each listing.
    #[arg(short = 't', long)]
    timestamp: bool,
    /// List again every 2 seconds until interrupted.
    #[arg(short = 'W')]
    every_two_seconds: bool,
    /// List again every so many seconds until interrupted.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS", value_parser = watch_seconds)]
    watch: Option<f64>,
}

impl WatchArgs {
    fn options(&self, extended: bool, format: pgwarden::ctl::list::Format) -> ListOptions {
        let seconds = self
            .watch
            .filter(|s| s.is_finite() && *s > 0.0)
            .or(self.every_two_seconds.then_some(2.0));
        ListOptions {
            extended,
            timestamp: self.timestamp,
            format,
            watch: seconds.map(std::time::Duration::from_secs_f64),
        }
    }
}

/// `-w SECONDS`: a positive, finite number of seconds (at most a day).
fn watch_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0 to 86400"
        )),
    }
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
    let Cli { global, command } = Cli::parse();
    let g = &global;
    match command {
        Command::Policy { command } => {
            init_policy_log();
            pgwarden::ctl::policy::run(&command)
        }
        Command::List { clusters, options } => {
            let options = options.watch.options(options.extended, options.format);
            list_clusters(g, &clusters, &options)
        }
        Command::Topology { cluster, options } => {
            let options = options.options(false, pgwarden::ctl::list::Format::Topology);
            finish_ops(g, cluster.as_deref(), |s| s.list(&options))
        }
        Command::Replay { input_log } => finish(replay(g.config.clone(), &input_log)),
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
            let (cluster, members) = cluster_and_members(&names);
            finish_ops(g, cluster, |s| s.restart(members, role, &options, force))
        }
        Command::Reload { names, role, force } => {
            let (cluster, members) = cluster_and_members(&names);
            finish_ops(g, cluster, |s| s.reload(members, role, force))
        }
        Command::Flush { names, role, force } => {
            let Some((target, names)) = names.split_last() else {
                return finish(Err(anyhow::anyhow!(
                    "name what to flush: restart or switchover"
                )));
            };
            let (cluster, members) = cluster_and_members(names);
            finish_ops(g, cluster, |s| s.flush(members, target, role, force))
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
            finish_ops(g, cluster.as_deref(), |s| s.hand_over(&asked, force))
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
            finish_ops(g, cluster.as_deref(), |s| s.hand_over(&asked, force))
        }
        Command::Reinit {
            names,
            force,
            from_leader,
            wait,
        } => {
            let (cluster, members) = cluster_and_members(&names);
            finish_ops(g, cluster, |s| s.reinit(members, force, from_leader, wait))
        }
        Command::Remove { cluster, format } => finish_ops(g, Some(&cluster), |s| s.remove(format)),
        Command::EditConfig {
            cluster,
            quiet,
            set,
            pg,
            apply,
            replace,
            force,
        } => {
            let options = EditOptions {
                quiet,
                set,
                pg,
                apply,
                replace,
                force,
            };
            finish_ops(g, cluster.as_deref(), |s| s.edit_config(&options))
        }
        Command::Query {
            cluster,
            command,
            file,
            password,
            username,
            dbname,
            role,
            member,
            format,
            delimiter,
            every_two_seconds,
            watch,
        } => {
            let sql = match (command, file) {
                (Some(sql), _) => sql,
                (None, Some(file)) => match std::fs::read_to_string(&file) {
                    Ok(sql) => sql,
                    Err(e) => {
                        return finish(Err(anyhow::anyhow!("reading {}: {e}", file.display())))
                    }
                },
                (None, None) => {
                    return finish(Err(anyhow::anyhow!(
                        "You need to specify either --command or --file"
                    )))
                }
            };
            let password = if password {
                match pgwarden::ctl::session::read_secret("Password") {
                    Ok(p) => Some(p),
                    Err(e) => return finish(Err(e)),
                }
            } else {
                None
            };
            let seconds = watch
                .filter(|s| s.is_finite() && *s > 0.0)
                .or(every_two_seconds.then_some(2.0));
            let options = QueryOptions {
                sql,
                member,
                role,
                username,
                password,
                dbname,
                format,
                delimiter: delimiter.replace("\\t", "\t"),
                watch: seconds.map(std::time::Duration::from_secs_f64),
            };
            finish_ops(g, cluster.as_deref(), |s| s.query(&options))
        }
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pgwardenctl",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::ShowConfig { cluster } => finish_ops(g, cluster.as_deref(), Session::show_config),
        Command::History { cluster } => finish_ops(g, cluster.as_deref(), Session::history),
        Command::Why {
            member,
            cluster,
            episodes,
            limit,
            kind,
            since,
            json,
        } => {
            let options = pgwarden::ctl::commands::WhyOptions {
                episodes,
                limit,
                kind,
                since,
                json,
            };
            finish_ops(g, cluster.as_deref(), |s| {
                s.why(member.as_deref(), &options)
            })
        }
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
            finish_ops(g, cluster.as_deref(), |s| s.dsn(role, member.as_deref()))
        }
        Command::Version { names } => {
            println!("pgwardenctl version {}", env!("CARGO_PKG_VERSION"));
            if names.is_empty() {
                return ExitCode::SUCCESS;
            }
            let (cluster, members) = cluster_and_members(&names);
            finish_ops(g, cluster, |s| s.versions(members))
        }
        Command::Pause { cluster, wait } => {
            finish_ops(g, cluster.as_deref(), |s| s.toggle_pause(true, wait))
        }
        Command::Resume { cluster, wait } => {
            finish_ops(g, cluster.as_deref(), |s| s.toggle_pause(false, wait))
        }
    }
}

/// `CLUSTER [MEMBER]...`: the cluster (the configuration's scope when none is given),
/// then the members.
fn cluster_and_members(names: &[String]) -> (Option<&str>, &[String]) {
    match names.split_first() {
        Some((cluster, members)) => (Some(cluster.as_str()), members),
        None => (None, names),
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

/// Runs an operator verb on `cluster` (the configuration's `scope` when none is named):
/// `Ok(false)` (a member failed) exits 1 as an error does.
fn finish_ops(
    cli: &Global,
    cluster: Option<&str>,
    run: impl FnOnce(&Session) -> anyhow::Result<bool>,
) -> ExitCode {
    if run_ops(cli, cluster, run) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// [`finish_ops`]'s work: whether it succeeded (an error is printed).
fn run_ops(
    cli: &Global,
    cluster: Option<&str>,
    run: impl FnOnce(&Session) -> anyhow::Result<bool>,
) -> bool {
    match open_session(cli, cluster).and_then(|session| run(&session)) {
        Ok(ok) => ok,
        Err(error) => {
            eprintln!("Error: {error:?}");
            false
        }
    }
}

/// `list CLUSTER...`: each cluster in turn (the configuration's scope when none is named),
/// all of them again every `watch` when set, as patronictl.
fn list_clusters(cli: &Global, clusters: &[String], options: &ListOptions) -> ExitCode {
    let names: Vec<Option<&str>> = if clusters.is_empty() {
        vec![None]
    } else {
        clusters.iter().map(|c| Some(c.as_str())).collect()
    };
    let once = ListOptions {
        watch: None,
        timestamp: false,
        ..options.clone()
    };
    loop {
        let started = std::time::Instant::now();
        if options.timestamp {
            println!("{}", pgwarden::ctl::session::timestamp());
        }
        let mut all_ok = true;
        for name in &names {
            all_ok &= run_ops(cli, *name, |s| s.list(&once));
        }
        let Some(every) = options.watch else {
            return if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        };
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}

/// Reads the configuration (patronictl's file or an agent's) and opens the cluster.
fn open_session(cli: &Global, cluster: Option<&str>) -> anyhow::Result<Session> {
    let (path, explicit) = match &cli.config {
        Some(path) => (path.clone(), true),
        None => (default_config(), false),
    };
    let loaded = pgwarden::config::load_ctl(&path, explicit, cli.dcs_url.as_deref())
        .with_context(|| format!("reading {}", path.display()))?;
    for warning in &loaded.warnings {
        eprintln!("Warning: {warning}");
    }
    let mut config = loaded.config;
    config.api.tls.insecure |= cli.insecure;
    Session::open(config, cluster)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of the definition (unique short options, ...), which otherwise
    /// fire only when a command is parsed.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    /// The completion scripts know every verb and option.
    #[test]
    fn completions_name_the_verbs() {
        use clap::CommandFactory as _;
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pgwardenctl", &mut script);
            let script = String::from_utf8(script).expect("UTF-8");
            for word in ["edit-config", "switchover", "topology", "dcs-url"] {
                assert!(script.contains(word), "{shell}: {word} missing");
            }
        }
    }

    /// patronictl's global options come before the verb; after `query` `-c` and `-d` are
    /// the SQL and the database.
    #[test]
    fn query_options_after_the_verb_are_querys() {
        let cli = Cli::try_parse_from([
            "pgwardenctl",
            "-c",
            "ctl.yaml",
            "-d",
            "etcd3://h:2379",
            "query",
            "demo",
            "-c",
            "SELECT 1",
            "-d",
            "app",
        ])
        .expect("parses");
        assert_eq!(cli.global.config, Some(PathBuf::from("ctl.yaml")));
        assert_eq!(cli.global.dcs_url.as_deref(), Some("etcd3://h:2379"));
        match cli.command {
            Command::Query {
                command, dbname, ..
            } => {
                assert_eq!(command.as_deref(), Some("SELECT 1"));
                assert_eq!(dbname.as_deref(), Some("app"));
            }
            other => panic!("{other:?}"),
        }
    }
}
