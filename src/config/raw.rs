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
    /// A caller that takes none of its answer for this long is disconnected.
    pub send_timeout: Option<String>,
    pub max_connections: Option<u64>,
    /// Total size of request headers (names + values) before 431.
    pub max_header_bytes: Option<String>,
    /// Number of request header fields before 431.
    pub max_headers: Option<u64>,
    /// HTTP/2 concurrent streams per connection.
    pub max_concurrent_streams: Option<u64>,
    /// Failed authentications per source address (`"60/m"`), or `"off"`.
    pub max_auth_failures: Option<String>,
    /// Data-plane worker threads; absent: one per CPU available to the process.
    pub workers: Option<u64>,
    /// Time allowed for a request body the gateway reads whole (validation, signatures, forms).
    pub body_timeout: Option<String>,
    /// Slowest average rate (a size per second) accepted for such a body, or `"off"`.
    pub body_min_rate: Option<String>,
    /// Memory all such bodies may hold at once, in bytes.
    pub max_buffered_bodies: Option<String>,
    /// Memory such bodies from one source address may hold at once, in bytes.
    pub max_buffered_per_source: Option<String>,
    /// The HTTP/1.1 server core of the data listener: `native` (default) or `hyper`.
    pub http1_engine: Option<String>,
}

/// `[listen.tls]`, `[admin.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    /// `files` (default: `cert` + `key`) or `workload-api` (the `[spiffe]` SVID).
    pub source: Option<String>,
}

/// `[spiffe]`: the SPIFFE Workload API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spiffe {
    pub workload_api: Option<String>,
    pub svid_hint: Option<String>,
    pub startup_timeout: Option<String>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub addr: Option<String>,
    /// SPIFFE ID patterns of the operators' client certificates (admin over mTLS).
    pub allow: Option<Vec<String>>,
    /// The admin listener's own certificate (admin over mTLS); absent: `[listen.tls]`'s.
    pub tls: Option<ListenTls>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub sink: Option<String>,
    /// Capacity of the queue between requests and the audit writer; overflow is dropped and counted.
    pub queue: Option<u64>,
    /// Built-in rotation: start a new file once the current one reaches this size.
    pub max_size: Option<String>,
    /// Rotated files kept besides the current one (`audit.jsonl.1` … `.N`).
    pub max_files: Option<u64>,
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
    /// Credential names, tried in order. Absent or empty: an explicit pass-through route.
    #[serde(default)]
    pub accept: Vec<String>,
    /// SPIFFE ID patterns allowed on the route (shorthand for a policy).
    pub allow: Option<Vec<String>>,
    /// Cedar policy file.
    pub policy: Option<String>,
    /// Cedar policy file evaluated and audited, never enforced.
    pub shadow_policy: Option<String>,
    /// Migration plan name.
    pub plan: Option<String>,
    #[serde(default)]
    pub dangerous_allow_plaintext_credentials: bool,
    /// Request validation (`[routes.validate]`).
    pub validate: Option<Validate>,
}

/// `[routes.validate]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    #[serde(default)]
    pub content_types: Vec<String>,
    pub json_schema: Option<String>,
    pub max_json_depth: Option<u64>,
    pub max_query_bytes: Option<String>,
    pub xml: Option<ValidateXml>,
}

/// `[routes.validate.xml]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateXml {
    pub max_depth: Option<u64>,
    pub max_attributes: Option<u64>,
    pub max_bytes: Option<String>,
    #[serde(default)]
    pub allow_processing_instructions: bool,
}

/// `match = { path_prefix, methods, host, case_insensitive, path_parameters }` (or `[routes.match]`)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub path_prefix: String,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    /// Prefix matching ignores ASCII case (default false).
    #[serde(default)]
    pub case_insensitive: bool,
    /// `refuse` (default) or `strip-for-match`.
    pub path_parameters: Option<String>,
}

/// `[routes.upstream]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub url: String,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub ca: Option<String>,
    /// `aud` of the minted token.
    pub audience: Option<String>,
    /// `authorization` (Bearer), another header name, or `none`.
    pub token_header: Option<String>,
    /// `jwt-svid` (default) or `rfc9068`.
    pub token_profile: Option<String>,
    /// A legacy upstream's own credential, added towards it.
    pub inject: Option<Inject>,
    /// Further caller headers never forwarded (names, or prefixes ending in `*`).
    pub strip_headers: Option<Vec<String>>,
    /// `workload-api` or a PEM certificate file presented to the upstream.
    pub client_cert: Option<String>,
    /// The key of a `client_cert` file.
    pub client_key: Option<String>,
    /// The SPIFFE ID the upstream must present.
    pub server_spiffe_id: Option<String>,
    /// `workload-api`: send a JWT-SVID from the agent instead of a minted token.
    pub token_source: Option<String>,
}

/// `inject = { kind = "basic" | "header", … }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    pub kind: String,
    /// `basic`: the user name.
    pub username: Option<String>,
    /// `basic`: the password, from a file or an environment variable.
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    /// `header`: the header name, and its value from a file or an environment variable.
    pub name: Option<String>,
    pub value_file: Option<String>,
    pub value_env: Option<String>,
}

/// `[routes.limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_body: Option<String>,
    /// Per identity: `50/s`, `600/m`, `10000/h`.
    pub rate: Option<String>,
    pub burst: Option<u64>,
    /// All callers together.
    pub total_rate: Option<String>,
    pub total_burst: Option<u64>,
    /// Requests in flight to the upstream.
    pub concurrency: Option<u64>,
    /// `"replica"` (default) or `"cluster"` (shared through `[state] backend = "redis"`).
    pub scope: Option<String>,
    /// With `scope = "cluster"`: the fallback while Redis is unreachable is `rate ÷ this`.
    pub expected_replicas: Option<u64>,
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
    /// More hosts the well-known documents are served on, besides the `url` host.
    pub well_known_hosts: Option<Vec<String>>,
}

/// `[trust."<trust domain>"]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    pub x509_bundle: Option<String>,
    pub jwt_bundle: Option<String>,
}

/// `[token_exchange]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchange {
    pub accept: Vec<String>,
    /// Default `aud` of exchanged tokens (a request's `audience` parameter may ask for another
    /// listed one). An entry is a name, or a table with an explicit `allow` rule.
    pub audiences: Option<Vec<ExchangeAudience>>,
}

/// One `[token_exchange] audiences` entry: `"name"` or `{ audience = "name", allow = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExchangeAudience {
    Name(String),
    Rule(ExchangeAudienceRule),
}

/// `[[token_exchange.audiences]]`: who may receive this audience (SPIFFE ID patterns).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeAudienceRule {
    pub audience: String,
    pub allow: Vec<String>,
}

/// `[credentials.<name>]` with `kind = "mtls"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsCred {
    pub trust_domains: Vec<String>,
}

/// `kind = "jwt-svid"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSvidCred {
    pub trust_domains: Vec<String>,
    pub audience: String,
    pub leeway: Option<String>,
    /// Also accept tokens this gateway minted (verified with the `[issuer]` keys).
    #[serde(default)]
    pub trust_issuer: bool,
}

/// `kind = "webhook"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookCred {
    pub adapter: String,
    pub secrets_file: Option<String>,
    pub secrets_env: Option<String>,
    pub identity: String,
    pub tolerance: Option<String>,
    /// The URL the provider calls, for adapters that sign it (Twilio).
    pub public_url: Option<String>,
}

/// `kind = "api-key"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCred {
    pub header: Option<String>,
    pub query_param: Option<String>,
    pub keys_file: String,
}

/// `kind = "ldap"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapCred {
    pub adapter: String,
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    pub ca: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    pub bind_password_env: Option<String>,
    pub base_dn: String,
    pub dn_template: Option<String>,
    pub user_filter: Option<String>,
    pub group_attribute: Option<String>,
    pub identity: String,
    pub cache_ttl: Option<String>,
    pub cache_entries: Option<u64>,
    pub max_failures: Option<String>,
    pub max_source_failures: Option<String>,
    pub pool_size: Option<u64>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
}

/// `[state]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub backend: Option<String>,
    pub path: Option<String>,
    pub url: Option<String>,
    pub prefix: Option<String>,
    pub flush_every: Option<String>,
    /// `rediss://`: the CA that issued Redis's certificate (else the system roots).
    pub ca: Option<String>,
    /// `rediss://`: the gateway's client certificate and key (PEM), when Redis asks for one.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// The Redis password (AUTH), read from a file rather than written into the URL.
    pub password_file: Option<String>,
    /// How long usage and access rows are kept.
    pub retention: Option<String>,
}

/// `[migration]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    pub plans_dir: Option<String>,
    pub shared_threshold: Option<u32>,
    pub max_grace: Option<String>,
}
