//! The gateway's own HTTP/1.1 client for plain `http` upstreams (`src/proxy/pool.rs`, issue 22),
//! end to end against a raw-socket upstream this file scripts: keep-alive reuse counted in
//! upstream connections, every way an answer ends (length, chunked, close, none), interim
//! answers, a reused connection the upstream closed, an upstream dying mid-body, ambiguous
//! answers, chunked request bodies and an upstream that answers before reading the upload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// What the scripted upstream does with one request.
#[derive(Clone)]
enum Act {
    /// Write these bytes, then keep the connection open for the next request.
    Reply(Vec<u8>),
    /// Write these bytes, then close.
    ReplyClose(Vec<u8>),
    /// Close without a word (after reading the request).
    Close,
    /// Write these bytes, wait a moment (so the gateway relays them), then close.
    ReplyDie(Vec<u8>),
    /// Write these bytes right after the head, without reading the body, and hold the
    /// connection open (not reading) for a while.
    EarlyHold(Vec<u8>),
}

/// One request as the upstream read it: head text and de-chunked body.
#[derive(Debug, Clone)]
struct Got {
    head: String,
    body: Vec<u8>,
    /// Which request on its connection (0 = first).
    on_conn: usize,
}

type Script = Arc<dyn Fn(usize, &Got) -> Act + Send + Sync>;

struct Scripted {
    url: String,
    accepted: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Got>>>,
}

/// A raw upstream: each request is read whole (by its `Content-Length` or chunked framing)
/// and answered as `script(global_index, request)` says.
async fn scripted(script: impl Fn(usize, &Got) -> Act + Send + Sync + 'static) -> Scripted {
    let script: Script = Arc::new(script);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (count, seen, total) = (accepted.clone(), got.clone(), Arc::new(AtomicUsize::new(0)));
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let (script, seen, total) = (script.clone(), seen.clone(), total.clone());
            tokio::spawn(serve(s, script, seen, total));
        }
    });
    Scripted { url, accepted, got }
}

/// An upstream that answers the first request on each connection and closes the connection
/// when the second arrives (after reading it, before answering): the keep-alive race.
async fn closes_second_request() -> Scripted {
    scripted(|_, g| {
        if g.on_conn == 0 {
            Act::Reply(ok_reply())
        } else {
            Act::Close
        }
    })
    .await
}

async fn serve(
    mut s: TcpStream,
    script: Script,
    seen: Arc<Mutex<Vec<Got>>>,
    total: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    for on_conn in 0.. {
        let Some(end) = read_until(&mut s, &mut buf, |b| find(b, b"\r\n\r\n").map(|i| i + 4)).await
        else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        let mut got = Got {
            head,
            body: Vec::new(),
            on_conn,
        };
        let n = total.fetch_add(1, Ordering::SeqCst);
        let act = script(n, &got);
        if let Act::EarlyHold(reply) = &act {
            seen.lock().unwrap().push(got);
            let _ = s.write_all(reply).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            return;
        }
        if lower.contains("transfer-encoding: chunked") {
            let Some(end) = read_until(&mut s, &mut buf, chunked_end).await else {
                return;
            };
            got.body = dechunk(&buf[..end]);
            buf.drain(..end);
        } else if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            let Some(end) = read_until(&mut s, &mut buf, |b| (b.len() >= len).then_some(len)).await
            else {
                return;
            };
            got.body = buf.drain(..end).collect();
        }
        seen.lock().unwrap().push(got);
        match act {
            Act::Reply(r) => {
                if s.write_all(&r).await.is_err() {
                    return;
                }
            }
            Act::ReplyClose(r) => {
                let _ = s.write_all(&r).await;
                let _ = s.shutdown().await;
                return;
            }
            Act::ReplyDie(r) => {
                let _ = s.write_all(&r).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            Act::Close | Act::EarlyHold(_) => return,
        }
    }
}

/// Read into `buf` until `done` finds an end in it; `None` when the peer closed first.
async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = done(buf) {
            return Some(end);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where a chunked body (without trailers) ends, if it does in `b`.
fn chunked_end(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = find(&b[at..], b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[at..at + line]).ok()?, 16).ok()?;
        at += line + 2;
        if size == 0 {
            return (b.len() >= at + 2).then_some(at + 2);
        }
        at += size + 2;
        if at > b.len() {
            return None;
        }
    }
}

fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line = find(&b[at..], b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[at..at + line]).unwrap(), 16).unwrap();
        at += line + 2;
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[at..at + size]);
        at += size + 2;
    }
}

/// A gateway on a plain listener with one route `/up` to `upstream`.
async fn gateway(upstream: &str, extra: &str) -> (tempfile::TempDir, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    // One worker: these tests count the upstream connections that separate caller connections
    // reuse, and each worker has its own pool (which worker accepts a connection is the
    // kernel's timing).
    let toml = base_config(
        dir.path(),
        "workers = 1",
        "",
        &route("up", "/up", upstream, extra),
    );
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, gw)
}

fn ok_reply() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
}

/// Keep-alive requests on one caller connection; (status, body) of each.
async fn gets(gw: &portcullis::server::Running, paths: &[&str]) -> Vec<(u16, String)> {
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let mut out = Vec::new();
    for p in paths {
        let resp = client
            .get(format!("http://{}/up{p}", gw.data_addr))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        out.push((status, resp.text().await.unwrap()));
    }
    out
}

#[tokio::test]
async fn keep_alive_connections_are_reused_and_close_is_honoured() {
    let up = scripted(|_, _| Act::Reply(ok_reply())).await;
    let (_d, gw) = gateway(&up.url, "").await;
    let got = gets(&gw, &["/a", "/b", "/c", "/d", "/e"]).await;
    assert!(got.iter().all(|(s, b)| *s == 200 && b == "ok"), "{got:?}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    // Origin form, the pipeline's Host, no framing field for a bodiless GET.
    let heads: Vec<String> = up
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|g| g.head.clone())
        .collect();
    assert!(
        heads[2].starts_with("GET /up/c HTTP/1.1\r\n"),
        "{}",
        heads[2]
    );
    assert_eq!(
        heads[2].to_ascii_lowercase().matches("\r\nhost: ").count(),
        1,
        "{}",
        heads[2]
    );
    assert!(
        !heads[2].to_ascii_lowercase().contains("content-length"),
        "{}",
        heads[2]
    );
    gw.stop().await;

    // The twin: `Connection: close` (any spelling) or HTTP/1.0 without keep-alive.
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, Close\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let up = scripted(move |_, _| Act::Reply(reply.to_vec())).await;
        let (_d, gw) = gateway(&up.url, "").await;
        let got = gets(&gw, &["/1", "/2", "/3"]).await;
        assert!(got.iter().all(|(s, b)| *s == 200 && b == "ok"), "{got:?}");
        assert_eq!(
            up.accepted.load(Ordering::SeqCst),
            3,
            "{}",
            String::from_utf8_lossy(reply)
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_close_delimited_body_is_relayed_in_full_and_never_reused() {
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let reply = [
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"[..],
        &big,
    ]
    .concat();
    let up = scripted(move |_, _| Act::ReplyClose(reply.clone())).await;
    let (_d, gw) = gateway(&up.url, "").await;
    let got = gets(&gw, &["/1", "/2"]).await;
    for (s, b) in &got {
        assert_eq!(*s, 200);
        assert_eq!(b.as_bytes(), &big[..]);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    gw.stop().await;
}

#[tokio::test]
async fn bodiless_answers_keep_the_connection() {
    // HEAD with a length, 204 and 304: no body follows, the connection carries the next one.
    let up = scripted(|n, _| {
        Act::Reply(match n {
            0 => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec(),
            1 => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            2 => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_vec(),
            _ => ok_reply(),
        })
    })
    .await;
    let (_d, gw) = gateway(&up.url, "").await;
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let base = format!("http://{}/up", gw.data_addr);
    let head = client.head(format!("{base}/h")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5");
    assert_eq!(head.bytes().await.unwrap().len(), 0);
    let r = client.get(format!("{base}/n")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = client.get(format!("{base}/m")).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], "\"x\"");
    let r = client.get(format!("{base}/o")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert!(up.got.lock().unwrap()[0]
        .head
        .starts_with("HEAD /up/h HTTP/1.1\r\n"));
    gw.stop().await;
}

#[tokio::test]
async fn interim_answers_are_skipped_and_an_upgrade_is_refused() {
    let up = scripted(|n, _| {
        Act::Reply(match n {
            0 => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            _ => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".to_vec(),
        })
    })
    .await;
    let (_d, gw) = gateway(&up.url, "").await;
    let got = gets(&gw, &["/early", "/upgrade"]).await;
    assert_eq!(got[0], (200, "ok".to_string()));
    assert_eq!(got[1].0, 502, "{got:?}");
    assert!(got[1].1.contains("upstream"), "{got:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_reused_connection_the_upstream_closed_is_retried_once_for_a_bodiless_request() {
    // The second request on each connection finds it closed (read, then no answer): the
    // gateway sends it once more on a fresh connection.
    let up = closes_second_request().await;
    let (_d, gw) = gateway(&up.url, "").await;
    let got = gets(&gw, &["/1", "/2", "/3"]).await;
    assert!(got.iter().all(|(s, b)| *s == 200 && b == "ok"), "{got:?}");
    // 1 on A; 2 on A (closed), again on B; 3 on B (closed), again on C.
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(up.got.lock().unwrap().len(), 5);
    gw.stop().await;
}

#[tokio::test]
async fn a_streamed_body_is_never_sent_twice() {
    // The twin: the same closed connection under a request whose body is streamed from the
    // caller (chunked): it cannot be replayed, the caller gets a 502 and the upstream saw it once.
    let up = closes_second_request().await;
    let (_d, gw) = gateway(&up.url, "").await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(b"GET /up/first HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    s.write_all(
        b"POST /up/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let second = read_response(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 502"), "{second}");
    assert!(second.contains("application/problem+json"), "{second}");
    let uploads = up
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.head.starts_with("POST"))
        .count();
    assert_eq!(uploads, 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_buffered_body_is_sent_again_on_a_fresh_connection() {
    // The other twin: a body the gateway read whole (a validated JSON body) is in hand, so an
    // idempotent request (PUT) goes once more, with the same bytes, on a fresh connection; a
    // POST, which the upstream may already have acted on, is not sent twice (502 instead).
    let up = closes_second_request().await;
    let (_d, gw) = gateway(
        &up.url,
        "[routes.validate]\ncontent_types = [\"application/json\"]",
    )
    .await;
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let base = format!("http://{}/up", gw.data_addr);
    let r = client.get(format!("{base}/first")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = client
        .put(format!("{base}/json"))
        .header("content-type", "application/json")
        .body(r#"{"a":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let seen = |method: &str| -> Vec<Got> {
        up.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.head.starts_with(method))
            .cloned()
            .collect()
    };
    let puts = seen("PUT ");
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(puts.iter().all(|g| g.body == br#"{"a":1}"#), "{puts:?}");
    assert_eq!((puts[0].on_conn, puts[1].on_conn), (1, 0));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);

    // The PUT's fresh connection is now the reused one, and it closes at its second request.
    let r = client
        .post(format!("{base}/json"))
        .header("content-type", "application/json")
        .body(r#"{"b":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let posts = seen("POST ");
    assert_eq!(posts.len(), 1, "a POST is never sent twice: {posts:?}");
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "no fresh connection for the POST"
    );
    gw.stop().await;
}

/// Read one response (head and a `Content-Length` body) from a raw caller connection.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let read = async {
        let end = read_until(s, &mut buf, |b| find(b, b"\r\n\r\n").map(|i| i + 4))
            .await
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        read_until(s, &mut buf, |b| (b.len() >= end + len).then_some(end + len))
            .await
            .unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn an_upstream_dying_mid_body_cuts_the_callers_connection() {
    let reply = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"[..],
        &[b'x'; 1000],
    ]
    .concat();
    let up = scripted(move |_, _| Act::ReplyDie(reply.clone())).await;
    let (_d, gw) = gateway(&up.url, "").await;
    let started = std::time::Instant::now();
    let (resp, closed) = raw_exchange(
        gw.data_addr,
        b"GET /up/cut HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(closed, "the caller's connection was left hanging");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.len() < 100_000, "{}", body.len());
    gw.stop().await;

    // The twin: the end arrives with the first bytes; the cut may come before the head went out.
    let reply = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"[..],
        &[b'x'; 1000],
    ]
    .concat();
    let up = scripted(move |_, _| Act::ReplyClose(reply.clone())).await;
    let (_d, gw) = gateway(&up.url, "").await;
    let (resp, closed) = raw_exchange(
        gw.data_addr,
        b"GET /up/cut HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(closed, "the caller's connection was left hanging");
    assert!(resp.len() < 100_000, "{resp}");
    gw.stop().await;
}

#[tokio::test]
async fn ambiguous_or_malformed_answers_are_502_problems() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nok",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nok",
        b"NOT HTTP AT ALL\r\n\r\n",
    ] {
        let up = scripted(move |_, _| Act::Reply(reply.to_vec())).await;
        let (_d, gw) = gateway(&up.url, "").await;
        let (resp, _) = raw_exchange(
            gw.data_addr,
            b"GET /up/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        let shown = String::from_utf8_lossy(reply);
        assert_eq!(status_of(&resp), 502, "{shown:?}: {resp}");
        assert!(resp.to_ascii_lowercase().contains("content-type: application/problem+json"), "{resp}");
        assert!(!resp.ends_with("ok"), "{shown:?}: {resp}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_chunked_upload_is_relayed_chunked_and_a_sized_one_with_its_length() {
    let up = scripted(|_, _| Act::Reply(ok_reply())).await;
    let (_d, gw) = gateway(&up.url, "").await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(b"POST /up/c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(b"PUT /up/l HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nabcde")
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = up.got.lock().unwrap().clone();
    let head = got[0].head.to_ascii_lowercase();
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(got[0].body, b"hello world");
    let head = got[1].head.to_ascii_lowercase();
    assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(got[1].body, b"abcde");
    // Both on one upstream connection: each request was written whole.
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    gw.stop().await;
}

#[tokio::test]
async fn an_early_answer_to_a_large_upload_does_not_hang() {
    // The upstream answers 413 after the head and reads nothing more: the gateway must relay
    // the answer while its write of the body is blocked, well before the route's 2 s timeout.
    let up = scripted(|n, _| match n {
        0 => Act::EarlyHold(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nX-From: upstream\r\n\r\nnope"
                .to_vec(),
        ),
        _ => Act::Reply(ok_reply()),
    })
    .await;
    let (_d, gw) = gateway(&up.url, "[routes.limits]\nmax_body = \"64MiB\"").await;
    let len = 32 * 1024 * 1024;
    let s = TcpStream::connect(gw.data_addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /up/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n");
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..len / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = rd.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
            if find(&buf, b"\r\n\r\n").is_some() {
                return String::from_utf8_lossy(&buf).to_ascii_lowercase();
            }
        }
    })
    .await
    .expect("no answer: the exchange hung");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("x-from: upstream"), "{head}");
    writer.abort();
    // The connection whose upload was cut is not reused.
    let got = gets(&gw, &["/after"]).await;
    assert_eq!(got[0], (200, "ok".to_string()));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    gw.stop().await;
}

#[tokio::test]
async fn an_oversized_streamed_upload_is_413_and_its_connection_not_reused() {
    let up = scripted(|_, _| Act::Reply(ok_reply())).await;
    let (_d, gw) = gateway(&up.url, "[routes.limits]\nmax_body = \"1KiB\"").await;
    let got = gets(&gw, &["/warm"]).await;
    assert_eq!(got[0].0, 200);
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    let mut req =
        b"POST /up/big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'z'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // The pooled connection took a partial upload: the next request gets a fresh one.
    let got = gets(&gw, &["/after"]).await;
    assert_eq!(got[0], (200, "ok".to_string()));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    gw.stop().await;
}
