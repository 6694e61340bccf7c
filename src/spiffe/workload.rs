//! The SPIFFE Workload API (`[spiffe]`, `docs/spiffe.md`): the gateway's own X.509-SVID, the
//! X.509 bundles of every trust domain the agent sends (own and federated), the JWT bundles, and
//! JWT-SVIDs for upstream audiences.
//!
//! Built on the `spiffe` crate's `X509Source` (FetchX509SVID stream) and `JwtSource`
//! (FetchJWTBundles stream, FetchJWTSVID calls). What they give us, read from their source
//! (0.19): every request carries the `workload.spiffe.io: true` metadata; a stream that fails is
//! re-opened with jittered exponential backoff (here 100 ms up to 5 s) and the last accepted
//! context is kept meanwhile; a permission denial withdraws the SVID (we keep serving the last
//! one until it expires and say so). What they lack, and this module adds: a connected/not
//! connected signal (`record_update` / `record_error` of their metrics hook drive
//! `portcullis_workload_api_up`), a `CertifiedKey` ready for rustls (swapped through an
//! `ArcSwap` the moment an update arrives, so new handshakes use a rotated SVID within
//! milliseconds), and feeding the bundles into the gateway's own [`TrustStore`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use spiffe::{JwtSource, X509Source};

use super::store::TrustStore;
use crate::metrics::Metrics;

/// Backoff between reconnection attempts (the crate adds jitter).
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// While the link is down, the agent is probed every this many gauge ticks (250 ms each).
const PROBE_EVERY_TICKS: u64 = 4;
/// How long a probe of the agent may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `[spiffe]` as checked from the config. `PartialEq` is what a reload compares to decide
/// whether the section changed (a restart is needed): every field counts, and a field added
/// later counts without anyone remembering to add it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `unix:///run/spire/agent.sock` (or `tcp://…`), from `workload_api` or
    /// `$SPIFFE_ENDPOINT_SOCKET`.
    pub endpoint: String,
    /// Pick the X.509-SVID with this hint when the agent returns several (default: the first).
    pub svid_hint: Option<String>,
    /// How long to wait for the first SVID and bundles at start.
    pub startup_timeout: Duration,
}

/// Longest wait for a JWT-SVID from the agent: a hung agent must not hang requests.
pub const JWT_SVID_TIMEOUT: Duration = Duration::from_secs(5);

/// Default `startup_timeout`.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the Workload API could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("Workload API at {endpoint}: no X.509-SVID within {timeout:?}: {source}")]
    X509Startup {
        endpoint: String,
        timeout: Duration,
        source: spiffe::X509SourceError,
    },
    #[error("Workload API at {endpoint}: no JWT bundles within {timeout:?}: {source}")]
    JwtStartup {
        endpoint: String,
        timeout: Duration,
        source: spiffe::JwtSourceError,
    },
    #[error("the Workload API's X.509-SVID is unusable: {0}")]
    Svid(String),
    #[error("fetching a JWT-SVID from the Workload API: {0}")]
    JwtSvid(String),
}

/// Something that holds the gateway's current certificate and key (a file pair that is
/// reloaded, or the Workload API's SVID). Each rotation yields a new `Arc`, so pointer identity
/// tells connections opened with an old certificate from new ones.
pub trait CertSource: std::fmt::Debug + Send + Sync {
    /// The certificate to present now.
    fn current(&self) -> Arc<CertifiedKey>;
}

/// Whether each stream is connected, fed by the `spiffe` crate's metrics hooks.
#[derive(Debug, Default)]
struct Link {
    x509_up: AtomicBool,
    jwt_up: AtomicBool,
    /// Unix seconds of the last time a stream was seen failing (0: never).
    down_since: AtomicI64,
    reconnects: AtomicU64,
}

impl Link {
    fn set(&self, flag: &AtomicBool, up: bool) {
        let was = flag.swap(up, Ordering::AcqRel);
        if was && !up {
            self.down_since.store(unix_now(), Ordering::Release);
            tracing::warn!("Workload API unreachable: keeping the last SVID and bundles, reconnecting with backoff");
        } else if !was && up && self.down_since.load(Ordering::Acquire) != 0 {
            tracing::info!("Workload API reachable again");
        }
    }
    fn up(&self) -> bool {
        self.x509_up.load(Ordering::Acquire) && self.jwt_up.load(Ordering::Acquire)
    }
}

fn is_link_error(kind: &str) -> bool {
    matches!(
        kind,
        "client_creation" | "stream_connect" | "stream_error" | "stream_ended"
    )
}

#[derive(Debug)]
struct X509Hook(Arc<Link>);

impl spiffe::x509_source::MetricsRecorder for X509Hook {
    fn record_update(&self) {
        self.0.set(&self.0.x509_up, true);
    }
    fn record_reconnect(&self) {
        self.0.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    fn record_error(&self, kind: spiffe::x509_source::MetricsErrorKind) {
        if is_link_error(kind.as_str()) {
            self.0.set(&self.0.x509_up, false);
        } else {
            tracing::warn!(error = kind.as_str(), "Workload API X.509 update refused");
        }
    }
}

#[derive(Debug)]
struct JwtHook(Arc<Link>);

impl spiffe::jwt_source::MetricsRecorder for JwtHook {
    fn record_update(&self) {
        self.0.set(&self.0.jwt_up, true);
    }
    fn record_reconnect(&self) {
        self.0.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    fn record_error(&self, kind: spiffe::jwt_source::MetricsErrorKind) {
        if is_link_error(kind.as_str()) {
            self.0.set(&self.0.jwt_up, false);
        } else {
            tracing::warn!(
                error = kind.as_str(),
                "Workload API JWT bundle update refused"
            );
        }
    }
}

/// Picks the SVID whose hint is `svid_hint`; never falls back to another one (a wrong identity
/// is worse than none).
#[derive(Debug)]
struct HintPicker(String);

impl spiffe::x509_source::SvidPicker for HintPicker {
    fn pick_svid(&self, svids: &[Arc<spiffe::X509Svid>]) -> Option<usize> {
        svids.iter().position(|s| s.hint() == Some(self.0.as_str()))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The gateway's connection to the Workload API.
pub struct WorkloadApi {
    settings: Settings,
    x509: X509Source,
    jwt: JwtSource,
    svid: ArcSwap<CertifiedKey>,
    /// The SVID's SPIFFE ID, for logs and `/readyz`.
    svid_id: ArcSwap<String>,
    /// `notAfter` of the served SVID's leaf, unix seconds.
    not_after: AtomicI64,
    link: Arc<Link>,
    /// The trust stores fed with the agent's bundles: one per configuration generation still
    /// alive (the listener's handshakes keep the first; a reload builds a new one).
    trust: std::sync::Mutex<Vec<std::sync::Weak<TrustStore>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApi")
            .field("endpoint", &self.settings.endpoint)
            .field("svid", &self.svid_id.load())
            .finish_non_exhaustive()
    }
}

/// An X.509-SVID as rustls wants it, with its leaf's `notAfter`.
fn certified(svid: &spiffe::X509Svid) -> Result<(CertifiedKey, i64), WorkloadError> {
    let chain: Vec<CertificateDer<'static>> = svid
        .cert_chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        svid.private_key().as_bytes().to_vec(),
    ));
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| WorkloadError::Svid(e.to_string()))?;
    let not_after = chain
        .first()
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
        .map_or(0, |(_, c)| c.validity().not_after.timestamp());
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| WorkloadError::Svid(e.to_string()))?;
    Ok((ck, not_after))
}

impl WorkloadApi {
    /// Connect, wait (at most `startup_timeout`) for the first SVID, X.509 bundles and JWT
    /// bundles, and follow the streams from then on. The bundles go to the trust stores given
    /// to [`WorkloadApi::attach`].
    pub async fn start(
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, WorkloadError> {
        let link = Arc::new(Link::default());
        let timeout = settings.startup_timeout;
        let endpoint = settings.endpoint.clone();
        let mut xb = X509Source::builder()
            .endpoint(&endpoint)
            .reconnect_backoff(MIN_BACKOFF, MAX_BACKOFF)
            .initial_sync_timeout(timeout)
            .metrics(Arc::new(X509Hook(link.clone())));
        if let Some(h) = &settings.svid_hint {
            xb = xb.picker(HintPicker(h.clone()));
        }
        let jb = JwtSource::builder()
            .endpoint(&endpoint)
            .reconnect_backoff(MIN_BACKOFF, MAX_BACKOFF)
            .initial_sync_timeout(timeout)
            .metrics(Arc::new(JwtHook(link.clone())));
        let (x509, jwt) = tokio::join!(xb.build(), jb.build());
        let x509 = x509.map_err(|source| WorkloadError::X509Startup {
            endpoint: endpoint.clone(),
            timeout,
            source,
        })?;
        let jwt = jwt.map_err(|source| WorkloadError::JwtStartup {
            endpoint: endpoint.clone(),
            timeout,
            source,
        })?;
        let first = x509
            .svid()
            .map_err(|e| WorkloadError::Svid(e.to_string()))?;
        let (ck, not_after) = certified(&first)?;
        // The initial sync counts as an update even if the hooks were not called for it.
        link.x509_up.store(true, Ordering::Release);
        link.jwt_up.store(true, Ordering::Release);
        let me = Arc::new(WorkloadApi {
            svid: ArcSwap::from_pointee(ck),
            svid_id: ArcSwap::from_pointee(first.spiffe_id().to_string()),
            not_after: AtomicI64::new(not_after),
            settings,
            x509,
            jwt,
            link,
            trust: std::sync::Mutex::new(Vec::new()),
            metrics,
        });
        me.metrics
            .workload_api_enabled
            .store(true, Ordering::Release);
        me.apply_bundles();
        me.report();
        tracing::info!(endpoint = %me.settings.endpoint, svid = %me.svid_id.load(), "Workload API: SVID and bundles received");
        Ok(me)
    }

    /// Follow the X.509 and JWT streams until the returned tasks are aborted.
    pub fn spawn_followers(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let me = self.clone();
        let x509 = tokio::spawn(async move {
            let mut updates = me.x509.updated();
            while updates.changed().await.is_ok() {
                me.apply_svid();
                me.apply_bundles();
                me.report();
            }
            tracing::error!(
                "Workload API X.509 source closed; the last SVID is served until it expires"
            );
        });
        let me = self.clone();
        let jwt = tokio::spawn(async move {
            let mut updates = me.jwt.updated();
            while updates.changed().await.is_ok() {
                me.apply_bundles();
            }
            tracing::error!("Workload API JWT source closed; the last JWT bundles stay in use");
        });
        // The up/down gauge and the expiry follow the link, which changes between updates.
        let me = self.clone();
        let gauge = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n = n.wrapping_add(1);
                if !me.link.up() && n.is_multiple_of(PROBE_EVERY_TICKS) {
                    me.probe().await;
                }
                me.report();
            }
        });
        vec![x509, jwt, gauge]
    }

    /// While a stream is down, ask the agent directly whether it answers. The sources only
    /// report an update when the material changed, and an agent that comes back (a restart,
    /// a rollout) re-delivers the SVID and bundles the gateway already holds: without this
    /// probe `portcullis_workload_api_up` and `/readyz` would say "unreachable" until the next
    /// rotation, long after the agent is back. A stream that then fails sets it down again.
    /// Each stream's flag is set only by the call that stream makes (an agent that answers but
    /// withdrew the gateway's identity still fails the X.509 call and stays down).
    async fn probe(&self) {
        let _ = tokio::time::timeout(PROBE_TIMEOUT, async {
            let client = spiffe::WorkloadApiClient::connect_to(&self.settings.endpoint).await?;
            if !self.link.x509_up.load(Ordering::Acquire) && client.fetch_x509_svid().await.is_ok()
            {
                self.link.set(&self.link.x509_up, true);
            }
            if !self.link.jwt_up.load(Ordering::Acquire) && client.fetch_jwt_bundles().await.is_ok()
            {
                self.link.set(&self.link.jwt_up, true);
            }
            Ok::<(), spiffe::WorkloadApiError>(())
        })
        .await;
    }

    fn apply_svid(&self) {
        match self.x509.svid() {
            // The gateway's identity is fixed for the life of the process: an update naming
            // another SPIFFE ID (a changed or mistaken registration entry) is refused, so that
            // who the gateway is to callers and upstreams never changes silently.
            Ok(svid) if svid.spiffe_id().to_string() != *self.svid_id.load_full() => {
                tracing::error!(
                    served = %self.svid_id.load(),
                    offered = %svid.spiffe_id(),
                    "Workload API sent an SVID for another SPIFFE ID; keeping the current one (restart to change identity)"
                );
            }
            Ok(svid) => match certified(&svid) {
                Ok((ck, not_after)) => {
                    self.svid.store(Arc::new(ck));
                    self.not_after.store(not_after, Ordering::Release);
                    self.svid_id.store(Arc::new(svid.spiffe_id().to_string()));
                    tracing::info!(svid = %svid.spiffe_id(), not_after, "Workload API: SVID rotated");
                }
                Err(e) => {
                    tracing::error!(error = %e, "Workload API sent an unusable SVID; keeping the previous one");
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "Workload API withdrew or did not select an SVID; keeping the previous one until it expires");
            }
        }
    }

    /// Hand the current X.509 and JWT bundles of every trust domain to the trust store.
    fn apply_bundles(&self) {
        let mut x509: HashMap<String, Vec<CertificateDer<'static>>> = HashMap::new();
        match self.x509.bundle_set() {
            Ok(set) => {
                for (td, b) in set.iter() {
                    let roots = b
                        .authorities()
                        .iter()
                        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
                        .collect();
                    x509.insert(td.to_string(), roots);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Workload API X.509 bundles unavailable; keeping the previous ones");
                return;
            }
        }
        let mut jwt: HashMap<String, Vec<u8>> = HashMap::new();
        if let Ok(set) = self.jwt.bundle_set() {
            for (td, b) in set.iter() {
                let keys: Vec<serde_json::Value> = b
                    .jwt_authorities()
                    .filter_map(|a| serde_json::from_slice(a.jwk_json()).ok())
                    .collect();
                let doc = serde_json::json!({ "keys": keys });
                jwt.insert(td.to_string(), doc.to_string().into_bytes());
            }
        }
        let mut stores = self.trust.lock().unwrap_or_else(|p| p.into_inner());
        stores.retain(|w| w.strong_count() > 0);
        for t in stores.iter().filter_map(std::sync::Weak::upgrade) {
            t.set_workload_bundles(x509.clone(), jwt.clone());
        }
    }

    /// Feed `trust` too (a reload's new trust store), starting with the bundles held now.
    pub fn attach(&self, trust: &Arc<TrustStore>) {
        self.trust
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(trust));
        self.apply_bundles();
    }

    fn report(&self) {
        let up = self.link.up();
        self.metrics.workload_api_up.set(if up { 1.0 } else { 0.0 });
        self.metrics
            .svid_not_after
            .set(self.not_after.load(Ordering::Acquire) as f64);
    }

    /// Whether both streams are connected right now.
    pub fn is_up(&self) -> bool {
        self.link.up()
    }

    /// Seconds left on the served SVID (negative: expired).
    pub fn svid_seconds_left(&self) -> i64 {
        self.not_after.load(Ordering::Acquire) - unix_now()
    }

    /// The served SVID's SPIFFE ID.
    pub fn svid_id(&self) -> Arc<String> {
        self.svid_id.load_full()
    }

    /// `/readyz`: `Ok(detail)` while the SVID is valid (the agent may be down: traffic goes on
    /// with the last SVID and bundles), `Err(detail)` once it expired.
    pub fn readiness(&self) -> Result<String, String> {
        let left = self.svid_seconds_left();
        if left <= 0 {
            return Err(format!(
                "workload API SVID {} expired {}s ago; agent {}",
                self.svid_id(),
                -left,
                if self.is_up() {
                    "reachable"
                } else {
                    "unreachable"
                }
            ));
        }
        if self.is_up() {
            Ok(format!(
                "workload API: connected, SVID {} expires in {left}s",
                self.svid_id()
            ))
        } else {
            let since = self.link.down_since.load(Ordering::Acquire);
            Ok(format!(
                "workload API: unreachable for {}s (reconnecting), serving the last SVID {} (expires in {left}s) and bundles",
                (unix_now() - since).max(0),
                self.svid_id()
            ))
        }
    }

    /// A JWT-SVID for `audience` from the agent: `(token, exp)`.
    pub async fn fetch_jwt_svid(
        &self,
        audience: &str,
    ) -> Result<(String, SystemTime), WorkloadError> {
        let svid = tokio::time::timeout(JWT_SVID_TIMEOUT, self.jwt.fetch_jwt_svid([audience]))
            .await
            .map_err(|_| WorkloadError::JwtSvid(format!("no answer within {JWT_SVID_TIMEOUT:?}")))?
            .map_err(|e| WorkloadError::JwtSvid(e.to_string()))?;
        let exp = u64::try_from(svid.expiry().unix_timestamp())
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .unwrap_or(UNIX_EPOCH);
        Ok((svid.token().to_owned(), exp))
    }

    /// Stop the streams (shutdown).
    pub async fn shutdown(&self) {
        self.x509.shutdown().await;
        self.jwt.shutdown().await;
    }
}

impl CertSource for WorkloadApi {
    fn current(&self) -> Arc<CertifiedKey> {
        self.svid.load_full()
    }
}
