//! The audit stage (`docs/audit.md`): one JSON line per decision on the audit sink, never mixed with
//! diagnostics. Requests hand a record to a bounded queue and move on; a writer thread drains
//! it every few milliseconds while records arrive, and sleeps until the next one once none has
//! for a while. It serializes and writes. A full queue drops the record and counts it: auditing
//! never blocks or fails a request.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::metrics::Metrics;

mod line;

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Stdout,
    File(PathBuf),
}

/// `[audit] max_size`/`max_files`: built-in rotation of a file sink. When the file reaches
/// `max_size` it is renamed `FILE.1` (older ones shift to `.2` …) and a new `FILE` is started;
/// beyond `max_files` rotated files, the oldest is deleted. Rotation happens between two lines,
/// by the single writer, so no line is split, lost or written twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: usize,
}

/// Rotated files kept when `max_files` is not set.
pub const DEFAULT_MAX_FILES: usize = 5;

/// The decision recorded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Allow,
    Deny,
    ShadowDeny,
    Observe,
}

impl Decision {
    /// As written in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::ShadowDeny => "shadow-deny",
            Decision::Observe => "observe",
        }
    }
}

/// One audit line. Never holds a password, key, token or signature. The request side fills it
/// with what it already has (shared, not copied); the writer thread renders it ([`line`]: the
/// fields in this order, as JSON; `target` as `path`, its query values redacted).
#[derive(Debug, Clone)]
pub struct Record {
    pub ts: SystemTime,
    pub request_id: http::HeaderValue,
    pub route: Option<Arc<str>>,
    pub method: http::Method,
    /// The request target; written as its path with every query value redacted.
    pub target: http::Uri,
    pub source: SocketAddr,
    pub decision: Decision,
    pub reason: &'static str,
    pub credential: Option<Arc<str>>,
    pub kind: Option<&'static str>,
    pub principal: Option<String>,
    pub identity: Option<String>,
    pub plan: Option<Arc<str>>,
    pub phase: Option<&'static str>,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub latency_ms: f64,
    pub jti: Option<Arc<str>>,
    /// The W3C trace id (32 hex digits) of the request's trace: the gateway's span when
    /// tracing is on, else a trusted caller's `traceparent`; null when neither.
    pub trace_id: Option<String>,
    /// `proxy` (forwarded upstream) or `decision` (answered to a front proxy).
    pub mode: &'static str,
}

/// `path?query` with each query value replaced by `REDACTED` (names kept: they are useful and
/// not secret; values, and bare items without `=`, may be API keys from legacy clients).
pub fn redact_query(path: &str, query: Option<&str>) -> String {
    let mut out = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    redacted_pieces(path, query, |piece| out.push_str(piece));
    out
}

/// [`redact_query`] as the pieces of its result, in order: the audit writer escapes them
/// straight into the line instead of building the string first.
fn redacted_pieces<'a>(path: &'a str, query: Option<&'a str>, mut put: impl FnMut(&'a str)) {
    put(path);
    let Some(q) = query else { return };
    put("?");
    for (i, pair) in q.split('&').enumerate() {
        if i > 0 {
            put("&");
        }
        match pair.split_once('=') {
            Some((name, _)) => {
                put(name);
                put("=REDACTED");
            }
            // A bare value (`?s3cr3t`) could be a key from an old client: redact it too.
            None if pair.is_empty() => {}
            None => put("REDACTED"),
        }
    }
}

/// The records between the requests and the writer. A request appends its record under the
/// lock; the writer takes the whole vector at once (swapping in its emptied spare) and renders
/// the records where they lie. A channel moved each record four times on its way (into its
/// slot, out, and twice more on the receiving side) and took a semaphore permit for each: half
/// of what a pass-through request's record cost the writer (issue 22).
#[derive(Debug)]
struct Queue {
    pending: Mutex<Vec<Record>>,
    /// Records the writer has taken and not yet written: they still count against `capacity`
    /// (the memory they hold is the queue's).
    taken: AtomicUsize,
    /// `[audit] queue`.
    capacity: usize,
    /// The writer is parked until the next record (see [`IDLE_AFTER`]). Set and read under the
    /// `pending` lock only, so a record pushed after the writer found the queue empty always
    /// sees it set: no record waits for the parked writer's backstop.
    asleep: AtomicBool,
    /// The writer's thread, to unpark it.
    writer: OnceLock<std::thread::Thread>,
    /// Live [`Auditor`]s. Not the `Arc`'s count: an `Auditor`'s `Drop` runs before its `Arc` is
    /// released, so a writer woken by the last one could still count it, park again and wait
    /// for its backstop (a second) at shutdown; this count goes down before the wake-up.
    senders: AtomicUsize,
    /// Drain passes so far (tests: a parked writer makes none).
    #[cfg(test)]
    passes: std::sync::atomic::AtomicU64,
}

impl Queue {
    /// The lock is held only to push or swap, and nothing under it panics: a poisoned one
    /// still holds a consistent vector.
    fn lock(&self) -> MutexGuard<'_, Vec<Record>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake the writer if it is parked.
    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

/// The sending side: the pipeline of each configuration generation holds a clone (requests use
/// it by reference).
#[derive(Debug)]
pub struct Auditor {
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    /// Set to ask the writer to reopen the file sink (SIGHUP after an external rotation).
    reopen: Arc<AtomicBool>,
    /// Set at shutdown, once no request can still be answered: the writer drains what is
    /// queued and ends, even though the process-wide senders (kept across reloads) remain.
    closing: Arc<AtomicBool>,
}

impl Auditor {
    /// Shutdown, once no request can still be answered: the writer writes what is queued and
    /// ends (the process-wide senders, kept across reloads, would otherwise keep it waiting).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.queue.wake();
    }

    /// Ask the writer to close and reopen the file sink (logrotate's `postrotate`): lines
    /// queued before go to the old file, lines after to the new one. Takes effect within one
    /// drain interval; a no-op for stdout.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        self.queue.wake();
    }

    /// Queue a record; drops (and counts) when the writer is behind.
    pub fn record(&self, r: Record) {
        let mut pending = self.queue.lock();
        if pending.len() + self.queue.taken.load(Ordering::Relaxed) < self.queue.capacity {
            // Moved once, into the queue (no `Option` around it on the way).
            pending.push(r);
            // Under the lock: see `Queue::asleep`. Busy, the writer polls and this is one
            // relaxed load; only the first record after a quiet spell pays for a wake-up.
            let asleep = self.queue.asleep.load(Ordering::Relaxed);
            if asleep {
                self.queue.asleep.store(false, Ordering::Relaxed);
            }
            drop(pending);
            if asleep {
                self.queue.wake();
            }
            return;
        }
        drop(pending);
        self.metrics.audit_dropped_total.inc();
        // `r` is dropped here, outside the lock.
    }
}

impl Clone for Auditor {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::Relaxed);
        Auditor {
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            reopen: self.reopen.clone(),
            closing: self.closing.clone(),
        }
    }
}

impl Drop for Auditor {
    /// The last sender gone: the writer writes what is queued and ends at once rather than at
    /// its parked backstop. Counted down first, so the woken writer cannot still see this one.
    fn drop(&mut self) {
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.wake();
        }
    }
}

/// Open the sink and start the writer. The returned handle finishes writing what is queued
/// once every [`Auditor`] is dropped.
pub fn start(
    sink: &AuditSink,
    queue: usize,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Auditor, tokio::task::JoinHandle<()>)> {
    start_rotating(sink, queue, None, metrics)
}

/// [`start`] with built-in rotation of a file sink.
pub fn start_rotating(
    sink: &AuditSink,
    queue: usize,
    rotation: Option<Rotation>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Auditor, tokio::task::JoinHandle<()>)> {
    let out = match sink {
        AuditSink::Stdout => Sink::Stdout(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        )),
        AuditSink::File(p) => Sink::File(SinkFile::open(p.clone(), rotation)?),
    };
    let queue = Arc::new(Queue {
        pending: Mutex::new(Vec::new()),
        taken: AtomicUsize::new(0),
        capacity: queue.max(1),
        asleep: AtomicBool::new(false),
        writer: OnceLock::new(),
        senders: AtomicUsize::new(1),
        #[cfg(test)]
        passes: std::sync::atomic::AtomicU64::new(0),
    });
    let reopen = Arc::new(AtomicBool::new(false));
    let closing = Arc::new(AtomicBool::new(false));
    let flags = (reopen.clone(), closing.clone());
    let rx = queue.clone();
    let handle = tokio::task::spawn_blocking(move || writer(rx, out, &flags.0, &flags.1));
    Ok((
        Auditor {
            queue,
            metrics,
            reopen,
            closing,
        },
        handle,
    ))
}

/// Where the writer writes.
enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File(SinkFile),
}

/// The audit file, with what rotation needs.
struct SinkFile {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// Bytes in the current file (written or buffered).
    size: u64,
    rotation: Option<Rotation>,
}

impl SinkFile {
    fn open(path: PathBuf, rotation: Option<Rotation>) -> std::io::Result<SinkFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(SinkFile {
            path,
            out: std::io::BufWriter::with_capacity(64 * 1024, file),
            size,
            rotation,
        })
    }

    /// Flush and open the path again (it may have been renamed away). On failure the old file
    /// stays in use: lines keep going somewhere rather than nowhere.
    fn reopen(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!(error = %e, "audit sink flush failed");
        }
        match SinkFile::open(self.path.clone(), self.rotation) {
            Ok(fresh) => *self = fresh,
            Err(e) => tracing::error!(file = %self.path.display(), error = %e,
                "cannot reopen the audit file; still writing to the previous one"),
        }
    }

    /// Built-in rotation: when the file is full, shift `FILE.N-1` → `FILE.N` …, `FILE` →
    /// `FILE.1`, delete what is beyond `max_files`, and start a new `FILE`.
    fn rotate_if_full(&mut self) {
        let Some(r) = self.rotation else { return };
        if self.size < r.max_size {
            return;
        }
        if let Err(e) = self.out.flush() {
            tracing::error!(error = %e, "audit sink flush failed");
        }
        let _ = std::fs::remove_file(numbered(&self.path, r.max_files));
        for n in (1..r.max_files).rev() {
            let _ = std::fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1));
        }
        if let Err(e) = std::fs::rename(&self.path, numbered(&self.path, 1)) {
            tracing::error!(file = %self.path.display(), error = %e,
                "audit file rotation failed; writing on, next attempt after another max_size");
            // Keep writing to the same file (no line lost), and do not retry (and log) on
            // every line.
            self.size = 0;
            return;
        }
        self.reopen();
    }
}

/// `FILE.n`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(o) => o.write_all(line),
            Sink::File(f) => {
                f.out.write_all(line)?;
                f.size += line.len() as u64;
                f.rotate_if_full();
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(o) => o.flush(),
            Sink::File(f) => f.out.flush(),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File(f) = self {
            f.reopen();
        }
    }
}

/// How long the writer sleeps between drains of the queue. The writer polls instead of waiting
/// on the queue: a waiting receiver is woken by every send, which costs each request a futex
/// wake and a context switch, more than the rest of a pass-through request. A record reaches the
/// sink within this interval; the default queue (8,192) absorbs ~800k records a second at it.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// After this many drains in a row found nothing, the writer parks until a record arrives (the
/// first one after a quiet spell wakes it: one futex wake, not one per record). Polling on
/// would wake an idle gateway a hundred times a second.
const IDLE_AFTER: u32 = 10;

/// A parked writer still looks at its flags and its senders this often, should a wake-up be
/// missed (it is not expected to be: [`Queue::asleep`]).
const PARKED_BACKSTOP: Duration = Duration::from_secs(1);

/// Records' room the queue's vectors keep between bursts.
const KEEP_ROOM: usize = 1024;

fn writer(queue: Arc<Queue>, mut out: Sink, reopen: &AtomicBool, closing: &AtomicBool) {
    let mut line = Vec::with_capacity(512);
    let mut renderer = line::Renderer::new();
    let mut batch = Vec::new();
    let busy = queue.capacity / 2;
    let _ = queue.writer.set(std::thread::current());
    let mut quiet = 0u32;
    loop {
        // Between two lines: everything before went to the old file, everything after goes
        // to the new one.
        if reopen.swap(false, Ordering::AcqRel) {
            out.reopen();
        }
        #[cfg(test)]
        queue.passes.fetch_add(1, Ordering::Relaxed);
        // Read before taking the queue: what was queued before `close` is written in this pass.
        let shutting = closing.load(Ordering::Acquire);
        // Every sender is gone (shutdown): nothing can be queued after the batch taken below.
        let orphaned = queue.senders.load(Ordering::Acquire) == 0;
        {
            let mut pending = queue.lock();
            std::mem::swap(&mut *pending, &mut batch);
            queue.taken.store(batch.len(), Ordering::Relaxed);
        }
        for r in &batch {
            line.clear();
            renderer.render(r, &mut line);
            line.push(b'\n');
            if let Err(e) = out.write_line(&line) {
                tracing::error!(error = %e, "audit sink write failed");
            }
            queue.taken.fetch_sub(1, Ordering::Relaxed);
        }
        let written = batch.len();
        // The records are dropped here; the vector keeps its room for the next swap, unless a
        // burst grew it far beyond what is arriving now (the queue's two vectors would
        // otherwise each hold room for `queue` records for good).
        batch.clear();
        if batch.capacity() > KEEP_ROOM && written < KEEP_ROOM / 4 {
            batch.shrink_to(KEEP_ROOM);
        }
        if written > 0 {
            if let Err(e) = out.flush() {
                tracing::error!(error = %e, "audit sink flush failed");
            }
        }
        if shutting || orphaned {
            break;
        }
        quiet = if written == 0 {
            quiet.saturating_add(1)
        } else {
            0
        };
        if quiet >= IDLE_AFTER {
            park(&queue, reopen, closing);
        } else if written < busy {
            // Under a burst that filled half the queue, drain again at once.
            std::thread::sleep(DRAIN_EVERY);
        }
    }
    let _ = out.flush();
}

/// Park the writer until a record, a flag or the last sender's drop wakes it (or the backstop).
fn park(queue: &Arc<Queue>, reopen: &AtomicBool, closing: &AtomicBool) {
    {
        let pending = queue.lock();
        if !pending.is_empty() {
            return;
        }
        queue.asleep.store(true, Ordering::Relaxed);
    }
    // Set before `asleep` was, the flags are seen here; set after, their setter unparks us (an
    // unpark before the park makes the park return at once).
    if !reopen.load(Ordering::Acquire)
        && !closing.load(Ordering::Acquire)
        && queue.senders.load(Ordering::Acquire) > 0
    {
        std::thread::park_timeout(PARKED_BACKSTOP);
    }
    let _pending = queue.lock();
    queue.asleep.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
