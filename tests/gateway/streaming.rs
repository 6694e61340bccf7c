//! 200 MB each way through the gateway (a child process), with its peak RSS measured: bodies are
//! streamed with back-pressure, never buffered.

use std::time::Instant;

use futures_util::StreamExt;

use crate::support::*;

const SIZE: u64 = 200 * 1024 * 1024;
/// Generous: the point is "not proportional to the body", which would be > 200 MiB.
const RSS_LIMIT_MIB: u64 = 64;

#[tokio::test]
async fn two_hundred_megabytes_each_way_with_bounded_memory() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let routes = route(
        "bulk",
        "/bulk",
        &up.url(),
        "[routes.limits]\nmax_body = \"1GiB\"",
    )
    .replace("timeout = \"2s\"", "timeout = \"60s\"");
    let toml = base_config(pki.dir.path(), "", &pki.tls_section(), &routes);
    let gw = Proc::spawn(pki.dir.path(), &toml);
    let base = format!("https://localhost:{}", gw.data_addr.port());
    let client = pki.client(true);

    // Upload: a streamed body of 200 MB in 64 KiB chunks.
    let started = Instant::now();
    let chunk = bytes::Bytes::from(vec![b'u'; 64 * 1024]);
    let n = SIZE / chunk.len() as u64;
    let stream =
        futures_util::stream::iter(0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let resp = client
        .post(format!("{base}/bulk/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().body_bytes, SIZE);
    let up_secs = started.elapsed().as_secs_f64();

    // Download: the upstream streams 200 MB back.
    let started = Instant::now();
    let resp = client
        .get(format!("{base}/bulk/download?bytes={SIZE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);
    let down_secs = started.elapsed().as_secs_f64();

    let rss_mib = gw.peak_rss_kib() / 1024;
    println!(
        "streaming: 200 MiB up in {up_secs:.2}s, 200 MiB down in {down_secs:.2}s; gateway peak RSS {rss_mib} MiB"
    );
    assert!(rss_mib < RSS_LIMIT_MIB, "gateway peak RSS {rss_mib} MiB");
}
