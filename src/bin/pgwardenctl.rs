//! `pgwardenctl`: the operator CLI (patronictl's commands, growing).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// pgwarden's operator CLI.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (the agent's Patroni-format YAML).
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
}

fn default_config() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".config/patroni/patronictl.yaml")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let path = cli.config.unwrap_or_else(default_config);
    let loaded =
        pgwarden::config::load(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = loaded.config;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::List { cluster } => {
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
        }
    }
    Ok(())
}
