//! `kind = "jwt-svid"`: a JWT-SVID (or an OIDC workload token shaped like one) presented as
//! `Authorization: Bearer <jwt>` (JWT-SVID §5.2, RFC 6750 §2.1).
//!
//! No `Authorization` header, or one with another scheme (Basic, …), is `NotPresent`. A Bearer
//! credential is ours: if it does not validate it is `Rejected` and never falls through to a
//! weaker credential. Several `Authorization` headers, one of them Bearer, are refused as
//! ambiguous. A token for another audience or trust domain is `Declined`: the next `jwt-svid`
//! credential of the route may take it (never a credential of another kind). A token with
//! `cnf.x5t#S256` needs that client certificate on the connection. Validation itself
//! (algorithms, keys per trust domain, claims, cache) is [`crate::spiffe::jwt`].

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use crate::authn::{Authenticator, Outcome};
use crate::conn::ConnInfo;
use crate::identity::lineage::Lineage;
use crate::identity::{Credential, Kind};
use crate::problem::{Code, Refusal};
use crate::spiffe::jwt::{
    IssuerJwks, JwtSvidError, JwtSvidSettings, JwtSvidValidator, Verified, MAX_TOKEN_BYTES,
};
use crate::spiffe::TrustStore;

/// Authenticates callers by a Bearer JWT-SVID.
#[derive(Debug)]
pub struct JwtSvidAuthenticator {
    name: Arc<str>,
    validator: JwtSvidValidator,
}

/// What the `Authorization` header holds, as far as Bearer is concerned.
enum Bearer<'a> {
    Absent,
    Token(&'a str),
    Refused(&'static str),
}

fn is_bearer(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    let scheme = b.split(|c| *c == b' ').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"bearer")
}

fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let all = headers.get_all(AUTHORIZATION);
    let mut bearers = all.iter().filter(|v| is_bearer(v));
    let Some(v) = bearers.next() else {
        return Bearer::Absent;
    };
    if all.iter().count() > 1 {
        return Bearer::Refused("several Authorization headers");
    }
    // Scheme, one or more spaces, then the token (RFC 6750 §2.1: `b64token`).
    let token = v.as_bytes().get(6..).unwrap_or_default().trim_ascii_start();
    if token.is_empty() {
        return Bearer::Refused("empty bearer token");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Bearer::Refused("bearer token too large");
    }
    let jws_chars = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    if !token.iter().all(jws_chars) {
        return Bearer::Refused("not a compact JWS");
    }
    match std::str::from_utf8(token) {
        Ok(t) => Bearer::Token(t),
        Err(_) => Bearer::Refused("not a compact JWS"),
    }
}

/// Whether the connection's client certificate has thumbprint `cnf` (RFC 8705 §3), compared in
/// constant time.
fn holds_certificate(conn: &ConnInfo, cnf: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some(presented) = conn.tls.as_ref().and_then(|t| t.leaf_thumbprint()) else {
        return false;
    };
    presented.len() == cnf.len() && bool::from(presented.as_bytes().ct_eq(cnf.as_bytes()))
}

impl JwtSvidAuthenticator {
    /// The credential `name`: JWT-SVIDs for `settings.audience` from `settings.trust_domains`,
    /// verified with the JWT bundles of `store`.
    pub fn new(name: Arc<str>, store: Arc<TrustStore>, settings: JwtSvidSettings) -> Self {
        JwtSvidAuthenticator {
            name,
            validator: JwtSvidValidator::new(store, settings),
        }
    }

    /// Also accept tokens minted by this gateway (`trust_issuer = true`).
    pub fn trusting_issuer(mut self, keys: Arc<dyn IssuerJwks>) -> Self {
        self.validator = self.validator.trusting_issuer(keys);
        self
    }

    /// The validator (for its counters).
    pub fn validator(&self) -> &JwtSvidValidator {
        &self.validator
    }

    /// Forget cached tokens of a revoked identity. Returns how many were dropped.
    pub fn evict_identity(&self, identity: &str) -> usize {
        self.validator.evict_identity(identity)
    }

    fn refuse(&self, why: &dyn std::fmt::Display, detail: &'static str) -> Outcome {
        tracing::debug!(credential = %self.name, reason = %why, "bearer token refused");
        Outcome::Rejected(Refusal::new(Code::InvalidCredential, detail))
    }

    /// The credential's lineage: the root the gateway recorded when it issued the token, or the
    /// token itself as root. The token's `cnf` and `exp` go with it.
    fn lineage(&self, v: &Verified) -> Lineage {
        let own = v.jti.iter().cloned();
        let root = v.issued.as_deref().and_then(|i| {
            Some(Lineage {
                credential: Arc::from(i.credential.as_str()),
                kind: Kind::parse(&i.kind)?,
                principal: i.principal.clone(),
                jtis: i.jtis.iter().map(|j| Arc::from(j.as_str())).collect(),
                cnf: None,
                not_after: None,
            })
        });
        let mut l = root.unwrap_or_else(|| Lineage {
            credential: self.name.clone(),
            kind: Kind::JwtSvid,
            principal: None,
            jtis: Vec::new(),
            cnf: None,
            not_after: None,
        });
        l.jtis.extend(own);
        l.cnf = v.cnf.clone();
        l.not_after = Some(v.exp);
        l
    }

    fn check(&self, req: &Parts, conn: &ConnInfo, now: SystemTime) -> Outcome {
        let token = match bearer(&req.headers) {
            Bearer::Absent => return Outcome::NotPresent,
            Bearer::Token(t) => t,
            Bearer::Refused(why) => {
                return self.refuse(
                    &why,
                    "the Authorization header is not a usable bearer token",
                )
            }
        };
        match self.validator.verify_token(token, now) {
            Ok(v) => {
                if let Some(cnf) = &v.cnf {
                    if !holds_certificate(conn, cnf) {
                        return self.refuse(
                            &"cnf certificate not presented",
                            "this token is bound to a client certificate the connection does not present",
                        );
                    }
                }
                let lineage = self.lineage(&v);
                Outcome::Authenticated(Credential {
                    name: self.name.clone(),
                    kind: Kind::JwtSvid,
                    identity: v.id.to_string(),
                    principal: None,
                    groups: Vec::new(),
                    jti: v.jti,
                    lineage: Some(Arc::new(lineage)),
                })
            }
            Err(e @ (JwtSvidError::Audience | JwtSvidError::TrustDomain(_))) => {
                // Addressed to another credential (or nobody): a later `jwt-svid` credential of
                // the route may take it.
                tracing::debug!(credential = %self.name, reason = %e, "bearer token not for this credential");
                let detail = match e {
                    JwtSvidError::Audience => "the JWT-SVID is not meant for this audience",
                    _ => "the bearer token is not an acceptable JWT-SVID",
                };
                Outcome::Declined(Refusal::new(Code::InvalidCredential, detail))
            }
            Err(e) => {
                let detail = match e {
                    JwtSvidError::Expired => "the JWT-SVID has expired",
                    JwtSvidError::NotYetValid => "the JWT-SVID is not valid yet",
                    JwtSvidError::Audience => "the JWT-SVID is not meant for this audience",
                    _ => "the bearer token is not an acceptable JWT-SVID",
                };
                self.refuse(&e, detail)
            }
        }
    }
}

impl Authenticator for JwtSvidAuthenticator {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::JwtSvid
    }

    fn challenge(&self) -> Option<HeaderValue> {
        Some(HeaderValue::from_static("Bearer"))
    }

    fn gateway_audience(&self) -> Option<&str> {
        self.validator
            .trusts_issuer()
            .then_some(self.validator.settings().audience.as_str())
    }

    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
        conn: &'a ConnInfo,
        now: SystemTime,
    ) -> BoxFuture<'a, Outcome> {
        let outcome = self.check(req, conn, now);
        async move { outcome }.boxed()
    }

    /// A Bearer token is removed whatever it was: the upstream gets the minted token instead.
    fn strip(&self, req: &mut Parts) {
        let bearer = req.headers.get_all(AUTHORIZATION).iter().any(|v| {
            v.as_bytes()
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer "))
        });
        if bearer {
            req.headers.remove(AUTHORIZATION);
        }
    }
}

#[cfg(test)]
mod tests;
