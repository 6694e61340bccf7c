//! The request head an upstream receives, captured as raw bytes (issue 22: the head is written
//! from a description of the caller's fields, those withheld and the gateway's own, instead of
//! an edited map). A caller head full of hostile twins (hop-by-hop fields, `Connection` naming
//! another field, identity claims in other spellings, a caller's `Forwarded`/`X-Forwarded-*`
//! chain, a `strip_headers` name, repeated fields) goes through the own HTTP/1.1 client (plain
//! `http` upstream, exact bytes and order) and hyper's client (`https` upstream, the same fields).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Request heads received, raw, in order.
type Heads = Arc<Mutex<Vec<String>>>;

/// Read request heads (no bodies) off `s` and answer each with [`OK`], recording the heads.
async fn serve(mut s: impl AsyncRead + AsyncWrite + Unpin, heads: Heads) {
    let mut got = Vec::new();
    while let Some(head) = next_head(&mut s, &mut got).await {
        heads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head).into_owned());
        if s.write_all(OK).await.is_err() {
            return;
        }
    }
}

/// A plain-HTTP upstream recording raw heads.
async fn plain_upstream() -> (std::net::SocketAddr, Heads) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Heads::default();
    let h = heads.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, h.clone()));
        }
    });
    (addr, heads)
}

/// An HTTPS upstream (HTTP/1.1 by ALPN, certificate from `pki`'s CA) recording raw heads: what
/// hyper's client writes from the map it is given.
async fn tls_upstream(pki: &Pki) -> (std::net::SocketAddr, Heads) {
    pki.write_server_cert("upstream");
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(pki.path("upstream.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.path("upstream.key")).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Heads::default();
    let h = heads.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, h) = (acceptor.clone(), h.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, h).await;
                }
            });
        }
    });
    (addr, heads)
}

/// A pass-through route on `/api` to `upstream` that strips `x-legacy-*`; `extra`: more
/// `[routes.upstream]` keys.
async fn gateway(upstream: &str, extra: &str) -> (tempfile::TempDir, portcullis::server::Running) {
    let dir = tempfile::tempdir().unwrap();
    let routes =
        route("api", "/api", upstream, "") + &format!("strip_headers = [\"X-Legacy-*\"]\n{extra}");
    let toml = base_config(dir.path(), "", "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, gw)
}

/// The caller's head: every field a hostile twin of something the gateway decides.
const HOSTILE: &str = "GET /api/x?q=1 HTTP/1.1\r\n\
Host: gw.example\r\n\
User-Agent: t/1\r\n\
Connection: X-Custom, keep-alive\r\n\
X-Custom: hidden\r\n\
Keep-Alive: timeout=5\r\n\
Accept: */*\r\n\
X_Remote_User: admin\r\n\
X-Remote-User: admin\r\n\
x-ssl-client-s-dn: CN=admin\r\n\
X-Portcullis-Identity: spiffe://corp.example/admin\r\n\
Forwarded: for=203.0.113.9\r\n\
X-Forwarded-For: 203.0.113.9\r\n\
X-Forwarded-Proto: https\r\n\
X-Forwarded-Host: evil.example\r\n\
X-Request-Id: caller-id-1\r\n\
Proxy-Connection: keep-alive\r\n\
Proxy-Authorization: Basic cHJveHk6cHc=\r\n\
X-Legacy-Role: admin\r\n\
X_Legacy_Tenant: t1\r\n\
Authorization: Basic dXNlcjpwYXNz\r\n\
accept: text/plain\r\n\
X-Keep: 1\r\n\
x-forwarded-for: 198.51.100.7\r\n\
\r\n";

/// The same request with `Connection` naming the forwarding chain (and a field the gateway
/// sets): the caller's chain is dropped, the gateway's element is the whole value, and the
/// gateway's own `X-Request-Id` is still there.
const CHAIN_DROPPED: &str = "GET /api/y HTTP/1.1\r\n\
Host: gw.example\r\n\
Connection: Forwarded, x-forwarded-for, X-Request-Id\r\n\
Forwarded: for=203.0.113.9\r\n\
X-Forwarded-For: 203.0.113.9\r\n\
X-Request-Id: caller-id-2\r\n\
\r\n";

/// The field lines of a raw head (without the request line).
fn fields(head: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Send `req` and return the gateway's answer.
async fn through(gw: &portcullis::server::Running, req: &str) -> String {
    let (raw, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    raw
}

/// What the upstream must receive for [`HOSTILE`], in the own client's order: the caller's
/// fields in the order sent (each name's repeated ones together, where the first stood), minus
/// the withheld ones, then the gateway's.
fn hostile_expected(peer_port: u16, upstream: std::net::SocketAddr) -> Vec<String> {
    [
        "user-agent: t/1".to_owned(),
        "accept: */*".to_owned(),
        "accept: text/plain".to_owned(),
        // A pass-through route (no `accept`) leaves `Authorization` to the upstream.
        "authorization: Basic dXNlcjpwYXNz".to_owned(),
        "x-keep: 1".to_owned(),
        format!(
            "forwarded: for=203.0.113.9, for=\"127.0.0.1:{peer_port}\";proto=http;host=\"gw.example\""
        ),
        "x-forwarded-for: 203.0.113.9, 198.51.100.7, 127.0.0.1".to_owned(),
        "x-forwarded-proto: http".to_owned(),
        "x-forwarded-host: gw.example".to_owned(),
        "x-request-id: caller-id-1".to_owned(),
        format!("host: {upstream}"),
    ]
    .into()
}

/// The upstream head of a request that forwards none of the caller's fields: the gateway's
/// alone, with `rid` as its `X-Request-Id` line.
fn only_gateway_fields(port: u16, rid: String, upstream: std::net::SocketAddr) -> Vec<String> {
    vec![
        format!("forwarded: for=\"127.0.0.1:{port}\";proto=http;host=\"gw.example\""),
        "x-forwarded-for: 127.0.0.1".to_owned(),
        "x-forwarded-proto: http".to_owned(),
        "x-forwarded-host: gw.example".to_owned(),
        rid,
        format!("host: {upstream}"),
    ]
}

/// The caller's port as the gateway's `Forwarded` element names it.
fn peer_port(fields: &[String]) -> u16 {
    let f = fields
        .iter()
        .find(|l| l.starts_with("forwarded: "))
        .expect("a Forwarded field");
    let at = f.find("127.0.0.1:").expect("the caller's address") + "127.0.0.1:".len();
    f[at..].split('"').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn upstream_head_is_the_callers_fields_in_order_then_the_gateways_on_the_own_client() {
    let (addr, heads) = plain_upstream().await;
    let (_dir, gw) = gateway(&format!("http://{addr}"), "").await;
    let raw = through(&gw, HOSTILE).await;
    assert!(raw.contains("x-request-id: caller-id-1\r\n"), "{raw}");
    let head = heads.lock().unwrap().last().cloned().unwrap();
    assert!(head.starts_with("GET /api/x?q=1 HTTP/1.1\r\n"), "{head}");
    let got = fields(&head);
    assert_eq!(got, hostile_expected(peer_port(&got), addr), "{head}");

    let raw = through(&gw, CHAIN_DROPPED).await;
    assert!(raw.contains("x-request-id: caller-id-2\r\n"), "{raw}");
    let head = heads.lock().unwrap().last().cloned().unwrap();
    let got = fields(&head);
    let port = peer_port(&got);
    assert_eq!(
        got,
        only_gateway_fields(port, "x-request-id: caller-id-2".to_owned(), addr),
        "{head}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn upstream_head_through_hyper_client_has_the_same_fields() {
    let pki = Pki::new();
    let (addr, heads) = tls_upstream(&pki).await;
    let extra = format!("ca = \"{}\"\n", pki.path("ca.pem").display());
    let (_dir, gw) = gateway(&format!("https://{addr}"), &extra).await;
    through(&gw, HOSTILE).await;
    let head = heads.lock().unwrap().last().cloned().unwrap();
    assert!(head.starts_with("GET /api/x?q=1 HTTP/1.1\r\n"), "{head}");
    let mut got = fields(&head);
    let mut want = hostile_expected(peer_port(&got), addr);
    // hyper writes the map's order; the fields are the same.
    got.sort();
    want.sort();
    assert_eq!(got, want, "{head}");
    gw.stop().await;
}

/// The description's box is kept per worker thread for the next request
/// (`UpstreamHead::recycle`): on one worker, a plain request from another connection right
/// after [`HOSTILE`] (withheld names, folded chains, the gateway's fields) carries only its own
/// fields, exactly those of a plain request on a fresh gateway; and a failed exchange (a dead
/// upstream, the caller's map still in the box) leaves nothing for the next either.
#[tokio::test]
async fn the_next_request_on_a_worker_carries_nothing_of_the_one_before() {
    let (addr, heads) = plain_upstream().await;
    let (dead_socket, dead) = refusing_addr();
    let dir = tempfile::tempdir().unwrap();
    let routes = route("api", "/api", &format!("http://{addr}"), "")
        + &route("dead", "/dead", &format!("http://{dead}"), "");
    let toml = base_config(dir.path(), "workers = 1", "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;
    const PLAIN: &str = "GET /api/z HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n";
    let plain = |head: &str| {
        let got = fields(head);
        let port = peer_port(&got);
        let rid = got
            .iter()
            .find(|l| l.starts_with("x-request-id: "))
            .cloned()
            .unwrap_or_default();
        assert!(!rid.contains("caller-id"), "{head}");
        assert_eq!(got, only_gateway_fields(port, rid, addr), "{head}");
    };
    // Each closes its connection (a further token in `Connection`), not to wait out the read.
    let hostile = HOSTILE.replace("X-Custom, keep-alive", "X-Custom, close");
    let chain = CHAIN_DROPPED.replace("X-Request-Id\r\n", "X-Request-Id, close\r\n");
    for before in [&hostile, &chain] {
        through(&gw, before).await;
        through(&gw, PLAIN).await;
        plain(&heads.lock().unwrap().last().cloned().unwrap());
    }
    let failed = hostile.replace("GET /api/x?q=1", "GET /dead/x");
    let (raw, _) = raw_exchange(gw.data_addr, failed.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&raw), 502, "{raw}");
    through(&gw, PLAIN).await;
    plain(&heads.lock().unwrap().last().cloned().unwrap());
    drop(dead_socket);
    gw.stop().await;
}
