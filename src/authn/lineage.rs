//! Lineage: what a token the gateway minted or exchanged stands for. A token presented back to
//! the gateway is only as good as the credential it was first traded for (its *root*): every
//! check that would finish the root finishes the token too (`docs/security.md`, "Tokens and
//! lineage").
//!
//! - revocation: the root credential (`credential:principal`), the identity, the root `jti` and
//!   every `jti` along the chain ([`Lineage::revoked`], called by `state::admit`);
//! - migration: a plan's treatment of the root credential ([`treatment`]), so a key retired in
//!   `enforce` is not let in again as a token it was exchanged for;
//! - `cnf`: the certificate the root was bound to must be on the connection (checked when the
//!   token is verified, [`super::jwt_svid`]), and every token minted from it stays bound;
//! - time: a token minted for it never outlives it ([`Lineage::not_after`]).

use std::sync::Arc;
use std::time::SystemTime;

use super::{Credential, Kind};
use crate::migration::{self, Plan, Treatment};

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

impl Lineage {
    /// Whether anything in the lineage is revoked. `identity` is the caller's (a token keeps its
    /// root's `sub`, so identity revocation needs nothing more).
    pub fn revoked(&self, state: &dyn crate::state::StateStore, identity: &str) -> bool {
        state.is_revoked(identity, &self.credential, self.principal.as_deref(), None)
            || self
                .jtis
                .iter()
                .any(|j| state.is_revoked(identity, &self.credential, None, Some(j)))
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

/// How strict a treatment is. `observe` relaxes the controls, so it ranks below the full
/// pipeline: a root credential in `observe` never relaxes the token it was exchanged for.
fn severity(t: Treatment) -> u8 {
    match t {
        Treatment::Observe => 0,
        Treatment::Normal => 1,
        Treatment::Bridge => 2,
        Treatment::Refuse => 3,
    }
}

/// The plan's treatment of the caller: the stricter of the presented credential's and its root's,
/// so a retired credential stays retired in whatever token it was exchanged for. The credential
/// to name in a refusal is [`root_name`] when the root decided.
pub fn treatment(plan: Option<&Plan>, cred: &Credential, now: SystemTime) -> Treatment {
    let own = migration::treatment(plan, &cred.name, now);
    let Some(root) = cred.lineage.as_deref() else {
        return own;
    };
    let rooted = migration::treatment(plan, &root.credential, now);
    if severity(rooted) > severity(own) {
        rooted
    } else {
        own
    }
}

/// The credential a retired-refusal names: the root when it is the one the plan retires.
pub fn retired_name<'a>(plan: &Plan, cred: &'a Credential) -> &'a str {
    match cred.lineage.as_deref() {
        Some(l) if plan.retires(&l.credential) => &l.credential,
        _ => &cred.name,
    }
}
