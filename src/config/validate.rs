//! The one validation pass: raw tree → typed [`Config`], collecting every problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::admin::{admin, audit};
use super::creds::{self, CredentialConfig};
use super::issuer::issuer;
use super::listen::listen;
use super::plans::plans;
use super::routes::{routes, RouteCtx};
use super::state::state;
use super::{raw, Admin, Config};
use crate::diag::{Invalid, Problem};
use crate::identity::Kind;
use crate::transport::settings::Listen;
use crate::units::{parse_duration, parse_size};

pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
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
    "telemetry",
    "decision",
    "reload",
    "spiffe",
];

pub(super) use crate::diag::Collector;

/// Config-only helpers on the shared collector.
impl Collector<'_> {
    pub(super) fn duration(
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

    pub(super) fn size(&mut self, key: &str, v: Option<&String>, default: u64) -> u64 {
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

    pub(super) fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
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

    let listen = match obj.get("listen") {
        None => {
            c.push("listen", "missing section [listen] (at least `addr`)");
            None
        }
        Some(v) => c
            .section::<raw::Listen>("listen", v)
            .and_then(|l| listen(&mut c, base, l)),
    };
    let admin_raw = match obj.get("admin") {
        None => Some(raw::Admin::default()),
        Some(v) => c.section::<raw::Admin>("admin", v),
    };
    let admin = admin_raw.and_then(|a| admin(&mut c, base, a));
    let audit_raw = match obj.get("audit") {
        None => Some(raw::Audit::default()),
        Some(v) => c.section::<raw::Audit>("audit", v),
    };
    let audit = audit_raw.map(|a| audit(&mut c, base, a));

    let issuer = match obj.get("issuer") {
        None => None,
        Some(v) => c
            .section::<raw::Issuer>("issuer", v)
            .and_then(|i| issuer(&mut c, base, i)),
    };

    let adapters = adapters(&mut c, base, obj);
    let (trust, credentials) = trust_and_credentials(&mut c, base, obj, &adapters);
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

    let routes = routes(&mut c, base, obj.get("routes"), &ctx);

    super::routes::case_warnings(&mut c, &routes);
    let state = state(&mut c, base, obj.get("state"));
    super::routes::cluster_scope(&mut c, &routes, &state);
    let (plans, plans_dir) = plans(&mut c, base, obj.get("migration"), &credentials, &routes);
    let reload = super::reload::reload(&mut c, obj.get("reload"), plans_dir);
    super::state::retention_covers_plans(&mut c, &state, &plans);
    super::exposure::check(&mut c, &routes, &credentials, &state);
    let telemetry = super::telemetry::telemetry(&mut c, obj.get("telemetry"));
    let decision = super::decision::decision(&mut c, obj.get("decision"), listen.as_ref());
    let uses = (listen.as_ref(), admin.as_ref(), routes.as_slice());
    let spiffe = super::spiffe::settings(&mut c, obj.get("spiffe"), uses);

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
                telemetry,
                decision,
                reload,
                spiffe,
                warnings: c.warnings,
            })
        }
        _ => Err(Invalid(c.problems)),
    }
}

/// `[trust]` and `[credentials]`. With `[spiffe]`, a credential's trust domains may come from
/// the Workload API alone (`check` warns about those it cannot see).
fn trust_and_credentials(
    c: &mut Collector<'_>,
    base: &Path,
    obj: &serde_json::Map<String, Value>,
    adapters: &crate::adapters::Adapters,
) -> (Vec<creds::TrustConfig>, Vec<Arc<CredentialConfig>>) {
    let trust = obj
        .get("trust")
        .map(|v| creds::trust(c, base, v))
        .unwrap_or_default();
    let workload_api = obj.contains_key("spiffe");
    let credentials = obj
        .get("credentials")
        .map(|v| creds::credentials(c, base, v, (&trust, workload_api), adapters))
        .unwrap_or_default();
    (trust, credentials)
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
            for p in e.0 {
                c.problems.push(Problem {
                    key: if p.key.is_empty() { "-".into() } else { p.key },
                    ..p
                });
            }
            crate::adapters::Adapters::default()
        }
    }
}
