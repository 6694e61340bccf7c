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

use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, UnixTime};
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
    /// The leaf's SPIFFE ID. (The leaf's thumbprint and expiry, which the request path needs,
    /// are worked out once per connection by `conn::TlsInfo`, not at each verification.)
    pub id: SpiffeId,
}

/// The SPIFFE checks on the leaf alone (1–3 above); returns the ID.
pub(crate) fn check_leaf(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
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
    Ok(id)
}

pub(crate) fn unix_time(now: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// Validate a leaf and the intermediates the peer sent against `store` at `now`.
pub fn verify(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    store: &TrustStore,
    now: SystemTime,
) -> Result<VerifiedSvid, SvidError> {
    let id = check_leaf(leaf)?;
    let bundle = store
        .x509(id.trust_domain())
        .ok_or_else(|| SvidError::UnknownTrustDomain(id.trust_domain().to_owned()))?;
    bundle
        .verifier()
        .verify_client_cert(leaf, intermediates, unix_time(now))
        .map_err(SvidError::Path)?;
    Ok(VerifiedSvid { id })
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
mod tests;
