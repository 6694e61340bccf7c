//! SPIFFE workload identity: IDs (`crate::identity::id`, in the base layer), trust bundles per
//! trust domain ([`bundle`], kept current by [`store`]), X.509-SVID and JWT-SVID validation
//! ([`x509`], [`jwt`]) and the rustls client certificate
//! verifier of the data listener ([`verifier`]). The authenticators that use them are
//! `authn::mtls` and `authn::jwt_svid`.
//!
//! Specifications followed (github.com/spiffe/spiffe, `standards/`): SPIFFE-ID.md, X509-SVID.md,
//! JWT-SVID.md, SPIFFE_Trust_Domain_and_Bundle.md. The one rule that matters most: a trust
//! bundle vouches only for IDs of its own trust domain.

pub mod bundle;
pub mod jwt;

mod merge;
pub mod store;
pub mod svid_cache;
pub mod upstream;
pub mod verifier;
pub mod workload;
pub mod x509;

#[cfg(test)]
pub(crate) mod testing;

pub use bundle::{BundleError, JwtBundle, JwtKey, KeyFamily, X509Bundle};
pub use jwt::{JwtSvidError, JwtSvidSettings, JwtSvidValidator};
pub use store::{LoadErrors, StoreError, TrustSource, TrustStore};
pub use verifier::SpiffeClientVerifier;
pub use x509::{SvidError, VerifiedSvid};

/// Select aws-lc-rs as jsonwebtoken's crypto provider (it panics at first use otherwise).
/// Idempotent: a provider installed earlier (by anyone) is kept.
pub fn install_jwt_crypto() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}
