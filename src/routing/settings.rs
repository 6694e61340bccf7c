//! A route as checked from the config: how it is matched, plus the settings of each mechanism
//! it uses.

use std::sync::Arc;

use http::Method;

use crate::limits::settings::LimitsConfig;
use crate::proxy::settings::UpstreamConfig;

/// A route's `host` matcher: exact (`api.corp.example`) or one-label wildcard (`*.corp.example`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Exact(String),
    /// Suffix including the leading dot: `.corp.example`.
    Wildcard(String),
}

impl HostMatch {
    /// `host` is already lower-cased and without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

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
