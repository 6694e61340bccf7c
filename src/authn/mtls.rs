//! `kind = "mtls"`: the caller's X.509-SVID from the TLS handshake.
//!
//! The listener's verifier (`spiffe::verifier`) already refused invalid chains at the handshake;
//! this re-validates the chain per request anyway, because a connection can outlive its leaf
//! certificate and a trust bundle can change under it (a verification is a few signature checks).
//! On top, the ID's trust domain must be one of this credential's `trust_domains`.
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

use crate::authn::{Authenticator, Credential, Kind, Outcome};
use crate::problem::{Code, Refusal};
use crate::spiffe::{x509, TrustDomain, TrustStore};
use crate::transport::ConnInfo;

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
            Some(tls) if !tls.client_chain.is_empty() => &tls.client_chain,
            _ => return Outcome::NotPresent,
        };
        let refuse = |why: &dyn std::fmt::Display| {
            tracing::debug!(credential = %self.name, reason = %why, "client certificate refused");
            Outcome::Rejected(Refusal::new(
                Code::InvalidCredential,
                "the client certificate is not an acceptable X.509-SVID",
            ))
        };
        let svid = match x509::verify_chain(chain, &self.store, now) {
            Ok(svid) => svid,
            Err(e) => return refuse(&e),
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
mod tests {
    use rustls::pki_types::CertificateDer;

    use super::*;
    use crate::spiffe::testing::{at, store_with, TestCa};

    fn conn(chain: Option<Vec<CertificateDer<'static>>>) -> ConnInfo {
        ConnInfo::for_tests(chain)
    }

    fn parts() -> Parts {
        http::Request::new(()).into_parts().0
    }

    fn authn(store: TrustStore, tds: &[&str]) -> MtlsAuthenticator {
        let tds = tds.iter().map(|t| TrustDomain::parse(t).unwrap()).collect();
        MtlsAuthenticator::new("workload-mtls".into(), Arc::new(store), tds)
    }

    async fn run(a: &MtlsAuthenticator, c: &ConnInfo, now: SystemTime) -> Outcome {
        a.authenticate(&parts(), c, now).await
    }

    #[tokio::test]
    async fn outcomes() {
        let (corp, other) = (TestCa::new("corp.example"), TestCa::new("other.example"));
        let a = authn(store_with(&[&corp, &other], &[]), &["corp.example"]);
        let now = at(2030, 6, 1);
        assert_eq!(a.kind(), Kind::Mtls);
        assert!(a.challenge().is_none());

        assert!(matches!(
            run(&a, &conn(None), now).await,
            Outcome::NotPresent
        ));
        assert!(matches!(
            run(&a, &conn(Some(vec![])), now).await,
            Outcome::NotPresent
        ));

        let good = conn(Some(corp.leaf("spiffe://corp.example/ns/pay")));
        match run(&a, &good, now).await {
            Outcome::Authenticated(c) => {
                assert_eq!(c.identity, "spiffe://corp.example/ns/pay");
                assert_eq!(c.kind, Kind::Mtls);
                assert_eq!(&*c.name, "workload-mtls");
            }
            other => panic!("{other:?}"),
        }
        // Expired since the handshake.
        let late = run(&a, &good, at(2031, 6, 1)).await;
        assert!(matches!(late, Outcome::Rejected(r) if r.code == Code::InvalidCredential));
        // Valid SVID, but of a trust domain this credential does not accept.
        let foreign = conn(Some(other.leaf("spiffe://other.example/x")));
        assert!(matches!(run(&a, &foreign, now).await, Outcome::Rejected(_)));
        // Signed by the wrong trust domain's CA.
        let forged = conn(Some(other.leaf("spiffe://corp.example/x")));
        assert!(matches!(run(&a, &forged, now).await, Outcome::Rejected(_)));
    }
}
