//! Helpers for the outage tests (`outages.rs`): a TCP relay the test can cut and restore (a
//! network partition, or a dependency that goes away without losing its data), a ledger of every
//! request the clients sent and what each got, a load loop of several concurrent clients that
//! writes into it, and the accounting the tests assert: one audit line per request, usage equal
//! to the requests allowed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A TCP relay on a loopback port to `target`, run on std threads (independent of the test's
/// runtime). [`Relay::cut`] closes every relayed connection and the listening socket, so new
/// connections are refused (ECONNREFUSED, as from a host that went away); [`Relay::restore`]
/// listens again on the same port. [`Relay::freeze`] is the other kind of outage, a host that
/// hangs: connections stay open (new ones too) but no byte goes through until
/// [`Relay::restore`].
pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let flags = Flags {
            cut: cut.clone(),
            frozen: frozen.clone(),
            stop: stop.clone(),
        };
        let o = open.clone();
        let thread =
            std::thread::spawn(move || accept_loop(Some(listener), port, target, &flags, &o));
        Relay {
            port,
            cut,
            frozen,
            stop,
            open,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT` of the relay.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Cut: every relayed connection is closed at once, and new ones are refused until
    /// [`Relay::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // The accept loop drops its listener within one poll (5 ms): wait for it, so that a
        // connection attempted after `cut` returns is refused.
        let start = Instant::now();
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "relay did not close"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Freeze: nothing goes through, nothing is closed.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Listen and relay again (after a cut), or let the held bytes go on (after a freeze).
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The relay's switches, shared with its threads.
#[derive(Clone)]
struct Flags {
    cut: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn accept_loop(
    mut listener: Option<TcpListener>,
    port: u16,
    target: SocketAddr,
    flags: &Flags,
    open: &Arc<Mutex<Vec<TcpStream>>>,
) {
    while !flags.stop.load(Ordering::SeqCst) {
        if flags.frozen.load(Ordering::SeqCst) {
            // New connections complete their handshake in the backlog and wait there.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if flags.cut.load(Ordering::SeqCst) {
            listener = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(l) = &listener else {
            // Restored: listen on the same port again (std sets SO_REUSEADDR).
            listener = TcpListener::bind(("127.0.0.1", port)).ok();
            if let Some(l) = &listener {
                l.set_nonblocking(true).unwrap();
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
            continue;
        };
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut g = open.lock().unwrap();
                g.push(client.try_clone().unwrap());
                g.push(server.try_clone().unwrap());
                drop(g);
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    flags,
                );
                pipe(server, client, flags);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Copy `from` → `to` on a thread until either side ends; then close both. While frozen, what
/// was read is held back.
fn pipe(mut from: TcpStream, mut to: TcpStream, flags: &Flags) {
    let flags = flags.clone();
    std::thread::spawn(move || {
        let mut buf = [0_u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    while flags.frozen.load(Ordering::SeqCst) && !flags.stop.load(Ordering::SeqCst)
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// What one request got, as the client saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The `X-Request-Id` the client sent (unique per request); the gateway echoes it and
    /// writes it into the audit line.
    pub id: String,
    /// Which caller sent it (a key, a user: what the test counts usage by).
    pub who: &'static str,
    /// 0 when no response came back at all (always a failure: the gateway must answer).
    pub status: u16,
    /// The problem `type` of a refusal.
    pub problem: Option<String>,
    pub retry_after: Option<String>,
    /// The test's phase when the request was sent (see [`Ledger::set_phase`]).
    pub phase: u8,
    /// When the request was sent.
    pub sent: Instant,
    /// When the response arrived.
    pub at: Instant,
}

/// Every request sent in a scenario, whoever sent it (load loop or probe).
#[derive(Clone, Default)]
pub struct Ledger {
    pub all: Arc<Mutex<Vec<Outcome>>>,
    phase: Arc<AtomicU8>,
    seq: Arc<AtomicU64>,
}

pub const BEFORE: u8 = 0;
pub const DOWN: u8 = 1;
pub const RECOVERING: u8 = 2;
pub const AFTER: u8 = 3;

impl Ledger {
    pub fn set_phase(&self, p: u8) {
        self.phase.store(p, Ordering::SeqCst);
    }

    /// Send `req` with a fresh request id (`<who>-<n>`: `who` may hold only the characters
    /// the gateway accepts in an `X-Request-Id`, `A-Z a-z 0-9 . _ : -`), record what came back.
    pub async fn send(&self, who: &'static str, req: reqwest::RequestBuilder) -> Outcome {
        let id = format!("{who}-{}", self.seq.fetch_add(1, Ordering::SeqCst));
        let phase = self.phase.load(Ordering::SeqCst);
        let sent = Instant::now();
        let r = req.header("x-request-id", &id).send().await;
        let mut o = Outcome {
            id: id.clone(),
            who,
            status: 0,
            problem: None,
            retry_after: None,
            phase,
            sent,
            at: Instant::now(),
        };
        if let Ok(r) = r {
            o.status = r.status().as_u16();
            assert_eq!(
                r.headers().get("x-request-id").map(|v| v.to_str().unwrap()),
                Some(id.as_str()),
                "the gateway echoes the request id"
            );
            o.retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = r.text().await.unwrap_or_default();
            o.problem = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned));
            o.at = Instant::now();
        }
        self.all.lock().unwrap().push(o.clone());
        o
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.all.lock().unwrap().clone()
    }

    /// How many requests of `who` got `status`.
    pub fn count(&self, who: &str, status: u16) -> u64 {
        self.outcomes()
            .iter()
            .filter(|o| o.who == who && o.status == status)
            .count() as u64
    }
}

/// A request factory: each call builds the next request of one client.
pub type MakeRequest = Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>;

/// Several clients sending requests one after another (each a few ms apart, the machine is
/// shared) until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    pub fn start(ledger: &Ledger, clients: Vec<(&'static str, MakeRequest)>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for (who, make) in clients {
            let (stop, ledger) = (stop.clone(), ledger.clone());
            tasks.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    ledger.send(who, make()).await;
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            });
        }
        Load { stop, tasks }
    }

    /// Stop sending and wait for every request in flight to be answered.
    pub async fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(r) = self.tasks.join_next().await {
            r.unwrap();
        }
    }
}

/// Every audit line in `files`, by request id.
pub fn audit_by_id(files: &[PathBuf]) -> HashMap<String, Vec<Value>> {
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let id = v["request_id"].as_str().unwrap().to_owned();
            by_id.entry(id).or_default().push(v);
        }
    }
    by_id
}

/// The audit files of stopped gateways hold exactly one line per request the ledger sent: none
/// missing, none written twice, none extra, each with the status the client got. Returns the
/// audit lines whose decision is `allow`, by caller.
pub fn assert_one_audit_line_per_request(
    files: &[PathBuf],
    ledger: &Ledger,
) -> HashMap<&'static str, u64> {
    let by_id = audit_by_id(files);
    let outcomes = ledger.outcomes();
    let mut allowed: HashMap<&'static str, u64> = HashMap::new();
    for o in &outcomes {
        assert_ne!(o.status, 0, "{} got no response at all", o.id);
        let lines = by_id
            .get(&o.id)
            .unwrap_or_else(|| panic!("no audit line for {} ({o:?})", o.id));
        assert_eq!(lines.len(), 1, "{} audited {} times", o.id, lines.len());
        let line = &lines[0];
        assert_eq!(line["status"], o.status, "{}: {line}", o.id);
        let decision = line["decision"].as_str().unwrap();
        if o.status < 400 {
            assert_eq!(decision, "allow", "{line}");
        }
        if let Some(p) = &o.problem {
            let code = p.trim_start_matches("urn:portcullis:");
            assert_eq!(line["reason"], code, "{line}");
        }
        if decision == "allow" {
            *allowed.entry(o.who).or_default() += 1;
        }
    }
    assert_eq!(
        by_id.values().map(Vec::len).sum::<usize>(),
        outcomes.len(),
        "audit lines for requests nobody sent"
    );
    allowed
}

/// `count` of the inventory entry whose `principal` (or, for workload identities, `identity`)
/// is `who`; 0 when there is none.
pub fn inventory_count(inv: &Value, who: &str) -> u64 {
    fn walk(v: &Value, who: &str) -> Option<u64> {
        match v {
            Value::Object(m) => {
                let named = m.get("principal").and_then(Value::as_str) == Some(who)
                    || (m.get("principal").is_none_or(Value::is_null)
                        && m.get("identity").and_then(Value::as_str) == Some(who));
                if named && m.contains_key("count") {
                    return m.get("count").and_then(Value::as_u64);
                }
                m.values().find_map(|x| walk(x, who))
            }
            Value::Array(a) => a.iter().find_map(|x| walk(x, who)),
            _ => None,
        }
    }
    walk(inv, who).unwrap_or(0)
}

/// `GET /admin/v1/inventory` of a running gateway.
pub async fn inventory(admin: SocketAddr) -> Value {
    reqwest::get(format!("http://{admin}/admin/v1/inventory"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One sample of a metric (`name{labels} value`, `line_prefix` up to the value), 0 if absent.
pub async fn metric(admin: SocketAddr, line_prefix: &str) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `GET /readyz`: (status, body).
pub async fn readyz(admin: SocketAddr) -> (u16, String) {
    let r = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Poll `f` every 20 ms until it holds, for at most `limit`; panics with `what` otherwise.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what} (after {limit:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The audit file of a gateway started with [`crate::support::base_config`] in `dir`.
pub fn audit_file(dir: &Path) -> PathBuf {
    dir.join("audit.jsonl")
}
