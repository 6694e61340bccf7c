//! `[routes.upstream]` as the proxy (and the stages that mint and inject for it) use it.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::SecretSource;

/// Where the minted token goes in the upstream request (`upstream.token_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenHeader {
    /// `Authorization: Bearer …`
    Authorization,
    /// The bare token in this header.
    Named(http::HeaderName),
    /// No token (the upstream gets an injected credential or nothing).
    None,
}

/// A legacy upstream's own credential (`upstream.inject`).
#[derive(Debug, Clone)]
pub enum InjectConfig {
    Basic {
        username: String,
        password: SecretSource,
    },
    Header {
        name: http::HeaderName,
        value: SecretSource,
    },
}

/// `[routes.upstream]`
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Original text, for display.
    pub url: String,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the upstream URL without a trailing slash (usually empty).
    pub base_path: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub ca: Option<PathBuf>,
    /// `aud` of minted tokens (required when the route mints).
    pub audience: Option<String>,
    pub token_header: TokenHeader,
    pub token_profile: crate::identity::profile::Profile,
    pub inject: Option<InjectConfig>,
    /// `strip_headers`: caller headers never forwarded, on top of the built-in list.
    pub strip_headers: crate::proxy::headers::StripList,
    /// `client_cert` (+ `client_key`): the certificate presented to an https upstream.
    pub client_cert: Option<ClientCert>,
    /// `server_spiffe_id`: the upstream must present this X.509-SVID (no host name check).
    pub server_spiffe_id: Option<crate::identity::SpiffeId>,
    /// `token_source`: where the upstream token comes from.
    pub token_source: TokenSource,
}

/// `client_cert`: what the gateway presents to an upstream that asks for a certificate.
#[derive(Debug, Clone)]
pub enum ClientCert {
    /// `"workload-api"`: the gateway's own X.509-SVID, rotated for new connections.
    WorkloadApi,
    /// A PEM certificate chain and key (`client_cert` + `client_key`), reloaded when they change.
    Files(crate::conn::TlsFiles),
}

/// `token_source`: who makes the token sent upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenSource {
    /// The gateway mints it with its `[issuer]` keys (default).
    #[default]
    Issuer,
    /// `"workload-api"`: a JWT-SVID of the gateway's own identity, fetched from the agent for
    /// the route's `audience`.
    WorkloadApi,
}
