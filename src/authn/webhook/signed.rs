//! The signed content, piece by piece, as the adapter's template says, and its MAC. Pieces borrow
//! the body so that a large body is fed to each MAC without being copied.

use std::borrow::Cow;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::header::CONTENT_TYPE;
use http::HeaderMap;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::WebhookError;
use crate::adapters::{Algorithm, Encoding, SignedPart, WebhookAdapter};

/// What the template's placeholders are filled with.
pub(super) struct Inputs<'a> {
    pub headers: &'a HeaderMap,
    pub url: &'a str,
    pub body: &'a [u8],
    pub timestamp: Option<&'a str>,
    pub id: Option<&'a str>,
}

/// The signed content as pieces to feed a MAC in order.
pub(super) fn pieces<'a>(
    adapter: &'a WebhookAdapter,
    inputs: &Inputs<'a>,
) -> Result<Vec<Cow<'a, [u8]>>, WebhookError> {
    let mut out = Vec::with_capacity(adapter.signed.len());
    for part in &adapter.signed {
        match part {
            SignedPart::Literal(l) => out.push(Cow::Borrowed(l.as_slice())),
            SignedPart::Timestamp => {
                let ts = inputs.timestamp.ok_or(WebhookError::MissingTimestamp)?;
                out.push(Cow::Borrowed(ts.as_bytes()));
            }
            SignedPart::Id => {
                let id = inputs.id.ok_or(WebhookError::MissingId)?;
                out.push(Cow::Borrowed(id.as_bytes()));
            }
            SignedPart::Body => out.push(Cow::Borrowed(inputs.body)),
            SignedPart::Url => out.push(Cow::Borrowed(inputs.url.as_bytes())),
            SignedPart::FormParams => form_params(adapter, inputs, &mut out)?,
        }
    }
    Ok(out)
}

/// Twilio's parameters: an urlencoded body's pairs sorted by name (then value), each written as
/// name then value. Any other non-empty body must be covered by the signed URL through the
/// adapter's `body_hash_param` (hex SHA-256 of the body), or it would not be signed at all.
fn form_params<'a>(
    adapter: &WebhookAdapter,
    inputs: &Inputs<'a>,
    out: &mut Vec<Cow<'a, [u8]>>,
) -> Result<(), WebhookError> {
    let mut types = inputs.headers.get_all(CONTENT_TYPE).iter();
    let content_type = match (types.next(), types.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.to_str().map_err(|_| malformed_type())?),
        _ => {
            return Err(WebhookError::Malformed(
                "Content-Type appears more than once",
            ))
        }
    };
    let is_form = content_type.is_some_and(|t| {
        t.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    if is_form {
        let mut pairs = parse_form(inputs.body).ok_or(WebhookError::Malformed(
            "form body is not valid urlencoded data",
        ))?;
        pairs.sort();
        for (k, v) in pairs {
            out.push(Cow::Owned(k));
            out.push(Cow::Owned(v));
        }
        return Ok(());
    }
    if inputs.body.is_empty() {
        return Ok(());
    }
    let param = adapter
        .body_hash_param
        .as_deref()
        .ok_or(WebhookError::BodyNotSigned)?;
    let claimed = query_param(inputs.url, param).ok_or(WebhookError::BodyNotSigned)?;
    let actual = hex::encode(Sha256::digest(inputs.body));
    if claimed.eq_ignore_ascii_case(actual.as_bytes()) {
        Ok(())
    } else {
        Err(WebhookError::BodyNotSigned)
    }
}

fn malformed_type() -> WebhookError {
    WebhookError::Malformed("Content-Type is not visible ASCII")
}

/// The decoded value of the first `name` parameter of the URL's query.
fn query_param(url: &str, name: &str) -> Option<Vec<u8>> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    parse_form(query.as_bytes())?
        .into_iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v)
}

/// `application/x-www-form-urlencoded` pairs, decoded; `None` on a bad percent escape.
fn parse_form(s: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    s.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            let k = kv.next().unwrap_or_default();
            let v = kv.next().unwrap_or_default();
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(*it.next()?)?;
                let lo = hex_val(*it.next()?)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A candidate signature's bytes; `None` when it is not valid in the adapter's encoding.
pub(super) fn decode(encoding: Encoding, s: &str) -> Option<Vec<u8>> {
    match encoding {
        // Lower case only: the providers send lower-case hex and their libraries compare the
        // text, so `ABCD…` is not their signature (and a signature must have one spelling).
        Encoding::Hex if s.bytes().any(|b| b.is_ascii_uppercase()) => None,
        Encoding::Hex => hex::decode(s).ok(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(s).ok(),
    }
}

/// The MAC of the signed pieces under one key.
pub(super) fn mac(algorithm: Algorithm, key: &[u8], pieces: &[Cow<'_, [u8]>]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], pieces: &[Cow<'_, [u8]>]) -> Vec<u8> {
        // HMAC takes keys of any length; the error branch cannot happen and yields no match.
        let Ok(mut m) = <M as Mac>::new_from_slice(key) else {
            return Vec::new();
        };
        pieces.iter().for_each(|p| m.update(p));
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::HmacSha256 => run::<Hmac<Sha256>>(key, pieces),
        Algorithm::HmacSha1 => run::<Hmac<Sha1>>(key, pieces),
    }
}

#[cfg(test)]
mod tests;
