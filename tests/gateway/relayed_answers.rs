//! An upstream answer's fields are relayed as they arrived (`proxy::Relayed`, issue 22) while
//! the response's own map carries only what the gateway sets: against a hostile upstream, on a
//! raw HTTP/1.1 connection (the native engine by default, hyper's with
//! `PORTCULLIS_TEST_HTTP1_ENGINE=hyper`) and over h2 (TLS, ALPN): the upstream never overrides
//! `X-Request-Id`, `RateLimit*` (the gateway's replace the upstream's), the gateway's `Sunset`,
//! `Deprecation` and `Link` are appended after the upstream's (as `SunsetHeaders::apply` always
//! did), nothing a `Connection` field lists or that is hop-by-hop gets through, repeated fields
//! keep their order, odd `Transfer-Encoding` spellings are refused, and a 304 / `HEAD` / 204
//! answer keeps the connection in step.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const KEY: &str = "pcs_relay_test_key_0123456789";

/// The hostile answer: the gateway's own fields in the upstream's words, a secret that only a
/// `Connection` field marks as hop-by-hop, and repeated `Set-Cookie` around another field.
const HOSTILE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Set-Cookie: a=1\r\n\
X-Request-Id: upstream-id\r\n\
Connection: X-Secret, keep-alive\r\n\
X-Secret: s3cret\r\n\
RateLimit: \"upstream\";r=999;t=1\r\n\
ratelimit-policy: \"upstream\";q=999;w=1\r\n\
Set-Cookie: b=2\r\n\
X-Mid: m\r\n\
Sunset: Sun, 01 Jan 2051 00:00:00 GMT\r\n\
Deprecation: @1\r\n\
Link: <https://up.example/doc>; rel=\"help\"\r\n\
x-request-id: upstream-id-2\r\n\
Keep-Alive: timeout=5\r\n\
Set-Cookie: c=3\r\n\
Content-Length: 2\r\n\r\nok";

/// The upstream's answer for a request line: by the path's last segment.
fn reply(request_line: &str) -> &'static [u8] {
    let head = request_line.starts_with("HEAD ");
    let path = request_line.split(' ').nth(1).unwrap_or_default();
    match path.rsplit('/').next().unwrap_or_default() {
        "hostile" if head => b"HTTP/1.1 200 OK\r\nX-Secret-Free: y\r\nContent-Length: 7\r\n\r\n",
        "hostile" => HOSTILE,
        "te-caps" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "te-list" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        }
        "te-twice" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "te-gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "te-xchunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "te-space" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "te-and-length" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "te-fold" => b"HTTP/1.1 200 OK\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nok",
        "not-modified" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n",
        "no-content" => b"HTTP/1.1 204 No Content\r\nX-Done: 1\r\nContent-Length: 0\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    }
}

/// A plain-HTTP upstream that answers each request (no bodies) with [`reply`], keeping the
/// connection open.
async fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    format!("http://{addr}")
}

async fn serve(mut s: TcpStream) {
    let mut got = Vec::new();
    while let Some(head) = next_head(&mut s, &mut got).await {
        let head = String::from_utf8_lossy(&head).into_owned();
        if s.write_all(reply(head.lines().next().unwrap_or_default()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A gateway whose `/relay/` route authenticates an API key, is in its plan's `bridge` phase
/// for good (so the answer gets `Sunset`, `Deprecation` and `Link`) and rate-limits (so it gets
/// `RateLimit` and `RateLimit-Policy`). `tls`: the listener's TLS section (h2 by ALPN).
async fn gateway(dir: &std::path::Path, upstream: &str, tls: &str) -> portcullis::server::Running {
    std::fs::create_dir_all(dir.join("plans")).unwrap();
    std::fs::write(
        dir.join("plans/relay.toml"),
        r#"name = "relay"
owner = "team-relay <relay@corp.example>"
docs = "https://wiki.corp.example/migrations/relay"
legacy_credentials = ["partner-keys"]
[phases]
observe = 2020-01-01
bridge = 2020-02-01
enforce = 2099-01-01
[exit_criteria]
max_legacy_share = 0.01
window = "14d"
"#,
    )
    .unwrap();
    write_api_keys(
        dir,
        &[("relay", "spiffe://corp.example/partner/relay", KEY)],
    );
    let routes = format!(
        "{ISSUER}[state]\npath = \"{d}/state.db\"\n[migration]\nplans_dir = \"{d}/plans\"\n{keys}{route}\n[routes.limits]\nrate = \"1000/s\"\n",
        d = dir.display(),
        keys = partner_keys(dir),
        route = RouteToml::new("relay", "/relay/", upstream)
            .accept(&["partner-keys"])
            .allow(&["spiffe://corp.example/partner/*"])
            .key("plan = \"relay\"")
            .key("dangerous_allow_plaintext_credentials = true")
            .audience("relay"),
    );
    start_in_process(dir, &base_config(dir, "", tls, &routes)).await
}

/// One keep-alive HTTP/1.1 connection to the gateway, read by hand.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

/// An answer as the caller's socket saw it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// (lower-case name, value), in order.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Raw {
    async fn connect(gw: &portcullis::server::Running) -> Raw {
        Raw {
            s: TcpStream::connect(gw.data_addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Send `method path` with the API key and read one answer; `no_body`: the answer has none
    /// whatever its fields say (HEAD, 204, 304), else it is delimited by its `Content-Length`,
    /// or chunked (then `body` is the chunked encoding, as sent).
    async fn call(&mut self, method: &str, path: &str, no_body: bool) -> Answer {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {KEY}\r\nX-Request-Id: caller-rid-1\r\n\r\n"
        );
        self.s.write_all(req.as_bytes()).await.unwrap();
        let mut chunk = [0u8; 8192];
        let read = async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                    let mut lines = head.split("\r\n");
                    let status = lines.next().unwrap()[9..12].parse().unwrap();
                    let fields: Vec<(String, String)> = lines
                        .map(|l| {
                            let (n, v) = l.split_once(':').unwrap();
                            (n.to_ascii_lowercase(), v.trim().to_owned())
                        })
                        .collect();
                    let chunked = fields
                        .iter()
                        .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
                    if chunked && !no_body {
                        while !self.buf[end..].windows(7).any(|w| w == b"\r\n0\r\n\r\n") {
                            let k = self.s.read(&mut chunk).await.unwrap();
                            assert!(k > 0, "closed mid-body: {head}");
                            self.buf.extend_from_slice(&chunk[..k]);
                        }
                    }
                    let len: usize = if no_body {
                        0
                    } else if chunked {
                        let at = self.buf[end..]
                            .windows(7)
                            .position(|w| w == b"\r\n0\r\n\r\n")
                            .unwrap();
                        at + 7 - 4
                    } else {
                        fields
                            .iter()
                            .find(|(n, _)| n == "content-length")
                            .map(|(_, v)| v.parse().unwrap())
                            .unwrap_or_else(|| panic!("no length: {head}"))
                    };
                    while self.buf.len() < end + 4 + len {
                        let k = self.s.read(&mut chunk).await.unwrap();
                        assert!(k > 0, "closed mid-body: {head}");
                        self.buf.extend_from_slice(&chunk[..k]);
                    }
                    let body = self.buf[end + 4..end + 4 + len].to_vec();
                    self.buf.drain(..end + 4 + len);
                    return Answer {
                        status,
                        fields,
                        body,
                    };
                }
                let k = self.s.read(&mut chunk).await.unwrap();
                assert!(k > 0, "closed before an answer");
                self.buf.extend_from_slice(&chunk[..k]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("no answer in 10 s")
    }

    /// Nothing more arrives within a moment (no stray body bytes after a bodiless answer).
    async fn quiet(&mut self) {
        let mut chunk = [0u8; 64];
        let got = tokio::time::timeout(Duration::from_millis(200), self.s.read(&mut chunk)).await;
        assert!(got.is_err() && self.buf.is_empty(), "stray bytes: {got:?}");
    }
}

/// What every caller must see of the hostile answer, whatever the protocol: `fields` as
/// (lower-case name, value) in order.
fn check_hostile(fields: &[(String, String)]) {
    let all = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    // The gateway's request id (the caller's, adopted), once; the upstream's never.
    assert_eq!(all("x-request-id"), ["caller-rid-1"], "{fields:?}");
    // The gateway's rate-limit fields replace the upstream's.
    let rate = all("ratelimit");
    assert_eq!(rate.len(), 1, "{fields:?}");
    assert!(!rate[0].contains("upstream"), "{fields:?}");
    let policy = all("ratelimit-policy");
    assert_eq!(policy.len(), 1, "{fields:?}");
    assert!(!policy[0].contains("upstream"), "{fields:?}");
    // Appended after the upstream's, as before: the gateway's are the last ones.
    let sunset = all("sunset");
    assert_eq!(sunset.len(), 2, "{fields:?}");
    assert!(sunset[0].contains("2051"), "{fields:?}");
    assert!(sunset[1].contains("2099"), "{fields:?}");
    assert_eq!(all("deprecation").len(), 2, "{fields:?}");
    assert_eq!(all("deprecation")[0], "@1", "{fields:?}");
    let link = all("link");
    assert_eq!(link.len(), 2, "{fields:?}");
    assert!(link[0].contains("up.example"), "{fields:?}");
    assert!(link[1].contains("wiki.corp.example"), "{fields:?}");
    // Hop-by-hop, and what the upstream's Connection listed: gone.
    for gone in ["x-secret", "keep-alive"] {
        assert!(all(gone).is_empty(), "{gone}: {fields:?}");
    }
    assert!(
        fields.iter().all(|(_, v)| !v.contains("s3cret")),
        "{fields:?}"
    );
    assert!(
        all("connection").iter().all(|v| !v.contains("X-Secret")),
        "{fields:?}"
    );
    // Repeated fields in the upstream's order, each once; the rest kept.
    assert_eq!(all("set-cookie"), ["a=1", "b=2", "c=3"], "{fields:?}");
    assert_eq!(all("x-mid"), ["m"], "{fields:?}");
    assert_eq!(all("content-length"), ["2"], "{fields:?}");
    assert_eq!(all("date").len(), 1, "{fields:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cannot_override_the_gateways_fields_over_http1() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &upstream().await, "").await;
    let mut c = Raw::connect(&gw).await;
    // Twice on one connection: the second answer is relayed on a reused upstream connection.
    for _ in 0..2 {
        let a = c.call("GET", "/relay/hostile", false).await;
        assert_eq!(a.status, 200, "{a:?}");
        check_hostile(&a.fields);
        assert_eq!(a.body, b"ok");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cannot_override_the_gateways_fields_over_h2() {
    let pki = Pki::new();
    let gw = gateway(pki.dir.path(), &upstream().await, &pki.tls_section()).await;
    let client = pki.client(false);
    let url = format!("https://127.0.0.1:{}/relay/hostile", gw.data_addr.port());
    for _ in 0..2 {
        let r = client
            .get(&url)
            .header("x-api-key", KEY)
            .header("x-request-id", "caller-rid-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        let fields: Vec<(String, String)> = r
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        // h2 has no Content-Length requirement; hyper keeps the relayed one.
        check_hostile(&fields);
        assert!(r.headers().get("connection").is_none());
        assert_eq!(r.bytes().await.unwrap(), "ok");
    }
    gw.stop().await;
}

/// A `HEAD`, a 304 and a 204 with lengths: the length a `HEAD` or 304 answer states is relayed
/// once, no body follows any of them, and the next answer on the same connection is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_answers_keep_the_connection_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &upstream().await, "").await;
    let mut c = Raw::connect(&gw).await;
    let a = c.call("HEAD", "/relay/hostile", true).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.all("content-length"), ["7"], "{a:?}");
    assert_eq!(a.all("x-secret-free"), ["y"], "{a:?}");
    assert_eq!(a.all("x-request-id"), ["caller-rid-1"], "{a:?}");
    c.quiet().await;
    let a = c.call("GET", "/relay/not-modified", true).await;
    assert_eq!(a.status, 304, "{a:?}");
    assert!(a.all("content-length").len() <= 1, "{a:?}");
    assert!(a.all("transfer-encoding").is_empty(), "{a:?}");
    assert_eq!(a.all("etag"), ["\"v1\""], "{a:?}");
    c.quiet().await;
    let a = c.call("GET", "/relay/no-content", true).await;
    assert_eq!(a.status, 204, "{a:?}");
    assert!(a.all("transfer-encoding").is_empty(), "{a:?}");
    assert_eq!(a.all("x-done"), ["1"], "{a:?}");
    c.quiet().await;
    let a = c.call("GET", "/relay/plain", false).await;
    assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]), "{a:?}");
    gw.stop().await;
}

/// `Transfer-Encoding` in other spellings: a chunked body in capitals is decoded and framed by
/// the gateway (no upstream `Transfer-Encoding` reaches the caller); every ambiguous one (a list,
/// two fields, another coding, space before the colon, with a length, folded into another
/// field) is a 502, never relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_transfer_encodings_are_decoded_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), &upstream().await, "").await;
    let mut c = Raw::connect(&gw).await;
    let a = c.call("GET", "/relay/te-caps", false).await;
    assert_eq!(a.status, 200, "{a:?}");
    // The gateway's own framing: chunked again, in its spelling, once, or a length.
    let te = a.all("transfer-encoding");
    assert!(te.is_empty() || te == ["chunked"], "{a:?}");
    assert_eq!(te.len() + a.all("content-length").len(), 1, "{a:?}");
    assert!(String::from_utf8_lossy(&a.body).contains("ok"), "{a:?}");
    // The connection is still in step.
    let a = c.call("GET", "/relay/plain", false).await;
    assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]), "{a:?}");
    for bad in [
        "te-list",
        "te-twice",
        "te-gzip",
        "te-xchunked",
        "te-space",
        "te-and-length",
        "te-fold",
    ] {
        let mut c = Raw::connect(&gw).await;
        let a = c.call("GET", &format!("/relay/{bad}"), false).await;
        assert_eq!(a.status, 502, "{bad}: {a:?}");
        assert_eq!(a.all("x-request-id"), ["caller-rid-1"], "{bad}: {a:?}");
        let body = String::from_utf8_lossy(&a.body);
        assert!(!body.contains("ok\r\n0"), "{bad}: {body}");
    }
    gw.stop().await;
}
