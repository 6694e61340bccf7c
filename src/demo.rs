//! `portcullis demo`: everything in a temp dir: a dev CA and server certificate, an embedded
//! upstream that echoes what it received, the gateway with a built-in config, and `curl` lines
//! that work as printed. Runs until Ctrl-C.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::devcert::DevCa;
use crate::server;

/// Start the demo upstream on 127.0.0.1 (any free port); it answers every request with a JSON
/// description of what it received (method, path, query, headers, body size).
pub async fn start_echo_upstream() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(echo);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let size = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            )
        })
        .collect();
    let out = serde_json::json!({
        "upstream": "portcullis-demo",
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": size,
    });
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The demo's SPIFFE trust domain and the workload whose SVID the demo writes out.
const TRUST_DOMAIN: &str = "demo.example";
const WORKLOAD_ID: &str = "spiffe://demo.example/ns/payments/sa/batch";

fn demo_config(dir: &Path, port: u16, admin_port: u16, upstream: SocketAddr) -> String {
    format!(
        r#"# Built by `portcullis demo` — a starting point for your own portcullis.toml.
version = 1

[listen]
addr = "127.0.0.1:{port}"
[listen.tls]
cert = "{dir}/gateway.pem"
key = "{dir}/gateway.key"

[admin]
addr = "127.0.0.1:{admin_port}"

[audit]
sink = "stdout"

# The tokens the gateway mints; no keys listed: an ephemeral dev key (check warns).
[issuer]
url = "https://127.0.0.1:{port}"
spiffe_id = "spiffe://demo.example/portcullis"
ttl = "5m"

# A pass-through route: no credential required, the path is normalized and every request audited.
[[routes]]
name = "public"
match = {{ path_prefix = "/public/", methods = ["GET", "POST"] }}
[routes.upstream]
url = "http://{upstream}"
timeout = "5s"
[routes.limits]
max_body = "1KiB"

# Workload identity: SPIFFE X.509-SVIDs of this trust domain, verified at the TLS handshake.
[trust."{td}"]
x509_bundle = "{dir}/spiffe-bundle.pem"

[credentials.workload-mtls]
kind = "mtls"
trust_domains = ["{td}"]

# A protected route: mTLS callers from the payments namespace; the upstream gets a token minted
# by the gateway (Authorization: Bearer …, aud "payments-api", cnf bound to the client cert).
[[routes]]
name = "payments"
match = {{ path_prefix = "/payments/", methods = ["GET", "POST"] }}
accept = ["workload-mtls"]
allow = ["spiffe://{td}/ns/payments/*"]
[routes.upstream]
url = "http://{upstream}"
audience = "payments-api"
"#,
        dir = dir.display(),
        td = TRUST_DOMAIN,
    )
}

/// Run the demo until Ctrl-C / SIGTERM.
pub async fn run(port: u16, admin_port: u16) -> anyhow::Result<()> {
    server::install_crypto();
    let dir = tempfile::Builder::new()
        .prefix("portcullis-demo-")
        .tempdir()?;
    let ca = DevCa::new("portcullis demo CA").context("generating the demo CA")?;
    let leaf = ca
        .server(&["localhost", "127.0.0.1"])
        .context("generating the demo certificate")?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem())?;
    std::fs::write(dir.path().join("gateway.pem"), &leaf.cert_pem)?;
    write_private(&dir.path().join("gateway.key"), leaf.key_pem.as_bytes())?;
    let spiffe_ca = DevCa::new("portcullis demo SPIFFE CA").context("generating the SPIFFE CA")?;
    std::fs::write(dir.path().join("spiffe-bundle.pem"), spiffe_ca.cert_pem())?;
    let svid = spiffe_ca
        .svid(WORKLOAD_ID)
        .context("generating the demo X.509-SVID")?;
    let svid_path = dir.path().join("svid.pem");
    let svid_key = dir.path().join("svid.key");
    std::fs::write(&svid_path, &svid.cert_pem)?;
    write_private(&svid_key, svid.key_pem.as_bytes())?;

    let upstream = start_echo_upstream()
        .await
        .context("starting the demo upstream")?;
    let cfg_path = dir.path().join("portcullis.toml");
    std::fs::write(
        &cfg_path,
        demo_config(dir.path(), port, admin_port, upstream),
    )?;
    let cfg = crate::config::load(&cfg_path)
        .map_err(|e| anyhow::anyhow!("built-in demo config is invalid:\n{e}"))?;
    let running = server::start(cfg, server::Options::default())
        .await
        .context("starting the gateway (is the port in use? try --port 0 --admin-port 0)")?;

    let base = format!("https://127.0.0.1:{}", running.data_addr.port());
    let ca = ca_path.display();
    let admin = running.admin_addr;
    println!(
        r#"
portcullis demo is running (Ctrl-C to stop)
  gateway   {base}   (TLS; dev CA at {ca})
  admin     http://{admin}
  upstream  http://{upstream}   (echoes what it receives)
  config    {cfg}

Try these (the audit log follows below, one JSON line per request):

  # A pass-through route, proxied to the upstream over HTTP/1.1 (expect 200; see X-Request-Id and Forwarded):
  curl -sS --http1.1 --cacert {ca} {base}/public/hello?name=demo

  # The same over HTTP/2 (expect 200):
  curl -sS --http2 --cacert {ca} -X POST -d 'amount=10' {base}/public/payments

  # A path that could be read two ways is refused, never 'fixed' (expect 400, problem+json):
  curl -sS --path-as-is --cacert {ca} {base}/public/%2e%2e/admin

  # No route for this path (expect 404, problem+json):
  curl -sS --cacert {ca} {base}/nowhere

  # Bodies above the route's max_body are refused (expect 413):
  head -c 4096 /dev/zero | curl -sS --cacert {ca} -X POST --data-binary @- {base}/public/upload

  # A workload with a SPIFFE X.509-SVID ({workload}): the upstream receives a minted token
  # instead (see its Authorization header; decode it with `portcullis token inspect`) (expect 200):
  curl -sS --cacert {ca} --cert {svid} --key {svid_key} {base}/payments/batch

  # The same route without a client certificate (expect 401):
  curl -sS --cacert {ca} {base}/payments/batch

  # The issuer's public keys (JWKS), for upstreams that verify minted tokens (expect 200):
  curl -sS --cacert {ca} {base}/.well-known/jwks.json

  # Prometheus metrics on the admin listener (expect 200):
  curl -sS http://{admin}/metrics
"#,
        cfg = cfg_path.display(),
        workload = WORKLOAD_ID,
        svid = svid_path.display(),
        svid_key = svid_key.display(),
    );
    crate::server::shutdown_signal().await;
    eprintln!("stopping…");
    running.stop().await;
    drop(dir);
    Ok(())
}

/// Write a file readable by the owner only (private keys).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)
}
