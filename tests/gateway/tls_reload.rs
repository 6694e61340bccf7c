//! The listener certificate is replaced on disk while a client keeps a connection open: new
//! connections get the new certificate, the open one keeps working. A broken replacement keeps
//! the previous certificate.

use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::support::*;

type Sender = hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>;

/// Open a TLS connection; returns the server's leaf certificate and an HTTP/1.1 sender on it.
async fn connect(pki: &Pki, addr: std::net::SocketAddr) -> (Vec<u8>, Sender) {
    let mut cfg = pki.client_config();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    (leaf, sender)
}

async fn get(sender: &mut Sender, path: &str) -> u16 {
    sender.ready().await.unwrap();
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

async fn wait_for_cert(pki: &Pki, addr: std::net::SocketAddr, want: &[u8]) -> bool {
    for _ in 0..50 {
        let (leaf, _) = connect(pki, addr).await;
        if leaf == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn certificate_is_reloaded_without_dropping_open_connections() {
    let pki = Pki::new();
    let first = std::fs::read_to_string(pki.path("gateway.pem")).unwrap();
    let first_der = rustls_pki_types::CertificateDer::pem_slice_iter(first.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec();
    let up = Upstream::start().await;
    let toml = base_config(
        pki.dir.path(),
        "header_timeout = \"30s\"",
        &pki.tls_section(),
        &route("api", "/api", &up.url(), ""),
    );
    let gw = start_in_process(pki.dir.path(), &toml).await;

    let (leaf, mut old_conn) = connect(&pki, gw.data_addr).await;
    assert_eq!(leaf, first_der);
    assert_eq!(get(&mut old_conn, "/api/1").await, 200);

    // Replace the pair on disk.
    let second_der = pki.write_server_cert("gateway");
    assert_ne!(second_der, first_der);
    assert!(
        wait_for_cert(&pki, gw.data_addr, &second_der).await,
        "new connections never saw the new certificate"
    );

    // The connection opened before the swap still works.
    assert_eq!(get(&mut old_conn, "/api/2").await, 200);

    // A broken replacement (key that does not match) keeps the current certificate.
    let other = pki.ca.server(&["localhost"]).unwrap();
    std::fs::write(pki.path("gateway.key"), other.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (leaf, mut c) = connect(&pki, gw.data_addr).await;
    assert_eq!(leaf, second_der);
    assert_eq!(get(&mut c, "/api/3").await, 200);
    let metrics = scrape(&gw).await;
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"error\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_cert_expiry_seconds{file="),
        "{metrics}"
    );
    gw.stop().await;
}
