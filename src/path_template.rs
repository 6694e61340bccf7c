//! Path templates: a normalized path with its identifier-like segments (all digits, a UUID, a
//! long hex or token string, a date or version number) replaced by [`PLACEHOLDER`]. The state
//! store keeps observed access in this form, and `policy suggest`
//! (`crate::authz::policy::suggest`) writes its path conditions from it: one rule, shared.

/// What an identifier segment becomes in a templated path ([`template_path`]).
pub const PLACEHOLDER: &str = "*";

/// Whether a path segment names one object rather than an operation. The placeholder itself
/// counts as one, so templating is idempotent and `policy suggest` gives the same policy for raw
/// paths and for paths the state store already templated (a literal `*` segment in a real path
/// is generalized too: harmless, it only ever widens to one segment).
pub fn is_identifier(seg: &str) -> bool {
    if seg == PLACEHOLDER {
        return true;
    }
    let b = seg.as_bytes();
    let hex = |c: &u8| c.is_ascii_hexdigit();
    let digit = |c: &u8| c.is_ascii_digit();
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => hex(c),
        });
    // Numbers, dates (2026-11-01), versions (1.2.3): digits and separators only.
    let numeric = b.iter().any(digit)
        && b.iter()
            .all(|c| digit(c) || matches!(c, b'-' | b'_' | b'.' | b':'));
    // Hashes and opaque ids: long, with at least one digit, of hex or token characters.
    let token = b.len() >= 16
        && b.iter().any(digit)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'));
    let short_hex = b.len() >= 8 && b.iter().all(hex) && b.iter().any(digit);
    uuid || numeric || token || short_hex
}

/// `path` with identifier-like segments replaced by [`PLACEHOLDER`]: what the state store keeps
/// per observed request, so a route's distinct rows are bounded by its operations, not by its
/// object ids. Borrowed when nothing changes.
pub fn template_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path
        .split('/')
        .any(|s| s != PLACEHOLDER && is_identifier(s))
    {
        return std::borrow::Cow::Borrowed(path);
    }
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| if is_identifier(s) { PLACEHOLDER } else { s })
        .collect();
    std::borrow::Cow::Owned(segments.join("/"))
}
