//! The data listener's client certificate verifier.
//!
//! Client certificates are *offered* (whenever some trust domain has X.509 authorities) but not
//! *required*: routes decide whether they need one (the `mtls` credential), and callers of other
//! routes need not have a certificate at all.
//!
//! A client that presents a certificate must present a valid X.509-SVID, or the handshake fails.
//! Letting an invalid chain through and refusing later, per route, was the alternative; it was
//! rejected because (a) a caller whose identity document is wrong has a broken deployment that
//! should fail loudly and early, not silently fall back to a weaker credential on some routes;
//! (b) the proof of possession that TLS gives (the CertificateVerify signature) is only worth
//! something when the chain it binds is one we trust; and (c) nothing unverified then reaches
//! `ConnInfo`, so no later stage can mistake a presented chain for a verified one. The `mtls`
//! authenticator still re-validates per request (the connection may outlive the leaf, or a
//! bundle may have changed).
//!
//! Time comes from the gateway's [`Clock`], not rustls', so the handshake and the per-request
//! checks agree (and tests can move time).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};

use super::store::TrustStore;
use super::x509::{self, SvidError};
use crate::clock::Clock;

/// Verifies client X.509-SVIDs against the trust store, per the client's own trust domain.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    store: Arc<TrustStore>,
    clock: Arc<dyn Clock>,
    algs: WebPkiSupportedAlgorithms,
}

impl SpiffeClientVerifier {
    /// A verifier reading the current bundles of `store`, at the time `clock` tells.
    pub fn new(store: Arc<TrustStore>, clock: Arc<dyn Clock>) -> Self {
        let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        SpiffeClientVerifier { store, clock, algs }
    }
}

fn to_rustls(e: SvidError) -> rustls::Error {
    match e {
        SvidError::Path(e) => e,
        SvidError::Malformed(_) => rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        other => {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(other))))
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.store.has_x509()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client with a certificate sends it, whichever CA issued it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match x509::verify(end_entity, intermediates, &self.store, self.clock.now()) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(e) => {
                tracing::debug!(error = %e, "client certificate refused at the handshake");
                Err(to_rustls(e))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
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
        let key =
            rustls_pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
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
}
