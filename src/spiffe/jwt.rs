//! JWT-SVID validation (`spiffe/standards/JWT-SVID.md`), against the trust store.
//!
//! In order, a token must:
//!
//! 1. be at most [`MAX_TOKEN_BYTES`] and a JWS compact serialization (three base64url parts;
//!    JWE and JSON serializations are refused, §5.1);
//! 2. have `alg` RS256/384/512, PS256/384/512, ES256 or ES384 (§2.1: never `none`, HMAC or
//!    EdDSA; ES512 is allowed by the spec but not by our JWT library), `typ` absent, `JWT` or
//!    `JOSE` (§2.3), no `crit`, and a `kid`. Key-carrying headers (`jku`, `x5u`, `jwk`, `x5c`)
//!    are ignored, never followed: keys come only from the trust store;
//! 3. name in `sub` a SPIFFE ID with a path, of a trust domain this validator accepts (§3.1);
//! 4. be signed by the key with that `kid` **in that trust domain's** JWT bundle, with an `alg`
//!    the key's family allows (an EC or RSA public key can never act as an HMAC secret);
//! 5. once the signature holds: have `exp` in the future and `nbf` (if any) in the past, both
//!    with the configured leeway, judged at the caller's `now` (§3.3), and an `aud` containing
//!    the configured audience (§3.2). `exp` and `nbf` must be whole numbers of seconds, and `exp`
//!    at most [`MAX_EXP_AHEAD`] ahead: a token "valid until 1e300" is refused, not trusted forever.
//!    ECDSA signatures are verified in low-S form (the high-S twin is rewritten first, see
//!    [`crate::low_s`]).
//!
//! A verified token also reports its `cnf` (`x5t#S256`, which the caller must prove with its
//! client certificate) and, when the gateway itself issued it, its lineage claims
//! ([`IssuedLineage`]; `docs/security.md`, "Tokens and lineage").
//!
//! Verified tokens are cached by SHA-256 until `exp` (plus leeway), as long as the trust domain's
//! JWT bundle is the one they were verified with; a reload re-verifies them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::bundle::jwt_svid_alg;
use super::store::TrustStore;
use crate::identity::{IdError, SpiffeId, TrustDomain};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Verified tokens remembered unless configured otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// Furthest `exp` accepted, from now (plus leeway): the longest lifetime the gateway itself
/// issues (`[issuer] ttl` is at most 24h); JWT-SVIDs are meant to be short-lived.
pub const MAX_EXP_AHEAD: Duration = Duration::from_secs(86_400);

/// What a validator accepts.
#[derive(Debug, Clone)]
pub struct JwtSvidSettings {
    /// `sub` must belong to one of these.
    pub trust_domains: Vec<TrustDomain>,
    /// `aud` must contain this.
    pub audience: String,
    /// Tolerated clock skew on `exp` and `nbf`.
    pub leeway: Duration,
    /// Bound on the verified-token cache (0 disables it).
    pub cache_entries: usize,
}

impl JwtSvidSettings {
    /// Settings with the default leeway and cache size.
    pub fn new(trust_domains: Vec<TrustDomain>, audience: impl Into<String>) -> Self {
        JwtSvidSettings {
            trust_domains,
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }
}

/// Why a token is not an acceptable JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSvidError {
    #[error("token larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("alg {0:?} is not allowed for JWT-SVIDs")]
    Alg(String),
    #[error("typ must be absent, JWT or JOSE")]
    Typ,
    #[error("crit header parameters are not supported")]
    Crit,
    #[error("no kid in the header")]
    NoKid,
    #[error("sub is not a SPIFFE ID: {0}")]
    Sub(IdError),
    #[error("sub names a trust domain, not a workload")]
    RootSub,
    #[error("trust domain {0:?} is not accepted")]
    TrustDomain(String),
    #[error("no JWT authority with this kid in the subject's trust domain")]
    UnknownKey,
    #[error("the key's type does not allow this alg")]
    KeyAlg,
    #[error("signature does not verify")]
    Signature,
    #[error("no exp claim")]
    NoExp,
    #[error("exp or nbf is not a whole number of seconds, or exp is too far ahead")]
    Horizon,
    #[error("unsupported cnf (only x5t#S256 can be checked)")]
    Cnf,
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("aud does not contain the expected audience")]
    Audience,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Aud {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    aud: Option<Aud>,
    /// Read as any JSON value and judged after the signature: whole seconds only. Present means
    /// `Some`, even as `null` (see [`present`]).
    #[serde(default, deserialize_with = "present")]
    exp: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    nbf: Option<serde_json::Value>,
    /// Only a string `jti` is kept (for revocation by token id); any other type is ignored.
    jti: Option<serde_json::Value>,
    /// RFC 8705 confirmation; judged after the signature (any shape parses, `null` included).
    #[serde(default, deserialize_with = "present")]
    cnf: Option<serde_json::Value>,
    /// Lineage claims, read only from tokens the gateway issued (any shape parses).
    legacy: Option<serde_json::Value>,
    act: Option<serde_json::Value>,
    amr: Option<serde_json::Value>,
}

/// What a token minted by this gateway says about where it came from: the root credential (the
/// one first presented to the gateway) and the `jti`s of the tokens before this one, root first.
/// Read from `act.lineage`, or, for tokens minted before that claim existed, from `legacy`/`amr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLineage {
    /// The root credential's config name.
    pub credential: String,
    /// Its kind as written in config (`api-key`, `mtls`…).
    pub kind: String,
    /// Its legacy user or key id.
    pub principal: Option<String>,
    /// The root `jti` and every later one before the presented token, oldest first.
    pub jtis: Vec<String>,
}

/// A verified token: who, and what it carries that later stages must honour.
#[derive(Debug, Clone)]
pub struct Verified {
    pub id: SpiffeId,
    pub jti: Option<Arc<str>>,
    /// `exp`, whole seconds since the epoch.
    pub exp: u64,
    /// `cnf.x5t#S256`: the caller must present this certificate.
    pub cnf: Option<Arc<str>>,
    /// Set only for tokens signed with the gateway's own issuer keys.
    pub issued: Option<Arc<IssuedLineage>>,
}

/// A claim that is there is `Some`, even when its value is `null` (serde's `Option` would read
/// `"nbf": null` as no `nbf` at all): `null` is neither a NumericDate nor a confirmation, so such
/// a token fails the claim's check instead of passing as if the claim had been left out, as a
/// stricter verifier behind the gateway would judge it.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// A whole number of seconds (`exp`, `nbf`): JSON integers only, no fractions, no strings.
fn numeric_date(v: &serde_json::Value) -> Result<u64, JwtSvidError> {
    v.as_u64().ok_or(JwtSvidError::Horizon)
}

/// `cnf`: absent, or an object whose only confirmation method is `x5t#S256` (base64url).
fn cnf_of(v: Option<&serde_json::Value>) -> Result<Option<Arc<str>>, JwtSvidError> {
    let Some(v) = v else { return Ok(None) };
    let obj = v.as_object().ok_or(JwtSvidError::Cnf)?;
    let x5t = obj.get("x5t#S256").and_then(|x| x.as_str());
    match x5t {
        Some(x) if obj.len() == 1 && !x.is_empty() && x.len() <= 64 => Ok(Some(Arc::from(x))),
        // A confirmation method this gateway cannot check (jkt, jwk…): fail closed.
        _ => Err(JwtSvidError::Cnf),
    }
}

fn str_of(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_owned)
}

/// The lineage of a token the gateway issued (see [`IssuedLineage`]).
fn issued_lineage(c: &Claims) -> Option<IssuedLineage> {
    if let Some(l) = c.act.as_ref().and_then(|a| a.get("lineage")) {
        let mut jtis: Vec<String> = str_of(l, "jti").into_iter().collect();
        if let Some(chain) = l.get("chain").and_then(|c| c.as_array()) {
            jtis.extend(chain.iter().filter_map(|j| j.as_str().map(str::to_owned)));
        }
        return Some(IssuedLineage {
            credential: str_of(l, "credential")?,
            kind: str_of(l, "kind")?,
            principal: str_of(l, "principal"),
            jtis,
        });
    }
    // Minted before `act.lineage`: a translated legacy credential still names its root.
    let legacy = c.legacy.as_ref()?;
    let kind = c.amr.as_ref()?.get(0)?.as_str()?.to_owned();
    Some(IssuedLineage {
        credential: str_of(legacy, "credential")?,
        kind,
        principal: str_of(legacy, "principal"),
        jtis: Vec::new(),
    })
}

fn decode_part<T: DeserializeOwned>(b64: &str, what: &'static str) -> Result<T, JwtSvidError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| JwtSvidError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| JwtSvidError::Malformed(what))
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

struct Cached {
    verified: Verified,
    exp: f64,
    nbf: Option<f64>,
    /// Generation of the bundle that verified it (the trust domain's, or the issuer's).
    generation: u64,
    by_issuer: bool,
}

/// The gateway's own signing keys as this module needs them: the public JWKS of the current key
/// ring and its generation. Implemented by `crate::token::KeySet`; spiffe does not depend on token.
pub trait IssuerJwks: Send + Sync + std::fmt::Debug {
    /// The generation of the current key ring.
    fn generation(&self) -> u64;
    /// The current key ring's generation and its public keys as a JWKS document.
    fn jwks(&self) -> (u64, bytes::Bytes);
}

/// The gateway's own `[issuer]` keys as an extra JWT bundle (`trust_issuer = true`): tokens the
/// gateway minted (for example by token exchange) are accepted for IDs of the validator's trust
/// domains. Rebuilt from the key set whenever it reloads.
#[derive(Debug)]
pub struct IssuerKeys {
    keys: Arc<dyn IssuerJwks>,
    bundle: Mutex<Option<(u64, Arc<super::bundle::JwtBundle>)>>,
}

impl IssuerKeys {
    /// Follow `keys`.
    pub fn new(keys: Arc<dyn IssuerJwks>) -> Self {
        IssuerKeys {
            keys,
            bundle: Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Arc<super::bundle::JwtBundle>> {
        let generation = self.keys.generation();
        let mut slot = self.bundle.lock().ok()?;
        if let Some((g, b)) = slot.as_ref() {
            if *g == generation {
                return Some(b.clone());
            }
        }
        let (generation, jwks) = self.keys.jwks();
        let b = Arc::new(super::bundle::JwtBundle::parse(&jwks).ok()?);
        *slot = Some((generation, b.clone()));
        Some(b)
    }
}

/// Validates JWT-SVIDs for one audience and set of trust domains, with a cache.
pub struct JwtSvidValidator {
    store: Arc<TrustStore>,
    issuer: Option<IssuerKeys>,
    settings: JwtSvidSettings,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    verifications: AtomicU64,
}

impl std::fmt::Debug for JwtSvidValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvidValidator")
            .field("settings", &self.settings)
            .field("cached", &self.cache_len())
            .finish()
    }
}

impl JwtSvidValidator {
    /// A validator reading the current JWT bundles of `store`.
    pub fn new(store: Arc<TrustStore>, settings: JwtSvidSettings) -> Self {
        super::install_jwt_crypto();
        JwtSvidValidator {
            store,
            issuer: None,
            settings,
            cache: Mutex::new(HashMap::new()),
            verifications: AtomicU64::new(0),
        }
    }

    /// Also accept tokens signed by the gateway's own issuer keys (see [`IssuerKeys`]).
    pub fn trusting_issuer(mut self, keys: Arc<dyn IssuerJwks>) -> Self {
        self.issuer = Some(IssuerKeys::new(keys));
        self
    }

    /// Whether tokens signed with the gateway's own issuer keys are accepted.
    pub fn trusts_issuer(&self) -> bool {
        self.issuer.is_some()
    }

    /// The settings.
    pub fn settings(&self) -> &JwtSvidSettings {
        &self.settings
    }

    /// Validate `token` at `now`; the caller's SPIFFE ID.
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<SpiffeId, JwtSvidError> {
        self.validate_with_jti(token, now).map(|(id, _)| id)
    }

    /// [`Self::validate`], also returning the token's `jti` (when it is a string), so that a
    /// revocation by token id can be checked.
    pub fn validate_with_jti(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(SpiffeId, Option<Arc<str>>), JwtSvidError> {
        self.verify_token(token, now).map(|v| (v.id, v.jti))
    }

    /// [`Self::validate`], with everything the token carries ([`Verified`]).
    pub fn verify_token(&self, token: &str, now: SystemTime) -> Result<Verified, JwtSvidError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtSvidError::TooLarge);
        }
        let now = unix_secs(now);
        // Both encodings of an ECDSA signature are one token: cache and verify the low-S form.
        let token = &*crate::low_s::canonical_jws(token);
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache_hit(&digest, now) {
            return Ok(hit);
        }
        let entry = self.verify(token, now)?;
        let out = entry.verified.clone();
        self.cache_insert(digest, entry, now);
        Ok(out)
    }

    fn verify(&self, token: &str, now: f64) -> Result<Cached, JwtSvidError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtSvidError::Malformed("not a JWS compact serialization"));
        };
        if h64.is_empty() || p64.is_empty() || s64.is_empty() {
            return Err(JwtSvidError::Malformed("empty part"));
        }
        let header: Header = decode_part(h64, "header")?;
        let alg = jwt_svid_alg(&header.alg)
            .ok_or_else(|| JwtSvidError::Alg(header.alg.chars().take(16).collect()))?;
        if !matches!(header.typ.as_deref(), None | Some("JWT" | "JOSE")) {
            return Err(JwtSvidError::Typ);
        }
        if header.crit.is_some() {
            return Err(JwtSvidError::Crit);
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(JwtSvidError::NoKid)?;
        // Read before the signature is checked, only to pick the trust domain whose keys may
        // have signed it; every claim is judged after verification.
        let claims: Claims = decode_part(p64, "claims")?;
        let sub = claims
            .sub
            .as_deref()
            .ok_or(JwtSvidError::Sub(IdError::Empty))?;
        let id = SpiffeId::parse(sub).map_err(JwtSvidError::Sub)?;
        if id.is_root() {
            return Err(JwtSvidError::RootSub);
        }
        if !self
            .settings
            .trust_domains
            .iter()
            .any(|td| id.is_member_of(td))
        {
            return Err(JwtSvidError::TrustDomain(id.trust_domain().to_owned()));
        }
        let in_store = self
            .store
            .jwt(id.trust_domain())
            .filter(|b| b.get(&kid).is_some());
        let (bundle, by_issuer) = match in_store {
            Some(b) => (b, false),
            None => (
                self.issuer
                    .as_ref()
                    .and_then(IssuerKeys::current)
                    .filter(|b| b.get(&kid).is_some())
                    .ok_or(JwtSvidError::UnknownKey)?,
                true,
            ),
        };
        let key = bundle.get(&kid).ok_or(JwtSvidError::UnknownKey)?;
        if !key.allows(alg) {
            return Err(JwtSvidError::KeyAlg);
        }
        let signed = token
            .get(..h64.len() + 1 + p64.len())
            .ok_or(JwtSvidError::Malformed("split"))?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        if !key.verify(alg, signed.as_bytes(), s64) {
            return Err(JwtSvidError::Signature);
        }
        let leeway = self.settings.leeway.as_secs_f64();
        let exp_secs = numeric_date(claims.exp.as_ref().ok_or(JwtSvidError::NoExp)?)?;
        let nbf = claims.nbf.as_ref().map(numeric_date).transpose()?;
        // u64 → f64 is exact far beyond any horizon we accept; larger values fail the bound.
        let (exp, nbf) = (exp_secs as f64, nbf.map(|n| n as f64));
        if now >= exp + leeway {
            return Err(JwtSvidError::Expired);
        }
        if exp > now + MAX_EXP_AHEAD.as_secs_f64() + leeway {
            return Err(JwtSvidError::Horizon);
        }
        if nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(JwtSvidError::NotYetValid);
        }
        let audience = self.settings.audience.as_str();
        let aud_ok = match &claims.aud {
            Some(Aud::One(a)) => a == audience,
            Some(Aud::Many(v)) => v.iter().any(|a| a == audience),
            None => false,
        };
        if !aud_ok {
            return Err(JwtSvidError::Audience);
        }
        let jti = match &claims.jti {
            Some(serde_json::Value::String(j)) if !j.is_empty() => Some(Arc::from(j.as_str())),
            _ => None,
        };
        let cnf = cnf_of(claims.cnf.as_ref())?;
        let issued = if by_issuer {
            issued_lineage(&claims).map(Arc::new)
        } else {
            None
        };
        Ok(Cached {
            verified: Verified {
                id,
                jti,
                exp: exp_secs,
                cnf,
                issued,
            },
            exp,
            nbf,
            generation: bundle.generation(),
            by_issuer,
        })
    }

    fn cache_hit(&self, digest: &[u8; 32], now: f64) -> Option<Verified> {
        let mut cache = self.cache.lock().ok()?;
        let e = cache.get(digest)?;
        let leeway = self.settings.leeway.as_secs_f64();
        let in_time = now < e.exp + leeway && e.nbf.is_none_or(|nbf| now + leeway >= nbf);
        let generation = if e.by_issuer {
            self.issuer
                .as_ref()
                .and_then(IssuerKeys::current)
                .map(|b| b.generation())
        } else {
            self.store
                .jwt(e.verified.id.trust_domain())
                .map(|b| b.generation())
        };
        if in_time && generation == Some(e.generation) {
            return Some(e.verified.clone());
        }
        // Expired, or its bundle changed: verify afresh.
        cache.remove(digest);
        None
    }

    fn cache_insert(&self, digest: [u8; 32], entry: Cached, now: f64) {
        let cap = self.settings.cache_entries;
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cap == 0 {
            return;
        }
        if cache.len() >= cap {
            let leeway = self.settings.leeway.as_secs_f64();
            cache.retain(|_, e| now < e.exp + leeway);
        }
        if cache.len() >= cap {
            let soonest = cache
                .iter()
                .min_by(|a, b| a.1.exp.total_cmp(&b.1.exp))
                .map(|(k, _)| *k);
            if let Some(k) = soonest {
                cache.remove(&k);
            }
        }
        cache.insert(digest, entry);
    }

    /// Forget every cached token of `identity` (revocation). Returns how many were dropped.
    pub fn evict_identity(&self, identity: &str) -> usize {
        let Ok(mut cache) = self.cache.lock() else {
            return 0;
        };
        let before = cache.len();
        cache.retain(|_, e| e.verified.id.as_str() != identity);
        before - cache.len()
    }

    /// Signature verifications performed so far (cache misses that got that far).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Tokens in the cache.
    pub fn cache_len(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }
}

#[cfg(test)]
mod tests;
