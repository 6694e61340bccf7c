//! The webhook credential in the authentication stage.
//!
//! A webhook signature covers the body, which [`Authenticator::authenticate`] does not get. The
//! pipeline therefore buffers the body (up to the route's `max_body`) when a route accepts a
//! webhook credential and [`BodyAuthenticator::wants_body`] says the request carries it, then calls
//! [`BodyAuthenticator::authenticate_with_body`] and forwards the buffered bytes. Called without
//! the body, a present signature is refused (fail closed), never accepted.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use super::{ReplayGuard, Verified, WebhookError, WebhookVerifier};
use crate::authn::{Authenticator, Outcome};
use crate::conn::ConnInfo;
use crate::identity::{Credential, Kind};
use crate::problem::{Code, Refusal};

/// Seconds a caller is asked to wait when the replay store is down.
const STORE_RETRY_AFTER: u64 = 5;

/// A credential that can only be checked with the complete request body.
pub trait BodyAuthenticator: Send + Sync {
    /// Whether this request carries the credential, so the body must be buffered.
    fn wants_body(&self, headers: &HeaderMap) -> bool;

    /// Check the request with its complete body; `url` is the URL the caller used
    /// (`scheme://host[:port]/path?query`, see [`request_url`]).
    fn authenticate_with_body<'a>(
        &'a self,
        req: &'a Parts,
        body: &'a [u8],
        url: &'a str,
        now: SystemTime,
    ) -> BoxFuture<'a, Outcome>;
}

/// One configured `kind = "webhook"` credential: verifier, identity and replay memory.
///
/// On success the [`Credential`] has the configured `identity`, `principal` = the adapter name
/// (stable for the caller, unlike the delivery id, which goes to the logs), and no groups.
#[derive(Debug)]
pub struct WebhookAuthenticator {
    name: Arc<str>,
    identity: String,
    verifier: WebhookVerifier,
    replay: Arc<dyn ReplayGuard>,
    /// `public_url`: the URL the provider calls, used instead of the request's for URL-signing
    /// adapters (the request's Host is the caller's choice).
    public_url: Option<String>,
}

impl WebhookAuthenticator {
    /// `name` is the credential's config name; `identity` the provider's SPIFFE ID; `replay`
    /// the gateway's shared replay store.
    pub fn new(
        name: Arc<str>,
        identity: String,
        verifier: WebhookVerifier,
        replay: Arc<dyn ReplayGuard>,
    ) -> Self {
        WebhookAuthenticator {
            name,
            identity,
            verifier,
            replay,
            public_url: None,
        }
    }

    /// Verify URL signatures against `public_url` (`scheme://host[:port]/path`, plus the query
    /// each delivery arrives with) instead of the URL rebuilt from the request.
    pub fn with_public_url(mut self, public_url: Option<String>) -> Self {
        self.public_url = public_url;
        self
    }

    /// Verify the signature, then make sure the delivery was not accepted before.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        url: &str,
        now: SystemTime,
    ) -> Result<Verified, WebhookError> {
        let v = self.verifier.verify(headers, url, body, now)?;
        match self
            .replay
            .first_seen(&v.replay_key, now, v.remember_until)
            .await
        {
            Ok(true) => Ok(v),
            Ok(false) => Err(WebhookError::Replayed),
            Err(e) => {
                tracing::error!(credential = %self.name, error = %e, "webhook replay store unavailable");
                Err(WebhookError::ReplayStore)
            }
        }
    }

    fn outcome(&self, result: Result<Verified, WebhookError>) -> Outcome {
        let adapter = self.verifier.adapter().name();
        match result {
            Ok(v) => {
                tracing::debug!(
                    credential = %self.name,
                    webhook.adapter = adapter,
                    webhook.delivery_id = v.delivery_id.as_deref().unwrap_or("-"),
                    webhook.secret_index = v.secret_index,
                    "webhook signature verified"
                );
                Outcome::Authenticated(Credential {
                    name: self.name.clone(),
                    kind: Kind::Webhook,
                    identity: self.identity.clone(),
                    principal: Some(adapter.to_owned()),
                    groups: Vec::new(),
                    jti: None,
                    lineage: None,
                })
            }
            Err(WebhookError::NotPresent) => Outcome::NotPresent,
            Err(e @ WebhookError::ReplayStore) => Outcome::Rejected(
                Refusal::new(Code::DirectoryUnavailable, e.to_string())
                    .retry_after(STORE_RETRY_AFTER),
            ),
            Err(e) => {
                tracing::info!(credential = %self.name, webhook.adapter = adapter, reason = %e, "webhook refused");
                Outcome::Rejected(Refusal::new(Code::InvalidCredential, e.to_string()))
            }
        }
    }
}

impl Authenticator for WebhookAuthenticator {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Webhook
    }

    /// A webhook's only principal is its adapter's name.
    fn canonical_principal(&self, principal: &str) -> Result<String, String> {
        let adapter = self.verifier.adapter().name();
        if principal == adapter {
            Ok(principal.to_owned())
        } else {
            Err(format!(
                "the only principal of credential {} is {adapter:?}",
                self.name
            ))
        }
    }

    /// Webhooks have no HTTP authentication scheme to advertise.
    fn challenge(&self) -> Option<HeaderValue> {
        None
    }

    /// Without the body a signature cannot be checked: absent is `NotPresent`, present is refused.
    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
        _conn: &'a ConnInfo,
        _now: SystemTime,
    ) -> BoxFuture<'a, Outcome> {
        let outcome = if self.verifier.is_present(&req.headers) {
            tracing::error!(
                credential = %self.name,
                "webhook credential checked without the request body: the route must buffer it"
            );
            Outcome::Rejected(Refusal::new(
                Code::InvalidCredential,
                "webhook signatures need the request body, which this route did not provide",
            ))
        } else {
            Outcome::NotPresent
        };
        Box::pin(futures_util::future::ready(outcome))
    }

    fn as_body(&self) -> Option<&dyn BodyAuthenticator> {
        Some(self)
    }
}

impl BodyAuthenticator for WebhookAuthenticator {
    fn wants_body(&self, headers: &HeaderMap) -> bool {
        self.verifier.is_present(headers)
    }

    fn authenticate_with_body<'a>(
        &'a self,
        req: &'a Parts,
        body: &'a [u8],
        url: &'a str,
        now: SystemTime,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let configured = self.public_url.as_deref().map(|p| match req.uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p.to_owned(),
            });
            let url = configured.as_deref().unwrap_or(url);
            let result = self.check(&req.headers, body, url, now).await;
            self.outcome(result)
        })
    }
}

/// The URL the caller used, as providers sign it (Twilio): `scheme://host[:port]/path?query`,
/// with the host from the request target (HTTP/2 `:authority`) or the `Host` header, and path and
/// query exactly as received (not normalized). `scheme` is the listener's (`conn.proto()`). The
/// Host is the caller's choice: a credential's `public_url` replaces all but the query (see
/// [`WebhookAuthenticator::with_public_url`]), and without one `check` requires a route pinned
/// to one host.
pub fn request_url(req: &Parts, scheme: &str) -> Option<String> {
    let host = match req.uri.authority() {
        Some(a) => a.as_str(),
        None => req.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    if host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return None;
    }
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    Some(format!("{scheme}://{host}{pq}"))
}
