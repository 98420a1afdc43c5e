//! Lines as the `log:` section shapes them, with the decision and trace they belong to.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt as _;

use super::LineFormat;
use crate::config::{LogConfig, LogField, LogFormat};
use crate::telemetry::decisions::{DecisionLayer, DecisionLog};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines(config: &LogConfig, body: impl FnOnce()) -> Vec<String> {
    let captured = Captured::default();
    let writer = captured.clone();
    let log = DecisionLog::new(10, None).expect("log");
    let subscriber = tracing_subscriber::registry()
        .with(DecisionLayer::new(log))
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(LineFormat::new(config))
                .with_writer(move || writer.clone()),
        );
    tracing::subscriber::with_default(subscriber, body);
    let text = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("utf-8");
    text.lines().map(String::from).collect()
}

#[test]
fn plain_lines_follow_the_template_and_name_their_decision() {
    let config = LogConfig::default();
    let shown = lines(&config, || {
        tracing::info!(node = "node2", "outside any decision");
        tracing::info_span!("pgwarden.input", pgwarden.input = "cluster_changed").in_scope(|| {
            tracing::warn!(
                why = "leader-key-free",
                "state transition: leader key is free"
            )
        });
    });
    assert_eq!(shown.len(), 2, "{shown:?}");
    // `2026-12-07 14:02:11,123 INFO: ...`
    let (date, rest) = shown[0].split_at(23);
    assert_eq!(date.len(), 23);
    assert_eq!(&date[10..11], " ");
    assert_eq!(&date[19..20], ",");
    assert_eq!(rest, " INFO: outside any decision node=\"node2\"");
    assert!(
        shown[1].ends_with(
            " WARNING: state transition: leader key is free why=\"leader-key-free\" decision=1"
        ),
        "{shown:?}"
    );
}

#[test]
fn json_lines_carry_the_chosen_fields_renamed_and_static_fields() {
    let config = LogConfig {
        format: LogFormat::Json(vec![
            (LogField::Levelname, "level".into()),
            (LogField::Message, "message".into()),
            (LogField::Name, "logger".into()),
        ]),
        static_fields: serde_json::from_str(r#"{"app": "pgwarden"}"#).expect("json"),
        dateformat: Some("%Y".into()),
        ..LogConfig::default()
    };
    let shown = lines(&config, || {
        tracing::error!(lease = 7, "lease lost");
    });
    let line: serde_json::Value = serde_json::from_str(&shown[0]).expect("a JSON line");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["message"], "lease lost");
    assert_eq!(line["lease"], 7);
    assert_eq!(line["app"], "pgwarden");
    assert_eq!(line["logger"], "pgwarden.logging.line.tests");
    assert!(line.get("decision").is_none(), "outside any decision");
}

#[test]
fn widths_pad_and_dateformat_is_strftime() {
    let config = LogConfig {
        format: LogFormat::Plain(
            crate::config::parse_log_template(
                "log.format",
                "%(asctime)s|%(levelname)-8s|%(message)s",
            )
            .expect("valid"),
        ),
        dateformat: Some("%Y".into()),
        ..LogConfig::default()
    };
    let shown = lines(&config, || tracing::info!("hello"));
    let year = time::OffsetDateTime::now_utc().year();
    assert_eq!(shown, [format!("{year}|INFO    |hello")]);
}

#[test]
fn patronis_acceptance_template_shows_where_each_line_comes_from() {
    let template = "%(levelname)s [%(pathname)s:%(lineno)d - %(funcName)s]: %(message)s \
                    %(levelno)d %(processName)s %(msecs)03d %(taskName)s";
    let config = LogConfig {
        format: LogFormat::Plain(
            crate::config::parse_log_template("log.format", template).expect("valid"),
        ),
        ..LogConfig::default()
    };
    let line_of_event = line!() + 1;
    let shown = lines(&config, || tracing::warn!(lag = 3, "replica behind"));
    let expected_head = format!(
        "WARNING [src/logging/line/tests.rs:{line_of_event} - pgwarden::logging::line::tests]: \
         replica behind lag=3 30 pgwarden "
    );
    assert!(shown[0].starts_with(&expected_head), "{shown:?}");
    let tail = &shown[0][expected_head.len()..];
    let (msecs, unset) = tail.split_once(' ').expect("msecs, then taskName");
    assert_eq!(msecs.len(), 3, "{shown:?}");
    assert!(msecs.bytes().all(|b| b.is_ascii_digit()), "{shown:?}");
    assert_eq!(unset, "None");
}

#[test]
fn lines_under_an_exported_span_carry_its_trace_and_span_ids() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let captured = Captured::default();
    let writer = captured.clone();
    let log = DecisionLog::new(10, None).expect("log");
    // Layered as the agent does: the log (filtered), the exporter's layer (filtered to
    // pgwarden), the decision log.
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(LineFormat::new(&LogConfig::default()))
                .with_writer(move || writer.clone())
                .with_filter(tracing_subscriber::EnvFilter::new("warn")),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("pgwarden", tracing::Level::INFO),
                ),
        )
        .with(DecisionLayer::new(log.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "pgwarden.input",
            pgwarden.input = "timer",
            pgwarden.trace_id = tracing::field::Empty,
            pgwarden.span_id = tracing::field::Empty,
        );
        crate::telemetry::stamp_trace_ids(&span);
        span.in_scope(|| tracing::warn!("lease lost"));
    });
    let text = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("utf-8");
    let decisions = log.query(&crate::telemetry::decisions::Query {
        limit: 10,
        ..Default::default()
    });
    // A timer input with no steps is not kept: the ids are read from the line alone.
    assert!(decisions.is_empty());
    let trace = text
        .split(" trace_id=")
        .nth(1)
        .unwrap_or_else(|| panic!("a trace id in {text:?}"));
    let (trace_id, span_id) = trace.trim().split_once(" span_id=").expect("a span id");
    assert_eq!(trace_id.len(), 32, "{text}");
    assert_eq!(span_id.len(), 16, "{text}");
    assert!(
        text.contains("WARNING: lease lost decision=1 trace_id="),
        "{text}"
    );
}
