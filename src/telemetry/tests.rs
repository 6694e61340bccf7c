//! What both builds (with and without the `otel` feature) do; `otlp/tests.rs` has the spans'.

use http::header::HeaderValue;

use super::*;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_is_read() {
    let tp = parse_traceparent(TP).unwrap();
    assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp.parent_id, "00f067aa0ba902b7");
    assert!(tp.sampled);
    assert!(
        !parse_traceparent(&format!("{}00", &TP[..53]))
            .unwrap()
            .sampled
    );
    // Only the sampled bit counts: other flags are neither kept nor a reason to refuse.
    assert!(
        !parse_traceparent(&format!("{}02", &TP[..53]))
            .unwrap()
            .sampled
    );
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
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // leading space
    ] {
        assert!(parse_traceparent(bad).is_none(), "{bad:?} accepted");
    }
}

#[test]
fn two_traceparents_are_none() {
    let mut h = HeaderMap::new();
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    assert!(caller_traceparent(&h).is_some());
    h.append(TRACEPARENT, HeaderValue::from_static(TP));
    assert!(caller_traceparent(&h).is_none());
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
    // A malformed one still passes through (the gateway is transparent when not tracing) but
    // is no trace id for the audit line.
    let mut bad = HeaderMap::new();
    bad.append(TRACEPARENT, HeaderValue::from_static("00-zz-zz-01"));
    let mut passed = bad.clone();
    on.to_upstream(&mut passed, &Stage::default());
    assert_eq!(passed, bad);
    assert_eq!(on.trace_id(&RequestSpan::default(), &bad), None);
    let untrusted = Telemetry::off(&Settings {
        trust_incoming_traceparent: false,
        ..Settings::default()
    });
    let mut stripped = h.clone();
    untrusted.to_upstream(&mut stripped, &Stage::default());
    assert!(stripped.get(TRACEPARENT).is_none() && stripped.get(TRACESTATE).is_none());
    assert_eq!(untrusted.trace_id(&RequestSpan::default(), &h), None);
}

/// With `[telemetry]` absent both builds start no exporter and make no spans.
#[tokio::test]
async fn not_configured_starts_nothing() {
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let (t, task) = start(
        &Settings::default(),
        metrics,
        rustls::RootCertStore::empty(),
    )
    .unwrap();
    assert!(!t.enabled() && task.is_none());
    let span = t.server_span(&http::Method::GET, &HeaderMap::new());
    let out: Result<u8, crate::problem::Refusal> = span.run("authenticate", async { Ok(7) }).await;
    assert_eq!(out.unwrap(), 7);
    assert_eq!(within("ldap bind", async { 8 }).await, 8);
}

/// Without the feature an endpoint is refused, by the config check (`portcullis check`,
/// `serve`, reloads) and by `start` for a `Settings` made in code; with it, it is accepted.
#[tokio::test]
async fn an_otlp_endpoint_is_refused_exactly_when_the_build_has_no_otel() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n";
    let path = dir.path().join("p.toml");
    std::fs::write(&path, toml).unwrap();
    let checked = crate::config::load(&path);
    let settings = Settings {
        otlp_endpoint: Some("http://127.0.0.1:4318/v1/traces".parse().unwrap()),
        ..Settings::default()
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let started = start(&settings, metrics, rustls::RootCertStore::empty());
    if OTEL {
        let err = checked.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(!err.contains("telemetry"), "{err}");
        let (t, task) = started.unwrap();
        assert!(t.enabled() && task.is_some());
    } else {
        let err = format!("{:#}", checked.unwrap_err());
        assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
        assert!(err.contains(NO_OTEL), "{err}");
        assert!(started.unwrap_err().to_string().contains(NO_OTEL));
    }
}
