//! The request, stage by stage. Every stage returns a value that proves it ran and the next stage
//! takes it; every path, allow or deny, ends in [`Gateway::finish`] (audit + metrics).
//!
//! ```text
//! framing      refuse ambiguous message framing (CL+TE, duplicate Content-Length) and close
//! head limits  header count and size → 431
//! canonical    one view of path and host for every stage below (ambiguous ones refused)
//! local        the gateway's own endpoints (well-known documents, token exchange)
//! route        host + canonical path + method → Route
//! body limit   Content-Length above max_body → 413 (chunked bodies are counted while streaming)
//! authenticate the route's accepted credentials → Caller (the body is buffered first, up to
//!              max_body, only when a body-signed credential such as a webhook is present)
//! authorize    → Permit (only authz can build one)
//! translate    strip the presented credentials, hop-by-hop and identity-claiming headers; add
//!              the minted token (or the injected legacy credential), Forwarded, X-Request-Id
//! proxy        stream to the upstream and back
//! finish       audit line + metrics, always
//! ```

pub mod admission;
mod body;
pub mod decision;
// The framing stage is also read by the native core's parser tests (`transport::h1`).
pub(crate) mod head;
mod local;
pub mod route;

use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::request::Parts;
use http::{Request, Response, Version};
use http_body_util::BodyExt;

use crate::audit::{self, Auditor, Decision};
use crate::authn;
use crate::authz::{self, Permit};
use crate::body::{CallerBody, ProxyBody};
use crate::clock::Clock;
use crate::conn::ConnInfo;
use crate::identity;
use crate::metrics::Metrics;
use crate::migration::{active_phase, Phase};
use crate::problem::{Code, Refusal};
use crate::proxy::headers;
use crate::proxy::settings::TokenHeader;
use crate::routing::canonical::CanonicalRequest;
use crate::routing::Routable;
use crate::token::{Issuer, MintRequest, TokenCache};
use head::{check_body_limit, check_framing, check_head_limits, request_id};
use route::{Route, Router};

pub use admission::{Admission, Outgoing};
pub use body::RequestBody;
use body::Tripped;
use decision::Mode;
pub use local::{LocalRequest, LocalRoute};

/// Limits on the request head, from `[listen]`.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Gateway {
    pub router: Router,
    pub auditor: Auditor,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// The gateway's own endpoints, checked in order before the router (see [`local`]).
    pub local: Vec<Arc<dyn LocalRoute>>,
    /// The token issuer and its cache of minted tokens, when `[issuer]` is configured.
    pub issuer: Option<Arc<Issuer>>,
    pub tokens: Arc<TokenCache>,
    /// Usage, inventory and revocations.
    pub state: Arc<dyn crate::state::StateStore>,
    pub head_limits: HeadLimits,
    /// Failed authentications per source address (`[listen] max_auth_failures`).
    pub auth_failures: Option<Arc<crate::limits::SourceLimiter>>,
    /// Deadlines and memory caps for bodies read whole (`[listen] body_timeout` etc.).
    pub bodies: Arc<crate::limits::bodies::BodyBudget>,
    /// Traces (`[telemetry]`); off: no span work at all.
    pub telemetry: crate::telemetry::Telemetry,
    /// `[decision]`: the forward-auth endpoint for front proxies (see [`decision`]).
    pub decision: Option<Arc<decision::Decider>>,
}

/// What the audit line and metrics need, filled in as stages run.
struct Trace {
    request_id: HeaderValue,
    route: Option<Arc<Route>>,
    decision: Decision,
    caller: Option<Arc<identity::Credential>>,
    upstream_status: Option<u16>,
    jti: Option<Arc<str>>,
    /// `RateLimit-Policy`/`RateLimit` for the response on a rate-limited route.
    rate_headers: Option<crate::limits::RateHeaders>,
    /// The route's plan and its phase now.
    plan: Option<(Arc<crate::migration::Plan>, Phase)>,
    /// `observe`: the authentication refusal that was not enforced.
    observed_refusal: Option<&'static str>,
    /// `bridge` phase for a retired credential (or a `[[grace]]`): `Deprecation`/`Sunset`/`Link`
    /// on the response.
    sunset: Option<crate::migration::SunsetHeaders>,
    /// Let through under a `[[grace]]`: audited with reason `grace`.
    graced: bool,
    /// The canonical target for the audit line, once the request has one.
    target: Option<http::Uri>,
    /// The server span; the stages' spans are its children.
    span: crate::telemetry::RequestSpan,
    /// For the audit line (see `Telemetry::trace_id`).
    trace_id: Option<String>,
    /// Forwarded upstream, or decided for a front proxy.
    mode: Mode,
    /// Decision mode: the caller's address as the front proxy saw it (else the peer's).
    source: Option<std::net::SocketAddr>,
    /// The upstream answer's fields, set by the proxy stage: handed to the transport beside the
    /// response, never read here.
    relayed: Option<crate::proxy::Relayed>,
}

impl Gateway {
    /// Handle one request. Never fails: refusals become problem+json responses. A proxied
    /// answer's own fields come beside the response (see `proxy::Relayed`), and so do its
    /// `RateLimit` fields when its map holds nothing but `X-Request-Id` (see
    /// `transport::Answer`).
    pub async fn handle(
        &self,
        conn: &ConnInfo,
        req: Request<CallerBody>,
    ) -> (
        Response<ProxyBody>,
        Option<crate::proxy::Relayed>,
        Option<Box<crate::limits::RateHeaders>>,
    ) {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let mut body = RequestBody::new(body, self.bodies.clone(), conn.peer.ip());
        let span = self.telemetry.server_span(&parts.method, &parts.headers);
        let trace = Trace {
            trace_id: self.telemetry.trace_id(&span, &parts.headers),
            span,
            request_id: request_id(&parts.headers),
            route: None,
            decision: Decision::Deny,
            caller: None,
            upstream_status: None,
            jti: None,
            rate_headers: None,
            plan: None,
            observed_refusal: None,
            sunset: None,
            graced: false,
            target: None,
            mode: Mode::Proxy,
            source: None,
            relayed: None,
        };
        // From here until `finish`, a drop of this future (the caller left) is audited too.
        let mut req = InFlight {
            gw: self,
            conn,
            started,
            parts,
            trace,
            finished: false,
        };
        let InFlight { parts, trace, .. } = &mut req;
        let (mut resp, reason) = match self.stages(conn, parts, &mut body, trace).await {
            Ok(resp) => (resp, if trace.graced { "grace" } else { "ok" }),
            Err(refusal) => {
                // A refusal relays nothing of an answer.
                trace.relayed = None;
                let reason = refusal.reason.unwrap_or(refusal.code.as_str());
                if refusal.code.status().is_server_error() && trace.decision == Decision::Allow {
                    // Allowed, but the upstream failed: the decision stands, the reason says why.
                } else {
                    trace.decision = Decision::Deny;
                }
                let rid = trace.request_id.to_str().unwrap_or("-").to_owned();
                if parts.version == Version::HTTP_2 {
                    body.drain_politely().await;
                }
                let problem = (trace.mode == Mode::Decision).then(|| refusal.to_json(&rid));
                let mut resp = refusal.into_response(&rid);
                if let Some(p) = problem {
                    decision::mirror_problem(resp.headers_mut(), &p);
                }
                (resp, reason)
            }
        };
        // A map empty before `X-Request-Id` (a proxied answer's: its fields are beside it) and
        // that gets no `Sunset` fields holds nothing the `RateLimit` fields would come before
        // or replace: they can travel beside it, written where an insert would have put them.
        let rate_beside = resp.headers().is_empty() && trace.sunset.is_none();
        resp.headers_mut()
            .insert(headers::X_REQUEST_ID.clone(), trace.request_id.clone());
        let rate = match trace.rate_headers.take() {
            Some(h) if rate_beside => Some(Box::new(h)),
            Some(h) => {
                h.apply_to(resp.headers_mut());
                None
            }
            None => None,
        };
        if let Some(h) = &trace.sunset {
            h.apply(resp.headers_mut());
        }
        req.finished = true;
        self.finish(
            conn,
            &mut req.parts,
            resp.status().as_u16(),
            &mut req.trace,
            reason,
            started,
        );
        (resp, req.trace.relayed.take(), rate)
    }

    /// The stages, in order. The request's headers are moved out of `parts` when the request is
    /// translated for the upstream; what runs afterwards (audit) reads only the method and URI.
    async fn stages(
        &self,
        conn: &ConnInfo,
        parts: &mut Parts,
        body: &mut RequestBody,
        trace: &mut Trace,
    ) -> Result<Response<ProxyBody>, Refusal> {
        check_framing(conn, parts)?;
        check_head_limits(parts, self.head_limits)?;
        // Decision mode: from here on, the original request the front proxy describes.
        let adopted = self.adopt(conn, parts, trace)?;
        if let Some(caller) = &adopted {
            body.set_source(caller.peer.ip());
        }
        let conn = adopted.as_ref().unwrap_or(conn);
        // Built once: local endpoints, routing, policy, audit and the upstream URI all read it.
        let view = CanonicalRequest::of(parts)?;
        trace.target = view.audit_target(&parts.uri);
        if trace.mode == Mode::Proxy {
            if let Some(resp) = self.local(conn, parts, &view, body, trace).await? {
                return Ok(resp);
            }
        }
        let routed = trace.span.sync("route", || self.route(parts, view))?;
        let route = routed.route.clone();
        trace.span.routed(&parts.method, route.name());
        trace.route = Some(route.clone());
        let body_limit = route.config.max_body;
        check_body_limit(parts, body_limit)?;
        if authn::wants_body(&route.accept, parts) {
            if trace.mode == Mode::Decision && !body.present(parts) {
                return Err(decision::body_missing());
            }
            body.ensure_buffered(body_limit).await?;
        }
        let buffered = body.buffered().cloned();
        let url =
            (buffered.as_ref()).and_then(|_| authn::webhook::request_url(parts, conn.proto()));
        let view = match (&buffered, &url) {
            (Some(bytes), Some(url)) => Some(authn::BodyView { bytes, url }),
            (Some(_), None) => return Err(no_usable_host()),
            _ => None,
        };
        let now = self.clock.now();
        let plan = route.plan.clone();
        // `None` before the plan's observe date: the route behaves as without the plan.
        let phase = active_phase(plan.as_deref(), now);
        trace.plan = plan.clone().zip(phase);
        let authenticating =
            self.authenticate(&route, parts, conn, now, view, plan.as_deref(), phase);
        let (caller, admission) = if self.telemetry.enabled() {
            trace.span.run("authenticate", authenticating).await?
        } else {
            // No span: awaited as it is, not copied into the span's wrapper first (issue 22).
            authenticating.await?
        };
        trace.caller = caller.shared().cloned();
        if let Some(cred) = caller.credential() {
            crate::state::admit(&*self.state, cred)?;
            self.record_use(&route, cred, plan.as_deref(), conn, &parts.headers, now);
        }
        if let Admission::Observed { by, .. } = &admission {
            admission::vet_forwarded(
                &route.accept,
                by,
                plan.as_deref(),
                parts,
                conn,
                now,
                view,
                |c| crate::state::admit(&*self.state, c),
            )
            .await?;
        }
        let request = authz::Request {
            method: &parts.method,
            path: routed.policy_path(),
            source_ip: conn.peer.ip(),
            now,
            phase: phase.unwrap_or(Phase::Bridge).as_str(),
        };
        let policy = trace.span.stage("policy");
        let (permit, observing) =
            policy.close(authorize(&route, caller, request, &admission, trace))?;
        let (mut in_flight, mut token) = (None, None);
        // `observe`: nothing below is enforced, and the request goes upstream as sent.
        if admission.enforces() {
            let limits = trace.span.stage("limits");
            in_flight = limits.close(self.controls(&permit, conn, parts, body, trace).await)?;
            token = self.upstream_token(&permit, conn, now, trace).await?;
            trace.jti = token.as_ref().map(|m| m.jti.clone());
        }
        let outgoing = admission.outgoing(&permit, token.as_ref());
        if trace.mode == Mode::Decision {
            let resp = decision::answer(&permit, parts, outgoing)?;
            self.note_access(&permit, observing, trace, parts, &routed, now, &resp);
            return Ok(resp);
        }
        let (mut up, up_body, tripped) = translate(
            &permit,
            conn,
            caller_head(parts),
            &routed,
            body,
            &trace.request_id,
            outgoing,
        )?;
        let upstream = trace.span.upstream(route.name());
        self.telemetry.to_upstream(&mut *up.head, &upstream);
        let resp = upstream.close_response(
            self.forward(&route, up, up_body, tripped, in_flight, trace)
                .await,
        )?;
        self.note_access(&permit, observing, trace, parts, &routed, now, &resp);
        Ok(resp)
    }

    /// Mint stage: the upstream token, minted by the gateway or (`token_source =
    /// "workload-api"`) the agent's JWT-SVID for the route's audience.
    async fn upstream_token(
        &self,
        permit: &Permit<Route>,
        conn: &ConnInfo,
        now: std::time::SystemTime,
        trace: &mut Trace,
    ) -> Result<Option<crate::token::Minted>, Refusal> {
        let route = permit.route();
        match route.upstream.agent_tokens() {
            Some(agent) => {
                let up = &route.config.upstream;
                let fetch = agent.token_for(
                    up.audience.as_deref(),
                    up.token_header != crate::proxy::settings::TokenHeader::None,
                    now,
                );
                trace.span.stage("mint").close(fetch.await)
            }
            None => trace.span.sync("mint", || self.mint(permit, conn, now)),
        }
    }

    /// Authentication stage: the route's accepted credentials, then the caller's phase, decided
    /// once (every stage below reads the [`Admission`]).
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is a value an earlier stage produced; a struct of them would be built once, for this call only"
    )]
    async fn authenticate(
        &self,
        route: &Route,
        parts: &Parts,
        conn: &ConnInfo,
        now: std::time::SystemTime,
        view: Option<authn::BodyView<'_>>,
        plan: Option<&crate::migration::Plan>,
        phase: Option<Phase>,
    ) -> Result<(identity::Caller, Admission), Refusal> {
        // A source that keeps presenting wrong credentials (password spraying, key guessing) is
        // refused before its next attempt costs an LDAP bind or reaches a lockout counter.
        // `observe` never blocks a listed credential, and who the caller is is not known yet:
        // nothing is blocked there, but refusals it does not relax are still charged.
        let throttle = self
            .auth_failures
            .as_deref()
            .filter(|_| !route.accept.is_empty());
        if let Some(t) = throttle.filter(|_| phase != Some(Phase::Observe)) {
            t.check_source_at(conn.peer.ip(), now).inspect_err(|_| {
                self.metrics.rate_limited_total.with(&[route.name()]).inc();
            })?;
        }
        let authenticated =
            authn::authenticate_attributed(&route.accept, parts, conn, now, view).await;
        // Which credential refused, for `portcullis_auth_failures_total` (`decide` keeps only
        // the refusal).
        let refused_by = authenticated
            .as_ref()
            .err()
            .and_then(|f| f.credential.clone());
        let decided = Admission::decide(plan, !route.accept.is_empty(), authenticated, now);
        if let Err(r) = &decided {
            if r.code == Code::InvalidCredential {
                if let Some(t) = throttle {
                    t.note_auth_failure(conn.peer.ip());
                }
                let credential = refused_by.as_deref().unwrap_or("(unknown)");
                self.metrics
                    .auth_failures_total
                    .with(&[credential, r.code.as_str()])
                    .inc();
            }
        }
        decided
    }

    /// Access stage: record who was let in, for `policy suggest`.
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is a value an earlier stage produced; a struct of them would be built once, for this call only"
    )]
    fn note_access(
        &self,
        permit: &Permit<Route>,
        observing: bool,
        trace: &Trace,
        parts: &Parts,
        routed: &Routed,
        now: std::time::SystemTime,
        resp: &Response<ProxyBody>,
    ) {
        // Forwarded and answered 2xx/3xx: note who was let in for `policy suggest` (in
        // `observe`, only what the policy would have allowed). A 4xx/5xx is not access the
        // caller needs: counted, it would let a caller write its own suggestion.
        if let (Some(c), false, true) = (
            permit.caller().credential(),
            observing && trace.decision == Decision::ShadowDeny,
            resp.status().is_success() || resp.status().is_redirection(),
        ) {
            let access = crate::state::Access::of(
                permit.route().name(),
                &c.identity,
                parts.method.as_str(),
                routed.policy_path(),
                now,
            );
            if let Some(access) = access {
                self.state.record_access(&access);
            }
        }
    }

    /// Rate and concurrency limits, then request validation (buffering the body when it must be
    /// read). Returns the concurrency slot to hold until the response is done.
    async fn controls(
        &self,
        permit: &Permit<Route>,
        conn: &ConnInfo,
        parts: &Parts,
        body: &mut RequestBody,
        trace: &mut Trace,
    ) -> Result<Option<crate::limits::InFlight>, Refusal> {
        let route = permit.route();
        let mut in_flight = None;
        if let Some(limits) = &route.limits {
            let key = match permit.caller().credential() {
                Some(c) => std::borrow::Cow::Borrowed(c.identity.as_str()),
                None => std::borrow::Cow::Owned(conn.peer.ip().to_string()),
            };
            trace.rate_headers = Some(limits.check_rate(&key).inspect_err(|_| {
                self.metrics.rate_limited_total.with(&[route.name()]).inc();
            })?);
            in_flight = limits.try_acquire()?;
        }
        // Decision mode validates only a body that came with the decision request (nginx
        // `auth_request` never sends one; see docs/decision-mode.md).
        let validator = route
            .validator
            .as_ref()
            .filter(|_| trace.mode == Mode::Proxy || body.present(parts));
        if let Some(v) = validator {
            let has_body = body.present(parts);
            v.check_head(parts, has_body)?;
            if has_body && v.needs_body(parts) {
                v.check_body(parts, body.ensure_buffered(route.config.max_body).await?)?;
            }
        }
        Ok(in_flight)
    }

    /// Proxy stage: send to the upstream, time it, hold the concurrency slot until the response
    /// body is done.
    async fn forward(
        &self,
        route: &Arc<Route>,
        upstream_req: crate::proxy::Outbound,
        body: ProxyBody,
        tripped: Tripped,
        in_flight: Option<crate::limits::InFlight>,
        trace: &mut Trace,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let upstream_started = Instant::now();
        // A streamed body (the only kind with a `tripped` flag) is cut when it stalls.
        let (body, stalled) = match tripped {
            Some(_) => {
                let (req, stalled) = self.bodies.idle(Request::new(body));
                (req.into_body(), Some(stalled))
            }
            None => (body, None),
        };
        let mut result = route
            .upstream
            .send(upstream_req, body, tripped.as_deref(), upstream_started)
            .await;
        if result.is_err() {
            if let Some(r) = crate::limits::bodies::stalled_refusal(stalled.as_deref()) {
                result = Err(r);
            }
        }
        route
            .meters
            .upstream(&self.metrics, route.name())
            .observe(upstream_started.elapsed());
        let (resp, relayed) = result?;
        trace.relayed = relayed;
        trace.upstream_status = Some(resp.status().as_u16());
        Ok(match in_flight {
            // The concurrency slot is held until the response body is finished (or dropped).
            Some(permit) => resp.map(|b| {
                b.map_frame(move |f| {
                    let _held = &permit;
                    f
                })
                .boxed()
            }),
            None => resp,
        })
    }

    /// Usage and inventory (in memory; flushed by the state store), and the legacy counter.
    fn record_use(
        &self,
        route: &Route,
        cred: &identity::Credential,
        plan: Option<&crate::migration::Plan>,
        conn: &ConnInfo,
        headers: &http::HeaderMap,
        now: std::time::SystemTime,
    ) {
        let mut usage =
            crate::state::Usage::of(cred, route.name(), plan.map(|p| p.name.as_str()), now);
        if cred.kind == identity::Kind::Mtls {
            usage.cert_not_after = conn.tls.as_ref().and_then(|t| t.leaf_not_after());
        }
        // Who is behind the credential: shared-credential detection (`state::sources`), the
        // address formatted only for a source new in the flush interval.
        let agent = headers.get(http::header::USER_AGENT).map(|v| v.as_bytes());
        self.state.record_from(&usage, conn.peer.ip(), agent);
        if let (Some(p), true) = (plan, cred.kind.is_legacy()) {
            self.metrics
                .legacy_requests_total
                .with(&[p.name.as_str(), &cred.name])
                .inc();
        }
    }

    /// Decision stage: a request for `[decision] path_prefix` becomes the original request the
    /// front proxy describes (only from a trusted proxy), with the caller's connection.
    fn adopt(
        &self,
        conn: &ConnInfo,
        parts: &mut Parts,
        trace: &mut Trace,
    ) -> Result<Option<ConnInfo>, Refusal> {
        let Some(d) = self.decision.as_deref().filter(|d| d.claims(parts)) else {
            return Ok(None);
        };
        trace.mode = Mode::Decision;
        let caller = d.adopt(conn, parts, self.clock.now())?;
        trace.source = Some(caller.peer);
        Ok(Some(caller))
    }

    /// Local stage: the first local route the request is for answers it (allowed, or refused).
    async fn local(
        &self,
        conn: &ConnInfo,
        parts: &Parts,
        view: &CanonicalRequest,
        body: &mut RequestBody,
        trace: &mut Trace,
    ) -> Result<Option<Response<ProxyBody>>, Refusal> {
        for l in &self.local {
            if l.matches(parts, view)? {
                let resp = l
                    .serve(LocalRequest::new(self, conn, parts, view, body, trace))
                    .await?;
                trace.decision = Decision::Allow;
                return Ok(Some(resp));
            }
        }
        Ok(None)
    }

    /// Mint (or take from the cache) the token for the permitted caller, when the route sends one.
    fn mint(
        &self,
        permit: &Permit<Route>,
        conn: &ConnInfo,
        now: std::time::SystemTime,
    ) -> Result<Option<crate::token::Minted>, Refusal> {
        let up = &permit.route().config.upstream;
        let (Some(cred), Some(audience)) = (permit.caller().credential(), up.audience.as_deref())
        else {
            return Ok(None);
        };
        if up.token_header == TokenHeader::None {
            return Ok(None);
        }
        let Some(issuer) = &self.issuer else {
            // `check` refuses this config; fail closed if it happens anyway.
            return Err(Refusal::new(
                Code::UpstreamUnavailable,
                "the gateway cannot mint a token for this route",
            ));
        };
        let cnf = crate::token::mint::cnf_thumbprint(cred, conn.tls.as_ref());
        let req = MintRequest::for_credential(cred, audience, up.token_profile, cnf);
        match self.tokens.get_or_mint(issuer, &req, now, &self.metrics) {
            Ok(issued) => Ok(Some(issued.minted)),
            Err(e) => {
                tracing::error!(error = %e, route = %permit.route().name(), "minting failed");
                Err(Refusal::new(
                    Code::UpstreamUnavailable,
                    "the gateway could not mint a token for the upstream",
                ))
            }
        }
    }

    /// Route stage: select on the canonical match path (`;params` cut for every route), then
    /// refuse parameters the selected route does not accept.
    fn route(&self, parts: &Parts, view: CanonicalRequest) -> Result<Routed, Refusal> {
        let route = self
            .router
            .select(view.host.as_deref(), &view.match_path, &parts.method)?;
        view.admit_params(route.matcher())?;
        // A copy only when case folding changed the match path (the usual route reads it as is).
        let folded = match view.policy_path(route.matcher()) {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(p) => Some(p),
        };
        Ok(Routed {
            route: route.clone(),
            match_path: view.match_path,
            folded,
            path: view.path,
            host: view.host,
        })
    }

    /// Audit and metrics: always runs, whatever happened (for a request whose caller left before
    /// its answer, from [`InFlight`]'s drop). Takes what it records out of `trace`, and the
    /// target out of `parts` (read by nothing after it).
    fn finish(
        &self,
        conn: &ConnInfo,
        parts: &mut Parts,
        status: u16,
        trace: &mut Trace,
        reason: &'static str,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let route_name = trace.route.as_ref().map(|r| r.name().clone());
        let kind = trace.caller.as_ref().map(|c| c.kind.as_str());
        let label_route = route_name.as_deref().unwrap_or(crate::metrics::UNROUTED);
        match &trace.route {
            Some(r) => r.meters.count_request(
                &self.metrics,
                r.name(),
                trace.decision,
                trace.caller.as_ref().map(|c| c.kind),
                status,
            ),
            None => self
                .metrics
                .requests_total
                .with(&[
                    label_route,
                    trace.decision.as_str(),
                    kind.unwrap_or("none"),
                    crate::metrics::status_class(status),
                ])
                .inc(),
        }
        // A caller that left was not refused.
        if reason != "ok" && reason != CALLER_GONE {
            self.metrics
                .refusals_total
                .with(&[label_route, reason])
                .inc();
        }
        trace.span.finish(status, trace.decision.as_str(), reason);
        match &trace.route {
            Some(r) => r.meters.request(&self.metrics, r.name()).observe(elapsed),
            None => self
                .metrics
                .request_duration_seconds
                .with(&[label_route])
                .observe(elapsed),
        }
        // The permit is gone by now, so this takes the credential back without a copy.
        let (credential, principal, identity) = match trace.caller.take().map(Arc::unwrap_or_clone)
        {
            Some(c) => (Some(c.name), c.principal, Some(c.identity)),
            None => (None, None, None),
        };
        self.auditor.record(audit::Record {
            ts: self.clock.now(),
            request_id: std::mem::replace(&mut trace.request_id, HeaderValue::from_static("")),
            route: route_name,
            method: parts.method.clone(),
            target: trace
                .target
                .take()
                .unwrap_or_else(|| std::mem::take(&mut parts.uri)),
            source: trace.source.unwrap_or(conn.peer),
            decision: trace.decision,
            reason,
            credential,
            kind,
            principal,
            identity,
            plan: trace.plan.as_ref().map(|(p, _)| Arc::from(p.name.as_str())),
            phase: trace.plan.as_ref().map(|(_, ph)| ph.as_str()),
            status,
            upstream_status: trace.upstream_status,
            latency_ms: (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            jti: trace.jti.take(),
            trace_id: trace.trace_id.take(),
            mode: trace.mode.as_str(),
        });
    }
}

/// The audit `reason` of a request whose caller left before its answer was ready: its
/// connection closed (HTTP/1.1: the gateway watches for that once the request body is read),
/// its h2 stream was reset, or the drain deadline passed. Not a refusal: not counted in
/// `refusals_total`.
pub const CALLER_GONE: &str = "caller-gone";

/// The audit `status` of such a request: no answer was sent (nginx's 499, "client closed
/// request").
pub const CALLER_GONE_STATUS: u16 = 499;

/// A request between its arrival and its audit line. Dropped before `finish` (the caller left,
/// and its connection's driver dropped the request's future, which also cancels the upstream
/// request), it writes the audit line and metrics itself, with [`CALLER_GONE`]: a request that
/// may already have reached the upstream is never left out of the audit log.
struct InFlight<'a> {
    gw: &'a Gateway,
    conn: &'a ConnInfo,
    started: Instant,
    parts: Parts,
    trace: Trace,
    finished: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.gw.finish(
                self.conn,
                &mut self.parts,
                CALLER_GONE_STATUS,
                &mut self.trace,
                CALLER_GONE,
                self.started,
            );
        }
    }
}

/// Authorization stage: enforced (a [`Permit`] or a refusal), or in `observe` only evaluated.
/// Returns the permit and whether the request is only observed.
fn authorize(
    route: &Arc<Route>,
    caller: identity::Caller,
    request: authz::Request<'_>,
    admission: &Admission,
    trace: &mut Trace,
) -> Result<(Permit<Route>, bool), Refusal> {
    Ok(match admission {
        Admission::Retired(r) => return Err(r.clone()),
        Admission::Observed { refused, .. } => {
            // Forwarded unchanged, with the caller's own credentials: nothing is enforced.
            trace.observed_refusal = *refused;
            let (permit, would_allow) = authz::observe(route, caller, request);
            trace.decision = if would_allow && trace.observed_refusal.is_none() {
                Decision::Observe
            } else {
                Decision::ShadowDeny
            };
            (permit, true)
        }
        Admission::Enforced { .. } | Admission::Graced { .. } => {
            trace.sunset = admission
                .sunset(trace.plan.as_ref().map(|(p, _)| &**p))
                .cloned();
            trace.graced = admission.graced();
            let (permit, shadow) = authz::authorize(route, caller, request)?;
            trace.decision = match shadow {
                authz::Shadow::Agrees => Decision::Allow,
                authz::Shadow::Denies => Decision::ShadowDeny,
            };
            (permit, false)
        }
    })
}

/// What the route stage established: the route, the canonical path and the request's host.
struct Routed {
    route: Arc<Route>,
    /// The canonical path, `;params` included: what the upstream receives.
    path: crate::routing::canonical::Text,
    /// The canonical match path (`;params` cut).
    match_path: crate::routing::canonical::Text,
    /// The match path case-folded for a `case_insensitive` route, when that changed it.
    folded: Option<String>,
    host: Option<Arc<str>>,
}

impl Routed {
    /// What the route's policy and `policy suggest` see (see `CanonicalRequest::policy_path`).
    fn policy_path(&self) -> &str {
        self.folded.as_deref().unwrap_or(&self.match_path)
    }
}

/// The caller's method, target and headers, for [`translate`]: the headers are moved out (nothing
/// after translation reads them), the rest is shared.
fn caller_head(parts: &mut Parts) -> Parts {
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    // Swapped: the caller's side keeps the new head's empty map (nothing to drop).
    std::mem::swap(head.headers_mut(), &mut parts.headers);
    head.into_parts().0
}

/// Translate stage: only a [`Permit`] gets a request built for the upstream.
fn translate(
    permit: &Permit<Route>,
    conn: &ConnInfo,
    mut head: Parts,
    routed: &Routed,
    body: &mut RequestBody,
    request_id: &HeaderValue,
    outgoing: Outgoing<'_>,
) -> Result<(crate::proxy::Outbound, ProxyBody, Tripped), Refusal> {
    let route = permit.route();
    // The credentials are stripped from the caller's head (API key query parameters live in the
    // URI, Basic and Bearer in Authorization). Every accepted credential strips, not only the one
    // that authenticated: no static secret reaches the upstream.
    if outgoing.strip_credentials() {
        for a in &route.accept {
            a.strip(&mut head);
        }
    }
    let uri = route.upstream.uri_for(&routed.path, &head.uri)?;
    let mut up = headers::to_upstream(
        head.headers,
        &conn.hop,
        routed.host.as_deref(),
        request_id,
        route.upstream.host_header(),
        headers::Strip {
            route: &route.config.upstream.strip_headers,
            // A pass-through route (no `accept`) authenticates nothing itself: the upstream's
            // own authentication keeps the caller's `Authorization`.
            authorization: outgoing.strip_credentials() && !route.accept.is_empty(),
        },
    );
    if let Some(minted) = outgoing.token() {
        match &route.config.upstream.token_header {
            TokenHeader::Authorization => {
                up.set(http::header::AUTHORIZATION, minted.bearer.clone());
            }
            TokenHeader::Named(n) => up.set(n.clone(), minted.bare.clone()),
            TokenHeader::None => {}
        }
    }
    // Only with a vouched-for caller: see `Admission::outgoing`.
    if let Some((name, value)) = outgoing.inject() {
        up.set(name.clone(), value.clone());
    }
    let (body, tripped) = body.take_for_upstream(route.config.max_body);
    // The caller's fields become the upstream request's as parsed: described, not edited (see
    // `proxy::headers::UpstreamHead`).
    let outbound = crate::proxy::Outbound {
        method: head.method,
        uri,
        head: up,
    };
    Ok((outbound, body, tripped))
}

/// A buffered body is signed over a URL built from `Host`: without a usable one there is nothing
/// to check the signature against.
fn no_usable_host() -> Refusal {
    Refusal::new(Code::InvalidRequest, "the request has no usable Host")
}
