//! `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration` (`docs/http.md`).
//!
//! Both documents are rendered once per key generation and handed out as shared bytes: a request
//! costs two atomic loads and a reference-count increment, never a serialization.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::Serialize;

use super::keys::{Alg, PublicJwk};
use super::keyset::{KeyRing, KeySet};
use crate::identity::Kind;

/// How long relying parties may cache the JWKS (`Cache-Control: public, max-age=300`).
///
/// # Key rotation
///
/// A verifier knows a key only once it has fetched a JWKS listing it, and it may keep a fetched
/// JWKS for up to `max-age`. So a key must be published before it signs, and stay published until
/// every token it signed has expired. The key *files* are watched and reloaded in place; a change
/// to the `[issuer] keys` *list* takes effect when a replica restarts, and each step below counts
/// from the moment every replica has it.
///
/// 1. Generate the new key on every replica's key volume:
///    `portcullis keys generate --alg es256 --out keys/next.pem`.
/// 2. Publish it **second**: `keys = ["keys/current.pem", "keys/next.pem"]`. The old key still
///    signs.
/// 3. Wait at least `max-age` (300 s), plus the refresh period of any bundle distribution in
///    between (for example a SPIFFE bundle endpoint), so every verifier's cached JWKS holds the
///    new key.
/// 4. Promote it: `keys = ["keys/next.pem", "keys/current.pem"]`. New tokens are signed with it,
///    and cached tokens signed by the old key are no longer handed out.
/// 5. Wait at least the longest `[issuer] ttl` plus the verifiers' clock-skew leeway (typically
///    60 s): the last token signed by the old key has then expired.
/// 6. Remove the old key from `keys` and delete its file. Verifiers drop it within `max-age`.
///
/// If a key is compromised, skip the waits: put the new key first and remove the compromised one
/// in the same change. Tokens signed by it stop verifying as verifiers refresh (within
/// `max-age`); callers are simply given fresh tokens. `jwt-svid` routes need an ES256 signer: an
/// EdDSA key cannot be promoted while any route uses that profile (the load is refused).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(JWKS_MAX_AGE_SECS);

/// [`JWKS_MAX_AGE`] in seconds.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// The `Cache-Control` value for both documents (matches [`JWKS_MAX_AGE`]).
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// `Content-Type` of both documents.
pub const CONTENT_TYPE: &str = "application/json";

/// RFC 8693 token exchange, the one grant the token endpoint supports.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Path of the JWKS on the data listener.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Path of the discovery document on the data listener.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Path of the token endpoint on the data listener.
pub const TOKEN_PATH: &str = "/oauth2/token";

#[derive(Serialize)]
struct Jwks<'a> {
    keys: Vec<&'a PublicJwk>,
}

/// The JWKS document: every key of the ring, signer first.
pub fn render_jwks(ring: &KeyRing) -> Bytes {
    let doc = Jwks {
        keys: ring.keys().iter().map(|k| k.public_jwk()).collect(),
    };
    serde_json::to_vec(&doc).map_or_else(|_| Bytes::from_static(b"{\"keys\":[]}"), Bytes::from)
}

#[derive(Serialize)]
struct Discovery<'a> {
    issuer: &'a str,
    jwks_uri: String,
    /// Only with `[token_exchange]`: advertising an endpoint that answers 404 (or, worse, is
    /// routed to an upstream) would send clients' credentials somewhere unintended.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant_types_supported: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint_auth_methods_supported: Option<&'a [&'static str]>,
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: Vec<&'static str>,
}

/// The RFC 8414 / OpenID Connect Discovery name of how a caller authenticates at the token
/// endpoint with a credential of this kind, where a standard name exists.
pub const fn auth_method(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Mtls => Some("tls_client_auth"),
        Kind::Ldap => Some("client_secret_basic"),
        Kind::JwtSvid | Kind::ApiKey | Kind::Webhook => None,
    }
}

/// The discovery document. `issuer` is kept verbatim (it must equal `iss`); the endpoint URLs are
/// built on it without a doubled slash. `auth_methods` is `None` without `[token_exchange]`: then
/// no token endpoint (nor its grant types and auth methods) is advertised.
pub fn render_discovery(
    issuer: &str,
    auth_methods: Option<&[&'static str]>,
    ring: &KeyRing,
) -> Bytes {
    let base = issuer.trim_end_matches('/');
    let mut algs: Vec<&'static str> = Vec::new();
    for alg in ring.keys().iter().map(|k| k.alg()) {
        if !algs.contains(&alg.as_str()) {
            algs.push(alg.as_str());
        }
    }
    if algs.is_empty() {
        algs.push(Alg::Es256.as_str());
    }
    let doc = Discovery {
        issuer,
        jwks_uri: format!("{base}{JWKS_PATH}"),
        token_endpoint: auth_methods.map(|_| format!("{base}{TOKEN_PATH}")),
        grant_types_supported: auth_methods.map(|_| [TOKEN_EXCHANGE_GRANT]),
        token_endpoint_auth_methods_supported: auth_methods,
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: algs,
    };
    serde_json::to_vec(&doc).map_or_else(|_| Bytes::new(), Bytes::from)
}

struct Docs {
    generation: u64,
    jwks: Bytes,
    discovery: Bytes,
}

/// Both documents for one issuer, re-rendered when the key set changes generation.
pub struct WellKnown {
    issuer: Arc<str>,
    /// `None`: no `[token_exchange]`.
    auth_methods: Option<Vec<&'static str>>,
    /// Canonical hosts the documents are served on (`[issuer] url` host, `well_known_hosts`).
    hosts: Vec<String>,
    keys: Arc<KeySet>,
    docs: ArcSwap<Docs>,
}

impl std::fmt::Debug for WellKnown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WellKnown")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl WellKnown {
    /// Render both documents for `issuer` (`[issuer] url`). `token_exchange` are the kinds of the
    /// credentials `[token_exchange] accept` lists (they decide the advertised auth methods);
    /// `None` when there is no `[token_exchange]`.
    pub fn new(issuer: &str, keys: Arc<KeySet>, token_exchange: Option<&[Kind]>) -> Self {
        let auth_methods = token_exchange.map(|kinds| {
            let mut methods = Vec::new();
            for m in kinds.iter().filter_map(|k| auth_method(*k)) {
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
            methods
        });
        let issuer: Arc<str> = issuer.into();
        let docs = Self::render(&issuer, auth_methods.as_deref(), &keys.current());
        WellKnown {
            issuer,
            auth_methods,
            hosts: Vec::new(),
            keys,
            docs: ArcSwap::from_pointee(docs),
        }
    }

    /// Serve the documents on these canonical hosts only (none until set).
    #[must_use]
    pub fn on_hosts(mut self, hosts: Vec<String>) -> Self {
        self.hosts = hosts;
        self
    }

    /// Whether a request for this (canonical) host gets the gateway's documents. Elsewhere the
    /// paths belong to the upstreams: a legacy system may publish its own.
    pub fn serves_host(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| self.hosts.iter().any(|s| s == h))
    }

    fn render(issuer: &str, auth_methods: Option<&[&'static str]>, ring: &KeyRing) -> Docs {
        Docs {
            generation: ring.generation(),
            jwks: render_jwks(ring),
            discovery: render_discovery(issuer, auth_methods, ring),
        }
    }

    fn current(&self) -> Arc<Docs> {
        let docs = self.docs.load_full();
        let ring = self.keys.current();
        if docs.generation == ring.generation() {
            return docs;
        }
        // First request after a reload (or a refresh racing with one): render once and keep.
        let fresh = Arc::new(Self::render(
            &self.issuer,
            self.auth_methods.as_deref(),
            &ring,
        ));
        self.docs.store(fresh.clone());
        fresh
    }

    /// Re-render now if the keys changed (call after a successful [`KeySet::poll`] so the first
    /// request after a reload does not pay for it). Otherwise a no-op.
    pub fn refresh(&self) {
        let _ = self.current();
    }

    /// The body of `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> Bytes {
        self.current().jwks.clone()
    }

    /// The body of `GET /.well-known/openid-configuration`.
    pub fn discovery(&self) -> Bytes {
        self.current().discovery.clone()
    }
}

#[cfg(test)]
mod tests;
