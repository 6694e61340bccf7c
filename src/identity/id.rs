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
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        let cases = [
            ("spiffe://corp.example", "corp.example", ""),
            ("spiffe://corp.example/a", "corp.example", "/a"),
            (
                "spiffe://corp.example/ns/payments/sa/api",
                "corp.example",
                "/ns/payments/sa/api",
            ),
            ("spiffe://a", "a", ""),
            ("spiffe://my_td-1.example/x", "my_td-1.example", "/x"),
            ("spiffe://td/Upper/Case", "td", "/Upper/Case"),
            ("spiffe://td/a.b/..c/.d./...", "td", "/a.b/..c/.d./..."),
            ("spiffe://td/a-b_c.d", "td", "/a-b_c.d"),
            ("spiffe://123/456", "123", "/456"),
            (
                "spiffe://td/9eebccd2-12bf-40a6-b262-65fe0487d453",
                "td",
                "/9eebccd2-12bf-40a6-b262-65fe0487d453",
            ),
        ];
        for (s, td, path) in cases {
            let id = SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(id.trust_domain(), td, "{s}");
            assert_eq!(id.path(), path, "{s}");
            assert_eq!(id.as_str(), s);
            assert_eq!(id.to_string(), s);
            assert_eq!(id.is_root(), path.is_empty());
        }
    }

    #[test]
    fn invalid_ids() {
        let long_td = format!("spiffe://{}", "a".repeat(256));
        let long_id = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN));
        let cases: Vec<(&str, IdError)> = vec![
            ("", IdError::Empty),
            ("SPIFFE://td/a", IdError::Scheme),
            ("Spiffe://td/a", IdError::Scheme),
            ("https://td/a", IdError::Scheme),
            ("spiffe:/td/a", IdError::Scheme),
            ("spiffe:td", IdError::Scheme),
            ("spiffe://", IdError::MissingTrustDomain),
            ("spiffe:///a", IdError::MissingTrustDomain),
            ("spiffe://TD/a", IdError::TrustDomainChar),
            ("spiffe://Corp.example/a", IdError::TrustDomainChar),
            ("spiffe://td:8443/a", IdError::TrustDomainChar),
            ("spiffe://user@td/a", IdError::TrustDomainChar),
            ("spiffe://td%2e/a", IdError::TrustDomainChar),
            ("spiffe://t d/a", IdError::TrustDomainChar),
            ("spiffe://td?q=1", IdError::TrustDomainChar),
            ("spiffe://td#frag", IdError::TrustDomainChar),
            ("spiffe://tdé/a", IdError::TrustDomainChar),
            (&long_td, IdError::TrustDomainTooLong),
            ("spiffe://td/", IdError::EmptySegment),
            ("spiffe://td/a/", IdError::EmptySegment),
            ("spiffe://td//a", IdError::EmptySegment),
            ("spiffe://td/a//b", IdError::EmptySegment),
            ("spiffe://td/.", IdError::DotSegment),
            ("spiffe://td/..", IdError::DotSegment),
            ("spiffe://td/a/./b", IdError::DotSegment),
            ("spiffe://td/a/../b", IdError::DotSegment),
            ("spiffe://td/a?x=1", IdError::PathChar),
            ("spiffe://td/a#f", IdError::PathChar),
            ("spiffe://td/a%20b", IdError::PathChar),
            ("spiffe://td/a b", IdError::PathChar),
            ("spiffe://td/a:b", IdError::PathChar),
            ("spiffe://td/é", IdError::PathChar),
            ("spiffe://td/a\\b", IdError::PathChar),
            (&long_id, IdError::TooLong),
        ];
        assert!(cases.len() >= 25);
        for (s, want) in cases {
            assert_eq!(SpiffeId::parse(s), Err(want.clone()), "{s:?}");
        }
    }

    #[test]
    fn length_limits_are_inclusive() {
        let td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
        assert!(SpiffeId::parse(&format!("spiffe://{td}")).is_ok());
        let base = "spiffe://td/";
        let id = format!("{base}{}", "b".repeat(MAX_ID_LEN - base.len()));
        assert_eq!(id.len(), MAX_ID_LEN);
        assert!(SpiffeId::parse(&id).is_ok());
    }

    #[test]
    fn trust_domains() {
        assert!(TrustDomain::parse("corp.example").is_ok());
        assert_eq!(TrustDomain::parse(""), Err(IdError::MissingTrustDomain));
        assert_eq!(
            TrustDomain::parse("spiffe://corp.example"),
            Err(IdError::TrustDomainChar)
        );
        assert_eq!(
            TrustDomain::parse("Corp.example"),
            Err(IdError::TrustDomainChar)
        );
        let td = TrustDomain::parse("corp.example").unwrap();
        assert!(SpiffeId::parse("spiffe://corp.example/a")
            .unwrap()
            .is_member_of(&td));
        assert!(!SpiffeId::parse("spiffe://corp.example.evil/a")
            .unwrap()
            .is_member_of(&td));
    }
}
