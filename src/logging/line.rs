//! One log line, as Patroni's `log:` section describes it: a plain template
//! (`%(asctime)s %(levelname)s: %(message)s`) or a JSON object of chosen fields, plus what
//! leads from the line to the decision behind it: the decision log's id (`decision=81`,
//! see `pgwardenctl why`) and, while traces are exported, the OpenTelemetry trace and span
//! ids.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogConfig, LogField, LogFormat, Piece};

/// Formats events as the `log:` section says.
pub struct LineFormat {
    format: LogFormat,
    date: Option<time::format_description::OwnedFormatItem>,
    static_fields: Map<String, Value>,
    pid: u32,
    /// For `relativeCreated`.
    started: std::time::Instant,
}

impl LineFormat {
    /// The format of `config` (whose `dateformat` was checked when it was loaded).
    pub fn new(config: &LogConfig) -> LineFormat {
        LineFormat {
            format: config.format.clone(),
            date: config
                .dateformat
                .as_deref()
                .and_then(|f| time::format_description::parse_strftime_owned(f).ok()),
            static_fields: config.static_fields.clone(),
            pid: std::process::id(),
            started: std::time::Instant::now(),
        }
    }

    fn asctime(&self) -> String {
        let now = time::OffsetDateTime::now_utc();
        match &self.date {
            Some(items) => now.format(items).unwrap_or_default(),
            // Python's logging default: `2026-12-07 14:02:11,123`.
            None => format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second(),
                now.millisecond()
            ),
        }
    }

    fn field(&self, field: LogField, line: &Line<'_>) -> Value {
        let meta = line.event.metadata();
        match field {
            LogField::Asctime => Value::String(self.asctime()),
            LogField::Levelname => Value::String(level_name(meta.level()).into()),
            LogField::Message => Value::String(line.fields.message.clone()),
            LogField::Name => Value::String(meta.target().replace("::", ".")),
            LogField::Module => Value::String(
                meta.target()
                    .rsplit("::")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            LogField::Filename => Value::String(
                meta.file()
                    .and_then(|f| f.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string(),
            ),
            LogField::Lineno => Value::from(meta.line().unwrap_or(0)),
            LogField::Pathname => Value::String(meta.file().unwrap_or_default().to_string()),
            LogField::FuncName => Value::String(
                meta.module_path()
                    .unwrap_or_else(|| meta.target())
                    .to_string(),
            ),
            LogField::Levelno => Value::from(level_number(meta.level())),
            LogField::Created => {
                let now = time::OffsetDateTime::now_utc();
                Value::from(now.unix_timestamp_nanos() as f64 / 1e9)
            }
            LogField::Msecs => Value::from(time::OffsetDateTime::now_utc().millisecond()),
            LogField::RelativeCreated => Value::from(self.started.elapsed().as_secs_f64() * 1000.0),
            LogField::ProcessName => Value::String("pgwarden".into()),
            LogField::Msg => Value::String(line.fields.message.clone()),
            LogField::Unfilled(_) => Value::Null,
            LogField::Process => Value::from(self.pid),
            LogField::Thread => Value::from(nix::unistd::gettid().as_raw()),
            LogField::ThreadName => Value::String(
                std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_string(),
            ),
        }
    }
}

/// Patroni's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Python's numbers of the levels.
fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG | Level::TRACE => 10,
    }
}

/// What one event says, and where it stands among the agent's decisions.
struct Line<'a> {
    event: &'a Event<'a>,
    fields: EventFields,
    /// The decision log's id of the input being handled.
    decision: Option<u64>,
    /// OpenTelemetry trace and span ids, while traces are exported.
    trace: Option<(String, String)>,
}

/// The message and the other fields of an event: each as a JSON value and as the plain
/// line shows it (`key="text"` for strings, `key=value` for the rest, as `tracing`'s own
/// format does, so existing log searches keep matching).
#[derive(Default)]
struct EventFields {
    message: String,
    others: Vec<(String, Value, String)>,
}

impl EventFields {
    fn push(&mut self, field: &Field, value: Value, shown: String) {
        self.others.push((field.name().to_string(), value, shown));
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.push(
                field,
                Value::String(value.to_string()),
                format!("{value:?}"),
            );
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value), value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::from(value), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let shown = format!("{value:?}");
        if field.name() == "message" {
            self.message = shown;
        } else {
            self.push(field, Value::String(shown.clone()), shown);
        }
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        // Kept by the decision log's layer as spans are entered: the subscriber cannot be
        // asked for the current span while it is busy with this event.
        let whereabouts = crate::telemetry::decisions::current_whereabouts();
        let line = Line {
            event,
            fields,
            decision: whereabouts.as_ref().map(|w| w.decision),
            trace: whereabouts.and_then(|w| w.trace),
        };
        let text = match &self.format {
            LogFormat::Plain(pieces) => self.plain(pieces, &line),
            LogFormat::Json(fields) => self.json(fields, &line),
        };
        writeln!(writer, "{text}")
    }
}

impl LineFormat {
    fn plain(&self, pieces: &[Piece], line: &Line<'_>) -> String {
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field {
                    field,
                    left,
                    zero,
                    width,
                } => {
                    let value = match (field, self.field(*field, line)) {
                        (LogField::Message, _) => message_with_fields(line),
                        (_, Value::String(s)) => s,
                        // Python shows an unset attribute as `None`.
                        (_, Value::Null) => "None".into(),
                        (_, other) => other.to_string(),
                    };
                    let _ = if *left {
                        write!(out, "{value:<width$}")
                    } else if *zero {
                        write!(out, "{value:0>width$}")
                    } else {
                        write!(out, "{value:>width$}")
                    };
                }
            }
        }
        out
    }

    fn json(&self, fields: &[(LogField, String)], line: &Line<'_>) -> String {
        let mut object = Map::new();
        for (field, key) in fields {
            object.insert(key.clone(), self.field(*field, line));
        }
        for (key, value, _) in &line.fields.others {
            object.entry(key.clone()).or_insert_with(|| value.clone());
        }
        if let Some(decision) = line.decision {
            object.insert("decision".into(), Value::from(decision));
        }
        if let Some((trace_id, span_id)) = &line.trace {
            object.insert("trace_id".into(), Value::String(trace_id.clone()));
            object.insert("span_id".into(), Value::String(span_id.clone()));
        }
        for (key, value) in &self.static_fields {
            object.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(object).to_string()
    }
}

/// The message, then the event's fields as `key=value`, the decision and the trace ids.
fn message_with_fields(line: &Line<'_>) -> String {
    let mut out = line.fields.message.clone();
    for (key, _, shown) in &line.fields.others {
        let _ = write!(out, " {key}={shown}");
    }
    if let Some(decision) = line.decision {
        let _ = write!(out, " decision={decision}");
    }
    if let Some((trace_id, span_id)) = &line.trace {
        let _ = write!(out, " trace_id={trace_id} span_id={span_id}");
    }
    out
}

#[cfg(test)]
mod tests;
