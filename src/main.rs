//! `pgwarden CONFIG`: run the node agent (a drop-in for `patroni CONFIG`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// PostgreSQL high-availability agent (Patroni-compatible).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Patroni-format YAML configuration file.
    config: PathBuf,
    /// Validate the configuration and exit (like `patroni --validate-config`).
    #[arg(long)]
    validate_config: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGWARDEN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let loaded = match pgwarden::config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!(
                "pgwarden: invalid configuration {}: {e}",
                args.config.display()
            );
            std::process::exit(2);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if args.validate_config {
        println!("{}: configuration is valid", args.config.display());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(pgwarden::runtime::run(loaded.config, &args.config))
}
