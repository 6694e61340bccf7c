//! Test support for the SPIFFE Workload API: a real gRPC Workload API server on a Unix socket
//! (`tests/fixtures/spiffe/workload_api_server.py`, grpcio), SPIFFE CAs and SVIDs made with rcgen,
//! TLS clients that record the certificate the gateway presents, and a TLS upstream that demands
//! a client certificate.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spiffe");

/// A CA of one trust domain.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// An X.509-SVID: chain (leaf first) and PKCS#8 key.
#[derive(Clone)]
pub struct Svid {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Vec<u8>,
}

fn validity_from_now(p: &mut CertificateParams, secs: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + Duration::from_secs(now - 3600);
    p.not_after = epoch + Duration::from_secs(now + secs);
}

impl Ca {
    pub fn new(td: &str) -> Ca {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("{td} CA {}", rand_suffix()));
        p.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity_from_now(&mut p, 86400);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// An SVID for `uri` (serverAuth + clientAuth), valid for an hour.
    pub fn svid(&self, uri: &str) -> Svid {
        self.svid_valid(uri, 3600)
    }

    /// An SVID that also names 127.0.0.1 (for ordinary TLS validation with `ca`).
    pub fn svid_for_ip(&self, uri: &str) -> Svid {
        self.make(uri, 3600, true)
    }

    pub fn svid_valid(&self, uri: &str, secs: u64) -> Svid {
        self.make(uri, secs, false)
    }

    fn make(&self, uri: &str, secs: u64, ip: bool) -> Svid {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "svid");
        p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        if ip {
            p.subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // X509-SVID §4.1: the leaf says it is not a CA (the spiffe crate requires the extension).
        p.is_ca = IsCa::ExplicitNoCa;
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity_from_now(&mut p, secs);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Svid {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        .into()
}

/// PEM text of DER blocks.
pub fn pem(label: &str, ders: &[&[u8]]) -> String {
    let mut out = String::new();
    for der in ders {
        out.push_str(&format!("-----BEGIN {label}-----\n"));
        let b = STANDARD.encode(der);
        for chunk in b.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
    }
    out
}

impl Svid {
    /// Write the chain and key as PEM files `{name}.pem` / `{name}.key` in `dir`.
    pub fn write_pem(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let chain: Vec<&[u8]> = self.chain.iter().map(|c| c.as_ref()).collect();
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, pem("CERTIFICATE", &chain)).unwrap();
        std::fs::write(&key, pem("PRIVATE KEY", &[&self.key])).unwrap();
        (cert, key)
    }

    pub fn leaf(&self) -> Vec<u8> {
        self.chain[0].to_vec()
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

fn concat(ders: &[CertificateDer<'_>]) -> String {
    let mut all = Vec::new();
    for d in ders {
        all.extend_from_slice(d);
    }
    STANDARD.encode(all)
}

/// A P-256 JWT signing key with its `kid`, and its JWK.
pub struct JwtSigner {
    pub kid: String,
    key: KeyPair,
}

impl JwtSigner {
    pub fn new(kid: &str) -> JwtSigner {
        JwtSigner {
            kid: kid.into(),
            key: KeyPair::generate().unwrap(),
        }
    }

    pub fn jwk(&self) -> Value {
        let raw = self.key.public_key_raw();
        json!({
            "kty": "EC", "crv": "P-256", "use": "jwt-svid", "kid": self.kid, "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    /// The private key, PKCS#8 PEM (for PyJWT).
    pub fn pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn jwks(&self) -> String {
        json!({ "keys": [self.jwk()] }).to_string()
    }
}

/// What the agent serves: SVIDs (with their trust domain's bundle), federated bundles, JWT
/// bundles and the JWT-SVID signer.
pub struct AgentState {
    pub svids: Vec<(String, Svid, Vec<CertificateDer<'static>>, String)>,
    pub federated: Vec<(String, Vec<CertificateDer<'static>>)>,
    pub jwt_bundles: Vec<(String, String)>,
    pub jwt_signer: Option<(String, String)>,
    /// FetchJWTSVID answers after this long (a slow agent, so concurrent requests overlap).
    pub jwt_delay_ms: u64,
}

impl AgentState {
    /// One SVID for `id` with `bundle` as its trust domain's bundle (and, as SPIRE always
    /// sends one, a JWT bundle for that trust domain).
    pub fn one(id: &str, svid: &Svid, bundle: &[CertificateDer<'static>]) -> AgentState {
        let td = id.split('/').nth(2).unwrap();
        AgentState {
            svids: vec![(id.into(), svid.clone(), bundle.to_vec(), String::new())],
            federated: Vec::new(),
            jwt_bundles: vec![(format!("spiffe://{td}"), JwtSigner::new("default").jwks())],
            jwt_signer: None,
            jwt_delay_ms: 0,
        }
    }

    pub fn with_jwt(mut self, td: &str, signer: &JwtSigner) -> AgentState {
        self.jwt_bundles.clear();
        self.jwt_bundles
            .push((format!("spiffe://{td}"), signer.jwks()));
        self.jwt_signer = Some((signer.kid.clone(), signer.key.serialize_pem()));
        self
    }

    pub fn to_json(&self) -> Value {
        let svids: Vec<Value> = self
            .svids
            .iter()
            .map(|(id, s, bundle, hint)| {
                json!({
                    "spiffe_id": id, "chain": concat(&s.chain), "key": STANDARD.encode(&s.key),
                    "bundle": concat(bundle), "hint": hint,
                })
            })
            .collect();
        let fed: serde_json::Map<String, Value> = self
            .federated
            .iter()
            .map(|(td, b)| (td.clone(), Value::String(concat(b))))
            .collect();
        let jwt: serde_json::Map<String, Value> = self
            .jwt_bundles
            .iter()
            .map(|(td, b)| (td.clone(), Value::String(b.clone())))
            .collect();
        let mut doc = json!({ "svids": svids, "federated": fed, "jwt_bundles": jwt });
        if let Some((kid, pem)) = &self.jwt_signer {
            doc["jwt_signer"] = json!({ "kid": kid, "key_pem": pem });
        }
        if self.jwt_delay_ms > 0 {
            doc["jwt_delay_ms"] = json!(self.jwt_delay_ms);
        }
        doc
    }
}

/// The Workload API server as a child process.
pub struct Agent {
    pub socket: PathBuf,
    child: Option<(Child, ChildStdin)>,
    pub lines: Arc<Mutex<Vec<String>>>,
    last: Option<Value>,
}

impl Agent {
    /// Start serving `state` on `dir/agent.sock`.
    pub fn start(dir: &Path, state: &AgentState) -> Agent {
        let mut a = Agent {
            socket: dir.join("agent.sock"),
            child: None,
            lines: Arc::new(Mutex::new(Vec::new())),
            last: None,
        };
        a.spawn();
        a.push(state);
        a
    }

    /// `unix://` URL of the socket, for `[spiffe] workload_api`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn spawn(&mut self) {
        let mut child = Command::new("python3")
            .arg(format!("{FIXTURES}/workload_api_server.py"))
            .arg(&self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (with grpcio, grpcio-tools, PyJWT: see scripts/test) must be on PATH");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = self.lines.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "READY" {
                    let _ = tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the Workload API server did not start");
        self.child = Some((child, stdin));
        if let Some(last) = self.last.clone() {
            self.send(&last);
        }
    }

    fn send(&mut self, doc: &Value) {
        let (_, stdin) = self.child.as_mut().expect("agent stopped");
        writeln!(stdin, "{doc}").unwrap();
        stdin.flush().unwrap();
    }

    /// Replace the served state; open streams get it at once.
    pub fn push(&mut self, state: &AgentState) {
        let doc = state.to_json();
        self.send(&doc);
        self.last = Some(doc);
    }

    /// Stop the server (its streams end, the socket goes away).
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Start again on the same socket, serving the last state.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// How many calls of `rpc` the server saw.
    pub fn calls(&self, rpc: &str) -> usize {
        let want = format!("CALL {rpc}");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| **l == want)
            .count()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts any server certificate and records the leaf (tests compare it to the SVID pushed).
#[derive(Debug)]
pub struct RecordingVerifier {
    pub seen: Mutex<Vec<Vec<u8>>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl RecordingVerifier {
    pub fn new() -> Arc<RecordingVerifier> {
        Arc::new(RecordingVerifier {
            seen: Mutex::new(Vec::new()),
            algs: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        })
    }

    pub fn last(&self) -> Option<Vec<u8>> {
        self.seen.lock().unwrap().last().cloned()
    }
}

impl rustls::client::danger::ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.seen.lock().unwrap().push(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A reqwest client (HTTP/1.1) presenting `caller`'s SVID, recording the gateway's certificate.
pub fn client(caller: Option<&Svid>, rec: &Arc<RecordingVerifier>) -> reqwest::Client {
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(rec.clone());
    let mut cfg = match caller {
        Some(s) => b
            .with_client_auth_cert(s.chain.clone(), s.key_der())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET over a fresh connection; the status, or `None` when the handshake (or request) failed.
pub async fn get_fresh(
    addr: SocketAddr,
    path: &str,
    caller: Option<&Svid>,
) -> (Option<u16>, Option<Vec<u8>>) {
    let rec = RecordingVerifier::new();
    let c = client(caller, &rec);
    let status = c
        .get(format!("https://127.0.0.1:{}{path}", addr.port()))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16());
    (status, rec.last())
}

/// What the TLS upstream saw.
#[derive(Default)]
pub struct TlsSeen {
    /// The URI SAN of each client certificate presented, per handshake.
    pub client_ids: Vec<String>,
    /// The client leaf of each handshake.
    pub client_leaves: Vec<Vec<u8>>,
    /// HTTP requests received (path).
    pub requests: Vec<String>,
    /// TCP connections accepted.
    pub connections: usize,
}

fn uri_san(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = c.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A TLS upstream presenting `svid` and demanding a client certificate issued by `client_ca`.
pub async fn tls_upstream(svid: &Svid, client_ca: &Ca) -> (SocketAddr, Arc<Mutex<TlsSeen>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(svid.chain.clone(), svid.key_der())
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(TlsSeen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            s.lock().unwrap().connections += 1;
            let acceptor = acceptor.clone();
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                    let mut g = s.lock().unwrap();
                    g.client_ids.push(uri_san(leaf));
                    g.client_leaves.push(leaf.to_vec());
                }
                let s2 = s.clone();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        s2.lock()
                            .unwrap()
                            .requests
                            .push(req.uri().path().to_string());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"mainframe ok",
                                )),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// `[spiffe]` plus a data listener serving the SVID (one worker, so one upstream pool: tests
/// count connections), and `[admin]`, audit to `dir`.
pub fn gateway_config(dir: &Path, agent: &Agent, rest: &str) -> String {
    format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\nworkers = 1\n[listen.tls]\nsource = \"workload-api\"\n[admin]\naddr = \"127.0.0.1:0\"\n[audit]\nsink = \"{}\"\n[spiffe]\nworkload_api = \"{}\"\nstartup_timeout = \"20s\"\n{rest}",
        dir.join("audit.jsonl").display(),
        agent.url()
    )
}

/// Poll `f` every 20 ms until it is true or `within` passes; returns the time it took.
pub async fn within<F, Fut>(within: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
