//! Accepting connections: a connection cap, the TLS handshake under a deadline, HTTP/1.1 or h2
//! chosen by ALPN, hyper configured with timers and limits (its defaults are not enough), and
//! graceful drain on shutdown.

pub mod acceptor;
pub mod framing;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod h1;
pub mod send_deadline;
pub mod settings;
pub mod tls;
pub mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::body::{CallerBody, ProxyBody};
use crate::conn::{ConnInfo, TlsInfo};
use crate::metrics::Metrics;
use settings::Listen;

/// Resolve once the shutdown flag is set (or its sender is gone). Holds no borrow across awaits.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A handler's answer: the response and, for a proxied one, the upstream answer's fields
/// relayed beside it (`proxy::Relayed`: the native HTTP/1.1 writer copies them as they arrived,
/// before the response's own fields; for hyper's server they are folded into the map first).
/// Decision-mode answers, refusals and the gateway's own endpoints relay nothing. Third, the
/// `RateLimit` fields when the handler left them beside the map rather than in it (they belong
/// after the map's fields and replace any relayed ones of their names, as a map insert would;
/// the native writer writes them without building header values, issue 22). Boxed: unboxed,
/// every answer (a pass-through route's too) carried their size through each of its moves,
/// 0.07k instructions a request, more than the box costs a limited one.
pub type Answer = (
    hyper::Response<ProxyBody>,
    Option<crate::proxy::Relayed>,
    Option<Box<crate::limits::RateHeaders>>,
);

/// What answers the requests of a connection: the gateway's pipeline, plugged in by the wiring.
/// Never fails: refusals are responses too.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        conn: &ConnInfo,
        req: hyper::Request<CallerBody>,
    ) -> impl std::future::Future<Output = Answer> + Send;
}

/// `resp` with the `RateLimit` fields and the relayed fields, if any, folded into its map (in
/// that order: the relayed fields give way to the gateway's): what hyper's server writes.
fn materialised((mut resp, relayed, rate): Answer) -> hyper::Response<ProxyBody> {
    if let Some(rate) = rate {
        rate.apply_to(resp.headers_mut());
    }
    if let Some(relayed) = relayed {
        relayed.materialise(&mut resp);
    }
    resp
}

/// Shared by all connections of the data listener.
pub struct Listener<H> {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub settings: Listen,
    pub gateway: Arc<H>,
    pub metrics: Arc<Metrics>,
    /// Where connections run; each is handed to one worker and stays there.
    pub workers: workers::Workers,
}

struct OpenGauge {
    open: AtomicI64,
    metrics: Arc<Metrics>,
}

impl OpenGauge {
    fn add(&self, d: i64) {
        let now = self.open.fetch_add(d, Ordering::Relaxed) + d;
        self.metrics.connections_open.set(now as f64);
    }
}

/// What the workers' accept loops share.
struct Accepting<H> {
    settings: Listen,
    gateway: Arc<H>,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    gauge: OpenGauge,
    /// The workers' runtimes, by position.
    workers: Vec<tokio::runtime::Handle>,
    /// Open connections per worker, by position: counted when a connection is given to the
    /// worker, uncounted when it ends.
    load: Vec<AtomicUsize>,
}

/// How many more open connections than the least loaded worker an accepting worker may hold
/// before it hands a new connection over (see [`pick_worker`]).
const BALANCE_SLACK: usize = 1;

/// A connection counted in its worker's load: counted when the accepting worker chooses that
/// worker, uncounted when the slot drops, however the connection ends (a worker's shutdown, a
/// connection lost on its way to the other worker, included).
struct Slot<H> {
    ctx: Arc<Accepting<H>>,
    worker: usize,
}

impl<H: Handler> Slot<H> {
    fn take(ctx: &Arc<Accepting<H>>, worker: usize) -> Self {
        if let Some(l) = ctx.load.get(worker) {
            l.fetch_add(1, Ordering::Relaxed);
        }
        Slot {
            ctx: ctx.clone(),
            worker,
        }
    }

    /// Serve the connection on the slot's worker (the caller runs on it).
    ///
    /// This is the connection's task, and it stays a few hundred bytes whatever the handler:
    /// the connection's state machine (the TLS handshake, the HTTP engines, the request in
    /// flight) is boxed by [`serve_connection`], once, when the task first runs. Held inline,
    /// tokio copied it whole at every move (into the task's cell, and at each stage change of
    /// the task), about 120 KB of copying per connection, three quarters of a new connection's
    /// instructions under callgrind.
    async fn serve(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let ctx = &self.ctx;
        ctx.gauge.add(1);
        serve_connection(
            stream,
            peer,
            &ctx.settings,
            ctx.gateway.clone(),
            ctx.tls.as_ref(),
            ctx.shutdown.clone(),
            &ctx.metrics,
        )
        .await;
        ctx.gauge.add(-1);
        drop(permit);
    }
}

impl<H> Drop for Slot<H> {
    fn drop(&mut self) {
        if let Some(l) = self.ctx.load.get(self.worker) {
            l.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<H: Handler> Listener<H> {
    /// Accept until `shutdown` turns true, then let open connections finish within
    /// `drain_timeout`. Returns how many connections were still open when it gave up.
    ///
    /// Every worker accepts on its own copy of the listening socket, registered with its own
    /// reactor, and serves what it accepts: a new connection costs no hand-over between
    /// threads (an accepting thread, a re-registration with another reactor, a wake-up of the
    /// worker), which was half of the gateway's CPU per connection for clients that open one
    /// per request. [`pick_worker`] keeps the spread even.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> usize {
        let Listener {
            listener,
            tls,
            settings,
            gateway,
            metrics,
            workers,
        } = self;
        let ctx = Arc::new(Accepting {
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            gateway,
            tls,
            gauge: OpenGauge {
                open: AtomicI64::new(0),
                metrics: metrics.clone(),
            },
            metrics,
            shutdown: shutdown.clone(),
            tracker: TaskTracker::new(),
            workers: workers.handles().to_vec(),
            load: (0..workers.len()).map(|_| AtomicUsize::new(0)).collect(),
        });
        let mut loops = Vec::with_capacity(workers.len());
        match listener.into_std() {
            Ok(socket) => {
                for (i, worker) in workers.handles().iter().enumerate() {
                    match socket.try_clone() {
                        Ok(copy) => loops.push(worker.spawn(accept_loop(copy, i, ctx.clone()))),
                        Err(e) => tracing::error!(
                            worker = i + 1,
                            error = %e,
                            "the listening socket could not be shared with this worker; it accepts no connections"
                        ),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the listening socket could not be handed to the workers")
            }
        }
        if loops.is_empty() {
            tracing::error!("no worker accepts connections");
        }
        let mut stop = shutdown;
        stopped(&mut stop).await;
        // Each loop drops its copy of the socket when it sees the shutdown; the socket closes
        // with the last one, and nothing is accepted after this.
        for accepting in loops {
            let _ = accepting.await;
        }
        let tracker = &ctx.tracker;
        tracker.close();
        let drain = ctx.settings.drain_timeout;
        let mut left = 0;
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            left = tracker.len();
            tracing::warn!(
                connections = left,
                "drain deadline reached; closing remaining connections"
            );
        }
        // Stopping a worker drops the connections still on it; joining its thread blocks.
        let _ = tokio::task::spawn_blocking(move || workers.shutdown()).await;
        left
    }
}

/// The worker that serves a connection worker `me` has just accepted, from `load` (open
/// connections per worker, by position): `me`, unless it holds more than [`BALANCE_SLACK`]
/// connections over the least loaded worker. The worker whose reactor woke first accepts, so a
/// burst of connections (a client pool opening 64 at once) could otherwise all land on one
/// worker and stay there for their keep-alive lives; this keeps the spread within one or two of
/// round robin's while the common case, a worker serving what it accepted, makes no hand-over.
fn pick_worker(load: &[AtomicUsize], me: usize) -> usize {
    let mine = load.get(me).map_or(0, |l| l.load(Ordering::Relaxed));
    let least = load
        .iter()
        .enumerate()
        .map(|(i, l)| (l.load(Ordering::Relaxed), i))
        .min();
    match least {
        Some((n, i)) if mine > n + BALANCE_SLACK => i,
        _ => me,
    }
}

/// One worker's accept loop, on that worker (at position `me`), until the shutdown.
async fn accept_loop<H: Handler>(socket: std::net::TcpListener, me: usize, ctx: Arc<Accepting<H>>) {
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = me + 1, error = %e, "this worker cannot accept connections");
            return;
        }
    };
    let mut stop = ctx.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = ctx.permits.clone().try_acquire_owned() else {
                    ctx.metrics.connections_refused_total.with(&["max-connections"]).inc();
                    drop(stream);
                    continue;
                };
                let to = pick_worker(&ctx.load, me);
                match ctx.workers.get(to).filter(|_| to != me) {
                    None => {
                        let slot = Slot::take(&ctx, me);
                        ctx.tracker.spawn(slot.serve(stream, peer, permit));
                    }
                    Some(handle) => {
                        let slot = Slot::take(&ctx, to);
                        // Re-registered with the other worker's reactor, on that worker.
                        let stream = match stream.into_std() {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(error = %e, "accepted connection unusable");
                                continue;
                            }
                        };
                        ctx.tracker.spawn_on(
                            async move {
                                if let Ok(stream) = TcpStream::from_std(stream) {
                                    slot.serve(stream, peer, permit).await;
                                }
                            },
                            handle,
                        );
                    }
                }
            }
        }
    }
}

/// Serve one accepted connection. Each path's state machine (plain HTTP/1.1 about 8.5 KB for
/// the gateway's pipeline; TLS, with its handshake and HTTP/2, about 13.6 KB) is boxed on its
/// own, so that the connection's task stays small (see [`Slot::serve`]) and a plain connection
/// holds no room for the TLS path's larger one.
async fn serve_connection<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    settings: &Listen,
    gateway: Arc<H>,
    tls: Option<&TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
) {
    let _ = stream.set_nodelay(true);
    let stream = send_deadline::SendDeadline::new(stream, settings.send_timeout);
    match tls {
        None => {
            let flag = Arc::new(AtomicBool::new(false));
            let mut info = ConnInfo::new(peer, None, flag.clone());
            info.framing_checked = native(settings);
            let guarded = guarded(stream, settings, flag);
            Box::pin(http1(guarded, Arc::new(info), settings, gateway, shutdown)).await;
        }
        Some(acceptor) => {
            let tls = serve_tls(stream, peer, settings, gateway, acceptor, shutdown, metrics);
            Box::pin(tls).await;
        }
    }
}

/// A TLS connection: the handshake, then HTTP/2 or HTTP/1.1 as ALPN chose.
async fn serve_tls<H: Handler>(
    stream: send_deadline::SendDeadline<TcpStream>,
    peer: SocketAddr,
    settings: &Listen,
    gateway: Arc<H>,
    acceptor: &TlsAcceptor,
    shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
) {
    let accepted = tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            metrics
                .connections_refused_total
                .with(&["tls-handshake"])
                .inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics
                .connections_refused_total
                .with(&["tls-handshake-timeout"])
                .inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = stream.get_ref();
    let tls_info = TlsInfo::new(
        session.server_name().map(str::to_owned),
        session.alpn_protocol() == Some(b"h2"),
        session
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
    );
    let h2 = tls_info.h2;
    let flag = Arc::new(AtomicBool::new(false));
    let mut info = ConnInfo::new(peer, Some(tls_info), flag.clone());
    info.framing_checked = !h2 && native(settings);
    let info = Arc::new(info);
    if h2 {
        drive_http2(TokioIo::new(stream), info, settings, gateway, shutdown).await;
    } else {
        http1(
            guarded(stream, settings, flag),
            info,
            settings,
            gateway,
            shutdown,
        )
        .await;
    }
}

/// `stream` behind the HTTP/1.1 framing guard, at the listener's head limits; `flag` is the
/// connection's `ConnInfo::ambiguous_framing`.
fn guarded<S>(stream: S, settings: &Listen, flag: Arc<AtomicBool>) -> framing::FramingGuard<S> {
    let (head_limit, max_headers) = (hyper_max_buf(settings), hyper_max_headers(settings));
    framing::FramingGuard::new(stream, head_limit, max_headers, flag)
}

/// Whether HTTP/1.1 requests are parsed by the native core (`h1::parse`), which refuses every
/// framing `pipeline::head::check_framing` refuses before any stage runs.
fn native(settings: &Listen) -> bool {
    settings.http1_engine == settings::Http1Engine::Native
}

/// HTTP/1.1 on the engine `[listen] http1_engine` names.
async fn http1<S, H: Handler>(
    io: S,
    info: Arc<ConnInfo>,
    settings: &Listen,
    gateway: Arc<H>,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match settings.http1_engine {
        settings::Http1Engine::Hyper => {
            drive_http1(TokioIo::new(io), info, settings, gateway, shutdown).await;
        }
        settings::Http1Engine::Native => h1::serve(io, info, settings, gateway, shutdown).await,
    }
}

/// hyper's own header limits sit above ours, so that ordinary overruns get our problem+json 431
/// and only absurd ones meet hyper's bare 431.
fn hyper_header_bytes(s: &Listen) -> usize {
    (s.max_header_bytes * 2).max(16 * 1024)
}

fn hyper_max_headers(s: &Listen) -> usize {
    (s.max_headers * 2).max(100)
}

/// hyper's read buffer: no request head can be longer.
fn hyper_max_buf(s: &Listen) -> usize {
    hyper_header_bytes(s).max(64 * 1024)
}

async fn drive_http1<I, H: Handler>(
    io: I,
    info: Arc<ConnInfo>,
    s: &Listen,
    gateway: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let gateway = gateway.clone();
        let info = info.clone();
        async move {
            // hyper writes the map: a proxied answer's relayed fields go into it first.
            let resp = materialised(gateway.handle(&info, req.map(CallerBody::Hyper)).await);
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Bounds the time to receive a request head, and (hyper restarts it whenever the
        // connection waits for the next request) the idle time of a keep-alive connection.
        .header_read_timeout(s.header_timeout)
        .keep_alive(true)
        .max_headers(hyper_max_headers(s))
        .max_buf_size(hyper_max_buf(s))
        .max_header_size(hyper_header_bytes(s));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped(&mut shutdown) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Tracks in-flight requests and last activity, for the h2 idle timeout.
#[derive(Default)]
struct Activity {
    in_flight: AtomicI64,
    last_millis: AtomicU64,
}

async fn drive_http2<I, H: Handler>(
    io: I,
    info: Arc<ConnInfo>,
    s: &Listen,
    gateway: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let born = Instant::now();
    let activity = Arc::new(Activity::default());
    let act = activity.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let gateway = gateway.clone();
        let info = info.clone();
        let act = act.clone();
        async move {
            act.in_flight.fetch_add(1, Ordering::Relaxed);
            let resp = materialised(gateway.handle(&info, req.map(CallerBody::Hyper)).await);
            act.in_flight.fetch_sub(1, Ordering::Relaxed);
            act.last_millis.store(
                u64::try_from(born.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.max_concurrent_streams)
        // Rapid-reset (CVE-2023-44487) and error-reset floods.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024))
        .max_header_list_size(u32::try_from(hyper_header_bytes(s)).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = s.idle_timeout;
    let mut check = tokio::time::interval(Duration::from_millis(500).min(idle));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stopped(&mut shutdown) => break,
            _ = check.tick() => {
                let quiet_for = born.elapsed().saturating_sub(Duration::from_millis(activity.last_millis.load(Ordering::Relaxed)));
                if activity.in_flight.load(Ordering::Relaxed) == 0 && quiet_for >= idle {
                    break;
                }
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

#[cfg(test)]
mod accept_tests;
