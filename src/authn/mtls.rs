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
mod tests;
