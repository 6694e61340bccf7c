//! Hostile HTTP: smuggling framings, slowloris, oversized heads and bodies, and callers trying to
//! make the gateway drop its own headers. Plain-HTTP listener and raw sockets, so the bytes on
//! the wire are exactly what the test wrote.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn plain(listen_extra: &str) -> (tempfile::TempDir, Upstream, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let routes = route(
        "api",
        "/api",
        &up.url(),
        "[routes.limits]\nmax_body = \"1KiB\"",
    );
    let toml = base_config(dir.path(), listen_extra, "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, up, gw)
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let (_d, up, gw) = plain("").await;
    let req = b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, closed) = raw_exchange(gw.data_addr, req, Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(closed, "connection must be closed after a framing error");
    assert_eq!(
        resp.matches("HTTP/1.1").count(),
        1,
        "the smuggled request must not be answered: {resp}"
    );
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn duplicate_and_conflicting_content_length_are_refused_and_closed() {
    let (_d, up, gw) = plain("").await;
    for req in [
        &b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"[..],
        &b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..],
        &b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"[..],
        &b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"[..],
        &b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"[..],
        &b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"[..],
    ] {
        let (resp, closed) = raw_exchange(gw.data_addr, req, Duration::from_secs(3)).await;
        assert_eq!(status_of(&resp), 400, "{}: {resp}", String::from_utf8_lossy(req));
        assert!(closed, "{}", String::from_utf8_lossy(req));
    }
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn connection_header_cannot_drop_gateway_headers() {
    let (_d, up, gw) = plain("").await;
    let req = b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, authorization, x-request-id, forwarded, x-forwarded-for, x-hop\r\nX-Request-Id: from-caller\r\nX-Hop: secret-hop\r\nX-Portcullis-Identity: spiffe://corp.example/admin\r\nX-Forwarded-Client-Cert: By=spiffe://corp.example/admin\r\n\r\n";
    let (resp, _) = raw_exchange(gw.data_addr, req, Duration::from_millis(500)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = up.last();
    // The upstream gets the request id the gateway answers with, whatever Connection said.
    let rid = seen.headers["x-request-id"].to_str().unwrap();
    assert!(!rid.is_empty());
    assert!(
        resp.to_ascii_lowercase()
            .contains(&format!("x-request-id: {}", rid.to_ascii_lowercase())),
        "{resp}"
    );
    assert!(seen.headers["forwarded"]
        .to_str()
        .unwrap()
        .starts_with("for=\"127.0.0.1:"));
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert!(seen.headers.get("x-hop").is_none());
    assert!(seen.headers.get("connection").is_none());
    assert!(seen.headers.get("x-portcullis-identity").is_none());
    assert!(seen.headers.get("x-forwarded-client-cert").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn slowloris_is_cut_off_at_the_header_timeout() {
    let (_d, up, gw) = plain("header_timeout = \"2s\"").await;
    let mut s = tokio::net::TcpStream::connect(gw.data_addr).await.unwrap();
    let started = Instant::now();
    let head =
        b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_at = None;
    for b in head.iter() {
        if s.write_all(&[*b]).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_at = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => {
                // hyper may answer 408 before closing; keep reading until EOF.
                continue;
            }
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still open after 10s"
        );
    }
    let at = closed_at.expect("the connection was never closed");
    assert!(
        at >= Duration::from_millis(1500) && at < Duration::from_secs(5),
        "closed after {at:?}"
    );
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_by_length_and_while_streaming() {
    let (_d, up, gw) = plain("").await;
    // Declared length above the limit: refused before anything reaches the upstream.
    let big = vec![b'a'; 2048];
    let mut req = format!(
        "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    let (resp, _) = raw_exchange(gw.data_addr, &req, Duration::from_secs(2)).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(resp.contains("urn:portcullis:payload-too-large"));
    assert_eq!(up.count(), 0);

    // Chunked, no declared length: counted while streaming.
    let mut req = b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'b'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (resp, _) = raw_exchange(gw.data_addr, &req, Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 413, "{resp}");

    // Under the limit, chunked: forwarded whole.
    let req = b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (resp, _) = raw_exchange(gw.data_addr, req, Duration::from_millis(800)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.last().body_bytes, 5);
    gw.stop().await;
}

#[tokio::test]
async fn oversized_heads_are_431() {
    let (_d, up, gw) = plain("max_header_bytes = \"4KiB\"\nmax_headers = 20").await;
    // Too many fields.
    let mut req = String::from("GET /api/x HTTP/1.1\r\nHost: a\r\n");
    for i in 0..30 {
        req.push_str(&format!("X-F{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert!(resp.contains("urn:portcullis:headers-too-large"));
    // Too many bytes (caught by the gateway's limit, answered as problem+json).
    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "v".repeat(6000)
    );
    let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert!(resp.contains("urn:portcullis:headers-too-large"));
    // Absurdly many bytes (beyond hyper's own buffer): still 431, and the connection closes.
    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: a\r\nX-Huge: {}\r\n\r\n",
        "v".repeat(200_000)
    );
    let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn host_must_be_present_once_and_agree_with_the_target() {
    let (_d, up, gw) = plain("").await;
    for req in [
        &b"GET /api/x HTTP/1.1\r\n\r\n"[..],
        &b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
        &b"GET http://a/api/x HTTP/1.1\r\nHost: b\r\n\r\n"[..],
    ] {
        let (resp, _) = raw_exchange(gw.data_addr, req, Duration::from_millis(800)).await;
        assert_eq!(
            status_of(&resp),
            400,
            "{}: {resp}",
            String::from_utf8_lossy(req)
        );
    }
    let (resp, _) = raw_exchange(
        gw.data_addr,
        b"GET http://a/api/x HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_millis(800),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.count(), 1);
    gw.stop().await;
}
