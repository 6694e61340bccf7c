//! Build the configured credentials into [`Authenticator`]s, once, at start.
//!
//! Secrets (webhook secrets, LDAP search passwords, API key files) are read here, not when the
//! config is validated, so a config value never holds a secret.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};

use super::jwt_svid::JwtSvidAuthenticator;
use super::mtls::MtlsAuthenticator;
use super::settings::{CredentialConfig, CredentialSpec, LdapSpec, TrustConfig};
use super::webhook::{MemoryReplayGuard, ReplayGuard, WebhookAuthenticator, WebhookSecret};
use super::Authenticator;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::spiffe::{JwtSvidSettings, TrustSource, TrustStore};

/// Messages remembered for webhook replay protection (embedded state).
pub const REPLAY_CAPACITY: usize = 100_000;

/// Every credential by name, plus the trust store they share.
#[derive(Debug)]
pub struct Credentials {
    pub by_name: HashMap<Arc<str>, Arc<dyn Authenticator>>,
    /// The `[trust]` bundles, reloaded on change (watcher started by the server).
    pub trust: Arc<TrustStore>,
    /// JWT-SVID authenticators, for revocation.
    pub jwt_svid: Vec<Arc<JwtSvidAuthenticator>>,
    /// LDAP authenticators by name, for revocation (their bind caches).
    pub ldap: HashMap<Arc<str>, Arc<super::ldap::LdapAuthenticator>>,
    /// File watchers started for credentials (API key files); abort them at shutdown.
    pub watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Credentials {
    /// The authenticators of a list of names (a route's `accept`), in order.
    pub fn pick(&self, names: &[Arc<str>]) -> anyhow::Result<Vec<Arc<dyn Authenticator>>> {
        names
            .iter()
            .map(|n| {
                self.by_name
                    .get(n)
                    .cloned()
                    .ok_or_else(|| anyhow!("credential {n} is not configured"))
            })
            .collect()
    }
}

/// The shared run-time pieces authenticators may need.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Replay memory shared by webhook credentials.
    pub replay: Option<Arc<dyn ReplayGuard>>,
    /// The gateway's own token issuer keys, for `trust_issuer = true`.
    pub issuer_keys: Option<Arc<dyn crate::spiffe::jwt::IssuerJwks>>,
    /// The state store: LDAP credentials keep their password verifiers there.
    pub state: Option<Arc<dyn crate::state::StateStore>>,
    /// The credentials of the configuration being replaced by a reload: LDAP credentials of
    /// the same name keep their failure counters.
    pub previous: Option<Arc<Credentials>>,
}

/// Build every credential of `credentials`, with the `trust` bundles they share.
pub fn build(
    trust: &[TrustConfig],
    credentials: &[Arc<CredentialConfig>],
    shared: Shared,
) -> anyhow::Result<Credentials> {
    let sources: Vec<TrustSource> = trust
        .iter()
        .map(|t| TrustSource {
            trust_domain: t.trust_domain.clone(),
            x509_bundle: t.x509_bundle.clone(),
            jwt_bundle: t.jwt_bundle.clone(),
        })
        .collect();
    let trust = Arc::new(
        TrustStore::load(&sources, shared.metrics.clone())
            .map_err(|e| anyhow!("loading [trust] bundles: {e}"))?,
    );
    let replay = shared
        .replay
        .clone()
        .unwrap_or_else(|| Arc::new(MemoryReplayGuard::new(REPLAY_CAPACITY)));
    let mut by_name: HashMap<Arc<str>, Arc<dyn Authenticator>> = HashMap::new();
    let mut jwt_svid = Vec::new();
    let mut watchers = Vec::new();
    let mut ldaps = HashMap::new();
    for cred in credentials {
        let name = cred.name.clone();
        let built: Arc<dyn Authenticator> = match &cred.spec {
            CredentialSpec::Mtls { trust_domains } => Arc::new(MtlsAuthenticator::new(
                name.clone(),
                trust.clone(),
                trust_domains.clone(),
            )),
            CredentialSpec::JwtSvid {
                trust_domains,
                audience,
                leeway,
                trust_issuer,
            } => {
                let mut settings = JwtSvidSettings::new(trust_domains.clone(), audience.clone());
                if let Some(l) = leeway {
                    settings.leeway = *l;
                }
                let mut a = JwtSvidAuthenticator::new(name.clone(), trust.clone(), settings);
                if *trust_issuer {
                    let keys = shared.issuer_keys.clone().ok_or_else(|| {
                        anyhow!("credential {name}: trust_issuer needs an [issuer] section")
                    })?;
                    a = a.trusting_issuer(keys);
                }
                let a = Arc::new(a);
                jwt_svid.push(a.clone());
                a
            }
            CredentialSpec::Webhook {
                adapter,
                secrets,
                identity,
                tolerance,
                public_url,
            } => {
                let text = secrets
                    .read()
                    .map_err(|e| anyhow!("credential {name}: {e}"))?;
                let secrets = WebhookSecret::from_lines(&text);
                let verifier =
                    super::webhook::WebhookVerifier::new(adapter.clone(), secrets, *tolerance)
                        .with_context(|| format!("credential {name}"))?;
                Arc::new(
                    WebhookAuthenticator::new(
                        name.clone(),
                        identity.clone(),
                        verifier,
                        replay.clone(),
                    )
                    .with_public_url(public_url.clone()),
                )
            }
            CredentialSpec::ApiKey(spec) => {
                let store = Arc::new(
                    super::apikey::KeyStore::load(&spec.keys_file)
                        .map_err(|e| anyhow!("credential {name}: keys_file:\n{e}"))?,
                );
                watchers.push(crate::reload::spawn_watcher(
                    &store,
                    crate::reload::RELOAD_EVERY,
                ));
                Arc::new(super::apikey::ApiKeyAuthenticator::new(
                    name.clone(),
                    spec.header.clone(),
                    spec.query_param.clone(),
                    store,
                ))
            }
            CredentialSpec::Ldap(spec) => {
                let mut l = ldap(&name, spec, shared.state.clone())?;
                if let Some(old) = shared.previous.as_ref().and_then(|p| p.ldap.get(&name)) {
                    l = l.keeping_counters_of(old);
                }
                let l = Arc::new(l);
                ldaps.insert(name.clone(), l.clone());
                l
            }
        };
        by_name.insert(name, built);
    }
    Ok(Credentials {
        by_name,
        trust,
        jwt_svid,
        ldap: ldaps,
        watchers,
    })
}

/// `kind = "ldap"`: the adapter preset, the credential's overrides, the search password read now.
fn ldap(
    name: &Arc<str>,
    spec: &LdapSpec,
    state: Option<Arc<dyn crate::state::StateStore>>,
) -> anyhow::Result<super::ldap::LdapAuthenticator> {
    use super::ldap::{BindSecret, LdapAuthenticator, LdapSettings, Profile};
    let mut profile = Profile::from_adapter(&spec.adapter);
    if let Some(t) = &spec.dn_template {
        profile.dn_template = Some(t.clone());
    }
    if let Some(f) = &spec.user_filter {
        profile.user_filter = Some(f.clone());
    }
    if let Some(g) = &spec.group_attribute {
        profile.group_attribute = Some(g.clone());
    }
    let identity = super::identity::IdentityTemplate::parse(&spec.identity)
        .map_err(|e| anyhow!("credential {name}: identity: {e}"))?;
    let mut s = LdapSettings::new(spec.url.clone(), spec.base_dn.clone(), profile, identity);
    s.starttls = spec.starttls;
    s.ca_file = spec.ca.clone();
    s.bind_dn = spec.bind_dn.clone();
    s.bind_password = spec
        .bind_password
        .as_ref()
        .map(|p| p.read().map(BindSecret::new))
        .transpose()
        .map_err(|e| anyhow!("credential {name}: bind_password: {e}"))?;
    s.cache_ttl = spec.cache_ttl;
    s.cache_entries = spec.cache_entries;
    (s.max_failures, s.failure_window) = spec.max_failures;
    s.max_source_failures = spec.max_source_failures.0;
    s.pool_size = spec.pool_size;
    s.connect_timeout = spec.connect_timeout;
    s.op_timeout = spec.timeout;
    s.verifiers = state;
    LdapAuthenticator::new(name.clone(), s).map_err(|e| anyhow!("credential {name}: {e}"))
}
