//! The admin listener: liveness, readiness, Prometheus metrics.

use crate::support::*;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let toml = base_config(dir.path(), "", "", &route("api", "/api", &up.url(), ""));
    let gw = start_in_process(dir.path(), &toml).await;
    let admin = format!("http://{}", gw.admin_addr);
    assert_eq!(
        reqwest::get(format!("{admin}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{admin}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{admin}/nope"))
            .await
            .unwrap()
            .status(),
        404
    );

    let client = reqwest::Client::new();
    for _ in 0..3 {
        client
            .get(format!("http://{}/api/x", gw.data_addr))
            .send()
            .await
            .unwrap();
    }
    client
        .get(format!("http://{}/zzz", gw.data_addr))
        .send()
        .await
        .unwrap();
    let resp = reqwest::get(format!("{admin}/metrics")).await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(
            "portcullis_requests_total{route=\"api\",decision=\"allow\",kind=\"none\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "portcullis_requests_total{route=\"none\",decision=\"deny\",kind=\"none\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("portcullis_request_duration_seconds_count{route=\"api\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_upstream_duration_seconds_count{route=\"api\"} 3"),
        "{text}"
    );
    assert!(text.contains("# TYPE portcullis_request_duration_seconds histogram"));
    gw.stop().await;
}
