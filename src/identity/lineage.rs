//! Lineage: what a token the gateway minted or exchanged stands for. A token presented back to
//! the gateway is only as good as the credential it was first traded for (its *root*): every
//! check that would finish the root finishes the token too (`docs/security.md`, "Tokens and
//! lineage").
//!
//! - revocation: the root credential (`credential:principal`), the identity, the root `jti` and
//!   every `jti` along the chain (`Lineage::revoked`, in `crate::state`, called by `state::admit`);
//! - migration: a plan's treatment of the root credential (`crate::migration::lineage`), so a key retired in
//!   `enforce` is not let in again as a token it was exchanged for;
//! - `cnf`: the certificate the root was bound to must be on the connection (checked when the
//!   token is verified, `crate::authn::jwt_svid`), and every token minted from it stays bound;
//! - time: a token minted for it never outlives it ([`Lineage::not_after`]).

use std::sync::Arc;

use super::{Credential, Kind};

/// Longest chain of tokens (root `jti` included) a token may descend from: each exchange adds one
/// `jti` to the token, so an endless chain would grow tokens without bound.
pub const MAX_CHAIN: usize = 16;

/// The root credential and chain behind a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The root credential's config name.
    pub credential: Arc<str>,
    /// Its kind.
    pub kind: Kind,
    /// Its legacy user or key id.
    pub principal: Option<String>,
    /// Root `jti` first, then every later token's, the presented token's own last.
    pub jtis: Vec<Arc<str>>,
    /// `x5t#S256` the tokens are bound to (already proven on this connection).
    pub cnf: Option<Arc<str>>,
    /// The presented token's `exp` (whole seconds): nothing minted from it may outlive it.
    pub not_after: Option<u64>,
}

impl Kind {
    /// The kind named as in config and `amr` (`api-key`, `mtls`…).
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Mtls,
            Kind::JwtSvid,
            Kind::Ldap,
            Kind::ApiKey,
            Kind::Webhook,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The lineage a token minted for `cred` continues: the one it presented, or one rooted in it.
pub fn root_of(cred: &Credential) -> Lineage {
    match cred.lineage.as_deref() {
        Some(l) => l.clone(),
        None => Lineage {
            credential: cred.name.clone(),
            kind: cred.kind,
            principal: cred.principal.clone(),
            jtis: cred.jti.iter().cloned().collect(),
            cnf: None,
            not_after: None,
        },
    }
}

/// The credential a route that takes gateway tokens (through `accepted_as`, a `jwt-svid`
/// credential with `trust_issuer`) would see when `cred`'s exchanged token is presented there.
pub fn as_presented(cred: &Credential, accepted_as: &Arc<str>) -> Credential {
    Credential {
        name: accepted_as.clone(),
        kind: Kind::JwtSvid,
        identity: cred.identity.clone(),
        principal: None,
        groups: Vec::new(),
        jti: None,
        lineage: Some(Arc::new(root_of(cred))),
    }
}
