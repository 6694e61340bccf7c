//! Wiring of the SPIFFE Workload API (`[spiffe]`, `docs/spiffe.md`): starting it, the listener
//! certificates it serves, and each route's upstream identity (client certificate, SPIFFE
//! validation of the upstream, JWT-SVIDs from the agent).

use std::sync::Arc;

use anyhow::Context as _;
use rustls::server::ResolvesServerCert;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::route::RouteConfig;
use crate::proxy::settings::{ClientCert, TokenSource};
use crate::reload::RELOAD_EVERY;
use crate::spiffe::store::TrustStore;
use crate::spiffe::upstream::SpiffeServerVerifier;
use crate::spiffe::workload::{CertSource, WorkloadApi};
use crate::token::agent::AgentTokens;
use crate::transport::settings::ServerCert;
use crate::transport::tls::{ReloadingCert, SourceResolver};

/// What the routes and listeners take from the Workload API.
#[derive(Debug, Clone)]
pub struct Spire {
    pub api: Arc<WorkloadApi>,
    /// Shared by every route with `token_source = "workload-api"` (cached per audience).
    pub tokens: Arc<AgentTokens>,
}

/// Connect to the Workload API when `[spiffe]` is on: waits up to `startup_timeout` for the
/// first SVID and bundles, then follows the streams. Each configuration generation attaches its
/// trust store ([`WorkloadApi::attach`]) to receive the bundles.
pub async fn start(
    config: &Config,
    metrics: &Arc<Metrics>,
    watchers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Option<Spire>> {
    let Some(settings) = config.spiffe.clone() else {
        return Ok(None);
    };
    tracing::info!(endpoint = %settings.endpoint, timeout = ?settings.startup_timeout, "waiting for the Workload API");
    let api = WorkloadApi::start(settings, metrics.clone())
        .await
        .context("[spiffe] workload_api")?;
    watchers.extend(api.spawn_followers());
    Ok(Some(Spire {
        tokens: Arc::new(AgentTokens::new(api.clone())),
        api,
    }))
}

/// The certificate a listener section serves: files (reloaded when they change) or the SVID.
pub fn server_cert(
    source: &ServerCert,
    section: &str,
    spire: Option<&Spire>,
    metrics: &Arc<Metrics>,
    watchers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Arc<dyn ResolvesServerCert>> {
    Ok(match source {
        ServerCert::Files(files) => {
            let cert = Arc::new(
                ReloadingCert::new(files.clone(), metrics.clone())
                    .with_context(|| format!("loading [{section}]"))?,
            );
            watchers.push(cert.spawn_watcher(RELOAD_EVERY));
            cert
        }
        ServerCert::WorkloadApi => {
            let api = spire
                .map(|s| s.api.clone())
                .with_context(|| format!("[{section}] source = \"workload-api\" needs [spiffe]"))?;
            Arc::new(SourceResolver(api))
        }
    })
}

/// A route's upstream identity: the client certificate, the SPIFFE verifier and the agent's
/// tokens, as its config asks.
pub fn upstream_identity(
    rc: &RouteConfig,
    trust: &Arc<TrustStore>,
    clock: &Arc<dyn Clock>,
    spire: Option<&Spire>,
    metrics: &Arc<Metrics>,
    watchers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<crate::proxy::Identity> {
    let u = &rc.upstream;
    let need = |what: &str| {
        spire.cloned().with_context(|| {
            format!(
                "route {}: upstream.{what} = \"workload-api\" needs [spiffe]",
                rc.name
            )
        })
    };
    let client_cert: Option<Arc<dyn CertSource>> = match &u.client_cert {
        None => None,
        Some(ClientCert::WorkloadApi) => Some(need("client_cert")?.api),
        Some(ClientCert::Files(files)) => {
            let cert = Arc::new(
                ReloadingCert::new(files.clone(), metrics.clone())
                    .with_context(|| format!("route {}: upstream.client_cert", rc.name))?,
            );
            watchers.push(cert.spawn_watcher(RELOAD_EVERY));
            Some(cert)
        }
    };
    let verifier = u.server_spiffe_id.as_ref().map(|id| {
        Arc::new(SpiffeServerVerifier::new(
            id.clone(),
            trust.clone(),
            clock.clone(),
        )) as Arc<dyn rustls::client::danger::ServerCertVerifier>
    });
    let agent_tokens = match u.token_source {
        TokenSource::Issuer => None,
        TokenSource::WorkloadApi => Some(need("token_source")?.tokens),
    };
    Ok(crate::proxy::Identity {
        client_cert,
        verifier,
        agent_tokens,
    })
}

/// The admin listener's health state; `/readyz` reports the Workload API when it is in use.
pub fn health(spire: Option<&Spire>) -> crate::admin::Health {
    crate::admin::Health {
        workload: spire.map(|s| s.api.clone()),
        ..Default::default()
    }
}
