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
mod tests;
