//! The reverse-proxy stage: a pooled client per route (HTTP/1.1, and h2 when an https upstream
//! offers it by ALPN), bodies streamed both ways with back-pressure, and upstream failures mapped
//! to 502/504.

pub mod headers;
mod pool;
pub mod settings;

#[cfg(test)]
pub(crate) use pool::relayed_for_tests;
pub use pool::Relayed;

use rustls_pki_types::pem::PemObject;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyBody;
use crate::problem::{Code, Refusal};
use settings::UpstreamConfig;

/// Why building an upstream client failed (at start, never per request).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading upstream CA file {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error("upstream CA file {0} holds no usable certificate")]
    EmptyCa(String),
    #[error("TLS client setup: {0}")]
    Tls(#[from] rustls::Error),
}

type PooledClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// A request for the upstream, without its body: the method, the absolute target and the head
/// as [`headers::to_upstream`] described it (the caller's fields, those withheld, the gateway's).
#[derive(Debug)]
pub struct Outbound {
    pub method: http::Method,
    pub uri: Uri,
    /// Boxed (moved through the pipeline's and the client's futures), the box kept for the
    /// thread's next request once the exchange is over ([`headers::UpstreamHead::recycle`]).
    pub head: Box<headers::UpstreamHead>,
}

impl Outbound {
    /// The request for hyper's client (https upstreams): the same fields, in a map.
    fn into_request(self, body: ProxyBody) -> Request<ProxyBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.head.into_map();
        req
    }
}

/// Upstream connection pools per route: one per data-plane worker (slot 0 for other threads),
/// built on first use. A pooled connection's task runs on the worker that opened it; keeping each
/// worker on its own pool keeps a proxied request on one thread (see `transport::workers`).
const POOL_SLOTS: usize = 65;

/// What a route's upstream connections need besides the config: the certificate to present
/// (`client_cert`), how to verify the upstream (`server_spiffe_id`), and the agent's JWT-SVIDs
/// (`token_source = "workload-api"`). Built by the server.
#[derive(Default, Clone)]
pub struct Identity {
    pub client_cert: Option<Arc<dyn crate::spiffe::workload::CertSource>>,
    pub verifier: Option<Arc<dyn rustls::client::danger::ServerCertVerifier>>,
    pub agent_tokens: Option<Arc<crate::token::agent::AgentTokens>>,
}

/// One pool and the client certificate its connections were opened with: when the certificate
/// rotates, the next request builds a new pool, and the old one (idle connections included) is
/// dropped once its requests in flight finish. Connections opened with a rotated SVID are never
/// reused.
struct Pool {
    cert: Option<Arc<rustls::sign::CertifiedKey>>,
    client: PooledClient,
}

/// How the upstream's certificate is checked.
#[derive(Clone)]
enum Verify {
    Roots(Arc<rustls::RootCertStore>),
    Custom(Arc<dyn rustls::client::danger::ServerCertVerifier>),
}

/// A route's upstream: where it is and pooled clients to reach it.
pub struct Upstream {
    http: HttpConnector,
    verify: Verify,
    client_cert: Option<Arc<dyn crate::spiffe::workload::CertSource>>,
    agent_tokens: Option<Arc<crate::token::agent::AgentTokens>>,
    clients: Box<[arc_swap::ArcSwapOption<Pool>]>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    host_header: HeaderValue,
    timeout: Duration,
    /// A plain `http` upstream's per-worker HTTP/1.1 pool (`pool`); `https` upstreams (TLS,
    /// client certificates that rotate, h2 by ALPN) go through `clients`.
    h1: Option<Arc<pool::H1Pool>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

pub fn root_store(ca: Option<&std::path::Path>) -> Result<rustls::RootCertStore, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| BuildError::Ca {
                path: path.display().to_string(),
                source,
            })?;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
                roots.add(cert)?;
            }
            if roots.is_empty() {
                return Err(BuildError::EmptyCa(path.display().to_string()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A broken system certificate is not our caller's problem; skip it.
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

impl Upstream {
    /// Build the client for one route's upstream (no client certificate, CA validation).
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, BuildError> {
        Self::with_identity(cfg, Identity::default())
    }

    /// Build the client for one route's upstream with its TLS identity and token source.
    pub fn with_identity(cfg: &UpstreamConfig, id: Identity) -> Result<Self, BuildError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let verify = match id.verifier {
            Some(v) => Verify::Custom(v),
            None => Verify::Roots(Arc::new(root_store(cfg.ca.as_deref())?)),
        };
        let host_header = HeaderValue::from_str(cfg.authority.as_str())
            .unwrap_or(HeaderValue::from_static("upstream"));
        let h1 = (cfg.scheme == http::uri::Scheme::HTTP)
            .then(|| {
                Uri::builder()
                    .scheme(cfg.scheme.clone())
                    .authority(cfg.authority.clone())
                    .path_and_query("/")
                    .build()
                    .ok()
            })
            .flatten()
            .map(|target| Arc::new(pool::H1Pool::new(http.clone(), target)));
        let me = Upstream {
            http,
            verify,
            client_cert: id.client_cert,
            agent_tokens: id.agent_tokens,
            clients: (0..POOL_SLOTS)
                .map(|_| arc_swap::ArcSwapOption::empty())
                .collect(),
            scheme: cfg.scheme.clone(),
            authority: cfg.authority.clone(),
            base_path: cfg.base_path.clone(),
            host_header,
            timeout: cfg.timeout,
            h1,
        };
        // Fail at start, not on the first request, if the TLS settings cannot work.
        me.build_client(me.client_cert.as_ref().map(|c| c.current()))?;
        Ok(me)
    }

    /// The agent's JWT-SVIDs, when the route's token comes from the Workload API.
    pub fn agent_tokens(&self) -> Option<&Arc<crate::token::agent::AgentTokens>> {
        self.agent_tokens.as_ref()
    }

    fn build_client(
        &self,
        cert: Option<Arc<rustls::sign::CertifiedKey>>,
    ) -> Result<PooledClient, BuildError> {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?;
        let builder = match &self.verify {
            Verify::Roots(roots) => builder.with_root_certificates(roots.clone()),
            Verify::Custom(v) => builder
                .dangerous()
                .with_custom_certificate_verifier(v.clone()),
        };
        let tls = match cert {
            Some(ck) => {
                builder.with_client_cert_resolver(Arc::new(crate::conn::FixedClientCert(ck)))
            }
            None => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(self.http.clone());
        Ok(Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .set_host(false)
            .build(connector))
    }

    /// The pool of the worker running this thread, for the current client certificate.
    fn client(&self) -> Result<Arc<Pool>, Refusal> {
        let slot = crate::conn::worker_index() % POOL_SLOTS;
        // `slot < POOL_SLOTS == clients.len()`: never the error.
        let Some(cell) = self.clients.get(slot) else {
            return Err(Refusal::new(
                Code::UpstreamUnavailable,
                "no upstream connection pool",
            ));
        };
        let cert = self.client_cert.as_ref().map(|c| c.current());
        if let Some(pool) = cell.load_full() {
            let same = match (&pool.cert, &cert) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if same {
                return Ok(pool);
            }
        }
        let client = self.build_client(cert.clone()).map_err(|e| {
            tracing::error!(error = %e, upstream = %self.authority, "building the upstream TLS client failed");
            Refusal::new(Code::UpstreamUnavailable, "no upstream connection pool")
        })?;
        let pool = Arc::new(Pool { cert, client });
        cell.store(Some(pool.clone()));
        Ok(pool)
    }

    /// The `Host` header value the upstream should see.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// The absolute URI for a normalized path and the query of the caller's target `raw`. When
    /// the upstream has no base path and `raw`'s path is the normalized one (the usual case),
    /// `raw`'s path and query are reused as they are, without building and parsing them again.
    pub fn uri_for(&self, path: &str, raw: &Uri) -> Result<Uri, Refusal> {
        match raw.path_and_query() {
            Some(pq) if self.base_path.is_empty() && pq.path() == path => {
                // The parts set at once: `Uri::builder` moves them through a `Result` per step.
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(self.scheme.clone());
                parts.authority = Some(self.authority.clone());
                parts.path_and_query = Some(pq.clone());
                Uri::from_parts(parts)
                    .map_err(|_| Refusal::new(Code::InvalidRequest, "unusable request target"))
            }
            _ => self.uri(path, raw.query()),
        }
    }

    /// The absolute URI for a normalized path and the caller's raw query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, Refusal> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq)
            .map_err(|_| Refusal::new(Code::InvalidRequest, "unusable request target"))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| Refusal::new(Code::InvalidRequest, "unusable request target"))
    }

    /// Send and wait for the response head (bounded by the route's timeout from `sent_at`, the
    /// instant the caller reads for the upstream's latency anyway). `body_tripped` is
    /// the flag of a [`crate::body::Limited`] request body: set means the caller sent too much.
    /// The answer's fields come beside the response from a plain `http` upstream's pool (see
    /// [`Relayed`]), in its map from hyper's client.
    pub async fn send(
        &self,
        mut req: Outbound,
        body: ProxyBody,
        body_tripped: Option<&std::sync::atomic::AtomicBool>,
        sent_at: std::time::Instant,
    ) -> Result<(Response<ProxyBody>, Option<Relayed>), Refusal> {
        let result = match &self.h1 {
            // Without the flag, the body is empty or buffered: it may be sent twice. The pool
            // keeps the deadline on the connection's own reused timer (see `pool::Conn`).
            Some(h1) => {
                let deadline = tokio::time::Instant::from_std(sent_at) + self.timeout;
                let sent = h1
                    .send(&mut req, body, body_tripped.is_none(), deadline)
                    .await;
                // The description's box serves the thread's next request.
                req.head.recycle();
                sent.map(|(resp, relayed)| (resp, Some(relayed)))
                    .map_err(Failed::Plain)
            }
            None => {
                let pool = self.client()?;
                let req = req.into_request(body);
                match tokio::time::timeout(self.timeout, pool.client.request(req)).await {
                    Ok(r) => r
                        .map(|mut resp| {
                            // The pool's answers come filtered already.
                            headers::to_caller(resp.headers_mut());
                            (resp.map(|b| b.map_err(Into::into).boxed()), None)
                        })
                        .map_err(Failed::Legacy),
                    // The same outcome as the pool's own deadline.
                    Err(_) => Err(Failed::Plain(pool::Failure::TimedOut)),
                }
            }
        };
        let too_large = || body_tripped.is_some_and(|t| t.load(Ordering::Acquire));
        match result {
            Err(Failed::Plain(pool::Failure::TimedOut)) => Err(Refusal::new(
                Code::UpstreamTimeout,
                "the upstream did not answer in time",
            )
            .retry_after(1)),
            Err(_) if too_large() => Err(Refusal::new(
                Code::PayloadTooLarge,
                "request body exceeds this route's limit",
            )
            .closing()),
            Err(e) => Err(self.failed(&e)),
            Ok(resp) => Ok(resp),
        }
    }

    /// The refusal for an upstream request that got no response head.
    fn failed(&self, e: &Failed) -> Refusal {
        let err = e.error();
        tracing::warn!(error = %ErrorChain(err), upstream = %self.authority, "upstream request failed");
        if let Some(id) = crate::spiffe::upstream::identity_failure(err) {
            // The handshake failed before a byte of the request was sent.
            return Refusal::new(
                Code::UpstreamUnavailable,
                "the upstream's identity could not be verified",
            )
            .audit_reason(id.reason());
        }
        let detail = if e.is_connect() {
            "could not connect to the upstream"
        } else {
            "the upstream connection failed"
        };
        Refusal::new(Code::UpstreamUnavailable, detail).retry_after(1)
    }
}

/// Why an upstream request got no response head, from either client.
enum Failed {
    Legacy(hyper_util::client::legacy::Error),
    Plain(pool::Failure),
}

impl Failed {
    fn is_connect(&self) -> bool {
        match self {
            Failed::Legacy(e) => e.is_connect(),
            Failed::Plain(f) => f.is_connect(),
        }
    }

    fn error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Failed::Legacy(e) => e,
            Failed::Plain(f) => f.error(),
        }
    }
}

/// Display an error with its sources (`a: b: c`), for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}
