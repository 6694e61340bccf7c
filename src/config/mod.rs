//! Configuration: loading (TOML file + `PORTCULLIS__SECTION__KEY` environment overrides, via the
//! `config` crate), shape checking (unknown keys are errors) and one validation pass that turns the
//! raw file into a typed [`Config`], reporting every problem at once as `file: key: message`.

mod admin;
mod creds;
mod decision;
#[cfg(test)]
mod docs_drift;
mod env;
mod exposure;
mod issuer;
mod listen;
mod plans;
#[cfg(test)]
pub(crate) mod props;
mod raw;
mod reload;
mod routes;
mod spiffe;
mod state;
mod telemetry;
mod upstream;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditSink;
use crate::diag::{Invalid, Problem};
use crate::pipeline::route::RouteConfig;
use crate::transport::settings::{Listen, ServerCert};
pub use creds::{
    ApiKeySpec, CredentialConfig, CredentialSpec, LdapSpec, TokenExchangeConfig, TrustConfig,
};
pub use reload::ReloadSettings;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (for messages).
    pub source: PathBuf,
    pub listen: Listen,
    pub admin: Admin,
    pub audit: Audit,
    /// `[issuer]`, when the gateway mints tokens and publishes its JWKS.
    pub issuer: Option<IssuerConfig>,
    /// `[trust."<td>"]`, in name order.
    pub trust: Vec<TrustConfig>,
    /// `[credentials.<name>]`, in name order.
    pub credentials: Vec<Arc<CredentialConfig>>,
    /// `[token_exchange]`: `POST /oauth2/token` is served only when set.
    pub token_exchange: Option<TokenExchangeConfig>,
    /// Shipped adapters plus `adapters_dir`.
    pub adapters: Arc<crate::adapters::Adapters>,
    pub routes: Vec<Arc<RouteConfig>>,
    /// `[state]`.
    pub state: StateConfig,
    /// Migration plans (`[migration] plans_dir`).
    pub plans: Arc<crate::migration::Plans>,
    /// `[telemetry]`: traces (off without `otlp_endpoint`).
    pub telemetry: crate::telemetry::Settings,
    /// `[decision]`: the forward-auth endpoint, when configured.
    pub decision: Option<crate::pipeline::decision::DecisionSettings>,
    /// `[reload]`: the polled watch of this file and the plans directory.
    pub reload: reload::ReloadSettings,
    /// Things that are allowed but unwise (plain HTTP, …); `check` prints them, `serve` logs them.
    pub warnings: Vec<String>,
    /// `[spiffe]`: the Workload API, when anything uses it (`docs/spiffe.md`).
    pub spiffe: Option<crate::spiffe::workload::Settings>,
}

/// `[admin]`
#[derive(Debug, Clone)]
pub struct Admin {
    pub addr: SocketAddr,
    /// `allow`: SPIFFE ID patterns (`*` = any characters). Non-empty: the admin listener speaks
    /// TLS with the `[admin.tls]` certificate (else `[listen.tls]`'s), requests client
    /// certificates verified against the `[trust]` bundles, and serves `/admin/v1/*` and the
    /// dashboard only to matching IDs.
    pub allow: Vec<String>,
    /// `[admin.tls]`: the admin listener's own certificate (only with `allow`).
    pub tls: Option<ServerCert>,
}

/// `[audit]`
#[derive(Debug, Clone)]
pub struct Audit {
    pub sink: AuditSink,
    pub queue: usize,
    /// `max_size`/`max_files`: built-in rotation of a file sink (`None`: the file grows until
    /// an external tool rotates it and SIGHUP reopens it).
    pub rotation: Option<crate::audit::Rotation>,
}

/// `[state]`: where usage, inventory and revocations live.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// `[state] backend` (with its `url` and `prefix` for redis).
    pub backend: StateBackend,
    /// The embedded backend's SQLite file; `None`: memory only (lost at exit). Unused by redis.
    pub path: Option<PathBuf>,
    /// How often in-memory counts are written out (and, for redis, how often the revocation set
    /// is re-read; three intervals without a read make the store unavailable).
    pub flush_every: Duration,
    /// `rediss://`: the CA, client certificate and password files (redis only).
    pub tls: crate::state::RedisTls,
    /// `retention`: usage and access rows older than this are deleted.
    pub retention: Duration,
}

/// `[state] backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    /// `"embedded"` (default): memory plus `path`, one replica.
    Embedded,
    /// `"redis"`: shared by every replica. The URL may hold a password: it redacts itself in
    /// `Debug`/`Display`.
    Redis {
        url: crate::state::RedisUrl,
        /// Key prefix (default `portcullis:`), so several gateways can share one Redis.
        prefix: String,
    },
}

/// `[issuer]`
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// `iss` of minted tokens; also where the JWKS is published (`{url}/.well-known/jwks.json`).
    pub url: String,
    /// `act.sub` of minted tokens: the gateway's own SPIFFE ID.
    pub spiffe_id: String,
    /// PKCS#8 PEM files; the first signs. Empty: an ephemeral key (development only).
    pub keys: Vec<PathBuf>,
    pub ttl: Duration,
    /// Canonical hosts the well-known documents are served on: the `url` host, then
    /// `well_known_hosts`. On any other host those paths are routed like any other.
    pub well_known_hosts: Vec<String>,
}

/// Defaults, in one place so docs, `check` and code agree.
pub mod defaults {
    use std::time::Duration;
    pub const ADMIN_ADDR: &str = "127.0.0.1:9090";
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// nginx's `send_timeout` default.
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const MAX_HEADER_BYTES: usize = 32 * 1024;
    pub const MAX_HEADERS: usize = 100;
    pub const MAX_CONCURRENT_STREAMS: u32 = 100;
    pub const AUDIT_QUEUE: usize = 8192;
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
    pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const MAX_BODY: u64 = 1024 * 1024;
    pub const TOKEN_TTL: Duration = Duration::from_secs(300);
    /// Failed authentications per source address before it is throttled.
    pub const MAX_AUTH_FAILURES: (u32, Duration) = (60, Duration::from_secs(60));
    /// A request body read whole must arrive within this time...
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// ...and no slower than this many bytes a second on average.
    pub const BODY_MIN_RATE: u64 = 1024;
    /// Memory all bodies being read whole may hold together, and those from one source.
    pub const MAX_BUFFERED_BODIES: u64 = 128 * 1024 * 1024;
    pub const MAX_BUFFERED_PER_SOURCE: u64 = 16 * 1024 * 1024;
    /// `[state] retention`: usage and access rows are kept this long (longer than any plan's
    /// exit-criteria window, which is checked).
    pub const STATE_RETENTION: Duration = crate::state::DEFAULT_RETENTION;
}

/// Where the config file is: `-c FILE`, else `$PORTCULLIS_CONFIG`, else `./portcullis.toml`.
pub fn locate(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os("PORTCULLIS_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("portcullis.toml"),
    }
}

/// Load, merge environment overrides, and validate.
pub fn load(path: &Path) -> Result<Config, Invalid> {
    let file = path.display().to_string();
    let problem = |key: &str, message: String| Problem {
        file: file.clone(),
        key: key.to_string(),
        message,
    };
    if !path.is_file() {
        return Err(Invalid(vec![problem(
            "-",
            "cannot read file: not found or not a regular file".into(),
        )]));
    }
    // Overrides of array elements (`PORTCULLIS__ROUTES__0__NAME`) are applied by `env`: the
    // `config` crate would turn the array into a table.
    let overrides = env::split(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("PORTCULLIS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides.plain)),
        )
        .build()
        .map_err(|e| Invalid(vec![problem("-", e.to_string())]))?;
    let mut tree: serde_json::Value = built
        .try_deserialize()
        .map_err(|e| Invalid(vec![problem("-", e.to_string())]))?;
    let bad = env::apply_indexed(&mut tree, &overrides.indexed, &file);
    if !bad.is_empty() {
        return Err(Invalid(bad));
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    validate::validate(&tree, &file, &base, path)
}

/// Parse config text directly (tests and the demo): no environment overrides.
pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, Invalid> {
    let file = origin.display().to_string();
    let value: toml::Value = toml::from_str(text).map_err(|e| {
        Invalid(vec![Problem {
            file: file.clone(),
            key: "-".into(),
            message: e.message().to_string(),
        }])
    })?;
    let tree = serde_json::to_value(value).map_err(|e| {
        Invalid(vec![Problem {
            file: file.clone(),
            key: "-".into(),
            message: e.to_string(),
        }])
    })?;
    let base = origin.parent().map(Path::to_path_buf).unwrap_or_default();
    validate::validate(&tree, &file, &base, origin)
}
