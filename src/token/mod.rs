//! The token issuer (`docs/tokens.md`): the short-lived tokens the gateway signs for upstreams.
//!
//! - [`keys`]: one signing key (ES256 or EdDSA, PKCS#8 PEM), its RFC 7638 `kid` and public JWK;
//!   [`keygen`]: `portcullis keys generate`.
//! - [`keyset`]: the ordered keys of `[issuer] keys` (first signs, all are published), reloaded
//!   when their files change.
//! - [`jwks`]: `/.well-known/jwks.json` and `/.well-known/openid-configuration`, pre-rendered, and
//!   the key rotation procedure.
//! - [`mint`]: the [`Issuer`] and the claims of both token profiles.
//! - [`cache`]: minted tokens reused per caller until shortly before they expire.
//! - [`inspect`]: `portcullis token inspect`, verification against a JWKS document.
//!
//! Tokens are signed here with aws-lc-rs directly (the JWS is assembled by hand from pre-encoded
//! headers); `jsonwebtoken` is used only to verify, as any relying party would.

pub mod agent;
pub mod cache;
pub mod inspect;
pub mod jwks;
pub mod keygen;
pub mod keys;
pub mod keyset;
pub mod mint;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use cache::{Issued, TokenCache};
pub use keys::{Alg, KeyError, SigningKey};
pub use keyset::{KeyRing, KeySet, SignerRequirement};
pub use mint::{Issuer, IssuerError, Legacy, MintRequest, Minted};

/// Make `jsonwebtoken` use aws-lc-rs (the crate's one crypto provider). Idempotent: call it
/// before any `jsonwebtoken` verification; a provider already installed is kept.
pub fn install_jwt_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
