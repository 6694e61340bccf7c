//! Diagnostics on stderr (`serve --log-format text|json`). The audit log is separate (stdout or
//! its file) and never mixed with these lines.
//!
//! `json`: one object per line, `{"ts", "level", "target", "message", …fields}`. `ts` is RFC 3339
//! with milliseconds like the audit log's, and events use the audit log's field names where
//! they overlap (`route`, `credential`, `identity`, `reason`, `request_id`), so one query can
//! join both streams.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colour on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the diagnostics subscriber on stderr (`RUST_LOG`, default `info`). A second call is a
/// no-op (tests start several gateways in one process).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLine).try_init(),
    };
}

/// The `json` line format.
#[derive(Debug, Clone, Copy)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
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
        writeln!(writer, "{}", Value::Object(object(event)))
    }
}

/// The event as a JSON object (fields first; `ts`, `level`, `target` cannot be overridden by a
/// field of the same name).
pub fn object(event: &Event<'_>) -> Map<String, Value> {
    let mut obj = Map::new();
    event.record(&mut Fields(&mut obj));
    let meta = event.metadata();
    obj.insert(
        "ts".into(),
        Value::String(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
    );
    obj.insert(
        "level".into(),
        Value::String(meta.level().as_str().to_ascii_lowercase()),
    );
    obj.insert("target".into(), Value::String(meta.target().to_owned()));
    obj
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}
