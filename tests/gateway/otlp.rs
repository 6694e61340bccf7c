//! An OTLP/HTTP receiver for the telemetry tests: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, decoded with the `opentelemetry-proto` types and kept.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpListener;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP `SpanKind` (2 server, 3 client, 1 internal).
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    pub resource: HashMap<String, String>,
}

#[derive(Clone)]
pub struct Receiver {
    tls: bool,
    pub addr: SocketAddr,
    pub spans: Arc<Mutex<Vec<Span>>>,
    /// Export requests whose path or content type was wrong.
    pub bad_requests: Arc<Mutex<Vec<String>>>,
}

fn text(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::serve(None).await
    }

    /// Over TLS with `cert`/`key` (PEM files): `endpoint()` is then `https://127.0.0.1:port`.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Receiver {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Receiver::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            tls: tls.is_some(),
            addr: listener.local_addr().unwrap(),
            spans: Arc::default(),
            bad_requests: Arc::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = me.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            // A client that does not trust the certificate fails here.
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        r
    }

    /// What goes into `[telemetry] otlp_endpoint` (the path is added by the gateway).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let ok_shape = req.method() == "POST"
            && req.uri().path() == "/v1/traces"
            && req
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/x-protobuf");
        if !ok_shape {
            self.bad_requests.lock().unwrap().push(format!(
                "{} {} {:?}",
                req.method(),
                req.uri(),
                req.headers()
            ));
        }
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let export = ExportTraceServiceRequest::decode(body).expect("a protobuf export request");
        let mut out = self.spans.lock().unwrap();
        for rs in export.resource_spans {
            let resource = rs.resource.map(|r| text(&r.attributes)).unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Span {
                        name: s.name,
                        trace_id: hex::encode(&s.trace_id),
                        span_id: hex::encode(&s.span_id),
                        parent_span_id: hex::encode(&s.parent_span_id),
                        kind: s.kind,
                        attributes: text(&s.attributes),
                        resource: resource.clone(),
                    });
                }
            }
        }
        let mut resp = Response::new(Full::new(Bytes::new()));
        resp.headers_mut()
            .insert("content-type", "application/x-protobuf".parse().unwrap());
        resp
    }

    /// The spans of `trace_id` received so far.
    pub fn received(&self, trace_id: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// The spans of `trace_id`, once at least `n` have arrived (the exporter batches for ~1s).
    pub async fn trace(&self, trace_id: &str, n: usize) -> Vec<Span> {
        for _ in 0..150 {
            let got = self.received(trace_id);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "fewer than {n} spans of trace {trace_id}; received: {:#?}",
            self.spans.lock().unwrap()
        );
    }
}
