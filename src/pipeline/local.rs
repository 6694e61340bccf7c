//! Local routes: the gateway's own endpoints (the issuer's well-known documents, token exchange),
//! checked on the canonical path before the router, in table order. The pipeline knows them only
//! through [`LocalRoute`]; endpoints above it (the token exchange) implement it.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Method, Response};

use super::{Gateway, RequestBody, Trace};
use crate::body::{full, ProxyBody};
use crate::conn::ConnInfo;
use crate::identity::Credential;
use crate::problem::Refusal;
use crate::routing::canonical::CanonicalRequest;
use crate::token::jwks::{self, WellKnown};

/// One of the gateway's own endpoints.
pub trait LocalRoute: Send + Sync + fmt::Debug {
    /// Whether the request is for this endpoint (on the canonical path).
    fn matches(&self, parts: &Parts, view: &CanonicalRequest) -> Result<bool, Refusal>;

    /// Answer it. A response is an allowed request; a refusal is denied.
    fn serve<'a>(
        &'a self,
        req: LocalRequest<'a>,
    ) -> BoxFuture<'a, Result<Response<ProxyBody>, Refusal>>;
}

/// A request for a local route, with what the endpoint may use of the gateway.
pub struct LocalRequest<'a> {
    pub gateway: &'a Gateway,
    pub conn: &'a ConnInfo,
    pub parts: &'a Parts,
    pub view: &'a CanonicalRequest,
    body: &'a mut RequestBody,
    trace: &'a mut Trace,
}

impl<'a> LocalRequest<'a> {
    pub(super) fn new(
        gateway: &'a Gateway,
        conn: &'a ConnInfo,
        parts: &'a Parts,
        view: &'a CanonicalRequest,
        body: &'a mut RequestBody,
        trace: &'a mut Trace,
    ) -> Self {
        LocalRequest {
            gateway,
            conn,
            parts,
            view,
            body,
            trace,
        }
    }

    /// Read the whole body (413 beyond `limit`, 408 too slow, 503 beyond the body memory caps); it
    /// stays counted against the caps until the request is answered.
    pub async fn buffer_body(&mut self, limit: u64) -> Result<bytes::Bytes, Refusal> {
        self.body.ensure_buffered(limit).await.cloned()
    }

    /// Who the endpoint answered, and the token it issued, for the audit line.
    pub fn answered(&mut self, caller: Credential, jti: Arc<str>) {
        self.trace.caller = Some(Arc::new(caller));
        self.trace.jti = Some(jti);
    }
}

/// The issuer's public documents (`/.well-known/jwks.json`, `/.well-known/openid-configuration`),
/// served by the gateway itself ahead of the routes, on the canonical path and only for the
/// issuer's hosts (elsewhere the upstreams' own documents are routed as usual).
/// Pre-rendered: nothing is built per request.
impl LocalRoute for WellKnown {
    fn matches(&self, parts: &Parts, view: &CanonicalRequest) -> Result<bool, Refusal> {
        if (parts.method != Method::GET && parts.method != Method::HEAD)
            || !self.serves_host(view.host.as_deref())
        {
            return Ok(false);
        }
        Ok(view.is_local(jwks::JWKS_PATH)? || view.is_local(jwks::DISCOVERY_PATH)?)
    }

    fn serve<'a>(
        &'a self,
        req: LocalRequest<'a>,
    ) -> BoxFuture<'a, Result<Response<ProxyBody>, Refusal>> {
        Box::pin(async move {
            let body = if req.view.is_local(jwks::JWKS_PATH)? {
                self.jwks()
            } else {
                self.discovery()
            };
            let mut resp = Response::new(full(body));
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(jwks::CONTENT_TYPE),
            );
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static(jwks::CACHE_CONTROL),
            );
            Ok(resp)
        })
    }
}
