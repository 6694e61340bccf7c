//! The pool against a raw upstream that counts its connections and shows what it received.

use super::*;
use bytes::Bytes;
use http::{Request, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw HTTP/1.1 upstream: answers every request head with `reply`, records request heads,
/// counts accepted and ended connections.
struct Raw {
    target: Uri,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn raw(reply: &'static str) -> Raw {
    raw_with(reply, false).await
}

/// `hang_up`: close every connection after its first response, without saying so (as an
/// upstream's own idle timeout or a restart does).
async fn raw_with(reply: &'static str, hang_up: bool) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (a, e, h) = (accepted.clone(), ended.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            let (e, h) = (e.clone(), h.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        h.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                        if hang_up
                            || reply.contains("Connection: close")
                            || reply.starts_with("HTTP/1.0")
                        {
                            let _ = s.shutdown().await;
                            break;
                        }
                    }
                }
                e.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Raw {
        target: format!("http://{addr}/").parse().unwrap(),
        accepted,
        ended,
        heads,
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn pool(up: &Raw, max_idle: usize, idle: Duration) -> Arc<H1Pool> {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(2)));
    Arc::new(H1Pool::with_limits(c, up.target.clone(), max_idle, idle))
}

fn get(uri: &str) -> Request<ProxyBody> {
    let mut req = Request::new(http_body_util::BodyExt::boxed(
        http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}),
    ));
    *req.uri_mut() = uri.parse().unwrap();
    req
}

/// A deadline no test reaches.
fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

async fn body(resp: Response<ProxyBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection_in_origin_form() {
    let up = raw(OK).await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    for i in 0..5 {
        let resp = p
            .send_request(get(&format!("{}a/b?q={i}", up.target)), true, soon())
            .await
            .unwrap();
        assert_eq!(body(resp).await, "ok");
        assert_eq!(p.idle_here(), 1);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    let heads = up.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 5);
    // Origin form, and no Host the gateway did not set itself.
    assert!(
        heads[3].starts_with("GET /a/b?q=3 HTTP/1.1\r\n"),
        "{}",
        heads[3]
    );
    assert!(
        !heads[3].to_ascii_lowercase().contains("host:"),
        "{}",
        heads[3]
    );
}

#[tokio::test]
async fn an_h2_request_goes_out_as_http_1_1() {
    let up = raw(OK).await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    let mut req = get(&format!("{}v", up.target));
    *req.version_mut() = Version::HTTP_2;
    assert_eq!(
        body(p.send_request(req, true, soon()).await.unwrap()).await,
        "ok"
    );
    assert!(up.heads.lock().unwrap()[0].starts_with("GET /v HTTP/1.1\r\n"));
}

#[tokio::test]
async fn connection_close_in_any_spelling_is_never_reused() {
    for reply in [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: keep-alive, CLOSE\r\n\r\nok",
        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let up = raw(reply).await;
        let p = pool(&up, 8, IDLE_TIMEOUT);
        for _ in 0..3 {
            assert_eq!(
                body(p.send_request(get("/x"), true, soon()).await.unwrap()).await,
                "ok"
            );
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 3, "{reply:?}");
        assert_eq!(p.idle_here(), 0, "{reply:?}");
    }
}

#[tokio::test]
async fn a_body_dropped_before_its_end_does_not_return_the_connection() {
    let up = raw("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc").await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    drop(p.send_request(get("/big"), true, soon()).await.unwrap());
    assert_eq!(p.idle_here(), 0);
    // The next request gets a new connection, not the half-read one.
    drop(p.send_request(get("/big"), true, soon()).await.unwrap());
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    let up = raw_with(OK, true).await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    for i in 0..4 {
        let resp = p
            .send_request(get(&format!("/{i}")), true, soon())
            .await
            .unwrap();
        assert_eq!(body(resp).await, "ok");
        // The checkout sees the EOF in the socket's readiness and drops the connection; one that
        // races the request is caught by the retry on a fresh connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let up = raw(OK).await;
    let p = pool(&up, 8, Duration::from_millis(200));
    assert_eq!(
        body(p.send_request(get("/"), true, soon()).await.unwrap()).await,
        "ok"
    );
    assert_eq!(up.ended.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        up.ended.load(Ordering::SeqCst),
        1,
        "the idle connection was not closed"
    );
    // And the pool opens a new one.
    assert_eq!(
        body(p.send_request(get("/"), true, soon()).await.unwrap()).await,
        "ok"
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_in_use_is_not_reaped() {
    // The reaper counts idle time only while the connection sits in the pool.
    let up = raw("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab").await;
    let p = pool(&up, 8, Duration::from_millis(100));
    let resp = p.send_request(get("/"), true, soon()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(up.ended.load(Ordering::SeqCst), 0);
    drop(resp);
}

#[tokio::test]
async fn at_most_max_idle_connections_wait() {
    let up = raw(OK).await;
    let p = pool(&up, 2, IDLE_TIMEOUT);
    let sent: Vec<_> = (0..5)
        .map(|_| p.send_request(get("/"), true, soon()))
        .collect();
    let resps = futures_util::future::join_all(sent).await;
    for r in resps {
        assert_eq!(body(r.unwrap()).await, "ok");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 5);
    assert_eq!(p.idle_here(), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.ended.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_failure() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let p = Arc::new(H1Pool::new(
        HttpConnector::new(),
        format!("http://{addr}/").parse().unwrap(),
    ));
    let err = p.send_request(get("/"), true, soon()).await.unwrap_err();
    assert!(err.is_connect(), "{:?}", err);
}

#[tokio::test]
async fn a_garbage_response_is_a_request_failure_and_evicts() {
    let up = raw("NOT HTTP\r\n\r\n").await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    let err = p.send_request(get("/"), true, soon()).await.unwrap_err();
    assert!(!err.is_connect());
    assert_eq!(p.idle_here(), 0);
}

/// An upstream that answers `OK` on one connection after another, except to a request for
/// `/hang`, which it reads and never answers (the connection stays open).
async fn hangs_on_request() -> (Uri, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        if !head.starts_with(b"GET /hang ") {
                            let _ = s.write_all(OK.as_bytes()).await;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}/").parse().unwrap(), accepted)
}

/// Send `path` with a deadline `after` from now; how long until the outcome, and the outcome.
async fn timed(
    p: &Arc<H1Pool>,
    path: &str,
    after: Duration,
) -> (Duration, Result<Response<ProxyBody>, Failure>) {
    let started = Instant::now();
    let r = p.send_request(get(path), true, started + after).await;
    (started.elapsed(), r)
}

#[tokio::test]
async fn an_upstream_that_never_answers_times_out_at_the_deadline() {
    let (target, accepted) = hangs_on_request().await;
    let p = Arc::new(H1Pool::new(HttpConnector::new(), target));
    // A fresh connection: its timer is built for this exchange.
    let (took, r) = timed(&p, "/hang", Duration::from_millis(300)).await;
    assert!(matches!(r, Err(Failure::TimedOut)), "{r:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // The timed-out connection is not kept: the next request opens another.
    assert_eq!(p.idle_here(), 0);
    let (_, r) = timed(&p, "/", Duration::from_secs(5)).await;
    assert_eq!(body(r.unwrap()).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// The timer a connection reuses fires at each exchange's own deadline, whether the new one is
/// later than the last (the timer is moved without leaving the runtime's wheel) or earlier (it
/// is filed again), and never at an earlier exchange's deadline.
#[tokio::test]
async fn a_reused_connection_times_out_at_each_requests_own_deadline() {
    let (target, accepted) = hangs_on_request().await;
    let p = Arc::new(H1Pool::new(HttpConnector::new(), target));
    // Armed for 200 ms and answered at once: the timer stays in the wheel for that instant.
    let (_, r) = timed(&p, "/", Duration::from_millis(200)).await;
    assert_eq!(body(r.unwrap()).await, "ok");
    assert_eq!(p.idle_here(), 1);
    // Then moved to a later instant on the same connection: not cut at the first 200 ms.
    let (took, r) = timed(&p, "/hang", Duration::from_millis(700)).await;
    assert!(matches!(r, Err(Failure::TimedOut)), "{r:?}");
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A long deadline first, then a shorter one on the same connection: the shorter fires.
    let (_, r) = timed(&p, "/", Duration::from_secs(30)).await;
    assert_eq!(body(r.unwrap()).await, "ok");
    let (took, r) = timed(&p, "/hang", Duration::from_millis(300)).await;
    assert!(matches!(r, Err(Failure::TimedOut)), "{r:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // A timer that fired while its connection was idle is armed again by the next exchange.
    let (_, r) = timed(&p, "/", Duration::from_millis(50)).await;
    assert_eq!(body(r.unwrap()).await, "ok");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.idle_here(), 1);
    let (_, r) = timed(&p, "/", Duration::from_secs(5)).await;
    assert_eq!(body(r.unwrap()).await, "ok");
    let (took, r) = timed(&p, "/hang", Duration::from_millis(300)).await;
    assert!(matches!(r, Err(Failure::TimedOut)), "{r:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// A deadline that passed before the connection was even opened still ends the exchange (the
/// timer's resolution is a millisecond, as with `tokio::time::timeout`): never a hang.
#[tokio::test]
async fn a_deadline_already_past_ends_the_exchange() {
    let (target, _) = hangs_on_request().await;
    let p = Arc::new(H1Pool::new(HttpConnector::new(), target));
    let (took, r) = timed(&p, "/hang", Duration::ZERO).await;
    assert!(matches!(r, Err(Failure::TimedOut)), "{r:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

/// The pool's answer reaches the caller's side without hop-by-hop fields or the fields its
/// `Connection` lists (in any case), every other field kept in order; an answer with none is
/// passed as parsed.
#[tokio::test]
async fn hop_by_hop_fields_of_an_answer_are_removed() {
    let up = raw(
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: X-Secret, keep-alive\r\nX-Secret: s\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-B: 2\r\n\
         Content-Length: 2\r\n\r\nok",
    )
    .await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    let (mut resp, relayed) = p.send_relayed(get("/"), true, soon()).await.unwrap();
    // The map is the gateway's; the answer's fields travel as they arrived.
    assert!(resp.headers().is_empty());
    relayed.materialise(&mut resp);
    let names: Vec<&str> = resp.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-a", "x-b", "content-length"]);
    assert_eq!(body(resp).await, "ok");

    let up = raw("HTTP/1.1 200 OK\r\nX-A: 1\r\nServer: s\r\nContent-Length: 2\r\n\r\nok").await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    let (mut resp, relayed) = p.send_relayed(get("/"), true, soon()).await.unwrap();
    relayed.materialise(&mut resp);
    let names: Vec<&str> = resp.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-a", "server", "content-length"]);
}

/// The answer's map is the request's, emptied (`with_map`): none of the caller's fields (its
/// `Authorization` here) come back to it in the answer, on a fresh connection or a reused one,
/// whatever engine writes the answer (the map is read directly and after `materialise`).
#[tokio::test]
async fn the_request_map_the_answer_reuses_holds_none_of_the_callers_fields() {
    let up = raw("HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok").await;
    let p = pool(&up, 8, IDLE_TIMEOUT);
    for _ in 0..2 {
        let mut req = get("/");
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Basic c2VjcmV0"),
        );
        req.headers_mut()
            .insert("x-caller", http::HeaderValue::from_static("mine"));
        let (mut resp, relayed) = p.send_relayed(req, true, soon()).await.unwrap();
        assert!(resp.headers().is_empty(), "{:?}", resp.headers());
        relayed.materialise(&mut resp);
        let names: Vec<&str> = resp.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-a", "content-length"]);
        assert_eq!(body(resp).await, "ok");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the second went on the same connection"
    );
}
