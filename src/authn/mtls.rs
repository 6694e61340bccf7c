//! `kind = "mtls"`: the caller's X.509-SVID from the TLS handshake.
//!
//! The listener's verifier (`spiffe::verifier`) already refused invalid chains at the handshake;
//! this validates the chain again, because a connection can outlive its leaf certificate and a
//! trust bundle can change under it. A validation costs signature checks (~40–60 µs for P-256,
//! more than the rest of a proxied request), so its result is kept on the connection
//! ([`SvidCache`]) and reused while the bundle it was checked against is still the current one,
//! every certificate of the presented chain is still within its validity, and for at most
//! [`REVALIDATE_EVERY`]. On top, the ID's trust domain must be one of this credential's
//! `trust_domains` (checked on every request).
//!
//! No client certificate is `NotPresent`; a certificate that is not acceptable *here* (expired
//! since the handshake, or from a trust domain this credential does not accept) is `Rejected`,
//! and never falls through to a weaker credential.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::HeaderValue;

use crate::authn::{Authenticator, Outcome};
use crate::identity::TrustDomain;
use crate::identity::{Credential, Kind};
use crate::problem::{Code, Refusal};
use crate::spiffe::bundle::X509Bundle;
use crate::spiffe::{x509, TrustStore};
use crate::transport::ConnInfo;

/// A cached validation is redone at least this often, so that what the cache cannot see (the
/// trust anchor's own expiry) is noticed within this time.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(60);

/// The last successful validation of a connection's client chain.
#[derive(Debug, Default)]
pub struct SvidCache(Mutex<Option<Validated>>);

impl Clone for SvidCache {
    /// A copy starts empty: its first use validates again, which is always correct.
    fn clone(&self) -> Self {
        SvidCache::default()
    }
}

#[derive(Debug)]
struct Validated {
    /// The bundle the chain was checked against (compared by pointer: a reload makes a new one).
    bundle: Arc<X509Bundle>,
    svid: x509::VerifiedSvid,
    /// Reuse only within `[from, until)`: the chain's common validity, capped by
    /// [`REVALIDATE_EVERY`] after the check (and never before it, should the clock step back).
    from: SystemTime,
    until: SystemTime,
}

/// The window in which every certificate of `chain` is valid, if all of them parse.
fn chain_validity(
    chain: &[rustls::pki_types::CertificateDer<'_>],
) -> Option<(SystemTime, SystemTime)> {
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    let mut window: Option<(SystemTime, SystemTime)> = None;
    for der in chain {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let v = cert.validity();
        let (from, until) = (at(v.not_before.timestamp()), at(v.not_after.timestamp()));
        window = Some(match window {
            None => (from, until),
            Some((f, u)) => (f.max(from), u.min(until)),
        });
    }
    window
}

impl SvidCache {
    fn get(&self, store: &TrustStore, now: SystemTime) -> Option<x509::VerifiedSvid> {
        let guard = self.0.lock().ok()?;
        let v = guard.as_ref()?;
        let current = store.x509(v.svid.id.trust_domain())?;
        (Arc::ptr_eq(&current, &v.bundle) && v.from <= now && now < v.until).then(|| v.svid.clone())
    }

    fn put(
        &self,
        chain: &[rustls::pki_types::CertificateDer<'_>],
        store: &TrustStore,
        svid: &x509::VerifiedSvid,
        now: SystemTime,
    ) {
        let (Some(bundle), Some((from, until))) =
            (store.x509(svid.id.trust_domain()), chain_validity(chain))
        else {
            return;
        };
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some(Validated {
                bundle,
                svid: svid.clone(),
                from: from.max(now),
                until: until.min(now.checked_add(REVALIDATE_EVERY).unwrap_or(now)),
            });
        }
    }
}

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

    #[tokio::test]
    async fn validation_is_reused_on_the_connection_only_while_it_still_holds() {
        let corp = TestCa::new("corp.example");
        let store = Arc::new(store_with(&[&corp], &[]));
        let a = MtlsAuthenticator::new(
            "workload-mtls".into(),
            store.clone(),
            vec![TrustDomain::parse("corp.example").unwrap()],
        );
        let c = conn(Some(corp.leaf("spiffe://corp.example/ns/pay")));
        let now = at(2030, 6, 1);
        assert!(c.svid.get(&store, now).is_none());
        assert!(matches!(run(&a, &c, now).await, Outcome::Authenticated(_)));
        // Kept, and only for REVALIDATE_EVERY.
        assert!(c.svid.get(&store, now).is_some());
        assert!(c.svid.get(&store, now + REVALIDATE_EVERY).is_none());
        assert!(c.svid.get(&store, now - Duration::from_secs(1)).is_none());
        // A copy of the connection info starts empty.
        assert!(c.clone().svid.get(&store, now).is_none());

        // The trust bundle replaced by another CA of the same trust domain: the cached validation
        // is not reused, and the chain no longer verifies.
        let rotated = TestCa::new("corp.example");
        let b = authn(store_with(&[&rotated], &[]), &["corp.example"]);
        assert!(matches!(run(&b, &c, now).await, Outcome::Rejected(_)));
        // Past the leaf's notAfter (2031-01-01), even within REVALIDATE_EVERY of a check.
        let edge = at(2030, 12, 31) + Duration::from_secs(86_400 - 30);
        assert!(matches!(run(&a, &c, edge).await, Outcome::Authenticated(_)));
        let after = edge + Duration::from_secs(31);
        assert!(matches!(run(&a, &c, after).await, Outcome::Rejected(_)));
    }
}
