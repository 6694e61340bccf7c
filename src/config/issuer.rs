//! `[issuer]`: the minted tokens' issuer, keys and well-known hosts.

use std::path::{Path, PathBuf};

use super::validate::{resolve, Collector};
use super::{defaults, raw, IssuerConfig};
use crate::routing::canonical;

pub(super) fn issuer(c: &mut Collector<'_>, base: &Path, i: raw::Issuer) -> Option<IssuerConfig> {
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
        c.warn("issuer.url is http://: verifiers fetch the JWKS from it; use https in production");
    }
    if let Err(e) = crate::identity::SpiffeId::parse(&i.spiffe_id) {
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
        c.warn("issuer.keys is empty: an ephemeral signing key is generated at start (development only; every replica would publish a different key)");
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
