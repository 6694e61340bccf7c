//! Slow and hostile callers, on both HTTP/1.1 engines (each test names its engine in the config,
//! so the suite's engine switch does not matter): what bounds them must bound them alike.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const ENGINES: [&str; 2] = ["hyper", "native"];

/// An upstream that answers every request with an endless body (1 GiB declared), counting what
/// it managed to write, and noting when the gateway stopped taking it.
struct Endless {
    addr: std::net::SocketAddr,
    written: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
}

impl Endless {
    async fn start() -> Endless {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (w, e) = (written.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (w, e) = (w.clone(), e.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !head.windows(4).any(|x| x == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n".to_vec();
                    loop {
                        if s.write_all(&out).await.is_err() {
                            e.store(true, Ordering::SeqCst);
                            return;
                        }
                        w.fetch_add(out.len() as u64, Ordering::SeqCst);
                        out.clone_from(&chunk);
                    }
                });
            }
        });
        Endless {
            addr,
            written,
            ended,
        }
    }
}

/// A route `/big` to `up`, with an upstream timeout long enough that only the caller can end it.
fn big_route(up: &Endless) -> String {
    route("big", "/big", &format!("http://{}", up.addr), "")
        .replace("timeout = \"2s\"", "timeout = \"30s\"")
}

async fn on(engine: &str, routes: &str) -> (tempfile::TempDir, portcullis::server::Running) {
    on_with(&format!("http1_engine = \"{engine}\"\n"), "", routes).await
}

/// [`on`] with its own `[listen]` lines and TLS section.
async fn on_with(
    listen: &str,
    tls: &str,
    routes: &str,
) -> (tempfile::TempDir, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let toml = base_config(dir.path(), listen, tls, routes);
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, gw)
}

#[tokio::test]
async fn a_caller_that_never_reads_a_large_answer_holds_the_upstream_back_and_leaving_ends_it() {
    for engine in ENGINES {
        let up = Endless::start().await;
        let routes = big_route(&up);
        let (_d, gw) = on(engine, &routes).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(b"GET /big/file HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        // Back-pressure, not buffering: what the upstream can write stops growing once the
        // socket buffers on both sides are full.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let then = up.written.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = up.written.load(Ordering::SeqCst);
        assert!(now > 0, "{engine}: nothing was sent");
        assert!(
            now < 64 << 20,
            "{engine}: {now} bytes taken from the upstream"
        );
        assert!(
            now - then <= 1 << 20,
            "{engine}: still taking: {then} then {now}"
        );
        assert!(!up.ended.load(Ordering::SeqCst), "{engine}");
        // The caller leaves without reading: the upstream connection goes too.
        drop(s);
        let t = Instant::now();
        while !up.ended.load(Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "{engine}: the upstream is still held"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_body_that_trickles_a_byte_at_a_time_is_bounded_by_the_upstream_timeout() {
    // Neither HTTP/1.1 core bounds a body's pace: the route's upstream `timeout` (which covers
    // sending the request) does, for a body streamed to the upstream. (A body read whole has
    // `body_timeout` and `body_min_rate`: `bodies.rs`.)
    let mut statuses = Vec::new();
    for engine in ENGINES {
        let up = Upstream::start().await;
        let (_d, gw) = on(engine, &route("api", "/api", &up.url(), "")).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(b"POST /api/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
            .await
            .unwrap();
        let t = Instant::now();
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        let closed = loop {
            assert!(
                t.elapsed() < Duration::from_secs(6),
                "{engine}: not cut: {}",
                String::from_utf8_lossy(&got)
            );
            // One byte each 200 ms: well above any idle timeout, far below any sane rate.
            let _ = s.write_all(b"x").await;
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => got.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        };
        let text = String::from_utf8_lossy(&got).into_owned();
        let took = t.elapsed();
        assert!(closed, "{engine}: {text}");
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
            "{engine}: {took:?}"
        );
        // The upstream got the head and part of the body, never a whole request.
        let seen = up.seen.lock().unwrap().clone();
        assert!(
            seen.iter().all(|s| s.body_bytes < 100),
            "{engine}: {seen:?}"
        );
        statuses.push(status_of(&text));
        gw.stop().await;
    }
    assert_eq!(statuses[0], statuses[1], "hyper vs native");
    assert_eq!(statuses[0], 504);
}

#[tokio::test]
async fn a_flood_of_pipelined_requests_behind_one_in_flight_is_not_read_ahead() {
    // While a request is in flight, the connection reads at most one buffer of what follows
    // (to notice the caller leaving); the rest waits in the socket. The kernel's buffers can
    // hold tens of MiB on loopback; a gateway reading ahead would take all 128 MiB at once.
    for engine in ENGINES {
        let up = Upstream::start().await;
        let (_d, gw) = on(engine, &route("api", "/api", &up.url(), "")).await;
        let s = TcpStream::connect(gw.data_addr).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        wr.write_all(b"GET /api/one?sleep_ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let taken = Arc::new(AtomicU64::new(0));
        let counter = taken.clone();
        let flood = tokio::spawn(async move {
            let one = b"GET /api/next HTTP/1.1\r\nHost: a\r\n\r\n";
            let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 8192).collect();
            while counter.load(Ordering::SeqCst) < 128 << 20 {
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
                counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let n = taken.load(Ordering::SeqCst);
        assert!(n < 64 << 20, "{engine}: {n} bytes read ahead");
        assert_eq!(up.count(), 1, "{engine}");
        // The first request is still answered.
        let mut b = vec![0u8; 4096];
        let k = tokio::time::timeout(Duration::from_secs(3), rd.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            status_of(&String::from_utf8_lossy(&b[..k])),
            200,
            "{engine}"
        );
        flood.abort();
        drop(rd);
        gw.stop().await;
    }
}

/// Drain `s` until the gateway closes it; `Err` with the bytes read when it is still open after
/// `within`.
async fn read_until_closed<S: AsyncReadExt + Unpin>(
    s: &mut S,
    within: Duration,
) -> Result<u64, u64> {
    let t = Instant::now();
    let mut n = 0u64;
    let mut b = vec![0u8; 256 * 1024];
    loop {
        let left = within.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(n),
            Ok(Ok(k)) => n += k as u64,
            Err(_) => return Err(n),
        }
    }
}

/// Wait until the upstream saw the gateway drop its connection.
async fn upstream_ends(up: &Endless, within: Duration, what: &str) {
    let t = Instant::now();
    while !up.ended.load(Ordering::SeqCst) {
        assert!(t.elapsed() < within, "{what}: the upstream is still held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_caller_that_stops_reading_is_cut_after_send_timeout_and_its_upstream_released() {
    for engine in ENGINES {
        let up = Endless::start().await;
        let routes = big_route(&up);
        let listen = format!("http1_engine = \"{engine}\"\nsend_timeout = \"1s\"\n");
        let (_dir, gw) = on_with(&listen, "", &routes).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(b"GET /big/file HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        // The caller reads nothing: once the socket buffers are full, the gateway's write blocks,
        // and a second later it gives the connection up, and the upstream's with it.
        let t = Instant::now();
        upstream_ends(&up, Duration::from_secs(6), engine).await;
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "{engine}: cut too early"
        );
        // What was already in the socket buffers arrives, then the end.
        let got = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert!(
            got.is_ok(),
            "{engine}: the caller's connection is still open: {got:?}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_slow_reader_that_keeps_reading_is_never_cut_by_send_timeout() {
    // The hostile twin's honest neighbour: a caller reading 256 KiB every 100 ms (a 20 Mbit/s
    // link) keeps the gateway's writes moving well within the 2 s send_timeout, so the timer
    // keeps restarting and the answer keeps flowing. The timer sees the gateway's writes, and
    // the kernel lets a write through only once a good part of the socket's send buffer (MiBs,
    // autotuned) has drained: a much slower reader can block a write for seconds while it
    // reads. That is the same for nginx's `send_timeout`, and why the default is 60 s.
    for engine in ENGINES {
        let up = Endless::start().await;
        let routes = big_route(&up);
        let listen = format!("http1_engine = \"{engine}\"\nsend_timeout = \"2s\"\n");
        let (_dir, gw) = on_with(&listen, "", &routes).await;
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(b"GET /big/file HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        // Let every buffer on the way fill first, so that the gateway's writes do block.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut b = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b))
                .await
                .unwrap_or_else(|_| panic!("{engine}: nothing to read"))
                .unwrap_or_else(|e| panic!("{engine}: cut after {total} bytes: {e}"));
            total += b.len() as u64;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!up.ended.load(Ordering::SeqCst), "{engine}: upstream cut");
        drop(s);
        gw.stop().await;
    }
}

#[tokio::test]
async fn send_timeout_also_cuts_a_tls_caller_that_stops_reading() {
    // The deadline sits under TLS: a caller that completes the handshake, asks and then reads
    // nothing is cut the same way.
    let pki = Pki::new();
    let up = Endless::start().await;
    let routes = big_route(&up);
    let (_dir, gw) = on_with("send_timeout = \"1s\"\n", &pki.tls_section(), &routes).await;
    let mut cfg = pki.client_config();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(gw.data_addr).await.unwrap();
    let mut s = tls.connect(name, tcp).await.unwrap();
    s.write_all(b"GET /big/file HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    s.flush().await.unwrap();
    upstream_ends(&up, Duration::from_secs(6), "tls").await;
    let got = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(
        got.is_ok(),
        "the TLS caller's connection is still open: {got:?}"
    );
    gw.stop().await;
}
