//! Protocol upgrades, on both HTTP/1.1 engines (each test names its engine in the config, so the
//! suite's engine switch does not matter): the gateway never switches protocols. `Upgrade` is a
//! hop-by-hop field it strips (`docs/http.md`, `docs/configuration.md`), the upstream sees an ordinary request, and a
//! `101` from a plain `http` upstream is refused with 502.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn on(engine: &str, up: &Upstream) -> (tempfile::TempDir, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("http1_engine = \"{engine}\"\n");
    let toml = base_config(
        dir.path(),
        &listen,
        "",
        &route("api", "/api", &up.url(), ""),
    );
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, gw)
}

/// Read one response with a `Content-Length` body; `None` when the connection closed first.
async fn one_response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(text);
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response within 5 s: {text}"),
        }
    }
}

#[tokio::test]
async fn a_websocket_upgrade_request_is_an_ordinary_request_on_both_engines() {
    for engine in ["hyper", "native"] {
        let up = Upstream::start().await;
        let (_d, gw) = on(engine, &up).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(
            b"GET /api/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
        let text = one_response(&mut s)
            .await
            .unwrap_or_else(|| panic!("{engine}: closed without a response"));
        assert_eq!(status_of(&text), 200, "{engine}: {text}");
        let lower = text.to_ascii_lowercase();
        assert!(!lower.contains("upgrade"), "{engine}: {text}");
        let seen = up.last();
        assert!(seen.headers.get("upgrade").is_none(), "{engine}: {seen:?}");
        assert!(
            seen.headers.get("connection").is_none(),
            "{engine}: {seen:?}"
        );
        // Nothing was switched: the connection still speaks HTTP/1.1.
        s.write_all(b"GET /api/after HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let text = one_response(&mut s)
            .await
            .unwrap_or_else(|| panic!("{engine}: closed after the upgrade request"));
        assert_eq!(status_of(&text), 200, "{engine}: {text}");
        assert_eq!(up.count(), 2, "{engine}");
        gw.stop().await;
    }
}
