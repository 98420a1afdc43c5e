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
    let loaded = pgwarden::config::load(&args.config).unwrap_or_else(|e| refuse(&args.config, &e));
    // The OTEL_* variables are part of the configuration: one that cannot be used refuses
    // the start, as a bad key does.
    let export = loaded
        .config
        .telemetry
        .resolve(&|name| std::env::var(name).ok())
        .unwrap_or_else(|e| refuse(&args.config, &e));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The exporter's gRPC channel lives on the runtime.
    let _runtime = runtime.enter();
    let origin = pgwarden::telemetry::Origin {
        member: loaded.config.name.clone(),
        scope: loaded.config.scope.clone(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let (telemetry, tracer) = match &export {
        Some(settings) if !args.validate_config => {
            let (telemetry, tracer) = pgwarden::telemetry::Telemetry::start(settings, &origin)
                .unwrap_or_else(|e| refuse(&args.config, &format!("{e:#}")));
            (Some(telemetry), Some(tracer))
        }
        _ => (None, None),
    };
    init_logging(tracer);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(settings) = &export {
        tracing::info!(
            endpoint = %settings.endpoint,
            protocol = settings.protocol.as_str(),
            sample_ratio = settings.sample_ratio,
            "telemetry: exporting traces"
        );
    }
    if args.validate_config {
        println!("{}: configuration is valid", args.config.display());
        return Ok(());
    }
    runtime.block_on(async {
        let result = pgwarden::runtime::run(loaded.config, &args.config).await;
        if let Some(telemetry) = telemetry {
            telemetry.shutdown(std::time::Duration::from_secs(3)).await;
        }
        result
    })
}

/// Stops before anything started: the configuration (file or `OTEL_*` variables) cannot
/// be used.
fn refuse(config: &std::path::Path, e: &dyn std::fmt::Display) -> ! {
    eprintln!("pgwarden: invalid configuration {}: {e}", config.display());
    std::process::exit(2);
}

/// The log on stdout (`PGWARDEN_LOG` filters it, `info` by default) and, with a tracer,
/// the agent's own spans exported as OpenTelemetry spans (only pgwarden's: the exporter's
/// own gRPC traffic must not trace itself).
fn init_logging(tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let log = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGWARDEN_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    let traces = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("pgwarden", tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry().with(log).with(traces).init();
}
