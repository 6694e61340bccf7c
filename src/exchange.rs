//! `POST /oauth2/token`: RFC 8693 token exchange, so an old client can trade its static secret
//! (or a JWT-SVID) for a short-lived token once and present that token afterwards.
//!
//! The subject is, in this order:
//! - the `subject_token` (with `subject_token_type` `urn:ietf:params:oauth:token-type:jwt`),
//!   checked by the `jwt-svid` credentials listed in `[token_exchange] accept`;
//! - else the credential the request itself carries (Basic checked by LDAP, an API key, the TLS
//!   client certificate), checked by the other listed credentials, in order.
//!
//! The issued token is the §7 token (`jwt-svid` profile) for the requested `audience`, which must
//! be one of `[token_exchange] audiences` (default: the issuer URL — the gateway itself, so a
//! `jwt-svid` credential with `trust_issuer = true` and that audience accepts it on any route).
//! Errors are problem+json like every other refusal; the RFC 6749 §5.2 `error` code is not sent.
//!
//! Exchange launders nothing (`docs/security.md`, "Tokens and lineage"): the issued token
//! carries the subject's lineage (root credential, root and chain `jti`s, `cnf`) and never
//! outlives a presented token; an audience is issued only to a caller that some route taking
//! tokens of that audience would let in ([`check_audience`]), and a caller whom every such route
//! refuses as retired by its migration plan gets that refusal here already.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderValue, Method, Response};

use crate::authn::{self, Authenticator};
use crate::body::{full, ProxyBody};
use crate::conn::ConnInfo;
use crate::identity::lineage::{self, MAX_CHAIN};
use crate::identity::profile::Profile;
use crate::identity::{Caller, Credential, Kind};
use crate::migration::lineage as plan_lineage;
use crate::migration::{retired, route_phase, Treatment};
use crate::pipeline::route::Route;
use crate::pipeline::{LocalRequest, LocalRoute};
use crate::problem::{Code, Refusal};
use crate::routing::canonical::CanonicalRequest;
use crate::token::{Issuer, MintRequest, TokenCache};

/// Largest form accepted.
pub const MAX_FORM_BYTES: u64 = 16 * 1024;
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const TOKEN_TYPE_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// What signs and caches the issued tokens.
#[derive(Debug, Clone, Copy)]
pub struct Minter<'a> {
    pub issuer: &'a Issuer,
    pub tokens: &'a TokenCache,
    pub metrics: &'a crate::metrics::Metrics,
    /// Revocations: a revoked caller gets no token.
    pub state: &'a dyn crate::state::StateStore,
    /// The routes: an audience goes only to a caller one of them would let in.
    pub routes: &'a [Arc<Route>],
}

/// The configured endpoint.
#[derive(Debug)]
pub struct TokenExchange {
    /// Credentials that may authenticate the request itself (not `jwt-svid`).
    request_creds: Vec<Arc<dyn Authenticator>>,
    /// `jwt-svid` credentials that check a `subject_token`.
    subject_creds: Vec<Arc<dyn Authenticator>>,
    /// Allowed audiences; the first is the default.
    audiences: Vec<String>,
    /// `[[token_exchange.audiences]]` rules: audience → SPIFFE ID patterns of its callers.
    rules: Vec<(String, Vec<String>)>,
}

fn bad(detail: &'static str) -> Refusal {
    Refusal::new(Code::InvalidRequest, detail)
}

/// A presented token may be exchanged only while it is valid (the validator's leeway does not
/// extend it here) and only so many times.
fn check_lineage(cred: &Credential, now: SystemTime) -> Result<(), Refusal> {
    let Some(l) = cred.lineage.as_deref() else {
        return Ok(());
    };
    if l.jtis.len() >= MAX_CHAIN {
        return Err(bad("this token has been exchanged too many times"));
    }
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if l.not_after.is_some_and(|exp| exp <= now) {
        return Err(Refusal::new(
            Code::InvalidCredential,
            "the subject token has expired",
        ));
    }
    Ok(())
}

/// Whether `cred` may receive a token for `audience`: some route that takes such tokens — one
/// whose upstream has this audience, or one accepting gateway tokens of this audience (as the
/// credential that route would see) — allows the caller by policy and does not refuse its root
/// credential as retired. Policies are evaluated for the route's first method (GET when any) at
/// its path prefix: a policy that admits the caller only deeper down is not taken into account
/// (fail closed). If only retirement stands in the way, that refusal is returned.
fn check_audience(
    routes: &[Arc<Route>],
    audience: &str,
    cred: &Credential,
    conn: &ConnInfo,
    now: SystemTime,
) -> Result<(), Refusal> {
    let mut retired_by = None;
    for r in routes {
        let seen = if r.config.upstream.audience.as_deref() == Some(audience) {
            std::borrow::Cow::Borrowed(cred)
        } else if let Some(a) = r
            .accept
            .iter()
            .find(|a| a.gateway_audience() == Some(audience))
        {
            std::borrow::Cow::Owned(lineage::as_presented(cred, a.name()))
        } else {
            continue;
        };
        let Some(policy) = &r.policy else { continue };
        let phase = route_phase(r.plan.as_deref(), now);
        let method = r
            .config
            .methods
            .as_ref()
            .and_then(|m| m.first())
            .unwrap_or(&Method::GET);
        let allowed = policy
            .evaluate(&crate::authz::policy::Access {
                credential: &seen,
                method,
                path: &r.config.path_prefix,
                source_ip: conn.peer.ip(),
                now,
                phase: phase.as_str(),
            })
            .allowed();
        if !allowed {
            continue;
        }
        match (
            plan_lineage::treatment(r.plan.as_deref(), &seen, now),
            &r.plan,
        ) {
            // A `[[grace]]` that holds lets the route admit the caller: so does the exchange.
            (Treatment::Refuse, Some(plan))
                if crate::migration::grace::graced(plan, &seen, now).is_none() =>
            {
                retired_by
                    .get_or_insert_with(|| retired(plan, plan_lineage::retired_name(plan, &seen)));
            }
            _ => return Ok(()),
        }
    }
    Err(retired_by.unwrap_or_else(|| {
        Refusal::new(
            Code::Forbidden,
            "no route taking tokens for this audience allows this caller",
        )
    }))
}

impl TokenExchange {
    /// `accept` in config order; `audiences` empty means just the issuer URL; `rules` are the
    /// explicit `allow` lists of some audiences.
    pub fn new(
        accept: Vec<Arc<dyn Authenticator>>,
        audiences: &[String],
        rules: &[(String, Vec<String>)],
        issuer_url: &str,
    ) -> Self {
        let (subject_creds, request_creds) =
            accept.into_iter().partition(|a| a.kind() == Kind::JwtSvid);
        let audiences = if audiences.is_empty() {
            vec![issuer_url.to_owned()]
        } else {
            audiences.to_vec()
        };
        TokenExchange {
            request_creds,
            subject_creds,
            audiences,
            rules: rules.to_vec(),
        }
    }

    /// Whether `cred` may receive a token for `audience`: by the audience's explicit rule if it
    /// has one, else by the routes that take it ([`check_audience`]).
    fn may_receive(
        &self,
        routes: &[Arc<Route>],
        audience: &str,
        cred: &Credential,
        conn: &ConnInfo,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let Some((_, allow)) = self.rules.iter().find(|(a, _)| *a == audience) else {
            return check_audience(routes, audience, cred, conn, now);
        };
        if allow
            .iter()
            .any(|p| crate::authz::policy::allow::id_matches(p, &cred.identity))
        {
            Ok(())
        } else {
            Err(Refusal::new(
                Code::Forbidden,
                "this caller may not receive tokens for this audience",
            ))
        }
    }

    /// Whether the method and content type are right; checked before the body is read.
    pub fn check_head(&self, parts: &Parts) -> Result<(), Refusal> {
        if parts.method != Method::POST {
            let mut r = Refusal::new(Code::MethodNotAllowed, "the token endpoint takes POST");
            r.allow = Some(HeaderValue::from_static("POST"));
            return Err(r);
        }
        let form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(Refusal::new(
                Code::UnsupportedMediaType,
                "send the request as application/x-www-form-urlencoded (RFC 8693)",
            ));
        }
        Ok(())
    }

    /// Authenticate the subject and issue the token. `form` is the request body.
    pub async fn exchange(
        &self,
        parts: &Parts,
        conn: &ConnInfo,
        form: &[u8],
        now: SystemTime,
        minter: Minter<'_>,
    ) -> Result<(Response<ProxyBody>, Credential, Arc<str>), Refusal> {
        let mut grant = None;
        let mut subject = None;
        let mut subject_type = None;
        let mut audience = None;
        let mut requested = None;
        let mut seen = std::collections::HashSet::new();
        for (k, v) in form_urlencoded::parse(form) {
            if !seen.insert(k.clone()) {
                return Err(bad("a parameter is repeated (RFC 6749 §3.2)"));
            }
            match &*k {
                "grant_type" => grant = Some(v),
                "subject_token" => subject = Some(v),
                "subject_token_type" => subject_type = Some(v),
                "audience" => audience = Some(v),
                "requested_token_type" => requested = Some(v),
                _ => {} // scope, resource, actor_token…: not used, ignored (RFC 6749 §3.2)
            }
        }
        if grant.as_deref() != Some(crate::token::jwks::TOKEN_EXCHANGE_GRANT) {
            return Err(bad(
                "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange",
            ));
        }
        if requested
            .as_deref()
            .is_some_and(|t| t != TOKEN_TYPE_JWT && t != TOKEN_TYPE_ACCESS)
        {
            return Err(bad("requested_token_type must be jwt or access_token"));
        }
        let audience = match audience {
            None => self.audiences.first().cloned().unwrap_or_default(),
            Some(a) if self.audiences.iter().any(|x| *x == *a) => a.into_owned(),
            Some(_) => return Err(bad("this audience may not be requested here")),
        };
        let caller = match subject {
            Some(token) => {
                if subject_type.as_deref() != Some(TOKEN_TYPE_JWT) {
                    return Err(bad(
                        "subject_token_type must be urn:ietf:params:oauth:token-type:jwt",
                    ));
                }
                if self.subject_creds.is_empty() {
                    return Err(bad("no jwt-svid credential may be exchanged here"));
                }
                let value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    Refusal::new(Code::InvalidCredential, "malformed subject_token")
                })?;
                let mut synthetic = http::Request::new(());
                synthetic
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, value);
                let (synthetic, ()) = synthetic.into_parts();
                authn::authenticate(&self.subject_creds, &synthetic, conn, now, None).await?
            }
            None => authn::authenticate(&self.request_creds, parts, conn, now, None).await?,
        };
        let Caller::Authenticated(cred) = caller else {
            return Err(Refusal::new(
                Code::Unauthenticated,
                "present a credential to exchange",
            ));
        };
        crate::state::admit(minter.state, &cred)?;
        check_lineage(&cred, now)?;
        self.may_receive(minter.routes, &audience, &cred, conn, now)?;
        let cnf = crate::token::mint::cnf_thumbprint(&cred, conn.tls.as_ref());
        let req = MintRequest::for_credential(&cred, &audience, Profile::JwtSvid, cnf);
        let issued = minter
            .tokens
            .get_or_mint(minter.issuer, &req, now, minter.metrics)
            .map_err(|e| {
                tracing::error!(error = %e, "token exchange: minting failed");
                Refusal::new(
                    Code::UpstreamUnavailable,
                    "the gateway could not mint a token",
                )
            })?;
        let m = issued.minted;
        let body = serde_json::json!({
            "access_token": &*m.token,
            "issued_token_type": TOKEN_TYPE_JWT,
            "token_type": "Bearer",
            "expires_in": m.expires_in(now).as_secs(),
        });
        let mut resp = Response::new(full(Bytes::from(body.to_string())));
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        Ok((resp, std::sync::Arc::unwrap_or_clone(cred), m.jti.clone()))
    }
}

/// `POST /oauth2/token`: a local route, answered before the router.
impl LocalRoute for TokenExchange {
    fn matches(&self, _parts: &Parts, view: &CanonicalRequest) -> Result<bool, Refusal> {
        view.is_local(crate::token::jwks::TOKEN_PATH)
    }

    fn serve<'a>(
        &'a self,
        mut req: LocalRequest<'a>,
    ) -> BoxFuture<'a, Result<Response<ProxyBody>, Refusal>> {
        Box::pin(async move {
            let (gw, conn, parts) = (req.gateway, req.conn, req.parts);
            self.check_head(parts)?;
            let Some(issuer) = &gw.issuer else {
                return Err(Refusal::new(Code::NoRoute, "no token endpoint here"));
            };
            let throttle = gw.auth_failures.as_deref();
            if let Some(t) = throttle {
                t.check_source(conn.peer.ip())?;
            }
            let form = req.buffer_body(MAX_FORM_BYTES).await?;
            let exchanged = self
                .exchange(
                    parts,
                    conn,
                    &form,
                    gw.clock.now(),
                    Minter {
                        issuer,
                        tokens: &gw.tokens,
                        metrics: &gw.metrics,
                        state: &*gw.state,
                        routes: gw.router.routes(),
                    },
                )
                .await;
            if let (Some(t), Err(r)) = (throttle, &exchanged) {
                if r.code == Code::InvalidCredential {
                    t.note_auth_failure(conn.peer.ip());
                }
            }
            let (resp, cred, jti) = exchanged?;
            req.answered(cred, jti);
            Ok(resp)
        })
    }
}
