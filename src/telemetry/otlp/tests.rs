use futures_util::FutureExt as _;
use http::header::HeaderValue;

use super::*;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn the_callers_span_context_is_its_traceparent() {
    let mut h = HeaderMap::new();
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    let sc = incoming(&h).unwrap();
    assert_eq!(
        sc.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
    assert!(sc.is_sampled() && sc.is_remote());
}

#[test]
fn oversized_or_duplicate_tracestate_is_dropped() {
    let mut h = HeaderMap::new();
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    h.append(TRACESTATE, HeaderValue::from_static("vendor=abc"));
    assert_eq!(incoming(&h).unwrap().trace_state().header(), "vendor=abc");
    let long = format!("vendor={}", "a".repeat(600));
    h.insert(TRACESTATE, HeaderValue::from_str(&long).unwrap());
    assert_eq!(incoming(&h).unwrap().trace_state().header(), "");
    h.insert(TRACESTATE, HeaderValue::from_static("vendor=abc"));
    h.append(TRACESTATE, HeaderValue::from_static("other=def"));
    assert_eq!(incoming(&h).unwrap().trace_state().header(), "");
}

#[test]
fn tracing_off_makes_no_spans() {
    let t = Telemetry::default();
    assert!(!t.enabled());
    let span = t.server_span(&http::Method::GET, &HeaderMap::new());
    assert!(span.cx.is_none());
    assert!(span.stage("route").cx.is_none());
    assert!(span.upstream("r").cx.is_none());
}

/// Span names as they end, from a provider sampling `ratio` of new traces as the gateway's does.
#[derive(Debug, Default, Clone)]
struct Ended(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl opentelemetry_sdk::trace::SpanProcessor for Ended {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.lock().unwrap().push(span.name.into_owned());
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(
        &self,
        _: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

fn sampling(ratio: f64) -> (Telemetry, Ended) {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    let ended = Ended::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(ended.clone())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .build();
    let t = Telemetry {
        tracer: Some(provider.tracer("test")),
        trust: true,
    };
    (t, ended)
}

/// One request's span work as the pipeline does it; the upstream's `traceparent`.
fn one_request(t: &Telemetry, caller: &HeaderMap) -> (RequestSpan, String) {
    let span = t.server_span(&http::Method::GET, caller);
    span.routed(&http::Method::GET, "legacy");
    span.sync("authenticate", || Ok(())).unwrap();
    // A mechanism's own step, opened below a stage as the LDAP bind is.
    let stage = span.run("authorize", async {
        within("ldap.bind", async {}).await;
        Ok::<_, Refusal>(())
    });
    stage.now_or_never().unwrap().unwrap();
    let upstream = span.upstream("legacy");
    let mut to = HeaderMap::new();
    t.to_upstream(&mut to, &upstream);
    drop(upstream);
    span.finish(200, "allow", "ok");
    let tp = to[&TRACEPARENT].to_str().unwrap().to_owned();
    (span, tp)
}

#[test]
fn a_request_the_sampler_drops_makes_no_span_but_keeps_its_trace() {
    let (t, ended) = sampling(0.0);
    let (span, tp) = one_request(&t, &HeaderMap::new());
    assert!(!span.recording && span.stage("x").cx.is_none());
    assert!(ended.0.lock().unwrap().is_empty());
    // The upstream still joins the trace: the server span's ids, sampled flag off.
    let sc = span.cx.as_ref().unwrap().span().span_context().clone();
    assert_eq!(tp, format!("00-{}-{}-00", sc.trace_id(), sc.span_id()));
    let audit = t.trace_id(&span, &HeaderMap::new()).unwrap();
    assert_eq!(audit, sc.trace_id().to_string());

    // A caller's unsampled trace: continued with the flag off, its span id not reused.
    let mut h = HeaderMap::new();
    h.append(
        TRACEPARENT,
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    );
    let (_, tp) = one_request(&t, &h);
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        tp.ends_with("-00") && !tp.contains("00f067aa0ba902b7"),
        "{tp}"
    );
    assert!(ended.0.lock().unwrap().is_empty());
}

#[test]
fn a_recorded_request_ends_every_span_and_the_upstream_gets_its_client_span() {
    let (t, ended) = sampling(0.0);
    // The caller sampled it: recorded whatever the ratio (its parent decides).
    let mut h = HeaderMap::new();
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    let (span, tp) = one_request(&t, &h);
    assert!(span.recording);
    let names = ended.0.lock().unwrap().clone();
    assert_eq!(
        names,
        [
            "authenticate",
            "ldap.bind",
            "authorize",
            "upstream",
            "GET legacy"
        ],
        "{names:?}"
    );
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"));
    let server = span.cx.as_ref().unwrap().span().span_context().span_id();
    assert!(
        !tp.contains(&server.to_string()),
        "the client span's id, not the server's: {tp}"
    );

    let (t, ended) = sampling(1.0);
    let (span, _) = one_request(&t, &HeaderMap::new());
    assert!(span.recording);
    assert_eq!(ended.0.lock().unwrap().len(), 5);
}
