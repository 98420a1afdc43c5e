//! `pgwardenctl`: the operator CLI (patronictl's commands, growing) and the policy authoring
//! tools (`pgwardenctl policy new|check|test|diff`), which need no configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    /// Feed a node's recorded inputs (`pgwarden.input_log`) to a fresh core built from its
    /// configuration file (-c) and check it does what the agent did: the same effects and
    /// transitions after every input. Prints the transitions; exits 1 at the first input
    /// where this build decides otherwise.
    Replay {
        /// The input log the agent wrote.
        input_log: PathBuf,
    },
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
