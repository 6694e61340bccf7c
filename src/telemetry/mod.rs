//! OpenTelemetry traces (`[telemetry]`, see `docs/observability.md`) and the diagnostic log
//! format.
//!
//! Spans are made with the OpenTelemetry API directly, not through `tracing` spans: with no
//! `otlp_endpoint` a [`Telemetry`] holds no tracer, every helper here is a `None` check, and the
//! request path does no span work at all (a `tracing` span would still be registered by the
//! diagnostics subscriber and would change its lines).
//!
//! The OpenTelemetry crates are behind the cargo feature `otel` (default on). Everything that
//! names them lives in `otlp` (spans and the exporter); `noop` is its twin with the same API for
//! a build without the feature, so the pipeline and the mechanisms compile unchanged and no
//! `#[cfg]` leaves this module. What both builds share is here: `[telemetry]`'s settings, the
//! strict `traceparent` parser, and what an untraced request does with the caller's trace
//! headers (pass them through when trusted, remove them otherwise) and its audit `trace_id`.

pub mod log;
#[cfg(not(feature = "otel"))]
mod noop;
#[cfg(feature = "otel")]
mod otlp;

#[cfg(not(feature = "otel"))]
pub use noop::{start, within, RequestSpan, Stage, Telemetry};
#[cfg(feature = "otel")]
pub use otlp::{start, within, RequestSpan, Stage, Telemetry};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::task::JoinHandle;

/// The span exporter's task, and how to tell it that no more spans will come: the gateway
/// closes it after the listener drained, and it sends what is queued and ends.
pub struct Exporter {
    task: JoinHandle<()>,
    close: Box<dyn FnOnce() + Send>,
}

impl Exporter {
    // Only the `otel` build has an exporter to start.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn new(task: JoinHandle<()>, close: impl FnOnce() + Send + 'static) -> Self {
        Exporter {
            task,
            close: Box::new(close),
        }
    }

    /// Close the queue and wait (at most `within`) for the task to send what is left. False
    /// when it did not finish in time (what it still held is lost).
    pub async fn finish(self, within: std::time::Duration) -> bool {
        (self.close)();
        tokio::time::timeout(within, self.task).await.is_ok()
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Whether this build can export traces (cargo feature `otel`).
pub const OTEL: bool = cfg!(feature = "otel");

/// Why a build without the `otel` feature refuses `[telemetry] otlp_endpoint`: a configured
/// collector that silently receives nothing would look like an outage of the collector.
pub const NO_OTEL: &str = "this build has no OpenTelemetry support (feature `otel`): remove otlp_endpoint, or run a build with the default features";

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The OTLP/HTTP traces URL (`…/v1/traces`); `None`: tracing off.
    pub otlp_endpoint: Option<http::Uri>,
    /// Share of new traces recorded (a caller's sampled flag decides for its traces).
    pub sample_ratio: f64,
    /// Continue the caller's `traceparent`; false: every request starts a new trace and the
    /// caller's `traceparent`/`tracestate` never reach the upstream.
    pub trust_incoming_traceparent: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            trust_incoming_traceparent: true,
        }
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct StartError(String);

/// A caller's `traceparent`, checked: borrowed from the header, so an untraced request that
/// only needs the trace id for its audit line copies 32 bytes and parses nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent<'a> {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: &'a str,
    /// 16 lowercase hex digits, not all zero.
    pub parent_id: &'a str,
    /// The sampled flag (the other flags are not propagated).
    pub sampled: bool,
}

/// The caller's `traceparent` when it is exactly one valid field (two `traceparent` fields are
/// none: which one would a downstream believe?).
pub fn caller_traceparent(headers: &HeaderMap) -> Option<Traceparent<'_>> {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let tp = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    parse_traceparent(tp)
}

/// `version-traceid-parentid-flags`, strictly (W3C Trace Context level 1: lowercase hex of exact
/// lengths, ids not all zero, version `ff` invalid; a later version may append fields after a
/// `-`).
pub fn parse_traceparent(tp: &str) -> Option<Traceparent<'_>> {
    let b = tp.as_bytes();
    let lower_hex = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let zero = |s: &[u8]| s.iter().all(|c| *c == b'0');
    let version = b.get(0..2)?;
    let fields_end = 55;
    if !lower_hex(version) || version == b"ff" || b.len() < fields_end {
        return None;
    }
    if version == b"00" && b.len() != fields_end {
        return None;
    }
    if b.len() > fields_end && b.get(fields_end) != Some(&b'-') {
        return None;
    }
    let (trace, span, flags) = (b.get(3..35)?, b.get(36..52)?, b.get(53..55)?);
    let dashes = [2, 35, 52].iter().all(|i| b.get(*i) == Some(&b'-'));
    if !dashes || !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
        return None;
    }
    if zero(trace) || zero(span) {
        return None;
    }
    let flags = u8::from_str_radix(tp.get(53..55)?, 16).ok()?;
    Some(Traceparent {
        trace_id: tp.get(3..35)?,
        parent_id: tp.get(36..52)?,
        sampled: flags & 1 == 1,
    })
}

/// Where an upstream request's trace fields are set: the proxy's description of the upstream
/// head (it edits no map, issue 22), or a map. A trait here, so that this base module needs
/// nothing of the proxy.
pub trait TraceFields {
    /// Drop the field (the caller's, or one set before).
    fn remove(&mut self, name: &HeaderName);
    /// Set the field, in place of any other of that name.
    fn insert(&mut self, name: HeaderName, value: HeaderValue);
}

impl TraceFields for HeaderMap {
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }

    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        HeaderMap::insert(self, name, value);
    }
}

/// An untraced request's upstream headers: a trusted caller's `traceparent`/`tracestate` pass
/// through untouched (the gateway is transparent to its trace); untrusted ones are removed, so
/// a legacy upstream never sees a trace id the caller picked.
fn untraced_to_upstream(trust: bool, headers: &mut impl TraceFields) {
    if !trust {
        headers.remove(&TRACEPARENT);
        headers.remove(&TRACESTATE);
    }
}

/// An untraced request's audit `trace_id`: the trusted caller's (so the audit line still joins
/// the caller's trace), else none. No id is generated for it.
fn untraced_trace_id(trust: bool, headers: &HeaderMap) -> Option<String> {
    if !trust {
        return None;
    }
    caller_traceparent(headers).map(|tp| tp.trace_id.to_owned())
}

#[cfg(test)]
mod tests;
