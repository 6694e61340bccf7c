//! `[[routes]]`: match (host, prefix, methods), accepted credentials, policy, `[routes.validate]` and `[routes.limits]`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use super::creds::{self, parse_per, CredentialConfig};
use super::upstream::upstream;
use super::validate::Collector;
use super::{defaults, raw};
use crate::identity::Kind;
use crate::limits::settings::{LimitsConfig, Rate};
use crate::pipeline::route::RouteConfig;
use crate::routing::canonical::{self, PathParameters};
use crate::routing::path;
use crate::routing::settings::HostMatch;

/// `[[routes]]`: each route, with unique names and reachable matchers.
pub(super) fn routes(
    c: &mut Collector<'_>,
    base: &Path,
    routes_value: Option<&Value>,
    ctx: &RouteCtx<'_>,
) -> Vec<Arc<RouteConfig>> {
    let mut routes = Vec::new();
    match routes_value {
        None => c.warn("no [[routes]]: every request will get 404 no-route"),
        Some(Value::Array(items)) => {
            let mut names = HashSet::new();
            let mut matchers = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let key = format!("routes[{i}]");
                let Some(r) = c.section::<raw::Route>(&key, item) else {
                    continue;
                };
                if !names.insert(r.name.clone()) {
                    c.push(
                        format!("{key}.name"),
                        format!("duplicate route name {:?}", r.name),
                    );
                }
                if let Some(rc) = route(c, base, &key, r, ctx) {
                    let sig = (rc.host.clone(), rc.path_prefix.clone(), rc.methods.clone());
                    if !matchers.insert(sig) {
                        c.push(
                            format!("{key}.match"),
                            "another route has the same host, path_prefix and methods: it could never be reached",
                        );
                    }
                    routes.push(Arc::new(rc));
                }
            }
        }
        Some(_) => c.push("routes", "must be an array of tables ([[routes]])"),
    }
    routes
}

/// What a route is checked against.
pub(super) struct RouteCtx<'a> {
    pub(super) model: &'a crate::authz::policy::Model,
    pub(super) credentials: &'a [Arc<CredentialConfig>],
    pub(super) issuer: bool,
    pub(super) tls: bool,
}

pub(super) fn route(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    r: raw::Route,
    ctx: &RouteCtx<'_>,
) -> Option<RouteConfig> {
    let before = c.problems.len();
    let rules_in = RulesIn {
        name: r.name.clone(),
        policy: r.policy.clone(),
        shadow_policy: r.shadow_policy.clone(),
        allow: r.allow.clone(),
    };
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.push(
            format!("{key}.name"),
            "must be non-empty and use only letters, digits, '-', '_' and '.'",
        );
    }
    let case_insensitive = r.matcher.case_insensitive;
    let (prefix, path_parameters, methods, host) = route_match(c, key, &r.matcher);
    let accept = route_accept(c, key, &r, ctx, host.as_ref());
    let policy = route_policy(c, base, key, &rules_in, !accept.is_empty(), ctx.model);
    let validate = r
        .validate
        .as_ref()
        .and_then(|v| validation(c, base, key, v));
    let upstream = upstream(c, base, key, r.upstream, !accept.is_empty(), ctx.issuer);
    let max_body = c.size(
        &format!("{key}.limits.max_body"),
        r.limits.max_body.as_ref(),
        defaults::MAX_BODY,
    );
    let limits = limits(c, key, &r.limits);
    if c.problems.len() != before {
        return None;
    }
    Some(RouteConfig {
        name: Arc::from(r.name.as_str()),
        host,
        path_prefix: prefix,
        case_insensitive,
        path_parameters,
        methods,
        upstream: upstream?,
        max_body,
        accept,
        policy,
        plan: r.plan,
        plaintext_credentials: r.dangerous_allow_plaintext_credentials,
        limits,
        validate,
    })
}

/// `[routes.match]`: the path prefix (canonical, without `;`), path parameters, methods and host.
pub(super) fn route_match(
    c: &mut Collector<'_>,
    key: &str,
    m: &raw::Match,
) -> (
    String,
    PathParameters,
    Option<Vec<Method>>,
    Option<HostMatch>,
) {
    let prefix = m.path_prefix.clone();
    match path::normalize(&prefix) {
        Ok(canon) if canon == prefix => {}
        Ok(canon) => c.push(
            format!("{key}.match.path_prefix"),
            format!("{prefix:?} is not in canonical form (write {canon:?})"),
        ),
        Err(e) => c.push(
            format!("{key}.match.path_prefix"),
            format!("{prefix:?}: {e}"),
        ),
    }
    // Routes are matched on the path with `;params` cut: a prefix holding one could never match.
    if canonical::strip_params(&prefix) != prefix.as_str() {
        c.push(
            format!("{key}.match.path_prefix"),
            format!("{prefix:?}: a path prefix cannot contain ';' (routes match before it)"),
        );
    }
    let path_parameters = match m.path_parameters.as_deref() {
        None => PathParameters::default(),
        Some(p) => PathParameters::parse(p).unwrap_or_else(|| {
            c.push(
                format!("{key}.match.path_parameters"),
                format!("{p:?}: expected \"refuse\" or \"strip-for-match\""),
            );
            PathParameters::default()
        }),
    };
    let methods = m.methods.as_ref().map(|ms| {
        let mut out = Vec::new();
        if ms.is_empty() {
            c.push(
                format!("{key}.match.methods"),
                "empty list (omit the key to allow every method)",
            );
        }
        for (j, m) in ms.iter().enumerate() {
            let upper = m.to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if *m == upper && method != Method::CONNECT => out.push(method),
                Ok(_) if *m != upper => c.push(
                    format!("{key}.match.methods[{j}]"),
                    format!("write methods in upper case ({upper:?})"),
                ),
                _ => c.push(
                    format!("{key}.match.methods[{j}]"),
                    format!("unsupported method {m:?}"),
                ),
            }
        }
        out
    });
    let host = m.host.as_ref().map(|h| {
        let lower = h.to_ascii_lowercase();
        let valid_label = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                })
        };
        if let Some(rest) = lower.strip_prefix("*.") {
            if !valid_label(rest) {
                c.push(
                    format!("{key}.match.host"),
                    format!("invalid host pattern {h:?}"),
                );
            }
            HostMatch::Wildcard(format!(".{rest}"))
        } else {
            if !valid_label(&lower) {
                c.push(
                    format!("{key}.match.host"),
                    format!("invalid host {h:?} (a DNS name without port, or *.suffix)"),
                );
            }
            HostMatch::Exact(lower)
        }
    });
    (prefix, path_parameters, methods, host)
}

/// `accept`: the credential names, each configured once, and whether secrets may cross plain HTTP.
pub(super) fn route_accept(
    c: &mut Collector<'_>,
    key: &str,
    r: &raw::Route,
    ctx: &RouteCtx<'_>,
    host: Option<&HostMatch>,
) -> Vec<Arc<str>> {
    let mut accept: Vec<Arc<str>> = Vec::new();
    let mut legacy_plain = false;
    for (i, n) in r.accept.iter().enumerate() {
        match ctx.credentials.iter().find(|cr| *cr.name == **n) {
            None => c.push(
                format!("{key}.accept[{i}]"),
                format!("no [credentials.{n}] (or it is invalid)"),
            ),
            Some(cr) => {
                if accept.iter().any(|a| **a == **n) {
                    c.push(format!("{key}.accept[{i}]"), "listed twice");
                }
                creds::url_signed_webhook(c, (key, &r.name, i), cr, host);
                if matches!(cr.kind(), Kind::Ldap | Kind::ApiKey) {
                    legacy_plain = true;
                }
                if cr.kind() == Kind::Mtls && !ctx.tls {
                    c.push(
                        format!("{key}.accept[{i}]"),
                        "mtls needs [listen.tls] (client certificates come with TLS)",
                    );
                }
                accept.push(cr.name.clone());
            }
        }
    }
    if legacy_plain && !ctx.tls {
        if r.dangerous_allow_plaintext_credentials {
            c.warn(format!(
                "route {}: passwords and API keys are accepted over plain HTTP (dangerous_allow_plaintext_credentials)",
                r.name
            ));
        } else {
            c.push(
                format!("{key}.accept"),
                "Basic passwords and API keys over plain HTTP would be readable on the network: configure [listen.tls], or set dangerous_allow_plaintext_credentials = true (development only)",
            );
        }
    }
    accept
}

/// `policy` / `allow` / `shadow_policy`: compiled and validated against the Cedar schema now, so
/// `check` reports a broken policy with its file and line.
pub(super) struct RulesIn {
    name: String,
    policy: Option<String>,
    shadow_policy: Option<String>,
    allow: Option<Vec<String>>,
}

pub(super) fn route_policy(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    r: &RulesIn,
    accepts: bool,
    model: &crate::authz::policy::Model,
) -> Option<crate::authz::policy::RouteSpec> {
    use crate::authz::policy::{check, RouteSpec, Rules};
    let policy = r
        .policy
        .as_ref()
        .map(|p| c.file_path(&format!("{key}.policy"), base, p));
    let shadow = r
        .shadow_policy
        .as_ref()
        .map(|p| c.file_path(&format!("{key}.shadow_policy"), base, p));
    let rules = match Rules::from_route(&r.name, accepts, policy, r.allow.clone()) {
        Ok(rules) => rules,
        Err(e) => {
            c.push(key, e.to_string());
            return None;
        }
    };
    let Some(rules) = rules else {
        if shadow.is_some() {
            c.push(
                format!("{key}.shadow_policy"),
                "the route accepts no credentials: there is nobody to authorize",
            );
        }
        return None;
    };
    if let Rules::Allow(patterns) = &rules {
        if patterns.is_empty() {
            c.push(
                format!("{key}.allow"),
                "empty: nobody could use the route (remove it, or list who may)",
            );
            return None;
        }
    }
    let spec = RouteSpec {
        route: r.name.clone(),
        rules,
        shadow,
    };
    for e in check(model, &spec) {
        let mut p = e.problem(c.file);
        if p.key.is_empty() {
            p.key = "-".into();
        }
        c.problems.push(p);
    }
    Some(spec)
}

pub(super) fn validation(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    v: &raw::Validate,
) -> Option<crate::validate::ValidateSettings> {
    use crate::validate::{ValidateSettings, Validator, XmlSettings};
    let vkey = format!("{key}.validate");
    let mut s = ValidateSettings {
        content_types: v.content_types.clone(),
        json_schema: v
            .json_schema
            .as_ref()
            .map(|p| c.file_path(&format!("{vkey}.json_schema"), base, p)),
        ..ValidateSettings::default()
    };
    if let Some(d) = v.max_json_depth {
        s.max_json_depth = usize::try_from(d).unwrap_or(usize::MAX);
    }
    if let Some(q) = &v.max_query_bytes {
        let n = c.size(&format!("{vkey}.max_query_bytes"), Some(q), 8192);
        s.max_query_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(x) = &v.xml {
        let d = XmlSettings::default();
        s.xml = XmlSettings {
            max_depth: x
                .max_depth
                .map_or(d.max_depth, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_attributes: x.max_attributes.map_or(d.max_attributes, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            max_bytes: x.max_bytes.as_ref().map(|b| {
                let n = c.size(&format!("{vkey}.xml.max_bytes"), Some(b), 1);
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            allow_processing_instructions: x.allow_processing_instructions,
        };
    }
    if c.problems.iter().any(|p| p.key.starts_with(&vkey)) {
        return None;
    }
    // Compile now (schema file read and compiled) so `check` reports what `serve` would.
    match Validator::new(&s) {
        Ok(_) => Some(s),
        Err(e) => {
            c.push(vkey, e);
            None
        }
    }
}

pub(super) fn limits(c: &mut Collector<'_>, key: &str, l: &raw::Limits) -> LimitsConfig {
    let mut rate = |which: &str, v: Option<&String>, burst: Option<u64>| -> Option<Rate> {
        let (count, per) = match parse_per(v?) {
            Ok(p) => p,
            Err(e) => {
                c.push(format!("{key}.limits.{which}"), e);
                return None;
            }
        };
        let burst = match burst {
            Some(0) => {
                c.push(format!("{key}.limits.{which}"), "burst must be at least 1");
                1
            }
            Some(b) => u32::try_from(b).unwrap_or(u32::MAX),
            None => count,
        };
        Some(Rate { count, per, burst })
    };
    let per_identity = rate("rate", l.rate.as_ref(), l.burst);
    let total = rate("total_rate", l.total_rate.as_ref(), l.total_burst);
    if l.burst.is_some() && l.rate.is_none() {
        c.push(format!("{key}.limits.burst"), "only meaningful with rate");
    }
    let concurrency = match l.concurrency {
        Some(0) => {
            c.push(
                format!("{key}.limits.concurrency"),
                "must be greater than zero",
            );
            None
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => None,
    };
    let cluster = match l.scope.as_deref() {
        None | Some("replica") => false,
        Some("cluster") => true,
        Some(other) => {
            c.push(
                format!("{key}.limits.scope"),
                format!("unknown scope {other:?} (replica or cluster)"),
            );
            false
        }
    };
    let expected_replicas = match l.expected_replicas {
        None => crate::limits::settings::DEFAULT_EXPECTED_REPLICAS,
        Some(n @ 1..=1000) => u32::try_from(n).unwrap_or(1000),
        Some(_) => {
            c.push(
                format!("{key}.limits.expected_replicas"),
                "must be 1 to 1000",
            );
            1
        }
    };
    if l.expected_replicas.is_some() && !cluster {
        c.push(
            format!("{key}.limits.expected_replicas"),
            "only meaningful with scope = \"cluster\"",
        );
    }
    LimitsConfig {
        rate: per_identity,
        total_rate: total,
        concurrency,
        cluster,
        expected_replicas,
    }
}

/// `scope = "cluster"` shares the budget through Redis: without `[state] backend = "redis"`
/// there is nothing to share it through, and silently limiting per replica would multiply the
/// quota by the number of replicas.
pub(super) fn cluster_scope(
    c: &mut Collector<'_>,
    routes: &[Arc<RouteConfig>],
    state: &super::StateConfig,
) {
    if matches!(state.backend, super::StateBackend::Redis { .. }) {
        return;
    }
    for r in routes.iter().filter(|r| r.limits.cluster) {
        c.push(
            format!("routes.{}.limits.scope", r.name),
            "scope = \"cluster\" needs [state] backend = \"redis\" (the budget is shared through it); use scope = \"replica\" or configure a redis state backend",
        );
    }
}

/// `check` warnings: a case-sensitive route with a broader route on the same upstream (same
/// host matcher) that authenticates differently. On an upstream that ignores case (IIS, some
/// mainframe stacks), `/Admin/x` misses the first and is handled by the second.
pub(super) fn case_warnings(c: &mut Collector<'_>, routes: &[std::sync::Arc<RouteConfig>]) {
    for r in routes
        .iter()
        .filter(|r| !r.case_insensitive && r.path_prefix != "/")
    {
        let broader = routes.iter().find(|b| {
            b.name != r.name
                && b.host == r.host
                && b.upstream.url == r.upstream.url
                && b.path_prefix.len() < r.path_prefix.len()
                && crate::routing::prefix_matches(&b.path_prefix, &r.path_prefix)
                && b.accept != r.accept
        });
        if let Some(b) = broader {
            c.warn(format!(
                "route {}: path prefix {:?} is matched case-sensitively, but route {} sends other spellings such as {:?} to the same upstream with other credentials; if that upstream ignores case, set [routes.match] case_insensitive = true",
                r.name,
                r.path_prefix,
                b.name,
                r.path_prefix.to_ascii_uppercase()
            ));
        }
    }
}
