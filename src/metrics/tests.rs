use super::*;

#[test]
fn renders_labels_and_histograms() {
    let m = Metrics::default();
    m.requests_total
        .with(&["r\"1", "allow", "none", "2xx"])
        .inc();
    m.requests_total
        .with(&["r\"1", "allow", "none", "2xx"])
        .inc();
    m.request_duration_seconds
        .with(&["r1"])
        .observe(Duration::from_millis(3));
    let text = m.render();
    assert!(text.contains(
        "portcullis_requests_total{route=\"r\\\"1\",decision=\"allow\",kind=\"none\",code=\"2xx\"} 2"
    ));
    assert!(
        text.contains("portcullis_request_duration_seconds_bucket{route=\"r1\",le=\"0.0025\"} 0")
    );
    assert!(
        text.contains("portcullis_request_duration_seconds_bucket{route=\"r1\",le=\"0.005\"} 1")
    );
    assert!(text.contains("portcullis_request_duration_seconds_count{route=\"r1\"} 1"));
}

#[test]
fn certificate_expiry_counts_down_at_scrape_time() {
    let m = Metrics::default();
    let now = std::time::SystemTime::now();
    m.set_cert_expiry("/etc/tls/a.pem", now + Duration::from_secs(3 * 86400));
    m.set_cert_expiry("/etc/tls/old.pem", now - Duration::from_secs(60));
    let later = m.cert_expiry(now + Duration::from_secs(86400));
    assert_eq!(
        later,
        vec![
            ("/etc/tls/a.pem".to_string(), 2.0 * 86400.0),
            ("/etc/tls/old.pem".to_string(), -86460.0)
        ]
    );
    let text = m.render();
    assert!(text.contains("portcullis_cert_expiry_seconds{file=\"/etc/tls/old.pem\"} -6"));
    // The timestamp form does not depend on the scrape time.
    let old = (now - Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(text.contains(&format!(
        "portcullis_cert_expiry_timestamp_seconds{{file=\"/etc/tls/old.pem\"}} {old}"
    )));
}

#[test]
fn build_info_process_and_status_classes() {
    let text = Metrics::default().render();
    assert!(text.contains(&format!(
        "portcullis_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("portcullis_otel_spans_dropped_total 0"));
    #[cfg(target_os = "linux")]
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(&format!("\n{name}")), "{name} missing");
    }
    assert_eq!(status_class(200), "2xx");
    assert_eq!(status_class(302), "3xx");
    assert_eq!(status_class(429), "4xx");
    assert_eq!(status_class(502), "5xx");
    assert_eq!(status_class(101), "1xx");
    // No valid route name can collide with the unrouted label.
    assert!(!UNROUTED
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
}
