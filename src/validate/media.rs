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
mod tests {
    use super::*;

    #[test]
    fn essence_ignores_parameters_and_case() {
        assert_eq!(
            essence("Application/JSON; charset=UTF-8"),
            Some(("application".into(), "json".into()))
        );
        assert_eq!(essence("json"), None);
        assert_eq!(essence("application/"), None);
        assert_eq!(essence("appli cation/json"), None);
    }

    #[test]
    fn patterns() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(allowed(&[p("application/json")], "application", "json"));
        assert!(!allowed(&[p("application/json")], "application", "xml"));
        assert!(allowed(&[p("text/*")], "text", "plain"));
        assert!(allowed(&[p("*/*")], "image", "png"));
        assert!(allowed(&[], "anything", "goes"));
        assert!(Pattern::parse("application/json; charset=utf-8").is_err());
        assert!(Pattern::parse("*/json").is_err());
    }

    #[test]
    fn kinds() {
        assert_eq!(kind("application", "json"), BodyKind::Json);
        assert_eq!(kind("application", "problem+json"), BodyKind::Json);
        assert_eq!(kind("application", "soap+xml"), BodyKind::Xml);
        assert_eq!(kind("text", "xml"), BodyKind::Xml);
        assert_eq!(kind("application", "xml"), BodyKind::Xml);
        assert_eq!(kind("text", "plain"), BodyKind::Other);
    }
}
