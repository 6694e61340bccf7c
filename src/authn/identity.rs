//! Mapping a legacy principal (an LDAP user, an API key id) to a SPIFFE ID with a template such as
//! `spiffe://corp.example/legacy/racf/{user}`.
//!
//! The principal is untrusted text typed by a caller, and the ID it yields is what authorization
//! policy compares as a string. So the substituted value is held to stricter rules than the
//! SPIFFE path grammar alone: after lower-casing it must be one non-empty path segment of
//! `[a-z0-9._-]`, not `.` or `..`, at most [`MAX_PRINCIPAL_LEN`] bytes. A principal that would
//! need escaping (`/`, `%`, `@`, `#`, `$`, a space, non-ASCII) is refused rather than encoded:
//! an encoding could make two principals name the same workload, and a refusal is visible.
//! (RACF ids may contain the national characters `#$@`; such users cannot be mapped and are
//! refused with a clear message — give them a plain id or a workload identity.)

use std::fmt;

use crate::identity::{IdError, SpiffeId};

/// The placeholder replaced by the principal.
pub const PLACEHOLDER: &str = "{user}";

/// Longest principal accepted in a mapped ID, in bytes.
pub const MAX_PRINCIPAL_LEN: usize = 255;

/// Why a template or a principal cannot make a SPIFFE ID. Never contains the principal (it may
/// be a mistyped password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("identity template must contain {PLACEHOLDER} exactly once")]
    Placeholder,
    #[error("identity template must put {PLACEHOLDER} in the path, after the trust domain")]
    PlaceholderInTrustDomain,
    #[error("identity template is not a SPIFFE ID: {0}")]
    Template(IdError),
    #[error("the principal is empty")]
    Empty,
    #[error("the principal is longer than {MAX_PRINCIPAL_LEN} bytes")]
    TooLong,
    #[error(
        "the principal may only contain letters, digits, '.', '-' and '_' to map to an identity"
    )]
    Chars,
    #[error("the principal must not be '.' or '..'")]
    Dots,
    #[error("the mapped identity is not a valid SPIFFE ID: {0}")]
    Id(IdError),
}

/// A checked identity template.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityTemplate {
    /// Text before and after `{user}`.
    prefix: String,
    suffix: String,
}

impl IdentityTemplate {
    /// Check `template`: a SPIFFE ID with `{user}` exactly once, in its path.
    pub fn parse(template: &str) -> Result<Self, IdentityError> {
        let mut parts = template.split(PLACEHOLDER);
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(IdentityError::Placeholder);
        };
        let td_and_path = prefix.strip_prefix("spiffe://").unwrap_or(prefix);
        if !td_and_path.contains('/') {
            return Err(IdentityError::PlaceholderInTrustDomain);
        }
        // A valid principal is made of path characters; check the template with one.
        SpiffeId::parse(&format!("{prefix}x{suffix}")).map_err(IdentityError::Template)?;
        Ok(IdentityTemplate {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The SPIFFE ID for `principal`, lower-cased (SPIFFE IDs are compared as strings, so
    /// `GWJOB01` and `gwjob01` must not become two identities).
    pub fn map(&self, principal: &str) -> Result<SpiffeId, IdentityError> {
        let value = check_principal(principal)?;
        let mut id = String::with_capacity(self.prefix.len() + value.len() + self.suffix.len());
        id.push_str(&self.prefix);
        id.push_str(&value);
        id.push_str(&self.suffix);
        SpiffeId::parse(&id).map_err(IdentityError::Id)
    }
}

impl IdentityTemplate {
    /// `id` as this template maps it, when it is one of the template's identities with the
    /// principal in another case (`…/racf/JSMITH` → `…/racf/jsmith`); `None` otherwise. For
    /// revocation targets: an operator types the user id as the directory shows it.
    pub fn canonical(&self, id: &str) -> Option<SpiffeId> {
        let principal = id.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        self.map(principal).ok()
    }
}

/// The principal as it goes into the ID: lower-cased, one safe path segment.
fn check_principal(principal: &str) -> Result<String, IdentityError> {
    if principal.is_empty() {
        return Err(IdentityError::Empty);
    }
    if principal.len() > MAX_PRINCIPAL_LEN {
        return Err(IdentityError::TooLong);
    }
    if !principal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(IdentityError::Chars);
    }
    if principal == "." || principal == ".." {
        return Err(IdentityError::Dots);
    }
    Ok(principal.to_ascii_lowercase())
}

impl fmt::Debug for IdentityTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IdentityTemplate({}{PLACEHOLDER}{})",
            self.prefix, self.suffix
        )
    }
}

impl fmt::Display for IdentityTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{PLACEHOLDER}{}", self.prefix, self.suffix)
    }
}

#[cfg(test)]
mod tests;
