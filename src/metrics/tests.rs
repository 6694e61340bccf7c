use super::*;

#[test]
fn renders_labels_and_histograms() {
    let m = Metrics::default();
    m.requests_total.with(&["r\"1", "allow", "none"]).inc();
    m.requests_total.with(&["r\"1", "allow", "none"]).inc();
    m.request_duration_seconds
        .with(&["r1"])
        .observe(Duration::from_millis(3));
    let text = m.render();
    assert!(text.contains(
        "portcullis_requests_total{route=\"r\\\"1\",decision=\"allow\",kind=\"none\"} 2"
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
}
