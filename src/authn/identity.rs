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
mod tests {
    use super::*;

    #[test]
    fn maps_and_lower_cases() {
        let t = IdentityTemplate::parse("spiffe://corp.example/legacy/racf/{user}").unwrap();
        assert_eq!(
            t.map("GWJOB01").unwrap().as_str(),
            "spiffe://corp.example/legacy/racf/gwjob01"
        );
        assert_eq!(
            t.map("j.doe_2-x").unwrap().as_str(),
            "spiffe://corp.example/legacy/racf/j.doe_2-x"
        );
        let mid = IdentityTemplate::parse("spiffe://td/u/{user}/batch").unwrap();
        assert_eq!(mid.map("Bob").unwrap().as_str(), "spiffe://td/u/bob/batch");
        let part = IdentityTemplate::parse("spiffe://td/user-{user}").unwrap();
        assert_eq!(part.map("a").unwrap().as_str(), "spiffe://td/user-a");
        assert_eq!(
            t.to_string(),
            "spiffe://corp.example/legacy/racf/{user}".to_owned()
        );
        let canon = |id: &str| t.canonical(id).map(|i| i.as_str().to_owned());
        assert_eq!(
            canon("spiffe://corp.example/legacy/racf/JSMITH").as_deref(),
            Some("spiffe://corp.example/legacy/racf/jsmith")
        );
        assert_eq!(canon("spiffe://corp.example/legacy/other/JSMITH"), None);
        assert_eq!(canon("spiffe://corp.example/legacy/racf/a/b"), None);
        assert_eq!(canon("spiffe://corp.example/legacy/racf/"), None);
    }

    #[test]
    fn refuses_escaping_principals() {
        let t = IdentityTemplate::parse("spiffe://corp.example/legacy/{user}").unwrap();
        let cases = [
            ("", IdentityError::Empty),
            ("..", IdentityError::Dots),
            (".", IdentityError::Dots),
            ("../admin", IdentityError::Chars),
            ("a/b", IdentityError::Chars),
            ("a%2fb", IdentityError::Chars),
            ("OP$ADM", IdentityError::Chars),
            ("OP#1", IdentityError::Chars),
            ("a@b", IdentityError::Chars),
            ("a b", IdentityError::Chars),
            ("a?x", IdentityError::Chars),
            ("a#f", IdentityError::Chars),
            ("é", IdentityError::Chars),
            ("K\u{212a}", IdentityError::Chars), // Kelvin sign: lower-cases to ASCII 'k'
            ("a\0", IdentityError::Chars),
        ];
        for (p, want) in cases {
            assert_eq!(t.map(p), Err(want), "{p:?}");
        }
        assert_eq!(t.map(&"a".repeat(256)), Err(IdentityError::TooLong));
        assert!(t.map(&"a".repeat(255)).is_ok());
        // The whole ID is still bounded by the SPIFFE limit.
        let long =
            IdentityTemplate::parse(&format!("spiffe://td/{}/{{user}}", "p".repeat(1900))).unwrap();
        assert_eq!(
            long.map(&"a".repeat(200)),
            Err(IdentityError::Id(IdError::TooLong))
        );
    }

    #[test]
    fn refuses_bad_templates() {
        let cases = [
            ("spiffe://td/legacy", IdentityError::Placeholder),
            ("spiffe://td/{user}/{user}", IdentityError::Placeholder),
            ("spiffe://{user}/x", IdentityError::PlaceholderInTrustDomain),
            ("spiffe://td{user}", IdentityError::PlaceholderInTrustDomain),
            (
                "https://td/{user}",
                IdentityError::Template(IdError::Scheme),
            ),
            (
                "spiffe://TD/{user}",
                IdentityError::Template(IdError::TrustDomainChar),
            ),
            (
                "spiffe://td/{user}/",
                IdentityError::Template(IdError::EmptySegment),
            ),
            (
                "spiffe://td/a b/{user}",
                IdentityError::Template(IdError::PathChar),
            ),
        ];
        for (t, want) in cases {
            assert_eq!(IdentityTemplate::parse(t), Err(want), "{t}");
        }
    }
}
