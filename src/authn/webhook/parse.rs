//! Reading the provider's headers: one value per header, timestamps and delivery ids checked
//! before they are used.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

use super::WebhookError;
use crate::adapters::{HeaderSpec, TimestampSource};

/// Longest delivery id accepted.
const MAX_ID_LEN: usize = 256;

/// The first header of `spec` present: its only value, or `Many` when it is repeated.
pub(super) enum Lookup<'a> {
    Absent,
    One(&'a HeaderValue),
    Many,
}

pub(super) fn lookup<'a>(headers: &'a HeaderMap, spec: &HeaderSpec) -> Lookup<'a> {
    for name in &spec.names {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => continue,
            (Some(v), None) => return Lookup::One(v),
            (Some(_), Some(_)) => return Lookup::Many,
        }
    }
    Lookup::Absent
}

pub(super) fn timestamp_text<'a>(
    headers: &'a HeaderMap,
    source: &TimestampSource,
    entries: &[&'a str],
) -> Result<&'a str, WebhookError> {
    match source {
        TimestampSource::Header(spec) => match lookup(headers, spec) {
            Lookup::Absent => Err(WebhookError::MissingTimestamp),
            Lookup::Many => Err(WebhookError::Malformed(
                "timestamp header appears more than once",
            )),
            Lookup::One(v) => v
                .to_str()
                .map_err(|_| WebhookError::Malformed("timestamp is not visible ASCII")),
        },
        TimestampSource::SignatureEntry(prefix) => {
            let mut found = entries
                .iter()
                .filter_map(|e| e.strip_prefix(prefix.as_str()));
            match (found.next(), found.next()) {
                (None, _) => Err(WebhookError::MissingTimestamp),
                (Some(t), None) => Ok(t),
                (Some(_), Some(_)) => Err(WebhookError::Malformed("more than one timestamp entry")),
            }
        }
    }
}

/// Unix seconds: 1–12 ASCII digits, nothing else.
pub(super) fn parse_unix(s: &str) -> Option<SystemTime> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(s.parse().ok()?))
}

pub(super) fn delivery_id(v: &HeaderValue) -> Result<&str, WebhookError> {
    let bad = WebhookError::Malformed("delivery id must be 1-256 visible ASCII characters");
    let id = v.to_str().map_err(|_| bad.clone())?;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad);
    }
    Ok(id)
}
