//! A connection's last successful client-chain validation (`kind = "mtls"` reuses it across the
//! connection's requests: a validation costs ~40–60 µs of signature checks). It is kept in the
//! connection's memo (`conn::ConnInfo::svid`, a base type that does not know it); `authn::mtls`
//! reads and fills it through [`SvidCache`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::bundle::X509Bundle;
use super::{x509, TrustStore};
use crate::conn::Memo;

/// A cached validation is redone at least this often, so that what the cache cannot see (the
/// trust anchor's own expiry) is noticed within this time.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(60);

/// The last successful validation of a connection's client chain, kept in the connection's
/// [`Memo`].
pub trait SvidCache {
    /// The cached validation of this connection's chain, while it still holds.
    fn get(&self, store: &TrustStore, now: SystemTime) -> Option<x509::VerifiedSvid>;
    /// Remember a successful validation of `chain`.
    fn put(
        &self,
        chain: &[rustls::pki_types::CertificateDer<'_>],
        store: &TrustStore,
        svid: &x509::VerifiedSvid,
        now: SystemTime,
    );
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

impl SvidCache for Memo {
    fn get(&self, store: &TrustStore, now: SystemTime) -> Option<x509::VerifiedSvid> {
        self.read(|v: &Validated| {
            let current = store.x509(v.svid.id.trust_domain())?;
            (Arc::ptr_eq(&current, &v.bundle) && v.from <= now && now < v.until)
                .then(|| v.svid.clone())
        })
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
        self.keep(Validated {
            bundle,
            svid: svid.clone(),
            from: from.max(now),
            until: until.min(now.checked_add(REVALIDATE_EVERY).unwrap_or(now)),
        });
    }
}
