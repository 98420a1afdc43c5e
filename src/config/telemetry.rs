//! `telemetry:` (pgwarden's; Patroni has none): where the agent's traces go.
//!
//! ```yaml
//! telemetry:
//!   otlp:
//!     endpoint: http://otel-collector:4317   # gRPC; HTTP/protobuf: http://collector:4318/v1/traces
//!     protocol: grpc                          # or http/protobuf
//!     headers: {x-api-key: "..."}             # secret values: never logged
//!     timeout_ms: 5000                        # per export
//!   sample_ratio: 1.0                         # of the traces started here (parents decide for the rest)
//!   queue_size: 2048                          # spans waiting for export; more are dropped (and counted)
//!   decisions:                                # the decision log (`GET /decisions`), on without a collector
//!     keep: 1000                              # decisions kept in memory
//!     file: /var/log/pgwarden/decisions.jsonl # also appended here as JSON lines (off by default)
//! ```
//!
//! The standard OpenTelemetry variables fill in what the file leaves out:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as given) or `OTEL_EXPORTER_OTLP_ENDPOINT` (with
//! `/v1/traces` added for HTTP), `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`,
//! `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` (milliseconds), `OTEL_TRACES_SAMPLER` with
//! `OTEL_TRACES_SAMPLER_ARG` (`traceidratio`, `parentbased_traceidratio`, `always_on`,
//! `always_off`), and `OTEL_SDK_DISABLED=true` turns tracing off. Headers from
//! `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` are added by the exporter itself and win over the
//! file's on the same name (the OpenTelemetry SDK's rule). With no endpoint anywhere,
//! tracing is off and nothing is exported.

use std::time::Duration;

use serde_json::Value;

use super::error::ConfigError;
use super::tls::Secret;
use super::tree::{self, Section};

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl OtlpProtocol {
    fn parse(path: &str, raw: &str) -> Result<OtlpProtocol, ConfigError> {
        match raw.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "http/json" => Err(ConfigError::new(
                path,
                "http/json is not supported: use grpc or http/protobuf",
            )),
            other => Err(ConfigError::new(
                path,
                format!("{other:?}: expected grpc or http/protobuf"),
            )),
        }
    }

    /// The OTLP name.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The `telemetry:` section as written.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `otlp.endpoint`.
    pub endpoint: Option<String>,
    /// `otlp.protocol`.
    pub protocol: Option<OtlpProtocol>,
    /// `otlp.headers`, in the file's order.
    pub headers: Vec<(String, Secret)>,
    /// `otlp.timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// `sample_ratio`.
    pub sample_ratio: Option<f64>,
    /// `queue_size`.
    pub queue_size: Option<usize>,
    /// `decisions.keep`: decisions kept in memory.
    pub decisions_keep: usize,
    /// `decisions.file`: where completed decisions are appended as JSON lines.
    pub decisions_file: Option<std::path::PathBuf>,
}

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            endpoint: None,
            protocol: None,
            headers: Vec::new(),
            timeout_ms: None,
            sample_ratio: None,
            queue_size: None,
            decisions_keep: crate::telemetry::decisions::DEFAULT_KEEP,
            decisions_file: None,
        }
    }
}

/// What the exporter is built with: the file's settings, then the `OTEL_*` variables, then
/// the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// Where spans go (for HTTP, the full URL with its path).
    pub endpoint: String,
    /// How.
    pub protocol: OtlpProtocol,
    /// Extra headers (gRPC metadata).
    pub headers: Vec<(String, Secret)>,
    /// Bound on one export.
    pub timeout: Duration,
    /// Share of the traces started here that are kept.
    pub sample_ratio: f64,
    /// Spans waiting for export at most; more are dropped and counted.
    pub queue_size: usize,
}

/// The default bound on one export (the OpenTelemetry default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default export queue (the OpenTelemetry default).
pub const DEFAULT_QUEUE_SIZE: usize = 2048;

/// Parses the `telemetry:` section.
pub(crate) fn parse(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<TelemetryConfig, ConfigError> {
    let mut config = TelemetryConfig::default();
    if let Some(mut otlp) = s.section("otlp")? {
        if let Some(v) = otlp.get("endpoint") {
            let path = otlp.key_path("endpoint");
            config.endpoint = Some(endpoint(&path, &tree::string(&path, v)?)?);
        }
        if let Some(v) = otlp.get("protocol") {
            let path = otlp.key_path("protocol");
            config.protocol = Some(OtlpProtocol::parse(&path, &tree::string(&path, v)?)?);
        }
        if let Some(v) = otlp.get("headers") {
            config.headers = headers(&otlp.key_path("headers"), v)?;
        }
        if let Some(v) = otlp.get("timeout_ms") {
            let path = otlp.key_path("timeout_ms");
            let ms = tree::whole(&path, v, "milliseconds")?;
            if ms == 0 {
                return Err(ConfigError::new(path, "must be at least 1 (milliseconds)"));
            }
            config.timeout_ms = Some(ms);
        }
        otlp.finish(warnings);
    }
    if let Some(v) = s.get("sample_ratio") {
        let path = s.key_path("sample_ratio");
        config.sample_ratio = Some(ratio(&path, v.as_f64(), &tree::render(v))?);
    }
    if let Some(v) = s.get("queue_size") {
        let path = s.key_path("queue_size");
        let size = tree::whole(&path, v, "spans")?;
        if !(16..=1_000_000).contains(&size) {
            return Err(ConfigError::new(
                path,
                format!("{size}: expected 16 to 1000000 spans"),
            ));
        }
        config.queue_size = Some(size as usize);
    }
    if let Some(mut decisions) = s.section("decisions")? {
        if let Some(v) = decisions.get("keep") {
            let path = decisions.key_path("keep");
            let keep = tree::whole(&path, v, "decisions")?;
            if !(1..=100_000).contains(&keep) {
                return Err(ConfigError::new(
                    path,
                    format!("{keep}: expected 1 to 100000 decisions"),
                ));
            }
            config.decisions_keep = keep as usize;
        }
        if let Some(v) = decisions.get("file") {
            let path = decisions.key_path("file");
            let file = tree::string(&path, v)?;
            if file.trim().is_empty() {
                return Err(ConfigError::new(path, "expected a file path"));
            }
            config.decisions_file = Some(file.into());
        }
        decisions.finish(warnings);
    }
    s.finish(warnings);
    Ok(config)
}

fn endpoint(path: &str, raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(raw.to_string()),
        _ => Err(ConfigError::new(
            path,
            format!("{raw:?}: expected an http:// or https:// URL with a host"),
        )),
    }
}

fn ratio(path: &str, value: Option<f64>, shown: &str) -> Result<f64, ConfigError> {
    match value {
        Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(ConfigError::new(
            path,
            format!("{shown}: expected a number from 0 to 1"),
        )),
    }
}

fn headers(path: &str, v: &Value) -> Result<Vec<(String, Secret)>, ConfigError> {
    let Some(map) = v.as_object() else {
        return Err(ConfigError::new(
            path,
            "expected a mapping of header names to values",
        ));
    };
    map.iter()
        .map(|(name, value)| {
            let at = format!("{path}.{name}");
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(ConfigError::new(at, "not a valid header name"));
            }
            Ok((name.to_ascii_lowercase(), Secret(tree::secret(&at, value)?)))
        })
        .collect()
}

impl TelemetryConfig {
    /// The export settings: the file's, then the `OTEL_*` variables read through `env`,
    /// then the defaults. `None`: tracing is off (no endpoint anywhere, or
    /// `OTEL_SDK_DISABLED=true`). A variable that cannot be used is an error naming it, as a
    /// bad key is.
    pub fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<ExportSettings>, ConfigError> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let protocol = match self.protocol {
            Some(p) => p,
            None => match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
                .or_else(|| {
                    var("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
                }) {
                Some((name, v)) => OtlpProtocol::parse(name, &v)?,
                None => OtlpProtocol::Grpc,
            },
        };
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(e) => endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &e)?,
                None => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(e) => {
                        let base = endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", &e)?;
                        match protocol {
                            OtlpProtocol::Grpc => base,
                            OtlpProtocol::HttpProtobuf => {
                                format!("{}/v1/traces", base.trim_end_matches('/'))
                            }
                        }
                    }
                    None => return Ok(None),
                },
            },
        };
        let timeout = match self.timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => {
                let from_env = [
                    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                    "OTEL_EXPORTER_OTLP_TIMEOUT",
                ]
                .into_iter()
                .find_map(|name| var(name).map(|v| (name, v)));
                match from_env {
                    Some((name, v)) => match v.trim().parse::<u64>() {
                        Ok(ms) if ms > 0 => Duration::from_millis(ms),
                        _ => {
                            return Err(ConfigError::new(
                                name,
                                format!("{v:?}: expected a whole number of milliseconds above 0"),
                            ))
                        }
                    },
                    None => DEFAULT_TIMEOUT,
                }
            }
        };
        let sample_ratio = match self.sample_ratio {
            Some(r) => r,
            None => sampler_ratio(&var)?,
        };
        Ok(Some(ExportSettings {
            endpoint,
            protocol,
            headers: self.headers.clone(),
            timeout,
            sample_ratio,
            queue_size: self.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE),
        }))
    }
}

/// The ratio `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` ask for (1 when unset).
/// pgwarden always lets a parent's decision stand, so the `parentbased_` forms mean the
/// same as the plain ones.
fn sampler_ratio(var: &dyn Fn(&str) -> Option<String>) -> Result<f64, ConfigError> {
    let Some(sampler) = var("OTEL_TRACES_SAMPLER") else {
        return Ok(1.0);
    };
    match sampler.trim().trim_start_matches("parentbased_") {
        "always_on" => Ok(1.0),
        "always_off" => Ok(0.0),
        "traceidratio" => match var("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(1.0),
            Some(arg) => ratio("OTEL_TRACES_SAMPLER_ARG", arg.trim().parse().ok(), &arg),
        },
        other => Err(ConfigError::new(
            "OTEL_TRACES_SAMPLER",
            format!(
                "{other:?}: expected always_on, always_off, traceidratio (or their parentbased_ forms)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nothing_configured_means_no_tracing() {
        let off = TelemetryConfig::default()
            .resolve(&env(&[]))
            .expect("valid");
        assert_eq!(off, None);
    }

    #[test]
    fn the_file_wins_and_variables_fill_in() {
        let file = TelemetryConfig {
            endpoint: Some("http://collector:4317".into()),
            ..Default::default()
        };
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ];
        let settings = file.resolve(&env(&vars)).expect("valid").expect("on");
        assert_eq!(settings.endpoint, "http://collector:4317");
        assert_eq!(settings.protocol, OtlpProtocol::Grpc);
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(settings.sample_ratio, 0.25);
        assert_eq!(settings.queue_size, DEFAULT_QUEUE_SIZE);
    }

    #[test]
    fn the_generic_http_endpoint_gets_the_traces_path() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ];
        let settings = TelemetryConfig::default()
            .resolve(&env(&vars))
            .expect("valid")
            .expect("on");
        assert_eq!(settings.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(settings.protocol, OtlpProtocol::HttpProtobuf);
        let traces = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom")];
        let settings = TelemetryConfig {
            protocol: Some(OtlpProtocol::HttpProtobuf),
            ..Default::default()
        }
        .resolve(&env(&traces))
        .expect("valid")
        .expect("on");
        assert_eq!(settings.endpoint, "http://c:4318/custom", "taken as given");
    }

    #[test]
    fn variables_that_cannot_be_used_are_named() {
        for (vars, named) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                ],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
        ] {
            let error = TelemetryConfig::default()
                .resolve(&env(&vars))
                .expect_err("refused");
            assert!(error.to_string().contains(named), "{error}");
        }
    }

    #[test]
    fn the_sdk_can_be_disabled() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(TelemetryConfig::default().resolve(&env(&vars)), Ok(None));
    }
}
