//! `[spiffe]` (the Workload API), `[listen.tls]` / `[admin.tls]` `source`, and the upstream
//! identity keys of `[routes.upstream]` (`client_cert`, `client_key`, `server_spiffe_id`,
//! `token_source`). See `docs/spiffe.md`.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::validate::Collector;
use super::{raw, Admin};
use crate::identity::SpiffeId;
use crate::pipeline::route::RouteConfig;
use crate::proxy::settings::{ClientCert, TokenSource};
use crate::spiffe::workload::{Settings, DEFAULT_STARTUP_TIMEOUT};
use crate::transport::settings::{Listen, ServerCert, TlsFiles};

/// The value that selects the Workload API wherever a key takes it.
const WORKLOAD_API: &str = "workload-api";
/// The environment variable SPIFFE tooling reads for the agent's socket.
const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// `[listen.tls]` / `[admin.tls]`: `source = "files"` (with `cert` and `key`) or
/// `source = "workload-api"` (without them).
pub(super) fn server_cert(
    c: &mut Collector<'_>,
    base: &Path,
    section: &str,
    t: raw::ListenTls,
) -> Option<ServerCert> {
    match t.source.as_deref() {
        Some(WORKLOAD_API) => {
            for (k, v) in [("cert", &t.cert), ("key", &t.key)] {
                if v.is_some() {
                    c.push(
                        format!("{section}.{k}"),
                        "not used with source = \"workload-api\" (the SVID comes from [spiffe]); remove it",
                    );
                }
            }
            Some(ServerCert::WorkloadApi)
        }
        None | Some("files") => match (t.cert, t.key) {
            (Some(cert), Some(key)) => Some(ServerCert::Files(TlsFiles {
                cert: c.file_path(&format!("{section}.cert"), base, &cert),
                key: c.file_path(&format!("{section}.key"), base, &key),
            })),
            (cert, _) => {
                let missing = if cert.is_none() { "cert" } else { "key" };
                c.push(
                    format!("{section}.{missing}"),
                    "required (or set source = \"workload-api\" to serve the Workload API's SVID)",
                );
                None
            }
        },
        Some(other) => {
            c.push(
                format!("{section}.source"),
                format!("{other:?}: expected \"files\" or \"workload-api\""),
            );
            None
        }
    }
}

/// The identity keys of one `[routes.upstream]`.
#[derive(Debug, Default)]
pub(super) struct UpstreamIdentity {
    pub client_cert: Option<ClientCert>,
    pub server_spiffe_id: Option<SpiffeId>,
    pub token_source: TokenSource,
}

pub(super) fn upstream_identity(
    c: &mut Collector<'_>,
    base: &Path,
    key: &str,
    u: &raw::Upstream,
) -> UpstreamIdentity {
    let k = |name: &str| format!("{key}.upstream.{name}");
    let client_cert = match (u.client_cert.as_deref(), u.client_key.as_deref()) {
        (None, None) => None,
        (Some(WORKLOAD_API), None) => Some(ClientCert::WorkloadApi),
        (Some(WORKLOAD_API), Some(_)) => {
            c.push(
                k("client_key"),
                "not used with client_cert = \"workload-api\" (the SVID's key comes from the agent)",
            );
            None
        }
        (Some(cert), Some(pk)) => Some(ClientCert::Files(TlsFiles {
            cert: c.file_path(&k("client_cert"), base, cert),
            key: c.file_path(&k("client_key"), base, pk),
        })),
        (Some(_), None) => {
            c.push(k("client_key"), "required with a client_cert file");
            None
        }
        (None, Some(_)) => {
            c.push(k("client_cert"), "required with client_key");
            None
        }
    };
    let server_spiffe_id = u
        .server_spiffe_id
        .as_deref()
        .and_then(|s| match SpiffeId::parse(s) {
            Ok(id) if !id.is_root() => Some(id),
            Ok(_) => {
                c.push(
                    k("server_spiffe_id"),
                    "must name a workload (a path after the trust domain)",
                );
                None
            }
            Err(e) => {
                c.push(k("server_spiffe_id"), format!("{s:?}: {e}"));
                None
            }
        });
    let token_source = match u.token_source.as_deref() {
        None | Some("issuer") => TokenSource::Issuer,
        Some(WORKLOAD_API) => TokenSource::WorkloadApi,
        Some(other) => {
            c.push(
                k("token_source"),
                format!("{other:?}: expected \"workload-api\" (or \"issuer\", the default)"),
            );
            TokenSource::Issuer
        }
    };
    UpstreamIdentity {
        client_cert,
        server_spiffe_id,
        token_source,
    }
}

/// Client certificates and SPIFFE validation are TLS things; `ca` and `server_spiffe_id` are two
/// ways of verifying the same upstream, and only one may be configured.
pub(super) fn check_upstream_scheme(
    c: &mut Collector<'_>,
    key: &str,
    scheme: &http::uri::Scheme,
    id: &UpstreamIdentity,
    has_ca: bool,
) {
    let https = *scheme == http::uri::Scheme::HTTPS;
    if id.client_cert.is_some() && !https {
        c.push(
            format!("{key}.upstream.client_cert"),
            "needs an https upstream URL",
        );
    }
    if id.server_spiffe_id.is_some() {
        if !https {
            c.push(
                format!("{key}.upstream.server_spiffe_id"),
                "needs an https upstream URL",
            );
        }
        if has_ca {
            c.push(
                format!("{key}.upstream.server_spiffe_id"),
                "set either server_spiffe_id (SPIFFE validation against the trust domain's bundle) or ca (ordinary TLS validation), not both",
            );
        }
    }
}

/// Whether anything in the config asks for the Workload API, and the first key that does.
fn first_use(
    listen: Option<&Listen>,
    admin: Option<&Admin>,
    routes: &[Arc<RouteConfig>],
) -> Option<String> {
    if matches!(
        listen.and_then(|l| l.tls.as_ref()),
        Some(ServerCert::WorkloadApi)
    ) {
        return Some("listen.tls.source".into());
    }
    if matches!(
        admin.and_then(|a| a.tls.as_ref()),
        Some(ServerCert::WorkloadApi)
    ) {
        return Some("admin.tls.source".into());
    }
    routes.iter().enumerate().find_map(|(i, r)| {
        let u = &r.upstream;
        if matches!(u.client_cert, Some(ClientCert::WorkloadApi)) {
            Some(format!("routes[{i}].upstream.client_cert"))
        } else if u.token_source == TokenSource::WorkloadApi {
            Some(format!("routes[{i}].upstream.token_source"))
        } else {
            None
        }
    })
}

/// `[spiffe]`: on when the section is present or a key uses the Workload API. The endpoint is
/// `workload_api`, else `$SPIFFE_ENDPOINT_SOCKET`. With it on, trust domains that no
/// `[trust."td"]` file configures may still come from the agent: `check` cannot see them
/// offline, so the problems it found for them become warnings.
pub(super) fn settings(
    c: &mut Collector<'_>,
    v: Option<&Value>,
    (listen, admin, routes): (Option<&Listen>, Option<&Admin>, &[Arc<RouteConfig>]),
) -> Option<Settings> {
    let raw = match v {
        Some(v) => Some(c.section::<raw::Spiffe>("spiffe", v)?),
        None => None,
    };
    let used_by = first_use(listen, admin, routes);
    if raw.is_none() && used_by.is_none() {
        return None;
    }
    let raw = raw.unwrap_or_default();
    let endpoint = match raw.workload_api.clone() {
        Some(e) => Some(e),
        None => std::env::var(ENDPOINT_ENV).ok().filter(|e| !e.is_empty()),
    };
    let Some(endpoint) = endpoint else {
        c.push(
            used_by.unwrap_or_else(|| "spiffe.workload_api".into()),
            format!("needs the Workload API: set [spiffe] workload_api (e.g. \"unix:///run/spire/agent.sock\") or ${ENDPOINT_ENV}"),
        );
        return None;
    };
    if !(endpoint.starts_with("unix:") || endpoint.starts_with("tcp:")) {
        c.push(
            "spiffe.workload_api",
            format!("{endpoint:?}: expected unix:///path/to/agent.sock or tcp://ip:port"),
        );
    }
    if raw.svid_hint.as_deref() == Some("") {
        c.push("spiffe.svid_hint", "must not be empty");
    }
    let startup_timeout = c.duration(
        "spiffe.startup_timeout",
        raw.startup_timeout.as_ref(),
        DEFAULT_STARTUP_TIMEOUT,
    );
    relax_trust_domains(c);
    Some(Settings {
        endpoint,
        svid_hint: raw.svid_hint,
        startup_timeout,
    })
}

/// Problems that only say "no `[trust]` file configures this trust domain" (the agent may), or
/// "admin over mTLS needs an x509_bundle" (the agent sends one), become warnings.
fn relax_trust_domains(c: &mut Collector<'_>) {
    let (soft, hard): (Vec<_>, Vec<_>) =
        std::mem::take(&mut c.problems).into_iter().partition(|p| {
            p.message.contains("section configures this trust domain")
                || p.message.contains("needs a [trust.\"…\"] x509_bundle")
        });
    c.problems = hard;
    for p in soft {
        c.warn(format!(
            "{}: {}; with [spiffe] it may come from the Workload API, which `check` cannot see offline",
            p.key, p.message
        ));
    }
}

#[cfg(test)]
mod tests;
