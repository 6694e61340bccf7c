//! Spans over the OpenTelemetry API (feature `otel`); `noop.rs` is the twin without it.
//!
//! A request's spans live in a [`RequestSpan`] (the server span) and its [`Stage`]s (children,
//! ended when dropped). Mechanisms below the pipeline (the LDAP bind) open children of whatever
//! span is current with [`within`]: the pipeline runs async stages inside their span's context.

mod export;

pub use export::start;

use std::future::Future;

use http::header::{HeaderMap, HeaderValue};
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue, SpanId};
use opentelemetry_sdk::trace::SdkTracer;

use super::{Settings, TRACEPARENT, TRACESTATE};
use crate::problem::Refusal;

/// A `tracestate` longer than this is not propagated (W3C: implementations may drop beyond
/// 512 characters), so a caller cannot make every upstream request carry kilobytes.
const MAX_TRACESTATE: usize = 512;

/// The tracer a request's spans are made with, carried in their [`Context`] so that code far
/// below the pipeline can open children without a global tracer (several gateways may run in
/// one process, each with its own exporter).
#[derive(Debug, Clone)]
struct Carried(SdkTracer);

/// What the pipeline holds: a tracer when `[telemetry] otlp_endpoint` is set.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Holds the provider: the exporter stops (and flushes) when the last clone is dropped.
    tracer: Option<SdkTracer>,
    trust: bool,
}

impl Default for Telemetry {
    /// Tracing off; a caller's `traceparent` passes through untouched.
    fn default() -> Self {
        Telemetry {
            tracer: None,
            trust: true,
        }
    }
}

impl Telemetry {
    /// Off: no tracer, only the `trust_incoming_traceparent` rule for the upstream's headers.
    pub fn off(settings: &Settings) -> Self {
        Telemetry {
            trust: settings.trust_incoming_traceparent,
            ..Telemetry::default()
        }
    }

    /// Whether spans are made at all.
    pub fn enabled(&self) -> bool {
        self.tracer.is_some()
    }

    /// The server span of one request: a child of the caller's `traceparent` when trusted and
    /// valid, else the root of a new trace. No span (no work) when tracing is off; a span that
    /// the sampler did not record gets no children (see [`RequestSpan`]).
    pub fn server_span(&self, method: &http::Method, headers: &HeaderMap) -> RequestSpan {
        let Some(tracer) = &self.tracer else {
            return RequestSpan::default();
        };
        let parent = match self.trust.then(|| incoming(headers)).flatten() {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        let mut span = tracer
            .span_builder(method_name(method))
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        let recording = span.is_recording();
        if recording {
            span.set_attribute(KeyValue::new("http.request.method", method_name(method)));
        }
        let cx = parent.with_span(span);
        RequestSpan {
            cx: Some(if recording {
                cx.with_value(Carried(tracer.clone()))
            } else {
                cx
            }),
            recording,
        }
    }

    /// The upstream's `traceparent`/`tracestate`: the caller's are removed unless trusted (a
    /// legacy upstream must never see a forged one) and, with tracing on, replaced by the
    /// context of `span` (the gateway's upstream span).
    pub fn to_upstream(&self, headers: &mut impl super::TraceFields, span: &Stage) {
        let Some(cx) = &span.cx else {
            return super::untraced_to_upstream(self.trust, headers);
        };
        headers.remove(&TRACEPARENT);
        headers.remove(&TRACESTATE);
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return;
        }
        let flags = sc.trace_flags() & TraceFlags::SAMPLED;
        let tp = format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            flags.to_u8()
        );
        if let Ok(v) = HeaderValue::from_str(&tp) {
            headers.insert(TRACEPARENT, v);
        }
        let ts = sc.trace_state().header();
        if let Ok(v) = HeaderValue::from_str(&ts)
            .map_err(|_| ())
            .and_then(nonempty)
        {
            headers.insert(TRACESTATE, v);
        }
    }

    /// The trace id for the audit line: the server span's, or with tracing off the trusted
    /// caller's (so the audit line still joins the caller's trace).
    pub fn trace_id(&self, span: &RequestSpan, headers: &HeaderMap) -> Option<String> {
        match &span.cx {
            Some(cx) => Some(cx.span().span_context().trace_id().to_string()),
            None => super::untraced_trace_id(self.trust, headers),
        }
    }
}

fn nonempty(v: HeaderValue) -> Result<HeaderValue, ()> {
    if v.is_empty() {
        Err(())
    } else {
        Ok(v)
    }
}

/// The caller's span context from its `traceparent` (see [`super::caller_traceparent`]) and
/// `tracestate`.
fn incoming(headers: &HeaderMap) -> Option<SpanContext> {
    let tp = super::caller_traceparent(headers)?;
    let trace_id = TraceId::from_hex(tp.trace_id).ok()?;
    let span_id = SpanId::from_hex(tp.parent_id).ok()?;
    let flags = if tp.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = tracestate(headers).unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// One well-formed `tracestate` of reasonable size, or none.
fn tracestate(headers: &HeaderMap) -> Option<TraceState> {
    let mut all = headers.get_all(&TRACESTATE).iter();
    let v = all.next()?.to_str().ok()?;
    if all.next().is_some() || v.len() > MAX_TRACESTATE {
        return None;
    }
    v.parse().ok()
}

/// The server span of one request. With tracing off there is none. A request the sampler
/// did not record (`sample_ratio` below 1, or a caller's unsampled `traceparent`) keeps the
/// server span's context, for the audit line's trace id and the upstream's `traceparent`
/// (sampled flag off), but makes no other span: its stages, the upstream call and [`within`]
/// cost one branch each. Only recorded spans are exported, so nothing seen changes.
#[derive(Debug, Default)]
pub struct RequestSpan {
    cx: Option<Context>,
    recording: bool,
}

impl RequestSpan {
    /// The server span's context, when it is recorded.
    fn recorded(&self) -> Option<&Context> {
        self.cx.as_ref().filter(|_| self.recording)
    }

    /// A child span for a stage, ended when the [`Stage`] is dropped.
    pub fn stage(&self, name: &'static str) -> Stage {
        Stage {
            cx: self
                .recorded()
                .and_then(|cx| child(cx, name, SpanKind::Internal)),
            ends: true,
        }
    }

    /// The upstream call's span (kind client): its context goes to the upstream. Not recorded:
    /// the server span's context goes there instead (same trace, sampled flag off).
    pub fn upstream(&self, route: &str) -> Stage {
        let Some(cx) = self.recorded() else {
            return Stage {
                cx: self.cx.clone(),
                ends: false,
            };
        };
        let stage = Stage {
            cx: child(cx, "upstream", SpanKind::Client),
            ends: true,
        };
        if let Some(cx) = &stage.cx {
            cx.span()
                .set_attribute(KeyValue::new("portcullis.route", route.to_owned()));
        }
        stage
    }

    /// Run a synchronous stage inside its own child span.
    pub fn sync<T>(
        &self,
        name: &'static str,
        f: impl FnOnce() -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        self.stage(name).close(f())
    }

    /// Run an async stage inside its own child span (so [`within`] below it finds the parent);
    /// a refusal marks the span as failed.
    pub async fn run<T, F>(&self, name: &'static str, fut: F) -> Result<T, Refusal>
    where
        F: Future<Output = Result<T, Refusal>>,
    {
        let stage = self.stage(name);
        let out = match &stage.cx {
            None => fut.await,
            Some(cx) => fut.with_context(cx.clone()).await,
        };
        stage.outcome(&out);
        out
    }

    /// Name the server span after the route (`GET route-name`) once the route is known.
    pub fn routed(&self, method: &http::Method, route: &str) {
        if let Some(cx) = self.recorded() {
            let span = cx.span();
            span.update_name(format!("{method} {route}"));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
    }

    /// End the server span with what the audit line says.
    pub fn finish(&self, status: u16, decision: &'static str, reason: &'static str) {
        if let Some(cx) = self.recorded() {
            let span = cx.span();
            span.set_attributes([
                KeyValue::new("http.response.status_code", i64::from(status)),
                KeyValue::new("portcullis.decision", decision),
                KeyValue::new("portcullis.reason", reason),
            ]);
            if status >= 500 {
                span.set_status(Status::error(reason));
            }
            span.end();
        }
    }
}

/// A child span, ended on drop; or, for the upstream call of a request that is not recorded,
/// the server span's context only (`ends` false: it is not this stage's to end).
#[derive(Debug)]
pub struct Stage {
    cx: Option<Context>,
    ends: bool,
}

impl Default for Stage {
    fn default() -> Self {
        Stage {
            cx: None,
            ends: true,
        }
    }
}

impl Stage {
    /// Record a refusal's code on the span (its status is an error only for a 5xx: a refused
    /// credential is the gateway working, not failing).
    pub fn outcome<T>(&self, r: &Result<T, Refusal>) {
        if let (Some(cx), true, Err(refusal)) = (&self.cx, self.ends, r) {
            let span = cx.span();
            span.set_attribute(KeyValue::new("portcullis.reason", refusal.code.as_str()));
            if refusal.code.status().is_server_error() {
                span.set_status(Status::error(refusal.code.as_str()));
            }
        }
    }

    /// End the span with the stage's result, and pass the result on.
    pub fn close<T>(self, r: Result<T, Refusal>) -> Result<T, Refusal> {
        self.outcome(&r);
        r
    }

    /// End the upstream span with the upstream's status (or the refusal).
    pub fn close_response<B>(
        self,
        r: Result<http::Response<B>, Refusal>,
    ) -> Result<http::Response<B>, Refusal> {
        if let (Some(cx), true, Ok(resp)) = (&self.cx, self.ends, &r) {
            let status = resp.status();
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                span.set_status(Status::error(status.as_str().to_owned()));
            }
        }
        self.close(r)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let (Some(cx), true) = (&self.cx, self.ends) {
            cx.span().end();
        }
    }
}

/// The span name and `http.request.method` of a request: the standard methods without an
/// allocation.
fn method_name(method: &http::Method) -> std::borrow::Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|m| **m == method.as_str()) {
        Some(m) => std::borrow::Cow::Borrowed(m),
        None => std::borrow::Cow::Owned(method.as_str().to_owned()),
    }
}

fn child(parent: &Context, name: &'static str, kind: SpanKind) -> Option<Context> {
    let Carried(tracer) = parent.get::<Carried>()?;
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .start_with_context(tracer, parent);
    Some(parent.with_span(span))
}

/// Run `fut` in a child span of the current one (a mechanism's own step, such as the LDAP bind
/// inside `authenticate`). The span is opened now, in the caller's context, so the future may be
/// spawned onto another task. With no current request span: `fut` unchanged, no span.
pub fn within<F: Future>(name: &'static str, fut: F) -> impl Future<Output = F::Output> {
    let cx = Context::map_current(|cx| child(cx, name, SpanKind::Internal));
    async move {
        match cx {
            None => fut.await,
            Some(cx) => {
                let out = fut.with_context(cx.clone()).await;
                cx.span().end();
                out
            }
        }
    }
}

#[cfg(test)]
mod tests;
