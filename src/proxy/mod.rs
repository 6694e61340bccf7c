//! The reverse-proxy stage: a pooled client per route (HTTP/1.1, and h2 when an https upstream
//! offers it by ALPN), bodies streamed both ways with back-pressure, and upstream failures mapped
//! to 502/504.

pub mod headers;
pub mod settings;

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

/// Upstream connection pools per route: one per data-plane worker (slot 0 for other threads),
/// built on first use. A pooled connection's task runs on the worker that opened it; keeping each
/// worker on its own pool keeps a proxied request on one thread (see `transport::workers`).
const POOL_SLOTS: usize = 65;

/// A route's upstream: where it is and pooled clients to reach it.
pub struct Upstream {
    connector: HttpsConnector<HttpConnector>,
    clients: Box<[std::sync::OnceLock<PooledClient>]>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    host_header: HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

fn root_store(ca: Option<&std::path::Path>) -> Result<rustls::RootCertStore, BuildError> {
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
    /// Build the client for one route's upstream.
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, BuildError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(cfg.ca.as_deref())?)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let host_header = HeaderValue::from_str(cfg.authority.as_str())
            .unwrap_or(HeaderValue::from_static("upstream"));
        Ok(Upstream {
            connector,
            clients: (0..POOL_SLOTS)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            scheme: cfg.scheme.clone(),
            authority: cfg.authority.clone(),
            base_path: cfg.base_path.clone(),
            host_header,
            timeout: cfg.timeout,
        })
    }

    /// The pool of the worker running this thread.
    fn client(&self) -> Result<&PooledClient, Refusal> {
        let slot = crate::conn::worker_index() % POOL_SLOTS;
        let build = || {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .set_host(false)
                .build(self.connector.clone())
        };
        // `slot < POOL_SLOTS == clients.len()`: never the error.
        match self.clients.get(slot) {
            Some(cell) => Ok(cell.get_or_init(build)),
            None => Err(Refusal::new(
                Code::UpstreamUnavailable,
                "no upstream connection pool",
            )),
        }
    }

    /// The `Host` header value the upstream should see.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
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

    /// Send and wait for the response head (bounded by the route's timeout). `body_tripped` is
    /// the flag of a [`crate::body::Limited`] request body: set means the caller sent too much.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        body_tripped: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let result = tokio::time::timeout(self.timeout, self.client()?.request(req)).await;
        let too_large = || body_tripped.is_some_and(|t| t.load(Ordering::Acquire));
        match result {
            Err(_) => Err(Refusal::new(
                Code::UpstreamTimeout,
                "the upstream did not answer in time",
            )
            .retry_after(1)),
            Ok(Err(_)) if too_large() => Err(Refusal::new(
                Code::PayloadTooLarge,
                "request body exceeds this route's limit",
            )
            .closing()),
            Ok(Err(e)) => {
                tracing::warn!(error = %ErrorChain(&e), upstream = %self.authority, "upstream request failed");
                let detail = if e.is_connect() {
                    "could not connect to the upstream"
                } else {
                    "the upstream connection failed"
                };
                Err(Refusal::new(Code::UpstreamUnavailable, detail).retry_after(1))
            }
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                headers::to_caller(&mut parts.headers);
                Ok(Response::from_parts(
                    parts,
                    body.map_err(Into::into).boxed(),
                ))
            }
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
