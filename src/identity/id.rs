//! SPIFFE IDs and trust domain names, parsed strictly per the SPIFFE ID specification
//! (`spiffe/standards/SPIFFE-ID.md`, §2):
//!
//! - the scheme is `spiffe`, lower-case, followed by `://`;
//! - the trust domain is 1–255 characters of `[a-z0-9._-]`: no upper case, no port, no userinfo,
//!   no percent-encoding (none of `:`, `@`, `%` is allowed, so none can sneak in);
//! - the path is empty or a sequence of `/segment`, each segment non-empty, not `.` or `..`, made of
//!   `[a-zA-Z0-9._-]`: so no trailing slash, no query, no fragment;
//! - the whole ID is at most 2048 bytes.
//!
//! Nothing is normalised: an ID that would need normalising is refused, so two spellings can never
//! name the same workload (an authorization policy compares IDs as strings).

use std::fmt;
use std::str::FromStr;

/// Longest SPIFFE ID accepted, in bytes (SPIFFE-ID §2.3).
pub const MAX_ID_LEN: usize = 2048;
/// Longest trust domain name accepted (SPIFFE-ID §2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const PREFIX: &str = "spiffe://";

/// Why a string is not a SPIFFE ID or trust domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("empty")]
    Empty,
    #[error("longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("scheme must be `spiffe://` (lower case)")]
    Scheme,
    #[error("missing trust domain")]
    MissingTrustDomain,
    #[error("trust domain longer than {MAX_TRUST_DOMAIN_LEN} characters")]
    TrustDomainTooLong,
    #[error("trust domain may contain only a-z, 0-9, '.', '-' and '_'")]
    TrustDomainChar,
    #[error("path segments must not be empty (no '//' and no trailing '/')")]
    EmptySegment,
    #[error("path segments must not be '.' or '..'")]
    DotSegment,
    #[error("path may contain only a-z, A-Z, 0-9, '.', '-', '_' and '/'")]
    PathChar,
}

fn is_td_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

fn check_trust_domain(td: &str) -> Result<(), IdError> {
    if td.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong);
    }
    if !td.bytes().all(is_td_char) {
        return Err(IdError::TrustDomainChar);
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), IdError> {
    // `path` is empty or starts with '/': splitting yields a leading "" to skip.
    for seg in path.split('/').skip(1) {
        if seg.is_empty() {
            return Err(IdError::EmptySegment);
        }
        if seg == "." || seg == ".." {
            return Err(IdError::DotSegment);
        }
        if !seg.bytes().all(is_path_char) {
            return Err(IdError::PathChar);
        }
    }
    Ok(())
}

/// A trust domain name such as `corp.example` (the `[trust."…"]` key in config).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parse a bare trust domain name (not a `spiffe://` URI).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_trust_domain(s)?;
        Ok(TrustDomain(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        TrustDomain::parse(s)
    }
}

/// A valid SPIFFE ID, e.g. `spiffe://corp.example/ns/payments/sa/api`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    full: String,
    /// Byte offset where the trust domain ends (and the path begins).
    td_end: usize,
}

impl SpiffeId {
    /// Parse and validate.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        let rest = s.strip_prefix(PREFIX).ok_or(IdError::Scheme)?;
        let td_len = rest.find('/').unwrap_or(rest.len());
        let (td, path) = rest.split_at(td_len);
        check_trust_domain(td)?;
        check_path(path)?;
        Ok(SpiffeId {
            full: s.to_owned(),
            td_end: PREFIX.len() + td_len,
        })
    }

    /// The trust domain name (`corp.example`).
    pub fn trust_domain(&self) -> &str {
        self.full.get(PREFIX.len()..self.td_end).unwrap_or_default()
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        self.full.get(self.td_end..).unwrap_or_default()
    }

    /// The ID names a trust domain itself, not a workload (leaf SVIDs must not: X509-SVID §3.1).
    pub fn is_root(&self) -> bool {
        self.path().is_empty()
    }

    /// Whether the ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain() == td.as_str()
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        SpiffeId::parse(s)
    }
}

#[cfg(test)]
mod tests;
