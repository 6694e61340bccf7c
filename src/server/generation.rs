//! Whole-config reload. Everything a request reads from the configuration (routes, credentials,
//! policies, limits, plans, the issuer, local routes) is one [`Generation`]; the data listener
//! reads the generation serving now once per request ([`Live`]), so a request finishes under the
//! configuration it started with while new requests get the new one, and no connection is
//! touched. A reload reads and checks the whole file (the same checks as `portcullis check`),
//! builds the new generation completely (files read, policies compiled), and only then swaps;
//! any problem leaves the old generation serving.
//!
//! What is bound to the process stays: the listeners and their TLS acceptors, the admin
//! listener, the audit sink, the state store (usage, revocations, replay memory). A change to
//! those is reported as `restart_required`. What is kept across a reload, and why, is listed in
//! `docs/operations.md`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::admin::reload::{BoxFuture, ConfigControl, Outcome, Trigger};
use crate::admin::Ops;
use crate::audit::Auditor;
use crate::authn::build::Credentials;
use crate::authn::webhook::replay::ReplayGuard;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::route::Router;
use crate::pipeline::{Gateway, HeadLimits};
use crate::token::TokenCache;

/// What every generation shares: bound to the process, never rebuilt by a reload.
pub(crate) struct Shared {
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub state: Arc<dyn crate::state::StateStore>,
    /// Webhook replay memory: one for the process, so a delivery seen before a reload is still
    /// a replay after it.
    pub replay: Arc<dyn ReplayGuard>,
    pub auditor: Auditor,
    /// Traces: one exporter for the process.
    pub telemetry: crate::telemetry::Telemetry,
    /// `[spiffe]`: one Workload API connection for the process (a changed `[spiffe]` needs a
    /// restart); every generation's trust store receives its bundles.
    pub spire: Option<crate::spire::Spire>,
}

/// One configuration, built.
pub(crate) struct Generation {
    pub config: Config,
    pub gateway: Arc<Gateway>,
    pub ops: Arc<Ops>,
    pub credentials: Arc<Credentials>,
    /// File watchers of this generation (they hold their files' targets weakly); moved to
    /// the reloader's retired list when the generation is replaced.
    watchers: Mutex<Vec<JoinHandle<()>>>,
    /// Drops idle limiter keys; holds the limiters strongly, so it is stopped on retirement.
    sweeper: JoinHandle<()>,
}

/// Build every per-configuration piece from `config`; with `previous`, keep what must survive
/// (limiter state of unchanged routes, the failed-authentication counts, minted tokens while the
/// issuer is unchanged, the body memory budget).
pub(crate) fn build(
    config: Config,
    shared: &Shared,
    previous: Option<&Generation>,
) -> anyhow::Result<Generation> {
    let mut watchers = Vec::new();
    let (well_known, issuer) = super::build_issuer(&config, &shared.metrics, &mut watchers)?;
    let credentials = super::build_credentials(
        &config,
        &shared.metrics,
        &shared.clock,
        Some(shared.replay.clone()),
        issuer.as_deref(),
        &shared.state,
        previous.map(|p| p.credentials.clone()),
        &mut watchers,
    )?;
    if let Some(s) = &shared.spire {
        s.api.attach(&credentials.trust);
    }
    let prev_router = previous.map(|p| &p.gateway.router);
    // `scope = "cluster"` limits and the shared failure throttle lease from the state store.
    let leases = super::cluster::lease_fn(&shared.state);
    let routes = super::build_routes(
        &config,
        &credentials,
        (&shared.metrics, shared.spire.as_ref()),
        &shared.clock,
        prev_router,
        &mut watchers,
        leases.clone(),
    )?;
    let exchange = super::build_exchange(&config, &credentials)?;
    // Minted tokens say `iss`, `act` and carry the issuer's TTL: reusable only while those hold.
    let tokens = match previous {
        Some(p) if same_issuer(&p.config, &config) => p.gateway.tokens.clone(),
        _ => Arc::new(TokenCache::default()),
    };
    let auth_failures = match previous {
        Some(p) if p.config.listen.max_auth_failures == config.listen.max_auth_failures => {
            p.gateway.auth_failures.clone()
        }
        _ => super::cluster::share_failures(
            super::auth_failures(&config, &shared.clock),
            leases.clone(),
        )?,
    };
    let bodies = match previous {
        Some(p) if p.config.listen.bodies == config.listen.bodies => p.gateway.bodies.clone(),
        _ => crate::limits::bodies::BodyBudget::new(config.listen.bodies),
    };
    let sweeper = super::spawn_limit_sweeper(
        routes.iter().filter_map(|r| r.limits.clone()).collect(),
        auth_failures.clone(),
    );
    let ops = super::build_ops(&config, &shared.state, &shared.clock, &tokens, &credentials);
    let gateway = Arc::new(Gateway {
        state: shared.state.clone(),
        router: Router::new(routes),
        auditor: shared.auditor.clone(),
        metrics: shared.metrics.clone(),
        clock: shared.clock.clone(),
        local: super::local_routes(well_known, exchange),
        issuer,
        tokens,
        auth_failures,
        bodies,
        head_limits: HeadLimits {
            max_header_bytes: config.listen.max_header_bytes,
            max_headers: config.listen.max_headers,
        },
        telemetry: shared.telemetry.clone(),
        decision: super::decider(&config, &credentials.trust),
    });
    Ok(Generation {
        config,
        gateway,
        ops,
        credentials,
        watchers: Mutex::new(watchers),
        sweeper,
    })
}

/// The limiters of `rc`'s route in `previous` when its limits are unchanged.
pub(crate) fn kept_limits(
    previous: &Router,
    rc: &crate::pipeline::route::RouteConfig,
) -> Option<Arc<crate::limits::RouteLimits>> {
    let old = previous
        .routes()
        .iter()
        .find(|r| r.config.name == rc.name)?;
    let (a, b) = (&old.config.limits, &rc.limits);
    let same = a.rate == b.rate && a.total_rate == b.total_rate && a.concurrency == b.concurrency;
    if same {
        old.limits.clone()
    } else {
        None
    }
}

fn same_issuer(a: &Config, b: &Config) -> bool {
    match (&a.issuer, &b.issuer) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            x.url == y.url
                && x.spiffe_id == y.spiffe_id
                && x.ttl == y.ttl
                && x.keys == y.keys
                && x.well_known_hosts == y.well_known_hosts
        }
        _ => false,
    }
}

/// The data listener's handler: the generation serving now, read once per request.
#[derive(Debug)]
pub struct Live(ArcSwap<Gateway>);

impl Live {
    pub(crate) fn new(gateway: Arc<Gateway>) -> Self {
        Live(ArcSwap::new(gateway))
    }
}

impl crate::transport::Handler for Live {
    fn handle(
        &self,
        conn: &crate::conn::ConnInfo,
        req: http::Request<crate::body::CallerBody>,
    ) -> impl std::future::Future<Output = crate::transport::Answer> + Send {
        // Held for the whole request: a reload mid-request does not change its configuration.
        let gateway = self.0.load_full();
        async move { gateway.handle(conn, req).await }
    }
}

/// Changes the running process cannot apply: they need a restart (one sentence each).
pub(crate) fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |what: &str, changed: bool| {
        if changed {
            out.push(format!("{what} changed: takes effect after a restart"));
        }
    };
    let (o, n) = (&old.listen, &new.listen);
    let files = |t: &Option<crate::transport::settings::ServerCert>| {
        t.as_ref().map(|c| match c {
            crate::transport::settings::ServerCert::Files(f) => {
                Some((f.cert.clone(), f.key.clone()))
            }
            crate::transport::settings::ServerCert::WorkloadApi => None,
        })
    };
    differs("[listen] addr", o.addr != n.addr);
    differs("[listen.tls]", files(&o.tls) != files(&n.tls));
    differs("[listen] workers", o.workers != n.workers);
    differs("[listen] http1_engine", o.http1_engine != n.http1_engine);
    differs(
        "[listen] max_connections",
        o.max_connections != n.max_connections,
    );
    differs(
        "[listen] timeouts (header, handshake, idle, drain, send)",
        (
            o.header_timeout,
            o.handshake_timeout,
            o.idle_timeout,
            o.drain_timeout,
            o.send_timeout,
        ) != (
            n.header_timeout,
            n.handshake_timeout,
            n.idle_timeout,
            n.drain_timeout,
            n.send_timeout,
        ),
    );
    differs(
        "[listen] max_concurrent_streams",
        o.max_concurrent_streams != n.max_concurrent_streams,
    );
    let (o, n) = (&old.admin, &new.admin);
    differs("[admin] addr", o.addr != n.addr);
    differs("[admin] allow", o.allow != n.allow);
    differs("[admin.tls]", files(&o.tls) != files(&n.tls));
    differs("[reload] watch", old.reload.watch != new.reload.watch);
    // One Workload API connection and one span exporter serve the process. Compared as values,
    // not as Debug text: a Debug that shortens or hides a field would hide its change too.
    differs("[spiffe]", old.spiffe != new.spiffe);
    differs("[telemetry]", old.telemetry != new.telemetry);
    differs(
        "[audit]",
        old.audit.sink != new.audit.sink
            || old.audit.queue != new.audit.queue
            || old.audit.rotation != new.audit.rotation,
    );
    let (o, n) = (&old.state, &new.state);
    differs(
        "[state]",
        o.backend != n.backend
            || o.path != n.path
            || o.flush_every != n.flush_every
            || o.tls != n.tls
            || o.retention != n.retention,
    );
    // Authentication uses the new bundles at once; the TLS handshakes (data listener, admin
    // mTLS) verify client chains against the bundles they were started with.
    let bundles = |c: &Config| {
        c.trust
            .iter()
            .map(|t| {
                (
                    t.trust_domain.to_string(),
                    t.x509_bundle.clone(),
                    t.jwt_bundle.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let handshakes = new.listen.tls.is_some() || !new.admin.allow.is_empty();
    differs(
        "[trust] (for TLS handshakes; authentication uses the new bundles now)",
        handshakes && bundles(old) != bundles(new),
    );
    out
}

/// The configuration with every secret left out: names, addresses, paths and settings only.
pub(crate) fn redacted(c: &Config) -> Value {
    let tls = |t: &Option<crate::transport::settings::ServerCert>| {
        t.as_ref().map(|c| match c {
            crate::transport::settings::ServerCert::Files(f) => {
                json!({ "cert": f.cert.display().to_string(), "key": f.key.display().to_string() })
            }
            crate::transport::settings::ServerCert::WorkloadApi => {
                json!({ "source": "workload-api" })
            }
        })
    };
    let secs = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let routes: Vec<Value> = c
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": &*r.name,
                "path_prefix": r.path_prefix,
                "methods": r.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>()),
                "accept": r.accept.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "plan": r.plan,
                "upstream": without_userinfo(&r.upstream.url.to_string()),
                "limits": {
                    "rate": r.limits.rate.map(|x| format!("{}/{}", x.count, secs(x.per))),
                    "total_rate": r.limits.total_rate.map(|x| format!("{}/{}", x.count, secs(x.per))),
                    "concurrency": r.limits.concurrency,
                },
            })
        })
        .collect();
    let state = match &c.state.backend {
        crate::config::StateBackend::Embedded => json!({
            "backend": "embedded",
            "path": c.state.path.as_ref().map(|p| p.display().to_string()),
        }),
        crate::config::StateBackend::Redis { url, prefix } => json!({
            "backend": "redis",
            "url": url.redacted(),
            "prefix": prefix,
        }),
    };
    json!({
        "source": c.source.display().to_string(),
        "listen": { "addr": c.listen.addr.to_string(), "tls": tls(&c.listen.tls), "workers": c.listen.workers },
        "admin": { "addr": c.admin.addr.to_string(), "allow": c.admin.allow, "tls": tls(&c.admin.tls) },
        "audit": { "sink": match &c.audit.sink {
            crate::audit::AuditSink::Stdout => "stdout".to_owned(),
            crate::audit::AuditSink::File(p) => p.display().to_string(),
        } },
        "issuer": c.issuer.as_ref().map(|i| json!({
            "url": i.url, "spiffe_id": i.spiffe_id, "ttl": secs(i.ttl),
            "keys": i.keys.iter().map(|k| k.display().to_string()).collect::<Vec<_>>(),
        })),
        "trust": c.trust.iter().map(|t| t.trust_domain.to_string()).collect::<Vec<_>>(),
        "credentials": c.credentials.iter().map(|k| json!({ "name": &*k.name, "kind": k.kind().as_str() })).collect::<Vec<_>>(),
        "routes": routes,
        "state": state,
        "plans": c.plans.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
    })
}

/// Names and contents of the config file and of the regular files in `plans` (sorted; through
/// symlinks, as Kubernetes mounts them). An unreadable file hashes as such: its recovery is a
/// change too.
fn fingerprint(config: &std::path::Path, plans: Option<&std::path::Path>) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let mut add = |p: &std::path::Path| {
        h.update(p.as_os_str().as_encoded_bytes());
        match std::fs::read(p) {
            Ok(bytes) => {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => {
                h.update(b"\0unreadable");
            }
        }
    };
    add(config);
    if let Some(dir) = plans {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files.iter().filter(|f| f.is_file()) {
            add(f);
        }
    }
    h.finalize()
}

/// A URL with any `user:password@` replaced by `***@`.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest.get(..end).and_then(|auth| auth.rfind('@')) {
                Some(at) => format!("{scheme}://***@{}", rest.get(at + 1..).unwrap_or_default()),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// When the last reload ran, what started it, and its result.
type LastReload = (SystemTime, Trigger, Outcome);

/// Applies reloads: owns the generation serving now.
pub struct Reloader {
    path: PathBuf,
    shared: Shared,
    live: Arc<Live>,
    ops: Arc<ArcSwap<Ops>>,
    /// Shared, so a reload builds the next generation from it without holding the lock.
    current: Mutex<Arc<Generation>>,
    generation: AtomicU64,
    /// When the serving generation was loaded, and the last reload's result.
    loaded_at: Mutex<(SystemTime, Option<LastReload>)>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
    /// Watchers of earlier generations: they end by themselves once their generation is gone
    /// (they hold it weakly); stopped at shutdown.
    retired: Mutex<Vec<JoinHandle<()>>>,
    /// Content hash of the config file and plans directory as last read by a reload (or at
    /// start): the `[reload] watch` compares against it.
    seen: Mutex<Option<blake3::Hash>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Lock a mutex whose data stays consistent even if a holder panicked (none does).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Reloader {
    pub(crate) fn new(
        shared: Shared,
        first: Generation,
        live: Arc<Live>,
        ops: Arc<ArcSwap<Ops>>,
    ) -> Self {
        shared.metrics.config_generation.set(1.0);
        Reloader {
            path: first.config.source.clone(),
            shared,
            live,
            ops,
            current: Mutex::new(Arc::new(first)),
            generation: AtomicU64::new(1),
            loaded_at: Mutex::new((SystemTime::now(), None)),
            busy: tokio::sync::Mutex::new(()),
            retired: Mutex::new(Vec::new()),
            seen: Mutex::new(None),
        }
    }

    /// `[reload] watch`: hash the config file and the plans directory every interval and
    /// reload when the content changed. Content, not `stat`: a Kubernetes ConfigMap update is a
    /// symlink swap that may keep sizes and times, and a swap to equal content is no change.
    pub(crate) fn spawn_watch(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let (every, plans) = {
            let current = lock(&self.current);
            (
                current.config.reload.watch?,
                current.config.reload.plans_dir.clone(),
            )
        };
        // What was loaded at start is the baseline (read here, before serving, once).
        *lock(&self.seen) = Some(fingerprint(&self.path, plans.as_deref()));
        let weak = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { break };
                let now = me.fingerprint().await;
                let changed = {
                    let mut seen = lock(&me.seen);
                    let changed = seen.is_some_and(|s| s != now);
                    if seen.is_none() {
                        *seen = Some(now);
                    }
                    changed
                };
                if changed {
                    let _ = me.reload(Trigger::Watch).await;
                }
            }
        }))
    }

    /// The hash of the config file and of every file in the current plans directory.
    async fn fingerprint(&self) -> blake3::Hash {
        let path = self.path.clone();
        let plans = lock(&self.current).config.reload.plans_dir.clone();
        tokio::task::spawn_blocking(move || fingerprint(&path, plans.as_deref()))
            .await
            .unwrap_or_else(|_| blake3::hash(b"unreadable"))
    }

    /// The serving generation's number (1 at start).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reopen the audit file (logrotate's `postrotate`).
    pub fn reopen_audit(&self) {
        self.shared.auditor.reopen();
    }

    /// Stop every file watcher (shutdown).
    pub(crate) fn stop(&self) {
        // Called once the listener has drained: no request will write an audit line any more.
        self.shared.auditor.close();
        for w in lock(&self.retired).drain(..) {
            w.abort();
        }
        let current = lock(&self.current);
        current.sweeper.abort();
        for w in lock(&current.watchers).drain(..) {
            w.abort();
        }
    }

    /// Read, check, build and swap. The caller holds `busy`.
    async fn run(&self, trigger: Trigger) -> Outcome {
        // Before reading: an edit made while this reload runs is seen by the next tick.
        let before = self.fingerprint().await;
        *lock(&self.seen) = Some(before);
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(&path)).await;
        let refused = |problems: Vec<String>| {
            let outcome = Outcome::Refused {
                generation: self.generation(),
                problems,
            };
            self.record(&mut lock(&self.loaded_at), trigger, &outcome);
            outcome
        };
        let config = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(invalid)) => {
                return refused(invalid.0.iter().map(ToString::to_string).collect())
            }
            Err(e) => return refused(vec![format!("reading the configuration: {e}")]),
        };
        // Reloads are serialized (`busy`): nothing else replaces `current` meanwhile, so the
        // build runs without the lock and `describe` is never kept waiting by it.
        let previous = lock(&self.current).clone();
        let restart = restart_required(&previous.config, &config);
        let warnings = config.warnings.clone();
        let next = match build(config, &self.shared, Some(&previous)) {
            Ok(g) => g,
            Err(e) => {
                let text = format!("{e:#}");
                return refused(text.lines().map(str::to_owned).collect());
            }
        };
        // Swapped and published under both locks (in the order `describe` takes them): the
        // configuration, its generation and the result are seen together or not at all.
        let mut current = lock(&self.current);
        let mut at = lock(&self.loaded_at);
        self.live.0.store(next.gateway.clone());
        self.ops.store(next.ops.clone());
        let old = std::mem::replace(&mut *current, Arc::new(next));
        let outcome = Outcome::Applied {
            generation: self.generation() + 1,
            restart_required: restart,
            warnings,
        };
        self.record(&mut at, trigger, &outcome);
        drop(at);
        drop(current);
        self.retire(old);
        outcome
    }

    /// The old generation's sweeper holds its limiters strongly: stop it. Its file watchers hold
    /// their targets weakly and end once the last request under it is done.
    fn retire(&self, old: Arc<Generation>) {
        old.sweeper.abort();
        let mut retired = lock(&self.retired);
        retired.retain(|w| !w.is_finished());
        retired.append(&mut lock(&old.watchers));
    }

    /// Publish a result: generation, metrics, `last_reload`, logs.
    fn record(
        &self,
        at: &mut (SystemTime, Option<LastReload>),
        trigger: Trigger,
        outcome: &Outcome,
    ) {
        let m = &self.shared.metrics;
        m.config_reload_total.with(&[outcome.result()]).inc();
        let now = SystemTime::now();
        match outcome {
            Outcome::Applied {
                generation,
                restart_required,
                ..
            } => {
                self.generation.store(*generation, Ordering::Release);
                m.config_generation.set(*generation as f64);
                at.0 = now;
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation,
                    "configuration reloaded"
                );
                for r in restart_required {
                    tracing::warn!(trigger = trigger.as_str(), "{r}");
                }
            }
            Outcome::Refused {
                generation,
                problems,
            } => {
                tracing::error!(
                    trigger = trigger.as_str(),
                    generation,
                    problems = problems.len(),
                    "configuration reload refused; the previous configuration keeps serving"
                );
                for p in problems {
                    tracing::error!(trigger = trigger.as_str(), "{p}");
                }
            }
        }
        at.1 = Some((now, trigger, outcome.clone()));
    }
}

impl ConfigControl for Reloader {
    fn reload(&self, trigger: Trigger) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            // One at a time, numbered and recorded before the next starts.
            let _one = self.busy.lock().await;
            self.run(trigger).await
        })
    }

    fn describe(&self) -> Value {
        // Both locks, in the order a reload takes them: configuration, generation and result
        // agree.
        let current = lock(&self.current);
        let at = lock(&self.loaded_at);
        let config = redacted(&current.config);
        let stamp = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        let last = at.1.as_ref().map(|(when, trigger, outcome)| {
            let mut v = outcome.to_json();
            if let Some(o) = v.as_object_mut() {
                o.insert("at".into(), json!(stamp(*when)));
                o.insert("trigger".into(), json!(trigger.as_str()));
            }
            v
        });
        json!({
            "generation": self.generation(),
            "loaded_at": stamp(at.0),
            "last_reload": last,
            "config": config,
        })
    }
}

#[cfg(test)]
mod tests;
