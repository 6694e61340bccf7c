//! `[trust."<td>"]`, `[credentials.<name>]` and `[token_exchange]`: what callers may present.
//!
//! Each credential is read in two steps: its `kind` picks the raw shape (so that an unknown key is
//! reported against the right kind), then the values are checked and resolved (paths against the
//! config directory, adapters by name, secrets by where they live, never by value).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::raw;
use super::validate::{resolve, Collector};
use crate::adapters::{Adapters, WebhookAdapter};
use crate::identity::{SpiffeId, TrustDomain};
use crate::secret::SecretSource;
use crate::units::parse_duration;

pub use crate::authn::settings::{
    ApiKeySpec, CredentialConfig, CredentialSpec, LdapSpec, TrustConfig,
};

/// `[token_exchange]`
#[derive(Debug, Clone)]
pub struct TokenExchangeConfig {
    pub accept: Vec<Arc<str>>,
    /// Audiences a caller may ask for; the first is the default.
    pub audiences: Vec<String>,
    /// Explicit rules (`allow` SPIFFE ID patterns) for some of them: such an audience goes to the
    /// callers they match instead of those a route would allow.
    pub audience_rules: Vec<(String, Vec<String>)>,
}

/// `"3/15m"`: a count per window.
pub fn parse_per(s: &str) -> Result<(u32, Duration), String> {
    let (n, w) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected COUNT/WINDOW, e.g. \"3/15m\" or \"50/s\""))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the count must be a whole number"))?;
    let w = w.trim();
    let window = match w {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86400),
        other => parse_duration(other)?,
    };
    if n == 0 || window.is_zero() {
        return Err(format!("{s:?}: count and window must be greater than zero"));
    }
    Ok((n, window))
}

fn secret(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    file: Option<&String>,
    env: Option<&String>,
) -> Option<SecretSource> {
    match (file, env) {
        (Some(_), Some(_)) => {
            c.push(key, "set either the _file or the _env form, not both");
            None
        }
        (Some(f), None) => {
            let p = resolve(base, f);
            if !p.is_file() {
                c.push(
                    format!("{key}_file"),
                    format!("file {} does not exist or is not readable", p.display()),
                );
            }
            Some(SecretSource::File(p))
        }
        (None, Some(v)) => {
            if std::env::var_os(v).is_none() {
                c.push(
                    format!("{key}_env"),
                    format!("environment variable {v} is not set"),
                );
            }
            Some(SecretSource::Env(v.clone()))
        }
        (None, None) => None,
    }
}

fn duration_opt(c: &mut Collector<'_>, key: &str, v: Option<&String>) -> Option<Duration> {
    match v.map(|s| parse_duration(s)) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(d),
        Some(Ok(_)) => {
            c.push(key, "must be greater than zero");
            None
        }
        Some(Err(e)) => {
            c.push(key, e);
            None
        }
    }
}

fn trust_domains(
    c: &mut Collector<'_>,
    key: &str,
    names: &[String],
    (trust, workload_api): (&[TrustConfig], bool),
    need_bundle: bool,
) -> Vec<TrustDomain> {
    if names.is_empty() {
        c.push(key, "list at least one trust domain");
    }
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match TrustDomain::parse(n) {
            Ok(td) => {
                if need_bundle && workload_api && !trust.iter().any(|t| t.trust_domain == td) {
                    // `[spiffe]`: the agent may serve this trust domain; only it knows.
                    c.warn(format!("{key}[{i}]: no [trust.{n:?}] file configures this trust domain; it must come from the Workload API ([spiffe]), which `check` cannot see offline"));
                } else if need_bundle && !trust.iter().any(|t| t.trust_domain == td) {
                    c.push(
                        format!("{key}[{i}]"),
                        format!("no [trust.{n:?}] section configures this trust domain"),
                    );
                }
                out.push(td);
            }
            Err(e) => c.push(format!("{key}[{i}]"), format!("{n:?}: {e}")),
        }
    }
    out
}

/// `[trust]`
pub(super) fn trust(c: &mut Collector<'_>, base: &Path, v: &Value) -> Vec<TrustConfig> {
    let Some(obj) = v.as_object() else {
        c.push(
            "trust",
            "must be a table of trust domains ([trust.\"corp.example\"])",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, t) in obj {
        let key = format!("trust.{name:?}");
        let Some(t) = c.section::<raw::Trust>(&key, t) else {
            continue;
        };
        let td = match TrustDomain::parse(name) {
            Ok(td) => td,
            Err(e) => {
                c.push(&key, format!("not a SPIFFE trust domain name: {e}"));
                continue;
            }
        };
        if t.x509_bundle.is_none() && t.jwt_bundle.is_none() {
            c.push(&key, "set x509_bundle, jwt_bundle or both");
        }
        out.push(TrustConfig {
            trust_domain: td,
            x509_bundle: t
                .x509_bundle
                .map(|p| c.file_path(&format!("{key}.x509_bundle"), base, &p)),
            jwt_bundle: t
                .jwt_bundle
                .map(|p| c.file_path(&format!("{key}.jwt_bundle"), base, &p)),
        });
    }
    out
}

const KINDS: &str = "mtls, jwt-svid, ldap, api-key, webhook";

/// `[credentials.<name>]`
pub(super) fn credentials(
    c: &mut Collector<'_>,
    base: &Path,
    v: &Value,
    (trust, workload_api): (&[TrustConfig], bool),
    adapters: &Adapters,
) -> Vec<Arc<CredentialConfig>> {
    let Some(obj) = v.as_object() else {
        c.push("credentials", "must be a table ([credentials.<name>])");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, body) in obj {
        let key = format!("credentials.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            c.push(
                &key,
                "credential names use only letters, digits, '-', '_' and '.'",
            );
            continue;
        }
        let mut fields = match body.as_object() {
            Some(o) => o.clone(),
            None => {
                c.push(&key, "must be a table");
                continue;
            }
        };
        let kind = match fields.remove("kind") {
            Some(Value::String(k)) => k,
            _ => {
                c.push(format!("{key}.kind"), format!("missing (one of: {KINDS})"));
                continue;
            }
        };
        let rest = Value::Object(fields);
        let before = c.problems.len();
        let spec = match kind.as_str() {
            "mtls" => c
                .section::<raw::MtlsCred>(&key, &rest)
                .map(|m| CredentialSpec::Mtls {
                    trust_domains: trust_domains(
                        c,
                        &format!("{key}.trust_domains"),
                        &m.trust_domains,
                        (trust, workload_api),
                        true,
                    ),
                }),
            "jwt-svid" => c.section::<raw::JwtSvidCred>(&key, &rest).map(|j| {
                if j.audience.is_empty() {
                    c.push(format!("{key}.audience"), "must not be empty");
                }
                let leeway = duration_opt(c, &format!("{key}.leeway"), j.leeway.as_ref());
                if leeway.is_some_and(|l| l > Duration::from_secs(300)) {
                    c.push(format!("{key}.leeway"), "at most 5m");
                }
                CredentialSpec::JwtSvid {
                    trust_domains: trust_domains(
                        c,
                        &format!("{key}.trust_domains"),
                        &j.trust_domains,
                        (trust, workload_api),
                        // With trust_issuer, the gateway's own keys may be the only ones.
                        !j.trust_issuer,
                    ),
                    audience: j.audience,
                    leeway,
                    trust_issuer: j.trust_issuer,
                }
            }),
            "webhook" => c
                .section::<raw::WebhookCred>(&key, &rest)
                .and_then(|w| webhook(c, base, &key, w, adapters)),
            "api-key" => c
                .section::<raw::ApiKeyCred>(&key, &rest)
                .and_then(|a| api_key(c, base, &key, a)),
            "ldap" => c
                .section::<raw::LdapCred>(&key, &rest)
                .and_then(|l| ldap(c, base, &key, l, adapters)),
            other => {
                c.push(
                    format!("{key}.kind"),
                    format!("unknown kind {other:?} (one of: {KINDS})"),
                );
                None
            }
        };
        if let (Some(spec), true) = (spec, c.problems.len() == before) {
            out.push(Arc::new(CredentialConfig {
                name: Arc::from(name.as_str()),
                spec,
            }));
        }
    }
    out
}

fn spiffe_id(c: &mut Collector<'_>, key: &str, s: &str) {
    if let Err(e) = SpiffeId::parse(s) {
        c.push(key, format!("{s:?} is not a SPIFFE ID: {e}"));
    }
}

fn webhook(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    w: raw::WebhookCred,
    adapters: &Adapters,
) -> Option<CredentialSpec> {
    let adapter = adapters.get_webhook(&w.adapter);
    if adapter.is_none() {
        c.push(
            format!("{key}.adapter"),
            format!("no webhook adapter named {:?}", w.adapter),
        );
    }
    let secrets = secret(
        c,
        base,
        &format!("{key}.secrets"),
        w.secrets_file.as_ref(),
        w.secrets_env.as_ref(),
    );
    if secrets.is_none() {
        c.push(key, "set secrets_file (one secret per line) or secrets_env");
    }
    spiffe_id(c, &format!("{key}.identity"), &w.identity);
    let tolerance = duration_opt(c, &format!("{key}.tolerance"), w.tolerance.as_ref());
    if let Some(u) = &w.public_url {
        public_url(c, &format!("{key}.public_url"), u, adapter.as_deref());
    }
    Some(CredentialSpec::Webhook {
        adapter: adapter?,
        secrets: secrets?,
        identity: w.identity,
        tolerance,
        public_url: w.public_url,
    })
}

/// A webhook's `public_url`: an absolute http(s) URL with a host, without user info, query or
/// fragment (the query is the one each delivery arrives with), for an adapter that signs the URL.
fn public_url(c: &mut Collector<'_>, key: &str, u: &str, adapter: Option<&WebhookAdapter>) {
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && !u.contains(['?', '#'])
        && u.parse::<http::Uri>().is_ok_and(|p| {
            p.authority()
                .is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty())
        });
    if !ok {
        c.push(
            key,
            format!("{u:?}: expected the http(s) URL the provider calls, without query"),
        );
    }
    if adapter.is_some_and(|a| !a.signs_url()) {
        c.push(key, "this adapter does not sign the URL: remove public_url");
    }
}

/// Route `route` (at `key`) accepts `cr` as its `i`th credential. A webhook whose adapter signs
/// the URL but that has no `public_url` has its URL rebuilt from the request's `Host`, which the
/// caller chooses: a delivery signed for another application of the same provider account would
/// verify. Only a route pinned to one exact host makes that Host the provider's: refused
/// otherwise, and a warning even then.
pub(super) fn url_signed_webhook(
    c: &mut Collector<'_>,
    (key, route, i): (&str, &str, usize),
    cr: &CredentialConfig,
    host: Option<&crate::routing::settings::HostMatch>,
) {
    let CredentialSpec::Webhook {
        adapter,
        public_url: None,
        ..
    } = &cr.spec
    else {
        return;
    };
    if !adapter.signs_url() {
        return;
    }
    let name = &cr.name;
    if matches!(host, Some(crate::routing::settings::HostMatch::Exact(_))) {
        c.warn(format!(
            "route {route}: credential {name} ({}) signs the URL, which is rebuilt from the request's Host; set credentials.{name}.public_url",
            adapter.name()
        ));
    } else {
        c.push(
            format!("{key}.accept[{i}]"),
            format!(
                "credential {name} ({}) signs the URL: set credentials.{name}.public_url, or match.host to the one host the provider calls",
                adapter.name()
            ),
        );
    }
}

fn api_key(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    a: raw::ApiKeyCred,
) -> Option<CredentialSpec> {
    let header_name = a.header.as_deref().unwrap_or("x-api-key");
    let header = match http::HeaderName::from_bytes(header_name.as_bytes()) {
        Ok(h) if h != http::header::AUTHORIZATION && h != http::header::HOST => Some(h),
        _ => {
            c.push(
                format!("{key}.header"),
                format!("{header_name:?} is not a usable header name"),
            );
            None
        }
    };
    if let Some(q) = &a.query_param {
        if q.is_empty()
            || !q
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            c.push(
                format!("{key}.query_param"),
                "use only letters, digits, '-', '_' and '.'",
            );
        }
    }
    let keys_file = c.file_path(&format!("{key}.keys_file"), base, &a.keys_file);
    Some(CredentialSpec::ApiKey(ApiKeySpec {
        header: header?,
        query_param: a.query_param,
        keys_file,
    }))
}

fn ldap(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    l: raw::LdapCred,
    adapters: &Adapters,
) -> Option<CredentialSpec> {
    let adapter = adapters.get_ldap(&l.adapter);
    if adapter.is_none() {
        c.push(
            format!("{key}.adapter"),
            format!("no LDAP adapter named {:?}", l.adapter),
        );
    }
    let scheme_ok = l.url.starts_with("ldap://") || l.url.starts_with("ldaps://");
    if !scheme_ok {
        c.push(
            format!("{key}.url"),
            format!(
                "{:?}: expected ldap://host:port or ldaps://host:port",
                l.url
            ),
        );
    }
    if l.starttls && l.url.starts_with("ldaps://") {
        c.push(
            format!("{key}.starttls"),
            "StartTLS is for ldap:// URLs (ldaps:// is TLS already)",
        );
    }
    let ca =
        l.ca.as_ref()
            .map(|p| c.file_path(&format!("{key}.ca"), base, p));
    let bind_password = secret(
        c,
        base,
        &format!("{key}.bind_password"),
        l.bind_password_file.as_ref(),
        l.bind_password_env.as_ref(),
    );
    if l.bind_dn.is_some() != bind_password.is_some() {
        c.push(
            key,
            "bind_dn and bind_password_file (or _env) go together: the search account",
        );
    }
    match l.identity.matches("{user}").count() {
        1 => spiffe_id(
            c,
            &format!("{key}.identity"),
            &l.identity.replace("{user}", "user"),
        ),
        _ => c.push(
            format!("{key}.identity"),
            "must contain {user} exactly once, e.g. \"spiffe://corp.example/legacy/racf/{user}\"",
        ),
    }
    let per = |c: &mut Collector<'_>, k: &str, v: Option<&String>, d: (u32, Duration)| match v
        .map(|s| parse_per(s))
    {
        None => d,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            c.push(format!("{key}.{k}"), e);
            d
        }
    };
    let max_failures = per(
        c,
        "max_failures",
        l.max_failures.as_ref(),
        (3, Duration::from_secs(900)),
    );
    let max_source_failures = per(
        c,
        "max_source_failures",
        l.max_source_failures.as_ref(),
        (30, Duration::from_secs(900)),
    );
    let cache_ttl = duration_opt(c, &format!("{key}.cache_ttl"), l.cache_ttl.as_ref())
        .unwrap_or(Duration::from_secs(60));
    let connect_timeout = duration_opt(
        c,
        &format!("{key}.connect_timeout"),
        l.connect_timeout.as_ref(),
    )
    .unwrap_or(Duration::from_secs(3));
    let timeout = duration_opt(c, &format!("{key}.timeout"), l.timeout.as_ref())
        .unwrap_or(Duration::from_secs(5));
    let pool_size = match l.pool_size {
        Some(0) => {
            c.push(format!("{key}.pool_size"), "must be greater than zero");
            8
        }
        Some(n) => usize::try_from(n).unwrap_or(8),
        None => 8,
    };
    Some(CredentialSpec::Ldap(Box::new(LdapSpec {
        adapter: adapter?,
        url: l.url,
        starttls: l.starttls,
        ca,
        bind_dn: l.bind_dn,
        bind_password,
        base_dn: l.base_dn,
        dn_template: l.dn_template,
        user_filter: l.user_filter,
        group_attribute: l.group_attribute,
        identity: l.identity,
        cache_ttl,
        cache_entries: l
            .cache_entries
            .map_or(10_000, |n| usize::try_from(n).unwrap_or(10_000)),
        max_failures,
        max_source_failures,
        pool_size,
        connect_timeout,
        timeout,
    })))
}

/// `[token_exchange]`
pub(super) fn token_exchange(
    c: &mut Collector<'_>,
    v: &Value,
    creds: &[Arc<CredentialConfig>],
) -> Option<TokenExchangeConfig> {
    let t = c.section::<raw::TokenExchange>("token_exchange", v)?;
    if t.accept.is_empty() {
        c.push("token_exchange.accept", "list at least one credential");
    }
    for (i, n) in t.accept.iter().enumerate() {
        if !creds.iter().any(|cr| *cr.name == **n) {
            c.push(
                format!("token_exchange.accept[{i}]"),
                format!("no [credentials.{n}]"),
            );
        }
    }
    let mut audiences = Vec::new();
    let mut audience_rules = Vec::new();
    for (i, a) in t.audiences.unwrap_or_default().into_iter().enumerate() {
        let name = match a {
            raw::ExchangeAudience::Name(n) => n,
            raw::ExchangeAudience::Rule(r) => {
                if r.allow.is_empty() {
                    c.push(
                        format!("token_exchange.audiences[{i}].allow"),
                        "list at least one SPIFFE ID pattern",
                    );
                }
                for (j, p) in r.allow.iter().enumerate() {
                    if let Err(e) = crate::authz::policy::allow::check_pattern(p) {
                        c.push(format!("token_exchange.audiences[{i}].allow[{j}]"), e);
                    }
                }
                audience_rules.push((r.audience.clone(), r.allow));
                r.audience
            }
        };
        if name.is_empty() {
            c.push("token_exchange.audiences", "audiences must not be empty");
        }
        audiences.push(name);
    }
    Some(TokenExchangeConfig {
        accept: t.accept.iter().map(|s| Arc::from(s.as_str())).collect(),
        audiences,
        audience_rules,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    /// The problems `check` reports for a minimal config plus `extra`, which starts inside
    /// `[admin]` (`key = value` lines there, or further sections).
    pub(in crate::config) fn problems(extra: &str) -> Vec<String> {
        let text = format!(
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}"
        );
        match crate::config::from_toml_str(&text, Path::new("/nonexistent/p.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|p| format!("{}: {}", p.key, p.message))
                    .collect()
            }
        }
    }

    fn route(extra: &str) -> String {
        format!("[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/r/\" }}\n{extra}\n[routes.upstream]\nurl = \"http://127.0.0.1:1\"\n")
    }

    #[test]
    fn token_exchange_audience_rules_are_checked() {
        let base = "[issuer]\nurl = \"https://gw.example\"\nspiffe_id = \"spiffe://corp.example/gw\"\n[trust.\"corp.example\"]\njwt_bundle = \"/etc/hostname\"\n[credentials.j]\nkind = \"jwt-svid\"\ntrust_domains = [\"corp.example\"]\naudience = \"gw\"\n[token_exchange]\naccept = [\"j\"]\n";
        let p = problems(&format!(
            "{base}audiences = [\"a\", {{ audience = \"b\", allow = [\"spiffe://*/x\"] }}, {{ audience = \"c\", allow = [] }}]\n"
        ))
        .join("\n");
        assert!(p.contains("token_exchange.audiences[1].allow[0]"), "{p}");
        assert!(p.contains("token_exchange.audiences[2].allow"), "{p}");
        let ok = problems(&format!(
            "{base}[[token_exchange.audiences]]\naudience = \"b\"\nallow = [\"spiffe://corp.example/ns/*\"]\n"
        ));
        assert!(ok.iter().all(|l| !l.contains("token_exchange")), "{ok:?}");
    }

    #[test]
    fn credentials_and_routes_are_cross_checked() {
        let p = problems(&format!(
            "[credentials.a]\nkind = \"telepathy\"\n[credentials.b]\nkind = \"mtls\"\ntrust_domains = [\"nowhere.example\"]\n[credentials.c]\nkind = \"jwt-svid\"\ntrust_domains = []\naudience = \"x\"\nextra = 1\n{}",
            route("accept = [\"missing\"]")
        ));
        let all = p.join("\n");
        assert!(
            all.contains("credentials.a.kind: unknown kind \"telepathy\""),
            "{all}"
        );
        assert!(
            all.contains("credentials.b.trust_domains[0]: no [trust"),
            "{all}"
        );
        assert!(
            all.contains("credentials.c.extra: unknown field `extra`"),
            "{all}"
        );
        assert!(
            all.contains("routes[0].accept[0]: no [credentials.missing]"),
            "{all}"
        );
    }

    #[test]
    fn a_protected_route_needs_an_explicit_rule_and_minting_needs_an_issuer() {
        let creds = "[trust.\"corp.example\"]\njwt_bundle = \"/etc/hostname\"\n[credentials.j]\nkind = \"jwt-svid\"\ntrust_domains = [\"corp.example\"]\naudience = \"gw\"\n";
        let p = problems(&format!("{creds}{}", route("accept = [\"j\"]"))).join("\n");
        assert!(p.contains("accepts credentials but has neither"), "{p}");
        assert!(
            p.contains("upstream.token_header: minting needs an [issuer]"),
            "{p}"
        );
        assert!(p.contains("upstream.audience: required"), "{p}");
        let p = problems(&format!(
            "{creds}{}",
            route("accept = [\"j\"]\nallow = [\"spiffe://*.example/x\"]")
        ))
        .join("\n");
        assert!(p.contains("routes.r.allow"), "{p}");
        // Explicitly anyone authenticated, no token: valid.
        let ok = problems(&format!(
            "{creds}{}",
            route("accept = [\"j\"]\nallow = [\"*\"]").replace(
                "url = \"http://127.0.0.1:1\"",
                "url = \"http://127.0.0.1:1\"\ntoken_header = \"none\""
            )
        ));
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn per_window_counts() {
        use std::time::Duration;
        assert_eq!(super::parse_per("3/15m"), Ok((3, Duration::from_secs(900))));
        assert_eq!(super::parse_per("50/s"), Ok((50, Duration::from_secs(1))));
        assert!(super::parse_per("0/s").is_err());
        assert!(super::parse_per("3").is_err());
        assert!(super::parse_per("x/s").is_err());
    }
}
