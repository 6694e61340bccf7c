//! Webhook adapters: how one SaaS provider signs its callbacks, as data. The raw TOML shape is
//! checked by serde (`deny_unknown_fields`), then [`from_toml`] turns it into a
//! [`WebhookAdapter`] whose invariants the verifier relies on: every value that is checked (the
//! timestamp, the body) is covered by the signature, and every header name and template
//! placeholder is known.

use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

pub use super::template::SignedPart;
use crate::diag::Collector;

/// The MAC over the signed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    HmacSha256,
    HmacSha1,
}

impl Algorithm {
    /// Length of the MAC in bytes: a decoded candidate of any other length never matches.
    pub const fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha1 => 20,
        }
    }
}

/// How a MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Hex, either case.
    Hex,
    /// Standard base64 with padding (RFC 4648 §4), canonical.
    Base64,
}

/// How the configured secret becomes the HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretEncoding {
    /// The secret's bytes are the key (Stripe, GitHub, Slack, Shopify, Twilio).
    #[default]
    Raw,
    /// The secret is standard base64 of the key (Standard Webhooks' `whsec_…`).
    Base64,
}

/// A header looked up by its name, then by each alias in order.
#[derive(Debug, Clone)]
pub struct HeaderSpec {
    pub(crate) names: Vec<HeaderName>,
}

/// Where the signatures are and how they are written.
#[derive(Debug, Clone)]
pub struct SignatureSpec {
    pub(crate) header: HeaderSpec,
    /// Between entries when the header lists several (`,` Stripe, ` ` Standard Webhooks).
    pub(crate) separator: Option<char>,
    /// The expected scheme's prefix (`v1=`, `v1,`, `sha256=`, `v0=`); entries without it are
    /// other schemes and ignored.
    pub(crate) prefix: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) encoding: Encoding,
}

/// Where the timestamp is.
#[derive(Debug, Clone)]
pub enum TimestampSource {
    /// Its own header (unix seconds).
    Header(HeaderSpec),
    /// The signature header's entry with this prefix (Stripe's `t=`).
    SignatureEntry(String),
}

/// The signed timestamp and how far it may be from now, either way.
#[derive(Debug, Clone)]
pub struct TimestampSpec {
    pub(crate) source: TimestampSource,
    pub(crate) tolerance: Duration,
}

/// A validated webhook adapter.
#[derive(Debug, Clone)]
pub struct WebhookAdapter {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) signed: Vec<SignedPart>,
    pub(crate) signature: SignatureSpec,
    pub(crate) timestamp: Option<TimestampSpec>,
    pub(crate) delivery_id: Option<HeaderSpec>,
    pub(crate) secret_encoding: SecretEncoding,
    pub(crate) secret_prefix: Option<String>,
    pub(crate) body_hash_param: Option<String>,
}

impl WebhookAdapter {
    /// The adapter's name (its file name without `.toml`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One line for `portcullis check`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The timestamp tolerance, when the provider sends a signed timestamp.
    pub fn tolerance(&self) -> Option<Duration> {
        self.timestamp.as_ref().map(|t| t.tolerance)
    }

    /// Whether the delivery id is covered by the signature (only then may it key replays).
    pub fn id_is_signed(&self) -> bool {
        self.signed.contains(&SignedPart::Id)
    }

    /// Whether the URL the provider called is signed (Twilio): then it must be known exactly,
    /// from the credential's `public_url` or a route pinned to one host.
    pub fn signs_url(&self) -> bool {
        self.signed.contains(&SignedPart::Url)
    }
}

// === raw shape ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    description: Option<String>,
    signed: String,
    body_hash_param: Option<String>,
    signature: RawSignature,
    timestamp: Option<RawTimestamp>,
    delivery_id: Option<RawHeader>,
    #[serde(default)]
    secret: RawSecret,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    header: String,
    #[serde(default)]
    aliases: Vec<String>,
    separator: Option<String>,
    prefix: Option<String>,
    algorithm: Algorithm,
    encoding: Encoding,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimestamp {
    header: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    from_signature: Option<String>,
    tolerance: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    header: String,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    encoding: SecretEncoding,
    prefix: Option<String>,
}

// === validation ===

/// Check a `family = "webhook"` table (without its `family` key) and build the adapter.
pub(super) fn from_toml(
    name: &str,
    value: toml::Value,
    p: &mut Collector<'_>,
) -> Option<WebhookAdapter> {
    let raw: RawWebhook = super::deserialize(value, p)?;
    let signature = signature(&raw.signature, p);
    let timestamp = raw
        .timestamp
        .as_ref()
        .and_then(|t| timestamp(t, &signature, p));
    let delivery_id = raw
        .delivery_id
        .as_ref()
        .and_then(|d| header_spec("delivery_id", &d.header, &d.aliases, p));
    let signed = super::template::parse(&raw.signed, p);
    check_coverage(&raw, &signed, p);
    if let Some(prefix) = &raw.secret.prefix {
        if prefix.is_empty() || !is_token(prefix) {
            p.push(
                "secret.prefix",
                "must be non-empty printable ASCII without spaces",
            );
        }
    }
    match (p.is_ok(), signature) {
        (true, Some(signature)) => Some(WebhookAdapter {
            name: name.to_owned(),
            description: raw.description,
            signed,
            signature,
            timestamp,
            delivery_id,
            secret_encoding: raw.secret.encoding,
            secret_prefix: raw.secret.prefix,
            body_hash_param: raw.body_hash_param,
        }),
        _ => None,
    }
}

fn signature(raw: &RawSignature, p: &mut Collector<'_>) -> Option<SignatureSpec> {
    let header = header_spec("signature", &raw.header, &raw.aliases, p);
    let separator = raw.separator.as_deref().and_then(|s| {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c == ' ' || c.is_ascii_punctuation() => Some(c),
            _ => {
                p.push(
                    "signature.separator",
                    "must be one space or ASCII punctuation character",
                );
                None
            }
        }
    });
    if let Some(prefix) = &raw.prefix {
        if prefix.is_empty() || !is_token(prefix) {
            p.push(
                "signature.prefix",
                "must be non-empty printable ASCII without spaces",
            );
        } else if separator.is_some_and(|s| prefix.contains(s)) {
            p.push("signature.prefix", "must not contain the separator");
        }
    }
    Some(SignatureSpec {
        header: header?,
        separator,
        prefix: raw.prefix.clone(),
        algorithm: raw.algorithm,
        encoding: raw.encoding,
    })
}

fn timestamp(
    raw: &RawTimestamp,
    signature: &Option<SignatureSpec>,
    p: &mut Collector<'_>,
) -> Option<TimestampSpec> {
    let tolerance = match humantime::parse_duration(&raw.tolerance) {
        Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => Some(d),
        Ok(_) => {
            p.push("timestamp.tolerance", "must be between 1s and 1h");
            None
        }
        Err(e) => {
            p.push("timestamp.tolerance", format!("not a duration: {e}"));
            None
        }
    };
    let source = match (&raw.header, &raw.from_signature) {
        (Some(h), None) => {
            header_spec("timestamp", h, &raw.aliases, p).map(TimestampSource::Header)
        }
        (None, Some(prefix)) => {
            if !raw.aliases.is_empty() {
                p.push("timestamp.aliases", "only valid with timestamp.header");
            }
            let listed = signature.as_ref().is_some_and(|s| s.separator.is_some());
            if prefix.is_empty() || !is_token(prefix) {
                p.push(
                    "timestamp.from_signature",
                    "must be a non-empty entry prefix",
                );
                None
            } else if !listed {
                p.push(
                    "timestamp.from_signature",
                    "needs signature.separator: the header must list entries",
                );
                None
            } else {
                Some(TimestampSource::SignatureEntry(prefix.clone()))
            }
        }
        _ => {
            p.push(
                "timestamp",
                "set exactly one of `header` and `from_signature`",
            );
            None
        }
    };
    Some(TimestampSpec {
        source: source?,
        tolerance: tolerance?,
    })
}

fn header_spec(
    key: &str,
    header: &str,
    aliases: &[String],
    p: &mut Collector<'_>,
) -> Option<HeaderSpec> {
    let mut names = Vec::with_capacity(1 + aliases.len());
    let mut ok = true;
    for (k, v) in
        std::iter::once(("header", header)).chain(aliases.iter().map(|a| ("aliases", a.as_str())))
    {
        match HeaderName::from_bytes(v.as_bytes()) {
            Ok(n) if names.contains(&n) => {
                p.push(format!("{key}.{k}"), format!("`{v}` is listed twice"));
                ok = false;
            }
            Ok(n) => names.push(n),
            Err(_) => {
                p.push(
                    format!("{key}.{k}"),
                    format!("`{v}` is not a valid header name"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(HeaderSpec { names })
}

/// Everything the verifier checks must be signed, and every placeholder must have a source.
fn check_coverage(raw: &RawWebhook, signed: &[SignedPart], p: &mut Collector<'_>) {
    let has = |part: SignedPart| signed.contains(&part);
    if has(SignedPart::Body) == has(SignedPart::FormParams) {
        p.push(
            "signed",
            "must contain exactly one of {body} and {form_params}",
        );
    }
    if has(SignedPart::FormParams) && !has(SignedPart::Url) {
        p.push(
            "signed",
            "{form_params} needs {url}: the query would not be signed",
        );
    }
    match (raw.timestamp.is_some(), has(SignedPart::Timestamp)) {
        (true, false) => p.push(
            "signed",
            "must contain {timestamp}: an unsigned timestamp proves nothing",
        ),
        (false, true) => p.push("signed", "{timestamp} needs a [timestamp] table"),
        _ => {}
    }
    if has(SignedPart::Id) && raw.delivery_id.is_none() {
        p.push("signed", "{id} needs a [delivery_id] table");
    }
    if let Some(param) = &raw.body_hash_param {
        if !has(SignedPart::FormParams) {
            p.push(
                "body_hash_param",
                "only valid with {form_params} in `signed`",
            );
        }
        if param.is_empty()
            || !param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            p.push("body_hash_param", "must be a plain query parameter name");
        }
    }
}

/// Printable ASCII without spaces.
fn is_token(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}
