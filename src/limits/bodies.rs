//! Request bodies the gateway reads whole before forwarding (validation, webhook signatures, the
//! token endpoint's form): a deadline, a minimum rate and a memory budget, so that callers who
//! have not been authenticated yet (or never will be) cannot hold connections or memory by
//! sending a head and then nothing, or a trickle (docs/security.md, "Bodies, headers and
//! validation").
//!
//! - **Deadline**: the whole body within `body_timeout` of the gateway starting to read it.
//! - **Minimum rate**: after a grace of [`RATE_GRACE`], the bytes received must keep up with
//!   `body_min_rate` per second on average (Apache's `mod_reqtimeout` `MinRate` model: each
//!   `min_rate` bytes buys one more second). A trickle that always makes *some* progress is cut.
//!   Both end in 408 `request-timeout` and the connection is closed.
//! - **Memory**: bytes held by bodies being read (and until their request is answered) count
//!   against a global cap and a per-source cap (IPv4 address or IPv6 /64); a frame that would
//!   exceed either is refused with 503 `overloaded` + `Retry-After` and the connection closed.
//!   The bytes are counted as they arrive, not as declared: a `Content-Length` costs nothing
//!   until the bytes are there, and the deadline bounds how long that can take.
//!
//! Bodies streamed to the upstream (after authentication and authorization) are not held in
//! memory; [`Idle`] cuts one that sends nothing for `body_timeout` (408 if the upstream has not
//! answered yet), so a stalled upload cannot hold an upstream connection indefinitely.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::time::{Instant, Sleep};

use crate::body::{BoxError, ProxyBody};

use crate::problem::{Code, Refusal};

/// How long a body may take before the minimum rate applies (a slow start is normal).
pub const RATE_GRACE: Duration = Duration::from_secs(2);

/// `[listen]` `body_timeout`, `body_min_rate`, `max_buffered_bodies`, `max_buffered_per_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPolicy {
    pub timeout: Duration,
    /// Bytes per second; 0: no minimum rate.
    pub min_rate: u64,
    pub max_total: usize,
    pub max_per_source: usize,
}

/// Bytes held now, in total and per source.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The shared budget of one listener. Cheap to consult: one short lock per body frame.
#[derive(Debug)]
pub struct BodyBudget {
    policy: BodyPolicy,
    held: Mutex<Held>,
}

/// Bytes a body holds against the budget; released when dropped.
#[derive(Debug)]
pub struct Lease {
    budget: Arc<BodyBudget>,
    source: IpAddr,
    bytes: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.source, self.bytes);
        }
    }
}

impl BodyBudget {
    pub fn new(policy: BodyPolicy) -> Arc<Self> {
        Arc::new(BodyBudget {
            policy,
            held: Mutex::new(Held::default()),
        })
    }

    /// Bytes held by all buffered bodies now (for tests and metrics).
    pub fn held(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // The counters stay consistent under a panic elsewhere: each update is one statement.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add `n` bytes to `lease`, or refuse when either cap would be exceeded.
    fn reserve(&self, lease: &mut Lease, n: usize) -> Result<(), Refusal> {
        let mut held = self.lock();
        let total = held.total.saturating_add(n);
        let mine = held.by_source.get(&lease.source).copied().unwrap_or(0);
        let mine = mine.saturating_add(n);
        if total > self.policy.max_total || mine > self.policy.max_per_source {
            return Err(Refusal::new(
                Code::Overloaded,
                "the gateway is holding too many unfinished request bodies; try again shortly",
            )
            .retry_after(1)
            .closing());
        }
        held.total = total;
        held.by_source.insert(lease.source, mine);
        lease.bytes = lease.bytes.saturating_add(n);
        Ok(())
    }

    fn release(&self, source: IpAddr, n: usize) {
        let mut held = self.lock();
        held.total = held.total.saturating_sub(n);
        let left = held
            .by_source
            .get(&source)
            .copied()
            .unwrap_or(0)
            .saturating_sub(n);
        if left == 0 {
            held.by_source.remove(&source);
        } else {
            held.by_source.insert(source, left);
        }
    }

    /// When the body must be complete, given `received` bytes since `start`.
    fn deadline(&self, start: Instant, received: u64) -> Instant {
        let total = start + self.policy.timeout;
        if self.policy.min_rate == 0 {
            return total;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.policy.min_rate as f64);
        total.min(start + RATE_GRACE + earned)
    }

    /// Read `body` whole: at most `limit` bytes (413), within the deadline and rate (408), within
    /// the memory caps (503). The lease holds the bytes against the budget until dropped: keep it
    /// until the request is answered.
    pub async fn read<B>(
        self: &Arc<Self>,
        source: IpAddr,
        body: B,
        limit: u64,
    ) -> Result<(Bytes, Lease), Refusal>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
    {
        let mut body = body;
        let mut lease = Lease {
            budget: self.clone(),
            source: super::source::source_key(source),
            bytes: 0,
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let start = Instant::now();
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut received = 0usize;
        loop {
            let due = self.deadline(start, received as u64);
            let frame = match tokio::time::timeout_at(due, body.frame()).await {
                Err(_) => {
                    return Err(Refusal::new(
                        Code::RequestTimeout,
                        "the request body did not arrive in time",
                    )
                    .closing())
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    return Err(Refusal::new(
                        Code::InvalidRequest,
                        "the request body could not be read",
                    )
                    .closing())
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers: not part of the body
            };
            received = received.saturating_add(data.len());
            if received > limit {
                return Err(Refusal::new(
                    Code::PayloadTooLarge,
                    format!("this route accepts bodies up to {limit} bytes"),
                )
                .closing());
            }
            self.reserve(&mut lease, data.len())?;
            chunks.push(data);
        }
        let bytes = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        };
        Ok((bytes, lease))
    }
}

/// The caller's streamed body sent nothing for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled")]
pub struct Stalled;

pin_project_lite::pin_project! {
    /// A streamed request body that fails with [`Stalled`] once it has been waiting for the
    /// caller longer than `idle`; `stalled` tells the proxy stage why the upstream request failed.
    pub struct Idle<B> {
        #[pin]
        inner: B,
        idle: Duration,
        timer: Pin<Box<Sleep>>,
        // The clock starts when the upstream first asks for the body, not while connecting.
        armed: bool,
        stalled: Arc<AtomicBool>,
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if !*this.armed {
            *this.armed = true;
            this.timer.as_mut().reset(Instant::now() + *this.idle);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.stalled.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl BodyBudget {
    /// Wrap a request body streamed to the upstream in the idle timeout (`body_timeout`).
    pub fn idle(
        &self,
        req: http::Request<ProxyBody>,
    ) -> (http::Request<ProxyBody>, Arc<AtomicBool>) {
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        let idle = self.policy.timeout;
        let req = req.map(|inner| {
            Idle {
                inner,
                idle,
                timer: Box::pin(tokio::time::sleep(idle)),
                armed: false,
                stalled: flag,
            }
            .boxed()
        });
        (req, stalled)
    }
}

/// The upstream request failed because the caller's streamed body stalled: 408, not 502/504.
pub fn stalled_refusal(stalled: Option<&AtomicBool>) -> Option<Refusal> {
    stalled
        .filter(|s| s.load(Ordering::Acquire))
        .map(|_| Refusal::new(Code::RequestTimeout, "the request body stopped arriving").closing())
}

#[cfg(test)]
mod tests;
