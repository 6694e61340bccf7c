//! The build without the `otel` feature: the API of `otlp.rs` with no spans behind it. Every
//! request is untraced, exactly as in a default build with no `otlp_endpoint`: a trusted
//! caller's `traceparent`/`tracestate` pass through to the upstream untouched and its trace id
//! is the audit line's `trace_id`; with `trust_incoming_traceparent = false` they are removed
//! and `trace_id` is absent.

use std::future::Future;
use std::sync::Arc;

use http::header::HeaderMap;

use super::{Settings, StartError, NO_OTEL};
use crate::metrics::Metrics;
use crate::problem::Refusal;

/// What the pipeline holds: only the `trust_incoming_traceparent` rule.
#[derive(Debug, Clone)]
pub struct Telemetry {
    trust: bool,
}

impl Default for Telemetry {
    /// A caller's `traceparent` passes through untouched.
    fn default() -> Self {
        Telemetry { trust: true }
    }
}

/// `[telemetry]` without an exporter. The config check refuses `otlp_endpoint` in this build
/// already; a [`Settings`] made in code with one is refused here too, never ignored.
pub fn start(
    settings: &Settings,
    _metrics: Arc<Metrics>,
    _roots: rustls::RootCertStore,
) -> Result<(Telemetry, Option<super::Exporter>), StartError> {
    if settings.otlp_endpoint.is_some() {
        return Err(StartError(NO_OTEL.to_owned()));
    }
    Ok((Telemetry::off(settings), None))
}

impl Telemetry {
    pub fn off(settings: &Settings) -> Self {
        Telemetry {
            trust: settings.trust_incoming_traceparent,
        }
    }

    /// Never: this build makes no spans.
    pub fn enabled(&self) -> bool {
        false
    }

    pub fn server_span(&self, _method: &http::Method, _headers: &HeaderMap) -> RequestSpan {
        RequestSpan(())
    }

    pub fn to_upstream(&self, headers: &mut impl super::TraceFields, _span: &Stage) {
        super::untraced_to_upstream(self.trust, headers);
    }

    pub fn trace_id(&self, _span: &RequestSpan, headers: &HeaderMap) -> Option<String> {
        super::untraced_trace_id(self.trust, headers)
    }
}

/// No span. (The private field keeps it built only here and by `Default`, as in `otlp.rs`.)
#[derive(Debug, Default)]
pub struct RequestSpan(());

impl RequestSpan {
    pub fn stage(&self, _name: &'static str) -> Stage {
        Stage(())
    }

    pub fn upstream(&self, _route: &str) -> Stage {
        Stage(())
    }

    pub fn sync<T>(
        &self,
        _name: &'static str,
        f: impl FnOnce() -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        f()
    }

    pub async fn run<T, F>(&self, _name: &'static str, fut: F) -> Result<T, Refusal>
    where
        F: Future<Output = Result<T, Refusal>>,
    {
        fut.await
    }

    pub fn routed(&self, _method: &http::Method, _route: &str) {}

    pub fn finish(&self, _status: u16, _decision: &'static str, _reason: &'static str) {}
}

/// No span.
#[derive(Debug, Default)]
pub struct Stage(());

impl Stage {
    pub fn outcome<T>(&self, _r: &Result<T, Refusal>) {}

    pub fn close<T>(self, r: Result<T, Refusal>) -> Result<T, Refusal> {
        r
    }

    pub fn close_response<B>(
        self,
        r: Result<http::Response<B>, Refusal>,
    ) -> Result<http::Response<B>, Refusal> {
        r
    }
}

/// `fut` itself: there is no span to open.
pub fn within<F: Future>(_name: &'static str, fut: F) -> F {
    fut
}
