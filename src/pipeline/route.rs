//! A route at run time: its settings ([`RouteConfig`], as checked from the config) plus every
//! mechanism built from them. The pipeline owns this bundle; the router (`crate::routing`) only
//! knows how a route is matched ([`Routable`]), and each mechanism only its own part.

use std::sync::{Arc, OnceLock};

use http::{HeaderValue, Method};

use crate::limits::settings::LimitsConfig;
use crate::metrics::{Histogram, Metrics};
use crate::proxy::settings::UpstreamConfig;
use crate::proxy::Upstream;
use crate::routing::settings::HostMatch;
use crate::routing::{Matcher, Routable};

/// One route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: Arc<str>,
    pub host: Option<HostMatch>,
    pub path_prefix: String,
    /// `[routes.match] case_insensitive`: prefix matching ignores ASCII case.
    pub case_insensitive: bool,
    /// `[routes.match] path_parameters`.
    pub path_parameters: crate::routing::canonical::PathParameters,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    pub upstream: UpstreamConfig,
    pub max_body: u64,
    /// Credential names, tried in order; empty: an explicit pass-through route.
    pub accept: Vec<Arc<str>>,
    /// Who may use the route: `None` only for a pass-through route (no `accept`).
    pub policy: Option<crate::authz::policy::RouteSpec>,
    pub plan: Option<String>,
    /// Basic and API keys over plain HTTP (refused unless set).
    pub plaintext_credentials: bool,
    pub limits: LimitsConfig,
    /// `[routes.validate]`, when set.
    pub validate: Option<crate::validate::ValidateSettings>,
}

/// A route at run time: its config plus what was built from it.
#[derive(Debug)]
pub struct Route {
    pub config: Arc<RouteConfig>,
    pub upstream: Upstream,
    /// The credentials this route accepts, in order; empty means an explicit pass-through.
    pub accept: Vec<Arc<dyn crate::authn::Authenticator>>,
    /// Who may use the route (`None`: pass-through, no credentials accepted).
    pub policy: Option<Arc<crate::authz::policy::RoutePolicy>>,
    /// The route's migration plan.
    pub plan: Option<Arc<crate::migration::Plan>>,
    /// Rate and concurrency limits.
    pub limits: Option<Arc<crate::limits::RouteLimits>>,
    /// Request validation.
    pub validator: Option<Arc<crate::validate::Validator>>,
    /// The legacy upstream's own credential (`upstream.inject`), ready to add; marked sensitive.
    pub inject: Option<(http::HeaderName, HeaderValue)>,
    /// The route's latency histograms, found in their families on first use.
    pub meters: RouteMeters,
}

/// A route's children of the `route`-labelled latency families: looked up once, not for every
/// request (a keyed hash of the label and a read lock each, issue 22). The gateway has one
/// [`Metrics`] for its lifetime and never removes a child, so the child found first stays the one
/// exported.
#[derive(Debug, Default)]
pub struct RouteMeters {
    request: OnceLock<Arc<Histogram>>,
    upstream: OnceLock<Arc<Histogram>>,
}

impl RouteMeters {
    /// `portcullis_request_duration_seconds{route}`.
    pub fn request(&self, metrics: &Metrics, route: &str) -> &Histogram {
        self.request
            .get_or_init(|| metrics.request_duration_seconds.with(&[route]))
    }

    /// `portcullis_upstream_duration_seconds{route}`.
    pub fn upstream(&self, metrics: &Metrics, route: &str) -> &Histogram {
        self.upstream
            .get_or_init(|| metrics.upstream_duration_seconds.with(&[route]))
    }
}

impl Route {
    /// The route's name.
    pub fn name(&self) -> &Arc<str> {
        &self.config.name
    }
}

impl Routable for Route {
    fn matcher(&self) -> Matcher<'_> {
        let c = &self.config;
        Matcher {
            host: c.host.as_ref(),
            path_prefix: &c.path_prefix,
            case_insensitive: c.case_insensitive,
            methods: c.methods.as_deref(),
            path_parameters: c.path_parameters,
        }
    }
}

impl crate::authz::Guarded for Route {
    fn name(&self) -> &Arc<str> {
        &self.config.name
    }
    fn policy(&self) -> Option<&Arc<crate::authz::policy::RoutePolicy>> {
        self.policy.as_ref()
    }
}

/// The routes of the data listener, most specific first.
pub type Router = crate::routing::Router<Route>;
