//! SIGTERM: the gateway stops accepting, reports not-ready, finishes the in-flight request, and
//! exits 0.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn sigterm_drains_an_in_flight_slow_request() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let routes =
        route("api", "/api", &up.url(), "").replace("timeout = \"2s\"", "timeout = \"10s\"");
    let toml = base_config(dir.path(), "drain_timeout = \"10s\"", "", &routes);
    let gw = Proc::spawn(dir.path(), &toml);
    let base = format!("http://{}", gw.data_addr);

    let client = reqwest::Client::new();
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/api/slow?sleep_ms=2500");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    // Wait until the upstream has the request, then ask the gateway to stop.
    let started = Instant::now();
    while up.count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Not ready any more (the admin listener stays up during the drain)...
    let ready = reqwest::get(format!("http://{}/readyz", gw.admin_addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    // ...no new connections on the data listener...
    assert!(
        tokio::net::TcpStream::connect(gw.data_addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    // ...and the in-flight request completes.
    assert_eq!(slow.await.unwrap().unwrap(), 200);

    let log = gw.exits_cleanly_within(Duration::from_secs(10)).await;
    assert!(
        log.contains("shutting down: draining in-flight requests"),
        "{log}"
    );
}
