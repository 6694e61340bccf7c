use super::*;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_is_read() {
    let (t, s, f) = parse_traceparent(TP).unwrap();
    assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(s.to_string(), "00f067aa0ba902b7");
    assert!(f.is_sampled());
    // A later version may append fields.
    assert!(parse_traceparent(&format!("01{}-extra", &TP[2..])).is_some());
}

#[test]
fn malformed_traceparents_are_refused() {
    for bad in [
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
        "00-abc-def-01", // short ids (u128 parse accepts them)
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // v00 with extra
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // no dash before extra
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
    ] {
        assert!(parse_traceparent(bad).is_none(), "{bad:?} accepted");
    }
}

#[test]
fn two_traceparents_are_none() {
    let mut h = HeaderMap::new();
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    assert!(incoming(&h).is_some());
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    assert!(incoming(&h).is_none());
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
}

#[test]
fn off_and_trusted_passes_headers_through_untrusted_strips_them() {
    let mut h = HeaderMap::new();
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    h.append(TRACESTATE, HeaderValue::from_static("vendor=abc"));
    let on = Telemetry::off(&Settings::default());
    let mut kept = h.clone();
    on.to_upstream(&mut kept, &Stage::default());
    assert_eq!(kept, h);
    assert_eq!(
        on.trace_id(&RequestSpan::default(), &h).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let untrusted = Telemetry::off(&Settings {
        trust_incoming_traceparent: false,
        ..Settings::default()
    });
    let mut stripped = h.clone();
    untrusted.to_upstream(&mut stripped, &Stage::default());
    assert!(stripped.get(TRACEPARENT).is_none() && stripped.get(TRACESTATE).is_none());
    assert_eq!(untrusted.trace_id(&RequestSpan::default(), &h), None);
}

#[test]
fn tracing_off_makes_no_spans() {
    let t = Telemetry::default();
    assert!(!t.enabled());
    let span = t.server_span(&http::Method::GET, &HeaderMap::new());
    assert!(span.0.is_none());
    assert!(span.stage("route").0.is_none());
}
