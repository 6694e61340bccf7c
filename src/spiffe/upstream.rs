//! Verifying an upstream by its SPIFFE ID (`[routes.upstream] server_spiffe_id`), the way
//! Envoy's SPIFFE certificate validator and go-spiffe's `tlsconfig.AuthorizeID` do: the upstream
//! must present an X.509-SVID whose chain verifies against **the expected ID's own trust
//! domain's** bundle (from the `[trust]` files or the Workload API, current at each handshake),
//! and whose URI SAN is exactly that ID. There is no host name check: an SVID names a workload,
//! not a DNS name, and upstreams are often reached by IP or an internal alias.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError};

use super::store::TrustStore;
use super::x509::{check_leaf, unix_time, SvidError};
use crate::clock::Clock;
use crate::identity::SpiffeId;

/// Why an upstream's certificate was refused; found again in the connection error's sources
/// (see [`identity_failure`]), so the audit line can say why the request got a 502.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamIdError {
    #[error("the upstream presented {got}, not the expected {expected}")]
    WrongId { expected: String, got: String },
    #[error("the upstream's certificate is not an X.509-SVID: {0}")]
    NotSvid(SvidError),
    #[error("no X.509 bundle for trust domain {0:?}")]
    NoBundle(String),
    #[error("the upstream's SVID does not verify against its trust domain's bundle: {0}")]
    Chain(rustls::Error),
}

impl UpstreamIdError {
    /// A short, stable reason for audit lines.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamIdError::WrongId { .. } => "upstream-spiffe-id-mismatch",
            UpstreamIdError::NotSvid(_) => "upstream-not-svid",
            UpstreamIdError::NoBundle(_) => "upstream-no-bundle",
            UpstreamIdError::Chain(_) => "upstream-untrusted",
        }
    }
}

/// A rustls server certificate verifier that accepts exactly one SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    expected: SpiffeId,
    store: Arc<TrustStore>,
    clock: Arc<dyn Clock>,
    algs: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// Accept only `expected`, verified against `store` at the time `clock` tells.
    pub fn new(expected: SpiffeId, store: Arc<TrustStore>, clock: Arc<dyn Clock>) -> Self {
        let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        SpiffeServerVerifier {
            expected,
            store,
            clock,
            algs,
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), UpstreamIdError> {
        let id = check_leaf(end_entity).map_err(UpstreamIdError::NotSvid)?;
        if id != self.expected {
            return Err(UpstreamIdError::WrongId {
                expected: self.expected.to_string(),
                got: id.to_string(),
            });
        }
        let td = self.expected.trust_domain();
        let bundle = self
            .store
            .x509(td)
            .ok_or_else(|| UpstreamIdError::NoBundle(td.to_owned()))?;
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)
            .map_err(UpstreamIdError::Chain)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            bundle.root_store(),
            intermediates,
            unix_time(self.clock.now()),
            self.algs.all,
        )
        .map_err(UpstreamIdError::Chain)
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                tracing::warn!(expected = %self.expected, error = %e, "upstream refused at the handshake");
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(e)),
                )))
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

/// The upstream identity failure somewhere in an error's sources, if that is what failed.
/// `io::Error` hides its inner error from `source()` (and connectors wrap one `io::Error` in
/// another), so each is opened explicitly.
pub fn identity_failure<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a UpstreamIdError> {
    let mut cur = Some(err);
    let mut depth = 0;
    while let Some(e) = cur {
        if let Some(found) = from_rustls(e) {
            return Some(found);
        }
        depth += 1;
        if depth > 16 {
            return None;
        }
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn from_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a UpstreamIdError> {
    match e.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(o))) => {
            o.downcast_ref::<UpstreamIdError>()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
