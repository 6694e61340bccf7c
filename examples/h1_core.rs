//! **Prototype for a measurement (issue 22), not gateway code.** A minimal keep-alive HTTP/1.1
//! reverse proxy with its own HTTP/1 core instead of hyper, built the way the gateway's data plane
//! is (one current-thread tokio runtime per worker thread, connections handed out round robin:
//! `src/transport/workers.rs`), so that `bench/h1-core.md` can say with figures what a
//! purpose-built core costs per request next to nginx and `portcullis-pass`.
//!
//! What it does, per request:
//! * parses the head with `httparse` from a per-connection buffer that is reused, applying the
//!   framing rules of the gateway's guard (`src/transport/framing.rs`, `pipeline::head`) while
//!   parsing: `Content-Length` with `Transfer-Encoding`, repeated or ill-formed `Content-Length`,
//!   any `Transfer-Encoding` but a single `chunked` (and any in HTTP/1.0), obs-fold, bare CR or
//!   LF, a missing or repeated `Host` are 400; more than 100 fields or 32 KiB of head is 431; each
//!   refusal is `application/problem+json` and closes the connection;
//! * forwards it on a per-worker pool of upstream keep-alive connections (a `Vec` in a
//!   thread-local: the worker is one thread, so no lock), hop-by-hop headers, headers named in
//!   `Connection` and identity claims (`proxy::headers::is_identity_claim`) removed, `Forwarded`,
//!   `X-Forwarded-For`, `X-Forwarded-Proto`/`-Host`, `X-Request-Id` and `Host` set as
//!   `proxy::headers::to_upstream` does; a `Content-Length` body is streamed;
//! * parses the response head with `httparse`, relays a `Content-Length` or chunked body as is (a
//!   body to the connection's end closes the caller's connection after it), and writes head and
//!   body with one `write` when the body is already in hand.
//!
//! What it does **not** do (a production core would need all of it, `bench/h1-core.md`): chunked
//! *request* bodies (refused with 501), HTTP/2, TLS, upgrades/`CONNECT` (refused with 501),
//! `Expect: 100-continue` handling (forwarded as is), trailers of its own, an idle timeout separate
//! from the head timeout, a body timeout or minimum rate, graceful drain, connection limits, any
//! of the gateway's pipeline (routing, authentication, policy, audit). Upstream 1xx answers other
//! than 101 are skipped.
//!
//! Run: `cargo run --release --example h1_core -- --addr 127.0.0.1:18081 --upstream
//! 127.0.0.1:18080 [--threads 2]`. Prints `listening <addr>` once bound, then serves until killed.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use portcullis::routing::canonical::{CanonicalRequest, PathParameters};
use portcullis::routing::{Matcher, Routable, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// The upstream every request goes to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads (one current-thread runtime each).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Also build the gateway's view of each request (`http` request parts, `routing::
    /// canonical::CanonicalRequest`, a `routing::Router` with one `/` route), to measure what
    /// the first stages of the pipeline add on top of the core (bench/h1-core.md).
    #[arg(long)]
    pipeline: bool,
}

/// The gateway's defaults (`listen.max_headers`, `listen.max_header_bytes`,
/// `listen.header_timeout`, `upstream.timeout` in `docs/configuration.md`).
const MAX_HEADERS: usize = 100;
const MAX_HEAD_BYTES: usize = 32 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle upstream connections a worker keeps (nginx's `keepalive 64` of the bench).
const POOL_MAX: usize = 64;
/// Read granularity of both sides.
const READ_CHUNK: usize = 16 * 1024;

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones, as `proxy::headers` strips them.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "keep-alive",
    "proxy-connection",
];

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("h1_core: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> std::io::Result<()> {
    let workers = start_workers(args.threads)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(args.addr).await?;
        println!("listening {}", l.local_addr()?);
        let mut target = Target::new(args.upstream);
        if args.pipeline {
            target.router = Some(Router::new(vec![Arc::new(AnyPath)]));
        }
        accept_loop(l, workers, Arc::new(target)).await;
        Ok(())
    })
}

/// The upstream and its `Host` value, shared by every worker.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    host: String,
    /// `--pipeline`: the routes every request is matched against.
    router: Option<Router<AnyPath>>,
    /// [`HEAD_TIMEOUT`] (shorter in tests).
    head_timeout: Duration,
}

impl Target {
    fn new(addr: SocketAddr) -> Target {
        Target {
            addr,
            host: addr.to_string(),
            router: None,
            head_timeout: HEAD_TIMEOUT,
        }
    }
}

/// The one route of `--pipeline`: `path_prefix = "/"`, any host and method, like the bench's
/// pass-through route.
#[derive(Debug)]
struct AnyPath;

impl Routable for AnyPath {
    fn matcher(&self) -> Matcher<'_> {
        Matcher {
            host: None,
            path_prefix: "/",
            case_insensitive: false,
            methods: None,
            path_parameters: PathParameters::default(),
        }
    }
}

/// `--pipeline`: the request as the gateway's first stages see it, built from the parsed head
/// (the `http` types hyper hands the gateway, the canonical path and host, the route). The
/// result is not used: the upstream gets the same bytes with or without it; what is measured is
/// its cost. The gateway's refusal becomes this prototype's 400.
fn gateway_view(req: &httparse::Request<'_, '_>, router: &Router<AnyPath>) -> Result<(), Refusal> {
    let refused = |_| bad("refused by the gateway's request view (routing::canonical)");
    let mut b = http::Request::builder()
        .method(req.method.unwrap_or_default())
        .uri(req.path.unwrap_or_default());
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    let (parts, ()) = b
        .body(())
        .map_err(|_| bad("not a request the gateway's http types accept"))?
        .into_parts();
    let canonical = CanonicalRequest::of(&parts).map_err(refused)?;
    let route = router
        .select(
            canonical.host.as_deref(),
            &canonical.match_path,
            &parts.method,
        )
        .map_err(refused)?;
    canonical.admit_params(route.matcher()).map_err(refused)
}

/// One current-thread runtime per worker thread, as `transport::workers` starts them.
fn start_workers(n: usize) -> std::io::Result<Vec<Handle>> {
    let mut handles = Vec::new();
    for i in 1..=n.max(1) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(rt.handle().clone());
        std::thread::Builder::new()
            .name(format!("h1core-w{i}"))
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    }
    Ok(handles)
}

/// Accept on this thread, hand each connection to the next worker.
async fn accept_loop(l: tokio::net::TcpListener, workers: Vec<Handle>, target: Arc<Target>) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((s, peer)) = l.accept().await else {
            continue;
        };
        let Ok(s) = s.into_std() else { continue };
        let i = next.fetch_add(1, Ordering::Relaxed) % workers.len().max(1);
        let Some(worker) = workers.get(i) else {
            continue;
        };
        let target = target.clone();
        worker.spawn(async move {
            if let Ok(s) = TcpStream::from_std(s) {
                let _ = s.set_nodelay(true);
                Conn::new(s, peer, target).serve().await;
            }
        });
    }
}

/// Why a request is refused: the status, the problem type and a fixed detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    status: u16,
    code: &'static str,
    detail: &'static str,
}

const fn refuse(status: u16, code: &'static str, detail: &'static str) -> Refusal {
    Refusal {
        status,
        code,
        detail,
    }
}

fn bad(detail: &'static str) -> Refusal {
    refuse(400, "invalid-request", detail)
}

const HEAD_TOO_LARGE: Refusal = refuse(
    431,
    "headers-too-large",
    "request head exceeds the header limits",
);

/// The caller's hop, rendered once per connection (`conn::Hop`).
#[derive(Debug)]
struct HopText {
    /// `for="ip:port";proto=http`
    forwarded: Vec<u8>,
    /// `ip`
    forwarded_for: Vec<u8>,
}

impl HopText {
    fn new(peer: SocketAddr) -> HopText {
        let hop = portcullis::conn::Hop::new(peer, "http");
        HopText {
            forwarded: hop.forwarded(None).as_bytes().to_vec(),
            forwarded_for: hop.forwarded_for().as_bytes().to_vec(),
        }
    }
}

/// What the request head says about the rest of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestHead {
    /// Bytes of the head in the read buffer (leading blank lines included).
    len: usize,
    /// Body bytes that follow it (`Content-Length`).
    body: u64,
    /// The caller's connection ends after this exchange.
    close: bool,
    /// `HEAD`: the answer has no body whatever its framing says.
    head_method: bool,
}

/// Parse the request head at the start of `buf` and write the upstream's request head to `out`.
/// `Ok(None)`: incomplete (more bytes needed).
fn parse_request(
    buf: &[u8],
    hop: &HopText,
    target: &Target,
    out: &mut Vec<u8>,
) -> Result<Option<RequestHead>, Refusal> {
    // Blank lines before a request line are allowed (RFC 9112 §2.2).
    let lead = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let data = buf.get(lead..).unwrap_or_default();
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(data, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n + lead <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(HEAD_TOO_LARGE),
        Err(_) => return Err(bad("malformed request head")),
    };
    check_line_ends(data.get(..len).unwrap_or_default())?;
    let close = match req.version {
        Some(1) => false,
        Some(0) => true,
        _ => return Err(bad("unsupported HTTP version")),
    };
    let fields = Fields::of(req.headers, req.version == Some(0))?;
    let method = req.method.unwrap_or_default();
    if method.eq_ignore_ascii_case("CONNECT") || fields.upgrade {
        return Err(refuse(
            501,
            "not-implemented",
            "upgrades and CONNECT are not supported by this prototype",
        ));
    }
    if let Some(router) = &target.router {
        gateway_view(&req, router)?;
    }
    write_upstream_head(&req, &fields, hop, &target.host, out);
    Ok(Some(RequestHead {
        len: lead + len,
        body: fields.length.unwrap_or(0),
        close: close || fields.close,
        head_method: method == "HEAD",
    }))
}

/// Every line of a head ends in CRLF: a bare LF is a line end to some parsers and not to others,
/// and a bare CR is one to none (httparse takes a bare LF as a line end, so it is refused here).
fn check_line_ends(head: &[u8]) -> Result<(), Refusal> {
    let mut prev = 0u8;
    for &b in head {
        if (b == b'\n') != (prev == b'\r') {
            return Err(bad("bare CR or LF in the request head"));
        }
        prev = b;
    }
    if prev == b'\r' {
        return Err(bad("bare CR or LF in the request head"));
    }
    Ok(())
}

/// What one pass over the request's fields found.
#[derive(Debug, Default)]
struct Fields<'h> {
    length: Option<u64>,
    host: Option<&'h [u8]>,
    request_id: Option<&'h [u8]>,
    /// The caller's `Connection` values (the names they list are not forwarded).
    connection: Vec<&'h [u8]>,
    close: bool,
    upgrade: bool,
}

impl<'h> Fields<'h> {
    /// The framing rules of `transport::framing` and `pipeline::head::check_framing`.
    fn of(headers: &[httparse::Header<'h>], http10: bool) -> Result<Fields<'h>, Refusal> {
        let mut f = Fields::default();
        let (mut lengths, mut hosts, mut ids, mut codings, mut chunked) = (0, 0, 0, 0, false);
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                lengths += 1;
                f.length = Some(content_length(h.value)?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                codings += 1;
                chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
                f.host = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"x-request-id") {
                ids += 1;
                f.request_id = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"connection") {
                f.close |= has_token(h.value, b"close");
                f.upgrade |= has_token(h.value, b"upgrade");
                f.connection.push(h.value);
            }
        }
        if lengths > 1 {
            return Err(bad("duplicate Content-Length"));
        }
        // Decided after every field was seen: `Transfer-Encoding` before `Content-Length` is the
        // same ambiguity as after it.
        if codings > 0 {
            if http10 {
                return Err(bad("Transfer-Encoding is only valid in HTTP/1.1"));
            }
            if lengths > 0 {
                return Err(bad("both Content-Length and Transfer-Encoding"));
            }
            if codings > 1 || !chunked {
                return Err(bad(
                    "unsupported Transfer-Encoding (only a single \"chunked\" is accepted)",
                ));
            }
            return Err(refuse(
                501,
                "not-implemented",
                "chunked request bodies are not supported by this prototype",
            ));
        }
        if hosts != 1 && !(http10 && hosts == 0) {
            return Err(bad("exactly one Host header is required"));
        }
        if ids != 1 {
            f.request_id = None;
        }
        Ok(f)
    }
}

/// `Content-Length`: digits only (no sign, list, or empty value).
fn content_length(v: &[u8]) -> Result<u64, Refusal> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad("malformed Content-Length"));
    }
    Ok(v.iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d.saturating_sub(b'0'))))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether a caller field stays out of the upstream request: hop-by-hop, named in `Connection`,
/// replaced by the proxy's own, or an identity claim (`proxy::headers`).
fn dropped(name: &str, connection: &[&[u8]]) -> bool {
    let n = name.as_bytes();
    // The caller's framing is what the upstream frames the body by: `Connection: Content-Length`
    // must not strip it (the body would become the next request).
    if n.eq_ignore_ascii_case(b"content-length") {
        return false;
    }
    HOP_BY_HOP
        .iter()
        .any(|h| n.eq_ignore_ascii_case(h.as_bytes()))
        || [
            &b"host"[..],
            b"x-forwarded-proto",
            b"x-forwarded-host",
            b"x-request-id",
            b"forwarded",
            b"x-forwarded-for",
        ]
        .iter()
        .any(|h| n.eq_ignore_ascii_case(h))
        || connection.iter().any(|v| has_token(v, n))
        || http::HeaderName::from_bytes(n)
            .map(|h| portcullis::proxy::headers::is_identity_claim(&h))
            .unwrap_or(true)
}

/// The request line and fields the upstream gets.
fn write_upstream_head(
    req: &httparse::Request<'_, '_>,
    f: &Fields<'_>,
    hop: &HopText,
    upstream_host: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(req.method.unwrap_or_default().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or_default().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut fwd, mut xff) = (Vec::new(), Vec::new());
    for h in req.headers.iter() {
        if dropped(h.name, &f.connection) {
            // The caller's list is kept and extended, unless `Connection` named it (as
            // `proxy::headers::to_upstream` removes those before appending).
            let named = || f.connection.iter().any(|v| has_token(v, h.name.as_bytes()));
            if h.name.eq_ignore_ascii_case("forwarded") && !named() {
                fold(&mut fwd, h.value);
            } else if h.name.eq_ignore_ascii_case("x-forwarded-for") && !named() {
                fold(&mut xff, h.value);
            }
            continue;
        }
        field(out, h.name.as_bytes(), &[h.value]);
    }
    // A plain host (no quotes or separators) goes into `Forwarded` (`conn::Hop::forwarded`).
    let host = f.host.map(<[u8]>::trim_ascii).filter(|h| {
        !h.is_empty()
            && h.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(b))
    });
    match host {
        Some(h) => field(
            out,
            b"Forwarded",
            &[&fwd, &hop.forwarded, b";host=\"", h, b"\""],
        ),
        None => field(out, b"Forwarded", &[&fwd, &hop.forwarded]),
    }
    field(out, b"X-Forwarded-For", &[&xff, &hop.forwarded_for]);
    field(out, b"X-Forwarded-Proto", &[b"http"]);
    if let Some(h) = f.host {
        field(out, b"X-Forwarded-Host", &[h.trim_ascii()]);
    }
    match f.request_id.filter(|v| valid_request_id(v)) {
        Some(id) => field(out, b"X-Request-Id", &[id]),
        None => field(out, b"X-Request-Id", &[&new_request_id()]),
    }
    field(out, b"Host", &[upstream_host.as_bytes()]);
    out.extend_from_slice(b"\r\n");
}

/// Append a caller's list element to `acc` as `value, ` (empty values skipped).
fn fold(acc: &mut Vec<u8>, v: &[u8]) {
    let v = v.trim_ascii();
    if !v.is_empty() {
        acc.extend_from_slice(v);
        acc.extend_from_slice(b", ");
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[&[u8]]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for v in value {
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"\r\n");
}

/// The caller's id is kept when it is 1–128 of `[A-Za-z0-9._:-]` (`pipeline::head::request_id`).
fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
}

/// 128 random bits as 32 lower-case hex digits.
fn new_request_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let mut bits = rand::random::<u128>();
    for d in id.iter_mut().rev() {
        *d = HEX.get((bits & 0xf) as usize).copied().unwrap_or(b'0');
        bits >>= 4;
    }
    id
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes: the caller's connection closes after it too.
    Close,
}

/// What the response head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ResponseHead {
    len: usize,
    framing: Framing,
    /// The upstream connection may carry another request after this one.
    reusable: bool,
    /// A 1xx answer to skip: the real one follows.
    interim: bool,
}

/// Parse the upstream's response head at the start of `buf` and write the caller's head to
/// `out`. `Ok(None)`: incomplete. `Err`: the response cannot be relayed safely (502).
fn parse_response(
    buf: &[u8],
    head_method: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, &'static str> {
    // (httparse has no uninitialised-slots parse for responses.)
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        _ => return Err("malformed or oversized upstream response head"),
    };
    let code = resp.code.unwrap_or(0);
    if code == 101 {
        return Err("upstream switched protocols");
    }
    if (100..200).contains(&code) {
        return Ok(Some(ResponseHead {
            len,
            framing: Framing::None,
            reusable: true,
            interim: true,
        }));
    }
    let (mut length, mut chunked, mut other_coding, mut upstream_close) =
        (None, false, false, false);
    let mut connection: Vec<&[u8]> = Vec::new();
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = content_length(h.value).map_err(|_| "bad upstream Content-Length")?;
            if length.is_some_and(|m| m != n) {
                return Err("conflicting upstream Content-Length");
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only a final `chunked` frames the body; anything else reads to the close.
            chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") && !other_coding;
            other_coding |= !chunked;
        } else if name.eq_ignore_ascii_case(b"connection") {
            upstream_close |= has_token(h.value, b"close");
            connection.push(h.value);
        }
    }
    let coded = chunked || other_coding;
    if coded && length.is_some() {
        return Err("upstream sent both Content-Length and Transfer-Encoding");
    }
    let framing = if head_method || code == 204 || code == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if other_coding {
        Framing::Close
    } else {
        length.map_or(Framing::Close, Framing::Length)
    };
    write_caller_head(&resp, &connection, framing, close, out);
    Ok(Some(ResponseHead {
        len,
        framing,
        reusable: resp.version == Some(1) && !upstream_close && framing != Framing::Close,
        interim: false,
    }))
}

/// The status line and fields the caller gets.
fn write_caller_head(
    resp: &httparse::Response<'_, '_>,
    connection: &[&[u8]],
    framing: Framing,
    close: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let code = resp.code.unwrap_or(502);
    out.extend_from_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let n = h.name.as_bytes();
        if HOP_BY_HOP
            .iter()
            .any(|x| n.eq_ignore_ascii_case(x.as_bytes()))
            || connection.iter().any(|v| has_token(v, n))
        {
            continue;
        }
        field(out, n, &[h.value]);
    }
    if framing == Framing::Chunked {
        field(out, b"Transfer-Encoding", &[b"chunked"]);
    }
    if close || framing == Framing::Close {
        field(out, b"Connection", &[b"close"]);
    }
    out.extend_from_slice(b"\r\n");
}

/// Finds where a chunked body ends, fed the bytes as they arrive, with the same strictness as
/// `transport::framing` (CRLF line ends, 1–16 hex digits, field-line trailers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    /// In a size line; `true` once its CR was seen; extensions are skipped.
    Size {
        digits: u8,
        size: u64,
        ext: bool,
        cr: bool,
    },
    Data(u64),
    /// The CRLF after chunk data; `true` once its CR was seen.
    DataEnd(bool),
    /// At the start of a trailer line (`cr`: seen a CR there), or inside one.
    TrailerStart(bool),
    Trailer(bool),
    Done,
}

impl Chunks {
    const START: Chunks = Chunks::Size {
        digits: 0,
        size: 0,
        ext: false,
        cr: false,
    };

    /// Feed `data`; `Ok(Some(n))`: the body ended after `n` of these bytes.
    fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, &'static str> {
        let mut i = 0;
        while i < data.len() {
            if let Chunks::Data(n) = *self {
                let take = (data.len() - i).min(usize::try_from(n).unwrap_or(usize::MAX));
                i += take;
                *self = match n - take as u64 {
                    0 => Chunks::DataEnd(false),
                    rest => Chunks::Data(rest),
                };
                continue;
            }
            let b = data.get(i).copied().unwrap_or(0);
            i += 1;
            *self = self.step(b)?;
            if *self == Chunks::Done {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn step(self, b: u8) -> Result<Chunks, &'static str> {
        const BAD: &str = "malformed chunked body from upstream";
        Ok(match self {
            Chunks::Size {
                cr: true,
                size,
                digits,
                ..
            } if b == b'\n' && digits > 0 => {
                if size == 0 {
                    Chunks::TrailerStart(false)
                } else {
                    Chunks::Data(size)
                }
            }
            Chunks::Size { cr: true, .. } => return Err(BAD),
            Chunks::Size {
                digits, size, ext, ..
            } if b == b'\r' => Chunks::Size {
                digits,
                size,
                ext,
                cr: true,
            },
            Chunks::Size { ext: true, .. } if b == b'\n' => return Err(BAD),
            s @ Chunks::Size { ext: true, .. } => s,
            Chunks::Size { digits, size, .. } if b.is_ascii_hexdigit() && digits < 16 => {
                let d = (b as char).to_digit(16).unwrap_or(0);
                Chunks::Size {
                    digits: digits + 1,
                    size: size << 4 | u64::from(d),
                    ext: false,
                    cr: false,
                }
            }
            Chunks::Size { digits, size, .. } if b == b';' && digits > 0 => Chunks::Size {
                digits,
                size,
                ext: true,
                cr: false,
            },
            Chunks::Size { .. } => return Err(BAD),
            Chunks::DataEnd(false) if b == b'\r' => Chunks::DataEnd(true),
            Chunks::DataEnd(true) if b == b'\n' => Chunks::START,
            Chunks::TrailerStart(false) if b == b'\r' => Chunks::TrailerStart(true),
            Chunks::TrailerStart(true) if b == b'\n' => Chunks::Done,
            Chunks::TrailerStart(false) if b != b'\n' && b != b' ' && b != b'\t' => {
                Chunks::Trailer(false)
            }
            Chunks::Trailer(false) if b == b'\r' => Chunks::Trailer(true),
            Chunks::Trailer(true) if b == b'\n' => Chunks::TrailerStart(false),
            Chunks::Trailer(false) if b != b'\n' => Chunks::Trailer(false),
            _ => return Err(BAD),
        })
    }
}

/// A pooled upstream connection with its read buffer.
#[derive(Debug)]
struct Upstream {
    stream: TcpStream,
    buf: Vec<u8>,
}

thread_local! {
    /// This worker's idle upstream connections (LIFO: the warmest first).
    static POOL: RefCell<Vec<Upstream>> = const { RefCell::new(Vec::new()) };
}

fn pooled() -> Option<Upstream> {
    POOL.with(|p| p.borrow_mut().pop())
}

fn release(u: Upstream) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(u);
        }
    });
}

/// Why an exchange with the upstream failed.
#[derive(Debug)]
enum UpstreamError {
    /// Nothing of the answer arrived on a reused connection: the request may be sent again.
    Stale,
    /// The caller gets a 502 (nothing was written to it yet).
    Bad(&'static str),
    /// The caller's connection must close (an answer was partly written, or the caller went).
    Broken,
}

/// One caller connection.
struct Conn {
    stream: TcpStream,
    target: Arc<Target>,
    hop: HopText,
    /// Bytes read from the caller not yet consumed (the next head, pipelined requests).
    buf: Vec<u8>,
    /// The upstream request head (plus the body bytes already read).
    req: Vec<u8>,
    /// The caller's response head (plus the body bytes already read).
    resp: Vec<u8>,
    /// Part of this request's answer was written: a failure now can only close the connection.
    answered: bool,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr, target: Arc<Target>) -> Conn {
        Conn {
            stream,
            target,
            hop: HopText::new(peer),
            buf: Vec::with_capacity(READ_CHUNK),
            req: Vec::with_capacity(1024),
            resp: Vec::with_capacity(1024),
            answered: false,
        }
    }

    async fn serve(mut self) {
        loop {
            let head = match self.read_head().await {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(r) => return self.refuse(r).await,
            };
            let keep = match self.exchange(head).await {
                Ok(keep) => keep,
                Err(UpstreamError::Bad(why)) => {
                    return self.refuse(refuse(502, "upstream-unavailable", why)).await;
                }
                Err(UpstreamError::Stale) => {
                    let why = "the upstream closed the connection";
                    return self.refuse(refuse(502, "upstream-unavailable", why)).await;
                }
                Err(UpstreamError::Broken) => return,
            };
            if !keep {
                let _ = self.stream.shutdown().await;
                return;
            }
        }
    }

    /// Read until a whole head is in `buf`; `Ok(None)` when the caller closed or timed out
    /// between requests.
    /// The head must be complete within the head timeout of the first read that waits for it
    /// (one deadline, not one per read: a head trickling in a byte at a time is cut off too).
    async fn read_head(&mut self) -> Result<Option<RequestHead>, Refusal> {
        let mut deadline = None;
        loop {
            if !self.buf.is_empty() {
                let (target, hop) = (&self.target, &self.hop);
                if let Some(h) = parse_request(&self.buf, hop, target, &mut self.req)? {
                    return Ok(Some(h));
                }
            }
            self.buf.reserve(READ_CHUNK);
            let at = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + self.target.head_timeout);
            match tokio::time::timeout_at(at, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(_) => {
                    return Err(refuse(
                        408,
                        "request-timeout",
                        "request head not received in time",
                    ))
                }
            }
        }
    }

    /// Answer a refusal with problem+json and close.
    async fn refuse(mut self, r: Refusal) {
        let body = format!(
            "{{\"type\":\"urn:portcullis:{}\",\"title\":\"{}\",\"status\":{},\"detail\":\"{}\"}}",
            r.code,
            http::StatusCode::from_u16(r.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or(""),
            r.status,
            r.detail.replace('"', "\\\""),
        );
        let head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            r.status,
            http::StatusCode::from_u16(r.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or(""),
            body.len()
        );
        let _ = self
            .stream
            .write_all(&[head, body].concat().into_bytes())
            .await;
        let _ = self.stream.shutdown().await;
    }

    /// Forward one request and relay its answer; `Ok(true)` when the connection stays open.
    async fn exchange(&mut self, head: RequestHead) -> Result<bool, UpstreamError> {
        self.answered = false;
        // The body bytes already read go with the head in one write.
        let in_hand =
            (self.buf.len() - head.len).min(usize::try_from(head.body).unwrap_or(usize::MAX));
        self.req.extend_from_slice(
            self.buf
                .get(head.len..head.len + in_hand)
                .unwrap_or_default(),
        );
        self.buf.drain(..head.len + in_hand);
        let rest = head.body - in_hand as u64;
        let mut attempt = pooled();
        loop {
            // A reused connection the upstream closed meanwhile fails before any answer: send
            // again on a fresh one, but only when the whole request is still in hand.
            let fresh = attempt.is_none();
            let up = match attempt.take() {
                Some(u) => u,
                None => connect(self.target.addr).await?,
            };
            let res = tokio::time::timeout(UPSTREAM_TIMEOUT, self.round_trip(up, head, rest)).await;
            match res {
                Ok(Err(UpstreamError::Stale)) if !fresh && rest == 0 => continue,
                Ok(Err(UpstreamError::Stale)) => return Err(UpstreamError::Bad("upstream closed")),
                Ok(r) => return r,
                Err(_) if self.answered => return Err(UpstreamError::Broken),
                Err(_) => return Err(UpstreamError::Bad("upstream timed out")),
            }
        }
    }

    /// Send the request on `up`, relay the answer, pool `up` again when it can be reused.
    async fn round_trip(
        &mut self,
        mut up: Upstream,
        head: RequestHead,
        rest: u64,
    ) -> Result<bool, UpstreamError> {
        if up.stream.write_all(&self.req).await.is_err() {
            return Err(UpstreamError::Stale);
        }
        if rest > 0 {
            copy_exact(&mut self.stream, &mut self.buf, &mut up.stream, rest).await?;
        }
        let mut received = false;
        let rh = loop {
            // Parse what is in hand first: the final answer may have come with a 1xx.
            if !up.buf.is_empty() {
                match parse_response(&up.buf, head.head_method, head.close, &mut self.resp) {
                    Ok(Some(rh)) if rh.interim => {
                        up.buf.drain(..rh.len);
                        continue;
                    }
                    Ok(Some(rh)) => break rh,
                    Ok(None) => {}
                    Err(e) => return Err(UpstreamError::Bad(e)),
                }
            }
            up.buf.reserve(READ_CHUNK);
            if up.stream.read_buf(&mut up.buf).await.unwrap_or(0) == 0 {
                return Err(if received {
                    UpstreamError::Bad("upstream closed mid-answer")
                } else {
                    UpstreamError::Stale
                });
            }
            received = true;
        };
        up.buf.drain(..rh.len);
        let whole = self.relay(&mut up, rh.framing).await?;
        if rh.reusable && whole && up.buf.is_empty() {
            release(up);
        }
        Ok(!head.close && rh.framing != Framing::Close)
    }

    /// Write the caller's head and the body, in one write when the body is already in hand.
    /// `Ok(true)` when the body ended exactly where the upstream's bytes did.
    async fn relay(&mut self, up: &mut Upstream, framing: Framing) -> Result<bool, UpstreamError> {
        let mut chunks = Chunks::START;
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        loop {
            let (take, done) = match framing {
                Framing::None => (0, true),
                Framing::Length(_) => {
                    let t = (up.buf.len() as u64).min(left);
                    left -= t;
                    (t as usize, left == 0)
                }
                Framing::Chunked => match chunks.feed(&up.buf) {
                    Ok(Some(end)) => (end, true),
                    Ok(None) => (up.buf.len(), false),
                    Err(_) => return Err(UpstreamError::Broken),
                },
                Framing::Close => (up.buf.len(), false),
            };
            self.resp
                .extend_from_slice(up.buf.get(..take).unwrap_or_default());
            up.buf.drain(..take);
            if !self.resp.is_empty() {
                self.answered = true;
                if self.stream.write_all(&self.resp).await.is_err() {
                    return Err(UpstreamError::Broken);
                }
            }
            self.resp.clear();
            if done {
                return Ok(true);
            }
            up.buf.reserve(READ_CHUNK);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(0) if framing == Framing::Close => return Ok(false),
                Ok(0) | Err(_) => return Err(UpstreamError::Broken),
                Ok(_) => {}
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<Upstream, UpstreamError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|_| UpstreamError::Bad("upstream connect failed"))?;
    let _ = stream.set_nodelay(true);
    Ok(Upstream {
        stream,
        buf: Vec::with_capacity(READ_CHUNK),
    })
}

/// Copy exactly `n` more body bytes from the caller to the upstream (`buf` is the caller's
/// read buffer; bytes past the body stay in it for the next request).
async fn copy_exact(
    from: &mut TcpStream,
    buf: &mut Vec<u8>,
    to: &mut TcpStream,
    mut n: u64,
) -> Result<(), UpstreamError> {
    while n > 0 {
        if buf.is_empty() {
            buf.reserve(READ_CHUNK);
            match from.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(UpstreamError::Broken),
                Ok(_) => {}
            }
        }
        let take = (buf.len() as u64).min(n) as usize;
        if to
            .write_all(buf.get(..take).unwrap_or_default())
            .await
            .is_err()
        {
            return Err(UpstreamError::Broken);
        }
        buf.drain(..take);
        n -= take as u64;
    }
    Ok(())
}

#[cfg(test)]
#[path = "h1_core/tests.rs"]
mod tests;
