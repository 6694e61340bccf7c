//! Request-path normalization for routing and authorization decisions.
//!
//! Policy: **a path that any backend could read two ways is refused, never
//! "fixed".** The gateway decides access from the path it sees; if a backend
//! decodes, collapses or strips that path differently (double decoding, `..`
//! resolution, `//` collapsing, Tomcat `;` path parameters, `\` as a
//! separator, overlong UTF-8, ...), the decision would be made about a
//! different resource than the one served. So instead of resolving `..` or
//! merging `//`, [`normalize`] rejects such paths with a [`PathError`].
//!
//! A path that passes is returned in one canonical spelling: percent-encoded
//! unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
//! percent-encoding is kept with upper-case hex digits, and everything else is
//! copied unchanged. Already-canonical input is returned borrowed, without
//! allocating. The whole check is a single left-to-right pass; when a path has
//! several problems, the first one found is reported.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused.
///
/// The `Display` text is a short, fixed message that is safe to return to the
/// caller: it never echoes any part of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    NotAbsolute,
    /// A `%` is not followed by two hex digits (`%`, `%2`, `%zz`, `%u002e`).
    BadPercentEncoding,
    /// An encoded `/` or `\` (`%2F`, `%5C`, any case).
    EncodedSeparator,
    /// An encoded `%` that itself starts a percent-encoding (`%252e`).
    DoubleEncoding,
    /// A control character (0x00-0x1F, 0x7F), raw or percent-encoded.
    ControlCharacter,
    /// The percent-decoded path is not valid UTF-8 (overlong forms, surrogates, truncated sequences).
    InvalidUtf8,
    /// A `.` or `..` segment, also when spelled with encodings or followed by `;` parameters.
    DotSegment,
    /// An empty segment (`//`) other than a trailing slash, or a segment that is empty before its `;` parameters.
    EmptySegment,
    /// A raw `\`.
    Backslash,
    /// The raw path is longer than [`MAX_PATH_LEN`] bytes.
    TooLong,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            Self::NotAbsolute => "path must start with '/'",
            Self::BadPercentEncoding => "path contains a malformed percent-encoding",
            Self::EncodedSeparator => "path contains an encoded '/' or '\\'",
            Self::DoubleEncoding => "path contains a double percent-encoding",
            Self::ControlCharacter => "path contains a control character",
            Self::InvalidUtf8 => "path does not decode to valid UTF-8",
            Self::DotSegment => "path contains a '.' or '..' segment",
            Self::EmptySegment => "path contains an empty segment",
            Self::Backslash => "path contains a '\\'",
            Self::TooLong => "path is too long",
        };
        f.write_str(msg)
    }
}

impl std::error::Error for PathError {}

/// Maximum accepted path length in bytes, measured on the raw (undecoded) path.
pub const MAX_PATH_LEN: usize = 8192;

/// Normalize the path part of a request target (no query; the caller splits at `?`).
///
/// Returns the canonical path, or the first reason (scanning left to right)
/// the path is refused. The result is [`Cow::Borrowed`] when the input is
/// already canonical, so the common case does not allocate. Never panics.
///
/// # Errors
///
/// Returns the [`PathError`] for the first rule the path breaks (see the
/// module documentation for the policy).
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }

    // Canonical output, created only at the first byte that must change.
    let mut out: Option<Vec<u8>> = None;
    let mut utf8 = Utf8Validator::default();
    let mut seg = Segment::default();
    let mut i = 1; // the leading '/' is checked above and copied unchanged

    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (d, hi, lo) = percent_triple(bytes, i).ok_or(PathError::BadPercentEncoding)?;
            match d {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                b'%' if starts_encoding(bytes, i.saturating_add(3)) => {
                    return Err(PathError::DoubleEncoding)
                }
                _ => {}
            }
            check_byte(d, &mut utf8)?;
            seg.push(d);
            if is_unreserved(d) {
                start_owned(&mut out, bytes, i).push(d);
            } else {
                let canonical = [b'%', hi.to_ascii_uppercase(), lo.to_ascii_uppercase()];
                if hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    start_owned(&mut out, bytes, i).extend_from_slice(&canonical);
                } else if let Some(o) = out.as_mut() {
                    o.extend_from_slice(&canonical);
                }
            }
            i = i.saturating_add(3);
        } else {
            match b {
                b'\\' => return Err(PathError::Backslash),
                b'/' => {
                    check_byte(b, &mut utf8)?;
                    seg.finish(false)?;
                    seg = Segment::default();
                }
                _ => {
                    check_byte(b, &mut utf8)?;
                    seg.push(b);
                }
            }
            if let Some(o) = out.as_mut() {
                o.push(b);
            }
            i = i.saturating_add(1);
        }
    }
    utf8.finish()?;
    seg.finish(true)?;

    match out {
        None => Ok(Cow::Borrowed(raw)),
        // Always valid: raw UTF-8 runs split only at ASCII bytes, plus ASCII substitutions.
        Some(v) => String::from_utf8(v)
            .map(Cow::Owned)
            .map_err(|_| PathError::InvalidUtf8),
    }
}

/// Switch to owned output, copying the unchanged prefix `bytes[..upto]` on first use.
fn start_owned<'a>(out: &'a mut Option<Vec<u8>>, bytes: &[u8], upto: usize) -> &'a mut Vec<u8> {
    out.get_or_insert_with(|| {
        let mut v = Vec::with_capacity(bytes.len());
        v.extend(bytes.iter().take(upto));
        v
    })
}

/// Decode the `%XX` at `i`: the byte value and the two hex characters as written.
fn percent_triple(bytes: &[u8], i: usize) -> Option<(u8, u8, u8)> {
    let mut it = bytes.iter().skip(i);
    if it.next() != Some(&b'%') {
        return None;
    }
    let hi = *it.next()?;
    let lo = *it.next()?;
    Some(((hex_val(hi)? << 4) | hex_val(lo)?, hi, lo))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(c.wrapping_sub(b'a' - 10)),
        b'A'..=b'F' => Some(c.wrapping_sub(b'A' - 10)),
        _ => None,
    }
}

/// RFC 3986 unreserved characters.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// The character at `j` as it reads after decoding unreserved encodings only,
/// and the index just past it; `None` at the end or for any other encoding.
fn unreserved_char(bytes: &[u8], j: usize) -> Option<(u8, usize)> {
    match *bytes.get(j)? {
        b'%' => {
            let (d, _, _) = percent_triple(bytes, j)?;
            is_unreserved(d).then_some((d, j.saturating_add(3)))
        }
        c => Some((c, j.saturating_add(1))),
    }
}

/// Whether the text at `j` (after decoding unreserved encodings, which is how it
/// reads in the canonical output) would start a percent-encoding once an
/// encoded `%` in front of it is decoded: two hex digits, or IIS-style `uXXXX`.
fn starts_encoding(bytes: &[u8], j: usize) -> bool {
    let Some((c1, j1)) = unreserved_char(bytes, j) else {
        return false;
    };
    let hex_digits = |mut k: usize, n: usize| {
        for _ in 0..n {
            match unreserved_char(bytes, k) {
                Some((c, next)) if c.is_ascii_hexdigit() => k = next,
                _ => return false,
            }
        }
        true
    };
    if c1.is_ascii_hexdigit() {
        hex_digits(j1, 1)
    } else if c1 == b'u' || c1 == b'U' {
        hex_digits(j1, 4)
    } else {
        false
    }
}

/// Checks every decoded byte (raw or from a percent-encoding) in path order.
fn check_byte(d: u8, utf8: &mut Utf8Validator) -> Result<(), PathError> {
    if d < 0x20 || d == 0x7F {
        return Err(PathError::ControlCharacter);
    }
    utf8.feed(d)
}

/// Tracks the current segment, up to its first (decoded) `;`.
#[derive(Debug)]
struct Segment {
    /// Decoded bytes before the first `;`.
    prefix_len: usize,
    /// Every byte before the first `;` is `.`.
    prefix_all_dots: bool,
    /// A `;` has been seen; the rest are path parameters.
    in_params: bool,
}

impl Default for Segment {
    fn default() -> Self {
        Self {
            prefix_len: 0,
            prefix_all_dots: true,
            in_params: false,
        }
    }
}

impl Segment {
    fn push(&mut self, d: u8) {
        if self.in_params {
            return;
        }
        if d == b';' {
            self.in_params = true;
            return;
        }
        self.prefix_len = self.prefix_len.saturating_add(1);
        if d != b'.' {
            self.prefix_all_dots = false;
        }
    }

    fn finish(&self, last: bool) -> Result<(), PathError> {
        if self.prefix_all_dots && matches!(self.prefix_len, 1 | 2) {
            return Err(PathError::DotSegment);
        }
        // A trailing slash (or trailing `/;params`) is fine; anything after it is not.
        if self.prefix_len == 0 && !last {
            return Err(PathError::EmptySegment);
        }
        Ok(())
    }
}

/// Streaming UTF-8 validation with the same acceptance as `std::str::from_utf8`
/// (Unicode Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
#[derive(Debug)]
struct Utf8Validator {
    /// Continuation bytes still expected.
    need: u8,
    /// Allowed range for the next continuation byte.
    lo: u8,
    hi: u8,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self {
            need: 0,
            lo: 0x80,
            hi: 0xBF,
        }
    }
}

impl Utf8Validator {
    fn feed(&mut self, b: u8) -> Result<(), PathError> {
        if self.need > 0 {
            if b < self.lo || b > self.hi {
                return Err(PathError::InvalidUtf8);
            }
            self.need = self.need.saturating_sub(1);
            self.lo = 0x80;
            self.hi = 0xBF;
            return Ok(());
        }
        let (need, lo, hi) = match b {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return Err(PathError::InvalidUtf8),
        };
        self.need = need;
        self.lo = lo;
        self.hi = hi;
        Ok(())
    }

    fn finish(&self) -> Result<(), PathError> {
        if self.need == 0 {
            Ok(())
        } else {
            Err(PathError::InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests;
