//! The OTLP/HTTP (protobuf) exporter: a bounded queue filled by ending spans and one task that
//! sends batches. A request never waits for the exporter: a full queue drops the span, a failed
//! or timed-out export drops the batch, and both are counted in
//! `portcullis_otel_spans_dropped_total`.
//!
//! The SDK's own `BatchSpanProcessor` runs its exports on a dedicated thread with a blocking
//! executor (no Tokio reactor for the hyper client) and keeps its drop count to itself; this
//! small processor runs on the gateway's runtime and counts every loss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tokio::sync::Notify;

use super::Telemetry;
use crate::metrics::Metrics;
use crate::telemetry::{Exporter, Settings, StartError};

/// Spans waiting for export; beyond this they are dropped (and counted).
const QUEUE: usize = 4096;
/// Spans per export request.
const MAX_BATCH: usize = 512;
/// The export task's tick: a part batch waits at most about this long.
const DELAY: Duration = Duration::from_secs(1);
/// One export request, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Ending spans go into the queue; never blocks, and never wakes the export task for a single
/// span: it is woken when a whole batch waits ([`MAX_BATCH`]), when the queue closes, or by its
/// own [`DELAY`] tick. Waking it per span cost a cross-thread wake-up (a futex and an eventfd
/// write) and two context switches per request (issue 22).
#[derive(Debug)]
struct Queue {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// What the request threads and the export task share.
#[derive(Debug, Default)]
struct Shared {
    spans: Mutex<Vec<SpanData>>,
    /// A batch is waiting, or the queue closed.
    wake: Notify,
    closed: AtomicBool,
}

impl Shared {
    fn spans(&self) -> std::sync::MutexGuard<'_, Vec<SpanData>> {
        // A panic while holding the lock leaves a Vec of whole spans: still usable.
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// No more spans will be sent: the export task sends what is queued and ends.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Up to [`MAX_BATCH`] of the oldest spans. The queue keeps room for a batch, so ending
    /// spans does not grow (and copy) it batch after batch.
    fn take_batch(&self) -> Vec<SpanData> {
        let mut spans = self.spans();
        if spans.is_empty() {
            Vec::new()
        } else if spans.len() <= MAX_BATCH {
            std::mem::replace(&mut *spans, Vec::with_capacity(MAX_BATCH))
        } else {
            spans.drain(..MAX_BATCH).collect()
        }
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let waiting = {
            let mut spans = self.shared.spans();
            // After the close nothing sends it any more (a connection cut off at the drain
            // deadline may still end a span).
            if spans.len() >= QUEUE || self.shared.closed.load(Ordering::Acquire) {
                None
            } else {
                spans.push(span);
                Some(spans.len())
            }
        };
        match waiting {
            None => self.metrics.otel_spans_dropped_total.inc(),
            Some(n) if n % MAX_BATCH == 0 => self.shared.wake.notify_one(),
            Some(_) => {}
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// The export task finishes what is queued once the gateway closes the queue
    /// ([`Exporter::finish`]) or the provider, and this queue, is dropped.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Start the exporter for `[telemetry]` when `otlp_endpoint` is set. `roots` verify an
/// `https` collector. The exporter returned ends (after sending what is queued) when told to
/// ([`Exporter::finish`]), or once every clone of the returned [`Telemetry`] is dropped.
pub fn start(
    settings: &Settings,
    metrics: Arc<Metrics>,
    roots: rustls::RootCertStore,
) -> Result<(Telemetry, Option<Exporter>), StartError> {
    let Some(endpoint) = &settings.otlp_endpoint else {
        return Ok((Telemetry::off(settings), None));
    };
    let resource = resource();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http_client(roots)?)
        .with_endpoint(endpoint.to_string())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| StartError(e.to_string()))?;
    exporter.set_resource(&resource);
    let shared = Arc::new(Shared::default());
    let closer = shared.clone();
    let task = tokio::spawn(run(
        shared.clone(),
        exporter,
        metrics.clone(),
        endpoint.to_string(),
    ));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Queue { shared, metrics })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("portcullis");
    Ok((
        Telemetry {
            tracer: Some(tracer),
            trust: settings.trust_incoming_traceparent,
        },
        Some(Exporter::new(task, move || closer.close())),
    ))
}

/// `service.name` = portcullis, `service.version`, `service.instance.id` (host name and process
/// id); `OTEL_RESOURCE_ATTRIBUTES` adds to or overrides them.
fn resource() -> Resource {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "portcullis"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(
                "service.instance.id",
                format!("{host}:{}", std::process::id()),
            ),
        ])
        .with_detector(Box::new(
            opentelemetry_sdk::resource::EnvResourceDetector::new(),
        ))
        .build()
}

/// hyper with rustls (aws-lc-rs, the given roots) for `https`, plain TCP for `http`.
fn http_client(
    roots: rustls::RootCertStore,
) -> Result<impl opentelemetry_http::HttpClient, StartError> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(opentelemetry_http::hyper::HyperClient::new(
        connector,
        EXPORT_TIMEOUT,
        None,
    ))
}

/// Export what is queued, a batch at a time, each time a whole batch waits or [`DELAY`] has
/// passed; when the queue closes, export what is left and stop.
async fn run(
    shared: Arc<Shared>,
    exporter: opentelemetry_otlp::SpanExporter,
    metrics: Arc<Metrics>,
    endpoint: String,
) {
    let mut failing = false;
    let mut tick = tokio::time::interval(DELAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            _ = tick.tick() => {}
        }
        // Read before draining: spans queued before the close are all exported below.
        let closed = shared.closed.load(Ordering::Acquire);
        loop {
            let batch = shared.take_batch();
            if batch.is_empty() {
                break;
            }
            let whole = batch.len() == MAX_BATCH;
            export(&exporter, batch, &metrics, &endpoint, &mut failing).await;
            // A part batch waits for the next tick (or the close) unless the queue is closing.
            if !whole && !closed {
                break;
            }
        }
        if closed {
            return;
        }
    }
}

/// One export request; its spans are counted as exported or dropped. A failure is logged when
/// the collector starts failing, not for every batch.
async fn export(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: Vec<SpanData>,
    metrics: &Metrics,
    endpoint: &str,
    failing: &mut bool,
) {
    let n = batch.len() as u64;
    let sent = tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await;
    match sent {
        Ok(Ok(())) => {
            metrics.otel_spans_exported_total.add(n);
            if *failing {
                tracing::info!(%endpoint, "OTLP export works again");
            }
            *failing = false;
        }
        Ok(Err(e)) => {
            metrics.otel_spans_dropped_total.add(n);
            if !*failing {
                tracing::warn!(%endpoint, error = %e, spans = n, "OTLP export failed: spans dropped (counted in portcullis_otel_spans_dropped_total)");
            }
            *failing = true;
        }
        Err(_) => {
            metrics.otel_spans_dropped_total.add(n);
            if !*failing {
                tracing::warn!(%endpoint, spans = n, "OTLP export timed out: spans dropped (counted in portcullis_otel_spans_dropped_total)");
            }
            *failing = true;
        }
    }
}

#[cfg(test)]
mod tests;
