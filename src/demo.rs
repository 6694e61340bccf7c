//! `portcullis demo`: the product's story on one machine, with no outside service. Everything
//! lives in a temp dir: fresh dev certificates (short-lived, made at each start), an embedded
//! upstream that echoes what it received, a migration plan in its bridge phase, an API key, a
//! webhook secret, and the gateway with a built-in config. It prints command lines that work as
//! printed, each with the status it gives (`tests/gateway/demo.rs` runs every one), then the
//! audit log. Runs until Ctrl-C.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::devcert::DevCa;
use crate::server;
use crate::time::Date;

mod banner;

/// Start the demo upstream on 127.0.0.1 (any free port); it answers every request with a JSON
/// description of what it received (method, path, query, headers, body size).
/// When `token_file` is set, the bearer token of the last request that carried one is written
/// there (mode 0600), so the demo's `token inspect` line can read what the upstream received.
pub async fn start_echo_upstream(token_file: Option<PathBuf>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token_file = token_file.map(Arc::new);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let token_file = token_file.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| echo(req, token_file.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn echo(
    req: Request<Incoming>,
    token_file: Option<Arc<PathBuf>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let bearer = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let (Some(path), Some(token)) = (token_file, bearer) {
        if let Err(e) = write_private(&path, token.as_bytes()) {
            tracing::warn!("demo upstream: writing {}: {e}", path.display());
        }
    }
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
/// The partner whose static API key the migration plan retires.
const PARTNER_KEY_ID: &str = "acme";
const PARTNER_ID: &str = "spiffe://demo.example/partner/acme";
/// The webhook delivery the demo prints, signed with the demo's secret.
const WEBHOOK_BODY: &str = r#"{"action":"opened","number":1}"#;

/// What the demo wrote into its directory.
struct Files {
    dir: PathBuf,
    ca: PathBuf,
    svid: PathBuf,
    svid_key: PathBuf,
    config: PathBuf,
    plan: PathBuf,
    /// Where the upstream keeps the last token it received.
    token: PathBuf,
    api_key: String,
    /// `sha256=…` of [`WEBHOOK_BODY`].
    signature: String,
    /// The plan's dates: bridge since yesterday, enforce in 30 days.
    bridge: Date,
    enforce: Date,
}

/// The certificates, the API key and the webhook secret, written into `dir`.
fn write_credentials(dir: &Path) -> anyhow::Result<Files> {
    let ca = DevCa::new("portcullis demo CA").context("generating the demo CA")?;
    let leaf = ca
        .server(&["localhost", "127.0.0.1"])
        .context("generating the demo certificate")?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem())?;
    std::fs::write(dir.join("gateway.pem"), &leaf.cert_pem)?;
    write_private(&dir.join("gateway.key"), leaf.key_pem.as_bytes())?;
    let spiffe_ca = DevCa::new("portcullis demo SPIFFE CA").context("generating the SPIFFE CA")?;
    std::fs::write(dir.join("spiffe-bundle.pem"), spiffe_ca.cert_pem())?;
    let svid = spiffe_ca
        .svid(WORKLOAD_ID)
        .context("generating the demo X.509-SVID")?;
    let (svid_path, svid_key) = (dir.join("svid.pem"), dir.join("svid.key"));
    std::fs::write(&svid_path, &svid.cert_pem)?;
    write_private(&svid_key, svid.key_pem.as_bytes())?;

    // A signing key on disk: without one the gateway signs with an ephemeral key and warns.
    let signing = crate::token::keygen::generate(crate::token::keys::Alg::Es256)?;
    crate::token::keygen::write_private(&dir.join("issuer.pem"), &signing)?;

    let key = crate::authn::apikey::issue::new_key(
        PARTNER_KEY_ID,
        PARTNER_ID,
        Some("demo partner"),
        None,
    )?;
    write_private(&dir.join("partner-keys.toml"), key.entry.as_bytes())?;
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let secret = hex::encode(secret);
    write_private(&dir.join("github-secret"), format!("{secret}\n").as_bytes())?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| anyhow::anyhow!("HMAC key"))?;
    mac.update(WEBHOOK_BODY.as_bytes());
    let today = Date::of(std::time::SystemTime::now());
    Ok(Files {
        dir: dir.to_path_buf(),
        ca: ca_path,
        svid: svid_path,
        svid_key,
        config: dir.join("portcullis.toml"),
        plan: dir.join("migration-plans").join("partner-api.toml"),
        token: dir.join("upstream-token.jwt"),
        api_key: key.key,
        signature: format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        bridge: today.plus(-1),
        enforce: today.plus(30),
    })
}

/// The migration plan of the partner API: observe began a month ago, bridge yesterday, enforce
/// in 30 days. Dates relative to today keep the demo in bridge whenever it runs.
fn plan(f: &Files) -> String {
    format!(
        r#"# Built by `portcullis demo`: partners move off static API keys.
name = "partner-api"
owner = "team-partners <partners@demo.example>"
description = "Partner REST API, static X-API-Key keys"
docs = "https://partners.demo.example/migration"
legacy_credentials = ["partner-keys"]

[phases]
observe = {observe}
bridge  = {bridge}
enforce = {enforce}

[exit_criteria]
max_legacy_share = 0.0
window = "7d"
"#,
        observe = f.bridge.plus(-30),
        bridge = f.bridge,
        enforce = f.enforce,
    )
}

fn demo_config(f: &Files, port: u16, admin_port: u16, upstream: SocketAddr) -> String {
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

# Revocations, usage and inventory (the dashboard's data), kept in the demo's directory.
[state]
path = "{dir}/state.db"

# Migration plans: migration-plans/ next to this file.

# The tokens the gateway mints, signed with the demo's key (`portcullis keys generate`).
[issuer]
url = "https://127.0.0.1:{port}"
spiffe_id = "spiffe://{td}/portcullis"
keys = ["{dir}/issuer.pem"]
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

# A legacy integration: partners call with a static API key, which the plan partner-api retires.
[credentials.partner-keys]
kind = "api-key"
header = "X-API-Key"
keys_file = "{dir}/partner-keys.toml"

[[routes]]
name = "partners"
match = {{ path_prefix = "/partners/", methods = ["GET", "POST"] }}
accept = ["partner-keys"]
allow = ["spiffe://{td}/partner/*"]
plan = "partner-api"
[routes.upstream]
url = "http://{upstream}"
audience = "partners-api"

# A provider that can only sign its webhooks with a shared secret (GitHub's scheme). GitHub
# sends no timestamp: a delivery is remembered for `tolerance` and refused as a replay meanwhile.
[credentials.github]
kind = "webhook"
adapter = "github"
secrets_file = "{dir}/github-secret"
identity = "spiffe://{td}/ext/github"
tolerance = "1h"

[[routes]]
name = "github-hooks"
match = {{ path_prefix = "/hooks/github", methods = ["POST"] }}
accept = ["github"]
allow = ["spiffe://{td}/ext/github"]
[routes.upstream]
url = "http://{upstream}"
audience = "ci-api"
[routes.limits]
max_body = "64KiB"

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
        dir = f.dir.display(),
        td = TRUST_DOMAIN,
    )
}

/// `port`, or for 0 a free port on 127.0.0.1. The issuer URL in the config must carry the port
/// the listener gets, so the demo picks it before writing the config; the listener binds it
/// right after (another process taking it in between makes the start fail with a clear error).
fn pick_port(port: u16) -> anyhow::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Where the demo's parts listen.
struct Addrs {
    base: String,
    admin: SocketAddr,
    upstream: SocketAddr,
}

/// Run the demo until Ctrl-C / SIGTERM.
pub async fn run(port: u16, admin_port: u16) -> anyhow::Result<()> {
    server::install_crypto();
    let dir = tempfile::Builder::new()
        .prefix("portcullis-demo-")
        .tempdir()?;
    let files = write_credentials(dir.path())?;
    let upstream = start_echo_upstream(Some(files.token.clone()))
        .await
        .context("starting the demo upstream")?;
    let (port, admin_port) = (pick_port(port)?, pick_port(admin_port)?);
    std::fs::create_dir_all(files.dir.join("migration-plans"))?;
    std::fs::write(&files.plan, plan(&files))?;
    std::fs::write(
        &files.config,
        demo_config(&files, port, admin_port, upstream),
    )?;
    let cfg = crate::config::load(&files.config)
        .map_err(|e| anyhow::anyhow!("built-in demo config is invalid:\n{e}"))?;
    // Registered before the banner: a Ctrl-C right after it still cleans up the temp directory.
    let stop = server::shutdown_signal();
    let running = server::start(cfg, server::Options::default())
        .await
        .context("starting the gateway (is the port in use? try --port 0 --admin-port 0)")?;
    let at = Addrs {
        base: format!("https://127.0.0.1:{}", running.data_addr.port()),
        admin: running.admin_addr,
        upstream,
    };
    println!("{}", banner::text(&files, &at, &banner::command_name()));
    stop.await;
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
