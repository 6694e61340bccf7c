//! The `signed` template of a webhook adapter: literal text and placeholders, in order.

use crate::diag::Collector;

/// Placeholders allowed in `signed`.
const PLACEHOLDERS: &str = "{timestamp}, {id}, {body}, {url}, {form_params}";

/// One piece of the signed content, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    /// Literal bytes from the template.
    Literal(Vec<u8>),
    /// The timestamp exactly as sent.
    Timestamp,
    /// The delivery id exactly as sent.
    Id,
    /// The raw request body.
    Body,
    /// The URL the provider called (Twilio).
    Url,
    /// Form parameters of an urlencoded body, sorted, each as name then value (Twilio).
    FormParams,
}

/// Parse `signed` into parts; `{` and `}` only appear around a known placeholder.
pub(super) fn parse(s: &str, p: &mut Collector<'_>) -> Vec<SignedPart> {
    let mut parts = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some(open) = rest.find(['{', '}']) else {
            parts.push(SignedPart::Literal(rest.as_bytes().to_vec()));
            break;
        };
        let (lit, tail) = rest.split_at(open);
        if !lit.is_empty() {
            parts.push(SignedPart::Literal(lit.as_bytes().to_vec()));
        }
        let Some(close) = tail.find('}').filter(|_| tail.starts_with('{')) else {
            p.push("signed", "unbalanced `{` or `}`");
            return parts;
        };
        let (name, after) = tail.split_at(close + 1);
        let part = match name {
            "{timestamp}" => SignedPart::Timestamp,
            "{id}" => SignedPart::Id,
            "{body}" => SignedPart::Body,
            "{url}" => SignedPart::Url,
            "{form_params}" => SignedPart::FormParams,
            other => {
                p.push(
                    "signed",
                    format!("unknown placeholder `{other}` (known: {PLACEHOLDERS})"),
                );
                return parts;
            }
        };
        if parts.contains(&part) {
            p.push("signed", format!("`{name}` appears twice"));
        }
        parts.push(part);
        rest = after;
    }
    parts
}
