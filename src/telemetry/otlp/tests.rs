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
    assert!(span.0.is_none());
    assert!(span.stage("route").0.is_none());
    assert!(span.upstream("r").0.is_none());
}
