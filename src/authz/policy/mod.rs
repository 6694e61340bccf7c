//! Route policies in [Cedar](https://www.cedarpolicy.com/): who may call a route, with which
//! methods, from where and when. Default deny: a request is allowed only when some `permit`
//! matches and no `forbid` does.
//!
//! # The model
//!
//! Every policy is validated (strict mode) against the schema embedded in the binary
//! (`model.cedarschema`, printed by [`Model::schema_text`]), so an unknown attribute or a type error
//! is a load error with file, line and reason rather than a policy that silently never matches.
//!
//! | Cedar | value |
//! | --- | --- |
//! | `principal` | `Workload::"<SPIFFE ID>"` with `id`, `trust_domain`, `kind` (`mtls`, `jwt-svid`, `ldap`, `api-key`, `webhook`), `credential` (config name), `principal` (legacy user or key id, `""` if none), `groups` (`Set<String>`), `legacy` (`Bool`) |
//! | `action` | `Action::"GET"`, `Action::"POST"`, … one per method; groups `Action::"read"` (GET, HEAD, OPTIONS) and `Action::"write"` (POST, PUT, PATCH, DELETE) |
//! | `resource` | `Route::"<route name>"` with `name` and `path` (normalized, no query) |
//! | `context` | `source_ip` (`ipaddr`), `time` (unix seconds), `hour` (0–23 UTC), `weekday` (1 = Monday … 7 = Sunday, UTC), `phase` (`observe`, `bridge`, `enforce`), `kind`, `legacy` |
//!
//! Groups are a set attribute rather than an entity hierarchy: `principal.groups.contains("ops")`
//! reads like what it means, needs no group entities to be declared anywhere, and costs nothing per
//! request beyond the set itself.
//!
//! # Examples
//!
//! ```cedar
//! // Payments workloads may read and write.
//! @id("payments-workloads")
//! permit (principal, action in [Action::"read", Action::"write"], resource)
//! when { principal.id like "spiffe://corp.example/ns/payments/*" };
//!
//! // RACF users in the PAYOPS group may only read, from the data centre, on weekdays.
//! @id("racf-payops-read")
//! permit (principal, action in Action::"read", resource)
//! when {
//!   principal.kind == "ldap" && principal.groups.contains("PAYOPS") &&
//!   context.source_ip.isInRange(ip("10.20.0.0/16")) && context.weekday <= 5
//! };
//!
//! // Nobody deletes batch files through the gateway.
//! @id("no-batch-delete")
//! forbid (principal, action == Action::"DELETE", resource)
//! when { resource.path like "/cics/payments/batch/*" };
//! ```
//!
//! Policies are named by their `@id("…")` annotation (else `policy0`, `policy1`, … in file order);
//! [`Decision::policies`] lists the names that decided, for the audit line. An `allow = […]` list
//! is compiled to one `permit` per entry (see [`allow`]).

pub mod allow;
mod load;
mod memo;
mod reads;
pub mod suggest;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, Validator,
};
use http::Method;

pub use load::{Origin, PolicyError};

use crate::identity::Credential;
use crate::metrics::Metrics;
use crate::reload::Stamp;

/// The Cedar schema every policy is validated against.
const SCHEMA: &str = include_str!("model.cedarschema");

/// Methods with an action in the schema. Any other method is denied (and reported as an error).
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::TRACE,
    Method::CONNECT,
];

/// The compiled policy model: schema, validator, authorizer, and the action entities (with
/// their `read`/`write` groups). Built once and shared by every route.
#[derive(Debug)]
pub struct Model {
    validator: Validator,
    authorizer: Authorizer,
    /// Per method: the action's uid and its entity, which carries its `read`/`write` group as an
    /// ancestor. Only the request's own action entity is needed for `action in Action::"read"`,
    /// so each request adds that one rather than the whole action hierarchy (which would cost a
    /// transitive-closure pass over every action, per request).
    methods: Vec<(Method, EntityUid, Entity)>,
    /// Per method (same order as `methods`): the action and its groups, i.e. every uid an
    /// action scope (`action == …`, `action in […]`) may name and still match that method.
    scopes: Vec<Vec<EntityUid>>,
    workload: EntityTypeName,
    route: EntityTypeName,
    /// `ip("…")` per source address.
    ips: memo::Memo<IpAddr, RestrictedExpression>,
    /// `Workload` entity per caller (all the credential's fields are compared on a hit).
    workloads: memo::Memo<WorkloadKey, Entity>,
    /// Request entities per (route, method, caller), for policies that do not read the path
    /// (see [`Model::entities_without_path`]).
    entities: memo::Memo<(String, usize, WorkloadKey), Arc<Entities>>,
}

/// What a `Workload` entity is built from.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WorkloadKey {
    name: Arc<str>,
    kind: crate::identity::Kind,
    identity: String,
    principal: Option<String>,
    groups: Vec<String>,
}

/// A [`WorkloadKey`] borrowed from a credential: hashed to look up, without allocating.
type WorkloadRef<'a> = (
    &'a str,
    crate::identity::Kind,
    &'a String,
    &'a Option<String>,
    &'a Vec<String>,
);

impl WorkloadKey {
    /// The key of `c`, owned (stored next to a cached value).
    fn of(c: &Credential) -> Self {
        WorkloadKey {
            name: c.name.clone(),
            kind: c.kind,
            identity: c.identity.clone(),
            principal: c.principal.clone(),
            groups: c.groups.clone(),
        }
    }

    /// The key of `c`, borrowed (to look up).
    fn lookup(c: &Credential) -> WorkloadRef<'_> {
        (&*c.name, c.kind, &c.identity, &c.principal, &c.groups)
    }

    fn matches(&self, c: &Credential) -> bool {
        *self.name == *c.name
            && self.kind == c.kind
            && self.identity == c.identity
            && self.principal == c.principal
            && self.groups == c.groups
    }
}

impl Model {
    /// Compile the embedded schema. Fails only if the binary's own schema is broken (a test
    /// guards against that); the error is Cedar's explanation.
    pub fn new() -> Result<Self, String> {
        let (schema, warnings) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| format!("policy schema: {e}"))?;
        for w in warnings {
            tracing::warn!(warning = %w, "policy schema warning");
        }
        let actions = schema
            .action_entities()
            .map_err(|e| format!("policy schema: {e}"))?;
        let methods: Vec<(Method, EntityUid, Entity)> = METHODS
            .iter()
            .map(|m| {
                let uid = EntityUid::from_str(&format!("Action::\"{}\"", m.as_str()))
                    .map_err(|e| format!("policy schema: {e}"))?;
                let entity = actions
                    .get(&uid)
                    .cloned()
                    .ok_or_else(|| format!("policy schema: no action for {m}"))?;
                Ok((m.clone(), uid, entity))
            })
            .collect::<Result<_, String>>()?;
        let scopes = methods
            .iter()
            .map(|(_, uid, _)| {
                std::iter::once(uid.clone())
                    .chain(actions.ancestors(uid).into_iter().flatten().cloned())
                    .collect()
            })
            .collect();
        let name = |n: &str| EntityTypeName::from_str(n).map_err(|e| format!("policy schema: {e}"));
        Ok(Model {
            validator: Validator::new(schema),
            authorizer: Authorizer::new(),
            methods,
            scopes,
            workload: name("Workload")?,
            route: name("Route")?,
            ips: memo::Memo::new(),
            workloads: memo::Memo::new(),
            entities: memo::Memo::new(),
        })
    }

    /// The schema, as Cedar text (for docs and `portcullis check`).
    pub fn schema_text() -> &'static str {
        SCHEMA
    }

    /// The `Workload` entity for a credential (cached; see [`memo`]).
    fn workload_entity(&self, c: &Credential) -> Result<Entity, String> {
        let key = WorkloadKey::lookup(c);
        self.workloads.get_or(
            &key,
            |k| k.matches(c),
            || {
                let uid = EntityUid::from_type_name_and_id(
                    self.workload.clone(),
                    EntityId::new(&c.identity),
                );
                let trust_domain = c
                    .identity
                    .strip_prefix("spiffe://")
                    .and_then(|r| r.split('/').next())
                    .unwrap_or_default();
                let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
                let attrs = HashMap::from([
                    ("id".to_owned(), string(&c.identity)),
                    ("trust_domain".to_owned(), string(trust_domain)),
                    ("kind".to_owned(), string(c.kind.as_str())),
                    ("credential".to_owned(), string(&c.name)),
                    (
                        "principal".to_owned(),
                        string(c.principal.as_deref().unwrap_or_default()),
                    ),
                    (
                        "groups".to_owned(),
                        RestrictedExpression::new_set(c.groups.iter().map(|g| string(g))),
                    ),
                    (
                        "legacy".to_owned(),
                        RestrictedExpression::new_bool(c.kind.is_legacy()),
                    ),
                ]);
                let entity = Entity::new(uid, attrs, Default::default())
                    .map_err(|e| format!("principal: {e}"))?;
                let key = WorkloadKey::of(c);
                Ok((key, entity))
            },
        )
    }

    /// `ip("…")` for an address (cached; see [`memo`]).
    fn ip(&self, ip: IpAddr) -> RestrictedExpression {
        let made: Result<_, std::convert::Infallible> = self.ips.get_or(
            &ip,
            |k| *k == ip,
            || Ok((ip, RestrictedExpression::new_ip(ip.to_string()))),
        );
        match made {
            Ok(e) => e,
            Err(never) => match never {},
        }
    }

    /// The method's index in `methods`, its action uid and its entity.
    fn action(&self, m: &Method) -> Option<(usize, &EntityUid, &Entity)> {
        self.methods
            .iter()
            .enumerate()
            .find(|(_, (k, _, _))| k == m)
            .map(|(i, (_, uid, e))| (i, uid, e))
    }

    /// `set` split per method: each part keeps only the policies whose action scope can match
    /// that method. Cedar evaluates a policy's scope before its conditions and stops at the first
    /// false one, so a policy left out here could only have evaluated to "not satisfied", with no
    /// error: the decision, its reasons and its errors are the same. What is saved is real, though:
    /// Cedar rebuilds each policy's whole condition expression before evaluating it.
    fn slice(&self, set: PolicySet) -> Sliced {
        let by_method = self
            .scopes
            .iter()
            .map(|scope| {
                let applies = |p: &cedar_policy::Policy| match p.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => scope.first() == Some(&a),
                    ActionConstraint::In(list) => list.iter().any(|a| scope.contains(a)),
                };
                // Only static policies are loaded (templates are refused), so re-adding them
                // cannot fail; should it ever, the unsliced set is used for that method.
                let part = PolicySet::from_policies(set.policies().filter(|p| applies(p)).cloned())
                    .unwrap_or_else(|_| set.clone());
                // From the parsed policies, never their text (see [`reads`]).
                let reads = reads::Reads::of_all(part.policies());
                Slice {
                    set: part,
                    reads_path: reads.path,
                    cacheable: !reads.path && !reads.time,
                }
            })
            .collect();
        Sliced {
            by_method,
            decisions: memo::Memo::new(),
            last: crate::conn::PerWorker::new(),
        }
    }

    /// The entities of a request whose policies do not read `resource.path`: the same for every
    /// request of this caller, with this method, on this route, so they are built once (a third
    /// of an evaluation's cost was building them, mostly Cedar's transitive-closure pass).
    fn entities_without_path(
        &self,
        route: &RoutePolicy,
        c: &Credential,
        method: usize,
        workload: Entity,
        action: &Entity,
    ) -> Result<Arc<Entities>, String> {
        let route_name: &str = route.route.id().unescaped();
        let key = (route_name, method, WorkloadKey::lookup(c));
        self.entities.get_or(
            &key,
            |(r, m, w)| r == route_name && *m == method && w.matches(c),
            || {
                let entity = route.route_entity("")?;
                let entities = Entities::from_entities([workload, entity, action.clone()], None)
                    .map_err(|e| format!("entities: {e}"))?;
                let w = WorkloadKey::of(c);
                Ok(((route_name.to_owned(), method, w), Arc::new(entities)))
            },
        )
    }
}

/// A route's policy set, pre-split per method (see [`Model::slice`]), with the decisions it
/// has made. A reload builds a new `Sliced`, so cached decisions never outlive their policies.
#[derive(Debug)]
struct Sliced {
    /// Indexed like [`Model::methods`].
    by_method: Vec<Slice>,
    /// Decisions of cacheable slices, by (method, caller, context except `time`).
    decisions: memo::Memo<Arc<DecisionKey>, Arc<Decision>>,
    /// Per worker, the last decision `decisions` gave it: a worker serving the same caller again
    /// compares the key in full (as a hit in `decisions` does) without hashing it first. Part of
    /// this policy version: a reload builds a new `Sliced`, so it never outlives its policies.
    last: crate::conn::PerWorker<(Arc<DecisionKey>, Arc<Decision>)>,
}

/// The policies that can apply to one method.
#[derive(Debug)]
struct Slice {
    set: PolicySet,
    /// Some policy may read `resource.path`.
    reads_path: bool,
    /// No policy reads `resource.path` or `context.time`. Every other input of the decision —
    /// the caller's entity, the action, the route's name, `source_ip`, `hour`, `weekday`, `phase`
    /// (`kind` and `legacy` follow from the caller) — is in [`DecisionKey`], so the decision is a
    /// function of the key: Cedar is deterministic, with no I/O and no clock of its own.
    cacheable: bool,
}

/// A Cedar request ready to evaluate: method index, request, entities.
type Built = (usize, Request, Arc<Entities>);

/// What a cached decision was made for.
#[derive(Debug, PartialEq, Eq)]
struct DecisionKey {
    method: usize,
    caller: WorkloadKey,
    source_ip: IpAddr,
    hour: u64,
    weekday: u64,
    phase: String,
}

/// The clock as the policy context sees it: (unix seconds, hour 0–23 UTC, ISO weekday UTC).
fn clock_fields(now: SystemTime) -> (u64, u64, u64) {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = secs / 86_400;
    // 1970-01-01 was a Thursday (ISO day 4).
    (secs, secs % 86_400 / 3_600, (days + 3) % 7 + 1)
}

impl Sliced {
    /// The decision for this request: remembered when its slice is cacheable, else (or when
    /// not remembered yet) `evaluate`d. An `Err` from `evaluate` (the request could not be put
    /// to the policy) is returned as the decision and never remembered.
    fn decide(
        &self,
        method: Option<usize>,
        a: &Access<'_>,
        evaluate: impl FnOnce() -> Result<Decision, Decision>,
    ) -> Arc<Decision> {
        let Some(m) = method.filter(|m| self.by_method.get(*m).is_some_and(|s| s.cacheable)) else {
            return Arc::new(evaluate().unwrap_or_else(|d| d));
        };
        let (key, matches) = Self::key(m, a);
        if let Some(d) = self.last.read(|(k, d)| matches(k).then(|| d.clone())) {
            return d;
        }
        let found = self.decisions.get_or_stored(
            &key,
            |k| matches(k),
            || {
                let (_, hour, weekday) = clock_fields(a.now);
                let stored = DecisionKey {
                    method: m,
                    caller: WorkloadKey::of(a.credential),
                    source_ip: a.source_ip.to_canonical(),
                    hour,
                    weekday,
                    phase: a.phase.to_owned(),
                };
                evaluate().map(|d| (Arc::new(stored), Arc::new(d)))
            },
        );
        match found {
            Ok((k, d)) => {
                self.last.keep((k, d.clone()));
                d
            }
            Err(d) => Arc::new(d),
        }
    }

    /// The lookup key (borrowed: no allocation) and the check of a stored key against it.
    #[expect(
        clippy::type_complexity,
        reason = "a borrowed tuple key and its matcher, spelled out so the lookup does not allocate"
    )]
    fn key<'a>(
        method: usize,
        a: &'a Access<'a>,
    ) -> (
        (
            usize,
            (
                &'a str,
                crate::identity::Kind,
                &'a String,
                &'a Option<String>,
                &'a Vec<String>,
            ),
            IpAddr,
            u64,
            u64,
            &'a str,
        ),
        impl Fn(&DecisionKey) -> bool + 'a,
    ) {
        let c = a.credential;
        let (_, hour, weekday) = clock_fields(a.now);
        let ip = a.source_ip.to_canonical();
        let key = (method, WorkloadKey::lookup(c), ip, hour, weekday, a.phase);
        let matches = move |k: &DecisionKey| {
            k.method == method
                && k.caller.matches(c)
                && k.source_ip == ip
                && k.hour == hour
                && k.weekday == weekday
                && k.phase == a.phase
        };
        (key, matches)
    }
}

/// How a route says who may call it (`policy = "…"` or `allow = […]` in config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rules {
    /// A Cedar policy file.
    File(PathBuf),
    /// SPIFFE ID patterns; `["*"]` admits any authenticated caller.
    Allow(Vec<String>),
}

impl Rules {
    /// From a route's config. `Ok(None)`: the route accepts no credentials and has no policy (an
    /// explicit pass-through). A route that accepts credentials must say who may call it.
    pub fn from_route(
        route: &str,
        accepts_credentials: bool,
        policy: Option<PathBuf>,
        allow: Option<Vec<String>>,
    ) -> Result<Option<Rules>, PolicyError> {
        let route = route.to_owned();
        let rules = match (policy, allow) {
            (Some(_), Some(_)) => return Err(PolicyError::Ambiguous { route }),
            (Some(p), None) => Some(Rules::File(p)),
            (None, Some(a)) => Some(Rules::Allow(a)),
            (None, None) => None,
        };
        match (accepts_credentials, rules) {
            (true, None) => Err(PolicyError::NoPolicy { route }),
            (false, Some(_)) => Err(PolicyError::Unreachable { route }),
            (_, rules) => Ok(rules),
        }
    }
}

/// Everything about one route's authorization, resolved from config.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The route's name (the `Route::"…"` entity id).
    pub route: String,
    pub rules: Rules,
    /// `shadow_policy`: evaluated and reported, never enforced.
    pub shadow: Option<PathBuf>,
}

/// For `portcullis check`: every problem with this route's policies (empty when they load).
pub fn check(model: &Model, spec: &RouteSpec) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    if let Err(e) = load_rules(model, &spec.route, &spec.rules) {
        errors.extend(e);
    }
    if let Some(p) = &spec.shadow {
        if let Err(e) = load::load_file(model, p) {
            errors.extend(e);
        }
    }
    errors
}

fn load_rules(model: &Model, route: &str, rules: &Rules) -> Result<PolicySet, Vec<PolicyError>> {
    match rules {
        Rules::File(p) => load::load_file(model, p),
        Rules::Allow(a) => load::compile_allow(model, route, a),
    }
}

/// One request, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub credential: &'a Credential,
    pub method: &'a Method,
    /// The normalized request path, without the query.
    pub path: &'a str,
    pub source_ip: IpAddr,
    pub now: SystemTime,
    /// The route's migration phase today: `observe`, `bridge` or `enforce`.
    pub phase: &'a str,
}

/// The outcome of one policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The policies that decided: the matching `permit`s when allowed, the matching `forbid`s
    /// when denied by one; empty when denied by default.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they are skipped, so they can only make the decision
    /// stricter) and requests that could not be put to the policy at all.
    pub errors: Vec<String>,
}

impl Decision {
    fn deny(error: String) -> Self {
        Decision {
            allowed: false,
            policies: Vec::new(),
            errors: vec![error],
        }
    }
}

/// The enforced decision, and the shadow policy's when the route has one. Shared with the
/// decision cache: a hit hands out the remembered decision, not a copy of its lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Arc<Decision>,
    pub shadow: Option<Arc<Decision>>,
}

impl Verdict {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.decision.allowed
    }

    /// Allowed, but the shadow policy would deny it: audited as `shadow-deny`.
    pub fn shadow_denied(&self) -> bool {
        self.decision.allowed && self.shadow.as_ref().is_some_and(|s| !s.allowed)
    }
}

/// A policy set and the file it follows (none for an `allow` list).
#[derive(Debug)]
struct Watched {
    file: Option<PathBuf>,
    current: ArcSwap<Sliced>,
    seen: Mutex<Stamp>,
}

impl Watched {
    fn fixed(model: &Model, set: PolicySet) -> Self {
        Watched {
            file: None,
            current: ArcSwap::from_pointee(model.slice(set)),
            seen: Mutex::new(None),
        }
    }

    fn file(model: &Model, path: &Path) -> Result<Self, Vec<PolicyError>> {
        let seen = crate::reload::stamp(path);
        let set = load::load_file(model, path)?;
        Ok(Watched {
            file: Some(path.to_path_buf()),
            current: ArcSwap::from_pointee(model.slice(set)),
            seen: Mutex::new(seen),
        })
    }
}

/// A route's compiled policies, following their files.
#[derive(Debug)]
pub struct RoutePolicy {
    model: Arc<Model>,
    route: EntityUid,
    route_name: RestrictedExpression,
    enforced: Watched,
    shadow: Option<Watched>,
    metrics: Arc<Metrics>,
}

impl RoutePolicy {
    /// Load and validate the route's policies. Every problem is returned.
    pub fn load(
        model: Arc<Model>,
        spec: &RouteSpec,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Vec<PolicyError>> {
        let enforced = match &spec.rules {
            Rules::File(p) => Watched::file(&model, p),
            Rules::Allow(a) => {
                load::compile_allow(&model, &spec.route, a).map(|set| Watched::fixed(&model, set))
            }
        };
        let shadow = spec.shadow.as_ref().map(|p| Watched::file(&model, p));
        let (enforced, shadow) = match (enforced, shadow.transpose()) {
            (Ok(e), Ok(s)) => (e, s),
            (e, s) => {
                let mut errors = e.err().unwrap_or_default();
                errors.extend(s.err().unwrap_or_default());
                return Err(errors);
            }
        };
        let route =
            EntityUid::from_type_name_and_id(model.route.clone(), EntityId::new(&spec.route));
        Ok(RoutePolicy {
            route,
            route_name: RestrictedExpression::new_string(spec.route.clone()),
            model,
            enforced,
            shadow,
            metrics,
        })
    }

    /// Decide one request. Never fails: anything that keeps a request from being evaluated is a
    /// deny with the reason in [`Decision::errors`].
    pub fn evaluate(&self, access: &Access<'_>) -> Verdict {
        self.evaluate_with(access, true)
    }

    /// [`RoutePolicy::evaluate`] without the decision cache: every policy is evaluated. For
    /// benchmarks and tests that compare the two.
    pub fn evaluate_uncached(&self, access: &Access<'_>) -> Verdict {
        self.evaluate_with(access, false)
    }

    fn evaluate_with(&self, access: &Access<'_>, use_cache: bool) -> Verdict {
        let enforced = self.enforced.current.load();
        let shadow = self.shadow.as_ref().map(|w| w.current.load());
        let method = self.model.action(access.method).map(|(m, _, _)| m);
        let reads_path =
            |s: &Sliced, m: usize| s.by_method.get(m).is_none_or(|slice| slice.reads_path);
        // Built at most once, and only when some decision is not cached.
        let mut built: Option<Result<Built, String>> = None;
        let mut evaluate = |sliced: &Sliced| -> Result<Decision, Decision> {
            let b = built.get_or_insert_with(|| match method {
                None => self.request(access, true),
                Some(m) => {
                    let path = reads_path(&enforced, m)
                        || shadow.as_ref().is_some_and(|s| reads_path(s, m));
                    self.request(access, path)
                }
            });
            // Not cached: a request that could not be built says nothing about the next.
            let (m, request, entities) = b.as_ref().map_err(|e| Decision::deny(e.clone()))?;
            let Some(slice) = sliced.by_method.get(*m) else {
                return Err(Decision::deny("method has no policy slice".to_owned()));
            };
            let response = self
                .model
                .authorizer
                .is_authorized(request, &slice.set, entities);
            let d = response.diagnostics();
            Ok(Decision {
                allowed: response.decision() == cedar_policy::Decision::Allow,
                policies: d.reason().map(ToString::to_string).collect(),
                errors: d.errors().map(ToString::to_string).collect(),
            })
        };
        let mut decide = |sliced: &Sliced| match use_cache {
            true => sliced.decide(method, access, || evaluate(sliced)),
            false => Arc::new(evaluate(sliced).unwrap_or_else(|d| d)),
        };
        let decision = decide(&enforced);
        let shadow = shadow.as_ref().map(|s| decide(s));
        Verdict { decision, shadow }
    }

    /// Build the Cedar request and entities directly (no JSON round trip).
    /// With `with_path` false the route entity's `path` is left empty and the entities come from
    /// [`Model::entities_without_path`]: only for policies that never read it.
    fn request(
        &self,
        a: &Access<'_>,
        with_path: bool,
    ) -> Result<(usize, Request, Arc<Entities>), String> {
        let c = a.credential;
        let (method, action, action_entity) = self
            .model
            .action(a.method)
            .ok_or_else(|| format!("method {} has no action in the policy model", a.method))?;
        let workload = self.model.workload_entity(c)?;
        let principal = workload.uid();
        let legacy = c.kind.is_legacy();
        let kind = c.kind.as_str();
        let entities = if with_path {
            let route = self.route_entity(a.path)?;
            Arc::new(
                Entities::from_entities([workload, route, action_entity.clone()], None)
                    .map_err(|e| format!("entities: {e}"))?,
            )
        } else {
            self.model
                .entities_without_path(self, c, method, workload, action_entity)?
        };

        let (secs, hour, weekday) = clock_fields(a.now);
        let num = |n: u64| RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX));
        let context = Context::from_pairs([
            (
                "source_ip".to_owned(),
                // A dual-stack listener reports IPv4 callers as ::ffff:a.b.c.d; policies are
                // written with IPv4 ranges.
                self.model.ip(a.source_ip.to_canonical()),
            ),
            ("time".to_owned(), num(secs)),
            ("hour".to_owned(), num(hour)),
            ("weekday".to_owned(), num(weekday)),
            (
                "phase".to_owned(),
                RestrictedExpression::new_string(a.phase.to_owned()),
            ),
            (
                "kind".to_owned(),
                RestrictedExpression::new_string(kind.to_owned()),
            ),
            ("legacy".to_owned(), RestrictedExpression::new_bool(legacy)),
        ])
        .map_err(|e| format!("context: {e}"))?;

        // The schema is not consulted here: the values above are built to fit it (a test checks
        // that with the schema), and checking per request would double the cost.
        let request = Request::new(principal, action.clone(), self.route.clone(), context, None)
            .map_err(|e| format!("request: {e}"))?;
        Ok((method, request, entities))
    }

    /// The `Route` entity for a request to `path`.
    fn route_entity(&self, path: &str) -> Result<Entity, String> {
        Entity::new(
            self.route.clone(),
            HashMap::from([
                ("name".to_owned(), self.route_name.clone()),
                (
                    "path".to_owned(),
                    RestrictedExpression::new_string(path.to_owned()),
                ),
            ]),
            Default::default(),
        )
        .map_err(|e| format!("resource: {e}"))
    }

    /// Reload any policy file that changed. `Ok(true)`: a new policy set is in use. A file that
    /// fails to load keeps the previous set in use; the failure is logged, counted and returned,
    /// and the file is retried when it changes again (not on every tick, which would repeat the
    /// same error forever).
    pub fn poll(&self) -> Result<bool, Vec<PolicyError>> {
        let mut changed = false;
        let mut errors = Vec::new();
        for w in std::iter::once(&self.enforced).chain(self.shadow.as_ref()) {
            let Some(path) = &w.file else { continue };
            let now = crate::reload::stamp(path);
            {
                let Ok(mut seen) = w.seen.lock() else {
                    continue;
                };
                if *seen == now {
                    continue;
                }
                *seen = now;
            }
            match load::load_file(&self.model, path) {
                Ok(set) => {
                    w.current.store(Arc::new(self.model.slice(set)));
                    self.metrics.config_reloads_total.with(&["ok"]).inc();
                    tracing::info!(policy_file = %path.display(), "policy reloaded");
                    changed = true;
                }
                Err(e) => {
                    self.metrics.config_reloads_total.with(&["error"]).inc();
                    for err in &e {
                        tracing::error!(error = %err, "policy reload failed; keeping the previous policy");
                    }
                    errors.extend(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(changed)
        } else {
            Err(errors)
        }
    }

    /// Poll the policy files every `every` until this is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        crate::reload::spawn_watcher(self, every)
    }
}

impl crate::reload::Reload for RoutePolicy {
    fn poll_files(&self) {
        // Errors are logged and counted inside.
        let _ = self.poll();
    }
}
