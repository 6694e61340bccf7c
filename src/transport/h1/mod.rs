//! The native HTTP/1.1 server core (`[listen] http1_engine = "native"`): one task per caller
//! connection, heads parsed in place from a reused buffer (`parse`), bodies decoded strictly and
//! streamed to the pipeline as the pipeline reads them (`conn`, `chunked`), each response written
//! once (`write`). The handler's future runs in the connection's task: nothing is spawned per
//! request. The framing guard (`transport::framing`) stays in front of the stream as with hyper:
//! its flag and the pipeline's framing stage refuse what they refuse on the hyper engine, and the
//! parser refuses the same framings on its own.
//!
//! Keep-alive: a connection goes on after a response only when the request asked for it (1.1
//! without `close`, 1.0 with `keep-alive`), the response did not say `close`, the gateway is not
//! shutting down, and the request body was read to its end. A body nobody read any more is
//! skipped only as far as it is already buffered (no waiting for more, as hyper's own drain);
//! otherwise the response says `Connection: close` and the connection closes after it, so its
//! unread bytes are never read as a request.
//!
//! A caller that goes away: while a request is in flight (its handler, then its response) and
//! its body has been read, the read side is watched as hyper's server watches it; the end of the
//! stream or an error drops the request (and with it the upstream request). Bytes that arrive
//! meanwhile are a pipelined request: kept, and the watch ends (`Conn::poll_gone`).

mod chunked;
mod conn;
mod parse;
mod write;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Method, Request, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::settings::Listen;
use super::{stopped, Handler};
use crate::body::CallerBody;
use crate::conn::ConnInfo;
use crate::problem::{Code, Refusal};
use conn::{lock, BodyState, Conn, Continue, NativeBody, Writer};
use parse::{Framing, Head, Limits, Scan};

/// Why no request head came.
enum NoHead {
    /// The caller closed (or the stream failed) between requests or mid-head: nothing to answer.
    Gone,
    Refused(Refusal),
}

/// Serve one HTTP/1.1 connection (behind the framing guard) until it ends.
pub(super) async fn serve<S, H>(
    io: S,
    info: Arc<ConnInfo>,
    settings: &Listen,
    gateway: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let limits = Limits {
        max_bytes: super::hyper_header_bytes(settings),
        max_fields: super::hyper_max_headers(settings),
    };
    let conn = Arc::new(Mutex::new(Conn::new(io)));
    let mut out = Vec::with_capacity(1024);
    let mut scan = Scan::default();
    let mut spare = None;
    let mut draining = false;
    let mut seq = 0u64;
    // One timer and one shutdown watch for the connection's life, re-armed per head: cheaper
    // than a new timer entry and a new watch registration for every request.
    let sleep = tokio::time::sleep(settings.header_timeout);
    tokio::pin!(sleep);
    let mut watch = Watch {
        seen: shutdown.clone(),
        armed: false,
    };
    // Unconstrained: a pending poll of it then always means its waiter is registered (tokio's
    // cooperative budget would otherwise answer `Pending` without registering), which
    // `Watch::poll` relies on.
    let stop = tokio::task::unconstrained(async move { stopped(&mut shutdown).await });
    tokio::pin!(stop);
    loop {
        // One deadline per head, from the moment it is awaited: the keep-alive wait included.
        sleep
            .as_mut()
            .reset(Instant::now() + settings.header_timeout);
        let got = {
            let read = read_head(&conn, &mut scan, limits, &mut spare);
            tokio::pin!(read);
            loop {
                tokio::select! {
                    biased;
                    got = &mut read => break Ok(got),
                    () = &mut sleep => break Err(()),
                    () = std::future::poll_fn(|cx| watch.poll(&mut stop, cx)), if !draining => {
                        // Shutting down: an idle connection closes at once; a head already on its
                        // way is answered, with `Connection: close`.
                        draining = true;
                        if lock(&conn).rbuf.is_empty() {
                            return finish(&conn).await;
                        }
                    }
                }
            }
        };
        let head = match got {
            Ok(Ok(head)) => head,
            Ok(Err(NoHead::Gone)) => return finish(&conn).await,
            Ok(Err(NoHead::Refused(refusal))) => return refuse(&conn, &mut out, refusal).await,
            Err(()) => {
                if lock(&conn).rbuf.is_empty() {
                    return finish(&conn).await;
                }
                let late = Refusal::new(
                    Code::RequestTimeout,
                    "the request head did not arrive in time",
                )
                .closing();
                return refuse(&conn, &mut out, late).await;
            }
        };
        seq += 1;
        let req_for = write::For {
            version: head.version,
            head_method: head.method == Method::HEAD,
        };
        let mut close = !head.keep_alive || head.method == Method::CONNECT;
        let req = request(&conn, seq, head);
        // A caller that goes away while its request is in flight cancels it (the handler's
        // future is dropped, and with it the upstream request), as with hyper.
        // Pinned where it is built and watched through a reference: the handler's future is
        // several KiB, and each move of it by value is a memcpy of all of it (measured: about
        // 12k instructions per request when it was passed by value).
        let handling = std::pin::pin!(gateway.handle(&info, req));
        let Some((resp, mut relayed, rate)) = unless_gone(&conn, handling).await else {
            return abandon(&conn);
        };
        close |= draining || watch.stopping() || info.ambiguous_framing.load(Ordering::Acquire);
        close |= !body_done(&conn);
        // A `100 Continue` the body began to write is finished first: the final response must
        // not land in the middle of it.
        if lock(&conn).cont != Continue::None
            && std::future::poll_fn(|cx| lock(&conn).poll_continue(cx))
                .await
                .is_err()
        {
            return abandon(&conn);
        }
        let mut writer = Writer(&*conn);
        let write = std::pin::pin!(write::response(
            &mut writer,
            &mut out,
            resp,
            &mut relayed,
            rate.as_deref(),
            req_for,
            close,
            &mut spare
        ));
        match unless_gone(&conn, write).await {
            Some(Ok(false)) => {}
            Some(Ok(true)) => return finish(&conn).await,
            // Cut mid-response (the caller must see the cut, not a shorter answer), or gone
            // while its response streamed (the rest, and the upstream, is dropped).
            Some(Err(_)) | None => return abandon(&conn),
        }
    }
}

/// Run `fut` (the handler, or the writing of its response) unless the caller goes away first
/// (`None`): hyper's server watches the read side of a connection whose request is in flight
/// the same way, with `http1_half_close` off (the end of the stream means gone, also after a
/// complete request). The read side is polled only while `fut` is pending, so a request
/// answered at once costs nothing more.
async fn unless_gone<S, F>(conn: &Mutex<Conn<S>>, mut fut: Pin<&mut F>) -> Option<F::Output>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future,
{
    let mut watching = true;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if watching {
            match lock(conn).poll_gone(cx) {
                Poll::Ready(true) => return Poll::Ready(None),
                Poll::Ready(false) => watching = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Read until a complete head is buffered, and parse it.
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &Mutex<Conn<S>>,
    scan: &mut Scan,
    limits: Limits,
    spare: &mut Option<http::HeaderMap>,
) -> Result<Head, NoHead> {
    std::future::poll_fn(|cx| {
        let mut c = lock(conn);
        loop {
            match parse::parse(&mut c.rbuf, scan, limits, spare) {
                Ok(Some(head)) => return std::task::Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(refusal) => return std::task::Poll::Ready(Err(NoHead::Refused(refusal))),
            }
            match std::task::ready!(c.poll_fill(cx)) {
                Ok(0) | Err(_) => return std::task::Poll::Ready(Err(NoHead::Gone)),
                Ok(_) => {}
            }
        }
    })
    .await
}

/// The request the pipeline gets: the head as `http` types and the body reading from `conn`.
fn request<S>(conn: &Arc<Mutex<Conn<S>>>, seq: u64, head: Head) -> Request<CallerBody>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let body = {
        let mut c = lock(conn);
        c.seq = seq;
        c.body = match head.framing {
            Framing::None => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(chunked::Chunked::Size),
        };
        c.cont = if head.expect_continue && head.framing != Framing::None {
            Continue::Owed(0)
        } else {
            Continue::None
        };
        if head.framing == Framing::None {
            CallerBody::Empty
        } else {
            CallerBody::Native(Box::pin(NativeBody {
                conn: conn.clone(),
                seq,
            }))
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = head.uri;
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers;
    req
}

/// Whether the request body was read to its end, skipping what is buffered of one that nobody
/// holds any more. A `100 Continue` not yet begun is never sent after this: the final response
/// comes instead.
fn body_done<S>(conn: &Arc<Mutex<Conn<S>>>) -> bool {
    let alone = Arc::strong_count(conn) == 1;
    let mut c = lock(conn);
    if c.cont == Continue::Owed(0) {
        c.cont = Continue::None;
    }
    // Only when no body value is left (it could still be read elsewhere, and the bytes skipped
    // here would be missing from what it delivers).
    if alone && matches!(c.body, BodyState::Length(_) | BodyState::Chunked(_)) {
        c.drain_buffered();
    }
    c.body == BodyState::Done
}

/// The connection's view of the shutdown watch, cheaper than polling the watch's future each
/// time (issue 22: that locks the waiter list and swaps the waker, about 0.24k instructions, and
/// it was polled twice a request): the future is polled once, which registers it with the
/// connection task's waker, and again only when the channel's version moved (or its sender is
/// gone), which is when a notification can have come.
struct Watch {
    /// A second receiver, never marked seen: `has_changed` is one atomic load.
    seen: watch::Receiver<bool>,
    /// `stop` was polled (and, pending, registered).
    armed: bool,
}

impl Watch {
    /// Poll `stop` (`stopped`, unconstrained) when it can have become ready.
    fn poll(
        &mut self,
        stop: &mut Pin<&mut impl Future<Output = ()>>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.armed && matches!(self.seen.has_changed(), Ok(false)) {
            return Poll::Pending;
        }
        self.armed = true;
        stop.as_mut().poll(cx)
    }

    /// Whether shutdown began (the value is `true`, or the sender is gone: what `stopped`
    /// resolves on), without polling the watch's future: a poll with another waker would
    /// replace the one its registration wakes.
    fn stopping(&self) -> bool {
        self.seen.has_changed().is_err() || *self.seen.borrow()
    }
}

/// Answer a head that could not be taken (400, 408, 431) and close.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &Mutex<Conn<S>>,
    out: &mut Vec<u8>,
    refusal: Refusal,
) {
    let resp = refusal.into_response(&request_id());
    let req = write::For {
        version: Version::HTTP_11,
        head_method: false,
    };
    if write::response(
        &mut Writer(conn),
        out,
        resp,
        &mut None,
        None,
        req,
        true,
        &mut None,
    )
    .await
    .is_ok()
    {
        finish(conn).await;
    } else {
        abandon(conn);
    }
}

/// Close in order: the write side shut down (TLS: `close_notify`), bodies still held fail.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(conn: &Mutex<Conn<S>>) {
    lock(conn).closed = true;
    let _ = Writer(conn).shutdown().await;
}

/// Drop the connection without a word (a response cut short).
fn abandon<S>(conn: &Mutex<Conn<S>>) {
    lock(conn).closed = true;
}

/// An id for a refusal made before any request existed (the pipeline makes the others).
fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
