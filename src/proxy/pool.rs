//! The connection pool and HTTP/1.1 client of a plain `http` upstream: our own client, run in
//! the task of the caller's connection.
//!
//! Why our own (issue 22): hyper's connection API gave every upstream connection a task of its
//! own and handed each request to it through a channel, so a proxied request cost a cross-task
//! wake-up and a second task poll, plus hyper's client dispatch, encoder and decoder. Measured
//! (`bench/h1-core.md`), an exchange run inside the caller's task costs a fraction of that. Here
//! nothing is spawned per request or per connection for the exchange:
//!
//! * a checkout is a `pop` from the current thread's list (a [`ThreadLocal`] inside the
//!   upstream; the data plane's runtimes are single-threaded, `transport::workers`). An idle
//!   connection on which anything became readable (the upstream's close, a reset, stray bytes)
//!   is dropped instead of used, read from tokio's readiness without a system call;
//! * the request head is written by [`request::write_head`] (origin form, in one pass from the
//!   pipeline's description, [`super::headers::UpstreamHead`]: the caller's fields in order
//!   minus the withheld ones, then the gateway's; no `Host` added), the body with its `Content-Length` or chunked, while the
//!   response head is read in the same poll ([`exchange`]): an upstream that answers before it
//!   read the whole body (a 413 of its own) is not waited on; the rest of the body is then not
//!   sent, and the connection not reused;
//! * the response head is parsed by [`response::parse`] (framing checked as strictly as the
//!   caller side's guard: an ambiguous answer is a [`Failure`], 502), 1xx answers are skipped and
//!   `101` refused;
//! * the response body ([`body::UpstreamBody`]) owns the connection while it streams and puts it
//!   back when it ended cleanly (its length reached, the last chunk and trailers read, or no
//!   body for HEAD/204/304); dropped early, failed, `Connection: close`, HTTP/1.0 without
//!   keep-alive or delimited by the close, the connection is closed instead.
//!
//! What hyper-util's legacy pool did and this keeps: idle connections are closed after
//! [`IDLE_TIMEOUT`] (by one reaper task per thread and upstream, alive while that list holds
//! connections: no timer per request or connection) and at most [`MAX_IDLE`] wait per thread; a
//! request that a reused connection failed before any byte of an answer arrived is sent once
//! more on a fresh connection when its method is idempotent and its body empty or buffered (a
//! `POST` or a streamed body is never sent twice); requests go out in origin form without an added `Host`.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::Outbound;
use crate::body::{BoxError, ProxyBody};

mod body;
mod relayed;
mod request;
mod response;

pub use relayed::Relayed;

use request::{Payload, SendError, Sending};
use response::{Framing, Parsed};

/// How long an idle upstream connection is kept (the legacy client's setting, kept).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How many idle connections one thread keeps per upstream (the legacy client's setting).
pub const MAX_IDLE: usize = 256;

/// The reaper wakes this many times per idle timeout: a connection is closed after between
/// one and 1 + 1/TICKS idle timeouts.
const TICKS: u64 = 4;
/// Read buffer of a connection, and the least free room a read is given.
const READ_CHUNK: usize = 16 * 1024;
const MIN_ROOM: usize = 4 * 1024;

/// Why a request did not get a response head.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be opened.
    Connect(BoxError),
    /// The connection failed while sending or waiting for the head, the upstream's answer was
    /// malformed or ambiguous, or the request body failed (the caller's, e.g. over `max_body`).
    Request(BoxError),
    /// No response head before the deadline (the route's `timeout`).
    TimedOut,
}

impl Failure {
    pub fn is_connect(&self) -> bool {
        matches!(self, Failure::Connect(_))
    }

    /// The error, for logs.
    pub fn error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Failure::Connect(e) | Failure::Request(e) => e.as_ref(),
            Failure::TimedOut => &TimedOut,
        }
    }
}

/// The upstream gave no response head before the deadline.
#[derive(Debug, thiserror::Error)]
#[error("the upstream did not answer in time")]
pub struct TimedOut;

/// A plain-HTTP upstream's connections.
pub struct H1Pool {
    connector: HttpConnector,
    /// `http://authority/`: what the connector resolves and connects to.
    target: Uri,
    idle: ThreadLocal<Arc<Mutex<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// One thread's idle connections, oldest first, each with the reaper tick it was put back in.
/// (A mutex, uncontended, because the reaper task holds the list too and a runtime may move it.)
#[derive(Default)]
struct Idle {
    conns: VecDeque<(Conn, u64)>,
    tick: u64,
    reaper: bool,
}

/// An upstream connection and its read buffer (bytes read past an answer's head stay in it).
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// The request being written (reused, as the buffer).
    out: Vec<u8>,
    /// The deadline of the exchange on this connection, reused from one request to the next
    /// (issue 22). A timer per request (`tokio::time::timeout`) was a look-up of the runtime, an
    /// insertion into the runtime's timer wheel and a removal, about 1k instructions; moved to a
    /// later instant, a timer still in the wheel is one atomic update (the wheel meets the old
    /// instant first and files it again, once per route timeout, not once per request). Built
    /// on the connection's first exchange.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
            deadline: None,
        }
    }

    /// Arm the connection's timer for `at`.
    fn arm(&mut self, at: Instant) {
        match self.deadline.as_mut() {
            Some(timer) => timer.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// Whether the armed deadline has passed (and, when not, the task is woken when it does).
    /// Polled outside the task's cooperative budget, as `tokio::time::timeout` polls its timer
    /// once the inner future used the budget up: a busy exchange cannot starve its deadline.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.deadline.as_mut() {
            Some(timer) => Pin::new(&mut tokio::task::coop::unconstrained(timer.as_mut())).poll(cx),
            None => Poll::Pending,
        }
    }

    /// Read more into the buffer; `Ready(Ok(0))` at the upstream's end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_ROOM {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    /// Whether the upstream closed it, reset it or sent something while it was idle. Read from
    /// tokio's readiness (no system call) unless that says readable; a readable socket is read
    /// once to tell a stale readiness from data or an end.
    fn went_bad(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if self.stream.poll_read_ready(&mut cx).is_pending() {
            return false;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// `resp` with the request's emptied map in place of the empty, unallocated one it came with
/// (`UpstreamHead::hand_over`): the map goes round instead of being dropped after the head was
/// written while the answer allocates another (issue 22). [`H1Pool::exchange`] puts no field
/// in its answer's map (the answer's own travel beside it, [`Relayed`]), so the maps are
/// swapped, not walked and merged (an iterator over the empty map, dropped, and the empty map
/// itself were about 0.1k instructions a request).
fn with_map(mut resp: Response<ProxyBody>, req: &mut Outbound) -> Response<ProxyBody> {
    debug_assert!(
        resp.headers().is_empty(),
        "the exchange's answer carries no map fields"
    );
    req.head.hand_over(resp.headers_mut());
    resp
}

/// Methods whose repetition has the effect of one request (RFC 9110 §9.2.2).
fn idempotent(m: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(m)
}

/// How one attempt ended without a response.
enum Attempt {
    /// Nothing of an answer arrived on a reused connection, which the upstream closed or reset:
    /// the request may not have reached it, another connection may take it.
    Stale(BoxError),
    Failed(Failure),
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

    /// Send a request whose fields all go as they are (the tests' requests); the answer's
    /// relayed fields are dropped.
    #[cfg(test)]
    pub async fn send_request(
        self: &Arc<Self>,
        req: http::Request<ProxyBody>,
        in_hand: bool,
        deadline: Instant,
    ) -> Result<Response<ProxyBody>, Failure> {
        Ok(self.send_relayed(req, in_hand, deadline).await?.0)
    }

    /// As [`H1Pool::send_request`], with the answer's relayed fields.
    #[cfg(test)]
    pub async fn send_relayed(
        self: &Arc<Self>,
        req: http::Request<ProxyBody>,
        in_hand: bool,
        deadline: Instant,
    ) -> Result<(Response<ProxyBody>, Relayed), Failure> {
        let (parts, body) = req.into_parts();
        let out = Outbound {
            method: parts.method,
            uri: parts.uri,
            head: super::headers::UpstreamHead::verbatim(parts.headers),
        };
        let mut out = out;
        self.send(&mut out, body, in_hand, deadline).await
    }

    /// How many idle connections this thread holds.
    #[cfg(test)]
    pub fn idle_here(&self) -> usize {
        self.idle.get().map_or(0, |l| lock(l).conns.len())
    }

    /// Send `req` (its URI absolute or origin form) and wait for the response head (its fields,
    /// hop-by-hop ones removed, in the [`Relayed`] beside it; its map empty) until
    /// `deadline` ([`Failure::TimedOut`] then: connecting, a second attempt and the exchange all
    /// count). The response's body puts the connection back into this thread's list when it
    /// ends. `in_hand`: the body is empty or buffered whole (the pipeline's `tripped` flag is
    /// absent), so it may be sent again on a fresh connection.
    pub async fn send(
        self: &Arc<Self>,
        req: &mut Outbound,
        body: ProxyBody,
        in_hand: bool,
        deadline: Instant,
    ) -> Result<(Response<ProxyBody>, Relayed), Failure> {
        let mut payload = Payload::new(body, in_hand);
        let plan = payload.plan(&req.head);
        if let Some(mut conn) = self.checkout() {
            conn.arm(deadline);
            match self.exchange(conn, req, plan, &mut payload, true).await {
                Ok((resp, relayed)) => return Ok((with_map(resp, req), relayed)),
                // The request may have reached the upstream before it closed: sent again only
                // when repeating it is harmless by its method (RFC 9110 §9.2.2, as nginx's
                // `proxy_next_upstream` does), and only when its body is in hand.
                Err(Attempt::Stale(e)) if payload.replayable() && idempotent(&req.method) => {
                    tracing::debug!(error = %e, "reused upstream connection was closed; sending on a fresh one");
                }
                Err(Attempt::Stale(e)) => return Err(Failure::Request(e)),
                Err(Attempt::Failed(f)) => return Err(f),
            }
        }
        // A fresh connection (rare once the pool is warm) gets its timer here; the connect
        // itself is bounded by the same deadline.
        let mut conn = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| Failure::TimedOut)??;
        conn.arm(deadline);
        match self.exchange(conn, req, plan, &mut payload, false).await {
            Ok((resp, relayed)) => Ok((with_map(resp, req), relayed)),
            Err(Attempt::Stale(e)) => Err(Failure::Request(e)),
            Err(Attempt::Failed(f)) => Err(f),
        }
    }

    /// One attempt on `conn` (its deadline armed): write the request while reading the answer's
    /// head.
    async fn exchange(
        self: &Arc<Self>,
        mut conn: Conn,
        req: &Outbound,
        plan: request::Plan,
        payload: &mut Payload,
        reused: bool,
    ) -> Result<(Response<ProxyBody>, Relayed), Attempt> {
        let failed = |e: BoxError| Attempt::Failed(Failure::Request(e));
        let head_request = req.method == http::Method::HEAD;
        let mut out = std::mem::take(&mut conn.out);
        out.clear();
        request::write_head(req, plan, &mut out);
        let (first, body) = payload.take();
        let mut sending =
            Sending::new(&mut out, plan, first, body).map_err(|e| failed(send_error(e)))?;
        let mut progress = Progress::default();
        let outcome =
            poll_fn(|cx| poll_exchange(cx, &mut conn, &mut sending, &mut progress, head_request))
                .await;
        let written = sending.is_done() && progress.write_error.is_none();
        drop(sending);
        conn.out = out;
        let head = match outcome {
            Ok(head) => head,
            Err(Ended::Send(e)) => return Err(failed(send_error(e))),
            Err(Ended::Malformed(m)) => return Err(failed(Box::new(m))),
            Err(Ended::TimedOut) => return Err(Attempt::Failed(Failure::TimedOut)),
            Err(Ended::Io(e)) if reused && !progress.received && is_stale(&e) => {
                return Err(Attempt::Stale(Box::new(e)))
            }
            Err(Ended::Io(e)) => {
                // A write that failed first says more than the read that followed it.
                return Err(failed(Box::new(progress.write_error.unwrap_or(e))));
            }
        };
        // Reusable only when the whole request went out and the answer says so.
        let back = (head.keep_alive && written).then(|| self.clone());
        let body = match head.framing {
            Framing::Empty => {
                if let Some(pool) = back {
                    if conn.buf.is_empty() {
                        pool.put(conn);
                    }
                }
                crate::body::empty()
            }
            framing => body::UpstreamBody::new(conn, framing, back).boxed(),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        // The answer's fields travel as they arrived (issue 22): the map is the gateway's, and
        // `send` gives it the request's emptied one (`with_map`), not a new one: the native
        // HTTP/1.1 core empties it in turn and parses the caller's next request into it
        // (`transport::h1`), so one table goes round with the connection. The fields go beside
        // the response, not into its extensions (see `Relayed`).
        if let Some(reason) = head
            .reason
            .and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok())
        {
            resp.extensions_mut().insert(reason);
        }
        Ok((resp, head.fields))
    }

    /// The most recently used idle connection of this thread that is still good.
    fn checkout(&self) -> Option<Conn> {
        let list = self.idle.get()?;
        let mut idle = lock(list);
        while let Some((mut conn, _)) = idle.conns.pop_back() {
            if !conn.went_bad() {
                return Some(conn);
            }
        }
        None
    }

    /// Back into this thread's list, unless the list is full or there is no runtime to run its
    /// reaper (then it is dropped, which closes the connection).
    fn put(&self, conn: Conn) {
        let list = self.idle.get_or(Default::default);
        let mut idle = lock(list);
        if idle.conns.len() >= self.max_idle {
            return;
        }
        if !idle.reaper {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            idle.reaper = true;
            rt.spawn(reap(Arc::downgrade(list), self.idle_timeout));
        }
        let tick = idle.tick;
        idle.conns.push_back((conn, tick));
    }

    /// Open a connection with the connector's settings (connect timeout, `TCP_NODELAY`,
    /// keepalive).
    async fn connect(&self) -> Result<Conn, Failure> {
        let io = self
            .connector
            .clone()
            .call(self.target.clone())
            .await
            .map_err(|e| Failure::Connect(e.into()))?;
        Ok(Conn::new(io.into_inner()))
    }
}

fn lock(list: &Mutex<Idle>) -> std::sync::MutexGuard<'_, Idle> {
    list.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Close the connections of one thread's list once they have been idle for the timeout; ends
/// when the list is empty (the next `put` starts another) or the pool is gone.
async fn reap(list: Weak<Mutex<Idle>>, timeout: Duration) {
    let tick = (timeout / TICKS as u32).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(tick).await;
        let Some(list) = list.upgrade() else {
            return;
        };
        let mut idle = lock(&list);
        idle.tick += 1;
        // Put back at tick `t`, it has been idle for at least `now - t - 1` whole ticks.
        let now = idle.tick;
        while idle.conns.front().is_some_and(|(_, t)| now - t > TICKS) {
            idle.conns.pop_front();
        }
        if idle.conns.is_empty() {
            idle.reaper = false;
            return;
        }
    }
}

/// What the exchange's poll has seen so far.
#[derive(Default)]
struct Progress {
    /// A byte of an answer arrived.
    received: bool,
    /// Writing stopped on this error; the answer is still read (it may explain it).
    write_error: Option<std::io::Error>,
    written: bool,
}

/// Why an exchange ended without a final head.
enum Ended {
    Send(SendError),
    Malformed(response::Malformed),
    Io(std::io::Error),
    /// The connection's deadline passed first.
    TimedOut,
}

/// Drive the request out and read the answer's head in one poll, so that neither waits on the
/// other; then, when neither is done, the deadline (after them, as `tokio::time::timeout` does:
/// an answer that is there wins over a deadline that passed meanwhile).
fn poll_exchange(
    cx: &mut Context<'_>,
    conn: &mut Conn,
    sending: &mut Sending<'_>,
    progress: &mut Progress,
    head_request: bool,
) -> Poll<Result<response::Head, Ended>> {
    if !progress.written {
        match sending.poll(cx, &mut conn.stream) {
            Poll::Ready(Ok(())) => progress.written = true,
            Poll::Ready(Err(SendError::Io(e))) => {
                progress.written = true;
                progress.write_error = Some(e);
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Ended::Send(e))),
            Poll::Pending => {}
        }
    }
    let read = poll_head(cx, conn, progress, head_request);
    if read.is_pending() && conn.poll_deadline(cx).is_ready() {
        return Poll::Ready(Err(Ended::TimedOut));
    }
    read
}

/// Read until the answer's head is whole.
fn poll_head(
    cx: &mut Context<'_>,
    conn: &mut Conn,
    progress: &mut Progress,
    head_request: bool,
) -> Poll<Result<response::Head, Ended>> {
    loop {
        if !conn.buf.is_empty() {
            match response::parse(&mut conn.buf, head_request) {
                Ok(Parsed::Final(head)) => return Poll::Ready(Ok(head)),
                Ok(Parsed::Interim) => continue,
                Ok(Parsed::Partial) => {}
                Err(m) => return Poll::Ready(Err(Ended::Malformed(m))),
            }
        }
        match conn.poll_fill(cx) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(Ended::Io(std::io::ErrorKind::UnexpectedEof.into())))
            }
            Poll::Ready(Ok(_)) => progress.received = true,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Ended::Io(e))),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// An end or reset of a connection: what a reused connection the upstream closed meanwhile
/// shows.
fn is_stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | BrokenPipe | ConnectionReset | ConnectionAborted
    )
}

fn send_error(e: SendError) -> BoxError {
    match e {
        SendError::Body(e) => e,
        SendError::Length(why) => why.into(),
        SendError::Io(e) => Box::new(e),
    }
}

/// The fields of the upstream answer head `head` as the pool relays them, for the writers'
/// tests (`transport::h1`).
#[cfg(test)]
pub(crate) fn relayed_for_tests(head: &str) -> Relayed {
    match response::parse(&mut BytesMut::from(head.as_bytes()), false) {
        Ok(Parsed::Final(h)) => h.fields,
        other => panic!("not a final head: {other:?}"),
    }
}

#[cfg(test)]
mod tests;
