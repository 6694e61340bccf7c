//! A caller that goes away while its request is in flight, on both HTTP/1.1 engines: each test
//! runs its scenario against a gateway on `hyper` and one on `native` (named in the config, so
//! the suite's engine switch does not matter) and asserts the same outcome of both.
//!
//! hyper's h1 server watches the read side of a connection whose request is in flight once the
//! request body has been read (`http1_half_close` off): the end of the stream or a reset drops
//! the request's future, which cancels the upstream request. Bytes already buffered behind the
//! request (a pipelined one) end the watch. A request so cancelled is still audited: its line says
//! `status` 499 and `reason` `caller-gone`, with the decision reached by then, and it counts in
//! `requests_total` (4xx), not in `refusals_total`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::*;

const ENGINES: [&str; 2] = ["hyper", "native"];

/// What an upstream that never answers saw of one connection.
#[derive(Debug)]
enum Saw {
    /// The request head, and all that came on the connection so far (after each read).
    Head(String),
    /// The gateway closed the connection (or reset it).
    Closed,
}

/// An upstream that accepts requests, reads them, and never answers.
struct Silent {
    addr: std::net::SocketAddr,
    saw: mpsc::UnboundedReceiver<Saw>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, saw) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => {
                                let _ = tx.send(Saw::Closed);
                                return;
                            }
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                        if got.windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = tx.send(Saw::Head(String::from_utf8_lossy(&got).into()));
                        }
                    }
                });
            }
        });
        Silent { addr, saw }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next thing the upstream saw, within `wait`.
    async fn next(&mut self, wait: Duration, engine: &str) -> Saw {
        tokio::time::timeout(wait, self.saw.recv())
            .await
            .unwrap_or_else(|_| panic!("{engine}: the upstream saw nothing within {wait:?}"))
            .unwrap()
    }

    /// Wait for a request head to arrive upstream; returns it.
    async fn head(&mut self, engine: &str) -> String {
        match self.next(Duration::from_secs(5), engine).await {
            Saw::Head(h) => h,
            other => panic!("{engine}: expected a request upstream, got {other:?}"),
        }
    }

    /// Assert the gateway closes the upstream connection within 2 s; returns how long it took.
    async fn closed(&mut self, engine: &str) -> Duration {
        let t = Instant::now();
        loop {
            let left = Duration::from_secs(2).saturating_sub(t.elapsed());
            if let Saw::Closed = self.next(left, engine).await {
                return t.elapsed();
            }
        }
    }
}

/// A gateway on `engine` with a route `/quiet` to `silent` (30 s upstream timeout: only the
/// caller's departure can end its requests in time) and `/api` to an ordinary upstream.
async fn gateway(
    engine: &str,
    silent: &Silent,
    up: &Upstream,
) -> (tempfile::TempDir, portcullis::server::Running) {
    gateway_with(&format!("http1_engine = \"{engine}\"\n"), "", silent, up).await
}

/// [`gateway`] with its own `[listen]` lines and TLS section.
async fn gateway_with(
    listen: &str,
    tls: &str,
    silent: &Silent,
    up: &Upstream,
) -> (tempfile::TempDir, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "{}{}",
        route("quiet", "/quiet", &silent.url(), ""),
        route("api", "/api", &up.url(), "")
    )
    .replace("timeout = \"2s\"", "timeout = \"30s\"");
    let toml = base_config(dir.path(), listen, tls, &routes);
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, gw)
}

/// One ordinary request after the scenario: the audit lines of both (the departed caller's and
/// the fence's, the departed one first), and the `/metrics` text then.
async fn after(
    gw: &portcullis::server::Running,
    dir: &std::path::Path,
) -> (Vec<serde_json::Value>, String) {
    let resp = reqwest::get(format!("http://{}/api/fence", gw.data_addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let lines = departed_first(audit_lines(dir, 2).await);
    (lines, scrape(gw).await)
}

/// The lines with the fence's last. The departed caller's line is queued when its request is
/// dropped, which the upstream sees as the close the test waits for; the fence may be served by
/// the other worker thread before the first has finished that drop (a preempted thread on a
/// loaded machine), so the two lines can reach the file in either order.
fn departed_first(mut lines: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    lines.sort_by_key(|l| l["path"] == "/api/fence");
    lines
}

/// The audit line of a request to `/quiet` whose caller left: asserted, then returned.
fn gone_line<'a>(
    lines: &'a [serde_json::Value],
    path: &str,
    engine: &str,
) -> &'a serde_json::Value {
    assert_eq!(lines.len(), 2, "{engine}: {lines:?}");
    let gone = &lines[0];
    assert_eq!(gone["route"], "quiet", "{engine}: {gone}");
    assert_eq!(gone["path"], path, "{engine}: {gone}");
    assert_eq!(gone["status"], 499, "{engine}: {gone}");
    assert_eq!(gone["reason"], "caller-gone", "{engine}: {gone}");
    assert_eq!(
        gone["upstream_status"],
        serde_json::Value::Null,
        "{engine}: {gone}"
    );
    assert_eq!(lines[1]["route"], "api", "{engine}: {lines:?}");
    gone
}

/// The `requests_total` samples of route `quiet`.
fn quiet_requests(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("portcullis_requests_total{") && l.contains("route=\"quiet\""))
        .collect()
}

#[tokio::test]
async fn a_caller_that_closes_with_its_request_in_flight_cancels_the_upstream_request() {
    // Without a body, and with one read whole before the caller leaves.
    let requests: [&[u8]; 2] = [
        b"GET /quiet/x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /quiet/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    ];
    for (engine, request) in ENGINES.into_iter().flat_map(|e| requests.map(|r| (e, r))) {
        let mut silent = Silent::start().await;
        let up = Upstream::start().await;
        let (dir, gw) = gateway(engine, &silent, &up).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut head = silent.head(engine).await;
        while head.contains("content-length") && !head.ends_with("hello") {
            match silent.next(Duration::from_secs(2), engine).await {
                Saw::Head(more) => head = more,
                Saw::Closed => panic!("{engine}: closed before the body arrived"),
            }
        }
        assert!(head.contains(" /quiet/x HTTP/1.1\r\n"), "{head}");
        drop(s);
        let took = silent.closed(engine).await;
        assert!(took < Duration::from_secs(2), "{engine}: {took:?}");
        // The cancelled request is audited: it was allowed and forwarded, and its caller left.
        let (lines, metrics) = after(&gw, dir.path()).await;
        let gone = gone_line(&lines, "/quiet/x", engine);
        assert_eq!(gone["decision"], "allow", "{engine}: {gone}");
        let samples = quiet_requests(&metrics);
        assert_eq!(samples.len(), 1, "{engine}: {samples:?}");
        assert!(samples[0].contains("code=\"4xx\""), "{engine}: {samples:?}");
        assert!(
            !metrics
                .lines()
                .any(|l| l.contains("caller-gone") && l.starts_with("portcullis_refusals_total")),
            "{engine}: a caller leaving is not a refusal"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_caller_that_half_closes_after_its_request_is_gone_too() {
    // `http1_half_close` is off on hyper: the end of the caller's stream means gone, even right
    // after a complete request. No response is written.
    for engine in ENGINES {
        let mut silent = Silent::start().await;
        let up = Upstream::start().await;
        let (dir, gw) = gateway(engine, &silent, &up).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(b"GET /quiet/half HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        silent.head(engine).await;
        s.shutdown().await.unwrap();
        silent.closed(engine).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{engine}: the connection must close without a response: {read:?} {}",
            String::from_utf8_lossy(&rest)
        );
        let (lines, metrics) = after(&gw, dir.path()).await;
        gone_line(&lines, "/quiet/half", engine);
        assert_eq!(quiet_requests(&metrics).len(), 1, "{engine}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_caller_that_closes_mid_body_aborts_the_upstream_request_and_is_audited_alike() {
    // The body's reader sees the cut (not the watch): the pipeline answers the failed read, as
    // with any body error, and the upstream request is aborted, never completed.
    let mut seen = Vec::new();
    for engine in ENGINES {
        let mut silent = Silent::start().await;
        let up = Upstream::start().await;
        let (dir, gw) = gateway(engine, &silent, &up).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(
            b"POST /quiet/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
        let head = silent.head(engine).await;
        assert!(head.contains("content-length: 100"), "{engine}: {head}");
        drop(s);
        silent.closed(engine).await;
        let (lines, _) = after(&gw, dir.path()).await;
        assert_eq!(lines.len(), 2, "{engine}: {lines:?}");
        let cut = &lines[0];
        assert_eq!(cut["route"], "quiet", "{engine}: {cut}");
        assert_eq!(
            cut["upstream_status"],
            serde_json::Value::Null,
            "{engine}: {cut}"
        );
        seen.push((
            cut["status"].clone(),
            cut["reason"].clone(),
            cut["decision"].clone(),
        ));
        gw.stop().await;
    }
    assert_eq!(seen[0], seen[1], "hyper vs native");
}

#[tokio::test]
async fn pipelined_requests_behind_one_in_flight_are_kept_and_answered_in_order() {
    for engine in ENGINES {
        let silent = Silent::start().await;
        let up = Upstream::start().await;
        let (_dir, gw) = gateway(engine, &silent, &up).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        // The second arrives while the first is in flight (read by the watch, kept).
        s.write_all(b"GET /api/one?sleep_ms=300 HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"GET /api/two HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let text = read_responses(&mut s, 2).await;
        assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{engine}: {text}");
        let paths = up.paths();
        assert_eq!(paths, ["/api/one?sleep_ms=300", "/api/two"], "{engine}");
        // Two in one write, then the write side closed: the bytes buffered behind the first
        // keep it alive (answered); the last one is in flight with nothing behind it, so the
        // end of the stream cancels it, as on hyper.
        s.write_all(
            b"GET /api/three?sleep_ms=200 HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /api/four?sleep_ms=200 HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("{engine}: the connection did not close"));
        let rest = String::from_utf8_lossy(&rest);
        assert_eq!(rest.matches("HTTP/1.1 200").count(), 1, "{engine}: {rest}");
        gw.stop().await;
    }
}

/// Read until `n` complete JSON answers of the test upstream arrived (5 s at most).
async fn read_responses(s: &mut TcpStream, n: usize) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if text.matches("received_bytes").count() >= n {
            return text;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return text,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

#[tokio::test]
async fn an_h2_caller_that_resets_its_stream_is_audited_as_gone_and_its_upstream_request_cancelled()
{
    // The same departure on h2: the caller gives up on one stream (RST_STREAM) and keeps its
    // connection; hyper's h2 server drops that request's future.
    let pki = Pki::new();
    let mut silent = Silent::start().await;
    let up = Upstream::start().await;
    let (dir, gw) = gateway_with("", &pki.tls_section(), &silent, &up).await;
    let client = pki.client(false);
    let url = format!("https://localhost:{}", gw.data_addr.port());
    let pending = client.get(format!("{url}/quiet/h2")).send();
    let head = tokio::select! {
        r = pending => panic!("answered: {r:?}"),
        h = silent.head("h2") => h,
    };
    // Leaving the select dropped the request: reqwest resets the stream.
    assert!(head.contains(" /quiet/h2 HTTP/1.1\r\n"), "{head}");
    silent.closed("h2").await;
    let resp = client.get(format!("{url}/api/fence")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let lines = departed_first(audit_lines(dir.path(), 2).await);
    let gone = gone_line(&lines, "/quiet/h2", "h2");
    assert_eq!(gone["decision"], "allow", "{gone}");
    gw.stop().await;
}
