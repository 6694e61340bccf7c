//! Body types: one boxed body for every response, the caller's request body as whichever HTTP
//! core read it, and a request body that enforces `max_body` while streaming (for chunked
//! requests whose size is not known up front).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors flowing through bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the gateway produces and every request it forwards.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(b: Bytes) -> ProxyBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request body read by the gateway's own HTTP/1.1 core (`transport::h1`): boxed so that this
/// base type names nothing of the wiring.
pub type NativeBody = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + Sync>>;

/// The caller's request body, as the pipeline receives it from the data listener: hyper's (h2,
/// and HTTP/1.1 with the fallback `http1_engine = "hyper"`) or the native core's. `is_end_stream` and
/// `size_hint` are the core's own, exact: `validate::has_body` and the 413 logic read them.
pub enum CallerBody {
    Hyper(hyper::body::Incoming),
    /// A request without a body (no `Content-Length`, `Content-Length: 0`): nothing to read, and
    /// nothing allocated for it.
    Empty,
    Native(NativeBody),
}

impl std::fmt::Debug for CallerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallerBody::Hyper(_) => "CallerBody::Hyper",
            CallerBody::Empty => "CallerBody::Empty",
            CallerBody::Native(_) => "CallerBody::Native",
        })
    }
}

impl From<hyper::body::Incoming> for CallerBody {
    fn from(b: hyper::body::Incoming) -> Self {
        CallerBody::Hyper(b)
    }
}

impl Body for CallerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            CallerBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            CallerBody::Empty => Poll::Ready(None),
            CallerBody::Native(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            CallerBody::Hyper(b) => b.is_end_stream(),
            CallerBody::Empty => true,
            CallerBody::Native(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            CallerBody::Hyper(b) => b.size_hint(),
            CallerBody::Empty => SizeHint::with_exact(0),
            CallerBody::Native(b) => b.size_hint(),
        }
    }
}

/// The request body grew past the route's `max_body`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the route's max_body of {limit} bytes")]
pub struct TooLarge {
    pub limit: u64,
}

pin_project_lite::pin_project! {
    /// Counts bytes as they stream and fails once `limit` is passed. `tripped` lets the proxy
    /// tell "the caller sent too much" (413) apart from an upstream failure (502).
    pub struct Limited<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
        tripped: Arc<AtomicBool>,
    }
}

impl<B> Limited<B> {
    /// Wrap `inner`; the returned flag turns true when the limit is exceeded.
    pub fn new(inner: B, limit: u64) -> (Self, Arc<AtomicBool>) {
        let tripped = Arc::new(AtomicBool::new(false));
        (
            Limited {
                inner,
                seen: 0,
                limit,
                tripped: tripped.clone(),
            },
            tripped,
        )
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen = this.seen.saturating_add(data.len() as u64);
                    if *this.seen > *this.limit {
                        this.tripped.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(TooLarge { limit: *this.limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|o| o.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
