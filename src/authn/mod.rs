//! Authentication: each configured credential is an [`Authenticator`] chosen at run time from
//! config. A route's `accept` list is tried in order: a credential that is *present and wrong* is
//! refused at once and never falls through to a weaker scheme; none present is 401 with a
//! challenge per accepted scheme.

pub mod apikey;
pub mod build;
pub mod identity;
pub mod jwt_svid;
pub mod ldap;
pub mod mtls;
pub mod settings;
mod targets;
pub mod webhook;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::HeaderValue;

use crate::conn::ConnInfo;
use crate::identity::{Caller, Credential, Kind};
use crate::problem::{Code, Refusal};

/// What one authenticator concluded.
#[derive(Debug)]
pub enum Outcome {
    /// This kind of credential is not in the request.
    NotPresent,
    Authenticated(Credential),
    /// Present and not acceptable: the refusal to send (401, or 503 when a directory is down).
    Rejected(Refusal),
    /// Present, valid in form, but addressed to another credential of the same kind (a JWT-SVID
    /// for another audience or trust domain): the next credential of this kind may take it; if
    /// none does, this refusal is sent. Never a reason to try a credential of another kind.
    Declined(Refusal),
}

/// One configured credential.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The credential's config name.
    fn name(&self) -> &Arc<str>;
    /// Its kind.
    fn kind(&self) -> Kind;
    /// `WWW-Authenticate` challenge for a 401, if the scheme has one.
    fn challenge(&self) -> Option<HeaderValue>;
    /// Check the request.
    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
        conn: &'a ConnInfo,
        now: SystemTime,
    ) -> BoxFuture<'a, Outcome>;

    /// Remove the credential this authenticator reads from a request about to be forwarded
    /// (Basic `Authorization`, an API key header or query parameter, a Bearer JWT-SVID). Called on
    /// every forwarded request of a route that accepts this credential, whether or not it was the
    /// one that authenticated, so no static secret reaches an upstream.
    fn strip(&self, _req: &mut Parts) {}

    /// The audience of gateway-minted tokens this credential accepts (a `jwt-svid` credential
    /// with `trust_issuer = true`), so token exchange knows which routes take them.
    fn gateway_audience(&self) -> Option<&str> {
        None
    }

    /// Credentials that can only be checked with the whole body (webhooks).
    fn as_body(&self) -> Option<&dyn webhook::BodyAuthenticator> {
        None
    }

    /// A principal an operator typed (a revocation target) in the one spelling authentication
    /// reports, or why no caller of this credential can ever have it. A revocation compares
    /// strings: a target in another spelling would be stored, shown, and never match.
    fn canonical_principal(&self, principal: &str) -> Result<String, String> {
        let _ = principal;
        Err(format!(
            "a {} credential has no legacy principals: revoke by identity or jti",
            self.kind().as_str()
        ))
    }

    /// The identity this credential would map a caller to, when `id` is one of its mapped
    /// identities in another spelling (`…/racf/JSMITH` for `…/racf/{user}`, which maps to
    /// lower case); `None` when it is not one of them.
    fn canonical_identity(&self, id: &str) -> Option<String> {
        let _ = id;
        None
    }
}

/// What the body-checking credentials need: the buffered body and the URL the caller used.
#[derive(Debug, Clone, Copy)]
pub struct BodyView<'a> {
    pub bytes: &'a [u8],
    pub url: &'a str,
}

/// Whether some accepted credential needs the whole body of this request (a webhook signature is
/// present), so the pipeline must buffer it before authenticating.
pub fn wants_body(accept: &[Arc<dyn Authenticator>], req: &Parts) -> bool {
    accept
        .iter()
        .any(|a| a.as_body().is_some_and(|b| b.wants_body(&req.headers)))
}

/// Try the route's accepted credentials in order.
pub async fn authenticate(
    accept: &[Arc<dyn Authenticator>],
    req: &Parts,
    conn: &ConnInfo,
    now: SystemTime,
    body: Option<BodyView<'_>>,
) -> Result<Caller, Refusal> {
    authenticate_attributed(accept, req, conn, now, body)
        .await
        .map_err(|f| f.refusal)
}

/// Why authentication failed, and which credential said so: a migration plan relaxes only the
/// credentials it lists, so it must know whose refusal it is looking at.
#[derive(Debug)]
pub struct Failure {
    /// The config name of the credential that was present and refused; `None` when no accepted
    /// credential was present at all.
    pub credential: Option<Arc<str>>,
    pub refusal: Refusal,
}

/// [`authenticate`], saying which credential refused.
pub async fn authenticate_attributed(
    accept: &[Arc<dyn Authenticator>],
    req: &Parts,
    conn: &ConnInfo,
    now: SystemTime,
    body: Option<BodyView<'_>>,
) -> Result<Caller, Failure> {
    if accept.is_empty() {
        return Ok(Caller::Anonymous);
    }
    // The first `Declined` refusal, the kind that may still take the credential, and the
    // credential that declined it.
    let mut declined: Option<(Kind, Arc<str>, Refusal)> = None;
    for a in accept {
        if declined.as_ref().is_some_and(|(k, _, _)| *k != a.kind()) {
            continue;
        }
        let outcome = match (a.as_body(), body) {
            (Some(b), Some(body)) => {
                b.authenticate_with_body(req, body.bytes, body.url, now)
                    .await
            }
            _ => a.authenticate(req, conn, now).await,
        };
        match outcome {
            Outcome::NotPresent => continue,
            Outcome::Authenticated(c) => return Ok(Caller::Authenticated(Arc::new(c))),
            Outcome::Rejected(refusal) => {
                return Err(Failure {
                    credential: Some(a.name().clone()),
                    refusal,
                })
            }
            Outcome::Declined(r) => {
                declined.get_or_insert((a.kind(), a.name().clone(), r));
            }
        }
    }
    if let Some((_, credential, refusal)) = declined {
        return Err(Failure {
            credential: Some(credential),
            refusal,
        });
    }
    let mut refusal = Refusal::new(Code::Unauthenticated, "this route requires a credential");
    refusal.challenges = accept.iter().filter_map(|a| a.challenge()).collect();
    Err(Failure {
        credential: None,
        refusal,
    })
}
