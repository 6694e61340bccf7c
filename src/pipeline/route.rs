//! A route at run time: its settings ([`RouteConfig`], as checked from the config) plus every
//! mechanism built from them. The pipeline owns this bundle; the router (`crate::routing`) only
//! knows how a route is matched ([`Routable`]), and each mechanism only its own part.

use std::sync::{Arc, OnceLock};

use http::{HeaderValue, Method};

use crate::audit::Decision;
use crate::identity::Kind;
use crate::limits::settings::LimitsConfig;
use crate::metrics::{Counter, Histogram, Metrics};
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

/// A route's children of the `route`-labelled families: looked up once, not for every request
/// (a keyed hash of the labels and a read lock each, issue 22). The gateway has one [`Metrics`]
/// for its lifetime and never removes a child, so the child found first stays the one exported;
/// a child is still created by the first request that needs it, so `/metrics` lists the same
/// series as when every request looked its child up.
#[derive(Debug)]
pub struct RouteMeters {
    request: OnceLock<Arc<Histogram>>,
    upstream: OnceLock<Arc<Histogram>>,
    /// `portcullis_requests_total{route, decision, kind, code}`, one slot per combination of
    /// the other three labels (see [`requests_slot`]).
    requests: Box<[OnceLock<Arc<Counter>>]>,
}

impl Default for RouteMeters {
    fn default() -> Self {
        RouteMeters {
            request: OnceLock::new(),
            upstream: OnceLock::new(),
            requests: (0..REQUESTS_SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// The values of `decision`, `kind` (`none` and each credential kind) and `code`.
const DECISIONS: usize = 4;
const KINDS: usize = 6;
const CLASSES: usize = 5;
const REQUESTS_SLOTS: usize = DECISIONS * KINDS * CLASSES;

/// The slot of one combination of `decision`, `kind` and `code` in [`RouteMeters::requests`].
fn requests_slot(decision: Decision, kind: Option<Kind>, status: u16) -> usize {
    let d = match decision {
        Decision::Allow => 0,
        Decision::Deny => 1,
        Decision::ShadowDeny => 2,
        Decision::Observe => 3,
    };
    let k = match kind {
        None => 0,
        Some(Kind::Mtls) => 1,
        Some(Kind::JwtSvid) => 2,
        Some(Kind::Ldap) => 3,
        Some(Kind::ApiKey) => 4,
        Some(Kind::Webhook) => 5,
    };
    // As `metrics::status_class` groups them.
    let c = match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    };
    (d * KINDS + k) * CLASSES + c
}

impl RouteMeters {
    /// `portcullis_request_duration_seconds{route}`.
    pub fn request(&self, metrics: &Metrics, route: &str) -> &Histogram {
        self.request
            .get_or_init(|| metrics.request_duration_seconds.with(&[route]))
    }

    /// Count one request in `portcullis_requests_total{route, decision, kind, code}`.
    pub fn count_request(
        &self,
        metrics: &Metrics,
        route: &str,
        decision: Decision,
        kind: Option<Kind>,
        status: u16,
    ) {
        let labels = || {
            [
                route,
                decision.as_str(),
                kind.map_or("none", Kind::as_str),
                crate::metrics::status_class(status),
            ]
        };
        match self.requests.get(requests_slot(decision, kind, status)) {
            Some(slot) => slot
                .get_or_init(|| metrics.requests_total.with(&labels()))
                .inc(),
            None => metrics.requests_total.with(&labels()).inc(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of the three labels has its own slot, and two statuses share one only
    /// when `status_class` labels them alike: a cached child is never counted for another series.
    #[test]
    fn requests_slots_are_one_per_label_set() {
        let decisions = [
            Decision::Allow,
            Decision::Deny,
            Decision::ShadowDeny,
            Decision::Observe,
        ];
        let kinds = [
            None,
            Some(Kind::Mtls),
            Some(Kind::JwtSvid),
            Some(Kind::Ldap),
            Some(Kind::ApiKey),
            Some(Kind::Webhook),
        ];
        let mut seen = std::collections::HashMap::new();
        for d in decisions {
            for k in kinds {
                for status in 0..=1000u16 {
                    let slot = requests_slot(d, k, status);
                    assert!(slot < REQUESTS_SLOTS);
                    let labels = (
                        d.as_str(),
                        k.map_or("none", Kind::as_str),
                        crate::metrics::status_class(status),
                    );
                    assert_eq!(*seen.entry(slot).or_insert(labels), labels, "{status}");
                }
            }
        }
        assert_eq!(seen.len(), REQUESTS_SLOTS);
    }
}
