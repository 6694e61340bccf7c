//! What the own upstream client does with a plain-HTTP upstream's answers, end to end, against a
//! scripted upstream on a real socket: the route's timeout on a reused connection (the deadline
//! is a timer kept per upstream connection and moved for each request, issue 22), and the
//! answer's hop-by-hop fields (filtered only when the parse saw one, issue 22) against their
//! other spellings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// What the scripted upstream does with the n-th request (from 0) on a connection.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Answer after this delay.
    Answer(Duration),
    /// Read the request and never answer.
    Stall,
}

/// A plain-HTTP upstream that runs `script` on every connection it accepts (requests past the
/// script's end are answered at once) and answers with `reply`.
struct Scripted {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(script: &'static [Step], reply: &'static [u8]) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, script, reply));
            }
        });
        Scripted { addr, accepted }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(mut s: TcpStream, script: &'static [Step], reply: &'static [u8]) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    for n in 0.. {
        // One request head (the tests send no bodies).
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => got.extend_from_slice(&chunk[..k]),
            }
        }
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        got.drain(..end);
        match script
            .get(n)
            .copied()
            .unwrap_or(Step::Answer(Duration::ZERO))
        {
            Step::Answer(delay) => {
                tokio::time::sleep(delay).await;
                if s.write_all(reply).await.is_err() {
                    return;
                }
            }
            Step::Stall => {
                // Hold the connection open, reading, until the gateway gives up on it.
                while matches!(s.read(&mut chunk).await, Ok(k) if k > 0) {}
                return;
            }
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

async fn gateway(
    upstream: &str,
    timeout: &str,
) -> (tempfile::TempDir, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let routes = route("api", "/api", upstream, "")
        .replace("timeout = \"2s\"", &format!("timeout = \"{timeout}\""));
    // One worker: these tests count the upstream connections that separate caller connections
    // reuse, and each worker has its own pool (which worker accepts a connection is the
    // kernel's timing).
    let toml = base_config(dir.path(), "workers = 1", "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, gw)
}

/// A keep-alive client that fails a request after 10 s rather than hang the suite.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Status and time taken of one GET on a keep-alive client (its connection to the gateway is
/// reused, and so is the gateway's to the upstream).
async fn get(
    client: &reqwest::Client,
    gw: &portcullis::server::Running,
    path: &str,
) -> (u16, Duration) {
    let t = Instant::now();
    let resp = client
        .get(format!("http://{}{path}", gw.data_addr))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    (status, t.elapsed())
}

#[tokio::test]
async fn a_reused_upstream_connection_that_stalls_is_cut_at_the_routes_timeout() {
    // The first request on each upstream connection is answered, the second never is.
    static SCRIPT: [Step; 2] = [Step::Answer(Duration::ZERO), Step::Stall];
    let up = Scripted::start(&SCRIPT, OK).await;
    let (_dir, gw) = gateway(&up.url(), "800ms").await;
    let client = client();
    let (status, _) = get(&client, &gw, "/api/1").await;
    assert_eq!(status, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    // Sent on the same (reused) upstream connection, which now stalls: 504 at the deadline,
    // neither at once (a timer left from the first request) nor never.
    let (status, took) = get(&client, &gw, "/api/2").await;
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_millis(700),
        "cut after {took:?}, before the route's timeout"
    );
    assert!(took < Duration::from_secs(5), "cut only after {took:?}");
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the stalled exchange was on the reused connection"
    );
    // The stalled connection is not handed out again: the next request gets a fresh one.
    let (status, _) = get(&client, &gw, "/api/3").await;
    assert_eq!(status, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_deadline_that_passed_while_the_connection_idled_does_not_cut_the_next_request() {
    // The twin: the first request's deadline passes while its connection waits in the pool (its
    // timer fires then); the next request on that connection has a deadline of its own and an
    // answer that takes most of it.
    static SCRIPT: [Step; 3] = [
        Step::Answer(Duration::ZERO),
        Step::Answer(Duration::from_millis(300)),
        Step::Answer(Duration::from_millis(300)),
    ];
    let up = Scripted::start(&SCRIPT, OK).await;
    let (_dir, gw) = gateway(&up.url(), "600ms").await;
    let client = client();
    assert_eq!(get(&client, &gw, "/api/1").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, took) = get(&client, &gw, "/api/2").await;
    assert_eq!(status, 200, "answered in {took:?}, within its own deadline");
    // Back to back: a request right after one that used half its time gets a whole timeout of
    // its own, not what was left of the previous one's.
    let (status, took) = get(&client, &gw, "/api/3").await;
    assert_eq!(status, 200, "answered in {took:?}, within its own deadline");
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "all three on one upstream connection"
    );
    gw.stop().await;
}

/// The caller's view of one answer through the gateway, on a raw HTTP/1.1 connection: the
/// status line and the field lines, as sent.
async fn answer_fields(gw: &portcullis::server::Running) -> Vec<String> {
    let (raw, _) = raw_exchange(
        gw.data_addr,
        b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    assert_eq!(status_of(&raw), 200, "{raw}");
    head.lines().skip(1).map(str::to_owned).collect()
}

fn names(fields: &[String]) -> Vec<String> {
    fields
        .iter()
        .map(|f| f.split(':').next().unwrap_or_default().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn hop_by_hop_fields_of_an_answer_never_reach_the_caller_in_any_spelling() {
    for reply in [
        // Every hop-by-hop field, and one the upstream lists in Connection.
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Internal-Token, keep-alive\r\nX-Internal-Token: s3cret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\nTE: trailers\r\nProxy-Authenticate: Basic\r\nX-Kept: yes\r\n\r\nok"[..],
        // Other spellings: case, whitespace around the list, the listed name in another case.
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncOnNeCtIoN:  x-INTERNAL-token ,KEEP-ALIVE \r\nx-internal-TOKEN: s3cret\r\nKEEP-ALIVE: timeout=5\r\nX-Kept: yes\r\n\r\nok",
        // The listed field before the Connection field that names it.
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Internal-Token: s3cret\r\nX-Kept: yes\r\nConnection: x-internal-token\r\n\r\nok",
    ] {
        let up = Scripted::start(&[], reply).await;
        let (_dir, gw) = gateway(&up.url(), "2s").await;
        let fields = answer_fields(&gw).await;
        let names = names(&fields);
        for gone in [
            "x-internal-token",
            "keep-alive",
            "proxy-connection",
            "upgrade",
            "trailer",
            "te",
            "proxy-authenticate",
        ] {
            assert!(!names.contains(&gone.to_owned()), "{gone} reached the caller: {fields:?}");
        }
        assert!(fields.iter().all(|f| !f.contains("s3cret")), "{fields:?}");
        assert!(names.contains(&"x-kept".to_owned()), "{fields:?}");
        // The connection's fate is the gateway's to state (the caller asked to close).
        assert_eq!(
            fields.iter().filter(|f| f.to_ascii_lowercase().starts_with("connection:")).count(),
            1,
            "{fields:?}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_answer_without_hop_by_hop_fields_keeps_every_field_in_order() {
    // The path that skips the filter: repeated fields and their order are the upstream's.
    let up = Scripted::start(
        &[],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nX-Order: first\r\nSet-Cookie: b=2\r\nX-Order: second\r\nCache-Control: no-store\r\n\r\nok",
    )
    .await;
    let (_dir, gw) = gateway(&up.url(), "2s").await;
    let fields = answer_fields(&gw).await;
    let ours: Vec<&String> = fields
        .iter()
        .filter(|f| {
            let n = f.to_ascii_lowercase();
            n.starts_with("set-cookie:")
                || n.starts_with("x-order:")
                || n.starts_with("cache-control:")
        })
        .collect();
    let ours: Vec<String> = ours.iter().map(|f| f.to_ascii_lowercase()).collect();
    let cookies: Vec<&String> = ours
        .iter()
        .filter(|f| f.starts_with("set-cookie:"))
        .collect();
    let orders: Vec<&String> = ours.iter().filter(|f| f.starts_with("x-order:")).collect();
    assert_eq!(
        cookies,
        ["set-cookie: a=1", "set-cookie: b=2"],
        "{fields:?}"
    );
    assert_eq!(orders, ["x-order: first", "x-order: second"], "{fields:?}");
    assert!(
        ours.contains(&"cache-control: no-store".to_owned()),
        "{fields:?}"
    );
    gw.stop().await;
}
