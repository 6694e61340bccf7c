//! The config file as written: serde structs that refuse unknown keys. Nothing here is
//! validated beyond its shape; `super::validate` turns these into the typed [`super::Config`].

use serde::Deserialize;

/// `[listen]`: the data listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub addr: String,
    pub tls: Option<ListenTls>,
    /// Time allowed for a client to send a complete request head (slowloris guard).
    pub header_timeout: Option<String>,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Option<String>,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Option<String>,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub drain_timeout: Option<String>,
    pub max_connections: Option<u64>,
    /// Total size of request headers (names + values) before 431.
    pub max_header_bytes: Option<String>,
    /// Number of request header fields before 431.
    pub max_headers: Option<u64>,
    /// HTTP/2 concurrent streams per connection.
    pub max_concurrent_streams: Option<u64>,
}

/// `[listen.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    pub cert: String,
    pub key: String,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub addr: Option<String>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub sink: Option<String>,
    /// Capacity of the queue between requests and the audit writer; overflow is dropped and counted.
    pub queue: Option<u64>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: Match,
    pub upstream: Upstream,
    #[serde(default)]
    pub limits: Limits,
}

/// `match = { path_prefix, methods, host }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub path_prefix: String,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
}

/// `[routes.upstream]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub url: String,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub ca: Option<String>,
}

/// `[routes.limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_body: Option<String>,
}

/// `[issuer]`: the tokens the gateway mints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    pub url: String,
    pub spiffe_id: String,
    /// First signs, all are published; empty or absent: an ephemeral dev key.
    #[serde(default)]
    pub keys: Vec<String>,
    pub ttl: Option<String>,
}
