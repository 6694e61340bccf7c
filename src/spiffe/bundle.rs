//! Trust bundles of one trust domain, in the formats operators have:
//!
//! - **X.509 authorities** ([`X509Bundle`]): PEM certificates, or a SPIFFE bundle (JSON JWK set)
//!   whose `use: "x509-svid"` entries carry the CA certificate as the first `x5c` value
//!   (X509-SVID §6.2: entries without `x5c` are ignored, values after the first are ignored).
//! - **JWT authorities** ([`JwtBundle`]): a JWK set or a SPIFFE bundle; keys with `use`
//!   `jwt-svid`, `sig` or no `use` are taken (JWT-SVID §6 / SPIFFE Trust Domain and Bundle §4),
//!   each needs a `kid`. EC P-256 / P-384 and RSA keys are supported; other key types (`oct`
//!   secrets, `OKP`) are skipped with a warning, since JWT-SVID allows neither HMAC nor EdDSA. A
//!   key's family fixes the `alg` values a token signed with it may claim, and a JWK `alg`
//!   narrows that to exactly one: this is what keeps a public key from being used as an HMAC
//!   secret.
//!
//! Parsing is strict: a malformed entry of a supported kind fails the whole bundle, so a reload
//! keeps the previous, good bundle instead of silently trusting less (or more).

use rustls_pki_types::pem::PemObject;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{
    ParsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use serde::Deserialize;

/// Why a bundle could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BundleError {
    #[error("not a valid JWK set / SPIFFE bundle: {0}")]
    Json(String),
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("no X.509 authorities (PEM certificates or `x509-svid` entries) found")]
    NoCertificates,
    #[error("unusable CA certificate: {0}")]
    BadCertificate(String),
    #[error("no usable JWT authorities (`jwt-svid` keys with a `kid`) found")]
    NoKeys,
    #[error("key {kid:?}: {reason}")]
    BadKey { kid: String, reason: String },
    #[error("key id {0:?} appears more than once")]
    DuplicateKid(String),
}

/// Each parsed bundle gets a distinct number, so caches can tell when a bundle was replaced.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn is_json(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// One JWK as far as we read it; other members are ignored.
#[derive(Debug, Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x5c: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawSet {
    keys: Vec<RawJwk>,
}

fn parse_set(bytes: &[u8]) -> Result<RawSet, BundleError> {
    serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))
}

// === X.509 ===

/// The X.509 authorities (root CAs) of one trust domain, ready to verify chains.
pub struct X509Bundle {
    roots: Vec<CertificateDer<'static>>,
    /// The same roots, for verifying an upstream's server certificate (`spiffe::upstream`).
    store: Arc<RootCertStore>,
    verifier: Arc<dyn ClientCertVerifier>,
    generation: u64,
}

impl std::fmt::Debug for X509Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Bundle")
            .field("roots", &self.roots.len())
            .field("generation", &self.generation)
            .finish()
    }
}

impl X509Bundle {
    /// Parse PEM certificates or a SPIFFE bundle (JSON), whichever `bytes` holds.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        if is_json(bytes) {
            Self::from_spiffe_json(bytes)
        } else {
            Self::from_pem(bytes)
        }
    }

    /// PEM `CERTIFICATE` blocks (other blocks are ignored).
    pub fn from_pem(bytes: &[u8]) -> Result<Self, BundleError> {
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::Pem(e.to_string()))?;
        Self::from_der(certs)
    }

    /// The `x509-svid` entries of a SPIFFE bundle.
    pub fn from_spiffe_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let set = parse_set(bytes)?;
        let mut certs = Vec::new();
        for jwk in set.keys {
            if jwk.use_.as_deref() != Some("x509-svid") {
                continue;
            }
            let Some(first) = jwk.x5c.as_ref().and_then(|v| v.first()) else {
                continue;
            };
            let der = STANDARD
                .decode(first)
                .map_err(|e| BundleError::BadCertificate(format!("x5c: {e}")))?;
            certs.push(CertificateDer::from(der));
        }
        Self::from_der(certs)
    }

    /// DER root certificates.
    pub fn from_der(roots: Vec<CertificateDer<'static>>) -> Result<Self, BundleError> {
        if roots.is_empty() {
            return Err(BundleError::NoCertificates);
        }
        let mut store = RootCertStore::empty();
        for cert in &roots {
            store
                .add(cert.clone())
                .map_err(|e| BundleError::BadCertificate(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let store = Arc::new(store);
        // Used only for its chain check (`verify_client_cert`); the TLS-facing verifier is
        // `spiffe::verifier`, which picks one of these by the client's trust domain.
        let verifier = WebPkiClientVerifier::builder_with_provider(store.clone(), provider)
            .build()
            .map_err(|e| BundleError::BadCertificate(e.to_string()))?;
        Ok(X509Bundle {
            roots,
            store,
            verifier,
            generation: next_generation(),
        })
    }

    /// The root certificates.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Distinct per parsed bundle.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the first of the roots expires (for the `cert_expiry_seconds` metric).
    pub fn earliest_expiry(&self) -> Option<SystemTime> {
        self.roots
            .iter()
            .filter_map(|c| {
                let (_, parsed) = x509_parser::parse_x509_certificate(c.as_ref()).ok()?;
                let secs = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
                Some(UNIX_EPOCH + Duration::from_secs(secs))
            })
            .min()
    }

    pub(crate) fn verifier(&self) -> &Arc<dyn ClientCertVerifier> {
        &self.verifier
    }

    pub(crate) fn root_store(&self) -> &RootCertStore {
        &self.store
    }
}

// === JWT ===

/// What kind of public key a JWT authority is; it decides which `alg` values may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// RS256/384/512 and PS256/384/512.
    Rsa,
    /// ES256.
    EcP256,
    /// ES384.
    EcP384,
}

impl KeyFamily {
    /// Whether a token with header `alg` may be verified with a key of this family.
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::EcP256 => alg == ES256,
            KeyFamily::EcP384 => alg == ES384,
        }
    }
}

/// Map a JWS `alg` name to an algorithm JWT-SVID allows (JWT-SVID §2.1): never `none`, never
/// HMAC, never EdDSA. ES512 is allowed by the spec but not supported by our JWT library.
pub fn jwt_svid_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

/// One JWT authority.
#[derive(Debug, Clone)]
pub struct JwtKey {
    key: DecodingKey,
    /// EC keys, parsed once by aws-lc-rs when the bundle loads: verifying through `jsonwebtoken`
    /// would re-parse (and re-validate) the point for every token.
    ec: Option<ParsedPublicKey>,
    family: KeyFamily,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
}

impl JwtKey {
    /// Whether a token with header `alg` may be verified with this key.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.family.allows(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// The key's family.
    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// Whether `sig_b64` (base64url, unpadded) is a valid signature by this key of
    /// `signing_input` under `alg`. `alg` must be one [`JwtKey::allows`]; any other is `false`.
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], sig_b64: &str) -> bool {
        if !self.allows(alg) {
            return false;
        }
        match &self.ec {
            Some(key) => {
                // ES256 / ES384 signatures are the fixed `r || s` form (RFC 7518 §3.4): 64 or
                // 96 bytes, i.e. 86 or 128 base64url characters. Anything longer is refused
                // before decoding.
                let max: usize = if self.family == KeyFamily::EcP384 {
                    96
                } else {
                    64
                };
                if sig_b64.len() > (max * 4).div_ceil(3) {
                    return false;
                }
                let mut sig = [0u8; 96];
                match URL_SAFE_NO_PAD.decode_slice(sig_b64, &mut sig) {
                    // Only the low-S form: callers canonicalize first (`low_s::canonical_jws`), so a
                    // high-S signature here was not meant to be accepted.
                    Ok(n) if n == max => sig.get(..n).is_some_and(|s| {
                        crate::low_s::is_low_s(s) && key.verify_sig(signing_input, s).is_ok()
                    }),
                    _ => false,
                }
            }
            None => matches!(
                jsonwebtoken::crypto::verify(sig_b64, signing_input, &self.key, alg),
                Ok(true)
            ),
        }
    }
}

/// The JWT authorities of one trust domain, by `kid`.
#[derive(Debug)]
pub struct JwtBundle {
    keys: HashMap<String, JwtKey>,
    generation: u64,
}

fn b64_len(kid: &str, field: &str, v: Option<&String>) -> Result<usize, BundleError> {
    let bad = |reason: String| BundleError::BadKey {
        kid: kid.to_owned(),
        reason,
    };
    let v = v.ok_or_else(|| bad(format!("missing `{field}`")))?;
    let raw = URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|e| bad(format!("`{field}`: {e}")))?;
    Ok(raw.len())
}

fn parse_jwt_key(kid: &str, jwk: &RawJwk) -> Result<Option<JwtKey>, BundleError> {
    let bad = |reason: String| BundleError::BadKey {
        kid: kid.to_owned(),
        reason,
    };
    let (key, ec, family) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (family, size) = if crv == "P-256" {
                (KeyFamily::EcP256, 32)
            } else {
                (KeyFamily::EcP384, 48)
            };
            let xl = b64_len(kid, "x", jwk.x.as_ref())?;
            let yl = b64_len(kid, "y", jwk.y.as_ref())?;
            if xl != size || yl != size {
                return Err(bad(format!("{crv} coordinates must be {size} bytes")));
            }
            let (x, y) = (jwk.x.as_deref(), jwk.y.as_deref());
            let key = DecodingKey::from_ec_components(x.unwrap_or(""), y.unwrap_or(""))
                .map_err(|e| bad(e.to_string()))?;
            // The uncompressed SEC1 point (0x04 || x || y), checked to be on the curve here.
            let mut point = vec![0x04];
            for c in [x, y] {
                let raw = URL_SAFE_NO_PAD
                    .decode(c.unwrap_or(""))
                    .map_err(|e| bad(e.to_string()))?;
                point.extend_from_slice(&raw);
            }
            let verification: &'static dyn VerificationAlgorithm = if family == KeyFamily::EcP256 {
                &ECDSA_P256_SHA256_FIXED
            } else {
                &ECDSA_P384_SHA384_FIXED
            };
            let parsed = ParsedPublicKey::new(verification, &point)
                .map_err(|e| bad(format!("not a point on {crv}: {e}")))?;
            (key, Some(parsed), family)
        }
        ("RSA", _) => {
            if b64_len(kid, "n", jwk.n.as_ref())? < 256 {
                return Err(bad("RSA keys must be at least 2048 bits".into()));
            }
            b64_len(kid, "e", jwk.e.as_ref())?;
            let (n, e) = (jwk.n.as_deref(), jwk.e.as_deref());
            let key = DecodingKey::from_rsa_components(n.unwrap_or(""), e.unwrap_or(""))
                .map_err(|e| bad(e.to_string()))?;
            (key, None, KeyFamily::Rsa)
        }
        (kty, crv) => {
            tracing::warn!(
                kid,
                kty,
                crv,
                "skipping a JWT authority of a type JWT-SVID does not allow"
            );
            return Ok(None);
        }
    };
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match jwt_svid_alg(name) {
            Some(a) if family.allows(a) => Some(a),
            _ => return Err(bad(format!("`alg` {name:?} does not fit the key"))),
        },
    };
    Ok(Some(JwtKey {
        key,
        ec,
        family,
        alg,
    }))
}

impl JwtBundle {
    /// Parse a JWK set or SPIFFE bundle.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let set = parse_set(bytes)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if !matches!(jwk.use_.as_deref(), None | Some("jwt-svid" | "sig")) {
                continue;
            }
            let Some(kid) = jwk.kid.as_deref().filter(|k| !k.is_empty()) else {
                tracing::warn!("skipping a JWT authority without `kid`");
                continue;
            };
            let Some(key) = parse_jwt_key(kid, jwk)? else {
                continue;
            };
            if keys.insert(kid.to_owned(), key).is_some() {
                return Err(BundleError::DuplicateKid(kid.to_owned()));
            }
        }
        if keys.is_empty() {
            return Err(BundleError::NoKeys);
        }
        Ok(JwtBundle {
            keys,
            generation: next_generation(),
        })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&JwtKey> {
        self.keys.get(kid)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true for a parsed bundle.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Distinct per parsed bundle.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The keys of both bundles (a `kid` in both: `self`'s key), as a new bundle.
    pub fn merged(&self, other: &JwtBundle) -> JwtBundle {
        let mut keys = other.keys.clone();
        for (kid, k) in &self.keys {
            keys.insert(kid.clone(), k.clone());
        }
        JwtBundle {
            keys,
            generation: next_generation(),
        }
    }
}

#[cfg(test)]
mod tests;
