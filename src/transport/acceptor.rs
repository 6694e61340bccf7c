//! TLS acceptors for the listeners: the data listener's (client certificates requested and
//! verified as X.509-SVIDs when a trust bundle has X.509 authorities) and the admin listener's
//! (HTTP/1.1 only, client certificates always requested).

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use tokio_rustls::TlsAcceptor;

use rustls::server::ResolvesServerCert;

use super::tls::server_config;
use crate::clock::Clock;
use crate::spiffe::store::TrustStore;
use crate::spiffe::SpiffeClientVerifier;

/// The data listener's acceptor for `cert`.
pub fn data_acceptor(
    cert: Arc<dyn ResolvesServerCert>,
    trust: &Arc<TrustStore>,
    clock: &Arc<dyn Clock>,
) -> Result<TlsAcceptor, rustls::Error> {
    let client_auth: Option<Arc<dyn ClientCertVerifier>> = if trust.has_x509() {
        Some(Arc::new(SpiffeClientVerifier::new(
            trust.clone(),
            clock.clone(),
        )))
    } else {
        None
    };
    Ok(TlsAcceptor::from(Arc::new(server_config(
        cert,
        client_auth,
    )?)))
}

/// The admin listener's acceptor for `cert`: client certificates are requested (probes and
/// scrapes come without one) and, when presented, verified as X.509-SVIDs at the handshake.
pub fn admin_acceptor(
    cert: Arc<dyn ResolvesServerCert>,
    trust: &Arc<TrustStore>,
    clock: &Arc<dyn Clock>,
) -> Result<TlsAcceptor, rustls::Error> {
    let verifier: Arc<dyn ClientCertVerifier> =
        Arc::new(SpiffeClientVerifier::new(trust.clone(), clock.clone()));
    let mut sc = server_config(cert, Some(verifier))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(sc)))
}
