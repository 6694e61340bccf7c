//! The native HTTP/1.1 core (`[listen] http1_engine = "native"`, the default; `transport::h1`):
//! what is specific to it, over raw sockets. The rest of the e2e suite runs against it by
//! default, and against the fallback engine when `PORTCULLIS_TEST_HTTP1_ENGINE=hyper` is set
//! (`scripts/test` runs the whole suite a second time so).

/// The config `toml` with `[listen] http1_engine` set from `PORTCULLIS_TEST_HTTP1_ENGINE`, when
/// the variable is set and the config names no engine of its own.
pub fn engine_from_env(toml: &str) -> String {
    match std::env::var("PORTCULLIS_TEST_HTTP1_ENGINE") {
        Ok(engine) if !engine.is_empty() && !toml.contains("http1_engine") => toml.replacen(
            "[listen]\n",
            &format!("[listen]\nhttp1_engine = \"{engine}\"\n"),
            1,
        ),
        _ => toml.to_owned(),
    }
}

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A plain-HTTP gateway on the native engine with one `/api` route (1 KiB `max_body`).
async fn native(listen_extra: &str) -> (tempfile::TempDir, Upstream, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let routes = route(
        "api",
        "/api",
        &up.url(),
        "[routes.limits]\nmax_body = \"1KiB\"",
    )
    .replace("timeout = \"2s\"", "timeout = \"10s\"");
    let extra = format!("http1_engine = \"native\"\n{listen_extra}");
    let toml = base_config(dir.path(), &extra, "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, up, gw)
}

/// Read from `s` until `done` holds for what arrived, the peer closes, or `wait` passes.
/// Returns the text and whether the connection was closed.
async fn read_until(
    s: &mut TcpStream,
    wait: Duration,
    done: impl Fn(&str) -> bool,
) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if done(&text) {
            return (text, false);
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (text, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (text, false),
        }
    }
}

/// How many responses (status lines) `text` holds.
fn responses(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

#[test]
fn the_engine_switch_only_touches_configs_that_name_no_engine() {
    // Whatever the environment says, a config naming its engine keeps it.
    let named = "[listen]\nhttp1_engine = \"hyper\"\n";
    assert_eq!(engine_from_env(named), named);
}

#[tokio::test]
async fn keep_alive_and_pipelined_requests_are_answered_in_order_on_one_socket() {
    let (_d, up, gw) = native("").await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    // Three requests in one write, the second with a body: answered in order, one by one.
    s.write_all(
        b"GET /api/one HTTP/1.1\r\nHost: a\r\n\r\n\
          POST /api/two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
          GET /api/three HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |t| {
        t.matches("received_bytes").count() == 3
    })
    .await;
    assert!(!closed, "{text}");
    assert_eq!(responses(&text), 3, "{text}");
    let bodies: Vec<&str> = text
        .match_indices("{\"received_bytes\":")
        .map(|(i, _)| &text[i..i + 19])
        .collect();
    assert_eq!(
        bodies,
        [
            "{\"received_bytes\":0",
            "{\"received_bytes\":5",
            "{\"received_bytes\":0"
        ],
        "{text}"
    );
    assert!(text.to_ascii_lowercase().contains("\r\ndate: "), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let paths = up.paths();
    assert_eq!(paths, ["/api/one", "/api/two", "/api/three"]);
    // The connection stays usable afterwards, and a leading blank line before a request is fine.
    s.write_all(b"\r\nGET /api/four HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_until(&mut s, Duration::from_secs(5), |t| {
        t.contains("received_bytes")
    })
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    // HTTP/1.0 without keep-alive: answered, then closed.
    s.write_all(b"GET /api/five HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |_| false).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(closed, "HTTP/1.0 without keep-alive must close: {text}");
    assert_eq!(up.count(), 5);
    gw.stop().await;
}

#[tokio::test]
async fn a_chunked_upload_in_pieces_arrives_whole() {
    let (_d, up, gw) = native("").await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    let pieces: &[&[u8]] = &[
        b"POST /api/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n",
        b"\r\n5\r",
        b"\nhel",
        b"lo\r\n1",
        b"0;name=value\r\n0123456789abcdef\r",
        b"\n0\r\nX-Trailer: t\r\n",
        b"\r\nGET /api/after HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for p in pieces {
        s.write_all(p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |t| {
        t.matches("received_bytes").count() == 2
    })
    .await;
    assert!(!closed, "{text}");
    assert!(text.contains("{\"received_bytes\":21}"), "{text}");
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body_bytes, 21);
    assert_eq!(seen[1].path_and_query, "/api/after");
    // Its hostile twin: a 17-digit chunk size mid-upload. The body fails, no complete request
    // reaches the upstream, and the connection ends.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(
        b"POST /api/bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(
        b"00000000000000005\r\nworld\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |_| false).await;
    assert!(closed, "{text}");
    assert!(responses(&text) <= 1, "{text}");
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
    let seen = up.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.path_and_query != "/api/smuggled"));
    assert!(seen
        .iter()
        .filter(|s| s.path_and_query == "/api/bad")
        .all(|s| s.body_bytes < 10));
    gw.stop().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_wanted_and_never_after_a_refusal() {
    let (_d, up, gw) = native("").await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(
        b"POST /api/c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, _) = read_until(&mut s, Duration::from_secs(3), |t| t.ends_with("\r\n\r\n")).await;
    assert_eq!(text, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |t| {
        t.contains("received_bytes")
    })
    .await;
    assert!(!closed);
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(text.contains("{\"received_bytes\":5}"), "{text}");
    assert_eq!(up.count(), 1);
    // Refused from its head (no route): the final answer comes instead of 100, and as the body
    // was never read, the connection closes after it.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(
        b"POST /nowhere HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |_| false).await;
    assert_eq!(status_of(&text), 404, "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(closed);
    // Declared above max_body: 413 at once, no 100 either.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(
        b"POST /api/c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |_| false).await;
    assert_eq!(status_of(&text), 413, "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(closed);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_head_is_cut_at_the_header_timeout_with_408() {
    let (_d, up, gw) = native("header_timeout = \"1s\"").await;
    // A head trickling in: one deadline for the whole head, not one per read.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    let started = Instant::now();
    let mut closed_at = None;
    for b in b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        let (text, closed) = read_until(&mut s, Duration::from_millis(150), |_| false).await;
        if !text.is_empty() || closed {
            assert_eq!(status_of(&text), 408, "{text}");
            assert!(text.contains("application/problem+json"), "{text}");
            closed_at = Some(started.elapsed());
            break;
        }
    }
    let at = closed_at.expect("the slow head was never cut");
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_secs(3),
        "cut after {at:?}"
    );
    // An idle keep-alive connection: closed quietly at the same deadline.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_until(&mut s, Duration::from_secs(3), |t| {
        t.contains("received_bytes")
    })
    .await;
    assert_eq!(status_of(&text), 200);
    let idle = Instant::now();
    let (text, closed) = read_until(&mut s, Duration::from_secs(4), |_| false).await;
    assert!(closed && text.is_empty(), "{text}");
    assert!(
        idle.elapsed() >= Duration::from_millis(800),
        "{:?}",
        idle.elapsed()
    );
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_body_left_unread_by_a_refusal_closes_the_connection_and_its_bytes_are_never_a_request() {
    let (_d, up, gw) = native("").await;
    // The body is declared long and only partly sent; what follows it on the wire looks like a
    // request but is body by the framing. The refusal (404) does not read the body: the answer
    // says close, and nothing after it is taken as a request.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(
        b"POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n\
          GET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(3), |_| false).await;
    assert_eq!(status_of(&text), 404, "{text}");
    assert_eq!(responses(&text), 1, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(closed);
    assert_eq!(up.count(), 0);
    // Its twin: the whole (small) body is already buffered when the refusal is written, so it
    // is skipped and the connection serves the next request.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(
        b"POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
          GET /api/next HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(3), |t| {
        t.contains("received_bytes")
    })
    .await;
    assert!(!closed, "{text}");
    assert_eq!(status_of(&text), 404, "{text}");
    assert_eq!(responses(&text), 2, "{text}");
    assert_eq!(up.last().path_and_query, "/api/next");
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_lets_the_in_flight_request_finish() {
    let (_d, up, gw) = native("drain_timeout = \"10s\"").await;
    let mut idle = TcpStream::connect(gw.data_addr).await.unwrap();
    idle.write_all(b"GET /api/warm HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_until(&mut idle, Duration::from_secs(3), |t| {
        t.contains("received_bytes")
    })
    .await;
    assert_eq!(status_of(&text), 200);
    let mut busy = TcpStream::connect(gw.data_addr).await.unwrap();
    busy.write_all(b"GET /api/slow?sleep_ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    while up.count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown();
    // The idle one closes at once, without a word.
    let (text, closed) = read_until(&mut idle, Duration::from_millis(700), |_| false).await;
    assert!(
        closed && text.is_empty(),
        "idle connection: {text:?} closed={closed}"
    );
    // The busy one gets its answer, saying close, then the close.
    let (text, closed) = read_until(&mut busy, Duration::from_secs(5), |_| false).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(closed);
    gw.wait().await;
}

#[tokio::test]
async fn tls_http1_runs_on_the_native_core_and_h2_stays_on_hyper() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let up = Upstream::start().await;
    let routes = route("api", "/api", &up.url(), "");
    let toml = base_config(
        dir.path(),
        "http1_engine = \"native\"",
        &pki.tls_section(),
        &routes,
    );
    let gw = start_in_process(dir.path(), &toml).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let h1 = pki.client(true);
    for i in 0..3 {
        let r = h1
            .post(format!("{base}/api/h1/{i}"))
            .body(vec![b'x'; 1000 + i])
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            format!("{{\"received_bytes\":{}}}", 1000 + i)
        );
    }
    // A streamed (chunked) upload over TLS.
    let pieces = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 4096]))),
    );
    let r = h1
        .put(format!("{base}/api/stream"))
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{\"received_bytes\":81920}");
    let h2 = pki.client(false);
    let r = h2.get(format!("{base}/api/h2")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 5);
    gw.stop().await;
}

#[tokio::test]
async fn head_responses_carry_no_body_and_the_connection_goes_on() {
    let (_d, up, gw) = native("").await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(b"HEAD /api/h HTTP/1.1\r\nHost: a\r\n\r\nGET /api/g HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until(&mut s, Duration::from_secs(5), |t| {
        t.contains("received_bytes")
    })
    .await;
    assert!(!closed, "{text}");
    assert_eq!(responses(&text), 2, "{text}");
    // The first answer is a head alone: the second status line follows its blank line directly.
    let first_end = text.find("\r\n\r\n").unwrap() + 4;
    assert!(text[first_end..].starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(up.count(), 2);
    gw.stop().await;
}
