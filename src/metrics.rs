//! Prometheus metrics (`docs/metrics.md`, prefix `portcullis_`), rendered in the text exposition format.
//! A small hand-rolled registry: label sets are created on first use and then cost one read-lock
//! and an atomic add, and nothing here can fail a request.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

mod process;

/// The `route` label of requests no `[[routes]]` entry answered (no route matched, or the
/// gateway's own endpoints). Route names are letters, digits, `-`, `_` and `.` only (the config
/// check refuses anything else), so no route can be labelled like this.
pub const UNROUTED: &str = "(unrouted)";

/// The `code` label: the response's status class.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add n.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Set the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Latency buckets in seconds: fine around the sub-millisecond proxy overhead, coarse for upstreams.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 14],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Children of a family, keyed by the label values joined with U+001F (a character no label
/// value we set contains), holding the values themselves for rendering.
type Children<M> = HashMap<String, (Vec<String>, Arc<M>)>;

/// A metric with labels: one child per label-value set.
#[derive(Debug)]
pub struct Family<M> {
    labels: &'static [&'static str],
    children: RwLock<Children<M>>,
}

impl<M: Default> Family<M> {
    fn new(labels: &'static [&'static str]) -> Self {
        Family {
            labels,
            children: RwLock::new(HashMap::new()),
        }
    }

    /// The child for these label values (in the family's label order).
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        if let Some(m) = self.existing(values) {
            return m;
        }
        let key = values.join("\u{1f}");
        match self.children.write() {
            Ok(mut map) => {
                let owned = values.iter().map(|s| s.to_string()).collect();
                map.entry(key)
                    .or_insert_with(|| (owned, Arc::default()))
                    .1
                    .clone()
            }
            Err(_) => Arc::new(M::default()),
        }
    }

    /// The child when it exists (nearly every call), its key joined in a buffer of this thread's
    /// (a few calls a request: allocating a key for each was a tenth of the pass-through's
    /// allocations, issue 22).
    fn existing(&self, values: &[&str]) -> Option<Arc<M>> {
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with(|k| {
            let mut key = k.try_borrow_mut().ok()?;
            key.clear();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    key.push('\u{1f}');
                }
                key.push_str(v);
            }
            let map = self.children.read().ok()?;
            map.get(key.as_str()).map(|(_, m)| m.clone())
        })
    }

    fn snapshot(&self) -> Vec<(Vec<String>, Arc<M>)> {
        self.children
            .read()
            .map(|m| {
                let mut v: Vec<_> = m.values().map(|(k, v)| (k.clone(), v.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            })
            .unwrap_or_default()
    }
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    pub requests_total: Family<Counter>,
    pub request_duration_seconds: Family<Histogram>,
    pub upstream_duration_seconds: Family<Histogram>,
    pub auth_failures_total: Family<Counter>,
    pub rate_limited_total: Family<Counter>,
    pub legacy_requests_total: Family<Counter>,
    pub tokens_minted_total: Counter,
    pub token_cache_hits_total: Counter,
    /// `notAfter` (unix seconds) of each loaded certificate; exported as `cert_expiry_seconds`,
    /// the time left *at scrape time*, so the value counts down without a reload.
    cert_not_after: Family<Gauge>,
    pub config_reloads_total: Family<Counter>,
    /// Whole-config reloads (SIGHUP, admin API) by result (`ok`, `error`).
    pub config_reload_total: Family<Counter>,
    /// The configuration generation serving (1 at start, +1 per applied reload).
    pub config_generation: Gauge,
    pub audit_dropped_total: Counter,
    pub connections_open: Gauge,
    pub connections_refused_total: Family<Counter>,
    /// 1 for each plan's current phase, 0 for its other phases. Set by the admin listener on
    /// each scrape of `/metrics` (from the plans and the clock), so it is never stale.
    pub migration_phase: Family<Gauge>,
    /// 1 while a `scope = "cluster"` route limits on its local fallback (Redis unreachable).
    pub rate_limit_fallback: Family<Gauge>,
    /// 1 when the plan's status is `ready`, else 0 (`not ready`, `overdue`, `exception`,
    /// `overdue review`). Set on each scrape from the state store's usage.
    pub migration_ready: Family<Gauge>,
    /// Requests answered with a problem+json refusal, by route and problem code (the
    /// gateway's own answer: upstream failures are `upstream-unavailable`/`upstream-timeout`,
    /// a directory down `directory-unavailable`).
    pub refusals_total: Family<Counter>,
    /// Each plan's legacy share over its exit-criterion window (absent before any traffic).
    /// Set on each scrape from the state store's usage.
    pub migration_legacy_share: Family<Gauge>,
    /// Each plan's exit criterion (`max_legacy_share`). Set on each scrape.
    pub migration_max_legacy_share: Family<Gauge>,
    /// Spans lost: the export queue was full, or an export failed or timed out.
    pub otel_spans_dropped_total: Counter,
    /// Spans the collector accepted.
    pub otel_spans_exported_total: Counter,
    /// 1 when `/readyz` would answer 200. Set on each scrape.
    pub ready: Gauge,
    /// 1 while the state backend can vouch for revocations (always 1 for the embedded store).
    /// Set on each scrape.
    pub state_backend_up: Gauge,
    /// `[spiffe]`: 1 while the Workload API streams are connected, 0 while reconnecting.
    pub workload_api_up: Gauge,
    /// `notAfter` (unix seconds) of the served Workload API SVID; exported as
    /// `svid_expiry_seconds`, the time left at scrape time.
    pub svid_not_after: Gauge,
    /// Whether the Workload API is in use (its two metrics are rendered only then).
    pub workload_api_enabled: std::sync::atomic::AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests_total: Family::new(&["route", "decision", "kind", "code"]),
            request_duration_seconds: Family::new(&["route"]),
            upstream_duration_seconds: Family::new(&["route"]),
            auth_failures_total: Family::new(&["credential", "reason"]),
            rate_limited_total: Family::new(&["route"]),
            legacy_requests_total: Family::new(&["plan", "credential"]),
            tokens_minted_total: Counter::default(),
            token_cache_hits_total: Counter::default(),
            cert_not_after: Family::new(&["file"]),
            config_reloads_total: Family::new(&["result"]),
            config_reload_total: Family::new(&["result"]),
            config_generation: Gauge::default(),
            audit_dropped_total: Counter::default(),
            connections_open: Gauge::default(),
            connections_refused_total: Family::new(&["reason"]),
            migration_phase: Family::new(&["plan", "phase"]),
            rate_limit_fallback: Family::new(&["route"]),
            migration_ready: Family::new(&["plan"]),
            refusals_total: Family::new(&["route", "reason"]),
            migration_legacy_share: Family::new(&["plan"]),
            migration_max_legacy_share: Family::new(&["plan"]),
            otel_spans_dropped_total: Counter::default(),
            otel_spans_exported_total: Counter::default(),
            ready: Gauge::default(),
            state_backend_up: Gauge::default(),
            workload_api_up: Gauge::default(),
            svid_not_after: Gauge::default(),
            workload_api_enabled: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP portcullis_{name} {help}");
    let _ = writeln!(out, "# TYPE portcullis_{name} {kind}");
}

fn counters(out: &mut String, name: &str, help: &str, f: &Family<Counter>) {
    header(out, name, "counter", help);
    for (k, c) in f.snapshot() {
        let _ = writeln!(
            out,
            "portcullis_{name}{} {}",
            labels(f.labels, &k, None),
            c.get()
        );
    }
}

fn gauges(out: &mut String, name: &str, help: &str, f: &Family<Gauge>) {
    header(out, name, "gauge", help);
    for (k, g) in f.snapshot() {
        let _ = writeln!(
            out,
            "portcullis_{name}{} {}",
            labels(f.labels, &k, None),
            g.get()
        );
    }
}

fn histograms(out: &mut String, name: &str, help: &str, f: &Family<Histogram>) {
    header(out, name, "histogram", help);
    for (k, h) in f.snapshot() {
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&h.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let le = b.to_string();
            let _ = writeln!(
                out,
                "portcullis_{name}_bucket{} {cumulative}",
                labels(f.labels, &k, Some(("le", &le)))
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "portcullis_{name}_bucket{} {count}",
            labels(f.labels, &k, Some(("le", "+Inf")))
        );
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "portcullis_{name}_sum{} {sum}",
            labels(f.labels, &k, None)
        );
        let _ = writeln!(
            out,
            "portcullis_{name}_count{} {count}",
            labels(f.labels, &k, None)
        );
    }
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "portcullis_{name} {v}");
}

impl Metrics {
    /// Record the expiry of a certificate loaded from `file` (replacing the previous one).
    /// The rate-limit families (kept together, and out of `render`'s length).
    fn render_limits(&self, o: &mut String) {
        counters(
            o,
            "rate_limited_total",
            "Requests refused by a rate limit.",
            &self.rate_limited_total,
        );
        gauges(
            o,
            "rate_limit_fallback",
            "1 while a cluster-scoped route limits on its local fallback (Redis unreachable).",
            &self.rate_limit_fallback,
        );
    }

    /// Cluster-scoped routes limiting on their local fallback now (for `/readyz` detail).
    pub fn rate_limit_fallback_routes(&self) -> Vec<String> {
        self.rate_limit_fallback
            .snapshot()
            .into_iter()
            .filter(|(_, g)| g.get() > 0.0)
            .filter_map(|(k, _)| k.into_iter().next())
            .collect()
    }

    pub fn set_cert_expiry(&self, file: &str, not_after: std::time::SystemTime) {
        let unix = match not_after.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        self.cert_not_after.with(&[file]).set(unix);
    }

    /// Every loaded certificate file with the seconds it has left at `now` (negative: expired).
    pub fn cert_expiry(&self, now: std::time::SystemTime) -> Vec<(String, f64)> {
        let now = match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(_) => 0.0,
        };
        self.cert_not_after
            .snapshot()
            .into_iter()
            .filter_map(|(mut k, g)| Some((k.pop()?, (g.get() - now).round())))
            .collect()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        counters(
            &mut o,
            "requests_total",
            "Requests by route, decision, credential kind and status class.",
            &self.requests_total,
        );
        histograms(
            &mut o,
            "request_duration_seconds",
            "Time from request head to response head.",
            &self.request_duration_seconds,
        );
        histograms(
            &mut o,
            "upstream_duration_seconds",
            "Time the upstream took to answer.",
            &self.upstream_duration_seconds,
        );
        counters(
            &mut o,
            "auth_failures_total",
            "Authentication failures by credential and reason.",
            &self.auth_failures_total,
        );
        self.render_limits(&mut o);
        counters(
            &mut o,
            "legacy_requests_total",
            "Requests authenticated with a legacy credential.",
            &self.legacy_requests_total,
        );
        single(
            &mut o,
            "tokens_minted_total",
            "counter",
            "Tokens signed.",
            self.tokens_minted_total.get() as f64,
        );
        single(
            &mut o,
            "token_cache_hits_total",
            "counter",
            "Tokens handed out from the cache.",
            self.token_cache_hits_total.get() as f64,
        );
        self.render_certs(&mut o);
        counters(
            &mut o,
            "config_reloads_total",
            "File reloads by result.",
            &self.config_reloads_total,
        );
        counters(
            &mut o,
            "config_reload_total",
            "Whole-configuration reloads (SIGHUP, admin API) by result.",
            &self.config_reload_total,
        );
        single(
            &mut o,
            "config_generation",
            "gauge",
            "The configuration generation serving (1 at start, +1 per applied reload).",
            self.config_generation.get(),
        );
        single(
            &mut o,
            "audit_dropped_total",
            "counter",
            "Audit records dropped because the queue was full.",
            self.audit_dropped_total.get() as f64,
        );
        single(
            &mut o,
            "connections_open",
            "gauge",
            "Open client connections on the data listener.",
            self.connections_open.get(),
        );
        counters(
            &mut o,
            "connections_refused_total",
            "Connections closed before serving, by reason.",
            &self.connections_refused_total,
        );
        gauges(
            &mut o,
            "migration_phase",
            "1 for each migration plan's current phase, 0 for the others.",
            &self.migration_phase,
        );
        gauges(
            &mut o,
            "migration_ready",
            "1 when the migration plan is ready to enforce, else 0.",
            &self.migration_ready,
        );
        self.render_observability(&mut o);
        o
    }

    /// Certificate expiry: the `notAfter` timestamp, and the deprecated countdown.
    fn render_certs(&self, o: &mut String) {
        header(
            o,
            "cert_expiry_timestamp_seconds",
            "gauge",
            "When a loaded certificate expires (its notAfter, unix seconds).",
        );
        for (k, g) in self.cert_not_after.snapshot() {
            let _ = writeln!(
                o,
                "portcullis_cert_expiry_timestamp_seconds{} {}",
                labels(self.cert_not_after.labels, &k, None),
                g.get()
            );
        }
        header(
            o,
            "cert_expiry_seconds",
            "gauge",
            "Deprecated (use cert_expiry_timestamp_seconds): seconds until a loaded certificate expires (negative: expired).",
        );
        for (file, secs) in self.cert_expiry(std::time::SystemTime::now()) {
            let _ = writeln!(
                o,
                "portcullis_cert_expiry_seconds{} {secs}",
                labels(self.cert_not_after.labels, &[file], None)
            );
        }
    }

    /// What the observability round added: refusals, span export, readiness, build and process.
    fn render_observability(&self, o: &mut String) {
        counters(
            o,
            "refusals_total",
            "Requests the gateway refused or could not forward, by route and problem code.",
            &self.refusals_total,
        );
        gauges(
            o,
            "migration_legacy_share",
            "Share of the migration plan's requests made with legacy credentials over its window.",
            &self.migration_legacy_share,
        );
        gauges(
            o,
            "migration_max_legacy_share",
            "The migration plan's exit criterion: the legacy share it must stay under.",
            &self.migration_max_legacy_share,
        );
        single(
            o,
            "otel_spans_dropped_total",
            "counter",
            "Trace spans lost: export queue full, or the export failed or timed out.",
            self.otel_spans_dropped_total.get() as f64,
        );
        single(
            o,
            "otel_spans_exported_total",
            "counter",
            "Trace spans the OTLP collector accepted.",
            self.otel_spans_exported_total.get() as f64,
        );
        single(
            o,
            "ready",
            "gauge",
            "1 when /readyz answers 200 (not draining, state backend available).",
            self.ready.get(),
        );
        single(
            o,
            "state_backend_up",
            "gauge",
            "1 while the state backend can vouch for revocations.",
            self.state_backend_up.get(),
        );
        header(
            o,
            "build_info",
            "gauge",
            "Always 1; the version in a label.",
        );
        let _ = writeln!(
            o,
            "portcullis_build_info{{version=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION"))
        );
        process::render(o);
        if self.workload_api_enabled.load(Ordering::Acquire) {
            self.render_workload_api(o);
        }
    }

    fn render_workload_api(&self, o: &mut String) {
        single(
            o,
            "workload_api_up",
            "gauge",
            "1 while the SPIFFE Workload API is connected, 0 while reconnecting.",
            self.workload_api_up.get(),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        single(
            o,
            "svid_expiry_seconds",
            "gauge",
            "Seconds until the Workload API X.509-SVID served expires (negative: expired).",
            (self.svid_not_after.get() - now).round(),
        );
    }
}

#[cfg(test)]
mod tests;
