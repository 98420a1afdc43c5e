//! Patroni's `log:` section: where the agent's log goes and how each line looks.
//!
//! ```yaml
//! log:
//!   type: plain                  # or json
//!   level: INFO                  # DEBUG, INFO, WARNING, ERROR, CRITICAL
//!   format: '%(asctime)s %(levelname)s: %(message)s'   # plain: a template; json: field list
//!   dateformat: '%Y-%m-%d %H:%M:%S'                     # strftime, for %(asctime)s
//!   static_fields: {app: pgwarden}                      # json: added to every line
//!   max_queue_size: 1000         # lines waiting for the writer; more are dropped and counted
//!   dir: /var/log/pgwarden       # write pgwarden.log here instead of standard output
//!   file_num: 4                  # rotated files kept
//!   file_size: 25000000          # bytes before a rotation
//!   mode: 0640                   # permissions of the files
//!   loggers: {pgwarden.runtime.policy: DEBUG}
//! ```
//!
//! The plain template takes the fields of Python's `LogRecord` (`%(name)s`, with `-`, `0`
//! and a width as Python's `%` operator takes them): `asctime`, `created`, `msecs`,
//! `relativeCreated`, `levelname`, `levelno`, `message`, `msg`, `name` (the module),
//! `module`, `pathname`, `filename`, `lineno`, `funcName` (the module path: Rust events
//! carry no function name), `process`, `processName`, `thread`, `threadName`. Python's
//! fields with no counterpart here (`args`, `exc_info`, `exc_text`, `stack_info`,
//! `taskName`) are warned about at start and show `None`, as Python shows them when unset;
//! a name `LogRecord` does not have refuses the start. `%%` is a literal `%`. A JSON format is a list of those
//! names, or of `{name: renamed}` maps (`python-json-logger`'s renaming), or a template
//! whose fields are taken. `loggers` sets levels per module of pgwarden
//! (`pgwarden.runtime.policy`); Patroni's own logger names (`patroni.*`, `urllib3`) have no
//! counterpart here and are warned about.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::error::ConfigError;
use super::tree::{self, Section};

/// Patroni's default plain format.
pub const DEFAULT_FORMAT: &str = "%(asctime)s %(levelname)s: %(message)s";
/// Patroni's default queue of log records.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1000;
/// Patroni's default number of rotated files.
pub const DEFAULT_FILE_NUM: u32 = 4;
/// Patroni's default file size before a rotation.
pub const DEFAULT_FILE_SIZE: u64 = 25_000_000;

/// `log.level` and the levels of `log.loggers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `WARNING` (or `WARN`).
    Warning,
    /// `ERROR`.
    Error,
    /// `CRITICAL` (or `FATAL`): pgwarden's errors, as it has no level above.
    Critical,
}

impl LogLevel {
    fn parse(path: &str, v: &Value) -> Result<LogLevel, ConfigError> {
        let raw = tree::string(path, v)?;
        match raw.trim().to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARNING" | "WARN" => Ok(LogLevel::Warning),
            "ERROR" => Ok(LogLevel::Error),
            "CRITICAL" | "FATAL" => Ok(LogLevel::Critical),
            _ => Err(ConfigError::new(
                path,
                format!("{raw:?}: expected DEBUG, INFO, WARNING, ERROR or CRITICAL"),
            )),
        }
    }

    /// The `tracing` filter directive of the level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical => "error",
        }
    }
}

/// One field of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogField {
    /// `asctime`: the time, per `dateformat`.
    Asctime,
    /// `levelname`: `INFO`, `WARNING`, ...
    Levelname,
    /// `message`: the text, then the event's fields as `key=value`.
    Message,
    /// `name`: the module the line comes from (`pgwarden.runtime.turn`).
    Name,
    /// `module`: the last part of `name`.
    Module,
    /// `filename`: the source file's name.
    Filename,
    /// `lineno`: the source line.
    Lineno,
    /// `process`: the agent's pid.
    Process,
    /// `thread`: the thread's id.
    Thread,
    /// `threadName`: the thread's name.
    ThreadName,
    /// `pathname`: the source file's path.
    Pathname,
    /// `funcName`: the event's module path (`pgwarden::runtime::turn`), the closest a Rust
    /// event comes to Python's function name.
    FuncName,
    /// `levelno`: Python's number of the level (10 DEBUG ... 40 ERROR).
    Levelno,
    /// `created`: seconds since the epoch, with a fraction.
    Created,
    /// `msecs`: the millisecond part of `created`.
    Msecs,
    /// `relativeCreated`: milliseconds since the agent started logging.
    RelativeCreated,
    /// `processName`: `pgwarden`.
    ProcessName,
    /// `msg`: the text, without the event's fields.
    Msg,
    /// A `LogRecord` field with no counterpart in pgwarden: shows `None` (Python's unset).
    Unfilled(&'static str),
}

/// `LogRecord` fields pgwarden has nothing for (exceptions, call arguments, asyncio tasks).
const UNFILLED: [&str; 5] = ["args", "exc_info", "exc_text", "stack_info", "taskName"];

impl LogField {
    fn parse(path: &str, name: &str) -> Result<LogField, ConfigError> {
        Ok(match name {
            "asctime" => LogField::Asctime,
            "levelname" => LogField::Levelname,
            "message" => LogField::Message,
            "name" => LogField::Name,
            "module" => LogField::Module,
            "filename" => LogField::Filename,
            "lineno" => LogField::Lineno,
            "process" => LogField::Process,
            "thread" => LogField::Thread,
            "threadName" => LogField::ThreadName,
            "pathname" => LogField::Pathname,
            "funcName" => LogField::FuncName,
            "levelno" => LogField::Levelno,
            "created" => LogField::Created,
            "msecs" => LogField::Msecs,
            "relativeCreated" => LogField::RelativeCreated,
            "processName" => LogField::ProcessName,
            "msg" => LogField::Msg,
            other => match UNFILLED.iter().find(|u| **u == other) {
                Some(unfilled) => LogField::Unfilled(unfilled),
                None => {
                    return Err(ConfigError::new(
                        path,
                        format!(
                            "%({other}) is not a field of Python's LogRecord: use asctime, \
                             created, msecs, relativeCreated, levelname, levelno, message, msg, \
                             name, module, pathname, filename, lineno, funcName, process, \
                             processName, thread or threadName"
                        ),
                    ))
                }
            },
        })
    }

    /// The Python name.
    pub fn name(self) -> &'static str {
        match self {
            LogField::Asctime => "asctime",
            LogField::Levelname => "levelname",
            LogField::Message => "message",
            LogField::Name => "name",
            LogField::Module => "module",
            LogField::Filename => "filename",
            LogField::Lineno => "lineno",
            LogField::Process => "process",
            LogField::Thread => "thread",
            LogField::ThreadName => "threadName",
            LogField::Pathname => "pathname",
            LogField::FuncName => "funcName",
            LogField::Levelno => "levelno",
            LogField::Created => "created",
            LogField::Msecs => "msecs",
            LogField::RelativeCreated => "relativeCreated",
            LogField::ProcessName => "processName",
            LogField::Msg => "msg",
            LogField::Unfilled(name) => name,
        }
    }
}

/// A piece of a plain template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text as written.
    Text(String),
    /// A field, left-aligned (`-`) or not, padded to a width.
    Field {
        /// Which.
        field: LogField,
        /// `%(levelname)-8s`: pad on the right.
        left: bool,
        /// `%(msecs)03d`: pad with zeros on the left.
        zero: bool,
        /// Minimum width.
        width: usize,
    },
}

/// How lines look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `type: plain`: the template.
    Plain(Vec<Piece>),
    /// `type: json`: the fields, each under its (possibly renamed) key.
    Json(Vec<(LogField, String)>),
}

/// The `log:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `level`.
    pub level: LogLevel,
    /// `type` with `format`.
    pub format: LogFormat,
    /// `dateformat` (strftime), for `asctime`; Python's `2026-12-07 14:02:11,123` when unset.
    pub dateformat: Option<String>,
    /// `static_fields` (JSON lines only).
    pub static_fields: serde_json::Map<String, Value>,
    /// `max_queue_size`.
    pub max_queue_size: usize,
    /// `dir`: the log goes to `<dir>/pgwarden.log` instead of standard output.
    pub dir: Option<PathBuf>,
    /// `file_num`.
    pub file_num: u32,
    /// `file_size`.
    pub file_size: u64,
    /// `mode`.
    pub mode: Option<u32>,
    /// `loggers`, as `tracing` targets (`pgwarden::runtime::policy`) and their levels.
    pub loggers: BTreeMap<String, LogLevel>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Plain(
                parse_template("log.format", DEFAULT_FORMAT).unwrap_or_default(),
            ),
            dateformat: None,
            static_fields: serde_json::Map::new(),
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
            dir: None,
            file_num: DEFAULT_FILE_NUM,
            file_size: DEFAULT_FILE_SIZE,
            mode: None,
            loggers: BTreeMap::new(),
        }
    }
}

impl LogConfig {
    /// The same, writing JSON lines (`pgwarden --log-format json`): the template's fields,
    /// or the default's.
    pub fn as_json(&self) -> LogConfig {
        let fields = match &self.format {
            LogFormat::Json(_) => return self.clone(),
            LogFormat::Plain(pieces) => template_fields(pieces),
        };
        LogConfig {
            format: LogFormat::Json(fields),
            ..self.clone()
        }
    }
}

/// Parses the `log:` section.
pub(crate) fn parse(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<LogConfig, ConfigError> {
    let mut config = LogConfig::default();
    if let Some(v) = s.get("level") {
        config.level = LogLevel::parse(&s.key_path("level"), v)?;
    }
    let json = match s.get("type") {
        None => false,
        Some(v) => {
            let path = s.key_path("type");
            match tree::string(&path, v)?.trim() {
                "plain" => false,
                "json" => true,
                other => {
                    return Err(ConfigError::new(
                        path,
                        format!("{other:?}: expected plain or json"),
                    ))
                }
            }
        }
    };
    let format_path = s.key_path("format");
    config.format = match (s.get("format"), json) {
        (None, false) => config.format,
        (None, true) => LogFormat::Json(template_fields(&parse_template(
            &format_path,
            DEFAULT_FORMAT,
        )?)),
        (Some(Value::String(t)), false) => LogFormat::Plain(parse_template(&format_path, t)?),
        (Some(Value::String(t)), true) => {
            LogFormat::Json(template_fields(&parse_template(&format_path, t)?))
        }
        (Some(Value::Array(items)), true) => LogFormat::Json(json_fields(&format_path, items)?),
        (Some(other), _) => {
            return Err(ConfigError::new(
                format_path,
                format!(
                    "{}: expected a template string{}",
                    tree::render(other),
                    if json { " or a list of fields" } else { "" }
                ),
            ))
        }
    };
    let fields = match &config.format {
        LogFormat::Plain(pieces) => template_fields(pieces),
        LogFormat::Json(fields) => fields.clone(),
    };
    for (field, _) in fields {
        if let LogField::Unfilled(name) = field {
            warnings.push(format!(
                "{format_path}: %({name}) has no counterpart in pgwarden; it shows None"
            ));
        }
    }
    if let Some(v) = s.get("dateformat") {
        let path = s.key_path("dateformat");
        let raw = tree::string(&path, v)?;
        if !raw.is_empty() {
            time::format_description::parse_strftime_owned(&raw).map_err(|e| {
                ConfigError::new(&path, format!("{raw:?}: not a strftime format ({e})"))
            })?;
            config.dateformat = Some(raw);
        }
    }
    if let Some(v) = s.get("static_fields") {
        let path = s.key_path("static_fields");
        let Some(map) = v.as_object() else {
            return Err(ConfigError::new(
                path,
                "expected a mapping of field names to values",
            ));
        };
        if !json && !map.is_empty() {
            warnings.push(format!(
                "{path} applies to `type: json` only; plain lines ignore it"
            ));
        }
        config.static_fields = map.clone();
    }
    if let Some(v) = s.get("max_queue_size") {
        let path = s.key_path("max_queue_size");
        let size = tree::whole(&path, v, "log records")?;
        if size == 0 {
            return Err(ConfigError::new(path, "must be at least 1 (log records)"));
        }
        config.max_queue_size = size as usize;
    }
    if let Some(v) = s.get("dir") {
        let path = s.key_path("dir");
        let dir = tree::string(&path, v)?;
        if dir.trim().is_empty() {
            return Err(ConfigError::new(path, "expected a directory"));
        }
        config.dir = Some(PathBuf::from(dir));
    }
    if let Some(v) = s.get("file_num") {
        let path = s.key_path("file_num");
        let n = tree::whole_u32(&path, v, "files")?;
        if n == 0 {
            return Err(ConfigError::new(path, "must be at least 1 (files)"));
        }
        config.file_num = n;
    }
    if let Some(v) = s.get("file_size") {
        let path = s.key_path("file_size");
        let size = tree::whole(&path, v, "bytes")?;
        if size < 4096 {
            return Err(ConfigError::new(
                path,
                format!("{size}: expected at least 4096 bytes"),
            ));
        }
        config.file_size = size;
    }
    if let Some(v) = s.get("mode") {
        config.mode = Some(file_mode(&s.key_path("mode"), v)?);
    }
    if let Some(v) = s.get("loggers") {
        let path = s.key_path("loggers");
        let Some(map) = v.as_object() else {
            return Err(ConfigError::new(
                path,
                "expected a mapping of logger names to levels",
            ));
        };
        for (name, level) in map {
            let at = format!("{path}.{name}");
            let level = LogLevel::parse(&at, level)?;
            match name.strip_prefix("pgwarden") {
                Some(rest) if rest.is_empty() || rest.starts_with('.') => {
                    config.loggers.insert(name.replace('.', "::"), level);
                }
                _ => warnings.push(format!(
                    "{at}: Patroni's logger has no counterpart in pgwarden (name pgwarden's \
                     modules, such as pgwarden.runtime.policy); it has no effect"
                )),
            }
        }
    }
    if s.get("traceback_level").is_some() {
        warnings.push(format!(
            "{}: pgwarden logs errors with their causes at their own level; it has no effect",
            s.key_path("traceback_level")
        ));
    }
    if let Some(v) = s.get("deduplicate_heartbeat_logs") {
        // pgwarden writes no per-loop heartbeat line to deduplicate: nothing to do either way.
        tree::boolean(&s.key_path("deduplicate_heartbeat_logs"), v)?;
    }
    s.finish(warnings);
    Ok(config)
}

/// Permission bits: `0640` as Patroni (PyYAML reads a leading zero as octal) means it.
/// The YAML reader here drops the leading zero (`0640` is the number 640), so digits that
/// are all octal digits are read as octal (`640`, `0640`, `"0640"`, `"0o640"`); a number
/// with an 8 or 9 in it is taken as written in decimal (`488` is 0o750).
fn file_mode(path: &str, v: &Value) -> Result<u32, ConfigError> {
    let raw = tree::string(path, v)?;
    let digits = raw.trim();
    let octal_digits = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let parsed = match digits.strip_prefix("0o") {
        Some(octal) => u32::from_str_radix(octal, 8).ok(),
        None if octal_digits => u32::from_str_radix(digits, 8).ok(),
        None => digits.parse().ok(),
    };
    match parsed {
        Some(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(ConfigError::new(
            path,
            format!("{raw:?}: expected file permissions such as 0640"),
        )),
    }
}

/// `%(asctime)s %(levelname)-8s: %(message)s` as pieces.
pub(crate) fn parse_template(path: &str, template: &str) -> Result<Vec<Piece>, ConfigError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            text.push('%');
            rest = after;
            continue;
        }
        let Some(open) = rest.strip_prefix('(') else {
            return Err(ConfigError::new(
                path,
                format!("{template:?}: a `%` must start a %(name)s field or be doubled"),
            ));
        };
        let Some(close) = open.find(')') else {
            return Err(ConfigError::new(path, format!("{template:?}: unclosed %(")));
        };
        let field = LogField::parse(path, &open[..close])?;
        let spec = &open[close + 1..];
        // Python's conversion flags: `-` left-aligns, `0` pads with zeros.
        let flags: String = spec
            .chars()
            .take_while(|c| matches!(c, '-' | '0'))
            .collect();
        let left = flags.contains('-');
        let zero = flags.contains('0') && !left;
        let digits: String = spec[flags.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let after_width = &spec[flags.len() + digits.len()..];
        let mut conversion = after_width.chars();
        match conversion.next() {
            Some('s' | 'd' | 'r' | 'f') => {}
            _ => {
                return Err(ConfigError::new(
                    path,
                    format!("{template:?}: %({}) must end in s, d, f or r", field.name()),
                ))
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Field {
            field,
            left,
            zero,
            width: digits.parse().unwrap_or(0),
        });
        rest = conversion.as_str();
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The fields of a template, in order, each under its own name.
fn template_fields(pieces: &[Piece]) -> Vec<(LogField, String)> {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Field { field, .. } => Some((*field, field.name().to_string())),
            Piece::Text(_) => None,
        })
        .collect()
}

/// A JSON format list: `[asctime, {levelname: level}, message]`.
fn json_fields(path: &str, items: &[Value]) -> Result<Vec<(LogField, String)>, ConfigError> {
    let mut fields = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match item {
            Value::String(name) => fields.push((LogField::parse(&at, name)?, name.clone())),
            Value::Object(map) => {
                for (name, renamed) in map {
                    let Some(renamed) = renamed.as_str() else {
                        return Err(ConfigError::new(
                            format!("{at}.{name}"),
                            "expected the field's new name",
                        ));
                    };
                    fields.push((LogField::parse(&at, name)?, renamed.to_string()));
                }
            }
            other => {
                return Err(ConfigError::new(
                    at,
                    format!(
                        "{}: expected a field name or {{field: new name}}",
                        tree::render(other)
                    ),
                ))
            }
        }
    }
    if fields.is_empty() {
        return Err(ConfigError::new(path, "expected at least one field"));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> Result<(LogConfig, Vec<String>), ConfigError> {
        let root = tree::yaml_to_json(yaml, "test").expect("yaml");
        let mut warnings = Vec::new();
        let config = parse(Section::new("log", &root).expect("section"), &mut warnings)?;
        Ok((config, warnings))
    }

    #[test]
    fn patronis_defaults() {
        let (config, warnings) = section("{}").expect("valid");
        assert_eq!(config, LogConfig::default());
        assert!(warnings.is_empty());
        assert_eq!(
            template_fields(match &config.format {
                LogFormat::Plain(p) => p,
                LogFormat::Json(_) => panic!("plain"),
            })
            .iter()
            .map(|(f, _)| f.name())
            .collect::<Vec<_>>(),
            ["asctime", "levelname", "message"]
        );
    }

    #[test]
    fn templates_take_widths_and_literal_percents() {
        let pieces =
            parse_template("log.format", "[%(levelname)-8s] 100%% %(message)s").expect("valid");
        assert_eq!(
            pieces,
            [
                Piece::Text("[".into()),
                Piece::Field {
                    field: LogField::Levelname,
                    left: true,
                    zero: false,
                    width: 8
                },
                Piece::Text("] 100% ".into()),
                Piece::Field {
                    field: LogField::Message,
                    left: false,
                    zero: false,
                    width: 0
                },
            ]
        );
        let error = parse_template("log.format", "%(funcname)s %(message)s").expect_err("refused");
        assert_eq!(error.path, "log.format");
        assert!(
            error
                .message
                .contains("%(funcname) is not a field of Python's LogRecord"),
            "{error}"
        );
        let error = parse_template("log.format", "50% done").expect_err("refused");
        assert!(error.message.contains("doubled"), "{error}");
    }

    #[test]
    fn patronis_acceptance_template_is_taken_and_unfilled_fields_warned_about() {
        // The format Patroni's own acceptance suite writes into every member's config.
        let (config, warnings) = section(
            "format: '%(asctime)s %(levelname)s [%(pathname)s:%(lineno)d - %(funcName)s]: \
             %(message)s'\n",
        )
        .expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        let LogFormat::Plain(pieces) = &config.format else {
            panic!("plain")
        };
        assert_eq!(
            template_fields(pieces)
                .iter()
                .map(|(f, _)| *f)
                .collect::<Vec<_>>(),
            [
                LogField::Asctime,
                LogField::Levelname,
                LogField::Pathname,
                LogField::Lineno,
                LogField::FuncName,
                LogField::Message
            ]
        );
        let (config, warnings) =
            section("format: '%(msecs)03d %(taskName)s %(message)s'\n").expect("valid");
        assert_eq!(
            warnings,
            ["log.format: %(taskName) has no counterpart in pgwarden; it shows None"]
        );
        let LogFormat::Plain(pieces) = &config.format else {
            panic!("plain")
        };
        assert_eq!(
            pieces[0],
            Piece::Field {
                field: LogField::Msecs,
                left: false,
                zero: true,
                width: 3
            }
        );
        let error = parse_template("log.format", "%(created)x").expect_err("refused");
        assert!(
            error.message.contains("must end in s, d, f or r"),
            "{error}"
        );
    }

    #[test]
    fn json_fields_may_be_renamed_and_static_fields_added() {
        let (config, warnings) = section(
            "type: json\nformat: [asctime, {levelname: level}, message]\n\
             static_fields: {app: pgwarden}\nlevel: warning\n",
        )
        .expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.level, LogLevel::Warning);
        assert_eq!(
            config.format,
            LogFormat::Json(vec![
                (LogField::Asctime, "asctime".into()),
                (LogField::Levelname, "level".into()),
                (LogField::Message, "message".into()),
            ])
        );
        assert_eq!(config.static_fields["app"], "pgwarden");
    }

    #[test]
    fn files_modes_and_loggers() {
        let (config, warnings) = section(
            "dir: /var/log/pgwarden\nfile_num: 3\nfile_size: 100000\nmode: 0640\n\
             loggers: {pgwarden.runtime.policy: DEBUG, patroni.postmaster: WARNING}\n\
             traceback_level: DEBUG\n",
        )
        .expect("valid");
        assert_eq!(config.dir, Some(PathBuf::from("/var/log/pgwarden")));
        assert_eq!((config.file_num, config.file_size), (3, 100_000));
        assert_eq!(config.mode, Some(0o640));
        for (written, mode) in [
            ("'0600'", 0o600),
            ("'0o644'", 0o644),
            ("488", 0o750),
            ("600", 0o600),
        ] {
            let (config, _) = section(&format!("mode: {written}")).expect(written);
            assert_eq!(config.mode, Some(mode), "{written}");
        }
        assert_eq!(
            config.loggers,
            BTreeMap::from([("pgwarden::runtime::policy".to_string(), LogLevel::Debug)])
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("log.loggers.patroni.postmaster"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("log.traceback_level"), "{warnings:?}");
    }

    #[test]
    fn bad_values_are_named() {
        for (yaml, path, says) in [
            ("level: LOUD", "log.level", "expected DEBUG"),
            ("type: xml", "log.type", "expected plain or json"),
            (
                "dateformat: '%Q'",
                "log.dateformat",
                "not a strftime format",
            ),
            ("file_size: 10", "log.file_size", "at least 4096"),
            ("mode: '0999'", "log.mode", "file permissions"),
            ("max_queue_size: 0", "log.max_queue_size", "at least 1"),
            (
                "type: json\nformat: [lineno, 3]",
                "log.format[1]",
                "expected a field name",
            ),
        ] {
            let error = section(yaml).expect_err(yaml);
            assert_eq!(error.path, path, "{yaml}: {error}");
            assert!(error.message.contains(says), "{yaml}: {error}");
        }
    }
}
