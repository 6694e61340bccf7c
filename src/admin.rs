//! The admin listener: `/healthz` (alive), `/readyz` (ready to take traffic; 503 while draining),
//! `/metrics` (Prometheus text), the ops API `/admin/v1/*` and the dashboard at `/`. Binds
//! loopback by default.
//!
//! Loopback is also where an operator's browser lives, so the ops API and the dashboard defend
//! against web pages (see [`guard`]): a `Host` that is not an IP literal, `localhost` or the
//! listener's own address is refused (DNS rebinding), and changes need a JSON body (a cross-site
//! form cannot send one without a CORS preflight, which is never answered).

mod dashboard;
mod guard;
/// Bodies of the ops API (`/admin/v1/migration`, `/admin/v1/inventory`, `/admin/v1/revocations`):
/// plain functions of already-resolved inputs, so the admin listener only routes.
pub mod migration;
mod openapi;
pub mod reload;
pub mod suggest;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{full, ProxyBody};
use crate::metrics::Metrics;
use crate::problem::{Code, Refusal};

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    /// Set on shutdown: stop sending us traffic.
    pub draining: AtomicBool,
    /// `[spiffe]`: reported by `/readyz` (not ready only once the served SVID has expired).
    pub workload: Option<Arc<crate::spiffe::workload::WorkloadApi>>,
}

/// Shared state of the admin listener.
#[derive(Debug)]
pub struct Admin {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// The ops API (`/admin/v1/*`); replaced whole by a config reload.
    pub ops: Option<Arc<arc_swap::ArcSwap<Ops>>>,
    /// `POST /admin/v1/reload` and `GET /admin/v1/config`.
    pub control: Option<Arc<dyn reload::ConfigControl>>,
    /// Admin over mTLS (`[admin] allow`), else plain HTTP.
    pub mtls: Option<AdminTls>,
}

/// The admin listener's TLS: the data listener's certificate, client X.509-SVIDs verified
/// against the trust bundles, and the SPIFFE ID patterns allowed to use the ops API.
pub struct AdminTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub trust: Arc<crate::spiffe::store::TrustStore>,
    pub clock: Arc<dyn crate::clock::Clock>,
    pub allow: Vec<String>,
}

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTls")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// How long a client has to finish the admin TLS handshake.
const ADMIN_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the ops API reads and changes.
#[derive(Debug)]
pub struct Ops {
    pub state: Arc<dyn crate::state::StateStore>,
    pub plans: Arc<crate::migration::Plans>,
    /// Every route with its plan name.
    pub routes: Vec<(String, Option<String>)>,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Caches that must forget a revoked caller at once.
    pub tokens: Arc<crate::token::TokenCache>,
    pub credentials: Arc<crate::authn::build::Credentials>,
}

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A problem+json response for the admin API.
fn problem(code: Code, detail: impl Into<String>) -> Response<ProxyBody> {
    refused(Refusal::new(code, detail.into()))
}

/// Render a refusal as problem+json (with `Cache-Control: no-store`, like every refusal). The
/// admin listener has no request ids of its own: each refusal gets a fresh one for the logs.
fn refused(r: Refusal) -> Response<ProxyBody> {
    r.into_response(&format!("{:016x}", rand::random::<u64>()))
}

impl Ops {
    /// Every configured route's name.
    fn route_names(&self) -> Vec<&str> {
        self.routes.iter().map(|(r, _)| r.as_str()).collect()
    }

    /// Set the migration gauges from the plans, the clock and the recorded usage (on each scrape:
    /// phases follow the clock, readiness the traffic).
    async fn update_gauges(&self, metrics: &Metrics) {
        use crate::migration::Phase;
        let now = self.clock.now();
        for plan in self.plans.iter() {
            // All 0 before the plan's observe date: it has not started.
            let current = crate::migration::active_phase(Some(plan), now);
            for phase in [Phase::Observe, Phase::Bridge, Phase::Enforce] {
                metrics
                    .migration_phase
                    .with(&[plan.name.as_str(), phase.as_str()])
                    .set(if Some(phase) == current { 1.0 } else { 0.0 });
            }
        }
        let routes: Vec<(&str, Option<&str>)> = self
            .routes
            .iter()
            .map(|(r, p)| (r.as_str(), p.as_deref()))
            .collect();
        match crate::admin::migration::report_now(&*self.state, &self.plans, &routes, now).await {
            Ok(report) => {
                for p in &report.plans {
                    let ready = p.status == crate::migration::report::Status::Ready;
                    metrics
                        .migration_ready
                        .with(&[p.name.as_str()])
                        .set(if ready { 1.0 } else { 0.0 });
                    if let Some(share) = p.window.legacy_share {
                        metrics
                            .migration_legacy_share
                            .with(&[p.name.as_str()])
                            .set(share);
                    }
                    metrics
                        .migration_max_legacy_share
                        .with(&[p.name.as_str()])
                        .set(p.window.max_legacy_share);
                }
            }
            // Keep the last values; the state store's own errors are logged where they occur.
            Err(e) => tracing::warn!(error = %e, "migration readiness gauges not updated"),
        }
    }

    /// The data plane's revocation check for an operator on the mTLS admin listener, by SPIFFE
    /// ID (the only revocation target an admin client certificate has), on every request: a
    /// revocation ends kept-alive admin connections too. Fails closed (503) while a shared state
    /// backend cannot vouch for the revocation set, exactly like the data plane.
    fn admit_operator(&self, identity: &str) -> Result<(), Refusal> {
        let operator = crate::identity::Credential {
            name: Arc::from("admin"),
            kind: crate::identity::Kind::Mtls,
            identity: identity.to_owned(),
            principal: None,
            groups: Vec::new(),
            jti: None,
            lineage: None,
        };
        crate::state::admit(&*self.state, &operator)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        use crate::admin::migration as m;
        let now = self.clock.now();
        let (parts, body) = req.into_parts();
        let unavailable = |e: crate::state::StateError| refused(m::unavailable(&e));
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/admin/v1/migration") => {
                let routes: Vec<(&str, Option<&str>)> = self
                    .routes
                    .iter()
                    .map(|(r, p)| (r.as_str(), p.as_deref()))
                    .collect();
                match m::migration_json(&*self.state, &self.plans, &routes, now).await {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err(e) => unavailable(e),
                }
            }
            (&Method::GET, "/admin/v1/inventory") => {
                match m::inventory_json(&*self.state, &self.plans, now).await {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err(e) => unavailable(e),
                }
            }
            (&Method::GET, "/admin/v1/policy/suggest") => {
                use crate::admin::suggest::{suggest_json, SuggestError};
                match suggest_json(
                    &*self.state,
                    &self.route_names(),
                    parts.uri.query(),
                    self.plans.settings.shared_threshold,
                    now,
                )
                .await
                {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err(SuggestError::State(e)) => unavailable(e),
                    Err(e) => problem(e.code(), e.to_string()),
                }
            }
            (&Method::GET, "/admin/v1/revocations") => {
                match m::revocations_json(&*self.state).await {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err(e) => unavailable(e),
                }
            }
            (&Method::POST | &Method::DELETE, "/admin/v1/revocations") => {
                use http_body_util::BodyExt as _;
                let bytes = match http_body_util::Limited::new(body, MAX_ADMIN_BODY)
                    .collect()
                    .await
                {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return problem(
                            Code::PayloadTooLarge,
                            format!("admin request bodies are limited to {MAX_ADMIN_BODY} bytes"),
                        )
                    }
                };
                // Targets are spelled as authentication spells callers (or refused).
                let canon = |t| self.credentials.canonical_target(t);
                let answer = if parts.method == Method::POST {
                    m::revoke(&*self.state, &bytes, now, &canon).await
                } else {
                    m::unrevoke(&*self.state, &bytes, &canon).await
                };
                match answer {
                    Ok((status, v)) => {
                        if parts.method == Method::POST {
                            self.forget(&v);
                        }
                        json_response(status, &v)
                    }
                    Err(r) => refused(r),
                }
            }
            (_, "/admin/v1/revocations") => method_not_allowed("GET, POST, DELETE"),
            (_, "/admin/v1/migration" | "/admin/v1/inventory" | "/admin/v1/policy/suggest") => {
                method_not_allowed("GET")
            }
            _ => not_found(),
        }
    }

    /// A revocation is effective immediately: the pipeline checks the revocation set on every
    /// request; here the caches also drop what they hold for the target, so no cached token of
    /// a revoked caller is ever handed out again.
    fn forget(&self, revocation: &serde_json::Value) {
        use crate::state::Target;
        let Some(target) = revocation
            .get("target")
            .and_then(|t| t.as_str())
            .and_then(Target::from_key)
        else {
            return;
        };
        match target {
            Target::Identity(id) => {
                self.tokens.evict_identity(&id);
                for j in &self.credentials.jwt_svid {
                    j.evict_identity(&id);
                }
            }
            Target::Credential { name, principal } => {
                self.tokens.evict_credential(&name, &principal);
                if let Some(l) = self.credentials.ldap.get(name.as_str()) {
                    l.evict_principal(&principal);
                }
            }
            Target::Jti(j) => {
                self.tokens.evict_jti(&j);
            }
        }
    }
}

fn not_found() -> Response<ProxyBody> {
    problem(Code::NotFound, "no such admin endpoint")
}

fn method_not_allowed(allow: &'static str) -> Response<ProxyBody> {
    let mut r = Refusal::new(
        Code::MethodNotAllowed,
        "this admin endpoint does not answer that method",
    );
    r.allow = Some(HeaderValue::from_static(allow));
    refused(r)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One admin connection: HTTP/1.1, with a header timeout, drained gracefully on shutdown.
async fn serve_admin<S>(
    admin: Arc<Admin>,
    stream: S,
    local: SocketAddr,
    peer: Option<Arc<str>>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let admin = admin.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(admin.handle(req, local, peer.as_deref()).await) }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10));
    let conn = b.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = crate::transport::stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

impl Admin {
    /// The ops API of the configuration serving now.
    fn ops(&self) -> Option<Arc<Ops>> {
        self.ops.as_ref().map(|o| o.load_full())
    }

    /// Answer one admin request that arrived on the listener bound to `local`.
    ///
    /// `peer` is the verified SPIFFE ID of the client certificate on an mTLS admin listener.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        local: SocketAddr,
        peer: Option<&str>,
    ) -> Response<ProxyBody> {
        let path = req.uri().path();
        // Probes and metrics are read by machines that may name the host (a scrape target by
        // service name); everything an operator's browser could be tricked into reading or
        // changing is guarded.
        let guarded = !matches!(path, "/healthz" | "/readyz" | "/metrics");
        if guarded {
            if let Some(tls) = &self.mtls {
                let allowed = peer.is_some_and(|id| {
                    tls.allow
                        .iter()
                        .any(|p| crate::authz::policy::allow::id_matches(p, id))
                });
                if !allowed {
                    tracing::info!(
                        peer = peer.unwrap_or("-"),
                        path,
                        "admin request refused: client not in [admin] allow"
                    );
                    return problem(
                        Code::Forbidden,
                        "the admin API needs a client certificate whose SPIFFE ID is listed in [admin] allow",
                    );
                }
                // A revoked operator must not keep the ops API (nor lift their own revocation).
                if let (Some(id), Some(ops)) = (peer, self.ops()) {
                    if let Err(refusal) = ops.admit_operator(id) {
                        tracing::info!(
                            peer = id,
                            path,
                            code = refusal.code.as_str(),
                            "admin request refused"
                        );
                        return refused(refusal);
                    }
                }
            }
            if let Err(refusal) = guard::check_host(&req, local) {
                return problem(refusal.0, refusal.1);
            }
            if let Some(allow) = openapi::allowed_methods(path) {
                if !openapi::allows(allow, req.method()) {
                    return method_not_allowed(allow);
                }
            }
            if let Err(refusal) = guard::check_json(&req) {
                return problem(refusal.0, refusal.1);
            }
        }
        if path == openapi::PATH {
            return openapi::serve();
        }
        if let Some(control) = &self.control {
            match (req.method(), path) {
                (&Method::POST, "/admin/v1/reload") => return reload::reload(&**control).await,
                (&Method::GET, "/admin/v1/config") => return reload::config(&**control),
                (_, "/admin/v1/reload") => return method_not_allowed("POST"),
                (_, "/admin/v1/config") => return method_not_allowed("GET"),
                _ => {}
            }
        }
        if let (Some(ops), true) = (self.ops(), path.starts_with("/admin/v1/")) {
            return ops.handle(req).await;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        if let Some(resp) = dashboard::serve(path, self.ops.is_some()) {
            return resp;
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                // A rate-limit fallback does not make a replica unready (it holds), but the
                // operator should see it next to the reason for any 503.
                let fallback = self.metrics.rate_limit_fallback_routes();
                let detail = if fallback.is_empty() {
                    String::new()
                } else {
                    format!(
                        "rate limits on local fallback (redis unreachable): {}\n",
                        fallback.join(", ")
                    )
                };
                match self.readiness() {
                    Ok(body) => text(StatusCode::OK, format!("{body}{detail}")),
                    Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}{detail}")),
                }
            }
            "/metrics" => {
                if let Some(ops) = self.ops() {
                    ops.update_gauges(&self.metrics).await;
                }
                let state_up = self.ops().is_none_or(|o| o.state.available());
                self.metrics
                    .state_backend_up
                    .set(f64::from(u8::from(state_up)));
                let ready = self.readiness().is_ok();
                self.metrics.ready.set(f64::from(u8::from(ready)));
                let mut r = Response::new(full(Bytes::from(self.metrics.render())));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            _ => not_found(),
        }
    }

    /// Why `/readyz` answers 503, if it does.
    /// `/readyz`: the body of a 200, or why not ready (503).
    fn readiness(&self) -> Result<String, String> {
        if self.health.draining.load(Ordering::Acquire) {
            Err("draining\n".into())
        } else if self.ops().is_some_and(|o| !o.state.available()) {
            // Requests with credentials are refused (503) while the shared state is
            // unreachable: take this replica out of the load balancer too.
            Err("state backend unavailable\n".into())
        } else if let Some(w) = &self.health.workload {
            // The agent being away is reported but not fatal while the SVID is valid.
            match w.readiness() {
                Ok(detail) => Ok(format!("ready\n{detail}\n")),
                Err(detail) => Err(format!("{detail}\n")),
            }
        } else {
            Ok("ready\n".into())
        }
    }

    /// Serve until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let Ok(local) = listener.local_addr() else {
            tracing::error!("admin listener has no local address; not serving");
            return;
        };
        loop {
            tokio::select! {
                _ = crate::transport::stopped(&mut shutdown) => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let me = self.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        let Some(tls) = &me.mtls else {
                            serve_admin(me.clone(), stream, local, None, shutdown).await;
                            return;
                        };
                        let stream = match tokio::time::timeout(
                            ADMIN_HANDSHAKE_TIMEOUT,
                            tls.acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "admin TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                        // The verifier already checked the chain during the handshake; this
                        // names the caller (and checks the SVID rules once more).
                        let peer = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| {
                                crate::spiffe::x509::verify_chain(chain, &tls.trust, tls.clock.now())
                                    .ok()
                            })
                            .map(|svid| Arc::<str>::from(svid.id.to_string()));
                        serve_admin(me.clone(), stream, local, peer, shutdown).await;
                    });
                }
            }
        }
    }
}
