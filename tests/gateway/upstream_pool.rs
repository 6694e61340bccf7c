//! The per-worker HTTP/1.1 pool of a plain `http` upstream (issue 22), end to end: connections
//! are reused across requests, and never when the upstream said or did something that makes a
//! connection unsafe to reuse (`Connection: close`, a hang-up, bytes after the response, a
//! response the caller abandoned).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

/// A raw upstream: answers each request head with `reply`, counts its connections; with
/// `hang_up` it closes every connection after the first response without saying so.
struct RawUpstream {
    url: String,
    accepted: Arc<AtomicUsize>,
}

async fn raw_upstream(reply: &'static [u8], hang_up: bool) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let mut answered = false;
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                        answered = true;
                    }
                    if answered && hang_up {
                        let _ = s.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    RawUpstream { url, accepted }
}

async fn gateway(upstream: &str) -> (Pki, portcullis::server::Running) {
    let pki = Pki::new();
    // One worker: these tests count the upstream connections that separate caller connections
    // reuse, and each worker has its own pool (which worker accepts a connection is the
    // kernel's timing).
    let toml = base_config(
        pki.dir.path(),
        "workers = 1",
        &pki.tls_section(),
        &route("up", "/up", upstream, ""),
    );
    let gw = start_in_process(pki.dir.path(), &toml).await;
    (pki, gw)
}

/// `n` sequential GETs on one keep-alive caller connection; their statuses and bodies.
async fn sequential(
    pki: &Pki,
    gw: &portcullis::server::Running,
    n: usize,
    pause: Duration,
) -> Vec<(u16, String)> {
    let client = pki.client(true);
    let mut out = Vec::new();
    for i in 0..n {
        let resp = client
            .get(format!("https://localhost:{}/up/{i}", gw.data_addr.port()))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        out.push((status, resp.text().await.unwrap()));
        tokio::time::sleep(pause).await;
    }
    out
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
    let (pki, gw) = gateway(&up.url).await;
    let got = sequential(&pki, &gw, 20, Duration::ZERO).await;
    assert!(got.iter().all(|(s, b)| *s == 200 && b == "ok"), "{got:?}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    gw.stop().await;
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_never_reused_nor_passed_on() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: Keep-Alive, CLOSE\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let up = raw_upstream(reply, false).await;
        let (pki, gw) = gateway(&up.url).await;
        let client = pki.client(true);
        for i in 0..4 {
            let resp = client
                .get(format!("https://localhost:{}/up/{i}", gw.data_addr.port()))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            // Hop-by-hop: the caller's keep-alive connection is not the upstream's.
            assert!(resp.headers().get("connection").is_none());
            assert_eq!(resp.text().await.unwrap(), "ok");
        }
        assert_eq!(
            up.accepted.load(Ordering::SeqCst),
            4,
            "{}",
            String::from_utf8_lossy(reply)
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_upstream_that_hangs_up_after_each_response_is_no_502() {
    let up = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true).await;
    let (pki, gw) = gateway(&up.url).await;
    let got = sequential(&pki, &gw, 6, Duration::from_millis(50)).await;
    assert!(got.iter().all(|(s, b)| *s == 200 && b == "ok"), "{got:?}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 6);
    gw.stop().await;
}

#[tokio::test]
async fn bytes_after_a_response_never_answer_the_next_request() {
    // Response-queue poisoning: an upstream (or something between) sends a second, forged
    // response after the first. A reused connection must not hand it to the next caller.
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Forged: 1\r\n\r\nforged",
        false,
    )
    .await;
    let (pki, gw) = gateway(&up.url).await;
    let client = pki.client(true);
    for i in 0..6 {
        let resp = client
            .get(format!("https://localhost:{}/up/{i}", gw.data_addr.port()))
            .send()
            .await
            .unwrap();
        assert!(resp.headers().get("x-forged").is_none());
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_ne!(text, "forged");
        // Either the genuine answer or a 502 for a connection that turned out unusable.
        assert!(
            status == 200 && text == "ok" || status == 502,
            "{status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_response_the_caller_abandoned_does_not_return_its_connection() {
    // A long body the caller stops reading: the upstream connection still holds the rest and
    // cannot carry another request.
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\npartial",
        false,
    )
    .await;
    let (pki, gw) = gateway(&up.url).await;
    for _ in 0..3 {
        let client = pki.client(true);
        let resp = client
            .get(format!("https://localhost:{}/up/big", gw.data_addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        drop(resp);
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
    gw.stop().await;
}
