//! The load generator of `bench/run`: HTTP/1.1 keep-alive GETs over N connections, plain or mTLS,
//! in one of two modes.
//!
//! * **closed loop** (no `--rate`): every connection sends its next request as soon as the previous
//!   answer arrived — this finds the saturation throughput (what `wrk` measures).
//! * **open loop** (`--rate R`): requests are due on a fixed schedule, `R` per second in total,
//!   spread evenly over the connections (the `wrk2` scheme). Latency is measured from the
//!   request's *scheduled* time whenever the connection was still busy with an earlier request
//!   at that time, so a slow answer is charged to every request queued behind it — the
//!   correction for coordinated omission that a closed-loop tool lacks. When the connection was
//!   idle, latency is measured from the actual send, so the 1 ms granularity of the tokio timer
//!   is not charged to the server. Requests still unsent when the run ends count with the time
//!   they had already waited (a lower bound), so an overloaded server cannot hide its backlog.
//!
//! `wrk` cannot present a client certificate, and `wrk2`/`oha` are not Debian packages, so the
//! benchmark uses this one tool for every configuration: the numbers stay comparable.
//!
//! * **handshakes** (`--new-connection`, closed loop): every request opens its own connection
//!   (TCP, plus the full TLS handshake for an https URL: no session resumption) and sends
//!   `Connection: close`, so `rps` is handshakes per second and latency includes the connect.
//!
//! Prints one JSON object on stdout: `requests` (answers received in the measured window),
//! `rps`, `p50_ms`, `p99_ms`, `p999_ms`, `max_ms`, `errors` (connection or protocol failures),
//! `bad_status` (answers other than `--expect`), `unsent` (open loop), `target_rate`.

#![expect(
    clippy::indexing_slicing,
    reason = "a measuring tool, not gateway code: failing loudly is the right behaviour here"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// `http://host:port/path` or `https://host:port/path` (host must be an IP or resolve locally).
    #[arg(long)]
    url: String,
    /// Keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Runtime worker threads of the generator.
    #[arg(long, short = 't', default_value_t = 2)]
    threads: usize,
    /// Measured duration.
    #[arg(long, short = 'd', default_value = "8s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before it (same load).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Open loop at this many requests per second in total; absent: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Expected status; other answers count as `bad_status`.
    #[arg(long, default_value_t = 200)]
    expect: u16,
    /// CA bundle for an https URL.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    #[arg(long)]
    key: Option<PathBuf>,
    /// A new connection (and TLS handshake) for every request: measures handshakes, not requests
    /// on a warm connection. Closed loop only.
    #[arg(long, conflicts_with = "rate")]
    new_connection: bool,
    /// Write each measured request of an open-loop run as `due_ms latency_us` (due time from the
    /// start of the measured window) to this file: what a tail is made of, and when.
    #[arg(long, requires = "rate")]
    timeline: Option<PathBuf>,
}

/// Where and what to send.
struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
    headers: HeaderMap,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    expect: u16,
    /// `--new-connection`: connect for every request.
    fresh: bool,
}

type Sender = SendRequest<Empty<Bytes>>;

impl Target {
    async fn connect(&self) -> anyhow::Result<Sender> {
        let s = tokio::net::TcpStream::connect(self.addr).await?;
        s.set_nodelay(true)?;
        let tx = match &self.tls {
            None => {
                let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                tokio::spawn(conn);
                tx
            }
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), s).await?;
                let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                tx
            }
        };
        Ok(tx)
    }

    /// One request on `tx`; `Ok(true)` when the status was the expected one.
    async fn send(&self, tx: &mut Sender) -> anyhow::Result<bool> {
        tx.ready().await?;
        let mut req = hyper::Request::get(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .body(Empty::new())?;
        req.headers_mut().extend(self.headers.clone());
        let resp = tx.send_request(req).await?;
        let ok = resp.status().as_u16() == self.expect;
        resp.into_body().collect().await?;
        Ok(ok)
    }
}

/// What one connection saw in the measured window.
#[derive(Default)]
struct Tally {
    /// Latencies in microseconds.
    lat_us: Vec<u32>,
    /// Open loop, answered requests: (due time from the start of the measured window, latency),
    /// microseconds.
    timeline: Vec<(u32, u32)>,
    answers: u64,
    errors: u64,
    bad_status: u64,
    unsent: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Connect, retrying briefly: a refused connection counts as an error, not a crash.
async fn connect(t: &Target, tally: &mut Tally, until: Instant) -> Option<Sender> {
    loop {
        match t.connect().await {
            Ok(tx) => return Some(tx),
            Err(_) => {
                tally.errors += 1;
                if Instant::now() >= until {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn closed_loop(t: Arc<Target>, measure_from: Instant, end: Instant) -> Tally {
    if t.fresh {
        return handshake_loop(t, measure_from, end).await;
    }
    let mut tally = Tally::default();
    let Some(mut tx) = connect(&t, &mut tally, end).await else {
        return tally;
    };
    while Instant::now() < end {
        let started = Instant::now();
        let res = t.send(&mut tx).await;
        let done = Instant::now();
        let counted = started >= measure_from && done <= end;
        match res {
            Ok(ok) => {
                if counted {
                    tally.answers += 1;
                    tally.lat_us.push(micros(done - started));
                    if !ok {
                        tally.bad_status += 1;
                    }
                }
            }
            Err(_) => {
                if counted {
                    tally.errors += 1;
                }
                match connect(&t, &mut tally, end).await {
                    Some(n) => tx = n,
                    None => break,
                }
            }
        }
    }
    tally
}

/// `--new-connection`: connect, send one request with `Connection: close`, drop the connection;
/// the latency counts from before the connect. A failed connect or request is an error.
async fn handshake_loop(t: Arc<Target>, measure_from: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < end {
        let started = Instant::now();
        let res = match t.connect().await {
            Ok(mut tx) => t.send(&mut tx).await,
            Err(e) => Err(e),
        };
        let done = Instant::now();
        if started < measure_from || done > end {
            continue;
        }
        match res {
            Ok(ok) => {
                tally.answers += 1;
                tally.lat_us.push(micros(done - started));
                if !ok {
                    tally.bad_status += 1;
                }
            }
            Err(_) => {
                tally.errors += 1;
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

/// Connection `index` of `n` sends request k at `start + (k + index/n) * interval`.
async fn open_loop(
    t: Arc<Target>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    interval: Duration,
    index: usize,
    n: usize,
) -> Tally {
    let mut tally = Tally::default();
    let Some(mut tx) = connect(&t, &mut tally, end).await else {
        return tally;
    };
    let offset = interval.mul_f64(index as f64 / n as f64);
    let mut prev_done = start;
    let mut k: u32 = 0;
    loop {
        let due = start + offset + interval * k;
        if due >= end {
            break;
        }
        let now = Instant::now();
        if now >= end {
            // Out of time with requests still due: charge what they waited so far.
            let mut due = due;
            while due < end {
                if due >= measure_from {
                    tally.unsent += 1;
                    tally.lat_us.push(micros(end - due));
                }
                k += 1;
                due = start + offset + interval * k;
            }
            break;
        }
        let origin = if now < due {
            tokio::time::sleep_until(due).await;
            Instant::now()
        } else if prev_done > due {
            // Queued behind a slow answer: the wait is the server's (coordinated omission).
            due
        } else {
            now
        };
        let res = t.send(&mut tx).await;
        let done = Instant::now();
        prev_done = done;
        if due >= measure_from {
            match &res {
                Ok(ok) => {
                    tally.answers += 1;
                    tally.lat_us.push(micros(done - origin));
                    tally
                        .timeline
                        .push((micros(due - measure_from), micros(done - origin)));
                    if !ok {
                        tally.bad_status += 1;
                    }
                }
                Err(_) => tally.errors += 1,
            }
        }
        if res.is_err() {
            match connect(&t, &mut tally, end).await {
                Some(n) => tx = n,
                None => break,
            }
        }
        k += 1;
    }
    tally
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn tls_connector(
    args: &Args,
    host: &str,
) -> anyhow::Result<(tokio_rustls::TlsConnector, ServerName<'static>)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = args
        .ca
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("https needs --ca"))?;
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            let key = match PrivateKeyDer::from_pem_file(key) {
                Ok(k) => k,
                Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                    anyhow::bail!("no private key in {}", key.display())
                }
                Err(e) => return Err(e.into()),
            };
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("--cert and --key go together"),
    };
    if args.new_connection {
        // Every handshake a full one: a resumed session would skip the certificate checks whose
        // cost `--new-connection` is there to measure.
        config.resumption = rustls::client::Resumption::disabled();
    }
    let name = ServerName::try_from(host.to_owned())?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

fn target(args: &Args) -> anyhow::Result<Target> {
    let uri: hyper::Uri = args.url.parse()?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => anyhow::bail!("--url must be http:// or https://"),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("--url has no host"))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host} does not resolve"))?;
    let mut headers = HeaderMap::new();
    if args.new_connection {
        // The server closes too, as after a one-request client: no idle connection piles up.
        headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("header {h:?} is not `Name: value`"))?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes())?,
            HeaderValue::from_str(value.trim())?,
        );
    }
    Ok(Target {
        addr,
        authority: authority.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        headers,
        tls: if https {
            Some(tls_connector(args, host)?)
        } else {
            None
        },
        expect: args.expect,
        fresh: args.new_connection,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t = Arc::new(target(&args)?);
    let n = args.connections.max(1);
    // One single-threaded runtime per thread, each owning its share of the connections (the
    // `wrk` layout): no work-stealing between threads on the hot path.
    let threads = args.threads.clamp(1, n);
    let start = std::time::Instant::now() + Duration::from_millis(200);
    let (warmup, duration, rate) = (args.warmup, args.duration, args.rate);
    let workers: Vec<_> = (0..threads)
        .map(|w| {
            let t = t.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<Tally>> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let out = rt.block_on(async move {
                    // Leave the connections a moment to open before the schedule starts.
                    let start = Instant::from_std(start);
                    let measure_from = start + warmup;
                    let end = measure_from + duration;
                    let mut tasks = Vec::new();
                    for i in (w..n).step_by(threads) {
                        let t = t.clone();
                        tasks.push(tokio::spawn(async move {
                            match rate {
                                None => {
                                    tokio::time::sleep_until(start).await;
                                    closed_loop(t, measure_from, end).await
                                }
                                Some(rate) => {
                                    let interval =
                                        Duration::from_secs_f64(n as f64 / rate.max(1.0));
                                    open_loop(t, start, measure_from, end, interval, i, n).await
                                }
                            }
                        }));
                    }
                    // A request still in flight 5 s after the end is a hang: stop waiting.
                    let deadline = end + Duration::from_secs(5);
                    let mut out = Vec::with_capacity(tasks.len());
                    for task in tasks {
                        if let Ok(Ok(tally)) = tokio::time::timeout_at(deadline, task).await {
                            out.push(tally);
                        }
                    }
                    out
                });
                // Do not wait for connections the server keeps open.
                rt.shutdown_timeout(Duration::from_millis(100));
                Ok(out)
            })
        })
        .collect();
    let mut tallies = Vec::with_capacity(n);
    for w in workers {
        let part = w
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        tallies.extend(part);
    }
    let mut lat: Vec<u32> = Vec::new();
    let mut timeline: Vec<(u32, u32)> = Vec::new();
    let (mut answers, mut errors, mut bad, mut unsent) = (0u64, 0u64, 0u64, 0u64);
    for t in tallies {
        lat.extend_from_slice(&t.lat_us);
        timeline.extend_from_slice(&t.timeline);
        answers += t.answers;
        errors += t.errors;
        bad += t.bad_status;
        unsent += t.unsent;
    }
    lat.sort_unstable();
    if let Some(path) = &args.timeline {
        timeline.sort_unstable();
        let mut text = String::with_capacity(timeline.len() * 16);
        for (due, lat) in &timeline {
            text.push_str(&format!("{:.3} {lat}\n", f64::from(*due) / 1000.0));
        }
        std::fs::write(path, text)?;
    }
    let secs = args.duration.as_secs_f64();
    let out = serde_json::json!({
        "mode": if args.rate.is_some() { "open" } else if args.new_connection { "handshake" } else { "closed" },
        "connections": n,
        "duration_s": secs,
        "target_rate": args.rate,
        "requests": answers,
        "rps": answers as f64 / secs,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "p999_ms": percentile(&lat, 0.999),
        "max_ms": lat.last().map_or(f64::NAN, |m| f64::from(*m) / 1000.0),
        "errors": errors,
        "bad_status": bad,
        "unsent": unsent,
    });
    println!("{out}");
    Ok(())
}
