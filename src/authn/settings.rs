//! `[trust."<td>"]` and `[credentials.<name>]` as checked from the config: what the
//! authenticators are built from (secrets named by where they live, never by value).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{LdapAdapter, WebhookAdapter};
use crate::identity::TrustDomain;
use crate::secret::SecretSource;

/// `[trust."<td>"]`
#[derive(Debug, Clone)]
pub struct TrustConfig {
    pub trust_domain: TrustDomain,
    pub x509_bundle: Option<PathBuf>,
    pub jwt_bundle: Option<PathBuf>,
}

/// One configured credential.
#[derive(Debug, Clone)]
pub struct CredentialConfig {
    pub name: Arc<str>,
    pub spec: CredentialSpec,
}

impl CredentialConfig {
    /// The credential's kind as written in config.
    pub fn kind(&self) -> crate::identity::Kind {
        use crate::identity::Kind;
        match self.spec {
            CredentialSpec::Mtls { .. } => Kind::Mtls,
            CredentialSpec::JwtSvid { .. } => Kind::JwtSvid,
            CredentialSpec::Webhook { .. } => Kind::Webhook,
            CredentialSpec::ApiKey(_) => Kind::ApiKey,
            CredentialSpec::Ldap(_) => Kind::Ldap,
        }
    }
}

/// What each kind needs.
#[derive(Debug, Clone)]
pub enum CredentialSpec {
    Mtls {
        trust_domains: Vec<TrustDomain>,
    },
    JwtSvid {
        trust_domains: Vec<TrustDomain>,
        audience: String,
        leeway: Option<Duration>,
        /// Also accept tokens minted by this gateway's `[issuer]`.
        trust_issuer: bool,
    },
    Webhook {
        adapter: Arc<WebhookAdapter>,
        secrets: SecretSource,
        identity: String,
        tolerance: Option<Duration>,
        /// The URL the provider calls (`scheme://host[:port]/path`), for adapters that sign it.
        public_url: Option<String>,
    },
    ApiKey(ApiKeySpec),
    Ldap(Box<LdapSpec>),
}

/// `kind = "api-key"`
#[derive(Debug, Clone)]
pub struct ApiKeySpec {
    pub header: http::HeaderName,
    pub query_param: Option<String>,
    pub keys_file: PathBuf,
}

/// `kind = "ldap"`, resolved against its adapter.
#[derive(Debug, Clone)]
pub struct LdapSpec {
    pub adapter: Arc<LdapAdapter>,
    pub url: String,
    pub starttls: bool,
    pub ca: Option<PathBuf>,
    pub bind_dn: Option<String>,
    pub bind_password: Option<SecretSource>,
    pub base_dn: String,
    pub dn_template: Option<String>,
    pub user_filter: Option<String>,
    pub group_attribute: Option<String>,
    /// `spiffe://…/{user}`
    pub identity: String,
    pub cache_ttl: Duration,
    pub cache_entries: usize,
    /// Failed binds per user per window before unknown passwords stop reaching the directory.
    pub max_failures: (u32, Duration),
    /// Failed logins per source address per window.
    pub max_source_failures: (u32, Duration),
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}
