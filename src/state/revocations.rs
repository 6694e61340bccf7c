//! The in-memory revocation set read on every request: an immutable snapshot swapped as a whole
//! when an operator revokes or un-revokes (rare), so the per-request check is an atomic load and
//! at most three hash lookups, with no lock and no allocation.

use std::collections::{HashMap, HashSet};

use super::{Revocation, Target};
use crate::identity::Credential;
use crate::problem::{Code, Refusal};

/// A snapshot of every revocation, indexed for lookup.
#[derive(Debug, Default, Clone)]
pub struct RevocationSet {
    identities: HashSet<String>,
    /// credential name → principals.
    credentials: HashMap<String, HashSet<String>>,
    jtis: HashSet<String>,
}

impl RevocationSet {
    /// Index `revocations`.
    pub fn new<'a>(revocations: impl IntoIterator<Item = &'a Revocation>) -> Self {
        let mut set = RevocationSet::default();
        for r in revocations {
            match &r.target {
                Target::Identity(i) => {
                    set.identities.insert(i.clone());
                }
                Target::Credential { name, principal } => {
                    set.credentials
                        .entry(name.clone())
                        .or_default()
                        .insert(principal.clone());
                }
                Target::Jti(j) => {
                    set.jtis.insert(j.clone());
                }
            }
        }
        set
    }

    /// Nothing revoked.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.credentials.is_empty() && self.jtis.is_empty()
    }

    /// Whether any of the caller's handles is revoked.
    pub fn contains(
        &self,
        identity: &str,
        credential: &str,
        principal: Option<&str>,
        jti: Option<&str>,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        self.identities.contains(identity)
            || principal.is_some_and(|p| {
                self.credentials
                    .get(credential)
                    .is_some_and(|ps| ps.contains(p))
            })
            || jti.is_some_and(|j| self.jtis.contains(j))
    }
}

/// Whether an authenticated caller may go on: refused when revoked (by identity,
/// `credential:principal` or the presented token's `jti`, and for a token the gateway issued, by
/// anything in its lineage: see [`crate::authn::lineage`]), and 503 while a shared state backend
/// cannot vouch for its revocation set (it may be missing one made on another replica: fail
/// closed). Used by the routes and by the token endpoint.
pub fn admit(state: &dyn super::StateStore, cred: &Credential) -> Result<(), Refusal> {
    if !state.available() {
        return Err(Refusal::new(
            Code::DirectoryUnavailable,
            "the gateway's state backend is unreachable; try again shortly",
        )
        .retry_after(5));
    }
    if state.is_revoked(
        &cred.identity,
        &cred.name,
        cred.principal.as_deref(),
        cred.jti.as_deref(),
    ) || cred
        .lineage
        .as_deref()
        .is_some_and(|l| l.revoked(state, &cred.identity))
    {
        return Err(Refusal::new(
            Code::InvalidCredential,
            "this credential has been revoked",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
