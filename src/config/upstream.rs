//! `[routes.upstream]`: URL, timeouts, CA, minted token and injected credential.

use std::path::Path;

use super::validate::Collector;
use super::{defaults, raw};
use crate::proxy::settings::{InjectConfig, TokenHeader, UpstreamConfig};
use crate::routing::path;
use crate::secret::SecretSource;

pub(super) fn upstream(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    u: raw::Upstream,
    authenticated: bool,
    issuer: bool,
) -> Option<UpstreamConfig> {
    let tls_id = super::spiffe::upstream_identity(c, base, key, &u);
    let agent_token = tls_id.token_source == crate::proxy::settings::TokenSource::WorkloadApi;
    let (token_profile, token_header) =
        upstream_token(c, key, &u, authenticated, issuer || agent_token);
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
    super::spiffe::check_upstream_scheme(c, key, &scheme, &tls_id, ca.is_some());
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
        client_cert: tls_id.client_cert,
        server_spiffe_id: tls_id.server_spiffe_id,
        token_source: tls_id.token_source,
    })
}

/// `token_profile`, `token_header` and `audience`: what the route mints for the upstream.
pub(super) fn upstream_token(
    c: &mut Collector<'_>,
    key: &str,
    u: &raw::Upstream,
    authenticated: bool,
    issuer: bool,
) -> (crate::identity::profile::Profile, TokenHeader) {
    let token_profile = match u.token_profile.as_deref().map(str::parse) {
        None => crate::identity::profile::Profile::default(),
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            c.push(format!("{key}.upstream.token_profile"), e.to_string());
            crate::identity::profile::Profile::default()
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
pub(super) fn upstream_url(
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

pub(super) fn inject(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    i: &raw::Inject,
) -> Option<InjectConfig> {
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
