//! Media types: `type/subtype` compared without parameters and without case (RFC 9110 §8.3.1).

use http::header::CONTENT_TYPE;
use http::request::Parts;

use crate::problem::{Code, Refusal};

/// What the body validator knows how to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    Xml,
    Other,
}

/// One allowed entry of `content_types`: exact, `type/*`, or `*/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    ty: String,
    subtype: String,
}

impl Pattern {
    /// Parse a configured entry; parameters are not allowed there (they would be ignored).
    pub(crate) fn parse(s: &str) -> Result<Pattern, String> {
        let bad = || format!("{s:?} is not a media type (type/subtype, without parameters)");
        if s.contains(';') {
            return Err(bad());
        }
        let (ty, subtype) = essence(s).ok_or_else(bad)?;
        if ty == "*" && subtype != "*" {
            return Err(bad());
        }
        Ok(Pattern { ty, subtype })
    }

    fn matches(&self, ty: &str, subtype: &str) -> bool {
        (self.ty == "*" || self.ty == ty) && (self.subtype == "*" || self.subtype == subtype)
    }
}

/// Lower-cased `(type, subtype)` of a media type, parameters dropped; `None` if malformed.
pub(crate) fn essence(value: &str) -> Option<(String, String)> {
    let main = value.split(';').next().unwrap_or("").trim();
    let (ty, subtype) = main.split_once('/')?;
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    (token(ty) && token(subtype)).then(|| (ty.to_ascii_lowercase(), subtype.to_ascii_lowercase()))
}

/// The request's media type: `Ok(None)` when absent, 400 when repeated, 415 when unreadable.
pub(crate) fn request_type(parts: &Parts) -> Result<Option<(String, String)>, Refusal> {
    let mut values = parts.headers.get_all(CONTENT_TYPE).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two fields: the upstream may read either one; refuse rather than guess.
        return Err(Refusal::new(
            Code::InvalidRequest,
            "more than one Content-Type field",
        ));
    }
    first
        .to_str()
        .ok()
        .and_then(essence)
        .map(Some)
        .ok_or_else(|| Refusal::new(Code::UnsupportedMediaType, "unreadable Content-Type"))
}

/// The JSON and XML checks read UTF-8 only. A `charset` parameter naming anything else (UTF-7,
/// UTF-16, Latin-1, …) is 415: the upstream would decode the bytes as declared and could read
/// markup the check never saw (`+ADw-` is `<` in UTF-7). `us-ascii` is not accepted either:
/// nothing legitimate needs it, and fewer spellings leave fewer doubts.
pub(crate) fn check_charset(parts: &Parts) -> Result<(), Refusal> {
    let Some(value) = parts.headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value
        .to_str()
        .map_err(|_| Refusal::new(Code::UnsupportedMediaType, "unreadable Content-Type"))?;
    let mut charsets = text.split(';').skip(1).filter_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').trim())
    });
    let first = charsets.next();
    let refuse = || {
        Refusal::new(
            Code::UnsupportedMediaType,
            "only charset=utf-8 is accepted on bodies this route validates",
        )
    };
    if charsets.next().is_some() {
        return Err(refuse());
    }
    match first {
        None => Ok(()),
        Some(c) if c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8") => Ok(()),
        Some(_) => Err(refuse()),
    }
}

/// A byte order mark of an encoding other than UTF-8 (UTF-16/32, UTF-7) contradicts the UTF-8
/// the checks read (declared or implied): 415. A UTF-8 BOM is left to the format's own check.
pub(crate) fn check_bom(body: &[u8]) -> Result<(), Refusal> {
    const FOREIGN: &[&[u8]] = &[
        b"\x00\x00\xFE\xFF",
        b"\xFF\xFE",
        b"\xFE\xFF",
        b"+/v8",
        b"+/v9",
        b"+/v+",
        b"+/v/",
    ];
    if FOREIGN.iter().any(|bom| body.starts_with(bom)) {
        return Err(Refusal::new(
            Code::UnsupportedMediaType,
            "the body starts with the byte order mark of an encoding other than UTF-8",
        ));
    }
    Ok(())
}

/// Whether `(ty, subtype)` is one of `allowed` (an empty list allows any).
pub(crate) fn allowed(allowed: &[Pattern], ty: &str, subtype: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|p| p.matches(ty, subtype))
}

/// JSON (`application/json`, `*/*+json`), XML (`application/xml`, `text/xml`, `*/*+xml`,
/// which covers `application/soap+xml`), or neither.
pub(crate) fn kind(ty: &str, subtype: &str) -> BodyKind {
    if (ty == "application" && subtype == "json") || subtype.ends_with("+json") {
        BodyKind::Json
    } else if ((ty == "application" || ty == "text") && subtype == "xml")
        || subtype.ends_with("+xml")
    {
        BodyKind::Xml
    } else {
        BodyKind::Other
    }
}

#[cfg(test)]
mod tests;
