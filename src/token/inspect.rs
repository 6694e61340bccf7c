//! `portcullis token inspect TOKEN`: verify a token against a JWKS document (the caller fetches
//! the gateway's `/.well-known/jwks.json`) and show its header and claims.
//!
//! The algorithm comes from the key, never from the token: the key is found by `kid`, its `alg`
//! (or, when absent, its curve) decides the algorithm, and the token's `alg` must agree. `none`
//! and HMAC are refused. An expired or not-yet-valid token with a good signature is still shown,
//! marked as such, since that is usually what one is debugging.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;

/// Why a token could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not a compact JWS (expected three base64url parts separated by dots)")]
    Malformed,
    #[error("the token header is not a JSON object: {0}")]
    Header(String),
    #[error("the token header has no kid; cannot choose a key")]
    NoKid,
    #[error("the token's alg {0:?} is never accepted (only asymmetric signatures)")]
    ForbiddenAlg(String),
    #[error("the JWKS is not a JSON key set: {0}")]
    Jwks(String),
    #[error("no key with kid {0:?} in the JWKS (rotated out, or another issuer's token)")]
    UnknownKid(String),
    #[error("the key {kid:?} is unusable: {reason}")]
    Key { kid: String, reason: String },
    #[error("the token says alg {token:?} but its key is for {key:?}")]
    AlgMismatch { token: String, key: String },
    #[error("the signature does not verify with key {0:?}")]
    BadSignature(String),
    #[error("verification failed: {0}")]
    Verify(String),
}

/// Whether the (correctly signed) token is valid at the time of inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Within `nbf`..`exp`.
    Valid,
    /// Past `exp` by this much.
    Expired(Duration),
    /// Before `nbf` by this much.
    NotYetValid(Duration),
    /// No `exp` claim.
    NoExpiry,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The protected header as sent.
    pub header: Value,
    /// The claims as sent.
    pub claims: Value,
    /// The key that verified the signature.
    pub kid: String,
    /// The algorithm it was verified with.
    pub alg: Algorithm,
    /// Time validity at inspection.
    pub validity: Validity,
}

fn b64_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// The algorithm a JWK is for: its `alg`, else what its key type and curve imply.
fn key_alg(jwk: &Value, kid: &str) -> Result<Algorithm, InspectError> {
    let bad = |reason: &str| InspectError::Key {
        kid: kid.to_owned(),
        reason: reason.to_owned(),
    };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    if jwk
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return Err(bad("its use is not sig"));
    }
    let alg = match jwk.get("alg").and_then(Value::as_str) {
        Some(a) => Algorithm::from_str(a).map_err(|_| bad("unsupported alg"))?,
        None => match (kty, jwk.get("crv").and_then(Value::as_str)) {
            ("EC", Some("P-256")) => Algorithm::ES256,
            ("EC", Some("P-384")) => Algorithm::ES384,
            ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
            _ => return Err(bad("it has no alg and its type does not imply one")),
        },
    };
    let expected_kty = match alg.family() {
        AlgorithmFamily::Hmac => return Err(bad("symmetric keys are never accepted")),
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "OKP",
        AlgorithmFamily::Rsa => "RSA",
    };
    if kty != expected_kty {
        return Err(bad("its kty does not match its alg"));
    }
    Ok(alg)
}

fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{alg:?}"))
}

/// Verify `token` (a leading `Bearer ` is ignored) against the JWKS document `jwks` and report
/// its validity at `now`.
pub fn inspect(token: &str, jwks: &[u8], now: SystemTime) -> Result<Inspection, InspectError> {
    super::install_jwt_provider();
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, _, _] = parts.as_slice() else {
        return Err(InspectError::Malformed);
    };
    let header = b64_json(header_b64)
        .ok_or_else(|| InspectError::Header("undecodable or not an object".into()))?;
    let token_alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| InspectError::Header("no alg".into()))?;
    if token_alg.eq_ignore_ascii_case("none") || token_alg.starts_with("HS") {
        return Err(InspectError::ForbiddenAlg(token_alg.to_owned()));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(InspectError::NoKid)?
        .to_owned();
    let kid = kid.as_str();

    let set: Value = serde_json::from_slice(jwks).map_err(|e| InspectError::Jwks(e.to_string()))?;
    let keys = set
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| InspectError::Jwks("no \"keys\" array".into()))?;
    let jwk_value = keys
        .iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .ok_or_else(|| InspectError::UnknownKid(kid.to_owned()))?;
    let alg = key_alg(jwk_value, kid)?;
    if alg_name(alg) != token_alg {
        return Err(InspectError::AlgMismatch {
            token: token_alg.to_owned(),
            key: alg_name(alg),
        });
    }
    let key_err = |e: &dyn std::fmt::Display| InspectError::Key {
        kid: kid.to_owned(),
        reason: e.to_string(),
    };
    let jwk: Jwk = serde_json::from_value(jwk_value.clone()).map_err(|e| key_err(&e))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| key_err(&e))?;

    // Signature only: times are judged below so an expired token is still shown.
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                InspectError::BadSignature(kid.to_owned())
            }
            _ => InspectError::Verify(e.to_string()),
        })?;

    let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claim = |name: &str| data.claims.get(name).and_then(Value::as_u64);
    let validity = match (claim("exp"), claim("nbf")) {
        (None, _) => Validity::NoExpiry,
        (Some(exp), _) if exp <= now_s => Validity::Expired(Duration::from_secs(now_s - exp)),
        (_, Some(nbf)) if nbf > now_s => Validity::NotYetValid(Duration::from_secs(nbf - now_s)),
        _ => Validity::Valid,
    };
    Ok(Inspection {
        header,
        claims: data.claims,
        kid: kid.to_owned(),
        alg,
        validity,
    })
}

fn at(secs: Option<u64>) -> String {
    secs.map(|s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string())
        .unwrap_or_else(|| "-".into())
}

impl Inspection {
    /// One word for the validity: `valid`, `EXPIRED`, `NOT-YET-VALID`, `NO-EXPIRY`.
    pub fn status(&self) -> &'static str {
        match self.validity {
            Validity::Valid => "valid",
            Validity::Expired(_) => "EXPIRED",
            Validity::NotYetValid(_) => "NOT-YET-VALID",
            Validity::NoExpiry => "NO-EXPIRY",
        }
    }

    /// For `--json`: `{"status", "kid", "alg", "header", "claims"}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "status": self.status(),
            "kid": self.kid,
            "alg": alg_name(self.alg),
            "header": self.header,
            "claims": self.claims,
        })
    }

    /// Human-readable report: signature, status with times, then header and claims as pretty JSON.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let claim = |name: &str| self.claims.get(name).and_then(Value::as_u64);
        let _ = writeln!(
            out,
            "signature: valid (kid {}, {})",
            self.kid,
            alg_name(self.alg)
        );
        let detail = match self.validity {
            Validity::Valid => String::new(),
            Validity::Expired(d) => format!(" {} ago", humantime::format_duration(d)),
            Validity::NotYetValid(d) => format!(" for another {}", humantime::format_duration(d)),
            Validity::NoExpiry => " (the token has no exp claim)".into(),
        };
        let _ = writeln!(out, "status:    {}{detail}", self.status());
        let _ = writeln!(
            out,
            "issued:    {}   not before: {}   expires: {}",
            at(claim("iat")),
            at(claim("nbf")),
            at(claim("exp"))
        );
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let _ = writeln!(out, "header:\n{}", pretty(&self.header));
        let _ = writeln!(out, "claims:\n{}", pretty(&self.claims));
        out
    }
}

#[cfg(test)]
mod tests;
