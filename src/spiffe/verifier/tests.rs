use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::clock::FakeClock;
use crate::devcert::DevCa;
use crate::spiffe::testing::{at, store_with, TestCa};

type ClientCert = Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>;

/// Run a handshake (and one byte each way); returns the client chain the server saw, or the
/// server's error.
async fn handshake(
    store: TrustStore,
    client: ClientCert,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<usize, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let dev = DevCa::new("test server CA").unwrap();
    let issued = dev.server(&["localhost"]).unwrap();
    let chain: Vec<_> =
        rustls_pki_types::CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let clock = Arc::new(FakeClock::new(at(2030, 6, 1)));
    let verifier = SpiffeClientVerifier::new(Arc::new(store), clock);
    assert!(!verifier.client_auth_mandatory());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(dev.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let client_cfg = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let (c_io, s_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let name = ServerName::try_from("localhost").unwrap();
    let client_task = tokio::spawn(async move {
        let mut s = connector.connect(name, c_io).await.ok()?;
        s.write_all(b"x").await.ok()?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.ok()
    });
    let result = match acceptor.accept(s_io).await {
        Ok(mut s) => {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            s.write_all(b"y").await.map_err(|e| e.to_string())?;
            Ok(s.get_ref().1.peer_certificates().map_or(0, |c| c.len()))
        }
        Err(e) => Err(e.to_string()),
    };
    let _ = client_task.await;
    result
}

#[tokio::test]
async fn handshakes() {
    let ca = TestCa::new("corp.example");
    let other = TestCa::new("other.example");
    let mid = ca.intermediate("corp.example");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let store = || store_with(&[&ca, &other], &[]);
        // No certificate: accepted (routes decide).
        assert_eq!(handshake(store(), None, version).await, Ok(0));
        // A valid SVID, directly and through an intermediate.
        let good = ca.leaf_and_key("spiffe://corp.example/a", |_| {});
        assert_eq!(handshake(store(), Some(good), version).await, Ok(1));
        let via_mid = mid.leaf_and_key("spiffe://corp.example/b", |_| {});
        assert_eq!(handshake(store(), Some(via_mid), version).await, Ok(2));
        // Another trust domain's CA claiming corp.example: the handshake fails.
        let forged = other.leaf_and_key("spiffe://corp.example/a", |_| {});
        assert!(handshake(store(), Some(forged), version).await.is_err());
        // Expired at the clock's time.
        let old = ca.leaf_and_key("spiffe://corp.example/a", |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        assert!(handshake(store(), Some(old), version).await.is_err());
        // Not an SVID (no URI SAN).
        let plain = ca.leaf_and_key("spiffe://corp.example/a", |p| {
            p.subject_alt_names.clear();
        });
        assert!(handshake(store(), Some(plain), version).await.is_err());
    }
}

#[test]
fn offers_client_auth_only_with_x509_authorities() {
    let clock = Arc::new(FakeClock::new(at(2030, 6, 1)));
    let empty = SpiffeClientVerifier::new(Arc::new(TrustStore::empty()), clock.clone());
    assert!(!empty.offer_client_auth());
    let ca = TestCa::new("corp.example");
    let some = SpiffeClientVerifier::new(Arc::new(store_with(&[&ca], &[])), clock);
    assert!(some.offer_client_auth());
    assert!(some.root_hint_subjects().is_empty());
}
