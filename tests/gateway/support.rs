//! Test support: a real upstream on 127.0.0.1:0, the gateway in-process or as a child process,
//! TLS material, HTTP clients and raw sockets. No fixed ports, no mocks of the network.

use rustls_pki_types::pem::PemObject;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::body::BoxError;
use portcullis::devcert::DevCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body_bytes: u64,
}

/// A real HTTP/1.1 + h2c upstream. Behaviour is chosen by query parameters, which the gateway
/// forwards untouched: `sleep_ms`, `status`, `bytes` (stream that many bytes back), `sink`
/// (count the body without buffering it).
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        // Most tests start here, and some build a reqwest client (rustls without a default
        // provider) before any gateway: install ours first so a test passes alone too.
        portcullis::server::install_crypto();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Upstream {
            addr,
            hits: Arc::new(AtomicU64::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let me = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        up
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn count(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// The path and query of every request seen, in order.
    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path_and_query.clone())
            .collect()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<TestBody> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let (parts, mut body) = req.into_parts();
        let q: HashMap<String, String> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers.clone(),
            body_bytes: n,
        });
        if let Some(ms) = q.get("sleep_ms").and_then(|v| v.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(total) = q.get("bytes").and_then(|v| v.parse::<u64>().ok()) {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = total / chunk.len() as u64;
            let stream = futures_util::stream::iter(0..chunks)
                .map(move |_| Ok::<_, BoxError>(Frame::data(chunk.clone())));
            return Response::new(BodyExt::boxed(StreamBody::new(stream)));
        }
        let status = q
            .get("status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200u16);
        let mut resp = Response::new(full(format!("{{\"received_bytes\":{n}}}")));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp.headers_mut()
            .insert("x-upstream", "yes".parse().unwrap());
        if status == 401 {
            resp.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"legacy\"".parse().unwrap(),
            );
        }
        if status == 429 {
            resp.headers_mut()
                .insert("retry-after", "7".parse().unwrap());
        }
        resp
    }
}

pub fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

/// A temp dir with a dev CA and a server certificate for 127.0.0.1/localhost.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        // Tests move fake clocks years from today: certificates valid ten years either way.
        let ca = DevCa::lasting("test CA", (3650, 3650), (3650, 3650)).unwrap();
        let pki = Pki { dir, ca };
        pki.write_server_cert("gateway");
        std::fs::write(pki.path("ca.pem"), pki.ca.cert_pem()).unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// (Re)write `{name}.pem` / `{name}.key` with a fresh server certificate; returns its DER.
    pub fn write_server_cert(&self, name: &str) -> Vec<u8> {
        let issued = self.ca.server(&["localhost", "127.0.0.1"]).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), &issued.key_pem).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), &issued.cert_pem).unwrap();
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec();
        der
    }

    pub fn tls_section(&self) -> String {
        format!(
            "[listen.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.path("gateway.pem").display(),
            self.path("gateway.key").display()
        )
    }

    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(self.ca.cert_pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// reqwest client trusting the dev CA; `h1_only` forces HTTP/1.1 (else ALPN picks h2).
    pub fn client(&self, h1_only: bool) -> reqwest::Client {
        let mut cfg = self.client_config();
        cfg.alpn_protocols = if h1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let b = reqwest::Client::builder()
            .use_preconfigured_tls(cfg)
            .timeout(Duration::from_secs(30));
        let b = if h1_only { b.http1_only() } else { b };
        b.build().unwrap()
    }
}

/// A config with `[listen]` on 127.0.0.1:0, admin on 127.0.0.1:0, audit to a file in `dir`.
pub fn base_config(dir: &Path, listen_extra: &str, tls: &str, routes: &str) -> String {
    format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n{listen_extra}\n{tls}\n[admin]\naddr = \"127.0.0.1:0\"\n[audit]\nsink = \"{}\"\n{routes}",
        dir.join("audit.jsonl").display()
    )
}

/// `[issuer]` as most e2e gateways have it: issuer URL `https://portcullis.corp.example`, the
/// gateway's SPIFFE ID `spiffe://corp.example/portcullis`.
pub const ISSUER: &str = "\n[issuer]\nurl = \"https://portcullis.corp.example\"\nspiffe_id = \"spiffe://corp.example/portcullis\"\n";

/// `[credentials.partner-keys]`: the `api-key` credential reading `dir/keys.toml` (see
/// [`write_api_keys`]).
pub fn partner_keys(dir: &Path) -> String {
    format!(
        "\n[credentials.partner-keys]\nkind = \"api-key\"\nkeys_file = \"{}/keys.toml\"\n",
        dir.display()
    )
}

/// A `[[routes]]` entry for partners: `accept = ["partner-keys"]`, the upstream's audience is the
/// route's name. `matcher` is the inside of `match = { … }`; `fields` are more route keys (each
/// line `key = value`, e.g. the `allow` list or a policy); `upstream` more `[routes.upstream]`
/// keys; `tables` the route's sub-tables (`[routes.limits]`, `[routes.validate]`…).
pub fn partner_route(
    name: &str,
    matcher: &str,
    fields: &str,
    upstream_url: &str,
    upstream: &str,
    tables: &str,
) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\nmatch = {{ {matcher} }}\naccept = [\"partner-keys\"]\n{fields}\n[routes.upstream]\nurl = \"{upstream_url}\"\naudience = \"{name}\"\n{upstream}\n{tables}\n"
    )
}

/// `allow` for every partner SPIFFE ID (a [`partner_route`] field).
pub const ALLOW_PARTNERS: &str = "allow = [\"spiffe://corp.example/partner/*\"]";

/// `dir/keys.toml` for an `api-key` credential: one entry per (id, identity, key), stored as the
/// key's SHA-256 as `portcullis apikey new` writes it.
pub fn write_api_keys(dir: &Path, keys: &[(&str, &str, &str)]) {
    use sha2::Digest as _;
    let mut text = String::new();
    for (id, identity, key) in keys {
        let sha = hex::encode(sha2::Sha256::digest(key.as_bytes()));
        text.push_str(&format!(
            "[[keys]]\nid = \"{id}\"\nsha256 = \"{sha}\"\nidentity = \"{identity}\"\n\n"
        ));
    }
    std::fs::write(dir.join("keys.toml"), text).unwrap();
}

/// `dir/plans/partner-api.toml`: the partner API plan (observe 2026-11-01, bridge 2026-12-01,
/// enforce 2027-03-01; ready below 1% legacy traffic over 14 days) for `[credentials.partner-keys]`.
pub fn write_partner_plan(dir: &Path) {
    std::fs::create_dir_all(dir.join("plans")).unwrap();
    std::fs::write(
        dir.join("plans/partner-api.toml"),
        r#"name = "partner-api"
owner = "team-partners <partners@corp.example>"
docs = "https://wiki.corp.example/migrations/partner-api"
legacy_credentials = ["partner-keys"]
[phases]
observe = 2026-11-01
bridge = 2026-12-01
enforce = 2027-03-01
[exit_criteria]
max_legacy_share = 0.01
window = "14d"
"#,
    )
    .unwrap();
}

/// A `[[routes]]` entry on `prefix` with a 2 s upstream timeout; `extra` are more route keys.
/// An address nothing listens on, held for as long as the returned socket lives: bound but not
/// listening, so a connection to it is refused (RST) and no other test's listener can take the
/// port meanwhile. (A port that was merely free a moment ago can be taken by a concurrent test's
/// listener, and the "dead" upstream then answers.)
pub fn refusing_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}

pub fn route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!("\n[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"{prefix}\" }}\n{extra}\n[routes.upstream]\nurl = \"{upstream}\"\ntimeout = \"2s\"\n")
}

/// A `[[routes]]` entry, built key by key; `to_string()` renders it. The e2e configs name their
/// routes through this (or [`route`] / [`partner_route`]), so a change of the route syntax is
/// made here once.
#[derive(Debug, Clone)]
pub struct RouteToml {
    name: String,
    matcher: Vec<String>,
    keys: Vec<String>,
    upstream: Vec<String>,
}

/// A TOML array of strings: `["a", "b"]`.
pub fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl RouteToml {
    /// Route `name` on `path_prefix`, to `upstream_url`.
    pub fn new(name: &str, path_prefix: &str, upstream_url: &str) -> Self {
        RouteToml {
            name: name.to_owned(),
            matcher: vec![format!("path_prefix = {path_prefix:?}")],
            keys: Vec::new(),
            upstream: vec![format!("url = {upstream_url:?}")],
        }
    }

    /// `match.host`.
    pub fn host(self, host: &str) -> Self {
        self.matcher(&format!("host = {host:?}"))
    }

    /// `match.methods`.
    pub fn methods(self, methods: &[&str]) -> Self {
        self.matcher(&format!("methods = {}", toml_list(methods)))
    }

    /// Another `match` key, as `key = value`.
    pub fn matcher(mut self, key_value: &str) -> Self {
        self.matcher.push(key_value.to_owned());
        self
    }

    /// `accept`: the credentials, in order.
    pub fn accept(self, credentials: &[&str]) -> Self {
        self.key(&format!("accept = {}", toml_list(credentials)))
    }

    /// `allow`: the SPIFFE ID patterns let in.
    pub fn allow(self, ids: &[&str]) -> Self {
        self.key(&format!("allow = {}", toml_list(ids)))
    }

    /// Another route key (`plan = "partner-api"`, a policy), as `key = value`.
    pub fn key(mut self, key_value: &str) -> Self {
        self.keys.push(key_value.to_owned());
        self
    }

    /// `upstream.audience`.
    pub fn audience(self, audience: &str) -> Self {
        self.upstream_key(&format!("audience = {audience:?}"))
    }

    /// Another `[routes.upstream]` key, as `key = value`.
    pub fn upstream_key(mut self, key_value: &str) -> Self {
        self.upstream.push(key_value.to_owned());
        self
    }
}

impl std::fmt::Display for RouteToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "\n[[routes]]\nname = {:?}", self.name)?;
        writeln!(f, "match = {{ {} }}", self.matcher.join(", "))?;
        for k in &self.keys {
            writeln!(f, "{k}")?;
        }
        writeln!(f, "[routes.upstream]")?;
        for k in &self.upstream {
            writeln!(f, "{k}")?;
        }
        Ok(())
    }
}

/// `[credentials.<name>]` of kind `api-key` reading `dir/keys.toml` (see [`write_api_keys`]);
/// `extra` are more keys (`header = "X-API-Key"`), one per line.
pub fn api_key_credential(name: &str, dir: &Path, extra: &str) -> String {
    format!(
        "\n[credentials.{name}]\nkind = \"api-key\"\nkeys_file = \"{}/keys.toml\"\n{extra}\n",
        dir.display()
    )
}

/// `[credentials.<name>]` of kind `webhook`: `adapter`, the secrets in `secrets_file`, every
/// delivery mapped to `identity`.
pub fn webhook_credential(
    name: &str,
    adapter: &str,
    secrets_file: &Path,
    identity: &str,
) -> String {
    format!(
        "\n[credentials.{name}]\nkind = \"webhook\"\nadapter = {adapter:?}\nsecrets_file = {:?}\nidentity = {identity:?}\n",
        secrets_file.display().to_string()
    )
}

/// `[credentials.billing-hooks]`: Standard Webhooks deliveries signed with the secret in
/// `secrets_file`, mapped to `spiffe://corp.example/external/billing`.
pub fn billing_hooks_credential(secrets_file: &Path) -> String {
    webhook_credential(
        "billing-hooks",
        "standard-webhooks",
        secrets_file,
        "spiffe://corp.example/external/billing",
    )
}

/// Route `partner` (`/partner/`, `partner-keys`, any partner ID, audience `partner-api`) and
/// route `hooks` (`POST /hooks/`, `billing-hooks`, audience `billing`), both to `upstream_url`.
pub fn partner_and_hooks_routes(upstream_url: &str) -> String {
    let partner = RouteToml::new("partner", "/partner/", upstream_url)
        .accept(&["partner-keys"])
        .allow(&["spiffe://corp.example/partner/*"])
        .audience("partner-api");
    let hooks = RouteToml::new("hooks", "/hooks/", upstream_url)
        .methods(&["POST"])
        .accept(&["billing-hooks"])
        .allow(&["spiffe://corp.example/external/billing"])
        .audience("billing");
    format!("{partner}{hooks}")
}

/// Start the gateway in this process.
pub async fn start_in_process(dir: &Path, toml: &str) -> portcullis::server::Running {
    portcullis::server::install_crypto();
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, crate::native_h1::engine_from_env(toml)).unwrap();
    let cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("config invalid:\n{e}"));
    portcullis::server::start(cfg, portcullis::server::Options::default())
        .await
        .unwrap()
}

/// Audit lines written so far (the writer flushes after each burst).
pub async fn audit_lines(dir: &Path, at_least: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
        // Only whole lines: the writer may be between two writes of a long batch.
        let lines: Vec<serde_json::Value> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= at_least {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {at_least} audit lines");
}

/// The gateway as a child process (`portcullis serve`).
pub struct Proc {
    pub child: Child,
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

impl Proc {
    pub fn spawn(dir: &Path, toml: &str) -> Proc {
        portcullis::server::install_crypto();
        let path = dir.join("portcullis.toml");
        std::fs::write(&path, crate::native_h1::engine_from_env(toml)).unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("portcullis listening") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("gateway did not start: {:?}", lines.lock().unwrap()));
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            line[start..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        Proc {
            data_addr: field("data_addr"),
            admin_addr: field("admin_addr"),
            child,
            stderr: lines,
        }
    }

    /// Wait (off the async runtime) for the process to exit, at most `within`: its status, or
    /// `None` when it is still running.
    pub async fn exited_within(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + within;
            loop {
                if let Some(s) = self.child.try_wait().unwrap() {
                    return Some(s);
                }
                if std::time::Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap()
    }

    /// Wait (at most `within`) for the process to exit, require exit status 0, and return
    /// everything it wrote to stderr.
    pub async fn exits_cleanly_within(self, within: Duration) -> String {
        let stderr = self.stderr.clone();
        let status = self
            .exited_within(within)
            .await
            .unwrap_or_else(|| panic!("the gateway did not exit within {within:?}"));
        assert!(status.success(), "exit status {status:?}");
        let log = stderr.lock().unwrap().join("\n");
        log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send raw bytes, then read until the peer closes or `wait` passes. Returns (text, closed).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
        }
    }
}

/// Status code of the first response in a raw exchange.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Everything the gateways of this test binary log, at the most verbose levels, so that tests
/// can prove no secret reaches a diagnostic line (docs/audit.md: "at any level"). Tests run in
/// parallel in one process, so the capture is global: grep for values unique to your test.
pub mod logs {
    use std::io::Write;
    use std::sync::{Arc, Mutex, OnceLock};

    static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Start capturing (idempotent). Call first thing in the test.
    pub fn capture() {
        CAPTURE.get_or_init(|| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let w = buf.clone();
            let sub = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "trace,h2=debug,hyper=debug,hyper_util=debug,rustls=debug,tokio=info,runtime=info",
                ))
                .with_ansi(false)
                .with_writer(move || Sink(w.clone()))
                .finish();
            tracing::subscriber::set_global_default(sub)
                .expect("another test installed a global subscriber");
            buf
        });
    }

    /// Panic if `secret` appears in anything logged so far; returns how many bytes were logged
    /// (so the caller can check that the capture saw its test's lines at all).
    pub fn assert_absent(secrets: &[&str]) -> usize {
        let buf = CAPTURE.get().expect("logs::capture() was not called");
        let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
        for s in secrets {
            assert!(s.len() >= 6, "too short to grep for: {s:?}");
            assert!(!text.contains(s), "{s:?} reached the gateway's logs");
        }
        text.len()
    }

    /// Whether the logs contain `s` (to prove the capture covers the test's own lines).
    pub fn contains(s: &str) -> bool {
        let buf = CAPTURE.get().expect("logs::capture() was not called");
        let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
        text.contains(s)
    }
}

/// The admin listener's `/metrics` text.
pub async fn scrape(gw: &portcullis::server::Running) -> String {
    reqwest::get(format!("http://{}/metrics", gw.admin_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The next request head (up to its blank line, no body) off `s`, with `got` holding what was
/// read past it; `None` once the peer closes. For raw test upstreams that answer head by head.
pub async fn next_head(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    got: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(got.drain(..at + 4).collect());
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => got.extend_from_slice(&chunk[..k]),
        }
    }
}
