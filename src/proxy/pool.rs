//! The connection pool of a plain `http` upstream: hyper's connection API
//! (`hyper::client::conn::http1`) with one list of idle senders per thread, instead of
//! hyper-util's legacy `Client`.
//!
//! Why not the legacy client: profiled under `bench/run` (issue 22), its checkout (a pool behind
//! a mutex keyed by scheme and authority, a checkout future racing a connect future, a task
//! spawned per response to wait until the connection can be reused and put it back) was the
//! largest user-space cost of a proxied request after hyper's own parsing. Here a checkout is a
//! `pop` from the current thread's list (a [`ThreadLocal`] inside the upstream: no lock, no
//! cross-thread wake), a connection's task runs on the worker that opened it (the data plane's
//! runtimes are single-threaded, `transport::workers`), and the response body puts its sender
//! back when it ends: no task per response.
//!
//! What the legacy client did and this keeps: idle connections are closed after
//! [`IDLE_TIMEOUT`] (a timer per connection, not per request) and at most [`MAX_IDLE`] wait per
//! thread; a connection the upstream closes (`Connection: close`, an error, EOF) is never handed
//! out again; a request that a reused connection refused before a byte was written is retried
//! once on a fresh connection; requests go out in origin form without an added `Host`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use thread_local::ThreadLocal;
use tower_service::Service;

use crate::body::{BoxError, ProxyBody};

/// How long an idle upstream connection is kept (the legacy client's setting, kept).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How many idle connections one thread keeps per upstream (the legacy client's setting).
pub const MAX_IDLE: usize = 256;

/// Why a request did not get a response head.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be opened.
    Connect(BoxError),
    /// The connection failed while sending or waiting for the head.
    Request(hyper::Error),
}

impl Failure {
    pub fn is_connect(&self) -> bool {
        matches!(self, Failure::Connect(_))
    }

    /// The error, for logs.
    pub fn error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Failure::Connect(e) => e.as_ref(),
            Failure::Request(e) => e,
        }
    }
}

/// A plain-HTTP upstream's connections.
pub struct H1Pool {
    connector: HttpConnector,
    /// `http://authority/`: what the connector resolves and connects to.
    target: Uri,
    idle: ThreadLocal<RefCell<VecDeque<Pooled>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// A sender and the idle clock its connection's reaper reads.
struct Pooled {
    sender: http1::SendRequest<ProxyBody>,
    idle_since: Arc<AtomicU64>,
}

/// `idle_since` of a connection that is in use.
const BUSY: u64 = u64::MAX;

/// Milliseconds on a monotonic clock that starts with the first call.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(BUSY - 1)
}

impl H1Pool {
    pub fn new(connector: HttpConnector, target: Uri) -> Self {
        Self::with_limits(connector, target, MAX_IDLE, IDLE_TIMEOUT)
    }

    pub fn with_limits(
        connector: HttpConnector,
        target: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        H1Pool {
            connector,
            target,
            idle: ThreadLocal::new(),
            max_idle,
            idle_timeout,
        }
    }

    /// How many idle connections this thread holds.
    #[cfg(test)]
    pub fn idle_here(&self) -> usize {
        self.idle.get().map_or(0, |l| l.borrow().len())
    }

    /// Send `req` (its URI absolute or origin form) and wait for the response head. The
    /// response's body puts the connection back into this thread's list when it ends.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Failure> {
        // hyper's connection API writes the URI as given: the upstream gets origin form.
        if req.uri().scheme().is_some() {
            let pq = req.uri().path_and_query().cloned();
            *req.uri_mut() = pq.map_or_else(|| Uri::from_static("/"), Uri::from);
        }
        *req.version_mut() = Version::HTTP_11;
        if let Some(mut pooled) = self.checkout() {
            match pooled.sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap(resp, pooled)),
                // Refused before a byte was written (the upstream closed it while idle): once
                // more on a fresh connection, as the legacy client did.
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(Failure::Request(e.into_error())),
                },
            }
        }
        let mut pooled = self.connect().await?;
        pooled.sender.ready().await.map_err(Failure::Request)?;
        match pooled.sender.send_request(req).await {
            Ok(resp) => Ok(self.wrap(resp, pooled)),
            Err(e) => Err(Failure::Request(e)),
        }
    }

    /// The most recently used idle connection of this thread that can take a request now.
    /// Closed ones are dropped; one still finishing its previous exchange (the caller's body
    /// still uploading after an early response) stays for later.
    fn checkout(&self) -> Option<Pooled> {
        let list = self.idle.get()?;
        let mut list = list.borrow_mut();
        let mut busy = 0;
        while busy < list.len() {
            let pooled = list.pop_back()?;
            if pooled.sender.is_closed() {
                continue;
            }
            if pooled.sender.is_ready() {
                pooled.idle_since.store(BUSY, Ordering::Relaxed);
                return Some(pooled);
            }
            list.push_front(pooled);
            busy += 1;
        }
        None
    }

    /// Back into this thread's list, unless closed or the list is full (then it is dropped,
    /// which closes the connection).
    fn put(&self, pooled: Pooled) {
        if pooled.sender.is_closed() {
            return;
        }
        let list = self.idle.get_or(Default::default);
        let mut list = list.borrow_mut();
        if list.len() >= self.max_idle {
            return;
        }
        pooled.idle_since.store(now_ms(), Ordering::Relaxed);
        list.push_back(pooled);
    }

    /// Open a connection; its task runs on this thread's runtime until the connection ends or
    /// has been idle for the idle timeout.
    async fn connect(&self) -> Result<Pooled, Failure> {
        let io = self
            .connector
            .clone()
            .call(self.target.clone())
            .await
            .map_err(|e| Failure::Connect(e.into()))?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(Failure::Request)?;
        let idle_since = Arc::new(AtomicU64::new(BUSY));
        let reaper = reap(idle_since.clone(), self.idle_timeout);
        tokio::spawn(async move {
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "upstream connection ended");
                    }
                }
                () = reaper => {}
            }
        });
        Ok(Pooled { sender, idle_since })
    }

    fn wrap(self: &Arc<Self>, resp: Response<Incoming>, pooled: Pooled) -> Response<ProxyBody> {
        // `Connection: close` (or HTTP/1.0 without keep-alive): hyper closes it after this
        // response; never offer it again.
        let reusable = resp.version() == Version::HTTP_11
            && !resp
                .headers()
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| {
                    v.as_bytes()
                        .split(|b| *b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
                });
        let back = reusable.then(|| (self.clone(), pooled));
        resp.map(|inner| {
            let mut body = Returning { inner, back };
            if body.inner.is_end_stream() {
                body.give_back();
            }
            http_body_util::BodyExt::boxed(body)
        })
    }
}

/// End the connection's task once it has been idle (in a pool, not in use) for `timeout`.
async fn reap(idle_since: Arc<AtomicU64>, timeout: Duration) {
    let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut wait = timeout;
    loop {
        tokio::time::sleep(wait).await;
        let since = idle_since.load(Ordering::Relaxed);
        if since == BUSY {
            wait = timeout;
            continue;
        }
        let idle_for = now_ms().saturating_sub(since);
        if idle_for >= limit {
            return;
        }
        wait = Duration::from_millis(limit - idle_for);
    }
}

/// A response body that puts its connection back into the pool when it ends. Dropped before
/// the end, it drops the sender instead (hyper then closes the connection, whose unread rest
/// could not be reused).
struct Returning {
    inner: Incoming,
    back: Option<(Arc<H1Pool>, Pooled)>,
}

impl Returning {
    fn give_back(&mut self) {
        if let Some((pool, pooled)) = self.back.take() {
            pool.put(pooled);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            // An error ends the connection: the sender is dropped with the body.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
