//! Revocation targets in the one spelling authentication produces.
//!
//! A revocation is matched as a string against what authentication reports (the caller's
//! SPIFFE ID, `credential:principal`, a token's `jti`). A target that no caller can ever present
//! — an unknown credential name, a principal in another case, an identity that is not a valid
//! SPIFFE ID — would be stored, listed as in force, and never match: the operator would believe a
//! caller is offboarded while it still gets through. So targets are canonicalized with each
//! credential's own rule, and what cannot match is refused with the reason.

use super::build::Credentials;
use crate::state::Target;

impl Credentials {
    /// `target` as authentication would spell it, or why it can never match a caller.
    pub fn canonical_target(&self, target: Target) -> Result<Target, String> {
        match target {
            Target::Identity(id) => {
                // Each credential that maps principals to identities (LDAP) knows its case.
                let mut names: Vec<_> = self.by_name.keys().collect();
                names.sort();
                let mapped = names
                    .into_iter()
                    .filter_map(|n| self.by_name.get(n))
                    .find_map(|a| a.canonical_identity(&id));
                Ok(Target::Identity(mapped.unwrap_or(id)))
            }
            Target::Credential { name, principal } => {
                let Some(auth) = self.by_name.get(name.as_str()) else {
                    let hint = self
                        .by_name
                        .keys()
                        .find(|n| n.eq_ignore_ascii_case(&name))
                        .map(|n| format!(" (credential names are exact: did you mean {n}?)"))
                        .unwrap_or_default();
                    return Err(format!("no credential named {name:?} is configured{hint}"));
                };
                let principal = auth
                    .canonical_principal(&principal)
                    .map_err(|e| format!("credential {name}: {e}"))?;
                Ok(Target::Credential { name, principal })
            }
            Target::Jti(j) => Ok(Target::Jti(j)),
        }
    }
}
