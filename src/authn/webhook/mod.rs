//! Signed SaaS webhooks (credential `kind = "webhook"`), driven by a declarative
//! [`WebhookAdapter`].
//!
//! [`WebhookVerifier::verify`] checks one delivery against the adapter and the configured
//! secrets:
//!
//! 1. the signature header must be present (else [`WebhookError::NotPresent`], so the route's
//!    next credential is tried), appear once, be at most 4 KiB and list at most 16 entries;
//! 2. the signed timestamp, when the provider sends one, must be within the tolerance of `now`,
//!    either way;
//! 3. every entry of the expected scheme (`v1=`, `v1,`, `sha256=`, …) is decoded; entries of other
//!    schemes are ignored. A decoded candidate is compared to the MAC only when its length is the
//!    MAC's length (an empty `v1,` must never match), and then in constant time, against the MAC
//!    under each secret (several while rotating). Any match is enough.
//!
//! The caller then asks a [`ReplayGuard`] whether [`Verified::replay_key`] is new, keeping it
//! until [`Verified::remember_until`]: the end of the timestamp window, or
//! [`UNSIGNED_TIME_REPLAY_WINDOW`] (5 minutes, or the credential's `tolerance`) after receipt for
//! providers that sign no timestamp (GitHub, Shopify, Twilio). For those, a delivery captured
//! and replayed after that window is accepted again: nothing in the message dates it.
//!
//! The replay key is `{adapter}:id:{timestamp}:{id}` when the delivery id is signed
//! (Standard Webhooks; a provider's retry is re-signed with a fresh timestamp and is not a
//! replay), else `{adapter}:sig:{BLAKE3 of the signed content}` (BLAKE3 rather than SHA-256: the
//! second pass over a 16 KiB body costs ~3 µs instead of ~8 µs, on top of the MAC's own pass). An unsigned id header (GitHub,
//! Shopify) is only reported: an attacker could change it at will. Hashing the signed content
//! rather than the matched signature means stripping one of several signatures does not make a
//! captured message new.
//!
//! The request body is needed, so this credential is checked through [`BodyAuthenticator`]; see
//! [`WebhookAuthenticator`].

mod authenticator;
mod parse;
pub mod replay;
mod secret;
mod signed;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use subtle::ConstantTimeEq;

pub use authenticator::{request_url, BodyAuthenticator, WebhookAuthenticator};
pub use replay::{MemoryReplayGuard, ReplayGuard, StoreError};
pub use secret::{WebhookConfigError, WebhookSecret};

use crate::adapters::WebhookAdapter;
use parse::{delivery_id, lookup, parse_unix, timestamp_text, Lookup};
use secret::decode_secret;
use signed::{decode, mac};

/// Longest signature header accepted.
pub const MAX_SIGNATURE_HEADER: usize = 4096;
/// Most entries (signatures and other schemes) accepted in the signature header.
pub const MAX_SIGNATURES: usize = 16;
/// Most secrets per credential.
pub const MAX_SECRETS: usize = 8;
/// How long a delivery is remembered when the provider signs no timestamp.
pub const UNSIGNED_TIME_REPLAY_WINDOW: Duration = Duration::from_secs(300);

/// Why a delivery was refused. Safe to show: never contains a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature header: this credential is not in the request.
    #[error("no webhook signature header")]
    NotPresent,
    #[error("webhook signature header is longer than {MAX_SIGNATURE_HEADER} bytes")]
    HeaderTooLong,
    #[error("more than {MAX_SIGNATURES} entries in the webhook signature header")]
    TooManySignatures,
    #[error("malformed webhook request: {0}")]
    Malformed(&'static str),
    #[error("webhook timestamp missing")]
    MissingTimestamp,
    #[error("webhook timestamp is outside the accepted window")]
    StaleTimestamp,
    #[error("webhook delivery id missing")]
    MissingId,
    #[error("webhook body is not covered by the signature")]
    BodyNotSigned,
    #[error("no webhook signature of the expected scheme")]
    NoSignature,
    #[error("webhook signature does not match")]
    Mismatch,
    #[error("webhook delivery was already accepted (replay)")]
    Replayed,
    /// The replay store could not answer: fail closed (503).
    #[error("webhook replay store unavailable")]
    ReplayStore,
}

/// A delivery whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The provider's delivery id, when it sends one (signed or not; for audit and logs).
    pub delivery_id: Option<String>,
    /// What the replay guard must not have seen before (see the module docs).
    pub replay_key: String,
    /// The signed timestamp, when the provider sends one.
    pub timestamp: Option<SystemTime>,
    /// Until when the replay key must be remembered.
    pub remember_until: SystemTime,
    /// Which configured secret matched (0 = first line): shows when an old secret can go.
    pub secret_index: usize,
}

/// Checks deliveries for one credential: an adapter and its secrets.
#[derive(Debug)]
pub struct WebhookVerifier {
    adapter: Arc<WebhookAdapter>,
    keys: Vec<WebhookSecret>,
    /// The timestamp tolerance (providers with timestamps) or the replay window (without).
    window: Duration,
}

impl WebhookVerifier {
    /// `secrets` as configured (decoded per the adapter's secret format, e.g. `whsec_` + base64);
    /// `tolerance` overrides the adapter's timestamp tolerance, or, for providers that sign no
    /// timestamp, sets how long deliveries are remembered (default 5 minutes).
    pub fn new(
        adapter: Arc<WebhookAdapter>,
        secrets: Vec<WebhookSecret>,
        tolerance: Option<Duration>,
    ) -> Result<Self, WebhookConfigError> {
        if secrets.is_empty() {
            return Err(WebhookConfigError::NoSecrets);
        }
        if secrets.len() > MAX_SECRETS {
            return Err(WebhookConfigError::TooManySecrets);
        }
        if tolerance.is_some_and(|t| t < Duration::from_secs(1) || t > Duration::from_secs(3600)) {
            return Err(WebhookConfigError::BadTolerance);
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                decode_secret(&adapter, s).map_err(|reason| WebhookConfigError::BadSecret {
                    index: i + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let window = tolerance
            .or(adapter.tolerance())
            .unwrap_or(UNSIGNED_TIME_REPLAY_WINDOW);
        Ok(WebhookVerifier {
            adapter,
            keys,
            window,
        })
    }

    /// The adapter.
    pub fn adapter(&self) -> &WebhookAdapter {
        &self.adapter
    }

    /// Whether the request carries this provider's signature header (so its body is needed).
    pub fn is_present(&self, headers: &HeaderMap) -> bool {
        !matches!(
            lookup(headers, &self.adapter.signature.header),
            Lookup::Absent
        )
    }

    /// Check one delivery. `url` is the URL the provider called (used by Twilio's adapter only).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        url: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, WebhookError> {
        let a = &*self.adapter;
        let entries = signature_entries(a, headers)?;

        let (ts_text, timestamp) = match &a.timestamp {
            None => (None, None),
            Some(spec) => {
                let text = timestamp_text(headers, &spec.source, &entries)?;
                let ts = parse_unix(text).ok_or(WebhookError::Malformed(
                    "timestamp is not a unix time in seconds",
                ))?;
                let skew = now.duration_since(ts).unwrap_or_else(|e| e.duration());
                if skew > self.window {
                    return Err(WebhookError::StaleTimestamp);
                }
                (Some(text), Some(ts))
            }
        };
        let delivery_id = match &a.delivery_id {
            None => None,
            Some(spec) => match lookup(headers, spec) {
                Lookup::Absent => None,
                Lookup::Many => {
                    return Err(WebhookError::Malformed(
                        "delivery id header appears more than once",
                    ))
                }
                Lookup::One(v) => Some(delivery_id(v)?),
            },
        };

        let candidates: Vec<&str> = entries
            .iter()
            .filter_map(|e| match &a.signature.prefix {
                Some(p) => e.strip_prefix(p.as_str()),
                None => Some(e),
            })
            .collect();
        if candidates.is_empty() {
            return Err(WebhookError::NoSignature);
        }

        let pieces = signed::pieces(
            a,
            &signed::Inputs {
                headers,
                url,
                body,
                timestamp: ts_text,
                id: delivery_id,
            },
        )?;
        let secret_index = self.matching_secret(&candidates, &pieces)?;

        let replay_key = match (a.id_is_signed(), delivery_id) {
            (true, Some(id)) => format!("{}:id:{}:{id}", a.name, ts_text.unwrap_or("-")),
            _ => {
                let mut h = blake3::Hasher::new();
                pieces.iter().for_each(|p| {
                    h.update(p);
                });
                format!("{}:sig:{}", a.name, h.finalize().to_hex())
            }
        };
        let remember_until = timestamp
            .unwrap_or(now)
            .checked_add(self.window)
            .unwrap_or(now);
        Ok(Verified {
            delivery_id: delivery_id.map(str::to_owned),
            replay_key,
            timestamp,
            remember_until,
            secret_index,
        })
    }

    /// The index of the first secret whose MAC over `pieces` equals one of the candidates
    /// (every pair is compared, in constant time).
    fn matching_secret(
        &self,
        candidates: &[&str],
        pieces: &[Cow<'_, [u8]>],
    ) -> Result<usize, WebhookError> {
        let a = &*self.adapter;
        let macs: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|k| mac(a.signature.algorithm, k.bytes(), pieces))
            .collect();
        let mac_len = a.signature.algorithm.mac_len();
        let mut matched = None;
        for candidate in candidates.iter().copied() {
            let Some(decoded) = decode(a.signature.encoding, candidate) else {
                continue;
            };
            // Length first: a short (or empty) candidate must never be compared as a prefix.
            if decoded.len() != mac_len {
                continue;
            }
            for (i, m) in macs.iter().enumerate() {
                if bool::from(decoded.as_slice().ct_eq(m.as_slice())) && matched.is_none() {
                    matched = Some(i);
                }
            }
        }
        matched.ok_or(WebhookError::Mismatch)
    }
}

/// The signature header's entries (one, or several split at the adapter's separator), refused
/// when the header is absent, repeated, too long, not visible ASCII, or holds too many.
fn signature_entries<'h>(
    a: &WebhookAdapter,
    headers: &'h HeaderMap,
) -> Result<Vec<&'h str>, WebhookError> {
    let value = match lookup(headers, &a.signature.header) {
        Lookup::Absent => return Err(WebhookError::NotPresent),
        Lookup::Many => {
            return Err(WebhookError::Malformed(
                "signature header appears more than once",
            ))
        }
        Lookup::One(v) => v,
    };
    if value.len() > MAX_SIGNATURE_HEADER {
        return Err(WebhookError::HeaderTooLong);
    }
    let value = value
        .to_str()
        .map_err(|_| WebhookError::Malformed("signature header is not visible ASCII"))?;
    // Whitespace around the whole value is not part of it (RFC 9110 §5.5); inside, the
    // entries are taken exactly as split: the providers' own libraries compare them without
    // trimming (`t=1, v1=…` is not a Stripe signature). Empty entries carry nothing and are
    // skipped, as those libraries skip them.
    let value = value.trim_matches([' ', '\t']);
    let entries: Vec<&str> = match a.signature.separator {
        Some(sep) => value
            .split(sep)
            .filter(|e| !e.is_empty())
            .take(MAX_SIGNATURES + 1)
            .collect(),
        None => vec![value],
    };
    if entries.len() > MAX_SIGNATURES {
        return Err(WebhookError::TooManySignatures);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
