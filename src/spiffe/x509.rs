//! X.509-SVID validation (`spiffe/standards/X509-SVID.md`).
//!
//! A chain (leaf first, then any intermediates, DER) is an X.509-SVID of `spiffe://td/…` when:
//!
//! 1. the leaf has exactly one URI SAN, and it is a valid SPIFFE ID with a non-root path (§2,
//!    §3.1, §5.2); other SAN types are allowed;
//! 2. the leaf is not a CA: basicConstraints absent or `cA = false` (§4.1, §5.2);
//! 3. the leaf has a key usage extension with `digitalSignature` and without `keyCertSign` or
//!    `cRLSign` (§4.3, §5.2);
//! 4. the chain verifies (RFC 5280 path validation by webpki through rustls: signatures, validity
//!    at the caller's `now`, CA constraints, and `clientAuth` if the leaf has an extended key
//!    usage) against the X.509 authorities of **the ID's own trust domain only**. A CA trusted
//!    for another trust domain cannot mint IDs for this one (the rule Envoy's SPIFFE validator
//!    and go-spiffe follow).
//!
//! Known limit: webpki refuses URI name constraints (X509-SVID §4.2 allows CAs to use them, and
//! notes that many libraries fail closed the same way).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

use super::store::TrustStore;
use crate::identity::{IdError, SpiffeId};

/// Why a chain is not an acceptable X.509-SVID.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SvidError {
    #[error("no certificate presented")]
    Empty,
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("the leaf must have exactly one URI SAN, it has {0}")]
    UriSanCount(usize),
    #[error("the URI SAN is not a SPIFFE ID: {0}")]
    BadId(IdError),
    #[error("the SPIFFE ID of a leaf must have a path")]
    RootId,
    #[error("the leaf is a CA certificate")]
    LeafIsCa,
    #[error("the leaf has no key usage extension")]
    NoKeyUsage,
    #[error("the leaf's key usage lacks digitalSignature")]
    NoDigitalSignature,
    #[error("the leaf's key usage allows signing certificates or CRLs")]
    SigningUsage,
    #[error("trust domain {0:?} has no X.509 authorities")]
    UnknownTrustDomain(String),
    #[error("chain does not verify: {0}")]
    Path(rustls::Error),
}

/// A chain that checked out.
#[derive(Debug, Clone)]
pub struct VerifiedSvid {
    /// The leaf's SPIFFE ID.
    pub id: SpiffeId,
    /// SHA-256 of the leaf's DER.
    pub leaf_sha256: [u8; 32],
    /// When the leaf expires.
    pub not_after: SystemTime,
}

impl VerifiedSvid {
    /// The `x5t#S256` thumbprint of the leaf (RFC 8705 §3.1): base64url, no padding.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.leaf_sha256)
    }
}

/// The `x5t#S256` thumbprint of a chain's leaf (for `cnf` in minted tokens), if there is a leaf.
pub fn leaf_thumbprint(chain: &[CertificateDer<'_>]) -> Option<String> {
    let leaf = chain.first()?;
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(leaf.as_ref())))
}

/// The SPIFFE checks on the leaf alone (1–3 above); returns the ID and notAfter.
fn check_leaf(leaf: &CertificateDer<'_>) -> Result<(SpiffeId, SystemTime), SvidError> {
    let malformed = |e: &dyn std::fmt::Display| SvidError::Malformed(e.to_string());
    let (rest, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| malformed(&e))?;
    if !rest.is_empty() {
        return Err(SvidError::Malformed("trailing data".into()));
    }
    let san = cert.subject_alternative_name().map_err(|e| malformed(&e))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(SvidError::UriSanCount(uris.len()));
    };
    let id = SpiffeId::parse(uri).map_err(SvidError::BadId)?;
    if id.is_root() {
        return Err(SvidError::RootId);
    }
    let bc = cert.basic_constraints().map_err(|e| malformed(&e))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(SvidError::LeafIsCa);
    }
    let ku = cert
        .key_usage()
        .map_err(|e| malformed(&e))?
        .ok_or(SvidError::NoKeyUsage)?;
    if !ku.value.digital_signature() {
        return Err(SvidError::NoDigitalSignature);
    }
    if ku.value.key_cert_sign() || ku.value.crl_sign() {
        return Err(SvidError::SigningUsage);
    }
    let not_after = u64::try_from(cert.validity().not_after.timestamp())
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .unwrap_or(UNIX_EPOCH);
    Ok((id, not_after))
}

fn unix_time(now: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// Validate a leaf and the intermediates the peer sent against `store` at `now`.
pub fn verify(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    store: &TrustStore,
    now: SystemTime,
) -> Result<VerifiedSvid, SvidError> {
    let (id, not_after) = check_leaf(leaf)?;
    let bundle = store
        .x509(id.trust_domain())
        .ok_or_else(|| SvidError::UnknownTrustDomain(id.trust_domain().to_owned()))?;
    bundle
        .verifier()
        .verify_client_cert(leaf, intermediates, unix_time(now))
        .map_err(SvidError::Path)?;
    Ok(VerifiedSvid {
        id,
        leaf_sha256: Sha256::digest(leaf.as_ref()).into(),
        not_after,
    })
}

/// Validate a chain, leaf first.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    store: &TrustStore,
    now: SystemTime,
) -> Result<VerifiedSvid, SvidError> {
    let (leaf, intermediates) = chain.split_first().ok_or(SvidError::Empty)?;
    verify(leaf, intermediates, store, now)
}

#[cfg(test)]
mod tests {
    use rcgen::{IsCa, KeyUsagePurpose, SanType};
    use rustls::{CertificateError, Error};

    use super::*;
    use crate::spiffe::testing::{at, store_with, TestCa};

    fn store(cas: &[&TestCa]) -> TrustStore {
        store_with(cas, &[])
    }

    const NOW: (i32, u8, u8) = (2030, 6, 1);

    fn now() -> SystemTime {
        at(NOW.0, NOW.1, NOW.2)
    }

    #[test]
    fn valid_svid_accepted() {
        let ca = TestCa::new("corp.example");
        let chain = ca.leaf("spiffe://corp.example/ns/pay/sa/api");
        let v = verify_chain(&chain, &store(&[&ca]), now()).unwrap();
        assert_eq!(v.id.as_str(), "spiffe://corp.example/ns/pay/sa/api");
        assert_eq!(v.not_after, at(2031, 1, 1));
        assert_eq!(Some(v.thumbprint()), leaf_thumbprint(&chain));
        assert_eq!(v.thumbprint().len(), 43);
    }

    #[test]
    fn intermediate_chain_accepted() {
        let root = TestCa::new("corp.example");
        let mid = root.intermediate("corp.example");
        let chain = mid.leaf("spiffe://corp.example/svc");
        assert_eq!(chain.len(), 2);
        let v = verify_chain(&chain, &store(&[&root]), now()).unwrap();
        assert_eq!(v.id.as_str(), "spiffe://corp.example/svc");
        // Without the intermediate the path cannot be built.
        let leaf_only = &chain[..1];
        assert!(matches!(
            verify_chain(leaf_only, &store(&[&root]), now()),
            Err(SvidError::Path(_))
        ));
    }

    #[test]
    fn leaf_that_is_a_ca_refused() {
        let ca = TestCa::new("corp.example");
        let chain = ca.leaf_with("spiffe://corp.example/x", |p| {
            p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        });
        let err = verify_chain(&chain, &store(&[&ca]), now()).unwrap_err();
        assert!(matches!(err, SvidError::LeafIsCa), "{err}");
    }

    #[test]
    fn uri_san_count_and_validity() {
        let ca = TestCa::new("corp.example");
        let s = store(&[&ca]);
        let two = ca.leaf_with("spiffe://corp.example/a", |p| {
            p.subject_alt_names
                .push(SanType::URI("spiffe://corp.example/b".try_into().unwrap()));
        });
        assert!(matches!(
            verify_chain(&two, &s, now()),
            Err(SvidError::UriSanCount(2))
        ));
        let none = ca.leaf_with("spiffe://corp.example/a", |p| {
            p.subject_alt_names = vec![SanType::DnsName("svc.corp.example".try_into().unwrap())];
        });
        assert!(matches!(
            verify_chain(&none, &s, now()),
            Err(SvidError::UriSanCount(0))
        ));
        let bad = ca.leaf("spiffe://Corp.example/a");
        assert!(matches!(
            verify_chain(&bad, &s, now()),
            Err(SvidError::BadId(_))
        ));
        let https = ca.leaf("https://corp.example/a");
        assert!(matches!(
            verify_chain(&https, &s, now()),
            Err(SvidError::BadId(_))
        ));
        let root = ca.leaf("spiffe://corp.example");
        assert!(matches!(
            verify_chain(&root, &s, now()),
            Err(SvidError::RootId)
        ));
        // A DNS SAN next to the one URI SAN is fine.
        let dns = ca.leaf_with("spiffe://corp.example/a", |p| {
            p.subject_alt_names
                .push(SanType::DnsName("a.corp.example".try_into().unwrap()));
        });
        assert!(verify_chain(&dns, &s, now()).is_ok());
    }

    #[test]
    fn other_trust_domains_ca_cannot_mint_ids() {
        let a = TestCa::new("a.example");
        let b = TestCa::new("b.example");
        let s = store(&[&a, &b]);
        // Claims td A, signed by td B's CA (which the store trusts, for td B).
        let forged = b.leaf("spiffe://a.example/admin");
        let err = verify_chain(&forged, &s, now()).unwrap_err();
        assert!(
            matches!(
                err,
                SvidError::Path(Error::InvalidCertificate(CertificateError::UnknownIssuer))
            ),
            "{err:?}"
        );
        assert!(verify_chain(&b.leaf("spiffe://b.example/x"), &s, now()).is_ok());
        // A trust domain the store does not know.
        let c = b.leaf("spiffe://c.example/x");
        assert!(matches!(
            verify_chain(&c, &s, now()),
            Err(SvidError::UnknownTrustDomain(_))
        ));
    }

    #[test]
    fn validity_window_uses_now() {
        let ca = TestCa::new("corp.example");
        let chain = ca.leaf("spiffe://corp.example/a");
        let s = store(&[&ca]);
        let expired = verify_chain(&chain, &s, at(2031, 6, 1)).unwrap_err();
        assert!(
            matches!(
                expired,
                SvidError::Path(Error::InvalidCertificate(
                    CertificateError::ExpiredContext { .. }
                ))
            ),
            "{expired:?}"
        );
        let early = verify_chain(&chain, &s, at(2029, 6, 1)).unwrap_err();
        assert!(
            matches!(
                early,
                SvidError::Path(Error::InvalidCertificate(
                    CertificateError::NotValidYetContext { .. }
                ))
            ),
            "{early:?}"
        );
    }

    #[test]
    fn key_usage_rules() {
        let ca = TestCa::new("corp.example");
        let s = store(&[&ca]);
        let cert_sign = ca.leaf_with("spiffe://corp.example/a", |p| {
            p.key_usages.push(KeyUsagePurpose::KeyCertSign);
        });
        assert!(matches!(
            verify_chain(&cert_sign, &s, now()),
            Err(SvidError::SigningUsage)
        ));
        let crl_sign = ca.leaf_with("spiffe://corp.example/a", |p| {
            p.key_usages.push(KeyUsagePurpose::CrlSign);
        });
        assert!(matches!(
            verify_chain(&crl_sign, &s, now()),
            Err(SvidError::SigningUsage)
        ));
        let none = ca.leaf_with("spiffe://corp.example/a", |p| p.key_usages.clear());
        assert!(matches!(
            verify_chain(&none, &s, now()),
            Err(SvidError::NoKeyUsage)
        ));
        let no_ds = ca.leaf_with("spiffe://corp.example/a", |p| {
            p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        });
        assert!(matches!(
            verify_chain(&no_ds, &s, now()),
            Err(SvidError::NoDigitalSignature)
        ));
    }

    #[test]
    fn server_only_eku_refused_for_clients() {
        let ca = TestCa::new("corp.example");
        let chain = ca.leaf_with("spiffe://corp.example/a", |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        });
        assert!(matches!(
            verify_chain(&chain, &store(&[&ca]), now()),
            Err(SvidError::Path(_))
        ));
    }

    #[test]
    fn garbage_and_empty() {
        let s = store(&[]);
        assert!(matches!(
            verify_chain(&[], &s, now()),
            Err(SvidError::Empty)
        ));
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            verify_chain(&[junk], &s, now()),
            Err(SvidError::Malformed(_))
        ));
        assert_eq!(leaf_thumbprint(&[]), None);
    }
}
