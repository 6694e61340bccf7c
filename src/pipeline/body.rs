//! The caller's request body as the stages see it: still streaming from the caller, or read whole
//! once some stage had to look at it (a webhook signature, request validation, the token
//! endpoint's form). One value replaces the `Option<Incoming>`/`Option<Bytes>` pair the stages
//! used to pass around and `take()` from: a stage asks for the bytes with
//! [`RequestBody::ensure_buffered`], and whatever is left goes upstream with
//! [`RequestBody::take_for_upstream`].

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http_body::Body as _;
use http_body_util::BodyExt as _;

use crate::body::{empty, full, CallerBody, Limited, ProxyBody};
use crate::limits::bodies::{BodyBudget, Lease};
use crate::problem::{Code, Refusal};

/// Set when a streamed body grew past `max_body` on its way upstream (413, not 502).
pub(super) type Tripped = Option<Arc<std::sync::atomic::AtomicBool>>;

enum State {
    Streaming(CallerBody),
    Buffered(Bytes),
    /// Sent upstream (or drained): nothing left to read.
    Gone,
}

/// The request body, streaming or buffered. A buffered body's bytes stay counted against the
/// listener's body memory budget until this value is dropped, i.e. until the request is answered.
pub struct RequestBody {
    state: State,
    budget: Arc<BodyBudget>,
    source: IpAddr,
    lease: Option<Lease>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Streaming(_) => "streaming",
            State::Buffered(_) => "buffered",
            State::Gone => "gone",
        };
        f.debug_struct("RequestBody")
            .field("state", &state)
            .finish()
    }
}

impl RequestBody {
    /// The body of a request from `source`, read (when it must be) under `budget`.
    pub(super) fn new(body: CallerBody, budget: Arc<BodyBudget>, source: IpAddr) -> Self {
        RequestBody {
            state: State::Streaming(body),
            budget,
            source,
            lease: None,
        }
    }

    /// In decision mode the connection is the front proxy's: the body is counted against the
    /// caller's per-source cap, like its failed logins and rate limits, so that one caller's
    /// bodies cannot use up the cap every caller behind the proxy shares. Before any read.
    pub(super) fn set_source(&mut self, source: IpAddr) {
        if self.lease.is_none() {
            self.source = source;
        }
    }

    /// Read the whole body, once: beyond `limit` bytes 413, slower than the budget's deadline
    /// and minimum rate (`body_timeout`, `body_min_rate`) 408, beyond the body memory caps 503
    /// (all closing the connection; see `limits::bodies`). Later calls return the same bytes.
    pub async fn ensure_buffered(&mut self, limit: u64) -> Result<&Bytes, Refusal> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Streaming(body) => {
                let (bytes, lease) = self.budget.read(self.source, body, limit).await?;
                self.lease = Some(lease);
                self.state = State::Buffered(bytes);
            }
            other => self.state = other,
        }
        match &self.state {
            State::Buffered(bytes) => Ok(bytes),
            // Sent upstream already: no stage reads a body after that.
            _ => Err(Refusal::new(
                Code::InvalidRequest,
                "the request body was already consumed",
            )),
        }
    }

    /// The bytes, when some stage buffered them.
    pub fn buffered(&self) -> Option<&Bytes> {
        match &self.state {
            State::Buffered(b) => Some(b),
            _ => None,
        }
    }

    /// Whether the request carries a body (decided by the body and its framing, never by the
    /// method; see `validate::has_body`).
    pub fn present(&self, parts: &Parts) -> bool {
        match &self.state {
            State::Buffered(b) => !b.is_empty(),
            State::Streaming(b) => crate::validate::has_body(parts, b.is_end_stream()),
            State::Gone => false,
        }
    }

    /// The body for the upstream request: the buffered bytes, or the caller's stream counted
    /// against `max_body` (with the flag that tells an oversized upload from an upstream failure).
    pub(super) fn take_for_upstream(&mut self, max_body: u64) -> (ProxyBody, Tripped) {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Buffered(bytes) => {
                // The lease stays here: the bytes count until the request is answered.
                let body = if bytes.is_empty() {
                    empty()
                } else {
                    full(bytes.clone())
                };
                self.state = State::Buffered(bytes);
                (body, None)
            }
            State::Streaming(b) if b.is_end_stream() => (empty(), None),
            State::Streaming(body) => {
                let (limited, tripped) = Limited::new(body, max_body);
                (limited.boxed(), Some(tripped))
            }
            State::Gone => (empty(), None),
        }
    }

    /// Before refusing an HTTP/2 request whose body is still arriving, read (and discard) a
    /// bounded amount of it: answering mid-upload makes hyper reset the stream, which some
    /// clients report as a protocol error instead of showing the refusal. HTTP/1.1 refusals
    /// close the connection instead.
    pub(super) async fn drain_politely(&mut self) {
        const MAX: usize = 256 * 1024;
        let State::Streaming(mut body) = std::mem::replace(&mut self.state, State::Gone) else {
            return;
        };
        let drain = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > MAX {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }
}
