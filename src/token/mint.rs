//! Minting (`docs/tokens.md`): the claims of a token for one caller and one route, signed by the
//! current signing key as a compact JWS assembled by hand (pre-encoded header, serde claims, one
//! aws-lc-rs signature).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderValue;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::keys::{Alg, KeyError, Typ};
use super::keyset::KeySet;
use crate::conn::TlsInfo;
use crate::identity::profile::Profile;
use crate::identity::{Credential, Kind};

/// The shortest and longest `[issuer] ttl` accepted.
pub const TTL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));

/// What a token profile (defined in base, `identity::profile`) means for signing.
impl Profile {
    /// Whether tokens of this profile may be signed with `alg` (JWT-SVID allows no EdDSA).
    pub const fn allows(self, alg: Alg) -> bool {
        !matches!((self, alg), (Profile::JwtSvid, Alg::EdDsa))
    }

    const fn typ(self) -> Typ {
        match self {
            Profile::JwtSvid => Typ::Jwt,
            Profile::Rfc9068 => Typ::AtJwt,
        }
    }
}

impl FromStr for Profile {
    type Err = IssuerError;

    fn from_str(s: &str) -> Result<Self, IssuerError> {
        match s {
            "jwt-svid" => Ok(Profile::JwtSvid),
            "rfc9068" => Ok(Profile::Rfc9068),
            _ => Err(IssuerError::UnknownProfile(s.to_owned())),
        }
    }
}

/// Why the issuer could not be built or a token minted.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("url must be an http(s) URL, got {0:?}")]
    Url(String),
    #[error("spiffe_id must be a SPIFFE ID (spiffe://…), got {0:?}")]
    SpiffeId(String),
    #[error("ttl must be between 1s and 24h, got {0:?}")]
    Ttl(Duration),
    #[error("unknown token profile {0:?}: expected jwt-svid or rfc9068")]
    UnknownProfile(String),
    #[error("the {profile} token profile cannot be signed with {alg} (the signing key is {alg}; jwt-svid needs ES256)")]
    ProfileAlg { profile: &'static str, alg: Alg },
    #[error("a token needs a subject and an audience")]
    Incomplete,
    #[error("the system clock is before 1970")]
    Clock,
    #[error("random number generator failed")]
    Random,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("claims could not be encoded: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the signed token is not a valid header value")]
    HeaderValue,
}

/// The static credential a token stands in for (`legacy` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Legacy<'a> {
    /// The credential's config name (`racf`, `partner-keys`, …).
    pub credential: &'a str,
    /// The legacy user or key id; never a secret. Omitted from the claim when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'a str>,
}

/// Where a token comes from (`act.lineage`): the root credential first presented to the gateway
/// and the `jti`s of the tokens between it and this one (`docs/security.md`, "Tokens and
/// lineage"). Tokens presented back are held to their whole lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineageRef<'a> {
    /// The root credential's config name.
    pub credential: &'a str,
    /// Its kind.
    pub kind: Kind,
    /// Its legacy user or key id.
    pub principal: Option<&'a str>,
    /// Root `jti` first, then every later token's, oldest first (empty for a first token minted
    /// from a static credential or certificate).
    pub jtis: &'a [Arc<str>],
    /// The new token must not outlive this (`exp` of the token it is minted from).
    pub not_after: Option<u64>,
}

/// Everything a minted token says about the caller. Two equal requests get equal claims (except
/// times and `jti`), which is what makes a token reusable ([`super::TokenCache`] keys on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MintRequest<'a> {
    /// The caller's SPIFFE ID (`sub`).
    pub identity: &'a str,
    /// The route's `upstream.audience` (`aud`).
    pub audience: &'a str,
    /// How the caller authenticated (`amr`).
    pub kind: Kind,
    /// The route's `upstream.token_profile`.
    pub profile: Profile,
    /// RFC 8705 `x5t#S256` of the caller's client certificate (see [`x5t_s256`]), when it used mTLS.
    pub cnf: Option<&'a str>,
    /// Set when a static credential is being translated (directly, or as the root of a token).
    pub legacy: Option<Legacy<'a>>,
    /// The lineage (`act.lineage`), and the `exp` it may not outlive.
    pub lineage: Option<LineageRef<'a>>,
}

impl<'a> MintRequest<'a> {
    /// The request for an authenticated caller: its lineage is the one of the token it
    /// presented, or starts with its own credential; `legacy` is filled when the root is a legacy
    /// kind (so a re-exchanged token still says which static secret it stands for).
    pub fn for_credential(
        cred: &'a Credential,
        audience: &'a str,
        profile: Profile,
        cnf: Option<&'a str>,
    ) -> Self {
        let lineage = match cred.lineage.as_deref() {
            Some(l) => LineageRef {
                credential: &l.credential,
                kind: l.kind,
                principal: l.principal.as_deref(),
                jtis: &l.jtis,
                not_after: l.not_after,
            },
            None => LineageRef {
                credential: &cred.name,
                kind: cred.kind,
                principal: cred.principal.as_deref(),
                jtis: cred.jti.as_slice(),
                not_after: None,
            },
        };
        MintRequest {
            identity: &cred.identity,
            audience,
            kind: cred.kind,
            profile,
            cnf,
            legacy: lineage.kind.is_legacy().then_some(Legacy {
                credential: lineage.credential,
                principal: lineage.principal,
            }),
            lineage: Some(lineage),
        }
    }
}

/// RFC 8705 certificate thumbprint: base64url SHA-256 of the DER certificate.
pub fn x5t_s256(cert_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(cert_der))
}

/// `Bearer <token>` and `<token>` as sensitive header values over one buffer.
pub(crate) fn header_values(token: &str) -> Result<(HeaderValue, HeaderValue), IssuerError> {
    const SCHEME: &str = "Bearer ";
    let bytes = bytes::Bytes::from(format!("{SCHEME}{token}"));
    let value = |b: bytes::Bytes| {
        HeaderValue::from_maybe_shared(b)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| IssuerError::HeaderValue)
    };
    Ok((value(bytes.clone())?, value(bytes.slice(SCHEME.len()..))?))
}

/// A signed token. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The compact JWS.
    pub token: Arc<str>,
    /// `Bearer <token>` as a (sensitive) header value, built once: every request that reuses the
    /// token only clones it.
    pub bearer: HeaderValue,
    /// The token alone as a (sensitive) header value, sharing `bearer`'s bytes.
    pub bare: HeaderValue,
    /// Its `jti`.
    pub jti: Arc<str>,
    /// The `kid` that signed it.
    pub kid: Arc<str>,
    /// `iat` (whole seconds).
    pub iat: SystemTime,
    /// `exp` (whole seconds).
    pub exp: SystemTime,
}

impl Minted {
    /// Time left (`expires_in` of a token-exchange response); zero once expired.
    pub fn expires_in(&self, now: SystemTime) -> Duration {
        self.exp.duration_since(now).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct Act<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineage: Option<LineageClaim<'a>>,
}

/// `act.lineage`: `{"credential", "kind", "principal"?, "jti"? (root), "chain"? (later jtis)}`.
#[derive(Serialize)]
struct LineageClaim<'a> {
    credential: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    chain: &'a [Arc<str>],
}

impl<'a> LineageClaim<'a> {
    fn of(l: &LineageRef<'a>) -> Self {
        let (jti, chain) = match l.jtis.split_first() {
            Some((root, rest)) => (Some(&**root), rest),
            None => (None, &[][..]),
        };
        LineageClaim {
            credential: l.credential,
            kind: l.kind.as_str(),
            principal: l.principal,
            jti,
            chain,
        }
    }
}

#[derive(Serialize)]
struct Cnf<'a> {
    #[serde(rename = "x5t#S256")]
    x5t_s256: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    amr: [&'static str; 1],
    act: Act<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Cnf<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy: Option<Legacy<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

/// 128 random bits, base64url.
fn new_jti() -> Result<String, IssuerError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| IssuerError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// The gateway as a token issuer (`[issuer]`).
#[derive(Debug)]
pub struct Issuer {
    url: Arc<str>,
    spiffe_id: Arc<str>,
    ttl: Duration,
    keys: Arc<KeySet>,
}

impl Issuer {
    /// `url` becomes `iss` verbatim, `spiffe_id` the `act.sub`; `ttl` is cut to whole seconds.
    pub fn new(
        url: &str,
        spiffe_id: &str,
        ttl: Duration,
        keys: Arc<KeySet>,
    ) -> Result<Self, IssuerError> {
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if !host.is_some_and(|h| !h.is_empty() && !h.contains(['?', '#', ' '])) {
            return Err(IssuerError::Url(url.to_owned()));
        }
        if !spiffe_id
            .strip_prefix("spiffe://")
            .is_some_and(|r| !r.is_empty() && !r.contains(['?', '#', ' ']))
        {
            return Err(IssuerError::SpiffeId(spiffe_id.to_owned()));
        }
        if ttl < TTL_RANGE.0 || ttl > TTL_RANGE.1 {
            return Err(IssuerError::Ttl(ttl));
        }
        Ok(Issuer {
            url: url.into(),
            spiffe_id: spiffe_id.into(),
            ttl: Duration::from_secs(ttl.as_secs()),
            keys,
        })
    }

    /// `iss`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The gateway's own SPIFFE ID (`act.sub`).
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// Lifetime of minted tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// Whether the current signing key can sign this profile (for `portcullis check`).
    pub fn check_profile(&self, profile: Profile) -> Result<(), IssuerError> {
        let alg = self.keys.current().signer().alg();
        if profile.allows(alg) {
            Ok(())
        } else {
            Err(IssuerError::ProfileAlg {
                profile: profile.as_str(),
                alg,
            })
        }
    }

    /// Sign a new token for `req`, valid from `now` for `ttl`.
    pub fn mint(&self, req: &MintRequest<'_>, now: SystemTime) -> Result<Minted, IssuerError> {
        if req.identity.is_empty() || req.audience.is_empty() {
            return Err(IssuerError::Incomplete);
        }
        let ring = self.keys.current();
        let key = ring.signer();
        if !req.profile.allows(key.alg()) {
            return Err(IssuerError::ProfileAlg {
                profile: req.profile.as_str(),
                alg: key.alg(),
            });
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| IssuerError::Clock)?
            .as_secs();
        // Never outlive the token this one is minted from (a re-exchange cannot extend it).
        let exp = iat
            .saturating_add(self.ttl.as_secs())
            .min(req.lineage.and_then(|l| l.not_after).unwrap_or(u64::MAX))
            .max(iat);
        let jti = new_jti()?;
        let claims = Claims {
            iss: &self.url,
            sub: req.identity,
            aud: req.audience,
            iat,
            nbf: iat,
            exp,
            jti: &jti,
            amr: [req.kind.as_str()],
            act: Act {
                sub: &self.spiffe_id,
                lineage: req.lineage.as_ref().map(LineageClaim::of),
            },
            cnf: req.cnf.map(|x5t_s256| Cnf { x5t_s256 }),
            legacy: req.legacy,
            client_id: (req.profile == Profile::Rfc9068).then_some(req.identity),
        };
        let payload = serde_json::to_vec(&claims)?;
        let header = key.encoded_header(req.profile.typ());
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 96);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let sig = key.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut token);
        let (bearer, bare) = header_values(&token)?;
        Ok(Minted {
            token: token.into(),
            bearer,
            bare,
            jti: jti.into(),
            kid: key.kid().clone(),
            iat: UNIX_EPOCH + Duration::from_secs(iat),
            exp: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }
}

/// RFC 8705 `x5t#S256` of the caller's client certificate, when it authenticated with it.
/// `tls` is the connection's TLS details, when it is TLS (the thumbprint is worked out once per
/// connection, `conn::TlsInfo::leaf_thumbprint`).
pub fn cnf_thumbprint<'a>(cred: &'a Credential, tls: Option<&'a TlsInfo>) -> Option<&'a str> {
    match (cred.kind, tls) {
        (Kind::Mtls, Some(tls)) => tls.leaf_thumbprint(),
        // A presented token's binding (proven on this connection) carries over.
        _ => cred.lineage.as_deref().and_then(|l| l.cnf.as_deref()),
    }
}
