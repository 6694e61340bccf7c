//! The one validation pass: raw tree → typed [`Config`], collecting every problem.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use super::creds::{self, parse_per, CredentialConfig};
use super::{
    defaults, raw, Admin, Audit, AuditSink, Config, HostMatch, InjectConfig, Invalid, IssuerConfig,
    LimitsConfig, Listen, Problem, Rate, RouteConfig, TlsFiles, TokenHeader, UpstreamConfig,
};
use crate::authn::Kind;
use crate::routing::canonical::{self, PathParameters};
use crate::routing::path;
use crate::secret::SecretSource;
use crate::units::{parse_duration, parse_size};

const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "listen",
    "admin",
    "audit",
    "issuer",
    "adapters_dir",
    "trust",
    "credentials",
    "token_exchange",
    "state",
    "migration",
    "routes",
];

pub(super) use crate::diag::Collector;

/// Config-only helpers on the shared collector.
impl Collector<'_> {
    fn duration(
        &mut self,
        key: &str,
        v: Option<&String>,
        default: std::time::Duration,
    ) -> std::time::Duration {
        match v.map(|s| parse_duration(s)) {
            None => default,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                self.push(key, "must be greater than zero");
                default
            }
            Some(Err(e)) => {
                self.push(key, e);
                default
            }
        }
    }

    fn size(&mut self, key: &str, v: Option<&String>, default: u64) -> u64 {
        match v.map(|s| parse_size(s)) {
            None => default,
            Some(Ok(n)) if n > 0 => n,
            Some(Ok(_)) => {
                self.push(key, "must be greater than zero");
                default
            }
            Some(Err(e)) => {
                self.push(key, e);
                default
            }
        }
    }

    fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(
                    key,
                    format!("invalid address {s:?} (expected ip:port, e.g. \"0.0.0.0:8443\")"),
                );
                None
            }
        }
    }

    pub(super) fn file_path(&mut self, key: &str, base: &Path, s: &str) -> PathBuf {
        let p = resolve(base, s);
        if !p.is_file() {
            self.push(
                key,
                format!("file {} does not exist or is not readable", p.display()),
            );
        }
        p
    }
}

/// Paths in the config are relative to the config file's directory.
pub fn resolve(base: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn validate(
    tree: &Value,
    file: &str,
    base: &Path,
    source: &Path,
) -> Result<Config, Invalid> {
    let mut c = Collector::new(file);
    let Some(obj) = tree.as_object() else {
        c.push("-", "the config must be a TOML table");
        return Err(Invalid(c.problems));
    };
    top_level(&mut c, obj);
    let mut warnings = Vec::new();

    let listen = match obj.get("listen") {
        None => {
            c.push("listen", "missing section [listen] (at least `addr`)");
            None
        }
        Some(v) => c
            .section::<raw::Listen>("listen", v)
            .and_then(|l| listen(&mut c, base, l, &mut warnings)),
    };
    let admin_raw = match obj.get("admin") {
        None => Some(raw::Admin::default()),
        Some(v) => c.section::<raw::Admin>("admin", v),
    };
    let admin = admin_raw.and_then(|a| admin(&mut c, base, a, &mut warnings));
    let audit_raw = match obj.get("audit") {
        None => Some(raw::Audit::default()),
        Some(v) => c.section::<raw::Audit>("audit", v),
    };
    let audit = audit_raw.map(|a| audit(&mut c, base, a));

    let issuer = match obj.get("issuer") {
        None => None,
        Some(v) => c
            .section::<raw::Issuer>("issuer", v)
            .and_then(|i| issuer(&mut c, base, i, &mut warnings)),
    };

    let adapters = adapters(&mut c, base, obj);
    let trust = obj
        .get("trust")
        .map(|v| creds::trust(&mut c, base, v))
        .unwrap_or_default();
    let credentials = obj
        .get("credentials")
        .map(|v| creds::credentials(&mut c, base, v, &trust, &adapters))
        .unwrap_or_default();
    let token_exchange = obj
        .get("token_exchange")
        .and_then(|v| creds::token_exchange(&mut c, v, &credentials));
    cross_checks(
        &mut c,
        (&credentials, &trust),
        token_exchange.as_ref(),
        listen.as_ref(),
        admin.as_ref(),
        issuer.is_some(),
    );
    let model = match crate::authz::policy::Model::new() {
        Ok(m) => m,
        Err(e) => {
            c.push(
                "-",
                format!("internal: the Cedar schema does not load: {e}"),
            );
            return Err(Invalid(c.problems));
        }
    };
    let ctx = RouteCtx {
        model: &model,
        credentials: &credentials,
        issuer: issuer.is_some(),
        tls: listen.as_ref().is_some_and(|l| l.tls.is_some()),
    };

    let routes = routes(&mut c, base, obj.get("routes"), &ctx, &mut warnings);

    warnings.extend(canonical::case_warnings(&routes));
    let state = state(&mut c, base, obj.get("state"), &mut warnings);
    let plans = plans(&mut c, base, obj.get("migration"), &credentials, &routes);
    super::exposure::check(&mut c, &routes, &credentials, &state, &mut warnings);

    match (listen, admin, audit) {
        (Some(listen), Some(admin), Some(audit)) if c.problems.is_empty() => {
            if listen.addr == admin.addr && listen.addr.port() != 0 {
                return Err(Invalid(vec![Problem {
                    file: file.to_string(),
                    key: "admin.addr".into(),
                    message: "must differ from listen.addr".into(),
                }]));
            }
            Ok(Config {
                source: source.to_path_buf(),
                listen,
                admin,
                audit,
                issuer,
                trust,
                credentials,
                token_exchange,
                adapters: Arc::new(adapters),
                routes,
                state,
                plans: Arc::new(plans),
                warnings,
            })
        }
        _ => Err(Invalid(c.problems)),
    }
}

/// `[admin]`: the address, the operators allowed over mTLS and the listener's own certificate.
/// Unknown top-level keys and `version`.
fn top_level(c: &mut Collector<'_>, obj: &serde_json::Map<String, Value>) {
    for k in obj.keys() {
        if !TOP_LEVEL_KEYS.contains(&k.as_str()) {
            c.push(
                k.clone(),
                format!(
                    "unknown key (expected one of: {})",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
        }
    }
    match obj.get("version") {
        Some(v) if v.as_i64() == Some(1) || v.as_str() == Some("1") => {}
        Some(_) => c.push(
            "version",
            "unsupported config version (this build reads version = 1)",
        ),
        None => c.push("version", "missing (add `version = 1` at the top)"),
    }
}

/// Checks across sections: `trust_issuer` and `[token_exchange]` need `[issuer]`, secrets at the
/// token endpoint need TLS, admin over mTLS needs a certificate and an x509 bundle.
fn cross_checks(
    c: &mut Collector<'_>,
    (credentials, trust): (&[Arc<CredentialConfig>], &[creds::TrustConfig]),
    token_exchange: Option<&creds::TokenExchangeConfig>,
    listen: Option<&Listen>,
    admin: Option<&Admin>,
    has_issuer: bool,
) {
    for cr in credentials {
        if let creds::CredentialSpec::JwtSvid {
            trust_issuer: true, ..
        } = cr.spec
        {
            if !has_issuer {
                c.push(
                    format!("credentials.{}.trust_issuer", cr.name),
                    "needs an [issuer] section (the keys it would trust)",
                );
            }
        }
    }
    if let Some(t) = token_exchange {
        let plain = listen.is_some_and(|l| l.tls.is_none());
        let secret_kinds = t.accept.iter().any(|n| {
            credentials
                .iter()
                .any(|cr| cr.name == *n && matches!(cr.kind(), Kind::Ldap | Kind::ApiKey))
        });
        if plain && secret_kinds {
            c.push(
                "token_exchange.accept",
                "passwords and API keys would cross the network in clear: the token endpoint needs [listen.tls]",
            );
        }
    }
    if let Some(a) = admin.filter(|a| !a.allow.is_empty()) {
        if a.tls.is_none() && listen.is_some_and(|l| l.tls.is_none()) {
            c.push(
                "admin.allow",
                "admin over mTLS needs a certificate: set [admin.tls] (or [listen.tls], which it uses otherwise)",
            );
        }
        if !trust.iter().any(|t| t.x509_bundle.is_some()) {
            c.push(
                "admin.allow",
                "admin over mTLS needs a [trust.\"…\"] x509_bundle to verify client certificates",
            );
        }
    }
    if token_exchange.is_some() && !has_issuer {
        c.push(
            "token_exchange",
            "needs [issuer]: it hands out minted tokens",
        );
    }
}

fn admin(
    c: &mut Collector<'_>,
    base: &Path,
    a: raw::Admin,
    warnings: &mut Vec<String>,
) -> Option<Admin> {
    let s = a.addr.as_deref().unwrap_or(defaults::ADMIN_ADDR);
    let addr = c.addr("admin.addr", s)?;
    let allow = a.allow.unwrap_or_default();
    for (i, p) in allow.iter().enumerate() {
        if let Err(e) = crate::authz::policy::allow::check_pattern(p) {
            c.push(format!("admin.allow[{i}]"), e);
        }
    }
    if !addr.ip().is_loopback() {
        if allow.is_empty() {
            c.push(
                "admin.allow",
                format!("required when admin.addr ({addr}) is not loopback: the admin API (revocations, inventory) would be open to the network; list the operators' SPIFFE IDs, e.g. [\"spiffe://corp.example/ops/*\"]"),
            );
        } else {
            warnings.push(format!(
                "admin.addr {addr} is not loopback: /healthz, /readyz and /metrics are served without a client certificate"
            ));
        }
    }
    let tls = a.tls.map(|t| TlsFiles {
        cert: c.file_path("admin.tls.cert", base, &t.cert),
        key: c.file_path("admin.tls.key", base, &t.key),
    });
    if tls.is_some() && allow.is_empty() {
        c.push(
            "admin.tls",
            "is the certificate of admin over mTLS: set admin.allow (the operators' SPIFFE IDs) too",
        );
    }
    Some(Admin { addr, allow, tls })
}

/// `[audit]`: the sink and the queue length.
fn audit(c: &mut Collector<'_>, base: &Path, a: raw::Audit) -> Audit {
    let sink = match a.sink.as_deref() {
        None | Some("stdout") => AuditSink::Stdout,
        Some("") => {
            c.push("audit.sink", "empty (use \"stdout\" or a file path)");
            AuditSink::Stdout
        }
        Some(p) => AuditSink::File(resolve(base, p)),
    };
    let queue = match a.queue {
        None => defaults::AUDIT_QUEUE,
        Some(0) => {
            c.push("audit.queue", "must be greater than zero");
            defaults::AUDIT_QUEUE
        }
        Some(n) => usize::try_from(n).unwrap_or(defaults::AUDIT_QUEUE),
    };
    Audit { sink, queue }
}

/// `adapters_dir`, then the shipped adapters plus that directory's (problems keyed `-` when an
/// adapter's problem names no key).
fn adapters(
    c: &mut Collector<'_>,
    base: &Path,
    obj: &serde_json::Map<String, Value>,
) -> crate::adapters::Adapters {
    let adapters_dir = match obj.get("adapters_dir") {
        None => None,
        Some(Value::String(d)) => Some(resolve(base, d)),
        Some(_) => {
            c.push("adapters_dir", "must be a directory path");
            None
        }
    };
    match crate::adapters::Adapters::load(adapters_dir.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            for p in e.problems {
                c.problems.push(Problem {
                    file: p.file,
                    key: if p.key.is_empty() { "-".into() } else { p.key },
                    message: p.message,
                });
            }
            crate::adapters::Adapters::default()
        }
    }
}

/// `[[routes]]`: each route, with unique names and reachable matchers.
fn routes(
    c: &mut Collector<'_>,
    base: &Path,
    routes_value: Option<&Value>,
    ctx: &RouteCtx<'_>,
    warnings: &mut Vec<String>,
) -> Vec<Arc<RouteConfig>> {
    let mut routes = Vec::new();
    match routes_value {
        None => warnings.push("no [[routes]]: every request will get 404 no-route".into()),
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
                if let Some(rc) = route(c, base, &key, r, ctx, warnings) {
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

fn listen(
    c: &mut Collector<'_>,
    base: &Path,
    l: raw::Listen,
    warnings: &mut Vec<String>,
) -> Option<Listen> {
    let addr = c.addr("listen.addr", &l.addr);
    let bodies = body_policy(c, &l);
    let tls = match l.tls {
        Some(t) => Some(TlsFiles {
            cert: c.file_path("listen.tls.cert", base, &t.cert),
            key: c.file_path("listen.tls.key", base, &t.key),
        }),
        None => {
            warnings.push(
                "no [listen.tls]: the data listener speaks plain HTTP (development only)".into(),
            );
            None
        }
    };
    let header_timeout = c.duration(
        "listen.header_timeout",
        l.header_timeout.as_ref(),
        defaults::HEADER_TIMEOUT,
    );
    let handshake_timeout = c.duration(
        "listen.handshake_timeout",
        l.handshake_timeout.as_ref(),
        defaults::HANDSHAKE_TIMEOUT,
    );
    let idle_timeout = c.duration(
        "listen.idle_timeout",
        l.idle_timeout.as_ref(),
        defaults::IDLE_TIMEOUT,
    );
    let drain_timeout = c.duration(
        "listen.drain_timeout",
        l.drain_timeout.as_ref(),
        defaults::DRAIN_TIMEOUT,
    );
    let max_header_bytes = c.size(
        "listen.max_header_bytes",
        l.max_header_bytes.as_ref(),
        defaults::MAX_HEADER_BYTES as u64,
    );
    if max_header_bytes > 1024 * 1024 {
        c.push("listen.max_header_bytes", "must be at most 1MiB");
    }
    let max_connections = positive(
        c,
        "listen.max_connections",
        l.max_connections,
        defaults::MAX_CONNECTIONS as u64,
    );
    let max_headers = positive(
        c,
        "listen.max_headers",
        l.max_headers,
        defaults::MAX_HEADERS as u64,
    );
    if max_headers > 1000 {
        c.push("listen.max_headers", "must be at most 1000");
    }
    let streams = positive(
        c,
        "listen.max_concurrent_streams",
        l.max_concurrent_streams,
        defaults::MAX_CONCURRENT_STREAMS.into(),
    );
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers = positive(c, "listen.workers", l.workers, cpus as u64);
    if workers > 1024 {
        c.push("listen.workers", "must be at most 1024");
    }
    let max_auth_failures = match l.max_auth_failures.as_deref().map(str::trim) {
        None => Some(defaults::MAX_AUTH_FAILURES),
        Some("off") => None,
        Some(v) => match super::creds::parse_per(v) {
            Ok(p) => Some(p),
            Err(e) => {
                c.push("listen.max_auth_failures", format!("{e}, or \"off\""));
                Some(defaults::MAX_AUTH_FAILURES)
            }
        },
    };
    Some(Listen {
        addr: addr?,
        bodies,
        max_auth_failures,
        tls,
        header_timeout,
        handshake_timeout,
        idle_timeout,
        drain_timeout,
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_headers: usize::try_from(max_headers).unwrap_or(usize::MAX),
        max_concurrent_streams: u32::try_from(streams).unwrap_or(u32::MAX),
        workers: usize::try_from(workers.min(1024)).unwrap_or(1),
    })
}

/// `[listen] body_timeout`, `body_min_rate`, `max_buffered_bodies`, `max_buffered_per_source`.
fn body_policy(c: &mut Collector<'_>, l: &raw::Listen) -> crate::limits::bodies::BodyPolicy {
    let min_rate = match l.body_min_rate.as_deref().map(str::trim) {
        Some("off") => 0,
        _ => c.size(
            "listen.body_min_rate",
            l.body_min_rate.as_ref(),
            defaults::BODY_MIN_RATE,
        ),
    };
    let total = c.size(
        "listen.max_buffered_bodies",
        l.max_buffered_bodies.as_ref(),
        defaults::MAX_BUFFERED_BODIES,
    );
    let per_source = c.size(
        "listen.max_buffered_per_source",
        l.max_buffered_per_source.as_ref(),
        defaults::MAX_BUFFERED_PER_SOURCE,
    );
    crate::limits::bodies::BodyPolicy {
        timeout: c.duration(
            "listen.body_timeout",
            l.body_timeout.as_ref(),
            defaults::BODY_TIMEOUT,
        ),
        min_rate,
        max_total: usize::try_from(total).unwrap_or(usize::MAX),
        max_per_source: usize::try_from(per_source).unwrap_or(usize::MAX),
    }
}

fn positive(c: &mut Collector<'_>, key: &str, v: Option<u64>, default: u64) -> u64 {
    match v {
        None => default,
        Some(0) => {
            c.push(key, "must be greater than zero");
            default
        }
        Some(n) => n,
    }
}

/// What a route is checked against.
struct RouteCtx<'a> {
    model: &'a crate::authz::policy::Model,
    credentials: &'a [Arc<CredentialConfig>],
    issuer: bool,
    tls: bool,
}

fn route(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    r: raw::Route,
    ctx: &RouteCtx<'_>,
    warnings: &mut Vec<String>,
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
    let accept = route_accept(c, key, &r, ctx, host.as_ref(), warnings);
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
fn route_match(
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
fn route_accept(
    c: &mut Collector<'_>,
    key: &str,
    r: &raw::Route,
    ctx: &RouteCtx<'_>,
    host: Option<&HostMatch>,
    warnings: &mut Vec<String>,
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
                creds::url_signed_webhook(c, warnings, (key, &r.name, i), cr, host);
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
            warnings.push(format!(
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
struct RulesIn {
    name: String,
    policy: Option<String>,
    shadow_policy: Option<String>,
    allow: Option<Vec<String>>,
}

fn route_policy(
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

fn validation(
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

fn limits(c: &mut Collector<'_>, key: &str, l: &raw::Limits) -> LimitsConfig {
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
    LimitsConfig {
        rate: per_identity,
        total_rate: total,
        concurrency,
    }
}

fn upstream(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    u: raw::Upstream,
    authenticated: bool,
    issuer: bool,
) -> Option<UpstreamConfig> {
    let (token_profile, token_header) = upstream_token(c, key, &u, authenticated, issuer);
    let inject = u.inject.as_ref().and_then(|i| inject(c, base, key, i));
    let strip_headers =
        crate::proxy::headers::StripList::parse(u.strip_headers.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| {
                c.push(format!("{key}.upstream.strip_headers"), e);
                Default::default()
            });
    if let (Some(InjectConfig::Basic { .. }), TokenHeader::Authorization) = (&inject, &token_header)
    {
        c.push(
            format!("{key}.upstream.inject"),
            "Basic injection and the minted token both use Authorization: set token_header to another header or \"none\"",
        );
    }
    let timeout = c.duration(
        &format!("{key}.upstream.timeout"),
        u.timeout.as_ref(),
        defaults::UPSTREAM_TIMEOUT,
    );
    let connect_timeout = c.duration(
        &format!("{key}.upstream.connect_timeout"),
        u.connect_timeout.as_ref(),
        defaults::UPSTREAM_CONNECT_TIMEOUT,
    );
    let ca =
        u.ca.as_ref()
            .map(|p| c.file_path(&format!("{key}.upstream.ca"), base, p));
    let (scheme, authority, base_path) = upstream_url(c, key, &u.url, ca.is_some())?;
    Some(UpstreamConfig {
        url: u.url,
        scheme,
        authority,
        base_path,
        timeout,
        connect_timeout,
        ca,
        audience: u.audience,
        token_header,
        token_profile,
        inject,
        strip_headers,
    })
}

/// `token_profile`, `token_header` and `audience`: what the route mints for the upstream.
fn upstream_token(
    c: &mut Collector<'_>,
    key: &str,
    u: &raw::Upstream,
    authenticated: bool,
    issuer: bool,
) -> (crate::token::Profile, TokenHeader) {
    let token_profile = match u.token_profile.as_deref().map(str::parse) {
        None => crate::token::Profile::default(),
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            c.push(format!("{key}.upstream.token_profile"), e.to_string());
            crate::token::Profile::default()
        }
    };
    let token_header = match u.token_header.as_deref() {
        None if authenticated => TokenHeader::Authorization,
        None => TokenHeader::None,
        Some(h) if h.eq_ignore_ascii_case("none") => TokenHeader::None,
        Some(h) if h.eq_ignore_ascii_case("authorization") => TokenHeader::Authorization,
        Some(h) => match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) if !crate::proxy::headers::is_reserved(&n) => TokenHeader::Named(n),
            _ => {
                c.push(
                    format!("{key}.upstream.token_header"),
                    format!("{h:?}: not a header name the gateway may set"),
                );
                TokenHeader::None
            }
        },
    };
    if token_header != TokenHeader::None {
        if !authenticated {
            c.push(
                format!("{key}.upstream.token_header"),
                "the route accepts no credentials, so there is no caller to mint a token for",
            );
        } else if !issuer {
            c.push(
                format!("{key}.upstream.token_header"),
                "minting needs an [issuer] section (or set token_header = \"none\")",
            );
        }
        match &u.audience {
            None => c.push(
                format!("{key}.upstream.audience"),
                "required when the route mints tokens: the aud the upstream expects",
            ),
            Some(a) if a.is_empty() => {
                c.push(format!("{key}.upstream.audience"), "must not be empty")
            }
            Some(_) => {}
        }
    }
    (token_profile, token_header)
}

/// `url`: http or https, a host without user information, no query, a canonical base path.
fn upstream_url(
    c: &mut Collector<'_>,
    key: &str,
    url: &str,
    has_ca: bool,
) -> Option<(http::uri::Scheme, http::uri::Authority, String)> {
    let ukey = format!("{key}.upstream.url");
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => {
            c.push(ukey, format!("invalid URL {:?}: {e}", url));
            return None;
        }
    };
    let parts = uri.into_parts();
    let scheme = match parts.scheme {
        Some(s) if s == http::uri::Scheme::HTTP || s == http::uri::Scheme::HTTPS => s,
        _ => {
            c.push(ukey, format!("{:?}: the scheme must be http or https", url));
            return None;
        }
    };
    if scheme == http::uri::Scheme::HTTP && has_ca {
        c.push(
            format!("{key}.upstream.ca"),
            "only meaningful with an https upstream",
        );
    }
    let Some(authority) = parts.authority else {
        c.push(ukey, format!("{:?}: missing host", url));
        return None;
    };
    if authority.as_str().contains('@') {
        c.push(
            ukey,
            "user information in the URL is not allowed (use inject for upstream credentials)",
        );
        return None;
    }
    let pq = parts
        .path_and_query
        .map(|pq| (pq.path().to_string(), pq.query().is_some()));
    let base_path = match pq {
        Some((_, true)) => {
            c.push(ukey, "must not contain a query");
            return None;
        }
        Some((p, false)) => {
            let trimmed = p.trim_end_matches('/').to_string();
            if !trimmed.is_empty()
                && path::normalize(&trimmed)
                    .map(|n| n != trimmed)
                    .unwrap_or(true)
            {
                c.push(
                    ukey,
                    "its path must be canonical (no dot segments, '//' or unusual encodings)",
                );
                return None;
            }
            trimmed
        }
        None => String::new(),
    };
    Some((scheme, authority, base_path))
}

fn inject(c: &mut Collector<'_>, base: &Path, key: &str, i: &raw::Inject) -> Option<InjectConfig> {
    let ikey = format!("{key}.upstream.inject");
    let source = |c: &mut Collector<'_>,
                  file: &Option<String>,
                  env: &Option<String>,
                  what: &str| match (file, env) {
        (Some(f), None) => Some(SecretSource::File(c.file_path(
            &format!("{ikey}.{what}_file"),
            base,
            f,
        ))),
        (None, Some(v)) => {
            if std::env::var_os(v).is_none() {
                c.push(
                    format!("{ikey}.{what}_env"),
                    format!("environment variable {v} is not set"),
                );
            }
            Some(SecretSource::Env(v.clone()))
        }
        _ => {
            c.push(
                &ikey,
                format!("set exactly one of {what}_file and {what}_env (secrets are never inline)"),
            );
            None
        }
    };
    match i.kind.as_str() {
        "basic" => {
            if i.name.is_some() || i.value_file.is_some() || i.value_env.is_some() {
                c.push(
                    &ikey,
                    "kind = \"basic\" takes username and password_file/_env",
                );
            }
            let username = match &i.username {
                Some(u) if !u.is_empty() && !u.contains(':') => u.clone(),
                _ => {
                    c.push(
                        format!("{ikey}.username"),
                        "required, non-empty, without ':'",
                    );
                    return None;
                }
            };
            let password = source(c, &i.password_file, &i.password_env, "password")?;
            Some(InjectConfig::Basic { username, password })
        }
        "header" => {
            if i.username.is_some() || i.password_file.is_some() || i.password_env.is_some() {
                c.push(&ikey, "kind = \"header\" takes name and value_file/_env");
            }
            let name = match i
                .name
                .as_deref()
                .map(|n| http::HeaderName::from_bytes(n.as_bytes()))
            {
                Some(Ok(n)) if !crate::proxy::headers::is_reserved(&n) => n,
                _ => {
                    c.push(
                        format!("{ikey}.name"),
                        "required: a header name the gateway may set",
                    );
                    return None;
                }
            };
            let value = source(c, &i.value_file, &i.value_env, "value")?;
            Some(InjectConfig::Header { name, value })
        }
        other => {
            c.push(
                format!("{ikey}.kind"),
                format!("unknown kind {other:?} (basic or header)"),
            );
            None
        }
    }
}

fn issuer(
    c: &mut Collector<'_>,
    base: &Path,
    i: raw::Issuer,
    warnings: &mut Vec<String>,
) -> Option<IssuerConfig> {
    let before = c.problems.len();
    let url_ok = (i.url.starts_with("https://") || i.url.starts_with("http://"))
        && i.url
            .parse::<http::Uri>()
            .is_ok_and(|u| u.host().is_some() && u.query().is_none());
    if !url_ok {
        c.push(
            "issuer.url",
            format!("{:?}: expected an http(s) URL without query", i.url),
        );
    } else if i.url.starts_with("http://") {
        warnings.push(
            "issuer.url is http://: verifiers fetch the JWKS from it; use https in production"
                .into(),
        );
    }
    if let Err(e) = crate::spiffe::SpiffeId::parse(&i.spiffe_id) {
        c.push("issuer.spiffe_id", format!("{:?}: {e}", i.spiffe_id));
    }
    let well_known_hosts =
        canonical::well_known_hosts(&i.url, i.well_known_hosts.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| {
                c.push("issuer.well_known_hosts", e);
                Vec::new()
            });
    let ttl = c.duration("issuer.ttl", i.ttl.as_ref(), defaults::TOKEN_TTL);
    if ttl > std::time::Duration::from_secs(86400) {
        c.push(
            "issuer.ttl",
            "at most 24h: minted tokens are meant to be short-lived",
        );
    }
    let keys: Vec<PathBuf> = i.keys.iter().map(|k| resolve(base, k)).collect();
    if keys.is_empty() {
        warnings.push("issuer.keys is empty: an ephemeral signing key is generated at start (development only; every replica would publish a different key)".into());
    }
    // JWT-SVID (the default token profile) allows no EdDSA: the first key must be ES256.
    for (n, e) in
        crate::token::keyset::check_files(&keys, crate::token::keyset::SignerRequirement::Es256)
            .into_iter()
            .enumerate()
    {
        c.push(
            format!(
                "issuer.keys{}",
                if n == 0 {
                    String::new()
                } else {
                    format!(" ({})", n + 1)
                }
            ),
            e.to_string(),
        );
    }
    if c.problems.len() != before {
        return None;
    }
    Some(IssuerConfig {
        url: i.url.trim_end_matches('/').to_string(),
        spiffe_id: i.spiffe_id,
        keys,
        ttl,
        well_known_hosts,
    })
}

fn state(
    c: &mut Collector<'_>,
    base: &Path,
    v: Option<&Value>,
    warnings: &mut Vec<String>,
) -> super::StateConfig {
    use crate::state::redis::{check_prefix, RedisUrl, DEFAULT_PREFIX};
    let raw = match v {
        None => raw::State::default(),
        Some(v) => c.section::<raw::State>("state", v).unwrap_or_default(),
    };
    let redis = match raw.backend.as_deref() {
        None | Some("embedded") => false,
        Some("redis") => true,
        Some(other) => {
            c.push(
                "state.backend",
                format!("unknown backend {other:?} (embedded or redis)"),
            );
            false
        }
    };
    let backend = if redis {
        // Never echo the URL: it may carry the password.
        let url = match raw.url.as_deref() {
            None => {
                c.push(
                    "state.url",
                    "required with backend = \"redis\" (redis://host:port/db)",
                );
                None
            }
            Some(u) => match RedisUrl::parse(u) {
                Ok(u) => Some(u),
                Err(m) => {
                    c.push("state.url", m);
                    None
                }
            },
        };
        let prefix = raw.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if let Err(m) = check_prefix(&prefix) {
            c.push("state.prefix", m);
        }
        if raw.path.is_some() {
            warnings.push("[state] path is not used with backend = \"redis\"".into());
        }
        url.map(|url| super::StateBackend::Redis { url, prefix })
    } else {
        if raw.url.is_some() {
            c.push("state.url", "only meaningful with backend = \"redis\"");
        }
        if raw.prefix.is_some() {
            c.push("state.prefix", "only meaningful with backend = \"redis\"");
        }
        None
    };
    let flush_every = c.duration(
        "state.flush_every",
        raw.flush_every.as_ref(),
        std::time::Duration::from_secs(5),
    );
    super::StateConfig {
        backend: backend.unwrap_or(super::StateBackend::Embedded),
        path: raw.path.map(|p| resolve(base, &p)),
        flush_every,
    }
}

/// `[migration] plans_dir` (default `migration-plans` next to the config, when it exists),
/// cross-checked against credentials and routes.
fn plans(
    c: &mut Collector<'_>,
    base: &Path,
    v: Option<&Value>,
    credentials: &[Arc<CredentialConfig>],
    routes: &[Arc<RouteConfig>],
) -> crate::migration::Plans {
    use crate::migration::plan::{check_against_config, RouteUse};
    let raw = match v {
        None => raw::Migration::default(),
        Some(v) => c
            .section::<raw::Migration>("migration", v)
            .unwrap_or_default(),
    };
    let dir = match &raw.plans_dir {
        Some(d) => {
            let p = resolve(base, d);
            if !p.is_dir() {
                c.push(
                    "migration.plans_dir",
                    format!("{} is not a directory", p.display()),
                );
                return crate::migration::Plans::default();
            }
            Some(p)
        }
        None => Some(base.join("migration-plans")).filter(|p| p.is_dir()),
    };
    let plans = match dir {
        None => crate::migration::Plans::default(),
        Some(d) => match crate::migration::Plans::load_dir(&d) {
            Ok(p) => p,
            Err(problems) => {
                c.problems.extend(problems);
                return crate::migration::Plans::default();
            }
        },
    };
    let kinds = credentials
        .iter()
        .map(|cr| (cr.name.to_string(), cr.kind()))
        .collect();
    let accepts: Vec<Vec<String>> = routes
        .iter()
        .map(|r| r.accept.iter().map(|a| a.to_string()).collect())
        .collect();
    let uses: Vec<RouteUse<'_>> = routes
        .iter()
        .zip(&accepts)
        .filter_map(|(r, accept)| {
            r.plan.as_deref().map(|plan| RouteUse {
                route: &r.name,
                plan,
                accept,
            })
        })
        .collect();
    let problems = check_against_config(&plans, &kinds, &uses, c.file);
    c.problems.extend(problems);
    plans
}

#[cfg(test)]
mod state_tests {
    use std::path::Path;

    use crate::config::StateBackend;

    fn load(state: &str) -> Result<crate::config::Config, Vec<String>> {
        let text = format!(
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[state]\n{state}"
        );
        crate::config::from_toml_str(&text, Path::new("/nonexistent/p.toml")).map_err(|e| {
            e.0.iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect()
        })
    }

    #[test]
    fn state_backends() {
        let c = load("path = \"state.db\"").unwrap();
        assert_eq!(c.state.backend, StateBackend::Embedded);
        let c =
            load("backend = \"redis\"\nurl = \"redis://gw:pw@redis:6379/1\"\nflush_every = \"2s\"")
                .unwrap();
        match &c.state.backend {
            StateBackend::Redis { url, prefix } => {
                assert_eq!(url.redacted(), "redis://gw:***@redis:6379/1");
                assert_eq!(prefix, "portcullis:");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!("{c:?}").contains("pw@"),
            "the password is never shown"
        );
        let c = load("backend = \"redis\"\nurl = \"redis://redis\"\nprefix = \"gw-b:\"").unwrap();
        assert!(
            matches!(&c.state.backend, StateBackend::Redis { prefix, .. } if prefix == "gw-b:")
        );
    }

    #[test]
    fn state_problems() {
        let p = load("backend = \"redis\"").unwrap_err();
        assert!(
            p.iter().any(|m| m.starts_with("state.url: required")),
            "{p:?}"
        );
        let p = load("backend = \"memcached\"").unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.starts_with("state.backend: unknown backend")),
            "{p:?}"
        );
        let p = load("backend = \"redis\"\nurl = \"http://u:secret@redis:6379\"").unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.contains("state.url: must start with redis://")),
            "{p:?}"
        );
        assert!(!p.join("\n").contains("secret"), "{p:?}");
        let p = load("backend = \"redis\"\nurl = \"redis://r\"\nprefix = \"a b\"").unwrap_err();
        assert!(p.iter().any(|m| m.starts_with("state.prefix:")), "{p:?}");
        let p = load("url = \"redis://r\"\nprefix = \"x:\"").unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.starts_with("state.url: only meaningful")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("state.prefix: only meaningful")),
            "{p:?}"
        );
    }
}

#[cfg(test)]
mod admin_tests {
    use crate::config::creds::tests::problems;

    #[test]
    fn admin_tls_needs_allow_and_allow_needs_a_certificate() {
        let p = problems("allow = [\"spiffe://corp.example/ops/*\"]");
        assert!(
            p.iter()
                .any(|m| m.starts_with("admin.allow: admin over mTLS needs a certificate")),
            "{p:?}"
        );
        let p = problems("[admin.tls]\ncert = \"a.pem\"\nkey = \"a.key\"");
        assert!(
            p.iter()
                .any(|m| m.starts_with("admin.tls: is the certificate of admin over mTLS")),
            "{p:?}"
        );
        // With its own certificate, admin over mTLS no longer asks for [listen.tls].
        let p = problems(
            "allow = [\"spiffe://corp.example/ops/*\"]\n[admin.tls]\ncert = \"a.pem\"\nkey = \"a.key\"",
        );
        assert!(
            !p.iter().any(|m| m.contains("needs a certificate")),
            "{p:?}"
        );
    }
}
