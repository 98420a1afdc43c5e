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
    /// Write the log as JSON lines (`log.type: json`), whatever the file says.
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormatArg {
    /// As `log.format` says (Patroni's plain template by default).
    Plain,
    /// JSON lines.
    Json,
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
    // The decision log works without a collector: it is built from the same spans.
    let telemetry_config = &loaded.config.telemetry;
    let decisions = pgwarden::telemetry::decisions::DecisionLog::new(
        telemetry_config.decisions_keep,
        telemetry_config
            .decisions_file
            .as_deref()
            .filter(|_| !args.validate_config),
    )
    .unwrap_or_else(|e| {
        let file = telemetry_config
            .decisions_file
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        refuse(
            &args.config,
            &format!("telemetry.decisions.file {}: {e}", file.display()),
        )
    });
    let mut log_config = loaded.config.log.clone();
    match args.log_format {
        Some(LogFormatArg::Json) => log_config = log_config.as_json(),
        Some(LogFormatArg::Plain) => {
            if let pgwarden::config::LogFormat::Json(_) = log_config.format {
                log_config.format = pgwarden::config::LogConfig::default().format;
            }
        }
        None => {}
    }
    if args.validate_config {
        // Checking a file writes nothing anywhere.
        log_config.dir = None;
    }
    // A log that cannot be written (a `log.dir` that cannot be created) refuses the start.
    let log_writer = pgwarden::logging::start_writer(&log_config).unwrap_or_else(|e| {
        let dir = log_config
            .dir
            .as_deref()
            .unwrap_or(std::path::Path::new("-"));
        refuse(&args.config, &format!("log.dir {}: {e}", dir.display()))
    });
    let log_filter_error = init_logging(tracer, decisions.clone(), &log_config, log_writer);
    if let Some(error) = log_filter_error {
        tracing::warn!("{error}");
    }
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
        pgwarden::logging::drain(std::time::Duration::from_secs(2));
        println!("{}: configuration is valid", args.config.display());
        return Ok(());
    }
    let result = runtime.block_on(async {
        let result = pgwarden::runtime::run(loaded.config, &args.config, decisions).await;
        if let Some(telemetry) = telemetry {
            telemetry.shutdown(std::time::Duration::from_secs(3)).await;
        }
        result
    });
    if let Err(error) = &result {
        tracing::error!("pgwarden stopped: {error:#}");
    }
    pgwarden::logging::drain(std::time::Duration::from_secs(3));
    result
}

/// Stops before anything started: the configuration (file or `OTEL_*` variables) cannot
/// be used.
fn refuse(config: &std::path::Path, e: &dyn std::fmt::Display) -> ! {
    eprintln!("pgwarden: invalid configuration {}: {e}", config.display());
    std::process::exit(2);
}

/// The log as `log:` says (`PGWARDEN_LOG` filters it when set; see `pgwarden::logging`)
/// and, with a tracer, the agent's own spans exported as OpenTelemetry spans (only
/// pgwarden's: the exporter's own gRPC traffic must not trace itself). Returns why
/// `PGWARDEN_LOG` was not used, when it could not be.
fn init_logging(
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    decisions: std::sync::Arc<pgwarden::telemetry::decisions::DecisionLog>,
    config: &pgwarden::config::LogConfig,
    writer: pgwarden::logging::QueueWriter,
) -> Option<String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let env = std::env::var("PGWARDEN_LOG").ok();
    let (filter, filter_error) = pgwarden::logging::filter(config, env.as_deref());
    let log = tracing_subscriber::fmt::layer()
        .event_format(pgwarden::logging::line::LineFormat::new(config))
        .with_writer(writer)
        .with_filter(filter);
    let traces = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("pgwarden", tracing::Level::INFO),
            )
    });
    // The decision log reads the agent's own spans, whatever the log level.
    let decision_log = pgwarden::telemetry::decisions::DecisionLayer::new(decisions).with_filter(
        tracing_subscriber::filter::Targets::new().with_target("pgwarden", tracing::Level::INFO),
    );
    tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .with(decision_log)
        .init();
    filter_error
}
