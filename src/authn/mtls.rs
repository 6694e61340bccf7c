//! `kind = "mtls"`: the caller's X.509-SVID from the TLS handshake.
//!
//! The listener's verifier (`spiffe::verifier`) already refused invalid chains at the handshake;
//! this validates the chain again, because a connection can outlive its leaf certificate and a
//! trust bundle can change under it. A validation costs signature checks (~40–60 µs for P-256,
//! more than the rest of a proxied request), so its result is kept on the connection
//! (`spiffe::svid_cache::SvidCache`, in `conn::ConnInfo::svid`) and reused while the bundle it
//! was checked against is still the current one, every certificate of the presented chain is
//! still within its validity, and for at most `svid_cache::REVALIDATE_EVERY`. On top, the ID's
//! trust domain must be one of this credential's `trust_domains` (checked on every request).
//!
//! No client certificate is `NotPresent`; a certificate that is not acceptable *here* (expired
//! since the handshake, or from a trust domain this credential does not accept) is `Rejected`,
//! and never falls through to a weaker credential.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::HeaderValue;

use crate::authn::{Authenticator, Outcome};
use crate::conn::ConnInfo;
use crate::identity::TrustDomain;
use crate::identity::{Credential, Kind};
use crate::problem::{Code, Refusal};
use crate::spiffe::svid_cache::SvidCache;
use crate::spiffe::{x509, TrustStore};

/// Authenticates callers by their client certificate.
#[derive(Debug)]
pub struct MtlsAuthenticator {
    name: Arc<str>,
    store: Arc<TrustStore>,
    trust_domains: Vec<TrustDomain>,
}

impl MtlsAuthenticator {
    /// The credential `name`, accepting SVIDs of `trust_domains` verified against `store`.
    pub fn new(name: Arc<str>, store: Arc<TrustStore>, trust_domains: Vec<TrustDomain>) -> Self {
        MtlsAuthenticator {
            name,
            store,
            trust_domains,
        }
    }

    fn check(&self, conn: &ConnInfo, now: SystemTime) -> Outcome {
        let chain = match &conn.tls {
            Some(tls) if !tls.client_chain().is_empty() => tls.client_chain(),
            _ => return Outcome::NotPresent,
        };
        let refuse = |why: &dyn std::fmt::Display| {
            tracing::debug!(credential = %self.name, reason = %why, "client certificate refused");
            Outcome::Rejected(Refusal::new(
                Code::InvalidCredential,
                "the client certificate is not an acceptable X.509-SVID",
            ))
        };
        let svid = match conn.svid.get(&self.store, now) {
            Some(svid) => svid,
            None => match x509::verify_chain(chain, &self.store, now) {
                Ok(svid) => {
                    conn.svid.put(chain, &self.store, &svid, now);
                    svid
                }
                Err(e) => return refuse(&e),
            },
        };
        if !self.trust_domains.iter().any(|td| svid.id.is_member_of(td)) {
            return refuse(&format_args!(
                "trust domain {} is not accepted by this credential",
                svid.id.trust_domain()
            ));
        }
        Outcome::Authenticated(Credential {
            name: self.name.clone(),
            kind: Kind::Mtls,
            identity: svid.id.to_string(),
            principal: None,
            groups: Vec::new(),
            jti: None,
            lineage: None,
        })
    }
}

impl Authenticator for MtlsAuthenticator {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Mtls
    }

    fn challenge(&self) -> Option<HeaderValue> {
        // TLS client authentication has no HTTP challenge scheme.
        None
    }

    fn authenticate<'a>(
        &'a self,
        _req: &'a Parts,
        conn: &'a ConnInfo,
        now: SystemTime,
    ) -> BoxFuture<'a, Outcome> {
        let outcome = self.check(conn, now);
        async move { outcome }.boxed()
    }
}

#[cfg(test)]
mod tests;
