//! The in-memory revocation set read on every request: an immutable snapshot swapped as a whole
//! when an operator revokes or un-revokes (rare), so the per-request check is an atomic load and
//! at most three hash lookups, with no lock and no allocation.

use std::collections::{HashMap, HashSet};

use super::{Revocation, Target};

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

#[cfg(test)]
mod tests;
