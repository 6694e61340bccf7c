//! The OTLP/HTTP (protobuf) exporter: a bounded queue filled by ending spans and one task that
//! sends batches. A request never waits for the exporter: a full queue drops the span, a failed
//! or timed-out export drops the batch, and both are counted in
//! `portcullis_otel_spans_dropped_total`.
//!
//! The SDK's own `BatchSpanProcessor` runs its exports on a dedicated thread with a blocking
//! executor (no Tokio reactor for the hyper client) and keeps its drop count to itself; this
//! small processor runs on the gateway's runtime and counts every loss.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Telemetry;
use crate::metrics::Metrics;
use crate::telemetry::{Settings, StartError};

/// Spans waiting for export; beyond this they are dropped (and counted).
const QUEUE: usize = 4096;
/// Spans per export request.
const MAX_BATCH: usize = 512;
/// A batch is sent when full or this long after its first span.
const DELAY: Duration = Duration::from_secs(1);
/// One export request, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Ending spans go into the queue; never blocks.
#[derive(Debug)]
struct Queue {
    tx: mpsc::Sender<SpanData>,
    metrics: Arc<Metrics>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.metrics.otel_spans_dropped_total.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// The export task finishes what is queued once the provider (and this sender) is dropped.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Start the exporter for `[telemetry]` when `otlp_endpoint` is set. `roots` verify an
/// `https` collector. The task returned ends (after exporting what is queued) once every
/// clone of the returned [`Telemetry`] is dropped.
pub fn start(
    settings: &Settings,
    metrics: Arc<Metrics>,
    roots: rustls::RootCertStore,
) -> Result<(Telemetry, Option<JoinHandle<()>>), StartError> {
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
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(rx, exporter, metrics.clone(), endpoint.to_string()));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Queue { tx, metrics })
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
        Some(task),
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

/// Collect a batch (full, or [`DELAY`] after its first span), export it, repeat; when the
/// queue closes, export what is left and stop.
async fn run(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    metrics: Arc<Metrics>,
    endpoint: String,
) {
    let mut failing = false;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        let deadline = tokio::time::sleep(DELAY);
        tokio::pin!(deadline);
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(s) => batch.push(s),
                    None => { closed = true; break; }
                },
                () = &mut deadline => break,
            }
        }
        let n = batch.len() as u64;
        let sent = tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await;
        match sent {
            Ok(Ok(())) => {
                metrics.otel_spans_exported_total.add(n);
                if failing {
                    tracing::info!(%endpoint, "OTLP export works again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                metrics.otel_spans_dropped_total.add(n);
                // Logged when the collector starts failing, not for every batch.
                if !failing {
                    tracing::warn!(%endpoint, error = %e, spans = n, "OTLP export failed: spans dropped (counted in portcullis_otel_spans_dropped_total)");
                }
                failing = true;
            }
            Err(_) => {
                metrics.otel_spans_dropped_total.add(n);
                if !failing {
                    tracing::warn!(%endpoint, spans = n, "OTLP export timed out: spans dropped (counted in portcullis_otel_spans_dropped_total)");
                }
                failing = true;
            }
        }
        if closed {
            return;
        }
    }
}
