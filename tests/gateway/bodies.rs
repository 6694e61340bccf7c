//! Bodies, headers and validation (docs/security.md "Bodies, headers and validation"): body read
//! deadlines and memory caps, validation decided by whether a body is actually there (h2 without
//! `Content-Length`, h1 chunked), identity headers legacy apps trust, and charsets the
//! validators do not read in.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["amount"],
  "properties": { "amount": { "type": "integer", "minimum": 1 } }
}"#;

const CALLER_KEY: &str = "pk_bodies_caller_4f1d9a";

/// Routes: `/json` (schema), `/xml` (XML only), `/any` (JSON without schema), `/plain` (no
/// validation, extra `strip_headers`), `/keyed` (API key, `token_header = "none"`).
fn routes(dir: &std::path::Path, up: &Upstream) -> String {
    std::fs::write(dir.join("schema.json"), SCHEMA).unwrap();
    std::fs::write(
        dir.join("whsec"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .unwrap();
    write_api_keys(
        dir,
        &[("acme", "spiffe://corp.example/partner/acme", CALLER_KEY)],
    );
    let u = up.url();
    let d = dir.display();
    format!(
        r#"
[credentials.partner-keys]
kind = "api-key"
header = "X-API-Key"
keys_file = "{d}/keys.toml"

[credentials.billing-hooks]
kind = "webhook"
adapter = "standard-webhooks"
secrets_file = "{d}/whsec"
identity = "spiffe://corp.example/external/billing"
{json}
[routes.validate]
json_schema = "{d}/schema.json"
{xml}
[routes.validate]
content_types = ["text/xml", "application/xml", "application/soap+xml"]
{any}
[routes.validate]
content_types = ["application/json"]
{plain}
strip_headers = ["X-Legacy-Role", "x-tenant-*"]
{keyed}
token_header = "none"
{hooks}
token_header = "none"
"#,
        json = route("json", "/json", &u, ""),
        xml = route("xml", "/xml", &u, ""),
        any = route("any", "/any", &u, "[routes.limits]\nmax_body = \"64KiB\""),
        plain = route("plain", "/plain", &u, ""),
        hooks = route(
            "hooks",
            "/hooks",
            &u,
            "accept = [\"billing-hooks\"]\nallow = [\"spiffe://corp.example/external/*\"]",
        ),
        keyed = route(
            "keyed",
            "/keyed",
            &u,
            "accept = [\"partner-keys\"]\nallow = [\"spiffe://corp.example/partner/*\"]\ndangerous_allow_plaintext_credentials = true",
        ),
    )
}

/// A plain-HTTP gateway (raw sockets see exactly what the test wrote).
async fn plain(listen_extra: &str) -> (tempfile::TempDir, Upstream, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let toml = base_config(dir.path(), listen_extra, "", &routes(dir.path(), &up));
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, up, gw)
}

/// A TLS gateway (h2 by ALPN).
async fn tls() -> (Pki, Upstream, portcullis::server::Running) {
    tls_with("").await
}

fn head(path: &str, ctype: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Read until the peer closes or `wait` passes: (text, closed, when).
async fn read_all(s: &mut TcpStream, wait: Duration) -> (String, bool, Duration) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&buf).into_owned(),
                    true,
                    started.elapsed(),
                )
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                return (
                    String::from_utf8_lossy(&buf).into_owned(),
                    false,
                    started.elapsed(),
                )
            }
        }
    }
}

fn padded_json(len: usize) -> String {
    let pad = len - r#"{"pad":""}"#.len();
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad))
}

#[tokio::test]
async fn a_stalled_body_is_408_within_the_deadline_and_closed() {
    let (_d, up, gw) = plain("body_timeout = \"1s\"").await;
    for path in ["/json/x", "/xml/x"] {
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        let ctype = if path == "/json/x" {
            "application/json"
        } else {
            "text/xml"
        };
        s.write_all(head(path, ctype, 16000).as_bytes())
            .await
            .unwrap();
        s.write_all(b"{\"amount\":").await.unwrap();
        let (resp, closed, at) = read_all(&mut s, Duration::from_secs(6)).await;
        assert_eq!(status_of(&resp), 408, "{path}: {resp}");
        assert!(resp.contains("urn:portcullis:request-timeout"), "{resp}");
        assert!(closed, "{path}: the connection stays open after a 408");
        assert!(at < Duration::from_secs(3), "{path}: answered after {at:?}");
    }
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_trickle_below_the_minimum_rate_is_cut() {
    let (_d, up, gw) = plain("body_timeout = \"60s\"\nbody_min_rate = \"1KiB\"").await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(head("/any/x", "application/json", 16000).as_bytes())
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    // 20 bytes every 100 ms: 200 B/s, always "making progress", far below 1 KiB/s.
    let writer = tokio::spawn(async move {
        wr.write_all(b"{\"pad\":\"").await.ok();
        for _ in 0..600 {
            if wr.write_all(&[b'x'; 20]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("a trickling body was never cut"),
        }
    }
    let at = started.elapsed();
    let resp = String::from_utf8_lossy(&buf);
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(at < Duration::from_secs(8), "cut after {at:?}");
    writer.abort();
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn stalled_bodies_do_not_exhaust_the_listener() {
    let (_d, up, gw) = plain("body_timeout = \"1s\"\nmax_connections = 20").await;
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        let path = if i % 2 == 0 { "/json/x" } else { "/xml/x" };
        let ctype = if i % 2 == 0 {
            "application/json"
        } else {
            "text/xml"
        };
        s.write_all(head(path, ctype, 16000).as_bytes())
            .await
            .unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(1800)).await;
    // The stalled connections are still held open by the caller; a fresh one must get through.
    let (resp, _) = raw_exchange(
        gw.data_addr,
        b"GET /plain/ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.count(), 1);
    drop(stalled);
    gw.stop().await;
}

/// Start a body of `declared` bytes, send `sent` of them, and leave it hanging.
async fn hold(addr: std::net::SocketAddr, declared: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head("/any/x", "application/json", declared).as_bytes())
        .await
        .unwrap();
    s.write_all(&padded_json(declared).as_bytes()[..sent])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s
}

async fn post_json(addr: std::net::SocketAddr, len: usize) -> String {
    let req = format!(
        "{}{}",
        head("/any/x", "application/json", len),
        padded_json(len)
    );
    raw_exchange(addr, req.as_bytes(), Duration::from_secs(3))
        .await
        .0
}

#[tokio::test]
async fn the_global_buffer_cap_refuses_when_exceeded_and_frees_after() {
    let (_d, up, gw) = plain(
        "body_timeout = \"30s\"\nbody_min_rate = \"off\"\nmax_buffered_bodies = \"16KiB\"\nmax_buffered_per_source = \"1MiB\"",
    )
    .await;
    let held = hold(gw.data_addr, 20_000, 14_000).await;
    let resp = post_json(gw.data_addr, 4000).await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(resp.contains("urn:portcullis:overloaded"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("retry-after:"), "{resp}");
    assert_eq!(up.count(), 0);
    // The caller gives up: what it held is released.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let resp = post_json(gw.data_addr, 12_000).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
    }
    assert_eq!(up.count(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn the_per_source_buffer_cap_refuses_when_exceeded() {
    let (_d, up, gw) = plain(
        "body_timeout = \"2s\"\nbody_min_rate = \"off\"\nmax_buffered_bodies = \"1MiB\"\nmax_buffered_per_source = \"8KiB\"",
    )
    .await;
    let mut held = hold(gw.data_addr, 10_000, 7_000).await;
    let resp = post_json(gw.data_addr, 2000).await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(resp.contains("urn:portcullis:overloaded"), "{resp}");
    // The held body times out (408); its bytes are released with it.
    let (resp, closed, _) = read_all(&mut held, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(closed);
    let resp = post_json(gw.data_addr, 6000).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

/// A body that reqwest streams: no `Content-Length` (h2: DATA frames; h1: chunked).
fn streamed(s: &'static str) -> reqwest::Body {
    let chunks = vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(
        s.as_bytes(),
    ))];
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

const XXE: &str =
    r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;

#[tokio::test]
async fn h2_bodies_without_a_length_are_validated_whatever_the_method() {
    let (pki, up, gw) = tls().await;
    let base = format!("https://localhost:{}", gw.data_addr.port());
    let c = pki.client(false);
    for method in [
        reqwest::Method::DELETE,
        reqwest::Method::OPTIONS,
        reqwest::Method::GET,
        reqwest::Method::POST,
    ] {
        let r = c
            .request(method.clone(), format!("{base}/json/x"))
            .header("content-type", "application/json")
            .body(streamed(r#"{"amount":-5}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 422, "h2 {method} schema violation");
        let r = c
            .request(method.clone(), format!("{base}/xml/x"))
            .header("content-type", "application/xml")
            .body(streamed(XXE))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "h2 {method} external entity");
        // No Content-Type at all: a body the validators cannot classify is 415.
        let r = c
            .request(method.clone(), format!("{base}/json/x"))
            .body(streamed(r#"{"amount":-5}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "h2 {method} without Content-Type");
    }
    assert_eq!(
        up.count(),
        0,
        "a body that failed validation reached the upstream"
    );
    // Without a body, the same methods pass (no Content-Type needed); a valid body passes too.
    for method in [reqwest::Method::DELETE, reqwest::Method::GET] {
        let r = c
            .request(method.clone(), format!("{base}/json/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c
            .request(method, format!("{base}/json/x"))
            .header("content-type", "application/json")
            .body(streamed(r#"{"amount":5}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(up.last().body_bytes, 12);
    }
    gw.stop().await;
}

#[tokio::test]
async fn h1_chunked_bodies_are_validated_whatever_the_method() {
    let (_d, up, gw) = plain("").await;
    let chunked = |method: &str, path: &str, ctype: &str, body: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    for method in ["DELETE", "OPTIONS", "GET"] {
        let req = chunked(method, "/json/x", "application/json", r#"{"amount":-5}"#);
        let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&resp), 422, "{method}: {resp}");
        let req = chunked(method, "/xml/x", "text/xml", XXE);
        let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&resp), 400, "{method}: {resp}");
    }
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn identity_headers_legacy_apps_trust_never_reach_the_upstream() {
    let (_d, up, gw) = plain("").await;
    let spoofed = [
        "Remote-User: admin",
        "X-Remote-User: admin",
        "X_Remote_User: admin",
        "x-remote_user: admin",
        "REMOTE_USER: admin",
        "X-Forwarded-User: admin",
        "X-Authenticated-User: admin",
        "X-Remote-Groups: wheel",
        "X-Remote-Email: admin@corp.example",
        "X-Forwarded-Email: admin@corp.example",
        "X-Forwarded-Groups: wheel",
        "X-Forwarded-Preferred-Username: admin",
        "X-Auth-Request-User: admin",
        "X_Auth_Request_Email: admin@corp.example",
        "X-SSL-Client-S-DN: CN=admin",
        "X-SSL-Client-Verify: SUCCESS",
        "x_ssl_client_cert: MIIB",
        "Proxy-Authorization: Basic YWRtaW46YWRtaW4=",
        "X-Legacy-Role: root",
        "X_Legacy_Role: root",
        "X-Tenant-Id: other",
        "x_tenant_name: other",
    ];
    let req = format!(
        "GET /plain/x HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\nX-Innocent: kept\r\nConnection: close\r\n\r\n",
        spoofed.join("\r\n")
    );
    let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = up.last().headers;
    for line in spoofed {
        let name = line.split(':').next().unwrap();
        assert!(
            seen.get(name).is_none(),
            "{name} reached the upstream: {seen:?}"
        );
    }
    for (name, _) in &seen {
        let n = name.as_str().replace('_', "-");
        assert!(
            !n.contains("remote-user")
                && !n.starts_with("x-ssl-client")
                && !n.starts_with("x-auth-request")
                && !n.starts_with("x-tenant"),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen["x-innocent"], "kept");
    gw.stop().await;
}

#[tokio::test]
async fn the_callers_authorization_is_stripped_when_the_route_sends_no_token_there() {
    let (_d, up, gw) = plain("").await;
    for auth in [
        "Authorization: Bearer caller-own-token",
        "authorization: Basic YWRtaW46c2VjcmV0",
    ] {
        let req = format!(
            "GET /keyed/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {CALLER_KEY}\r\n{auth}\r\nConnection: close\r\n\r\n"
        );
        let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        let seen = up.last().headers;
        assert!(seen.get("authorization").is_none(), "{seen:?}");
        assert!(seen.get("x-api-key").is_none(), "{seen:?}");
    }
    gw.stop().await;
}

/// The twin: a pass-through route (no `accept`) authenticates nothing, so the upstream's own
/// authentication still gets the caller's `Authorization`.
#[tokio::test]
async fn a_pass_through_route_leaves_authorization_to_the_upstream() {
    let (_d, up, gw) = plain("").await;
    let req = "GET /any/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YWRtaW46c2VjcmV0\r\nRemote-User: admin\r\nConnection: close\r\n\r\n";
    let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = up.last().headers;
    assert_eq!(seen["authorization"], "Basic YWRtaW46c2VjcmV0");
    assert!(seen.get("remote-user").is_none(), "{seen:?}");
    gw.stop().await;
}

#[tokio::test]
async fn charsets_the_validators_do_not_read_in_are_415() {
    let (_d, up, gw) = plain("").await;
    // Well-formed UTF-8 XML; read as UTF-7 (as declared) it carries markup the check never saw.
    let xml_doctype = "<r>+ADw-script+AD4-alert(1)+ADw-/script+AD4-</r>";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "/xml/x",
            "text/xml; charset=utf-7",
            xml_doctype.as_bytes().to_vec(),
        ),
        (
            "/xml/x",
            "application/xml;charset=\"UTF-7\"",
            xml_doctype.as_bytes().to_vec(),
        ),
        ("/xml/x", "text/xml; charset=iso-8859-1", b"<r/>".to_vec()),
        ("/xml/x", "text/xml; charset=utf-16", b"<r/>".to_vec()),
        (
            "/json/x",
            "application/json; charset=utf-7",
            br#"{"amount":5}"#.to_vec(),
        ),
        (
            "/json/x",
            "application/json; charset=utf-16le",
            br#"{"amount":5}"#.to_vec(),
        ),
        // A BOM that contradicts the declared (or implied) charset.
        (
            "/xml/x",
            "text/xml; charset=utf-8",
            b"\xFF\xFE<\0r\0/\0>\0".to_vec(),
        ),
        ("/json/x", "application/json", b"\xFE\xFF\0{\0}".to_vec()),
        // An XML declaration naming an encoding the check does not read in.
        (
            "/xml/x",
            "text/xml",
            br#"<?xml version="1.0" encoding="UTF-7"?><r/>"#.to_vec(),
        ),
        (
            "/xml/x",
            "text/xml",
            br#"<?xml version="1.0" encoding="ISO-8859-1"?><r/>"#.to_vec(),
        ),
    ];
    for (path, ctype, body) in cases {
        let mut req = head(path, ctype, body.len()).into_bytes();
        req.extend_from_slice(&body);
        let (resp, _) = raw_exchange(gw.data_addr, &req, Duration::from_secs(3)).await;
        assert_eq!(status_of(&resp), 415, "{ctype} {body:?}: {resp}");
        assert!(
            resp.contains("urn:portcullis:unsupported-media-type"),
            "{resp}"
        );
    }
    assert_eq!(up.count(), 0);
    // UTF-8, declared in every accepted way, passes.
    let ok: Vec<(&str, &str, &[u8])> = vec![
        (
            "/xml/x",
            "text/xml; charset=UTF-8",
            br#"<?xml version="1.0" encoding="utf-8"?><r/>"#,
        ),
        ("/xml/x", "text/xml; charset=\"utf-8\"", b"\xEF\xBB\xBF<r/>"),
        ("/xml/x", "application/xml", b"<r/>"),
        (
            "/json/x",
            "application/json; charset=utf-8",
            br#"{"amount":5}"#,
        ),
        ("/json/x", "application/json", br#"{"amount":5}"#),
    ];
    for (path, ctype, body) in ok {
        let mut req = head(path, ctype, body.len()).into_bytes();
        req.extend_from_slice(body);
        let (resp, _) = raw_exchange(gw.data_addr, &req, Duration::from_millis(800)).await;
        assert_eq!(status_of(&resp), 200, "{ctype}: {resp}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_h2_stream_body_that_stalls_is_408() {
    let (pki, up, gw) = tls_with("body_timeout = \"1s\"").await;
    let base = format!("https://localhost:{}", gw.data_addr.port());
    let c = pki.client(false);
    let first = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        bytes::Bytes::from_static(b"{\"amount\":"),
    )]);
    let stalled = first.chain(futures_util::stream::pending());
    let started = Instant::now();
    let r = c
        .post(format!("{base}/json/x"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

async fn tls_with(listen_extra: &str) -> (Pki, Upstream, portcullis::server::Running) {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let toml = base_config(
        pki.dir.path(),
        listen_extra,
        &pki.tls_section(),
        &routes(pki.dir.path(), &up),
    );
    let gw = start_in_process(pki.dir.path(), &toml).await;
    (pki, up, gw)
}

#[tokio::test]
async fn a_streamed_body_that_stalls_is_cut_at_the_idle_timeout() {
    // No validation on /plain: the body streams to the upstream, which reads it all before
    // answering. The upstream timeout (2 s) is longer than body_timeout (600 ms).
    let (_d, up, gw) = plain("body_timeout = \"600ms\"").await;
    for framing in [
        "Content-Length: 5000".to_string(),
        "Transfer-Encoding: chunked".to_string(),
    ] {
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        let first: &[u8] = if framing.starts_with("Content") {
            b"0123456789"
        } else {
            b"a\r\n0123456789\r\n"
        };
        s.write_all(
            format!("POST /plain/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        s.write_all(first).await.unwrap();
        let (resp, closed, at) = read_all(&mut s, Duration::from_secs(5)).await;
        assert_eq!(status_of(&resp), 408, "{framing}: {resp}");
        assert!(closed, "{framing}");
        assert!(at < Duration::from_millis(1800), "{framing}: after {at:?}");
    }
    let _ = up;
    gw.stop().await;
}

/// A webhook delivery's head (signature headers present, so the body is read to check them,
/// before anything is authenticated), declaring `len` bytes.
fn webhook_head(len: usize) -> String {
    format!(
        "POST /hooks/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nwebhook-id: msg_1\r\nwebhook-timestamp: 1700000000\r\nwebhook-signature: v1,AAAA\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn unauthenticated_webhook_bodies_meet_the_deadline_and_the_caps() {
    let (_d, up, gw) = plain(
        "body_timeout = \"1s\"\nbody_min_rate = \"off\"\nmax_buffered_per_source = \"64KiB\"",
    )
    .await;
    // Stalled: 408 within the deadline, before any signature is checked.
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    s.write_all(webhook_head(16000).as_bytes()).await.unwrap();
    let (resp, closed, at) = read_all(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(closed && at < Duration::from_secs(3), "{at:?}");
    // Unfinished 40 KB deliveries: the second one from the same source passes the cap.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        s.write_all(webhook_head(40_000).as_bytes()).await.unwrap();
        if s.write_all(&[b'x'; 35_000]).await.is_err() {
            refused += 1;
            continue;
        }
        let (resp, _, _) = read_all(&mut s, Duration::from_millis(400)).await;
        if status_of(&resp) == 503 {
            assert!(resp.contains("urn:portcullis:overloaded"), "{resp}");
            refused += 1;
        } else {
            assert_eq!(resp, "", "an unfinished body was answered");
            held.push(s);
        }
    }
    assert_eq!(held.len(), 1);
    assert_eq!(refused, 2);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn bad_body_and_strip_settings_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let path = dir.path().join("portcullis.toml");
    let listen = "body_timeout = \"0s\"\nbody_min_rate = \"fast\"\nmax_buffered_bodies = \"0\"";
    std::fs::write(&path, base_config(dir.path(), listen, "", "")).unwrap();
    let err = portcullis::config::load(&path).unwrap_err().to_string();
    for key in [
        "listen.body_timeout",
        "listen.body_min_rate",
        "listen.max_buffered_bodies",
    ] {
        assert!(err.contains(key), "{key} not reported:\n{err}");
    }
    for bad in [
        "x bad",
        "content-length",
        "Transfer_Encoding",
        "host",
        "x-*-y",
    ] {
        let routes = format!(
            "{}strip_headers = [\"x-fine\", \"{bad}\"]\n",
            route("r", "/r", &up.url(), "")
        );
        std::fs::write(&path, base_config(dir.path(), "", "", &routes)).unwrap();
        let err = portcullis::config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("upstream.strip_headers") && err.contains(bad),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn a_stalled_token_exchange_form_is_408() {
    // POST /oauth2/token reads its form before authenticating anyone.
    let pki = Pki::new();
    let up = Upstream::start().await;
    let extra = format!(
        r#"{ISSUER}
[credentials.racf]
kind = "ldap"
adapter = "openldap"
url = "ldap://127.0.0.1:1"
base_dn = "ou=people,dc=corp,dc=example"
identity = "spiffe://corp.example/legacy/{{user}}"

[token_exchange]
accept = ["racf"]
{}"#,
        route("p", "/p", &up.url(), "")
    );
    let toml = base_config(
        pki.dir.path(),
        "body_timeout = \"1s\"",
        &pki.tls_section(),
        &extra,
    );
    let gw = start_in_process(pki.dir.path(), &toml).await;
    let url = format!("https://localhost:{}/oauth2/token", gw.data_addr.port());
    for h1 in [false, true] {
        let first = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
            bytes::Bytes::from_static(b"grant_type="),
        )]);
        let started = Instant::now();
        let r = pki
            .client(h1)
            .post(&url)
            .basic_auth("alice", Some("secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(reqwest::Body::wrap_stream(
                first.chain(futures_util::stream::pending()),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 408, "h1 only: {h1}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
    gw.stop().await;
}
