//! Starting and stopping the gateway: builds every run-time piece from a validated [`Config`],
//! binds the listeners, and drains on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod cluster;

use crate::admin::{Admin, Health};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::route::{Route, Router};
use crate::pipeline::{Gateway, LocalRoute};
use crate::proxy::settings::InjectConfig;
use crate::proxy::Upstream;
use crate::reload::RELOAD_EVERY;
use crate::secret::SecretSource;
use crate::spiffe::jwt::IssuerJwks;
use crate::token::jwks::WellKnown;
use crate::token::keyset::{KeySet, SignerRequirement};
use crate::token::{Issuer, TokenCache};
use crate::transport::acceptor::{admin_acceptor, data_acceptor};
use crate::transport::Listener;

mod generation;
pub use generation::{Live, Reloader};

/// Knobs that are not config: the clock (tests move it).
#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
        }
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Running {
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    /// Whole-config reload (SIGHUP, `POST /admin/v1/reload`).
    pub reloader: Arc<Reloader>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Reload the configuration file now (as SIGHUP and the admin API do).
    pub async fn reload(&self) -> crate::admin::reload::Outcome {
        use crate::admin::reload::ConfigControl as _;
        self.reloader
            .reload(crate::admin::reload::Trigger::Api)
            .await
    }

    /// On each SIGHUP: reopen the audit file (logrotate's `postrotate`), then reload the whole
    /// configuration. `hangups` is registered by the caller before the gateway starts, so a
    /// SIGHUP can never hit the default action (terminate) once the gateway is up. Never returns.
    #[cfg(unix)]
    pub async fn on_hangup(&self, mut hangups: tokio::signal::unix::Signal) {
        use crate::admin::reload::ConfigControl as _;
        while hangups.recv().await.is_some() {
            self.reloader.reopen_audit();
            let _ = self
                .reloader
                .reload(crate::admin::reload::Trigger::Signal)
                .await;
        }
        std::future::pending::<()>().await;
    }

    /// Stop accepting and start draining.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Wait until drained and the audit log is flushed.
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Shut down and wait.
    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}

/// Register for SIGTERM and SIGINT now; the returned future resolves on the first of them.
///
/// Registration happens here, not at the first poll, so a caller that registers before telling
/// anyone it is up (systemd's `READY=1`, a log line a supervisor waits for) can never be killed
/// by the default action of a signal sent right after. Must be called inside a Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {}
                _ = wait(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Install the process-wide crypto provider (idempotent), and seed AWS-LC's random number
/// generator now: its first use in a process gathers jitter entropy for about 20 ms of CPU, and
/// that first use was the first token minted (its `jti`), so the first request after a start
/// waited for it (measured: 31 ms against 0.4-0.9 ms for the next ones, `portcullis-full`).
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut seed = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut seed);
}

/// The header an `upstream.inject` adds, with its secret read now and marked sensitive (so it is
/// never printed by hyper's or our debug output).
fn inject_header(i: &InjectConfig) -> anyhow::Result<(http::HeaderName, http::HeaderValue)> {
    use base64::Engine as _;
    let read = |s: &SecretSource| s.read().map_err(anyhow::Error::msg);
    let (name, text) = match i {
        InjectConfig::Basic { username, password } => {
            let pair = format!("{username}:{}", read(password)?);
            (
                http::header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ),
            )
        }
        InjectConfig::Header { name, value } => (name.clone(), read(value)?),
    };
    let mut value = http::HeaderValue::from_str(&text)
        .map_err(|_| anyhow::anyhow!("the secret is not a valid header value"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// A route's limiters, when it has any.
fn route_limits(
    l: &crate::limits::settings::LimitsConfig,
    clock: Arc<dyn crate::clock::Clock>,
    cluster: Option<(String, crate::limits::cluster::ClusterSettings)>,
) -> anyhow::Result<Option<Arc<crate::limits::RouteLimits>>> {
    use crate::limits::{Rate, RouteLimitSettings, RouteLimits};
    if l.rate.is_none() && l.total_rate.is_none() && l.concurrency.is_none() {
        return Ok(None);
    }
    let rate = |r: &crate::limits::settings::Rate| {
        Rate::new(r.count, r.per).ok_or_else(|| anyhow::anyhow!("invalid rate"))
    };
    let settings = RouteLimitSettings {
        rate: l.rate.as_ref().map(rate).transpose()?,
        burst: l.rate.map(|r| r.burst),
        total_rate: l.total_rate.as_ref().map(rate).transpose()?,
        total_burst: l.total_rate.map(|r| r.burst),
        concurrency: l.concurrency.map(|c| u32::try_from(c).unwrap_or(u32::MAX)),
        max_keys: None,
        cluster,
    };
    Ok(Some(Arc::new(
        RouteLimits::new(&settings, clock).map_err(anyhow::Error::msg)?,
    )))
}

/// Sources tracked by the failed-authentication limiter; beyond that, new sources go untracked
/// (see `limits::source`) rather than evicting the ones being throttled.
const MAX_TRACKED_SOURCES: usize = 100_000;

/// How often idle rate-limit keys are dropped.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Drop idle keys from every limiter now and then, so memory follows the active callers.
fn spawn_limit_sweeper(
    routes: Vec<Arc<crate::limits::RouteLimits>>,
    sources: Option<Arc<crate::limits::SourceLimiter>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for r in &routes {
                r.sweep();
            }
            if let Some(s) = &sources {
                s.sweep();
            }
        }
    })
}

/// How often loaded certificates are checked against the 7-day expiry warning.
const EXPIRY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Warn (hourly, and once at start) about every loaded certificate that expires within 7 days:
/// a long-running gateway must not only warn when a file happens to be reloaded.
fn spawn_expiry_warner(metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for (file, secs) in metrics.cert_expiry(std::time::SystemTime::now()) {
                if secs < 7.0 * 86400.0 {
                    tracing::warn!(file = %file, days = secs / 86400.0, "a certificate expires within 7 days (or has expired)");
                }
            }
        }
    })
}

/// The `[state]` backend, and the replay guard to share with webhook credentials (`None`: each
/// gets an in-process one).
async fn open_state(
    sc: &crate::config::StateConfig,
) -> anyhow::Result<(
    Arc<dyn crate::state::StateStore>,
    Option<Arc<dyn crate::authn::webhook::replay::ReplayGuard>>,
)> {
    use crate::config::StateBackend;
    Ok(match &sc.backend {
        StateBackend::Embedded => {
            let store = match &sc.path {
                Some(p) => crate::state::EmbeddedStore::open(p)
                    .await
                    .with_context(|| format!("opening [state] path {}", p.display()))?,
                None => crate::state::EmbeddedStore::in_memory()
                    .await
                    .context("opening the in-memory state store")?,
            };
            (Arc::new(store.with_retention(sc.retention)), None)
        }
        StateBackend::Redis { url, prefix } => {
            let store = Arc::new(
                crate::state::RedisStore::connect(crate::state::RedisOptions {
                    prefix: prefix.clone(),
                    tls: sc.tls.clone(),
                    retention: sc.retention,
                    ..crate::state::RedisOptions::new(url.clone(), sc.flush_every)
                })
                .await
                .context("[state] redis")?,
            );
            tracing::info!(redis = %url, prefix = %prefix, "shared state in redis");
            (store.clone(), Some(store))
        }
    })
}

/// The issuer's public documents and the issuer itself.
type IssuerParts = (Option<Arc<WellKnown>>, Option<Arc<Issuer>>);

/// The issuer and its public documents, when `[issuer]` is configured; its keys are watched.
fn build_issuer(
    config: &Config,
    metrics: &Arc<Metrics>,
    watchers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<IssuerParts> {
    Ok(match &config.issuer {
        None => (None, None),
        Some(iss) => {
            crate::token::install_jwt_provider();
            let keys = Arc::new(
                KeySet::load(&iss.keys, SignerRequirement::Es256, metrics.clone())
                    .context("loading [issuer] keys")?,
            );
            if keys.is_file_backed() {
                watchers.push(keys.spawn_watcher(RELOAD_EVERY));
            }
            let exchange_kinds: Option<Vec<_>> = config.token_exchange.as_ref().map(|t| {
                t.accept
                    .iter()
                    .filter_map(|n| config.credentials.iter().find(|c| c.name == *n))
                    .map(|c| c.kind())
                    .collect()
            });
            let issuer =
                Issuer::new(&iss.url, &iss.spiffe_id, iss.ttl, keys.clone()).context("[issuer]")?;
            (
                Some(Arc::new(
                    WellKnown::new(&iss.url, keys, exchange_kinds.as_deref())
                        .on_hosts(iss.well_known_hosts.clone()),
                )),
                Some(Arc::new(issuer)),
            )
        }
    })
}

/// Every route with its mechanisms (policy, limits, validator, upstream, credentials), from
/// `[[route]]`; policy files are watched.
fn build_routes(
    config: &Config,
    credentials: &crate::authn::build::Credentials,
    (metrics, spire): (&Arc<Metrics>, Option<&crate::spire::Spire>),
    clock: &Arc<dyn Clock>,
    previous: Option<&Router>,
    watchers: &mut Vec<JoinHandle<()>>,
    leases: Option<crate::limits::cluster::LeaseFn>,
) -> anyhow::Result<Vec<Arc<Route>>> {
    let model = Arc::new(
        crate::authz::policy::Model::new().map_err(|e| anyhow::anyhow!("Cedar schema: {e}"))?,
    );
    let mut routes = Vec::with_capacity(config.routes.len());
    for rc in &config.routes {
        let policy = match &rc.policy {
            None => None,
            Some(spec) => {
                let p =
                    crate::authz::policy::RoutePolicy::load(model.clone(), spec, metrics.clone())
                        .map_err(|errs| {
                        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
                        anyhow::anyhow!("route {}: policy:\n{}", rc.name, lines.join("\n"))
                    })?;
                let p = Arc::new(p);
                watchers.push(p.spawn_watcher(RELOAD_EVERY));
                Some(p)
            }
        };
        // A reload keeps the limiter state (budgets spent, requests in flight) of a route whose
        // limits did not change: a reload is not a way to reset a rate limit.
        let kept = previous.and_then(|p| generation::kept_limits(p, rc));
        let limits = match kept {
            Some(l) => Some(l),
            None => {
                let cluster =
                    cluster::route_settings(&rc.name, &rc.limits, leases.as_ref(), metrics)?;
                route_limits(&rc.limits, clock.clone(), cluster)
                    .with_context(|| format!("route {}: limits", rc.name))?
            }
        };
        let validator = rc
            .validate
            .as_ref()
            .map(|v| crate::validate::Validator::new(v).map(Arc::new))
            .transpose()
            .map_err(|e| anyhow::anyhow!("route {}: validate.{e}", rc.name))?;
        let identity = crate::spire::upstream_identity(
            rc,
            &credentials.trust,
            clock,
            spire,
            metrics,
            watchers,
        )?;
        let upstream = Upstream::with_identity(&rc.upstream, identity)
            .with_context(|| format!("route {}: upstream", rc.name))?;
        let inject = rc
            .upstream
            .inject
            .as_ref()
            .map(inject_header)
            .transpose()
            .with_context(|| format!("route {}: upstream.inject", rc.name))?;
        let plan = rc
            .plan
            .as_deref()
            .and_then(|p| config.plans.get(p))
            .cloned();
        routes.push(Arc::new(Route {
            plan,
            config: rc.clone(),
            upstream,
            accept: credentials.pick(&rc.accept)?,
            policy,
            limits,
            validator,
            inject,
            meters: Default::default(),
        }));
    }
    Ok(routes)
}

/// The TLS acceptors of the data listener (`[listen.tls]`) and the admin listener (over mTLS
/// when `[admin] allow` names operators); certificate files are watched.
fn tls_acceptors(
    config: &Config,
    credentials: &crate::authn::build::Credentials,
    (metrics, spire): (&Arc<Metrics>, Option<&crate::spire::Spire>),
    clock: &Arc<dyn Clock>,
    watchers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<(
    Option<tokio_rustls::TlsAcceptor>,
    Option<crate::admin::AdminTls>,
)> {
    // A certificate section's files (loaded now and reloaded when they change) or the SVID.
    let mut load_cert = |source: &crate::transport::settings::ServerCert, section: &str| {
        crate::spire::server_cert(source, section, spire, metrics, watchers)
    };
    let listener_cert = match &config.listen.tls {
        None => None,
        Some(files) => Some(load_cert(files, "listen.tls")?),
    };
    // Admin over mTLS: its own certificate when `[admin.tls]` names one, else the listener's.
    // Client certificates are requested (probes and scrapes come without one) and, when
    // presented, verified as X.509-SVIDs at the handshake.
    let admin_cert = if config.admin.allow.is_empty() {
        None
    } else {
        match &config.admin.tls {
            Some(files) => Some(load_cert(files, "admin.tls")?),
            None => listener_cert.clone(),
        }
    };
    let admin_mtls = match admin_cert {
        None => None,
        Some(cert) => Some(crate::admin::AdminTls {
            acceptor: admin_acceptor(cert, &credentials.trust, clock)?,
            trust: credentials.trust.clone(),
            clock: clock.clone(),
            allow: config.admin.allow.clone(),
        }),
    };
    let tls = match listener_cert {
        None => None,
        Some(cert) => Some(data_acceptor(cert, &credentials.trust, clock)?),
    };
    Ok((tls, admin_mtls))
}

/// What runs after the listeners are up, stopped in order on shutdown.
struct Lifecycle {
    listener: Listener<Live>,
    reloader: Arc<Reloader>,
    health: Arc<Health>,
    flusher: JoinHandle<()>,
    state: Arc<dyn crate::state::StateStore>,
    watchers: Vec<JoinHandle<()>>,
    admin_stop_tx: watch::Sender<bool>,
    admin_task: JoinHandle<()>,
    audit_task: JoinHandle<()>,
    /// The span exporter; closed after the listener drained, it sends what is queued.
    exporter: Option<crate::telemetry::Exporter>,
}

impl Lifecycle {
    /// Serve until `rx` turns true, then drain the listener, flush the state store, stop the
    /// watchers and the admin listener, and let the audit writer finish.
    async fn run(self, rx: watch::Receiver<bool>) {
        let mut draining = rx.clone();
        let health2 = self.health.clone();
        // Flip readiness the moment shutdown starts, before the listener stops.
        let flag = tokio::spawn(async move {
            crate::transport::stopped(&mut draining).await;
            health2.draining.store(true, Ordering::Release);
        });
        let left = self.listener.run(rx).await;
        if left > 0 {
            tracing::warn!(connections = left, "shutdown with connections still open");
        }
        flag.abort();
        self.flusher.abort();
        crate::state::final_flush(&*self.state).await;
        for w in self.watchers {
            w.abort();
        }
        self.reloader.stop();
        let _ = self.admin_stop_tx.send(true);
        let _ = self.admin_task.await;
        // The gateway (and its auditor) is gone once the listener returned and the writer drains
        // what is queued. Connections cut off at the drain deadline may still hold a sender.
        if tokio::time::timeout(Duration::from_secs(5), self.audit_task)
            .await
            .is_err()
        {
            tracing::warn!("audit writer did not finish in time; some records may be lost");
        }
        // The reloader still holds the gateway (and its tracer): the queue is closed here rather
        // than left to close when the last tracer goes, which is after this wait.
        if let Some(e) = self.exporter {
            if !e.finish(Duration::from_secs(5)).await {
                tracing::warn!("span exporter did not finish in time; some spans may be lost");
            }
        }
    }
}

/// The gateway's key set as the JWT-SVID validator trusts it (`trust_issuer = true`): the glue
/// between two mechanisms lives here, so that neither `token` nor `authn` needs the other.
impl IssuerJwks for KeySet {
    fn generation(&self) -> u64 {
        self.current().generation()
    }
    fn jwks(&self) -> (u64, bytes::Bytes) {
        let ring = self.current();
        (ring.generation(), crate::token::jwks::render_jwks(&ring))
    }
}

/// Every `[[credential]]`'s authenticator and the `[trust]` bundles; their files are watched.
/// `previous`: the credentials a reload replaces (LDAP failure counters carry over).
#[expect(
    clippy::too_many_arguments,
    reason = "each is one shared run-time piece; bundling them would only rename the list"
)]
fn build_credentials(
    config: &Config,
    metrics: &Arc<Metrics>,
    clock: &Arc<dyn Clock>,
    replay: Option<Arc<dyn crate::authn::webhook::replay::ReplayGuard>>,
    issuer: Option<&Issuer>,
    state: &Arc<dyn crate::state::StateStore>,
    previous: Option<Arc<crate::authn::build::Credentials>>,
    watchers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Arc<crate::authn::build::Credentials>> {
    let credentials = crate::authn::build::build(
        &config.trust,
        &config.credentials,
        crate::authn::build::Shared {
            metrics: metrics.clone(),
            clock: clock.clone(),
            replay,
            issuer_keys: issuer.map(|i| -> Arc<dyn IssuerJwks> { i.keys().clone() }),
            state: Some(state.clone()),
            previous,
        },
    )?;
    let mut credentials = credentials;
    watchers.append(&mut credentials.watchers);
    let credentials = Arc::new(credentials);
    if !config.trust.is_empty() {
        watchers.push(credentials.trust.spawn_watcher(RELOAD_EVERY));
    }
    Ok(credentials)
}

/// `POST /oauth2/token`, when `[token_exchange]` and `[issuer]` are configured.
fn build_exchange(
    config: &Config,
    credentials: &crate::authn::build::Credentials,
) -> anyhow::Result<Option<Arc<crate::exchange::TokenExchange>>> {
    Ok(match (&config.token_exchange, &config.issuer) {
        (Some(t), Some(iss)) => Some(Arc::new(crate::exchange::TokenExchange::new(
            credentials.pick(&t.accept)?,
            &t.audiences,
            &t.audience_rules,
            &iss.url,
        ))),
        _ => None,
    })
}

/// The failed-authentication limiter per source address (`[listen] max_auth_failures`).
fn auth_failures(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> Option<Arc<crate::limits::SourceLimiter>> {
    config.listen.max_auth_failures.and_then(|(count, window)| {
        let rate = crate::limits::Rate::new(count, window)?;
        Some(Arc::new(crate::limits::SourceLimiter::new(
            rate,
            count,
            MAX_TRACKED_SOURCES,
            clock.clone(),
        )))
    })
}

/// What the admin ops API reads.
fn build_ops(
    config: &Config,
    state: &Arc<dyn crate::state::StateStore>,
    clock: &Arc<dyn Clock>,
    tokens: &Arc<TokenCache>,
    credentials: &Arc<crate::authn::build::Credentials>,
) -> Arc<crate::admin::Ops> {
    Arc::new(crate::admin::Ops {
        state: state.clone(),
        plans: config.plans.clone(),
        routes: config
            .routes
            .iter()
            .map(|r| (r.name.to_string(), r.plan.clone()))
            .collect(),
        clock: clock.clone(),
        tokens: tokens.clone(),
        credentials: credentials.clone(),
    })
}

/// The data listener serves the pipeline.
impl crate::transport::Handler for Gateway {
    fn handle(
        &self,
        conn: &crate::conn::ConnInfo,
        req: http::Request<crate::body::CallerBody>,
    ) -> impl std::future::Future<Output = crate::transport::Answer> + Send {
        Gateway::handle(self, conn, req)
    }
}

/// `[decision]`: the forward-auth endpoint, validating forwarded certificates against `trust`.
pub(crate) fn decider(
    config: &Config,
    trust: &Arc<crate::spiffe::store::TrustStore>,
) -> Option<Arc<crate::pipeline::decision::Decider>> {
    let d = config.decision.clone()?;
    Some(Arc::new(crate::pipeline::decision::Decider::new(
        d,
        trust.clone(),
    )))
}

/// The local routes, in the order they are checked: the issuer's documents, then token exchange.
fn local_routes(
    well_known: Option<Arc<WellKnown>>,
    exchange: Option<Arc<crate::exchange::TokenExchange>>,
) -> Vec<Arc<dyn LocalRoute>> {
    let mut local: Vec<Arc<dyn LocalRoute>> = Vec::new();
    if let Some(wk) = well_known {
        local.push(wk);
    }
    if let Some(x) = exchange {
        local.push(x);
    }
    local
}

/// `[telemetry]`: the span exporter when `otlp_endpoint` is set (an `https` collector is
/// verified against the system roots).
fn start_telemetry(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(
    crate::telemetry::Telemetry,
    Option<crate::telemetry::Exporter>,
)> {
    let settings = &config.telemetry;
    let roots = match &settings.otlp_endpoint {
        Some(u) if u.scheme_str() == Some("https") => crate::proxy::root_store(None)
            .context("loading the system roots for the OTLP collector")?,
        _ => rustls::RootCertStore::empty(),
    };
    let started = crate::telemetry::start(settings, metrics.clone(), roots)?;
    if let Some(u) = &settings.otlp_endpoint {
        tracing::info!(otlp_endpoint = %u, sample_ratio = settings.sample_ratio, "exporting traces");
    }
    Ok(started)
}

/// Bind the data and admin listeners.
async fn bind(config: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
    let data = TcpListener::bind(config.listen.addr)
        .await
        .with_context(|| format!("binding listen.addr {}", config.listen.addr))?;
    let admin = TcpListener::bind(config.admin.addr)
        .await
        .with_context(|| format!("binding admin.addr {}", config.admin.addr))?;
    Ok((data, admin))
}

/// Build everything and start serving.
pub async fn start(config: Config, opts: Options) -> anyhow::Result<Running> {
    install_crypto();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let metrics = Arc::new(Metrics::default());
    let (auditor, audit_task) = crate::audit::start_rotating(
        &config.audit.sink,
        config.audit.queue,
        config.audit.rotation,
        metrics.clone(),
    )
    .context("opening the audit sink")?;

    let mut watchers = Vec::new();
    // The state store first: with redis it is also the webhook replay memory shared by every
    // replica (embedded: one in-process memory, kept across reloads).
    let (state, replay) = open_state(&config.state).await?;
    let replay = replay.unwrap_or_else(|| {
        Arc::new(crate::authn::webhook::replay::MemoryReplayGuard::new(
            crate::authn::build::REPLAY_CAPACITY,
        ))
    });
    // One exporter for the process: a reload keeps it (a changed `[telemetry]` needs a restart).
    let (telemetry, exporter) = start_telemetry(&config, &metrics)?;
    // One Workload API connection for the process; each generation's trust store attaches to it.
    let spire = crate::spire::start(&config, &metrics, &mut watchers).await?;
    let shared = generation::Shared {
        telemetry,
        spire: spire.clone(),
        metrics: metrics.clone(),
        clock: opts.clock.clone(),
        state: state.clone(),
        replay,
        auditor,
    };
    let first = generation::build(config, &shared, None)?;
    let config = &first.config;
    let (tls, admin_mtls) = tls_acceptors(
        config,
        &first.credentials,
        (&metrics, spire.as_ref()),
        &opts.clock,
        &mut watchers,
    )?;

    // First check right away: every certificate (listener, trust bundles) is loaded by now.
    watchers.push(spawn_expiry_warner(metrics.clone()));
    let (data, admin_listener) = bind(config).await?;
    let data_addr = data.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let (tx, rx) = watch::channel(false);
    let health = Arc::new(crate::spire::health(spire.as_ref()));
    // Usage counts are aggregated in memory and written out periodically; the last flush runs
    // after the listener has drained (below), so no request's counts are lost on shutdown.
    let flusher = crate::state::spawn_flusher(
        state.clone(),
        config.state.flush_every,
        std::future::pending::<()>(),
    );
    let workers = crate::transport::workers::Workers::start(config.listen.workers)
        .context("starting the data-plane worker threads")?;
    let settings = config.listen.clone();
    let live = Arc::new(Live::new(first.gateway.clone()));
    let ops = Arc::new(arc_swap::ArcSwap::new(first.ops.clone()));
    let reloader = Arc::new(Reloader::new(shared, first, live.clone(), ops.clone()));
    watchers.extend(reloader.spawn_watch());
    let admin = Arc::new(Admin {
        health: health.clone(),
        metrics: metrics.clone(),
        ops: Some(ops),
        control: Some(reloader.clone()),
        mtls: admin_mtls,
    });
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin_task = tokio::spawn(admin.run(admin_listener, admin_stop_rx));
    let listener = Listener {
        workers,
        listener: data,
        tls,
        settings,
        gateway: live,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(
        Lifecycle {
            listener,
            reloader: reloader.clone(),
            health,
            flusher,
            state,
            watchers,
            admin_stop_tx,
            admin_task,
            audit_task,
            exporter,
        }
        .run(rx),
    );
    tracing::info!(%data_addr, %admin_addr, "portcullis listening");
    Ok(Running {
        data_addr,
        admin_addr,
        metrics,
        reloader,
        shutdown: tx,
        task,
    })
}
