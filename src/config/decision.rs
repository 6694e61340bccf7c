//! `[decision]`: the forward-auth / ext_authz endpoint on the data listener
//! (docs/decision-mode.md).

use serde::Deserialize;
use serde_json::Value;

use super::validate::Collector;
use super::Listen;
use crate::pipeline::decision::{Cidr, DecisionSettings};

/// Where front proxies send decision requests unless configured otherwise.
pub const DEFAULT_PATH_PREFIX: &str = "/.portcullis/decide";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecision {
    path_prefix: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    trusted_proxy_ids: Option<Vec<String>>,
    client_cert_header: Option<String>,
}

/// Check `[decision]`; `None` when absent (or invalid, with the problems collected).
pub(super) fn decision(
    c: &mut Collector<'_>,
    v: Option<&Value>,
    listen: Option<&Listen>,
) -> Option<DecisionSettings> {
    let raw: RawDecision = c.section("decision", v?)?;
    let before = c.problems.len();
    let path_prefix = raw
        .path_prefix
        .unwrap_or_else(|| DEFAULT_PATH_PREFIX.to_owned());
    let canonical =
        crate::routing::path::normalize(&path_prefix).is_ok_and(|p| p == path_prefix.as_str());
    if !path_prefix.starts_with('/')
        || path_prefix.len() < 2
        || path_prefix.ends_with('/')
        || path_prefix.contains(['?', '#', '%', ';'])
        || !canonical
    {
        c.push(
            "decision.path_prefix",
            format!("{path_prefix:?} must be a canonical absolute path without a trailing slash, `?`, `#`, `%` or `;` (e.g. \"{DEFAULT_PATH_PREFIX}\")"),
        );
    }
    let mut trusted_proxies = Vec::new();
    match raw.trusted_proxies {
        None => c.push(
            "decision.trusted_proxies",
            "required: the front proxies' addresses or CIDR blocks (e.g. [\"10.0.0.0/8\"]); anyone else could describe any request",
        ),
        Some(list) if list.is_empty() => c.push(
            "decision.trusted_proxies",
            "empty: no front proxy could ask for a decision",
        ),
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                match Cidr::parse(s) {
                    Ok(cidr) => {
                        if cidr.contains_everything() {
                            c.warn(format!("decision.trusted_proxies[{i}] {s:?} trusts every address: any client that reaches the data listener can describe requests and have them decided"));
                        }
                        trusted_proxies.push(cidr);
                    }
                    Err(e) => c.push(format!("decision.trusted_proxies[{i}]"), e),
                }
            }
        }
    }
    let trusted_proxy_ids = raw.trusted_proxy_ids.unwrap_or_default();
    for (i, p) in trusted_proxy_ids.iter().enumerate() {
        if let Err(e) = crate::authz::policy::allow::check_pattern(p) {
            c.push(format!("decision.trusted_proxy_ids[{i}]"), e);
        }
    }
    if !trusted_proxy_ids.is_empty() && listen.is_some_and(|l| l.tls.is_none()) {
        c.push(
            "decision.trusted_proxy_ids",
            "needs [listen.tls] (the front proxies' client certificates arrive in the TLS handshake)",
        );
    }
    let client_cert_header = match raw.client_cert_header {
        None => None,
        Some(h) => match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                c.push(
                    "decision.client_cert_header",
                    format!("{h:?} is not a header name"),
                );
                None
            }
        },
    };
    (c.problems.len() == before).then_some(DecisionSettings {
        path_prefix,
        trusted_proxies,
        trusted_proxy_ids,
        client_cert_header,
    })
}
